"""End-to-end runs of the ADA, fixed-augmentation, conditional and transfer-learning options on CPU (issue 7):
--aug=ada moves p at the documented rate and resumes bit-exactly, --aug=fixed keeps p, --cond=1 on builtin:shapes
trains and gen_images.py --class=k renders that class, --freezed=N freezes D's first N layers, --mirror=1 doubles
the dataset with mirrored copies."""

import json
import pickle
import re

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import dataset_tool
import gen_images
import train
from training import training_loop as tl
from training.dataset import ImageFolderDataset
from training_helpers import latest_snapshot, read_stats, run_quietly, tiny_options, write_shapes_folder

ADA_KIMG = 0.1      # p may move by batch 4 * interval 4 / 100 images = 0.16 per adjustment: visible in 3 decimals.

#----------------------------------------------------------------------------
# Helpers: the tiny configuration and run readers live in tests/training_helpers.py.

@pytest.fixture(scope='module')
def shapes_dir(tmp_path_factory):
    return write_shapes_folder(tmp_path_factory.mktemp('shapes16'))


def named_tensors(module):
    return dict(module.named_parameters()) | dict(module.named_buffers())

#----------------------------------------------------------------------------
# --aug=ada: p moves, and a resumed run continues it exactly.

@pytest.fixture(scope='module')
def ada_run(shapes_dir, tmp_path_factory):
    """--aug=ada --target=0 for 3 ticks (9 iterations; ADA adjusts after iterations 4 and 8), snapshots every
    tick. D learns to score reals positive, so E[sign(D(real))] > 0 = target and p rises."""
    run_dir = tmp_path_factory.mktemp('ada')
    options = tiny_options(shapes_dir, run_dir, total_ticks=3, train_opts=dict(aug='ada', target=0),
                           image_snapshot_ticks=1, network_snapshot_ticks=1, ada_kimg=ADA_KIMG)
    state, log = run_quietly(**options)
    return dict(run_dir=str(run_dir), state=state, log=log, options=options)


def test_ada_run_raises_p_in_steps_of_batch_times_interval_over_ada_kimg(ada_run):
    assert ada_run['options']['ada_target'] == 0 and ada_run['options']['augment_kwargs'] == train.ADA_PIPE_KWARGS
    step = 4 * 4 / (ADA_KIMG * 1000)
    p_per_tick = [tick['Progress/augment']['mean'] for tick in read_stats(ada_run['run_dir'])]
    assert len(p_per_tick) == 3 and p_per_tick[0] == 0  # Tick 0 is one iteration: no adjustment yet.
    assert p_per_tick[-1] > 0 and p_per_tick == sorted(p_per_tick)
    for p in p_per_tick:  # Each adjustment moves p by exactly one step (float32 sums of 0.16).
        assert p == pytest.approx(round(p / step) * step, abs=1e-6)
    assert round(p_per_tick[-1] / step) <= 2
    status_p = [float(value) for value in re.findall(r' augment (\d+\.\d+)', ada_run['log'])]
    assert status_p == [pytest.approx(p, abs=5e-4) for p in p_per_tick]
    assert float(ada_run['state'].augment_pipe.p) == p_per_tick[-1]
    assert float(latest_snapshot(ada_run['run_dir'])['augment_pipe'].p) == p_per_tick[-1]


def test_ada_run_stopped_at_tick_1_and_resumed_matches_the_uninterrupted_run_bit_exactly(ada_run, tmp_path):
    first_dir, second_dir = tmp_path / 'first', tmp_path / 'second'
    options = dict(ada_run['options'])
    stop_after_tick_1 = iter([False, True])  # abort_fn is asked at the end of ticks 0 and 1.
    run_quietly(**dict(options, run_dir=str(first_dir), abort_fn=lambda: next(stop_after_tick_1)))
    first = latest_snapshot(first_dir)[tl.RESUME_STATE_KEY]
    assert first['cur_nimg'] == 20 and first['ada']['num_steps'] == 5  # Resumes between two ADA adjustments,
    assert first['ada']['signs_num'] > 0                                 # with signs pending.
    _state, log = run_quietly(**dict(options, run_dir=str(second_dir), resume_pkl=str(first_dir)))
    assert 'Continuing exactly at 0.02 kimg, tick 2' in log
    ref, resumed = latest_snapshot(ada_run['run_dir']), latest_snapshot(second_dir)
    for name in ('G', 'D', 'G_ema', 'augment_pipe'):
        ref_tensors = named_tensors(ref[name])
        for key, value in named_tensors(resumed[name]).items():
            assert torch.equal(value, ref_tensors[key]), f'{name}.{key}'
    assert float(resumed['augment_pipe'].p) > 0
    assert resumed[tl.RESUME_STATE_KEY]['ada'] == ref[tl.RESUME_STATE_KEY]['ada']
    ref_p = [tick['Progress/augment']['mean'] for tick in read_stats(ada_run['run_dir'])]
    assert [tick['Progress/augment']['mean'] for tick in read_stats(second_dir)] == ref_p[2:]

#----------------------------------------------------------------------------
# --aug=fixed keeps p.

def test_fixed_augmentation_keeps_p(shapes_dir, tmp_path):
    options = tiny_options(shapes_dir, tmp_path / 'fixed', total_ticks=2, train_opts=dict(aug='fixed', p=0.5),
                           network_snapshot_ticks=None, image_snapshot_ticks=None)
    assert options['augment_p'] == 0.5 and options['ada_target'] is None
    state, log = run_quietly(**options)
    assert state.augment_pipe is not None and state.ada is None
    assert float(state.augment_pipe.p) == 0.5
    assert [tick['Progress/augment']['mean'] for tick in read_stats(tmp_path / 'fixed')] == [0.5, 0.5]
    assert re.findall(r' augment (\d+\.\d+)', log) == ['0.500', '0.500']

#----------------------------------------------------------------------------
# --cond=1 on builtin:shapes; gen_images.py --class=k.

def test_conditional_shapes_run_trains_and_gen_images_renders_the_requested_class(tmp_path):
    zip_path = tmp_path / 'shapes16.zip'
    result = CliRunner().invoke(dataset_tool.main, ['--source=builtin:shapes', f'--dest={zip_path}',
                                                    '--resolution=16x16', '--max-images=16'])
    assert result.exit_code == 0, result.output
    info = train.describe_dataset(str(zip_path), cond=True)
    assert info['has_labels'] and info['size'] == 16
    run_dir = tmp_path / 'run'
    options = tiny_options(str(zip_path), run_dir, total_ticks=1, info=info, train_opts=dict(cond=True),
                           network_snapshot_ticks=1, image_snapshot_ticks=None)
    state, _log = run_quietly(**options)
    num_classes = state.G.c_dim
    assert num_classes == state.D.c_dim == 4 and read_stats(run_dir)[-1]['Loss/D/loss']['num'] > 0
    snapshot_pkl = tl.find_latest_snapshot(str(run_dir))
    G_ema = latest_snapshot(run_dir)['G_ema']
    z = torch.from_numpy(np.random.RandomState(7).randn(1, G_ema.z_dim)).to(torch.float32)
    expected = {}
    for class_idx in range(num_classes):
        with torch.no_grad():
            img = G_ema(z, torch.eye(num_classes)[class_idx:class_idx + 1], noise_mode='const')
        expected[class_idx] = (img[0].permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()
    for class_idx in (1, 2):
        outdir = tmp_path / f'class{class_idx}'
        result = CliRunner().invoke(gen_images.main, [f'--network={snapshot_pkl}', '--seeds=7', f'--class={class_idx}',
                                                      f'--outdir={outdir}', '--device=cpu'])
        assert result.exit_code == 0, result.output
        rendered = np.asarray(PIL.Image.open(outdir / 'seed0007.png'))
        others = [k for k in range(num_classes) if k != class_idx]
        assert np.abs(rendered.astype(int) - expected[class_idx]).max() <= 1
        assert all(np.abs(rendered.astype(int) - expected[k]).max() > 1 for k in others)

#----------------------------------------------------------------------------
# --freezed=N (transfer learning from a pickle), --mirror=1.

@pytest.mark.parametrize('with_resume_state', [False, True])
def test_freezed_keeps_the_first_d_layers_of_the_resumed_weights(ada_run, tmp_path, with_resume_state):
    # Transfer learning from an official pickle (weights only) or from one of our snapshots of a run that froze
    # nothing: its optimizer state cannot continue, so it too loads weights only.
    pretrained = latest_snapshot(ada_run['run_dir'])
    if not with_resume_state:
        del pretrained[tl.RESUME_STATE_KEY]
    pretrained_pkl = tmp_path / 'pretrained.pkl'
    with open(pretrained_pkl, 'wb') as f:
        pickle.dump(pretrained, f)
    # D at 16x16: block b16 holds layers 0-3 (fromrgb, conv0, conv1, skip), b8 layers 4-6, then the epilogue.
    options = tiny_options(ada_run['options']['training_set_kwargs']['path'], tmp_path / 'run', total_ticks=1,
                           train_opts=dict(freezed=4, resume=str(pretrained_pkl)), network_snapshot_ticks=None,
                           image_snapshot_ticks=None)
    assert options['D_kwargs']['block_kwargs']['freeze_layers'] == 4
    state, log = run_quietly(**options)
    assert 'loading weights only' in log and state.cur_nimg == 4
    assert ('The snapshot froze the first 0 D layers, this run (--freezed) 4' in log) == with_resume_state
    trainable = {name for name, _ in state.D.named_parameters()}
    before, after = named_tensors(pretrained['D']), named_tensors(state.D)
    frozen = [f'b16.{layer}.{kind}' for layer in ('fromrgb', 'conv0', 'conv1') for kind in ('weight', 'bias')]
    frozen.append('b16.skip.weight')
    for key in frozen:
        assert key not in trainable and torch.equal(after[key], before[key]), key
    for key in ('b8.conv0.weight', 'b8.conv1.weight', 'b8.skip.weight', 'b4.fc.weight', 'b4.out.weight'):
        assert key in trainable and not torch.equal(after[key], before[key]), key


def test_mirror_sets_xflip_and_appends_a_mirrored_copy_of_every_image(shapes_dir):
    result = CliRunner().invoke(train.main, ['--outdir=unused', '--cfg=stylegan2', f'--data={shapes_dir}', '--gpus=1',
                                             '--batch=4', '--gamma=1', '--mirror=1', '--device=cpu', '--metrics=none',
                                             '-n'])
    assert result.exit_code == 0, result.output
    options = json.loads(result.output[result.output.index('{'):result.output.rindex('}') + 1])
    assert options['training_set_kwargs']['xflip'] is True
    mirrored = ImageFolderDataset(**{k: v for k, v in options['training_set_kwargs'].items() if k != 'class_name'})
    plain = ImageFolderDataset(shapes_dir)
    assert len(plain) == 24 and len(mirrored) == 48
    for idx in (0, 5, 23):
        original = plain[idx][0]
        assert np.array_equal(mirrored[idx][0], original)
        assert np.array_equal(mirrored[idx + 24][0], original[:, :, ::-1])
        assert not np.array_equal(original, original[:, :, ::-1])

#----------------------------------------------------------------------------

#----------------------------------------------------------------------------
# Resume: what a weights-only resume (fine-tuning from a pickle) and an exact resume do with the StyleGAN3-R blur
# and with the augmentation probability (issue 13).

def _resume_options(ada_run, tmp_path, with_resume_state, old_record=True, **train_opts):
    """Options resuming ada_run's last snapshot (p > 0, 36 images) for one tick; D's inputs blurred as -R does.
    old_record=False: the snapshot predates the resume state's record of --aug/--p; training_options.json has it."""
    snapshot = latest_snapshot(ada_run['run_dir'])
    assert float(snapshot['augment_pipe'].p) > 0
    if not with_resume_state:
        del snapshot[tl.RESUME_STATE_KEY]
    if not old_record:
        del snapshot[tl.RESUME_STATE_KEY]['augment']
        (tmp_path / 'training_options.json').write_text(json.dumps(ada_run['options']))
    pkl = tmp_path / 'pretrained.pkl'
    with open(pkl, 'wb') as f:
        pickle.dump(snapshot, f)
    options = tiny_options(ada_run['options']['training_set_kwargs']['path'], tmp_path / 'run', total_ticks=4,
                           train_opts=dict(train_opts, resume=str(pkl)), network_snapshot_ticks=None,
                           image_snapshot_ticks=None, abort_fn=lambda: True, ada_kimg=ADA_KIMG)
    options['loss_kwargs'].update(blur_init_sigma=10, blur_fade_kimg=1)
    return options, float(snapshot['augment_pipe'].p)


@pytest.mark.parametrize('with_resume_state', [False, True])
def test_weights_only_resume_switches_the_blur_off_and_exact_resume_keeps_it(ada_run, tmp_path, with_resume_state):
    options, _p = _resume_options(ada_run, tmp_path, with_resume_state, aug='ada', target=0)
    assert options['weights_only_resume_overrides']['loss_kwargs'] == dict(blur_init_sigma=0)
    state, log = run_quietly(**options)
    assert ('loading weights only' in log) != with_resume_state
    assert state.loss.blur_init_sigma == (10 if with_resume_state else 0)
    assert state.ada.ada_kimg == (ADA_KIMG if with_resume_state else 100)


@pytest.mark.parametrize('aug,p,expected_p', [('fixed', 0.3, 0.3), ('ada', 0.2, 0.0)])
def test_weights_only_resume_starts_p_at_the_option_not_at_the_pickles_p(ada_run, tmp_path, aug, p, expected_p):
    options, pickle_p = _resume_options(ada_run, tmp_path, False, aug=aug, p=p, target=0)
    _state, log = run_quietly(**options)
    assert pickle_p > 0 and 'loading weights only' in log
    # Tick 0 is one iteration, before ADA's first adjustment: the status line and stats show the starting p.
    assert read_stats(tmp_path / 'run')[0]['Progress/augment']['mean'] == pytest.approx(expected_p)


@pytest.mark.parametrize('old_record', [True, False])
def test_exact_resume_with_a_changed_aug_starts_at_the_new_p_and_says_so(ada_run, tmp_path, old_record):
    options, pickle_p = _resume_options(ada_run, tmp_path, True, old_record=old_record, aug='fixed', p=0.3)
    state, log = run_quietly(**options)
    assert 'Continuing exactly at 0.036 kimg' in log
    assert 'Augmentation changed since the snapshot (--aug=ada p=None -> --aug=fixed p=0.3)' in log
    assert pickle_p != 0.3 and float(state.augment_pipe.p) == pytest.approx(0.3) and state.ada is None
