"""`--max-minutes` as the wall time of the whole run: setup, training, grids, snapshots, metrics and exit.

The deadline counts from the start of the run (train.py passes its process start time). Training stops once the
next iteration plus what must still happen at the end (the final snapshot, the final fakes grid, the exit) would
cross it. Costs are measured as the run goes (the fakes_init grid, each snapshot, each metrics evaluation); the
first snapshot's cost is estimated from the bytes it will hold. At the end, what does not fit any more is left out
and named in the log: metrics whose cost is unknown or too large, then the fakes grid. The final snapshot is never
left out (it is the training). A run whose setup alone exceeds the limit still trains one iteration and saves it.
"""

import statistics
import time

_SNAPSHOT_BYTES_PER_SEC = 100e6  # Pickling + writing + flushing, conservative for a laptop disk (measured later).
_EXIT_SEC = 1.0                  # Closing the stats and TensorBoard files, interpreter teardown.
_RECENT_ITERATIONS = 8           # Iteration time = median of this many recent intervals (ticks add outliers).

#----------------------------------------------------------------------------

def estimate_snapshot_sec(modules, optimizers):
    """Seconds to write the first snapshot: its tensors (modules, G_ema, Adam's two moments) at a steady rate.

    modules: {name: torch.nn.Module or None}; optimizers: {name: torch.optim.Optimizer}."""
    num_bytes = 0
    for module in modules.values():
        if module is not None:
            num_bytes += sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))
    for opt in optimizers.values():
        num_bytes += 2 * sum(p.numel() * p.element_size() for group in opt.param_groups for p in group['params'])
    return 0.1 + num_bytes / _SNAPSHOT_BYTES_PER_SEC


class TimeBudget:
    """Deadline bookkeeping for one process. max_minutes None = no limit (every query says 'fits')."""

    def __init__(self, max_minutes, run_start_time=None):
        now = time.time()
        self.run_start_time = now if run_start_time is None else run_start_time
        self.deadline = None if max_minutes is None else self.run_start_time + max_minutes * 60
        self.costs = dict()             # 'grid' | 'snapshot' | 'metrics' -> seconds of the last measurement.
        self.intervals = []             # Recent seconds between iteration checks.
        self.last_check = now
        self.training_start = now

    def start_training(self):
        """Mark the end of setup (the clock for iteration times starts here)."""
        self.last_check = self.training_start = time.time()

    def note_cost(self, kind, seconds):
        self.costs[kind] = seconds

    def note_iteration(self, now=None):
        """Called once per iteration; keeps the recent intervals between calls."""
        now = time.time() if now is None else now
        self.intervals = (self.intervals + [now - self.last_check])[-_RECENT_ITERATIONS:]
        self.last_check = now

    def iteration_sec(self):
        return statistics.median(self.intervals) if self.intervals else 0.0

    def end_cost(self, with_grid):
        """Seconds the end of the run needs after the last iteration: final snapshot (+ grid) and exit."""
        return self.costs.get('snapshot', 0.0) + (self.costs.get('grid', 0.0) if with_grid else 0.0) + _EXIT_SEC

    def time_is_up(self, with_grid, now=None):
        """True when one more iteration and the end of the run would no longer fit before the deadline."""
        if self.deadline is None:
            return False
        now = time.time() if now is None else now
        return now + self.iteration_sec() + self.end_cost(with_grid) >= self.deadline

    def fits(self, kind, reserve_sec=0.0, now=None):
        """Whether a `kind` job of known cost, then reserve_sec more, ends before the deadline. Unknown cost: no."""
        if self.deadline is None:
            return True
        if kind not in self.costs:
            return False
        now = time.time() if now is None else now
        return now + self.costs[kind] + reserve_sec + _EXIT_SEC <= self.deadline

    def describe(self, now=None):
        """One line: where the time went, for the log when the limit stops the run."""
        now = time.time() if now is None else now
        setup = self.training_start - self.run_start_time
        kept = self.end_cost(with_grid=True)
        return (f'{setup:.1f} s setup, {now - self.training_start:.1f} s training, about {kept:.1f} s kept for the '
                f'final snapshot, grid and exit ({self.iteration_sec():.2f} s per iteration)')
