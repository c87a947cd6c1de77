"""Living with long runs: official Timing/* statistics, bounded snapshot disk use (--snap-keep, --snap-best, resume
state only in the newest snapshot) with exact resume, and --max-minutes counting the whole run."""

import os
import pickle
import re
import subprocess
import sys
import time

import pytest
import torch

from metrics import metric_main
from training import phase_timing
from training import snapshots
from training import training_loop as tl
from training_helpers import read_stats, run_quietly, tiny_options, write_shapes_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#----------------------------------------------------------------------------
# A 5-tick run with a snapshot at every tick, named by image count (tiny runs never reach 1 kimg), keeping 2
# snapshots and the best by a toy metric whose values are scripted.

TOY_VALUES = [5.0, 1.0, 4.0, 3.0, 2.0]     # Best (lowest) at the second snapshot, which --snap-keep=2 deletes.


def _name_by_nimg(cur_nimg):
    return f'network-snapshot-{cur_nimg:06d}.pkl'


@pytest.fixture(scope='module')
def shapes_dir(tmp_path_factory):
    return write_shapes_folder(tmp_path_factory.mktemp('shapes16'))


@pytest.fixture(scope='module')
def patched(request):
    """Snapshot names by image count and a registered toy metric returning TOY_VALUES in turn."""
    mp = pytest.MonkeyPatch()
    mp.setattr(tl, 'snapshot_name', _name_by_nimg)
    values = iter(TOY_VALUES * 4)

    def toy(opts):
        """Scripted values for the tests."""
        assert opts.G.img_resolution == 16
        return dict(toy=next(values))
    mp.setitem(metric_main._metric_dict, 'toy', toy)
    yield
    mp.undo()


@pytest.fixture(scope='module')
def kept_run(shapes_dir, tmp_path_factory, patched):
    run_dir = tmp_path_factory.mktemp('kept')
    options = tiny_options(shapes_dir, run_dir, total_ticks=5, image_snapshot_ticks=None, network_snapshot_ticks=1,
                           snap_keep=2, snap_best='toy', metrics=['toy'])
    state, log = run_quietly(**options)
    return dict(run_dir=str(run_dir), state=state, log=log, options=options)

#----------------------------------------------------------------------------
# Item 3: the official timing statistics.

def test_stats_jsonl_holds_every_official_timing_key(kept_run):
    stats = read_stats(kept_run['run_dir'])
    for key in ('Timing/total_sec', 'Timing/sec_per_tick', 'Timing/sec_per_kimg', 'Timing/maintenance_sec',
                'Timing/total_hours', 'Timing/total_days', 'Timing/Gmain', 'Timing/Greg', 'Timing/Dmain',
                'Timing/Dreg', 'Resources/cpu_mem_gb', 'Progress/tick', 'Progress/kimg', 'timestamp'):
        assert key in stats[-1], key
    last = stats[-1]
    assert last['Timing/total_hours']['mean'] == pytest.approx(last['Timing/total_sec']['mean'] / 3600, rel=1e-3)
    assert last['Timing/total_days']['mean'] == pytest.approx(last['Timing/total_sec']['mean'] / 86400, rel=1e-3)
    # Tick 1 is iterations 1-4 (batch_idx 1..4): Gmain and Dmain 4 runs each, Greg (every 4) once, Dreg (every 16)
    # not at all.
    assert stats[1]['Timing/Gmain']['num'] == 4 and stats[1]['Timing/Dmain']['num'] == 4
    assert stats[1]['Timing/Greg']['num'] == 1
    assert stats[0]['Timing/Dreg']['num'] == 1  # Iteration 0 runs every phase.
    tick_ms = stats[1]['Timing/sec_per_tick']['mean'] * 1e3
    phases_ms = sum(stats[1][f'Timing/{name}']['mean'] * stats[1][f'Timing/{name}']['num']
                    for name in ('Gmain', 'Greg', 'Dmain'))
    assert 0 < phases_ms < tick_ms


def test_phase_timer_reports_wall_milliseconds_per_run_on_cpu():
    timer = phase_timing.PhaseTimer('cpu')
    for _ in range(2):
        timer.start('Dmain')
        time.sleep(0.02)
        timer.stop('Dmain')
    timer.start('Gmain')
    timer.stop('Gmain')
    runs = timer.collect()
    assert len(runs['Dmain']) == 2 and all(19 <= ms < 200 for ms in runs['Dmain'])
    assert len(runs['Gmain']) == 1 and runs['Gmain'][0] < 19
    assert timer.collect() == {'Dmain': [], 'Gmain': []}  # Names stay declared once seen.

@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device (CUDA-event timing)')
def test_phase_timer_uses_cuda_events_on_a_gpu():
    timer = phase_timing.PhaseTimer('cuda')
    x = torch.randn([2048, 2048], device='cuda')
    timer.start('Gmain')
    for _ in range(20):
        x = x @ x / 2048
    timer.stop('Gmain')
    (ms,) = timer.collect()['Gmain']
    assert isinstance(timer.pending['Gmain'], list) and 0 < ms < 10000

#----------------------------------------------------------------------------
# Item 1: bounded disk.

def _snapshot_names(run_dir):
    return sorted(name for name in os.listdir(run_dir) if name.startswith('network-snapshot-'))


def _load(path):
    with open(path, 'rb') as f:
        return pickle.load(f)


def test_snap_keep_2_over_5_snapshots_leaves_2_plus_the_best(kept_run):
    # Ticks end at 4, 20, 36, 52, 68 images.
    assert _snapshot_names(kept_run['run_dir']) == ['network-snapshot-000052.pkl', 'network-snapshot-000068.pkl',
                                                    'network-snapshot-best-toy.pkl']
    assert 'Removed network-snapshot-000004.pkl (--snap-keep=2)' in kept_run['log']
    best_info = open(os.path.join(kept_run['run_dir'], 'best-toy.json')).read()
    assert '"snapshot": "network-snapshot-000020.pkl"' in best_info and '"value": 1.0' in best_info
    assert kept_run['log'].count('New best toy') == 2  # 5.0 at the first snapshot, then 1.0.


def test_only_the_newest_snapshot_carries_the_resume_state(kept_run):
    run_dir = kept_run['run_dir']
    newest = _load(os.path.join(run_dir, 'network-snapshot-000068.pkl'))
    older = _load(os.path.join(run_dir, 'network-snapshot-000052.pkl'))
    best = _load(os.path.join(run_dir, 'network-snapshot-best-toy.pkl'))
    assert newest[tl.RESUME_STATE_KEY]['cur_nimg'] == 68
    assert tl.RESUME_STATE_KEY not in older and tl.RESUME_STATE_KEY not in best
    for data in (older, best):
        assert {'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs'} <= set(data)
    assert os.path.getsize(os.path.join(run_dir, 'network-snapshot-000052.pkl')) \
        < 0.75 * os.path.getsize(os.path.join(run_dir, 'network-snapshot-000068.pkl'))


def test_resume_from_a_rotated_run_dir_is_bit_exact(kept_run, shapes_dir, tmp_path, patched):
    first_dir, second_dir = tmp_path / 'first', tmp_path / 'second'
    options = dict(kept_run['options'], metrics=[], snap_best=None)
    stop_after_tick_2 = iter([False, False, True])
    run_quietly(**dict(options, run_dir=str(first_dir), snap_keep=1, abort_fn=lambda: next(stop_after_tick_2)))
    assert _snapshot_names(first_dir) == ['network-snapshot-000036.pkl']
    _state, log = run_quietly(**dict(options, run_dir=str(second_dir), resume_pkl=str(first_dir)))
    assert 'Continuing exactly at 0.036 kimg, tick 3' in log
    ref = _load(os.path.join(kept_run['run_dir'], 'network-snapshot-000068.pkl'))
    resumed = _load(os.path.join(second_dir, 'network-snapshot-000068.pkl'))
    for name in ('G', 'D', 'G_ema'):
        ref_tensors = dict(ref[name].named_parameters()) | dict(ref[name].named_buffers())
        for key, value in list(resumed[name].named_parameters()) + list(resumed[name].named_buffers()):
            assert torch.equal(value, ref_tensors[key]), f'{name}.{key}'


def test_snap_best_direction_and_metric_lookup():
    assert snapshots.parse_snap_best('fid50k_full') == ('fid50k_full', False)
    assert snapshots.parse_snap_best('pr50k3_full_precision') == ('pr50k3_full_precision', True)
    assert snapshots.parse_snap_best('is50k_mean') == ('is50k_mean', True)
    assert snapshots.parse_snap_best('eqt50k_int') == ('eqt50k_int', True)
    assert snapshots.parse_snap_best('mine:max') == ('mine', True)
    with pytest.raises(ValueError, match='--snap-best=fid:best'):
        snapshots.parse_snap_best('fid:best')
    assert snapshots.snap_best_metric_name('pr50k3_full_recall', ['fid50k_full', 'pr50k3_full']) == 'pr50k3_full'
    assert snapshots.snap_best_metric_name('kid50k_full', ['fid50k_full']) is None


def test_train_cli_refuses_snap_best_of_a_metric_not_computed():
    import train
    info = dict(name='x', resolution=16, size=10, has_labels=False)
    with pytest.raises(train.UsageError, match='--snap-best=kid50k_full: no metric of --metrics=fid50k_full'):
        train.build_training_options(info, cfg='stylegan2', data='x', gpus=1, batch=4, gamma=1,
                                     metrics=['fid50k_full'], snap_best='kid50k_full')
    options = train.build_training_options(info, cfg='stylegan2', data='x', gpus=1, batch=4, gamma=1,
                                           metrics=['fid50k_full'], snap_best='fid50k_full', snap_keep=3)
    assert options['snap_best'] == 'fid50k_full' and options['snap_keep'] == 3
    assert 'snap_keep' not in train.build_training_options(info, cfg='stylegan2', data='x', gpus=1, batch=4, gamma=1)

#----------------------------------------------------------------------------
# Item 2: --max-minutes counts the whole run.

def test_max_minutes_0_2_run_ends_within_its_limit_plus_20_percent(shapes_dir, tmp_path):
    args = [sys.executable, 'train.py', f'--outdir={tmp_path}', '--cfg=stylegan2', f'--data={shapes_dir}', '--gpus=1',
            '--batch=4', '--gamma=1', '--cbase=256', '--cmax=32', '--map-depth=2', '--mbstd-group=2', '--aug=noaug',
            '--metrics=none', '--kimg=1000', '--tick=1', '--snap=1', '--workers=0', '--fp32=1', '--device=cpu',
            '--max-minutes=0.2']
    start = time.time()
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS='1'))
    wall_sec = time.time() - start
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'Stopping: --max-minutes=0.2 reached.' in result.stdout
    time_line = next(line for line in result.stdout.splitlines() if line.startswith('Time so far: '))
    setup_sec = float(time_line.split()[3])
    run_dir = tmp_path / os.listdir(tmp_path)[0]
    # A final snapshot follows the stop; its name holds the kimg reached, which depends on the machine's speed.
    after_stop = result.stdout.split('Stopping: --max-minutes=0.2 reached.')[1]
    final_names = re.findall(r'Saved (network-snapshot-\d{6}\.pkl)', after_stop)
    saved_names = re.findall(r'Saved (network-snapshot-\d{6}\.pkl)', result.stdout)
    assert len(final_names) == 1 and final_names[0] in _snapshot_names(run_dir)
    assert _snapshot_names(run_dir) == sorted(set(saved_names))
    if setup_sec > 10:  # Start-up alone (imports, networks) used the budget: nothing the time limit can fix.
        pytest.skip(f'machine too loaded for a 12 s budget: start-up took {setup_sec:.1f} s')
    assert wall_sec <= 0.2 * 60 * 1.2, f'{wall_sec:.1f} s; {time_line}'


def test_time_budget_stops_early_enough_for_the_final_snapshot_and_grid():
    from training.time_budget import TimeBudget
    budget = TimeBudget(max_minutes=1, run_start_time=1000.0)
    budget.note_cost('snapshot', 5.0)
    budget.note_cost('grid', 3.0)
    budget.last_check = 1000.0
    for now in (1001.0, 1002.0, 1003.0):     # 1 s per iteration.
        budget.note_iteration(now)
    # Deadline 1060: an iteration (1) + snapshot (5) + grid (3) + exit (1) must fit.
    assert not budget.time_is_up(with_grid=True, now=1049.9)
    assert budget.time_is_up(with_grid=True, now=1050.0)
    assert not budget.time_is_up(with_grid=False, now=1052.9)
    assert budget.fits('grid', reserve_sec=5.0, now=1051.0) and not budget.fits('grid', reserve_sec=5.0, now=1051.5)
    assert not budget.fits('metrics', now=1000.0)  # Unknown cost never fits.
    assert TimeBudget(max_minutes=None).fits('metrics') and not TimeBudget(max_minutes=None).time_is_up(True)
