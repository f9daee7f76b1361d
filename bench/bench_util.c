/* Shared by the bench programs: median timing. */
#include <stdlib.h>
#include "bench/bench.h"
#include "core/util.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double time_median(void (*fn)(void *), void *ctx, int warmup, int reps)
{
    for (int i = 0; i < warmup; i++) fn(ctx);
    double *t = xmalloc(sizeof(double) * reps);
    for (int i = 0; i < reps; i++) {
        double t0 = now_seconds();
        fn(ctx);
        t[i] = now_seconds() - t0;
    }
    double m = median(t, reps);
    free(t);
    return m;
}
