"""Project an image into the W space of a StyleGAN2 or StyleGAN3 generator (StyleGAN2 paper, Sec. 5 and App. D).

Examples:
    python projector.py --network=ffhq.pkl --target=face.png --outdir=out                    # VGG16 distance
    python projector.py --network=net.pkl --target=img.png --distance=pixel --num-steps=300 --save-video=0 --outdir=out

Writes OUTDIR/target.png (the target, centre-cropped and resized to the network's resolution), OUTDIR/proj.png
(the projection), OUTDIR/projected_w.npz (`w`: [1, num_ws, w_dim]; also the optimised noise inputs and the
distance used) and, with --save-video (default on), OUTDIR/proj.mp4 (target | projection at every step, 10 fps;
PNG frames in OUTDIR/proj_frames/ when ffmpeg is missing). Render the result again with
`python gen_images.py --network=... --projected-w=OUTDIR/projected_w.npz --outdir=...`.

The distance of the paper is the LPIPS-style VGG16 feature distance, from the official `vgg16.pkl` (the file the
metrics use), looked for in --detector-dir and the dnnlib cache; it is never downloaded here. Without it, pass
--distance=pixel (mean squared error), which the outputs record. The optimisation and its published
hyperparameters are in training/projection.py.
"""

import os

import click
import numpy as np
import PIL.Image
import torch

import gen_video
from dnnlib import cli
from gen_images import class_vector, load_generator, save_png, to_uint8_hwc
from training import projection

VIDEO_FPS = 10  # The official projector's progress video: one frame per step at 10 fps.

#----------------------------------------------------------------------------

def load_target(path, resolution, channels):
    """The target image as uint8 [resolution, resolution, channels]: centre-cropped to a square, resized (Lanczos).

    Raises click.BadParameter naming the file when it cannot be read as an image."""
    try:
        with PIL.Image.open(path) as image:
            image = image.convert('L' if channels == 1 else 'RGB')
    except (OSError, ValueError, PIL.Image.DecompressionBombError) as err:
        raise click.BadParameter(f'cannot read {path} as an image: {err}', param_hint='--target') from err
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((resolution, resolution), PIL.Image.LANCZOS)
    array = np.array(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def make_distance(kind, target, detector_dir, device):
    """projection.PerceptualDistance (kind 'vgg', official vgg16.pkl found locally) or PixelDistance ('pixel')
    to target [1, C, H, W] ~[-1, 1]. A missing VGG16 file is a ClickException saying where to put it."""
    if kind == 'pixel':
        return projection.PixelDistance(target)
    from metrics import metric_utils
    try:
        path = metric_utils.find_detector_file(metric_utils.VGG16_URL, detector_dir=detector_dir, download=False)
        vgg16 = metric_utils.load_detector_file(path).to(device)
    except (metric_utils.DetectorUnavailableError, IOError, ValueError) as err:
        places = metric_utils.detector_search_paths(metric_utils.VGG16_URL, detector_dir)
        raise click.ClickException(
            f'--distance=vgg needs the official VGG16 feature file vgg16.pkl ({err.__class__.__name__}: '
            f'{str(err).splitlines()[0]}). Download it from {metric_utils.VGG16_URL} and put it at one of: '
            f'{", ".join(places[1:])} (or pass --detector-dir=DIR); or project with the plain pixel distance: '
            f'--distance=pixel') from err
    return projection.PerceptualDistance(vgg16, target)


def save_projected_w(path, w, noise, distance_name):
    """Write projected_w.npz atomically: `w` [1, num_ws, w_dim] float32 (the official key), the optimised noise
    inputs as `noise.<buffer name>`, and `distance` ('vgg' or 'pixel')."""
    arrays = {'w': w.cpu().numpy().astype(np.float32), 'distance': np.array(distance_name)}
    arrays.update({f'noise.{name}': buf.numpy() for name, buf in noise.items()})
    tmp_path = f'{path}.tmp{os.getpid()}'
    try:
        with open(tmp_path, 'wb') as f:
            np.savez(f, **arrays)
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


def progress_frames(G, ws, target_uint8, device):
    """Yield uint8 [H, 2 W, C] frames: target | projection at each step's w (ws [num_steps, num_ws, w_dim])."""
    for w in ws:
        with torch.no_grad():
            image = to_uint8_hwc(G.synthesis(w[None].to(device), noise_mode='const'))[0]
        yield np.concatenate([target_uint8, image], axis=1)


def write_video(G, ws, target_uint8, outdir, device):
    """proj.mp4 of the optimisation (or PNG frames in proj_frames/ when ffmpeg is missing); returns the path."""
    from tqdm import tqdm
    frames = tqdm(progress_frames(G, ws, target_uint8, device), total=len(ws), desc='Video', unit='frame')
    try:
        gen_video.find_ffmpeg()
    except RuntimeError as err:
        click.echo(f'warning: no ffmpeg ({err}); writing PNG frames instead of proj.mp4', err=True)
        frame_dir = os.path.join(outdir, 'proj_frames')
        gen_video.write_png_frames(frames, frame_dir)
        return frame_dir
    path = os.path.join(outdir, 'proj.mp4')
    gen_video.write_mp4(frames, path, fps=VIDEO_FPS)
    return path

#----------------------------------------------------------------------------

EXAMPLES = '''\b
Examples:
  # Find the w of a photo (VGG16 distance; vgg16.pkl in --detector-dir or downloaded):
  python projector.py --network=network-snapshot-000100.pkl --target=face.png --outdir=out --num-steps=1000
  # Offline, pixel distance, one w per layer, no video:
  python projector.py --network=network-snapshot-000100.pkl --target=face.png --outdir=out --distance=pixel \\
      --w-plus=1 --save-video=0'''


@click.command(epilog=EXAMPLES)
@click.option('--network', 'network_pkl', help='Network pickle or .safetensors filename or URL', required=True,
              metavar='PATH|URL')
@click.option('--target', 'target_fname', help='Target image file to project to', required=True, metavar='FILE')
@click.option('--num-steps', type=click.IntRange(min=1), default=1000, show_default=True,
              help='Number of optimization steps', metavar='N')
@click.option('--seed', type=int, default=303, show_default=True, help='Random seed', metavar='INT')
@click.option('--save-video', type=bool, default=True, is_flag=False, flag_value=True, show_default=True,
              metavar='BOOL', help='Save an mp4 video of optimization progress')
@click.option('--w-plus', type=bool, default=False, is_flag=False, flag_value=True, show_default=True,
              metavar='BOOL', help='Optimize one w per layer (W+) instead of a single w')
@click.option('--distance', type=click.Choice(['vgg', 'pixel']), default='vgg', show_default=True,
              help='vgg: VGG16 feature distance (needs vgg16.pkl); pixel: mean squared error')
@click.option('--detector-dir', type=click.Path(file_okay=False), help='Folder holding vgg16.pkl', metavar='DIR')
@click.option('--class', 'class_idx', type=int, help='Class label (required for conditional networks)', metavar='INT')
@click.option('--outdir', type=click.Path(file_okay=False), required=True, help='Where to save the output files',
              metavar='DIR')
@click.option('--device', default='auto', show_default=True, help='auto, cpu, cuda, cuda:1, mps', metavar='DEVICE')
@click.option('--allow-exec', is_flag=True, help='Execute the source code embedded in an unknown pickle (unsafe)')
def main(network_pkl, target_fname, num_steps, seed, save_video, w_plus, distance, detector_dir, class_idx, outdir,
         device, allow_exec):
    """Project a target image into the W space of a network (StyleGAN2 or StyleGAN3)."""
    from tqdm import tqdm
    device = cli.choose_device(device)
    cli.tune_cpu_allocator(device)
    click.echo(f'Loading networks from "{network_pkl}" on {device}...')
    G = load_generator(network_pkl, device, allow_exec=allow_exec)
    label = class_vector(G, class_idx, device)
    target_uint8 = load_target(target_fname, G.img_resolution, G.img_channels)
    target = torch.from_numpy(target_uint8).permute(2, 0, 1)[None].to(device, torch.float32) / 127.5 - 1
    distance_fn = make_distance(distance, target, detector_dir, device)
    click.echo(f'Distance: {distance} ({"VGG16 features" if distance == "vgg" else "mean squared pixel error"})')

    with tqdm(total=num_steps, desc='Projecting', unit='step') as bar:
        def report(step, values):
            bar.set_postfix(dist=f'{values["dist"]:.4g}', loss=f'{values["loss"]:.4g}', refresh=False)
            bar.update(1)
        result = projection.project(G, distance_fn, num_steps=num_steps, w_plus=w_plus, seed=seed, label=label,
                                    device=device, progress=report)

    os.makedirs(outdir, exist_ok=True)
    with torch.no_grad():
        proj_uint8 = to_uint8_hwc(result.G.synthesis(result.ws[-1:].to(device), noise_mode='const'))[0]
    save_png(target_uint8, os.path.join(outdir, 'target.png'))
    save_png(proj_uint8, os.path.join(outdir, 'proj.png'))
    save_projected_w(os.path.join(outdir, 'projected_w.npz'), result.ws[-1:], result.noise, distance)
    written = ['target.png', 'proj.png', 'projected_w.npz']
    if save_video:
        written.append(os.path.basename(write_video(result.G, result.ws, target_uint8, outdir, device)))
    psnr = projection.psnr_db(proj_uint8, target_uint8)
    click.echo(f'Final {distance} distance {result.distances[-1]:.4g}, PSNR {psnr:.2f} dB; wrote {", ".join(written)} '
               f'to {outdir}')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
