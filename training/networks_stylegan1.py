"""StyleGAN (1) generator: mapping network f and AdaIN synthesis network g.

Karras, Laine and Aila 2019, "A Style-Based Generator Architecture for Generative Adversarial Networks" (CVPR),
referred to below as "SG1"; ProGAN = Karras et al. 2018, "Progressive Growing of GANs".

What this module implements, with the paper's names:
- f: Z -> W, an 8-layer MLP with learning-rate multiplier 0.01 on a normalised z (Sec. 2, Fig. 1b, App. C), and
  the running average w_avg used by the truncation trick (Sec. 5.2, App. B).
- g: a learned 4x4 constant (Sec. 2), then per resolution two 3x3 convolutions, each followed by per-pixel noise
  with learned per-channel scaling (B, Sec. 3.2), bias, leaky ReLU and AdaIN (A, Eq. 1). Upsampling is nearest
  neighbour followed by a [1,2,1] binomial blur (Sec. 2, "bilinear up/downsampling"). ToRGB (1x1) only at the last
  resolution, unless progressive=True (progressive growing, see fade_weight).
- Equalised learning rate everywhere (ProGAN Sec. 4.1): weights are stored as N(0, 1) and scaled at run time.
- Style mixing regularisation (Sec. 3.1) lives in the loss: training.loss.StyleGAN2Loss(style_mixing_prob=0.9)
  maps a second z and swaps the ws from a random crossover layer on, through G.mapping and G.synthesis.

Discriminator: --cfg=stylegan1 pairs this G with training.networks_stylegan2.Discriminator(architecture='orig'),
the ProGAN discriminator shape (fromrgb at the input resolution only, two 3x3 convs per resolution, no skips or
residuals, minibatch standard deviation in the 4x4 head). Its downsampling filter is [1,3,3,1] instead of SG1's
[1,2,1]. Progressive growing (--progressive=1; ProGAN Sec. 3) uses this module's Discriminator instead: the SG1
release's D with fromrgb at every resolution, faded in with G (G's `progressive=True` adds ToRGB at every
resolution and the `synthesis.lod` buffer; see fade_weight).

Call conventions are those of DESIGN.md section 3:
    G(z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False, noise_mode='random', force_fp32=False)
    G.mapping(z, c, truncation_psi, truncation_cutoff, update_emas) -> ws [N, num_ws, w_dim]
    G.synthesis(ws, noise_mode=..., force_fp32=..., update_emas=...) -> img [N, img_channels, H, W]
with num_ws = 2 * log2(img_resolution) - 2 (two styles per resolution, none for ToRGB). truncation_cutoff=None
truncates every w (the DESIGN convention shared with StyleGAN2/3); the paper's choice, truncating only the coarse
styles, is truncation_cutoff=PAPER_TRUNCATION_CUTOFF (8).

There is no official PyTorch StyleGAN1, so parameter names follow the StyleGAN2 layout wherever the meaning is the
same (mapping.fc{i}, mapping.w_avg, synthesis.b{res}.const|conv0|conv1|torgb, affine, noise_const,
noise_strength). Class names deliberately differ from StyleGAN2's block classes (AdaINLayer, AdaINBlock), so a
loader that recognises a network family by the classes its source defines cannot mistake this one for StyleGAN2.
This module imports only numpy, torch and torch_utils so that its source (embedded in pickles) runs anywhere.
"""

import numpy as np
import torch

from torch_utils import misc
from torch_utils import persistence
from torch_utils.ops import bias_act
from torch_utils.ops import conv2d_gradfix
from torch_utils.ops import upfirdn2d

# SG1 App. B and Fig. 8: the truncation trick applied to the 8 coarsest ws (resolutions 4x4 to 32x32) only.
PAPER_TRUNCATION_CUTOFF = 8


def _half_dtype(module):
    """Reduced precision of a use_fp16 layer: float16 (official), or bfloat16 where training/accel.py set
    module.mixed_precision = 'bfloat16' (a plain string, so that pickles stay loadable everywhere). float16 runs
    only on CUDA; bfloat16 runs on any device."""
    return torch.bfloat16 if getattr(module, 'mixed_precision', None) == 'bfloat16' else torch.float16

#----------------------------------------------------------------------------
# Normalisation of the latent input (SG1 Sec. 2 / ProGAN Sec. 4.2): each vector scaled to unit second moment.

def normalize_2nd_moment(x, dim=1, eps=1e-8):
    """Divide x by the root-mean-square of its entries along `dim` (shape preserved)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()

#----------------------------------------------------------------------------
# AdaIN, SG1 Eq. 1:  AdaIN(x_i, y) = y_s,i * (x_i - mu(x_i)) / sigma(x_i) + y_b,i
# mu and sigma are the mean and standard deviation of feature map i of one sample over its pixels (instance
# normalisation, Ulyanov et al. 2016); y = (y_s, y_b) is the style that the affine transform A makes from w.

def instance_norm(x, eps=1e-8):
    """x: [N, C, H, W] -> each [n, c] map shifted and scaled to zero mean and unit (biased) std over H, W."""
    x = x - x.mean(dim=[2, 3], keepdim=True)
    return x * (x.square().mean(dim=[2, 3], keepdim=True) + eps).rsqrt()


def adaptive_instance_norm(x, style_scale, style_bias):
    """SG1 Eq. 1. x: [N, C, H, W]; style_scale, style_bias: [N, C] -> [N, C, H, W] in float32."""
    misc.assert_shape(style_scale, [x.shape[0], x.shape[1]])
    misc.assert_shape(style_bias, [x.shape[0], x.shape[1]])
    x = instance_norm(x.to(torch.float32))
    return x * style_scale.to(torch.float32)[:, :, None, None] + style_bias.to(torch.float32)[:, :, None, None]

#----------------------------------------------------------------------------
# Upsampling, SG1 Sec. 2: nearest-neighbour 2x followed by the separable 2nd-order binomial filter [1,2,1]
# (normalised to unit DC gain), which together are bilinear upsampling (Zhang 2019, "Making convolutional
# networks shift-invariant again").

def upsample_and_blur(x, blur_filter):
    """x: [N, C, H, W] -> [N, C, 2H, 2W]; blur_filter: 2-D taps from upfirdn2d.setup_filter([1, 2, 1])."""
    x = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    return upfirdn2d.filter2d(x, blur_filter)

#----------------------------------------------------------------------------
# Equalised-learning-rate dense layer (ProGAN Sec. 4.1): weight ~ N(0, 1) / lr_multiplier, used as
# weight * lr_multiplier / sqrt(fan_in). SG1 App. C: lr_multiplier 0.01 in the mapping network.

@persistence.persistent_class
class FullyConnectedLayer(torch.nn.Module):
    def __init__(self,
        in_features,                # Number of input features.
        out_features,               # Number of output features.
        bias            = True,     # Add a bias?
        activation      = 'linear', # Activation name from bias_act.activation_funcs.
        lr_multiplier   = 1,        # Learning-rate multiplier (equalised lr).
        bias_init       = 0,        # Initial effective bias (after bias_gain): a number or out_features numbers.
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        bias_values = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features])
        self.bias = torch.nn.Parameter(torch.from_numpy(bias_values.copy()) / lr_multiplier) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        """x: [N, in_features] -> [N, out_features]."""
        x = x.matmul((self.weight.to(x.dtype) * self.weight_gain).t())
        b = self.bias.to(x.dtype) * self.bias_gain if self.bias is not None else None
        return bias_act.bias_act(x, b, act=self.activation)

    def extra_repr(self):
        return f'in_features={self.in_features:d}, out_features={self.out_features:d}, activation={self.activation}'

#----------------------------------------------------------------------------
# Mapping network f: Z -> W (SG1 Sec. 2, Fig. 1b): z normalised, then num_layers equalised-lr dense layers with
# leaky ReLU. Optional conditioning as in our StyleGAN2 (label embedded by a dense layer, normalised, concatenated).
# w_avg (the centre of mass of W, App. B) is a running average updated on training batches; the truncation trick
# w' = w_avg + psi * (w - w_avg) is applied to the first truncation_cutoff ws (all of them when None).

@persistence.persistent_class
class MappingNetwork(torch.nn.Module):
    def __init__(self,
        z_dim,                      # Input latent (Z) dimensionality, 0 = no latent.
        c_dim,                      # Conditioning label (C) dimensionality, 0 = no label.
        w_dim,                      # Intermediate latent (W) dimensionality.
        num_ws,                     # Number of ws to broadcast to, None = return [N, w_dim].
        num_layers      = 8,        # Number of mapping layers (SG1 Sec. 2: 8).
        embed_features  = None,     # Label embedding dimensionality, None = same as w_dim.
        layer_features  = None,     # Hidden layer width, None = same as w_dim.
        activation      = 'lrelu',  # Activation of every layer.
        lr_multiplier   = 0.01,     # Learning-rate multiplier of the mapping layers (SG1 App. C).
        w_avg_beta      = 0.995,    # Decay of the running w average per batch (the SG1 release), None = no tracking.
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        embed_features = 0 if c_dim == 0 else (w_dim if embed_features is None else embed_features)
        layer_features = w_dim if layer_features is None else layer_features
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]

        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            setattr(self, f'fc{idx}', FullyConnectedLayer(features[idx], features[idx + 1], activation=activation,
                                                          lr_multiplier=lr_multiplier))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer('w_avg', torch.zeros([w_dim]))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        """z: [N, z_dim], c: [N, c_dim] -> ws [N, num_ws, w_dim] float32 (or [N, w_dim] when num_ws is None)."""
        parts = []
        if self.z_dim > 0:
            misc.assert_shape(z, [None, self.z_dim])
            parts.append(normalize_2nd_moment(z.to(torch.float32)))
        if self.c_dim > 0:
            misc.assert_shape(c, [None, self.c_dim])
            parts.append(normalize_2nd_moment(self.embed(c.to(torch.float32))))
        x = torch.cat(parts, dim=1)
        for idx in range(self.num_layers):
            x = getattr(self, f'fc{idx}')(x)

        if update_emas and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])  # [N, num_ws, w_dim]
        if truncation_psi != 1:
            assert self.w_avg_beta is not None, 'truncation needs w_avg; this mapping network has w_avg_beta=None'
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x

    def extra_repr(self):
        return f'z_dim={self.z_dim:d}, c_dim={self.c_dim:d}, w_dim={self.w_dim:d}, num_ws={self.num_ws}'

#----------------------------------------------------------------------------
# One style layer of g (SG1 Fig. 1b; the expanded form is StyleGAN2 Fig. 2b):
#   [upsample + blur] -> conv 3x3 -> + B * noise -> + bias -> lrelu -> AdaIN(., A(w))
# kernel_size=0 is the layer on the 4x4 constant, which SG1 Fig. 1b shows without a convolution. Noise B is one
# single-channel image per sample, scaled per feature map by `noise_strength` (Sec. 3.2, initialised to zero).
# The affine A outputs (y_s, y_b); its bias starts at (1, 0) so that every style starts as the identity.

@persistence.persistent_class
class AdaINLayer(torch.nn.Module):
    blur_after_conv = False  # Default for layers pickled before the option existed.

    def __init__(self,
        in_channels,                    # Number of input channels.
        out_channels,                   # Number of output channels.
        w_dim,                          # Intermediate latent (W) dimensionality.
        resolution,                     # Output resolution.
        kernel_size     = 3,            # Convolution kernel size, 0 = no convolution (the 4x4 constant's layer).
        up              = 1,            # 1, or 2 = upsample and blur before the convolution.
        use_noise       = True,         # Add per-pixel noise?
        activation      = 'lrelu',      # Activation name from bias_act.activation_funcs.
        blur_filter     = [1, 2, 1],    # Low-pass filter applied after upsampling.
        blur_after_conv = False,        # Upsample, convolve, then blur (the order of the TF release) instead of
                                        # upsample, blur, convolve. The same up to the image border.
        conv_clamp      = None,         # Clamp the activations before AdaIN to +-X, None = no clamping.
    ):
        assert up in [1, 2], f'AdaINLayer: up must be 1 or 2, got {up}'
        assert kernel_size > 0 or (in_channels == out_channels and up == 1), \
            'AdaINLayer: kernel_size=0 (no convolution) needs in_channels == out_channels and up == 1'
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.resolution = resolution
        self.kernel_size = kernel_size
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.blur_after_conv = blur_after_conv

        self.affine = FullyConnectedLayer(w_dim, 2 * out_channels, bias_init=[1] * out_channels + [0] * out_channels)
        if up > 1:
            self.register_buffer('blur_filter', upfirdn2d.setup_filter(blur_filter))
        if kernel_size > 0:
            self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
            self.weight_gain = 1 / np.sqrt(in_channels * kernel_size ** 2)
        if use_noise:
            self.register_buffer('noise_const', torch.randn([resolution, resolution]))
            self.noise_strength = torch.nn.Parameter(torch.zeros([out_channels]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def _noise(self, x, noise_mode):
        """B * noise: [N or 1, C, H, W] to add to x, or None."""
        assert noise_mode in ['random', 'const', 'none'], f'noise_mode must be random|const|none, got {noise_mode!r}'
        if not self.use_noise or noise_mode == 'none':
            return None
        if noise_mode == 'const':
            noise = self.noise_const[None, None]  # [1, 1, H, W]
        else:
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device)
        return (noise * self.noise_strength[None, :, None, None]).to(x.dtype)

    def forward(self, x, w, noise_mode='random'):
        """x: [N, in_channels, res/up, res/up], w: [N, w_dim] -> [N, out_channels, res, res] in x.dtype."""
        in_resolution = self.resolution // self.up
        misc.assert_shape(x, [None, self.in_channels, in_resolution, in_resolution])
        if self.up > 1 and not self.blur_after_conv:
            x = upsample_and_blur(x, self.blur_filter)
        elif self.up > 1:
            x = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        if self.kernel_size > 0:
            weight = (self.weight * self.weight_gain).to(x.dtype)
            x = conv2d_gradfix.conv2d(x, weight, padding=self.kernel_size // 2)
        if self.up > 1 and self.blur_after_conv:
            x = upfirdn2d.filter2d(x, self.blur_filter)
        noise = self._noise(x, noise_mode)
        if noise is not None:
            x = x + noise
        x = bias_act.bias_act(x, self.bias.to(x.dtype), act=self.activation, clamp=self.conv_clamp)
        style_scale, style_bias = self.affine(w).chunk(2, dim=1)  # Eq. 1: y_s, y_b, each [N, out_channels].
        return adaptive_instance_norm(x, style_scale, style_bias).to(x.dtype)

    def extra_repr(self):
        return ', '.join([
            f'in_channels={self.in_channels:d}, out_channels={self.out_channels:d}, resolution={self.resolution:d}',
            f'kernel_size={self.kernel_size:d}, up={self.up}, activation={self.activation}'])

#----------------------------------------------------------------------------
# ToRGB (ProGAN Sec. A.1): a 1x1 equalised-lr convolution with bias and no activation, unmodulated in SG1.

@persistence.persistent_class
class ToRGBLayer(torch.nn.Module):
    def __init__(self,
        in_channels,                # Number of input channels.
        out_channels,               # Number of image channels.
        conv_clamp      = None,     # Clamp the output to +-X, None = no clamping.
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.conv_clamp = conv_clamp
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / np.sqrt(in_channels)

    def forward(self, x):
        """x: [N, in_channels, H, W] -> [N, out_channels, H, W]."""
        x = conv2d_gradfix.conv2d(x, (self.weight * self.weight_gain).to(x.dtype))
        return bias_act.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)

    def extra_repr(self):
        return f'in_channels={self.in_channels:d}, out_channels={self.out_channels:d}'

#----------------------------------------------------------------------------
# One resolution of g (SG1 Fig. 1b): the 4x4 block starts from the learned constant (Sec. 2, initialised to ones)
# and has one AdaIN layer without convolution and one with; every other block upsamples in conv0 and convolves
# again in conv1. Each block reads two consecutive ws; only the last block has ToRGB.

@persistence.persistent_class
class AdaINBlock(torch.nn.Module):
    def __init__(self,
        in_channels,                # Number of input channels, 0 = first block (learned constant input).
        out_channels,               # Number of output channels.
        w_dim,                      # Intermediate latent (W) dimensionality.
        resolution,                 # Resolution of this block.
        img_channels,               # Number of output color channels.
        is_last,                    # Is this the last block (the one with ToRGB)?
        use_fp16        = False,    # Run this block in float16 (on CUDA only)?
        conv_clamp      = None,     # Clamp activations to +-X, None = no clamping.
        **layer_kwargs,             # Arguments for AdaINLayer: use_noise, activation, blur_filter, blur_after_conv.
    ):
        super().__init__()
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.use_fp16 = use_fp16
        self.num_conv = 2
        self.num_torgb = 0  # ToRGB takes no style in SG1.

        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.ones([out_channels, resolution, resolution]))
            self.conv0 = AdaINLayer(out_channels, out_channels, w_dim, resolution, kernel_size=0,
                                    conv_clamp=conv_clamp, **layer_kwargs)
        else:
            self.conv0 = AdaINLayer(in_channels, out_channels, w_dim, resolution, up=2, conv_clamp=conv_clamp,
                                    **layer_kwargs)
        self.conv1 = AdaINLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp, **layer_kwargs)
        if is_last:
            self.torgb = ToRGBLayer(out_channels, img_channels, conv_clamp=conv_clamp)

    def forward(self, x, ws, noise_mode='random', force_fp32=False, update_emas=False):
        """x: [N, in_channels, res/2, res/2] or None (first block), ws: [N, 2, w_dim]
        -> (x [N, out_channels, res, res], img [N, img_channels, res, res] float32 or None)."""
        _ = update_emas  # AdaIN layers hold no running statistics.
        misc.assert_shape(ws, [None, self.num_conv, self.w_dim])
        # float16 only on CUDA: CPU half convolutions are slow or unsupported.
        half = _half_dtype(self)
        use_fp16 = self.use_fp16 and not force_fp32 and (ws.device.type == 'cuda' or half == torch.bfloat16)
        dtype = half if use_fp16 else torch.float32
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])  # [N, C, 4, 4]
        else:
            misc.assert_shape(x, [None, self.in_channels, self.resolution // 2, self.resolution // 2])
            x = x.to(dtype)
        x = self.conv0(x, ws[:, 0], noise_mode=noise_mode)
        x = self.conv1(x, ws[:, 1], noise_mode=noise_mode)
        img = self.torgb(x).to(torch.float32) if self.is_last else None
        return x, img

    def extra_repr(self):
        return f'resolution={self.resolution:d}, use_fp16={self.use_fp16}'

#----------------------------------------------------------------------------
# Progressive growing (ProGAN Sec. 3 and Fig. 2, as in the SG1 release): the level of detail `lod` counts the
# resolution halvings below the full one (0 = full resolution, fractional while a resolution fades in). With
# top = log2(img_resolution) - lod, the block at resolution r is absent when log2(r) - top >= 1, and the finest
# present block's image is blended with the 2x nearest-upsampled image of the block below it by
# fade_weight = clip(log2(r) - top, 0, 1) (1 = only the coarser image: the new block's fade-in starts, alpha 0).
# The result is nearest-upsampled to the full size, so the networks' outputs and inputs always have full size.

def fade_weight(resolution, top_level):
    """Weight of the coarser image where the block at `resolution` (pixels) meets top_level = log2(res) - lod."""
    return float(np.clip(np.log2(resolution) - top_level, 0, 1))


def upsample_nearest(x, factor):
    """x: [N, C, H, W] -> [N, C, H * factor, W * factor] by pixel repetition (ProGAN's upscale2d)."""
    if factor == 1:
        return x
    return x.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)

#----------------------------------------------------------------------------
# Synthesis network g: W -> image (SG1 Sec. 2, Fig. 1b): one block per power-of-two resolution from 4x4 to
# img_resolution with min(channel_base / res, channel_max) channels (SG1's widths are channel_base=16384,
# channel_max=512: 512 channels up to 32x32, halving above; at 1024x1024 G then has the paper's 26.2M parameters).
# num_ws = 2 * log2(img_resolution) - 2.

@persistence.persistent_class
class SynthesisNetwork(torch.nn.Module):
    progressive = False  # Default for networks pickled before the option existed.

    def __init__(self,
        w_dim,                      # Intermediate latent (W) dimensionality.
        img_resolution,             # Output image resolution (power of two, >= 4).
        img_channels,               # Number of color channels.
        channel_base    = 16384,    # Overall multiplier for the number of channels.
        channel_max     = 512,      # Maximum number of channels in any block.
        num_fp16_res    = 0,        # Use float16 (on CUDA) for the N highest resolutions; SG1 trained in float32.
        conv_clamp      = None,     # Clamp activations to +-X, None = no clamping (use e.g. 256 with float16).
        use_noise       = True,     # Add per-pixel noise (SG1 Sec. 3.2)?
        activation      = 'lrelu',  # Activation of every style layer.
        blur_filter     = [1, 2, 1], # Low-pass filter after each upsampling (SG1 Sec. 2).
        blur_after_conv = False,    # Blur after the upsampling convolution (TF release order; see AdaINLayer).
        progressive     = False,    # ToRGB at every resolution and a `lod` buffer (progressive growing, below).
    ):
        assert img_resolution >= 4 and img_resolution & (img_resolution - 1) == 0, \
            f'img_resolution must be a power of two >= 4, got {img_resolution}'
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.num_fp16_res = num_fp16_res
        self.progressive = progressive
        self.block_resolutions = [2 ** i for i in range(2, self.img_resolution_log2 + 1)]
        channels_dict = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        if progressive:
            self.register_buffer('lod', torch.zeros([]))  # Level of detail; the snapshot carries it.
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8) if num_fp16_res > 0 else None

        self.num_ws = 0
        for res in self.block_resolutions:
            block = AdaINBlock(channels_dict[res // 2] if res > 4 else 0, channels_dict[res], w_dim=w_dim,
                               resolution=res, img_channels=img_channels,
                               is_last=(res == img_resolution or progressive),
                               use_fp16=(fp16_resolution is not None and res >= fp16_resolution),
                               conv_clamp=conv_clamp, use_noise=use_noise, activation=activation,
                               blur_filter=blur_filter, blur_after_conv=blur_after_conv)
            self.num_ws += block.num_conv
            setattr(self, f'b{res}', block)

    def forward(self, ws, noise_mode='random', force_fp32=False, update_emas=False):
        """ws: [N, num_ws, w_dim] -> img [N, img_channels, img_resolution, img_resolution] float32."""
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
        ws = ws.to(torch.float32)
        top_level = self.img_resolution_log2 - (float(self.lod) if self.progressive else 0)
        x = img = prev_img = None
        for block_idx, res in enumerate(self.block_resolutions):
            if res > 4 and fade_weight(res, top_level) >= 1:
                break  # This and every finer block are not faded in yet.
            block = getattr(self, f'b{res}')
            block_ws = ws.narrow(1, block_idx * block.num_conv, block.num_conv)
            prev_img = img
            x, img = block(x, block_ws, noise_mode=noise_mode, force_fp32=force_fp32, update_emas=update_emas)
        if not self.progressive:
            return img
        weight = fade_weight(img.shape[2], top_level)
        if weight > 0:
            img = torch.lerp(img, upsample_nearest(prev_img, 2), weight)
        return upsample_nearest(img, self.img_resolution // img.shape[2])

    def extra_repr(self):
        return ', '.join([
            f'w_dim={self.w_dim:d}, num_ws={self.num_ws:d}',
            f'img_resolution={self.img_resolution:d}, img_channels={self.img_channels:d}',
            f'num_fp16_res={self.num_fp16_res:d}'])

#----------------------------------------------------------------------------
# Generator G = g(f(z, c)) (SG1 Fig. 1b).

@persistence.persistent_class
class Generator(torch.nn.Module):
    def __init__(self,
        z_dim,                      # Input latent (Z) dimensionality.
        c_dim,                      # Conditioning label (C) dimensionality, 0 = unconditional.
        w_dim,                      # Intermediate latent (W) dimensionality.
        img_resolution,             # Output resolution.
        img_channels,               # Number of output color channels.
        mapping_kwargs  = {},       # Arguments for MappingNetwork (num_layers, lr_multiplier, w_avg_beta, ...).
        **synthesis_kwargs,         # Arguments for SynthesisNetwork (channel_base, channel_max, ...).
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False, **synthesis_kwargs):
        """z: [N, z_dim], c: [N, c_dim] -> img [N, img_channels, img_resolution, img_resolution] float32 ~[-1, 1].
        synthesis_kwargs: noise_mode ('random'|'const'|'none'), force_fp32. The paper's truncation is
        truncation_cutoff=PAPER_TRUNCATION_CUTOFF; None truncates every w."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)

#----------------------------------------------------------------------------
# Discriminator of progressive growing (ProGAN Sec. 3 and App. A.1, "D_basic" of the SG1 release), used by
# --cfg=stylegan1 --progressive=1 (fixed-resolution SG1 training uses networks_stylegan2.Discriminator 'orig').
# Per resolution r: fromrgb (1x1 conv, lrelu) wherever r is the finest level present, conv0 (3x3), conv1 (blur
# [1,2,1], 3x3 conv, 2x2 average pooling: SG1's "bilinear downsampling"); at 4x4: minibatch standard deviation
# (ProGAN Sec. 3), 3x3 conv, dense, dense to one score. The `lod` buffer mirrors G's: the finest present block reads
# fromrgb of the image, blended by fade_weight with fromrgb of the 2x average-pooled image at the level below.

def minibatch_stddev(x, group_size=4, num_channels=1):
    """ProGAN Sec. 3: append num_channels maps holding the std over groups of samples. x: [N, C, H, W] ->
    [N, C + num_channels, H, W]; N must be divisible by min(group_size, N)."""
    N, C, H, W = x.shape
    G = min(group_size, N)
    y = x.reshape(G, -1, num_channels, C // num_channels, H, W)             # [G, M, n, c, H, W]
    y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()            # [M, n, c, H, W]
    y = y.mean(dim=[2, 3, 4]).reshape(-1, num_channels, 1, 1).repeat(G, 1, H, W)  # [N, n, H, W]
    return torch.cat([x, y], dim=1)


@persistence.persistent_class
class ConvLayer(torch.nn.Module):
    """Equalised-lr convolution + bias + activation; `down=2` blurs, convolves and average-pools (SG1 D)."""

    def __init__(self, in_channels, out_channels, kernel_size, activation='lrelu', down=1, blur_filter=[1, 2, 1]):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.down = down
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / np.sqrt(in_channels * kernel_size ** 2)
        if down > 1:
            self.register_buffer('blur_filter', upfirdn2d.setup_filter(blur_filter))

    def forward(self, x):
        """x: [N, in_channels, H, W] -> [N, out_channels, H / down, W / down]."""
        if self.down > 1:
            x = upfirdn2d.filter2d(x, self.blur_filter)
        x = conv2d_gradfix.conv2d(x, (self.weight * self.weight_gain).to(x.dtype), padding=self.weight.shape[2] // 2)
        if self.down > 1:
            x = torch.nn.functional.avg_pool2d(x, self.down)
        return bias_act.bias_act(x, self.bias.to(x.dtype), act=self.activation)

    def extra_repr(self):
        return f'in_channels={self.in_channels:d}, out_channels={self.out_channels:d}, down={self.down}'


@persistence.persistent_class
class DiscriminatorLevel(torch.nn.Module):
    """One resolution of the progressive D: fromrgb, and two convs down to the next level (or the 4x4 head)."""

    def __init__(self, resolution, in_channels, out_channels, img_channels, out_features=1, mbstd_group_size=4):
        super().__init__()
        self.resolution = resolution
        self.mbstd_group_size = mbstd_group_size
        self.fromrgb = ConvLayer(img_channels, in_channels, kernel_size=1)
        if resolution > 4:
            self.conv0 = ConvLayer(in_channels, in_channels, kernel_size=3)
            self.conv1 = ConvLayer(in_channels, out_channels, kernel_size=3, down=2)
        else:
            self.conv = ConvLayer(in_channels + 1, in_channels, kernel_size=3)
            self.fc = FullyConnectedLayer(in_channels * 16, out_channels, activation='lrelu')
            self.out = FullyConnectedLayer(out_channels, out_features)

    def forward(self, x):
        """x: [N, in_channels, res, res] -> [N, out_channels, res/2, res/2], or scores [N, out_features] at 4x4."""
        if self.resolution > 4:
            return self.conv1(self.conv0(x))
        x = self.conv(minibatch_stddev(x, self.mbstd_group_size))
        return self.out(self.fc(x.flatten(1)))

    def extra_repr(self):
        return f'resolution={self.resolution:d}'


@persistence.persistent_class
class Discriminator(torch.nn.Module):
    def __init__(self,
        c_dim,                      # Conditioning label dimensionality; > 0 = one score per class, picked by c.
        img_resolution,             # Input resolution (power of two >= 4).
        img_channels,               # Number of input color channels.
        channel_base    = 16384,    # Channels at resolution r: min(channel_base // r, channel_max).
        channel_max     = 512,
        mbstd_group_size = 4,       # Minibatch standard deviation group size (ProGAN Sec. 3).
        **_unused,                  # Arguments of the StyleGAN2 D that train.py passes (block_kwargs, ...).
    ):
        super().__init__()
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(self.img_resolution_log2, 1, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        for res in self.block_resolutions:
            out_channels = channels[res // 2] if res > 4 else channels[4]
            setattr(self, f'b{res}', DiscriminatorLevel(res, channels[res], out_channels, img_channels,
                                                        out_features=max(c_dim, 1), mbstd_group_size=mbstd_group_size))
        self.register_buffer('lod', torch.zeros([]))

    def forward(self, img, c, update_emas=False, **_block_kwargs):
        """img: [N, img_channels, res, res], c: [N, c_dim] -> scores [N, 1]."""
        _ = update_emas
        misc.assert_shape(img, [None, self.img_channels, self.img_resolution, self.img_resolution])
        top_level = self.img_resolution_log2 - float(self.lod)
        img = img.to(torch.float32)
        x = None
        for res in self.block_resolutions:
            level = getattr(self, f'b{res}')
            weight = fade_weight(res, top_level)
            if x is None and res > 4 and weight >= 1:
                img = torch.nn.functional.avg_pool2d(img, 2)  # Not faded in yet: read the coarser image.
                continue
            if x is None:
                x = level.fromrgb(img)
            x = level(x)
            if res > 4 and 0 < weight:
                img = torch.nn.functional.avg_pool2d(img, 2)
                x = torch.lerp(x, getattr(self, f'b{res // 2}').fromrgb(img), weight)
        if self.c_dim > 0:  # Mescheder et al. 2018, "LabelSwitch": the score of the sample's class.
            x = (x * c.to(x.dtype)).sum(dim=1, keepdim=True)
        return x

    def extra_repr(self):
        return f'c_dim={self.c_dim:d}, img_resolution={self.img_resolution:d}, img_channels={self.img_channels:d}'

#----------------------------------------------------------------------------
