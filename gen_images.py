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

import dnnlib
import legacy
from dnnlib import cli
from torch_utils import threads
from training import accel

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

MAX_LATENT_DIM = 1 << 16      # z_dim / w_dim / c_dim above this are not networks we know how to run.
MAX_RESOLUTION = 1 << 14      # Output side in pixels.


def refuse_network(network_pkl, reason):
    """Refuse a --network file: a one-line message naming it, exit code 1 (a bad file, not a usage error)."""
    source = f'{network_pkl}: '
    reason = reason[len(source):] if reason.startswith(source) else reason  # The loader's errors name it too.
    raise click.ClickException(f'--network={network_pkl}: {reason}')


def check_generator(G, network_pkl):
    """Fail with a message (refuse_network: exit code 1) when G is not a generator we can run: a wrong kind
    of network (e.g. a Discriminator stored as G_ema) or dimensions far outside any real network."""
    def refuse(reason):
        refuse_network(network_pkl, f'G_ema {reason}')
    if not isinstance(G, torch.nn.Module):
        refuse(f'is a {type(G).__name__}, not a network')
    missing = [name for name in ('z_dim', 'c_dim', 'w_dim', 'img_resolution', 'img_channels', 'mapping', 'synthesis')
               if not hasattr(G, name)]
    if missing:
        refuse(f'is a {type(G).__name__} without {", ".join(missing)}: not a generator (is it a '
               'discriminator or another network saved under that key?)')
    for name, low, high in [('z_dim', 1, MAX_LATENT_DIM), ('c_dim', 0, MAX_LATENT_DIM),
                            ('w_dim', 1, MAX_LATENT_DIM), ('img_resolution', 1, MAX_RESOLUTION),
                            ('img_channels', 1, 16)]:
        value = getattr(G, name)
        if type(value) is not int or not low <= value <= high:
            refuse(f'has {name}={value!r}, outside {low}..{high}; the file is damaged or not a StyleGAN generator')


def run_generator(G, network_pkl, fn):
    """fn() with the errors a loadable but inconsistent network raises (wrong-shape weights, ...) turned into a
    message naming the pickle."""
    try:
        return fn()
    except (RuntimeError, ValueError, TypeError, IndexError, AttributeError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise click.ClickException(f'--network={network_pkl}: G_ema cannot run ({type(err).__name__}: {first_line}); the '
                                   'pickle holds weights that do not fit its network (damaged or edited file)') from err


PRECISION_HELP = ('Dtype of the top resolutions\' layers: fp32, fp16 (CUDA only) or bf16 (any device; StyleGAN2 at '
                  'full width 1.5-1.8x faster on CPUs with AVX512-BF16/AMX, StyleGAN3 1.1-1.3x; pixels 1-2/255 RMS '
                  'off)  [default: as built: fp16 on CUDA, fp32 elsewhere]')
precision_option = click.option('--precision', type=click.Choice(list(accel.PRECISIONS)), default=None,
                                help=PRECISION_HELP)


def load_generator(network_pkl, device, allow_exec=False, precision=None):
    """Load G_ema from a pickle path or URL through the safe loader, check it, and move it to device; `precision`
    (None, 'fp32', 'fp16', 'bf16') as training/accel.set_inference_precision. Every refusal is a
    click.ClickException `--network=PATH: ...` (exit code 1) or a usage error naming --precision, for all tools that
    load a generator."""
    kind = cli.describe_non_pickle(network_pkl) if os.path.isfile(network_pkl) else None
    if kind is not None:
        refuse_network(network_pkl, f'it is {kind}')
    try:
        with dnnlib.util.open_url(network_pkl) as f:
            G = legacy.load_network_pkl(f, allow_exec=allow_exec)['G_ema']
    except (OSError, pickle.UnpicklingError) as e:  # Missing, corrupt, or refused by the safe loader.
        refuse_network(network_pkl, f'cannot load it: {e}')
    except KeyError:
        refuse_network(network_pkl, 'holds no G_ema network')
    if G is None:
        refuse_network(network_pkl, 'holds no G_ema network (it is None)')
    check_generator(G, network_pkl)
    G = G.eval().requires_grad_(False).to(device)
    try:
        accel.set_inference_precision(G, precision, torch.device(device).type)
    except ValueError as err:
        raise click.UsageError(f'--precision={precision}: {err}') from err
    return G


def prepare_outdir(outdir):
    """Create --outdir (and its parents) and remove temporary files that killed runs left there."""
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as err:
        raise click.BadParameter(f'cannot create the folder {outdir}: {err.strerror} (is it, or a folder above it, '
                                 'a file? is it read-only?)', param_hint='--outdir') from err
    dnnlib.util.remove_stale_temp_files(outdir)

def to_uint8_hwc(img):
    """[N, C, H, W] float in [-1, 1] -> [N, H, W, C] uint8 numpy (round-to-nearest, as the official tools)."""
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()

def save_png(array_hwc, path):
    """Write an HWC uint8 array as PNG atomically (grayscale when C == 1)."""
    image = PIL.Image.fromarray(array_hwc[:, :, 0] if array_hwc.shape[2] == 1 else array_hwc)
    dnnlib.util.write_file_atomic(path, lambda f: image.save(f, format='PNG'))

def save_image(array_hwc, path_stem):
    """Write an HWC uint8 image as path_stem + '.png' (1, 3 or 4 channels: grayscale, RGB, RGBA) or, for other
    channel counts (multispectral networks), as path_stem + '.npy' ([H, W, C] uint8), atomically. Returns the path."""
    if array_hwc.shape[2] in (1, 3, 4):
        save_png(array_hwc, path_stem + '.png')
        return path_stem + '.png'
    dnnlib.util.write_file_atomic(path_stem + '.npy',
                                  lambda f: np.save(f, np.ascontiguousarray(array_hwc), allow_pickle=False))
    return path_stem + '.npy'

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

EXAMPLES = '''\b
Examples:
  # Curated StyleGAN3 images, truncation 0.7, translated and rotated:
  python gen_images.py --outdir=out --trunc=0.7 --seeds=2 --translate=0.2,0.1 --rotate=10 \\
      --network=stylegan3-r-afhqv2-512x512.pkl
  # Seeds 0-35 from a snapshot of your own run, on CPU:
  python gen_images.py --outdir=out --seeds=0-35 --device=cpu \\
      --network=training-runs/00000-stylegan2-shapes-32x32-gpus1-batch16-gamma0.05/network-snapshot-000010.pkl
  # The image(s) projector.py found for a target photo:
  python gen_images.py --outdir=out --projected-w=proj/projected_w.npz --network=network-snapshot-000100.pkl
  # Class 3 of a conditional network:
  python gen_images.py --outdir=out --seeds=0-7 --class=3 --network=cifar10.pkl'''


@click.command(epilog=EXAMPLES)
@click.option('--network', 'network_pkl', help='Network pickle or .safetensors filename or URL', required=True,
              metavar='PATH|URL')
@click.option('--seeds', type=cli.parse_seeds, help="List of random seeds (0..2^32-1), e.g. '0,1,4-6'",
              metavar='RANGE')
@click.option('--projected-w', type=click.Path(dir_okay=False), help='projected_w.npz of projector.py (instead of '
              '--seeds): writes projNN.png', metavar='FILE')
@click.option('--trunc', 'truncation_psi', type=cli.parse_finite_float, help='Truncation psi', default=1, show_default=True,
              metavar='PSI')
@click.option('--class', 'class_idx', type=int, help='Class label (required for conditional networks)', metavar='INT')
@click.option('--noise-mode', type=click.Choice(['const', 'random', 'none']), default='const', show_default=True)
@click.option('--translate', type=cli.parse_vec2, default='0,0', show_default=True, metavar='VEC2',
              help='Translate XY coordinate, e.g. 0.3,1 (StyleGAN3 only)')
@click.option('--rotate', type=float, default=0, show_default=True, help='Rotation angle in degrees (StyleGAN3 only)',
              metavar='ANGLE')
@click.option('--outdir', type=click.Path(file_okay=False), required=True, help='Where to save the output images',
              metavar='DIR')
@click.option('--device', default='auto', show_default=True, help='auto, cpu, cuda, cuda:1, mps', metavar='DEVICE')
@click.option('--threads', 'num_threads', type=click.IntRange(min=0), default=0, show_default=True,
              help='CPU threads; 0 = OMP_NUM_THREADS or the physical cores available', metavar='INT')
@precision_option
@click.option('--allow-exec', is_flag=True, help='Execute the source code embedded in an unknown pickle (unsafe)')
def main(network_pkl, seeds, projected_w, truncation_psi, class_idx, noise_mode, translate, rotate, outdir, device,
         num_threads, precision, allow_exec):
    """Generate images using a pretrained network pickle; writes OUTDIR/seedNNNN.png per seed (projNN.png per w
    of --projected-w)."""
    from tqdm import tqdm
    if seeds is None and projected_w is None:
        raise click.UsageError('give --seeds (or --projected-w)')
    device = cli.choose_device(device)
    cli.tune_cpu_allocator(device)
    threads.set_threads(num_threads)
    click.echo(f'Loading networks from "{network_pkl}" on {device}...')
    G = load_generator(network_pkl, device, allow_exec=allow_exec, precision=precision)
    prepare_outdir(outdir)
    label = class_vector(G, class_idx, device)
    if translate != (0, 0) or rotate != 0:
        set_output_transform(G, translate, rotate)
    if projected_w is not None:
        if seeds:
            click.echo('warning: --seeds is ignored when using --projected-w', err=True)
        for idx, ws in enumerate(load_projected_w(projected_w, G, device)):
            with torch.no_grad():
                img = run_generator(G, network_pkl, lambda: G.synthesis(ws[None], noise_mode=noise_mode))
            save_image(to_uint8_hwc(img)[0], os.path.join(outdir, f'proj{idx:02d}'))
        click.echo(f'Wrote {idx + 1} projection image(s) to {outdir}')
        return

    for seed in tqdm(seeds, desc='Generating', unit='img', disable=len(seeds) < 2):
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).to(device=device, dtype=torch.float32)
        with torch.no_grad():
            img = run_generator(G, network_pkl,
                                lambda: G(z, label, truncation_psi=truncation_psi, noise_mode=noise_mode))
        path_stem = os.path.join(outdir, f'seed{seed:04d}')
        try:
            save_image(to_uint8_hwc(img)[0], path_stem)
        except OSError as err:
            raise click.ClickException(f'cannot write {err.filename or path_stem}: {err.strerror or err}') from err
    click.echo(f'Wrote {len(seeds)} image(s) to {outdir}')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
