"""The StyleGAN training loop: a short driver (`training_loop`) over named steps.

    setup        devices and seeds, data (training/data_feed.py), networks, phases (optimizers), loss, resume
    phases       one iteration: each phase (Gmain, Greg, Dmain, Dreg or Gboth, Dboth) accumulates gradients,
                 averages them over processes and steps its optimizer (StyleGAN2 App. B: lazy regularisation)
    maintenance  G_ema, ADA p, and at the end of each tick: status line, stats, images (training/run_outputs.py),
                 snapshot, metrics
    snapshot     `network-snapshot-<kimg>.pkl` in the official layout plus `resume_state` for exact resume (only
                 the newest snapshot keeps it; rotation and the best snapshot: training/snapshots.py)
    resume       from such a snapshot (everything) or from an official pickle (weights only): training/resume.py

Everything a resumed run needs lives in `TrainingState` (training/training_state.py), which saves and loads
itself; the random number generators are set aside during maintenance, so that a run that stops at a tick and
resumes produces the same weights as one that never stopped (bit-exact on CPU).
"""

import copy
import os
import pickle
import random
import time
import zipfile

import numpy as np
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
# The named steps live in their own modules; their names stay importable from here (train.py, tests, tools and
# training/cyclegan_loop.py use training_loop.<name>).
from training.data_feed import setup_data, fetch_batch
from training.resume import (  # noqa: F401
    SetupError, find_latest_snapshot, load_snapshot, network_family, describe_config_differences,
    check_resume_compatible, load_resume, exact_resume_blocker, augment_options, apply_weights_only_resume_overrides,
    recorded_augment_options, augment_changed)
from training.run_outputs import (  # noqa: F401
    make_log_fn, save_image_grid, setup_image_grid, ImageGrid, format_status_line, TickTimer, RunOutputs,
    warn_nonfinite_gradients, _cpu_mem_gb)
from training.training_state import (  # noqa: F401
    RESUME_STATE_KEY, RESUME_STATE_VERSION, TrainingState, capture_rng_state, restore_rng_state)

_make_log_fn = make_log_fn                              # Old private names, kept for callers that used them.
_warn_nonfinite_gradients = warn_nonfinite_gradients
write_file_atomic = dnnlib.util.write_file_atomic  # Temporary file + rename: readers never see half a file.
_EMA_BUFFER_REGEX = r'.*\.[^.]+_(avg|ema)'  # Buffers that legitimately differ between processes (w_avg, ...).

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


def _fused_adam_applies(module, opt_kwargs):
    """True for Adam/AdamW on CPU float parameters when the options do not choose an implementation: torch's fused
    CPU kernel updates each tensor in one pass instead of about nine ops (G of a 32x32 StyleGAN2 at cmax 64: 2.9 ->
    0.5 ms per step; the same update up to float rounding). On CUDA the default (foreach) is kept, as officially."""
    params = list(module.parameters())
    return (opt_kwargs.get('class_name') in ('torch.optim.Adam', 'torch.optim.AdamW') and
            'fused' not in opt_kwargs and 'foreach' not in opt_kwargs and len(params) > 0 and
            all(p.device.type == 'cpu' and p.dtype.is_floating_point for p in params))


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
        if _fused_adam_applies(module, opt_kwargs):
            opt_kwargs.fused = True
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
# Maintenance: status line, images, snapshots, metrics (what is shown and written: training/run_outputs.py).

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


def evaluate_metrics(ctx, G, dataset_kwargs, snapshot_pkl):
    """Run every metric of ctx.metrics on G (a generator, or the CycleGAN Translators) against dataset_kwargs;
    rank 0 appends metric-<name>.jsonl beside the snapshot. Returns {result name: value}."""
    from metrics import metric_main
    results = dict()
    for metric in ctx.metrics:
        result_dict = metric_main.calc_metric(metric=metric, G=G, dataset_kwargs=dataset_kwargs,
                                              num_gpus=ctx.num_gpus, rank=ctx.rank, device=ctx.device,
                                              detector_dir=ctx.detector_dir)
        if ctx.rank == 0:
            metric_main.report_metric(result_dict, run_dir=ctx.run_dir, snapshot_pkl=snapshot_pkl)
        results.update(result_dict.results)
    return results


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
            metrics_dict = evaluate_metrics(ctx, snapshot_data['G_ema'], ctx.training_set_kwargs, snapshot_pkl)
            ctx.budget.note_cost('metrics', time.time() - start)
            if ctx.rank == 0:
                ctx.snapshots.after_metrics(snapshot_data, metrics_dict, snapshot_pkl)  # --snap-best.
        del snapshot_data
    ctx.phase_timer.report()
    ctx.stats_collector.update()
    stats_dict = ctx.stats_collector.as_dict()
    warn_nonfinite_gradients(ctx.log, stats_dict)
    ctx.outputs.write_tick(stats_dict, metrics_dict, state.cur_nimg, ctx.timer.total_sec(state))
    if ctx.progress_fn is not None:
        ctx.progress_fn(state.cur_nimg // 1000, ctx.total_kimg)
    state.cur_tick += 1
    state.tick_start_nimg = state.cur_nimg
    ctx.timer.next_tick(tick_end_time)
    restore_rng_state(rng_state, ctx.device)
    return done

#----------------------------------------------------------------------------
# Setup: optional modules, the whole state (reading a resume snapshot: training/resume.py).

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
            valid = [name for name in metric_main.list_valid_metrics() if not metric_main.is_translation_metric(name)]
            raise ValueError(f'--metrics: unknown metric(s) {", ".join(invalid)}; valid: {", ".join(valid)}')
        translation = [metric for metric in metrics if metric_main.is_translation_metric(metric)]
        if translation:
            raise ValueError(f'--metrics: {", ".join(translation)} measure CycleGAN snapshots (calc_metrics.py '
                             '--network=<CycleGAN snapshot> --data=<unpaired dataset>), not this training run')
    if augment_kwargs is not None and augment_kwargs.get('class_name') is not None:
        try:
            dnnlib.util.get_obj_by_name(augment_kwargs['class_name'])
        except (ImportError, AttributeError) as err:
            raise RuntimeError(f'--aug: the augment pipe {augment_kwargs["class_name"]} is not available ({err}); '
                               'train with --aug=noaug') from err


@torch.no_grad()
def broadcast_modules(modules, num_gpus):
    """Make every process start from rank 0's parameters and buffers."""
    if num_gpus == 1:
        return
    for module in modules:
        if module is not None:
            for tensor in misc.params_and_buffers(module):
                torch.distributed.broadcast(tensor, src=0)


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
    state, schedule = setup_run(ctx)
    total_nimg, tick_nimg = round(total_kimg * 1000), round(kimg_per_tick * 1000)  # Whole images, also for 0.052.
    ctx.log(f'Training for {total_kimg:g} kimg...')
    try:
        done = False
        while not done:
            train_iteration(ctx, state, schedule)
            done = state.cur_nimg >= total_nimg
            tick_over = done or state.cur_tick == 0 or state.cur_nimg >= state.tick_start_nimg + tick_nimg
            if not tick_over and not time_is_up(ctx.budget, bool(image_snapshot_ticks), num_gpus, ctx.device):
                continue  # A time limit may end the tick early, so that --max-minutes is kept to the iteration.
            done = end_tick(ctx, state, done)
    finally:
        ctx.outputs.close()
    ctx.log('Exiting...')
    return state


def setup_run(ctx):
    """Everything before the first iteration, from training_loop()'s arguments in `ctx`: devices, threads, data,
    networks, resume state, outputs. Returns (state, progressive schedule or None)."""
    ctx.start_time = time.time()
    ctx.budget = TimeBudget(ctx.max_minutes, ctx.run_start_time)
    ctx.metrics = list(ctx.metrics or [])
    ctx.data_loader_kwargs = dict(ctx.data_loader_kwargs or {})
    ctx.loss_kwargs = dict(ctx.loss_kwargs or {'class_name': 'training.loss.StyleGAN2Loss'})
    ctx.log = make_log_fn(ctx.rank)
    check_optional_modules(ctx.metrics, ctx.augment_kwargs)
    if ctx.rank == 0:
        for name in dnnlib.util.remove_stale_temp_files(ctx.run_dir):
            ctx.log(f'Removed {os.path.join(ctx.run_dir, name)} (a partial file of a killed process)')
    # A minibatch per resolution (progressive growing) reads the data in chunks of batch_gpu per process.
    per_resolution = (ctx.progressive_kwargs or {}).get('batch_per_resolution')
    ctx.loader_batch = ctx.batch_gpu * ctx.num_gpus if per_resolution else ctx.batch_size
    ctx.device = setup_environment(ctx.rank, ctx.num_gpus, ctx.random_seed, ctx.device, ctx.cudnn_benchmark)
    # CPU ranks of one run share the machine's cores (a GPU rank's CPU work is light: leave it the default).
    ctx.threads = threads.ThreadController(ctx.num_threads, ctx.num_gpus if ctx.device.type == 'cpu' else 1)
    if 'num_workers' in ctx.data_loader_kwargs:  # On a CPU, loader workers get only the cores training leaves free.
        ctx.data_loader_kwargs['num_workers'] = threads.cpu_loader_workers(
            ctx.data_loader_kwargs['num_workers'], ctx.threads.count, ctx.device.type)
    state, rng_state = setup_state(ctx)
    ctx.accelerator = accel.Accelerator(ctx.precision, ctx.compile, ctx.channels_last, ctx.grad_clip)
    ctx.accelerator.prepare(state.G, state.D, state.G_ema, state.loss)
    schedule = None
    if ctx.progressive_kwargs is not None:
        from training.progressive import ProgressiveSchedule
        schedule = ProgressiveSchedule(ctx.training_set.resolution, **ctx.progressive_kwargs)
        schedule.apply(state.cur_nimg, [state.G, state.D, state.G_ema], [])
    setup_outputs(ctx, state)
    if rng_state is not None:
        restore_rng_state(rng_state, ctx.device)
    return state, schedule


def train_iteration(ctx, state, schedule):
    """One minibatch: every phase due, G_ema, ADA; advances state.cur_nimg and state.batch_idx."""
    iter_batch = schedule.batch_size(state.cur_nimg, ctx.batch_size) if schedule is not None else ctx.batch_size
    batch = fetch_batch(ctx.training_set_iterator, ctx.training_set, len(state.phases), ctx.batch_gpu,
                        state.G.z_dim, ctx.device, num_chunks=iter_batch // ctx.loader_batch)
    if schedule is not None:  # lod from cur_nimg; reals made to match what G draws at that lod.
        batch = (schedule.apply(state.cur_nimg, [state.G, state.D, state.G_ema], batch[0]),) + batch[1:]
    run_phases(state, batch, ctx.num_gpus, ctx.phase_timer, ctx.accelerator)
    ctx.threads.poll()
    update_G_ema(state.G, state.G_ema, state.cur_nimg, iter_batch, ctx.ema_kimg, ctx.ema_rampup)
    if state.ada is not None:
        step_ada(state.ada, ctx.ada_stats)
    state.cur_nimg += iter_batch
    state.batch_idx += 1
