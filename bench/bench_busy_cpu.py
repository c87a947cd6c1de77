"""A tiny CPU training run on an idle machine and under a fixed synthetic background load (issue 15, target 2).

    python bench/bench_busy_cpu.py [--kimg 3] [--load-procs N] [--quick] [--out FILE]

Runs train.py (StyleGAN2, 16x16 builtin shapes, cbase 256, cmax 32, batch 4, no augmentation, no metrics) three
times as a subprocess and reports the wall time of each:
  idle      the new defaults (--threads=0: OMP_NUM_THREADS or the physical cores, narrowed when starved; loader
            workers only on cores the training threads leave free);
  busy      the same command while --load-procs busy-loop processes run (default: half the CPUs this process may
            use, at least one; each spins until the run ends, bounded by a deadline);
  busy-fixed  under the same load with a fixed team of torch's default width (--threads=N: never narrowed), as
            before this option existed (loader workers follow the new rule in both).
The figures are busy / idle (target <= 1.5) and busy-fixed / idle. The machine's own load average is recorded at the
start and end: on a shared machine "idle" is only as idle as the neighbours let it be.
Writes JSON (machine, versions, settings, times, ratios) to --out.
"""

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
sys.path.insert(0, ROOT)

#----------------------------------------------------------------------------

def _spin(deadline):
    """A bounded busy loop: one core's worth of load until `deadline` (time.time() value)."""
    while time.time() < deadline:
        sum(range(1000))


class BackgroundLoad:
    """`count` busy-loop processes while the block runs (each ends by itself at most `max_seconds` later)."""

    def __init__(self, count, max_seconds):
        self.count, self.max_seconds, self.procs = count, max_seconds, []

    def __enter__(self):
        deadline = time.time() + self.max_seconds
        self.procs = [multiprocessing.Process(target=_spin, args=(deadline,), daemon=True) for _ in range(self.count)]
        for proc in self.procs:
            proc.start()
        return self

    def __exit__(self, *exc):
        for proc in self.procs:
            proc.terminate()
            proc.join()


def make_dataset(folder, count=64, resolution=16):
    """`count` builtin:shapes images as PNGs in `folder`."""
    import PIL.Image
    from training.shapes_dataset import render_shape_image
    os.makedirs(folder, exist_ok=True)
    for idx in range(count):
        image, _label = render_shape_image(idx, resolution)
        PIL.Image.fromarray(image).save(os.path.join(folder, f'img{idx:08d}.png'))
    return folder


def train_seconds(data, outdir, kimg, extra_args, env_overrides):
    """Wall seconds of one train.py run (exits 1 with its output if it fails)."""
    args = [sys.executable, os.path.join(ROOT, 'train.py'), f'--outdir={outdir}', '--cfg=stylegan2', f'--data={data}',
            '--gpus=1', '--batch=4', '--gamma=1', '--cbase=256', '--cmax=32', '--map-depth=2', '--mbstd-group=2',
            '--aug=noaug', '--metrics=none', f'--kimg={kimg}', '--tick=1', '--snap=1000',
            '--device=cpu'] + extra_args
    env = dict(os.environ, **env_overrides)
    for key, value in env_overrides.items():
        if value is None:
            env.pop(key, None)
    start = time.perf_counter()
    result = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f'bench_busy_cpu: train.py failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}')
    status = [line for line in result.stdout.splitlines() if line.startswith('tick ')]
    return seconds, status[-1] if status else ''


def main(argv=None):
    from torch_utils import threads
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--kimg', type=int, default=None, help='length of each run (default 3, quick 1)')
    parser.add_argument('--load-procs', type=int, default=max(1, threads.available_cpus() // 2))
    parser.add_argument('--quick', action='store_true', help='short runs (1 kimg)')
    parser.add_argument('--out', default=os.path.join(BENCH_DIR, 'results', 'busy_cpu.json'))
    args = parser.parse_args(argv)
    kimg = args.kimg or (1 if args.quick else 3)
    info = dict(cpu=platform.processor(), platform=platform.platform(), python=platform.python_version(),
                available_cpus=threads.available_cpus(), physical_cores=threads.physical_cores_available(),
                omp_num_threads=os.environ.get('OMP_NUM_THREADS'), loadavg_start=os.getloadavg())
    import torch
    info['torch'] = torch.__version__
    new = (['--threads=0', '--workers=3'], {})
    old = ([f'--threads={torch.get_num_threads()}', '--workers=3'], {})
    rows = {}
    with tempfile.TemporaryDirectory() as temp:
        data = make_dataset(os.path.join(temp, 'data'))
        rows['idle'] = train_seconds(data, os.path.join(temp, 'runs'), kimg, *new)
        print(f'idle      {rows["idle"][0]:7.1f} s   {rows["idle"][1]}', flush=True)
        for name, (extra, env) in [('busy', new), ('busy-fixed', old)]:
            with BackgroundLoad(args.load_procs, max_seconds=20 * rows['idle'][0] + 60):
                rows[name] = train_seconds(data, os.path.join(temp, 'runs'), kimg, extra, env)
            print(f'{name:9s} {rows[name][0]:7.1f} s   {rows[name][1]}', flush=True)
    ratios = {name: rows[name][0] / rows['idle'][0] for name in ('busy', 'busy-fixed')}
    print(f'busy / idle = {ratios["busy"]:.2f}x (target <= 1.5x); busy-fixed / idle = {ratios["busy-fixed"]:.2f}x; '
          f'{args.load_procs} busy-loop process(es), {kimg:g} kimg')
    info['loadavg_end'] = os.getloadavg()
    result = dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(), machine=info,
                  settings=dict(kimg=kimg, load_procs=args.load_procs, new_args=new[0], old_args=old[0]),
                  seconds={name: row[0] for name, row in rows.items()},
                  last_status={name: row[1] for name, row in rows.items()}, ratios=ratios)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + '.tmp', 'w', encoding='utf-8') as file:
        json.dump(result, file, indent=1)
    os.replace(args.out + '.tmp', args.out)
    print(f'wrote {args.out}')
    return 0

#----------------------------------------------------------------------------

if __name__ == '__main__':
    sys.exit(main())
