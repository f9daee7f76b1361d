/* The data path for devices other than the CPU: the uint8 data set is uploaded once, and
 * each batch is built ON the device by the op table's augment_batch from host-drawn
 * parameters: only the batch's indices and AugParams (a few KB) cross the bus per step.
 * Order and draws come from loader_order/loader_draw, so the batches are the CPU loader's. */
#ifndef CONVNET_DEVDATA_H
#define CONVNET_DEVDATA_H
#include "core/loader.h"
#include "core/ops.h"

typedef struct DeviceData {
    const Ops *ops;
    const Dataset *host;     /* labels are read here */
    uint8_t *images;         /* device copy of host->images */
    int32_t *idx, *perm;     /* device: batch indices; pixel permutation or NULL */
    AugParams *params;       /* device: batch draws */
    int32_t *host_idx;
    AugParams *host_params;
    int max_batch;
} DeviceData;

DeviceData *devdata_create(const Ops *ops, const Dataset *ds, const int *perm, int max_batch);
/* Batch b (count images) of an epoch into out (device, [count,3,32,32]); labels to host y. */
void devdata_fill(DeviceData *d, const LoaderConfig *cfg, const int *order, int epoch, int b, int count,
                  float *out, int32_t *y);
void devdata_free(DeviceData *d);

#endif
