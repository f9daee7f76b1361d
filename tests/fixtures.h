/* Helpers shared by the training tests: a small synthetic data set, the tiny net's training
 * configuration, and byte equality of two files. */
#ifndef CONVNET_TEST_FIXTURES_H
#define CONVNET_TEST_FIXTURES_H
#include "core/train.h"

/* n images whose brightness depends on the class (so a net can learn), plus noise */
Dataset fixture_set(int n, unsigned seed);
/* preact, 2 stages of 1 block, 4 and 8 channels; `epochs` epochs of batch 32 with 44
 * validation images, validation every epoch, the lr dropping after epoch 1; quiet */
void fixture_config(TrainConfig *c, const Dataset *tr, const Dataset *te, const char *out, int epochs);
/* 1 if both files exist and hold the same bytes */
int fixture_same_file(const char *a, const char *b);
/* rm -rf a (and b unless NULL): a test's directories; system()'s status (0: removed) */
int fixture_remove(const char *a, const char *b);

#endif
