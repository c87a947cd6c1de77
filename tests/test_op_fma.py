"""fma(a, b, c) = a * b + c: values, broadcast gradients reduced to input shapes, double backward."""

import numpy as np
import pytest
import torch

from torch_utils.ops.fma import fma

#----------------------------------------------------------------------------

SHAPE_CASES = [
    ([2, 3, 4], [2, 3, 4], [2, 3, 4]),      # No broadcasting.
    ([2, 1, 4], [3, 1], [4]),               # Every operand broadcast differently.
    ([5, 1, 1], [1, 4, 3], [1]),            # Outer-product-like.
    ([], [2, 3], [2, 1]),                   # A 0-d scalar.
]

@pytest.mark.parametrize('a_shape, b_shape, c_shape', SHAPE_CASES)
def test_fma_matches_numpy_with_broadcasting(a_shape, b_shape, c_shape):
    rng = np.random.default_rng(0)
    a, b, c = (rng.normal(size=s) for s in (a_shape, b_shape, c_shape))
    out = fma(*(torch.from_numpy(np.asarray(t)) for t in (a, b, c)))
    np.testing.assert_allclose(out.numpy(), a * b + c, rtol=1e-14)

@pytest.mark.parametrize('a_shape, b_shape, c_shape', SHAPE_CASES)
def test_fma_gradients_have_input_shapes_and_match_numpy(a_shape, b_shape, c_shape):
    rng = np.random.default_rng(1)
    a, b, c = (torch.from_numpy(np.asarray(rng.normal(size=s))).requires_grad_(True)
               for s in (a_shape, b_shape, c_shape))
    out = fma(a, b, c)
    dout = torch.from_numpy(rng.normal(size=out.shape))
    out.backward(dout)
    # Independent computation: broadcast explicitly, multiply, and sum over the broadcast axes with numpy.
    full = np.broadcast_shapes(a.shape, b.shape, c.shape)
    def reduce_to(grad, shape):
        axes = tuple(range(len(full) - len(shape)))
        grad = grad.sum(axis=axes)
        keep = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
        return grad.sum(axis=keep, keepdims=True).reshape(shape)
    an, bn, dn = np.broadcast_to(a.detach().numpy(), full), np.broadcast_to(b.detach().numpy(), full), dout.numpy()
    np.testing.assert_allclose(a.grad.numpy(), reduce_to(dn * bn, a.shape), rtol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), reduce_to(dn * an, b.shape), rtol=1e-12)
    np.testing.assert_allclose(c.grad.numpy(), reduce_to(dn, c.shape), rtol=1e-12)

@pytest.mark.parametrize('a_shape, b_shape, c_shape', SHAPE_CASES)
def test_fma_gradcheck_and_gradgradcheck_float64(a_shape, b_shape, c_shape):
    torch.manual_seed(0)
    inputs = [torch.randn(s, dtype=torch.float64, requires_grad=True) for s in (a_shape, b_shape, c_shape)]
    assert torch.autograd.gradcheck(fma, inputs)
    assert torch.autograd.gradgradcheck(fma, inputs)

def test_fma_only_some_inputs_require_grad():
    a = torch.randn([2, 3], requires_grad=True)
    b, c = torch.randn([3]), torch.randn([2, 1])
    fma(a, b, c).sum().backward()
    torch.testing.assert_close(a.grad, b.expand(2, 3))

#----------------------------------------------------------------------------
