/* The shape of one GPU training step, without a GPU.
 *
 * Runs one training step of the practical's ResNet (batch 128, after one untraced step) on
 * the GPU op table compiled against the CUDA-on-CPU emulator, with the emulator in
 * trace-only mode: every kernel launch is recorded (name, grid, block, dynamic shared
 * memory) and skipped. Each op-table call is wrapped to attribute its launches and to count
 * its work analytically:
 *   flops      the op's arithmetic (2 per multiply-add)
 *   min bytes  what any implementation must move through DRAM: each input read once, each
 *              output written once (fp32)
 *   bytes      what the current kernels move: batchnorm's second pass, partial sums, ReLU
 *              in place, and so on (a model of the kernels in gpu/, stated per op below)
 * Then a roofline lower bound for the step on an H100 SXM and an H200, per op
 * max(time of its arithmetic, bytes/bandwidth), the arithmetic at the fp32 CUDA-core peak
 * except the convolutions' products under 3xTF32 (the default; --gpu-math fp32 for CUDA
 * cores): those at a third of the dense TF32 tensor-core peak (three tf32 products each) times
 * the share the instruction issue leaves them (TC_ISSUE_SHARE below), plus the launch gaps (host-launched:
 * LAUNCH_GAP_US per kernel; inside a CUDA graph: GRAPH_GAP_US per node on the graph's longest
 * chain of dependent nodes, since the nodes of a side branch start while the main chain's
 * run; their work is in the roofline sum all the same), and the 100-epoch time it implies
 * (351 steps per epoch). The last line is
 *   gpu_plan: launches/step L, graph launches/step G, syncs/step S, min blocks B, bound_ms T
 * with B over the kernels of ops that are not tiny (whole op under TINY_BYTES and TINY_FLOPS:
 * it cannot fill the card and is over in about a launch gap anyway) and T for the H200.
 * The step is core/gpustep.c's: captured once as a CUDA graph and launched (--no-graph:
 * the same work launched kernel by kernel).
 *   bench/gpu_plan [--batch-size 128] [--kernels] (one line per launch) [--no-graph]
 *                  [--gpu-math 3xtf32|fp32] [--no-fused-backward] (each convolution's backward as
 *                  two launches, as before the fused kernel) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/cli.h"
#include "core/devdata.h"
#include "core/gpustep.h"
#include "core/model.h"
#include "core/ops_fused.h"
#include "core/util.h"

/* emulator trace hooks (tests/emu/cuda_emu.cc) */
typedef void (*emu_trace_fn)(void *arg, const char *kernel, unsigned gx, unsigned gy, unsigned gz,
                             unsigned bx, unsigned by, unsigned bz, size_t smem);
void emu_set_trace(emu_trace_fn fn, void *arg, int execute);
unsigned long long emu_host_syncs(void);
unsigned long long emu_graph_launches(void);
unsigned long long emu_last_graph_depth(void);
int gpu_conv2d_igemm_weight_groups(int N, int K, int C, int R, int S, int P, int Q);   /* gpu/conv2d_igemm.cu */
int gpu_conv2d_igemm_fused_blocks(int N, int C, int H, int W, int K, int R, int S, int stride, int pad);
long gpu_conv2d_igemm_col_tiles(int M, long Ncol);

#define LAUNCH_GAP_US 2.0     /* kernel-to-kernel gap of host launches on a stream (typical) */
/* A kernel whose last block finishes a reduction (the ticket pattern: batchnorm's statistics
 * and sums in a convolution's store) ends with one block's serial work after all the others:
 * its fence and ticket, then reading partial sums through one SM. gpu/conv2d_igemm.cu does
 * it in two levels (groups of 32 column tiles, then the groups), each assumed to take
 * TAIL_TRIPS dependent trips to L2 of TAIL_TRIP_US, plus its partials' bytes at SM_L2_BPS
 * (one SM's share of L2 bandwidth); on the longest chain. */
#define TAIL_TRIPS 2
#define TAIL_TRIP_US 0.3
#define SM_L2_BPS 100e9
#define GRAPH_GAP_US 1.0      /* the same between the nodes of an instantiated graph */
#define TINY_BYTES (1 << 20)
#define TINY_FLOPS 1e7
#define MAX_OPS 512
#define MAX_LAUNCHES 2048

/* 3xTF32 (gpu/mma.cuh) per k-step of 8 and warp: the warp tiles of gpu/conv2d_igemm.cu hold 4
 * mma tiles of 16x8 (1x4 or 2x2) fed by 12 fragment values per lane, so 12 mma (3 per tile)
 * against, on the CUDA cores, 12 shared-memory loads and 36 instructions splitting the values
 * (2 cvt + 1 sub each, taken as full-rate): 60 warp instructions, and an SM quarter issues one
 * per clock. Its tensor core needs 12 x 2048 FLOP / 512 FLOP per clock = 48 clocks for them:
 * issue, not the tensor cores, sets the pace, at 48/60 of the 3xTF32 rate. */
#define TC_ISSUE_SHARE (48.0 / 60.0)
/* peak: fp32 FLOP/s on CUDA cores; tf32: dense TF32 tensor-core FLOP/s (3xTF32 runs three
 * tf32 products per product: a third of it); bw: HBM B/s */
typedef struct { const char *name; double peak, tf32, bw; } Card;
static const Card cards[] = {
    {"H100 SXM", 67e12, 494.7e12, 3.35e12},
    {"H200", 67e12, 494.7e12, 4.8e12},   /* the same GH100 die, HBM3e */
};

/* flops: all of the op's arithmetic; products: the part that is the convolutions' GEMM
 * products (on tensor cores under --gpu-math 3xtf32) */
typedef struct { char name[48]; double flops, products, min_bytes, bytes, tail_bytes; int tails, first, n; } Op;
typedef struct { char kernel[64]; unsigned g[3], b[3]; size_t smem; int op; } Launch;

static Op ops[MAX_OPS];
static Launch launches[MAX_LAUNCHES];
static int n_ops, n_launches, tracing;
static const Ops *real;

static void on_launch(void *arg, const char *kernel, unsigned gx, unsigned gy, unsigned gz,
                      unsigned bx, unsigned by, unsigned bz, size_t smem)
{
    (void)arg;
    if (tracing != 1 || n_launches >= MAX_LAUNCHES) return;
    Launch *l = &launches[n_launches++];
    snprintf(l->kernel, sizeof l->kernel, "%s", kernel);
    l->g[0] = gx; l->g[1] = gy; l->g[2] = gz;
    l->b[0] = bx; l->b[1] = by; l->b[2] = bz;
    l->smem = smem;
    l->op = n_ops - 1;
    if (n_ops > 0) ops[n_ops - 1].n++;
}

/* opens the record of one op-table call; its launches follow */
static void op_begin(const char *name, double flops, double min_bytes, double bytes)
{
    if (tracing != 1 || n_ops >= MAX_OPS) return;
    Op *o = &ops[n_ops++];
    snprintf(o->name, sizeof o->name, "%s", name);
    o->flops = flops; o->min_bytes = min_bytes; o->bytes = bytes;
    o->first = n_launches;
    o->n = 0;
    o->tail_bytes = 0;
    o->tails = 0;
    o->products = 0;
}
/* of the op's flops, f are convolution products (gpu/conv2d_igemm.cu) */
static void op_products(double f)
{
    if (tracing == 1 && n_ops > 0) ops[n_ops - 1].products = f;
}
/* the op's last launch finishes its reduction of `tiles` column tiles of M channels x w
 * floats in two levels (groups of 32 tiles, then the groups) */
static void op_tail(int M, long tiles, int w)
{
    if (tracing != 1 || n_ops <= 0) return;
    long groups = (tiles + 31) / 32, first = tiles < 32 ? tiles : 32;
    ops[n_ops - 1].tail_bytes += 4.0 * M * w * (double)(first + groups);   /* fp32 */
    ops[n_ops - 1].tails += 2;
}

#define F4 4.0   /* bytes per float */
static int out_size(int H, int R, int stride, int pad) { return (H + 2 * pad - R) / stride + 1; }

/* ---- the op table, wrapped ---- */

typedef struct { double flops, x, y, w; int P, Q; } ConvDims;
static ConvDims conv_dims(int N, int C, int H, int W, int K, int R, int S, int stride, int pad)
{
    int P = out_size(H, R, stride, pad), Q = out_size(W, S, stride, pad);
    ConvDims d = {2.0 * N * K * C * R * S * P * Q, F4 * N * C * H * W, F4 * N * K * P * Q,
                  F4 * K * C * R * S, P, Q};
    return d;
}
/* current kernels (gpu/conv2d_igemm.cu): implicit GEMM, each tensor read or written once
 * from DRAM (a tap's re-reads of the input hit the cache); the weight gradient also writes
 * and reads back one partial dW per pixel group */
static void w_conv_fwd(float *out, const float *in, const float *w, int N, int C, int H, int W, int K,
                       int R, int S, int stride, int pad, float *ws)
{
    ConvDims d = conv_dims(N, C, H, W, K, R, S, stride, pad);
    op_begin("conv fwd", d.flops, d.x + d.y + d.w, d.x + d.w + d.y);
    op_products(d.flops);
    real->conv2d_forward(out, in, w, N, C, H, W, K, R, S, stride, pad, ws);
}
static void w_conv_bwd_in(float *din, const float *dout, const float *w, int N, int C, int H, int W,
                          int K, int R, int S, int stride, int pad, float *ws)
{
    ConvDims d = conv_dims(N, C, H, W, K, R, S, stride, pad);
    op_begin("conv bwd-input", d.flops, d.y + d.x + d.w, d.y + d.w + d.x);
    op_products(d.flops);
    real->conv2d_backward_input(din, dout, w, N, C, H, W, K, R, S, stride, pad, ws);
}
/* the weight gradient: per pixel group a partial dW, written and read back once */
static double wgrad_partials(int N, int K, int C, int R, int S, int P, int Q)
{
    int g = gpu_conv2d_igemm_weight_groups(N, K, C, R, S, P, Q);
    return g > 1 ? 2 * F4 * g * (double)K * C * R * S : 0;
}
/* the fused backward (gpu/conv2d_igemm.cu, conv_bwd_fused_kernel): a partial dW per block,
 * written and read back once (gpu_conv2d_igemm_fused_blocks: 0 where the convolution takes
 * the two launches) */
static double fused_partials(int blocks, int K, int C, int R, int S)
{
    return blocks > 1 ? 2 * F4 * blocks * (double)K * C * R * S : 0;
}
static void w_conv_bwd_w(float *dw, const float *dout, const float *in, int N, int C, int H, int W,
                         int K, int R, int S, int stride, int pad, float *ws)
{
    ConvDims d = conv_dims(N, C, H, W, K, R, S, stride, pad);
    op_begin("conv bwd-weight", d.flops, d.y + d.x + d.w,
             d.x + d.y + d.w + wgrad_partials(N, K, C, R, S, d.P, d.Q));
    op_products(d.flops);
    real->conv2d_backward_weight(dw, dout, in, N, C, H, W, K, R, S, stride, pad, ws);
}
/* batchnorm now (gpu/batchnorm_split.cu): statistics read the input once (each chunk's
 * second pass hits the cache), the apply pass reads it again and writes; backward: the
 * chunk sums read dout and the input, the apply pass both again and writes din */
static void w_bn_train(float *out, float *sm, float *si, float *rm, float *rv, const float *in,
                       const float *g, const float *b, int N, int C, int HW, float mom, float eps)
{
    double x = F4 * N * C * HW;
    op_begin("bn fwd", 6.0 * N * C * HW, 2 * x, 3 * x);
    real->batchnorm_forward_train(out, sm, si, rm, rv, in, g, b, N, C, HW, mom, eps);
}
static void w_bn_eval(float *out, const float *in, const float *g, const float *b, const float *rm,
                      const float *rv, int N, int C, int HW, float eps)
{
    double x = F4 * N * C * HW;
    op_begin("bn eval", 2.0 * N * C * HW, 2 * x, 2 * x);
    real->batchnorm_forward_eval(out, in, g, b, rm, rv, N, C, HW, eps);
}
static void w_bn_bwd(float *din, float *dg, float *db, const float *dout, const float *in, const float *g,
                     const float *sm, const float *si, int N, int C, int HW)
{
    double x = F4 * N * C * HW;
    op_begin("bn bwd", 10.0 * N * C * HW, 3 * x, 5 * x);
    real->batchnorm_backward(din, dg, db, dout, in, g, sm, si, N, C, HW);
}
/* the fused slots: ReLU inside batchnorm's apply pass; eval: batchnorm, then relu in place */
static void w_bn_relu_train(float *out, float *sm, float *si, float *rm, float *rv, const float *in,
                            const float *g, const float *b, int N, int C, int HW, float mom, float eps)
{
    double x = F4 * N * C * HW;
    op_begin("bn+relu fwd", 7.0 * N * C * HW, 2 * x, 3 * x);
    real->fused->batchnorm_relu_forward_train(out, sm, si, rm, rv, in, g, b, N, C, HW, mom, eps);
}
static void w_bn_relu_eval(float *out, const float *in, const float *g, const float *b, const float *rm,
                           const float *rv, int N, int C, int HW, float eps)
{
    double x = F4 * N * C * HW;
    op_begin("bn+relu eval", 3.0 * N * C * HW, 2 * x, 4 * x);
    real->fused->batchnorm_relu_forward_eval(out, in, g, b, rm, rv, N, C, HW, eps);
}
/* chunk sums read dout, the ReLU output (mask) and the input; the apply pass the same (+ the
 * residual) and writes din */
static void w_relu_bn_bwd(float *din, float *dg, float *db, const float *dout, const float *relu_out,
                          const float *in, const float *add, const float *g, const float *sm,
                          const float *si, int N, int C, int HW)
{
    double x = F4 * N * C * HW;
    op_begin("relu+bn bwd", 11.0 * N * C * HW, (add ? 5 : 4) * x, 7 * x + (add ? x : 0));
    real->fused->relu_batchnorm_backward(din, dg, db, dout, relu_out, in, add, g, sm, si, N, C, HW);
}
/* The bytes of one layer's backward-input (+ batchnorm's sums) and weight gradient (with_dw),
 * its dout read as `dout` bytes (d.y, or 2 d.y unapplied: g and x): the weight gradient reads
 * bn_in (through batchnorm+ReLU) and dout and writes a partial dW per pixel group;
 * backward-input reads dout, writes g, and its epilogue reads bn_in for batchnorm's sums.
 * Fused: one kernel reads dout and bn_in once for all three (a partial dW per block). dW:
 * written by the sums of the partials. */
static double layer_bytes(ConvDims d, double dout, int with_dw, int N, int C, int H, int W, int K, int R, int S,
                          int stride, int pad)
{
    int fb = with_dw ? gpu_conv2d_igemm_fused_blocks(N, C, H, W, K, R, S, stride, pad) : 0;
    if (fb) return dout + d.x + 2 * d.w + fused_partials(fb, K, C, R, S) + d.x;
    return (with_dw ? d.x + dout + d.w + wgrad_partials(N, K, C, R, S, d.P, d.Q) : 0) + (dout + d.w + d.x) + d.x;
}
/* (the GPU table stores no activation: in == NULL)
 * unavoidable: dout, bn's input (the conv input is computed from it), din, weights and dW
 * (+ the residual).
 * now: layer_bytes, then the apply pass reads g and bn_in and writes din (+ the residual) */
static void w_conv_relu_bn_bwd(float *dw, float *din, float *gs, const float *dout, const float *in,
        const float *w, int N, int C, int H, int W, int K, int R, int S, int stride, int pad,
        float *ws, float *dg, float *db, const float *bn_in, const float *add, const float *g,
        const float *b, const float *sm, const float *si)
{
    ConvDims d = conv_dims(N, C, H, W, K, R, S, stride, pad);
    double x = d.x;
    double min = d.y + 2 * x + 2 * d.w + (add ? x : 0);
    double now = layer_bytes(d, d.y, dw != NULL, N, C, H, W, K, R, S, stride, pad) + 3 * x + (add ? x : 0);
    op_begin("conv+relu+bn bwd", (dw ? 2 : 1) * d.flops + 11.0 * N * C * H * W, min, now);
    op_products((dw ? 2 : 1) * d.flops);
    op_tail(C, gpu_conv2d_igemm_col_tiles(C, (long)N * H * W), 2);   /* sums of g, g xhat */
    real->fused->conv2d_relu_batchnorm_backward(dw, din, gs, dout, in, w, N, C, H, W, K, R, S, stride, pad,
                                         ws, dg, db, bn_in, add, g, b, sm, si);
}
/* both layers of a block's main path in one call:
 * unavoidable: dout, each layer's bn input (conv1's output c1, and x), din (+ the residual),
 * weights and dW; d(c1) is not among them (this op shows it need not be stored).
 * now: layer 2's layer_bytes; layer 1's, its weight gradient and backward-input reading d(c1)
 * as bn2's backward of g2 (two tensors, g2 and c1, for one), and its apply pass. din == NULL: bn1's apply pass is not run
 * (its consumer, conv2d_backward_weight_bn_grad below, reads d x unapplied); the unavoidable
 * bytes stay as if d x were written once, so that the yardstick does not move */
static void w_conv_relu_bn_bwd_pair(float *din, float *g1, float *g2, const float *dout, const ConvBnLayer *l2,
                                    const ConvBnLayer *l1, const float *add, int N)
{
    ConvDims d2 = conv_dims(N, l2->C, l2->H, l2->W, l2->K, l2->R, l2->S, l2->stride, l2->pad);
    ConvDims d1 = conv_dims(N, l1->C, l1->H, l1->W, l1->K, l1->R, l1->S, l1->stride, l1->pad);
    double x2 = d2.x, x1 = d1.x, y1 = d1.y;   /* y1: c1 and d(c1), the size of x2 */
    double min = d2.y + x2 + x1 + x1 + 2 * (d2.w + d1.w) + (add ? x1 : 0);
    double now2 = layer_bytes(d2, d2.y, 1, N, l2->C, l2->H, l2->W, l2->K, l2->R, l2->S, l2->stride, l2->pad);
    double now1 = layer_bytes(d1, 2 * y1, 1, N, l1->C, l1->H, l1->W, l1->K, l1->R, l1->S, l1->stride, l1->pad) +
                  (din ? 3 * x1 + (add ? x1 : 0) : 0);   /* the apply pass, if din */
    double el2 = 10.0 * N * l2->C * l2->H * l2->W;   /* bn2's sums and apply, now in conv1's reads (twice) */
    op_begin("block bwd (2 layers)", 2 * (d2.flops + d1.flops) + 2 * el2 + 11.0 * N * l1->C * l1->H * l1->W, min,
             now2 + now1);
    op_products(2 * (d2.flops + d1.flops));
    op_tail(l2->C, gpu_conv2d_igemm_col_tiles(l2->C, (long)N * l2->H * l2->W), 2);
    op_tail(l1->C, gpu_conv2d_igemm_col_tiles(l1->C, (long)N * l1->H * l1->W), 2);
    real->fused->conv2d_relu_batchnorm_backward_pair(din, g1, g2, dout, l2, l1, add, N);
}
/* a weight gradient reading its dout as a pair's unapplied d x: unavoidable as
 * conv2d_backward_weight (dout read once); now: g1, the batchnorm's input and the residual
 * for dout, the conv's input, a partial dW per pixel group */
static void w_conv_bwd_w_bn_grad(float *dw, const float *in, int N, int C, int H, int W, int K, int R, int S,
                                 int stride, int pad, const float *g1, const ConvBnLayer *bn, const float *add)
{
    ConvDims d = conv_dims(N, C, H, W, K, R, S, stride, pad);
    op_begin("conv bwd-w (unapplied)", d.flops + 10.0 * N * K * d.P * d.Q, d.y + d.x + d.w,
             (add ? 3 : 2) * d.y + d.x + d.w + wgrad_partials(N, K, C, R, S, d.P, d.Q));
    op_products(d.flops);
    real->fused->conv2d_backward_weight_bn_grad(dw, in, N, C, H, W, K, R, S, stride, pad, g1, bn, add);
}
static void w_bn_relu_conv(float *out, float *a, const float *in, const float *w, const float *add,
        int N, int C, int H, int W, int K, int R, int S, int stride, int pad, float *ws,
        float *sm, float *si, float *rm, float *rv, const float *g, const float *b, float mom,
        float eps, int train)
{
    ConvDims d = conv_dims(N, C, H, W, K, R, S, stride, pad);
    double x = d.x;
    /* (a == NULL: the GPU table stores no activation) unavoidable: read in, read weights,
     * write out (+add). now: training, a statistics pass reads in; the conv reads in through
     * batchnorm+ReLU */
    double min = x + d.w + d.y + (add ? d.y : 0);
    double now = (train ? x : 0) + (x + d.w + d.y) + (add ? d.y : 0);
    op_begin("bn+relu+conv fwd", d.flops + 7.0 * N * C * H * W, min, now);
    op_products(d.flops);
    real->fused->batchnorm_relu_conv2d_forward(out, a, in, w, add, N, C, H, W, K, R, S, stride, pad, ws, sm, si,
                                        rm, rv, g, b, mom, eps, train);
}
/* chained: as above with a not stored; no statistics pass when in_ready; the statistics of
 * out for the next batchnorms are made in the conv's store (no traffic but per-tile sums) */
static void w_bn_relu_conv_chained(float *out, const float *in, const float *w, const float *add, int N, int C, int H,
        int W, int K, int R, int S, int stride, int pad, const BnRefs *bn, int in_ready, const BnRefs *next, int n_next)
{
    ConvDims d = conv_dims(N, C, H, W, K, R, S, stride, pad);
    double x = d.x, min = x + d.w + d.y + (add ? d.y : 0);
    double now = (in_ready || !bn ? 0 : x) + (x + d.w + d.y) + (add ? d.y : 0);
    if (bn) op_begin("bn+relu+conv fwd", d.flops + 7.0 * N * C * H * W, min, now);
    else op_begin("conv fwd (+statistics)", d.flops, min, now);
    op_products(d.flops);
    if (n_next) op_tail(K, gpu_conv2d_igemm_col_tiles(K, (long)N * d.P * d.Q), 3);   /* count, mean, M2 */
    real->fused->batchnorm_relu_conv2d_forward_chained(out, in, w, add, N, C, H, W, K, R, S, stride, pad, bn, in_ready,
                                                next, n_next);
}
static void w_relu_fwd(float *out, const float *in, size_t n)
{
    op_begin("relu fwd", (double)n, 2 * F4 * n, 2 * F4 * n);
    real->relu_forward(out, in, n);
}
static void w_relu_bwd(float *din, const float *dout, const float *out, size_t n)
{
    op_begin("relu bwd", (double)n, 3 * F4 * n, 3 * F4 * n);
    real->relu_backward(din, dout, out, n);
}
static void w_add(float *out, const float *a, const float *b, size_t n)
{
    op_begin("add", (double)n, 3 * F4 * n, 3 * F4 * n);
    real->add_forward(out, a, b, n);
}
static void w_add_inplace(float *y, const float *x, size_t n)
{
    op_begin("add in place", (double)n, 3 * F4 * n, 3 * F4 * n);
    real->add_inplace(y, x, n);
}
static void w_avg_fwd(float *out, const float *in, int N, int C, int H, int W, int k, int s, int p)
{
    double x = F4 * N * C * H * W;
    op_begin("avgpool fwd", x / F4, x + x / (k * k), x + x / (k * k));
    real->avgpool2d_forward(out, in, N, C, H, W, k, s, p);
}
static void w_avg_bwd(float *din, const float *dout, int N, int C, int H, int W, int k, int s, int p)
{
    double x = F4 * N * C * H * W;
    op_begin("avgpool bwd", x / F4, x + x / (k * k), x + x / (k * k));
    real->avgpool2d_backward(din, dout, N, C, H, W, k, s, p);
}
static void w_lin_fwd(float *out, const float *in, const float *w, const float *b, int N, int I, int O)
{
    double by = F4 * ((double)N * I + (double)O * I + (double)N * O);
    op_begin("linear fwd", 2.0 * N * I * O, by, by);
    real->linear_forward(out, in, w, b, N, I, O);
}
static void w_lin_bwd(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                      int N, int I, int O)
{
    double by = F4 * (2.0 * N * I + 2.0 * O * I + (double)N * O);
    op_begin("linear bwd", 4.0 * N * I * O, by, by);
    real->linear_backward(din, dw, db, dout, in, w, N, I, O);
}
static void w_sm_fwd(float *losses, float *probs, int32_t *correct, const float *logits, const int32_t *labels,
                     int N, int C)
{
    op_begin("softmax+xent fwd", 5.0 * N * C, F4 * (2.0 * N * C + 3 * N), F4 * (2.0 * N * C + 3 * N));
    real->softmax_xent_forward(losses, probs, correct, logits, labels, N, C);
}
static void w_sm_bwd(float *dlogits, const float *probs, const int32_t *labels, int N, int C)
{
    op_begin("softmax+xent bwd", 2.0 * N * C, F4 * (2.0 * N * C + N), F4 * (2.0 * N * C + N));
    real->softmax_xent_backward(dlogits, probs, labels, N, C);
}
/* the head's backward in one launch: reads probs, labels, pooled and W, writes dx, dW, db
 * (dlogits and d pooled not stored; recomputed per value from L1) */
static void w_classifier_bwd(float *dx, float *dw, float *db, const float *probs, const int32_t *labels,
                             const float *pooled, const float *w, int N, int I, int O, int H, int W)
{
    double x = F4 * N * I * H * W, io = F4 * (double)I * O;
    double b = F4 * (N * O + N + N * I) + io + x + io + F4 * O;
    op_begin("classifier bwd", 4.0 * N * I * O + 3.0 * N * O + N * O + (double)N * I * H * W, b, b);
    real->fused->classifier_backward(dx, dw, db, probs, labels, pooled, w, N, I, O, H, W);
}
static void w_augment(float *out, const uint8_t *images, const int32_t *idx, const struct AugParams *params,
                      int n, double rot, const int32_t *perm)
{
    op_begin("augment (batch build)", 20.0 * n * 3072, n * 3072.0 * (1 + F4), n * 3072.0 * (1 + F4));
    real->augment_batch(out, images, idx, params, n, rot, perm);
}
static void w_augment_plan(float *out, int32_t *labels_out, const uint8_t *images, const uint8_t *labels,
                           const int32_t *order, const struct AugParams *params, const int32_t *step, int n,
                           const int32_t *perm)
{
    op_begin("batch build (plan)", 20.0 * n * 3072, n * 3072.0 * (1 + F4), n * 3072.0 * (1 + F4));
    real->augment_plan(out, labels_out, images, labels, order, params, step, n, perm);
}
static void w_loss_acc(double *sums, const float *losses, const int32_t *correct, int n, int32_t *step)
{
    op_begin("loss/acc sums", 2.0 * n, 8.0 * n, 8.0 * n);
    real->loss_accumulate(sums, losses, correct, n, step);
}
static void w_sgd(float *w, const float *g, float *buf, size_t n, float lr, float mom, float wd, int first)
{
    op_begin("sgd", 5.0 * n, 5 * F4 * n, 5 * F4 * n);
    real->sgd_step(w, g, buf, n, lr, mom, wd, first);
}

static FusedOps fused_plan;
static Ops wrapped(const Ops *r)
{
    Ops t = *r;
    const FusedOps *rf = r->fused;
    t.name = "gpu (planned)";
    t.conv2d_forward = w_conv_fwd; t.conv2d_backward_input = w_conv_bwd_in;
    t.conv2d_backward_weight = w_conv_bwd_w;
    t.batchnorm_forward_train = w_bn_train; t.batchnorm_forward_eval = w_bn_eval;
    t.batchnorm_backward = w_bn_bwd;
    t.relu_forward = w_relu_fwd; t.relu_backward = w_relu_bwd;
    t.add_forward = w_add; t.add_inplace = w_add_inplace;
    t.avgpool2d_forward = w_avg_fwd; t.avgpool2d_backward = w_avg_bwd;
    t.linear_forward = w_lin_fwd; t.linear_backward = w_lin_bwd;
    t.softmax_xent_forward = w_sm_fwd; t.softmax_xent_backward = w_sm_bwd;
    t.augment_batch = w_augment;
    t.augment_plan = w_augment_plan;
    t.loss_accumulate = w_loss_acc;
    t.sgd_step = w_sgd;
    if (!rf) return t;
    FusedOps *f = &fused_plan;
    *f = *rf;
    f->batchnorm_relu_forward_train = w_bn_relu_train; f->batchnorm_relu_forward_eval = w_bn_relu_eval;
    f->relu_batchnorm_backward = w_relu_bn_bwd;
    f->conv2d_relu_batchnorm_backward = w_conv_relu_bn_bwd;
    f->conv2d_relu_batchnorm_backward_pair = rf->conv2d_relu_batchnorm_backward_pair ? w_conv_relu_bn_bwd_pair : NULL;
    f->conv2d_backward_weight_bn_grad = rf->conv2d_backward_weight_bn_grad ? w_conv_bwd_w_bn_grad : NULL;
    f->batchnorm_relu_conv2d_forward = w_bn_relu_conv;
    f->batchnorm_relu_conv2d_forward_chained = rf->batchnorm_relu_conv2d_forward_chained ? w_bn_relu_conv_chained : NULL;
    f->classifier_backward = rf->classifier_backward ? w_classifier_bwd : NULL;
    t.fused = f;
    return t;
}

static long blocks_of(const Launch *l) { return (long)l->g[0] * l->g[1] * l->g[2]; }


int main(int argc, char **argv)
{
    int batch = 128, per_kernel = 0, use_graph = 1, tc;
    for (int i = 1; i < argc; i++) {
        if (cli_is_flag(argv[i], "--batch-size")) batch = (int)cli_long("--batch-size", cli_value(argc, argv, &i), 1, 4096);
        else if (!strcmp(argv[i], "--kernels")) per_kernel = 1;
        else if (!strcmp(argv[i], "--no-graph")) use_graph = 0;
        else if (!strcmp(argv[i], "--no-fused-backward")) gpu_set_conv_fusion(-1);
        else if (cli_is_flag(argv[i], "--gpu-math")) cli_gpu_math(cli_value(argc, argv, &i));
        else die_code(2, "unknown flag '%s' (bench/gpu_plan [--batch-size N] [--kernels] [--no-graph] [--gpu-math 3xtf32|fp32] [--no-fused-backward])", argv[i]);
    }
    tc = gpu_conv_math() == GPU_CONV_3XTF32;
    const char *why = NULL;
    real = ops_gpu(&why);
    if (!real) die("the emulated GPU table is missing: %s", why ? why : "?");
    Ops plan = wrapped(real);
    ModelConfig cfg;
    model_config_default(&cfg);
    emu_set_trace(on_launch, NULL, 0);   /* record every launch, run none */
    Model *m = model_create(&plan, &cfg, batch);
    Rng rng;
    rng_seed(&rng, 1, 1);
    model_init(m, &rng);
    /* a small data set: the step only needs the shapes */
    int n_img = batch * 2;
    Dataset ds = {n_img, xcalloc((size_t)n_img, CIFAR_PIXELS), xcalloc((size_t)n_img, 1)};
    DeviceData *dd = devdata_create(&plan, &ds, NULL, batch);
    LoaderConfig lc = {.ds = &ds, .n = n_img, .batch = batch, .shuffle = 1, .drop_last = 1, .flip = 1, .crop = 1, .seed = 1};
    int graph = use_graph && plan.capture_begin;
    GpuStep *gs = gpustep_create(m, dd, &lc, graph);
    gpustep_epoch(gs, &lc, 0, 0, 0, 0);
    /* step 1: SGD's first step (uncaptured); step 2: captured as a graph (its ops and
     * kernels recorded here) and launched; step 3: the steady state, syncs and launches counted */
    gpustep_run(gs, 0.1f, 0.9f, 1e-4f);
    tracing = 1;
    gpustep_run(gs, 0.1f, 0.9f, 1e-4f);
    tracing = 0;
    unsigned long long syncs0 = emu_host_syncs(), graphs0 = emu_graph_launches();
    int ops_before = n_ops;
    if (!graph) tracing = 2;   /* op by op: the third step's launches are the step's (not kept) */
    gpustep_run(gs, 0.1f, 0.9f, 1e-4f);
    tracing = 0;
    n_ops = ops_before;
    long syncs = (long)(emu_host_syncs() - syncs0);
    int graph_launches = (int)(emu_graph_launches() - graphs0);
    emu_set_trace(NULL, NULL, 1);
    gpustep_free(gs);

    /* per op: launches, smallest grid, work; per card: time */
    double tf = 0, tmin = 0, tb = 0, t_op[2] = {0, 0}, tail_us = 0;
    int n_tails = 0;
    long min_blocks = -1;
    printf("gpu_plan: one training step of the practical's ResNet, batch %d, GPU table on the emulator\n", batch);
    printf("%-22s %4s %9s %10s %10s %10s %7s %7s\n", "op", "kern", "min blk", "MFLOP", "min MB", "MB", "H100 us", "H200 us");
    for (int i = 0; i < n_ops; i++) {
        Op *o = &ops[i];
        long mb = -1;
        for (int k = o->first; k < o->first + o->n; k++)
            if (mb < 0 || blocks_of(&launches[k]) < mb) mb = blocks_of(&launches[k]);
        int tiny = o->bytes < TINY_BYTES && o->flops < TINY_FLOPS;
        if (!tiny && mb >= 0 && (min_blocks < 0 || mb < min_blocks)) min_blocks = mb;
        double us[2];
        for (int c = 0; c < 2; c++) {
            double prod_rate = tc ? cards[c].tf32 / 3 * TC_ISSUE_SHARE : cards[c].peak;
            double a = o->products / prod_rate + (o->flops - o->products) / cards[c].peak, b = o->bytes / cards[c].bw;
            us[c] = 1e6 * (a > b ? a : b);
            t_op[c] += us[c];
        }
        tf += o->flops; tmin += o->min_bytes; tb += o->bytes;
        tail_us += o->tails * TAIL_TRIPS * TAIL_TRIP_US + o->tail_bytes / SM_L2_BPS * 1e6;
        n_tails += o->tails;
        printf("%-22s %4d %9ld %10.2f %10.2f %10.2f %7.1f %7.1f%s\n", o->name, o->n, mb, o->flops / 1e6,
               o->min_bytes / 1e6, o->bytes / 1e6, us[0], us[1], tiny ? "  (tiny)" : "");
        if (per_kernel)
            for (int k = o->first; k < o->first + o->n; k++) {
                Launch *l = &launches[k];
                printf("    %-40s grid %ux%ux%u block %ux%ux%u smem %zu\n", l->kernel, l->g[0], l->g[1], l->g[2],
                       l->b[0], l->b[1], l->b[2], l->smem);
            }
    }
    int unattributed = 0;
    for (int k = 0; k < n_launches; k++) unattributed += launches[k].op < 0;
    printf("\nkernel launches/step %d (%d outside op-table calls; %s), graph launches/step %d, host syncs/step %ld\n",
           n_launches, unattributed, graph_launches ? "the nodes of the step's graph" : "each from the host",
           graph_launches, syncs);
    printf("work/step: %.2f GFLOP, DRAM %.1f MB now vs %.1f MB unavoidable (%.2fx)\n", tf / 1e9, tb / 1e6,
           tmin / 1e6, tb / tmin);
    long depth = graph_launches ? (long)emu_last_graph_depth() : n_launches;
    if (graph_launches) printf("graph: %d nodes, the longest chain of dependent nodes %ld\n", n_launches, depth);
    double gap_us = (graph_launches ? GRAPH_GAP_US * depth : LAUNCH_GAP_US * n_launches);
    double bound[2];
    for (int c = 0; c < 2; c++) {
        bound[c] = (t_op[c] + gap_us + tail_us) / 1e3;
        if (tc) printf("%-8s (conv products on tensor cores, 3xTF32: %.0f TFLOP/s tf32 / 3 x %.2f issue share = %.0f; the rest fp32 %.0f TFLOP/s; %.2f TB/s):\n    roofline", cards[c].name, cards[c].tf32 / 1e12, TC_ISSUE_SHARE, cards[c].tf32 / 3 * TC_ISSUE_SHARE / 1e12, cards[c].peak / 1e12, cards[c].bw / 1e12);
        else printf("%-8s (%.0f TFLOP/s fp32, %.2f TB/s): roofline", cards[c].name, cards[c].peak / 1e12, cards[c].bw / 1e12);
        printf(" %.3f ms + launch gaps %.3f ms + last-block tails "
               "%.3f ms = %.3f ms/step; 100 epochs x 351 steps >= %.1f s\n", t_op[c] / 1e3, gap_us / 1e3, tail_us / 1e3, bound[c], bound[c] * 351 * 100 / 1e3);
    }
    printf("(launch gap %.0f us per host-launched kernel, %.0f us per graph node on the longest chain; tiny: an op under %d KB and %.0f MFLOP)\n",
           LAUNCH_GAP_US, GRAPH_GAP_US, TINY_BYTES / 1024, TINY_FLOPS / 1e6);
    printf("(last-block tails: %d levels of reductions, each %d trips to L2 of %.1f us plus its partial sums at %.0f GB/s)\n",
           n_tails, TAIL_TRIPS, TAIL_TRIP_US, SM_L2_BPS / 1e9);
    printf("gpu_plan: launches/step %d, graph launches/step %d, syncs/step %ld, min blocks %ld, bound_ms %.3f\n",
           n_launches, graph_launches, syncs, min_blocks, bound[1]);
    devdata_free(dd);
    model_free(m);
    free(ds.images); free(ds.labels);
    return 0;
}
