/* Parts 2 and 3 plumbing: rotation evaluation (0 and 360 degrees agree; 90 degrees is a real
 * change), a pixel-shuffled evaluation differs from the plain one, plots when gnuplot exists. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/augment.h"
#include "core/plot.h"
#include "core/loader.h"
#include "core/train.h"
#include "tests/fixtures.h"

static Dataset make_set(int n)
{
    Dataset ds = {n, malloc((size_t)n * CIFAR_PIXELS), malloc(n)};
    Rng r;
    rng_seed(&r, 5, 5);
    for (int i = 0; i < n; i++) {
        ds.labels[i] = (uint8_t)rng_int(&r, 10);
        for (int k = 0; k < CIFAR_PIXELS; k++)   /* a bright left half: rotation matters */
            ds.images[(size_t)i * CIFAR_PIXELS + k] = (uint8_t)(((k % 32) < 16 ? 150 : 0) + rng_int(&r, 100));
    }
    return ds;
}

START_TEST(rotation_0_equals_360)
{
    Dataset ds = make_set(64);
    ModelConfig cfg;
    model_config_default(&cfg);
    cfg.n_stages = 1; cfg.blocks[0] = 1; cfg.channels[0] = 4;
    Model *m = model_create(&ops_cpu, &cfg, 16);
    Rng r;
    rng_seed(&r, 2, 2);
    model_init(m, &r);
    double a0 = evaluate(m, &ds, NULL, ds.n, NULL, 0, 16);
    double a360 = evaluate(m, &ds, NULL, ds.n, NULL, 360, 16);
    ck_assert(a0 == a360);
    /* the logits (not just the accuracy) agree at 0 and 360, and differ at 90 */
    LoaderConfig lc = {.ds = &ds, .batch = 16};
    Batch b0 = {0, malloc(sizeof(float) * 16 * CIFAR_PIXELS), malloc(16 * 4)};
    Batch b1 = {0, malloc(sizeof(float) * 16 * CIFAR_PIXELS), malloc(16 * 4)};
    int order[64];
    for (int i = 0; i < 64; i++) order[i] = i;
    loader_fill(&lc, order, 0, 0, 16, &b0);
    lc.rotate_deg = 360;
    loader_fill(&lc, order, 0, 0, 16, &b1);
    ck_assert(memcmp(b0.x, b1.x, sizeof(float) * 16 * CIFAR_PIXELS) == 0);
    lc.rotate_deg = 90;
    loader_fill(&lc, order, 0, 0, 16, &b1);
    ck_assert(memcmp(b0.x, b1.x, sizeof(float) * 16 * CIFAR_PIXELS) != 0);
    /* a pixel permutation changes the input but keeps the pixel multiset */
    int perm[1024];
    permutation_from_seed(perm, 1024, 42);
    lc.rotate_deg = 0;
    lc.perm = perm;
    loader_fill(&lc, order, 0, 0, 16, &b1);
    ck_assert(memcmp(b0.x, b1.x, sizeof(float) * 16 * CIFAR_PIXELS) != 0);
    double s0 = 0, s1 = 0;
    for (int i = 0; i < 16 * CIFAR_PIXELS; i++) { s0 += b0.x[i]; s1 += b1.x[i]; }
    ck_assert(fabs(s0 - s1) < 1e-3 * (fabs(s0) + 1));
    free(b0.x); free(b0.y); free(b1.x); free(b1.y);
    model_free(m);
    dataset_free(&ds);
}
END_TEST

START_TEST(plot_when_gnuplot_exists)
{
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) { printf("skip: gnuplot not installed\n"); return; }
    char dir[] = "/tmp/convnet_plot_XXXXXX", csv[128], png[128];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(csv, sizeof csv, "%s/x.csv", dir);
    snprintf(png, sizeof png, "%s/x.png", dir);
    FILE *f = fopen(csv, "w");
    fprintf(f, "angle,val_acc,test_acc\n0,0.9,0.89\n90,0.3,0.31\n180,0.4,0.41\n");
    fclose(f);
    const char *series[] = {"val", "test"};
    ck_assert_int_eq(plot_csv(png, csv, "t", "x", "y", 2, series, NULL), 0);
    FILE *p = fopen(png, "rb");
    ck_assert_ptr_nonnull(p);
    unsigned char sig[8];
    ck_assert_int_eq(fread(sig, 1, 8, p), 8);
    ck_assert(memcmp(sig, "\x89PNG\r\n\x1a\n", 8) == 0);
    fclose(p);
    /* Part 1's training curve from a metrics.csv with an lr drop and sparse validation */
    snprintf(csv, sizeof csv, "%s/metrics.csv", dir);
    snprintf(png, sizeof png, "%s/training_curve.png", dir);
    f = fopen(csv, "w");
    fprintf(f, "epoch,lr,train_loss,train_acc,val_acc,seconds,img_per_s\n1,0.1,1.6,0.4,,30,1400\n"
               "2,0.1,1.2,0.57,0.6,30,1400\n3,0.01,0.9,0.68,,30,1400\n4,0.01,0.8,0.7,0.72,30,1400\n");
    fclose(f);
    ck_assert_int_eq(plot_training_curve(png, csv), 0);
    p = fopen(png, "rb");
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(fread(sig, 1, 8, p), 8);
    ck_assert(memcmp(sig, "\x89PNG\r\n\x1a\n", 8) == 0);
    fclose(p);
    snprintf(png, sizeof png, "%s/training_curve.gp", dir);
    f = fopen(png, "r");
    char buf[4096];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    buf[len] = 0;
    fclose(f);
    ck_assert_msg(strstr(buf, "set arrow from 2.5") && strstr(buf, "lr 0.01"), "lr drop not marked: %s", buf);
    ck_assert_int_eq(fixture_remove(dir, NULL), 0);
}
END_TEST

Suite *suite_experiments(void)
{
    Suite *s = suite_create("experiments (parts 2 and 3)");
    TCase *t = tcase_create("exp");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, rotation_0_equals_360);
    tcase_add_test(t, plot_when_gnuplot_exists);
    suite_add_tcase(s, t);
    return s;
}
