/* Data-parallel training over processes (MPI: CPU processes on one or many machines; on GPUs
 * one per process, their sums through NCCL: gpu/dist.cu, Ops.sum_over_processes).
 * Every process holds the whole model, draws the same epoch plan, and takes its slice of each
 * batch (dist_slice); batchnorm's statistics are the whole batch's (cpu/cpu.h's
 * batchnorm_sync; on GPUs, gpu/batchnorm.cu) and the gradients are summed over the processes
 * before SGD, so N processes train the model one process trains, up to the order of
 * floating-point sums.
 *
 * Two builds of this interface: core/dist_none.c (one process; in the library, what every
 * program links) and core/dist_mpi.c (MPI; linked into apps/resnet-mpi, run by mpirun).
 * Sums over processes are added in rank order, so the same process count gives the same bits
 * on every process and every run. */
#ifndef CONVNET_DIST_H
#define CONVNET_DIST_H

#include <stddef.h>

void dist_init(int *argc, char ***argv);   /* first thing in main; sets batchnorm_sync */
void dist_finalize(void);
int dist_rank(void);                       /* 0 .. dist_size() - 1; 0 with one process */
int dist_size(void);
const char *dist_name(void);               /* "" or "MPI, 3 processes" */
/* v[0..n-1] := its sum over all processes, added in rank order */
void dist_sum(double *v, size_t n);
void dist_sum_floats(float *v, size_t n);
/* 1 if any process passes nonzero (a collective: every process must call it, and none goes
 * on before all have) */
int dist_any(int flag);
/* seconds this process has spent in dist_sum, dist_sum_floats and dist_any (waiting for the
 * others included): the communication part of a step (bench/mpi_scaling.sh) */
double dist_seconds(void);
/* this process's rows of a batch of n: [*lo, *hi), contiguous, in rank order */
void dist_slice(int n, int *lo, int *hi);
/* this process's place among the processes of its machine (a GPU each: gpu_dist_init) */
void dist_local(int *local_rank, int *local_size);
/* buf[0..bytes) := rank 0's bytes, on every process (a collective) */
void dist_broadcast(void *buf, size_t bytes);

#endif
