"""The classic GAN losses: non-saturating (nsgan), WGAN-GP and hinge, for any G(z, c) and D(img, c) -> [N, 1].

`--loss=nsgan|wgan-gp|hinge` of train.py selects `ClassicGANLoss(loss=...)` (re-exported by training/loss.py).
With D scores s_r = D(x) on reals and s_f = D(G(z)) on fakes, per sample:

  nsgan    Goodfellow et al. 2014, Sec. 3 (the non-saturating G objective; Radford et al. 2016 train DCGAN with it)
           L_D = -log sigmoid(s_r) - log(1 - sigmoid(s_f)) = softplus(-s_r) + softplus(s_f)
           L_G = -log sigmoid(s_f) = softplus(-s_f)
  wgan-gp  Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", Eq. 3 and Alg. 1
           L_D = s_f - s_r + lambda (||grad_xhat D(xhat)||_2 - 1)^2,  xhat = eps x + (1 - eps) G(z), eps ~ U[0, 1]
           L_G = -s_f;  lambda = 10 and n_critic = 5 D steps per G step (Alg. 1 defaults)
  hinge    Lim and Ye 2017; Miyato et al. 2018, "Spectral Normalization for GANs", Eq. 16-17
           L_D = max(0, 1 - s_r) + max(0, 1 + s_f),  L_G = -s_f

An optional R1 penalty (Mescheder et al. 2018, Eq. 9: gamma/2 ||grad_x D(x)||^2 on reals, --gamma) adds to any of
them. Phases are 'Gboth' and 'Dboth' (also accepted as Gmain/Dmain); n_critic is the training loop's business
(G's phase runs every n_critic iterations).
"""

import torch
import torch.nn.functional as F

from torch_utils import training_stats
from torch_utils.ops import conv2d_gradfix

LOSS_NAMES = ('nsgan', 'wgan-gp', 'hinge')
WGAN_GP_LAMBDA = 10     # Gulrajani et al. 2017, Alg. 1.
WGAN_GP_N_CRITIC = 5    # Gulrajani et al. 2017, Alg. 1.

#----------------------------------------------------------------------------
# The maths: scores in, per-sample losses out.

def d_loss_terms(loss, real_scores, fake_scores):
    """(L_D on reals, L_D on fakes), each shaped like the scores, for loss in LOSS_NAMES (module doc)."""
    if loss == 'nsgan':
        return F.softplus(-real_scores), F.softplus(fake_scores)
    if loss == 'wgan-gp':
        return -real_scores, fake_scores
    if loss == 'hinge':
        return F.relu(1 - real_scores), F.relu(1 + fake_scores)
    raise ValueError(f'--loss={loss}: choose one of {", ".join(LOSS_NAMES)}')


def g_loss(loss, fake_scores):
    """L_G per sample, shaped like the scores (module doc)."""
    if loss == 'nsgan':
        return F.softplus(-fake_scores)
    if loss in ('wgan-gp', 'hinge'):
        return -fake_scores
    raise ValueError(f'--loss={loss}: choose one of {", ".join(LOSS_NAMES)}')


def input_gradients(scores, inputs):
    """grad of sum(scores) w.r.t. inputs [N, ...], kept in the graph (for penalties). Same shape as inputs."""
    with conv2d_gradfix.no_weight_gradients():
        grads, = torch.autograd.grad(outputs=[scores.sum()], inputs=[inputs], create_graph=True, only_inputs=True)
    return grads


def interpolate(real_img, fake_img, eps):
    """WGAN-GP's xhat = eps x + (1 - eps) G(z); eps: [N] in [0, 1], images [N, C, H, W]."""
    eps = eps.to(real_img.dtype)[:, None, None, None]
    return eps * real_img + (1 - eps) * fake_img


def gradient_penalty(D, real_img, fake_img, c, eps):
    """Gulrajani et al. 2017, Eq. 3: (||grad_xhat D(xhat, c)||_2 - 1)^2 per sample [N] (without lambda)."""
    xhat = interpolate(real_img.detach(), fake_img.detach(), eps).requires_grad_(True)
    grads = input_gradients(D(xhat, c), xhat)
    return (grads.flatten(1).norm(dim=1) - 1).square()

#----------------------------------------------------------------------------

class ClassicGANLoss:
    """A training.loss.Loss for nsgan / wgan-gp / hinge (module doc); the same accumulate_gradients() signature."""

    def __init__(self, device, G, D,
        augment_pipe    = None,             # Callable img -> img applied to everything D sees (ADA), or None.
        loss            = 'nsgan',          # One of LOSS_NAMES.
        gp_lambda       = WGAN_GP_LAMBDA,   # Weight of the WGAN-GP gradient penalty (--loss=wgan-gp only).
        r1_gamma        = 0,                # R1 weight gamma on reals (Mescheder et al. 2018); 0 = off.
    ):
        if loss not in LOSS_NAMES:
            raise ValueError(f'--loss={loss}: choose one of {", ".join(LOSS_NAMES)}')
        self.device = device
        self.G = G
        self.D = D
        self.augment_pipe = augment_pipe
        self.loss = loss
        self.gp_lambda = gp_lambda
        self.r1_gamma = r1_gamma

    def run_D(self, img, c, update_emas=False):
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return self.D(img, c, update_emas=update_emas)

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        """Backpropagate `gain` times the G loss (phase Gmain/Gboth) or the D loss (Dmain/Dboth); other phases
        (lazy regularisation) are no-ops. Shapes as training.loss.StyleGAN2Loss.accumulate_gradients."""
        _ = cur_nimg
        if phase in ('Gmain', 'Gboth'):
            fake_scores = self.run_D(self.G(gen_z, gen_c), gen_c)
            training_stats.report('Loss/scores/fake', fake_scores)
            training_stats.report('Loss/signs/fake', fake_scores.sign())
            loss_G = g_loss(self.loss, fake_scores)
            training_stats.report('Loss/G/loss', loss_G)
            loss_G.mean().mul(gain).backward()
        elif phase in ('Dmain', 'Dboth'):
            self._accumulate_D(real_img, real_c, gen_z, gen_c, gain)

    def _accumulate_D(self, real_img, real_c, gen_z, gen_c, gain):
        # G's and D's running statistics (batch norm, spectral-norm power iteration) advance once per D step, here.
        with torch.no_grad():
            fake_img = self.G(gen_z, gen_c, update_emas=True)
        real_img_tmp = real_img.detach().requires_grad_(self.r1_gamma > 0)
        fake_scores = self.run_D(fake_img, gen_c, update_emas=True)
        real_scores = self.run_D(real_img_tmp, real_c)
        for name, scores in [('fake', fake_scores), ('real', real_scores)]:
            training_stats.report(f'Loss/scores/{name}', scores)
            training_stats.report(f'Loss/signs/{name}', scores.sign())
        loss_real, loss_fake = d_loss_terms(self.loss, real_scores, fake_scores)
        loss_D = loss_real + loss_fake
        training_stats.report('Loss/D/loss', loss_D)
        reg = torch.zeros_like(loss_D)
        if self.loss == 'wgan-gp':
            # The penalty is taken on D itself (no augmentation) at points between reals and fakes.
            eps = torch.rand([real_img.shape[0]], device=real_img.device)
            penalty = gradient_penalty(self.D, real_img, fake_img, real_c, eps)
            training_stats.report('Loss/gp_penalty', penalty)
            reg = reg + self.gp_lambda * penalty[:, None]
        if self.r1_gamma > 0:
            penalty = input_gradients(real_scores, real_img_tmp).square().sum([1, 2, 3])
            training_stats.report('Loss/r1_penalty', penalty)
            reg = reg + (self.r1_gamma / 2) * penalty[:, None]
        training_stats.report('Loss/D/reg', reg)
        (loss_D + reg).mean().mul(gain).backward()

#----------------------------------------------------------------------------
