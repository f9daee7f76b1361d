/* The training step on a device, as one graph launch with no host synchronization.
 *
 * Per epoch (gpustep_epoch), the host draws the epoch's whole plan as the CPU loader would
 * (visiting order, every batch's augmentation draws: loader_order / loader_draw), uploads it
 * with the starting step, and zeroes the device's loss/accuracy sums. Per step
 * (gpustep_run) the host launches one graph: batch build from the plan at the device's step
 * counter (labels included), forward, loss, loss/accuracy accumulation (which advances the
 * counter), backward, SGD. The graph is captured on first use and again when the learning
 * rate changes (MultiStepLR: a few times per run); the first step of every GpuStep (SGD's
 * momentum initialization on a new model, and a resumed run's first step too) runs uncaptured;
 * it also grows the kernels' scratch buffers (batchnorm's and the weight gradient's partial
 * sums, the processes' gathered vectors of gpu/dist.cu) to their size, so a captured graph
 * never refers to a buffer that is later reallocated. gpustep_sums reads the sums back: the
 * one synchronization, once per epoch. Same batches, same arithmetic as the step issued op
 * by op: the results are bit-identical (tests/test_gpu.c).
 *
 * Data-parallel training over processes (core/dist.h; one GPU each): every process draws the
 * same plan and uploads only its rows of each batch (dist_slice), the step scales the loss
 * gradient by its share of the batch and sums the gradients over the processes before SGD
 * (Ops.sum_over_processes, inside the graph), and gpustep_sums adds the processes' loss and
 * accuracy sums. With one process the rows are the whole batch and nothing is summed. */
#ifndef CONVNET_GPUSTEP_H
#define CONVNET_GPUSTEP_H
#include "core/devdata.h"
#include "core/loader.h"
#include "core/model.h"

typedef struct GpuStep {
    Model *m;
    DeviceData *dd;
    int batch, max_steps, use_graph;
    int lo, rows;             /* this process's rows of each batch: [lo, lo + rows) */
    uint8_t *labels;          /* device: the data set's labels */
    int32_t *order, *step;    /* device: the epoch's visiting order; the step counter */
    AugParams *params;        /* device: every batch's draws */
    double *sums;             /* device: loss sum, correct count */
    int *host_order;          /* the epoch's whole visiting order (loader_order) */
    AugParams *host_params;   /* every batch's draws */
    int32_t *host_rows;       /* this process's rows of host_order, batch after batch */
    AugParams *host_row_params;
    void *graph;
    float graph_lr, graph_momentum, graph_wd;   /* what the graph was captured with */
    long launches;            /* graph launches so far */
    int warm;                 /* a step has run uncaptured (scratch buffers sized) */
} GpuStep;

/* use_graph = 0 issues the same work op by op (the reference for tests) */
GpuStep *gpustep_create(Model *m, DeviceData *dd, const LoaderConfig *lc, int use_graph);
/* the plan of epoch `epoch`, starting at step `first` with the sums given (a resumed run) */
void gpustep_epoch(GpuStep *g, const LoaderConfig *lc, int epoch, int first, double loss_sum, long correct);
void gpustep_run(GpuStep *g, float lr, float momentum, float weight_decay);
void gpustep_sums(GpuStep *g, double *loss_sum, long *correct);
void gpustep_free(GpuStep *g);

#endif
