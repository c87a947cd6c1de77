"""The CycleGAN training loop (Zhu et al. 2017): a short driver over named steps, beside training_loop.py.

    setup        devices and seeds, the two domains' data streams, G_AB, G_BA, D_A, D_B, Adam, pools, resume
    iteration    generators step (LSGAN both directions + cycle + identity), then discriminators step (LSGAN on
                 real images and on fakes from the history pools); lr constant, then linearly to zero
    maintenance  at the end of each tick: status line, stats.jsonl / TensorBoard, fakes grid, snapshot

The run directory, status line, stats, snapshot rotation, time limit and exact-resume machinery are those of the
StyleGAN loop (training/training_loop.py, snapshots.py, time_budget.py, torch_utils/training_stats.py); this
module adds only what CycleGAN needs. Each process trains on its own batch of A and of B, and gradients are
averaged over processes before each optimizer step (DDP). Everything a resumed run needs lives in
`CycleGANState`; RNGs are set aside during maintenance, so a resumed run equals an uninterrupted one (bit-exact
on CPU with the same number of processes).
"""

import copy
import itertools
import os
import pickle
import time

import numpy as np
import torch

import dnnlib
from torch_utils import misc
from torch_utils import threads
from torch_utils import training_stats
from training import cyclegan_loss
from training import training_loop as base
from training import unpaired_dataset
from training.cyclegan_snapshot import NETWORK_KEYS, RESUME_STATE_KEY, load_cyclegan_snapshot
from training.snapshots import SnapshotKeeper, snapshot_name
from training.time_budget import TimeBudget, estimate_snapshot_sec

RESUME_STATE_VERSION = 1
_DOMAIN_SEED_OFFSET = {'A': 0, 'B': 1_000_003}  # Independent shuffles of A and B: nothing is paired.

#----------------------------------------------------------------------------
# The state that survives a resume.

class CycleGANState:
    """Networks, optimizers, history pools and counters. Saving: snapshot_data(resume_state(...)); loading:
    load_weights() then load_resume_state() (see training_state.TrainingState for the same pattern)."""

    def __init__(self, nets, G_opt, D_opt, pools, training_set_kwargs):
        self.nets = nets                    # {'G_AB', 'G_BA', 'D_A', 'D_B'}: torch modules on the device.
        self.G_opt, self.D_opt = G_opt, D_opt
        self.pools = pools                  # {'A': ImagePool of fake A images, 'B': ... of fake B images}.
        self.training_set_kwargs = training_set_kwargs
        self.augment_pipe = None            # Read by the shared status line (no augmentation here).
        self.cur_nimg = 0                   # Image pairs (one A + one B) trained on so far, all processes.
        self.cur_tick = 0
        self.batch_idx = 0
        self.tick_start_nimg = 0
        self.elapsed_sec = 0.0

    def rank_state(self, rng_state):
        return dict(rng=rng_state, pools={name: pool.state_dict() for name, pool in self.pools.items()})

    def resume_state(self, rank_states, num_gpus, batch_size, elapsed_sec):
        return dict(version=RESUME_STATE_VERSION, cur_nimg=self.cur_nimg, cur_tick=self.cur_tick + 1,
                    batch_idx=self.batch_idx, tick_start_nimg=self.cur_nimg, data_position=self.cur_nimg,
                    elapsed_sec=elapsed_sec, num_gpus=num_gpus, batch_size=batch_size,
                    optimizers=dict(G=self.G_opt.state_dict(), D=self.D_opt.state_dict()), ranks=rank_states)

    def snapshot_data(self, resume_state=None):
        data = dict(training_set_kwargs=copy.deepcopy(self.training_set_kwargs))
        for name, module in self.nets.items():
            data[name] = copy.deepcopy(module).eval().requires_grad_(False).cpu()
        if resume_state is not None:
            data[RESUME_STATE_KEY] = resume_state
        return data

    def load_weights(self, data):
        for name, module in self.nets.items():
            misc.copy_params_and_buffers(data[name], module, require_all=True)

    def load_resume_state(self, resume_state, rank, num_gpus, batch_size):
        """Counters, optimizers, this rank's pools; returns the RNG state to restore last (None when the process
        layout changed: the run continues, not bit-exactly)."""
        for key in ('cur_nimg', 'cur_tick', 'batch_idx', 'tick_start_nimg', 'elapsed_sec'):
            setattr(self, key, resume_state[key])
        self.G_opt.load_state_dict(resume_state['optimizers']['G'])
        self.D_opt.load_state_dict(resume_state['optimizers']['D'])
        if resume_state['num_gpus'] != num_gpus or resume_state['batch_size'] != batch_size:
            return None
        rank_state = resume_state['ranks'][rank]
        for name, pool in self.pools.items():
            pool.load_state_dict(rank_state['pools'][name])
        return rank_state['rng']

#----------------------------------------------------------------------------
# Setup.

def construct_networks(G_kwargs, D_kwargs, img_channels, resolution, device):
    """{'G_AB', 'G_BA', 'D_A', 'D_B'} on `device`, in train mode without gradients."""
    common = dict(img_channels=img_channels, img_resolution=resolution)
    nets = dict()
    for name, kwargs in [('G_AB', G_kwargs), ('G_BA', G_kwargs), ('D_A', D_kwargs), ('D_B', D_kwargs)]:
        nets[name] = dnnlib.util.construct_class_by_name(**kwargs, **common).train().requires_grad_(False)
        nets[name] = nets[name].to(device)
    return nets


def setup_domains(ctx, start_nimg):
    """The two domain datasets and their endless per-process batch iterators, each at global position start_nimg
    of its own shuffled stream. Returns ({'A': dataset, 'B': dataset}, {'A': iterator, 'B': iterator})."""
    sets, iterators = dict(), dict()
    for name in ('A', 'B'):
        sets[name], iterators[name] = base.setup_data(
            ctx.training_set_kwargs[name], ctx.data_loader_kwargs, ctx.rank, ctx.num_gpus, ctx.batch_size,
            ctx.random_seed + _DOMAIN_SEED_OFFSET[name], start_nimg, ctx.device)
    shape_a, shape_b = sets['A'].image_shape, sets['B'].image_shape
    if shape_a != shape_b:
        raise ValueError(f'domains A and B hold images of shapes {shape_a} and {shape_b}; they must match')
    return sets, iterators


def build_optimizers(nets, lr, betas):
    """Adam over both generators together and over both discriminators together (CG Sec. 4)."""
    betas = [float(beta) for beta in betas]
    G_opt = torch.optim.Adam(itertools.chain(nets['G_AB'].parameters(), nets['G_BA'].parameters()), lr=lr,
                             betas=betas)
    D_opt = torch.optim.Adam(itertools.chain(nets['D_A'].parameters(), nets['D_B'].parameters()), lr=lr,
                             betas=betas)
    return G_opt, D_opt


def setup_state(ctx):
    """Data, networks, optimizers, pools; resumed if asked. Returns (state, RNG state to restore last or None)."""
    resume_data = resume_state = None
    if ctx.resume_pkl is not None:
        path = base.find_latest_snapshot(ctx.resume_pkl)
        ctx.log(f'Resuming from "{path}"')
        resume_data = load_cyclegan_snapshot(path)
        resume_state = resume_data.get(RESUME_STATE_KEY)
        if resume_state is None:
            ctx.log('The snapshot has no resume state: loading weights only.')
        elif resume_state.get('version') != RESUME_STATE_VERSION:
            raise ValueError(f'--resume={path}: resume state version {resume_state.get("version")} is not '
                             f'{RESUME_STATE_VERSION}')
    ctx.log('Loading training set...')
    ctx.training_sets, ctx.iterators = setup_domains(ctx, resume_state['data_position'] if resume_state else 0)
    image_shape = ctx.training_sets['A'].image_shape
    ctx.log(f'Num images: A {len(ctx.training_sets["A"])}, B {len(ctx.training_sets["B"])}, image shape: '
            f'{image_shape}')
    ctx.log('Constructing networks...')
    nets = construct_networks(ctx.G_kwargs, ctx.D_kwargs, image_shape[0], ctx.training_sets['A'].resolution,
                              ctx.device)
    G_opt, D_opt = build_optimizers(nets, ctx.lr, ctx.betas)
    seed = ctx.random_seed * ctx.num_gpus + ctx.rank
    pools = {name: cyclegan_loss.ImagePool(ctx.pool_size, seed=seed * 2 + i) for i, name in enumerate('AB')}
    state = CycleGANState(nets, G_opt, D_opt, pools, ctx.training_set_kwargs)
    if resume_data is not None:
        try:
            state.load_weights(resume_data)
        except Exception as err:
            raise ValueError(f'--resume: the snapshot\'s networks do not match this run\'s --ngf/--ndf/--blocks '
                             f'or image channels ({err})') from err
    base.broadcast_modules(nets.values(), ctx.num_gpus)
    rng_state = None
    if resume_state is not None:
        rng_state = state.load_resume_state(resume_state, ctx.rank, ctx.num_gpus, ctx.batch_size)
        if rng_state is None:
            ctx.log('Warning: the snapshot was written with another number of GPUs or batch size; continuing, '
                    'but not bit-exactly.')
        if state.cur_nimg >= round(ctx.total_kimg * 1000):
            raise ValueError(f'--kimg={ctx.total_kimg:g} is already reached: the snapshot is at '
                             f'{state.cur_nimg / 1000:g} kimg')
        ctx.log(f'Continuing exactly at {state.cur_nimg / 1000:g} kimg, tick {state.cur_tick}.')
    return state, rng_state

#----------------------------------------------------------------------------
# One iteration.

def fetch_reals(iterators, device, load_size=None):
    """(real_A, real_B): this process's batches, [batch_gpu, C, H, W] float in [-1, 1]; each image resized to
    `load_size` and randomly cropped back (unpaired_dataset.resize_and_crop) when load_size is given."""
    reals = []
    for name in ('A', 'B'):
        img, _labels = next(iterators[name])
        img = img.to(device).to(torch.float32) / 127.5 - 1
        reals.append(img if load_size is None else unpaired_dataset.resize_and_crop(img, load_size))
    return reals[0], reals[1]


def _step(optimizer, modules, num_gpus, phase):
    """Average the gradients of `modules` over processes (counting non-finite entries), then step."""
    for module in modules:
        num_nonfinite = base.average_gradients(module, num_gpus)
        training_stats.report(f'Progress/nonfinite_grads/{phase}', num_nonfinite)
    optimizer.step()


def generators_step(state, real_A, real_B, num_gpus, lambda_cycle, identity_ratio):
    """Train G_AB and G_BA on one batch (CG Eq. 3 + identity). Returns (fake_A, fake_B) detached, for D."""
    G_AB, G_BA, D_A, D_B = (state.nets[key] for key in NETWORK_KEYS)
    state.G_opt.zero_grad(set_to_none=True)
    D_A.requires_grad_(False)  # Gradients flow through D to G, but D's parameters do not take any.
    D_B.requires_grad_(False)
    G_AB.requires_grad_(True)
    G_BA.requires_grad_(True)
    fake_B = G_AB(real_A)                   # [N, C, H, W]: A translated to B.
    fake_A = G_BA(real_B)
    adv_ab = cyclegan_loss.lsgan_generator_loss(D_B(fake_B))
    adv_ba = cyclegan_loss.lsgan_generator_loss(D_A(fake_A))
    cyc_a = cyclegan_loss.cycle_loss(real_A, G_BA(fake_B))
    cyc_b = cyclegan_loss.cycle_loss(real_B, G_AB(fake_A))
    idt_a = idt_b = torch.zeros([], device=real_A.device)
    if identity_ratio > 0:  # The identity terms cost two more generator passes: skipped when weighted 0.
        idt_a = cyclegan_loss.identity_loss(real_A, G_BA(real_A))
        idt_b = cyclegan_loss.identity_loss(real_B, G_AB(real_B))
    loss = cyclegan_loss.generator_objective(adv_ab, adv_ba, cyc_a, cyc_b, idt_a, idt_b, lambda_cycle,
                                             identity_ratio)
    loss.backward()
    for name, value in [('adv_AB', adv_ab), ('adv_BA', adv_ba), ('cycle_A', cyc_a), ('cycle_B', cyc_b),
                        ('identity_A', idt_a), ('identity_B', idt_b), ('total', loss)]:
        training_stats.report(f'Loss/G/{name}', value.detach())
    G_AB.requires_grad_(False)
    G_BA.requires_grad_(False)
    _step(state.G_opt, [G_AB, G_BA], num_gpus, 'G')
    return fake_A.detach(), fake_B.detach()


def discriminators_step(state, real_A, real_B, fake_A, fake_B, num_gpus):
    """Train D_A and D_B on reals and on fakes drawn through the history pools (CG Sec. 4)."""
    D_A, D_B = state.nets['D_A'], state.nets['D_B']
    state.D_opt.zero_grad(set_to_none=True)
    D_A.requires_grad_(True)
    D_B.requires_grad_(True)
    total = 0
    for name, D, real, fake in [('D_A', D_A, real_A, state.pools['A'].query(fake_A)),
                                ('D_B', D_B, real_B, state.pools['B'].query(fake_B))]:
        real_logits, fake_logits = D(real), D(fake)
        loss = cyclegan_loss.lsgan_discriminator_loss(real_logits, fake_logits)
        training_stats.report(f'Loss/{name}/loss', loss.detach())
        training_stats.report(f'Loss/{name}/real', real_logits.detach())
        training_stats.report(f'Loss/{name}/fake', fake_logits.detach())
        total = total + loss
    total.backward()
    D_A.requires_grad_(False)
    D_B.requires_grad_(False)
    _step(state.D_opt, [D_A, D_B], num_gpus, 'D')


def update_learning_rate(ctx, state):
    """lr = base lr * linear_decay_factor(kimg): constant, then linearly to zero over the last decay_kimg."""
    factor = cyclegan_loss.linear_decay_factor(state.cur_nimg / 1000, ctx.total_kimg - ctx.decay_kimg,
                                               ctx.decay_kimg)
    for optimizer in (state.G_opt, state.D_opt):
        cyclegan_loss.set_learning_rate(optimizer, ctx.lr * factor)
    training_stats.report('Progress/lr', ctx.lr * factor)

#----------------------------------------------------------------------------
# Images: reals.png (row A, row B) and fakes*.png (A, G_AB(A), G_BA(G_AB(A)), B, G_BA(B), G_AB(G_BA(B))).

class TranslationGrid:
    """Fixed images of each domain (one row each) and the function that draws their translations."""

    def __init__(self, training_sets, random_seed, num_columns, device):
        self.num_columns = num_columns
        self.reals = dict()
        for i, name in enumerate('AB'):
            dataset = training_sets[name]
            order = np.random.RandomState(random_seed + i).permutation(len(dataset))
            images = [dataset[int(order[k % len(order)])][0] for k in range(num_columns)]
            self.reals[name] = torch.from_numpy(np.stack(images)).to(device).to(torch.float32) / 127.5 - 1
        self.device = device

    def save_reals(self, path):
        reals = torch.cat([self.reals['A'], self.reals['B']]).cpu().numpy()
        return base.save_image_grid(reals, path, drange=[-1, 1], grid_size=(self.num_columns, 2))

    @torch.no_grad()
    def save_fakes(self, nets, path):
        real_A, real_B = self.reals['A'], self.reals['B']
        fake_B, fake_A = nets['G_AB'](real_A), nets['G_BA'](real_B)
        rows = [real_A, fake_B, nets['G_BA'](fake_B), real_B, fake_A, nets['G_AB'](fake_A)]
        grid = torch.cat(rows).cpu().numpy()
        return base.save_image_grid(grid, path, drange=[-1, 1], grid_size=(self.num_columns, len(rows)))

#----------------------------------------------------------------------------
# Maintenance.

def save_snapshot(ctx, state, rng_state):
    """Write network-snapshot-<kimg>.pkl (rank 0, atomically); collective. Returns its path."""
    rank_states = base.gather_objects(state.rank_state(rng_state), ctx.num_gpus)
    if ctx.num_gpus > 1:
        for module in state.nets.values():
            misc.check_ddp_consistency(module)
    resume_state = state.resume_state(rank_states, ctx.num_gpus, ctx.batch_size, ctx.timer.total_sec(state))
    path = os.path.join(ctx.run_dir, snapshot_name(state.cur_nimg))
    if ctx.rank == 0:
        data = state.snapshot_data(resume_state)
        base.write_file_atomic(path, lambda f: pickle.dump(data, f))
        size = ctx.snapshots.after_write(path)
        ctx.log(f'Saved {os.path.basename(path)} ({size / 2**20:.1f} MiB with the resume state)')
    return path


def end_tick(ctx, state, done):
    """Status line, stats, grid and snapshot, with the RNG streams set aside (exact resume). Returns done."""
    rng_state = base.capture_rng_state(ctx.device)
    tick_end_time = time.time()
    status = base.format_status_line(state, ctx.timer, ctx.total_kimg, ctx.device, ctx.budget.deadline)
    if ctx.device.type == 'cpu':  # CPU starvation and the thread count, as in the StyleGAN loop.
        cpu_status, cpu_sample = ctx.threads.end_tick()
        training_stats.report0('Resources/cpu_utilisation', cpu_sample['cpu'])
        status += f' {cpu_status}'
    ctx.log(status)
    if not done and ctx.abort_fn is not None and base.rank0_decides(ctx.abort_fn(), ctx.num_gpus, ctx.device):
        done = True
        ctx.log('Aborting...')
    if not done and base.time_is_up(ctx.budget, bool(ctx.image_snapshot_ticks), ctx.num_gpus, ctx.device):
        done = True
        ctx.log(f'Stopping: --max-minutes={ctx.max_minutes:g} reached.')
    grid = bool(ctx.image_snapshot_ticks) and (done or state.cur_tick % ctx.image_snapshot_ticks == 0)
    snapshot = bool(ctx.network_snapshot_ticks) and (done or state.cur_tick % ctx.network_snapshot_ticks == 0)
    if ctx.rank == 0 and grid:
        start = time.time()
        image = ctx.grid.save_fakes(state.nets, os.path.join(ctx.run_dir, f'fakes{state.cur_nimg // 1000:06d}.png'))
        ctx.outputs.write_fakes_image(image, state.cur_nimg)
        ctx.budget.note_cost('grid', time.time() - start)
    results = {}
    if snapshot:
        start = time.time()
        path = save_snapshot(ctx, state, rng_state)
        if ctx.metrics:  # fid_AtoB / fid_BtoA on the training data (metrics/translation_fid.py).
            from metrics.translation_fid import Translators
            translators = Translators(state.nets['G_AB'], state.nets['G_BA'])
            results = base.evaluate_metrics(ctx, translators, dict(path=ctx.training_set_kwargs['A']['path']), path)
        ctx.budget.note_cost('snapshot', time.time() - start)  # Metrics included: --max-minutes plans for them.
    ctx.stats_collector.update()
    stats_dict = ctx.stats_collector.as_dict()
    base.warn_nonfinite_gradients(ctx.log, stats_dict)
    ctx.outputs.write_tick(stats_dict, results, state.cur_nimg, ctx.timer.total_sec(state))
    if ctx.progress_fn is not None:
        ctx.progress_fn(state.cur_nimg / 1000, ctx.total_kimg)
    state.cur_tick += 1
    state.tick_start_nimg = state.cur_nimg
    ctx.timer.next_tick(tick_end_time)
    base.restore_rng_state(rng_state, ctx.device)
    return done


def setup_outputs(ctx, state):
    """Module summaries, reals.png and fakes_init.png (rank 0), the stats collector and per-tick files."""
    if ctx.rank == 0:
        shape = ctx.training_sets['A'].image_shape
        img = torch.zeros([1] + list(shape), device=ctx.device)
        misc.print_module_summary(state.nets['G_AB'], [img])
        misc.print_module_summary(state.nets['D_A'], [img])
        ctx.log('Exporting sample images...')
        ctx.grid = TranslationGrid(ctx.training_sets, ctx.random_seed, ctx.grid_columns, ctx.device)
        ctx.grid.save_reals(os.path.join(ctx.run_dir, 'reals.png'))
        start = time.time()
        ctx.grid.save_fakes(state.nets, os.path.join(ctx.run_dir, 'fakes_init.png'))
        ctx.budget.note_cost('grid', time.time() - start)
    ctx.stats_collector = training_stats.Collector(regex='.*')
    ctx.outputs = base.RunOutputs(ctx.run_dir, ctx.rank, ctx.log)
    ctx.timer = base.TickTimer()
    ctx.budget.note_cost('snapshot', estimate_snapshot_sec(state.nets, dict(G=state.G_opt, D=state.D_opt)))
    ctx.budget.start_training()
    ctx.snapshots = SnapshotKeeper(ctx.run_dir, RESUME_STATE_KEY, keep=ctx.snap_keep, log=ctx.log)

#----------------------------------------------------------------------------
# The driver.

def cyclegan_loop(
    run_dir                 = '.',      # Output directory (exists).
    training_set_kwargs     = None,     # {'A': dataset kwargs, 'B': dataset kwargs} (training/unpaired_dataset.py).
    data_loader_kwargs      = None,     # Options of torch.utils.data.DataLoader (num_workers, pin_memory, ...).
    G_kwargs                = None,     # class_name + options of both generators (ngf, num_blocks).
    D_kwargs                = None,     # class_name + options of both discriminators (ndf).
    lr                      = cyclegan_loss.PAPER_LR,     # Adam learning rate of G and D before the decay.
    betas                   = cyclegan_loss.PAPER_BETAS,  # Adam betas.
    lambda_cycle            = cyclegan_loss.PAPER_LAMBDA_CYCLE,   # Weight of the cycle loss (CG Eq. 3).
    identity_ratio          = cyclegan_loss.PAPER_IDENTITY_RATIO,  # Identity weight / lambda_cycle; 0 = none.
    pool_size               = cyclegan_loss.PAPER_POOL_SIZE,       # Fakes kept for D; 0 = no history.
    random_seed             = 0,        # Global seed; process r uses seed * num_gpus + r.
    num_gpus                = 1,        # Number of processes taking part.
    rank                    = 0,        # This process's rank.
    batch_size              = 1,        # Images of each domain per iteration, all processes together (CG: 1).
    total_kimg              = 100,      # Train until this many thousand images of each domain (a resume counts on).
    decay_kimg              = 50,       # The lr falls linearly to zero over the last this many kimg.
    kimg_per_tick           = 1,        # Length of a tick (status line, stats) in kimg.
    image_snapshot_ticks    = 10,       # Fakes grid every this many ticks; None = never.
    network_snapshot_ticks  = 10,       # Snapshot every this many ticks; None = never.
    grid_columns            = 8,        # Images per row of reals.png and fakes*.png.
    resume_pkl              = None,     # CycleGAN snapshot or run directory to resume from; None = start fresh.
    snap_keep               = None,     # Keep only the newest this many snapshots; None = all.
    cudnn_benchmark         = True,     # torch.backends.cudnn.benchmark.
    abort_fn                = None,     # Called at every tick; returning True ends training (after a snapshot).
    progress_fn             = None,     # Called at every tick with (cur_kimg, total_kimg).
    device                  = None,     # torch device; None = this rank's GPU if available, else CPU.
    num_threads             = None,     # CPU threads: None = torch's setting, 0 = automatic (narrowed when starved).
    max_minutes             = None,     # Stop (with a final snapshot) after this much wall time; None = no limit.
    run_start_time          = None,     # time.time() when the whole run began; None = now.
    load_size               = None,     # Resize reals to this (shorter side) and crop back at random; None = off.
    metrics                 = (),       # fid_AtoB and/or fid_BtoA at each snapshot, on the training data.
    detector_dir            = None,     # Folder searched first for metric detector files; None = cache/download.
):
    """Train G_AB, G_BA, D_A, D_B; write the run directory's images, stats and snapshots (module docstring)."""
    ctx = dnnlib.EasyDict(locals())
    ctx.metrics = list(metrics or [])
    ctx.budget = TimeBudget(max_minutes, run_start_time)
    ctx.data_loader_kwargs = dict(data_loader_kwargs or {})
    ctx.log = base.make_log_fn(rank)
    ctx.device = base.setup_environment(rank, num_gpus, random_seed, device, cudnn_benchmark)
    # CPU ranks of one run share the machine's cores (a GPU rank's CPU work is light: leave it the default).
    ctx.threads = threads.ThreadController(num_threads, num_gpus if ctx.device.type == 'cpu' else 1)
    if 'num_workers' in ctx.data_loader_kwargs and ctx.device.type == 'cpu':
        # On a CPU, the two loaders (A and B) share the cores that the training threads leave free.
        ctx.data_loader_kwargs['num_workers'] = threads.cpu_loader_workers(
            ctx.data_loader_kwargs['num_workers'], ctx.threads.count, 'cpu') // 2
    state, rng_state = setup_state(ctx)
    setup_outputs(ctx, state)
    if rng_state is not None:
        base.restore_rng_state(rng_state, ctx.device)
    total_nimg, tick_nimg = round(total_kimg * 1000), round(kimg_per_tick * 1000)
    ctx.log(f'Training for {total_kimg:g} kimg...')
    try:
        done = False
        while not done:
            ctx.threads.poll()
            update_learning_rate(ctx, state)
            real_A, real_B = fetch_reals(ctx.iterators, ctx.device, load_size)
            fake_A, fake_B = generators_step(state, real_A, real_B, num_gpus, lambda_cycle, identity_ratio)
            discriminators_step(state, real_A, real_B, fake_A, fake_B, num_gpus)
            state.cur_nimg += batch_size
            state.batch_idx += 1
            done = state.cur_nimg >= total_nimg
            tick_over = done or state.cur_tick == 0 or state.cur_nimg >= state.tick_start_nimg + tick_nimg
            if not tick_over and not base.time_is_up(ctx.budget, bool(image_snapshot_ticks), num_gpus, ctx.device):
                continue
            done = end_tick(ctx, state, done)
    finally:
        if 'outputs' in ctx:
            ctx.outputs.close()
    ctx.log('Exiting...')
    return state

#----------------------------------------------------------------------------
