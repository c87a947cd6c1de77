"""Training loop: a tiny CPU run writes its files and learns; a run stopped at a tick and resumed matches the
uninterrupted run bit for bit; the small steps (lazy regularisation, G_ema, gradient averaging, RNG state,
resume checks) against direct computations."""

import json
import os
import pickle

import numpy as np
import PIL.Image
import pytest
import torch

import train
from training import training_loop as tl
from training.shapes_dataset import render_shape_image
from training_helpers import latest_snapshot, read_stats, run_quietly, tiny_options, write_shapes_folder

#----------------------------------------------------------------------------
# Fixtures: a 16x16 dataset and the options train.py builds for a tiny StyleGAN2 (tests/training_helpers.py).

@pytest.fixture(scope='module')
def shapes_dir(tmp_path_factory):
    return write_shapes_folder(tmp_path_factory.mktemp('shapes16'))


@pytest.fixture(scope='module')
def reference_run(shapes_dir, tmp_path_factory):
    """4 ticks (13 iterations) without interruption, a snapshot at every tick."""
    run_dir = tmp_path_factory.mktemp('reference')
    options = tiny_options(shapes_dir, run_dir, total_ticks=4, image_snapshot_ticks=1, network_snapshot_ticks=1)
    state, log = run_quietly(**options)
    return dict(run_dir=str(run_dir), state=state, log=log, options=options)

#----------------------------------------------------------------------------
# A whole run.

def test_tiny_run_writes_every_run_dir_file(reference_run):
    names = set(os.listdir(reference_run['run_dir']))
    assert {'stats.jsonl', 'reals.png', 'fakes_init.png', 'fakes000000.png', 'network-snapshot-000000.pkl'} <= names
    assert any(name.startswith('events.out.tfevents') for name in names)
    assert not any('.tmp' in name for name in names)
    status_lines = [line for line in reference_run['log'].splitlines() if line.startswith('tick ')]
    assert len(status_lines) == 4
    for field in ('kimg', 'time', 'sec/tick', 'sec/kimg', 'maintenance', 'cpumem', 'gpumem', 'reserved', 'augment',
                  'eta'):
        assert f' {field} ' in status_lines[-1]
    assert PIL.Image.open(os.path.join(reference_run['run_dir'], 'fakes000000.png')).size == (32, 32)


def test_snapshot_holds_official_keys_cpu_eval_modules_and_resume_state(reference_run):
    data = latest_snapshot(reference_run['run_dir'])
    assert {'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs', tl.RESUME_STATE_KEY} <= set(data)
    for name in ('G', 'D', 'G_ema'):
        assert not data[name].training
        assert all(not p.requires_grad and p.device.type == 'cpu' for p in data[name].parameters())
    resume_state = data[tl.RESUME_STATE_KEY]
    assert resume_state['cur_nimg'] == 52 and resume_state['cur_tick'] == 4 and resume_state['batch_idx'] == 13
    assert set(resume_state['optimizers']) == {'G', 'D'}
    assert float(resume_state['ranks'][0]['loss']['pl_mean']) > 0  # Greg ran at iterations 0, 4, 8, 12.


def test_tiny_run_loss_statistics_move_and_fakes_change(reference_run):
    stats = read_stats(reference_run['run_dir'])
    assert len(stats) == 4
    for name in ('Loss/G/loss', 'Loss/D/loss', 'Loss/scores/real', 'Loss/scores/fake', 'Loss/signs/real',
                 'Loss/r1_penalty', 'Loss/D/reg', 'Loss/pl_penalty', 'Loss/G/reg'):
        assert name in stats[-1], name
    g_losses = [tick['Loss/G/loss']['mean'] for tick in stats]
    assert all(np.isfinite(g_losses)) and len(set(g_losses)) == len(g_losses)
    assert stats[1]['Loss/G/loss']['num'] == 16  # 4 iterations x 4 images in tick 1.
    run_dir = reference_run['run_dir']
    init = np.asarray(PIL.Image.open(os.path.join(run_dir, 'fakes_init.png')), dtype=np.float32)
    final = np.asarray(PIL.Image.open(os.path.join(run_dir, 'fakes000000.png')), dtype=np.float32)
    assert np.abs(final - init).mean() > 1


def test_resume_from_tick_2_matches_uninterrupted_run_bit_exactly(reference_run, shapes_dir, tmp_path):
    first_dir, second_dir = tmp_path / 'first', tmp_path / 'second'
    options = dict(reference_run['options'])
    stop_after_tick_1 = iter([False, True])  # abort_fn is asked at the end of ticks 0 and 1.
    run_quietly(**dict(options, run_dir=str(first_dir), abort_fn=lambda: next(stop_after_tick_1)))
    state, log = run_quietly(**dict(options, run_dir=str(second_dir), resume_pkl=str(first_dir)))
    assert 'Continuing exactly at 0.02 kimg, tick 2' in log
    ref = latest_snapshot(reference_run['run_dir'])
    resumed = latest_snapshot(second_dir)
    for name in ('G', 'D', 'G_ema'):
        ref_tensors = dict(ref[name].named_parameters()) | dict(ref[name].named_buffers())
        for key, value in list(resumed[name].named_parameters()) + list(resumed[name].named_buffers()):
            assert torch.equal(value, ref_tensors[key]), f'{name}.{key}'
    ref_state, resumed_state = ref[tl.RESUME_STATE_KEY], resumed[tl.RESUME_STATE_KEY]
    assert torch.equal(ref_state['ranks'][0]['loss']['pl_mean'], resumed_state['ranks'][0]['loss']['pl_mean'])
    assert torch.equal(ref_state['optimizers']['G']['state'][0]['exp_avg_sq'],
                       resumed_state['optimizers']['G']['state'][0]['exp_avg_sq'])
    ref_stats, resumed_stats = read_stats(reference_run['run_dir']), read_stats(second_dir)
    assert len(resumed_stats) == 2
    for ref_tick, resumed_tick in zip(ref_stats[2:], resumed_stats):
        # Statistics not reported in a tick repeat their previous value (Collector keep_previous), which a
        # resumed process has not seen: compare what was reported.
        reported = [k for k in resumed_tick if k.startswith('Loss/') and resumed_tick[k]['num'] > 0]
        assert {'Loss/G/loss', 'Loss/D/loss', 'Loss/pl_penalty'} <= set(reported)
        for key in reported:  # mean/std come from differences of running float64 sums (E[x^2] - E[x]^2 for std).
            assert ref_tick[key]['num'] == resumed_tick[key]['num'], key
            assert ref_tick[key]['mean'] == pytest.approx(resumed_tick[key]['mean'], rel=1e-12, abs=1e-15), key
            assert ref_tick[key]['std'] == pytest.approx(resumed_tick[key]['std'], rel=1e-9, abs=1e-12), key


def test_resume_from_pickle_without_resume_state_loads_weights_only(reference_run, tmp_path):
    data = latest_snapshot(reference_run['run_dir'])
    del data[tl.RESUME_STATE_KEY]
    official_like = tmp_path / 'official.pkl'
    with open(official_like, 'wb') as f:
        pickle.dump(data, f)
    stop_at_tick_0 = lambda: True  # noqa: E731
    run_dir = tmp_path / 'run'
    state, log = run_quietly(**dict(reference_run['options'], run_dir=str(run_dir), resume_pkl=str(official_like),
                                    abort_fn=stop_at_tick_0, network_snapshot_ticks=None,
                                    weights_only_resume_overrides=train.WEIGHTS_ONLY_RESUME_OVERRIDES))
    assert 'loading weights only' in log
    assert "Weights-only resume: {'ada_kimg': 100, 'ema_rampup': None, 'loss_kwargs': {'blur_init_sigma': 0}}" in log
    assert state.cur_nimg == 4  # The counter starts again from zero.

def test_conditional_run_feeds_labels_and_shows_one_class_per_grid_row(tmp_path):
    data_dir = tmp_path / 'labelled'
    data_dir.mkdir()
    labels = []
    for idx in range(12):
        image, label = render_shape_image(idx, 16)
        PIL.Image.fromarray(image).save(data_dir / f'img{idx:08d}.png')
        labels.append([f'img{idx:08d}.png', label])
    (data_dir / 'dataset.json').write_text(json.dumps({'labels': labels}))
    options = tiny_options(str(data_dir), tmp_path / 'run', total_ticks=2, image_grid_size=[3, 4],
                           network_snapshot_ticks=1)
    options['training_set_kwargs'].update(use_labels=True, max_size=12)
    state, _log = run_quietly(**options)
    assert state.G.c_dim == 4 and state.D.c_dim == 4
    from training.dataset import ImageFolderDataset
    (gw, gh), _images, grid_labels = tl.setup_image_grid(ImageFolderDataset(str(data_dir), use_labels=True), 0,
                                                         (3, 4))
    rows = grid_labels.reshape(gh, gw, 4).argmax(axis=2)
    assert (rows == rows[:, :1]).all() and len(set(rows[:, 0])) == len({label for _name, label in labels})
    assert latest_snapshot(tmp_path / 'run')['G_ema'].c_dim == 4

#----------------------------------------------------------------------------
# Resume checks.

def test_max_minutes_stops_at_the_first_tick_with_a_final_snapshot(shapes_dir, tmp_path):
    run_dir = tmp_path / 'timed'
    options = tiny_options(shapes_dir, run_dir, total_ticks=50, image_snapshot_ticks=10,
                           network_snapshot_ticks=10, max_minutes=0)
    state, log = run_quietly(**options)
    assert 'Stopping: --max-minutes=0 reached.' in log
    assert state.cur_tick == 1 and state.cur_nimg == 4  # Tick 0 is one iteration of batch 4.
    snapshots = sorted(name for name in os.listdir(run_dir) if name.startswith('network-snapshot-'))
    assert snapshots == ['network-snapshot-000000.pkl']
    assert '--max-minutes: left out fakes000000.png' in log  # No time left for it: the snapshot comes first.
    assert not os.path.isfile(run_dir / 'fakes000000.png')


def _tiny_networks(cbase=256, cmax=32, map_depth=2, resolution=16):
    from training.networks_stylegan2 import Discriminator, Generator
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=resolution, img_channels=3,
                  mapping_kwargs=dict(num_layers=map_depth), channel_base=cbase, channel_max=cmax)
    D = Discriminator(c_dim=0, img_resolution=resolution, img_channels=3, channel_base=cbase, channel_max=cmax)
    return G, D


def test_resume_config_mismatch_error_lists_every_difference():
    G_old, D_old = _tiny_networks()
    G_new, D_new = _tiny_networks(cmax=16, map_depth=3)
    with pytest.raises(ValueError) as excinfo:
        tl.check_resume_compatible('old.pkl', dict(G=G_old, D=D_old, G_ema=G_old), G_new, D_new)
    message = str(excinfo.value)
    assert 'old.pkl' in message
    assert 'G cmax: pickle 32, run 16' in message and 'D cmax: pickle 32, run 16' in message
    assert 'G map depth: pickle 2, run 3' in message
    tl.check_resume_compatible('same.pkl', dict(G=G_old, D=D_old, G_ema=G_old), *_tiny_networks())


def test_resume_resolution_mismatch_is_named():
    G_old, D_old = _tiny_networks(resolution=32)
    with pytest.raises(ValueError, match='G resolution: pickle 32, run 16'):
        tl.check_resume_compatible('old.pkl', dict(G=G_old, D=D_old, G_ema=G_old), *_tiny_networks())


def test_find_latest_snapshot_picks_the_highest_kimg(tmp_path):
    run_dir, empty_dir = tmp_path / 'run', tmp_path / 'empty'
    run_dir.mkdir()
    empty_dir.mkdir()
    for kimg in (0, 40, 120, 80):
        (run_dir / f'network-snapshot-{kimg:06d}.pkl').write_bytes(b'')
    assert tl.find_latest_snapshot(str(run_dir)) == str(run_dir / 'network-snapshot-000120.pkl')
    assert tl.find_latest_snapshot(str(run_dir / 'network-snapshot-000040.pkl')).endswith('000040.pkl')
    with pytest.raises(FileNotFoundError, match='holds no network-snapshot'):
        tl.find_latest_snapshot(str(empty_dir))
    with pytest.raises(FileNotFoundError, match='neither a snapshot file nor a run directory'):
        tl.find_latest_snapshot(str(tmp_path / 'nothing-here'))

#----------------------------------------------------------------------------
# The small steps.

def test_lazy_regularisation_scales_lr_and_betas_by_k_over_k_plus_1():
    G, D = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    opt_kwargs = dict(class_name='torch.optim.Adam', lr=0.002, betas=[0, 0.99], eps=1e-8)
    phases, optimizers = tl.build_phases(G, D, opt_kwargs, opt_kwargs, G_reg_interval=4, D_reg_interval=16)
    assert [(p.name, p.interval) for p in phases] == [('Gmain', 1), ('Greg', 4), ('Dmain', 1), ('Dreg', 16)]
    assert optimizers['G'].param_groups[0]['lr'] == pytest.approx(0.002 * 4 / 5)
    assert optimizers['G'].param_groups[0]['betas'] == pytest.approx((0, 0.99 ** (4 / 5)))
    assert optimizers['D'].param_groups[0]['lr'] == pytest.approx(0.002 * 16 / 17)
    assert optimizers['D'].param_groups[0]['eps'] == 1e-8
    phases, _ = tl.build_phases(G, D, opt_kwargs, opt_kwargs, G_reg_interval=None, D_reg_interval=16)
    assert phases[0].name == 'Gboth' and phases[0].opt.param_groups[0]['lr'] == 0.002


def test_adam_on_cpu_takes_the_fused_kernel_and_steps_like_the_plain_loop():
    torch.manual_seed(0)
    G, D = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
    opt_kwargs = dict(class_name='torch.optim.Adam', lr=0.01, betas=[0, 0.99], eps=1e-8)
    _, optimizers = tl.build_phases(G, D, opt_kwargs, opt_kwargs, G_reg_interval=4, D_reg_interval=None)
    assert optimizers['G'].defaults['fused'] and optimizers['D'].defaults['fused']
    chosen = dict(opt_kwargs, foreach=False)  # An implementation the user chose is kept.
    _, kept = tl.build_phases(G, D, chosen, chosen, G_reg_interval=None, D_reg_interval=None)
    assert not kept['G'].defaults.get('fused')
    # Same update as the per-tensor loop (official): three steps on the same gradients.
    plain_G = torch.nn.Linear(5, 3)
    plain_G.load_state_dict(G.state_dict())
    plain_opt = torch.optim.Adam(plain_G.parameters(), lr=0.01 * 4 / 5, betas=(0.0, 0.99 ** (4 / 5)), eps=1e-8,
                                 foreach=False)
    for step in range(3):
        grads = [torch.randn_like(p) for p in G.parameters()]
        for module, opt in [(G, optimizers['G']), (plain_G, plain_opt)]:
            for p, g in zip(module.parameters(), grads):
                p.grad = g.clone()
            opt.step()
    for fused, plain in zip(G.parameters(), plain_G.parameters()):
        torch.testing.assert_close(fused, plain, rtol=1e-6, atol=1e-7)
    assert not torch.equal(G.weight, torch.nn.Linear(5, 3).weight)


def test_G_ema_update_uses_half_life_with_rampup():
    G, G_ema = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)
    w, w_ema = G.weight.detach().clone(), G_ema.weight.detach().clone()
    tl.update_G_ema(G, G_ema, cur_nimg=1000, batch_size=32, ema_kimg=10, ema_rampup=0.05)
    beta = 0.5 ** (32 / (1000 * 0.05))  # Ramp-up: half-life min(10000, 50) images.
    torch.testing.assert_close(G_ema.weight, w_ema * beta + w * (1 - beta))
    w_ema = G_ema.weight.detach().clone()
    tl.update_G_ema(G, G_ema, cur_nimg=1000, batch_size=32, ema_kimg=10, ema_rampup=None)
    beta = 0.5 ** (32 / 10000)
    torch.testing.assert_close(G_ema.weight, w_ema * beta + w * (1 - beta))


def test_average_gradients_replaces_and_counts_nonfinite_entries():
    module = torch.nn.Linear(2, 2)
    module.weight.grad = torch.tensor([[1.0, float('nan')], [float('inf'), -float('inf')]])
    module.bias.grad = torch.tensor([0.5, 2.0])
    assert tl.average_gradients(module, num_gpus=1) == 3
    assert module.weight.grad.tolist() == [[1.0, 0.0], [1e5, -1e5]]
    assert module.bias.grad.tolist() == [0.5, 2.0]


def test_rng_state_capture_and_restore_replays_every_generator():
    device = torch.device('cpu')
    state = tl.capture_rng_state(device)
    first = (torch.randn(3), np.random.rand(3), [np.random.randint(10) for _ in range(3)],
             __import__('random').random())
    state = pickle.loads(pickle.dumps(state))
    tl.restore_rng_state(state, device)
    second = (torch.randn(3), np.random.rand(3), [np.random.randint(10) for _ in range(3)],
              __import__('random').random())
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert first[2] == second[2] and first[3] == second[3]


def test_save_image_grid_lays_out_rows_and_columns(tmp_path):
    images = np.zeros([6, 3, 2, 2], dtype=np.float32)
    for idx in range(6):
        images[idx] = idx * 40
    tl.save_image_grid(images, str(tmp_path / 'grid.png'), drange=[0, 255], grid_size=(3, 2))
    pixels = np.asarray(PIL.Image.open(tmp_path / 'grid.png'))
    assert pixels.shape == (4, 6, 3)
    assert pixels[0, 0, 0] == 0 and pixels[0, 2, 0] == 40 and pixels[2, 0, 0] == 120 and pixels[3, 5, 0] == 200


def test_cpu_mem_reading_comes_from_psutil(monkeypatch):
    import psutil

    class FakeProcess:
        def memory_info(self):
            return type('mem', (), dict(rss=3 * 2**30))()

    real_gb = tl._cpu_mem_gb()
    assert 0.01 < real_gb < 64  # This test process: tens of MiB to a few GiB.
    monkeypatch.setattr(psutil, 'Process', FakeProcess)
    assert tl._cpu_mem_gb() == 3.0
