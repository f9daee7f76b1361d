// BatchNorm2d for the op table, with each channel's N*HW values split over chunks so that a
// layer fills the card: at batch 128 the one-block-per-channel kernels of batchnorm.cu give
// 16 to 32 blocks; here every launch has about 4 blocks per SM of a 132-SM card or more.
//
// Forward (train), two launches:
//   bn_chunk_stats   grid (chunks, C): chunk j of channel c -> count, mean_j, M2_j (two passes
//                    over the chunk: its mean, then the sum of squared deviations); then the
//                    last block to finish finalizes: per channel the chunks combined in chunk
//                    order with Chan's formula (delta = mean_b - mean_a; mean += delta n_b / n;
//                    M2 = M2_a + M2_b + delta^2 n_a n_b / n), then mean, biased variance,
//                    invstd, the running statistics (unbiased variance, as PyTorch) and the
//                    per-channel scale = gamma invstd, shift = beta - mean scale
//   bn_apply         elementwise: out = in scale + shift, then max(0, .) when relu (the fused
//                    batchnorm+ReLU slot)
// Backward, two launches:
//   bn_chunk_grads   grid (chunks, C): g = dout [relu_out > 0] (the ReLU's output given as a
//                    mask, or its sign recomputed from in (struct Relu), or no ReLU), chunk sums of g
//                    and g xhat, xhat = (in - mean) invstd; the last block adds the chunk sums
//                    in chunk order -> dbeta = sum g, dgamma = sum g xhat
//   bn_grad_apply    elementwise: din = gamma invstd / M (M g - dbeta - xhat dgamma) (+ add)
// Every sum has a fixed shape and order (no float atomics): the same input gives the same
// bits. "The last block to finish" is found with a ticket counter (an integer atomicAdd after
// a __threadfence, as in CUDA's threadFenceReduction sample): which block that is varies, what
// it computes does not. The counters assume launches of one kernel never overlap: these
// kernels run on the main stream only (gpu::require_main_stream checks it).
// The partial sums live in a device buffer allocated on first use and grown when a larger
// layer needs more (the model's first step); nothing is allocated after that.
#include "gpu/cuda_compat.h"
#include "gpu/gpu.h"
#include "gpu/reduce.cuh"

#ifndef GPU_NS
#define GPU_NS gpu   // tests also build this file as gpu_planted, one barrier removed
#endif

namespace GPU_NS {

namespace {
constexpr int SPLIT_THREADS = 256;
constexpr int TARGET_BLOCKS = 4 * gpu::CARD_SMS;   // 4 blocks per SM
constexpr long MIN_CHUNK = 256;          // values per chunk at least (one per thread)

struct Split {
    int chunks;
    long len;   // values per chunk (the last may have fewer)
};
Split split_for(int C, long M)
{
    long want = (TARGET_BLOCKS + C - 1) / C, most = (M + MIN_CHUNK - 1) / MIN_CHUNK;
    int chunks = (int)(want < most ? want : most);
    if (chunks < 1) chunks = 1;
    long len = (M + chunks - 1) / chunks;
    chunks = (int)((M + len - 1) / len);   // no empty chunk
    return Split{chunks, len};
}

gpu::Scratch scratch_buf;   // partial sums and per-channel factors (one batchnorm call at a time)
float *scratch(size_t floats) { return scratch_buf.get(floats); }
}  // namespace

void batchnorm_split_release()
{
    scratch_buf.release();
}

namespace {

}  // namespace

// Tickets of the "last block finalizes" kernels: [0] bn_chunk_stats, [1] bn_chunk_grads. Zero
// at load; each launch's last block sets its counter back to 0.
__device__ unsigned bn_ticket[2];

// Which values of the backward's dout count (the ReLU between this batchnorm and its
// consumer): all (no ReLU), those where the stored ReLU output mask > 0, or those where
// relu(bn(in)) > 0 recomputed from in as the forward computed it (scale = gamma invstd,
// shift = beta - mean scale: the same operations, so the same mask).
struct Relu {
    const float *mask;
    int recompute;
    BnAffine a;
    __device__ bool passes(long i, float x) const
    {
        if (mask) return mask[i] > 0.f;
        return !recompute || bn_apply(x, a) > 0.f;
    }
};
__device__ Relu relu_of(const float *mask, const float *beta, const float *gamma, int c, float mean, float invstd)
{
    Relu r = {mask, !mask && beta, BnAffine{0.f, 0.f}};
    if (r.recompute) r.a = bn_affine(gamma[c], beta[c], mean, invstd);
    return r;
}

// value e (0 <= e < N*HW) of channel c in NCHW
#define AT(e) (((long)((e) / HW) * C + c) * HW + (e) % HW)

// channel c's statistics from the chunks' (count, mean, M2), combined in chunk order, then
// finished (gpu/reduce.cuh) with ss: [C] scale then [C] shift for the apply kernel. part is
// read with __ldcg (L2, not a possibly stale L1 line): other blocks wrote it during this launch.
struct BnFinal {   // what the forward's last block writes
    BnRefs r;
    float *ss;
};
__device__ void bn_finalize_channel(int c, const BnFinal &f, const float *part, int C, int chunks, long M)
{
    const float *p = part + 3 * (long)c * chunks;
    float n = __ldcg(p), mean = __ldcg(p + 1), m2 = __ldcg(p + 2);
    for (int j = 1; j < chunks; j++) chan_combine(n, mean, m2, __ldcg(p + 3 * j), __ldcg(p + 3 * j + 1), __ldcg(p + 3 * j + 2));
    BnAffine a = bn_affine(f.r.gamma[c], f.r.beta[c], mean, bn_finish_stats(f.r, c, mean, m2, M));
    f.ss[c] = a.scale;
    f.ss[C + c] = a.shift;
}

__global__ void __launch_bounds__(SPLIT_THREADS) bn_chunk_stats_kernel(float *part, const float *in,
        int N, int C, int HW, long len, BnFinal f)
{
    __shared__ float sh[SPLIT_THREADS];
    int j = blockIdx.x, c = blockIdx.y, chunks = gridDim.x;
    long M = (long)N * HW, e0 = j * len, e1 = e0 + len < M ? e0 + len : M;
    float s = 0.f;
    for (long e = e0 + threadIdx.x; e < e1; e += SPLIT_THREADS) s += in[AT(e)];
    float mean = block_sum<SPLIT_THREADS>(s, sh) / (float)(e1 - e0);
    float q = 0.f;
    for (long e = e0 + threadIdx.x; e < e1; e += SPLIT_THREADS) { float d = in[AT(e)] - mean; q += d * d; }
    q = block_sum<SPLIT_THREADS>(q, sh);
    if (threadIdx.x == 0) {
        float *p = part + 3 * ((long)c * chunks + j);
        p[0] = (float)(e1 - e0); p[1] = mean; p[2] = q;
    }
    if (!last_of(&bn_ticket[0], gridDim.x * gridDim.y)) return;
    for (int ch = threadIdx.x; ch < C; ch += SPLIT_THREADS)
        bn_finalize_channel(ch, f, part, C, chunks, M);
}

__global__ void bn_apply_kernel(float *out, const float *in, const float *ss, int C, int HW, long total,
                                int relu)
{
    for (long e = blockIdx.x * (long)blockDim.x + threadIdx.x; e < total; e += (long)gridDim.x * blockDim.x) {
        int c = (int)(e / HW % C);
        float v = bn_apply(in[e], BnAffine{ss[c], ss[C + c]});
        out[e] = relu && !(v > 0.f) ? 0.f : v;
    }
}

// channel c's chunk sums added in chunk order, then finished (gpu/reduce.cuh: dgamma, dbeta
// and kk for the apply kernel)
__device__ void bn_grad_finalize_channel(int c, float *kk, float *dgamma, float *dbeta, const float *part,
        const float *gamma, const float *save_invstd, int C, int chunks, long M)
{
    const float *p = part + 2 * (long)c * chunks;
    float sg = 0.f, sgx = 0.f;
    for (int j = 0; j < chunks; j++) { sg += __ldcg(p + 2 * j); sgx += __ldcg(p + 2 * j + 1); }
    bn_finish_grads(kk, dgamma, dbeta, gamma, save_invstd, c, C, sg, sgx, M);
}

__global__ void __launch_bounds__(SPLIT_THREADS) bn_chunk_grads_kernel(float *part, const float *dout,
        const float *mask, const float *in, const float *save_mean, const float *save_invstd, int N,
        int C, int HW, long len, float *kk, float *dgamma, float *dbeta, const float *gamma, const float *beta)
{
    __shared__ float sh[SPLIT_THREADS];
    int j = blockIdx.x, c = blockIdx.y, chunks = gridDim.x;
    long M = (long)N * HW, e0 = j * len, e1 = e0 + len < M ? e0 + len : M;
    float mean = save_mean[c], invstd = save_invstd[c], sg = 0.f, sgx = 0.f;
    Relu relu = relu_of(mask, beta, gamma, c, mean, invstd);
    for (long e = e0 + threadIdx.x; e < e1; e += SPLIT_THREADS) {
        long i = AT(e);
        float g = relu.passes(i, in[i]) ? dout[i] : 0.f;
        sg += g;
        sgx += g * (in[i] - mean) * invstd;
    }
    sg = block_sum<SPLIT_THREADS>(sg, sh);
    sgx = block_sum<SPLIT_THREADS>(sgx, sh);
    if (threadIdx.x == 0) {
        float *p = part + 2 * ((long)c * chunks + j);
        p[0] = sg; p[1] = sgx;
    }
    if (!last_of(&bn_ticket[1], gridDim.x * gridDim.y)) return;
    for (int ch = threadIdx.x; ch < C; ch += SPLIT_THREADS)
        bn_grad_finalize_channel(ch, kk, dgamma, dbeta, part, gamma, save_invstd, C, chunks, M);
}

__global__ void bn_grad_apply_kernel(float *din, const float *dout, const float *mask, const float *in,
        const float *add, const float *kk, const float *gamma, const float *beta, const float *save_mean,
        const float *save_invstd, int C, int HW, long M, long total)
{
    for (long e = blockIdx.x * (long)blockDim.x + threadIdx.x; e < total; e += (long)gridDim.x * blockDim.x) {
        int c = (int)(e / HW % C);
        Relu relu = relu_of(mask, beta, gamma, c, save_mean[c], save_invstd[c]);
        float g = relu.passes(e, in[e]) ? dout[e] : 0.f;
        float v = bn_grad_value(kk, c, C, M, g, bn_xhat(in[e], save_mean[c], save_invstd[c]));
        din[e] = add ? v + add[e] : v;
    }
}
#undef AT

// the statistics launch; returns the per-channel scale and shift (scratch, valid until the
// next batchnorm call)
static const float *split_stats(float *save_mean, float *save_invstd, float *running_mean, float *running_var,
                                const float *in, const float *gamma, const float *beta, int N, int C, int HW,
                                float momentum, float eps)
{
    long M = (long)N * HW;
    Split sp = split_for(C, M);
    float *part = scratch(3 * (size_t)C * sp.chunks + 2 * (size_t)C), *ss = part + 3 * (size_t)C * sp.chunks;
    BnFinal f = {{save_mean, save_invstd, running_mean, running_var, gamma, beta, momentum, eps}, ss};
    gpu::require_main_stream("bn_chunk_stats_kernel");
    LAUNCH(bn_chunk_stats_kernel, dim3(sp.chunks, C), SPLIT_THREADS, 0, gpu::stream())(part, in, N, C, HW, sp.len, f);
    CUDA_CHECK_LAUNCH();
    return ss;
}

void batchnorm_split_stats(float *save_mean, float *save_invstd, float *running_mean, float *running_var,
                           const float *in, const float *gamma, const float *beta, int N, int C, int HW,
                           float momentum, float eps)
{
    split_stats(save_mean, save_invstd, running_mean, running_var, in, gamma, beta, N, C, HW, momentum, eps);
}

// eval: mean = running_mean, invstd = 1/sqrt(running_var + eps), one thread per channel
__global__ void bn_eval_stats_kernel(float *mean, float *invstd, const float *running_mean, const float *running_var,
                                     int C, float eps)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    mean[c] = running_mean[c];
    invstd[c] = rsqrtf(running_var[c] + eps);
}

const float *batchnorm_eval_stats(const float *running_mean, const float *running_var, int C, float eps)
{
    float *ms = scratch(2 * (size_t)C);
    LAUNCH(bn_eval_stats_kernel, div_up(C, 128), 128, 0, gpu::stream())(ms, ms + C, running_mean, running_var, C, eps);
    CUDA_CHECK_LAUNCH();
    return ms;
}

void batchnorm_split_forward_train(float *out, float *save_mean, float *save_invstd, float *running_mean,
                                   float *running_var, const float *in, const float *gamma,
                                   const float *beta, int N, int C, int HW, float momentum, float eps,
                                   int relu)
{
    const float *ss = split_stats(save_mean, save_invstd, running_mean, running_var, in, gamma, beta, N, C, HW,
                                  momentum, eps);
    LAUNCH(bn_apply_kernel, gpu::grid_for((size_t)N * C * HW, 256), 256, 0, gpu::stream())(out, in, ss, C, HW, (long)N * C * HW, relu);
    CUDA_CHECK_LAUNCH();
}

const float *batchnorm_split_backward_sums(float *dgamma, float *dbeta, const float *dout, const float *mask,
                                           const float *in, const float *gamma, const float *beta,
                                           const float *save_mean, const float *save_invstd, int N, int C, int HW)
{
    Split sp = split_for(C, (long)N * HW);
    float *part = scratch(2 * (size_t)C * sp.chunks + 3 * (size_t)C), *kk = part + 2 * (size_t)C * sp.chunks;
    gpu::require_main_stream("bn_chunk_grads_kernel");
    LAUNCH(bn_chunk_grads_kernel, dim3(sp.chunks, C), SPLIT_THREADS, 0, gpu::stream())(part, dout, mask, in, save_mean,
        save_invstd, N, C, HW, sp.len, kk, dgamma, dbeta, gamma, beta);
    CUDA_CHECK_LAUNCH();
    return kk;
}

void batchnorm_split_backward_apply(float *din, const float *dout, const float *mask, const float *in,
                                    const float *add, const float *kk, const float *gamma, const float *beta,
                                    const float *save_mean, const float *save_invstd, int N, int C, int HW)
{
    LAUNCH(bn_grad_apply_kernel, gpu::grid_for((size_t)N * C * HW, 256), 256, 0, gpu::stream())(din, dout, mask, in, add, kk,
        gamma, beta, save_mean, save_invstd, C, HW, (long)N * HW, (long)N * C * HW);
    CUDA_CHECK_LAUNCH();
}

void batchnorm_split_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                              const float *mask, const float *in, const float *add, const float *gamma,
                              const float *beta, const float *save_mean, const float *save_invstd, int N,
                              int C, int HW)
{
    const float *kk = batchnorm_split_backward_sums(dgamma, dbeta, dout, mask, in, gamma, beta, save_mean, save_invstd,
                                                    N, C, HW);
    batchnorm_split_backward_apply(din, dout, mask, in, add, kk, gamma, beta, save_mean, save_invstd, N, C, HW);
}

}  // namespace GPU_NS

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
// C entry for tests (one per build variant of this file)
extern "C" void CAT(GPU_NS, _batchnorm_split_forward_train)(float *out, float *sm, float *si, float *rm,
        float *rv, const float *in, const float *g, const float *b, int N, int C, int HW, float mom,
        float eps, int relu)
{
    GPU_NS::batchnorm_split_forward_train(out, sm, si, rm, rv, in, g, b, N, C, HW, mom, eps, relu);
}
