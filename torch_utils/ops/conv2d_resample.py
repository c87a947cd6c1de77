"""2-D convolution fused with FIR up/downsampling: conv2d_resample.

Meaning (the reference composition; padding is applied once, to the upsampled image, before anything else):

    x -> insert up-1 zeros per sample -> pad -> [up > 1] filter f with gain up^2 -> conv w
      -> [down > 1] filter f -> keep every down-th sample

The pad splits are those of upsample2d() / downsample2d(), so for up=2 or down=2 with a 3x3 kernel, a 4-tap
filter and padding=1 (StyleGAN2 usage) the output is 2H x 2W or H/2 x W/2. All steps are linear and shift
invariant, so they may be reordered: up=2 runs as a strided transposed convolution followed by the filter
(StyleGAN2, Karras et al. 2020, App. B), down=2 as the filter followed by a strided convolution, and 1x1
kernels convolve at the lower resolution.
"""

from .. import misc
from . import conv2d_gradfix as _conv
from . import upfirdn2d

#----------------------------------------------------------------------------

def _resample_padding(up, down, padding, filter_size):
    """Padding (px0, px1, py0, py1) of the upsampled image: user padding + the filter's centring pads."""
    px0, px1, py0, py1 = upfirdn2d._parse_padding(padding)
    fw, fh = filter_size
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    return px0, px1, py0, py1


def _check_args(x, w, up, down, groups):
    with misc.suppress_tracer_warnings():  # Channel counts are constants of the network, also in a trace.
        _check_shapes(x, w, groups)
    for name, value in (('up', up), ('down', down)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f'conv2d_resample: {name}={value!r} must be a positive int')


def _check_shapes(x, w, groups):
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f'conv2d_resample: x must be [N, C, H, W] and w [O, C/groups, kh, kw]; '
                         f'got {tuple(x.shape)} and {tuple(w.shape)}')
    if x.shape[1] != w.shape[1] * groups or w.shape[0] % groups != 0:
        raise ValueError(f'conv2d_resample: x has {x.shape[1]} channels, w {tuple(w.shape)} with groups={groups} '
                         f'expects {w.shape[1] * groups} in and a multiple of {groups} out')


def _transpose_weight(w, groups):
    """[O, I/g, kh, kw] conv weight -> [I, O/g, kh, kw] layout of conv_transpose2d (same taps)."""
    out_channels, in_per_group, kh, kw = w.shape
    w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
    return w.reshape(groups * in_per_group, out_channels // groups, kh, kw)

#----------------------------------------------------------------------------

def conv2d_resample(x, w, f=None, up=1, down=1, padding=0, groups=1, flip_weight=True, flip_filter=False):
    """Convolution with optional FIR up/downsampling (see the module docstring for the exact meaning).

    Args:
        x:           [N, C_in, H, W].
        w:           [C_out, C_in // groups, kh, kw].
        f:           Filter from upfirdn2d.setup_filter() ([fh, fw] or separable [fw]); None = identity.
                     Used only when up > 1 or down > 1.
        up, down:    Integer resampling factors.
        padding:     Padding of the upsampled image: int, [x, y] or [x0, x1, y0, y1].
        groups:      Convolution groups.
        flip_weight: True = correlation (like torch conv2d), False = true convolution.
        flip_filter: True = correlate with f instead of convolving.
    Returns:
        [N, C_out, H', W'] with W' = (W * up + px0 + px1 + pads(f) - (kw - 1) - fw') // down + 1, e.g. 2W for
        up=2 and W/2 for down=2 with padding = kw // 2.
    """
    _check_args(x, w, up, down, groups)
    with misc.suppress_tracer_warnings():  # Kernel sizes are constants of the network, also in a trace.
        kh, kw = int(w.shape[2]), int(w.shape[3])
    filter_size = upfirdn2d._get_filter_size(f) if (up > 1 or down > 1) else (1, 1)
    px0, px1, py0, py1 = _resample_padding(up, down, padding, filter_size)
    if up > 1 and down > 1:
        return _general(x, w, f, up, down, (px0, px1, py0, py1), groups, flip_weight, flip_filter)

    # 1x1 kernels commute with resampling (and need no flip): convolve at the lower resolution.
    if kw == 1 and kh == 1 and down > 1:
        x = upfirdn2d.upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv.conv2d(x, w, groups=groups)
    if kw == 1 and kh == 1 and up > 1:
        x = _conv.conv2d(x, w, groups=groups)
        return upfirdn2d.upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up ** 2, flip_filter=flip_filter)

    if down > 1:
        # Filter (with all the padding), then a strided convolution does conv + decimation in one step.
        x = upfirdn2d.upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv.conv2d(x, w if flip_weight else w.flip([2, 3]), stride=down, groups=groups)

    if up > 1:
        return _upsample_conv(x, w, f, up, (px0, px1, py0, py1), groups, flip_weight, flip_filter)

    # Plain convolution; conv2d pads symmetrically only, so anything else goes through upfirdn2d first.
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        w = w if flip_weight else w.flip([2, 3])
        return _conv.conv2d(x, w, padding=[py0, px0], groups=groups)
    x = upfirdn2d.upfirdn2d(x, None, padding=[px0, px1, py0, py1])
    return _conv.conv2d(x, w if flip_weight else w.flip([2, 3]), groups=groups)

#----------------------------------------------------------------------------

def _upsample_conv(x, w, f, up, padding, groups, flip_weight, flip_filter):
    """up > 1, kernel > 1x1: transposed convolution with stride up, then the FIR filter.

    conv_transpose2d(x, W, stride=up) is the full true convolution of the zero-inserted x with W (minus trailing
    all-zero samples). The target convolves the padded zero-inserted x with f and w' (w' = w flipped when
    flip_weight, since conv2d correlates). Matching the two full convolutions, the filter step needs padding
    p0 - (k - 1) before and p1 + up - k after (negative = crop).
    """
    px0, px1, py0, py1 = padding
    kh, kw = w.shape[2], w.shape[3]
    w = w.flip([2, 3]) if flip_weight else w
    x = _conv.conv_transpose2d(x, _transpose_weight(w, groups), stride=up, groups=groups)
    padding = [px0 - (kw - 1), px1 + up - kw, py0 - (kh - 1), py1 + up - kh]
    return upfirdn2d.upfirdn2d(x, f, padding=padding, gain=up ** 2, flip_filter=flip_filter)


def _general(x, w, f, up, down, padding, groups, flip_weight, flip_filter):
    """up > 1 and down > 1: the reference composition, step by step."""
    x = upfirdn2d.upfirdn2d(x, f, up=up, padding=list(padding), gain=up ** 2, flip_filter=flip_filter)
    x = _conv.conv2d(x, w if flip_weight else w.flip([2, 3]), groups=groups)
    return upfirdn2d.upfirdn2d(x, f, down=down, flip_filter=flip_filter)

#----------------------------------------------------------------------------
