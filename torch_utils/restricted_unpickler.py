"""The restricted unpickler behind torch_utils/safe_pickle.py, and the bounded reader it reads through.

`RestrictedUnpickler` resolves only the globals of an `AllowList` (torch_utils/pickle_globals.py) and restricts
every opcode with side effects (REDUCE, NEWOBJ, BUILD, APPEND(S), SETITEM(S), ADDITEMS); persistent ids, copyreg
extension codes and INST/OBJ are refused. `bounded_reader` makes every read stop at the end of the file, so a
truncated, corrupt or oversized file is a `CorruptPickleError` naming the file and offset.
"""

import collections
import io
import pickle

import numpy as np
import torch

import dnnlib
from torch_utils import pickle_checks
from torch_utils import tf_records
from torch_utils.module_state import check_module_state
from torch_utils.pickle_checks import CorruptPickleError, UnsafePickleError
from torch_utils.pickle_globals import ALLOWED_GLOBALS, NEWOBJ_CLASSES, is_int_tuple
from torch_utils.pickle_globals import _np_dtype, _np_reconstruct  # Compared by identity in _load_reduce.

_MAX_LINE_BYTES = 1 << 20       # Longest text line (protocol-0 opcodes) read at once.

#----------------------------------------------------------------------------

def allow_exec_hint():
    """The sentence appended to every refusal: how to load a file the user trusts."""
    return ('If you trust this file completely, load it with --allow-exec (allow_exec=True), which runs code '
            'from the file')

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


def bounded_reader(file, max_bytes, source):
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
        self._hint = allow_exec_hint() if hint is None else hint
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
        if not (is_module or any(cls is allowed for allowed in NEWOBJ_CLASSES)) or type(args) is not tuple:
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
            if not (isinstance(state, tuple) and len(state) == 5 and type(state[0]) is int and is_int_tuple(state[1])
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


class TrustedUnpickler(pickle.Unpickler):
    """The ordinary unpickler (allow_exec=True), with TF-era network records mapped onto their stand-in."""

    def find_class(self, module, name):
        if (module, name) == ('dnnlib.tflib.network', 'Network'):
            return tf_records.TFNetworkRecord
        return super().find_class(module, name)
#----------------------------------------------------------------------------
