"""Benchmark: one training iteration and G inference throughput (StyleGAN2, StyleGAN3-T/-R), fast vs reference ops.

    python bench/bench_training.py [--cfg=stylegan2|stylegan3-t|stylegan3-r] [--device=cpu|cuda]
        [--resolutions=32,64,256] [--repeats=3] [--out=FILE]

For each resolution it times, in the same process, the default op path (CUDA kernels where the tensor is on a GPU
and the plugin builds) and the all-reference path (DNNLIB_OPS=ref), and prints their ratio. On a CPU both paths
run the same PyTorch code, so a ratio near 1.00 is expected there; the figure that matters comes from a GPU.

An "iteration" is what the training loop does per minibatch with lazy regularisation amortised:
Gmain + Dmain + Greg/4 + Dreg/16 for StyleGAN2, Gmain + Dmain + Dreg/16 for StyleGAN3 (no path-length
regularisation; -R with the blur of D's inputs at its initial sigma) -- forward, backward and Adam step of the
phase's network. Channel counts and batch sizes per device are in CONFIGS and recorded in the JSON: on a GPU the
official ones (--cbase/--cmax as train.py; -R doubles G's), on a CPU smaller ones so that a run takes minutes.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import dnnlib  # noqa: E402
from training import loss as loss_module  # noqa: E402
from training import networks_stylegan2  # noqa: E402

# Per --cfg and resolution: --cbase, --cmax and batch, per device type. StyleGAN2 uses the same channels on both.
_SG2 = {res: dict(cpu=dict(cbase=16384, cmax=512, batch=cpu_batch), cuda=dict(cbase=16384, cmax=512, batch=64))
        for res, cpu_batch in ((32, 4), (64, 4), (256, 2))}
_SG3 = {64: dict(cpu=dict(cbase=4096, cmax=64, batch=2), cuda=dict(cbase=32768, cmax=512, batch=32)),
        256: dict(cpu=dict(cbase=2048, cmax=32, batch=1), cuda=dict(cbase=32768, cmax=512, batch=16))}
CONFIGS = {'stylegan2': _SG2, 'stylegan3-t': _SG3, 'stylegan3-r': _SG3}
DEFAULT_RESOLUTIONS = {('stylegan2', 'cpu'): '32,64', ('stylegan2', 'cuda'): '32,64,256'}
PHASE_WEIGHTS = {'stylegan2': {'Gmain': 1, 'Dmain': 1, 'Greg': 1 / 4, 'Dreg': 1 / 16},
                 'stylegan3': {'Gmain': 1, 'Dmain': 1, 'Dreg': 1 / 16}}
SG3_BLUR_INIT_SIGMA = 10  # -R's initial blur of D's inputs (train.py preset); timed at full strength.

#----------------------------------------------------------------------------

def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _median_seconds(fn, device, repeats):
    fn()  # Warm-up (plugin build, cudnn autotune, allocator).
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build_networks(cfg, resolution, device):
    """G and D of `cfg` at `resolution` with the channels of CONFIGS for device's type, on `device`."""
    setting = CONFIGS[cfg][resolution][device.type]
    common = dict(c_dim=0, img_resolution=resolution, img_channels=3)
    D = networks_stylegan2.Discriminator(channel_base=setting['cbase'], channel_max=setting['cmax'], **common)
    if cfg == 'stylegan2':
        G = networks_stylegan2.Generator(z_dim=512, w_dim=512, mapping_kwargs=dict(num_layers=8),
                                         channel_base=setting['cbase'], channel_max=setting['cmax'],
                                         fused_modconv_default='inference_only', **common)  # As --cfg=stylegan2.
    else:
        from training import networks_stylegan3
        multiplier, extra = (2, dict(conv_kernel=1, use_radial_filters=True)) if cfg == 'stylegan3-r' else (1, {})
        G = networks_stylegan3.Generator(z_dim=512, w_dim=512, mapping_kwargs=dict(num_layers=2),
                                         channel_base=setting['cbase'] * multiplier,
                                         channel_max=setting['cmax'] * multiplier,
                                         magnitude_ema_beta=0.5 ** (setting['batch'] / 20000), **extra, **common)
    return G.to(device).train(), D.to(device).train()


def phase_weights(cfg):
    return PHASE_WEIGHTS['stylegan2' if cfg == 'stylegan2' else 'stylegan3']


def build_loss(cfg, G, D, device):
    """The loss train.py configures for `cfg` (gamma 1)."""
    if cfg == 'stylegan2':
        return loss_module.StyleGAN2Loss(device, G, D, r1_gamma=1, pl_weight=2, style_mixing_prob=0.9,
                                         pl_no_weight_grad=True)
    blur = dict(blur_init_sigma=SG3_BLUR_INIT_SIGMA, blur_fade_kimg=200) if cfg == 'stylegan3-r' else {}
    return loss_module.StyleGAN2Loss(device, G, D, r1_gamma=1, pl_weight=0, style_mixing_prob=0, **blur)


def time_iteration(cfg, G, D, batch, device, repeats):
    """Seconds per amortised training iteration, and per phase."""
    loss = build_loss(cfg, G, D, device)
    opts = {'G': torch.optim.Adam(G.parameters(), lr=0.002, betas=(0.0, 0.99)),
            'D': torch.optim.Adam(D.parameters(), lr=0.002, betas=(0.0, 0.99))}
    real = torch.randn([batch, 3, G.img_resolution, G.img_resolution], device=device)
    c = torch.zeros([batch, 0], device=device)

    def run(phase):
        opt = opts[phase[0]]
        opt.zero_grad(set_to_none=True)
        loss.accumulate_gradients(phase, real, c, torch.randn([batch, G.z_dim], device=device), c, gain=1,
                                  cur_nimg=0)
        opt.step()

    weights = phase_weights(cfg)
    per_phase = {phase: _median_seconds(lambda p=phase: run(p), device, repeats) for phase in weights}
    total = sum(per_phase[phase] * weight for phase, weight in weights.items())
    return total, per_phase


def time_inference(G, batch, device, repeats):
    """Generated images per second with G in eval mode (fused modconv, const noise)."""
    G = G.eval()
    z = torch.randn([batch, G.z_dim], device=device)
    c = torch.zeros([batch, 0], device=device)

    def run():
        with torch.no_grad():
            G(z, c, noise_mode='const')

    seconds = _median_seconds(run, device, repeats)
    G.train()
    return batch / seconds


def measure(cfg, resolution, device, repeats, ops_mode):
    """Time one resolution with DNNLIB_OPS=ops_mode ('' = default fast path, 'ref' = reference)."""
    os.environ['DNNLIB_OPS'] = ops_mode
    torch.manual_seed(0)
    G, D = build_networks(cfg, resolution, device)
    batch = CONFIGS[cfg][resolution][device.type]['batch']
    iteration_s, per_phase = time_iteration(cfg, G, D, batch, device, repeats)
    return dict(batch=batch, iteration_ms=iteration_s * 1e3, phase_ms={k: v * 1e3 for k, v in per_phase.items()},
                train_img_per_s=batch / iteration_s, G_img_per_s=time_inference(G, batch, device, repeats))


def machine_info(device):
    info = dict(python=platform.python_version(), torch=torch.__version__, cuda=torch.version.cuda,
                platform=platform.platform(), processor=platform.processor(), cpu_count=os.cpu_count(),
                torch_threads=torch.get_num_threads(), device=str(device))
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
    return info

#----------------------------------------------------------------------------

def bench_cfg(cfg, resolutions, device, repeats):
    """Rows (one per resolution) of fast vs reference timings for one --cfg; prints the table as it goes."""
    rows = []
    print(f'--cfg={cfg} on {device}' + (' (CPU: "fast" and "ref" both run the reference PyTorch ops; the CUDA '
                                        'kernels need GPU tensors, so the ratio is ~1 by construction)'
                                        if device.type == 'cpu' else ''), flush=True)
    print(f'{"res":>5} {"batch":>5} {"cbase":>6} {"cmax":>5} {"iter ms (fast)":>15} {"iter ms (ref)":>14} '
          f'{"speedup":>8} {"G img/s (fast)":>15} {"G img/s (ref)":>14} {"speedup":>8}', flush=True)
    for resolution in resolutions:
        if resolution not in CONFIGS[cfg]:
            raise SystemExit(f'--resolutions: {resolution} has no setting for --cfg={cfg} '
                             f'(choose from {sorted(CONFIGS[cfg])})')
        fast = measure(cfg, resolution, device, repeats, '')
        ref = measure(cfg, resolution, device, repeats, 'ref')
        setting = CONFIGS[cfg][resolution][device.type]
        row = dict(cfg=cfg, resolution=resolution, setting=setting, fast=fast, ref=ref,
                   iteration_speedup=ref['iteration_ms'] / fast['iteration_ms'],
                   inference_speedup=fast['G_img_per_s'] / ref['G_img_per_s'])
        rows.append(row)
        print(f'{resolution:5d} {fast["batch"]:5d} {setting["cbase"]:6d} {setting["cmax"]:5d} '
              f'{fast["iteration_ms"]:15.1f} {ref["iteration_ms"]:14.1f} {row["iteration_speedup"]:7.2f}x '
              f'{fast["G_img_per_s"]:15.1f} {ref["G_img_per_s"]:14.1f} {row["inference_speedup"]:7.2f}x', flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--cfg', default='stylegan2',
                        help='stylegan2, stylegan3-t, stylegan3-r, or a comma list of them (default stylegan2)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--resolutions', default=None,
                        help='default: StyleGAN2 32,64,256 on a GPU, 32,64 on a CPU; StyleGAN3 64,256 / 64')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--out', default=None,
                        help='JSON file (default bench/results/training-<device>.json for stylegan2, '
                             'training-<cfgs>-<device>.json otherwise)')
    args = parser.parse_args(argv)
    cfgs = args.cfg.split(',')
    for cfg in cfgs:
        if cfg not in CONFIGS:
            parser.error(f'--cfg={cfg}: choose from {", ".join(CONFIGS)}')
    device = torch.device(args.device)
    saved_ops = os.environ.get('DNNLIB_OPS')
    rows = []
    try:
        for cfg in cfgs:
            default = DEFAULT_RESOLUTIONS.get((cfg, device.type), '64,256' if device.type == 'cuda' else '64')
            resolutions = [int(r) for r in (args.resolutions or default).split(',')]
            rows += bench_cfg(cfg, resolutions, device, args.repeats)
    finally:
        if saved_ops is None:
            os.environ.pop('DNNLIB_OPS', None)
        else:
            os.environ['DNNLIB_OPS'] = saved_ops
    name = f'training-{device.type}.json' if cfgs == ['stylegan2'] else f'training-{"-".join(cfgs)}-{device.type}.json'
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results', name)
    os.makedirs(os.path.dirname(out) or '.', exist_ok=True)
    result = dict(benchmark='training', cfgs=cfgs, machine=machine_info(device), repeats=args.repeats,
                  cpu_note='on a CPU both "fast" and "ref" run the reference PyTorch ops',
                  phase_weights={cfg: phase_weights(cfg) for cfg in cfgs},
                  configs={cfg: CONFIGS[cfg] for cfg in cfgs}, results=rows)
    dnnlib.util.write_file_atomic(out, lambda f: json.dump(result, f, indent=2), mode='w')
    print(f'Wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
