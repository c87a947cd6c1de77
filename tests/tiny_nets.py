"""Tiny generators of every family (16-32 px, a few thousand weights) and snapshot writers, for the tests of the
after-training tools (style_mixing.py, projector.py, safetensors snapshots)."""

import torch

from torch_utils import misc
from torch_utils import safe_pickle
from training import networks_stylegan1, networks_stylegan2, networks_stylegan3

FAMILIES = ('stylegan1', 'stylegan2', 'stylegan3-t', 'stylegan3-r')


def tiny_generator(family, resolution=16, seed=0, randomize_buffers=True):
    """A G of `family` at `resolution` px with z_dim = w_dim = 16, in eval mode without gradients.

    randomize_buffers: w_avg and noise_const random too (as in a trained net), so that storing them matters."""
    torch.manual_seed(seed)
    common = dict(z_dim=16, w_dim=16, c_dim=0, img_resolution=resolution, img_channels=3,
                  mapping_kwargs=dict(num_layers=2))
    if family == 'stylegan1':
        G = networks_stylegan1.Generator(channel_base=128, channel_max=16, **common)
    elif family == 'stylegan2':
        G = networks_stylegan2.Generator(channel_base=128, channel_max=16, **common)
    elif family == 'stylegan3-t':  # 4 layers instead of 14: num_ws = 6 like the others, 3x faster.
        G = networks_stylegan3.Generator(channel_base=256, channel_max=16, num_layers=4, **common)
    elif family == 'stylegan3-r':
        G = networks_stylegan3.Generator(channel_base=256, channel_max=16, num_layers=4, conv_kernel=1,
                                         use_radial_filters=True, **common)
    else:
        raise ValueError(family)
    if randomize_buffers:
        gen = torch.Generator().manual_seed(seed + 100)
        with torch.no_grad():
            for name, tensor in misc.named_params_and_buffers(G):
                if name.endswith(('w_avg', 'noise_const')):
                    tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.5)
    return G.eval().requires_grad_(False)


def tiny_discriminator(resolution=16, seed=0):
    torch.manual_seed(seed)
    D = networks_stylegan2.Discriminator(c_dim=0, img_resolution=resolution, img_channels=3, channel_base=128,
                                         channel_max=16)
    return D.eval().requires_grad_(False)


def write_snapshot(path, G, D=None, G_ema=None):
    """A network pickle at `path` (our writer, official layout); G_ema defaults to G itself. Returns str(path)."""
    data = dict(G=G, D=D, G_ema=G if G_ema is None else G_ema, augment_pipe=None, training_set_kwargs=None)
    safe_pickle.save_network_pkl(data, str(path))
    return str(path)
