"""Projection of an image into W (StyleGAN2 paper, Sec. 5 and App. D): find the w whose image matches a target.

The method of the paper and of the official projector, whose public hyperparameters are kept here:
  * Start from the mean w, estimated from 10,000 samples of the mapping network (z from RandomState(123));
    w_std is the root-mean-square distance of those samples from the mean.
  * Each step synthesizes ws = w + n * w_std * 0.05 * max(0, 1 - t / 0.75)^2 (n ~ N(0, I), t = step / num_steps):
    the added noise explores W early and fades out over the first 75% of the steps.
  * Adam (betas 0.9, 0.999), learning rate 0.1 * ramp(t): a cosine ramp down over the last 25% of the steps and a
    linear ramp up over the first 5%.
  * StyleGAN2's per-layer noise inputs (`noise_const` buffers) are optimised too, starting from N(0, 1) and
    renormalised to zero mean and unit variance after every step; their spatial autocorrelation is penalised at
    every octave down to 8x8 (weight 1e5) so that they cannot carry the image. StyleGAN3 has no noise inputs.
  * Distance: LPIPS-style squared distance of normalised VGG16 features (the official `vgg16.pkl`, images in
    [0, 255] box-downsampled to at most 256 px), or, when asked for explicitly, the mean squared pixel error.
Pure functions and one driver (`project`) on tensors; file I/O is in projector.py.
"""

import copy
import math

import numpy as np
import torch

import dnnlib

# Published hyperparameters of the official projector (StyleGAN2 App. D).
DEFAULTS = dnnlib.EasyDict(
    w_avg_samples           = 10000,    # Samples of the mapping network for w_avg and w_std.
    initial_learning_rate   = 0.1,      # Adam learning rate at the top of the ramp.
    lr_rampdown_length      = 0.25,     # Fraction of the steps at the end over which the rate falls to 0 (cosine).
    lr_rampup_length        = 0.05,     # Fraction of the steps at the start over which the rate rises from 0.
    initial_noise_factor    = 0.05,     # Noise added to w, as a fraction of w_std, at step 0.
    noise_ramp_length       = 0.75,     # Fraction of the steps after which no noise is added to w.
    regularize_noise_weight = 1e5,      # Weight of the noise-input autocorrelation penalty.
)

#----------------------------------------------------------------------------
# Schedules and statistics.

def learning_rate(t, initial_learning_rate=0.1, lr_rampdown_length=0.25, lr_rampup_length=0.05):
    """Learning rate at progress t in [0, 1): cosine ramp down over the last `lr_rampdown_length`, linear ramp up
    over the first `lr_rampup_length`."""
    ramp = min(1.0, (1.0 - t) / lr_rampdown_length)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp = ramp * min(1.0, t / lr_rampup_length)
    return initial_learning_rate * ramp


def w_noise_scale(t, w_std, initial_noise_factor=0.05, noise_ramp_length=0.75):
    """Standard deviation of the noise added to w at progress t: quadratic fade to 0 at t = noise_ramp_length."""
    return w_std * initial_noise_factor * max(0.0, 1.0 - t / noise_ramp_length) ** 2


def w_statistics(G, num_samples=10000, label=None, device='cpu', batch_size=1000):
    """(w_avg [1, 1, w_dim] float32 tensor on device, w_std float): mean of `num_samples` ws and their RMS distance
    from it, z ~ RandomState(123) as the official projector draws them. label: [1, c_dim] or None (zeros)."""
    z = np.random.RandomState(123).randn(num_samples, G.z_dim).astype(np.float32)
    label = torch.zeros([1, G.c_dim], device=device) if label is None else label.to(device)
    ws = []
    with torch.no_grad():
        for z_batch in torch.from_numpy(z).split(batch_size):
            ws.append(G.mapping(z_batch.to(device), label.repeat([len(z_batch), 1]))[:, 0].cpu().double().numpy())
    ws = np.concatenate(ws)  # [num_samples, w_dim] float64 (on the host: MPS has no float64)
    w_avg = ws.mean(axis=0, keepdims=True)
    w_std = float(np.sqrt(np.sum((ws - w_avg) ** 2) / num_samples))
    return torch.from_numpy(w_avg[None].astype(np.float32)).to(device), w_std

#----------------------------------------------------------------------------
# Noise inputs.

def noise_buffers(G):
    """{name: buffer} of the synthesis network's constant noise inputs (StyleGAN1/2 `noise_const`; none in SG3)."""
    return {name: buf for name, buf in G.synthesis.named_buffers() if name.endswith('noise_const')}


def noise_regularization(noise_bufs):
    """Sum over noise inputs and octaves (down to 8x8) of the squared horizontal and vertical lag-1
    autocorrelations: 0 for white noise on average, large when the noise holds image structure."""
    reg = 0.0
    for noise in noise_bufs:
        noise = noise[None, None]  # [1, 1, H, W]
        while True:
            reg = reg + (noise * torch.roll(noise, shifts=1, dims=3)).mean() ** 2
            reg = reg + (noise * torch.roll(noise, shifts=1, dims=2)).mean() ** 2
            if noise.shape[2] <= 8:
                break
            noise = torch.nn.functional.avg_pool2d(noise, kernel_size=2)
    return reg


def normalize_noise_(noise_bufs):
    """Make every noise input zero-mean, unit-variance, in place."""
    with torch.no_grad():
        for buf in noise_bufs:
            buf -= buf.mean()
            buf *= buf.square().mean().rsqrt()

#----------------------------------------------------------------------------
# Distances between synthesized images [N, C, H, W] ~[-1, 1] and the target.

def to_vgg_input(img):
    """[N, C, H, W] ~[-1, 1] -> [N, 3, h, w] in [0, 255], box-downsampled to at most 256 px (as the reference)."""
    img = (img + 1) * (255 / 2)
    if img.shape[2] > 256:
        img = torch.nn.functional.interpolate(img, size=(256, 256), mode='area')
    return img.repeat([1, 3, 1, 1]) if img.shape[1] == 1 else img


class PerceptualDistance:
    """Squared distance of normalised VGG16 features (LPIPS-style) to a fixed target; vgg16: the official module."""

    name = 'vgg'

    def __init__(self, vgg16, target):
        self.vgg16 = vgg16
        with torch.no_grad():
            self.target_features = self.vgg16(to_vgg_input(target), resize_images=False, return_lpips=True)

    def __call__(self, img):
        features = self.vgg16(to_vgg_input(img), resize_images=False, return_lpips=True)
        return (self.target_features - features).square().sum()


class PixelDistance:
    """Mean squared error to a fixed target, images in [-1, 1]."""

    name = 'pixel'

    def __init__(self, target):
        self.target = target

    def __call__(self, img):
        return (img - self.target).square().mean()

#----------------------------------------------------------------------------
# The optimisation.

def project(G, distance, num_steps=1000, w_plus=False, seed=0, label=None, device='cpu', progress=None, **hyper):
    """Optimise w (or w+, one w per layer) so that G.synthesis(ws) is close to the target under `distance`.

    G: generator (not modified: a copy's noise inputs are optimised); distance: callable(img [1, C, H, W]) -> scalar
    (e.g. PixelDistance(target)); seed: for the noise added to w and the initial noise inputs; label: [1, c_dim];
    progress: callable(step, dict of floats) or None; hyper: overrides of DEFAULTS.
    Returns EasyDict(ws=[num_steps, num_ws, w_dim] float32 (w after each step, without the exploration noise),
    losses=[num_steps] floats, distances=[num_steps] floats, noise={name: tensor}, G=the copy holding the noise).
    """
    hp = dnnlib.EasyDict(DEFAULTS, **hyper)
    G = copy.deepcopy(G).eval().requires_grad_(False).to(device)
    w_avg, w_std = w_statistics(G, hp.w_avg_samples, label, device)
    w_opt = (w_avg.repeat([1, G.num_ws, 1]) if w_plus else w_avg).clone().requires_grad_(True)  # [1, 1|num_ws, C]
    gen = torch.Generator(device=device).manual_seed(seed)
    noise_bufs = list(noise_buffers(G).values())
    for buf in noise_bufs:
        buf.copy_(torch.randn(buf.shape, generator=gen, device=device))
        buf.requires_grad_(True)
    optimizer = torch.optim.Adam([w_opt] + noise_bufs, betas=(0.9, 0.999), lr=hp.initial_learning_rate)

    ws_out = torch.zeros([num_steps, G.num_ws, G.w_dim])
    losses, distances = [], []
    for step in range(num_steps):
        t = step / num_steps
        lr = learning_rate(t, hp.initial_learning_rate, hp.lr_rampdown_length, hp.lr_rampup_length)
        for group in optimizer.param_groups:
            group['lr'] = lr
        noise_scale = w_noise_scale(t, w_std, hp.initial_noise_factor, hp.noise_ramp_length)
        ws = w_opt + torch.randn(w_opt.shape, generator=gen, device=device) * noise_scale
        img = G.synthesis(ws.expand(1, G.num_ws, G.w_dim), noise_mode='const')
        dist = distance(img)
        loss = dist + hp.regularize_noise_weight * noise_regularization(noise_bufs)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        normalize_noise_(noise_bufs)
        ws_out[step] = w_opt.detach()[0].expand(G.num_ws, G.w_dim).cpu()
        losses.append(float(loss.detach()))
        distances.append(float(dist.detach()))
        if progress is not None:
            progress(step, dict(dist=distances[-1], loss=losses[-1], lr=lr))
    for buf in noise_bufs:
        buf.requires_grad_(False)
    noise = {name: buf.detach().cpu() for name, buf in noise_buffers(G).items()}
    return dnnlib.EasyDict(ws=ws_out, losses=losses, distances=distances, noise=noise, G=G)


def psnr_db(a, b):
    """Peak signal-to-noise ratio in dB of two uint8 images (any equal shapes), peak 255."""
    mse = np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2)
    return float('inf') if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))

#----------------------------------------------------------------------------
