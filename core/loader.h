/* Batches of normalized float images from a uint8 dataset, prepared by a background thread
 * while the trainer works on the previous batch (double buffering).
 *
 * Order: with shuffle, epoch e visits the indices in a permutation drawn from (seed, e);
 * augmentation of batch b of epoch e draws from (seed, e, b). Nothing depends on earlier
 * epochs, so a resumed run sees exactly the batches an uninterrupted run would. */
#ifndef CONVNET_LOADER_H
#define CONVNET_LOADER_H
#include <pthread.h>
#include <stdint.h>
#include "core/augment.h"
#include "core/cifar.h"

typedef struct LoaderConfig {
    const Dataset *ds;
    const int *indices;     /* which records (NULL: 0..ds->n-1) */
    int n;                  /* number of indices (ignored when indices is NULL) */
    int batch;
    int shuffle, drop_last;
    int flip, crop;         /* RandomHorizontalFlip(0.5), RandomResizedCrop(32, 0.8-1, 0.9-1.1) */
    double rotate_deg;      /* 0: none */
    const int *perm;        /* pixel permutation applied last, or NULL */
    uint64_t seed;
} LoaderConfig;

typedef struct Batch { int n; float *x; int32_t *y; } Batch;

typedef struct Loader {
    LoaderConfig cfg;
    int n, n_batches;
    int *order;
    Batch slot[2];
    int ready[2];           /* slot holds batch number ready[s] - 1 ... see loader.c */
    int next_fill, next_take, first, epoch, stop, running;   /* next_fill: the batch the thread makes next */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    double wait_seconds;    /* time the consumer spent waiting for data (this epoch) */
} Loader;

Loader *loader_create(const LoaderConfig *cfg);
int loader_num_batches(const Loader *l);
void loader_start_epoch(Loader *l, int epoch);     /* starts the background thread */
/* The same from batch `first` of the epoch (a run resumed inside an epoch): the batches
 * handed out are the ones an uninterrupted epoch hands out from there. */
void loader_start_epoch_at(Loader *l, int epoch, int first);
/* Next batch of the epoch, or NULL at its end. Valid until the following call. */
const Batch *loader_next(Loader *l);
void loader_free(Loader *l);

/* The visiting order of an epoch (n indices) and the augmentation draws of batch b: the
 * same for the CPU loader and the GPU data path (core/devdata.c). */
void loader_order(const LoaderConfig *cfg, int epoch, int *order);
void loader_draw(const LoaderConfig *cfg, int epoch, int b, int count, AugParams *params);

/* Prepare one batch synchronously (used by the thread; also by tests and benchmarks). */
void loader_fill(const LoaderConfig *cfg, const int *order, int epoch, int b, int count, Batch *out);

#endif
