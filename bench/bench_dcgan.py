"""Benchmark: DCGAN training throughput (img/s) next to StyleGAN2's at the same resolution, in one run.

    python bench/bench_dcgan.py [--device=cpu|cuda] [--resolutions=32,64] [--repeats=3] [--out=FILE]

An iteration is one D step and one G step (--loss=nsgan; wgan-gp's n_critic 5 would be five D steps per G step),
forward, backward and Adam step, for DCGAN with the paper's widths (--cbase=4096 --cmax=1024: 1024 channels at 4x4)
and z of 100. The StyleGAN2 baseline is bench_training.py's amortised iteration (Gmain + Dmain + Greg/4 + Dreg/16)
with its channels and batch for the device; both are reported as training images per second, and the ratio
DCGAN / StyleGAN2 is the number to read. Writes bench/results/dcgan-<device>.json.
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_training  # noqa: E402
from training import loss_classic  # noqa: E402
from training import networks_dcgan  # noqa: E402

DCGAN_WIDTHS = dict(channel_base=4096, channel_max=1024)   # Radford et al. 2016, Fig. 1 at 64x64.

#----------------------------------------------------------------------------

def time_dcgan_iteration(resolution, batch, device, repeats):
    """Seconds per DCGAN iteration (Dboth + Gboth, nsgan) at `resolution` with `batch` images."""
    torch.manual_seed(0)
    G = networks_dcgan.Generator(z_dim=100, c_dim=0, img_resolution=resolution, img_channels=3,
                                 **DCGAN_WIDTHS).to(device).train()
    D = networks_dcgan.Discriminator(c_dim=0, img_resolution=resolution, img_channels=3,
                                     **DCGAN_WIDTHS).to(device).train()
    loss = loss_classic.ClassicGANLoss(device, G, D, loss='nsgan')
    opts = {'G': (G, torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))),
            'D': (D, torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999)))}
    real = torch.randn([batch, 3, resolution, resolution], device=device)
    c = torch.zeros([batch, 0], device=device)

    def iteration():
        for phase in ('Dboth', 'Gboth'):
            module, opt = opts[phase[0]]
            module.requires_grad_(True)
            opt.zero_grad(set_to_none=True)
            loss.accumulate_gradients(phase, real, c, torch.randn([batch, 100], device=device), c, gain=1,
                                      cur_nimg=0)
            opt.step()
            module.requires_grad_(False)

    return bench_training._median_seconds(iteration, device, repeats)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--resolutions', default=None, help='default 32 on a CPU, 32,64 on a GPU')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--out', default=None, help='JSON file (default bench/results/dcgan-<device>.json)')
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    resolutions = [int(r) for r in (args.resolutions or ('32,64' if device.type == 'cuda' else '32')).split(',')]
    rows = []
    print(f'{"res":>5} {"batch":>5} {"DCGAN img/s":>12} {"SG2 img/s":>10} {"DCGAN/SG2":>10}', flush=True)
    for resolution in resolutions:
        if resolution not in bench_training.CONFIGS['stylegan2']:
            raise SystemExit(f'--resolutions: {resolution} has no StyleGAN2 baseline setting '
                             f'(choose from {sorted(bench_training.CONFIGS["stylegan2"])})')
        sg2 = bench_training.measure('stylegan2', resolution, device, args.repeats, '')
        batch = sg2['batch']
        dcgan_img_s = batch / time_dcgan_iteration(resolution, batch, device, args.repeats)
        row = dict(resolution=resolution, batch=batch, dcgan_train_img_per_s=dcgan_img_s,
                   stylegan2_train_img_per_s=sg2['train_img_per_s'], stylegan2_setting=bench_training.CONFIGS[
                       'stylegan2'][resolution][device.type], dcgan_widths=DCGAN_WIDTHS,
                   ratio_dcgan_over_stylegan2=dcgan_img_s / sg2['train_img_per_s'])
        rows.append(row)
        print(f'{resolution:5d} {batch:5d} {dcgan_img_s:12.1f} {sg2["train_img_per_s"]:10.1f} '
              f'{row["ratio_dcgan_over_stylegan2"]:9.1f}x', flush=True)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results', f'dcgan-{device.type}.json')
    os.makedirs(os.path.dirname(out), exist_ok=True)
    result = dict(machine=bench_training.machine_info(device), repeats=args.repeats,
                  iteration='DCGAN: Dboth + Gboth (nsgan); StyleGAN2: Gmain + Dmain + Greg/4 + Dreg/16', rows=rows)
    tmp = f'{out}.tmp{os.getpid()}'
    with open(tmp, 'w') as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, out)
    print(f'Wrote {out}')


if __name__ == '__main__':
    main()
