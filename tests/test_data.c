/* CIFAR-10 reader, split, transforms, loader, bad-input errors. Test files are written here. */
#include <check.h>
#include <setjmp.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/augment.h"
#include "core/cifar.h"
#include "core/loader.h"
#include "core/util.h"
#include "tests/fixtures.h"

static char tmpdir[64];

static void setup(void)
{
    strcpy(tmpdir, "/tmp/convnet_test_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    ck_assert_int_eq(fixture_remove(tmpdir, NULL), 0);
}

/* Writes `records` records; record r has label labels[r % nl] and pixel i = (r*7 + i) % 251. */
static void write_records(const char *path, int records, const uint8_t *labels, int nl, long truncate_to)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    for (int r = 0; r < records; r++) {
        fputc(labels[r % nl], f);
        for (int i = 0; i < CIFAR_PIXELS; i++) fputc((r * 7 + i) % 251, f);
    }
    fclose(f);
    if (truncate_to >= 0) ck_assert_int_eq(truncate(path, truncate_to), 0);
}

START_TEST(decodes_records_exactly)
{
    char path[128];
    snprintf(path, sizeof path, "%s/two.bin", tmpdir);
    uint8_t labels[2] = {3, 9};
    write_records(path, 2, labels, 2, -1);
    Dataset ds = {0};
    char err[512];
    ck_assert_int_eq(cifar_read_file(path, 0, &ds, err, sizeof err), 0);
    ck_assert_int_eq(ds.n, 2);
    ck_assert_int_eq(ds.labels[0], 3);
    ck_assert_int_eq(ds.labels[1], 9);
    /* R plane first, row-major: pixel (c=1, y=2, x=5) of record 1 is byte 1 + 1024 + 2*32 + 5 */
    ck_assert_int_eq(ds.images[CIFAR_PIXELS + 1024 + 2 * 32 + 5], (7 + 1024 + 69) % 251);
    ck_assert_int_eq(ds.images[0], 0);
    dataset_free(&ds);
}
END_TEST

static void expect_error(const char *path, int expect, const char *fragment)
{
    Dataset ds = {0};
    char err[512] = "";
    ck_assert_int_eq(cifar_read_file(path, expect, &ds, err, sizeof err), -1);
    ck_assert_msg(strstr(err, path) && strstr(err, fragment), "error '%s' lacks '%s'", err, fragment);
    ck_assert_int_eq(ds.n, 0);
}

START_TEST(bad_input_is_a_clear_error)
{
    char p[160];
    uint8_t ok[1] = {1}, bad[2] = {4, 12};
    snprintf(p, sizeof p, "%s/missing.bin", tmpdir);
    expect_error(p, 0, "file not found");
    snprintf(p, sizeof p, "%s/empty.bin", tmpdir);
    write_records(p, 0, ok, 1, -1);
    expect_error(p, 0, "empty file");
    snprintf(p, sizeof p, "%s/short.bin", tmpdir);
    write_records(p, 3, ok, 1, 3 * CIFAR_RECORD - 100);
    expect_error(p, 0, "not a multiple of the 3073-byte record");
    snprintf(p, sizeof p, "%s/few.bin", tmpdir);
    write_records(p, 3, ok, 1, -1);
    expect_error(p, 10000, "has 3 records, expected 10000");
    snprintf(p, sizeof p, "%s/label.bin", tmpdir);
    write_records(p, 2, bad, 2, -1);
    expect_error(p, 0, "record 1 has label 12");
    snprintf(p, sizeof p, "%s/adir.bin", tmpdir);       /* unreadable as a file */
    ck_assert_int_eq(mkdir(p, 0700), 0);
    expect_error(p, 0, "not a regular file");

    Dataset ds;
    char err[512], dir[160];
    snprintf(dir, sizeof dir, "%s/nonexistent", tmpdir);
    ck_assert_int_eq(cifar_load_train(dir, &ds, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "not found"));
    ck_assert_int_eq(cifar_load_test(tmpdir, &ds, err, sizeof err), -1);   /* dir without files */
    ck_assert_ptr_nonnull(strstr(err, "test_batch.bin: file not found"));
}
END_TEST

START_TEST(split_is_deterministic_and_disjoint)
{
    int n = 50000, nv = 5000;
    int *t1 = malloc(sizeof(int) * n), *v1 = malloc(sizeof(int) * nv);
    int *t2 = malloc(sizeof(int) * n), *v2 = malloc(sizeof(int) * nv);
    char *seen = calloc(n, 1);
    split_train_val(n, nv, 42, t1, v1);
    split_train_val(n, nv, 42, t2, v2);
    ck_assert(memcmp(t1, t2, sizeof(int) * (n - nv)) == 0 && memcmp(v1, v2, sizeof(int) * nv) == 0);
    for (int i = 0; i < n - nv; i++) { ck_assert(!seen[t1[i]]); seen[t1[i]] = 1; }
    for (int i = 0; i < nv; i++) { ck_assert(!seen[v1[i]]); seen[v1[i]] = 1; }
    for (int i = 0; i < n; i++) ck_assert(seen[i]);                        /* union = all */
    split_train_val(n, nv, 43, t2, v2);
    ck_assert(memcmp(v1, v2, sizeof(int) * nv) != 0);                      /* seed matters */
    free(t1); free(v1); free(t2); free(v2); free(seen);
}
END_TEST

START_TEST(flip_and_crop)
{
    uint8_t img[2 * 3 * 5], out[2 * 3 * 5];
    for (int i = 0; i < 30; i++) img[i] = (uint8_t)i;
    hflip_u8(out, img, 2, 3, 5);
    ck_assert_int_eq(out[0], 4); ck_assert_int_eq(out[2], 2); ck_assert_int_eq(out[19], 15);
    hflip_u8(out, out, 2, 3, 5);
    ck_assert(memcmp(out, img, 30) == 0);
    /* a full-size crop resized to the same size is the identity */
    resized_crop_u8(out, 3, 5, img, 2, 3, 5, 0, 0, 3, 5);
    ck_assert(memcmp(out, img, 30) == 0);
    /* 2x enlargement of a 1x2 crop [10 20]: half-pixel bilinear gives 10 12.5 17.5 20 -> 10 13 18 20 */
    uint8_t row[2] = {10, 20}, up[4];
    resized_crop_u8(up, 1, 4, row, 1, 1, 2, 0, 0, 1, 2);
    ck_assert(up[0] == 10 && up[1] == 13 && up[2] == 18 && up[3] == 20);   /* halves round up, as PIL */
    /* crop statistics over many draws: area fraction in [0.8, 1], aspect in [0.9, 1.1] up to
     * the rounding of w and h to integers, every corner inside the image */
    Rng rng;
    rng_seed(&rng, 7, 7);
    double amin = 2, amax = 0, rmin = 9, rmax = 0, asum = 0;
    int draws = 20000;
    for (int k = 0; k < draws; k++) {
        int t, l, h, w;
        random_resized_crop_params(&rng, 32, 32, 0.8, 1.0, 0.9, 1.1, &t, &l, &h, &w);
        ck_assert(t >= 0 && l >= 0 && t + h <= 32 && l + w <= 32 && h > 0 && w > 0);
        double a = h * w / 1024.0, r = (double)w / h;
        asum += a;
        if (a < amin) amin = a;
        if (a > amax) amax = a;
        if (r < rmin) rmin = r;
        if (r > rmax) rmax = r;
    }
    ck_assert_msg(amin >= 0.8 - 0.05 && amax <= 1.0, "area %g..%g", amin, amax);
    ck_assert_msg(rmin >= 0.9 - 0.04 && rmax <= 1.1 + 0.04, "ratio %g..%g", rmin, rmax);
    ck_assert_msg(amax - amin > 0.15 && rmax - rmin > 0.15, "range not explored");
    ck_assert_msg(fabs(asum / draws - 0.89) < 0.02, "mean area %g", asum / draws);
}
END_TEST

START_TEST(rotation_exact_moves)
{
    int C = 2, H = 32, W = 32;
    size_t n = (size_t)C * H * W;
    uint8_t *img = malloc(n), *r = malloc(n), *r2 = malloc(n);
    for (size_t i = 0; i < n; i++) img[i] = (uint8_t)(i * 37 % 256);
    rotate_u8(r, img, C, H, W, 0);
    ck_assert(memcmp(r, img, n) == 0);
    rotate_u8(r, img, C, H, W, 360);
    ck_assert(memcmp(r, img, n) == 0);
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                uint8_t v = img[((size_t)c * H + y) * W + x];
                /* counter-clockwise 90: the right column becomes the top row */
                rotate_u8(r, img, C, H, W, 90);
                ck_assert_int_eq(r[((size_t)c * H + (W - 1 - x)) * W + y], v);
                rotate_u8(r, img, C, H, W, 180);
                ck_assert_int_eq(r[((size_t)c * H + (H - 1 - y)) * W + (W - 1 - x)], v);
                rotate_u8(r, img, C, H, W, 270);
                ck_assert_int_eq(r[((size_t)c * H + x) * W + (H - 1 - y)], v);
                if (y > 2) break;   /* a few rows per channel keep this quick */
            }
    rotate_u8(r, img, C, H, W, 45);                   /* corners fall outside: filled 0 */
    ck_assert_int_eq(r[0], 0);
    ck_assert_int_eq(r[W - 1], 0);
    rotate_u8(r2, img, C, H, W, -315);                /* same angle */
    ck_assert(memcmp(r, r2, n) == 0);
    free(img); free(r); free(r2);
}
END_TEST

START_TEST(permutation_roundtrip)
{
    int n = 1024, p1[1024], p2[1024], inv[1024];
    permutation_from_seed(p1, n, 99);
    permutation_from_seed(p2, n, 99);
    ck_assert(memcmp(p1, p2, sizeof p1) == 0);
    char path[128], err[256];
    snprintf(path, sizeof path, "%s/perm.txt", tmpdir);
    ck_assert_int_eq(permutation_save(path, p1, n, err, sizeof err), 0);
    memset(p2, 0, sizeof p2);
    ck_assert_int_eq(permutation_load(path, p2, n, err, sizeof err), 0);
    ck_assert(memcmp(p1, p2, sizeof p1) == 0);
    uint8_t img[3 * 1024], sh[3 * 1024], back[3 * 1024];
    for (int i = 0; i < 3 * 1024; i++) img[i] = (uint8_t)(i * 13);
    permute_pixels_u8(sh, img, p1, 3, n);
    ck_assert(memcmp(sh, img, sizeof img) != 0);
    for (int k = 0; k < n; k++) inv[p1[k]] = k;
    permute_pixels_u8(back, sh, inv, 3, n);
    ck_assert(memcmp(back, img, sizeof img) == 0);
    ck_assert_int_eq(permutation_load(path, p2, 512, err, sizeof err), -1);  /* wrong size */
}
END_TEST

START_TEST(loader_batches)
{
    /* 10 tiny records; batches of 4 without drop_last -> 4,4,2; with drop_last -> 4,4 */
    Dataset ds = {10, malloc(10 * CIFAR_PIXELS), malloc(10)};
    for (int i = 0; i < 10; i++) { ds.labels[i] = (uint8_t)i; memset(ds.images + i * CIFAR_PIXELS, i * 20, CIFAR_PIXELS); }
    LoaderConfig cfg = {.ds = &ds, .batch = 4, .shuffle = 1, .seed = 5};
    Loader *l = loader_create(&cfg);
    int seen[10] = {0}, sizes[3], nb = 0;
    int32_t first_epoch[10];
    loader_start_epoch(l, 0);
    for (const Batch *b; (b = loader_next(l));) {
        sizes[nb++] = b->n;
        for (int i = 0; i < b->n; i++) {
            seen[b->y[i]]++;
            first_epoch[(nb - 1) * 4 + i] = b->y[i];
            float want = (b->y[i] * 20 / 255.0f - cifar_mean[0]) / cifar_std[0];
            ck_assert_float_eq_tol(b->x[(size_t)i * CIFAR_PIXELS], want, 1e-5f);
        }
    }
    ck_assert_int_eq(nb, 3);
    ck_assert(sizes[0] == 4 && sizes[2] == 2);
    for (int i = 0; i < 10; i++) ck_assert_int_eq(seen[i], 1);
    loader_start_epoch(l, 0);                         /* same epoch: same order */
    const Batch *b = loader_next(l);
    for (int i = 0; i < 4; i++) ck_assert_int_eq(b->y[i], first_epoch[i]);
    loader_start_epoch(l, 1);                         /* interrupt mid-epoch, new epoch */
    loader_free(l);
    cfg.drop_last = 1;
    l = loader_create(&cfg);
    ck_assert_int_eq(loader_num_batches(l), 2);
    loader_free(l);
    dataset_free(&ds);
}
END_TEST

/* A consumer whose position disagrees with the batches the loader's thread makes (planted
 * here by moving next_take after the epoch starts: one batch behind the thread's first; two
 * ahead once the thread has filled both slots, so that the slot asked for holds another
 * batch the thread waits to be freed: without the check, both wait forever) must end
 * at once with a message naming the epoch, the batch asked for and the batches made, not wait
 * forever. die() is caught through its hook. */
static jmp_buf loader_back;
static char loader_msg[512];
static void loader_on_die(int code, const char *msg)
{
    (void)code;
    snprintf(loader_msg, sizeof loader_msg, "%s", msg);
    longjmp(loader_back, 1);
}
/* one plant: 0 behind the thread's first batch, 1 ahead once both slots are made */
static void loader_plant(const LoaderConfig *cfg, int plant, const char *want)
{
    Loader *l = loader_create(cfg);
    loader_start_epoch_at(l, 3, 5);
    if (plant == 0) {
        l->next_take--;                          /* one batch behind the thread */
    } else {                                     /* both slots made (5, 6), then two batches ahead */
        for (int full = 0; !full;) {
            pthread_mutex_lock(&l->mu);
            full = l->ready[0] && l->ready[1];
            pthread_mutex_unlock(&l->mu);
            if (!full) usleep(1000);
        }
        l->next_take += 2;
    }
    loader_msg[0] = 0;
    double t0 = now_seconds();
    die_set_hook(loader_on_die);
    if (!setjmp(loader_back))
        for (int i = 0; i < 10; i++) ck_assert_ptr_nonnull(loader_next(l));
    die_set_hook(NULL);
    double took = now_seconds() - t0;
    ck_assert_msg(strstr(loader_msg, want) != NULL, "plant %d: message '%s'", plant, loader_msg);
    ck_assert_msg(took < 1.0, "plant %d: the error took %.2f s", plant, took);
    loader_free(l);
}
START_TEST(loader_disagreement_is_an_error)
{
    Dataset ds = {40, calloc(40, CIFAR_PIXELS), calloc(40, 1)};
    LoaderConfig cfg = {.ds = &ds, .batch = 4, .shuffle = 1, .seed = 5};
    loader_plant(&cfg, 0, "epoch 3 asked for batch 4, but its thread makes batches 5 to 9");
    loader_plant(&cfg, 1, "epoch 3 asked for batch 7, but its thread makes batches 5 to 9 (made so far: 5 to 6)");
    dataset_free(&ds);
}
END_TEST

/* On the real data (CIFAR10_DIR), when present: class counts and channel means. */
START_TEST(shared_cifar10_statistics)
{
    const char *dir = cifar_dir(NULL);
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/data_batch_1.bin", dir);
    if (access(path, R_OK) != 0) { printf("skip: no CIFAR-10 at %s\n", dir); return; }
    Dataset tr, te;
    ck_assert_msg(cifar_load_train(dir, &tr, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(cifar_load_test(dir, &te, err, sizeof err) == 0, "%s", err);
    int ctr[10] = {0}, cte[10] = {0};
    for (int i = 0; i < tr.n; i++) ctr[tr.labels[i]]++;
    for (int i = 0; i < te.n; i++) cte[te.labels[i]]++;
    double sum[3] = {0};
    for (int i = 0; i < tr.n; i++)
        for (int c = 0; c < 3; c++)
            for (int k = 0; k < 1024; k++) sum[c] += tr.images[(size_t)i * CIFAR_PIXELS + c * 1024 + k];
    printf("CIFAR-10 at %s: train %d, test %d\n", dir, tr.n, te.n);
    for (int k = 0; k < 10; k++) {
        printf("  %-10s train %d test %d\n", cifar_class_names[k], ctr[k], cte[k]);
        ck_assert_int_eq(ctr[k], 5000);
        ck_assert_int_eq(cte[k], 1000);
    }
    for (int c = 0; c < 3; c++) {
        double mean = sum[c] / (50000.0 * 1024 * 255);
        printf("  channel %d mean %.4f (reference %.4f)\n", c, mean, cifar_mean[c]);
        ck_assert(fabs(mean - cifar_mean[c]) < 0.001);
    }
    dataset_free(&tr);
    dataset_free(&te);
}
END_TEST

Suite *suite_data(void)
{
    Suite *s = suite_create("data");
    TCase *t = tcase_create("data");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 60);
    tcase_add_test(t, decodes_records_exactly);
    tcase_add_test(t, bad_input_is_a_clear_error);
    tcase_add_test(t, split_is_deterministic_and_disjoint);
    tcase_add_test(t, flip_and_crop);
    tcase_add_test(t, rotation_exact_moves);
    tcase_add_test(t, permutation_roundtrip);
    tcase_add_test(t, loader_batches);
    tcase_add_test(t, loader_disagreement_is_an_error);
    tcase_add_test(t, shared_cifar10_statistics);
    suite_add_tcase(s, t);
    return s;
}
