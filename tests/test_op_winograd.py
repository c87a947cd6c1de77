"""torch_utils/ops/winograd.py: F(4x4, 3x3) equals the direct convolution (float64 to rounding, float32 to its
stated tolerance) on random and odd shapes, in both memory formats, with gradients; and conv2d_gradfix dispatches
to it only where it is meant to."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torch_utils import cpu_malloc
from torch_utils.ops import conv2d_gradfix, winograd

ODD_SHAPES = [  # batch, in, out, height, width, padding
    (1, 1, 1, 1, 1, 1), (2, 3, 5, 7, 9, 1), (3, 2, 6, 5, 4, 0), (2, 3, 3, 6, 11, 2), (1, 8, 8, 8, 8, 1),
    (2, 4, 7, 3, 3, 0), (1, 5, 2, 13, 2, 1), (4, 6, 6, 12, 16, 1)]


@pytest.mark.parametrize('batch,in_channels,out_channels,height,width,padding', ODD_SHAPES)
@pytest.mark.parametrize('channels_last', [False, True])
def test_equals_direct_convolution_in_float64(batch, in_channels, out_channels, height, width, padding,
                                              channels_last):
    generator = torch.Generator().manual_seed(height * 100 + width)
    x = torch.randn([batch, in_channels, height, width], dtype=torch.float64, generator=generator)
    w = torch.randn([out_channels, in_channels, 3, 3], dtype=torch.float64, generator=generator)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    y = winograd.conv3x3(x, w, padding)
    reference = F.conv2d(x, w, padding=padding)
    assert y.shape == reference.shape
    torch.testing.assert_close(y, reference, rtol=1e-11, atol=1e-11)
    assert y.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@pytest.mark.parametrize('channels_last', [False, True])
def test_float32_error_is_within_the_stated_tolerance(channels_last):
    # The module docstring states about 1e-5 of the output's range (the direct float32 conv: about 3e-7).
    generator = torch.Generator().manual_seed(0)
    x = torch.randn([2, 64, 20, 24], generator=generator)
    w = torch.randn([48, 64, 3, 3], generator=generator) / 24
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    exact = F.conv2d(x.double(), w.double(), padding=1)
    error = float((winograd.conv3x3(x, w, 1).double() - exact).abs().max() / exact.abs().max())
    direct_error = float((F.conv2d(x, w, padding=1).double() - exact).abs().max() / exact.abs().max())
    assert error < 3e-5
    assert direct_error < error  # Winograd trades accuracy for speed: the test would notice an exact fake.


def test_transform_matrices_are_the_interpolation_points_0_1_m1_2_m2_inf():
    # F(4, 3) in 1-D: A^T [(G g) . (B^T d)] = the 4 outputs of correlating d (6 samples) with g (3 taps).
    rng = np.random.default_rng(0)
    d, g = rng.standard_normal(6), rng.standard_normal(3)
    direct = np.array([d[i:i + 3] @ g for i in range(4)])
    np.testing.assert_allclose(winograd._A_T @ ((winograd._G @ g) * (winograd._B_T @ d)), direct, rtol=1e-12,
                               atol=1e-12)


def test_gradients_and_second_order_gradients():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn([2, 3, 5, 6], dtype=torch.float64, generator=generator, requires_grad=True)
    w = torch.randn([4, 3, 3, 3], dtype=torch.float64, generator=generator, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: winograd.conv3x3(x, w, 1), [x, w])
    assert torch.autograd.gradgradcheck(lambda x, w: winograd.conv3x3(x, w, 1), [x, w])


def _dispatched(monkeypatch, x, w, **kwargs):
    calls = []
    original = winograd.conv3x3
    monkeypatch.setattr(winograd, 'conv3x3', lambda *args: calls.append(1) or original(*args))
    y = conv2d_gradfix.conv2d(x, w, **kwargs)
    torch.testing.assert_close(y, F.conv2d(x.detach(), w.detach(), **kwargs), rtol=1e-4, atol=1e-4)
    return bool(calls)


def test_conv2d_gradfix_dispatch(monkeypatch):
    monkeypatch.setattr(cpu_malloc, '_keeping', True)  # As in the CLIs on a CPU (cpu_malloc.keep_freed_memory()).
    monkeypatch.setattr(winograd, '_calibration', True)  # As on a CPU where it pays (the calibration: below).
    monkeypatch.delenv('DNNLIB_WINOGRAD', raising=False)
    wide = torch.randn(128, 128, 3, 3) / 34
    x_cl = torch.randn(1, 128, 64, 64).contiguous(memory_format=torch.channels_last)
    x_nchw = torch.randn(1, 128, 64, 64)
    with torch.no_grad():
        assert _dispatched(monkeypatch, x_cl, wide, padding=1)
        assert _dispatched(monkeypatch, x_cl, wide, padding=[1, 1])
        assert not _dispatched(monkeypatch, x_nchw, wide, padding=1)            # 128 ch lose on NCHW.
        assert not _dispatched(monkeypatch, x_cl[:, :, :16, :16], wide, padding=1)   # Too few tiles.
        assert not _dispatched(monkeypatch, x_cl, wide, padding=1, stride=2)
        assert not _dispatched(monkeypatch, x_cl, wide, padding=[1, 0])
        assert not _dispatched(monkeypatch, x_cl.double(), wide.double(), padding=1)
        assert not _dispatched(monkeypatch, x_cl, wide[:, :64], padding=1, groups=2)
        assert not _dispatched(monkeypatch, x_cl, wide[:, :, :1, :1], padding=0)
    assert not _dispatched(monkeypatch, x_cl, wide.requires_grad_(True), padding=1)  # Training: the direct conv.
    monkeypatch.setattr(winograd, '_FAST_CPU_ENABLED', False)
    with torch.no_grad():
        assert not _dispatched(monkeypatch, x_cl, wide, padding=1)
    monkeypatch.setattr(winograd, '_FAST_CPU_ENABLED', True)
    monkeypatch.setattr(cpu_malloc, '_keeping', False)  # Freshly mapped temporaries would cost more than it saves.
    with torch.no_grad():
        assert not _dispatched(monkeypatch, x_cl, wide, padding=1)


def test_calibration_decides_once_per_process_and_the_environment_overrides_it(monkeypatch):
    monkeypatch.setattr(cpu_malloc, '_keeping', True)
    monkeypatch.delenv('DNNLIB_WINOGRAD', raising=False)
    x = torch.randn(1, 128, 64, 64).contiguous(memory_format=torch.channels_last)
    w = torch.randn(128, 128, 3, 3) / 34
    measured = []
    for speedup, expected in [(1.0, False), (1.3, True)]:
        monkeypatch.setattr(winograd, '_calibration', None)
        monkeypatch.setattr(winograd, '_measure_speedup', lambda s=speedup: measured.append(s) or s)
        with torch.no_grad():
            assert _dispatched(monkeypatch, x, w, padding=1) == expected
            assert _dispatched(monkeypatch, x, w, padding=1) == expected
        assert winograd._calibration == expected
    assert measured == [1.0, 1.3]  # Timed once per decision, then remembered.
    for value, expected in [('0', False), ('off', False), ('1', True), ('on', True)]:
        monkeypatch.setenv('DNNLIB_WINOGRAD', value)
        with torch.no_grad():
            assert _dispatched(monkeypatch, x, w, padding=1) == expected
    assert measured == [1.0, 1.3]  # The environment skips the timing.


def test_calibration_times_the_real_paths():
    # The measurement itself: a positive, finite ratio of two real timings (its value depends on the CPU).
    speedup = winograd._measure_speedup(repeats=1)
    assert 0.05 < speedup < 20
