// upfirdn2d kernel parameters shared by upfirdn2d.cpp (host) and upfirdn2d.cu (device).
// What the kernel computes, and the reference it must equal, is in upfirdn2d.py (_upfirdn2d_ref).

#pragma once
#include <cstddef>
#include <cstdint>
#include <cuda_runtime.h>

struct upfirdn2d_params
{
    const void*  x;             // [planes, in_h, in_w] contiguous input, planes = N * C.
    const float* f;             // [f_h, f_w] contiguous float32 taps.
    void*        y;             // [planes, out_h, out_w] contiguous output, same dtype as x.
    int          up_x, up_y;    // Zero-insertion factors (>= 1).
    int          down_x, down_y;// Decimation factors (>= 1).
    int          pad_x0, pad_y0;// Leading padding of the upsampled image (negative = crop). The trailing padding
                                // only sets out_w / out_h.
    int          flip;          // 0: true convolution with f (scipy.signal.upfirdn), 1: correlation.
    float        gain;          // Output scale.
    int          in_w, in_h;
    int          out_w, out_h;
    int          f_w, f_h;
    int64_t      planes;
    int          tile_out_w;    // Outputs per block along x / y; set by upfirdn2d_choose_tile().
    int          tile_out_h;
    int          tile_in_w;     // Input samples a tile reads along x / y (upper bound); set with the above.
    int          tile_in_h;
};

//----------------------------------------------------------------------------
// Tile choice (host). A block computes tile_out_w x tile_out_h outputs of one plane from a shared-memory copy of
// the input samples they read. Output o reads upsampled positions o * down - pad0 + [0, f); input sample i sits
// at position i * up, so a tile reads at most ((tile_out - 1) * down + f - 1) / up + 1 samples per axis.

static const size_t UPFIRDN2D_SMEM_BUDGET = 48 * 1024;  // Static limit without opting in to more.

inline int upfirdn2d_tile_in(int tile_out, int down, int taps, int up)
{
    return ((tile_out - 1) * down + taps - 1) / up + 1;
}

inline size_t upfirdn2d_smem_bytes(const upfirdn2d_params& p)
{
    return sizeof(float) * ((size_t)p.f_w * p.f_h + (size_t)p.tile_in_w * p.tile_in_h);
}

// Picks the largest tile (at most 64 x 32, no larger than the output needs) whose shared memory fits the budget.
// Returns the shared-memory bytes per block, or 0 when even an 8 x 8 tile does not fit (filter too large).
inline size_t upfirdn2d_choose_tile(upfirdn2d_params& p)
{
    int tile_w = 8, tile_h = 8;
    while (tile_w < 64 && tile_w < p.out_w) tile_w *= 2;
    while (tile_h < 32 && tile_h < p.out_h) tile_h *= 2;
    for (;;)
    {
        p.tile_out_w = tile_w;
        p.tile_out_h = tile_h;
        p.tile_in_w = upfirdn2d_tile_in(tile_w, p.down_x, p.f_w, p.up_x);
        p.tile_in_h = upfirdn2d_tile_in(tile_h, p.down_y, p.f_h, p.up_y);
        if (upfirdn2d_smem_bytes(p) <= UPFIRDN2D_SMEM_BUDGET)
            return upfirdn2d_smem_bytes(p);
        if (tile_w == 8 && tile_h == 8)
            return 0;
        if (tile_w >= tile_h) tile_w /= 2; else tile_h /= 2;
    }
}

//----------------------------------------------------------------------------

// Launches the kernel for element type T (float, c10::Half, c10::BFloat16); p's tile fields must be set.
template <typename T> cudaError_t upfirdn2d_launch(const upfirdn2d_params& p, cudaStream_t stream);

// Runs the kernel's per-block code on the CPU, block after block (float32 host pointers; tiles must be set).
// Lets machines without a GPU test the kernel's index arithmetic against the reference.
void upfirdn2d_emulate(const upfirdn2d_params& p);
