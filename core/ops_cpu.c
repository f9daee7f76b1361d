/* The CPU op tables: host memory plus the readable operators of cpu/ (ops_cpu_ref), or the
 * fast kernels of cpu/fast/ with their fused slots (ops_cpu). */
#include <stdlib.h>
#include <string.h>
#include "core/augment.h"
#include "core/dist.h"
#include "core/ops.h"
#include "core/ops_fused.h"
#include "core/util.h"
#include "cpu/cpu.h"
#include "cpu/fast/fast.h"

size_t conv2d_workspace_floats(int N, int C, int H, int W, int K, int R, int S,
                               int stride, int pad)
{
    size_t P = conv_out_size(H, R, stride, pad), Q = conv_out_size(W, S, stride, pad);
    /* N image columns [CRS, PQ] + CONV_DW_CHUNKS partial weight gradients [K, CRS] */
    return (size_t)N * C * R * S * P * Q + (size_t)CONV_DW_CHUNKS * K * C * R * S;
}

static void *host_alloc(size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) die("out of memory allocating %zu bytes", bytes);
    return p;
}
static void host_copy(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
static void host_sync(void) {}

/* The CPU's version of the data slot: the same transforms, image by image (core/augment.c). */
static void host_augment_batch(float *out, const uint8_t *images, const int32_t *idx,
                               const AugParams *params, int n, double rotate_deg, const int32_t *perm)
{
    for (int i = 0; i < n; i++)
        augment_apply(out + (size_t)i * 3 * 32 * 32, images + (size_t)idx[i] * 3 * 32 * 32, &params[i],
                      rotate_deg, (const int *)perm);
}

/* The fused slots' definition (core/ops_fused.h): the readable operators in turn. */
static void ref_bn_relu_train(float *out, float *save_mean, float *save_invstd, float *running_mean,
                              float *running_var, const float *in, const float *gamma,
                              const float *beta, int N, int C, int HW, float momentum, float eps)
{
    batchnorm_forward_train(out, save_mean, save_invstd, running_mean, running_var, in, gamma, beta,
                            N, C, HW, momentum, eps);
    relu_forward(out, out, (size_t)N * C * HW);
}
static void ref_bn_relu_eval(float *out, const float *in, const float *gamma, const float *beta,
                             const float *running_mean, const float *running_var, int N, int C,
                             int HW, float eps)
{
    batchnorm_forward_eval(out, in, gamma, beta, running_mean, running_var, N, C, HW, eps);
    relu_forward(out, out, (size_t)N * C * HW);
}
static void ref_relu_bn_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                                 const float *relu_out, const float *in, const float *add,
                                 const float *gamma, const float *save_mean,
                                 const float *save_invstd, int N, int C, int HW)
{
    relu_backward(din, dout, relu_out, (size_t)N * C * HW);
    batchnorm_backward(din, dgamma, dbeta, din, in, gamma, save_mean, save_invstd, N, C, HW);
    if (add) add_inplace(din, add, (size_t)N * C * HW);
}
static void ref_bn_relu_conv(float *out, float *a, const float *in, const float *weight,
        const float *add, int N, int C, int H, int W, int K, int R, int S, int stride, int pad,
        float *workspace, float *save_mean, float *save_invstd, float *running_mean,
        float *running_var, const float *gamma, const float *beta, float momentum, float eps,
        int train)
{
    if (train) ref_bn_relu_train(a, save_mean, save_invstd, running_mean, running_var, in, gamma, beta,
                                 N, C, H * W, momentum, eps);
    else ref_bn_relu_eval(a, in, gamma, beta, running_mean, running_var, N, C, H * W, eps);
    conv2d_forward(out, a, weight, N, C, H, W, K, R, S, stride, pad, workspace);
    if (add) add_inplace(out, add, (size_t)N * K * conv_out_size(H, R, stride, pad) * conv_out_size(W, S, stride, pad));
}

static void ref_conv_relu_bn_backward(float *dweight, float *din, float *g, const float *dout,
        const float *in, const float *weight, int N, int C, int H, int W, int K, int R, int S,
        int stride, int pad, float *workspace, float *dgamma, float *dbeta, const float *bn_in,
        const float *add, const float *gamma, const float *beta, const float *save_mean,
        const float *save_invstd)
{
    (void)beta;   /* the definition takes `in` stored (fused_cpu_ref has no recompute_act) */
    if (dweight) conv2d_backward_weight(dweight, dout, in, N, C, H, W, K, R, S, stride, pad, workspace);
    conv2d_backward_input(g, dout, weight, N, C, H, W, K, R, S, stride, pad, workspace);
    ref_relu_bn_backward(din, dgamma, dbeta, g, in, bn_in, add, gamma, save_mean, save_invstd,
                         N, C, H * W);
}

const FusedOps fused_cpu_ref = {
    .batchnorm_relu_forward_train = ref_bn_relu_train,
    .batchnorm_relu_forward_eval = ref_bn_relu_eval,
    .relu_batchnorm_backward = ref_relu_bn_backward,
    .batchnorm_relu_conv2d_forward = ref_bn_relu_conv,
    .conv2d_relu_batchnorm_backward = ref_conv_relu_bn_backward,
};

/* The readable table: the operators of cpu/, no fused slots (the plain walk runs it). */
const Ops ops_cpu_ref = {
    .name = "cpu-reference", .host = 1,
    .alloc = host_alloc, .free = free,
    .upload = host_copy, .download = host_copy, .sync = host_sync,
    .conv2d_forward = conv2d_forward,
    .conv2d_backward_input = conv2d_backward_input,
    .conv2d_backward_weight = conv2d_backward_weight,
    .bias_forward = bias_forward, .bias_backward = bias_backward,
    .batchnorm_forward_train = batchnorm_forward_train,
    .batchnorm_forward_eval = batchnorm_forward_eval,
    .batchnorm_backward = batchnorm_backward,
    .relu_forward = relu_forward, .relu_backward = relu_backward,
    .add_forward = add_forward, .add_inplace = add_inplace, .scale = scale_inplace,
    .maxpool2d_forward = maxpool2d_forward, .maxpool2d_backward = maxpool2d_backward,
    .avgpool2d_forward = avgpool2d_forward, .avgpool2d_backward = avgpool2d_backward,
    .linear_forward = linear_forward, .linear_backward = linear_backward,
    .softmax_xent_forward = softmax_xent_forward,
    .softmax_xent_backward = softmax_xent_backward,
    .augment_batch = host_augment_batch,
    .sgd_step = sgd_step,
};

/* The fast table's fused slots: cpu/fast/'s one-pass kernels. It stores no pre-activation
 * (recompute_act): the convolutions apply batchnorm+ReLU as they read their input, and
 * batchnorm's batch statistics are made in the store of the conv that produces its input. */
static const FusedOps fused_cpu = {
    .recompute_act = 1,
    .batchnorm_relu_forward_train = batchnorm_relu_fast_forward_train,
    .batchnorm_relu_forward_eval = batchnorm_relu_fast_forward_eval,
    .relu_batchnorm_backward = relu_batchnorm_fast_backward,
    .batchnorm_relu_conv2d_forward = batchnorm_relu_conv2d_direct_forward,
    .conv2d_relu_batchnorm_backward = conv2d_direct_backward_relu_bn,
    .conv2d_relu_batchnorm_backward_pair = conv2d_direct_backward_relu_bn_pair,
    .batchnorm_relu_conv2d_forward_chained = batchnorm_relu_conv2d_direct_forward_chained,
};

/* The default CPU table: the readable table with the fast kernels in their slots. */
const Ops ops_cpu = {
    .name = "cpu", .host = 1, .fused = &fused_cpu,
    .alloc = host_alloc, .free = free,
    .upload = host_copy, .download = host_copy, .sync = host_sync,
    .conv2d_forward = conv2d_direct_forward,
    .conv2d_backward_input = conv2d_direct_backward_input,
    .conv2d_backward_weight = conv2d_direct_backward_weight,
    .bias_forward = bias_forward, .bias_backward = bias_backward,
    .batchnorm_forward_train = batchnorm_fast_forward_train,
    .batchnorm_forward_eval = batchnorm_fast_forward_eval,
    .batchnorm_backward = batchnorm_fast_backward,
    .relu_forward = relu_forward, .relu_backward = relu_backward,
    .add_forward = add_forward, .add_inplace = add_inplace, .scale = scale_inplace,
    .maxpool2d_forward = maxpool2d_forward, .maxpool2d_backward = maxpool2d_backward,
    .avgpool2d_forward = avgpool2d_forward, .avgpool2d_backward = avgpool2d_backward,
    .linear_forward = linear_forward, .linear_backward = linear_backward,
    .softmax_xent_forward = softmax_xent_forward,
    .softmax_xent_backward = softmax_xent_backward,
    .augment_batch = host_augment_batch,
    .sgd_step = sgd_step,
};

/* kernels: "fast" or "reference"; NULL: CONVNET_KERNELS, else CONVNET_CPU (its older name,
 * kept working), else fast */
const Ops *ops_for_device(const char *device, const char *kernels)
{
    if (!kernels || !*kernels) kernels = getenv("CONVNET_KERNELS");
    if (!kernels || !*kernels) kernels = getenv("CONVNET_CPU");
    if (!kernels || !*kernels) kernels = "fast";
    int ref = !strcmp(kernels, "reference");
    if (!ref && strcmp(kernels, "fast")) die_code(2, "kernels '%s': expected fast or reference", kernels);
    if (strcmp(device, "cpu") == 0) return ref ? &ops_cpu_ref : &ops_cpu;
    if (strcmp(device, "gpu") == 0) {
        const char *why = "unknown reason";
        /* (more than one process: the fast kernels whose batchnorm adds its sums over them) */
        const Ops *g = ref ? ops_gpu_ref(&why) : dist_size() > 1 ? ops_gpu_data_parallel(&why) : ops_gpu(&why);
        if (!g) die_code(2, "no usable CUDA GPU (%s)", why);
        return g;
    }
    die_code(2, "unknown device '%s' (expected cpu or gpu)", device);
}
