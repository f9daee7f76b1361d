/* Command-line helpers: every malformed value is one clear line and exit 2. */
#ifndef CONVNET_CLI_H
#define CONVNET_CLI_H
#include "core/train.h"

long cli_long(const char *flag, const char *val, long lo, long hi);
double cli_double(const char *flag, const char *val, double lo, double hi);
/* 1 if arg is "--name" or "--name=..." */
int cli_is_flag(const char *arg, const char *name);
/* Value of a flag at argv[*i] ("--flag value" or "--flag=value"); advances *i. */
const char *cli_value(int argc, char **argv, int *i);

/* The flags shared by the training apps (resnet, shuffle). Returns 1 if argv[*i] was one. */
int cli_train_flag(TrainConfig *c, int argc, char **argv, int *i, int *threads);
extern const char cli_train_help[];
void cli_apply_threads(int threads);
/* --gpu-math VALUE: "3xtf32" or "fp32" set as the GPU convolutions' arithmetic
 * (gpu_set_conv_math); anything else, or a mode this build cannot run, exits 2 */
void cli_gpu_math(const char *value);
/* --kernels: "fast" or "reference" (exits 2 otherwise); returns value */
const char *cli_kernels(const char *value);

#endif
