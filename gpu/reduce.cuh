// Device helpers shared by the batchnorm and implicit-GEMM kernels: a block-wide sum, the
// "last block" ticket, and batchnorm's finishing arithmetic. In an anonymous namespace: each
// translation unit has its own copy (tests build batchnorm_split.cu a second time with one
// barrier removed, which must not leak into the others).
#ifndef CONVNET_GPU_REDUCE_CUH
#define CONVNET_GPU_REDUCE_CUH
#include "gpu/cuda_compat.h"
#include "core/ops.h"   // BnRefs

namespace {

// Sum of v over a block of THREADS threads (a power of two, at least 64), the same in every
// thread: a fixed tree in shared memory, then a warp-shuffle finish. sh: THREADS floats.
template <int THREADS> __device__ float block_sum(float v, float *sh)
{
    int t = threadIdx.x;
    sh[t] = v;
#ifndef PLANT_MISSING_BARRIER   // the planted variant must be caught by the emulator's tests
    __syncthreads();
#endif
    for (int s = THREADS / 2; s >= 32; s >>= 1) {
        if (t < s) sh[t] += sh[t + s];
        __syncthreads();
    }
    float r = 0.f;
    if (t < 32) {
        r = sh[t];
        for (int off = 16; off > 0; off >>= 1) r += __shfl_down_sync(0xffffffffu, r, off);
        if (t == 0) sh[0] = r;
    }
    __syncthreads();
    r = sh[0];
    __syncthreads();   // sh may be reused right after
    return r;
}

// 1 in every thread of the block that takes the last of `total` tickets of *counter, 0 in the
// others; every thread's global writes so far are visible to that block: each writer fences
// before its block's ticket is taken (release), and the thread that learns its block is last
// fences again before the barrier that hands the news to its block (acquire), as the PTX memory
// model asks of the observing side. The last block sets the counter back to 0 for the next
// launch, which must not overlap this one (the callers keep such kernels on the main stream:
// gpu::require_main_stream).
__device__ inline int last_of(unsigned *counter, unsigned total)
{
    __shared__ int last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        last = atomicAdd(counter, 1u) == total - 1;
        if (last) {
            __threadfence();
            *counter = 0;
        }
    }
    __syncthreads();
    return last;
}

// Chan's combination of (n, mean, M2) with (nb, mb, m2b): delta = mb - mean,
// mean += delta nb / n', M2 += m2b + delta^2 n nb / n', n' = n + nb
__device__ __forceinline__ void chan_combine(float &n, float &mean, float &m2, float nb, float mb, float m2b)
{
    float tot = n + nb, d = mb - mean, f = nb / tot;
    mean += d * f;
    m2 += m2b + d * d * (n * f);
    n = tot;
}

// batchnorm's forward finish for channel c from the batch's mean and M2 over M values:
// saved mean and invstd (biased variance), running statistics (unbiased, as PyTorch).
// Returns invstd.
__device__ inline float bn_finish_stats(const BnRefs &r, int c, float mean, float m2, long M)
{
    float var = m2 / (float)M, invstd = rsqrtf(var + r.eps);
    r.save_mean[c] = mean;
    r.save_invstd[c] = invstd;
    float unbiased = M > 1 ? var * (float)M / (float)(M - 1) : var;
    r.running_mean[c] = (1.f - r.momentum) * r.running_mean[c] + r.momentum * mean;
    r.running_var[c] = (1.f - r.momentum) * r.running_var[c] + r.momentum * unbiased;
    return invstd;
}

// Batchnorm's affine map for channel c (scale = gamma invstd, shift = beta - mean scale), its
// value at x (x scale + shift) and xhat = (x - mean) invstd, each operation rounded on its own:
// __fmul_rn, __fadd_rn and __fsub_rn are never contracted into an FMA, which nvcc otherwise
// does where it chooses, so two kernels that compute the same value (a stored activation and a
// convolution's gather that recomputes it, a ReLU mask recomputed in the backward) give the
// same bits on a card as they do on the emulator.
struct BnAffine {
    float scale, shift;
};
__device__ __forceinline__ BnAffine bn_affine(float gamma, float beta, float mean, float invstd)
{
    float scale = __fmul_rn(gamma, invstd);
    return BnAffine{scale, __fsub_rn(beta, __fmul_rn(mean, scale))};
}
__device__ __forceinline__ float bn_apply(float x, const BnAffine &a) { return __fadd_rn(__fmul_rn(x, a.scale), a.shift); }
__device__ __forceinline__ float bn_xhat(float x, float mean, float invstd) { return __fmul_rn(__fsub_rn(x, mean), invstd); }

// kk's first factor, gamma invstd / M (bn_finish_grads below; BnGrad without kk: the same bits)
__device__ __forceinline__ float bn_grad_scale(const float *gamma, const float *invstd, int c, long M)
{
    return gamma[c] * invstd[c] / (float)M;
}

// batchnorm's backward finish for channel c of C from sg = sum g and sgx = sum g xhat over M
// values: dbeta, dgamma, and kk ([C] gamma invstd / M, [C] dbeta, [C] dgamma) for the apply pass
__device__ inline void bn_finish_grads(float *kk, float *dgamma, float *dbeta, const float *gamma, const float *invstd,
                                int c, int C, float sg, float sgx, long M)
{
    dbeta[c] = sg;
    dgamma[c] = sgx;
    kk[c] = bn_grad_scale(gamma, invstd, c, M);
    kk[C + c] = sg;
    kk[2 * C + c] = sgx;
}

// batchnorm's backward at one value from its three factors (scale = kk[c], dbeta = kk[C + c],
// dgamma = kk[2C + c]): din = gamma invstd / M (M g - dbeta - xhat dgamma), g the gradient
// after the ReLU's mask (the apply pass, and a consumer that reads din unapplied, gpu::BnGrad:
// one expression, rounded step by step as bn_apply, so both give the same bits)
__device__ __forceinline__ float bn_grad_value3(float scale, float dbeta, float dgamma, long M, float g, float xhat)
{
    return __fmul_rn(scale, __fsub_rn(__fsub_rn(__fmul_rn((float)M, g), dbeta), __fmul_rn(xhat, dgamma)));
}
// (the same, the factors read from kk)
__device__ inline float bn_grad_value(const float *kk, int c, int C, long M, float g, float xhat)
{
    return bn_grad_value3(kk[c], kk[C + c], kk[2 * C + c], M, g, xhat);
}

}  // namespace
#endif
