// ReLU on the GPU: out = max(in, 0); din = dout * [out > 0] (grid-stride loops, as cpu/relu.c).
#include "gpu/cuda_compat.h"
#include "gpu/gpu.h"

namespace gpu {
__global__ void relu_forward_kernel(float *out, const float *in, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = in[i] > 0.f ? in[i] : 0.f;
}

__global__ void relu_backward_kernel(float *din, const float *dout, const float *out, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        din[i] = out[i] > 0.f ? dout[i] : 0.f;
}

void relu_forward(float *out, const float *in, size_t n)
{
    LAUNCH(relu_forward_kernel, grid_for(n, 256), 256, 0, gpu::stream())(out, in, n);
    CUDA_CHECK_LAUNCH();
}

void relu_backward(float *din, const float *dout, const float *out, size_t n)
{
    LAUNCH(relu_backward_kernel, grid_for(n, 256), 256, 0, gpu::stream())(din, dout, out, n);
    CUDA_CHECK_LAUNCH();
}
}  // namespace gpu
