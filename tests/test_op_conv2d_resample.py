"""conv2d_resample equals the plain composition upsample -> filter -> conv -> filter -> downsample."""

import numpy as np
import pytest
import scipy.signal
import torch

from torch_utils.ops import upfirdn2d
from torch_utils.ops.conv2d_resample import conv2d_resample

#----------------------------------------------------------------------------
# Independent composition in numpy/scipy. Spec: padding applies once, to the zero-inserted image, and is extended
# by the centring pads of the filter: up adds (fw+up-1)//2 before and (fw-up)//2 after; down adds (fw-down+1)//2
# before and (fw-down)//2 after.

def _pad_crop(x, before, after, axis):
    widths = [(0, 0)] * x.ndim
    widths[axis] = (max(before, 0), max(after, 0))
    x = np.pad(x, widths)
    index = [slice(None)] * x.ndim
    index[axis] = slice(max(-before, 0), x.shape[axis] - max(-after, 0))
    return x[tuple(index)]


def _depthwise(x, f, gain=1):
    f2 = f if f.ndim == 2 else np.outer(f, f)
    return np.stack([np.stack([scipy.signal.convolve2d(img, f2 * gain, mode='valid') for img in sample])
                     for sample in x])


def _numpy_conv2d_resample(x, w, f, up, down, padding, groups, flip_weight):
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    f = np.ones([1, 1]) if f is None else np.asarray(f, np.float64)
    fh, fw = (f.shape[0], f.shape[-1])
    px0, px1, py0, py1 = padding
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    n, c, h, wd = x.shape
    xu = np.zeros([n, c, h * up, wd * up])
    xu[:, :, ::up, ::up] = x
    xu = _pad_crop(_pad_crop(xu, py0, py1, axis=2), px0, px1, axis=3)
    if up > 1:
        xu = _depthwise(xu, f, gain=up ** 2)
    out_channels, in_per_group = w.shape[:2]
    out_per_group = out_channels // groups
    conv = scipy.signal.correlate2d if flip_weight else scipy.signal.convolve2d
    y = np.stack([np.stack([
        sum(conv(xu[i, (o // out_per_group) * in_per_group + j], w[o, j], mode='valid') for j in range(in_per_group))
        for o in range(out_channels)]) for i in range(n)])
    if down > 1:
        y = _depthwise(y, f)[:, :, ::down, ::down]
    return y

#----------------------------------------------------------------------------

CASES = [  # (up, down, kernel, filter taps, padding, groups, flip_weight, h, w)
    (1, 1, 3, None, [1, 1, 1, 1], 1, True, 5, 7),
    (1, 1, 3, None, [0, 2, 1, 0], 1, False, 6, 5),
    (1, 1, 1, None, [0, 0, 0, 0], 2, True, 4, 3),
    (2, 1, 3, [1, 3, 3, 1], [1, 1, 1, 1], 1, False, 4, 5),
    (2, 1, 3, [1, 3, 3, 1], [1, 1, 1, 1], 1, True, 5, 3),
    (2, 1, 3, [1, 2, 1], [2, 0, 1, -1], 2, False, 3, 4),
    (2, 1, 1, [1, 3, 3, 1], [0, 0, 0, 0], 1, True, 3, 5),
    (2, 1, 4, [1, 1], [1, 2, 2, 1], 1, True, 4, 4),
    (1, 2, 3, [1, 3, 3, 1], [1, 1, 1, 1], 1, True, 8, 6),
    (1, 2, 3, [1, 3, 3, 1], [1, 1, 1, 1], 2, False, 7, 9),
    (1, 2, 1, [1, 3, 3, 1], [0, 0, 0, 0], 1, True, 6, 8),
    (1, 2, 2, [1, 2, 1], [0, 1, 1, 0], 1, False, 9, 7),
    (4, 1, 3, np.ones(8), [1, 1, 1, 1], 1, True, 3, 2),
    (2, 2, 3, [1, 3, 3, 1], [1, 1, 1, 1], 1, True, 5, 4),
]

@pytest.mark.parametrize('up,down,kernel,taps,padding,groups,flip_weight,h,w', CASES)
def test_conv2d_resample_equals_numpy_composition(up, down, kernel, taps, padding, groups, flip_weight, h, w):
    rng = np.random.RandomState(0)
    x = rng.randn(2, 4, h, w)
    weight = rng.randn(6, 4 // groups, kernel, kernel + (1 if kernel == 2 else 0))  # one non-square kernel
    f = None if taps is None else upfirdn2d.setup_filter(taps).double()
    expected = _numpy_conv2d_resample(x, weight, None if f is None else f.numpy(), up, down, padding, groups,
                                      flip_weight)
    got = conv2d_resample(torch.as_tensor(x), torch.as_tensor(weight), f=f, up=up, down=down, padding=padding,
                          groups=groups, flip_weight=flip_weight)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-9)


def test_conv2d_resample_flip_filter_matches_flipped_filter():
    rng = np.random.RandomState(1)
    x = torch.as_tensor(rng.randn(1, 2, 5, 6))
    w = torch.as_tensor(rng.randn(3, 2, 3, 3))
    f = torch.as_tensor(rng.randn(3, 4))
    for up, down in ((2, 1), (1, 2)):
        got = conv2d_resample(x, w, f, up=up, down=down, padding=1, flip_filter=True)
        torch.testing.assert_close(got, conv2d_resample(x, w, f.flip([0, 1]), up=up, down=down, padding=1))


def test_conv2d_resample_stylegan2_shapes():
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    x = torch.randn(2, 8, 8, 8)
    w = torch.randn(4, 8, 3, 3)
    assert conv2d_resample(x, w, f, up=2, padding=1, flip_weight=False).shape == (2, 4, 16, 16)
    assert conv2d_resample(x, w, f, down=2, padding=1).shape == (2, 4, 4, 4)
    assert conv2d_resample(x, w[:, :, :1, :1], f, down=2).shape == (2, 4, 4, 4)
    assert conv2d_resample(x, w, padding=1).shape == (2, 4, 8, 8)


def test_conv2d_resample_up_then_down_keeps_an_impulse_centred():
    # StyleGAN2 generator (up) and discriminator (down) layers must not shift the image by half a pixel.
    f = upfirdn2d.setup_filter([1, 3, 3, 1]).double()
    w = torch.as_tensor(np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]))[None, None]
    x = torch.zeros(1, 1, 9, 9, dtype=torch.float64)
    x[0, 0, 4, 4] = 1
    y = conv2d_resample(conv2d_resample(x, w, f, up=2, padding=1, flip_weight=False), w, f, down=2, padding=1)
    assert y.shape == x.shape
    torch.testing.assert_close(y, y.flip([2, 3]))
    assert y[0, 0].argmax().item() == 4 * 9 + 4


def test_conv2d_resample_rejects_mismatched_channels():
    with pytest.raises(ValueError, match='channels'):
        conv2d_resample(torch.randn(1, 3, 4, 4), torch.randn(2, 2, 3, 3))
    with pytest.raises(ValueError, match='up'):
        conv2d_resample(torch.randn(1, 2, 4, 4), torch.randn(2, 2, 3, 3), up=0)


@pytest.mark.parametrize('up,down', [(1, 1), (2, 1), (1, 2)])
def test_conv2d_resample_gradcheck_and_gradgradcheck(up, down):
    torch.manual_seed(0)
    x = torch.randn(1, 1, 3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(1, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    f = upfirdn2d.setup_filter([1, 3, 3, 1]).double()
    fn = lambda x, w: conv2d_resample(x, w, f, up=up, down=down, padding=1, flip_weight=(up == 1))
    assert torch.autograd.gradcheck(fn, [x, w])
    assert torch.autograd.gradgradcheck(fn, [x, w])

#----------------------------------------------------------------------------

@pytest.mark.parametrize('up,down,kernel,taps,padding,groups,flip_weight,h,w',
                         [case for case in CASES if case[3] is not None])
def test_conv2d_resample_fast_cpu_upfirdn2d_equals_plain_formula_with_gradients(up, down, kernel, taps, padding,
                                                                                 groups, flip_weight, h, w,
                                                                                 monkeypatch):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn([2, 2 * groups, h, w], dtype=torch.float64, generator=generator, requires_grad=True)
    weight = torch.randn([2 * groups, 2, kernel, kernel], dtype=torch.float64, generator=generator,
                         requires_grad=True)
    f = upfirdn2d.setup_filter(taps).double()
    results = []
    for fast in (True, False):
        monkeypatch.setattr(upfirdn2d, '_FAST_CPU_ENABLED', fast)
        y = conv2d_resample(x, weight, f, up=up, down=down, padding=padding, groups=groups, flip_weight=flip_weight)
        dy = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        results.append([y, *torch.autograd.grad(y, [x, weight], dy)])
    for got, expected in zip(*results):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
