"""Fréchet Inception Distance (Heusel et al. 2017, "GANs trained by a two time-scale update rule", Eq. 6).

FID = |mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)) over 2048-d Inception pool3 features, statistics
in float64 (covariance normalised by N, as the reference pipeline).
"""

import numpy as np

from . import metric_utils

#----------------------------------------------------------------------------
# The distance itself (pure maths).

def _symmetric_sqrt(matrix):
    """Principal square root of a symmetric positive semi-definite matrix (negative round-off clipped)."""
    eigvals, eigvecs = np.linalg.eigh(matrix)
    return (eigvecs * np.sqrt(np.clip(eigvals, 0, None))) @ eigvecs.T


def trace_sqrt_product(sigma1, sigma2):
    """Tr((S1 S2)^(1/2)) for covariance matrices S1, S2: [D, D].

    S1 S2 is similar to S1^(1/2) S2 S1^(1/2), which is symmetric PSD, so the trace of the square root is the sum
    of the square roots of its (real, non-negative) eigenvalues: the same number as the real part of
    Tr(scipy.linalg.sqrtm(S1 @ S2)), without sqrtm's trouble near singular matrices (fewer items than features).
    """
    sqrt_sigma1 = _symmetric_sqrt(np.asarray(sigma1, dtype=np.float64))
    product = sqrt_sigma1 @ np.asarray(sigma2, dtype=np.float64) @ sqrt_sigma1
    eigvals = np.linalg.eigvalsh((product + product.T) / 2)
    return float(np.sqrt(np.clip(eigvals, 0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """Fréchet distance between Gaussians N(mu1, sigma1) and N(mu2, sigma2); mu: [D], sigma: [D, D]."""
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    mean_term = np.square(mu1 - mu2).sum()
    return float(mean_term + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2))

#----------------------------------------------------------------------------
# The metric: real statistics (cached) vs. statistics of num_gen generated images.

def compute_fid(opts, max_real, num_gen):
    """FID between the dataset (at most max_real images; None = all) and num_gen images of opts.G.

    Returns a float on rank 0 and NaN on the other ranks.
    """
    detector_url = metric_utils.INCEPTION_URL
    detector_kwargs = dict(return_features=True)  # 2048-d pool3 features.
    mu_real, sigma_real = metric_utils.compute_feature_stats_for_dataset(
        opts=opts, detector_url=detector_url, detector_kwargs=detector_kwargs, rel_lo=0, rel_hi=0,
        capture_mean_cov=True, max_items=max_real).get_mean_cov()
    mu_gen, sigma_gen = metric_utils.compute_feature_stats_for_generator(
        opts=opts, detector_url=detector_url, detector_kwargs=detector_kwargs, rel_lo=0, rel_hi=1,
        capture_mean_cov=True, max_items=num_gen).get_mean_cov()
    if opts.rank != 0:
        return float('nan')
    return frechet_distance(mu_gen, sigma_gen, mu_real, sigma_real)
