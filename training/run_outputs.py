"""What a run shows while it trains: log lines, the image grids (reals.png, fakes*.png), the per-tick status line
and its timer, and rank 0's per-tick files (stats.jsonl, TensorBoard events).
"""

import json
import os
import sys
import time

import numpy as np
import PIL.Image
import torch

import dnnlib
from torch_utils import training_stats

#----------------------------------------------------------------------------
# Log lines and image grids.

def make_log_fn(rank):
    """Rank 0 writes progress lines to stdout (which train.py tees into log.txt); other ranks stay quiet."""
    def log(message=''):
        if rank == 0:
            sys.stdout.write(message + '\n')
            sys.stdout.flush()
    return log


write_file_atomic = dnnlib.util.write_file_atomic  # Temporary file + rename: readers never see half a file.


def save_image_grid(img, path, drange, grid_size):
    """img: [gw * gh, C, H, W] float in `drange` -> one PNG of gh rows by gw columns (C = 1, 3 or 4; other C: the
    first three channels, or the first). Returns the grid [gh * H, gw * W, C'] uint8 as written."""
    lo, hi = drange
    img = (np.asarray(img, dtype=np.float32) - lo) * (255 / (hi - lo))
    img = np.rint(img).clip(0, 255).astype(np.uint8)
    gw, gh = grid_size
    _N, C, H, W = img.shape
    img = img.reshape(gh, gw, C, H, W).transpose(0, 3, 1, 4, 2).reshape(gh * H, gw * W, C)
    if C not in (1, 3, 4):  # N-channel data: show the first three channels (the first one if fewer).
        img = np.ascontiguousarray(img[:, :, :3] if C > 3 else img[:, :, :1])
    mode = {1: 'L', 3: 'RGB', 4: 'RGBA'}[img.shape[2]]
    pil_img = PIL.Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img, mode)
    write_file_atomic(path, lambda f: pil_img.save(f, format='PNG'))
    return img


def setup_image_grid(training_set, random_seed, grid_size=None):
    """The reals shown in reals.png: gw x gh images (default: about 4K pixels wide) in a random order, or one row
    per class for conditional datasets. Returns ((gw, gh), images [N, C, H, W] uint8, labels [N, c_dim])."""
    rnd = np.random.RandomState(random_seed)
    gw = int(np.clip(7680 // training_set.image_shape[2], 7, 32))
    gh = int(np.clip(4320 // training_set.image_shape[1], 4, 32))
    if grid_size is not None:
        gw, gh = grid_size
    if not training_set.has_labels:
        order = rnd.permutation(len(training_set))
        indices = [order[i % len(order)] for i in range(gw * gh)]
    else:
        groups = dict()
        for idx in range(len(training_set)):
            groups.setdefault(tuple(training_set.get_label(idx).tolist()), []).append(idx)
        keys = sorted(groups, reverse=True)
        for key in keys:
            rnd.shuffle(groups[key])
        indices = [groups[keys[y % len(keys)]][x % len(groups[keys[y % len(keys)]])]
                   for y in range(gh) for x in range(gw)]
    images, labels = zip(*[training_set[int(idx)] for idx in indices])
    return (gw, gh), np.stack(images), np.stack(labels)


class ImageGrid:
    """The fixed latents and labels of the fakes grid, and the function that renders it with G_ema."""

    def __init__(self, training_set, random_seed, z_dim, batch_gpu, device, grid_size=None):
        self.grid_size, self.reals, labels = setup_image_grid(training_set, random_seed, grid_size)
        chunk = batch_gpu if device.type == 'cuda' else max(batch_gpu, 64)  # CPU: fewer, larger calls are faster.
        self.grid_z = torch.randn([len(labels), z_dim], device=device).split(chunk)
        self.grid_c = torch.from_numpy(labels).to(device).split(chunk)

    @torch.no_grad()
    def save_fakes(self, G_ema, path):
        images = [G_ema(z=z, c=c, noise_mode='const').cpu() for z, c in zip(self.grid_z, self.grid_c)]
        return save_image_grid(torch.cat(images).numpy(), path, drange=[-1, 1], grid_size=self.grid_size)

#----------------------------------------------------------------------------
# Status line, stats files.

def _cpu_mem_gb():
    """Resident memory (RSS) of this process in GiB, as psutil reads it on Linux, macOS and Windows."""
    import psutil
    return psutil.Process().memory_info().rss / 2**30


def format_status_line(state, timer, total_kimg, device, deadline=None):
    """The official per-tick status line (+ ETA, which a deadline (time.time() value) shortens); each value is
    also reported to training_stats."""
    r0 = training_stats.report0
    now = time.time()
    tick_sec = now - timer.tick_start_time
    tick_nimg = max(state.cur_nimg - state.tick_start_nimg, 1)
    sec_per_kimg = tick_sec / tick_nimg * 1e3
    cuda = device.type == 'cuda'
    gpu_mem_gb = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else 0
    gpu_reserved_gb = torch.cuda.max_memory_reserved(device) / 2**30 if cuda else 0
    p = float(state.augment_pipe.p.cpu()) if state.augment_pipe is not None else 0
    eta_sec = max(total_kimg * 1e3 - state.cur_nimg, 0) * sec_per_kimg / 1e3
    if deadline is not None:
        eta_sec = max(min(eta_sec, deadline - now), 0)
    fields = [f"tick {r0('Progress/tick', state.cur_tick):<5d}",
              f"kimg {r0('Progress/kimg', state.cur_nimg / 1e3):<8.1f}",
              f"time {dnnlib.util.format_time(r0('Timing/total_sec', timer.total_sec(state, now))):<12s}",
              f"sec/tick {r0('Timing/sec_per_tick', tick_sec):<7.1f}",
              f"sec/kimg {r0('Timing/sec_per_kimg', sec_per_kimg):<7.2f}",
              f"maintenance {r0('Timing/maintenance_sec', timer.maintenance_sec):<6.1f}",
              f"cpumem {r0('Resources/cpu_mem_gb', _cpu_mem_gb()):<6.2f}",
              f"gpumem {r0('Resources/peak_gpu_mem_gb', gpu_mem_gb):<6.2f}",
              f"reserved {r0('Resources/peak_gpu_mem_reserved_gb', gpu_reserved_gb):<6.2f}",
              f"augment {r0('Progress/augment', p):.3f}",
              f"eta {dnnlib.util.format_time(eta_sec)}"]
    r0('Timing/total_hours', timer.total_sec(state, now) / (60 * 60))  # Official keys, not printed.
    r0('Timing/total_days', timer.total_sec(state, now) / (24 * 60 * 60))
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    return ' '.join(fields)


class TickTimer:
    """Wall-clock bookkeeping for the status line: this process's start, the current tick, maintenance."""

    def __init__(self):
        self.start_time = time.time()
        self.tick_start_time = self.start_time
        self.maintenance_sec = 0.0

    def total_sec(self, state, now=None):
        """Training time including the runs this one resumes from."""
        return state.elapsed_sec + ((now or time.time()) - self.start_time)

    def next_tick(self, tick_end_time):
        self.tick_start_time = time.time()
        self.maintenance_sec = self.tick_start_time - tick_end_time


class RunOutputs:
    """Rank 0's per-tick files: stats.jsonl and TensorBoard events (optional: warns once if unavailable)."""

    def __init__(self, run_dir, rank, log):
        self.run_dir = run_dir
        self.stats_jsonl = None
        self.tensorboard = None
        if rank != 0:
            return
        self.stats_jsonl = open(os.path.join(run_dir, 'stats.jsonl'), 'at')
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tensorboard = SummaryWriter(run_dir)
        except ImportError as err:
            log(f'Warning: TensorBoard logging is off ({err}); `pip install tensorboard` to enable it.')

    def write_tick(self, stats_dict, metrics_dict, cur_nimg, elapsed_sec):
        """One JSON line {name: {num, mean, std}, timestamp} and the same scalars to TensorBoard."""
        if self.stats_jsonl is None:
            return
        timestamp = time.time()
        try:
            self.stats_jsonl.write(json.dumps(dict(stats_dict, timestamp=timestamp)) + '\n')
            self.stats_jsonl.flush()
        except OSError as err:  # A full disk: name the file (write() errors carry no file name).
            raise dnnlib.util.named_os_error(err, self.stats_jsonl.name) from err
        if self.tensorboard is not None:
            global_step = int(cur_nimg / 1e3)
            for name, value in stats_dict.items():
                self.tensorboard.add_scalar(name, value.mean, global_step=global_step, walltime=timestamp)
            for name, value in metrics_dict.items():
                self.tensorboard.add_scalar(f'Metrics/{name}', value, global_step=global_step, walltime=timestamp)
            self.tensorboard.flush()

    def write_fakes_image(self, image_hwc, cur_nimg):
        if self.tensorboard is not None:
            self.tensorboard.add_image('Fakes', image_hwc, global_step=int(cur_nimg / 1e3), dataformats='HWC')

    def close(self):
        if self.stats_jsonl is not None:
            self.stats_jsonl.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def warn_nonfinite_gradients(log, stats_dict):
    """Say so when NaN/Inf gradients were replaced during the tick (they are zeroed, never silently)."""
    prefix = 'Progress/nonfinite_grads/'
    counts = {name[len(prefix):]: value.mean * value.num for name, value in stats_dict.items()
              if name.startswith(prefix) and value.num > 0 and value.mean > 0}
    if counts:
        log('Warning: non-finite gradient entries replaced this tick: '
            + ', '.join(f'{phase} {int(count)}' for phase, count in sorted(counts.items())))

#----------------------------------------------------------------------------
