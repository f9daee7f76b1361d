/* Checkpoints.
 *
 * Weights: safetensors (8-byte little-endian header length, JSON header, raw little-endian
 * data) with exactly the PyTorch state_dict names and shapes of the reference model
 * (model.<...>.weight / bias / running_mean / running_var as F32, num_batches_tracked as I64
 * scalars), so a trained net loads into the PyTorch notebook and back.
 *
 * Training state (for --resume): one binary file with a magic, a version, the epoch just
 * finished, the optimizer step count, best validation accuracy and its epoch, the seed, the
 * current weights, BN buffers and counters and the SGD momentum buffers, and a CRC32C over
 * everything before it.
 *
 * Both are written atomically: temp file in the same directory, fsync, rename, fsync of
 * the directory. A crash at any moment leaves either the old or the new file, never a torn one.
 */
#ifndef CONVNET_CHECKPOINT_H
#define CONVNET_CHECKPOINT_H
#include <stddef.h>
#include <stdint.h>
#include "core/model.h"

int checkpoint_save(const Model *m, const char *path, char *err, size_t errlen);
/* Strict: every tensor of the model must be present with the same shape and dtype, and
 * nothing else. On error the model is unchanged. */
int checkpoint_load(Model *m, const char *path, char *err, size_t errlen);

typedef struct TrainState {
    int epoch;              /* epochs completed */
    long steps;
    double best_val;
    int best_epoch;
    uint64_t seed;
} TrainState;

int train_state_save(const Model *m, const TrainState *st, const char *path, char *err, size_t errlen);
int train_state_load(Model *m, TrainState *st, const char *path, char *err, size_t errlen);

/* Writes `len` bytes to path atomically (temp + fsync + rename + directory fsync). */
int atomic_write(const char *path, const void *data, size_t len, char *err, size_t errlen);
/* Reads a whole file; returns NULL (and sets err) on failure. */
void *read_file(const char *path, size_t *len, char *err, size_t errlen);

uint32_t crc32c(uint32_t crc, const void *data, size_t len);

#endif
