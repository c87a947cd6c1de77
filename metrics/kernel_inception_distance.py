"""Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs", Sec. 4 / Eq. 4).

KID is the unbiased estimate of the squared MMD between Inception features of real and generated images, with
the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets of equal size m.
"""

import numpy as np

from . import metric_utils

#----------------------------------------------------------------------------
# The estimate itself (pure maths).

def polynomial_kernel(x, y):
    """k(x, y) = (x.y / d + 1)^3 for all pairs: x [M, D], y [N, D] -> [M, N] float64."""
    return (np.asarray(x, np.float64) @ np.asarray(y, np.float64).T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x, y):
    """Unbiased MMD^2 estimate between samples x [m, D] and y [m, D] of equal size (Gretton et al. 2012, Eq. 3):
    mean of k over distinct pairs within x, plus within y, minus twice the mean of k across."""
    m = x.shape[0]
    within = polynomial_kernel(x, x) + polynomial_kernel(y, y)
    across = polynomial_kernel(x, y)
    return (within.sum() - np.trace(within)) / (m * (m - 1)) - 2 * across.sum() / (m * m)


def kernel_inception_distance(real_features, gen_features, num_subsets=100, max_subset_size=1000, seed=0):
    """Mean of mmd2_unbiased over num_subsets random subsets (without replacement) of size
    m = min(num_real, num_gen, max_subset_size). real_features, gen_features: [N, D]."""
    m = min(real_features.shape[0], gen_features.shape[0], max_subset_size)
    if m < 2:
        raise ValueError(f'KID needs at least 2 real and 2 generated items, got {real_features.shape[0]} and '
                         f'{gen_features.shape[0]}')
    rng = np.random.RandomState(seed)
    total = 0.0
    for _subset in range(num_subsets):
        x = gen_features[rng.choice(gen_features.shape[0], m, replace=False)]
        y = real_features[rng.choice(real_features.shape[0], m, replace=False)]
        total += mmd2_unbiased(x, y)
    return float(total / num_subsets)

#----------------------------------------------------------------------------
# The metric.

def compute_kid(opts, max_real, num_gen, num_subsets, max_subset_size):
    """KID between the dataset (at most max_real images) and num_gen images of opts.G; NaN on ranks > 0."""
    detector_url = metric_utils.INCEPTION_URL
    detector_kwargs = dict(return_features=True)
    real_features = metric_utils.compute_feature_stats_for_dataset(
        opts=opts, detector_url=detector_url, detector_kwargs=detector_kwargs, rel_lo=0, rel_hi=0,
        capture_all=True, max_items=max_real).get_all()
    gen_features = metric_utils.compute_feature_stats_for_generator(
        opts=opts, detector_url=detector_url, detector_kwargs=detector_kwargs, rel_lo=0, rel_hi=1,
        capture_all=True, max_items=num_gen).get_all()
    if opts.rank != 0:
        return float('nan')
    return kernel_inception_distance(real_features, gen_features, num_subsets, max_subset_size,
                                     seed=opts.random_seed)
