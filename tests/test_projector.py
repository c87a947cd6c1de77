"""projector.py, training/projection.py and gen_images.py --projected-w: the published schedules, the noise
penalty, and a projection that recovers an image rendered by the same tiny generator."""

import math
import os

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import gen_images
import projector
from tests.tiny_nets import tiny_generator, write_snapshot
from training import projection


def _u8(img):
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()[0]


def _render_seed(G, seed):
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    with torch.no_grad():
        return G(z, None, noise_mode='const')


def _run(main, *args):
    return CliRunner().invoke(main, [str(a) for a in args])

#----------------------------------------------------------------------------
# The published schedules and the noise penalty, against values worked out by hand.

def test_learning_rate_ramps_up_over_5_percent_and_down_over_the_last_25_percent():
    assert projection.learning_rate(0.0) == 0
    assert projection.learning_rate(0.025) == pytest.approx(0.05)            # halfway up the linear ramp
    assert projection.learning_rate(0.5) == pytest.approx(0.1)               # the plateau
    assert projection.learning_rate(0.875) == pytest.approx(0.05)            # cosine halfway down
    assert projection.learning_rate(0.8125) == pytest.approx(0.1 * (0.5 - 0.5 * math.cos(0.75 * math.pi)))


def test_w_noise_fades_quadratically_to_zero_at_75_percent():
    assert projection.w_noise_scale(0.0, w_std=2.0) == pytest.approx(0.1)
    assert projection.w_noise_scale(0.375, w_std=2.0) == pytest.approx(0.1 * 0.25)
    assert projection.w_noise_scale(0.75, w_std=2.0) == 0 and projection.w_noise_scale(0.9, w_std=2.0) == 0


def test_noise_penalty_sums_squared_lag1_autocorrelations_over_octaves():
    # A constant 16x16 map: autocorrelation 1 horizontally and vertically at 16x16 and at 8x8 -> 4.
    assert float(projection.noise_regularization([torch.ones([16, 16])])) == pytest.approx(4.0)
    white = torch.randn([64, 64], generator=torch.Generator().manual_seed(0))
    assert float(projection.noise_regularization([white])) < 0.01
    bufs = [torch.randn([8, 8]) * 3 + 1]
    projection.normalize_noise_(bufs)
    assert abs(float(bufs[0].mean())) < 1e-6 and float(bufs[0].square().mean()) == pytest.approx(1, abs=1e-5)

#----------------------------------------------------------------------------
# Projection of a target that the network can make.

@pytest.mark.slow  # ~10 s of CPU on an idle machine, ~60 s on a loaded one.
def test_projector_reaches_25_db_at_32px_in_200_steps_and_gen_images_renders_it(tmp_path):
    G = tiny_generator('stylegan2', resolution=32, seed=1)
    with torch.no_grad():  # A random-init G saturates (image std 1.5); a trained one stays mostly inside [-1, 1].
        for name, param in G.named_parameters():
            if 'torgb.weight' in name:
                param.mul_(0.4)
    pkl = write_snapshot(tmp_path / 'net.pkl', G)
    PIL.Image.fromarray(_u8(_render_seed(G, 5))).save(tmp_path / 'target.png')
    result = _run(projector.main, '--network', pkl, '--target', tmp_path / 'target.png', '--num-steps', 200,
                  '--distance', 'pixel', '--save-video', 0, '--seed', 1, '--outdir', tmp_path / 'out',
                  '--device', 'cpu')
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path / 'out')) == ['proj.png', 'projected_w.npz', 'target.png']
    target = np.asarray(PIL.Image.open(tmp_path / 'out' / 'target.png'))
    proj = np.asarray(PIL.Image.open(tmp_path / 'out' / 'proj.png'))
    w_avg, _ = projection.w_statistics(G)
    with torch.no_grad():
        start = _u8(G.synthesis(w_avg.expand(1, G.num_ws, G.w_dim), noise_mode='const'))
    start_psnr, end_psnr = projection.psnr_db(start, target), projection.psnr_db(proj, target)
    print(f'PSNR at w_avg {start_psnr:.2f} dB, after 200 steps {end_psnr:.2f} dB')
    assert end_psnr >= 25 and end_psnr > start_psnr + 10
    with np.load(tmp_path / 'out' / 'projected_w.npz') as npz:
        assert npz['w'].shape == (1, G.num_ws, G.w_dim) and str(npz['distance']) == 'pixel'
        assert any(key.startswith('noise.') for key in npz.files)

    result = _run(gen_images.main, '--network', pkl, '--projected-w', tmp_path / 'out' / 'projected_w.npz',
                  '--outdir', tmp_path / 'again', '--device', 'cpu')
    assert result.exit_code == 0, result.output
    again = np.asarray(PIL.Image.open(tmp_path / 'again' / 'proj00.png'))
    assert np.abs(again.astype(int) - proj.astype(int)).max() <= 1


@pytest.mark.parametrize('family, w_plus', [('stylegan3-t', False), ('stylegan2', True)])
def test_projection_lowers_its_loss(family, w_plus):
    G = tiny_generator(family, resolution=16, seed=2)
    target = _render_seed(G, 9)
    result = projection.project(G, projection.PixelDistance(target), num_steps=40, w_plus=w_plus, seed=0,
                                w_avg_samples=2000)
    assert result.ws.shape == (40, G.num_ws, G.w_dim)
    assert (result.noise == {}) == family.startswith('stylegan3')  # SG3 has no noise inputs to optimise
    assert np.mean(result.distances[-5:]) < 0.2 * np.mean(result.distances[:5])
    assert np.mean(result.losses[-5:]) < 0.2 * np.mean(result.losses[:5])  # distance + noise penalty
    if not w_plus:  # one w broadcast to every layer
        assert torch.equal(result.ws[-1], result.ws[-1, :1].expand(G.num_ws, G.w_dim))
    else:
        assert not torch.equal(result.ws[-1], result.ws[-1, :1].expand(G.num_ws, G.w_dim))


class _FakeVGG16(torch.nn.Module):
    """Stand-in with the official detector's call signature: normalised 4x4-pooled image 'features'."""

    def forward(self, img, resize_images: bool = True, return_lpips: bool = False):
        features = torch.nn.functional.adaptive_avg_pool2d(img / 255, 4).flatten(1)
        return features / features.square().sum(dim=1, keepdim=True).sqrt()


def test_vgg_distance_uses_vgg16_from_detector_dir_and_the_video_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    G = tiny_generator('stylegan2', resolution=16, seed=3)
    pkl = write_snapshot(tmp_path / 'net.pkl', G)
    PIL.Image.fromarray(_u8(_render_seed(G, 1))).save(tmp_path / 'target.png')
    args = ['--network', pkl, '--target', tmp_path / 'target.png', '--num-steps', 4, '--outdir', tmp_path / 'out',
            '--device', 'cpu', '--detector-dir', tmp_path / 'det']
    result = _run(projector.main, *args)
    assert result.exit_code == 1 and 'vgg16.pkl' in result.output and '--distance=pixel' in result.output
    assert not os.path.exists(tmp_path / 'out')

    os.makedirs(tmp_path / 'det')
    torch.jit.save(torch.jit.script(_FakeVGG16()), str(tmp_path / 'det' / 'vgg16.pkl'))
    result = _run(projector.main, *args)
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / 'out' / 'projected_w.npz') as npz:
        assert str(npz['distance']) == 'vgg'
    video = [name for name in os.listdir(tmp_path / 'out') if name.startswith('proj_frames') or name == 'proj.mp4']
    assert video, os.listdir(tmp_path / 'out')
    if video == ['proj_frames']:
        assert len(os.listdir(tmp_path / 'out' / 'proj_frames')) == 4
    else:
        assert os.path.getsize(tmp_path / 'out' / 'proj.mp4') > 0


def test_bad_target_and_mismatched_projected_w_are_clear_errors(tmp_path):
    G = tiny_generator('stylegan2', resolution=16)
    pkl = write_snapshot(tmp_path / 'net.pkl', G)
    (tmp_path / 'notimage.png').write_bytes(b'hello')
    result = _run(projector.main, '--network', pkl, '--target', tmp_path / 'notimage.png', '--distance', 'pixel',
                  '--outdir', tmp_path / 'out', '--device', 'cpu')
    assert result.exit_code == 2 and '--target' in result.output and 'notimage.png' in result.output
    np.savez(tmp_path / 'w.npz', w=np.zeros([1, G.num_ws + 1, G.w_dim], dtype=np.float32))
    result = _run(gen_images.main, '--network', pkl, '--projected-w', tmp_path / 'w.npz', '--outdir', tmp_path / 'o',
                  '--device', 'cpu')
    assert result.exit_code == 2 and '--projected-w' in result.output and f'[N >= 1, {G.num_ws}' in result.output
    result = _run(gen_images.main, '--network', pkl, '--outdir', tmp_path / 'o', '--device', 'cpu')
    assert result.exit_code == 2 and '--seeds' in result.output
