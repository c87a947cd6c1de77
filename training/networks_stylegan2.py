"""StyleGAN2 generator and discriminator.

Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN" (CVPR 2020), referred to below as
"SG2". The mapping network and style injection come from StyleGAN (Karras et al. 2019, "SG1"); SG2 replaces AdaIN
by weight modulation/demodulation (Sec. 2.2, Eq. 1-3), uses skip connections in G and residual connections in D
(Sec. 4.1, Fig. 7) and keeps equalized learning rate and minibatch standard deviation from ProGAN.

Parameter and buffer names, constructor arguments and call signatures follow the official NVlabs layout so that
weights and pickles are interchangeable; see DESIGN.md sections 3 and 4. This module imports only numpy, torch
and torch_utils so that its source (embedded in pickles) also runs under the official package.

Loading an official pickle restores each object's official `__dict__` onto these classes without calling
`__init__`, so forward() and extra_repr() read only attributes that every official StyleGAN2 family stores
(tensor shapes are used instead of attributes that SG2-ADA-era objects lack, e.g. `in_channels` of layers).
"""

import numpy as np
import torch

from torch_utils import misc
from torch_utils import persistence
from torch_utils.ops import bias_act
from torch_utils.ops import conv2d_resample
from torch_utils.ops import fma
from torch_utils.ops import upfirdn2d


#----------------------------------------------------------------------------
# Non-square images (not in the official code): `img_aspect = [aw, ah]` makes the images aw*R wide and ah*R high
# (R = img_resolution, the shorter side; aw, ah powers of two, one of them 1). Every block keeps its square
# name and channel count (b4 ... bR) and works on a [res*ah, res*aw] map: a rectangular constant input in G, a
# rectangular 4x4*aspect map in D's epilogue. Layer `resolution`s are then [height, width] lists; square
# networks keep plain ints, so their parameters, buffers and pickles are exactly the official ones.

def block_resolution(res, img_aspect):
    """What a block at square resolution `res` is given: res itself (square) or [res*ah, res*aw]."""
    if img_aspect is None or tuple(img_aspect) == (1, 1):
        return res
    return [res * int(img_aspect[1]), res * int(img_aspect[0])]


def resolution_hw(resolution):
    """[height, width] of a layer resolution: an int (square) or a [height, width] list."""
    if isinstance(resolution, (list, tuple, np.ndarray)):
        return [int(resolution[0]), int(resolution[1])]
    return [int(resolution), int(resolution)]


def check_img_aspect(img_aspect):
    """None or [aw, ah], powers of two with min(aw, ah) == 1; returns it as a tuple (1, 1 for None)."""
    aspect = (1, 1) if img_aspect is None else tuple(int(v) for v in img_aspect)
    assert len(aspect) == 2 and min(aspect) == 1 and all(v >= 1 and v & (v - 1) == 0 for v in aspect), \
        f'img_aspect must be [width, height] multiples, powers of two, one of them 1; got {img_aspect}'
    return aspect

# Constant: True = the faster equivalent evaluations below (demodulation coefficients without per-sample weights;
# non-fused modulated convolution by default on CPU). bench/run_all.py's plain reference path and the tests that
# compare the two set it False. Either way the results agree to float rounding.
_FAST_PATHS_ENABLED = True

def _cpu_channels_last(device_type, fused_modconv=False):
    """Run a block's activations channels_last on CPU? oneDNN's transposed and strided convolutions (the up/down
    layers) and depthwise FIR filters are 1.3-1.8x faster on NHWC there, 3x3 convolutions as fast; the grouped conv
    of fused modulation is left alone. Same results to float rounding (a layout, not a formula)."""
    return device_type == 'cpu' and not fused_modconv and _FAST_PATHS_ENABLED


def _half_dtype(module):
    """Reduced precision of a use_fp16 layer: float16 (official), or bfloat16 where training/accel.py set
    module.mixed_precision = 'bfloat16' (a plain string, so that pickles stay loadable everywhere). float16 runs
    only on CUDA; bfloat16 runs on any device."""
    return torch.bfloat16 if getattr(module, 'mixed_precision', None) == 'bfloat16' else torch.float16


#----------------------------------------------------------------------------
# Pixel-norm style normalisation of the latent inputs (SG1 Sec. 2 / ProGAN Sec. 4.2): scale each vector to unit
# second moment, so the mapping network sees inputs on the unit sphere (times sqrt(dim)).

@misc.profiled_function
def normalize_2nd_moment(x, dim=1, eps=1e-8):
    """Divide x by the root-mean-square of its entries along `dim` (shape preserved)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()

#----------------------------------------------------------------------------
# Modulated convolution, SG2 Sec. 2.2:
#   Eq. 1  modulation:    w'_ijk  = s_i * w_ijk                       (s = per-sample style of input channel i)
#   Eq. 3  demodulation:  w''_ijk = w'_ijk / sqrt(sum_{i,k} w'_ijk^2 + eps)   (j = output channel, k = tap)
# Eq. 2 is the expected output std that Eq. 3 normalises back to one. Two equivalent evaluations:
#   fused:     build the [N, O, I, k, k] per-sample weights and run one grouped convolution (groups = N);
#   non-fused: scale the activations by s before a shared convolution and by the demodulation coefficients
#              after it (SG2 Sec. 2.2 notes both forms are equivalent; the fused one is faster at inference).

def _prenormalize_for_fp16(weight, styles):
    """Rescale weight and styles by their max-norms so that Eq. 1-3 cannot overflow in float16.
    Demodulation (Eq. 3) cancels any per-output-channel scale of w and any global scale of s, so this
    changes nothing mathematically."""
    in_channels, kh, kw = weight.shape[1:]
    weight = weight * (1 / np.sqrt(in_channels * kh * kw) / weight.norm(float('inf'), dim=[1, 2, 3], keepdim=True))
    styles = styles / styles.norm(float('inf'), dim=1, keepdim=True)
    return weight, styles


@misc.profiled_function
def modulated_conv2d(
    x,                          # Input activations: [N, in_channels, H, W].
    weight,                     # Shared weights: [out_channels, in_channels, kh, kw].
    styles,                     # Per-sample modulation coefficients s: [N, in_channels].
    noise           = None,     # Noise to add after demodulation: broadcastable to [N, out_channels, H', W'], or None.
    up              = 1,        # Integer upsampling factor.
    down            = 1,        # Integer downsampling factor.
    padding         = 0,        # Padding with respect to the upsampled image.
    resample_filter = None,     # 2-D low-pass filter from upfirdn2d.setup_filter(), None = box.
    demodulate      = True,     # Apply Eq. 3?
    flip_weight     = True,     # False = true convolution (needed by the up=2 transposed path), True = correlation.
    fused_modconv   = True,     # One grouped convolution (True) or activation scaling around a shared one (False)?
):
    """SG2 Eq. 1-3 convolution; returns [N, out_channels, H', W'] in x.dtype."""
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    misc.assert_shape(weight, [out_channels, in_channels, kh, kw])
    misc.assert_shape(x, [batch_size, in_channels, None, None])
    misc.assert_shape(styles, [batch_size, in_channels])

    if x.dtype == torch.float16 and demodulate:
        weight, styles = _prenormalize_for_fp16(weight, styles)

    # Eq. 3 coefficients 1/sigma_j, with sigma_j^2 = sum_i s_i^2 sum_k w_ijk^2: a [N, I] x [I, O] product instead of
    # materialising the per-sample weights of Eq. 1 (which the non-fused path never needs).
    dcoefs = None
    if demodulate and _FAST_PATHS_ENABLED:
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [N, O]
    elif demodulate:  # The plain formula: Eq. 1 weights materialised, then Eq. 3.
        w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)  # [N, O, I, kh, kw]
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, O]

    if not fused_modconv:
        return _modulated_conv2d_nonfused(x, weight, styles, dcoefs, noise, up, down, padding,
                                          resample_filter, flip_weight)

    # Fused: Eq. 1 (and 3) as per-sample weights, [N, O, I, kh, kw], built with one large multiply; then fold the
    # batch into channels and convolve each sample with its own weights (groups = N).
    scales = styles.reshape(batch_size, 1, -1)  # [N, 1, I]
    if demodulate:
        scales = scales * dcoefs.reshape(batch_size, -1, 1)  # [N, O, I]
    w = weight.unsqueeze(0) * scales.unsqueeze(3).unsqueeze(4)
    with misc.suppress_tracer_warnings():
        batch_size = int(batch_size)
    x = x.reshape(1, -1, *x.shape[2:])  # [1, N*I, H, W]
    w = w.reshape(-1, in_channels, kh, kw)  # [N*O, I, kh, kw]
    x = conv2d_resample.conv2d_resample(x=x, w=w.to(x.dtype), f=resample_filter, up=up, down=down,
                                        padding=padding, groups=batch_size, flip_weight=flip_weight)
    x = x.reshape(batch_size, -1, *x.shape[2:])  # [N, O, H', W']
    if noise is not None:
        x = x.add_(noise)
    return x


def _modulated_conv2d_nonfused(x, weight, styles, dcoefs, noise, up, down, padding, resample_filter, flip_weight):
    """Non-fused evaluation of Eq. 1-3: x*s -> shared conv -> *dcoefs (+ noise, fused multiply-add)."""
    batch_size = x.shape[0]
    x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
    x = conv2d_resample.conv2d_resample(x=x, w=weight.to(x.dtype), f=resample_filter, up=up, down=down,
                                        padding=padding, flip_weight=flip_weight)
    if dcoefs is not None and noise is not None:
        x = fma.fma(x, dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1), noise.to(x.dtype))
    elif dcoefs is not None:
        x = x * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
    elif noise is not None:
        x = x.add_(noise.to(x.dtype))
    return x

#----------------------------------------------------------------------------
# Equalized-learning-rate dense layer (ProGAN Sec. 4.1): weights stored as N(0, 1) / lr_multiplier and scaled at
# run time by lr_multiplier / sqrt(fan_in), so every layer learns at the same speed under Adam. SG1 App. C uses
# lr_multiplier = 0.01 in the mapping network.

@persistence.persistent_class
class FullyConnectedLayer(torch.nn.Module):
    def __init__(self,
        in_features,                # Number of input features.
        out_features,               # Number of output features.
        bias            = True,     # Add a bias?
        activation      = 'linear', # Activation name from bias_act.activation_funcs.
        lr_multiplier   = 1,        # Learning-rate multiplier (equalized lr).
        bias_init       = 0,        # Initial value of the bias.
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = torch.nn.Parameter(torch.full([out_features], np.float32(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        """x: [N, in_features] -> [N, out_features]."""
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == 'linear' and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        x = x.matmul(w.t())
        return bias_act.bias_act(x, b, act=self.activation)

    def extra_repr(self):
        out_features, in_features = self.weight.shape
        return f'in_features={in_features:d}, out_features={out_features:d}, activation={self.activation:s}'

#----------------------------------------------------------------------------
# Equalized-learning-rate convolution with optional up/down-sampling through the [1,3,3,1] low-pass filter
# (SG1 Sec. 2 cites "Making convolutional networks shift-invariant again"; SG2 App. B uses it for every resampling).

@persistence.persistent_class
class Conv2dLayer(torch.nn.Module):
    def __init__(self,
        in_channels,                    # Number of input channels.
        out_channels,                   # Number of output channels.
        kernel_size,                    # Width and height of the kernel.
        bias            = True,         # Add a bias?
        activation      = 'linear',     # Activation name from bias_act.activation_funcs.
        up              = 1,            # Integer upsampling factor.
        down            = 1,            # Integer downsampling factor.
        resample_filter = [1, 3, 3, 1], # Low-pass filter applied when resampling.
        conv_clamp      = None,         # Clamp the output to +-X, None = no clamping.
        channels_last   = False,        # Store the weights in channels_last memory format?
        trainable       = True,         # False = weights are buffers (frozen D layers, SG2-ADA freeze-D).
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size ** 2))
        self.act_gain = bias_act.activation_funcs[activation].def_gain

        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        bias = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = torch.nn.Parameter(weight)
            self.bias = torch.nn.Parameter(bias) if bias is not None else None
        else:
            self.register_buffer('weight', weight)
            if bias is not None:
                self.register_buffer('bias', bias)
            else:
                self.bias = None

    def forward(self, x, gain=1):
        """x: [N, in_channels, H, W] -> [N, out_channels, H*up/down, W*up/down]; gain scales output and clamp."""
        w = self.weight * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        flip_weight = (self.up == 1)  # The transposed (up=2) path is cheaper without flipping.
        x = conv2d_resample.conv2d_resample(x=x, w=w.to(x.dtype), f=self.resample_filter, up=self.up,
                                            down=self.down, padding=self.padding, flip_weight=flip_weight)
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act.bias_act(x, b, act=self.activation, gain=act_gain, clamp=act_clamp)

    def extra_repr(self):
        out_channels, in_channels = self.weight.shape[:2]
        return ', '.join([
            f'in_channels={in_channels:d}, out_channels={out_channels:d}, activation={self.activation:s}',
            f'up={self.up}, down={self.down}'])

#----------------------------------------------------------------------------
# Mapping network f: Z -> W (SG1 Sec. 2, Fig. 1b): an MLP of `num_layers` equalized-lr layers with lrelu.
# Conditioning (SG2-ADA App. D): the label c is embedded by one dense layer, each of z and embed(c) normalised
# to unit second moment, and the two concatenated. The tracked average w_avg serves the truncation trick
# (SG1 Sec. 5.2 / App. B): w' = w_avg + psi * (w - w_avg), applied to the first `truncation_cutoff` ws.

@persistence.persistent_class
class MappingNetwork(torch.nn.Module):
    def __init__(self,
        z_dim,                      # Input latent (Z) dimensionality, 0 = no latent.
        c_dim,                      # Conditioning label (C) dimensionality, 0 = no label.
        w_dim,                      # Intermediate latent (W) dimensionality.
        num_ws,                     # Number of ws to broadcast to, None = return [N, w_dim] without broadcast.
        num_layers      = 8,        # Number of mapping layers.
        embed_features  = None,     # Label embedding dimensionality, None = same as w_dim.
        layer_features  = None,     # Hidden layer width, None = same as w_dim.
        activation      = 'lrelu',  # Activation of every layer.
        lr_multiplier   = 0.01,     # Learning-rate multiplier of the mapping layers.
        w_avg_beta      = 0.998,    # Decay of the running w average, None = do not track.
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta

        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features_list = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]

        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features_list[idx], features_list[idx + 1], activation=activation,
                                        lr_multiplier=lr_multiplier)
            setattr(self, f'fc{idx}', layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer('w_avg', torch.zeros([w_dim]))

    def _embed_inputs(self, z, c):
        """Normalised z and/or embedded c, concatenated: [N, z_dim + embed_features] float32."""
        x = None
        if self.z_dim > 0:
            misc.assert_shape(z, [None, self.z_dim])
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            misc.assert_shape(c, [None, self.c_dim])
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        return x

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        """z: [N, z_dim], c: [N, c_dim] -> ws [N, num_ws, w_dim] (or [N, w_dim] when num_ws is None)."""
        x = self._embed_inputs(z, c)
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
# One synthesis layer (SG2 Fig. 2c/d): affine A maps w to the style s (bias initialised to 1 so that s starts
# near 1), modulated/demodulated 3x3 convolution (Eq. 1-3), per-pixel noise B scaled by a learned strength
# (SG1 Sec. 3.2), bias and lrelu. `noise_const` is a fixed noise image used by noise_mode='const'.

@persistence.persistent_class
class SynthesisLayer(torch.nn.Module):
    def __init__(self,
        in_channels,                    # Number of input channels.
        out_channels,                   # Number of output channels.
        w_dim,                          # Intermediate latent (W) dimensionality.
        resolution,                     # Output resolution.
        kernel_size     = 3,            # Convolution kernel size.
        up              = 1,            # Integer upsampling factor.
        use_noise       = True,         # Add per-pixel noise?
        activation      = 'lrelu',      # Activation name from bias_act.activation_funcs.
        resample_filter = [1, 3, 3, 1], # Low-pass filter applied when upsampling.
        conv_clamp      = None,         # Clamp the output to +-X, None = no clamping.
        channels_last   = False,        # Store the weights in channels_last memory format?
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = bias_act.activation_funcs[activation].def_gain

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format))
        if use_noise:
            self.register_buffer('noise_const', torch.randn(resolution_hw(resolution)))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def _noise(self, x, noise_mode):
        """Scaled noise image broadcastable to the output, or None."""
        assert noise_mode in ['random', 'const', 'none'], f'noise_mode must be random|const|none, got {noise_mode!r}'
        if not self.use_noise or noise_mode == 'none':
            return None
        if noise_mode == 'const':
            return self.noise_const * self.noise_strength  # [H, W]
        shape = [x.shape[0], 1, *resolution_hw(self.resolution)]
        return torch.randn(shape, device=x.device) * self.noise_strength  # [N, 1, H, W]

    def forward(self, x, w, noise_mode='random', fused_modconv=True, gain=1):
        """x: [N, in_channels, res/up, res/up], w: [N, w_dim] -> [N, out_channels, res, res]."""
        in_height, in_width = (side // self.up for side in resolution_hw(self.resolution))
        misc.assert_shape(x, [None, self.weight.shape[1], in_height, in_width])
        styles = self.affine(w)
        noise = self._noise(x, noise_mode)
        flip_weight = (self.up == 1)  # The transposed (up=2) path is cheaper without flipping.
        x = modulated_conv2d(x=x, weight=self.weight, styles=styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, flip_weight=flip_weight,
                             fused_modconv=fused_modconv)
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act.bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=act_gain, clamp=act_clamp)

    def extra_repr(self):
        out_channels, in_channels = self.weight.shape[:2]
        return ', '.join([
            f'in_channels={in_channels:d}, out_channels={out_channels:d}, w_dim={self.affine.weight.shape[1]:d}',
            f'resolution={self.resolution:d}, up={self.up}, activation={self.activation:s}'])

#----------------------------------------------------------------------------
# tRGB (SG2 Sec. 4.1, Fig. 7b): modulated 1x1 convolution to image channels, *without* demodulation (Fig. 2
# caption); the equalized-lr gain is folded into the styles.

@persistence.persistent_class
class ToRGBLayer(torch.nn.Module):
    def __init__(self,
        in_channels,                # Number of input channels.
        out_channels,               # Number of image channels.
        w_dim,                      # Intermediate latent (W) dimensionality.
        kernel_size     = 1,        # Convolution kernel size.
        conv_clamp      = None,     # Clamp the output to +-X, None = no clamping.
        channels_last   = False,    # Store the weights in channels_last memory format?
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size ** 2))

    def forward(self, x, w, fused_modconv=True):
        """x: [N, in_channels, H, W], w: [N, w_dim] -> [N, out_channels, H, W]."""
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x=x, weight=self.weight, styles=styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)

    def extra_repr(self):
        out_channels, in_channels = self.weight.shape[:2]
        return f'in_channels={in_channels:d}, out_channels={out_channels:d}, w_dim={self.affine.weight.shape[1]:d}'

#----------------------------------------------------------------------------
# One resolution of the synthesis network (SG2 Fig. 7): the 4x4 block starts from a learned constant (SG1
# Sec. 2); the others upsample with conv0 (up=2) then apply conv1. Architectures (SG2 Sec. 4.1, Table 2):
#   'orig'   - tRGB only at the last block (progressive-growing-free SG1 layout);
#   'skip'   - every block adds its tRGB output to the upsampled running image (the SG2 default for G);
#   'resnet' - residual blocks, skip = 1x1 up-conv, both branches scaled by sqrt(1/2).

@persistence.persistent_class
class SynthesisBlock(torch.nn.Module):
    def __init__(self,
        in_channels,                        # Number of input channels, 0 = first block (learned constant input).
        out_channels,                       # Number of output channels.
        w_dim,                              # Intermediate latent (W) dimensionality.
        resolution,                         # Resolution of this block.
        img_channels,                       # Number of output color channels.
        is_last,                            # Is this the last block?
        architecture            = 'skip',   # 'orig', 'skip' or 'resnet'.
        resample_filter         = [1, 3, 3, 1],  # Low-pass filter applied when resampling.
        conv_clamp              = 256,      # Clamp conv outputs to +-X, None = no clamping.
        use_fp16                = False,    # Run this block in float16 (on CUDA only)?
        fp16_channels_last      = False,    # Use channels_last memory format with float16?
        fused_modconv_default   = True,     # Default of fused_modconv in forward(); 'inference_only' = not training.
        **layer_kwargs,                     # Extra arguments for SynthesisLayer.
    ):
        assert architecture in ['orig', 'skip', 'resnet'], f'architecture must be orig|skip|resnet: {architecture!r}'
        super().__init__()
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = (use_fp16 and fp16_channels_last)
        self.fused_modconv_default = fused_modconv_default
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0

        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, *resolution_hw(resolution)]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim=w_dim, resolution=resolution, up=2,
                                        resample_filter=resample_filter, conv_clamp=conv_clamp,
                                        channels_last=self.channels_last, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim=w_dim, resolution=resolution,
                                    conv_clamp=conv_clamp, channels_last=self.channels_last, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == 'skip':
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp,
                                    channels_last=self.channels_last)
            self.num_torgb += 1
        if in_channels != 0 and architecture == 'resnet':
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter, channels_last=self.channels_last)

    def _resolve_fused_modconv(self, fused_modconv, dtype, batch_size, device_type='cuda'):
        if fused_modconv is None and device_type == 'cpu' and batch_size > 1 and _FAST_PATHS_ENABLED:
            # On CPU the shared convolution beats the grouped one (1.4x for a 64px G at batch 4, 1.8x for a 32px G
            # training step); same result to rounding. For one sample both are one convolution: fused is leaner.
            return False
        if fused_modconv is None:
            if not hasattr(self, 'fused_modconv_default'):
                # SG2-ADA-era pickles predate this attribute; their blocks fused only outside training, and only
                # in float32 or for a batch of one (a grouped fp16 conv lost precision there).
                return (not self.training) and (dtype == torch.float32 or batch_size == 1)
            fused_modconv = self.fused_modconv_default
        if fused_modconv == 'inference_only':
            fused_modconv = (not self.training)
        return fused_modconv

    def forward(self, x, img, ws, force_fp32=False, fused_modconv=None, update_emas=False, **layer_kwargs):
        """x: [N, in_channels, res/2, res/2] or None, img: [N, img_channels, res/2, res/2] or None,
        ws: [N, num_conv + num_torgb, w_dim] -> (x [N, out_channels, res, res], img [N, img_channels, res, res])."""
        _ = update_emas  # SG2 layers hold no EMA statistics.
        misc.assert_shape(ws, [None, self.num_conv + self.num_torgb, self.w_dim])
        w_iter = iter(ws.unbind(dim=1))
        # float16 only on CUDA: CPU half convolutions are slow or unsupported (the official code does the same).
        half = _half_dtype(self)
        if ws.device.type != 'cuda' and half == torch.float16:
            force_fp32 = True
        dtype = half if self.use_fp16 and not force_fp32 else torch.float32
        fused_modconv = self._resolve_fused_modconv(fused_modconv, dtype, ws.shape[0], ws.device.type)
        channels_last = (self.channels_last and not force_fp32) or _cpu_channels_last(ws.device.type, fused_modconv)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format

        if self.in_channels == 0:
            x = self.const.to(dtype=dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])  # [N, C, 4, 4]
            x = x.to(memory_format=memory_format)
        else:
            misc.assert_shape(x, [None, self.in_channels, *(side // 2 for side in resolution_hw(self.resolution))])
            x = x.to(dtype=dtype, memory_format=memory_format)

        if self.in_channels == 0:
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
        elif self.architecture == 'resnet':
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, gain=np.sqrt(0.5), **layer_kwargs)
            x = y.add_(x)
        else:
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)

        if img is not None:
            misc.assert_shape(img, [None, self.img_channels, *(side // 2 for side in resolution_hw(self.resolution))])
            img = upfirdn2d.upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == 'skip':
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = img.add_(y) if img is not None else y

        assert x.dtype == dtype
        assert img is None or img.dtype == torch.float32
        return x, img

    def extra_repr(self):
        return f'resolution={self.resolution}, architecture={self.architecture:s}'

#----------------------------------------------------------------------------
# Synthesis network g: W -> image (SG2 Fig. 7, App. B): one block per power-of-two resolution from 4x4 up to
# img_resolution, channels min(channel_base / res, channel_max), float16 in the top num_fp16_res resolutions
# (SG2-ADA App. D "mixed precision"). Each block reads num_conv + num_torgb consecutive ws; the tRGB of block r
# shares its w with conv0 of block 2r, so num_ws = 2 * log2(img_resolution) - 2.

@persistence.persistent_class
class SynthesisNetwork(torch.nn.Module):
    img_aspect = (1, 1)  # Class default: square (official pickles and square networks set nothing).

    def __init__(self,
        w_dim,                      # Intermediate latent (W) dimensionality.
        img_resolution,             # Output image resolution (power of two, >= 4).
        img_channels,               # Number of color channels.
        channel_base    = 32768,    # Overall multiplier for the number of channels.
        channel_max     = 512,      # Maximum number of channels in any layer.
        num_fp16_res    = 4,        # Use float16 for the N highest resolutions.
        img_aspect      = None,     # [aw, ah]: images aw*R wide, ah*R high (not official); None = square.
        **block_kwargs,             # Extra arguments for SynthesisBlock.
    ):
        assert img_resolution >= 4 and img_resolution & (img_resolution - 1) == 0, \
            f'img_resolution must be a power of two >= 4, got {img_resolution}'
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.num_fp16_res = num_fp16_res
        if img_aspect is not None:
            self.img_aspect = check_img_aspect(img_aspect)
        self.block_resolutions = [2 ** i for i in range(2, self.img_resolution_log2 + 1)]
        channels_dict = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels_dict[res // 2] if res > 4 else 0
            is_last = (res == self.img_resolution)
            block = SynthesisBlock(in_channels, channels_dict[res], w_dim=w_dim,
                                   resolution=block_resolution(res, img_aspect), img_channels=img_channels,
                                   is_last=is_last, use_fp16=(res >= fp16_resolution),
                                   **block_kwargs)
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, f'b{res}', block)

    def forward(self, ws, **block_kwargs):
        """ws: [N, num_ws, w_dim] -> img [N, img_channels, img_resolution, img_resolution] float32."""
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
        ws = ws.to(torch.float32)
        block_ws = []
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f'b{res}')
            block_ws.append(ws.narrow(1, w_idx, block.num_conv + block.num_torgb))
            w_idx += block.num_conv

        x = img = None
        for res, cur_ws in zip(self.block_resolutions, block_ws):
            x, img = getattr(self, f'b{res}')(x, img, cur_ws, **block_kwargs)
        return img

    def extra_repr(self):
        return ', '.join([
            f'w_dim={self.w_dim:d}, num_ws={self.num_ws:d}',
            f'img_resolution={self.img_resolution:d}, img_channels={self.img_channels:d}',
            f'num_fp16_res={getattr(self, "num_fp16_res", "?")}'])

#----------------------------------------------------------------------------
# Generator G = g(f(z, c)) (SG1 Fig. 1b).

@persistence.persistent_class
class Generator(torch.nn.Module):
    @property
    def img_aspect(self):
        """[aw, ah] of non-square images ((1, 1) = square): outputs are [N, C, ah*R, aw*R]."""
        return self.synthesis.img_aspect

    def __init__(self,
        z_dim,                      # Input latent (Z) dimensionality.
        c_dim,                      # Conditioning label (C) dimensionality, 0 = unconditional.
        w_dim,                      # Intermediate latent (W) dimensionality.
        img_resolution,             # Output resolution.
        img_channels,               # Number of output color channels.
        mapping_kwargs  = {},       # Arguments for MappingNetwork.
        **synthesis_kwargs,         # Arguments for SynthesisNetwork.
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
        synthesis_kwargs: noise_mode ('random'|'const'|'none'), force_fp32, fused_modconv."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)

#----------------------------------------------------------------------------
# One resolution of the residual discriminator (SG2 Fig. 7c, App. B): conv0 3x3, conv1 3x3 with 2x downsampling,
# and a 1x1 down-conv skip, both branches scaled by sqrt(1/2). 'skip' feeds a downsampled image to every block
# through fromrgb; 'orig' only to the first. Layers with index < freeze_layers are frozen (SG2-ADA freeze-D,
# Mo et al. 2020): their weights become buffers.

@persistence.persistent_class
class DiscriminatorBlock(torch.nn.Module):
    def __init__(self,
        in_channels,                        # Number of input channels, 0 = first block.
        tmp_channels,                       # Number of intermediate channels.
        out_channels,                       # Number of output channels.
        resolution,                         # Resolution of this block.
        img_channels,                       # Number of input color channels.
        first_layer_idx,                    # Index of the first layer (for freeze_layers).
        architecture        = 'resnet',     # 'orig', 'skip' or 'resnet'.
        activation          = 'lrelu',      # Activation name from bias_act.activation_funcs.
        resample_filter     = [1, 3, 3, 1], # Low-pass filter applied when resampling.
        conv_clamp          = None,         # Clamp conv outputs to +-X, None = no clamping.
        use_fp16            = False,        # Run this block in float16 (on CUDA only)?
        fp16_channels_last  = False,        # Use channels_last memory format with float16?
        freeze_layers       = 0,            # Freeze the first N layers of the whole discriminator.
    ):
        assert in_channels in [0, tmp_channels], f'in_channels must be 0 or tmp_channels, got {in_channels}'
        assert architecture in ['orig', 'skip', 'resnet'], f'architecture must be orig|skip|resnet: {architecture!r}'
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = (use_fp16 and fp16_channels_last)
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.num_layers = 0

        def next_trainable():
            # Layers are numbered through the whole D; the first freeze_layers of them are frozen.
            trainable = (first_layer_idx + self.num_layers >= freeze_layers)
            self.num_layers += 1
            return trainable

        common = dict(activation=activation, conv_clamp=conv_clamp, channels_last=self.channels_last)
        if in_channels == 0 or architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, trainable=next_trainable(),
                                       **common)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, trainable=next_trainable(), **common)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, down=2, trainable=next_trainable(),
                                 resample_filter=resample_filter, **common)
        if architecture == 'resnet':
            self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                                    trainable=next_trainable(), resample_filter=resample_filter,
                                    channels_last=self.channels_last)

    def forward(self, x, img, force_fp32=False):
        """x: [N, in_channels, res, res] or None, img: [N, img_channels, res, res] or None
        -> (x [N, out_channels, res/2, res/2], img [N, img_channels, res/2, res/2] or None)."""
        # float16 only on CUDA (see SynthesisBlock.forward).
        half = _half_dtype(self)
        if (x if x is not None else img).device.type != 'cuda' and half == torch.float16:
            force_fp32 = True
        dtype = half if self.use_fp16 and not force_fp32 else torch.float32
        device_type = (x if x is not None else img).device.type
        channels_last = (self.channels_last and not force_fp32) or _cpu_channels_last(device_type)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format

        if x is not None:
            misc.assert_shape(x, [None, self.in_channels, *resolution_hw(self.resolution)])
            x = x.to(dtype=dtype, memory_format=memory_format)

        if self.in_channels == 0 or self.architecture == 'skip':
            misc.assert_shape(img, [None, self.img_channels, *resolution_hw(self.resolution)])
            img = img.to(dtype=dtype, memory_format=memory_format)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = upfirdn2d.downsample2d(img, self.resample_filter) if self.architecture == 'skip' else None

        if self.architecture == 'resnet':
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=np.sqrt(0.5))
            x = y.add_(x)
        else:
            x = self.conv0(x)
            x = self.conv1(x)

        assert x.dtype == dtype
        return x, img

    def extra_repr(self):
        return f'resolution={self.resolution}, architecture={self.architecture:s}'

#----------------------------------------------------------------------------
# Minibatch standard deviation (ProGAN Sec. 3; SG2 App. B uses groups of 4 and 1 channel): split the batch into
# groups of group_size samples (sample i joins group i mod N/G), compute the std of every feature over each group,
# average over features (per feature group of C/num_channels channels) and append the result as extra channels.

@persistence.persistent_class
class MinibatchStdLayer(torch.nn.Module):
    def __init__(self, group_size, num_channels=1):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x):
        """x: [N, C, H, W] -> [N, C + num_channels, H, W]; N must be divisible by min(group_size, N)."""
        N, C, H, W = x.shape
        with misc.suppress_tracer_warnings():
            G = torch.min(torch.as_tensor(self.group_size), torch.as_tensor(N)) if self.group_size is not None else N
            if not torch.jit.is_tracing() and N % int(G) != 0:
                raise ValueError(f'MinibatchStdLayer: the batch ({N} images per GPU) must be a multiple of the '
                                 f'group size {int(G)}; change --batch-gpu or --mbstd-group')
        F = self.num_channels
        c = C // F

        y = x.reshape(G, -1, F, c, H, W)    # [G, M, F, c, H, W]  sample index = g * M + m.
        y = y - y.mean(dim=0)               # Deviation from the group mean.
        y = y.square().mean(dim=0)          # [M, F, c, H, W] variance over the group.
        y = (y + 1e-8).sqrt()               # Standard deviation.
        y = y.mean(dim=[2, 3, 4])           # [M, F] averaged over channels and pixels.
        y = y.reshape(-1, F, 1, 1)          # [M, F, 1, 1]
        y = y.repeat(G, 1, H, W)            # [N, F, H, W] back to every sample of its group.
        return torch.cat([x, y], dim=1)

    def extra_repr(self):
        return f'group_size={self.group_size}, num_channels={self.num_channels:d}'

#----------------------------------------------------------------------------
# 4x4 head of D (SG2 App. B, SG2-ADA App. D): minibatch std, 3x3 conv, dense, output. For a conditional D the
# output is cmap_dim-dimensional and projected onto the embedded label (Miyato & Koyama 2018, projection D):
# logit = <out(x), cmap> / sqrt(cmap_dim).

@persistence.persistent_class
class DiscriminatorEpilogue(torch.nn.Module):
    def __init__(self,
        in_channels,                    # Number of input channels.
        cmap_dim,                       # Dimensionality of the projected label, 0 = unconditional.
        resolution,                     # Resolution of this block (4).
        img_channels,                   # Number of input color channels.
        architecture        = 'resnet', # 'orig', 'skip' or 'resnet'.
        mbstd_group_size    = 4,        # Group size of the minibatch std layer, None = whole minibatch.
        mbstd_num_channels  = 1,        # Number of minibatch std features, 0 = disable.
        activation          = 'lrelu',  # Activation name from bias_act.activation_funcs.
        conv_clamp          = None,     # Clamp conv outputs to +-X, None = no clamping.
    ):
        assert architecture in ['orig', 'skip', 'resnet'], f'architecture must be orig|skip|resnet: {architecture!r}'
        super().__init__()
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture

        if architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation,
                                conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * int(np.prod(resolution_hw(resolution))), in_channels,
                                      activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x, img, cmap, force_fp32=False):
        """x: [N, in_channels, 4, 4], img: [N, img_channels, 4, 4] (skip only), cmap: [N, cmap_dim] -> [N, 1]."""
        _ = force_fp32  # The head always runs in float32.
        misc.assert_shape(x, [None, self.in_channels, *resolution_hw(self.resolution)])
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        if self.architecture == 'skip':
            misc.assert_shape(img, [None, self.img_channels, *resolution_hw(self.resolution)])
            img = img.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            x = x + self.fromrgb(img)

        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)  # [N, max(cmap_dim, 1)]

        if self.cmap_dim > 0:
            misc.assert_shape(cmap, [None, self.cmap_dim])
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))
        assert x.dtype == torch.float32
        return x

    def extra_repr(self):
        return f'resolution={self.resolution}, architecture={self.architecture:s}'

#----------------------------------------------------------------------------
# Discriminator (SG2 Fig. 7c, App. B): one block per resolution from img_resolution down to 8, then the 4x4
# epilogue; conditional via a label-only MappingNetwork producing cmap (SG2-ADA App. D).

@persistence.persistent_class
class Discriminator(torch.nn.Module):
    img_aspect = (1, 1)  # Class default: square (see block_resolution()).

    def __init__(self,
        c_dim,                          # Conditioning label (C) dimensionality, 0 = unconditional.
        img_resolution,                 # Input resolution (power of two, >= 4).
        img_channels,                   # Number of input color channels.
        architecture        = 'resnet', # 'orig', 'skip' or 'resnet'.
        channel_base        = 32768,    # Overall multiplier for the number of channels.
        channel_max         = 512,      # Maximum number of channels in any layer.
        num_fp16_res        = 4,        # Use float16 for the N highest resolutions.
        conv_clamp          = 256,      # Clamp conv outputs to +-X, None = no clamping.
        cmap_dim            = None,     # Dimensionality of the projected label, None = channels at 4x4.
        block_kwargs        = {},       # Arguments for DiscriminatorBlock.
        mapping_kwargs      = {},       # Arguments for MappingNetwork.
        epilogue_kwargs     = {},       # Arguments for DiscriminatorEpilogue.
        img_aspect          = None,     # [aw, ah]: images aw*R wide, ah*R high (not official); None = square.
    ):
        assert img_resolution >= 4 and img_resolution & (img_resolution - 1) == 0, \
            f'img_resolution must be a power of two >= 4, got {img_resolution}'
        super().__init__()
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        if img_aspect is not None:
            self.img_aspect = check_img_aspect(img_aspect)
        self.block_resolutions = [2 ** i for i in range(self.img_resolution_log2, 2, -1)]
        channels_dict = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        if cmap_dim is None:
            cmap_dim = channels_dict[4]
        if c_dim == 0:
            cmap_dim = 0

        common_kwargs = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        cur_layer_idx = 0
        for res in self.block_resolutions:
            in_channels = channels_dict[res] if res < img_resolution else 0
            block = DiscriminatorBlock(in_channels, channels_dict[res], channels_dict[res // 2],
                                       resolution=block_resolution(res, img_aspect), first_layer_idx=cur_layer_idx,
                                       use_fp16=(res >= fp16_resolution),
                                       **block_kwargs, **common_kwargs)
            setattr(self, f'b{res}', block)
            cur_layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None,
                                          **mapping_kwargs)
        self.b4 = DiscriminatorEpilogue(channels_dict[4], cmap_dim=cmap_dim, resolution=block_resolution(4, img_aspect),
                                        **epilogue_kwargs,
                                        **common_kwargs)

    def forward(self, img, c, update_emas=False, **block_kwargs):
        """img: [N, img_channels, img_resolution, img_resolution], c: [N, c_dim] -> logits [N, 1] float32."""
        _ = update_emas  # D holds no EMA statistics.
        misc.assert_shape(img, [None, self.img_channels, self.img_resolution * self.img_aspect[1],
                                self.img_resolution * self.img_aspect[0]])
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f'b{res}')(x, img, **block_kwargs)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)

    def extra_repr(self):
        return f'c_dim={self.c_dim:d}, img_resolution={self.img_resolution:d}, img_channels={self.img_channels:d}'

#----------------------------------------------------------------------------
