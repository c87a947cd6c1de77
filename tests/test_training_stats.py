"""torch_utils.training_stats: report / Collector statistics against numpy, and the cross-rank reduction."""

import json
import os
import tempfile

import numpy as np
import pytest
import torch

from torch_utils import training_stats


@pytest.fixture(autouse=True)
def fresh_stats(monkeypatch):
    """Each test starts with no reported statistics and rank 0."""
    monkeypatch.setattr(training_stats, '_counters', dict())
    monkeypatch.setattr(training_stats, '_cumulative', dict())
    monkeypatch.setattr(training_stats, '_rank', 0)
    monkeypatch.setattr(training_stats, '_sync_device', None)

#----------------------------------------------------------------------------

def test_collector_mean_std_num_match_numpy():
    rng = np.random.RandomState(0)
    values = rng.randn(257) * 3.0 + 10.0
    collector = training_stats.Collector(regex='Loss/.*')
    training_stats.report('Loss/G/loss', torch.tensor(values[:100], dtype=torch.float32).reshape(10, 10))
    training_stats.report('Loss/G/loss', values[100:200])
    for value in values[200:]:
        training_stats.report('Loss/G/loss', float(value))
    collector.update()
    expected = values.astype(np.float32).astype(np.float64)
    expected[100:] = values[100:]  # Only the tensor part was float32.
    assert collector.num('Loss/G/loss') == 257
    assert collector.mean('Loss/G/loss') == pytest.approx(expected.mean(), rel=1e-12)
    assert collector.std('Loss/G/loss') == pytest.approx(expected.std(), rel=1e-9)
    assert collector['Loss/G/loss'] == collector.mean('Loss/G/loss')


def test_report_returns_its_input_and_empty_values_only_declare():
    loss = torch.tensor([1.0, 2.0])
    assert training_stats.report('Loss/D', loss) is loss
    assert training_stats.report('Timing/empty', []) == []
    collector = training_stats.Collector()
    assert collector.names() == ['Loss/D', 'Timing/empty']
    collector.update()
    assert collector.num('Timing/empty') == 0 and np.isnan(collector.mean('Timing/empty'))
    assert np.isnan(collector.std('Timing/empty'))


def test_collector_regex_and_intervals():
    loss_collector = training_stats.Collector(regex='Loss/.*')
    all_collector = training_stats.Collector()
    training_stats.report('Loss/a', [1.0, 3.0])
    training_stats.report('Progress/kimg', 4.0)
    loss_collector.update()
    assert loss_collector.names() == ['Loss/a'] and loss_collector.num('Progress/kimg') == 0
    training_stats.report('Loss/a', [10.0])
    loss_collector.update()
    assert loss_collector.mean('Loss/a') == 10.0 and loss_collector.std('Loss/a') == 0.0
    all_collector.update()  # Its interval spans everything since it was created.
    assert all_collector.num('Loss/a') == 3 and all_collector.mean('Loss/a') == pytest.approx(14.0 / 3)
    assert all_collector.as_dict() == {
        'Loss/a': {'num': 3, 'mean': pytest.approx(14.0 / 3), 'std': pytest.approx(np.std([1.0, 3.0, 10.0]))},
        'Progress/kimg': {'num': 1, 'mean': 4.0, 'std': 0.0},
    }


def test_keep_previous_controls_quiet_intervals():
    keep = training_stats.Collector(keep_previous=True)
    drop = training_stats.Collector(keep_previous=False)
    training_stats.report('Loss/a', [2.0, 4.0])
    keep.update()
    drop.update()
    keep.update()  # Nothing new reported.
    drop.update()
    assert keep.mean('Loss/a') == 3.0 and keep.num('Loss/a') == 2
    assert drop.num('Loss/a') == 0 and np.isnan(drop.mean('Loss/a'))


def test_report0_declares_but_does_not_count_on_other_ranks():
    training_stats.init_multiprocessing(rank=1, sync_device=None)
    collector = training_stats.Collector()
    assert training_stats.report0('Loss/rank0_only', 5.0) == 5.0
    collector.update()
    assert collector.names() == ['Loss/rank0_only'] and collector.num('Loss/rank0_only') == 0


def test_non_finite_values_show_in_mean():
    collector = training_stats.Collector()
    training_stats.report('Loss/nan', [1.0, float('nan')])
    collector.update()
    assert collector.num('Loss/nan') == 2 and np.isnan(collector.mean('Loss/nan'))

#----------------------------------------------------------------------------
# Two processes (gloo): statistics are summed over ranks.

_RANK_VALUES = {0: [1.0, 2.0, 3.0], 1: [10.0, 20.0]}


def _stats_worker(rank, init_file, result_dir):
    torch.distributed.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    try:
        training_stats.init_multiprocessing(rank=rank, sync_device=None)
        collector = training_stats.Collector(regex='Loss/.*')
        training_stats.report('Loss/shared', torch.tensor(_RANK_VALUES[rank]))
        if rank == 1:
            training_stats.report('Loss/rank1_only', [7.0])  # Rank 0 never declares it: the union must.
        training_stats.report0('Loss/from_rank0', 5.0)
        collector.update()
        with open(os.path.join(result_dir, f'rank{rank}.json'), 'w') as f:
            json.dump(collector.as_dict(), f)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.skipif('fork' not in torch.multiprocessing.get_all_start_methods(), reason='needs fork start method')
def test_collector_reduces_over_two_gloo_processes():
    with tempfile.TemporaryDirectory() as tmp:
        # fork: the children reuse this process's imports (spawn would re-import torch, ~10x slower).
        torch.multiprocessing.start_processes(_stats_worker, args=(os.path.join(tmp, 'init'), tmp), nprocs=2,
                                              start_method='fork')
        results = []
        for rank in range(2):
            with open(os.path.join(tmp, f'rank{rank}.json')) as f:
                results.append(json.load(f))
    all_values = _RANK_VALUES[0] + _RANK_VALUES[1]
    for result in results:  # Every rank sees the same global statistics.
        assert result['Loss/shared']['num'] == 5
        assert result['Loss/shared']['mean'] == pytest.approx(np.mean(all_values), rel=1e-12)
        assert result['Loss/shared']['std'] == pytest.approx(np.std(all_values), rel=1e-9)
        assert result['Loss/from_rank0'] == {'num': 1, 'mean': 5.0, 'std': 0.0}
        assert result['Loss/rank1_only'] == {'num': 1, 'mean': 7.0, 'std': 0.0}
