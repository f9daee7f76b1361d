// Data-parallel training over processes on GPUs (core/dist.h): one GPU per process, the
// processes' sums exchanged with NCCL on the step's stream, so they are captured into the
// step's CUDA graph with everything else.
//
// A sum over the processes, v[0..n) := sum over ranks r of v_r, is an all-gather and a local
// add: every process receives all the ranks' vectors, [size][n], and adds them in rank order
// (sum_ranks_kernel), so every process gets the same bits and a run with the same process count
// is repeatable bit for bit, whatever algorithm NCCL picks for its transfers (an ncclAllReduce
// adds in an order that depends on the ring or tree it builds). The price is size times the
// bytes of an all-reduce's receive side: for the practical's 83,882 gradients, 335 KB a
// process; bench/mpi_scaling.sh's model says where that stops paying.
//
// Built with NCCL (-DCONVNET_NCCL: the MPI apps, Makefile) or without it (every other
// program: one process, sum_over_processes does nothing and gpu_dist_init says why it can't).
// Under the emulator the same code runs against tests/emu/nccl/nccl_emu.h: N processes, one
// emulated device each, NCCL's transfers done with MPI.
#include "gpu/cuda_compat.h"
#include "gpu/gpu.h"

#ifdef CONVNET_NCCL
#ifdef CONVNET_EMU
#include "tests/emu/nccl/nccl_emu.h"
#else
#include <nccl.h>
#endif
#endif

namespace gpu {
namespace {
int n_ranks = 1;       // processes in the job (1: nothing to sum)
int device_index = 0;  // this process's GPU
#ifdef CONVNET_NCCL
ncclComm_t comm;
Scratch gathered;      // [n_ranks][n]: every rank's vector

#define NCCL_CHECK(call)                                                                      \
    do {                                                                                      \
        ncclResult_t r_ = (call);                                                             \
        if (r_ != ncclSuccess) GPU_FAIL("NCCL error %s: %s", ncclGetErrorString(r_), #call);  \
    } while (0)
#endif
}  // namespace

// v[i] = sum over ranks r (in rank order) of all[r * n + i]
__global__ void sum_ranks_kernel(float *v, const float *all, size_t n, int ranks)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float s = all[i];
        for (int r = 1; r < ranks; r++) s += all[(size_t)r * n + i];
        v[i] = s;
    }
}

void sum_over_processes(float *v, size_t n)
{
    if (n_ranks == 1 || n == 0) return;
#ifdef CONVNET_NCCL
    // grown in the first (uncaptured) step to the largest vector: the gradients
    float *all = gathered.get(n * (size_t)n_ranks);
    NCCL_CHECK(ncclAllGather(v, all, n, ncclFloat, comm, gpu::stream()));
    LAUNCH(sum_ranks_kernel, grid_for(n, 256), 256, 0, gpu::stream())(v, all, n, n_ranks);
    CUDA_CHECK_LAUNCH();
#else
    (void)v;
#endif
}

int current_device() { return device_index; }
}  // namespace gpu

// One GPU per process: the local_rank-th GPU of this machine, then an NCCL communicator over
// the size processes (rank 0 makes its id; bcast hands it to the others). Before any other
// CUDA call of the process. 0, or -1 with a one-line reason in err.
extern "C" int gpu_dist_init(int rank, int size, int local_rank, int local_size, void (*bcast)(void *buf, size_t bytes),
                             char *err, size_t errlen)
{
    if (size == 1 || gpu::n_ranks == size) return 0;   // (one process; or joined already)
#ifndef CONVNET_NCCL
    (void)rank; (void)local_rank; (void)local_size; (void)bcast;
    snprintf(err, errlen, "this program was built without NCCL: data-parallel GPU training needs the MPI build "
             "(apps/resnet-mpi, made where mpicc and NCCL's nccl.h and libnccl are found)");
    return -1;
#else
    int count, driver, runtime;
    cudaError_t e = (cudaError_t)gpu_device_query(&count, &driver, &runtime);
    if (e != cudaSuccess) {   // the reason ops_gpu would give
        char why[256];
        const char *r = gpu_unusable_reason(why, sizeof why, (int)e, driver, runtime, 0, 0);
        snprintf(err, errlen, "no usable CUDA GPU (%s)", r ? r : cudaGetErrorString(e));
        return -1;
    }
    // one GPU visible: a launcher that gives each process its own (CUDA_VISIBLE_DEVICES), or
    // one GPU for several processes, which NCCL refuses ("Duplicate GPU") at the init below
    if (count > 1 && local_size > count) {
        snprintf(err, errlen, "%d processes on this machine but %d GPUs: one GPU per process (fewer processes, "
                 "or --device cpu)", local_size, count);
        return -1;
    }
    gpu::device_index = count == 1 ? 0 : local_rank;
    CUDA_CHECK(cudaSetDevice(gpu::device_index));
    ncclUniqueId id;
    if (rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    bcast(&id, sizeof id);
    NCCL_CHECK(ncclCommInitRank(&gpu::comm, size, id, rank));
    gpu::n_ranks = size;
    return 0;
#endif
}

extern "C" void gpu_dist_finalize(void)
{
#ifdef CONVNET_NCCL
    if (gpu::n_ranks > 1) {
        CUDA_CHECK(cudaDeviceSynchronize());
        gpu::gathered.release();
        NCCL_CHECK(ncclCommDestroy(gpu::comm));
        gpu::n_ranks = 1;
    }
#endif
}
