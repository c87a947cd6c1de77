// Fused bias + activation + gain + clamp: kernel parameters shared by bias_act.cpp (host) and bias_act.cu (device).
// The maths, and the reference it must equal, are in bias_act.py (_bias_act_ref).

#pragma once
#include <cstdint>
#include <cuda_runtime.h>

struct bias_act_kernel_params
{
    const void* g;          // [numel] The tensor being transformed: x (mode 0), dy (mode 1), ddx * dy (mode 2).
    const void* b;          // [bias_size] Bias along the op's dim, or nullptr.
    const void* xref;       // [numel] Saved x for modes 1 and 2 (same layout as g), or nullptr in mode 0.
    void*       out;        // [numel] Result, same layout as g.
    int64_t     numel;      // Number of elements of g, xref and out.
    int64_t     bias_stride;// Memory stride of the bias dimension (elements), > 0.
    int64_t     bias_size;  // Length of the bias dimension.
    int         mode;       // 0: act(v) * gain, clamped; 1: g * act'(v) * gain * mask; 2: g * act''(v) * gain * mask.
    int         act;        // Activation index: cuda_idx in bias_act.py's activation_funcs (1..9).
    double      alpha;      // Activation parameter (lrelu slope).
    double      gain;       // Multiplier after the activation.
    double      clamp;      // Clamp limit; < 0 means no clamping.
};

// Launches the kernel for element type T (float, double, c10::Half, c10::BFloat16) on the given stream; with on_host,
// runs the same per-element code serially on the CPU instead (a self-test for machines without a GPU).
template <typename T> cudaError_t launch_bias_act(const bias_act_kernel_params& p, cudaStream_t stream, bool on_host);
