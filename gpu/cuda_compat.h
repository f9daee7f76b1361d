// Included by every gpu/*.cu file. Under nvcc: the CUDA runtime plus the two macros the
// kernels use for launches and dynamic shared memory. Under the CUDA-on-CPU emulator
// (tests/emu, -DCONVNET_EMU): the emulator's definitions of the same names.
#ifndef CONVNET_CUDA_COMPAT_H
#define CONVNET_CUDA_COMPAT_H

#ifdef CONVNET_EMU
#include "tests/emu/cuda_emu.h"
#else
#include <cuda_runtime.h>
// LAUNCH(kernel, grid, block, shared_bytes, stream)(args...) is kernel<<<...>>>(args...).
#define LAUNCH(k, g, b, s, st) k<<<(g), (b), (s), (st)>>>
// DYN_SHARED(float, smem) declares the dynamic shared-memory array.
#define DYN_SHARED(type, name) extern __shared__ type name[]
#endif

#include <stdio.h>
#include <stdlib.h>

// Every CUDA runtime call is checked; a failure names the call and the error and exits.
#define CUDA_CHECK(call)                                                                      \
    do {                                                                                      \
        cudaError_t e_ = (call);                                                              \
        if (e_ != cudaSuccess) {                                                              \
            fprintf(stderr, "convnet: CUDA error %s at %s:%d: %s\n", cudaGetErrorString(e_),  \
                    __FILE__, __LINE__, #call);                                               \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)
// After each launch: launch-configuration errors surface here (and, while gpu::profiling is
// on, the launch's end is marked: gpu/profile.cu).
namespace gpu {
extern bool profiling;
void profile_mark(const char *file, int line);
}
#define CUDA_CHECK_LAUNCH()                                                                   \
    do {                                                                                      \
        CUDA_CHECK(cudaGetLastError());                                                       \
        if (gpu::profiling) gpu::profile_mark(__FILE__, __LINE__);                            \
    } while (0)
// gpu/'s one way to stop on anything else that cannot go on (a shape no kernel handles, a
// broken contract): one line naming the file and line, then exit(1), as CUDA_CHECK does.
#define GPU_FAIL(...)                                                                         \
    do {                                                                                      \
        fprintf(stderr, "convnet: %s:%d: ", __FILE__, __LINE__);                              \
        fprintf(stderr, __VA_ARGS__);                                                         \
        fputc('\n', stderr);                                                                  \
        exit(1);                                                                              \
    } while (0)

static inline int div_up(long a, long b) { return (int)((a + b - 1) / b); }

#endif
