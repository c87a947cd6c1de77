"""CPU speed of whole networks: our default path against our plain reference path and the official figures.

    OMP_NUM_THREADS=2 python bench/run_all.py [--quick] [--reps N] [--only SUBSTR,...] [--batch-scale F] [--profile]
        [--bf16] [--malloc keep|system] [--out FILE]

The configurations of issue 15 (z = w = 512):
  inference, official channels (cbase 32768, cmax 512, -R doubled; mapping 8 for SG2, 2 for SG3; noise_mode='const'):
    SG2 64 b8, SG2 256 b8, SG3-T 64 b8, SG3-R 64 b8, SG3-T 256 b1, SG3-R 256 b1 -- seconds per forward;
  one training iteration (G main + D main + R1, SG2 also path length; each phase once with its Adam step;
  cbase 2048, cmax 64, mapping 2, batch 8, no augmentation, no data loading): SG2, SG3-T, SG3-R at 32 and 64.

Paths, timed interleaved in one process (ours, plain, ours, ...) so that load from other processes hits both alike:
  ours  = the defaults (upfirdn2d's polyphase CPU convolutions, filtered_lrelu's CPU path, SG2's non-fused
          modulated convolution on CPU, demodulation without per-sample weights and channels_last blocks on CPU;
          without autograd: bias_act in place and wide 3x3 convolutions by Winograd F(4x4, 3x3));
  plain = the straightforward formulas (zero insertion then dense FIR, bias_act by its definition, per-sample
          weights materialised, direct convolutions), selected by the modules' _FAST_* constants (plain_path()).
Both paths run under one allocator setting for the whole process, --malloc: 'keep' (default) = what the CLIs do on a
CPU (torch_utils/cpu_malloc.py: freed large buffers stay in the process), 'system' = glibc's defaults. So plain /
ours is the code's gain alone; the allocator's is ours in a --malloc=system run / ours in a --malloc=keep run.
The primary figure is plain / ours (same run). The official figures (issue 15: official code, same machine type,
idle, torch 2.14.1, 2 threads) vary by up to 1.6x between runs, so official / ours is indicative only.
--quick runs a few configurations with the batch scaled by --batch-scale (default 1/8, at least 1) and one timed
repetition; official figures are then scaled linearly in the batch and marked '~'.
--profile adds where our path spends its time: one more run of each configuration under torch.profiler, the
operators with the most self CPU time and the share of all convolution operators (3x3/1x1 layers, transposed
convolutions and the FIR filters that run as depthwise convolutions), printed and kept in each row's 'profile';
and one run with every convolution timed (row 'conv_roofline'): seconds and GFLOP/s of the dense convolutions,
which both paths run alike, so plain / (their seconds) bounds what plain / ours can reach. (torch.profiler's own
times for oneDNN's depthwise transposed convolutions came out up to 5x too high; the timed run has no profiler.)
--bf16 adds, for inference, our path with gen_images.py's --precision=bf16 (the top 4 resolutions in bfloat16):
its seconds, plain / bf16 and its max rel diff from plain. Not exact, so never the primary figure; it shows what a
CPU with bfloat16 units (AVX512-BF16, AMX) gives a user who opts in.
Writes JSON (machine, versions, threads, load average, settings, rows) to --out.
"""

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import sys
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(BENCH_DIR))

from torch_utils import cpu_malloc  # noqa: E402 (needs the repository root on sys.path)
from torch_utils.ops import bias_act, filtered_lrelu, upfirdn2d, winograd  # noqa: E402
from training import loss as loss_module  # noqa: E402
from training import accel, networks_stylegan2, networks_stylegan3  # noqa: E402

# (kind, cfg, resolution, batch) -> official seconds (issue 15).
OFFICIAL_SECONDS = {
    ('inference', 'stylegan2', 64, 8): 2.3, ('inference', 'stylegan2', 256, 8): 6.4,
    ('inference', 'stylegan3-t', 64, 8): 32.5, ('inference', 'stylegan3-r', 64, 8): 62.0,
    ('inference', 'stylegan3-t', 256, 1): 11.0, ('inference', 'stylegan3-r', 256, 1): 20.0,
    ('training', 'stylegan2', 32, 8): 0.23, ('training', 'stylegan2', 64, 8): 0.42,
    ('training', 'stylegan3-t', 32, 8): 2.3, ('training', 'stylegan3-t', 64, 8): 6.0,
    ('training', 'stylegan3-r', 32, 8): 10.0, ('training', 'stylegan3-r', 64, 8): 21.2,
}
QUICK = [('inference', 'stylegan2', 64, 8), ('inference', 'stylegan3-t', 64, 8),
         ('training', 'stylegan2', 32, 8), ('training', 'stylegan3-t', 32, 8)]
INFERENCE_CHANNELS = dict(cbase=32768, cmax=512)
TRAINING_CHANNELS = dict(cbase=2048, cmax=64, map=2)
FAST_SWITCHES = [(upfirdn2d, '_FAST_CPU_ENABLED'), (filtered_lrelu, '_FAST_CPU_ENABLED'),
                 (networks_stylegan2, '_FAST_PATHS_ENABLED'), (bias_act, '_FAST_NO_GRAD_ENABLED'),
                 (winograd, '_FAST_CPU_ENABLED'), (networks_stylegan3, '_FAST_PATHS_ENABLED')]

#----------------------------------------------------------------------------

@contextlib.contextmanager
def plain_path():
    """Within the block, every op and network takes its plain reference formula (see the module docstring)."""
    saved = [getattr(module, name) for module, name in FAST_SWITCHES]
    try:
        for module, name in FAST_SWITCHES:
            setattr(module, name, False)
        yield
    finally:
        for (module, name), value in zip(FAST_SWITCHES, saved):
            setattr(module, name, value)



def build_generator(cfg, resolution, cbase, cmax, map_layers):
    """G as train.py builds it for `cfg` (SG3-R: doubled channels, 1x1 convs, radial filters)."""
    common = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3,
                  mapping_kwargs=dict(num_layers=map_layers))
    if cfg == 'stylegan2':
        return networks_stylegan2.Generator(channel_base=cbase, channel_max=cmax,
                                            fused_modconv_default='inference_only', **common)
    extra = dict(conv_kernel=1, use_radial_filters=True) if cfg == 'stylegan3-r' else {}
    multiplier = 2 if cfg == 'stylegan3-r' else 1
    return networks_stylegan3.Generator(channel_base=cbase * multiplier, channel_max=cmax * multiplier, **extra,
                                        **common)


def make_inference(cfg, resolution, batch, precision=None):
    """fn() -> one G forward (eval, no grad, const noise) with official channels; precision as gen_images.py's."""
    torch.manual_seed(0)
    map_layers = 8 if cfg == 'stylegan2' else 2
    G = build_generator(cfg, resolution, map_layers=map_layers, **INFERENCE_CHANNELS).eval().requires_grad_(False)
    accel.set_inference_precision(G, precision, 'cpu')
    z = torch.randn([batch, 512])

    def run():
        with torch.no_grad():
            return G(z, None, noise_mode='const')
    return run


def make_training(cfg, resolution, batch):
    """fn() -> one iteration: Gmain, Dmain, Dreg (R1) and, for SG2, Greg (path length), each with its Adam step."""
    torch.manual_seed(0)
    G = build_generator(cfg, resolution, TRAINING_CHANNELS['cbase'], TRAINING_CHANNELS['cmax'],
                        TRAINING_CHANNELS['map']).train()
    D = networks_stylegan2.Discriminator(c_dim=0, img_resolution=resolution, img_channels=3,
                                         channel_base=TRAINING_CHANNELS['cbase'],
                                         channel_max=TRAINING_CHANNELS['cmax']).train()
    device = torch.device('cpu')
    if cfg == 'stylegan2':
        loss = loss_module.StyleGAN2Loss(device, G, D, r1_gamma=1, pl_weight=2, style_mixing_prob=0.9,
                                         pl_no_weight_grad=True)
        phases = ['Gmain', 'Greg', 'Dmain', 'Dreg']
    else:
        loss = loss_module.StyleGAN2Loss(device, G, D, r1_gamma=1, pl_weight=0)
        phases = ['Gmain', 'Dmain', 'Dreg']
    # Adam's fused CPU kernel, as train.py takes it on a CPU (training_loop._fused_adam_applies), for both paths.
    opts = {'G': torch.optim.Adam(G.parameters(), lr=0.002, betas=(0.0, 0.99), fused=True),
            'D': torch.optim.Adam(D.parameters(), lr=0.002, betas=(0.0, 0.99), fused=True)}
    real = torch.randn([batch, 3, resolution, resolution])
    c = torch.zeros([batch, 0])
    gen = torch.Generator().manual_seed(1)

    def run():
        for phase in phases:
            # As training/training_loop.py: only the phase's network takes gradients (G's forward in Dmain
            # records no graph; D's parameters get no gradient in Gmain).
            G.requires_grad_(phase[0] == 'G')
            D.requires_grad_(phase[0] == 'D')
            opt = opts[phase[0]]
            opt.zero_grad(set_to_none=True)
            loss.accumulate_gradients(phase, real, c, torch.randn([batch, 512], generator=gen), c, gain=1,
                                      cur_nimg=0)
            opt.step()
    return run

#----------------------------------------------------------------------------

def time_config(kind, cfg, resolution, batch, reps, bf16=False):
    """Median seconds of ours and plain (and, with bf16, of ours with --precision=bf16 for inference), interleaved;
    a warm-up run of each first. Returns (dict path -> seconds, dict path -> max rel diff of its images from plain's,
    None for training)."""
    make = make_inference if kind == 'inference' else make_training
    runs = {'ours': make(cfg, resolution, batch)}
    with plain_path():
        runs['plain'] = make(cfg, resolution, batch)
    if bf16 and kind == 'inference':
        runs['bf16'] = make_inference(cfg, resolution, batch, precision='bf16')
    outputs = {}
    for name in runs:
        with plain_path() if name == 'plain' else contextlib.nullcontext():
            outputs[name] = runs[name]()
    diffs = {}
    if kind == 'inference':
        scale = outputs['plain'].abs().max()
        diffs = {name: float((outputs[name].float() - outputs['plain']).abs().max() / scale) for name in runs
                 if name != 'plain'}
    times = {name: [] for name in runs}
    for _ in range(reps):
        for name in runs:
            with plain_path() if name == 'plain' else contextlib.nullcontext():
                start = time.perf_counter()
                runs[name]()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}, diffs


def profile_ours(kind, cfg, resolution, batch, top=6):
    """Where one run of our path spends its CPU time: dict(total_s, conv_share, top=[[operator, seconds, share]])
    from torch.profiler's self CPU times (a warm-up run first; profiling itself adds some overhead)."""
    from torch.profiler import ProfilerActivity, profile
    run = (make_inference if kind == 'inference' else make_training)(cfg, resolution, batch)
    run()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    events = [(event.key, event.self_cpu_time_total / 1e6) for event in prof.key_averages()]
    total = sum(seconds for _name, seconds in events) or 1e-9
    conv = sum(seconds for name, seconds in events if 'conv' in name and name.startswith('aten::'))
    ranked = sorted(events, key=lambda item: -item[1])[:top]
    return dict(total_s=total, conv_share=conv / total,
                top=[[name, seconds, seconds / total] for name, seconds in ranked])


class _ConvTimer(TorchDispatchMode):
    """Times every convolution (forward and backward) dispatched inside it; sorts them into dense (incl. the batch-
    grouped modulated convs: several input channels per group) and depthwise (FIR filters: one per group)."""

    def __init__(self):
        super().__init__()
        self.seconds = {'dense': 0.0, 'depthwise': 0.0}
        self.flops = {'dense': 0.0, 'depthwise': 0.0}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in (torch.ops.aten.convolution.default, torch.ops.aten.convolution_backward.default):
            return func(*args, **kwargs)
        start = time.perf_counter()
        out = func(*args, **kwargs)
        elapsed = time.perf_counter() - start
        if func is torch.ops.aten.convolution.default:
            x, w, transposed, passes = args[0], args[1], args[6], 1
            big = x if transposed else out          # The side whose every element takes a full filter.
        else:
            grad_out, x, w, transposed, mask = args[0], args[1], args[2], args[7], args[10]
            big, passes = (x if transposed else grad_out), int(mask[0]) + int(mask[1])
        kind = 'depthwise' if w.shape[1] == 1 else 'dense'
        self.seconds[kind] += elapsed
        self.flops[kind] += 2.0 * big.numel() * w.shape[1] * w.shape[2] * w.shape[3] * passes
        return out


def conv_roofline(kind, cfg, resolution, batch):
    """One run of our path with its convolutions timed: dict(total_s, dense_s, dense_gflop, dense_gflops_per_s,
    depthwise_s). dense_s is what no change of formulation can remove short of fewer multiplications (Winograd,
    lower precision): plain_s / dense_s bounds plain / ours."""
    run = (make_inference if kind == 'inference' else make_training)(cfg, resolution, batch)
    run()
    timer = _ConvTimer()
    with timer:
        start = time.perf_counter()
        run()
        total = time.perf_counter() - start
    return dict(total_s=total, dense_s=timer.seconds['dense'], dense_gflop=timer.flops['dense'] / 1e9,
                dense_gflops_per_s=timer.flops['dense'] / 1e9 / max(timer.seconds['dense'], 1e-9),
                depthwise_s=timer.seconds['depthwise'])


def machine_info():
    cpu = platform.processor()
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as file:
            cpu = next(line.split(':', 1)[1].strip() for line in file if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return dict(cpu=cpu, platform=platform.platform(), python=platform.python_version(), torch=torch.__version__,
                logical_cpus=os.cpu_count(), affinity=len(os.sched_getaffinity(0)),
                torch_threads=torch.get_num_threads(), omp_num_threads=os.environ.get('OMP_NUM_THREADS'),
                mkldnn=torch.backends.mkldnn.is_available(), loadavg_start=os.getloadavg())


def _write_json(path, data):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + '.tmp', 'w', encoding='utf-8') as file:
        json.dump(data, file, indent=1)
    os.replace(path + '.tmp', path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='a few configurations, scaled batch, 1 repetition')
    parser.add_argument('--reps', type=int, default=None, help='timed repetitions per path (default 3, quick 1)')
    parser.add_argument('--only', default='', help='comma-separated substrings of "kind cfg res": run only those')
    parser.add_argument('--batch-scale', type=float, default=None, help='batch multiplier (default 1, quick 1/8)')
    parser.add_argument('--profile', action='store_true', help='also profile our path (top operators, conv share)')
    parser.add_argument('--bf16', action='store_true',
                        help='also time inference with --precision=bf16 (opt-in, not exact: its own columns)')
    parser.add_argument('--malloc', choices=['keep', 'system'], default='keep',
                        help="allocator for the whole run: 'keep' = the CLIs' CPU setting (default), 'system' = glibc's")
    parser.add_argument('--out', default=os.path.join(BENCH_DIR, 'results', 'run_all.json'))
    args = parser.parse_args(argv)
    reps = args.reps or (1 if args.quick else 3)
    scale = args.batch_scale or (1 / 8 if args.quick else 1)
    configs = QUICK if args.quick else list(OFFICIAL_SECONDS)
    if args.only:
        configs = [c for c in configs if any(key in f'{c[0]} {c[1]} {c[2]}' for key in args.only.split(','))]

    malloc_applied = cpu_malloc.keep_freed_memory() if args.malloc == 'keep' else False
    info = machine_info()
    print(f'{info["cpu"]}, torch {info["torch"]}, {info["torch_threads"]} threads, load {info["loadavg_start"]}')
    header = (f'{"kind":9s} {"cfg":11s} {"res":>4s} {"batch":>5s} {"ours s":>8s} {"plain s":>8s} {"official s":>10s} '
              f'{"plain/ours":>10s} {"offic/ours":>10s} {"rel diff":>8s}' +
              (f' {"bf16 s":>8s} {"plain/bf16":>10s} {"bf16 diff":>9s}' if args.bf16 else ''))
    print(header + '\n' + '-' * len(header), flush=True)
    rows = []
    for kind, cfg, resolution, batch in configs:
        run_batch = max(1, round(batch * scale))
        official = OFFICIAL_SECONDS[(kind, cfg, resolution, batch)] * run_batch / batch
        seconds, diffs = time_config(kind, cfg, resolution, run_batch, reps, bf16=args.bf16)
        ours, plain, diff = seconds['ours'], seconds['plain'], diffs.get('ours')
        rows.append(dict(kind=kind, cfg=cfg, resolution=resolution, batch=run_batch, official_batch=batch,
                         ours_s=ours, plain_s=plain, official_s=official, official_scaled=run_batch != batch,
                         plain_over_ours=plain / ours, official_over_ours=official / ours, max_rel_diff=diff))
        mark = '~' if run_batch != batch else ' '
        line = (f'{kind:9s} {cfg:11s} {resolution:4d} {run_batch:5d} {ours:8.2f} {plain:8.2f} {mark}{official:9.2f} '
                f'{plain / ours:9.2f}x {official / ours:9.2f}x {"-" if diff is None else f"{diff:8.1e}":>8s}')
        if 'bf16' in seconds:
            rows[-1].update(bf16_s=seconds['bf16'], plain_over_bf16=plain / seconds['bf16'],
                            bf16_max_rel_diff=diffs['bf16'])
            line += f' {seconds["bf16"]:8.2f} {plain / seconds["bf16"]:9.2f}x {diffs["bf16"]:8.1e}'
        print(line, flush=True)
        if args.profile:
            rows[-1]['profile'] = profiled = profile_ours(kind, cfg, resolution, run_batch)
            print(f'    profile: convolutions {profiled["conv_share"]:.0%} of {profiled["total_s"]:.2f} s; ' +
                  ', '.join(f'{name.replace("aten::", "")} {share:.0%}' for name, _s, share in profiled['top']),
                  flush=True)
            rows[-1]['conv_roofline'] = roof = conv_roofline(kind, cfg, resolution, run_batch)
            print(f'    dense convolutions {roof["dense_s"]:.2f} s of {roof["total_s"]:.2f} s '
                  f'({roof["dense_s"] / roof["total_s"]:.0%}) at {roof["dense_gflops_per_s"]:.0f} GFLOP/s, '
                  f'depthwise (FIR) {roof["depthwise_s"]:.2f} s; plain / dense = {plain / roof["dense_s"]:.2f}x '
                  f'(the most plain / ours can reach without fewer multiplies)', flush=True)
    print('s = median seconds per forward (inference) or per iteration (training); ~ = official figure scaled '
          f'linearly to the batch; rel diff = max |ours - plain| / max |plain| of the images; allocator: {args.malloc}')
    info['loadavg_end'] = os.getloadavg()
    _write_json(args.out, dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(), machine=info,
                               settings=dict(quick=args.quick, reps=reps, batch_scale=scale, profile=args.profile,
                                             malloc=args.malloc, malloc_settings_applied=malloc_applied,
                                             bf16=args.bf16,
                                             inference_channels=INFERENCE_CHANNELS,
                                             training_channels=TRAINING_CHANNELS,
                                             switches=[f'{m.__name__}.{n}' for m, n in FAST_SWITCHES]),
                               official_source='issue 15 (official code, idle, 2 threads)', rows=rows))
    print(f'wrote {args.out}')
    return 0

#----------------------------------------------------------------------------

if __name__ == '__main__':
    sys.exit(main())
