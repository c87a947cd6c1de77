"""Bilinear grid sampling with gradients of any order with respect to both input and grid.

ADA's geometric augmentations (Karras et al. 2020, "Training GANs with limited data", App. B.1) warp images with
grid_sample, and the R1 penalty differentiates D(augment(x)) with respect to x with create_graph=True, so the
sampling must support double backward.

Recent PyTorch (verified on 2.14 by tests/test_op_grid_sample_gradfix.py) differentiates its own
grid_sampler_2d_backward, so we call torch.nn.functional.grid_sample directly. Older versions raise
"derivative for grid_sampler_2d_backward is not implemented"; there (probed once per process) `_GridSample`
keeps the native forward and first backward and, only when a graph of the gradient is requested, differentiates
`_grid_sample_ref`, a gather-based formula in plain torch ops.
"""

import functools

import torch
import torch.nn.functional as F

#----------------------------------------------------------------------------

enabled = True  # False: always plain torch.nn.functional.grid_sample, even where it lacks double backward.

def grid_sample(input, grid):
    """F.grid_sample(input, grid, mode='bilinear', padding_mode='zeros', align_corners=False), twice differentiable.

    Args:
        input:  [N, C, H_in, W_in] float.
        grid:   [N, H_out, W_out, 2] float, (x, y) sample positions in [-1, 1] (pixel edges, align_corners=False).
    Returns:
        [N, C, H_out, W_out].
    """
    if not enabled or _native_double_backward_ok():
        return _native(input, grid)
    return _GridSample.apply(input, grid)

def _native(input, grid):
    return F.grid_sample(input, grid, mode='bilinear', padding_mode='zeros', align_corners=False)

@functools.lru_cache(maxsize=None)
def _native_double_backward_ok():
    """Whether this PyTorch can differentiate grid_sample's backward (w.r.t. input and grid); probed on CPU.

    The probe draws from its own generator: it may first run in the middle of training (inside the augment pipe),
    where a draw from the global RNG would shift the run's random streams and break exact resume."""
    gen = torch.Generator().manual_seed(0)
    input = torch.randn([1, 1, 3, 3], dtype=torch.float64, generator=gen).requires_grad_(True)
    grid = (torch.rand([1, 2, 2, 2], dtype=torch.float64, generator=gen) * 2 - 1).requires_grad_(True)
    try:
        with torch.enable_grad():
            grads = torch.autograd.grad(_native(input, grid).square().sum(), [input, grid], create_graph=True)
            torch.autograd.grad(sum(g.square().sum() for g in grads), [input, grid])
        return True
    except RuntimeError:
        return False

#----------------------------------------------------------------------------
# Reference: each output is the bilinear blend of the 4 input pixels around its sample position; pixels outside
# the image read as zero. With align_corners=False, grid -1/+1 are the outer edges of the border pixels, so pixel
# coordinate = ((g + 1) * size - 1) / 2.

def _grid_sample_ref(input, grid):
    """Same result as _native(input, grid), differentiable to any order (except at pixel boundaries)."""
    batch_size, channels, in_h, in_w = input.shape
    px = ((grid[..., 0] + 1) * in_w - 1) / 2                    # [N, Ho, Wo]
    py = ((grid[..., 1] + 1) * in_h - 1) / 2
    x0, y0 = px.detach().floor(), py.detach().floor()
    flat = input.reshape(batch_size, channels, in_h * in_w)
    out = 0
    for dy in (0, 1):
        for dx in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            weight = (1 - (px - xi).abs()) * (1 - (py - yi).abs())  # Tent weights, linear in the grid.
            inside = (xi >= 0) & (xi < in_w) & (yi >= 0) & (yi < in_h)
            index = (yi.clamp(0, in_h - 1) * in_w + xi.clamp(0, in_w - 1)).long().reshape(batch_size, 1, -1)
            values = flat.gather(2, index.expand(-1, channels, -1)).reshape(batch_size, channels, *px.shape[1:])
            out = out + values * (weight * inside).unsqueeze(1)
    return out

class _GridSample(torch.autograd.Function):
    """Native forward; backward by the native op, or by differentiating the reference when create_graph=True."""
    @staticmethod
    def forward(ctx, input, grid):
        ctx.save_for_backward(input, grid)
        return _native(input, grid)

    @staticmethod
    def backward(ctx, dout):
        input, grid = ctx.saved_tensors
        create_graph = torch.is_grad_enabled()  # Autograd runs backward in grad mode iff create_graph=True.
        with torch.enable_grad():
            leaves = [t if t.requires_grad else t.detach().requires_grad_(True) for t in (input, grid)]
            out = (_grid_sample_ref if create_graph else _native)(*leaves)
            d_input, d_grid = torch.autograd.grad(out, leaves, dout, create_graph=create_graph)
        return d_input, d_grid

#----------------------------------------------------------------------------
