#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/checkpoint.h"
#include "tests/fixtures.h"

Dataset fixture_set(int n, unsigned seed)
{
    Dataset ds = {n, malloc((size_t)n * CIFAR_PIXELS), malloc(n)};
    Rng r;
    rng_seed(&r, seed, 3);
    for (int i = 0; i < n; i++) {
        int y = rng_int(&r, 10);
        ds.labels[i] = (uint8_t)y;
        for (int k = 0; k < CIFAR_PIXELS; k++)   /* class-dependent brightness + noise */
            ds.images[(size_t)i * CIFAR_PIXELS + k] = (uint8_t)(y * 20 + rng_int(&r, 60));
    }
    return ds;
}

void fixture_config(TrainConfig *c, const Dataset *tr, const Dataset *te, const char *out, int epochs)
{
    train_config_default(c);
    c->model.n_stages = 2;
    c->model.blocks[0] = 1; c->model.blocks[1] = 1;
    c->model.channels[0] = 4; c->model.channels[1] = 8;
    c->epochs = epochs;
    c->batch = 32;
    c->n_val = 44;
    c->val_every = 1;
    c->milestones[0] = 1; c->n_milestones = 1;
    c->train_set = tr;
    c->test_set = te;
    c->out_dir = out;
    c->quiet = 1;
}

int fixture_remove(const char *a, const char *b)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", a, b ? b : "");
    return system(cmd);
}

int fixture_same_file(const char *a, const char *b)
{
    size_t la, lb;
    char err[256];
    char *x = read_file(a, &la, err, sizeof err), *y = read_file(b, &lb, err, sizeof err);
    int same = x && y && la == lb && memcmp(x, y, la) == 0;
    free(x); free(y);
    return same;
}
