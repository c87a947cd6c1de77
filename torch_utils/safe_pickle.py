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

Where things are: the allow-list and its stand-ins in torch_utils/pickle_globals.py, the unpickler and the bounded
reader in torch_utils/restricted_unpickler.py, the checks of what a load produced in pickle_checks.py and
module_state.py; family detection, class mapping and the entry points here.
"""

import contextlib
import functools
import io
import os
import pickle
import re
import warnings

import torch

import dnnlib
from torch_utils import misc
from torch_utils import network_families
from torch_utils import persistence
from torch_utils import pickle_checks
from torch_utils import safetensors_io
from torch_utils import tf_records
from torch_utils.module_state import check_module_state
# The errors live in pickle_checks, the allow-list in pickle_globals, the unpickler in restricted_unpickler; their
# names stay importable from here (legacy.py, the CLIs and the tests use safe_pickle.<name>).
from torch_utils.pickle_checks import AllowList, CorruptPickleError, UnsafePickleError  # noqa: F401
from torch_utils.pickle_globals import (  # noqa: F401
    ALLOWED_GLOBALS, CIFAR_GLOBALS, TENSOR_GLOBALS, module_class_globals, torch_nn_module_classes)
from torch_utils.restricted_unpickler import (  # noqa: F401
    RestrictedUnpickler, TrustedUnpickler, allow_exec_hint, bounded_reader)

DEFAULT_MAX_BYTES = 16 << 30    # Official pickles are < 1 GiB; anything near this is not a network pickle.

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
                                    f'{allow_exec_hint()}.') from None
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
                return TrustedUnpickler(file).load()
        reader = bounded_reader(file, max_bytes, source)
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
