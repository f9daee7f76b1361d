// A check of gpu/mma.cuh for the tests (tests/test_gpu.c: mma_fragment_layout): one warp
// computes D = A B (A 16x8, B 8x8, row-major device arrays) with the fragment layout the
// header states, so that a wrong layout, on the emulator or on a real card, shows up as a
// wrong product. mode 0: 3xTF32 (what the convolutions use); mode 1: one tf32 product only
// (big(a) big(b): what the split's small terms buy, measured); mode 2: mode 0 with a[1] and
// a[2] swapped (a planted layout error the test must catch).
#include "gpu/cuda_compat.h"
#include "gpu/gpu.h"
#include "gpu/mma.cuh"

namespace gpu {
namespace {
__global__ void mma_probe_kernel(float *d, const float *a, const float *b, int mode)
{
    int lane = threadIdx.x, g = lane / 4, t = lane % 4;
    float af[1][4] = {{a[g * 8 + t], a[(g + 8) * 8 + t], a[g * 8 + t + 4], a[(g + 8) * 8 + t + 4]}};
    float bf[1][2] = {{b[t * 8 + g], b[(t + 4) * 8 + g]}};
    if (mode == 1) {
        for (int r = 0; r < 4; r++) af[0][r] = to_tf32(af[0][r]);
        for (int r = 0; r < 2; r++) bf[0][r] = to_tf32(bf[0][r]);
    }
    if (mode == 2) {
        float x = af[0][1];
        af[0][1] = af[0][2];
        af[0][2] = x;
    }
    float c[1][1][4] = {};
    mma_3xtf32<1, 1>(c, af, bf);   // mode 1: the small parts of tf32 values are 0
    for (int q = 0; q < 4; q++) d[(g + 8 * (q >> 1)) * 8 + 2 * t + (q & 1)] = c[0][0][q];
}
}  // namespace
}  // namespace gpu

// d, a, b: device arrays of 16x8, 16x8 and 8x8 floats
extern "C" void gpu_mma_probe(float *d, const float *a, const float *b, int mode)
{
    LAUNCH(gpu::mma_probe_kernel, 1, 32, 0, gpu::stream())(d, a, b, mode);
    CUDA_CHECK_LAUNCH();
    CUDA_CHECK(cudaStreamSynchronize(gpu::stream()));
}
