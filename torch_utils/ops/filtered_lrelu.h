// Fused filtered leaky ReLU (StyleGAN3, Karras et al. 2021, Sec. 3.2 and App. D): one pass per output tile of
//   z = upfirdn(x + b, fu, up, padding) * up^2     (zero-insert + FIR interpolation filter)
//   a = clamp(lrelu(z, slope) * gain, -clamp, clamp)
//   y = upfirdn(a, fd, down)                        (FIR anti-aliasing filter + decimation)
// The reference it must equal: filtered_lrelu.py, _filtered_lrelu_ref().
//
// Everything below that touches indices is host+device code, so the same tile function runs on the GPU (one CUDA
// block per tile) and on the CPU (filtered_lrelu.cpp built with -DFL_CPU_EMULATION, used by the tests to check the
// tiling arithmetic where no GPU is available).
//
// Geometry along one axis (y or x), with the filters written as correlation kernels k (the true-convolution filter
// flipped, unless flip_filter), gain folded in:
//   mid_size = in_size * up + pad0 + pad1 - fu_taps + 1             (length of z)
//   z[m]     = sum_{t: (m + t - pad0) % up == 0} ku[t] * (x + b)[(m + t - pad0) / up]   (0 outside the image)
//   out_size = (mid_size - fd_taps + down) / down                    (= ceil((mid_size - fd_taps + 1) / down))
//   y[o]     = sum_t kd[t] * a[o * down + t]
// An output tile [o0, o0 + tile_out) needs z on [o0 * down, o0 * down + tile_mid) with
//   tile_mid = (tile_out - 1) * down + fd_taps,
// and x on [i0, i0 + tile_in) with i0 = ceil((o0 * down - pad0) / up), tile_in = (tile_mid + fu_taps - 2) / up + 1.
// In tile-local coordinates (l for z, j for x): with base = o0 * down - pad0 - i0 * up, which lies in (-up, 0],
// tap t of z[l] hits x[j] iff base + l + t = j * up, so the taps start at t0 = (-(base + l)) mod up and step by up.
//
// The backward pass needs, per element of z, the derivative of the clamp(lrelu * gain) step. The forward pass stores
// it as a 2-bit code (0: z > 0, slope 1; 1: z <= 0, slope `slope`; 2: clamped, 0), four codes per byte along x in
// `si` [N, C, mid_h, ceil(mid_w / 4)]. Tiles overlap in z (by fd_taps - down), so each z element is written by the
// one tile that owns it: tile t owns [t * tile_out * down, (t + 1) * tile_out * down) (the last tile: up to
// mid_size); tile_out_x is a multiple of 4, so no two tiles share a byte.

#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define FL_HD __host__ __device__ __forceinline__
#else
#define FL_HD inline
#endif

// A block-wide barrier on the GPU; nothing on the CPU, where one worker runs the phases in order.
FL_HD void fl_sync()
{
#if defined(__CUDA_ARCH__)
    __syncthreads();
#endif
}
#define FL_SYNC() fl_sync()

//----------------------------------------------------------------------------
// Integer helpers that are exact for negative numerators (C++ division truncates toward zero).

FL_HD int fl_floor_div(int a, int b) { return (a >= 0) ? a / b : -((-a + b - 1) / b); }
FL_HD int fl_ceil_div(int a, int b) { return -fl_floor_div(-a, b); }
FL_HD int fl_pos_mod(int a, int b) { int r = a % b; return (r < 0) ? r + b : r; }
FL_HD int fl_min(int a, int b) { return (a < b) ? a : b; }
FL_HD int fl_max(int a, int b) { return (a > b) ? a : b; }

//----------------------------------------------------------------------------
// Geometry of one axis; see the header comment for the formulas.

struct FlAxis {
    int in_size, up, down, pad0, pad1, fu_taps, fd_taps;
    int mid_size, out_size;                         // Length of z and of y.
    int tile_out, tile_mid, tile_in, num_tiles;     // Per-tile window lengths in y, z and x; tiles along the axis.
};

// Returns false when the axis is too short for the filters (no output sample).
FL_HD bool fl_axis_init(FlAxis& a, int in_size, int up, int down, int pad0, int pad1, int fu_taps, int fd_taps,
                        int tile_out)
{
    a.in_size = in_size; a.up = up; a.down = down; a.pad0 = pad0; a.pad1 = pad1;
    a.fu_taps = fu_taps; a.fd_taps = fd_taps;
    a.mid_size = in_size * up + pad0 + pad1 - fu_taps + 1;
    a.out_size = (a.mid_size >= fd_taps) ? (a.mid_size - fd_taps + down) / down : 0;
    a.tile_out = tile_out;
    a.tile_mid = (tile_out - 1) * down + fd_taps;
    a.tile_in = (a.tile_mid + fu_taps - 2) / up + 1;
    a.num_tiles = (a.out_size + tile_out - 1) / tile_out;
    return a.out_size >= 1;
}

//----------------------------------------------------------------------------
// Everything one launch needs. Filters are float32 correlation kernels with the gain folded in; a separable filter
// is stored as its y taps followed by its x taps, a 2-D one as [taps_y][taps_x].

struct FlParams {
    FlAxis ay, ax;
    int planes, channels;           // N * C, and C (the bias index is plane % C).
    const void* x;                  // [N, C, in_h, in_w], contiguous, scalar type T.
    void* y;                        // [N, C, out_h, out_w], contiguous, scalar type T.
    uint8_t* si;                    // [N, C, mid_h, si_row_bytes] codes, or nullptr when no gradient is needed.
    int si_row_bytes;               // ceil(mid_w / 4).
    const float* b;                 // [C] or nullptr.
    const float* fu;
    const float* fd;
    int fu_separable, fd_separable;
    float gain, slope, clamp;       // clamp < 0: no clamping.
};

FL_HD int fl_filter_floats(int separable, int taps_y, int taps_x)
{
    return separable ? taps_y + taps_x : taps_y * taps_x;
}

// Shared memory layout of one tile (floats, then bytes): fu | fd | x window | 1-D pass scratch | z window | codes.
struct FlSmem {
    int fu, fd, in, tmp, mid, code, total_bytes;    // Offsets in floats (code: in bytes from the start).
};

FL_HD FlSmem fl_smem_layout(const FlParams& p)
{
    const FlAxis& ay = p.ay;
    const FlAxis& ax = p.ax;
    FlSmem s;
    int n_fu = fl_filter_floats(p.fu_separable, ay.fu_taps, ax.fu_taps);
    int n_fd = fl_filter_floats(p.fd_separable, ay.fd_taps, ax.fd_taps);
    // The scratch serves the vertical pass of a separable fu (z rows x x columns), then, once that is consumed,
    // the horizontal pass of a separable fd (z rows x y columns).
    int n_tmp = 0;
    if (p.fu_separable) n_tmp = fl_max(n_tmp, ay.tile_mid * ax.tile_in);
    if (p.fd_separable) n_tmp = fl_max(n_tmp, ay.tile_mid * ax.tile_out);
    s.fu = 0;
    s.fd = s.fu + n_fu;
    s.in = s.fd + n_fd;
    s.tmp = s.in + ay.tile_in * ax.tile_in;
    s.mid = s.tmp + n_tmp;
    s.code = (s.mid + ay.tile_mid * ax.tile_mid) * 4;
    s.total_bytes = s.code + ay.tile_mid * ax.tile_mid;
    s.total_bytes = (s.total_bytes + 15) / 16 * 16;
    return s;
}

//----------------------------------------------------------------------------
// The nonlinearity (StyleGAN3 Eq. for the filtered lrelu, App. D) and its gradient code.

FL_HD float fl_activate(float z, float gain, float slope, float clamp, uint8_t& code)
{
    float a = ((z > 0.f) ? z : z * slope) * gain;
    code = (z > 0.f) ? 0 : 1;
    if (clamp >= 0.f && (a > clamp || a < -clamp)) {
        a = (a > 0.f) ? clamp : -clamp;
        code = 2;
    }
    return a;
}

FL_HD float fl_code_factor(int code, float gain, float slope)
{
    return (code == 0) ? gain : (code == 1) ? gain * slope : 0.f;
}

//----------------------------------------------------------------------------
// Phase 1: the x window plus bias, zero outside the image (padding is applied after the bias, as in the reference).

template <typename T>
FL_HD void fl_load_input(const FlParams& p, float* s_in, int plane, int iy0, int ix0, int tid, int nthreads)
{
    const FlAxis& ay = p.ay;
    const FlAxis& ax = p.ax;
    const T* xp = static_cast<const T*>(p.x) + (int64_t)plane * ay.in_size * ax.in_size;
    float bias = p.b ? p.b[plane % p.channels] : 0.f;
    for (int i = tid; i < ay.tile_in * ax.tile_in; i += nthreads) {
        int jy = i / ax.tile_in, jx = i - jy * ax.tile_in;
        int gy = iy0 + jy, gx = ix0 + jx;
        float v = 0.f;
        if (gy >= 0 && gy < ay.in_size && gx >= 0 && gx < ax.in_size)
            v = static_cast<float>(xp[(int64_t)gy * ax.in_size + gx]) + bias;
        s_in[i] = v;
    }
}

//----------------------------------------------------------------------------
// Phase 2: upsample into the z window (polyphase: only taps that land on a non-inserted sample), then activate.

FL_HD void fl_upsample_activate(const FlParams& p, const FlSmem& sm, float* smem, int base_y, int base_x,
                                int tid, int nthreads)
{
    const FlAxis& ay = p.ay;
    const FlAxis& ax = p.ax;
    const float* s_fu = smem + sm.fu;
    const float* s_in = smem + sm.in;
    float* s_tmp = smem + sm.tmp;
    float* s_mid = smem + sm.mid;
    uint8_t* s_code = reinterpret_cast<uint8_t*>(smem) + sm.code;
    int n_mid = ay.tile_mid * ax.tile_mid;
    if (p.fu_separable) {
        for (int i = tid; i < ay.tile_mid * ax.tile_in; i += nthreads) {  // Vertical pass: z rows, x columns.
            int ly = i / ax.tile_in, jx = i - ly * ax.tile_in;
            float acc = 0.f;
            for (int t = fl_pos_mod(-(base_y + ly), ay.up); t < ay.fu_taps; t += ay.up)
                acc += s_fu[t] * s_in[((base_y + ly + t) / ay.up) * ax.tile_in + jx];
            s_tmp[i] = acc;
        }
        FL_SYNC();
        for (int i = tid; i < n_mid; i += nthreads) {                     // Horizontal pass: z rows, z columns.
            int ly = i / ax.tile_mid, lx = i - ly * ax.tile_mid;
            float acc = 0.f;
            for (int t = fl_pos_mod(-(base_x + lx), ax.up); t < ax.fu_taps; t += ax.up)
                acc += s_fu[ay.fu_taps + t] * s_tmp[ly * ax.tile_in + (base_x + lx + t) / ax.up];
            s_mid[i] = fl_activate(acc, p.gain, p.slope, p.clamp, s_code[i]);
        }
    } else {
        for (int i = tid; i < n_mid; i += nthreads) {
            int ly = i / ax.tile_mid, lx = i - ly * ax.tile_mid;
            int tx0 = fl_pos_mod(-(base_x + lx), ax.up);
            float acc = 0.f;
            for (int ty = fl_pos_mod(-(base_y + ly), ay.up); ty < ay.fu_taps; ty += ay.up) {
                const float* row = s_in + ((base_y + ly + ty) / ay.up) * ax.tile_in;
                for (int tx = tx0; tx < ax.fu_taps; tx += ax.up)
                    acc += s_fu[ty * ax.fu_taps + tx] * row[(base_x + lx + tx) / ax.up];
            }
            s_mid[i] = fl_activate(acc, p.gain, p.slope, p.clamp, s_code[i]);
        }
    }
}

//----------------------------------------------------------------------------
// Phase 3: write the gradient codes of the z elements this tile owns (see the header comment), 4 per byte.

FL_HD void fl_store_codes(const FlParams& p, const uint8_t* s_code, int plane, int tile_y, int tile_x,
                          int tid, int nthreads)
{
    const FlAxis& ay = p.ay;
    const FlAxis& ax = p.ax;
    int my0 = tile_y * ay.tile_out * ay.down, mx0 = tile_x * ax.tile_out * ax.down;
    int own_y = fl_min(ay.tile_mid, ay.mid_size - my0);
    int own_x = fl_min(ax.tile_mid, ax.mid_size - mx0);
    if (tile_y + 1 < ay.num_tiles) own_y = fl_min(own_y, ay.tile_out * ay.down);
    if (tile_x + 1 < ax.num_tiles) own_x = fl_min(own_x, ax.tile_out * ax.down);
    int own_bytes = (own_x + 3) / 4;
    uint8_t* row0 = p.si + ((int64_t)plane * ay.mid_size + my0) * p.si_row_bytes + mx0 / 4;
    for (int i = tid; i < own_y * own_bytes; i += nthreads) {
        int ly = i / own_bytes, k = i - ly * own_bytes;
        unsigned packed = 0;
        for (int j = 0; j < 4; j++) {
            int lx = k * 4 + j;
            if (lx < own_x)
                packed |= (unsigned)s_code[ly * ax.tile_mid + lx] << (2 * j);
        }
        row0[(int64_t)ly * p.si_row_bytes + k] = (uint8_t)packed;
    }
}

//----------------------------------------------------------------------------
// Phase 4: filter the z window with fd and decimate into the output tile.

template <typename T>
FL_HD void fl_downsample_store(const FlParams& p, const FlSmem& sm, float* smem, int plane, int oy0, int ox0,
                               int tid, int nthreads)
{
    const FlAxis& ay = p.ay;
    const FlAxis& ax = p.ax;
    const float* s_fd = smem + sm.fd;
    const float* s_mid = smem + sm.mid;
    float* s_tmp = smem + sm.tmp;
    T* yp = static_cast<T*>(p.y) + (int64_t)plane * ay.out_size * ax.out_size;
    int n_out = ay.tile_out * ax.tile_out;
    if (p.fd_separable) {
        for (int i = tid; i < ay.tile_mid * ax.tile_out; i += nthreads) {  // Horizontal pass: z rows, y columns.
            int ly = i / ax.tile_out, ox = i - ly * ax.tile_out;
            const float* row = s_mid + ly * ax.tile_mid + ox * ax.down;
            float acc = 0.f;
            for (int t = 0; t < ax.fd_taps; t++)
                acc += s_fd[ay.fd_taps + t] * row[t];
            s_tmp[i] = acc;
        }
        FL_SYNC();
        for (int i = tid; i < n_out; i += nthreads) {                      // Vertical pass: y rows, y columns.
            int oy = i / ax.tile_out, ox = i - oy * ax.tile_out;
            int gy = oy0 + oy, gx = ox0 + ox;
            if (gy >= ay.out_size || gx >= ax.out_size)
                continue;
            float acc = 0.f;
            for (int t = 0; t < ay.fd_taps; t++)
                acc += s_fd[t] * s_tmp[(oy * ay.down + t) * ax.tile_out + ox];
            yp[(int64_t)gy * ax.out_size + gx] = static_cast<T>(acc);
        }
    } else {
        for (int i = tid; i < n_out; i += nthreads) {
            int oy = i / ax.tile_out, ox = i - oy * ax.tile_out;
            int gy = oy0 + oy, gx = ox0 + ox;
            if (gy >= ay.out_size || gx >= ax.out_size)
                continue;
            float acc = 0.f;
            for (int ty = 0; ty < ay.fd_taps; ty++) {
                const float* row = s_mid + (oy * ay.down + ty) * ax.tile_mid + ox * ax.down;
                for (int tx = 0; tx < ax.fd_taps; tx++)
                    acc += s_fd[ty * ax.fd_taps + tx] * row[tx];
            }
            yp[(int64_t)gy * ax.out_size + gx] = static_cast<T>(acc);
        }
    }
}

//----------------------------------------------------------------------------
// One output tile of one (n, c) plane, computed cooperatively by `nthreads` workers (a CUDA block; on the CPU a
// single worker, for which FL_SYNC() is a no-op). Ends synchronised, so the caller may reuse smem at once.

template <typename T>
FL_HD void fl_tile(const FlParams& p, float* smem, int plane, int tile_y, int tile_x, int tid, int nthreads)
{
    const FlAxis& ay = p.ay;
    const FlAxis& ax = p.ax;
    FlSmem sm = fl_smem_layout(p);
    int oy0 = tile_y * ay.tile_out, ox0 = tile_x * ax.tile_out;
    int iy0 = fl_ceil_div(oy0 * ay.down - ay.pad0, ay.up);
    int ix0 = fl_ceil_div(ox0 * ax.down - ax.pad0, ax.up);
    int base_y = oy0 * ay.down - ay.pad0 - iy0 * ay.up;
    int base_x = ox0 * ax.down - ax.pad0 - ix0 * ax.up;

    int n_fu = fl_filter_floats(p.fu_separable, ay.fu_taps, ax.fu_taps);
    int n_fd = fl_filter_floats(p.fd_separable, ay.fd_taps, ax.fd_taps);
    for (int i = tid; i < n_fu; i += nthreads) smem[sm.fu + i] = p.fu[i];
    for (int i = tid; i < n_fd; i += nthreads) smem[sm.fd + i] = p.fd[i];
    fl_load_input<T>(p, smem + sm.in, plane, iy0, ix0, tid, nthreads);
    FL_SYNC();
    fl_upsample_activate(p, sm, smem, base_y, base_x, tid, nthreads);
    FL_SYNC();
    if (p.si)
        fl_store_codes(p, reinterpret_cast<const uint8_t*>(smem) + sm.code, plane, tile_y, tile_x, tid, nthreads);
    fl_downsample_store<T>(p, sm, smem, plane, oy0, ox0, tid, nthreads);
    FL_SYNC();
}

//----------------------------------------------------------------------------
// Backward helper: g * d(clamp(lrelu(z) * gain))/dz, the derivative read from the stored codes.

struct FlMaskParams {
    const void* g;                  // [N, C, mid_h, mid_w], contiguous, scalar type T.
    void* out;                      // Same shape and type.
    const uint8_t* si;              // [N, C, mid_h, si_row_bytes].
    int64_t num_elems;
    int mid_w, si_row_bytes;
    float gain, slope;
};

template <typename T>
FL_HD void fl_mask_apply_elem(const FlMaskParams& p, int64_t i)
{
    int64_t row = i / p.mid_w;
    int col = (int)(i - row * p.mid_w);
    int code = (p.si[row * p.si_row_bytes + col / 4] >> (2 * (col % 4))) & 3;
    float g = static_cast<float>(static_cast<const T*>(p.g)[i]);
    static_cast<T*>(p.out)[i] = static_cast<T>(g * fl_code_factor(code, p.gain, p.slope));
}

//----------------------------------------------------------------------------
// Launchers (filtered_lrelu.cu, or the CPU emulation in filtered_lrelu.cpp). dtype: 0 float32, 1 float16, 2 bfloat16.

enum { FL_FLOAT32 = 0, FL_FLOAT16 = 1, FL_BFLOAT16 = 2 };

int fl_max_smem_bytes(int device_index);
void fl_forward_launch(const FlParams& p, int dtype, int device_index);
void fl_mask_apply_launch(const FlMaskParams& p, int dtype, int device_index);
