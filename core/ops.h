/* The op table: one signature per operator, shared by every device.
 *
 * Tensors are plain float pointers in NCHW layout living in the device's memory
 * (host memory for the CPU table, cudaMalloc'd memory for the GPU table). Shapes are
 * passed explicitly, llm.c style. Unless a comment says "accumulates", an operator
 * overwrites its outputs. The network's walks (core/net_plain.c, and core/net_scheduled.c for
 * the fast tables' fused slots) only ever call through a `const Ops *`, so they never know
 * which device runs them.
 */
#ifndef CONVNET_OPS_H
#define CONVNET_OPS_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

struct AugParams;   /* core/augment.h */

typedef struct Ops {
    const char *name;
    int host;   /* 1: tensors live in host memory (the CPU tables) */
    /* the fast tables' fused slots and scheduling (core/ops_fused.h), run by the scheduled
     * walk (core/net_scheduled.c); NULL on the reference tables, which run the plain walk
     * (core/net_plain.c) over the operators below */
    const struct FusedOps *fused;

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

    /* ---- elementwise ---- */
    void (*relu_forward)(float *out, const float *in, size_t n);          /* out may == in */
    void (*relu_backward)(float *din, const float *dout, const float *out, size_t n);
    void (*add_forward)(float *out, const float *a, const float *b, size_t n);
    void (*add_inplace)(float *y, const float *x, size_t n);              /* y += x */
    void (*scale)(float *y, float a, size_t n);                           /* y *= a */

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
     * capture_begin / capture_end: the work issued in between is recorded, not run, and
     * returned as a graph; graph_launch runs it (asynchronously); graph_free. core/gpustep.c. */
    void (*augment_plan)(float *out, int32_t *labels_out, const uint8_t *images, const uint8_t *labels,
                         const int32_t *order, const struct AugParams *params, const int32_t *step, int n,
                         const int32_t *perm);
    void (*loss_accumulate)(double *sums, const float *losses, const int32_t *correct, int n, int32_t *step);
    void (*capture_begin)(void);
    void *(*capture_end)(void);
    void (*graph_launch)(void *graph);
    void (*graph_free)(void *graph);
    /* data-parallel training (core/dist.h): v[0..n) := its sum over the processes, added in
     * rank order, issued like a kernel (captured with the step); nothing with one process.
     * gpu/dist.cu. (The CPU step calls dist_sum_floats on host memory.) */
    void (*sum_over_processes)(float *v, size_t n);

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
 * (chosen at run time from the CPU's instruction sets), with fused slots. ops_cpu_ref: the
 * readable operators of cpu/ only, the definition the fast ones are tested against. */
extern const Ops ops_cpu;
extern const Ops ops_cpu_ref;

/* The GPU table, or NULL with a one-line reason in *why when no usable GPU exists
 * (or this build has no CUDA). */
#ifdef __cplusplus
extern "C" {
#endif
const Ops *ops_gpu(const char **why);
/* The GPU's reference table: the readable kernels (gpu/conv2d.cu: im2col + GEMM,
 * gpu/batchnorm.cu: a block per channel, ...), no fused slots; NULL as ops_gpu. */
const Ops *ops_gpu_ref(const char **why);
/* The fast table for data-parallel training over processes (core/dist.h): its convolutions
 * with the readable batchnorm, whose sums are added over the processes, and no fused slots
 * (gpu/ops_gpu.cu says why); NULL as ops_gpu. */
const Ops *ops_gpu_data_parallel(const char **why);
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
/* Per-launch timing of eager GPU work (gpu/profile.cu; bench/train_step --profile): begin,
 * then the work, then end prints a row per launch site to out and returns the launches
 * counted. Without CUDA support: end prints nothing and returns 0. */
void gpu_profile_begin(void);
long gpu_profile_end(int steps, FILE *out);
/* Data-parallel training on GPUs (gpu/dist.cu; core/dist.h): before any other GPU call, this
 * process takes its machine's local_rank-th GPU and joins an NCCL communicator of `size`
 * processes (rank 0 makes its id, bcast hands the bytes to the others). 0, or -1 with a
 * one-line reason in err (no NCCL in this build, fewer GPUs than processes). size 1: nothing.
 * gpu_dist_finalize: the communicator's end (before the MPI's). */
int gpu_dist_init(int rank, int size, int local_rank, int local_size, void (*bcast)(void *buf, size_t bytes),
                  char *err, size_t errlen);
void gpu_dist_finalize(void);
#ifdef __cplusplus
}
#endif

/* device "cpu" / "gpu" and kernels "fast" / "reference" (NULL: fast, or CONVNET_KERNELS,
 * or the older CONVNET_CPU) to a table; prints one line and exits 2 when unavailable. */
const Ops *ops_for_device(const char *device, const char *kernels);

#endif
