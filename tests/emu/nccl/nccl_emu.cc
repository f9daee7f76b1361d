// The emulated NCCL (nccl_emu.h): collectives as stream work that moves bytes with MPI.
#include "tests/emu/nccl/nccl_emu.h"

#define OMPI_SKIP_MPICXX 1    // MPI's C interface only (its C++ one does not build warning-free)
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

struct emu_nccl_comm {
    int rank, nranks;
    MPI_Comm mpi;            // the communicator's own traffic
    unsigned long long seq;  // collectives issued so far (in stream order: when they run)
};

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
    MPI_Comm own;
    if (MPI_Comm_dup(MPI_COMM_WORLD, &own) != MPI_SUCCESS) return ncclSystemError;
    *comm = new emu_nccl_comm{rank, nranks, own, 0};
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm)
{
    if (!comm) return ncclInvalidArgument;
    MPI_Comm_free(&comm->mpi);
    delete comm;
    return ncclSuccess;
}

ncclResult_t ncclAllGather(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t type, ncclComm_t comm,
                           cudaStream_t stream)
{
    if (!comm || type != ncclFloat || count > (size_t)0x7fffffff) return ncclInvalidArgument;
    int rc = emu::host_work_on(stream, [sendbuff, recvbuff, count, comm] {
        // every rank at the same collective with the same count, or a message (not a hang)
        unsigned long long mine[2] = {comm->seq++, (unsigned long long)count}, *all = new unsigned long long[2 * comm->nranks];
        MPI_Allgather(mine, 2, MPI_UNSIGNED_LONG_LONG, all, 2, MPI_UNSIGNED_LONG_LONG, comm->mpi);
        for (int r = 0; r < comm->nranks; r++)
            if (all[2 * r] != mine[0] || all[2 * r + 1] != mine[1]) {
                fprintf(stderr, "emu: ncclAllGather: rank %d is at collective %llu of %llu floats, rank %d at %llu of %llu\n",
                        comm->rank, mine[0], mine[1], r, all[2 * r], all[2 * r + 1]);
                abort();
            }
        delete[] all;
        // NCCL allows the send buffer inside the receive buffer only at this rank's slot
        const char *s = (const char *)sendbuff, *r = (const char *)recvbuff;
        size_t bytes = count * sizeof(float);
        bool in_place = s == r + bytes * comm->rank;
        if (!in_place && s < r + bytes * comm->nranks && r < s + bytes) {
            fprintf(stderr, "emu: ncclAllGather: the send buffer overlaps the receive buffer other than at this rank's slot\n");
            abort();
        }
        if (MPI_Allgather(in_place ? MPI_IN_PLACE : sendbuff, (int)count, MPI_FLOAT, recvbuff, (int)count, MPI_FLOAT,
                          comm->mpi) != MPI_SUCCESS) {
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
