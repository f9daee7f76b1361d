// BatchNorm2d on the GPU (math as cpu/batchnorm.c), the readable version: one 256-thread
// block per channel (the op table uses gpu/batchnorm_split.cu, which fills the card):
// each thread sums a fixed strided subset of the N*HW values, then a fixed-shape tree in
// shared memory and a warp-shuffle finish combine them. No atomics: the same input gives the
// same bits every run, which keeps the weights deterministic.
//
// Each pass that needs a sum over the batch is its own launch, and the sums are handed to
// gpu::sum_over_processes between them (gpu/dist.cu): with one process it does nothing; in
// data-parallel training (core/dist.h) it adds them over the processes, so the statistics
// are the whole batch's (synchronized batchnorm), as in cpu/batchnorm.c.
//   forward:   sums[c] = sum x, sums[C] = M (the count)      -> summed over the processes
//              sq[c] = sum (x - mean)^2, mean = sums[c] / M   -> summed over the processes
//              var = sq / M; out = x scale + shift; saved and running statistics
//   backward:  g[c] = sum dy, g[C + c] = sum dy xhat, g[2C] = M -> summed over the processes
//              din = gamma invstd / M (M dy - g[c] - xhat g[C + c])
//              dbeta, dgamma: this process's own sums (gradients: summed with all the others)
#include "gpu/cuda_compat.h"
#include "gpu/gpu.h"
#include "gpu/reduce.cuh"

namespace gpu {

constexpr int BN_THREADS = 256;

#define IDX(e) (((long)((e) / HW) * C + c) * HW + (e) % HW)   // e-th value of channel c

namespace {
Scratch sums_buf;   // [2C + 1] per-channel sums between the launches (one batchnorm call at a time)
}
void batchnorm_release() { sums_buf.release(); }

// sums[c] = sum over channel c's values; sums[C] = their count M (exact in a float up to 2^24)
__global__ void __launch_bounds__(BN_THREADS) bn_sum_kernel(float *sums, const float *in, int N, int C, int HW)
{
    __shared__ float sh[BN_THREADS];
    int c = blockIdx.x;
    long M = (long)N * HW;
    float s = 0.f;
    for (long e = threadIdx.x; e < M; e += BN_THREADS) s += in[IDX(e)];
    s = block_sum<BN_THREADS>(s, sh);
    if (threadIdx.x == 0) sums[c] = s;
    if (threadIdx.x == 0 && c == 0) sums[C] = (float)M;
}

// sq[c] = sum (x - mean)^2 with mean = sums[c] / sums[C] (the sums of the whole batch)
__global__ void __launch_bounds__(BN_THREADS) bn_centered_kernel(float *sq, const float *sums, const float *in,
        int N, int C, int HW)
{
    __shared__ float sh[BN_THREADS];
    int c = blockIdx.x;
    long M = (long)N * HW;
    float mean = sums[c] / sums[C], q = 0.f;
    for (long e = threadIdx.x; e < M; e += BN_THREADS) { float d = in[IDX(e)] - mean; q += d * d; }
    q = block_sum<BN_THREADS>(q, sh);
    if (threadIdx.x == 0) sq[c] = q;
}

// out = x scale + shift with the whole batch's mean and variance; saved and running statistics
__global__ void __launch_bounds__(BN_THREADS) bn_normalize_kernel(float *out, float *save_mean,
        float *save_invstd, float *running_mean, float *running_var, const float *in,
        const float *gamma, const float *beta, const float *sums, const float *sq, int N, int C, int HW,
        float momentum, float eps)
{
    int c = blockIdx.x;
    long M = (long)N * HW;   // this process's values
    float Mall = sums[C], mean = sums[c] / Mall, var = sq[c] / Mall;
    float invstd = rsqrtf(var + eps);
    float scale = gamma[c] * invstd, shift = beta[c] - mean * scale;
    for (long e = threadIdx.x; e < M; e += BN_THREADS) out[IDX(e)] = in[IDX(e)] * scale + shift;
    if (threadIdx.x == 0) {
        save_mean[c] = mean;
        save_invstd[c] = invstd;
        float unbiased = Mall > 1 ? var * Mall / (Mall - 1) : var;
        running_mean[c] = (1.f - momentum) * running_mean[c] + momentum * mean;
        running_var[c] = (1.f - momentum) * running_var[c] + momentum * unbiased;
    }
}

__global__ void bn_forward_eval_kernel(float *out, const float *in, const float *gamma,
        const float *beta, const float *running_mean, const float *running_var, int N, int C,
        int HW, float eps)
{
    long total = (long)N * C * HW;
    for (long e = blockIdx.x * (long)blockDim.x + threadIdx.x; e < total; e += (long)gridDim.x * blockDim.x) {
        int c = (int)(e / HW % C);
        float scale = gamma[c] * rsqrtf(running_var[c] + eps);
        out[e] = (in[e] - running_mean[c]) * scale + beta[c];
    }
}

// g[c] = sum dy, g[C + c] = sum dy xhat, g[2C] = M; dbeta, dgamma: the same sums (this process's)
__global__ void __launch_bounds__(BN_THREADS) bn_grad_sums_kernel(float *g, float *dgamma, float *dbeta,
        const float *dout, const float *in, const float *save_mean, const float *save_invstd, int N, int C, int HW)
{
    __shared__ float sh[BN_THREADS];
    int c = blockIdx.x;
    long M = (long)N * HW;
    float mean = save_mean[c], invstd = save_invstd[c];
    float sdy = 0.f, sdyx = 0.f;
    for (long e = threadIdx.x; e < M; e += BN_THREADS) {
        float dy = dout[IDX(e)];
        sdy += dy;
        sdyx += dy * (in[IDX(e)] - mean) * invstd;
    }
    sdy = block_sum<BN_THREADS>(sdy, sh);
    sdyx = block_sum<BN_THREADS>(sdyx, sh);
    if (threadIdx.x == 0) { g[c] = dbeta[c] = sdy; g[C + c] = dgamma[c] = sdyx; }
    if (threadIdx.x == 0 && c == 0) g[2 * C] = (float)M;
}

// din = gamma invstd / M (M dy - sum dy - xhat sum dy xhat), with the whole batch's sums and M
__global__ void __launch_bounds__(BN_THREADS) bn_grad_apply_kernel(float *din, const float *dout, const float *in,
        const float *gamma, const float *save_mean, const float *save_invstd, const float *g, int N, int C, int HW)
{
    int c = blockIdx.x;
    long M = (long)N * HW;
    float mean = save_mean[c], invstd = save_invstd[c], Mall = g[2 * C], sdy = g[c], sdyx = g[C + c];
    float k = gamma[c] * invstd / Mall;
    for (long e = threadIdx.x; e < M; e += BN_THREADS) {
        float xhat = (in[IDX(e)] - mean) * invstd;
        din[IDX(e)] = k * (Mall * dout[IDX(e)] - sdy - xhat * sdyx);
    }
}

void batchnorm_forward_train(float *out, float *save_mean, float *save_invstd, float *running_mean,
                             float *running_var, const float *in, const float *gamma,
                             const float *beta, int N, int C, int HW, float momentum, float eps)
{
    float *sums = sums_buf.get(2 * (size_t)C + 1), *sq = sums + C + 1;
    LAUNCH(bn_sum_kernel, C, BN_THREADS, 0, gpu::stream())(sums, in, N, C, HW);
    CUDA_CHECK_LAUNCH();
    sum_over_processes(sums, (size_t)C + 1);   // the whole batch's sums and count
    LAUNCH(bn_centered_kernel, C, BN_THREADS, 0, gpu::stream())(sq, sums, in, N, C, HW);
    CUDA_CHECK_LAUNCH();
    sum_over_processes(sq, (size_t)C);
    LAUNCH(bn_normalize_kernel, C, BN_THREADS, 0, gpu::stream())(out, save_mean, save_invstd, running_mean,
        running_var, in, gamma, beta, sums, sq, N, C, HW, momentum, eps);
    CUDA_CHECK_LAUNCH();
}

void batchnorm_forward_eval(float *out, const float *in, const float *gamma, const float *beta,
                            const float *running_mean, const float *running_var, int N, int C,
                            int HW, float eps)
{
    LAUNCH(bn_forward_eval_kernel, grid_for((size_t)N * C * HW, 256), 256, 0, gpu::stream())(out, in, gamma,
        beta, running_mean, running_var, N, C, HW, eps);
    CUDA_CHECK_LAUNCH();
}

void batchnorm_backward(float *din, float *dgamma, float *dbeta, const float *dout, const float *in,
                        const float *gamma, const float *save_mean, const float *save_invstd,
                        int N, int C, int HW)
{
    float *g = sums_buf.get(2 * (size_t)C + 1);
    LAUNCH(bn_grad_sums_kernel, C, BN_THREADS, 0, gpu::stream())(g, dgamma, dbeta, dout, in, save_mean, save_invstd,
        N, C, HW);
    CUDA_CHECK_LAUNCH();
    sum_over_processes(g, 2 * (size_t)C + 1);   // the whole batch's sums and count
    LAUNCH(bn_grad_apply_kernel, C, BN_THREADS, 0, gpu::stream())(din, dout, in, gamma, save_mean, save_invstd, g,
        N, C, HW);
    CUDA_CHECK_LAUNCH();
}
}  // namespace gpu

// the readable kernels for tests/test_gpu.c (the op table runs the split ones)
extern "C" void gpu_batchnorm_block_forward_train(float *out, float *sm, float *si, float *rm, float *rv,
        const float *in, const float *g, const float *b, int N, int C, int HW, float mom, float eps)
{
    gpu::batchnorm_forward_train(out, sm, si, rm, rv, in, g, b, N, C, HW, mom, eps);
}
extern "C" void gpu_batchnorm_block_backward(float *din, float *dg, float *db, const float *dout,
        const float *in, const float *g, const float *sm, const float *si, int N, int C, int HW)
{
    gpu::batchnorm_backward(din, dg, db, dout, in, g, sm, si, N, C, HW);
}
