"""onnx_export.py and torch_utils/export.py: ONNX and TorchScript files of tiny StyleGAN1/2/3-T/3-R generators equal
a direct PyTorch call of G (with its default, fused modulated convolutions), for a batch size other than the traced
one; int8 files are smaller and report their PSNR; errors are clear."""

import os
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import onnx_export
from torch_utils import export
from torch_utils import safe_pickle
from training import networks_stylegan1, networks_stylegan2, networks_stylegan3

PSI = 0.7
SMALL = dict(z_dim=16, w_dim=16, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2))


def _make_generator(family, c_dim=0):
    """A tiny generator with weights that make every layer matter (random noise strengths, random SG1 const)."""
    torch.manual_seed(0)
    if family == 'sg1':
        G = networks_stylegan1.Generator(c_dim=c_dim, channel_base=128, channel_max=16, **SMALL)
        # A fresh SG1 const is all ones: its instance norm is then 0/0-level noise that no two runtimes agree on.
        G.synthesis.b4.const.data.normal_()
    elif family == 'sg2':
        G = networks_stylegan2.Generator(c_dim=c_dim, channel_base=128, channel_max=16, **SMALL)
    else:
        # 4 layers instead of 14: every kind of layer (up, down, critically sampled, ToRGB), a quarter of the
        # export time.
        G = networks_stylegan3.Generator(c_dim=c_dim, channel_base=256, channel_max=16, num_layers=4, **SMALL,
                                         conv_kernel=1 if family == 'sg3r' else 3, use_radial_filters=family == 'sg3r')
    for name, param in G.named_parameters():
        if name.endswith('noise_strength'):
            param.data.normal_(0, 0.5)
    return G.eval().requires_grad_(False)


def _direct(G, z, c, **kwargs):
    """G's own call: what the exported file must reproduce."""
    with torch.no_grad():
        return G(z, c, truncation_psi=PSI, noise_mode='const', **kwargs).numpy()


def _inputs(G, batch_size, seed):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn([batch_size, G.z_dim], generator=gen)
    c = torch.nn.functional.one_hot(torch.arange(batch_size) % max(G.c_dim, 1), max(G.c_dim, 1)).float()
    return z, (c if G.c_dim > 0 else torch.zeros([batch_size, 0]))


def _write_pkl(path, G):
    safe_pickle.save_network_pkl(dict(G=G, D=None, G_ema=G, augment_pipe=None, training_set_kwargs=None), str(path))
    return str(path)

#----------------------------------------------------------------------------

@pytest.fixture(scope='module')
def onnxruntime():
    try:
        export.require_onnx()
    except export.MissingExportDependency as err:
        print(f'skipping ONNX tests: {err}')
        pytest.skip(str(err))
    import onnxruntime
    return onnxruntime


@pytest.mark.parametrize('family, c_dim', [('sg1', 0), ('sg2', 3), ('sg3t', 0), ('sg3r', 2)])
def test_onnx_matches_pytorch_for_batch_1_and_5(family, c_dim, onnxruntime, tmp_path):
    G = _make_generator(family, c_dim)
    wrapper = export.GeneratorWrapper(G, truncation_psi=PSI)
    path = str(tmp_path / 'g.onnx')
    export.export_onnx(wrapper, path, batch_size=2)
    export.fold_constants(path)
    import onnx
    model = onnx.load(path)
    assert {node.domain for node in model.graph.node} == {''}  # Standard ONNX ops only: no custom kernels.
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == 'batch'
    session = export.onnx_session(path, threads=1)
    assert [i.name for i in session.get_inputs()] == (['input', 'c'] if c_dim else ['input'])
    for batch_size in (1, 5):
        z, c = _inputs(G, batch_size, seed=batch_size)
        expected = _direct(G, z, c)
        actual = export.run_onnx(session, (z, c) if c_dim else (z,))
        assert actual.shape == (batch_size, 3, 16, 16)
        assert np.abs(actual - expected).max() < 1e-3, (family, batch_size)
        assert expected.std() > 1e-3  # The image is not flat: the comparison means something.


@pytest.mark.parametrize('family', ['sg1', 'sg2', 'sg3t', 'sg3r'])
def test_torchscript_matches_pytorch(family, tmp_path):
    G = _make_generator(family, c_dim=2)
    path = str(tmp_path / 'g.pt')
    export.export_torchscript(export.GeneratorWrapper(G, truncation_psi=PSI), path, batch_size=2)
    module = torch.jit.load(path)
    z, c = _inputs(G, 3, seed=11)
    with torch.no_grad():
        actual = module(z, c).numpy()
    assert np.abs(actual - _direct(G, z, c)).max() < 1e-4


def test_stylegan3_nonfused_modconv_equals_fused():
    G = _make_generator('sg3t')
    z, c = _inputs(G, 3, seed=5)
    assert np.abs(_direct(G, z, c, fused_modconv=False) - _direct(G, z, c)).max() < 1e-5


def test_jit_trace_of_default_generator_works():
    # The reproduction: tracing a loaded G with its default call failed inside upfirdn2d's padding parser.
    G = _make_generator('sg2')
    z, c = _inputs(G, 2, seed=3)
    with torch.no_grad(), export.reference_ops():
        traced = torch.jit.trace(lambda z: G(z, None, noise_mode='const'), (z,), check_trace=False)
        assert torch.allclose(traced(z), G(z, None, noise_mode='const'), atol=1e-5)


def test_mapping_and_synthesis_exports_match_their_parts(onnxruntime, tmp_path):
    G = _make_generator('sg2')
    z, c = _inputs(G, 2, seed=4)
    with torch.no_grad():
        ws = G.mapping(z, None, truncation_psi=PSI)
        expected = {'mapping': ws.numpy(), 'synthesis': G.synthesis(ws, noise_mode='const').numpy()}
    for what, inputs in [('mapping', (z,)), ('synthesis', (ws,))]:
        path = str(tmp_path / f'{what}.onnx')
        export.export_onnx(export.GeneratorWrapper(G, what=what, truncation_psi=PSI), path)
        actual = export.run_onnx(export.onnx_session(path, threads=1), inputs)
        assert np.abs(actual - expected[what]).max() < 1e-4, what

#----------------------------------------------------------------------------
# The command line.

def _run(*args):
    return CliRunner().invoke(onnx_export.main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope='module')
def sg2_pkl(tmp_path_factory):
    return _write_pkl(tmp_path_factory.mktemp('net') / 'sg2.pkl', _make_generator('sg2'))


@pytest.fixture(scope='module')
def sg2_wide_pkl(tmp_path_factory):
    """64 channels: enough weights that they, not the graph's bookkeeping, make up the file (as in real networks)."""
    torch.manual_seed(0)
    G = networks_stylegan2.Generator(c_dim=0, channel_base=1024, channel_max=64, **SMALL).eval()
    return _write_pkl(tmp_path_factory.mktemp('net') / 'sg2wide.pkl', G)


def test_cli_check_prints_the_difference_and_writes_the_file(onnxruntime, sg2_pkl, tmp_path):
    result = _run('--network', sg2_pkl, '--output', tmp_path / 'out' / 'model.onnx', '--check=1', '--device', 'cpu')
    assert result.exit_code == 0, result.output
    assert 'check: batch 1: max abs difference' in result.output and 'check: batch 4' in result.output
    assert os.path.getsize(tmp_path / 'out' / 'model.onnx') > 10000
    assert os.listdir(tmp_path / 'out') == ['model.onnx']  # No work files left behind.


@pytest.fixture(scope='module')
def sg2_wide_fp32_size(sg2_wide_pkl, tmp_path_factory):
    """Size in bytes of the float32 ONNX file of sg2_wide_pkl."""
    path = tmp_path_factory.mktemp('fp32') / 'fp32.onnx'
    assert _run('--network', sg2_wide_pkl, '--output', path, '--device', 'cpu').exit_code == 0
    return os.path.getsize(path)


@pytest.mark.parametrize('mode', ['int8', 'int8-static'])
def test_cli_int8_is_smaller_and_reports_psnr(mode, onnxruntime, sg2_wide_pkl, sg2_wide_fp32_size, tmp_path):
    result = _run('--network', sg2_wide_pkl, '--output', tmp_path / 'int8.onnx', '--quantize', mode,
                  '--calib-samples', 4, '--device', 'cpu')
    assert result.exit_code == 0, result.output
    print(result.output)
    assert 'int8 vs fp32: PSNR' in result.output and 'images/s on CPU' in result.output
    psnr = float(result.output.split('int8 vs fp32: PSNR ')[1].split(' dB')[0])
    assert 10 < psnr < 80  # Quantised: close to the float model, yet not identical.
    assert os.path.getsize(tmp_path / 'int8.onnx') < 0.8 * sg2_wide_fp32_size


def test_cli_fp16_halves_the_file(onnxruntime, sg2_wide_pkl, sg2_wide_fp32_size, tmp_path):
    result = _run('--network', sg2_wide_pkl, '--output', tmp_path / 'fp16.onnx', '--fp16', '--check=1',
                  '--device', 'cpu')
    assert result.exit_code == 0, result.output
    assert os.path.getsize(tmp_path / 'fp16.onnx') < 0.6 * sg2_wide_fp32_size


def test_cli_torchscript_check(sg2_pkl, tmp_path):
    result = _run('--network', sg2_pkl, '--output', tmp_path / 'g.pt', '--format', 'torchscript', '--check=1',
                  '--device', 'cpu')
    assert result.exit_code == 0, result.output
    assert 'check: batch 4: max abs difference' in result.output


def test_cli_bad_combinations_are_usage_errors(sg2_pkl, tmp_path):
    result = _run('--network', sg2_pkl, '--output', tmp_path / 'g.pt', '--format', 'torchscript', '--fp16')
    assert result.exit_code == 2 and '--format=onnx only' in result.output
    result = _run('--network', sg2_pkl, '--output', tmp_path / 'g.onnx', '--fp16', '--quantize', 'int8')
    assert result.exit_code == 2 and 'exclude each other' in result.output
    result = _run('--network', tmp_path / 'missing.pkl', '--output', tmp_path / 'g.onnx', '--device', 'cpu')
    assert result.exit_code == 1 and f'--network={tmp_path / "missing.pkl"}: cannot load it' in result.output


def test_missing_onnxruntime_names_the_extra(sg2_pkl, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)  # `import onnxruntime` now raises ImportError.
    result = _run('--network', sg2_pkl, '--output', tmp_path / 'g.onnx', '--device', 'cpu')
    assert result.exit_code == 1
    assert 'onnxruntime is not installed' in result.output and 'requirements-export.txt' in result.output
