"""Per-phase timing of the training iteration, reported as the official `Timing/<phase>` statistics.

Each run of a phase (Gmain, Greg, Dmain, Dreg, or Gboth, Dboth) is timed in milliseconds: with CUDA events on a
GPU (recorded in the stream, read once a tick, so timing never stalls the GPU), with the wall clock elsewhere
(CPU and MPS work is synchronous enough for that). `report()` hands every run of the tick to training_stats, so
stats.jsonl holds `Timing/Gmain: {num: runs this tick, mean: ms per run, std}`.
"""

import time

import torch

from torch_utils import training_stats

#----------------------------------------------------------------------------

class PhaseTimer:
    """Times phases with `timer.start('Gmain') ... timer.stop('Gmain')`; `report()` once a tick (rank 0's values
    count, as in the official loop)."""

    def __init__(self, device):
        self.use_cuda_events = torch.device(device).type == 'cuda'
        self.pending = dict()   # Phase name -> [(start event, end event)] on CUDA, [milliseconds] elsewhere.
        self.started = dict()   # Phase name -> start event or perf_counter() value of the run in progress.

    def start(self, name):
        """Mark the start of a run of phase `name` (nested or overlapping runs of one phase are not supported)."""
        if self.use_cuda_events:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.started[name] = event
        else:
            self.started[name] = time.perf_counter()

    def stop(self, name):
        """Mark the end of the run of phase `name` begun by start()."""
        started = self.started.pop(name)
        runs = self.pending.setdefault(name, [])
        if self.use_cuda_events:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            runs.append((started, end))
        else:
            runs.append((time.perf_counter() - started) * 1e3)

    def collect(self):
        """{phase name: [milliseconds of each run since the previous collect()]}; waits for pending CUDA events."""
        result = dict()
        for name, runs in self.pending.items():
            if self.use_cuda_events:
                if runs:
                    runs[-1][1].synchronize()
                runs = [start.elapsed_time(end) for start, end in runs]
            result[name] = runs
        self.pending = {name: [] for name in self.pending}
        return result

    def report(self):
        """Report `Timing/<phase>` (ms per run) for every phase seen so far; a phase that did not run this tick
        only declares its name."""
        for name, runs_ms in self.collect().items():
            training_stats.report0('Timing/' + name, runs_ms)
