"""Small parsers and helpers shared by the command-line scripts (gen_images.py, gen_video.py, calc_metrics.py)."""

import math
import re

import click

#----------------------------------------------------------------------------

def parse_range(text):
    """'0,1,4-6' -> [0, 1, 4, 5, 6]; also accepts an int or a list of ints. Raises click.BadParameter."""
    if isinstance(text, int):
        return [text]
    if isinstance(text, (list, tuple)):
        return [int(v) for v in text]
    values = []
    for part in str(text).split(','):
        part = part.strip()
        match = re.fullmatch(r'(\d+)\s*-\s*(\d+)', part)
        if match:
            lo, hi = int(match.group(1)), int(match.group(2))
            if hi < lo:
                raise click.BadParameter(f'range {part!r} runs backwards')
            values.extend(range(lo, hi + 1))
        elif re.fullmatch(r'\d+', part):
            values.append(int(part))
        else:
            raise click.BadParameter(f'{part!r} in {text!r} is not a number or a range like 4-6')
    return values

def parse_vec2(text):
    """'0.1,-0.2' -> (0.1, -0.2). Raises click.BadParameter."""
    if isinstance(text, (tuple, list)):
        return tuple(float(v) for v in text)
    parts = str(text).split(',')
    try:
        if len(parts) == 2:
            return (float(parts[0]), float(parts[1]))
    except ValueError:
        pass
    raise click.BadParameter(f'{text!r} is not two comma-separated numbers like 0.1,-0.2')

MAX_SEED = 2**32 - 1  # numpy RandomState(seed), which draws z, takes seeds 0..2^32-1.


def parse_seeds(text):
    """parse_range() for --seeds, each seed checked to be in 0..2^32-1. Raises click.BadParameter."""
    seeds = parse_range(text)
    bad = [seed for seed in seeds if not 0 <= seed <= MAX_SEED]
    if bad:
        raise click.BadParameter(f'seed {bad[0]} is out of range: seeds must be 0..{MAX_SEED} (2^32-1)')
    return seeds


def parse_finite_float(text):
    """A float that is neither NaN nor infinite (e.g. --trunc). Raises click.BadParameter."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise click.BadParameter(f'{text!r} is not a number') from None
    if not math.isfinite(value):
        raise click.BadParameter(f'{text!r} is not a finite number')
    return value


def describe_non_pickle(path):
    """What `path` is when its first bytes show it is not a pickle (a zip such as a torch.save() file, text),
    as a phrase for an error message; None when it may be a pickle or cannot be read."""
    try:
        with open(path, 'rb') as f:
            head = f.read(512)
    except (OSError, TypeError):
        return None
    if head.startswith(b'PK\x03\x04') or head.startswith(b'PK\x05\x06'):
        return ('a zip archive (a torch.save() file or a dataset?), not a network pickle; network pickles come '
                'from train.py snapshots, legacy.py or the official StyleGAN2-ADA/StyleGAN3 releases')
    if not head:
        return 'an empty file, not a network pickle'
    if head[:1] != b'\x80':  # Every pickle of protocol 2 or later starts with the PROTO opcode.
        try:
            head.decode('utf-8')
            return 'a text file, not a network pickle'
        except UnicodeDecodeError:
            pass
    return None


def without_allow_exec_hint(message):
    """A loader refusal as shown by tools that have no --allow-exec option: the hint to use it removed."""
    return re.sub(r'\s*If you trust this file completely, load it with --allow-exec[^.]*\.?(\s*\([^)]*\))?', '',
                   message).rstrip()


def choose_device(name='auto'):
    """'auto' -> cuda if available, else mps if available, else cpu; otherwise torch.device(name), checked."""
    import torch
    if name in (None, 'auto'):
        if torch.cuda.is_available():
            return torch.device('cuda')
        if getattr(torch.backends, 'mps', None) is not None and torch.backends.mps.is_available():
            return torch.device('mps')
        return torch.device('cpu')
    device = torch.device(name)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise click.BadParameter(f'--device={name}: this machine has no usable CUDA device (try --device=cpu)')
    if device.type == 'mps' and not (getattr(torch.backends, 'mps', None) and torch.backends.mps.is_available()):
        raise click.BadParameter(f'--device={name}: MPS is not available here (try --device=cpu)')
    return device


def tune_cpu_allocator(device):
    """On a CPU device, let the process keep freed large buffers (torch_utils/cpu_malloc.py: 1.3-1.5x faster
    full-width networks on a CPU, at the cost of holding the peak heap; DNNLIB_MALLOC=system opts out). Single
    process runs only: 2-process gloo runs on a CPU with it aborted at exit now and then ('terminate called without
    an active exception', 2 runs in 14; none in 14 without). Returns True iff the setting was applied."""
    import torch
    from torch_utils import cpu_malloc
    return torch.device(device).type == 'cpu' and cpu_malloc.keep_freed_memory()

#----------------------------------------------------------------------------
