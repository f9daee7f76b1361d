/* Fuzz targets for every parser of outside input (make fuzz; tests/fuzz/README.md).
 *
 * Each target is a plain function over one input's bytes. Built with clang's libFuzzer
 * (CONVNET_LIBFUZZER) a target file also defines LLVMFuzzerTestOneInput; built into the
 * test runner it does not, and tests/test_fuzz.c replays the seeds and every saved crash
 * input through the same functions under `make test` and `make asan`. */
#ifndef CONVNET_FUZZ_H
#define CONVNET_FUZZ_H
#include <stddef.h>
#include <stdint.h>
#include "core/model.h"

int fuzz_safetensors(const uint8_t *data, size_t n);   /* checkpoint_parse */
int fuzz_state(const uint8_t *data, size_t n);         /* train_state_parse */
int fuzz_cifar(const uint8_t *data, size_t n);         /* cifar_parse */
int fuzz_permutation(const uint8_t *data, size_t n);   /* permutation_parse */
int fuzz_cli(const uint8_t *data, size_t n);           /* the three apps' flag parsers */

/* The small model the checkpoint targets load into (2 stages of 1 block, 4 and 8
 * channels: the practical's layers and names, a few KB of weights). */
Model *fuzz_model(void);

/* Writes each target's seed corpus under root/<target>/: a checkpoint and a training state
 * written by the code the apps use, CIFAR-10 records (the first ones of cifar_dir's
 * test_batch.bin when it is there, else made up), a permutation file, and command lines.
 * Returns the number of files written. */
int fuzz_write_seeds(const char *root, const char *cifar_dir);

#ifdef CONVNET_LIBFUZZER
#define FUZZ_ENTRY(fn) \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) { return fn(data, n); }
#else
#define FUZZ_ENTRY(fn)
#endif

#endif
