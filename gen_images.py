"""Generate images from a trained network pickle, one PNG per seed.

Examples:
    python gen_images.py --network=training-runs/00000-.../network-snapshot-000100.pkl --seeds=0-7 --outdir=out
    python gen_images.py --network=stylegan3-r.pkl --seeds=1,5 --trunc=0.7 --translate=0.1,0 --rotate=10 --outdir=out
    python gen_images.py --network=ffhq.pkl --projected-w=out/projected_w.npz --outdir=out   # projector.py output
"""

import os
import pickle

import click
import numpy as np
import PIL.Image
import torch

import legacy
from dnnlib import cli

#----------------------------------------------------------------------------

def make_transform(translate, angle_deg):
    """3x3 affine matrix that rotates by angle_deg (degrees) and then translates by translate (image units)."""
    s = np.sin(np.deg2rad(angle_deg))
    c = np.cos(np.deg2rad(angle_deg))
    return np.array([[c, s, translate[0]], [-s, c, translate[1]], [0, 0, 1]], dtype=np.float64)

def set_output_transform(G, translate, rotate):
    """Point a StyleGAN3 generator's output at (translate, rotate). The network holds the *inverse* transform."""
    synthesis_input = getattr(G.synthesis, 'input', None)
    if not hasattr(synthesis_input, 'transform'):
        raise click.UsageError('--translate/--rotate need a StyleGAN3 network (its input layer holds the transform); '
                               'this network has no synthesis.input.transform')
    inverse = np.linalg.inv(make_transform(translate, rotate))
    synthesis_input.transform.copy_(torch.from_numpy(inverse).to(synthesis_input.transform))

def class_vector(G, class_idx, device):
    """The label tensor [1, c_dim] for --class, with clear errors for (un)conditional networks."""
    label = torch.zeros([1, G.c_dim], device=device)
    if G.c_dim == 0:
        if class_idx is not None:
            click.echo('warning: --class is ignored: the network is unconditional', err=True)
        return label
    if class_idx is None:
        raise click.UsageError(f'the network is conditional ({G.c_dim} classes): pass --class=0..{G.c_dim - 1}')
    if not 0 <= class_idx < G.c_dim:
        raise click.BadParameter(f'--class={class_idx} is outside 0..{G.c_dim - 1}', param_hint='--class')
    label[:, class_idx] = 1
    return label

def load_generator(network_pkl, device, allow_exec=False):
    """Load G_ema from a pickle path or URL through the safe loader and move it to device."""
    import dnnlib
    try:
        with dnnlib.util.open_url(network_pkl) as f:
            G = legacy.load_network_pkl(f, allow_exec=allow_exec)['G_ema']
    except (OSError, pickle.UnpicklingError) as e:  # Missing, corrupt, or refused by the safe loader.
        raise click.BadParameter(f'cannot load {network_pkl}: {e}', param_hint='--network')
    except KeyError:
        raise click.BadParameter(f'{network_pkl} holds no G_ema network', param_hint='--network')
    return G.eval().requires_grad_(False).to(device)

def to_uint8_hwc(img):
    """[N, C, H, W] float in [-1, 1] -> [N, H, W, C] uint8 numpy (round-to-nearest, as the official tools)."""
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()

def save_png(array_hwc, path):
    """Write an HWC uint8 array as PNG atomically (grayscale when C == 1)."""
    image = PIL.Image.fromarray(array_hwc[:, :, 0] if array_hwc.shape[2] == 1 else array_hwc)
    tmp = f'{path}.tmp{os.getpid()}.png'
    image.save(tmp)
    os.replace(tmp, path)

def load_projected_w(path, G, device):
    """ws [N, num_ws, w_dim] from a projector.py `projected_w.npz` (key `w`); the optimised noise inputs it holds
    (`noise.<buffer name>`) are copied into G so that the image is the projection's. Raises click.BadParameter."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError) as err:
        raise click.BadParameter(f'cannot read {path}: {err}', param_hint='--projected-w') from err
    ws = arrays.get('w')
    shape_ok = ws is not None and ws.ndim == 3 and len(ws) > 0 and ws.shape[1:] == (G.num_ws, G.w_dim)
    if not shape_ok or not np.issubdtype(ws.dtype, np.floating) or not np.isfinite(ws).all():
        raise click.BadParameter(f'{path}: expected finite float `w` of shape [N >= 1, {G.num_ws}, {G.w_dim}] for this '
                                 f'network, got {None if ws is None else f"{ws.dtype} {list(ws.shape)}"}',
                                 param_hint='--projected-w')
    buffers = dict(G.synthesis.named_buffers())
    for key, value in arrays.items():
        name = key[len('noise.'):]
        if key.startswith('noise.') and name in buffers and buffers[name].shape == value.shape:
            buffers[name].copy_(torch.from_numpy(value))
    return torch.from_numpy(ws.astype(np.float32)).to(device)

#----------------------------------------------------------------------------

@click.command()
@click.option('--network', 'network_pkl', help='Network pickle or .safetensors filename or URL', required=True)
@click.option('--seeds', type=cli.parse_range, help="List of random seeds, e.g. '0,1,4-6'")
@click.option('--projected-w', type=click.Path(dir_okay=False), help='projected_w.npz of projector.py (instead of '
              '--seeds): writes projNN.png')
@click.option('--trunc', 'truncation_psi', type=float, help='Truncation psi', default=1, show_default=True)
@click.option('--class', 'class_idx', type=int, help='Class label (required for conditional networks)')
@click.option('--noise-mode', type=click.Choice(['const', 'random', 'none']), default='const', show_default=True)
@click.option('--translate', type=cli.parse_vec2, default='0,0', show_default=True,
              help='Translate XY coordinate, e.g. 0.3,1 (StyleGAN3 only)')
@click.option('--rotate', type=float, default=0, show_default=True, help='Rotation angle in degrees (StyleGAN3 only)')
@click.option('--outdir', type=click.Path(file_okay=False), required=True, help='Where to save the output images')
@click.option('--device', default='auto', show_default=True, help='auto, cpu, cuda, cuda:1, mps')
@click.option('--allow-exec', is_flag=True, help='Execute the source code embedded in an unknown pickle (unsafe)')
def main(network_pkl, seeds, projected_w, truncation_psi, class_idx, noise_mode, translate, rotate, outdir, device,
         allow_exec):
    """Generate images using a pretrained network pickle; writes OUTDIR/seedNNNN.png per seed (projNN.png per w
    of --projected-w)."""
    from tqdm import tqdm
    if seeds is None and projected_w is None:
        raise click.UsageError('give --seeds (or --projected-w)')
    device = cli.choose_device(device)
    click.echo(f'Loading networks from "{network_pkl}" on {device}...')
    G = load_generator(network_pkl, device, allow_exec=allow_exec)
    os.makedirs(outdir, exist_ok=True)
    label = class_vector(G, class_idx, device)
    if translate != (0, 0) or rotate != 0:
        set_output_transform(G, translate, rotate)
    if projected_w is not None:
        if seeds:
            click.echo('warning: --seeds is ignored when using --projected-w', err=True)
        for idx, ws in enumerate(load_projected_w(projected_w, G, device)):
            with torch.no_grad():
                img = G.synthesis(ws[None], noise_mode=noise_mode)
            save_png(to_uint8_hwc(img)[0], os.path.join(outdir, f'proj{idx:02d}.png'))
        click.echo(f'Wrote {idx + 1} projection image(s) to {outdir}')
        return

    for seed in tqdm(seeds, desc='Generating', unit='img', disable=len(seeds) < 2):
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).to(device=device, dtype=torch.float32)
        with torch.no_grad():
            img = G(z, label, truncation_psi=truncation_psi, noise_mode=noise_mode)
        save_png(to_uint8_hwc(img)[0], os.path.join(outdir, f'seed{seed:04d}.png'))
    click.echo(f'Wrote {len(seeds)} image(s) to {outdir}')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
