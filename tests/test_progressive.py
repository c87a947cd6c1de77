"""StyleGAN1 progressive growing (--cfg=stylegan1 --progressive=1): the lod schedule, the fade-in of G and D, reals
at a lod, a tiny run that learns and renders through the tools, and an exact resume from a mid-fade snapshot."""

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import gen_images
import gen_video
import style_mixing
import train
from torch_utils import misc
from torch_utils import safe_pickle
from training import networks_stylegan1 as nets1
from training import progressive
from training import train_options
from training.network_families import FAMILIES

import training_helpers as th

#----------------------------------------------------------------------------
# Schedule.

@pytest.mark.parametrize('kimg,expected_lod', [(0, 2), (599.999, 2), (600, 2), (900, 1.5), (1199, 2 - 599 / 600),
                                               (1200, 1), (1800, 1), (2100, 0.5), (2400, 0), (10000, 0)])
def test_lod_follows_the_paper_schedule_600_kimg_train_600_kimg_fade(kimg, expected_lod):
    lod = progressive.lod_at(round(kimg * 1000), img_resolution=32, start_resolution=8)
    assert lod == pytest.approx(expected_lod, abs=1e-9)


def test_alpha_goes_from_0_to_1_over_each_fade_and_resolution_steps_up():
    lods = [progressive.lod_at(kimg * 1000, 32, 8, 10, 10) for kimg in [0, 10, 12.5, 15, 19.999, 20, 32.5, 40]]
    assert [progressive.alpha_at(lod) for lod in lods] == pytest.approx([1, 1, 0.25, 0.5, 0.9999, 1, 0.25, 1],
                                                                        abs=1e-3)
    assert [progressive.resolution_at(lod, 32) for lod in lods] == [8, 8, 16, 16, 16, 16, 32, 32]  # The one fading in.


def test_minibatch_per_resolution_follows_the_resolution_being_trained_or_faded_in():
    schedule = progressive.ProgressiveSchedule(32, 8, 10, 10, batch_per_resolution={'8': 256, '16': 128})
    sizes = [schedule.batch_size(kimg * 1000, default=32) for kimg in [0, 10, 10.1, 25, 35, 45]]
    assert sizes == [256, 256, 128, 128, 32, 32]
    assert train_options.parse_lod_batch('8:256,16:128', 8) == {8: 256, 16: 128}
    with pytest.raises(train.UsageError, match='--lod-batch'):
        train_options.parse_lod_batch('8:100', 8)


def test_reals_at_lod_are_pooled_and_upsampled_and_blended():
    img = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    pooled = img.reshape(2, 3, 4, 2, 4, 2).mean(dim=[3, 5])
    coarse = pooled.repeat_interleave(2, 2).repeat_interleave(2, 3)
    assert torch.equal(progressive.reals_at_lod(img, 0), img)
    assert torch.allclose(progressive.reals_at_lod(img, 1), coarse)
    assert torch.allclose(progressive.reals_at_lod(img, 0.25), 0.75 * img + 0.25 * coarse)

#----------------------------------------------------------------------------
# Networks.

def _tiny_G(resolution, progressive_growing=True):
    torch.manual_seed(0)
    return nets1.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=resolution, img_channels=3, channel_base=128,
                           channel_max=8, mapping_kwargs=dict(num_layers=1), progressive=progressive_growing).eval()


def _randomize(module):
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn_like(param) * 0.5 + param)
    return module


def test_G_at_alpha_0_equals_the_upsampled_lower_resolution_network():
    G16 = _randomize(_tiny_G(16))
    G8 = _tiny_G(8, progressive_growing=False)
    misc.copy_params_and_buffers(G16, G8, require_all=False)  # b4, b8 (with b8.torgb), mapping.
    ws = torch.randn([3, 1, 8]).repeat(1, G16.num_ws, 1)
    G16.synthesis.lod.fill_(1)  # 8x8 trained; the 16x16 fade-in starts here (alpha 0).
    low = G8.synthesis(ws[:, :G8.num_ws], noise_mode='const')
    expected = low.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    assert torch.equal(G16.synthesis(ws, noise_mode='const'), expected)
    G16.synthesis.lod.fill_(0)
    full = G16.synthesis(ws, noise_mode='const')
    assert (full - expected).abs().mean() > 1e-2
    G16.synthesis.lod.fill_(0.25)  # alpha 0.75: lerp between the new block and the upsampled old one.
    torch.testing.assert_close(G16.synthesis(ws, noise_mode='const'), 0.75 * full + 0.25 * expected)


def test_D_at_lod_1_reads_the_pooled_image_with_the_lower_level_fromrgb():
    torch.manual_seed(1)
    D = _randomize(nets1.Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=128, channel_max=8,
                                       mbstd_group_size=2))
    img = torch.randn([4, 3, 16, 16])
    D.lod.fill_(1)
    x = D.b8.fromrgb(torch.nn.functional.avg_pool2d(img, 2))
    expected = D.b4(D.b8(x))
    torch.testing.assert_close(D(img, None), expected)
    D.lod.fill_(0.5)
    blended = torch.lerp(D.b16(D.b16.fromrgb(img)), x, 0.5)
    torch.testing.assert_close(D(img, None), D.b4(D.b8(blended)))

#----------------------------------------------------------------------------
# Training: a tiny run (16x16, 20 images per stage and per fade; 8 images per iteration at 8x8, 4 at 16x16) that
# resumes exactly from mid-fade.

LOD_KIMG = 0.02


@pytest.fixture(scope='module')
def shapes16(tmp_path_factory):
    return th.write_shapes_folder(tmp_path_factory.mktemp('shapes16'), count=24, resolution=16)


def _options(data, run_dir):
    info = dict(name='shapes16', resolution=16, size=24, has_labels=False)
    options = train.build_training_options(info, cfg='stylegan1', data=data, gpus=1, batch=4, gamma=1, cbase=256,
                                           cmax=16, map_depth=2, mbstd_group=2, workers=0, device='cpu', metrics=[],
                                           aug='noaug', progressive=True, lod_kimg=LOD_KIMG, lod_batch='8:8')
    options.pop('run_desc')
    options.update(run_dir=str(run_dir), kimg_per_tick=th.TICK_KIMG, image_grid_size=[2, 2],
                   total_kimg=th.TICK_KIMG * 3 + 0.004, image_snapshot_ticks=1, network_snapshot_ticks=1,
                   data_loader_kwargs=dict(num_workers=0), num_threads=None)  # Fixed threads: exact resume.
    options['G_kwargs'].update(z_dim=16, w_dim=16)
    return options


@pytest.fixture(scope='module')
def reference_run(shapes16, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp('progressive')
    options = _options(shapes16, run_dir)
    th.run_quietly(**options)
    return dict(run_dir=run_dir, options=options, stats=th.read_stats(run_dir))


def test_preset_uses_the_progressive_G_and_D():
    info = dict(name='x', resolution=64, size=10, has_labels=False)
    options = train.build_training_options(info, cfg='stylegan1', data='x', gpus=1, batch=32, gamma=10,
                                           progressive=True)
    assert options['G_kwargs']['progressive'] is True
    assert options['D_kwargs']['class_name'] == 'training.networks_stylegan1.Discriminator'
    assert options['progressive_kwargs'] == dict(start_resolution=8, lod_training_kimg=600, lod_transition_kimg=600)
    with pytest.raises(train.UsageError, match='--progressive'):
        train.build_training_options(info, cfg='stylegan2', data='x', gpus=1, batch=32, gamma=10, progressive=True)


def test_tiny_progressive_run_learns_reports_lod_and_snapshots_carry_it(reference_run):
    stats = reference_run['stats']
    assert stats[0]['Progress/kimg']['mean'] == pytest.approx(0.008, abs=1e-12)  # The first iteration took the 8x8 minibatch of 8.
    lods = [tick['Progress/lod']['mean'] for tick in stats]
    assert lods[0] == 1 and lods[-1] < 0.5 and all(a >= b for a, b in zip(lods, lods[1:]))
    losses = [tick['Loss/G/loss']['mean'] for tick in stats]
    assert np.ptp(losses) > 1e-3 and np.all(np.isfinite(losses))
    run_dir = reference_run['run_dir']
    first = np.asarray(PIL.Image.open(run_dir / 'fakes_init.png')).astype(int)
    last = np.asarray(PIL.Image.open(run_dir / 'fakes000000.png')).astype(int)
    assert np.abs(first - last).mean() > 1
    G = th.latest_snapshot(run_dir)['G_ema']
    assert float(G.synthesis.lod) == progressive.lod_at(52 - 4, 16, 8, LOD_KIMG, LOD_KIMG)  # Last iteration's lod.


def test_mid_fade_snapshot_resumes_bit_exactly(reference_run, shapes16, tmp_path):
    options = reference_run['options']
    first_dir, second_dir = tmp_path / 'first', tmp_path / 'second'
    stop_after_tick_2 = iter([False, False, True])
    th.run_quietly(**dict(options, run_dir=str(first_dir), abort_fn=lambda: next(stop_after_tick_2)))
    mid = th.latest_snapshot(first_dir)
    assert 0 < float(mid['G_ema'].synthesis.lod) < 1  # Snapshot taken while 16x16 fades in.
    _state, log = th.run_quietly(**dict(options, run_dir=str(second_dir), resume_pkl=str(first_dir)))
    assert 'Continuing exactly' in log
    ref, resumed = th.latest_snapshot(reference_run['run_dir']), th.latest_snapshot(second_dir)
    for name in ('G', 'D', 'G_ema'):
        ref_tensors = dict(ref[name].named_parameters()) | dict(ref[name].named_buffers())
        for key, value in list(resumed[name].named_parameters()) + list(resumed[name].named_buffers()):
            assert torch.equal(value, ref_tensors[key]), f'{name}.{key}'


def test_mid_growth_snapshot_renders_at_its_lod_with_gen_images_and_gen_video(reference_run, tmp_path):
    pkl = str(reference_run['run_dir'] / 'network-snapshot-000000.pkl')
    data = safe_pickle.load_network_pkl(pkl, families=FAMILIES)
    G = data['G_ema']
    G.synthesis.lod.fill_(1)  # As in the first stage: 8x8 content, upsampled to 16x16.
    safe_pickle.save_network_pkl(dict(data, G=None, D=None), str(tmp_path / 'lod1.pkl'))
    result = CliRunner().invoke(gen_images.main, ['--network', str(tmp_path / 'lod1.pkl'), '--seeds=3',
                                                  '--outdir', str(tmp_path / 'img'), '--device=cpu'],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    written = np.asarray(PIL.Image.open(tmp_path / 'img' / 'seed0003.png')).astype(int)
    assert written.shape == (16, 16, 3)
    assert np.array_equal(written[::2, ::2], written[1::2, 1::2])  # Every 2x2 block is one 8x8 pixel.
    z = torch.from_numpy(np.random.RandomState(3).randn(1, G.z_dim)).float()
    with torch.no_grad():
        expected = (G(z, None, noise_mode='const')[0].permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    assert np.abs(written - expected.numpy().astype(int)).max() <= 1
    result = CliRunner().invoke(gen_video.main, ['--network', pkl, '--seeds=0-1', '--grid=2x1', '--w-frames=2',
                                                 '--output', str(tmp_path / 'v.mp4'), '--device=cpu'])
    assert result.exit_code == 0, result.output


def test_progressive_snapshot_mixes_styles_with_style_mixing(reference_run, tmp_path):
    pkl = str(reference_run['run_dir'] / 'network-snapshot-000000.pkl')
    result = CliRunner().invoke(style_mixing.main, ['--network', pkl, '--rows=1,2', '--cols=3', '--styles=0-1',
                                                    '--outdir', str(tmp_path / 'mix'), '--device=cpu'])
    assert result.exit_code == 0, result.output
    grid = np.asarray(PIL.Image.open(tmp_path / 'mix' / 'grid.png')).astype(int)
    assert grid.shape == (16 * 3, 16 * 2, 3)
    row_image, mixed = grid[16:32, :16], grid[16:32, 16:32]  # Row seed 1 alone, and with seed 3's coarse styles.
    assert np.abs(mixed - row_image).mean() > 0.5
