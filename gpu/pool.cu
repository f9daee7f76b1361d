// Pooling on the GPU (semantics of cpu/pool.c). Forward: one thread per output. Backward:
// one thread per INPUT pixel gathering from every window that contains it, so overlapping
// windows need no atomics and the result is deterministic.
#include "gpu/cuda_compat.h"
#include "gpu/gpu.h"

namespace gpu {

__global__ void maxpool_forward_kernel(float *out, int32_t *argmax, const float *in, int NC, int H,
                                       int W, int k, int stride, int pad, int P, int Q)
{
    long total = (long)NC * P * Q;
    for (long e = blockIdx.x * (long)blockDim.x + threadIdx.x; e < total; e += (long)gridDim.x * blockDim.x) {
        int q = (int)(e % Q), p = (int)(e / Q % P);
        const float *x = in + (e / ((long)P * Q)) * H * W;
        float best = 0.f;
        int besti = -1;
        for (int r = 0; r < k; r++)
            for (int s = 0; s < k; s++) {
                int h = p * stride - pad + r, w = q * stride - pad + s;
                if (h < 0 || h >= H || w < 0 || w >= W) continue;
                if (besti < 0 || x[h * W + w] > best) { best = x[h * W + w]; besti = h * W + w; }
            }
        out[e] = best;
        argmax[e] = besti;
    }
}

// The windows (p, q) containing input row h: p*stride - pad <= h < p*stride - pad + k.
__device__ void window_range(int h, int k, int stride, int pad, int P, int *lo, int *hi)
{
    int a = h + pad - k + 1;   // p*stride >= a
    *lo = a <= 0 ? 0 : (a + stride - 1) / stride;
    *hi = (h + pad) / stride + 1;   // p*stride <= h + pad
    if (*hi > P) *hi = P;
}

// Backward of both pools: each input pixel gathers from the windows that contain it: max
// takes dout where argmax points at this pixel, avg takes dout / k^2 from every window.
template <bool IS_MAX>
__global__ void pool_backward_kernel(float *din, const float *dout, const int32_t *argmax, int NC,
                                     int H, int W, int k, int stride, int pad, int P, int Q)
{
    long total = (long)NC * H * W;
    for (long e = blockIdx.x * (long)blockDim.x + threadIdx.x; e < total; e += (long)gridDim.x * blockDim.x) {
        int w = (int)(e % W), h = (int)(e / W % H);
        long plane = e / ((long)H * W);
        int plo, phi, qlo, qhi;
        window_range(h, k, stride, pad, P, &plo, &phi);
        window_range(w, k, stride, pad, Q, &qlo, &qhi);
        float acc = 0.f;
        for (int p = plo; p < phi; p++)
            for (int q = qlo; q < qhi; q++) {
                long o = plane * P * Q + (long)p * Q + q;
                if (!IS_MAX || argmax[o] == h * W + w) acc += dout[o];
            }
        din[e] = IS_MAX ? acc : acc / (float)(k * k);
    }
}

__global__ void avgpool_forward_kernel(float *out, const float *in, int NC, int H, int W, int k,
                                       int stride, int pad, int P, int Q)
{
    long total = (long)NC * P * Q;
    for (long e = blockIdx.x * (long)blockDim.x + threadIdx.x; e < total; e += (long)gridDim.x * blockDim.x) {
        int q = (int)(e % Q), p = (int)(e / Q % P);
        const float *x = in + (e / ((long)P * Q)) * H * W;
        float acc = 0.f;
        for (int r = 0; r < k; r++)
            for (int s = 0; s < k; s++) {
                int h = p * stride - pad + r, w = q * stride - pad + s;
                if (h >= 0 && h < H && w >= 0 && w < W) acc += x[h * W + w];
            }
        out[e] = acc / (float)(k * k);
    }
}

// Global average pooling (k = H = W, one output per plane): one warp per plane, coalesced
// reads, lane sums combined by a fixed shuffle tree (deterministic), so a batch of 128 x 32
// planes is 512 blocks rather than the 16 the one-thread-per-output kernel above would use.
__global__ void global_avgpool_kernel(float *out, const float *in, long NC, int HW)
{
    long plane = (blockIdx.x * (long)blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (plane >= NC) return;   // whole warps leave together (NC planes, 32 lanes each)
    const float *x = in + plane * HW;
    float acc = 0.f;
    for (int i = lane; i < HW; i += 32) acc += x[i];
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (lane == 0) out[plane] = acc / (float)HW;
}

void maxpool2d_forward(float *out, int32_t *argmax, const float *in, int N, int C, int H, int W,
                       int k, int stride, int pad)
{
    int P = (H + 2 * pad - k) / stride + 1, Q = (W + 2 * pad - k) / stride + 1;
    LAUNCH(maxpool_forward_kernel, grid_for((size_t)N * C * P * Q, 256), 256, 0, gpu::stream())(out, argmax, in,
        N * C, H, W, k, stride, pad, P, Q);
    CUDA_CHECK_LAUNCH();
}

void maxpool2d_backward(float *din, const float *dout, const int32_t *argmax, int N, int C, int H,
                        int W, int k, int stride, int pad)
{
    int P = (H + 2 * pad - k) / stride + 1, Q = (W + 2 * pad - k) / stride + 1;
    LAUNCH((pool_backward_kernel<true>), grid_for((size_t)N * C * H * W, 256), 256, 0, gpu::stream())(din, dout,
        argmax, N * C, H, W, k, stride, pad, P, Q);
    CUDA_CHECK_LAUNCH();
}

void avgpool2d_forward(float *out, const float *in, int N, int C, int H, int W, int k, int stride,
                       int pad)
{
    int P = (H + 2 * pad - k) / stride + 1, Q = (W + 2 * pad - k) / stride + 1;
    if (k == H && k == W && pad == 0) {   // global pooling (the ResNet's head)
        LAUNCH(global_avgpool_kernel, grid_for((size_t)N * C * 32, 256), 256, 0, gpu::stream())(out, in, (long)N * C, H * W);
        CUDA_CHECK_LAUNCH();
        return;
    }
    LAUNCH(avgpool_forward_kernel, grid_for((size_t)N * C * P * Q, 256), 256, 0, gpu::stream())(out, in, N * C,
        H, W, k, stride, pad, P, Q);
    CUDA_CHECK_LAUNCH();
}

void avgpool2d_backward(float *din, const float *dout, int N, int C, int H, int W, int k,
                        int stride, int pad)
{
    int P = (H + 2 * pad - k) / stride + 1, Q = (W + 2 * pad - k) / stride + 1;
    LAUNCH((pool_backward_kernel<false>), grid_for((size_t)N * C * H * W, 256), 256, 0, gpu::stream())(din, dout,
        (const int32_t *)nullptr, N * C, H, W, k, stride, pad, P, Q);
    CUDA_CHECK_LAUNCH();
}
}  // namespace gpu
