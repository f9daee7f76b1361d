// The GPU op table: device detection, memory (cudaMalloc once per buffer at model creation,
// never in the training step), and the kernels of gpu/.
#include "gpu/cuda_compat.h"
#include "gpu/gpu.h"
#include "core/ops.h"
#include "core/ops_fused.h"

namespace gpu {
namespace {
cudaStream_t main_s, side_s, current;
cudaEvent_t fork_ev, join_ev, done_ev;
// Side work ended (side_end) and not yet waited for by side_join_all. Each event is recorded
// just before its one wait, in the same mode (eager, or inside the same capture): CUDA refuses
// an eager wait on an event last recorded in a capture (cudaErrorCapturedEvent) and a captured
// wait on one recorded outside it (cudaErrorStreamCaptureIsolation). So side_join_all waits
// only for side work it has not joined yet, and capture_begin joins eager side work first.
bool side_pending;
void init_streams()   // on the first launch, which is never inside a capture
{
    if (main_s) return;
    CUDA_CHECK(cudaStreamCreate(&main_s));
    CUDA_CHECK(cudaStreamCreate(&side_s));
    CUDA_CHECK(cudaEventCreateWithFlags(&fork_ev, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&join_ev, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&done_ev, cudaEventDisableTiming));
    current = main_s;
}
}  // namespace

cudaStream_t stream() { init_streams(); return current; }
cudaStream_t main_stream() { init_streams(); return main_s; }
cudaStream_t side_stream() { init_streams(); return side_s; }

void side_begin()
{
    init_streams();
    CUDA_CHECK(cudaEventRecord(fork_ev, main_s));
    CUDA_CHECK(cudaStreamWaitEvent(side_s, fork_ev, 0));
    current = side_s;
}
void side_mark() { CUDA_CHECK(cudaEventRecord(join_ev, side_s)); }
void side_end()
{
    CUDA_CHECK(cudaEventRecord(done_ev, side_s));
    side_pending = true;
    current = main_s;
}
void side_join() { CUDA_CHECK(cudaStreamWaitEvent(main_s, join_ev, 0)); }
void side_join_all()
{
    if (!side_pending) return;
    CUDA_CHECK(cudaStreamWaitEvent(main_s, done_ev, 0));
    side_pending = false;
}
void require_main_stream(const char *what)
{
    if (current != main_s)
        GPU_FAIL("%s launched on the side stream: kernels with a last-block ticket run on the main stream only "
                 "(their ticket counters are shared by every launch of their file)", what);
}
}  // namespace gpu

namespace {
void *dev_alloc(size_t bytes)
{
    void *p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 16);
    if (e != cudaSuccess) {
        GPU_FAIL("cudaMalloc of %zu bytes failed: %s", bytes, cudaGetErrorString(e));
    }
    return p;
}
void dev_free(void *p) { CUDA_CHECK(cudaFree(p)); }
void dev_upload(void *dst, const void *src, size_t n) { CUDA_CHECK(cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice)); }
// anything read back sees complete weight gradients: their pending group sums first
void dev_download(void *dst, const void *src, size_t n)
{
    gpu::side_join_all();
    gpu::conv2d_igemm_weight_sums();
    CUDA_CHECK(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost));
}
void dev_sync() { CUDA_CHECK(cudaDeviceSynchronize()); }

// Convolution: implicit GEMM (gpu/conv2d_igemm.cu); the workspace is not needed.
void gpu_conv_fwd(float *out, const float *in, const float *w, int N, int C, int H, int W, int K, int R,
                  int S, int stride, int pad, float *)
{
    gpu::conv2d_igemm_forward(out, in, w, nullptr, N, C, H, W, K, R, S, stride, pad);
}
void gpu_conv_bwd_in(float *din, const float *dout, const float *w, int N, int C, int H, int W, int K, int R,
                     int S, int stride, int pad, float *)
{
    gpu::conv2d_igemm_backward_input(din, dout, w, N, C, H, W, K, R, S, stride, pad);
}
// A weight gradient on the side stream (in order there), marked for side_join; its groups'
// sum is pending until sgd_step (or a download): gpu::conv2d_igemm_weight_sums.
void weight_grad_on_side(float *dw, const float *dout, const float *in, int N, int C, int H, int W, int K, int R,
                         int S, int stride, int pad, const gpu::BnRelu &bn = gpu::BnRelu{},
                         const gpu::BnGrad *dout_bn = nullptr)
{
    gpu::side_begin();
    gpu::conv2d_igemm_backward_weight(dw, dout, in, N, C, H, W, K, R, S, stride, pad, bn, dout_bn);
    gpu::side_mark();
    gpu::side_end();
}
// The op: the main stream waits for the launch at once (the caller may overwrite dout and in next).
void gpu_conv_bwd_w(float *dw, const float *dout, const float *in, int N, int C, int H, int W, int K, int R,
                    int S, int stride, int pad, float *)
{
    weight_grad_on_side(dw, dout, in, N, C, H, W, K, R, S, stride, pad);
    gpu::side_join();
}

// Batchnorm: the split kernels (gpu/batchnorm_split.cu), with ReLU, its mask and the
// residual add fused into their elementwise passes.
void gpu_bn_train(float *out, float *save_mean, float *save_invstd, float *running_mean,
                  float *running_var, const float *in, const float *gamma, const float *beta,
                  int N, int C, int HW, float momentum, float eps)
{
    gpu::batchnorm_split_forward_train(out, save_mean, save_invstd, running_mean, running_var, in, gamma,
                                       beta, N, C, HW, momentum, eps, 0);
}
void gpu_bn_backward(float *din, float *dgamma, float *dbeta, const float *dout, const float *in,
                     const float *gamma, const float *save_mean, const float *save_invstd, int N, int C, int HW)
{
    gpu::batchnorm_split_backward(din, dgamma, dbeta, dout, nullptr, in, nullptr, gamma, nullptr, save_mean,
                                  save_invstd, N, C, HW);
}
void gpu_bn_relu_train(float *out, float *save_mean, float *save_invstd, float *running_mean,
                       float *running_var, const float *in, const float *gamma, const float *beta,
                       int N, int C, int HW, float momentum, float eps)
{
    gpu::batchnorm_split_forward_train(out, save_mean, save_invstd, running_mean, running_var, in, gamma,
                                       beta, N, C, HW, momentum, eps, 1);
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
    gpu::batchnorm_split_backward(din, dgamma, dbeta, dout, relu_out, in, add, gamma, nullptr, save_mean,
                                  save_invstd, N, C, HW);
}
// This table stores no activation (recompute_act): the fused slots take a = NULL / in = NULL.
void no_stored_activation(const char *slot)
{
    GPU_FAIL("the GPU table's %s takes no stored activation (recompute_act)", slot);
}

// One layer of a pre-activation block's backward (ops_fused.h: ConvBnLayer): backward-input into g
// with batchnorm's sums in its epilogue (returns kk: kk_out, or scratch), and the weight
// gradient (l->dweight NULL: none); dout read as stored, or unapplied (dout_bn). The weight
// gradient reads relu(batchnorm(bn_in)) as it gathers. Where the convolution takes the fused
// backward (gpu::conv2d_igemm_backward_fused), one kernel does both; else the weight gradient
// runs on the side stream beside backward-input (the two depend on nothing the other writes),
// *side is set, and the caller joins before overwriting what it reads.
const float *layer_backward(const ConvBnLayer *l, float *g, const float *dout, const gpu::BnGrad *dout_bn, int N,
                            float *kk_out, bool *side)
{
    gpu::BnRelu bn = {l->gamma, l->beta, l->save_mean, l->save_invstd};
    if (l->dweight) {
        const float *kk = gpu::conv2d_igemm_backward_fused(l->dweight, g, dout, l->weight, N, l->C, l->H, l->W, l->K,
                                                           l->R, l->S, l->stride, l->pad, bn, l->bn_in, l->dgamma,
                                                           l->dbeta, kk_out, dout_bn);
        if (kk) return kk;
        weight_grad_on_side(l->dweight, dout, l->bn_in, N, l->C, l->H, l->W, l->K, l->R, l->S, l->stride, l->pad, bn,
                            dout_bn);
        *side = true;
    }
    return gpu::conv2d_igemm_backward_input_bn(g, dout, l->weight, N, l->C, l->H, l->W, l->K, l->R, l->S, l->stride,
                                               l->pad, l->bn_in, l->gamma, l->beta, l->save_mean, l->save_invstd,
                                               l->dgamma, l->dbeta, kk_out, dout_bn);
}

// in == NULL (the model on this table: recompute_act): one layer_backward, then batchnorm's
// apply pass (recomputing the ReLU's mask), after the side stream's reads (din may be dout).
// The weight gradient's groups' sum is pending until sgd_step (one launch for every layer).
void gpu_conv_relu_bn_backward(float *dweight, float *din, float *g, const float *dout,
        const float *in, const float *weight, int N, int C, int H, int W, int K, int R, int S,
        int stride, int pad, float *workspace, float *dgamma, float *dbeta, const float *bn_in,
        const float *add, const float *gamma, const float *beta, const float *save_mean,
        const float *save_invstd)
{
    (void)workspace;
    if (in) no_stored_activation("conv2d_relu_batchnorm_backward");
    ConvBnLayer l = {weight, bn_in, gamma, beta, save_mean, save_invstd, dweight, dgamma, dbeta,
                     C, H, W, K, R, S, stride, pad};
    bool side = false;
    const float *kk = layer_backward(&l, g, dout, nullptr, N, nullptr, &side);
    if (side) gpu::side_join();
    gpu::batchnorm_split_backward_apply(din, g, nullptr, bn_in, add, kk, gamma, beta, save_mean, save_invstd, N, C,
                                        H * W);
}
// Both layers of a block's main path (ops_fused.h): as two calls of the op above, except that
// bn2's apply pass is not run: conv1's weight gradient and backward-input read d(conv1's
// output) as bn2's backward of g2 (gpu::BnGrad), its per-channel factors kk2 kept apart from
// the scratch the next backward-input reuses. The apply pass waits for the side stream's
// reads, if any. (What this buys in bytes and launches: bench/RESULTS.md, gpu_plan.)
gpu::Scratch pair_kk;
void gpu_conv_relu_bn_backward_pair(float *din, float *g1, float *g2, const float *dout, const ConvBnLayer *l2,
                                    const ConvBnLayer *l1, const float *add, int N)
{
    bool side = false;
    float *kk2 = pair_kk.get(3 * (size_t)l2->C);
    layer_backward(l2, g2, dout, nullptr, N, kk2, &side);
    gpu::BnGrad d = {g2, l2->bn_in, kk2, l2->gamma, l2->beta, l2->save_mean, l2->save_invstd,
                     (long)N * l2->H * l2->W};
    const float *kk1 = layer_backward(l1, g1, nullptr, &d, N, nullptr, &side);   // after backward-input 2: g2, kk2 ready
    if (side) gpu::side_join();   // the weight gradients there have read dout, g2 and kk2: din may be written
    if (din)   // (else the consumer reads it unapplied: gpu_conv_bwd_w_bn_grad)
        gpu::batchnorm_split_backward_apply(din, g1, nullptr, l1->bn_in, add, kk1, l1->gamma, l1->beta, l1->save_mean,
                                            l1->save_invstd, N, l1->C, l1->H * l1->W);
}
// The weight gradient reading its dout as a pair's unapplied din (ops_fused.h): BnGrad without kk
// (its factors from bn's gamma, invstd, dgamma and dbeta) and with the residual; on the side
// stream as gpu_conv_bwd_w.
void gpu_conv_bwd_w_bn_grad(float *dw, const float *in, int N, int C, int H, int W, int K, int R, int S, int stride,
                            int pad, const float *g1, const ConvBnLayer *bn, const float *add)
{
    gpu::BnGrad d = {g1, bn->bn_in, nullptr, bn->gamma, bn->beta, bn->save_mean, bn->save_invstd,
                     (long)N * bn->H * bn->W, bn->dgamma, bn->dbeta, add};
    weight_grad_on_side(dw, nullptr, in, N, C, H, W, K, R, S, stride, pad, gpu::BnRelu{}, &d);
    gpu::side_join();
}

// a == NULL (recompute_act): batchnorm's statistics, then the convolution applies
// batchnorm+ReLU to `in` as it gathers (no apply pass, a never stored)
void gpu_bn_relu_conv(float *out, float *a, const float *in, const float *weight, const float *add,
        int N, int C, int H, int W, int K, int R, int S, int stride, int pad, float *workspace,
        float *save_mean, float *save_invstd, float *running_mean, float *running_var,
        const float *gamma, const float *beta, float momentum, float eps, int train)
{
    (void)workspace;
    if (a) no_stored_activation("batchnorm_relu_conv2d_forward");
    gpu::BnRelu bn = {gamma, beta, save_mean, save_invstd};
    if (train) {
        gpu::batchnorm_split_stats(save_mean, save_invstd, running_mean, running_var, in, gamma, beta, N, C, H * W,
                                   momentum, eps);
    } else {
        const float *ms = gpu::batchnorm_eval_stats(running_mean, running_var, C, eps);
        bn.mean = ms;
        bn.invstd = ms + C;
    }
    gpu::conv2d_igemm_forward(out, in, weight, add, N, C, H, W, K, R, S, stride, pad, bn);
}

// a = NULL, training mode, statistics made where the tensors are produced (ops_fused.h)
void gpu_bn_relu_conv_chained(float *out, const float *in, const float *weight, const float *add, int N, int C,
        int H, int W, int K, int R, int S, int stride, int pad, const BnRefs *bn, int in_ready,
        const BnRefs *next, int n_next)
{
    if (bn && !in_ready)
        gpu::batchnorm_split_stats(bn->save_mean, bn->save_invstd, bn->running_mean, bn->running_var, in, bn->gamma,
                                   bn->beta, N, C, H * W, bn->momentum, bn->eps);
    gpu::BnRelu r = {};
    if (bn) r = gpu::BnRelu{bn->gamma, bn->beta, bn->save_mean, bn->save_invstd};
    gpu::conv2d_igemm_forward(out, in, weight, add, N, C, H, W, K, R, S, stride, pad, r, next, n_next);
}

// the update reads every weight gradient: those still on the side stream first
void gpu_sgd(float *w, const float *g, float *buf, size_t n, float lr, float momentum, float wd, int first)
{
    gpu::side_join_all();
    gpu::conv2d_igemm_weight_sums();   // every weight gradient's group sums, one launch
    gpu::sgd_step(w, g, buf, n, lr, momentum, wd, first);
}

// What both GPU tables share: device memory, the elementwise, pooling, linear, loss and SGD
// kernels, the batch build on the device and the step as a graph.
Ops common_table()
{
    Ops t = {};
    t.alloc = dev_alloc; t.free = dev_free; t.upload = dev_upload; t.download = dev_download;
    t.sync = dev_sync;
    t.bias_forward = gpu::bias_forward; t.bias_backward = gpu::bias_backward;
    t.relu_forward = gpu::relu_forward; t.relu_backward = gpu::relu_backward;
    t.add_forward = gpu::add_forward; t.add_inplace = gpu::add_inplace; t.scale = gpu::scale;
    t.sum_over_processes = gpu::sum_over_processes;
    t.maxpool2d_forward = gpu::maxpool2d_forward; t.maxpool2d_backward = gpu::maxpool2d_backward;
    t.avgpool2d_forward = gpu::avgpool2d_forward; t.avgpool2d_backward = gpu::avgpool2d_backward;
    t.linear_forward = gpu::linear_forward; t.linear_backward = gpu::linear_backward;
    t.softmax_xent_forward = gpu::softmax_xent_forward;
    t.softmax_xent_backward = gpu::softmax_xent_backward;
    t.augment_batch = gpu::augment_batch;
    t.augment_plan = gpu::augment_plan;
    t.loss_accumulate = gpu::loss_accumulate;
    t.capture_begin = gpu::capture_begin;
    t.capture_end = gpu::capture_end;
    t.graph_launch = gpu::graph_launch;
    t.graph_free = gpu::graph_free;
    return t;
}

// The fast table's fused slots and its side stream (core/ops_fused.h)
FusedOps make_fused()
{
    FusedOps f = {};
    f.recompute_act = 1;
    f.batchnorm_relu_forward_train = gpu_bn_relu_train;
    f.batchnorm_relu_forward_eval = gpu_bn_relu_eval;
    f.relu_batchnorm_backward = gpu_relu_bn_backward;
    f.batchnorm_relu_conv2d_forward = gpu_bn_relu_conv;
    f.conv2d_relu_batchnorm_backward = gpu_conv_relu_bn_backward;
    f.conv2d_relu_batchnorm_backward_pair = gpu_conv_relu_bn_backward_pair;
    f.conv2d_backward_weight_bn_grad = gpu_conv_bwd_w_bn_grad;
    f.batchnorm_relu_conv2d_forward_chained = gpu_bn_relu_conv_chained;
    f.classifier_backward = gpu::classifier_backward;
    f.branch_begin = gpu::side_begin;
    f.branch_end = gpu::side_end;
    f.branch_join = gpu::side_join_all;
    return f;
}
const FusedOps fused = make_fused();

// The fast table: implicit-GEMM convolutions (conv2d_igemm.cu), split batchnorm
// (batchnorm_split.cu), the fused slots above
Ops make_table()
{
    Ops t = common_table();
    t.name = "gpu";
    t.fused = &fused;
    t.conv2d_forward = gpu_conv_fwd;
    t.conv2d_backward_input = gpu_conv_bwd_in;
    t.conv2d_backward_weight = gpu_conv_bwd_w;
    t.batchnorm_forward_train = gpu_bn_train;
    t.batchnorm_forward_eval = gpu::batchnorm_forward_eval;
    t.batchnorm_backward = gpu_bn_backward;
    t.sgd_step = gpu_sgd;
    return t;
}
const Ops table = make_table();

// The reference table: the readable kernels, as cpu/'s operators are written (conv2d.cu:
// im2col + GEMM; batchnorm.cu: one block per channel), no fused slots: the plain walk runs it
Ops make_ref_table()
{
    Ops t = common_table();
    t.name = "gpu-reference";
    t.conv2d_forward = gpu::conv2d_forward;
    t.conv2d_backward_input = gpu::conv2d_backward_input;
    t.conv2d_backward_weight = gpu::conv2d_backward_weight;
    t.batchnorm_forward_train = gpu::batchnorm_forward_train;
    t.batchnorm_forward_eval = gpu::batchnorm_forward_eval;
    t.batchnorm_backward = gpu::batchnorm_backward;
    t.sgd_step = gpu::sgd_step;
    return t;
}
const Ops ref_table = make_ref_table();

// Data-parallel training with more than one process (gpu/dist.cu): the fast table's
// convolutions and SGD with the readable batchnorm, whose sums are added over the processes
// between its launches, run by the plain walk (no fused slots: the fused kernels compute
// batchnorm's statistics inside the convolutions' epilogues, where there is no point at which
// to add them over the processes). The gradients' sum first completes the weight gradients
// the implicit GEMM leaves as group sums (gpu_sgd's first steps; then they are done).
void gpu_dp_sum(float *v, size_t n)
{
    gpu::side_join_all();
    gpu::conv2d_igemm_weight_sums();
    gpu::sum_over_processes(v, n);
}
Ops make_dp_table()
{
    Ops t = make_table();
    t.name = "gpu-data-parallel";
    t.fused = nullptr;
    t.batchnorm_forward_train = gpu::batchnorm_forward_train;
    t.batchnorm_backward = gpu::batchnorm_backward;
    t.sum_over_processes = gpu_dp_sum;
    return t;
}
const Ops dp_table = make_dp_table();
}  // namespace

extern "C" void gpu_release_scratch(void)
{
    gpu::batchnorm_split_release();
    gpu::batchnorm_release();
    gpu::conv2d_igemm_release();
    pair_kk.release();
}

#ifndef CONVNET_CUDA_ARCH
#define CONVNET_CUDA_ARCH 0   // the emulator build: any "device" will do
#endif

// One line for the user when the GPU cannot be used, from what the runtime reported; NULL
// when it can. err: cudaGetDeviceCount's result; driver/runtime: cudaDriverGetVersion /
// cudaRuntimeGetVersion (1000*major + 10*minor; driver 0 = none installed); cc: the card's
// compute capability as 10*major + minor (0 if unknown); built: the sm_ this binary holds.
extern "C" const char *gpu_unusable_reason(char *buf, size_t n, int err, int driver, int runtime,
                                           int cc, int built)
{
    if (err == 34) {
        snprintf(buf, n, "only the CUDA toolkit's stub driver is present: no NVIDIA driver is installed");
    } else if (err == 35 && driver == 0) {
        snprintf(buf, n, "NVIDIA driver not found (no libcuda.so.1)");
    } else if (err == 35) {
        snprintf(buf, n, "the NVIDIA driver (CUDA %d.%d) is older than this build's CUDA runtime "
                 "(%d.%d): update the driver or build with an older CUDA toolkit",
                 driver / 1000, driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10);
    } else if (err == 100) {
        snprintf(buf, n, "no CUDA device");
    } else if (err != 0) {
        snprintf(buf, n, "CUDA error %d at device query", err);
    } else if (cc > 0 && cc < built) {
        snprintf(buf, n, "the GPU's compute capability %d.%d is older than this build's sm_%d: "
                 "rebuild with make CUDA_ARCH=%d", cc / 10, cc % 10, built, cc);
    } else {
        return nullptr;
    }
    return buf;
}

#ifndef CONVNET_EMU
namespace { __global__ void probe_kernel() {} }
#endif

// The devices (count), and the driver's and runtime's CUDA versions (0 under the emulator);
// no device is error 100, as the runtime says it
extern "C" int gpu_device_query(int *count, int *driver, int *runtime)
{
    *count = *driver = *runtime = 0;
    cudaError_t e = cudaGetDeviceCount(count);
#ifndef CONVNET_EMU
    cudaDriverGetVersion(driver);
    cudaRuntimeGetVersion(runtime);
#endif
    if (e == cudaSuccess && *count == 0) e = (cudaError_t)100;
    return (int)e;
}

extern "C" const Ops *ops_gpu(const char **why)
{
    static char reason[256];
    int count, driver, runtime, cc = 0;
    cudaError_t e = (cudaError_t)gpu_device_query(&count, &driver, &runtime);
#ifndef CONVNET_EMU
    if (e == cudaSuccess) {
        cudaDeviceProp prop;
        if (cudaGetDeviceProperties(&prop, gpu::current_device()) == cudaSuccess) cc = prop.major * 10 + prop.minor;
    }
#endif
    const char *r = gpu_unusable_reason(reason, sizeof reason, (int)e, driver, runtime, cc, CONVNET_CUDA_ARCH);
    if (!r && e != cudaSuccess) r = cudaGetErrorString(e);
    if (r) {
        cudaGetLastError();   // clear the sticky error for a later query
        if (why) *why = r;
        return nullptr;
    }
    CUDA_CHECK(cudaSetDevice(gpu::current_device()));   // 0, or this process's (gpu/dist.cu)
#ifndef CONVNET_EMU
    // the binary must hold code this card can run (sm_ or PTX of the same or older arch)
    cudaFuncAttributes fa;
    cudaError_t fe = cudaFuncGetAttributes(&fa, probe_kernel);
    if (fe != cudaSuccess) {
        cudaGetLastError();
        snprintf(reason, sizeof reason, "this build has no kernels the GPU (sm_%d) can run (%s): "
                 "rebuild with make CUDA_ARCH=%d", cc, cudaGetErrorString(fe), cc);
        if (why) *why = reason;
        return nullptr;
    }
#endif
    return &table;
}

extern "C" const Ops *ops_gpu_ref(const char **why) { return ops_gpu(why) ? &ref_table : nullptr; }
extern "C" const Ops *ops_gpu_data_parallel(const char **why) { return ops_gpu(why) ? &dp_table : nullptr; }
