"""Specification tests for training/networks_stylegan1.py (the StyleGAN1 AdaIN generator), CPU only and small."""

import ast
import copy
import inspect
import io
import pickle

import numpy as np
import pytest
import torch

from torch_utils import persistence
from torch_utils.ops import upfirdn2d
from training import loss as loss_module
from training import networks_stylegan1 as nets
from training import networks_stylegan2
from training.network_families import FAMILIES

# A laptop-sized configuration: small channels so that every forward/backward takes milliseconds.
TINY = dict(z_dim=16, w_dim=16, img_channels=3, channel_base=256, channel_max=32, mapping_kwargs=dict(num_layers=2))

#----------------------------------------------------------------------------
# Helpers.

def _tiny_G(img_resolution=16, c_dim=0, seed=0, **kwargs):
    torch.manual_seed(seed)
    return nets.Generator(**dict(TINY, c_dim=c_dim, img_resolution=img_resolution, **kwargs))


def _tiny_D(img_resolution=16, c_dim=0, seed=0):
    # What --cfg=stylegan1 trains against: the StyleGAN2 D in its ProGAN-shaped 'orig' architecture.
    torch.manual_seed(seed)
    return networks_stylegan2.Discriminator(c_dim=c_dim, img_resolution=img_resolution, img_channels=3,
                                            architecture='orig', channel_base=256, channel_max=32)


def _inputs(G, batch_size=4, seed=1):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn([batch_size, G.z_dim], generator=gen)
    c = torch.nn.functional.one_hot(torch.arange(batch_size) % max(G.c_dim, 1), max(G.c_dim, 1)).float()
    return z, c[:, :G.c_dim]


def _randomize_zero_initialised_params(G, seed=2):
    """Noise strengths and biases start at zero, which hides bugs; give them random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in G.named_parameters():
            if name.split('.')[-1] in ('noise_strength', 'bias'):
                param.add_(torch.randn(param.shape, generator=gen) * 0.5)
    return G

#----------------------------------------------------------------------------
# Layout and shapes.

def test_generator_layout_names_shapes_and_num_ws():
    G = _tiny_G(16, c_dim=2)
    assert (G.z_dim, G.c_dim, G.w_dim, G.img_resolution, G.img_channels) == (16, 2, 16, 16, 3)
    assert G.num_ws == G.synthesis.num_ws == G.mapping.num_ws == 2 * 4 - 2
    shapes = {name: tuple(t.shape) for name, t in list(G.named_parameters()) + list(G.named_buffers())}
    # Channels min(256 / res, 32): 32 at 4 and 8, 16 at 16.
    want = {
        'synthesis.b4.const': (32, 4, 4),
        'synthesis.b4.conv0.affine.weight': (64, 16), 'synthesis.b4.conv0.affine.bias': (64,),
        'synthesis.b4.conv0.noise_strength': (32,), 'synthesis.b4.conv0.noise_const': (4, 4),
        'synthesis.b4.conv0.bias': (32,), 'synthesis.b4.conv1.weight': (32, 32, 3, 3),
        'synthesis.b8.conv0.weight': (32, 32, 3, 3), 'synthesis.b8.conv0.blur_filter': (3, 3),
        'synthesis.b16.conv0.weight': (16, 32, 3, 3), 'synthesis.b16.conv1.noise_const': (16, 16),
        'synthesis.b16.conv1.affine.weight': (32, 16), 'synthesis.b16.torgb.weight': (3, 16, 1, 1),
        'synthesis.b16.torgb.bias': (3,), 'mapping.fc0.weight': (16, 32), 'mapping.fc1.weight': (16, 16),
        'mapping.embed.weight': (16, 2), 'mapping.w_avg': (16,),
    }
    for name, shape in want.items():
        assert shapes[name] == shape, name
    assert 'synthesis.b4.conv0.weight' not in shapes  # The constant's layer has no convolution (SG1 Fig. 1b).
    assert [name for name in shapes if 'torgb' in name] == ['synthesis.b16.torgb.weight', 'synthesis.b16.torgb.bias']
    assert len([name for name in shapes if name.startswith('mapping.fc')]) == 4


def test_default_mapping_is_the_papers_eight_layers_with_lr_multiplier_0_01():
    mapping = nets.MappingNetwork(z_dim=8, c_dim=0, w_dim=8, num_ws=4)
    assert mapping.num_layers == 8 and hasattr(mapping, 'fc7') and not hasattr(mapping, 'fc8')
    assert mapping.fc0.weight_gain == pytest.approx(0.01 / np.sqrt(8)) and mapping.fc0.bias_gain == 0.01


def test_full_size_generator_has_the_papers_26_2M_parameters():
    # SG1 Sec. 2: "Our generator has 26.2M trainable parameters" (1024x1024, 512-dim z and w, 8 mapping layers).
    G = nets.Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3, channel_base=16384,
                       channel_max=512)
    assert G.num_ws == 18
    assert round(sum(p.numel() for p in G.parameters()) / 1e5) == 262


def test_train_py_stylegan1_preset_builds_this_generator():
    train = pytest.importorskip('train', reason='train.py is not importable here')
    dataset_info = dict(name='shapes-16x16', resolution=16, size=100, has_labels=False)
    for fp32 in [False, True]:
        options = train.build_training_options(dataset_info, cfg='stylegan1', data='x.zip', gpus=1, batch=4, gamma=10,
                                               cbase=256, cmax=32, fp32=fp32, metrics=[])
        G_kwargs = dict(options['G_kwargs'])
        assert G_kwargs.pop('class_name') == 'training.networks_stylegan1.Generator'
        G = nets.Generator(c_dim=0, img_resolution=16, img_channels=3, **G_kwargs)
        assert G.mapping.num_layers == 8 and G(*_inputs(G)).shape == (4, 3, 16, 16)
        assert options['loss_kwargs']['style_mixing_prob'] == 0.9
        assert options['D_kwargs']['class_name'] == 'training.networks_stylegan2.Discriminator'
        assert options['D_kwargs']['architecture'] == 'orig'


@pytest.mark.parametrize('img_resolution, c_dim', [(16, 0), (32, 3)])
def test_forward_backward_shapes_and_every_parameter_gets_a_gradient(img_resolution, c_dim):
    G = _tiny_G(img_resolution, c_dim=c_dim)
    G.requires_grad_(True)
    z, c = _inputs(G)
    img = G(z, c)
    assert img.shape == (4, 3, img_resolution, img_resolution) and img.dtype == torch.float32
    assert torch.isfinite(img).all()
    (img * torch.randn_like(img)).sum().backward()
    for name, param in G.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name

#----------------------------------------------------------------------------
# AdaIN (SG1 Eq. 1) and the blur.

def test_adain_output_has_per_channel_mean_and_std_given_by_the_style():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn([3, 5, 8, 8], generator=gen) * 7 + 3  # Arbitrary input statistics per map.
    style_scale = torch.rand([3, 5], generator=gen) * 2 + 0.5
    style_bias = torch.randn([3, 5], generator=gen)
    y = nets.adaptive_instance_norm(x, style_scale, style_bias)
    assert torch.allclose(y.mean(dim=[2, 3]), style_bias, atol=1e-5)
    assert torch.allclose(y.std(dim=[2, 3], unbiased=False), style_scale, atol=1e-4)


def test_adain_layer_output_statistics_come_from_the_affine_of_w():
    layer = nets.AdaINLayer(4, 6, w_dim=5, resolution=8)
    _randomize_zero_initialised_params(layer)
    gen = torch.Generator().manual_seed(1)
    x, w = torch.randn([2, 4, 8, 8], generator=gen), torch.randn([2, 5], generator=gen)
    y = layer(x, w, noise_mode='const')
    style = w @ (layer.affine.weight * layer.affine.weight_gain).t() + layer.affine.bias  # A(w) = [y_s, y_b].
    assert torch.allclose(y.mean(dim=[2, 3]), style[:, 6:], atol=1e-5)
    assert torch.allclose(y.std(dim=[2, 3], unbiased=False), style[:, :6].abs(), atol=1e-4)


def test_affine_starts_as_identity_style_scale_one_bias_zero():
    layer = nets.AdaINLayer(4, 3, w_dim=5, resolution=4)
    assert torch.equal(layer.affine.bias, torch.tensor([1.0, 1, 1, 0, 0, 0]))


def test_blur_filter_is_the_normalised_binomial_121_with_unit_dc_gain():
    G = _tiny_G(16)
    want = torch.tensor([1.0, 2, 1])
    want = torch.outer(want, want) / 16
    for res in [8, 16]:
        taps = getattr(G.synthesis, f'b{res}').conv0.blur_filter
        assert torch.equal(taps, want)
    assert float(want.sum()) == 1.0
    const = torch.full([1, 2, 6, 6], 2.5)
    up = nets.upsample_and_blur(const, want)
    assert up.shape == (1, 2, 12, 12)
    assert torch.allclose(up[:, :, 1:-1, 1:-1], torch.full_like(up[:, :, 1:-1, 1:-1], 2.5))  # Interior: DC kept.


def test_upsample_and_blur_is_bilinear_interpolation_in_the_interior():
    # Nearest 2x then [1,2,1] = zero insertion then [1,3,3,1] with gain 2 per axis (bilinear, SG1 Sec. 2).
    x = torch.randn([2, 3, 5, 7], generator=torch.Generator().manual_seed(0))
    got = nets.upsample_and_blur(x, upfirdn2d.setup_filter([1, 2, 1]))
    want = upfirdn2d.upsample2d(x, upfirdn2d.setup_filter([1, 3, 3, 1]), impl='ref')
    assert torch.allclose(got[:, :, 1:-1, 1:-1], want[:, :, 1:-1, 1:-1], atol=1e-6)

#----------------------------------------------------------------------------
# Mapping: truncation, w_avg, style mixing.

def test_truncation_psi_zero_gives_w_avg_everywhere():
    G = _tiny_G(16)
    G.mapping.w_avg.copy_(torch.randn([16]))
    z, c = _inputs(G)
    ws = G.mapping(z, c, truncation_psi=0)
    assert torch.allclose(ws, G.mapping.w_avg.expand_as(ws))


def test_truncation_cutoff_only_touches_the_first_ws():
    G = _tiny_G(32)
    G.mapping.w_avg.copy_(torch.randn([16]))
    z, c = _inputs(G)
    full = G.mapping(z, c)
    cut = G.mapping(z, c, truncation_psi=0.5, truncation_cutoff=3)
    assert torch.allclose(cut[:, :3], G.mapping.w_avg + 0.5 * (full[:, :3] - G.mapping.w_avg), atol=1e-6)
    assert torch.equal(cut[:, 3:], full[:, 3:])
    everywhere = G.mapping(z, c, truncation_psi=0.5)  # DESIGN convention: cutoff None = all ws.
    assert torch.allclose(everywhere, G.mapping.w_avg + 0.5 * (full - G.mapping.w_avg), atol=1e-6)
    assert nets.PAPER_TRUNCATION_CUTOFF == 8


def test_update_emas_moves_w_avg_towards_batch_mean_by_beta():
    G = _tiny_G(16)
    z, c = _inputs(G)
    before = G.mapping.w_avg.clone()
    w = G.mapping(z, c, update_emas=True)[:, 0]
    assert G.mapping.w_avg_beta == 0.995
    assert torch.allclose(G.mapping.w_avg, w.mean(0) + 0.995 * (before - w.mean(0)), atol=1e-6)
    G.mapping(z, c)
    assert torch.allclose(G.mapping.w_avg, w.mean(0) + 0.995 * (before - w.mean(0)), atol=1e-6)


def test_mapping_normalises_z():
    G = _tiny_G(16)
    z, c = _inputs(G)
    assert torch.allclose(G.mapping(z, c), G.mapping(z * 5, c), atol=1e-5)


def test_each_block_uses_its_own_two_ws_coarse_styles_fix_coarse_features():
    G = _randomize_zero_initialised_params(_tiny_G(16))
    z, c = _inputs(G)
    ws = G.mapping(z, c)
    other = G.mapping(torch.randn_like(z), c)
    features = {}
    G.synthesis.b4.register_forward_hook(lambda _module, _inputs, output: features.__setitem__('b4', output[0]))
    base = G.synthesis(ws, noise_mode='const')
    b4_base = features['b4']
    for idx in range(G.num_ws):
        mixed = ws.clone()
        mixed[:, idx] = other[:, idx]
        img = G.synthesis(mixed, noise_mode='const')
        assert not torch.allclose(img, base), f'ws[:, {idx}] has no effect'
        assert torch.equal(features['b4'], b4_base) == (idx >= 2), idx  # b4 reads ws 0 and 1 only.


def test_loss_style_mixing_takes_fine_ws_from_a_second_latent():
    G = _tiny_G(16)
    loss = loss_module.StyleGAN2Loss(device='cpu', G=G, D=_tiny_D(16), style_mixing_prob=1)
    z, c = _inputs(G)
    torch.manual_seed(5)
    _img, ws = loss.run_G(z, c)
    own = G.mapping(z, c)
    from_own = (ws == own).all(dim=2)  # [N, num_ws]
    assert from_own[:, 0].all() and not from_own[:, -1].any()
    cutoff = int(from_own[0].sum())
    assert 1 <= cutoff < G.num_ws and (from_own == (torch.arange(G.num_ws) < cutoff)).all()
    assert torch.equal(ws[:, cutoff:], ws[:, -1:].expand_as(ws[:, cutoff:]))  # One second w for the rest.

#----------------------------------------------------------------------------
# Noise, determinism, precision options.

def test_noise_modes_const_random_none():
    G = _randomize_zero_initialised_params(_tiny_G(16))
    z, c = _inputs(G)
    const_a, const_b = G(z, c, noise_mode='const'), G(z, c, noise_mode='const')
    assert torch.equal(const_a, const_b)
    assert not torch.allclose(G(z, c, noise_mode='random'), G(z, c, noise_mode='random'))
    none = G(z, c, noise_mode='none')
    with torch.no_grad():
        for name, param in G.named_parameters():
            if name.endswith('noise_strength'):
                param.zero_()
    assert torch.allclose(G(z, c, noise_mode='random'), none, atol=1e-6)  # Strength 0 = no noise.
    assert not torch.allclose(none, const_a)


def test_noise_strength_scales_each_channel_separately():
    layer = nets.AdaINLayer(2, 3, w_dim=4, resolution=4)
    with torch.no_grad():
        layer.noise_strength.copy_(torch.tensor([0.0, 1.0, 2.0]))
    noise = layer._noise(torch.zeros([1, 3, 4, 4]), 'const')
    assert torch.equal(noise[0, 0], torch.zeros([4, 4]))
    assert torch.equal(noise[0, 2], 2 * layer.noise_const) and torch.equal(noise[0, 1], layer.noise_const)


def test_same_seed_gives_identical_networks_and_images():
    G1, G2 = _tiny_G(16, seed=7), _tiny_G(16, seed=7)
    z, c = _inputs(G1)
    assert torch.equal(G1(z, c, noise_mode='const'), G2(z, c, noise_mode='const'))
    torch.manual_seed(3)
    a = G1(z, c)
    torch.manual_seed(3)
    assert torch.equal(a, G1(z, c))
    assert not torch.equal(G1(z, c, noise_mode='const'), _tiny_G(16, seed=8)(z, c, noise_mode='const'))


def test_fp16_blocks_run_in_float32_on_cpu_and_clamp_is_accepted():
    # train.py --fp32 passes num_fp16_res=0 and conv_clamp=None; the float16 path only runs on CUDA.
    G = _tiny_G(16, num_fp16_res=2, conv_clamp=256)
    assert [G.synthesis.b4.use_fp16, G.synthesis.b8.use_fp16, G.synthesis.b16.use_fp16] == [False, True, True]
    G32 = copy.deepcopy(G)
    z, c = _inputs(G)
    assert torch.equal(G(z, c, noise_mode='const'), G32(z, c, noise_mode='const', force_fp32=True))
    _tiny_G(16, num_fp16_res=0, conv_clamp=None)


def test_unknown_or_bad_arguments_fail_clearly():
    with pytest.raises(TypeError, match='fused_modconv_default'):
        _tiny_G(16, fused_modconv_default='inference_only')
    with pytest.raises(AssertionError, match='power of two'):
        _tiny_G(12)
    G = _tiny_G(16)
    with pytest.raises(AssertionError, match='noise_mode'):
        G(*_inputs(G), noise_mode='bogus')

#----------------------------------------------------------------------------
# Training with the StyleGAN2 loss and D.

@pytest.mark.parametrize('phase', loss_module.PHASES)
def test_stylegan2_loss_runs_every_phase_with_this_G_and_an_orig_D(phase):
    G, D = _tiny_G(8), _tiny_D(8)
    loss = loss_module.StyleGAN2Loss(device='cpu', G=G, D=D, r1_gamma=10, style_mixing_prob=0.9, pl_weight=2)
    z, c = _inputs(G)
    real = torch.rand([4, 3, 8, 8]) * 2 - 1
    trained = G if phase.startswith('G') else D
    trained.requires_grad_(True)
    w_avg = G.mapping.w_avg.clone()
    loss.accumulate_gradients(phase, real_img=real, real_c=c, gen_z=z, gen_c=c, gain=1, cur_nimg=0)
    grads = [p.grad for p in trained.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads), phase
    assert all(g is None or torch.isfinite(g).all() for g in grads)
    w_avg_moved = not torch.equal(G.mapping.w_avg, w_avg)
    assert w_avg_moved == (phase in ('Dmain', 'Dboth'))  # update_emas=True only where D sees fakes.

#----------------------------------------------------------------------------
# Pickles.

def test_pickle_round_trip_is_bit_exact():
    G = _randomize_zero_initialised_params(_tiny_G(16, c_dim=3))
    G.mapping.w_avg.copy_(torch.randn([16]))
    z, c = _inputs(G)
    G2 = pickle.loads(pickle.dumps(dict(G=G)))['G']
    assert type(G2).__name__ == 'Generator' and G2.init_kwargs == G.init_kwargs
    with torch.no_grad():
        img = G(z, c, truncation_psi=0.7, truncation_cutoff=4, noise_mode='const')
        assert torch.equal(img, G2(z, c, truncation_psi=0.7, truncation_cutoff=4, noise_mode='const'))
        assert torch.equal(copy.deepcopy(G)(z, c, truncation_psi=0.7, noise_mode='const'),
                           G(z, c, truncation_psi=0.7, noise_mode='const'))


def test_safe_loader_rebuilds_a_snapshot_with_these_classes():
    from torch_utils import safe_pickle
    G = _randomize_zero_initialised_params(_tiny_G(8))
    data = pickle.dumps(dict(G=G, D=_tiny_D(8), G_ema=G, augment_pipe=None, training_set_kwargs=None))
    loaded = safe_pickle.load_network_pkl(io.BytesIO(data), families=FAMILIES)
    assert type(loaded['G_ema']) is nets.Generator and type(loaded['G_ema'].synthesis.b8) is nets.AdaINBlock
    z, c = _inputs(G)
    assert torch.equal(loaded['G_ema'](z, c, noise_mode='const'), G(z, c, noise_mode='const'))


def test_module_imports_only_numpy_scipy_torch_and_torch_utils():
    # The source travels inside pickles and must also run under the official package (DESIGN.md 4.3).
    roots = set()
    for node in ast.walk(ast.parse(inspect.getsource(nets))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split('.')[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0
            roots.add(node.module.split('.')[0])
    assert roots <= {'numpy', 'scipy', 'torch', 'torch_utils'}, roots


def test_embedded_source_runs_as_a_fresh_module_and_gives_identical_images():
    fresh = persistence._exec_module_src(inspect.getsource(nets) + '\n# executed copy\n')
    G = _tiny_G(8, c_dim=2, seed=3)
    torch.manual_seed(3)
    G_fresh = fresh.Generator(**G.init_kwargs)
    z, c = _inputs(G)
    assert torch.equal(G(z, c, noise_mode='const'), G_fresh(z, c, noise_mode='const'))
