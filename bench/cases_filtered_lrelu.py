"""Benchmark cases for filtered_lrelu (bench/bench_ops.py imports this): StyleGAN3 layer shapes and odd ones.

Each case: (name, ref_fn, fast_fn, inputs); ref_fn(*inputs) and fast_fn(*inputs) return the same tensor. Shapes are
those of StyleGAN3-T/R synthesis layers (Karras et al. 2021, Table 1/App. F: 2x oversampled lrelu, 6 * factor taps):
the conv output (size + 2 for the 3x3 conv) goes through filtered_lrelu to the layer's output size.
"""

import numpy as np
import torch

from torch_utils.ops import filtered_lrelu
from torch_utils.ops import upfirdn2d

PLUGIN_NAME = filtered_lrelu.PLUGIN_NAME

#----------------------------------------------------------------------------

def _lowpass(taps, radial=False):
    """A unit-DC-gain lowpass: separable [taps] or 2-D [taps, taps] (radially symmetric, as config R's)."""
    t = np.arange(taps) - (taps - 1) / 2
    f = np.sinc(t / 2) * np.kaiser(taps, 6.0)
    if radial:
        r = np.hypot(t[:, None], t[None, :])
        f = np.sinc(r / 2) * np.outer(np.kaiser(taps, 6.0), np.kaiser(taps, 6.0))
    return upfirdn2d.setup_filter(f, separable=not radial)

def _padding(in_size, out_size, up, down, fu_taps, fd_taps):
    """Centred padding that makes filtered_lrelu map in_size to out_size."""
    total = (out_size - 1) * down + 1 - in_size * up + fu_taps + fd_taps - 2
    lo = (total + up) // 2
    return [lo, total - lo, lo, total - lo]

def _case(name, device, dtype, batch, channels, in_size, out_size, up, down, fu_taps, fd_taps, radial=False,
          gain=np.sqrt(2), slope=0.2, clamp=256):
    """One case; off CUDA the shape shrinks (2 images, 3 channels, ~18 px) so that the CPU run stays a quick test."""
    if device.type != 'cuda':
        small = 18 + in_size % 2
        batch, channels, in_size, out_size = 2, 3, small, max(1, out_size * small // in_size)
    fu = _lowpass(fu_taps).to(device) if fu_taps > 1 else None
    fd = _lowpass(fd_taps, radial).to(device) if fd_taps > 1 else None
    kwargs = dict(fu=fu, fd=fd, up=up, down=down, padding=_padding(in_size, out_size, up, down, fu_taps, fd_taps),
                  gain=gain, slope=slope, clamp=clamp)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn([batch, channels, in_size, in_size], generator=gen).to(device, dtype).requires_grad_(True)
    b = torch.randn([channels], generator=gen).to(device, dtype).requires_grad_(True)
    ref_fn = lambda x, b: filtered_lrelu._filtered_lrelu_ref(x, b=b, **kwargs)
    fast_fn = lambda x, b: filtered_lrelu.filtered_lrelu(x, b=b, impl='cuda', **kwargs)
    return (f'{name} {batch}x{channels}x{in_size}', ref_fn, fast_fn, [x, b])

def cases(device, dtype):
    """StyleGAN3 layer shapes at 256 and 1024 px (batch 16 / 4), plus odd shapes and filters."""
    device = torch.device(device)
    return [
        _case('sg3t256_36px_512ch', device, dtype, 16, 512, 38, 36, 2, 2, 12, 12),
        _case('sg3t256_up_36to68_256ch', device, dtype, 16, 256, 38, 68, 4, 2, 24, 12),
        _case('sg3t256_276px_128ch', device, dtype, 16, 128, 278, 276, 2, 2, 12, 12),
        _case('sg3r256_36px_512ch_radial', device, dtype, 16, 512, 38, 36, 2, 2, 12, 12, radial=True),
        _case('sg3t1024_critical_1024px_32ch', device, dtype, 4, 32, 1026, 1024, 2, 2, 12, 12),
        _case('sg3_torgb_256px', device, dtype, 16, 3, 256, 256, 1, 1, 1, 1, gain=1, slope=1),
        _case('odd_33px_7ch_up2_down1', device, dtype, 3, 7, 33, 61, 2, 1, 6, 5),
    ]

#----------------------------------------------------------------------------
