"""Safe loading of network pickles: ours, the official StyleGAN2-ADA / StyleGAN3 ones, and TF-era ones.

A network pickle is a plain dict (`G`, `D`, `G_ema`, `augment_pipe`, `training_set_kwargs`, ...) whose networks are
persistent objects, i.e. calls of `torch_utils.persistence._reconstruct_persistent_obj(meta)` carrying the source
code of their module (DESIGN.md §4). Loading such a file with `pickle.load` runs whatever the file asks for. This
module reads it with a restricted unpickler instead:

  * Globals are resolved by their *whole* (module, name) against a fixed table (`ALLOWED_GLOBALS`); nothing is
    imported or walked attribute by attribute, so `dnnlib.util.EasyDict.__init__.__globals__` is simply unknown.
  * Calls (REDUCE, NEWOBJ) go only to callables of that table. Several entries are stand-ins that check their
    arguments before doing the real work: `torch.storage._load_from_bytes` (really `torch.load(weights_only=False)`)
    becomes `torch.load(weights_only=True)` of a storage, tensors are rebuilt without backward hooks and only
    inside their storage, numpy arrays only of plain (non-object) dtypes.
  * BUILD (the `__setstate__`/`__dict__.update` step) is allowed only on numpy arrays and dtypes (their own C
    `__setstate__`, looked up on the type) and on TF-era network records; on dicts and sets only as a no-op.
    Nothing can install or call an attacker-chosen `__setstate__`, or set attributes of a class or function.
  * APPEND(S) only extend real lists, SETITEM(S) only fill real dicts, ADDITEMS only real sets.
  * Persistent ids, copyreg extension codes and protocol-0/1 object opcodes (INST, OBJ) are refused.
  * Reads never go past the end of the file: a truncated or corrupt file, or one larger than `max_bytes`, is a
    `CorruptPickleError` naming the file and offset.
  * Persistent objects are mapped onto *our* classes by network family, detected from the embedded module source
    (read as text, never executed), and their state is checked (no dunder keys, no hooks, typed parameter,
    buffer and submodule tables) before it is restored. See `detect_family`.

`allow_exec=True` (CLI `--allow-exec`) is the official behaviour for trusted files: an ordinary unpickler, and the
embedded sources of unknown classes are executed (`persistence.allow_exec`). It is never needed for our files or
the official ones.

Entry points: `load_network_pkl(f)` -> snapshot dict (what `legacy.load_network_pkl` returns), `load_pickle(f)`
-> any object, `save_network_pkl(data, path)` (atomic), `rebuild_network(module, **kwargs)`.
"""

import collections
import contextlib
import importlib
import io
import os
import pickle
import re
import warnings

import numpy as np
import torch

import dnnlib
from torch_utils import misc
from torch_utils import persistence
from torch_utils import tf_legacy

DEFAULT_MAX_BYTES = 16 << 30    # Official pickles are < 1 GiB; anything near this is not a network pickle.
_MAX_LINE_BYTES = 1 << 20       # Longest text line (protocol-0 opcodes) read at once.

#----------------------------------------------------------------------------
# Errors.

class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asks for something the safe loader refuses (a global, a call, a persistent id, ...)."""


class CorruptPickleError(pickle.UnpicklingError):
    """The file is truncated, corrupt, empty, too large, or not a network pickle."""


def _allow_exec_hint():
    return ('If you trust this file completely, load it with --allow-exec (allow_exec=True), which runs code '
            'from the file')

#----------------------------------------------------------------------------
# Stand-ins for the callables that official pickles name. Each checks its arguments, then does the real work.

def _load_storage_from_bytes(payload):
    """`torch.storage._load_from_bytes`: a legacy `torch.save` of one storage, read with weights_only=True."""
    if not isinstance(payload, (bytes, bytearray)):
        raise UnsafePickleError(f'torch.storage._load_from_bytes got a {type(payload).__name__}, not bytes')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # TypedStorage deprecation notices.
            storage = torch.load(io.BytesIO(bytes(payload)), map_location='cpu', weights_only=True)
    except Exception as err:
        raise UnsafePickleError(f'a tensor storage record (torch.storage._load_from_bytes) is not plain weights '
                                f'data; refusing it: {str(err).splitlines()[0]}') from None
    if not isinstance(storage, torch.storage.TypedStorage):
        raise UnsafePickleError(f'a tensor storage record holds a {type(storage).__name__}, not a storage')
    return storage


def _is_int_tuple(value):
    return isinstance(value, (tuple, list)) and all(type(v) is int and v >= 0 for v in value)


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    """`torch._utils._rebuild_tensor_v2` without hooks or metadata, and only inside its storage."""
    if not isinstance(storage, torch.storage.TypedStorage):
        raise UnsafePickleError(f'torch._utils._rebuild_tensor_v2 got a {type(storage).__name__}, not a storage')
    if type(storage_offset) is not int or storage_offset < 0 or not _is_int_tuple(size) or not _is_int_tuple(stride) \
            or len(size) != len(stride) or type(requires_grad) is not bool:
        raise CorruptPickleError('malformed tensor record (offset, size, stride or requires_grad)')
    if backward_hooks or metadata:
        raise UnsafePickleError('a tensor record carries backward hooks or metadata; network pickles hold none')
    numel = int(np.prod(size, dtype=np.int64)) if len(size) else 1
    extent = storage_offset + (sum((n - 1) * s for n, s in zip(size, stride)) + 1 if numel > 0 else 0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # TypedStorage deprecation notices.
        storage_numel = storage.size()
        if extent > storage_numel or numel > storage_numel:
            raise CorruptPickleError(f'a tensor of size {list(size)} does not fit its storage of {storage_numel} '
                                     f'elements')
        return torch._utils._rebuild_tensor_v2(storage, storage_offset, tuple(size), tuple(stride), requires_grad,
                                               collections.OrderedDict())


def _rebuild_parameter(data, requires_grad, backward_hooks):
    """`torch._utils._rebuild_parameter` without hooks."""
    if type(data) is not torch.Tensor or type(requires_grad) is not bool:
        raise CorruptPickleError('malformed parameter record')
    if backward_hooks:
        raise UnsafePickleError('a parameter record carries backward hooks; network pickles hold none')
    return torch.nn.Parameter(data, requires_grad=requires_grad)


_np_reconstruct_impl = np.zeros(0).__reduce__()[0]   # numpy's own _reconstruct, whatever module it lives in.
_np_scalar_impl = np.float32(0).__reduce__()[0]      # numpy's own scalar().


def _np_reconstruct(subtype, shape, typecode):
    """numpy `_reconstruct`: an empty plain ndarray that a following BUILD fills."""
    if subtype is not np.ndarray or not _is_int_tuple(shape) or np.prod(shape) != 0:
        raise UnsafePickleError('numpy _reconstruct may only create an empty numpy.ndarray')
    if not isinstance(typecode, (bytes, str)):
        raise CorruptPickleError('malformed numpy array record')
    return _np_reconstruct_impl(subtype, tuple(shape), typecode)


def _np_scalar(dtype, payload=None):
    """numpy `scalar`: a number of a plain dtype from its raw bytes."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(payload, bytes):
        raise UnsafePickleError('numpy scalar records must hold raw bytes of a plain (non-object) dtype')
    if len(payload) != dtype.itemsize:
        raise CorruptPickleError('malformed numpy scalar record')
    return _np_scalar_impl(dtype, payload)


def _np_dtype(spec, align=False, copy=False):
    """numpy `dtype(spec, align, copy)` for a type string; the layout arrives by BUILD."""
    if not isinstance(spec, str) or type(align) is not bool or type(copy) is not bool:
        raise UnsafePickleError('numpy dtype records must be dtype(str, bool, bool)')
    return np.dtype(spec, align=align, copy=True)  # Always a private copy: BUILD must never touch numpy's own.


def _reconstruct_persistent_obj(meta):
    """`torch_utils.persistence._reconstruct_persistent_obj` under the family resolver of `load_pickle`."""
    if not isinstance(meta, dict):
        raise CorruptPickleError('a persistent object record is not a dict')
    return persistence._reconstruct_persistent_obj(meta)

#----------------------------------------------------------------------------
# The allow-list: (module, name) -> object. Exactly the globals of DESIGN.md §4, nothing walked or imported.

ALLOWED_GLOBALS = {
    ('torch_utils.persistence', '_reconstruct_persistent_obj'): _reconstruct_persistent_obj,
    ('dnnlib.util', 'EasyDict'): dnnlib.EasyDict,
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('builtins', 'set'): set,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('torch.storage', '_load_from_bytes'): _load_storage_from_bytes,
    ('dnnlib.tflib.network', 'Network'): tf_legacy.TFNetworkRecord,
}
for _np_module in ['numpy', 'numpy.core.multiarray', 'numpy._core.multiarray']:
    ALLOWED_GLOBALS[(_np_module, 'ndarray')] = np.ndarray
    ALLOWED_GLOBALS[(_np_module, 'dtype')] = _np_dtype
for _np_module in ['numpy.core.multiarray', 'numpy._core.multiarray']:
    ALLOWED_GLOBALS[(_np_module, '_reconstruct')] = _np_reconstruct
    ALLOWED_GLOBALS[(_np_module, 'scalar')] = _np_scalar

# What REDUCE may call and NEWOBJ may instantiate (numpy.ndarray is only ever an argument).
_CALLABLE = frozenset(id(obj) for obj in ALLOWED_GLOBALS.values() if obj is not np.ndarray)
_NEWOBJ_CLASSES = (dnnlib.EasyDict, collections.OrderedDict, tf_legacy.TFNetworkRecord)

#----------------------------------------------------------------------------
# Reading that never goes past the end of the file.

class _BoundedReader:
    """read/readinto/readline over a binary file with a known number of remaining bytes."""

    def __init__(self, file, num_bytes, source):
        self._file = file
        self._remaining = num_bytes
        self._total = num_bytes
        self._source = source

    def _reserve(self, num_bytes):
        if num_bytes > self._remaining:
            raise CorruptPickleError(f'{self._source}: truncated or corrupt pickle: a record at byte '
                                     f'{self._total - self._remaining} needs {num_bytes} bytes but the file has '
                                     f'{self._remaining} left')
        self._remaining -= num_bytes

    def read(self, num_bytes=-1):
        if num_bytes is None or num_bytes < 0:
            num_bytes = self._remaining
        self._reserve(num_bytes)
        chunks = []
        while num_bytes > 0:  # Raw streams may return fewer bytes than asked for.
            chunk = self._file.read(num_bytes)
            if not chunk:
                raise CorruptPickleError(f'{self._source}: the file ended early (still being written?)')
            chunks.append(chunk)
            num_bytes -= len(chunk)
        return b''.join(chunks) if len(chunks) != 1 else chunks[0]

    def readinto(self, buffer):
        view = memoryview(buffer).cast('B')
        view[:] = self.read(view.nbytes)
        return view.nbytes

    def readline(self):
        line = self._file.readline(min(self._remaining, _MAX_LINE_BYTES))
        self._remaining -= len(line)
        return line


def _bounded(file, max_bytes, source):
    """A `_BoundedReader` over the rest of `file` (read into memory first if it cannot seek)."""
    seekable = getattr(file, 'seekable', None)
    if callable(seekable) and seekable():
        start = file.tell()
        num_bytes = file.seek(0, io.SEEK_END) - start
        file.seek(start)
    else:
        data = file.read(max_bytes + 1)
        file, num_bytes = io.BytesIO(data), len(data)
    if num_bytes > max_bytes:
        raise CorruptPickleError(f'{source}: {num_bytes} bytes is larger than the {max_bytes}-byte limit for a '
                                 f'network pickle (pass max_bytes to raise it)')
    if num_bytes == 0:
        raise CorruptPickleError(f'{source}: the file is empty')
    return _BoundedReader(file, num_bytes, source)

#----------------------------------------------------------------------------
# The restricted unpickler. It extends Python's own pure-Python unpickler, whose opcode table can be
# overridden one opcode at a time (the C unpickler cannot intercept BUILD, APPENDS or SETITEMS).

def _is_empty_state(state):
    """None, {} or a (state, slotstate) pair of those: what older Pythons pickle for a dict with no attributes."""
    def empty(part):
        return part is None or (type(part) is dict and len(part) == 0)
    return empty(state) or (type(state) is tuple and len(state) == 2 and empty(state[0]) and empty(state[1]))


class RestrictedUnpickler(pickle._Unpickler):
    """Unpickler that resolves only `ALLOWED_GLOBALS` and restricts every opcode with side effects."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, source='<pickle>'):
        super().__init__(file)
        self._source = source
        self._awaiting_state = {}  # id -> object created by this load whose one BUILD is still to come.

    def _refuse(self, what):
        raise UnsafePickleError(f'{self._source}: refused: {what}. {_allow_exec_hint()}.')

    def find_class(self, module, name):
        if self.proto < 3 and module == '__builtin__':
            module = 'builtins'  # Python 2 spelling that protocols 0-2 use (what pickle's fix_imports maps).
        obj = ALLOWED_GLOBALS.get((module, name))
        if obj is None:
            self._refuse(f'the pickle asks for the global {module}.{name}, which is not a network-pickle name')
        return obj

    def persistent_load(self, pid):
        self._refuse(f'persistent id {pid!r} (network pickles contain none)')

    def _load_ext(self):
        self._refuse('a copyreg extension code (network pickles contain none)')

    def _load_inst_or_obj(self):
        self._refuse('a protocol-0/1 object instruction (INST/OBJ)')

    def _load_reduce(self):
        args = self.stack.pop()
        func = self.stack[-1]
        if id(func) not in _CALLABLE or type(args) is not tuple:
            self._refuse(f'a call of {_describe(func)}')
        result = func(*args)
        if func is _np_reconstruct or func is _np_dtype:
            self._awaiting_state[id(result)] = result
        self.stack[-1] = result

    def _load_newobj(self):
        args = self.stack.pop()
        cls = self.stack.pop()
        if not any(cls is allowed for allowed in _NEWOBJ_CLASSES) or type(args) is not tuple:
            self._refuse(f'creating an instance of {_describe(cls)}')
        obj = cls.__new__(cls, *args)
        if cls is tf_legacy.TFNetworkRecord:
            self._awaiting_state[id(obj)] = obj
        self.append(obj)

    def _load_newobj_ex(self):
        kwargs = self.stack.pop()
        if kwargs:
            self._refuse('keyword arguments to a constructor (NEWOBJ_EX)')
        self._load_newobj()

    def _load_build(self):
        # numpy arrays, dtypes and TF records get their state once, right after this load created them: setting
        # the state of an object already in use (say a dtype shared by an array) could break memory safety.
        state = self.stack.pop()
        inst = self.stack[-1]
        fresh = self._awaiting_state.pop(id(inst), None) is inst
        if not fresh and (isinstance(inst, (np.ndarray, np.dtype)) or type(inst) is tf_legacy.TFNetworkRecord):
            self._refuse(f'setting the state of {_describe(inst)} twice (BUILD)')
        if type(inst) is np.ndarray:
            if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[2], np.dtype)
                    and not state[2].hasobject and isinstance(state[4], bytes)):
                self._refuse('a numpy array that is not plain numbers')
            np.ndarray.__setstate__(inst, state)
        elif isinstance(inst, np.dtype):
            if not isinstance(state, tuple):
                raise CorruptPickleError(f'{self._source}: malformed numpy dtype record')
            np.dtype.__setstate__(inst, state)
            if inst.hasobject:
                self._refuse('a numpy dtype holding Python objects')
        elif type(inst) is tf_legacy.TFNetworkRecord:
            tf_legacy.TFNetworkRecord.restore(inst, state)
        elif type(inst) in (dict, dnnlib.EasyDict, collections.OrderedDict, set, list) and _is_empty_state(state):
            pass  # An empty __dict__ pickled by older Pythons: nothing to do.
        else:
            self._refuse(f'setting the state of {_describe(inst)} (BUILD)')

    def _load_append(self):
        value = self.stack.pop()
        if type(self.stack[-1]) is not list:
            self._refuse(f'appending to {_describe(self.stack[-1])}')
        self.stack[-1].append(value)

    def _load_appends(self):
        items = self.pop_mark()
        if type(self.stack[-1]) is not list:
            self._refuse(f'appending to {_describe(self.stack[-1])}')
        self.stack[-1].extend(items)

    def _load_setitem(self):
        value = self.stack.pop()
        key = self.stack.pop()
        self._setitems(self.stack[-1], [key, value])

    def _load_setitems(self):
        items = self.pop_mark()
        self._setitems(self.stack[-1], items)

    def _setitems(self, target, items):
        if type(target) not in (dict, dnnlib.EasyDict, collections.OrderedDict):
            self._refuse(f'setting items of {_describe(target)}')
        setitem = type(target).__setitem__  # One of the three types above, never an override from the file.
        for idx in range(0, len(items), 2):
            setitem(target, items[idx], items[idx + 1])

    def _load_additems(self):
        items = self.pop_mark()
        if type(self.stack[-1]) is not set:
            self._refuse(f'adding items to {_describe(self.stack[-1])}')
        self.stack[-1].update(items)

    for _opcodes, _handler in [
            ([pickle.EXT1, pickle.EXT2, pickle.EXT4], _load_ext),
            ([pickle.INST, pickle.OBJ], _load_inst_or_obj),
            ([pickle.REDUCE], _load_reduce), ([pickle.NEWOBJ], _load_newobj), ([pickle.NEWOBJ_EX], _load_newobj_ex),
            ([pickle.BUILD], _load_build), ([pickle.APPEND], _load_append), ([pickle.APPENDS], _load_appends),
            ([pickle.SETITEM], _load_setitem), ([pickle.SETITEMS], _load_setitems),
            ([pickle.ADDITEMS], _load_additems)]:
        for _opcode in _opcodes:
            dispatch[_opcode[0]] = _handler
    del _opcodes, _handler, _opcode


def _describe(obj):
    """Short description of an object for error messages (never its repr, which could be huge)."""
    if isinstance(obj, type):
        return f'the class {obj.__module__}.{obj.__qualname__}'
    if callable(obj) and hasattr(obj, '__qualname__'):
        return f'{getattr(obj, "__module__", "?")}.{obj.__qualname__}'
    return f'a {type(obj).__module__}.{type(obj).__qualname__} object'


class _TrustedUnpickler(pickle.Unpickler):
    """The ordinary unpickler (allow_exec=True), with TF-era network records mapped onto their stand-in."""

    def find_class(self, module, name):
        if (module, name) == ('dnnlib.tflib.network', 'Network'):
            return tf_legacy.TFNetworkRecord
        return super().find_class(module, name)

#----------------------------------------------------------------------------
# Network families, told apart by the embedded module source (read as text, never executed).

FAMILY_MODULES = {
    'stylegan3':        'training.networks_stylegan3',  # Official StyleGAN3 (and ours).
    'stylegan2':        'training.networks_stylegan2',  # Official SG2 of the StyleGAN3 repo (and ours).
    'stylegan2-ada':    'training.networks_stylegan2',  # Official SG2-ADA `training/networks.py`.
    'augment':          'training.augment',             # AugmentPipe of either official repo (and ours).
    'stylegan1':        'training.networks_stylegan1',  # Ours only (the official StyleGAN1 was TensorFlow).
    'dcgan':            'training.networks_dcgan',      # Ours only (Radford et al. 2016).
}


def detect_family(module_src):
    """'stylegan3', 'stylegan2', 'stylegan2-ada', 'stylegan1', 'dcgan', 'augment' or None for a persistent object's module
    source."""
    def defines(class_name):
        return re.search(rf'^class\s+{class_name}\b', module_src, flags=re.MULTILINE) is not None
    if defines('SynthesisInput'):
        return 'stylegan3'
    if defines('AugmentPipe'):
        return 'augment'
    if defines('AdaINBlock'):
        return 'stylegan1'
    if defines('LatentInput') and defines('UpBlock'):
        return 'dcgan'
    if defines('SynthesisBlock') or defines('DiscriminatorBlock'):
        # The SG2-ADA module predates the `update_emas` argument (it had `skip_w_avg_update`).
        return 'stylegan2' if 'update_emas' in module_src else 'stylegan2-ada'
    return None


class MissingAugmentPipe:
    """Placeholder built for an official AugmentPipe while training/augment.py is not available; load_network_pkl
    replaces it by None with a warning (the pipe is only needed to continue training with ADA)."""

    def __setstate__(self, state):
        pass  # The state is dropped on purpose.


def _exact_registered_class(meta):
    """Our persistent class whose module source is byte-identical to the pickled one, or None."""
    for cls in persistence.registered_classes().values():
        if cls.__name__ == meta.class_name and getattr(cls, '_orig_module_src', None) == meta.module_src:
            return cls
    return None


def _family_class(meta, family):
    """Our class for `meta.class_name` in the module of `family`."""
    module_name = FAMILY_MODULES[family]
    try:
        importlib.import_module(module_name)
    except ImportError as err:
        if family == 'augment':
            return MissingAugmentPipe
        raise CorruptPickleError(f'cannot load a {family} network: importing {module_name} failed ({err})') from err
    cls = persistence.get_registered_class(module_name, meta.class_name)
    if cls is None:
        raise CorruptPickleError(f'the pickle holds a {family} object of class {meta.class_name!r}, which '
                                 f'{module_name.replace(".", "/")}.py does not define')
    return cls

#----------------------------------------------------------------------------
# Checks of a persistent object's state before it is restored.

_TYPED_TABLES = {'_parameters': torch.nn.Parameter, '_buffers': torch.Tensor, '_modules': torch.nn.Module}


def check_persistent_state(class_name, state):
    """Raise UnsafePickleError unless `state` looks like the __dict__ of a network module: string keys without
    dunders, empty hook tables, and parameter/buffer/submodule tables holding only those types (or None)."""
    for key, value in state.items():
        if not isinstance(key, str) or key.startswith('__'):
            raise UnsafePickleError(f'the state of a pickled {class_name} has the key {key!r}; refused')
        if 'hooks' in key and value is not None and (not isinstance(value, dict) or len(value) != 0):
            raise UnsafePickleError(f'a pickled {class_name} carries hooks ({key}); network pickles hold none')
    for key, kind in _TYPED_TABLES.items():
        table = state.get(key)
        if table is None:
            continue
        if not isinstance(table, dict):
            raise UnsafePickleError(f'{class_name}.{key} in the pickle is not a dict')
        for name, value in table.items():
            if not isinstance(name, str) or not (value is None or isinstance(value, kind)):
                raise UnsafePickleError(f'{class_name}.{key}[{name!r}] in the pickle is a {type(value).__name__}, '
                                        f'not a {kind.__name__}')


def upgrade_ada_state(meta):
    """SG2-ADA-era state -> the constructor arguments of our classes (behaviour is kept by the state itself).

    SG2-ADA's Generator took `synthesis_kwargs={...}`, ours takes them flat; its MappingNetwork defaulted to
    w_avg_beta=0.995 (ours 0.998). Rewriting `_init_kwargs` makes `type(G)(**G.init_kwargs)` build the same net.
    """
    if meta.class_name != 'Generator':
        return
    init_kwargs = dict(meta.state.get('_init_kwargs') or {})
    synthesis_kwargs = init_kwargs.pop('synthesis_kwargs', None) or {}
    init_kwargs.update(synthesis_kwargs)
    mapping_kwargs = dict(init_kwargs.get('mapping_kwargs') or {})
    mapping_kwargs.setdefault('w_avg_beta', 0.995)
    init_kwargs['mapping_kwargs'] = mapping_kwargs
    meta.state['_init_kwargs'] = init_kwargs


def _safe_resolver(meta):
    """Class resolver of safe loads: always a class of ours, or an error; never executes anything."""
    check_persistent_state(meta.class_name, meta.state)
    cls = _exact_registered_class(meta)
    if cls is not None:
        return cls
    family = detect_family(meta.module_src)
    if family is None:
        # Our own modules of other versions (e.g. networks_stylegan1): the registered class of that name whose
        # module defines the most similar classes; an error if none or ambiguous. Exec is off here.
        try:
            return persistence.resolve_class(meta)
        except RuntimeError as err:
            raise UnsafePickleError(f'the pickle holds a class {meta.class_name!r} of unknown code ({err}). '
                                    f'{_allow_exec_hint()}.') from None
    if family == 'stylegan2-ada':
        upgrade_ada_state(meta)
    return _family_class(meta, family)

#----------------------------------------------------------------------------
# Loading.

@contextlib.contextmanager
def _opened(f):
    """(binary file, name for messages) for a path, a path-like or an open binary file."""
    if isinstance(f, (str, os.PathLike)):
        with open(f, 'rb') as file:
            yield file, os.fspath(f)
    else:
        yield f, getattr(f, 'name', None) or 'the network pickle'


def load_pickle(f, allow_exec=False, max_bytes=DEFAULT_MAX_BYTES):
    """Unpickle any object from `f` (path or binary file) with the restricted unpickler (see module doc).

    allow_exec: True = trusted file: the ordinary unpickler, and embedded sources of unknown classes run.
    Raises UnsafePickleError for anything refused, CorruptPickleError for a truncated/corrupt/oversized file.
    """
    with _opened(f) as (file, source):
        if allow_exec:
            with persistence.allow_exec():
                return _TrustedUnpickler(file).load()
        reader = _bounded(file, max_bytes, source)
        with persistence.allow_exec(False), persistence.class_resolver(_safe_resolver):
            try:
                return RestrictedUnpickler(reader, source=source).load()
            except pickle.UnpicklingError:
                raise
            except Exception as err:  # Whatever corrupt bytes make the unpickler or a constructor trip over.
                raise CorruptPickleError(f'{source}: not a readable network pickle '
                                         f'({type(err).__name__}: {err})') from err


def load_network_pkl(f, force_fp16=False, allow_exec=False, max_bytes=DEFAULT_MAX_BYTES):
    """Load a network pickle (ours, official StyleGAN2-ADA/StyleGAN3, or TF-era StyleGAN2) as a snapshot dict.

    f:          path or binary file object.
    force_fp16: rebuild G, D, G_ema with num_fp16_res=4 and conv_clamp=256 (the official option).
    allow_exec: trusted files only: execute embedded sources of unknown classes (never needed for official files).
    Returns a dict with at least G, D, G_ema, augment_pipe (networks on CPU, or None) and training_set_kwargs,
    plus any extra keys of the file (e.g. our resume state).
    """
    with _opened(f) as (file, source):
        data = load_pickle(file, allow_exec=allow_exec, max_bytes=max_bytes)
    if tf_legacy.is_tf_snapshot(data):
        try:
            data = tf_legacy.convert_tf_snapshot(data)
        except ValueError as err:
            raise CorruptPickleError(f'{source}: {err}') from err
    data = _check_snapshot(data, source)
    if force_fp16:
        for key in ['G', 'D', 'G_ema']:
            if data[key] is not None:
                data[key] = _with_fp16(data[key])
    return data


def _check_snapshot(data, source):
    """The loaded object as a snapshot dict with the standard keys, or a clear error."""
    if not isinstance(data, dict) or not any(key in data for key in ['G', 'D', 'G_ema']):
        raise CorruptPickleError(f'{source}: not a network pickle (expected a dict with G, D, G_ema; got a '
                                 f'{type(data).__name__})')
    data = dict(data)
    for key in ['G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs']:
        data.setdefault(key, None)
    if isinstance(data['augment_pipe'], MissingAugmentPipe):
        warnings.warn(f'{source}: the AugmentPipe in this pickle was dropped because training/augment.py is not '
                      f'available; networks load normally (resuming with ADA starts a fresh pipe)')
        data['augment_pipe'] = None
    for key in ['G', 'D', 'G_ema', 'augment_pipe']:
        if data[key] is not None and not isinstance(data[key], torch.nn.Module):
            raise CorruptPickleError(f'{source}: {key} is a {type(data[key]).__name__}, not a network')
    return data

#----------------------------------------------------------------------------
# Rebuilding a network from its constructor arguments (force_fp16, clean conversion).

def rebuild_network(module, **init_kwarg_overrides):
    """A fresh `type(module)(*init_args, **init_kwargs | overrides)` holding a copy of module's parameters and
    buffers (all of them must match), in eval mode without gradients, on CPU."""
    init_kwargs = dict(module.init_kwargs)
    init_kwargs.update(init_kwarg_overrides)
    rebuilt = type(module)(*module.init_args, **init_kwargs).eval().requires_grad_(False)
    misc.copy_params_and_buffers(module, rebuilt, require_all=True)
    return rebuilt


def _with_fp16(module):
    """The official --force-fp16: num_fp16_res=4, conv_clamp=256 for networks that take those arguments."""
    init_kwargs = module.init_kwargs
    if 'num_fp16_res' not in init_kwargs and 'conv_clamp' not in init_kwargs and 'img_resolution' not in init_kwargs:
        return module
    if init_kwargs.get('num_fp16_res') == 4 and init_kwargs.get('conv_clamp') == 256:
        return module
    return rebuild_network(module, num_fp16_res=4, conv_clamp=256)

#----------------------------------------------------------------------------
# Writing.

def save_network_pkl(data, path):
    """Pickle a snapshot dict to `path` atomically (temporary file in the same folder, then rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp_path = os.path.join(folder, f'.{os.path.basename(path)}.tmp-{os.getpid()}')
    try:
        with open(tmp_path, 'wb') as f:
            pickle.dump(data, f)
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)

#----------------------------------------------------------------------------
