// Python bindings of the fused filtered leaky ReLU: argument checks, tile size choice, output allocation.
// The algorithm is in filtered_lrelu.h; the GPU launchers in filtered_lrelu.cu. Built with -DFL_CPU_EMULATION, this
// file instead runs the same per-tile code on the CPU, one tile after another (tests/test_op_filtered_lrelu.py).

#include <torch/extension.h>
#include <limits>
#include <vector>
#include "filtered_lrelu.h"

//----------------------------------------------------------------------------
// Largest output tile sizes (rows, columns) tried, largest first; columns must be multiples of 4 (see
// filtered_lrelu.h: codes are packed 4 per byte along x and each tile writes whole bytes). Capped so that 2+ blocks
// fit on one SM.

static const int FL_TILES[][2] = {{32, 32}, {16, 32}, {16, 16}, {8, 16}, {8, 8}, {4, 8}, {4, 4}};
static const int FL_SMEM_CAP = 100 * 1024;

// The tile length (<= max_tile, a multiple of `multiple`) that covers `out_size` with the fewest, evenly filled tiles:
// 36 outputs take 2 tiles of 18 (20 along x), not 32 + 4 with most of the second tile idle.
static int fl_balanced_tile(int out_size, int max_tile, int multiple)
{
    int num_tiles = (out_size + max_tile - 1) / max_tile;
    int tile = (out_size + num_tiles - 1) / num_tiles;
    tile = (tile + multiple - 1) / multiple * multiple;
    return std::min(tile, max_tile);
}

static int fl_dtype_code(const torch::Tensor& x)
{
    switch (x.scalar_type()) {
    case torch::kFloat32: return FL_FLOAT32;
    case torch::kFloat16: return FL_FLOAT16;
    case torch::kBFloat16: return FL_BFLOAT16;
    default: TORCH_CHECK(false, "filtered_lrelu: x must be float32, float16 or bfloat16, got ", x.scalar_type());
    }
    return -1;
}

static void fl_check_device(const torch::Tensor& t)
{
#ifdef FL_CPU_EMULATION
    TORCH_CHECK(!t.is_cuda(), "filtered_lrelu: the CPU emulation build takes CPU tensors");
#else
    TORCH_CHECK(t.is_cuda(), "filtered_lrelu: the plugin takes CUDA tensors (use the reference path on the CPU)");
#endif
}

static void fl_check_filter(const torch::Tensor& f, const char* name, int separable, int taps_y, int taps_x,
                            const torch::Tensor& x)
{
    TORCH_CHECK(f.scalar_type() == torch::kFloat32 && f.is_contiguous(), "filtered_lrelu: ", name,
                " must be a contiguous float32 tensor");
    TORCH_CHECK(f.device() == x.device(), "filtered_lrelu: ", name, " is on ", f.device(), ", x on ", x.device());
    TORCH_CHECK(taps_y >= 1 && taps_x >= 1 && f.numel() == fl_filter_floats(separable, taps_y, taps_x),
                "filtered_lrelu: ", name, " holds ", f.numel(), " taps, expected ",
                fl_filter_floats(separable, taps_y, taps_x), " for ", taps_y, "x", taps_x,
                separable ? " (separable)" : " (2-D)");
}

//----------------------------------------------------------------------------

struct FlAxisArgs {
    int in_size, pad0, pad1, fu_taps, fd_taps;
};

// Fills p.ay and p.ax for the requested tile, or (tile 0 x 0) for the largest evenly filled tile whose shared
// memory fits.
static void fl_choose_tiles(FlParams& p, const FlAxisArgs& ya, const FlAxisArgs& xa, int up, int down, int tile_y,
                            int tile_x, int device_index)
{
    auto init_axes = [&](int ty, int tx) {
        bool ok_y = fl_axis_init(p.ay, ya.in_size, up, down, ya.pad0, ya.pad1, ya.fu_taps, ya.fd_taps, ty);
        bool ok_x = fl_axis_init(p.ax, xa.in_size, up, down, xa.pad0, xa.pad1, xa.fu_taps, xa.fd_taps, tx);
        return ok_y && ok_x;
    };
    // The output size does not depend on the tile: find it first.
    TORCH_CHECK(init_axes(4, 4), "filtered_lrelu: input ", ya.in_size, "x", xa.in_size, " gives no output sample",
                " with up=", up, ", down=", down, ", padding=[", xa.pad0, ", ", xa.pad1, ", ", ya.pad0, ", ", ya.pad1,
                "] and filters ", ya.fu_taps, "x", xa.fu_taps, ", ", ya.fd_taps, "x", xa.fd_taps);
    int out_h = p.ay.out_size, out_w = p.ax.out_size;
    int smem_limit = std::min(fl_max_smem_bytes(device_index), FL_SMEM_CAP);
    int num_candidates = (int)(sizeof(FL_TILES) / sizeof(FL_TILES[0]));
    bool fits = false;
    for (int k = 0; k < num_candidates && !fits; k++) {
        int ty = tile_y ? tile_y : fl_balanced_tile(out_h, FL_TILES[k][0], 1);
        int tx = tile_x ? tile_x : fl_balanced_tile(out_w, FL_TILES[k][1], 4);
        init_axes(ty, tx);
        fits = fl_smem_layout(p).total_bytes <= smem_limit || tile_y;
    }
    TORCH_CHECK(fits, "filtered_lrelu: the filters are too large for the kernel's shared memory");
    TORCH_CHECK(fl_smem_layout(p).total_bytes <= fl_max_smem_bytes(device_index),
                "filtered_lrelu: tile ", p.ay.tile_out, "x", p.ax.tile_out, " needs too much shared memory");
}

// Returns (y [N, C, out_h, out_w] like x, si [N, C, mid_h, ceil(mid_w / 4)] uint8 or an empty tensor).
static std::tuple<torch::Tensor, torch::Tensor> filtered_lrelu_forward(
    torch::Tensor x, torch::Tensor fu, torch::Tensor fd, torch::Tensor b,
    int64_t up, int64_t down, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1,
    int64_t fu_separable, int64_t fu_taps_y, int64_t fu_taps_x,
    int64_t fd_separable, int64_t fd_taps_y, int64_t fd_taps_x,
    double gain, double slope, double clamp, bool write_si, int64_t tile_y, int64_t tile_x)
{
    int dtype = fl_dtype_code(x);
    fl_check_device(x);
    TORCH_CHECK(x.dim() == 4 && x.is_contiguous(), "filtered_lrelu: x must be a contiguous [N, C, H, W] tensor");
    TORCH_CHECK(x.size(0) * x.size(1) <= std::numeric_limits<int>::max() && x.size(2) * x.size(3) <=
                std::numeric_limits<int>::max() / 16, "filtered_lrelu: x ", x.sizes(), " is too large");
    TORCH_CHECK(up >= 1 && down >= 1, "filtered_lrelu: up and down must be >= 1");
    fl_check_filter(fu, "fu", (int)fu_separable, (int)fu_taps_y, (int)fu_taps_x, x);
    fl_check_filter(fd, "fd", (int)fd_separable, (int)fd_taps_y, (int)fd_taps_x, x);
    bool has_bias = b.numel() > 0;
    if (has_bias) {
        TORCH_CHECK(b.scalar_type() == torch::kFloat32 && b.is_contiguous() && b.dim() == 1 &&
                    b.size(0) == x.size(1) && b.device() == x.device(),
                    "filtered_lrelu: b must be a contiguous float32 [C] tensor on x's device");
    }
    TORCH_CHECK(tile_x % 4 == 0 && tile_y >= 0 && tile_x >= 0 && (tile_x > 0) == (tile_y > 0),
                "filtered_lrelu: tile sizes must be 0 (auto) or positive with tile_x a multiple of 4");

    FlParams p;
    p.planes = (int)(x.size(0) * x.size(1));
    p.channels = (int)x.size(1);
    p.fu_separable = (int)fu_separable;
    p.fd_separable = (int)fd_separable;
    p.gain = (float)gain;
    p.slope = (float)slope;
    p.clamp = (float)clamp;
    int device_index = x.is_cuda() ? x.get_device() : -1;
    FlAxisArgs args_y = {(int)x.size(2), (int)pad_y0, (int)pad_y1, (int)fu_taps_y, (int)fd_taps_y};
    FlAxisArgs args_x = {(int)x.size(3), (int)pad_x0, (int)pad_x1, (int)fu_taps_x, (int)fd_taps_x};
    fl_choose_tiles(p, args_y, args_x, (int)up, (int)down, (int)tile_y, (int)tile_x, device_index);

    auto opts = x.options();
#ifdef FL_CPU_EMULATION
    // Poisoned, so that the tests see any element the tiles fail to write.
    torch::Tensor y = torch::full({x.size(0), x.size(1), p.ay.out_size, p.ax.out_size},
                                  std::numeric_limits<float>::quiet_NaN(), opts);
#else
    torch::Tensor y = torch::empty({x.size(0), x.size(1), p.ay.out_size, p.ax.out_size}, opts);
#endif
    torch::Tensor si;
    p.si_row_bytes = (p.ax.mid_size + 3) / 4;
    if (write_si) {
        auto si_opts = opts.dtype(torch::kUInt8);
#ifdef FL_CPU_EMULATION
        si = torch::full({x.size(0), x.size(1), p.ay.mid_size, p.si_row_bytes}, 255, si_opts);
#else
        si = torch::zeros({x.size(0), x.size(1), p.ay.mid_size, p.si_row_bytes}, si_opts);
#endif
    } else {
        si = torch::empty({0}, opts.dtype(torch::kUInt8));
    }
    p.x = x.data_ptr();
    p.y = y.data_ptr();
    p.si = write_si ? si.data_ptr<uint8_t>() : nullptr;
    p.b = has_bias ? b.data_ptr<float>() : nullptr;
    p.fu = fu.data_ptr<float>();
    p.fd = fd.data_ptr<float>();
    if (p.planes > 0)
        fl_forward_launch(p, dtype, device_index);
    return std::make_tuple(y, si);
}

//----------------------------------------------------------------------------

// Returns g * d(clamp(lrelu(z) * gain))/dz with the derivative read from si (as written by filtered_lrelu_forward).
static torch::Tensor filtered_lrelu_mask_apply(torch::Tensor g, torch::Tensor si, double gain, double slope)
{
    int dtype = fl_dtype_code(g);
    fl_check_device(g);
    TORCH_CHECK(g.dim() == 4 && g.is_contiguous(), "filtered_lrelu: g must be a contiguous [N, C, H, W] tensor");
    TORCH_CHECK(si.scalar_type() == torch::kUInt8 && si.is_contiguous() && si.dim() == 4 &&
                si.device() == g.device(), "filtered_lrelu: si must be a contiguous uint8 tensor on g's device");
    TORCH_CHECK(si.size(0) == g.size(0) && si.size(1) == g.size(1) && si.size(2) == g.size(2) &&
                si.size(3) == (g.size(3) + 3) / 4, "filtered_lrelu: si ", si.sizes(), " does not match g ",
                g.sizes());
    torch::Tensor out = torch::empty_like(g);
    FlMaskParams p;
    p.g = g.data_ptr();
    p.out = out.data_ptr();
    p.si = si.data_ptr<uint8_t>();
    p.num_elems = g.numel();
    p.mid_w = (int)g.size(3);
    p.si_row_bytes = (int)si.size(3);
    p.gain = (float)gain;
    p.slope = (float)slope;
    if (p.num_elems > 0)
        fl_mask_apply_launch(p, dtype, g.is_cuda() ? g.get_device() : -1);
    return out;
}

//----------------------------------------------------------------------------
// CPU emulation of the launchers: one worker runs every tile in turn, with shared memory poisoned (NaN) before each
// tile so that a read of anything the tile did not write shows up in the output.

#ifdef FL_CPU_EMULATION
int fl_max_smem_bytes(int device_index)
{
    return 227 * 1024;  // H100's opt-in limit, so that the emulation picks the same tiles.
}

template <typename T>
static void fl_forward_emulate(const FlParams& p)
{
    FlSmem sm = fl_smem_layout(p);
    std::vector<float> smem((sm.total_bytes + 3) / 4);
    for (int plane = 0; plane < p.planes; plane++)
        for (int tile_y = 0; tile_y < p.ay.num_tiles; tile_y++)
            for (int tile_x = 0; tile_x < p.ax.num_tiles; tile_x++) {
                std::fill(smem.begin(), smem.end(), std::numeric_limits<float>::quiet_NaN());
                fl_tile<T>(p, smem.data(), plane, tile_y, tile_x, 0, 1);
            }
}

void fl_forward_launch(const FlParams& p, int dtype, int device_index)
{
    switch (dtype) {
    case FL_FLOAT32: fl_forward_emulate<float>(p); break;
    case FL_FLOAT16: fl_forward_emulate<c10::Half>(p); break;
    case FL_BFLOAT16: fl_forward_emulate<c10::BFloat16>(p); break;
    }
}

template <typename T>
static void fl_mask_apply_emulate(const FlMaskParams& p)
{
    for (int64_t i = 0; i < p.num_elems; i++)
        fl_mask_apply_elem<T>(p, i);
}

void fl_mask_apply_launch(const FlMaskParams& p, int dtype, int device_index)
{
    switch (dtype) {
    case FL_FLOAT32: fl_mask_apply_emulate<float>(p); break;
    case FL_FLOAT16: fl_mask_apply_emulate<c10::Half>(p); break;
    case FL_BFLOAT16: fl_mask_apply_emulate<c10::BFloat16>(p); break;
    }
}
#endif

//----------------------------------------------------------------------------

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.def("forward", &filtered_lrelu_forward, "Fused filtered leaky ReLU forward (see filtered_lrelu.h)");
    m.def("mask_apply", &filtered_lrelu_mask_apply, "g * the lrelu/clamp derivative stored by forward");
}
