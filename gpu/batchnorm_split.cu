// BatchNorm2d for the op table, with each channel's N*HW values split over chunks so that a
// layer fills the card: at batch 128 the one-block-per-channel kernels of batchnorm.cu give
// 16 to 32 blocks; here every launch has about 4 blocks per SM of a 132-SM card or more.
//
// Forward (train), three launches:
//   bn_chunk_stats   grid (chunks, C): chunk j of channel c -> count, mean_j, M2_j (two passes
//                    over the chunk: its mean, then the sum of squared deviations)
//   bn_finalize      one thread per channel: the chunks combined in chunk order with Chan's
//                    formula (delta = mean_b - mean_a; mean += delta n_b / n;
//                    M2 = M2_a + M2_b + delta^2 n_a n_b / n), then mean, biased variance,
//                    invstd, the running statistics (unbiased variance, as PyTorch) and the
//                    per-channel scale = gamma invstd, shift = beta - mean scale
//   bn_apply         elementwise: out = in scale + shift, then max(0, .) when relu (the fused
//                    batchnorm+ReLU slot)
// Backward, three launches:
//   bn_chunk_grads   grid (chunks, C): g = dout [relu_out > 0] (mask optional), chunk sums of g
//                    and g xhat, xhat = (in - mean) invstd
//   bn_grad_finalize one thread per channel: chunk sums added in chunk order -> dbeta = sum g,
//                    dgamma = sum g xhat
//   bn_grad_apply    elementwise: din = gamma invstd / M (M g - dbeta - xhat dgamma) (+ add)
// Every sum has a fixed shape and order (no atomics): the same input gives the same bits.
// The partial sums live in a device buffer allocated on first use and grown when a larger
// layer needs more (the model's first step); nothing is allocated after that.
#include "gpu/cuda_compat.h"
#include "gpu/gpu.h"

#ifndef GPU_NS
#define GPU_NS gpu   // tests also build this file as gpu_planted, one barrier removed
#endif

namespace GPU_NS {

namespace {
constexpr int SPLIT_THREADS = 256;
constexpr int TARGET_BLOCKS = 4 * 132;   // 4 blocks per SM on an H100/H200
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

float *scratch_buf;
size_t scratch_floats;
float *scratch(size_t floats)
{
    if (floats > scratch_floats) {
        if (scratch_buf) CUDA_CHECK(cudaFree(scratch_buf));
        CUDA_CHECK(cudaMalloc(&scratch_buf, sizeof(float) * floats));
        scratch_floats = floats;
    }
    return scratch_buf;
}
}  // namespace

void batchnorm_split_release()
{
    if (scratch_buf) CUDA_CHECK(cudaFree(scratch_buf));
    scratch_buf = nullptr;
    scratch_floats = 0;
}

namespace {

// Sum of v over the block; every thread gets the result. sh holds SPLIT_THREADS floats.
__device__ float split_block_sum(float v, float *sh)
{
    int t = threadIdx.x;
    sh[t] = v;
#ifndef PLANT_MISSING_BARRIER   // the planted variant must be caught by the emulator's tests
    __syncthreads();
#endif
    for (int s = SPLIT_THREADS / 2; s >= 32; s >>= 1) {
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
    __syncthreads();
    return r;
}
}  // namespace

// value e (0 <= e < N*HW) of channel c in NCHW
#define AT(e) (((long)((e) / HW) * C + c) * HW + (e) % HW)

__global__ void __launch_bounds__(SPLIT_THREADS) bn_chunk_stats_kernel(float *part, const float *in,
        int N, int C, int HW, long len)
{
    __shared__ float sh[SPLIT_THREADS];
    int j = blockIdx.x, c = blockIdx.y, chunks = gridDim.x;
    long M = (long)N * HW, e0 = j * len, e1 = e0 + len < M ? e0 + len : M;
    float s = 0.f;
    for (long e = e0 + threadIdx.x; e < e1; e += SPLIT_THREADS) s += in[AT(e)];
    float mean = split_block_sum(s, sh) / (float)(e1 - e0);
    float q = 0.f;
    for (long e = e0 + threadIdx.x; e < e1; e += SPLIT_THREADS) { float d = in[AT(e)] - mean; q += d * d; }
    q = split_block_sum(q, sh);
    if (threadIdx.x == 0) {
        float *p = part + 3 * ((long)c * chunks + j);
        p[0] = (float)(e1 - e0); p[1] = mean; p[2] = q;
    }
}

// ss: [C] scale then [C] shift for the apply kernel
__global__ void bn_finalize_kernel(float *ss, float *save_mean, float *save_invstd, float *running_mean,
        float *running_var, const float *part, const float *gamma, const float *beta, int C,
        int chunks, long M, float momentum, float eps)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const float *p = part + 3 * (long)c * chunks;
    float n = p[0], mean = p[1], m2 = p[2];
    for (int j = 1; j < chunks; j++) {
        float nb = p[3 * j], mb = p[3 * j + 1], m2b = p[3 * j + 2], tot = n + nb, d = mb - mean;
        mean += d * (nb / tot);
        m2 += m2b + d * d * (n * (nb / tot));
        n = tot;
    }
    float var = m2 / (float)M, invstd = rsqrtf(var + eps), scale = gamma[c] * invstd;
    ss[c] = scale;
    ss[C + c] = beta[c] - mean * scale;
    save_mean[c] = mean;
    save_invstd[c] = invstd;
    float unbiased = M > 1 ? var * (float)M / (float)(M - 1) : var;
    running_mean[c] = (1.f - momentum) * running_mean[c] + momentum * mean;
    running_var[c] = (1.f - momentum) * running_var[c] + momentum * unbiased;
}

__global__ void bn_apply_kernel(float *out, const float *in, const float *ss, int C, int HW, long total,
                                int relu)
{
    for (long e = blockIdx.x * (long)blockDim.x + threadIdx.x; e < total; e += (long)gridDim.x * blockDim.x) {
        int c = (int)(e / HW % C);
        float v = in[e] * ss[c] + ss[C + c];
        out[e] = relu && !(v > 0.f) ? 0.f : v;
    }
}

__global__ void __launch_bounds__(SPLIT_THREADS) bn_chunk_grads_kernel(float *part, const float *dout,
        const float *mask, const float *in, const float *save_mean, const float *save_invstd, int N,
        int C, int HW, long len)
{
    __shared__ float sh[SPLIT_THREADS];
    int j = blockIdx.x, c = blockIdx.y, chunks = gridDim.x;
    long M = (long)N * HW, e0 = j * len, e1 = e0 + len < M ? e0 + len : M;
    float mean = save_mean[c], invstd = save_invstd[c], sg = 0.f, sgx = 0.f;
    for (long e = e0 + threadIdx.x; e < e1; e += SPLIT_THREADS) {
        long i = AT(e);
        float g = mask && !(mask[i] > 0.f) ? 0.f : dout[i];
        sg += g;
        sgx += g * (in[i] - mean) * invstd;
    }
    sg = split_block_sum(sg, sh);
    sgx = split_block_sum(sgx, sh);
    if (threadIdx.x == 0) {
        float *p = part + 2 * ((long)c * chunks + j);
        p[0] = sg; p[1] = sgx;
    }
}

// kk: [C] gamma invstd / M, then [C] dbeta, [C] dgamma (for the apply kernel)
__global__ void bn_grad_finalize_kernel(float *kk, float *dgamma, float *dbeta, const float *part,
        const float *gamma, const float *save_invstd, int C, int chunks, long M)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const float *p = part + 2 * (long)c * chunks;
    float sg = 0.f, sgx = 0.f;
    for (int j = 0; j < chunks; j++) { sg += p[2 * j]; sgx += p[2 * j + 1]; }
    dbeta[c] = sg;
    dgamma[c] = sgx;
    kk[c] = gamma[c] * save_invstd[c] / (float)M;
    kk[C + c] = sg;
    kk[2 * C + c] = sgx;
}

__global__ void bn_grad_apply_kernel(float *din, const float *dout, const float *mask, const float *in,
        const float *add, const float *kk, const float *save_mean, const float *save_invstd, int C,
        int HW, long M, long total)
{
    for (long e = blockIdx.x * (long)blockDim.x + threadIdx.x; e < total; e += (long)gridDim.x * blockDim.x) {
        int c = (int)(e / HW % C);
        float g = mask && !(mask[e] > 0.f) ? 0.f : dout[e];
        float xhat = (in[e] - save_mean[c]) * save_invstd[c];
        float v = kk[c] * ((float)M * g - kk[C + c] - xhat * kk[2 * C + c]);
        din[e] = add ? v + add[e] : v;
    }
}
#undef AT

void batchnorm_split_forward_train(float *out, float *save_mean, float *save_invstd, float *running_mean,
                                   float *running_var, const float *in, const float *gamma,
                                   const float *beta, int N, int C, int HW, float momentum, float eps,
                                   int relu)
{
    long M = (long)N * HW;
    Split sp = split_for(C, M);
    float *part = scratch(3 * (size_t)C * sp.chunks + 2 * (size_t)C), *ss = part + 3 * (size_t)C * sp.chunks;
    LAUNCH(bn_chunk_stats_kernel, dim3(sp.chunks, C), SPLIT_THREADS, 0, gpu::stream())(part, in, N, C, HW, sp.len);
    CUDA_CHECK_LAUNCH();
    LAUNCH(bn_finalize_kernel, div_up(C, 128), 128, 0, gpu::stream())(ss, save_mean, save_invstd, running_mean,
        running_var, part, gamma, beta, C, sp.chunks, M, momentum, eps);
    CUDA_CHECK_LAUNCH();
    LAUNCH(bn_apply_kernel, gpu::grid_for((size_t)N * C * HW, 256), 256, 0, gpu::stream())(out, in, ss, C, HW, (long)N * C * HW, relu);
    CUDA_CHECK_LAUNCH();
}

void batchnorm_split_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                              const float *mask, const float *in, const float *add, const float *gamma,
                              const float *save_mean, const float *save_invstd, int N, int C, int HW)
{
    long M = (long)N * HW;
    Split sp = split_for(C, M);
    float *part = scratch(2 * (size_t)C * sp.chunks + 3 * (size_t)C), *kk = part + 2 * (size_t)C * sp.chunks;
    LAUNCH(bn_chunk_grads_kernel, dim3(sp.chunks, C), SPLIT_THREADS, 0, gpu::stream())(part, dout, mask, in, save_mean,
        save_invstd, N, C, HW, sp.len);
    CUDA_CHECK_LAUNCH();
    LAUNCH(bn_grad_finalize_kernel, div_up(C, 128), 128, 0, gpu::stream())(kk, dgamma, dbeta, part, gamma, save_invstd,
        C, sp.chunks, M);
    CUDA_CHECK_LAUNCH();
    LAUNCH(bn_grad_apply_kernel, gpu::grid_for((size_t)N * C * HW, 256), 256, 0, gpu::stream())(din, dout, mask, in, add, kk,
        save_mean, save_invstd, C, HW, M, (long)N * C * HW);
    CUDA_CHECK_LAUNCH();
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
