#include <math.h>
#include <stdlib.h>
#include "core/rng.h"
#include "tests/gradcheck.h"

GradResult grad_check(double *x, size_t n, const double *analytic, loss_fn f, void *ctx)
{
    GradResult r = {0, 0, 0, 0};
    double *num = malloc(n * sizeof(double));
    char *skip = calloc(n, 1);
    double maxnum = 0;
    for (size_t i = 0; i < n; i++) {
        double x0 = x[i];
        int kink = 0;
        x[i] = x0 + GRAD_H;
        double lp = f(ctx, &kink);
        x[i] = x0 - GRAD_H;
        double lm = f(ctx, &kink);
        x[i] = x0;
        num[i] = (lp - lm) / (2 * GRAD_H);
        skip[i] = (char)kink;
        if (kink) r.skipped++;
        else {
            r.checked++;
            if (fabs(num[i]) > maxnum) maxnum = fabs(num[i]);
        }
    }
    double e = 0, es = 0;
    for (size_t i = 0; i < n; i++) {
        if (skip[i]) continue;
        double d = fabs(analytic[i] - num[i]), ds = fabs(1.01 * analytic[i] - num[i]);
        if (d > e) e = d;
        if (ds > es) es = ds;
    }
    double denom = maxnum > 0 ? maxnum : 1e-30;
    r.err = e / denom;
    r.err_scaled = es / denom;
    if (maxnum == 0) r.err = r.err_scaled = INFINITY;   /* an all-zero gradient proves nothing */
    free(num);
    free(skip);
    return r;
}

double dot(const double *a, const double *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

void fill_normal(double *x, size_t n, unsigned seed)
{
    Rng r;
    rng_seed(&r, seed, 7);
    for (size_t i = 0; i < n; i++) x[i] = rng_normal(&r);
}

void fill_normal_f(float *x, size_t n, unsigned seed)
{
    Rng r;
    rng_seed(&r, seed, 7);
    for (size_t i = 0; i < n; i++) x[i] = (float)rng_normal(&r);
}

void fill_uniform(double *x, size_t n, double lo, double hi, unsigned seed)
{
    Rng r;
    rng_seed(&r, seed, 9);
    for (size_t i = 0; i < n; i++) x[i] = rng_uniform_range(&r, lo, hi);
}
