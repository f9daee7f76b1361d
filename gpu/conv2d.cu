// Convolution on the GPU as in cpu/conv2d.c, the readable version (the op table runs the
// implicit GEMM of conv2d_igemm.cu, which skips the column buffer): im2col of the whole batch into the workspace,
// then one batched GEMM launch:
//   forward          out[n]  = W[K,CRS] col_n                 (batch of N GEMMs, NN)
//   backward_input   col_n   = W^T dout[n], then col2im        (batch of N GEMMs, TN)
//   backward_weight  dW      = sum_n dout[n] col_n^T           (one GEMM reducing over n, NT;
//                                                               fixed order: deterministic)
#include "gpu/cuda_compat.h"
#include "gpu/gpu.h"

namespace gpu {

void conv2d_forward(float *out, const float *in, const float *weight, int N, int C, int H, int W,
                    int K, int R, int S, int stride, int pad, float *ws)
{
    int P = (H + 2 * pad - R) / stride + 1, Q = (W + 2 * pad - S) / stride + 1, CRS = C * R * S, PQ = P * Q;
    im2col(ws, in, N, C, H, W, R, S, stride, pad, P, Q);
    gemm_batched(0, 0, K, PQ, CRS, weight, CRS, 0, ws, PQ, (long)CRS * PQ, 0.f, out, PQ, (long)K * PQ, N, 0);
}

void conv2d_backward_input(float *din, const float *dout, const float *weight, int N, int C, int H,
                           int W, int K, int R, int S, int stride, int pad, float *ws)
{
    int P = (H + 2 * pad - R) / stride + 1, Q = (W + 2 * pad - S) / stride + 1, CRS = C * R * S, PQ = P * Q;
    gemm_batched(1, 0, CRS, PQ, K, weight, CRS, 0, dout, PQ, (long)K * PQ, 0.f, ws, PQ, (long)CRS * PQ, N, 0);
    col2im(din, ws, N, C, H, W, R, S, stride, pad, P, Q);
}

void conv2d_backward_weight(float *dweight, const float *dout, const float *in, int N, int C, int H,
                            int W, int K, int R, int S, int stride, int pad, float *ws)
{
    int P = (H + 2 * pad - R) / stride + 1, Q = (W + 2 * pad - S) / stride + 1, CRS = C * R * S, PQ = P * Q;
    im2col(ws, in, N, C, H, W, R, S, stride, pad, P, Q);
    gemm_batched(0, 1, K, CRS, PQ, dout, PQ, (long)K * PQ, ws, PQ, (long)CRS * PQ, 0.f, dweight, CRS, 0, N, 1);
}

// out[n,k,i] += bias[k]
__global__ void bias_forward_kernel(float *out, const float *bias, int N, int K, int HW)
{
    long total = (long)N * K * HW;
    for (long e = blockIdx.x * (long)blockDim.x + threadIdx.x; e < total; e += (long)gridDim.x * blockDim.x)
        out[e] += bias[(e / HW) % K];
}

// dbias[k] = sum_{n,i} dout[n,k,i]: one block per k, fixed-order tree (deterministic)
__global__ void bias_backward_kernel(float *dbias, const float *dout, int N, int K, int HW)
{
    __shared__ float sh[256];
    int k = blockIdx.x;
    float acc = 0.f;
    for (long e = threadIdx.x; e < (long)N * HW; e += blockDim.x)
        acc += dout[((e / HW) * K + k) * HW + e % HW];
    sh[threadIdx.x] = acc;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) dbias[k] = sh[0];
}

void bias_forward(float *out, const float *bias, int N, int K, int HW)
{
    LAUNCH(bias_forward_kernel, grid_for((size_t)N * K * HW, 256), 256, 0, gpu::stream())(out, bias, N, K, HW);
    CUDA_CHECK_LAUNCH();
}

void bias_backward(float *dbias, const float *dout, int N, int K, int HW)
{
    LAUNCH(bias_backward_kernel, K, 256, 0, gpu::stream())(dbias, dout, N, K, HW);
    CUDA_CHECK_LAUNCH();
}
}  // namespace gpu

// the readable (im2col) convolution for tests/test_gpu.c
extern "C" void gpu_conv2d_im2col(int which, float *out, const float *x, const float *w, int N, int C, int H, int W,
                                  int K, int R, int S, int stride, int pad, float *ws)
{
    if (which == 0) gpu::conv2d_forward(out, x, w, N, C, H, W, K, R, S, stride, pad, ws);
    else if (which == 1) gpu::conv2d_backward_input(out, x, w, N, C, H, W, K, R, S, stride, pad, ws);
    else gpu::conv2d_backward_weight(out, x, w, N, C, H, W, K, R, S, stride, pad, ws);
}
