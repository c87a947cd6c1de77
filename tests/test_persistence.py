"""torch_utils.persistence: official pickle layout, round trips, deepcopy, class resolution, no exec by default."""

import copy
import inspect
import pickle
import pickletools
import sys

import numpy as np
import pytest
import torch

import dnnlib
from torch_utils import persistence

#----------------------------------------------------------------------------
# Small persistent networks defined at the top level of this module (as real network modules do).

@persistence.persistent_class
class TinyNet(torch.nn.Module):
    """Two linear layers with a buffer; enough to check parameters, buffers and constructor arguments."""

    def __init__(self, in_features, out_features, hidden=8, activation='relu', layer_kwargs=None):
        super().__init__()
        self.activation = activation
        self.fc0 = torch.nn.Linear(in_features, hidden, **(layer_kwargs or {}))
        self.fc1 = torch.nn.Linear(hidden, out_features)
        self.register_buffer('gain', torch.tensor([1.5]))

    def forward(self, x):
        x = self.fc0(x)
        x = torch.relu(x) if self.activation == 'relu' else torch.tanh(x)
        return self.fc1(x) * self.gain


@persistence.persistent_class
class Wrapper(torch.nn.Module):
    """A persistent module holding a persistent submodule and a numpy array."""

    def __init__(self, inner_kwargs, table):
        super().__init__()
        self.inner = TinyNet(**inner_kwargs)
        self.table = np.asarray(table)

    def forward(self, x):
        return self.inner(x) + float(self.table.sum())


@persistence.persistent_class
class OtherNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones([2]))


def _make_net(seed=0):
    torch.manual_seed(seed)
    return TinyNet(4, 3, hidden=6, activation='tanh', layer_kwargs=dnnlib.EasyDict(bias=True)).eval()


def _pickle_globals(data):
    """Dotted names of all globals a pickle refers to."""
    names, strings = set(), []
    for op, arg, _pos in pickletools.genops(data):
        if op.name == 'GLOBAL':
            names.add(arg.replace(' ', '.'))
        elif op.name == 'STACK_GLOBAL':
            names.add(f'{strings[-2]}.{strings[-1]}')
        elif isinstance(arg, str):
            strings.append(arg)
    return names

#----------------------------------------------------------------------------

def test_decorated_class_keeps_name_module_and_records_init_arguments():
    net = _make_net()
    assert TinyNet.__name__ == 'TinyNet' and TinyNet.__module__ == __name__
    assert persistence.is_persistent(TinyNet) and persistence.is_persistent(net)
    assert not persistence.is_persistent(torch.nn.Linear(1, 1))
    assert list(inspect.signature(TinyNet).parameters)[:2] == ['in_features', 'out_features']
    assert net.init_args == (4, 3)
    assert net.init_kwargs == {'hidden': 6, 'activation': 'tanh', 'layer_kwargs': {'bias': True}}
    assert type(net.init_kwargs) is dnnlib.EasyDict
    net.init_kwargs.hidden = 99  # A copy: the recorded arguments cannot be changed through it.
    assert net.init_kwargs.hidden == 6


def test_reduce_gives_official_meta_layout():
    net = _make_net()
    func, args = net.__reduce_ex__(4)
    assert func is persistence._reconstruct_persistent_obj and len(args) == 1
    meta = args[0]
    assert set(meta.keys()) == {'type', 'version', 'module_src', 'class_name', 'state'}
    assert meta['type'] == 'class' and meta['version'] == 6 and meta['class_name'] == 'TinyNet'
    assert meta['module_src'] == inspect.getsource(sys.modules[__name__])
    assert 'class TinyNet(torch.nn.Module):' in meta['module_src']
    assert meta['state']['_init_args'] == (4, 3)
    assert meta['state']['_init_kwargs']['hidden'] == 6
    assert set(meta['state']['_parameters']) == set()  # TinyNet's own; layers hold theirs.
    assert set(meta['state']['_modules']) == {'fc0', 'fc1'}


def test_pickle_refers_to_the_reconstructor_and_not_to_the_class():
    data = pickle.dumps(_make_net(), protocol=4)
    names = _pickle_globals(data)
    assert 'torch_utils.persistence._reconstruct_persistent_obj' in names
    assert not any(name.startswith(__name__ + '.') for name in names)
    assert 'dnnlib.util.EasyDict' in names  # The layer_kwargs argument.


@pytest.mark.parametrize('protocol', [2, 3, 4, 5])
def test_pickle_round_trip_is_bit_exact(protocol):
    net = _make_net(seed=1)
    x = torch.randn([5, 4], generator=torch.Generator().manual_seed(2))
    loaded = pickle.loads(pickle.dumps(net, protocol=protocol))
    assert type(loaded) is TinyNet and loaded is not net
    assert torch.equal(loaded(x), net(x))
    assert loaded.init_args == net.init_args and loaded.init_kwargs == net.init_kwargs
    for (name, a), (name_b, b) in zip(net.state_dict().items(), loaded.state_dict().items()):
        assert name == name_b and torch.equal(a, b) and a.data_ptr() != b.data_ptr()


def test_nested_persistent_objects_round_trip():
    torch.manual_seed(0)
    wrapper = Wrapper(dict(in_features=2, out_features=2), table=[[1.0, 2.0]])
    loaded = pickle.loads(pickle.dumps(wrapper))
    assert type(loaded) is Wrapper and type(loaded.inner) is TinyNet
    x = torch.randn([3, 2])
    assert torch.equal(loaded(x), wrapper(x))
    assert np.array_equal(loaded.table, [[1.0, 2.0]])


def test_deepcopy_gives_independent_equal_object():
    net = _make_net(seed=3)
    clone = copy.deepcopy(net)
    assert type(clone) is TinyNet and clone.init_kwargs == net.init_kwargs
    x = torch.randn([2, 4])
    assert torch.equal(clone(x), net(x))
    with torch.no_grad():
        clone.fc0.weight.add_(1)
    assert not torch.equal(clone.fc0.weight, net.fc0.weight)
    shared = [net, net]  # Memo: one object copied once.
    shared_clone = copy.deepcopy(shared)
    assert shared_clone[0] is shared_clone[1] and shared_clone[0] is not net


def test_constructor_arguments_must_be_plain_data():
    with pytest.raises(TypeError, match=r'kwargs\[\'activation\'\]'):
        TinyNet(2, 2, activation=lambda x: x)


def test_undecorated_subclass_refuses_to_pickle():
    class Sub(TinyNet):
        pass
    with pytest.raises(TypeError, match='must itself be decorated'):
        pickle.dumps(Sub(2, 2))

#----------------------------------------------------------------------------
# Loading: resolution of classes.

def _meta_of(obj):
    return copy.deepcopy(obj.__reduce__()[1][0])


def test_registry_knows_classes_by_short_module_name():
    short_name = __name__.rsplit('.', 1)[-1]
    assert persistence.get_registered_class(short_name, 'TinyNet') is TinyNet
    assert persistence.get_registered_class(__name__, 'Wrapper') is Wrapper
    assert persistence.get_registered_class(short_name, 'NoSuchClass') is None


def test_edited_source_maps_to_our_class_without_running_it():
    meta = _meta_of(_make_net())
    meta['module_src'] = 'raise RuntimeError("pickled code was executed")\n' + meta['module_src']
    obj = persistence._reconstruct_persistent_obj(meta)
    assert type(obj) is TinyNet and obj.init_args == (4, 3)


_EXEC_SRC = '''
import torch
from torch_utils import persistence
EXECUTED = True

@persistence.persistent_class
class OnlyInPickle(torch.nn.Module):
    def __init__(self, width):
        super().__init__()
        self.width = width
'''


def test_unknown_class_needs_allow_exec():
    meta = dict(type='class', version=6, module_src=_EXEC_SRC, class_name='OnlyInPickle',
                state=dict(width=7, training=True))
    with pytest.raises(RuntimeError, match='allow_exec'):
        persistence._reconstruct_persistent_obj(copy.deepcopy(meta))
    with persistence.allow_exec():
        obj = persistence._reconstruct_persistent_obj(copy.deepcopy(meta))
    assert type(obj).__name__ == 'OnlyInPickle' and obj.width == 7
    module = sys.modules[type(obj).__module__]
    assert module.__name__.startswith('_imported_module_') and module.EXECUTED is True
    assert persistence.get_registered_class(module.__name__, 'OnlyInPickle') is None  # Not a mapping target.


def test_class_resolver_overrides_default_choice():
    meta = _meta_of(_make_net())
    seen = []

    def resolver(meta):
        seen.append(meta.class_name)
        return OtherNet if meta.class_name == 'TinyNet' else None
    with persistence.class_resolver(resolver):
        obj = persistence._reconstruct_persistent_obj(meta)
    assert type(obj) is OtherNet and seen == ['TinyNet']
    assert type(persistence._reconstruct_persistent_obj(_meta_of(_make_net()))) is TinyNet  # Scope ended.


def test_import_hook_can_rewrite_state():
    def hook(meta):
        if meta.class_name == 'TinyNet':
            meta.state.activation = 'relu'
        return meta
    persistence.import_hook(hook)
    try:
        loaded = pickle.loads(pickle.dumps(_make_net()))
    finally:
        persistence._import_hooks.remove(hook)
    assert loaded.activation == 'relu'


@pytest.mark.parametrize('bad_meta, message', [
    (dict(type='class', version=5, module_src='', class_name='TinyNet', state={}), 'version'),
    (dict(type='function', version=6, module_src='', class_name='TinyNet', state={}), 'type'),
    (dict(type='class', version=6, module_src='', class_name='TinyNet'), 'malformed'),
    ('not a dict', 'malformed'),
])
def test_malformed_meta_is_a_clear_error(bad_meta, message):
    with pytest.raises(ValueError, match=message):
        persistence._reconstruct_persistent_obj(bad_meta)
