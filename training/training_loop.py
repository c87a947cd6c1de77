"""The StyleGAN training loop: a short driver (`training_loop`) over named steps.

    setup        devices and seeds, data, networks, phases (optimizers), loss, resume
    phases       one iteration: each phase (Gmain, Greg, Dmain, Dreg or Gboth, Dboth) accumulates gradients,
                 averages them over processes and steps its optimizer (StyleGAN2 App. B: lazy regularisation)
    maintenance  G_ema, ADA p, and at the end of each tick: status line, stats, images, snapshot, metrics
    snapshot     `network-snapshot-<kimg>.pkl` in the official layout plus `resume_state` for exact resume (only
                 the newest snapshot keeps it; rotation and the best snapshot: training/snapshots.py)
    resume       from such a snapshot (everything) or from an official pickle (weights only)

Everything a resumed run needs lives in `TrainingState`, which saves and loads itself; the random number
generators are set aside during maintenance, so that a run that stops at a tick and resumes produces the same
weights as one that never stopped (bit-exact on CPU).
"""

import copy
import json
import os
import pickle
import random
import re
import sys
import time
import zipfile

import numpy as np
import PIL.Image
import torch

import dnnlib
from torch_utils import misc
from torch_utils import threads
from torch_utils import training_stats
from torch_utils.ops import conv2d_gradfix
from torch_utils.ops import grid_sample_gradfix
from training.phase_timing import PhaseTimer
from training.snapshots import SnapshotKeeper, snapshot_name
from training.time_budget import TimeBudget, estimate_snapshot_sec
from training import accel

class SetupError(Exception):
    """An expected failure while a run starts (unreadable or mismatched --resume, unreadable data, --kimg already
    reached): the message says what and how to fix it; train.py prints only the message, no traceback."""


RESUME_STATE_KEY = 'resume_state'   # Extra snapshot key; official tools ignore it.
RESUME_STATE_VERSION = 1
_EMA_BUFFER_REGEX = r'.*\.[^.]+_(avg|ema)'  # Buffers that legitimately differ between processes (w_avg, ...).

#----------------------------------------------------------------------------
# Small helpers: logging, random number generator state, atomic writes.

def _make_log_fn(rank):
    """Rank 0 writes progress lines to stdout (which train.py tees into log.txt); other ranks stay quiet."""
    def log(message=''):
        if rank == 0:
            sys.stdout.write(message + '\n')
            sys.stdout.flush()
    return log


def capture_rng_state(device):
    """Every random number generator the loop draws from: torch (CPU and `device`'s CUDA), numpy, python.

    Returns plain picklable data (no numpy arrays) so that a safe unpickler accepts it."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = dict(torch=torch.get_rng_state(), python=random.getstate(),
                 numpy=(np_name, [int(k) for k in np_keys], int(np_pos), int(np_has_gauss), float(np_gauss)))
    if device.type == 'cuda':
        state['cuda'] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state, device):
    """Inverse of capture_rng_state()."""
    torch.set_rng_state(state['torch'].cpu())
    random.setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in state['python']))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state['numpy']
    np.random.set_state((np_name, np.asarray(np_keys, dtype=np.uint32), np_pos, np_has_gauss, np_gauss))
    if device.type == 'cuda' and 'cuda' in state:
        torch.cuda.set_rng_state(state['cuda'].cpu(), device)


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

#----------------------------------------------------------------------------
# Setup: devices and seeds.

def setup_environment(rank, num_gpus, random_seed, device, cudnn_benchmark):
    """Choose the device, seed every generator from (seed, rank) and set the numerics switches for training."""
    if device is None:
        device = torch.device('cuda', rank % max(torch.cuda.device_count(), 1)) if torch.cuda.is_available() \
            else torch.device('cpu')
    device = torch.device(device)
    if device.type == 'cuda' and device.index is None:
        device = torch.device('cuda', rank % torch.cuda.device_count())
    seed = random_seed * num_gpus + rank
    np.random.seed(seed)
    torch.manual_seed(seed)
    random.seed(seed)
    if device.type == 'cuda':
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = False   # TF32 would change the numerics of the reference runs.
        torch.backends.cudnn.allow_tf32 = False
    conv2d_gradfix.enabled = True        # Needed for no_weight_gradients() and double backward through convs.
    grid_sample_gradfix.enabled = True
    return device

#----------------------------------------------------------------------------
# Setup: data.

class _WorkerSeeder:
    """DataLoader worker_init_fn: seeds each worker from (seed, rank, start image, worker id), so a resumed run's
    workers are seeded the same way for the same start. (Our datasets do not draw random numbers; this guards
    datasets that do.)"""

    def __init__(self, random_seed, rank, start_nimg):
        self.base = [random_seed, rank, start_nimg]

    def __call__(self, worker_id):
        seed = int(np.random.SeedSequence(self.base + [worker_id]).generate_state(1)[0])
        np.random.seed(seed)
        random.seed(seed)
        torch.manual_seed(seed)


def setup_data(training_set_kwargs, data_loader_kwargs, rank, num_gpus, batch_size, random_seed, start_nimg, device):
    """Dataset, and an endless iterator of per-process batches [batch_size // num_gpus, C, H, W] uint8 + labels
    that starts at global image number `start_nimg` of the shuffled stream (exact resume)."""
    training_set = dnnlib.util.construct_class_by_name(**training_set_kwargs)
    sampler = misc.InfiniteSampler(dataset=training_set, rank=rank, num_replicas=num_gpus, seed=random_seed,
                                   start_index=start_nimg)
    loader_kwargs = dict(data_loader_kwargs)
    if device.type != 'cuda':
        loader_kwargs['pin_memory'] = False  # Pinned memory only helps copies to a GPU (and warns without one).
    if loader_kwargs.get('num_workers', 0) == 0:
        loader_kwargs.pop('prefetch_factor', None)  # Only meaningful (and only allowed) with worker processes.
        loader_kwargs.pop('persistent_workers', None)
    else:
        loader_kwargs['worker_init_fn'] = _WorkerSeeder(random_seed, rank, start_nimg)
    loader = torch.utils.data.DataLoader(dataset=training_set, sampler=sampler, batch_size=batch_size // num_gpus,
                                         **loader_kwargs)
    return training_set, iter(loader)


def fetch_batch(training_set_iterator, training_set, num_phases, batch_gpu, z_dim, device, num_chunks=1):
    """One iteration's inputs for this process (num_chunks loader batches), split into rounds of batch_gpu.

    Returns real_img [rounds][batch_gpu, C, H, W] float in [-1, 1], real_c [rounds][batch_gpu, c_dim],
    gen_z [phase][round][batch_gpu, z_dim], gen_c [phase][round][batch_gpu, c_dim]. Latents and fake labels are
    drawn for every phase, active or not, so that the random streams do not depend on the iteration number.
    """
    chunks = [next(training_set_iterator) for _ in range(num_chunks)]
    real_img, real_c = [torch.cat(parts) for parts in zip(*chunks)]
    per_gpu = real_img.shape[0]
    real_img = (real_img.to(device).to(torch.float32) / 127.5 - 1).split(batch_gpu)
    real_c = real_c.to(device).split(batch_gpu)
    gen_z = torch.randn([num_phases * per_gpu, z_dim], device=device)
    gen_z = [phase_z.split(batch_gpu) for phase_z in gen_z.split(per_gpu)]
    label_idx = np.random.randint(len(training_set), size=num_phases * per_gpu)
    gen_c = torch.from_numpy(np.stack([training_set.get_label(int(i)) for i in label_idx])).to(device)
    gen_c = [phase_c.split(batch_gpu) for phase_c in gen_c.split(per_gpu)]
    return real_img, real_c, gen_z, gen_c

#----------------------------------------------------------------------------
# Setup: networks, phases, loss.

def construct_networks(training_set, G_kwargs, D_kwargs, augment_kwargs, augment_p, device):
    """G, D, G_ema (a copy of G in eval mode) and the augment pipe (or None), all on `device`, no grads."""
    common_kwargs = dict(c_dim=training_set.label_dim, img_resolution=training_set.resolution,
                         img_channels=training_set.num_channels)
    G = dnnlib.util.construct_class_by_name(**G_kwargs, **common_kwargs).train().requires_grad_(False).to(device)
    D = dnnlib.util.construct_class_by_name(**D_kwargs, **common_kwargs).train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()
    augment_pipe = None
    if augment_kwargs is not None and augment_kwargs.get('class_name') is not None:
        augment_pipe = dnnlib.util.construct_class_by_name(**augment_kwargs).train().requires_grad_(False)
        augment_pipe = augment_pipe.to(device)
        augment_pipe.p.copy_(torch.as_tensor(augment_p))
    return G, D, G_ema, augment_pipe


class Phase:
    """One optimisation phase: `name` (a StyleGAN2Loss phase), the module it trains, its optimizer, and how often
    it runs (every `interval` iterations; its loss is multiplied by the interval, StyleGAN2 App. B)."""

    def __init__(self, name, module, opt, interval, gain=None):
        self.name = name
        self.module = module
        self.opt = opt
        self.interval = interval
        self.gain = interval if gain is None else gain  # Loss multiplier (n_critic skips G steps without gain).


def build_phases(G, D, G_opt_kwargs, D_opt_kwargs, G_reg_interval, D_reg_interval, n_critic=1):
    """[Gmain, Greg, Dmain, Dreg] with lazy regularisation, or Gboth / Dboth where the interval is None.
    n_critic > 1 (WGAN-GP, Gulrajani et al. 2017 Alg. 1): G's phases run every n_critic iterations, D's every one.

    Lazy regularisation (StyleGAN2 App. B): with the regulariser every k minibatches, the optimizer's
    lr *= k / (k + 1) and betas **= k / (k + 1) keep the effective step sizes of the unregularised schedule.
    Returns (phases, optimizers {'G': opt, 'D': opt})."""
    phases, optimizers = [], {}
    for name, module, opt_kwargs, reg_interval in [('G', G, G_opt_kwargs, G_reg_interval),
                                                   ('D', D, D_opt_kwargs, D_reg_interval)]:
        opt_kwargs = dnnlib.EasyDict(opt_kwargs)
        every = n_critic if name == 'G' else 1
        if 'betas' in opt_kwargs:
            opt_kwargs.betas = [float(beta) for beta in opt_kwargs.betas]  # Adam refuses [0, 0.99] (int and float).
        if reg_interval is None:
            opt = dnnlib.util.construct_class_by_name(params=module.parameters(), **opt_kwargs)
            phases += [Phase(name + 'both', module, opt, every, gain=1)]
        else:
            mb_ratio = reg_interval / (reg_interval + 1)
            opt_kwargs.lr = opt_kwargs.lr * mb_ratio
            opt_kwargs.betas = [beta ** mb_ratio for beta in opt_kwargs.betas]
            opt = dnnlib.util.construct_class_by_name(params=module.parameters(), **opt_kwargs)
            phases += [Phase(name + 'main', module, opt, every, gain=1),
                       Phase(name + 'reg', module, opt, reg_interval * every, gain=reg_interval)]
        optimizers[name] = opt
    return phases, optimizers

#----------------------------------------------------------------------------
# Resume: reading a snapshot and checking that it fits the new run.

def find_latest_snapshot(path):
    """`path` itself if it is a file or URL, else the snapshot with the highest kimg in the run directory `path`."""
    if dnnlib.util.is_url(path):
        return path
    if not os.path.isdir(path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f'--resume: {path} is neither a snapshot file nor a run directory')
        return path
    snapshots = [name for name in os.listdir(path) if re.fullmatch(r'network-snapshot-\d+\.pkl', name)]
    if not snapshots:
        raise FileNotFoundError(f'--resume: run directory {path} holds no network-snapshot-<kimg>.pkl')
    return os.path.join(path, max(snapshots, key=lambda name: (int(re.findall(r'\d+', name)[0]), name)))


def load_snapshot(path):
    """Read a snapshot pickle (ours or official; path or URL) into a dict with the safe loader (DESIGN §4)."""
    from torch_utils import safe_pickle
    from training import tf_legacy
    from training.network_families import FAMILIES
    if dnnlib.util.is_url(path):
        with dnnlib.util.open_url(path) as f:
            return safe_pickle.load_network_pkl(f, convert_tf=tf_legacy.convert_tf_snapshot, families=FAMILIES)
    return safe_pickle.load_network_pkl(path, convert_tf=tf_legacy.convert_tf_snapshot, families=FAMILIES)


_CONFIG_FIELDS = [  # (what the user calls it, how to read it from a network's init_kwargs)
    ('resolution', lambda kw: kw.get('img_resolution')),
    ('img_channels', lambda kw: kw.get('img_channels')),
    ('c_dim (--cond)', lambda kw: kw.get('c_dim')),
    ('cbase', lambda kw: kw.get('channel_base')),
    ('cmax', lambda kw: kw.get('channel_max')),
    ('map depth', lambda kw: (kw.get('mapping_kwargs') or {}).get('num_layers')),
    ('z_dim', lambda kw: kw.get('z_dim')),
    ('w_dim', lambda kw: kw.get('w_dim')),
    ('conv_kernel', lambda kw: kw.get('conv_kernel')),
    ('use_radial_filters', lambda kw: kw.get('use_radial_filters')),
]


def network_family(module):
    """'networks_stylegan2', 'networks_stylegan3', ...: the module a network class comes from."""
    return type(module).__module__.split('.')[-1]


def describe_config_differences(resume_data, G, D):
    """Differences between the networks of a resume pickle and of the new run, as readable lines."""
    diffs = []
    for name, new_module in [('G', G), ('D', D)]:
        old_module = resume_data.get(name if name in resume_data else 'G_ema')
        if old_module is None:
            continue
        if network_family(old_module) != network_family(new_module):
            diffs.append(f'{name} family: pickle {network_family(old_module)}, run {network_family(new_module)}')
            continue
        old_kwargs = dict(getattr(old_module, 'init_kwargs', {}) or {})
        new_kwargs = dict(getattr(new_module, 'init_kwargs', {}) or {})
        for label, read in _CONFIG_FIELDS:
            old, new = read(old_kwargs), read(new_kwargs)
            if old is not None and new is not None and old != new:
                diffs.append(f'{name} {label}: pickle {old}, run {new}')
        old_shapes = {k: tuple(v.shape) for k, v in misc.named_params_and_buffers(old_module)}
        new_shapes = {k: tuple(v.shape) for k, v in misc.named_params_and_buffers(new_module)}
        mismatched = [k for k in new_shapes if k in old_shapes and old_shapes[k] != new_shapes[k]]
        if mismatched and not any(d.startswith(name + ' ') for d in diffs):
            diffs.append(f'{name} parameter shapes differ: {", ".join(mismatched[:5])}'
                         + (' ...' if len(mismatched) > 5 else ''))
    return diffs


def check_resume_compatible(resume_pkl, resume_data, G, D):
    """Raise ValueError listing every difference that makes the pickle's weights unusable for this run."""
    diffs = describe_config_differences(resume_data, G, D)
    if diffs:
        raise ValueError(f'--resume={resume_pkl} does not match this run\'s configuration:\n  '
                         + '\n  '.join(diffs) + '\nUse the same --cfg, --cbase, --cmax, --map-depth, --cond and '
                         'a dataset of the same resolution as the run that wrote the snapshot.')

#----------------------------------------------------------------------------
# The state that survives a resume.

class TrainingState:
    """Networks, optimizers, loss, counters and ADA statistics: everything a resumed run needs.

    Saving: `snapshot_data(resume_state(rank_states, ...))` -> the pickled dict (official keys + RESUME_STATE_KEY),
    with `rank_state()` gathered from every process. Loading: `load_weights()` (any snapshot, official ones
    included), then `load_resume_state()` (ours: counters, optimizers, this rank's state) for an exact resume."""

    def __init__(self, G, D, G_ema, augment_pipe, loss, phases, optimizers, training_set_kwargs):
        self.G, self.D, self.G_ema, self.augment_pipe = G, D, G_ema, augment_pipe
        self.loss = loss
        self.phases = phases
        self.optimizers = optimizers
        self.training_set_kwargs = training_set_kwargs
        self.cur_nimg = 0           # Images shown to D so far (all processes together).
        self.cur_tick = 0           # Index of the tick in progress.
        self.batch_idx = 0          # Iterations done; decides which lazy-regularisation phases run.
        self.tick_start_nimg = 0    # cur_nimg at the start of the current tick.
        self.elapsed_sec = 0.0      # Training time before this process started (for the status line).
        self.ada = None             # training.augment.AdaController tuning augment_pipe.p (--aug=ada), or None.
        self.augment_options = None # augment_options() of this run: tells a resumed run whether --aug/--p changed.

    def modules(self):
        return dict(G=self.G, D=self.D, G_ema=self.G_ema, augment_pipe=self.augment_pipe)

    def rank_state(self, rng_state):
        """What differs between processes: RNGs (as captured at the tick boundary), the loss state (pl_mean) and
        the networks' buffers (w_avg, magnitude_ema are updated from each process's own fakes)."""
        loss_state = self.loss.state_dict() if hasattr(self.loss, 'state_dict') else {}
        return dict(rng=rng_state, loss=loss_state,
                    buffers={name: {k: v.detach().cpu().clone() for k, v in module.named_buffers()}
                             for name, module in [('G', self.G), ('D', self.D)]})

    def load_rank_state(self, rank_state, device):
        """Restore rank_state(); the RNG part is returned for the caller to restore last."""
        if hasattr(self.loss, 'load_state_dict'):
            self.loss.load_state_dict(rank_state['loss'])
        for name, module in [('G', self.G), ('D', self.D)]:
            saved = rank_state['buffers'][name]
            for k, v in module.named_buffers():
                if k in saved:
                    v.copy_(saved[k].to(v.device))
        return rank_state['rng']

    def resume_state(self, rank_states, num_gpus, batch_size, elapsed_sec):
        """The RESUME_STATE_KEY entry: counters as they will be at the start of the next tick."""
        return dict(version=RESUME_STATE_VERSION, cur_nimg=self.cur_nimg, cur_tick=self.cur_tick + 1,
                    batch_idx=self.batch_idx, tick_start_nimg=self.cur_nimg, data_position=self.cur_nimg,
                    elapsed_sec=elapsed_sec, num_gpus=num_gpus, batch_size=batch_size,
                    ada=self.ada.state_dict() if self.ada is not None else None, augment=self.augment_options,
                    optimizers={name: opt.state_dict() for name, opt in self.optimizers.items()},
                    ranks=rank_states)

    def snapshot_data(self, resume_state=None):
        """Snapshot dict: modules deep-copied to CPU in eval mode without grads, plus the resume state."""
        data = dict(training_set_kwargs=dict(self.training_set_kwargs))
        for name, module in self.modules().items():
            if module is not None:
                module = copy.deepcopy(module).eval().requires_grad_(False).cpu()
            data[name] = module
        if resume_state is not None:
            data[RESUME_STATE_KEY] = resume_state
        return data

    def load_weights(self, resume_data, names=('G', 'D', 'G_ema')):
        """Copy the named modules' parameters and buffers (the augment pipe's: its p) from a snapshot dict."""
        for name, module in self.modules().items():
            if name in names and module is not None and resume_data.get(name) is not None:
                misc.copy_params_and_buffers(resume_data[name], module, require_all=False)

    def load_resume_state(self, resume_state, rank, num_gpus, batch_size, device):
        """Counters, optimizers and this rank's state (the ADA controller's: setup_ada()); returns the RNG state to
        restore last (None if the process layout changed, in which case the run continues but not bit-exactly)."""
        self.cur_nimg = resume_state['cur_nimg']
        self.cur_tick = resume_state['cur_tick']
        self.batch_idx = resume_state['batch_idx']
        self.tick_start_nimg = resume_state['tick_start_nimg']
        self.elapsed_sec = resume_state['elapsed_sec']
        for name, opt in self.optimizers.items():
            opt.load_state_dict(resume_state['optimizers'][name])
        same_layout = resume_state['num_gpus'] == num_gpus and resume_state['batch_size'] == batch_size
        if not same_layout:
            return None
        return self.load_rank_state(resume_state['ranks'][rank], device)

#----------------------------------------------------------------------------
# Phases: one training iteration.

def average_gradients(module, num_gpus):
    """Average the gradients of `module` over processes and replace NaN/Inf by finite values.

    Returns the number of non-finite gradient entries (after averaging), to be counted and reported."""
    params = [param for param in module.parameters() if param.numel() > 0 and param.grad is not None]
    if not params:
        return 0
    flat = torch.cat([param.grad.flatten() for param in params])
    if num_gpus > 1:
        torch.distributed.all_reduce(flat)
        flat /= num_gpus
    num_nonfinite = int((~torch.isfinite(flat)).sum())
    misc.nan_to_num(flat, nan=0, posinf=1e5, neginf=-1e5, out=flat)
    for param, grad in zip(params, flat.split([param.numel() for param in params])):
        param.grad = grad.reshape(param.shape)
    return num_nonfinite


def run_phases(state, batch, num_gpus, phase_timer=None, accelerator=None):
    """Accumulate, average and apply the gradients of every phase due at this iteration (each timed by
    `phase_timer`, a training.phase_timing.PhaseTimer, if given; with the precision, compiled modules and
    gradient clipping of `accelerator`, an accel.Accelerator, if given)."""
    real_img, real_c, gen_z, gen_c = batch
    accelerator = accelerator or accel.Accelerator()
    for phase, phase_gen_z, phase_gen_c in zip(state.phases, gen_z, gen_c):
        if state.batch_idx % phase.interval != 0:
            continue
        if phase_timer is not None:
            phase_timer.start(phase.name)
        phase.opt.zero_grad(set_to_none=True)
        phase.module.requires_grad_(True)
        loss = accelerator.loss_for(phase.name, state.loss)
        for round_img, round_c, round_z, round_gen_c in zip(real_img, real_c, phase_gen_z, phase_gen_c):
            loss.accumulate_gradients(phase=phase.name, real_img=accelerator.images(round_img), real_c=round_c,
                                      gen_z=round_z, gen_c=round_gen_c, gain=phase.gain, cur_nimg=state.cur_nimg)
        phase.module.requires_grad_(False)
        with torch.autograd.profiler.record_function(phase.name + '_opt'):
            num_nonfinite = average_gradients(phase.module, num_gpus)
            training_stats.report('Progress/nonfinite_grads/' + phase.name, num_nonfinite)
            accelerator.clip_gradients(phase.name, phase.module)
            phase.opt.step()
        if phase_timer is not None:
            phase_timer.stop(phase.name)


@torch.no_grad()
def update_G_ema(G, G_ema, cur_nimg, batch_size, ema_kimg, ema_rampup):
    """G_ema = beta G_ema + (1 - beta) G with a half-life of ema_kimg (ramped up as cur_nimg * ema_rampup early on,
    StyleGAN2-ADA App. B); G_ema's buffers (w_avg, ...) are copied from G."""
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    ema_beta = 0.5 ** (batch_size / max(ema_nimg, 1e-8))
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.copy_(p.lerp(p_ema, ema_beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


def step_ada(ada, ada_stats):
    """ADA (StyleGAN2-ADA Sec. 3), once per iteration: feed E[sign(D(real))] as the loss reported it (reduced over
    processes by the collector) to the controller, which moves p every ada_interval iterations."""
    ada_stats.update()
    ada.accumulate_mean(ada_stats.mean('Loss/signs/real'), ada_stats.num('Loss/signs/real'))
    ada.step()

#----------------------------------------------------------------------------
# Maintenance: image grids, status line, stats files, snapshots, metrics.

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


def gather_objects(obj, num_gpus):
    """[obj of rank 0, obj of rank 1, ...] on every rank (collective when num_gpus > 1)."""
    if num_gpus == 1:
        return [obj]
    gathered = [None] * num_gpus
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


def save_network_snapshot(ctx, state, rng_state):
    """Write network-snapshot-<kimg>.pkl atomically (rank 0); collective. Returns (path, snapshot dict)."""
    rank_states = gather_objects(state.rank_state(rng_state), ctx.num_gpus)
    if ctx.num_gpus > 1:
        for module in state.modules().values():
            if module is not None:
                misc.check_ddp_consistency(module, ignore_regex=_EMA_BUFFER_REGEX)
    resume_state = state.resume_state(rank_states, ctx.num_gpus, ctx.batch_size, ctx.timer.total_sec(state))
    snapshot_data = state.snapshot_data(resume_state)
    snapshot_pkl = os.path.join(ctx.run_dir, snapshot_name(state.cur_nimg))
    if ctx.rank == 0:
        write_file_atomic(snapshot_pkl, lambda f: pickle.dump(snapshot_data, f))
        size = ctx.snapshots.after_write(snapshot_pkl)  # Older snapshots lose the resume state, --snap-keep.
        ctx.log(f'Saved {os.path.basename(snapshot_pkl)} ({size / 2**20:.1f} MiB with the resume state)')
    return snapshot_pkl, snapshot_data


def evaluate_metrics(ctx, snapshot_data, snapshot_pkl):
    """Run every requested metric on the snapshot's G_ema; rank 0 appends metric-<name>.jsonl. Returns results."""
    from metrics import metric_main
    results = dict()
    for metric in ctx.metrics:
        result_dict = metric_main.calc_metric(metric=metric, G=snapshot_data['G_ema'],
                                              dataset_kwargs=ctx.training_set_kwargs, num_gpus=ctx.num_gpus,
                                              rank=ctx.rank, device=ctx.device, detector_dir=ctx.detector_dir)
        if ctx.rank == 0:
            metric_main.report_metric(result_dict, run_dir=ctx.run_dir, snapshot_pkl=snapshot_pkl)
        results.update(result_dict.results)
    return results


def _warn_nonfinite_gradients(log, stats_dict):
    """Say so when NaN/Inf gradients were replaced during the tick (they are zeroed, never silently)."""
    prefix = 'Progress/nonfinite_grads/'
    counts = {name[len(prefix):]: value.mean * value.num for name, value in stats_dict.items()
              if name.startswith(prefix) and value.num > 0 and value.mean > 0}
    if counts:
        log('Warning: non-finite gradient entries replaced this tick: '
            + ', '.join(f'{phase} {int(count)}' for phase, count in sorted(counts.items())))


def rank0_decides(flag, num_gpus, device):
    """Rank 0's value of a boolean on every rank (collective when num_gpus > 1), so all ranks act alike."""
    if num_gpus == 1:
        return bool(flag)
    flag = torch.tensor(float(flag), device=device)
    torch.distributed.broadcast(flag, src=0)
    return bool(flag.item())


def time_is_up(budget, with_grid, num_gpus, device):
    """True once one more iteration plus the end of the run (final snapshot, grid if with_grid, exit) would cross
    --max-minutes (a training.time_budget.TimeBudget); called once per iteration. Rank 0's clock decides."""
    if budget.deadline is None:
        return False
    budget.note_iteration()
    return rank0_decides(budget.time_is_up(with_grid), num_gpus, device)


def plan_maintenance(ctx, state, done):
    """(grid, snapshot, metrics): what this tick's maintenance does. Under --max-minutes, the metrics and then the
    fakes grid are left out (and named in the log) when they would cross the deadline; never the final snapshot."""
    grid = bool(ctx.image_snapshot_ticks) and (done or state.cur_tick % ctx.image_snapshot_ticks == 0)
    snapshot = bool(ctx.network_snapshot_ticks) and (done or state.cur_tick % ctx.network_snapshot_ticks == 0)
    metrics = snapshot and bool(ctx.metrics)
    budget = ctx.budget
    if budget.deadline is None:
        return grid, snapshot, metrics
    reserve = budget.end_cost(with_grid=False) if not done else budget.costs.get('snapshot', 0.0)
    if metrics and (done or 'metrics' in budget.costs):  # A first, non-final evaluation is how its cost is learnt.
        metrics = rank0_decides(budget.fits('metrics', reserve_sec=reserve), ctx.num_gpus, ctx.device)
        if not metrics:
            cost = budget.costs.get('metrics')
            ctx.log(f'--max-minutes: left out metrics {",".join(ctx.metrics)} at {state.cur_nimg / 1000:g} kimg ('
                    + (f'they take about {cost:.0f} s' if cost is not None else 'their cost is not known yet')
                    + '); compute them later with calc_metrics.py --network=<snapshot>')
    if grid and ctx.rank == 0 and 'grid' in budget.costs and not budget.fits('grid', reserve_sec=reserve):
        grid = False  # Only rank 0 draws the grid (its cost is known from fakes_init.png).
        ctx.log(f'--max-minutes: left out fakes{state.cur_nimg // 1000:06d}.png (about {budget.costs["grid"]:.1f} s)')
    return grid, snapshot, metrics


def end_tick(ctx, state, done):
    """Everything between two ticks. The RNG state is set aside and put back, so that maintenance (images,
    metrics) does not change the training's random streams: a run resumed from this tick's snapshot continues
    exactly. Returns True when training should stop."""
    rng_state = capture_rng_state(ctx.device)
    tick_end_time = time.time()
    status = format_status_line(state, ctx.timer, ctx.total_kimg, ctx.device, ctx.budget.deadline)
    if ctx.device.type == 'cpu':  # CPU starvation (a GPU run's CPU mostly waits for the GPU, by design).
        cpu_status, cpu_sample = ctx.threads.end_tick()
        training_stats.report0('Resources/cpu_utilisation', cpu_sample['cpu'])
        status += f' {cpu_status}'
    ctx.log(status)
    if not done and ctx.abort_fn is not None and ctx.abort_fn():
        done = True
        ctx.log('Aborting...')
    if not done and time_is_up(ctx.budget, bool(ctx.image_snapshot_ticks), ctx.num_gpus, ctx.device):
        done = True
        ctx.log(f'Stopping: --max-minutes={ctx.max_minutes:g} reached.')
        ctx.log(f'Time so far: {ctx.budget.describe()}.')
    do_grid, do_snapshot, do_metrics = plan_maintenance(ctx, state, done)
    if ctx.rank == 0 and do_grid:
        start = time.time()
        image = ctx.grid.save_fakes(state.G_ema, os.path.join(ctx.run_dir, f'fakes{state.cur_nimg // 1000:06d}.png'))
        ctx.outputs.write_fakes_image(image, state.cur_nimg)
        ctx.budget.note_cost('grid', time.time() - start)
    metrics_dict = dict()
    if do_snapshot:
        start = time.time()
        snapshot_pkl, snapshot_data = save_network_snapshot(ctx, state, rng_state)
        ctx.budget.note_cost('snapshot', time.time() - start)
        if do_metrics:
            ctx.log('Evaluating metrics...')
            start = time.time()
            metrics_dict = evaluate_metrics(ctx, snapshot_data, snapshot_pkl)
            ctx.budget.note_cost('metrics', time.time() - start)
            if ctx.rank == 0:
                ctx.snapshots.after_metrics(snapshot_data, metrics_dict, snapshot_pkl)  # --snap-best.
        del snapshot_data
    ctx.phase_timer.report()
    ctx.stats_collector.update()
    stats_dict = ctx.stats_collector.as_dict()
    _warn_nonfinite_gradients(ctx.log, stats_dict)
    ctx.outputs.write_tick(stats_dict, metrics_dict, state.cur_nimg, ctx.timer.total_sec(state))
    if ctx.progress_fn is not None:
        ctx.progress_fn(state.cur_nimg // 1000, ctx.total_kimg)
    state.cur_tick += 1
    state.tick_start_nimg = state.cur_nimg
    ctx.timer.next_tick(tick_end_time)
    restore_rng_state(rng_state, ctx.device)
    return done

#----------------------------------------------------------------------------
# Setup: optional modules, resume, the whole state.

def check_optional_modules(metrics, augment_kwargs):
    """Fail in the first second, not at the first snapshot, when a requested metric or augment pipe is missing."""
    if metrics:
        try:
            from metrics import metric_main
        except ImportError as err:
            raise RuntimeError(f'--metrics={",".join(metrics)}: the metrics package cannot be imported ({err}); '
                               'train with --metrics=none') from err
        invalid = [metric for metric in metrics if not metric_main.is_valid_metric(metric)]
        if invalid:
            raise ValueError(f'--metrics: unknown metric(s) {", ".join(invalid)}; valid: '
                             f'{", ".join(metric_main.list_valid_metrics())}')
    if augment_kwargs is not None and augment_kwargs.get('class_name') is not None:
        try:
            dnnlib.util.get_obj_by_name(augment_kwargs['class_name'])
        except (ImportError, AttributeError) as err:
            raise RuntimeError(f'--aug: the augment pipe {augment_kwargs["class_name"]} is not available ({err}); '
                               'train with --aug=noaug') from err


def load_resume(resume_pkl, log):
    """(snapshot path, snapshot dict, resume state or None) for --resume, or (None, None, None).

    Stale temporary files of killed runs in a resumed run directory are removed first."""
    if resume_pkl is None:
        return None, None, None
    path = find_latest_snapshot(resume_pkl)
    if not dnnlib.util.is_url(path):
        folder = os.path.dirname(os.path.abspath(path))
        for name in dnnlib.util.remove_stale_temp_files(folder):
            log(f'Removed {os.path.join(folder, name)} (a partial file of a killed process)')
    log(f'Resuming from "{path}"')
    try:
        data = load_snapshot(path)
    except (OSError, pickle.UnpicklingError) as err:
        raise SetupError(f'--resume={path}: cannot load the snapshot: {err}') from err
    resume_state = data.get(RESUME_STATE_KEY)
    if resume_state is None:
        log('The snapshot has no resume state (an official or older pickle): loading weights only; counters, '
            'optimizers and random streams start fresh.')
    elif resume_state.get('version') != RESUME_STATE_VERSION:
        raise SetupError(f'--resume={path}: resume state version {resume_state.get("version")} is not '
                         f'{RESUME_STATE_VERSION}; this code cannot continue that run exactly')
    return path, data, resume_state


def exact_resume_blocker(resume_data, D_kwargs):
    """Why a snapshot's resume state cannot continue this run, or None. --freezed makes D's first layers buffers,
    so a snapshot that froze a different number of layers holds optimizer state for other parameters (transfer
    learning: fine-tune the snapshot's weights with some D layers frozen)."""
    old_kwargs = getattr(resume_data.get('D'), 'init_kwargs', None) or {}
    old_freeze = (old_kwargs.get('block_kwargs') or {}).get('freeze_layers', 0)
    new_freeze = (D_kwargs.get('block_kwargs') or {}).get('freeze_layers', 0)
    if old_freeze != new_freeze:
        return f'The snapshot froze the first {old_freeze} D layers, this run (--freezed) {new_freeze}'
    return None


@torch.no_grad()
def broadcast_modules(modules, num_gpus):
    """Make every process start from rank 0's parameters and buffers."""
    if num_gpus == 1:
        return
    for module in modules:
        if module is not None:
            for tensor in misc.params_and_buffers(module):
                torch.distributed.broadcast(tensor, src=0)


def augment_options(augment_kwargs, ada_target, augment_p):
    """The user's augmentation choice as a resume state records it: dict(mode=noaug|ada|fixed, p=--p or None)."""
    if augment_kwargs is None:
        return dict(mode='noaug', p=None)
    if ada_target is not None:
        return dict(mode='ada', p=None)
    return dict(mode='fixed', p=float(augment_p))


def apply_weights_only_resume_overrides(ctx, overrides):
    """Fine-tuning from a pickle (the official --resume): e.g. ada_kimg=100, ema_rampup=None and
    loss_kwargs=dict(blur_init_sigma=0). Dict values update the option of that name, others replace it."""
    for key, value in overrides.items():
        ctx[key] = dict(ctx[key] or {}, **value) if isinstance(value, dict) else value
    ctx.log(f'Weights-only resume: {overrides}')


def recorded_augment_options(resume_state, snapshot_path):
    """augment_options() of the run that wrote a snapshot: from its resume state or, for snapshots that predate
    that record, from the training_options.json beside it; None if neither says."""
    if resume_state.get('augment') is not None:
        return resume_state['augment']
    options_path = os.path.join(os.path.dirname(os.path.abspath(snapshot_path)), 'training_options.json')
    try:
        with open(options_path, 'rt') as f:
            old = json.load(f)
        return augment_options(old['augment_kwargs'], old['ada_target'], old['augment_p'])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def augment_changed(old_options, new_options, log):
    """Exact resume: whether --aug or --p differs from the snapshot's run (then p starts at the new option's value
    instead of continuing, and the log says so). Unknown old options (None) count as unchanged."""
    if old_options is None or old_options == new_options:
        return False
    log(f'Augmentation changed since the snapshot (--aug={old_options["mode"]} p={old_options["p"]} -> '
        f'--aug={new_options["mode"]} p={new_options["p"]}): p starts at the new option\'s value instead of '
        'continuing.')
    return True


def setup_state(ctx):
    """Data, networks, phases and loss, resumed if asked. Returns (state, RNG state to restore last or None)."""
    resume_path, resume_data, resume_state = load_resume(ctx.resume_pkl, ctx.log)
    if resume_state is not None and (reason := exact_resume_blocker(resume_data, ctx.D_kwargs)) is not None:
        ctx.log(f'{reason}: loading weights only; counters, optimizers and random streams start fresh.')
        resume_state = None
    if resume_data is not None and resume_state is None and ctx.weights_only_resume_overrides:
        apply_weights_only_resume_overrides(ctx, ctx.weights_only_resume_overrides)
    start_nimg = resume_state['data_position'] if resume_state is not None else 0
    ctx.log('Loading training set...')
    try:
        ctx.training_set, ctx.training_set_iterator = setup_data(
            ctx.training_set_kwargs, ctx.data_loader_kwargs, ctx.rank, ctx.num_gpus, ctx.loader_batch,
            ctx.random_seed, start_nimg, ctx.device)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise SetupError(f'--data={ctx.training_set_kwargs.get("path")}: {err}') from err
    ctx.log(f'Num images: {len(ctx.training_set)}, image shape: {list(ctx.training_set.image_shape)}, '
            f'label shape: {list(ctx.training_set.label_shape)}')
    ctx.log('Constructing networks...')
    G, D, G_ema, augment_pipe = construct_networks(ctx.training_set, ctx.G_kwargs, ctx.D_kwargs, ctx.augment_kwargs,
                                                   ctx.augment_p, ctx.device)
    if resume_data is not None:
        try:
            check_resume_compatible(resume_path, resume_data, G, D)
        except ValueError as err:
            raise SetupError(str(err)) from err
    phases, optimizers = build_phases(G, D, ctx.G_opt_kwargs, ctx.D_opt_kwargs, ctx.G_reg_interval,
                                      ctx.D_reg_interval, n_critic=ctx.n_critic)
    loss = dnnlib.util.construct_class_by_name(device=ctx.device, G=G, D=D, augment_pipe=augment_pipe,
                                               **ctx.loss_kwargs)
    state = TrainingState(G, D, G_ema, augment_pipe, loss, phases, optimizers, ctx.training_set_kwargs)
    state.augment_options = augment_options(ctx.augment_kwargs, ctx.ada_target, ctx.augment_p)
    keep_p = resume_state is not None and not augment_changed(
        recorded_augment_options(resume_state, resume_path), state.augment_options, ctx.log)
    if resume_state is not None and not keep_p:
        resume_state = dict(resume_state, ada=None)  # A new ADA controller, not the old run's statistics.
    if resume_data is not None:  # A weights-only resume starts p at augment_p, as the official --resume does.
        state.load_weights(resume_data, names=('G', 'D', 'G_ema') + (('augment_pipe',) if keep_p else ()))
    broadcast_modules(state.modules().values(), ctx.num_gpus)
    rng_state = None
    if resume_state is not None:
        rng_state = state.load_resume_state(resume_state, ctx.rank, ctx.num_gpus, ctx.batch_size, ctx.device)
        if rng_state is None:
            ctx.log(f'Warning: the snapshot was written with {resume_state["num_gpus"]} GPUs and batch '
                    f'{resume_state["batch_size"]}; continuing with {ctx.num_gpus} and {ctx.batch_size}, '
                    'which is not bit-exact.')
        if state.cur_nimg >= round(ctx.total_kimg * 1000):
            raise SetupError(f'--kimg={ctx.total_kimg:g} is already reached: the snapshot is at '
                             f'{state.cur_nimg / 1000:g} kimg (--kimg counts from the start of the original run)')
        ctx.log(f'Continuing exactly at {state.cur_nimg / 1000:g} kimg, tick {state.cur_tick}.')
    state.ada = setup_ada(ctx, state, resume_state)
    return state, rng_state


def setup_ada(ctx, state, resume_state):
    """The ADA controller of --aug=ada (None for a fixed p or no augmentation), continuing a resumed run's pending
    statistics and iteration count; sets ctx.ada_stats, the collector of the loss's Loss/signs/real."""
    ctx.ada_stats = None
    if state.augment_pipe is None or ctx.ada_target is None:
        return None
    from training.augment import AdaController
    ada = AdaController(state.augment_pipe, target=ctx.ada_target, interval=ctx.ada_interval, ada_kimg=ctx.ada_kimg,
                        batch_size=ctx.batch_size, report_stats=False)  # The status line reports p once a tick.
    if resume_state is not None and resume_state.get('ada') is not None:
        ada.load_state_dict(resume_state['ada'])
    ctx.ada_stats = training_stats.Collector(regex='Loss/signs/real', keep_previous=False)
    return ada


def setup_outputs(ctx, state):
    """Module summaries, reals.png and fakes_init.png (rank 0), stats collectors and the per-tick files."""
    if ctx.rank == 0:
        z = torch.zeros([ctx.batch_gpu, state.G.z_dim], device=ctx.device)
        c = torch.zeros([ctx.batch_gpu, state.G.c_dim], device=ctx.device)
        img = misc.print_module_summary(state.G, [z, c])
        misc.print_module_summary(state.D, [img, c])
        ctx.log('Exporting sample images...')
        ctx.grid = ImageGrid(ctx.training_set, ctx.random_seed, state.G.z_dim, ctx.batch_gpu, ctx.device,
                             ctx.image_grid_size)
        save_image_grid(ctx.grid.reals, os.path.join(ctx.run_dir, 'reals.png'), drange=[0, 255],
                        grid_size=ctx.grid.grid_size)
        start = time.time()
        ctx.grid.save_fakes(state.G_ema, os.path.join(ctx.run_dir, 'fakes_init.png'))
        ctx.budget.note_cost('grid', time.time() - start)
    ctx.stats_collector = training_stats.Collector(regex='.*')
    ctx.outputs = RunOutputs(ctx.run_dir, ctx.rank, ctx.log)
    ctx.timer = TickTimer()
    ctx.phase_timer = PhaseTimer(ctx.device)
    ctx.budget.note_cost('snapshot', estimate_snapshot_sec(state.modules(), state.optimizers))
    ctx.budget.start_training()
    ctx.snapshots = SnapshotKeeper(ctx.run_dir, RESUME_STATE_KEY, keep=ctx.snap_keep, best=ctx.snap_best, log=ctx.log)

#----------------------------------------------------------------------------
# The driver.

def training_loop(
    run_dir                 = '.',      # Output directory (exists).
    training_set_kwargs     = None,     # Options of the dataset class (class_name, path, ...).
    data_loader_kwargs      = None,     # Options of torch.utils.data.DataLoader (num_workers, pin_memory, ...).
    G_kwargs                = None,     # Options of the generator (class_name, z_dim, w_dim, mapping_kwargs, ...).
    D_kwargs                = None,     # Options of the discriminator.
    G_opt_kwargs            = None,     # Options of G's optimizer (class_name, lr, betas, eps).
    D_opt_kwargs            = None,     # Options of D's optimizer.
    augment_kwargs          = None,     # Options of the augment pipe; None = no augmentation.
    loss_kwargs             = None,     # Options of the loss (class_name, r1_gamma, ...).
    metrics                 = (),       # Metrics evaluated at each network snapshot.
    random_seed             = 0,        # Global seed; process r uses seed * num_gpus + r.
    num_gpus                = 1,        # Number of processes taking part.
    rank                    = 0,        # This process's rank, 0 <= rank < num_gpus.
    batch_size              = 4,        # Images per iteration, all processes together.
    batch_gpu               = 4,        # Images per forward/backward pass in one process.
    ema_kimg                = 10,       # Half-life of G_ema in kimg.
    ema_rampup              = 0.05,     # Half-life is at most cur_nimg * ema_rampup; None = no ramp-up.
    G_reg_interval          = None,     # Lazy regularisation interval of G; None = regularise in the main phase.
    D_reg_interval          = 16,       # Lazy regularisation interval of D; None = regularise in the main phase.
    augment_p               = 0,        # Initial augmentation probability.
    ada_target              = None,     # ADA target for E[sign(D(real))]; None = fixed p.
    ada_interval            = 4,        # Iterations between ADA adjustments.
    ada_kimg                = 500,      # ADA can move p from 0 to 1 in this many kimg.
    total_kimg              = 25000,    # Train until this many kimg in total (a resumed run counts on).
    kimg_per_tick           = 4,        # Length of a tick (status line, stats) in kimg.
    image_snapshot_ticks    = 50,       # Fakes grid every this many ticks; None = never.
    network_snapshot_ticks  = 50,       # Network snapshot (+ metrics) every this many ticks; None = never.
    image_grid_size         = None,     # (columns, rows) of reals.png and fakes*.png; None = about 4K wide.
    resume_pkl              = None,     # Snapshot file or run directory to resume from; None = start fresh.
    resume_kimg             = 0,        # Unused (official argument, kept for compatibility).
    cudnn_benchmark         = True,     # torch.backends.cudnn.benchmark.
    abort_fn                = None,     # Called at every tick; returning True ends training (after a snapshot).
    progress_fn             = None,     # Called at every tick with (cur_kimg, total_kimg).
    device                  = None,     # torch device; None = this rank's GPU if CUDA is available, else CPU.
    weights_only_resume_overrides = None,  # Options changed when resuming from a pickle without resume state.
    max_minutes             = None,     # Stop (with a final snapshot) after this much wall time; None = no limit.
    snap_keep               = None,     # Keep only the newest this many network snapshots; None = all.
    snap_best               = None,     # Also keep the best snapshot by this metric result ('fid50k_full'); None = no.
    run_start_time          = None,     # time.time() when the whole run began (train.py: process start); None = now.
    num_threads             = None,     # CPU threads: None = torch's setting, 0 = automatic (narrowed when starved).
    precision               = None,     # None/'fp16' = official mixed precision, 'fp32', 'bf16' (see accel.py).
    compile                 = False,    # torch.compile the main phases' G.mapping, G.synthesis and D.
    channels_last           = False,    # Networks and images in channels_last memory format.
    grad_clip               = None,     # Clip each phase's gradient to this L2 norm; None = off.
    detector_dir            = None,     # Folder searched first for metric detector files; None = cache/download.
    n_critic                = 1,        # D steps per G step (WGAN-GP: 5); G's phases run every n_critic iterations.
    progressive_kwargs      = None,     # Progressive growing (training.progressive.ProgressiveSchedule); None = off.
):
    """Train G and D; write the run directory's images, stats and snapshots. See the module docstring."""
    ctx = dnnlib.EasyDict(locals())
    ctx.start_time = time.time()
    ctx.budget = TimeBudget(max_minutes, run_start_time)
    ctx.metrics = list(metrics or [])
    ctx.data_loader_kwargs = dict(data_loader_kwargs or {})
    ctx.loss_kwargs = dict(loss_kwargs or {'class_name': 'training.loss.StyleGAN2Loss'})
    ctx.log = _make_log_fn(rank)
    check_optional_modules(ctx.metrics, augment_kwargs)
    if rank == 0:
        for name in dnnlib.util.remove_stale_temp_files(run_dir):
            ctx.log(f'Removed {os.path.join(run_dir, name)} (a partial file of a killed process)')
    # A minibatch per resolution (progressive growing) reads the data in chunks of batch_gpu per process.
    ctx.loader_batch = batch_gpu * num_gpus if (progressive_kwargs or {}).get('batch_per_resolution') else batch_size
    ctx.device = setup_environment(rank, num_gpus, random_seed, device, cudnn_benchmark)
    # CPU ranks of one run share the machine's cores (a GPU rank's CPU work is light: leave it the default).
    ctx.threads = threads.ThreadController(num_threads, num_gpus if ctx.device.type == 'cpu' else 1)
    if 'num_workers' in ctx.data_loader_kwargs:  # On a CPU, loader workers get only the cores training leaves free.
        ctx.data_loader_kwargs['num_workers'] = threads.cpu_loader_workers(
            ctx.data_loader_kwargs['num_workers'], ctx.threads.count, ctx.device.type)
    state, rng_state = setup_state(ctx)
    ctx.accelerator = accel.Accelerator(precision, compile, channels_last, grad_clip)
    ctx.accelerator.prepare(state.G, state.D, state.G_ema, state.loss)
    schedule = None
    if progressive_kwargs is not None:
        from training.progressive import ProgressiveSchedule
        schedule = ProgressiveSchedule(ctx.training_set.resolution, **progressive_kwargs)
        schedule.apply(state.cur_nimg, [state.G, state.D, state.G_ema], [])
    setup_outputs(ctx, state)
    if rng_state is not None:
        restore_rng_state(rng_state, ctx.device)
    total_nimg, tick_nimg = round(total_kimg * 1000), round(kimg_per_tick * 1000)  # Whole images, also for 0.052.
    ctx.log(f'Training for {total_kimg:g} kimg...')
    try:
        done = False
        while not done:
            iter_batch = schedule.batch_size(state.cur_nimg, batch_size) if schedule is not None else batch_size
            batch = fetch_batch(ctx.training_set_iterator, ctx.training_set, len(state.phases), batch_gpu,
                                state.G.z_dim, ctx.device, num_chunks=iter_batch // ctx.loader_batch)
            if schedule is not None:  # lod from cur_nimg; reals made to match what G draws at that lod.
                batch = (schedule.apply(state.cur_nimg, [state.G, state.D, state.G_ema], batch[0]),) + batch[1:]
            run_phases(state, batch, num_gpus, ctx.phase_timer, ctx.accelerator)
            ctx.threads.poll()
            update_G_ema(state.G, state.G_ema, state.cur_nimg, iter_batch, ctx.ema_kimg, ctx.ema_rampup)
            if state.ada is not None:
                step_ada(state.ada, ctx.ada_stats)
            state.cur_nimg += iter_batch
            state.batch_idx += 1
            done = state.cur_nimg >= total_nimg
            tick_over = done or state.cur_tick == 0 or state.cur_nimg >= state.tick_start_nimg + tick_nimg
            if not tick_over and not time_is_up(ctx.budget, bool(image_snapshot_ticks), num_gpus, ctx.device):
                continue  # A time limit may end the tick early, so that --max-minutes is kept to the iteration.
            done = end_tick(ctx, state, done)
    finally:
        ctx.outputs.close()
    ctx.log('Exiting...')
    return state
