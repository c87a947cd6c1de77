"""StyleGAN2/3 training loss: non-saturating logistic GAN loss with lazy R1 and path-length regularisation.

Papers: Goodfellow et al. 2014 (non-saturating loss), Mescheder et al. 2018 (R1), Karras et al. 2019 "StyleGAN"
(style mixing), Karras et al. 2020 "Analyzing and Improving the Image Quality of StyleGAN" (path-length
regularisation, lazy regularisation, Sec. 3.1-3.2 and App. B), Karras et al. 2021 "Alias-Free GAN" (blurring the
images seen by D at the start of training, Sec. 3.2 / App. C).

`accumulate_gradients()` only calls `.backward()`; the training loop owns optimizers, gradient averaging and steps.
"""

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import training_stats
from torch_utils.ops import conv2d_gradfix
from torch_utils.ops import upfirdn2d

PHASES = ('Gmain', 'Greg', 'Gboth', 'Dmain', 'Dreg', 'Dboth')

#----------------------------------------------------------------------------

class Loss:
    """Interface shared by every loss: add this phase's gradients to the parameters of the phase's network."""

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        raise NotImplementedError()

#----------------------------------------------------------------------------
# Small pure functions for the maths, so that tests can check them against a direct computation.

def gaussian_blur_filter(sigma, device=torch.device('cpu')):
    """1-D blur taps 2^(-(x / sigma)^2) for integer |x| <= floor(3 sigma), normalised to sum 1. sigma: pixels.

    This is the published StyleGAN3 recipe's kernel (a Gaussian of std sigma / sqrt(2 ln 2), about 0.85 sigma), not
    exp(-x^2 / (2 sigma^2)): the -R preset's blur_init_sigma=10 is calibrated for it.
    """
    radius = int(np.floor(sigma * 3))
    taps = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    taps = torch.exp2(-(taps / sigma).square())
    return taps / taps.sum()


def blur_images(img, sigma):
    """Separable blur of img [N, C, H, W] by `gaussian_blur_filter(sigma)`, zero-padded, same size out; identity if
    sigma <= 0."""
    if sigma <= 0:
        return img
    return upfirdn2d.filter2d(img, gaussian_blur_filter(sigma, device=img.device))


def blur_sigma_at(cur_nimg, blur_init_sigma, blur_fade_kimg):
    """StyleGAN3 App. C: D sees images blurred by sigma, fading linearly from blur_init_sigma to 0 over the kimg."""
    if blur_fade_kimg <= 0:
        return 0.0
    return max(1.0 - cur_nimg / (blur_fade_kimg * 1e3), 0.0) * blur_init_sigma


def r1_penalty(real_logits, real_img):
    """R1 (Mescheder 2018, Eq. 9 without gamma/2): ||grad_x D(x)||^2 per sample. Returns [N]."""
    with conv2d_gradfix.no_weight_gradients():
        grads, = torch.autograd.grad(outputs=[real_logits.sum()], inputs=[real_img], create_graph=True,
                                     only_inputs=True)
    return grads.square().sum([1, 2, 3])


def path_lengths(gen_img, gen_ws, pl_noise, no_weight_grad=False):
    """StyleGAN2 Eq. 4: ||J_w^T y|| with y ~ N(0, I) / sqrt(H W), averaged over the ws of each sample. Returns [N].

    gen_img: [N, C, H, W] from gen_ws [N, num_ws, w_dim]; pl_noise: [N, C, H, W] already scaled by 1/sqrt(H W).
    """
    with conv2d_gradfix.no_weight_gradients(no_weight_grad):
        grads, = torch.autograd.grad(outputs=[(gen_img * pl_noise).sum()], inputs=[gen_ws], create_graph=True,
                                     only_inputs=True)
    return grads.square().sum(2).mean(1).sqrt()

#----------------------------------------------------------------------------

class StyleGAN2Loss(Loss):
    """The loss of StyleGAN2 / StyleGAN3 training (official name and keyword arguments)."""

    def __init__(self, device, G, D,
        augment_pipe      = None,   # Callable img -> img applied to everything D sees (ADA), or None.
        r1_gamma          = 10,     # R1 weight gamma; 0 disables R1 (Dreg phases become no-ops).
        style_mixing_prob = 0,      # Probability of mixing two latents at a random crossover layer.
        pl_weight         = 0,      # Path-length regularisation weight; 0 disables it.
        pl_batch_shrink   = 2,      # The PL pass runs on batch // pl_batch_shrink samples (StyleGAN2 App. B).
        pl_decay          = 0.01,   # EMA rate of pl_mean, the running target length `a` of Eq. 4.
        pl_no_weight_grad = False,  # Skip conv weight gradients inside the PL Jacobian (they are not needed).
        blur_init_sigma   = 0,      # StyleGAN3-R: initial std (pixels) of the blur applied to D's inputs.
        blur_fade_kimg    = 0,      # ... fading to zero over this many kimg; 0 disables the blur.
    ):
        super().__init__()
        self.device = device
        self.G = G
        self.D = D
        self.augment_pipe = augment_pipe
        self.r1_gamma = r1_gamma
        self.style_mixing_prob = style_mixing_prob
        self.pl_weight = pl_weight
        self.pl_batch_shrink = pl_batch_shrink
        self.pl_decay = pl_decay
        self.pl_no_weight_grad = pl_no_weight_grad
        self.blur_init_sigma = blur_init_sigma
        self.blur_fade_kimg = blur_fade_kimg
        self.pl_mean = torch.zeros([], device=device)  # Resumable state: see state_dict().

    # State that a resumed run must get back to continue exactly.
    def state_dict(self):
        return {'pl_mean': self.pl_mean.detach().cpu().clone()}

    def load_state_dict(self, state):
        self.pl_mean.copy_(state['pl_mean'].to(self.pl_mean.device))

    def run_G(self, z, c, update_emas=False):
        """z: [N, z_dim], c: [N, c_dim] -> (img [N, C, H, W], ws [N, num_ws, w_dim])."""
        ws = self.G.mapping(z, c, update_emas=update_emas)
        if self.style_mixing_prob > 0:
            ws = self._mix_styles(ws, z, c)
        img = self.G.synthesis(ws, update_emas=update_emas)
        return img, ws

    def _mix_styles(self, ws, z, c):
        """StyleGAN Sec. 3.1: with probability p, the ws from a random crossover layer on come from a second z."""
        num_ws = ws.shape[1]
        if num_ws < 2:
            return ws
        with torch.autograd.profiler.record_function('style_mixing'):
            cutoff = torch.empty([], dtype=torch.int64, device=ws.device).random_(1, num_ws)
            cutoff = torch.where(torch.rand([], device=ws.device) < self.style_mixing_prob, cutoff,
                                 torch.full_like(cutoff, num_ws))
            ws_mix = self.G.mapping(torch.randn_like(z), c, update_emas=False)
            layer_idx = torch.arange(num_ws, device=ws.device)[None, :, None]
            return torch.where(layer_idx < cutoff, ws, ws_mix)

    def run_D(self, img, c, blur_sigma=0, update_emas=False):
        """img: [N, C, H, W] -> logits [N, 1], after the StyleGAN3 blur and the augment pipe."""
        img = blur_images(img, blur_sigma)
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return self.D(img, c, update_emas=update_emas)

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        """Backpropagate the loss terms of `phase` (one of PHASES) multiplied by `gain`.

        real_img: [N, C, H, W] float in [-1, 1]; real_c, gen_c: [N, c_dim]; gen_z: [N, z_dim];
        gain: the lazy-regularisation interval for reg phases (StyleGAN2 App. B), else 1; cur_nimg: images shown.
        """
        assert phase in PHASES, phase
        if self.pl_weight == 0:
            phase = {'Greg': 'none', 'Gboth': 'Gmain'}.get(phase, phase)
        if self.r1_gamma == 0:
            phase = {'Dreg': 'none', 'Dboth': 'Dmain'}.get(phase, phase)
        blur_sigma = blur_sigma_at(cur_nimg, self.blur_init_sigma, self.blur_fade_kimg)
        if phase in ('Gmain', 'Gboth'):
            self._accumulate_G_main(gen_z, gen_c, gain, blur_sigma)
        if phase in ('Greg', 'Gboth'):
            self._accumulate_G_pl(gen_z, gen_c, gain)
        loss_Dgen = 0
        if phase in ('Dmain', 'Dboth'):
            loss_Dgen = self._accumulate_D_fake(gen_z, gen_c, gain, blur_sigma)
        if phase in ('Dmain', 'Dreg', 'Dboth'):
            self._accumulate_D_real(phase, real_img, real_c, gain, blur_sigma, loss_Dgen)

    def _accumulate_G_main(self, gen_z, gen_c, gain, blur_sigma):
        # Non-saturating G loss: -log sigmoid(D(G(z))) = softplus(-D(G(z))).
        with torch.autograd.profiler.record_function('Gmain_forward'):
            gen_img, _gen_ws = self.run_G(gen_z, gen_c)
            gen_logits = self.run_D(gen_img, gen_c, blur_sigma=blur_sigma)
            training_stats.report('Loss/scores/fake', gen_logits)
            training_stats.report('Loss/signs/fake', gen_logits.sign())
            loss_Gmain = F.softplus(-gen_logits)
            training_stats.report('Loss/G/loss', loss_Gmain)
        with torch.autograd.profiler.record_function('Gmain_backward'):
            loss_Gmain.mean().mul(gain).backward()

    def _accumulate_G_pl(self, gen_z, gen_c, gain):
        # StyleGAN2 Eq. 4: E[(||J_w^T y|| - a)^2], a = running mean of the lengths, on a shrunk batch.
        with torch.autograd.profiler.record_function('Gpl_forward'):
            batch_size = max(gen_z.shape[0] // self.pl_batch_shrink, 1)
            gen_img, gen_ws = self.run_G(gen_z[:batch_size], gen_c[:batch_size])
            pl_noise = torch.randn_like(gen_img) / np.sqrt(gen_img.shape[2] * gen_img.shape[3])
            lengths = path_lengths(gen_img, gen_ws, pl_noise, no_weight_grad=self.pl_no_weight_grad)
            pl_mean = self.pl_mean.lerp(lengths.mean(), self.pl_decay)
            self.pl_mean.copy_(pl_mean.detach())
            pl_penalty = (lengths - pl_mean).square()
            training_stats.report('Loss/pl_penalty', pl_penalty)
            loss_Gpl = pl_penalty * self.pl_weight
            training_stats.report('Loss/G/reg', loss_Gpl)
        with torch.autograd.profiler.record_function('Gpl_backward'):
            loss_Gpl.mean().mul(gain).backward()

    def _accumulate_D_fake(self, gen_z, gen_c, gain, blur_sigma):
        # D loss on fakes: -log(1 - sigmoid(D(G(z)))) = softplus(D(G(z))). G's EMAs (w_avg, magnitude_ema) update here.
        with torch.autograd.profiler.record_function('Dgen_forward'):
            gen_img, _gen_ws = self.run_G(gen_z, gen_c, update_emas=True)
            gen_logits = self.run_D(gen_img, gen_c, blur_sigma=blur_sigma, update_emas=True)
            training_stats.report('Loss/scores/fake', gen_logits)
            training_stats.report('Loss/signs/fake', gen_logits.sign())
            loss_Dgen = F.softplus(gen_logits)
        with torch.autograd.profiler.record_function('Dgen_backward'):
            loss_Dgen.mean().mul(gain).backward()
        return loss_Dgen.detach()

    def _accumulate_D_real(self, phase, real_img, real_c, gain, blur_sigma, loss_Dgen):
        # D loss on reals: -log sigmoid(D(x)) = softplus(-D(x)), plus R1 = gamma/2 ||grad_x D(x)||^2 when regularising.
        name = {'Dmain': 'Dreal', 'Dreg': 'Dr1', 'Dboth': 'Dreal_Dr1'}[phase]
        with torch.autograd.profiler.record_function(name + '_forward'):
            real_img_tmp = real_img.detach().requires_grad_(phase in ('Dreg', 'Dboth'))
            real_logits = self.run_D(real_img_tmp, real_c, blur_sigma=blur_sigma)
            training_stats.report('Loss/scores/real', real_logits)
            training_stats.report('Loss/signs/real', real_logits.sign())
            loss_Dreal = 0
            if phase in ('Dmain', 'Dboth'):
                loss_Dreal = F.softplus(-real_logits)
                training_stats.report('Loss/D/loss', loss_Dgen + loss_Dreal)
            loss_Dr1 = 0
            if phase in ('Dreg', 'Dboth'):
                penalty = r1_penalty(real_logits, real_img_tmp)
                loss_Dr1 = penalty * (self.r1_gamma / 2)
                training_stats.report('Loss/r1_penalty', penalty)
                training_stats.report('Loss/D/reg', loss_Dr1)
        with torch.autograd.profiler.record_function(name + '_backward'):
            (loss_Dreal + loss_Dr1).mean().mul(gain).backward()

#----------------------------------------------------------------------------
# The classic losses (--loss=nsgan|wgan-gp|hinge for --cfg=dcgan) live in their own module; re-exported here.

from training.loss_classic import ClassicGANLoss  # noqa: E402,F401
