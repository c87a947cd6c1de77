"""upfirdn2d benchmark cases for bench/bench_ops.py: the reference path vs the CUDA kernel.

Shapes are those StyleGAN2 and StyleGAN3 layers run at batch 32 (16 for StyleGAN3), plus odd ones; off CUDA
every dimension shrinks so that the CPU run stays a quick test.
"""

import numpy as np
import torch

from torch_utils.ops import upfirdn2d

PLUGIN_NAME = upfirdn2d._PLUGIN_NAME

#----------------------------------------------------------------------------

def _case(name, shape, device, dtype, op):
    """op(x, impl=...) on x of `shape` (CUDA) or of a small shape with the same parity (CPU)."""
    if device.type != 'cuda':
        n, c, h, w = shape
        shape = [2, 4, 16 + h % 2, 16 + w % 2]
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device, dtype).requires_grad_(True)
    return (f'{name} {"x".join(map(str, shape))}', lambda x: op(x, impl='ref'), lambda x: op(x, impl='cuda'), [x])


def cases(device, dtype):
    """List of (name, ref_fn, fast_fn, inputs); ref_fn(*inputs) and fast_fn(*inputs) return the same tensor."""
    device = torch.device(device)
    blur = upfirdn2d.setup_filter([1, 3, 3, 1], device=device)                 # StyleGAN2 resample filter
    kaiser = upfirdn2d.setup_filter(np.kaiser(12, 4.0), device=device)          # 12 taps: separable, StyleGAN3-like
    odd = torch.randn([3, 5], generator=torch.Generator().manual_seed(1)).to(device)
    ops = upfirdn2d
    return [
        _case('SG2 up2 4x4', [32, 512, 64, 64], device, dtype,
              lambda x, impl: ops.upsample2d(x, blur, impl=impl)),
        _case('SG2 down2 4x4', [32, 128, 256, 256], device, dtype,
              lambda x, impl: ops.downsample2d(x, blur, impl=impl)),
        _case('SG2 filt 4x4', [32, 256, 128, 128], device, dtype,
              lambda x, impl: ops.filter2d(x, blur, padding=1, impl=impl)),
        _case('SG3 up2 12sep', [16, 512, 36, 36], device, dtype,
              lambda x, impl: ops.upfirdn2d(x, kaiser, up=2, padding=[6, 5, 6, 5], gain=4, impl=impl)),
        _case('SG3 down2 12sep', [16, 256, 76, 76], device, dtype,
              lambda x, impl: ops.upfirdn2d(x, kaiser, down=2, padding=[-1, -2, -1, -2], impl=impl)),
        _case('odd u2,1 d1,3 3x5', [8, 64, 37, 53], device, dtype,
              lambda x, impl: ops.upfirdn2d(x, odd, up=[2, 1], down=[1, 3], padding=[2, 1, 0, 3], impl=impl)),
    ]

#----------------------------------------------------------------------------
