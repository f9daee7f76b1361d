// Residual add on the GPU: out = a + b; y += x (the backward's accumulation); y *= a; as cpu/add.c.
#include "gpu/cuda_compat.h"
#include "gpu/gpu.h"

namespace gpu {
__global__ void add_forward_kernel(float *out, const float *a, const float *b, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = a[i] + b[i];
}

__global__ void add_inplace_kernel(float *y, const float *x, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] += x[i];
}

__global__ void scale_kernel(float *y, float a, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] *= a;
}

void add_forward(float *out, const float *a, const float *b, size_t n)
{
    LAUNCH(add_forward_kernel, grid_for(n, 256), 256, 0, gpu::stream())(out, a, b, n);
    CUDA_CHECK_LAUNCH();
}

void add_inplace(float *y, const float *x, size_t n)
{
    LAUNCH(add_inplace_kernel, grid_for(n, 256), 256, 0, gpu::stream())(y, x, n);
    CUDA_CHECK_LAUNCH();
}
void scale(float *y, float a, size_t n)
{
    LAUNCH(scale_kernel, grid_for(n, 256), 256, 0, gpu::stream())(y, a, n);
    CUDA_CHECK_LAUNCH();
}
}  // namespace gpu
