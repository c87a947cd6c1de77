"""Readers for the image sources that dataset_tool.py converts: folders, zips, CIFAR-10, MNIST, LMDB, builtin:shapes.

`open_source(source)` returns a `Source`: a count plus an iterator of `SourceItem`s, each with a name for error
messages, a `load()` that decodes the image (a PIL image or a [H, W, C] uint8 array), and a label
(None, an int class index, or a list of floats). Nothing is decoded before `load()` is called.
Bad input raises `SourceError` with a message that names the file at fault.
"""

import gzip
import io
import json
import os
import pickle
import tarfile
import zipfile
import re
import stat
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import PIL.Image

from training import shapes_dataset

BUILTIN_SHAPES = 'builtin:shapes'
BUILTIN_SHAPES_DEFAULT_COUNT = 10000

#----------------------------------------------------------------------------


class SourceError(Exception):
    """A source that cannot be read; the message names the file or item at fault."""


@dataclass
class SourceItem:
    name: str                   # How error messages refer to this image (file path, archive:member, file[index]).
    load: Callable[[], Any]     # Decodes the image: PIL.Image.Image or [H, W, C] uint8 numpy.
    label: Any = None           # None, int class index, or list of floats.


@dataclass
class Source:
    num_items: int              # Number of items the iterator yields (before --max-images).
    items: Iterator[SourceItem]
    description: str            # One line for the summary, e.g. 'folder images/ (1234 files)'.
    skipped: list = field(default_factory=list)  # (path, reason) of entries left out, e.g. a FIFO named x.png.

#----------------------------------------------------------------------------
# Folders and zips of image files, with optional labels in dataset.json at the top level.


def _image_extensions():
    """Lower-case extensions PIL decodes (same rule as training.dataset, which this module avoids importing
    so that dataset_tool.py starts without loading torch)."""
    PIL.Image.init()
    return set(PIL.Image.EXTENSION.keys()) | {'.npy'}


def _decode_image_bytes(data, name):
    """Decode encoded image bytes (PNG, JPEG, WebP, ...) to a loaded PIL image; .npy ([H, W] or [H, W, C], any
    channel count, e.g. multispectral) to a numpy array, without unpickling."""
    if name.lower().endswith('.npy'):
        try:
            return np.load(io.BytesIO(data), allow_pickle=False)
        except Exception as error:
            raise SourceError(f'{name} cannot be read as .npy ({type(error).__name__}: {error})') from error
    try:
        image = PIL.Image.open(io.BytesIO(data))
        image.load()
    except Exception as error:
        # PIL names the in-memory buffer ('<_io.BytesIO object at 0x...>'); the user's file name is what helps.
        detail = re.sub(r'\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>', '', str(error))
        raise SourceError(f'{name} cannot be read as an image ({type(error).__name__}: {detail})') from error
    return image


def _parse_label_file(data, name):
    """{relative path: label} from the bytes of a dataset.json, or None for {"labels": null}."""
    try:
        labels = json.loads(data).get('labels')
        if labels is None:
            return None
        return {str(fname).replace('\\', '/'): label for fname, label in labels}
    except (ValueError, TypeError, AttributeError) as error:
        raise SourceError(f'{name} is not of the form {{"labels": [[path, label], ...]}} ({error})') from error


def _file_items(image_fnames, read_bytes, describe, labels_by_fname):
    for fname in image_fnames:
        if labels_by_fname is not None and fname not in labels_by_fname:
            raise SourceError(f'{describe(fname)} has no label in dataset.json')
        label = None if labels_by_fname is None else labels_by_fname[fname]
        yield SourceItem(name=describe(fname), label=label,
                         load=lambda fname=fname: _decode_image_bytes(read_bytes(fname), describe(fname)))


def _open_file_collection(all_fnames, read_bytes, describe, kind, skipped=()):
    extensions = _image_extensions()
    image_fnames = sorted(f for f in all_fnames if os.path.splitext(f)[1].lower() in extensions)
    labels_by_fname = None
    if 'dataset.json' in all_fnames:
        labels_by_fname = _parse_label_file(read_bytes('dataset.json'), describe('dataset.json'))
    items = _file_items(image_fnames, read_bytes, describe, labels_by_fname)
    return Source(num_items=len(image_fnames), items=items, description=f'{kind} ({len(image_fnames)} images)',
                  skipped=list(skipped))


def open_folder(path):
    """All image files under `path` (recursive, sorted by relative path); labels from path/dataset.json."""
    all_fnames, skipped = [], []
    for root, _dirs, files in os.walk(path):
        for fname in files:
            full_path = os.path.join(root, fname)
            try:
                mode = os.stat(full_path).st_mode  # Follows links: a link to a regular file is fine.
            except OSError as error:
                skipped.append((full_path, f'cannot be read: {error.strerror}'))
                continue
            if not stat.S_ISREG(mode):  # Reading a FIFO or a device would block or never end.
                skipped.append((full_path, 'not a regular file (a FIFO, socket or device)'))
                continue
            all_fnames.append(os.path.relpath(full_path, start=path).replace(os.sep, '/'))

    def read_bytes(fname):
        try:
            with open(os.path.join(path, fname), 'rb') as file:
                return file.read()
        except OSError as error:
            raise SourceError(f'{os.path.join(path, fname)} cannot be read ({error.strerror})') from error

    return _open_file_collection(set(all_fnames), read_bytes, lambda fname: os.path.join(path, fname),
                                 kind=f'folder {path}', skipped=skipped)


def open_zip(path):
    """All image files inside the zip `path` (sorted by member name); labels from its dataset.json."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, EOFError, ValueError, NotImplementedError, zipfile.BadZipFile) as error:
        raise SourceError(f'{path} cannot be opened as a zip archive ({error})') from error
    all_fnames = {info.filename for info in archive.infolist() if not info.is_dir()}

    def read_bytes(fname):
        try:
            return archive.read(fname)
        except (OSError, EOFError, RuntimeError, NotImplementedError, ValueError, zipfile.BadZipFile,
                zlib.error) as error:  # Corrupt member, bad CRC, encrypted, unsupported compression.
            raise SourceError(f'{path}:{fname} cannot be read from the archive ({type(error).__name__}: '
                              f'{error})') from error

    return _open_file_collection(all_fnames, read_bytes, lambda fname: f'{path}:{fname}', kind=f'zip {path}')

#----------------------------------------------------------------------------
# CIFAR-10, python version: a tar.gz of pickled dicts {b'data': [10000, 3072] uint8, b'labels': [10000] ints}
# (str keys 'data', 'labels' when a batch was re-saved by Python 3).


_MAX_CIFAR_BATCH_BYTES = 1 << 26  # A real batch is 31 MB.


def _unpickle_cifar_batch(file, name):
    """A CIFAR-10 batch dict, read with the safe loader's restricted unpickler and its CIFAR allow-list (numpy
    arrays of plain numbers, containers, Python 2 bytes): a crafted archive cannot run code or crash numpy."""
    from torch_utils import safe_pickle
    buffer = io.BytesIO(file.read(_MAX_CIFAR_BATCH_BYTES + 1))
    buffer.name = name  # For messages.
    return safe_pickle.load_pickle(buffer, allowed=safe_pickle.CIFAR_GLOBALS, max_bytes=_MAX_CIFAR_BATCH_BYTES,
                                   encoding='bytes', hint='CIFAR-10 batches hold only numpy arrays and lists')


def _cifar_field(batch, key):
    """batch[b'key'] (the original Python 2 pickles) or batch['key'] (a Python 3 re-save); KeyError names b'key'."""
    if not isinstance(batch, dict):
        raise ValueError(f'expected a dict, found {type(batch).__name__}')
    return batch[key] if key in batch else batch[key.encode()]


def _read_cifar_batch(archive, member_name, path):
    name = f'{path}:{member_name}'
    try:
        file = archive.extractfile(member_name)
        batch = _unpickle_cifar_batch(file, name)
        images = np.asarray(_cifar_field(batch, 'data'), dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        labels = [int(label) for label in _cifar_field(batch, 'labels')]
    except KeyError as error:
        raise SourceError(f'{name} is missing from the archive or lacks {error}') from error
    except (pickle.UnpicklingError, ValueError, EOFError, TypeError, AttributeError) as error:
        raise SourceError(f'{name} is not a CIFAR-10 python batch ({error})') from error
    if len(labels) != images.shape[0]:
        raise SourceError(f'{name} has {images.shape[0]} images but {len(labels)} labels')
    return images, labels


def open_cifar10(path):
    """The 50000 training images of cifar-10-python.tar.gz, 32x32 RGB, labels 0..9 (data_batch_1..5)."""
    try:
        with tarfile.open(path, 'r:gz') as archive:
            batches = [_read_cifar_batch(archive, f'cifar-10-batches-py/data_batch_{i}', path) for i in range(1, 6)]
    except (tarfile.TarError, OSError) as error:
        raise SourceError(f'{path} cannot be read as a tar.gz archive ({error})') from error

    def items():
        for batch_idx, (images, labels) in enumerate(batches):
            for image_idx, (image, label) in enumerate(zip(images, labels, strict=True)):
                yield SourceItem(name=f'{path}:data_batch_{batch_idx + 1}[{image_idx}]', label=label,
                                 load=lambda image=image: image)

    num_items = sum(len(labels) for _images, labels in batches)
    return Source(num_items=num_items, items=items(), description=f'CIFAR-10 {path} ({num_items} images)')

#----------------------------------------------------------------------------
# MNIST idx files: big-endian int32 magic (2051 images, 2049 labels), counts, then uint8 data.


def _read_idx(path, expected_magic, num_dims):
    try:
        with gzip.open(path, 'rb') as file:
            data = file.read()
    except (OSError, EOFError) as error:
        raise SourceError(f'{path} cannot be read as gzip ({error})') from error
    header_size = 4 * (1 + num_dims)
    header = np.frombuffer(data[:header_size], dtype='>i4') if len(data) >= header_size else []
    if len(header) != 1 + num_dims or header[0] != expected_magic:
        raise SourceError(f'{path} is not an MNIST idx file (expected magic number {expected_magic})')
    shape = [int(dim) for dim in header[1:]]
    if len(data) - header_size != int(np.prod(shape)):
        raise SourceError(f'{path} holds {len(data) - header_size} bytes of data, its header says {shape}')
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def open_mnist(images_path):
    """MNIST images (zero-padded from 28x28 to 32x32, grayscale) with labels from the matching -labels- file."""
    images = _read_idx(images_path, 2051, 3)
    # 28 is not a power of two; 2 black pixels on each side give 32x32 without resampling the digits.
    images = np.pad(images, [(0, 0), (2, 2), (2, 2)])[:, :, :, np.newaxis]
    labels_path = images_path.replace('-images-idx3-ubyte.gz', '-labels-idx1-ubyte.gz')
    if not os.path.isfile(labels_path):
        raise SourceError(f'{labels_path} not found; MNIST labels must sit beside {images_path}')
    labels = _read_idx(labels_path, 2049, 1)
    if labels.shape[0] != images.shape[0]:
        raise SourceError(f'{labels_path} has {labels.shape[0]} labels for {images.shape[0]} images')

    def items():
        for idx, (image, label) in enumerate(zip(images, labels, strict=True)):
            yield SourceItem(name=f'{images_path}[{idx}]', label=int(label), load=lambda image=image: image)

    return Source(num_items=len(labels), items=items(), description=f'MNIST {images_path} ({len(labels)} images)')

#----------------------------------------------------------------------------
# LMDB (e.g. LSUN): every value is an encoded image.


def open_lmdb(path):
    """Every value of the LMDB database in folder `path`, decoded as an image; no labels."""
    try:
        import lmdb
    except ImportError as error:
        raise SourceError(f'{path} is an LMDB database; reading it needs the lmdb package '
                          '(pip install lmdb)') from error
    try:
        env = lmdb.open(path, readonly=True, lock=False, readahead=False, max_readers=1)
        num_items = env.stat()['entries']
    except lmdb.Error as error:
        raise SourceError(f'{path} cannot be opened as an LMDB database ({error})') from error

    def items():
        with env.begin(write=False) as txn:
            for key, value in txn.cursor():
                name = f'{path}[{key.decode(errors="replace")}]'
                yield SourceItem(name=name, load=lambda value=bytes(value), name=name: _decode_image_bytes(value, name))

    return Source(num_items=num_items, items=items(), description=f'LMDB {path} ({num_items} images)')

#----------------------------------------------------------------------------


def open_builtin_shapes(count, resolution):
    """`count` images of builtin:shapes at `resolution` (see training/shapes_dataset.py), labelled by shape."""
    low, high = shapes_dataset.MIN_RESOLUTION, shapes_dataset.MAX_RESOLUTION
    if not (low <= resolution <= high and resolution & (resolution - 1) == 0):
        raise SourceError(f'{BUILTIN_SHAPES} renders power-of-two resolutions from {low} to {high}, not {resolution}')
    def items():
        for idx in range(count):
            # The label comes out of the rendering, so render here; load() hands the finished image over.
            image, label = shapes_dataset.render_shape_image(idx, resolution)
            yield SourceItem(name=f'{BUILTIN_SHAPES}[{idx}]', label=label, load=lambda image=image: image)

    return Source(num_items=count, items=items(), description=f'{BUILTIN_SHAPES} ({count} images)')


def open_source(source, builtin_count=None, builtin_resolution=32):
    """Pick the reader for `source` (see dataset_tool.py --help) and open it; raises SourceError."""
    if source == BUILTIN_SHAPES:
        return open_builtin_shapes(builtin_count or BUILTIN_SHAPES_DEFAULT_COUNT, builtin_resolution)
    if source.startswith('builtin:'):
        raise SourceError(f'unknown built-in source {source}; the built-in source is {BUILTIN_SHAPES}')
    if not os.path.exists(source):
        raise SourceError(f'{source} does not exist')
    basename = os.path.basename(os.path.normpath(source))
    if os.path.isdir(source):
        return open_lmdb(source) if os.path.isfile(os.path.join(source, 'data.mdb')) else open_folder(source)
    if basename.lower().endswith('.zip'):
        return open_zip(source)
    if basename == 'cifar-10-python.tar.gz':
        return open_cifar10(source)
    if basename.endswith('-images-idx3-ubyte.gz'):
        return open_mnist(source)
    raise SourceError(f'{source} is not a supported source: expected a folder, a .zip, cifar-10-python.tar.gz, '
                      f'an MNIST *-images-idx3-ubyte.gz, an LMDB folder, or {BUILTIN_SHAPES}')

#----------------------------------------------------------------------------
