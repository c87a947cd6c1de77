"""StyleGAN1 end to end on CPU: a tiny --cfg=stylegan1 run learns (loss statistics move, the fakes grid changes)
and its snapshot renders through gen_images.py the image that the in-memory G_ema gives."""

import contextlib
import io
import json
import os

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import gen_images
import train
from torch_utils import safe_pickle
from training import networks_stylegan1
from training import training_loop as tl
from training.shapes_dataset import render_shape_image
from training.network_families import FAMILIES

TICK_KIMG = 0.016  # 4 iterations of batch 4 per tick.


@pytest.fixture(scope='module')
def sg1_run(tmp_path_factory):
    data = tmp_path_factory.mktemp('shapes16')
    for idx in range(16):
        PIL.Image.fromarray(render_shape_image(idx, 16)[0]).save(data / f'img{idx:08d}.png')
    run_dir = tmp_path_factory.mktemp('sg1')
    info = dict(name='shapes16', resolution=16, size=16, has_labels=False)
    options = train.build_training_options(info, cfg='stylegan1', data=str(data), gpus=1, batch=4, gamma=1,
                                           cbase=256, cmax=16, map_depth=2, mbstd_group=2, aug='noaug', workers=0,
                                           device='cpu', metrics=[])
    options.pop('run_desc')
    options.update(run_dir=str(run_dir), kimg_per_tick=TICK_KIMG, total_kimg=TICK_KIMG * 3 + 0.004,
                   image_grid_size=[2, 2], image_snapshot_ticks=1, network_snapshot_ticks=1,
                   data_loader_kwargs=dict(num_workers=0))
    options['G_kwargs'].update(z_dim=16, w_dim=16)
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
        state = tl.training_loop(**options)
    with open(run_dir / 'stats.jsonl') as f:
        stats = [json.loads(line) for line in f]
    return dict(state=state, run_dir=run_dir, stats=stats)


def test_stylegan1_run_learns_loss_stats_move_and_fakes_change(sg1_run):
    assert isinstance(sg1_run['state'].G, networks_stylegan1.Generator)
    losses = [tick['Loss/G/loss']['mean'] for tick in sg1_run['stats'] if 'Loss/G/loss' in tick]
    assert len(losses) >= 3 and np.ptp(losses) > 1e-3
    assert all(np.isfinite(losses))
    run_dir = sg1_run['run_dir']
    first = np.asarray(PIL.Image.open(run_dir / 'fakes_init.png')).astype(int)
    last = np.asarray(PIL.Image.open(run_dir / 'fakes000000.png')).astype(int)
    assert first.shape == last.shape and np.abs(first - last).mean() > 1


def test_stylegan1_snapshot_renders_with_gen_images(sg1_run, tmp_path):
    snapshot = tl.find_latest_snapshot(str(sg1_run['run_dir']))
    G_ema = safe_pickle.load_network_pkl(snapshot, families=FAMILIES)['G_ema']
    assert type(G_ema) is networks_stylegan1.Generator
    result = CliRunner().invoke(gen_images.main, ['--network', snapshot, '--seeds', '3', '--outdir', str(tmp_path),
                                                  '--device', 'cpu'], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    written = np.asarray(PIL.Image.open(tmp_path / 'seed0003.png')).astype(int)
    z = torch.from_numpy(np.random.RandomState(3).randn(1, G_ema.z_dim)).float()
    with torch.no_grad():
        expected = sg1_run['state'].G_ema.eval()(z, torch.zeros([1, 0]), noise_mode='const')
    expected = (expected[0].permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy().astype(int)
    assert np.abs(written - expected).max() <= 1
