"""upfirdn2d reference path: scipy semantics, helper wrappers, setup_filter, gradients, low precision."""

import contextlib
import os

import numpy as np
import pytest
import scipy.signal
import torch

from torch_utils.ops import upfirdn2d

#----------------------------------------------------------------------------
# Independent computations.

def _scipy_upfirdn_axis(x, taps, up, down, pad0, pad1, axis):
    """1-D upfirdn along one axis with our padding convention, from scipy.signal.upfirdn's full output.

    scipy gives the full convolution of the zero-inserted signal with the taps; sample i of our output before
    decimation is sample i + len(taps) - 1 - pad0 of that (zero outside it)."""
    full = scipy.signal.upfirdn(taps, x, up=up, down=1, axis=axis)
    length = x.shape[axis] * up + pad0 + pad1 - len(taps) + 1
    index = np.arange(length) + len(taps) - 1 - pad0
    inside = (index >= 0) & (index < full.shape[axis])
    out_shape = list(x.shape)
    out_shape[axis] = length
    out = np.zeros(out_shape)
    dst = [slice(None)] * x.ndim
    dst[axis] = np.nonzero(inside)[0]
    out[tuple(dst)] = np.take(full, index[inside], axis=axis)
    keep = [slice(None)] * x.ndim
    keep[axis] = slice(None, None, down)
    return out[tuple(keep)]


def _scipy_upfirdn2d_separable(x, taps, up, down, padding, gain=1):
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = padding
    y = _scipy_upfirdn_axis(np.asarray(x, np.float64), taps, upx, downx, px0, px1, axis=3)
    return _scipy_upfirdn_axis(y, taps, upy, downy, py0, py1, axis=2) * gain


def _numpy_upfirdn2d(x, f, up, down, padding):
    """Zero insertion, pad/crop, scipy convolve2d('valid') per channel, decimation: for non-separable filters."""
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = padding
    n, c, h, w = x.shape
    xu = np.zeros([n, c, h * upy, w * upx])
    xu[:, :, ::upy, ::upx] = x
    xu = np.pad(xu, [(0, 0), (0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))])
    xu = xu[:, :, max(-py0, 0): xu.shape[2] - max(-py1, 0), max(-px0, 0): xu.shape[3] - max(-px1, 0)]
    out = np.stack([np.stack([scipy.signal.convolve2d(xu[i, j], f, mode='valid') for j in range(c)])
                    for i in range(n)])
    return out[:, :, ::downy, ::downx]


def _run(x, f, **kwargs):
    return upfirdn2d.upfirdn2d(torch.as_tensor(x), torch.as_tensor(f), impl='ref', **kwargs).numpy()

#----------------------------------------------------------------------------
# scipy semantics.

SCIPY_CASES = [  # (up, down, padding, input h, w)
    ((1, 1), (1, 1), (0, 0, 0, 0), 6, 6),
    ((2, 2), (1, 1), (2, 1, 2, 1), 5, 7),
    ((1, 1), (2, 2), (1, 1, 1, 1), 9, 8),
    ((4, 4), (1, 1), (3, 2, 1, 0), 3, 4),
    ((1, 1), (4, 4), (0, 3, 2, 2), 13, 11),
    ((2, 1), (1, 2), (1, 2, 0, 3), 6, 5),
    ((2, 4), (4, 2), (-1, 2, 3, -2), 7, 9),
    ((3, 3), (2, 2), (-2, -1, 4, 0), 5, 6),
]

@pytest.mark.parametrize('up,down,padding,h,w', SCIPY_CASES)
def test_upfirdn2d_matches_scipy_upfirdn_per_channel(up, down, padding, h, w):
    rng = np.random.RandomState(0)
    x = rng.randn(2, 3, h, w)
    taps = rng.randn(4)
    expected = _scipy_upfirdn2d_separable(x, taps, up, down, padding)
    got_separable = _run(x, taps, up=list(up), down=list(down), padding=list(padding))
    got_2d = _run(x, np.outer(taps, taps), up=list(up), down=list(down), padding=list(padding))
    assert got_separable.shape == expected.shape
    np.testing.assert_allclose(got_separable, expected, atol=1e-10)
    np.testing.assert_allclose(got_2d, expected, atol=1e-10)


@pytest.mark.parametrize('up,down,padding,h,w', SCIPY_CASES)
def test_upfirdn2d_matches_convolve2d_for_nonseparable_filter(up, down, padding, h, w):
    rng = np.random.RandomState(1)
    x = rng.randn(1, 2, h, w)
    f = rng.randn(3, 5)  # fh=3, fw=5: catches swapped axes.
    if (w * up[0] + padding[0] + padding[1] - 5) < 0 or (h * up[1] + padding[2] + padding[3] - 3) < 0:
        pytest.skip('output would be empty for this filter')
    expected = _numpy_upfirdn2d(x, f, up, down, padding)
    np.testing.assert_allclose(_run(x, f, up=list(up), down=list(down), padding=list(padding)), expected, atol=1e-10)


def test_upfirdn2d_full_padding_equals_scipy_upfirdn_exactly():
    # Padding taps-1 before and taps-up after is scipy.signal.upfirdn's own output range.
    rng = np.random.RandomState(2)
    x = rng.randn(1, 1, 5, 7)
    taps = np.array([1.0, -2.0, 0.5, 3.0, 1.5])
    expected = scipy.signal.upfirdn(taps, x, up=3, down=2, axis=3)
    expected = scipy.signal.upfirdn(taps, expected, up=3, down=2, axis=2)
    got = _run(x, taps, up=3, down=2, padding=[4, 2, 4, 2])
    np.testing.assert_allclose(got, expected, atol=1e-10)


def test_upfirdn2d_flip_filter_correlates():
    rng = np.random.RandomState(3)
    x = rng.randn(2, 2, 6, 5)
    f = rng.randn(2, 3)
    expected = _numpy_upfirdn2d(x, f[::-1, ::-1], (2, 2), (1, 1), (1, 2, 0, 1))
    np.testing.assert_allclose(_run(x, f, up=2, padding=[1, 2, 0, 1], flip_filter=True), expected, atol=1e-10)
    assert not np.allclose(_run(x, f, up=2, padding=[1, 2, 0, 1]), expected)


@pytest.mark.parametrize('separable', [False, True])
def test_upfirdn2d_gain_scales_output(separable):
    rng = np.random.RandomState(4)
    x = torch.as_tensor(rng.randn(1, 2, 5, 5))
    f = torch.as_tensor(rng.randn(3) if separable else rng.randn(3, 3))
    base = upfirdn2d.upfirdn2d(x, f, up=2, padding=1, impl='ref')
    scaled = upfirdn2d.upfirdn2d(x, f, up=2, padding=1, gain=-2.5, impl='ref')
    torch.testing.assert_close(scaled, base * -2.5)


def test_upfirdn2d_padding_forms_agree():
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64)
    f = torch.randn(3, 3, dtype=torch.float64)
    run = lambda padding: upfirdn2d.upfirdn2d(x, f, padding=padding, impl='ref')
    torch.testing.assert_close(run(2), run([2, 2, 2, 2]))
    torch.testing.assert_close(run([1, 3]), run([1, 1, 3, 3]))
    assert run([1, 3]).shape == (1, 2, 5 + 6 - 2, 6 + 2 - 2)


def test_upfirdn2d_none_filter_is_identity_resampling():
    x = torch.randn(2, 3, 4, 6)
    torch.testing.assert_close(upfirdn2d.upfirdn2d(x, None, down=2, impl='ref'), x[:, :, ::2, ::2])
    y = upfirdn2d.upfirdn2d(x, None, up=[2, 1], impl='ref')
    assert y.shape == (2, 3, 4, 12)
    torch.testing.assert_close(y[:, :, :, ::2], x)
    assert torch.all(y[:, :, :, 1::2] == 0)

#----------------------------------------------------------------------------
# Wrappers.

def test_filter2d_keeps_size_and_centres_symmetric_filter():
    x = torch.zeros(1, 1, 7, 9, dtype=torch.float64)
    x[0, 0, 3, 4] = 1
    f = upfirdn2d.setup_filter([1, 2, 1]).double()
    y = upfirdn2d.filter2d(x, f, impl='ref')
    assert y.shape == x.shape
    expected = np.zeros([7, 9])
    expected[2:5, 3:6] = np.outer([1, 2, 1], [1, 2, 1]) / 16
    np.testing.assert_allclose(y[0, 0].numpy(), expected, atol=1e-12)


@pytest.mark.parametrize('up,fw', [(2, 4), (2, 2), (4, 8), ([2, 4], 4)])  # box taps: a multiple of up
def test_upsample2d_size_and_dc_gain(up, fw):
    upx, upy = (up, up) if isinstance(up, int) else up
    f = upfirdn2d.setup_filter(np.ones(fw))
    x = torch.full([1, 2, 6, 5], 3.0)
    y = upfirdn2d.upsample2d(x, f, up=up, impl='ref')
    assert y.shape == (1, 2, 6 * upy, 5 * upx)
    # Away from the borders a constant image stays constant: gain up^2 compensates the inserted zeros.
    torch.testing.assert_close(y[:, :, fw:-fw, fw:-fw], torch.full_like(y[:, :, fw:-fw, fw:-fw], 3.0))


@pytest.mark.parametrize('down,fw,h,w', [(2, 4, 16, 12), (2, 2, 15, 19), (4, 4, 32, 24), ([2, 1], 4, 12, 12)])
def test_downsample2d_size_and_dc_gain(down, fw, h, w):
    downx, downy = (down, down) if isinstance(down, int) else down
    f = upfirdn2d.setup_filter(np.ones(fw))
    x = torch.full([1, 2, h, w], 2.0)
    y = upfirdn2d.downsample2d(x, f, down=down, impl='ref')
    assert y.shape == (1, 2, h // downy, w // downx)
    torch.testing.assert_close(y[:, :, 2:-2, 2:-2], torch.full_like(y[:, :, 2:-2, 2:-2], 2.0))


def test_upsample2d_then_box_downsample_recovers_bilinear_input():
    # The 2-tap box filter upsample is nearest-neighbour; 2-tap box downsample averages it back exactly.
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    f = upfirdn2d.setup_filter([1, 1]).double()
    up = upfirdn2d.upsample2d(x, f, impl='ref')
    torch.testing.assert_close(up[:, :, ::2, ::2], x)
    torch.testing.assert_close(up[:, :, 1::2, 1::2], x)
    torch.testing.assert_close(upfirdn2d.downsample2d(up, f, impl='ref'), x)

def test_upsample2d_then_downsample2d_adds_no_half_pixel_shift():
    # With even filters the pad splits must cancel: an impulse comes back centred on itself, symmetric.
    f = upfirdn2d.setup_filter([1, 3, 3, 1]).double()
    x = torch.zeros(1, 1, 9, 9, dtype=torch.float64)
    x[0, 0, 4, 4] = 1
    y = upfirdn2d.downsample2d(upfirdn2d.upsample2d(x, f, impl='ref'), f, impl='ref')
    torch.testing.assert_close(y, y.flip([2, 3]))
    assert y[0, 0].argmax().item() == 4 * 9 + 4
    np.testing.assert_allclose(y[0, 0, 3:6, 4].numpy(), np.array([0.3, 1.0, 0.3]) * 0.390625, atol=2e-3)


#----------------------------------------------------------------------------
# setup_filter.

def test_setup_filter_short_1d_becomes_normalised_outer_product():
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    assert f.dtype == torch.float32 and f.shape == (4, 4)
    np.testing.assert_allclose(f.numpy(), np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64, rtol=1e-6)


def test_setup_filter_long_1d_stays_separable():
    taps = np.arange(1, 9, dtype=np.float64)
    f = upfirdn2d.setup_filter(taps)
    assert f.shape == (8,)
    np.testing.assert_allclose(f.numpy(), taps / taps.sum(), rtol=1e-6)
    assert upfirdn2d.setup_filter(taps, separable=False).shape == (8, 8)
    assert upfirdn2d.setup_filter([1, 2], separable=True).shape == (2,)


def test_setup_filter_none_flip_gain_and_no_normalize():
    np.testing.assert_allclose(upfirdn2d.setup_filter(None).numpy(), [[1.0]])
    f = upfirdn2d.setup_filter([[1, 2], [3, 4]], normalize=False, flip_filter=True, gain=4)
    np.testing.assert_allclose(f.numpy(), [[16, 12], [8, 4]])
    f = upfirdn2d.setup_filter([1, 3], separable=True, gain=4)  # gain ** (1/2) per axis
    np.testing.assert_allclose(f.numpy(), [0.5, 1.5])


def test_setup_filter_rejects_3d_taps():
    with pytest.raises(ValueError, match='1-D or 2-D'):
        upfirdn2d.setup_filter(np.ones([2, 2, 2]))

#----------------------------------------------------------------------------
# Errors.

def test_upfirdn2d_errors_name_the_bad_argument():
    x = torch.randn(1, 1, 4, 4)
    f = torch.ones(3, 3)
    with pytest.raises(ValueError, match='4-D'):
        upfirdn2d.upfirdn2d(x[0], f, impl='ref')
    with pytest.raises(ValueError, match='up=0'):
        upfirdn2d.upfirdn2d(x, f, up=0, impl='ref')
    with pytest.raises(ValueError, match='down'):
        upfirdn2d.upfirdn2d(x, f, down=[1, -2], impl='ref')
    with pytest.raises(ValueError, match='padding'):
        upfirdn2d.upfirdn2d(x, f, padding=[1, 2, 3], impl='ref')
    with pytest.raises(ValueError, match='output would be'):
        upfirdn2d.upfirdn2d(x, f, padding=-1, impl='ref')
    with pytest.raises(ValueError, match='impl'):
        upfirdn2d.upfirdn2d(x, f, impl='fast')

#----------------------------------------------------------------------------
# Gradients and precision.

@pytest.mark.parametrize('separable', [False, True])
def test_upfirdn2d_gradcheck_and_gradgradcheck(separable):
    torch.manual_seed(0)
    x = torch.randn(1, 2, 4, 3, dtype=torch.float64, requires_grad=True)
    f = torch.randn(3, dtype=torch.float64) if separable else torch.randn(2, 3, dtype=torch.float64)
    fn = lambda x: upfirdn2d.upfirdn2d(x, f, up=[2, 1], down=[1, 2], padding=[1, 0, 2, -1], gain=1.5, impl='ref')
    assert torch.autograd.gradcheck(fn, [x])
    assert torch.autograd.gradgradcheck(fn, [x])


@pytest.mark.parametrize('dtype,tol', [(torch.float16, 2e-2), (torch.bfloat16, 1e-1)])
def test_upfirdn2d_low_precision_close_to_float32(dtype, tol, monkeypatch):
    monkeypatch.setattr(upfirdn2d, '_FAST_CPU_ENABLED', False)  # The reference in low precision (the CPU path: below).
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 8)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    for run in (lambda x: upfirdn2d.upsample2d(x, f, impl='ref'), lambda x: upfirdn2d.downsample2d(x, f, impl='ref')):
        expected = run(x)
        got = run(x.to(dtype))
        assert got.dtype == dtype
        torch.testing.assert_close(got.float(), expected, atol=tol, rtol=tol)

#----------------------------------------------------------------------------
# CUDA path structure, testable without a GPU: the autograd Function (two passes for separable filters, gradient
# by recursion) run with the reference as its kernel, and the kernel's own code emulated on the CPU.

FUNCTION_CASES = [  # (up, down, padding, filter shape, input h, w)
    ((2, 2), (1, 1), (2, 1, 2, 1), (4, 4), 4, 3),
    ((1, 1), (2, 2), (1, 1, 1, 1), (4,), 5, 6),
    ((2, 1), (1, 3), (0, -1, 3, 2), (3, 2), 3, 4),
    ((3, 2), (2, 2), (-1, 2, 1, 0), (5,), 3, 3),
]

@pytest.mark.parametrize('up,down,padding,filter_shape,h,w', FUNCTION_CASES)
def test_cuda_function_forward_and_recursive_gradients_match_reference(up, down, padding, filter_shape, h, w):
    torch.manual_seed(0)
    x = torch.randn(1, 1, h, w, dtype=torch.float64, requires_grad=True)
    f = torch.randn(filter_shape, dtype=torch.float32)
    function = upfirdn2d._upfirdn2d_cuda(up, down, padding, False, 0.5, run_kernel=upfirdn2d._upfirdn2d_ref)
    expected = upfirdn2d._upfirdn2d_ref(x, f, up, down, padding, False, 0.5)
    torch.testing.assert_close(function.apply(x, f), expected)
    assert torch.autograd.gradcheck(lambda x: function.apply(x, f), [x])
    assert torch.autograd.gradgradcheck(lambda x: function.apply(x, f), [x])


def _emulation_plugin(monkeypatch):
    """The built plugin (compile-only on machines without a GPU), or skip when no CUDA toolchain is here."""
    from torch_utils import custom_ops
    if not os.environ.get('CUDA_HOME') and os.path.isfile('/usr/local/cuda/bin/nvcc'):
        monkeypatch.setenv('CUDA_HOME', '/usr/local/cuda')
    if not os.environ.get('TORCH_CUDA_ARCH_LIST') and not torch.cuda.is_available():
        monkeypatch.setenv('TORCH_CUDA_ARCH_LIST', '9.0')
    problem = custom_ops.toolchain_problem()
    if problem is not None:
        pytest.skip(f'cannot build upfirdn2d_plugin here: {problem}')
    spec = custom_ops._specs[upfirdn2d._PLUGIN_NAME]
    return custom_ops.get_plugin(upfirdn2d._PLUGIN_NAME, spec['sources'], spec['headers'], spec['source_dir'],
                                 **spec['build_kwargs'])


EMULATION_CASES = [  # (up, down, padding, filter shape, input h, w, flip_filter)
    ((1, 1), (1, 1), (1, 1, 1, 1), (3, 3), 7, 9, False),
    ((2, 2), (1, 1), (2, 1, 2, 1), (4, 4), 37, 70, False),      # several tiles in x and y
    ((1, 1), (2, 2), (1, 1, 1, 1), (4, 4), 66, 131, True),
    ((4, 2), (1, 3), (-3, 2, 5, -1), (5, 7), 9, 20, False),
    ((1, 1), (4, 4), (0, 3, 2, 2), (1, 12), 50, 45, False),     # one pass of a separable 12-tap filter
    ((3, 3), (2, 2), (-2, -1, 4, 0), (12, 1), 17, 5, True),
    ((1, 1), (8, 8), (20, 20, 20, 20), (32, 32), 40, 70, False),  # small tiles: large filter, large down
]

@pytest.mark.slow
@pytest.mark.parametrize('up,down,padding,filter_shape,h,w,flip_filter', EMULATION_CASES)
def test_cuda_kernel_code_emulated_on_cpu_matches_reference(up, down, padding, filter_shape, h, w, flip_filter,
                                                            monkeypatch):
    plugin = _emulation_plugin(monkeypatch)
    torch.manual_seed(0)
    x = torch.randn(2, 3, h, w)
    f = torch.randn(filter_shape)
    expected = upfirdn2d._upfirdn2d_ref(x.double(), f.double(), up, down, padding, flip_filter, 1.5)
    got = plugin.upfirdn2d_emulate_cpu(x, f, *up, *down, *padding, flip_filter, 1.5)
    assert got.shape == expected.shape
    torch.testing.assert_close(got.double(), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize('filter_shape,fits', [((32, 32), True), ((48, 48), False), ((48,), True)])
def test_kernel_fits_predicts_the_plugins_shared_memory_limit(filter_shape, fits, monkeypatch):
    plugin = _emulation_plugin(monkeypatch)
    f = torch.ones(filter_shape)
    assert upfirdn2d._kernel_fits(f, (1, 1), (8, 8)) == fits
    assert upfirdn2d._kernel_fits(f, (8, 8), (1, 1)) == fits  # its gradient downsamples by 8
    x = torch.zeros(1, 1, 64, 64)
    run = lambda: plugin.upfirdn2d_emulate_cpu(x, f if f.ndim == 2 else f[None], 1, 1, 8, 8, 30, 30, 30, 30, False, 1.0)
    if fits:
        run()
    else:
        with pytest.raises(RuntimeError, match='shared memory'):
            run()

#----------------------------------------------------------------------------

def test_parity_check_runs_under_no_grad_with_reference_kernel(monkeypatch):
    # The check is called from whatever context first uses the op; with the reference standing in for the kernel
    # it must agree with itself, also inside no_grad / inference_mode.
    original = upfirdn2d._upfirdn2d_cuda
    monkeypatch.setattr(upfirdn2d, '_upfirdn2d_cuda',
                        lambda *args: original(*args[:5], run_kernel=upfirdn2d._upfirdn2d_ref))
    with torch.inference_mode():
        ok, details = upfirdn2d._parity_check('cpu')
    assert ok, details
    assert 'max relative error' in details


def test_parity_check_rejects_a_wrong_kernel(monkeypatch):
    wrong_kernel = lambda x, f, up, down, padding, flip, gain: upfirdn2d._upfirdn2d_ref(x, f, up, down, padding,
                                                                                       not flip, gain)
    original = upfirdn2d._upfirdn2d_cuda
    monkeypatch.setattr(upfirdn2d, '_upfirdn2d_cuda', lambda *args: original(*args[:5], run_kernel=wrong_kernel))
    ok, details = upfirdn2d._parity_check('cpu')
    assert not ok, details

#----------------------------------------------------------------------------
# On a GPU: the kernel itself against the reference (skipped on machines without CUDA).

def _cuda_plugin_or_skip():
    if not torch.cuda.is_available():
        pytest.skip('no CUDA device: the kernel is covered by the CPU emulation tests instead')
    from torch_utils import custom_ops
    if custom_ops.try_get_plugin(upfirdn2d._PLUGIN_NAME) is None:
        pytest.skip(f'upfirdn2d_plugin unavailable: {custom_ops.plugin_status(upfirdn2d._PLUGIN_NAME)}')


@pytest.mark.parametrize('up,down,padding,filter_shape,h,w,flip_filter', EMULATION_CASES)
def test_cuda_kernel_matches_reference_forward_grad_and_gradgrad(up, down, padding, filter_shape, h, w, flip_filter):
    _cuda_plugin_or_skip()
    torch.manual_seed(0)
    # Reference in float64 (float32 cuDNN may use TF32); kernel in float32.
    x = torch.randn(2, 3, h, w, device='cuda', requires_grad=True)
    x_ref = x.detach().double().requires_grad_(True)
    f = torch.randn(filter_shape, device='cuda')
    fast = upfirdn2d._upfirdn2d_cuda(up, down, padding, flip_filter, 1.5).apply(x, f)
    ref = upfirdn2d._upfirdn2d_ref(x_ref, f, up, down, padding, flip_filter, 1.5)
    close = lambda a, b: torch.testing.assert_close(a.double(), b, atol=1e-4, rtol=1e-4)
    close(fast, ref)
    dy = torch.randn_like(fast).requires_grad_(True)
    dy_ref = dy.detach().double().requires_grad_(True)
    dx_fast, = torch.autograd.grad(fast, x, dy, create_graph=True)
    dx_ref, = torch.autograd.grad(ref, x_ref, dy_ref, create_graph=True)
    close(dx_fast, dx_ref)
    # The op is linear, so the gradient's own gradient (w.r.t. dy) is the forward op applied to ddx.
    ddx = torch.randn_like(x)
    ddy_fast, = torch.autograd.grad(dx_fast, dy, ddx)
    ddy_ref, = torch.autograd.grad(dx_ref, dy_ref, ddx.double())
    close(ddy_fast, ddy_ref)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_cuda_kernel_low_precision_close_to_reference(dtype):
    _cuda_plugin_or_skip()
    torch.manual_seed(0)
    x = torch.randn(4, 8, 33, 47, device='cuda')
    for separable in (False, True):
        f = upfirdn2d.setup_filter(np.kaiser(12, 4.0) if separable else [1, 3, 3, 1], device='cuda')
        for run in (lambda x, impl: upfirdn2d.upsample2d(x, f, impl=impl),
                    lambda x, impl: upfirdn2d.downsample2d(x, f, impl=impl)):
            fast = run(x.to(dtype), 'cuda')
            assert fast.dtype == dtype
            torch.testing.assert_close(fast.double(), run(x.double(), 'ref'), atol=3e-2, rtol=3e-2)

#----------------------------------------------------------------------------
# Fast CPU path (_upfirdn2d_cpu: polyphase conv_transpose2d / strided conv2d) against the plain formula
# (_upfirdn2d_ref), which stays the ground truth.

def _random_fast_path_cases(count=40, seed=1):
    """Deterministic random (up, down, padding, filter_shape, h, w, flip_filter, gain, padding_form) tuples:
    odd sizes, factors 1/2/4 per axis, negative and asymmetric padding, separable and 2-D filters."""
    rng = np.random.RandomState(seed)
    cases = []
    while len(cases) < count:
        up = tuple(int(v) for v in rng.choice([1, 2, 4], size=2))
        down = tuple(int(v) for v in rng.choice([1, 2, 4], size=2))
        filter_shape = (int(rng.randint(1, 9)),) if rng.rand() < 0.4 else tuple(int(v) for v in rng.randint(1, 7, 2))
        fh, fw = (filter_shape * 2)[:2] if len(filter_shape) == 1 else filter_shape
        h, w = (int(v) for v in rng.randint(1, 10, size=2))
        padding = tuple(int(v) for v in rng.randint(-3, 6, size=4))
        form = ['int', 'pair', 'quad'][len(cases) % 3]
        if form == 'int':
            padding = (padding[0],) * 4
        elif form == 'pair':
            padding = (padding[0], padding[0], padding[2], padding[2])
        px0, px1, py0, py1 = padding
        if (w * up[0] + px0 + px1 - fw) // down[0] + 1 < 1 or (h * up[1] + py0 + py1 - fh) // down[1] + 1 < 1:
            continue
        if min(w * up[0] + min(px0, 0) + min(px1, 0), h * up[1] + min(py0, 0) + min(py1, 0)) < 1:
            continue   # Cropped away entirely.
        user_padding = {'int': padding[0], 'pair': [padding[0], padding[2]], 'quad': list(padding)}[form]
        flip_filter, gain = bool(rng.rand() < 0.5), float(rng.choice([1, 0.5, 3]))
        cases.append((up, down, user_padding, filter_shape, h, w, flip_filter, gain))
    return cases

FAST_PATH_CASES = _random_fast_path_cases()

@pytest.mark.parametrize('up,down,padding,filter_shape,h,w,flip_filter,gain', FAST_PATH_CASES)
def test_fast_cpu_path_equals_plain_formula_forward_and_gradient(up, down, padding, filter_shape, h, w, flip_filter,
                                                                 gain, monkeypatch):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn([2, 3, h, w], dtype=torch.float64, generator=generator, requires_grad=True)
    f = torch.randn(filter_shape, dtype=torch.float64, generator=generator)
    run = lambda x: upfirdn2d.upfirdn2d(x, f, up=list(up), down=list(down), padding=padding,
                                        flip_filter=flip_filter, gain=gain, impl='ref')
    fast = run(x)
    monkeypatch.setattr(upfirdn2d, '_FAST_CPU_ENABLED', False)
    plain = run(x)
    assert fast.shape == plain.shape
    torch.testing.assert_close(fast, plain, rtol=1e-12, atol=1e-12)
    dy = torch.randn(plain.shape, dtype=torch.float64, generator=generator)
    grad_plain, = torch.autograd.grad(plain, x, dy)
    monkeypatch.setattr(upfirdn2d, '_FAST_CPU_ENABLED', True)
    grad_fast, = torch.autograd.grad(run(x), x, dy)
    torch.testing.assert_close(grad_fast, grad_plain, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('up,down,padding,filter_shape,h,w,flip_filter,gain',
                         [case for case in FAST_PATH_CASES if case[4] * case[5] <= 20][:10] + [
                             ((1, 1), (2, 2), [1, 2, 0, -1], (4,), 5, 4, False, 2.0),
                             ((1, 1), (1, 1), [2, 1, 1, 2], (3, 2), 3, 4, True, 1.0),
                             ((2, 2), (1, 1), [2, 1, 2, 1], (4, 4), 3, 3, False, 4.0)])
def test_fast_cpu_path_gradcheck_and_gradgradcheck(up, down, padding, filter_shape, h, w, flip_filter, gain):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn([1, 1, h, w], dtype=torch.float64, generator=generator, requires_grad=True)
    f = torch.randn(filter_shape, dtype=torch.float64, generator=generator, requires_grad=True)
    fn = lambda x, f: upfirdn2d._upfirdn2d_cpu(x, f, up, down, upfirdn2d._parse_padding(padding), flip_filter, gain)
    assert torch.autograd.gradcheck(fn, [x, f])
    assert torch.autograd.gradgradcheck(fn, [x, f])


@pytest.mark.parametrize('channels_last', [False, True])
def test_fast_cpu_path_is_the_cpu_default_and_matches_wrappers_in_float32(channels_last, monkeypatch):
    calls = []
    original = upfirdn2d._upfirdn2d_cpu
    monkeypatch.setattr(upfirdn2d, '_upfirdn2d_cpu', lambda *args: calls.append(1) or original(*args))
    torch.manual_seed(0)
    x = torch.randn(3, 5, 11, 9)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    f4 = upfirdn2d.setup_filter([1, 3, 3, 1])
    f12 = upfirdn2d.setup_filter(np.hanning(14)[1:-1])
    runs = [lambda: upfirdn2d.upsample2d(x, f4), lambda: upfirdn2d.downsample2d(x, f4),
            lambda: upfirdn2d.filter2d(x, f4, padding=1), lambda: upfirdn2d.upsample2d(x, f12, up=4),
            lambda: upfirdn2d.downsample2d(x, f12, padding=[3, 2])]
    for run in runs:
        monkeypatch.setattr(upfirdn2d, '_FAST_CPU_ENABLED', True)
        fast = run()
        monkeypatch.setattr(upfirdn2d, '_FAST_CPU_ENABLED', False)
        plain = run()
        torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-6)
        assert fast.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    assert len(calls) == len(runs)


@pytest.mark.parametrize('channels_last,num_channels', [(None, 16), (True, 16), (False, 3), (True, 3)])
def test_fast_cpu_path_in_either_memory_format_matches_plain(channels_last, num_channels, monkeypatch):
    monkeypatch.setattr(upfirdn2d, '_FAST_CPU_CHANNELS_LAST', channels_last)
    generator = torch.Generator().manual_seed(0)
    for up, down, padding, filter_shape, h, w, flip_filter, gain in FAST_PATH_CASES[:10]:
        x = torch.randn([2, num_channels, h, w], dtype=torch.float64, generator=generator)
        f = torch.randn(filter_shape, dtype=torch.float64, generator=generator)
        args = (up, down, upfirdn2d._parse_padding(padding), flip_filter, gain)
        torch.testing.assert_close(upfirdn2d._upfirdn2d_cpu(x, f, *args), upfirdn2d._upfirdn2d_ref(x, f, *args),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_low_precision_on_cpu_runs_the_fast_path_in_float32(dtype, monkeypatch):
    # gen_images.py --precision=bf16: one rounding of the float32 fast path's result, never the reference in bf16.
    monkeypatch.setattr(upfirdn2d, '_upfirdn2d_ref', lambda *args: pytest.fail('reference path taken'))
    torch.manual_seed(0)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    for run in (lambda x: upfirdn2d.upsample2d(x, f), lambda x: upfirdn2d.downsample2d(x, f, padding=[1, 0])):
        x_low = torch.randn(2, 5, 9, 8).to(dtype).requires_grad_(True)
        x32 = x_low.detach().float().requires_grad_(True)
        y_low, y32 = run(x_low), run(x32)
        assert y_low.dtype == dtype and torch.equal(y_low, y32.to(dtype))
        weights = torch.randn(y32.shape)
        (y_low.float() * weights).sum().backward()
        (y32 * weights).sum().backward()
        assert x_low.grad.dtype == dtype
        # The incoming gradient is rounded to the low dtype first, so the two agree to that dtype's precision.
        torch.testing.assert_close(x_low.grad.float(), x32.grad, rtol=2e-2, atol=1e-2 * float(x32.grad.abs().max()))


def _r1_style_penalty_gradient(x, scale, f, count_convolutions):
    """grad of |d sum(down(x * scale)^2) / dx|^2 with respect to scale (R1's shape: a double backward), and how many
    aten convolutions that second backward ran."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket in (torch.ops.aten.convolution, torch.ops.aten.convolution_backward):
                Count.calls += 1
            return func(*args, **(kwargs or {}))

    y = upfirdn2d.downsample2d(x * scale, f)
    grad_x, = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    with Count() if count_convolutions else contextlib.nullcontext():
        grad_scale, = torch.autograd.grad(grad_x.square().sum(), scale)
    return grad_scale, Count.calls


def test_fast_cpu_path_double_backward_skips_the_filters_weight_gradient(monkeypatch):
    # torch's own double backward of a depthwise conv computes the (unrequested) filter gradient one channel group
    # at a time: 32 extra convolutions here. The fast path's convs are conv2d_gradfix's, which skip it.
    torch.manual_seed(0)
    x = torch.randn(4, 32, 16, 16, dtype=torch.float64, requires_grad=True)
    scale = torch.randn(1, 32, 1, 1, dtype=torch.float64, requires_grad=True)
    f = upfirdn2d.setup_filter([1, 3, 3, 1]).double()
    fast, fast_calls = _r1_style_penalty_gradient(x, scale, f, count_convolutions=True)
    monkeypatch.setattr(upfirdn2d, '_FAST_CPU_ENABLED', False)
    plain, plain_calls = _r1_style_penalty_gradient(x, scale, f, count_convolutions=True)
    torch.testing.assert_close(fast, plain, rtol=1e-10, atol=1e-10)
    assert plain_calls >= 32  # What the plain path (torch's F.conv2d) does; if torch fixes it, drop this line.
    assert fast_calls <= 4


@pytest.mark.parametrize('length,pads,taps,copies', [(14, (2, 3), 12, 0),   # filtered_lrelu's backward: no copy.
                                                       (15, (2, 3), 12, 1),   # The tail is read: padded.
                                                       (9, (0, 1), 4, 1), (10, (0, 1), 4, 0)])
def test_strided_path_pads_a_zero_tail_only_where_a_window_reads_it(length, pads, taps, copies, monkeypatch):
    generator = torch.Generator().manual_seed(3)
    x = torch.randn([2, 3, length, length], dtype=torch.float64, generator=generator)
    f = torch.randn([taps], dtype=torch.float64, generator=generator)
    padding = [pads[0], pads[1], pads[0], pads[1]]
    pads_made = []
    original_pad = upfirdn2d.F.pad
    monkeypatch.setattr(upfirdn2d.F, 'pad', lambda *args, **kwargs: pads_made.append(1) or original_pad(*args,
                                                                                                          **kwargs))
    fast = upfirdn2d._upfirdn2d_cpu(x, f, (1, 1), (2, 2), tuple(padding), False, 1.0)
    monkeypatch.setattr(upfirdn2d.F, 'pad', original_pad)
    monkeypatch.setattr(upfirdn2d, '_FAST_CPU_ENABLED', False)
    plain = upfirdn2d.upfirdn2d(x, f, down=2, padding=padding, impl='ref')
    assert fast.shape == plain.shape
    torch.testing.assert_close(fast, plain, rtol=1e-12, atol=1e-12)
    assert len(pads_made) == copies
