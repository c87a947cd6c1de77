"""Benchmark: does a tiny CPU CycleGAN run on builtin:shapes2colors learn the translation?

    python bench/bench_cyclegan.py [--kimg=4] [--ngf=8] [--blocks=3] [--images=1000] [--out=FILE]

It writes the built-in pair (32x32, --images per domain), trains `train.py --cfg=cyclegan` (the same options
builder and loop) on CPU with a snapshot every kimg, then reads every snapshot back with the safe loader and
translates 64 held-out scenes (indices shapes2colors.EVAL_INDEX_BASE + i, never in the dataset). The stated check:

  fraction classified B   G_AB(A) images whose warm/cool score (mean (B - R) / (max - min) over saturated pixels,
                          shapes2colors.warm_cool_score) is > 0, i.e. that look like domain B; BtoA likewise < 0.
  L1 to the true pair     mean |G_AB(A_i) - B_i| in 0..255 units: B_i is the exact translation of A_i (same
                          scene, hue turned), which the unpaired training never sees.

The baseline, measured in the same run, is the identity map (translation = input): its L1 to the true pair and
its fraction classified B (0: it leaves A warm). The check passes when the L1 to the true pairs falls from the
first snapshot (after one iteration: noise, whose faint tint may already score as either domain, so the fraction
alone does not show learning) to the last, the last L1 is below the identity map's, and at least 90% of the last
snapshot's translations are classified as the target domain, in both directions. Prints a table and writes
bench/results/cyclegan.json (machine, versions, settings, per-snapshot figures, ratios to the baseline).
"""

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import dataset_tool_unpaired  # noqa: E402
import train_cyclegan  # noqa: E402
from training import cyclegan_loop  # noqa: E402
from training import cyclegan_snapshot  # noqa: E402
from training import shapes2colors  # noqa: E402
from training import snapshots  # noqa: E402
from training import unpaired_dataset  # noqa: E402

NUM_EVAL = 64
RESOLUTION = 32

#----------------------------------------------------------------------------

def eval_pairs():
    """(A, B): [NUM_EVAL, 3, 32, 32] float in [-1, 1] of held-out scenes; B[i] is the translation of A[i]."""
    pairs = [[shapes2colors.render_pair_image(shapes2colors.EVAL_INDEX_BASE + i, RESOLUTION, domain)
              for i in range(NUM_EVAL)] for domain in 'AB']
    return [torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2)).float() / 127.5 - 1 for images in pairs]


def to_uint8(img):
    return ((img.numpy() + 1) * 127.5).round().clip(0, 255)


def translation_figures(translated, target, want_b):
    """dict(frac, l1): fraction of `translated` ([N, 3, H, W] in [-1, 1]) scoring as the target domain, and the
    mean absolute difference to the true pairs `target`, in 0..255 units."""
    scores = shapes2colors.warm_cool_score(to_uint8(translated))
    frac = float(np.mean(scores > 0) if want_b else np.mean(scores < 0))
    return dict(frac=frac, l1=float(np.abs(to_uint8(translated) - to_uint8(target)).mean()))


@torch.no_grad()
def evaluate_snapshot(path, real_A, real_B):
    data = cyclegan_snapshot.load_cyclegan_snapshot(path)
    return dict(AtoB=translation_figures(data['G_AB'](real_A), real_B, want_b=True),
                BtoA=translation_figures(data['G_BA'](real_B), real_A, want_b=False))

#----------------------------------------------------------------------------

def train(args, temp_dir):
    """Write the dataset, run the loop; returns (run_dir, seconds of training)."""
    data = os.path.join(temp_dir, 'shapes2colors-32x32.zip')
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        dataset_tool_unpaired.convert_unpaired(shapes2colors.BUILTIN_PAIR, None, data, args.images, None, None,
                                               'error')
    info = unpaired_dataset.describe_unpaired(data)
    options = train_cyclegan.build_cyclegan_options(info, data=data, batch=args.batch, ngf=args.ngf, ndf=args.ngf,
                                                    blocks=args.blocks, kimg=args.kimg, tick=1, snap=1, workers=0,
                                                    device='cpu', seed=args.seed)
    options.pop('run_desc')
    run_dir = os.path.join(temp_dir, 'run')
    os.makedirs(run_dir)
    options['run_dir'] = run_dir
    start = time.time()
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        cyclegan_loop.cyclegan_loop(**options)
    status = [line for line in log.getvalue().splitlines() if line.startswith('tick ')]
    print('\n'.join(status))
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        for name in ('fakes_init.png', 'reals.png') + tuple(n for n in os.listdir(run_dir) if n.startswith('fakes')):
            with open(os.path.join(run_dir, name), 'rb') as src, open(os.path.join(args.keep, name), 'wb') as dst:
                dst.write(src.read())
    return run_dir, time.time() - start, options


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--kimg', type=float, default=4)
    parser.add_argument('--ngf', type=int, default=8)
    parser.add_argument('--blocks', type=int, default=3)
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--images', type=int, default=1000)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, default=1, help='torch CPU threads (1: best on a shared machine)')
    parser.add_argument('--keep', help='Copy the fakes grids into this folder')
    parser.add_argument('--out', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results',
                                                      'cyclegan.json'))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    real_A, real_B = eval_pairs()
    baseline = dict(AtoB=translation_figures(real_A, real_B, want_b=True),
                    BtoA=translation_figures(real_B, real_A, want_b=False))
    with tempfile.TemporaryDirectory() as temp_dir:
        run_dir, train_sec, options = train(args, temp_dir)
        rows = []
        for path in snapshots.list_snapshots(run_dir):
            kimg = int(os.path.basename(path).split('-')[-1].split('.')[0])
            rows.append(dict(kimg=kimg, **evaluate_snapshot(path, real_A, real_B)))
    print(f'\n{"snapshot kimg":>13} {"AtoB frac B":>12} {"AtoB L1":>8} {"BtoA frac A":>12} {"BtoA L1":>8}')
    print(f'{"identity":>13} {baseline["AtoB"]["frac"]:>12.3f} {baseline["AtoB"]["l1"]:>8.2f} '
          f'{baseline["BtoA"]["frac"]:>12.3f} {baseline["BtoA"]["l1"]:>8.2f}')
    for row in rows:
        print(f'{row["kimg"]:>13d} {row["AtoB"]["frac"]:>12.3f} {row["AtoB"]["l1"]:>8.2f} '
              f'{row["BtoA"]["frac"]:>12.3f} {row["BtoA"]["l1"]:>8.2f}')
    first, last = rows[0], rows[-1]
    beats_identity = all(last[d]['l1'] < baseline[d]['l1'] for d in ('AtoB', 'BtoA'))
    learned = beats_identity and all(last[d]['l1'] < first[d]['l1'] and last[d]['frac'] >= 0.9
                                     for d in ('AtoB', 'BtoA'))
    ratios = {d: last[d]['l1'] / baseline[d]['l1'] for d in ('AtoB', 'BtoA')}
    print(f'\ntraining {train_sec:.0f} s ({train_sec / args.kimg:.0f} s/kimg); learned (first -> last snapshot): '
          f'{learned}; last L1 / identity L1: AtoB {ratios["AtoB"]:.3f}, BtoA {ratios["BtoA"]:.3f}')
    result = dict(benchmark='cyclegan', machine=dict(platform=platform.platform(), processor=platform.processor(),
                  cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads()),
                  versions=dict(python=platform.python_version(), torch=torch.__version__, numpy=np.__version__),
                  settings=dict(vars(args), resolution=RESOLUTION, num_eval=NUM_EVAL, lr=options['lr'],
                                decay_kimg=options['decay_kimg'], pool=options['pool_size']),
                  baseline_identity=baseline, snapshots=rows, train_sec=train_sec, learned=learned,
                  beats_identity=beats_identity, l1_ratio_to_identity=ratios)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    tmp_path = args.out + '.tmp'
    with open(tmp_path, 'w') as f:
        json.dump(result, f, indent=2)
    os.replace(tmp_path, args.out)
    print(f'Wrote {args.out}')
    return 0 if learned else 1


if __name__ == '__main__':
    sys.exit(main())
