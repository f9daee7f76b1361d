// What the training step needs besides the operators, so that it runs as one CUDA graph
// with no host synchronization: the loss and accuracy summed on the device over the epoch,
// and the step counter the batch build reads (gpu/augment.cu) advanced on the device.
#include "gpu/cuda_compat.h"
#include "gpu/gpu.h"

namespace gpu {

constexpr int ACC_THREADS = 256;

// sums[0] += sum_i losses[i], sums[1] += sum_i correct[i] (each thread a fixed strided
// subset, then a fixed tree: the same bits every run); then *step += 1.
__global__ void __launch_bounds__(ACC_THREADS) loss_accumulate_kernel(double *sums, const float *losses,
        const int32_t *correct, int n, int32_t *step)
{
    __shared__ double sl[ACC_THREADS], sc[ACC_THREADS];
    int t = threadIdx.x;
    double l = 0, c = 0;
    for (int i = t; i < n; i += ACC_THREADS) { l += losses[i]; c += correct[i]; }
    sl[t] = l;
    sc[t] = c;
    __syncthreads();
    for (int s = ACC_THREADS / 2; s > 0; s >>= 1) {
        if (t < s) { sl[t] += sl[t + s]; sc[t] += sc[t + s]; }
        __syncthreads();
    }
    if (t == 0) {
        sums[0] += sl[0];
        sums[1] += sc[0];
        *step += 1;
    }
}

void loss_accumulate(double *sums, const float *losses, const int32_t *correct, int n, int32_t *step)
{
    LAUNCH(loss_accumulate_kernel, 1, ACC_THREADS, 0, gpu::stream())(sums, losses, correct, n, step);
    CUDA_CHECK_LAUNCH();
}

// ---- capture of the step as a graph ----
void capture_begin()
{
    if (profiling) GPU_FAIL("capture_begin while profiling: profile eager launches (gpu/profile.cu)");
    side_join_all();   // side work issued before the capture is waited for outside it
    CUDA_CHECK(cudaStreamBeginCapture(main_stream(), cudaStreamCaptureModeGlobal));
}

void *capture_end()
{
    cudaGraph_t g;
    cudaGraphExec_t e;
    side_join_all();   // a capture must end with every forked stream joined back
    CUDA_CHECK(cudaStreamEndCapture(main_stream(), &g));
    CUDA_CHECK(cudaGraphInstantiate(&e, g, 0));
    CUDA_CHECK(cudaGraphDestroy(g));
    return (void *)e;
}

void graph_launch(void *g) { CUDA_CHECK(cudaGraphLaunch((cudaGraphExec_t)g, main_stream())); }
void graph_free(void *g) { if (g) CUDA_CHECK(cudaGraphExecDestroy((cudaGraphExec_t)g)); }
}  // namespace gpu
