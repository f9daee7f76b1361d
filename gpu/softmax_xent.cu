// Softmax cross-entropy on the GPU (as cpu/softmax_xent.c): one thread per sample; the class
// count is small (10), so a per-thread loop over classes is the whole kernel.
#include "gpu/cuda_compat.h"
#include "gpu/gpu.h"

namespace gpu {
__global__ void softmax_xent_forward_kernel(float *losses, float *probs, int32_t *correct,
                                            const float *logits, const int32_t *labels, int N, int C)
{
    int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= N) return;
    const float *z = logits + (long)n * C;
    float *p = probs + (long)n * C;
    int arg = 0;
    for (int j = 1; j < C; j++) if (z[j] > z[arg]) arg = j;
    float zmax = z[arg], sum = 0.f;
    for (int j = 0; j < C; j++) sum += expf(z[j] - zmax);
    for (int j = 0; j < C; j++) p[j] = expf(z[j] - zmax) / sum;
    losses[n] = logf(sum) + zmax - z[labels[n]];
    correct[n] = arg == labels[n];
}

__global__ void softmax_xent_backward_kernel(float *dlogits, const float *probs,
                                             const int32_t *labels, int N, int C)
{
    long total = (long)N * C;
    for (long e = blockIdx.x * (long)blockDim.x + threadIdx.x; e < total; e += (long)gridDim.x * blockDim.x) {
        int n = (int)(e / C), j = (int)(e % C);
        dlogits[e] = (probs[e] - (j == labels[n] ? 1.f : 0.f)) / (float)N;
    }
}

void softmax_xent_forward(float *losses, float *probs, int32_t *correct, const float *logits,
                          const int32_t *labels, int N, int C)
{
    LAUNCH(softmax_xent_forward_kernel, div_up(N, 128), 128, 0, gpu::stream())(losses, probs, correct, logits, labels, N, C);
    CUDA_CHECK_LAUNCH();
}

void softmax_xent_backward(float *dlogits, const float *probs, const int32_t *labels, int N, int C)
{
    LAUNCH(softmax_xent_backward_kernel, grid_for((size_t)N * C, 256), 256, 0, gpu::stream())(dlogits, probs, labels, N, C);
    CUDA_CHECK_LAUNCH();
}
}  // namespace gpu
