"""The metric registry: names -> metric functions, calc_metric, report_metric, and the start-up detector check.

A metric function takes `metric_utils.MetricOptions` and returns a dict of result values; it is registered under
its own name. Its `detector_urls` attribute (set by `needs_detectors`) lists the detector files it needs, so that
`check_metrics_available` can stop train.py / calc_metrics.py at start, not at the first snapshot.

Equivariance metrics (eqt50k_int, eqt50k_frac, eqr50k) are registered when `metrics/equivariance.py` exists. Its
protocol: `compute_equivariance_metrics(opts, num_samples, batch_size, translate_max=0.125, rotate_max=1,
compute_eqt_int=False, compute_eqt_frac=False, compute_eqr=False)` returns one PSNR (float, dB) per enabled
flag, as a single float when exactly one flag is set; it needs no detector file. Further metrics can be added from
any module with `register_metric(fn)`.
"""

import importlib.util
import json
import os
import time

import torch

import dnnlib

from . import frechet_inception_distance
from . import inception_score
from . import kernel_inception_distance
from . import metric_utils
from . import perceptual_path_length
from . import precision_recall
from . import translation_fid

#----------------------------------------------------------------------------
# Registry.

_metric_dict = dict()  # name -> fn(opts) -> dict of results.


def register_metric(fn):
    """Register fn(opts) -> dict under fn.__name__ (usable as a decorator)."""
    assert callable(fn)
    _metric_dict[fn.__name__] = fn
    return fn


def needs_detectors(*detector_urls):
    """Decorator: record the detector files a metric needs (checked at start by check_metrics_available)."""
    def decorator(fn):
        fn.detector_urls = tuple(detector_urls)
        return fn
    return decorator


def is_valid_metric(metric):
    return metric in _metric_dict


def list_valid_metrics():
    return list(_metric_dict.keys())


def metric_detector_urls(metric):
    """Detector files (URLs) that `metric` needs; () when none."""
    return tuple(getattr(_metric_dict[metric], 'detector_urls', ()))

#----------------------------------------------------------------------------
# Running and reporting.

def calc_metric(metric, **kwargs):
    """Compute one metric. kwargs: see metric_utils.MetricOptions (G, G_kwargs, dataset_kwargs, num_gpus, rank,
    device, progress, cache, detector_dir).

    Returns EasyDict(results: {key: float}, metric, total_time: seconds, total_time_str, num_gpus,
    info: {num_real, num_fake, mirror, real_resolution, fake_resolution, detectors: {file: sha256}, ...}).
    With several processes every rank returns rank 0's values.
    """
    if not is_valid_metric(metric):
        raise ValueError(f'unknown metric {metric!r}; valid: {", ".join(list_valid_metrics())}')
    opts = metric_utils.MetricOptions(**kwargs)
    start_time = time.time()
    results = _metric_dict[metric](opts)
    total_time = time.time() - start_time
    for key, value in list(results.items()):
        if opts.num_gpus > 1 and torch.distributed.is_initialized():
            value = torch.as_tensor(value, dtype=torch.float64, device=opts.device)
            torch.distributed.broadcast(tensor=value, src=0)
            value = float(value.cpu())
        results[key] = float(value)
    return dnnlib.EasyDict(results=dnnlib.EasyDict(results), metric=metric, total_time=total_time,
                           total_time_str=dnnlib.util.format_time(total_time), num_gpus=opts.num_gpus,
                           info=dnnlib.EasyDict(opts.info))


def report_metric(result_dict, run_dir=None, snapshot_pkl=None):
    """Append result_dict as one JSON line to <run_dir>/metric-<name>.jsonl (one write of the whole line, so
    concurrent appends never interleave). snapshot_pkl is stored relative to run_dir. Returns the line."""
    metric = result_dict['metric']
    assert is_valid_metric(metric)
    if run_dir is not None and snapshot_pkl is not None:
        snapshot_pkl = os.path.relpath(snapshot_pkl, run_dir)
    line = json.dumps(dict(result_dict, snapshot_pkl=snapshot_pkl, timestamp=time.time())) + '\n'
    if run_dir is not None and os.path.isdir(run_dir):
        fd = os.open(os.path.join(run_dir, f'metric-{metric}.jsonl'), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode('utf-8'))
        finally:
            os.close(fd)
    return line.rstrip('\n')


def check_metrics_available(metrics, detector_dir=None, download=True, verbose=False):
    """Fail fast: raise ValueError for unknown metric names and metric_utils.DetectorUnavailableError (one message
    for all missing files, naming each file, its URL and where to put it) when a needed detector is missing.
    Detectors not yet local are downloaded into the cache now (download=False: only look); verbose prints that."""
    invalid = [metric for metric in metrics if not is_valid_metric(metric)]
    if invalid:
        raise ValueError(f'unknown metric(s) {", ".join(invalid)}; valid: {", ".join(list_valid_metrics())}')
    messages = []
    for url in dict.fromkeys(url for metric in metrics for url in metric_detector_urls(metric)):
        try:
            metric_utils.find_detector_file(url, detector_dir=detector_dir, download=download, verbose=verbose)
        except metric_utils.DetectorUnavailableError as err:
            users = [metric for metric in metrics if url in metric_detector_urls(metric)]
            messages.append(f'{err}\n(needed by {", ".join(users)})')
    if messages:
        raise metric_utils.DetectorUnavailableError('\n\n'.join(messages))

#----------------------------------------------------------------------------
# Recommended metrics (StyleGAN2-ADA / StyleGAN3 names and settings).

@register_metric
@needs_detectors(metric_utils.INCEPTION_URL)
def fid50k_full(opts):
    """FID: 50k generated images vs. the whole dataset (no x-flips)."""
    opts.dataset_kwargs.update(max_size=None, xflip=False)
    fid = frechet_inception_distance.compute_fid(opts, max_real=None, num_gen=50000)
    return dict(fid50k_full=fid)


@register_metric
@needs_detectors(metric_utils.INCEPTION_URL)
def kid50k_full(opts):
    """KID: 50k generated vs. up to 1M real images, 100 subsets of 1000."""
    opts.dataset_kwargs.update(max_size=None, xflip=False)
    kid = kernel_inception_distance.compute_kid(opts, max_real=1000000, num_gen=50000, num_subsets=100,
                                                max_subset_size=1000)
    return dict(kid50k_full=kid)


@register_metric
@needs_detectors(metric_utils.VGG16_URL)
def pr50k3_full(opts):
    """Precision and recall, k=3 on VGG16 features: 50k generated vs. up to 200k real images."""
    opts.dataset_kwargs.update(max_size=None, xflip=False)
    precision, recall = precision_recall.compute_pr(opts, max_real=200000, num_gen=50000, nhood_size=3,
                                                    row_batch_size=10000, col_batch_size=10000)
    return dict(pr50k3_full_precision=precision, pr50k3_full_recall=recall)


@register_metric
@needs_detectors(metric_utils.VGG16_URL)
def ppl2_wend(opts):
    """Perceptual path length in W, endpoints, eps 1e-4, no crop, 50k samples."""
    ppl = perceptual_path_length.compute_ppl(opts, num_samples=50000, epsilon=1e-4, space='w', sampling='end',
                                             crop=False, batch_size=2)
    return dict(ppl2_wend=ppl)


@register_metric
@needs_detectors(metric_utils.INCEPTION_URL)
def is50k(opts):
    """Inception Score of 50k generated images, 10 splits."""
    opts.dataset_kwargs.update(max_size=None, xflip=False)
    mean, std = inception_score.compute_is(opts, num_gen=50000, num_splits=10)
    return dict(is50k_mean=mean, is50k_std=std)

#----------------------------------------------------------------------------
# Legacy metrics (StyleGAN / StyleGAN2 papers): real statistics on 50k images, x-flips as the dataset says.

@register_metric
@needs_detectors(metric_utils.INCEPTION_URL)
def fid50k(opts):
    """Legacy FID: 50k generated vs. 50k real images (x-flips as the dataset says)."""
    opts.dataset_kwargs.update(max_size=None)
    fid = frechet_inception_distance.compute_fid(opts, max_real=50000, num_gen=50000)
    return dict(fid50k=fid)


@register_metric
@needs_detectors(metric_utils.INCEPTION_URL)
def kid50k(opts):
    """Legacy KID: 50k generated vs. 50k real images."""
    opts.dataset_kwargs.update(max_size=None)
    kid = kernel_inception_distance.compute_kid(opts, max_real=50000, num_gen=50000, num_subsets=100,
                                                max_subset_size=1000)
    return dict(kid50k=kid)


@register_metric
@needs_detectors(metric_utils.VGG16_URL)
def pr50k3(opts):
    """Legacy precision and recall: 50k generated vs. 50k real images."""
    opts.dataset_kwargs.update(max_size=None)
    precision, recall = precision_recall.compute_pr(opts, max_real=50000, num_gen=50000, nhood_size=3,
                                                    row_batch_size=10000, col_batch_size=10000)
    return dict(pr50k3_precision=precision, pr50k3_recall=recall)

#----------------------------------------------------------------------------
# Equivariance metrics (StyleGAN3 paper, Sec. 3 and App. E): registered when metrics/equivariance.py exists.

def _equivariance_module():
    return importlib.import_module('metrics.equivariance')


def eqt50k_int(opts):
    """Equivariance to integer translation (PSNR, dB), StyleGAN3."""
    psnr = _equivariance_module().compute_equivariance_metrics(opts, num_samples=50000, batch_size=4,
                                                               compute_eqt_int=True)
    return dict(eqt50k_int=psnr)


def eqt50k_frac(opts):
    """Equivariance to fractional translation (PSNR, dB), StyleGAN3."""
    psnr = _equivariance_module().compute_equivariance_metrics(opts, num_samples=50000, batch_size=4,
                                                               compute_eqt_frac=True)
    return dict(eqt50k_frac=psnr)


def eqr50k(opts):
    """Equivariance to rotation (PSNR, dB), StyleGAN3."""
    psnr = _equivariance_module().compute_equivariance_metrics(opts, num_samples=50000, batch_size=4,
                                                               compute_eqr=True)
    return dict(eqr50k=psnr)


#----------------------------------------------------------------------------
# CycleGAN snapshots: FID of translated images (metrics/translation_fid.py; opts.G is a Translators module).

@register_metric
@needs_detectors(metric_utils.INCEPTION_URL)
def fid_AtoB(opts):
    """FID: G_AB applied to every image of domain A vs. every real image of domain B."""
    return dict(fid_AtoB=translation_fid.compute_translation_fid(opts, 'AtoB'))


@register_metric
@needs_detectors(metric_utils.INCEPTION_URL)
def fid_BtoA(opts):
    """FID: G_BA applied to every image of domain B vs. every real image of domain A."""
    return dict(fid_BtoA=translation_fid.compute_translation_fid(opts, 'BtoA'))


def is_translation_metric(metric):
    """True for the metrics of CycleGAN snapshots (they need a Translators module, not a generator)."""
    return metric in translation_fid.TRANSLATION_METRICS


if importlib.util.find_spec('metrics.equivariance') is not None:
    for _fn in (eqt50k_int, eqt50k_frac, eqr50k):
        register_metric(_fn)
