"""Convert image folders and archives into the dataset zip (or folder) that train.py reads.

\b
Sources (--source):
  folder        all images below it (recursive, sorted by path); labels from its dataset.json, if any
  *.zip         all images inside; labels from its dataset.json, if any
  cifar-10-python.tar.gz         the 50000 training images, 32x32 RGB, labels 0-9
  *-images-idx3-ubyte.gz         MNIST, padded to 32x32 grayscale; labels from *-labels-idx1-ubyte.gz beside it
  LMDB folder   (holds data.mdb, e.g. LSUN) every value decoded as an image; needs `pip install lmdb`
  builtin:shapes  procedural coloured circles/squares/triangles/stars, labels 0-3; --max-images images
                (default 10000) at --resolution (default 32x32)

\b
Output (--dest): a .zip (stored, no compression) or a folder, holding PNGs (compress level 0) named
00000/img00000000.png, 1000 per sub-folder, and dataset.json = {"labels": [[name, label], ...]} or
{"labels": null}. Images are grayscale (1 channel), RGB (3) or RGBA (4, --rgba=keep); .npy sources ([H, W, C]
uint8) may have any channel count and are written as .npy when C is not 1, 3 or 4. All must end up the same size
and channel count, with power-of-two sides: square, or non-square such as --resolution=512x256. Output appears
only when everything succeeded: a bad image stops the tool (exit code 1) with a message naming the file, and
nothing is written. An existing --dest is replaced only with --force. Entries of a source folder that are not
regular files (FIFOs, sockets, devices) are skipped with a message.
"""

import io
import itertools
import json
import math
import os
import shutil
import sys
import zipfile

import click
import numpy as np
import PIL.Image
from tqdm import tqdm

import dnnlib
from training import dataset_sources

#----------------------------------------------------------------------------


class DatasetToolError(click.ClickException):
    """Stops the tool with exit code 1 and a message `dataset_tool: <what is wrong and how to fix it>`."""

    def show(self, file=None):
        click.echo(f'dataset_tool: {self.message}', err=True)


def _is_power_of_two(value):
    return value >= 1 and (value & (value - 1)) == 0


def _suggested_side(width, height):
    """The power of two closest (in log scale) to the shorter side, for error messages."""
    return 2 ** max(2, round(math.log2(max(1, min(width, height)))))

#----------------------------------------------------------------------------
# Images to arrays: every image becomes [H, W, C] uint8 with C = 1 (grayscale) or 3 (RGB).

_GRAY_MODES = ('1', 'L')
_COLOUR_MODES = ('RGB', 'CMYK', 'YCbCr', 'LAB', 'HSV')
_ALPHA_MODES = ('RGBA', 'RGBa', 'LA', 'La', 'PA')
_CHANNEL_NAMES = {1: 'grayscale', 3: 'RGB', 4: 'RGBA'}
_PNG_CHANNELS = (1, 3, 4)   # Other channel counts (from .npy sources) are written as .npy.


def channel_name(channels):
    return _CHANNEL_NAMES.get(channels, f'{channels}-channel')


def _remove_alpha(image, name, rgba):
    """Apply the --rgba rule to an image with an alpha channel; returns an 'L' or 'RGB' image."""
    gray = image.mode in ('LA', 'La')
    if rgba == 'keep':
        return image.convert('RGBA')  # Grayscale + alpha too: PNG and training read 1, 3 or 4 channels.
    if rgba == 'error':
        raise DatasetToolError(
            f'{name} is {image.width}x{image.height} {image.mode}; images must be grayscale or RGB '
            '(use --rgba=keep, --rgba=drop-alpha or --rgba=white, or convert first)')
    if rgba == 'white':
        # Composite over opaque white: out = alpha * colour + (1 - alpha) * 255.
        rgba_image = image.convert('RGBA')
        image = PIL.Image.alpha_composite(PIL.Image.new('RGBA', rgba_image.size, (255, 255, 255, 255)), rgba_image)
    return image.convert('L' if gray else 'RGB')


def to_uint8_array(image, name, rgba='error'):
    """A decoded source image (PIL image or [H, W] / [H, W, C] uint8 array, e.g. from .npy) as [H, W, C] uint8:
    C = 1 or 3 for images (4 with --rgba=keep), any C for arrays."""
    if isinstance(image, np.ndarray):
        array = image[:, :, np.newaxis] if image.ndim == 2 else image
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] < 1:
            raise DatasetToolError(f'{name} is a {array.dtype} array of shape {list(image.shape)}; '
                                   'expected [H, W] or [H, W, C] uint8')
        return array
    if image.mode == 'P':
        image = image.convert('RGBA' if 'transparency' in image.info else 'RGB')
    if image.mode in _ALPHA_MODES:
        image = _remove_alpha(image, name, rgba)
    elif image.mode in _GRAY_MODES:
        image = image.convert('L')
    elif image.mode in _COLOUR_MODES:
        image = image.convert('RGB')
    else:
        raise DatasetToolError(f'{name} is {image.width}x{image.height} {image.mode} (16-bit or float pixels); '
                               'convert it to 8-bit grayscale or RGB first')
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, np.newaxis] if array.ndim == 2 else array

#----------------------------------------------------------------------------
# Transforms: [H, W, C] uint8 in, [height, width, C] (or [width, width, C] for center-crop-wide) out, or None to
# skip the image (center-crop-wide only).


def resize(array, width, height):
    """Resample to width x height with a Lanczos filter (aspect ratio not kept); a no-op at the same size."""
    if array.shape[:2] == (height, width):
        return array
    if array.shape[2] not in (1, 3, 4):  # PIL has no N-channel mode: resize channel by channel.
        return np.concatenate([resize(array[:, :, c:c + 1], width, height) for c in range(array.shape[2])], axis=2)
    image = PIL.Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    resized = np.asarray(image.resize((width, height), PIL.Image.LANCZOS), dtype=np.uint8)
    return resized[:, :, np.newaxis] if resized.ndim == 2 else resized


def center_crop(array, width, height):
    """Cut the largest centred region of aspect ratio width:height, then resize it to width x height."""
    src_height, src_width = array.shape[:2]
    if src_width * height > src_height * width:       # Source is wider than the target: trim left and right.
        crop_width, crop_height = int(round(src_height * width / height)), src_height
    else:                                             # Source is taller: trim top and bottom.
        crop_width, crop_height = src_width, int(round(src_width * height / width))
    top, left = (src_height - crop_height) // 2, (src_width - crop_width) // 2
    return resize(array[top:top + crop_height, left:left + crop_width], width, height)


def center_crop_wide(array, width, height):
    """The official tool's rule, so that published wide datasets (and their FID statistics) come out the same:
    scale the image to `width` columns in thought, giving ch = round(width * H / W) rows; an image narrower than
    `width` or with ch < height is skipped (returns None). Otherwise keep the source rows [(H - ch) // 2,
    (H + ch) // 2) at full width, Lanczos-resize that strip to width x height, and paste it centred vertically on
    a black width x width canvas."""
    src_height, src_width = array.shape[:2]
    strip_height = int(np.round(width * src_height / src_width))
    if src_width < width or strip_height < height:
        return None
    strip = array[(src_height - strip_height) // 2:(src_height + strip_height) // 2]
    canvas = np.zeros([width, width, array.shape[2]], dtype=np.uint8)
    top = (width - height) // 2
    canvas[top:top + height] = resize(strip, width, height)
    return canvas


def make_transform(transform, resolution):
    """The per-image function for --transform / --resolution (None = keep images as they are)."""
    if resolution is None:
        return lambda array: array
    width, height = resolution
    if transform == 'center-crop':
        return lambda array: center_crop(array, width, height)
    if transform == 'center-crop-wide':
        return lambda array: center_crop_wide(array, width, height)
    return lambda array: resize(array, width, height)


def check_options(transform, resolution):
    """Fail before reading anything when the options cannot give images with power-of-two sides (square or not,
    e.g. 512x256: train.py trains non-square networks on them)."""
    if transform is not None and resolution is None:
        raise DatasetToolError(f'--transform={transform} needs --resolution=WxH')
    if resolution is None:
        return
    width, height = resolution
    text = f'--resolution={width}x{height}'
    if transform == 'center-crop-wide':
        if height > width:
            raise DatasetToolError(f'{text}: --transform=center-crop-wide needs a wide resolution (W >= H)')
        if not _is_power_of_two(width):
            raise DatasetToolError(f'{text}: center-crop-wide writes {width}x{width} images and {width} is not a '
                                   f'power of two; training needs e.g. {_suggested_side(width, width)}xH')
        return
    for side in (width, height):
        if not _is_power_of_two(side) or side < 4:
            w, h = _suggested_side(width, width), _suggested_side(height, height)
            raise DatasetToolError(f'{text}: {side} is not a power of two of at least 4; training needs e.g. '
                                   f'--resolution={w}x{h}')


def check_first_image(array, name):
    """With no --resolution, the first image sets the size: both sides must be powers of two (at least 4)."""
    height, width = array.shape[:2]
    if not all(_is_power_of_two(side) and side >= 4 for side in (width, height)):
        side = _suggested_side(width, height)
        raise DatasetToolError(f'{name} is {width}x{height}; training needs power-of-two sides (use '
                               f'--transform=center-crop --resolution={side}x{side}, or e.g. '
                               f'--resolution={_suggested_side(width, width)}x{_suggested_side(height, height)})')


def check_same_as_first(array, name, first_array, first_name):
    """Every image must match the first one in size and channel count."""
    (height, width, channels), (first_height, first_width, first_channels) = array.shape, first_array.shape
    if (height, width) != (first_height, first_width):
        raise DatasetToolError(f'{name} is {width}x{height}, others are {first_width}x{first_height} '
                               f'(e.g. {first_name}); use --resolution=WxH to resize every image')
    if channels != first_channels:
        raise DatasetToolError(f'{name} is {width}x{height} {channel_name(channels)}, others are '
                               f'{channel_name(first_channels)} (e.g. {first_name}); convert all images to '
                               'one mode first')

#----------------------------------------------------------------------------
# Writers: everything goes to a temporary file/folder beside --dest (`<dest>.tmp<pid>`), renamed into place only on
# success; on any failure the temporary output is deleted, and a later run deletes those of killed processes.


class _OutputWriter:
    """Context manager: `write(name, data)` while open; commits on normal exit, deletes everything on error."""

    def __init__(self, dest, force=False):
        self.dest = dest
        self.force = force
        parent = os.path.dirname(os.path.abspath(dest))
        self._created_dirs = []
        while not os.path.isdir(parent):       # Remember the folders we create, to remove them on failure.
            if os.path.lexists(parent):
                raise DatasetToolError(f'--dest={dest}: {parent} is a file, not a folder')
            self._created_dirs.append(parent)
            parent = os.path.dirname(parent)
        try:
            for folder in reversed(self._created_dirs):
                os.mkdir(folder)
        except OSError:
            self._remove_created_dirs()
            raise
        dnnlib.util.remove_stale_temp_files(os.path.dirname(os.path.abspath(dest)),
                                            target=os.path.basename(os.path.abspath(dest)))
        self._tmp_path = dnnlib.util.temp_path_for(os.path.abspath(dest))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        if exc_type is None:
            try:
                self._commit()
                return False
            except BaseException:
                self._abort()
                raise
        self._abort()
        return False

    def _remove_created_dirs(self):
        for folder in self._created_dirs:
            try:
                os.rmdir(folder)
            except OSError:
                pass

    def _abort(self):
        """Delete the temporary output (even when closing it fails again, e.g. on a full disk)."""
        try:
            self._close()
        except Exception:  # noqa: BLE001 (the original error is the one to report)
            pass
        finally:
            if os.path.isdir(self._tmp_path):
                shutil.rmtree(self._tmp_path, ignore_errors=True)
            elif os.path.lexists(self._tmp_path):
                os.remove(self._tmp_path)
            self._remove_created_dirs()


class ZipWriter(_OutputWriter):
    """Writes a stored (uncompressed) zip with fixed timestamps, so equal inputs give equal bytes."""

    def __init__(self, dest, force=False):
        super().__init__(dest, force)
        self._zip = zipfile.ZipFile(self._tmp_path, 'w', compression=zipfile.ZIP_STORED)

    def write(self, name, data):
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        self._zip.writestr(info, data, compress_type=zipfile.ZIP_STORED)

    def _close(self):
        self._zip.close()

    def _commit(self):
        self._zip.close()
        os.replace(self._tmp_path, self.dest)  # Replaces an existing --dest only with --force (open_writer).


class FolderWriter(_OutputWriter):
    """Writes a folder tree; --dest must not exist or be an empty folder (or, with --force, an earlier output)."""

    def __init__(self, dest, force=False):
        super().__init__(dest, force)
        os.mkdir(self._tmp_path)

    def write(self, name, data):
        path = os.path.join(self._tmp_path, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as file:
            file.write(data)

    def _close(self):
        pass

    def _commit(self):
        if os.path.isdir(self.dest) and os.listdir(self.dest):  # --force: an earlier output, set aside then deleted.
            old = dnnlib.util.temp_path_for(os.path.abspath(self.dest), '.old')
            os.rename(self.dest, old)
            os.rename(self._tmp_path, self.dest)
            shutil.rmtree(old, ignore_errors=True)
            return
        if os.path.isdir(self.dest):
            os.rmdir(self.dest)  # Checked empty before we started.
        os.rename(self._tmp_path, self.dest)


def open_writer(dest, force=False):
    """ZipWriter for a .zip --dest, FolderWriter otherwise. An existing --dest is replaced only with --force, and
    a non-empty folder only when it holds an earlier output (its dataset.json)."""
    if dest.lower().endswith('.zip'):
        if os.path.isdir(dest):
            raise DatasetToolError(f'--dest={dest} is a folder; give a .zip file name or a folder name')
        if os.path.lexists(dest) and not force:
            raise DatasetToolError(f'--dest={dest} already exists; add --force to replace it, or give a new name')
        return ZipWriter(dest, force)
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise DatasetToolError(f'--dest={dest} is a file; give a .zip name or a new/empty folder')
    if os.path.isdir(dest) and os.listdir(dest):
        if not force:
            raise DatasetToolError(f'--dest={dest} is a folder that is not empty; give a new or empty folder '
                                   '(or --force to replace an earlier output of this tool)')
        if not os.path.isfile(os.path.join(dest, 'dataset.json')):
            raise DatasetToolError(f'--dest={dest} is a folder that is not empty and holds no dataset.json; '
                                   '--force replaces only an earlier output of this tool')
    return FolderWriter(dest, force)

#----------------------------------------------------------------------------


def encode_image(array):
    """[H, W, C] uint8 -> (file extension, bytes): PNG for 1, 3 or 4 channels, else .npy."""
    if array.shape[2] in _PNG_CHANNELS:
        return '.png', encode_png(array)
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return '.npy', buffer.getvalue()


def encode_png(array):
    """[H, W, C] uint8 (C = 1, 3, 4) -> PNG bytes, uncompressed (zlib level 0) for fast decoding during training."""
    image = PIL.Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    buffer = io.BytesIO()
    image.save(buffer, format='png', compress_level=0, optimize=False)
    return buffer.getvalue()


def archive_name(idx, ext='.png'):
    """Name of image idx inside the output: 1000 images per sub-folder."""
    return f'{idx // 1000:05d}/img{idx:08d}{ext}'


def convert(source, writer, num_images, transform_fn, rgba):
    """Read, check, transform and write num_images items of source; returns (labels or None, first array, names of
    the items the transform skipped). Output names keep the source index, so skipped items leave gaps."""
    labels, skipped = [], []
    first_array = first_name = None
    with tqdm(total=num_images, unit='img', file=sys.stderr, desc='images') as progress:
        for idx, item in enumerate(itertools.islice(source.items, num_images)):
            array = transform_fn(to_uint8_array(item.load(), item.name, rgba))
            progress.update(1)
            if array is None:
                skipped.append(item.name)
                continue
            if first_array is None:
                check_first_image(array, item.name)
                first_array, first_name = array, item.name
            check_same_as_first(array, item.name, first_array, first_name)
            ext, data = encode_image(array)
            name = archive_name(idx, ext)
            writer.write(name, data)
            labels.append([name, item.label])
    if first_array is None and skipped:
        raise DatasetToolError(f'{source.description}: all {len(skipped)} images were skipped '
                               f'({skipped_reason()}), e.g. {skipped[0]}')
    if first_array is None:
        raise DatasetToolError(f'{source.description}: no images to convert')
    has_labels = [label is not None for _name, label in labels]
    if any(has_labels) and not all(has_labels):
        missing = labels[has_labels.index(False)][0]
        raise DatasetToolError(f'some images have labels and some do not (e.g. output {missing})')
    return (labels if all(has_labels) else None), first_array, skipped


def skipped_reason():
    return ('--transform=center-crop-wide skips images narrower than W or with fewer than H rows once scaled to '
            'W columns')


def describe_skipped(skipped, num_names=5):
    """One line naming how many images were skipped and the first few of them."""
    names = ', '.join(skipped[:num_names]) + (', ...' if len(skipped) > num_names else '')
    return f'Skipped {len(skipped)} images ({skipped_reason()}): {names}'


def parse_resolution(_ctx, _param, value):
    """'256x256' -> (256, 256); None stays None."""
    if value is None:
        return None
    parts = value.lower().split('x')
    if len(parts) != 2 or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise click.BadParameter(f'{value!r} is not of the form WxH, e.g. 256x256')
    return int(parts[0]), int(parts[1])

#----------------------------------------------------------------------------


EXAMPLES = """\b
Examples:
  python dataset_tool.py --source=builtin:shapes --dest=datasets/shapes-32x32.zip --max-images=10000
  python dataset_tool.py --source=~/photos --dest=datasets/photos-256x256.zip \\
      --transform=center-crop --resolution=256x256
  python dataset_tool.py --source=~/photos --dest=datasets/photos-512x256.zip \\
      --transform=center-crop --resolution=512x256                                 # non-square
  python dataset_tool.py --source=~/sprites --dest=datasets/sprites-64x64.zip --rgba=keep   # RGBA
  python dataset_tool.py --source=~/bands-npy --dest=datasets/bands-64x64.zip  # [H, W, C] uint8 .npy, any C
  python dataset_tool.py --source=~/downloads/cifar-10-python.tar.gz --dest=datasets/cifar10-32x32.zip
  python dataset_tool.py --source=~/downloads/train-images-idx3-ubyte.gz --dest=datasets/mnist-32x32.zip
  python dataset_tool.py --source=~/horses --source-b=~/zebras --dest=datasets/horse2zebra-256x256.zip \\
      --transform=center-crop --resolution=256x256                                 # CycleGAN, unpaired
  python dataset_tool.py --source=builtin:shapes2colors --dest=datasets/shapes2colors-32x32.zip"""


@click.command(help=__doc__, epilog=EXAMPLES)
@click.option('--source', required=True, metavar='PATH', help='Folder, .zip, cifar-10-python.tar.gz, MNIST '
              '*-images-idx3-ubyte.gz, LMDB folder, or builtin:shapes.')
@click.option('--source-b', metavar='PATH', default=None, help='CycleGAN: domain B (--source is domain A); writes '
              'an unpaired dataset A/, B/ (see dataset_tool_unpaired.py). builtin:shapes2colors needs no --source-b.')
@click.option('--dest', required=True, metavar='PATH', help='Output .zip file or (new or empty) folder.')
@click.option('--max-images', type=click.IntRange(min=1), default=None, metavar='N',
              help='Stop after this many images (builtin:shapes: how many to render, default 10000).')
@click.option('--transform', type=click.Choice(['center-crop', 'center-crop-wide']), default=None,
              help='center-crop: largest centred square, resized. center-crop-wide: the official rule: the middle '
              'round(W*h/w) rows of a w x h image at full width, resized to WxH, on a black WxW square; images '
              'narrower than W or with fewer rows than H skipped (names keep the source index). Default: resize to '
              '--resolution (aspect not kept).')
@click.option('--resolution', metavar='WxH', callback=parse_resolution, default=None,
              help='Output size, e.g. 256x256. Default: keep the source size (all images must be equal).')
@click.option('--rgba', type=click.Choice(['error', 'keep', 'drop-alpha', 'white']), default='error',
              show_default=True, help='Images with transparency: stop with an error, keep RGBA (4 channels), drop '
              'the alpha channel, or composite on white.')
@click.option('--force', is_flag=True, help='Replace an existing --dest (a .zip, or a folder this tool wrote).')
def main(source, source_b, dest, max_images, transform, resolution, rgba, force):
    """Convert --source into a training dataset at --dest (see the module docstring)."""
    if source_b is not None or source == 'builtin:shapes2colors':  # CycleGAN's two domains.
        import dataset_tool_unpaired
        return dataset_tool_unpaired.convert_unpaired(source, source_b, dest, max_images, transform, resolution, rgba,
                                                      force)
    check_options(transform, resolution)
    try:
        opened = dataset_sources.open_source(source, builtin_count=max_images,
                                             builtin_resolution=resolution[0] if resolution else 32)
    except dataset_sources.SourceError as error:
        raise DatasetToolError(str(error)) from error
    for path, reason in opened.skipped:
        click.echo(f'dataset_tool: skipping {path}: {reason}', err=True)
    num_images = opened.num_items if max_images is None else min(opened.num_items, max_images)
    try:
        with open_writer(dest, force) as writer:
            labels, first_array, skipped = convert(opened, writer, num_images, make_transform(transform, resolution),
                                                   rgba)
            writer.write('dataset.json', json.dumps({'labels': labels}).encode('utf-8'))
    except dataset_sources.SourceError as error:
        raise DatasetToolError(str(error)) from error
    except OSError as error:  # A read-only folder, --dest under a file, a full disk.
        raise DatasetToolError(f'cannot write {error.filename or dest}: {error.strerror or error}') from error
    height, width, channels = first_array.shape
    if skipped:
        click.echo(describe_skipped(skipped))
    click.echo(f'Wrote {num_images - len(skipped)} images ({width}x{height} {channel_name(channels)}, '
               f'{"labelled" if labels else "no labels"}) from {opened.description} to {dest}')

#----------------------------------------------------------------------------


if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
