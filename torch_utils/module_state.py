"""Which attributes a pickled torch module's state may set on the object the safe loader builds.

A module's pickled state becomes its `__dict__`. An entry named like something the class defines (`forward`,
`_compiled_call_impl`, `__call__`, a property) would replace it, so that `G(z)` calls what the file chose. The rule
here: a state restores only

  * torch.nn.Module's own bookkeeping (`training`, the parameter/buffer/submodule tables, empty hook tables);
  * the persistent-class record of constructor arguments (`_init_args`, `_init_kwargs`: plain data, bounded sizes);
  * attributes that the class's own code assigns (`self.name = ...` anywhere in the class or its bases, read from
    the source text with `ast`, never executed), holding plain data.

A key naming anything else that the class (or torch.nn.Module) defines, and any key whose value is not plain data,
is refused by name. Other keys (plain data the class never reads, e.g. fields of an official class that ours does
not keep) are dropped, not restored.
"""

import ast
import functools
import inspect
import textwrap

import torch

from torch_utils import pickle_checks
from torch_utils.pickle_checks import UnsafePickleError

_TYPED_TABLES = {'_parameters': torch.nn.Parameter, '_buffers': torch.Tensor, '_modules': torch.nn.Module}
_PERSISTENT_KEYS = frozenset(['_init_args', '_init_kwargs'])

#----------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def module_base_keys():
    """The `__dict__` keys every torch.nn.Module instance has (for this torch version)."""
    return frozenset(vars(torch.nn.Module()))


def _assigned_self_attributes(tree):
    """Names `X` of every `self.X = ...`, `self.X += ...`, `self.X: T = ...` and `setattr(self, 'X', ...)`."""
    names = set()

    def add_target(target):
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                add_target(element)
        elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == 'self':
            names.add(target.attr)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                add_target(target)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            add_target(node.target)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == 'setattr' \
                and len(node.args) >= 2 and isinstance(node.args[0], ast.Name) and node.args[0].id == 'self' \
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
            names.add(node.args[1].value)
    return names


@functools.lru_cache(maxsize=None)
def class_assigned_attributes(cls):
    """Attribute names the code of `cls` and its bases (below torch.nn.Module) assigns on `self`."""
    names = set()
    for klass in cls.__mro__:
        if klass in (torch.nn.Module, object):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue  # No source available (a C type): it contributes no attributes.
        names |= _assigned_self_attributes(ast.parse(source))
    return frozenset(names)


def _defined_on_class(cls, key):
    return any(key in vars(klass) for klass in cls.__mro__)

#----------------------------------------------------------------------------

def check_module_state(cls, class_name, state):
    """The part of a pickled module `state` (dict) that may be restored on an instance of `cls`.

    Raises UnsafePickleError naming the key for anything refused (see module doc); CorruptPickleError for sizes.
    """
    allowed = module_base_keys() | _PERSISTENT_KEYS | class_assigned_attributes(cls)
    kept = {}
    for key, value in state.items():
        if type(key) is not str or key.startswith('__'):
            raise UnsafePickleError(f'the state of a pickled {class_name} has the key {str(key)[:80]!r}; refused')
        what = f'{class_name}.{key}'
        if key in _TYPED_TABLES:
            _check_table(what, value, _TYPED_TABLES[key])
        elif 'hook' in key and key != '_is_full_backward_hook':
            if value is not None and (not isinstance(value, dict) or len(value) != 0):
                raise UnsafePickleError(f'a pickled {class_name} carries hooks ({key}); network pickles hold none')
        elif key not in allowed:
            if _defined_on_class(cls, key) or _defined_on_class(torch.nn.Module, key):
                raise UnsafePickleError(f'the state of a pickled {class_name} sets {key!r}, which would replace '
                                        f'what the class defines; refused')
            pickle_checks.check_plain_value(value, f'the pickled {class_name}', key)
            continue  # Plain data the class never assigns: not restored.
        else:
            pickle_checks.check_plain_value(value, f'the pickled {class_name}', key)
        kept[key] = value
    if type(kept.get('training', False)) is not bool:
        raise UnsafePickleError(f'{class_name}.training in the pickle is not a bool')
    pickle_checks.check_dimensions(kept, f'the pickled {class_name}')
    return kept


def _check_table(what, table, kind):
    if table is None:
        return
    if not isinstance(table, dict):
        raise UnsafePickleError(f'{what} in the pickle is not a dict')
    for name, value in table.items():
        if not isinstance(name, str) or not (value is None or isinstance(value, kind)):
            raise UnsafePickleError(f'{what}[{str(name)[:80]!r}] in the pickle is a {type(value).__name__}, '
                                    f'not a {kind.__name__}')
        if kind is not torch.nn.Module and type(value) not in (torch.Tensor, torch.nn.Parameter, type(None)):
            raise UnsafePickleError(f'{what}[{name!r}] in the pickle is a {type(value).__name__}; refused')

#----------------------------------------------------------------------------
