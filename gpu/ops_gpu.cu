// The GPU op table: device detection, memory (cudaMalloc once per buffer at model creation,
// never in the training step), and the kernels of gpu/.
#include "gpu/cuda_compat.h"
#include "gpu/gpu.h"
#include "core/ops.h"

namespace {
void *dev_alloc(size_t bytes)
{
    void *p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 16);
    if (e != cudaSuccess) {
        fprintf(stderr, "convnet: cudaMalloc of %zu bytes failed: %s\n", bytes, cudaGetErrorString(e));
        exit(1);
    }
    return p;
}
void dev_free(void *p) { CUDA_CHECK(cudaFree(p)); }
void dev_upload(void *dst, const void *src, size_t n) { CUDA_CHECK(cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice)); }
void dev_download(void *dst, const void *src, size_t n) { CUDA_CHECK(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost)); }
void dev_sync() { CUDA_CHECK(cudaDeviceSynchronize()); }

// The fused slots: the two kernels in turn (one launch each).
void gpu_bn_relu_train(float *out, float *save_mean, float *save_invstd, float *running_mean,
                       float *running_var, const float *in, const float *gamma, const float *beta,
                       int N, int C, int HW, float momentum, float eps)
{
    gpu::batchnorm_forward_train(out, save_mean, save_invstd, running_mean, running_var, in, gamma,
                                 beta, N, C, HW, momentum, eps);
    gpu::relu_forward(out, out, (size_t)N * C * HW);
}
void gpu_bn_relu_eval(float *out, const float *in, const float *gamma, const float *beta,
                      const float *running_mean, const float *running_var, int N, int C, int HW,
                      float eps)
{
    gpu::batchnorm_forward_eval(out, in, gamma, beta, running_mean, running_var, N, C, HW, eps);
    gpu::relu_forward(out, out, (size_t)N * C * HW);
}
void gpu_relu_bn_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                          const float *relu_out, const float *in, const float *add,
                          const float *gamma, const float *save_mean, const float *save_invstd,
                          int N, int C, int HW)
{
    gpu::relu_backward(din, dout, relu_out, (size_t)N * C * HW);
    gpu::batchnorm_backward(din, dgamma, dbeta, din, in, gamma, save_mean, save_invstd, N, C, HW);
    if (add) gpu::add_inplace(din, add, (size_t)N * C * HW);
}
void gpu_conv_relu_bn_backward(float *dweight, float *din, float *g, const float *dout,
        const float *in, const float *weight, int N, int C, int H, int W, int K, int R, int S,
        int stride, int pad, float *workspace, float *dgamma, float *dbeta, const float *bn_in,
        const float *add, const float *gamma, const float *save_mean, const float *save_invstd)
{
    if (dweight)
        gpu::conv2d_backward_weight(dweight, dout, in, N, C, H, W, K, R, S, stride, pad, workspace);
    gpu::conv2d_backward_input(g, dout, weight, N, C, H, W, K, R, S, stride, pad, workspace);
    gpu_relu_bn_backward(din, dgamma, dbeta, g, in, bn_in, add, gamma, save_mean, save_invstd,
                         N, C, H * W);
}
void gpu_conv_add(float *out, const float *in, const float *weight, const float *add, int N, int C,
                  int H, int W, int K, int R, int S, int stride, int pad, float *workspace)
{
    gpu::conv2d_forward(out, in, weight, N, C, H, W, K, R, S, stride, pad, workspace);
    gpu::add_inplace(out, add, (size_t)N * K * conv_out_size(H, R, stride, pad) * conv_out_size(W, S, stride, pad));
}

Ops make_table()
{
    Ops t = {};
    t.name = "gpu";
    t.alloc = dev_alloc; t.free = dev_free; t.upload = dev_upload; t.download = dev_download;
    t.sync = dev_sync;
    t.conv2d_forward = gpu::conv2d_forward;
    t.conv2d_backward_input = gpu::conv2d_backward_input;
    t.conv2d_backward_weight = gpu::conv2d_backward_weight;
    t.bias_forward = gpu::bias_forward; t.bias_backward = gpu::bias_backward;
    t.batchnorm_forward_train = gpu::batchnorm_forward_train;
    t.batchnorm_forward_eval = gpu::batchnorm_forward_eval;
    t.batchnorm_backward = gpu::batchnorm_backward;
    t.batchnorm_relu_forward_train = gpu_bn_relu_train;
    t.batchnorm_relu_forward_eval = gpu_bn_relu_eval;
    t.relu_batchnorm_backward = gpu_relu_bn_backward;
    t.conv2d_forward_add = gpu_conv_add;
    t.conv2d_relu_batchnorm_backward = gpu_conv_relu_bn_backward;
    t.relu_forward = gpu::relu_forward; t.relu_backward = gpu::relu_backward;
    t.add_forward = gpu::add_forward; t.add_inplace = gpu::add_inplace;
    t.maxpool2d_forward = gpu::maxpool2d_forward; t.maxpool2d_backward = gpu::maxpool2d_backward;
    t.avgpool2d_forward = gpu::avgpool2d_forward; t.avgpool2d_backward = gpu::avgpool2d_backward;
    t.linear_forward = gpu::linear_forward; t.linear_backward = gpu::linear_backward;
    t.softmax_xent_forward = gpu::softmax_xent_forward;
    t.softmax_xent_backward = gpu::softmax_xent_backward;
    t.augment_batch = gpu::augment_batch;
    t.sgd_step = gpu::sgd_step;
    return t;
}
const Ops table = make_table();
}  // namespace

extern "C" const Ops *ops_gpu(const char **why)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        // 35: no driver; 34: the toolkit's stub libcuda; 100: driver but no device
        if (why) *why = (int)e == 35 ? "driver not found" : (int)e == 34 ? "driver stub only, no GPU driver"
                      : (int)e == 100 ? "no CUDA device" : cudaGetErrorString(e);
        return nullptr;
    }
    if (count == 0) {
        if (why) *why = "no CUDA device";
        return nullptr;
    }
    CUDA_CHECK(cudaSetDevice(0));
    return &table;
}
