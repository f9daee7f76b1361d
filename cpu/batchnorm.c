/* BatchNorm2d (PyTorch semantics). x [N,C,HW]; statistics per channel c over M = N*HW values.
 *
 * train:  mean_c = (1/M) sum x;  var_c = (1/M) sum (x - mean_c)^2   (biased)
 *         invstd_c = 1/sqrt(var_c + eps);  xhat = (x - mean_c) * invstd_c
 *         y = gamma_c * xhat + beta_c
 *         running_mean = (1-momentum) running_mean + momentum mean_c
 *         running_var  = (1-momentum) running_var  + momentum var_c * M/(M-1)   (UNbiased)
 *         save_mean / save_invstd keep mean_c, invstd_c for the backward pass.
 * eval:   y = gamma_c (x - running_mean_c) / sqrt(running_var_c + eps) + beta_c
 * backward (batch statistics):
 *         dbeta_c  = sum dy;   dgamma_c = sum dy * xhat
 *         dx = gamma_c * invstd_c / M * (M dy - dbeta_c - xhat dgamma_c)
 * Sums are accumulated in double, one channel per loop iteration (threads split channels);
 * `omp simd` vectorizes the inner loops (a fixed lane order: thread-count independent).
 *
 * Data-parallel training (core/dist.h) splits a batch over processes, and the statistics are
 * still the whole batch's (synchronized batchnorm): each per-channel sum, and the count M, is
 * added over the processes by batchnorm_sync between the passes. With one process it is NULL
 * and nothing is added. dgamma and dbeta stay this process's own sums: they are gradients,
 * added over the processes with all the others. */
#include <math.h>
#include <stdlib.h>
#include "cpu/cpu.h"

void (*batchnorm_sync)(double *v, int n);

/* v[0..n-1] over all processes (a no-op with one process) */
static void sync_sums(double *v, int n)
{
    if (batchnorm_sync) batchnorm_sync(v, n);
}

#define X(p, n, c) ((p) + ((size_t)(n) * C + (c)) * HW)

void batchnorm_forward_train(real *out, real *save_mean, real *save_invstd,
                             real *running_mean, real *running_var,
                             const real *in, const real *gamma, const real *beta,
                             int N, int C, int HW, real momentum, real eps)
{
    double *sum = malloc(sizeof(double) * (2 * (size_t)C + 1)), *sq = sum + C + 1;
    #pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double s = 0;
        for (int n = 0; n < N; n++) {
            const real *x = X(in, n, c);
            #pragma omp simd reduction(+ : s)
            for (int i = 0; i < HW; i++) s += x[i];
        }
        sum[c] = s;
    }
    sum[C] = (double)N * HW;
    sync_sums(sum, C + 1);   /* the whole batch's sums and count */
    double M = sum[C];
    #pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double mean = sum[c] / M, q = 0;
        for (int n = 0; n < N; n++) {
            const real *x = X(in, n, c);
            #pragma omp simd reduction(+ : q)
            for (int i = 0; i < HW; i++) { double d = x[i] - mean; q += d * d; }
        }
        sq[c] = q;
    }
    sync_sums(sq, C);
    #pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double mean = sum[c] / M, var = sq[c] / M;
        double invstd = 1.0 / sqrt(var + eps);
        real scale = (real)(gamma[c] * invstd), shift = (real)(beta[c] - mean * gamma[c] * invstd);
        for (int n = 0; n < N; n++) {
            const real *x = X(in, n, c);
            real *y = X(out, n, c);
            #pragma omp simd
            for (int i = 0; i < HW; i++) y[i] = x[i] * scale + shift;
        }
        save_mean[c] = (real)mean;
        save_invstd[c] = (real)invstd;
        double unbiased = M > 1 ? var * M / (M - 1) : var;
        running_mean[c] = (real)((1 - momentum) * running_mean[c] + momentum * mean);
        running_var[c] = (real)((1 - momentum) * running_var[c] + momentum * unbiased);
    }
    free(sum);
}

void batchnorm_forward_eval(real *out, const real *in, const real *gamma, const real *beta,
                            const real *running_mean, const real *running_var,
                            int N, int C, int HW, real eps)
{
    #pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double invstd = 1.0 / sqrt((double)running_var[c] + eps);
        real scale = (real)(gamma[c] * invstd);
        real shift = (real)(beta[c] - running_mean[c] * gamma[c] * invstd);
        for (int n = 0; n < N; n++) {
            const real *x = X(in, n, c);
            real *y = X(out, n, c);
            #pragma omp simd
            for (int i = 0; i < HW; i++) y[i] = x[i] * scale + shift;
        }
    }
}

void batchnorm_backward(real *din, real *dgamma, real *dbeta, const real *dout,
                        const real *in, const real *gamma, const real *save_mean,
                        const real *save_invstd, int N, int C, int HW)
{
    double *sums = malloc(sizeof(double) * (2 * (size_t)C + 1));   /* sum dy [C], sum dy xhat [C], M */
    #pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double mean = save_mean[c], invstd = save_invstd[c];
        double sdy = 0, sdyx = 0;
        for (int n = 0; n < N; n++) {
            const real *x = X(in, n, c), *dy = X(dout, n, c);
            #pragma omp simd reduction(+ : sdy, sdyx)
            for (int i = 0; i < HW; i++) { sdy += dy[i]; sdyx += dy[i] * (x[i] - mean) * invstd; }
        }
        dbeta[c] = (real)sdy;
        dgamma[c] = (real)sdyx;
        sums[c] = sdy;
        sums[C + c] = sdyx;
    }
    sums[2 * C] = (double)N * HW;
    sync_sums(sums, 2 * C + 1);   /* the whole batch's */
    double M = sums[2 * C];
    #pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double mean = save_mean[c], invstd = save_invstd[c], sdy = sums[c], sdyx = sums[C + c];
        double k = gamma[c] * invstd / M;
        for (int n = 0; n < N; n++) {
            const real *x = X(in, n, c), *dy = X(dout, n, c);
            real *dx = X(din, n, c);
            #pragma omp simd
            for (int i = 0; i < HW; i++) {
                double xhat = (x[i] - mean) * invstd;
                dx[i] = (real)(k * (M * dy[i] - sdy - xhat * sdyx));
            }
        }
    }
    free(sums);
}
