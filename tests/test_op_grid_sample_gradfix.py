"""grid_sample_gradfix: equals F.grid_sample (bilinear, zeros, align_corners=False) and is twice differentiable."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torch_utils.ops import grid_sample_gradfix as gsg

#----------------------------------------------------------------------------

def _inputs(seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    image = torch.randn([2, 3, 5, 6], generator=gen, dtype=dtype)
    grid = torch.rand([2, 4, 3, 2], generator=gen, dtype=dtype) * 2.4 - 1.2  # Some samples fall outside.
    return image, grid

def _np_bilinear_zeros(image, grid):
    """Textbook bilinear sampling, pixel centres at (i + 0.5) / size * 2 - 1, zero outside (independent loops)."""
    n_img, channels, height, width = image.shape
    out = np.zeros([n_img, channels, grid.shape[1], grid.shape[2]])
    for n in range(n_img):
        for i in range(grid.shape[1]):
            for j in range(grid.shape[2]):
                px = ((grid[n, i, j, 0] + 1) * width - 1) / 2
                py = ((grid[n, i, j, 1] + 1) * height - 1) / 2
                for yy in (int(np.floor(py)), int(np.floor(py)) + 1):
                    for xx in (int(np.floor(px)), int(np.floor(px)) + 1):
                        if 0 <= yy < height and 0 <= xx < width:
                            out[n, :, i, j] += image[n, :, yy, xx] * (1 - abs(px - xx)) * (1 - abs(py - yy))
    return out

def test_grid_sample_matches_numpy_bilinear_with_zero_padding():
    image, grid = _inputs()
    expected = _np_bilinear_zeros(image.numpy(), grid.numpy())
    np.testing.assert_allclose(gsg.grid_sample(image, grid).numpy(), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gsg._grid_sample_ref(image, grid).numpy(), expected, rtol=1e-12, atol=1e-12)

@pytest.mark.parametrize('path', ['public', 'fallback_function'])
def test_grid_sample_gradcheck_and_gradgradcheck_wrt_input_and_grid(path):
    # 'fallback_function' is what runs on a PyTorch without native double backward for grid_sample.
    fn = gsg.grid_sample if path == 'public' else gsg._GridSample.apply
    image, grid = _inputs(seed=1)
    image.requires_grad_(True)
    grid.requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (image, grid))
    assert torch.autograd.gradgradcheck(fn, (image, grid))

def test_native_double_backward_probe_is_true_on_this_torch():
    # The reason grid_sample() can call F.grid_sample directly here (see the module docstring).
    assert gsg._native_double_backward_ok()

def test_native_double_backward_probe_leaves_the_global_rng_untouched():
    # The probe can first run mid-training (inside the augment pipe); a global draw there would break exact resume.
    gsg._native_double_backward_ok.cache_clear()
    torch.manual_seed(123)
    expected_next = torch.rand([4])
    torch.manual_seed(123)
    gsg._native_double_backward_ok()
    assert torch.equal(torch.rand([4]), expected_next)

def test_r1_style_double_backward_through_fallback_equals_native():
    # R1 through augmentation: d/dw |d D(aug(x)) / dx|^2 with the grid constant, as ADA does.
    image, grid = _inputs(seed=2)
    weight = torch.randn([3], dtype=torch.float64, requires_grad=True)
    results = []
    for fn in [lambda i, g: F.grid_sample(i, g, align_corners=False), gsg._GridSample.apply]:
        x = image.clone().requires_grad_(True)
        score = (fn(x, grid) * weight.reshape(1, 3, 1, 1)).square().sum()
        (dx,) = torch.autograd.grad(score, [x], create_graph=True)
        (dw,) = torch.autograd.grad(dx.square().sum(), [weight])
        results.append(dw)
    torch.testing.assert_close(results[0], results[1])

#----------------------------------------------------------------------------
