/* The fuzz targets (tests/fuzz/) on their seed corpus and on every input a fuzzer ever
 * crashed (tests/fuzz/crashes/<target>/): each must run clean under `make test` and
 * `make asan`. The seeds also show what the parsers must accept: files written by the code
 * the apps use load back. */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/augment.h"
#include "core/checkpoint.h"
#include "core/cifar.h"
#include "tests/fuzz/fuzz.h"
#include "tests/fixtures.h"

typedef int (*Target)(const uint8_t *, size_t);
static const struct { const char *name; Target fn; } targets[] = {
    {"safetensors", fuzz_safetensors}, {"state", fuzz_state}, {"cifar", fuzz_cifar},
    {"permutation", fuzz_permutation}, {"cli", fuzz_cli},
};

/* every regular file of dir through fn; returns how many */
static int replay_dir(const char *dir, Target fn)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char path[4400], err[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t len;
        uint8_t *file = read_file(path, &len, err, sizeof err);
        if (!file) continue;
        uint8_t *bytes = malloc(len ? len : 1);   /* exactly len bytes, as libFuzzer passes them: */
        memcpy(bytes, file, len);                 /* a read past the end is an ASan error */
        fn(bytes, len);
        free(bytes);
        free(file);
        n++;
    }
    closedir(d);
    return n;
}

static void *load(const char *root, const char *target, const char *name, size_t *len)
{
    char path[4400], err[512];
    snprintf(path, sizeof path, "%s/%s/%s", root, target, name);
    void *p = read_file(path, len, err, sizeof err);
    ck_assert_msg(p != NULL, "%s", err);
    return p;
}

START_TEST(seeds_parse_and_every_input_replays)
{
    char root[] = "/tmp/convnet_fuzz_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(root));
    int seeds = fuzz_write_seeds(root, getenv("CIFAR10_DIR"));
    ck_assert_int_ge(seeds, 10);

    /* the seeds are valid files */
    char err[1024];
    size_t len;
    char *b = load(root, "safetensors", "checkpoint.safetensors", &len);
    ck_assert_msg(checkpoint_parse(fuzz_model(), b, len, "seed", err, sizeof err) == 0, "%s", err);
    free(b);
    TrainState st;
    b = load(root, "state", "inside_epoch.state", &len);
    ck_assert_msg(train_state_parse(fuzz_model(), &st, b, len, "seed", err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(st.step, 17);
    ck_assert_int_eq(st.seen, 544);
    free(b);
    Dataset ds = {0};
    b = load(root, "cifar", "two_records.bin", &len);
    ck_assert_msg(cifar_parse((uint8_t *)b, len, 2, &ds, "seed", err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(ds.n, 2);
    dataset_free(&ds);
    free(b);
    int perm[1024];
    b = load(root, "permutation", "perm1024.txt", &len);
    ck_assert_msg(permutation_parse(b, len, perm, 1024, "seed", err, sizeof err) == 0, "%s", err);
    b[len / 2] = 'x';   /* and a damaged one is refused */
    ck_assert_int_eq(permutation_parse(b, len, perm, 1024, "seed", err, sizeof err), -1);
    free(b);

    int replayed = 0, crashes = 0;
    for (size_t t = 0; t < sizeof targets / sizeof targets[0]; t++) {
        char dir[4400];
        snprintf(dir, sizeof dir, "%s/%s", root, targets[t].name);
        int n = replay_dir(dir, targets[t].fn);
        ck_assert_msg(n > 0, "no seeds for %s", targets[t].name);
        replayed += n;
        snprintf(dir, sizeof dir, "tests/fuzz/crashes/%s", targets[t].name);
        crashes += replay_dir(dir, targets[t].fn);
    }
    ck_assert_int_eq(replayed, seeds);
    ck_assert_int_ge(crashes, 1);   /* the saved crash inputs were found (run from the repo root) */
    ck_assert_int_eq(fixture_remove(root, NULL), 0);
}
END_TEST

Suite *suite_fuzz(void)
{
    Suite *s = suite_create("fuzz targets: seeds and saved crashes");
    TCase *t = tcase_create("fuzz");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, seeds_parse_and_every_input_replays);
    suite_add_tcase(s, t);
    return s;
}
