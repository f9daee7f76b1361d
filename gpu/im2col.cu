// im2col / col2im for a whole batch on the GPU (layouts as cpu/im2col.c, one [CRS, PQ] matrix
// per image: col[n][(c*R + r)*S + s][p*Q + q]).
// im2col: one thread per col element. col2im: one thread per INPUT pixel, gathering every
// (r, s, p, q) that reads it, so no two threads write the same address (no atomics,
// deterministic), unlike the scatter form of the CPU version.
#include "gpu/cuda_compat.h"
#include "gpu/gpu.h"

namespace gpu {

int grid_for(size_t n, int threads)
{
    long g = (long)((n + threads - 1) / threads);
    return (int)(g < 1 ? 1 : g > 65535 * 8 ? 65535 * 8 : g);
}

__global__ void im2col_kernel(float *col, const float *in, int N, int C, int H, int W, int R, int S,
                              int stride, int pad, int P, int Q)
{
    long total = (long)N * C * R * S * P * Q;
    for (long e = blockIdx.x * (long)blockDim.x + threadIdx.x; e < total; e += (long)gridDim.x * blockDim.x) {
        int q = (int)(e % Q), p = (int)(e / Q % P);
        long row = e / ((long)P * Q);   // n*CRS + crs
        int s = (int)(row % S), r = (int)(row / S % R), c = (int)(row / ((long)R * S) % C);
        long n = row / ((long)C * R * S);
        int h = p * stride - pad + r, w = q * stride - pad + s;
        col[e] = h >= 0 && h < H && w >= 0 && w < W ? in[((n * C + c) * H + h) * W + w] : 0.f;
    }
}

__global__ void col2im_kernel(float *in, const float *col, int N, int C, int H, int W, int R, int S,
                              int stride, int pad, int P, int Q)
{
    long total = (long)N * C * H * W;
    for (long e = blockIdx.x * (long)blockDim.x + threadIdx.x; e < total; e += (long)gridDim.x * blockDim.x) {
        int w = (int)(e % W), h = (int)(e / W % H), c = (int)(e / ((long)H * W) % C);
        long n = e / ((long)C * H * W);
        float acc = 0.f;
        for (int r = 0; r < R; r++) {
            int hp = h + pad - r;               // = p * stride
            if (hp < 0 || hp % stride) continue;
            int p = hp / stride;
            if (p >= P) continue;
            for (int s = 0; s < S; s++) {
                int wq = w + pad - s;
                if (wq < 0 || wq % stride) continue;
                int q = wq / stride;
                if (q >= Q) continue;
                acc += col[((n * C + c) * R * S + (long)r * S + s) * P * Q + (long)p * Q + q];
            }
        }
        in[e] = acc;
    }
}

void im2col(float *col, const float *in, int N, int C, int H, int W, int R, int S, int stride,
            int pad, int P, int Q)
{
    size_t n = (size_t)N * C * R * S * P * Q;
    LAUNCH(im2col_kernel, grid_for(n, 256), 256, 0, gpu::stream())(col, in, N, C, H, W, R, S, stride, pad, P, Q);
    CUDA_CHECK_LAUNCH();
}

void col2im(float *in, const float *col, int N, int C, int H, int W, int R, int S, int stride,
            int pad, int P, int Q)
{
    size_t n = (size_t)N * C * H * W;
    LAUNCH(col2im_kernel, grid_for(n, 256), 256, 0, gpu::stream())(in, col, N, C, H, W, R, S, stride, pad, P, Q);
    CUDA_CHECK_LAUNCH();
}
}  // namespace gpu
