"""Train a StyleGAN1/2/3 generator: a thin click CLI over a pure config builder.

    python train.py --outdir=training-runs --cfg=stylegan3-t --data=datasets/afhqv2-512x512.zip \\
        --gpus=8 --batch=32 --gamma=8.2 --mirror=1

training/train_options.py's `build_training_options()` turns the options into a JSON-serialisable dict (the presets
of each --cfg live in one table, CONFIG_PRESETS); that dict becomes training_options.json and the keyword arguments
of training.training_loop.training_loop(). `--dry-run` prints it and exits. This module holds the edges: the
dataset, optional modules, devices, the run directory, the processes, and the click options.
"""

import copy
import importlib.util
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import zipfile

import click

import dnnlib
from dnnlib import cli
from training import training_loop
from training.train_options import (  # noqa: F401 (re-exported: tests and train_cyclegan.py use train.<name>)
    ADA_PIPE_KWARGS, CONFIG_PRESETS, WEIGHTS_ONLY_RESUME_OVERRIDES, UsageError,
    build_training_options)

_IMPORT_TIME = time.time()  # Fallback for process_start_time().

#----------------------------------------------------------------------------
# Edges: the dataset, optional modules, devices, the run directory.

def describe_dataset(data, cond=False):
    """dict(name, resolution (shorter side), size, has_labels, aspect ([width, height] / resolution)) of the
    dataset at `data`; errors name the option."""
    from training import dataset as dataset_module  # Imported here: --help should not need torch/PIL.
    if data is None:
        raise UsageError('--data is required (a dataset zip or folder made by dataset_tool.py)')
    try:
        dataset = dataset_module.ImageFolderDataset(path=data, use_labels=False, max_size=None, xflip=False)
        info = dict(name=dataset.name, resolution=dataset.resolution, size=len(dataset), has_labels=False,
                    aspect=dataset.aspect)
        if cond:
            info['has_labels'] = dataset_module.ImageFolderDataset(path=data, use_labels=True).has_labels
    except zipfile.BadZipFile as err:
        raise UsageError(f'--data={data}: {data} is not a readable zip archive ({err}); make the dataset with '
                         'dataset_tool.py') from err
    except (IOError, OSError, ValueError) as err:
        raise UsageError(f'--data={data}: {err}') from err
    return info


def check_modules_exist(options, dry_run=False):
    """Fail at start when --cfg, --aug or --metrics need a module or detector file this machine does not have.

    dry_run: only look for detector files (no download), and return the missing-file message as a warning (or
    None) instead of stopping, so that options can be checked offline."""
    for key in ('G_kwargs', 'D_kwargs'):
        module_name = options[key]['class_name'].rsplit('.', 1)[0]
        if importlib.util.find_spec(module_name) is None:
            raise UsageError(f'--cfg: needs {module_name.replace(".", "/")}.py, which this checkout does not have')
    try:
        training_loop.check_optional_modules(options['metrics'], options['augment_kwargs'])
    except ValueError as err:  # An unknown or CycleGAN-only metric name: one line, no traceback.
        raise UsageError(str(err)) from err
    if options['metrics']:
        from metrics import metric_main, metric_utils
        try:  # Detector files (Inception, VGG16) must be at hand now, not at the first snapshot.
            metric_main.check_metrics_available(options['metrics'], detector_dir=options.get('detector_dir'),
                                                 download=not dry_run)
        except metric_utils.DetectorUnavailableError as err:
            message = f'--metrics={",".join(options["metrics"])}: {err}'
            if dry_run:
                return (f'Warning: {message}\n(--dry-run looks only for local files; a real run tries to download '
                        'them and stops at start if it cannot.)')
            raise UsageError(message) from err
    return None


def check_outdir(outdir):
    """--outdir must be a folder, or a path where one can be made (fails before anything is created)."""
    path = os.path.abspath(outdir)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        raise UsageError(f'--outdir={outdir}: {path} is a file, not a folder; give a folder for the run directories')
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f'--outdir={outdir}: cannot create run directories in {path} (not writable)')


def check_resume_file(resume_pkl):
    """A --resume file that is plainly not a snapshot (text, empty, a zip such as a torch.save() file) fails
    before anything is created; deeper problems (truncated, mismatched) are found when the run loads it."""
    kind = cli.describe_non_pickle(resume_pkl) if os.path.isfile(resume_pkl) else None
    if kind is not None:
        raise UsageError(f'--resume={resume_pkl} is {kind}')


def metrics_available():
    try:
        return importlib.util.find_spec('metrics.metric_main') is not None
    except ImportError:
        return False


def resolve_device(device):
    """'auto' -> 'cuda' when a GPU is usable, else 'cpu'; explicit names are checked."""
    import torch
    if device == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if device == 'cuda' and not torch.cuda.is_available():
        raise UsageError('--device=cuda: no usable CUDA device here (use --device=cpu or auto)')
    if device == 'mps' and not (getattr(torch.backends, 'mps', None) and torch.backends.mps.is_available()):
        raise UsageError('--device=mps: MPS is not available here (use --device=cpu or auto)')
    return device


def make_run_dir(outdir, desc):
    """Create <outdir>/<next 5-digit id>-<desc> and return its path (retries if another process took the id)."""
    os.makedirs(outdir, exist_ok=True)
    while True:
        prev_ids = [int(m.group()) for m in (re.match(r'^\d+', name) for name in os.listdir(outdir)) if m]
        run_dir = os.path.join(outdir, f'{max(prev_ids, default=-1) + 1:05d}-{desc}')
        try:
            os.makedirs(run_dir)
            return run_dir
        except FileExistsError:
            continue

def remove_failed_run_dir(run_dir):
    """Delete a run directory whose run failed while starting (it holds no snapshot, only the options and log);
    a run directory with snapshots is kept. Returns True if it was removed."""
    if run_dir is None or not os.path.isdir(run_dir):
        return False
    if any(name.startswith('network-snapshot-') for name in os.listdir(run_dir)):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return True

def _remove_failed_run(run_dir, outdir, outdir_existed):
    """remove_failed_run_dir(), and --outdir too when this run created it and it is left empty."""
    if remove_failed_run_dir(run_dir) and not outdir_existed:
        try:
            os.rmdir(outdir)
        except OSError:
            pass  # Not empty (another run started meanwhile) or already gone.

#----------------------------------------------------------------------------
# Processes: one per GPU (or CPU worker), spawned here or started by torchrun.

SETUP_ERROR_EXIT_CODE = 3           # A spawned process that stopped on a training_loop.SetupError (message printed).
PARENT_POLL_SEC = 1.0               # How often spawned processes check that the launcher still runs.
TRAINING_LOOPS = {                  # What a process runs: the `loop` argument of launch_training() -> module, function.
    'stylegan': ('training.training_loop', 'training_loop'),
    'cyclegan': ('training.cyclegan_loop', 'cyclegan_loop'),
}


def _watch_launcher(launcher_pid, rendezvous_dir, rank):
    """In a spawned process: when the launcher is gone (kill -9 leaves its children running, reparented), say so,
    remove the rendezvous folder, and end this process. A daemon thread polls the parent id, which works even
    while the main thread is blocked in a collective or the rendezvous; torch's spawn also sends SIGINT when the
    parent dies, which is handled the same way so that the folder is removed whichever comes first."""
    def stop():
        sys.stderr.write(f'train.py rank {rank}: the launcher process {launcher_pid} is gone; stopping.\n')
        sys.stderr.flush()
        if rendezvous_dir is not None:
            shutil.rmtree(rendezvous_dir, ignore_errors=True)
        os._exit(1)  # Other threads may be blocked in a collective; nothing else can end them.

    def watch():
        while os.getppid() == launcher_pid:
            time.sleep(PARENT_POLL_SEC)
        stop()

    def on_sigint(signum, frame):
        if os.getppid() != launcher_pid:
            stop()
        raise KeyboardInterrupt
    signal.signal(signal.SIGINT, on_sigint)
    threading.Thread(target=watch, name='launcher-watch', daemon=True).start()

def _launched_by_torchrun():
    return 'TORCHELASTIC_RUN_ID' in os.environ or ('RANK' in os.environ and 'WORLD_SIZE' in os.environ)


def _process_device(options, local_rank):
    return f'cuda:{local_rank}' if options['device'] == 'cuda' else options['device']


def subprocess_fn(rank, options, init_method, local_rank=None, launcher_pid=None, rendezvous_dir=None,
                  loop='stylegan'):
    """One training process: join the process group (if several), tee rank 0's output to log.txt, train with
    TRAINING_LOOPS[loop].

    launcher_pid: set in processes spawned by launch_training(): they watch it and stop when it is gone, and
    report a training_loop.SetupError by printing it and exiting with SETUP_ERROR_EXIT_CODE."""
    if launcher_pid is not None:
        _watch_launcher(launcher_pid, rendezvous_dir, rank)
        try:
            return _train_process(rank, options, init_method, local_rank, loop)
        except training_loop.SetupError as err:
            sys.stderr.write(f'Error: {cli.without_allow_exec_hint(str(err))}\n')
            sys.stderr.flush()
            sys.exit(SETUP_ERROR_EXIT_CODE)
    return _train_process(rank, options, init_method, local_rank, loop)


def _train_process(rank, options, init_method, local_rank=None, loop='stylegan'):
    import importlib
    import torch
    module_name, function_name = TRAINING_LOOPS[loop]
    loop_fn = getattr(importlib.import_module(module_name), function_name)
    from torch_utils import misc, training_stats
    num_gpus = options['num_gpus']
    device = _process_device(options, rank if local_rank is None else local_rank)
    if num_gpus == 1:  # See cli.tune_cpu_allocator: not under gloo.
        cli.tune_cpu_allocator(device)
    if num_gpus > 1 and not torch.distributed.is_initialized():
        backend = 'nccl' if options['device'] == 'cuda' else 'gloo'
        misc.init_process_group(backend=backend, init_method=init_method, rank=rank, world_size=num_gpus)
    sync_device = torch.device(device) if num_gpus > 1 and options['device'] == 'cuda' else None
    training_stats.init_multiprocessing(rank=rank, sync_device=sync_device)
    logger = dnnlib.util.Logger(os.path.join(options['run_dir'], 'log.txt'), 'a') if rank == 0 else None
    try:
        kwargs = {k: v for k, v in options.items() if k != 'run_desc'}
        # The loop's returned state is dropped at once, so it is freed before the process group is destroyed
        # below. (The abort at exit once blamed on it, 'terminate called ...', had another cause: see
        # misc.init_process_group.)
        loop_fn(rank=rank, **dict(kwargs, device=device))
    finally:
        if logger is not None:
            logger.close()
        if num_gpus > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def process_start_time():
    """time.time() when this process started, so that --max-minutes also counts start-up and imports."""
    try:
        import psutil
        return psutil.Process().create_time()
    except (ImportError, OSError):
        return _IMPORT_TIME


def launch_training(options, outdir, dry_run=False, run_start_time=None, loop='stylegan', print_summary=None):
    """Print the options, create the run directory and training_options.json, start the processes.

    run_start_time: time.time() at which the run began, the origin of --max-minutes (default: when training starts).
    loop: the key of TRAINING_LOOPS the processes run; print_summary(options, outdir, dry_run): what is printed
    before training (default: the StyleGAN summary). Returns None."""
    import torch
    print_summary = print_summary or _print_summary
    if _launched_by_torchrun():
        return _launch_under_torchrun(options, outdir, dry_run, run_start_time, loop, print_summary)
    if dry_run:
        print_summary(options, outdir, dry_run)
        return None
    outdir_existed = os.path.isdir(outdir)
    options['run_dir'] = make_run_dir(outdir, options['run_desc'])
    try:
        print_summary(options, outdir, dry_run)
        _write_options(options)
        if run_start_time is not None:
            options = dict(options, run_start_time=run_start_time)  # Not an option: kept out of training_options.json.
        if options['num_gpus'] == 1:
            return subprocess_fn(0, options, init_method=None, loop=loop)
        with tempfile.TemporaryDirectory(prefix='stylegan-rendezvous-') as temp_dir:
            init_method = f'file://{os.path.abspath(os.path.join(temp_dir, ".torch_distributed_init"))}'
            torch.multiprocessing.spawn(fn=subprocess_fn, nprocs=options['num_gpus'],
                                        args=(options, init_method, None, os.getpid(), temp_dir, loop))
    except torch.multiprocessing.ProcessExitedException as err:
        if err.exit_code != SETUP_ERROR_EXIT_CODE:
            raise
        _remove_failed_run(options['run_dir'], outdir, outdir_existed)
        raise click.exceptions.Exit(1) from err  # The process that failed has printed the message.
    except training_loop.SetupError:
        _remove_failed_run(options['run_dir'], outdir, outdir_existed)
        raise
    return None


def _launch_under_torchrun(options, outdir, dry_run, run_start_time, loop, print_summary):
    """torchrun sets RANK/WORLD_SIZE/LOCAL_RANK: rank 0 makes the run directory and tells the others its name."""
    import torch
    from torch_utils import misc
    rank, world_size = int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])
    local_rank = int(os.environ.get('LOCAL_RANK', rank))
    if world_size != options['num_gpus']:
        raise UsageError(f'launched by torchrun with WORLD_SIZE={world_size} but --gpus={options["num_gpus"]}; '
                         f'pass --gpus={world_size} (and a --batch divisible by it)')
    if options['device'] == 'cuda':
        torch.cuda.set_device(local_rank)
    if world_size > 1:
        misc.init_process_group(backend='nccl' if options['device'] == 'cuda' else 'gloo', init_method='env://')
    run_dir = [make_run_dir(outdir, options['run_desc']) if rank == 0 and not dry_run else None]
    if world_size > 1:
        torch.distributed.broadcast_object_list(run_dir, src=0)
    options['run_dir'] = run_dir[0]
    if rank == 0:
        print_summary(options, outdir, dry_run)
        if not dry_run:
            _write_options(options)
    if not dry_run:
        if run_start_time is not None:
            options = dict(options, run_start_time=run_start_time)
        try:
            subprocess_fn(rank, options, init_method='env://', local_rank=local_rank, loop=loop)
        except training_loop.SetupError:
            if rank == 0:
                remove_failed_run_dir(options['run_dir'])
            raise


def _write_options(options):
    path = os.path.join(options['run_dir'], 'training_options.json')
    training_loop.write_file_atomic(path, lambda f: json.dump(options, f, indent=2), mode='wt')


def _print_summary(options, outdir, dry_run):
    print('\nTraining options:')
    print(json.dumps(options, indent=2))
    print()
    print(f'Output directory:    {options.get("run_dir", os.path.join(outdir, "<next id>-" + options["run_desc"]))}')
    print(f'Number of GPUs:      {options["num_gpus"]} ({options["device"]})')
    print(f'Batch size:          {options["batch_size"]} images')
    print(f'Training duration:   {options["total_kimg"]} kimg')
    print(f'Dataset path:        {options["training_set_kwargs"]["path"]}')
    print(f'Dataset size:        {options["training_set_kwargs"]["max_size"]} images')
    print(f'Dataset resolution:  {options["training_set_kwargs"]["resolution"]}')
    print(f'Dataset labels:      {options["training_set_kwargs"]["use_labels"]}')
    print(f'Dataset x-flips:     {options["training_set_kwargs"]["xflip"]}')
    print()
    if dry_run:
        print('Dry run; exiting.')

#----------------------------------------------------------------------------
# The command line.

def _parse_comma_separated_list(_ctx, _param, value):
    if isinstance(value, (list, tuple)):
        return list(value)
    if value is None or value.lower() == 'none' or value == '':
        return []
    return value.split(',')


_DEFAULT_METRICS = 'fid50k_full' if metrics_available() else 'none'


EXAMPLES = """\b
Examples:
  # A tiny run on the built-in dataset, on CPU:
  python dataset_tool.py --source=builtin:shapes --dest=datasets/shapes-32x32.zip --max-images=2000
  python train.py --outdir=training-runs --cfg=stylegan2 --data=datasets/shapes-32x32.zip \\
      --gpus=1 --batch=8 --gamma=0.1 --cbase=4096 --cmax=64 --map-depth=2 --aug=noaug --metrics=none \\
      --kimg=10 --tick=1 --snap=5
  # StyleGAN3-T on AFHQv2 with 8 GPUs (or under torchrun with 8 processes):
  python train.py --outdir=training-runs --cfg=stylegan3-t --data=datasets/afhqv2-512x512.zip \\
      --gpus=8 --batch=32 --gamma=8.2 --mirror=1
  # A week-long run that keeps 3 snapshots plus the best by FID, stopping after 7 days:
  python train.py ... --metrics=fid50k_full --snap-keep=3 --snap-best=fid50k_full --max-minutes=10080
  # Continue a run exactly where its latest snapshot left it:
  python train.py ... --resume=training-runs/00000-stylegan2-shapes-32x32-gpus1-batch8-gamma0.1 --kimg=20"""


@click.command(context_settings=dict(max_content_width=120), epilog=EXAMPLES)
# Required.
@click.option('--outdir', help='Where to make the run directory', metavar='DIR', required=True)
@click.option('--cfg', help='Base configuration (cyclegan: its own options, see --cfg=cyclegan --help)', required=True,
              type=click.Choice(['stylegan1', 'stylegan2', 'stylegan3-t', 'stylegan3-r', 'dcgan', 'cyclegan']))
@click.option('--data', help='Training data (zip or folder from dataset_tool.py)', metavar='[ZIP|DIR]', type=str,
              required=True)
@click.option('--gpus', help='Number of GPUs (processes) to use', metavar='INT', type=click.IntRange(min=1),
              required=True)
@click.option('--batch', help='Total batch size', metavar='INT', type=click.IntRange(min=1), required=True)
@click.option('--gamma', help='R1 regularization weight', metavar='FLOAT', type=click.FloatRange(min=0),
              required=True)
# Optional features.
@click.option('--cond', help='Train a conditional model', metavar='BOOL', type=bool, default=False,
              show_default=True)
@click.option('--mirror', help='Enable dataset x-flips', metavar='BOOL', type=bool, default=False, show_default=True)
@click.option('--aug', help='Augmentation mode',
              type=click.Choice(['noaug', 'ada', 'fixed']), default='ada', show_default=True)
@click.option('--resume', help='Resume from a snapshot pickle or a run directory (its latest snapshot)',
              metavar='[PATH|DIR]', type=str)
@click.option('--freezed', help='Freeze the first layers of D', metavar='INT', type=click.IntRange(min=0),
              default=0, show_default=True)
@click.option('--loss', help='GAN loss of --cfg=dcgan (nsgan: Goodfellow 2014; wgan-gp: Gulrajani 2017, lambda 10, '
              'n_critic 5; hinge: Miyato 2018)', type=click.Choice(['nsgan', 'wgan-gp', 'hinge']), default='nsgan',
              show_default=True)
@click.option('--sn', help='Spectral normalization in D (--cfg=dcgan; Miyato 2018)', metavar='BOOL', type=bool,
              default=False, show_default=True)
@click.option('--progressive', help='Progressive growing from 8x8 (--cfg=stylegan1; Karras 2018/2019)', metavar='BOOL',
              type=bool, default=False, show_default=True)
@click.option('--lod-kimg', help='Progressive growing: kimg to train each resolution, and kimg to fade in the next',
              metavar='KIMG', type=click.FloatRange(min=0, min_open=True), default=600, show_default=True)
@click.option('--lod-batch', help='Progressive growing: minibatch per resolution, e.g. 8:256,16:128,32:64,64:32 '
              '(others use --batch)  [default: --batch throughout]', metavar='RES:BATCH,...', type=str)
# Misc hyperparameters.
@click.option('--p', help='Probability for --aug=fixed', metavar='FLOAT', type=click.FloatRange(min=0, max=1),
              default=0.2, show_default=True)
@click.option('--target', help='Target value for --aug=ada', metavar='FLOAT', type=click.FloatRange(min=0, max=1),
              default=0.6, show_default=True)
@click.option('--batch-gpu', help='Limit batch size per GPU', metavar='INT', type=click.IntRange(min=1))
@click.option('--cbase', help='Capacity multiplier', metavar='INT', type=click.IntRange(min=1), default=32768,
              show_default=True)
@click.option('--cmax', help='Max. feature maps', metavar='INT', type=click.IntRange(min=1), default=512,
              show_default=True)
@click.option('--glr', help='G learning rate  [default: 0.001 stylegan1, 0.002 stylegan2, 0.0025 stylegan3, '
              '0.0002 dcgan (0.0001 --loss=wgan-gp)]',
              metavar='FLOAT', type=click.FloatRange(min=0))
@click.option('--dlr', help='D learning rate  [default: 0.001 for stylegan1, as --glr for dcgan, 0.002 otherwise]',
              metavar='FLOAT',
              type=click.FloatRange(min=0))
@click.option('--map-depth', help='Mapping network depth  [default: 8 for stylegan1/2, 2 for stylegan3]',
              metavar='INT', type=click.IntRange(min=1))
@click.option('--mbstd-group', help='Minibatch std group size', metavar='INT', type=click.IntRange(min=1),
              default=4, show_default=True)
# Misc settings.
@click.option('--pl-weight', help='Path-length regularization weight; 0 = off  [default: 2 for stylegan2, 0 otherwise]',
              metavar='FLOAT', type=click.FloatRange(min=0))
@click.option('--style-mixing', help='Style-mixing regularization probability  [default: 0.9 for stylegan1/2, '
              '0 for stylegan3]', metavar='FLOAT', type=click.FloatRange(min=0, max=1))
@click.option('--ema-kimg', help='Half-life of G_ema in kimg  [default: batch x 10 / 32]', metavar='KIMG',
              type=click.FloatRange(min=0))
@click.option('--ema-rampup', help='G_ema half-life ramp-up: at most this fraction of the images seen so far; '
              '0 = none  [default: 0.05]', metavar='FLOAT', type=click.FloatRange(min=0))
@click.option('--r1-interval', help='Lazy R1 regularization: minibatches between R1 steps  [default: 16; dcgan: '
              'R1 every step, within the D step]',
              metavar='INT', type=click.IntRange(min=1))
@click.option('--desc', help='String to include in the run directory name', metavar='STR', type=str)
@click.option('--metrics', help=f'Quality metrics (see calc_metrics.py --help)  [default: {_DEFAULT_METRICS}]',
              metavar='[NAME|A,B,C|none]',
              callback=_parse_comma_separated_list, default=_DEFAULT_METRICS)
@click.option('--kimg', help='Total training duration (a resumed run counts on)', metavar='KIMG',
              type=click.IntRange(min=1), default=25000, show_default=True)
@click.option('--tick', help='How often to print progress', metavar='KIMG', type=click.IntRange(min=1), default=4,
              show_default=True)
@click.option('--snap', help='How often to save snapshots', metavar='TICKS', type=click.IntRange(min=1),
              default=50, show_default=True)
@click.option('--seed', help='Random seed', metavar='INT', type=click.IntRange(min=0), default=0, show_default=True)
@click.option('--fp32', help='Disable mixed-precision', metavar='BOOL', type=bool, default=False,
              show_default=True)
@click.option('--nobench', help='Disable cuDNN benchmarking', metavar='BOOL', type=bool, default=False,
              show_default=True)
@click.option('--workers', help='DataLoader worker processes', metavar='INT', type=click.IntRange(min=0),
              default=3, show_default=True)
@click.option('--device', help='Where to train: auto = CUDA if available, else CPU',
              type=click.Choice(['auto', 'cpu', 'cuda', 'mps']), default='auto', show_default=True)
@click.option('--max-minutes', help='Wall-clock limit of the whole run (start-up, setup, grids, snapshots included), '
              'ending with a final snapshot (not official: for shared machines, time-boxed jobs and demos)',
              metavar='MINUTES',
              type=click.FloatRange(min=0))
@click.option('--snap-keep', help='Keep only the newest N network snapshots (the newest holds the resume state)  '
              '[default: keep all]', metavar='N', type=click.IntRange(min=1))
@click.option('--snap-best', help='Also keep network-snapshot-best-<METRIC>.pkl, the best by a --metrics result '
              '(METRIC:min / METRIC:max to set the direction)', metavar='METRIC', type=str)
@click.option('--threads', help='CPU threads per process; 0 = OMP_NUM_THREADS or the physical cores, fewer when '
              'other processes starve the run', metavar='INT', type=click.IntRange(min=0), default=0,
              show_default=True)
@click.option('--precision', help='Network precision: fp16 = official mixed precision (default), fp32 (= --fp32=1), '
              'bf16 = the same layers in bfloat16 (CPU too), no loss scaling, no clamping',
              type=click.Choice(['fp32', 'fp16', 'bf16']))
@click.option('--compile', help='torch.compile G and D for the main phases', metavar='BOOL', type=bool,
              default=False, show_default=True)
@click.option('--channels-last', help='Networks and images in channels_last memory format', metavar='BOOL',
              type=bool, default=False, show_default=True)
@click.option('--grad-clip', help='Clip each phase\'s gradient L2 norm (counted in Progress/grad_clipped); '
              'default off', metavar='NORM', type=click.FloatRange(min=0, min_open=True))
@click.option('--detector-dir', help='Folder holding metric detector files (inception-2015-12-05.pkl, vgg16.pkl), '
              'looked in before the cache and the download', metavar='DIR')
@click.option('-n', '--dry-run', help='Print training options and exit (works offline: missing metric detector '
              'files are a warning)', is_flag=True)
def main(**opts):
    """Train a GAN using the techniques of StyleGAN, StyleGAN2, StyleGAN2-ADA and StyleGAN3."""
    try:
        check_outdir(opts['outdir'])
        opts['device'] = resolve_device(opts['device'])
        if opts['resume'] is not None and not dnnlib.util.is_url(opts['resume']):
            opts['resume'] = training_loop.find_latest_snapshot(opts['resume'])
            check_resume_file(opts['resume'])
        dataset_info = describe_dataset(opts['data'], cond=opts['cond'])
        options = build_training_options(dataset_info, **opts)
        if opts['device'] == 'cuda' and not _launched_by_torchrun():
            import torch
            if opts['gpus'] > torch.cuda.device_count():
                raise UsageError(f'--gpus={opts["gpus"]}: only {torch.cuda.device_count()} CUDA devices here')
        warning = check_modules_exist(options, dry_run=opts['dry_run'])
    except (UsageError, FileNotFoundError, RuntimeError) as err:
        raise click.ClickException(str(err)) from err
    launch_or_explain(copy.deepcopy(options), opts['outdir'], dry_run=opts['dry_run'],
                      run_start_time=process_start_time(), warning=warning)


def launch_or_explain(options, outdir, dry_run=False, run_start_time=None, warning=None, **launch_kwargs):
    """launch_training() (launch_kwargs: its loop and print_summary), with expected failures turned into click
    errors that print only their message; `warning` (e.g. metric detectors missing in a --dry-run) is printed after
    the options."""
    try:
        launch_training(options, outdir, dry_run=dry_run, run_start_time=run_start_time, **launch_kwargs)
    except training_loop.SetupError as err:  # The message only; the run directory is gone.
        raise click.ClickException(cli.without_allow_exec_hint(str(err))) from err
    except OSError as err:
        if err.filename is None:
            raise
        # A full disk or a vanished folder while writing the run's files: the file and the reason, no traceback.
        raise click.ClickException(f'cannot write {err.filename}: {err.strerror or err}; the snapshots written '
                                   'so far are complete and can be resumed') from err
    if warning is not None:
        click.echo(warning, err=True)

#----------------------------------------------------------------------------

if __name__ == '__main__':
    import train_cyclegan  # --cfg=cyclegan has its own options and loop (train_cyclegan.py).
    train_cyclegan.main() if train_cyclegan.wants_cyclegan(sys.argv[1:]) else main()
