"""Training datasets: a folder or zip of same-sized square images, with optional labels.

`Dataset` holds what every image source shares (subset selection, x-flip doubling, label handling);
`ImageFolderDataset` reads the layout written by `dataset_tool.py`:
a folder (searched recursively) or a zip archive of PNG/JPEG/... images plus an optional `dataset.json`
of the form `{"labels": [["00000/img00000000.png", 3], ...]}` (an int label is a class index, turned into
a one-hot vector; a list is used as a float vector) or `{"labels": null}`.

Items are `(image, label)` with `image: [C, H, W] uint8` numpy and `label: [label_dim] float32` numpy,
so that a torch DataLoader collates them into tensors.
"""

import io
import json
import os
import zipfile

import numpy as np
import PIL.Image
import torch

import dnnlib

#----------------------------------------------------------------------------
# PIL modes we read, and the mode each one is converted to (1 channel = 'L', 3 = 'RGB', 4 = 'RGBA').

_MODE_CONVERSION = {
    '1': 'L', 'L': 'L',
    'P': 'RGB', 'RGB': 'RGB', 'CMYK': 'RGB', 'YCbCr': 'RGB', 'LAB': 'RGB', 'HSV': 'RGB',
    'LA': 'RGBA', 'PA': 'RGBA', 'RGBA': 'RGBA', 'RGBa': 'RGBA', 'La': 'RGBA',
}
_CHANNELS_OF_MODE = {'L': 1, 'RGB': 3, 'RGBA': 4}


def _is_power_of_two(value):
    return value >= 1 and (value & (value - 1)) == 0


def image_file_extensions():
    """Lower-case file extensions (with dot) of images we read: what PIL decodes ({'.png', '.jpg', ...}) and
    '.npy' ([H, W, C] uint8 arrays, for channel counts other than 1, 3 and 4)."""
    PIL.Image.init()
    return set(PIL.Image.EXTENSION.keys()) | {'.npy'}


def read_npy_header(file, name):
    """(channels, height, width) of an .npy image from its header only; must be [H, W] or [H, W, C] uint8."""
    try:
        version = np.lib.format.read_magic(file)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _fortran_order, dtype = read_header(file)  # A literal dict, parsed safely; no pixels read.
    except Exception as error:
        raise IOError(f'Cannot read {name} as .npy: {error}') from error
    if dtype != np.uint8 or len(shape) not in (2, 3):
        raise IOError(f'{name} is a {dtype} array of shape {list(shape)}; .npy images must be [H, W] or '
                      '[H, W, C] uint8')
    return (shape[2] if len(shape) == 3 else 1), shape[0], shape[1]


def decode_npy_image(data, name):
    """.npy bytes -> [C, H, W] uint8 (object arrays refused: allow_pickle=False)."""
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as error:
        raise IOError(f'Cannot read {name} as .npy: {error}') from error
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise IOError(f'{name} is a {array.dtype} array of shape {list(array.shape)}; expected [H, W, C] uint8')
    array = array[:, :, np.newaxis] if array.ndim == 2 else array
    return np.ascontiguousarray(array.transpose(2, 0, 1))

#----------------------------------------------------------------------------


class Dataset(torch.utils.data.Dataset):
    """Base class: `len(raw images)` items, optionally a deterministic subset, optionally doubled by x-flips.

    Subclasses implement `_load_raw_image(raw_idx) -> [C, H, W] uint8` and `_load_raw_labels() -> None |
    [N] int64 | [N, L] float32`.
    """

    def __init__(self,
        name,                   # Name of the dataset (e.g. the zip's name without extension).
        raw_shape,              # [num_images, channels, height, width] of the source, before subsetting/flips.
        max_size    = None,     # Keep at most this many source images (a random subset, sorted); None = all.
        use_labels  = False,    # Return labels from the source? False = zero-length labels.
        xflip       = False,    # Append a horizontally flipped copy of every image (doubles the length)?
        random_seed = 0,        # Seed of the subset selection for max_size.
    ):
        self._name = name
        self._raw_shape = list(raw_shape)
        self._use_labels = use_labels
        self._raw_labels = None
        self._label_shape = None

        # The subset is the first max_size of a seeded permutation, re-sorted so that the order of the
        # source is kept; the same seed always gives the same subset.
        self._raw_idx = np.arange(self._raw_shape[0], dtype=np.int64)
        if max_size is not None and self._raw_idx.size > max_size:
            np.random.RandomState(random_seed % (1 << 31)).shuffle(self._raw_idx)
            self._raw_idx = np.sort(self._raw_idx[:max_size])

        # x-flip doubling: the second half repeats the first half, mirrored left-right.
        self._xflip = np.zeros(self._raw_idx.size, dtype=np.uint8)
        if xflip:
            self._raw_idx = np.tile(self._raw_idx, 2)
            self._xflip = np.concatenate([self._xflip, np.ones_like(self._xflip)])

    def _get_raw_labels(self):
        """Labels of all source images: [N] int64 class indices, [N, L] float32, or [N, 0] when unused."""
        if self._raw_labels is None:
            labels = self._load_raw_labels() if self._use_labels else None
            if labels is None:
                labels = np.zeros([self._raw_shape[0], 0], dtype=np.float32)
            labels = np.asarray(labels)
            if labels.shape[0] != self._raw_shape[0]:
                raise ValueError(f'{self._name}: {labels.shape[0]} labels for {self._raw_shape[0]} images')
            if labels.dtype == np.int64:
                if labels.ndim != 1 or (labels.size and labels.min() < 0):
                    raise ValueError(f'{self._name}: class labels must be non-negative integers')
            elif not (labels.dtype == np.float32 and labels.ndim == 2):
                raise ValueError(f'{self._name}: labels must be [N] int64 or [N, L] float32, '
                                 f'got {labels.dtype} {list(labels.shape)}')
            self._raw_labels = labels
        return self._raw_labels

    def close(self):
        """Release open file handles (reopened on demand)."""
        pass

    def _load_raw_image(self, raw_idx):
        raise NotImplementedError

    def _load_raw_labels(self):
        raise NotImplementedError

    def __getstate__(self):
        # Labels are re-read on demand; subclasses drop their open file handles too.
        return dict(self.__dict__, _raw_labels=None)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __len__(self):
        return self._raw_idx.size

    def __getitem__(self, idx):
        """Item idx: (image [C, H, W] uint8 numpy, label [label_dim] float32 numpy)."""
        image = self._load_raw_image(self._raw_idx[idx])
        assert isinstance(image, np.ndarray) and image.dtype == np.uint8
        assert list(image.shape) == self.image_shape, (image.shape, self.image_shape)
        if self._xflip[idx]:
            image = image[:, :, ::-1]
        return image.copy(), self.get_label(idx)

    def get_label(self, idx):
        """Label of item idx as [label_dim] float32 (one-hot for class labels)."""
        label = self._get_raw_labels()[self._raw_idx[idx]]
        if label.dtype == np.int64:
            onehot = np.zeros(self.label_shape, dtype=np.float32)
            onehot[label] = 1
            label = onehot
        return label.copy()

    def get_details(self, idx):
        """EasyDict(raw_idx: index in the source, xflip: bool, raw_label: label as stored in the source)."""
        return dnnlib.EasyDict(
            raw_idx=int(self._raw_idx[idx]),
            xflip=(int(self._xflip[idx]) != 0),
            raw_label=self._get_raw_labels()[self._raw_idx[idx]].copy(),
        )

    @property
    def name(self):
        return self._name

    @property
    def image_shape(self):
        """[C, H, W] of every image."""
        return list(self._raw_shape[1:])

    @property
    def num_channels(self):
        return self.image_shape[0]

    @property
    def resolution(self):
        """Side length in pixels; for non-square images the shorter side (see `aspect`)."""
        return min(self.image_shape[1], self.image_shape[2])

    @property
    def aspect(self):
        """[width, height] / resolution: [1, 1] for square images, e.g. [2, 1] for 64x32 (W x H)."""
        return [self.image_shape[2] // self.resolution, self.image_shape[1] // self.resolution]

    @property
    def label_shape(self):
        """[label_dim]: number of classes for class labels, vector length for float labels, 0 for none."""
        if self._label_shape is None:
            raw_labels = self._get_raw_labels()
            if raw_labels.dtype == np.int64:
                self._label_shape = [int(raw_labels.max()) + 1 if raw_labels.size else 0]
            else:
                self._label_shape = list(raw_labels.shape[1:])
        return list(self._label_shape)

    @property
    def label_dim(self):
        assert len(self.label_shape) == 1
        return self.label_shape[0]

    @property
    def has_labels(self):
        return any(dim != 0 for dim in self.label_shape)

    @property
    def has_onehot_labels(self):
        return self._get_raw_labels().dtype == np.int64

#----------------------------------------------------------------------------


class ImageFolderDataset(Dataset):
    """Images in a folder (recursive) or a zip archive, as written by dataset_tool.py.

    Every image must have the same size and channel count; both sides must be powers of two (square, or
    non-square such as 64x32).
    A zip is opened lazily in each process, so the dataset pickles (DataLoader workers) without a handle.
    """

    def __init__(self,
        path,                   # Folder or .zip file.
        resolution  = None,     # Expected side length; None = take it from the images. Mismatch is an error.
        use_labels  = False,    # Read labels from dataset.json? Required to exist when True.
        max_size    = None,     # See Dataset.
        xflip       = False,    # See Dataset.
        random_seed = 0,        # See Dataset.
        subfolder   = None,     # Read only the images under this top-level folder (e.g. 'A': one CycleGAN domain).
        **super_kwargs,         # Further Dataset arguments (name may be overridden).
    ):
        self._path = path
        self._zipfile = None
        self._zipfile_pid = None
        if os.path.isdir(path):
            self._type = 'dir'
            all_fnames = self._list_folder(path)
        elif os.path.isfile(path) and os.path.splitext(path)[1].lower() == '.zip':
            self._type = 'zip'
            all_fnames = sorted(self._get_zipfile().namelist())
        elif os.path.exists(path):
            raise IOError(f'Dataset {path} is neither a folder nor a .zip file')
        else:
            raise IOError(f'Dataset {path} does not exist')
        if subfolder is not None:
            all_fnames = [fname for fname in all_fnames if fname.startswith(subfolder.strip('/') + '/')]
        self._all_fnames = set(all_fnames)

        extensions = image_file_extensions()
        self._image_fnames = sorted(f for f in all_fnames if os.path.splitext(f)[1].lower() in extensions)
        if len(self._image_fnames) == 0:
            where = f'{path}' if subfolder is None else f'{path} (folder {subfolder}/)'
            raise IOError(f'Dataset {where} contains no image files (.png, .jpg, ... that PIL can read); '
                          'make one with dataset_tool.py')

        num_channels, height, width = self._check_image_headers()
        self._check_resolution(width, height, resolution)
        name = super_kwargs.pop('name', os.path.splitext(os.path.basename(os.path.normpath(path)))[0])
        raw_shape = [len(self._image_fnames), num_channels, height, width]
        super().__init__(name=name, raw_shape=raw_shape, use_labels=use_labels, max_size=max_size, xflip=xflip,
                         random_seed=random_seed, **super_kwargs)
        if use_labels:
            self._get_raw_labels()  # Fail now, not in a DataLoader worker, when labels are missing.
        self.close()

    @staticmethod
    def _list_folder(path):
        fnames = []
        for root, _dirs, files in os.walk(path):
            for fname in files:
                fnames.append(os.path.relpath(os.path.join(root, fname), start=path).replace(os.sep, '/'))
        return sorted(fnames)

    def _get_zipfile(self):
        assert self._type == 'zip'
        # A handle inherited through fork shares its file offset with the parent: reopen per process.
        if self._zipfile is None or self._zipfile_pid != os.getpid():
            self._zipfile = zipfile.ZipFile(self._path)
            self._zipfile_pid = os.getpid()
        return self._zipfile

    def _open_file(self, fname):
        if self._type == 'dir':
            return open(os.path.join(self._path, fname), 'rb')
        return self._get_zipfile().open(fname, 'r')

    def _describe(self, fname):
        """How to name a file in an error message."""
        return os.path.join(self._path, fname) if self._type == 'dir' else f'{self._path}:{fname}'

    def _read_header(self, fname):
        """(channels, height, width) of one image from its header, without decoding the pixels."""
        if fname.lower().endswith('.npy'):
            with self._open_file(fname) as file:
                return read_npy_header(file, self._describe(fname))
        try:
            with self._open_file(fname) as file:
                with PIL.Image.open(file) as image:
                    mode, (width, height) = image.mode, image.size
        except Exception as error:
            raise IOError(f'Cannot read image {self._describe(fname)}: {error}') from error
        if mode not in _MODE_CONVERSION:
            raise IOError(f'Image {self._describe(fname)} has unsupported PIL mode {mode}; '
                          'convert it to 8-bit grayscale or RGB (dataset_tool.py does this)')
        return _CHANNELS_OF_MODE[_MODE_CONVERSION[mode]], height, width

    def _check_image_headers(self):
        """All images must agree in size and channel count; returns (channels, height, width)."""
        first_fname = self._image_fnames[0]
        first = self._read_header(first_fname)
        for fname in self._image_fnames[1:]:
            current = self._read_header(fname)
            if current[1:] != first[1:]:
                raise IOError(f'Image {self._describe(fname)} is {current[2]}x{current[1]}, others are '
                              f'{first[2]}x{first[1]} (e.g. {first_fname}); use dataset_tool.py --resolution')
            if current[0] != first[0]:
                raise IOError(f'Image {self._describe(fname)} has {current[0]} channels, others have {first[0]} '
                              f'(e.g. {first_fname}); convert all images to the same mode')
        return first

    def _check_resolution(self, width, height, resolution):
        if not (_is_power_of_two(width) and _is_power_of_two(height)) or min(width, height) < 4:
            raise IOError(f'Images in {self._path} are {width}x{height}; training needs power-of-two sides of at '
                          f'least 4 (use dataset_tool.py --resolution)')
        if resolution is not None and resolution != min(width, height):
            raise IOError(f'Images in {self._path} are {width}x{height}, but resolution={resolution} was asked for')

    def close(self):
        try:
            if self._zipfile is not None and self._zipfile_pid == os.getpid():
                self._zipfile.close()
        finally:
            self._zipfile = None

    def __getstate__(self):
        return dict(super().__getstate__(), _zipfile=None, _zipfile_pid=None)

    def _load_raw_image(self, raw_idx):
        """Decode source image raw_idx as [C, H, W] uint8."""
        fname = self._image_fnames[raw_idx]
        with self._open_file(fname) as file:
            data = file.read()
        if fname.lower().endswith('.npy'):
            array = decode_npy_image(data, self._describe(fname))
            if list(array.shape) != self.image_shape:
                raise IOError(f'Image {self._describe(fname)} has shape {list(array.shape)}, '
                              f'expected {self.image_shape}')
            return array
        with PIL.Image.open(io.BytesIO(data)) as image:
            image = image.convert(_MODE_CONVERSION[image.mode])
            array = np.asarray(image, dtype=np.uint8)
        if array.ndim == 2:
            array = array[:, :, np.newaxis]  # [H, W] -> [H, W, 1]
        array = array.transpose(2, 0, 1)      # [H, W, C] -> [C, H, W]
        if list(array.shape) != self.image_shape:
            raise IOError(f'Image {self._describe(fname)} has shape {list(array.shape)}, '
                          f'expected {self.image_shape}')
        return array

    def _load_raw_labels(self):
        """Labels from dataset.json: [N] int64 class indices or [N, L] float32; None when absent."""
        labels_by_fname = self._read_label_file()
        if labels_by_fname is None:
            raise IOError(f'--cond=1 needs labels in dataset.json of {self._path}')
        missing = [fname for fname in self._image_fnames if fname not in labels_by_fname]
        if missing:
            raise IOError(f'dataset.json of {self._path} has no label for {missing[0]} '
                          f'({len(missing)} of {len(self._image_fnames)} images unlabelled)')
        labels = [labels_by_fname[fname] for fname in self._image_fnames]
        if all(isinstance(label, int) and not isinstance(label, bool) for label in labels):
            return np.array(labels, dtype=np.int64)
        if all(isinstance(label, list) for label in labels) and len({len(label) for label in labels}) == 1:
            return np.array(labels, dtype=np.float32).reshape(len(labels), -1)
        raise IOError(f'dataset.json of {self._path}: labels must be all integers (class indices) '
                      'or all lists of the same length')

    def _read_label_file(self):
        """{relative file name: label} from dataset.json, or None when the file or its labels are absent."""
        fname = 'dataset.json'
        if fname not in self._all_fnames:
            return None
        with self._open_file(fname) as file:
            try:
                labels = json.load(file).get('labels')
            except (ValueError, AttributeError) as error:
                raise IOError(f'{self._describe(fname)} is not valid JSON of the form '
                              f'{{"labels": [[name, label], ...]}}: {error}') from error
        if labels is None:
            return None
        return {str(name).replace('\\', '/'): label for name, label in labels}

    @property
    def has_label_file_labels(self):
        """True when dataset.json provides labels, whatever use_labels is (for probing before --cond)."""
        return self._read_label_file() is not None

#----------------------------------------------------------------------------
