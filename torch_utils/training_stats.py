"""Training statistics: any code reports named values; a Collector turns them into per-interval mean/std.

    training_stats.report('Loss/G/loss', loss)      # scalar or tensor; returns its input unchanged
    collector = training_stats.Collector(regex='Loss/.*')
    ...
    collector.update()                              # all ranks together, e.g. once per tick
    collector.mean('Loss/G/loss'), collector.std(...), collector.as_dict()

`report` only adds to per-name counters (count, sum, sum of squares, float64) on the value's device, so it
never synchronises the GPU. `Collector.update` gathers the counters of every name matching its regex,
sums them over all ranks when torch.distributed is initialized, and keeps the increments since its
previous update. The counters are module-level state by design: reporting code needs no handle.
"""

import re

import numpy as np
import torch

import dnnlib

_counter_dtype = torch.float64
_rank = 0                 # Rank of this process (set by init_multiprocessing).
_sync_device = None       # Device for the all-reduce; must be CUDA with the nccl backend.
_counters = dict()        # Name -> {device: tensor [count, sum, sum of squares]} not yet collected.
_cumulative = dict()      # Name -> CPU tensor [count, sum, sum of squares] collected so far (all ranks).

#----------------------------------------------------------------------------

def init_multiprocessing(rank, sync_device):
    """Tell training_stats this process's rank and the device for cross-rank reductions.

    Call once per process before reporting. `sync_device` must be this rank's CUDA device with the nccl
    backend; None means the CPU (fine for gloo, and for single-process runs).
    """
    global _rank, _sync_device
    _rank = int(rank)
    _sync_device = torch.device(sync_device) if sync_device is not None else None


def _moments(value):
    """[count, sum, sum of squares] of all elements of tensor `value`, in float64 on its device."""
    elems = value.detach().flatten()
    if elems.device.type == 'mps':  # No float64 on Apple GPUs.
        elems = elems.cpu()
    elems = elems.to(_counter_dtype)
    count = torch.full([], elems.numel(), dtype=_counter_dtype, device=elems.device)
    return torch.stack([count, elems.sum(), elems.square().sum()])


def report(name, value):
    """Add every element of `value` (number, array or tensor of any shape) to the statistic `name`.

    An empty value only declares the name, so that every rank knows it. Returns `value` unchanged, so
    `loss = report('Loss/G', loss)` reads naturally. Non-finite elements are kept (they show in the mean).
    """
    per_device = _counters.setdefault(name, dict())
    elems = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value, dtype=np.float64))
    if elems.numel() == 0:
        return value
    moments = _moments(elems)
    if moments.device not in per_device:
        per_device[moments.device] = torch.zeros_like(moments)
    per_device[moments.device].add_(moments)
    return value


def report0(name, value):
    """`report` on rank 0; other ranks only declare the name. Returns `value` unchanged."""
    report(name, value if _rank == 0 else [])
    return value

#----------------------------------------------------------------------------

def _distributed_world():
    """World size if torch.distributed is initialized, else 1."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def _reduction_device():
    if _sync_device is not None:
        return _sync_device
    if _distributed_world() > 1 and torch.distributed.get_backend() == 'nccl':
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


def _all_names(names):
    """Union of `names` over all ranks, sorted, so every rank reduces the same list in the same order."""
    if _distributed_world() == 1:
        return sorted(names)
    gathered = [None] * _distributed_world()
    torch.distributed.all_gather_object(gathered, sorted(names))
    return sorted(set().union(*gathered))


def _sync(names):
    """Move the pending counters of `names` into `_cumulative`, summed over ranks; returns [(name, moments)]."""
    names = _all_names(names)
    if not names:
        return []
    device = _reduction_device()
    deltas = torch.zeros([len(names), 3], dtype=_counter_dtype, device=device)
    for idx, name in enumerate(names):
        for counter in _counters.setdefault(name, dict()).values():
            deltas[idx].add_(counter.to(device))
            counter.zero_()
    if _distributed_world() > 1:
        torch.distributed.all_reduce(deltas)
    deltas = deltas.cpu()
    for idx, name in enumerate(names):
        _cumulative.setdefault(name, torch.zeros([3], dtype=_counter_dtype)).add_(deltas[idx])
    return [(name, _cumulative[name]) for name in names]

#----------------------------------------------------------------------------

class Collector:
    """Mean and standard deviation of reported statistics over the interval between `update()` calls.

    Args:
        regex:         statistics whose name fully matches this regular expression are collected.
        keep_previous: if True, a statistic not reported during the last interval keeps its previous
                       values; if False it reads as num 0, mean/std NaN.
    With torch.distributed initialized, `update()` is collective: every rank must call it.
    """

    def __init__(self, regex='.*', keep_previous=True):
        self._regex = re.compile(regex)
        self._keep_previous = keep_previous
        self._cumulative = dict()  # Name -> cumulative moments at the previous update.
        self._moments = dict()     # Name -> moments of the last interval.
        self.update()
        self._moments.clear()

    def names(self):
        """Names of all statistics declared so far (on this rank) that match the regex, sorted."""
        return sorted(name for name in _counters if self._regex.fullmatch(name))

    def update(self):
        """Close the current interval: collect everything reported since the previous update."""
        if not self._keep_previous:
            self._moments.clear()
        for name, cumulative in _sync(self.names()):
            previous = self._cumulative.setdefault(name, torch.zeros([3], dtype=_counter_dtype))
            delta = cumulative - previous
            previous.copy_(cumulative)
            if float(delta[0]) != 0:
                self._moments[name] = delta

    def num(self, name):
        """Number of scalars reported for `name` during the last interval."""
        moments = self._moments.get(name)
        return int(moments[0]) if moments is not None else 0

    def mean(self, name):
        """Mean over the last interval (NaN if nothing was reported)."""
        moments = self._moments.get(name)
        if moments is None or float(moments[0]) == 0:
            return float('nan')
        return float(moments[1] / moments[0])

    def std(self, name):
        """Population standard deviation over the last interval (NaN if nothing was reported)."""
        moments = self._moments.get(name)
        if moments is None or float(moments[0]) == 0 or not np.isfinite(float(moments[1])):
            return float('nan')
        count = float(moments[0])
        if count == 1:
            return 0.0
        mean = float(moments[1]) / count
        variance = float(moments[2]) / count - mean ** 2
        return float(np.sqrt(max(variance, 0.0)))

    def as_dict(self):
        """{name: EasyDict(num, mean, std)} for every matching name (JSON-serialisable numbers)."""
        return {name: dnnlib.EasyDict(num=self.num(name), mean=self.mean(name), std=self.std(name))
                for name in self.names()}

    def __getitem__(self, name):
        """`collector[name]` is `collector.mean(name)`."""
        return self.mean(name)

#----------------------------------------------------------------------------
