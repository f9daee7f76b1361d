// SGD with momentum and weight decay on the GPU, exactly cpu/sgd.c (PyTorch's formula).
#include "gpu/cuda_compat.h"
#include "gpu/gpu.h"

namespace gpu {
__global__ void sgd_kernel(float *w, const float *g, float *buf, size_t n, float lr, float momentum,
                           float wd, int first_step)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float gi = g[i] + wd * w[i];
        float b = first_step ? gi : momentum * buf[i] + gi;
        buf[i] = b;
        w[i] -= lr * b;
    }
}

void sgd_step(float *w, const float *g, float *buf, size_t n, float lr, float momentum, float wd,
              int first_step)
{
    LAUNCH(sgd_kernel, grid_for(n, 256), 256, 0, gpu::stream())(w, g, buf, n, lr, momentum, wd, first_step);
    CUDA_CHECK_LAUNCH();
}
}  // namespace gpu
