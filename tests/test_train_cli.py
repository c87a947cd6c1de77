"""train.py: the pure config builder per --cfg (against the official init_kwargs and the published presets),
start-up validation, --dry-run, run directory naming, and a 2-process gloo run on CPU."""

import json
import os

import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import dnnlib
import train
from training import training_loop as tl
from torch_utils import misc
from training.shapes_dataset import render_shape_image

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')


def dataset_info(resolution=256, has_labels=False, name='ffhq', size=70000):
    return dict(name=name, resolution=resolution, size=size, has_labels=has_labels)


def build(cfg, **opts):
    opts = dict(dict(data='datasets/ffhq.zip', gpus=8, batch=32, gamma=10), **opts)
    return train.build_training_options(dataset_info(), cfg=cfg, **opts)


@pytest.fixture(scope='module')
def shapes_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp('shapes16')
    for idx in range(16):
        image, _label = render_shape_image(idx, 16)
        PIL.Image.fromarray(image).save(path / f'img{idx:08d}.png')
    return str(path)

#----------------------------------------------------------------------------
# Presets.

@pytest.mark.parametrize('cfg,layout', [('stylegan2', 'official-stylegan2-256'),
                                        ('stylegan3-t', 'official-stylegan3-t-256'),
                                        ('stylegan3-r', 'official-stylegan3-r-256')])
def test_network_kwargs_equal_the_official_init_kwargs(cfg, layout):
    with open(os.path.join(DATA_DIR, 'official_layout.json')) as f:
        official = json.load(f)[layout]
    options = build(cfg)
    common = dict(c_dim=0, img_resolution=256, img_channels=3)
    G_kwargs = {k: v for k, v in options['G_kwargs'].items() if k != 'class_name'}
    assert dict(G_kwargs, **common) == official['G_ema']['init_kwargs']
    assert options['G_kwargs']['class_name'].split('.')[-2] == official['G_ema']['class_module']
    if 'D' in official:
        D_kwargs = {k: v for k, v in options['D_kwargs'].items() if k != 'class_name'}
        assert dict(D_kwargs, **common) == official['D']['init_kwargs']


def test_stylegan2_preset_values():
    options = build('stylegan2')
    assert options['G_kwargs']['mapping_kwargs'] == {'num_layers': 8}
    assert options['G_opt_kwargs'] == dict(class_name='torch.optim.Adam', betas=[0, 0.99], eps=1e-8, lr=0.002)
    assert options['D_opt_kwargs']['lr'] == 0.002
    assert options['loss_kwargs'] == dict(class_name='training.loss.StyleGAN2Loss', r1_gamma=10, style_mixing_prob=0.9,
                                          pl_weight=2, pl_no_weight_grad=True)
    assert options['G_reg_interval'] == 4 and options['D_reg_interval'] == 16
    assert options['ema_kimg'] == 10 and options['ema_rampup'] == 0.05
    assert options['ada_target'] == 0.6 and options['ada_interval'] == 4 and options['ada_kimg'] == 500
    assert options['augment_kwargs']['class_name'] == 'training.augment.AugmentPipe'
    assert options['batch_gpu'] == 4 and options['num_gpus'] == 8
    assert options['run_desc'] == 'stylegan2-ffhq-gpus8-batch32-gamma10'


def test_stylegan1_preset_uses_the_papers_learning_rates_unless_overridden():
    options = build('stylegan1')
    assert options['G_opt_kwargs']['lr'] == 0.001 and options['D_opt_kwargs']['lr'] == 0.001
    assert options['loss_kwargs']['style_mixing_prob'] == 0.9
    assert options['D_kwargs']['architecture'] == 'orig'
    overridden = build('stylegan1', glr=0.003, dlr=0.004)
    assert overridden['G_opt_kwargs']['lr'] == 0.003 and overridden['D_opt_kwargs']['lr'] == 0.004
    assert build('stylegan3-t')['D_opt_kwargs']['lr'] == 0.002


def test_max_minutes_reaches_the_training_loop_only_when_given():
    assert 'max_minutes' not in build('stylegan2')
    assert build('stylegan2', max_minutes=7.5)['max_minutes'] == 7.5


def test_stylegan3_presets_drop_pl_and_mixing_and_r_adds_blur_and_doubles_channels():
    t = build('stylegan3-t', batch=64)
    assert t['G_kwargs']['mapping_kwargs'] == {'num_layers': 2} and t['G_opt_kwargs']['lr'] == 0.0025
    assert t['loss_kwargs'] == dict(class_name='training.loss.StyleGAN2Loss', r1_gamma=10)
    assert t['G_reg_interval'] is None and t['ema_kimg'] == 20
    assert t['G_kwargs']['magnitude_ema_beta'] == pytest.approx(0.5 ** (64 / 20000))
    r = build('stylegan3-r', batch=64, cbase=16384, cmax=256)
    assert r['G_kwargs']['channel_base'] == 32768 and r['G_kwargs']['channel_max'] == 512
    assert r['D_kwargs']['channel_base'] == 16384 and r['D_kwargs']['channel_max'] == 256
    assert r['G_kwargs']['conv_kernel'] == 1 and r['G_kwargs']['use_radial_filters'] is True
    assert r['loss_kwargs']['blur_init_sigma'] == 10 and r['loss_kwargs']['blur_fade_kimg'] == 64 * 200 / 32


def test_recipe_options_override_the_preset_and_default_to_it():
    assert build('stylegan2', pl_weight=None, style_mixing=None, ema_kimg=None, ema_rampup=None,
                 r1_interval=None) == build('stylegan2')
    options = build('stylegan2', pl_weight=0, style_mixing=0, ema_kimg=2.5, ema_rampup=0, r1_interval=4)
    assert options['loss_kwargs'] == dict(class_name='training.loss.StyleGAN2Loss', r1_gamma=10)
    assert options['G_reg_interval'] is None and options['D_reg_interval'] == 4
    assert options['ema_kimg'] == 2.5 and options['ema_rampup'] is None
    # Path length switched on for a preset without it gets the official SG2 interval; mixing for SG3 is kept.
    t = build('stylegan3-t', pl_weight=1.5, style_mixing=0.5, ema_rampup=0.1)
    assert t['loss_kwargs']['pl_weight'] == 1.5 and t['loss_kwargs']['style_mixing_prob'] == 0.5
    assert t['G_reg_interval'] == 4 and t['ema_rampup'] == 0.1


def test_dcgan_refuses_the_style_based_recipe_options():
    for opts, named in ((dict(pl_weight=1), '--pl-weight'), (dict(pl_weight=1, style_mixing=0.5),
                                                                '--pl-weight --style-mixing')):
        with pytest.raises(train.UsageError, match=f'^{named}: .*--cfg=dcgan has none'):
            build('dcgan', **opts)
    assert build('dcgan', pl_weight=0, style_mixing=0, ema_kimg=1)['ema_kimg'] == 1


def test_recipe_options_reach_the_cli(shapes_dir, tmp_path):
    result = CliRunner().invoke(train.main, [f'--outdir={tmp_path}', '--cfg=stylegan2', f'--data={shapes_dir}',
                                             '--gpus=1', '--batch=4', '--gamma=1', '--pl-weight=0', '--ema-kimg=1.5',
                                             '--style-mixing=0.25', '--r1-interval=8', '--ema-rampup=0', '-n'])
    assert result.exit_code == 0, result.output
    options = json.loads(result.output[result.output.index('{'):result.output.rindex('}') + 1])
    assert options['loss_kwargs']['style_mixing_prob'] == 0.25 and 'pl_weight' not in options['loss_kwargs']
    assert (options['G_reg_interval'], options['D_reg_interval'], options['ema_kimg'], options['ema_rampup']) == \
        (None, 8, 1.5, None)


def test_options_map_onto_training_loop_arguments():
    options = build('stylegan2', gpus=2, batch=16, batch_gpu=4, glr=0.001, dlr=0.003, map_depth=3, mbstd_group=2,
                    freezed=2, mirror=True, cond=False, aug='fixed', p=0.3, kimg=100, tick=2, snap=5, seed=7,
                    fp32=True, nobench=True, workers=1, metrics=['fid50k_full'], resume='old.pkl')
    assert options['G_opt_kwargs']['lr'] == 0.001 and options['D_opt_kwargs']['lr'] == 0.003
    assert options['G_kwargs']['mapping_kwargs']['num_layers'] == 3
    assert options['D_kwargs']['epilogue_kwargs']['mbstd_group_size'] == 2
    assert options['D_kwargs']['block_kwargs']['freeze_layers'] == 2
    assert options['training_set_kwargs']['xflip'] is True and options['training_set_kwargs']['random_seed'] == 7
    assert options['augment_p'] == 0.3 and options['ada_target'] is None
    assert (options['total_kimg'], options['kimg_per_tick'], options['network_snapshot_ticks']) == (100, 2, 5)
    assert options['G_kwargs']['num_fp16_res'] == 0 and options['D_kwargs']['conv_clamp'] is None
    assert options['cudnn_benchmark'] is False and options['data_loader_kwargs']['num_workers'] == 1
    assert options['resume_pkl'] == 'old.pkl'
    assert options['weights_only_resume_overrides'] == dict(ada_kimg=100, ema_rampup=None,
                                                            loss_kwargs=dict(blur_init_sigma=0))
    assert build('stylegan2', aug='noaug')['augment_kwargs'] is None


@pytest.mark.parametrize('cfg', sorted(train.CONFIG_PRESETS))
def test_every_preset_names_importable_classes_or_fails_at_start(cfg):
    options = build(cfg, metrics=[])
    missing = [options[key]['class_name'] for key in ('G_kwargs', 'D_kwargs')
               if not _importable(options[key]['class_name'])]
    if missing:  # stylegan1 until training/networks_stylegan1.py exists.
        with pytest.raises(train.UsageError, match=r'needs training/networks_stylegan\d\.py'):
            train.check_modules_exist(options)
        return
    train.check_modules_exist(options)
    for key in ('loss_kwargs', 'training_set_kwargs', 'augment_kwargs'):
        assert _importable(options[key]['class_name']), key


def _importable(class_name):
    try:
        dnnlib.util.get_obj_by_name(class_name)
        return True
    except (ImportError, AttributeError):
        return False

#----------------------------------------------------------------------------
# Validation at start.

@pytest.mark.parametrize('opts,message', [
    (dict(gpus=3, batch=32), r'--batch=32 must be a multiple of --gpus=3'),
    (dict(gpus=2, batch=32, batch_gpu=32), r'multiple of --gpus times --batch-gpu \(2 x 32\)'),
    (dict(gpus=8, batch=16), r'--batch-gpu=2 cannot be smaller than --mbstd-group=4'),
    (dict(cond=True), r'--cond=1 requires labels'),
    (dict(cfg='stylegan4'), r'--cfg=stylegan4: choose one of'),
    (dict(batch=None), r'--batch is required'),
])
def test_bad_options_fail_with_a_message_naming_the_option(opts, message):
    opts = dict(dict(cfg='stylegan2', data='x.zip', gpus=1, batch=32, gamma=1), **opts)
    with pytest.raises(train.UsageError, match=message):
        train.build_training_options(dataset_info(), **opts)


def test_missing_dataset_fails_at_start(tmp_path):
    result = CliRunner().invoke(train.main, ['--outdir', str(tmp_path / 'runs'), '--cfg=stylegan2', '--gpus=1',
                                             '--batch=4', '--gamma=1', '--data', str(tmp_path / 'nope.zip')])
    assert result.exit_code != 0 and 'nope.zip' in result.output and 'does not exist' in result.output
    assert not os.path.exists(tmp_path / 'runs')


def test_missing_augment_or_metrics_module_fails_at_start():
    with pytest.raises(RuntimeError, match='--aug: the augment pipe training.no_such.AugmentPipe is not available'):
        tl.check_optional_modules([], dict(class_name='training.no_such.AugmentPipe'))
    if _importable('metrics.metric_main.calc_metric'):
        with pytest.raises(ValueError, match='unknown metric'):
            tl.check_optional_modules(['no_such_metric'], None)
    else:
        with pytest.raises(RuntimeError, match='--metrics=fid50k_full: the metrics package cannot be imported'):
            tl.check_optional_modules(['fid50k_full'], None)


def test_metric_without_its_detector_file_stops_the_run_at_start(monkeypatch):
    metric_main = pytest.importorskip('metrics.metric_main', reason='the metrics package is not in this checkout')
    from metrics import metric_utils

    def detector_missing(metrics, **_kwargs):
        raise metric_utils.DetectorUnavailableError('inception-2015-12-05.pkl is not available; put it at <dir>')
    monkeypatch.setattr(metric_main, 'check_metrics_available', detector_missing)
    with pytest.raises(train.UsageError, match='--metrics=fid50k_full: inception-2015-12-05.pkl is not available'):
        train.check_modules_exist(build('stylegan2', aug='noaug', metrics=['fid50k_full']))


def test_metrics_default_depends_on_the_metrics_package():
    expected = 'fid50k_full' if train.metrics_available() else 'none'
    option = next(p for p in train.main.params if p.name == 'metrics')
    assert option.default == expected and f'[default: {expected}]' in option.help

#----------------------------------------------------------------------------
# --dry-run, run directories, resume paths.

def test_dry_run_prints_the_options_as_json_and_creates_nothing(shapes_dir, tmp_path):
    outdir = tmp_path / 'runs'
    result = CliRunner().invoke(train.main, ['--outdir', str(outdir), '--cfg=stylegan3-r', '--data', shapes_dir,
                                             '--gpus=1', '--batch=8', '--gamma=0.5', '--aug=noaug', '--metrics=none',
                                             '--device=cpu', '--desc=try', '--dry-run'])
    assert result.exit_code == 0, result.output
    text = result.output.split('Training options:')[1].split('Output directory:')[0]
    options = json.loads(text)
    assert options['G_kwargs']['class_name'] == 'training.networks_stylegan3.Generator'
    assert options['training_set_kwargs']['resolution'] == 16 and options['training_set_kwargs']['max_size'] == 16
    assert options['run_desc'] == f'stylegan3-r-{os.path.basename(shapes_dir)}-gpus1-batch8-gamma0.5-try'
    assert options['device'] == 'cpu' and 'Dry run; exiting.' in result.output
    assert not outdir.exists()


#----------------------------------------------------------------------------
# Offline: --dry-run without detector files, --detector-dir.

@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty dnnlib cache and no network (any download attempt fails the test)."""
    pytest.importorskip('metrics.metric_main', reason='the metrics package is not in this checkout')
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    def no_download(url, *_args, **_kwargs):
        raise AssertionError(f'tried to download {url}')
    monkeypatch.setattr(dnnlib.util, '_download_once', no_download)
    return tmp_path


def _train_args(outdir, shapes_dir, *extra):
    return ['--outdir', str(outdir), '--cfg=stylegan2', '--data', shapes_dir, '--gpus=1', '--batch=4', '--gamma=1',
            '--aug=noaug', '--metrics=fid50k_full', '--device=cpu', *extra]


def test_dry_run_without_detector_files_prints_the_options_and_one_warning(shapes_dir, offline):
    result = CliRunner().invoke(train.main, _train_args(offline / 'runs', shapes_dir, '--dry-run'))
    assert result.exit_code == 0, result.output
    options = json.loads(result.output.split('Training options:')[1].split('Output directory:')[0])
    assert options['metrics'] == ['fid50k_full'] and 'Dry run; exiting.' in result.output
    warnings = [line for line in result.output.splitlines() if line.startswith('Warning')]
    assert len(warnings) == 1 and 'inception-2015-12-05.pkl is not available' in warnings[0]
    assert os.path.join(str(offline / 'cache'), 'detectors', 'inception-2015-12-05.pkl') in result.output
    assert '--detector-dir' in result.output and not (offline / 'runs').exists()


def test_real_run_without_detector_files_stops_before_training(shapes_dir, offline, monkeypatch):
    monkeypatch.setattr(dnnlib.util, '_download_once', _offline_download_error)
    result = CliRunner().invoke(train.main, _train_args(offline / 'runs', shapes_dir))
    assert result.exit_code == 1 and 'inception-2015-12-05.pkl is not available' in result.output
    assert '--metrics=none' in result.output and not (offline / 'runs').exists()


def _offline_download_error(url, *_args, **_kwargs):
    raise OSError('Temporary failure in name resolution')


def test_detector_dir_is_searched_and_reaches_the_metrics(shapes_dir, offline, monkeypatch):
    detector_dir = offline / 'detectors'
    detector_dir.mkdir()
    (detector_dir / 'inception-2015-12-05.pkl').write_bytes(b'not read by the availability check')
    result = CliRunner().invoke(train.main, _train_args(offline / 'runs', shapes_dir, f'--detector-dir={detector_dir}',
                                                        '--dry-run'))
    assert result.exit_code == 0, result.output
    assert 'Warning' not in result.output and f'"detector_dir": "{detector_dir}"' in result.output
    assert 'detector_dir' not in build('stylegan2')  # Only when given: the official options stay as they are.
    from metrics import metric_main
    seen = []
    monkeypatch.setattr(metric_main, 'calc_metric', lambda **kwargs: seen.append(kwargs) or dnnlib.EasyDict(results={}))
    monkeypatch.setattr(metric_main, 'report_metric', lambda *args, **kwargs: None)
    ctx = dnnlib.EasyDict(metrics=['fid50k_full'], training_set_kwargs={}, num_gpus=1, rank=1, device='cpu',
                          detector_dir=str(detector_dir), run_dir=None)
    tl.evaluate_metrics(ctx, None, ctx.training_set_kwargs, 'snapshot.pkl')
    assert seen[0]['detector_dir'] == str(detector_dir)


def test_run_dirs_are_numbered_after_the_highest_existing_id(tmp_path):
    (tmp_path / '00007-old').mkdir()
    (tmp_path / 'notes').mkdir()
    first = train.make_run_dir(str(tmp_path), 'stylegan2-x-gpus1-batch4-gamma1')
    second = train.make_run_dir(str(tmp_path), 'stylegan2-x-gpus1-batch4-gamma1')
    assert os.path.basename(first) == '00008-stylegan2-x-gpus1-batch4-gamma1'
    assert os.path.basename(second) == '00009-stylegan2-x-gpus1-batch4-gamma1'


def test_resume_of_a_run_directory_resolves_to_its_latest_snapshot(shapes_dir, tmp_path):
    run_dir = tmp_path / '00000-run'
    run_dir.mkdir()
    for kimg in (4, 12):
        (run_dir / f'network-snapshot-{kimg:06d}.pkl').write_bytes(b'\x80\x04')  # Starts like a pickle.
    result = CliRunner().invoke(train.main, ['--outdir', str(tmp_path), '--cfg=stylegan2', '--data', shapes_dir,
                                             '--gpus=1', '--batch=4', '--gamma=1', '--aug=noaug', '--metrics=none',
                                             '--device=cpu', '--resume', str(run_dir), '-n'])
    assert result.exit_code == 0, result.output
    assert f'"resume_pkl": "{run_dir}/network-snapshot-000012.pkl"' in result.output

#----------------------------------------------------------------------------
# Two processes.

def test_two_gloo_processes_on_cpu_keep_identical_parameters(shapes_dir, tmp_path):
    info = dict(name='shapes16', resolution=16, size=16, has_labels=False)
    options = train.build_training_options(info, cfg='stylegan2', data=shapes_dir, gpus=2, batch=4, gamma=1,
                                           cbase=256, cmax=16, map_depth=1, mbstd_group=2, aug='ada', workers=0,
                                           fp32=True, device='cpu', metrics=[])
    options['G_kwargs'].update(z_dim=16, w_dim=16)
    options.update(kimg_per_tick=0.008, total_kimg=0.02, image_grid_size=[2, 2], network_snapshot_ticks=1,
                   image_snapshot_ticks=None, data_loader_kwargs=dict(num_workers=0))
    train.launch_training(options, str(tmp_path))
    run_dir = tmp_path / '00000-stylegan2-shapes16-gpus2-batch4-gamma1'
    names = set(os.listdir(run_dir))
    assert {'training_options.json', 'log.txt', 'stats.jsonl', 'network-snapshot-000000.pkl'} <= names
    with open(run_dir / 'log.txt') as f:
        log = f.read()
    assert log.count('\ntick ') + log.startswith('tick ') == 3  # Ticks end at 4, 12, 20 images.
    snapshot = tl.load_snapshot(str(run_dir / 'network-snapshot-000000.pkl'))
    # Each snapshot ran check_ddp_consistency (parameters equal on both ranks) and holds both ranks' state.
    ranks = snapshot[tl.RESUME_STATE_KEY]['ranks']
    assert len(ranks) == 2 and snapshot[tl.RESUME_STATE_KEY]['cur_nimg'] == 20
    assert not all(a == b for a, b in zip(ranks[0]['rng']['python'][1], ranks[1]['rng']['python'][1]))


def _gloo_threads_left_after_destroy(rank, init_file, through_train, result_dir):
    """Spawned: join a 2-process gloo group, build an optimizer (its constructor imports torch._dynamo), reduce,
    destroy the group; write the names of this process's threads that belong to gloo."""
    kwargs = dict(backend='gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    misc.init_process_group(**kwargs) if through_train else torch.distributed.init_process_group(**kwargs)
    param = torch.nn.Parameter(torch.ones(8))
    torch.optim.Adam([param])
    torch.distributed.all_reduce(param.detach().clone())
    torch.distributed.destroy_process_group()
    names = [open(f'/proc/self/task/{tid}/comm').read().strip() for tid in os.listdir('/proc/self/task')]
    with open(os.path.join(result_dir, f'{rank}.json'), 'w') as f:
        json.dump([name for name in names if 'gloo' in name], f)
    if not through_train:
        os._exit(0)  # The threads left running would make interpreter shutdown abort now and then.


@pytest.mark.skipif(not os.path.isdir('/proc/self/task'), reason='needs /proc to list threads')
@pytest.mark.parametrize('through_train', [False, True])
def test_destroying_the_gloo_group_ends_its_threads_after_an_optimizer_was_built(tmp_path, through_train):
    # Threads that outlive the group abort the process at interpreter exit once in a while (SIGABRT, 'terminate
    # called without an active exception'); train.py and calc_metrics.py join through misc.init_process_group,
    # which imports torch._dynamo first. The plain torch call is the control: the optimizer leaves them running.
    torch.multiprocessing.spawn(_gloo_threads_left_after_destroy, nprocs=2,
                                args=(str(tmp_path / 'init'), through_train, str(tmp_path)))
    left = [json.load(open(tmp_path / f'{rank}.json')) for rank in (0, 1)]
    if through_train:
        assert left == [[], []]
    else:
        assert all('pt_gloo_runloop' in names for names in left), left


@pytest.mark.slow
def test_two_process_run_with_a_worker_resumes_bit_exactly(shapes_dir, tmp_path):
    info = dict(name='shapes16', resolution=16, size=16, has_labels=False)
    options = train.build_training_options(info, cfg='stylegan2', data=shapes_dir, gpus=2, batch=4, gamma=1,
                                           cbase=256, cmax=16, map_depth=1, mbstd_group=2, aug='noaug', workers=1,
                                           fp32=True, device='cpu', metrics=[])
    options['G_kwargs'].update(z_dim=16, w_dim=16)
    options.update(kimg_per_tick=0.008, image_grid_size=[2, 2], network_snapshot_ticks=1, image_snapshot_ticks=None,
                   num_threads=1)  # Fixed: an automatic team may narrow under load, and rounding depends on it.
    train.launch_training(dict(options, total_kimg=0.02), str(tmp_path / 'reference'))
    train.launch_training(dict(options, total_kimg=0.012), str(tmp_path / 'first'))  # Stops at tick 1 (12 images).
    first_dir = tmp_path / 'first' / os.listdir(tmp_path / 'first')[0]
    train.launch_training(dict(options, total_kimg=0.02, resume_pkl=str(first_dir)), str(tmp_path / 'resumed'))
    reference, resumed = [tl.load_snapshot(tl.find_latest_snapshot(str(root / os.listdir(root)[0])))
                          for root in (tmp_path / 'reference', tmp_path / 'resumed')]
    assert reference[tl.RESUME_STATE_KEY]['cur_nimg'] == resumed[tl.RESUME_STATE_KEY]['cur_nimg'] == 20
    for name in ('G', 'D', 'G_ema'):
        resumed_tensors = dict(resumed[name].named_parameters()) | dict(resumed[name].named_buffers())
        for key, value in list(reference[name].named_parameters()) + list(reference[name].named_buffers()):
            assert torch.equal(value, resumed_tensors[key]), f'{name}.{key}'
    for rank in (0, 1):  # Per-process state: pl_mean and G's w_avg differ between ranks, and must resume as such.
        ref_rank, resumed_rank = (s[tl.RESUME_STATE_KEY]['ranks'][rank] for s in (reference, resumed))
        assert torch.equal(ref_rank['loss']['pl_mean'], resumed_rank['loss']['pl_mean'])
        assert torch.equal(ref_rank['buffers']['G']['mapping.w_avg'], resumed_rank['buffers']['G']['mapping.w_avg'])
