/* CIFAR-10, official binary version: each record is 1 label byte (0..9) followed by 3072
 * pixel bytes: the 32x32 R plane, then G, then B, each row-major. data_batch_1..5.bin hold
 * the 50,000 training images, test_batch.bin the 10,000 test images (10,000 records each).
 * The whole set is kept as uint8 (about 184 MB); conversion to float happens per batch. */
#ifndef CONVNET_CIFAR_H
#define CONVNET_CIFAR_H
#include <stddef.h>
#include <stdint.h>

#define CIFAR_C 3
#define CIFAR_H 32
#define CIFAR_W 32
#define CIFAR_PIXELS (CIFAR_C * CIFAR_H * CIFAR_W)
#define CIFAR_RECORD (1 + CIFAR_PIXELS)
#define CIFAR_PER_FILE 10000

typedef struct Dataset {
    int n;
    uint8_t *images;   /* [n, 3, 32, 32] */
    uint8_t *labels;   /* [n] */
} Dataset;

extern const char *const cifar_class_names[10];
extern const float cifar_mean[3], cifar_std[3];

/* The data directory: flag if given, else $CIFAR10_DIR, else ./data/cifar-10-batches-bin. */
const char *cifar_dir(const char *flag);

/* Appends the records of one file to ds. expect_records: 0 = any count, else exactly that.
 * On error returns -1 and writes one line naming the file and the problem into err. */
int cifar_read_file(const char *path, int expect_records, Dataset *ds, char *err, size_t errlen);
/* The same on a file's bytes (path only names it in messages; buf may be NULL when the
 * length alone is wrong); fuzzed by tests/fuzz/. */
int cifar_parse(const uint8_t *buf, size_t len, int expect_records, Dataset *ds, const char *path, char *err, size_t errlen);
/* The 50,000 training images (data_batch_1..5.bin) or the 10,000 test images. */
int cifar_load_train(const char *dir, Dataset *ds, char *err, size_t errlen);
int cifar_load_test(const char *dir, Dataset *ds, char *err, size_t errlen);
void dataset_free(Dataset *ds);

/* Deterministic split of 0..n-1 into n - n_val training and n_val validation indices
 * (a seeded permutation; train and val are disjoint and cover everything). */
void split_train_val(int n, int n_val, uint64_t seed, int *train_idx, int *val_idx);

#endif
