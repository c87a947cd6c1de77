"""training.augment: the ADA pipe's transforms, filters, gradients, presets and the p controller.

Karras et al. 2020, "Training GANs with limited data", Sec. 2-3 and App. B. Every transform is checked with p = 1
and that transform alone, against an independent computation on a synthetic test pattern.
"""

import itertools
import pickle
from math import comb

import numpy as np
import pytest
import torch

from training import augment
from training.augment import AdaController, AugmentPipe, augpipe_specs

# Standard normal quantile at 0.9 (debug_percentile=0.9 puts every normal draw here).
Z90 = 1.2815515655446004

#----------------------------------------------------------------------------
# Test patterns and helpers.

def _pattern(batch=4, channels=3, height=16, width=16, dtype=torch.float32):
    """Gradients + checkerboard + a coloured square: asymmetric, so any flip/turn/shift changes it."""
    ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
    img = np.zeros([channels, height, width])
    img[0] = xs / width * 1.6 - 0.9
    if channels > 1:
        img[1] = ys / height * 1.4 - 0.6
    if channels > 2:
        img[2] = np.where((xs // 3 + ys // 3) % 2 == 0, 0.7, -0.5)
    img[:, 2:5, 9:14] += 0.3
    return torch.tensor(img, dtype=dtype)[None].repeat(batch, 1, 1, 1)

def _pipe(p=1.0, **kwargs):
    pipe = AugmentPipe(**kwargs)
    pipe.p.fill_(p)
    return pipe

def _random_colour_images(batch, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand([batch, 3, 4, 4], generator=gen) * 1.2 - 0.6

def _split_luma(images):
    """Grey-axis component (mean over RGB) and the chroma remainder."""
    luma = images.mean(dim=1, keepdim=True)
    return luma, images - luma

#----------------------------------------------------------------------------
# Filters: symlets by an independent spectral factorization, the band filter bank by its properties.

def _least_asymmetric_daubechies(vanishing_moments):
    """Daubechies' construction: |Q|^2 = P(sin^2(w/2)), P(y) = sum_k C(N-1+k, k) y^k; of all root selections,
    the one whose phase is closest to linear (least asymmetric). Returns taps summing to sqrt(2)."""
    num = vanishing_moments
    y_roots = np.roots([comb(num - 1 + k, k) for k in range(num)][::-1])
    groups, used = [], set()
    for i, y in enumerate(y_roots):                        # Complex roots go together with their conjugates.
        if i in used:
            continue
        used.add(i)
        if abs(y.imag) < 1e-9:
            groups.append([y.real])
            continue
        j = min((j for j in range(len(y_roots)) if j not in used), key=lambda j: abs(y_roots[j] - np.conj(y)))
        used.add(j)
        groups.append([y, y_roots[j]])
    best, best_err = None, np.inf
    freqs = np.linspace(0, np.pi, 400)[1:-1]
    for choice in itertools.product([0, 1], repeat=len(groups)):
        zeros = []
        for pick, group in zip(choice, groups):
            for y in group:                                # y = (2 - z - 1/z) / 4: z and 1/z, pick one.
                pair = sorted(np.roots([1, -(2 - 4 * y), 1]), key=abs)
                zeros.append(pair[pick])
        taps = np.real(np.poly(zeros))
        for _ in range(num):
            taps = np.convolve(taps, [1, 1])
        taps = taps / taps.sum() * np.sqrt(2)
        phase = np.unwrap(np.angle(np.polyval(taps[::-1], np.exp(-1j * freqs))))
        fit = np.polyval(np.polyfit(freqs, phase, 1), freqs)
        err = np.abs(phase - fit).max()
        if err < best_err - 1e-9:
            best, best_err = taps, err
    return best

@pytest.mark.parametrize('name, moments', [('sym2', 2), ('sym6', 6)])
def test_symlet_table_matches_spectral_factorization(name, moments):
    table = np.array(augment.wavelets[name])
    derived = _least_asymmetric_daubechies(moments)
    assert table.shape == (2 * moments,)
    # The factorization fixes the filter up to time reversal; the table lists the decomposition low-pass.
    assert min(np.abs(table - derived).max(), np.abs(table - derived[::-1]).max()) < 1e-10

@pytest.mark.parametrize('name, moments', [('sym2', 2), ('sym6', 6)])
def test_symlet_is_orthonormal_with_vanishing_moments(name, moments):
    taps = np.array(augment.wavelets[name])
    n = np.arange(taps.size)
    assert taps.sum() == pytest.approx(np.sqrt(2), abs=1e-12)
    for shift in range(moments):                           # sum h[n] h[n + 2k] = delta_k
        assert np.dot(taps[:taps.size - 2 * shift], taps[2 * shift:]) == pytest.approx(float(shift == 0), abs=1e-12)
    for power in range(moments):                           # The high-pass kills polynomials of degree < N.
        assert np.sum((-1.0) ** n * n ** power * taps) == pytest.approx(0, abs=1e-9 * 10 ** power)

def test_buffers_have_official_names_shapes_and_values():
    pipe = AugmentPipe()
    assert [name for name, _ in pipe.named_buffers()] == ['p', 'Hz_geom', 'Hz_fbank']
    assert pipe.p.shape == () and pipe.p.dtype == torch.float32 and float(pipe.p) == 0
    assert pipe.Hz_geom.shape == (12,)
    np.testing.assert_allclose(pipe.Hz_geom.numpy(), augment.wavelets['sym6'], rtol=0, atol=1e-7)
    assert pipe.Hz_fbank.shape == (4, 43)
    assert list(pipe.parameters()) == []

def test_filter_bank_bands_are_zero_phase_octaves_that_sum_to_an_impulse():
    bank = augment.design_band_filters(augment.wavelets['sym2'], num_bands=4)
    assert bank.shape == (4, 43)
    impulse = np.zeros(43)
    impulse[21] = 1
    np.testing.assert_allclose(bank.sum(axis=0), impulse, atol=1e-12)
    np.testing.assert_allclose(bank, bank[:, ::-1], atol=1e-15)                 # Symmetric: zero phase.
    np.testing.assert_allclose(bank.sum(axis=1), [1, 0, 0, 0], atol=1e-12)      # Only the low band passes DC.
    # Frequency responses (real, since symmetric): non-negative, and each band dominates its own octave.
    freqs = np.linspace(0, np.pi, 1025)
    response = np.real(bank @ np.exp(-1j * np.outer(np.arange(43) - 21, freqs)))   # [4, F]
    assert response.min() > -1e-12
    octave_centres = [np.pi / 32, 3 * np.pi / 16, 3 * np.pi / 8, 3 * np.pi / 4]
    for band, centre in enumerate(octave_centres):
        column = response[:, np.argmin(np.abs(freqs - centre))]
        assert column.argmax() == band
    assert response[3, -1] == pytest.approx(1, abs=1e-12)                     # Nyquist is all high band.

#----------------------------------------------------------------------------
# Identity, shapes, dtypes.

def test_p0_is_the_identity_bit_exact():
    images = _pattern(batch=3)
    pipe = _pipe(p=0, **augpipe_specs['bgcfnc'])
    out = pipe(images)
    assert torch.equal(out, images)

def test_no_transform_enabled_is_the_identity_even_at_p1():
    images = _pattern(batch=3)
    assert torch.equal(_pipe(p=1)(images), images)

@pytest.mark.parametrize('dtype', [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize('channels', [1, 3])
def test_output_keeps_shape_dtype_and_device(dtype, channels):
    images = _pattern(batch=2, channels=channels, height=12, width=10, dtype=dtype)
    out = _pipe(p=0.8, **augpipe_specs['bgcfnc'])(images)
    assert out.shape == images.shape and out.dtype == dtype and out.device == images.device
    assert torch.isfinite(out).all()

def test_bad_input_is_a_clear_error():
    pipe = _pipe(**augpipe_specs['bgc'])
    with pytest.raises(ValueError, match=r'\[N, C, H, W\]'):
        pipe(torch.zeros([3, 8, 8]))
    with pytest.raises(ValueError, match='1 or 3 channels'):
        pipe(torch.zeros([2, 2, 8, 8]))
    with pytest.raises(ValueError, match='imgfilter_bands'):
        AugmentPipe(imgfilter=1, imgfilter_bands=[1, 1, 1])

#----------------------------------------------------------------------------
# Pixel blitting: exact pixel copies.

def test_xflip_flips_exactly_and_both_outcomes_occur():
    images = _pattern(batch=32)
    torch.manual_seed(0)
    out = _pipe(xflip=1)(images)
    flipped = [torch.equal(o, x.flip(2)) for o, x in zip(out, images)]
    same = [torch.equal(o, x) for o, x in zip(out, images)]
    assert all(f or s for f, s in zip(flipped, same))
    assert any(flipped) and any(same)

def test_rotate90_rotates_by_exact_multiples_of_90_degrees():
    images = _pattern(batch=48)
    torch.manual_seed(0)
    out = _pipe(rotate90=1)(images)
    turns = []
    for o, x in zip(out, images):
        matches = [k for k in range(4) if torch.equal(o, torch.rot90(x, k, dims=(1, 2)))]
        assert len(matches) == 1
        turns.append(matches[0])
    assert set(turns) == {0, 1, 2, 3}

def test_integer_translation_shifts_by_whole_pixels_with_mirror_padding():
    images = _pattern(batch=32)
    height, width = images.shape[2:]
    torch.manual_seed(0)
    out = _pipe(xint=1)(images).numpy()
    max_shift = round(0.125 * width)
    padded = np.pad(images[0].numpy(), [(0, 0), (max_shift, max_shift), (max_shift, max_shift)], mode='reflect')
    shifts = []
    for o in out:                                          # Content moved by (dx, dy): out[y, x] = in[y-dy, x-dx].
        matches = [(dx, dy) for dx in range(-max_shift, max_shift + 1) for dy in range(-max_shift, max_shift + 1)
                   if np.array_equal(o, padded[:, max_shift - dy: max_shift - dy + height,
                                               max_shift - dx: max_shift - dx + width])]
        assert len(matches) == 1
        shifts.append(matches[0])
        dx, dy = matches[0]                                # Interior agrees with a plain np.roll.
        rolled = np.roll(images[0].numpy(), (dy, dx), axis=(1, 2))
        np.testing.assert_array_equal(o[:, max_shift:-max_shift, max_shift:-max_shift],
                                      rolled[:, max_shift:-max_shift, max_shift:-max_shift])
    assert len(set(shifts)) > 8 and any(dx != 0 for dx, _ in shifts) and any(dy != 0 for _, dy in shifts)

@pytest.mark.parametrize('transform', ['xint', 'xfrac'])
def test_translation_moves_both_axes_together_in_a_fraction_p_of_the_images(transform):
    # App. B: "the" translation is one transform applied with probability p; separate x and y gates would move
    # 1 - (1 - p)^2 = 75% of the images at p = 0.5 and shift ADA's equilibrium.
    num_images, size = 20000, 1024  # At 1024 px a drawn integer shift of 0 in both axes has probability ~1e-5.
    torch.manual_seed(1)
    ref = torch.zeros([num_images], dtype=torch.float64)
    inv = _pipe(p=0.5, **{transform: 1})._sample_geometric_inverse(
        augment._Draws(num_images, torch.device('cpu')), torch.tensor(0.5), size, size, ref)
    moved_x, moved_y = inv[:, 0, 2] != 0, inv[:, 1, 2] != 0
    assert float((moved_x | moved_y).double().mean()) == pytest.approx(0.5, abs=0.02)
    # Both axes move together (an integer shift rounds to 0 on one axis in ~2 / 257 of the moved images).
    assert float((moved_x & moved_y).double().sum()) >= 0.98 * float((moved_x | moved_y).double().sum())
    assert torch.equal(inv[:, :2, :2], torch.eye(2, dtype=inv.dtype).expand(num_images, 2, 2))


#----------------------------------------------------------------------------
# General geometric transforms: one resampling with the wavelet filter, checked on smooth images.

def _cosine(height, width, fx, fy, transform=None):
    """cos(2 pi (fx x + fy y) / width) at pixel centres (centred coordinates); transform maps (x, y) first."""
    ys, xs = np.meshgrid(np.arange(height) + 0.5 - height / 2, np.arange(width) + 0.5 - width / 2, indexing='ij')
    if transform is not None:
        xs, ys = transform(xs, ys)
    return torch.tensor(np.cos(2 * np.pi * (fx * xs + fy * ys) / width))[None, None]

def test_general_warp_of_identity_returns_the_input():
    images = _pattern(batch=2, height=12, width=18, dtype=torch.float64)
    inverse = torch.eye(3, dtype=torch.float64).expand(2, 3, 3)
    out = augment._warp_resampled(images, inverse, AugmentPipe().Hz_geom)
    assert (out - images).abs().max() < 2e-6     # The wavelet's up/down cascade is the identity (float32 taps).

@pytest.mark.parametrize('angle_deg, shift', [(0, (0.3, -1.7)), (30, (0, 0)), (-75, (0.4, 0.9))])
def test_general_warp_matches_the_analytic_transform_of_a_smooth_image(angle_deg, shift):
    # out(q) = in(inv q), inv = R(-angle) T(-shift): content rotated by angle about the centre, then shifted.
    size = 32
    theta = np.deg2rad(angle_deg)
    ref = torch.zeros([1], dtype=torch.float64)
    inverse = augment.rotate2d(np.cos(-theta), np.sin(-theta), ref) @ augment.translate2d(-shift[0], -shift[1], ref)
    out = augment._warp_resampled(_cosine(size, size, 1, 0.5), inverse, AugmentPipe().Hz_geom)
    def source(xs, ys):
        xs, ys = xs - shift[0], ys - shift[1]
        return np.cos(-theta) * xs - np.sin(-theta) * ys, np.sin(-theta) * xs + np.cos(-theta) * ys
    expected = _cosine(size, size, 1, 0.5, source)
    interior = (slice(None), slice(None), slice(10, -10), slice(10, -10))   # Away from the mirrored borders.
    # Bilinear sampling at 2x: error ~ (omega * 0.5 px)^2 / 8 ~ 2e-3 for this frequency.
    assert (out - expected)[interior].abs().max() < 3e-3

def test_isotropic_scaling_zooms_by_the_drawn_factor():
    size = 32
    images = _cosine(size, size, 1, 0).float()
    out = _pipe(scale=1)(images, debug_percentile=0.9)
    factor = 2 ** (0.2 * Z90)                               # s ~ 2^N(0, 0.2^2); zoom in by s.
    expected = _cosine(size, size, 1, 0, lambda xs, ys: (xs / factor, ys / factor)).float()
    assert (out - expected)[..., 8:-8, 8:-8].abs().max() < 3e-3
    assert (out - images)[..., 8:-8, 8:-8].abs().max() > 0.1

def test_geometric_transforms_are_random_per_image_and_keep_range():
    images = _pattern(batch=16)
    torch.manual_seed(0)
    out = _pipe(**augpipe_specs['geom'])(images)
    assert len({out[i].sum().item() for i in range(16)}) > 10
    assert out.abs().max() < 1.5                            # Mirror padding: no invented values beyond ringing.

#----------------------------------------------------------------------------
# Colour transforms: one 4x4 matrix per image.

def test_brightness_adds_one_offset_per_image_with_std_0_2():
    images = _random_colour_images(4000)
    torch.manual_seed(0)
    delta = (_pipe(brightness=1)(images) - images).double()
    offsets = delta.mean(dim=(1, 2, 3))
    assert (delta - offsets[:, None, None, None]).abs().max() < 1e-6     # Same offset for every pixel, channel.
    assert offsets.std().item() == pytest.approx(0.2, rel=0.06)
    assert abs(offsets.mean().item()) < 0.015
    out = _pipe(brightness=1)(images, debug_percentile=0.9)
    np.testing.assert_allclose((out - images).numpy(), 0.2 * Z90, atol=1e-5)   # Brighter at a high percentile.

def test_contrast_scales_about_mid_grey_with_log2_std_0_5():
    images = _random_colour_images(4000) + 0.7              # Keep away from 0 for the ratio.
    torch.manual_seed(0)
    ratio = (_pipe(contrast=1)(images) / images).double()
    factors = ratio.mean(dim=(1, 2, 3))
    assert (ratio - factors[:, None, None, None]).abs().max() < 1e-5
    assert factors.log2().std().item() == pytest.approx(0.5, rel=0.06)
    assert abs(factors.log2().mean().item()) < 0.03
    out = _pipe(contrast=1)(images, debug_percentile=0.9)
    np.testing.assert_allclose((out / images).numpy(), 2 ** (0.5 * Z90), rtol=1e-5)

def test_saturation_scales_chroma_and_keeps_luma():
    images = _random_colour_images(4000)
    torch.manual_seed(0)
    out = _pipe(saturation=1)(images)
    luma_in, chroma_in = _split_luma(images.double())
    luma_out, chroma_out = _split_luma(out.double())
    assert (luma_out - luma_in).abs().max() < 1e-6
    factors = chroma_out.norm(dim=1) / chroma_in.norm(dim=1)                 # [N, H, W]
    per_image = factors.mean(dim=(1, 2))
    assert (factors - per_image[:, None, None]).abs().max() < 1e-4
    assert per_image.log2().std().item() == pytest.approx(1.0, rel=0.06)
    out = _pipe(saturation=1)(images, debug_percentile=0.9)
    more = _split_luma(out.double())[1].norm(dim=1) / chroma_in.norm(dim=1)
    np.testing.assert_allclose(more.numpy(), 2 ** Z90, rtol=1e-4)            # More saturated.

def test_luma_flip_negates_luma_and_keeps_chroma():
    images = _random_colour_images(64)
    torch.manual_seed(0)
    out = _pipe(lumaflip=1)(images)
    luma_in, chroma_in = _split_luma(images)
    luma_out, chroma_out = _split_luma(out)
    assert (chroma_out - chroma_in).abs().max() < 1e-6
    flipped = [(lo + li).abs().max() < 1e-6 for lo, li in zip(luma_out, luma_in)]
    kept = [(lo - li).abs().max() < 1e-6 for lo, li in zip(luma_out, luma_in)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)

def test_hue_rotates_chroma_around_the_grey_axis():
    images = _random_colour_images(256)
    torch.manual_seed(0)
    out = _pipe(hue=1)(images).double()
    luma_in, chroma_in = _split_luma(images.double())
    luma_out, chroma_out = _split_luma(out)
    assert (luma_out - luma_in).abs().max() < 1e-6
    assert (chroma_out.norm(dim=1) - chroma_in.norm(dim=1)).abs().max() < 1e-5
    cosines = (chroma_out * chroma_in).sum(dim=1) / (chroma_in.norm(dim=1) * chroma_out.norm(dim=1))
    angles = cosines.clamp(-1, 1).acos().mean(dim=(1, 2))                   # theta ~ U(-pi, pi): E|theta| = pi/2
    assert angles.mean().item() == pytest.approx(np.pi / 2, rel=0.1)

def test_grayscale_gets_brightness_contrast_lumaflip_and_ignores_hue_saturation():
    images = _pattern(batch=8, channels=1)
    assert torch.equal(_pipe(hue=1, saturation=1)(images), images)
    out = _pipe(contrast=1)(images, debug_percentile=0.9)
    np.testing.assert_allclose(out.numpy(), images.numpy() * 2 ** (0.5 * Z90), rtol=1e-5, atol=1e-6)
    out = _pipe(lumaflip=1)(images, debug_percentile=0.9)
    np.testing.assert_allclose(out.numpy(), -images.numpy(), atol=1e-6)
    out = _pipe(brightness=1)(images, debug_percentile=0.1)
    np.testing.assert_allclose(out.numpy(), images.numpy() - 0.2 * Z90, atol=1e-5)

#----------------------------------------------------------------------------
# Image-space filtering and corruptions.

def test_image_filter_band_gains_follow_the_normalized_draws():
    # Only the top band enabled, drawn at the 0.9 percentile: gains [1, 1, 1, t] / sqrt(sum lambda_i g_i^2),
    # applied along x then y. A constant image sees the low-band gain twice, a checkerboard the top band's.
    top = 2 ** Z90
    norm = np.sqrt((10 + 1 + 1 + top ** 2) / 13)
    pipe = _pipe(imgfilter=1, imgfilter_bands=[0, 0, 0, 1])
    constant = torch.full([1, 3, 24, 24], 0.5)
    np.testing.assert_allclose(pipe(constant, debug_percentile=0.9).numpy(), 0.5 / norm ** 2, rtol=1e-5)
    ys, xs = np.meshgrid(np.arange(24), np.arange(24), indexing='ij')
    checker = torch.tensor((-1.0) ** (xs + ys), dtype=torch.float32)[None, None].repeat(1, 3, 1, 1)
    np.testing.assert_allclose(pipe(checker, debug_percentile=0.9).numpy(), checker.numpy() * (top / norm) ** 2,
                               rtol=1e-4, atol=1e-5)

def test_image_filter_changes_images_at_p1():
    images = _pattern(batch=8)
    torch.manual_seed(0)
    out = _pipe(imgfilter=1)(images)
    assert all((o - x).abs().max() > 1e-3 for o, x in zip(out, images))

def test_additive_noise_std_is_half_normal_with_std_0_1():
    images = _pattern(batch=2000, height=8, width=8)
    torch.manual_seed(0)
    sigmas = (_pipe(noise=1)(images) - images).std(dim=(1, 2, 3))
    assert sigmas.mean().item() == pytest.approx(0.1 * np.sqrt(2 / np.pi), rel=0.06)

def test_cutout_zeroes_one_half_size_rectangle():
    images = _pattern(batch=64) + 3                        # No zeros in the input.
    torch.manual_seed(0)
    out = _pipe(cutout=1)(images)
    for o, x in zip(out, images):
        zero = (o == 0).all(dim=0)
        assert torch.equal(o[:, ~zero], x[:, ~zero])
        rows, cols = zero.any(dim=1).nonzero(), zero.any(dim=0).nonzero()
        assert zero.sum() == len(rows) * len(cols) and len(rows) <= 8 and len(cols) <= 8   # A rectangle.
    assert (out == 0).all(dim=1).sum(dim=(1, 2)).float().mean() > 20

#----------------------------------------------------------------------------
# Gradients: the pipe is affine in the images for fixed random draws, so D's gradients reach G.

def _seeded(pipe, seed=0):
    def run(images):
        torch.manual_seed(seed)
        return pipe(images)
    return run

@pytest.mark.parametrize('spec', ['color', 'filter', 'bgcfnc'])
def test_gradcheck_with_respect_to_images(spec):
    images = _pattern(batch=2, height=6, width=6, dtype=torch.float64).requires_grad_(True)
    pipe = _pipe(p=0.9, **augpipe_specs[spec])
    assert torch.autograd.gradcheck(_seeded(pipe), [images], fast_mode=True)

def test_geometric_gradients_are_finite_nonzero_and_twice_differentiable():
    images = _pattern(batch=12, height=16, width=16).requires_grad_(True)
    pipe = _pipe(p=0.1, **augpipe_specs['bgcf'])              # Some images transformed, some passed through.
    torch.manual_seed(0)
    out = pipe(images)
    unchanged = [torch.equal(o, x) for o, x in zip(out, images)]
    assert any(unchanged) and not all(unchanged)
    (grad,) = torch.autograd.grad(out.square().sum(), [images], create_graph=True)   # As in R1.
    assert torch.isfinite(grad).all() and (grad.abs().sum(dim=(1, 2, 3)) > 0).all()
    for g, x, same in zip(grad, images, unchanged):           # d/dx sum(x^2) = 2x where the image passed.
        if same:
            assert torch.equal(g, 2 * x)
    (grad2,) = torch.autograd.grad(grad.square().sum(), [images])
    assert torch.isfinite(grad2).all() and grad2.abs().sum() > 0

#----------------------------------------------------------------------------
# Presets and pickling.

def test_presets_resolve_with_the_official_multipliers():
    expected_bgc = dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1,
                        brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
    assert augpipe_specs['bgc'] == expected_bgc
    assert augpipe_specs['bgcfnc'] == dict(expected_bgc, imgfilter=1, noise=1, cutout=1)
    assert set(augpipe_specs) == {'blit', 'geom', 'color', 'filter', 'noise', 'cutout',
                                  'bg', 'bgc', 'bgcf', 'bgcfn', 'bgcfnc'}
    dnnlib = pytest.importorskip('dnnlib')
    for spec in augpipe_specs.values():
        pipe = dnnlib.util.construct_class_by_name(class_name='training.augment.AugmentPipe', **spec)
        assert all(getattr(pipe, name) == value for name, value in spec.items())

def test_pickle_round_trip_keeps_class_kwargs_buffers_and_output():
    pipe = _pipe(p=0.7, **augpipe_specs['bgcfnc'])
    clone = pickle.loads(pickle.dumps(pipe))
    assert type(clone).__name__ == 'AugmentPipe' and clone.init_kwargs == augpipe_specs['bgcfnc']
    for name, buf in pipe.named_buffers():
        assert torch.equal(buf, dict(clone.named_buffers())[name])
    images = _pattern(batch=3)
    assert torch.equal(_seeded(pipe)(images), _seeded(clone)(images))

#----------------------------------------------------------------------------
# ADA controller.

def _controller(**kwargs):
    kwargs = dict(dict(target=0.6, interval=4, ada_kimg=500, batch_size=64), **kwargs)
    return AdaController(_pipe(p=0), **kwargs)

def test_controller_raises_p_when_signs_are_above_target():
    ada = _controller()
    step_size = 64 * 4 / (500 * 1000)
    for it in range(8):
        ada.accumulate(torch.tensor([1.5, 2.0, -0.5, 3.0, 0.1, 0.2]))   # E[sign] = 2/3 > target.
        rt = ada.step()
        if it % 4 == 3:
            assert rt == pytest.approx(2 / 3)
        else:
            assert rt is None
    assert ada.p == pytest.approx(2 * step_size, rel=1e-5)

def test_controller_lowers_p_below_target_and_floors_at_zero():
    ada = _controller(interval=1)
    ada.augment_pipe.p.fill_(0.0002)
    for _ in range(3):                                      # Each step: -64 / 500k = -0.000128.
        ada.accumulate(-torch.ones(8))
        ada.step()
    assert ada.p == 0
    ada.augment_pipe.p.fill_(0.5)
    ada.accumulate(torch.tensor([1.0, -1.0]))                  # r_t = 0 < 0.6
    ada.step()
    assert ada.p == pytest.approx(0.5 - 64 / 500e3, rel=1e-6)

def test_controller_can_take_p_from_0_to_1_in_ada_kimg():
    ada = _controller(batch_size=250, interval=4, ada_kimg=10)   # Each adjustment: 250 * 4 / 10k = 0.1.
    num_iterations = 10 * 1000 // 250                             # ada_kimg worth of images.
    for _ in range(num_iterations):
        ada.accumulate(torch.ones(4))
        ada.step()
    assert ada.p == pytest.approx(1.0, rel=1e-6)

def test_controller_accepts_collector_means_and_resumes_exactly():
    ada = _controller(interval=4)
    ada.accumulate_mean(0.9, 16)
    ada.step()
    ada.accumulate(torch.ones(3))
    ada.step()
    state = ada.state_dict()
    resumed = _controller(interval=4)
    resumed.load_state_dict(pickle.loads(pickle.dumps(state)))
    for controller in (ada, resumed):
        controller.accumulate_mean(0.5, 16)
        controller.step()
        controller.accumulate(torch.ones(5))
        assert controller.step() == pytest.approx((0.9 * 16 + 3 + 0.5 * 16 + 5) / 40)
    assert ada.p == resumed.p > 0
    assert ada.state_dict() == resumed.state_dict()

def test_controller_reports_progress_augment_at_each_adjustment():
    from torch_utils import training_stats
    collector = training_stats.Collector(regex='Progress/augment', keep_previous=False)
    ada = _controller(interval=2)
    for _ in range(4):
        ada.accumulate(torch.ones(2))
        ada.step()
    collector.update()
    assert collector.num('Progress/augment') == 2
    assert collector.mean('Progress/augment') == pytest.approx(1.5 * 128 / 500e3, rel=1e-5)   # p after 1, 2 steps.

def test_controller_rejects_bad_settings():
    with pytest.raises(ValueError, match='batch_size'):
        AdaController(_pipe(), batch_size=0)
    with pytest.raises(ValueError, match='AugmentPipe'):
        AdaController(None, batch_size=4)

#----------------------------------------------------------------------------
