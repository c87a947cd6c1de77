"""Equivariance metrics EQ-T and EQ-R ("Alias-Free Generative Adversarial Networks", Karras et al. 2021, Sec. 3,
App. E.3): how exactly an output transform applied through the generator's input matches the same transform
applied to the output image.

For each latent, the generator renders a reference image and an image with the output translated or rotated
through `G.synthesis.input.transform` (which holds the *inverse* output transform). The reference image is
transformed in image space by
- integer translation: an exact shift of whole pixels (up to `translate_max` of the image per axis);
- fractional translation: Lanczos (a = 3) resampling by the same sub-pixel amount;
- rotation (up to +-180 deg * rotate_max): a band-limited *pseudo-rotation*: upsample 4x with a windowed-sinc
  interpolator, resample at the rotated positions with Lanczos weights, low-pass with a radially symmetric (jinc)
  filter that keeps only the disc of frequencies inside the original Nyquist band, decimate. The compared image
  goes through the same chain without rotation, so both are band-limited to the same disc.
Only pixels valid in both images (whose value depends on no pixel outside the source image) are compared.
PSNR = 20 log10(2) - 10 log10(MSE) in dB for images in [-1, 1], the MSE in float64 over all compared pixels of all
samples. A generator without an input transform (e.g. StyleGAN2) cannot be moved: its "transformed" image is its
reference image, which is what its equivariance figure then measures (with a warning).

Coordinates: x runs along image columns, y along rows, both centred on the image; 1 unit of the transform is the
image width. Positive angles turn +x towards +y (clockwise on screen), so a 90 deg rotation is
`np.rot90(img, k=-1, axes=(-2, -1))`.
"""

import functools
import warnings

import numpy as np
import scipy.special
import torch

from . import metric_utils

#----------------------------------------------------------------------------
# Masked error and PSNR.

def masked_squared_error(img_a, img_b, mask):
    """Sum of squared differences over valid pixels (float64) and the number of values summed.

    img_a, img_b: [N, C, H, W]; mask: [N, 1, H, W] or [N, C, H, W] bool (True = compare this pixel).
    Returns (sum: float64 scalar tensor, count: float64 scalar tensor).
    """
    mask = mask.expand_as(img_a)
    diff = img_a.to(torch.float64) - img_b.to(torch.float64)
    return diff.square()[mask].sum(), mask.sum().to(torch.float64)


def psnr_from_mse(mse):
    """PSNR in dB for images in [-1, 1] (peak-to-peak 2): 20 log10(2) - 10 log10(mse); inf for mse == 0,
    nan when nothing was compared (mse nan)."""
    mse = float(mse)
    if mse == 0:
        return float('inf')
    return float(20 * np.log10(2) - 10 * np.log10(mse))

#----------------------------------------------------------------------------
# 1-D resampling by a constant shift with a compact interpolation kernel: out[i] = sum_k x[k] K(i - shift - k),
# i.e. the content moves by `shift` samples towards higher indices. Samples outside the signal are zero and make
# the output invalid wherever they carry weight.

def lanczos_kernel(t, a=3):
    """Lanczos window: sinc(t) sinc(t / a) for |t| < a, else 0. t: numpy array."""
    t = np.asarray(t, dtype=np.float64)
    return np.where(np.abs(t) < a, np.sinc(t) * np.sinc(t / a), 0.0)


def kaiser_sinc_kernel(t, radius, cutoff=0.5, beta=8.0):
    """Kaiser-windowed sinc interpolator with half-gain `cutoff` (cycles per sample), zero for |t| >= radius."""
    t = np.asarray(t, dtype=np.float64)
    window = np.i0(beta * np.sqrt(np.clip(1 - (t / radius) ** 2, 0, 1))) / np.i0(beta)
    return np.where(np.abs(t) < radius, 2 * cutoff * np.sinc(2 * cutoff * t) * window, 0.0)


def _shift_zero_fill(x, offset, dim):
    """y[i] = x[i - offset] along dim, zero where i - offset is outside the signal."""
    size = x.shape[dim]
    out = torch.zeros_like(x)
    if abs(offset) < size:
        src = x.narrow(dim, max(-offset, 0), size - abs(offset))
        out.narrow(dim, max(offset, 0), size - abs(offset)).copy_(src)
    return out


def shift_axis(x, valid, shift, dim, kernel_fn, radius):
    """Shift x by `shift` samples along dim, resampling with kernel_fn (support |t| < radius).

    x: [..., L, ...] float; valid: bool like x (or broadcastable along the other dims). The kernel taps are
    normalised to unit sum so that constants stay constant. Returns (shifted x, valid mask).
    """
    whole = int(np.floor(shift))
    frac = shift - whole
    offsets = np.arange(-int(np.ceil(radius)) + 1, int(np.ceil(radius)) + 1)
    weights = kernel_fn(offsets - frac)
    keep = np.abs(weights) > 1e-12
    offsets, weights = offsets[keep], weights[keep] / weights[keep].sum()
    out = torch.zeros_like(x)
    valid_out = torch.ones_like(valid)
    for offset, weight in zip(offsets, weights):
        out += float(weight) * _shift_zero_fill(x, whole + int(offset), dim)
        valid_out &= _shift_zero_fill(valid, whole + int(offset), dim)
    return out, valid_out

#----------------------------------------------------------------------------
# Translation of an image (EQ-T): exact for whole pixels, Lanczos (a = 3) for fractions.

def translate_image(img, dx, dy, valid=None, a=3):
    """Move the content of img by (dx, dy) pixels (dx along columns, dy along rows).

    img: [N, C, H, W] float. Returns (translated [N, C, H, W], valid [N, 1, H, W] bool). Whole-pixel shifts are
    exact (the Lanczos kernel is a unit impulse at integers).
    """
    if valid is None:
        valid = torch.ones([img.shape[0], 1, img.shape[2], img.shape[3]], dtype=torch.bool, device=img.device)
    kernel = functools.partial(lanczos_kernel, a=a)
    img, valid = shift_axis(img, valid, float(dx), dim=3, kernel_fn=kernel, radius=a)
    img, valid = shift_axis(img, valid, float(dy), dim=2, kernel_fn=kernel, radius=a)
    return img, valid

#----------------------------------------------------------------------------
# Pseudo-rotation (EQ-R, App. E.3). Rotating a sampled image exactly is impossible: the corners of its square
# spectrum leave the band. We (1) upsample `up` times with a windowed sinc (each output phase is a fractional shift
# of the input), (2) resample the upsampled image at rotated positions with separable Lanczos weights, and
# (3) filter with a radially symmetric low-pass (Kaiser-windowed jinc) whose stopband starts at the original
# Nyquist frequency, decimating back to the original grid. Step (3) commutes with rotation and removes everything
# outside the inscribed disc, including the spectral images of step (1), which all lie at radius >= Nyquist.

UPSAMPLE_RADIUS = 6         # Support of the upsampling interpolator, original pixels.
UPSAMPLE_CUTOFF = 0.6       # Its half-gain frequency, cycles per original pixel (flat to ~0.45).
LOWPASS_RADIUS = 6          # Support of the radial low-pass, original pixels.
LOWPASS_CUTOFF = 0.4        # Its half-gain frequency, cycles per original pixel (stopband from ~0.5).
KAISER_BETA = 8.0


def upsample_image(img, valid, up):
    """[N, C, H, W] -> [N, C, H*up, W*up] by windowed-sinc interpolation; pixel centres stay aligned.

    Output sample j along an axis sits at (j + 0.5) / up original pixels: phase r = j mod up is the input
    resampled at offset (r + 0.5) / up - 0.5, i.e. shifted by minus that amount.
    """
    kernel = functools.partial(kaiser_sinc_kernel, radius=UPSAMPLE_RADIUS, cutoff=UPSAMPLE_CUTOFF, beta=KAISER_BETA)
    for dim in (3, 2):
        phases = [shift_axis(img, valid, -((r + 0.5) / up - 0.5), dim, kernel, UPSAMPLE_RADIUS) for r in range(up)]
        img = torch.stack([phase[0] for phase in phases], dim=dim + 1).flatten(dim, dim + 1)
        valid = torch.stack([phase[1] for phase in phases], dim=dim + 1).flatten(dim, dim + 1)
    return img, valid


def _lanczos_torch(t, a):
    """lanczos_kernel on a torch tensor."""
    return torch.where(t.abs() < a, torch.sinc(t) * torch.sinc(t / a), torch.zeros_like(t))


def resample_rotated(img, valid, angle_deg, a=3):
    """out(p) = img(R(-angle) p) about the image centre, Lanczos (a) weights; [N, C, H, W] -> same shape.

    valid: [N, 1, H, W] bool. A pixel is valid when every tap with nonzero weight is inside and valid.
    """
    batch, channels, height, width = img.shape
    angle = np.deg2rad(angle_deg)
    grid = dict(dtype=torch.float64, device=img.device)
    y = (torch.arange(height, **grid) - (height - 1) / 2)[:, None]  # [H, 1]
    x = (torch.arange(width, **grid) - (width - 1) / 2)[None, :]  # [1, W]
    src_cols = (np.cos(angle) * x + np.sin(angle) * y + (width - 1) / 2).flatten()  # [H*W]
    src_rows = (-np.sin(angle) * x + np.cos(angle) * y + (height - 1) / 2).flatten()
    base_cols, base_rows = src_cols.floor(), src_rows.floor()
    flat_img = img.reshape(batch * channels, height * width)
    flat_invalid = (~valid).reshape(batch, height * width)
    out = torch.zeros_like(flat_img)
    invalid_out = torch.zeros_like(flat_invalid)
    weight_sum = torch.zeros_like(src_cols)
    for dr in range(-a + 1, a + 1):
        for dc in range(-a + 1, a + 1):
            tap_rows, tap_cols = base_rows + dr, base_cols + dc
            weight = _lanczos_torch(src_rows - tap_rows, a) * _lanczos_torch(src_cols - tap_cols, a)
            inside = (tap_rows >= 0) & (tap_rows < height) & (tap_cols >= 0) & (tap_cols < width)
            index = (tap_rows.clamp(0, height - 1) * width + tap_cols.clamp(0, width - 1)).long()
            used = weight.abs() > 1e-12
            out += flat_img[:, index] * (weight * inside).to(img.dtype)
            invalid_out |= (used & ~inside) | (flat_invalid[:, index] & used)
            weight_sum += weight
    out = out / weight_sum.to(img.dtype)
    return out.reshape(img.shape), (~invalid_out).reshape(valid.shape)


def radial_lowpass_taps(up):
    """Kaiser-windowed jinc on the upsampled grid: [2K, 2K] float64 taps (unit sum), even size so that the centre
    falls between samples, as the original pixel centres do for an even `up`."""
    half = int(np.ceil(LOWPASS_RADIUS * up))
    offsets = (np.arange(2 * half) - (2 * half - 1) / 2) / up  # Original pixels.
    radius = np.hypot(offsets[:, None], offsets[None, :])
    arg = 2 * np.pi * LOWPASS_CUTOFF * np.maximum(radius, 1e-12)
    jinc = np.where(radius > 1e-12, 2 * scipy.special.j1(arg) / arg, 1.0)
    window = np.i0(KAISER_BETA * np.sqrt(np.clip(1 - (radius / LOWPASS_RADIUS) ** 2, 0, 1))) / np.i0(KAISER_BETA)
    taps = np.where(radius < LOWPASS_RADIUS, jinc * window, 0.0)
    return taps / taps.sum()


def radial_downsample(img, valid, up):
    """Radial low-pass on the upsampled grid and decimation by `up`: [N, C, H*up, W*up] -> [N, C, H, W].

    Output pixel i sits at upsampled position up * i + (up - 1) / 2, the centre of the even-sized filter.
    """
    taps = radial_lowpass_taps(up)
    size = taps.shape[0]
    padding = size // 2 - up // 2
    channels = img.shape[1]
    weight = torch.from_numpy(taps).to(img).expand(channels, 1, size, size)
    out = torch.nn.functional.conv2d(img, weight, stride=up, padding=padding, groups=channels)
    support = torch.from_numpy((taps != 0).astype(np.float64)).to(img)[None, None]
    invalid = torch.nn.functional.conv2d((~valid).to(img), support, stride=up, padding=padding)
    # Zero padding reads outside the image: outputs whose support leaves it are invalid too.
    inside = torch.nn.functional.conv2d(torch.ones_like(valid, dtype=img.dtype), support, stride=up, padding=padding)
    valid_out = (invalid < 0.5) & (inside > support.sum() - 0.5)
    return out, valid_out


def pseudo_rotate(img, angle_deg, valid=None, up=4):
    """Band-limited pseudo-rotation of img by angle_deg (see above); angle 0 gives the same band-limiting alone.

    img: [N, C, H, W] float. Returns (rotated [N, C, H, W], valid [N, 1, H, W] bool).
    """
    if valid is None:
        valid = torch.ones([img.shape[0], 1, img.shape[2], img.shape[3]], dtype=torch.bool, device=img.device)
    img, valid = upsample_image(img, valid, up)
    if angle_deg != 0:
        img, valid = resample_rotated(img, valid, angle_deg)
    return radial_downsample(img, valid, up)

#----------------------------------------------------------------------------
# Output transforms through the generator's input (DESIGN §3: the buffer holds the inverse output transform).

def translation_matrix(tx, ty):
    """3x3 float64 matrix p -> p + (tx, ty)."""
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], dtype=np.float64)


def rotation_matrix(angle_deg):
    """3x3 float64 matrix turning +x towards +y by angle_deg."""
    c, s = np.cos(np.deg2rad(angle_deg)), np.sin(np.deg2rad(angle_deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)


def synthesize_transformed(G, ws, output_transform, synthesis_kwargs):
    """G.synthesis(ws) with its output moved by output_transform (3x3, units of the image width).

    The input transform U (the inverse output transform) becomes U @ output_transform^-1; it is restored after.
    A generator without `synthesis.input.transform` renders its untransformed image.
    """
    transform = getattr(getattr(G.synthesis, 'input', None), 'transform', None)
    if transform is None:
        return G.synthesis(ws, **synthesis_kwargs)
    saved = transform.clone()
    try:
        inverse = torch.from_numpy(np.linalg.inv(output_transform)).to(transform)
        transform.copy_(saved @ inverse)
        return G.synthesis(ws, **synthesis_kwargs)
    finally:
        transform.copy_(saved)

#----------------------------------------------------------------------------
# One batch: squared errors and counts for each enabled kind ('int', 'frac', 'rot').

def equivariance_batch(G, ws, rng, kinds, translate_max, rotate_max, synthesis_kwargs):
    """{kind: (sum of squared errors, number of values)} for one batch of ws [N, num_ws, w_dim].

    rng: numpy RandomState drawing one transform per kind for the whole batch.
    """
    resolution = G.img_resolution
    reference = G.synthesis(ws, **synthesis_kwargs).to(torch.float32)
    errors = dict()
    for kind in kinds:
        if kind in ('int', 'frac'):
            shift_px = rng.uniform(-1, 1, size=2) * translate_max * resolution
            if kind == 'int':
                shift_px = np.rint(shift_px)
            moved = synthesize_transformed(G, ws, translation_matrix(*(shift_px / resolution)), synthesis_kwargs)
            expected, valid = translate_image(reference, shift_px[0], shift_px[1])
            errors[kind] = masked_squared_error(moved.to(torch.float32), expected, valid)
        else:
            angle = float(rng.uniform(-1, 1) * rotate_max * 180)
            moved = synthesize_transformed(G, ws, rotation_matrix(angle), synthesis_kwargs)
            expected, valid_expected = pseudo_rotate(reference, angle)
            observed, valid_observed = pseudo_rotate(moved.to(torch.float32), 0)
            errors[kind] = masked_squared_error(observed, expected, valid_expected & valid_observed)
    return errors

#----------------------------------------------------------------------------
# The metric (registered by metric_main as eqt50k_int, eqt50k_frac, eqr50k).

def equivariance_totals(opts, num_samples, batch_size, kinds, translate_max=0.125, rotate_max=1):
    """This rank's share: float64 numpy [len(kinds), 2] of (sum of squared errors, number of values) per kind.

    kinds: subset of ('int', 'frac', 'rot'). Batches are split over ranks (each renders ceil(num_samples /
    (batch_size * num_gpus)) batches); latents, labels and transforms come from private generators seeded by
    (opts.random_seed, rank).
    """
    G = metric_utils.metric_generator(opts)
    if getattr(getattr(G.synthesis, 'input', None), 'transform', None) is None:
        warnings.warn('equivariance: this generator has no synthesis.input.transform (not StyleGAN3), so its output '
                      'cannot be moved; its "transformed" images are its reference images')
    opts.info.update(num_fake=num_samples, fake_resolution=int(G.img_resolution))
    seed = opts.random_seed * 1000003 + opts.rank
    z_gen = torch.Generator().manual_seed(seed)
    rng = np.random.RandomState(seed)
    labels = metric_utils.LabelSampler(opts, G.c_dim, seed)
    mapping_keys = ('truncation_psi', 'truncation_cutoff')
    mapping_kwargs = {key: value for key, value in opts.G_kwargs.items() if key in mapping_keys}
    synthesis_kwargs = {key: value for key, value in opts.G_kwargs.items() if key not in mapping_keys}
    synthesis_kwargs.setdefault('noise_mode', 'const')  # Random noise would not move with the image.

    totals = np.zeros([len(kinds), 2], dtype=np.float64)
    num_batches = (num_samples + batch_size * opts.num_gpus - 1) // (batch_size * opts.num_gpus)
    with torch.no_grad():
        for _batch in metric_utils._progress(range(num_batches), opts, num_batches, 'equivariance'):
            z = torch.randn([batch_size, G.z_dim], generator=z_gen).to(opts.device)
            ws = G.mapping(z=z, c=labels.sample(batch_size), **mapping_kwargs)
            errors = equivariance_batch(G, ws, rng, kinds, translate_max, rotate_max, synthesis_kwargs)
            for row, kind in enumerate(kinds):
                totals[row] += [float(value) for value in errors[kind]]
    return totals


def compute_equivariance_metrics(opts, num_samples, batch_size, translate_max=0.125, rotate_max=1,
                                 compute_eqt_int=False, compute_eqt_frac=False, compute_eqr=False):
    """PSNR (dB) of integer translation, fractional translation and rotation equivariance of opts.G.

    num_samples latents in all, split over ranks; translations up to translate_max of the image per axis,
    rotations up to rotate_max * 180 degrees either way. Returns one float per enabled flag, in the order
    (int, frac, rot): a single float when one flag is set, else a tuple. Every rank returns the same values (the
    sums are all-reduced when torch.distributed is initialised).
    """
    kinds = [kind for kind, on in (('int', compute_eqt_int), ('frac', compute_eqt_frac), ('rot', compute_eqr)) if on]
    if not kinds:
        raise ValueError('compute_equivariance_metrics: enable at least one of compute_eqt_int, compute_eqt_frac, '
                         'compute_eqr')
    totals = equivariance_totals(opts, num_samples, batch_size, kinds, translate_max, rotate_max)
    if opts.num_gpus > 1 and torch.distributed.is_initialized():
        totals_t = torch.from_numpy(totals).to(opts.device)
        torch.distributed.all_reduce(totals_t)
        totals = totals_t.cpu().numpy()
    psnrs = tuple(psnr_from_mse(total / count if count > 0 else float('nan')) for total, count in totals)
    return psnrs[0] if len(psnrs) == 1 else psnrs
