"""Resume: finding and reading a snapshot (ours or official), checking that it fits the new run, and the options
(augmentation, --freezed) that decide whether it continues exactly or loads weights only.

The state itself (what is saved and restored) is training/training_state.py; the training loop's setup_state()
puts the two together.
"""

import json
import os
import pickle
import re

import dnnlib
from torch_utils import misc
from training.training_state import RESUME_STATE_KEY, RESUME_STATE_VERSION

class SetupError(Exception):
    """An expected failure while a run starts (unreadable or mismatched --resume, unreadable data, --kimg already
    reached): the message says what and how to fix it; train.py prints only the message, no traceback."""

#----------------------------------------------------------------------------
# Reading a snapshot and checking that it fits the new run.

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
# What the resume continues: exactly, or weights only.

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

#----------------------------------------------------------------------------
