/* A few data-parallel training steps (core/dist.h over MPI), for tests/mpi/run.sh:
 *   mpirun -np N build/mpi_steps train STEPS OUT [reference|local|gpu|gpu-fast]
 *       the practical's ResNet (the fast CPU table, or the readable one; local: the fast one
 *       with each process's own batchnorm statistics), batch 128 of random
 *       images and labels, lr 0.05; each process takes its slice of every batch, batchnorm's
 *       statistics are synchronized, the gradients summed; rank 0 writes the weights and
 *       batchnorm's running statistics to OUT (raw floats)
 *       gpu: the readable GPU table on the CUDA emulator, one emulated device a process, the
 *       sums through NCCL emulated over MPI (gpu/dist.cu, tests/emu/nccl), the step as
 *       core/gpustep.c runs it (batches built on the device, the step captured as a graph
 *       from the second on); a smaller batch (GPU_BATCH), as the emulator is slow. gpu-fast:
 *       the same with the data-parallel GPU table (the fast convolutions, the readable
 *       batchnorm: ops_gpu_data_parallel)
 *   mpirun -np N build/mpi_steps run-gpu DIR EPOCHS [resume]
 *       core/train.c's train_run as apps/resnet-mpi --device gpu runs it (one emulated device a
 *       process, the data-parallel GPU table), on a small net and 47 random images (40 to
 *       train, batch 7: 3 + 4 or 2 + 2 + 3 rows), lr 0.05, to DIR; then rank 0 writes the
 *       weights of DIR/last.state to DIR/weights (raw floats)
 *   mpirun -np N build/mpi_steps eval
 *       core/train.c's evaluate (each process classifies its share, the counts added) of a
 *       freshly initialized small net on 101 random images, the whole set and 37 of them by
 *       index: rank 0 prints both accuracies (the same for any N)
 *   build/mpi_steps compare A B TOL                   largest |a - b| / max |b|; exit 1 above TOL
 *   build/mpi_steps differ A B MIN                    the same, exit 1 below MIN */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/cifar.h"
#include "core/dist.h"
#include "core/gpustep.h"
#include "core/checkpoint.h"
#include "core/loader.h"
#include "core/train.h"
#include "core/model.h"
#include "core/ops.h"
#include "core/util.h"
#include "cpu/cpu.h"

static float *read_floats(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot read %s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f) / sizeof(float);
    rewind(f);
    float *v = xmalloc_floats(*n);
    if (fread(v, sizeof(float), *n, f) != *n) die("short read: %s", path);
    fclose(f);
    return v;
}

static int compare(const char *a, const char *b, double tol, int at_least)
{
    size_t na, nb;
    float *x = read_floats(a, &na), *y = read_floats(b, &nb);
    if (na != nb || na == 0) die("%s and %s: %zu and %zu floats", a, b, na, nb);
    double dmax = 0, ymax = 0;
    for (size_t i = 0; i < na; i++) {
        if (!isfinite(x[i])) die("%s: not finite at %zu", a, i);
        dmax = fmax(dmax, fabs((double)x[i] - y[i]));
        ymax = fmax(ymax, fabs((double)y[i]));
    }
    double e = dmax / ymax;
    printf("%s vs %s: %zu floats, largest difference %.3g of the largest value (%s %.0e)%s\n", a, b, na, e,
           at_least ? "at least" : "tolerance", tol, e == 0 ? ", identical" : "");
    free(x); free(y);
    return (at_least ? e >= tol : e <= tol) ? 0 : 1;
}

void emu_set_graph_shuffle(unsigned long long seed);

/* n random images and labels, from seed */
static Dataset random_images(int n, uint64_t seed)
{
    Rng r;
    rng_seed(&r, seed, 1);
    Dataset ds = {n, xmalloc((size_t)n * CIFAR_PIXELS), xmalloc((size_t)n)};
    for (size_t i = 0; i < (size_t)n * CIFAR_PIXELS; i++) ds.images[i] = (uint8_t)rng_int(&r, 256);
    for (int i = 0; i < n; i++) ds.labels[i] = (uint8_t)rng_int(&r, 10);
    return ds;
}

/* the practical's ResNet on ops, initialized from seed 1 (the same weights on every process) */
static Model *practical_model(const Ops *ops, int batch)
{
    ModelConfig cfg;
    model_config_default(&cfg);
    Model *m = model_create(ops, &cfg, batch);
    Rng r;
    rng_seed(&r, 1, 1);
    model_init(m, &r);
    return m;
}   /* tests/emu/cuda_emu.h (a C++ header) */

/* 1 if every process holds the same n floats: each puts a hash of its bits in its own slot
 * of a vector the processes add (rank order, exact: hashes below 2^32) */
static int same_everywhere(const float *v, size_t n)
{
    int size = dist_size();
    double *h = calloc((size_t)size, sizeof(double));
    uint32_t x = 2166136261u;   /* FNV-1a over the bytes */
    const unsigned char *b = (const unsigned char *)v;
    for (size_t i = 0; i < n * sizeof(float); i++) x = (x ^ b[i]) * 16777619u;
    h[dist_rank()] = x;
    dist_sum(h, (size_t)size);
    int same = 1;
    for (int r = 1; r < size; r++) same &= h[r] == h[0];
    free(h);
    return same;
}

/* 13 rows: 6 + 7 on two processes, 4 + 4 + 5 on three (unequal shares of the batch) */
#define GPU_BATCH 13

/* STEPS steps of the GPU step (core/gpustep.c) on random data; the weights and buffers to
 * OUT on rank 0 */
static void train_gpu(int steps, const char *out, int fast)
{
    char err[512];
    int local_rank, local_size;
    dist_local(&local_rank, &local_size);
    if (gpu_dist_init(dist_rank(), dist_size(), local_rank, local_size, dist_broadcast, err, sizeof err)) die("%s", err);
    const char *why = "";
    const Ops *ops = fast ? ops_gpu_data_parallel(&why) : ops_gpu_ref(&why);
    if (!ops) die("no GPU table: %s", why);
    int batch = GPU_BATCH, n_img = steps * batch;
    Dataset ds = random_images(n_img, 7);
    Model *m = practical_model(ops, batch);
    LoaderConfig lc = {.ds = &ds, .n = n_img, .batch = batch, .shuffle = 1, .drop_last = 1, .flip = 1, .crop = 1, .seed = 1};
    DeviceData *dd = devdata_create(ops, &ds, NULL, batch);
    GpuStep *g = gpustep_create(m, dd, &lc, 1);
    /* a graph's nodes in a random order that keeps their dependencies (the same seed on every
     * rank, so their collectives stay in one order): a missing join shows as wrong weights */
    emu_set_graph_shuffle(11);
    gpustep_epoch(g, &lc, 0, 0, 0, 0);
    for (int s = 0; s < steps; s++) gpustep_run(g, 0.05f, 0.9f, 5e-4f);
    double loss_sum;
    long correct;
    gpustep_sums(g, &loss_sum, &correct);   /* every process's, added */
    float *w = xmalloc_floats(m->n_params + m->n_buffers);
    ops->download(w, m->params, sizeof(float) * m->n_params);
    ops->download(w + m->n_params, m->buffers, sizeof(float) * m->n_buffers);
    if (!same_everywhere(w, m->n_params + m->n_buffers)) die("the processes' weights differ (%s)", dist_name());
    if (dist_rank() == 0) {
        FILE *f = fopen(out, "wb");
        if (!f) die("cannot write %s", out);
        fwrite(w, sizeof(float), m->n_params + m->n_buffers, f);
        fclose(f);
        printf("%s: %d steps of %d images (%ld graph launches), %s, %s table: mean loss %.6f, %ld correct; the same "
               "weights on every process\n", out, steps, batch, g->launches, dist_name(), ops->name,
               loss_sum / ((double)steps * batch), correct);
    }
    free(w);
    gpustep_free(g);
    devdata_free(dd);
    model_free(m);
    dataset_free(&ds);
}

/* train_run on the emulated GPUs, then the state's weights to DIR/weights (rank 0) */
static void run_gpu(const char *dir, int epochs, int resume)
{
    Dataset tr = random_images(47, 3), te = {8, tr.images, tr.labels};   /* the test set: the first 8 */
    TrainConfig c;
    TrainResult res;
    train_config_default(&c);
    c.device = "gpu";
    c.model.n_stages = 2;
    c.model.blocks[0] = 1; c.model.blocks[1] = 1;
    c.model.channels[0] = 4; c.model.channels[1] = 8;
    c.epochs = epochs; c.batch = 7; c.n_val = 7; c.val_every = 1; c.lr = 0.05;
    c.train_set = &tr; c.test_set = &te;
    c.out_dir = dir;
    c.quiet = 1;
    c.retrain = !resume;
    c.resume = resume;
    train_run(&c, &res);
    if (dist_rank() == 0) {
        char path[4200], err[512];
        Model *m = model_create(&ops_cpu_ref, &c.model, 1);
        TrainState st;
        snprintf(path, sizeof path, "%s/last.state", dir);
        if (train_state_load(m, &st, path, err, sizeof err)) die("%s", err);
        snprintf(path, sizeof path, "%s/weights", dir);
        FILE *f = fopen(path, "wb");
        if (!f) die("cannot write %s", path);
        fwrite(m->params, sizeof(float), m->n_params, f);
        fwrite(m->buffers, sizeof(float), m->n_buffers, f);
        fclose(f);
        printf("%s: %d epochs (%d run here, %s), val %.4f, test %.4f\n", dir, st.epoch, res.epochs_run, dist_name(),
               res.val, res.test);
        model_free(m);
    }
    dataset_free(&tr);
}

static void eval_shares(void)
{
    int n = 101, idx[37];
    Dataset ds = random_images(n, 5);
    for (int i = 0; i < 37; i++) idx[i] = (i * 13 + 5) % n;
    ModelConfig cfg;
    model_config_default(&cfg);
    cfg.n_stages = 2;
    cfg.blocks[0] = 1; cfg.blocks[1] = 1;
    cfg.channels[0] = 8; cfg.channels[1] = 8;
    Model *m = model_create(&ops_cpu, &cfg, 16);
    Rng r;
    rng_seed(&r, 2, 1);
    model_init(m, &r);
    double all = evaluate(m, &ds, NULL, n, NULL, 0, 16), some = evaluate(m, &ds, idx, 37, NULL, 0, 16);
    if (dist_rank() == 0) printf("accuracy: all %d images %.6f, 37 of them %.6f\n", n, all, some);
    model_free(m);
    dataset_free(&ds);
}

int main(int argc, char **argv)
{
    if (argc == 5 && !strcmp(argv[1], "compare")) return compare(argv[2], argv[3], atof(argv[4]), 0);
    if (argc == 5 && !strcmp(argv[1], "differ")) return compare(argv[2], argv[3], atof(argv[4]), 1);
    dist_init(&argc, &argv);
    if (argc == 2 && !strcmp(argv[1], "eval")) {
        eval_shares();
        dist_finalize();
        return 0;
    }
    if ((argc == 4 || argc == 5) && !strcmp(argv[1], "run-gpu")) {
        run_gpu(argv[2], atoi(argv[3]), argc == 5 && !strcmp(argv[4], "resume"));
        dist_finalize();
        return 0;
    }
    if (argc < 4 || argc > 5 || strcmp(argv[1], "train"))
        die("usage: mpi_steps train STEPS OUT [reference|local|gpu|gpu-fast] | compare A B TOL | differ A B MIN");
    if (argc == 5 && !strncmp(argv[4], "gpu", 3)) {
        train_gpu(atoi(argv[2]), argv[3], !strcmp(argv[4], "gpu-fast"));
        dist_finalize();
        return 0;
    }
    const Ops *ops = argc == 5 && !strcmp(argv[4], "reference") ? &ops_cpu_ref : &ops_cpu;
    if (argc == 5 && !strcmp(argv[4], "local")) batchnorm_sync = NULL;   /* --batchnorm local */
    int steps = atoi(argv[2]), batch = 128, n_img = steps * batch;
    Dataset ds = random_images(n_img, 7);
    Model *m = practical_model(ops, batch);
    LoaderConfig lc = {.ds = &ds, .n = n_img, .batch = batch, .shuffle = 1, .drop_last = 1, .flip = 1, .crop = 1, .seed = 1};
    Loader *l = loader_create(&lc);
    loader_start_epoch(l, 0);
    double t0 = 0, c0 = 0;
    for (int s = 0; s < steps; s++) {
        if (s == 1) { t0 = now_seconds(); c0 = dist_seconds(); }   /* step 0 untimed: first touches */
        const Batch *b = loader_next(l);   /* every process draws the whole batch ... */
        int lo, hi;
        dist_slice(b->n, &lo, &hi);        /* ... and trains on its rows */
        m->batch_share = (double)(hi - lo) / b->n;
        model_forward(m, b->x + (size_t)lo * CIFAR_PIXELS, hi - lo, 1);
        model_loss(m, b->y + lo, hi - lo, NULL);
        model_backward(m, hi - lo);
        dist_sum_floats(m->grads, m->n_params);
        model_sgd_step(m, 0.05f, 0.9f, 5e-4f);
    }
    if (dist_rank() == 0) {
        FILE *f = fopen(argv[3], "wb");
        if (!f) die("cannot write %s", argv[3]);
        fwrite(m->params, sizeof(float), m->n_params, f);
        fwrite(m->buffers, sizeof(float), m->n_buffers, f);
        fclose(f);
        printf("%s: %d steps, %s, %s table\n", argv[3], steps, dist_name(), ops->name);
        if (steps > 1) {
            double ms = (now_seconds() - t0) * 1e3 / (steps - 1), comm = (dist_seconds() - c0) * 1e3 / (steps - 1);
            printf("step: %.2f ms, of which %.2f ms in the sums over processes (rank 0; %d threads a process)\n", ms,
                   comm, omp_get_max_threads());
        }
    }
    loader_free(l);
    model_free(m);
    dataset_free(&ds);
    dist_finalize();
    return 0;
}
