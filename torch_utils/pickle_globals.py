"""The allow-list of the restricted unpickler (torch_utils/safe_pickle.py): (module, name) -> object, exactly the
globals of DESIGN.md §4, nothing walked or imported, and the stand-ins it maps them to.

Each stand-in replaces a callable that official pickles name, checks its arguments, then does the real work:
`torch.storage._load_from_bytes` (really `torch.load(weights_only=False)`) becomes `torch.load(weights_only=True)`
of one storage, tensors are rebuilt without hooks and only inside their storage, numpy arrays, dtypes and scalars
only of plain numeric types.
"""

import codecs
import collections
import io
import warnings

import numpy as np
import torch

import dnnlib
from torch_utils import persistence
from torch_utils import pickle_checks
from torch_utils import tf_records
from torch_utils.pickle_checks import AllowList, CorruptPickleError, UnsafePickleError

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


def is_int_tuple(value):
    return isinstance(value, (tuple, list)) and all(type(v) is int and v >= 0 for v in value)


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    """`torch._utils._rebuild_tensor_v2` without hooks or metadata, and only inside its storage."""
    if not isinstance(storage, torch.storage.TypedStorage):
        raise UnsafePickleError(f'torch._utils._rebuild_tensor_v2 got a {type(storage).__name__}, not a storage')
    if type(storage_offset) is not int or storage_offset < 0 or not is_int_tuple(size) or not is_int_tuple(stride) \
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
    if subtype is not np.ndarray or not is_int_tuple(shape) or np.prod(shape) != 0:
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
NEWOBJ_CLASSES = (dnnlib.EasyDict, collections.OrderedDict, tf_records.TFNetworkRecord)

#----------------------------------------------------------------------------
