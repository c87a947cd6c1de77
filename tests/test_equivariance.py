"""Equivariance metrics (metrics/equivariance.py): image-space transforms, masked error, and the metric itself on
generators that are equivariant by construction, that ignore the transform, and tiny real StyleGAN networks."""

import numpy as np
import pytest
import torch

from metrics import equivariance
from metrics import metric_utils


@pytest.fixture(autouse=True)
def _one_thread():
    # The gathers and small convolutions here run several times slower with 2 threads on a loaded 2-core machine.
    num_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(num_threads)

#----------------------------------------------------------------------------
# Band-limited test patterns: sums of sinusoids evaluated at exact (transformed) coordinates.

def _random_sinusoids(seed, num=8, max_freq=0.2):
    """Frequencies (cycles per pixel) uniform in the disc of radius max_freq, phases, amplitudes summing < 1."""
    rng = np.random.RandomState(seed)
    radii = np.sqrt(rng.uniform(0, 1, num)) * max_freq
    angles = rng.uniform(0, 2 * np.pi, num)
    freqs = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    return freqs, rng.uniform(0, 2 * np.pi, num), rng.uniform(0.02, 0.1, num)


def _pattern(resolution, freqs, phases, amps, output_transform=np.eye(3)):
    """[1, 1, H, W] float32 image of the pattern moved by output_transform (pixels, centred x=column, y=row)."""
    centred = np.arange(resolution) - (resolution - 1) / 2
    y, x = np.meshgrid(centred, centred, indexing='ij')
    inverse = np.linalg.inv(output_transform)
    xs = inverse[0, 0] * x + inverse[0, 1] * y + inverse[0, 2]
    ys = inverse[1, 0] * x + inverse[1, 1] * y + inverse[1, 2]
    img = sum(a * np.sin(2 * np.pi * (f[0] * xs + f[1] * ys) + p) for f, p, a in zip(freqs, phases, amps))
    return torch.from_numpy(img)[None, None].float()


def _psnr(a, b, valid):
    total, count = equivariance.masked_squared_error(a, b, valid)
    return equivariance.psnr_from_mse(total / count)

#----------------------------------------------------------------------------
# PSNR and the masked error.

def test_psnr_follows_the_peak_two_formula_and_is_infinite_for_identical_images():
    assert equivariance.psnr_from_mse(0.01) == pytest.approx(20 * np.log10(2) + 20)
    img = torch.randn([2, 3, 8, 8])
    assert _psnr(img, img, torch.ones([2, 1, 8, 8], dtype=torch.bool)) == float('inf')


def test_masked_squared_error_ignores_invalid_pixels():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn([2, 3, 8, 8], generator=gen), torch.randn([2, 3, 8, 8], generator=gen)
    valid = torch.rand([2, 1, 8, 8], generator=gen) > 0.5
    b_garbage = torch.where(valid, b, torch.full_like(b, 1e6))
    total, count = equivariance.masked_squared_error(a, b_garbage, valid)
    mask = np.broadcast_to(valid.numpy(), a.shape)
    expected = ((a.numpy().astype(np.float64) - b.numpy().astype(np.float64))[mask] ** 2).sum()
    assert total.dtype == torch.float64
    assert float(count) == mask.sum()
    assert float(total) == pytest.approx(expected, rel=1e-12)

#----------------------------------------------------------------------------
# Translation in image space.

def test_lanczos_translation_by_whole_pixels_equals_np_roll_on_the_interior():
    img = torch.randn([2, 3, 16, 20], generator=torch.Generator().manual_seed(1))
    moved, valid = equivariance.translate_image(img, dx=3, dy=-2)
    rolled = np.roll(img.numpy(), shift=(-2, 3), axis=(2, 3))
    expected_valid = np.zeros([16, 20], dtype=bool)
    expected_valid[:14, 3:] = True  # Rows whose source row + 2 exists, columns whose source column - 3 exists.
    assert np.array_equal(valid[0, 0].numpy(), expected_valid) and bool(valid.all(dim=0).eq(valid[0]).all())
    np.testing.assert_array_equal(moved.numpy()[:, :, expected_valid], rolled[:, :, expected_valid])


def test_fractional_translation_matches_the_analytically_shifted_pattern():
    freqs, phases, amps = _random_sinusoids(seed=2)
    reference = _pattern(32, freqs, phases, amps)
    moved, valid = equivariance.translate_image(reference, dx=1.3, dy=-2.7)
    expected = _pattern(32, freqs, phases, amps, equivariance.translation_matrix(1.3, -2.7))
    assert int(valid.sum()) == (32 - 5) * (32 - 5)  # Lanczos a=3: 6 taps, all inside for 27 of 32 positions.
    assert _psnr(moved, expected, valid) > 55
    assert _psnr(reference, expected, valid) < 30

#----------------------------------------------------------------------------
# Pseudo-rotation.

def test_pseudo_rotation_by_zero_is_the_identity_on_a_band_limited_image():
    freqs, phases, amps = _random_sinusoids(seed=3)
    img = _pattern(48, freqs, phases, amps)
    same, valid = equivariance.pseudo_rotate(img, 0)
    border = equivariance.UPSAMPLE_RADIUS + equivariance.LOWPASS_RADIUS - 1  # Pixels that read outside the image.
    expected_valid = torch.zeros([48, 48], dtype=torch.bool)
    expected_valid[border:-border, border:-border] = True
    assert torch.equal(valid[0, 0], expected_valid)
    assert _psnr(same, img, valid) > 50


def test_pseudo_rotation_by_90_degrees_equals_rot90_on_a_band_limited_image():
    freqs, phases, amps = _random_sinusoids(seed=4)
    img = _pattern(40, freqs, phases, amps)
    turned, valid = equivariance.pseudo_rotate(img, 90)
    expected = torch.from_numpy(np.rot90(img.numpy(), k=-1, axes=(-2, -1)).copy())  # +x towards +y.
    assert _psnr(turned, expected, valid) > 50
    assert _psnr(turned, torch.from_numpy(np.rot90(img.numpy(), k=1, axes=(-2, -1)).copy()), valid) < 30


def test_pseudo_rotation_matches_the_band_limited_analytic_rotation_at_odd_angles():
    # Content up to 0.45 cycles/pixel: both sides go through the same disc-shaped band limit.
    freqs, phases, amps = _random_sinusoids(seed=5, max_freq=0.45)
    for angle in (33.3, -151):
        rotated_exactly = _pattern(40, freqs, phases, amps, equivariance.rotation_matrix(angle))
        expected, valid_expected = equivariance.pseudo_rotate(_pattern(40, freqs, phases, amps), angle)
        observed, valid_observed = equivariance.pseudo_rotate(rotated_exactly, 0)
        assert _psnr(observed, expected, valid_expected & valid_observed) > 60, angle

#----------------------------------------------------------------------------
# Toy generators with the metric interface: sinusoids (cycles per pixel) with per-sample phases from z, rendered at
# positions mapped by `synthesis.input.transform` (units of the image width), or ignoring it.

class _ToyInput(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer('transform', torch.eye(3))


class _ToySynthesis(torch.nn.Module):
    def __init__(self, resolution, freqs, amps, follow_transform):
        super().__init__()
        self.input = _ToyInput()
        self.resolution, self.follow_transform = resolution, follow_transform
        self.register_buffer('freqs', torch.from_numpy(freqs * resolution))  # Cycles per unit (image width).
        self.register_buffer('amps', torch.from_numpy(amps))

    def forward(self, ws, **_kwargs):
        centred = (torch.arange(self.resolution, dtype=torch.float64) + 0.5 - self.resolution / 2) / self.resolution
        y, x = torch.meshgrid(centred, centred, indexing='ij')
        points = torch.stack([x, y, torch.ones_like(x)], dim=-1)  # [H, W, 3]
        if self.follow_transform:
            points = points @ self.input.transform.to(torch.float64).t()
        arg = points[..., :2] @ self.freqs.t()  # [H, W, K]
        phases = ws[:, 0, :self.freqs.shape[0]].to(torch.float64)  # [N, K]
        img = (torch.sin(2 * np.pi * arg[None] + phases[:, None, None, :]) * self.amps).sum(-1)
        return img[:, None].repeat(1, 3, 1, 1).float()


class _ToyMapping(torch.nn.Module):
    def forward(self, z, c, **_kwargs):
        return z[:, None, :]


class _ToyG(torch.nn.Module):
    def __init__(self, resolution, follow_transform, max_freq):
        super().__init__()
        freqs, _, amps = _random_sinusoids(seed=6, max_freq=max_freq)
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = len(freqs), 0, len(freqs), 1
        self.img_resolution, self.img_channels = resolution, 3
        self.mapping = _ToyMapping()
        self.synthesis = _ToySynthesis(resolution, freqs, amps, follow_transform)


def _metric(G, num_samples=4, batch_size=2, **flags):
    opts = metric_utils.MetricOptions(G=G, device='cpu')
    return equivariance.compute_equivariance_metrics(opts, num_samples=num_samples, batch_size=batch_size, **flags)


def test_translation_psnr_is_high_for_an_equivariant_generator_and_low_for_one_that_ignores_the_transform():
    follows = _ToyG(32, follow_transform=True, max_freq=0.25)
    ignores = _ToyG(32, follow_transform=False, max_freq=0.25)
    eqt_int, eqt_frac = _metric(follows, compute_eqt_int=True, compute_eqt_frac=True)
    assert eqt_int > 100 and eqt_frac > 45, (eqt_int, eqt_frac)
    low_int, low_frac = _metric(ignores, compute_eqt_int=True, compute_eqt_frac=True)
    assert low_int < 25 and low_frac < 25, (low_int, low_frac)


def test_rotation_psnr_is_high_for_an_equivariant_generator_and_low_for_one_that_ignores_the_transform():
    eqr = _metric(_ToyG(40, follow_transform=True, max_freq=0.4), num_samples=2, compute_eqr=True)
    low = _metric(_ToyG(40, follow_transform=False, max_freq=0.4), num_samples=2, compute_eqr=True)
    print(f'EQ-R toy: equivariant {eqr:.1f} dB, ignoring the transform {low:.1f} dB')
    assert eqr > 55 and low < 25, (eqr, low)


def test_metric_leaves_the_callers_generator_untouched_and_is_reproducible():
    G = _ToyG(32, follow_transform=True, max_freq=0.25)
    first = _metric(G, compute_eqt_frac=True)
    assert torch.equal(G.synthesis.input.transform, torch.eye(3))
    assert _metric(G, compute_eqt_frac=True) == first
    with pytest.raises(ValueError, match='enable at least one'):
        _metric(G)

#----------------------------------------------------------------------------
# Real networks and the registry.

def test_random_stylegan3_t_translates_far_better_than_a_random_stylegan2_of_the_same_size():
    from training import networks_stylegan2, networks_stylegan3
    small = dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3, channel_base=128, channel_max=8,
                 mapping_kwargs=dict(num_layers=2))
    torch.manual_seed(0)
    eqt_sg3 = _metric(networks_stylegan3.Generator(**small), num_samples=2, compute_eqt_int=True)
    with pytest.warns(UserWarning, match='no synthesis.input.transform'):
        eqt_sg2 = _metric(networks_stylegan2.Generator(**small), num_samples=2, compute_eqt_int=True)
    print(f'eqt_int at 16 px: StyleGAN3-T {eqt_sg3:.1f} dB, StyleGAN2 {eqt_sg2:.1f} dB')
    assert np.isfinite(eqt_sg3) and eqt_sg3 > 60
    assert eqt_sg3 > eqt_sg2 + 30


def test_metric_names_are_registered():
    from metrics import metric_main
    for name in ('eqt50k_int', 'eqt50k_frac', 'eqr50k'):
        assert metric_main.is_valid_metric(name)
        assert metric_main.metric_detector_urls(name) == ()


def test_random_stylegan3_r_rotates_far_better_than_a_random_stylegan3_t():
    from training import networks_stylegan3
    small = dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=32, img_channels=3, channel_base=128, channel_max=8,
                 mapping_kwargs=dict(num_layers=2), num_layers=4)
    torch.manual_seed(0)
    eqr_t = _metric(networks_stylegan3.Generator(**small), num_samples=2, compute_eqr=True)
    eqr_r = _metric(networks_stylegan3.Generator(conv_kernel=1, use_radial_filters=True, **small), num_samples=2,
                    compute_eqr=True)
    print(f'eqr at 32 px (4 layers): StyleGAN3-T {eqr_t:.1f} dB, StyleGAN3-R {eqr_r:.1f} dB')
    assert eqr_r > eqr_t + 10

#----------------------------------------------------------------------------
# Several processes: each renders its share and the sums are all-reduced.

def _distributed_worker(rank, init_file, out_dir):
    torch.distributed.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    try:
        opts = metric_utils.MetricOptions(G=_ToyG(32, follow_transform=False, max_freq=0.25), num_gpus=2, rank=rank,
                                          device='cpu')
        result = equivariance.compute_equivariance_metrics(opts, num_samples=4, batch_size=1, compute_eqt_int=True,
                                                           compute_eqt_frac=True)
        np.save(f'{out_dir}/rank{rank}.npy', np.array(result))
    finally:
        torch.distributed.destroy_process_group()


def test_ranks_share_the_samples_and_all_return_the_pooled_psnr(tmp_path):
    torch.multiprocessing.spawn(_distributed_worker, args=(str(tmp_path / 'init'), str(tmp_path)), nprocs=2)
    totals = sum(equivariance.equivariance_totals(
        metric_utils.MetricOptions(G=_ToyG(32, follow_transform=False, max_freq=0.25), num_gpus=2, rank=rank,
                                   device='cpu'), num_samples=4, batch_size=1, kinds=['int', 'frac'])
        for rank in range(2))
    expected = [equivariance.psnr_from_mse(total / count) for total, count in totals]
    for rank in range(2):
        np.testing.assert_allclose(np.load(tmp_path / f'rank{rank}.npy'), expected, rtol=1e-12)
