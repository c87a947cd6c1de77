"""Does the demo's generator draw the four shapes? A classifier trained here scores its fakes (issue 15, item 3).

    python bench/bench_demo_quality.py --network=PKL [--baseline=PKL] [--out FILE]
    python bench/bench_demo_quality.py --run [--minutes=8] [--baseline=PKL]   # runs demo.py first, scores its snapshot

1. Trains a small CNN (metrics/shapes_classifier.py) on builtin:shapes at the snapshot's resolution, offline, on the
   CPU, and reports its accuracy on held-out images (indices 1,000,000 on; the demo dataset uses 0..4999).
2. Scores --num-fakes fakes of each snapshot's G_ema (z from seed --seed, psi 1, noise_mode const):
     confident  fraction of fakes whose top class has probability >= --threshold (0.9)
     entropy    entropy of the predicted-class histogram in bits (2 = the four classes equally often)
     spread     pixel distance between two fakes of the same predicted class, relative to real images (1.0 = as
                varied as the data; near 0 = one image per class, which confidence and entropy alone can reward)
   The target of issue 15: confident >= 0.8 and entropy >= 1.8 after `make demo` (8 minutes, idle 2-core CPU).
3. Baselines measured in the same run with the same classifier: held-out real images (the ceiling), Gaussian noise
   (the floor), and --baseline (e.g. the old demo recipe's snapshot) when given.
For each snapshot the run directory beside it (training_options.json, stats.jsonl) gives the recipe, kimg trained
and seconds per kimg. Prints a table; writes JSON (machine, versions, settings, rows) to --out.
"""

import argparse
import datetime
import glob
import json
import os
import platform
import re
import subprocess
import sys
import time

import torch

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
sys.path.insert(0, ROOT)

import legacy  # noqa: E402 (needs the repository root on sys.path)
from metrics import shapes_classifier  # noqa: E402

#----------------------------------------------------------------------------


def load_G(path):
    """G_ema of a snapshot pickle (safe loader), on the CPU, eval mode."""
    with open(path, 'rb') as file:
        return legacy.load_network_pkl(file)['G_ema'].eval().requires_grad_(False).cpu()


@torch.no_grad()
def generate_fakes(G, num_images, seed, batch_size=100):
    """num_images fakes [N, 3, R, R] float in [-1, 1] (clamped), z ~ N(0, I) from torch seed `seed`; a conditional G
    (c_dim > 0, e.g. demo.py --cond=1) gets classes drawn uniformly, so that entropy still measures what G draws."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn([num_images, G.z_dim], generator=generator)
    c = torch.zeros([num_images, G.c_dim])
    if G.c_dim:
        c[torch.arange(num_images), torch.randint(G.c_dim, [num_images], generator=generator)] = 1
    return torch.cat([G(z[i:i + batch_size], c[i:i + batch_size], truncation_psi=1, noise_mode='const').clamp(-1, 1)
                      for i in range(0, num_images, batch_size)])


def run_info(snapshot):
    """What the run directory beside `snapshot` says: recipe, kimg trained, seconds per kimg (None when absent)."""
    run_dir = os.path.dirname(os.path.abspath(snapshot))
    match = re.search(r'network-snapshot-(\d+)\.pkl$', snapshot)
    info = dict(snapshot=os.path.abspath(snapshot), kimg=int(match.group(1)) if match else None)
    try:
        with open(os.path.join(run_dir, 'training_options.json'), encoding='utf-8') as file:
            options = json.load(file)
        info['recipe'] = dict(batch=options.get('batch_size'), glr=options['G_opt_kwargs']['lr'],
                              dlr=options['D_opt_kwargs']['lr'], gamma=options['loss_kwargs'].get('r1_gamma'),
                              cbase=options['G_kwargs'].get('channel_base'),
                              cmax=options['G_kwargs'].get('channel_max'),
                              map_depth=options['G_kwargs'].get('mapping_kwargs', {}).get('num_layers'),
                              ema_kimg=options.get('ema_kimg'), ema_rampup=options.get('ema_rampup'),
                              threads=options.get('num_threads'))
        with open(os.path.join(run_dir, 'stats.jsonl'), encoding='utf-8') as file:
            ticks = [json.loads(line) for line in file if line.strip()]
    except (OSError, ValueError, KeyError):
        return info
    ticks = [t for t in ticks if t.get('Progress/kimg', {}).get('mean', 0) <= (info['kimg'] or 1e9) + 1]
    sec_per_kimg = sorted(t['Timing/sec_per_kimg']['mean'] for t in ticks[1:] if 'Timing/sec_per_kimg' in t)
    if sec_per_kimg:
        info['sec_per_kimg_median'] = sec_per_kimg[len(sec_per_kimg) // 2]
    if ticks and 'Timing/total_sec' in ticks[-1]:
        info['total_sec'] = ticks[-1]['Timing/total_sec']['mean']
        info['kimg_at_last_tick'] = ticks[-1]['Progress/kimg']['mean']
    return info


def run_demo(minutes, outdir):
    """Run demo.py (CPU) for `minutes`; return the newest snapshot it wrote."""
    command = [sys.executable, os.path.join(ROOT, 'demo.py'), f'--minutes={minutes:g}', f'--outdir={outdir}',
               '--device=cpu']
    print('$', ' '.join(command), flush=True)
    if subprocess.run(command, cwd=ROOT).returncode != 0:
        sys.exit('bench_demo_quality: demo.py failed (see above)')
    snapshots = sorted(glob.glob(os.path.join(outdir, 'training-runs', '*', 'network-snapshot-*.pkl')))
    if not snapshots:
        sys.exit(f'bench_demo_quality: demo.py wrote no snapshot under {outdir}')
    return snapshots[-1]

#----------------------------------------------------------------------------


def score_rows(model, resolution, networks, args):
    """One row per image source: real (held out), noise, then each (name, snapshot) of `networks`."""
    rows = []
    offset = shapes_classifier.TEST_INDEX_OFFSET
    reals, _labels = shapes_classifier.real_images(range(offset, offset + args.num_fakes), resolution)
    noise = torch.randn(reals.shape, generator=torch.Generator().manual_seed(args.seed)).clamp(-1, 1)
    real_spread = shapes_classifier.within_class_spread(reals, shapes_classifier.predict(model, reals))

    def score(images):
        probs = shapes_classifier.predict(model, images)
        return dict(**shapes_classifier.quality_score(probs, args.threshold),
                    spread=shapes_classifier.within_class_spread(images, probs) / real_spread)

    for name, images in [('real images (held out)', reals), ('Gaussian noise', noise)]:
        rows.append(dict(name=name, **score(images)))
    for name, path in networks:
        G = load_G(path)
        if G.img_resolution != resolution:
            sys.exit(f'bench_demo_quality: {path} is {G.img_resolution}x{G.img_resolution}, the first network is '
                     f'{resolution}x{resolution}; compare snapshots of one resolution per run')
        start = time.time()
        row = dict(name=name, **score(generate_fakes(G, args.num_fakes, args.seed)), **run_info(path))
        row['score_seconds'] = time.time() - start
        rows.append(row)
    return rows


def print_table(rows, accuracy, target):
    print(f'\nclassifier accuracy on held-out real images: {accuracy:.4f}')
    print(f'{"images":<26} {"confident":>9} {"entropy":>8} {"spread":>6} {"kimg":>6} {"s/kimg":>7}  classes '
          f'(circle/square/triangle/star)')
    for row in rows:
        kimg = f'{row["kimg"]:6d}' if row.get('kimg') is not None else f'{"-":>6}'
        spk = f'{row["sec_per_kimg_median"]:7.1f}' if row.get('sec_per_kimg_median') else f'{"-":>7}'
        fractions = '/'.join(f'{f:.2f}' for f in row['class_fractions'])
        print(f'{row["name"]:<26} {row["confident"]:9.3f} {row["entropy_bits"]:8.3f} {row["spread"]:6.2f} {kimg} '
              f'{spk}  {fractions}')
    print(f'target: confident >= {target[0]}, entropy >= {target[1]} bits')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--network', help='snapshot pickle to score')
    parser.add_argument('--run', action='store_true', help='run demo.py first and score its final snapshot')
    parser.add_argument('--minutes', type=float, default=8, help='demo.py --minutes with --run')
    parser.add_argument('--demo-outdir', default=os.path.join(ROOT, 'demo-out', 'bench'),
                        help='demo.py --outdir with --run')
    parser.add_argument('--baseline', action='append', default=[], metavar='PKL',
                        help='another snapshot scored in the same run (e.g. the old demo recipe); repeatable')
    parser.add_argument('--num-fakes', type=int, default=1000, help='fakes (and real/noise images) scored')
    parser.add_argument('--threshold', type=float, default=0.9, help='confidence threshold')
    parser.add_argument('--seed', type=int, default=0, help='seed of the latents and of the classifier')
    parser.add_argument('--classifier-images', type=int, default=4000, help='classifier training images')
    parser.add_argument('--classifier-epochs', type=int, default=12, help='classifier training epochs')
    parser.add_argument('--out', default=os.path.join(BENCH_DIR, 'results', 'demo_quality.json'))
    args = parser.parse_args()
    if args.run == (args.network is not None):
        parser.error('give exactly one of --network=PKL and --run')
    for path in ([args.network] if args.network else []) + args.baseline:
        if not os.path.isfile(path):
            parser.error(f'no such snapshot: {path}')

    network = run_demo(args.minutes, args.demo_outdir) if args.run else args.network
    networks = [('demo (new recipe)' if args.run else 'network', network)]
    networks += [(f'baseline {i}' if len(args.baseline) > 1 else 'baseline', path)
                 for i, path in enumerate(args.baseline)]
    resolution = load_G(network).img_resolution
    start = time.time()
    model = shapes_classifier.train_classifier(resolution, num_images=args.classifier_images,
                                               epochs=args.classifier_epochs, seed=args.seed)
    train_seconds = time.time() - start
    accuracy = shapes_classifier.test_accuracy(model, resolution)
    rows = score_rows(model, resolution, networks, args)
    print_table(rows, accuracy, (0.8, 1.8))

    result = dict(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        machine=dict(cpu=platform.processor(), platform=platform.platform(), logical_cpus=os.cpu_count(),
                     loadavg_end=os.getloadavg(), omp_num_threads=os.environ.get('OMP_NUM_THREADS')),
        versions=dict(python=platform.python_version(), torch=torch.__version__),
        settings=dict(vars(args), resolution=resolution),
        classifier=dict(test_accuracy=accuracy, train_seconds=train_seconds, torch_threads=torch.get_num_threads()),
        rows=rows, target=dict(confident=0.8, entropy_bits=1.8))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    temp = args.out + '.tmp'
    with open(temp, 'w', encoding='utf-8') as file:
        json.dump(result, file, indent=2)
    os.replace(temp, args.out)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
