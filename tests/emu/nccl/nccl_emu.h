// NCCL on the CUDA-on-CPU emulator (tests/emu): the few calls gpu/dist.cu makes, for N
// processes with one emulated device each, started by mpirun (tests/mpi/run.sh).
//
// A collective is enqueued on its stream like a kernel (emu::host_work_on): run at once, or
// recorded into the graph being captured and run when the graph runs, as NCCL's kernels are;
// when it runs, the bytes move with MPI, over a communicator of its own (a duplicate of
// MPI_COMM_WORLD, as NCCL's traffic is apart from the program's MPI calls). Before the bytes,
// the ranks exchange each collective's number in the communicator's sequence and its count,
// and stop with a message unless all agree: every process must issue the same collectives in
// the same order, captured or not, as on cards. Not emulated: NCCL's own transport and
// timeouts, and communicators other than the whole job's (ncclCommInitRank checks that its
// ranks are MPI's).
#ifndef CONVNET_NCCL_EMU_H
#define CONVNET_NCCL_EMU_H

#include <cstddef>
#include "tests/emu/cuda_emu.h"

typedef enum { ncclSuccess = 0, ncclUnhandledCudaError = 1, ncclSystemError = 2, ncclInternalError = 3,
               ncclInvalidArgument = 4, ncclInvalidUsage = 5 } ncclResult_t;
typedef enum { ncclFloat = 7 } ncclDataType_t;   // (NCCL's value for float32)
#define NCCL_UNIQUE_ID_BYTES 128
typedef struct { char internal[NCCL_UNIQUE_ID_BYTES]; } ncclUniqueId;
typedef struct emu_nccl_comm *ncclComm_t;

ncclResult_t ncclGetUniqueId(ncclUniqueId *id);
ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank);
ncclResult_t ncclCommDestroy(ncclComm_t comm);
// recvbuff[r * count + i] = rank r's sendbuff[i], on every rank
ncclResult_t ncclAllGather(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t type, ncclComm_t comm,
                           cudaStream_t stream);
const char *ncclGetErrorString(ncclResult_t r);

#endif
