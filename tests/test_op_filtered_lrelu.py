"""filtered_lrelu (StyleGAN3 Sec. 3.2): the reference against an independent scipy/numpy composition, its gradients,
and the fused kernel's per-tile code (filtered_lrelu.h) run on the CPU through its emulation build."""

import numpy as np
import pytest
import scipy.signal
import torch

from torch_utils import custom_ops
from torch_utils.ops import filtered_lrelu as fl
from torch_utils.ops import upfirdn2d

#----------------------------------------------------------------------------
# Independent reference: scipy.signal.upfirdn (1-D, separable filters) or convolve2d (2-D filters) + numpy lrelu.

def _np_resample(x, f, up, down, pads, flip_filter):
    """scipy semantics per plane: zero-insert, true convolution (correlation if flip_filter), keep the samples the
    padded 'valid' window selects, decimate. x: [N, C, H, W] float64; f: None, [n] (both axes) or [fh, fw]."""
    f = np.ones([1, 1]) if f is None else np.asarray(f, dtype=np.float64)
    if flip_filter:
        f = f[::-1] if f.ndim == 1 else f[::-1, ::-1]
    px0, px1, py0, py1 = pads
    if f.ndim == 1:
        full = scipy.signal.upfirdn(f, x, up=up, axis=2)
        full = scipy.signal.upfirdn(f, full, up=up, axis=3)
        fh = fw = len(f)
    else:
        fh, fw = f.shape
        ins = np.zeros(x.shape[:2] + ((x.shape[2] - 1) * up + 1, (x.shape[3] - 1) * up + 1))
        ins[:, :, ::up, ::up] = x
        full = np.stack([np.stack([scipy.signal.convolve2d(plane, f) for plane in img]) for img in ins])
    # The 'valid' output m of the padded signal is full-convolution sample m + taps - 1 - pad0 (zero outside).
    out_h = x.shape[2] * up + py0 + py1 - fh + 1
    out_w = x.shape[3] * up + px0 + px1 - fw + 1
    rows = np.arange(out_h) + fh - 1 - py0
    cols = np.arange(out_w) + fw - 1 - px0
    padded = np.zeros(full.shape[:2] + (full.shape[2] + 2 * (out_h + fh), full.shape[3] + 2 * (out_w + fw)))
    oy, ox = out_h + fh, out_w + fw
    padded[:, :, oy:oy + full.shape[2], ox:ox + full.shape[3]] = full
    return padded[:, :, rows + oy][:, :, :, cols + ox][:, :, ::down, ::down]

def _np_intermediate(x, fu, b, up, pads, flip_filter):
    x = x + (0 if b is None else b[None, :, None, None])
    return _np_resample(x, fu, up, 1, pads, flip_filter) * up ** 2

def _np_filtered_lrelu(x, fu, fd, b, up, down, pads, gain, slope, clamp, flip_filter):
    z = _np_intermediate(x, fu, b, up, pads, flip_filter)
    a = np.where(z > 0, z, z * slope) * gain
    if clamp is not None:
        a = np.clip(a, -clamp, clamp)
    return _np_resample(a, fd, 1, down, (0, 0, 0, 0), flip_filter)

def _pads(padding):
    return fl._parse_padding(padding)

def _filter(kind, taps, seed):
    """'none', 'sep' (1-D, separable) or '2d' [taps[0], taps[1]] random lowpass-ish filters."""
    rng = np.random.default_rng(seed)
    if kind == 'none':
        return None
    if kind == 'sep':
        return upfirdn2d.setup_filter(rng.uniform(0.1, 1, size=taps[0]), separable=True)
    return upfirdn2d.setup_filter(rng.uniform(0.1, 1, size=taps))

def _t(f):
    return None if f is None else f.numpy().astype(np.float64)

#----------------------------------------------------------------------------
# (shape, fu, fu taps, fd, fd taps, up, down, padding, clamp, flip_filter); odd and non-square on purpose.

CASES = [
    ([2, 3, 9, 11], 'sep', (12,), 'sep', (12,), 2, 2, [10, 9, 11, 10], None, False),    # StyleGAN3-T layer.
    ([1, 2, 7, 6], 'sep', (24,), 'sep', (12,), 4, 2, [13, 12, 14, 11], 0.7, False),     # Upsampling layer.
    ([2, 2, 8, 9], '2d', (4, 4), 'none', (1,), 2, 1, 3, None, True),
    ([1, 3, 10, 7], 'none', (1,), '2d', (5, 3), 1, 4, [2, 1, 0, 3], 0.3, False),
    ([1, 2, 5, 13], '2d', (3, 6), '2d', (4, 5), 4, 4, [4, 5], None, True),
    ([2, 1, 21, 19], 'sep', (9,), 'sep', (8,), 1, 2, [-1, 4, 3, -2], None, False),      # Cropping.
    ([1, 2, 6, 6], 'none', (1,), 'none', (1,), 1, 1, 0, 0.5, False),                    # Plain lrelu + clamp.
    ([1, 2, 9, 7], 'sep', (6,), 'none', (1,), 2, 2, [3, 2, 2, 3], None, False),          # fd shorter than down.
    ([1, 2, 38, 37], 'sep', (12,), 'sep', (12,), 2, 2, [9, 8, 9, 8], None, False),      # SG3-T 36 px, 2x2 tiles.
    ([1, 1, 38, 38], 'sep', (24,), 'sep', (12,), 4, 2, [10, 7, 10, 7], 1.0, False),     # SG3-T 36 -> 68 px.
]

def _case_args(case, seed=0):
    shape, fu_kind, fu_taps, fd_kind, fd_taps, up, down, padding, clamp, flip = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    b = rng.standard_normal(shape[1])
    fu, fd = _filter(fu_kind, fu_taps, seed + 1), _filter(fd_kind, fd_taps, seed + 2)
    kwargs = dict(up=up, down=down, padding=padding, gain=1.4, slope=0.3, clamp=clamp, flip_filter=flip)
    return x, b, fu, fd, kwargs

@pytest.mark.parametrize('case', CASES)
def test_filtered_lrelu_ref_matches_scipy_composition(case):
    x, b, fu, fd, kwargs = _case_args(case)
    y = fl._filtered_lrelu_ref(torch.tensor(x), fu, fd, torch.tensor(b), **kwargs)
    pads = _pads(kwargs['padding'])
    expected = _np_filtered_lrelu(x, _t(fu), _t(fd), b, kwargs['up'], kwargs['down'], pads, kwargs['gain'],
                                  kwargs['slope'], kwargs['clamp'], kwargs['flip_filter'])
    assert y.shape == expected.shape
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10, atol=1e-10)

def test_public_op_on_cpu_is_the_reference_and_defaults_match_stylegan3():
    x, b, fu, fd, _ = _case_args(CASES[0])
    y = fl.filtered_lrelu(torch.tensor(x), fu, fd, torch.tensor(b), up=2, down=2, padding=10)
    expected = _np_filtered_lrelu(x, _t(fu), _t(fd), b, 2, 2, (10,) * 4, np.sqrt(2), 0.2, None, False)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10, atol=1e-10)

def test_output_size_follows_the_documented_formula():
    fu = upfirdn2d.setup_filter(np.ones(12), separable=True)
    fd = upfirdn2d.setup_filter(np.ones([5, 7]))
    sizes = [(36, 36, 2, 2, (10, 11, 9, 12)), (17, 5, 4, 2, (13, 3, 2, 14)), (9, 8, 1, 3, (5,) * 4)]
    for h, w, up, down, pads in sizes:
        y = fl._filtered_lrelu_ref(torch.zeros([1, 1, h, w]), fu, fd, up=up, down=down, padding=list(pads))
        mid_h, mid_w = h * up + pads[2] + pads[3] - 12 + 1, w * up + pads[0] + pads[1] - 12 + 1
        assert y.shape == (1, 1, (mid_h - 5 + down) // down, (mid_w - 7 + down) // down)

def test_invalid_arguments_raise_clear_errors():
    x = torch.zeros([1, 2, 8, 8])
    fu = upfirdn2d.setup_filter(np.ones(12), separable=True)
    with pytest.raises(ValueError, match='up=0'):
        fl.filtered_lrelu(x, up=0)
    with pytest.raises(ValueError, match='fewer than fd'):
        fl.filtered_lrelu(x, fu, fu, up=1, padding=0)
    with pytest.raises(ValueError, match=r'b must be None or \[2\]'):
        fl.filtered_lrelu(x, b=torch.zeros([3]))
    with pytest.raises(ValueError, match='clamp'):
        fl.filtered_lrelu(x, clamp=-1)
    with pytest.raises(ValueError, match='padding'):
        fl.filtered_lrelu(x, padding=[1, 2, 3])
    with pytest.raises(ValueError, match='fu must be'):
        fl.filtered_lrelu(x, fu=torch.ones([2, 2, 2]))
    with pytest.raises(ValueError, match='x must be'):
        fl.filtered_lrelu(torch.zeros([2, 8, 8]))
    with pytest.raises(ValueError, match='impl'):
        fl.filtered_lrelu(x, impl='fast')

#----------------------------------------------------------------------------
# Gradients of the reference path (float64; the lrelu kinks are measure-zero for random inputs).

def _small_grad_inputs(case):
    x, b, fu, fd, kwargs = _case_args(case, seed=3)
    fu, fd = (None if f is None else f.double() for f in (fu, fd))
    x = torch.tensor(x[:1, :1, :4, :3], requires_grad=True)
    b = torch.tensor(b[:1], requires_grad=True)
    return x, b, fu, fd, kwargs

@pytest.mark.parametrize('case', [CASES[0], CASES[3], CASES[4]])
def test_ref_gradcheck_and_gradgradcheck_float64(case):
    x, b, fu, fd, kwargs = _small_grad_inputs(case)
    fn = lambda x, b: fl._filtered_lrelu_ref(x, fu, fd, b, **kwargs)
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))

@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_low_precision_ref_is_close_to_float32(dtype, monkeypatch):
    monkeypatch.setattr(fl, '_FAST_CPU_ENABLED', False)  # The reference in low precision (the CPU path: below).
    x, b, fu, fd, kwargs = _case_args(CASES[0])
    x32, b32 = torch.tensor(x, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)
    try:
        y_low = fl.filtered_lrelu(x32.to(dtype), fu, fd, b32.to(dtype), **kwargs)
    except RuntimeError as e:  # Some CPU builds lack half-precision convolution.
        pytest.skip(f'{dtype} convolution is not available on this CPU build: {e}')
    y32 = fl.filtered_lrelu(x32, fu, fd, b32, **kwargs)
    assert y_low.dtype == dtype
    tol = 1e-2 if dtype == torch.float16 else 4e-2
    assert float((y_low.float() - y32).abs().max()) <= tol * float(y32.abs().max())

#----------------------------------------------------------------------------
# The fused kernel's code on the CPU. filtered_lrelu.cpp built with -DFL_CPU_EMULATION runs filtered_lrelu.h's
# per-tile function (the code each CUDA block runs) tile by tile, with shared memory and outputs poisoned with NaN,
# so off-by-one errors in the tiling, the polyphase taps or the code packing show up here without a GPU.

@pytest.fixture(scope='module')
def emulation():
    problem = custom_ops.toolchain_problem(needs_cuda=False)
    if problem is not None:
        pytest.skip(f'cannot build the CPU emulation of the kernel: {problem}')
    return custom_ops.get_plugin('filtered_lrelu_emu', sources=['filtered_lrelu.cpp'], headers=['filtered_lrelu.h'],
                                 source_dir=fl.SOURCE_DIR, extra_cflags=['-DFL_CPU_EMULATION', '-O2'])

def _fused(plugin, x, fu, fd, b, kwargs, tile=(0, 0)):
    spec = fl._parse_args(x, fu, fd, b, **{k: kwargs[k] for k in ('up', 'down', 'padding', 'gain', 'slope', 'clamp',
                                                                  'flip_filter')})
    return fl._filtered_lrelu_fused(plugin, x, fu, fd, b, spec, tile=tile)

TILES = [(0, 0), (4, 4), (8, 4), (4, 8)]

@pytest.mark.slow
@pytest.mark.parametrize('case', CASES)
@pytest.mark.parametrize('tile', TILES)
def test_fused_kernel_emulation_matches_reference_forward_and_gradients(emulation, case, tile):
    x, b, fu, fd, kwargs = _case_args(case)
    x = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    b = torch.tensor(b, dtype=torch.float32, requires_grad=True)
    y_ref = fl._filtered_lrelu_ref(x, fu, fd, b, **kwargs)
    y = _fused(emulation, x, fu, fd, b, kwargs, tile)
    dy = torch.randn(y_ref.shape, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(y, y_ref, rtol=0, atol=1e-5 * float(y_ref.detach().abs().max()))
    for g, g_ref in zip(torch.autograd.grad(y, [x, b], dy), torch.autograd.grad(y_ref, [x, b], dy)):
        assert torch.allclose(g, g_ref, rtol=0, atol=1e-5 * float(g_ref.abs().max()))

@pytest.mark.slow
@pytest.mark.parametrize('case', CASES)
def test_fused_kernel_emulation_stores_the_right_code_for_every_used_sample(emulation, case):
    x, b, fu, fd, kwargs = _case_args(case)
    spec = fl._parse_args(torch.tensor(x), fu, fd, torch.tensor(b), **kwargs)
    fu_args = fl._kernel_taps(fu, spec.flip_filter, spec.up ** 2, 'cpu')
    fd_args = fl._kernel_taps(fd, spec.flip_filter, 1, 'cpu')
    _, si = emulation.forward(torch.tensor(x, dtype=torch.float32), fu_args[0], fd_args[0],
                              torch.tensor(b, dtype=torch.float32), spec.up, spec.down, *spec.padding,
                              *fu_args[1:], *fd_args[1:], spec.gain, spec.slope, spec.clamp, True, 4, 4)
    mid_h, mid_w = spec.mid_size
    codes = ((si.numpy()[..., None] >> np.array([0, 2, 4, 6], dtype=np.uint8)) & 3).reshape(si.shape[:3] + (-1,))
    codes = codes[..., :mid_w]
    z = _np_intermediate(x, _t(fu), b, spec.up, spec.padding, spec.flip_filter)
    a = np.where(z > 0, z, z * spec.slope) * spec.gain
    expected = np.where(z > 0, 0, 1)
    if spec.clamp >= 0:
        expected = np.where(np.abs(a) > spec.clamp, 2, expected)
    # Samples some output reads must hold their code; the others may stay unwritten (3, the emulation's poison).
    used = [np.zeros(n, bool) for n in (mid_h, mid_w)]
    for axis, (n_out, taps) in enumerate(zip(spec.out_size, spec.fd_taps)):
        for o in range(n_out):
            used[axis][o * spec.down: o * spec.down + taps] = True
    used = used[0][:, None] & used[1][None, :]
    assert codes.shape[2:] == (mid_h, mid_w)
    assert np.array_equal(codes[..., used], expected[..., used])

@pytest.mark.slow
@pytest.mark.parametrize('case', [CASES[0], CASES[4]])
def test_fused_kernel_emulation_double_backward_matches_reference(emulation, case):
    x, b, fu, fd, kwargs = _case_args(case, seed=7)
    x = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    b = torch.tensor(b, dtype=torch.float32)
    gen = torch.Generator().manual_seed(8)
    results = []
    for fn in [lambda: fl._filtered_lrelu_ref(x, fu, fd, b, **kwargs), lambda: _fused(emulation, x, fu, fd, b, kwargs)]:
        y = fn()
        dy = torch.randn(y.shape, generator=gen.manual_seed(9)).requires_grad_(True)
        dx, = torch.autograd.grad(y, [x], dy, create_graph=True)
        w = torch.randn(dx.shape, generator=gen.manual_seed(10))
        results.append(torch.autograd.grad((dx * w).sum(), [dy])[0])  # d<dx, w>/d(dy): the transposed backward.
    assert torch.allclose(results[0], results[1], rtol=0, atol=1e-5 * float(results[0].abs().max()))

@pytest.mark.slow
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_fused_kernel_emulation_low_precision_is_close_to_float32(emulation, dtype):
    x, b, fu, fd, kwargs = _case_args(CASES[1])
    x32, b32 = torch.tensor(x, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)
    y_low = _fused(emulation, x32.to(dtype), fu, fd, b32.to(dtype), kwargs)
    y32 = fl._filtered_lrelu_ref(x32, fu, fd, b32, **kwargs)
    assert y_low.dtype == dtype
    tol = 1e-2 if dtype == torch.float16 else 4e-2
    assert float((y_low.float() - y32).abs().max()) <= tol * float(y32.abs().max())

@pytest.mark.slow
def test_public_op_dispatches_to_the_plugin_after_a_passing_parity_check(emulation, monkeypatch):
    calls = []
    class CountingPlugin:
        def forward(self, *args):
            calls.append('forward')
            return emulation.forward(*args)
        def mask_apply(self, *args):
            calls.append('mask_apply')
            return emulation.mask_apply(*args)
    plugin = CountingPlugin()
    monkeypatch.setattr(custom_ops, 'use_fast_path', lambda impl, x: impl == 'cuda')  # Pretend CPU tensors are CUDA.
    monkeypatch.setattr(custom_ops, 'try_get_plugin', lambda name: plugin if name == fl.PLUGIN_NAME else None)
    monkeypatch.setattr(custom_ops, '_parity', dict())
    x, b, fu, fd, kwargs = _case_args(CASES[1])
    x = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    y = fl.filtered_lrelu(x, fu, fd, torch.tensor(b, dtype=torch.float32), **kwargs)
    y.backward(torch.ones_like(y))
    assert custom_ops._parity == {(fl.PLUGIN_NAME, 'cpu'): True}
    calls_after_parity_check = calls[-2:]
    assert calls_after_parity_check == ['forward', 'mask_apply']
    y_ref = fl._filtered_lrelu_ref(x.detach(), fu, fd, torch.tensor(b, dtype=torch.float32), **kwargs)
    assert torch.allclose(y.detach(), y_ref, rtol=0, atol=1e-5 * float(y_ref.abs().max()))

@pytest.mark.slow
def test_parity_check_passes_on_the_emulation(emulation):
    ok, details = fl._parity_check('cpu', plugin=emulation)
    assert ok, details

#----------------------------------------------------------------------------

@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device on this machine')
@pytest.mark.parametrize('case', CASES)
@pytest.mark.parametrize('tile', TILES)
def test_cuda_fused_path_matches_float64_reference(case, tile):
    x, b, fu, fd, kwargs = _case_args(case)
    plugin = custom_ops.try_get_plugin(fl.PLUGIN_NAME)
    if plugin is None:
        pytest.skip(f'{fl.PLUGIN_NAME} could not be built: {custom_ops.plugin_status(fl.PLUGIN_NAME)}')
    x, b = torch.tensor(x, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)
    out_size = fl._parse_args(x, fu, fd, b, **kwargs).out_size
    dy = torch.randn(list(x.shape[:2]) + list(out_size), generator=torch.Generator().manual_seed(5))
    errors = fl._fused_errors(plugin, 'cuda', x, b, fu, fd, dy, tile=tile, **kwargs)
    assert max(errors.values()) <= 1e-5, errors

#----------------------------------------------------------------------------

#----------------------------------------------------------------------------
# The fast CPU path (_FilteredLReLUCpu: channels_last polyphase FIR, in-place activation, stored derivative) against
# the plain reference (zero insertion, dense FIR, bias_act by its definition): forward, grad, grad of grad.

def _plain_reference(monkeypatch, fn):
    """fn() computed with every fast CPU formula switched off."""
    with monkeypatch.context() as patch:
        patch.setattr(fl, '_FAST_CPU_ENABLED', False)
        patch.setattr(upfirdn2d, '_FAST_CPU_ENABLED', False)
        return fn()

def _fast_and_plain_grads(monkeypatch, case, dtype, seed, slope=None):
    """(fast, plain) lists [y, dx, db, d(dx . v)/dx's dy-part] for one case in `dtype` (slope: override)."""
    x, b, fu, fd, kwargs = _case_args(case, seed=seed)
    if slope is not None:
        kwargs['slope'] = slope
    gen = torch.Generator().manual_seed(seed)
    def run():
        xt = torch.tensor(x, dtype=dtype, requires_grad=True)
        bt = torch.tensor(b, dtype=dtype, requires_grad=True)
        y = fl.filtered_lrelu(xt, fu, fd, bt, **kwargs)
        dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=dtype).requires_grad_(True)
        dx, db = torch.autograd.grad(y, [xt, bt], dy, create_graph=True)
        v = torch.randn(dx.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=dtype)
        ddy, = torch.autograd.grad((dx * v).sum() + db.sum(), [dy])  # Grad of grad: linear in dy.
        return [t.detach() for t in (y, dx, db, ddy)], y.grad_fn
    del gen
    fast, fast_fn = run()
    plain, plain_fn = _plain_reference(monkeypatch, run)
    assert type(fast_fn).__name__.startswith('_FilteredLReLUCpu') and not type(plain_fn).__name__.startswith('_Filt')
    return fast, plain

@pytest.mark.parametrize('case', CASES)
def test_fast_cpu_path_equals_plain_reference_forward_grad_and_gradgrad_float64(monkeypatch, case):
    fast, plain = _fast_and_plain_grads(monkeypatch, case, torch.float64, seed=5)
    for name, u, v in zip(['y', 'dx', 'db', 'ddy'], fast, plain):
        assert u.shape == v.shape, name
        np.testing.assert_allclose(u.numpy(), v.numpy(), rtol=1e-9, atol=1e-9 * float(v.abs().max()), err_msg=name)

def test_negative_slope_takes_the_plain_path_on_cpu():
    x, b, fu, fd, kwargs = _case_args(CASES[1])
    y = fl.filtered_lrelu(torch.tensor(x, requires_grad=True), fu, fd, torch.tensor(b), **dict(kwargs, slope=-0.5))
    assert not type(y.grad_fn).__name__.startswith('_FilteredLReLUCpu')

@pytest.mark.parametrize('slope', [0.0, 0.2, 1.0])  # ReLU, StyleGAN's, linear (ToRGB).
def test_fast_cpu_path_equals_plain_reference_for_any_slope(monkeypatch, slope):
    for case in (CASES[1], CASES[4]):
        fast, plain = _fast_and_plain_grads(monkeypatch, case, torch.float64, seed=9, slope=slope)
        for name, u, v in zip(['y', 'dx', 'db', 'ddy'], fast, plain):
            np.testing.assert_allclose(u.numpy(), v.numpy(), rtol=1e-9, atol=1e-9 * float(v.abs().max()),
                                       err_msg=f'{name}, slope {slope}')

@pytest.mark.parametrize('case', [CASES[0], CASES[1], CASES[4], CASES[8]])
def test_fast_cpu_path_equals_plain_reference_in_float32(monkeypatch, case):
    fast, plain = _fast_and_plain_grads(monkeypatch, case, torch.float32, seed=7)
    for name, u, v in zip(['y', 'dx', 'db', 'ddy'], fast, plain):
        assert float((u - v).abs().max()) <= 2e-5 * float(v.abs().max()), name

def test_fast_cpu_path_gradcheck_and_gradgradcheck_float64():
    for case in (CASES[1], CASES[3]):
        x, b, fu, fd, kwargs = _small_grad_inputs(case)
        fn = lambda x, b: fl.filtered_lrelu(x, fu, fd, b, **kwargs)
        assert type(fn(x, b).grad_fn).__name__.startswith('_FilteredLReLUCpu')
        assert torch.autograd.gradcheck(fn, (x, b))
        assert torch.autograd.gradgradcheck(fn, (x, b))

def test_fast_cpu_path_keeps_the_memory_format_and_leaves_the_input_alone():
    x, b, fu, fd, kwargs = _case_args(CASES[0])
    xt = torch.tensor(x, dtype=torch.float32)
    before = xt.clone()
    y = fl.filtered_lrelu(xt, fu, fd, torch.tensor(b, dtype=torch.float32), **kwargs)
    assert y.is_contiguous() and torch.equal(xt, before)
    y_cl = fl.filtered_lrelu(xt.contiguous(memory_format=torch.channels_last), fu, fd,
                             torch.tensor(b, dtype=torch.float32), **kwargs)
    assert y_cl.is_contiguous(memory_format=torch.channels_last)
    assert float((y_cl - y).abs().max()) <= 1e-6 * float(y.abs().max())


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('case', CASES[:3])
def test_low_precision_on_cpu_runs_the_cpu_path_in_float32(case, dtype, monkeypatch):
    # gen_images.py --precision=bf16: one rounding of the float32 CPU path's result, never the reference in bf16.
    monkeypatch.setattr(fl, '_compose', lambda *args, **kwargs: pytest.fail('reference path taken'))
    x, b, fu, fd, kwargs = _case_args(case)
    x_low = torch.tensor(x, dtype=torch.float32).to(dtype).requires_grad_(True)
    b_low = torch.tensor(b, dtype=torch.float32).to(dtype).requires_grad_(True)
    y_low = fl.filtered_lrelu(x_low, fu, fd, b_low, **kwargs)
    x32, b32 = x_low.detach().float().requires_grad_(True), b_low.detach().float().requires_grad_(True)
    y32 = fl.filtered_lrelu(x32, fu, fd, b32, **kwargs)
    assert y_low.dtype == dtype and torch.equal(y_low, y32.to(dtype))
    weights = torch.randn(y32.shape, generator=torch.Generator().manual_seed(0))
    (y_low.float() * weights).sum().backward()
    (y32 * weights).sum().backward()
    assert x_low.grad.dtype == dtype and b_low.grad.dtype == dtype
    # The incoming gradient is rounded to the low dtype first, so the two agree to that dtype's precision.
    torch.testing.assert_close(x_low.grad.float(), x32.grad, rtol=2e-2, atol=1e-2 * float(x32.grad.abs().max()))
    torch.testing.assert_close(b_low.grad.float(), b32.grad, rtol=1e-2, atol=1e-2 * float(b32.grad.abs().max()))
