"""N-channel images (grayscale, RGBA, multispectral .npy) and non-square images, from dataset_tool through tiny
training runs to gen_images."""

import os

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

import dataset_tool
import gen_images
import train
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
    """2 ticks of a tiny run on `data` (train.py's options, as describe_dataset() sees the data); returns
    (snapshot dict, paths gen_images wrote, run dir)."""
    info = train.describe_dataset(data)
    run_dir = tmp_path / f'run-{cfg}'
    options = tiny_options(data, run_dir, total_ticks=2, info=info, network_snapshot_ticks=1,
                           image_snapshot_ticks=1)
    if cfg != 'stylegan2':
        sg3 = train.build_training_options(info, cfg=cfg, data=data, gpus=1, batch=4, gamma=1, cbase=256, cmax=16,
                                           mbstd_group=2, aug='noaug', workers=0, fp32=True, device='cpu')
        sg3['G_kwargs'].update(z_dim=16, w_dim=16)
        options.update({key: sg3[key] for key in ('G_kwargs', 'D_kwargs', 'G_opt_kwargs', 'loss_kwargs',
                                                  'G_reg_interval', 'ema_kimg')})
    run_quietly(**options)
    snapshot_pkl = tl.find_latest_snapshot(str(run_dir))
    outdir = tmp_path / f'images-{cfg}'
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

#----------------------------------------------------------------------------
# Item 7: non-square images.

@pytest.fixture(scope='module')
def wide_zip(tmp_path_factory):
    path = tmp_path_factory.mktemp('wide') / 'wide-64x32.zip'
    output = _dataset_tool('--source=builtin:shapes', f'--dest={path}', '--max-images=12', '--resolution=64x32')
    assert '64x32 RGB' in output
    return str(path)


def test_dataset_of_64x32_images_has_resolution_32_and_aspect_2_1(wide_zip):
    dataset = ImageFolderDataset(wide_zip)
    assert dataset.image_shape == [3, 32, 64] and dataset.resolution == 32 and dataset.aspect == [2, 1]
    info = train.describe_dataset(wide_zip)
    options = train.build_training_options(info, cfg='stylegan2', data=wide_zip, gpus=1, batch=4, gamma=1)
    assert options['G_kwargs']['img_aspect'] == [2, 1] and options['D_kwargs']['img_aspect'] == [2, 1]
    with pytest.raises(train.UsageError, match='--cfg=stylegan1 trains square images only'):
        train.build_training_options(info, cfg='stylegan1', data=wide_zip, gpus=1, batch=4, gamma=1)


@pytest.mark.parametrize('cfg', ['stylegan2', 'stylegan3-t'])
def test_64x32_dataset_trains_and_its_snapshot_renders_64x32_images(wide_zip, tmp_path, cfg):
    snapshot, images, run_dir = _train_and_render(wide_zip, tmp_path, cfg=cfg, seeds='0')
    G = snapshot['G_ema']
    assert G.img_resolution == 32 and tuple(G.img_aspect) == (2, 1)
    assert snapshot['D'].b4.fc.weight.shape[1] == snapshot['D'].b4.in_channels * 4 * 8  # 4x8 epilogue map.
    with PIL.Image.open(images[0]) as rendered:
        assert rendered.size == (64, 32)
        assert np.asarray(rendered).std() > 0
    with PIL.Image.open(run_dir / 'fakes000000.png') as grid:
        assert grid.size == (2 * 64, 2 * 32)


def test_portrait_networks_put_the_long_side_vertically():
    from training import networks_stylegan2, networks_stylegan3
    import torch
    kwargs = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3, channel_base=128, channel_max=8,
                  img_aspect=[1, 4])
    for G in (networks_stylegan2.Generator(**kwargs), networks_stylegan3.Generator(**kwargs, num_layers=4)):
        assert G(torch.randn([2, 8]), None).shape == (2, 3, 32, 8)
    D = networks_stylegan2.Discriminator(c_dim=0, img_resolution=8, img_channels=3, channel_base=128,
                                         channel_max=8, img_aspect=[1, 4])
    assert D(torch.randn([2, 3, 32, 8]), None).shape == (2, 1)
    assert 'img_aspect' not in networks_stylegan2.Generator(**dict(kwargs, img_aspect=None)).synthesis.__dict__
