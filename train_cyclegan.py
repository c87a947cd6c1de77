"""Train a CycleGAN (Zhu et al. 2017) on an unpaired dataset: `train.py --cfg=cyclegan` lands here.

    python dataset_tool.py --source=builtin:shapes2colors --dest=datasets/shapes2colors-32x32.zip
    python train.py --cfg=cyclegan --outdir=training-runs --data=datasets/shapes2colors-32x32.zip \\
        --batch=4 --ngf=8 --ndf=8 --blocks=3 --kimg=4 --tick=1 --snap=1 --workers=0

CycleGAN has its own options (no --gamma, --aug, --cbase ...), so train.py hands the whole command line to this
click command when it sees --cfg=cyclegan. `build_cyclegan_options()` is the pure config builder; its dict is
training_options.json and the keyword arguments of training.cyclegan_loop.cyclegan_loop(). The run directory,
process launching (--gpus, torchrun) and --resume=<run dir> work as for StyleGAN (they are train.py's).
"""

import copy
import json
import os
import sys

import click

import dnnlib

TRANSLATION_METRICS = ('fid_AtoB', 'fid_BtoA')  # As metrics/translation_fid.py (kept here: --help needs no torch).

OPTION_DEFAULTS = dict(
    outdir=None, cfg='cyclegan', data=None, gpus=1, batch=1, kimg=200, decay_kimg=None, tick=1, snap=10, seed=0,
    ngf=64, ndf=64, blocks=None, lr=0.0002, lambda_cycle=10.0, lambda_identity=0.5, pool=50, mirror=False,
    load_size=None, workers=3, threads=0, device='cpu', resume=None, desc=None, max_minutes=None, snap_keep=None,
    nobench=False, dry_run=False, metrics=(), detector_dir=None)

#----------------------------------------------------------------------------
# The pure config builder.

def wants_cyclegan(argv):
    """True when a train.py command line asks for --cfg=cyclegan (either spelling)."""
    return '--cfg=cyclegan' in argv or any(a == '--cfg' and b == 'cyclegan' for a, b in zip(argv, argv[1:]))


def run_desc(opts, dataset_name):
    """cyclegan-<dataset>-gpus<G>-batch<B>-ngf<n>[-<desc>]."""
    desc = f'cyclegan-{dataset_name}-gpus{opts.gpus}-batch{opts.batch}-ngf{opts.ngf}'
    return desc + (f'-{opts.desc}' if opts.desc else '')


def build_cyclegan_options(dataset_info, **opts):
    """Options (python names) -> JSON-serialisable keyword arguments of cyclegan_loop(). Pure; raises UsageError.

    dataset_info: dict(name, folders, resolution, image_shape, sizes) from unpaired_dataset.describe_unpaired()."""
    from train import UsageError
    from training import cyclegan_loss, networks_cyclegan, unpaired_dataset
    opts = dnnlib.EasyDict({**OPTION_DEFAULTS, **opts})
    if opts.batch % opts.gpus != 0:
        raise UsageError(f'--batch={opts.batch} must be a multiple of --gpus={opts.gpus}')
    decay_kimg = opts.kimg / 2 if opts.decay_kimg is None else opts.decay_kimg
    if decay_kimg > opts.kimg:
        raise UsageError(f'--decay-kimg={decay_kimg:g} is longer than the whole run (--kimg={opts.kimg:g})')
    resolution = dataset_info['resolution']
    if opts.load_size is not None and not resolution <= opts.load_size <= unpaired_dataset.MAX_LOAD_RATIO * resolution:
        raise UsageError(f'--load-size={opts.load_size}: the images are {resolution} px (shorter side); give a size '
                         f'from {resolution} (no jitter) to {unpaired_dataset.MAX_LOAD_RATIO * resolution} '
                         f'(the paper: 286 for 256 px images)')
    folders = dataset_info['folders']
    c = dnnlib.EasyDict()
    c.training_set_kwargs = {
        name: unpaired_dataset.domain_dataset_kwargs(opts.data, folder, xflip=opts.mirror, random_seed=opts.seed)
        for name, folder in zip('AB', folders)}
    c.data_loader_kwargs = dict(pin_memory=True, prefetch_factor=2, num_workers=opts.workers)
    num_blocks = opts.blocks or networks_cyclegan.default_num_blocks(dataset_info['resolution'])
    c.G_kwargs = dict(class_name='training.networks_cyclegan.ResnetGenerator', ngf=opts.ngf, num_blocks=num_blocks)
    c.D_kwargs = dict(class_name='training.networks_cyclegan.PatchDiscriminator', ndf=opts.ndf)
    c.update(lr=opts.lr, betas=list(cyclegan_loss.PAPER_BETAS), lambda_cycle=opts.lambda_cycle,
             identity_ratio=opts.lambda_identity, pool_size=opts.pool, random_seed=opts.seed, num_gpus=opts.gpus,
             batch_size=opts.batch, total_kimg=opts.kimg, decay_kimg=decay_kimg, kimg_per_tick=opts.tick,
             image_snapshot_ticks=opts.snap, network_snapshot_ticks=opts.snap, resume_pkl=opts.resume,
             snap_keep=opts.snap_keep, max_minutes=opts.max_minutes, cudnn_benchmark=not opts.nobench,
             device=opts.device, num_threads=opts.threads, run_desc=run_desc(opts, dataset_info['name']))
    if opts.load_size not in (None, resolution):  # Only when it jitters, so that older options files stay as they are.
        c.load_size = opts.load_size
    metrics = list(opts.metrics or [])
    others = [metric for metric in metrics if metric not in TRANSLATION_METRICS]
    if others:
        raise UsageError(f'--metrics={",".join(others)}: a CycleGAN run measures {", ".join(TRANSLATION_METRICS)} '
                         '(FID of translated images; the StyleGAN metrics need a generator of noise)')
    if metrics:
        c.metrics = metrics
    if opts.detector_dir is not None:
        c.detector_dir = opts.detector_dir
    return json.loads(json.dumps(c))

#----------------------------------------------------------------------------
# Processes: train.py's launcher (spawn or torchrun, launcher-death watch, failed-run cleanup), the CycleGAN loop.

def launch(options, outdir, dry_run, run_start_time):
    """Run directory + training_options.json (rank 0), then one process per GPU running cyclegan_loop(); expected
    failures end as one-line click errors, as in train.py."""
    import train
    train.launch_or_explain(options, outdir, dry_run=dry_run, run_start_time=run_start_time, loop='cyclegan',
                            print_summary=_print_summary)


def _print_summary(options, outdir, dry_run):
    print('\nTraining options:')
    print(json.dumps(options, indent=2))
    print()
    print(f'Output directory:    {options.get("run_dir", os.path.join(outdir, "<next id>-" + options["run_desc"]))}')
    print(f'Number of GPUs:      {options["num_gpus"]} ({options["device"]})')
    print(f'Batch size:          {options["batch_size"]} images of each domain')
    print(f'Training duration:   {options["total_kimg"]:g} kimg (lr decays over the last {options["decay_kimg"]:g})')
    print(f'Dataset path:        {options["training_set_kwargs"]["A"]["path"]}')
    print()
    if dry_run:
        print('Dry run; exiting.')

#----------------------------------------------------------------------------
# The command line.

EXAMPLES = """\b
Examples:
  # The built-in pair on CPU (a few minutes): warm shapes (A) <-> cool shapes (B).
  python dataset_tool.py --source=builtin:shapes2colors --dest=datasets/shapes2colors-32x32.zip
  python train.py --cfg=cyclegan --outdir=training-runs --data=datasets/shapes2colors-32x32.zip \\
      --batch=4 --ngf=8 --ndf=8 --blocks=3 --kimg=4 --tick=1 --snap=1 --workers=0
  # The paper's setting on horse2zebra at 256 px (200 epochs of 1334 images = 267 kimg, decay over the last half):
  python train.py --cfg=cyclegan --outdir=training-runs --data=datasets/horse2zebra-256x256.zip --kimg=267 \\
      --mirror=1 --load-size=286
  # Continue a run exactly:
  python train.py --cfg=cyclegan ... --resume=training-runs/00000-cyclegan-shapes2colors-32x32-gpus1-batch4-ngf8"""


@click.command(context_settings=dict(max_content_width=120), epilog=EXAMPLES)
@click.option('--cfg', type=click.Choice(['cyclegan']), default='cyclegan', show_default=True,
              help='Must be cyclegan (train.py dispatches here)')
@click.option('--outdir', help='Where to make the run directory', metavar='DIR', required=True)
@click.option('--data', help='Unpaired dataset: zip or folder with A/ and B/ (dataset_tool.py --source-b) or '
              'trainA/ and trainB/', metavar='[ZIP|DIR]', required=True)
@click.option('--gpus', help='Number of GPUs (processes)', metavar='INT', type=click.IntRange(min=1), default=1,
              show_default=True)
@click.option('--batch', help='Images of each domain per iteration, all GPUs (paper: 1)', metavar='INT',
              type=click.IntRange(min=1), default=1, show_default=True)
@click.option('--kimg', help='Training length in thousands of images of each domain', metavar='KIMG',
              type=click.FloatRange(min=0, min_open=True), default=200, show_default=True)
@click.option('--decay-kimg', help='The lr falls linearly to zero over the last this many kimg  [default: half of '
              '--kimg, as the paper]', metavar='KIMG', type=click.FloatRange(min=0))
@click.option('--tick', help='How often to print progress', metavar='KIMG', type=click.FloatRange(min=0,
              min_open=True), default=1, show_default=True)
@click.option('--snap', help='How often to save snapshots and fakes grids', metavar='TICKS',
              type=click.IntRange(min=1), default=10, show_default=True)
@click.option('--seed', help='Random seed', metavar='INT', type=click.IntRange(min=0), default=0, show_default=True)
@click.option('--ngf', help='Generator width (paper: 64)', metavar='INT', type=click.IntRange(min=1), default=64,
              show_default=True)
@click.option('--ndf', help='Discriminator width (paper: 64)', metavar='INT', type=click.IntRange(min=1), default=64,
              show_default=True)
@click.option('--blocks', help='Residual blocks  [default: 6 below 256 px, 9 from 256 px]', metavar='INT',
              type=click.IntRange(min=1))
@click.option('--lr', help='Adam learning rate of G and D', metavar='FLOAT', type=click.FloatRange(min=0),
              default=0.0002, show_default=True)
@click.option('--lambda-cycle', help='Cycle-consistency weight', metavar='FLOAT', type=click.FloatRange(min=0),
              default=10.0, show_default=True)
@click.option('--lambda-identity', help='Identity weight as a fraction of --lambda-cycle (0 = off)',
              metavar='FLOAT', type=click.FloatRange(min=0), default=0.5, show_default=True)
@click.option('--pool', help='History of generated images for D (0 = off)', metavar='INT',
              type=click.IntRange(min=0), default=50, show_default=True)
@click.option('--mirror', help='Random x-flips of both domains', metavar='BOOL', type=bool, default=False,
              show_default=True)
@click.option('--load-size', help='Resize the images to this many px (shorter side), then crop a random window of '
              'their size: the paper\'s jitter (286 for 256 px images)  [default: off]', metavar='PX',
              type=click.IntRange(min=1))
@click.option('--workers', help='DataLoader worker processes per domain', metavar='INT', type=click.IntRange(min=0),
              default=3, show_default=True)
@click.option('--threads', help='CPU threads per process; 0 = OMP_NUM_THREADS or the physical cores, fewer when '
              'other processes starve the run', metavar='INT', type=click.IntRange(min=0), default=0,
              show_default=True)
@click.option('--device', help='Where to train: auto = CUDA if available, else CPU',
              type=click.Choice(['auto', 'cpu', 'cuda', 'mps']), default='auto', show_default=True)
@click.option('--resume', help='Resume from a CycleGAN snapshot or a run directory (its latest snapshot)',
              metavar='[PATH|DIR]')
@click.option('--desc', help='String to include in the run directory name', metavar='STR')
@click.option('--max-minutes', help='Wall-clock limit of the run, ending with a final snapshot', metavar='MINUTES',
              type=click.FloatRange(min=0))
@click.option('--snap-keep', help='Keep only the newest N snapshots', metavar='N', type=click.IntRange(min=1))
@click.option('--nobench', help='Disable cuDNN benchmarking', metavar='BOOL', type=bool, default=False)
@click.option('--metrics', help='Translation metrics at each snapshot, on the training data: fid_AtoB, fid_BtoA  '
              '[default: none]', metavar='[NAME|A,B|none]', callback=lambda _ctx, _param, value: [
                  name for name in (value or '').split(',') if name and name.lower() != 'none'])
@click.option('--detector-dir', help='Folder holding the metric detector file (inception-2015-12-05.pkl), looked in '
              'before the cache and the download', metavar='DIR')
@click.option('-n', '--dry-run', help='Print training options and exit', is_flag=True)
def cli(**opts):
    """Train a CycleGAN (unpaired image-to-image translation, Zhu et al. 2017)."""
    import train
    from training import training_loop, unpaired_dataset
    try:
        opts['device'] = train.resolve_device(opts['device'])
        if opts['resume'] is not None:
            opts['resume'] = training_loop.find_latest_snapshot(opts['resume'])
        try:
            dataset_info = unpaired_dataset.describe_unpaired(opts['data'])
        except (IOError, OSError, ValueError) as err:
            raise train.UsageError(f'--data={opts["data"]}: {err}') from err
        options = build_cyclegan_options(dataset_info, **opts)
        if opts['resume'] is not None:
            _check_resume(opts['resume'], options, dataset_info['image_shape'][0])
        warning = _check_detectors(options, opts['dry_run'])
    except (train.UsageError, FileNotFoundError, RuntimeError) as err:
        raise click.ClickException(str(err)) from err
    if warning is not None:
        click.echo(warning, err=True)
    launch(copy.deepcopy(options), opts['outdir'], opts['dry_run'], train.process_start_time())


def _check_detectors(options, dry_run):
    """The detector file of --metrics must be at hand at start, not at the first snapshot (a dry run only warns:
    it returns the message instead of raising)."""
    import train
    if not options.get('metrics'):
        return None
    from metrics import metric_main, metric_utils
    try:
        metric_main.check_metrics_available(options['metrics'], detector_dir=options.get('detector_dir'),
                                            download=not dry_run)
    except metric_utils.DetectorUnavailableError as err:
        message = f'--metrics={",".join(options["metrics"])}: {err}'
        if dry_run:
            return f'Warning: {message}'
        raise train.UsageError(message) from err
    return None


def _check_resume(path, options, img_channels):
    """Fail at start, in one line, when --resume is not a readable CycleGAN snapshot, has other network widths than
    this run, or has reached --kimg."""
    import train
    from torch_utils import pickle_checks
    from training import cyclegan_snapshot
    try:
        data = cyclegan_snapshot.load_cyclegan_snapshot(path)
    except (cyclegan_snapshot.NotCycleGANError, pickle_checks.UnsafePickleError,
            pickle_checks.CorruptPickleError) as err:
        raise train.UsageError(f'--resume: {err}') from err
    G, D = data['G_AB'], data['D_A']
    saved = dict(ngf=G.ngf, blocks=G.num_blocks, ndf=D.ndf, channels=G.img_channels)
    wanted = dict(ngf=options['G_kwargs']['ngf'], blocks=options['G_kwargs']['num_blocks'],
                  ndf=options['D_kwargs']['ndf'], channels=img_channels)
    diffs = [f'{key} {saved[key]} (run: {wanted[key]})' for key in saved if saved[key] != wanted[key]]
    if diffs:
        raise train.UsageError(f'--resume={path} has {", ".join(diffs)}; use the --ngf, --ndf, --blocks and '
                               'image mode of the run that wrote it')
    cur_nimg = (data.get(cyclegan_snapshot.RESUME_STATE_KEY) or {}).get('cur_nimg', 0)
    if cur_nimg >= round(options['total_kimg'] * 1000):
        raise train.UsageError(f'--kimg={options["total_kimg"]:g} is already reached: {path} is at '
                               f'{cur_nimg / 1000:g} kimg (--kimg counts from the start of the original run)')


def main(argv=None):
    """Entry point for train.py's dispatch: parse argv (default sys.argv[1:]) with the CycleGAN options."""
    cli.main(args=list(sys.argv[1:] if argv is None else argv), prog_name='train.py --cfg=cyclegan')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()
