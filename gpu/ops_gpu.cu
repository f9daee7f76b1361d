// The GPU op table: device detection and memory. Operators are filled in by the kernels
// of gpu/ as they land; until then ops_gpu() reports that plainly.
#include <cuda_runtime.h>
#include <stdio.h>
#include "core/ops.h"

extern "C" const Ops *ops_gpu(const char **why)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        if (why) *why = e == cudaErrorInsufficientDriver ? "driver not found"
                      : e == cudaErrorNoDevice ? "no CUDA device" : cudaGetErrorString(e);
        return nullptr;
    }
    if (count == 0) {
        if (why) *why = "no CUDA device";
        return nullptr;
    }
    if (why) *why = "GPU operators are not built in this version";
    return nullptr;
}
