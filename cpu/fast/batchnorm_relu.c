/* Batchnorm fused with its ReLU, for the fast CPU path (math of cpu/batchnorm.c and cpu/relu.c).
 * x [N,C,HW]; per channel c over M = N*HW values.
 *
 *   forward_train  one read of x for both statistics (sums of x - x0 and (x - x0)^2, shifted
 *                  by the channel's first value x0 so the variance does not cancel; each image
 *                  plane summed in float vector lanes, the planes added in double),
 *                  then one pass  y = max(scale*x + shift, 0)  (relu = 0: no max)
 *   forward_eval   one pass with the running statistics
 *   backward       dy' = dy * [relu_out > 0] (mask NULL: dy' = dy) is never stored:
 *                  pass 1 sums dy' and dy'*(x - mean), pass 2 writes
 *                  dx = gamma*invstd/M * (M dy' - sum dy' - xhat * sum dy' xhat) (+ add)
 * Threads split images: each streams whole images, memory in order (splitting channels
 * instead strides through memory a plane at a time). Each channel's sums are made per
 * image (vector lanes in a fixed order) and added in image order, so results do not depend
 * on the thread count. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include "cpu/cpu.h"
#include "cpu/fast/fast.h"

#define PLANE(p, n, c) ((p) + ((size_t)(n) * C + (c)) * HW)

/* The per-plane loops, each compiled for AVX-512, AVX2 and plain x86-64 and picked at load
 * time by the CPU (GCC target_clones): the same source, vectorized for what the CPU has. */
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

/* sums of x - x0 and (x - x0)^2 over one plane */
CLONES static void plane_stats(const float *x, int HW, float x0, double *s1, double *s2)
{
    float a = 0, b = 0;
    #pragma omp simd reduction(+ : a, b)
    for (int i = 0; i < HW; i++) { float d = x[i] - x0; a += d; b += d * d; }
    *s1 += a;
    *s2 += b;
}

/* y = x*scale + shift, then max(., 0) when relu */
CLONES static void plane_apply(float *y, const float *x, int HW, float scale, float shift, int relu)
{
    if (relu) {
        #pragma omp simd
        for (int i = 0; i < HW; i++) { float v = x[i] * scale + shift; y[i] = v > 0 ? v : 0; }
    } else {
        #pragma omp simd
        for (int i = 0; i < HW; i++) y[i] = x[i] * scale + shift;
    }
}

/* sums of g and g*(x - mean) with g = dy * [m > 0] (m NULL: g = dy) */
CLONES static void plane_bwd_sums(const float *dy, const float *m, const float *x, int HW,
                                  float mean, double *sdy, double *sdyx)
{
    float a = 0, b = 0;
    if (m) {
        #pragma omp simd reduction(+ : a, b)
        for (int i = 0; i < HW; i++) {
            float d = dy[i], g = m[i] > 0 ? d : 0;   /* unconditional load: no branch */
            a += g;
            b += g * (x[i] - mean);
        }
    } else {
        #pragma omp simd reduction(+ : a, b)
        for (int i = 0; i < HW; i++) { a += dy[i]; b += dy[i] * (x[i] - mean); }
    }
    *sdy += a;
    *sdyx += b;
}

/* dx = k1 * g - k0 - (x - mean) * k2  (+ add) */
CLONES static void plane_bwd_apply(float *dx, const float *dy, const float *m, const float *x,
                                   const float *add, int HW, float mean, float k0, float k1, float k2)
{
    if (m && add) {
        #pragma omp simd
        for (int i = 0; i < HW; i++) {
            float d = dy[i], g = m[i] > 0 ? d : 0;
            dx[i] = (k1 * g - k0 - (x[i] - mean) * k2) + add[i];
        }
    } else if (m) {
        #pragma omp simd
        for (int i = 0; i < HW; i++) {
            float d = dy[i], g = m[i] > 0 ? d : 0;
            dx[i] = k1 * g - k0 - (x[i] - mean) * k2;
        }
    } else if (add) {
        #pragma omp simd
        for (int i = 0; i < HW; i++) dx[i] = (k1 * dy[i] - k0 - (x[i] - mean) * k2) + add[i];
    } else {
        #pragma omp simd
        for (int i = 0; i < HW; i++) dx[i] = k1 * dy[i] - k0 - (x[i] - mean) * k2;
    }
}

/* Passes run image by image (each thread streams whole images, memory in order); the
 * per-(image, channel) sums land in part[n][c][2] and are added in image order. */
static double *parts(int N, int C)
{
    double *p = malloc(sizeof(double) * 2 * (size_t)N * C);
    if (!p) { fprintf(stderr, "convnet: out of memory (batchnorm sums)\n"); exit(1); }
    return p;
}

/* Batchnorm's training statistics from per-image sums: part[n][c] = the sums of x - x0 and
 * (x - x0)^2 over image n's plane of channel c, with x0 = x0[c] (x0n NULL) or x0n[n][c] (a
 * shift per image: sums made in a conv's store, which knows no value of other images). The
 * per-image sums are moved to one shift per channel, X0 = x0[c] or x0n[0][c] (over several
 * processes the running mean, which they share), in double (one rounding a term):
 *   sum (x - X0) = s1 + HW d,  sum (x - X0)^2 = s2 + 2 d s1 + HW d^2,  d = x0n[n][c] - X0,
 * and added in image order; then the mean, the biased variance (normalization), the running
 * statistics (unbiased variance) and the y = x scale + shift coefficients (scale, shift may
 * be NULL). */
static void finish_stats(float *scale, float *shift, float *save_mean, float *save_invstd, float *running_mean,
                         float *running_var, const double *part, const float *x0, const float *x0n,
                         const float *gamma, const float *beta, int N, int C, int HW, float momentum, float eps)
{
    double M = (double)N * HW, *tot = malloc(sizeof(double) * (2 * (size_t)C + 1));
    double *X0 = malloc(sizeof(double) * (size_t)C);
    if (!tot || !X0) { fprintf(stderr, "convnet: out of memory (batchnorm)\n"); exit(1); }
    for (int c = 0; c < C; c++) {
        double s1 = 0, s2 = 0;
        if (!x0n) {
            X0[c] = x0[c];
            for (int n = 0; n < N; n++) { s1 += part[((size_t)n * C + c) * 2]; s2 += part[((size_t)n * C + c) * 2 + 1]; }
        } else {
            X0[c] = batchnorm_sync ? running_mean[c] : x0n[c];
            for (int n = 0; n < N; n++) {
                double p1 = part[((size_t)n * C + c) * 2], p2 = part[((size_t)n * C + c) * 2 + 1];
                double d = (double)x0n[(size_t)n * C + c] - X0[c];
                s1 += p1 + HW * d;
                s2 += p2 + 2 * d * p1 + HW * d * d;
            }
        }
        tot[c] = s1;
        tot[C + c] = s2;
    }
    tot[2 * C] = M;
    if (batchnorm_sync) batchnorm_sync(tot, 2 * C + 1);
    M = tot[2 * C];
    for (int c = 0; c < C; c++) {
        double s1 = tot[c], s2 = tot[C + c];
        double dmean = s1 / M, mean = X0[c] + dmean;
        double var = s2 / M - dmean * dmean;
        if (var < 0) var = 0;
        double invstd = 1.0 / sqrt(var + eps);
        if (scale) scale[c] = (float)(gamma[c] * invstd);
        if (shift) shift[c] = (float)(beta[c] - mean * gamma[c] * invstd);
        save_mean[c] = (float)mean;
        save_invstd[c] = (float)invstd;
        double unbiased = M > 1 ? var * M / (M - 1) : var;
        running_mean[c] = (float)((1 - momentum) * running_mean[c] + momentum * mean);
        running_var[c] = (float)((1 - momentum) * running_var[c] + momentum * unbiased);
    }
    free(tot);
    free(X0);
}

/* The batch statistics of in (one read), the running-stat update and the per-channel
 * y = x*scale + shift coefficients of the training-mode batchnorm. */
static void train_coeffs(float *scale, float *shift, float *save_mean, float *save_invstd,
                         float *running_mean, float *running_var, const float *in,
                         const float *gamma, const float *beta, int N, int C, int HW,
                         float momentum, float eps)
{
    /* the shift x0 of each channel's sums: its first value; over several processes (whose
     * sums are added, cpu/cpu.h) one they share: the running mean */
    double *part = parts(N, C);
    float *x0 = malloc(sizeof(float) * (size_t)C);
    if (!x0) { fprintf(stderr, "convnet: out of memory (batchnorm)\n"); exit(1); }
    for (int c = 0; c < C; c++) x0[c] = batchnorm_sync ? running_mean[c] : PLANE(in, 0, c)[0];
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            double *pc = part + ((size_t)n * C + c) * 2;
            pc[0] = pc[1] = 0;
            plane_stats(PLANE(in, n, c), HW, x0[c], &pc[0], &pc[1]);
        }
    finish_stats(scale, shift, save_mean, save_invstd, running_mean, running_var, part, x0, NULL, gamma, beta,
                 N, C, HW, momentum, eps);
    free(part);
    free(x0);
}

static void eval_coeffs(float *scale, float *shift, const float *gamma, const float *beta,
                        const float *running_mean, const float *running_var, int C, float eps)
{
    for (int c = 0; c < C; c++) {
        double invstd = 1.0 / sqrt((double)running_var[c] + eps);
        scale[c] = (float)(gamma[c] * invstd);
        shift[c] = (float)(beta[c] - running_mean[c] * gamma[c] * invstd);
    }
}

static void forward_train(float *out, float *save_mean, float *save_invstd, float *running_mean,
                          float *running_var, const float *in, const float *gamma,
                          const float *beta, int N, int C, int HW, float momentum, float eps,
                          int relu)
{
    float *scale = malloc(sizeof(float) * 2 * (size_t)C), *shift = scale + C;
    if (!scale) { fprintf(stderr, "convnet: out of memory (batchnorm)\n"); exit(1); }
    train_coeffs(scale, shift, save_mean, save_invstd, running_mean, running_var, in, gamma, beta,
                 N, C, HW, momentum, eps);
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) plane_apply(PLANE(out, n, c), PLANE(in, n, c), HW, scale[c], shift[c], relu);
    free(scale);
}

static void forward_eval(float *out, const float *in, const float *gamma, const float *beta,
                         const float *running_mean, const float *running_var, int N, int C,
                         int HW, float eps, int relu)
{
    float *scale = malloc(sizeof(float) * 2 * (size_t)C), *shift = scale + C;
    if (!scale) { fprintf(stderr, "convnet: out of memory (batchnorm)\n"); exit(1); }
    eval_coeffs(scale, shift, gamma, beta, running_mean, running_var, C, eps);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) plane_apply(PLANE(out, n, c), PLANE(in, n, c), HW, scale[c], shift[c], relu);
    free(scale);
}

/* dgamma, dbeta and the apply's coefficients k[c][3] of batchnorm's backward,
 * dx = k1 dy' - k0 - (x - mean) k2, from the per-image sums [N][C][2] of dy' and of
 * dy' (x - mean), added in image order (over several processes: the whole batch's) */
static void backward_coeffs(float *k, float *dgamma, float *dbeta, const float *gamma, const float *save_invstd,
                            int N, int C, int HW, const double *sums)
{
    double M = (double)N * HW;
    double *tot = malloc(sizeof(double) * (2 * (size_t)C + 1));   /* sum dy' [C], sum dy' xhat [C], M */
    if (!tot) { fprintf(stderr, "convnet: out of memory (batchnorm)\n"); exit(1); }
    for (int c = 0; c < C; c++) {
        double sdy = 0, sdyx = 0;
        for (int n = 0; n < N; n++) { sdy += sums[((size_t)n * C + c) * 2]; sdyx += sums[((size_t)n * C + c) * 2 + 1]; }
        sdyx *= save_invstd[c];             /* sum dy' * xhat */
        dbeta[c] = (float)sdy;              /* this process's: a gradient */
        dgamma[c] = (float)sdyx;
        tot[c] = sdy;
        tot[C + c] = sdyx;
    }
    tot[2 * C] = M;
    if (batchnorm_sync) batchnorm_sync(tot, 2 * C + 1);   /* the whole batch's (cpu/cpu.h) */
    M = tot[2 * C];
    for (int c = 0; c < C; c++) {
        double invstd = save_invstd[c], sdy = tot[c], sdyx = tot[C + c];
        double f = gamma[c] * invstd / M;   /* dx = k1 * dy' - k0 - (x - mean) * k2 */
        k[3 * c] = (float)(f * sdy);
        k[3 * c + 1] = (float)(f * M);
        k[3 * c + 2] = (float)(f * sdyx * invstd);
    }
    free(tot);
}

/* sums: NULL (computed here), or [N][C][2] per image sums of dy' and dy'*(x - mean) made
 * by the caller (the conv backward-input epilogue); added in image order. */
static void backward(float *din, float *dgamma, float *dbeta, const float *dout, const float *mask,
                     const float *in, const float *add, const float *gamma, const float *save_mean,
                     const float *save_invstd, int N, int C, int HW, const double *sums)
{
    double *part = NULL;
    if (!sums) {
        part = parts(N, C);
        #pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++) {
                double *pc = part + ((size_t)n * C + c) * 2;
                pc[0] = pc[1] = 0;
                plane_bwd_sums(PLANE(dout, n, c), mask ? PLANE(mask, n, c) : NULL, PLANE(in, n, c), HW,
                               save_mean[c], &pc[0], &pc[1]);
            }
        sums = part;
    }
    float *k = malloc(sizeof(float) * 3 * (size_t)C);
    if (!k) { fprintf(stderr, "convnet: out of memory (batchnorm)\n"); exit(1); }
    backward_coeffs(k, dgamma, dbeta, gamma, save_invstd, N, C, HW, sums);
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            plane_bwd_apply(PLANE(din, n, c), PLANE(dout, n, c), mask ? PLANE(mask, n, c) : NULL,
                            PLANE(in, n, c), add ? PLANE(add, n, c) : NULL, HW, save_mean[c],
                            k[3 * c], k[3 * c + 1], k[3 * c + 2]);
    free(k);
    free(part);
}

void batchnorm_fast_forward_train(float *out, float *save_mean, float *save_invstd,
                                  float *running_mean, float *running_var, const float *in,
                                  const float *gamma, const float *beta, int N, int C, int HW,
                                  float momentum, float eps)
{
    forward_train(out, save_mean, save_invstd, running_mean, running_var, in, gamma, beta, N, C,
                  HW, momentum, eps, 0);
}

void batchnorm_relu_fast_forward_train(float *out, float *save_mean, float *save_invstd,
                                       float *running_mean, float *running_var, const float *in,
                                       const float *gamma, const float *beta, int N, int C, int HW,
                                       float momentum, float eps)
{
    forward_train(out, save_mean, save_invstd, running_mean, running_var, in, gamma, beta, N, C,
                  HW, momentum, eps, 1);
}

void batchnorm_fast_forward_eval(float *out, const float *in, const float *gamma, const float *beta,
                                 const float *running_mean, const float *running_var, int N, int C,
                                 int HW, float eps)
{
    forward_eval(out, in, gamma, beta, running_mean, running_var, N, C, HW, eps, 0);
}

void batchnorm_relu_fast_forward_eval(float *out, const float *in, const float *gamma,
                                      const float *beta, const float *running_mean,
                                      const float *running_var, int N, int C, int HW, float eps)
{
    forward_eval(out, in, gamma, beta, running_mean, running_var, N, C, HW, eps, 1);
}

void batchnorm_fast_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                             const float *in, const float *gamma, const float *save_mean,
                             const float *save_invstd, int N, int C, int HW)
{
    backward(din, dgamma, dbeta, dout, NULL, in, NULL, gamma, save_mean, save_invstd, N, C, HW, NULL);
}

void relu_batchnorm_fast_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                                  const float *relu_out, const float *in, const float *add,
                                  const float *gamma, const float *save_mean,
                                  const float *save_invstd, int N, int C, int HW)
{
    backward(din, dgamma, dbeta, dout, relu_out, in, add, gamma, save_mean, save_invstd, N, C, HW, NULL);
}

void batchnorm_fast_backward_from_sums(float *din, float *dgamma, float *dbeta, const float *g,
                                       const float *in, const float *add, const float *gamma,
                                       const float *save_mean, const float *save_invstd, int N,
                                       int C, int HW, const double *sums)
{
    backward(din, dgamma, dbeta, g, NULL, in, add, gamma, save_mean, save_invstd, N, C, HW, sums);
}

void batchnorm_fast_train_coeffs(float *scale, float *shift, float *save_mean, float *save_invstd,
                                 float *running_mean, float *running_var, const float *in,
                                 const float *gamma, const float *beta, int N, int C, int HW,
                                 float momentum, float eps)
{
    train_coeffs(scale, shift, save_mean, save_invstd, running_mean, running_var, in, gamma, beta,
                 N, C, HW, momentum, eps);
}

void batchnorm_fast_eval_coeffs(float *scale, float *shift, const float *gamma, const float *beta,
                                const float *running_mean, const float *running_var, int C, float eps)
{
    eval_coeffs(scale, shift, gamma, beta, running_mean, running_var, C, eps);
}

void batchnorm_fast_stats_from_sums(float *save_mean, float *save_invstd, float *running_mean, float *running_var,
                                    const double *part, const float *x0n, const float *gamma, const float *beta,
                                    int N, int C, int HW, float momentum, float eps)
{
    finish_stats(NULL, NULL, save_mean, save_invstd, running_mean, running_var, part, NULL, x0n, gamma, beta, N, C,
                 HW, momentum, eps);
}

void batchnorm_scale_shift(float *scale, float *shift, const float *gamma, const float *beta,
                           const float *save_mean, const float *save_invstd, int C)
{
    for (int c = 0; c < C; c++) {
        scale[c] = gamma[c] * save_invstd[c];
        shift[c] = beta[c] - save_mean[c] * scale[c];
    }
}

void batchnorm_fast_backward_coeffs(float *k, float *dgamma, float *dbeta, const float *gamma, const float *save_invstd,
                                    int N, int C, int HW, const double *sums)
{
    backward_coeffs(k, dgamma, dbeta, gamma, save_invstd, N, C, HW, sums);
}
