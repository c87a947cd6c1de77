"""Adaptive discriminator augmentation (ADA): the augmentation pipe and the controller that tunes its strength.

Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data" (StyleGAN2-ADA):
  Sec. 2    every image D sees (reals and fakes, in every phase) goes through the same differentiable, randomly
            parameterized pipe; each transform is applied with probability p, so D never learns the augmented
            distribution as long as p < ~0.8 (the transforms are "non-leaking").
  Sec. 3    the overfitting heuristic r_t = E[sign(D(x_real))] and the feedback loop that moves p towards
            r_t = target (0.6), fast enough to go from 0 to 1 in 500k images, adjusting every 4 minibatches.
  App. B    the 18 transforms in 6 groups, in this order: pixel blitting (x-flip, 90-degree rotations, integer
            translation), general geometric (isotropic scaling, pre-rotation, anisotropic scaling, post-rotation,
            fractional translation), colour (brightness, contrast, luma flip, hue rotation, saturation),
            image-space filtering (4 frequency bands), corruptions (additive RGB noise, cutout).

Implementation notes (how, not what):
  - All geometric transforms of an image compose into one 3x3 matrix that maps output pixel positions to input
    positions, so the image is resampled exactly once: reflection padding, 2x upsampling with the symlet-6
    low-pass, bilinear sampling (grid_sample_gradfix, twice differentiable for R1), 2x downsampling with the
    time-reversed low-pass. An orthogonal wavelet's low-pass and its reverse cascade to the identity at the
    original rate, so the pipe adds no blur beyond the transform itself. When only the pixel-blitting transforms
    are enabled every matrix is a permutation of pixels, and the pipe copies pixels (bit-exact, no filtering).
  - All colour transforms compose into one 4x4 matrix acting on homogeneous [r, g, b, 1].
  - An image whose group of transforms drew the identity passes that group bit-exactly unchanged (torch.where),
    so p = 0 is the identity and gradients reach G through exactly the pixels D saw.
  - Images are in D's input range, [-1, 1] with 0 = mid-grey: contrast and luma flip act around 0.
"""

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import persistence, training_stats
from torch_utils.ops import grid_sample_gradfix, upfirdn2d

#----------------------------------------------------------------------------
# Wavelet low-pass filters (analysis filters, orthonormal: taps sum to sqrt(2), squares sum to 1).
# Daubechies' least-asymmetric wavelets ("symlets"), obtained by spectral factorization of
# P(y) = sum_k C(N-1+k, k) y^k, choosing the zeros that make the phase closest to linear;
# tests/test_augment.py repeats that derivation and checks these numbers, orthonormality and vanishing moments.

wavelets = {
    'sym2': [-0.1294095225512604, 0.22414386804201336, 0.836516303737808, 0.48296291314453416],
    'sym6': [0.015404109327044805, 0.003490712084222162, -0.11799011114851977, -0.04831174258569758,
             0.4910559419279738, 0.7876411410286507, 0.33792942172816565, -0.07263752278637652,
             -0.021060292512370852, 0.04472490177078131, 0.0017677118642539882, -0.007800708325032378],
}

#----------------------------------------------------------------------------
# The --augpipe presets of StyleGAN2-ADA: b = blit, g = geom, c = color, f = filter, n = noise, c = cutout.

_blit   = dict(xflip=1, rotate90=1, xint=1)
_geom   = dict(scale=1, rotate=1, aniso=1, xfrac=1)
_color  = dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
_filter = dict(imgfilter=1)
_noise  = dict(noise=1)
_cutout = dict(cutout=1)

augpipe_specs = {
    'blit':   dict(_blit),
    'geom':   dict(_geom),
    'color':  dict(_color),
    'filter': dict(_filter),
    'noise':  dict(_noise),
    'cutout': dict(_cutout),
    'bg':     dict(**_blit, **_geom),
    'bgc':    dict(**_blit, **_geom, **_color),
    'bgcf':   dict(**_blit, **_geom, **_color, **_filter),
    'bgcfn':  dict(**_blit, **_geom, **_color, **_filter, **_noise),
    'bgcfnc': dict(**_blit, **_geom, **_color, **_filter, **_noise, **_cutout),
}

#----------------------------------------------------------------------------
# Filter design.

def design_band_filters(lowpass, num_bands=4):
    """Zero-phase band-pass filter bank from an orthogonal wavelet (StyleGAN2-ADA App. B, image-space filtering).

    An undecimated (a trous) wavelet decomposition with num_bands - 1 levels splits [0, pi] into octaves
    [0, pi/2^(L)], ..., [pi/4, pi/2], [pi/2, pi]; band i's analysis filter is the cascade of the low-pass
    upsampled 1, 2, 4, ... times and, except for the lowest band, a final high-pass. Analysis followed by
    synthesis of one band is that filter convolved with its reverse: symmetric (zero phase), and since the
    halved low-pass and high-pass are power complementary (|H|^2 + |G|^2 = 1) the bands add up to a unit impulse.

    Args:
        lowpass:   orthonormal wavelet low-pass taps [L] (sum sqrt(2)).
        num_bands: number of bands (>= 2).
    Returns:
        float64 array [num_bands, taps], lowest band first; for sym2 and 4 bands, taps = 43.
    """
    lowpass = np.asarray(lowpass, dtype=np.float64) / np.sqrt(2)            # Power complementary with highpass.
    highpass = lowpass[::-1] * (-1.0) ** np.arange(lowpass.size)            # Quadrature mirror filter.

    def upsampled(taps, factor):
        out = np.zeros((taps.size - 1) * factor + 1)
        out[::factor] = taps
        return out

    analysis = []                                                           # Highest band first.
    low_chain = np.ones(1)
    for level in range(num_bands - 1):
        analysis.append(np.convolve(low_chain, upsampled(highpass, 2 ** level)))
        low_chain = np.convolve(low_chain, upsampled(lowpass, 2 ** level))
    analysis.append(low_chain)
    taps = 2 * max(a.size for a in analysis) - 1
    bank = np.zeros([num_bands, taps])
    for row, band in enumerate(reversed(analysis)):                        # Lowest band first.
        response = np.convolve(band, band[::-1])                          # Analysis then synthesis.
        start = (taps - response.size) // 2
        bank[row, start: start + response.size] = response
    return bank

#----------------------------------------------------------------------------
# Homogeneous matrices for a batch: each argument is a tensor [N] (or a number); the result is [N, 3, 3] or
# [N, 4, 4]. Pixel coordinates are centred on the image, x to the right, y down, in pixels.

def _matrix(rows, ref):
    """Stack nested lists of [N] tensors / numbers into [N, R, C] on ref's device and dtype."""
    batch = ref.shape[0]
    elems = [[torch.as_tensor(e, dtype=ref.dtype, device=ref.device).expand(batch) for e in row] for row in rows]
    return torch.stack([torch.stack(row, dim=-1) for row in elems], dim=-2)

def translate2d(tx, ty, ref):
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], ref)

def scale2d(sx, sy, ref):
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], ref)

def rotate2d(cos, sin, ref):
    """Rotation by the angle with the given cosine and sine (passed separately so 90-degree steps are exact)."""
    return _matrix([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]], ref)

def translate3d(tx, ty, tz, ref):
    return _matrix([[1, 0, 0, tx], [0, 1, 0, ty], [0, 0, 1, tz], [0, 0, 0, 1]], ref)

def scale3d(sx, sy, sz, ref):
    return _matrix([[sx, 0, 0, 0], [0, sy, 0, 0], [0, 0, sz, 0], [0, 0, 0, 1]], ref)

def rotate3d(axis, theta, ref):
    """Rotation by theta [N] (radians) around the unit vector axis [3] (Rodrigues' formula), homogeneous 4x4."""
    ax, ay, az = [float(a) for a in axis]
    cos, sin = torch.cos(theta), torch.sin(theta)
    cc = 1 - cos
    return _matrix([[ax * ax * cc + cos,      ax * ay * cc - az * sin, ax * az * cc + ay * sin, 0],
                    [ay * ax * cc + az * sin, ay * ay * cc + cos,      ay * az * cc - ax * sin, 0],
                    [az * ax * cc - ay * sin, az * ay * cc + ax * sin, az * az * cc + cos,      0],
                    [0, 0, 0, 1]], ref)

def _precise_dtype(device):
    """float64 for transform matrices and sign counts (exact 90-degree turns, exact sums), except on MPS."""
    return torch.float32 if device.type == 'mps' else torch.float64

#----------------------------------------------------------------------------
# Random draws. Every transform draws its gate and parameters through this object, so a debug run can replace
# them all by one percentile of their distributions (to visualize a transform at a known strength).

class _Draws:
    """Per-image random numbers on `device`; debug_percentile in [0, 1] makes every draw deterministic."""
    def __init__(self, batch_size, device, debug_percentile=None):
        self.batch_size, self.device = batch_size, device
        self.debug = None if debug_percentile is None else float(debug_percentile)

    def _quantiles(self, shape):
        if self.debug is None:
            return torch.rand(shape, device=self.device)
        return torch.full(shape, self.debug, device=self.device)

    def gate(self, prob):
        """[N] bool: apply the transform to image n, with probability prob (debug: always, if prob > 0)."""
        prob = torch.as_tensor(prob, dtype=torch.float32, device=self.device)
        if self.debug is not None:
            return (prob > 0).expand(self.batch_size)
        return torch.rand([self.batch_size], device=self.device) < prob

    def uniform(self, low, high, shape=()):
        return low + (high - low) * self._quantiles([self.batch_size, *shape])

    def integers(self, num_values, shape=()):
        """Uniform over {0, ..., num_values - 1}, as float."""
        return (self._quantiles([self.batch_size, *shape]) * num_values).floor().clamp(max=num_values - 1)

    def normal(self, std, shape=()):
        if self.debug is None:
            return torch.randn([self.batch_size, *shape], device=self.device) * std
        q = torch.full([self.batch_size, *shape], self.debug, device=self.device).clamp(1e-6, 1 - 1e-6)
        return torch.erfinv(q * 2 - 1) * (2 ** 0.5) * std

    def lognormal2(self, std, shape=()):
        """2^N(0, std^2), i.e. lognormal(0, (std ln 2)^2): std = 1 means a factor 2 per standard deviation."""
        return torch.exp2(self.normal(std, shape))

    def noise_like(self, images):
        if self.debug is None:
            return torch.randn_like(images)
        return torch.zeros_like(images)  # Noise is unbounded per pixel; debug shows the noise-free image.

#----------------------------------------------------------------------------
# Reflection padding by index, valid for any padding width (torch's 'reflect' mode needs pad < size).

def _reflect_any(index, size):
    """Mirror an integer index tensor into [0, size) about the edge pixels (..., 2, 1, 0, 1, 2, ...)."""
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    index = index.remainder(period)
    return torch.where(index < size, index, period - index)

def _reflect_indices(size, before, after, device):
    """Source index of every position of an axis of length size padded by before/after. int64 [before+size+after]."""
    return _reflect_any(torch.arange(-before, size + after, device=device), size)

def _reflect_pad(images, pad_left, pad_right, pad_top, pad_bottom):
    """images [N, C, H, W] -> [N, C, H + pad_top + pad_bottom, W + pad_left + pad_right], mirror padded."""
    _, _, height, width = images.shape
    images = images.index_select(3, _reflect_indices(width, pad_left, pad_right, images.device))
    return images.index_select(2, _reflect_indices(height, pad_top, pad_bottom, images.device))

#----------------------------------------------------------------------------

@persistence.persistent_class
class AugmentPipe(torch.nn.Module):
    """The ADA augmentation pipe. Multipliers (xflip, ..., cutout) scale the probability p of each transform
    (0 disables it); the *_std / *_max knobs set its strength. Presets: augpipe_specs."""

    def __init__(self,
        xflip=0, rotate90=0, xint=0, xint_max=0.125,           # Pixel blitting; xint_max: fraction of the size.
        scale=0, rotate=0, aniso=0, xfrac=0,                    # General geometric transforms.
        scale_std=0.2, rotate_max=1, aniso_std=0.2,             # Std of log2(scale); max angle as a fraction of pi.
        xfrac_std=0.125,                                        # Std of the fractional translation (of the size).
        brightness=0, contrast=0, lumaflip=0, hue=0, saturation=0,   # Colour transforms.
        brightness_std=0.2, contrast_std=0.5,                   # Std of the offset; std of log2(contrast).
        hue_max=1, saturation_std=1,                            # Max hue angle (fraction of pi); std log2(sat).
        imgfilter=0, imgfilter_bands=[1, 1, 1, 1],
        imgfilter_std=1,                                        # Std of log2(band gain).
        noise=0, cutout=0,                                      # Corruptions.
        noise_std=0.1, cutout_size=0.5,                         # Std of the noise std; cutout side (of the size).
    ):
        super().__init__()
        if len(imgfilter_bands) != 4:
            raise ValueError(f'AugmentPipe: imgfilter_bands={imgfilter_bands!r} must have 4 multipliers, one per '
                             f'octave band (lowest first)')
        self.register_buffer('p', torch.zeros([]))              # Overall probability, tuned by ADA.

        self.xflip, self.rotate90, self.xint, self.xint_max = float(xflip), float(rotate90), float(xint), \
            float(xint_max)
        self.scale, self.rotate, self.aniso, self.xfrac = float(scale), float(rotate), float(aniso), float(xfrac)
        self.scale_std, self.rotate_max = float(scale_std), float(rotate_max)
        self.aniso_std, self.xfrac_std = float(aniso_std), float(xfrac_std)
        self.brightness, self.contrast, self.lumaflip = float(brightness), float(contrast), float(lumaflip)
        self.hue, self.saturation = float(hue), float(saturation)
        self.brightness_std, self.contrast_std = float(brightness_std), float(contrast_std)
        self.hue_max, self.saturation_std = float(hue_max), float(saturation_std)
        self.imgfilter, self.imgfilter_bands = float(imgfilter), list(imgfilter_bands)
        self.imgfilter_std = float(imgfilter_std)
        self.noise, self.cutout, self.noise_std, self.cutout_size = float(noise), float(cutout), \
            float(noise_std), float(cutout_size)

        # Geometric resampling filter: symlet-6 low-pass (12 taps).
        self.register_buffer('Hz_geom', torch.as_tensor(wavelets['sym6'], dtype=torch.float32))
        # Image-space filter bank: 4 zero-phase octave bands from the symlet-2 wavelet, lowest first ([4, 43]).
        self.register_buffer('Hz_fbank', torch.as_tensor(design_band_filters(wavelets['sym2'], num_bands=4),
                                                         dtype=torch.float32))

    def extra_repr(self):
        enabled = [name for name in ['xflip', 'rotate90', 'xint', 'scale', 'rotate', 'aniso', 'xfrac', 'brightness',
                                     'contrast', 'lumaflip', 'hue', 'saturation', 'imgfilter', 'noise', 'cutout']
                   if getattr(self, name) != 0]
        return f'p={float(self.p):g}, enabled=[{", ".join(enabled)}]'

    #------------------------------------------------------------------------

    def forward(self, images, debug_percentile=None):
        """Augment a batch, each image with its own random transforms.

        Args:
            images:           [N, C, H, W] float, D's input range ([-1, 1]). Colour transforms need C = 3, or
                              C = 1 (grayscale: brightness, contrast and luma flip apply; hue and saturation,
                              which only move colour around the grey axis, leave it unchanged).
            debug_percentile: None, or a number in [0, 1]: ignore p and apply every enabled transform with all its
                              random parameters at this percentile of their distributions (for visualization).
        Returns:
            [N, C, H, W], same dtype and device; differentiable with respect to `images` (to any order).
        """
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
            raise ValueError(f'AugmentPipe: images must be a float tensor [N, C, H, W], got '
                             f'{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}'
                             f'{" " + str(images.dtype) if isinstance(images, torch.Tensor) else ""}')
        if debug_percentile is None and float(self.p) == 0:
            return images                                         # p = 0: the identity, no work, no RNG use.
        draws = _Draws(images.shape[0], images.device, debug_percentile)
        prob = self.p if debug_percentile is None else torch.ones([], device=images.device)
        work_dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
        x = images.to(work_dtype)
        if self._blit_enabled() or self._geom_enabled():
            x = self._geometric(x, draws, prob)
        if self._color_enabled():
            x = self._color(x, draws, prob)
        if self.imgfilter != 0 and any(band != 0 for band in self.imgfilter_bands):
            x = self._image_filter(x, draws, prob)
        if self.noise != 0:
            x = self._additive_noise(x, draws, prob)
        if self.cutout != 0:
            x = self._cutout(x, draws, prob)
        return x.to(images.dtype)

    def _blit_enabled(self):
        return any(m != 0 for m in (self.xflip, self.rotate90, self.xint))

    def _geom_enabled(self):
        return any(m != 0 for m in (self.scale, self.rotate, self.aniso, self.xfrac))

    def _color_enabled(self):
        return any(m != 0 for m in (self.brightness, self.contrast, self.lumaflip, self.hue, self.saturation))

    #------------------------------------------------------------------------
    # Geometric transforms (App. B, "pixel blitting" and "general geometric transformations").

    def _geometric(self, x, draws, prob):
        """All geometric transforms of each image as one inverse matrix, then one resampling."""
        batch_size, _, height, width = x.shape
        matrix_ref = torch.zeros([batch_size], dtype=_precise_dtype(x.device), device=x.device)
        inv = self._sample_geometric_inverse(draws, prob, width, height, matrix_ref)   # [N, 3, 3] out -> in
        changed = (inv != torch.eye(3, dtype=inv.dtype, device=inv.device)).flatten(1).any(dim=1)
        # Blitting alone moves pixel centres onto pixel centres (90-degree turns need equal size parity).
        if not self._geom_enabled() and (self.rotate90 == 0 or (width - height) % 2 == 0):
            return _apply_to_changed(x, changed, lambda subset, index: _warp_integer(subset, inv[index]))
        return _apply_to_changed(x, changed,
                                 lambda subset, index: _warp_resampled(subset, inv[index], self.Hz_geom))

    def _sample_geometric_inverse(self, draws, prob, width, height, ref):
        """[N, 3, 3] (ref's dtype): maps output pixel positions (centred, in pixels) to input positions. Composing the
        inverses of the transforms in application order: inv = T1^-1 T2^-1 ... so out(q) = in(inv q)."""
        inv = torch.eye(3, dtype=ref.dtype, device=ref.device).expand(ref.shape[0], 3, 3)
        def gated(value, multiplier, neutral):
            # One gate per image for all components of a transform ([N] or [N, 2] values): App. B applies "the"
            # translation with probability p, so x and y move together or not at all.
            apply = draws.gate(prob * multiplier).reshape(-1, *[1] * (value.ndim - 1))
            return torch.where(apply, value.to(ref.dtype), torch.full_like(value, neutral, dtype=ref.dtype))

        if self.xflip != 0:                                       # x-flip: i ~ U{0, 1}, scale x by 1 - 2i.
            sign = gated(1 - 2 * draws.integers(2), self.xflip, 1)
            inv = inv @ scale2d(sign, 1, ref)
        if self.rotate90 != 0:                                    # 90-degree rotations: i ~ U{0, 1, 2, 3}.
            quarter = gated(draws.integers(4), self.rotate90, 0)
            cos = torch.tensor([1, 0, -1, 0], dtype=ref.dtype, device=ref.device)[quarter.long()]
            sin = torch.tensor([0, 1, 0, -1], dtype=ref.dtype, device=ref.device)[quarter.long()]
            inv = inv @ rotate2d(cos, -sin, ref)
        if self.xint != 0:                                        # Integer translation: t ~ U(-max, max)^2.
            shift = draws.uniform(-self.xint_max, self.xint_max, [2]) * torch.tensor([width, height], device=ref.device)
            shift = gated(shift.round(), self.xint, 0)                                              # [N, 2]
            inv = inv @ translate2d(-shift[:, 0], -shift[:, 1], ref)

        if self.scale != 0:                                       # Isotropic scaling: s ~ 2^N(0, scale_std^2).
            s = gated(draws.lognormal2(self.scale_std), self.scale, 1)
            inv = inv @ scale2d(1 / s, 1 / s, ref)
        # Two rotations around the anisotropic scaling, each with 1 - sqrt(1 - p) so one happens with p.
        rotate_prob = 1 - (1 - (prob * self.rotate).clamp(0, 1)).sqrt()
        for rotation in ('pre', 'post'):
            if rotation == 'post' and self.aniso != 0:            # Anisotropic scaling: s ~ 2^N(0, aniso_std^2).
                s = gated(draws.lognormal2(self.aniso_std), self.aniso, 1)
                inv = inv @ scale2d(1 / s, s, ref)
            if self.rotate != 0:                                  # Rotation: theta ~ U(-pi, pi) * rotate_max.
                theta = draws.uniform(-np.pi, np.pi).to(ref.dtype) * self.rotate_max
                theta = torch.where(draws.gate(rotate_prob), theta, torch.zeros_like(theta))
                inv = inv @ rotate2d(torch.cos(-theta), torch.sin(-theta), ref)
        if self.xfrac != 0:                                       # Fractional translation: t ~ N(0, xfrac_std^2).
            shift = draws.normal(self.xfrac_std, [2]) * torch.tensor([width, height], device=ref.device)
            shift = gated(shift, self.xfrac, 0)                                                     # [N, 2]
            inv = inv @ translate2d(-shift[:, 0], -shift[:, 1], ref)
        return inv

    #------------------------------------------------------------------------
    # Colour transforms (App. B, "color transformations"), on homogeneous [r, g, b, 1].

    def _color(self, x, draws, prob):
        batch_size, channels = x.shape[:2]
        if channels not in (1, 3):
            raise ValueError(f'AugmentPipe: colour transforms (brightness, contrast, lumaflip, hue, saturation) need '
                             f'1 or 3 channels, got {channels}; disable them for this dataset')
        ref = torch.zeros([batch_size], dtype=_precise_dtype(x.device), device=x.device)
        mat = self._sample_color_matrix(draws, prob, ref, grey=(channels == 1))     # [N, 4, 4]
        is_identity = (mat == torch.eye(4, dtype=mat.dtype, device=mat.device)).flatten(1).all(dim=1)
        mat = mat.to(x.dtype)
        flat = x.reshape(batch_size, channels, -1)
        if channels == 3:
            out = mat[:, :3, :3] @ flat + mat[:, :3, 3:]
        else:
            # A grey pixel (v, v, v) stays grey under every colour transform here: read the grey-axis action.
            gain = mat[:, :3, :3].sum(dim=2).mean(dim=1)
            offset = mat[:, :3, 3].mean(dim=1)
            out = flat * gain[:, None, None] + offset[:, None, None]
        return torch.where(is_identity[:, None, None, None], x, out.reshape(x.shape))

    def _sample_color_matrix(self, draws, prob, ref, grey=False):
        """[N, 4, 4] (ref's dtype), applied as C @ [r, g, b, 1]; each new transform multiplies from the left.
        grey=True leaves out hue and saturation, which act only off the grey axis (exactly, not up to rounding)."""
        mat = torch.eye(4, dtype=ref.dtype, device=ref.device).expand(ref.shape[0], 4, 4)
        luma_axis = np.ones(3) / np.sqrt(3)                       # The grey axis; 0 is mid-grey.
        v = torch.tensor([*luma_axis, 0], dtype=ref.dtype, device=ref.device)
        vvT = torch.outer(v, v)
        eye = torch.eye(4, dtype=ref.dtype, device=ref.device)
        def gated(value, multiplier, neutral):
            return torch.where(draws.gate(prob * multiplier), value.to(ref.dtype), torch.full_like(ref, neutral))

        if self.brightness != 0:                                  # Brightness: add b ~ N(0, brightness_std^2).
            b = gated(draws.normal(self.brightness_std), self.brightness, 0)
            mat = translate3d(b, b, b, ref) @ mat
        if self.contrast != 0:                                    # Contrast: scale by c ~ 2^N(0, contrast_std^2).
            c = gated(draws.lognormal2(self.contrast_std), self.contrast, 1)
            mat = scale3d(c, c, c, ref) @ mat
        if self.lumaflip != 0:                                    # Luma flip: mirror along the grey axis.
            flip = gated(draws.integers(2), self.lumaflip, 0)
            mat = (eye - 2 * vvT * flip[:, None, None]) @ mat
        if self.hue != 0 and not grey:                            # Hue: rotate around the grey axis.
            theta = gated(draws.uniform(-np.pi, np.pi) * self.hue_max, self.hue, 0)
            mat = rotate3d(luma_axis, theta, ref) @ mat
        if self.saturation != 0 and not grey:                     # Saturation: scale colour off the grey axis.
            s = gated(draws.lognormal2(self.saturation_std), self.saturation, 1)
            mat = (vvT + (eye - vvT) * s[:, None, None]) @ mat
        return mat

    #------------------------------------------------------------------------
    # Image-space filtering (App. B): amplify/attenuate 4 octave bands, keeping the expected image power.

    def _image_filter(self, x, draws, prob):
        batch_size = x.shape[0]
        bank = self.Hz_fbank.to(x.dtype)                                     # [bands, taps]
        num_bands = bank.shape[0]
        gains = torch.ones([batch_size, num_bands], dtype=x.dtype, device=x.device)
        for band, multiplier in enumerate(self.imgfilter_bands):
            t = draws.lognormal2(self.imgfilter_std).to(x.dtype)
            apply = draws.gate(prob * self.imgfilter * multiplier)
            gains[:, band] = torch.where(apply, gains[:, band] * t, gains[:, band])
        changed = (gains != 1).any(dim=1)
        # Expected power of natural images per band ~ [10, 1, 1, 1] / 13 (1/f^2 spectrum, 4 octave bands).
        band_power = torch.tensor([10, 1, 1, 1], dtype=x.dtype, device=x.device) / 13
        gains = gains / (gains.square() * band_power[:num_bands]).sum(dim=1, keepdim=True).sqrt()
        taps_per_image = gains @ bank                                        # [N, taps], zero phase.
        return _apply_to_changed(x, changed, lambda subset, index: _filter_separable(subset, taps_per_image[index]))

    #------------------------------------------------------------------------
    # Corruptions (App. B): additive RGB noise and cutout.

    def _additive_noise(self, x, draws, prob):
        sigma = draws.normal(self.noise_std).abs()                           # Per image: sigma ~ |N(0, std^2)|.
        sigma = torch.where(draws.gate(prob * self.noise), sigma, torch.zeros_like(sigma)).to(x.dtype)
        return x + draws.noise_like(x) * sigma[:, None, None, None]

    def _cutout(self, x, draws, prob):
        """Zero (mid-grey) a rectangle of cutout_size times the image size, centred uniformly in the image."""
        _, _, height, width = x.shape
        apply = draws.gate(prob * self.cutout)
        centre = draws.uniform(0, 1, [2]).to(x.dtype)                         # [N, 2], fractions of (W, H).
        xs = (torch.arange(width, device=x.device, dtype=x.dtype) + 0.5) / width
        ys = (torch.arange(height, device=x.device, dtype=x.dtype) + 0.5) / height
        inside_x = (xs[None, :] - centre[:, 0:1]).abs() < self.cutout_size / 2        # [N, W]
        inside_y = (ys[None, :] - centre[:, 1:2]).abs() < self.cutout_size / 2        # [N, H]
        inside = inside_y[:, :, None] & inside_x[:, None, :] & apply[:, None, None]   # [N, H, W]
        return x * (~inside)[:, None].to(x.dtype)

#----------------------------------------------------------------------------
# Per-image application helpers.

def _apply_to_changed(x, changed, transform):
    """transform(x[index], index) for the images where changed [N] (bool) is set; the others pass bit-exactly
    unchanged and cost nothing (at ADA's usual p most images skip a group). One host sync."""
    index = changed.nonzero()[:, 0]
    if index.numel() == 0:
        return x
    return x.index_copy(0, index, transform(x.index_select(0, index), index))

def _filter_separable(x, taps_per_image):
    """Filter each image along x, then along y, with its own odd-length 1-D filter (centred), mirror padding.
    x: [N, C, H, W]; taps_per_image: [N, taps]."""
    batch_size, channels, height, width = x.shape
    pad = taps_per_image.shape[1] // 2
    weight = taps_per_image.repeat_interleave(channels, dim=0)[:, None, None, :]   # [N*C, 1, 1, taps]
    y = _reflect_pad(x, pad, pad, pad, pad).reshape(1, batch_size * channels, height + 2 * pad, width + 2 * pad)
    y = F.conv2d(y, weight, groups=batch_size * channels)
    y = F.conv2d(y, weight.transpose(2, 3), groups=batch_size * channels)
    return y.reshape(x.shape)

#----------------------------------------------------------------------------
# Resampling with a per-image inverse matrix.

def _output_pixel_centres(height, width, margin, step, device, dtype):
    """Centred coordinates (x, y, 1) of a grid of pixel centres: [rows, cols, 3]. The grid covers the output
    image plus `margin` output pixels on each side, with spacing `step` output pixels."""
    cols = round((width + 2 * margin) / step)
    rows = round((height + 2 * margin) / step)
    xs = (torch.arange(cols, device=device, dtype=dtype) + 0.5) * step - margin - width / 2
    ys = (torch.arange(rows, device=device, dtype=dtype) + 0.5) * step - margin - height / 2
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing='ij')
    return torch.stack([grid_x, grid_y, torch.ones_like(grid_x)], dim=-1)

def _warp_integer(x, inv):
    """Pixel blitting: inv maps pixel centres onto pixel centres, so each output pixel copies one input pixel
    (mirror reflection outside the image). Bit-exact. x: [N, C, H, W]; inv: [N, 3, 3]."""
    batch_size, channels, height, width = x.shape
    centres = _output_pixel_centres(height, width, 0, 1, x.device, inv.dtype).reshape(1, -1, 3)
    src = centres @ inv.transpose(1, 2)                                       # [N, H*W, 3]
    col = (src[..., 0] + width / 2 - 0.5).round().long()
    row = (src[..., 1] + height / 2 - 0.5).round().long()
    col = _reflect_any(col, width)
    row = _reflect_any(row, height)
    index = (row * width + col)[:, None, :].expand(-1, channels, -1)
    return x.reshape(batch_size, channels, height * width).gather(2, index).reshape(x.shape)

_GEOM_PAD_MARGIN = 1      # Extra reflection padding beyond the up filter's support (bilinear footprint).

def _warp_padding(inv, width, height, grid_margin, filter_margin):
    """Padding (left, right, top, bottom) in whole pixels so that the input positions that inv maps the output
    (grown by grid_margin pixels per side) to, plus filter_margin, lie inside; the same for the whole batch,
    at most 4x the size per side (beyond that grid_sample reads zeros). One host sync."""
    half_w, half_h = width / 2 + grid_margin, height / 2 + grid_margin
    corners = torch.tensor([[-half_w, -half_h, 1], [half_w, -half_h, 1], [-half_w, half_h, 1], [half_w, half_h, 1]],
                           dtype=inv.dtype, device=inv.device)
    src = (corners[None] @ inv.transpose(1, 2))[..., :2]                      # [N, 4, 2]; affine: corners suffice.
    half_size = torch.tensor([width / 2, height / 2], dtype=inv.dtype, device=inv.device)
    reach = torch.cat([-(src.amin(dim=(0, 1)) + half_size), src.amax(dim=(0, 1)) - half_size]).cpu().tolist()
    left, top, right, bottom = [int(np.clip(np.ceil(r + filter_margin), 0, 4 * size))
                                for r, size in zip(reach, (width, height, width, height))]
    return left, right, top, bottom

def _warp_resampled(x, inv, lowpass):
    """General warp: reflect-pad, upsample 2x (low-pass), bilinear sample at 2x, downsample 2x (reversed
    low-pass). x: [N, C, H, W]; inv: [N, 3, 3] (output -> input, centred pixel coordinates);
    lowpass: [L] taps, L even (12 for symlet-6)."""
    batch_size, _, height, width = x.shape
    taps = lowpass.numel()
    lowpass = (lowpass / lowpass.sum()).to(torch.float32)
    # Down-sampling 2x with L taps turns 2 * size + L - 2 samples into size: the 2x grid extends this far
    # (in output pixels) past each edge of the output.
    grid_margin = (taps - 2) / 4
    # The symlets are only nearly linear phase: their centroid c is off the middle (L - 1) / 2. Upsampling
    # then displaces the image content by delta (in 1x pixels), and downsampling displaces it back by the same
    # amount. Both cancel for translations but not under rotation, so both sampling grids are corrected.
    centroid = float((torch.arange(taps, dtype=torch.float64) * lowpass.cpu().double()).sum())
    delta = ((taps - 1) / 2 - centroid) / 2

    # Reflection padding: the input area the 2x grid reads, plus the up filter's reach and the bilinear footprint.
    pad_left, pad_right, pad_top, pad_bottom = _warp_padding(inv, width, height, grid_margin + abs(delta),
                                                             abs(delta) + taps / 4 + _GEOM_PAD_MARGIN)
    padded = _reflect_pad(x, pad_left, pad_right, pad_top, pad_bottom)
    padded_h, padded_w = padded.shape[2:]

    # 2x upsampling. Zero-inserted sample i stands for input pixel centre i / 2 + 0.5; padding (L/2, L/2 - 1)
    # keeps the size, and the content of 2x pixel j ends up at padded position (j + 0.5) / 2 + delta.
    upsampled = upfirdn2d.upfirdn2d(x=padded, f=lowpass, up=2, padding=[taps // 2, taps // 2 - 1] * 2, gain=4)

    # Bilinear sampling on the 2x grid, shifted by delta so that the down filter centres on the output pixels.
    centres = _output_pixel_centres(height, width, grid_margin, 0.5, x.device, inv.dtype)   # [h2, w2, 3]
    centres = centres + torch.tensor([delta, delta, 0], dtype=inv.dtype, device=x.device)
    grid_h, grid_w = centres.shape[:2]
    src = centres.reshape(1, -1, 3) @ inv.transpose(1, 2)                    # [N, h2*w2, 3] centred input coords
    norm_x = (src[..., 0] + width / 2 + pad_left - delta) / padded_w * 2 - 1   # align_corners=False: edges at +-1.
    norm_y = (src[..., 1] + height / 2 + pad_top - delta) / padded_h * 2 - 1
    grid = torch.stack([norm_x, norm_y], dim=-1).reshape(batch_size, grid_h, grid_w, 2).to(x.dtype)
    sampled = grid_sample_gradfix.grid_sample(upsampled, grid)

    # 2x downsampling with the reversed low-pass: with the up filter it forms the wavelet's autocorrelation,
    # a unit impulse at even lags, so an identity matrix returns the input.
    return upfirdn2d.upfirdn2d(x=sampled, f=lowpass, down=2, flip_filter=True)

#----------------------------------------------------------------------------
# ADA controller (StyleGAN2-ADA Sec. 3): the overfitting heuristic r_t = E[sign(D(x_real))] over the last
# `interval` minibatches, and p <- max(p + sign(r_t - target) * batch_size * interval / (ada_kimg * 1000), 0),
# so p can move from 0 to 1 in ada_kimg thousand real images.

class AdaController:
    """Tunes augment_pipe.p from the signs of D's logits on real images.

    How a training loop uses it (batch_size = total images per iteration, over all ranks):

        ada = AdaController(augment_pipe, target=0.6, interval=4, ada_kimg=500, batch_size=batch_size)
        for each iteration:
            ... D's main phase computes real_logits = D(augment_pipe(real_img), c) ...
            ada.accumulate(real_logits)      # any shape; only the signs count; no host sync
            ... optimizer steps ...
            ada.step()                       # once per iteration; adjusts p every `interval` calls
        snapshot:  extra['ada'] = ada.state_dict()         (p also lives in augment_pipe.p)
        resume:    ada.load_state_dict(extra['ada'])       (after augment_pipe's buffers are restored)

    Where the logits are not at hand (they live inside the loss), feed the statistic the loss reports instead:
    ada.accumulate_mean(collector.mean('Loss/signs/real'), collector.num('Loss/signs/real')) with a
    training_stats.Collector(regex='Loss/signs/real', keep_previous=False) updated before each step(). Values
    passed to accumulate() are summed over ranks at each adjustment (torch.distributed, if initialized); values
    passed to accumulate_mean() are taken as already global (a Collector reduces over ranks itself).
    Each adjustment reports 'Progress/augment' (p after the change) to training_stats when report_stats=True.
    """

    def __init__(self, augment_pipe, target=0.6, interval=4, ada_kimg=500, batch_size=None, report_stats=True):
        if augment_pipe is None or not hasattr(augment_pipe, 'p'):
            raise ValueError('AdaController: augment_pipe must be an AugmentPipe (with a p buffer), got '
                             f'{type(augment_pipe).__name__}')
        if not (isinstance(batch_size, int) and batch_size > 0):
            raise ValueError(f'AdaController: batch_size must be a positive int (images per iteration), '
                             f'got {batch_size!r}')
        if not (interval >= 1 and ada_kimg > 0):
            raise ValueError(f'AdaController: need interval >= 1 and ada_kimg > 0, got interval={interval}, '
                             f'ada_kimg={ada_kimg}')
        self.augment_pipe = augment_pipe
        self.target, self.interval, self.ada_kimg = float(target), int(interval), float(ada_kimg)
        self.batch_size, self.report_stats = batch_size, report_stats
        self._local = None            # Tensor [sum of signs, count] on the logits' device, this rank only.
        self._global_sum = 0.0        # Already-reduced sums from accumulate_mean().
        self._global_num = 0.0
        self.num_steps = 0            # step() calls so far.
        self.last_rt = None           # r_t used by the latest adjustment.

    @property
    def p(self):
        return float(self.augment_pipe.p)

    def accumulate(self, real_logits):
        """Add sign(real_logits) (tensor of any shape) to the running statistic."""
        signs = real_logits.detach().sign().to(_precise_dtype(real_logits.device))
        stats = torch.stack([signs.sum(), torch.as_tensor(signs.numel(), dtype=signs.dtype, device=signs.device)])
        self._local = stats if self._local is None else self._local + stats.to(self._local.device)

    def accumulate_mean(self, mean, num):
        """Add `num` signs whose mean is `mean` (numbers, e.g. from a training_stats.Collector)."""
        if num is not None and num > 0 and np.isfinite(mean):
            self._global_sum += float(mean) * float(num)
            self._global_num += float(num)

    def _reduced_sums(self):
        total_sum, total_num = self._global_sum, self._global_num
        if self._local is not None:
            local = self._local.clone()
            if torch.distributed.is_available() and torch.distributed.is_initialized() \
                    and torch.distributed.get_world_size() > 1:
                torch.distributed.all_reduce(local)
            local_sum, local_num = local.cpu().tolist()
            total_sum, total_num = total_sum + local_sum, total_num + local_num
        return total_sum, total_num

    @torch.no_grad()
    def step(self):
        """Count one iteration; every `interval` iterations adjust p. Returns r_t when p was adjusted, else None
        (also None when no signs arrived since the last adjustment: the statistic keeps accumulating)."""
        self.num_steps += 1
        if self.num_steps % self.interval != 0:
            return None
        signs_sum, signs_num = self._reduced_sums()
        if signs_num == 0:
            return None
        rt = signs_sum / signs_num
        adjust = np.sign(rt - self.target) * self.batch_size * self.interval / (self.ada_kimg * 1000)
        p = self.augment_pipe.p
        p.copy_((p + adjust).clamp(min=0))
        self._local, self._global_sum, self._global_num = None, 0.0, 0.0
        self.last_rt = rt
        if self.report_stats:
            training_stats.report0('Progress/augment', p)
        return rt

    def state_dict(self):
        """Plain numbers for exact resume: counters, p, and the signs pending since the last adjustment (the
        already-global ones and this rank's own, kept apart so that each is reduced exactly once)."""
        local_sum, local_num = (0.0, 0.0) if self._local is None else self._local.cpu().tolist()
        return dict(p=self.p, num_steps=self.num_steps, last_rt=self.last_rt,
                    signs_sum=self._global_sum, signs_num=self._global_num,
                    local_signs_sum=local_sum, local_signs_num=local_num)

    def load_state_dict(self, state):
        """Restore what state_dict() returned (on each rank, its own)."""
        self.augment_pipe.p.copy_(torch.as_tensor(state['p'], dtype=self.augment_pipe.p.dtype))
        self.num_steps, self.last_rt = int(state['num_steps']), state['last_rt']
        self._global_sum, self._global_num = float(state['signs_sum']), float(state['signs_num'])
        self._local = None
        if state.get('local_signs_num', 0) > 0:
            device = self.augment_pipe.p.device
            self._local = torch.tensor([state['local_signs_sum'], state['local_signs_num']],
                                       dtype=_precise_dtype(device), device=device)

#----------------------------------------------------------------------------
