"""Safe loading of network pickles: ours, the official StyleGAN2-ADA / StyleGAN3 ones, and TF-era ones.

A network pickle is a plain dict (`G`, `D`, `G_ema`, `augment_pipe`, `training_set_kwargs`, ...) whose networks are
persistent objects, i.e. calls of `torch_utils.persistence._reconstruct_persistent_obj(meta)` carrying the source
code of their module (DESIGN.md §4). Loading such a file with `pickle.load` runs whatever the file asks for. This
module reads it with a restricted unpickler instead:

  * Globals are resolved by their *whole* (module, name) against a fixed table (an `AllowList`: `ALLOWED_GLOBALS`
    for network snapshots; detector files and CIFAR-10 batches use their own lists built from the same entries);
    nothing is imported or walked attribute by attribute, so `dnnlib.util.EasyDict.__init__.__globals__` or
    `('torch', 'os.system')` is simply unknown.
  * Calls (REDUCE, NEWOBJ) go only to callables of that table. Several entries are stand-ins that check their
    arguments before doing the real work: `torch.storage._load_from_bytes` (really `torch.load(weights_only=False)`)
    becomes `torch.load(weights_only=True)` of a storage, tensors are rebuilt without backward hooks and only
    inside their storage, numpy arrays and scalars only of plain numeric dtypes (bool/int/float/complex: no fields,
    no subarrays, no objects; a structured layout is refused before numpy sees it).
  * BUILD (the `__setstate__`/`__dict__.update` step) is allowed only on numpy arrays and dtypes (their own C
    `__setstate__`, looked up on the type) and on TF-era network records; on dicts and sets only as a no-op.
    Nothing can install or call an attacker-chosen `__setstate__`, or set attributes of a class or function.
  * APPEND(S) only extend real lists, SETITEM(S) only fill real dicts, ADDITEMS only real sets.
  * Persistent ids, copyreg extension codes and protocol-0/1 object opcodes (INST, OBJ) are refused.
  * Reads never go past the end of the file: a truncated or corrupt file, or one larger than `max_bytes`, is a
    `CorruptPickleError` naming the file and offset.
  * Persistent objects are mapped onto *our* classes by network family, detected from the embedded module source
    (read as text, never executed), and their state is checked before it is restored: only attributes the class
    itself assigns, plain data, empty hooks, typed parameter/buffer/submodule tables, bounded dimensions
    (torch_utils/module_state.py). See `detect_family`.
  * What a load produced is checked before anyone walks it: no module shared between two parents or in a cycle,
    bounded nesting and size (pickle_checks.check_module_graph); networks rebuilt from file-given arguments may
    not allocate much more than the weights they receive (pickle_checks.AllocationBudget).

`allow_exec=True` (CLI `--allow-exec`) is the official behaviour for trusted files: an ordinary unpickler, and the
embedded sources of unknown classes are executed (`persistence.allow_exec`). It is never needed for our files or
the official ones.

Entry points: `load_network_pkl(f)` -> snapshot dict (what `legacy.load_network_pkl` returns), `load_pickle(f)`
-> any object, `save_network_pkl(data, path)` (atomic), `rebuild_network(module, **kwargs)`.
"""

import codecs
import collections
import contextlib
import functools
import io
import os
import pickle
import re
import warnings

import numpy as np
import torch

import dnnlib
from torch_utils import misc
from torch_utils import network_families
from torch_utils import persistence
from torch_utils import pickle_checks
from torch_utils import safetensors_io
from torch_utils import tf_records
from torch_utils.module_state import check_module_state
from torch_utils.pickle_checks import AllowList, CorruptPickleError, UnsafePickleError

DEFAULT_MAX_BYTES = 16 << 30    # Official pickles are < 1 GiB; anything near this is not a network pickle.
_MAX_LINE_BYTES = 1 << 20       # Longest text line (protocol-0 opcodes) read at once.

#----------------------------------------------------------------------------
# Errors (UnsafePickleError, CorruptPickleError) live in pickle_checks and are re-exported here.

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
    if not pickle_checks.is_plain_dtype(dtype) or not isinstance(payload, bytes):
        raise UnsafePickleError('numpy scalar records must hold raw bytes of a plain numeric dtype (no fields, '
                                'no subarrays, no objects)')
    if len(payload) != dtype.itemsize:
        raise CorruptPickleError('malformed numpy scalar record')
    return _np_scalar_impl(dtype, payload)


def _np_dtype(spec, align=False, copy=False):
    """numpy `dtype(spec, align, copy)` for a plain numeric type string; the byte order arrives by BUILD."""
    if not isinstance(spec, str) or align not in (0, 1) or copy not in (0, 1) \
            or type(align) not in (bool, int) or type(copy) not in (bool, int):
        raise UnsafePickleError('numpy dtype records must be dtype(str, bool, bool)')  # Python 2 numpy: 0/1.
    if spec not in pickle_checks.PLAIN_DTYPE_SPECS:
        raise UnsafePickleError(f'the numpy dtype {spec[:20]!r} is not a plain number type (bool, int, float, '
                                f'complex); structured, string and object dtypes are refused')
    return np.dtype(spec, align=bool(align), copy=True)  # Always a private copy: BUILD must never touch numpy's own.


def _reconstruct_persistent_obj(meta):
    """`torch_utils.persistence._reconstruct_persistent_obj` under the family resolver of `load_pickle`."""
    if not isinstance(meta, dict):
        raise CorruptPickleError('a persistent object record is not a dict')
    return persistence._reconstruct_persistent_obj(meta)

#----------------------------------------------------------------------------
# The allow-list: (module, name) -> object. Exactly the globals of DESIGN.md §4, nothing walked or imported.

def _codecs_encode(text, encoding='latin1'):
    """`_codecs.encode`: how Python 2 era pickles (protocol 2) spell bytes, e.g. the arrays of CIFAR-10 batches."""
    if not isinstance(text, str) or encoding not in ('latin1', 'latin-1'):
        raise UnsafePickleError('_codecs.encode records must encode a string as latin1')
    return codecs.encode(text, 'latin1')


_NUMPY_GLOBALS = {}
for _np_module in ['numpy', 'numpy.core.multiarray', 'numpy._core.multiarray']:
    _NUMPY_GLOBALS[(_np_module, 'ndarray')] = np.ndarray
    _NUMPY_GLOBALS[(_np_module, 'dtype')] = _np_dtype
for _np_module in ['numpy.core.multiarray', 'numpy._core.multiarray']:
    _NUMPY_GLOBALS[(_np_module, '_reconstruct')] = _np_reconstruct
    _NUMPY_GLOBALS[(_np_module, 'scalar')] = _np_scalar

_TENSOR_GLOBALS = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('builtins', 'set'): set,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('torch.storage', '_load_from_bytes'): _load_storage_from_bytes,
}

# Network snapshots: exactly the globals of DESIGN.md §4.
ALLOWED_GLOBALS = AllowList({
    ('torch_utils.persistence', '_reconstruct_persistent_obj'): _reconstruct_persistent_obj,
    ('dnnlib.util', 'EasyDict'): dnnlib.EasyDict,
    ('dnnlib.tflib.network', 'Network'): tf_records.TFNetworkRecord,
    **_TENSOR_GLOBALS, **_NUMPY_GLOBALS})

# CIFAR-10 python batches: dicts of numpy arrays and lists (Python 2 era bytes through _codecs.encode).
CIFAR_GLOBALS = AllowList({('_codecs', 'encode'): _codecs_encode, **_NUMPY_GLOBALS})

# Tensors and numpy arrays only; other file kinds extend it (pickled detectors add torch.nn classes).
TENSOR_GLOBALS = AllowList({**_TENSOR_GLOBALS, **_NUMPY_GLOBALS})


def module_class_globals(classes):
    """{(module, name): class} for torch.nn.Module subclasses (e.g. those of a pickled detector), by the
    classes' own names; used to extend an AllowList, never resolved by walking."""
    return {(cls.__module__, cls.__name__): cls for cls in classes}


def torch_nn_module_classes():
    """The torch.nn.Module subclasses that torch.nn.modules exports (what a pickled torch model names)."""
    classes = [getattr(torch.nn.modules, name, None) for name in torch.nn.modules.__all__]
    return [cls for cls in classes if isinstance(cls, type) and issubclass(cls, torch.nn.Module)] + [torch.nn.Module]


# What NEWOBJ may instantiate besides the torch.nn classes an unpickler is given (REDUCE may call any allowed
# global except numpy.ndarray, which is only ever an argument, and those module classes).
_NEWOBJ_CLASSES = (dnnlib.EasyDict, collections.OrderedDict, tf_records.TFNetworkRecord)

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
    """Unpickler that resolves only the globals of an `AllowList` and restricts every opcode with side effects.

    allowed:        the AllowList (default: network snapshots, `ALLOWED_GLOBALS`).
    module_classes: torch.nn.Module classes of that list that NEWOBJ may create and BUILD may fill, once each,
                    with a checked state (pickled detectors); network snapshots have none (persistent objects).
    hint:           how a user may load a refused file they trust (appended to refusals).
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, source='<pickle>', allowed=None, module_classes=(), hint=None, encoding='ASCII'):
        super().__init__(file, encoding=encoding)
        self._source = source
        self._allowed = ALLOWED_GLOBALS if allowed is None else allowed
        self._module_classes = tuple(module_classes)
        self._callables = frozenset(id(obj) for obj in self._allowed.values()
                                    if obj is not np.ndarray and not any(obj is cls for cls in self._module_classes))
        self._hint = _allow_exec_hint() if hint is None else hint
        self._awaiting_state = {}  # id -> object created by this load whose one BUILD is still to come.

    def _refuse(self, what):
        raise UnsafePickleError(f'{self._source}: refused: {what}. {self._hint}.')

    def load(self):
        result = super().load()
        if any(isinstance(obj, torch.nn.Module) for obj in self._awaiting_state.values()):
            self._refuse('a torch module created without its state (NEWOBJ without BUILD)')
        return result

    def find_class(self, module, name):
        obj = self._allowed.resolve(module, name, self.proto)
        if obj is None:
            self._refuse(f'the pickle asks for the global {str(module)[:100]}.{str(name)[:100]}, which is not '
                         f'on the allow-list for this kind of file')
        return obj

    def persistent_load(self, pid):
        self._refuse(f'persistent id {str(pid)[:80]!r} (network pickles contain none)')

    def _load_persid(self):
        # Refused before the id is read or decoded. A zip archive (torch.save, TorchScript) starts with 'PK', which
        # reads as this opcode.
        self._refuse('a persistent id (network pickles contain none; a zip archive such as a torch.save or '
                     'TorchScript file also starts this way, and is not a network pickle)')

    def _load_ext(self):
        self._refuse('a copyreg extension code (network pickles contain none)')

    def _load_inst_or_obj(self):
        self._refuse('a protocol-0/1 object instruction (INST/OBJ)')

    def _load_reduce(self):
        args = self.stack.pop()
        func = self.stack[-1]
        if id(func) not in self._callables or type(args) is not tuple:
            self._refuse(f'a call of {_describe(func)}')
        result = func(*args)
        if func is _np_reconstruct or func is _np_dtype:
            self._awaiting_state[id(result)] = result
        self.stack[-1] = result

    def _load_newobj(self):
        args = self.stack.pop()
        cls = self.stack.pop()
        is_module = any(cls is allowed for allowed in self._module_classes)
        if not (is_module or any(cls is allowed for allowed in _NEWOBJ_CLASSES)) or type(args) is not tuple:
            self._refuse(f'creating an instance of {_describe(cls)}')
        if is_module and args:
            self._refuse(f'arguments to {_describe(cls)}.__new__')
        obj = cls.__new__(cls, *args)
        if cls is tf_records.TFNetworkRecord or is_module:
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
        is_module = any(type(inst) is cls for cls in self._module_classes)
        if not fresh and (isinstance(inst, (np.ndarray, np.dtype)) or type(inst) is tf_records.TFNetworkRecord
                          or is_module):
            self._refuse(f'setting the state of {_describe(inst)} twice (BUILD)')
        if type(inst) is np.ndarray:
            if not (isinstance(state, tuple) and len(state) == 5 and type(state[0]) is int and _is_int_tuple(state[1])
                    and pickle_checks.is_plain_dtype(state[2]) and type(state[3]) is bool
                    and isinstance(state[4], bytes)):
                self._refuse('a numpy array that is not plain numbers (bool, int, float, complex)')
            np.ndarray.__setstate__(inst, state)
        elif isinstance(inst, np.dtype):
            # Checked before numpy sees it: a structured layout (fields, offsets, object pointers) must never be
            # installed, as using it can crash the process.
            pickle_checks.check_dtype_state(inst.str[1:], state)
            np.dtype.__setstate__(inst, state)
            if not pickle_checks.is_plain_dtype(inst):
                self._refuse(f'the numpy dtype {inst}')
        elif type(inst) is tf_records.TFNetworkRecord:
            tf_records.TFNetworkRecord.restore(inst, state)
        elif is_module:
            if not isinstance(state, dict):
                self._refuse(f'a non-dict state for {_describe(inst)}')
            state = check_module_state(type(inst), type(inst).__name__, state)
            torch.nn.Module.__setstate__(inst, state)  # The base method: the class's own is never called.
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
            ([pickle.EXT1, pickle.EXT2, pickle.EXT4], _load_ext), ([pickle.PERSID, pickle.BINPERSID], _load_persid),
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
            return tf_records.TFNetworkRecord
        return super().find_class(module, name)

#----------------------------------------------------------------------------
# Network families, told apart by the embedded module source (read as text, never executed).

def detect_family(module_src):
    """'stylegan3', 'stylegan2', 'stylegan2-ada', 'stylegan1', 'dcgan', 'cyclegan', 'augment' or None for a
    persistent object's module source."""
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
    if defines('ResnetGenerator') and defines('PatchDiscriminator'):
        return 'cyclegan'
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


def _family_class(meta, family, families):
    """Our class for `meta.class_name` in the module of `family` (from the caller's table `families`)."""
    families = network_families.require(families, f'the pickle holds a {family} network ({meta.class_name})')
    if family not in families.modules:
        raise UnsafePickleError(f'the pickle holds a {family} network ({meta.class_name}), a family the given '
                                f'table does not list ({", ".join(sorted(families.modules))})')
    module_name = families.modules[family]
    try:
        families.import_family(family)
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

def check_persistent_state(class_name, state):
    """Raise UnsafePickleError for state keys no module class may have (non-strings, dunders), before the class is
    known; `module_state.check_module_state` checks the rest once it is."""
    for key in state:
        if not isinstance(key, str) or key.startswith('__'):
            raise UnsafePickleError(f'the state of a pickled {class_name} has the key {str(key)[:80]!r}; refused')


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


def _safe_resolver(meta, families):
    """Class resolver of safe loads: always a class of ours, or an error; never executes anything. The state is
    reduced to what the class may have restored (module_state), in place. `families`: see load_pickle."""
    check_persistent_state(meta.class_name, meta.state)
    cls = _resolve_safe_class(meta, families)
    if isinstance(cls, type) and issubclass(cls, torch.nn.Module):
        kept = check_module_state(cls, meta.class_name, meta.state)
        meta.state.clear()
        meta.state.update(kept)
    elif cls is not MissingAugmentPipe:
        raise UnsafePickleError(f'the pickled {meta.class_name} maps onto {cls!r}, which is not a network module')
    return cls


def _resolve_safe_class(meta, families):
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
    return _family_class(meta, family, families)

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


def load_pickle(f, allow_exec=False, max_bytes=DEFAULT_MAX_BYTES, allowed=None, module_classes=(), hint=None,
                encoding='ASCII', families=None):
    """Unpickle any object from `f` (path or binary file) with the restricted unpickler (see module doc).

    allow_exec:     True = trusted file: the ordinary unpickler, and embedded sources of unknown classes run.
    allowed:        AllowList of globals (default ALLOWED_GLOBALS: network snapshots; CIFAR_GLOBALS, ...).
    module_classes: torch.nn classes of `allowed` that may be created and filled (see RestrictedUnpickler).
    hint:           text appended to refusals (how to load a trusted file); encoding: for Python 2 strings.
    families:       torch_utils.network_families.NetworkFamilies (training.network_families.FAMILIES): where the
                    classes of network families live. Needed only when the file holds a network whose class is not
                    already loaded with byte-identical source; without it such a file raises MissingFamiliesError.
    The result's structure is checked before it is returned (no shared or cyclic submodules, bounded depth and
    size: pickle_checks.check_module_graph), so walking its modules cannot hang or recurse without end.
    Raises UnsafePickleError for anything refused, CorruptPickleError for a truncated/corrupt/oversized file.
    """
    with _opened(f) as (file, source):
        if allow_exec:
            with persistence.allow_exec():
                return _TrustedUnpickler(file).load()
        reader = _bounded(file, max_bytes, source)
        resolver = functools.partial(_safe_resolver, families=families)
        with persistence.allow_exec(False), persistence.class_resolver(resolver):
            try:
                data = RestrictedUnpickler(reader, source=source, allowed=allowed, module_classes=module_classes,
                                           hint=hint, encoding=encoding).load()
                pickle_checks.check_module_graph(data, source)
                return data
            except network_families.MissingFamiliesError as err:  # The caller's mistake, not the file's.
                raise network_families.MissingFamiliesError(f'{source}: {err}') from None
            except (UnsafePickleError, CorruptPickleError) as err:
                if source not in str(err):
                    raise type(err)(f'{source}: {err}') from None
                raise
            except pickle.UnpicklingError as err:  # The base unpickler's own complaints (bad memo index, ...).
                raise CorruptPickleError(f'{source}: corrupt pickle ({err})') from None
            except Exception as err:  # Whatever corrupt bytes make the unpickler or a constructor trip over.
                raise CorruptPickleError(f'{source}: not a readable network pickle '
                                         f'({type(err).__name__}: {str(err)[:300]})') from err


def load_network_pkl(f, force_fp16=False, allow_exec=False, max_bytes=DEFAULT_MAX_BYTES, convert_tf=None,
                     families=None):
    """Load a network pickle (ours, official StyleGAN2-ADA/StyleGAN3, or TF-era StyleGAN2) or a safetensors snapshot
    of ours (told apart by the file's first bytes; see safetensors_io) as a snapshot dict.

    f:          path or binary file object.
    force_fp16: rebuild G, D, G_ema with num_fp16_res=4 and conv_clamp=256 (the official option).
    allow_exec: trusted files only: execute embedded sources of unknown classes (never needed for official files).
    convert_tf: TF-era (G, D, Gs) records -> snapshot dict, i.e. training.tf_legacy.convert_tf_snapshot (passed in:
                it builds training/ networks, which torch_utils does not import); None refuses TF-era pickles.
    families:   training.network_families.FAMILIES (passed in for the same reason): where our classes of each network
                family live. None works only for files whose classes are already loaded with identical source;
                otherwise MissingFamiliesError (a TypeError) says to pass it.
    Returns a dict with at least G, D, G_ema, augment_pipe (networks on CPU, or None) and training_set_kwargs,
    plus any extra keys of the file (e.g. our resume state).
    """
    with _opened(f) as (file, source):
        file = _seekable(file, max_bytes)
        if _peek_is_safetensors(file):
            return _load_safetensors_snapshot(file, source, force_fp16, max_bytes, families)
        data = load_pickle(file, allow_exec=allow_exec, max_bytes=max_bytes, families=families)
    if tf_records.is_tf_snapshot(data):
        if convert_tf is None:
            raise CorruptPickleError(f'{source}: a TF-era pickle; load it with legacy.load_network_pkl, which '
                                     'converts it')
        try:
            data = convert_tf(data)
        except pickle.UnpicklingError as err:
            raise type(err)(f'{source}: {err}') from None
        except Exception as err:  # Arguments from the file that our constructors reject.
            raise CorruptPickleError(f'{source}: {type(err).__name__}: {str(err)[:300]}') from err
    data = _check_snapshot(data, source)
    if force_fp16:
        for key in ['G', 'D', 'G_ema']:
            if data[key] is not None:
                try:
                    data[key] = _with_fp16(data[key])
                except pickle.UnpicklingError:
                    raise
                except Exception as err:  # init_kwargs from the file that our constructors reject.
                    raise CorruptPickleError(f'{source}: cannot rebuild {key} with --force-fp16 from its '
                                             f'init_kwargs ({type(err).__name__}: {str(err)[:300]})') from err
    return data


def _seekable(file, max_bytes):
    """`file` itself if it can seek, else its contents (at most max_bytes + 1) in memory."""
    seekable = getattr(file, 'seekable', None)
    if callable(seekable) and seekable():
        return file
    return io.BytesIO(file.read(max_bytes + 1))


def _peek_is_safetensors(file):
    """True if the file (positioned at its start) is a safetensors file; the position is left unchanged."""
    start = file.tell()
    head = file.read(9)
    file.seek(start)
    return safetensors_io.is_safetensors_header(head)


def _load_safetensors_snapshot(file, source, force_fp16, max_bytes, families):
    """load_network_pkl for a `.safetensors` snapshot (see torch_utils/safetensors_io.py): runs nothing from it."""
    payload = file.read(max_bytes + 1)
    if len(payload) > max_bytes:
        raise CorruptPickleError(f'{source}: larger than the {max_bytes}-byte limit for a network file')
    try:
        data = safetensors_io.load_network_safetensors(payload, source, families)
    except safetensors_io.SafetensorsFormatError as err:
        raise CorruptPickleError(str(err)) from None
    except ImportError as err:
        raise CorruptPickleError(f'{source} is a safetensors file, and reading it needs the safetensors package '
                                 f'({err}): pip install safetensors') from None
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
    for key, value in data.items():
        if key not in ('G', 'D', 'G_ema', 'augment_pipe'):
            pickle_checks.check_plain_value(value, source, key)  # training_set_kwargs, resume state, ...
    return data

#----------------------------------------------------------------------------
# Rebuilding a network from its constructor arguments (force_fp16, clean conversion).

def rebuild_network(module, **init_kwarg_overrides):
    """A fresh `type(module)(*init_args, **init_kwargs | overrides)` holding a copy of module's parameters and
    buffers (all of them must match), in eval mode without gradients, on CPU."""
    init_kwargs = dict(module.init_kwargs)
    init_kwargs.update(init_kwarg_overrides)
    pickle_checks.check_dimensions(init_kwargs, f'{type(module).__name__} init_kwargs')
    # The arguments come from the file: the rebuilt network may not be much larger than the weights it receives.
    budget = 2 * sum(tensor.numel() for tensor in misc.params_and_buffers(module)) + (1 << 20)
    with pickle_checks.AllocationBudget(budget, f'rebuilding {type(module).__name__} from its init_kwargs'):
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
    dnnlib.util.write_file_atomic(path, lambda f: pickle.dump(data, f))

#----------------------------------------------------------------------------
