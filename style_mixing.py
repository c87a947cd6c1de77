"""Style-mixing grid: each cell is a row seed's image with the `--styles` layers taken from a column seed.

Examples:
    python style_mixing.py --network=network-snapshot-000100.pkl --rows=85,100,75 --cols=55,821,1789 --outdir=out
    python style_mixing.py --network=stylegan3-t.pkl --rows=85,100 --cols=55,821 --styles=0-3 --trunc=0.7 --outdir=out

Writes OUTDIR/grid.png ((1 + rows) x (1 + columns) images: the first row holds the column seeds' images, the first
column the row seeds' images, the top-left corner is black) and OUTDIR/<row seed>-<column seed>.png per cell.
The mixing itself is training/style_mixing.py (the official convention: the cell takes the row seed's ws and
the column seed's ws on the --styles layers). Works for StyleGAN1, 2 and 3 (their numbers of ws differ).
"""

import os

import click
import numpy as np
import torch

from dnnlib import cli
from gen_images import class_vector, load_generator, precision_option, save_png, to_uint8_hwc
from training import style_mixing

#----------------------------------------------------------------------------

def synthesize(G, ws, noise_mode='const', batch_size=8, progress=None):
    """uint8 images [N, H, W, C] of ws [N, num_ws, w_dim], `batch_size` at a time (progress: a tqdm or None)."""
    images = []
    for ws_batch in ws.split(batch_size):
        with torch.no_grad():
            images.append(to_uint8_hwc(G.synthesis(ws_batch, noise_mode=noise_mode)))
        if progress is not None:
            progress.update(len(ws_batch))
    return np.concatenate(images)


def assemble_mixing_grid(row_images, col_images, cell_images):
    """One uint8 image [(R + 1) * H, (C + 1) * W, ch] from row [R, H, W, ch], column [C, H, W, ch] and cell
    [R, C, H, W, ch] images: column images along the top, row images down the left, the corner black."""
    num_rows, num_cols, height, width, channels = cell_images.shape
    canvas = np.zeros([(num_rows + 1) * height, (num_cols + 1) * width, channels], dtype=np.uint8)
    for col, image in enumerate(col_images):
        canvas[:height, (col + 1) * width:(col + 2) * width] = image
    for row in range(num_rows):
        top = (row + 1) * height
        canvas[top:top + height, :width] = row_images[row]
        for col in range(num_cols):
            canvas[top:top + height, (col + 1) * width:(col + 2) * width] = cell_images[row, col]
    return canvas

#----------------------------------------------------------------------------

EXAMPLES = '''\b
Examples:
  # Coarse styles (layers 0-6) of the column seeds on the row seeds:
  python style_mixing.py --network=network-snapshot-000100.pkl --rows=85,100,75 --cols=55,821,1789 \\
      --styles=0-6 --outdir=out'''


@click.command(epilog=EXAMPLES)
@click.option('--network', 'network_pkl', help='Network pickle or .safetensors filename or URL', required=True,
              metavar='PATH|URL')
@click.option('--rows', 'row_seeds', type=cli.parse_seeds, required=True, help="Row seeds, e.g. '85,100,75'",
              metavar='SEEDS')
@click.option('--cols', 'col_seeds', type=cli.parse_seeds, required=True, help="Column seeds, e.g. '55,821,1789'",
              metavar='SEEDS')
@click.option('--styles', 'col_styles', type=cli.parse_range, default='0-6', show_default=True,
              help='Layers (ws indices) taken from the column seeds', metavar='LAYERS')
@click.option('--trunc', 'truncation_psi', type=cli.parse_finite_float, default=1, show_default=True,
              help='Truncation psi', metavar='PSI')
@click.option('--class', 'class_idx', type=int, help='Class label (required for conditional networks)', metavar='INT')
@click.option('--noise-mode', type=click.Choice(['const', 'random', 'none']), default='const', show_default=True)
@click.option('--batch', 'batch_size', type=click.IntRange(min=1), default=8, show_default=True,
              help='Images synthesized per forward pass', metavar='INT')
@click.option('--outdir', type=click.Path(file_okay=False), required=True, help='Where to save the output images',
              metavar='DIR')
@click.option('--device', default='auto', show_default=True, help='auto, cpu, cuda, cuda:1, mps', metavar='DEVICE')
@precision_option
@click.option('--allow-exec', is_flag=True, help='Execute the source code embedded in an unknown pickle (unsafe)')
def main(network_pkl, row_seeds, col_seeds, col_styles, truncation_psi, class_idx, noise_mode, batch_size, outdir,
         device, precision, allow_exec):
    """Style-mixing grid: the row seeds' images with the --styles layers of the column seeds.

    Writes OUTDIR/grid.png and OUTDIR/ROW-COL.png for every cell.
    """
    from tqdm import tqdm
    if not row_seeds or not col_seeds:
        raise click.UsageError('--rows and --cols each need at least one seed')
    device = cli.choose_device(device)
    cli.tune_cpu_allocator(device)
    click.echo(f'Loading networks from "{network_pkl}" on {device}...')
    G = load_generator(network_pkl, device, allow_exec=allow_exec, precision=precision)
    if not all(hasattr(G, name) for name in ('mapping', 'synthesis', 'num_ws')) or G.num_ws < 2:
        raise click.ClickException(f'--network={network_pkl}: its generator ({type(G).__name__}) has no per-layer '
                                   'styles (mapping and synthesis networks); style mixing needs StyleGAN 1, 2 or 3')
    label = class_vector(G, class_idx, device)
    try:
        row_ws, col_ws, cell_ws = style_mixing.mixing_grid_ws(G, row_seeds, col_seeds, col_styles,
                                                              truncation_psi=truncation_psi, label=label,
                                                              device=device)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint='--styles') from err
    num_images = len(row_seeds) + len(col_seeds) + cell_ws.shape[0] * cell_ws.shape[1]
    with tqdm(total=num_images, desc='Generating', unit='img') as progress:
        row_images = synthesize(G, row_ws, noise_mode, batch_size, progress)
        col_images = synthesize(G, col_ws, noise_mode, batch_size, progress)
        cell_images = synthesize(G, cell_ws.flatten(0, 1), noise_mode, batch_size, progress)
    cell_images = cell_images.reshape(len(row_seeds), len(col_seeds), *cell_images.shape[1:])

    os.makedirs(outdir, exist_ok=True)
    for row, row_seed in enumerate(row_seeds):
        for col, col_seed in enumerate(col_seeds):
            save_png(cell_images[row, col], os.path.join(outdir, f'{row_seed}-{col_seed}.png'))
    save_png(assemble_mixing_grid(row_images, col_images, cell_images), os.path.join(outdir, 'grid.png'))
    click.echo(f'Wrote {outdir}/grid.png and {cell_images.shape[0] * cell_images.shape[1]} cell images')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
