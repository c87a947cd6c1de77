"""Upsample, FIR-filter and downsample 2-D images: upfirdn2d.

upfirdn2d(x, f, up, down, padding) is, for every image channel, the 2-D version of
scipy.signal.upfirdn: insert up-1 zeros after every input sample, pad (negative = crop), convolve with the
FIR filter f (true convolution; flip_filter=True gives correlation) keeping only fully overlapping positions,
keep every down-th sample, scale by gain. Output size per axis:

    out = (in * up + pad0 + pad1 - filter_taps) // down + 1

StyleGAN2 (Karras et al. 2020, App. B) and StyleGAN3 (Karras et al. 2021, Sec. 3.2) use it for all
anti-aliased resampling. The reference path below is built from public PyTorch ops only; the CUDA kernel in
upfirdn2d.cu computes the same thing and must equal it (checked by _parity_check on first use).
"""

import os

import numpy as np
import torch
import torch.nn.functional as F

from .. import custom_ops
from .. import misc
from . import conv2d_gradfix as _conv

_PLUGIN_NAME = 'upfirdn2d_plugin'
_PLUGIN_SOURCES = ['upfirdn2d.cpp', 'upfirdn2d.cu']
_PLUGIN_HEADERS = ['upfirdn2d.h']
_SOURCE_DIR = os.path.dirname(__file__)

custom_ops.register_plugin(_PLUGIN_NAME, sources=_PLUGIN_SOURCES, headers=_PLUGIN_HEADERS, source_dir=_SOURCE_DIR,
                           extra_cuda_cflags=['--use_fast_math'])

#----------------------------------------------------------------------------
# Argument parsing.

def _is_int(value):
    """True for Python/numpy ints and for 0-d integer tensors. Under torch.jit.trace, sizes read from a tensor's
    shape (such as a weight's kernel size, from which callers derive padding) arrive as 0-d tensors."""
    if isinstance(value, torch.Tensor):
        return value.ndim == 0 and not value.is_floating_point() and not value.is_complex()
    return isinstance(value, (int, np.integer))


def _to_ints(values):
    """Plain ints from _is_int() values. Resampling factors and padding fix the output size, so a trace records
    them as constants (sizes of weights and filters do not change with the input); hence no tracer warning."""
    with misc.suppress_tracer_warnings():
        return [int(v) for v in values]


def _num_channels(x):
    """x.shape[1] as an int: the depthwise filter weights and `groups` need a fixed channel count. (Under
    torch.jit.trace a shape entry is a traced value; the ONNX exporter then cannot tell the kernel's shape. The
    batch axis stays free.)"""
    with misc.suppress_tracer_warnings():
        return int(x.shape[1])


def _parse_scaling(scaling, what='up'):
    """Up/down factor as (sx, sy): an int, or [x, y]. Raises ValueError for non-positive values."""
    pair = [scaling, scaling] if _is_int(scaling) else scaling
    if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(_is_int(s) for s in pair):
        raise ValueError(f'upfirdn2d: {what}={scaling!r} must be an int or a list [x, y] of ints')
    sx, sy = _to_ints(pair)
    if not (sx >= 1 and sy >= 1):
        raise ValueError(f'upfirdn2d: {what}={scaling!r} must be positive integers')
    return sx, sy


def _parse_padding(padding):
    """Padding as (px0, px1, py0, py1) from an int, [x, y] or [x0, x1, y0, y1]. Negative values crop."""
    if _is_int(padding):
        padding = [padding, padding]
    if not isinstance(padding, (list, tuple)) or len(padding) not in (2, 4) or not all(_is_int(p) for p in padding):
        raise ValueError(f'upfirdn2d: padding={padding!r} must be an int, [x, y] or [x0, x1, y0, y1] of ints')
    padding = _to_ints(padding)
    if len(padding) == 2:
        px, py = padding
        padding = [px, px, py, py]
    px0, px1, py0, py1 = padding
    return px0, px1, py0, py1


def _get_filter_size(f):
    """Filter size (fw, fh) of a 2-D filter [fh, fw], a separable 1-D filter [fw] (-> (fw, fw)) or None (1, 1)."""
    if f is None:
        return 1, 1
    if not isinstance(f, torch.Tensor) or f.ndim not in (1, 2):
        raise ValueError(f'upfirdn2d: filter must be a 1-D or 2-D torch.Tensor, got '
                         f'{type(f).__name__}{tuple(f.shape) if isinstance(f, torch.Tensor) else ""}')
    with misc.suppress_tracer_warnings():  # Filter sizes are constants of the network.
        return int(f.shape[-1]), int(f.shape[0])

#----------------------------------------------------------------------------

def setup_filter(f, device=torch.device('cpu'), normalize=True, flip_filter=False, gain=1, separable=None):
    """Prepare a FIR filter for upfirdn2d().

    Args:
        f:           Taps: None (identity, [1]), a number, a 1-D list/array/tensor [fw] or 2-D [fh, fw].
        device:      Device of the result.
        normalize:   Scale so the taps sum to 1 (unit DC gain).
        flip_filter: Reverse the taps along every axis.
        gain:        Overall gain of the 2-D filter; a separable filter gets gain ** 0.5 per axis.
        separable:   True = keep a 1-D filter 1-D (applied along x and y). None = keep it 1-D only if it has
                     8 or more taps (short filters are cheaper as one 2-D pass).
    Returns:
        float32 tensor [fw] (separable) or [fh, fw].
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim == 0:
        f = f[np.newaxis]
    if f.ndim not in (1, 2) or f.numel() == 0:
        raise ValueError(f'setup_filter: taps must be a non-empty 1-D or 2-D array, got shape {tuple(f.shape)}')
    if separable is None:
        separable = (f.ndim == 1 and f.numel() >= 8)
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if separable and f.ndim != 1:
        raise ValueError(f'setup_filter: separable=True needs 1-D taps, got shape {tuple(f.shape)}')
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)

#----------------------------------------------------------------------------

def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1, impl='cuda'):
    """Upsample (zero insertion), pad, FIR-filter and downsample a batch of images.

    Args:
        x:           [N, C, H, W] float16/bfloat16/float32/float64.
        f:           float32 filter from setup_filter(): [fh, fw], separable [fw], or None (identity).
        up:          Upsampling factor, int or [x, y] (default 1).
        down:        Downsampling factor, int or [x, y] (default 1).
        padding:     Padding of the upsampled image, int, [x, y] or [x0, x1, y0, y1]; negative crops.
        flip_filter: False = true convolution (scipy semantics), True = correlation.
        gain:        Output scale.
        impl:        'cuda' = CUDA kernel when x is on CUDA and the plugin works, else reference; 'ref'.
    Returns:
        [N, C, (H * upy + py0 + py1 - fh) // downy + 1, (W * upx + px0 + px1 - fw) // downx + 1], dtype of x.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f'upfirdn2d: x must be a 4-D tensor [N, C, H, W], got '
                         f'{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}')
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    fw, fh = _get_filter_size(f)
    upx, upy = _parse_scaling(up, 'up')
    downx, downy = _parse_scaling(down, 'down')
    px0, px1, py0, py1 = _parse_padding(padding)
    with misc.suppress_tracer_warnings():  # Spatial sizes are fixed per network; a trace may bake the check in.
        out_w = int((x.shape[3] * upx + px0 + px1 - fw) // downx + 1)
        out_h = int((x.shape[2] * upy + py0 + py1 - fh) // downy + 1)
    if out_w < 1 or out_h < 1:
        raise ValueError(f'upfirdn2d: output would be {out_h}x{out_w} for input {x.shape[2]}x{x.shape[3]}, '
                         f'up={up}, down={down}, padding={padding}, filter {fh}x{fw}; increase the padding')
    args = ((upx, upy), (downx, downy), (px0, px1, py0, py1), bool(flip_filter), float(gain))
    if custom_ops.use_fast_path(impl, x) and x.dtype in _KERNEL_DTYPES and not f.requires_grad \
            and _kernel_fits(f, args[0], args[1]) and custom_ops.try_get_plugin(_PLUGIN_NAME) is not None \
            and custom_ops.parity_ok(_PLUGIN_NAME, x.device, lambda: _parity_check(x.device)):
        return _upfirdn2d_cuda(*args).apply(x, f)
    if x.device.type == 'cpu' and _FAST_CPU_ENABLED and x.dtype in _FAST_CPU_DTYPES + _CPU_HALF_DTYPES:
        # Reduced precision (gen_images.py --precision=bf16) runs the fast path in float32, rounded once at the
        # end: faster than the zero-inserted reference in bfloat16, and more exact.
        return _upfirdn2d_cpu(x if x.dtype in _FAST_CPU_DTYPES else x.float(), f, *args).to(x.dtype)
    return _upfirdn2d_ref(x, f, *args)

#----------------------------------------------------------------------------
# Reference path: zero insertion by reshape + pad, crop by slicing, FIR by depthwise conv2d, decimation by
# strided slicing. Autograd through these ops gives gradients of any order.

def _upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain):
    """Reference upfirdn2d on parsed arguments (see upfirdn2d())."""
    batch_size, _, in_height, in_width = x.shape
    num_channels = _num_channels(x)
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = padding

    # Zero insertion: every sample is followed by up-1 zeros along each axis. (A strided copy into zeros, not a
    # 6-D pad, so that only 4-D ops are needed on every backend; autograd sees a linear copy.)
    if upx > 1 or upy > 1:
        upsampled = x.new_zeros([batch_size, num_channels, in_height * upy, in_width * upx])
        upsampled[:, :, ::upy, ::upx] = x
        x = upsampled

    # Pad with zeros, then crop where padding is negative.
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]

    # FIR filter. conv2d correlates, so reversing the taps gives true convolution.
    f = f.to(device=x.device, dtype=x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        weight = (f * gain)[np.newaxis, np.newaxis].repeat([num_channels, 1, 1, 1])
        x = F.conv2d(x, weight, groups=num_channels)
    else:
        weight_x = (f * gain)[np.newaxis, np.newaxis, np.newaxis].repeat([num_channels, 1, 1, 1])
        weight_y = f[np.newaxis, np.newaxis, :, np.newaxis].repeat([num_channels, 1, 1, 1])
        x = F.conv2d(x, weight_x, groups=num_channels)
        x = F.conv2d(x, weight_y, groups=num_channels)

    # Decimation: keep samples 0, down, 2*down, ...
    return x[:, :, ::downy, ::downx]

#----------------------------------------------------------------------------
# Fast CPU path: the same linear map as _upfirdn2d_ref, arranged so that no multiply touches an inserted zero:
#   - zero insertion + FIR = one depthwise conv_transpose2d with stride up (polyphase: each input sample scatters
#     the taps once; K MACs per input sample instead of K per upsampled sample, an up^2 saving in 2-D);
#   - FIR + decimation = one depthwise conv2d with stride down (only the kept outputs are computed; up and down
#     together, which StyleGAN does not use, still decimate the upsampled result by slicing);
#   - zero padding and symmetric crops are done by the convolutions' padding arguments where possible (no copy);
#   - the convolutions are conv2d_gradfix's: torch's own double backward of a depthwise conv (R1, path length)
#     computes the filter's weight gradient group by group even though nothing asks for it (SG2 32/64 training
#     step 1.13x faster without it).
# Results equal _upfirdn2d_ref up to float rounding (tests/test_op_upfirdn2d.py checks values and gradients of
# both orders on random shapes). _upfirdn2d_ref stays the ground truth for the CUDA parity check.

_FAST_CPU_DTYPES = (torch.float32, torch.float64)
_CPU_HALF_DTYPES = (torch.float16, torch.bfloat16)  # Run through the fast path in float32.
_FAST_CPU_ENABLED = True          # Constant; bench/bench_cpu_ops.py and tests monkeypatch it to compare paths.
# Memory format of the depthwise convolutions: None = channels_last iff the input already is channels_last or the
# channel count is not a multiple of 16.
# Measured, not derived (bench/bench_cpu_ops.py, 2 cores): 12-tap up/down of [16, 3, 76, 76] run 2.5-5x faster in
# channels_last, the generator's [1, N*C, H, W] calls about 1.2x slower (the two layout copies cost more than they
# save). Presumably oneDNN computes NCHW depthwise convolutions in a 16-channel-blocked layout, padding C = 3 to 16.
# StyleGAN3's [N, 512, 86, 86] 12-tap up/down run 2.5-3.6x faster in channels_last when the input already is (no
# copy), so filtered_lrelu's CPU path hands it channels_last tensors.
# True/False force the format (a constant; the bench toggles it).
_FAST_CPU_CHANNELS_LAST = None
_ONEDNN_CHANNEL_BLOCK = 16


def _pad_or_crop(x, before_after_x, before_after_y):
    """Zero-pad (positive) or crop (negative) the last two axes of x by (x0, x1) and (y0, y1)."""
    (x0, x1), (y0, y1) = before_after_x, before_after_y
    x = x[:, :, max(-y0, 0): x.shape[2] - max(-y1, 0), max(-x0, 0): x.shape[3] - max(-x1, 0)]
    if max(x0, x1, y0, y1) > 0:
        x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    return x


def _split_symmetric(before, after, sign):
    """(symmetric part, residual before, residual after) of a pad (sign=1) or crop (sign=-1) that a convolution's
    own padding argument can do without a copy."""
    symmetric = max(0, min(sign * before, sign * after))
    return symmetric, before - sign * symmetric, after - sign * symmetric


def _drop_unread_tail(length, pad, tail, taps, stride):
    """0 instead of `tail` (zeros padded after a signal of `length`, conv padding `pad` on both sides) when no window
    of the strided convolution reaches them, so that no padded copy is made: the transpose of a 2x upsampling pads
    one such column (filtered_lrelu's backward: a 27 MB copy per StyleGAN3 layer at 32x32 training)."""
    if tail <= 0:
        return tail
    windows = (length + 2 * pad - taps) // stride + 1
    windows_with_tail = (length + 2 * pad + tail - taps) // stride + 1
    return 0 if windows >= 1 and windows == windows_with_tail else tail


def _depthwise_weights(f, num_channels, flip, gain, dtype):
    """Depthwise weights [C, 1, fh, fw] (2-D f) or a pair [C, 1, 1, fw], [C, 1, fw, 1] (separable f)."""
    f = f.to(dtype=dtype)
    if flip:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        return [(f * gain)[np.newaxis, np.newaxis].expand(num_channels, 1, -1, -1).contiguous()]
    return [(f * gain)[np.newaxis, np.newaxis, np.newaxis].expand(num_channels, 1, 1, -1).contiguous(),
            f[np.newaxis, np.newaxis, :, np.newaxis].expand(num_channels, 1, -1, 1).contiguous()]


def _upfirdn2d_cpu(x, f, up, down, padding, flip_filter, gain):
    """upfirdn2d on parsed arguments, polyphase/strided formulation (see above); same result as _upfirdn2d_ref."""
    num_channels = _num_channels(x)
    (upx, upy), (downx, downy), (px0, px1, py0, py1) = up, down, padding
    fw, fh = _get_filter_size(f)
    in_format = torch.channels_last if (x.is_contiguous(memory_format=torch.channels_last)
                                        and not x.is_contiguous()) else torch.contiguous_format
    channels_last = _FAST_CPU_CHANNELS_LAST
    if channels_last is None:
        channels_last = num_channels % _ONEDNN_CHANNEL_BLOCK != 0 or in_format == torch.channels_last
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    f = f.to(device=x.device)

    if upx == 1 and upy == 1:
        # y[o] = sum_k g[k] * x_padded[o * down + k] with g the correlation taps (f reversed): a strided conv2d.
        # Symmetric zero padding is left to conv2d (no padded copy).
        pad_x, px0, px1 = _split_symmetric(px0, px1, 1)
        pad_y, py0, py1 = _split_symmetric(py0, py1, 1)
        px1 = _drop_unread_tail(x.shape[3] + px0, pad_x, px1, fw, downx)
        py1 = _drop_unread_tail(x.shape[2] + py0, pad_y, py1, fh, downy)
        x = _pad_or_crop(x, (px0, px1), (py0, py1))
        weights = _depthwise_weights(f, num_channels, not flip_filter, gain, x.dtype)
        if len(weights) == 1:
            x = _conv.conv2d(x, weights[0], stride=(downy, downx), padding=(pad_y, pad_x), groups=num_channels)
        else:
            x = _conv.conv2d(x, weights[0], stride=(1, downx), padding=(0, pad_x), groups=num_channels)
            x = _conv.conv2d(x, weights[1], stride=(downy, 1), padding=(pad_y, 0), groups=num_channels)
        return x.contiguous(memory_format=in_format)

    # conv_transpose2d(x, h, stride=up) = full true convolution c of the zero-inserted x with h = f (f reversed
    # when flip_filter), minus trailing zeros. The padded, filtered signal is y[o] = c[o + K - 1 - pad0], i.e. c
    # padded by pad0 - (K - 1) before and pad1 + up - K after (negative = crop). conv_transpose2d's own padding
    # argument does the symmetric part of the crop (upsample2d's is all symmetric).
    crop_x, before_x, after_x = _split_symmetric(px0 - (fw - 1), px1 + upx - fw, -1)
    crop_y, before_y, after_y = _split_symmetric(py0 - (fh - 1), py1 + upy - fh, -1)
    weights = _depthwise_weights(f, num_channels, flip_filter, gain, x.dtype)
    if len(weights) == 1:
        x = _conv.conv_transpose2d(x, weights[0], stride=(upy, upx), padding=(crop_y, crop_x), groups=num_channels)
    else:
        # Rows first: a vertical FIR over channels_last data reads rows far apart and runs at half the speed of a
        # horizontal one, so it goes on the smaller, not yet widened tensor (SG3 rendering 1.02-1.04x).
        x = _conv.conv_transpose2d(x, weights[1], stride=(upy, 1), padding=(crop_y, 0), groups=num_channels)
        x = _conv.conv_transpose2d(x, weights[0], stride=(1, upx), padding=(0, crop_x), groups=num_channels)
    x = _pad_or_crop(x, (before_x, after_x), (before_y, after_y))
    return x[:, :, ::downy, ::downx].contiguous(memory_format=in_format)

#----------------------------------------------------------------------------

def filter2d(x, f, padding=0, flip_filter=False, gain=1, impl='cuda'):
    """Filter x with f, keeping its size (the filter is centred; even filters lean to the top-left).

    x: [N, C, H, W]; f: [fh, fw], [fw] or None; padding: extra padding, as in upfirdn2d(). Returns [N, C, H', W']
    with H' = H + py0 + py1.
    """
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    padding = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=padding, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1, impl='cuda'):
    """Upsample x by up (int or [x, y]) with interpolation filter f; output [N, C, H * upy, W * upx] (+ padding).

    The filter gets gain upx * upy so that the zero-inserted image keeps its mean (DC gain preserved).
    """
    upx, upy = _parse_scaling(up, 'up')
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    # Total padding fw - 1 per axis keeps the size at in * up; the split centres the filter on the samples.
    padding = [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2, py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]
    return upfirdn2d(x, f, up=(upx, upy), padding=padding, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1, impl='cuda'):
    """Downsample x by down (int or [x, y]) with anti-aliasing filter f; output [N, C, H // downy, W // downx]
    for zero padding (padding is added before filtering, in input pixels)."""
    downx, downy = _parse_scaling(down, 'down')
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    padding = [px0 + (fw - downx + 1) // 2, px1 + (fw - downx) // 2, py0 + (fh - downy + 1) // 2,
               py1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=(downx, downy), padding=padding, flip_filter=flip_filter, gain=gain, impl=impl)

#----------------------------------------------------------------------------
# CUDA path (upfirdn2d.cu). The kernel takes 2-D filters; a separable filter runs as two passes, [1, fw] along x
# then [fw, 1] along y.
#
# Gradient: upfirdn2d is linear in x, and its adjoint is the adjoint of each step in reverse order (decimation
# <-> zero insertion, valid convolution <-> full correlation, pad <-> crop). That is again an upfirdn2d, of dy,
# with up and down swapped, the filter reversed (flip_filter toggled), the same gain and, per axis, padding
#     before = taps - 1 - pad0,   after = in * up - out * down + pad0.
# So the backward is this same Function, and gradients of any order recurse.

_KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_KERNEL_SMEM_BYTES = 48 * 1024   # Must match UPFIRDN2D_SMEM_BUDGET in upfirdn2d.h.
_functions = dict()              # Cache: (parsed arguments, run_kernel) -> autograd Function class.


def _kernel_fits(f, up, down):
    """Whether the kernel's smallest tile (8x8 outputs, see upfirdn2d.h) fits in shared memory for every pass of
    the forward and of the gradient (which swaps up and down)."""
    fw, fh = _get_filter_size(f)
    if f.ndim == 2:
        passes = [((fw, fh), up, down)]
    else:  # Separable: an x pass with a [1, fw] filter, then a y pass with [fh, 1].
        passes = [((fw, 1), (up[0], 1), (down[0], 1)), ((1, fh), (1, up[1]), (1, down[1]))]
    for (taps_x, taps_y), pass_up, pass_down in passes:
        for scale_up, scale_down in ((pass_up, pass_down), (pass_down, pass_up)):
            tile_in_w = (7 * scale_down[0] + taps_x - 1) // scale_up[0] + 1
            tile_in_h = (7 * scale_down[1] + taps_y - 1) // scale_up[1] + 1
            if 4 * (taps_x * taps_y + tile_in_w * tile_in_h) > _KERNEL_SMEM_BYTES:
                return False
    return True


def _run_kernel(x, f, up, down, padding, flip_filter, gain):
    """One kernel pass with a 2-D float32 filter."""
    plugin = custom_ops.try_get_plugin(_PLUGIN_NAME)
    return plugin.upfirdn2d(x, f, up[0], up[1], down[0], down[1], *padding, flip_filter, gain)


def _run_passes(run_kernel, x, f, up, down, padding, flip_filter, gain):
    """upfirdn2d through run_kernel (2-D filters only): one pass, or two for a separable filter."""
    f = f.to(device=x.device, dtype=torch.float32)
    if f.ndim == 2:
        return run_kernel(x, f, up, down, padding, flip_filter, gain)
    px0, px1, py0, py1 = padding
    x = run_kernel(x, f[np.newaxis, :], (up[0], 1), (down[0], 1), (px0, px1, 0, 0), flip_filter, gain)
    return run_kernel(x, f[:, np.newaxis], (1, up[1]), (1, down[1]), (0, 0, py0, py1), flip_filter, 1.0)


def _upfirdn2d_cuda(up, down, padding, flip_filter, gain, run_kernel=_run_kernel):
    """Autograd Function class for upfirdn2d with these parsed arguments; apply(x, f). No gradient for f.

    run_kernel(x, f2d, up, down, padding, flip_filter, gain) does one pass; tests substitute the reference."""
    key = (up, down, padding, flip_filter, gain, run_kernel)
    if key in _functions:
        return _functions[key]

    class Upfirdn2dCuda(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, f):  # pylint: disable=arguments-differ
            y = _run_passes(run_kernel, x, f, up, down, padding, flip_filter, gain)
            ctx.save_for_backward(f)
            ctx.sizes = (x.shape[3], x.shape[2], y.shape[3], y.shape[2])
            return y

        @staticmethod
        def backward(ctx, dy):  # pylint: disable=arguments-differ
            f, = ctx.saved_tensors
            if not ctx.needs_input_grad[0]:
                return None, None
            in_w, in_h, out_w, out_h = ctx.sizes
            fw, fh = _get_filter_size(f)
            px0, _, py0, _ = padding
            grad_padding = (fw - 1 - px0, in_w * up[0] - out_w * down[0] + px0,
                            fh - 1 - py0, in_h * up[1] - out_h * down[1] + py0)
            grad_fn = _upfirdn2d_cuda(down, up, grad_padding, not flip_filter, gain, run_kernel)
            return grad_fn.apply(dy, f), None

    _functions[key] = Upfirdn2dCuda
    return Upfirdn2dCuda


def _parity_check(device='cuda'):
    """Kernel vs reference (forward and gradient) on small random inputs; returns (ok, details)."""
    # The first upfirdn2d call of a process may come from inference code; the check needs autograd regardless.
    with torch.inference_mode(False), torch.enable_grad():
        return _compare_kernel_with_reference(device)


def _compare_kernel_with_reference(device):
    # The reference runs in float64: in float32, cuDNN may use TF32 (10-bit mantissa) and would be the less exact.
    cases = [  # (up, down, padding, filter shape)
        ((2, 2), (1, 1), (2, 1, 2, 1), [4, 4]),
        ((1, 1), (2, 2), (1, 1, 1, 1), [4, 4]),
        ((1, 1), (1, 1), (1, 2, 0, -1), [3, 5]),
        ((2, 1), (1, 2), (5, 4, 1, 2), [12]),
        ((4, 4), (2, 2), (-1, 3, 2, 0), [6, 5]),
    ]
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for up, down, padding, filter_shape in cases:
        x = torch.randn([2, 3, 9, 10], generator=generator).to(device).requires_grad_(True)
        x_ref = x.detach().double().requires_grad_(True)
        f = torch.randn(filter_shape, generator=generator).to(device)
        y_fast = _upfirdn2d_cuda(up, down, padding, False, 1.5).apply(x, f)
        y_ref = _upfirdn2d_ref(x_ref, f, up, down, padding, False, 1.5)
        dy = torch.randn(y_ref.shape, generator=generator).to(device)
        dx_fast, = torch.autograd.grad(y_fast, x, dy)
        dx_ref, = torch.autograd.grad(y_ref, x_ref, dy.double())
        for fast, ref in ((y_fast, y_ref), (dx_fast, dx_ref)):
            if fast.shape != ref.shape:
                return False, f'shape {tuple(fast.shape)} != {tuple(ref.shape)} for up={up} down={down}'
            worst = max(worst, ((fast.double() - ref).abs().max() / ref.abs().max().clamp(min=1e-8)).item())
    return worst <= 1e-4, f'max relative error {worst:.2e} over {len(cases)} cases (forward and gradient)'

#----------------------------------------------------------------------------
