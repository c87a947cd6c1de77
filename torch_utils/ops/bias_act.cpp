// Python binding of the fused bias_act kernel (bias_act.cu): argument checks, output allocation, dtype dispatch.
// Called only from bias_act.py (_run_kernel), which documents the modes.

#include <torch/extension.h>
#include <c10/cuda/CUDAStream.h>  // Not ATen/cuda/CUDAContext.h: that needs cuSPARSE/cuBLAS headers.
#include <c10/cuda/CUDAGuard.h>
#include "bias_act.h"

//----------------------------------------------------------------------------

static bool same_layout(const torch::Tensor& a, const torch::Tensor& b)
{
    if (a.sizes() != b.sizes())
        return false;
    for (int64_t i = 0; i < a.dim(); i++)
        if (a.size(i) > 1 && a.stride(i) != b.stride(i))
            return false;
    return true;
}

// out = mode 0: clamp(act(g + b) * gain); mode 1: g * act'(xref + b) * gain * mask; mode 2: the same with act''.
// b and xref may be empty tensors (no bias; mode 0). CPU tensors run the kernel's per-element code serially on the
// host: a self-test of the kernel's arithmetic where no GPU exists (far too slow for real use; bias_act.py never
// sends CPU tensors here).
static torch::Tensor bias_act(torch::Tensor g, torch::Tensor b, torch::Tensor xref, int64_t mode, int64_t dim,
                              int64_t act, double alpha, double gain, double clamp)
{
    const bool on_host = !g.is_cuda();
    TORCH_CHECK(g.is_cuda() || g.is_cpu(), "bias_act_plugin: input must be a CUDA (or, for self-tests, CPU) tensor");
    TORCH_CHECK(g.is_non_overlapping_and_dense(), "bias_act_plugin: input must be dense (call .contiguous())");
    TORCH_CHECK(0 <= dim && dim < g.dim(), "bias_act_plugin: dim ", dim, " out of range for ", g.dim(), " dims");
    TORCH_CHECK(0 <= mode && mode <= 2, "bias_act_plugin: mode must be 0, 1 or 2, got ", mode);
    TORCH_CHECK(1 <= act && act <= 9, "bias_act_plugin: activation index must be in 1..9, got ", act);
    if (b.numel() > 0)
    {
        TORCH_CHECK(b.dim() == 1 && b.size(0) == g.size(dim), "bias_act_plugin: bias must have shape [", g.size(dim),
                    "], got ", b.sizes());
        TORCH_CHECK(b.scalar_type() == g.scalar_type() && b.device() == g.device(),
                    "bias_act_plugin: bias must have the input's dtype and device");
        b = b.contiguous();
    }
    TORCH_CHECK(mode == 0 || xref.numel() > 0, "bias_act_plugin: modes 1 and 2 need the saved input xref");
    if (xref.numel() > 0)
    {
        TORCH_CHECK(same_layout(g, xref), "bias_act_plugin: xref must have the input's shape and strides");
        TORCH_CHECK(xref.scalar_type() == g.scalar_type() && xref.device() == g.device(),
                    "bias_act_plugin: xref must have the input's dtype and device");
    }

    c10::cuda::OptionalCUDAGuard device_guard;
    if (!on_host)
        device_guard.set_device(g.device());
    torch::Tensor out = torch::empty_like(g);  // A dense input keeps its strides (e.g. channels_last).
    if (g.numel() == 0)
        return out;

    bias_act_kernel_params p;
    p.g           = g.data_ptr();
    p.b           = b.numel() > 0 ? b.data_ptr() : nullptr;
    p.xref        = xref.numel() > 0 ? xref.data_ptr() : nullptr;
    p.out         = out.data_ptr();
    p.numel       = g.numel();
    p.bias_stride = g.size(dim) > 1 ? g.stride(dim) : 1;
    p.bias_size   = g.size(dim);
    p.mode        = (int)mode;
    p.act         = (int)act;
    p.alpha       = alpha;
    p.gain        = gain;
    p.clamp       = clamp;

    cudaStream_t stream = on_host ? nullptr : (cudaStream_t)c10::cuda::getCurrentCUDAStream();
    cudaError_t err = cudaSuccess;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, g.scalar_type(), "bias_act", [&]
    {
        err = launch_bias_act<scalar_t>(p, stream, on_host);
    });
    TORCH_CHECK(err == cudaSuccess, "bias_act_plugin: kernel launch failed: ", cudaGetErrorString(err));
    return out;
}

//----------------------------------------------------------------------------

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.def("bias_act", &bias_act, "Fused bias + activation + gain + clamp and its derivatives (see bias_act.py)");
}

//----------------------------------------------------------------------------
