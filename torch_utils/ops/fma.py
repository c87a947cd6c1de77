"""Fused multiply-add out = a * b + c with broadcasting, as one torch.addcmul.

Used by modulated convolution (StyleGAN2 Eq. 1-3 with fused_modconv=False: x * styles, then + noise/bias). The
custom autograd keeps only a and b for the backward (not the product) and sums each gradient back to its input's
shape; the backward is written in differentiable ops, so grad-of-grad works.
"""

import torch

#----------------------------------------------------------------------------

def fma(a, b, c):
    """Return a * b + c (shapes broadcast against each other like torch's `*` and `+`).

    Args:
        a, b, c: Tensors of broadcast-compatible shapes and the same dtype/device.
    Returns:
        Tensor of the broadcast shape.
    """
    if torch.jit.is_tracing() or not torch.is_grad_enabled():  # Nothing to save for a backward; traceable.
        return torch.addcmul(c, a, b)
    return _FusedMultiplyAdd.apply(a, b, c)

#----------------------------------------------------------------------------

def _sum_to_shape(grad, shape):
    """Sum a broadcast gradient back to `shape` (the inverse of broadcasting; differentiable)."""
    shape = torch.Size(shape)
    extra_dims = grad.ndim - len(shape)
    if extra_dims > 0:
        grad = grad.sum(list(range(extra_dims)))
    broadcast_dims = [i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1]
    if broadcast_dims:
        grad = grad.sum(broadcast_dims, keepdim=True)
    assert grad.shape == shape
    return grad

class _FusedMultiplyAdd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, c):
        ctx.save_for_backward(a, b)
        ctx.c_shape = c.shape
        return torch.addcmul(c, a, b)

    @staticmethod
    def backward(ctx, dout):
        a, b = ctx.saved_tensors
        da = db = dc = None
        if ctx.needs_input_grad[0]:
            da = _sum_to_shape(dout * b, a.shape)
        if ctx.needs_input_grad[1]:
            db = _sum_to_shape(dout * a, b.shape)
        if ctx.needs_input_grad[2]:
            dc = _sum_to_shape(dout, ctx.c_shape)
        return da, db, dc

#----------------------------------------------------------------------------
