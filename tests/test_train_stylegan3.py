"""StyleGAN3 training end to end on CPU: tiny --cfg=stylegan3-t and --cfg=stylegan3-r runs (train.py's options,
training_loop) write snapshots that reload through the safe loader into our StyleGAN3 classes and render the same
images as the in-memory G_ema, also through gen_images.py with --translate/--rotate; the -R run blurs D's inputs
and both runs update the magnitude EMAs."""

import contextlib
import copy
import io
import os

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import gen_images
import train
from torch_utils import safe_pickle
from training import loss as loss_module
from training import networks_stylegan3
from training import training_loop as tl
from training.shapes_dataset import render_shape_image
from training.network_families import FAMILIES

TICK_KIMG = 0.008   # 2 iterations of batch 4 per tick (tick 0 is a single iteration).
TOTAL_TICKS = 2     # Iterations 0 | 1-2: three in all, a snapshot after each tick.
RESOLUTION = 16

#----------------------------------------------------------------------------
# Fixtures: a 16x16 dataset and one tiny run per config.

@pytest.fixture(scope='module')
def shapes_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp('shapes16')
    for idx in range(16):
        image, _label = render_shape_image(idx, RESOLUTION)
        PIL.Image.fromarray(image).save(path / f'img{idx:08d}.png')
    return str(path)


def tiny_sg3_options(cfg, data, run_dir):
    """train.py's options for `cfg` at 16x16, cbase 256 / cmax 16 (-R doubles G's), z = w = 16, batch 4, CPU."""
    info = dict(name='shapes16', resolution=RESOLUTION, size=16, has_labels=False)
    options = train.build_training_options(info, cfg=cfg, data=data, gpus=1, batch=4, gamma=1, cbase=256, cmax=16,
                                           mbstd_group=2, aug='noaug', workers=0, fp32=True, device='cpu',
                                           metrics=[])
    options.pop('run_desc')
    options.update(run_dir=str(run_dir), kimg_per_tick=TICK_KIMG, image_grid_size=[2, 2],
                   total_kimg=TICK_KIMG * (TOTAL_TICKS - 1) + 0.002, image_snapshot_ticks=1,
                   network_snapshot_ticks=1, data_loader_kwargs=dict(num_workers=0))
    options['G_kwargs'].update(z_dim=16, w_dim=16)
    return options


def _run(cfg, data, run_dir, monkeypatch):
    """Train; returns (final state, options, blur sigmas D saw, snapshot paths)."""
    options = tiny_sg3_options(cfg, data, run_dir)
    os.makedirs(run_dir, exist_ok=True)
    sigmas = []
    original_blur = loss_module.blur_images

    def recording_blur(img, sigma):
        sigmas.append(float(sigma))
        return original_blur(img, sigma)

    monkeypatch.setattr(loss_module, 'blur_images', recording_blur)
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
        state = tl.training_loop(**options)
    snapshots = sorted(os.path.join(run_dir, name) for name in os.listdir(run_dir)
                       if name.startswith('network-snapshot-') and name.endswith('.pkl'))
    return dict(state=state, options=options, sigmas=sigmas, snapshots=snapshots, run_dir=str(run_dir))


@pytest.fixture(scope='module', params=['stylegan3-t', 'stylegan3-r'])
def sg3_run(request, shapes_dir, tmp_path_factory):
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield dict(_run(request.param, shapes_dir, tmp_path_factory.mktemp(request.param), monkeypatch),
                   cfg=request.param)


def _latents(G, seed=0, batch_size=2):
    z = torch.from_numpy(np.random.RandomState(seed).randn(batch_size, G.z_dim)).float()
    return z, torch.zeros([batch_size, G.c_dim])

#----------------------------------------------------------------------------

def test_run_uses_the_stylegan3_preset(sg3_run):
    G_kwargs, loss_kwargs = sg3_run['options']['G_kwargs'], sg3_run['options']['loss_kwargs']
    assert G_kwargs['class_name'] == 'training.networks_stylegan3.Generator'
    assert G_kwargs['magnitude_ema_beta'] == pytest.approx(0.5 ** (4 / 20000))
    assert 'pl_weight' not in loss_kwargs and 'style_mixing_prob' not in loss_kwargs
    assert sg3_run['options']['G_reg_interval'] is None  # No path-length regularisation: G has no Greg phase.
    G = sg3_run['state'].G
    assert isinstance(G, networks_stylegan3.Generator)
    if sg3_run['cfg'] == 'stylegan3-r':
        assert G_kwargs['channel_base'] == 512 and G_kwargs['channel_max'] == 32
        assert G.synthesis.layer_names[0].endswith('_32') and G.init_kwargs['conv_kernel'] == 1
        assert loss_kwargs['blur_init_sigma'] == 10 and loss_kwargs['blur_fade_kimg'] == pytest.approx(4 * 200 / 32)
    else:
        assert G_kwargs['channel_base'] == 256 and G.synthesis.layer_names[0].endswith('_16')
        assert 'blur_init_sigma' not in loss_kwargs


def test_snapshot_written_at_the_last_tick_without_temporaries(sg3_run):
    # kimg in the file name rounds down to 0 for this tiny run: every tick rewrites network-snapshot-000000.pkl,
    # and the last one holds the state after the last iteration.
    names = os.listdir(sg3_run['run_dir'])
    assert [os.path.basename(path) for path in sg3_run['snapshots']] == ['network-snapshot-000000.pkl']
    assert {'fakes_init.png', 'fakes000000.png', 'reals.png'} <= set(names)
    assert not any('.tmp' in name for name in names)
    resume_state = safe_pickle.load_network_pkl(sg3_run['snapshots'][-1], families=FAMILIES)[tl.RESUME_STATE_KEY]
    assert resume_state['cur_tick'] == TOTAL_TICKS and resume_state['cur_nimg'] == 12
    assert set(resume_state['optimizers']) == {'G', 'D'}


def test_snapshot_reloads_into_our_classes_and_renders_like_the_in_memory_G_ema(sg3_run):
    data = safe_pickle.load_network_pkl(sg3_run['snapshots'][-1], families=FAMILIES)
    G_ema = data['G_ema']
    assert type(G_ema) is networks_stylegan3.Generator  # Our class, not a pickled stand-in.
    assert type(G_ema.synthesis) is networks_stylegan3.SynthesisNetwork
    in_memory = sg3_run['state'].G_ema
    loaded = dict(G_ema.named_parameters()) | dict(G_ema.named_buffers())
    expected_tensors = dict(in_memory.named_parameters()) | dict(in_memory.named_buffers())
    assert list(loaded) == list(expected_tensors)
    for name, tensor in expected_tensors.items():
        assert torch.equal(tensor, loaded[name]), name
    z, c = _latents(G_ema)
    with torch.no_grad():
        img = G_ema(z, c)
        expected = in_memory(z, c)
    assert img.shape == (2, 3, RESOLUTION, RESOLUTION) and torch.isfinite(img).all() and img.std() > 1e-3
    assert (img - expected).abs().max() <= 1e-6


def test_training_moved_the_magnitude_emas(sg3_run):
    for name in ('G', 'G_ema'):
        module = getattr(sg3_run['state'], name)
        emas = [getattr(module.synthesis, layer).magnitude_ema.item() for layer in module.synthesis.layer_names]
        assert all(np.isfinite(emas)), (name, emas)
        assert all(ema != 1 for ema in emas), (name, emas)  # Initialised at 1; updated in every D fake pass.
    assert sg3_run['state'].G.mapping.w_avg.abs().sum() > 0


def test_only_the_r_config_blurs_D_inputs_fading_with_the_image_count(sg3_run):
    sigmas = sg3_run['sigmas']
    assert sigmas  # D's inputs go through blur_images in every phase.
    if sg3_run['cfg'] == 'stylegan3-r':
        fade_nimg = 4 * 200 / 32 * 1e3
        assert max(sigmas) == 10  # Iteration 0: cur_nimg 0, full sigma.
        assert min(sigmas) == pytest.approx(10 * (1 - 8 / fade_nimg))  # Iteration 2: cur_nimg 8.
        assert sorted(set(sigmas), reverse=True) == [pytest.approx(10 * (1 - n / fade_nimg)) for n in (0, 4, 8)]
    else:
        assert set(sigmas) == {0}


def test_gen_images_renders_the_snapshot_also_translated_and_rotated(sg3_run, tmp_path):
    images = {}
    for name, extra in [('plain', []), ('moved', ['--translate=0.25,-0.125', '--rotate=30'])]:
        outdir = tmp_path / name
        result = CliRunner().invoke(gen_images.main, ['--network', sg3_run['snapshots'][-1], '--seeds', '3',
                                                      '--outdir', str(outdir), '--device=cpu', *extra],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        images[name] = np.asarray(PIL.Image.open(outdir / 'seed0003.png'), dtype=np.int32)
        assert images[name].shape == (RESOLUTION, RESOLUTION, 3)
    # The CLI's images are the in-memory G_ema's output for seed 3 (as gen_images quantises it), before and after
    # pointing its input transform at the inverse of translate-then-rotate.
    G_ema = copy.deepcopy(sg3_run['state'].G_ema)
    z = torch.from_numpy(np.random.RandomState(3).randn(1, G_ema.z_dim)).float()
    with torch.no_grad():
        expected_plain = gen_images.to_uint8_hwc(G_ema(z, torch.zeros([1, 0]), noise_mode='const'))[0]
        gen_images.set_output_transform(G_ema, (0.25, -0.125), 30)
        expected_moved = gen_images.to_uint8_hwc(G_ema(z, torch.zeros([1, 0]), noise_mode='const'))[0]
    # Equal up to one level where float rounding sits at a .5 boundary.
    assert np.abs(images['plain'] - expected_plain).max() <= 1
    assert np.abs(images['moved'] - expected_moved).max() <= 1
    assert np.abs(images['moved'] - images['plain']).mean() > 1
