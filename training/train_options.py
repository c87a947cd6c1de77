"""train.py's pure config builder: train.py options -> the keyword arguments of training_loop().

`build_training_options()` turns the options into a JSON-serialisable dict (the presets of each --cfg live in one
table, CONFIG_PRESETS); that dict becomes training_options.json. Pure: it reads no files and no devices, so every
preset is testable anywhere; bad options raise UsageError, whose message names the option.
"""

import copy
import json

import dnnlib

#----------------------------------------------------------------------------
# Presets: everything that differs between --cfg values. Values used by all configs live in
# build_training_options(). (StyleGAN2: Karras et al. 2020; StyleGAN3: Karras et al. 2021, Table/App. D.)

CONFIG_PRESETS = {
    'stylegan1': dict(
        G_class='training.networks_stylegan1.Generator', D_class='training.networks_stylegan2.Discriminator',
        D_extra=dict(architecture='orig'), map_depth=8, glr=0.001, dlr=0.001, style_mixing_prob=0.9, pl_weight=0,
        G_reg_interval=None),
    'stylegan2': dict(
        G_class='training.networks_stylegan2.Generator', D_class='training.networks_stylegan2.Discriminator',
        G_extra=dict(fused_modconv_default='inference_only'), map_depth=8, glr=0.002, style_mixing_prob=0.9,
        pl_weight=2, pl_no_weight_grad=True, G_reg_interval=4),
    'stylegan3-t': dict(
        G_class='training.networks_stylegan3.Generator', D_class='training.networks_stylegan2.Discriminator',
        map_depth=2, glr=0.0025, style_mixing_prob=0, pl_weight=0, G_reg_interval=None, magnitude_ema=True),
    'stylegan3-r': dict(
        G_class='training.networks_stylegan3.Generator', D_class='training.networks_stylegan2.Discriminator',
        G_extra=dict(conv_kernel=1, use_radial_filters=True), channel_multiplier=2, map_depth=2, glr=0.0025,
        style_mixing_prob=0, pl_weight=0, G_reg_interval=None, magnitude_ema=True, blur_init_sigma=10),
    # DCGAN (Radford et al. 2016, Sec. 4: Adam lr 0.0002, beta1 0.5, z of 100), no EMA (G_ema = G), R1 only if
    # --gamma > 0. --loss=wgan-gp switches to Gulrajani et al. 2017 Alg. 1 (DCGAN_LOSS_PRESETS).
    'dcgan': dict(
        G_class='training.networks_dcgan.Generator', D_class='training.networks_dcgan.Discriminator',
        family='dcgan', z_dim=100, glr=0.0002, dlr=0.0002, betas=[0.5, 0.999], style_mixing_prob=0, pl_weight=0,
        G_reg_interval=None, D_reg_interval=None, ema_kimg=0),
}

# --loss for --cfg=dcgan: what changes with it. WGAN-GP (Gulrajani et al. 2017, Alg. 1): lr 1e-4, Adam (0, 0.9),
# n_critic 5, layer norm in D instead of batch norm (Sec. 4). Spectral norm (--sn=1) replaces D's batch norm.
DCGAN_LOSS_PRESETS = {
    'nsgan': dict(),
    'hinge': dict(),
    'wgan-gp': dict(glr=0.0001, dlr=0.0001, betas=[0.0, 0.9], n_critic=5, D_norm='layer'),
}

# The full 'bgc' pipe of StyleGAN2-ADA: geometric and colour transforms, each at the same probability p.
ADA_PIPE_KWARGS = dict(class_name='training.augment.AugmentPipe', xflip=1, rotate90=1, xint=1, scale=1, rotate=1,
                       aniso=1, xfrac=1, brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)

# Changed when --resume points at a pickle without resume state (fine-tuning from official weights), as the official
# --resume does: ADA reacts faster, G_ema starts without ramp-up, D's inputs are not blurred (StyleGAN3-R), and p
# starts at --p (fixed) or 0 (ada). Ignored for an exact resume, which keeps the original schedule.
WEIGHTS_ONLY_RESUME_OVERRIDES = dict(ada_kimg=100, ema_rampup=None, loss_kwargs=dict(blur_init_sigma=0))

OPTION_DEFAULTS = dict(
    outdir=None, cfg=None, data=None, gpus=1, batch=None, gamma=None, cond=False, mirror=False, aug='ada',
    resume=None, freezed=0, p=0.2, target=0.6, batch_gpu=None, cbase=32768, cmax=512, glr=None, dlr=None,
    map_depth=None, mbstd_group=4, desc=None, metrics=(), kimg=25000, tick=4, snap=50, seed=0, fp32=False,
    nobench=False, workers=3, device='cpu', max_minutes=None, snap_keep=None, snap_best=None, detector_dir=None,
    dry_run=False, threads=0, precision=None, compile=False, channels_last=False, grad_clip=None, loss='nsgan',
    sn=False, progressive=False, lod_kimg=600, lod_batch=None, pl_weight=None, style_mixing=None, ema_kimg=None,
    ema_rampup=None, r1_interval=None)

#----------------------------------------------------------------------------
# The pure config builder.

class UsageError(ValueError):
    """An option (or combination) that cannot work; the message names the option."""


def _check_options(opts, dataset_info):
    if opts.cfg not in CONFIG_PRESETS:
        raise UsageError(f'--cfg={opts.cfg}: choose one of {", ".join(CONFIG_PRESETS)}')
    for name in ('data', 'batch', 'gamma'):
        if opts[name] is None:
            raise UsageError(f'--{name} is required')
    batch_gpu = opts.batch_gpu or opts.batch // opts.gpus
    if opts.fp32 and opts.precision in ('fp16', 'bf16'):
        raise UsageError(f'--fp32=1 contradicts --precision={opts.precision} (use one of them)')
    if opts.batch % opts.gpus != 0:
        raise UsageError(f'--batch={opts.batch} must be a multiple of --gpus={opts.gpus}')
    if opts.batch % (opts.gpus * batch_gpu) != 0:
        raise UsageError(f'--batch={opts.batch} must be a multiple of --gpus times --batch-gpu '
                         f'({opts.gpus} x {batch_gpu})')
    if batch_gpu < opts.mbstd_group:
        raise UsageError(f'--batch-gpu={batch_gpu} cannot be smaller than --mbstd-group={opts.mbstd_group} '
                         '(lower --mbstd-group or raise --batch / --batch-gpu)')
    if opts.cfg != 'dcgan' and (opts.loss != 'nsgan' or opts.sn):
        raise UsageError(f'--loss={opts.loss} --sn={int(bool(opts.sn))}: --loss other than nsgan and --sn=1 are '
                         f'options of --cfg=dcgan; --cfg={opts.cfg} trains with its own loss (nsgan + R1)')
    if opts.progressive and (opts.cfg != 'stylegan1' or dataset_info['resolution'] < 8):
        raise UsageError(f'--progressive=1 grows --cfg=stylegan1 from 8x8 (here --cfg={opts.cfg}, dataset '
                         f'{dataset_info["resolution"]}x{dataset_info["resolution"]})')
    dcgan_ignores = [f'--{name.replace("_", "-")}' for name in ('pl_weight', 'style_mixing') if opts[name]]
    if opts.cfg == 'dcgan' and dcgan_ignores:
        raise UsageError(f'{" ".join(dcgan_ignores)}: path length and style mixing need a style-based G; '
                         '--cfg=dcgan has none (drop the option)')
    if opts.cond and not dataset_info['has_labels']:
        raise UsageError(f'--cond=1 requires labels in {opts.data}/dataset.json; this dataset has none')
    return batch_gpu


def _dcgan_network_kwargs(opts, preset):
    """G_kwargs and D_kwargs of --cfg=dcgan (training/networks_dcgan.py)."""
    G_kwargs = dnnlib.EasyDict(class_name=preset['G_class'], z_dim=preset['z_dim'], channel_base=opts.cbase,
                               channel_max=opts.cmax)
    norm = DCGAN_LOSS_PRESETS[opts.loss].get('D_norm', 'none' if opts.sn else 'batch')
    D_kwargs = dnnlib.EasyDict(class_name=preset['D_class'], channel_base=opts.cbase, channel_max=opts.cmax,
                               norm=norm, spectral_norm=bool(opts.sn))
    return G_kwargs, D_kwargs


def _network_kwargs(opts, preset, batch_size):
    """G_kwargs and D_kwargs as the official training script writes them (see official_layout.json)."""
    if preset.get('family') == 'dcgan':
        return _dcgan_network_kwargs(opts, preset)
    channel_base = opts.cbase * preset.get('channel_multiplier', 1)
    channel_max = opts.cmax * preset.get('channel_multiplier', 1)
    G_kwargs = dnnlib.EasyDict(class_name=preset['G_class'], z_dim=512, w_dim=512,
                               mapping_kwargs=dnnlib.EasyDict(num_layers=opts.map_depth or preset['map_depth']),
                               channel_base=channel_base, channel_max=channel_max, **preset.get('G_extra', {}))
    if preset.get('magnitude_ema'):
        G_kwargs.magnitude_ema_beta = 0.5 ** (batch_size / (20 * 1e3))
    D_kwargs = dnnlib.EasyDict(class_name=preset['D_class'], block_kwargs=dnnlib.EasyDict(freeze_layers=opts.freezed),
                               mapping_kwargs=dnnlib.EasyDict(),
                               epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=opts.mbstd_group),
                               channel_base=opts.cbase, channel_max=opts.cmax, **preset.get('D_extra', {}))
    if opts.fp32 or opts.precision == 'fp32':
        G_kwargs.num_fp16_res = D_kwargs.num_fp16_res = 0
        G_kwargs.conv_clamp = D_kwargs.conv_clamp = None
    if opts.precision == 'bf16':  # The official float16 layers in bfloat16 (training/accel.py): no clamping needed.
        G_kwargs.conv_clamp = D_kwargs.conv_clamp = None
    if opts.progressive:  # ProGAN/SG1 progressive growing: ToRGB/FromRGB at every resolution, D with fade-in.
        G_kwargs.progressive = True
        D_kwargs = dnnlib.EasyDict(class_name='training.networks_stylegan1.Discriminator', channel_base=opts.cbase,
                                   channel_max=opts.cmax, mbstd_group_size=opts.mbstd_group)
    return G_kwargs, D_kwargs


def _set_aspect(G_kwargs, D_kwargs, opts, dataset_info):
    """Non-square datasets (not official): G and D get img_aspect = [width, height] / resolution. Square datasets
    add nothing, so their options and networks stay the official ones."""
    aspect = list(dataset_info.get('aspect') or [1, 1])
    if aspect == [1, 1]:
        return
    if opts.cfg in ('stylegan1', 'dcgan') or opts.progressive:
        what = '--progressive=1' if opts.progressive else f'--cfg={opts.cfg}'
        raise UsageError(f'--data={opts.data} holds non-square images ({aspect[0]}:{aspect[1]}); {what} '
                         'trains square images only (use stylegan2, stylegan3-t or stylegan3-r)')
    G_kwargs.img_aspect = D_kwargs.img_aspect = aspect


def _loss_kwargs(opts, preset, batch_size):
    if preset.get('family') == 'dcgan':
        return dnnlib.EasyDict(class_name='training.loss.ClassicGANLoss', loss=opts.loss, r1_gamma=opts.gamma)
    loss_kwargs = dnnlib.EasyDict(class_name='training.loss.StyleGAN2Loss', r1_gamma=opts.gamma)
    style_mixing_prob = _preset_or_option(preset['style_mixing_prob'], opts.style_mixing)
    if style_mixing_prob:
        loss_kwargs.style_mixing_prob = style_mixing_prob
    pl_weight = _preset_or_option(preset['pl_weight'], opts.pl_weight)
    if pl_weight:
        loss_kwargs.pl_weight = pl_weight
        loss_kwargs.pl_no_weight_grad = preset.get('pl_no_weight_grad', False)
    if preset.get('blur_init_sigma'):
        loss_kwargs.blur_init_sigma = preset['blur_init_sigma']
        loss_kwargs.blur_fade_kimg = batch_size * 200 / 32
    return loss_kwargs


def _preset_or_option(preset_value, option_value):
    """The value of a recipe option: the user's when given, else the --cfg preset's."""
    return preset_value if option_value is None else option_value


def _schedule_options(opts, preset):
    """EMA and lazy-regularisation settings: the --cfg preset's (official), or the user's recipe options."""
    G_reg_interval = preset['G_reg_interval']
    if opts.pl_weight == 0:
        G_reg_interval = None  # No path-length term: no G regularisation phase to schedule.
    elif opts.pl_weight and G_reg_interval is None:
        G_reg_interval = 4
    D_reg_interval = _preset_or_option(preset.get('D_reg_interval', 16), opts.r1_interval)
    return dict(ema_kimg=_preset_or_option(preset.get('ema_kimg', opts.batch * 10 / 32), opts.ema_kimg),
                ema_rampup=0.05 if opts.ema_rampup is None else (opts.ema_rampup or None),  # 0 = no ramp-up.
                G_reg_interval=G_reg_interval, D_reg_interval=D_reg_interval)


def _snapshot_options(opts):
    """snap_keep / snap_best for training_loop() (only when given, so default options stay official)."""
    from training import snapshots
    result = dict()
    if opts.snap_keep is not None:
        result['snap_keep'] = opts.snap_keep
    if opts.snap_best is not None:
        try:
            result_key, _higher = snapshots.parse_snap_best(opts.snap_best)
        except ValueError as err:
            raise UsageError(str(err)) from err
        if snapshots.snap_best_metric_name(result_key, opts.metrics or []) is None:
            raise UsageError(f'--snap-best={opts.snap_best}: no metric of --metrics={",".join(opts.metrics or [])} '
                             f'reports {result_key} (e.g. --metrics=fid50k_full --snap-best=fid50k_full)')
        result['snap_best'] = opts.snap_best
    return result


def parse_lod_batch(text, unit):
    """'8:256,16:128' -> {8: 256, 16: 128}; each batch a multiple of --gpus x --batch-gpu (`unit`)."""
    table = {}
    for item in str(text).split(','):
        res, _, batch = item.partition(':')
        if not (res.strip().isdigit() and batch.strip().isdigit()) or int(batch) % unit or int(batch) == 0:
            raise UsageError(f'--lod-batch={text}: expected RES:BATCH pairs like 8:256,16:128 with each batch a '
                             f'positive multiple of --gpus x --batch-gpu = {unit}')
        table[int(res)] = int(batch)
    return table


def run_desc(opts, dataset_name):
    """The run directory name after its number: <cfg>-<dataset>-gpus<G>-batch<B>-gamma<g>[-<desc>]."""
    desc = f'{opts.cfg}-{dataset_name}-gpus{opts.gpus}-batch{opts.batch}-gamma{opts.gamma:g}'
    return desc + (f'-{opts.desc}' if opts.desc else '')


def build_training_options(dataset_info, **opts):
    """Options of train.py (python names, e.g. batch_gpu) -> JSON-serialisable keyword arguments of training_loop().

    dataset_info: dict(name, resolution, size, has_labels) of the dataset at --data (describe_dataset()).
    Pure: reads no files and no devices, so every preset is testable anywhere. Raises UsageError."""
    opts = dnnlib.EasyDict({**OPTION_DEFAULTS, **opts})
    batch_gpu = _check_options(opts, dataset_info)
    preset = CONFIG_PRESETS[opts.cfg]
    c = dnnlib.EasyDict()
    c.training_set_kwargs = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=opts.data,
                                            use_labels=bool(opts.cond), max_size=dataset_info['size'],
                                            xflip=bool(opts.mirror), resolution=dataset_info['resolution'],
                                            random_seed=opts.seed)
    c.data_loader_kwargs = dnnlib.EasyDict(pin_memory=True, prefetch_factor=2, num_workers=opts.workers)
    c.G_kwargs, c.D_kwargs = _network_kwargs(opts, preset, opts.batch)
    _set_aspect(c.G_kwargs, c.D_kwargs, opts, dataset_info)
    if preset.get('family') == 'dcgan':
        preset = dnnlib.EasyDict(preset, **DCGAN_LOSS_PRESETS[opts.loss])
    betas = preset.get('betas', [0.0, 0.99])
    c.G_opt_kwargs = dnnlib.EasyDict(class_name='torch.optim.Adam', betas=list(betas), eps=1e-8,
                                     lr=opts.glr if opts.glr is not None else preset['glr'])
    c.D_opt_kwargs = dnnlib.EasyDict(class_name='torch.optim.Adam', betas=list(betas), eps=1e-8,
                                     lr=opts.dlr if opts.dlr is not None else preset.get('dlr', 0.002))
    c.loss_kwargs = _loss_kwargs(opts, preset, opts.batch)
    c.augment_kwargs = None
    if opts.aug != 'noaug':
        c.augment_kwargs = dnnlib.EasyDict(ADA_PIPE_KWARGS)
    c.update(metrics=list(opts.metrics or []), random_seed=opts.seed, num_gpus=opts.gpus, batch_size=opts.batch,
             batch_gpu=batch_gpu, **_schedule_options(opts, preset),
             augment_p=opts.p if opts.aug == 'fixed' else 0, ada_target=opts.target if opts.aug == 'ada' else None,
             ada_interval=4, ada_kimg=500, total_kimg=opts.kimg, kimg_per_tick=opts.tick,
             image_snapshot_ticks=opts.snap, network_snapshot_ticks=opts.snap, resume_pkl=opts.resume,
             cudnn_benchmark=not opts.nobench, device=opts.device, run_desc=run_desc(opts, dataset_info['name']))
    if opts.max_minutes is not None:
        c.max_minutes = opts.max_minutes
    c.update(_snapshot_options(opts))
    if opts.detector_dir is not None:
        c.detector_dir = opts.detector_dir
    c.num_threads = opts.threads
    # The speed options reach training_options.json only when used (official tools read the rest).
    for name in ('precision', 'compile', 'channels_last', 'grad_clip'):
        if opts[name] not in (None, False):
            c[name] = opts[name]
    if preset.get('n_critic', 1) != 1:
        c.n_critic = preset['n_critic']
    if opts.progressive:
        c.progressive_kwargs = dict(start_resolution=8, lod_training_kimg=opts.lod_kimg,
                                    lod_transition_kimg=opts.lod_kimg)
        if opts.lod_batch:
            c.progressive_kwargs['batch_per_resolution'] = parse_lod_batch(opts.lod_batch, opts.gpus * batch_gpu)
    if opts.resume is not None:
        c.weights_only_resume_overrides = copy.deepcopy(WEIGHTS_ONLY_RESUME_OVERRIDES)
    return json.loads(json.dumps(c))  # Plain dicts/lists only: exactly what training_options.json will hold.
