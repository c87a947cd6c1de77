"""Network snapshots as safetensors files: weights plus plain-JSON constructor arguments, nothing executable.

A `.safetensors` snapshot holds every tensor of the networks (`G`, `D`, `G_ema`, `augment_pipe`) under the name
`<key>.<state_dict name>` (e.g. `G_ema.synthesis.b16.conv0.weight`) and, in the file's string metadata:

    format               'stylegan-networks/1'
    networks             JSON {key: {"family": "stylegan2", "class_name": "Generator",
                                     "init_args": [...], "init_kwargs": {...}}  or  {"same_as": "G_ema"}}
    training_set_kwargs  JSON dict or null (what calc_metrics.py uses to find the training data)

Reading it runs nothing from the file: the class comes from the caller's fixed family table (`families=`, a
torch_utils.network_families.NetworkFamilies; the project's is training.network_families.FAMILIES), the constructor arguments must be plain JSON of bounded
size (identifier keys, no dunders, bounded ints, strings, lists and nesting), and the weights are copied into the
freshly built network only when every name, shape and dtype matches exactly. `training_set_kwargs` may only name
a dataset class of that table. Entry points: `is_safetensors_header(head)`,
`load_network_safetensors(payload, source, families)`, `save_network_safetensors(data, path, families)` (atomic).
"""

import json
import os
import re
import struct

from torch_utils import network_families
from torch_utils import persistence

FORMAT = 'stylegan-networks/1'
NETWORK_KEYS = ('G', 'D', 'G_ema', 'augment_pipe')

# Bounds on what the metadata may hold (ours are far below: a StyleGAN3-R G has ~20 kwargs, depth 2).
_MAX_HEADER_BYTES = 64 << 20    # The safetensors JSON header (tensor table + metadata).
_MAX_JSON_BYTES = 1 << 20       # One metadata entry.
_MAX_DEPTH = 6                  # Nesting of lists/dicts in constructor arguments.
_MAX_ITEMS = 256                # Entries of one list or dict.
_MAX_STRING = 1024              # Characters of one string.
_MAX_INT = 1 << 17              # Largest int argument (channel_base of StyleGAN3-R is 65536).


class SafetensorsFormatError(ValueError):
    """The file is not a network snapshot in our safetensors layout, or asks for something we refuse."""

#----------------------------------------------------------------------------
# Family table (shared with the pickle loader, which detects families from embedded source).

def _family_modules(families, what):
    """{family: module name} of the caller's table, without the SG2-ADA alias (its classes are the stylegan2 ones)."""
    families = network_families.require(families, what)
    return {family: module for family, module in families.modules.items() if family != 'stylegan2-ada'}


def _family_of(module, families):
    """Family name of one of our network objects, or a clear error for anything else."""
    module_name = type(module).__module__
    for family, family_module in _family_modules(families, 'writing a safetensors snapshot').items():
        if module_name == family_module and persistence.is_persistent(module):
            return family
    raise SafetensorsFormatError(f'{type(module).__module__}.{type(module).__qualname__} is not a network class of '
                                 f'ours (training/networks_*.py, training/augment.py); convert the pickle '
                                 f'with legacy.py first')


def _resolve_class(family, class_name, families, source):
    """Our persistent class `class_name` of `family` (caller's fixed table); never imports anything the file names."""
    modules = _family_modules(families, f'{source}: reading a safetensors snapshot')
    if family not in modules:
        raise SafetensorsFormatError(f'unknown network family {family!r} (known: {", ".join(sorted(modules))})')
    families.import_family(family)
    if not isinstance(class_name, str) or not re.fullmatch(r'[A-Z][A-Za-z0-9]*', class_name):
        raise SafetensorsFormatError(f'bad class name {class_name!r}')
    cls = persistence.get_registered_class(modules[family], class_name)
    if cls is None:
        raise SafetensorsFormatError(f'{modules[family]} has no network class {class_name!r}')
    return cls

#----------------------------------------------------------------------------
# Plain-JSON constructor arguments.

def to_plain_json(value, path='init_kwargs'):
    """`value` with tuples as lists and numpy scalars as Python numbers; a clear error for anything else."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value
    if hasattr(value, 'item') and getattr(value, 'ndim', None) == 0:  # numpy / torch scalars.
        return value.item()
    if isinstance(value, (list, tuple)):
        return [to_plain_json(v, f'{path}[{i}]') for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): to_plain_json(v, f'{path}[{k!r}]') for k, v in value.items()}
    raise SafetensorsFormatError(f'{path} is a {type(value).__name__}; safetensors snapshots store only plain '
                                 f'constructor arguments (numbers, strings, lists, dicts)')


def check_plain_json(value, path='init_kwargs', depth=0):
    """Raise SafetensorsFormatError unless `value` is bounded plain JSON with identifier dict keys."""
    if depth > _MAX_DEPTH:
        raise SafetensorsFormatError(f'{path}: nested deeper than {_MAX_DEPTH} levels')
    if value is None or isinstance(value, (bool, float)):
        return
    if isinstance(value, int):
        if abs(value) > _MAX_INT:
            raise SafetensorsFormatError(f'{path} = {value} is outside +-{_MAX_INT}')
        return
    if isinstance(value, str):
        if len(value) > _MAX_STRING:
            raise SafetensorsFormatError(f'{path}: a string of {len(value)} characters (limit {_MAX_STRING})')
        return
    if isinstance(value, (list, dict)) and len(value) > _MAX_ITEMS:
        raise SafetensorsFormatError(f'{path}: {len(value)} entries (limit {_MAX_ITEMS})')
    if isinstance(value, list):
        for idx, item in enumerate(value):
            check_plain_json(item, f'{path}[{idx}]', depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not re.fullmatch(r'[A-Za-z_][A-Za-z0-9_]{0,63}', key) or key.startswith('__'):
                raise SafetensorsFormatError(f'{path}: the key {key[:80]!r} is not a plain argument name')
            check_plain_json(item, f'{path}[{key!r}]', depth + 1)
        return
    raise SafetensorsFormatError(f'{path}: a {type(value).__name__} is not plain JSON')


def _parse_json_entry(metadata, name):
    text = metadata.get(name)
    if not isinstance(text, str):
        raise SafetensorsFormatError(f'the metadata entry {name!r} is missing')
    if len(text) > _MAX_JSON_BYTES:
        raise SafetensorsFormatError(f'the metadata entry {name!r} is {len(text)} bytes (limit {_MAX_JSON_BYTES})')
    try:
        return json.loads(text)
    except ValueError as err:
        raise SafetensorsFormatError(f'the metadata entry {name!r} is not valid JSON ({err})') from None

#----------------------------------------------------------------------------
# Writing.

def describe_network(module, families):
    """{"family", "class_name", "init_args", "init_kwargs"} of one of our networks (JSON-ready, checked)."""
    record = dict(family=_family_of(module, families), class_name=type(module).__name__,
                  init_args=to_plain_json(list(module.init_args), 'init_args'),
                  init_kwargs=to_plain_json(dict(module.init_kwargs)))
    check_plain_json(record['init_args'], 'init_args')
    check_plain_json(record['init_kwargs'])
    return record


def snapshot_to_safetensors(data, families):
    """(tensors {name: contiguous CPU tensor}, metadata {str: str}) for a snapshot dict; `families`: the
    NetworkFamilies table (training.network_families.FAMILIES) that names our network modules."""
    tensors, networks, seen = {}, {}, {}
    for key in NETWORK_KEYS:
        module = data.get(key)
        if module is None:
            continue
        if id(module) in seen:  # The same object under two keys (e.g. G is G_ema) is stored once.
            networks[key] = dict(same_as=seen[id(module)])
            continue
        seen[id(module)] = key
        networks[key] = describe_network(module, families)
        for name, tensor in module.state_dict().items():
            tensors[f'{key}.{name}'] = tensor.detach().to('cpu', copy=True).contiguous()
    if not networks:
        raise SafetensorsFormatError('the snapshot holds no network (G, D, G_ema or augment_pipe)')
    training_set_kwargs = data.get('training_set_kwargs')
    if training_set_kwargs is not None:
        training_set_kwargs = to_plain_json(dict(training_set_kwargs), 'training_set_kwargs')
        _check_training_set_kwargs(training_set_kwargs, 'the snapshot', families)  # What the reader would refuse.
    metadata = dict(format=FORMAT, networks=json.dumps(networks), training_set_kwargs=json.dumps(training_set_kwargs))
    return tensors, metadata


def save_network_safetensors(data, path, families):
    """Write a snapshot dict's networks to `path` as safetensors, atomically (temporary file, then rename).
    `families`: training.network_families.FAMILIES (see snapshot_to_safetensors)."""
    from safetensors.torch import save as safetensors_save
    tensors, metadata = snapshot_to_safetensors(data, families)
    payload = safetensors_save(tensors, metadata=metadata)
    folder = os.path.dirname(os.path.abspath(path))
    tmp_path = os.path.join(folder, f'.{os.path.basename(path)}.tmp-{os.getpid()}')
    try:
        with open(tmp_path, 'wb') as f:
            f.write(payload)
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)

#----------------------------------------------------------------------------
# Reading.

def is_safetensors_header(head):
    """True if the first bytes of a file (at least 9) look like safetensors: u64 header size, then '{'."""
    if len(head) < 9:
        return False
    header_size = struct.unpack('<Q', head[:8])[0]
    return 2 <= header_size <= _MAX_HEADER_BYTES and head[8:9] == b'{'


def _read_metadata(payload, source):
    header_size = struct.unpack('<Q', payload[:8])[0]
    if header_size > len(payload) - 8:
        raise SafetensorsFormatError(f'{source}: truncated safetensors file (header of {header_size} bytes, file '
                                     f'of {len(payload)})')
    try:
        header = json.loads(payload[8:8 + header_size])
    except ValueError as err:
        raise SafetensorsFormatError(f'{source}: corrupt safetensors header ({err})') from None
    metadata = header.get('__metadata__') if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or metadata.get('format') != FORMAT:
        raise SafetensorsFormatError(f'{source}: a safetensors file, but not a network snapshot of ours (metadata '
                                     f'"format" should be {FORMAT!r}; write one with legacy.py --dest=x.safetensors)')
    return metadata


def _build_network(key, record, tensors, source, families):
    """A fresh network of our class for `record`, holding exactly the file's tensors under `key.`."""
    if not isinstance(record, dict) or set(record) != {'family', 'class_name', 'init_args', 'init_kwargs'}:
        raise SafetensorsFormatError(f'{source}: the record of {key} is malformed')
    cls = _resolve_class(record['family'], record['class_name'], families, source)
    if not isinstance(record['init_args'], list) or not isinstance(record['init_kwargs'], dict):
        raise SafetensorsFormatError(f'{source}: {key} init_args must be a list and init_kwargs a dict')
    check_plain_json(record['init_args'], f'{key} init_args')
    check_plain_json(record['init_kwargs'], f'{key} init_kwargs')
    try:
        module = cls(*record['init_args'], **record['init_kwargs'])
    except Exception as err:  # Our constructor rejecting the arguments (wrong name, bad value).
        raise SafetensorsFormatError(f'{source}: cannot build {key} ({record["family"]} {record["class_name"]}) '
                                     f'from its arguments: {type(err).__name__}: {err}') from None
    prefix = f'{key}.'
    state = {name[len(prefix):]: tensor for name, tensor in tensors.items() if name.startswith(prefix)}
    expected = module.state_dict()
    if set(state) != set(expected):
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        raise SafetensorsFormatError(f'{source}: the tensors of {key} do not match its arguments (missing '
                                     f'{missing[:3]}, unexpected {extra[:3]})')
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape or tensor.dtype != expected[name].dtype:
            raise SafetensorsFormatError(f'{source}: {key}.{name} is {tensor.dtype} {list(tensor.shape)}, the network '
                                         f'expects {expected[name].dtype} {list(expected[name].shape)}')
    module.load_state_dict(state, strict=True)
    return module.eval().requires_grad_(False)


def _check_training_set_kwargs(value, source, families):
    if value is None:
        return None
    check_plain_json(value, 'training_set_kwargs')
    allowed = network_families.require(families, f'{source}: training_set_kwargs').dataset_classes
    if not isinstance(value, dict) or value.get('class_name') not in allowed:
        raise SafetensorsFormatError(f'{source}: training_set_kwargs may only name {", ".join(allowed)}')
    import dnnlib
    return dnnlib.EasyDict(value)


def load_network_safetensors(payload, source='the network file', families=None):
    """Snapshot dict (G, D, G_ema, augment_pipe, training_set_kwargs) from the bytes of a safetensors snapshot.

    families: training.network_families.FAMILIES, the only place classes are taken from (MissingFamiliesError
              without it: every network of such a file is built by family).
    Networks come back on CPU, in eval mode, without gradients, like the pickle loader's.
    Raises SafetensorsFormatError for anything malformed or refused.
    """
    from safetensors.torch import load as safetensors_load
    metadata = _read_metadata(payload, source)
    networks = _parse_json_entry(metadata, 'networks')
    if not isinstance(networks, dict) or not networks or not set(networks) <= set(NETWORK_KEYS):
        raise SafetensorsFormatError(f'{source}: "networks" must map some of {", ".join(NETWORK_KEYS)} to records')
    try:
        tensors = safetensors_load(bytes(payload))
    except Exception as err:  # The Rust reader's own checks (offsets, dtypes).
        raise SafetensorsFormatError(f'{source}: corrupt safetensors tensors ({err})') from None
    data = {key: None for key in NETWORK_KEYS}
    for key, record in networks.items():
        if not (isinstance(record, dict) and 'same_as' in record):
            data[key] = _build_network(key, record, tensors, source, families)
    for key, record in networks.items():
        if isinstance(record, dict) and 'same_as' in record:
            if set(record) != {'same_as'} or data.get(record['same_as']) is None:
                raise SafetensorsFormatError(f'{source}: {key} refers to a network the file does not hold')
            data[key] = data[record['same_as']]
    data['training_set_kwargs'] = _check_training_set_kwargs(
        _parse_json_entry(metadata, 'training_set_kwargs'), source, families)
    return data


#----------------------------------------------------------------------------
