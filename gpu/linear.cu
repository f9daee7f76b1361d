// Linear layer on the GPU (as cpu/linear.c): out = in W^T + b via the tiled GEMM, plus a
// bias kernel; backward: din = dout W, dW = dout^T in (GEMMs), db = column sums of dout.
#include "gpu/cuda_compat.h"
#include "gpu/gpu.h"

namespace gpu {
__global__ void add_bias_rows_kernel(float *out, const float *bias, int N, int O)
{
    long total = (long)N * O;
    for (long e = blockIdx.x * (long)blockDim.x + threadIdx.x; e < total; e += (long)gridDim.x * blockDim.x)
        out[e] += bias[e % O];
}

// one thread per output feature, summing over the batch in order (deterministic)
__global__ void column_sum_kernel(float *db, const float *dout, int N, int O)
{
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= O) return;
    float acc = 0.f;
    for (int n = 0; n < N; n++) acc += dout[(long)n * O + o];
    db[o] = acc;
}

void linear_forward(float *out, const float *in, const float *weight, const float *bias, int N,
                    int I, int O)
{
    gemm(0, 1, N, O, I, in, I, weight, I, 0.f, out, O);
    LAUNCH(add_bias_rows_kernel, grid_for((size_t)N * O, 256), 256, 0, gpu::stream())(out, bias, N, O);
    CUDA_CHECK_LAUNCH();
}

void linear_backward(float *din, float *dweight, float *dbias, const float *dout, const float *in,
                     const float *weight, int N, int I, int O)
{
    gemm(0, 0, N, I, O, dout, O, weight, I, 0.f, din, I);
    gemm(1, 0, O, I, N, dout, O, in, I, 0.f, dweight, I);
    LAUNCH(column_sum_kernel, div_up(O, 128), 128, 0, gpu::stream())(dbias, dout, N, O);
    CUDA_CHECK_LAUNCH();
}
}  // namespace gpu
