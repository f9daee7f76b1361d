// The classifier head's backward in one launch (Ops.classifier_backward): what
// softmax_xent_backward, linear_backward and a global avgpool2d_backward compute one after
// the other, with the same arithmetic in the same order (the same bits), but without
// storing dlogits or dpooled: each thread computes the few values of them it needs.
//   dlogits[n,o] = (probs[n,o] - [o == labels[n]]) / N               ([N,O], O = 10 classes)
//   threads [0, N*I*HW):        dx[n,i,hw] = (sum_o dlogits[n,o] W[o,i]) / HW
//   [N*I*HW, .. + O*I):         dW[o,i]    = sum_n dlogits[n,o] pooled[n,i]
//   the last O:                 db[o]      = sum_n dlogits[n,o]
// Each sum in index order from 0 (deterministic). Recomputing dlogits in every dx thread
// costs O loads of probs per value, from L1: the head is 2 MB of dx against 5 KB of probs.
#include "gpu/cuda_compat.h"
#include "gpu/gpu.h"

namespace gpu {
namespace {
__device__ __forceinline__ float dlogit(const float *probs, const int32_t *labels, int n, int o, int O, int N)
{
    return (probs[(long)n * O + o] - (o == labels[n] ? 1.f : 0.f)) / (float)N;
}
}  // namespace

__global__ void classifier_backward_kernel(float *dx, float *dw, float *db, const float *probs, const int32_t *labels,
                                           const float *pooled, const float *w, int N, int I, int O, int HW)
{
    long nx = (long)N * I * HW, nw = (long)O * I, total = nx + nw + O;
    for (long e = blockIdx.x * (long)blockDim.x + threadIdx.x; e < total; e += (long)gridDim.x * blockDim.x) {
        float acc = 0.f;
        if (e < nx) {
            int n = (int)(e / ((long)I * HW)), i = (int)(e / HW % I);
            for (int o = 0; o < O; o++) acc += dlogit(probs, labels, n, o, O, N) * w[(long)o * I + i];
            dx[e] = (0.f + acc) / (float)HW;   // avgpool's backward: its one window's sum, over k*k
        } else if (e < nx + nw) {
            int o = (int)((e - nx) / I), i = (int)((e - nx) % I);
            for (int n = 0; n < N; n++) acc += dlogit(probs, labels, n, o, O, N) * pooled[(long)n * I + i];
            dw[e - nx] = acc;
        } else {
            int o = (int)(e - nx - nw);
            for (int n = 0; n < N; n++) acc += dlogit(probs, labels, n, o, O, N);
            db[o] = acc;
        }
    }
}

void classifier_backward(float *dx, float *dweight, float *dbias, const float *probs, const int32_t *labels,
                         const float *pooled, const float *weight, int N, int I, int O, int H, int W)
{
    size_t total = (size_t)N * I * H * W + (size_t)O * I + O;
    LAUNCH(classifier_backward_kernel, grid_for(total, 256), 256, 0, gpu::stream())(dx, dweight, dbias, probs, labels,
                                                                                   pooled, weight, N, I, O, H * W);
    CUDA_CHECK_LAUNCH();
}
}  // namespace gpu
