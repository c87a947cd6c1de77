"""DCGAN generator and discriminator (Radford, Metz and Chintala 2016, "Unsupervised Representation Learning with
Deep Convolutional Generative Adversarial Networks", ICLR), with the options the later papers added to them.

What this module implements, with the papers' names:
- G (Radford Sec. 3 and Fig. 1): z projected to a 4x4 map by a 4x4 transposed convolution, then one stride-2 4x4
  transposed convolution per doubling of the resolution, each followed by batch normalisation and ReLU; the last
  one (to img_channels) has no batch norm and ends in tanh.
- D (Radford Sec. 3): one stride-2 4x4 convolution per halving of the resolution with leaky ReLU (slope 0.2), batch
  normalisation on every layer but the first, and a final 4x4 convolution to one logit.
  `norm='layer'` replaces batch norm by layer normalisation (Gulrajani et al. 2017, "Improved Training of
  Wasserstein GANs", Sec. 4: batch norm breaks the per-sample gradient penalty of WGAN-GP), `norm='none'` drops it.
- `spectral_norm=True` divides every weight of D by its largest singular value, estimated by one power iteration
  per D step (Miyato et al. 2018, "Spectral Normalization for GANs", Eq. 8 and Alg. 1: the pass with
  update_emas=True), kept in plain `sn_u`/`sn_v` buffers (see Weight below).
- Conditional models (c_dim > 0): G takes the label concatenated to z (Mirza and Osindero 2014); D is a projection
  discriminator (Miyato and Koyama 2018, "cGANs with Projection Discriminator", Eq. 3): the logit gains the inner
  product of an embedding of the label with D's last feature map.
- Weights start as N(0, 0.02) (Radford Sec. 4); batch-norm scales as 1, biases as 0.

Widths: the feature maps at resolution r have min(channel_base // r, channel_max) channels in G and D; the paper's
64x64 networks (1024 channels at 4x4, 128 at 32x32) are channel_base=4096, channel_max=1024.

Call conventions are those of DESIGN.md section 3, so the tools (gen_images, gen_video, metrics) work unchanged:
    G(z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False, noise_mode=..., force_fp32=...)
    G.mapping(z, c, truncation_psi) -> ws [N, 1, w_dim]: the DCGAN input vector [z, c] (w_dim = z_dim + c_dim);
        truncation scales z towards its mean 0 (the truncation trick in Z), labels are kept.
    G.synthesis(ws) -> img [N, img_channels, img_resolution, img_resolution]
    D(img, c) -> logits [N, 1]
noise_mode and force_fp32 are accepted and ignored (DCGAN has no noise inputs or float16). update_emas=True is what
updates batch-norm running statistics and spectral-norm power iterations, as it updates w_avg in StyleGAN: other
training-mode passes (module summaries, G's own step) leave them alone, so an exact resume stays exact.
This module imports only numpy, torch and torch_utils so that its source (embedded in pickles) runs anywhere.
"""

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import misc
from torch_utils import persistence

INIT_STD = 0.02     # Radford Sec. 4: all weights from N(0, 0.02).
LRELU_SLOPE = 0.2   # Radford Sec. 4: leaky ReLU slope 0.2 in D.


def channels_at(resolution, channel_base, channel_max):
    """Feature maps at `resolution`: min(channel_base // resolution, channel_max), at least 1."""
    return max(min(channel_base // resolution, channel_max), 1)


def _check_resolution(img_resolution):
    if not (img_resolution >= 8 and img_resolution & (img_resolution - 1) == 0):
        raise ValueError(f'DCGAN: img_resolution must be a power of two >= 8 (e.g. 32 or 64), got {img_resolution}')

#----------------------------------------------------------------------------
# A learnable weight, optionally spectrally normalised (Miyato et al. 2018, Eq. 8: W / sigma(W), sigma estimated by
# power iteration on the weight viewed as a [out, in * kh * kw] matrix). The estimate (u, v) lives in two plain
# buffers, so that snapshots hold only our class and tensors and the safe loader restores them like any buffer
# (torch's parametrization swaps the module's class and needs its own pickling hooks, which the safe loader never
# runs).

SN_INIT_ITERATIONS = 15     # Power iterations at construction, so that the first sigma is already accurate.
SN_EPS = 1e-12              # Normalisation floor of u and v.


def _normalize(vector):
    return vector / vector.norm().clamp(min=SN_EPS)


@persistence.persistent_class
class Weight(torch.nn.Module):
    def __init__(self,
        shape,                      # Shape of the weight tensor (out_features first).
        spectral_norm   = False,    # Divide the weight by its spectral norm (Miyato et al. 2018)?
        init_std        = INIT_STD, # Initial weights ~ N(0, init_std).
    ):
        super().__init__()
        self.shape = list(shape)
        self.spectral_norm = spectral_norm
        self.weight = torch.nn.Parameter(torch.randn(self.shape) * init_std)
        if spectral_norm:
            num_out, num_in = self.shape[0], int(np.prod(self.shape[1:]))
            self.register_buffer('sn_u', _normalize(torch.randn([num_out])))
            self.register_buffer('sn_v', _normalize(torch.randn([num_in])))
            for _ in range(SN_INIT_ITERATIONS):
                self._power_iteration()

    @torch.no_grad()
    def _power_iteration(self):
        """One step of the power method: u <- W v / |W v|, v <- W^T u / |W^T u| (the top singular vectors)."""
        matrix = self.weight.flatten(1)
        self.sn_u.copy_(_normalize(matrix @ self.sn_v))
        self.sn_v.copy_(_normalize(matrix.t() @ self.sn_u))

    def forward(self, update_emas=False):
        """The (normalised) weight tensor, shape `shape`. With update_emas (and in training mode) the call first
        runs one power iteration, updating the estimate (u, v) of the top singular vectors; otherwise it uses the
        stored one. sigma = u^T W v is differentiated through W only (u and v are constants, as in the paper)."""
        if not self.spectral_norm:
            return self.weight
        if self.training and update_emas:
            self._power_iteration()
        sigma = torch.dot(self.sn_u, self.weight.flatten(1) @ self.sn_v)
        return self.weight / sigma

    def extra_repr(self):
        return f'shape={self.shape}, spectral_norm={self.spectral_norm}'

#----------------------------------------------------------------------------
# Normalisation layers of our own (plain tensors, so that pickles hold only our classes).

@persistence.persistent_class
class BatchNorm(torch.nn.Module):
    """Batch normalisation (Ioffe and Szegedy 2015) over N, H, W per channel, with running statistics for eval.
    The running averages are named *_ema: each process keeps its own (the training loop's multi-GPU consistency
    check skips such buffers, and exact resume stores them per process)."""

    def __init__(self, num_channels, momentum=0.1, eps=1e-5):
        super().__init__()
        self.num_channels = num_channels
        self.momentum = momentum
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones([num_channels]))
        self.bias = torch.nn.Parameter(torch.zeros([num_channels]))
        self.register_buffer('mean_ema', torch.zeros([num_channels]))
        self.register_buffer('var_ema', torch.ones([num_channels]))

    def forward(self, x, update_emas=False):
        """x: [N, C, H, W] -> same shape. Training mode normalises by the batch statistics and, with update_emas,
        also updates the running averages (like w_avg elsewhere: not in every forward pass, e.g. summaries)."""
        if self.training and not update_emas:
            return F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=self.eps)
        return F.batch_norm(x, self.mean_ema, self.var_ema, self.weight, self.bias, training=self.training,
                            momentum=self.momentum, eps=self.eps)


@persistence.persistent_class
class LayerNorm(torch.nn.Module):
    """Layer normalisation (Ba et al. 2016) of each sample over C, H, W, then a per-channel scale and bias.
    Per-sample, so WGAN-GP's gradient penalty stays a per-sample quantity (Gulrajani et al. 2017, Sec. 4)."""

    def __init__(self, num_channels, eps=1e-5):
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones([num_channels]))
        self.bias = torch.nn.Parameter(torch.zeros([num_channels]))

    def forward(self, x, update_emas=False):
        """x: [N, C, H, W] -> same shape."""
        _ = update_emas
        x = F.layer_norm(x, x.shape[1:], eps=self.eps)
        return x * self.weight[None, :, None, None] + self.bias[None, :, None, None]


def _make_norm(norm, num_channels):
    if norm == 'batch':
        return BatchNorm(num_channels)
    if norm == 'layer':
        return LayerNorm(num_channels)
    if norm == 'none':
        return None
    raise ValueError(f'DCGAN: norm must be batch|layer|none, got {norm!r}')

#----------------------------------------------------------------------------
# G (Radford Fig. 1): ws [N, 1, w_dim] as a 1x1 map -> 4x4 (4x4 transposed conv, stride 1) -> ... -> image, each
# step a 4x4 transposed conv with stride 2 (padding 1 doubles the size exactly), batch norm and ReLU.

@persistence.persistent_class
class UpBlock(torch.nn.Module):
    def __init__(self,
        in_channels,                # Input feature maps.
        out_channels,               # Output feature maps.
        resolution,                 # Output resolution (4 for the projection of z).
        is_last         = False,    # The image layer: bias and tanh instead of batch norm and ReLU.
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.resolution = resolution
        self.is_last = is_last
        self.stride, self.padding = (1, 0) if resolution == 4 else (2, 1)
        self.weight = torch.nn.Parameter(torch.randn([in_channels, out_channels, 4, 4]) * INIT_STD)
        if is_last:
            self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        else:
            self.norm = BatchNorm(out_channels)  # Batch norm makes a bias redundant.

    def forward(self, x, update_emas=False):
        """x: [N, in_channels, res/2, res/2] (1x1 for the first block) -> [N, out_channels, res, res]."""
        x = F.conv_transpose2d(x, self.weight, bias=self.bias if self.is_last else None, stride=self.stride,
                               padding=self.padding)
        misc.assert_shape(x, [None, self.out_channels, self.resolution, self.resolution])
        return torch.tanh(x) if self.is_last else F.relu(self.norm(x, update_emas=update_emas))

    def extra_repr(self):
        return f'in_channels={self.in_channels}, out_channels={self.out_channels}, resolution={self.resolution}'


@persistence.persistent_class
class LatentInput(torch.nn.Module):
    """The 'mapping' of a DCGAN: ws = [z, c] as one vector per sample (no learned layers)."""

    def __init__(self, z_dim, c_dim):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = z_dim + c_dim
        self.num_ws = 1

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        """z: [N, z_dim], c: [N, c_dim] -> ws [N, 1, z_dim + c_dim]; truncation scales z by psi (towards E[z])."""
        _ = truncation_cutoff, update_emas  # One w only; nothing to average.
        misc.assert_shape(z, [None, self.z_dim])
        parts = [z.to(torch.float32) * truncation_psi]
        if self.c_dim > 0:
            misc.assert_shape(c, [z.shape[0], self.c_dim])
            parts.append(c.to(torch.float32))
        return torch.cat(parts, dim=1).unsqueeze(1)

    def extra_repr(self):
        return f'z_dim={self.z_dim}, c_dim={self.c_dim}'


@persistence.persistent_class
class SynthesisNetwork(torch.nn.Module):
    def __init__(self,
        w_dim,                      # Input vector length (z_dim + c_dim).
        img_resolution,             # Output resolution (power of two >= 8).
        img_channels,               # Output image channels.
        channel_base    = 4096,     # Feature maps at resolution r: min(channel_base // r, channel_max).
        channel_max     = 1024,
    ):
        _check_resolution(img_resolution)
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_ws = 1
        self.block_resolutions = [2 ** i for i in range(2, int(np.log2(img_resolution)) + 1)]
        in_channels = w_dim
        for res in self.block_resolutions:
            is_last = res == img_resolution
            out_channels = img_channels if is_last else channels_at(res, channel_base, channel_max)
            setattr(self, f'b{res}', UpBlock(in_channels, out_channels, res, is_last=is_last))
            in_channels = out_channels

    def forward(self, ws, update_emas=False, **_ignored):
        """ws: [N, 1, w_dim] -> img [N, img_channels, img_resolution, img_resolution] in [-1, 1].
        update_emas: update the batch-norm running statistics (the loss does so on D's fake pass)."""
        misc.assert_shape(ws, [None, 1, self.w_dim])
        x = ws.to(torch.float32)[:, 0, :, None, None]  # [N, w_dim, 1, 1]
        for res in self.block_resolutions:
            x = getattr(self, f'b{res}')(x, update_emas=update_emas)
        return x

    def extra_repr(self):
        return f'w_dim={self.w_dim}, img_resolution={self.img_resolution}, img_channels={self.img_channels}'


@persistence.persistent_class
class Generator(torch.nn.Module):
    def __init__(self,
        z_dim,                      # Latent length (Radford: 100).
        c_dim,                      # Label length, 0 = unconditional.
        img_resolution,             # Output resolution.
        img_channels,               # Output channels (1 for MNIST, 3 for RGB).
        w_dim           = None,     # Ignored: always z_dim + c_dim (accepted so that generic code can pass it).
        **synthesis_kwargs,         # channel_base, channel_max.
    ):
        _ = w_dim
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = z_dim + c_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_ws = 1
        self.mapping = LatentInput(z_dim, c_dim)
        self.synthesis = SynthesisNetwork(self.w_dim, img_resolution, img_channels, **synthesis_kwargs)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False, **synthesis_kwargs):
        """z: [N, z_dim], c: [N, c_dim] -> img [N, img_channels, img_resolution, img_resolution] float32 in [-1, 1].
        synthesis_kwargs (noise_mode, force_fp32) are accepted for the tools' sake and have no effect."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)

#----------------------------------------------------------------------------
# D (Radford Sec. 3): 4x4 stride-2 convolutions halving the resolution down to 4x4, then a 4x4 convolution to one
# logit; leaky ReLU 0.2; no normalisation on the first layer.

@persistence.persistent_class
class DownBlock(torch.nn.Module):
    def __init__(self,
        in_channels,                # Input feature maps.
        out_channels,               # Output feature maps.
        resolution,                 # Input resolution (output is half).
        norm            = 'batch',  # 'batch', 'layer' or 'none'.
        spectral_norm   = False,    # Spectrally normalised weight (Miyato et al. 2018)?
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.resolution = resolution
        self.weight = Weight([out_channels, in_channels, 4, 4], spectral_norm=spectral_norm)
        self.norm = _make_norm(norm, out_channels)
        if self.norm is None:
            self.bias = torch.nn.Parameter(torch.zeros([out_channels]))  # Only where no norm re-centres.

    def forward(self, x, update_emas=False):
        """x: [N, in_channels, res, res] -> [N, out_channels, res/2, res/2]."""
        misc.assert_shape(x, [None, self.in_channels, self.resolution, self.resolution])
        weight = self.weight(update_emas=update_emas)
        x = F.conv2d(x, weight, bias=self.bias if self.norm is None else None, stride=2, padding=1)
        if self.norm is not None:
            x = self.norm(x, update_emas=update_emas)
        return F.leaky_relu(x, LRELU_SLOPE)

    def extra_repr(self):
        return f'in_channels={self.in_channels}, out_channels={self.out_channels}, resolution={self.resolution}'


@persistence.persistent_class
class Discriminator(torch.nn.Module):
    def __init__(self,
        c_dim,                      # Label length, 0 = unconditional (projection discriminator otherwise).
        img_resolution,             # Input resolution (power of two >= 8).
        img_channels,               # Input channels.
        channel_base    = 4096,     # Feature maps at resolution r: min(channel_base // r, channel_max).
        channel_max     = 1024,
        norm            = 'batch',  # Normalisation after every conv but the first: 'batch', 'layer', 'none'.
        spectral_norm   = False,    # Spectral normalisation of every weight (Miyato et al. 2018)?
    ):
        _check_resolution(img_resolution)
        super().__init__()
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(int(np.log2(img_resolution)), 2, -1)]  # Input sizes.
        in_channels = img_channels
        for res in self.block_resolutions:
            out_channels = channels_at(res // 2, channel_base, channel_max)
            block_norm = 'none' if res == img_resolution else norm  # Radford Sec. 3: no norm on D's input layer.
            setattr(self, f'b{res}', DownBlock(in_channels, out_channels, res, norm=block_norm,
                                               spectral_norm=spectral_norm))
            in_channels = out_channels
        self.features = in_channels * 16  # Length of the flattened 4x4 feature map phi(x).
        self.out = Weight([1, in_channels, 4, 4], spectral_norm=spectral_norm)
        self.out_bias = torch.nn.Parameter(torch.zeros([1]))
        if c_dim > 0:
            self.embed = Weight([self.features, c_dim], spectral_norm=spectral_norm)  # Label embedding V.

    def forward(self, img, c, update_emas=False, **_ignored):
        """img: [N, img_channels, res, res], c: [N, c_dim] -> logits [N, 1] (raw scores, no sigmoid).
        update_emas: run a spectral-norm power iteration and update batch-norm statistics (once per D step)."""
        misc.assert_shape(img, [None, self.img_channels, self.img_resolution, self.img_resolution])
        x = img.to(torch.float32)
        for res in self.block_resolutions:
            x = getattr(self, f'b{res}')(x, update_emas=update_emas)
        logits = F.conv2d(x, self.out(update_emas=update_emas), bias=self.out_bias).flatten(1)  # [N, 1]
        if self.c_dim > 0:
            # Projection (Miyato and Koyama 2018, Eq. 3): + <V c, phi(x)>, scaled by 1/sqrt(len) like StyleGAN2's.
            misc.assert_shape(c, [x.shape[0], self.c_dim])
            projection = c.to(torch.float32).matmul(self.embed(update_emas=update_emas).t()) * x.flatten(1)
            logits = logits + projection.sum(dim=1, keepdim=True) / np.sqrt(self.features)
        return logits

    def extra_repr(self):
        return f'c_dim={self.c_dim}, img_resolution={self.img_resolution}, img_channels={self.img_channels}'

#----------------------------------------------------------------------------
