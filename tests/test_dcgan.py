"""DCGAN (--cfg=dcgan): network shapes, spectral norm, the three losses against their formulas, snapshots through the
safe loader, and tiny CPU runs of each loss that learn and render through gen_images.py and gen_video.py."""

import io
import os
import pickle
import re

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import gen_images
import gen_video
import style_mixing
import train
from torch_utils import safe_pickle
from training import loss as loss_module
from training import loss_classic
from training import networks_dcgan
from training import training_loop as tl
from training.network_families import FAMILIES

import training_helpers as th

TINY = dict(channel_base=256, channel_max=32)


def _nets(img_channels=3, resolution=16, c_dim=0, **D_kwargs):
    torch.manual_seed(0)
    G = networks_dcgan.Generator(z_dim=20, c_dim=c_dim, img_resolution=resolution, img_channels=img_channels, **TINY)
    D = networks_dcgan.Discriminator(c_dim=c_dim, img_resolution=resolution, img_channels=img_channels, **TINY,
                                     **D_kwargs)
    return G, D

#----------------------------------------------------------------------------
# Networks.

@pytest.mark.parametrize('img_channels', [1, 3])
@pytest.mark.parametrize('resolution', [16, 32])
def test_shapes_and_forward_backward(img_channels, resolution):
    G, D = _nets(img_channels, resolution)
    z = torch.randn([4, G.z_dim], requires_grad=True)
    img = G(z, torch.zeros([4, 0]), truncation_psi=0.5, noise_mode='const')
    assert img.shape == (4, img_channels, resolution, resolution) and img.abs().max() <= 1
    logits = D(img, torch.zeros([4, 0]))
    assert logits.shape == (4, 1)
    logits.sum().backward()
    assert z.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters())
    assert all(p.grad is not None for p in D.parameters())


def test_widths_follow_channel_base_and_the_paper_layout():
    G = networks_dcgan.Generator(z_dim=100, c_dim=0, img_resolution=64, img_channels=3, channel_base=4096,
                                 channel_max=1024)
    D = networks_dcgan.Discriminator(c_dim=0, img_resolution=64, img_channels=3, channel_base=4096, channel_max=1024)
    assert [getattr(G.synthesis, f'b{r}').out_channels for r in [4, 8, 16, 32, 64]] == [1024, 512, 256, 128, 3]
    assert [getattr(D, f'b{r}').out_channels for r in [64, 32, 16, 8]] == [128, 256, 512, 1024]
    assert D.b64.norm is None and isinstance(D.b32.norm, networks_dcgan.BatchNorm)  # No BN on D's input layer.
    assert G.synthesis.b4.weight.shape == (100, 1024, 4, 4)


def test_batch_norm_statistics_are_per_process_emas_that_the_ddp_check_skips():
    G, D = _nets()
    G(torch.randn([4, 20]), torch.zeros([4, 0]))
    assert G.synthesis.b4.norm.mean_ema.abs().sum() == 0  # A plain pass (e.g. a module summary) leaves them alone.
    G(torch.randn([4, 20]), torch.zeros([4, 0]), update_emas=True)
    assert G.synthesis.b4.norm.mean_ema.abs().sum() > 0
    names = [f'Generator.{name}' for name, _ in G.named_buffers()] + \
        [f'Discriminator.{name}' for name, _ in D.named_buffers()]
    assert len(names) == 2 * 2 + 2 and all(re.fullmatch(tl._EMA_BUFFER_REGEX, name) for name in names)


def test_truncation_scales_z_and_mapping_concatenates_the_label():
    G, _D = _nets(c_dim=3)
    z, c = torch.randn([2, 20]), torch.eye(3)[:2]
    ws = G.mapping(z, c, truncation_psi=0.5)
    assert ws.shape == (2, 1, 23) and G.num_ws == 1 and G.w_dim == 23
    assert torch.equal(ws[:, 0, :20], z * 0.5) and torch.equal(ws[:, 0, 20:], c)


def test_projection_discriminator_depends_on_the_label():
    _G, D = _nets(c_dim=3)
    img = torch.randn([2, 3, 16, 16])
    torch.nn.init.normal_(D.embed.weight)
    a, b = D(img, torch.eye(3)[[0, 0]]), D(img, torch.eye(3)[[1, 1]])
    features = img
    for res in D.block_resolutions:
        features = getattr(D, f'b{res}')(features)
    expected = (torch.eye(3)[[1, 1]] @ D.embed.weight.t() - torch.eye(3)[[0, 0]] @ D.embed.weight.t())
    expected = (expected * features.flatten(1)).sum(1, keepdim=True) / np.sqrt(D.features)
    assert torch.allclose(b - a, expected, atol=1e-5)


def test_spectral_norm_gives_unit_largest_singular_value_after_power_iterations():
    _G, D = _nets(spectral_norm=True, norm='none')
    img = torch.randn([4, 3, 16, 16])
    for _ in range(30):  # One power iteration per D step (the pass with update_emas=True).
        D(img, torch.zeros([4, 0]), update_emas=True)
    D.eval()  # Read the weights without a further iteration.
    modules = [module for module in D.modules() if isinstance(module, networks_dcgan.Weight)]
    assert len(modules) == len(D.block_resolutions) + 1
    largest = lambda w: np.linalg.svd(w.detach().flatten(1).numpy().astype(np.float64), compute_uv=False)[0]  # noqa
    for module in modules:
        assert abs(largest(module.weight) - 1) > 0.2  # Far from 1 unnormalised.
        assert abs(largest(module()) - 1) < 0.01


def test_snapshot_round_trip_through_the_safe_loader_is_exact():
    G, D = _nets(img_channels=1, c_dim=2, spectral_norm=True, norm='layer')
    D(torch.randn([4, 1, 16, 16]), torch.eye(2)[[0, 1, 0, 1]], update_emas=True)  # Move u, v from their init.
    G.eval(), D.eval()
    buffer = io.BytesIO()
    pickle.dump(dict(G=G, D=D, G_ema=G, augment_pipe=None, training_set_kwargs=None), buffer)
    data = safe_pickle.load_network_pkl(io.BytesIO(buffer.getvalue()), families=FAMILIES)
    assert safe_pickle.detect_family(networks_dcgan.Weight._orig_module_src) == 'dcgan'
    z, c, img = torch.randn([3, 20]), torch.eye(2)[[0, 1, 1]], torch.randn([3, 1, 16, 16])
    assert torch.equal(data['G_ema'](z, c), G(z, c))
    assert torch.equal(data['D'](img, c), D(img, c))
    loaded = dict(data['D'].named_buffers())
    for name, buf in D.named_buffers():
        assert torch.equal(loaded[name], buf), name

#----------------------------------------------------------------------------
# Losses.

def test_nsgan_and_hinge_losses_match_their_formulas():
    real = torch.tensor([[-2.0], [0.3], [1.5]])
    fake = torch.tensor([[0.7], [-1.2], [2.5]])
    sig = lambda s: 1 / (1 + np.exp(-s.numpy().astype(np.float64)))  # noqa: E731
    d_real, d_fake = loss_classic.d_loss_terms('nsgan', real, fake)
    np.testing.assert_allclose(d_real.numpy(), -np.log(sig(real)), rtol=1e-5)
    np.testing.assert_allclose(d_fake.numpy(), -np.log(1 - sig(fake)), rtol=1e-5)
    np.testing.assert_allclose(loss_classic.g_loss('nsgan', fake).numpy(), -np.log(sig(fake)), rtol=1e-5)
    d_real, d_fake = loss_classic.d_loss_terms('hinge', real, fake)
    np.testing.assert_allclose(d_real.numpy(), [[3.0], [0.7], [0.0]], rtol=1e-6)
    np.testing.assert_allclose(d_fake.numpy(), [[1.7], [0.0], [3.5]], rtol=1e-6)
    np.testing.assert_allclose(loss_classic.g_loss('hinge', fake).numpy(), -fake.numpy())
    d_real, d_fake = loss_classic.d_loss_terms('wgan-gp', real, fake)
    np.testing.assert_allclose((d_real + d_fake).numpy(), (fake - real).numpy())


def test_wgan_gp_penalty_matches_a_direct_computation_on_a_hand_built_critic():
    # D(x) = sum(a * x^2) + sum(b * x) per sample: grad_x D = 2 a x + b, known in closed form.
    torch.manual_seed(3)
    a, b = torch.randn([2, 4, 4]), torch.randn([2, 4, 4])
    critic = lambda x, c: (a * x.square() + b * x).sum([1, 2, 3])[:, None]  # noqa: E731
    real, fake, eps = torch.randn([5, 2, 4, 4]), torch.randn([5, 2, 4, 4]), torch.rand([5])
    penalty = loss_classic.gradient_penalty(critic, real, fake, None, eps)
    e = eps.numpy().astype(np.float64)[:, None, None, None]
    xhat = e * real.numpy() + (1 - e) * fake.numpy()
    grad = 2 * a.numpy() * xhat + b.numpy()
    expected = (np.sqrt((grad ** 2).reshape(5, -1).sum(1)) - 1) ** 2
    np.testing.assert_allclose(penalty.detach().numpy(), expected, rtol=1e-4)


def test_wgan_gp_D_loss_adds_lambda_times_the_penalty():
    G, D = _nets(norm='layer')
    loss = loss_module.ClassicGANLoss(device=torch.device('cpu'), G=G, D=D, loss='wgan-gp')
    real, z, c = torch.randn([4, 3, 16, 16]), torch.randn([4, 20]), torch.zeros([4, 0])
    D.requires_grad_(True)
    torch.manual_seed(5)
    loss.accumulate_gradients('Dboth', real, c, z, c, gain=1, cur_nimg=0)
    grads = [p.grad.clone() for p in D.parameters()]
    D.zero_grad(set_to_none=True)
    torch.manual_seed(5)
    eps = torch.rand([4])
    with torch.no_grad():
        fake = G(z, c)
    direct = (D(fake, c) - D(real, c)).mean() + 10 * loss_classic.gradient_penalty(D, real, fake, c, eps).mean()
    direct.backward()
    for grad, param in zip(grads, D.parameters()):
        assert torch.allclose(grad, param.grad, atol=1e-5)

#----------------------------------------------------------------------------
# train.py presets.

def _dcgan_options(loss='nsgan', **opts):
    info = dict(name='shapes16', resolution=16, size=24, has_labels=False)
    return train.build_training_options(info, cfg='dcgan', data='x', gpus=1, batch=8, gamma=0, loss=loss, **opts)


def test_presets_follow_the_papers():
    nsgan, wgan, sn = _dcgan_options('nsgan'), _dcgan_options('wgan-gp'), _dcgan_options('hinge', sn=True)
    assert nsgan['G_opt_kwargs']['lr'] == 0.0002 and nsgan['G_opt_kwargs']['betas'] == [0.5, 0.999]
    assert nsgan['D_kwargs']['norm'] == 'batch' and nsgan.get('n_critic', 1) == 1 and nsgan['ema_kimg'] == 0
    assert wgan['n_critic'] == 5 and wgan['D_kwargs']['norm'] == 'layer' and wgan['D_opt_kwargs']['lr'] == 0.0001
    assert wgan['D_opt_kwargs']['betas'] == [0.0, 0.9] and wgan['loss_kwargs']['loss'] == 'wgan-gp'
    assert sn['D_kwargs'] == dict(sn['D_kwargs'], spectral_norm=True, norm='none')
    ttur = _dcgan_options('hinge', glr=0.0001, dlr=0.0004)
    assert (ttur['G_opt_kwargs']['lr'], ttur['D_opt_kwargs']['lr']) == (0.0001, 0.0004)


def test_loss_and_sn_options_are_refused_for_stylegan_configs():
    info = dict(name='x', resolution=16, size=24, has_labels=False)
    with pytest.raises(train.UsageError, match='--cfg=dcgan'):
        train.build_training_options(info, cfg='stylegan2', data='x', gpus=1, batch=8, gamma=1, loss='hinge')


def test_n_critic_runs_G_every_fifth_iteration_with_gain_one():
    G, D = _nets()
    phases, _opts = tl.build_phases(G, D, dict(class_name='torch.optim.Adam', lr=1e-4, betas=[0, 0.9]),
                                    dict(class_name='torch.optim.Adam', lr=1e-4, betas=[0, 0.9]), None, None,
                                    n_critic=5)
    assert [(p.name, p.interval, p.gain) for p in phases] == [('Gboth', 5, 1), ('Dboth', 1, 1)]

#----------------------------------------------------------------------------
# Tiny runs.

@pytest.fixture(scope='module')
def shapes16(tmp_path_factory):
    return th.write_shapes_folder(tmp_path_factory.mktemp('shapes16'), count=24, resolution=16)


@pytest.mark.parametrize('loss,sn', [('nsgan', False), pytest.param('wgan-gp', False, marks=pytest.mark.slow),
                                     pytest.param('hinge', True, marks=pytest.mark.slow)])
def test_tiny_run_learns_and_renders_with_the_tools(shapes16, tmp_path, loss, sn):
    info = dict(name='shapes16', resolution=16, size=24, has_labels=False)
    options = train.build_training_options(info, cfg='dcgan', data=shapes16, gpus=1, batch=8, gamma=0, cbase=256,
                                           cmax=32, workers=0, device='cpu', metrics=[], aug='noaug', loss=loss,
                                           sn=sn)
    options.pop('run_desc')
    run_dir = tmp_path / 'run'
    options.update(run_dir=str(run_dir), kimg_per_tick=0.08, image_grid_size=[2, 2], total_kimg=0.32,
                   data_loader_kwargs=dict(num_workers=0))
    th.run_quietly(**options)
    stats = th.read_stats(run_dir)
    d_losses = [tick['Loss/D/loss']['mean'] for tick in stats]
    assert len(d_losses) >= 4 and np.ptp(d_losses) > 1e-2 and np.all(np.isfinite(d_losses))
    first = np.asarray(PIL.Image.open(run_dir / 'fakes_init.png')).astype(int)
    last = np.asarray(PIL.Image.open(run_dir / 'fakes000000.png')).astype(int)
    assert first.shape == last.shape and np.abs(first - last).mean() > 1
    pkl = tl.find_latest_snapshot(str(run_dir))
    result = CliRunner().invoke(gen_images.main, ['--network', pkl, '--seeds=0-1', '--outdir', str(tmp_path / 'img'),
                                                  '--device=cpu'], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    G = safe_pickle.load_network_pkl(pkl, families=FAMILIES)['G_ema']
    z = torch.from_numpy(np.random.RandomState(1).randn(1, G.z_dim)).float()
    expected = (G(z, torch.zeros([1, 0]))[0].permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()
    written = np.asarray(PIL.Image.open(tmp_path / 'img' / 'seed0001.png'))
    assert np.abs(written.astype(int) - expected.astype(int)).max() <= 1
    result = CliRunner().invoke(gen_video.main, ['--network', pkl, '--seeds=0-1', '--grid=2x1', '--w-frames=2',
                                                 '--output', str(tmp_path / 'v.mp4'), '--device=cpu'])
    assert result.exit_code == 0, result.output
    assert os.path.getsize(tmp_path / 'v.mp4') > 0
    result = CliRunner().invoke(style_mixing.main, ['--network', pkl, '--rows=1', '--cols=2', '--outdir',
                                                    str(tmp_path / 'mix'), '--device=cpu'])
    assert result.exit_code == 1 and 'no per-layer styles' in result.output  # DCGAN has no styles to mix.
    assert not (tmp_path / 'mix').exists()


def test_wgan_gp_with_spectral_norm_resumes_bit_exactly(shapes16, tmp_path):
    info = dict(name='shapes16', resolution=16, size=24, has_labels=False)
    options = train.build_training_options(info, cfg='dcgan', data=shapes16, gpus=1, batch=8, gamma=0, cbase=128,
                                           cmax=16, workers=0, device='cpu', metrics=[], aug='noaug', loss='wgan-gp',
                                           sn=True)
    options.pop('run_desc')
    options.update(kimg_per_tick=0.032, image_grid_size=[2, 2], total_kimg=0.032 * 3 + 0.008,
                   image_snapshot_ticks=1, network_snapshot_ticks=1, data_loader_kwargs=dict(num_workers=0),
                   num_threads=None)  # A fixed thread count: CPU rounding depends on it.
    th.run_quietly(**dict(options, run_dir=str(tmp_path / 'ref')))
    stop_after_tick_1 = iter([False, True])
    th.run_quietly(**dict(options, run_dir=str(tmp_path / 'first'), abort_fn=lambda: next(stop_after_tick_1)))
    _state, log = th.run_quietly(**dict(options, run_dir=str(tmp_path / 'second'), resume_pkl=str(tmp_path / 'first')))
    assert 'Continuing exactly' in log
    ref, resumed = th.latest_snapshot(tmp_path / 'ref'), th.latest_snapshot(tmp_path / 'second')
    assert ref[tl.RESUME_STATE_KEY]['batch_idx'] == resumed[tl.RESUME_STATE_KEY]['batch_idx'] == 13
    for name in ('G', 'D', 'G_ema'):
        ref_tensors = dict(ref[name].named_parameters()) | dict(ref[name].named_buffers())
        for key, value in list(resumed[name].named_parameters()) + list(resumed[name].named_buffers()):
            assert torch.equal(value, ref_tensors[key]), f'{name}.{key}'
