/* The model the checkpoint targets use and the seed corpus of every target (fuzz.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "core/augment.h"
#include "core/checkpoint.h"
#include "core/cifar.h"
#include "core/util.h"
#include "tests/fuzz/fuzz.h"

Model *fuzz_model(void)
{
    static Model *m;
    if (!m) {
        ModelConfig mc;
        model_config_default(&mc);
        mc.n_stages = 2;
        mc.blocks[0] = mc.blocks[1] = 1;
        mc.channels[0] = 4; mc.channels[1] = 8;
        m = model_create(&ops_cpu, &mc, 1);
        Rng r;
        rng_seed(&r, 11, 1);
        model_init(m, &r);
    }
    return m;
}

/* root/target/name, its directory created */
static const char *seed_path(const char *root, const char *target, const char *name)
{
    static char path[4400];
    snprintf(path, sizeof path, "%s/%s", root, target);
    mkdir_p(path);
    snprintf(path, sizeof path, "%s/%s/%s", root, target, name);
    return path;
}

static int put(const char *root, const char *target, const char *name, const void *data, size_t len)
{
    char err[1024];
    if (atomic_write(seed_path(root, target, name), data, len, err, sizeof err)) die("%s", err);
    return 1;
}

static int put_args(const char *root, const char *name, int app, const char *const *args)
{
    char buf[1024];
    size_t n = 0;
    buf[n++] = (char)app;
    for (int i = 0; args[i]; i++) {
        size_t l = strlen(args[i]) + 1;
        memcpy(buf + n, args[i], l);
        n += l;
    }
    return put(root, "cli", name, buf, n - 1);   /* no NUL after the last argument */
}

int fuzz_write_seeds(const char *root, const char *cifar_dir)
{
    int count = 0;
    char err[1024];
    Model *m = fuzz_model();

    /* written by the functions the apps save with */
    if (checkpoint_save(m, seed_path(root, "safetensors", "checkpoint.safetensors"), err, sizeof err)) die("%s", err);
    TrainState st = {.epoch = 3, .steps = 120, .best_val = 0.5, .best_epoch = 2, .seed = 42};
    if (train_state_save(m, &st, seed_path(root, "state", "epoch_boundary.state"), err, sizeof err)) die("%s", err);
    st.step = 17; st.correct = 300; st.seen = 544; st.loss_sum = 700.5; st.seconds = 2.5;
    if (train_state_save(m, &st, seed_path(root, "state", "inside_epoch.state"), err, sizeof err)) die("%s", err);
    count += 3;

    uint8_t rec[2 * CIFAR_RECORD];
    int real = 0;
    if (cifar_dir) {
        char path[4200];
        snprintf(path, sizeof path, "%s/test_batch.bin", cifar_dir);
        FILE *f = fopen(path, "rb");
        if (f) { real = fread(rec, 1, sizeof rec, f) == sizeof rec; fclose(f); }
    }
    if (!real)
        for (size_t i = 0; i < sizeof rec; i++) rec[i] = i % CIFAR_RECORD ? (uint8_t)(i * 7) : (uint8_t)(i % 10);
    count += put(root, "cifar", "two_records.bin", rec, sizeof rec);
    count += put(root, "cifar", "one_record.bin", rec, CIFAR_RECORD);

    int perm[1024];
    permutation_from_seed(perm, 8, 1);
    if (permutation_save(seed_path(root, "permutation", "perm8.txt"), perm, 8, err, sizeof err)) die("%s", err);
    permutation_from_seed(perm, 1024, 42);
    if (permutation_save(seed_path(root, "permutation", "perm1024.txt"), perm, 1024, err, sizeof err)) die("%s", err);
    count += 2;

    static const char *const a0[] = {"--epochs", "30", "--milestones=21,27", "--seed", "2", "--out", "runs/a", NULL};
    static const char *const a1[] = {"--blocks", "1,1", "--channels=4,8", "--lr", "0.05", "--no-flip", "--resume", NULL};
    static const char *const a2[] = {"--step", "30", "--max-images=100", "--device", "cpu", NULL};
    static const char *const a3[] = {"--perm-seed", "7", "--mlp-lr", "1e-3", "--no-mlp", "--batch-size", "64", NULL};
    static const char *const a4[] = {"--help", NULL};
    count += put_args(root, "resnet_schedule", 0, a0);
    count += put_args(root, "resnet_model", 0, a1);
    count += put_args(root, "rotation", 1, a2);
    count += put_args(root, "shuffle", 2, a3);
    count += put_args(root, "help", 0, a4);
    return count;
}
