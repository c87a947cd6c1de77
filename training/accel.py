"""Speed options of the training loop: precision, torch.compile, channels_last, gradient clipping.

    precision      None/'fp16' = the official mixed precision (float16 in the top num_fp16_res resolutions, on
                   CUDA only, activations clamped to conv_clamp; see train.py); 'fp32' = float32 throughout;
                   'bf16' = the same layers in bfloat16 (on any device, CPU included), no loss scaling and no
                   clamping (bfloat16 has float32's range). Set per layer through the `mixed_precision` attribute
                   that the networks' _half_dtype() reads (G_ema keeps the official float16 for rendering).
    compile        torch.compile of G.mapping, G.synthesis and D for the main phases. The regularisation phases
                   (R1, path length) differentiate twice, which compiled graphs do not support, so they keep the
                   eager modules; both share the same parameters.
    channels_last  The networks' 4-D parameters and the images in channels_last memory format (tensor cores
                   prefer NHWC on CUDA; results equal to rounding).
    grad_clip      Clip each phase's gradient to this L2 norm before its optimizer step; each clip is counted in
                   the stats (Progress/grad_clipped/<phase>; the norm in Progress/grad_norm/<phase>).
"""

import copy

import torch

from torch_utils import training_stats
from training import network_families

PRECISIONS = ('fp32', 'fp16', 'bf16')

#----------------------------------------------------------------------------

class _CompiledGenerator:
    """G as the loss sees it, with compiled mapping and synthesis; every other attribute is G's own."""

    def __init__(self, G):
        self._G = G
        self.mapping = torch.compile(G.mapping)
        self.synthesis = torch.compile(G.synthesis)

    def __getattr__(self, name):
        return getattr(self._G, name)


class Accelerator:
    """The options above for one training process; see the module docstring."""

    def __init__(self, precision=None, compile=False, channels_last=False, grad_clip=None):  # pylint: disable=redefined-builtin
        if precision not in (None,) + PRECISIONS:
            raise ValueError(f'precision={precision!r}: choose one of {", ".join(PRECISIONS)}')
        if grad_clip is not None and not grad_clip > 0:
            raise ValueError(f'grad_clip={grad_clip!r}: must be a positive norm (or None = off)')
        self.precision = precision
        self.compile = bool(compile)
        self.channels_last = bool(channels_last)
        self.grad_clip = grad_clip
        self.main_loss = None

    def prepare(self, G, D, G_ema, loss):
        """Set the layers' precision, convert the networks' memory format, and build the loss the main phases use
        (compiled, or `loss` itself)."""
        for module in (G, D):
            _mark_bfloat16(module, self.precision == 'bf16')  # Also undoes a resumed bf16 run's marks.
        if self.channels_last:
            for module in (G, D, G_ema):
                module.to(memory_format=torch.channels_last)
        self.main_loss = loss
        if self.compile:
            self.main_loss = copy.copy(loss)  # Shares pl_mean, the augment pipe and the parameters.
            self.main_loss.G = _CompiledGenerator(G)
            self.main_loss.D = torch.compile(D)

    def loss_for(self, phase_name, loss):
        """The loss object for a phase: the compiled one for main phases, `loss` for the twice-differentiated ones."""
        return self.main_loss if phase_name in ('Gmain', 'Dmain') and self.main_loss is not None else loss

    def images(self, img):
        return img.contiguous(memory_format=torch.channels_last) if self.channels_last else img

    def clip_gradients(self, phase_name, module):
        """Clip the gradients of `module` to grad_clip (no-op when off); reports the norm and whether it clipped."""
        if self.grad_clip is None:
            return
        params = [p for p in module.parameters() if p.grad is not None]
        if not params:
            return
        norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        training_stats.report('Progress/grad_norm/' + phase_name, norm)
        training_stats.report('Progress/grad_clipped/' + phase_name, (norm > self.grad_clip).float())

#----------------------------------------------------------------------------
# Rendering precision of a loaded generator (gen_images.py, gen_video.py, style_mixing.py --precision).


# Our network modules: their layers read the mark (through _half_dtype()); a pickle's own classes (--allow-exec)
# do not.
_NETWORK_MODULES = frozenset(network_families.FAMILY_MODULES.values())


def _mark_bfloat16(module, enable):
    """Set (enable) or remove the `mixed_precision = 'bfloat16'` mark that the networks' _half_dtype() reads, on
    every layer of `module` that has a use_fp16 switch."""
    for layer in module.modules():
        if enable and hasattr(layer, 'use_fp16'):
            layer.mixed_precision = 'bfloat16'
        elif 'mixed_precision' in vars(layer):
            del layer.mixed_precision


def set_inference_precision(G, precision, device_type):
    """Choose the dtype of G's reduced-precision layers (those with use_fp16 = True: the top num_fp16_res
    resolutions) for rendering on `device_type` ('cpu', 'cuda', 'mps').

    None = as the network was built (official: float16 on CUDA, float32 elsewhere); 'fp16' = the same, but refused
    off CUDA; 'fp32' = float32 in every layer; 'bf16' = those layers in bfloat16 on any device (on CPUs with
    AVX512-BF16 or AMX, oneDNN runs bfloat16 convolutions about 2x faster than float32, so StyleGAN2 renders 1.5-1.8x
    faster and StyleGAN3 1.1-1.3x (its filters stay float32); pixels move by 1-2 levels of 255 RMS).
    Raises ValueError naming the reason when the choice cannot apply. Returns the number of layers switched.
    """
    if precision not in (None,) + PRECISIONS:
        raise ValueError(f'choose one of {", ".join(PRECISIONS)}')
    if precision == 'fp16' and device_type != 'cuda':
        raise ValueError(f'float16 layers run on CUDA only, this is {device_type}; use bf16 on a CPU')
    switchable = [layer for layer in G.modules()
                  if getattr(layer, 'use_fp16', False) and type(layer).__module__ in _NETWORK_MODULES]
    if precision in ('fp16', 'bf16') and not switchable:
        raise ValueError('this network has no reduced-precision layers (built with num_fp16_res=0, e.g. trained with '
                         f'--fp32=1, or not one of this repository\'s network classes), so {precision} would change '
                         'nothing')
    _mark_bfloat16(G, precision == 'bf16')
    if precision == 'fp32':
        for layer in switchable:
            layer.use_fp16 = False
    return len(switchable)
