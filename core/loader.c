#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/augment.h"
#include "core/loader.h"
#include "core/util.h"

Loader *loader_create(const LoaderConfig *cfg)
{
    Loader *l = xcalloc(1, sizeof *l);
    l->cfg = *cfg;
    l->n = cfg->indices ? cfg->n : cfg->ds->n;
    l->n_batches = cfg->drop_last ? l->n / cfg->batch : (l->n + cfg->batch - 1) / cfg->batch;
    l->order = xmalloc(sizeof(int) * (l->n > 0 ? l->n : 1));
    for (int s = 0; s < 2; s++) {
        l->slot[s].x = xmalloc_floats((size_t)cfg->batch * CIFAR_PIXELS);
        l->slot[s].y = xmalloc(sizeof(int32_t) * cfg->batch);
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    return l;
}

int loader_num_batches(const Loader *l) { return l->n_batches; }

void loader_order(const LoaderConfig *cfg, int epoch, int *order)
{
    int n = cfg->indices ? cfg->n : cfg->ds->n;
    for (int i = 0; i < n; i++) order[i] = cfg->indices ? cfg->indices[i] : i;
    if (cfg->shuffle) {
        Rng r;
        rng_seed(&r, cfg->seed, 0x2000 + (uint64_t)epoch);
        rng_shuffle(&r, order, n);
    }
}

void loader_draw(const LoaderConfig *cfg, int epoch, int b, int count, AugParams *params)
{
    Rng rng;
    rng_seed(&rng, cfg->seed ^ ((uint64_t)epoch << 32), 0x1000 + (uint64_t)b);
    for (int i = 0; i < count; i++) augment_draw(&rng, cfg->flip, cfg->crop, &params[i]);   /* flip, then crop */
}

void loader_fill(const LoaderConfig *cfg, const int *order, int epoch, int b, int count, Batch *out)
{
    AugParams p[count > 0 ? count : 1];
    loader_draw(cfg, epoch, b, count, p);
    for (int i = 0; i < count; i++) {
        int idx = order[(size_t)b * cfg->batch + i];
        augment_apply(out->x + (size_t)i * CIFAR_PIXELS, cfg->ds->images + (size_t)idx * CIFAR_PIXELS, &p[i],
                      cfg->rotate_deg, cfg->perm);
        out->y[i] = cfg->ds->labels[idx];
    }
    out->n = count;
}

static int batch_count(const Loader *l, int b)
{
    int left = l->n - b * l->cfg.batch;
    return left < l->cfg.batch ? left : l->cfg.batch;
}

/* Worker: fills batch b into slot b % 2 once the consumer has released that slot.
 * ready[s] = b + 1 means slot s holds batch b; 0 means free. */
static void *worker(void *arg)
{
    Loader *l = arg;
    for (int b = l->first; b < l->n_batches; b++) {
        int s = b % 2;
        pthread_mutex_lock(&l->mu);
        while (l->ready[s] != 0 && !l->stop) pthread_cond_wait(&l->cv, &l->mu);
        int stop = l->stop;
        pthread_mutex_unlock(&l->mu);
        if (stop) break;
        loader_fill(&l->cfg, l->order, l->epoch, b, batch_count(l, b), &l->slot[s]);
        pthread_mutex_lock(&l->mu);
        l->ready[s] = b + 1;
        l->next_fill = b + 1;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
    }
    return NULL;
}

static void stop_thread(Loader *l)
{
    if (!l->running) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    l->running = 0;
}

void loader_start_epoch(Loader *l, int epoch) { loader_start_epoch_at(l, epoch, 0); }

void loader_start_epoch_at(Loader *l, int epoch, int first)
{
    stop_thread(l);
    loader_order(&l->cfg, epoch, l->order);
    l->epoch = epoch;
    l->first = first < 0 ? 0 : first > l->n_batches ? l->n_batches : first;
    l->next_take = l->next_fill = l->first;
    l->ready[0] = l->ready[1] = 0;
    l->stop = 0;
    l->wait_seconds = 0;
    if (pthread_create(&l->thread, NULL, worker, l) != 0) die("cannot start the data loader thread");
    l->running = 1;
}

const Batch *loader_next(Loader *l)
{
    pthread_mutex_lock(&l->mu);
    if (l->next_take > l->first) {          /* release the slot handed out last time */
        l->ready[(l->next_take - 1) % 2] = 0;
        pthread_cond_broadcast(&l->cv);
    }
    if (l->next_take >= l->n_batches) { pthread_mutex_unlock(&l->mu); return NULL; }
    int b = l->next_take, s = b % 2;
    double t0 = now_seconds();
    while (l->ready[s] != b + 1) {
        /* A wait that cannot end: the slot holds another batch (only this side frees a slot),
         * the thread has made its last batch, or it started after batch b. Then the batch
         * asked for and those made disagree: say so at once instead of waiting forever. */
        if (l->ready[s] != 0 || l->next_fill >= l->n_batches || l->first > b) {
            int first = l->first, made = l->next_fill, epoch = l->epoch, last = l->n_batches - 1;
            pthread_mutex_unlock(&l->mu);
            char so_far[64] = "none yet";
            if (made > first) snprintf(so_far, sizeof so_far, "%d to %d", first, made - 1);
            die("data loader: epoch %d asked for batch %d, but its thread makes batches %d to %d (made so far: %s): "
                "the consumer's position and the loader's disagree", epoch, b, first, last, so_far);
        }
        pthread_cond_wait(&l->cv, &l->mu);
    }
    l->wait_seconds += now_seconds() - t0;
    l->next_take++;
    pthread_mutex_unlock(&l->mu);
    return &l->slot[s];
}

void loader_free(Loader *l)
{
    if (!l) return;
    stop_thread(l);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    for (int s = 0; s < 2; s++) { free(l->slot[s].x); free(l->slot[s].y); }
    free(l->order);
    free(l);
}
