"""CycleGAN snapshots: `network-snapshot-<kimg>.pkl` holding G_AB, G_BA, D_A, D_B (+ resume state).

The file is a plain dict pickled like every snapshot of this codebase (torch_utils/persistence.py objects), read
back with the safe loader (torch_utils/safe_pickle.py, family 'cyclegan'): nothing in it is executed.
"""

import os

from torch_utils import pickle_checks
from torch_utils import safe_pickle
from training.network_families import FAMILIES

NETWORK_KEYS = ('G_AB', 'G_BA', 'D_A', 'D_B')
RESUME_STATE_KEY = 'resume_state'   # Same key as the StyleGAN snapshots; only the newest snapshot keeps it.

#----------------------------------------------------------------------------

class NotCycleGANError(ValueError):
    """The file is a readable pickle, but not a CycleGAN snapshot."""


def _describe_keys(data):
    if not isinstance(data, dict):
        return f'a {type(data).__name__}'
    keys = ', '.join(sorted(str(key) for key in data)[:8])
    if any(key in data for key in ('G', 'G_ema')):
        return f'the keys {keys}: a StyleGAN network pickle (use gen_images.py)'
    return f'the keys {keys}'


def check_cyclegan_snapshot(data, source):
    """Raise NotCycleGANError unless `data` is a dict with the four CycleGAN networks of training/networks_cyclegan;
    every other value must be plain data. Returns data."""
    from training import networks_cyclegan
    expected = {'G_AB': networks_cyclegan.ResnetGenerator, 'G_BA': networks_cyclegan.ResnetGenerator,
                'D_A': networks_cyclegan.PatchDiscriminator, 'D_B': networks_cyclegan.PatchDiscriminator}
    if not isinstance(data, dict) or not all(key in data for key in NETWORK_KEYS):
        raise NotCycleGANError(f'{source} is not a CycleGAN snapshot: it holds {_describe_keys(data)}, not '
                               f'{", ".join(NETWORK_KEYS)}')
    for key, cls in expected.items():
        if not isinstance(data[key], cls):
            raise NotCycleGANError(f'{source}: {key} is a {type(data[key]).__name__}, not a {cls.__name__}')
    for key, value in data.items():
        if key not in expected:
            pickle_checks.check_plain_value(value, source, key)
    return data


def load_cyclegan_snapshot(path):
    """The snapshot dict at `path`, read with the safe loader. Raises NotCycleGANError, FileNotFoundError, or the
    safe loader's UnsafePickleError / CorruptPickleError (all name the file)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path} does not exist or is not a file')
    data = safe_pickle.load_pickle(path, families=FAMILIES)
    return check_cyclegan_snapshot(data, path)

#----------------------------------------------------------------------------
