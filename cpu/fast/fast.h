/* The fast CPU path: kernels that sit beside the readable operators of cpu/ and fill the
 * default CPU op table (core/ops_cpu.c). Each one has the contract of its readable twin and
 * is tested against it (tests/test_fast.c) for every instruction set the machine runs.
 * Kernels are chosen at run time from what the CPU supports; a CPU without AVX2 runs the
 * readable operators. CONVNET_CPU=reference selects the whole readable table instead,
 * CONVNET_ISA=avx2|none caps the instruction set. */
#ifndef CONVNET_CPU_FAST_H
#define CONVNET_CPU_FAST_H

#include <stddef.h>
#include <stdint.h>
#include "core/ops_fused.h"

enum { CPU_ISA_NONE = 0, CPU_ISA_AVX2 = 1, CPU_ISA_AVX512 = 2 };
int cpu_isa_supported(int isa);     /* can this CPU run it */
int cpu_isa_best(void);             /* what the fast kernels use now */
int cpu_isa_force(int isa);         /* tests: use this ISA (-1: automatic); 0 if unsupported */
const char *cpu_isa_name(int isa);

/* conv2d_direct.c: direct convolution (signatures of cpu/conv2d.c). */
void conv2d_direct_forward(float *out, const float *in, const float *weight,
                           int N, int C, int H, int W, int K, int R, int S,
                           int stride, int pad, float *workspace);
/* out = conv(in) + add (add [N,K,P,Q] or NULL): the residual add done in the store */
void conv2d_direct_forward_add(float *out, const float *in, const float *weight, const float *add,
                               int N, int C, int H, int W, int K, int R, int S,
                               int stride, int pad, float *workspace);
void conv2d_direct_backward_input(float *din, const float *dout, const float *weight,
                                  int N, int C, int H, int W, int K, int R, int S,
                                  int stride, int pad, float *workspace);
void conv2d_direct_backward_weight(float *dweight, const float *dout, const float *in,
                                   int N, int C, int H, int W, int K, int R, int S,
                                   int stride, int pad, float *workspace);
/* the forward kernel for output rows of Q pixels into K channels, RS taps a channel */
const char *conv2d_direct_kernel_name(int Q, int K, int RS);
/* rows of 8 pixels or fewer on AVX-512: 1 the channel-vector kernel where it is chosen, 0 8-lane
 * pixel vectors always (tests), -1 $CONVNET_CV (0: as 0) or else 1, read at the next call */
void conv2d_direct_set_cv(int on);
/* 1 when conv2d_direct_backward_relu_bn takes the weight gradient from its padded dout */
int conv2d_direct_wgrad_from_dout(int C, int H, int W, int R, int S, int stride, int pad);

/* winograd.c: Winograd F(2x2, 3x3) forward for 3x3 stride-1 pad-1 convolutions with even H
 * and W and K a multiple of 8 (winograd_fast_supported says; H = P, W = Q); the readable
 * definition is cpu/winograd.c. In the op table: the fused slot's forward where
 * winograd_fast_chosen says (batchnorm_relu_conv2d_direct_forward). */
int winograd_fast_supported(int C, int H, int W, int K, int R, int S, int stride, int pad);
const char *winograd_fast_isa(void);
/* 1 where the fast table's fused forward takes Winograd (the rule is in winograd.c) */
int winograd_fast_chosen(int C, int H, int W, int K, int R, int S, int stride, int pad);
/* -1: the rule, 0: never, 1: wherever supported; -2: $CONVNET_WINOGRAD (0 or 1) or else the
 * rule, read at the next call (the start) */
void winograd_fast_set_mode(int mode);
const char *winograd_fast_choice(void);   /* the choice in words (bench/train_step's kernel line) */
void winograd_fast_forward(float *out, const float *in, const float *weight, int N, int C, int H, int W, int K);
/* the fused slot's form: out = conv(act) (+ add), act = relu(in scale_c + shift_c) stored
 * (when act is not NULL) as conv2d_direct.c's batchnorm+ReLU input copy stores it */
void winograd_fast_forward_bn(float *out, float *act, const float *in, const float *weight, const float *add, int N,
                              int C, int H, int W, int K, const float *scale, const float *shift);
/* backward-input: supported when winograd_fast_supported(K, H, W, C, ...) (C a multiple of 8) */
void winograd_fast_backward_input(float *din, const float *dout, const float *weight, int N, int C, int H, int W,
                                  int K);

/* batchnorm_relu.c: batchnorm (signatures of cpu/batchnorm.c), alone or fused with the ReLU
 * that follows it: out = relu(batchnorm(in)); the fused backward takes the ReLU's output
 * as the mask: din = batchnorm_backward(dout * [relu_out > 0]) (+ add, if not NULL).
 * din may alias dout or add (every pass goes element by element). */
void batchnorm_fast_forward_train(float *out, float *save_mean, float *save_invstd,
                                  float *running_mean, float *running_var, const float *in,
                                  const float *gamma, const float *beta, int N, int C, int HW,
                                  float momentum, float eps);
void batchnorm_relu_fast_forward_train(float *out, float *save_mean, float *save_invstd,
                                       float *running_mean, float *running_var, const float *in,
                                       const float *gamma, const float *beta, int N, int C, int HW,
                                       float momentum, float eps);
void batchnorm_fast_forward_eval(float *out, const float *in, const float *gamma, const float *beta,
                                 const float *running_mean, const float *running_var, int N, int C,
                                 int HW, float eps);
void batchnorm_relu_fast_forward_eval(float *out, const float *in, const float *gamma,
                                      const float *beta, const float *running_mean,
                                      const float *running_var, int N, int C, int HW, float eps);
void batchnorm_fast_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                             const float *in, const float *gamma, const float *save_mean,
                             const float *save_invstd, int N, int C, int HW);
void relu_batchnorm_fast_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                                  const float *relu_out, const float *in, const float *add,
                                  const float *gamma,
                                  const float *save_mean, const float *save_invstd, int N, int C,
                                  int HW);
/* batchnorm's y = x*scale[c] + shift[c] coefficients: training mode (batch statistics of in,
 * save_mean/save_invstd and the running statistics updated, as batchnorm_forward_train) and
 * eval mode (running statistics). */
void batchnorm_fast_train_coeffs(float *scale, float *shift, float *save_mean, float *save_invstd,
                                 float *running_mean, float *running_var, const float *in,
                                 const float *gamma, const float *beta, int N, int C, int HW,
                                 float momentum, float eps);
void batchnorm_fast_eval_coeffs(float *scale, float *shift, const float *gamma, const float *beta,
                                const float *running_mean, const float *running_var, int C, float eps);
/* scale = gamma save_invstd, shift = beta - save_mean scale (float): the coefficients from saved
 * statistics that a forward and the backward recomputing its activations (recompute_act) share */
void batchnorm_scale_shift(float *scale, float *shift, const float *gamma, const float *beta,
                           const float *save_mean, const float *save_invstd, int C);
/* batchnorm's training statistics (save_mean, save_invstd, the running statistics updated) from
 * sums made elsewhere (a conv's store): part[n][c][2] = the sums of x - x0n[n][c] and of
 * (x - x0n[n][c])^2 over image n's plane of channel c */
void batchnorm_fast_stats_from_sums(float *save_mean, float *save_invstd, float *running_mean, float *running_var,
                                    const double *part, const float *x0n, const float *gamma, const float *beta,
                                    int N, int C, int HW, float momentum, float eps);

/* The second half of relu_batchnorm_fast_backward when the first pass was done elsewhere:
 * g = dout * [relu_out > 0] already masked, sums [N][C][2] = per image sum of g and of
 * g * (in - mean). din may alias g. */
void batchnorm_fast_backward_from_sums(float *din, float *dgamma, float *dbeta, const float *g,
                                       const float *in, const float *add, const float *gamma,
                                       const float *save_mean, const float *save_invstd, int N,
                                       int C, int HW, const double *sums);
/* its first half alone: dgamma, dbeta and the coefficients k[C][3] of the apply
 * din = k1 g - k0 - (in - mean) k2 (for a caller that applies it as it reads din) */
void batchnorm_fast_backward_coeffs(float *k, float *dgamma, float *dbeta, const float *gamma, const float *save_invstd,
                                    int N, int C, int HW, const double *sums);

/* conv2d_direct.c: a conv whose input is relu(batchnorm(in)) (the op-table slot
 * batchnorm_relu_conv2d_forward): a = relu(batchnorm(in)) (train: batch statistics, running
 * statistics updated; eval: running statistics), out = conv2d(a) (+ add). The batchnorm and
 * ReLU are applied while the conv copies its input into the padded buffer; a is written there
 * too unless a is NULL (the op table's recompute_act: the backward recomputes it from in). */
void batchnorm_relu_conv2d_direct_forward(float *out, float *a, const float *in, const float *weight,
        const float *add, int N, int C, int H, int W, int K, int R, int S, int stride, int pad,
        float *workspace, float *save_mean, float *save_invstd, float *running_mean,
        float *running_var, const float *gamma, const float *beta, float momentum, float eps,
        int train);

/* conv2d_direct.c: the same in training mode with batchnorm's statistics made where tensors
 * are produced (the op-table slot batchnorm_relu_conv2d_forward_chained, core/ops_fused.h): bn's
 * statistics of `in` made by the call that produced it when in_ready; those of out (after the
 * add) for next[0..n_next) made in the conv's store; a never stored; bn NULL: a plain conv. */
void batchnorm_relu_conv2d_direct_forward_chained(float *out, const float *in, const float *weight,
        const float *add, int N, int C, int H, int W, int K, int R, int S, int stride, int pad,
        const BnRefs *bn, int in_ready, const BnRefs *next, int n_next);

/* conv2d_direct.c: the backward of a conv whose input `in` is relu(batchnorm(bn_in)),
 * continued through that ReLU and batchnorm (the op-table slot conv2d_relu_batchnorm_backward):
 *   dweight = conv2d_backward_weight(dout, in)              (skipped when NULL)
 *   g       = conv2d_backward_input(dout) * [in > 0]        (g: [N,C,H,W] scratch)
 *   din     = batchnorm_backward(g) (+ add)                  (dgamma, dbeta written)
 * At stride 1 both conv gradients run in one pass over the images, and the masking and
 * batchnorm's sums happen in the conv's store (strided: just after each image's spread).
 * din may alias dout. in == NULL: `in` is
 * recomputed where it is read, relu(bn_in scale + shift) with scale = gamma save_invstd and
 * shift = beta - save_mean scale (batchnorm_scale_shift), as the forward applied it. */
void conv2d_direct_backward_relu_bn(float *dweight, float *din, float *g, const float *dout,
                                    const float *in, const float *weight, int N, int C, int H, int W,
                                    int K, int R, int S, int stride, int pad, float *workspace,
                                    float *dgamma, float *dbeta, const float *bn_in, const float *add,
                                    const float *gamma, const float *beta, const float *save_mean,
                                    const float *save_invstd);

/* conv2d_direct.c: the op-table slot conv2d_relu_batchnorm_backward_pair (core/ops_fused.h) on
 * a table with recompute_act: conv2's backward through bn2 (l2), then conv1's through bn1
 * (l1); where conv1's backward reads its dout only through its padded copy (stride 1, weight
 * gradient from the padded dout), bn2's apply is computed in that copy, so d(conv1's output)
 * is never stored. din must not be NULL (no conv2d_backward_weight_bn_grad here). */
void conv2d_direct_backward_relu_bn_pair(float *din, float *g1, float *g2, const float *dout, const ConvBnLayer *l2,
                                         const ConvBnLayer *l1, const float *add, int N);

#endif
