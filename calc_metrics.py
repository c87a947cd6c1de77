"""Compute quality metrics (FID, KID, precision/recall, IS, PPL, ...) for a network pickle.

Examples:
    python calc_metrics.py --network=network-snapshot-000400.pkl --metrics=fid50k_full,kid50k_full
    python calc_metrics.py --network=ffhq.pkl --metrics=pr50k3_full --data=~/datasets/ffhq.zip --mirror=1 --gpus=2
    python calc_metrics.py --network=ffhq.pkl --metrics=fid50k_full --device=cpu --detector-dir=~/detectors

Detector files (Inception for FID/KID/IS, VGG16 for PR/PPL) are downloaded into the dnnlib cache on first use. On a
machine without internet, put them in <cache>/detectors/ ($DNNLIB_CACHE_DIR/detectors/ when that variable is set)
or in a folder given by --detector-dir; without them the command stops at once and says which file to put where.
Results are printed as JSON lines and, when the pickle sits in a training run directory, appended to
<run dir>/metric-<name>.jsonl.
"""

import os
import pickle
import re
import tempfile

import click

import dnnlib
from dnnlib import cli

#----------------------------------------------------------------------------

def _parse_metric_list(_ctx, _param, value):
    names = [name.strip() for name in str(value).split(',') if name.strip()]
    if names == ['none']:
        return []
    return names


def resolve_device(device):
    """'auto' -> 'cuda' when a GPU is usable, else 'cpu'; explicit names are checked."""
    import torch
    if device == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if device == 'cuda' and not torch.cuda.is_available():
        raise click.UsageError('--device=cuda: no usable CUDA device here (use --device=cpu or auto)')
    if device == 'mps' and not (getattr(torch.backends, 'mps', None) and torch.backends.mps.is_available()):
        raise click.UsageError('--device=mps: MPS is not available here (use --device=cpu or auto)')
    return device


def check_metrics(metrics, detector_dir):
    """Unknown names and missing detector files stop the command before anything is loaded."""
    from metrics import metric_main, metric_utils
    try:
        metric_main.check_metrics_available(metrics, detector_dir=detector_dir, verbose=True)
    except ValueError as err:
        raise click.UsageError(f'--metrics: {err}') from err
    except metric_utils.DetectorUnavailableError as err:
        raise click.ClickException(str(err)) from err


def check_metric_kinds(metrics):
    """True when every metric measures a CycleGAN snapshot, False when none does; a mix is a usage error."""
    from metrics import metric_main
    translation = [metric for metric in metrics if metric_main.is_translation_metric(metric)]
    if translation and len(translation) != len(metrics):
        others = [metric for metric in metrics if metric not in translation]
        raise click.UsageError(f'--metrics: {",".join(translation)} measure CycleGAN snapshots and '
                               f'{",".join(others)} StyleGAN ones; compute them in separate runs')
    return bool(translation)


def load_generator(network_pkl, allow_exec=False):
    """(G_ema, snapshot dict) from a pickle path or URL; refused or corrupt files are a one-line error."""
    import legacy
    try:
        with dnnlib.util.open_url(network_pkl, verbose=True) as f:
            snapshot = legacy.load_network_pkl(f, allow_exec=allow_exec)
    except (IOError, OSError, ValueError, pickle.UnpicklingError) as err:  # UnpicklingError: refused/corrupt.
        hint = '; it is a CycleGAN snapshot: measure it with --metrics=fid_AtoB,fid_BtoA' \
            if _is_cyclegan(network_pkl) else ''
        raise click.ClickException(f'--network={network_pkl}: {err}{hint}') from None
    if snapshot.get('G_ema') is None:
        raise click.ClickException(f'--network={network_pkl}: the pickle holds no G_ema')
    return snapshot['G_ema'], snapshot


def _is_cyclegan(network_pkl):
    """True when the local file `network_pkl` is a CycleGAN snapshot (read with the safe loader)."""
    from training import cyclegan_snapshot
    try:
        cyclegan_snapshot.load_cyclegan_snapshot(network_pkl)
    except Exception:  # pylint: disable=broad-except -- any refusal or error of the loader means "no".
        return False
    return True


def load_translators(network_pkl):
    """metrics.translation_fid.Translators (G_AB, G_BA) of a CycleGAN snapshot file, read with the safe loader."""
    from metrics.translation_fid import Translators
    from training import cyclegan_snapshot
    try:
        snapshot = cyclegan_snapshot.load_cyclegan_snapshot(network_pkl)
    except (IOError, OSError, ValueError, pickle.UnpicklingError) as err:
        raise click.ClickException(f'--network={network_pkl}: {err}') from None
    return Translators(snapshot['G_AB'], snapshot['G_BA'])


def unpaired_dataset_kwargs(data):
    """dataset_kwargs of the translation metrics: the unpaired dataset at --data (required), checked once."""
    from training import unpaired_dataset
    if data is None:
        raise click.UsageError('--data: the translation metrics need the unpaired dataset (a zip or folder with A/ '
                               'and B/, or trainA/ and trainB/; e.g. the test split)')
    try:
        unpaired_dataset.describe_unpaired(data)
    except (IOError, OSError, ValueError) as err:
        raise click.UsageError(f'--data={data}: {err}') from err
    return dnnlib.EasyDict(path=data)


def load_network(args):
    """What the metrics of `args` measure: the CycleGAN translators, or the generator G_ema."""
    if args.translation:
        return load_translators(args.network_pkl)
    return load_generator(args.network_pkl, args.allow_exec)[0]


# Dataset classes a pickle's training_set_kwargs may name (a file never chooses what is imported).
DATASET_CLASSES = ('training.dataset.ImageFolderDataset',)


def safe_dataset_name(name):
    """A dataset name from a pickle reduced to one harmless file-name component (it names the statistics cache
    file): letters, digits, '.', '_' and '-', no leading dot, at most 64 characters; None if nothing is left."""
    cleaned = re.sub(r'[^A-Za-z0-9._-]+', '_', str(name))[:64].lstrip('.')
    return cleaned or None


def _is_expected_dataset_path(path):
    """True for what train.py records as --data: an existing .zip file, or a folder (not a file-system root) that
    holds dataset.json or image files at its top level. Anything else from a pickle is not used."""
    from training import dataset
    if os.path.isfile(path):
        return path.lower().endswith('.zip')
    if not os.path.isdir(path) or os.path.dirname(os.path.abspath(path)) == os.path.abspath(path):
        return False
    extensions = dataset.image_file_extensions()
    try:
        with os.scandir(path) as entries:
            return any(entry.name == 'dataset.json' or os.path.splitext(entry.name)[1].lower() in extensions
                       for entry in entries if entry.is_file())
    except OSError:
        return False


def dataset_kwargs_from_snapshot(recorded):
    """Dataset arguments from a pickle's training_set_kwargs, treated as untrusted data: the class from
    DATASET_CLASSES, the path only if it is an existing dataset zip/folder, a safe name, bool xflip."""
    need_data = 'give the dataset with --data=ZIP|DIR'
    if not isinstance(recorded, dict):
        raise click.ClickException(f'--data: the pickle does not record its training data; {need_data}')
    class_name = recorded.get('class_name', DATASET_CLASSES[0])
    if class_name not in DATASET_CLASSES:
        raise click.ClickException(f'--data: the pickle names the dataset class {str(class_name)[:80]!r}, which is '
                                   f'not one of {", ".join(DATASET_CLASSES)}; {need_data}')
    path = recorded.get('path')
    if not isinstance(path, str) or not path or '\0' in path or dnnlib.util.is_url(path):
        raise click.ClickException(f'--data: the pickle records no usable dataset path; {need_data}')
    if not _is_expected_dataset_path(path):
        raise click.ClickException(f'--data: the dataset recorded in the pickle, {path[:200]!r}, is not an existing '
                                   f'dataset .zip or image folder here; {need_data}')
    dataset_kwargs = dnnlib.EasyDict(class_name=class_name, path=path, xflip=bool(recorded.get('xflip', False)))
    name = safe_dataset_name(recorded['name']) if isinstance(recorded.get('name'), str) else None
    if name is not None:
        dataset_kwargs.name = name
    return dataset_kwargs


def build_dataset_kwargs(data, mirror, snapshot, G):
    """Real-data constructor: --data, else the pickle's training_set_kwargs (checked, see
    dataset_kwargs_from_snapshot); checked by opening it once."""
    if data is not None:
        dataset_kwargs = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=data)
    elif snapshot.get('training_set_kwargs') is not None:
        dataset_kwargs = dataset_kwargs_from_snapshot(snapshot['training_set_kwargs'])
    else:
        raise click.UsageError('--data: the pickle does not record its training data; give --data=ZIP|DIR')
    dataset_kwargs.update(resolution=G.img_resolution, use_labels=(G.c_dim != 0), max_size=None)
    if mirror is not None:
        dataset_kwargs.xflip = mirror
    try:
        dataset = dnnlib.util.construct_class_by_name(**dataset_kwargs)
    except (IOError, OSError, ValueError) as err:
        raise click.UsageError(f'--data={dataset_kwargs.get("path")}: {err}') from err
    if dataset.has_labels != (G.c_dim != 0):
        raise click.UsageError(f'--data={dataset_kwargs.get("path")}: the network has c_dim={G.c_dim} but the '
                               f'dataset has {"" if dataset.has_labels else "no "}labels')
    return dataset_kwargs


def find_run_dir(network_pkl):
    """The training run directory holding the pickle (it has training_options.json), or None."""
    if os.path.isfile(network_pkl):
        folder = os.path.dirname(os.path.abspath(network_pkl))
        if os.path.isfile(os.path.join(folder, 'training_options.json')):
            return folder
    return None

#----------------------------------------------------------------------------
# One process per GPU (or CPU worker); rank 0 reports.

def subprocess_fn(rank, args, init_method=None, local_rank=None):
    import torch
    from metrics import metric_main
    from torch_utils import misc, threads
    if args.num_gpus > 1 and not torch.distributed.is_initialized():
        backend = 'nccl' if args.device == 'cuda' else 'gloo'
        misc.init_process_group(backend=backend, init_method=init_method, rank=rank, world_size=args.num_gpus)
    device = f'cuda:{rank if local_rank is None else local_rank}' if args.device == 'cuda' else args.device
    threads.set_threads(args.get('num_threads', 0))
    if args.num_gpus == 1:  # See cli.tune_cpu_allocator: not under gloo.
        cli.tune_cpu_allocator(device)
    # Spawned processes load the pickle themselves: the safe loader maps its classes onto ours after importing
    # them, which plain unpickling of a G passed through spawn would not do.
    G = args.G if args.G is not None else load_network(args)
    try:
        for metric in args.metrics:
            result = metric_main.calc_metric(metric=metric, G=G, dataset_kwargs=args.dataset_kwargs,
                                             num_gpus=args.num_gpus, rank=rank, device=device,
                                             progress=args.verbose, detector_dir=args.detector_dir)
            if rank == 0:
                line = metric_main.report_metric(result, run_dir=args.run_dir, snapshot_pkl=args.network_pkl)
                if args.verbose:
                    print(line, flush=True)
    finally:
        if args.num_gpus > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def launch(args):
    import torch
    if 'RANK' in os.environ and 'WORLD_SIZE' in os.environ:  # Started by torchrun.
        if int(os.environ['WORLD_SIZE']) != args.num_gpus:
            raise click.UsageError(f'torchrun WORLD_SIZE={os.environ["WORLD_SIZE"]} but --gpus={args.num_gpus}')
        local_rank = int(os.environ.get('LOCAL_RANK', os.environ['RANK']))
        return subprocess_fn(int(os.environ['RANK']), args, init_method='env://', local_rank=local_rank)
    if args.num_gpus == 1:
        return subprocess_fn(0, args)
    args = dnnlib.EasyDict(args, G=None)  # Each process loads the network itself (see subprocess_fn).
    with tempfile.TemporaryDirectory() as temp_dir:
        init_method = f'file://{os.path.abspath(os.path.join(temp_dir, ".torch_distributed_init"))}'
        torch.multiprocessing.spawn(fn=subprocess_fn, args=(args, init_method), nprocs=args.num_gpus)
    return None

#----------------------------------------------------------------------------

# One line per metric of metrics.metric_main (a test keeps the two in step); kept here so that --help starts
# without importing torch.
METRIC_SUMMARIES = {
    'fid50k_full': 'Frechet Inception Distance, 50k generated vs. all real images (lower is better)',
    'kid50k_full': 'Kernel Inception Distance, 50k generated vs. up to 1M real images (lower is better)',
    'pr50k3_full': 'Precision and recall (k=3, VGG16 features), 50k generated vs. up to 200k real (higher)',
    'ppl2_wend': 'Perceptual path length in W, endpoints, 50k samples (lower: smoother latent space)',
    'is50k': 'Inception Score of 50k generated images, 10 splits (higher is better)',
    'eqt50k_int': 'Equivariance to integer translation, PSNR in dB (StyleGAN3; higher is better)',
    'eqt50k_frac': 'Equivariance to fractional translation, PSNR in dB (StyleGAN3; higher is better)',
    'eqr50k': 'Equivariance to rotation, PSNR in dB (StyleGAN3; higher is better)',
    'fid50k': 'Legacy FID: 50k generated vs. 50k real images (x-flips as the dataset says)',
    'kid50k': 'Legacy KID: 50k generated vs. 50k real images',
    'pr50k3': 'Legacy precision and recall: 50k generated vs. 50k real images',
    'fid_AtoB': 'CycleGAN snapshots: FID of G_AB(every A image) vs. every real B image (--data: A/ and B/)',
    'fid_BtoA': 'CycleGAN snapshots: FID of G_BA(every B image) vs. every real A image',
}

EPILOG = '\b\nMetrics:\n' + '\n'.join(f'  {name:<12s} {text}' for name, text in METRIC_SUMMARIES.items()) + """

\b
Examples:
  python calc_metrics.py --network=network-snapshot-000400.pkl --metrics=fid50k_full,kid50k_full
  python calc_metrics.py --network=ffhq.pkl --metrics=pr50k3_full --data=~/datasets/ffhq.zip --mirror=1 --gpus=2
  python calc_metrics.py --network=ffhq.pkl --metrics=fid50k_full --device=cpu --detector-dir=~/detectors
  python calc_metrics.py --network=cyclegan-snapshot.pkl --metrics=fid_AtoB,fid_BtoA --data=horse2zebra-test.zip"""


@click.command(context_settings=dict(max_content_width=120), epilog=EPILOG)
@click.option('--network', 'network_pkl', help='Network pickle (path or URL)', metavar='PATH', required=True)
@click.option('--metrics', help='Quality metrics (none: do nothing)', metavar='[NAME|A,B,C|none]',
              callback=_parse_metric_list, default='fid50k_full', show_default=True)
@click.option('--data', help='Dataset to evaluate against  [default: look up from the pickle]', metavar='[ZIP|DIR]')
@click.option('--mirror', help='Enable dataset x-flips  [default: look up from the pickle]', metavar='BOOL',
              type=bool)
@click.option('--gpus', help='Number of GPUs (processes) to use', metavar='INT', type=click.IntRange(min=1),
              default=1, show_default=True)
@click.option('--verbose', help='Print results and progress', metavar='BOOL', type=bool, default=True,
              show_default=True)
@click.option('--device', help='Compute device', type=click.Choice(['auto', 'cpu', 'cuda', 'mps']), default='auto',
              show_default=True)
@click.option('--detector-dir', help='Folder holding detector files (inception-2015-12-05.pkl, vgg16.pkl), '
              'looked in before the cache and the download', metavar='DIR')
@click.option('--allow-exec', help='Run source code embedded in the network pickle (trusted files only; never '
              'needed for official or our files)', is_flag=True)
@click.option('--threads', 'num_threads', help='CPU threads per process; 0 = OMP_NUM_THREADS or the physical cores '
              'available', metavar='INT', type=click.IntRange(min=0), default=0, show_default=True)
def calc_metrics(network_pkl, metrics, data, mirror, gpus, verbose, device, detector_dir, allow_exec, num_threads):
    """Calculate quality metrics for a network pickle.

    Recommended metrics: fid50k_full, kid50k_full, pr50k3_full, ppl2_wend, is50k; for StyleGAN3 also eqt50k_int,
    eqt50k_frac, eqr50k. Legacy: fid50k, kid50k, pr50k3. CycleGAN snapshots: fid_AtoB, fid_BtoA (with --data=
    the unpaired dataset). Results are printed as JSON lines and, for a pickle in a
    training run directory, appended to <run dir>/metric-<name>.jsonl.
    """
    if not metrics:  # The offline message suggests --metrics=none: accepted, and it does nothing.
        click.echo('--metrics=none: no metrics requested; nothing to compute.')
        return
    device = resolve_device(device)
    if gpus > 1 and device == 'mps':
        raise click.UsageError('--gpus > 1 needs --device=cuda or cpu')
    check_metrics(metrics, detector_dir)
    translation = check_metric_kinds(metrics)
    if translation:
        G, dataset_kwargs = load_translators(network_pkl), unpaired_dataset_kwargs(data)
    else:
        G, snapshot = load_generator(network_pkl, allow_exec)
        dataset_kwargs = build_dataset_kwargs(data, mirror, snapshot, G)
    args = dnnlib.EasyDict(network_pkl=network_pkl, metrics=metrics, G=G, dataset_kwargs=dataset_kwargs,
                           num_gpus=gpus, verbose=verbose, device=device, detector_dir=detector_dir,
                           run_dir=find_run_dir(network_pkl), allow_exec=allow_exec, num_threads=num_threads,
                           translation=translation)
    if verbose:
        source = 'from --data' if data is not None else 'recorded in the pickle; --data overrides it'
        if translation:
            source = 'from --data; unpaired: every image of the source domain is translated'
        print(f'Dataset: {dataset_kwargs.path} ({source}; x-flips: {bool(dataset_kwargs.get("xflip", False))})')
        print(f'Metrics: {", ".join(metrics)} on {gpus} process(es), device {device}')
    try:
        launch(args)
    except (OSError, pickle.UnpicklingError) as err:  # A refused or corrupt detector file, an unreadable dataset.
        raise click.ClickException(str(err)) from None


if __name__ == '__main__':
    calc_metrics()  # pylint: disable=no-value-for-parameter
