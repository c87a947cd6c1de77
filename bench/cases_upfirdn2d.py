"""upfirdn2d benchmark cases for bench/bench_ops.py: the reference path vs the CUDA kernel.

Shapes are those StyleGAN2 and StyleGAN3 layers run at batch 32 (16 for StyleGAN3), plus odd ones; off CUDA
the batch and channels shrink so that a CPU run finishes.
"""

import numpy as np
import torch

from torch_utils.ops import upfirdn2d

#----------------------------------------------------------------------------

def _case(name, shape, device, dtype, op, **kwargs):
    x = torch.randn(shape, device=device, dtype=dtype)
    ref_fn = lambda x: op(x, impl='ref', **kwargs)
    fast_fn = lambda x: op(x, impl='cuda', **kwargs)
    return (name, ref_fn, fast_fn, (x,))


def cases(device, dtype):
    """List of (name, ref_fn, fast_fn, inputs); ref_fn(*inputs) and fast_fn(*inputs) return the same tensor."""
    device = torch.device(device)
    big = device.type == 'cuda'
    scale = lambda n, c: (n, c) if big else (1, max(c // 16, 4))
    blur = upfirdn2d.setup_filter([1, 3, 3, 1], device=device)                 # StyleGAN2 resample filter
    kaiser = upfirdn2d.setup_filter(np.kaiser(12, 4.0), device=device)          # 12 taps: separable, StyleGAN3-like
    odd = torch.randn([3, 5], device=device)
    ops = upfirdn2d
    result = []
    n, c = scale(32, 512)
    result.append(_case(f'SG2 upsample2d x2 4x4 [{n},{c},64,64]', [n, c, 64, 64], device, dtype,
                        lambda x, **kw: ops.upsample2d(x, blur, **kw)))
    n, c = scale(32, 128)
    result.append(_case(f'SG2 downsample2d x2 4x4 [{n},{c},256,256]', [n, c, 256, 256], device, dtype,
                        lambda x, **kw: ops.downsample2d(x, blur, **kw)))
    n, c = scale(32, 256)
    result.append(_case(f'SG2 filter2d 4x4 [{n},{c},128,128]', [n, c, 128, 128], device, dtype,
                        lambda x, **kw: ops.filter2d(x, blur, padding=1, **kw)))
    n, c = scale(16, 512)
    result.append(_case(f'SG3 up x2 12-tap separable [{n},{c},36,36]', [n, c, 36, 36], device, dtype,
                        lambda x, **kw: ops.upfirdn2d(x, kaiser, up=2, padding=[6, 5, 6, 5], gain=4, **kw)))
    result.append(_case(f'SG3 down x2 12-tap separable [{n},{c},76,76]', [n, c, 76, 76], device, dtype,
                        lambda x, **kw: ops.upfirdn2d(x, kaiser, down=2, padding=[-1, -2, -1, -2], **kw)))
    n, c = scale(8, 64)
    result.append(_case(f'odd up [2,1] down [1,3] 3x5 [{n},{c},37,53]', [n, c, 37, 53], device, dtype,
                        lambda x, **kw: ops.upfirdn2d(x, odd, up=[2, 1], down=[1, 3], padding=[2, 1, 0, 3], **kw)))
    return result

#----------------------------------------------------------------------------
