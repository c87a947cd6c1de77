"""Fused bias + activation + gain + clamp, the elementwise op after every conv and FC layer of StyleGAN2/3.

    y = clamp(act(x + b) * gain, -clamp, +clamp)

`_bias_act_ref` is the reference (plain PyTorch ops, any device and float dtype, differentiable to any order through
autograd). `_BiasActCuda` runs the same maths in one CUDA kernel (bias_act.cu) and must equal the reference; it is
used for CUDA tensors when the plugin builds and passes its parity check (see torch_utils/custom_ops.py).
"""

import dataclasses
import math
import os
from typing import Callable

import torch
import torch.nn.functional as F

from .. import custom_ops
from .. import misc

#----------------------------------------------------------------------------
# The activation table. `cuda_idx` selects the same function in bias_act.cu (keep the two in sync).
# The default gains keep activations at roughly unit second moment for unit-variance Gaussian input
# (He et al. 2015, "Delving deep into rectifiers": sqrt(2) for ReLU-like functions).

@dataclasses.dataclass(frozen=True)
class ActivationSpec:
    """One activation: reference function ref(x, alpha), defaults, and its index in the CUDA kernel."""
    func:           Callable    # ref(x, alpha) -> y, plain torch ops.
    def_alpha:      float       # Default alpha (only lrelu uses it: the negative slope).
    def_gain:       float       # Default gain applied after the activation.
    cuda_idx:       int         # Index of the same function in bias_act.cu.
    has_2nd_grad:   bool        # False for piecewise-linear functions (second derivative is zero).

    @property
    def ref(self):
        return self.func

    def __getitem__(self, key):  # Dict-style access too (spec['def_gain']), as with an EasyDict.
        if not isinstance(key, str) or not hasattr(self, key):
            raise KeyError(key)
        return getattr(self, key)

activation_funcs = {
    'linear':   ActivationSpec(lambda x, alpha: x,                           0,   1,            1, False),
    'relu':     ActivationSpec(lambda x, alpha: F.relu(x),                   0,   math.sqrt(2), 2, False),
    'lrelu':    ActivationSpec(lambda x, alpha: F.leaky_relu(x, alpha),      0.2, math.sqrt(2), 3, False),
    'tanh':     ActivationSpec(lambda x, alpha: torch.tanh(x),               0,   1,            4, True),
    'sigmoid':  ActivationSpec(lambda x, alpha: torch.sigmoid(x),            0,   1,            5, True),
    'elu':      ActivationSpec(lambda x, alpha: F.elu(x),                    0,   1,            6, True),
    'selu':     ActivationSpec(lambda x, alpha: F.selu(x),                   0,   1,            7, True),
    'softplus': ActivationSpec(lambda x, alpha: F.softplus(x),               0,   1,            8, True),
    'swish':    ActivationSpec(lambda x, alpha: torch.sigmoid(x) * x,        0,   math.sqrt(2), 9, True),
}

#----------------------------------------------------------------------------

PLUGIN_NAME = 'bias_act_plugin'
custom_ops.register_plugin(PLUGIN_NAME, sources=['bias_act.cpp', 'bias_act.cu'], headers=['bias_act.h'],
                           source_dir=os.path.dirname(__file__), extra_cuda_cflags=['--use_fast_math'])

#----------------------------------------------------------------------------

def bias_act(x, b=None, dim=1, act='linear', alpha=None, gain=None, clamp=None, impl='cuda'):
    """Add a bias along one dimension, apply an activation, scale by a gain and clamp.

    Args:
        x:      Input tensor of any shape, floating point.
        b:      Bias [x.shape[dim]] or None (no bias). Cast to x.dtype.
        dim:    The dimension of x that b runs along (1 = channels of NCHW). Negative counts from the end.
        act:    Name of the activation: one of `activation_funcs`.
        alpha:  Activation parameter (lrelu: negative slope); None = the activation's default.
        gain:   Multiplier after the activation; None = the activation's default (sqrt(2) for relu/lrelu/swish).
        clamp:  Clamp the output to [-clamp, +clamp]; None or negative = no clamping.
        impl:   'cuda' = the fused CUDA kernel when x is on CUDA and the plugin works, else the reference;
                'ref' = always the reference.
    Returns:
        Tensor of the same shape, dtype and memory layout as x.
    """
    spec, dim, alpha, gain, clamp = _check_args(x, b, dim, act, alpha, gain, clamp)
    if custom_ops.use_fast_path(impl, x) and (custom_ops.try_get_plugin(PLUGIN_NAME) is not None) and \
            custom_ops.parity_ok(PLUGIN_NAME, x.device, lambda: _parity_check(x.device)):
        b = b.to(x.dtype) if b is not None else None
        x = x if _is_dense(x) else x.contiguous()  # Outside the Function, so that x's graph stays connected.
        return _BiasActCuda.apply(x, b, dim, act, alpha, gain, clamp)
    if _FAST_NO_GRAD_ENABLED and not _records_graph(x, b):
        return _bias_act_no_grad(x, b, dim, act, alpha, gain, clamp)
    return _bias_act_ref(x, b, dim, act, alpha, gain, clamp)

def _check_args(x, b, dim, act, alpha, gain, clamp):
    """Validate the arguments; return (spec, dim >= 0, alpha, gain, clamp) with defaults filled in (clamp -1 = off)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f'bias_act: x must be a floating-point tensor, got {type(x).__name__} '
                        f'{getattr(x, "dtype", "")}')
    if act not in activation_funcs:
        raise ValueError(f'bias_act: unknown act={act!r}; expected one of {sorted(activation_funcs)}')
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f'bias_act: dim={dim} is out of range for x of shape {list(x.shape)}')
    dim = dim % x.ndim
    with misc.suppress_tracer_warnings():  # Channel counts are constants of the network, also in a trace.
        bad_bias = b is not None and (not isinstance(b, torch.Tensor) or b.ndim != 1 or
                                      bool(b.shape[0] != x.shape[dim]))
    if bad_bias:
        shape = list(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__
        raise ValueError(f'bias_act: bias must have shape [{x.shape[dim]}] (x.shape[{dim}] of x {list(x.shape)}), '
                         f'got {shape}')
    spec = activation_funcs[act]
    alpha = float(spec.def_alpha if alpha is None else alpha)
    gain = float(spec.def_gain if gain is None else gain)
    clamp = float(clamp if clamp is not None and clamp >= 0 else -1)
    return spec, dim, alpha, gain, clamp

#----------------------------------------------------------------------------
# Reference implementation: reads like the formula.

def _bias_act_ref(x, b, dim, act, alpha, gain, clamp):
    """y = clamp(act(x + b) * gain); arguments as in bias_act() after _check_args (dim >= 0, clamp < 0 = off)."""
    if b is not None:
        x = x + b.to(x.dtype).reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = activation_funcs[act].func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x

#----------------------------------------------------------------------------
# Without autograd (inference, metrics): the reference's ops in the same order, but every step after the first
# writes into the first step's output, so one new tensor instead of up to four. Same bits as the reference. On a
# CPU a fresh large tensor costs more in page faults than its arithmetic: bias + lrelu + gain + clamp of a
# [8, 512, 64, 64] activation took 81 ms as four ops and 28 ms in place (2 threads).

_FAST_NO_GRAD_ENABLED = True    # Constant; bench/run_all.py's plain path and the tests set it False to compare.

def _records_graph(x, b):
    """True when autograd records this call (in-place steps would then cost it saved inputs), or a trace does."""
    if torch.jit.is_tracing():
        return True
    return torch.is_grad_enabled() and (x.requires_grad or (b is not None and b.requires_grad))


def _bias_act_no_grad(x, b, dim, act, alpha, gain, clamp):
    """_bias_act_ref for calls that record no graph; never modifies x."""
    y = x + b.to(x.dtype).reshape([-1 if i == dim else 1 for i in range(x.ndim)]) if b is not None else x
    owned = y is not x  # May the next steps write into y?
    if act == 'lrelu' and owned:
        y = F.leaky_relu_(y, alpha)
    elif act == 'relu' and owned:
        y = y.relu_()
    else:
        y = activation_funcs[act].func(y, alpha)
        owned = owned or y is not x
    if gain != 1:
        y = y.mul_(gain) if owned else y * gain
        owned = True
    if clamp >= 0:
        y = y.clamp_(-clamp, clamp) if owned else y.clamp(-clamp, clamp)
    return y

#----------------------------------------------------------------------------
# CUDA path. The kernel computes, for v = x + b (bias along `dim`), mask = (|act(v) * gain| <= clamp):
#   mode 0: act(v) * gain, clamped            (forward)
#   mode 1: g * act'(v) * gain * mask         (g = dy: the first derivative)
#   mode 2: g * act''(v) * gain * mask        (g = ddx * dy: used by the second derivative)
# The mask matches torch.clamp's gradient (which passes at |y| == clamp). Third derivatives are not provided.

def _is_dense(t):
    """True iff t's elements fill one block of memory without gaps or overlap, in some dimension order."""
    if t.numel() == 0:
        return True
    expected_stride = 1
    for stride, size in sorted((stride, size) for size, stride in zip(t.shape, t.stride()) if size != 1):
        if stride != expected_stride:
            return False
        expected_stride *= size
    return True

def _same_layout(t, like):
    """t with the same strides as `like` (the kernel walks all operands in memory order)."""
    if all(s1 == s2 or n == 1 for s1, s2, n in zip(t.stride(), like.stride(), like.shape)):
        return t
    return torch.empty_like(like).copy_(t)

def _run_kernel(g, b, xref, mode, dim, act, alpha, gain, clamp):
    """Call the plugin; g is the tensor being transformed (x in mode 0), xref the saved x in modes 1, 2."""
    plugin = custom_ops.try_get_plugin(PLUGIN_NAME)
    empty = g.new_empty([0])
    if xref is not None:
        g = _same_layout(g, xref)
    return plugin.bias_act(g, b if b is not None else empty, xref if xref is not None else empty,
                           mode, dim, activation_funcs[act].cuda_idx, alpha, gain, clamp)

def _reduce_bias_grad(dx, dim):
    """Gradient of the bias: dx summed over every dimension except dim."""
    return dx.sum([i for i in range(dx.ndim) if i != dim])

class _BiasActCuda(torch.autograd.Function):
    """y = bias_act(x, b) by the kernel; backward via _BiasActCudaGrad so that grad-of-grad works."""
    @staticmethod
    def forward(ctx, x, b, dim, act, alpha, gain, clamp):
        ctx.args = (dim, act, alpha, gain, clamp)
        ctx.save_for_backward(x, b)
        return _run_kernel(x, b, None, 0, dim, act, alpha, gain, clamp)

    @staticmethod
    def backward(ctx, dy):
        x, b = ctx.saved_tensors
        dim = ctx.args[0]
        dx = _BiasActCudaGrad.apply(dy, x, b, *ctx.args)
        db = _reduce_bias_grad(dx, dim) if b is not None and ctx.needs_input_grad[1] else None
        return dx, db, None, None, None, None, None

class _BiasActCudaGrad(torch.autograd.Function):
    """dx = dy * act'(x + b) * gain * mask, by the kernel; differentiable once more (w.r.t. dy, x and b)."""
    @staticmethod
    def forward(ctx, dy, x, b, dim, act, alpha, gain, clamp):
        ctx.args = (dim, act, alpha, gain, clamp)
        ctx.save_for_backward(dy, x, b)
        return _run_kernel(dy, b, x, 1, dim, act, alpha, gain, clamp)

    @staticmethod
    def backward(ctx, ddx):
        dy, x, b = ctx.saved_tensors
        dim, act = ctx.args[:2]
        d_dy = d_x = d_b = None
        if ctx.needs_input_grad[0]:  # dx is linear in dy: the same op maps ddx to d_dy.
            d_dy = _BiasActCudaGrad.apply(ddx, x, b, *ctx.args)
        if (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]) and activation_funcs[act].has_2nd_grad:
            d_x = _run_kernel(ddx * dy, b, x, 2, *ctx.args)
            d_b = _reduce_bias_grad(d_x, dim) if b is not None and ctx.needs_input_grad[2] else None
        return d_dy, d_x, d_b, None, None, None, None, None

#----------------------------------------------------------------------------

def _parity_check(device='cuda', seed=0):
    """Compare the kernel with the reference on small random inputs (forward and gradients of x and b).

    Returns (ok, details). Used by custom_ops.parity_ok on the first CUDA call in a process.
    """
    gen = torch.Generator(device='cpu').manual_seed(seed)
    worst = []
    for act in activation_funcs:
        for clamp in [-1.0, 0.7]:
            x = (torch.randn([3, 5, 7], generator=gen) * 2).to(device).requires_grad_(True)
            b = torch.randn([5], generator=gen).to(device).requires_grad_(True)
            dy = torch.randn([3, 5, 7], generator=gen).to(device)
            spec = activation_funcs[act]
            args = (1, act, float(spec.def_alpha), float(spec.def_gain), clamp)
            outs = []
            for fn in [_BiasActCuda.apply, _bias_act_ref]:
                y = fn(x, b, *args)
                outs.append([y.detach()] + [g.detach() for g in torch.autograd.grad(y, [x, b], dy)])
            err = max(float((o1 - o2).abs().max()) for o1, o2 in zip(*outs))
            worst.append((err, act, clamp))
    err, act, clamp = max(worst)
    ok = err <= 1e-4
    return ok, f'max abs error {err:.3g} (act={act}, clamp={clamp}), tolerance 1e-4'

#----------------------------------------------------------------------------
