/* The op table: one signature per operator, shared by every device.
 *
 * Tensors are plain float pointers in NCHW layout living in the device's memory
 * (host memory for the CPU table, cudaMalloc'd memory for the GPU table). Shapes are
 * passed explicitly, llm.c style. Unless a comment says "accumulates", an operator
 * overwrites its outputs. The model code (core/model.c) only ever calls through a
 * `const Ops *`, so it never knows which device runs it.
 */
#ifndef CONVNET_OPS_H
#define CONVNET_OPS_H

#include <stddef.h>
#include <stdint.h>

struct AugParams;   /* core/augment.h */

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

typedef struct Ops {
    const char *name;
    int host;   /* 1: tensors live in host memory (the CPU tables) */
    /* 1: the model passes a = NULL to batchnorm_relu_conv2d_forward and in = NULL to
     * conv2d_relu_batchnorm_backward, and allocates no buffer for a: the table applies
     * batchnorm+ReLU inside the convolutions' operand reads instead of writing a and reading
     * it back (the GPU: two passes over a per layer and direction saved, no apply launch) */
    int recompute_act;

    /* ---- memory ---- */
    void *(*alloc)(size_t bytes);          /* never returns NULL: exits with a message */
    void (*free)(void *p);
    void (*upload)(void *dst, const void *host_src, size_t bytes);
    void (*download)(void *host_dst, const void *src, size_t bytes);
    void (*sync)(void);

    /* ---- convolution (cross-correlation, zero padding), cpu/conv2d.c ----
     * in [N,C,H,W], weight [K,C,R,S], out [N,K,P,Q] with
     * P = (H + 2 pad - R)/stride + 1, Q = (W + 2 pad - S)/stride + 1.
     * workspace: conv2d_workspace_floats(...) floats. */
    void (*conv2d_forward)(float *out, const float *in, const float *weight,
                           int N, int C, int H, int W, int K, int R, int S,
                           int stride, int pad, float *workspace);
    void (*conv2d_backward_input)(float *din, const float *dout, const float *weight,
                                  int N, int C, int H, int W, int K, int R, int S,
                                  int stride, int pad, float *workspace);
    void (*conv2d_backward_weight)(float *dweight, const float *dout, const float *in,
                                   int N, int C, int H, int W, int K, int R, int S,
                                   int stride, int pad, float *workspace);
    /* out[n,k,:] += bias[k]  /  dbias[k] = sum_{n,p} dout[n,k,p] ; HW = P*Q */
    void (*bias_forward)(float *out, const float *bias, int N, int K, int HW);
    void (*bias_backward)(float *dbias, const float *dout, int N, int K, int HW);

    /* ---- batch normalization over (N,H,W) per channel, cpu/batchnorm.c ---- */
    void (*batchnorm_forward_train)(float *out, float *save_mean, float *save_invstd,
                                    float *running_mean, float *running_var,
                                    const float *in, const float *gamma, const float *beta,
                                    int N, int C, int HW, float momentum, float eps);
    void (*batchnorm_forward_eval)(float *out, const float *in, const float *gamma,
                                   const float *beta, const float *running_mean,
                                   const float *running_var, int N, int C, int HW, float eps);
    void (*batchnorm_backward)(float *din, float *dgamma, float *dbeta, const float *dout,
                               const float *in, const float *gamma, const float *save_mean,
                               const float *save_invstd, int N, int C, int HW);

    /* ---- fused (one pass where two operators would make two; cpu/fast/batchnorm_relu.c and
     * cpu/fast/conv2d_direct.c; the reference table and the GPU run the two operators in turn) ----
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
    /* (NULL on tables without it; the model then makes the two calls above) on a table with
     * recompute_act: the backward of a pre-activation block's main path,
     * out = conv2(relu(bn2(conv1(relu(bn1(x)))))), as conv2d_relu_batchnorm_backward
     * for l2 (conv2, bn2; bn_in = conv1's output) and then for l1 (conv1, bn1; bn_in = x):
     * din = d x (+ add; din may alias dout or add), every weight and batchnorm gradient, the
     * same values as the two calls. g2 [N, l2->C, l2->H, l2->W] and g1 [N, l1->C, l1->H, l1->W]:
     * scratch. The table need not store d(conv1's output): conv1's backward may compute each
     * value it reads from bn2's backward (the GPU: bn2's apply pass is not run).
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
    /* (NULL on tables without it; the model then calls the one above) the same in training
     * mode with a = NULL, with batchnorm's statistics made where the tensor is produced:
     *   in_ready = 1: bn's batch statistics of `in` were made by the call that produced `in`
     *                 (save_mean, save_invstd, running update): no statistics pass here;
     *   next[0..n_next): the batchnorms that will read `out` (after the add): their batch
     *                 statistics of `out` are made here, as a statistics pass would make them.
     *   bn == NULL: no batchnorm+ReLU on the input (a plain bias-free conv: the stem).
     * (the GPU: in the convolution's store, one pass over each activation less) */
    void (*batchnorm_relu_conv2d_forward_chained)(float *out, const float *in, const float *weight,
            const float *add, int N, int C, int H, int W, int K, int R, int S, int stride, int pad,
            const BnRefs *bn, int in_ready, const BnRefs *next, int n_next);

    /* ---- elementwise ---- */
    void (*relu_forward)(float *out, const float *in, size_t n);          /* out may == in */
    void (*relu_backward)(float *din, const float *dout, const float *out, size_t n);
    void (*add_forward)(float *out, const float *a, const float *b, size_t n);
    void (*add_inplace)(float *y, const float *x, size_t n);              /* y += x */

    /* ---- pooling, cpu/pool.c ---- */
    void (*maxpool2d_forward)(float *out, int32_t *argmax, const float *in,
                              int N, int C, int H, int W, int k, int stride, int pad);
    void (*maxpool2d_backward)(float *din, const float *dout, const int32_t *argmax,
                               int N, int C, int H, int W, int k, int stride, int pad);
    void (*avgpool2d_forward)(float *out, const float *in,
                              int N, int C, int H, int W, int k, int stride, int pad);
    void (*avgpool2d_backward)(float *din, const float *dout,
                               int N, int C, int H, int W, int k, int stride, int pad);

    /* ---- linear, cpu/linear.c: out[N,O] = in[N,I] W[O,I]^T + b[O] ---- */
    void (*linear_forward)(float *out, const float *in, const float *weight, const float *bias,
                           int N, int I, int O);
    void (*linear_backward)(float *din, float *dweight, float *dbias, const float *dout,
                            const float *in, const float *weight, int N, int I, int O);

    /* ---- loss, cpu/softmax_xent.c ----
     * forward: probs[N,C] = softmax(logits); losses[n] = -log probs[n, labels[n]];
     * correct[n] = (argmax == label). Mean loss is summed on the host.
     * backward: dlogits = (probs - onehot) / N. */
    void (*softmax_xent_forward)(float *losses, float *probs, int32_t *correct,
                                 const float *logits, const int32_t *labels, int N, int C);
    void (*softmax_xent_backward)(float *dlogits, const float *probs, const int32_t *labels,
                                  int N, int C);
    /* (NULL on tables without it; the model then makes the three calls) the classifier
     * head's backward in one call: softmax_xent_backward (N samples, O classes), then
     * linear_backward of logits = pooled W^T + b (pooled [N,I], W [O,I]: dweight, dbias),
     * then the backward of a global average pool over H x W (dx [N,I,H,W] = d pooled / (H W));
     * dlogits and d pooled need not be stored. */
    void (*classifier_backward)(float *dx, float *dweight, float *dbias, const float *probs,
                                const int32_t *labels, const float *pooled, const float *weight, int N,
                                int I, int O, int H, int W);

    /* ---- data: the training transforms on the device's copy of the data set ----
     * out [n,3,32,32] = normalize(permute(rotate(crop(flip(images[idx[i]]))))), with the
     * per-image choices in params (core/augment.h); perm may be NULL. */
    void (*augment_batch)(float *out, const uint8_t *images, const int32_t *idx,
                          const struct AugParams *params, int n, double rotate_deg,
                          const int32_t *perm);

    /* ---- the training step as one graph (devices other than the CPU; NULL on the CPU) ----
     * augment_plan: batch *step of an epoch plan on the device: idx = order + *step * n,
     * params likewise; out as augment_batch (no rotation), labels_out[i] = labels[idx[i]].
     * loss_accumulate: sums[0] += sum losses[0..n), sums[1] += sum correct (fixed order);
     * then *step += 1.
     * branch_*: see below.
     * capture_begin / capture_end: the work issued in between is recorded, not run, and
     * returned as a graph; graph_launch runs it (asynchronously); graph_free. core/gpustep.c. */
    void (*augment_plan)(float *out, int32_t *labels_out, const uint8_t *images, const uint8_t *labels,
                         const int32_t *order, const struct AugParams *params, const int32_t *step, int n,
                         const int32_t *perm);
    void (*loss_accumulate)(double *sums, const float *losses, const int32_t *correct, int n, int32_t *step);
    /* branch_begin: the ops issued until branch_end wait for all issued before, and may run
     * beside the ops issued after branch_end until branch_join, which orders the branch
     * before every later op (sgd_step and capture_end join any open branch). NULL: one chain. */
    void (*branch_begin)(void);
    void (*branch_end)(void);
    void (*branch_join)(void);
    void (*capture_begin)(void);
    void *(*capture_end)(void);
    void (*graph_launch)(void *graph);
    void (*graph_free)(void *graph);

    /* ---- optimizer, cpu/sgd.c (PyTorch SGD) ----
     * g' = g + wd*w; buf = first ? g' : momentum*buf + g'; w -= lr*buf */
    void (*sgd_step)(float *w, const float *g, float *buf, size_t n,
                     float lr, float momentum, float wd, int first_step);
} Ops;

/* Floats of workspace conv2d_* needs for these shapes (same for every device). */
size_t conv2d_workspace_floats(int N, int C, int H, int W, int K, int R, int S,
                               int stride, int pad);
static inline int conv_out_size(int H, int R, int stride, int pad)
{
    return (H + 2 * pad - R) / stride + 1;
}

/* The CPU tables. ops_cpu: the default, the fast kernels of cpu/fast/ where they exist
 * (chosen at run time from the CPU's instruction sets) and the readable operators elsewhere.
 * ops_cpu_ref: the readable operators of cpu/ only, the definition the fast ones are tested
 * against. ops_for_device("cpu") returns ops_cpu_ref when CONVNET_CPU=reference. */
extern const Ops ops_cpu;
extern const Ops ops_cpu_ref;

/* The GPU table, or NULL with a one-line reason in *why when no usable GPU exists
 * (or this build has no CUDA). */
#ifdef __cplusplus
extern "C" {
#endif
const Ops *ops_gpu(const char **why);
/* The arithmetic of the GPU convolutions' products (gpu/conv2d_igemm.cu, gpu/mma.cuh):
 * GPU_CONV_3XTF32, tensor cores with each product split in three tf32 products (fp32's
 * accuracy; the default where the build's card has tensor cores: CUDA_ARCH >= 80), or
 * GPU_CONV_FP32, CUDA cores. gpu_set_conv_math returns -1 (and changes nothing) for a mode
 * this build cannot run. Set it before the first training step: a step captured as a graph
 * keeps the kernels it was captured with. */
enum { GPU_CONV_FP32 = 0, GPU_CONV_3XTF32 = 1 };
int gpu_set_conv_math(int math);
int gpu_conv_math(void);
/* The GPU convolutions' fused backward (gpu/conv2d_igemm.cu: one kernel for backward-input,
 * batchnorm's sums and the weight gradient's reads, where it saves traffic): per -1 never,
 * 0 where it pays (the default), n > 0 wherever the geometry allows it, n column tiles a
 * block (tests). Before the first training step, as above. Without CUDA: nothing to set. */
void gpu_set_conv_fusion(int per);
#ifdef __cplusplus
}
#endif

/* "cpu" / "gpu" to a table; prints one line and exits 2 when unavailable. */
const Ops *ops_for_device(const char *device);

#endif
