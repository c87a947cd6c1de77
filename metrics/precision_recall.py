"""Improved precision and recall (Kynkäänniemi et al. 2019, "Improved precision and recall metric for assessing
generative models", Sec. 2, Eq. 1-2).

Each set of VGG16 features approximates a manifold: the union of balls around its samples, each ball's radius
the distance to the sample's k-th nearest neighbour within the set. Precision is the fraction of generated
samples inside the real manifold; recall the fraction of real samples inside the generated one.
"""

import torch

from . import metric_utils

#----------------------------------------------------------------------------
# The estimate itself (pure maths, in row/column batches so that memory stays bounded).

def _batches(num_items, batch_size):
    return [(start, min(start + batch_size, num_items)) for start in range(0, num_items, batch_size)]


def manifold_radii(features, nhood_size, row_batch_size=10000, col_batch_size=10000):
    """Distance of each item to its nhood_size-th nearest neighbour in `features` ([N, D] tensor) -> [N]."""
    num_smallest = nhood_size + 1  # +1: every item is its own nearest neighbour, at distance 0.
    radii = []
    for row_lo, row_hi in _batches(features.shape[0], row_batch_size):
        # Running num_smallest smallest distances over column batches: memory [rows, col_batch_size].
        smallest = None
        for col_lo, col_hi in _batches(features.shape[0], col_batch_size):
            dists = torch.cdist(features[row_lo:row_hi], features[col_lo:col_hi])
            candidates = dists if smallest is None else torch.cat([smallest, dists], dim=1)
            smallest = candidates.topk(min(num_smallest, candidates.shape[1]), dim=1, largest=False).values
        radii.append(smallest[:, num_smallest - 1])
    return torch.cat(radii)


def fraction_inside_manifold(manifold, radii, probes, row_batch_size=10000, col_batch_size=10000):
    """Fraction of probes [P, D] within radii[j] of some manifold[j] ([M, D], radii [M])."""
    num_inside = 0
    for row_lo, row_hi in _batches(probes.shape[0], row_batch_size):
        inside = torch.zeros(row_hi - row_lo, dtype=torch.bool, device=probes.device)
        for col_lo, col_hi in _batches(manifold.shape[0], col_batch_size):
            dists = torch.cdist(probes[row_lo:row_hi], manifold[col_lo:col_hi])
            inside |= (dists <= radii[col_lo:col_hi].unsqueeze(0)).any(dim=1)
        num_inside += int(inside.sum())
    return num_inside / probes.shape[0]


def precision_recall(real_features, gen_features, nhood_size=3, row_batch_size=10000, col_batch_size=10000):
    """(precision, recall) of gen_features [G, D] against real_features [R, D] (tensors, float32 or float64)."""
    for name, features in (('real', real_features), ('generated', gen_features)):
        if features.shape[0] <= nhood_size:
            raise ValueError(f'precision/recall with k={nhood_size} needs more than {nhood_size} {name} items, '
                             f'got {features.shape[0]}')
    batch_kwargs = dict(row_batch_size=row_batch_size, col_batch_size=col_batch_size)
    real_radii = manifold_radii(real_features, nhood_size, **batch_kwargs)
    gen_radii = manifold_radii(gen_features, nhood_size, **batch_kwargs)
    precision = fraction_inside_manifold(real_features, real_radii, gen_features, **batch_kwargs)
    recall = fraction_inside_manifold(gen_features, gen_radii, real_features, **batch_kwargs)
    return precision, recall

#----------------------------------------------------------------------------
# The metric.

def compute_pr(opts, max_real, num_gen, nhood_size, row_batch_size, col_batch_size):
    """(precision, recall) of num_gen images of opts.G against the dataset (at most max_real images) on VGG16
    features; (NaN, NaN) on ranks > 0."""
    detector_url = metric_utils.VGG16_URL
    detector_kwargs = dict(return_features=True)
    real_features = metric_utils.compute_feature_stats_for_dataset(
        opts=opts, detector_url=detector_url, detector_kwargs=detector_kwargs, rel_lo=0, rel_hi=0,
        capture_all=True, max_items=max_real).get_all_torch()
    gen_features = metric_utils.compute_feature_stats_for_generator(
        opts=opts, detector_url=detector_url, detector_kwargs=detector_kwargs, rel_lo=0, rel_hi=1,
        capture_all=True, max_items=num_gen).get_all_torch()
    if opts.rank != 0:
        return float('nan'), float('nan')
    return precision_recall(real_features.to(opts.device), gen_features.to(opts.device), nhood_size,
                            row_batch_size, col_batch_size)
