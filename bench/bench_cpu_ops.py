"""CPU speed of the resampling ops: the plain reference formula against the optimised CPU formulation, same run.

    OMP_NUM_THREADS=2 python bench/bench_cpu_ops.py [--reps N] [--cases NAME,...] [--out FILE] [--no-cl]
                                                    [--no-generator] [--malloc keep|system]

upfirdn2d's CPU path (upfirdn2d._upfirdn2d_cpu: polyphase conv_transpose2d for upsampling, strided conv2d for
downsampling; channels_last only where C is not a multiple of 16) is compared with the plain formula
(upfirdn2d._upfirdn2d_ref: zero insertion, pad, full-resolution depthwise FIR, slice) by toggling
upfirdn2d._FAST_CPU_ENABLED, and with the optimised path forced to channels_last (_FAST_CPU_CHANNELS_LAST = True).
Winograd's F(4x4, 3x3) (winograd._FAST_CPU_ENABLED, the 'conv3x3' cases, against the direct conv2d) is toggled
with it, forced on (DNNLIB_WINOGRAD=1 unless set) so that the rows measure it even where its calibration
(winograd.pays_on_this_cpu, printed first) would leave it off. Cases: StyleGAN2-typical op shapes, ADA's bgc AugmentPipe, a StyleGAN2 G forward+backward at 32x32 (--cfg=stylegan2 settings),
and the generator's upfirdn2d calls alone. The paths run interleaved (plain, fast, fast_cl, plain, ...) so that
load from other processes hits them alike; the table shows medians over --reps and the speed-up plain / fast.
Writes JSON (machine, threads, load average, rows) to --out. Exit status 1 if any case's outputs disagree beyond
float32 rounding (max abs error > 1e-4 of the largest output magnitude).
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import torch

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(BENCH_DIR))

import dnnlib  # noqa: E402
from torch_utils import cpu_malloc  # noqa: E402
from torch_utils.ops import conv2d_gradfix, conv2d_resample, upfirdn2d, winograd  # noqa: E402 (repository root)

PATHS = {  # name -> (upfirdn2d._FAST_CPU_ENABLED, upfirdn2d._FAST_CPU_CHANNELS_LAST, winograd._FAST_CPU_ENABLED)
    'plain': (False, False, False),
    'fast': (upfirdn2d._FAST_CPU_ENABLED, upfirdn2d._FAST_CPU_CHANNELS_LAST, winograd._FAST_CPU_ENABLED),  # Defaults.
    'fast_cl': (True, True, True),                                                 # Always channels_last.
}
REL_TOLERANCE = 1e-4

#----------------------------------------------------------------------------
# Cases: (name, make_inputs() -> list of tensors, fn(*inputs) -> tensor). Inputs with requires_grad=True are
# differentiated in the forward+backward timing.

def _op_cases():
    gen = torch.Generator().manual_seed(0)
    randn = lambda *shape: torch.randn(shape, generator=gen)
    f4 = upfirdn2d.setup_filter([1, 3, 3, 1])                       # SG2 resample filter: 2-D 4x4.
    f12 = upfirdn2d.setup_filter(torch.hann_window(12, periodic=False) + 0.01)  # 12 taps: separable, like ADA's.
    f6 = upfirdn2d.setup_filter([1, 5, 10, 10, 5, 1])               # SG3-R style blur, 2-D 6x6.
    return [
        ('upsample2d 4tap [8,512,32,32]', lambda: [randn(8, 512, 32, 32)],
         lambda x: upfirdn2d.upsample2d(x, f4, impl='ref')),
        ('upsample2d 4tap [16,256,64,64]', lambda: [randn(16, 256, 64, 64)],
         lambda x: upfirdn2d.upsample2d(x, f4, impl='ref')),
        ('downsample2d 4tap [8,256,64,64]', lambda: [randn(8, 256, 64, 64)],
         lambda x: upfirdn2d.downsample2d(x, f4, impl='ref')),
        ('downsample2d 4tap [4,64,256,256]', lambda: [randn(4, 64, 256, 256)],
         lambda x: upfirdn2d.downsample2d(x, f4, impl='ref')),
        ('filter2d 6x6 blur [8,128,64,64]', lambda: [randn(8, 128, 64, 64)],
         lambda x: upfirdn2d.filter2d(x, f6, impl='ref')),
        ('upsample2d rgb skip [16,3,32,32]', lambda: [randn(16, 3, 32, 32)],
         lambda x: upfirdn2d.upsample2d(x, f4, impl='ref')),
        ('conv2d_resample up2 3x3 [8,256,32,32]->256', lambda: [randn(8, 256, 32, 32), randn(256, 256, 3, 3)],
         lambda x, w: conv2d_resample.conv2d_resample(x, w, f4, up=2, padding=1, flip_weight=False)),
        ('conv2d_resample down2 3x3 [8,256,64,64]->256', lambda: [randn(8, 256, 64, 64), randn(256, 256, 3, 3)],
         lambda x, w: conv2d_resample.conv2d_resample(x, w, f4, down=2, padding=1)),
        ('augment up2 12tap [16,3,76,76]', lambda: [randn(16, 3, 76, 76)],
         lambda x: upfirdn2d.upfirdn2d(x, f12, up=2, padding=[6, 5, 6, 5], gain=4, impl='ref')),
        ('augment down2 12tap [16,3,138,138]', lambda: [randn(16, 3, 138, 138)],
         lambda x: upfirdn2d.upfirdn2d(x, f12, down=2, flip_filter=True, impl='ref')),
    ] + [(f'conv3x3 {"NHWC" if cl else "NCHW"} [{n},{c},{r},{r}]->{c}', lambda n=n, c=c, r=r, cl=cl: [
        _layout(randn(n, c, r, r), cl), randn(c, c, 3, 3) / (9 * c) ** 0.5], lambda x, w: conv2d_gradfix.conv2d(
            x, w, padding=1)) for n, c, r, cl in WINOGRAD_SHAPES]


# 3x3 layers of full-width generators (winograd.py's dispatch; without autograd only, so fwd+bwd is the direct conv
# in both paths): SG2 64/256 px at batch 8 (channels_last on CPU), gen_images' batch 1 (contiguous), and below the
# thresholds (64 channels, 8 px).
WINOGRAD_SHAPES = [(8, 512, 64, True), (8, 512, 32, True), (8, 256, 128, True), (8, 128, 256, True),
                   (1, 512, 64, False), (1, 256, 256, False), (8, 64, 128, True), (8, 512, 8, True)]


def _layout(x, channels_last):
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _generator_cases(batch_size=16):
    """The generator end to end, and only the upfirdn2d calls it makes (recorded from one forward pass, replayed
    on random inputs of the same shapes), which shows the resampling share without the rest's noise."""
    from training.networks_stylegan2 import Generator
    torch.manual_seed(0)
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=32, img_channels=3,
                  channel_base=8192, channel_max=256, fused_modconv_default='inference_only',  # As --cfg=stylegan2.
                  ).train().requires_grad_(True)
    gen = torch.Generator().manual_seed(1)
    make = lambda: [torch.randn([batch_size, 512], generator=gen)]
    calls = []
    original = upfirdn2d.upfirdn2d
    def recording_upfirdn2d(x, f, *args, **kwargs):
        calls.append((tuple(x.shape), f, args, kwargs))
        return original(x, f, *args, **kwargs)
    upfirdn2d.upfirdn2d = recording_upfirdn2d
    try:
        with torch.no_grad():
            G(make()[0], None, noise_mode='const')
    finally:
        upfirdn2d.upfirdn2d = original
    make_replay = lambda: [torch.randn(shape, generator=gen) for shape, _, _, _ in calls]
    def replay(*inputs):
        outputs = [upfirdn2d.upfirdn2d(x, f, *args, **kwargs) for x, (_, f, args, kwargs) in zip(inputs, calls)]
        return torch.cat([y.flatten() for y in outputs])
    return [(f'StyleGAN2 G 32px cb8192 cm256 batch {batch_size}', make, lambda z: G(z, None, noise_mode='const')),
            (f'  its {len(calls)} upfirdn2d calls only', make_replay, replay)]


def _augment_cases():
    """ADA's 'bgc' pipe at p=1 (every transform drawn for every image), 32 and 64 px; the random draws are
    re-seeded per call so that the paths see the same transforms."""
    from training.augment import AugmentPipe
    pipe = AugmentPipe(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1,
                       lumaflip=1, hue=1, saturation=1)
    pipe.p.copy_(torch.as_tensor(1.0))
    gen = torch.Generator().manual_seed(2)
    def run(x):
        torch.manual_seed(0)
        return pipe(x)
    return [(f'AugmentPipe bgc p=1 [{batch},3,{res},{res}]', lambda res=res, batch=batch: [
        torch.randn([batch, 3, res, res], generator=gen)], run) for res, batch in ((32, 16), (64, 8))]

#----------------------------------------------------------------------------

def _set_path(name):
    upfirdn2d._FAST_CPU_ENABLED, upfirdn2d._FAST_CPU_CHANNELS_LAST, winograd._FAST_CPU_ENABLED = PATHS[name]


def _time(fn, inputs, backward):
    start = time.perf_counter()
    if backward:
        y = fn(*inputs)
        y.backward(torch.ones_like(y) / y.numel() ** 0.5)
    else:
        with torch.no_grad():
            fn(*inputs)
    return time.perf_counter() - start


def _run_case(name, make_inputs, fn, reps, paths):
    inputs = make_inputs()
    outputs = {}
    for path in paths:
        _set_path(path)
        with torch.no_grad():
            outputs[path] = fn(*inputs).float()
    scale = outputs['plain'].abs().max().clamp(min=1e-12)
    errors = {path: ((out - outputs['plain']).abs().max() / scale).item() for path, out in outputs.items()}
    grad_inputs = [x.detach().requires_grad_(True) for x in inputs]
    times = {(path, mode): [] for path in paths for mode in ('fwd', 'fwd+bwd')}
    for _ in range(reps):
        for path in paths:
            _set_path(path)
            times[(path, 'fwd')].append(_time(fn, inputs, backward=False))
            times[(path, 'fwd+bwd')].append(_time(fn, grad_inputs, backward=True))
    _set_path('fast')
    row = dict(case=name, reps=reps, max_rel_error=errors,
               median_ms={f'{p} {m}': 1e3 * statistics.median(t) for (p, m), t in times.items()},
               min_ms={f'{p} {m}': 1e3 * min(t) for (p, m), t in times.items()})
    for mode in ('fwd', 'fwd+bwd'):
        for path in paths[1:]:
            row[f'speedup {path} {mode}'] = row['median_ms'][f'plain {mode}'] / row['median_ms'][f'{path} {mode}']
    return row


def _machine_info():
    cpu = platform.processor()
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as file:
            cpu = next(line.split(':', 1)[1].strip() for line in file if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return dict(cpu=cpu, platform=platform.platform(), python=platform.python_version(), torch=torch.__version__,
                logical_cpus=os.cpu_count(), torch_threads=torch.get_num_threads(),
                omp_num_threads=os.environ.get('OMP_NUM_THREADS'), mkldnn=torch.backends.mkldnn.is_available(),
                loadavg_start=os.getloadavg())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--reps', type=int, default=5, help='timed repetitions per path (median reported)')
    parser.add_argument('--cases', default='', help='comma-separated substrings: run only matching cases')
    parser.add_argument('--no-cl', action='store_true', help='skip the fast-path-in-channels_last column')
    parser.add_argument('--no-generator', action='store_true', help='skip the end-to-end generator case')
    parser.add_argument('--malloc', choices=['keep', 'system'], default='keep',
                        help="allocator for the whole run: 'keep' = the CLIs' CPU setting (default; Winograd needs "
                             "it), 'system' = glibc's")
    parser.add_argument('--out', default=os.path.join(BENCH_DIR, 'results', 'cpu_ops.json'))
    args = parser.parse_args()
    malloc_applied = cpu_malloc.keep_freed_memory() if args.malloc == 'keep' else False
    # The conv3x3 rows measure Winograd itself, also on a CPU where the calibration would turn it off; the
    # calibration's own ratio is printed and stored with the results.
    winograd_speedup = winograd._measure_speedup() if malloc_applied else None
    os.environ.setdefault('DNNLIB_WINOGRAD', '1')

    info = _machine_info()
    info['winograd_calibration_speedup'] = winograd_speedup
    paths = ['plain', 'fast'] if args.no_cl else ['plain', 'fast', 'fast_cl']
    cases = _op_cases() + _augment_cases() + ([] if args.no_generator else _generator_cases())
    if args.cases:
        cases = [case for case in cases if any(key in case[0] for key in args.cases.split(','))]
    print(f'{info["cpu"]}, torch {info["torch"]}, {info["torch_threads"]} threads, load {info["loadavg_start"]}')
    if winograd_speedup is not None:
        print(f'Winograd calibration layer: {winograd_speedup:.2f}x (the CLIs use it at >= '
              f'{winograd.CALIBRATION_MARGIN}x; the conv3x3 rows force it on)')
    header = f'{"case":46s} {"plain fwd":>10s} {"fast fwd":>9s} {"x":>6s} {"plain f+b":>10s} {"fast f+b":>9s} ' \
             f'{"x":>6s} {"cl x":>7s} {"rel err":>8s}'
    print(header + '\n' + '-' * len(header))
    rows, ok = [], True
    for name, make_inputs, fn in cases:
        row = _run_case(name, make_inputs, fn, args.reps, paths)
        rows.append(row)
        ms = row['median_ms']
        worst = max(row['max_rel_error'].values())
        ok = ok and worst <= REL_TOLERANCE
        cl = f'{row["speedup fast_cl fwd+bwd"]:6.2f}x' if 'fast_cl' in paths else '      -'
        print(f'{name:46s} {ms["plain fwd"]:10.1f} {ms["fast fwd"]:9.1f} {row["speedup fast fwd"]:5.2f}x '
              f'{ms["plain fwd+bwd"]:10.1f} {ms["fast fwd+bwd"]:9.1f} {row["speedup fast fwd+bwd"]:5.2f}x '
              f'{cl} {worst:8.1e}', flush=True)
    print('times: median ms; x = plain / fast; cl x = plain / fast with channels_last convolutions (fwd+bwd)')
    info['loadavg_end'] = os.getloadavg()
    result = dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(), machine=info, paths=PATHS,
                  malloc=args.malloc, malloc_applied=malloc_applied, rows=rows, all_agree=ok)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    dnnlib.util.write_file_atomic(args.out, lambda file: json.dump(result, file, indent=1), mode='w')
    print(f'wrote {args.out}')
    return 0 if ok else 1

#----------------------------------------------------------------------------

if __name__ == '__main__':
    sys.exit(main())
