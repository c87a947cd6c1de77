"""StyleGAN2Loss: each phase's gradients and reported statistics against direct (mostly closed-form)
computations on tiny linear networks, plus the real StyleGAN2 networks end to end."""

import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F

from torch_utils import training_stats
from training import loss as loss_module
from training.loss import StyleGAN2Loss

Z_DIM, NUM_WS, RES = 4, 3, 4

#----------------------------------------------------------------------------
# Tiny networks with the official call signatures; they record the update_emas flag of every call.

class TinyMapping(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(Z_DIM, Z_DIM)
        self.calls = []

    def forward(self, z, c, update_emas=False):
        self.calls.append(update_emas)
        return torch.tanh(self.fc(z)).unsqueeze(1).repeat(1, NUM_WS, 1)


class TinySynthesis(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(NUM_WS * Z_DIM, 3 * RES * RES)  # Linear: the PL Jacobian is fc.weight.
        self.calls = []

    def forward(self, ws, update_emas=False):
        self.calls.append(update_emas)
        return self.fc(ws.flatten(1)).reshape(-1, 3, RES, RES)


class TinyG(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.z_dim, self.c_dim, self.num_ws = Z_DIM, 0, NUM_WS
        self.mapping = TinyMapping()
        self.synthesis = TinySynthesis()


class TinyD(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3 * RES * RES, 1)  # Linear: grad_x D(x) = fc.weight for every x.
        self.calls = []
        self.inputs = []

    def forward(self, img, c, update_emas=False):
        self.calls.append(update_emas)
        self.inputs.append(img.detach().clone())
        return self.fc(img.flatten(1))


def make_loss(**kwargs):
    torch.manual_seed(1)
    G, D = TinyG(), TinyD()
    return StyleGAN2Loss(torch.device('cpu'), G, D, **kwargs), G, D


def make_inputs(batch=6):
    torch.manual_seed(2)
    return dict(real_img=torch.randn([batch, 3, RES, RES]), real_c=torch.zeros([batch, 0]),
                gen_z=torch.randn([batch, Z_DIM]), gen_c=torch.zeros([batch, 0]))


def collect():
    collector = training_stats.Collector(regex='Loss/.*', keep_previous=False)
    collector.update()
    return collector

#----------------------------------------------------------------------------
# The GAN loss.

def test_Gmain_gradient_is_nonsaturating_logistic_loss_times_gain():
    loss, G, D = make_loss()
    inputs = make_inputs()
    loss.accumulate_gradients('Gmain', **inputs, gain=3, cur_nimg=0)
    fake = G.synthesis.fc(G.mapping(inputs['gen_z'], None).flatten(1))
    expected = -torch.log(torch.sigmoid(D.fc(fake))).mean() * 3
    weight_grad, = torch.autograd.grad(expected, [G.synthesis.fc.weight])
    torch.testing.assert_close(G.synthesis.fc.weight.grad, weight_grad)


def test_Dmain_gradient_matches_closed_form_logistic_loss():
    loss, G, D = make_loss()
    inputs = make_inputs()
    loss.accumulate_gradients('Dmain', **inputs, gain=1, cur_nimg=0)
    with torch.no_grad():
        fake = G.synthesis.fc(G.mapping(inputs['gen_z'], None).flatten(1))
        real = inputs['real_img'].flatten(1)
        # d/dw [softplus(w.x_f + b)] = sigmoid(D(x_f)) x_f; d/dw [softplus(-(w.x_r + b))] = -sigmoid(-D(x_r)) x_r.
        expected = (torch.sigmoid(D.fc(fake)) * fake).mean(0) - (torch.sigmoid(-D.fc(real)) * real).mean(0)
    torch.testing.assert_close(D.fc.weight.grad[0], expected)


def test_Dreg_gradient_is_r1_of_a_linear_D_times_interval():
    gamma, interval = 0.5, 16
    loss, _G, D = make_loss(r1_gamma=gamma)
    loss.accumulate_gradients('Dreg', **make_inputs(), gain=interval, cur_nimg=0)
    # R1 = gamma/2 ||w||^2 for every sample, so its gradient is gamma w (times the lazy-regularisation gain).
    torch.testing.assert_close(D.fc.weight.grad, gamma * D.fc.weight.detach() * interval)
    assert D.fc.bias.grad is None or float(D.fc.bias.grad.abs().max()) == 0


def test_D_phases_report_scores_signs_losses_and_r1():
    loss, G, D = make_loss(r1_gamma=2.0)
    inputs = make_inputs()
    collector = collect()
    loss.accumulate_gradients('Dboth', **inputs, gain=1, cur_nimg=0)
    collector.update()
    with torch.no_grad():
        fake_logits = D.fc(G.synthesis.fc(G.mapping(inputs['gen_z'], None).flatten(1)))
        real_logits = D.fc(inputs['real_img'].flatten(1))
    d_loss = F.softplus(fake_logits) + F.softplus(-real_logits)
    assert collector.mean('Loss/D/loss') == pytest.approx(float(d_loss.mean()), rel=1e-6)
    assert collector.mean('Loss/scores/real') == pytest.approx(float(real_logits.mean()), rel=1e-5)
    assert collector.mean('Loss/signs/fake') == pytest.approx(float(fake_logits.sign().mean()))
    assert collector.mean('Loss/r1_penalty') == pytest.approx(float(D.fc.weight.detach().square().sum()), rel=1e-6)
    assert collector.mean('Loss/D/reg') == pytest.approx(float(D.fc.weight.detach().square().sum()), rel=1e-6)
    assert collector.num('Loss/scores/real') == 6


def test_generator_call_of_the_D_phase_updates_emas_and_the_G_phase_does_not():
    loss, G, D = make_loss()
    loss.accumulate_gradients('Gmain', **make_inputs(), gain=1, cur_nimg=0)
    assert G.mapping.calls == [False] and G.synthesis.calls == [False] and D.calls == [False]
    loss, G, D = make_loss()
    loss.accumulate_gradients('Dmain', **make_inputs(), gain=1, cur_nimg=0)
    assert G.mapping.calls == [True] and G.synthesis.calls == [True]
    assert D.calls == [True, False]  # Fakes update D's EMAs (if any), reals do not.


def test_disabled_regularisers_make_reg_phases_no_ops():
    loss, G, D = make_loss(r1_gamma=0, pl_weight=0)
    loss.accumulate_gradients('Dreg', **make_inputs(), gain=16, cur_nimg=0)
    loss.accumulate_gradients('Greg', **make_inputs(), gain=4, cur_nimg=0)
    assert all(p.grad is None for p in list(G.parameters()) + list(D.parameters()))

#----------------------------------------------------------------------------
# Path-length regularisation.

def test_path_length_penalty_matches_closed_form_for_a_linear_synthesis():
    loss, G, _D = make_loss(pl_weight=2, pl_batch_shrink=2, pl_decay=0.01)
    inputs = make_inputs(batch=6)
    collector = collect()
    torch.manual_seed(7)
    loss.accumulate_gradients('Greg', **inputs, gain=4, cur_nimg=0)
    collector.update()
    torch.manual_seed(7)
    noise = torch.randn([3, 3, RES, RES]).numpy() / RES  # The shrunk batch: 6 // 2 samples, y / sqrt(H W).
    A = G.synthesis.fc.weight.detach().numpy()           # [3 * RES * RES, NUM_WS * Z_DIM]
    jt_y = (noise.reshape(3, -1) @ A).reshape(3, NUM_WS, Z_DIM)
    lengths = np.sqrt((jt_y ** 2).sum(2).mean(1))
    pl_mean = 0.01 * lengths.mean()
    assert float(loss.pl_mean) == pytest.approx(pl_mean, rel=1e-5)
    assert collector.mean('Loss/pl_penalty') == pytest.approx(((lengths - pl_mean) ** 2).mean(), rel=1e-4)
    assert collector.mean('Loss/G/reg') == pytest.approx(2 * ((lengths - pl_mean) ** 2).mean(), rel=1e-4)
    assert collector.num('Loss/pl_penalty') == 3


def test_pl_mean_is_resumable_state():
    loss, _G, _D = make_loss(pl_weight=2)
    loss.accumulate_gradients('Greg', **make_inputs(), gain=4, cur_nimg=0)
    state = loss.state_dict()
    fresh, _G, _D = make_loss(pl_weight=2)
    fresh.load_state_dict(state)
    assert float(fresh.pl_mean) == float(loss.pl_mean) > 0

#----------------------------------------------------------------------------
# Style mixing and the StyleGAN3 blur.

def test_style_mixing_swaps_the_ws_after_a_random_cutoff():
    loss, G, _D = make_loss(style_mixing_prob=1)
    z = make_inputs()['gen_z']
    cutoffs = set()
    for seed in range(20):
        torch.manual_seed(seed)
        _img, ws = loss.run_G(z, None)
        own = G.mapping(z, None)
        same = [bool(torch.equal(ws[:, i], own[:, i])) for i in range(NUM_WS)]
        cutoff = same.index(False)
        assert 1 <= cutoff < NUM_WS and not any(same[cutoff:]) and all(same[:cutoff])
        cutoffs.add(cutoff)
    assert cutoffs == set(range(1, NUM_WS))
    loss, G, _D = make_loss(style_mixing_prob=0)
    _img, ws = loss.run_G(z, None)
    assert torch.equal(ws, G.mapping(z, None))


def published_blur_taps(sigma):
    """The StyleGAN3 recipe's D-input blur, written from its formula: 2^-(x/sigma)^2 on |x| <= floor(3 sigma)."""
    x = np.arange(-int(np.floor(3 * sigma)), int(np.floor(3 * sigma)) + 1, dtype=np.float64)
    taps = 2.0 ** (-(x / sigma) ** 2)
    return taps / taps.sum()


@pytest.mark.parametrize('sigma', [0.7, 1.0, 2.5, 10.0])
def test_blur_taps_are_the_published_base_2_kernel(sigma):
    taps = loss_module.gaussian_blur_filter(sigma).numpy()
    np.testing.assert_allclose(taps, published_blur_taps(sigma), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('sigma', [1.0, 2.0])
def test_blur_is_separable_zero_padded_convolution_with_the_published_taps(sigma):
    img = torch.randn([2, 3, 16, 16], generator=torch.Generator().manual_seed(1))
    taps = published_blur_taps(sigma)
    # Rows then columns, zero padding, same size out (the kernel is symmetric, so correlation == convolution).
    expected = scipy.ndimage.convolve1d(img.numpy().astype(np.float64), taps, axis=2, mode='constant')
    expected = scipy.ndimage.convolve1d(expected, taps, axis=3, mode='constant')
    np.testing.assert_allclose(loss_module.blur_images(img, sigma).numpy(), expected, atol=1e-5)


def test_blur_sigma_fades_linearly_to_zero_over_blur_fade_kimg():
    assert loss_module.blur_sigma_at(0, 10, 100) == 10
    assert loss_module.blur_sigma_at(50_000, 10, 100) == pytest.approx(5)
    assert loss_module.blur_sigma_at(200_000, 10, 100) == 0
    assert loss_module.blur_sigma_at(0, 10, 0) == 0


def test_D_sees_blurred_reals_and_fakes_until_the_blur_fades():
    loss, _G, D = make_loss(blur_init_sigma=1, blur_fade_kimg=1)
    inputs = make_inputs()
    loss.accumulate_gradients('Dmain', **inputs, gain=1, cur_nimg=0)
    np.testing.assert_allclose(D.inputs[1].numpy(), loss_module.blur_images(inputs['real_img'], 1).numpy(),
                               atol=1e-6)
    D.inputs.clear()
    loss.accumulate_gradients('Dmain', **inputs, gain=1, cur_nimg=1000)
    assert torch.equal(D.inputs[1], inputs['real_img'])

#----------------------------------------------------------------------------
# The real StyleGAN2 networks.

def test_every_phase_runs_on_tiny_stylegan2_networks_with_finite_gradients():
    from training.networks_stylegan2 import Discriminator, Generator
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3, mapping_kwargs=dict(num_layers=2),
                  channel_base=64, channel_max=8, num_fp16_res=0, conv_clamp=None,
                  fused_modconv_default='inference_only').train()
    D = Discriminator(c_dim=0, img_resolution=8, img_channels=3, channel_base=64, channel_max=8, num_fp16_res=0,
                      conv_clamp=None, epilogue_kwargs=dict(mbstd_group_size=2)).train()
    loss = StyleGAN2Loss(torch.device('cpu'), G, D, r1_gamma=1, style_mixing_prob=0.9, pl_weight=2,
                         pl_no_weight_grad=True)
    inputs = dict(real_img=torch.randn([4, 3, 8, 8]), real_c=torch.zeros([4, 0]), gen_z=torch.randn([4, 8]),
                  gen_c=torch.zeros([4, 0]))
    for phase, module in [('Gmain', G), ('Greg', G), ('Dmain', D), ('Dreg', D)]:
        module.requires_grad_(True)
        loss.accumulate_gradients(phase, **inputs, gain=1, cur_nimg=0)
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), phase
        module.zero_grad(set_to_none=True)
        module.requires_grad_(False)
    assert float(loss.pl_mean) > 0
