"""N-channel images (grayscale, RGBA, multispectral .npy) and non-square images, from dataset_tool through tiny
training runs to gen_images."""

import os

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

import dataset_tool
import gen_images
from training import training_loop as tl
from training.dataset import ImageFolderDataset
from training.shapes_dataset import render_shape_image
from training_helpers import run_quietly, tiny_options


def _rgba_shape(idx, resolution):
    """A builtin shape over a transparent background: alpha 255 where the shape is, 0 elsewhere."""
    rgb, _label = render_shape_image(idx, resolution)
    alpha = np.where(rgb.max(axis=2) > rgb.min(), 255, 0).astype(np.uint8)
    return np.concatenate([rgb, alpha[:, :, None]], axis=2)


def _write_sources(folder, count, make_image, ext):
    folder.mkdir()
    for idx in range(count):
        array = make_image(idx)
        if ext == '.npy':
            np.save(folder / f'img{idx:04d}.npy', array)
        else:
            PIL.Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(folder / f'img{idx:04d}{ext}')
    return str(folder)


def _dataset_tool(*args):
    result = CliRunner().invoke(dataset_tool.main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _train_and_render(data, tmp_path, cfg='stylegan2', seeds='0-1'):
    """2 ticks of a tiny run on `data`; returns (snapshot dict, paths gen_images wrote)."""
    dataset = ImageFolderDataset(data)
    info = dict(name='data', resolution=dataset.resolution, size=len(dataset), has_labels=False)
    run_dir = tmp_path / 'run'
    options = tiny_options(data, run_dir, total_ticks=2, info=info, network_snapshot_ticks=1,
                           image_snapshot_ticks=1, train_opts=dict(cfg=cfg) if cfg != 'stylegan2' else None)
    run_quietly(**options)
    snapshot_pkl = tl.find_latest_snapshot(str(run_dir))
    outdir = tmp_path / 'images'
    result = CliRunner().invoke(gen_images.main, [f'--network={snapshot_pkl}', f'--seeds={seeds}',
                                                  f'--outdir={outdir}', '--device=cpu'])
    assert result.exit_code == 0, result.output
    return tl.load_snapshot(snapshot_pkl), sorted(str(outdir / name) for name in os.listdir(outdir)), run_dir

#----------------------------------------------------------------------------
# Item 8: channels.

def test_rgba_keep_dataset_trains_and_renders_rgba_pngs(tmp_path):
    source = _write_sources(tmp_path / 'rgba', 12, lambda idx: _rgba_shape(idx, 16), '.png')
    with pytest.raises(AssertionError, match='--rgba=keep'):
        _dataset_tool(f'--source={source}', f'--dest={tmp_path / "refused.zip"}')
    output = _dataset_tool(f'--source={source}', f'--dest={tmp_path / "rgba.zip"}', '--rgba=keep')
    assert '16x16 RGBA' in output
    dataset = ImageFolderDataset(str(tmp_path / 'rgba.zip'))
    assert dataset.image_shape == [4, 16, 16]
    image, _label = dataset[3]
    assert np.array_equal(image.transpose(1, 2, 0), _rgba_shape(3, 16))  # Alpha kept bit for bit.
    snapshot, images, run_dir = _train_and_render(str(tmp_path / 'rgba.zip'), tmp_path)
    assert snapshot['G_ema'].img_channels == 4 and snapshot['D'].img_channels == 4
    assert [os.path.basename(p) for p in images] == ['seed0000.png', 'seed0001.png']
    with PIL.Image.open(images[0]) as rendered:
        assert rendered.mode == 'RGBA' and rendered.size == (16, 16)
    with PIL.Image.open(run_dir / 'fakes000000.png') as grid:
        assert grid.mode == 'RGBA'


def test_grayscale_dataset_trains_and_renders_grayscale_pngs(tmp_path):
    gray = lambda idx: render_shape_image(idx, 16)[0].mean(axis=2, keepdims=True).astype(np.uint8)  # noqa: E731
    source = _write_sources(tmp_path / 'gray', 12, gray, '.png')
    assert '16x16 grayscale' in _dataset_tool(f'--source={source}', f'--dest={tmp_path / "gray.zip"}')
    snapshot, images, _run_dir = _train_and_render(str(tmp_path / 'gray.zip'), tmp_path)
    assert snapshot['G_ema'].img_channels == 1
    with PIL.Image.open(images[0]) as rendered:
        assert rendered.mode == 'L' and rendered.size == (16, 16)


def test_five_channel_npy_dataset_trains_and_renders_npy(tmp_path):
    rng = np.random.RandomState(0)
    bands = lambda idx: np.concatenate([render_shape_image(idx, 16)[0],  # noqa: E731
                                        rng.randint(0, 256, size=[16, 16, 2]).astype(np.uint8)], axis=2)
    source = _write_sources(tmp_path / 'bands', 12, bands, '.npy')
    output = _dataset_tool(f'--source={source}', f'--dest={tmp_path / "bands.zip"}', '--resolution=8x8')
    assert '8x8 5-channel' in output
    dataset = ImageFolderDataset(str(tmp_path / 'bands.zip'))
    assert dataset.image_shape == [5, 8, 8] and dataset._image_fnames[0] == '00000/img00000000.npy'
    snapshot, images, _run_dir = _train_and_render(str(tmp_path / 'bands.zip'), tmp_path, seeds='0')
    assert snapshot['G_ema'].img_channels == 5
    assert [os.path.basename(p) for p in images] == ['seed0000.npy']
    rendered = np.load(images[0], allow_pickle=False)
    assert rendered.shape == (8, 8, 5) and rendered.dtype == np.uint8


def test_npy_source_with_object_dtype_is_refused(tmp_path):
    folder = tmp_path / 'bad'
    folder.mkdir()
    np.save(folder / 'img.npy', np.array([{'a': 1}], dtype=object), allow_pickle=True)
    result = CliRunner().invoke(dataset_tool.main, [f'--source={folder}', f'--dest={tmp_path / "x.zip"}'])
    assert result.exit_code == 1 and 'img.npy cannot be read as .npy' in result.output
    assert not os.path.exists(tmp_path / 'x.zip')
