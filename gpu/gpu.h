// The GPU operators: same names and signatures as cpu/cpu.h (in namespace gpu), device pointers.
#ifndef CONVNET_GPU_H
#define CONVNET_GPU_H
#include <stddef.h>
#include <stdint.h>
#include "core/augment.h"   /* AugParams */
#include "core/ops.h"
#include "core/ops_fused.h"   /* BnRefs, ConvBnLayer */
#include "gpu/cuda_compat.h"

namespace gpu {

// The card the tuned kernels' launch rules are shaped for: an H100/H200, 132 SMs (the rules
// aim at a few blocks per SM; a fixed number, not the device's, keeps every card and the
// emulator on the same grids, so the same bits)
constexpr int CARD_SMS = 132;
// A device buffer grown on first use to the largest size asked, then reused: the operators'
// scratch. It grows in the model's first step, which is never captured (cudaMalloc is refused
// inside a capture). release(): freed, as in a new process (tests).
struct Scratch {
    float *p = nullptr;
    size_t n = 0;
    float *get(size_t floats)
    {
        if (floats > n) {
            release();
            CUDA_CHECK(cudaMalloc(&p, sizeof(float) * floats));
            n = floats;
        }
        return p;
    }
    void release()
    {
        if (p) CUDA_CHECK(cudaFree(p));
        p = nullptr;
        n = 0;
    }
};

// The stream every kernel of gpu/ is launched on (ops_gpu.cu; created on first use). A
// blocking stream: the runtime's blocking copies (upload/download) stay ordered with it.
// Training steps are captured on it as one CUDA graph.
cudaStream_t stream();
// The stream launches go to (stream(): the main one, or the side one between side_begin and
// side_end). side_begin: the side stream waits for the main one's work so far; side_mark:
// marks the side stream's work so far; side_end: back to the main stream; side_join: the
// main stream waits for the side one's work up to the last mark; side_join_all: ... up to the
// last side_end, if it has not waited for it yet (sgd_step and capture_end do it: the weight
// gradients are all done). Captured, this forks and joins branches of the step's graph.
// capture_begin/end use main_stream(); capture_begin joins side work issued before it (an
// event is only ever waited for in the mode it was recorded in: ops_gpu.cu says why).
// require_main_stream: stops with a message naming `what` unless launches go to the main
// stream (kernels that take a last-block ticket: their counters are one per source file, so
// two such launches must never overlap).
cudaStream_t main_stream();
cudaStream_t side_stream();
void require_main_stream(const char *what);
void side_begin();
void side_mark();
void side_end();
void side_join();
void side_join_all();

// gemm.cu. Batched: for b < batch, C_b = op(A_b) op(B_b) + beta C_b with X_b = X + b*strideX;
// with reduce != 0 all batches accumulate into one C: C = sum_b op(A_b) op(B_b) + beta C
// (summed in batch order inside each thread: deterministic, no atomics).
void gemm_batched(int transA, int transB, int M, int N, int K, const float *A, int lda, long strideA,
                  const float *B, int ldb, long strideB, float beta, float *C, int ldc, long strideC,
                  int batch, int reduce);

void gemm(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B,
          int ldb, float beta, float *C, int ldc);
void gemm_naive(int transA, int transB, int M, int N, int K, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc);

void conv2d_forward(float *out, const float *in, const float *weight, int N, int C, int H, int W,
                    int K, int R, int S, int stride, int pad, float *workspace);
void conv2d_backward_input(float *din, const float *dout, const float *weight, int N, int C, int H,
                           int W, int K, int R, int S, int stride, int pad, float *workspace);
void conv2d_backward_weight(float *dweight, const float *dout, const float *in, int N, int C, int H,
                            int W, int K, int R, int S, int stride, int pad, float *workspace);
void bias_forward(float *out, const float *bias, int N, int K, int HW);
void bias_backward(float *dbias, const float *dout, int N, int K, int HW);
void im2col(float *col, const float *in, int N, int C, int H, int W, int R, int S, int stride,
            int pad, int P, int Q);
void col2im(float *in, const float *col, int N, int C, int H, int W, int R, int S, int stride,
            int pad, int P, int Q);

void batchnorm_forward_train(float *out, float *save_mean, float *save_invstd, float *running_mean,
                             float *running_var, const float *in, const float *gamma,
                             const float *beta, int N, int C, int HW, float momentum, float eps);
void batchnorm_forward_eval(float *out, const float *in, const float *gamma, const float *beta,
                            const float *running_mean, const float *running_var, int N, int C,
                            int HW, float eps);
void batchnorm_backward(float *din, float *dgamma, float *dbeta, const float *dout, const float *in,
                        const float *gamma, const float *save_mean, const float *save_invstd,
                        int N, int C, int HW);
void batchnorm_release();   // the readable kernels' sums buffer (tests: as in a new process)

// dist.cu: data-parallel training over processes (core/dist.h), one GPU each.
// v[0..n) (device memory) := its sum over the processes, added in rank order, issued on
// stream() (captured with the step's graph); does nothing with one process.
void sum_over_processes(float *v, size_t n);
int current_device();   // the GPU this process uses: 0, or its local rank's
}  // namespace gpu

// ops_gpu.cu: the device count and the driver's and runtime's CUDA versions (cudaError_t as
// an int; no device is 100), and the one-line reason they give for not using the GPU (NULL: usable)
extern "C" int gpu_device_query(int *count, int *driver, int *runtime);
extern "C" const char *gpu_unusable_reason(char *buf, size_t n, int err, int driver, int runtime, int cc, int built);

namespace gpu {

// The op table's batchnorm (gpu/batchnorm_split.cu): each channel split over chunks so a
// layer fills the card; relu = 1 applies max(0, .) in the same pass; backward: mask (NULL or
// the ReLU's output: dout counts where mask > 0) and add (NULL or a residual gradient added
// to din) fused in. The one-block-per-channel kernels above stay as the readable reference.
void batchnorm_split_forward_train(float *out, float *save_mean, float *save_invstd, float *running_mean,
                                   float *running_var, const float *in, const float *gamma,
                                   const float *beta, int N, int C, int HW, float momentum, float eps,
                                   int relu);
// beta: NULL, or (with mask NULL) the ReLU mask is recomputed as relu(batchnorm(in)) > 0.
// In two halves (the sums, then the apply pass with the sums' per-channel factors kk,
// valid until the next batchnorm call), so that other work can be ordered in between.
const float *batchnorm_split_backward_sums(float *dgamma, float *dbeta, const float *dout, const float *mask,
                                           const float *in, const float *gamma, const float *beta,
                                           const float *save_mean, const float *save_invstd, int N, int C, int HW);
void batchnorm_split_backward_apply(float *din, const float *dout, const float *mask, const float *in,
                                    const float *add, const float *kk, const float *gamma, const float *beta,
                                    const float *save_mean, const float *save_invstd, int N, int C, int HW);
void batchnorm_split_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                              const float *mask, const float *in, const float *add, const float *gamma,
                              const float *beta, const float *save_mean, const float *save_invstd, int N,
                              int C, int HW);
// the forward's statistics alone (save_mean, save_invstd, running update): for a consumer
// that applies batchnorm+ReLU as it reads (conv2d_igemm with BnRelu)
void batchnorm_split_stats(float *save_mean, float *save_invstd, float *running_mean, float *running_var,
                           const float *in, const float *gamma, const float *beta, int N, int C, int HW,
                           float momentum, float eps);
// eval: [C] mean then [C] invstd from the running statistics, in scratch memory valid until
// the next batchnorm call
const float *batchnorm_eval_stats(const float *running_mean, const float *running_var, int C, float eps);

// The op table's convolution (conv2d_igemm.cu): implicit GEMM, no column buffer; the weight
// gradient over groups of output pixels, summed in group order. With bn.gamma set, forward and
// backward_weight read relu(batchnorm(in)) (per channel: scale = gamma invstd, shift = beta -
// mean scale) instead of in, applied as each value is gathered.
struct BnRelu {
    const float *gamma, *beta, *mean, *invstd;   // [C] each; gamma == nullptr: in as stored
};
// backward_input_bn: batchnorm's backward sums made in backward_input's epilogue (the conv's
// input is relu(batchnorm(x))): dbeta, dgamma and the apply pass's kk, as
// batchnorm_split_backward_sums(dgamma, dbeta, din, NULL, x, gamma, beta, ...) makes them;
// returns kk (scratch, valid until the next call).
struct BnSums {
    const float *x, *gamma, *beta, *mean, *invstd;
    float *part, *kk, *dgamma, *dbeta;   // part: nullptr = no epilogue
    long count;                          // values per channel (N*H*W)
};
// A convolution's output gradient given unapplied (BnGrad.g set): dout = batchnorm's backward
// of g, the gradient at the ReLU after batchnorm, whose input x (the convolution's output) is
// not stored applied: per channel k, at each value read,
//   dout = kk[k] (M [x scale + shift > 0] g - kk[K + k] - xhat kk[2K + k]),  xhat = (x - mean) invstd
// with kk as backward_input_bn returns it (batchnorm_split_backward_apply's arithmetic, so the
// same bits as the applied tensor). g, x: [N,K,P,Q]; gamma, beta, mean, invstd: [K].
// kk == nullptr: its factors from gamma, invstd and the batchnorm's finished dgamma, dbeta
// (the same bits); add: dout + add[same index] (the apply pass's residual), nullptr: none.
struct BnGrad {
    const float *g, *x, *kk, *gamma, *beta, *mean, *invstd;   // g == nullptr: dout as stored
    long M;                                                    // values per channel (N*P*Q)
    const float *dgamma = nullptr, *dbeta = nullptr, *add = nullptr;
};
// kk_out: where kk goes (3C floats; nullptr: scratch valid until the next call);
// dout_bn: dout given unapplied (then dout is not read)
const float *conv2d_igemm_backward_input_bn(float *din, const float *dout, const float *weight, int N, int C,
        int H, int W, int K, int R, int S, int stride, int pad, const float *x, const float *gamma,
        const float *beta, const float *mean, const float *invstd, float *dgamma, float *dbeta,
        float *kk_out = nullptr, const BnGrad *dout_bn = nullptr);
// next[0..n_next) (at most 2): the batchnorms that read out; their batch statistics of out
// (after the add) are made in the store (per column tile: count, mean, M2 by two passes over
// the tile's values; the grid's last block combines the tiles in order with Chan's formula)
// and finalized as batchnorm_split_stats does (save_mean, save_invstd, running update).
void conv2d_igemm_forward(float *out, const float *in, const float *weight, const float *add, int N, int C,
                          int H, int W, int K, int R, int S, int stride, int pad, BnRelu bn = BnRelu{},
                          const BnRefs *next = nullptr, int n_next = 0);
void conv2d_igemm_backward_input(float *din, const float *dout, const float *weight, int N, int C, int H,
                                 int W, int K, int R, int S, int stride, int pad);
// The launch that reads dout and in (dout_bn: dout given unapplied, BnGrad above) and writes a
// partial dW per pixel group; the groups' sum is pending until conv2d_igemm_weight_sums, which
// adds every pending weight gradient's groups in one launch (sgd_step and download call it:
// the table's dW are complete whenever anything reads them). So a weight gradient's only
// launch is its reads, and the side stream's chain is as long as the main one's at most.
void conv2d_igemm_backward_weight(float *dweight, const float *dout, const float *in, int N, int C, int H,
                                  int W, int K, int R, int S, int stride, int pad, BnRelu bn = BnRelu{},
                                  const BnGrad *dout_bn = nullptr);
void conv2d_igemm_weight_sums();
void classifier_backward(float *dx, float *dweight, float *dbias, const float *probs, const int32_t *labels,
                         const float *pooled, const float *weight, int N, int I, int O, int H, int W);
// backward-input with batchnorm's sums (as backward_input_bn; dout_bn: dout unapplied) and the
// weight gradient (as backward_weight with bn, its input read as relu(batchnorm(x))) in one
// kernel that reads dout and x once for both, where the convolution takes it (stride 1, the
// output the input's size, and the partial dW small against the tensors: conv2d_igemm.cu's
// fused_plan). Returns kk, or nullptr when it does not take it: then nothing was launched.
const float *conv2d_igemm_backward_fused(float *dweight, float *din, const float *dout, const float *weight, int N,
        int C, int H, int W, int K, int R, int S, int stride, int pad, BnRelu bn, const float *x, float *dgamma,
        float *dbeta, float *kk_out = nullptr, const BnGrad *dout_bn = nullptr);
int conv2d_igemm_weight_groups(int N, int K, int C, int R, int S, int P, int Q);
// free the scratch buffers the split batchnorm and the implicit GEMM grow on first use (tests:
// the next step then allocates them again, as the first step of a new process does)
void batchnorm_split_release();
void conv2d_igemm_release();

void relu_forward(float *out, const float *in, size_t n);
void relu_backward(float *din, const float *dout, const float *out, size_t n);
void add_forward(float *out, const float *a, const float *b, size_t n);
void add_inplace(float *y, const float *x, size_t n);
void scale(float *y, float a, size_t n);

void maxpool2d_forward(float *out, int32_t *argmax, const float *in, int N, int C, int H, int W,
                       int k, int stride, int pad);
void maxpool2d_backward(float *din, const float *dout, const int32_t *argmax, int N, int C, int H,
                        int W, int k, int stride, int pad);
void avgpool2d_forward(float *out, const float *in, int N, int C, int H, int W, int k, int stride,
                       int pad);
void avgpool2d_backward(float *din, const float *dout, int N, int C, int H, int W, int k,
                        int stride, int pad);

void linear_forward(float *out, const float *in, const float *weight, const float *bias, int N,
                    int I, int O);
void linear_backward(float *din, float *dweight, float *dbias, const float *dout, const float *in,
                     const float *weight, int N, int I, int O);

void softmax_xent_forward(float *losses, float *probs, int32_t *correct, const float *logits,
                          const int32_t *labels, int N, int C);
void softmax_xent_backward(float *dlogits, const float *probs, const int32_t *labels, int N, int C);

void sgd_step(float *w, const float *g, float *buf, size_t n, float lr, float momentum, float wd,
              int first_step);

// augment.cu: out [n,3,32,32] normalized floats from images (device uint8 dataset) at
// indices idx with per-image params (see core/augment.h); perm may be NULL.
void augment_plan(float *out, int32_t *labels_out, const uint8_t *images, const uint8_t *labels,
                  const int32_t *order, const AugParams *params, const int32_t *step, int n, const int32_t *perm);
// step.cu: the device-side loss/accuracy sums and step counter, and graph capture
void loss_accumulate(double *sums, const float *losses, const int32_t *correct, int n, int32_t *step);
void capture_begin();
void *capture_end();
void graph_launch(void *g);
void graph_free(void *g);
void augment_batch(float *out, const uint8_t *images, const int32_t *idx, const AugParams *params,
                   int n, double rotate_deg, const int32_t *perm);

// Grid size for a grid-stride loop over n elements with `threads` per block.
int grid_for(size_t n, int threads);
}  // namespace gpu

#endif
