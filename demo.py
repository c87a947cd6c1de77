"""`make demo`: build the built-in dataset, train a small StyleGAN2 for a fixed time, render images.

    python demo.py [--outdir=demo-out] [--minutes=8] [--device=auto] [--cfg=stylegan2|stylegan3-t|stylegan3-r|stylegan1]

Runs the same command lines a user types (dataset_tool.py, train.py, gen_images.py), so the demo exercises the real
tools. On a CPU the networks are tiny (32x32, 16 channels at full resolution, at most 64) so that shapes start to
appear within minutes; with a GPU the networks are larger and the same time buys far more training.
"""

import argparse
import glob
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.abspath(__file__))

# The train.py options of each device type (tick = kimg per status line, snap = ticks per snapshot; glr/dlr None =
# the --cfg default; extra = further train.py options). bench/bench_demo_quality.py scores what the CPU recipe draws
# in 8 minutes (README, Quickstart; bench/DEMO_RECIPES.md lists every recipe measured): glr=dlr=0.003 beat the default
# 0.002 at equal kimg; batch 8 did not pay for its extra CPU per kimg; without path-length regularisation and style
# mixing, with minibatch-std groups of 8 and narrow 32x32 layers (16 channels, 64 at 4x4 and 8x8), a kimg costs 0.78x
# the CPU of the previous recipe: a timed 8-minute demo trains 49 kimg instead of 38 and scores 0.73 / 1.58 bits
# instead of 0.71 / 1.52 (still short of issue 15's 0.8 / 1.8).
PRESETS = {
    'cpu': dict(batch=16, cbase=512, cmax=64, glr=0.003, dlr=0.003, gamma=0.05, tick=1, snap=10,
                extra=('--pl-weight=0', '--style-mixing=0', '--mbstd-group=8')),
    'cuda': dict(batch=64, cbase=16384, cmax=256, glr=None, dlr=None, gamma=0.05, tick=20, snap=5, extra=()),
    'mps': dict(batch=32, cbase=4096, cmax=64, glr=None, dlr=None, gamma=0.05, tick=2, snap=5, extra=()),
}
# The CPU widths above were measured for stylegan2 only; the other configs keep the widths they were tried with
# (StyleGAN3 derives its channel counts differently, and cbase=512 would leave it a few channels per layer).
CPU_WIDTHS_OTHER_CFGS = dict(cbase=2048, cmax=32)

#----------------------------------------------------------------------------

def run(args):
    """Run one of the repository's scripts with this interpreter; stop the demo if it fails."""
    print(f'\n$ python {" ".join(args)}', flush=True)
    result = subprocess.run([sys.executable] + args, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(f'demo: `{args[0]}` failed with exit code {result.returncode} (see its message above)')


def pick_device(name):
    import torch
    if name != 'auto':
        return name
    if torch.cuda.is_available():
        return 'cuda'
    if getattr(torch.backends, 'mps', None) is not None and torch.backends.mps.is_available():
        return 'mps'
    return 'cpu'


def newest_run_dir(runs_dir):
    run_dirs = sorted(d for d in glob.glob(os.path.join(runs_dir, '[0-9]' * 5 + '-*')) if os.path.isdir(d))
    if not run_dirs:
        sys.exit(f'demo: train.py made no run directory under {runs_dir}')
    return run_dirs[-1]


def train_args(data, runs_dir, device, minutes, cfg):
    preset = dict(PRESETS[device])
    if device == 'cpu' and cfg != 'stylegan2':
        preset.update(CPU_WIDTHS_OTHER_CFGS)
    rates = [f'--{name}={preset[name]:g}' for name in ('glr', 'dlr') if preset[name] is not None]
    return ['train.py', f'--outdir={runs_dir}', f'--cfg={cfg}', f'--data={data}', '--gpus=1',
            f'--batch={preset["batch"]}', f'--gamma={preset["gamma"]:g}', f'--cbase={preset["cbase"]}',
            f'--cmax={preset["cmax"]}', *rates, '--map-depth=2', '--mirror=1', '--aug=noaug', '--metrics=none',
            '--kimg=100000', f'--tick={preset["tick"]}', f'--snap={preset["snap"]}', f'--max-minutes={minutes:g}',
            f'--workers={0 if device == "cpu" else 2}', f'--device={device}', *preset['extra']]

#----------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--outdir', default=os.path.join(ROOT, 'demo-out'), help='where everything goes')
    parser.add_argument('--minutes', type=float, default=8, help='training time (wall clock)')
    parser.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda', 'mps'])
    parser.add_argument('--cfg', default='stylegan2', choices=['stylegan2', 'stylegan3-t', 'stylegan3-r', 'stylegan1'],
                        help='train.py --cfg (StyleGAN3 is several times slower per image on a CPU)')
    args = parser.parse_args()
    start = time.time()
    device = pick_device(args.device)
    data = os.path.join(args.outdir, 'shapes-32x32.zip')
    runs_dir = os.path.join(args.outdir, 'training-runs')
    images_dir = os.path.join(args.outdir, 'images')
    print(f'demo: training --cfg={args.cfg} on {device} for {args.minutes:g} minutes; output in {args.outdir}',
          flush=True)

    if not os.path.isfile(data):
        run(['dataset_tool.py', '--source=builtin:shapes', f'--dest={data}', '--max-images=5000',
             '--resolution=32x32'])
    run(train_args(data, runs_dir, device, args.minutes, args.cfg))
    run_dir = newest_run_dir(runs_dir)
    snapshot = sorted(glob.glob(os.path.join(run_dir, 'network-snapshot-*.pkl')))[-1]
    run(['gen_images.py', f'--network={snapshot}', '--seeds=0-15', f'--outdir={images_dir}', f'--device={device}'])

    fakes = sorted(glob.glob(os.path.join(run_dir, 'fakes[0-9]*.png')))
    print(f'\ndemo: done in {(time.time() - start) / 60:.1f} minutes.')
    print(f'  run directory:   {run_dir}')
    print(f'  real images:     {os.path.join(run_dir, "reals.png")}')
    print(f'  fakes at start:  {os.path.join(run_dir, "fakes_init.png")}')
    print(f'  fakes at end:    {fakes[-1] if fakes else "(none)"}')
    print(f'  snapshot:        {snapshot}')
    print(f'  rendered seeds:  {images_dir}/seed0000.png ... seed0015.png')
    continue_args = ' '.join(train_args(data, runs_dir, device, args.minutes, args.cfg)[1:])
    print(f'  continue it:     python train.py {continue_args} --resume={run_dir}')


if __name__ == '__main__':
    main()
