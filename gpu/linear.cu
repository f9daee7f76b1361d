// Linear layer on the GPU (as cpu/linear.c): out = in W^T + b via the tiled GEMM, plus a
// bias kernel; backward: din = dout W, dW = dout^T in (GEMMs), db = column sums of dout.
// A small layer (the classifier head: N*I*O up to SMALL_MACS) is one launch each way instead:
// one thread per output, its sum in index order, so a graph has one node for it, not 2 or 3.
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

constexpr long SMALL_MACS = 1L << 20;

// out[n,o] = sum_i in[n,i] W[o,i] + b[o]
__global__ void linear_small_forward_kernel(float *out, const float *in, const float *w, const float *b, int N, int I,
                                            int O)
{
    long total = (long)N * O;
    for (long e = blockIdx.x * (long)blockDim.x + threadIdx.x; e < total; e += (long)gridDim.x * blockDim.x) {
        long n = e / O, o = e % O;
        float acc = 0.f;
        for (int i = 0; i < I; i++) acc += in[n * I + i] * w[o * I + i];
        out[e] = acc + b[o];
    }
}

// the three gradients in one launch: threads [0, N*I) din[n,i] = sum_o dout[n,o] W[o,i];
// [N*I, N*I + O*I) dW[o,i] = sum_n dout[n,o] in[n,i]; then O threads db[o] = sum_n dout[n,o]
__global__ void linear_small_backward_kernel(float *din, float *dw, float *db, const float *dout, const float *in,
                                             const float *w, int N, int I, int O)
{
    long nd = (long)N * I, nw = (long)O * I, total = nd + nw + O;
    for (long e = blockIdx.x * (long)blockDim.x + threadIdx.x; e < total; e += (long)gridDim.x * blockDim.x) {
        float acc = 0.f;
        if (e < nd) {
            long n = e / I, i = e % I;
            for (int o = 0; o < O; o++) acc += dout[n * O + o] * w[(long)o * I + i];
            din[e] = acc;
        } else if (e < nd + nw) {
            long o = (e - nd) / I, i = (e - nd) % I;
            for (int n = 0; n < N; n++) acc += dout[(long)n * O + o] * in[(long)n * I + i];
            dw[e - nd] = acc;
        } else {
            long o = e - nd - nw;
            for (int n = 0; n < N; n++) acc += dout[(long)n * O + o];
            db[o] = acc;
        }
    }
}

void linear_forward(float *out, const float *in, const float *weight, const float *bias, int N,
                    int I, int O)
{
    if ((long)N * I * O <= SMALL_MACS) {
        LAUNCH(linear_small_forward_kernel, grid_for((size_t)N * O, 256), 256, 0, gpu::stream())(out, in, weight, bias,
                                                                                                N, I, O);
        CUDA_CHECK_LAUNCH();
        return;
    }
    gemm(0, 1, N, O, I, in, I, weight, I, 0.f, out, O);
    LAUNCH(add_bias_rows_kernel, grid_for((size_t)N * O, 256), 256, 0, gpu::stream())(out, bias, N, O);
    CUDA_CHECK_LAUNCH();
}

void linear_backward(float *din, float *dweight, float *dbias, const float *dout, const float *in,
                     const float *weight, int N, int I, int O)
{
    if ((long)N * I * O <= SMALL_MACS) {
        size_t total = (size_t)N * I + (size_t)O * I + O;
        LAUNCH(linear_small_backward_kernel, grid_for(total, 256), 256, 0, gpu::stream())(din, dweight, dbias, dout, in,
                                                                                        weight, N, I, O);
        CUDA_CHECK_LAUNCH();
        return;
    }
    gemm(0, 0, N, I, O, dout, O, weight, I, 0.f, din, I);
    gemm(1, 0, O, I, N, dout, O, in, I, 0.f, dweight, I);
    LAUNCH(column_sum_kernel, div_up(O, 128), 128, 0, gpu::stream())(dbias, dout, N, O);
    CUDA_CHECK_LAUNCH();
}
}  // namespace gpu
