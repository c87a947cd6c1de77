"""legacy.py / torch_utils.safe_pickle / training.tf_legacy: safe loading of every supported pickle layout.

Official-layout pickles are built by hand: each persistent object becomes the call
`torch_utils.persistence._reconstruct_persistent_obj(meta)` with a stand-in `module_src` that has the
distinguishing form of a family (written here, not official code) and the object's state under official names.
Hostile pickles are written opcode by opcode; each would do something observable (write a file) if obeyed.
"""

import collections
import copyreg
import importlib
import io
import os
import pickle
import random
import re
import sys
import types

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import dnnlib
import legacy
from torch_utils import misc
from torch_utils import persistence
from torch_utils import safe_pickle
from torch_utils.network_families import MissingFamiliesError, NetworkFamilies
from torch_utils.safe_pickle import CorruptPickleError, UnsafePickleError
from training import networks_stylegan2 as nets2
from training.network_families import FAMILIES

TINY_G = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=128, channel_max=8,
              mapping_kwargs=dict(num_layers=2))
TINY_D = dict(c_dim=0, img_resolution=16, img_channels=3, channel_base=128, channel_max=8)

# Stand-in module sources with each family's distinguishing form (class names and call arguments only).
FAKE_SRC = {
    'stylegan3': '\n'.join([
        'import torch',
        'class MappingNetwork(torch.nn.Module):',
        '    def forward(self, z, c, update_emas=False): pass',
        'class SynthesisInput(torch.nn.Module): pass',
        'class SynthesisLayer(torch.nn.Module): pass',
        'class Generator(torch.nn.Module): pass', '']),
    'stylegan2': '\n'.join([
        'import torch',
        'class MappingNetwork(torch.nn.Module):',
        '    def forward(self, z, c, update_emas=False): pass',
        'class SynthesisBlock(torch.nn.Module): pass',
        'class DiscriminatorBlock(torch.nn.Module): pass',
        'class Generator(torch.nn.Module): pass', '']),
    'stylegan2-ada': '\n'.join([
        'import torch',
        'class MappingNetwork(torch.nn.Module):',
        '    def forward(self, z, c, skip_w_avg_update=False): pass',
        'class SynthesisBlock(torch.nn.Module): pass',
        'class DiscriminatorBlock(torch.nn.Module): pass',
        'class Generator(torch.nn.Module):',
        '    def __init__(self, z_dim, mapping_kwargs={}, synthesis_kwargs={}): pass', '']),
}

#----------------------------------------------------------------------------
# Helpers.

def _randomized(module, seed=0, buffers=True):
    """`module` in eval mode with every parameter and buffer (except resampling filters) random, so each matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in (misc.named_params_and_buffers(module) if buffers else module.named_parameters()):
            if not name.endswith('resample_filter') and tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.5)
    return module.eval().requires_grad_(False)


def _tiny_pair(seed=0):
    torch.manual_seed(seed)
    return _randomized(nets2.Generator(**TINY_G), seed), _randomized(nets2.Discriminator(**TINY_D), seed + 1)


def _render(G, seed=1, batch_size=2):
    z = torch.randn([batch_size, G.z_dim], generator=torch.Generator().manual_seed(seed))
    return G(z, None, truncation_psi=0.7, noise_mode='const')


def _judge(D, seed=2):
    img = torch.randn([2, D.img_channels, D.img_resolution, D.img_resolution],
                      generator=torch.Generator().manual_seed(seed))
    return D(img, None)


def _ada_state(class_name, state):
    """An SG3-era state as the SG2-ADA code stored it."""
    state = dict(state)
    state.pop('fused_modconv_default', None)
    if class_name == 'MappingNetwork' and state.get('w_avg_beta') is not None:
        state['w_avg_beta'] = 0.995
    if class_name == 'Generator':
        init_kwargs = dict(state['_init_kwargs'])
        synthesis_keys = [key for key in init_kwargs if key not in ('z_dim', 'c_dim', 'w_dim', 'img_resolution',
                                                                     'img_channels', 'mapping_kwargs')]
        init_kwargs['synthesis_kwargs'] = {key: init_kwargs.pop(key) for key in synthesis_keys}
        state['_init_kwargs'] = init_kwargs
    return state


class OfficialLayoutPickler(pickle.Pickler):
    """Pickles our persistent objects as official ones: stand-in module_src of a family, (edited) state."""

    def __init__(self, file, sg2_family='stylegan2', state_edit=None):
        super().__init__(file, protocol=4)
        self.sg2_family = sg2_family
        self.state_edit = state_edit or (lambda class_name, state: state)

    def reducer_override(self, obj):
        if not persistence.is_persistent(obj):
            return NotImplemented
        family = 'stylegan3' if type(obj).__module__.endswith('networks_stylegan3') else self.sg2_family
        state = self.state_edit(type(obj).__name__, dict(obj.__getstate__()))
        meta = dict(type='class', version=6, module_src=FAKE_SRC[family], class_name=type(obj).__name__, state=state)
        return persistence._reconstruct_persistent_obj, (meta,)


def _official_bytes(data, **kwargs):
    buffer = io.BytesIO()
    OfficialLayoutPickler(buffer, **kwargs).dump(data)
    return buffer.getvalue()


class _MetaOnly:
    """Pickles as the persistent-object call of a given meta (used to splice records into a pickle)."""

    def __init__(self, meta):
        self.meta = meta

    def __reduce__(self):
        return persistence._reconstruct_persistent_obj, (self.meta,)


def _snapshot(G, D, **extra):
    return dict(G=G, D=D, G_ema=G, augment_pipe=None, training_set_kwargs=dict(path='data.zip', xflip=False),
                **extra)


def _global_call(module, name, *args):
    """Protocol-3 bytes: GLOBAL module.name, the tuple args, REDUCE."""
    return (b'\x80\x03c' + f'{module}\n{name}\n'.encode() + pickle.dumps(tuple(args), protocol=3)[2:-1]
            + pickle.REDUCE + pickle.STOP)


def _stack_global(module, name):
    """Protocol-4 opcodes pushing the global module.name through STACK_GLOBAL (dotted names allowed)."""
    def unicode(text):
        return pickle.SHORT_BINUNICODE + bytes([len(text)]) + text.encode()
    return unicode(module) + unicode(name) + pickle.STACK_GLOBAL

#----------------------------------------------------------------------------
# Official layouts load into our classes.

def test_allowed_globals_are_exactly_the_design_list():
    numpy_names = {(module, name) for module in ['numpy', 'numpy.core.multiarray', 'numpy._core.multiarray']
                   for name in ['ndarray', 'dtype']}
    numpy_names |= {(module, name) for module in ['numpy.core.multiarray', 'numpy._core.multiarray']
                    for name in ['_reconstruct', 'scalar']}
    expected = numpy_names | {
        ('torch_utils.persistence', '_reconstruct_persistent_obj'), ('dnnlib.util', 'EasyDict'),
        ('collections', 'OrderedDict'), ('builtins', 'set'), ('torch._utils', '_rebuild_tensor_v2'),
        ('torch._utils', '_rebuild_parameter'), ('torch.storage', '_load_from_bytes'),
        ('dnnlib.tflib.network', 'Network')}
    assert set(safe_pickle.ALLOWED_GLOBALS) == expected
    assert safe_pickle.ALLOWED_GLOBALS[('torch.storage', '_load_from_bytes')] is not torch.storage._load_from_bytes


@pytest.mark.parametrize('family,expected', [('stylegan3', 'stylegan3'), ('stylegan2', 'stylegan2'),
                                             ('stylegan2-ada', 'stylegan2-ada')])
def test_detect_family_reads_the_distinguishing_source_text(family, expected):
    assert safe_pickle.detect_family(FAKE_SRC[family]) == expected
    assert safe_pickle.detect_family('class AugmentPipe(torch.nn.Module): pass\n') == 'augment'
    assert safe_pickle.detect_family('class Something: pass\n') is None
    ours = sys.modules[nets2.Generator.__module__]
    assert safe_pickle.detect_family(persistence._get_module_src(ours.__name__)) == 'stylegan2'


def test_sg3_era_stylegan2_pickle_loads_into_our_classes_with_equal_outputs():
    G, D = _tiny_pair()
    data = legacy.load_network_pkl(io.BytesIO(_official_bytes(_snapshot(G, D))))
    assert type(data['G']) is nets2.Generator and type(data['D']) is nets2.Discriminator
    assert data['G'] is data['G_ema']  # Shared references survive, as with pickle.
    assert torch.equal(_render(data['G']), _render(G))
    assert torch.equal(_judge(data['D']), _judge(D))
    assert data['training_set_kwargs'] == dict(path='data.zip', xflip=False)
    assert data['augment_pipe'] is None


def test_ada_era_stylegan2_pickle_keeps_its_behaviour_and_gets_flat_init_kwargs():
    G, D = _tiny_pair(seed=3)
    blob = _official_bytes(_snapshot(G, D), sg2_family='stylegan2-ada', state_edit=_ada_state)
    data = legacy.load_network_pkl(io.BytesIO(blob))
    G_ada = data['G_ema']
    assert type(G_ada) is nets2.Generator
    assert not hasattr(G_ada.synthesis.b8, 'fused_modconv_default')  # ADA state restored as it was.
    assert G_ada.mapping.w_avg_beta == 0.995
    assert torch.equal(_render(G_ada), _render(G))
    assert torch.equal(_judge(data['D']), _judge(D))

    # init_kwargs now fit our constructor (synthesis_kwargs flattened, ADA's w_avg_beta made explicit).
    init_kwargs = G_ada.init_kwargs
    assert 'synthesis_kwargs' not in init_kwargs and init_kwargs['channel_base'] == 128
    assert init_kwargs['mapping_kwargs']['w_avg_beta'] == 0.995
    rebuilt = safe_pickle.rebuild_network(G_ada)
    assert rebuilt.mapping.w_avg_beta == 0.995
    assert torch.equal(_render(rebuilt), _render(G))

    # The ADA-era w_avg tracking (beta 0.995) through our update_emas argument.
    z = torch.randn([4, 8], generator=torch.Generator().manual_seed(5))
    w_avg_before = G_ada.mapping.w_avg.clone()
    ws = G_ada.mapping(z, None, update_emas=True)
    assert torch.allclose(G_ada.mapping.w_avg, ws[:, 0].mean(dim=0).lerp(w_avg_before, 0.995), atol=1e-6)


def test_stylegan3_pickle_loads_into_our_classes_with_equal_outputs():
    nets3 = pytest.importorskip('training.networks_stylegan3')
    torch.manual_seed(0)
    G = _randomized(nets3.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=128,
                                    channel_max=8, num_layers=4, mapping_kwargs=dict(num_layers=2)), buffers=False)
    D = _randomized(nets2.Discriminator(**TINY_D), 1)
    data = legacy.load_network_pkl(io.BytesIO(_official_bytes(_snapshot(G, D))))
    assert type(data['G_ema']) is nets3.Generator and type(data['D']) is nets2.Discriminator
    assert torch.equal(_render(data['G_ema']), _render(G))
    assert torch.equal(_judge(data['D']), _judge(D))


def test_our_snapshot_round_trips_bit_identically(tmp_path):
    G, D = _tiny_pair(seed=7)
    first = tmp_path / 'first.pkl'
    safe_pickle.save_network_pkl(_snapshot(G, D), first)
    loaded = legacy.load_network_pkl(str(first))
    second = tmp_path / 'second.pkl'
    safe_pickle.save_network_pkl(loaded, second)
    reloaded = legacy.load_network_pkl(second)
    # (Bytes differ between saves: torch names each storage by its memory address.) Every tensor is identical:
    for key in ['G', 'D', 'G_ema']:
        tensors = dict(misc.named_params_and_buffers(reloaded[key]))
        originals = misc.named_params_and_buffers(dict(G=G, D=D, G_ema=G)[key])
        assert all(torch.equal(tensors[name], tensor) for name, tensor in originals)
    assert torch.equal(_render(reloaded['G_ema']), _render(G))
    assert torch.equal(_judge(reloaded['D']), _judge(D))
    assert [p.name for p in tmp_path.iterdir() if 'tmp' in p.name] == []  # Atomic writes leave no temporaries.


def test_our_snapshot_still_loads_after_our_module_source_changed():
    G, D = _tiny_pair(seed=9)
    changed_src = persistence._get_module_src(nets2.Generator.__module__) + '\n# (a later version of this file)\n'

    class ChangedSource(OfficialLayoutPickler):
        def reducer_override(self, obj):
            reduced = super().reducer_override(obj)
            if reduced is not NotImplemented:
                reduced[1][0]['module_src'] = changed_src
            return reduced
    buffer = io.BytesIO()
    ChangedSource(buffer).dump(_snapshot(G, D))
    data = legacy.load_network_pkl(io.BytesIO(buffer.getvalue()))
    assert type(data['G_ema']) is nets2.Generator
    assert torch.equal(_render(data['G_ema']), _render(G))


def test_resume_state_of_plain_data_loads_unchanged():
    G, D = _tiny_pair()
    opt = torch.optim.Adam(G.mapping.parameters(), lr=0.002, betas=(0.0, 0.99))
    G.mapping.requires_grad_(True)
    G.mapping(torch.randn([2, G.z_dim]), None).square().mean().backward()
    opt.step()
    G.mapping.requires_grad_(False)
    resume_state = dict(optimizer=opt.state_dict(), python_rng=random.getstate(), numpy_rng=np.random.get_state(),
                        torch_rng=torch.get_rng_state(), counters=dict(cur_nimg=np.int64(4000), tick=3),
                        seen={1, 2}, ordered=collections.OrderedDict(a=1.5))
    data = legacy.load_network_pkl(io.BytesIO(pickle.dumps(_snapshot(G, D, resume_state=resume_state))))
    loaded = data['resume_state']
    assert loaded['python_rng'] == resume_state['python_rng']
    assert np.array_equal(loaded['numpy_rng'][1], resume_state['numpy_rng'][1])
    assert torch.equal(loaded['torch_rng'], resume_state['torch_rng'])
    assert loaded['counters'] == dict(cur_nimg=4000, tick=3) and loaded['seen'] == {1, 2}
    exp_avg = resume_state['optimizer']['state'][0]['exp_avg']
    assert torch.equal(loaded['optimizer']['state'][0]['exp_avg'], exp_avg)
    assert loaded['optimizer']['param_groups'][0]["betas"] == (0.0, 0.99)


def test_force_fp16_rebuilds_with_the_official_settings():
    G, D = _tiny_pair()
    G_plain = nets2.Generator(**TINY_G, num_fp16_res=0, conv_clamp=None)
    misc.copy_params_and_buffers(G, G_plain, require_all=True)
    data = legacy.load_network_pkl(io.BytesIO(pickle.dumps(_snapshot(G_plain.eval(), D))), force_fp16=True)
    assert data['G'].init_kwargs['num_fp16_res'] == 4 and data['G'].init_kwargs['conv_clamp'] == 256
    assert data['G'].synthesis.b16.use_fp16 and data['D'].b16.use_fp16
    assert torch.allclose(_render(data['G']), _render(G_plain), atol=1e-5)  # fp32 on CPU: same images.


def test_official_augment_pipe_maps_onto_ours():
    augment = pytest.importorskip('training.augment')
    pipe = augment.AugmentPipe(xflip=1, rotate90=1, xint=1, brightness=1).eval().requires_grad_(False)
    pipe.p.copy_(torch.as_tensor(0.3))
    meta = dict(type='class', version=6, module_src='import torch\nclass AugmentPipe(torch.nn.Module): pass\n',
                class_name='AugmentPipe', state=dict(pipe.__getstate__()))
    G, D = _tiny_pair()
    data = legacy.load_network_pkl(io.BytesIO(pickle.dumps(dict(G_ema=G, augment_pipe=_MetaOnly(meta)))))
    loaded = data['augment_pipe']
    assert type(loaded) is augment.AugmentPipe and float(loaded.p) == pytest.approx(0.3)
    assert loaded.init_kwargs == pipe.init_kwargs
    for (name, tensor), (_, original) in zip(misc.named_params_and_buffers(loaded),
                                             misc.named_params_and_buffers(pipe)):
        assert torch.equal(tensor, original), name


def test_augment_pipe_is_dropped_with_a_warning_when_our_module_is_missing():
    families = NetworkFamilies(dict(FAMILIES.modules, augment='training.no_such_augment_module'),
                               importlib.import_module)
    meta = dict(type='class', version=6, module_src='import torch\nclass AugmentPipe(torch.nn.Module): pass\n',
                class_name='AugmentPipe', state=dict(_init_args=(), _init_kwargs={}))
    G, _ = _tiny_pair()
    with pytest.warns(UserWarning, match='training/augment.py'):
        data = safe_pickle.load_network_pkl(io.BytesIO(pickle.dumps(dict(G_ema=G, augment_pipe=_MetaOnly(meta)))),
                                            families=families)
    assert data['augment_pipe'] is None and type(data['G_ema']) is nets2.Generator


def test_a_file_that_needs_the_family_table_says_so_when_the_caller_passes_none():
    # An official SG2 pickle: its source differs from ours, so its classes are found only through the table.
    G, D = _tiny_pair()
    blob = _official_bytes(_snapshot(G, D))
    with pytest.raises(MissingFamiliesError, match=r'stylegan2 network .*pass families=training.network_families'):
        safe_pickle.load_network_pkl(io.BytesIO(blob))
    assert type(safe_pickle.load_network_pkl(io.BytesIO(blob), families=FAMILIES)['G_ema']) is nets2.Generator


def test_a_family_missing_from_the_table_is_refused_and_the_table_is_read_only():
    G, D = _tiny_pair()
    families = NetworkFamilies({k: v for k, v in FAMILIES.modules.items() if k != 'stylegan2'}, importlib.import_module)
    with pytest.raises(UnsafePickleError, match='a stylegan2 network .* a family the given table does not list'):
        safe_pickle.load_network_pkl(io.BytesIO(_official_bytes(_snapshot(G, D))), families=families)
    with pytest.raises(AttributeError, match='read-only'):
        FAMILIES._modules = {}
    with pytest.raises(TypeError):
        FAMILIES.modules['stylegan2'] = 'os'


#----------------------------------------------------------------------------
# Hostile pickles are refused without side effects.

@pytest.mark.parametrize('module,name,make_args', [
    ('os', 'system', lambda path: (f'touch {path}',)),
    ('builtins', 'eval', lambda path: (f'open({str(path)!r}, "w").write("pwned")',)),
    ('subprocess', 'Popen', lambda path: (['touch', str(path)],)),
    ('posix', 'system', lambda path: (f'touch {path}',)),
])
def test_hostile_global_is_refused_naming_it_and_nothing_runs(tmp_path, module, name, make_args):
    target = tmp_path / 'pwned'
    blob = _global_call(module, name, *make_args(target))
    with pytest.raises(UnsafePickleError, match=rf'{module}\.{name}.*--allow-exec'):
        legacy.load_network_pkl(io.BytesIO(blob))
    assert not target.exists()


def test_the_hostile_payload_is_live_under_plain_pickle(tmp_path):
    target = tmp_path / 'pwned'
    pickle.loads(_global_call('builtins', 'eval', f'open({str(target)!r}, "w").write("pwned")'))
    assert target.exists()  # So the refusals above are real refusals.


def _file_writing_meta(target, class_name='Evil'):
    src = (f'import torch\nopen({str(target)!r}, "w").write("pwned")\n'
           f'class {class_name}(torch.nn.Module):\n    pass\n')
    return dict(type='class', version=6, module_src=src, class_name=class_name,
                state=dict(training=False, _parameters={}, _buffers={}, _modules={}))


def test_embedded_source_is_not_executed_by_default(tmp_path):
    target = tmp_path / 'pwned'
    blob = pickle.dumps(dict(G_ema=_MetaOnly(_file_writing_meta(target))))
    with pytest.raises(UnsafePickleError, match='Evil.*--allow-exec'):
        legacy.load_network_pkl(io.BytesIO(blob))
    assert not target.exists()


def test_allow_exec_runs_the_embedded_source(tmp_path):
    target = tmp_path / 'pwned'
    blob = pickle.dumps(dict(G_ema=_MetaOnly(_file_writing_meta(target, 'Trusted'))))
    data = legacy.load_network_pkl(io.BytesIO(blob), allow_exec=True)
    assert target.exists()
    assert type(data['G_ema']).__name__ == 'Trusted'
    assert type(data['G_ema']).__module__.startswith('_imported_module_')


@pytest.mark.parametrize('dotted', ['EasyDict.__getattr__.__globals__', 'os.system', 'EasyDict.__getattr__'])
def test_dotted_name_walks_are_refused(dotted):
    blob = b'\x80\x04' + _stack_global('dnnlib.util', dotted) + pickle.STOP
    with pytest.raises(UnsafePickleError, match=re.escape(f'dnnlib.util.{dotted}')):
        legacy.load_network_pkl(io.BytesIO(blob))


class _Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return eval, (f'open({str(self.target)!r}, "w").write("pwned")',)


def test_load_from_bytes_with_a_non_weights_payload_is_refused(tmp_path):
    target = tmp_path / 'pwned'
    payload = io.BytesIO()
    torch.save(_Payload(target), payload, _use_new_zipfile_serialization=False)
    blob = _global_call('torch.storage', '_load_from_bytes', payload.getvalue())
    with pytest.raises(UnsafePickleError, match='not plain weights'):
        legacy.load_network_pkl(io.BytesIO(blob))
    assert not target.exists()


def test_persistent_ids_and_extension_codes_are_refused():
    with pytest.raises(UnsafePickleError, match='persistent id'):
        safe_pickle.load_pickle(io.BytesIO(b'\x80\x02X\x03\x00\x00\x00abcQ.'))
    copyreg.add_extension('builtins', 'eval', 0x7ffff0)  # A code that would resolve to eval through copyreg.
    try:
        blob = b'\x80\x02\x84' + (0x7ffff0).to_bytes(4, 'little') + b'X\x01\x00\x00\x001\x85R.'
        with pytest.raises(UnsafePickleError, match='extension code'):
            safe_pickle.load_pickle(io.BytesIO(blob))
        assert pickle.loads(blob) == 1  # The same bytes do call eval under plain pickle.
    finally:
        copyreg.remove_extension('builtins', 'eval', 0x7ffff0)


def test_build_cannot_install_or_call_setstate(tmp_path):
    # An EasyDict whose item '__setstate__' is torch.storage._load_from_bytes, then BUILD with a torch.save payload:
    # plain pickle looks the item up as the object's __setstate__ and calls it, i.e. torch.load(weights_only=False).
    target = tmp_path / 'pwned'
    payload = io.BytesIO()
    torch.save(_Payload(target), payload, _use_new_zipfile_serialization=False)
    blob = (b'\x80\x04' + _stack_global('dnnlib.util', 'EasyDict') + pickle.EMPTY_TUPLE + pickle.NEWOBJ
            + pickle.SHORT_BINUNICODE + b'\x0c__setstate__' + _stack_global('torch.storage', '_load_from_bytes')
            + pickle.SETITEM + pickle.BINBYTES + len(payload.getvalue()).to_bytes(4, 'little') + payload.getvalue()
            + pickle.BUILD + pickle.STOP)
    with pytest.raises(UnsafePickleError, match='BUILD'):
        safe_pickle.load_pickle(io.BytesIO(blob))
    assert not target.exists()
    pickle.loads(blob)
    assert target.exists()  # Plain pickle ran the payload: the trap is real.

    # BUILD with a slot state on an allowed class would set class attributes process-wide.
    blob = (b'\x80\x04' + _stack_global('dnnlib.util', 'EasyDict') + pickle.NONE + pickle.EMPTY_DICT
            + pickle.SHORT_BINUNICODE + b'\x0b__getattr__' + pickle.NONE + pickle.SETITEM + pickle.TUPLE2
            + pickle.BUILD + pickle.STOP)
    with pytest.raises(UnsafePickleError, match='BUILD'):
        safe_pickle.load_pickle(io.BytesIO(blob))
    assert dnnlib.EasyDict(a=1).a == 1


def test_numpy_objects_get_their_state_once_and_dtypes_are_private_copies():
    blob = pickle.dumps(np.arange(3.0), protocol=4)
    assert np.array_equal(safe_pickle.load_pickle(io.BytesIO(blob)), np.arange(3.0))
    # The same array's BUILD applied a second time (e.g. to swap in another dtype or size) is refused.
    twice = blob[:-1] + pickle.EMPTY_TUPLE + pickle.BUILD + pickle.STOP
    with pytest.raises(UnsafePickleError, match='twice'):
        safe_pickle.load_pickle(io.BytesIO(twice))
    # dtype(..., copy=False) would hand out numpy's shared float64; BUILD then must not be able to alter it.
    blob = (b'\x80\x04' + _stack_global('numpy', 'dtype') + pickle.SHORT_BINUNICODE + b'\x02f8' + pickle.NEWFALSE
            + pickle.NEWFALSE + pickle.TUPLE3 + pickle.REDUCE
            + pickle.dumps((3, '>', None, None, None, -1, -1, 0), protocol=2)[2:-1]
            + pickle.BUILD + pickle.STOP)
    loaded = safe_pickle.load_pickle(io.BytesIO(blob))
    assert loaded is not np.dtype('f8') and np.dtype('f8').byteorder in '=<'


def test_appends_and_setitems_only_touch_real_containers():
    # APPENDS on an EasyDict would look up and call its attribute 'extend' (an item).
    blob = (b'\x80\x04' + _stack_global('dnnlib.util', 'EasyDict') + pickle.EMPTY_TUPLE + pickle.NEWOBJ
            + pickle.SHORT_BINUNICODE + b'\x06extend' + _stack_global('builtins', 'set') + pickle.SETITEM
            + pickle.MARK + pickle.EMPTY_LIST + pickle.APPENDS + pickle.STOP)
    with pytest.raises(UnsafePickleError, match='appending'):
        safe_pickle.load_pickle(io.BytesIO(blob))
    blob = b'\x80\x04' + _stack_global('builtins', 'set') + pickle.NONE + pickle.NONE + pickle.SETITEM + pickle.STOP
    with pytest.raises(UnsafePickleError, match='setting items'):
        safe_pickle.load_pickle(io.BytesIO(blob))


def test_calls_go_only_to_allowed_callables():
    # REDUCE on an object that is not an allowed callable (here: a loaded network, which is callable).
    G, _ = _tiny_pair()
    blob = pickle.dumps(G, protocol=4)[:-1] + pickle.EMPTY_TUPLE + pickle.REDUCE + pickle.STOP
    with pytest.raises(UnsafePickleError, match='a call of'):
        safe_pickle.load_pickle(io.BytesIO(blob))


def test_persistent_state_with_hooks_is_refused():
    G, _ = _tiny_pair()

    def add_hook(class_name, state):
        if class_name == 'MappingNetwork':
            state['_forward_hooks'] = collections.OrderedDict([(0, dnnlib.EasyDict)])
        return state
    with pytest.raises(UnsafePickleError, match='hooks'):
        legacy.load_network_pkl(io.BytesIO(_official_bytes(dict(G_ema=G), state_edit=add_hook)))


def test_dunder_state_keys_are_refused():
    G, _ = _tiny_pair()

    def add_dunder(class_name, state):
        state['__class__'] = 'x'
        return state
    with pytest.raises(UnsafePickleError, match='__class__'):
        legacy.load_network_pkl(io.BytesIO(_official_bytes(dict(G_ema=G), state_edit=add_dunder)))


def test_truncated_corrupt_empty_and_oversized_files_are_clear_errors(tmp_path):
    blob = pickle.dumps(_snapshot(*_tiny_pair()))
    for cut in [1, 2, 40, len(blob) // 3, len(blob) // 2, len(blob) - 1]:
        with pytest.raises(CorruptPickleError, match='truncated|ended|not a readable'):
            legacy.load_network_pkl(io.BytesIO(blob[:cut]))
    path = tmp_path / 'half.pkl'
    path.write_bytes(blob[:len(blob) // 2])
    with pytest.raises(CorruptPickleError, match='half.pkl'):
        legacy.load_network_pkl(str(path))
    with pytest.raises(CorruptPickleError, match='empty'):
        legacy.load_network_pkl(io.BytesIO(b''))
    with pytest.raises(CorruptPickleError, match='limit'):
        safe_pickle.load_network_pkl(io.BytesIO(blob), max_bytes=1000)
    # A length field claiming far more bytes than the file holds.
    with pytest.raises(CorruptPickleError, match='needs 1152921504606846976 bytes'):
        safe_pickle.load_pickle(io.BytesIO(b'\x80\x04\x8e' + (1 << 60).to_bytes(8, 'little') + b'xx.'))
    rng = np.random.RandomState(0)
    for _ in range(20):
        garbage = b'\x80\x04' + rng.bytes(64)
        with pytest.raises(pickle.UnpicklingError):
            safe_pickle.load_pickle(io.BytesIO(garbage))
    with pytest.raises(CorruptPickleError, match='not a network pickle'):
        legacy.load_network_pkl(io.BytesIO(pickle.dumps([1, 2, 3])))

def test_randomly_damaged_pickles_load_or_fail_with_an_unpickling_error():
    torch.manual_seed(0)
    layer = nets2.FullyConnectedLayer(4, 3, activation='lrelu').eval().requires_grad_(False)
    blob = bytearray(pickle.dumps(dict(G=layer, D=None, G_ema=layer, training_set_kwargs=dict(path='x'))))
    rng = np.random.RandomState(1)
    outcomes = collections.Counter()
    for _ in range(300):
        damaged = bytearray(blob)
        for pos in rng.randint(0, len(blob), size=rng.randint(1, 4)):
            damaged[pos] = rng.randint(256)
        try:
            legacy.load_network_pkl(io.BytesIO(bytes(damaged)))
            outcomes['loaded'] += 1
        except pickle.UnpicklingError:
            outcomes['refused'] += 1
    assert outcomes['refused'] > 0 and sum(outcomes.values()) == 300


#----------------------------------------------------------------------------
# TF-era pickles.

def _conv_to_tf(weight, flip=False):
    """Ours [out, in, kh, kw] -> TF [kh, kw, in, out] (flipped spatially for TF's up-sampling convolution)."""
    if flip:
        weight = weight[:, :, ::-1, ::-1]
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0))


def _tf_generator_variables(G):
    """(own, mapping, synthesis) variable lists of a TF-era G_main equivalent to our tiny G, written by hand."""
    p = {name: tensor.detach().numpy() for name, tensor in misc.named_params_and_buffers(G)}
    mapping = []
    for idx in range(2):
        mapping += [(f'Dense{idx}/weight', p[f'mapping.fc{idx}.weight'].T.copy()),
                    (f'Dense{idx}/bias', p[f'mapping.fc{idx}.bias'])]
    synthesis = [('4x4/Const/const', p['synthesis.b4.const'][np.newaxis])]
    noise_layers = []
    for res in [4, 8, 16]:
        layers = [('Conv', 'conv1')] if res == 4 else [('Conv0_up', 'conv0'), ('Conv1', 'conv1')]
        for tf_layer, ours in layers + [('ToRGB', 'torgb')]:
            prefix, key = f'{res}x{res}/{tf_layer}/', f'synthesis.b{res}.{ours}.'
            synthesis += [(prefix + 'weight', _conv_to_tf(p[key + 'weight'], flip=(ours == 'conv0'))),
                          (prefix + 'mod_weight', p[key + 'affine.weight'].T.copy()),
                          (prefix + 'mod_bias', p[key + 'affine.bias'] - 1),
                          (prefix + 'bias', p[key + 'bias'])]
            if ours != 'torgb':
                synthesis.append((prefix + 'noise_strength', p[key + 'noise_strength']))
                noise_layers.append(key + 'noise_const')
    synthesis += [(f'noise{idx}', p[key][np.newaxis, np.newaxis]) for idx, key in enumerate(noise_layers)]
    return [('dlatent_avg', p['mapping.w_avg'])], mapping, synthesis


def _tf_discriminator_variables(D):
    p = {name: tensor.detach().numpy() for name, tensor in misc.named_params_and_buffers(D)}
    variables = [('16x16/FromRGB/weight', _conv_to_tf(p['b16.fromrgb.weight'])),
                 ('16x16/FromRGB/bias', p['b16.fromrgb.bias'])]
    for res in [16, 8]:
        for tf_layer, ours in [('Conv0', 'conv0'), ('Conv1_down', 'conv1'), ('Skip', 'skip')]:
            variables.append((f'{res}x{res}/{tf_layer}/weight', _conv_to_tf(p[f'b{res}.{ours}.weight'])))
            if ours != 'skip':
                variables.append((f'{res}x{res}/{tf_layer}/bias', p[f'b{res}.{ours}.bias']))
    variables += [('4x4/Conv/weight', _conv_to_tf(p['b4.conv.weight'])), ('4x4/Conv/bias', p['b4.conv.bias']),
                  ('4x4/Dense0/weight', p['b4.fc.weight'].T.copy()), ('4x4/Dense0/bias', p['b4.fc.bias']),
                  ('Output/weight', p['b4.out.weight'].T.copy()), ('Output/bias', p['b4.out.bias'])]
    return variables


@pytest.fixture
def tf_network_class(monkeypatch):
    """A class that pickles under the global name dnnlib.tflib.network.Network with a given state."""
    network_module = types.ModuleType('dnnlib.tflib.network')
    tflib_module = types.ModuleType('dnnlib.tflib')

    class Network:
        def __init__(self, **state):
            defaults = dict(version=4, build_module_src='raise SystemExit("never run")\n', components={},
                            static_kwargs={}, variables=[])
            self.state = {**defaults, **state}

        def __reduce_ex__(self, protocol):
            return copyreg.__newobj__, (Network,), self.state
    Network.__module__, Network.__qualname__ = 'dnnlib.tflib.network', 'Network'
    network_module.Network = Network
    tflib_module.network = network_module
    monkeypatch.setitem(sys.modules, 'dnnlib.tflib', tflib_module)
    monkeypatch.setitem(sys.modules, 'dnnlib.tflib.network', network_module)
    return Network


def _tf_pickle(Network, G, D):
    static = dict(latent_size=8, dlatent_size=8, num_channels=3, resolution=16, label_size=0, fmap_base=64,
                  fmap_max=8, mapping_layers=2, architecture='skip', dlatent_avg_beta=0.995)
    own, mapping, synthesis = _tf_generator_variables(G)

    def generator(name):
        return Network(name=name, build_func_name='G_main', static_kwargs=static, variables=own, components=dict(
            mapping=Network(name='G_mapping', build_func_name='G_mapping', variables=mapping),
            synthesis=Network(name='G_synthesis', build_func_name='G_synthesis_stylegan2', variables=synthesis)))
    tf_D = Network(name='D', build_func_name='D_stylegan2', variables=_tf_discriminator_variables(D),
                   static_kwargs=dict(num_channels=3, resolution=16, label_size=0, fmap_base=64, fmap_max=8,
                                      architecture='resnet', resample_kernel=np.array([1, 3, 3, 1])))
    return pickle.dumps((generator('G'), tf_D, generator('Gs')), protocol=4)


def _tiny_tf_equivalents():
    torch.manual_seed(0)
    G = _randomized(nets2.Generator(**{**TINY_G, 'mapping_kwargs': dict(num_layers=2, w_avg_beta=0.995)},
                                    num_fp16_res=0, conv_clamp=None), 11)
    D = _randomized(nets2.Discriminator(**TINY_D, num_fp16_res=0, conv_clamp=None), 12)
    return G, D


def test_tf_era_pickle_converts_and_renders_like_our_network(tf_network_class):
    G, D = _tiny_tf_equivalents()
    data = legacy.load_network_pkl(io.BytesIO(_tf_pickle(tf_network_class, G, D)))
    assert type(data['G_ema']) is nets2.Generator and type(data['D']) is nets2.Discriminator
    assert data['augment_pipe'] is None
    assert data['G_ema'].mapping.w_avg_beta == 0.995 and data['G_ema'].init_kwargs['channel_base'] == 128
    torch.testing.assert_close(_render(data['G_ema']), _render(G), rtol=0, atol=1e-6)
    torch.testing.assert_close(_render(data['G']), _render(G), rtol=0, atol=1e-6)
    torch.testing.assert_close(_judge(data['D']), _judge(D), rtol=0, atol=1e-6)
    trusted = legacy.load_network_pkl(io.BytesIO(_tf_pickle(tf_network_class, G, D)), allow_exec=True)
    torch.testing.assert_close(_render(trusted['G_ema']), _render(G), rtol=0, atol=1e-6)


def test_tf_era_pickle_is_converted_by_callers_above_torch_utils(tf_network_class, tmp_path):
    # torch_utils/safe_pickle.py does not import training/: the conversion (training/tf_legacy.py) is passed in by
    # legacy.py and by the training loop's resume; without it a TF-era pickle is a clear error, not a crash.
    from training import training_loop
    G, D = _tiny_tf_equivalents()
    path = tmp_path / 'tf.pkl'
    path.write_bytes(_tf_pickle(tf_network_class, G, D))
    with pytest.raises(CorruptPickleError, match='a TF-era pickle; load it with legacy.load_network_pkl'):
        safe_pickle.load_network_pkl(str(path))
    torch.testing.assert_close(_render(training_loop.load_snapshot(str(path))['G_ema']), _render(G), rtol=0,
                               atol=1e-6)


def test_tf_era_gs_alone_converts_to_g_ema(tf_network_class):
    G, D = _tiny_tf_equivalents()
    blob = _tf_pickle(tf_network_class, G, D)
    G_rec, _D_rec, Gs_rec = safe_pickle.load_pickle(io.BytesIO(blob))
    assert Gs_rec.build_func_name == 'G_main' and Gs_rec.version == 4
    assert sorted(Gs_rec.components) == ['mapping', 'synthesis']
    single = pickle.dumps(tf_network_class(**{field: getattr(Gs_rec, field) for field in [
        'name', 'static_kwargs', 'variables', 'build_func_name', 'build_module_src', 'version']},
        components={name: tf_network_class(**{field: getattr(comp, field) for field in ['name', 'variables']})
                    for name, comp in Gs_rec.components.items()}), protocol=4)
    data = legacy.load_network_pkl(io.BytesIO(single))
    assert data['G'] is None and data['D'] is None
    torch.testing.assert_close(_render(data['G_ema']), _render(G), rtol=0, atol=1e-6)


def test_tf_era_conversion_rejects_unknown_variables(tf_network_class):
    G, D = _tiny_tf_equivalents()
    own, mapping, synthesis = _tf_generator_variables(G)
    record = tf_network_class(name='Gs', static_kwargs=dict(fmap_base=64, fmap_max=8, latent_size=8, dlatent_size=8),
                              variables=own + [('Extra/weight', np.zeros(3, np.float32))], components=dict(
                                  mapping=tf_network_class(name='G_mapping', variables=mapping),
                                  synthesis=tf_network_class(name='G_synthesis', variables=synthesis)))
    with pytest.raises(CorruptPickleError, match='Extra/weight'):
        legacy.load_network_pkl(io.BytesIO(pickle.dumps(record, protocol=4)))


def test_tf_era_settings_we_do_not_reproduce_are_named(tf_network_class):
    G, _ = _tiny_tf_equivalents()
    own, mapping, synthesis = _tf_generator_variables(G)
    for setting, pattern in [(dict(resample_kernel=[1, 2, 1]), 'resample_kernel'), (dict(fmap_decay=0.5), 'fmap_decay'),
                             (dict(nonlinearity='relu'), 'nonlinearity')]:
        record = tf_network_class(name='Gs', static_kwargs=dict(fmap_base=64, fmap_max=8, latent_size=8,
                                                                dlatent_size=8, **setting),
                                  variables=own, components=dict(
                                      mapping=tf_network_class(name='G_mapping', variables=mapping),
                                      synthesis=tf_network_class(name='G_synthesis', variables=synthesis)))
        with pytest.raises(CorruptPickleError, match=pattern):
            legacy.load_network_pkl(io.BytesIO(pickle.dumps(record, protocol=4)))


def test_legacy_cli_converts_a_tf_pickle_into_a_loadable_snapshot(tf_network_class, tmp_path):
    G, D = _tiny_tf_equivalents()
    source, dest = tmp_path / 'tf.pkl', tmp_path / 'ours.pkl'
    source.write_bytes(_tf_pickle(tf_network_class, G, D))
    result = CliRunner().invoke(legacy.main, ['--source', str(source), '--dest', str(dest)])
    assert result.exit_code == 0, result.output
    data = legacy.load_network_pkl(str(dest))
    torch.testing.assert_close(_render(data['G_ema']), _render(G), rtol=0, atol=1e-6)
    assert b'dnnlib.tflib' not in dest.read_bytes()  # A clean snapshot of ours, no TF-era records.


def test_legacy_cli_converts_ada_pickles_and_forces_fp16(tmp_path):
    G, D = _tiny_pair(seed=5)
    source, dest = tmp_path / 'ada.pkl', tmp_path / 'clean.pkl'
    source.write_bytes(_official_bytes(_snapshot(G, D), sg2_family='stylegan2-ada', state_edit=_ada_state))
    result = CliRunner().invoke(legacy.main, ['--source', str(source), '--dest', str(dest), '--force-fp16'])
    assert result.exit_code == 0, result.output
    data = legacy.load_network_pkl(str(dest))
    assert data['G_ema'].init_kwargs['num_fp16_res'] == 4
    assert data['G_ema'].synthesis.b8.fused_modconv_default is not None  # Rebuilt by our current code.
    torch.testing.assert_close(_render(data['G_ema']), _render(G), rtol=0, atol=1e-5)


def test_legacy_cli_accepts_force_fp16_with_a_value_and_reads_unseekable_streams(tmp_path):
    G, D = _tiny_pair()
    source, dest = tmp_path / 'ours.pkl', tmp_path / 'fp16.pkl'
    safe_pickle.save_network_pkl(_snapshot(G, D), source)
    result = CliRunner().invoke(legacy.main, [f'--source={source}', f'--dest={dest}', '--force-fp16=1'])
    assert result.exit_code == 0, result.output
    assert legacy.load_network_pkl(str(dest))['D'].init_kwargs['num_fp16_res'] == 4

    class Unseekable(io.RawIOBase):
        def __init__(self, data):
            self.inner = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, buffer):
            return self.inner.readinto(buffer)
    stream = io.BufferedReader(Unseekable(source.read_bytes()))
    assert not stream.seekable()
    torch.testing.assert_close(_render(legacy.load_network_pkl(stream)['G_ema']), _render(G), rtol=0, atol=0)


def test_legacy_cli_reports_refused_files_and_writes_nothing(tmp_path):
    source, dest = tmp_path / 'evil.pkl', tmp_path / 'out.pkl'
    source.write_bytes(_global_call('os', 'system', f'touch {tmp_path / "pwned"}'))
    result = CliRunner().invoke(legacy.main, ['--source', str(source), '--dest', str(dest)])
    assert result.exit_code != 0 and 'os.system' in result.output
    assert not dest.exists() and not (tmp_path / 'pwned').exists()

#----------------------------------------------------------------------------
