// BatchNorm2d on the GPU (math as cpu/batchnorm.c), the readable version: one 256-thread
// block per channel (the op table uses gpu/batchnorm_split.cu, which fills the card):
// each thread sums a fixed strided subset of the N*HW values, then a fixed-shape tree in
// shared memory and a warp-shuffle finish combine them. No atomics: the same input gives the
// same bits every run, which keeps the weights deterministic.
#include "gpu/cuda_compat.h"
#include "gpu/gpu.h"
#include "gpu/reduce.cuh"

namespace gpu {

constexpr int BN_THREADS = 256;

#define IDX(e) (((long)((e) / HW) * C + c) * HW + (e) % HW)   // e-th value of channel c

__global__ void __launch_bounds__(BN_THREADS) bn_forward_train_kernel(float *out, float *save_mean,
        float *save_invstd, float *running_mean, float *running_var, const float *in,
        const float *gamma, const float *beta, int N, int C, int HW, float momentum, float eps)
{
    __shared__ float sh[BN_THREADS];
    int c = blockIdx.x;
    long M = (long)N * HW;
    float s = 0.f;
    for (long e = threadIdx.x; e < M; e += BN_THREADS) s += in[IDX(e)];
    float mean = block_sum<BN_THREADS>(s, sh) / (float)M;
    float q = 0.f;
    for (long e = threadIdx.x; e < M; e += BN_THREADS) { float d = in[IDX(e)] - mean; q += d * d; }
    float var = block_sum<BN_THREADS>(q, sh) / (float)M;
    float invstd = rsqrtf(var + eps);
    float scale = gamma[c] * invstd, shift = beta[c] - mean * scale;
    for (long e = threadIdx.x; e < M; e += BN_THREADS) out[IDX(e)] = in[IDX(e)] * scale + shift;
    if (threadIdx.x == 0) {
        save_mean[c] = mean;
        save_invstd[c] = invstd;
        float unbiased = M > 1 ? var * (float)M / (float)(M - 1) : var;
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

__global__ void __launch_bounds__(BN_THREADS) bn_backward_kernel(float *din, float *dgamma,
        float *dbeta, const float *dout, const float *in, const float *gamma,
        const float *save_mean, const float *save_invstd, int N, int C, int HW)
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
    float k = gamma[c] * invstd / (float)M;
    for (long e = threadIdx.x; e < M; e += BN_THREADS) {
        float xhat = (in[IDX(e)] - mean) * invstd;
        din[IDX(e)] = k * ((float)M * dout[IDX(e)] - sdy - xhat * sdyx);
    }
    if (threadIdx.x == 0) { dbeta[c] = sdy; dgamma[c] = sdyx; }
}

void batchnorm_forward_train(float *out, float *save_mean, float *save_invstd, float *running_mean,
                             float *running_var, const float *in, const float *gamma,
                             const float *beta, int N, int C, int HW, float momentum, float eps)
{
    LAUNCH(bn_forward_train_kernel, C, BN_THREADS, 0, gpu::stream())(out, save_mean, save_invstd, running_mean,
        running_var, in, gamma, beta, N, C, HW, momentum, eps);
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
    LAUNCH(bn_backward_kernel, C, BN_THREADS, 0, gpu::stream())(din, dgamma, dbeta, dout, in, gamma, save_mean,
        save_invstd, N, C, HW);
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
