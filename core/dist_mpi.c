/* core/dist.h over MPI (built with mpicc into apps/resnet-mpi; run it with mpirun -np N).
 * A sum gathers every process's vector (MPI_Allgather) and adds them in rank order on each
 * process: the same bits everywhere and on every run, whatever order messages arrive in. The
 * gradients are 83,882 floats, so each process receiving N copies is cheap at the process
 * counts this is for; a reduce-scatter in a fixed order would scale further. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/dist.h"
#include "core/ops.h"
#include "core/util.h"
#include "cpu/cpu.h"

static int rank_, size_ = 1, local_rank_, local_size_ = 1;
static double seconds_;   /* in the collectives */
static char name_[64];
static void *scratch;
static size_t scratch_bytes;

static void check(int rc, const char *what)
{
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    fprintf(stderr, "convnet: rank %d: %s failed: %s\n", rank_, what, msg);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

/* every process's v[0..n-1] (elements of `bytes` bytes), rank after rank, in a buffer kept
 * between calls */
static void *allgather(const void *v, size_t n, MPI_Datatype type, size_t bytes)
{
    if (bytes * n * size_ > scratch_bytes) {
        free(scratch);
        scratch_bytes = bytes * n * size_;
        scratch = xmalloc(scratch_bytes);
    }
    check(MPI_Allgather(v, (int)n, type, scratch, (int)n, type, MPI_COMM_WORLD), "MPI_Allgather");
    return scratch;
}

static void sync_batchnorm(double *v, int n) { dist_sum(v, (size_t)n); }

/* A bad input meets every process alike: rank 0 says so at once, and mpirun ends the job when
 * it exits, before the others, two seconds later, would say it again. An error that meets
 * another process alone still reaches stderr, those two seconds later. */
static void report_once(int code, const char *msg)
{
    (void)code; (void)msg;
    if (rank_ != 0) sleep(2);
}

void dist_init(int *argc, char ***argv)
{
    check(MPI_Init(argc, argv), "MPI_Init");
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    snprintf(name_, sizeof name_, "MPI, %d process%s", size_, size_ == 1 ? "" : "es");
    MPI_Comm local;   /* the processes that share this one's memory: its machine's */
    check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local), "MPI_Comm_split_type");
    MPI_Comm_rank(local, &local_rank_);
    MPI_Comm_size(local, &local_size_);
    MPI_Comm_free(&local);
    if (size_ > 1) {
        batchnorm_sync = sync_batchnorm;
        die_set_hook(report_once);
    }
}

void dist_finalize(void)
{
    gpu_dist_finalize();   /* NCCL's communicator first, where a GPU run made one */
    free(scratch);
    scratch = NULL;
    MPI_Finalize();
}

int dist_rank(void) { return rank_; }
int dist_size(void) { return size_; }
const char *dist_name(void) { return name_; }

double dist_seconds(void) { return seconds_; }

void dist_sum(double *v, size_t n)
{
    if (size_ == 1) return;
    double t = MPI_Wtime(), *all = allgather(v, n, MPI_DOUBLE, sizeof(double));
    for (size_t i = 0; i < n; i++) {
        double s = all[i];
        for (int r = 1; r < size_; r++) s += all[(size_t)r * n + i];
        v[i] = s;
    }
    seconds_ += MPI_Wtime() - t;
}

void dist_sum_floats(float *v, size_t n)
{
    if (size_ == 1) return;
    double t = MPI_Wtime();
    float *all = allgather(v, n, MPI_FLOAT, sizeof(float));
    for (size_t i = 0; i < n; i++) {
        float s = all[i];
        for (int r = 1; r < size_; r++) s += all[(size_t)r * n + i];
        v[i] = s;
    }
    seconds_ += MPI_Wtime() - t;
}

int dist_any(int flag)
{
    int in = flag != 0, out = in;
    if (size_ == 1) return out;
    double t = MPI_Wtime();
    check(MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce");
    seconds_ += MPI_Wtime() - t;
    return out;
}

void dist_slice(int n, int *lo, int *hi)
{
    *lo = (int)((long)n * rank_ / size_);
    *hi = (int)((long)n * (rank_ + 1) / size_);
}

void dist_local(int *local_rank, int *local_size)
{
    *local_rank = local_rank_;
    *local_size = local_size_;
}

void dist_broadcast(void *buf, size_t bytes)
{
    if (size_ > 1) check(MPI_Bcast(buf, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast");
}
