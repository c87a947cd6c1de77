"""Benchmark: one StyleGAN2 training iteration and G inference throughput, fast ops vs all-reference ops.

    python bench/bench_training.py [--device=cpu|cuda] [--resolutions=32,64,256] [--repeats=3] [--out=FILE]

For each resolution it times, in the same process, the default op path (CUDA kernels where the tensor is on a GPU
and the plugin builds) and the all-reference path (DNNLIB_OPS=ref), and prints their ratio. On a CPU both paths
run the same PyTorch code, so a ratio near 1.00 is expected there; the figure that matters comes from a GPU.

An "iteration" is what the training loop does per minibatch with lazy regularisation amortised:
Gmain + Dmain + Greg/4 + Dreg/16 (forward, backward and Adam step of the phase's network).
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

from training import loss as loss_module  # noqa: E402
from training import networks_stylegan2  # noqa: E402

# Per resolution: (channel_base, channel_max, batch on CPU, batch on GPU). The CPU batches keep one run short.
CONFIGS = {32: (16384, 512, 4, 64), 64: (16384, 512, 4, 64), 256: (16384, 512, 2, 32)}
PHASE_WEIGHTS = {'Gmain': 1, 'Dmain': 1, 'Greg': 1 / 4, 'Dreg': 1 / 16}

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


def build_networks(resolution, device):
    """A StyleGAN2 G and D at `resolution` with the channels of CONFIGS, on `device`."""
    channel_base, channel_max = CONFIGS[resolution][:2]
    common = dict(c_dim=0, img_resolution=resolution, img_channels=3, channel_base=channel_base,
                  channel_max=channel_max)
    G = networks_stylegan2.Generator(z_dim=512, w_dim=512, mapping_kwargs=dict(num_layers=8),
                                     fused_modconv_default='inference_only', **common)  # As --cfg=stylegan2.
    D = networks_stylegan2.Discriminator(**common)
    return G.to(device).train(), D.to(device).train()


def time_iteration(G, D, batch, device, repeats):
    """Seconds per amortised training iteration, and per phase."""
    loss = loss_module.StyleGAN2Loss(device, G, D, r1_gamma=1, pl_weight=2, style_mixing_prob=0.9,
                                     pl_no_weight_grad=True)
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

    per_phase = {phase: _median_seconds(lambda p=phase: run(p), device, repeats) for phase in PHASE_WEIGHTS}
    total = sum(per_phase[phase] * weight for phase, weight in PHASE_WEIGHTS.items())
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


def measure(resolution, device, repeats, ops_mode):
    """Time one resolution with DNNLIB_OPS=ops_mode ('' = default fast path, 'ref' = reference)."""
    os.environ['DNNLIB_OPS'] = ops_mode
    torch.manual_seed(0)
    G, D = build_networks(resolution, device)
    batch = CONFIGS[resolution][3 if device.type == 'cuda' else 2]
    iteration_s, per_phase = time_iteration(G, D, batch, device, repeats)
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

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--resolutions', default=None, help='default: 32,64,256 on a GPU, 32,64 on a CPU')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--out', default=None, help='JSON file (default bench/results/training-<device>.json)')
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    resolutions = [int(r) for r in (args.resolutions or ('32,64,256' if device.type == 'cuda' else '32,64')).split(',')]
    saved_ops = os.environ.get('DNNLIB_OPS')
    rows = []
    print(f'{"res":>5} {"batch":>5} {"iter ms (fast)":>15} {"iter ms (ref)":>14} {"speedup":>8} '
          f'{"G img/s (fast)":>15} {"G img/s (ref)":>14} {"speedup":>8}', flush=True)
    for resolution in resolutions:
        fast = measure(resolution, device, args.repeats, '')
        ref = measure(resolution, device, args.repeats, 'ref')
        row = dict(resolution=resolution, fast=fast, ref=ref,
                   iteration_speedup=ref['iteration_ms'] / fast['iteration_ms'],
                   inference_speedup=fast['G_img_per_s'] / ref['G_img_per_s'])
        rows.append(row)
        print(f'{resolution:5d} {fast["batch"]:5d} {fast["iteration_ms"]:15.1f} {ref["iteration_ms"]:14.1f} '
              f'{row["iteration_speedup"]:7.2f}x {fast["G_img_per_s"]:15.1f} {ref["G_img_per_s"]:14.1f} '
              f'{row["inference_speedup"]:7.2f}x', flush=True)
    if saved_ops is None:
        os.environ.pop('DNNLIB_OPS', None)
    else:
        os.environ['DNNLIB_OPS'] = saved_ops
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results',
                                   f'training-{device.type}.json')
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + '.tmp', 'w') as f:
        json.dump(dict(benchmark='training', machine=machine_info(device), repeats=args.repeats,
                       phase_weights=PHASE_WEIGHTS, configs=CONFIGS, results=rows), f, indent=2)
    os.replace(out + '.tmp', out)
    print(f'Wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
