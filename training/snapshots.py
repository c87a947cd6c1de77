"""The network snapshots of a run directory: resume state only in the newest, rotation, the best by a metric.

Disk use. A snapshot in the official layout holds G, D, G_ema and the augment pipe. For an exact resume our
snapshots also carry the resume state (optimizer moments, counters, RNGs, ...), which roughly doubles the file.
Only the newest snapshot needs it (`--resume=<run dir>` continues from the newest), so once a new snapshot is
written and flushed to disk, the previous one is rewritten without it (atomically); older snapshots are then the
official size. `--snap-keep=N` deletes all but the newest N `network-snapshot-<kimg>.pkl` (after the new one is
on disk); `--snap-best=METRIC` also keeps `network-snapshot-best-<metric>.pkl`, the snapshot with the best value
of METRIC so far in this run directory (official layout, no resume state; its kimg is in `best-<metric>.json`).

Everything here runs on rank 0 only and touches only files of this run directory whose names it wrote.
"""

import json
import os
import pickle
import re

_SNAPSHOT_RE = re.compile(r'network-snapshot-(\d+)\.pkl')

# Metrics for which a larger value is better (precision, recall, Inception Score, equivariance PSNR); the others
# (FID, KID, PPL, ...) are better when smaller. `--snap-best=NAME:max` / `NAME:min` overrides.
_HIGHER_IS_BETTER = re.compile(r'(.*_precision|.*_recall|is\d+k.*_mean|eq[tr]\d+k.*)')

#----------------------------------------------------------------------------

def snapshot_name(cur_nimg):
    """network-snapshot-<kimg>.pkl of a run at cur_nimg images (kimg rounded down, six digits)."""
    return f'network-snapshot-{cur_nimg // 1000:06d}.pkl'


def list_snapshots(run_dir):
    """The numbered snapshots of run_dir, oldest (lowest kimg) first."""
    names = [name for name in os.listdir(run_dir) if _SNAPSHOT_RE.fullmatch(name)]
    return [os.path.join(run_dir, name) for name in sorted(names, key=lambda n: int(_SNAPSHOT_RE.fullmatch(n)[1]))]


def fsync_file(path):
    """Make sure the bytes of `path` are on disk (not only in the page cache) before older files are deleted."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_pickle_atomic(path, data):
    """pickle.dump(data) into path via a temporary file in the same directory, flushed, then renamed."""
    tmp_path = f'{path}.tmp{os.getpid()}'
    try:
        with open(tmp_path, 'wb') as f:
            pickle.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


def strip_resume_state(path, resume_key):
    """Rewrite snapshot `path` without its `resume_key` entry (no-op if it has none). Read with the safe loader:
    the file is ours, but nothing read from disk is trusted. Returns the number of bytes saved."""
    from torch_utils import safe_pickle
    from training.network_families import FAMILIES
    with open(path, 'rb') as f:
        data = safe_pickle.load_pickle(f, families=FAMILIES)
    if not isinstance(data, dict) or resume_key not in data:
        return 0
    size_before = os.path.getsize(path)
    del data[resume_key]
    write_pickle_atomic(path, data)
    return size_before - os.path.getsize(path)


def parse_snap_best(spec):
    """'fid50k_full' -> ('fid50k_full', False); 'name:max' -> ('name', True). Returns (result key, higher_is_better).

    The key is a key of the metric's results (fid50k_full, pr50k3_full_precision, is50k_mean, ...)."""
    name, _, direction = spec.partition(':')
    if direction not in ('', 'min', 'max') or not name:
        raise ValueError(f'--snap-best={spec}: expected METRIC, METRIC:min or METRIC:max')
    if direction:
        return name, direction == 'max'
    return name, bool(_HIGHER_IS_BETTER.fullmatch(name))


def snap_best_metric_name(result_key, metrics):
    """The metric of `metrics` (names of --metrics) that reports `result_key`, or None."""
    for metric in metrics:
        if result_key == metric or result_key.startswith(metric + '_'):
            return metric
    return None

#----------------------------------------------------------------------------

class SnapshotKeeper:
    """Keeps a run directory's snapshots within bounds; call after_write() after each snapshot is written and
    after_metrics() once its metrics are known. log: function(str) for one line per file changed."""

    def __init__(self, run_dir, resume_key, keep=None, best=None, log=None):
        self.run_dir = run_dir
        self.resume_key = resume_key
        self.keep = keep                        # Newest snapshots to keep; None = all.
        self.best_key, self.higher_is_better = parse_snap_best(best) if best else (None, False)
        self.best_value = None
        self.log = log or (lambda message: None)
        self.last_written = None                # The snapshot that holds the resume state.

    @property
    def best_path(self):
        return os.path.join(self.run_dir, f'network-snapshot-best-{self.best_key}.pkl')

    def after_write(self, path):
        """`path` has just been written with the resume state: flush it, strip the previous snapshot's resume
        state, delete snapshots beyond --snap-keep. Returns the size of `path` in bytes."""
        fsync_file(path)
        previous, self.last_written = self.last_written, path
        if previous is not None and os.path.abspath(previous) != os.path.abspath(path) and os.path.exists(previous):
            strip_resume_state(previous, self.resume_key)
        if self.keep is not None:
            for old_path in list_snapshots(self.run_dir)[:-self.keep]:
                if os.path.abspath(old_path) != os.path.abspath(path):
                    os.remove(old_path)
                    self.log(f'Removed {os.path.basename(old_path)} (--snap-keep={self.keep})')
        return os.path.getsize(path)

    def after_metrics(self, snapshot_data, results, snapshot_path):
        """If results[best key] beats the best so far, write snapshot_data (without resume state) as the best."""
        if self.best_key is None or self.best_key not in results:
            return False
        value = float(results[self.best_key])
        better = self.best_value is None or (value > self.best_value if self.higher_is_better
                                             else value < self.best_value)
        if not better:
            return False
        self.best_value = value
        write_pickle_atomic(self.best_path, {k: v for k, v in snapshot_data.items() if k != self.resume_key})
        info = dict(metric=self.best_key, value=value, snapshot=os.path.basename(snapshot_path))
        tmp_path = os.path.join(self.run_dir, f'best-{self.best_key}.json.tmp{os.getpid()}')
        with open(tmp_path, 'wt') as f:
            json.dump(info, f)
        os.replace(tmp_path, os.path.join(self.run_dir, f'best-{self.best_key}.json'))
        self.log(f'New best {self.best_key} = {value:g}: {os.path.basename(self.best_path)} '
                 f'(from {os.path.basename(snapshot_path)})')
        return True
