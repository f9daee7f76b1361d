// The emulated NCCL (nccl_emu.h): collectives as stream work that moves bytes with MPI.
#include "tests/emu/nccl/nccl_emu.h"

#define OMPI_SKIP_MPICXX 1    // MPI's C interface only (its C++ one does not build warning-free)
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

struct emu_nccl_comm { int rank, nranks; };

static const char kMagic[] = "convnet emulated NCCL id";

ncclResult_t ncclGetUniqueId(ncclUniqueId *id)
{
    memset(id, 0, sizeof *id);
    snprintf(id->internal, sizeof id->internal, "%s %ld", kMagic, (long)getpid());
    return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank)
{
    int init = 0, mpi_rank = -1, mpi_size = 0;
    MPI_Initialized(&init);
    if (!init) return ncclInvalidUsage;   // the emulator's transport is MPI's
    MPI_Comm_rank(MPI_COMM_WORLD, &mpi_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &mpi_size);
    // an id that did not come from rank 0's ncclGetUniqueId, or ranks that are not MPI's
    if (strncmp(id.internal, kMagic, sizeof kMagic - 1) || nranks != mpi_size || rank != mpi_rank) return ncclInvalidArgument;
    // every rank must hold rank 0's id (a broadcast that was skipped shows here)
    ncclUniqueId root = id;
    MPI_Bcast(&root, (int)sizeof root, MPI_BYTE, 0, MPI_COMM_WORLD);
    if (memcmp(&root, &id, sizeof id)) return ncclInvalidArgument;
    *comm = new emu_nccl_comm{rank, nranks};
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm)
{
    delete comm;
    return ncclSuccess;
}

ncclResult_t ncclAllGather(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t type, ncclComm_t comm,
                           cudaStream_t stream)
{
    if (!comm || type != ncclFloat || count > (size_t)0x7fffffff) return ncclInvalidArgument;
    int rc = emu::host_work_on(stream, [sendbuff, recvbuff, count] {
        if (MPI_Allgather(sendbuff, (int)count, MPI_FLOAT, recvbuff, (int)count, MPI_FLOAT, MPI_COMM_WORLD) != MPI_SUCCESS) {
            fprintf(stderr, "emu: ncclAllGather: MPI_Allgather failed\n");
            abort();
        }
    });
    return rc == cudaSuccess ? ncclSuccess : ncclUnhandledCudaError;
}

const char *ncclGetErrorString(ncclResult_t r)
{
    switch (r) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    default: return "NCCL error";
    }
}
