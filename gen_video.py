"""Render a looping latent-interpolation video from a network pickle.

Every grid cell walks through a sequence of keyframes, one seed each: a seed's z is mapped to w (with truncation)
and w is interpolated between the keyframes by a periodic cubic spline, so the last frame runs smoothly back into
the first and the video loops. Output is an mp4 at 60 fps (libx264, through imageio's ffmpeg plugin), or numbered
PNG frames when --output names a directory.

Examples:
    # 2x2 grid, 3 keyframes per cell (12 seeds), 120 frames per keyframe: 360 frames (6 s), 2x2 images per frame
    python gen_video.py --network=network-snapshot-000100.pkl --seeds=0-11 --grid=2x2 --output=lerp.mp4
    # one cell, seeds 0-31 as keyframes in a shuffled order, truncation 0.7; PNG frames instead of an mp4
    python gen_video.py --network=stylegan3-r.pkl --seeds=0-31 --shuffle-seed=1 --trunc=0.7 --output=frames/

Seed layout (the official one, so the same seeds give the same keyframes): seed i of the (cycled, optionally
shuffled) list is keyframe k of cell (y, x) where i = (y * W + x) * K + k, i.e. each cell takes K consecutive seeds.
Without --num-keyframes, K = len(seeds) / (W * H) and the number of seeds must be a positive multiple of W * H.
With --num-keyframes=K, the seed list is repeated cyclically to fill the K * W * H slots (extra seeds are unused).
"""

import os
import shutil

import click
import numpy as np
import scipy.interpolate
import torch

import dnnlib
from dnnlib import cli
from torch_utils import threads
from gen_images import class_vector, load_generator, precision_option, run_generator, save_png, to_uint8_hwc

VIDEO_FPS = 60
VIDEO_CRF = 10  # libx264 constant rate factor: 0 lossless .. 51 worst; 10 is visually lossless for GAN output

#----------------------------------------------------------------------------
# Seeds -> keyframe latents -> a periodic spline in W.

def layout_seeds(seeds, grid_w, grid_h, num_keyframes=None, shuffle_seed=None):
    """Seeds of every cell and keyframe: int64 array [grid_h, grid_w, num_keyframes].

    Raises ValueError when the seeds cannot fill the grid (see the module docstring for the rule).
    """
    num_cells = grid_w * grid_h
    if len(seeds) == 0:
        raise ValueError('--seeds is empty: give at least one seed per grid cell')
    if num_keyframes is None:
        if len(seeds) % num_cells != 0:
            lower = max(num_cells, len(seeds) // num_cells * num_cells)
            raise ValueError(f'{len(seeds)} seed(s) do not fill a {grid_w}x{grid_h} grid: without --num-keyframes '
                             f'the number of seeds must be a multiple of {num_cells} (one per cell per keyframe), '
                             f'e.g. {lower} or {lower + num_cells}; or set --num-keyframes to reuse seeds cyclically')
        num_keyframes = len(seeds) // num_cells
    if num_keyframes < 1:
        raise ValueError(f'--num-keyframes={num_keyframes}: need at least 1')
    all_seeds = np.resize(np.asarray(seeds, dtype=np.int64), num_keyframes * num_cells)  # repeats cyclically
    if shuffle_seed is not None:
        np.random.RandomState(shuffle_seed).shuffle(all_seeds)
    return all_seeds.reshape(grid_h, grid_w, num_keyframes)


def keyframe_ws(G, seed_grid, label, truncation_psi=1, device='cpu'):
    """The w of every keyframe: float32 numpy [num_keyframes, grid_h * grid_w, num_ws, w_dim].

    seed_grid: int [grid_h, grid_w, num_keyframes]; label: [1, c_dim] tensor; z of a seed is
    numpy RandomState(seed).randn(z_dim), as gen_images.py draws it.
    """
    grid_h, grid_w, num_keyframes = seed_grid.shape
    zs = np.stack([np.random.RandomState(int(seed)).randn(G.z_dim) for seed in seed_grid.reshape(-1)])
    zs = torch.from_numpy(zs.astype(np.float32)).to(device)  # float32 on the host: MPS has no float64
    with torch.no_grad():
        ws = G.mapping(zs, label.to(device).repeat([len(zs), 1]), truncation_psi=truncation_psi)
    ws = ws.cpu().numpy().reshape(grid_h * grid_w, num_keyframes, *ws.shape[1:])
    return ws.transpose(1, 0, 2, 3)


def periodic_w_spline(ws):
    """Cubic spline through the keyframes ws [K, ...] at times 0..K-1 that closes on itself with period K.

    The periodic boundary condition makes value, slope and curvature at t = K equal those at t = 0, so a video
    over t in [0, K) loops without a seam; evaluating outside [0, K] wraps around.
    """
    ws = np.asarray(ws, dtype=np.float64)
    knots = np.arange(len(ws) + 1)
    return scipy.interpolate.CubicSpline(knots, np.concatenate([ws, ws[:1]]), axis=0, bc_type='periodic')

#----------------------------------------------------------------------------
# Rendering.

def assemble_grid(images, grid_w, grid_h):
    """[grid_h * grid_w, H, W, C] row-major cells -> one [grid_h * H, grid_w * W, C] image."""
    _, height, width, channels = images.shape
    grid = images.reshape(grid_h, grid_w, height, width, channels).transpose(0, 2, 1, 3, 4)
    return grid.reshape(grid_h * height, grid_w * width, channels)


def render_frames(G, w_spline, frame_indices, w_frames, grid_w, grid_h, batch_size=8, noise_mode='const',
                  device='cpu'):
    """Yield one uint8 [grid_h * H, grid_w * W, C] frame per index; frame i shows w at t = i / w_frames keyframes.

    Images are synthesized `batch_size` at a time (frames x cells flattened), so memory stays bounded.
    """
    num_cells = grid_w * grid_h
    frames_per_chunk = max(1, batch_size // num_cells)
    frame_indices = np.asarray(frame_indices)
    for start in range(0, len(frame_indices), frames_per_chunk):
        chunk = frame_indices[start:start + frames_per_chunk]
        ws = w_spline(chunk / w_frames)  # [F, cells, num_ws, w_dim] float64
        ws = torch.from_numpy(ws.reshape(-1, *ws.shape[2:]).astype(np.float32)).to(device)
        with torch.no_grad():
            images = torch.cat([G.synthesis(ws_batch, noise_mode=noise_mode) for ws_batch in ws.split(batch_size)])
        images = to_uint8_hwc(images).reshape(len(chunk), num_cells, *images.shape[2:], images.shape[1])
        for cells in images:
            yield assemble_grid(cells, grid_w, grid_h)

#----------------------------------------------------------------------------
# Writers: an mp4 through imageio-ffmpeg, or numbered PNG frames. Both atomic (temporary name, then rename).

def find_ffmpeg():
    """Path of the ffmpeg binary imageio will use. Raises RuntimeError saying why there is none."""
    try:
        import imageio_ffmpeg
    except ImportError as err:
        raise RuntimeError(f'the imageio-ffmpeg package is not installed ({err})') from err
    return imageio_ffmpeg.get_ffmpeg_exe()  # raises RuntimeError when no binary is found


def wants_frame_dir(output):
    """True when --output names a directory (trailing slash or an existing directory): write PNG frames."""
    return output.endswith(('/', os.sep)) or os.path.isdir(output)


def to_rgb_frame(frame):
    """[H, W, C] uint8 -> [H, W, 3] for H.264: grayscale repeated, RGBA without alpha, other C: the first three
    channels (or the first, repeated)."""
    channels = frame.shape[2]
    if channels == 3:
        return frame
    if channels < 3:
        return np.repeat(frame[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(frame[:, :, :3])


def write_mp4(frames, path, fps=VIDEO_FPS):
    """Encode uint8 HWC frames (an iterable) as an H.264 mp4 at `fps`; the file appears only when complete."""
    import imageio
    with dnnlib.util.atomic_output_path(path, suffix=os.path.splitext(path)[1]) as tmp_path:
        writer = imageio.get_writer(tmp_path, format='FFMPEG', mode='I', fps=fps, codec='libx264', quality=None,
                                    output_params=['-crf', str(VIDEO_CRF)], macro_block_size=2,
                                    ffmpeg_log_level='error')
        try:
            count = 0
            for frame in frames:
                writer.append_data(to_rgb_frame(frame))
                count += 1
        finally:
            writer.close()
    return count


def write_png_frames(frames, out_dir):
    """Write frames as out_dir/frame000000.png, ...; out_dir must not exist or be empty; it appears complete."""
    out_dir = os.path.abspath(out_dir.rstrip('/' + os.sep) or out_dir)
    tmp_dir = dnnlib.util.temp_path_for(out_dir)
    os.makedirs(tmp_dir)
    try:
        count = 0
        for frame in frames:
            save_png(frame if frame.shape[2] in (1, 3, 4) else to_rgb_frame(frame),
                     os.path.join(tmp_dir, f'frame{count:06d}.png'))
            count += 1
        if os.path.isdir(out_dir):
            os.rmdir(out_dir)  # empty (checked before rendering); rename cannot replace a directory everywhere
        os.replace(tmp_dir, out_dir)
    finally:
        if os.path.isdir(tmp_dir):
            shutil.rmtree(tmp_dir)
    return count


def _check_parent_folder(path):
    """The folder that will hold `path` must exist and be a writable folder (fail before rendering); temporary
    outputs for `path` that killed runs left there are removed."""
    target = os.path.abspath(path.rstrip('/' + os.sep) or path)
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        what = 'is a file' if os.path.exists(parent) else 'does not exist'
        raise click.BadParameter(f'{path}: the folder {parent} {what}; create it first or give another path',
                                 param_hint='--output')
    if not os.access(parent, os.W_OK | os.X_OK):
        raise click.BadParameter(f'{path}: the folder {parent} is not writable', param_hint='--output')
    dnnlib.util.remove_stale_temp_files(parent, target=os.path.basename(target))


def check_output(output):
    """Fail before any rendering when `output` cannot be written (names the fix).

    Returns (mode, path, note): mode 'frames' or 'mp4'; path is `output`, or `<output without extension>/` when
    an mp4 was asked for but there is no ffmpeg, in which case `note` says so (None otherwise)."""
    note = None
    if not wants_frame_dir(output):
        if not os.path.splitext(output)[1]:
            raise click.BadParameter(f'{output} has no file extension: give a video file such as out.mp4, or a '
                                     'directory with a trailing slash (out/) for PNG frames', param_hint='--output')
        try:
            find_ffmpeg()
            _check_parent_folder(output)
            return 'mp4', output, None
        except RuntimeError as err:
            frames_dir = os.path.splitext(output)[0] + os.sep
            note = (f'No ffmpeg for imageio ({err}): writing PNG frames to {frames_dir} instead of {output} '
                    '(`pip install imageio-ffmpeg` for mp4 files)')
            output = frames_dir
    out_dir = output.rstrip('/' + os.sep) or output
    _check_parent_folder(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise click.BadParameter(f'{out_dir} is a file; give a new or empty directory for the PNG frames',
                                 param_hint='--output')
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        raise click.BadParameter(f'{output} already exists and is not empty; give a new or empty directory '
                                 'for the PNG frames', param_hint='--output')
    return 'frames', output, note

#----------------------------------------------------------------------------

def parse_grid(text):
    """'4x2' or '4,2' -> (4, 2) = (columns, rows). Raises click.BadParameter."""
    if isinstance(text, (tuple, list)):
        return tuple(int(v) for v in text)
    parts = str(text).lower().replace(',', 'x').split('x')
    if len(parts) == 2 and all(part.strip().isdigit() and int(part) > 0 for part in parts):
        return (int(parts[0]), int(parts[1]))
    raise click.BadParameter(f'{text!r} is not a grid size like 4x2 (columns x rows, both >= 1)')


def generate_video(G, output, seeds, grid=(1, 1), num_keyframes=None, w_frames=120, shuffle_seed=None,
                   truncation_psi=1, label=None, noise_mode='const', batch_size=8, device='cpu', progress=False):
    """Render the looping video of `seeds` with generator G to `output` (.mp4 file or directory/ of PNG frames).

    grid: (columns, rows); w_frames: frames per keyframe; label: [1, c_dim] tensor or None (unconditional).
    Returns the number of frames written (num_keyframes * w_frames). Without ffmpeg an mp4 `output` becomes PNG
    frames in `<output without extension>/` (see check_output). Raises ValueError for seeds that do not fill the
    grid and click errors for an unusable output.
    """
    from tqdm import tqdm
    mode, output, _note = check_output(output)
    grid_w, grid_h = grid
    seed_grid = layout_seeds(seeds, grid_w, grid_h, num_keyframes=num_keyframes, shuffle_seed=shuffle_seed)
    label = torch.zeros([1, G.c_dim]) if label is None else label
    w_spline = periodic_w_spline(keyframe_ws(G, seed_grid, label, truncation_psi=truncation_psi, device=device))
    num_frames = seed_grid.shape[2] * w_frames
    frames = render_frames(G, w_spline, range(num_frames), w_frames, grid_w, grid_h, batch_size=batch_size,
                           noise_mode=noise_mode, device=device)
    frames = tqdm(frames, total=num_frames, desc='Rendering', unit='frame', disable=not progress)
    return write_png_frames(frames, output) if mode == 'frames' else write_mp4(frames, output)

#----------------------------------------------------------------------------

EXAMPLES = '''\b
Examples:
  # A 2x2 grid of videos, 3 keyframes per cell (12 seeds), 120 frames between keyframes:
  python gen_video.py --output=lerp.mp4 --trunc=1 --seeds=0-11 --grid=2x2 --network=stylegan3-t-afhqv2-512x512.pkl
  # One cell through seeds 0-31, as PNG frames (no ffmpeg needed), on CPU:
  python gen_video.py --output=frames/ --seeds=0-31 --w-frames=30 --device=cpu --network=network-snapshot-000010.pkl'''


@click.command(epilog=EXAMPLES)
@click.option('--network', 'network_pkl', help='Network pickle filename or URL', required=True, metavar='PATH|URL')
@click.option('--seeds', type=cli.parse_seeds, help="Keyframe seeds (0..2^32-1), e.g. '0-11'", required=True, metavar='RANGE')
@click.option('--shuffle-seed', type=int, help='Shuffle the seeds with this random seed (default: keep order)',
              metavar='INT')
@click.option('--grid', type=parse_grid, default='1x1', show_default=True, help='Grid of videos, columns x rows',
              metavar='WxH')
@click.option('--num-keyframes', type=click.IntRange(min=1),
              help='Keyframes per cell (default: number of seeds / cells; seeds repeat to fill)', metavar='INT')
@click.option('--w-frames', type=click.IntRange(min=1), default=120, show_default=True, help='Frames per keyframe',
              metavar='INT')
@click.option('--trunc', 'truncation_psi', type=cli.parse_finite_float, default=1, show_default=True, help='Truncation psi',
              metavar='PSI')
@click.option('--class', 'class_idx', type=int, help='Class label (required for conditional networks)', metavar='INT')
@click.option('--noise-mode', type=click.Choice(['const', 'random', 'none']), default='const', show_default=True)
@click.option('--batch', 'batch_size', type=click.IntRange(min=1), default=8, show_default=True,
              help='Images synthesized per forward pass', metavar='INT')
@click.option('--output', required=True, help='Video file (e.g. lerp.mp4), or a directory ending in / for PNG frames',
              metavar='FILE|DIR/')
@click.option('--device', default='auto', show_default=True, help='auto, cpu, cuda, cuda:1, mps', metavar='DEVICE')
@click.option('--threads', 'num_threads', type=click.IntRange(min=0), default=0, show_default=True,
              help='CPU threads; 0 = OMP_NUM_THREADS or the physical cores available', metavar='INT')
@precision_option
@click.option('--allow-exec', is_flag=True, help='Execute the source code embedded in an unknown pickle (unsafe)')
def main(network_pkl, seeds, shuffle_seed, grid, num_keyframes, w_frames, truncation_psi, class_idx, noise_mode,
         batch_size, output, device, num_threads, precision, allow_exec):
    """Render a looping latent-interpolation video (60 fps) from a network pickle.

    Each grid cell interpolates in W through its keyframe seeds with a periodic cubic spline; the video has
    num_keyframes * w_frames frames of (columns * resolution) x (rows * resolution) pixels.

    Seed i (after shuffling) is keyframe k of cell (x, y) where i = (y * W + x) * K + k. Without --num-keyframes,
    K = len(seeds) / (W * H) and the number of seeds must be a multiple of W * H; with --num-keyframes=K the
    seeds repeat cyclically to fill the K * W * H keyframes.
    """
    _mode, output, note = check_output(output)  # fail fast, before loading the network
    if note is not None:
        click.echo(note, err=True)
    try:
        seed_grid = layout_seeds(seeds, *grid, num_keyframes=num_keyframes, shuffle_seed=shuffle_seed)
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    if len(seeds) > seed_grid.size:
        click.echo(f'warning: only the first {seed_grid.size} of {len(seeds)} seeds are used '
                   f'({seed_grid.shape[2]} keyframes x {grid[0]}x{grid[1]} cells)', err=True)
    device = cli.choose_device(device)
    cli.tune_cpu_allocator(device)
    threads.set_threads(num_threads)
    click.echo(f'Loading networks from "{network_pkl}" on {device}...')
    G = load_generator(network_pkl, device, allow_exec=allow_exec, precision=precision)
    label = class_vector(G, class_idx, device)
    try:
        count = run_generator(G, network_pkl, lambda: generate_video(
            G, output, seeds, grid=grid, num_keyframes=num_keyframes, w_frames=w_frames, shuffle_seed=shuffle_seed,
            truncation_psi=truncation_psi, label=label, noise_mode=noise_mode, batch_size=batch_size,
            device=device, progress=True))
    except OSError as err:
        raise click.ClickException(f'cannot write {err.filename or output}: {err.strerror or err}') from err
    click.echo(f'Wrote {count} frames to {output}')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
