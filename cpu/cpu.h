/* Prototypes of the CPU reference operators (one file per operator in cpu/).
 * Shapes and math are documented at each definition and in core/ops.h. */
#ifndef CONVNET_CPU_H
#define CONVNET_CPU_H

#include <stddef.h>
#include <stdint.h>
#include "core/real.h"

/* gemm.c: C[M,N] = op(A)[M,K] op(B)[K,N] + beta*C, row-major; op(X) = X or X^T.
 * beta == 0 never reads C. gemm_ref is the plain triple loop kept for tests. */
void gemm_ref(int transA, int transB, int M, int N, int K, const real *A, int lda,
              const real *B, int ldb, real beta, real *C, int ldc);
void gemm(int transA, int transB, int M, int N, int K, const real *A, int lda,
          const real *B, int ldb, real beta, real *C, int ldc);

#ifndef CONVNET_REAL_DOUBLE
/* gemm_fast.c: packed AVX2/FMA GEMM (float only); gemm_fast_available() says if the CPU
 * runs the vector kernel (else a plain C micro-kernel with the same packing). */
void gemm_fast(int transA, int transB, int M, int N, int K, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc);
int gemm_fast_available(void);
const char *gemm_fast_isa(void);   /* "avx512", "avx2+fma" or "plain C" */
#endif

/* im2col.c */
void im2col(real *col, const real *in, int C, int H, int W, int R, int S,
            int stride, int pad, int P, int Q);
void im2col_t(real *colT, const real *in, int C, int H, int W, int R, int S,
              int stride, int pad, int P, int Q);
void col2im(real *in, const real *col, int C, int H, int W, int R, int S,
            int stride, int pad, int P, int Q);

/* conv2d.c; the weight gradient sums the batch in this many fixed chunks */
#define CONV_DW_CHUNKS 8
void conv2d_forward(real *out, const real *in, const real *weight,
                    int N, int C, int H, int W, int K, int R, int S,
                    int stride, int pad, real *workspace);
void conv2d_backward_input(real *din, const real *dout, const real *weight,
                           int N, int C, int H, int W, int K, int R, int S,
                           int stride, int pad, real *workspace);
void conv2d_backward_weight(real *dweight, const real *dout, const real *in,
                            int N, int C, int H, int W, int K, int R, int S,
                            int stride, int pad, real *workspace);
/* winograd.c: 3x3 convolutions at stride 1 (pad 0..2) by Winograd's F(m x m, 3 x 3), m = 2 or
 * 4 (winograd_supported); the same results as conv2d_forward / _backward_input /
 * _backward_weight up to rounding. Readable: the definition fast Winograd kernels are tested against. */
int winograd_supported(int m);
void winograd_conv3x3_forward(real *out, const real *in, const real *weight, int N, int C, int H, int W, int K,
                              int pad, int m);
void winograd_conv3x3_backward_input(real *din, const real *dout, const real *weight, int N, int C, int H, int W,
                                     int K, int pad, int m);
void winograd_conv3x3_backward_weight(real *dweight, const real *dout, const real *in, int N, int C, int H, int W,
                                      int K, int pad, int m);
void bias_forward(real *out, const real *bias, int N, int K, int HW);
void bias_backward(real *dbias, const real *dout, int N, int K, int HW);

/* batchnorm.c. batchnorm_sync: NULL, or (data-parallel training, core/dist.h) a function
 * that replaces v[0..n-1] by its sum over all processes; the training statistics and the
 * backward's sums then cover the whole batch (synchronized batchnorm). cpu/fast/ uses it too. */
extern void (*batchnorm_sync)(double *v, int n);
void batchnorm_forward_train(real *out, real *save_mean, real *save_invstd,
                             real *running_mean, real *running_var,
                             const real *in, const real *gamma, const real *beta,
                             int N, int C, int HW, real momentum, real eps);
void batchnorm_forward_eval(real *out, const real *in, const real *gamma, const real *beta,
                            const real *running_mean, const real *running_var,
                            int N, int C, int HW, real eps);
void batchnorm_backward(real *din, real *dgamma, real *dbeta, const real *dout,
                        const real *in, const real *gamma, const real *save_mean,
                        const real *save_invstd, int N, int C, int HW);

/* relu.c, add.c */
void relu_forward(real *out, const real *in, size_t n);
void relu_backward(real *din, const real *dout, const real *out, size_t n);
void add_forward(real *out, const real *a, const real *b, size_t n);
void add_inplace(real *y, const real *x, size_t n);
void scale_inplace(real *y, real a, size_t n);   /* y *= a */

/* pool.c */
void maxpool2d_forward(real *out, int32_t *argmax, const real *in,
                       int N, int C, int H, int W, int k, int stride, int pad);
void maxpool2d_backward(real *din, const real *dout, const int32_t *argmax,
                        int N, int C, int H, int W, int k, int stride, int pad);
void avgpool2d_forward(real *out, const real *in,
                       int N, int C, int H, int W, int k, int stride, int pad);
void avgpool2d_backward(real *din, const real *dout,
                        int N, int C, int H, int W, int k, int stride, int pad);

/* linear.c */
void linear_forward(real *out, const real *in, const real *weight, const real *bias,
                    int N, int I, int O);
void linear_backward(real *din, real *dweight, real *dbias, const real *dout,
                     const real *in, const real *weight, int N, int I, int O);

/* softmax_xent.c */
void softmax_xent_forward(real *losses, real *probs, int32_t *correct,
                          const real *logits, const int32_t *labels, int N, int C);
void softmax_xent_backward(real *dlogits, const real *probs, const int32_t *labels,
                           int N, int C);

/* sgd.c */
void sgd_step(real *w, const real *g, real *buf, size_t n,
              real lr, real momentum, real wd, int first_step);

#endif
