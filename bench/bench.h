/* Helpers shared by the bench programs. */
#ifndef CONVNET_BENCH_H
#define CONVNET_BENCH_H
double median(double *v, int n);
/* Median seconds of `reps` calls of fn(ctx) after `warmup` calls. */
double time_median(void (*fn)(void *), void *ctx, int warmup, int reps);
#endif
