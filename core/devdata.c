#include <stdlib.h>
#include "core/devdata.h"
#include "core/util.h"

DeviceData *devdata_create(const Ops *ops, const Dataset *ds, const int *perm, int max_batch)
{
    DeviceData *d = xcalloc(1, sizeof *d);
    d->ops = ops;
    d->host = ds;
    d->max_batch = max_batch;
    d->images = ops->alloc((size_t)ds->n * CIFAR_PIXELS);
    ops->upload(d->images, ds->images, (size_t)ds->n * CIFAR_PIXELS);
    d->idx = ops->alloc(sizeof(int32_t) * max_batch);
    d->params = ops->alloc(sizeof(AugParams) * max_batch);
    if (perm) {
        d->perm = ops->alloc(sizeof(int32_t) * CIFAR_H * CIFAR_W);
        ops->upload(d->perm, perm, sizeof(int32_t) * CIFAR_H * CIFAR_W);
    }
    d->host_idx = xmalloc(sizeof(int32_t) * max_batch);
    d->host_params = xmalloc(sizeof(AugParams) * max_batch);
    return d;
}

void devdata_fill(DeviceData *d, const LoaderConfig *cfg, const int *order, int epoch, int b, int count,
                  float *out, int32_t *y)
{
    if (count > d->max_batch) die("devdata_fill: batch %d > %d", count, d->max_batch);
    loader_draw(cfg, epoch, b, count, d->host_params);
    for (int i = 0; i < count; i++) {
        d->host_idx[i] = order[(size_t)b * cfg->batch + i];
        y[i] = d->host->labels[d->host_idx[i]];
    }
    d->ops->upload(d->idx, d->host_idx, sizeof(int32_t) * count);
    d->ops->upload(d->params, d->host_params, sizeof(AugParams) * count);
    d->ops->augment_batch(out, d->images, d->idx, d->params, count, cfg->rotate_deg, d->perm);
}

void devdata_free(DeviceData *d)
{
    if (!d) return;
    d->ops->free(d->images);
    d->ops->free(d->idx);
    d->ops->free(d->params);
    if (d->perm) d->ops->free(d->perm);
    free(d->host_idx);
    free(d->host_params);
    free(d);
}
