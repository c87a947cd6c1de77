"""Specification tests for training/networks_stylegan3.py (StyleGAN3-T/R generator), CPU only and small."""

import json
import os
import pickle

import numpy as np
import pytest
import scipy.signal
import torch

from training import networks_stylegan3 as nets

LAYOUT_PATH = os.path.join(os.path.dirname(__file__), 'data', 'official_layout.json')

# Laptop-sized configuration: a few channels so that each forward/backward takes well under a second.
TINY = dict(z_dim=16, c_dim=0, w_dim=16, img_channels=3, channel_base=128, channel_max=8,
            mapping_kwargs=dict(num_layers=2))
CONFIG_R = dict(conv_kernel=1, use_radial_filters=True)
SHORT = dict(num_layers=4)  # 4 layers + ToRGB (num_ws 6) for the behaviour tests: 3x faster than the full 14.

#----------------------------------------------------------------------------
# Helpers.

def _tiny_G(img_resolution=16, seed=0, **kwargs):
    torch.manual_seed(seed)
    return nets.Generator(img_resolution=img_resolution, **{**TINY, **kwargs})


def _short_G(img_resolution=16, seed=0, **kwargs):
    return _tiny_G(img_resolution=img_resolution, seed=seed, **{**SHORT, **kwargs})


def _latents(G, batch_size=2, seed=1):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn([batch_size, G.z_dim], generator=gen)
    c = torch.zeros([batch_size, G.c_dim])
    return z, c


def _names_and_shapes(module):
    params = {name: list(p.shape) for name, p in module.named_parameters()}
    buffers = {name: list(b.shape) for name, b in module.named_buffers()}
    return params, buffers


def _translation(dx, dy):
    """3x3 matrix translating positions by (dx, dy) units."""
    return torch.tensor([[1, 0, dx], [0, 1, dy], [0, 0, 1]], dtype=torch.float32)


def _load_layout():
    with open(LAYOUT_PATH) as f:
        return json.load(f)

#----------------------------------------------------------------------------
# Layout: exact official names and shapes.

@pytest.mark.parametrize('config', ['official-stylegan3-t-256', 'official-stylegan3-t-1024',
                                    'official-stylegan3-r-256', 'official-stylegan3-r-1024'])
def test_generator_names_and_shapes_match_official_layout(config):
    entry = _load_layout()[config]['G_ema']
    assert entry['class_name'] == 'Generator'
    with torch.device('meta'):
        G = nets.Generator(**entry['init_kwargs'])
    params, buffers = _names_and_shapes(G)
    assert params == entry['params']
    assert buffers == entry['buffers']


LAYER_NAMES = {
    ('t', 256): 'L0_36_512 L1_36_512 L2_36_512 L3_52_512 L4_52_512 L5_84_512 L6_84_512 L7_148_512 L8_148_512 '
                'L9_148_362 L10_276_256 L11_276_181 L12_276_128 L13_256_128 L14_256_3',
    ('t', 512): 'L0_36_512 L1_36_512 L2_52_512 L3_52_512 L4_84_512 L5_84_512 L6_148_512 L7_148_483 L8_276_323 '
                'L9_276_215 L10_532_144 L11_532_96 L12_532_64 L13_512_64 L14_512_3',
    ('t', 1024): 'L0_36_512 L1_36_512 L2_52_512 L3_52_512 L4_84_512 L5_148_512 L6_148_512 L7_276_323 L8_276_203 '
                 'L9_532_128 L10_1044_81 L11_1044_51 L12_1044_32 L13_1024_32 L14_1024_3',
    ('r', 1024): 'L0_36_1024 L1_36_1024 L2_52_1024 L3_52_1024 L4_84_1024 L5_148_1024 L6_148_1024 L7_276_645 '
                 'L8_276_406 L9_532_256 L10_1044_161 L11_1044_102 L12_1044_64 L13_1024_64 L14_1024_3',
}


@pytest.mark.parametrize('cfg,img_resolution', sorted(LAYER_NAMES))
def test_synthesis_layer_names_follow_the_paper_schedule(cfg, img_resolution):
    kwargs = dict(channel_base=65536, channel_max=1024) if cfg == 'r' else {}
    with torch.device('meta'):
        synthesis = nets.SynthesisNetwork(w_dim=512, img_resolution=img_resolution, img_channels=3, **kwargs)
    assert synthesis.layer_names == LAYER_NAMES[(cfg, img_resolution)].split()
    assert synthesis.num_ws == 16


def test_schedule_endpoints_and_critical_sampling_at_1024():
    sched = nets.synthesis_schedule(img_resolution=1024, img_channels=3, channel_base=32768, channel_max=512,
                                    num_layers=14, num_critical=2, first_cutoff=2, first_stopband=2**2.1,
                                    last_stopband_rel=2**0.3, margin_size=10)
    np.testing.assert_allclose(sched['cutoffs'][0], 2)
    np.testing.assert_allclose(sched['cutoffs'][12:], 512)  # The last layers sit at Nyquist of the output.
    np.testing.assert_allclose(sched['stopbands'][0], 2**2.1)
    np.testing.assert_allclose(sched['stopbands'][12:], 512 * 2**0.3)
    assert list(sched['sampling_rates']) == [16, 16, 32, 32, 64, 128, 128, 256, 256, 512, 1024, 1024, 1024, 1024,
                                             1024]
    # Geometric progression of the cutoffs between the first and the first critically sampled layer.
    ratios = sched['cutoffs'][1:13] / sched['cutoffs'][:12]
    np.testing.assert_allclose(ratios, 256 ** (1 / 12))
    # Transition band: from f_c up to max(f_t, s/2).
    np.testing.assert_allclose(sched['half_widths'], np.maximum(sched['stopbands'], sched['sampling_rates'] / 2)
                               - sched['cutoffs'])


def test_layer_flags_fp16_and_filter_kinds():
    with torch.device('meta'):
        synthesis = nets.SynthesisNetwork(w_dim=512, img_resolution=1024, img_channels=3, channel_base=65536,
                                          channel_max=1024, conv_kernel=1, use_radial_filters=True)
    layers = [getattr(synthesis, name) for name in synthesis.layer_names]
    # fp16 where the layer's sampling rate * 2**4 > 1024, i.e. rate >= 128: from L5 (rate 128) on.
    assert [layer.use_fp16 for layer in layers] == [False] * 5 + [True] * 10
    assert [layer.is_critically_sampled for layer in layers] == [False] * 12 + [True] * 3
    assert [layer.is_torgb for layer in layers] == [False] * 14 + [True]
    assert layers[-1].up_filter is None and layers[-1].down_filter is None
    assert layers[-1].conv_kernel == 1 and layers[-1].padding == [0, 0, 0, 0]
    assert all(layer.down_filter.ndim == 2 for layer in layers[:12])  # Radial except critically sampled.
    assert all(layer.down_filter.ndim == 1 for layer in layers[12:14])

#----------------------------------------------------------------------------
# Filter design.

def test_separable_lowpass_has_unit_dc_gain_and_half_gain_at_cutoff():
    fs, cutoff, half_width = 64, 9.0, 5.0
    taps = nets.design_lowpass_filter(numtaps=24, cutoff=cutoff, width=half_width * 2, fs=fs).double().numpy()
    assert taps.shape == (24,)
    np.testing.assert_allclose(taps, taps[::-1], atol=1e-7)  # Linear phase.
    np.testing.assert_allclose(taps.sum(), 1, atol=1e-6)
    _, response = scipy.signal.freqz(taps, worN=[0, cutoff, cutoff + half_width], fs=fs)
    assert abs(abs(response[1]) - 0.5) < 0.02
    assert abs(response[2]) < 0.1  # Into the stopband.


def test_single_tap_filter_is_none():
    assert nets.design_lowpass_filter(numtaps=1, cutoff=4, width=2, fs=16) is None


def _radial_response(taps, fx, fy, fs):
    """Continuous-frequency response of a 2-D FIR centred on the origin, at (fx, fy) cycles per unit."""
    numtaps = taps.shape[0]
    pos = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    phase_x = np.exp(-2j * np.pi * fx * pos)
    phase_y = np.exp(-2j * np.pi * fy * pos)
    return np.abs(phase_y @ taps @ phase_x)


def test_radial_lowpass_is_symmetric_with_unit_dc_gain_and_isotropic_cutoff():
    fs, cutoff, half_width = 64, 9.0, 7.0
    taps = nets.design_lowpass_filter(numtaps=12, cutoff=cutoff, width=half_width * 2, fs=fs, radial=True)
    taps = taps.double().numpy()
    assert taps.shape == (12, 12)
    assert np.all(np.isfinite(taps))
    np.testing.assert_allclose(taps.sum(), 1, atol=1e-6)
    np.testing.assert_allclose(taps, taps.T, atol=1e-7)
    np.testing.assert_allclose(taps, taps[::-1, :], atol=1e-7)
    np.testing.assert_allclose(taps, taps[:, ::-1], atol=1e-7)
    # Around half gain at the cutoff in every direction (the circular passband), unlike a separable filter
    # whose diagonal response at |f| = f_c is about 0.5 * 0.5 ... 1.
    along_axis = _radial_response(taps, cutoff, 0, fs)
    along_diagonal = _radial_response(taps, cutoff / np.sqrt(2), cutoff / np.sqrt(2), fs)
    assert 0.35 < along_axis < 0.65
    assert abs(along_axis - along_diagonal) < 0.05
    assert _radial_response(taps, 0, 0, fs) == pytest.approx(1, abs=1e-6)


def test_odd_radial_filter_handles_the_centre_tap():
    taps = nets.design_lowpass_filter(numtaps=7, cutoff=4, width=6, fs=32, radial=True).numpy()
    assert np.all(np.isfinite(taps)) and taps.sum() == pytest.approx(1, abs=1e-6)
    assert taps[3, 3] == taps.max()

#----------------------------------------------------------------------------
# Fourier-feature input against the formula, evaluated in numpy.

def test_fourier_features_are_sampled_in_the_disc_with_centred_phases():
    torch.manual_seed(0)
    layer = nets.SynthesisInput(w_dim=4, channels=4096, size=36, sampling_rate=16, bandwidth=2)
    radii = layer.freqs.norm(dim=1).numpy()
    assert radii.max() <= 2 and layer.phases.min() >= -0.5 and layer.phases.max() < 0.5
    # Uniform in the disc: P(|f| < r) = (r / bandwidth)**2.
    assert abs(np.mean(radii < 1) - 0.25) < 0.03 and abs(np.mean(radii < np.sqrt(2)) - 0.5) < 0.03


def test_synthesis_input_evaluates_rotated_translated_fourier_features():
    torch.manual_seed(0)
    layer = nets.SynthesisInput(w_dim=4, channels=6, size=[10, 8], sampling_rate=4, bandwidth=1.5)
    angle, t_x, t_y = 0.3, 0.2, -0.7
    with torch.no_grad():  # Affine weight is zero at init: the bias alone sets (r_cos, r_sin, t_x, t_y).
        layer.affine.bias.copy_(torch.tensor([2 * np.cos(angle), 2 * np.sin(angle), 2 * t_x, 2 * t_y]))
        layer.transform.copy_(_translation(0.05, 0.1))
    out = layer(torch.randn([1, 4])).detach().double().numpy()[0]  # [C, H, W]
    assert out.shape == (6, 8, 10)

    # Pixel centres: x = (j + 0.5 - 10/2) / 4, y = (i + 0.5 - 8/2) / 4; p' = R(angle) (p + (0.05, 0.1) - t).
    xs, ys = np.meshgrid((np.arange(10) + 0.5 - 5) / 4, (np.arange(8) + 0.5 - 4) / 4)
    px, py = xs + 0.05 - t_x, ys + 0.1 - t_y
    qx, qy = np.cos(angle) * px - np.sin(angle) * py, np.sin(angle) * px + np.cos(angle) * py
    freqs, phases = layer.freqs.double().numpy(), layer.phases.double().numpy()
    features = np.sin(2 * np.pi * (freqs[:, 0, None, None] * qx + freqs[:, 1, None, None] * qy
                                   + phases[:, None, None]))  # [C, H, W]
    mix = layer.weight.detach().double().numpy() / np.sqrt(6)
    expected = np.einsum('oc,chw->ohw', mix, features)
    np.testing.assert_allclose(out, expected, atol=1e-5)


#----------------------------------------------------------------------------
# Modulated convolution against a per-sample loop.

def test_modulated_conv2d_matches_per_sample_reference():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn([3, 4, 7, 7], generator=gen, dtype=torch.float64)
    weight = torch.randn([5, 4, 3, 3], generator=gen, dtype=torch.float64)
    styles = torch.randn([3, 4], generator=gen, dtype=torch.float64)
    out = nets.modulated_conv2d(x, weight, styles, demodulate=True, padding=2, input_gain=torch.tensor(0.7,
                                dtype=torch.float64))
    for i in range(3):
        w_mod = weight * styles[i].reshape(1, 4, 1, 1)
        w_mod = w_mod / w_mod.square().sum(dim=[1, 2, 3], keepdim=True).add(1e-8).sqrt()
        expected = torch.nn.functional.conv2d(x[i:i + 1] * 0.7, w_mod, padding=2)
        torch.testing.assert_close(out[i:i + 1], expected, rtol=1e-10, atol=1e-10)

#----------------------------------------------------------------------------
# Forward / backward at tiny sizes.

@pytest.mark.parametrize('img_resolution', [16, 32])
@pytest.mark.parametrize('cfg', ['t', 'r'])
def test_generator_forward_backward_shapes_and_finite_grads(cfg, img_resolution):
    G = _tiny_G(img_resolution=img_resolution, **(CONFIG_R if cfg == 'r' else {}))
    assert G.num_ws == 16 and G.mapping.num_ws == 16
    z, c = _latents(G)
    img = G(z, c)
    assert img.shape == (2, 3, img_resolution, img_resolution) and img.dtype == torch.float32
    assert torch.isfinite(img).all() and img.std() > 1e-3
    img.square().mean().backward()
    for name, param in G.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    # The head (mapping), the Fourier input and the tail (ToRGB) all receive gradient.
    torgb = getattr(G.synthesis, G.synthesis.layer_names[-1])
    for param in [G.mapping.fc0.weight, G.synthesis.input.weight, G.synthesis.input.affine.weight,
                  torgb.affine.weight, torgb.weight]:
        assert param.grad.abs().sum() > 0


def test_every_layer_runs_float32_on_cpu_even_when_flagged_fp16():
    G = _short_G()  # 16 * 2**4 > 16: every layer is flagged use_fp16.
    assert all(getattr(G.synthesis, name).use_fp16 for name in G.synthesis.layer_names)
    z, c = _latents(G, batch_size=1)
    ws = G.mapping(z, c)
    x = G.synthesis.input(ws[:, 0])
    for idx, name in enumerate(G.synthesis.layer_names):
        x = getattr(G.synthesis, name)(x, ws[:, idx + 1])
        assert x.dtype == torch.float32


def test_conditional_generator_embeds_the_label():
    G = _short_G(c_dim=4)
    assert G.mapping.embed.weight.shape == (16, 4)
    assert G.mapping.fc0.weight.shape == (16, 32)  # z and the embedded label, concatenated.
    z = torch.randn([1, 16], generator=torch.Generator().manual_seed(0)).repeat([2, 1])
    c = torch.nn.functional.one_hot(torch.tensor([0, 1]), 4).float()
    img = G(z, c)
    assert (img[0] - img[1]).abs().max() > 0.1 * img.std()

#----------------------------------------------------------------------------
# Mapping: truncation and EMAs.

def test_truncation_pulls_ws_towards_w_avg_up_to_the_cutoff():
    G = _short_G()
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.randn([16], generator=torch.Generator().manual_seed(5)))
    z, c = _latents(G)
    ws = G.mapping(z, c)
    w_avg = G.mapping.w_avg
    torch.testing.assert_close(G.mapping(z, c, truncation_psi=0), w_avg.expand_as(ws))
    half = G.mapping(z, c, truncation_psi=0.5, truncation_cutoff=4)
    torch.testing.assert_close(half[:, :4], w_avg + 0.5 * (ws[:, :4] - w_avg))
    torch.testing.assert_close(half[:, 4:], ws[:, 4:])
    torch.testing.assert_close(G(z, c, truncation_psi=0), G.synthesis(w_avg.expand_as(ws)))


def test_w_avg_and_magnitude_ema_update_only_when_asked():
    G = _short_G(magnitude_ema_beta=0.5)
    z, c = _latents(G)
    layer = G.synthesis.L0_36_8
    G(z, c)
    assert G.mapping.w_avg.abs().sum() == 0 and layer.magnitude_ema.item() == 1
    ws = G.mapping(z, c)
    x_in = G.synthesis.input(ws[:, 0])  # Input of L0.
    G(z, c, update_emas=True)
    # lerp(current, ema, beta) = beta * ema + (1 - beta) * current.
    torch.testing.assert_close(G.mapping.w_avg, 0.002 * ws[:, 0].mean(dim=0).detach())
    expected_ema = 0.5 * 1 + 0.5 * x_in.detach().square().mean()
    torch.testing.assert_close(layer.magnitude_ema, expected_ema)
    assert layer.magnitude_ema_beta == 0.5 and _short_G().synthesis.L0_36_8.magnitude_ema_beta == 0.999

#----------------------------------------------------------------------------
# Determinism and pickling.

def test_same_seed_gives_identical_networks_and_images():
    G1, G2 = _short_G(seed=3), _short_G(seed=3)
    for (name, a), (_, b) in zip(G1.state_dict().items(), G2.state_dict().items()):
        assert torch.equal(a, b), name
    z, c = _latents(G1, batch_size=1)
    img = G1(z, c)
    assert torch.equal(img, G2(z, c))
    assert torch.equal(img, G1(z, c))
    assert not torch.equal(img, _short_G(seed=4)(z, c))
    # No noise inputs in StyleGAN3: every noise_mode gives the same image; fp16 is off on CPU anyway.
    assert torch.equal(img, G1(z, c, noise_mode='const', force_fp32=True))
    assert torch.equal(img, G1(z, c, noise_mode='none'))
    with pytest.raises(ValueError, match='noise_mode'):
        G1(z, c, noise_mode='zeros')


@pytest.mark.parametrize('cfg', ['t', 'r'])
def test_pickle_round_trip_is_bit_exact(cfg):
    G = _short_G(**(CONFIG_R if cfg == 'r' else {})).eval().requires_grad_(False)
    G2 = pickle.loads(pickle.dumps(G))
    assert type(G2).__name__ == 'Generator' and G2 is not G
    assert G2.init_kwargs == G.init_kwargs
    assert list(G.state_dict()) == list(G2.state_dict())
    for name, tensor in G.state_dict().items():
        assert torch.equal(tensor, G2.state_dict()[name]), name
    z, c = _latents(G, batch_size=1)
    assert torch.equal(G(z, c), G2(z, c))

#----------------------------------------------------------------------------
# The user transform (input.transform holds the inverse of the output transform).

def _psnr(a, b, value_range):
    return float(10 * torch.log10(value_range ** 2 / (a - b).square().mean()))


def test_setting_input_transform_changes_the_output():
    G = _short_G()
    z, c = _latents(G, batch_size=1)
    reference = G(z, c)
    with torch.no_grad():
        G.synthesis.input.transform.copy_(_translation(0.1, -0.05))
    assert (G(z, c) - reference).abs().max() > 0.1 * reference.std()


def test_integer_translation_through_input_transform_shifts_the_image():
    G = _tiny_G(img_resolution=32, seed=7)
    z, c = _latents(G, batch_size=1, seed=11)
    ws = G.mapping(z, c)
    shift_px, res, margin = 3, G.img_resolution, 4
    with torch.no_grad():
        reference = G.synthesis(ws)
        G.synthesis.input.transform.copy_(_translation(-shift_px / res, 0))  # Inverse of a +3 px translation.
        shifted = G.synthesis(ws)
    # shifted[x] should equal reference[x - 3]; skip a border where new content enters the frame.
    value_range = reference.max() - reference.min()
    crop = (slice(None), slice(None), slice(margin, -margin))
    psnr_shift = _psnr(shifted[crop + (slice(shift_px + margin, -margin),)],
                       reference[crop + (slice(margin, -margin - shift_px),)], value_range)
    psnr_unshifted = _psnr(shifted[crop + (slice(margin, -margin),)], reference[crop + (slice(margin, -margin),)],
                           value_range)
    print(f'translation PSNR {psnr_shift:.1f} dB, unshifted comparison {psnr_unshifted:.1f} dB')
    assert psnr_shift > 40, psnr_shift
    assert psnr_shift > psnr_unshifted + 15, (psnr_shift, psnr_unshifted)

#----------------------------------------------------------------------------

def test_config_r_is_exactly_equivariant_to_quarter_turns():
    # 1x1 convs, radial down filters and the same separable up filter along x and y are all invariant under a
    # quarter turn of a centred square grid, so a 90-degree rotation of the input must rotate the image exactly,
    # provided every layer keeps its samples centred (the padding of SynthesisLayer).
    G = _short_G(img_resolution=32, **CONFIG_R)
    z, c = _latents(G, batch_size=1, seed=13)
    ws = G.mapping(z, c)
    quarter_turn = torch.tensor([[0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float32)  # x -> y (screen: clockwise).
    with torch.no_grad():
        reference = G.synthesis(ws)
        G.synthesis.input.transform.copy_(quarter_turn.inverse())
        rotated = G.synthesis(ws)
    # Output pixel (y, x) = reference at the pre-image of (x, y) under the quarter turn, i.e. (x, -y):
    # rotated[..., y, x] = reference[..., W-1-x, y]  <=>  rot90 from the W axis towards the H axis.
    expected = torch.rot90(reference, k=1, dims=[3, 2])
    assert (rotated - expected).abs().max() < 1e-4 * reference.abs().max()
    assert (rotated - reference).abs().max() > 0.1 * reference.abs().max()

#----------------------------------------------------------------------------
# Pickled source must also run under the official package (DESIGN.md §4.3).

def test_module_imports_only_numpy_scipy_torch_and_torch_utils():
    import ast
    tree = ast.parse(open(nets.__file__).read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.update(f'{node.module}.{alias.name}' for alias in node.names)
    allowed = {'numpy', 'scipy.signal', 'scipy.special', 'torch', 'torch_utils.misc', 'torch_utils.persistence',
               'torch_utils.ops.conv2d_gradfix', 'torch_utils.ops.filtered_lrelu', 'torch_utils.ops.bias_act'}
    assert imported <= allowed, imported - allowed

#----------------------------------------------------------------------------
# Every filter a network builds meets the Kaiser design's promise (Kaiser 1974: a window of N taps reaches a
# stopband attenuation of A = 2.285 (N - 1) dw + 7.95 dB for a transition of dw radians per sample).

def _kaiser_promised_attenuation_db(numtaps, full_width, fs):
    delta_omega = 2 * np.pi * full_width / fs  # Transition width in radians per sample.
    return 2.285 * (numtaps - 1) * delta_omega + 7.95


def _network_filters(img_resolution, **kwargs):
    """(layer name, 'up'/'down', taps as float64 numpy, numtaps, cutoff, half width, fs) of every filter."""
    synthesis = nets.SynthesisNetwork(w_dim=4, img_resolution=img_resolution, img_channels=3, channel_base=64,
                                      channel_max=4, **kwargs)  # Filters do not depend on the channel counts.
    for name in synthesis.layer_names:
        layer = getattr(synthesis, name)
        for kind, taps, numtaps, cutoff, half_width in [
                ('up', layer.up_filter, layer.up_taps, layer.in_cutoff, layer.in_half_width),
                ('down', layer.down_filter, layer.down_taps, layer.out_cutoff, layer.out_half_width)]:
            if taps is not None:
                yield name, kind, taps.double().numpy(), numtaps, cutoff, half_width, layer.tmp_sampling_rate


@pytest.mark.parametrize('cfg,img_resolution', [('t', 16), ('t', 256), ('t', 1024), ('r', 256)])
def test_separable_filters_have_unit_dc_gain_and_the_promised_stopband_attenuation(cfg, img_resolution):
    kwargs = CONFIG_R if cfg == 'r' else {}
    checked = 0
    for name, kind, taps, numtaps, cutoff, half_width, fs in _network_filters(img_resolution, **kwargs):
        if taps.ndim != 1:
            continue
        assert taps.shape == (numtaps,)
        assert abs(taps.sum() - 1) < 1e-6, (name, kind)
        promised = _kaiser_promised_attenuation_db(numtaps, 2 * half_width, fs)
        assert promised == pytest.approx(scipy.signal.kaiser_atten(numtaps, 2 * half_width / (fs / 2)))
        # Stopband: from cutoff + half width (firwin centres the transition on the cutoff) to Nyquist.
        _, response = scipy.signal.freqz(taps, worN=np.linspace(cutoff + half_width, fs / 2, 1000), fs=fs)
        measured = -20 * np.log10(np.abs(response).max())
        # Kaiser's formula is an empirical fit: for 12-24 taps the design lands up to ~5.4 dB short of it at
        # 60+ dB, and up to ~2 dB above it near 26 dB (measured over T-16/256/1024 and R-256).
        assert promised - 6 <= measured <= promised + 3, (name, kind, numtaps, promised, measured)
        checked += 1
    assert checked >= 16  # Every up filter (14 layers) plus, for R, the down filters of the critical layers.


def test_radial_filters_have_unit_dc_gain_and_attenuate_the_whole_2d_stopband():
    checked = 0
    for name, kind, taps, numtaps, cutoff, half_width, fs in _network_filters(256, **CONFIG_R):
        if taps.ndim != 2:
            continue
        assert abs(taps.sum() - 1) < 1e-6, (name, kind)
        # Response on a dense 2-D grid over [-fs/2, fs/2)^2; the stopband is the region outside the disc of
        # radius cutoff + half width (the jinc's passband is circular).
        grid = 256
        response = np.abs(np.fft.fft2(taps, s=[grid, grid]))
        freqs = np.fft.fftfreq(grid, d=1 / fs)
        radius = np.hypot(*np.meshgrid(freqs, freqs))
        measured = -20 * np.log10(response[radius >= cutoff + half_width].max())
        # A jinc under a separable Kaiser window: no closed-form promise; 12 taps reach 32.5-45.9 dB here.
        assert measured > 30, (name, kind, measured)
        checked += 1
    assert checked == 12  # Down filters of L0-L11; the critically sampled L12, L13 use separable ones.

#----------------------------------------------------------------------------
# Integer translation to float tolerance, away from the border. A shift is exactly representable in every layer
# when it is a whole number of samples at the lowest sampling rate (every rate is a power-of-two multiple of it);
# then only the zero padding at the borders breaks the equality, and its effect decays towards the centre.

def _shifted_pair(G, shift_x, shift_y, seed=11):
    z, c = _latents(G, batch_size=1, seed=seed)
    ws = G.mapping(z, c)
    res = G.img_resolution
    with torch.no_grad():
        reference = G.synthesis(ws)
        G.synthesis.input.transform.copy_(_translation(-shift_x / res, -shift_y / res))  # Inverse of the shift.
        shifted = G.synthesis(ws)
    return reference, shifted


def _interior_max_error(reference, shifted, shift_x, shift_y, margin):
    """max |shifted[y, x] - reference[y - shift_y, x - shift_x]| over pixels >= margin from both images' borders,
    relative to the reference's value range."""
    res = reference.shape[-1]

    def window(shift):  # (slice of shifted, slice of reference) along one axis.
        lo, hi = margin + max(shift, 0), res - margin + min(shift, 0)
        return slice(lo, hi), slice(lo - shift, hi - shift)

    (sy, ry), (sx, rx) = window(shift_y), window(shift_x)
    error = (shifted[..., sy, sx] - reference[..., ry, rx]).abs().max()
    return float(error / (reference.max() - reference.min()))


@pytest.mark.parametrize('shift_x,shift_y', [(2, 0), (0, 2), (-4, 2)])
def test_short_T_network_shifts_by_whole_pixels_to_float_tolerance(shift_x, shift_y):
    G = _short_G(img_resolution=32, seed=7)
    lowest_rate = min(getattr(G.synthesis, name).in_sampling_rate for name in G.synthesis.layer_names)
    for shift in (shift_x, shift_y):
        assert (shift * lowest_rate / 32) % 1 == 0  # Whole samples in every layer.
    reference, shifted = _shifted_pair(G, shift_x, shift_y)
    error = _interior_max_error(reference, shifted, shift_x, shift_y, margin=2)
    print(f'short T-32, shift ({shift_x}, {shift_y}): interior max error {error:.2e} of the range')
    assert error < 1e-5  # Measured 1e-7 .. 3e-7.
    assert _interior_max_error(reference, reference, shift_x, shift_y, margin=2) > 0.05  # The shift is visible.


def test_full_T_network_shifts_by_whole_pixels_in_the_interior():
    # 14 layers at 64 px: the lowest rate is 16, so a 4-pixel shift is one sample there. The zero padding of 15
    # layers reaches ~16 pixels in; inside that the images agree (measured 2.3e-4 of the range).
    G = _tiny_G(img_resolution=64, seed=7)
    assert min(getattr(G.synthesis, name).in_sampling_rate for name in G.synthesis.layer_names) == 16
    reference, shifted = _shifted_pair(G, 4, 0)
    error = _interior_max_error(reference, shifted, 4, 0, margin=16)
    print(f'T-64, shift (4, 0): interior max error {error:.2e} of the range')
    assert error < 1e-3
    assert _interior_max_error(reference, reference, 4, 0, margin=16) > 0.05
