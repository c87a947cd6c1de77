"""Hostile network and detector pickles, one family per hole of issue 14, built here opcode by opcode or from tiny
real networks. Each payload that could run code would create `marker` if obeyed.

`network_payloads(marker)` -> {case name: bytes of a network pickle}; `detector_payloads(marker)` -> {case name:
bytes of a file saved as inception-2015-12-05.pkl}; `steering_payloads(tmp_path)` -> {case name: bytes of a
valid snapshot whose training_set_kwargs try to steer calc_metrics}; `tiny_snapshot_bytes()` -> a valid one.
"""

import copyreg
import io
import pickle
import pickletools
import struct

import numpy as np
import torch

from torch_utils import persistence
from training import networks_stylegan2 as nets2

TINY_G = dict(z_dim=4, c_dim=0, w_dim=4, img_resolution=16, img_channels=3, channel_base=64, channel_max=4,
              mapping_kwargs=dict(num_layers=1))

#----------------------------------------------------------------------------
# Opcode helpers.

def _unicode(text):
    data = text.encode()
    return pickle.SHORT_BINUNICODE + bytes([len(data)]) + data if len(data) < 256 else \
        pickle.BINUNICODE + struct.pack('<I', len(data)) + data


def _stack_global(module, name):
    return _unicode(module) + _unicode(name) + pickle.STACK_GLOBAL


def _call(module, name, *args):
    """Protocol-4 opcodes: the global module.name called with plain args (a REDUCE)."""
    return _stack_global(module, name) + _body(tuple(args)) + pickle.REDUCE


def _body(obj):
    """Opcodes of `obj` without PROTO, FRAME and STOP (memo indices start at 0: use only once per pickle)."""
    blob = pickle.dumps(obj, protocol=3)  # Protocol 3: bytes as BINBYTES and no frames.
    ops = list(pickletools.genops(blob))
    return blob[ops[1][2]:ops[-1][2]]


def _memo_index_of_reduce_result(blob, nth_from_end=1):
    """Memo index the pickler gave the result of the `nth_from_end`-last top-level REDUCE in `blob`."""
    memo_count, reduce_memos = 0, []
    previous = None
    for op, _arg, _pos in pickletools.genops(blob):
        if op.name == 'MEMOIZE':
            if previous == 'REDUCE':
                reduce_memos.append(memo_count)
            memo_count += 1
        previous = op.name
    return reduce_memos[-nth_from_end]


def _get(index):
    return pickle.LONG_BINGET + struct.pack('<I', index)

#----------------------------------------------------------------------------
# Tiny valid networks.

def tiny_generator(seed=0):
    torch.manual_seed(seed)
    return nets2.Generator(**TINY_G).eval().requires_grad_(False)


def _snapshot(G, **extra):
    return dict(G=G, D=None, G_ema=G, augment_pipe=None, training_set_kwargs=None, **extra)


def tiny_snapshot_bytes(**extra):
    return pickle.dumps(_snapshot(tiny_generator(), **extra), protocol=4)


class _StateEditingPickler(pickle.Pickler):
    """Pickles persistent objects with `edit(class_name, state)` applied to their state."""

    def __init__(self, file, edit):
        super().__init__(file, protocol=4)
        self.edit = edit

    def reducer_override(self, obj):
        if not persistence.is_persistent(obj):
            return NotImplemented
        func, (meta,) = obj.__reduce__()
        meta = dict(meta, state=self.edit(type(obj).__name__, dict(meta['state'])))
        return func, (meta,)


def _edited_snapshot(edit):
    buffer = io.BytesIO()
    _StateEditingPickler(buffer, edit).dump(_snapshot(tiny_generator()))
    return buffer.getvalue()


def _append_to_snapshot(key, value_opcodes):
    """A valid snapshot with one more item `key` whose value the given opcodes push."""
    return tiny_snapshot_bytes()[:-1] + _unicode(key) + value_opcodes + pickle.SETITEM + pickle.STOP

#----------------------------------------------------------------------------
# 1. Code execution through globals (dotted names, other modules).

def exec_payloads(marker):
    command = f'touch {marker}'
    return {
        'exec-dotted-torch-os.system': b'\x80\x04' + _call('torch', 'os.system', command) + pickle.STOP,
        'exec-builtins-eval': b'\x80\x04' + _call('builtins', 'eval', f'__import__("os").system("{command}")')
                              + pickle.STOP,
        'exec-dotted-easydict-globals': b'\x80\x04' + _stack_global('dnnlib.util', 'EasyDict.__init__.__globals__')
                                        + pickle.STOP,
    }

#----------------------------------------------------------------------------
# 3. Structured numpy dtypes.

def dtype_payloads():
    structured = np.zeros(2, dtype=[('a', '<i4'), ('b', '<f4')])
    # dtype('V8') given fields by BUILD: an object field, and a field far outside the item (offset 1 << 40).
    def void_with_fields(field_dtype_ops, offset, spec='V8'):
        return (_call('numpy', 'dtype', spec, False, True) + pickle.MARK + pickle.BININT1 + b'\x03'
                + _unicode('|') + pickle.NONE + _unicode('a') + pickle.TUPLE1 + pickle.EMPTY_DICT + _unicode('a')
                + field_dtype_ops + pickle.LONG1 + bytes([6]) + offset.to_bytes(6, 'little') + pickle.TUPLE2
                + pickle.SETITEM + pickle.BININT1 + b'\x08' + pickle.BININT1 + b'\x01' + pickle.BININT1 + b'\x00'
                + pickle.TUPLE + pickle.BUILD)
    f8 = _call('numpy', 'dtype', 'f8', False, True)
    return {
        'dtype-structured-array': _append_to_snapshot('extra', _body(structured)),
        'dtype-void-field-out-of-range': _append_to_snapshot('extra', void_with_fields(f8, 1 << 40)),
        'dtype-plain-spec-given-fields': _append_to_snapshot('extra', void_with_fields(f8, 0, spec='f8')),
        'dtype-object-spec': _append_to_snapshot('extra', _call('numpy', 'dtype', 'O8', False, True)),
    }

#----------------------------------------------------------------------------
# 4. State keys that replace what the class defines.

def state_payloads():
    def set_key(key, value):
        def edit(class_name, state):
            if class_name == 'Generator':
                state[key] = value
            return state
        return edit
    return {
        'state-compiled-call-impl': _edited_snapshot(set_key('_compiled_call_impl', torch.storage._load_from_bytes)),
        'state-forward': _edited_snapshot(set_key('forward', persistence._reconstruct_persistent_obj)),
        'state-call-impl-plain': _edited_snapshot(set_key('_call_impl', 'x')),
    }

#----------------------------------------------------------------------------
# 5. Resource exhaustion.

def _dag_modules_snapshot(depth=60):
    child = nets2.FullyConnectedLayer(1, 1)
    for _ in range(depth):
        parent = nets2.FullyConnectedLayer(1, 1)
        parent._modules['a'] = child
        parent._modules['b'] = child
        child = parent
    return pickle.dumps(_snapshot(child), protocol=4)


def _module_cycle_snapshot():
    """G_ema whose _modules table gets G_ema itself after it was built (SETITEM on the memoised dict)."""
    G = nets2.FullyConnectedLayer(1, 1)
    blob = pickle.dumps([G, G._modules], protocol=4)
    g_memo = _memo_index_of_reduce_result(blob)
    ops = list(pickletools.genops(blob))
    modules_memo = [arg for op, arg, _pos in ops if op.name in ('BINGET', 'LONG_BINGET')][-1]
    tail = (_get(modules_memo) + _unicode('loop') + _get(g_memo) + pickle.SETITEM + pickle.POP + pickle.POP
            + pickle.EMPTY_DICT + _unicode('G_ema') + _get(g_memo) + pickle.SETITEM + pickle.STOP)
    return blob[:-1] + tail


def _deep_list_opcodes(depth):
    return pickle.EMPTY_LIST * depth + pickle.APPEND * (depth - 1)


def _dag_list(depth):
    value = []
    for _ in range(depth):
        value = [value, value]
    return value


def resource_payloads():
    def set_init(**kwargs):
        def edit(class_name, state):
            if class_name == 'Generator':
                state['_init_kwargs'] = dict(state['_init_kwargs'], **kwargs)
                for key, value in kwargs.items():
                    state[key] = value
            return state
        return edit
    return {
        'resource-dag-submodules': _dag_modules_snapshot(),
        'resource-module-cycle': _module_cycle_snapshot(),
        'resource-deep-nesting': _append_to_snapshot('extra', _deep_list_opcodes(3000)),
        'resource-list-cycle': _append_to_snapshot('extra', pickle.EMPTY_LIST + pickle.LONG_BINPUT
                                                   + struct.pack('<I', 999999) + _get(999999) + pickle.APPEND),
        'resource-z-dim-1e12': _edited_snapshot(set_init(z_dim=10 ** 12)),
        'resource-negative-size': _edited_snapshot(set_init(img_resolution=-16)),
        'resource-dag-list-init-kwargs': _edited_snapshot(set_init(mapping_kwargs=dict(num_layers=1,
                                                                                    extra=_dag_list(60)))),
        'resource-tf-huge-network': tf_huge_network(),
    }


def tf_huge_network():
    """A TF-era Gs record whose arguments would build a ~10^10-element network from a few tiny variables."""
    variables = [('G_synthesis/1024x1024/ToRGB/mod_weight', np.zeros([1, 1], np.float32)),
                 ('G_synthesis/4x4/ToRGB/weight', np.zeros([1, 1, 1, 3], np.float32))]
    state = dict(version=4, name='Gs', static_kwargs=dict(fmap_base=65536, fmap_max=131072),
                 components={}, build_module_src='', build_func_name='G_main', variables=variables)
    return (b'\x80\x02' + pickle.GLOBAL + b'dnnlib.tflib.network\nNetwork\n' + pickle.EMPTY_TUPLE + pickle.NEWOBJ
            + _body(state) + pickle.BUILD + pickle.STOP)

#----------------------------------------------------------------------------
# Everything a network entry point may be given; detector files; calc_metrics steering.

def network_payloads(marker):
    payloads = dict(exec_payloads(marker))
    payloads.update(dtype_payloads())
    payloads.update(state_payloads())
    payloads.update(resource_payloads())
    return payloads


def detector_payloads(marker):
    payloads = {name: blob for name, blob in exec_payloads(marker).items()}
    buffer = io.BytesIO()
    _ShadowingPickler(buffer).dump(torch.nn.Linear(2, 2))
    payloads['detector-forward-shadowed'] = buffer.getvalue()
    payloads['detector-structured-dtype'] = b'\x80\x04' + _body(np.zeros(2, dtype=[('a', '<i4')])) + pickle.STOP
    payloads['detector-corrupt'] = b'\x80\x04\x95garbage that is not a pickle'
    payloads['detector-module-without-state'] = (b'\x80\x04' + _stack_global('torch.nn.modules.linear', 'Linear')
                                                 + pickle.EMPTY_TUPLE + pickle.NEWOBJ + pickle.STOP)
    return payloads


class _ShadowingPickler(pickle.Pickler):
    """Pickles a torch.nn.Linear whose state replaces `forward` (a detector file that picks what runs)."""

    def __init__(self, file):
        super().__init__(file, protocol=4)

    def reducer_override(self, obj):
        if type(obj) is not torch.nn.Linear:
            return NotImplemented
        return copyreg.__newobj__, (torch.nn.Linear,), dict(vars(obj), forward=torch.storage._load_from_bytes)


def steering_payloads(outside_dir):
    """Valid snapshots whose training_set_kwargs name another module to import (`this` prints the Zen of Python
    when imported), a name that climbs out of the cache, a path outside the data, or the root folder."""
    base = dict(class_name='training.dataset.ImageFolderDataset', path='/', resolution=16, use_labels=False,
                max_size=None, xflip=False, random_seed=0)
    return {
        'steer-class-name-import': tiny_snapshot_bytes_with(dict(base, class_name='this.s')),
        'steer-name-traversal': tiny_snapshot_bytes_with(dict(base, name=f'../../../{outside_dir}/stats',
                                                              path=f'{outside_dir}/missing.zip')),
        'steer-path-root': tiny_snapshot_bytes_with(base),
    }


def tiny_snapshot_bytes_with(training_set_kwargs):
    return pickle.dumps(dict(_snapshot(tiny_generator()), training_set_kwargs=training_set_kwargs), protocol=4)

#----------------------------------------------------------------------------
