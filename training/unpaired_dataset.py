"""Unpaired two-domain datasets for CycleGAN: one zip or folder holding domain A and domain B side by side.

Layout (written by `dataset_tool.py --source=A --source-b=B` or `--source=builtin:shapes2colors`):

    A/00000/img00000000.png ...     domain A, its own image count
    B/00000/img00000000.png ...     domain B, its own image count
    dataset.json                    {"labels": null, "domains": {"A": <count>, "B": <count>}}

The folders of the official CycleGAN downloads (`trainA/`, `trainB/`, e.g. horse2zebra) are read as well. Each
domain is a training.dataset.ImageFolderDataset restricted to its folder (`subfolder=`); the training loop draws
from the two independently (separate shuffled streams), so nothing pairs image i of A with image i of B.
"""

import os
import zipfile

DOMAIN_FOLDERS = [('A', 'B'), ('trainA', 'trainB')]  # Ours first, then the official CycleGAN layout.

#----------------------------------------------------------------------------

def _top_level_folders(path):
    """Names of the top-level folders of a dataset folder or zip."""
    if os.path.isdir(path):
        return {name for name in os.listdir(path) if os.path.isdir(os.path.join(path, name))}
    try:
        with zipfile.ZipFile(path) as archive:
            return {name.split('/', 1)[0] for name in archive.namelist() if '/' in name}
    except (OSError, zipfile.BadZipFile) as error:
        raise IOError(f'{path} cannot be opened as a zip archive ({error})') from error


def find_domain_folders(path):
    """('A', 'B') or ('trainA', 'trainB'): the domain folders of the unpaired dataset at `path`.

    Raises IOError, naming what was found, when `path` is missing or is not an unpaired dataset."""
    if not os.path.exists(path):
        raise IOError(f'{path} does not exist')
    if not (os.path.isdir(path) or path.lower().endswith('.zip')):
        raise IOError(f'{path} is neither a folder nor a .zip file')
    folders = _top_level_folders(path)
    for folder_a, folder_b in DOMAIN_FOLDERS:
        if folder_a in folders and folder_b in folders:
            return folder_a, folder_b
    found = ', '.join(sorted(folders)[:6]) or 'none'
    raise IOError(f'{path} is not an unpaired two-domain dataset: it needs folders A/ and B/ (or trainA/ and '
                  f'trainB/), and has top-level folders: {found}. Make one with dataset_tool.py --source=<A> '
                  '--source-b=<B>')


def domain_dataset_kwargs(path, folder, xflip=False, random_seed=0):
    """training_set_kwargs (for dnnlib.util.construct_class_by_name) of one domain of the dataset at `path`."""
    name = f'{os.path.splitext(os.path.basename(os.path.normpath(path)))[0]}-{folder}'
    return dict(class_name='training.dataset.ImageFolderDataset', path=path, subfolder=folder, use_labels=False,
                max_size=None, xflip=bool(xflip), random_seed=random_seed, name=name)


def describe_unpaired(path):
    """dict(name, folders, resolution, image_shape, sizes) of the unpaired dataset at `path`; both domains must
    have the same image shape. Raises IOError/ValueError with the dataset named."""
    from training import dataset as dataset_module
    folders = find_domain_folders(path)
    domains = [dataset_module.ImageFolderDataset(**{k: v for k, v in domain_dataset_kwargs(path, folder).items()
                                                    if k != 'class_name'}) for folder in folders]
    shape_a, shape_b = domains[0].image_shape, domains[1].image_shape
    if shape_a != shape_b:
        raise IOError(f'{path}: domain {folders[0]} holds {shape_a[2]}x{shape_a[1]} images with {shape_a[0]} '
                      f'channels, domain {folders[1]} {shape_b[2]}x{shape_b[1]} with {shape_b[0]}; convert both '
                      'to one size and mode (dataset_tool.py --resolution=WxH)')
    if shape_a[1] % 4 or shape_a[2] % 4 or min(shape_a[1:]) < 32:
        raise IOError(f'{path}: images are {shape_a[2]}x{shape_a[1]}; CycleGAN trains on sides that are multiples '
                      'of 4 and at least 32 (the PatchGAN needs 32)')
    name = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
    for domain in domains:
        domain.close()
    return dict(name=name, folders=list(folders), resolution=min(shape_a[1:]), image_shape=list(shape_a),
                sizes=[len(domains[0]), len(domains[1])])

#----------------------------------------------------------------------------

# The paper's jitter (CG App. 7.1: images resized to 286x286, then randomly cropped back to 256x256).

MAX_LOAD_RATIO = 2  # --load-size is bounded: at most twice the image size (memory, and beyond it crops lose the image).


def resize_and_crop(images, load_size, generator=None):
    """Random-crop jitter: scale each image so that its shorter side is `load_size` px (bicubic, clamped to
    [-1, 1]), then cut a window of the original size at a uniformly random integer offset, per image.

    images: [N, C, H, W] float in [-1, 1]; load_size: int >= min(H, W). Offsets are drawn from `generator`
    (None = torch's default CPU generator, which exact resume restores). Returns [N, C, H, W], same dtype/device."""
    import torch
    import torch.nn.functional as F
    _n, _c, height, width = images.shape
    ratio = load_size / min(height, width)
    if ratio == 1:
        return images
    big_height, big_width = round(height * ratio), round(width * ratio)
    big = F.interpolate(images, size=(big_height, big_width), mode='bicubic', align_corners=False).clamp(-1, 1)
    rows = torch.randint(big_height - height + 1, [len(images)], generator=generator).tolist()
    cols = torch.randint(big_width - width + 1, [len(images)], generator=generator).tolist()
    return torch.stack([img[:, row:row + height, col:col + width] for img, row, col in zip(big, rows, cols)])
