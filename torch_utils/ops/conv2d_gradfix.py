"""2-D convolutions whose gradients are convolutions of this module again, so that any order of gradient works and
weight gradients can be switched off.

Why: the R1 penalty (Mescheder et al. 2018, Eq. 9) and path length regularisation (StyleGAN2 Sec. 3.2) take the
gradient of D (resp. G) with respect to its *input* with create_graph=True. Torch's own conv backward would also
compute the weight gradient there, work that is thrown away. Inside `no_weight_gradients()` our backward skips it;
the regulariser's later backward still reaches the weights through the (differentiable) input gradient.

The three autograd Functions below form a closed family: with the same stride/padding/dilation/groups,
    conv2d(x, w)            backward: dx = conv_transpose2d(dy, w),      dw = weight_grad(x, dy)
    conv_transpose2d(x, w)  backward: dx = conv2d(dy, w),                dw = weight_grad(dy, x)
    weight_grad(x, dy)      backward: dx = conv_transpose2d(dy, ddw),    ddy = conv2d(x, ddw)
Only public torch APIs are used (F.conv2d, F.conv_transpose2d, torch.nn.grad.conv2d_weight). Where no gradient is
recorded, wide float32 3x3 convolutions on a CPU run by Winograd's F(4x4, 3x3) instead (winograd.py: 1.2-2.5x
faster, equal to float tolerance).
"""

import contextlib

import torch
import torch.nn.functional as F

from . import winograd
from .winograd import as_pair

#----------------------------------------------------------------------------

enabled = True                      # False: plain torch.nn.functional convs (no_weight_gradients has no effect).
weight_gradients_disabled = False   # Read at backward time; set through no_weight_gradients().

@contextlib.contextmanager
def no_weight_gradients(disable=True):
    """Within this context, backward passes through our convs compute no weight gradients (weights get None)."""
    global weight_gradients_disabled
    previous = weight_gradients_disabled
    if disable:
        weight_gradients_disabled = True
    try:
        yield
    finally:
        weight_gradients_disabled = previous

#----------------------------------------------------------------------------

def _plain(*tensors):
    """True when the plain functional conv will do: no gradient can be asked for (inference, e.g. under
    torch.no_grad), or a trace is being recorded (a traced graph cannot hold our autograd Functions)."""
    if torch.jit.is_tracing() or not torch.is_grad_enabled():
        return True
    return not any(t is not None and t.requires_grad for t in tensors)

def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Same as torch.nn.functional.conv2d (input [N, C, H, W], weight [O, C/groups, kh, kw]), see module doc."""
    if enabled and bias is None and winograd.use_winograd(input, weight, stride, padding, dilation, groups):
        return winograd.conv3x3(input, weight, as_pair(padding)[0])  # Inference on a CPU: see winograd.py.
    if not enabled or isinstance(padding, str) or _plain(input, weight, bias):
        return F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    params = _ConvParams(stride, padding, dilation, groups)
    return _Conv2d.apply(input, weight, bias, params)

def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Same as torch.nn.functional.conv_transpose2d (weight [C, O/groups, kh, kw]), see module doc."""
    if not enabled or _plain(input, weight, bias):
        return F.conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation)
    params = _ConvParams(stride, padding, dilation, groups)
    return _ConvTranspose2d.apply(input, weight, bias, params, as_pair(output_padding))

#----------------------------------------------------------------------------

class _ConvParams:
    """stride, padding, dilation as pairs, and groups: what the forward conv and all its gradients share."""
    def __init__(self, stride, padding, dilation, groups):
        self.stride, self.padding, self.dilation = as_pair(stride), as_pair(padding), as_pair(dilation)
        self.groups = int(groups)

    def transpose_output_padding(self, conv_out_shape, conv_in_shape, kernel_shape):
        """output_padding that makes conv_transpose2d of a conv2d output recover the conv2d input's size."""
        return tuple(conv_in_shape[i + 2] - ((conv_out_shape[i + 2] - 1) * self.stride[i] - 2 * self.padding[i]
                                             + self.dilation[i] * (kernel_shape[i + 2] - 1) + 1) for i in range(2))

def _bias_grad(dy, bias, needed):
    return dy.sum([0, 2, 3]) if bias is not None and needed else None

class _Conv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, p):
        ctx.p = p
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return F.conv2d(x, w, b, p.stride, p.padding, p.dilation, p.groups)

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        p = ctx.p
        dx = dw = None
        if ctx.needs_input_grad[0]:
            output_padding = p.transpose_output_padding(dy.shape, x.shape, w.shape)
            dx = _ConvTranspose2d.apply(dy, w, None, p, output_padding)
        if ctx.needs_input_grad[1] and not weight_gradients_disabled:
            dw = _Conv2dWeightGrad.apply(x, dy, w.shape, p)
        db = _bias_grad(dy, ctx.has_bias, ctx.needs_input_grad[2])
        return dx, dw, db, None

class _ConvTranspose2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, p, output_padding):
        ctx.p = p
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return F.conv_transpose2d(x, w, b, p.stride, p.padding, output_padding, p.groups, p.dilation)

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        p = ctx.p
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = _Conv2d.apply(dy, w, None, p)
        if ctx.needs_input_grad[1] and not weight_gradients_disabled:
            dw = _Conv2dWeightGrad.apply(dy, x, w.shape, p)  # conv_transpose2d(x, w) is the adjoint of conv2d(., w).
        db = _bias_grad(dy, ctx.has_bias, ctx.needs_input_grad[2])
        return dx, dw, db, None, None

class _Conv2dWeightGrad(torch.autograd.Function):
    """dw = gradient of <conv2d(x, w), dy> with respect to w (bilinear in x and dy)."""
    @staticmethod
    def forward(ctx, x, dy, weight_shape, p):
        ctx.p = p
        ctx.save_for_backward(x, dy)
        return torch.nn.grad.conv2d_weight(x, weight_shape, dy, p.stride, p.padding, p.dilation, p.groups)

    @staticmethod
    def backward(ctx, ddw):
        x, dy = ctx.saved_tensors
        p = ctx.p
        d_x = d_dy = None
        if ctx.needs_input_grad[0]:
            output_padding = p.transpose_output_padding(dy.shape, x.shape, ddw.shape)
            d_x = _ConvTranspose2d.apply(dy, ddw, None, p, output_padding)
        if ctx.needs_input_grad[1]:
            d_dy = _Conv2d.apply(x, ddw, None, p)
        return d_x, d_dy, None, None

#----------------------------------------------------------------------------
