"""Inception Score (Salimans et al. 2016, "Improved techniques for training GANs", Sec. 4):
IS = exp(E_x[KL(p(y|x) || p(y))]), with p(y) the mean of p(y|x) over the split, reported as the mean and
standard deviation over splits.
"""

import numpy as np
import scipy.special

from . import metric_utils

#----------------------------------------------------------------------------

def inception_score(probs, num_splits=10):
    """(mean, std) of the Inception Score over num_splits consecutive splits; probs: [N, classes] p(y|x)."""
    probs = np.asarray(probs, dtype=np.float64)
    num_items = probs.shape[0]
    scores = []
    for split in range(num_splits):
        part = probs[split * num_items // num_splits:(split + 1) * num_items // num_splits]
        marginal = part.mean(axis=0, keepdims=True)
        # KL(p(y|x) || p(y)) per item, with 0 log 0 = 0 (xlogy).
        kl = scipy.special.xlogy(part, part) - scipy.special.xlogy(part, marginal)
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def compute_is(opts, num_gen, num_splits):
    """Inception Score of num_gen images of opts.G: (mean, std) on rank 0, (NaN, NaN) elsewhere."""
    detector_url = metric_utils.INCEPTION_URL
    # The reference computes the softmax without the last layer's bias (matching the original TF Inception).
    detector_kwargs = dict(no_output_bias=True)
    gen_probs = metric_utils.compute_feature_stats_for_generator(
        opts=opts, detector_url=detector_url, detector_kwargs=detector_kwargs, capture_all=True,
        max_items=num_gen).get_all()
    if opts.rank != 0:
        return float('nan'), float('nan')
    return inception_score(gen_probs, num_splits)
