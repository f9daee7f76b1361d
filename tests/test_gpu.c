/* Every gpu/ kernel, run on the CPU by the CUDA emulator (tests/emu), against its cpu/ twin:
 * random inputs at odd sizes (not multiples of the tiles), outputs and gradients within
 * relative error 1e-4 (max |gpu - cpu| / max |cpu|), output buffers poisoned with NaN so an
 * unwritten element fails. Each test runs under several scheduler seeds (0 = FIFO, others
 * shuffle the thread order between barriers); results must also be bit-identical across
 * seeds (no atomics in anything that feeds the weights). A GEMM built without one of its
 * barriers must fail. */
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include "core/augment.h"
#include "core/cifar.h"
#include "core/checkpoint.h"
#include "core/devdata.h"
#include "core/gpustep.h"
#include "core/model.h"
#include "core/ops_fused.h"
#include "core/train.h"
#include "cpu/cpu.h"
#include "tests/fixtures.h"
#include "tests/gradcheck.h"

#define GPU_TOL 1e-4
#define SEEDS 4

/* CONTRACTED: products and sums may be fused into FMAs wherever the compiler likes, as nvcc does
 * (a real GPU, or the emulator built with -ffp-contract=fast -mfma: make's emu-fma build). Two
 * different kernels' sums of products may then differ in their last bits, so the checks that
 * they give the same bits hold only on the plain emulator; both builds compare with the CPU. */
#if defined(CONVNET_REAL_GPU) || defined(CONVNET_EMU_FMA)
#define CONTRACTED 1
#endif

#ifdef CONVNET_REAL_GPU
/* On a real GPU (bench/gpu_check.sh) the scheduler is the hardware's: seeds do nothing and
 * the planted-barrier test is left out (a real GPU may or may not expose that race). */
static void emu_set_shuffle(unsigned long long seed) { (void)seed; }
#else
void emu_set_shuffle(unsigned long long seed);
/* the emulator's launch trace: fn(arg, kernel, grid x y z, block x y z, shared bytes) per launch */
typedef void (*emu_trace_fn)(void *, const char *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, size_t);
void emu_set_trace(emu_trace_fn fn, void *arg, int execute);
void gpu_planted_gemm_tiled(int, int, int, int, int, const float *, int, const float *, int, float, float *, int);
void gpu_planted_batchnorm_split_forward_train(float *out, float *sm, float *si, float *rm, float *rv,
        const float *in, const float *g, const float *b, int N, int C, int HW, float mom, float eps, int relu);
#endif
void gpu_augment_batch(float *out, const uint8_t *images, const int32_t *idx, const AugParams *params,
                       int n, double rotate_deg, const int32_t *perm);
void gpu_gemm_tiled(int, int, int, int, int, const float *, int, const float *, int, float, float *, int);
void gpu_batchnorm_block_forward_train(float *out, float *sm, float *si, float *rm, float *rv, const float *in,
                                       const float *g, const float *b, int N, int C, int HW, float mom, float eps);
void gpu_batchnorm_block_backward(float *din, float *dg, float *db, const float *dout, const float *in,
                                  const float *g, const float *sm, const float *si, int N, int C, int HW);
void gpu_gemm_naive(int, int, int, int, int, const float *, int, const float *, int, float, float *, int);
void gpu_conv2d_im2col(int which, float *out, const float *x, const float *w, int N, int C, int H, int W,
                       int K, int R, int S, int stride, int pad, float *ws);

static const Ops *G;

/* gpu/conv2d_igemm.cu: the blocks of a convolution's fused backward (0: not taken; with
 * gpu_set_conv_fusion, core/ops.h, at 0: at the tests' small sizes, nowhere) */
int gpu_conv2d_igemm_fused_blocks(int N, int C, int H, int W, int K, int R, int S, int stride, int pad);

static const char *math_name = "default math";

static void setup(void)
{
    const char *why = NULL;
    G = ops_gpu(&why);
    ck_assert_msg(G != NULL, "GPU op table unavailable: %s", why);
    static int default_math = -1;   /* each test starts from the build's default */
    if (default_math < 0) default_math = gpu_conv_math();
    gpu_set_conv_math(default_math);
    math_name = "default math";
    gpu_set_conv_fusion(0);
}

/* The convolution tests run 2 SEEDS times: seed i % SEEDS, the products in fp32 on CUDA
 * cores (i < SEEDS), then in 3xTF32 on tensor cores. 0: the build cannot run that math
 * (CUDA_ARCH below 80), and the caller returns. */
static int use_math(int i)
{
    int m = i < SEEDS ? GPU_CONV_FP32 : GPU_CONV_3XTF32;
    if (gpu_set_conv_math(m)) {
        printf("(%s: not in this build)\n", m ? "3xTF32" : "fp32");
        return 0;
    }
    math_name = m ? "3xTF32" : "fp32";
    emu_set_shuffle((unsigned long long)(i % SEEDS));
    return 1;
}

/* Every buffer a test makes through the helpers below (device: up, poisoned, dev; host: rnd,
 * down) is kept in the test's arena and freed by the fixture's teardown, also when a check
 * fails half-way (on a card the suite runs in one process: nothing leaks into the next test). */
static struct { void **p; int n, cap, *on_device; } arena;
static void *kept(void *p, int on_device)
{
    if (arena.n == arena.cap) {
        arena.cap = arena.cap ? 2 * arena.cap : 256;
        arena.p = realloc(arena.p, sizeof(void *) * arena.cap);
        arena.on_device = realloc(arena.on_device, sizeof(int) * arena.cap);
        if (!arena.p || !arena.on_device) abort();
    }
    arena.p[arena.n] = p;
    arena.on_device[arena.n++] = on_device;
    return p;
}
static void teardown(void)
{
    while (arena.n > 0) {
        arena.n--;
        if (arena.on_device[arena.n]) G->free(arena.p[arena.n]);
        else free(arena.p[arena.n]);
    }
}
static void *dev(size_t bytes) { return kept(G->alloc(bytes), 1); }
static float *host(size_t n) { return kept(malloc(sizeof(float) * (n ? n : 1)), 0); }
static float *rnd(size_t n, unsigned seed)
{
    float *x = host(n);
    fill_normal_f(x, n, seed);
    return x;
}
static float *up(const float *h, size_t n) { float *d = dev(sizeof(float) * n); G->upload(d, h, sizeof(float) * n); return d; }
static float *poisoned(size_t n)   /* device buffer full of NaN */
{
    float *d = dev(sizeof(float) * n), *h = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) h[i] = NAN;
    G->upload(d, h, sizeof(float) * n);
    free(h);
    return d;
}
static float *down(const float *d, size_t n) { float *h = host(n); G->download(h, d, sizeof(float) * n); return h; }

static double max_rel(const float *got, const float *want, size_t n)
{
    double dmax = 0, wmax = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) return INFINITY;          /* unwritten (NaN) or broken */
        double d = fabs((double)got[i] - want[i]);
        if (d > dmax) dmax = d;
        if (fabs(want[i]) > wmax) wmax = fabs(want[i]);
    }
    return dmax / (wmax > 0 ? wmax : 1);
}

/* Compares a device result with the host reference. */
#define EXPECT_CLOSE(dev_ptr, host_ref, n, what)                                              \
    do {                                                                                       \
        double e_ = max_rel(down(dev_ptr, n), host_ref, n);                                    \
        ck_assert_msg(e_ <= GPU_TOL, "%s (seed %d, %s): gpu vs cpu error %g", what, _i % SEEDS, math_name, e_); \
    } while (0)

START_TEST(gemm_kernels)
{
    emu_set_shuffle(_i);
    int M = 67, N = 45, K = 53;
    float *A = rnd(M * K, 1), *B = rnd(K * N, 2), *C0 = rnd(M * N, 3), *ref = malloc(sizeof(float) * M * N);
    float *dA = up(A, M * K), *dB = up(B, K * N);
    for (int ta = 0; ta <= 1; ta++)
        for (int tb = 0; tb <= 1; tb++)
            for (int beta = 0; beta <= 1; beta++) {
                int lda = ta ? M : K, ldb = tb ? K : N;
                memcpy(ref, C0, sizeof(float) * M * N);
                gemm_ref(ta, tb, M, N, K, A, lda, B, ldb, beta * 0.5f, ref, N);
                for (int naive = 0; naive <= 1; naive++) {
                    float *dC = beta ? up(C0, M * N) : poisoned(M * N);
                    (naive ? gpu_gemm_naive : gpu_gemm_tiled)(ta, tb, M, N, K, dA, lda, dB, ldb, beta * 0.5f, dC, N);
                    EXPECT_CLOSE(dC, ref, (size_t)M * N, naive ? "gemm naive" : "gemm tiled");
                }
            }
    free(ref);
}
END_TEST

/* The 128x128-tile SGEMM (gpu_batched picks it for large aligned problems that still fill
 * the card, e.g. 4096^3), called directly at sizes the emulator runs: two tiles, three
 * k-slices (so both shared buffers and the register prefetch are used), every transpose,
 * beta 0 and 0.5; then two batches, separate and summed (reduce). */
int gpu_gemm_big(int ta, int tb, int M, int N, int K, const float *A, int lda, long strideA, const float *B, int ldb,
                 long strideB, float beta, float *C, int ldc, long strideC, int batch, int reduce);
START_TEST(gemm_big_kernel)
{
    emu_set_shuffle(_i);
    int M = 256, N = 128, K = 48, batch = 2;
    size_t na = (size_t)M * K, nb = (size_t)K * N, nc = (size_t)M * N;
    float *A = rnd(batch * na, 1), *B = rnd(batch * nb, 2), *C0 = rnd(batch * nc, 3), *ref = malloc(sizeof(float) * batch * nc);
    float *dA = up(A, batch * na), *dB = up(B, batch * nb);
    for (int ta = 0; ta <= 1; ta++)
        for (int tb = 0; tb <= 1; tb++)
            for (int mode = 0; mode < 4; mode++) {   /* beta 0, beta 0.5, 2 batches, 2 batches summed */
                int lda = ta ? M : K, ldb = tb ? K : N, nbat = mode >= 2 ? batch : 1, reduce = mode == 3;
                float beta = mode == 1 || mode == 3 ? 0.5f : 0.f;
                memcpy(ref, C0, sizeof(float) * batch * nc);
                for (int b = 0; b < nbat; b++)
                    gemm_ref(ta, tb, M, N, K, A + b * na, lda, B + b * nb, ldb, reduce && b ? 1.f : beta,
                             ref + (reduce ? 0 : b * nc), N);
                size_t nout = reduce ? nc : nbat * nc;
                float *dC = beta != 0.f ? up(C0, nout) : poisoned(nout);
                ck_assert_int_eq(gpu_gemm_big(ta, tb, M, N, K, dA, lda, (long)na, dB, ldb, (long)nb, beta, dC, N,
                                              (long)nc, nbat, reduce), 0);
                EXPECT_CLOSE(dC, ref, nout, "gemm 128x128 tiles");
            }
    float *dC = poisoned(nc);   /* a leading dimension that is not a multiple of 4: refused */
    ck_assert_int_eq(gpu_gemm_big(0, 0, M, N, K, dA, K + 2, 0, dB, N, 0, 0.f, dC, N, 0, 1, 0), -1);
    free(ref);
}
END_TEST

#ifndef CONVNET_REAL_GPU
/* The planted kernel (second __syncthreads removed) must give wrong results under every
 * seed; the intact kernel passes the same problem above. */
START_TEST(missing_barrier_is_caught)
{
    emu_set_shuffle(_i);
    int M = 67, N = 45, K = 53;
    float *A = rnd(M * K, 1), *B = rnd(K * N, 2), *ref = malloc(sizeof(float) * M * N);
    gemm_ref(0, 0, M, N, K, A, K, B, N, 0, ref, N);
    float *dA = up(A, M * K), *dB = up(B, K * N), *dC = poisoned(M * N);
    gpu_planted_gemm_tiled(0, 0, M, N, K, dA, K, dB, N, 0, dC, N);
    float *got = down(dC, M * N);
    double e = max_rel(got, ref, (size_t)M * N);
    ck_assert_msg(e > 1e-2, "seed %d: GEMM without its barrier was not caught (error %g)", _i, e);
    free(ref);

    /* the split batchnorm without the first barrier of its block sum */
    int Nb = 4, Cb = 3, HWb = 999;
    size_t nb = (size_t)Nb * Cb * HWb;
    float *x = rnd(nb, 7), *g = rnd(Cb, 8), *b = rnd(Cb, 9), *y = malloc(sizeof(float) * nb);
    float mean[3], inv[3], rm[3] = {0, 0, 0}, rv[3] = {1, 1, 1};
    float *grm = up(rm, Cb), *grv = up(rv, Cb);
    batchnorm_forward_train(y, mean, inv, rm, rv, x, g, b, Nb, Cb, HWb, 0.1f, 1e-5f);
    float *gx = up(x, nb), *gg = up(g, Cb), *gb = up(b, Cb), *gy = poisoned(nb), *gm = poisoned(Cb), *gi = poisoned(Cb);
    gpu_planted_batchnorm_split_forward_train(gy, gm, gi, grm, grv, gx, gg, gb, Nb, Cb, HWb, 0.1f, 1e-5f, 0);
    got = down(gy, nb);
    e = max_rel(got, y, nb);
    ck_assert_msg(e > 1e-2, "seed %d: batchnorm without its barrier was not caught (error %g)", _i, e);
    free(y);
}
END_TEST
#endif

/* gpu/mma.cuh's fragment layout and its 3xTF32 split (gpu/mma_probe.cu), one warp's 16x8x8
 * product against a double-precision one, the error measured against sum_k |a_ik b_kj|:
 * 3xTF32 within 1e-5 (its terms lose under 2^-21 each, plus fp32's rounding of 24 additions);
 * one tf32 product alone, worse than that (what the split's small terms buy); and the layout
 * with two A registers swapped, far off. On a real card (bench/gpu_check.sh) this checks
 * the hardware against the layout the emulator assumes. */
void gpu_mma_probe(float *d, const float *a, const float *b, int mode);
START_TEST(mma_fragment_layout)
{
    emu_set_shuffle(_i);
    if (gpu_set_conv_math(GPU_CONV_3XTF32)) {
        printf("(mma_fragment_layout: this build has no tensor-core path)\n");
        return;
    }
    float *a = rnd(128, 11 + _i), *b = rnd(64, 12 + _i), d[128];
    float *ga = up(a, 128), *gb = up(b, 64), *gd = poisoned(128);
    double err[3];
    for (int mode = 0; mode < 3; mode++) {
        gpu_mma_probe(gd, ga, gb, mode);
        G->download(d, gd, sizeof d);
        err[mode] = 0;
        for (int i = 0; i < 16; i++)
            for (int j = 0; j < 8; j++) {
                double s = 0, mag = 0;
                for (int k = 0; k < 8; k++) {
                    s += (double)a[i * 8 + k] * b[k * 8 + j];
                    mag += fabs((double)a[i * 8 + k] * b[k * 8 + j]);
                }
                double e = isfinite(d[i * 8 + j]) ? fabs(d[i * 8 + j] - s) / mag : INFINITY;
                if (e > err[mode]) err[mode] = e;
            }
    }
    ck_assert_msg(err[0] <= 1e-5, "3xTF32 mma: error %g of sum |a b| (seed %d)", err[0], _i);
    ck_assert_msg(err[1] > 1e-5 && err[1] <= 2e-3, "one tf32 mma: error %g (seed %d)", err[1], _i);
    ck_assert_msg(err[2] > 1e-2, "a wrong fragment layout went unnoticed: error %g (seed %d)", err[2], _i);
}
END_TEST

START_TEST(conv2d_kernels)
{
    if (!use_math(_i)) return;
    /* the last: 40 output channels (a 64-row tile, partly used), a 2x5 kernel, pad 0 */
    static const int shapes[][9] = {{3, 5, 9, 7, 6, 3, 3, 1, 1}, {2, 4, 9, 9, 5, 3, 3, 2, 1}, {3, 5, 7, 6, 4, 1, 1, 2, 0},
                                    {2, 3, 6, 11, 40, 2, 5, 1, 0}};
    for (int t = 0; t < 4; t++) {
        const int *s = shapes[t];
        int N = s[0], C = s[1], H = s[2], W = s[3], K = s[4], R = s[5], S = s[6], st = s[7], pd = s[8];
        int P = (H + 2 * pd - R) / st + 1, Q = (W + 2 * pd - S) / st + 1;
        size_t nx = (size_t)N * C * H * W, nw = (size_t)K * C * R * S, no = (size_t)N * K * P * Q;
        size_t nws = conv2d_workspace_floats(N, C, H, W, K, R, S, st, pd);
        float *x = rnd(nx, 1), *w = rnd(nw, 2), *dy = rnd(no, 3), *ws = malloc(sizeof(float) * nws);
        float *y = malloc(sizeof(float) * no), *dx = malloc(sizeof(float) * nx), *dw = malloc(sizeof(float) * nw);
        conv2d_forward(y, x, w, N, C, H, W, K, R, S, st, pd, ws);
        conv2d_backward_input(dx, dy, w, N, C, H, W, K, R, S, st, pd, ws);
        conv2d_backward_weight(dw, dy, x, N, C, H, W, K, R, S, st, pd, ws);
        float *gx = up(x, nx), *gw = up(w, nw), *gdy = up(dy, no), *gws = poisoned(nws);
        float *gy = poisoned(no), *gdx = poisoned(nx), *gdw = poisoned(nw);
        G->conv2d_forward(gy, gx, gw, N, C, H, W, K, R, S, st, pd, gws);
        G->conv2d_backward_input(gdx, gdy, gw, N, C, H, W, K, R, S, st, pd, gws);
        G->conv2d_backward_weight(gdw, gdy, gx, N, C, H, W, K, R, S, st, pd, gws);
        EXPECT_CLOSE(gy, y, no, "conv2d forward");
        EXPECT_CLOSE(gdx, dx, nx, "conv2d backward_input");
        EXPECT_CLOSE(gdw, dw, nw, "conv2d backward_weight");
        /* the readable im2col kernels, same numbers */
        gpu_conv2d_im2col(0, gy, gx, gw, N, C, H, W, K, R, S, st, pd, gws);
        gpu_conv2d_im2col(1, gdx, gdy, gw, N, C, H, W, K, R, S, st, pd, gws);
        gpu_conv2d_im2col(2, gdw, gdy, gx, N, C, H, W, K, R, S, st, pd, gws);
        EXPECT_CLOSE(gy, y, no, "readable conv2d forward");
        EXPECT_CLOSE(gdx, dx, nx, "readable conv2d backward_input");
        EXPECT_CLOSE(gdw, dw, nw, "readable conv2d backward_weight");
        /* bias */
        float *b = rnd(K, 4), *db = malloc(sizeof(float) * K), *gb = up(b, K), *gdb = poisoned(K);
        bias_forward(y, b, N, K, P * Q);
        bias_backward(db, dy, N, K, P * Q);
        G->bias_forward(gy, gb, N, K, P * Q);
        G->bias_backward(gdb, gdy, N, K, P * Q);
        EXPECT_CLOSE(gy, y, no, "bias forward");
        EXPECT_CLOSE(gdb, db, K, "bias backward");
        free(ws); free(y); free(dx); free(dw); free(db);
    }
}
END_TEST

/* The op table's batchnorm (channels split over chunks: 1, 6 and 16 chunks here, the last
 * one partial) with its fused ReLU / mask / residual add, and the readable one-block-per-
 * channel kernels, against cpu/batchnorm.c (+ cpu/relu.c, cpu/add.c). */
START_TEST(batchnorm_kernels)
{
    emu_set_shuffle(_i);
    static const int shapes[][3] = {{3, 4, 37}, {5, 2, 300}, {4, 3, 999}};
    for (int t = 0; t < 3; t++) {
        int N = shapes[t][0], C = shapes[t][1], HW = shapes[t][2];
        size_t n = (size_t)N * C * HW;
        float *x = rnd(n, 1), *g = rnd(C, 2), *b = rnd(C, 3), *dy = rnd(n, 4), *ad = rnd(n, 5);
        for (size_t i = 0; i < n; i++) x[i] = 2 * x[i] + 0.5f;
        float *y = malloc(4 * n), *dx = malloc(4 * n), *r = malloc(4 * n), *m = malloc(4 * n);
        float mean[8], inv[8], rm[8], rv[8], rm0[8], rv0[8], dg[8], dbt[8];
        for (int c = 0; c < C; c++) { rm0[c] = rm[c] = 0.1f * c; rv0[c] = rv[c] = 1 + 0.2f * c; }
        float *grm = up(rm, C), *grv = up(rv, C);
        batchnorm_forward_train(y, mean, inv, rm, rv, x, g, b, N, C, HW, 0.1f, 1e-5f);
        batchnorm_backward(dx, dg, dbt, dy, x, g, mean, inv, N, C, HW);
        float *gx = up(x, n), *gg = up(g, C), *gb = up(b, C), *gdy = up(dy, n), *gad = up(ad, n);
        float *gy = poisoned(n), *gdx = poisoned(n), *gm = poisoned(C), *gi = poisoned(C), *gdg = poisoned(C), *gdb = poisoned(C);
        G->batchnorm_forward_train(gy, gm, gi, grm, grv, gx, gg, gb, N, C, HW, 0.1f, 1e-5f);
        G->batchnorm_backward(gdx, gdg, gdb, gdy, gx, gg, gm, gi, N, C, HW);
        EXPECT_CLOSE(gy, y, n, "batchnorm forward_train");
        EXPECT_CLOSE(gm, mean, C, "batchnorm saved mean");
        EXPECT_CLOSE(gi, inv, C, "batchnorm saved invstd");
        EXPECT_CLOSE(grm, rm, C, "batchnorm running_mean");
        EXPECT_CLOSE(grv, rv, C, "batchnorm running_var");
        EXPECT_CLOSE(gdx, dx, n, "batchnorm backward d/dx");
        EXPECT_CLOSE(gdg, dg, C, "batchnorm backward d/dgamma");
        EXPECT_CLOSE(gdb, dbt, C, "batchnorm backward d/dbeta");

        /* the readable kernels, same numbers */
        G->upload(grm, rm0, sizeof(float) * C); G->upload(grv, rv0, sizeof(float) * C);
        gpu_batchnorm_block_forward_train(gy, gm, gi, grm, grv, gx, gg, gb, N, C, HW, 0.1f, 1e-5f);
        gpu_batchnorm_block_backward(gdx, gdg, gdb, gdy, gx, gg, gm, gi, N, C, HW);
        EXPECT_CLOSE(gy, y, n, "readable batchnorm forward_train");
        EXPECT_CLOSE(grv, rv, C, "readable batchnorm running_var");
        EXPECT_CLOSE(gdx, dx, n, "readable batchnorm backward d/dx");
        EXPECT_CLOSE(gdg, dg, C, "readable batchnorm backward d/dgamma");

        /* fused: relu(batchnorm(x)); batchnorm backward of dy [relu_out > 0], + a residual */
        for (int c = 0; c < C; c++) { rm[c] = rm0[c]; rv[c] = rv0[c]; }
        G->upload(grm, rm0, sizeof(float) * C); G->upload(grv, rv0, sizeof(float) * C);
        batchnorm_forward_train(r, mean, inv, rm, rv, x, g, b, N, C, HW, 0.1f, 1e-5f);
        relu_forward(r, r, n);
        G->fused->batchnorm_relu_forward_train(gy, gm, gi, grm, grv, gx, gg, gb, N, C, HW, 0.1f, 1e-5f);
        EXPECT_CLOSE(gy, r, n, "batchnorm+relu forward_train");
        EXPECT_CLOSE(grm, rm, C, "batchnorm+relu running_mean");
        relu_backward(m, dy, r, n);
        batchnorm_backward(dx, dg, dbt, m, x, g, mean, inv, N, C, HW);
        for (size_t i = 0; i < n; i++) dx[i] += ad[i];
        G->fused->relu_batchnorm_backward(gdx, gdg, gdb, gdy, gy, gx, gad, gg, gm, gi, N, C, HW);
        EXPECT_CLOSE(gdx, dx, n, "relu+batchnorm backward (+add) d/dx");
        EXPECT_CLOSE(gdg, dg, C, "relu+batchnorm backward d/dgamma");
        EXPECT_CLOSE(gdb, dbt, C, "relu+batchnorm backward d/dbeta");

        batchnorm_forward_eval(y, x, g, b, rm, rv, N, C, HW, 1e-5f);
        G->batchnorm_forward_eval(gy, gx, gg, gb, grm, grv, N, C, HW, 1e-5f);
        EXPECT_CLOSE(gy, y, n, "batchnorm forward_eval");
        free(y); free(dx); free(r); free(m);
    }
}
END_TEST

/* The fused pre-activation slots of the GPU table, which store no activation (recompute_act):
 * batchnorm's statistics, then the convolution applying batchnorm+ReLU as it gathers its
 * input (train and eval); the backward recomputing the ReLU's input for the weight gradient
 * and its mask for batchnorm's backward. Against the fused slots' definition on the CPU
 * (fused_cpu_ref: the readable operators in turn), which stores a.
 * Shapes: partial tiles, stride 2 with padding, a 1x1 conv into 40 channels, and one with 50
 * column tiles (two groups of the epilogues' two-level reduction, the last partial); each
 * with the residual adds of both directions. */
START_TEST(fused_bn_relu_conv_kernels)
{
    if (!use_math(_i)) return;
    ck_assert(G->fused->recompute_act && !fused_cpu_ref.recompute_act);
    static const int shapes[][9] = {{3, 5, 9, 7, 6, 3, 3, 1, 1}, {2, 4, 9, 9, 5, 3, 3, 2, 1}, {2, 3, 6, 11, 40, 1, 1, 2, 0},
                                    {4, 3, 20, 20, 8, 3, 3, 1, 1}};
    for (int t = 0; t < 4; t++) {
        const int *sh = shapes[t];
        int N = sh[0], C = sh[1], H = sh[2], W = sh[3], K = sh[4], Rr = sh[5], S = sh[6], st = sh[7], pd = sh[8];
        int P = (H + 2 * pd - Rr) / st + 1, Q = (W + 2 * pd - S) / st + 1;
        size_t nx = (size_t)N * C * H * W, nw = (size_t)K * C * Rr * S, no = (size_t)N * K * P * Q;
        size_t nws = conv2d_workspace_floats(N, C, H, W, K, Rr, S, st, pd);
        float *x = rnd(nx, 1), *w = rnd(nw, 2), *gam = rnd(C, 3), *bet = rnd(C, 4), *add = rnd(no, 5);
        float *dy = rnd(no, 6), *dadd = rnd(nx, 7), *ws = malloc(sizeof(float) * nws);
        for (size_t i = 0; i < nx; i++) x[i] = 2 * x[i] + 0.3f;
        float *out = malloc(4 * no), *a = malloc(4 * nx), *din = malloc(4 * nx), *g = malloc(4 * nx);
        float *dw = malloc(4 * nw), mean[8], inv[8], rm[8], rv[8], rm0[8], rv0[8], dga[8], dbe[8];
        for (int c = 0; c < C; c++) { rm0[c] = rm[c] = 0.1f * c; rv0[c] = rv[c] = 1 + 0.2f * c; }
        fused_cpu_ref.batchnorm_relu_conv2d_forward(out, a, x, w, add, N, C, H, W, K, Rr, S, st, pd, ws, mean, inv, rm, rv,
                                         gam, bet, 0.1f, 1e-5f, 1);
        fused_cpu_ref.conv2d_relu_batchnorm_backward(dw, din, g, dy, a, w, N, C, H, W, K, Rr, S, st, pd, ws, dga, dbe, x,
                                          dadd, gam, bet, mean, inv);
        float *gx = up(x, nx), *gw = up(w, nw), *ggam = up(gam, C), *gbet = up(bet, C), *gadd = up(add, no);
        float *gdy = up(dy, no), *gdadd = up(dadd, nx), *grm = up(rm0, C), *grv = up(rv0, C), *gws = poisoned(nws);
        float *gout = poisoned(no), *gdin = poisoned(nx), *gg = poisoned(nx), *gdw = poisoned(nw);
        float *gm = poisoned(C), *gi = poisoned(C), *gdga = poisoned(C), *gdbe = poisoned(C);
        G->fused->batchnorm_relu_conv2d_forward(gout, NULL, gx, gw, gadd, N, C, H, W, K, Rr, S, st, pd, gws, gm, gi, grm,
                                         grv, ggam, gbet, 0.1f, 1e-5f, 1);
        EXPECT_CLOSE(gout, out, no, "bn+relu+conv forward, a not stored");
        EXPECT_CLOSE(gm, mean, C, "bn+relu+conv saved mean");
        EXPECT_CLOSE(gi, inv, C, "bn+relu+conv saved invstd");
        EXPECT_CLOSE(grm, rm, C, "bn+relu+conv running_mean");
        EXPECT_CLOSE(grv, rv, C, "bn+relu+conv running_var");
        G->fused->conv2d_relu_batchnorm_backward(gdw, gdin, gg, gdy, NULL, gw, N, C, H, W, K, Rr, S, st, pd, gws, gdga,
                                          gdbe, gx, gdadd, ggam, gbet, gm, gi);
        EXPECT_CLOSE(gdw, dw, nw, "conv+relu+bn backward d/dweight, a recomputed");
        EXPECT_CLOSE(gdin, din, nx, "conv+relu+bn backward d/dx (+add), mask recomputed");
        EXPECT_CLOSE(gdga, dga, C, "conv+relu+bn backward d/dgamma");
        EXPECT_CLOSE(gdbe, dbe, C, "conv+relu+bn backward d/dbeta");
        if (st == 1 && P == H && Q == W) {   /* the fused backward, 1 to 3 column tiles a block */
            gpu_set_conv_fusion(1 + _i % 3);
            ck_assert_int_gt(gpu_conv2d_igemm_fused_blocks(N, C, H, W, K, Rr, S, st, pd), 0);
            float *fdw = poisoned(nw), *fdin = poisoned(nx), *fg = poisoned(nx), *fdga = poisoned(C), *fdbe = poisoned(C);
            G->fused->conv2d_relu_batchnorm_backward(fdw, fdin, fg, gdy, NULL, gw, N, C, H, W, K, Rr, S, st, pd, gws, fdga,
                                              fdbe, gx, gdadd, ggam, gbet, gm, gi);
            gpu_set_conv_fusion(0);
            EXPECT_CLOSE(fdw, dw, nw, "fused conv+relu+bn backward d/dweight");
            EXPECT_CLOSE(fdin, din, nx, "fused conv+relu+bn backward d/dx (+add)");
            EXPECT_CLOSE(fdga, dga, C, "fused conv+relu+bn backward d/dgamma");
            EXPECT_CLOSE(fdbe, dbe, C, "fused conv+relu+bn backward d/dbeta");
        }
        /* chained: the statistics of `in` ready (those above), and those of `out` (after the
         * add) made in the conv's store for two batchnorms that read it */
        {
            float om[40], oi[40], orm[40], orv[40], orm0[40], orv0[40], *y2 = malloc(4 * no);
            for (int k = 0; k < K; k++) { orm0[k] = orm[k] = 0.05f * k; orv0[k] = orv[k] = 1 + 0.1f * k; }
            float *ga = up(gam, C), *gb2 = up(bet, C);   /* any gamma/beta of K channels will do: reuse w */
            float *kg = up(w, K), *kb = up(w + K, K), *srm[2], *srv[2], *sm2[2], *si2[2];
            BnRefs nx[2];
            for (int k = 0; k < 2; k++) {
                srm[k] = up(orm0, K); srv[k] = up(orv0, K); sm2[k] = poisoned(K); si2[k] = poisoned(K);
                nx[k] = (BnRefs){sm2[k], si2[k], srm[k], srv[k], kg, kb, 0.1f, 1e-5f};
            }
            BnRefs self = {gm, gi, grm, grv, ga, gb2, 0.1f, 1e-5f};
            G->fused->batchnorm_relu_conv2d_forward_chained(gout, gx, gw, gadd, N, C, H, W, K, Rr, S, st, pd, &self, 1, nx, 2);
            EXPECT_CLOSE(gout, out, no, "chained bn+relu+conv forward, statistics ready");
            batchnorm_forward_train(y2, om, oi, orm, orv, out, w, w + K, N, K, P * Q, 0.1f, 1e-5f);
            for (int k = 0; k < 2; k++) {
                EXPECT_CLOSE(sm2[k], om, K, "statistics of out made in the store: mean");
                EXPECT_CLOSE(si2[k], oi, K, "statistics of out made in the store: invstd");
                EXPECT_CLOSE(srm[k], orm, K, "statistics of out made in the store: running_mean");
                EXPECT_CLOSE(srv[k], orv, K, "statistics of out made in the store: running_var");
            }
            free(y2);
        }
        /* eval: the running statistics */
        fused_cpu_ref.batchnorm_relu_conv2d_forward(out, a, x, w, NULL, N, C, H, W, K, Rr, S, st, pd, ws, mean, inv, rm, rv,
                                         gam, bet, 0.1f, 1e-5f, 0);
        G->fused->batchnorm_relu_conv2d_forward(gout, NULL, gx, gw, NULL, N, C, H, W, K, Rr, S, st, pd, gws, gm, gi, grm,
                                         grv, ggam, gbet, 0.1f, 1e-5f, 0);
        EXPECT_CLOSE(gout, out, no, "bn+relu+conv eval, a not stored");
        free(ws);
        free(out); free(a); free(din); free(g); free(dw);
    }
}
END_TEST

/* batchnorm's batch mean and 1/sqrt(var + eps) per channel, in double (the tests' statistics) */
static void bn_stats_of(float *mean, float *inv, const float *x, int N, int C, int HW)
{
    for (int c = 0; c < C; c++) {
        double s = 0, q = 0;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) s += x[((size_t)n * C + c) * HW + i];
        double mu = s / ((double)N * HW);
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) q += pow(x[((size_t)n * C + c) * HW + i] - mu, 2);
        mean[c] = (float)mu;
        inv[c] = (float)(1 / sqrt(q / ((double)N * HW) + 1e-5));
    }
}

/* One case of a pre-activation block's main path, out = conv2(relu(bn2(conv1(relu(bn1(x)))))),
 * at shape t (N, C, H=W, K1, K2), with or without the residual add: inputs and parameters, the
 * CPU's gradients (the fused slots' definition on stored activations, two calls), and device
 * copies. Everything lives in the test's arena. */
typedef struct {
    int N, C, H, W, K1, K2;
    size_t nx, nc1, nws, sz[7];   /* sz: dx, dw1, dw2, dg1, db1, dg2, db2 */
    float *x, *add, m1[8], i1[8], m2[8], i2[8];
    float *rdx, *rdw1, *rdw2, rdg1[8], rdb1[8], rdg2[8], rdb2[8];
    float *gx, *gc1, *gdy, *gadd, *gw1, *gw2, *gg1, *gb1, *gg2, *gb2, *gm1, *gi1, *gm2, *gi2, *s1, *s2, *gws;
} PairCase;
static void pair_case(PairCase *p, int t, int with_add)
{
    static const int shapes[][5] = {{3, 4, 9, 6, 4}, {2, 8, 20, 8, 8}};   /* N, C, H=W, K1, K2 */
    int N = shapes[t][0], C = shapes[t][1], H = shapes[t][2], W = H, K1 = shapes[t][3], K2 = shapes[t][4];
    *p = (PairCase){.N = N, .C = C, .H = H, .W = W, .K1 = K1, .K2 = K2};
    size_t nx = (size_t)N * C * H * W, nc1 = (size_t)N * K1 * H * W, ny = (size_t)N * K2 * H * W;
    size_t nw1 = (size_t)K1 * C * 9, nw2 = (size_t)K2 * K1 * 9;
    size_t ws1 = conv2d_workspace_floats(N, C, H, W, K1, 3, 3, 1, 1), ws2 = conv2d_workspace_floats(N, K1, H, W, K2, 3, 3, 1, 1);
    p->nx = nx; p->nc1 = nc1; p->nws = ws1 > ws2 ? ws1 : ws2;
    size_t sz[7] = {nx, nw1, nw2, C, C, K1, K1};
    memcpy(p->sz, sz, sizeof sz);
    float *x = rnd(nx, 21), *c1 = rnd(nc1, 22), *dy = rnd(ny, 23), *add = with_add ? rnd(nx, 24) : NULL;
    float *w1 = rnd(nw1, 25), *w2 = rnd(nw2, 26), *g1 = rnd(C, 27), *b1 = rnd(C, 28), *g2 = rnd(K1, 29), *b2 = rnd(K1, 30);
    p->x = x; p->add = add;
    bn_stats_of(p->m1, p->i1, x, N, C, H * W);
    bn_stats_of(p->m2, p->i2, c1, N, K1, H * W);
    /* the CPU reference: stored activations a = relu(bn(.)), two calls */
    float *a1 = host(nx), *a2 = host(nc1);
    for (size_t e = 0; e < nx; e++) {
        int c = (int)(e / (H * W) % C);
        float v = (x[e] - p->m1[c]) * p->i1[c] * g1[c] + b1[c];
        a1[e] = v > 0 ? v : 0;
    }
    for (size_t e = 0; e < nc1; e++) {
        int c = (int)(e / (H * W) % K1);
        float v = (c1[e] - p->m2[c]) * p->i2[c] * g2[c] + b2[c];
        a2[e] = v > 0 ? v : 0;
    }
    float *ws = host(p->nws), *rdc1 = host(nc1), *rg = host(nc1 > nx ? nc1 : nx);
    p->rdx = host(nx); p->rdw1 = host(nw1); p->rdw2 = host(nw2);
    fused_cpu_ref.conv2d_relu_batchnorm_backward(p->rdw2, rdc1, rg, dy, a2, w2, N, K1, H, W, K2, 3, 3, 1, 1, ws, p->rdg2,
                                                 p->rdb2, c1, NULL, g2, b2, p->m2, p->i2);
    fused_cpu_ref.conv2d_relu_batchnorm_backward(p->rdw1, p->rdx, rg, rdc1, a1, w1, N, C, H, W, K1, 3, 3, 1, 1, ws, p->rdg1,
                                                 p->rdb1, x, add, g1, b1, p->m1, p->i1);
    p->gx = up(x, nx); p->gc1 = up(c1, nc1); p->gdy = up(dy, ny); p->gadd = add ? up(add, nx) : NULL;
    p->gw1 = up(w1, nw1); p->gw2 = up(w2, nw2); p->gg1 = up(g1, C); p->gb1 = up(b1, C); p->gg2 = up(g2, K1);
    p->gb2 = up(b2, K1); p->gm1 = up(p->m1, C); p->gi1 = up(p->i1, C); p->gm2 = up(p->m2, K1); p->gi2 = up(p->i2, K1);
    p->s1 = poisoned(nx > nc1 ? nx : nc1); p->s2 = poisoned(nc1); p->gws = poisoned(p->nws);
}
/* the pair's two layers writing their gradients into o[1..6] (o: dx, dw1, dw2, dg1, db1, dg2, db2) */
static void pair_layers(const PairCase *p, float *const *o, ConvBnLayer *l2, ConvBnLayer *l1)
{
    *l2 = (ConvBnLayer){p->gw2, p->gc1, p->gg2, p->gb2, p->gm2, p->gi2, o[2], o[5], o[6], p->K1, p->H, p->W, p->K2, 3, 3, 1, 1};
    *l1 = (ConvBnLayer){p->gw1, p->gx, p->gg1, p->gb1, p->gm1, p->gi1, o[1], o[3], o[4], p->C, p->H, p->W, p->K1, 3, 3, 1, 1};
}
/* the block's backward on the device, as the pair (way 0) or the two calls (way 1); outputs
 * downloaded into out[0..7) */
static void pair_run(const PairCase *p, int way, float **out)
{
    float *o[7];
    for (int k = 0; k < 7; k++) o[k] = poisoned(p->sz[k]);
    if (way == 0) {
        ConvBnLayer l2, l1;
        pair_layers(p, o, &l2, &l1);
        G->fused->conv2d_relu_batchnorm_backward_pair(o[0], p->s1, p->s2, p->gdy, &l2, &l1, p->gadd, p->N);
    } else {
        int N = p->N, C = p->C, H = p->H, W = p->W, K1 = p->K1, K2 = p->K2;
        float *gdc1 = poisoned(p->nc1);
        G->fused->conv2d_relu_batchnorm_backward(o[2], gdc1, p->s2, p->gdy, NULL, p->gw2, N, K1, H, W, K2, 3, 3, 1, 1, p->gws,
                                                 o[5], o[6], p->gc1, NULL, p->gg2, p->gb2, p->gm2, p->gi2);
        G->fused->conv2d_relu_batchnorm_backward(o[1], o[0], p->s1, gdc1, NULL, p->gw1, N, C, H, W, K1, 3, 3, 1, 1, p->gws,
                                                 o[3], o[4], p->gx, p->gadd, p->gg1, p->gb1, p->gm1, p->gi1);
    }
    for (int k = 0; k < 7; k++) out[k] = down(o[k], p->sz[k]);
}

/* A pre-activation block's two-layer backward in one call
 * (Ops.fused->conv2d_relu_batchnorm_backward_pair), which need not store the gradient between
 * the convolutions, against the CPU reference and, on the emulator, the same bits as the two
 * separate calls; each layer as two launches and as the fused backward; both maths, with and
 * without the residual, two shapes (one with 50 column tiles). */
START_TEST(block_backward_pair)
{
    if (!use_math(_i)) return;
    ck_assert(G->fused->conv2d_relu_batchnorm_backward_pair != NULL);
    for (int t = 0; t < 2; t++)
        for (int with_add = 0; with_add <= 1; with_add++) {
            PairCase p;
            pair_case(&p, t, with_add);
            for (int fuse = 0; fuse < 2; fuse++) {   /* the layers' two launches, then the fused backward */
                const char *fname = fuse ? "fused" : "not fused";
                gpu_set_conv_fusion(fuse ? 2 : -1);
                if (fuse) ck_assert_int_gt(gpu_conv2d_igemm_fused_blocks(p.N, p.K1, p.H, p.W, p.K2, 3, 3, 1, 1), 0);
                float *out[2][7];
                for (int way = 0; way < 2; way++) pair_run(&p, way, out[way]);
                const float *want[7] = {p.rdx, p.rdw1, p.rdw2, p.rdg1, p.rdb1, p.rdg2, p.rdb2};
                static const char *what[7] = {"d/dx", "d/dw1", "d/dw2", "d/dgamma1", "d/dbeta1", "d/dgamma2", "d/dbeta2"};
                for (int k = 0; k < 7; k++) {
                    double e = max_rel(out[0][k], want[k], p.sz[k]);
                    ck_assert_msg(e <= GPU_TOL, "pair %s (shape %d, add %d, seed %d, %s, %s): vs cpu %g", what[k], t,
                                  with_add, _i % SEEDS, math_name, fname, e);
#ifndef CONTRACTED
                    ck_assert_msg(memcmp(out[0][k], out[1][k], sizeof(float) * p.sz[k]) == 0,
                                  "pair %s (shape %d, add %d, %s, %s): not the two calls' bits", what[k], t, with_add, math_name,
                                  fname);
#endif
                }
                gpu_set_conv_fusion(0);
            }
        }
}
END_TEST

/* The pair called with din == NULL, then a weight gradient reading d x unapplied
 * (Ops.fused->conv2d_backward_weight_bn_grad; that of a 3-channel 3x3 conv whose output is x,
 * as the stem's): vs the CPU's on the reference d x and, on the emulator, the bits of the
 * plain weight gradient of the d x the pair stores; the same cases as block_backward_pair. */
START_TEST(block_backward_unapplied_dx)
{
    if (!use_math(_i)) return;
    ck_assert(G->fused->conv2d_backward_weight_bn_grad != NULL);
    for (int t = 0; t < 2; t++)
        for (int with_add = 0; with_add <= 1; with_add++) {
            PairCase p;
            pair_case(&p, t, with_add);
            int N = p.N, C = p.C, H = p.H, W = p.W;
            for (int fuse = 0; fuse < 2; fuse++) {
                const char *fname = fuse ? "fused" : "not fused";
                gpu_set_conv_fusion(fuse ? 2 : -1);
                float *stored[7];
                pair_run(&p, 0, stored);   /* the d x the pair stores, for the bits */
                size_t nin = (size_t)N * 3 * H * W, nw3 = (size_t)C * 27;
                float *in3 = rnd(nin, 31), *gin3 = up(in3, nin), *gdx = up(stored[0], p.nx), *o[7];
                float *r3 = host(nw3), *want3 = poisoned(nw3), *got3 = poisoned(nw3);
                float *ws3 = host(conv2d_workspace_floats(N, 3, H, W, C, 3, 3, 1, 1));
                for (int k = 0; k < 7; k++) o[k] = poisoned(p.sz[k]);
                ops_cpu_ref.conv2d_backward_weight(r3, p.rdx, in3, N, 3, H, W, C, 3, 3, 1, 1, ws3);
                G->conv2d_backward_weight(want3, gdx, gin3, N, 3, H, W, C, 3, 3, 1, 1, p.gws);
                ConvBnLayer l2, l1;
                pair_layers(&p, o, &l2, &l1);
                G->fused->conv2d_relu_batchnorm_backward_pair(NULL, p.s1, p.s2, p.gdy, &l2, &l1, p.gadd, N);
                G->fused->conv2d_backward_weight_bn_grad(got3, gin3, N, 3, H, W, C, 3, 3, 1, 1, p.s1, &l1, p.gadd);
                float *g3 = down(got3, nw3);
                double e = max_rel(g3, r3, nw3);
                ck_assert_msg(e <= GPU_TOL, "d x unapplied: d/dw (shape %d, add %d, seed %d, %s, %s): vs cpu %g", t,
                              with_add, _i % SEEDS, math_name, fname, e);
#ifndef CONTRACTED
                ck_assert_msg(memcmp(g3, down(want3, nw3), sizeof(float) * nw3) == 0,
                              "d x unapplied: d/dw (shape %d, add %d, %s, %s): not the bits of the applied d x's", t,
                              with_add, math_name, fname);
#endif
                gpu_set_conv_fusion(0);
            }
        }
}
END_TEST

START_TEST(elementwise_kernels)
{
    emu_set_shuffle(_i);
    size_t n = 1000 + 37;
    float *a = rnd(n, 1), *b = rnd(n, 2), *ref = malloc(4 * n), *ref2 = malloc(4 * n);
    float *ga = up(a, n), *gb = up(b, n), *go = poisoned(n), *gd = poisoned(n);
    relu_forward(ref, a, n);
    G->relu_forward(go, ga, n);
    EXPECT_CLOSE(go, ref, n, "relu forward");
    relu_backward(ref2, b, ref, n);
    G->relu_backward(gd, gb, go, n);
    EXPECT_CLOSE(gd, ref2, n, "relu backward");
    add_forward(ref, a, b, n);
    G->add_forward(go, ga, gb, n);
    EXPECT_CLOSE(go, ref, n, "add forward");
    add_inplace(ref, a, n);
    G->add_inplace(go, ga, n);
    EXPECT_CLOSE(go, ref, n, "add inplace");
    /* SGD: two steps (first creates the buffer) */
    float *w = rnd(n, 3), *buf = malloc(4 * n), *gw = up(w, n), *gbuf = poisoned(n);
    for (int step = 0; step < 2; step++) {
        sgd_step(w, b, buf, n, 0.1f, 0.9f, 1e-4f, step == 0);
        G->sgd_step(gw, gb, gbuf, n, 0.1f, 0.9f, 1e-4f, step == 0);
    }
    EXPECT_CLOSE(gw, w, n, "sgd weights");
    EXPECT_CLOSE(gbuf, buf, n, "sgd momentum");
    free(ref); free(ref2); free(buf);
}
END_TEST

START_TEST(pool_kernels)
{
    emu_set_shuffle(_i);
    /* the last two: global pooling (one warp per plane), 25 and 81 values per plane */
    static const int shapes[][7] = {{2, 3, 9, 7, 3, 2, 1}, {2, 3, 6, 6, 2, 2, 0}, {3, 5, 5, 5, 5, 1, 0}, {2, 3, 9, 9, 9, 1, 0}};
    for (int t = 0; t < 4; t++) {
        const int *s = shapes[t];
        int N = s[0], C = s[1], H = s[2], W = s[3], k = s[4], st = s[5], pd = s[6];
        int P = (H + 2 * pd - k) / st + 1, Q = (W + 2 * pd - k) / st + 1;
        size_t nx = (size_t)N * C * H * W, no = (size_t)N * C * P * Q;
        float *x = rnd(nx, 1), *dy = rnd(no, 2), *y = malloc(4 * no), *dx = malloc(4 * nx);
        int32_t *arg = malloc(4 * no);
        float *gx = up(x, nx), *gdy = up(dy, no), *gy = poisoned(no), *gdx = poisoned(nx);
        int32_t *garg = dev(4 * no);
        maxpool2d_forward(y, arg, x, N, C, H, W, k, st, pd);
        maxpool2d_backward(dx, dy, arg, N, C, H, W, k, st, pd);
        G->maxpool2d_forward(gy, garg, gx, N, C, H, W, k, st, pd);
        G->maxpool2d_backward(gdx, gdy, garg, N, C, H, W, k, st, pd);
        EXPECT_CLOSE(gy, y, no, "maxpool forward");
        EXPECT_CLOSE(gdx, dx, nx, "maxpool backward");
        avgpool2d_forward(y, x, N, C, H, W, k, st, pd);
        avgpool2d_backward(dx, dy, N, C, H, W, k, st, pd);
        G->avgpool2d_forward(gy, gx, N, C, H, W, k, st, pd);
        G->avgpool2d_backward(gdx, gdy, N, C, H, W, k, st, pd);
        EXPECT_CLOSE(gy, y, no, "avgpool forward");
        EXPECT_CLOSE(gdx, dx, nx, "avgpool backward");
        free(y); free(dx); free(arg);
    }
}
END_TEST

/* the linear layer forward and backward at a small size (one launch each) and over the
 * one-launch size (the GEMM path), against the CPU */
START_TEST(linear_kernels)
{
    emu_set_shuffle(_i);
    int N = 7, I = 33, O = 10;
    float *x = rnd(N * I, 1), *w = rnd(O * I, 2), *b = rnd(O, 3), *dy = rnd(N * O, 4);
    float y[70], dx[231], dw[330], db[10];
    linear_forward(y, x, w, b, N, I, O);
    linear_backward(dx, dw, db, dy, x, w, N, I, O);
    float *gx = up(x, N * I), *gw = up(w, O * I), *gb = up(b, O), *gdy = up(dy, N * O);
    float *gy = poisoned(N * O), *gdx = poisoned(N * I), *gdw = poisoned(O * I), *gdb = poisoned(O);
    G->linear_forward(gy, gx, gw, gb, N, I, O);
    G->linear_backward(gdx, gdw, gdb, gdy, gx, gw, N, I, O);
    EXPECT_CLOSE(gy, y, (size_t)N * O, "linear forward");
    EXPECT_CLOSE(gdx, dx, (size_t)N * I, "linear d/dinput");
    EXPECT_CLOSE(gdw, dw, (size_t)O * I, "linear d/dweight");
    EXPECT_CLOSE(gdb, db, (size_t)O, "linear d/dbias");
    {   /* a layer over gpu/linear.cu's one-launch size (2^20 multiply-adds): the GEMM path */
        int N2 = 33, I2 = 520, O2 = 62;
        size_t nx = (size_t)N2 * I2, nw = (size_t)O2 * I2, ny = (size_t)N2 * O2;
        float *x2 = rnd(nx, 5), *w2 = rnd(nw, 6), *b2 = rnd(O2, 7), *dy2 = rnd(ny, 8);
        float *y2 = malloc(4 * ny), *dx2 = malloc(4 * nx), *dw2 = malloc(4 * nw), *db2 = malloc(4 * O2);
        linear_forward(y2, x2, w2, b2, N2, I2, O2);
        linear_backward(dx2, dw2, db2, dy2, x2, w2, N2, I2, O2);
        float *hx = up(x2, nx), *hw = up(w2, nw), *hb = up(b2, O2), *hdy = up(dy2, ny);
        float *hy = poisoned(ny), *hdx = poisoned(nx), *hdw = poisoned(nw), *hdb = poisoned(O2);
        G->linear_forward(hy, hx, hw, hb, N2, I2, O2);
        G->linear_backward(hdx, hdw, hdb, hdy, hx, hw, N2, I2, O2);
        EXPECT_CLOSE(hy, y2, ny, "linear forward (GEMM path)");
        EXPECT_CLOSE(hdx, dx2, nx, "linear d/dinput (GEMM path)");
        EXPECT_CLOSE(hdw, dw2, nw, "linear d/dweight (GEMM path)");
        EXPECT_CLOSE(hdb, db2, O2, "linear d/dbias (GEMM path)");
        free(y2); free(dx2); free(dw2); free(db2);
    }
}
END_TEST

/* softmax cross-entropy forward and backward, then the classifier head's backward in one
 * launch, against the CPU (logits from the CPU's linear layer of linear_kernels' shapes) */
START_TEST(loss_and_head_kernels)
{
    emu_set_shuffle(_i);
    int N = 7, I = 33, O = 10;
    float *x = rnd(N * I, 1), *w = rnd(O * I, 2), *b = rnd(O, 3), y[70];
    linear_forward(y, x, w, b, N, I, O);
    float *gx = up(x, N * I), *gw = up(w, O * I);
    int32_t lab[7] = {0, 9, 3, 3, 5, 1, 2}, cor[7], gcor[7];
    float loss[7], p[70], dz[70];
    for (int i = 0; i < 70; i++) y[i] *= 3;
    softmax_xent_forward(loss, p, cor, y, lab, N, O);
    softmax_xent_backward(dz, p, lab, N, O);
    float *gz = up(y, 70), *gl = poisoned(7), *gp = poisoned(70), *gdz = poisoned(70);
    int32_t *glab = dev(sizeof lab), *gc = dev(sizeof lab);
    G->upload(glab, lab, sizeof lab);
    G->softmax_xent_forward(gl, gp, gc, gz, glab, N, O);
    G->softmax_xent_backward(gdz, gp, glab, N, O);
    EXPECT_CLOSE(gl, loss, 7, "softmax_xent losses");
    EXPECT_CLOSE(gp, p, 70, "softmax_xent probs");
    EXPECT_CLOSE(gdz, dz, 70, "softmax_xent backward");
    G->download(gcor, gc, sizeof lab);
    ck_assert(memcmp(gcor, cor, sizeof cor) == 0);
    {   /* the head's backward in one launch (classifier_backward: the three calls above and a
         * global 3x3 average pool's backward, pooled = x): vs the CPU's three calls, and on the
         * emulator the bits of the GPU's three calls */
        int H = 3, W = 3;
        size_t nx3 = (size_t)N * I * H * W;
        float dpool[231], dwc[330], dbc[10], *dx3 = malloc(sizeof(float) * nx3);
        linear_backward(dpool, dwc, dbc, dz, x, w, N, I, O);
        avgpool2d_backward(dx3, dpool, N, I, H, W, H, 1, 0);
        float *cdx = poisoned(nx3), *cdw = poisoned((size_t)O * I), *cdb = poisoned(O);
        G->fused->classifier_backward(cdx, cdw, cdb, gp, glab, gx, gw, N, I, O, H, W);
        EXPECT_CLOSE(cdx, dx3, nx3, "classifier backward d/dx");
        EXPECT_CLOSE(cdw, dwc, (size_t)O * I, "classifier backward d/dweight");
        EXPECT_CLOSE(cdb, dbc, O, "classifier backward d/dbias");
#ifndef CONTRACTED
        float *tdp = poisoned((size_t)N * I), *tdx = poisoned(nx3), *tdw = poisoned((size_t)O * I), *tdb = poisoned(O);
        G->linear_backward(tdp, tdw, tdb, gdz, gx, gw, N, I, O);
        G->avgpool2d_backward(tdx, tdp, N, I, H, W, H, 1, 0);
        float *got[3] = {down(cdx, nx3), down(cdw, (size_t)O * I), down(cdb, O)};
        float *want[3] = {down(tdx, nx3), down(tdw, (size_t)O * I), down(tdb, O)};
        size_t sz[3] = {nx3, (size_t)O * I, (size_t)O};
        for (int k = 0; k < 3; k++) {
            ck_assert_msg(memcmp(got[k], want[k], sizeof(float) * sz[k]) == 0, "classifier backward: output %d is not "
                          "the bits of the three calls", k);
        }
#endif
        free(dx3);
    }
}
END_TEST

/* The data transforms on the GPU give the CPU path's pixels for the same drawn parameters:
 * flip + crop (bilinear, rounded as PIL), rotation (nearest, fill 0), pixel permutation. */
START_TEST(augment_kernel_matches_cpu)
{
    emu_set_shuffle(_i);
    int nimg = 9, n = 6;
    uint8_t *imgs = malloc((size_t)nimg * CIFAR_PIXELS);
    Rng r;
    rng_seed(&r, 77, 1);
    for (size_t k = 0; k < (size_t)nimg * CIFAR_PIXELS; k++) imgs[k] = (uint8_t)rng_int(&r, 256);
    int32_t idx[6] = {8, 0, 3, 3, 5, 1};
    int perm[1024];
    permutation_from_seed(perm, 1024, 3);
    uint8_t *dimgs = dev((size_t)nimg * CIFAR_PIXELS);
    G->upload(dimgs, imgs, (size_t)nimg * CIFAR_PIXELS);
    int32_t *didx = dev(sizeof idx), *dperm = dev(sizeof perm);
    G->upload(didx, idx, sizeof idx);
    G->upload(dperm, perm, sizeof perm);
    AugParams p[6];
    AugParams *dp = dev(sizeof p);
    float *ref = malloc(sizeof(float) * n * CIFAR_PIXELS);
    static const double angles[] = {0, 0, 30, 90, 45};
    for (int cfg = 0; cfg < 5; cfg++) {
        int aug = cfg >= 1, use_perm = cfg == 4;
        for (int i = 0; i < n; i++) augment_draw(&r, aug, aug, &p[i]);
        G->upload(dp, p, sizeof p);
        for (int i = 0; i < n; i++)
            augment_apply(ref + (size_t)i * CIFAR_PIXELS, imgs + (size_t)idx[i] * CIFAR_PIXELS, &p[i], angles[cfg],
                          use_perm ? perm : NULL);
        float *dout = poisoned((size_t)n * CIFAR_PIXELS);
        gpu_augment_batch(dout, dimgs, didx, dp, n, angles[cfg], use_perm ? dperm : NULL);
        float *got = down(dout, (size_t)n * CIFAR_PIXELS);
        for (size_t k = 0; k < (size_t)n * CIFAR_PIXELS; k++)
            ck_assert_msg(fabsf(got[k] - ref[k]) <= 1e-5f, "config %d value %zu: gpu %g cpu %g", cfg, k, got[k], ref[k]);
    }
    free(imgs); free(ref);
}
END_TEST

/* The device data path builds exactly the CPU loader's batches (same order, same draws), and
 * evaluation on the GPU table agrees with the CPU's. */
START_TEST(device_data_path_matches_loader)
{
    int n = 24;
    Dataset ds = {n, malloc((size_t)n * CIFAR_PIXELS), malloc(n)};
    Rng r;
    rng_seed(&r, 9, 9);
    for (int i = 0; i < n; i++) {
        ds.labels[i] = (uint8_t)rng_int(&r, 10);
        for (int k = 0; k < CIFAR_PIXELS; k++) ds.images[(size_t)i * CIFAR_PIXELS + k] = (uint8_t)rng_int(&r, 256);
    }
    int perm[1024];
    permutation_from_seed(perm, 1024, 5);
    LoaderConfig lc = {.ds = &ds, .batch = 8, .shuffle = 1, .drop_last = 1, .flip = 1, .crop = 1, .perm = perm, .seed = 3};
    int order[24];
    loader_order(&lc, 4, order);
    Batch cpu = {0, malloc(sizeof(float) * 8 * CIFAR_PIXELS), malloc(8 * 4)};
    loader_fill(&lc, order, 4, 1, 8, &cpu);
    DeviceData *dd = devdata_create(G, &ds, perm, 8);
    float *dx = poisoned((size_t)8 * CIFAR_PIXELS);
    int32_t y[8];
    devdata_fill(dd, &lc, order, 4, 1, 8, dx, y);
    float *got = down(dx, (size_t)8 * CIFAR_PIXELS);
    for (int i = 0; i < 8 * CIFAR_PIXELS; i++) ck_assert_msg(fabsf(got[i] - cpu.x[i]) <= 1e-5f, "value %d", i);
    ck_assert(memcmp(y, cpu.y, sizeof y) == 0);
    devdata_free(dd);
    /* evaluation: same accuracy through either table (tiny model, 16 images) */
    ModelConfig cfg;
    model_config_default(&cfg);
    cfg.n_stages = 1; cfg.blocks[0] = 1; cfg.channels[0] = 4;
    Model *mc = model_create(&ops_cpu, &cfg, 8), *mg = model_create(G, &cfg, 8);
    rng_seed(&r, 4, 4);
    model_init(mc, &r);
    float *p = malloc(sizeof(float) * mc->n_params), *bufs = malloc(sizeof(float) * mc->n_buffers);
    model_get_params(mc, p);
    model_get_buffers(mc, bufs);
    model_set_params(mg, p);
    model_set_buffers(mg, bufs);
    double ac = evaluate(mc, &ds, NULL, 16, perm, 30, 8), ag = evaluate(mg, &ds, NULL, 16, perm, 30, 8);
    ck_assert_msg(ac == ag, "cpu %g vs gpu %g", ac, ag);
    model_free(mc); model_free(mg);
    free(p); free(bufs); free(cpu.x); free(cpu.y);
    dataset_free(&ds);
}
END_TEST

/* The whole model through the GPU table: one training step of a small ResNet matches the
 * CPU table (logits, loss, every gradient, updated weights), and the bits do not depend on
 * the scheduler seed (the GPU path is deterministic); the pre-activation ResNet also with
 * every stride-1 convolution's backward fused (at these sizes the default fuses none). */
static float *run_model_step(const Ops *ops, int block, double *loss_out, float **grads, size_t *np)
{
    ModelConfig cfg;
    model_config_default(&cfg);
    cfg.block = block == 2 ? BLOCK_PREACT : (BlockType)block;
    cfg.in_h = cfg.in_w = 8;
    cfg.n_stages = 2;
    cfg.blocks[0] = 1; cfg.blocks[1] = 1;
    cfg.channels[0] = 4; cfg.channels[1] = 6;
    if (block == 2) {   /* the MLP: 192 -> 12 -> 9 -> 10 */
        cfg.mlp = 1;
        cfg.n_hidden = 2;
        cfg.hidden[0] = 12; cfg.hidden[1] = 9;
    }
    int N = 3;
    Model *m = model_create(ops, &cfg, N);
    Rng r;
    rng_seed(&r, 11, 1);
    model_init(m, &r);
    float *x = rnd((size_t)N * 3 * 64, 5);
    int32_t y[3] = {1, 7, 3};
    model_forward(m, x, N, 1);
    *loss_out = model_loss(m, y, N, NULL);
    model_backward(m, N);
    *grads = malloc(sizeof(float) * m->n_params);
    ops->download(*grads, m->grads, sizeof(float) * m->n_params);
    model_sgd_step(m, 0.1f, 0.9f, 1e-4f);
    float *p = malloc(sizeof(float) * m->n_params);
    model_get_params(m, p);
    *np = m->n_params;
    model_free(m);
    return p;
}

START_TEST(model_step_matches_cpu)
{
    if (!use_math(_i * SEEDS)) return;   /* _i = 0: fp32, 1: 3xTF32 */
    for (int run = 0; run <= 3; run++) {   /* preact, original, MLP, preact fused */
        int block = run % 3;
        gpu_set_conv_fusion(run == 3 ? 2 : 0);
        double lc, lg, lg2;
        float *gc, *gg, *gg2;
        size_t np, np2;
        float *pc = run_model_step(&ops_cpu, block, &lc, &gc, &np);
        emu_set_shuffle(0);
        float *pg = run_model_step(G, block, &lg, &gg, &np2);
        ck_assert_uint_eq(np, np2);
        ck_assert_msg(fabs(lc - lg) <= GPU_TOL * fabs(lc), "run %d loss %.9g vs %.9g (%s)", run, lg, lc, math_name);
        ck_assert_msg(max_rel(gg, gc, np) <= GPU_TOL, "run %d gradients: %g (%s)", run, max_rel(gg, gc, np), math_name);
        ck_assert_msg(max_rel(pg, pc, np) <= GPU_TOL, "run %d weights after SGD (%s)", run, math_name);
        emu_set_shuffle(12345);
        float *pg2 = run_model_step(G, block, &lg2, &gg2, &np2);
        ck_assert_msg(memcmp(pg, pg2, sizeof(float) * np) == 0 && memcmp(gg, gg2, sizeof(float) * np) == 0,
                      "GPU results changed with the thread schedule (non-deterministic; run %d)", run);
        free(pc); free(pg); free(pg2); free(gc); free(gg); free(gg2);
    }
    gpu_set_conv_fusion(0);
    emu_set_shuffle(0);
}
END_TEST

#ifndef CONVNET_REAL_GPU
static void count_launch(void *arg, const char *k, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                         unsigned bz, size_t smem)
{
    (void)k; (void)gx; (void)gy; (void)gz; (void)bx; (void)by; (void)bz; (void)smem;
    ++*(long *)arg;
}
#endif
/* bench/train_step --profile's timing (gpu/profile.cu): every launch of a training step is
 * timed once (on the emulator: as many as the emulator ran), and the report names the
 * convolution's launch site. */
START_TEST(profile_times_every_launch)
{
    double loss;
    float *grads;
    size_t np;
#ifndef CONVNET_REAL_GPU
    long launched = 0;
    emu_set_trace(count_launch, &launched, 1);
#endif
    gpu_profile_begin();
    float *p = run_model_step(G, 0, &loss, &grads, &np);
    FILE *f = tmpfile();
    long timed = gpu_profile_end(1, f);
#ifndef CONVNET_REAL_GPU
    emu_set_trace(NULL, NULL, 1);
    ck_assert_int_eq(timed, launched);
#endif
    ck_assert_int_gt(timed, 20);
    char text[8192];
    rewind(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    ck_assert_msg(strstr(text, "gpu/conv2d_igemm.cu:") && strstr(text, "main stream:"), "%s", text);
    free(p); free(grads);
}
END_TEST

/* The GPU's reference table (the readable kernels: im2col + GEMM convolutions, a block per
 * batchnorm channel) runs the plain walk (no fused slots): one training step of each network
 * against the CPU's reference table (the plain walk on cpu/) and against the GPU's fast table
 * (the scheduled walk), loss, gradients and weights within the parity tolerance; the same bits
 * under another thread schedule. */
START_TEST(reference_table_step_matches)
{
    const char *why = NULL;
    const Ops *GR = ops_gpu_ref(&why);
    ck_assert_msg(GR != NULL && GR->fused == NULL && G->fused != NULL, "%s", why ? why : "tables");
    for (int block = 0; block < 3; block++) {   /* preact, original, MLP */
        double lc, lr, lf, lr2;
        float *gc, *gr, *gf, *gr2;
        size_t np, np2;
        emu_set_shuffle(0);
        float *pc = run_model_step(&ops_cpu_ref, block, &lc, &gc, &np);
        float *pr = run_model_step(GR, block, &lr, &gr, &np2);
        float *pf = run_model_step(G, block, &lf, &gf, &np2);
        ck_assert_uint_eq(np, np2);
        ck_assert_msg(fabs(lr - lc) <= GPU_TOL * fabs(lc) && fabs(lr - lf) <= GPU_TOL * fabs(lc),
                      "block %d loss: gpu-reference %.9g, cpu-reference %.9g, gpu %.9g", block, lr, lc, lf);
        ck_assert_msg(max_rel(gr, gc, np) <= GPU_TOL, "block %d gradients vs cpu-reference: %g", block, max_rel(gr, gc, np));
        ck_assert_msg(max_rel(gr, gf, np) <= GPU_TOL, "block %d gradients vs gpu: %g", block, max_rel(gr, gf, np));
        ck_assert_msg(max_rel(pr, pc, np) <= GPU_TOL && max_rel(pr, pf, np) <= GPU_TOL, "block %d weights after SGD", block);
        /* the data-parallel table (the fast convolutions, the readable batchnorm) on one process */
        const Ops *GD = ops_gpu_data_parallel(&why);
        double ld;
        float *gd, *pd = run_model_step(GD, block, &ld, &gd, &np2);
        ck_assert_msg(GD->fused == NULL && fabs(ld - lc) <= GPU_TOL * fabs(lc), "block %d loss: %s %.9g", block, GD->name, ld);
        ck_assert_msg(max_rel(gd, gc, np) <= GPU_TOL && max_rel(pd, pc, np) <= GPU_TOL,
                      "block %d %s vs cpu-reference: gradients %g, weights %g", block, GD->name, max_rel(gd, gc, np),
                      max_rel(pd, pc, np));
        free(pd); free(gd);
        emu_set_shuffle(777);
        float *pr2 = run_model_step(GR, block, &lr2, &gr2, &np2);
        ck_assert_msg(memcmp(pr, pr2, sizeof(float) * np) == 0 && memcmp(gr, gr2, sizeof(float) * np) == 0,
                      "gpu-reference results changed with the thread schedule (block %d)", block);
        free(pc); free(pr); free(pf); free(pr2); free(gc); free(gr); free(gf); free(gr2);
    }
    emu_set_shuffle(0);
}
END_TEST

/* n training images with fixed patterns and labels i % 10; the test set: their first 8 */
static void tiny_sets(Dataset *tr, Dataset *te, int n)
{
    *tr = (Dataset){n, malloc((size_t)n * CIFAR_PIXELS), malloc(n)};
    *te = (Dataset){8, malloc(8 * CIFAR_PIXELS), malloc(8)};
    for (int i = 0; i < n; i++) {
        tr->labels[i] = (uint8_t)(i % 10);
        for (int k = 0; k < CIFAR_PIXELS; k++) tr->images[(size_t)i * CIFAR_PIXELS + k] = (uint8_t)((i * 29 + k * 7) % 253);
    }
    memcpy(te->images, tr->images, 8 * CIFAR_PIXELS);
    memcpy(te->labels, tr->labels, 8);
}

/* `--device gpu --kernels reference` as the apps run it (train_run: the batches built on the
 * device, the step issued op by op or as a graph): one epoch of 4 steps of a small net, whose
 * weights agree with the same run on the fast GPU table and on the CPU's reference table within
 * the parity tolerance. */
static float *train_tiny(const char *device, const char *kernels, size_t *np)
{
    int n = 32;
    Dataset tr, te;
    tiny_sets(&tr, &te, n);
    char dir[] = "/tmp/convnet_kernels_XXXXXX", path[256], err[512];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    TrainConfig c;
    TrainResult res;
    train_config_default(&c);
    c.device = device;
    c.kernels = kernels;
    c.model.n_stages = 2;
    c.model.blocks[0] = 1; c.model.blocks[1] = 1;
    c.model.channels[0] = 4; c.model.channels[1] = 6;
    c.epochs = 1; c.batch = 6; c.n_val = 8; c.val_every = 1;
    c.train_set = &tr; c.test_set = &te;
    c.out_dir = dir;
    c.quiet = 1;
    c.retrain = 1;
    train_run(&c, &res);
    Model *m = model_create(&ops_cpu_ref, &c.model, 1);
    snprintf(path, sizeof path, "%s/best.safetensors", dir);
    ck_assert_msg(checkpoint_load(m, path, err, sizeof err) == 0, "%s", err);
    float *p = malloc(sizeof(float) * m->n_params);
    model_get_params(m, p);
    *np = m->n_params;
    model_free(m);
    ck_assert_int_eq(fixture_remove(dir, NULL), 0);
    dataset_free(&tr);
    dataset_free(&te);
    return p;
}
START_TEST(reference_kernels_train_on_gpu)
{
    size_t n1, n2, n3;
    float *ref = train_tiny("gpu", "reference", &n1), *fast = train_tiny("gpu", "fast", &n2);
    float *cpu = train_tiny("cpu", "reference", &n3);
    ck_assert(n1 == n2 && n1 == n3);
    ck_assert_msg(max_rel(ref, fast, n1) <= GPU_TOL, "gpu reference vs fast weights: %g", max_rel(ref, fast, n1));
    ck_assert_msg(max_rel(ref, cpu, n1) <= GPU_TOL, "gpu vs cpu reference weights: %g", max_rel(ref, cpu, n1));
    free(ref); free(fast); free(cpu);
}
END_TEST

#ifndef CONVNET_REAL_GPU
unsigned long long emu_host_syncs(void);
unsigned long long emu_graph_launches(void);
unsigned long long emu_last_graph_nodes(void);
unsigned long long emu_last_graph_depth(void);
void emu_set_graph_shuffle(unsigned long long seed);
#else
static void emu_set_graph_shuffle(unsigned long long seed) { (void)seed; }
#endif

/* Two epochs of training (3 steps each, the lr dropping after the first) as graph launches
 * and as the same work issued op by op: the same weights and loss sums, bit for bit; and on
 * the emulator: no host synchronization between the epoch's upload and its one read-back,
 * one graph launch per step after the first (uncaptured: SGD's first step), a recapture
 * when the lr, the weight decay or the momentum changes (each is captured by value: a stale
 * graph would give other weights). The graph has branches (each weight gradient beside its layer's
 * backward-input and batchnorm sums); the emulator runs its nodes in a random order that
 * keeps the dependencies (seeded), so a missing fork or join edge gives other numbers.
 * Run with every stride-1 convolution's backward fused (the strided ones and the stem keep
 * their weight gradients on the side stream): both paths in one graph. */
static void train_two_epochs(int use_graph, float **params, double sums[2][2], size_t *np, long *launches,
                             unsigned long long *syncs, unsigned long long *nodes)
{
    ModelConfig cfg;
    model_config_default(&cfg);
    cfg.n_stages = 2;
    cfg.blocks[0] = 1; cfg.blocks[1] = 1;
    cfg.channels[0] = 4; cfg.channels[1] = 6;
    int batch = 4, n = 12;
    Dataset ds = {n, malloc((size_t)n * CIFAR_PIXELS), malloc(n)};
    for (int i = 0; i < n; i++) {
        ds.labels[i] = (uint8_t)(i % 10);
        for (int k = 0; k < CIFAR_PIXELS; k++) ds.images[(size_t)i * CIFAR_PIXELS + k] = (uint8_t)((i * 37 + k * 11) % 251);
    }
    Model *m = model_create(G, &cfg, batch);
    Rng r;
    rng_seed(&r, 5, 1);
    model_init(m, &r);
    DeviceData *dd = devdata_create(G, &ds, NULL, batch);
    LoaderConfig lc = {.ds = &ds, .n = n, .batch = batch, .shuffle = 1, .drop_last = 1, .flip = 1, .crop = 1, .seed = 9};
    GpuStep *g = gpustep_create(m, dd, &lc, use_graph);
    *syncs = 0;
    *nodes = 0;
    for (int e = 0; e < 2; e++) {
        gpustep_epoch(g, &lc, e, 0, 0, 0);
#ifndef CONVNET_REAL_GPU
        unsigned long long s0 = emu_host_syncs();
#endif
        for (int step = 0; step < n / batch; step++) {   /* the second epoch: the lr, then wd, then momentum change */
            float wd = e == 1 && step >= 1 ? 5e-4f : 1e-4f, momentum = e == 1 && step == 2 ? 0.8f : 0.9f;
            gpustep_run(g, e == 0 ? 0.1f : 0.01f, momentum, wd);
        }
#ifndef CONVNET_REAL_GPU
        *syncs += emu_host_syncs() - s0;
        *nodes = emu_last_graph_nodes();
#endif
        long correct;
        gpustep_sums(g, &sums[e][0], &correct);
        sums[e][1] = (double)correct;
    }
    *launches = g->launches;
    *np = m->n_params;
    *params = malloc(sizeof(float) * m->n_params);
    model_get_params(m, *params);
    gpustep_free(g);
    devdata_free(dd);
    model_free(m);
    dataset_free(&ds);
}

START_TEST(graph_step_matches_op_by_op)
{
    float *pa, *pb;
    double sa[2][2], sb[2][2];
    size_t na, nb;
    long la, lb;
    unsigned long long ya, yb, nodes_a = 0, nodes_b = 0;
    gpu_set_conv_fusion(2);
    train_two_epochs(0, &pb, sb, &nb, &lb, &yb, &nodes_b);
    ck_assert_int_eq(lb, 0);
    for (int seed = 0; seed < 3; seed++) {   /* capture order, then two random orders */
#ifndef CONVNET_REAL_GPU
        unsigned long long g0 = emu_graph_launches();
#endif
        emu_set_graph_shuffle((unsigned long long)seed);
        train_two_epochs(1, &pa, sa, &na, &la, &ya, &nodes_a);
        emu_set_graph_shuffle(0);
#ifndef CONVNET_REAL_GPU
        ck_assert_uint_eq(emu_graph_launches() - g0, 5);   /* 6 steps, the first uncaptured */
        ck_assert_uint_eq(ya, 0);                           /* no host sync inside an epoch */
        ck_assert_uint_gt(nodes_a, 20);                     /* the whole step is one graph */
        ck_assert_uint_lt(emu_last_graph_depth(), nodes_a); /* with branches beside the main chain */
#endif
        ck_assert_int_eq(la, 5);
        ck_assert_uint_eq(na, nb);
        ck_assert_msg(memcmp(pa, pb, sizeof(float) * na) == 0, "graph (node order %d) and op-by-op weights differ", seed);
        ck_assert_msg(memcmp(sa, sb, sizeof sa) == 0, "graph (node order %d) and op-by-op loss sums differ", seed);
        ck_assert(sa[0][0] > 0 && sa[1][1] >= 0 && sa[1][1] <= 12);
        free(pa);
    }
    free(pb);
    gpu_set_conv_fusion(0);
}
END_TEST

/* A resumed run starts with m->steps > 0 in a fresh process, where the operators' scratch
 * buffers (grown on first use) do not exist yet: its first step must run uncaptured, since
 * cudaMalloc is refused inside a capture (on a GPU in global capture mode, and on the
 * emulator). gpu_release_scratch puts this process back in that state. */
void gpu_release_scratch(void);
START_TEST(resumed_first_step_is_not_captured)
{
    ModelConfig cfg;
    model_config_default(&cfg);
    cfg.n_stages = 2;
    cfg.blocks[0] = 1; cfg.blocks[1] = 1;
    cfg.channels[0] = 4; cfg.channels[1] = 6;
    int batch = 4, n = 8;
    Dataset ds = fixture_set(n, 3);
    Model *m = model_create(G, &cfg, batch);
    Rng r;
    rng_seed(&r, 5, 1);
    model_init(m, &r);
    m->steps = 7;   /* as restored from a training state */
    gpu_release_scratch();
    DeviceData *dd = devdata_create(G, &ds, NULL, batch);
    LoaderConfig lc = {.ds = &ds, .n = n, .batch = batch, .shuffle = 1, .drop_last = 1, .seed = 2};
    GpuStep *g = gpustep_create(m, dd, &lc, 1);
    gpustep_epoch(g, &lc, 0, 0, 0, 0);
    gpustep_run(g, 0.1f, 0.9f, 1e-4f);
    ck_assert_int_eq(g->launches, 0);
    gpustep_run(g, 0.1f, 0.9f, 1e-4f);
    ck_assert_int_eq(g->launches, 1);
    gpustep_free(g);
    devdata_free(dd);
    model_free(m);
    dataset_free(&ds);
}
END_TEST

#ifndef CONVNET_REAL_GPU
/* The practical's step at batch 128, traced without running (emulator trace-only mode):
 * every kernel gives the card at least 264 blocks (2 per SM of a 132-SM H100/H200) except
 * the ones whose whole work is tiny: the 10-class head (linear layer, softmax, loss sums).
 * (The weight gradients' group sums, one launch for all layers before SGD, need no
 * exemption.) bench/gpu_plan prints the same with the FLOPs and bytes. */
static const char *const tiny_kernels[] = {"linear_small_", "softmax_xent", "loss_accumulate_kernel"};
typedef struct { int launches, small; char first_small[160]; } BlockCount;
static void count_blocks(void *arg, const char *k, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                         unsigned bz, size_t smem)
{
    (void)bx; (void)by; (void)bz; (void)smem;
    BlockCount *c = arg;
    c->launches++;
    for (size_t i = 0; i < sizeof tiny_kernels / sizeof tiny_kernels[0]; i++)
        if (strstr(k, tiny_kernels[i])) return;
    if ((long)gx * gy * gz < 264 && !c->small++)
        snprintf(c->first_small, sizeof c->first_small, "%s with %ux%ux%u blocks", k, gx, gy, gz);
}

START_TEST(step_kernels_fill_the_card)
{
    ModelConfig cfg;
    model_config_default(&cfg);
    int batch = 128, n = 2 * batch;
    BlockCount bc = {0, 0, ""};
    emu_set_trace(count_blocks, &bc, 0);
    Model *m = model_create(G, &cfg, batch);
    Dataset ds = {n, calloc((size_t)n, CIFAR_PIXELS), calloc((size_t)n, 1)};
    DeviceData *dd = devdata_create(G, &ds, NULL, batch);
    LoaderConfig lc = {.ds = &ds, .n = n, .batch = batch, .shuffle = 1, .drop_last = 1, .flip = 1, .crop = 1, .seed = 1};
    GpuStep *g = gpustep_create(m, dd, &lc, 0);
    gpustep_epoch(g, &lc, 0, 0, 0, 0);
    bc.launches = 0;
    gpustep_run(g, 0.1f, 0.9f, 1e-4f);   /* one step, kernel by kernel */
    emu_set_trace(NULL, NULL, 1);
    ck_assert_int_gt(bc.launches, 60);   /* the whole step traced */
    ck_assert_msg(bc.small == 0, "%d kernels under 264 blocks, e.g. %s", bc.small, bc.first_small);
    gpustep_free(g);
    devdata_free(dd);
    model_free(m);
    dataset_free(&ds);
}
END_TEST
#endif

/* train_run on the device (the graph path of core/train.c): a run stopped by Ctrl-C inside
 * its first epoch and resumed ends with the same files, bit for bit, as one never stopped. */
static void raise_at(void *arg, int epoch, int step)
{
    (void)arg;
    if (epoch == 0 && step == 1) raise(SIGINT);
}

START_TEST(gpu_training_resumes_bit_exact)
{
    int n = 36;
    Dataset tr, te;
    tiny_sets(&tr, &te, n);
    char dA[] = "/tmp/convnet_gpuA_XXXXXX", dB[] = "/tmp/convnet_gpuB_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dA));
    ck_assert_ptr_nonnull(mkdtemp(dB));
    for (int run = 0; run < 3; run++) {   /* A whole; B stopped; B resumed */
        TrainConfig c;
        TrainResult res;
        train_config_default(&c);
        c.device = "gpu";
        c.model.n_stages = 2;
        c.model.blocks[0] = 1; c.model.blocks[1] = 1;
        c.model.channels[0] = 4; c.model.channels[1] = 6;
        c.epochs = 2; c.batch = 8; c.n_val = 12; c.val_every = 1;
        c.milestones[0] = 1; c.n_milestones = 1;
        c.train_set = &tr; c.test_set = &te;
        c.out_dir = run ? dB : dA;
        c.quiet = 1;
        c.retrain = run < 2;
        c.resume = run == 2;
        if (run == 1) c.on_step = raise_at;
        train_run(&c, &res);
        ck_assert_int_eq(res.interrupted, run == 1 ? SIGINT : 0);
    }
    char p[512], q[512];
    const char *files[] = {"last.state", "best.safetensors", "results.json"};
    for (int f = 0; f < 3; f++) {
        snprintf(p, sizeof p, "%s/%s", dA, files[f]);
        snprintf(q, sizeof q, "%s/%s", dB, files[f]);
        ck_assert_msg(fixture_same_file(p, q), "%s differs after stop + resume on the device", files[f]);
    }
    ck_assert_int_eq(fixture_remove(dA, dB), 0);
    dataset_free(&tr);
    dataset_free(&te);
}
END_TEST

#ifndef CONVNET_REAL_GPU
int emu_captured_event_rules(void);
#endif
/* The side stream's events are waited for in the mode they were recorded in (gpu/ops_gpu.cu).
 * A read-back after a captured branch must not wait eagerly on the captured events
 * (cudaErrorCapturedEvent); a capture with no side work of its own (the reference table's
 * step), after side work outside it or after another capture, must not wait on events from
 * outside it (cudaErrorStreamCaptureIsolation: the first real card stopped the suite here).
 * On the emulator, first: it refuses those waits the way CUDA does. */
START_TEST(read_back_after_capture)
{
#ifndef CONVNET_REAL_GPU
    ck_assert_int_eq(emu_captured_event_rules(), 0);
#endif
    size_t n = 257;
    float *x = rnd(n, 3), *gx = up(x, n), *gy = poisoned(n), *gz = poisoned(n);
    G->capture_begin();   /* 1: a branch on the side stream */
    G->fused->branch_begin();
    G->relu_forward(gy, gx, n);
    G->fused->branch_end();
    void *branch = G->capture_end();
    G->graph_launch(branch);
    float *y = down(gy, n);
    for (size_t i = 0; i < n; i++) ck_assert_float_eq(y[i], x[i] > 0.f ? x[i] : 0.f);
    G->capture_begin();   /* 2: no side work, right after a capture that had some */
    G->relu_forward(gz, gy, n);
    void *plain = G->capture_end();
    G->graph_launch(plain);
    G->fused->branch_begin();   /* 3: side work outside a capture, then a capture without */
    G->relu_forward(gy, gx, n);
    G->fused->branch_end();
    G->graph_free(plain);   /* (not inside a capture: CUDA refuses that) */
    G->capture_begin();
    G->relu_forward(gz, gy, n);
    plain = G->capture_end();
    G->graph_launch(plain);
    float *z = down(gz, n);
    for (size_t i = 0; i < n; i++) ck_assert_float_eq(z[i], x[i] > 0.f ? x[i] : 0.f);
    G->graph_free(branch);
    G->graph_free(plain);
}
END_TEST

#ifndef CONVNET_REAL_GPU
/* A kernel that takes a last-block ticket (batchnorm's statistics here) launched on the side
 * stream stops with a message (gpu::require_main_stream): the ticket counters are one per
 * source file, safe only while such launches never overlap. (exit 1; the emulator's forked
 * test only: on a card the suite runs in one process.) */
START_TEST(ticket_kernel_off_main_stream_refused)
{
    int N = 2, C = 3, HW = 5;
    size_t n = (size_t)N * C * HW;
    float *x = rnd(n, 4), *gx = up(x, n), *gy = poisoned(n), *st[6];
    for (int k = 0; k < 6; k++) st[k] = poisoned((size_t)C);
    G->fused->branch_begin();
    G->batchnorm_forward_train(gy, st[0], st[1], st[2], st[3], gx, st[4], st[5], N, C, HW, 0.1f, 1e-5f);
}
END_TEST
#endif

/* The one line a user sees when the GPU cannot be used (gpu/ops_gpu.cu). */
const char *gpu_unusable_reason(char *buf, size_t n, int err, int driver, int runtime, int cc, int built);
START_TEST(gpu_unusable_reasons)
{
    char b[256];
    ck_assert_ptr_null(gpu_unusable_reason(b, sizeof b, 0, 13000, 13000, 90, 90));
    ck_assert_ptr_null(gpu_unusable_reason(b, sizeof b, 0, 13000, 13000, 100, 90));   /* newer card: PTX */
    ck_assert(strstr(gpu_unusable_reason(b, sizeof b, 35, 0, 13000, 0, 90), "driver not found"));
    const char *old = gpu_unusable_reason(b, sizeof b, 35, 12020, 13000, 0, 90);
    ck_assert_msg(strstr(old, "older than this build's CUDA runtime") && strstr(old, "12.2") && strstr(old, "13.0"), "%s", old);
    ck_assert(strstr(gpu_unusable_reason(b, sizeof b, 34, 0, 13000, 0, 90), "stub"));
    ck_assert(strstr(gpu_unusable_reason(b, sizeof b, 100, 13000, 13000, 0, 90), "no CUDA device"));
    const char *cc = gpu_unusable_reason(b, sizeof b, 0, 13000, 13000, 80, 90);
    ck_assert_msg(strstr(cc, "8.0") && strstr(cc, "make CUDA_ARCH=80"), "%s", cc);
}
END_TEST

/* CONVNET_GPU_TESTS=name,name,...: only those tests (bench/gpu_check.sh runs the sanitizers
 * on a subset this way); unset or empty: all */
static int wanted(const char *name)
{
    const char *f = getenv("CONVNET_GPU_TESTS");
    if (!f || !*f) return 1;
    size_t n = strlen(name);
    for (const char *p = f; (p = strstr(p, name)) != NULL; p += n)
        if ((p == f || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) return 1;
    return 0;
}
#define ADD(fn) if (wanted(#fn)) tcase_add_test(t, fn)
#define ADD_LOOP(fn, n) if (wanted(#fn)) tcase_add_loop_test(t, fn, 0, n)

Suite *suite_gpu(void)
{
#ifdef CONVNET_REAL_GPU
    Suite *s = suite_create("gpu kernels (on the card)");
#elif defined(CONVNET_EMU_FMA)
    Suite *s = suite_create("gpu kernels (CUDA emulator, products and sums fused as nvcc fuses them)");
#else
    Suite *s = suite_create("gpu kernels (CUDA emulator)");
#endif
    TCase *t = tcase_create("gpu");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 300);
    ADD_LOOP(gemm_kernels, SEEDS);
    ADD_LOOP(gemm_big_kernel, SEEDS);
#ifndef CONVNET_REAL_GPU
    ADD_LOOP(missing_barrier_is_caught, SEEDS);
#endif
    ADD_LOOP(mma_fragment_layout, 2);
    ADD_LOOP(conv2d_kernels, 2 * SEEDS);
    ADD_LOOP(batchnorm_kernels, SEEDS);
    ADD_LOOP(fused_bn_relu_conv_kernels, 2 * SEEDS);
    ADD_LOOP(block_backward_pair, 2 * SEEDS);
    ADD_LOOP(block_backward_unapplied_dx, 2 * SEEDS);
    ADD_LOOP(elementwise_kernels, SEEDS);
    ADD_LOOP(pool_kernels, SEEDS);
    ADD_LOOP(linear_kernels, SEEDS);
    ADD_LOOP(loss_and_head_kernels, SEEDS);
    ADD_LOOP(augment_kernel_matches_cpu, 2);
    ADD(gpu_unusable_reasons);
    ADD(device_data_path_matches_loader);
    ADD_LOOP(model_step_matches_cpu, 2);
    ADD(read_back_after_capture);
#ifndef CONVNET_REAL_GPU
    if (wanted("ticket_kernel_off_main_stream_refused")) tcase_add_exit_test(t, ticket_kernel_off_main_stream_refused, 1);
#endif
    ADD(profile_times_every_launch);
    ADD(reference_table_step_matches);
    ADD(reference_kernels_train_on_gpu);
    ADD(graph_step_matches_op_by_op);
    ADD(resumed_first_step_is_not_captured);
    ADD(gpu_training_resumes_bit_exact);
#ifndef CONVNET_REAL_GPU
    ADD(step_kernels_fill_the_card);
#endif
    suite_add_tcase(s, t);
    return s;
}
