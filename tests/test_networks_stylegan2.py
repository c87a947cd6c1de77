"""Specification tests for training/networks_stylegan2.py (StyleGAN2 G and D), CPU only and small."""

import ast
import copy
import inspect
import io
import json
import os
import pickle

import numpy as np
import pytest
import torch

from training import networks_stylegan2 as nets
from torch_utils import persistence
from torch_utils.ops import conv2d_resample
from torch_utils.ops import upfirdn2d

LAYOUT_PATH = os.path.join(os.path.dirname(__file__), 'data', 'official_layout.json')

# A laptop-sized configuration: small channels so that every forward/backward takes milliseconds.
TINY = dict(z_dim=16, w_dim=16, img_channels=3, channel_base=256, channel_max=32)
TINY_MAPPING = dict(num_layers=2)

#----------------------------------------------------------------------------
# Helpers.

def _names_and_shapes(module):
    params = {name: list(p.shape) for name, p in module.named_parameters()}
    buffers = {name: list(b.shape) for name, b in module.named_buffers()}
    return params, buffers


def _tiny_G(img_resolution=16, c_dim=0, seed=0, **kwargs):
    torch.manual_seed(seed)
    args = dict(z_dim=TINY['z_dim'], c_dim=c_dim, w_dim=TINY['w_dim'], img_resolution=img_resolution,
                img_channels=TINY['img_channels'], channel_base=TINY['channel_base'],
                channel_max=TINY['channel_max'], mapping_kwargs=TINY_MAPPING)
    args.update(kwargs)
    return nets.Generator(**args)


def _tiny_D(img_resolution=16, c_dim=0, seed=0, **kwargs):
    torch.manual_seed(seed)
    args = dict(c_dim=c_dim, img_resolution=img_resolution, img_channels=TINY['img_channels'],
                channel_base=TINY['channel_base'], channel_max=TINY['channel_max'])
    args.update(kwargs)
    return nets.Discriminator(**args)


def _inputs(G, batch_size=4, seed=1):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn([batch_size, G.z_dim], generator=gen)
    c = torch.nn.functional.one_hot(torch.arange(batch_size) % max(G.c_dim, 1), max(G.c_dim, 1)).float()
    return z, c[:, :G.c_dim]


def _randomize_biases_and_noise(G, seed=2):
    """Zero-initialised biases and noise strengths hide bugs; give them random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith('noise_strength') or (name.endswith('.bias') and 'affine' not in name):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        if hasattr(G, 'mapping') and hasattr(G.mapping, 'w_avg'):
            G.mapping.w_avg.copy_(torch.randn(G.mapping.w_avg.shape, generator=gen))

#----------------------------------------------------------------------------
# Layout: names and shapes exactly as the official networks built by the official training script.

@pytest.mark.parametrize('config', ['official-stylegan2-256', 'official-stylegan2-1024'])
@pytest.mark.parametrize('which', ['G_ema', 'D'])
def test_official_layout_names_and_shapes_match_exactly(config, which):
    with open(LAYOUT_PATH) as f:
        entry = json.load(f)[config][which]
    assert entry['class_module'] == 'networks_stylegan2'
    cls = getattr(nets, entry['class_name'])
    net = cls(**entry['init_kwargs'])
    params, buffers = _names_and_shapes(net)
    assert sorted(set(params) ^ set(entry['params'])) == []
    assert sorted(set(buffers) ^ set(entry['buffers'])) == []
    assert params == entry['params']
    assert buffers == entry['buffers']


def _expected_G_layout(res_log2, c_dim, architecture, z_dim, w_dim, channel_base, channel_max, num_layers):
    """Independent statement of the StyleGAN2 G layout (SG2 Fig. 7 + App. B) as {name: shape} for params."""
    ch = {2 ** i: min(channel_base // 2 ** i, channel_max) for i in range(2, res_log2 + 1)}
    p = {}
    embed = w_dim if c_dim > 0 else 0
    if c_dim > 0:
        p['mapping.embed.weight'] = [embed, c_dim]
        p['mapping.embed.bias'] = [embed]
    feats = [z_dim + embed] + [w_dim] * num_layers
    for i in range(num_layers):
        p[f'mapping.fc{i}.weight'] = [feats[i + 1], feats[i]]
        p[f'mapping.fc{i}.bias'] = [feats[i + 1]]
    for res, out_ch in ch.items():
        b = f'synthesis.b{res}'
        convs = [('conv1', out_ch)] if res == 4 else [('conv0', ch[res // 2]), ('conv1', out_ch)]
        if res == 4:
            p[f'{b}.const'] = [out_ch, 4, 4]
        for name, in_ch in convs:
            p[f'{b}.{name}.affine.weight'] = [in_ch, w_dim]
            p[f'{b}.{name}.affine.bias'] = [in_ch]
            p[f'{b}.{name}.weight'] = [out_ch, in_ch, 3, 3]
            p[f'{b}.{name}.bias'] = [out_ch]
            p[f'{b}.{name}.noise_strength'] = []
        if architecture == 'skip' or res == 2 ** res_log2:
            p[f'{b}.torgb.affine.weight'] = [out_ch, w_dim]
            p[f'{b}.torgb.affine.bias'] = [out_ch]
            p[f'{b}.torgb.weight'] = [3, out_ch, 1, 1]
            p[f'{b}.torgb.bias'] = [3]
        if architecture == 'resnet' and res > 4:
            p[f'{b}.skip.weight'] = [out_ch, ch[res // 2], 1, 1]
    return p


@pytest.mark.parametrize('img_resolution,c_dim,architecture,channel_base,channel_max', [
    (4, 0, 'skip', 1024, 64),
    (8, 5, 'resnet', 1024, 64),
    (32, 0, 'orig', 512, 16),
    (64, 2, 'skip', 2048, 128),
])
def test_generator_layout_and_num_ws_for_other_configs(img_resolution, c_dim, architecture, channel_base,
                                                      channel_max):
    G = nets.Generator(z_dim=8, c_dim=c_dim, w_dim=12, img_resolution=img_resolution, img_channels=3,
                       architecture=architecture, channel_base=channel_base, channel_max=channel_max,
                       mapping_kwargs=dict(num_layers=3))
    res_log2 = int(np.log2(img_resolution))
    assert G.num_ws == G.synthesis.num_ws == G.mapping.num_ws == 2 * res_log2 - 2
    params, buffers = _names_and_shapes(G)
    assert params == _expected_G_layout(res_log2, c_dim, architecture, 8, 12, channel_base, channel_max, 3)
    noise_buffers = {k: v for k, v in buffers.items() if k.endswith('noise_const')}
    assert len(noise_buffers) == 2 * res_log2 - 3
    assert all(v == [int(k.split('.')[1][1:])] * 2 for k, v in noise_buffers.items())


@pytest.mark.parametrize('architecture,want_slices', [
    ('skip', {4: [0, 1], 8: [1, 2, 3], 16: [3, 4, 5]}),    # tRGB of block r shares its w with conv0 of 2r.
    ('orig', {4: [0], 8: [1, 2], 16: [3, 4, 5]}),          # Only the last block has a tRGB.
])
def test_each_synthesis_block_reads_its_own_consecutive_ws(architecture, want_slices):
    G = _tiny_G(16, architecture=architecture)
    ws = torch.arange(G.num_ws, dtype=torch.float32).reshape(1, -1, 1).repeat(2, 1, G.w_dim)
    seen = {}
    for res in [4, 8, 16]:
        block = getattr(G.synthesis, f'b{res}')
        block.register_forward_hook(lambda mod, args, out, res=res: seen.update({res: args[2][0, :, 0].tolist()}))
    G.synthesis(ws)
    assert G.num_ws == 6
    assert seen == {res: [float(i) for i in idx] for res, idx in want_slices.items()}


@pytest.mark.parametrize('img_resolution,c_dim,architecture', [(8, 0, 'resnet'), (16, 4, 'skip'), (32, 0, 'orig')])
def test_discriminator_layout_for_other_configs(img_resolution, c_dim, architecture):
    D = nets.Discriminator(c_dim=c_dim, img_resolution=img_resolution, img_channels=1, architecture=architecture,
                           channel_base=512, channel_max=32, mapping_kwargs=dict(num_layers=2))
    params, _ = _names_and_shapes(D)
    ch = lambda res: min(512 // res, 32)  # noqa: E731
    res_log2 = int(np.log2(img_resolution))
    blocks = [2 ** i for i in range(res_log2, 2, -1)]
    for res in blocks:
        has_fromrgb = (res == img_resolution) or architecture == 'skip'
        assert (f'b{res}.fromrgb.weight' in params) == has_fromrgb
        assert (f'b{res}.skip.weight' in params) == (architecture == 'resnet')
        assert params[f'b{res}.conv1.weight'] == [ch(res // 2), ch(res), 3, 3]
    assert params['b4.conv.weight'] == [ch(4), ch(4) + 1, 3, 3]
    assert params['b4.fc.weight'] == [ch(4), ch(4) * 16]
    assert params['b4.out.weight'] == [ch(4) if c_dim else 1, ch(4)]
    assert ('b4.fromrgb.weight' in params) == (architecture == 'skip')
    assert ('mapping.fc1.weight' in params) == (c_dim > 0)
    assert 'mapping.w_avg' not in dict(D.named_buffers())

#----------------------------------------------------------------------------
# Forward and backward for every architecture, conditional or not.

@pytest.mark.parametrize('img_resolution', [16, 32])
@pytest.mark.parametrize('architecture', ['skip', 'resnet', 'orig'])
@pytest.mark.parametrize('c_dim', [0, 3])
def test_G_and_D_forward_backward_shapes_and_gradients(img_resolution, architecture, c_dim):
    G = _tiny_G(img_resolution, c_dim, architecture=architecture)
    D = _tiny_D(img_resolution, c_dim, architecture=architecture, mapping_kwargs=TINY_MAPPING)
    z, c = _inputs(G)
    img = G(z, c)
    assert img.shape == (4, 3, img_resolution, img_resolution) and img.dtype == torch.float32
    logits = D(img, c)
    assert logits.shape == (4, 1) and logits.dtype == torch.float32
    assert torch.isfinite(img).all() and torch.isfinite(logits).all()
    logits.sum().backward()
    for name, p in list(G.named_parameters()) + list(D.named_parameters()):
        assert p.grad is not None, f'{name} got no gradient'
        assert torch.isfinite(p.grad).all(), name
    # Every generator weight that shapes the image must receive signal (noise_strength starts at 0 and the
    # affine biases' gradient can vanish only by accident).
    assert G.synthesis.b4.const.grad.abs().sum() > 0
    assert G.mapping.fc0.weight.grad.abs().sum() > 0


def test_generator_output_is_roughly_unit_scale_at_init():
    G = _tiny_G(32)
    img = G(*_inputs(G, batch_size=8))
    assert 0.05 < img.std().item() < 20

#----------------------------------------------------------------------------
# Modulated convolution (SG2 Eq. 1-3) against a direct per-sample computation.

def _modconv_direct(x, weight, styles, noise, demodulate, up, f, padding):
    """Eq. 1: w' = s_i w_ijk; Eq. 3: w'' = w' / sqrt(sum_ik w'^2 + 1e-8); then an ordinary convolution per sample."""
    outs = []
    for n in range(x.shape[0]):
        w = weight * styles[n].reshape(1, -1, 1, 1)
        if demodulate:
            w = w / (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        if up == 1:
            outs.append(torch.nn.functional.conv2d(x[n:n + 1], w, padding=padding))
        else:
            outs.append(conv2d_resample.conv2d_resample(x[n:n + 1], w, f=f, up=up, padding=padding,
                                                        flip_weight=False))
    out = torch.cat(outs)
    return out + noise if noise is not None else out


@pytest.mark.parametrize('fused', [True, False])
@pytest.mark.parametrize('demodulate', [True, False])
@pytest.mark.parametrize('up', [1, 2])
def test_modulated_conv2d_matches_direct_per_sample_equations(fused, demodulate, up):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn([3, 5, 6, 6], generator=gen, dtype=torch.float64)
    weight = torch.randn([7, 5, 3, 3], generator=gen, dtype=torch.float64)
    styles = torch.randn([3, 5], generator=gen, dtype=torch.float64) + 1
    noise = torch.randn([3, 1, 6 * up, 6 * up], generator=gen, dtype=torch.float64)
    f = upfirdn2d.setup_filter([1, 3, 3, 1]).to(torch.float64) if up > 1 else None
    got = nets.modulated_conv2d(x, weight, styles, noise=noise.clone(), up=up, padding=1, resample_filter=f,
                                demodulate=demodulate, flip_weight=(up == 1), fused_modconv=fused)
    want = _modconv_direct(x, weight, styles, noise, demodulate, up, f, padding=1)
    assert got.shape == (3, 7, 6 * up, 6 * up)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_demodulation_gives_unit_output_std_for_unit_inputs():
    # SG2 Eq. 2-3: with i.i.d. unit-variance inputs, each demodulated output channel has unit std.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn([2, 64, 32, 32], generator=gen)
    weight = torch.randn([8, 64, 3, 3], generator=gen)
    styles = torch.rand([2, 64], generator=gen) * 3
    y = nets.modulated_conv2d(x, weight, styles, padding=1)
    std = y[:, :, 1:-1, 1:-1].std(dim=[2, 3])
    assert torch.allclose(std, torch.ones_like(std), atol=0.1)


def test_fp16_prenormalisation_does_not_change_the_result():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn([2, 4, 5, 5], generator=gen, dtype=torch.float64)
    weight = torch.randn([3, 4, 3, 3], generator=gen, dtype=torch.float64) * 100
    styles = torch.randn([2, 4], generator=gen, dtype=torch.float64) * 50
    weight2, styles2 = nets._prenormalize_for_fp16(weight, styles)
    assert weight2.abs().max() <= 1 and styles2.abs().max() <= 1
    a = nets.modulated_conv2d(x, weight, styles, padding=1)
    b = nets.modulated_conv2d(x, weight2, styles2, padding=1)
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('fused', [True, False])
def test_float16_modulated_conv2d_does_not_overflow_for_large_weights_and_styles(fused):
    # Without the pre-normalisation, non-fused activations x*s conv w here reach ~1e6, far beyond float16's 65504.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn([2, 8, 8, 8], generator=gen)
    weight = torch.randn([4, 8, 3, 3], generator=gen) * 300
    styles = torch.randn([2, 8], generator=gen) * 400
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    want = nets.modulated_conv2d(x, weight, styles, up=2, padding=1, resample_filter=f, flip_weight=False,
                                 fused_modconv=fused)
    try:
        got = nets.modulated_conv2d(x.half(), weight, styles, up=2, padding=1, resample_filter=f,
                                    flip_weight=False, fused_modconv=fused)
    except RuntimeError as err:  # Older CPU builds lack half convolutions.
        pytest.skip(f'float16 convolution unsupported on this CPU build: {err}')
    assert got.dtype == torch.float16 and torch.isfinite(got).all()
    torch.testing.assert_close(got.float(), want, rtol=0, atol=1e-2)


@pytest.mark.parametrize('architecture', ['skip', 'resnet'])
def test_fused_and_nonfused_generator_agree(architecture):
    G = _tiny_G(16, c_dim=3, architecture=architecture)
    _randomize_biases_and_noise(G)
    z, c = _inputs(G)
    with torch.no_grad():
        a = G(z, c, noise_mode='const', fused_modconv=True)
        b = G(z, c, noise_mode='const', fused_modconv=False)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert a.abs().max() > 1e-3


def test_fused_modconv_inference_only_follows_training_flag(monkeypatch):
    # The official meaning; with the fast CPU paths on, a CPU batch > 1 takes the non-fused form at inference too
    # (tests/test_fast_cpu_networks.py).
    monkeypatch.setattr(nets, '_FAST_PATHS_ENABLED', False)
    G = _tiny_G(8, fused_modconv_default='inference_only')
    seen = []
    real = nets.modulated_conv2d
    monkeypatch.setattr(nets, 'modulated_conv2d', lambda *a, **k: seen.append(k['fused_modconv']) or real(*a, **k))
    z, c = _inputs(G, 2)
    G.train()(z, c)
    assert seen and not any(seen)
    seen.clear()
    G.eval()(z, c)
    assert seen and all(seen)

#----------------------------------------------------------------------------
# Mapping network: normalisation, truncation, w_avg tracking.

def test_truncation_psi_zero_gives_w_avg_everywhere():
    G = _tiny_G(16)
    _randomize_biases_and_noise(G)
    z, c = _inputs(G)
    ws = G.mapping(z, c, truncation_psi=0)
    assert ws.shape == (4, G.num_ws, G.w_dim)
    torch.testing.assert_close(ws, G.mapping.w_avg.expand_as(ws), rtol=0, atol=0)


def test_truncation_cutoff_only_touches_the_first_ws():
    G = _tiny_G(16)
    _randomize_biases_and_noise(G)
    z, c = _inputs(G)
    plain = G.mapping(z, c)
    cut = G.mapping(z, c, truncation_psi=0.5, truncation_cutoff=3)
    want_first = G.mapping.w_avg + 0.5 * (plain[:, :3] - G.mapping.w_avg)
    torch.testing.assert_close(cut[:, :3], want_first)
    torch.testing.assert_close(cut[:, 3:], plain[:, 3:], rtol=0, atol=0)
    assert (cut[:, :3] - plain[:, :3]).abs().max() > 1e-3


def test_update_emas_moves_w_avg_towards_batch_mean_by_beta():
    G = _tiny_G(8)
    _randomize_biases_and_noise(G)
    z, c = _inputs(G)
    before = G.mapping.w_avg.clone()
    ws = G.mapping(z, c)
    unchanged = G.mapping.w_avg.clone()
    G.mapping(z, c, update_emas=True)
    beta = G.mapping.w_avg_beta
    torch.testing.assert_close(unchanged, before, rtol=0, atol=0)
    torch.testing.assert_close(G.mapping.w_avg, beta * before + (1 - beta) * ws[:, 0].mean(0))


def test_mapping_is_invariant_to_scale_of_z_and_uses_label():
    G = _tiny_G(8, c_dim=3)
    z, c = _inputs(G)
    torch.testing.assert_close(G.mapping(z, c), G.mapping(z * 7.5, c), rtol=1e-5, atol=1e-6)
    assert (G.mapping(z, c) - G.mapping(z, c.roll(1, dims=1))).abs().max() > 1e-4

#----------------------------------------------------------------------------
# Noise modes, determinism, precision.

def test_noise_modes_const_random_none():
    G = _tiny_G(16)
    _randomize_biases_and_noise(G)
    z, c = _inputs(G)
    with torch.no_grad():
        const1 = G(z, c, noise_mode='const')
        const2 = G(z, c, noise_mode='const')
        rand1 = G(z, c, noise_mode='random')
        rand2 = G(z, c, noise_mode='random')
        none = G(z, c, noise_mode='none')
        for name, p in G.named_parameters():
            if name.endswith('noise_strength'):
                p.zero_()
        zero_strength = G(z, c, noise_mode='random')
    assert torch.equal(const1, const2)
    assert (rand1 - rand2).abs().max() > 1e-4
    assert (const1 - none).abs().max() > 1e-4
    torch.testing.assert_close(none, zero_strength, rtol=0, atol=1e-6)


def test_same_seed_gives_identical_networks_and_images():
    G1, G2 = _tiny_G(16, seed=5), _tiny_G(16, seed=5)
    z, c = _inputs(G1)
    torch.manual_seed(9)
    a = G1(z, c)
    torch.manual_seed(9)
    b = G2(z, c)
    assert torch.equal(a, b)
    assert not torch.equal(a, _tiny_G(16, seed=6)(z, c))


def test_fp16_blocks_run_in_float32_on_cpu():
    # Official behaviour: float16 only on CUDA; on CPU every block silently takes force_fp32.
    G = _tiny_G(16, num_fp16_res=4)
    D = _tiny_D(16, num_fp16_res=4)
    assert all(getattr(G.synthesis, f'b{r}').use_fp16 for r in [8, 16]) and not G.synthesis.b4.use_fp16
    z, c = _inputs(G)
    img = G(z, c, noise_mode='const')
    assert img.dtype == torch.float32
    assert torch.equal(img, G(z, c, noise_mode='const', force_fp32=True))
    assert D(img, c).dtype == torch.float32


def test_conv_clamp_limits_activations():
    G = _tiny_G(8, conv_clamp=1e-3)
    img = G(*_inputs(G), noise_mode='none')
    # Every conv output is clamped; torgb outputs add up over 2 blocks (upsampling by a normalised filter).
    assert img.abs().max() <= 2e-3 + 1e-6

#----------------------------------------------------------------------------
# Discriminator details.

def test_minibatch_std_matches_direct_group_statistics():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn([8, 6, 3, 3], generator=gen, dtype=torch.float64)
    y = nets.MinibatchStdLayer(group_size=4, num_channels=2)(x)
    assert y.shape == (8, 8, 3, 3)
    torch.testing.assert_close(y[:, :6], x, rtol=0, atol=0)
    for n in range(8):
        group = x[n % 2::2]  # Sample n shares its group with the samples of the same index modulo N/G.
        std = group.std(dim=0, unbiased=False)  # [6, 3, 3]
        for f in range(2):
            want = (std[3 * f:3 * f + 3].square() + 1e-8).sqrt().mean()
            torch.testing.assert_close(y[n, 6 + f], want.expand(3, 3))


def test_minibatch_std_rejects_batch_not_divisible_by_group_size():
    layer = nets.MinibatchStdLayer(group_size=4)
    with pytest.raises(ValueError, match='multiple of the group size 4'):
        layer(torch.randn([6, 2, 4, 4]))
    assert layer(torch.randn([3, 2, 4, 4])).shape == (3, 3, 4, 4)  # Smaller batches form one group.


def test_conditional_discriminator_projects_onto_label_embedding():
    D = _tiny_D(8, c_dim=3, mapping_kwargs=TINY_MAPPING)
    img = torch.randn([4, 3, 8, 8])
    c = torch.eye(3)[[0, 1, 2, 0]]
    captured = {}
    D.b4.out.register_forward_hook(lambda mod, inp, out: captured.update(out=out))
    logits = D(img, c)
    cmap = D.mapping(None, c)
    assert cmap.shape == (4, D.b4.cmap_dim) and D.b4.cmap_dim == 32
    want = (captured['out'] * cmap).sum(dim=1, keepdim=True) / np.sqrt(32)
    torch.testing.assert_close(logits, want)


def test_freeze_layers_turns_the_first_layers_into_buffers():
    D = _tiny_D(32, block_kwargs=dict(freeze_layers=5))
    params = dict(D.named_parameters())
    buffers = dict(D.named_buffers())
    frozen = ['b32.fromrgb', 'b32.conv0', 'b32.conv1', 'b32.skip', 'b16.conv0']
    for name in frozen:
        assert f'{name}.weight' in buffers and f'{name}.weight' not in params
    assert 'b16.conv1.weight' in params and 'b16.conv1.bias' in params
    assert 'b32.skip.bias' not in buffers and 'b32.skip.bias' not in params
    logits = D(torch.randn([2, 3, 32, 32]), None)
    logits.sum().backward()
    assert D.b16.conv1.weight.grad is not None and D.b32.conv0.weight.grad is None

#----------------------------------------------------------------------------
# Pickling and bookkeeping.

def test_pickle_round_trip_is_bit_exact():
    G = _tiny_G(16, c_dim=3)
    D = _tiny_D(16, c_dim=3, mapping_kwargs=TINY_MAPPING)
    _randomize_biases_and_noise(G)
    z, c = _inputs(G)
    data = pickle.dumps(dict(G=G, D=D))
    loaded = pickle.loads(data)
    G2, D2 = loaded['G'], loaded['D']
    assert type(G2).__name__ == 'Generator' and G2.init_kwargs == G.init_kwargs
    with torch.no_grad():
        img = G(z, c, noise_mode='const')
        assert torch.equal(img, G2(z, c, noise_mode='const'))
        assert torch.equal(D(img, c), D2(img, c))
    assert torch.equal(copy.deepcopy(G)(z, c, noise_mode='const'), img)


# Globals an official-format network pickle may refer to (DESIGN.md section 4).
ALLOWED_PICKLE_GLOBALS = {
    ('torch_utils.persistence', '_reconstruct_persistent_obj'), ('dnnlib.util', 'EasyDict'),
    ('collections', 'OrderedDict'), ('torch._utils', '_rebuild_tensor_v2'), ('torch._utils', '_rebuild_parameter'),
    ('torch.storage', '_load_from_bytes'), ('builtins', 'set'),
} | {(mod, name) for mod in ['numpy.core.multiarray', 'numpy._core.multiarray']
     for name in ['_reconstruct', 'scalar']} | {('numpy', 'ndarray'), ('numpy', 'dtype')}


class _RecordingUnpickler(pickle.Unpickler):
    def __init__(self, data):
        super().__init__(io.BytesIO(data))
        self.globals_seen = set()

    def find_class(self, module, name):
        self.globals_seen.add((module, name))
        return super().find_class(module, name)


def test_pickle_refers_only_to_globals_the_safe_loader_allows():
    G = _tiny_G(8, c_dim=2)
    D = _tiny_D(8, c_dim=2, mapping_kwargs=TINY_MAPPING)
    unpickler = _RecordingUnpickler(pickle.dumps(dict(G=G, D=D)))
    unpickler.load()
    assert ('torch_utils.persistence', '_reconstruct_persistent_obj') in unpickler.globals_seen
    assert unpickler.globals_seen <= ALLOWED_PICKLE_GLOBALS, unpickler.globals_seen - ALLOWED_PICKLE_GLOBALS


def test_module_imports_only_numpy_scipy_torch_and_torch_utils():
    # The source travels inside pickles and must also run under the official package (DESIGN.md 4.3).
    tree = ast.parse(inspect.getsource(nets))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split('.')[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, 'relative imports break when the pickled source runs as a fresh module'
            roots.add(node.module.split('.')[0])
    assert roots <= {'numpy', 'scipy', 'torch', 'torch_utils'}, roots


def test_embedded_source_runs_as_a_fresh_module_and_gives_identical_images():
    # What the official loader does with our pickles: execute module_src in a new module and build from it.
    src = inspect.getsource(nets) + '\n# executed copy\n'
    fresh = persistence._exec_module_src(src)
    assert fresh.__name__.startswith('_imported_module_')
    G = _tiny_G(8, c_dim=2, seed=3)
    torch.manual_seed(3)
    G_fresh = fresh.Generator(**G.init_kwargs)
    z, c = _inputs(G)
    assert torch.equal(G(z, c, noise_mode='const'), G_fresh(z, c, noise_mode='const'))


def test_forward_and_repr_do_not_need_attributes_older_pickles_lack():
    # Official-pickle loading restores the pickled __dict__ without __init__; SG2-ADA-era layers store no
    # channel counts and their blocks no fused_modconv_default, so our forward() must not depend on them.
    G = _tiny_G(8, c_dim=2, fused_modconv_default='inference_only').eval()
    _randomize_biases_and_noise(G)
    z, c = _inputs(G)
    want = G(z, c, noise_mode='const')
    old = copy.deepcopy(G)
    for module in old.modules():
        for name in ['in_features', 'out_features', 'out_channels', 'fused_modconv_default', 'num_fp16_res']:
            module.__dict__.pop(name, None)
        if isinstance(module, (nets.SynthesisLayer, nets.ToRGBLayer)):
            module.__dict__.pop('in_channels', None)
            module.__dict__.pop('w_dim', None)
    assert not hasattr(old.synthesis.b8, 'fused_modconv_default') and not hasattr(old.synthesis.b8.conv0, 'w_dim')
    assert torch.equal(old(z, c, noise_mode='const'), want)
    assert repr(old) == repr(G).replace('num_fp16_res=4', 'num_fp16_res=?')


def test_printing_networks_shows_layer_summaries():
    text = repr(_tiny_G(8)) + repr(_tiny_D(8))
    for needle in ['in_features=16, out_features=16, activation=lrelu', 'resolution=8, up=2, activation=lrelu',
                   'num_ws=4', 'group_size=4, num_channels=1', 'down=2']:
        assert needle in text
    assert ',,' not in text


def test_bad_arguments_fail_clearly():
    with pytest.raises(AssertionError, match='power of two'):
        nets.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=48, img_channels=3)
    with pytest.raises(AssertionError, match='architecture'):
        _tiny_G(8, architecture='bogus')
    with pytest.raises(AssertionError, match='noise_mode'):
        G = _tiny_G(8)
        G(*_inputs(G), noise_mode='bogus')
    G = _tiny_G(8)
    with pytest.raises(AssertionError):
        G(torch.randn([2, 5]), None)  # Wrong z_dim is caught by misc.assert_shape at the mapping input.

#----------------------------------------------------------------------------
