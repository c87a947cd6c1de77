"""Whole networks on the CPU: the default (fast) path equals the plain reference formulas to float rounding --
images, and gradients of the parameters and of the latents (the path-length regulariser differentiates twice)."""

import pytest
import torch

from torch_utils import cpu_malloc
from torch_utils.ops import bias_act, filtered_lrelu, upfirdn2d, winograd
from training import networks_stylegan2, networks_stylegan3

SWITCHES = [(upfirdn2d, '_FAST_CPU_ENABLED'), (filtered_lrelu, '_FAST_CPU_ENABLED'),
            (networks_stylegan2, '_FAST_PATHS_ENABLED'), (bias_act, '_FAST_NO_GRAD_ENABLED'),
            (winograd, '_FAST_CPU_ENABLED'), (networks_stylegan3, '_FAST_PATHS_ENABLED')]


def _generator(cfg):
    torch.manual_seed(0)
    common = dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2))
    if cfg == 'stylegan2':
        return networks_stylegan2.Generator(channel_base=512, channel_max=16, fused_modconv_default='inference_only',
                                            **common)
    extra = dict(conv_kernel=1, use_radial_filters=True) if cfg == 'stylegan3-r' else {}
    return networks_stylegan3.Generator(channel_base=256, channel_max=16, num_layers=4, num_critical=1,
                                        margin_size=3, **extra, **common)


def _outputs(G, training):
    """(image, grads of a random projection w.r.t. parameters and ws, second-order term) in float64."""
    G = G.train(training).requires_grad_(True)
    z = torch.randn([3, G.z_dim], generator=torch.Generator().manual_seed(1), dtype=torch.float64).float()
    ws = G.mapping(z, None).detach().requires_grad_(True)
    img = G.synthesis(ws, noise_mode='const')
    v = torch.randn(img.shape, generator=torch.Generator().manual_seed(2))
    grads = torch.autograd.grad((img * v).sum(), [ws] + list(G.synthesis.parameters()), create_graph=True,
                                allow_unused=True)
    second, = torch.autograd.grad(grads[0].square().sum(), [ws])  # Path-length style double backward.
    return [img.detach(), second.detach()] + [g.detach() for g in grads if g is not None]


@pytest.mark.parametrize('cfg,training', [('stylegan2', False), ('stylegan2', True), ('stylegan3-t', True),
                                          ('stylegan3-r', False)])
def test_default_cpu_path_equals_plain_formulas(monkeypatch, cfg, training):
    G = _generator(cfg)
    fast = _outputs(G, training)
    with monkeypatch.context() as patch:
        for module, name in SWITCHES:
            patch.setattr(module, name, False)
        plain = _outputs(G, training)
    assert len(fast) == len(plain)
    for idx, (u, v) in enumerate(zip(fast, plain)):
        assert u.shape == v.shape
        assert float((u - v).abs().max()) <= 1e-4 * float(v.abs().max()) + 1e-7, f'output {idx}'


def test_stylegan2_cpu_default_is_the_nonfused_convolution_only_when_fast_paths_are_on(monkeypatch):
    block = _generator('stylegan2').synthesis.b8
    assert block._resolve_fused_modconv(None, torch.float32, 2, 'cpu') is False
    assert block.eval()._resolve_fused_modconv(None, torch.float32, 1, 'cpu') is True  # One sample: one conv.
    block.train()
    assert block._resolve_fused_modconv(True, torch.float32, 2, 'cpu') is True      # An explicit choice stands.
    assert block._resolve_fused_modconv(None, torch.float32, 2, 'cuda') is False     # 'inference_only', training.
    monkeypatch.setattr(networks_stylegan2, '_FAST_PATHS_ENABLED', False)
    assert block.eval()._resolve_fused_modconv(None, torch.float32, 2, 'cpu') is True


def _discriminator_outputs(D):
    """(logits, R1-style gradient w.r.t. the images, its gradient w.r.t. D's parameters): the Dreg phase."""
    img = torch.randn([3, 3, 16, 16], generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    logits = D(img, None)
    grad_img, = torch.autograd.grad(logits.sum(), [img], create_graph=True)
    param_grads = torch.autograd.grad(grad_img.square().sum(), list(D.parameters()), allow_unused=True)
    return [logits.detach(), grad_img.detach()] + [g for g in param_grads if g is not None]


def test_stylegan2_discriminator_cpu_path_equals_plain_formulas(monkeypatch):
    torch.manual_seed(0)
    D = networks_stylegan2.Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=512,
                                         channel_max=16, mapping_kwargs={}, epilogue_kwargs=dict(mbstd_group_size=3))
    fast = _discriminator_outputs(D)
    with monkeypatch.context() as patch:
        for module, name in SWITCHES:
            patch.setattr(module, name, False)
        plain = _discriminator_outputs(D)
    assert len(fast) == len(plain) > 3
    for idx, (u, v) in enumerate(zip(fast, plain)):
        assert float((u - v).abs().max()) <= 1e-4 * float(v.abs().max()) + 1e-7, f'output {idx}'


@pytest.mark.parametrize('fast_paths', [True, False])
def test_stylegan2_cpu_blocks_run_channels_last_on_the_fast_path(monkeypatch, fast_paths):
    # oneDNN's transposed/strided and depthwise convolutions are faster on NHWC; the images come out contiguous.
    monkeypatch.setattr(networks_stylegan2, '_FAST_PATHS_ENABLED', fast_paths)
    G = _generator('stylegan2').eval()
    D = networks_stylegan2.Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=512,
                                         channel_max=16)
    layouts = []
    record = lambda module, inputs: layouts.append(inputs[0].is_contiguous(memory_format=torch.channels_last))
    for layer in (G.synthesis.b16.conv0, G.synthesis.b16.conv1, D.b16.conv0, D.b16.conv1, D.b8.conv1):
        layer.register_forward_pre_hook(record)
    with torch.no_grad():
        img = G(torch.randn([2, G.z_dim]), None, noise_mode='const')
        D(img, None)
    assert layouts == [fast_paths] * 5
    assert img.is_contiguous()


def test_stylegan2_wide_inference_takes_winograd_and_matches_plain(monkeypatch):
    # 128 channels at 64 px, batch 2: wide enough for a Winograd 3x3 layer (torch_utils/ops/winograd.py).
    torch.manual_seed(0)
    G = networks_stylegan2.Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=64, img_channels=3,
                                     channel_base=8192, channel_max=128, mapping_kwargs=dict(num_layers=2)).eval()
    z = torch.randn([2, G.z_dim])
    monkeypatch.setattr(cpu_malloc, '_keeping', True)  # As in the CLIs on a CPU.
    monkeypatch.setattr(winograd, '_calibration', True)  # As on a CPU where it pays (winograd.pays_on_this_cpu).
    calls = []
    original = winograd.conv3x3
    monkeypatch.setattr(winograd, 'conv3x3', lambda *args: calls.append(1) or original(*args))
    with torch.no_grad():
        fast = G(z, None, noise_mode='const')
        assert len(calls) == 1  # conv1 of b64 (b32: 2 * 8 * 8 tiles, too few to pay).
        with monkeypatch.context() as patch:
            for module, name in SWITCHES:
                patch.setattr(module, name, False)
            plain = G(z, None, noise_mode='const')
    assert len(calls) == 1
    assert float((fast - plain).abs().max()) <= 1e-4 * float(plain.abs().max())


@pytest.mark.parametrize('cfg', ['stylegan3-t', 'stylegan3-r'])
def test_stylegan3_cpu_inference_is_nonfused_and_matches_plain(monkeypatch, cfg):
    G = _generator(cfg).eval()
    z = torch.randn([3, G.z_dim], generator=torch.Generator().manual_seed(4))
    seen = []
    original = networks_stylegan3._modulated_conv2d_nonfused
    monkeypatch.setattr(networks_stylegan3, '_modulated_conv2d_nonfused',
                        lambda *args: seen.append(1) or original(*args))
    with torch.no_grad():
        fast = G(z, None)
        count = len(seen)
        assert count == sum(isinstance(m, networks_stylegan3.SynthesisLayer) for m in G.synthesis.modules()) > 0
        with monkeypatch.context() as patch:
            for module, name in SWITCHES:
                patch.setattr(module, name, False)
            plain = G(z, None)
        assert len(seen) == count  # The plain path: the grouped (fused) form.
        G(z[:1], None)
        assert len(seen) == count  # One sample: fused.
    G(z, None)  # With autograd (training): fused.
    assert len(seen) == count
    G.requires_grad_(False)
    frozen = G(z, None)  # Gradients enabled, but nothing to record (train.py's D phases): inference, non-fused.
    assert len(seen) == 2 * count and not frozen.requires_grad
    G.synthesis(G.mapping(z, None).requires_grad_(True))
    assert len(seen) == 2 * count  # A latent that takes gradients (projector.py, path length): fused.
    assert float((fast - plain).abs().max()) <= 1e-4 * float(plain.abs().max())
