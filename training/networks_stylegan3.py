"""StyleGAN3 generator: alias-free synthesis network with Fourier-feature input.

Implements "Alias-Free Generative Adversarial Networks" (Karras et al., NeurIPS 2021), configs T and R:
- mapping network (2 layers by default) with a tracked `w_avg` for truncation,
- `SynthesisInput`: Fourier features evaluated at positions transformed by a per-sample rotation/translation
  (from w) and a user `transform` (the inverse of the desired output transform), Sec. 3.2 / App. F,
- 14 `SynthesisLayer`s + ToRGB: modulated conv -> upsample -> leaky ReLU -> lowpass -> downsample, with the
  cutoff / stopband / sampling-rate schedule of App. F (Fig. 4b) and Kaiser-windowed FIR filters,
  with radially symmetric (jinc) downsampling filters for the rotation-equivariant config R (Sec. 3.2).

Parameter and buffer names follow the official layout exactly (`synthesis.L{i}_{size}_{channels}.*`,
`input.freqs`, `input.phases`, `input.transform`, `magnitude_ema`, `up_filter`, `down_filter`), so weights are
interchangeable. Plain attributes (`in_size`, `up_factor`, `padding`, `layer_names`, ...) carry the names an
official object's pickled state uses, because persistence.py restores such state onto these classes without
calling `__init__`.

Mixed precision: a layer runs in float16 when its (output) sampling rate times 2**num_fp16_res exceeds the output
resolution, and only on CUDA tensors: on CPU (and any non-CUDA device) every layer runs in float32, as the official
code does, since half-precision convolutions there are slow or unsupported; the output is float32 either way.

This module imports only numpy, scipy, torch and torch_utils, so that its source embedded in a pickle also runs
under the official package (DESIGN.md §4.3).
"""

import numpy as np
import scipy.signal
import scipy.special
import torch
from torch_utils import misc
from torch_utils import persistence
from torch_utils.ops import conv2d_gradfix
from torch_utils.ops import filtered_lrelu
from torch_utils.ops import bias_act

def _half_dtype(module):
    """Reduced precision of a use_fp16 layer: float16 (official), or bfloat16 where training/accel.py set
    module.mixed_precision = 'bfloat16' (a plain string, so that pickles stay loadable everywhere). float16 runs
    only on CUDA; bfloat16 runs on any device."""
    return torch.bfloat16 if getattr(module, 'mixed_precision', None) == 'bfloat16' else torch.float16

#----------------------------------------------------------------------------
# Pixelwise feature normalisation (Progressive GAN, Karras et al. 2018, Sec. 4.2), applied to z and the embedded c:
# unit second moment per sample.

@misc.profiled_function
def normalize_2nd_moment(x, dim=1, eps=1e-8):
    """Scale `x` so that mean(x**2) along `dim` is 1. x: [N, C] float -> same shape."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()

#----------------------------------------------------------------------------
# Modulated convolution: StyleGAN2 Eq. 1-3 (modulate, demodulate), plus the StyleGAN3 input gain
# (App. F: each layer's input is divided by the EMA of its RMS magnitude).

@misc.profiled_function
def modulated_conv2d(
    x,                  # Input tensor: [batch_size, in_channels, in_height, in_width].
    w,                  # Weight tensor: [out_channels, in_channels, kernel_height, kernel_width].
    s,                  # Style tensor: [batch_size, in_channels].
    demodulate  = True, # Divide each output channel by the norm of its modulated weights (StyleGAN2 Eq. 3)?
    padding     = 0,    # Zero padding on each side, in pixels.
    input_gain  = None, # Optional scale per input channel, broadcastable to [batch_size, in_channels].
    fused_modconv = True, # One grouped conv (True) or styles on the activations around a shared conv (False)?
):
    """Per-sample modulated 2-D cross-correlation. Returns [N, out_channels, H', W'].

    fused_modconv=False gives the same result (up to float rounding) without a batch-sized `groups`, so that a traced
    or ONNX graph keeps a dynamic batch axis."""
    batch_size = x.shape[0]
    out_channels, in_channels, kernel_h, kernel_w = w.shape
    misc.assert_shape(w, [out_channels, in_channels, kernel_h, kernel_w])
    misc.assert_shape(x, [batch_size, in_channels, None, None])
    misc.assert_shape(s, [batch_size, in_channels])

    # Pre-normalise weights and styles by constants that demodulation cancels anyway: keeps the products within
    # float16 range without changing the result.
    if demodulate:
        w = w * w.square().mean([1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean().rsqrt()

    if not fused_modconv:
        return _modulated_conv2d_nonfused(x, w, s, demodulate, padding, input_gain)

    # Eq. 1: w'_ijk = s_i * w_ijk, one weight tensor per sample.
    with misc.suppress_tracer_warnings():
        batch_size = int(batch_size)  # conv2d's groups must be an int: the fused form fixes the batch of a trace.
    w = w.unsqueeze(0) * s.reshape(batch_size, 1, in_channels, 1, 1)  # [N, O, I, kh, kw]

    # Eq. 3: w''_ijk = w'_ijk / sqrt(sum_ik w'_ijk^2 + eps).
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, O]
        w = w * dcoefs.reshape(batch_size, out_channels, 1, 1, 1)

    # Input normalisation (applied to the weights: equivalent to scaling x, cheaper).
    if input_gain is not None:
        input_gain = input_gain.expand(batch_size, in_channels)
        w = w * input_gain.reshape(batch_size, 1, in_channels, 1, 1)

    # The batch becomes the group dimension.
    x = x.reshape(1, batch_size * in_channels, *x.shape[2:])
    w = w.reshape(batch_size * out_channels, in_channels, kernel_h, kernel_w)
    x = conv2d_gradfix.conv2d(input=x, weight=w.to(x.dtype), padding=padding, groups=batch_size)
    return x.reshape(batch_size, out_channels, *x.shape[2:])


# Constant: True = on a CPU, inference on more than one sample takes the non-fused modulated convolution: one
# shared convolution instead of a batch-grouped one, which is also wide enough for the Winograd 3x3 path. Official
# widths, 64x64, batch 8, 2 threads: SG3-T 1.63x, SG3-R 1.28x faster; a training step gained nothing (0.95-1.05x),
# so training keeps the grouped form where G takes gradients. Where it records no graph (the discriminator's phases
# render fakes with G's parameters frozen), it is inference too. bench/run_all.py's plain path and the tests that
# compare the two set it False.
_FAST_PATHS_ENABLED = True


def _default_fused_modconv(device_type, batch_size, records_graph):
    """fused_modconv when the caller leaves it None: grouped (the official form) except for CPU inference (autograd
    records nothing for this layer) on batches > 1 (see _FAST_PATHS_ENABLED)."""
    cpu_inference = device_type == 'cpu' and batch_size > 1 and not records_graph
    return not (_FAST_PATHS_ENABLED and cpu_inference)


def _modulated_conv2d_nonfused(x, w, s, demodulate, padding, input_gain):
    """modulated_conv2d with the per-sample factors moved off the weights (w, s already pre-normalised):
    y = conv(x * s * input_gain, w) * dcoefs, dcoefs [N, O] = 1 / sqrt(sum_ik (s_i * w_oik)^2 + 1e-8)."""
    in_channels = w.shape[1]
    scale = s if input_gain is None else s * input_gain  # [N, I] (input_gain broadcasts: a scalar in SG3)
    x = x * scale.to(x.dtype).reshape(-1, in_channels, 1, 1)
    y = conv2d_gradfix.conv2d(input=x, weight=w.to(x.dtype), padding=padding)
    if demodulate:
        # Eq. 3 as an [N, I] x [I, O] product; demodulation sees the styles without the input gain, as in the fused
        # form, where input_gain is applied after the demodulation coefficients.
        dcoefs = (s.square() @ w.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [N, O]
        y = y * dcoefs.to(y.dtype).reshape(-1, w.shape[0], 1, 1)
    return y

#----------------------------------------------------------------------------
# Equalized-learning-rate dense layer (Karras et al. 2018, Sec. 4.1): weights stored as N(0, 1) / lr_multiplier,
# scaled at run time by lr_multiplier / sqrt(fan_in).

@persistence.persistent_class
class FullyConnectedLayer(torch.nn.Module):
    def __init__(self,
        in_features,                # Number of input features.
        out_features,               # Number of output features.
        activation      = 'linear', # Activation function: 'linear', 'lrelu', ... (see bias_act).
        bias            = True,     # Learn a bias?
        lr_multiplier   = 1,        # Learning-rate multiplier.
        weight_init     = 1,        # Initial standard deviation of the (effective) weights.
        bias_init       = 0,        # Initial (effective) bias: scalar or [out_features] list.
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) * (weight_init / lr_multiplier))
        bias_init = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features])
        self.bias = torch.nn.Parameter(torch.from_numpy(bias_init / lr_multiplier)) if bias else None
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
        return bias_act.bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self):
        return f'in_features={self.in_features:d}, out_features={self.out_features:d}, activation={self.activation:s}'

#----------------------------------------------------------------------------
# Mapping network z (+ c) -> w, broadcast to num_ws; StyleGAN Sec. 2, StyleGAN3 uses 2 layers (App. F).
# Truncation trick (StyleGAN Sec. 5.1): w' = w_avg + psi * (w - w_avg).

@persistence.persistent_class
class MappingNetwork(torch.nn.Module):
    def __init__(self,
        z_dim,                  # Input latent (Z) dimensionality.
        c_dim,                  # Conditioning label (C) dimensionality, 0 = unconditional.
        w_dim,                  # Intermediate latent (W) dimensionality.
        num_ws,                 # Number of copies of w to output.
        num_layers      = 2,    # Number of dense layers.
        lr_multiplier   = 0.01, # Learning-rate multiplier of the dense layers.
        w_avg_beta      = 0.998,# Decay of the running average of w (used for truncation).
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta

        # The label is embedded to w_dim and concatenated to z.
        self.embed = FullyConnectedLayer(self.c_dim, self.w_dim) if self.c_dim > 0 else None
        features = [self.z_dim + (self.w_dim if self.c_dim > 0 else 0)] + [self.w_dim] * self.num_layers
        for idx, in_features, out_features in zip(range(num_layers), features[:-1], features[1:]):
            layer = FullyConnectedLayer(in_features, out_features, activation='lrelu', lr_multiplier=lr_multiplier)
            setattr(self, f'fc{idx}', layer)
        self.register_buffer('w_avg', torch.zeros([w_dim]))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        """z: [N, z_dim], c: [N, c_dim] -> ws: [N, num_ws, w_dim]. Truncation applies to ws[:, :truncation_cutoff]."""
        misc.assert_shape(z, [None, self.z_dim])
        if truncation_cutoff is None:
            truncation_cutoff = self.num_ws

        # z and the embedded label are each normalised to unit second moment.
        x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            misc.assert_shape(c, [z.shape[0], self.c_dim])
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1)

        for idx in range(self.num_layers):
            x = getattr(self, f'fc{idx}')(x)

        if update_emas:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])  # [N, num_ws, w_dim]
        if truncation_psi != 1:
            x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x

    def extra_repr(self):
        return f'z_dim={self.z_dim:d}, c_dim={self.c_dim:d}, w_dim={self.w_dim:d}, num_ws={self.num_ws:d}'

#----------------------------------------------------------------------------
# Fourier-feature input (Sec. 3.2, App. F). Each channel is sin(2*pi*(f . p + phi)) evaluated on a pixel grid of
# `size` pixels at `sampling_rate` (so the central sampling_rate pixels span one unit), with frequencies f drawn
# uniformly within the disc of radius `bandwidth`. The positions p are first mapped by
#     M = R(w) @ T(w) @ transform,
# R a rotation and T a translation predicted from w (identity at init), `transform` a user matrix holding the
# *inverse* of the desired output transform. For p' = A p + b: f . p' + phi = (A^T f) . p + (f . b + phi).

@persistence.persistent_class
class SynthesisInput(torch.nn.Module):
    def __init__(self,
        w_dim,          # Intermediate latent (W) dimensionality.
        channels,       # Number of output channels.
        size,           # Output spatial size: int or [width, height].
        sampling_rate,  # Output sampling rate (pixels per unit).
        bandwidth,      # Radius of the frequency disc (cycles per unit).
    ):
        super().__init__()
        self.w_dim = w_dim
        self.channels = channels
        self.size = np.broadcast_to(np.asarray(size), [2])
        self.sampling_rate = sampling_rate
        self.bandwidth = bandwidth

        # Uniform in the disc: angle uniform, radius ~ sqrt(uniform) (area-proportional).
        angles = torch.rand([channels]) * (2 * np.pi)
        radii = torch.rand([channels]).sqrt() * bandwidth
        freqs = torch.stack([angles.cos(), angles.sin()], dim=1) * radii.unsqueeze(1)
        phases = torch.rand([channels]) - 0.5

        # Learned channel mix of the features, and the affine w -> (r_cos, r_sin, t_x, t_y), identity at init.
        self.weight = torch.nn.Parameter(torch.randn([self.channels, self.channels]))
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])
        self.register_buffer('transform', torch.eye(3, 3))
        self.register_buffer('freqs', freqs)
        self.register_buffer('phases', phases)

    def _sample_transforms(self, w):
        """w: [N, w_dim] -> [N, 3, 3] transforms from output positions to feature positions."""
        params = self.affine(w)  # [N, 4]
        params = params / params[:, :2].norm(dim=1, keepdim=True)  # (r_cos, r_sin) on the unit circle.
        r_cos, r_sin, t_x, t_y = params.unbind(dim=1)
        zeros, ones = torch.zeros_like(r_cos), torch.ones_like(r_cos)
        rotation = torch.stack([r_cos, -r_sin, zeros, r_sin, r_cos, zeros, zeros, zeros, ones], dim=1).reshape(-1, 3, 3)
        translation = torch.stack([ones, zeros, -t_x, zeros, ones, -t_y, zeros, zeros, ones], dim=1).reshape(-1, 3, 3)
        return rotation @ translation @ self.transform.unsqueeze(0)

    def _pixel_grid(self, device):
        """Pixel-centre positions in units: [H, W, 2] holding (x, y); centred on the origin."""
        width, height = int(self.size[0]), int(self.size[1])
        xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5 - width / 2) / self.sampling_rate
        ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5 - height / 2) / self.sampling_rate
        return torch.stack(torch.meshgrid(xs, ys, indexing='xy'), dim=2)

    def forward(self, w):
        """w: [N, w_dim] -> features [N, channels, height, width] float32."""
        misc.assert_shape(w, [None, self.w_dim])
        transforms = self._sample_transforms(w)  # [N, 3, 3]

        # Move the transform onto the frequencies and phases (see the header comment).
        freqs = self.freqs.unsqueeze(0)  # [1, C, 2]
        phases = self.phases.unsqueeze(0) + (freqs @ transforms[:, :2, 2:]).squeeze(2)  # [N, C]
        freqs = freqs @ transforms[:, :2, :2]  # [N, C, 2]

        # Fade out frequencies that a user transform with scaling pushed beyond the band towards Nyquist.
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth))
        amplitudes = amplitudes.clamp(0, 1)  # [N, C]

        grid = self._pixel_grid(w.device)  # [H, W, 2]
        x = (grid[None, :, :, None, 0] * freqs[:, None, None, :, 0]
             + grid[None, :, :, None, 1] * freqs[:, None, None, :, 1])  # f . p: [N, H, W, C]
        x = x + phases[:, None, None, :]  # [N, H, W, C]
        x = torch.sin(x * (2 * np.pi)) * amplitudes[:, None, None, :]

        # Learned linear mix; the 1/sqrt(C) keeps unit-variance weights (equalized learning rate).
        x = x @ (self.weight / np.sqrt(self.channels)).t()
        x = x.permute(0, 3, 1, 2)  # [N, C, H, W]
        misc.assert_shape(x, [w.shape[0], self.channels, int(self.size[1]), int(self.size[0])])
        return x

    def extra_repr(self):
        return '\n'.join([
            f'w_dim={self.w_dim:d}, channels={self.channels:d}, size={[int(v) for v in self.size]},',
            f'sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}'])

#----------------------------------------------------------------------------
# Lowpass filter design (Sec. 3.2, App. F): Kaiser-windowed sinc (separable, config T) or Kaiser-windowed jinc (radially
# symmetric, config R). `cutoff` is where the gain is 1/2, `width` the full transition band, both in cycles per
# unit at sampling rate `fs`. Returns None for a single tap (no filtering), else a float32 tensor: [numtaps] for the
# separable filter (applied along x and y), [numtaps, numtaps] for the radial one. Unit DC gain.

def design_lowpass_filter(numtaps, cutoff, width, fs, radial=False):
    """Kaiser-windowed lowpass FIR: [numtaps] (separable) or [numtaps, numtaps] (radial) float32, or None."""
    if numtaps < 1:
        raise ValueError(f'design_lowpass_filter: numtaps must be >= 1, got {numtaps}')
    if numtaps == 1:
        return None
    if not radial:
        taps = scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
        return torch.as_tensor(taps, dtype=torch.float32)

    # The ideal circular lowpass of radius f_c has the impulse response h(r) = f_c * J1(2 pi f_c r) / r
    # (the 2-D "jinc"; h(0) = pi f_c^2). Sample it at the tap positions (units of 1/fs, centred).
    positions = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    radius = np.hypot(*np.meshgrid(positions, positions))
    safe_radius = np.where(radius > 0, radius, 1)
    taps = np.where(radius > 0, cutoff * scipy.special.j1(2 * np.pi * cutoff * safe_radius) / safe_radius,
                    np.pi * cutoff ** 2)

    # Same Kaiser window as the separable design (Kaiser's formula for the given transition width), applied
    # separably, then normalise to unit DC gain.
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    window = scipy.signal.windows.kaiser(numtaps, beta, sym=True)
    taps = taps * np.outer(window, window)
    taps = taps / np.sum(taps)
    return torch.as_tensor(taps, dtype=torch.float32)

#----------------------------------------------------------------------------
# One alias-free layer (Sec. 3.2, Fig. 4): modulated conv at the input rate, upsample by `up_factor` to the
# temporary rate (lowpass at the input cutoff), leaky ReLU, lowpass at the output cutoff and downsample by
# `down_factor` to the output rate; the last three steps are one `filtered_lrelu` call. ToRGB: 1x1 conv, no
# demodulation, linear, no resampling.

@persistence.persistent_class
class SynthesisLayer(torch.nn.Module):
    def __init__(self,
        w_dim,                          # Intermediate latent (W) dimensionality.
        is_torgb,                       # Is this the final ToRGB layer?
        is_critically_sampled,          # Does this layer use critical sampling (no radial filters)?
        use_fp16,                       # Run in float16 (on CUDA)?
        in_channels,                    # Number of input channels.
        out_channels,                   # Number of output channels.
        in_size,                        # Input spatial size: int or [width, height].
        out_size,                       # Output spatial size: int or [width, height].
        in_sampling_rate,               # Input sampling rate (s).
        out_sampling_rate,              # Output sampling rate (s).
        in_cutoff,                      # Input cutoff frequency (f_c).
        out_cutoff,                     # Output cutoff frequency (f_c).
        in_half_width,                  # Input transition band half-width (f_h).
        out_half_width,                 # Output transition band half-width (f_h).
        conv_kernel         = 3,        # Convolution kernel size (1 for config R); ToRGB always uses 1.
        filter_size         = 6,        # Filter taps per factor of resampling.
        lrelu_upsampling    = 2,        # Oversampling of the nonlinearity relative to max(in, out) rate.
        use_radial_filters  = False,    # Radially symmetric downsampling filters (config R)?
        conv_clamp          = 256,      # Clamp the output to +-X, None = disable clamping.
        magnitude_ema_beta  = 0.999,    # Decay of the running mean of the input's squared magnitude.
    ):
        super().__init__()
        self.w_dim = w_dim
        self.is_torgb = is_torgb
        self.is_critically_sampled = is_critically_sampled
        self.use_fp16 = use_fp16
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.in_size = np.broadcast_to(np.asarray(in_size), [2])
        self.out_size = np.broadcast_to(np.asarray(out_size), [2])
        self.in_sampling_rate = in_sampling_rate
        self.out_sampling_rate = out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.in_cutoff = in_cutoff
        self.out_cutoff = out_cutoff
        self.in_half_width = in_half_width
        self.out_half_width = out_half_width
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = magnitude_ema_beta

        # Learned parameters: the affine w -> styles (bias 1: identity modulation at init), conv weight and bias.
        self.affine = FullyConnectedLayer(self.w_dim, self.in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer('magnitude_ema', torch.ones([]))

        # Resampling filters (App. F): filter_size taps per factor of rate change; none for ToRGB.
        self.up_factor = self._rate_ratio(self.tmp_sampling_rate, in_sampling_rate)
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not self.is_torgb else 1
        self.register_buffer('up_filter', design_lowpass_filter(
            numtaps=self.up_taps, cutoff=self.in_cutoff, width=self.in_half_width * 2, fs=self.tmp_sampling_rate))
        self.down_factor = self._rate_ratio(self.tmp_sampling_rate, out_sampling_rate)
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not self.is_torgb else 1
        self.down_radial = use_radial_filters and not self.is_critically_sampled
        self.register_buffer('down_filter', design_lowpass_filter(
            numtaps=self.down_taps, cutoff=self.out_cutoff, width=self.out_half_width * 2,
            fs=self.tmp_sampling_rate, radial=self.down_radial))
        self.padding = self._filter_padding()

    @staticmethod
    def _rate_ratio(high_rate, low_rate):
        """Integer resampling factor high_rate / low_rate; the schedule only produces powers of two."""
        factor = int(np.rint(high_rate / low_rate))
        if factor * low_rate != high_rate:
            raise ValueError(f'SynthesisLayer: sampling rates {high_rate} and {low_rate} are not integer multiples')
        return factor

    def _filter_padding(self):
        """[x_lo, x_hi, y_lo, y_hi] padding of the upsampled signal so that filtered_lrelu yields out_size, centred.

        The conv (padding conv_kernel - 1) gives n = in_size + conv_kernel - 1 pixels centred like the input; the
        upsampled signal has n * up samples; each FIR of T taps shrinks it by T - 1; downsampling keeps every
        down-th sample. Total padding p makes (out_size - 1) * down + 1 samples reach the decimation. Centring:
        with pixel i of an S-pixel image at (i + 0.5 - S / 2) / s, output pixel i must sit at the same place as
        upsampled index i * down + (T_up + T_down - 2) / 2 - p_lo, which gives p_lo = (p + up - 1) / 2; when that
        is a half-integer we round up.
        """
        conv_out_size = self.in_size + self.conv_kernel - 1
        pad_total = (self.out_size - 1) * self.down_factor + 1
        pad_total = pad_total - conv_out_size * self.up_factor
        pad_total = pad_total + self.up_taps + self.down_taps - 2
        pad_lo = (pad_total + self.up_factor) // 2
        pad_hi = pad_total - pad_lo
        return [int(pad_lo[0]), int(pad_hi[0]), int(pad_lo[1]), int(pad_hi[1])]

    def forward(self, x, w, noise_mode='random', force_fp32=False, update_emas=False, fused_modconv=None):
        """x: [N, in_channels, in_h, in_w], w: [N, w_dim] -> [N, out_channels, out_h, out_w].

        noise_mode is accepted for call compatibility with StyleGAN2 and ignored (StyleGAN3 has no noise inputs).
        fused_modconv=False: see modulated_conv2d (export with a dynamic batch); None = _default_fused_modconv().
        """
        if noise_mode not in ('random', 'const', 'none'):
            raise ValueError(f"SynthesisLayer: noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        misc.assert_shape(x, [None, self.in_channels, int(self.in_size[1]), int(self.in_size[0])])
        misc.assert_shape(w, [x.shape[0], self.w_dim])

        # App. F: normalise the input by the running RMS of its magnitude (tracked in float32).
        if update_emas:
            magnitude_cur = x.detach().to(torch.float32).square().mean()
            self.magnitude_ema.copy_(magnitude_cur.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.rsqrt()

        # Modulated conv; ToRGB skips demodulation and uses the equalized-learning-rate gain instead.
        styles = self.affine(w)  # [N, in_channels]
        if self.is_torgb:
            styles = styles * (1 / np.sqrt(self.in_channels * (self.conv_kernel ** 2)))
        half = _half_dtype(self)
        use_half = self.use_fp16 and not force_fp32 and (x.device.type == 'cuda' or half == torch.bfloat16)
        dtype = half if use_half else torch.float32
        if fused_modconv is None:
            records_graph = torch.is_grad_enabled() and (x.requires_grad or styles.requires_grad or
                                                         self.weight.requires_grad)
            fused_modconv = _default_fused_modconv(x.device.type, x.shape[0], records_graph)
        x = modulated_conv2d(x=x.to(dtype), w=self.weight, s=styles, padding=self.conv_kernel - 1,
                             demodulate=(not self.is_torgb), input_gain=input_gain, fused_modconv=fused_modconv)

        # Bias, upsample, leaky ReLU (linear for ToRGB), clamp, downsample.
        gain = 1 if self.is_torgb else np.sqrt(2)
        slope = 1 if self.is_torgb else 0.2
        x = filtered_lrelu.filtered_lrelu(x=x, fu=self.up_filter, fd=self.down_filter, b=self.bias.to(x.dtype),
                                          up=self.up_factor, down=self.down_factor, padding=self.padding,
                                          gain=gain, slope=slope, clamp=self.conv_clamp)

        misc.assert_shape(x, [None, self.out_channels, int(self.out_size[1]), int(self.out_size[0])])
        assert x.dtype == dtype
        return x

    def extra_repr(self):
        return '\n'.join([
            f'w_dim={self.w_dim:d}, is_torgb={self.is_torgb},',
            f'is_critically_sampled={self.is_critically_sampled}, use_fp16={self.use_fp16},',
            f'in_sampling_rate={self.in_sampling_rate:g}, out_sampling_rate={self.out_sampling_rate:g},',
            f'in_cutoff={self.in_cutoff:g}, out_cutoff={self.out_cutoff:g},',
            f'in_half_width={self.in_half_width:g}, out_half_width={self.out_half_width:g},',
            f'in_size={[int(v) for v in self.in_size]}, out_size={[int(v) for v in self.out_size]},',
            f'in_channels={self.in_channels:d}, out_channels={self.out_channels:d}'])

#----------------------------------------------------------------------------
# Filter schedule (App. F, Fig. 4b). For entries i = 0..num_layers (entry i = output of layer L{i}; entry 0 is
# also the Fourier input), with t = min(i / (num_layers - num_critical), 1):
#   cutoff   f_c = first_cutoff * (img_resolution/2 / first_cutoff) ** t
#   stopband f_t = first_stopband * (img_resolution/2 * last_stopband_rel / first_stopband) ** t
#   rate     s   = smallest power of two >= 2 f_t, at most img_resolution
#   half-width f_h = max(f_t, s/2) - f_c;  size = s + 2 * margin (the last two: img_resolution)
#   channels = min(channel_base / 2 / f_c, channel_max), img_channels for ToRGB.

def synthesis_schedule(img_resolution, img_channels, channel_base, channel_max, num_layers, num_critical,
                       first_cutoff, first_stopband, last_stopband_rel, margin_size):
    """Per-entry arrays [num_layers + 1]: cutoffs, stopbands, sampling_rates, half_widths, sizes, channels."""
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
    sizes = sampling_rates + margin_size * 2
    sizes[-2:] = img_resolution
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    return dict(cutoffs=cutoffs, stopbands=stopbands, sampling_rates=sampling_rates, half_widths=half_widths,
                sizes=sizes, channels=channels)

#----------------------------------------------------------------------------
# Synthesis network: Fourier input, num_layers alias-free layers, ToRGB, output scaling (App. F).
# ws[:, 0] drives the input transform, ws[:, i + 1] layer L{i}; num_ws = num_layers + 2.

def _check_img_aspect(img_aspect):
    """[aw, ah] as a tuple: powers of two, one of them 1 (see _layer_sizes)."""
    aspect = tuple(int(v) for v in img_aspect)
    assert len(aspect) == 2 and min(aspect) == 1 and all(v >= 1 and v & (v - 1) == 0 for v in aspect), \
        f'img_aspect must be [width, height] multiples, powers of two, one of them 1; got {img_aspect}'
    return aspect


def _layer_sizes(sizes, sampling_rates, img_resolution, margin_size, img_aspect):
    """Per-layer spatial sizes: ints for square images (official), [width, height] for non-square ones (not
    official): a layer at rate s covers aw x ah units, s*aw + 2*margin by s*ah + 2*margin pixels, and the last two
    layers are the image, img_resolution*aw by img_resolution*ah. The Fourier features simply cover the wider
    field; filters and rates are those of the square network."""
    if img_aspect is None or tuple(img_aspect) == (1, 1):
        return [int(size) for size in sizes]
    aw, ah = (int(v) for v in img_aspect)
    result = [[int(rate) * aw + 2 * margin_size, int(rate) * ah + 2 * margin_size] for rate in sampling_rates]
    result[-2:] = [[img_resolution * aw, img_resolution * ah]] * 2
    return result


@persistence.persistent_class
class SynthesisNetwork(torch.nn.Module):
    img_aspect = (1, 1)  # Class default: square (official pickles and square networks set nothing).

    def __init__(self,
        w_dim,                          # Intermediate latent (W) dimensionality.
        img_resolution,                 # Output image resolution.
        img_channels,                   # Number of color channels.
        channel_base        = 32768,    # Overall multiplier for the number of channels.
        channel_max         = 512,      # Maximum number of channels in any layer.
        num_layers          = 14,       # Total number of layers, excluding Fourier features and ToRGB.
        num_critical        = 2,        # Number of critically sampled layers at the end.
        first_cutoff        = 2,        # Cutoff frequency of the first layer (f_{c,0}).
        first_stopband      = 2**2.1,   # Minimum stopband of the first layer (f_{t,0}).
        last_stopband_rel   = 2**0.3,   # Minimum stopband of the last layer, expressed relative to the cutoff.
        margin_size         = 10,       # Number of additional pixels outside the image.
        output_scale        = 0.25,     # Scale factor for the output image.
        num_fp16_res        = 4,        # Use float16 for the highest-rate layers (see the module docstring).
        img_aspect          = None,     # [aw, ah]: images aw*R wide, ah*R high (not official); None = square.
        **layer_kwargs,                 # Arguments for SynthesisLayer.
    ):
        super().__init__()
        self.w_dim = w_dim
        self.num_ws = num_layers + 2
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_layers = num_layers
        self.num_critical = num_critical
        self.margin_size = margin_size
        self.output_scale = output_scale
        self.num_fp16_res = num_fp16_res
        if img_aspect is not None:
            self.img_aspect = _check_img_aspect(img_aspect)

        sched = synthesis_schedule(img_resolution=img_resolution, img_channels=img_channels,
                                   channel_base=channel_base, channel_max=channel_max, num_layers=num_layers,
                                   num_critical=num_critical, first_cutoff=first_cutoff,
                                   first_stopband=first_stopband, last_stopband_rel=last_stopband_rel,
                                   margin_size=margin_size)
        cutoffs, rates, half_widths = sched['cutoffs'], sched['sampling_rates'], sched['half_widths']
        sizes, channels = sched['sizes'], sched['channels']

        sizes = _layer_sizes(sizes, sched['sampling_rates'], img_resolution, margin_size, img_aspect)
        self.input = SynthesisInput(w_dim=self.w_dim, channels=int(channels[0]), size=sizes[0],
                                    sampling_rate=rates[0], bandwidth=cutoffs[0])
        self.layer_names = []
        for idx in range(self.num_layers + 1):
            prev = max(idx - 1, 0)
            layer = SynthesisLayer(
                w_dim=self.w_dim, is_torgb=(idx == self.num_layers),
                is_critically_sampled=(idx >= self.num_layers - self.num_critical),
                use_fp16=bool(rates[idx] * (2 ** self.num_fp16_res) > self.img_resolution),
                in_channels=int(channels[prev]), out_channels=int(channels[idx]),
                in_size=sizes[prev], out_size=sizes[idx],
                in_sampling_rate=int(rates[prev]), out_sampling_rate=int(rates[idx]),
                in_cutoff=cutoffs[prev], out_cutoff=cutoffs[idx],
                in_half_width=half_widths[prev], out_half_width=half_widths[idx],
                **layer_kwargs)
            name = f'L{idx}_{layer.out_size[0]}_{layer.out_channels}'
            setattr(self, name, layer)
            self.layer_names.append(name)

    def forward(self, ws, **layer_kwargs):
        """ws: [N, num_ws, w_dim] -> images [N, img_channels, img_resolution, img_resolution] float32.

        layer_kwargs: noise_mode (ignored), force_fp32, update_emas, fused_modconv.
        """
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
        ws = ws.to(torch.float32).unbind(dim=1)
        x = self.input(ws[0])
        for name, w in zip(self.layer_names, ws[1:]):
            x = getattr(self, name)(x, w, **layer_kwargs)
        if self.output_scale != 1:
            x = x * self.output_scale
        misc.assert_shape(x, [None, self.img_channels, self.img_resolution * self.img_aspect[1],
                              self.img_resolution * self.img_aspect[0]])
        return x.to(torch.float32)

    def extra_repr(self):
        return '\n'.join([
            f'w_dim={self.w_dim:d}, num_ws={self.num_ws:d},',
            f'img_resolution={self.img_resolution:d}, img_channels={self.img_channels:d},',
            f'num_layers={self.num_layers:d}, num_critical={self.num_critical:d},',
            f'margin_size={self.margin_size:d}, num_fp16_res={self.num_fp16_res:d}'])

#----------------------------------------------------------------------------
# Generator = mapping + synthesis (StyleGAN Fig. 1b).

@persistence.persistent_class
class Generator(torch.nn.Module):
    @property
    def img_aspect(self):
        """[aw, ah] of non-square images ((1, 1) = square): outputs are [N, C, ah*R, aw*R]."""
        return self.synthesis.img_aspect

    def __init__(self,
        z_dim,                      # Input latent (Z) dimensionality.
        c_dim,                      # Conditioning label (C) dimensionality.
        w_dim,                      # Intermediate latent (W) dimensionality.
        img_resolution,             # Output resolution.
        img_channels,               # Number of output color channels.
        mapping_kwargs      = {},   # Arguments for MappingNetwork.
        **synthesis_kwargs,         # Arguments for SynthesisNetwork (and, through it, SynthesisLayer).
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
        """z: [N, z_dim], c: [N, c_dim] -> images [N, img_channels, img_resolution, img_resolution], ~[-1, 1]."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)

#----------------------------------------------------------------------------
