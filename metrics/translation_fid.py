"""FID of translated images, for CycleGAN snapshots: fid_AtoB and fid_BtoA.

fid_AtoB = FID between the Inception features of G_AB(x) for every image x of domain A and the features of every
real image of domain B (fid_BtoA: G_BA on domain B against domain A), the way unpaired translation is usually
scored (e.g. Park et al. 2020, "Contrastive learning for unpaired image-to-image translation", Sec. 4). Same
detector, feature statistics and distance as metrics/frechet_inception_distance.py; the real statistics of a
domain are cached like any dataset's.

opts.G is a Translators module (the snapshot's G_AB and G_BA); opts.dataset_kwargs.path is the unpaired dataset
(A/ and B/, or trainA/ and trainB/; training/unpaired_dataset.py), typically its held-out test split.
"""

import copy

import torch

import dnnlib

from . import metric_utils
from .frechet_inception_distance import frechet_distance

TRANSLATION_METRICS = ('fid_AtoB', 'fid_BtoA')

#----------------------------------------------------------------------------


class Translators(torch.nn.Module):
    """The two generators of a CycleGAN snapshot, as calc_metrics.py hands them to the translation metrics."""

    def __init__(self, G_AB, G_BA):
        super().__init__()
        self.G_AB = G_AB
        self.G_BA = G_BA


def _domain_dataset_kwargs(opts, folder):
    from training import unpaired_dataset
    kwargs = unpaired_dataset.domain_dataset_kwargs(opts.dataset_kwargs.path, folder)
    return dnnlib.EasyDict(kwargs, xflip=False, max_size=None)


def _translated_feature_stats(opts, G, dataset_kwargs, detector_url, detector_kwargs, batch_size):
    """FeatureStats (mean/cov) of G(x) for every image x of the dataset; each rank translates its share."""
    dataset = dnnlib.util.construct_class_by_name(**dataset_kwargs)
    num_items = len(dataset)
    stats = metric_utils.FeatureStats(max_items=num_items, capture_mean_cov=True)
    detector = metric_utils.get_feature_detector(detector_url, device=opts.device, num_gpus=opts.num_gpus,
                                                 rank=opts.rank, verbose=opts.progress, detector_dir=opts.detector_dir)
    item_subset = [(i * opts.num_gpus + opts.rank) % num_items for i in range((num_items - 1) // opts.num_gpus + 1)]
    loader = torch.utils.data.DataLoader(dataset=dataset, sampler=item_subset, batch_size=batch_size)
    G = copy.deepcopy(G).eval().requires_grad_(False).to(opts.device)
    with torch.no_grad():
        for images, _labels in metric_utils._progress(loader, opts, len(loader), 'translated features'):
            translated = G(images.to(opts.device).to(torch.float32) / 127.5 - 1)
            features = detector(metric_utils._to_rgb(metric_utils.quantize_images(translated)), **detector_kwargs)
            stats.append_torch(features, num_gpus=opts.num_gpus, rank=opts.rank)
    opts.info.update(num_fake=num_items, fake_resolution=dataset.resolution)
    return stats


def compute_translation_fid(opts, direction, batch_size=16):
    """FID of the source domain translated ('AtoB': G_AB on A vs. real B; 'BtoA': G_BA on B vs. real A).

    Returns a float on rank 0 and NaN on the other ranks."""
    from training import unpaired_dataset
    if not isinstance(opts.G, Translators):
        raise ValueError(f'fid_{direction} measures a CycleGAN snapshot (G_AB and G_BA), not a {type(opts.G).__name__}')
    path = opts.dataset_kwargs.get('path')
    if path is None:
        raise ValueError(f'fid_{direction} needs the unpaired dataset (calc_metrics.py --data=ZIP|DIR)')
    folder_a, folder_b = unpaired_dataset.find_domain_folders(path)
    source, target, G = (folder_a, folder_b, opts.G.G_AB) if direction == 'AtoB' else (folder_b, folder_a, opts.G.G_BA)
    detector_url = metric_utils.INCEPTION_URL
    detector_kwargs = dict(return_features=True)  # 2048-d pool3 features.
    real_opts = copy.copy(opts)  # Shares opts.info, so that the real side's facts are recorded too.
    real_opts.dataset_kwargs = _domain_dataset_kwargs(opts, target)
    mu_real, sigma_real = metric_utils.compute_feature_stats_for_dataset(
        opts=real_opts, detector_url=detector_url, detector_kwargs=detector_kwargs, capture_mean_cov=True,
        max_items=None).get_mean_cov()
    mu_fake, sigma_fake = _translated_feature_stats(opts, G, _domain_dataset_kwargs(opts, source), detector_url,
                                                    detector_kwargs, batch_size).get_mean_cov()
    opts.info.update(direction=direction, source_domain=source, target_domain=target)
    if opts.rank != 0:
        return float('nan')
    return frechet_distance(mu_fake, sigma_fake, mu_real, sigma_real)

#----------------------------------------------------------------------------
