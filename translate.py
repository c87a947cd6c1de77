"""Translate images with a trained CycleGAN: G_AB (A -> B) or G_BA (B -> A) of a snapshot.

    python translate.py --network=training-runs/00000-cyclegan-.../network-snapshot-000004.pkl \\
        --direction=AtoB --input=photos/ --outdir=out

--input is one image or a folder (searched recursively); every image is translated at its own size, which must be
a multiple of 4 in both sides (any size, not only the training size). Outputs are PNGs at the same relative paths
under --outdir. The snapshot is read with the safe loader (nothing in it runs). Bad input (a --direction other
than AtoB/BtoA, a size that is not a multiple of 4, a snapshot that is not a CycleGAN) stops with one line and
exit code 1.
"""

import os

import click
import numpy as np
import PIL.Image
from tqdm import tqdm

DIRECTIONS = {'AtoB': 'G_AB', 'BtoA': 'G_BA'}

#----------------------------------------------------------------------------

class TranslateError(click.ClickException):
    """Stops the tool with exit code 1 and one line `translate: <what is wrong>`."""

    def show(self, file=None):
        click.echo(f'translate: {self.message}', err=True)


def list_inputs(path):
    """[(input file, output name relative to --outdir)] for an image file or a folder of images (recursive)."""
    PIL.Image.init()
    extensions = set(PIL.Image.EXTENSION.keys())
    if os.path.isfile(path):
        return [(path, os.path.splitext(os.path.basename(path))[0] + '.png')]
    if not os.path.isdir(path):
        raise TranslateError(f'--input={path} does not exist')
    inputs = []
    for root, _dirs, files in os.walk(path):
        for fname in sorted(files):
            if os.path.splitext(fname)[1].lower() in extensions:
                rel = os.path.relpath(os.path.join(root, fname), path)
                inputs.append((os.path.join(root, fname), os.path.splitext(rel)[0] + '.png'))
    if not inputs:
        raise TranslateError(f'--input={path} holds no image files PIL can read')
    return sorted(inputs, key=lambda item: item[1])


def check_sizes(inputs):
    """Read every input's header before anything is written: sides must be multiples of 4."""
    for path, _rel_name in inputs:
        try:
            with PIL.Image.open(path) as image:
                width, height = image.size
        except (OSError, ValueError) as err:
            raise TranslateError(f'{path} cannot be read as an image ({err})') from err
        if height % 4 or width % 4:
            raise TranslateError(f'{path} is {width}x{height}; the generator needs sides that are multiples of 4 '
                                 f'(e.g. crop or resize to {width - width % 4}x{height - height % 4})')


def load_image(path, channels):
    """The image at `path` as [1, channels, H, W] float32 in [-1, 1] (numpy); H and W must be multiples of 4."""
    try:
        with PIL.Image.open(path) as image:
            image = image.convert('L' if channels == 1 else 'RGB')
            array = np.asarray(image, dtype=np.float32)
    except (OSError, ValueError) as err:
        raise TranslateError(f'{path} cannot be read as an image ({err})') from err
    height, width = array.shape[:2]
    if height % 4 or width % 4:
        raise TranslateError(f'{path} is {width}x{height}; the generator needs sides that are multiples of 4 '
                             f'(e.g. crop or resize to {width - width % 4}x{height - height % 4})')
    array = array[:, :, np.newaxis] if array.ndim == 2 else array
    if array.shape[2] != channels:
        raise TranslateError(f'{path} has {array.shape[2]} channels, the network {channels}')
    return (array.transpose(2, 0, 1)[np.newaxis] / 127.5 - 1).astype(np.float32)


def save_image(img, path):
    """img: [1, C, H, W] float in [-1, 1] -> PNG at path (atomic: temporary file, then rename)."""
    array = np.rint((img[0].transpose(1, 2, 0) + 1) * 127.5).clip(0, 255).astype(np.uint8)
    image = PIL.Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    tmp_path = f'{path}.tmp{os.getpid()}'
    try:
        image.save(tmp_path, format='PNG')
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


def load_generator(network, direction):
    """G_AB or G_BA of the CycleGAN snapshot `network`, in eval mode; errors are TranslateErrors."""
    from torch_utils import pickle_checks
    from training import cyclegan_snapshot
    try:
        data = cyclegan_snapshot.load_cyclegan_snapshot(network)
    except (FileNotFoundError, cyclegan_snapshot.NotCycleGANError, pickle_checks.UnsafePickleError,
            pickle_checks.CorruptPickleError) as err:
        raise TranslateError(f'--network: {err}') from err
    return data[DIRECTIONS[direction]].eval().requires_grad_(False)


def resolve_device(device):
    import torch
    if device == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if device == 'cuda' and not torch.cuda.is_available():
        raise TranslateError('--device=cuda: no usable CUDA device here (use --device=cpu or auto)')
    return torch.device(device)

#----------------------------------------------------------------------------

EXAMPLES = """\b
Examples:
  python translate.py --network=training-runs/00000-cyclegan-.../network-snapshot-000004.pkl --direction=AtoB \\
      --input=warm-shapes/ --outdir=out
  python translate.py --network=horse2zebra.pkl --direction=BtoA --input=zebra.jpg --outdir=out --device=cpu"""


@click.command(help=__doc__, epilog=EXAMPLES)
@click.option('--network', 'network', required=True, metavar='PKL', help='CycleGAN snapshot (network-snapshot-*.pkl)')
@click.option('--direction', required=True, metavar='AtoB|BtoA', help='AtoB uses G_AB, BtoA uses G_BA')
@click.option('--input', 'input_path', required=True, metavar='PATH', help='An image file or a folder of images')
@click.option('--outdir', required=True, metavar='DIR', help='Where to write the translated PNGs')
@click.option('--device', type=click.Choice(['auto', 'cpu', 'cuda']), default='auto', show_default=True,
              help='auto = CUDA if available, else CPU')
def main(network, direction, input_path, outdir, device):
    """Translate --input with one generator of --network into --outdir."""
    import torch
    if direction not in DIRECTIONS:
        raise TranslateError(f'--direction={direction}: choose AtoB (G_AB) or BtoA (G_BA)')
    inputs = list_inputs(input_path)
    check_sizes(inputs)
    device = resolve_device(device)
    G = load_generator(network, direction).to(device)
    for path, rel_name in tqdm(inputs, unit='img', desc=direction):
        img = torch.from_numpy(load_image(path, G.img_channels)).to(device)
        with torch.no_grad():
            out = G(img).cpu().numpy()
        save_image(out, os.path.join(outdir, rel_name))
    click.echo(f'Translated {len(inputs)} image(s) {direction} into {outdir}')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
