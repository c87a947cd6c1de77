"""TF-era StyleGAN1 pickles (karras2019stylegan-*.pkl layout): a hand-built G_style/G_mapping/G_synthesis pickle
converts to our networks_stylegan1.Generator, and its image equals a direct computation of the TF layers."""

import copyreg
import io
import pickle
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import legacy
from torch_utils.safe_pickle import CorruptPickleError
from training import networks_stylegan1

# Tiny configuration: 16x16 RGB, z = w = 8, two mapping layers, nf(stage) = min(32 / 2^stage, 8).
CFG = dict(resolution=16, latent_size=8, dlatent_size=8, mapping_layers=2, mapping_fmaps=8, fmap_base=32, fmap_max=8,
           num_channels=3)


def _nf(stage):
    return min(CFG['fmap_base'] // 2 ** stage, CFG['fmap_max'])


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


def _tf_variables(seed=0):
    """(G_style own, G_mapping, G_synthesis) variable lists with random values, names and shapes of the release."""
    rnd = np.random.RandomState(seed)
    f32 = lambda *shape: rnd.randn(*shape).astype(np.float32)  # noqa: E731
    own = [('lod', np.float32(0)), ('dlatent_avg', f32(8))]
    mapping = []
    for idx in range(CFG['mapping_layers']):
        mapping += [(f'Dense{idx}/weight', f32(8, 8)), (f'Dense{idx}/bias', f32(8))]
    synthesis = [('lod', np.float32(0))]
    for layer_idx in range(6):
        res = 2 ** (layer_idx // 2 + 2)
        synthesis.append((f'noise{layer_idx}', f32(1, 1, res, res)))

    def epilogue(scope, channels):
        return [(f'{scope}/Noise/weight', f32(channels)), (f'{scope}/bias', f32(channels)),
                (f'{scope}/StyleMod/weight', f32(8, 2 * channels)), (f'{scope}/StyleMod/bias', 0.3 * f32(2 * channels))]
    synthesis += [('4x4/Const/const', 1 + 0.1 * f32(1, _nf(1), 4, 4))] + epilogue('4x4/Const', _nf(1))
    synthesis += [('4x4/Conv/weight', f32(3, 3, _nf(1), _nf(1)))] + epilogue('4x4/Conv', _nf(1))
    in_channels = _nf(1)
    for log2 in (3, 4):
        res, channels = 2 ** log2, _nf(log2 - 1)
        synthesis += [(f'{res}x{res}/Conv0_up/weight', f32(3, 3, in_channels, channels))]
        synthesis += epilogue(f'{res}x{res}/Conv0_up', channels)
        synthesis += [(f'{res}x{res}/Conv1/weight', f32(3, 3, channels, channels))]
        synthesis += epilogue(f'{res}x{res}/Conv1', channels)
        in_channels = channels
    for lod, log2 in enumerate([4, 3, 2]):  # Every resolution has a ToRGB_lod<k> in the release.
        channels = _nf(log2 - 1)
        synthesis += [(f'ToRGB_lod{lod}/weight', f32(1, 1, channels, 3)), (f'ToRGB_lod{lod}/bias', f32(3))]
    return own, mapping, synthesis


def _tf_discriminator_variables(seed=1):
    """D_basic's variables (names and shapes of the release) for the tiny configuration, random values."""
    rnd = np.random.RandomState(seed)
    f32 = lambda *shape: rnd.randn(*shape).astype(np.float32)  # noqa: E731
    variables = [('lod', np.float32(0))]
    for lod, log2 in enumerate([4, 3, 2]):
        variables += [(f'FromRGB_lod{lod}/weight', f32(1, 1, 3, _nf(log2 - 1))),
                      (f'FromRGB_lod{lod}/bias', f32(_nf(log2 - 1)))]
    for log2 in (4, 3):
        res = 2 ** log2
        variables += [(f'{res}x{res}/Conv0/weight', f32(3, 3, _nf(log2 - 1), _nf(log2 - 1))),
                      (f'{res}x{res}/Conv0/bias', f32(_nf(log2 - 1))),
                      (f'{res}x{res}/Conv1_down/weight', f32(3, 3, _nf(log2 - 1), _nf(log2 - 2))),
                      (f'{res}x{res}/Conv1_down/bias', f32(_nf(log2 - 2)))]
    variables += [('4x4/Conv/weight', f32(3, 3, _nf(1) + 1, _nf(1))), ('4x4/Conv/bias', f32(_nf(1))),
                  ('4x4/Dense0/weight', f32(_nf(1) * 16, _nf(0))), ('4x4/Dense0/bias', f32(_nf(0))),
                  ('4x4/Dense1/weight', f32(_nf(0), 1)), ('4x4/Dense1/bias', f32(1))]
    return variables


def _tf_pickle(Network, variables, D=True):
    own, mapping, synthesis = variables

    def g_style(name):
        return Network(name=name, build_func_name='G_style', static_kwargs=dict(CFG), variables=own, components=dict(
            mapping=Network(name='G_mapping', build_func_name='G_mapping', variables=mapping),
            synthesis=Network(name='G_synthesis', build_func_name='G_synthesis', variables=synthesis)))
    d_basic = Network(name='D', build_func_name='D_basic', static_kwargs=dict(CFG, mbstd_group_size=2),
                      variables=_tf_discriminator_variables())
    return pickle.dumps((g_style('G'), d_basic, g_style('Gs')) if D else g_style('Gs'), protocol=4)

#----------------------------------------------------------------------------
# The TF graph of G_style, computed directly from the variables (float64 numpy for the dense parts, torch convs).

def _lrelu(x):
    return np.where(x >= 0, x, 0.2 * x)


def _tf_generate(variables, z):
    own, mapping, synthesis = [dict(v) for v in variables]
    x = z / np.sqrt(np.mean(z ** 2, axis=1, keepdims=True) + 1e-8)
    for idx in range(CFG['mapping_layers']):
        weight, bias = mapping[f'Dense{idx}/weight'], mapping[f'Dense{idx}/bias']
        x = _lrelu(x @ (weight * np.sqrt(2) / np.sqrt(weight.shape[0]) * 0.01) + bias * 0.01)
    w = x  # Broadcast: the same w for all 6 layers (no truncation).

    def conv(x, weight, gain):
        kernel = torch.from_numpy(np.transpose(weight, (3, 2, 0, 1)).astype(np.float64))
        scale = gain / np.sqrt(np.prod(weight.shape[:3]))
        return F.conv2d(torch.from_numpy(x), kernel * scale, padding=weight.shape[0] // 2).numpy()

    def epilogue(x, scope, layer_idx):
        x = x + synthesis[f'noise{layer_idx}'] * synthesis[f'{scope}/Noise/weight'][None, :, None, None]
        x = _lrelu(x + synthesis[f'{scope}/bias'][None, :, None, None])
        x = x - x.mean(axis=(2, 3), keepdims=True)
        x = x / np.sqrt((x ** 2).mean(axis=(2, 3), keepdims=True) + 1e-8)
        style_weight = synthesis[f'{scope}/StyleMod/weight']
        style = w @ (style_weight / np.sqrt(style_weight.shape[0])) + synthesis[f'{scope}/StyleMod/bias']
        channels = x.shape[1]
        return x * (style[:, :channels, None, None] + 1) + style[:, channels:, None, None]

    def blur(x):
        taps = np.outer([1, 2, 1], [1, 2, 1]) / 16.0
        kernel = torch.from_numpy(np.tile(taps[None, None], [x.shape[1], 1, 1, 1]))
        return F.conv2d(torch.from_numpy(x), kernel, padding=1, groups=x.shape[1]).numpy()

    x = np.tile(synthesis['4x4/Const/const'].astype(np.float64), [z.shape[0], 1, 1, 1])
    x = epilogue(x, '4x4/Const', 0)
    x = epilogue(conv(x, synthesis['4x4/Conv/weight'], np.sqrt(2)), '4x4/Conv', 1)
    for log2 in (3, 4):
        scope = f'{2 ** log2}x{2 ** log2}'
        x = x.repeat(2, axis=2).repeat(2, axis=3)
        x = epilogue(blur(conv(x, synthesis[f'{scope}/Conv0_up/weight'], np.sqrt(2))), f'{scope}/Conv0_up',
                     2 * log2 - 4)
        x = epilogue(conv(x, synthesis[f'{scope}/Conv1/weight'], np.sqrt(2)), f'{scope}/Conv1', 2 * log2 - 3)
    return conv(x, synthesis['ToRGB_lod0/weight'], 1) + synthesis['ToRGB_lod0/bias'][None, :, None, None]


def _tf_discriminate(variables, img):
    """D_basic at lod 0 computed directly: img [N, 3, 16, 16] float64 -> scores [N, 1]."""
    v = dict(variables)

    def conv(x, weight, gain):
        kernel = torch.from_numpy(np.transpose(weight, (3, 2, 0, 1)).astype(np.float64))
        scale = gain / np.sqrt(np.prod(weight.shape[:3]))
        return F.conv2d(torch.from_numpy(x), kernel * scale, padding=weight.shape[0] // 2).numpy()

    def layer(x, scope, down=False):
        if down:  # blur [1,2,1], conv, 2x2 average pooling
            taps = torch.from_numpy(np.tile((np.outer([1, 2, 1], [1, 2, 1]) / 16.0)[None, None], [x.shape[1], 1, 1, 1]))
            x = F.conv2d(torch.from_numpy(x), taps, padding=1, groups=x.shape[1]).numpy()
            x = conv(x, v[f'{scope}/weight'], np.sqrt(2))
            x = x.reshape(x.shape[0], x.shape[1], x.shape[2] // 2, 2, x.shape[3] // 2, 2).mean(axis=(3, 5))
        else:
            x = conv(x, v[f'{scope}/weight'], np.sqrt(2))
        return _lrelu(x + v[f'{scope}/bias'][None, :, None, None])

    x = layer(img, 'FromRGB_lod0')
    for res in (16, 8):
        x = layer(layer(x, f'{res}x{res}/Conv0'), f'{res}x{res}/Conv1_down', down=True)
    group = x.reshape(2, -1, *x.shape[1:])                                        # [G, M, C, H, W]
    std = np.sqrt(((group - group.mean(axis=0)) ** 2).mean(axis=0) + 1e-8).mean(axis=(1, 2, 3))  # [M]
    x = np.concatenate([x, np.tile(std, 2)[:, None, None, None] * np.ones([x.shape[0], 1, 4, 4])], axis=1)
    x = layer(x, '4x4/Conv').reshape(x.shape[0], -1)
    dense0, dense1 = v['4x4/Dense0/weight'], v['4x4/Dense1/weight']
    x = _lrelu(x @ (dense0 * np.sqrt(2) / np.sqrt(dense0.shape[0])) + v['4x4/Dense0/bias'])
    return x @ (dense1 / np.sqrt(dense1.shape[0])) + v['4x4/Dense1/bias']

#----------------------------------------------------------------------------

def test_hand_built_tf_stylegan1_pickle_converts_and_renders_like_the_tf_layers(tf_network_class):
    variables = _tf_variables()
    data = legacy.load_network_pkl(io.BytesIO(_tf_pickle(tf_network_class, variables)))
    G = data['G_ema']
    assert type(G) is networks_stylegan1.Generator and type(data['G']) is type(G)
    assert (G.z_dim, G.w_dim, G.img_resolution, G.img_channels, G.num_ws) == (8, 8, 16, 3, 6)
    assert torch.equal(G.mapping.w_avg, torch.from_numpy(dict(variables[0])['dlatent_avg']))
    z = np.random.RandomState(7).randn(3, 8)
    with torch.no_grad():
        ours = G(torch.from_numpy(z).float(), None, noise_mode='const').double().numpy()
    expected = _tf_generate(variables, z)
    assert ours.shape == expected.shape == (3, 3, 16, 16)
    assert np.abs(expected).mean() > 0.1
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-4 * np.abs(expected).max())


def test_hand_built_tf_stylegan1_discriminator_converts_and_scores_like_the_tf_layers(tf_network_class):
    data = legacy.load_network_pkl(io.BytesIO(_tf_pickle(tf_network_class, _tf_variables())))
    D = data['D']
    assert type(D) is networks_stylegan1.Discriminator and float(D.lod) == 0
    img = np.random.RandomState(3).randn(4, 3, 16, 16)
    with torch.no_grad():
        ours = D(torch.from_numpy(img).float(), None).double().numpy()
    expected = _tf_discriminate(_tf_discriminator_variables(), img)
    assert ours.shape == expected.shape == (4, 1) and np.abs(expected).max() > 0.1
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-4 * np.abs(expected).max())


def test_tf_stylegan1_with_lod_above_zero_is_refused(tf_network_class):
    own, mapping, synthesis = _tf_variables()
    synthesis = [(name, np.float32(1.5) if name == 'lod' else value) for name, value in synthesis]
    with pytest.raises(CorruptPickleError, match='lod'):
        legacy.load_network_pkl(io.BytesIO(_tf_pickle(tf_network_class, (own, mapping, synthesis), D=False)))


def test_tf_stylegan1_unknown_variable_is_named(tf_network_class):
    own, mapping, synthesis = _tf_variables()
    synthesis = synthesis + [('8x8/Extra/weight', np.zeros(3, np.float32))]
    with pytest.raises(CorruptPickleError, match='8x8/Extra/weight'):
        legacy.load_network_pkl(io.BytesIO(_tf_pickle(tf_network_class, (own, mapping, synthesis), D=False)))


def test_legacy_cli_writes_our_snapshot_from_a_tf_stylegan1_pickle(tf_network_class, tmp_path):
    variables = _tf_variables(seed=1)
    source, dest = tmp_path / 'karras2019stylegan-tiny.pkl', tmp_path / 'ours.pkl'
    source.write_bytes(_tf_pickle(tf_network_class, variables, D=False))
    result = CliRunner().invoke(legacy.main, ['--source', str(source), '--dest', str(dest)])
    assert result.exit_code == 0, result.output
    assert b'dnnlib.tflib' not in dest.read_bytes()
    G = legacy.load_network_pkl(str(dest))['G_ema']
    z = np.random.RandomState(2).randn(2, 8)
    with torch.no_grad():
        ours = G(torch.from_numpy(z).float(), None, noise_mode='const').double().numpy()
    expected = _tf_generate(variables, z)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-4 * np.abs(expected).max())
