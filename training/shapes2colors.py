"""The built-in unpaired domain pair `builtin:shapes2colors`: warm shapes (A) and cool shapes (B) on grey.

Both domains draw the same kinds of scenes (a circle, square, triangle or star of random size, position and
rotation on a flat grey background); they differ only in the shape's hue: domain A is red/orange/yellow
(hue -0.08..0.12), domain B is the same colour turned by 0.55 of the hue circle (cyan/blue/purple). The correct
translation A -> B is therefore known exactly: `render_pair_image(i, res, 'B')` is the translation of
`render_pair_image(i, res, 'A')`. Training never sees such pairs: dataset_tool writes A from indices 0..n-1 and
B from n..2n-1 (different scenes), while the benchmark measures G_AB against the true pairs of held-out indices.

Image i of a domain is a pure function of (i, resolution, domain), as in training/shapes_dataset.py.
"""

import colorsys

import numpy as np
import PIL.Image
import PIL.ImageDraw

from training import shapes_dataset

BUILTIN_PAIR = 'builtin:shapes2colors'
DOMAINS = ('A', 'B')
HUE_SHIFT = 0.55            # B's shape hue = A's + HUE_SHIFT (mod 1).
_HUE_RANGE_A = (-0.08, 0.12)
EVAL_INDEX_BASE = 1_000_000  # Held-out scenes for measuring a translation (dataset_tool never renders these).

#----------------------------------------------------------------------------

def _shape_colour(rng, domain):
    """RGB (floats in [0, 255]) of the shape: a saturated, bright warm colour, hue-shifted for domain B."""
    hue = rng.uniform(*_HUE_RANGE_A) % 1.0
    saturation = rng.uniform(0.75, 1.0)
    value = rng.uniform(0.75, 1.0)
    if domain == 'B':
        hue = (hue + HUE_SHIFT) % 1.0
    return np.array(colorsys.hsv_to_rgb(hue, saturation, value), dtype=np.float32) * 255


def render_pair_image(index, resolution, domain):
    """Scene `index` of builtin:shapes2colors in `domain` ('A' or 'B') -> [resolution, resolution, 3] uint8.

    resolution: a power of two from 8 to 1024. The scene (grey level, shape, geometry) depends on index only."""
    if domain not in DOMAINS:
        raise ValueError(f'{BUILTIN_PAIR}: domain must be A or B, not {domain!r}')
    if not (shapes_dataset.MIN_RESOLUTION <= resolution <= shapes_dataset.MAX_RESOLUTION
            and resolution & (resolution - 1) == 0):
        raise ValueError(f'{BUILTIN_PAIR} renders power-of-two resolutions from {shapes_dataset.MIN_RESOLUTION} '
                         f'to {shapes_dataset.MAX_RESOLUTION}, not {resolution}')
    rng = np.random.RandomState(index % (1 << 32))
    supersample = max(1, min(4, 2048 // resolution))
    size = resolution * supersample
    grey = rng.uniform(0.15, 0.5) * 255     # Darker than the shapes, so that every shape stands out.
    class_idx = int(rng.randint(shapes_dataset.NUM_CLASSES))
    radius = rng.uniform(0.22, 0.42) * size
    center = rng.uniform(radius, size - radius, size=2)
    rotation = rng.uniform(0, 2 * np.pi)
    colour = _shape_colour(rng, domain)
    mask = PIL.Image.new('L', (size, size), 0)
    shapes_dataset._draw_shape(PIL.ImageDraw.Draw(mask), class_idx, center, radius, rotation)
    if supersample > 1:
        mask = mask.reduce(supersample)
    coverage = np.asarray(mask, dtype=np.float32)[:, :, np.newaxis] / 255
    image = grey * (1 - coverage) + colour[np.newaxis, np.newaxis, :] * coverage
    return np.round(image).astype(np.uint8)

#----------------------------------------------------------------------------
# A simple, stated measure of "looks like domain B": the mean hue direction of the image's saturated pixels.

def warm_cool_score(images):
    """images: [N, 3, H, W] or [N, H, W, 3] uint8/float in [0, 255] -> [N] float in [-1, 1]: over the pixels
    whose saturation (max - min of RGB) is at least 60, the mean of (B - R) / (max - min). Shapes of domain A score
    near -1 (red over blue), of domain B near +1; an image with no saturated pixel scores 0."""
    x = np.asarray(images, dtype=np.float32)
    if x.shape[1] == 3 and x.shape[-1] != 3:
        x = x.transpose(0, 2, 3, 1)
    spread = x.max(axis=3) - x.min(axis=3)
    saturated = spread >= 60
    direction = (x[..., 2] - x[..., 0]) / np.maximum(spread, 1e-6)
    counts = saturated.sum(axis=(1, 2))
    sums = (direction * saturated).sum(axis=(1, 2))
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)

#----------------------------------------------------------------------------
