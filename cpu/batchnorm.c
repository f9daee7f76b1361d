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
 * `omp simd` vectorizes the inner loops (a fixed lane order: thread-count independent). */
#include <math.h>
#include "cpu/cpu.h"

#define X(p, n, c) ((p) + ((size_t)(n) * C + (c)) * HW)

void batchnorm_forward_train(real *out, real *save_mean, real *save_invstd,
                             real *running_mean, real *running_var,
                             const real *in, const real *gamma, const real *beta,
                             int N, int C, int HW, real momentum, real eps)
{
    double M = (double)N * HW;
    #pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double sum = 0, sq = 0;
        for (int n = 0; n < N; n++) {
            const real *x = X(in, n, c);
            #pragma omp simd reduction(+ : sum)
            for (int i = 0; i < HW; i++) sum += x[i];
        }
        double mean = sum / M;
        for (int n = 0; n < N; n++) {
            const real *x = X(in, n, c);
            #pragma omp simd reduction(+ : sq)
            for (int i = 0; i < HW; i++) { double d = x[i] - mean; sq += d * d; }
        }
        double var = sq / M;
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
    double M = (double)N * HW;
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
}
