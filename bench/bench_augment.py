"""Benchmark: ADA augment pipe throughput, relative to one discriminator forward + backward at the same size.

    python bench/bench_augment.py [--device=cpu|cuda] [--resolutions=64,256] [--pipes=bgc] [--p=1] [--repeats=3]
                                  [--out=FILE]

For each resolution and pipe preset it times, at probability p (default 1: every transform drawn for every
image, the most work the pipe does; images whose draws are all the identity skip the work), the pipe's forward
and its forward + backward (gradients to the images, as when D's loss reaches G), and a StyleGAN2 D forward +
backward on the same batch. The ratio says what fraction of D's cost ADA adds per D evaluation. Writes JSON
(default bench/results/augment_<device>_p<p>.json) and prints a table.
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
from training import augment, networks_stylegan2  # noqa: E402

# Per resolution: (channel_base, channel_max, batch on CPU, batch on GPU), as in bench_training.py.
CONFIGS = {32: (16384, 512, 8, 64), 64: (16384, 512, 8, 64), 128: (16384, 512, 4, 32), 256: (16384, 512, 2, 32)}

#----------------------------------------------------------------------------

def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)

def _median_seconds(fn, device, repeats):
    fn()  # Warm-up.
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)

def bench_case(resolution, pipe_name, p, device, repeats):
    """Seconds per batch for the pipe (forward; forward + backward) and for D forward + backward."""
    channel_base, channel_max, cpu_batch, gpu_batch = CONFIGS[resolution]
    batch = gpu_batch if device.type == 'cuda' else cpu_batch
    images = torch.rand([batch, 3, resolution, resolution], device=device) * 2 - 1
    pipe = augment.AugmentPipe(**augment.augpipe_specs[pipe_name]).to(device)
    pipe.p.fill_(p)
    D = networks_stylegan2.Discriminator(c_dim=0, img_resolution=resolution, img_channels=3,
                                         channel_base=channel_base, channel_max=channel_max).to(device)
    labels = torch.zeros([batch, 0], device=device)

    def pipe_forward():
        with torch.no_grad():
            pipe(images)

    def pipe_forward_backward():
        x = images.detach().requires_grad_(True)
        pipe(x).sum().backward()

    def d_forward_backward():
        x = images.detach().requires_grad_(True)
        D(x, labels).sum().backward()

    result = dict(resolution=resolution, pipe=pipe_name, p=p, batch=batch,
                  pipe_fwd_sec=_median_seconds(pipe_forward, device, repeats),
                  pipe_fwd_bwd_sec=_median_seconds(pipe_forward_backward, device, repeats),
                  d_fwd_bwd_sec=_median_seconds(d_forward_backward, device, repeats))
    result['pipe_img_per_sec'] = batch / result['pipe_fwd_sec']
    result['pipe_fwd_bwd_over_d_fwd_bwd'] = result['pipe_fwd_bwd_sec'] / result['d_fwd_bwd_sec']
    return result

#----------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--resolutions', default='64,256')
    parser.add_argument('--pipes', default='bgc')
    parser.add_argument('--p', type=float, default=1.0)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--out', default=None)
    args = parser.parse_args()

    device = torch.device(args.device)
    resolutions = [int(r) for r in args.resolutions.split(',')]
    unknown = [r for r in resolutions if r not in CONFIGS]
    if unknown:
        parser.error(f'--resolutions: {unknown} not in {sorted(CONFIGS)}')
    pipes = args.pipes.split(',')
    bad_pipes = [p for p in pipes if p not in augment.augpipe_specs]
    if bad_pipes:
        parser.error(f'--pipes: {bad_pipes} not in {sorted(augment.augpipe_specs)}')

    rows = [bench_case(r, name, args.p, device, args.repeats) for r in resolutions for name in pipes]
    print(f'{"res":>5} {"pipe":>7} {"p":>5} {"batch":>5} {"pipe fwd s":>11} {"img/s":>8} {"pipe f+b s":>11} '
          f'{"D f+b s":>9} {"pipe/D":>7}')
    for row in rows:
        print(f'{row["resolution"]:>5} {row["pipe"]:>7} {row["p"]:>5.2f} {row["batch"]:>5} '
              f'{row["pipe_fwd_sec"]:>11.4f} {row["pipe_img_per_sec"]:>8.1f} {row["pipe_fwd_bwd_sec"]:>11.4f} '
              f'{row["d_fwd_bwd_sec"]:>9.4f} {row["pipe_fwd_bwd_over_d_fwd_bwd"]:>7.3f}')

    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results',
                                   f'augment_{device.type}_p{args.p:g}.json')
    os.makedirs(os.path.dirname(out), exist_ok=True)
    meta = dict(torch=torch.__version__, device=str(device), threads=torch.get_num_threads(),
                machine=platform.machine(), processor=platform.processor(),
                gpu=torch.cuda.get_device_name(device) if device.type == 'cuda' else None)
    dnnlib.util.write_file_atomic(out, lambda f: json.dump(dict(meta=meta, results=rows), f, indent=2), mode='w')
    print(f'wrote {out}')

if __name__ == '__main__':
    main()
