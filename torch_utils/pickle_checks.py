"""Rules for data read from untrusted pickles: one allow-list type for every unpickler, and checks of what a load
produced (plain values, bounded sizes and depth, no shared or cyclic submodules, bounded constructor arguments).

Every restricted unpickler in the codebase (network snapshots, detector files, CIFAR-10 batches) resolves globals
through an `AllowList`: an exact (module, name) -> object table. Nothing is imported and no dotted name is walked
attribute by attribute, so `('torch', 'os.system')` or `('dnnlib.util', 'EasyDict.__init__')` is simply absent.

Errors are `UnsafePickleError` (the file asks for something refused) and `CorruptPickleError` (truncated, corrupt,
absurd sizes); both are `pickle.UnpicklingError`, which the command-line tools report as a one-line message.
"""

import pickle
import re

import numpy as np
import torch

#----------------------------------------------------------------------------
# Errors.

class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asks for something the safe loader refuses (a global, a call, a persistent id, ...)."""


class CorruptPickleError(pickle.UnpicklingError):
    """The file is truncated, corrupt, empty, too large, or not a network pickle."""

#----------------------------------------------------------------------------
# Allow-lists of globals.

class AllowList:
    """The globals one kind of file may name: exact (module, name) pairs -> the object the unpickler gets.

    `resolve` never imports and never splits a dotted name: a pair is either in the table or refused.
    """

    def __init__(self, table):
        for module, name in table:
            if not isinstance(module, str) or not isinstance(name, str) or '.' in name:
                raise ValueError(f'AllowList: ({module!r}, {name!r}) is not a (module, plain name) pair')
        self._table = dict(table)

    def resolve(self, module, name, protocol=4):
        """The object for global `module.name`, or None when it is not allowed."""
        if protocol < 3 and module == '__builtin__':
            module = 'builtins'  # Python 2 spelling used by protocols 0-2 (what pickle's fix_imports maps).
        if not isinstance(module, str) or not isinstance(name, str):
            return None
        return self._table.get((module, name))

    def union(self, table):
        """A new AllowList with the entries of `table` (a dict or AllowList) added."""
        merged = dict(self._table)
        merged.update(table._table if isinstance(table, AllowList) else table)
        return AllowList(merged)

    def values(self):
        return self._table.values()

    def __iter__(self):
        return iter(self._table)

    def __len__(self):
        return len(self._table)

    def __contains__(self, pair):
        return pair in self._table

    def __getitem__(self, pair):
        return self._table[pair]

#----------------------------------------------------------------------------
# numpy dtypes: plain numbers only. Structured (void) dtypes can hold object pointers or fields at arbitrary
# offsets, which crash the process when the array is used; strings are not weights.

PLAIN_DTYPE_SPECS = frozenset(['b1', 'i1', 'i2', 'i4', 'i8', 'u1', 'u2', 'u4', 'u8', 'f2', 'f4', 'f8', 'c8', 'c16'])


def is_plain_dtype(dtype):
    """True for a bool/int/float/complex numpy dtype without fields, subarrays or objects."""
    return (isinstance(dtype, np.dtype) and dtype.kind in 'biufc' and dtype.fields is None
            and dtype.subdtype is None and not dtype.hasobject and dtype.str[1:] in PLAIN_DTYPE_SPECS)


def check_dtype_state(spec, state):
    """Raise unless `state` is what numpy pickles for the plain dtype `spec` (only the byte order may differ)."""
    reference = np.dtype(spec).__reduce__()[2]
    if not isinstance(state, tuple) or len(state) != len(reference) or state[0] != reference[0]:
        raise UnsafePickleError(f'a numpy dtype record ({spec}) has an unexpected state; only plain numeric '
                                f'dtypes are allowed; refused')
    if state[1] not in ('<', '>', '|', '=') or state[2:] != reference[2:]:
        raise UnsafePickleError(f'a numpy dtype record ({spec}) carries fields, sizes or flags; only plain '
                                f'numeric dtypes (no fields, no subarrays) are allowed; refused')

#----------------------------------------------------------------------------
# Plain data and structure.

MAX_DEPTH = 64            # Nesting of containers and modules; ours is < 20.
MAX_NODES = 250_000       # Objects visited counting every path (a DAG of shared lists blows this; our largest
                          # snapshots with resume state hold ~30k).
MAX_INT_BITS = 63         # Integers in pickled data.
MAX_DIM = 1 << 17         # Any dimension-like constructor argument or attribute (channels, resolution, z_dim...).

_AXIS_NAMES = frozenset(['start_dim', 'end_dim'])  # Tensor axes (torch.nn.Flatten), may be negative: not sizes.
_DIM_NAME = re.compile(r'^(num_\w+|size|\w+_dim|\w*channels|\w+_features|\w*resolution|\w+_size|channel_base|'
                       r'channel_max|\w+_layers|\w+_taps)$')


def _short(path):
    """A path for messages: its start and end when long."""
    return path if len(path) <= 120 else f'{path[:60]}...{path[-50:]}'


class _Budget:
    def __init__(self, what, max_nodes):
        self.what = what
        self.left = max_nodes

    def spend(self, depth, path):
        self.left -= 1
        if self.left < 0:
            raise CorruptPickleError(f'{self.what}: more than {MAX_NODES} objects counting shared references '
                                     f'(a structure built to exhaust memory or time); refused')
        if depth > MAX_DEPTH:
            raise CorruptPickleError(f'{self.what}: nesting deeper than {MAX_DEPTH} levels at {_short(path)} (or '
                                     f'a cycle); refused')


def check_plain_value(value, what, path='value', depth=0, budget=None):
    """Raise UnsafePickleError unless `value` is plain data: numbers, strings, bytes, plain numpy arrays and
    scalars, tensors, and lists/tuples/dicts/sets of those, at most MAX_DEPTH deep and MAX_NODES paths big."""
    budget = budget or _Budget(what, MAX_NODES)
    stack = [(value, path, depth)]
    while stack:
        item, item_path, item_depth = stack.pop()
        budget.spend(item_depth, item_path)
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, int) and type(item) is int:
            if item.bit_length() > MAX_INT_BITS:
                raise CorruptPickleError(f'{what}: {item_path} is an integer of {item.bit_length()} bits; refused')
            continue
        if type(item) in (float, complex, str, bytes, np.dtype) or isinstance(item, np.generic):
            if isinstance(item, (np.generic, np.dtype)) and not is_plain_dtype(getattr(item, 'dtype', item)):
                raise UnsafePickleError(f'{what}: {item_path} has the numpy dtype {item}; refused')
            continue
        if type(item) is np.ndarray:
            if not is_plain_dtype(item.dtype):
                raise UnsafePickleError(f'{what}: {item_path} is an array of dtype {item.dtype}; refused')
            continue
        if type(item) in (torch.Tensor, torch.nn.Parameter):
            continue
        if isinstance(item, dict) and type(item).__module__ in ('builtins', 'collections', 'dnnlib.util'):
            for key, sub in dict.items(item):
                stack.append((key, f'{item_path} key', item_depth + 1))
                stack.append((sub, f'{item_path}[{key!r:.40}]', item_depth + 1))
            continue
        if type(item) in (list, tuple, set, frozenset):
            stack.extend((sub, f'{item_path}[{idx}]', item_depth + 1) for idx, sub in enumerate(item))
            continue
        raise UnsafePickleError(f'{what}: {item_path} is a {type(item).__module__}.{type(item).__qualname__}, '
                                f'not plain data; refused')


def check_dimensions(mapping, what):
    """Raise CorruptPickleError if a dimension-like entry of `mapping` (z_dim, img_channels, channel_base, num_ws,
    ...; nested dicts too) is negative, NaN or larger than MAX_DIM."""
    stack = [(mapping, what, 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise CorruptPickleError(f'{what}: nesting deeper than {MAX_DEPTH} levels; refused')
        if not isinstance(item, dict):
            continue
        for key, value in item.items():
            if isinstance(value, dict):
                stack.append((value, f'{path}.{key}', depth + 1))
            elif isinstance(key, str) and _DIM_NAME.search(key) and key not in _AXIS_NAMES:
                _check_dimension_value(value, f'{path}.{key}')


def _check_dimension_value(value, path):
    values = value if isinstance(value, (list, tuple)) else [value]
    if isinstance(value, np.ndarray) and value.dtype.kind in 'iuf':
        values = value.ravel().tolist()[:64]
    for item in values:
        if isinstance(item, bool) or item is None or not isinstance(item, (int, float, np.integer, np.floating)):
            continue
        if not 0 <= item <= MAX_DIM:  # Also false for NaN.
            raise CorruptPickleError(f'{path}={item!r} is not a size between 0 and {MAX_DIM}; refused')


def check_module_graph(root, what):
    """Raise CorruptPickleError if a torch module under `root` (any nesting of containers) is the child of two
    parents, is also referenced outside a `_modules` table while being a child, or is part of a cycle; and bound
    the total size of the structure (MAX_NODES paths, MAX_DEPTH levels). Runs before anything walks the modules
    (`.eval()`, `.modules()`), which would recurse forever on a cycle or take 2^depth steps on a DAG."""
    budget = _Budget(what, MAX_NODES)
    parents = {}        # id(module) -> number of _modules tables naming it
    roots = set()       # id(module) reached from a non-module container
    expanded = set()
    stack = [(root, 'data', 0, False)]
    while stack:
        item, path, depth, is_child = stack.pop()
        budget.spend(depth, path)
        if isinstance(item, torch.nn.Module):
            key = id(item)
            if is_child:
                parents[key] = parents.get(key, 0) + 1
            else:
                roots.add(key)
            if parents.get(key, 0) > 1 or (key in roots and parents.get(key, 0) > 0):
                raise CorruptPickleError(f'{what}: the module at {_short(path)} is shared with another place in '
                                         f'the network (or forms a cycle); refused')
            if key in expanded:
                continue
            expanded.add(key)
            for attr, value in vars(item).items():
                if attr == '_modules' and isinstance(value, dict):
                    stack.extend((sub, f'{path}.{name}', depth + 1, True) for name, sub in value.items()
                                 if sub is not None)
                else:
                    stack.append((value, f'{path}.{attr}', depth + 1, False))
        elif isinstance(item, dict):
            stack.extend((sub, f'{path}[{k!r:.40}]', depth + 1, False) for k, sub in dict.items(item))
        elif type(item) in (list, tuple, set, frozenset):
            stack.extend((sub, f'{path}[{idx}]', depth + 1, False) for idx, sub in enumerate(item))
        elif hasattr(type(item), '__slots__') and not isinstance(item, (np.ndarray, np.generic, torch.Tensor)):
            stack.extend((getattr(item, slot, None), f'{path}.{slot}', depth + 1, False)
                         for slot in type(item).__slots__)

#----------------------------------------------------------------------------
# Constructing networks from file-given arguments: a budget on tensor allocations.

_FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.randn, torch.rand, torch.full}


def _requested_elements(func, args, kwargs):
    """Number of elements a tensor factory call will allocate, or None for other calls."""
    if func not in _FACTORIES:
        return None
    if func is torch.full or not args:
        size = kwargs.get('size', args[0] if args else None)
    else:
        size = args if all(isinstance(arg, (int, np.integer)) for arg in args) else args[0]
    if isinstance(size, (int, np.integer)):
        size = [size]
    try:
        dims = [int(dim) for dim in size]
    except (TypeError, ValueError):
        return None
    if any(dim < 0 for dim in dims):
        return None  # torch raises its own error for these.
    total = 1
    for dim in dims:
        total *= dim
    return total


class AllocationBudget(torch.overrides.TorchFunctionMode):
    """Within the block, tensor factory calls (torch.empty/zeros/ones/randn/rand/full) may allocate at most
    `max_elements` elements in all; the call that would pass the budget raises CorruptPickleError first."""

    def __init__(self, max_elements, what):
        super().__init__()
        self.max_elements = int(max_elements)
        self.used = 0
        self.what = what

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        requested = _requested_elements(func, args, kwargs)
        if requested is not None:
            self.used += requested
            if self.used > self.max_elements:
                raise CorruptPickleError(f'{self.what}: building the network would allocate more than '
                                         f'{self.max_elements} elements (its arguments do not match its weights, '
                                         f'or are absurd); refused')
        return func(*args, **kwargs)

#----------------------------------------------------------------------------
