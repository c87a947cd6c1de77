"""What every metric shares: options, detector files, feature statistics, and the real-image statistics cache.

Detectors are the public files of the field's reference pipeline (Inception 2015-12-05 and VGG16, TorchScript).
They are looked for, in order: a local path given as the URL; `--detector-dir`; `<dnnlib cache>/detectors/`;
the `open_url` download cache; and only then downloaded. Offline, `DetectorUnavailableError` says which file
to put where.

Generated images are quantised to uint8 exactly like the reference pipeline before they reach a detector:
`(img * 127.5 + 128).clamp(0, 255).to(torch.uint8)`.

Multi-process: every rank takes every `num_gpus`-th item (rank, rank + num_gpus, ...); features are all-gathered
with torch.distributed and interleaved back into the global order, so every rank holds the same statistics.
"""

import copy
import hashlib
import json
import logging
import os
import pickle
import re
import re
import uuid
import warnings
import zipfile

import numpy as np
import torch

import dnnlib
from torch_utils import safe_pickle

_log = logging.getLogger(__name__)

INCEPTION_URL = ('https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/metrics/'
                 'inception-2015-12-05.pkl')
VGG16_URL = 'https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/metrics/vgg16.pkl'

# Detector files in the official *pickle* form are unpickled (see `load_detector_file`) only under these names.
OFFICIAL_DETECTOR_NAMES = ('inception-2015-12-05.pkl', 'vgg16.pkl')

#----------------------------------------------------------------------------
# Options shared by all metrics (the official MetricOptions fields, plus where to find detectors).

class MetricOptions:
    """Everything a metric function needs.

    G:              generator (any module with z_dim, c_dim, img_resolution, img_channels; mapping/synthesis for PPL).
    G_kwargs:       extra keyword arguments for G(z, c, ...), e.g. truncation_psi.
    dataset_kwargs: constructor of the real dataset (`class_name` + arguments), as in training_set_kwargs.
    num_gpus, rank: process count and this process' index (torch.distributed initialised when num_gpus > 1).
    device:         torch device (or its name) to compute on.
    progress:       show tqdm progress bars (rank 0 only).
    cache:          reuse / store real-image statistics in `<dnnlib cache>/gan-metrics`.
    detector_dir:   folder to look in first for detector files (e.g. calc_metrics.py --detector-dir).
    random_seed:    seed of latents and labels, so that a metric of the same G is reproducible.
    """

    def __init__(self, G=None, G_kwargs={}, dataset_kwargs={}, num_gpus=1, rank=0, device=None, progress=False,
                 cache=True, detector_dir=None, random_seed=0):
        assert 0 <= rank < num_gpus
        self.G = G
        self.G_kwargs = dnnlib.EasyDict(G_kwargs)
        self.dataset_kwargs = dnnlib.EasyDict(dataset_kwargs or {})
        self.num_gpus = num_gpus
        self.rank = rank
        self.device = torch.device(device if device is not None else 'cuda' if torch.cuda.is_available() else 'cpu')
        self.progress = bool(progress) and rank == 0
        self.cache = cache
        self.detector_dir = detector_dir
        self.random_seed = random_seed
        self.info = dnnlib.EasyDict()  # What changes the number: filled in by the feature extractors below.

#----------------------------------------------------------------------------
# Detector files: where they are looked for, and the error that says where to put them.

class DetectorUnavailableError(IOError):
    """A detector file is neither present locally nor downloadable; the message says which file to put where."""


def detector_file_name(url):
    """'inception-2015-12-05.pkl' for the official URL (the last path component)."""
    return os.path.basename(url.split('?', 1)[0].rstrip('/'))


def detector_search_paths(url, detector_dir=None):
    """Local paths tried, in order, before downloading `url`."""
    name = detector_file_name(url)
    paths = []
    if not dnnlib.util.is_url(url, allow_file_urls=True):
        paths.append(url)
    if detector_dir is not None:
        paths.append(os.path.join(detector_dir, name))
    paths.append(dnnlib.util.make_cache_dir_path('detectors', name))
    if dnnlib.util.is_url(url):
        paths.append(dnnlib.util.url_cache_path(url))
    return paths


def find_detector_file(url, detector_dir=None, download=True, verbose=False):
    """Local path of the detector file for `url`, downloading it into the cache when allowed and needed.

    Raises DetectorUnavailableError naming the file, the URL and the folders to put it in.
    """
    for path in detector_search_paths(url, detector_dir):
        if os.path.isfile(path):
            return path
    reason = 'not found locally'
    if download and dnnlib.util.is_url(url):
        try:
            return dnnlib.util.open_url(url, num_attempts=2, verbose=verbose, return_filename=True)
        except IOError as err:
            reason = f'download failed: {getattr(err, "__cause__", None) or err}'
    raise DetectorUnavailableError(detector_missing_message(url, detector_dir, reason))


def detector_missing_message(url, detector_dir=None, reason='not found locally'):
    """The text users see when a detector cannot be had (typically an offline machine)."""
    name = detector_file_name(url)
    cache_path = dnnlib.util.make_cache_dir_path('detectors', name)
    places = [f'  {cache_path}   (the dnnlib cache: $DNNLIB_CACHE_DIR/detectors/ when DNNLIB_CACHE_DIR is set)']
    if detector_dir is not None:
        places.insert(0, f'  {os.path.join(detector_dir, name)}   (--detector-dir)')
    else:
        places.append(f'  <DIR>/{name} with --detector-dir=<DIR> (train.py, calc_metrics.py)')
    return (f'metrics: the detector file {name} is not available ({reason}).\n'
            f'Download it on a machine with internet access from\n  {url}\nand put it at\n' + '\n'.join(places) +
            '\nor run without these metrics (--metrics=none).')

#----------------------------------------------------------------------------
# Loading a detector file.
# Trust decision: TorchScript archives (zip) load with torch.jit.load, which runs no Python code from the file.
# Pickled detectors are read only under the official names (a file the user fetched from NVIDIA's URL or placed
# by hand), and even then with the safe loader's restricted unpickler: globals resolve by exact (module, name)
# pairs from one allow-list (tensor and numpy records plus the torch.nn module classes, never a dotted walk), each
# module's state is checked like a network's (no attribute that shadows what the class defines, no hooks), and
# nothing else is created or called. A pickle that asks for anything else (os.system, builtins.eval, a class of
# another package) is refused before it runs. Should a genuine file need more, the user can opt in to a plain
# pickle.load with DNNLIB_TRUST_DETECTOR_PICKLES=1 (never the default). The sha256 of every detector file is
# recorded with each result, so a number can be traced to the exact file.

TRUST_PICKLES_ENV = 'DNNLIB_TRUST_DETECTOR_PICKLES'


def _detector_allow_list():
    """(AllowList, module classes) for pickled detectors (built from torch's own classes, not from the file)."""
    classes = safe_pickle.torch_nn_module_classes()
    return safe_pickle.TENSOR_GLOBALS.union(safe_pickle.module_class_globals(classes)), classes


def is_official_detector_name(path):
    """True for inception-2015-12-05.pkl / vgg16.pkl, also as open_url's cached '<md5>_<name>'."""
    name = os.path.basename(path)
    return any(name == official or name.endswith('_' + official) for official in OFFICIAL_DETECTOR_NAMES)


def _unpickle_detector(path):
    if os.environ.get(TRUST_PICKLES_ENV, '') == '1':
        with open(path, 'rb') as f:
            return pickle.load(f)  # Explicit opt-in for a file the user trusts.
    allowed, classes = _detector_allow_list()
    hint = f'If this is the genuine file from NVIDIA and you trust it, set {TRUST_PICKLES_ENV}=1'
    return safe_pickle.load_pickle(path, allowed=allowed, module_classes=classes, hint=hint)


def load_detector_file(path):
    """torch.nn.Module (TorchScript or unpickled) from a detector file, on CPU, in eval mode."""
    with open(path, 'rb') as f:
        magic = f.read(4)
    if magic[:2] == b'PK':  # TorchScript archives are zip files.
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', FutureWarning)  # Recent PyTorch marks TorchScript deprecated.
            return torch.jit.load(path, map_location='cpu').eval()
    if not is_official_detector_name(path):
        raise ValueError(f'{path}: not a TorchScript archive; pickled detectors are only loaded under the official '
                         f'names {", ".join(OFFICIAL_DETECTOR_NAMES)} (save custom detectors with torch.jit.save)')
    try:
        detector = _unpickle_detector(path)
    except safe_pickle.UnsafePickleError as err:
        raise IOError(f'refusing to load the detector file {err} (compare its sha256, {file_sha256(path)}, '
                      f'with a trusted copy; {TRUST_PICKLES_ENV}=1 unpickles it without restrictions)') from None
    except Exception as err:
        raise IOError(f'{path}: cannot load this detector file ({type(err).__name__}: {err}); delete it and fetch '
                      'it again') from err
    if not isinstance(detector, torch.nn.Module):
        raise IOError(f'{path}: holds a {type(detector).__name__}, not a detector module')
    return detector.eval()


_sha256_cache = dict()  # (path, size, mtime_ns) -> hex digest; a plugin-style cache of file hashes.


def file_sha256(path):
    """sha256 hex digest of a file (cached per path, size and modification time)."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _sha256_cache:
        digest = hashlib.sha256()
        with open(path, 'rb') as f:
            for block in iter(lambda: f.read(1 << 20), b''):
                digest.update(block)
        _sha256_cache[key] = digest.hexdigest()
    return _sha256_cache[key]


_detector_cache = dict()  # (path, sha256, device) -> module.


def _barrier(num_gpus):
    if num_gpus > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()


def get_feature_detector(url, device=torch.device('cpu'), num_gpus=1, rank=0, verbose=False, detector_dir=None):
    """The detector module for `url` (official URL or local path) on `device`; cached per process.

    Rank 0 goes first so that only one process downloads. Raises DetectorUnavailableError when offline.
    """
    if rank != 0:
        _barrier(num_gpus)
    path = find_detector_file(url, detector_dir=detector_dir, verbose=verbose and rank == 0)
    key = (os.path.abspath(path), file_sha256(path), str(device))
    if key not in _detector_cache:
        _detector_cache[key] = load_detector_file(path).to(device)
    if rank == 0:
        _barrier(num_gpus)
    return _detector_cache[key]


def get_detector_hash(url, detector_dir=None):
    """sha256 of the detector file that `get_feature_detector` uses for `url`."""
    return file_sha256(find_detector_file(url, detector_dir=detector_dir))


def _record_detector(opts, url):
    opts.info.setdefault('detectors', dict())[detector_file_name(url)] = get_detector_hash(url, opts.detector_dir)

#----------------------------------------------------------------------------
# Feature statistics: all features and/or their running mean and covariance (float64).

class FeatureStats:
    """Accumulates [N, D] feature batches: every row (capture_all) and/or mean and covariance (capture_mean_cov).

    Mean and covariance are merged batch by batch in float64 (Chan et al.'s parallel update), which equals
    the two-pass result; the covariance is normalised by N (the maximum-likelihood estimate, as the reference
    FID pipeline does), not N - 1.
    """

    def __init__(self, capture_all=False, capture_mean_cov=False, max_items=None):
        self.capture_all = capture_all
        self.capture_mean_cov = capture_mean_cov
        self.max_items = max_items
        self.num_items = 0
        self.num_features = None
        self.all_features = []
        self.mean = None        # [D] float64.
        self.sum_sq_dev = None  # [D, D] float64: sum over items of (x - mean)^T (x - mean).

    def set_num_features(self, num_features):
        if self.num_features is not None and num_features != self.num_features:
            raise ValueError(f'FeatureStats: got {num_features} features per item, earlier {self.num_features}')
        if self.num_features is None:
            self.num_features = num_features
            if self.capture_mean_cov:
                self.mean = np.zeros([num_features], dtype=np.float64)
                self.sum_sq_dev = np.zeros([num_features, num_features], dtype=np.float64)

    def is_full(self):
        return self.max_items is not None and self.num_items >= self.max_items

    def append(self, x):
        """Add a batch x: [N, D] array (rows past max_items are dropped)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f'FeatureStats.append: expected [N, D] features, got shape {list(x.shape)}')
        if self.max_items is not None:
            x = x[:max(self.max_items - self.num_items, 0)]
        self.set_num_features(x.shape[1])
        if x.shape[0] == 0:
            return
        if self.capture_all:
            self.all_features.append(x)
        if self.capture_mean_cov:
            self._merge_mean_cov(x.astype(np.float64))
        self.num_items += x.shape[0]

    def _merge_mean_cov(self, x64):
        num_old, num_new = self.num_items, x64.shape[0]
        batch_mean = x64.mean(axis=0)
        centred = x64 - batch_mean
        delta = batch_mean - self.mean
        num_total = num_old + num_new
        self.mean = self.mean + delta * (num_new / num_total)
        self.sum_sq_dev += centred.T @ centred + np.outer(delta, delta) * (num_old * num_new / num_total)

    def append_torch(self, x, num_gpus=1, rank=0):
        """Add a batch x: [N, D] tensor of this rank; with several processes, every rank's batch is gathered and
        interleaved (item i of rank r is global item i * num_gpus + r), so all ranks accumulate the same rows."""
        assert x.ndim == 2 and 0 <= rank < num_gpus
        if num_gpus > 1 and torch.distributed.is_initialized():
            gathered = [torch.empty_like(x) for _ in range(num_gpus)]
            torch.distributed.all_gather(gathered, x.contiguous())
            x = torch.stack(gathered, dim=1).flatten(0, 1)  # [N, G, D] -> [N * G, D]
        self.append(x.detach().float().cpu().numpy())

    def get_all(self):
        """[N, D] float32 of every captured row."""
        assert self.capture_all
        if not self.all_features:
            return np.zeros([0, self.num_features or 0], dtype=np.float32)
        return np.concatenate(self.all_features, axis=0)

    def get_all_torch(self):
        return torch.from_numpy(self.get_all())

    def get_mean_cov(self):
        """(mean [D] float64, covariance [D, D] float64 normalised by N)."""
        assert self.capture_mean_cov and self.num_items > 0
        return self.mean.copy(), self.sum_sq_dev / self.num_items

    def save(self, pkl_file):
        """Write atomically (temporary file + rename) as a numpy .npz, whatever the file's extension."""
        meta = dict(capture_all=self.capture_all, capture_mean_cov=self.capture_mean_cov, max_items=self.max_items,
                    num_items=self.num_items, num_features=self.num_features)
        arrays = dict(meta=np.array(json.dumps(meta)))
        if self.capture_all:
            arrays['all_features'] = self.get_all()
        if self.capture_mean_cov and self.mean is not None:
            arrays.update(mean=self.mean, sum_sq_dev=self.sum_sq_dev)
        write_file_atomic(pkl_file, lambda f: np.savez(f, **arrays))

    @staticmethod
    def load(pkl_file):
        """FeatureStats written by `save` (plain arrays only: nothing is unpickled)."""
        with np.load(pkl_file, allow_pickle=False) as data:
            meta = json.loads(str(data['meta']))
            stats = FeatureStats(meta['capture_all'], meta['capture_mean_cov'], meta['max_items'])
            stats.num_items, stats.num_features = meta['num_items'], meta['num_features']
            if 'all_features' in data:
                stats.all_features = [data['all_features']]
            if 'mean' in data:
                stats.mean, stats.sum_sq_dev = data['mean'], data['sum_sq_dev']
        return stats


def write_file_atomic(path, write_fn):
    """Call write_fn(binary file) on a temporary file beside `path`, then rename it over `path`."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    dnnlib.util.write_file_atomic(path, write_fn)

#----------------------------------------------------------------------------
# Real-image statistics cache: keyed by the dataset's *contents*, so a replaced archive at the same path is
# never matched with the statistics of the old one.

def dataset_fingerprint(path):
    """sha256 over what identifies a dataset's contents, or None when `path` is neither a file nor a folder.

    zip: every member's name, size, CRC-32 and timestamp (from the central directory: no decompression).
    folder: every file's relative name, size and modification time. Other files: size and modification time.
    """
    digest = hashlib.sha256()
    if os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for fname in sorted(files):
                full = os.path.join(root, fname)
                stat = os.stat(full)
                rel = os.path.relpath(full, path).replace(os.sep, '/')
                digest.update(f'{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n'.encode('utf-8'))
    elif os.path.isfile(path) and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for info in sorted(archive.infolist(), key=lambda info: info.filename):
                digest.update(f'{info.filename}\0{info.file_size}\0{info.CRC}\0{info.date_time}\n'.encode('utf-8'))
    elif os.path.isfile(path):
        stat = os.stat(path)
        digest.update(f'file\0{stat.st_size}\0{stat.st_mtime_ns}\n'.encode('utf-8'))
    else:
        return None
    return digest.hexdigest()


def real_stats_cache_file(opts, dataset, detector_url, detector_kwargs, max_items, stats_kwargs):
    """Cache path for real-image statistics, or None when the dataset's contents cannot be fingerprinted."""
    path = opts.dataset_kwargs.get('path')
    contents = dataset_fingerprint(path) if path is not None else None
    if contents is None:
        return None
    key_fields = dict(
        dataset_contents=contents,
        dataset_kwargs={k: v for k, v in sorted(opts.dataset_kwargs.items()) if k != 'path'},
        num_items=len(dataset), resolution=dataset.resolution, image_shape=dataset.image_shape,
        detector_sha256=get_detector_hash(detector_url, opts.detector_dir),
        detector_kwargs=dict(sorted(detector_kwargs.items())), max_items=max_items,
        stats_kwargs=dict(sorted(stats_kwargs.items())), format=1)
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True, default=repr).encode('utf-8')).hexdigest()[:32]
    name = os.path.splitext(detector_file_name(detector_url))[0]
    # The dataset name may come from a pickle: one plain file-name component, never a path.
    dataset_name = re.sub(r'[^A-Za-z0-9._-]+', '_', str(dataset.name))[:64].lstrip('.') or 'dataset'
    return dnnlib.util.make_cache_dir_path('gan-metrics', f'{dataset_name}-{name}-{key}.npz')


def _broadcast_flag(flag, opts):
    if opts.num_gpus > 1 and torch.distributed.is_initialized():
        value = torch.as_tensor(int(flag), dtype=torch.int64, device=opts.device)
        torch.distributed.broadcast(value, src=0)
        flag = bool(value.item())
    return flag

#----------------------------------------------------------------------------
# Feature extraction for real and generated images.

def _progress(iterable, opts, total, desc):
    if not opts.progress:
        return iterable
    import tqdm
    return tqdm.tqdm(iterable, total=total, desc=desc, unit='batch', dynamic_ncols=True)


def _to_rgb(images):
    """[N, C, H, W] -> 3 channels (grayscale repeated), as the detectors expect."""
    return images.repeat([1, 3, 1, 1]) if images.shape[1] == 1 else images


def quantize_images(img):
    """Generator output [N, C, H, W] float ~[-1, 1] -> uint8 [0, 255], rounding like the reference pipeline."""
    return (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def compute_feature_stats_for_dataset(opts, detector_url, detector_kwargs, rel_lo=0, rel_hi=1, batch_size=64,
                                      data_loader_kwargs=None, max_items=None, **stats_kwargs):
    """FeatureStats of the real images (at most max_items of them), from the cache when possible.

    rel_lo, rel_hi: kept for call compatibility (the official progress range); unused.
    """
    if 'class_name' not in opts.dataset_kwargs:
        raise ValueError('metrics: real-image statistics need the dataset (dataset_kwargs with class_name and path; '
                         'calc_metrics.py --data)')
    dataset = dnnlib.util.construct_class_by_name(**opts.dataset_kwargs)
    num_items = len(dataset) if max_items is None else min(len(dataset), max_items)
    opts.info.update(num_real=num_items, mirror=bool(opts.dataset_kwargs.get('xflip', False)),
                     real_resolution=dataset.resolution)
    _record_detector(opts, detector_url)
    cache_file = None
    if opts.cache:
        cache_file = real_stats_cache_file(opts, dataset, detector_url, detector_kwargs, max_items, stats_kwargs)
    if cache_file is not None and _broadcast_flag(opts.rank == 0 and os.path.isfile(cache_file), opts):
        _log.info('real-image statistics from cache: %s', cache_file)
        opts.info.real_stats_cached = True
        return FeatureStats.load(cache_file)
    opts.info.real_stats_cached = False

    stats = FeatureStats(max_items=num_items, **stats_kwargs)
    detector = get_feature_detector(detector_url, device=opts.device, num_gpus=opts.num_gpus, rank=opts.rank,
                                    verbose=opts.progress, detector_dir=opts.detector_dir)
    # Each rank reads items rank, rank + G, ...; the list wraps around so that all ranks run as many batches.
    item_subset = [(i * opts.num_gpus + opts.rank) % num_items for i in range((num_items - 1) // opts.num_gpus + 1)]
    if data_loader_kwargs is None:  # Decoding PNGs in worker processes keeps a GPU busy; on CPU they compete.
        data_loader_kwargs = dict(pin_memory=True, num_workers=3, prefetch_factor=2) if opts.device.type == 'cuda' \
            else dict(num_workers=0)
    loader = torch.utils.data.DataLoader(dataset=dataset, sampler=item_subset, batch_size=batch_size,
                                         **data_loader_kwargs)
    num_batches = (len(item_subset) + batch_size - 1) // batch_size
    with torch.no_grad():
        for images, _labels in _progress(loader, opts, num_batches, 'real features'):
            features = detector(_to_rgb(images).to(opts.device), **detector_kwargs)
            stats.append_torch(features, num_gpus=opts.num_gpus, rank=opts.rank)
    if cache_file is not None and opts.rank == 0:
        stats.save(cache_file)
    return stats


class LabelSampler:
    """Random conditioning labels of the real dataset (zero-length labels for an unconditional G)."""

    def __init__(self, opts, c_dim, seed):
        self.c_dim = c_dim
        self.device = opts.device
        self.rng = np.random.RandomState(seed)
        self.dataset = None
        if c_dim > 0:
            if 'class_name' not in opts.dataset_kwargs:
                raise ValueError(f'metrics: G is conditional (c_dim={c_dim}); labels need the dataset (--data)')
            self.dataset = dnnlib.util.construct_class_by_name(**opts.dataset_kwargs)

    def sample(self, batch_size):
        """c: [batch_size, c_dim] float32 on the metric device."""
        if self.dataset is None:
            return torch.zeros([batch_size, self.c_dim], device=self.device)
        labels = [self.dataset.get_label(self.rng.randint(len(self.dataset))) for _ in range(batch_size)]
        return torch.from_numpy(np.stack(labels)).float().to(self.device)


def metric_generator(opts):
    """A private copy of opts.G on the metric device, in eval mode, without gradients."""
    return copy.deepcopy(opts.G).eval().requires_grad_(False).to(opts.device)


def compute_feature_stats_for_generator(opts, detector_url, detector_kwargs, rel_lo=0, rel_hi=1, batch_size=64,
                                        batch_gen=None, **stats_kwargs):
    """FeatureStats of generated images; stats_kwargs must give max_items (the number of images).

    Latents and labels come from private generators seeded by (opts.random_seed, rank): reproducible, and the
    caller's random streams are untouched.
    """
    batch_gen = min(batch_size, 4) if batch_gen is None else batch_gen
    assert batch_size % batch_gen == 0
    stats = FeatureStats(**stats_kwargs)
    assert stats.max_items is not None, 'compute_feature_stats_for_generator needs max_items'
    G = metric_generator(opts)
    opts.info.update(num_fake=stats.max_items, fake_resolution=int(G.img_resolution))
    _record_detector(opts, detector_url)
    detector = get_feature_detector(detector_url, device=opts.device, num_gpus=opts.num_gpus, rank=opts.rank,
                                    verbose=opts.progress, detector_dir=opts.detector_dir)
    seed = opts.random_seed * 1000003 + opts.rank
    z_gen = torch.Generator().manual_seed(seed)
    labels = LabelSampler(opts, G.c_dim, seed)
    per_step = batch_size * opts.num_gpus
    num_batches = (stats.max_items + per_step - 1) // per_step
    with torch.no_grad():
        for _batch in _progress(range(num_batches), opts, num_batches, 'fake features'):
            images = []
            for _i in range(batch_size // batch_gen):
                z = torch.randn([batch_gen, G.z_dim], generator=z_gen).to(opts.device)
                images.append(quantize_images(G(z=z, c=labels.sample(batch_gen), **opts.G_kwargs)))
            features = detector(_to_rgb(torch.cat(images)), **detector_kwargs)
            stats.append_torch(features, num_gpus=opts.num_gpus, rank=opts.rank)
    assert stats.is_full()
    return stats
