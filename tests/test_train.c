/* Training loop: a run interrupted after epoch 1 and resumed ends bit-for-bit where an
 * uninterrupted run ends; a torn temp file from a killed save is ignored; a corrupt state
 * file is refused with a clear message. Tiny synthetic data and a tiny net keep it fast. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/checkpoint.h"
#include "core/train.h"
#include "tests/fixtures.h"

static void tiny_config(TrainConfig *c, const Dataset *tr, const Dataset *te, const char *out)
{
    fixture_config(c, tr, te, out, 2);
    c->retrain = 1;
}

START_TEST(resume_is_bit_exact)
{
    Dataset tr = fixture_set(300, 1), te = fixture_set(50, 2);
    char dA[] = "/tmp/convnet_runA_XXXXXX", dB[] = "/tmp/convnet_runB_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dA));
    ck_assert_ptr_nonnull(mkdtemp(dB));
    TrainConfig c;
    TrainResult ra, rb;
    tiny_config(&c, &tr, &te, dA);
    train_run(&c, &ra);                       /* uninterrupted: 2 epochs */
    ck_assert_int_eq(ra.epochs_run, 2);

    tiny_config(&c, &tr, &te, dB);
    c.stop_after_epoch = 1;                   /* "killed" right after epoch 1 was saved */
    train_run(&c, &rb);
    ck_assert_int_eq(rb.epochs_run, 1);
    char p[512], q[512];
    /* torn write of a save killed by SIGKILL (a pid above Linux's pid_max: never running) */
    snprintf(p, sizeof p, "%s/last.state.tmp.4194999", dB);
    FILE *f = fopen(p, "w");
    fputs("garbage", f);
    fclose(f);
    tiny_config(&c, &tr, &te, dB);
    c.retrain = 0;
    c.resume = 1;
    train_run(&c, &rb);
    ck_assert_int_eq(rb.epochs_run, 1);       /* only epoch 2 ran */
    snprintf(p, sizeof p, "%s/last.state.tmp.4194999", dB);
    ck_assert_msg(access(p, F_OK) != 0, "the leftover temporary file was not removed");

    snprintf(p, sizeof p, "%s/last.state", dA); snprintf(q, sizeof q, "%s/last.state", dB);
    ck_assert_msg(fixture_same_file(p, q), "resumed training state differs from the uninterrupted run");
    snprintf(p, sizeof p, "%s/best.safetensors", dA); snprintf(q, sizeof q, "%s/best.safetensors", dB);
    ck_assert(fixture_same_file(p, q));
    ck_assert(ra.test == rb.test && ra.val == rb.val);
    ck_assert(ra.val > 0.2);                  /* it learned something (chance is 0.1) */

    /* a corrupt state file is refused, not loaded */
    snprintf(p, sizeof p, "%s/last.state", dB);
    f = fopen(p, "r+b");
    fseek(f, 200, SEEK_SET);
    int byte = fgetc(f);
    fseek(f, 200, SEEK_SET);
    fputc(byte ^ 0x55, f);   /* flip bits (a fixed value may be what is there already) */
    fclose(f);
    ModelConfig mc = c.model;
    Model *m = model_create(&ops_cpu, &mc, 4);
    TrainState st;
    char err[512];
    ck_assert_int_eq(train_state_load(m, &st, p, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "checksum"));
    model_free(m);

    ck_assert_int_eq(fixture_remove(dA, dB), 0);
    dataset_free(&tr);
    dataset_free(&te);
}
END_TEST

/* A diverging run stops with a clear message (exit status 1) instead of training on NaN. */
static char div_dir[] = "/tmp/convnet_div_XXXXXX";
static void remove_div_dir(void)
{
    if (fixture_remove(div_dir, NULL) != 0) fprintf(stderr, "could not remove %s\n", div_dir);
}

START_TEST(divergence_stops)
{
    Dataset tr = fixture_set(300, 1), te = fixture_set(50, 2);
    char *d = div_dir;
    ck_assert_ptr_nonnull(mkdtemp(div_dir));
    atexit(remove_div_dir);   /* train_run exits; clean up then */
    TrainConfig c;
    TrainResult r;
    tiny_config(&c, &tr, &te, d);
    c.lr = 1e30;
    train_run(&c, &r);   /* must not return */
}
END_TEST

START_TEST(multistep_lr)
{
    TrainConfig c;
    train_config_default(&c);
    ck_assert(lr_at_epoch(&c, 0) == 0.1);
    ck_assert(fabs(lr_at_epoch(&c, 69) - 0.1) < 1e-12);
    ck_assert(fabs(lr_at_epoch(&c, 70) - 0.01) < 1e-12);
    ck_assert(fabs(lr_at_epoch(&c, 89) - 0.01) < 1e-12);
    ck_assert(fabs(lr_at_epoch(&c, 90) - 0.001) < 1e-12);
}
END_TEST

/* The Part 1 checkpoint shipped in apps/results/ResNet (trained by apps/resnet at the
 * practical's defaults) loads into the default model, names and shapes checked, and gives
 * back the validation accuracy recorded in its results.json on the same 5,000 images,
 * within 0.1 point. Needs the real CIFAR-10 (CIFAR10_DIR, as CI sets it). */
START_TEST(shipped_checkpoint_reproduces_its_accuracy)
{
    const char *ship = "apps/results/ResNet", *dir = cifar_dir(NULL);
    char path[4200], err[1024];
    snprintf(path, sizeof path, "%s/data_batch_1.bin", dir);
    if (access(path, R_OK) != 0) { printf("skip: no CIFAR-10 at %s\n", dir); return; }
    snprintf(path, sizeof path, "%s/best.safetensors", ship);
    ck_assert_msg(access(path, R_OK) == 0, "%s is missing", path);
    ModelConfig cfg;
    model_config_default(&cfg);
    Model *m = model_create(&ops_cpu, &cfg, 250);
    ck_assert_msg(checkpoint_load(m, path, err, sizeof err) == 0, "%s", err);
    Dataset tr;
    ck_assert_msg(cifar_load_train(dir, &tr, err, sizeof err) == 0, "%s", err);
    int *tidx = malloc(sizeof(int) * 45000), *vidx = malloc(sizeof(int) * 5000);
    split_train_val(tr.n, 5000, 42, tidx, vidx);
    double acc = evaluate(m, &tr, vidx, 5000, NULL, 0, 250);
    snprintf(path, sizeof path, "%s/results.json", ship);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s is missing", path);
    char json[256] = "";
    size_t len = fread(json, 1, sizeof json - 1, f);
    json[len] = 0;
    fclose(f);
    const char *v = strstr(json, "\"val\":");
    ck_assert_msg(v != NULL, "no val in %s", json);
    double recorded = atof(v + 6);
    ck_assert_msg(fabs(acc - recorded) <= 0.001, "shipped checkpoint: val accuracy %.4f here, %.4f recorded", acc, recorded);
    free(tidx); free(vidx);
    dataset_free(&tr);
    model_free(m);
}
END_TEST

Suite *suite_train(void)
{
    Suite *s = suite_create("training loop");
    TCase *t = tcase_create("train");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, resume_is_bit_exact);
    tcase_add_test(t, shipped_checkpoint_reproduces_its_accuracy);
    tcase_add_test(t, multistep_lr);
    tcase_add_exit_test(t, divergence_stops, 1);
    suite_add_tcase(s, t);
    return s;
}
