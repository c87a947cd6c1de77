"""torch_utils/threads.py: thread counts, CPU loader workers, the starvation measure and the adaptive team."""

import time

import pytest
import torch

from torch_utils import threads


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    saved = torch.get_num_threads()
    yield
    torch.set_num_threads(saved)


def test_default_threads_respects_omp_num_threads_else_physical_cores(monkeypatch):
    monkeypatch.setenv('OMP_NUM_THREADS', '3')
    assert threads.default_threads() == 3
    monkeypatch.setenv('OMP_NUM_THREADS', 'many')  # Not a count: ignored.
    assert threads.default_threads() == threads.physical_cores_available()
    monkeypatch.delenv('OMP_NUM_THREADS')
    assert 1 <= threads.physical_cores_available() <= threads.available_cpus()


def test_cpu_ranks_of_one_run_share_the_cores(monkeypatch):
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    monkeypatch.setattr(threads, 'physical_cores_available', lambda: 8)
    assert [threads.default_threads(n) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    monkeypatch.setenv('OMP_NUM_THREADS', '3')  # The user's setting is per process, as for OpenMP itself.
    assert threads.default_threads(2) == 3


def test_set_threads_sets_torch_and_rejects_negative(monkeypatch):
    assert threads.set_threads(1) == 1 and torch.get_num_threads() == 1
    monkeypatch.setenv('OMP_NUM_THREADS', '2')
    assert threads.set_threads(0) == 2 and torch.get_num_threads() == 2
    with pytest.raises(ValueError, match='--threads=-1'):
        threads.set_threads(-1)


def test_cpu_loader_workers_leave_the_training_threads_their_cores(monkeypatch):
    monkeypatch.setattr(threads, 'available_cpus', lambda: 4)
    assert threads.cpu_loader_workers(3, threads=4, device_type='cpu') == 0
    assert threads.cpu_loader_workers(3, threads=2, device_type='cpu') == 2
    assert threads.cpu_loader_workers(1, threads=1, device_type='cpu') == 1
    assert threads.cpu_loader_workers(3, threads=4, device_type='cuda') == 3


def test_narrower_team_follows_the_share_of_time_it_ran():
    assert threads.narrower_team(8, 0.3) == 2
    assert threads.narrower_team(2, 0.9) == 1      # At least one fewer.
    assert threads.narrower_team(4, 0.01) == 1     # At least one.


def test_starvation_meter_sees_a_busy_thread_run_and_a_sleeping_one_not():
    meter = threads.StarvationMeter()
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:
        pass
    busy = meter.sample(1)
    time.sleep(0.3)
    idle = meter.sample(1)
    assert busy['cpu'] > 0.05 and idle['cpu'] < 0.05 < busy['cpu']
    assert idle['wait'] is None or idle['wait'] < 0.05   # Sleeping is not waiting for a core.
    assert not idle['starved'] or idle['wait'] is None


def test_controller_narrows_only_when_adaptive_and_starved(monkeypatch):
    starved = dict(cpu=0.3, wait=0.7, starved=True)
    fixed = threads.ThreadController(2)
    monkeypatch.setattr(fixed.meter, 'sample', lambda count: starved)
    text, _ = fixed.end_tick()
    assert 'starved' in text and fixed.count == 2 and torch.get_num_threads() == 2
    auto = threads.ThreadController(0)
    auto.count = 4
    monkeypatch.setattr(auto.meter, 'sample', lambda count: starved)
    text, _ = auto.end_tick()
    assert auto.count == 1 and torch.get_num_threads() == 1 and 'next tick 1' in text
    assert text.startswith('cpu 0.30 wait 0.70 threads 4 starved')


def test_controller_polls_windows_and_narrows_between_ticks(monkeypatch):
    auto = threads.ThreadController(0)
    auto.count = 2
    monkeypatch.setattr(auto.window, 'sample', lambda count: dict(cpu=0.6, wait=0.4, starved=True))
    auto.poll()                                   # The first window has not passed yet.
    assert auto.count == 2
    auto.window_start -= threads.ThreadController.ADAPT_WINDOW_SEC
    auto.poll()
    assert auto.count == 1 and torch.get_num_threads() == 1
    fixed = threads.ThreadController(2)
    fixed.window_start -= threads.ThreadController.ADAPT_WINDOW_SEC
    monkeypatch.setattr(fixed.window, 'sample', lambda count: dict(cpu=0.1, wait=0.9, starved=True))
    fixed.poll()
    assert fixed.count == 2
