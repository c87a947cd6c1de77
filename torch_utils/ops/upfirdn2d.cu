// upfirdn2d CUDA kernel: upsample (zero insertion), pad, FIR filter, downsample, for every plane of [N, C, H, W].
// Must equal _upfirdn2d_ref in upfirdn2d.py; parity is checked at first use (upfirdn2d._parity_check).
//
// One block computes a tile of outputs of one plane. It first copies the input samples the tile reads (zeros
// outside the image) and the filter taps (oriented for correlation, gain folded in) to shared memory, then
// each thread sums, for its outputs, only the taps that land on real samples: with upsampling by `up`, every
// up-th tap, so no work is spent on inserted zeros. Accumulation is in float32 for every storage type.
//
// The per-block steps are __host__ __device__ functions, so upfirdn2d_emulate() can run them on the CPU.

#include <algorithm>
#include <vector>
#include <c10/util/Half.h>
#include <c10/util/BFloat16.h>
#include "upfirdn2d.h"

//----------------------------------------------------------------------------
// Integer helpers (C++ division truncates towards zero; tile origins can be negative).

static __host__ __device__ inline int floor_div(int a, int b)  // b > 0
{
    int q = a / b;
    return (q * b > a) ? q - 1 : q;
}

static __host__ __device__ inline int ceil_div(int a, int b)  // b > 0
{
    return -floor_div(-a, b);
}

template <typename T> static __host__ __device__ inline float to_float(T v) { return static_cast<float>(v); }
template <typename T> static __host__ __device__ inline T from_float(float v) { return static_cast<T>(v); }

//----------------------------------------------------------------------------
// Per-block steps.

struct tile_origin
{
    int out_x0, out_y0;     // First output of the tile.
    int in_x0, in_y0;       // First input sample the tile reads (may be < 0: padding).
};

static __host__ __device__ inline tile_origin tile_at(const upfirdn2d_params& p, int tile_x, int tile_y)
{
    tile_origin t;
    t.out_x0 = tile_x * p.tile_out_w;
    t.out_y0 = tile_y * p.tile_out_h;
    // Output o reads upsampled positions from o * down - pad0; the first input sample there is ceil(that / up).
    t.in_x0 = ceil_div(t.out_x0 * p.down_x - p.pad_x0, p.up_x);
    t.in_y0 = ceil_div(t.out_y0 * p.down_y - p.pad_y0, p.up_y);
    return t;
}

// s_f[ky * f_w + kx] multiplies upsampled position (o * down - pad0 + k): the taps reversed for true convolution.
static __host__ __device__ inline void load_filter(const upfirdn2d_params& p, float* s_f, int thread, int num_threads)
{
    const int count = p.f_w * p.f_h;
    for (int i = thread; i < count; i += num_threads)
        s_f[i] = (p.flip ? p.f[i] : p.f[count - 1 - i]) * p.gain;
}

template <typename T>
static __host__ __device__ inline void load_tile(const upfirdn2d_params& p, const tile_origin& t, int64_t plane,
                                                 float* s_in, int thread, int num_threads)
{
    const T* x = static_cast<const T*>(p.x) + plane * p.in_h * p.in_w;
    const int count = p.tile_in_w * p.tile_in_h;
    for (int i = thread; i < count; i += num_threads)
    {
        const int ty = i / p.tile_in_w;
        const int tx = i - ty * p.tile_in_w;
        const int ix = t.in_x0 + tx;
        const int iy = t.in_y0 + ty;
        const bool inside = (ix >= 0 && ix < p.in_w && iy >= 0 && iy < p.in_h);
        s_in[i] = inside ? to_float(x[(int64_t)iy * p.in_w + ix]) : 0.0f;
    }
}

// One output (ox, oy) of the tile: the sum over taps k that fall on input samples (position divisible by up).
static __host__ __device__ inline float tile_output(const upfirdn2d_params& p, const tile_origin& t,
                                                    const float* s_in, const float* s_f, int ox, int oy)
{
    const int base_x = ox * p.down_x - p.pad_x0;    // Upsampled position of tap 0.
    const int base_y = oy * p.down_y - p.pad_y0;
    const int kx0 = ceil_div(base_x, p.up_x) * p.up_x - base_x;     // First tap on a sample.
    const int ky0 = ceil_div(base_y, p.up_y) * p.up_y - base_y;
    const int sx0 = ceil_div(base_x, p.up_x) - t.in_x0;              // That sample's column in s_in.
    const int sy0 = ceil_div(base_y, p.up_y) - t.in_y0;
    float acc = 0.0f;
    for (int ky = ky0, sy = sy0; ky < p.f_h; ky += p.up_y, sy++)
    {
        const float* row_in = s_in + sy * p.tile_in_w;
        const float* row_f = s_f + ky * p.f_w;
        for (int kx = kx0, sx = sx0; kx < p.f_w; kx += p.up_x, sx++)
            acc += row_in[sx] * row_f[kx];
    }
    return acc;
}

template <typename T>
static __host__ __device__ inline void store_tile(const upfirdn2d_params& p, const tile_origin& t, int64_t plane,
                                                  const float* s_in, const float* s_f, int thread, int num_threads)
{
    T* y = static_cast<T*>(p.y) + plane * p.out_h * p.out_w;
    const int count = p.tile_out_w * p.tile_out_h;
    for (int i = thread; i < count; i += num_threads)
    {
        const int ty = i / p.tile_out_w;
        const int ox = t.out_x0 + (i - ty * p.tile_out_w);
        const int oy = t.out_y0 + ty;
        if (ox < p.out_w && oy < p.out_h)
            y[(int64_t)oy * p.out_w + ox] = from_float<T>(tile_output(p, t, s_in, s_f, ox, oy));
    }
}

//----------------------------------------------------------------------------
// Kernel: grid (tiles x, tiles y, planes); a block loops over planes when there are more than gridDim.z.

template <typename T>
__global__ void upfirdn2d_kernel(upfirdn2d_params p)
{
    extern __shared__ float smem[];
    float* s_f = smem;
    float* s_in = smem + p.f_w * p.f_h;
    load_filter(p, s_f, threadIdx.x, blockDim.x);
    const tile_origin t = tile_at(p, blockIdx.x, blockIdx.y);
    for (int64_t plane = blockIdx.z; plane < p.planes; plane += gridDim.z)
    {
        __syncthreads();    // The previous plane's reads of s_in are done (and s_f is complete).
        load_tile<T>(p, t, plane, s_in, threadIdx.x, blockDim.x);
        __syncthreads();
        store_tile<T>(p, t, plane, s_in, s_f, threadIdx.x, blockDim.x);
    }
}

template <typename T>
cudaError_t upfirdn2d_launch(const upfirdn2d_params& p, cudaStream_t stream)
{
    const size_t smem_bytes = upfirdn2d_smem_bytes(p);
    const int threads = std::min(256, p.tile_out_w * p.tile_out_h);
    dim3 grid((p.out_w + p.tile_out_w - 1) / p.tile_out_w, (p.out_h + p.tile_out_h - 1) / p.tile_out_h,
              (unsigned)std::min<int64_t>(p.planes, 65535));
    upfirdn2d_kernel<T><<<grid, threads, smem_bytes, stream>>>(p);
    return cudaGetLastError();
}

template cudaError_t upfirdn2d_launch<float>(const upfirdn2d_params& p, cudaStream_t stream);
template cudaError_t upfirdn2d_launch<c10::Half>(const upfirdn2d_params& p, cudaStream_t stream);
template cudaError_t upfirdn2d_launch<c10::BFloat16>(const upfirdn2d_params& p, cudaStream_t stream);

//----------------------------------------------------------------------------
// CPU emulation of the same per-block steps (one thread per block).

void upfirdn2d_emulate(const upfirdn2d_params& p)
{
    std::vector<float> smem(upfirdn2d_smem_bytes(p) / sizeof(float));
    float* s_f = smem.data();
    float* s_in = smem.data() + p.f_w * p.f_h;
    load_filter(p, s_f, 0, 1);
    const int tiles_x = (p.out_w + p.tile_out_w - 1) / p.tile_out_w;
    const int tiles_y = (p.out_h + p.tile_out_h - 1) / p.tile_out_h;
    for (int tile_y = 0; tile_y < tiles_y; tile_y++)
        for (int tile_x = 0; tile_x < tiles_x; tile_x++)
        {
            const tile_origin t = tile_at(p, tile_x, tile_y);
            for (int64_t plane = 0; plane < p.planes; plane++)
            {
                load_tile<float>(p, t, plane, s_in, 0, 1);
                store_tile<float>(p, t, plane, s_in, s_f, 0, 1);
            }
        }
}
