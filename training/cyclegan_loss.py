"""The maths of CycleGAN training: losses, the history pool of fakes and the learning-rate schedule.

Zhu et al. 2017 ("CG"). With G: A -> B (G_AB), F: B -> A (G_BA) and discriminators D_B (judges domain B) and
D_A (judges domain A):
- Adversarial loss, least-squares form (CG Sec. 4, Mao et al. 2017): G minimises E[(D(G(x)) - 1)^2];
  D minimises E[(D(y) - 1)^2] + E[D(G(x))^2], halved "to slow down the rate at which D learns" (CG Sec. 4).
- Cycle consistency (CG Eq. 2): E[|F(G(x)) - x|_1] + E[|G(F(y)) - y|_1], weighted by lambda = 10 (CG Eq. 3).
- Identity mapping (CG Sec. 5.2, App. 7.1): E[|G(y) - y|_1] + E[|F(x) - x|_1], weighted by 0.5 * lambda.
- D is updated with a history of 50 earlier fakes (CG Sec. 4, Shrivastava et al. 2017): `ImagePool`.
- Adam with lr 0.0002, betas (0.5, 0.999); the lr stays constant for the first half of training and then falls
  linearly to zero (CG Sec. 4: 100 + 100 epochs): `linear_decay_factor`.
All L1 terms are means over every pixel and channel (as torch.nn.L1Loss computes them).
"""

import numpy as np
import torch

PAPER_LAMBDA_CYCLE = 10.0       # CG Eq. 3.
PAPER_IDENTITY_RATIO = 0.5      # Identity weight = 0.5 * lambda (CG App. 7.1).
PAPER_POOL_SIZE = 50
PAPER_LR = 0.0002
PAPER_BETAS = (0.5, 0.999)

#----------------------------------------------------------------------------
# Losses: tensors in, scalar tensors out.

def lsgan_generator_loss(fake_logits):
    """E[(D(fake) - 1)^2]. fake_logits: D's output on generated images, any shape -> scalar."""
    return (fake_logits - 1).square().mean()


def lsgan_discriminator_loss(real_logits, fake_logits):
    """0.5 * (E[(D(real) - 1)^2] + E[D(fake)^2]) -> scalar."""
    return 0.5 * ((real_logits - 1).square().mean() + fake_logits.square().mean())


def cycle_loss(real, reconstructed):
    """|F(G(x)) - x|_1 averaged over all entries. real, reconstructed: [N, C, H, W] -> scalar."""
    return (reconstructed - real).abs().mean()


def identity_loss(real_target, mapped_target):
    """|G(y) - y|_1 averaged over all entries, for y already in G's output domain -> scalar."""
    return (mapped_target - real_target).abs().mean()


def generator_objective(adv_ab, adv_ba, cyc_a, cyc_b, idt_a, idt_b, lambda_cycle=PAPER_LAMBDA_CYCLE,
                        identity_ratio=PAPER_IDENTITY_RATIO):
    """Total loss of both generators (CG Eq. 3 plus the identity term): the adversarial terms of both directions
    + lambda * (cycle A + cycle B) + identity_ratio * lambda * (identity A + identity B)."""
    return (adv_ab + adv_ba + lambda_cycle * (cyc_a + cyc_b)
            + identity_ratio * lambda_cycle * (idt_a + idt_b))

#----------------------------------------------------------------------------
# The history pool (CG Sec. 4): D sees a mix of current fakes and fakes of earlier iterations.

class ImagePool:
    """Up to `size` earlier fakes. query(images) stores each image while the pool is filling and returns it; once
    full, each image is, with probability 0.5, swapped for a random stored one (which is returned and replaced by
    the new image), else returned as is. size 0 returns the input unchanged. The pool draws from its own seeded
    numpy generator, and state_dict()/load_state_dict() hold its images and that generator (exact resume)."""

    def __init__(self, size=PAPER_POOL_SIZE, seed=0):
        self.size = int(size)
        self.images = []                                    # Stored fakes, each [C, H, W] on the CPU.
        self.rng = np.random.RandomState(seed % (1 << 32))

    def query(self, images):
        """images: [N, C, H, W] (detached fakes) -> [N, C, H, W] on the same device: the batch D should judge."""
        if self.size == 0:
            return images
        result = []
        for image in images:
            image = image.detach()
            if len(self.images) < self.size:
                self.images.append(image.cpu().clone())
                result.append(image)
            elif self.rng.uniform() < 0.5:
                idx = int(self.rng.randint(self.size))
                result.append(self.images[idx].to(images.device))
                self.images[idx] = image.cpu().clone()
            else:
                result.append(image)
        return torch.stack(result)

    def state_dict(self):
        """Plain data (tensors, ints, lists) for the resume state."""
        name, keys, pos, has_gauss, gauss = self.rng.get_state()
        return dict(size=self.size, images=[image.clone() for image in self.images],
                    rng=(name, [int(k) for k in keys], int(pos), int(has_gauss), float(gauss)))

    def load_state_dict(self, state):
        self.size = int(state['size'])
        self.images = [image.clone() for image in state['images']]
        name, keys, pos, has_gauss, gauss = state['rng']
        self.rng.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))

#----------------------------------------------------------------------------
# Learning rate (CG Sec. 4): constant, then linear decay to zero.

def linear_decay_factor(progress, constant, decay):
    """Multiplier of the base lr at `progress` (any unit: epochs, kimg): 1 until `constant`, then falling linearly
    to 0 at `constant + decay` and staying 0. decay 0 means no decay (always 1). CG: constant = decay = 100 epochs,
    so factor(150) = 0.5."""
    if decay <= 0 or progress <= constant:
        return 1.0
    return max(0.0, 1.0 - (progress - constant) / decay)


def set_learning_rate(optimizer, lr):
    for group in optimizer.param_groups:
        group['lr'] = lr

#----------------------------------------------------------------------------
