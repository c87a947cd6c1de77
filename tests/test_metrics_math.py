"""Metric maths against independent computations: Fréchet distance and KID vs numpy/scipy, precision/recall vs a
brute-force k-NN, Inception Score vs a direct formula, FeatureStats vs numpy mean/covariance."""

import numpy as np
import pytest
import scipy.linalg
import torch

from metrics import frechet_inception_distance as fid_lib
from metrics import inception_score as is_lib
from metrics import kernel_inception_distance as kid_lib
from metrics import metric_utils
from metrics import perceptual_path_length as ppl_lib
from metrics import precision_recall as pr_lib


def _features(seed, num_items, num_features, shift=0.0, scale=1.0):
    rng = np.random.RandomState(seed)
    mixing = rng.randn(num_features, num_features) / np.sqrt(num_features)
    return (rng.randn(num_items, num_features) @ mixing * scale + shift).astype(np.float32)

#----------------------------------------------------------------------------


def test_frechet_distance_matches_scipy_sqrtm():
    real, gen = _features(0, 400, 32), _features(1, 300, 32, shift=0.3, scale=1.2)
    mu1, mu2 = real.mean(0).astype(np.float64), gen.mean(0).astype(np.float64)
    sigma1, sigma2 = np.cov(real.astype(np.float64), rowvar=False), np.cov(gen.astype(np.float64), rowvar=False)
    covmean = np.real(scipy.linalg.sqrtm(sigma1 @ sigma2))
    expected = np.square(mu1 - mu2).sum() + np.trace(sigma1 + sigma2 - 2 * covmean)
    assert expected > 1
    assert fid_lib.frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_of_identical_gaussians_is_zero_even_when_singular():
    gen = _features(2, 10, 32)  # 10 items, 32 features: rank-deficient covariance.
    mu, sigma = gen.mean(0), np.cov(gen.astype(np.float64), rowvar=False)
    # Zero up to the square roots of round-off-sized eigenvalues of the null space.
    assert abs(fid_lib.frechet_distance(mu, sigma, mu, sigma)) < 1e-6 * np.trace(sigma)


def test_feature_stats_mean_cov_matches_numpy_over_uneven_batches():
    features = _features(3, 103, 16, shift=5.0)
    stats = metric_utils.FeatureStats(capture_all=True, capture_mean_cov=True, max_items=100)
    for start in range(0, 103, 7):
        stats.append(features[start:start + 7])
    assert stats.is_full() and stats.num_items == 100
    mean, cov = stats.get_mean_cov()
    expected = features[:100].astype(np.float64)
    np.testing.assert_allclose(mean, expected.mean(0), rtol=1e-10)
    np.testing.assert_allclose(cov, np.cov(expected, rowvar=False, bias=True), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(stats.get_all(), features[:100])


def test_feature_stats_save_load_round_trip(tmp_path):
    stats = metric_utils.FeatureStats(capture_all=True, capture_mean_cov=True, max_items=50)
    stats.append(_features(4, 60, 8))
    path = tmp_path / 'stats.pkl'
    stats.save(path)
    loaded = metric_utils.FeatureStats.load(path)
    assert loaded.num_items == 50 and loaded.is_full()
    np.testing.assert_array_equal(loaded.get_all(), stats.get_all())
    for a, b in zip(loaded.get_mean_cov(), stats.get_mean_cov()):
        np.testing.assert_array_equal(a, b)

#----------------------------------------------------------------------------


def _kid_reference(real, gen, num_subsets, subset_size, seed):
    """Direct MMD^2_u: averages of the kernel over off-diagonal pairs, written with explicit loops over pairs."""
    rng = np.random.RandomState(seed)
    d = real.shape[1]
    kernel = lambda a, b: (a.astype(np.float64) @ b.astype(np.float64) / d + 1) ** 3  # noqa: E731
    total = 0.0
    for _ in range(num_subsets):
        x = gen[rng.choice(gen.shape[0], subset_size, replace=False)]
        y = real[rng.choice(real.shape[0], subset_size, replace=False)]
        m = subset_size
        kxx = sum(kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        kyy = sum(kernel(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        kxy = sum(kernel(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
        total += kxx + kyy - 2 * kxy
    return total / num_subsets


def test_kid_matches_direct_pairwise_mmd():
    real, gen = _features(5, 40, 6), _features(6, 30, 6, shift=0.5)
    expected = _kid_reference(real, gen, num_subsets=3, subset_size=20, seed=7)
    got = kid_lib.kernel_inception_distance(real, gen, num_subsets=3, max_subset_size=20, seed=7)
    assert got == pytest.approx(expected, rel=1e-6)
    assert got > 0


def test_kid_subset_size_is_limited_by_the_smaller_set():
    real, gen = _features(8, 50, 4), _features(9, 12, 4)
    expected = _kid_reference(real, gen, num_subsets=2, subset_size=12, seed=0)
    assert kid_lib.kernel_inception_distance(real, gen, 2, 1000, seed=0) == pytest.approx(expected, rel=1e-6)

#----------------------------------------------------------------------------


def _pr_brute_force(real, gen, k):
    """Precision/recall by explicit nearest-neighbour search over all pairs (float64)."""
    def radii(points):
        out = []
        for i in range(len(points)):
            dists = sorted(np.linalg.norm(points - points[i], axis=1))
            out.append(dists[k])  # dists[0] is the point itself.
        return np.array(out)

    def inside(manifold, manifold_radii, probes):
        return np.mean([any(np.linalg.norm(manifold[j] - p) <= manifold_radii[j] for j in range(len(manifold)))
                        for p in probes])
    return inside(real, radii(real), gen), inside(gen, radii(gen), real)


@pytest.mark.parametrize('batch', [7, 1000])
def test_precision_recall_matches_brute_force_knn(batch):
    real, gen = _features(10, 60, 5).astype(np.float64), _features(11, 45, 5, shift=0.8).astype(np.float64)
    expected = _pr_brute_force(real, gen, k=3)
    got = pr_lib.precision_recall(torch.from_numpy(real), torch.from_numpy(gen), nhood_size=3, row_batch_size=batch,
                                  col_batch_size=batch)
    assert got == pytest.approx(expected, abs=1e-12)
    assert 0 < got[0] < 1 and 0 < got[1] < 1


def test_precision_recall_refuses_too_few_items():
    with pytest.raises(ValueError, match='k=3'):
        pr_lib.precision_recall(torch.zeros(3, 2), torch.zeros(10, 2), nhood_size=3)

#----------------------------------------------------------------------------


def test_inception_score_matches_direct_kl_formula():
    rng = np.random.RandomState(12)
    logits = rng.randn(100, 7) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    scores = []
    for split in range(4):
        part = probs[split * 25:(split + 1) * 25]
        py = part.mean(0)
        kl = [sum(p[j] * np.log(p[j] / py[j]) for j in range(7)) for p in part]
        scores.append(np.exp(np.mean(kl)))
    mean, std = is_lib.inception_score(probs, num_splits=4)
    assert mean == pytest.approx(np.mean(scores), rel=1e-10)
    assert std == pytest.approx(np.std(scores), rel=1e-10)


def test_inception_score_of_confident_uniform_classes_is_the_class_count():
    probs = np.eye(5)[np.arange(50) % 5]  # One-hot, every class equally often: IS = number of classes.
    mean, std = is_lib.inception_score(probs, num_splits=10)
    assert mean == pytest.approx(5.0) and std == pytest.approx(0.0, abs=1e-12)

#----------------------------------------------------------------------------


def test_ppl_filtered_mean_drops_outside_percentiles():
    distances = np.concatenate([np.full(990, 1.0), np.full(5, 1e6), np.full(5, -1e6)])
    assert ppl_lib.filtered_mean(distances) == pytest.approx(1.0)
    values = np.arange(1000, dtype=np.float64)
    kept = values[(values >= np.percentile(values, 1, method='lower')) &
                  (values <= np.percentile(values, 99, method='higher'))]
    assert ppl_lib.filtered_mean(values) == pytest.approx(kept.mean())


def test_slerp_endpoints_and_unit_norm():
    a, b = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    zero, one = torch.zeros(4, 1, dtype=torch.float64), torch.ones(4, 1, dtype=torch.float64)
    torch.testing.assert_close(ppl_lib.slerp(a, b, zero), a / a.norm(dim=1, keepdim=True))
    torch.testing.assert_close(ppl_lib.slerp(a, b, one), b / b.norm(dim=1, keepdim=True))
    mid = ppl_lib.slerp(a, b, torch.full([4, 1], 0.3, dtype=torch.float64))
    torch.testing.assert_close(mid.norm(dim=1), torch.ones(4, dtype=torch.float64))


def test_quantize_images_rounds_like_the_reference():
    img = torch.tensor([-1.5, -1.0, -0.0039, 0.0, 0.99, 1.0, 2.0])
    expected = np.clip(np.floor(img.numpy() * 127.5 + 128), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(metric_utils.quantize_images(img).numpy(), expected)


def test_prepare_for_lpips_crops_faces_and_box_averages_by_the_generator_resolution():
    img = torch.rand([2, 1, 512, 512]) * 2 - 1
    out = ppl_lib.prepare_for_lpips(img, crop=False, img_resolution=512)
    expected = (img.reshape(2, 1, 256, 2, 256, 2).mean([3, 5]) + 1) * 127.5
    torch.testing.assert_close(out, expected.repeat([1, 3, 1, 1]))
    cropped = ppl_lib.prepare_for_lpips(img, crop=True, img_resolution=512)  # 256 x 256 crop, then factor 2.
    expected = (img[:, :, 192:448, 128:384].reshape(2, 1, 128, 2, 128, 2).mean([3, 5]) + 1) * 127.5
    torch.testing.assert_close(cropped, expected.repeat([1, 3, 1, 1]))
