/* The fused slots of the fast tables and the scheduling the scheduled walk uses
 * (core/net_scheduled.c). Each slot does the work of several operators of core/ops.h in fewer
 * passes over memory; its comment says which, and fused_cpu_ref below is that definition
 * written out (the operators in turn), which the fused kernels are tested against. The
 * reference tables have no FusedOps (Ops.fused == NULL) and run the plain walk instead.
 *
 * Which fusion is which (the plain operators each one replaces):
 *   batchnorm_relu_forward_*         batchnorm_forward_*, relu_forward
 *   relu_batchnorm_backward          relu_backward, batchnorm_backward, add_inplace
 *   batchnorm_relu_conv2d_forward    batchnorm_forward_*, relu_forward, conv2d_forward, add_inplace
 *   _chained                         ... with batchnorm's statistics made in the producing conv's store
 *   conv2d_relu_batchnorm_backward   conv2d_backward_weight, conv2d_backward_input,
 *                                    relu_backward, batchnorm_backward, add_inplace
 *   _pair                            the above for both layers of a pre-activation block's main path
 *   conv2d_backward_weight_bn_grad   batchnorm_backward's apply, add_inplace, conv2d_backward_weight
 *   classifier_backward              softmax_xent_backward, linear_backward, avgpool2d_backward
 *   branch_*                         (no operator: lets independent work run side by side)
 */
#ifndef CONVNET_OPS_FUSED_H
#define CONVNET_OPS_FUSED_H
#include "core/ops.h"

/* One training-mode batchnorm's buffers and settings (batchnorm_relu_conv2d_forward_chained) */
typedef struct BnRefs {
    float *save_mean, *save_invstd, *running_mean, *running_var;   /* [C], written */
    const float *gamma, *beta;                                     /* [C] */
    float momentum, eps;
} BnRefs;

/* One layer of a pre-activation block's backward as conv2d_relu_batchnorm_backward takes it
 * (conv2d_relu_batchnorm_backward_pair): a bias-free conv whose input is relu(bn(bn_in)). */
typedef struct ConvBnLayer {
    const float *weight, *bn_in;                            /* [K,C,R,S], [N,C,H,W] */
    const float *gamma, *beta, *save_mean, *save_invstd;    /* bn's, [C] */
    float *dweight, *dgamma, *dbeta;                        /* written */
    int C, H, W, K, R, S, stride, pad;
} ConvBnLayer;

typedef struct FusedOps {
    /* 1: the scheduled walk passes a = NULL to batchnorm_relu_conv2d_forward and in = NULL to
     * conv2d_relu_batchnorm_backward, and allocates no buffer for a: the table applies
     * batchnorm+ReLU inside the convolutions' operand reads instead of writing a and reading
     * it back */
    int recompute_act;

    /* ---- batchnorm + ReLU (cpu/fast/batchnorm_relu.c) ----
     * out = relu(batchnorm(in)), arguments as batchnorm_forward_train / _eval */
    void (*batchnorm_relu_forward_train)(float *out, float *save_mean, float *save_invstd,
                                         float *running_mean, float *running_var,
                                         const float *in, const float *gamma, const float *beta,
                                         int N, int C, int HW, float momentum, float eps);
    void (*batchnorm_relu_forward_eval)(float *out, const float *in, const float *gamma,
                                        const float *beta, const float *running_mean,
                                        const float *running_var, int N, int C, int HW, float eps);
    /* the backward of relu(batchnorm(in)): din = batchnorm_backward(dout * [relu_out > 0])
     * (+ add when add != NULL: a residual gradient summed in the same pass).
     * din may alias dout, not add. */
    void (*relu_batchnorm_backward)(float *din, float *dgamma, float *dbeta, const float *dout,
                                    const float *relu_out, const float *in, const float *add,
                                    const float *gamma, const float *save_mean,
                                    const float *save_invstd, int N, int C, int HW);
    /* the backward of out = conv(in) where in = relu(batchnorm(bn_in)) (conv arguments as
     * conv2d_backward_*, batchnorm's as batchnorm_backward):
     *   dweight = conv2d_backward_weight(dout, in)            (skipped when dweight == NULL)
     *   din = batchnorm_backward(conv2d_backward_input(dout) * [in > 0]) (+ add when add != NULL)
     * dgamma, dbeta written; g: scratch [N,C,H,W] (left unspecified).
     * in == NULL on a table with recompute_act: `in` is recomputed where it is read, as
     * relu(bn_in * scale + shift) with scale = gamma save_invstd, shift = beta - save_mean scale.
     * din may alias dout; g aliases nothing. */
    void (*conv2d_relu_batchnorm_backward)(float *dweight, float *din, float *g, const float *dout,
            const float *in, const float *weight, int N, int C, int H, int W, int K, int R, int S,
            int stride, int pad, float *workspace, float *dgamma, float *dbeta,
            const float *bn_in, const float *add, const float *gamma, const float *beta,
            const float *save_mean, const float *save_invstd);
    /* (NULL on tables without it; the scheduled walk then makes the two calls above) on a table with
     * recompute_act: the backward of a pre-activation block's main path,
     * out = conv2(relu(bn2(conv1(relu(bn1(x)))))), as conv2d_relu_batchnorm_backward
     * for l2 (conv2, bn2; bn_in = conv1's output) and then for l1 (conv1, bn1; bn_in = x):
     * din = d x (+ add; din may alias dout or add), every weight and batchnorm gradient, the
     * same values as the two calls. g2 [N, l2->C, l2->H, l2->W] and g1 [N, l1->C, l1->H, l1->W]:
     * scratch, aliasing nothing (each other included). The table need not store d(conv1's
     * output): conv1's backward may compute each value it reads from bn2's backward (the GPU:
     * bn2's apply pass is not run).
     * din == NULL (tables with conv2d_backward_weight_bn_grad): d x is not written; g1 holds
     * the gradient at bn1's ReLU (before its mask) and l1's dgamma, dbeta are complete, from
     * which conv2d_backward_weight_bn_grad computes d x as it reads it. */
    void (*conv2d_relu_batchnorm_backward_pair)(float *din, float *g1, float *g2, const float *dout,
            const ConvBnLayer *l2, const ConvBnLayer *l1, const float *add, int N);
    /* (NULL on tables without it) conv2d_backward_weight (no workspace) of a convolution whose
     * output is bn->bn_in, the x of a pair called with din == NULL, reading its output
     * gradient as that pair's din would have been: dout = add + batchnorm bn's backward of g1
     * masked by its ReLU, per channel k at each value
     *   dout = add + gamma invstd / M (M [x scale + shift > 0] g1 - dbeta - xhat dgamma)
     * (xhat = (x - mean) invstd, M = N H W; bn's saved statistics and the pair's dgamma and
     * dbeta), so that d x is never stored (the GPU: bn1's apply pass of the first block is
     * not run; the stem's weight gradient computes it). add: NULL or [N, K, P, Q]. */
    void (*conv2d_backward_weight_bn_grad)(float *dweight, const float *in, int N, int C, int H, int W, int K,
            int R, int S, int stride, int pad, const float *g1, const ConvBnLayer *bn, const float *add);
    /* a conv whose input is relu(batchnorm(in)): a = relu(batchnorm(in)) ([N,C,H,W], train:
     * batch statistics and running update as batchnorm_forward_train, else running
     * statistics), out = conv2d_forward(a) (+ add when add != NULL).
     * a == NULL on a table with recompute_act: a is not stored; the convolution applies
     * batchnorm and ReLU to each value of `in` as it reads it. */
    void (*batchnorm_relu_conv2d_forward)(float *out, float *a, const float *in,
            const float *weight, const float *add, int N, int C, int H, int W, int K, int R,
            int S, int stride, int pad, float *workspace, float *save_mean, float *save_invstd,
            float *running_mean, float *running_var, const float *gamma, const float *beta,
            float momentum, float eps, int train);
    /* (NULL on tables without it; the scheduled walk then calls the one above) the same in training
     * mode with a = NULL, with batchnorm's statistics made where the tensor is produced:
     *   in_ready = 1: bn's batch statistics of `in` were made by the call that produced `in`
     *                 (save_mean, save_invstd, running update): no statistics pass here;
     *   next[0..n_next): the batchnorms that will read `out` (after the add): their batch
     *                 statistics of `out` are made here, as a statistics pass would make them.
     *   bn == NULL: no batchnorm+ReLU on the input (a plain bias-free conv: the stem). */
    void (*batchnorm_relu_conv2d_forward_chained)(float *out, const float *in, const float *weight,
            const float *add, int N, int C, int H, int W, int K, int R, int S, int stride, int pad,
            const BnRefs *bn, int in_ready, const BnRefs *next, int n_next);

    /* (NULL on tables without it; the scheduled walk then makes the three calls of the Ops table) the classifier
     * head's backward in one call: softmax_xent_backward (N samples, O classes), then
     * linear_backward of logits = pooled W^T + b (pooled [N,I], W [O,I]: dweight, dbias),
     * then the backward of a global average pool over H x W (dx [N,I,H,W] = d pooled / (H W));
     * dlogits and d pooled need not be stored. */
    void (*classifier_backward)(float *dx, float *dweight, float *dbias, const float *probs,
                                const int32_t *labels, const float *pooled, const float *weight, int N,
                                int I, int O, int H, int W);

    /* branch_begin: the ops issued until branch_end wait for all issued before, and may run
     * beside the ops issued after branch_end until branch_join, which orders the branch
     * before every later op (sgd_step and capture_end join any open branch). NULL: one chain. */
    void (*branch_begin)(void);
    void (*branch_end)(void);
    void (*branch_join)(void);
} FusedOps;

/* The definition of the fused slots above that a CPU can run: the readable operators of cpu/
 * in turn (core/ops_cpu.c). Tests hold every fused kernel, CPU and GPU, against it. */
extern const FusedOps fused_cpu_ref;

#endif
