/* Checkpoints.
 *
 * Weights: safetensors (8-byte little-endian header length, JSON header, raw little-endian
 * data) with exactly the PyTorch state_dict names and shapes of the reference model
 * (model.<...>.weight / bias / running_mean / running_var as F32, num_batches_tracked as I64
 * scalars), so a trained net loads into the PyTorch notebook and back.
 *
 * Training state (for --resume): one binary file with a magic, a version, the epoch just
 * finished (and, for a run stopped by Ctrl-C or SIGTERM, the steps done in the next one with
 * its running loss/accuracy sums), the optimizer step count, best validation accuracy and its epoch, the seed, the
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
#include "core/files.h"
#include "core/model.h"

int checkpoint_save(const Model *m, const char *path, char *err, size_t errlen);
/* Strict: every tensor of the model must be present with the same shape and dtype, and
 * nothing else. On error the model is unchanged. */
int checkpoint_load(Model *m, const char *path, char *err, size_t errlen);
/* The same on a file's bytes (path only names it in messages); fuzzed by tests/fuzz/. */
int checkpoint_parse(Model *m, const char *bytes, size_t len, const char *path, char *err, size_t errlen);
/* Larger checkpoint or state files are refused before they are read. */
#define CHECKPOINT_MAX_BYTES ((size_t)1 << 30)

typedef struct TrainState {
    int epoch;              /* epochs completed */
    long steps;             /* optimizer steps taken in all */
    double best_val;
    int best_epoch;
    uint64_t seed;
    /* a run stopped inside an epoch (Ctrl-C, SIGTERM): steps done in epoch `epoch` and that
     * epoch's running sums so far; all 0 at an epoch boundary */
    int step;
    long correct, seen;
    double loss_sum, seconds;
} TrainState;

int train_state_save(const Model *m, const TrainState *st, const char *path, char *err, size_t errlen);
int train_state_load(Model *m, TrainState *st, const char *path, char *err, size_t errlen);
int train_state_parse(Model *m, TrainState *st, const char *bytes, size_t len, const char *path, char *err, size_t errlen);


uint32_t crc32c(uint32_t crc, const void *data, size_t len);

#endif
