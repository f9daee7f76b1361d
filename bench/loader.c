/* Does the augmenting loader keep up with the trainer? Batches per second of the background
 * loader (flip + RandomResizedCrop + normalize, batch 128) consumed as fast as possible, and
 * the consumer's wait time while a simulated trainer spends `--step-ms` per batch (default:
 * the CPU train step measured by bench/train_step here). Data: CIFAR-10 if found, else
 * synthetic images of the same shape.
 *   bench/loader [--batches 100] [--step-ms 460] [--data DIR] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "core/cli.h"
#include "core/loader.h"
#include "core/util.h"

static void busy_ms(double ms)   /* a stand-in trainer that occupies a core */
{
    double t0 = now_seconds();
    volatile double x = 0;
    while ((now_seconds() - t0) * 1e3 < ms) x += 1;
}

int main(int argc, char **argv)
{
    int batches = 100;
    double step_ms = 460;   /* bench/train_step on this machine, 2 threads (bench/RESULTS.md) */
    const char *data = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "--batches", 9)) batches = (int)cli_long("--batches", cli_value(argc, argv, &i), 1, 100000);
        else if (!strncmp(argv[i], "--step-ms", 9)) step_ms = cli_double("--step-ms", cli_value(argc, argv, &i), 0, 1e6);
        else if (!strncmp(argv[i], "--data", 6)) data = cli_value(argc, argv, &i);
        else die_code(2, "unknown flag '%s'", argv[i]);
    }
    Dataset ds;
    char err[512];
    const char *src = cifar_dir(data);
    if (cifar_load_train(src, &ds, err, sizeof err)) {
        src = "synthetic";
        ds.n = 50000;
        ds.images = xmalloc((size_t)ds.n * CIFAR_PIXELS);
        ds.labels = xmalloc(ds.n);
        for (size_t i = 0; i < (size_t)ds.n * CIFAR_PIXELS; i++) ds.images[i] = (uint8_t)(i * 2654435761u >> 24);
        for (int i = 0; i < ds.n; i++) ds.labels[i] = (uint8_t)(i % 10);
    }
    LoaderConfig lc = {.ds = &ds, .batch = 128, .shuffle = 1, .drop_last = 1, .flip = 1, .crop = 1, .seed = 1};
    Loader *l = loader_create(&lc);
    if (batches > loader_num_batches(l)) batches = loader_num_batches(l);
    loader_start_epoch(l, 0);
    double t0 = now_seconds();
    for (int b = 0; b < batches; b++) loader_next(l);
    double free_rate = batches / (now_seconds() - t0);
    int paced = batches < 30 ? batches : 30;
    loader_start_epoch(l, 1);
    loader_next(l);                       /* the first batch of an epoch is always waited for */
    l->wait_seconds = 0;
    for (int b = 1; b < paced; b++) { busy_ms(step_ms); loader_next(l); }
    double waited = l->wait_seconds;
    /* the data set's name, not this machine's folder (the results are committed) */
    const char *name = strrchr(src, '/');
    printf("data: %s\n", name && name[1] ? name + 1 : src);
    printf("loader alone: %.1f batches/s (%.0f img/s) over %d batches of 128\n", free_rate, free_rate * 128, batches);
    printf("trainer at %.0f ms/step needs %.2f batches/s: loader is %.0fx faster\n", step_ms, 1e3 / step_ms,
           free_rate * step_ms / 1e3);
    printf("paced run (%d steps): trainer waited %.2f ms in total for data after the first batch\n", paced - 1, waited * 1e3);
    loader_free(l);
    dataset_free(&ds);
    return 0;
}
