"""Persistent classes: network objects that pickle together with the source code of their module.

A class decorated with `@persistent_class` remembers the arguments of each instance's constructor
(`obj.init_args`, `obj.init_kwargs`) and pickles as the call
`torch_utils.persistence._reconstruct_persistent_obj(meta)` with

    meta = dict(type='class', version=6, module_src=<full source of the defining module>,
                class_name=<class name>, state=<obj.__dict__, including _init_args and _init_kwargs>)

which is the layout of the official StyleGAN pickles, so each side can read the other's files.

Loading never runs `module_src` by default. `_reconstruct_persistent_obj` finds the class to build in this
order:
  1. the resolver installed with `with class_resolver(fn): ...` -- `fn(meta)` returns a class or None;
  2. a registered class whose module source is byte-identical to `module_src` (same code version);
  3. only inside `with allow_exec(): ...`: the class from executing `module_src` in a fresh module named
     `_imported_module_<md5 of source>` (the official mechanism; opt-in because it runs file contents);
  4. the registered class of that name whose module defines the most similar set of top-level class names
     (so our snapshots still load after our code changed); ambiguity is an error, never a guess.
The object is then created with `cls.__new__(cls)` and `__setstate__(state)` (or `__dict__.update`);
its `__init__` is not called.

How the safe loader plugs in: it unpickles with a restricted Unpickler that allows the global
`torch_utils.persistence._reconstruct_persistent_obj`, and wraps the load in
`with persistence.class_resolver(detect_family):`, where `detect_family(meta)` reads `meta['module_src']`
(e.g. 'SynthesisInput' -> StyleGAN3), imports the matching module of ours, and returns
`get_registered_class('networks_stylegan3', meta['class_name'])`. State conversions between code versions
(renamed fields, old defaults) belong in `import_hook(fn)` functions, which see and may replace every `meta`
before the class is resolved. `--allow-exec` maps to `with persistence.allow_exec():`.

Global state here is limited to registries (persistent classes, import hooks, module sources); the
resolver and the exec permission live in context variables, scoped to a `with` block.
"""

import contextlib
import contextvars
import copy
import functools
import hashlib
import inspect
import logging
import re
import sys
import types

import numpy as np
import torch

import dnnlib

_log = logging.getLogger(__name__)

_FORMAT_VERSION = 6
_EXEC_MODULE_PREFIX = '_imported_module_'

_persistent_classes = set()     # Every class returned by persistent_class().
_classes_by_module = dict()     # (full module name, class name) -> persistent class.
_classes_by_short_name = dict() # (last component of module name, class name) -> persistent class.
_module_src_cache = dict()      # Full module name -> source text.
_module_by_src_md5 = dict()     # md5 of source -> full module name (registered modules).
_exec_modules = dict()          # md5 of source -> module created by executing that source.
_import_hooks = []              # Functions meta -> meta, applied before every reconstruction.

_class_resolver = contextvars.ContextVar('persistence_class_resolver', default=None)
_exec_allowed = contextvars.ContextVar('persistence_exec_allowed', default=False)

#----------------------------------------------------------------------------
# Module sources.

def _md5(text):
    return hashlib.md5(text.encode('utf-8')).hexdigest()


def _get_module_src(module_name):
    """Full source text of a loaded module, cached per module name."""
    src = _module_src_cache.get(module_name)
    if src is None:
        module = sys.modules.get(module_name)
        if module is None:
            raise RuntimeError(f'persistent_class: module {module_name!r} is not loaded')
        try:
            src = inspect.getsource(module)
        except (OSError, TypeError) as err:
            raise RuntimeError(f'persistent_class: cannot read the source of module {module_name!r} ({err}); '
                               f'persistent classes must be defined in a .py file') from err
        _module_src_cache[module_name] = src
    return src


@functools.lru_cache(maxsize=64)
def _top_level_class_names(src):
    """Names of classes defined at the top level of a source text (read with a regex, never executed)."""
    return frozenset(re.findall(r'^class\s+([A-Za-z_][A-Za-z0-9_]*)', src, flags=re.MULTILINE))

#----------------------------------------------------------------------------
# Registry of persistent classes.

def _register(cls, module_name, class_name, src):
    if module_name.startswith(_EXEC_MODULE_PREFIX):
        return  # Classes of executed pickle sources are not candidates for mapping other pickles.
    short_name = module_name.rsplit('.', 1)[-1]
    previous = _classes_by_short_name.get((short_name, class_name))
    if previous is not None and previous.__module__ != module_name:
        _log.warning('persistence: %s.%s replaces %s.%s in the class registry',
                     module_name, class_name, previous.__module__, class_name)
    _classes_by_module[(module_name, class_name)] = cls
    _classes_by_short_name[(short_name, class_name)] = cls
    _module_by_src_md5[_md5(src)] = module_name


def get_registered_class(module_name, class_name):
    """The persistent class `class_name` of module `module_name` ('networks_stylegan2' or its full
    dotted name), or None if that module has not been imported or defines no such persistent class."""
    cls = _classes_by_module.get((module_name, class_name))
    if cls is None:
        cls = _classes_by_short_name.get((module_name.rsplit('.', 1)[-1], class_name))
    return cls


def registered_classes():
    """{(short module name, class name): class} for every persistent class imported so far."""
    return dict(_classes_by_short_name)


def is_persistent(obj):
    """True if `obj` is a persistent class or an instance of exactly such a class."""
    if isinstance(obj, type):
        return obj in _persistent_classes
    return type(obj) in _persistent_classes

#----------------------------------------------------------------------------
# Init arguments must pickle into what a safe loader accepts.

def _check_pickleable(obj, path='args'):
    """Raise TypeError naming the offending entry if `obj` holds something other than plain data."""
    if obj is None or isinstance(obj, (bool, int, float, str, bytes, bytearray)):
        return
    if isinstance(obj, (np.ndarray, np.generic, np.dtype, torch.Tensor)) or is_persistent(obj):
        return
    if isinstance(obj, (list, tuple, set)):
        for idx, item in enumerate(obj):
            _check_pickleable(item, f'{path}[{idx}]')
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            _check_pickleable(key, f'{path} key {key!r}')
            _check_pickleable(value, f'{path}[{key!r}]')
        return
    raise TypeError(f'persistent_class: constructor argument {path} is a {type(obj).__module__}.'
                    f'{type(obj).__qualname__}; only plain data (numbers, strings, lists, dicts, numpy arrays, '
                    f'tensors, persistent objects) can be stored in a network pickle')

#----------------------------------------------------------------------------
# The decorator.

def _restore_state(obj, state):
    setstate = getattr(obj, '__setstate__', None)
    if callable(setstate):
        setstate(state)
    else:
        obj.__dict__.update(state)


def persistent_class(orig_class):
    """Class decorator: instances record their constructor arguments and pickle with their module's source.

    Returns a subclass with the same name, module and behaviour, registered for loading (see module doc).
    """
    if not isinstance(orig_class, type):
        raise TypeError(f'persistent_class expects a class, got {orig_class!r}')
    if is_persistent(orig_class):
        return orig_class
    module_name = orig_class.__module__
    class_name = orig_class.__name__
    module_src = _get_module_src(module_name)

    class Persistent(orig_class):
        _orig_module_src = module_src
        _orig_class_name = class_name

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            _check_pickleable(args, 'args')
            _check_pickleable(kwargs, 'kwargs')
            self._init_args = copy.deepcopy(args)
            self._init_kwargs = copy.deepcopy(kwargs)

        @property
        def init_args(self):
            """Positional constructor arguments (a deep copy)."""
            return copy.deepcopy(self._init_args)

        @property
        def init_kwargs(self):
            """Keyword constructor arguments as an EasyDict (a deep copy)."""
            return dnnlib.EasyDict(copy.deepcopy(self._init_kwargs))

        def _pickle_state(self):
            if type(self) is not Persistent:
                raise TypeError(f'{type(self).__qualname__} subclasses the persistent class {class_name} and must '
                                f'itself be decorated with @persistence.persistent_class to be pickled')
            state = self.__getstate__()
            if not isinstance(state, dict):
                raise TypeError(f'persistent_class: {class_name} has a non-dict state ({type(state).__name__})')
            return state

        def __reduce__(self):
            meta = dict(type='class', version=_FORMAT_VERSION, module_src=self._orig_module_src,
                        class_name=self._orig_class_name, state=self._pickle_state())
            return (_reconstruct_persistent_obj, (meta,))

        def __reduce_ex__(self, protocol):
            return self.__reduce__()  # Same layout for every pickle protocol.

        def __deepcopy__(self, memo):
            # Build the copy directly (no import hooks, no class lookup); registering it in `memo` first
            # lets references back to this object inside its state resolve to the copy.
            clone = type(self).__new__(type(self))
            memo[id(self)] = clone
            _restore_state(clone, copy.deepcopy(self.__getstate__(), memo))
            return clone

    Persistent.__name__ = class_name
    Persistent.__qualname__ = orig_class.__qualname__
    Persistent.__module__ = module_name
    Persistent.__doc__ = orig_class.__doc__
    # help() and inspect.signature() show the real constructor arguments, not (*args, **kwargs).
    functools.update_wrapper(Persistent.__init__, orig_class.__init__, assigned=('__doc__',), updated=())
    _persistent_classes.add(Persistent)
    _register(Persistent, module_name, class_name, module_src)
    return Persistent

#----------------------------------------------------------------------------
# Loading.

def import_hook(hook):
    """Register `hook(meta) -> meta`, called on every persistent object's meta before it is rebuilt.

    `meta` is an EasyDict (its `state` too); a hook may edit it in place or return a new one.
    Hooks stay registered for the process lifetime.
    """
    if not callable(hook):
        raise TypeError(f'import_hook expects a callable, got {hook!r}')
    _import_hooks.append(hook)
    return hook


@contextlib.contextmanager
def class_resolver(resolver):
    """Within the block, `resolver(meta)` picks the class for each persistent object (None = default rules)."""
    token = _class_resolver.set(resolver)
    try:
        yield
    finally:
        _class_resolver.reset(token)


@contextlib.contextmanager
def allow_exec(enabled=True):
    """Within the block, unknown persistent classes may be built by executing the source in the pickle.

    Only use this for files you trust: it runs arbitrary code from the file.
    """
    token = _exec_allowed.set(bool(enabled))
    try:
        yield
    finally:
        _exec_allowed.reset(token)


def _exec_module_src(src):
    """Execute a module source in a fresh module `_imported_module_<md5>` (cached per source)."""
    src_md5 = _md5(src)
    module = _exec_modules.get(src_md5)
    if module is None:
        module_name = _EXEC_MODULE_PREFIX + src_md5
        module = types.ModuleType(module_name)
        _module_src_cache[module_name] = src  # So classes defined while executing can pickle again.
        sys.modules[module_name] = module
        try:
            exec(compile(src, f'<pickled source {module_name}>', 'exec'), module.__dict__)  # noqa: S102 (opt-in)
        except BaseException:
            del sys.modules[module_name]
            raise
        _exec_modules[src_md5] = module
    return module


def _closest_registered_class(module_src, class_name):
    """Registered class named `class_name` whose module's class names overlap most with `module_src`'s."""
    pickled_names = _top_level_class_names(module_src)
    scored = []
    for (module_name, name), cls in _classes_by_module.items():
        if name != class_name:
            continue
        our_names = _top_level_class_names(_get_module_src(module_name))
        score = len(pickled_names & our_names) / max(len(pickled_names | our_names), 1)
        scored.append((score, module_name, cls))
    if not scored:
        return None
    scored.sort(key=lambda item: -item[0])
    best_score = scored[0][0]
    tied = [module_name for score, module_name, _cls in scored if score == best_score]
    if len(tied) > 1:
        raise RuntimeError(f'persistence: cannot tell which module the pickled class {class_name!r} belongs to '
                           f'(equally similar: {", ".join(tied)}); load it through the safe loader (legacy.py), '
                           f'which detects the network family')
    return scored[0][2]


def resolve_class(meta):
    """The class to build for a persistent `meta` by the default rules 2-4 of the module doc (no resolver)."""
    module_name = _module_by_src_md5.get(_md5(meta['module_src']))
    if module_name is not None and (module_name, meta['class_name']) in _classes_by_module:
        return _classes_by_module[(module_name, meta['class_name'])]
    if _exec_allowed.get():
        module = _exec_module_src(meta['module_src'])
        cls = getattr(module, meta['class_name'], None)
        if not isinstance(cls, type):
            raise RuntimeError(f'persistence: the pickled module source defines no class {meta["class_name"]!r}')
        return cls
    cls = _closest_registered_class(meta['module_src'], meta['class_name'])
    if cls is None:
        raise RuntimeError(f'persistence: no known persistent class {meta["class_name"]!r} for this pickle. '
                           f'Import the module that defines it before loading, load through legacy.py, or '
                           f'(trusted files only) allow running the pickled source with --allow-exec / '
                           f'persistence.allow_exec()')
    return cls


def _reconstruct_persistent_obj(meta):
    """Rebuild a persistent object from its pickled `meta` (the callable that pickles refer to)."""
    if not isinstance(meta, dict) or not isinstance(meta.get('state'), dict):
        raise ValueError('persistence: malformed persistent object record (expected a dict with a dict "state")')
    meta = dnnlib.EasyDict(meta)
    meta.state = dnnlib.EasyDict(meta.state)
    for hook in _import_hooks:
        meta = hook(meta)
        if meta is None:
            raise ValueError(f'persistence: import hook {hook!r} returned None instead of the meta dict')
    if meta.get('type') != 'class' or meta.get('version') != _FORMAT_VERSION:
        raise ValueError(f'persistence: unsupported persistent object record type={meta.get("type")!r} '
                         f'version={meta.get("version")!r} (this code reads type "class" version 6)')
    if not isinstance(meta.get('module_src'), str) or not isinstance(meta.get('class_name'), str):
        raise ValueError('persistence: persistent object record lacks module_src or class_name strings')

    resolver = _class_resolver.get()
    cls = resolver(meta) if resolver is not None else None
    if cls is None:
        cls = resolve_class(meta)
    if not isinstance(cls, type):
        raise TypeError(f'persistence: class resolver returned {cls!r} for {meta.class_name!r}, not a class')
    obj = cls.__new__(cls)
    _restore_state(obj, dict(meta.state))
    return obj

#----------------------------------------------------------------------------
