/* The CPU op table: host memory plus the reference operators of cpu/. */
#include <stdlib.h>
#include <string.h>
#include "core/augment.h"
#include "core/ops.h"
#include "core/util.h"
#include "cpu/cpu.h"

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

const Ops ops_cpu = {
    .name = "cpu",
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
    .add_forward = add_forward, .add_inplace = add_inplace,
    .maxpool2d_forward = maxpool2d_forward, .maxpool2d_backward = maxpool2d_backward,
    .avgpool2d_forward = avgpool2d_forward, .avgpool2d_backward = avgpool2d_backward,
    .linear_forward = linear_forward, .linear_backward = linear_backward,
    .softmax_xent_forward = softmax_xent_forward,
    .softmax_xent_backward = softmax_xent_backward,
    .augment_batch = host_augment_batch,
    .sgd_step = sgd_step,
};

const Ops *ops_for_device(const char *device)
{
    if (strcmp(device, "cpu") == 0) return &ops_cpu;
    if (strcmp(device, "gpu") == 0) {
        const char *why = "unknown reason";
        const Ops *g = ops_gpu(&why);
        if (!g) die_code(2, "no usable CUDA GPU (%s)", why);
        return g;
    }
    die_code(2, "unknown device '%s' (expected cpu or gpu)", device);
}
