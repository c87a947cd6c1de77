"""3x3 convolution by Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray 2016), in plain PyTorch ops.

    conv3x3(x, w, padding) == torch.nn.functional.conv2d(x, w, padding=padding)   (the reference)

Each 4x4 block of outputs needs a 6x6 block of input. With the standard 1-D matrices B (input transform, 6x6),
G (filter transform, 6x3) and A (output transform, 6x4) for the interpolation points 0, +-1, +-2 and infinity:

    Y = A^T [ (G w G^T) . (B^T d B) ] A       (. = elementwise, per input/output channel pair, summed over inputs)

so the channel mixing is 36 matrix products [K, C] x [C, tiles] instead of 9 taps per output pixel: 36 / 16 = 2.25
multiplies per output instead of 9. On a CPU a full-width StyleGAN2 3x3 layer (512 channels, 64x64, batch 8) runs
2.0x faster than oneDNN's direct convolution (bench/bench_cpu_ops.py). The transforms are exact in real arithmetic;
in float32 the result differs from the direct convolution by about 1e-5 of the output's range (the direct one by
about 3e-7 from float64): float tolerance, not bit equality.

Used by conv2d_gradfix.conv2d on the CPU for float32 convolutions that record no autograd graph (inference,
metrics, rendering) and are wide enough to pay for the transforms (use_winograd()); training keeps the direct
convolution and its exact gradients. Only in processes that keep freed memory (torch_utils/cpu_malloc.py, which
the CLIs set on a CPU): its temporaries are 2-4x the layer's input, and freshly mapped each call they cost more
than the saved multiplies (with glibc's defaults 1.3x at 512 channels, 0.5x at 128).

Whether it pays depends on the CPU, not only on the shapes: the transforms are bound by memory bandwidth, the
direct convolution by arithmetic. On a 2-core AMD EPYC of family 25 (AVX-512 at half width) a 512-channel 32x32
layer ran 1.49x faster by Winograd; on one of family 26 (full-width AVX-512, where oneDNN's direct convolution
reaches ~480 GFLOP/s on 2 cores) 0.82x, and a whole StyleGAN2 256x256 forward 0.72x. So the first eligible call
of a process times both on one such layer (pays_on_this_cpu(), ~0.2-0.5 s, once) and the process uses Winograd
only if it won by CALIBRATION_MARGIN. DNNLIB_WINOGRAD=1 / 0 skips the timing and forces it on / off (for
reproducible bits across runs: the two differ by float rounding).
"""

import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from .. import cpu_malloc

#----------------------------------------------------------------------------

TILE = 4                        # Outputs per tile side.
WINDOW = TILE + 2               # Inputs per tile side (tile + kernel - 1).

# Rows: the transforms for the points 0, 1, -1, 2, -2 and infinity.
_B_T = np.array([[4, 0, -5, 0, 1, 0],
                 [0, -4, -4, 1, 1, 0],
                 [0, 4, -4, -1, 1, 0],
                 [0, -2, -1, 2, 1, 0],
                 [0, 2, -1, -2, 1, 0],
                 [0, 4, 0, -5, 0, 1]], dtype=np.float64)
_G = np.array([[1 / 4, 0, 0],
               [-1 / 6, -1 / 6, -1 / 6],
               [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6],
               [1 / 24, -1 / 12, 1 / 6],
               [0, 0, 1]], dtype=np.float64)
_A_T = np.array([[1, 1, 1, 1, 1, 0],
                 [0, 1, -1, 2, -2, 0],
                 [0, 1, 1, 4, 4, 0],
                 [0, 1, -1, 8, -8, 1]], dtype=np.float64)

# 2-D transforms as matrices on flattened tiles (Kronecker products): [36, 36], [36, 9], [16, 36].
_INPUT_2D = np.kron(_B_T, _B_T)
_FILTER_2D = np.kron(_G, _G)
_OUTPUT_2D = np.kron(_A_T, _A_T)

# Dispatch thresholds, measured on a 2-core AVX-512 CPU with freed memory kept (direct / Winograd; the cases are in
# bench/bench_cpu_ops.py, bench/results/cpu_ops_winograd.json): channels_last 512 ch 1.5-2.0x, 256 ch 1.6-1.7x,
# 128 ch 1.1-1.2x; contiguous 512 ch 1.5-1.8x, 256 ch 1.2x, 128 ch 0.74x; 64 ch 0.4-0.85x either way; under 256
# tiles (batch * output pixels / 16) 0.3-0.7x: too little work per product.
_FAST_CPU_ENABLED = True                # Constant; bench/run_all.py's plain path and tests set it False.
MIN_CHANNEL_PRODUCT = 128 * 128         # in_channels * out_channels, channels_last input
MIN_CHANNEL_PRODUCT_NCHW = 256 * 256    # the same for a contiguous input
MIN_TILES = 256

# The calibration layer (a 512-channel 32x32 layer, batch 4, channels_last: where the two CPU families above differ
# most) and the speed-up it must show.
CALIBRATION_SHAPE = (4, 512, 32, 32)
CALIBRATION_MARGIN = 1.15
_calibration = None             # Op cache: None = not yet measured in this process, else pays_on_this_cpu()'s answer.

#----------------------------------------------------------------------------

def use_winograd(x, w, stride, padding, dilation, groups):
    """True where conv2d_gradfix.conv2d should run conv3x3() (arguments as F.conv2d's): the process keeps freed
    memory, float32 CPU tensors, a dense 3x3 kernel, unit stride and dilation, symmetric padding 0-2, wide channels,
    enough tiles, and no autograd graph recorded."""
    if not _FAST_CPU_ENABLED or not cpu_malloc.keeps_freed_memory():
        return False
    if x.device.type != 'cpu' or x.dtype != torch.float32 or w.dtype != torch.float32 or x.ndim != 4:
        return False
    if groups != 1 or tuple(w.shape[2:]) != (3, 3) or as_pair(stride) != (1, 1) or as_pair(dilation) != (1, 1):
        return False
    if isinstance(padding, str) or len(set(as_pair(padding))) != 1 or as_pair(padding)[0] not in (0, 1, 2):
        return False
    pad = as_pair(padding)[0]
    out_h, out_w = x.shape[2] + 2 * pad - 2, x.shape[3] + 2 * pad - 2
    channels_last = _is_channels_last(x)
    min_product = MIN_CHANNEL_PRODUCT if channels_last else MIN_CHANNEL_PRODUCT_NCHW
    if w.shape[0] * w.shape[1] < min_product or x.shape[0] * -(-out_h // TILE) * -(-out_w // TILE) < MIN_TILES:
        return False
    if torch.jit.is_tracing() or (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad)):
        return False
    return pays_on_this_cpu()


def pays_on_this_cpu():
    """True iff Winograd beats the direct convolution on this CPU (module docstring): DNNLIB_WINOGRAD=1/0 if set,
    else timed once per process on the calibration layer and remembered."""
    forced = os.environ.get('DNNLIB_WINOGRAD', '').strip().lower()
    if forced in ('1', 'on', 'true'):
        return True
    if forced in ('0', 'off', 'false'):
        return False
    global _calibration
    if _calibration is None:
        _calibration = _measure_speedup() >= CALIBRATION_MARGIN
    return _calibration


def _measure_speedup(repeats=2):
    """Direct / Winograd time of the calibration layer (best of `repeats` after a warm-up of each)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(CALIBRATION_SHAPE, generator=generator).contiguous(memory_format=torch.channels_last)
    w = torch.randn([CALIBRATION_SHAPE[1], CALIBRATION_SHAPE[1], 3, 3], generator=generator) * 0.01
    candidates = {'direct': lambda: F.conv2d(x, w, padding=1), 'winograd': lambda: conv3x3(x, w, 1)}
    best = {}
    with torch.no_grad():
        for name, run in candidates.items():
            run()
        for _ in range(repeats):
            for name, run in candidates.items():
                start = time.perf_counter()
                run()
                best[name] = min(best.get(name, float('inf')), time.perf_counter() - start)
    return best['direct'] / best['winograd']


def _is_channels_last(x):
    """True iff x is laid out channels_last (and not also contiguous, as 1x1 images or one channel are)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def as_pair(value):
    """An int or a sequence of two ints (conv2d's stride, padding, dilation) as a tuple of two ints."""
    return (int(value), int(value)) if isinstance(value, int) else tuple(int(v) for v in value)


def _matrix(table, like):
    return torch.as_tensor(table, dtype=like.dtype, device=like.device)

#----------------------------------------------------------------------------

def conv3x3(x, w, padding=1):
    """F.conv2d(x, w, padding=padding) for a 3x3 kernel by F(4x4, 3x3).

    Args:
        x:       [N, C, H, W], any memory format.
        w:       [K, C, 3, 3].
        padding: Zero padding on every side (int >= 0).
    Returns:
        [N, K, H + 2 * padding - 2, W + 2 * padding - 2] in x's dtype, channels_last iff x is. Differentiable
        (plain torch ops), though the dispatch uses it only where no gradient is recorded.
    """
    batch, channels, height, width = x.shape
    out_channels = w.shape[0]
    out_h, out_w = height + 2 * padding - 2, width + 2 * padding - 2
    tiles_h, tiles_w = -(-out_h // TILE), -(-out_w // TILE)
    tiles = batch * tiles_h * tiles_w
    channels_last = _is_channels_last(x)

    # Pad so that the tiles cover the output exactly (extra zeros after the image; negative = crop).
    x_pad = F.pad(x, [padding, tiles_w * TILE + 2 - width - padding, padding, tiles_h * TILE + 2 - height - padding])
    u = w.reshape(out_channels * channels, 9) @ _matrix(_FILTER_2D, w).t()           # G w G^T: [K * C, 36]
    u = u.view(out_channels, channels, WINDOW * WINDOW)
    # The gathered windows keep the input's fastest axis innermost (channels for channels_last, else columns), so
    # that the gather copy reads memory in order; the products are arranged to match.
    s_n, s_c, s_h, s_w = x_pad.stride()
    if channels_last:
        windows = x_pad.as_strided((WINDOW, WINDOW, batch, tiles_h, tiles_w, channels),
                                   (s_h, s_w, s_n, TILE * s_h, TILE * s_w, s_c), x_pad.storage_offset())
        v = (_matrix(_INPUT_2D, x) @ windows.reshape(WINDOW * WINDOW, -1)).view(-1, tiles, channels)
        m = torch.bmm(v, u.permute(2, 1, 0))                                          # [36, tiles, K]
        y = (_matrix(_OUTPUT_2D, x) @ m.view(WINDOW * WINDOW, -1))                    # [16, tiles * K]
        y = y.view(TILE, TILE, batch, tiles_h, tiles_w, out_channels).permute(2, 5, 3, 0, 4, 1)
    else:
        windows = x_pad.as_strided((WINDOW, WINDOW, channels, batch, tiles_h, tiles_w),
                                   (s_h, s_w, s_c, s_n, TILE * s_h, TILE * s_w), x_pad.storage_offset())
        v = (_matrix(_INPUT_2D, x) @ windows.reshape(WINDOW * WINDOW, -1)).view(-1, channels, tiles)
        m = torch.bmm(u.permute(2, 0, 1), v)                                          # [36, K, tiles]
        y = (_matrix(_OUTPUT_2D, x) @ m.view(WINDOW * WINDOW, -1))                    # [16, K * tiles]
        y = y.view(TILE, TILE, out_channels, batch, tiles_h, tiles_w).permute(3, 2, 4, 0, 5, 1)
    return _assemble(y, (batch, out_channels, out_h, out_w), channels_last)          # y: [N, K, TH, 4, TW, 4]


def _assemble(y, out_shape, channels_last):
    """Tiles [N, K, TH, 4, TW, 4] -> [N, K, H', W'] in the given memory format, one copy where the tiles fit."""
    batch, out_channels, out_h, out_w = out_shape
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if out_h % TILE == 0 and out_w % TILE == 0:
        out = torch.empty(out_shape, dtype=y.dtype, device=y.device, memory_format=memory_format)
        s_n, s_k, s_h, s_w = out.stride()
        out.as_strided(y.shape, (s_n, s_k, TILE * s_h, s_h, TILE * s_w, s_w)).copy_(y)
        return out
    full = y.reshape(batch, out_channels, y.shape[2] * TILE, y.shape[4] * TILE)
    return full[:, :, :out_h, :out_w].contiguous(memory_format=memory_format)

#----------------------------------------------------------------------------
