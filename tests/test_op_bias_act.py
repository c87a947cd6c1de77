"""bias_act: reference path against an independent numpy computation; gradients; dtypes; argument errors."""

import math
import os

import numpy as np
import pytest
import torch

from torch_utils.ops import bias_act as ba

#----------------------------------------------------------------------------
# Independent numpy formulas (written from the textbook definitions, not from the torch ops).

SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805

def _np_act(x, act, alpha):
    if act == 'linear':
        return x
    if act == 'relu':
        return np.maximum(x, 0)
    if act == 'lrelu':
        return np.where(x >= 0, x, x * alpha)
    if act == 'tanh':
        return np.tanh(x)
    if act == 'sigmoid':
        return 1 / (1 + np.exp(-x))
    if act == 'elu':
        return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))
    if act == 'selu':
        return SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0)))
    if act == 'softplus':
        return np.logaddexp(0, x)
    if act == 'swish':
        return x / (1 + np.exp(-x))
    raise AssertionError(act)

def _np_bias_act(x, b, dim, act, alpha, gain, clamp):
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + b.reshape(shape)
    y = _np_act(x, act, alpha) * gain
    if clamp is not None and clamp >= 0:
        y = np.clip(y, -clamp, clamp)
    return y

ALL_ACTS = sorted(ba.activation_funcs)

#----------------------------------------------------------------------------

def test_activation_defaults_match_design():
    sqrt2 = math.sqrt(2)
    expected_gain = dict(linear=1, relu=sqrt2, lrelu=sqrt2, tanh=1, sigmoid=1, elu=1, selu=1, softplus=1, swish=sqrt2)
    assert {name: spec.def_gain for name, spec in ba.activation_funcs.items()} == pytest.approx(expected_gain)
    assert ba.activation_funcs['lrelu'].def_alpha == pytest.approx(0.2)
    assert ba.activation_funcs['lrelu']['def_alpha'] == ba.activation_funcs['lrelu'].def_alpha  # EasyDict-style.
    assert len({spec.cuda_idx for spec in ba.activation_funcs.values()}) == len(ba.activation_funcs)

@pytest.mark.parametrize('act', ALL_ACTS)
@pytest.mark.parametrize('alpha, gain, clamp', [(None, None, None), (0.1, 0.5, 0.8), (0.3, 3.0, 2.5), (None, 1.0, 0)])
def test_bias_act_matches_numpy_for_every_activation(act, alpha, gain, clamp):
    rng = np.random.default_rng(0)
    x = rng.normal(size=[3, 5, 4, 3]) * 3
    b = rng.normal(size=[5])
    y = ba.bias_act(torch.from_numpy(x), torch.from_numpy(b), act=act, alpha=alpha, gain=gain, clamp=clamp)
    spec = ba.activation_funcs[act]
    expected = _np_bias_act(x, b, 1, act, spec.def_alpha if alpha is None else alpha,
                            spec.def_gain if gain is None else gain, clamp)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12, atol=1e-12)

@pytest.mark.parametrize('dim', [0, 2, 3, -1])
def test_bias_act_adds_bias_along_the_given_dim(dim):
    rng = np.random.default_rng(1)
    x = rng.normal(size=[2, 3, 4, 5])
    b = rng.normal(size=[x.shape[dim]])
    y = ba.bias_act(torch.from_numpy(x), torch.from_numpy(b), dim=dim, act='lrelu', clamp=1.5)
    expected = _np_bias_act(x, b, dim % 4, 'lrelu', 0.2, math.sqrt(2), 1.5)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12, atol=1e-12)

def test_bias_act_without_bias_is_activation_times_gain():
    x = torch.linspace(-3, 3, 13, dtype=torch.float64).reshape(1, 13)
    y = ba.bias_act(x, act='relu', gain=2.0)
    np.testing.assert_allclose(y.numpy(), np.maximum(x.numpy(), 0) * 2)

def test_negative_clamp_means_no_clamping():
    x = torch.tensor([[-100.0, 100.0]], dtype=torch.float64)
    assert ba.bias_act(x, clamp=-1).tolist() == [[-100.0, 100.0]]
    assert ba.bias_act(x, clamp=5).tolist() == [[-5.0, 5.0]]

def test_impl_ref_on_cpu_equals_default_impl():
    x = torch.randn([2, 4, 3, 3])
    b = torch.randn([4])
    assert torch.equal(ba.bias_act(x, b, act='swish', impl='ref'), ba.bias_act(x, b, act='swish'))

#----------------------------------------------------------------------------

@pytest.mark.parametrize('act', ALL_ACTS)
def test_bias_act_gradcheck_and_gradgradcheck_float64(act):
    torch.manual_seed(0)
    # Keep inputs away from the kinks at 0 and from the clamp boundary, where finite differences are meaningless.
    x = torch.randn([2, 3, 4], dtype=torch.float64)
    x = (x + 0.1 * x.sign()).requires_grad_(True)
    b = torch.tensor([0.05, -0.05, 0.0], dtype=torch.float64, requires_grad=True)
    fn = lambda x, b: ba.bias_act(x, b, act=act, alpha=0.3, gain=1.3, clamp=10.0)
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))

def test_clamped_outputs_get_zero_gradient():
    x = torch.tensor([[-3.0, -0.5, 0.5, 3.0]], dtype=torch.float64, requires_grad=True)
    ba.bias_act(x, act='linear', clamp=1.0).sum().backward()
    assert x.grad.tolist() == [[0.0, 1.0, 1.0, 0.0]]

#----------------------------------------------------------------------------

@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('act', ALL_ACTS)
def test_low_precision_forward_is_close_to_float32(dtype, act):
    torch.manual_seed(0)
    x = torch.randn([2, 8, 5, 5]) * 2
    b = torch.randn([8])
    y32 = ba.bias_act(x, b, act=act, clamp=4)
    y_low = ba.bias_act(x.to(dtype), b.to(dtype), act=act, clamp=4)
    assert y_low.dtype == dtype
    tol = 2e-2 if dtype == torch.float16 else 1e-1  # Rounding of x, b (8 resp. 11 bits) and of the result.
    torch.testing.assert_close(y_low.float(), y32, rtol=tol, atol=tol)

def test_float32_bias_is_cast_to_float16_input_dtype():
    y = ba.bias_act(torch.randn([2, 3], dtype=torch.float16), torch.randn([3]), act='lrelu')
    assert y.dtype == torch.float16

def test_channels_last_layout_gives_same_values():
    x = torch.randn([2, 3, 4, 5])
    b = torch.randn([3])
    y = ba.bias_act(x.to(memory_format=torch.channels_last), b, act='lrelu')
    torch.testing.assert_close(y, ba.bias_act(x, b, act='lrelu'))

#----------------------------------------------------------------------------

def test_unknown_activation_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown act='gelu'"):
        ba.bias_act(torch.zeros([1, 2]), act='gelu')

@pytest.mark.parametrize('bias_shape', [[3], [2, 2], []])
def test_wrong_bias_shape_is_a_clear_error(bias_shape):
    with pytest.raises(ValueError, match=r'bias must have shape \[2\]'):
        ba.bias_act(torch.zeros([1, 2, 3]), torch.zeros(bias_shape))

def test_out_of_range_dim_is_a_clear_error():
    with pytest.raises(ValueError, match='dim=4'):
        ba.bias_act(torch.zeros([1, 2, 3]), dim=4)

def test_unknown_impl_is_a_clear_error():
    with pytest.raises(ValueError, match='impl'):
        ba.bias_act(torch.zeros([1, 2]), impl='triton')

#----------------------------------------------------------------------------
# The CUDA path's autograd wiring (_BiasActCuda / _BiasActCudaGrad and the kernel's three modes), run on CPU with a
# stand-in for the plugin that evaluates the kernel's closed-form derivatives with torch ops. The kernel itself is
# compared with the reference by ba._parity_check() and bench/bench_ops.py on a GPU.

def _closed_form(v, act, alpha, order):
    """act(v), act'(v) or act''(v) as written in bias_act.cu."""
    s = torch.sigmoid(v)
    pos = v > 0
    one, zero = torch.ones_like(v), torch.zeros_like(v)
    selu = SELU_SCALE * SELU_ALPHA * torch.exp(v)
    table = {
        'linear':   [v, one, zero],
        'relu':     [torch.where(pos, v, zero), torch.where(pos, one, zero), zero],
        'lrelu':    [torch.where(pos, v, v * alpha), torch.where(pos, one, one * alpha), zero],
        'tanh':     [torch.tanh(v), 1 - torch.tanh(v) ** 2, -2 * torch.tanh(v) * (1 - torch.tanh(v) ** 2)],
        'sigmoid':  [s, s * (1 - s), s * (1 - s) * (1 - 2 * s)],
        'elu':      [torch.where(pos, v, torch.expm1(v)), torch.where(pos, one, torch.exp(v)),
                     torch.where(pos, zero, torch.exp(v))],
        'selu':     [torch.where(pos, SELU_SCALE * v, SELU_SCALE * SELU_ALPHA * torch.expm1(v)),
                     torch.where(pos, SELU_SCALE * one, selu), torch.where(pos, zero, selu)],
        'softplus': [torch.where(v > 20, v, torch.log1p(torch.exp(v))), torch.where(v > 20, one, s),
                     torch.where(v > 20, zero, s * (1 - s))],
        'swish':    [v * s, s * (1 + v * (1 - s)), s * (1 - s) * (2 + v * (1 - 2 * s))],
    }
    return table[act][order]

class _EmulatedPlugin:
    """Same call signature and modes as bias_act_plugin.bias_act (bias_act.cpp), in torch ops."""
    @staticmethod
    def bias_act(g, b, xref, mode, dim, act_idx, alpha, gain, clamp):
        assert ba._is_dense(g) and (xref.numel() == 0 or xref.stride() == g.stride())
        act = next(name for name, spec in ba.activation_funcs.items() if spec.cuda_idx == act_idx)
        v = g if mode == 0 else xref
        if b.numel() > 0:
            v = v + b.reshape([-1 if i == dim else 1 for i in range(v.ndim)])
        y = _closed_form(v, act, alpha, 0) * gain
        if mode == 0:
            return y.clamp(-clamp, clamp) if clamp >= 0 else y
        passes = (y.abs() <= clamp) if clamp >= 0 else torch.ones_like(y, dtype=torch.bool)
        return torch.where(passes, g * _closed_form(v, act, alpha, mode) * gain, torch.zeros_like(g)).detach()

@pytest.fixture
def emulated_plugin(monkeypatch):
    monkeypatch.setattr(ba.custom_ops, 'try_get_plugin', lambda name: _EmulatedPlugin)

@pytest.mark.parametrize('act', ALL_ACTS)
def test_cuda_path_autograd_gradcheck_and_gradgradcheck_with_emulated_kernel(emulated_plugin, act):
    torch.manual_seed(0)
    x = torch.randn([2, 3, 4], dtype=torch.float64)
    x = (x + 0.1 * x.sign()).requires_grad_(True)
    b = torch.tensor([0.05, -0.05, 0.0], dtype=torch.float64, requires_grad=True)
    fn = lambda x, b: ba._BiasActCuda.apply(x, b, 1, act, 0.3, 1.3, 10.0)
    torch.testing.assert_close(fn(x, b), ba._bias_act_ref(x, b, 1, act, 0.3, 1.3, 10.0))
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))

@pytest.mark.parametrize('act', ['lrelu', 'swish'])
def test_cuda_path_double_backward_equals_reference_with_clamp_and_channels_last(emulated_plugin, act):
    torch.manual_seed(1)
    x0 = (torch.randn([2, 4, 3, 5], dtype=torch.float64) * 2).to(memory_format=torch.channels_last)
    b0 = torch.randn([4], dtype=torch.float64)
    results = []
    for fn in [ba._BiasActCuda.apply, ba._bias_act_ref]:
        x, b = x0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
        y = fn(x, b, 1, act, 0.2, 1.4, 1.5)
        dx, db = torch.autograd.grad(y.sin().sum(), [x, b], create_graph=True)
        second = torch.autograd.grad((dx.square().sum() + db.square().sum()), [x, b], allow_unused=True)
        results.append([y, dx, db] + [torch.zeros_like(x0) if g is None else g for g in second])
    for ours, ref in zip(*results):
        torch.testing.assert_close(ours, ref)

def test_cuda_path_non_dense_input_keeps_second_order_gradient(emulated_plugin, monkeypatch):
    # A strided view is made dense before the autograd Function, so the gradient of the gradient still reaches x.
    monkeypatch.setattr(ba.custom_ops, 'use_fast_path', lambda impl, x: True)
    monkeypatch.setattr(ba.custom_ops, 'parity_ok', lambda *args: True)
    base = torch.randn([2, 6, 5], dtype=torch.float64, requires_grad=True)
    results = []
    for impl in ['cuda', 'ref']:
        (dx,) = torch.autograd.grad(ba.bias_act(base[:, ::2], act='tanh', impl=impl).sum(), [base], create_graph=True)
        results.append(torch.autograd.grad(dx.square().sum(), [base])[0])
    assert results[0].abs().max() > 0
    torch.testing.assert_close(results[0], results[1])

def test_parity_check_passes_for_a_correct_kernel(emulated_plugin):
    ok, details = ba._parity_check(device='cpu')
    assert ok, details

def test_parity_check_reports_a_wrong_kernel(monkeypatch):
    class _Broken(_EmulatedPlugin):
        @staticmethod
        def bias_act(g, *args):
            return _EmulatedPlugin.bias_act(g, *args) * 1.01
    monkeypatch.setattr(ba.custom_ops, 'try_get_plugin', lambda name: _Broken)
    ok, details = ba._parity_check(device='cpu')
    assert not ok and 'max abs error' in details

def test_cpu_tensors_never_touch_the_plugin(monkeypatch):
    def fail(name):
        raise AssertionError('plugin requested for a CPU tensor')
    monkeypatch.setattr(ba.custom_ops, 'try_get_plugin', fail)
    ba.bias_act(torch.randn([2, 3]), torch.randn([3]), act='lrelu', impl='cuda')

#----------------------------------------------------------------------------
# The real kernel code without a GPU: the plugin runs its per-element code serially on the host for CPU tensors
# (bias_act.cpp), so the compiled arithmetic, indexing and modes are checked against the reference here. Needs nvcc
# and a CUDA build of torch; a fresh build takes ~3 minutes on 2 cores (shared with tests/test_plugin_build.py).

@pytest.fixture(scope='module')
def compiled_plugin():
    from torch_utils import custom_ops
    with pytest.MonkeyPatch.context() as env:
        if not os.environ.get('CUDA_HOME') and os.path.isfile('/usr/local/cuda/bin/nvcc'):
            env.setenv('CUDA_HOME', '/usr/local/cuda')
        if not os.environ.get('TORCH_CUDA_ARCH_LIST') and not torch.cuda.is_available():
            env.setenv('TORCH_CUDA_ARCH_LIST', '9.0')
        problem = custom_ops.toolchain_problem(needs_cuda=True)
        if problem is not None:
            pytest.skip(f'cannot build bias_act_plugin here: {problem}')
        spec = custom_ops._specs[ba.PLUGIN_NAME]
        return custom_ops.get_plugin(ba.PLUGIN_NAME, spec['sources'], spec['headers'], spec['source_dir'],
                                     **spec['build_kwargs'])

@pytest.mark.slow
@pytest.mark.parametrize('act', ALL_ACTS)
def test_compiled_kernel_on_host_gradgradcheck_against_reference(compiled_plugin, act, monkeypatch):
    monkeypatch.setattr(ba.custom_ops, 'try_get_plugin', lambda name: compiled_plugin)
    torch.manual_seed(0)
    x = torch.randn([2, 3, 4], dtype=torch.float64)
    x = (x + 0.1 * x.sign()).requires_grad_(True)
    b = torch.tensor([0.05, -0.05, 0.0], dtype=torch.float64, requires_grad=True)
    fn = lambda x, b: ba._BiasActCuda.apply(x, b, 1, act, 0.3, 1.3, 10.0)
    torch.testing.assert_close(fn(x, b), ba._bias_act_ref(x, b, 1, act, 0.3, 1.3, 10.0), rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))

@pytest.mark.slow
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize('act', ['lrelu', 'tanh', 'softplus'])
def test_compiled_kernel_on_host_matches_reference_in_low_precision(compiled_plugin, dtype, act, monkeypatch):
    monkeypatch.setattr(ba.custom_ops, 'try_get_plugin', lambda name: compiled_plugin)
    torch.manual_seed(1)
    x0 = (torch.randn([2, 5, 3, 7]) * 3).to(dtype).to(memory_format=torch.channels_last)
    b0 = torch.randn([5]).to(dtype)
    results = []
    for fn in [ba._BiasActCuda.apply, ba._bias_act_ref]:
        x, b = x0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
        y = fn(x, b, 1, act, 0.2, 1.4, -1.0)  # No clamp: rounding would move values across its boundary.
        results.append([y] + list(torch.autograd.grad((y.float() ** 2).sum(), [x, b])))
    tol = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float16: dict(rtol=2e-2, atol=5e-2),
           torch.bfloat16: dict(rtol=5e-2, atol=1e-1)}[dtype]
    for ours, ref in zip(*results):
        assert ours.dtype == dtype and ours.stride() == ref.stride()
        torch.testing.assert_close(ours.float(), ref.float(), **tol)

@pytest.mark.slow
def test_compiled_kernel_on_host_clamps_values_and_gradients(compiled_plugin, monkeypatch):
    monkeypatch.setattr(ba.custom_ops, 'try_get_plugin', lambda name: compiled_plugin)
    x = torch.tensor([[-3.0, -0.5, 0.25, 0.5, 3.0]], dtype=torch.float64, requires_grad=True)
    y = ba._BiasActCuda.apply(x, None, 1, 'lrelu', 0.2, 2.0, 0.8)
    assert y.tolist() == [[-0.8, -0.2, 0.5, 0.8, 0.8]]
    (dx,) = torch.autograd.grad(y.sum(), [x])
    assert dx.tolist() == [[0.0, 0.4, 2.0, 0.0, 0.0]]  # 0.5 * 2 = 1.0 > 0.8 is clamped too.

@pytest.mark.slow
def test_parity_check_passes_with_compiled_kernel_on_host(compiled_plugin, monkeypatch):
    monkeypatch.setattr(ba.custom_ops, 'try_get_plugin', lambda name: compiled_plugin)
    ok, details = ba._parity_check(device='cpu')
    assert ok, details

#----------------------------------------------------------------------------


@pytest.mark.parametrize('act', sorted(ba.activation_funcs))
@pytest.mark.parametrize('with_bias,gain,clamp', [(True, None, None), (True, 3.0, 0.5), (False, None, None),
                                                  (False, 1.0, None), (False, 2.0, 0.7), (True, 1.0, 0.3)])
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_no_grad_path_equals_reference_bitwise_and_leaves_input_alone(act, with_bias, gain, clamp, dtype):
    # Without autograd the later steps write in place into the first step's result: same ops, same bits.
    generator = torch.Generator().manual_seed(0)
    x = torch.randn([3, 5, 4, 7], generator=generator).to(dtype).contiguous(memory_format=torch.channels_last)
    b = torch.randn([5], generator=generator) if with_bias else None
    x_before = x.clone()
    with torch.no_grad():
        fast = ba.bias_act(x, b, act=act, gain=gain, clamp=clamp)
    reference = ba._bias_act_ref(x, b, 1, act, *ba._check_args(x, b, 1, act, None, gain, clamp)[2:])
    assert torch.equal(x, x_before)
    assert fast.dtype == dtype and fast.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(fast, reference)


def test_no_grad_path_is_taken_only_without_a_graph(monkeypatch):
    calls = []
    original = ba._bias_act_no_grad
    monkeypatch.setattr(ba, '_bias_act_no_grad', lambda *args: calls.append(1) or original(*args))
    x, b = torch.randn(2, 3, 4, 4), torch.randn(3)
    with torch.no_grad():
        ba.bias_act(x.requires_grad_(True), b, act='lrelu')
    assert len(calls) == 1
    y = ba.bias_act(x, b, act='lrelu', clamp=1.0)  # Records a graph: the reference, whose gradient works.
    y.sum().backward()
    clamped = torch.nn.functional.leaky_relu(x.detach() + b.reshape(1, 3, 1, 1), 0.2).abs() * math.sqrt(2) > 1.0
    assert len(calls) == 1 and clamped.any() and torch.equal(x.grad == 0, clamped)
    monkeypatch.setattr(ba, '_FAST_NO_GRAD_ENABLED', False)
    with torch.no_grad():
        ba.bias_act(x, b, act='lrelu')
    assert len(calls) == 1
