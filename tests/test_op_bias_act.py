"""bias_act: reference path against an independent numpy computation; gradients; dtypes; argument errors."""

import math

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
