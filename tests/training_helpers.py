"""Helpers shared by the end-to-end training tests: a tiny StyleGAN2 configuration built by train.py's config
builder, a quiet run of the training loop, and readers of what a run directory holds."""

import contextlib
import io
import json
import os
import pickle

import PIL.Image

import train
from training import training_loop as tl
from training.shapes_dataset import render_shape_image

TICK_KIMG = 0.016   # 4 iterations of batch 4 per tick (tick 0 is a single iteration).


def write_shapes_folder(path, count=24, resolution=16):
    """`count` builtin:shapes images as PNGs in folder `path`; returns str(path)."""
    for idx in range(count):
        image, _label = render_shape_image(idx, resolution)
        PIL.Image.fromarray(image).save(path / f'img{idx:08d}.png')
    return str(path)


def tiny_options(data, run_dir, total_ticks, info=None, train_opts=None, **overrides):
    """train.py's options for --cfg=stylegan2 at 16x16 with 32 channels, batch 4, on CPU.

    info: describe_dataset()-style dict (default: 24 unlabelled 16x16 images); train_opts: extra train.py options;
    overrides: training_loop() arguments replaced after the build."""
    info = info or dict(name='shapes16', resolution=16, size=24, has_labels=False)
    train_opts = dict(dict(aug='noaug'), **(train_opts or {}))
    options = train.build_training_options(info, cfg='stylegan2', data=data, gpus=1, batch=4, gamma=1,
                                           cbase=256, cmax=32, map_depth=2, mbstd_group=2, workers=0, fp32=True,
                                           device='cpu', metrics=[], **train_opts)
    options.pop('run_desc')
    options.update(run_dir=str(run_dir), kimg_per_tick=TICK_KIMG, image_grid_size=[2, 2],
                   total_kimg=TICK_KIMG * (total_ticks - 1) + 0.004, data_loader_kwargs=dict(num_workers=0))
    options['G_kwargs'].update(z_dim=32, w_dim=32)
    # The thread count the test session set (conftest), never narrowed: train.py's automatic team narrows on a
    # loaded machine, and CPU float rounding depends on the thread count, which would break bit-exact comparisons.
    options['num_threads'] = None
    options.update(overrides)
    os.makedirs(run_dir, exist_ok=True)
    return options


def run_quietly(**options):
    """Run training_loop(**options); returns (final state, what it printed)."""
    os.makedirs(options['run_dir'], exist_ok=True)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        state = tl.training_loop(**options)
    return state, out.getvalue()


def read_stats(run_dir):
    """The JSON lines of <run_dir>/stats.jsonl."""
    with open(os.path.join(run_dir, 'stats.jsonl')) as f:
        return [json.loads(line) for line in f]


def load_pickle(path):
    with open(path, 'rb') as f:
        return pickle.load(f)


def latest_snapshot(run_dir):
    """The dict of the run's newest network snapshot."""
    return load_pickle(tl.find_latest_snapshot(str(run_dir)))
