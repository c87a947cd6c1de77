// Python binding of the upfirdn2d kernel (upfirdn2d.cu): argument checks, output allocation, dtype dispatch.
// Called only from upfirdn2d.py (_run_kernel and the tests), which documents the semantics.

#include <torch/extension.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include "upfirdn2d.h"

//----------------------------------------------------------------------------

// Checks the arguments, allocates the output and fills the kernel parameters (tiles included).
static upfirdn2d_params make_params(const torch::Tensor& x, const torch::Tensor& f, torch::Tensor& y,
                                    int64_t up_x, int64_t up_y, int64_t down_x, int64_t down_y, int64_t pad_x0,
                                    int64_t pad_x1, int64_t pad_y0, int64_t pad_y1, bool flip, double gain)
{
    TORCH_CHECK(x.dim() == 4, "upfirdn2d_plugin: x must be [N, C, H, W], got ", x.sizes());
    TORCH_CHECK(f.dim() == 2 && f.scalar_type() == torch::kFloat32, "upfirdn2d_plugin: f must be 2-D float32, got ",
                f.sizes(), " ", f.scalar_type());
    TORCH_CHECK(f.device() == x.device(), "upfirdn2d_plugin: f must be on x's device");
    TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1,
                "upfirdn2d_plugin: up and down factors must be >= 1");
    TORCH_CHECK(x.size(2) * up_y + std::abs(pad_y0) + std::abs(pad_y1) < INT32_MAX / 2 &&
                x.size(3) * up_x + std::abs(pad_x0) + std::abs(pad_x1) < INT32_MAX / 2,
                "upfirdn2d_plugin: image too large for 32-bit indexing");
    const int64_t out_w = (x.size(3) * up_x + pad_x0 + pad_x1 - f.size(1)) / down_x + 1;
    const int64_t out_h = (x.size(2) * up_y + pad_y0 + pad_y1 - f.size(0)) / down_y + 1;
    TORCH_CHECK(x.size(3) * up_x + pad_x0 + pad_x1 >= f.size(1) && x.size(2) * up_y + pad_y0 + pad_y1 >= f.size(0),
                "upfirdn2d_plugin: output would be empty; increase the padding");
    y = torch::empty({x.size(0), x.size(1), out_h, out_w}, x.options());

    upfirdn2d_params p;
    p.x = x.data_ptr();
    p.f = f.data_ptr<float>();
    p.y = y.data_ptr();
    p.up_x = (int)up_x;      p.up_y = (int)up_y;
    p.down_x = (int)down_x;  p.down_y = (int)down_y;
    p.pad_x0 = (int)pad_x0;  p.pad_y0 = (int)pad_y0;
    p.flip = flip ? 1 : 0;
    p.gain = (float)gain;
    p.in_w = (int)x.size(3); p.in_h = (int)x.size(2);
    p.out_w = (int)out_w;    p.out_h = (int)out_h;
    p.f_w = (int)f.size(1);  p.f_h = (int)f.size(0);
    p.planes = x.size(0) * x.size(1);
    TORCH_CHECK(upfirdn2d_choose_tile(p) > 0, "upfirdn2d_plugin: filter ", f.sizes(), " with up=", up_x, "x", up_y,
                " down=", down_x, "x", down_y, " needs more shared memory than a block has; use impl='ref'");
    return p;
}

//----------------------------------------------------------------------------

static torch::Tensor upfirdn2d(torch::Tensor x, torch::Tensor f, int64_t up_x, int64_t up_y, int64_t down_x,
                               int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1,
                               bool flip, double gain)
{
    TORCH_CHECK(x.is_cuda(), "upfirdn2d_plugin: x must be a CUDA tensor");
    const c10::cuda::OptionalCUDAGuard device_guard(x.device());
    x = x.contiguous();
    f = f.contiguous();
    torch::Tensor y;
    upfirdn2d_params p = make_params(x, f, y, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1, flip, gain);
    if (y.numel() == 0)
        return y;
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
    cudaError_t err;
    switch (x.scalar_type())
    {
        case torch::kFloat32:  err = upfirdn2d_launch<float>(p, stream); break;
        case torch::kFloat16:  err = upfirdn2d_launch<c10::Half>(p, stream); break;
        case torch::kBFloat16: err = upfirdn2d_launch<c10::BFloat16>(p, stream); break;
        default: TORCH_CHECK(false, "upfirdn2d_plugin: dtype ", x.scalar_type(), " not supported (use impl='ref')");
    }
    TORCH_CHECK(err == cudaSuccess, "upfirdn2d_plugin: kernel launch failed: ", cudaGetErrorString(err));
    return y;
}

// The kernel's per-block code run on the CPU (float32 CPU tensors): tests its indexing without a GPU.
static torch::Tensor upfirdn2d_emulate_cpu(torch::Tensor x, torch::Tensor f, int64_t up_x, int64_t up_y,
                                           int64_t down_x, int64_t down_y, int64_t pad_x0, int64_t pad_x1,
                                           int64_t pad_y0, int64_t pad_y1, bool flip, double gain)
{
    TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == torch::kFloat32,
                "upfirdn2d_plugin: emulation needs a float32 CPU tensor");
    x = x.contiguous();
    f = f.contiguous();
    torch::Tensor y;
    upfirdn2d_params p = make_params(x, f, y, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1, flip, gain);
    if (y.numel() > 0)
        upfirdn2d_emulate(p);
    return y;
}

//----------------------------------------------------------------------------

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.def("upfirdn2d", &upfirdn2d, "upfirdn2d on CUDA (see upfirdn2d.py)");
    m.def("upfirdn2d_emulate_cpu", &upfirdn2d_emulate_cpu, "upfirdn2d kernel code run on the CPU, for tests");
}
