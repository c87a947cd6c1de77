"""The built-in procedural dataset `builtin:shapes`: coloured shapes on varied backgrounds, 4 classes.

Image i is a pure function of (i, resolution): its random numbers come from np.random.RandomState(i),
so any subset can be rendered in any order, in any process, and gives the same pixels. Each shape's mask is
drawn with PIL at up to 4x the output size and box-filtered down to per-pixel coverage, which antialiases its
edges; the shape colour is then blended over the (smooth) background by that coverage.
"""

import colorsys

import numpy as np
import PIL.Image
import PIL.ImageDraw

CLASS_NAMES = ('circle', 'square', 'triangle', 'star')
NUM_CLASSES = len(CLASS_NAMES)
MIN_RESOLUTION = 8
MAX_RESOLUTION = 1024
_MAX_RENDER_SIZE = 2048  # Supersampling stops growing here (1024 px images are rendered at 2x).

#----------------------------------------------------------------------------


def _random_colour(rng, value_range):
    """An RGB colour (floats in [0, 255]) of random hue and saturation, brightness drawn from value_range."""
    hue = rng.uniform(0, 1)
    saturation = rng.uniform(0.3, 1.0)
    value = rng.uniform(*value_range)
    return np.array(colorsys.hsv_to_rgb(hue, saturation, value)) * 255


def _background(rng, size, value_range):
    """[size, size, 3] float32 background: a flat colour or a linear gradient between two colours."""
    first = _random_colour(rng, value_range)
    if rng.uniform() < 0.5:
        return np.broadcast_to(first.astype(np.float32), [size, size, 3]).copy()
    second = _random_colour(rng, value_range)
    angle = rng.uniform(0, 2 * np.pi)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    # Position along the gradient direction, mapped to [0, 1] over the image's extent in that direction.
    along = np.cos(angle) * coords[np.newaxis, :] + np.sin(angle) * coords[:, np.newaxis]
    span = (abs(np.cos(angle)) + abs(np.sin(angle))) / 2
    weight = np.clip(along / (2 * span) + 0.5, 0, 1)[:, :, np.newaxis]
    return (first * (1 - weight) + second * weight).astype(np.float32)


def _polygon(center, radius, rotation, num_vertices, inner_ratio=None):
    """Vertices [(x, y), ...] of a regular polygon, or of a star when inner_ratio is given."""
    points = []
    steps = num_vertices * (2 if inner_ratio is not None else 1)
    for step in range(steps):
        angle = rotation + 2 * np.pi * step / steps
        r = radius * (inner_ratio if inner_ratio is not None and step % 2 else 1)
        points.append((center[0] + r * np.cos(angle), center[1] + r * np.sin(angle)))
    return points


def _draw_shape(draw, class_idx, center, radius, rotation, fill=255):
    """Draw shape class_idx (see CLASS_NAMES) of circumradius `radius` pixels, rotated by `rotation` radians."""
    if CLASS_NAMES[class_idx] == 'circle':
        r = radius * 0.8  # Roughly the same area as the other shapes.
        draw.ellipse([center[0] - r, center[1] - r, center[0] + r, center[1] + r], fill=fill)
    elif CLASS_NAMES[class_idx] == 'square':
        draw.polygon(_polygon(center, radius, rotation, 4), fill=fill)
    elif CLASS_NAMES[class_idx] == 'triangle':
        draw.polygon(_polygon(center, radius, rotation, 3), fill=fill)
    else:
        draw.polygon(_polygon(center, radius, rotation, 5, inner_ratio=0.45), fill=fill)

#----------------------------------------------------------------------------


def render_shape_image(index, resolution):
    """Image number `index` of builtin:shapes.

    Returns (image [resolution, resolution, 3] uint8 numpy, class label int in [0, NUM_CLASSES)).
    resolution: a power of two in [MIN_RESOLUTION, MAX_RESOLUTION].
    """
    if not (MIN_RESOLUTION <= resolution <= MAX_RESOLUTION and resolution & (resolution - 1) == 0):
        raise ValueError(f'builtin:shapes renders power-of-two resolutions from {MIN_RESOLUTION} to '
                         f'{MAX_RESOLUTION}, not {resolution}')
    rng = np.random.RandomState(index)
    supersample = max(1, min(4, _MAX_RENDER_SIZE // resolution))
    size = resolution * supersample

    # Dark shapes on light backgrounds or the reverse, so that every shape stands out.
    dark, light = (0.1, 0.45), (0.6, 0.95)
    background_range, shape_range = (dark, light) if rng.uniform() < 0.5 else (light, dark)
    background = _background(rng, resolution, background_range)

    class_idx = int(rng.randint(NUM_CLASSES))
    radius = rng.uniform(0.2, 0.42) * size
    center = rng.uniform(radius, size - radius, size=2)
    rotation = rng.uniform(0, 2 * np.pi)
    colour = _random_colour(rng, shape_range)

    # Coverage of each output pixel = box filter (mean) of the supersampled binary mask.
    mask = PIL.Image.new('L', (size, size), 0)
    _draw_shape(PIL.ImageDraw.Draw(mask), class_idx, center, radius, rotation)
    if supersample > 1:
        mask = mask.reduce(supersample)
    coverage = np.asarray(mask, dtype=np.float32)[:, :, np.newaxis] / 255
    image = background * (1 - coverage) + colour.astype(np.float32) * coverage
    return np.round(image).astype(np.uint8), class_idx

#----------------------------------------------------------------------------
