/* The kernel ladder: for the practical's layer shapes at batch 128, each operator's
 * implementations in order of sophistication, with time, rate and the fraction of this
 * machine's peak, both peaks measured here in the same run:
 *   FMA peak        every thread multiply-adding in registers with the fast kernels' ISA
 *   memory          a triad a = b + s c over arrays far larger than the caches
 * Convolution forward (compute-bound: GFLOP/s against the FMA peak):
 *   1 readable      im2col + the GEMM's plain loops (cpu/conv2d.c with cpu/gemm.c's gemm_ref)
 *   2 packed GEMM   im2col + the packed, register-blocked GEMM (cpu/gemm_fast.c): the default
 *                   of the readable table
 *   3 direct        no column matrix (cpu/fast/conv2d_direct.c)
 *   4 fused         3 with batchnorm + ReLU of its input applied as the input is copied
 *                   (timed with that batchnorm: compare with "3 + batchnorm+ReLU in turn")
 *   W3              beside rung 3: the fast Winograd F(2x2,3x3) (cpu/fast/winograd.c)
 *   W4              beside rung 4: the same with batchnorm + ReLU applied in its input split
 *                   (the fast table's choice where winograd_fast_chosen says; rung 4 here is
 *                   always the direct kernel)
 *   W1, W2          beside rung 1: the readable Winograd F(2x2,3x3) and F(4x4,3x3)
 *                   (cpu/winograd.c, plain loops like rung 1) on the 3x3 stride-1 layers: what
 *                   fewer multiplications buy before any tuning (GFLOP/s counted in the direct
 *                   method's FLOPs, so above the real rate)
 * Batchnorm + ReLU forward (memory-bound: GB/s of the bytes it must move, against the triad):
 *   1 readable      cpu/batchnorm.c then cpu/relu.c
 *   2 one pass      cpu/fast/batchnorm_relu.c
 * GPU, when this machine has one: the convolution forward on the reference table (im2col +
 * tiled GEMM, gpu/conv2d.cu), then the fast table's implicit GEMM on CUDA cores (fp32) and on
 * tensor cores (3xTF32), timed with a device synchronization around each repetition.
 *   bench/ladder [--threads N] [--reps 5] [--batch-size 128] */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bench/bench.h"
#include "core/cli.h"
#include "core/model.h"
#include "core/ops.h"
#include "core/ops_fused.h"
#include "core/util.h"
#include "cpu/cpu.h"
#include "cpu/fast/fast.h"

/* ---- the machine's two peaks ---- */

/* ACC independent accumulators, written out so that they stay in registers: enough to cover
 * the FMA latency (4 cycles) on two FMA ports */
#define ACC 12
#define FMA12(op, a, b, c) \
    a##0 = op(a##0, b, c); a##1 = op(a##1, b, c); a##2 = op(a##2, b, c); a##3 = op(a##3, b, c); \
    a##4 = op(a##4, b, c); a##5 = op(a##5, b, c); a##6 = op(a##6, b, c); a##7 = op(a##7, b, c); \
    a##8 = op(a##8, b, c); a##9 = op(a##9, b, c); a##10 = op(a##10, b, c); a##11 = op(a##11, b, c)
#define SUM12(add, a) add(add(add(add(a##0, a##1), add(a##2, a##3)), add(add(a##4, a##5), add(a##6, a##7))), \
                          add(add(a##8, a##9), add(a##10, a##11)))
__attribute__((target("avx512f"))) static float fma_loop_512(long iters)
{
    __m512 b = _mm512_set1_ps(0.9999f), c = _mm512_set1_ps(1e-4f);
    __m512 a0 = _mm512_set1_ps(0), a1 = _mm512_set1_ps(1), a2 = _mm512_set1_ps(2), a3 = _mm512_set1_ps(3),
           a4 = _mm512_set1_ps(4), a5 = _mm512_set1_ps(5), a6 = _mm512_set1_ps(6), a7 = _mm512_set1_ps(7),
           a8 = _mm512_set1_ps(8), a9 = _mm512_set1_ps(9), a10 = _mm512_set1_ps(10), a11 = _mm512_set1_ps(11);
    for (long i = 0; i < iters; i++) { FMA12(_mm512_fmadd_ps, a, b, c); }
    return _mm512_reduce_add_ps(SUM12(_mm512_add_ps, a));
}
__attribute__((target("avx2,fma"))) static float fma_loop_256(long iters)
{
    __m256 b = _mm256_set1_ps(0.9999f), c = _mm256_set1_ps(1e-4f);
    __m256 a0 = _mm256_set1_ps(0), a1 = _mm256_set1_ps(1), a2 = _mm256_set1_ps(2), a3 = _mm256_set1_ps(3),
           a4 = _mm256_set1_ps(4), a5 = _mm256_set1_ps(5), a6 = _mm256_set1_ps(6), a7 = _mm256_set1_ps(7),
           a8 = _mm256_set1_ps(8), a9 = _mm256_set1_ps(9), a10 = _mm256_set1_ps(10), a11 = _mm256_set1_ps(11);
    for (long i = 0; i < iters; i++) { FMA12(_mm256_fmadd_ps, a, b, c); }
    float v[8];
    _mm256_storeu_ps(v, SUM12(_mm256_add_ps, a));
    return v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
}

static volatile double fma_sink;   /* the loops' results, so that they are computed */

/* GFLOP/s of every thread running the FMA loop (2 flops a lane) of the ISA the fast kernels use */
static double fma_peak(int isa)
{
    int lanes = isa == CPU_ISA_AVX512 ? 16 : isa == CPU_ISA_AVX2 ? 8 : 0;
    if (!lanes) return 0;
    long iters = 20000000;
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now_seconds(), s = 0;
        #pragma omp parallel reduction(+ : s)
        s += isa == CPU_ISA_AVX512 ? fma_loop_512(iters) : fma_loop_256(iters);
        double t = now_seconds() - t0, rate = 2.0 * lanes * ACC * iters * omp_get_max_threads() / t * 1e-9;
        fma_sink += s;
        if (rate > best) best = rate;
    }
    return best;
}

/* GB/s of a = b + s c (12 bytes a float: two reads, one write) over 3 x 128 MB, best of 5 */
static double triad_bandwidth(void)
{
    size_t n = (size_t)32 << 20;
    float *a = xmalloc_floats(n), *b = xmalloc_floats(n), *c = xmalloc_floats(n);
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) { a[i] = 0; b[i] = 1; c[i] = 2; }
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now_seconds();
        #pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) a[i] = b[i] + 0.5f * c[i];
        double rate = 12.0 * n / (now_seconds() - t0) * 1e-9;
        if (rate > best) best = rate;
    }
    free(a); free(b); free(c);
    return best;
}

/* ---- the rungs ---- */

typedef struct {
    int N, C, H, W, K, R, stride, pad, P, Q, rung;
    float *x, *w, *y, *ws, *a, *mean, *invstd, *rmean, *rvar, *gamma, *beta, *coef;
    const Ops *gpu;                   /* GPU rungs: the table, its device buffers in x, w, y, ws */
} Ctx;

/* rung 1: conv2d_forward's loop with the GEMM's plain loops */
static void conv_readable(Ctx *c)
{
    int CRS = c->C * c->R * c->R, PQ = c->P * c->Q;
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < c->N; n++) {
        float *col = c->ws + (size_t)omp_get_thread_num() * CRS * PQ;
        im2col(col, c->x + (size_t)n * c->C * c->H * c->W, c->C, c->H, c->W, c->R, c->R, c->stride, c->pad, c->P, c->Q);
        gemm_ref(0, 0, c->K, PQ, CRS, c->w, CRS, col, PQ, 0, c->y + (size_t)n * c->K * PQ, PQ);
    }
}

enum { CONV_READABLE, CONV_PACKED, CONV_DIRECT, CONV_FUSED, CONV_DIRECT_THEN_BN, CONV_WINO2, CONV_WINO4, CONV_WINO2_FAST, CONV_WINO2_FUSED, BN_READABLE, BN_FAST,
       GPU_CONV };

static void run(void *p)
{
    Ctx *c = p;
    int N = c->N, C = c->C, H = c->H, W = c->W, K = c->K, R = c->R, st = c->stride, pd = c->pad;
    switch (c->rung) {
    case CONV_READABLE: conv_readable(c); break;
    case CONV_PACKED: conv2d_forward(c->y, c->x, c->w, N, C, H, W, K, R, R, st, pd, c->ws); break;
    case CONV_DIRECT: conv2d_direct_forward(c->y, c->x, c->w, N, C, H, W, K, R, R, st, pd, c->ws); break;
    case CONV_FUSED:
        batchnorm_relu_conv2d_direct_forward(   /* the direct kernel (main sets the mode; W4: Winograd) */c->y, c->a, c->x, c->w, NULL, N, C, H, W, K, R, R, st, pd, c->ws, c->mean,
                                             c->invstd, c->rmean, c->rvar, c->gamma, c->beta, BN_MOMENTUM, BN_EPS, 1);
        break;
    case CONV_DIRECT_THEN_BN:
        batchnorm_relu_fast_forward_train(c->a, c->mean, c->invstd, c->rmean, c->rvar, c->x, c->gamma, c->beta, N, C,
                                          H * W, BN_MOMENTUM, BN_EPS);
        conv2d_direct_forward(c->y, c->a, c->w, N, C, H, W, K, R, R, st, pd, c->ws);
        break;
    case CONV_WINO2: winograd_conv3x3_forward(c->y, c->x, c->w, N, C, H, W, K, pd, 2); break;
    case CONV_WINO4: winograd_conv3x3_forward(c->y, c->x, c->w, N, C, H, W, K, pd, 4); break;
    case CONV_WINO2_FAST: winograd_fast_forward(c->y, c->x, c->w, N, C, H, W, K); break;
    case CONV_WINO2_FUSED:   /* as rung 4: the batchnorm's statistics, then the convolution of relu(bn(x)) */
        batchnorm_fast_train_coeffs(c->coef, c->coef + C, c->mean, c->invstd, c->rmean, c->rvar, c->x, c->gamma,
                                    c->beta, N, C, H * W, BN_MOMENTUM, BN_EPS);
        winograd_fast_forward_bn(c->y, c->a, c->x, c->w, NULL, N, C, H, W, K, c->coef, c->coef + C);
        break;
    case BN_READABLE:   /* the two readable operators in turn: the fused slot's definition */
        fused_cpu_ref.batchnorm_relu_forward_train(c->a, c->mean, c->invstd, c->rmean, c->rvar, c->x, c->gamma, c->beta,
                                                   N, C, H * W, BN_MOMENTUM, BN_EPS);
        break;
    case BN_FAST:
        batchnorm_relu_fast_forward_train(c->a, c->mean, c->invstd, c->rmean, c->rvar, c->x, c->gamma, c->beta, N, C,
                                          H * W, BN_MOMENTUM, BN_EPS);
        break;
    case GPU_CONV:
        c->gpu->conv2d_forward(c->y, c->x, c->w, N, C, H, W, K, R, R, st, pd, c->ws);
        c->gpu->sync();
        break;
    }
}

static float *filled(size_t n, unsigned seed)
{
    float *v = xmalloc_floats(n);
    for (size_t i = 0; i < n; i++) v[i] = (float)(((i + seed) * 2654435761u >> 8) % 2000) / 1000.0f - 1.0f;
    return v;
}

int main(int argc, char **argv)
{
    int threads = 0, reps = 5, batch = 128;
    for (int i = 1; i < argc; i++) {
        if (cli_is_flag(argv[i], "--threads")) threads = (int)cli_long("--threads", cli_value(argc, argv, &i), 1, 1024);
        else if (cli_is_flag(argv[i], "--reps")) reps = (int)cli_long("--reps", cli_value(argc, argv, &i), 1, 1000);
        else if (cli_is_flag(argv[i], "--batch-size")) batch = (int)cli_long("--batch-size", cli_value(argc, argv, &i), 1, 1024);
        else die_code(2, "unknown flag '%s' (bench/ladder [--threads N] [--reps 5] [--batch-size 128])", argv[i]);
    }
    cli_apply_threads(threads);
    winograd_fast_set_mode(0);   /* rung 4 is the direct kernel's fused slot */
    int isa = cpu_isa_best();
    double peak = fma_peak(isa), bw = triad_bandwidth();
    printf("Machine: %d threads, ISA %s: FMA peak %.1f GFLOP/s (measured: %d accumulators a thread), "
           "memory %.1f GB/s (triad)\n\n", omp_get_max_threads(), cpu_isa_name(isa), peak, ACC, bw);
    /* the distinct convolutions of PreAct ResNet [2,2,3] x [16,24,32] on 32x32 images */
    static const int layers[][6] = {   /* C, H, K, R, stride, pad */
        {16, 32, 16, 3, 1, 1}, {16, 32, 24, 3, 2, 1}, {24, 16, 24, 3, 1, 1}, {24, 16, 32, 3, 2, 1}, {32, 8, 32, 3, 1, 1}};
    static const char *conv_name[] = {"1 readable: im2col + plain GEMM loops", "2 im2col + packed GEMM",
                                      "3 direct", "4 fused: batchnorm+ReLU applied in the input copy",
                                      "  (3 + batchnorm+ReLU in turn, for 4)",
                                      "W1 readable Winograd F(2x2,3x3): 2.25x fewer multiplications (plain loops, as 1)",
                                      "W2 readable Winograd F(4x4,3x3): 4x fewer multiplications (plain loops, as 1)",
                                      "W3 fast Winograd F(2x2,3x3) (cpu/fast/winograd.c: vectors of tiles, as 3)",
                                      "W4 fused: W3 with batchnorm+ReLU applied in its input split (as 4)"};
    printf("#### Convolution forward, batch %d (GFLOP/s and %% of the FMA peak)\n\n", batch);
    printf("| layer | rung | ms | GFLOP/s | %% of peak | x rung 1 |\n|---|---|---|---|---|---|\n");
    const char *why = NULL;
    const Ops *gref = ops_gpu_ref(&why), *gfast = gref ? ops_gpu(NULL) : NULL;
    for (size_t l = 0; l < sizeof layers / sizeof layers[0]; l++) {
        Ctx c = {.N = batch, .C = layers[l][0], .H = layers[l][1], .W = layers[l][1], .K = layers[l][2],
                 .R = layers[l][3], .stride = layers[l][4], .pad = layers[l][5]};
        c.P = conv_out_size(c.H, c.R, c.stride, c.pad);
        c.Q = c.P;
        size_t nx = (size_t)c.N * c.C * c.H * c.W, nw = (size_t)c.K * c.C * c.R * c.R, ny = (size_t)c.N * c.K * c.P * c.Q;
        size_t nws = conv2d_workspace_floats(c.N, c.C, c.H, c.W, c.K, c.R, c.R, c.stride, c.pad);
        c.x = filled(nx, 1); c.w = filled(nw, 2); c.y = xmalloc_floats(ny); c.ws = xmalloc_floats(nws);
        c.a = xmalloc_floats(nx);
        c.mean = filled(c.C, 3); c.invstd = filled(c.C, 4); c.rmean = filled(c.C, 5); c.rvar = filled(c.C, 6);
        c.gamma = filled(c.C, 7); c.beta = filled(c.C, 8); c.coef = filled(2 * c.C, 9);
        double flop = 2.0 * c.N * c.K * c.P * c.Q * c.C * c.R * c.R, t1 = 0;
        for (int r = CONV_READABLE; r <= CONV_WINO2_FUSED; r++) {
            if (r >= CONV_WINO2 && (c.stride != 1 || c.R != 3)) continue;   /* Winograd: 3x3 stride 1 only */
            if (r >= CONV_WINO2_FAST && !winograd_fast_supported(c.C, c.H, c.W, c.K, c.R, c.R, c.stride, c.pad)) continue;
            c.rung = r;
            double t = time_median(run, &c, 1, r == CONV_READABLE ? (reps + 1) / 2 : reps);
            if (r == CONV_READABLE) t1 = t;
            printf("| %dx%d %d->%d %dx%d/s%d | %s | %.2f | %.1f | %.1f%% | %.1fx |\n", c.H, c.W, c.C, c.K, c.R, c.R,
                   c.stride, conv_name[r], t * 1e3, flop / t * 1e-9, peak > 0 ? 100 * flop / t * 1e-9 / peak : 0, t1 / t);
        }
        if (gref) {   /* the GPU rungs on device copies */
            const Ops *tabs[3] = {gref, gfast, gfast};
            static const char *gname[3] = {"GPU 1: im2col + tiled GEMM (gpu/conv2d.cu)", "GPU 2: implicit GEMM, CUDA cores (fp32)",
                                           "GPU 3: implicit GEMM, tensor cores (3xTF32)"};
            for (int g = 0; g < 3; g++) {
                if (g > 0 && gpu_set_conv_math(g == 1 ? GPU_CONV_FP32 : GPU_CONV_3XTF32)) continue;
                const Ops *o = tabs[g];
                Ctx d = c;
                d.gpu = o;
                d.rung = GPU_CONV;
                d.x = o->alloc(sizeof(float) * nx); d.w = o->alloc(sizeof(float) * nw);
                d.y = o->alloc(sizeof(float) * ny); d.ws = o->alloc(sizeof(float) * nws);
                o->upload(d.x, c.x, sizeof(float) * nx);
                o->upload(d.w, c.w, sizeof(float) * nw);
                double t = time_median(run, &d, 2, reps * 4);
                printf("| %dx%d %d->%d %dx%d/s%d | %s | %.3f | %.1f | - | - |\n", c.H, c.W, c.C, c.K, c.R, c.R, c.stride,
                       gname[g], t * 1e3, flop / t * 1e-9);
                o->free(d.x); o->free(d.w); o->free(d.y); o->free(d.ws);
            }
        }
        free(c.x); free(c.w); free(c.y); free(c.ws); free(c.a);
        free(c.mean); free(c.invstd); free(c.rmean); free(c.rvar); free(c.gamma); free(c.beta); free(c.coef);
    }
    if (!gref)
        printf("\nGPU rungs (gpu/conv2d.cu's im2col + tiled GEMM, gpu/conv2d_igemm.cu's implicit GEMM on CUDA cores and "
               "on tensor cores): not run, no GPU here (%s); bench/gpu_check.sh times the step on a card, bench/gpu_plan "
               "shows the fast step's launches and blocks without one.\n", why);

    printf("\n#### Batchnorm + ReLU forward (training), batch %d (GB/s of the bytes that must move: the input read "
           "once, the output written once; %% of the DRAM triad: tensors of 2-8 MB stay in the last-level cache between "
           "repetitions, so above 100%% is possible)\n\n", batch);
    printf("| shape | rung | ms | GB/s | %% of triad | x rung 1 |\n|---|---|---|---|---|---|\n");
    static const int bns[][2] = {{16, 32}, {24, 16}, {32, 8}};   /* C, H */
    for (size_t l = 0; l < sizeof bns / sizeof bns[0]; l++) {
        Ctx c = {.N = batch, .C = bns[l][0], .H = bns[l][1], .W = bns[l][1]};
        size_t nx = (size_t)c.N * c.C * c.H * c.W;
        c.x = filled(nx, 1); c.a = xmalloc_floats(nx);
        c.mean = filled(c.C, 3); c.invstd = filled(c.C, 4); c.rmean = filled(c.C, 5); c.rvar = filled(c.C, 6);
        c.gamma = filled(c.C, 7); c.beta = filled(c.C, 8);
        double bytes = 8.0 * nx, t1 = 0;
        static const char *bn_name[] = {"1 readable: batchnorm, then ReLU", "2 one pass (both statistics in one read, ReLU in the store)"};
        for (int r = BN_READABLE; r <= BN_FAST; r++) {
            c.rung = r;
            double t = time_median(run, &c, 1, reps);
            if (r == BN_READABLE) t1 = t;
            printf("| %dx%dx%d | %s | %.3f | %.1f | %.0f%% | %.1fx |\n", c.C, c.H, c.W, bn_name[r - BN_READABLE], t * 1e3,
                   bytes / t * 1e-9, 100 * bytes / t * 1e-9 / bw, t1 / t);
        }
        free(c.x); free(c.a);
        free(c.mean); free(c.invstd); free(c.rmean); free(c.rvar); free(c.gamma); free(c.beta);
    }
    return 0;
}
