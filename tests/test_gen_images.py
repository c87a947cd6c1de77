"""gen_images.py: one PNG per seed, equal to G applied to numpy RandomState(seed) latents."""

import os

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import gen_images
from torch_utils import safe_pickle
from training import accel, networks_stylegan2, networks_stylegan3

TINY = dict(z_dim=16, w_dim=16, img_resolution=16, img_channels=3, channel_base=128, channel_max=16)


def _write_snapshot(path, G):
    safe_pickle.save_network_pkl(dict(G=G, D=None, G_ema=G, augment_pipe=None, training_set_kwargs=None), str(path))
    return str(path)


@pytest.fixture(scope='module')
def sg2_pkl(tmp_path_factory):
    torch.manual_seed(1)
    G = networks_stylegan2.Generator(c_dim=0, mapping_kwargs=dict(num_layers=2), **TINY).eval()
    return _write_snapshot(tmp_path_factory.mktemp('sg2') / 'net.pkl', G), G


def _run(*args):
    return CliRunner().invoke(gen_images.main, [str(a) for a in args], catch_exceptions=False)


def _expected_image(G, seed, **kwargs):
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    with torch.no_grad():
        img = G(z, torch.zeros([1, G.c_dim]), **kwargs)
    return (img[0].permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()


def test_writes_one_png_per_seed_equal_to_G_of_the_seed(sg2_pkl, tmp_path):
    pkl, G = sg2_pkl
    result = _run('--network', pkl, '--seeds', '0,3-4', '--trunc', '0.7', '--outdir', tmp_path, '--device', 'cpu')
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path)) == ['seed0000.png', 'seed0003.png', 'seed0004.png']
    for seed in [0, 3, 4]:
        written = np.asarray(PIL.Image.open(tmp_path / f'seed{seed:04d}.png'))
        assert written.shape == (16, 16, 3) and written.dtype == np.uint8
        expected = _expected_image(G, seed, truncation_psi=0.7, noise_mode='const')
        assert np.abs(written.astype(int) - expected.astype(int)).max() <= 1


def test_different_seeds_give_different_images(sg2_pkl, tmp_path):
    pkl, _G = sg2_pkl
    _run('--network', pkl, '--seeds', '1-2', '--outdir', tmp_path, '--device', 'cpu')
    first, second = [np.asarray(PIL.Image.open(tmp_path / f'seed{s:04d}.png')) for s in (1, 2)]
    assert np.abs(first.astype(int) - second.astype(int)).mean() > 1


def test_translate_on_stylegan2_is_a_clear_error(sg2_pkl, tmp_path):
    pkl, _G = sg2_pkl
    result = CliRunner().invoke(gen_images.main, ['--network', pkl, '--seeds', '0', '--outdir', str(tmp_path),
                                                  '--translate', '0.1,0', '--device', 'cpu'])
    assert result.exit_code != 0
    assert 'StyleGAN3' in result.output


def test_conditional_network_needs_class(tmp_path):
    torch.manual_seed(2)
    G = networks_stylegan2.Generator(c_dim=4, mapping_kwargs=dict(num_layers=2), **TINY).eval()
    pkl = _write_snapshot(tmp_path / 'cond.pkl', G)
    result = CliRunner().invoke(gen_images.main, ['--network', pkl, '--seeds', '0', '--outdir', str(tmp_path / 'o'),
                                                  '--device', 'cpu'])
    assert result.exit_code != 0 and '--class=0..3' in result.output
    result = _run('--network', pkl, '--seeds', '0', '--class', '2', '--outdir', tmp_path / 'o', '--device', 'cpu')
    assert result.exit_code == 0
    written = np.asarray(PIL.Image.open(tmp_path / 'o' / 'seed0000.png'))
    z = torch.from_numpy(np.random.RandomState(0).randn(1, G.z_dim)).float()
    with torch.no_grad():
        img = G(z, torch.nn.functional.one_hot(torch.tensor([2]), 4).float(), noise_mode='const')
    expected = (img[0].permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()
    assert np.abs(written.astype(int) - expected.astype(int)).max() <= 1


def test_missing_or_corrupt_network_is_a_clear_error(tmp_path):
    bad = tmp_path / 'bad.pkl'
    bad.write_bytes(b'not a pickle at all')
    for network in [str(tmp_path / 'missing.pkl'), str(bad)]:
        result = CliRunner().invoke(gen_images.main, ['--network', network, '--seeds', '0', '--outdir',
                                                      str(tmp_path / 'o'), '--device', 'cpu'])
        assert result.exit_code == 1, result.output
        assert f'Error: --network={network}: ' in result.output and 'Traceback' not in result.output


def test_stylegan3_translate_and_rotate_move_the_image(tmp_path):
    torch.manual_seed(3)
    G = networks_stylegan3.Generator(c_dim=0, mapping_kwargs=dict(num_layers=2), z_dim=16, w_dim=16,
                                     img_resolution=16, img_channels=3, channel_base=256, channel_max=16).eval()
    pkl = _write_snapshot(tmp_path / 'sg3.pkl', G)
    outputs = {}
    for name, extra in [('plain', []), ('moved', ['--translate', '0.25,0', '--rotate', '30'])]:
        _run('--network', pkl, '--seeds', '5', '--outdir', tmp_path / name, '--device', 'cpu', *extra)
        outputs[name] = np.asarray(PIL.Image.open(tmp_path / name / 'seed0005.png')).astype(int)
    expected = _expected_image(G, 5)  # The fresh network has the identity transform.
    assert np.abs(outputs['plain'] - expected.astype(int)).max() <= 1
    gen_images.set_output_transform(G, (0.25, 0), 30)
    expected_moved = _expected_image(G, 5)
    assert np.abs(outputs['moved'] - expected_moved.astype(int)).max() <= 1
    # A random-init SG3 image is low-contrast (output_scale 0.25), so compare against its own spread.
    assert np.abs(outputs['plain'] - outputs['moved']).mean() > 0.3 * outputs['plain'].std()


def test_stylegan1_snapshot_renders_in_a_fresh_process(tmp_path):
    # A fresh interpreter has not imported networks_stylegan1: the safe loader must find it by family.
    import subprocess
    import sys
    from training import networks_stylegan1
    torch.manual_seed(4)
    G = networks_stylegan1.Generator(c_dim=0, mapping_kwargs=dict(num_layers=2), **TINY).eval()
    pkl = _write_snapshot(tmp_path / 'sg1.pkl', G)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, os.path.join(root, 'gen_images.py'), '--network', pkl, '--seeds', '7',
                             '--outdir', str(tmp_path / 'o'), '--device', 'cpu'], capture_output=True, text=True,
                            cwd=root)
    assert result.returncode == 0, result.stderr
    written = np.asarray(PIL.Image.open(tmp_path / 'o' / 'seed0007.png')).astype(int)
    assert np.abs(written - _expected_image(G, 7).astype(int)).max() <= 1


def _read(path):
    return np.asarray(PIL.Image.open(path)).astype(int)


def test_precision_bf16_renders_close_to_fp32_on_the_cpu(sg2_pkl, tmp_path):
    pkl, _G = sg2_pkl
    for precision in ('fp32', 'bf16'):
        result = _run('--network', pkl, '--seeds', '0-3', '--outdir', tmp_path / precision, '--device', 'cpu',
                      '--precision', precision)
        assert result.exit_code == 0, result.output
    default_dir = tmp_path / 'default'
    assert _run('--network', pkl, '--seeds', '0-3', '--outdir', default_dir, '--device', 'cpu').exit_code == 0
    for seed in range(4):
        name = f'seed{seed:04d}.png'
        fp32, bf16 = _read(tmp_path / 'fp32' / name), _read(tmp_path / 'bf16' / name)
        assert np.array_equal(fp32, _read(default_dir / name))  # float32 is what the CPU runs anyway.
        assert np.abs(fp32 - bf16).mean() < 2  # bfloat16 keeps 8 significant bits: ~1 level of 255 ...
    all_fp32 = np.stack([_read(tmp_path / 'fp32' / f'seed{s:04d}.png') for s in range(4)])
    all_bf16 = np.stack([_read(tmp_path / 'bf16' / f'seed{s:04d}.png') for s in range(4)])
    assert (all_fp32 != all_bf16).any()  # ... but it did run in bfloat16.


def test_set_inference_precision_switches_stylegan3_layers(tmp_path):
    torch.manual_seed(0)
    G = networks_stylegan3.Generator(c_dim=0, mapping_kwargs=dict(num_layers=2), num_fp16_res=2, **TINY).eval()
    z = torch.randn([2, G.z_dim])
    with torch.no_grad():
        reference = G(z, None, noise_mode='const')
        assert accel.set_inference_precision(G, 'bf16', 'cpu') > 0
        bf16 = G(z, None, noise_mode='const')
        accel.set_inference_precision(G, None, 'cpu')
        again = G(z, None, noise_mode='const')
    assert torch.equal(again, reference)  # The mark is removed again.
    assert not torch.equal(bf16, reference)
    assert (bf16 - reference).abs().max() < 0.05 * reference.abs().max()


def test_precision_refusals_name_the_option(sg2_pkl, tmp_path):
    pkl, _G = sg2_pkl
    result = _run('--network', pkl, '--seeds', '0', '--outdir', tmp_path / 'a', '--device', 'cpu',
                  '--precision', 'fp16')
    assert result.exit_code == 2 and '--precision=fp16: float16 layers run on CUDA only' in result.output
    torch.manual_seed(1)
    G = networks_stylegan2.Generator(c_dim=0, mapping_kwargs=dict(num_layers=2), num_fp16_res=0, **TINY).eval()
    fp32_pkl = _write_snapshot(tmp_path / 'fp32.pkl', G)
    result = _run('--network', fp32_pkl, '--seeds', '0', '--outdir', tmp_path / 'b', '--device', 'cpu',
                  '--precision', 'bf16')
    assert result.exit_code == 2 and 'no reduced-precision layers' in result.output
    assert not os.path.exists(tmp_path / 'a') and not os.path.exists(tmp_path / 'b')
