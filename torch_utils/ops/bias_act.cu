// Fused bias + activation + gain + clamp, elementwise. Must equal _bias_act_ref in bias_act.py; the formulas of the
// derivatives below are the closed forms of the activations listed there (same cuda_idx numbering).

#include <algorithm>
#include <c10/util/Half.h>
#include <c10/util/BFloat16.h>
#include "bias_act.h"

//----------------------------------------------------------------------------
// Arithmetic type: float for float/half/bfloat16 (storage only), double for double.

template <typename T> struct OpMath { typedef float type; };
template <> struct OpMath<double> { typedef double type; };

// Math in the arithmetic type, never silently promoted to double (--use_fast_math maps the float ones to intrinsics).
static __host__ __device__ __forceinline__ float  m_exp(float v)    { return expf(v); }
static __host__ __device__ __forceinline__ double m_exp(double v)   { return ::exp(v); }
static __host__ __device__ __forceinline__ float  m_expm1(float v)  { return expm1f(v); }
static __host__ __device__ __forceinline__ double m_expm1(double v) { return ::expm1(v); }
static __host__ __device__ __forceinline__ float  m_log1p(float v)  { return log1pf(v); }
static __host__ __device__ __forceinline__ double m_log1p(double v) { return ::log1p(v); }
// tanhf itself would become the tanh.approx instruction under --use_fast_math (relative error ~5e-4, too coarse to
// match the reference); 1 - 2 / (exp(2|v|) + 1) with the fast exp is accurate to ~1e-7 absolute and saturates cleanly.
static __host__ __device__ __forceinline__ float  m_tanh(float v)
{
    return copysignf(1.0f - 2.0f / (expf(2.0f * fabsf(v)) + 1.0f), v);
}
static __host__ __device__ __forceinline__ double m_tanh(double v)  { return ::tanh(v); }
static __host__ __device__ __forceinline__ float  m_abs(float v)    { return fabsf(v); }
static __host__ __device__ __forceinline__ double m_abs(double v)   { return ::fabs(v); }

enum { ACT_LINEAR = 1, ACT_RELU, ACT_LRELU, ACT_TANH, ACT_SIGMOID, ACT_ELU, ACT_SELU, ACT_SOFTPLUS, ACT_SWISH };

//----------------------------------------------------------------------------
// act(v) (Order 0), act'(v) (Order 1) or act''(v) (Order 2). Conventions at the kinks follow torch's own backward
// (relu/lrelu: the x > 0 branch only for x > 0). softplus switches to the identity above 20, as torch does.

template <int A, int Order, typename F>
static __host__ __device__ __forceinline__ F act_eval(F v, F alpha)
{
    const F one = 1, zero = 0;
    if constexpr (A == ACT_LINEAR)
        return Order == 0 ? v : Order == 1 ? one : zero;
    if constexpr (A == ACT_RELU)
        return Order == 0 ? (v > zero ? v : zero) : Order == 1 ? (v > zero ? one : zero) : zero;
    if constexpr (A == ACT_LRELU)
        return Order == 0 ? (v > zero ? v : v * alpha) : Order == 1 ? (v > zero ? one : alpha) : zero;
    if constexpr (A == ACT_TANH)
    {
        F t = m_tanh(v);
        return Order == 0 ? t : Order == 1 ? one - t * t : F(-2) * t * (one - t * t);
    }
    if constexpr (A == ACT_SIGMOID)
    {
        F s = one / (one + m_exp(-v));
        return Order == 0 ? s : Order == 1 ? s * (one - s) : s * (one - s) * (one - F(2) * s);
    }
    if constexpr (A == ACT_ELU)
    {
        if (v > zero)
            return Order == 0 ? v : Order == 1 ? one : zero;
        return Order == 0 ? m_expm1(v) : m_exp(v);
    }
    if constexpr (A == ACT_SELU)
    {
        const F scale = F(1.0507009873554804934193349852946), selu_alpha = F(1.6732632423543772848170429916717);
        if (v > zero)
            return Order == 0 ? scale * v : Order == 1 ? scale : zero;
        return Order == 0 ? scale * selu_alpha * m_expm1(v) : scale * selu_alpha * m_exp(v);
    }
    if constexpr (A == ACT_SOFTPLUS)
    {
        if (v > F(20))
            return Order == 0 ? v : Order == 1 ? one : zero;
        if (Order == 0)
            return m_log1p(m_exp(v));
        F s = one / (one + m_exp(-v));
        return Order == 1 ? s : s * (one - s);
    }
    if constexpr (A == ACT_SWISH)
    {
        F s = one / (one + m_exp(-v));
        return Order == 0 ? v * s : Order == 1 ? s * (one + v * (one - s))
                                               : s * (one - s) * (F(2) + v * (one - F(2) * s));
    }
    return zero;
}

//----------------------------------------------------------------------------
// One element. All operands share one dense memory layout, so the position along the bias dimension of memory
// element i is (i / bias_stride) % bias_size whatever the dimension order. Also compiled for the host, where
// run_on_host() executes it serially as a self-test of this arithmetic on machines without a GPU.

template <typename T, int A, int Mode>
static __host__ __device__ __forceinline__ void bias_act_element(const bias_act_kernel_params& p, int64_t i,
                                                                 bool index32)
{
    typedef typename OpMath<T>::type F;
    const T* g = (const T*)p.g;
    const T* b = (const T*)p.b;
    const T* xref = (const T*)p.xref;
    const F alpha = (F)p.alpha, gain = (F)p.gain, clamp = (F)p.clamp;

    F v = (F)(Mode == 0 ? g[i] : xref[i]);
    if (b)  // 32-bit division is several times cheaper than 64-bit, and enough below 2^32 elements.
        v += (F)b[index32 ? (uint32_t)i / (uint32_t)p.bias_stride % (uint32_t)p.bias_size
                          : i / p.bias_stride % p.bias_size];
    F result;
    if (Mode == 0)
    {
        result = act_eval<A, 0>(v, alpha) * gain;
        if (clamp >= F(0))  // Written with comparisons so that NaN passes through, as in torch.clamp.
            result = result < -clamp ? -clamp : result > clamp ? clamp : result;
    }
    else
    {
        // torch.clamp passes the gradient where |y| <= clamp, so we do too.
        bool pass = clamp < F(0) || m_abs(act_eval<A, 0>(v, alpha) * gain) <= clamp;
        result = pass ? (F)g[i] * act_eval<A, Mode>(v, alpha) * gain : F(0);
    }
    ((T*)p.out)[i] = (T)result;
}

template <typename T, int A, int Mode>
static __global__ void bias_act_kernel(bias_act_kernel_params p)
{
    const bool index32 = p.numel <= (int64_t)UINT32_MAX;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < p.numel; i += blockDim.x * (int64_t)gridDim.x)
        bias_act_element<T, A, Mode>(p, i, index32);
}

template <typename T, int A, int Mode>
static void run_on_host(const bias_act_kernel_params& p)
{
    const bool index32 = p.numel <= (int64_t)UINT32_MAX;
    for (int64_t i = 0; i < p.numel; i++)
        bias_act_element<T, A, Mode>(p, i, index32);
}

//----------------------------------------------------------------------------

template <typename T, int A>
static void launch_for_act(const bias_act_kernel_params& p, cudaStream_t stream, bool on_host)
{
    const int threads = 256;
    const int blocks = (int)std::min<int64_t>((p.numel + threads - 1) / threads, 65536);
    if (on_host)
    {
        if (p.mode == 0) run_on_host<T, A, 0>(p);
        if (p.mode == 1) run_on_host<T, A, 1>(p);
        if (p.mode == 2) run_on_host<T, A, 2>(p);
        return;
    }
    if (p.mode == 0) bias_act_kernel<T, A, 0><<<blocks, threads, 0, stream>>>(p);
    if (p.mode == 1) bias_act_kernel<T, A, 1><<<blocks, threads, 0, stream>>>(p);
    if (p.mode == 2) bias_act_kernel<T, A, 2><<<blocks, threads, 0, stream>>>(p);
}

template <typename T>
cudaError_t launch_bias_act(const bias_act_kernel_params& p, cudaStream_t stream, bool on_host)
{
    switch (p.act)
    {
        case ACT_LINEAR:   launch_for_act<T, ACT_LINEAR>  (p, stream, on_host); break;
        case ACT_RELU:     launch_for_act<T, ACT_RELU>    (p, stream, on_host); break;
        case ACT_LRELU:    launch_for_act<T, ACT_LRELU>   (p, stream, on_host); break;
        case ACT_TANH:     launch_for_act<T, ACT_TANH>    (p, stream, on_host); break;
        case ACT_SIGMOID:  launch_for_act<T, ACT_SIGMOID> (p, stream, on_host); break;
        case ACT_ELU:      launch_for_act<T, ACT_ELU>     (p, stream, on_host); break;
        case ACT_SELU:     launch_for_act<T, ACT_SELU>    (p, stream, on_host); break;
        case ACT_SOFTPLUS: launch_for_act<T, ACT_SOFTPLUS>(p, stream, on_host); break;
        case ACT_SWISH:    launch_for_act<T, ACT_SWISH>   (p, stream, on_host); break;
        default:           return cudaErrorInvalidValue;
    }
    return on_host ? cudaSuccess : cudaGetLastError();
}

template cudaError_t launch_bias_act<float>         (const bias_act_kernel_params&, cudaStream_t, bool);
template cudaError_t launch_bias_act<double>        (const bias_act_kernel_params&, cudaStream_t, bool);
template cudaError_t launch_bias_act<c10::Half>     (const bias_act_kernel_params&, cudaStream_t, bool);
template cudaError_t launch_bias_act<c10::BFloat16> (const bias_act_kernel_params&, cudaStream_t, bool);

//----------------------------------------------------------------------------
