"""torch_utils/threads.py: thread counts, CPU loader workers, the starvation measure and the adaptive team."""

import os
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


def _calm_controller(monkeypatch, count, ceiling, idle_cpus):
    """An adaptive controller at `count` threads (started at `ceiling`) whose windows are calm, with the machine
    showing `idle_cpus` idle CPUs; returns (controller, advance) where advance() ends one window and polls."""
    auto = threads.ThreadController(0)
    auto.ceiling, auto.count = ceiling, count
    monkeypatch.setattr(auto.window, 'sample', lambda n: dict(cpu=1.0, wait=0.0, starved=False))
    monkeypatch.setattr(auto.idle, 'sample', lambda: idle_cpus)

    def advance():
        auto.window_start -= threads.ThreadController.ADAPT_WINDOW_SEC
        auto.poll()
    return auto, advance


def test_controller_widens_after_calm_windows_with_an_idle_cpu_up_to_where_it_started(monkeypatch):
    auto, advance = _calm_controller(monkeypatch, count=1, ceiling=3, idle_cpus=1.5)
    for _ in range(threads.ThreadController.WIDEN_AFTER_WINDOWS - 1):
        advance()
    assert auto.count == 1                      # Not after fewer calm windows than that.
    advance()
    assert auto.count == 2 and torch.get_num_threads() == 2
    for _ in range(5 * threads.ThreadController.WIDEN_AFTER_WINDOWS):
        advance()
    assert auto.count == 3 and torch.get_num_threads() == 3   # The ceiling: the team it started with.


@pytest.mark.parametrize('idle_cpus', [0.3, None])
def test_controller_does_not_widen_without_an_idle_cpu(monkeypatch, idle_cpus):
    auto, advance = _calm_controller(monkeypatch, count=1, ceiling=2, idle_cpus=idle_cpus)
    for _ in range(4 * threads.ThreadController.WIDEN_AFTER_WINDOWS):
        advance()
    assert auto.count == 1
    fixed = threads.ThreadController(1)         # A fixed --threads=N never changes, calm or not.
    fixed.ceiling = 4
    fixed.window_start -= 100
    fixed.poll()
    assert fixed.count == 1


def test_a_widening_starved_at_once_doubles_the_wait_for_the_next(monkeypatch):
    auto, advance = _calm_controller(monkeypatch, count=1, ceiling=2, idle_cpus=1.0)
    for _ in range(threads.ThreadController.WIDEN_AFTER_WINDOWS):
        advance()
    assert auto.count == 2
    monkeypatch.setattr(auto.window, 'sample', lambda n: dict(cpu=0.5, wait=0.5, starved=True))
    advance()                                   # The CPU that looked idle was not ours (e.g. a CPU quota).
    assert auto.count == 1 and auto.widen_after == 2 * threads.ThreadController.WIDEN_AFTER_WINDOWS
    monkeypatch.setattr(auto.window, 'sample', lambda n: dict(cpu=1.0, wait=0.0, starved=False))
    for _ in range(threads.ThreadController.WIDEN_AFTER_WINDOWS):
        advance()
    assert auto.count == 1                      # Backed off: needs twice the calm windows now.
    for _ in range(threads.ThreadController.WIDEN_AFTER_WINDOWS):
        advance()
    assert auto.count == 2


@pytest.mark.skipif(not os.path.exists('/proc/stat'), reason='the machine idle meter reads Linux /proc/stat')
def test_idle_meter_counts_idle_cpus_of_the_machine():
    meter = threads.IdleMeter()
    time.sleep(0.3)
    idle = meter.sample()
    assert idle is not None and -0.05 <= idle <= os.cpu_count() + 0.5   # Idle CPUs, not seconds.
