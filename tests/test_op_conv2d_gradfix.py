"""conv2d_gradfix: same values and gradients (any order) as torch.nn.functional; no_weight_gradients skips dw."""

import pytest
import torch
import torch.nn.functional as F

from torch_utils.ops import conv2d_gradfix as cg

#----------------------------------------------------------------------------
# (input shape, weight shape, kwargs) with odd sizes, strides, padding, dilation and groups.

CONV_CASES = [
    ([2, 3, 7, 6], [4, 3, 3, 3], dict(stride=1, padding=1)),
    ([1, 4, 9, 8], [6, 2, 3, 2], dict(stride=2, padding=(1, 0), groups=2)),
    ([2, 2, 8, 7], [3, 2, 1, 1], dict()),
    ([1, 3, 9, 9], [2, 3, 3, 3], dict(stride=(2, 3), padding=2, dilation=2)),
]
TRANSPOSE_CASES = [
    ([2, 3, 4, 5], [3, 4, 3, 3], dict(stride=2, padding=1, output_padding=1)),
    ([1, 4, 3, 4], [4, 3, 4, 4], dict(stride=2, padding=1, groups=2)),
    ([1, 2, 5, 3], [2, 3, 3, 2], dict(stride=(1, 2), padding=(0, 1), dilation=2)),
]

def _make(shape_x, shape_w, seed=0, bias_channels=None):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape_x, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(shape_w, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn([bias_channels], generator=gen, dtype=torch.float64, requires_grad=True)
    return x, w, b

def _grads_up_to_second_order(fn, x, w, b):
    """y, first gradients, and the gradients of a scalar function of the first gradients (double backward)."""
    y = fn(x, w, b)
    dy = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)
    first = torch.autograd.grad(y, [x, w, b], dy, create_graph=True)
    second = torch.autograd.grad(sum((g.sin()).sum() for g in first), [x, w, b], allow_unused=True)
    return [y] + list(first) + list(second)

def _compare_with_torch(ours, theirs, x, w, b):
    for got, expected in zip(_grads_up_to_second_order(ours, x, w, b), _grads_up_to_second_order(theirs, x, w, b)):
        if expected is None:
            assert got is None or torch.count_nonzero(got) == 0
        else:
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)

#----------------------------------------------------------------------------

@pytest.mark.parametrize('shape_x, shape_w, kwargs', CONV_CASES)
def test_conv2d_equals_torch_including_double_backward(shape_x, shape_w, kwargs):
    x, w, b = _make(shape_x, shape_w, bias_channels=shape_w[0])
    _compare_with_torch(lambda x, w, b: cg.conv2d(x, w, b, **kwargs), lambda x, w, b: F.conv2d(x, w, b, **kwargs),
                        x, w, b)

@pytest.mark.parametrize('shape_x, shape_w, kwargs', TRANSPOSE_CASES)
def test_conv_transpose2d_equals_torch_including_double_backward(shape_x, shape_w, kwargs):
    x, w, b = _make(shape_x, shape_w, bias_channels=shape_w[1] * kwargs.get('groups', 1))
    _compare_with_torch(lambda x, w, b: cg.conv_transpose2d(x, w, b, **kwargs),
                        lambda x, w, b: F.conv_transpose2d(x, w, b, **kwargs), x, w, b)

@pytest.mark.parametrize('op', ['conv2d', 'conv_transpose2d'])
def test_gradcheck_and_gradgradcheck_float64(op):
    if op == 'conv2d':
        x, w, b = _make([1, 2, 5, 4], [3, 2, 3, 3], bias_channels=3)
        fn = lambda x, w, b: cg.conv2d(x, w, b, stride=2, padding=1)
    else:
        x, w, b = _make([1, 2, 3, 4], [2, 3, 3, 3], bias_channels=3)
        fn = lambda x, w, b: cg.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1)
    assert torch.autograd.gradcheck(fn, (x, w, b))
    assert torch.autograd.gradgradcheck(fn, (x, w, b))

def test_weight_grad_function_gradgradcheck():
    # The third Function of the family (module doc), checked on its own.
    x = torch.randn([1, 2, 5, 5], dtype=torch.float64, requires_grad=True)
    dy = torch.randn([1, 3, 3, 3], dtype=torch.float64, requires_grad=True)
    params = cg._ConvParams(stride=1, padding=0, dilation=1, groups=1)
    fn = lambda x, dy: cg._Conv2dWeightGrad.apply(x, dy, (3, 2, 3, 3), params)
    assert torch.autograd.gradcheck(fn, (x, dy))
    assert torch.autograd.gradgradcheck(fn, (x, dy))

#----------------------------------------------------------------------------

@pytest.mark.parametrize('op', ['conv2d', 'conv_transpose2d'])
def test_no_weight_gradients_leaves_weight_grad_none_but_input_grad_correct(op):
    x, w, b = _make([2, 3, 6, 6], [3, 3, 3, 3], bias_channels=3)
    fn = getattr(cg, op)
    with cg.no_weight_gradients():
        fn(x, w, b, padding=1).square().sum().backward()
    assert w.grad is None
    expected_dx, = torch.autograd.grad(getattr(F, op)(x, w, b, padding=1).square().sum(), [x])
    torch.testing.assert_close(x.grad, expected_dx)
    assert b.grad is not None

def test_r1_penalty_still_reaches_weights_through_the_input_gradient():
    # The R1 pattern: input gradient with create_graph inside no_weight_gradients, penalty backward outside.
    x, w, b = _make([2, 3, 6, 6], [4, 3, 3, 3], bias_channels=4)
    results = []
    for use_gradfix in [True, False]:
        w.grad = None
        conv = cg.conv2d if use_gradfix else F.conv2d
        with cg.no_weight_gradients(disable=use_gradfix):
            (dx,) = torch.autograd.grad(conv(x, w, b, padding=1).tanh().sum(), [x], create_graph=True)
        dx.square().sum().backward()
        results.append(w.grad.clone())
    torch.testing.assert_close(results[0], results[1])

def test_no_weight_gradients_restores_the_flag_and_nests():
    assert not cg.weight_gradients_disabled
    with cg.no_weight_gradients():
        with cg.no_weight_gradients(disable=False):
            assert cg.weight_gradients_disabled  # disable=False does not re-enable an outer context.
        assert cg.weight_gradients_disabled
    assert not cg.weight_gradients_disabled

def test_weight_gradients_are_computed_outside_the_context():
    x, w, b = _make([1, 2, 5, 5], [2, 2, 3, 3], bias_channels=2)
    cg.conv2d(x, w, b).sum().backward()
    expected_dw, = torch.autograd.grad(F.conv2d(x, w, b).sum(), [w])
    torch.testing.assert_close(w.grad, expected_dw)

#----------------------------------------------------------------------------
