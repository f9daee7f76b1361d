/* End-to-end training throughput: forward + backward + SGD of the practical's ResNet at
 * batch 128 on random data. Last line: "train_step img/s: <number>".
 *   bench/train_step [--device cpu|gpu] [--kernels fast|reference] [--steps 20] [--threads N] [--batch-size 128]
 *                    [--eval] (inference only, eval-mode BN) [--gpu-math 3xtf32|fp32]
 *                    [--no-fused-backward] (GPU: each convolution's backward as two launches)
 *                    [--profile] (GPU: the steps' launches issued eagerly, not as a graph, and timed
 *                    one by one with events: a row per launch site, gpu/profile.cu)
 *                    [--warmup 2] (untimed steps first; 0 with --profile under ncu: every launch
 *                    of the one step is then one the profiler sees) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/cli.h"
#include "core/gpustep.h"
#include "core/model.h"
#include "core/util.h"
#include "cpu/fast/fast.h"

#include "bench/bench.h"

int main(int argc, char **argv)
{
    const char *device = "cpu", *kernels = NULL;
    int steps = 20, threads = 0, batch = 128, eval = 0, warmup = 2, profile = 0, data_parallel = 0;
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "--device", 8)) device = cli_value(argc, argv, &i);
        else if (cli_is_flag(argv[i], "--kernels")) kernels = cli_kernels(cli_value(argc, argv, &i));
        else if (!strncmp(argv[i], "--steps", 7)) steps = (int)cli_long("--steps", cli_value(argc, argv, &i), 1, 100000);
        else if (!strncmp(argv[i], "--threads", 9)) threads = (int)cli_long("--threads", cli_value(argc, argv, &i), 1, 1024);
        else if (!strncmp(argv[i], "--batch-size", 12)) batch = (int)cli_long("--batch-size", cli_value(argc, argv, &i), 1, 4096);
        else if (!strcmp(argv[i], "--eval")) eval = 1;
        else if (cli_is_flag(argv[i], "--gpu-math")) cli_gpu_math(cli_value(argc, argv, &i));
        else if (!strcmp(argv[i], "--no-fused-backward")) gpu_set_conv_fusion(-1);
        else if (!strcmp(argv[i], "--profile")) profile = 1;
        else if (!strcmp(argv[i], "--data-parallel-table")) data_parallel = 1;
        else if (cli_is_flag(argv[i], "--warmup")) warmup = (int)cli_long("--warmup", cli_value(argc, argv, &i), 0, 1000);
        else die_code(2, "unknown flag '%s'", argv[i]);
    }
    cli_apply_threads(threads);
    const Ops *ops = ops_for_device(device, kernels);
    if (data_parallel) {   /* the table more than one process runs, timed on one (GPU only) */
        const char *why = "";
        if (ops->host || !(ops = ops_gpu_data_parallel(&why)))
            die_code(2, "--data-parallel-table: the GPU's data-parallel table (%s)", ops && ops->host ? "use --device gpu" : why);
    }
    if (profile && (ops->host || eval)) die_code(2, "--profile times GPU training steps: use it with --device gpu");
    if (!ops->fused)
        printf("kernels: %s table (%s, the plain walk)\n", ops->name,
               data_parallel ? "the fast convolutions with the readable batchnorm" : "the readable operators");
    else if (ops->host)
        printf("kernels: %s table, ISA %s (3x3 convs, rows of 32/16/8 pixels into 16/24/32 channels: %s/%s/%s; "
               "Winograd: %s)\n", ops->name, cpu_isa_name(cpu_isa_best()), conv2d_direct_kernel_name(32, 16, 9),
               conv2d_direct_kernel_name(16, 24, 9), conv2d_direct_kernel_name(8, 32, 9), winograd_fast_choice());
    ModelConfig cfg;
    model_config_default(&cfg);
    Model *m = model_create(ops, &cfg, batch);
    Rng rng;
    rng_seed(&rng, 1, 1);
    model_init(m, &rng);
    float *x = xmalloc_floats((size_t)batch * 3 * 32 * 32);
    int32_t *y = xmalloc(sizeof(int32_t) * batch);
    for (size_t i = 0; i < (size_t)batch * 3 * 32 * 32; i++) x[i] = (float)rng_normal(&rng);
    for (int i = 0; i < batch; i++) y[i] = rng_int(&rng, 10);
    double *t = xmalloc(sizeof(double) * steps);
    if (!ops->host && !eval && ops->capture_begin) {
        /* a device: the training path of core/train.c, one graph launch per step, batches
         * built on the device from random images, one epoch of (warmup + steps) batches;
         * timed over all steps with one sync (steps are queued, so a per-step time would
         * measure the launch, not the work) */
        int n_img = (warmup + steps) * batch;
        Dataset ds = {n_img, xmalloc((size_t)n_img * CIFAR_PIXELS), xmalloc((size_t)n_img)};
        for (size_t i = 0; i < (size_t)n_img * CIFAR_PIXELS; i++) ds.images[i] = (uint8_t)rng_int(&rng, 256);
        for (int i = 0; i < n_img; i++) ds.labels[i] = (uint8_t)rng_int(&rng, 10);
        DeviceData *dd = devdata_create(ops, &ds, NULL, batch);
        LoaderConfig lc = {.ds = &ds, .n = n_img, .batch = batch, .shuffle = 1, .drop_last = 1, .flip = 1, .crop = 1, .seed = 1};
        GpuStep *g = gpustep_create(m, dd, &lc, !profile);
        gpustep_epoch(g, &lc, 0, 0, 0, 0);
        double t0 = 0;
        for (int s = -warmup; s < steps; s++) {
            if (s == 0) {
                ops->sync();
                if (profile) gpu_profile_begin();
                t0 = now_seconds();
            }
            gpustep_run(g, 0.01f, 0.9f, 1e-4f);
        }
        ops->sync();
        double per = (now_seconds() - t0) / steps;
        if (profile) gpu_profile_end(steps, stdout);
        printf("%s train batch %d: %.3f ms/step over %d steps (%s)\n", device, batch, per * 1e3, steps,
               profile ? "eager launches, each timed" : "one graph launch each");
        printf("train_step img/s: %.1f\n", batch / per);
        gpustep_free(g);
        devdata_free(dd);
        free(ds.images); free(ds.labels); free(x); free(y); free(t);
        model_free(m);
        return 0;
    }
    for (int s = -warmup; s < steps; s++) {
        double t0 = now_seconds();
        model_forward(m, x, batch, !eval);
        model_loss(m, y, batch, NULL);
        if (!eval) {
            model_backward(m, batch);
            model_sgd_step(m, 0.01f, 0.9f, 1e-4f);
        }
        ops->sync();
        if (s >= 0) t[s] = now_seconds() - t0;
    }
    double med = median(t, steps);
    printf("%s %s batch %d: median %.1f ms/step over %d steps\n", device, eval ? "eval" : "train", batch, med * 1e3, steps);
    printf("%s img/s: %.1f\n", eval ? "eval_step" : "train_step", batch / med);
    free(x); free(y); free(t);
    model_free(m);
    return 0;
}
