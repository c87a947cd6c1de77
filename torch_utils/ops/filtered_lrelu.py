"""Filtered leaky ReLU: the alias-free nonlinearity of StyleGAN3 (Karras et al. 2021, Sec. 3.2 and App. D).

A pointwise nonlinearity creates frequencies above the Nyquist limit. StyleGAN3 therefore applies it at a higher
sampling rate and band-limits the result before returning to the original rate:

    z = upfirdn2d(x + b, fu, up=up, padding=padding, gain=up**2)     upsample + interpolation filter
    a = clamp(lrelu(z, slope) * gain, -clamp, clamp)                  the nonlinearity
    y = upfirdn2d(a, fd, down=down)                                   anti-aliasing filter + decimate

Output size along each axis (upfirdn2d's formula applied twice; the second call has no padding):

    mid = in * up + pad0 + pad1 - fu_taps + 1                         length of z and a
    out = (mid - fd_taps + down) // down   (= ceil((mid - fd_taps + 1) / down))

`_filtered_lrelu_ref` composes bias_act and upfirdn2d (differentiable to any order). The CUDA path does all of it in
one kernel (filtered_lrelu.cu, per-tile algorithm in filtered_lrelu.h) and stores a 2-bit code per element of z
(positive / negative / clamped) for the backward pass, which is then two transposed upfirdn2d calls around a
multiplication by the stored derivative (see _FusedFilteredLReLU).
"""

import dataclasses
import os

import numpy as np
import torch

from .. import custom_ops
from . import bias_act
from . import upfirdn2d

#----------------------------------------------------------------------------

PLUGIN_NAME = 'filtered_lrelu_plugin'
PLUGIN_SOURCES = ['filtered_lrelu.cpp', 'filtered_lrelu.cu']
PLUGIN_HEADERS = ['filtered_lrelu.h']
SOURCE_DIR = os.path.dirname(__file__)
custom_ops.register_plugin(PLUGIN_NAME, sources=PLUGIN_SOURCES, headers=PLUGIN_HEADERS, source_dir=SOURCE_DIR)

_MAX_FUSED_SCALE = 8    # Larger up/down factors or filters take the reference path (the kernel's shared memory
_MAX_FUSED_TAPS = 32    # is sized for StyleGAN3's filters: 2x/4x resampling, up to ~24 taps).

#----------------------------------------------------------------------------

def filtered_lrelu(x, fu=None, fd=None, b=None, up=1, down=1, padding=0, gain=np.sqrt(2), slope=0.2, clamp=None,
                   flip_filter=False, impl='cuda'):
    """Bias, upsample, leaky ReLU, clamp, downsample (StyleGAN3 Sec. 3.2), fused into one kernel on CUDA.

    Args:
        x:           [N, C, H, W] float16 / bfloat16 / float32 / float64.
        fu:          Upsampling filter from upfirdn2d.setup_filter(): [taps] (separable), [fh, fw], or None (identity).
        fd:          Downsampling filter, same forms as fu.
        b:           Bias [C] added before upsampling, or None.
        up:          Integer upsampling factor (>= 1).
        down:        Integer downsampling factor (>= 1).
        padding:     Padding of the upsampled image before fu: int, [x, y] or [x0, x1, y0, y1]; negative crops.
        gain:        Multiplier after the leaky ReLU (sqrt(2) keeps unit variance).
        slope:       Negative slope of the leaky ReLU.
        clamp:       Clamp the activations to [-clamp, clamp] after the gain; None = no clamping.
        flip_filter: False = true convolution with fu and fd (upfirdn2d's convention), True = correlation.
        impl:        'cuda' = the fused kernel when x is on CUDA and the plugin works, else the reference; 'ref'.
    Returns:
        [N, C, out_h, out_w] in x's dtype, out_* as in the module docstring.
    """
    spec = _parse_args(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter)
    if custom_ops.use_fast_path(impl, x) and _fused_supported(x, spec) \
            and (plugin := custom_ops.try_get_plugin(PLUGIN_NAME)) is not None \
            and custom_ops.parity_ok(PLUGIN_NAME, x.device, lambda: _parity_check(x.device)):
        return _filtered_lrelu_fused(plugin, x, fu, fd, b, spec)
    # Reduced precision on the CPU (gen_images.py --precision=bf16) takes the CPU path in float32, rounded once.
    x_cpu, b_cpu = x, b
    if x.device.type == 'cpu' and x.dtype in upfirdn2d._CPU_HALF_DTYPES:
        x_cpu, b_cpu = x.float(), (None if b is None else b.float())
    if _cpu_path_applies(x_cpu, fu, fd, b_cpu, spec):
        return _FilteredLReLUCpu.apply(x_cpu, b_cpu, fu, fd, spec).to(x.dtype)
    return _compose(x, fu, fd, b, spec, impl=impl)

#----------------------------------------------------------------------------
# Argument checking and geometry.

@dataclasses.dataclass(frozen=True)
class _Spec:
    """Parsed arguments of one call; sizes are (y, x) pairs."""
    up: int
    down: int
    padding: tuple      # (px0, px1, py0, py1)
    fu_taps: tuple      # (fh, fw)
    fd_taps: tuple
    in_size: tuple
    mid_size: tuple     # Size of the upsampled intermediate z.
    out_size: tuple
    gain: float
    slope: float
    clamp: float        # -1 = no clamping.
    flip_filter: bool

def _filter_taps(f, name):
    """(fh, fw) of a filter as upfirdn2d reads it: None -> (1, 1), [n] -> (n, n), [fh, fw] -> (fh, fw)."""
    if f is None:
        return 1, 1
    if not isinstance(f, torch.Tensor) or f.ndim not in (1, 2) or f.numel() == 0:
        shape = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
        raise ValueError(f'filtered_lrelu: {name} must be None or a 1-D/2-D filter tensor from '
                         f'upfirdn2d.setup_filter(), got {shape}')
    return int(f.shape[0]), int(f.shape[-1])

def _parse_padding(padding):
    if isinstance(padding, (int, np.integer)):
        padding = [padding] * 4
    if not isinstance(padding, (list, tuple)) or len(padding) not in (2, 4) or \
            not all(isinstance(p, (int, np.integer)) for p in padding):
        raise ValueError(f'filtered_lrelu: padding={padding!r} must be an int, [x, y] or [x0, x1, y0, y1] of ints')
    if len(padding) == 2:
        padding = [padding[0], padding[0], padding[1], padding[1]]
    return tuple(int(p) for p in padding)

def _parse_args(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter):
    """Validate the arguments of filtered_lrelu(); return a _Spec. Raises ValueError naming the culprit."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f'filtered_lrelu: x must be a floating-point [N, C, H, W] tensor, got '
                         f'{(x.dtype, tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__}')
    for name, value in [('up', up), ('down', down)]:
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f'filtered_lrelu: {name}={value!r} must be an integer >= 1')
    if b is not None and (not isinstance(b, torch.Tensor) or b.ndim != 1 or b.shape[0] != x.shape[1]):
        shape = tuple(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__
        raise ValueError(f'filtered_lrelu: b must be None or [{x.shape[1]}] (one per channel of x), got {shape}')
    if clamp is not None and not (np.isfinite(clamp) and clamp >= 0):
        raise ValueError(f'filtered_lrelu: clamp={clamp!r} must be None or a finite number >= 0')
    if not (np.isfinite(gain) and np.isfinite(slope)):
        raise ValueError(f'filtered_lrelu: gain={gain!r} and slope={slope!r} must be finite')
    pads = _parse_padding(padding)
    fu_taps, fd_taps = _filter_taps(fu, 'fu'), _filter_taps(fd, 'fd')
    in_size = (int(x.shape[2]), int(x.shape[3]))
    mid_size, out_size = [], []
    for axis, (pad0, pad1) in enumerate([pads[2:], pads[:2]]):
        mid = in_size[axis] * int(up) + pad0 + pad1 - fu_taps[axis] + 1
        if mid < fd_taps[axis]:
            raise ValueError(f'filtered_lrelu: x of size {in_size[0]}x{in_size[1]} with up={up}, padding={list(pads)}, '
                             f'fu {fu_taps[0]}x{fu_taps[1]} gives an intermediate of {mid} samples along '
                             f'{"yx"[axis]}, fewer than fd\'s {fd_taps[axis]} taps; increase the padding')
        mid_size.append(mid)
        out_size.append((mid - fd_taps[axis] + int(down)) // int(down))
    return _Spec(up=int(up), down=int(down), padding=pads, fu_taps=fu_taps, fd_taps=fd_taps, in_size=in_size,
                 mid_size=tuple(mid_size), out_size=tuple(out_size), gain=float(gain), slope=float(slope),
                 clamp=-1.0 if clamp is None else float(clamp), flip_filter=bool(flip_filter))

#----------------------------------------------------------------------------
# Reference path: the definition, composed of the reference ops (autograd gives gradients of any order).

def _filtered_lrelu_ref(x, fu=None, fd=None, b=None, up=1, down=1, padding=0, gain=np.sqrt(2), slope=0.2, clamp=None,
                        flip_filter=False):
    """filtered_lrelu() built from bias_act and upfirdn2d reference ops; same arguments, same result."""
    spec = _parse_args(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter)
    return _compose(x, fu, fd, b, spec, impl='ref')

def _compose(x, fu, fd, b, spec, impl):
    """The op as its definition, from bias_act and upfirdn2d with the given impl of those building blocks."""
    if b is not None:
        x = bias_act.bias_act(x, b, impl=impl)
    x = upfirdn2d.upfirdn2d(x, fu, up=spec.up, padding=spec.padding, gain=spec.up ** 2,
                            flip_filter=spec.flip_filter, impl=impl)
    x = bias_act.bias_act(x, act='lrelu', alpha=spec.slope, gain=spec.gain,
                          clamp=None if spec.clamp < 0 else spec.clamp, impl=impl)
    x = upfirdn2d.upfirdn2d(x, fd, down=spec.down, flip_filter=spec.flip_filter, impl=impl)
    return x

#----------------------------------------------------------------------------
# Fused CUDA path.

def _fused_supported(x, spec):
    """Whether the fused kernel handles this call (else the reference path does)."""
    return x.dtype in (torch.float16, torch.bfloat16, torch.float32) and \
        max(spec.up, spec.down) <= _MAX_FUSED_SCALE and max(spec.fu_taps + spec.fd_taps) <= _MAX_FUSED_TAPS

def _kernel_taps(f, flip_filter, gain, device):
    """The filter as the kernel reads it: (flat float32 taps, separable, taps_y, taps_x).

    The kernel correlates, so a true-convolution filter is reversed. A separable filter is stored as its y taps then
    its x taps, each scaled by sqrt(gain); a 2-D one row-major, scaled by gain.
    """
    if f is None:
        f = torch.ones([1], dtype=torch.float32, device=device)
    f = f.to(device=device, dtype=torch.float32)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 1:
        f = f * np.sqrt(gain)
        return torch.cat([f, f]).contiguous(), 1, f.shape[0], f.shape[0]
    return (f * gain).reshape(-1).contiguous(), 0, f.shape[0], f.shape[1]

def _filtered_lrelu_fused(plugin, x, fu, fd, b, spec, tile=(0, 0)):
    """The fused path through `plugin` (the CUDA plugin, or the CPU emulation the tests build). tile: (rows, cols)
    of the output tile, (0, 0) = the kernel's choice."""
    fu_args = _kernel_taps(fu, spec.flip_filter, spec.up ** 2, x.device)
    fd_args = _kernel_taps(fd, spec.flip_filter, 1, x.device)
    b_kernel = torch.empty([0], device=x.device) if b is None else b.detach().to(torch.float32).contiguous()
    return _FusedFilteredLReLU.apply(x, b, plugin, fu, fd, fu_args, fd_args, b_kernel, spec, tuple(tile))

class _FusedFilteredLReLU(torch.autograd.Function):
    """y = filtered_lrelu(x, b) by the fused kernel. Backward (the transpose of each linear step):
        dz = upfirdn2d(dy, fd) as the transpose of filter+decimate: zero-insert by `down`, full convolution with fd
             reversed, cropped to z's size;
        da = dz * (gain, gain * slope or 0 per the stored code);
        dx = upfirdn2d(da, fu) as the transpose of zero-insert+filter: full convolution with fu reversed, shifted by
             the forward padding, keeping every up-th sample; db = sum of dx over N, H, W.
    Each step is differentiable (the stored derivative is a constant), so double backward works too."""

    @staticmethod
    def forward(ctx, x, b, plugin, fu, fd, fu_args, fd_args, b_kernel, spec, tile):
        px0, px1, py0, py1 = spec.padding
        write_si = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        y, si = plugin.forward(x.contiguous(), fu_args[0], fd_args[0], b_kernel, spec.up, spec.down,
                               px0, px1, py0, py1, *fu_args[1:], *fd_args[1:],
                               spec.gain, spec.slope, spec.clamp, write_si, tile[0], tile[1])
        ctx.save_for_backward(si)
        ctx.plugin, ctx.fu, ctx.fd, ctx.spec, ctx.has_bias = plugin, fu, fd, spec, b is not None
        return y

    @staticmethod
    def backward(ctx, dy):
        si, = ctx.saved_tensors
        spec = ctx.spec
        dx = _fused_backward(ctx.plugin, dy, si, ctx.fu, ctx.fd, spec)
        db = dx.sum([0, 2, 3], dtype=torch.float32) if ctx.has_bias and ctx.needs_input_grad[1] else None
        return dx, db, None, None, None, None, None, None, None, None

def _fused_backward(plugin, dy, si, fu, fd, spec):
    """dL/dx [N, C, H, W] from dL/dy [N, C, out_h, out_w] and the stored codes si; see _FusedFilteredLReLU.

    Paddings, per axis (taps T, forward padding p0/p1): y[o] = sum_t kd[t] a[o * down + t] has the transpose
    da[m] = full convolution of (dy zero-inserted by down) with kd reversed, i.e. upfirdn2d with the other flip and
    padding (Td - 1, mid - out * down), which yields exactly mid samples. z[m] = sum_t ku[t] u[m + t - p0] has the
    transpose du[i] = full convolution of dz with ku reversed, read at i + p0, i.e. padding (Tu - 1 - p0, Tu - 1 - p1),
    which yields in * up samples; keeping every up-th gives x's size.
    """
    (fuh, fuw), (fdh, fdw) = spec.fu_taps, spec.fd_taps
    (mid_h, mid_w), (out_h, out_w) = spec.mid_size, spec.out_size
    px0, px1, py0, py1 = spec.padding
    ones = torch.ones([1, 1], dtype=torch.float32, device=dy.device)
    fu = ones if fu is None else fu
    fd = ones if fd is None else fd
    dz = upfirdn2d.upfirdn2d(dy, fd, up=spec.down, flip_filter=not spec.flip_filter,
                             padding=[fdw - 1, mid_w - out_w * spec.down, fdh - 1, mid_h - out_h * spec.down])
    da = _MaskApply.apply(dz, si, plugin, spec)
    return upfirdn2d.upfirdn2d(da, fu, down=spec.up, flip_filter=not spec.flip_filter, gain=spec.up ** 2,
                               padding=[fuw - 1 - px0, fuw - 1 - px1, fuh - 1 - py0, fuh - 1 - py1])

class _MaskApply(torch.autograd.Function):
    """g * d(clamp(lrelu(z) * gain))/dz with the derivative read from the stored codes. Linear in g with a constant
    diagonal, hence self-adjoint: its backward is itself, to any order."""

    @staticmethod
    def forward(ctx, g, si, plugin, spec):
        ctx.save_for_backward(si)
        ctx.plugin, ctx.spec = plugin, spec
        return plugin.mask_apply(g.contiguous(), si, spec.gain, spec.slope)

    @staticmethod
    def backward(ctx, dout):
        si, = ctx.saved_tensors
        return _MaskApply.apply(dout, si, ctx.plugin, ctx.spec), None, None, None

#----------------------------------------------------------------------------

def _fused_errors(plugin, device, x, b, fu, fd, dy, tile=(0, 0), **kwargs):
    """Relative errors {'y', 'dx', 'db'} of the fused path on `device` (float32) against the reference in float64 on
    the CPU (so that TF32 convolutions in a GPU reference cannot blur the comparison). x, b, fu, fd, dy: CPU tensors;
    kwargs: filtered_lrelu's up, down, padding, gain, slope, clamp, flip_filter."""
    x64, b64 = x.double().requires_grad_(True), b.double().requires_grad_(True)
    y_ref = _filtered_lrelu_ref(x64, fu, fd, b64, **kwargs)
    ref = [y_ref] + list(torch.autograd.grad(y_ref, [x64, b64], dy.double()))
    x32 = x.to(device, torch.float32).requires_grad_(True)
    b32 = b.to(device, torch.float32).requires_grad_(True)
    fu32, fd32 = (None if f is None else f.to(device) for f in (fu, fd))
    spec = _parse_args(x32, fu32, fd32, b32, **kwargs)
    y = _filtered_lrelu_fused(plugin, x32, fu32, fd32, b32, spec, tile=tile)
    ours = [y] + list(torch.autograd.grad(y, [x32, b32], dy.to(device)))
    errors = dict()
    for name, u, v in zip(['y', 'dx', 'db'], ours, ref):
        if u.shape != v.shape:
            raise ValueError(f'filtered_lrelu: fused {name} has shape {tuple(u.shape)}, reference {tuple(v.shape)}')
        errors[name] = float((u.detach().cpu().double() - v.detach()).abs().max()) / float(v.detach().abs().max())
    return errors

def _parity_check(device='cuda', seed=0, plugin=None):
    """Compare the fused kernel with the reference on small random inputs: forward and gradients of x and b.

    Covers separable and 2-D filters, up/down 1, 2 and 4, padding, clamp, flip_filter and edge tiles. Returns
    (ok, details) for custom_ops.parity_ok.
    """
    plugin = plugin if plugin is not None else custom_ops.try_get_plugin(PLUGIN_NAME)
    if plugin is None:
        return False, f'{PLUGIN_NAME} is not available: {custom_ops.plugin_status(PLUGIN_NAME)}'
    gen = torch.Generator().manual_seed(seed)
    sep = upfirdn2d.setup_filter(torch.rand([12], generator=gen) + 0.1, separable=True)
    full = upfirdn2d.setup_filter(torch.rand([4, 5], generator=gen) + 0.1)
    cases = [  # (shape, fu, fd, up, down, padding, clamp, flip_filter)
        ([2, 3, 11, 37], sep, sep, 2, 2, [10, 9, 11, 10], None, False),
        ([1, 2, 9, 8], full, sep, 4, 2, [3, 7, 5, 2], 0.5, True),
        ([2, 2, 41, 7], None, full, 1, 1, 2, None, False),
    ]
    worst = (0.0, 'exact')
    for shape, fu, fd, up, down, padding, clamp, flip in cases:
        x = torch.randn(shape, generator=gen)
        b = torch.randn([shape[1]], generator=gen)
        kwargs = dict(up=up, down=down, padding=padding, gain=1.3, slope=0.25, clamp=clamp, flip_filter=flip)
        dy = torch.randn(shape[:2] + list(_parse_args(x, fu, fd, b, **kwargs).out_size), generator=gen)
        for name, err in _fused_errors(plugin, device, x, b, fu, fd, dy, **kwargs).items():
            where = f'{name} for x {shape}, up={up}, down={down}'
            if not np.isfinite(err):
                return False, f'non-finite result in {where}'
            worst = max(worst, (err, where))
    ok = worst[0] <= 1e-4
    return ok, f'max relative error {worst[0]:.3g} ({worst[1]}), tolerance 1e-4'

#----------------------------------------------------------------------------
# Fast CPU path: the same maths as _compose, arranged for a CPU (tests/test_op_filtered_lrelu.py checks values,
# gradients and gradients of gradients against the reference):
#   - channels_last throughout, where oneDNN's depthwise FIR convolutions run 2.5-3.6x faster for StyleGAN3's
#     [N, 512, H, W] tensors, and upfirdn2d's polyphase CPU formulation (no zero-inserted tensor);
#   - the activation in place on the upsampled tensor (the largest one), with the gain moved into the
#     downsampling filter: clamp(lrelu(z) * g, -c, c) = g * clamp(lrelu(z), -c/g, c/g) for g > 0, so one
#     elementwise pass instead of four;
#   - for autograd, only the activated upsampled tensor is stored, which the forward makes anyway (the CUDA kernel
#     stores derivative codes; computing a derivative tensor here cost six elementwise passes, 17% of a StyleGAN3-T
#     training step); the backward is the transpose of each linear step (see _FusedFilteredLReLU), composed of
#     differentiable ops so that double backward works (the activation is piecewise linear, its derivative a
#     constant of the stored tensor).

_FAST_CPU_ENABLED = True    # Constant; bench/run_all.py's plain reference path and the tests set it False.
_FAST_CPU_DTYPES = (torch.float32, torch.float64)

def _cpu_path_applies(x, fu, fd, b, spec):
    # The backward reads sign(z) off the activated tensor, which a negative slope would flip: plain path then.
    # Not while tracing (TorchScript, ONNX export): the path is a Python autograd.Function, which a graph cannot
    # hold; and not under DNNLIB_OPS=ref, which promises the plain reference formulas.
    if torch.jit.is_tracing() or custom_ops.forced_impl() == 'ref':
        return False
    filters_fixed = all(f is None or not f.requires_grad for f in (fu, fd))
    return x.device.type == 'cpu' and _FAST_CPU_ENABLED and upfirdn2d._FAST_CPU_ENABLED and \
        x.dtype in _FAST_CPU_DTYPES and filters_fixed and spec.gain > 0 and spec.slope >= 0 and \
        (b is None or b.dtype == x.dtype)

def _cpu_resample(x, f, up, down, padding, flip_filter, gain):
    """upfirdn2d on the CPU path; skips the identity (no filter, no resampling, no padding)."""
    if f is None and up == 1 and down == 1 and not any(padding):
        return x * gain if gain != 1 else x
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32)
    return upfirdn2d._upfirdn2d_cpu(x, f, (up, up), (down, down), padding, flip_filter, float(gain))

def _cpu_forward(x, b, fu, fd, spec):
    """(y, a): the output and the activated, clamped upsampled tensor a (the backward reads the activation's
    derivative off it: a > 0 where z > 0, |a| < limit where unclamped); x: [N, C, H, W] float32/64 on the CPU."""
    x = x.contiguous(memory_format=torch.channels_last)
    if b is not None:
        x = x + b.reshape(1, -1, 1, 1)
    z = _cpu_resample(x, fu, spec.up, 1, spec.padding, spec.flip_filter, spec.up ** 2)
    if z is x:
        z = z.clone()
    z = torch.nn.functional.leaky_relu_(z, spec.slope) if spec.slope != 1 else z
    if spec.clamp >= 0:
        limit = spec.clamp / spec.gain
        z = z.clamp_(-limit, limit)
    y = _cpu_resample(z, fd, 1, spec.down, (0, 0, 0, 0), spec.flip_filter, spec.gain)
    return y, z

def _cpu_transpose(dy, activated, fu, fd, spec):
    """dL/dx from dL/dy: the transposed steps of _cpu_forward (paddings as in _fused_backward), plain autograd ops.
    The activation's derivative comes from torch's own lrelu/hardtanh backward ops applied to the saved activated
    tensor (one pass each, differentiable in dz); `activated` is a constant (the activation is piecewise linear)."""
    (fuh, fuw), (fdh, fdw) = spec.fu_taps, spec.fd_taps
    (mid_h, mid_w), (out_h, out_w) = spec.mid_size, spec.out_size
    px0, px1, py0, py1 = spec.padding
    dy = dy.contiguous(memory_format=torch.channels_last)
    da = _cpu_resample(dy, fd, spec.down, 1, (fdw - 1, mid_w - out_w * spec.down, fdh - 1, mid_h - out_h * spec.down),
                       not spec.flip_filter, spec.gain)
    if spec.slope != 1:
        da = torch.ops.aten.leaky_relu_backward(da, activated, spec.slope, True)
    if spec.clamp >= 0:
        limit = spec.clamp / spec.gain
        da = torch.ops.aten.hardtanh_backward(da, activated, -limit, limit)
    return _cpu_resample(da, fu, 1, spec.up, (fuw - 1 - px0, fuw - 1 - px1, fuh - 1 - py0, fuh - 1 - py1),
                         not spec.flip_filter, spec.up ** 2)

class _FilteredLReLUCpu(torch.autograd.Function):
    """y = filtered_lrelu(x, b) on the CPU path; backward by _cpu_transpose (differentiable again)."""

    @staticmethod
    def forward(ctx, x, b, fu, fd, spec):
        y, activated = _cpu_forward(x, b, fu, fd, spec)
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            ctx.save_for_backward(activated)
        ctx.fu, ctx.fd, ctx.spec, ctx.in_format = fu, fd, spec, _memory_format(x)
        return y.contiguous(memory_format=ctx.in_format)

    @staticmethod
    def backward(ctx, dy):
        activated, = ctx.saved_tensors
        dx = _cpu_transpose(dy, activated, ctx.fu, ctx.fd, ctx.spec).contiguous(memory_format=ctx.in_format)
        db = dx.sum([0, 2, 3]) if ctx.needs_input_grad[1] else None
        return dx, db, None, None, None

def _memory_format(x):
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() \
        else torch.contiguous_format

#----------------------------------------------------------------------------
