#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "core/cifar.h"
#include "core/files.h"
#include "core/rng.h"
#include "core/util.h"

const char *const cifar_class_names[10] = {"airplane", "automobile", "bird", "cat", "deer",
                                           "dog", "frog", "horse", "ship", "truck"};
const float cifar_mean[3] = {0.4914f, 0.4822f, 0.4465f};
const float cifar_std[3] = {0.2470f, 0.2435f, 0.2616f};

const char *cifar_dir(const char *flag)
{
    if (flag && *flag) return flag;
    const char *env = getenv("CIFAR10_DIR");
    if (env && *env) return env;
    return "data/cifar-10-batches-bin";
}

int cifar_read_file(const char *path, int expect_records, Dataset *ds, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, errlen, "%s: %s", path, errno == ENOENT ? "file not found" : strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) { snprintf(err, errlen, "%s: not a regular file", path); return -1; }
    /* the size says everything before a byte is read (a wrong file is not loaded whole) */
    if (st.st_size % CIFAR_RECORD != 0 || st.st_size == 0 ||
        (expect_records && st.st_size != (off_t)expect_records * CIFAR_RECORD))
        return cifar_parse(NULL, (size_t)st.st_size, expect_records, ds, path, err, errlen);
    size_t len;
    uint8_t *buf = read_file_max(path, (size_t)st.st_size, &len, err, errlen);
    if (!buf) return -1;
    int rc = cifar_parse(buf, len, expect_records, ds, path, err, errlen);
    free(buf);
    return rc;
}

int cifar_parse(const uint8_t *buf, size_t len, int expect_records, Dataset *ds, const char *path, char *err, size_t errlen)
{
    if (len == 0) { snprintf(err, errlen, "%s: empty file", path); return -1; }
    if (len % CIFAR_RECORD != 0) {
        snprintf(err, errlen, "%s: size %zu bytes is not a multiple of the %d-byte record", path, len, CIFAR_RECORD);
        return -1;
    }
    size_t records = len / CIFAR_RECORD;
    if (expect_records && records != (size_t)expect_records) {
        snprintf(err, errlen, "%s: has %zu records, expected %d", path, records, expect_records);
        return -1;
    }
    if ((size_t)ds->n + records > (size_t)1 << 30) { snprintf(err, errlen, "%s: too many records", path); return -1; }
    for (size_t r = 0; r < records; r++)
        if (buf[r * CIFAR_RECORD] > 9) {
            snprintf(err, errlen, "%s: record %zu has label %d (expected 0..9)", path, r, buf[r * CIFAR_RECORD]);
            return -1;
        }
    size_t n0 = (size_t)ds->n, n1 = n0 + records;
    uint8_t *images = realloc(ds->images, n1 * CIFAR_PIXELS);
    if (!images) die("out of memory reading %s", path);
    ds->images = images;
    uint8_t *labels = realloc(ds->labels, n1);
    if (!labels) die("out of memory reading %s", path);
    ds->labels = labels;
    for (size_t r = 0; r < records; r++) {
        ds->labels[n0 + r] = buf[r * CIFAR_RECORD];
        memcpy(ds->images + (n0 + r) * CIFAR_PIXELS, buf + r * CIFAR_RECORD + 1, CIFAR_PIXELS);
    }
    ds->n = (int)n1;
    return 0;
}

static int check_dir(const char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "CIFAR-10 directory '%s' not found (pass --data DIR, set CIFAR10_DIR, "
                 "or run `make data`)", dir);
        return -1;
    }
    return 0;
}

int cifar_load_train(const char *dir, Dataset *ds, char *err, size_t errlen)
{
    memset(ds, 0, sizeof *ds);
    if (check_dir(dir, err, errlen)) return -1;
    for (int i = 1; i <= 5; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/data_batch_%d.bin", dir, i);
        if (cifar_read_file(path, CIFAR_PER_FILE, ds, err, errlen)) { dataset_free(ds); return -1; }
    }
    return 0;
}

int cifar_load_test(const char *dir, Dataset *ds, char *err, size_t errlen)
{
    memset(ds, 0, sizeof *ds);
    if (check_dir(dir, err, errlen)) return -1;
    char path[4096];
    snprintf(path, sizeof path, "%s/test_batch.bin", dir);
    if (cifar_read_file(path, CIFAR_PER_FILE, ds, err, errlen)) { dataset_free(ds); return -1; }
    return 0;
}

void dataset_free(Dataset *ds)
{
    free(ds->images);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}

void split_train_val(int n, int n_val, uint64_t seed, int *train_idx, int *val_idx)
{
    int *perm = xmalloc(sizeof(int) * n);
    for (int i = 0; i < n; i++) perm[i] = i;
    Rng r;
    rng_seed(&r, seed, 0x5917);
    rng_shuffle(&r, perm, n);
    memcpy(train_idx, perm, sizeof(int) * (n - n_val));
    memcpy(val_idx, perm + n - n_val, sizeof(int) * n_val);
    free(perm);
}
