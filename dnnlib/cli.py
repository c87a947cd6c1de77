"""Small parsers and helpers shared by the command-line scripts (gen_images.py, gen_video.py, calc_metrics.py)."""

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

#----------------------------------------------------------------------------
