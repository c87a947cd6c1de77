"""CycleGAN networks: the ResNet generator and the 70x70 PatchGAN discriminator.

Zhu, Park, Isola and Efros 2017, "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial
Networks" (ICCV), referred to below as "CG"; the generator follows Johnson et al. 2016 ("Perceptual losses"),
the discriminator Isola et al. 2017 ("pix2pix", PatchGAN).

CG App. 7.2 names the layers:
- c7s1-k: 7x7 convolution, stride 1, k filters, then InstanceNorm and ReLU (reflection padding 3).
- dk: 3x3 convolution, stride 2, k filters, InstanceNorm, ReLU.
- Rk: residual block of two 3x3 convolutions with k filters (reflection padding 1, InstanceNorm; ReLU after the
  first only), added to its input.
- uk: 3x3 fractional-strided (transposed) convolution, stride 1/2, k filters, InstanceNorm, ReLU.
- Generator: c7s1-64, d128, d256, R256 x 6 (128 px) or x 9 (256 px and up), u128, u64, c7s1-3 (the last one
  without normalisation, followed by tanh).
- Ck: 4x4 convolution, stride 2, k filters, InstanceNorm, LeakyReLU 0.2. Discriminator: C64 (no norm), C128,
  C256, C512 (stride 1), then a 4x4 convolution to one channel: a map of logits, each seeing a 70x70 patch.
  For an H x W input the map is (H/8 - 2) x (W/8 - 2): 30x30 for 256 px, 2x2 for 32 px.
InstanceNorm has no learned scale/shift and no running statistics; convolutions keep their biases; weights are
initialised N(0, 0.02) (CG App. 7.1). `ngf` / `ndf` (64 in the paper) scale every width, for small CPU runs.

Call conventions: `G(img) -> img` ([N, C, H, W] float in [-1, 1], H and W multiples of 4), `D(img) -> logits`
[N, 1, H/8 - 2, W/8 - 2]. Every layer is a persistent class of this module (no torch.nn layer objects), so the
safe loader (torch_utils/safe_pickle.py, family 'cyclegan') rebuilds snapshots from this code alone. This module
imports only numpy, torch and torch_utils so that its source, embedded in pickles, runs anywhere.
"""

import torch

from torch_utils import misc
from torch_utils import persistence

_INIT_STD = 0.02  # CG App. 7.1: weights from a Gaussian N(0, 0.02).

#----------------------------------------------------------------------------
# Instance normalisation (Ulyanov et al. 2016), CG App. 7.2: per sample and channel, over the pixels; no affine
# parameters (the official PyTorch code's default for CycleGAN).

def instance_norm(x, eps=1e-5):
    """x: [N, C, H, W] -> each [n, c] map shifted and scaled to zero mean and unit (biased) variance."""
    return torch.nn.functional.instance_norm(x, eps=eps)

#----------------------------------------------------------------------------
# One convolution with its padding, normalisation and activation: the unit every CG layer name describes.

_ACTIVATIONS = {
    'linear': lambda x: x,
    'relu': torch.relu,
    'lrelu': lambda x: torch.nn.functional.leaky_relu(x, 0.2),
    'tanh': torch.tanh,
}


@persistence.persistent_class
class ConvLayer(torch.nn.Module):
    def __init__(self,
        in_channels,                # Input feature maps.
        out_channels,               # Output feature maps.
        kernel_size,                # Square kernel side.
        stride          = 1,        # 1, 2 (downsampling), or -2 for a transposed convolution that upsamples 2x.
        padding         = 0,        # Pixels added on each side before a (non-transposed) convolution.
        padding_mode    = 'zeros',  # 'zeros' or 'reflect' (CG: reflection for c7s1-k and Rk).
        norm            = True,     # Instance normalisation after the convolution?
        activation      = 'relu',   # 'linear', 'relu', 'lrelu' (slope 0.2) or 'tanh'.
    ):
        super().__init__()
        assert activation in _ACTIVATIONS and padding_mode in ('zeros', 'reflect') and stride in (1, 2, -2)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.padding = padding
        self.padding_mode = padding_mode
        self.norm = norm
        self.activation = activation
        # Transposed convolutions store [in, out, k, k], as torch.nn.ConvTranspose2d does.
        shape = [in_channels, out_channels] if stride == -2 else [out_channels, in_channels]
        self.weight = torch.nn.Parameter(torch.randn(shape + [kernel_size, kernel_size]) * _INIT_STD)
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x):
        misc.assert_shape(x, [None, self.in_channels, None, None])
        if self.stride == -2:
            # uk: stride 1/2 with padding 1 and output padding 1 doubles H and W exactly (3x3 kernel).
            x = torch.nn.functional.conv_transpose2d(x, self.weight, self.bias, stride=2, padding=1,
                                                     output_padding=1)
        else:
            if self.padding and self.padding_mode == 'reflect':
                x = torch.nn.functional.pad(x, [self.padding] * 4, mode='reflect')
                x = torch.nn.functional.conv2d(x, self.weight, self.bias, stride=self.stride)
            else:
                x = torch.nn.functional.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding)
        if self.norm:
            x = instance_norm(x)
        return _ACTIVATIONS[self.activation](x)

    def extra_repr(self):
        return (f'in_channels={self.in_channels}, out_channels={self.out_channels}, stride={self.stride}, '
                f'norm={self.norm}, activation={self.activation}')

#----------------------------------------------------------------------------
# Rk (CG App. 7.2, Johnson et al. 2016 Sec. 3): x + IN(conv(pad(ReLU(IN(conv(pad(x))))))).

@persistence.persistent_class
class ResidualBlock(torch.nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.channels = channels
        self.conv0 = ConvLayer(channels, channels, 3, padding=1, padding_mode='reflect', activation='relu')
        self.conv1 = ConvLayer(channels, channels, 3, padding=1, padding_mode='reflect', activation='linear')

    def forward(self, x):
        return x + self.conv1(self.conv0(x))

    def extra_repr(self):
        return f'channels={self.channels}'

#----------------------------------------------------------------------------
# The generator: c7s1-ngf, d(2 ngf), d(4 ngf), R(4 ngf) x num_blocks, u(2 ngf), u(ngf), c7s1-C + tanh.

def default_num_blocks(resolution):
    """CG App. 7.2: 6 residual blocks for 128x128 training images, 9 for 256x256 and higher."""
    return 9 if resolution >= 256 else 6


@persistence.persistent_class
class ResnetGenerator(torch.nn.Module):
    def __init__(self,
        img_channels    = 3,        # Channels of input and output images.
        ngf             = 64,       # Width of the first layer (CG: 64); the others are 2x and 4x this.
        num_blocks      = 9,        # Residual blocks at 1/4 resolution (CG: 6 for 128 px, 9 for 256 px).
        img_resolution  = None,     # Training resolution (informative only: any multiple of 4 works).
    ):
        super().__init__()
        self.img_channels = img_channels
        self.ngf = ngf
        self.num_blocks = num_blocks
        self.img_resolution = img_resolution
        self.c7s1_in = ConvLayer(img_channels, ngf, 7, padding=3, padding_mode='reflect')
        self.d0 = ConvLayer(ngf, ngf * 2, 3, stride=2, padding=1)
        self.d1 = ConvLayer(ngf * 2, ngf * 4, 3, stride=2, padding=1)
        for idx in range(num_blocks):
            setattr(self, f'r{idx}', ResidualBlock(ngf * 4))
        self.u0 = ConvLayer(ngf * 4, ngf * 2, 3, stride=-2)
        self.u1 = ConvLayer(ngf * 2, ngf, 3, stride=-2)
        self.c7s1_out = ConvLayer(ngf, img_channels, 7, padding=3, padding_mode='reflect', norm=False,
                                  activation='tanh')

    def forward(self, img):
        """img: [N, img_channels, H, W] in [-1, 1], H and W multiples of 4 -> [N, img_channels, H, W] in (-1, 1)."""
        misc.assert_shape(img, [None, self.img_channels, None, None])
        if img.shape[2] % 4 or img.shape[3] % 4:
            raise ValueError(f'ResnetGenerator: image size {img.shape[3]}x{img.shape[2]} is not a multiple of 4')
        x = self.d1(self.d0(self.c7s1_in(img.to(torch.float32))))     # [N, 4 ngf, H/4, W/4]
        for idx in range(self.num_blocks):
            x = getattr(self, f'r{idx}')(x)
        x = self.u1(self.u0(x))                                         # [N, ngf, H, W]
        return self.c7s1_out(x)

    def extra_repr(self):
        return f'img_channels={self.img_channels}, ngf={self.ngf}, num_blocks={self.num_blocks}'

#----------------------------------------------------------------------------
# The 70x70 PatchGAN discriminator (pix2pix App. 6.1.2, CG App. 7.2): C64-C128-C256-C512, then 1 channel.

def patch_map_size(size):
    """Side of D's logit map for an input side `size` (three stride-2 4x4 convs, then two stride-1 4x4 convs
    with padding 1): size / 8 - 2."""
    for _ in range(3):
        size = (size + 2 - 4) // 2 + 1
    return size - 2


@persistence.persistent_class
class PatchDiscriminator(torch.nn.Module):
    def __init__(self,
        img_channels    = 3,        # Channels of the images judged.
        ndf             = 64,       # Width of the first layer (CG: 64); then 2x, 4x, 8x.
        img_resolution  = None,     # Training resolution (informative only).
    ):
        super().__init__()
        self.img_channels = img_channels
        self.ndf = ndf
        self.img_resolution = img_resolution
        self.c0 = ConvLayer(img_channels, ndf, 4, stride=2, padding=1, norm=False, activation='lrelu')
        self.c1 = ConvLayer(ndf, ndf * 2, 4, stride=2, padding=1, activation='lrelu')
        self.c2 = ConvLayer(ndf * 2, ndf * 4, 4, stride=2, padding=1, activation='lrelu')
        self.c3 = ConvLayer(ndf * 4, ndf * 8, 4, stride=1, padding=1, activation='lrelu')
        self.out = ConvLayer(ndf * 8, 1, 4, stride=1, padding=1, norm=False, activation='linear')

    def forward(self, img):
        """img: [N, img_channels, H, W] (H, W >= 32) -> logits [N, 1, H/8 - 2, W/8 - 2] (one per 70x70 patch)."""
        misc.assert_shape(img, [None, self.img_channels, None, None])
        x = img.to(torch.float32)
        for layer in (self.c0, self.c1, self.c2, self.c3, self.out):
            x = layer(x)
        return x

    def extra_repr(self):
        return f'img_channels={self.img_channels}, ndf={self.ndf}'

#----------------------------------------------------------------------------

def receptive_field():
    """Side in pixels of the input patch one output logit of PatchDiscriminator sees (70 for CG)."""
    field = 1
    for kernel, stride in reversed([(4, 2), (4, 2), (4, 2), (4, 1), (4, 1)]):
        field = (field - 1) * stride + kernel
    return field

#----------------------------------------------------------------------------
