// CUDA launchers for the fused filtered leaky ReLU; the per-tile algorithm and its index arithmetic are in
// filtered_lrelu.h (shared with the CPU emulation the tests run). Reference: filtered_lrelu.py, _filtered_lrelu_ref().

#include <c10/util/Half.h>
#include <c10/util/BFloat16.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include "filtered_lrelu.h"

static constexpr int FL_THREADS = 256;
static constexpr int FL_MAX_GRID_Z = 65535;

//----------------------------------------------------------------------------
// One block per output tile; blockIdx.z walks the (n, c) planes (strided, since gridDim.z is limited to 65535).

template <typename T>
__global__ void __launch_bounds__(FL_THREADS) fl_forward_kernel(FlParams p)
{
    extern __shared__ float4 fl_smem_f4[];      // float4: 16-byte alignment for the float arrays and the code bytes.
    float* smem = reinterpret_cast<float*>(fl_smem_f4);
    for (int plane = blockIdx.z; plane < p.planes; plane += gridDim.z)
        fl_tile<T>(p, smem, plane, blockIdx.y, blockIdx.x, threadIdx.x, blockDim.x);
}

template <typename T>
__global__ void fl_mask_apply_kernel(FlMaskParams p)
{
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < p.num_elems; i += stride)
        fl_mask_apply_elem<T>(p, i);
}

//----------------------------------------------------------------------------

int fl_max_smem_bytes(int device_index)
{
    int value = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&value, cudaDevAttrMaxSharedMemoryPerBlockOptin, device_index));
    return value;
}

template <typename T>
static void fl_forward_launch_typed(const FlParams& p, int device_index)
{
    const c10::cuda::CUDAGuard guard(device_index);
    int smem_bytes = fl_smem_layout(p).total_bytes;
    auto kernel = fl_forward_kernel<T>;
    // Above 48 KB a kernel must opt in to the larger shared memory carve-out.
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes));
    dim3 grid(p.ax.num_tiles, p.ay.num_tiles, p.planes < FL_MAX_GRID_Z ? p.planes : FL_MAX_GRID_Z);
    kernel<<<grid, FL_THREADS, smem_bytes, c10::cuda::getCurrentCUDAStream()>>>(p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void fl_forward_launch(const FlParams& p, int dtype, int device_index)
{
    switch (dtype) {
    case FL_FLOAT32: fl_forward_launch_typed<float>(p, device_index); break;
    case FL_FLOAT16: fl_forward_launch_typed<c10::Half>(p, device_index); break;
    case FL_BFLOAT16: fl_forward_launch_typed<c10::BFloat16>(p, device_index); break;
    default: TORCH_CHECK(false, "filtered_lrelu: unsupported dtype code ", dtype);
    }
}

template <typename T>
static void fl_mask_apply_launch_typed(const FlMaskParams& p, int device_index)
{
    const c10::cuda::CUDAGuard guard(device_index);
    int64_t blocks = (p.num_elems + FL_THREADS - 1) / FL_THREADS;
    blocks = blocks < 65536 ? blocks : 65536;
    fl_mask_apply_kernel<T><<<(unsigned)blocks, FL_THREADS, 0, c10::cuda::getCurrentCUDAStream()>>>(p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void fl_mask_apply_launch(const FlMaskParams& p, int dtype, int device_index)
{
    switch (dtype) {
    case FL_FLOAT32: fl_mask_apply_launch_typed<float>(p, device_index); break;
    case FL_FLOAT16: fl_mask_apply_launch_typed<c10::Half>(p, device_index); break;
    case FL_BFLOAT16: fl_mask_apply_launch_typed<c10::BFloat16>(p, device_index); break;
    default: TORCH_CHECK(false, "filtered_lrelu: unsupported dtype code ", dtype);
    }
}
