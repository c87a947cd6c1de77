"""CPU thread counts for the command-line tools, and a measure of CPU starvation for the status line.

On a machine whose cores other processes also use, an OpenMP team as wide as the machine waits at every barrier
for its slowest thread, which the scheduler has just preempted: a tiny CPU run took 14.6 minutes with the default
threads and 74 s with OMP_NUM_THREADS=1 (issue 15). So: the thread count is an explicit choice (`--threads`),
DataLoader worker processes on a CPU get only the cores the training threads leave free, and the training loop
shows when its threads get far less CPU time than wall time (`starved`), narrows the team then and widens it
again when the load has gone.
"""

import os
import time

import torch

STARVED_BELOW = 0.5     # CPU seconds per wall second per thread below this = starved (where the wait is unknown).
STARVED_WAIT = 0.25     # Seconds waiting for a core per wall second per thread at or above this = starved.

#----------------------------------------------------------------------------

def available_cpus():
    """Logical CPUs this process may run on (its affinity mask; os.cpu_count() where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def physical_cores_available():
    """Physical cores among the CPUs this process may run on: the affinity count divided by the SMT width."""
    logical = available_cpus()
    try:
        import psutil
        per_core = max(1, (psutil.cpu_count(logical=True) or 1) // (psutil.cpu_count(logical=False) or 1))
    except ImportError:
        per_core = 1
    return max(1, logical // per_core)


def default_threads(processes_per_machine=1):
    """OMP_NUM_THREADS when set (a valid positive integer), else the physical cores available to the process,
    shared evenly by `processes_per_machine` processes (e.g. CPU ranks of one run; at least 1 each)."""
    value = os.environ.get('OMP_NUM_THREADS', '').strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return max(1, physical_cores_available() // max(1, processes_per_machine))


def set_threads(threads=None, processes_per_machine=1):
    """Set torch's intra-op thread count: `threads` (>= 1) or default_threads(processes_per_machine) for None/0.
    Returns the count."""
    if threads is not None and threads < 0:
        raise ValueError(f'--threads={threads}: must be >= 1 (0 = automatic)')
    count = int(threads) if threads else default_threads(processes_per_machine)
    torch.set_num_threads(count)
    return count


def cpu_loader_workers(requested, threads, device_type):
    """DataLoader worker processes: on a CPU device at most the CPUs the `threads` training threads leave free
    (0 = load in the training process), since each worker competes with them; elsewhere `requested`."""
    if device_type != 'cpu':
        return requested
    return max(0, min(requested, available_cpus() - threads))

#----------------------------------------------------------------------------

def _runqueue_wait_seconds():
    """Seconds all threads of this process spent runnable but waiting for a core (Linux schedstat), or None."""
    try:
        total_ns = 0
        for task in os.listdir('/proc/self/task'):
            with open(f'/proc/self/task/{task}/schedstat', encoding='ascii') as file:
                total_ns += int(file.read().split()[1])
        return total_ns / 1e9
    except (OSError, ValueError, IndexError):
        return None


class StarvationMeter:
    """Between calls of sample(): CPU seconds this process got, and seconds its threads waited for a core (Linux),
    each per wall second and per thread. A team that waits a quarter of the time or more is starved (other
    processes hold the cores); where the wait is unknown, CPU time below half of the wall time per thread is."""

    def __init__(self):
        self._last = self._now()

    @staticmethod
    def _now():
        return time.perf_counter(), time.process_time(), _runqueue_wait_seconds()

    def sample(self, threads):
        """dict(cpu, wait (None where unknown), starved) per thread since the previous call; resets the interval."""
        now = self._now()
        wall = max((now[0] - self._last[0]) * max(threads, 1), 1e-9)
        cpu = (now[1] - self._last[1]) / wall
        wait = None if now[2] is None or self._last[2] is None else (now[2] - self._last[2]) / wall
        self._last = now
        starved = wait >= STARVED_WAIT if wait is not None else cpu < STARVED_BELOW
        return dict(cpu=cpu, wait=wait, starved=starved)


def _machine_idle_seconds():
    """Idle CPU-seconds of the whole machine since boot, summed over its CPUs (Linux /proc/stat), or None."""
    try:
        with open('/proc/stat', encoding='ascii') as file:
            fields = file.readline().split()
        if fields[0] != 'cpu':
            return None
        return (int(fields[4]) + int(fields[5])) / os.sysconf('SC_CLK_TCK')  # idle + iowait
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class IdleMeter:
    """Between calls of sample(): the machine's idle CPUs (idle CPU-seconds per wall second; None where unknown)."""

    def __init__(self):
        self._last = (time.perf_counter(), _machine_idle_seconds())

    def sample(self):
        now = (time.perf_counter(), _machine_idle_seconds())
        last, self._last = self._last, now
        if now[1] is None or last[1] is None:
            return None
        return (now[1] - last[1]) / max(now[0] - last[0], 1e-9)


class ThreadController:
    """The training loop's thread policy: threads=None leaves torch's setting alone, N > 0 uses exactly N, 0 starts
    at default_threads() and adapts between iterations (poll(), every ADAPT_WINDOW_SEC) and at the end of ticks:
    a starved window or tick narrows the team (to the CPU time it got, at least one fewer); WIDEN_AFTER_WINDOWS calm
    windows in a row, each with at least IDLE_CPUS_TO_WIDEN of the machine's CPUs idle, widen it by one thread, up
    to where it started. So a load that came and went (a test, a compile, a second job that ended) costs its
    duration, not the rest of the run; a widening that is starved at once doubles the calm windows the next one
    needs, so a machine whose idle CPUs are not ours to use (a CPU quota) is probed ever more rarely."""

    ADAPT_WINDOW_SEC = 3.0
    WIDEN_AFTER_WINDOWS = 3
    IDLE_CPUS_TO_WIDEN = 0.8

    def __init__(self, threads=None, processes_per_machine=1):
        self.adaptive = threads == 0
        self.count = torch.get_num_threads() if threads is None else set_threads(threads, processes_per_machine)
        self.ceiling = self.count               # Never wider than the team it started with.
        self.meter = StarvationMeter()          # Per tick, for the status line.
        self.window = StarvationMeter()         # Per adaptation window.
        self.idle = IdleMeter()                 # The machine's idle CPUs per adaptation window.
        self.window_start = time.perf_counter()
        self.calm_windows = 0
        self.widen_after = self.WIDEN_AFTER_WINDOWS
        self.last_widened = None                # perf_counter() of the latest widening.

    def poll(self):
        """Between iterations: when adaptive and a window has passed, narrow the team if the window was starved,
        or widen it if the machine has been calm with a CPU to spare for long enough."""
        if not self.adaptive or time.perf_counter() - self.window_start < self.ADAPT_WINDOW_SEC:
            return
        self.window_start = time.perf_counter()
        sample, idle_cpus = self.window.sample(self.count), self.idle.sample()
        if not self._narrow_if_starved(sample):
            self._widen_if_calm(sample, idle_cpus)

    def _narrow_if_starved(self, sample):
        if not (sample['starved'] and self.adaptive and self.count > 1):
            return False
        recently_widened = self.last_widened is not None and \
            time.perf_counter() - self.last_widened < 2.5 * self.ADAPT_WINDOW_SEC
        if recently_widened:
            self.widen_after *= 2
        self.count = narrower_team(self.count, min(sample['cpu'], 1 - (sample['wait'] or 0)))
        torch.set_num_threads(self.count)
        self.calm_windows = 0
        return True

    def _widen_if_calm(self, sample, idle_cpus):
        calm = not sample['starved'] and idle_cpus is not None and idle_cpus >= self.IDLE_CPUS_TO_WIDEN
        if not calm or self.count >= self.ceiling:
            self.calm_windows = 0
            return False
        self.calm_windows += 1
        if self.calm_windows < self.widen_after:
            return False
        self.count += 1
        torch.set_num_threads(self.count)
        self.calm_windows = 0
        self.last_widened = time.perf_counter()
        return True

    def end_tick(self):
        """Status-line text for the tick that ended ('cpu 0.93 wait 0.02 threads 2', + ' starved'), and the
        sample; narrows the team for the next tick when adaptive and starved."""
        sample = self.meter.sample(self.count)
        text = f'cpu {sample["cpu"]:.2f}' + ('' if sample['wait'] is None else f' wait {sample["wait"]:.2f}')
        text += f' threads {self.count}'
        if sample['starved']:
            text += ' starved'
            if self._narrow_if_starved(sample):
                text += f' (next tick {self.count})'
        return text, sample


def narrower_team(threads, share):
    """Thread count after a starved tick: the share of the team's time it actually ran, in whole threads
    (at least one fewer than before, at least 1)."""
    return max(1, min(threads - 1, int(threads * share + 0.5)))

#----------------------------------------------------------------------------
