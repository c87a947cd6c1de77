"""Benchmark: on-disk size per network snapshot, with the resume state (newest snapshot) and without (older ones).

    python bench/bench_snapshot_size.py [--configs=demo-cpu,demo-cuda,sg2-256] [--snapshots=50] [--out=FILE]

For each configuration it builds G, D and G_ema as train.py would, gives both Adam optimizers their moments (one
step on random gradients), writes a snapshot through the training loop's own code (official keys + resume state),
then strips the resume state as training/snapshots.py does when the next snapshot arrives. The baseline, measured
in the same run, is the previous behaviour: every snapshot carries the resume state. Printed per configuration:
MiB of the newest and of an older snapshot, their ratio, the seconds the strip takes, and the disk used by a run of
--snapshots snapshots before, now (keep all) and with --snap-keep=2.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import train  # noqa: E402
from training import snapshots  # noqa: E402
from training import training_loop as tl  # noqa: E402

# name -> (train.py options, resolution). demo-*: demo.py's presets (32x32); sg2-256: the official 256x256 StyleGAN2.
CONFIGS = {
    'demo-cpu': (dict(cfg='stylegan2', cbase=512, cmax=64, map_depth=2, batch=16), 32),
    'demo-cuda': (dict(cfg='stylegan2', cbase=16384, cmax=256, map_depth=2, batch=64), 32),
    'sg2-256': (dict(cfg='stylegan2', cbase=16384, cmax=512, map_depth=8, batch=64), 256),
}


class _NoLoss:
    """The loss's state (pl_mean) is a scalar; leaving it out changes the sizes by bytes."""


def build_state(train_opts, resolution):
    """A TrainingState whose optimizers hold Adam moments, as after the first training iteration."""
    info = dict(name='bench', resolution=resolution, size=1000, has_labels=False)
    options = train.build_training_options(info, data='bench', gpus=1, gamma=1, aug='noaug', metrics=[],
                                           **train_opts)
    dataset = type('Dataset', (), dict(label_dim=0, resolution=resolution, num_channels=3))()
    G, D, G_ema, augment_pipe = tl.construct_networks(dataset, options['G_kwargs'], options['D_kwargs'], None, 0,
                                                      torch.device('cpu'))
    phases, optimizers = tl.build_phases(G, D, options['G_opt_kwargs'], options['D_opt_kwargs'],
                                         options['G_reg_interval'], options['D_reg_interval'])
    for module, opt in ((G, optimizers['G']), (D, optimizers['D'])):
        for param in module.parameters():
            param.grad = torch.randn_like(param)
        opt.step()
    return tl.TrainingState(G, D, G_ema, augment_pipe, _NoLoss(), phases, optimizers, options['training_set_kwargs'])


def measure(name, num_snapshots, temp_dir):
    train_opts, resolution = CONFIGS[name]
    state = build_state(train_opts, resolution)
    rank_states = [state.rank_state(tl.capture_rng_state(torch.device('cpu')))]
    data = state.snapshot_data(state.resume_state(rank_states, 1, train_opts['batch'], 0.0))
    path = os.path.join(temp_dir, f'{name}.pkl')
    snapshots.write_pickle_atomic(path, data)
    newest = os.path.getsize(path)
    start = time.perf_counter()
    snapshots.strip_resume_state(path, tl.RESUME_STATE_KEY)
    strip_sec = time.perf_counter() - start
    older = os.path.getsize(path)
    os.remove(path)
    num_params = sum(p.numel() for module in (state.G, state.D) for p in module.parameters())
    return dict(config=name, resolution=resolution, train_opts=train_opts, G_D_params=num_params,
                newest_mib=newest / 2**20, older_mib=older / 2**20, older_over_newest=older / newest,
                strip_sec=strip_sec, snapshots=num_snapshots,
                run_mib_before=num_snapshots * newest / 2**20,
                run_mib_keep_all=(newest + (num_snapshots - 1) * older) / 2**20,
                run_mib_keep_2=(newest + older) / 2**20)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--configs', default='demo-cpu,demo-cuda,sg2-256')
    parser.add_argument('--snapshots', type=int, default=50, help='snapshots in the run whose disk use is shown')
    parser.add_argument('--out', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results',
                                                      'snapshot-size.json'))
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as temp_dir:
        for name in args.configs.split(','):
            if name not in CONFIGS:
                sys.exit(f'bench_snapshot_size: --configs: unknown {name!r}; choose from {", ".join(CONFIGS)}')
            results.append(measure(name, args.snapshots, temp_dir))
    print(f'{"config":<10s} {"newest MiB":>10s} {"older MiB":>10s} {"ratio":>6s} {"strip s":>8s} '
          f'{"run MiB before":>15s} {"keep all":>10s} {"keep 2":>8s}   ({args.snapshots} snapshots)')
    for r in results:
        print(f'{r["config"]:<10s} {r["newest_mib"]:>10.2f} {r["older_mib"]:>10.2f} {r["older_over_newest"]:>6.2f} '
              f'{r["strip_sec"]:>8.2f} {r["run_mib_before"]:>15.1f} {r["run_mib_keep_all"]:>10.1f} '
              f'{r["run_mib_keep_2"]:>8.1f}')
    machine = dict(python=platform.python_version(), torch=torch.__version__, platform=platform.platform(),
                   processor=platform.processor(), cpu_count=os.cpu_count())
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, 'wt') as f:
        json.dump(dict(machine=machine, baseline='every snapshot with the resume state (before --snap-keep)',
                       results=results), f, indent=2)
    print(f'Wrote {args.out}')


if __name__ == '__main__':
    main()
