/* Direct convolution for the fast CPU path: no im2col matrix, the output channels of a tile
 * held in vector registers. Same contract and results (to float rounding) as cpu/conv2d.c.
 *   in [N,C,H,W], weight [K,C,R,S], out [N,K,P,Q]
 *   out[n,k,p,q] = sum_{c,r,s} weight[k,c,r,s] * in[n, c, p*st-pad+r, q*st-pad+s]
 *
 * Layout trick. Each image is first copied into a zero-padded buffer whose columns are split
 * by phase (column j of phase f holds padded column j*st + f). For every stride, the input
 * values that output pixels (p, q0..q0+VL-1) meet at tap (c, r, s) are then VL consecutive
 * floats:  padded[c][p*st + r][phase s%st][q0 + s/st ...]. So one vector load per tap and
 * pixel vector, one broadcast per tap and output channel, and KB x NV FMAs (the kernels in
 * conv2d_direct_kern.h, compiled for AVX-512 and for AVX2).
 *
 *   forward          tiles of NV pixel vectors x KB output channels, summed over all taps
 *   backward_input   (stride 1) the forward of dout with the flipped, transposed kernel:
 *                    din[c,h,w] = sum_{k,r,s} w[k,c,R-1-r,S-1-s] dout_pad[k, h+r, w+s],
 *                    padding R-1-pad / S-1-pad; other strides one output phase at a time
 *                    (backward_input_strided)
 *   backward_weight  dw[k,c,r,s] = sum_{n,p,q} dout[n,k,p,q] in_pad[n,c,p*st+r,q*st+s]:
 *                    KB channels x 3 taps of accumulators per (c, r), vectors over pixels;
 *                    each chunk of images keeps its lane sums, the chunks are added in order
 *                    and the lanes reduced once at the end. Beside a stride-1 backward-input
 *                    (the fused backward) the same sum is taken the other way round, from the
 *                    padded dout that the backward-input makes anyway: no padded input copy
 *                    (wgrad_init_from_dout).
 *
 * Fused with the batchnorm and ReLU before the conv (the op table's slots, core/ops_fused.h;
 * the table stores no a = relu(bn(x)), recompute_act):
 *   forward          a made while the input is padded (pad_image_bn_relu); with chained
 *                    statistics, the sums for the next batchnorm taken in the store (EP_STATS)
 *   backward         backward-input stores g = din_a [a > 0] and batchnorm's sums (EP_BN_BWD),
 *                    a recomputed from bn_in (strided: masked and summed after the spread,
 *                    mask_sums_plane); the weight gradient reads a recomputed once per group
 *                    of images (from dout) or in its padded copy (pad_image_bn_relu); the
 *                    pair applies bn2's backward while padding conv1's dout (pad_image_bn_apply)
 * Determinism: every output is summed by one thread in a fixed order; the weight gradient
 * uses the same fixed image chunks as cpu/conv2d.c (CONV_DW_CHUNKS, a constant), added in
 * chunk order. Results do not depend on the thread count. */
#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "core/ops.h"
#include "core/util.h"
#include "cpu/cpu.h"
#include "cpu/fast/fast.h"

/* The kernels' epilogues (conv2d_direct_kern.h): the plain store, and two that also sum. */
enum { EP_STORE, EP_BN_BWD, EP_STATS };

/* The fused epilogue of a backward-input that feeds relu(batchnorm) backward, per image:
 * mask = the ReLU's output and x = batchnorm's input, both [K][plane] like the conv output
 * (mask NULL: the ReLU's output recomputed as x scale[k] + shift[k]); mean[K]; sv[K][2][VL]
 * lane sums of g and g * (x - mean), added tile by tile in a fixed order. */
typedef struct { const float *mask, *x, *mean, *scale, *shift; float *sv; } ConvBnBwd;

/* The statistics epilogue of a forward whose output feeds batchnorm, per image: x0[K] the
 * image's first value of each channel (written by its first tile), sv[K][2][VL] lane sums of
 * y - x0 and (y - x0)^2 over the stored values y, added tile by tile in a fixed order. */
typedef struct { float *x0, *sv; } ConvStats;

/* Software prefetch of the next image, spread over this one's tiles. Asked for all at once, a
 * thousand lines fill the core's line-fill buffers and the thread stalls until most have
 * arrived (perf put 5-6% of a training step's samples on those loops); asked for a slice
 * between tiles, they arrive while the tiles compute (the step 3% faster: bench/RESULTS.md,
 * 2026-12-04).
 *   prefetch_plan(p, bytes, slices)  queue [p, p + bytes), to be asked for in `slices` slices
 *   prefetch_slice()                 ask for the next slice of every queued range (the
 *                                    kernels call it after each tile or group of tiles)
 *   prefetch_reset()                 drop what is left (before planning the next image's,
 *                                    at the start of each image or group of images)
 * The queue is per thread; a prefetch is only a hint, so what is never asked for costs
 * nothing but time. */
typedef struct { const char *p; size_t left, step; } PrefetchRange;
static _Thread_local PrefetchRange pf_queue[3];
static _Thread_local int pf_count;

static void prefetch_reset(void) { pf_count = 0; }

static void prefetch_plan(const void *p, size_t bytes, int slices)
{
    if (pf_count == 3 || bytes == 0) return;
    size_t step = (bytes + (size_t)slices - 1) / (size_t)(slices > 0 ? slices : 1);
    pf_queue[pf_count++] = (PrefetchRange){p, bytes, (step + 63) & ~(size_t)63};
}

static inline void prefetch_slice(void)
{
    for (int i = 0; i < pf_count; i++) {
        PrefetchRange *r = &pf_queue[i];
        size_t n = r->step < r->left ? r->step : r->left;
        for (size_t o = 0; o < n; o += 64) __builtin_prefetch(r->p + o, 0, 2);
        r->p += n;
        r->left -= n;
    }
}

/* ---------------------------------------------------------------- the ISA variants */

#define FWD_NV 3   /* pixel vectors per forward tile (conv2d_direct_kern.h's NV) */

/* cpu/fast/vec.h: what a vector is in each ISA */
#define VEC_AVX512
#include "cpu/fast/vec.h"
#define SFX avx512
#define KB 8
#include "cpu/fast/conv2d_direct_kern.h"
#include "cpu/fast/vec_end.h"
#undef SFX
#undef KB

/* 8-wide vectors with AVX-512's 32 registers (for 8-pixel rows). */
#define VEC_AVX512Y
#include "cpu/fast/vec.h"
#define SFX avx512y
#define KB 8
#include "cpu/fast/conv2d_direct_kern.h"
#include "cpu/fast/vec_end.h"
#undef SFX
#undef KB

#define VEC_AVX2
#include "cpu/fast/vec.h"
#define SFX avx2
#define KB 4
#include "cpu/fast/conv2d_direct_kern.h"
#include "cpu/fast/vec_end.h"
#undef SFX
#undef KB

typedef void (*fwd_image_fn)(const float *, const int *, int, const float *, int, const int *,
                             const int *, const int *, int, float *, const float *, size_t,
                             const ConvBnBwd *, const ConvStats *);
typedef void (*bwdw_group_fn)(const float *, const int *, int, const float *, size_t, const int *,
                              const int *, int, float *);
/* Rows of at most 8 output pixels on AVX-512: the output channels in the vector lanes. A
 * tile is one row of 8 pixels x 32 output channels (two zmm vectors a pixel, 16
 * accumulators): per tap two weight vectors and 8 broadcast inputs, 16 FMAs at the full
 * width (the pixel-vector kernel would fill only 8 lanes of a row). The sums are turned
 * round (a scatter into rows[channel][8 pixels]) and stored by the 8-lane kernel set's
 * epilogue (fwd_store_avx512y), so its fused forms are the same code.
 *   acc[j][h][l] = sum_t wt[t][16h + l] x[voff + toff[t] + j]   (pixel j, channel 16h + l)
 * Plans, padded images and repacked weights are those of the 8-lane set with 32 channels a
 * block (Isa.kb). */
#define CV_KB 32
__attribute__((target("avx512f,avx512vl,avx2,fma")))
static void fwd_image_cv(const float *x, const int *toff, int T, const float *wt, int K, const int *voff,
                         const int *ooff, const int *n, int nvec, float *out, const float *add, size_t plane,
                         const ConvBnBwd *bn, const ConvStats *st)
{
    float rows[CV_KB * 8] __attribute__((aligned(64)));
    const __m512i idx = _mm512_setr_epi32(0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120);
    for (int v = 0; v < nvec; v++) {
        const float *xb = x + voff[v];
        for (int k0 = 0; k0 < K; k0 += CV_KB) {
            const float *w = wt + (size_t)(k0 / CV_KB) * T * CV_KB;
            __m512 a0[8], a1[8];
            #pragma GCC unroll 8
            for (int j = 0; j < 8; j++) a0[j] = a1[j] = _mm512_setzero_ps();
            for (int t = 0; t < T; t++) {
                const float *xt = xb + toff[t];
                __m512 w0 = _mm512_loadu_ps(w + (size_t)t * CV_KB), w1 = _mm512_loadu_ps(w + (size_t)t * CV_KB + 16);
                #pragma GCC unroll 8
                for (int j = 0; j < 8; j++) {
                    __m512 b = _mm512_set1_ps(xt[j]);
                    a0[j] = _mm512_fmadd_ps(b, w0, a0[j]);
                    a1[j] = _mm512_fmadd_ps(b, w1, a1[j]);
                }
            }
            #pragma GCC unroll 8
            for (int j = 0; j < 8; j++) {   /* rows[c][j] = channel c of pixel j */
                _mm512_i32scatter_ps(rows + j, idx, a0[j], 4);
                _mm512_i32scatter_ps(rows + 128 + j, idx, a1[j], 4);
            }
            for (int kb = 0; kb < CV_KB && k0 + kb < K; kb += 8) {
                __m256 acc[8][FWD_NV];
                #pragma GCC unroll 8
                for (int c = 0; c < 8; c++) acc[c][0] = _mm256_load_ps(rows + (kb + c) * 8);
                int k = k0 + kb;
                float *o = out + (size_t)k * plane;
                const float *a = add ? add + (size_t)k * plane : NULL;
                if (bn) fwd_store_avx512y(acc, 1, o, a, ooff + v, n + v, plane, K - k, EP_BN_BWD, bn, st, v == 0, k);
                else if (st) fwd_store_avx512y(acc, 1, o, a, ooff + v, n + v, plane, K - k, EP_STATS, bn, st, v == 0, k);
                else fwd_store_avx512y(acc, 1, o, a, ooff + v, n + v, plane, K - k, EP_STORE, bn, st, v == 0, k);
            }
        }
        if (v % FWD_NV == FWD_NV - 1 || v == nvec - 1) prefetch_slice();   /* as often as the others ask */
    }
}

typedef struct {
    const char *name;
    int vl, kb, kbw;   /* kb: output channels a forward tile (repacked weights); kbw: the weight gradient's */
    fwd_image_fn fwd;
    bwdw_group_fn bwdw;
} Isa;

static const Isa isa_avx512 = {"avx512", 16, 8, 8, fwd_image_avx512, bwdw_group_avx512};
static const Isa isa_avx512y = {"avx512-ymm", 8, 8, 8, fwd_image_avx512y, bwdw_group_avx512y};
static const Isa isa_avx512cv = {"avx512-cv", 8, CV_KB, 8, fwd_image_cv, bwdw_group_avx512y};
static const Isa isa_avx2 = {"avx2", 8, 4, 4, fwd_image_avx2, bwdw_group_avx2};

/* ---------------------------------------------------------------- kernel choice */

static int forced = -1;   /* tests: CPU_ISA_* or -1 for automatic */

int cpu_isa_supported(int isa)
{
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    int avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
    switch (isa) {
    case CPU_ISA_NONE: return 1;
    case CPU_ISA_AVX2: return avx2;
    case CPU_ISA_AVX512: return avx512;
    default: return 0;
    }
}

int cpu_isa_best(void)
{
    if (forced >= 0) return forced;
    static int best = -1;   /* decided once; benign race (same value) */
    if (best < 0) {
        const char *e = getenv("CONVNET_ISA");
        best = cpu_isa_supported(CPU_ISA_AVX512) ? CPU_ISA_AVX512
             : cpu_isa_supported(CPU_ISA_AVX2) ? CPU_ISA_AVX2 : CPU_ISA_NONE;
        if (e && !strcmp(e, "avx2") && best > CPU_ISA_AVX2) best = CPU_ISA_AVX2;
        if (e && !strcmp(e, "none")) best = CPU_ISA_NONE;
    }
    return best;
}

int cpu_isa_force(int isa)
{
    if (isa >= 0 && !cpu_isa_supported(isa)) return 0;
    forced = isa;
    return 1;
}

const char *cpu_isa_name(int isa)
{
    return isa == CPU_ISA_AVX512 ? "avx512" : isa == CPU_ISA_AVX2 ? "avx2" : "none";
}

/* Rows of 8 pixels or fewer on AVX-512: the channel-vector kernel where it pays (1), or 8-lane
 * pixel vectors always (0; $CONVNET_CV=0 at the start, or the tests) */
static int cv_rows = -1;

void conv2d_direct_set_cv(int on) { cv_rows = on < 0 ? -1 : on != 0; }

/* Kernel set for output rows of Q pixels: 16-wide when a row fills them, else 8-wide. */
static const Isa *pick(int Q)
{
    switch (cpu_isa_best()) {
    case CPU_ISA_AVX512: return Q > 8 ? &isa_avx512 : &isa_avx512y;
    case CPU_ISA_AVX2: return &isa_avx2;
    default: return NULL;
    }
}

/* The kernel set for a forward kernel call over rows of Q pixels into K channels with RS taps
 * a channel: pick's, but the channel-vector kernel for rows of 8 or fewer on AVX-512 where its
 * 32-channel tiles are full (K a multiple of 32) and a tap loop long enough to pay for turning
 * the sums round (not 1x1). Measured (bench/conv, 2 threads): 8x8 32->32 3x3 forward 0.69 ->
 * 0.48 ms; a 1x1 24->32 slower (0.17 -> 0.21), a backward-input into 24 channels slower. */
static const Isa *pick_fwd(int Q, int K, int RS)
{
    if (cv_rows < 0) {
        const char *e = getenv("CONVNET_CV");
        cv_rows = !(e && !strcmp(e, "0"));
    }
    const Isa *isa = pick(Q);
    return isa == &isa_avx512y && cv_rows && K % CV_KB == 0 && RS > 1 ? &isa_avx512cv : isa;
}

const char *conv2d_direct_kernel_name(int Q, int K, int RS)
{
    const Isa *isa = pick_fwd(Q, K, RS);
    return isa ? isa->name : "reference";
}

/* ---------------------------------------------------------------- scratch */

/* Per-thread buffers that grow once and are reused (no allocation in steady state). */
typedef struct { void *p; size_t cap; } Scratch;
static _Thread_local Scratch s_x, s_x2, s_d, s_all, s_plan, s_plan2, s_w, s_bn, s_wtab, s_dp, s_act, s_st, s_actall, s_dc1, s_inT;

static void *scratch(Scratch *s, size_t bytes)
{
    if (bytes > s->cap) {
        free(s->p);
        s->p = NULL;
        if (posix_memalign(&s->p, 64, bytes) != 0) die("out of memory (conv2d_direct scratch)");
        s->cap = bytes;
    }
    return s->p;
}

/* dst[i] = the sum of the VL float lanes of sv[i][...] in lane order, in double, i < n: how
 * the epilogues' per-channel lane sums become one image's sums */
static void lanes_to_double(double *dst, const float *sv, int n, int VL)
{
    for (int i = 0; i < n; i++) {
        double t = 0;
        for (int l = 0; l < VL; l++) t += sv[(size_t)i * VL + l];
        dst[i] = t;
    }
}

/* ---------------------------------------------------------------- plan */

typedef struct {
    const Isa *isa;
    int C, H, W, K, R, S, st, padh, padw, P, Q;
    int QV, nvec, Hp, Wph, T;
    size_t xfloats;                 /* floats of one padded image */
    int *toff, *voff, *ooff, *nl;   /* taps; per pixel vector: input/output offset, lanes */
} Plan;

static int ceil_div(int a, int b) { return (a + b - 1) / b; }

static void plan_make(Plan *pl, Scratch *tabs, const Isa *isa, int C, int H, int W, int K, int R,
                      int S, int st, int padh, int padw)
{
    pl->isa = isa;
    pl->C = C; pl->H = H; pl->W = W; pl->K = K; pl->R = R; pl->S = S;
    pl->st = st; pl->padh = padh; pl->padw = padw;
    pl->P = (H + 2 * padh - R) / st + 1;
    pl->Q = (W + 2 * padw - S) / st + 1;
    int VLn = isa->vl;
    pl->QV = ceil_div(pl->Q, VLn);
    pl->nvec = pl->P * pl->QV;
    pl->Hp = H + 2 * padh;
    int need = pl->QV * VLn + (S - 1) / st, have = ceil_div(W + 2 * padw, st);
    pl->Wph = need > have ? need : have;
    pl->T = C * R * S;
    pl->xfloats = (size_t)C * pl->Hp * st * pl->Wph;
    int *tab = scratch(tabs, sizeof(int) * ((size_t)pl->T + 3 * (size_t)pl->nvec));
    pl->toff = tab;
    pl->voff = tab + pl->T;
    pl->ooff = pl->voff + pl->nvec;
    pl->nl = pl->ooff + pl->nvec;
    for (int c = 0; c < C; c++)
        for (int r = 0; r < R; r++)
            for (int s = 0; s < S; s++)
                pl->toff[(c * R + r) * S + s] = ((c * pl->Hp + r) * st + s % st) * pl->Wph + s / st;
    for (int v = 0; v < pl->nvec; v++) {
        int p = v / pl->QV, q0 = (v % pl->QV) * VLn;
        pl->voff[v] = p * st * st * pl->Wph + q0;
        pl->ooff[v] = p * pl->Q + q0;
        pl->nl[v] = pl->Q - q0 < VLn ? pl->Q - q0 : VLn;
    }
}

/* Stride 1's padded layout, channel by channel (base: channel c's first padded row): the zero
 * rows above and below the image, and row h's zero margins, returning where its W values go.
 * pad_image's and its batchnorm-applying twins' common frame. */
static inline void pad_frame_rows(const Plan *pl, float *base)
{
    memset(base, 0, sizeof(float) * (size_t)pl->padh * pl->Wph);
    int below = pl->Hp - pl->H - pl->padh;
    memset(base + (size_t)(pl->H + pl->padh) * pl->Wph, 0, sizeof(float) * (size_t)below * pl->Wph);
}

static inline float *pad_frame_row(const Plan *pl, float *base, int h)
{
    float *row = base + (size_t)(h + pl->padh) * pl->Wph;
    for (int j = 0; j < pl->padw; j++) row[j] = 0;
    #pragma omp simd
    for (int j = pl->padw + pl->W; j < pl->Wph; j++) row[j] = 0;
    return row + pl->padw;
}

/* Zero-padded, phase-split copy of one image [C,H,W]. Only the border is zeroed; rows are
 * copied with plain loops, vectorized for the CPU's ISA (target_clones) and kept as loops
 * (a memcpy call per 32-float row costs more than the copy). */
__attribute__((target_clones("avx512f", "avx2", "default"), optimize("no-tree-loop-distribute-patterns")))
static void pad_image(const Plan *pl, float *restrict xp, const float *restrict img)
{
    int st = pl->st, Wph = pl->Wph, rowlen = st * Wph, W = pl->W, padw = pl->padw;
    for (int c = 0; c < pl->C; c++) {
        float *base = xp + (size_t)c * pl->Hp * rowlen;
        memset(base, 0, sizeof(float) * (size_t)pl->padh * rowlen);
        for (int h = 0; h < pl->H; h++) {
            const float *src = img + ((size_t)c * pl->H + h) * W;
            float *row = base + (size_t)(h + pl->padh) * rowlen;
            if (st == 1) {
                float *dst = pad_frame_row(pl, base, h);
                #pragma omp simd
                for (int w = 0; w < W; w++) dst[w] = src[w];
                continue;
            }
            if ((h + pl->padh) % st >= pl->R) continue;   /* a row no tap reads (R < stride) */
            int phases = pl->S < st ? pl->S : st;          /* phases no tap reads stay as they are */
            for (int f = 0; f < phases; f++) {             /* phase f: padded columns f, f+st, ... */
                int w0 = f - padw, j0 = 0;                 /* first column of phase f inside [0, W) */
                while (w0 < 0) { w0 += st; j0++; }
                int cnt = w0 < W ? (W - w0 + st - 1) / st : 0;
                float *dst = row + (size_t)f * Wph;
                const float *sf = src + w0;
                for (int j = 0; j < j0; j++) dst[j] = 0;
                if (st == 2) {
                    #pragma omp simd
                    for (int j = 0; j < cnt; j++) dst[j0 + j] = sf[2 * j];
                } else {
                    for (int j = 0; j < cnt; j++) dst[j0 + j] = sf[j * st];
                }
                #pragma omp simd
                for (int j = j0 + cnt; j < Wph; j++) dst[j] = 0;
            }
        }
        int below = pl->Hp - pl->H - pl->padh;
        memset(base + (size_t)(pl->H + pl->padh) * rowlen, 0, sizeof(float) * (size_t)below * rowlen);
    }
}

/* a = relu(x * scale[c] + shift[c]) for one image [C,H,W] (the same arithmetic as
 * cpu/fast/batchnorm_relu.c's apply, so the same bits) */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void bn_relu_image(float *restrict a, const float *restrict x, int C, int HW,
                          const float *scale, const float *shift)
{
    for (int c = 0; c < C; c++) {
        float sc = scale[c], sh = shift[c];
        const float *xc = x + (size_t)c * HW;
        float *ac = a + (size_t)c * HW;
        #pragma omp simd
        for (int i = 0; i < HW; i++) { float v = xc[i] * sc + sh; ac[i] = v > 0 ? v : 0; }
    }
}

/* pad_image of a = relu(img * scale + shift), a also written to a_img ([C,H,W]) unless a_img
 * is NULL. At stride 1 in one pass (each row transformed once, stored once or twice);
 * otherwise a first (into a per-thread image when a_img is NULL), then its copy. */
__attribute__((target_clones("avx512f", "avx2", "default"), optimize("no-tree-loop-distribute-patterns")))
static void pad_image_bn_relu(const Plan *pl, float *restrict xp, float *restrict a_img,
                              const float *restrict img, const float *scale, const float *shift)
{
    if (pl->st != 1) {
        if (!a_img) a_img = scratch(&s_act, sizeof(float) * (size_t)pl->C * pl->H * pl->W);
        bn_relu_image(a_img, img, pl->C, pl->H * pl->W, scale, shift);
        pad_image(pl, xp, a_img);
        return;
    }
    int W = pl->W;
    for (int c = 0; c < pl->C; c++) {
        float *base = xp + (size_t)c * pl->Hp * pl->Wph;
        float sc = scale[c], sh = shift[c];
        pad_frame_rows(pl, base);
        for (int h = 0; h < pl->H; h++) {
            const float *src = img + ((size_t)c * pl->H + h) * W;
            float *row = pad_frame_row(pl, base, h);
            if (a_img) {
                float *arow = a_img + ((size_t)c * pl->H + h) * W;
                #pragma omp simd
                for (int w = 0; w < W; w++) {
                    float v = src[w] * sc + sh;
                    v = v > 0 ? v : 0;
                    arow[w] = v;
                    row[w] = v;
                }
            } else {
                #pragma omp simd
                for (int w = 0; w < W; w++) {
                    float v = src[w] * sc + sh;
                    row[w] = v > 0 ? v : 0;
                }
            }
        }
    }
}

/* A gradient given as batchnorm's backward not yet applied (conv2d_direct_backward_relu_bn_pair):
 * d = k1 g - k0 - (x - mean) k2 per channel c, with k = k[c][3], mean = mean[c], g and x
 * [C][H][W] an image (g masked by the ReLU already). */
typedef struct { const float *g, *x, *mean, *k; } BnApplyIn;

/* pad_image (stride 1) of d for one image: the arithmetic of cpu/fast/batchnorm_relu.c's
 * apply (plane_bwd_apply), so the same bits as applying first and copying after */
__attribute__((target_clones("avx512f", "avx2", "default"), optimize("no-tree-loop-distribute-patterns")))
static void pad_image_bn_apply(const Plan *pl, float *restrict xp, const float *restrict g,
                               const float *restrict x, const float *k, const float *mean)
{
    int W = pl->W;
    for (int c = 0; c < pl->C; c++) {
        float *base = xp + (size_t)c * pl->Hp * pl->Wph;
        float k0 = k[3 * c], k1 = k[3 * c + 1], k2 = k[3 * c + 2], m = mean[c];
        pad_frame_rows(pl, base);
        for (int h = 0; h < pl->H; h++) {
            const float *gr = g + ((size_t)c * pl->H + h) * W, *xr = x + ((size_t)c * pl->H + h) * W;
            float *row = pad_frame_row(pl, base, h);
            #pragma omp simd
            for (int w = 0; w < W; w++) row[w] = k1 * gr[w] - k0 - (xr[w] - m) * k2;
        }
    }
}

/* weight [K][C*R*S] (row k, tap t) -> wt[K/KB][T][KB], zero rows past K. */
static float *repack_weights(const Plan *pl, const float *weight)
{
    int kb = pl->isa->kb, blocks = ceil_div(pl->K, kb), T = pl->T;
    float *wt = scratch(&s_w, sizeof(float) * (size_t)blocks * T * kb);
    for (int b = 0; b < blocks; b++)
        for (int t = 0; t < T; t++)
            for (int j = 0; j < kb; j++) {
                int k = b * kb + j;
                wt[((size_t)b * T + t) * kb + j] = k < pl->K ? weight[(size_t)k * T + t] : 0;
            }
    return wt;
}

/* out[n] (+ add[n]) = conv(in[n]) for every image, images split across threads. With scale
 * != NULL the conv's input is a = relu(in * scale + shift) (per channel), written to a unless a
 * is NULL. With part != NULL the statistics of out (after the add) for batchnorm: per image n
 * and channel k, part[n][k] = the sums of y - x0 and (y - x0)^2 (lanes added in order, in
 * double) with x0 = x0n[n][k], the image's first value of the channel. */
static void run_forward_bn(const Plan *pl, const float *wt, float *out, const float *in,
                           const float *add, int N, float *a, const float *scale, const float *shift,
                           double *part, float *x0n)
{
    size_t in_img = (size_t)pl->C * pl->H * pl->W, out_img = (size_t)pl->K * pl->P * pl->Q;
    int K = pl->K, VLn = pl->isa->vl;
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *xp = scratch(&s_x, sizeof(float) * pl->xfloats);
        int groups = ceil_div(pl->nvec, FWD_NV);             /* the kernel's prefetch_slice calls */
        prefetch_reset();
        if (n + 1 < N) prefetch_plan(in + (n + 1) * in_img, sizeof(float) * in_img, groups);
        if (add && n + 1 < N) prefetch_plan(add + (n + 1) * out_img, sizeof(float) * out_img, groups);
        if (scale) pad_image_bn_relu(pl, xp, a ? a + n * in_img : NULL, in + n * in_img, scale, shift);
        else pad_image(pl, xp, in + n * in_img);
        ConvStats st = {0};
        if (part) {
            st.sv = scratch(&s_st, sizeof(float) * 2 * (size_t)K * VLn);
            memset(st.sv, 0, sizeof(float) * 2 * (size_t)K * VLn);
            st.x0 = x0n + (size_t)n * K;
        }
        pl->isa->fwd(xp, pl->toff, pl->T, wt, K, pl->voff, pl->ooff, pl->nl, pl->nvec,
                     out + n * out_img, add ? add + n * out_img : NULL, (size_t)pl->P * pl->Q, NULL,
                     part ? &st : NULL);
        if (part) lanes_to_double(part + (size_t)n * K * 2, st.sv, 2 * K, VLn);
    }
}

static void run_forward(const Plan *pl, const float *wt, float *out, const float *in,
                        const float *add, int N)
{
    run_forward_bn(pl, wt, out, in, add, N, NULL, NULL, NULL, NULL, NULL);
}

/* ---------------------------------------------------------------- operators */

void conv2d_direct_forward_add(float *out, const float *in, const float *weight, const float *add,
                               int N, int C, int H, int W, int K, int R, int S,
                               int stride, int pad, float *workspace)
{
    const Isa *isa = pick_fwd(conv_out_size(W, S, stride, pad), K, R * S);
    if (!isa) {
        conv2d_forward(out, in, weight, N, C, H, W, K, R, S, stride, pad, workspace);
        if (add) add_inplace(out, add, (size_t)N * K * conv_out_size(H, R, stride, pad) * conv_out_size(W, S, stride, pad));
        return;
    }
    Plan pl;
    plan_make(&pl, &s_plan, isa, C, H, W, K, R, S, stride, pad, pad);
    run_forward(&pl, repack_weights(&pl, weight), out, in, add, N);
}

void conv2d_direct_forward(float *out, const float *in, const float *weight,
                           int N, int C, int H, int W, int K, int R, int S,
                           int stride, int pad, float *workspace)
{
    conv2d_direct_forward_add(out, in, weight, NULL, N, C, H, W, K, R, S, stride, pad, workspace);
}

/* Backward-input of a strided convolution, one output phase at a time. The input pixels
 * (h, w) = (i*st + a, j*st + b) of phase (a, b) only meet the taps with (a + pad - r) and
 * (b + pad - s) divisible by st, at dout[k, i + dr, j + ds] with dr = (a + pad - r)/st and
 * ds = (b + pad - s)/st:
 *   din[c, i*st+a, j*st+b] = sum_{k, valid r, s} w[k,c,r,s] * dout[k, i + dr, j + ds]
 * a stride-1 correlation of zero-padded dout with a sub-kernel, run by the forward kernels
 * into a per-phase buffer and then spread to every st-th pixel of din (stride 2: the four
 * phases kept and each row of din written once, two phases' rows interleaved; measured
 * 16->24 3x3 backward-input 1.60 -> 0.99 ms, bench/conv, 2 threads). */
typedef struct { int T, Ha, Wb, nvec; int *toff, *voff, *ooff, *nl; float *wt; } Phase;

/* The epilogue of a strided backward-input that feeds relu(batchnorm) backward (as ConvBnBwd,
 * for the whole batch): once an image is spread to din, each value becomes g = value
 * [relu_out > 0] (relu_out from mask, or recomputed as x scale + shift when mask is NULL), and
 * sums[n][c] gets the image's sums of g and g * (x - mean) (mask_sums_plane). */
typedef struct { const float *mask, *x, *mean, *scale, *shift; double *sums; } StridedBnBwd;

/* g = g [r > 0], r = mask, or x scale + shift when mask is NULL (the ReLU's output), over one
 * plane in place; sn[0], sn[1] = the sums of g and g (x - mean) (vector lanes, then double) */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void mask_sums_plane(float *g, const float *mask, const float *x, int HW, float scale, float shift,
                            float mean, double *sn)
{
    float s1 = 0, s2 = 0;
    if (mask) {
        #pragma omp simd reduction(+ : s1, s2)
        for (int i = 0; i < HW; i++) {
            float v = mask[i] > 0 ? g[i] : 0;
            g[i] = v;
            s1 += v;
            s2 += v * (x[i] - mean);
        }
    } else {
        #pragma omp simd reduction(+ : s1, s2)
        for (int i = 0; i < HW; i++) {
            float v = x[i] * scale + shift > 0 ? g[i] : 0;
            g[i] = v;
            s1 += v;
            s2 += v * (x[i] - mean);
        }
    }
    sn[0] = s1;
    sn[1] = s2;
}

/* dst[2j] = e0[j], dst[2j+1] = e1[j] for the W values of a row (NULL: zeros) */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void interleave_row(float *restrict dst, const float *restrict e0, const float *restrict e1, int W)
{
    int half = W / 2;
    if (e0 && e1) {
        #pragma omp simd
        for (int j = 0; j < half; j++) { dst[2 * j] = e0[j]; dst[2 * j + 1] = e1[j]; }
    } else if (e0) {
        #pragma omp simd
        for (int j = 0; j < half; j++) { dst[2 * j] = e0[j]; dst[2 * j + 1] = 0; }
    } else if (e1) {
        #pragma omp simd
        for (int j = 0; j < half; j++) { dst[2 * j] = 0; dst[2 * j + 1] = e1[j]; }
    } else {
        memset(dst, 0, sizeof(float) * (size_t)W);
    }
    if (W % 2) dst[W - 1] = e0 ? e0[half] : 0;
}

static void backward_input_strided(const Isa *isa, float *din, const float *dout, const float *weight,
                                   int N, int C, int H, int W, int K, int R, int S, int st, int pad,
                                   const StridedBnBwd *bn)
{
    int P = conv_out_size(H, R, st, pad), Q = conv_out_size(W, S, st, pad);
    int VLn = isa->vl, KBn = isa->kb, cblocks = ceil_div(C, KBn);
    int padT = (R - 1) / st + 1, padL = (S - 1) / st + 1;      /* room for the smallest dr, ds */
    int Hamax = ceil_div(H, st), Wbmax = ceil_div(W, st), QVb = ceil_div(Wbmax, VLn);
    int drmax = (st - 1 + pad) / st;
    int Hq = padT + (P > Hamax + drmax + 1 ? P : Hamax + drmax + 1);
    int Wq = padL + (Q > QVb * VLn + drmax + 1 ? Q : QVb * VLn + drmax + 1);
    size_t dpad = (size_t)K * Hq * Wq, ob_plane = (size_t)Hamax * QVb * VLn;
    int nph = st * st;
    Phase *ph = xcalloc(nph, sizeof(Phase));
    for (int a = 0; a < st; a++)
        for (int b = 0; b < st; b++) {
            Phase *f = &ph[a * st + b];
            f->Ha = ceil_div(H - a, st);
            f->Wb = ceil_div(W - b, st);
            f->nvec = f->Ha * QVb;
            int nr = 0, ns = 0;
            for (int r = 0; r < R; r++) nr += (a + pad - r) % st == 0;
            for (int s2 = 0; s2 < S; s2++) ns += (b + pad - s2) % st == 0;
            f->T = K * nr * ns;
            f->toff = xmalloc(sizeof(int) * ((size_t)f->T + 3 * (size_t)f->nvec + 1));
            f->voff = f->toff + f->T;
            f->ooff = f->voff + f->nvec;
            f->nl = f->ooff + f->nvec;
            f->wt = xmalloc(sizeof(float) * ((size_t)cblocks * KBn * f->T + 1));
            int t = 0;
            for (int k = 0; k < K; k++)
                for (int r = 0; r < R; r++) {
                    if ((a + pad - r) % st) continue;
                    for (int s2 = 0; s2 < S; s2++) {
                        if ((b + pad - s2) % st) continue;
                        int dr = (a + pad - r) / st, ds = (b + pad - s2) / st;
                        f->toff[t] = (k * Hq + dr + padT) * Wq + ds + padL;
                        for (int cb = 0; cb < cblocks; cb++)
                            for (int j = 0; j < KBn; j++) {
                                int c = cb * KBn + j;
                                f->wt[((size_t)cb * f->T + t) * KBn + j] =
                                    c < C ? weight[(((size_t)k * C + c) * R + r) * S + s2] : 0;
                            }
                        t++;
                    }
                }
            for (int v = 0; v < f->nvec; v++) {
                int i = v / QVb, j0 = (v % QVb) * VLn;
                f->voff[v] = i * Wq + j0;
                f->ooff[v] = i * QVb * VLn + j0;
                f->nl[v] = VLn;                      /* lanes past Wb land in the buffer's margin */
            }
        }
    int zero_phases = 0, groups = 0;   /* groups: the forward kernel's tile groups an image */
    for (int i = 0; i < nph; i++) {
        zero_phases |= ph[i].T == 0;
        if (ph[i].T) groups += ceil_div(ph[i].nvec, FWD_NV);
    }
    int keep = st == 2;   /* stride 2: every phase kept, then their rows interleaved into din */
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *xp = scratch(&s_x, sizeof(float) * (dpad + (size_t)C * ob_plane * (keep ? nph : 1)));
        const float *d = dout + (size_t)n * K * P * Q;
        prefetch_reset();
        if (n + 1 < N) prefetch_plan(d + (size_t)K * P * Q, sizeof(float) * K * P * Q, groups);
        memset(xp, 0, sizeof(float) * dpad);
        for (int k = 0; k < K; k++)
            for (int p = 0; p < P; p++)
                memcpy(xp + ((size_t)k * Hq + p + padT) * Wq + padL, d + ((size_t)k * P + p) * Q, sizeof(float) * Q);
        float *dimg = din + (size_t)n * C * H * W;
        if (zero_phases && !keep) memset(dimg, 0, sizeof(float) * C * H * W);   /* pixels no tap reaches */
        for (int a = 0; a < st; a++)
            for (int b = 0; b < st; b++) {
                const Phase *f = &ph[a * st + b];
                if (f->T == 0) continue;
                float *ob = xp + dpad + (keep ? (size_t)(a * st + b) * C * ob_plane : 0);
                isa->fwd(xp, f->toff, f->T, f->wt, C, f->voff, f->ooff, f->nl, f->nvec, ob, NULL, ob_plane, NULL, NULL);
                if (keep) continue;
                for (int c = 0; c < C; c++)
                    for (int i = 0; i < f->Ha; i++) {
                        const float *src = ob + c * ob_plane + (size_t)i * QVb * VLn;
                        float *dst = dimg + ((size_t)c * H + i * st + a) * W + b;
                        for (int j = 0; j < f->Wb; j++) dst[j * st] = src[j];
                    }
            }
        if (keep)   /* din row h = the row h/2 of phases (h%2, 0) and (h%2, 1), interleaved */
            for (int c = 0; c < C; c++)
                for (int h = 0; h < H; h++) {
                    int a = h % 2;
                    size_t at = (size_t)c * ob_plane + (size_t)(h / 2) * QVb * VLn;
                    const float *e0 = ph[a * 2].T ? xp + dpad + (size_t)(a * 2) * C * ob_plane + at : NULL;
                    const float *e1 = ph[a * 2 + 1].T ? xp + dpad + (size_t)(a * 2 + 1) * C * ob_plane + at : NULL;
                    interleave_row(dimg + ((size_t)c * H + h) * W, e0, e1, W);
                }
        if (bn)   /* the image's planes, just written: masked in place and summed */
            for (int c = 0; c < C; c++) {
                size_t at = ((size_t)n * C + c) * H * W;
                double *sn = bn->sums + ((size_t)n * C + c) * 2;
                mask_sums_plane(dimg + (size_t)c * H * W, bn->mask ? bn->mask + at : NULL, bn->x + at, H * W,
                                bn->scale ? bn->scale[c] : 0, bn->shift ? bn->shift[c] : 0, bn->mean[c], sn);
            }
    }
    for (int i = 0; i < nph; i++) { free(ph[i].toff); free(ph[i].wt); }
    free(ph);
}

/* a = relu(in scale + shift) for every image (the readable path's stored activation) */
static float *bn_relu_all(float *a, const float *in, int N, int C, int HW, const float *scale, const float *shift)
{
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        bn_relu_image(a + (size_t)n * C * HW, in + (size_t)n * C * HW, C, HW, scale, shift);
    return a;
}

void batchnorm_relu_conv2d_direct_forward(float *out, float *a, const float *in, const float *weight,
        const float *add, int N, int C, int H, int W, int K, int R, int S, int stride, int pad,
        float *workspace, float *save_mean, float *save_invstd, float *running_mean,
        float *running_var, const float *gamma, const float *beta, float momentum, float eps,
        int train)
{
    const Isa *isa = pick_fwd(conv_out_size(W, S, stride, pad), K, R * S);
    float *coef = scratch(&s_bn, sizeof(float) * 2 * (size_t)C);
    if (train) batchnorm_fast_train_coeffs(coef, coef + C, save_mean, save_invstd, running_mean, running_var,
                                           in, gamma, beta, N, C, H * W, momentum, eps);
    else batchnorm_fast_eval_coeffs(coef, coef + C, gamma, beta, running_mean, running_var, C, eps);
    /* a not stored: the backward recomputes it from the saved statistics, so the forward
     * applies the same coefficients (fast.h: batchnorm_scale_shift) */
    if (train && !a) batchnorm_scale_shift(coef, coef + C, gamma, beta, save_mean, save_invstd, C);
    if (!isa) {
        float *act = a ? a : scratch(&s_actall, sizeof(float) * (size_t)N * C * H * W);
        bn_relu_all(act, in, N, C, H * W, coef, coef + C);
        conv2d_direct_forward_add(out, act, weight, add, N, C, H, W, K, R, S, stride, pad, workspace);
        return;
    }
    if (winograd_fast_chosen(C, H, W, K, R, S, stride, pad)) {   /* fewer multiplications (winograd.c) */
        winograd_fast_forward_bn(out, a, in, weight, add, N, C, H, W, K, coef, coef + C);
        return;
    }
    Plan pl;
    plan_make(&pl, &s_plan, isa, C, H, W, K, R, S, stride, pad, pad);
    run_forward_bn(&pl, repack_weights(&pl, weight), out, in, add, N, a, coef, coef + C, NULL, NULL);
}

void batchnorm_relu_conv2d_direct_forward_chained(float *out, const float *in, const float *weight,
        const float *add, int N, int C, int H, int W, int K, int R, int S, int stride, int pad,
        const BnRefs *bn, int in_ready, const BnRefs *next, int n_next)
{
    int P = conv_out_size(H, R, stride, pad), Q = conv_out_size(W, S, stride, pad);
    const Isa *isa = pick_fwd(Q, K, R * S);
    float *coef = NULL;
    if (bn) {   /* in's statistics (unless made by its producer), then the coefficients from them */
        coef = scratch(&s_bn, sizeof(float) * 2 * (size_t)C);
        if (!in_ready)
            batchnorm_fast_train_coeffs(coef, coef + C, bn->save_mean, bn->save_invstd, bn->running_mean,
                                        bn->running_var, in, bn->gamma, bn->beta, N, C, H * W, bn->momentum, bn->eps);
        batchnorm_scale_shift(coef, coef + C, bn->gamma, bn->beta, bn->save_mean, bn->save_invstd, C);
    }
    double *part = NULL;
    float *x0n = NULL;
    if (!isa || (bn && winograd_fast_chosen(C, H, W, K, R, S, stride, pad))) {
        /* no statistics epilogue on these paths: the convolution, then a statistics pass */
        if (!isa) {
            const float *act = bn ? bn_relu_all(scratch(&s_actall, sizeof(float) * (size_t)N * C * H * W), in, N, C,
                                                H * W, coef, coef + C) : in;
            float *ws = xmalloc(sizeof(float) * (conv2d_workspace_floats(N, C, H, W, K, R, S, stride, pad) + 1));
            conv2d_direct_forward_add(out, act, weight, add, N, C, H, W, K, R, S, stride, pad, ws);
            free(ws);
        } else {
            winograd_fast_forward_bn(out, NULL, in, weight, add, N, C, H, W, K, coef, coef + C);
        }
    } else {
        Plan pl;
        plan_make(&pl, &s_plan, isa, C, H, W, K, R, S, stride, pad, pad);
        if (n_next > 0) {
            part = xmalloc(sizeof(double) * 2 * (size_t)N * K);
            x0n = xmalloc(sizeof(float) * (size_t)N * K);
        }
        run_forward_bn(&pl, repack_weights(&pl, weight), out, in, add, N, NULL, coef, coef ? coef + C : NULL,
                       part, x0n);
    }
    float *tmp = n_next > 0 && !part ? xmalloc(sizeof(float) * 2 * (size_t)K) : NULL;
    for (int j = 0; j < n_next; j++) {
        const BnRefs *b = &next[j];
        if (part)
            batchnorm_fast_stats_from_sums(b->save_mean, b->save_invstd, b->running_mean, b->running_var, part, x0n,
                                           b->gamma, b->beta, N, K, P * Q, b->momentum, b->eps);
        else
            batchnorm_fast_train_coeffs(tmp, tmp + K, b->save_mean, b->save_invstd, b->running_mean, b->running_var,
                                        out, b->gamma, b->beta, N, K, P * Q, b->momentum, b->eps);
    }
    free(tmp);
    free(part);
    free(x0n);
}

/* The stride-1 backward-input as a forward conv of dout ([K,P,Q] per image, padded by R-1-pad
 * and S-1-pad) with the flipped, transposed kernel wf[c][k][r][s] = w[k][c][R-1-r][S-1-s]:
 * fills *pl and returns the repacked weights. */
static const float *plan_backward_input(Plan *pl, const Isa *isa, const float *weight, int C,
                                        int K, int P, int Q, int R, int S, int pad)
{
    float *wf = scratch(&s_d, sizeof(float) * (size_t)K * C * R * S);
    for (int k = 0; k < K; k++)
        for (int c = 0; c < C; c++)
            for (int r = 0; r < R; r++)
                for (int s = 0; s < S; s++)
                    wf[(((size_t)c * K + k) * R + r) * S + s] =
                        weight[(((size_t)k * C + c) * R + (R - 1 - r)) * S + (S - 1 - s)];
    plan_make(pl, &s_plan, isa, K, P, Q, C, R, S, 1, R - 1 - pad, S - 1 - pad);
    return repack_weights(pl, wf);
}

void conv2d_direct_backward_input(float *din, const float *dout, const float *weight,
                                  int N, int C, int H, int W, int K, int R, int S,
                                  int stride, int pad, float *workspace)
{
    int P = conv_out_size(H, R, stride, pad), Q = conv_out_size(W, S, stride, pad);
    const Isa *isa = pick_fwd(stride == 1 ? W : ceil_div(W, stride), C, R * S);
    if (!isa || pad > R - 1 || pad > S - 1) {
        conv2d_backward_input(din, dout, weight, N, C, H, W, K, R, S, stride, pad, workspace);
        return;
    }
    if (stride > 1) {
        backward_input_strided(isa, din, dout, weight, N, C, H, W, K, R, S, stride, pad, NULL);
        return;
    }
    Plan pl;
    run_forward(&pl, plan_backward_input(&pl, isa, weight, C, K, P, Q, R, S, pad), din, dout, NULL, N);
}

/* ---------------------------------------------------------------- weight gradient */

/* One call's weight-gradient state: the plan over the padded image the tiles shift along,
 * pixel-vector tables for G images at a time (voff into the padded images, doff into the
 * operand read in place), and every chunk's lane accumulators (all[chunk][tile][KB][3][VL]).
 * Normally the padded image is the input and the in-place operand dout (KB output channels a
 * tile); with from_dout the two exchange roles: pl is the backward-input's plan over the padded
 * dout, and dout/dplane/dimg/doff/inplace describe `in` (KB input channels a tile). */
typedef struct {
    Plan pl;
    const Isa *isa;
    const float *in, *dout;
    const float *bn_in, *scale, *shift;   /* in == NULL: in = relu(bn_in scale + shift) */
    int N, C, H, W, K, R, S, P, Q, stride;
    int VLn, KBn, kblocks, SG, inplace, G, chunks;
    int from_dout;                  /* 1: the form of wgrad_init_from_dout (see there) */
    int cv;                         /* 1 (with from_dout): the channel-vector form (wgrad_use_cv) */
    size_t dplane, dimg, tile, nacc;
    int *voff, *doff;
    float *all;
} Wgrad;

/* The sizes both forms share, once pl, dimg, kblocks and SG are set: the image chunks, the
 * group size G, room for the pixel-vector tables (filled by the caller), and the chunks'
 * accumulators for tiles [kblocks][inner][R][SG] (inner: C, or K for from_dout). */
static void wgrad_size(Wgrad *w, int inner)
{
    const Plan *pl = &w->pl;
    w->chunks = w->N < CONV_DW_CHUNKS ? w->N : CONV_DW_CHUNKS;
    int maxchunk = ceil_div(w->N, w->chunks);
    /* Small images are taken G at a time, so one pass of a register tile runs over the pixels
     * of G images (the tile's accumulators are loaded and stored once per group): G images'
     * padded image and in-place operand stay within ~256 KB of L2. */
    int G = (int)((256 * 1024 / sizeof(float)) / (pl->xfloats + w->dimg));
    w->G = G < 1 ? 1 : G > maxchunk ? maxchunk : G;
    w->voff = scratch(&s_wtab, sizeof(int) * 2 * (size_t)w->G * pl->nvec);
    w->doff = w->voff + (size_t)w->G * pl->nvec;
    w->tile = (size_t)w->KBn * 3 * w->VLn;
    w->nacc = (size_t)w->kblocks * inner * w->R * w->SG * w->tile;
    w->all = scratch(&s_all, sizeof(float) * w->nacc * w->chunks);
}

static void wgrad_init(Wgrad *w, const Isa *isa, const float *dout, const float *in, int N, int C,
                       int H, int W, int K, int R, int S, int stride, int pad)
{
    memset(w, 0, sizeof *w);
    w->isa = isa; w->in = in; w->dout = dout;
    w->N = N; w->C = C; w->H = H; w->W = W; w->K = K; w->R = R; w->S = S; w->stride = stride;
    w->P = conv_out_size(H, R, stride, pad);
    w->Q = conv_out_size(W, S, stride, pad);
    plan_make(&w->pl, &s_plan2, isa, C, H, W, K, R, S, stride, pad, pad);
    const Plan *pl = &w->pl;
    int P = w->P, Q = w->Q, PQ = P * Q;
    w->VLn = isa->vl; w->KBn = isa->kbw;
    w->kblocks = ceil_div(K, w->KBn);
    w->SG = ceil_div(S, 3);
    /* dout is read in place when its rows fill whole vectors and K whole channel blocks;
     * otherwise each image is copied to [kblocks*KB][P][QV*VL] with zeros around it. */
    w->inplace = Q % w->VLn == 0 && K % w->KBn == 0;
    w->dplane = w->inplace ? (size_t)PQ : (size_t)P * pl->QV * w->VLn;
    w->dimg = w->inplace ? (size_t)K * PQ : (size_t)w->kblocks * w->KBn * w->dplane;
    wgrad_size(w, C);
    for (int g = 0; g < w->G; g++)
        for (int v = 0; v < pl->nvec; v++) {
            int p = v / pl->QV, q0 = (v % pl->QV) * w->VLn;
            w->voff[g * pl->nvec + v] = (int)(g * pl->xfloats) + pl->voff[v];
            w->doff[g * pl->nvec + v] = (int)(g * w->dimg) + (w->inplace ? p * Q + q0 : p * pl->QV * w->VLn + q0);
        }
}

/* Images [n0, n1) of chunk ch (n1 - n0 <= G, in the chunk's order) into its accumulators. */
static void wgrad_images(const Wgrad *w, int ch, int n0, int n1)
{
    const Plan *pl = &w->pl;
    int C = w->C, K = w->K, P = w->P, Q = w->Q, PQ = P * Q, g = n1 - n0, KBn = w->KBn;
    size_t img = (size_t)C * w->H * w->W;
    float *vacc = w->all + (size_t)ch * w->nacc;
    float *xp = scratch(&s_x2, sizeof(float) * pl->xfloats * w->G);
    for (int j = 0; j < g; j++) {
        if (w->in) pad_image(pl, xp + j * pl->xfloats, w->in + (n0 + j) * img);
        else pad_image_bn_relu(pl, xp + j * pl->xfloats, NULL, w->bn_in + (n0 + j) * img, w->scale, w->shift);
    }
    const float *d = w->dout + (size_t)n0 * K * PQ;
    if (!w->inplace) {
        float *dp = scratch(&s_dp, sizeof(float) * w->dimg * w->G);
        memset(dp, 0, sizeof(float) * w->dimg * g);
        for (int j = 0; j < g; j++)
            for (int k = 0; k < K; k++)
                for (int p = 0; p < P; p++)
                    memcpy(dp + j * w->dimg + k * w->dplane + (size_t)p * pl->QV * w->VLn,
                           d + ((size_t)(j * K + k) * P + p) * Q, sizeof(float) * Q);
        d = dp;
    }
    for (int kb = 0; kb < w->kblocks; kb++)
        for (int c = 0; c < C; c++)
            for (int r = 0; r < w->R; r++)
                for (int sg = 0; sg < w->SG; sg++) {
                    int s0 = sg * 3, ns = w->S - s0 < 3 ? w->S - s0 : 3, soff[3];
                    for (int j = 0; j < ns; j++) soff[j] = ((s0 + j) % w->stride) * pl->Wph + (s0 + j) / w->stride;
                    const float *xb = xp + ((size_t)(c * pl->Hp + r) * w->stride) * pl->Wph;
                    size_t ti = (((size_t)kb * C + c) * w->R + r) * w->SG + sg;
                    w->isa->bwdw(xb, soff, ns, d + (size_t)kb * KBn * w->dplane, w->dplane, w->voff, w->doff,
                                 g * pl->nvec, vacc + ti * w->tile);
                    prefetch_slice();
                }
}

/* tiles (and prefetch_slice calls) per group of wgrad_images, wgrad_images_from_dout or
 * wgrad_cv_images */
static int wgrad_tiles(const Wgrad *w)
{
    return w->cv ? w->K : w->kblocks * (w->from_dout ? w->K : w->C) * w->R * w->SG;
}

/* The weight gradient of a stride-1 convolution from the backward-input's padded dout, so
 * the input needs no padded copy of its own. With pad' = R-1-pad rows (and S-1-pad columns)
 * of zeros around dout, as plan_backward_input pads it:
 *   dw[k,c,r,s] = sum_{n,p,q} dout[n,k,p,q] in[n,c,p-pad+r,q-pad+s]
 *               = sum_{n,h,w} in[n,c,h,w] dpad[n,k,h+R-1-r,w+S-1-s]
 * (h = p-pad+r; the terms with h outside the image are the input's zero padding, and the
 * dout rows outside [0,P) are dpad's zeros). This is wgrad_images' sum with the roles
 * exchanged: the pixel vectors run over the input (h, w0..w0+VL-1), the KB channels of a
 * tile are input channels c read in place from in (W a multiple of VL, C of KB), and the three
 * shifted loads per vector come from dpad[k] at tap (R-1-r, S-1-s), the offsets
 * (k Hp + R-1-r) Wph + S-1-s that are the backward-input plan's toff for that tap. bwd is that
 * plan (image [K,P,Q] padded, output [C,H,W]). It sums over H W input pixels where the other
 * form sums over P Q output pixels: taken only where that is no more (P Q >= H W, e.g. every
 * "same" convolution; with pad 0 the output is smaller and the zeros would cost products). */
static int wgrad_from_dout_fits(const Isa *isa, int C, int H, int W, int P, int Q, int stride)
{
    return stride == 1 && W % isa->vl == 0 && C % isa->kbw == 0 && (long)P * Q >= (long)H * W;
}

static void wgrad_init_from_dout(Wgrad *w, const Isa *isa, const Plan *bwd, const float *dout,
                                 const float *in, int N, int C, int H, int W, int K, int R, int S, int pad)
{
    if (!wgrad_from_dout_fits(isa, C, H, W, conv_out_size(H, R, 1, pad), conv_out_size(W, S, 1, pad), 1))
        die("conv2d_direct: weight gradient from dout on a shape it does not fit");
    memset(w, 0, sizeof *w);
    w->from_dout = 1;
    w->isa = isa; w->in = in; w->dout = dout;
    w->N = N; w->C = C; w->H = H; w->W = W; w->K = K; w->R = R; w->S = S; w->stride = 1;
    w->P = conv_out_size(H, R, 1, pad);
    w->Q = conv_out_size(W, S, 1, pad);
    w->pl = *bwd;                                   /* tables stay the backward-input's */
    const Plan *pl = &w->pl;
    w->VLn = isa->vl; w->KBn = isa->kbw;
    w->kblocks = C / w->KBn;                        /* blocks of input channels */
    w->SG = ceil_div(S, 3);
    w->inplace = 1;
    w->dplane = (size_t)H * W;                      /* the in-place operand is now in */
    w->dimg = (size_t)C * H * W;
    wgrad_size(w, K);
    for (int g = 0; g < w->G; g++)
        for (int v = 0; v < pl->nvec; v++) {   /* the bwd plan's vector v is input pixel (h, w0) */
            w->voff[g * pl->nvec + v] = (int)(g * pl->xfloats) + pl->voff[v];
            w->doff[g * pl->nvec + v] = (int)(g * w->dimg) + pl->ooff[v];
        }
}

/* Images [n0, n1) of chunk ch into its accumulators; dpad holds their padded dout, one
 * bwd-plan image (pl.xfloats floats) each, and in their input (n1 - n0 images [C,H,W]). */
static void wgrad_images_from_dout(const Wgrad *w, int ch, int n0, int n1, const float *dpad, const float *in)
{
    const Plan *pl = &w->pl;
    int K = w->K, R = w->R, S = w->S, g = n1 - n0, KBn = w->KBn;
    float *vacc = w->all + (size_t)ch * w->nacc;
    for (int cb = 0; cb < w->kblocks; cb++)
        for (int k = 0; k < K; k++)
            for (int r = 0; r < R; r++)              /* r counts dpad's rows: tap R-1-r */
                for (int sg = 0; sg < w->SG; sg++) {
                    int s0 = sg * 3, ns = S - s0 < 3 ? S - s0 : 3, soff[3];
                    for (int j = 0; j < ns; j++) soff[j] = s0 + j;
                    const float *xb = dpad + ((size_t)k * pl->Hp + r) * pl->Wph;
                    size_t ti = (((size_t)cb * K + k) * R + r) * w->SG + sg;
                    w->isa->bwdw(xb, soff, ns, in + (size_t)cb * KBn * w->dplane, w->dplane, w->voff,
                                 w->doff, g * pl->nvec, vacc + ti * w->tile);
                    prefetch_slice();
                }
}

/* The weight gradient from dout with the input channels in the vector lanes, beside the
 * channel-vector forward kernel (rows of 8 pixels or fewer on AVX-512, where 8 pixel lanes
 * would be half a vector; 3x3, C a multiple of 32): per input pixel (h, w) of each image,
 *   acc[k][r'][s'][c] += in[c,h,w] dpad[k, h+r', w+s']      (c over the lanes)
 * which is dw[k, c, R-1-r', S-1-s'] (wgrad_init_from_dout's sum). A tile is one k x 32 input
 * channels x the 9 taps: 18 accumulators, per pixel two vectors of the input's channels (the
 * group's input turned round once, inT[pixel][c]), 9 broadcasts from dpad[k], 18 FMAs. The
 * chunk's accumulators [K][9][C] stay in memory between groups; each lane is one weight, so
 * nothing is summed across lanes. */
static int wgrad_cv_fits(const Isa *isa, int C, int R, int S) { return isa == &isa_avx512cv && C % CV_KB == 0 && R == 3 && S == 3; }

static void wgrad_use_cv(Wgrad *w)
{
    w->cv = 1;
    w->nacc = (size_t)w->K * 9 * w->C;
    w->all = scratch(&s_all, sizeof(float) * w->nacc * w->chunks);
}

__attribute__((target("avx512f,avx512vl,avx2,fma")))
static void wgrad_cv_images(const Wgrad *w, int ch, int n0, int n1, const float *dpad, const float *in)
{
    const Plan *pl = &w->pl;
    int K = w->K, C = w->C, H = w->H, W = w->W, HW = H * W, g = n1 - n0, Wph = pl->Wph;
    float *all = w->all + (size_t)ch * w->nacc;
    float *inT = scratch(&s_inT, sizeof(float) * (size_t)g * HW * C);
    for (int j = 0; j < g; j++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < HW; i++) inT[((size_t)j * HW + i) * C + c] = in[((size_t)j * C + c) * HW + i];
    int toff[9];
    for (int t = 0; t < 9; t++) toff[t] = (t / 3) * Wph + t % 3;
    for (int k = 0; k < K; k++) {
        for (int cb = 0; cb < C; cb += CV_KB) {
            float *ak = all + (size_t)k * 9 * C + cb;
            __m512 a0[9], a1[9];
            #pragma GCC unroll 9
            for (int t = 0; t < 9; t++) { a0[t] = _mm512_loadu_ps(ak + t * C); a1[t] = _mm512_loadu_ps(ak + t * C + 16); }
            for (int j = 0; j < g; j++) {
                const float *xk = dpad + (size_t)j * pl->xfloats + (size_t)k * pl->Hp * Wph;
                const float *it = inT + (size_t)j * HW * C + cb;
                for (int h = 0; h < H; h++)
                    for (int x = 0; x < W; x++) {
                        const float *xp = xk + h * Wph + x, *ip = it + (size_t)(h * W + x) * C;
                        __m512 i0 = _mm512_loadu_ps(ip), i1 = _mm512_loadu_ps(ip + 16);
                        #pragma GCC unroll 9
                        for (int t = 0; t < 9; t++) {
                            __m512 b = _mm512_set1_ps(xp[toff[t]]);
                            a0[t] = _mm512_fmadd_ps(b, i0, a0[t]);
                            a1[t] = _mm512_fmadd_ps(b, i1, a1[t]);
                        }
                    }
            }
            #pragma GCC unroll 9
            for (int t = 0; t < 9; t++) { _mm512_storeu_ps(ak + t * C, a0[t]); _mm512_storeu_ps(ak + t * C + 16, a1[t]); }
        }
        prefetch_slice();
    }
}

/* The chunks' accumulators added in chunk order (lane by lane), then the lanes of each weight. */
static void wgrad_finish(const Wgrad *w, float *dweight)
{
    float *all = w->all;
    size_t nacc = w->nacc;
    #pragma omp parallel for schedule(static)
    for (size_t i0 = 0; i0 < nacc; i0 += 4096) {
        size_t i1 = i0 + 4096 < nacc ? i0 + 4096 : nacc;
        for (int ch = 1; ch < w->chunks; ch++) {
            const float *src = all + (size_t)ch * nacc;
            #pragma omp simd
            for (size_t i = i0; i < i1; i++) all[i] += src[i];
        }
    }
    if (w->cv) {   /* [k][r'][s'][c] is dw[k][c][2-r'][2-s'] */
        for (int k = 0; k < w->K; k++)
            for (int t = 0; t < 9; t++)
                for (int c = 0; c < w->C; c++)
                    dweight[(((size_t)k * w->C + c) * 3 + 2 - t / 3) * 3 + 2 - t % 3] = all[((size_t)k * 9 + t) * w->C + c];
        return;
    }
    /* tiles [block][i][r][sg] of [KB][3][VL]: the block's channels are k (i = c), or for
     * from_dout c (i = k, taps flipped: r and s count from the kernel's far end) */
    int C = w->C, K = w->K, R = w->R, S = w->S, SG = w->SG, KBn = w->KBn, VLn = w->VLn, f = w->from_dout;
    int I = f ? K : C, O = f ? C : K;
    for (int b = 0; b < w->kblocks; b++)
        for (int i = 0; i < I; i++)
            for (int r = 0; r < R; r++)
                for (int sg = 0; sg < SG; sg++) {
                    const float *a = all + ((((size_t)b * I + i) * R + r) * SG + sg) * w->tile;
                    for (int j = 0; j < KBn; j++) {
                        int o = b * KBn + j;
                        if (o >= O) break;
                        for (int t = 0; t < 3 && sg * 3 + t < S; t++) {
                            const float *l = a + (j * 3 + t) * VLn;
                            float sum = 0;
                            for (int v = 0; v < VLn; v++) sum += l[v];
                            int k = f ? i : o, c = f ? o : i;
                            int rr = f ? R - 1 - r : r, ss = f ? S - 1 - (sg * 3 + t) : sg * 3 + t;
                            dweight[(((size_t)k * C + c) * R + rr) * S + ss] = sum;
                        }
                    }
                }
}

static void chunk_range(const Wgrad *w, int ch, int *n0, int *n1)
{
    *n0 = (int)((long)ch * w->N / w->chunks);
    *n1 = (int)((long)(ch + 1) * w->N / w->chunks);
}

/* conv2d_direct_backward_weight on a kernel set; in == NULL: in = relu(bn_in scale + shift),
 * recomputed as each image is padded */
static void backward_weight(const Isa *isa, float *dweight, const float *dout, const float *in, const float *bn_in,
                            const float *scale, const float *shift, int N, int C, int H, int W, int K, int R,
                            int S, int stride, int pad)
{
    Wgrad w;
    wgrad_init(&w, isa, dout, in, N, C, H, W, K, R, S, stride, pad);
    w.bn_in = bn_in;
    w.scale = scale;
    w.shift = shift;
    const float *src = in ? in : bn_in;   /* what the padded copies read */
    size_t img = (size_t)C * H * W, dimg = (size_t)K * w.P * w.Q;
    #pragma omp parallel for schedule(static)
    for (int ch = 0; ch < w.chunks; ch++) {
        int n0, n1;
        chunk_range(&w, ch, &n0, &n1);
        memset(w.all + (size_t)ch * w.nacc, 0, sizeof(float) * w.nacc);
        for (int n = n0; n < n1; n += w.G) {
            int e = n + w.G < n1 ? n + w.G : n1;
            prefetch_reset();
            if (e < n1) {   /* the next group's first image, over this group's tiles */
                prefetch_plan(src + e * img, sizeof(float) * img, wgrad_tiles(&w));
                prefetch_plan(dout + e * dimg, sizeof(float) * dimg, wgrad_tiles(&w));
            }
            wgrad_images(&w, ch, n, e);
        }
    }
    wgrad_finish(&w, dweight);
}

void conv2d_direct_backward_weight(float *dweight, const float *dout, const float *in,
                                   int N, int C, int H, int W, int K, int R, int S,
                                   int stride, int pad, float *workspace)
{
    const Isa *isa = pick(conv_out_size(W, S, stride, pad));
    if (!isa) conv2d_backward_weight(dweight, dout, in, N, C, H, W, K, R, S, stride, pad, workspace);
    else backward_weight(isa, dweight, dout, in, NULL, NULL, NULL, N, C, H, W, K, R, S, stride, pad);
}

/* ---------------------------------------------------------------- conv backward through relu(bn) */

/* whether conv2d_direct_backward_relu_bn runs its own fused pass (else the strided fused
 * form, or the operators in turn): a kernel set for rows of W, stride 1, and a padding the
 * backward-input can mirror */
static int backward_relu_bn_fused(const Isa *isa, int R, int S, int stride, int pad)
{
    return isa && stride == 1 && pad <= R - 1 && pad <= S - 1;
}

/* whether conv2d_direct_backward_relu_bn takes its weight gradient from the padded dout (the
 * tests, and backward_relu_bn_reads_padded) */
int conv2d_direct_wgrad_from_dout(int C, int H, int W, int R, int S, int stride, int pad)
{
    const Isa *isa = pick(W);
    return backward_relu_bn_fused(isa, R, S, stride, pad) &&
           wgrad_from_dout_fits(isa, C, H, W, conv_out_size(H, R, 1, pad), conv_out_size(W, S, 1, pad), 1);
}

/* whether backward_relu_bn can read its dout only through the backward-input's padded copy
 * (as the pair gives it: BnApplyIn): its own fused pass, and a weight gradient (if any) from
 * that padded dout */
static int backward_relu_bn_reads_padded(int dweight, int C, int H, int W, int R, int S, int stride, int pad)
{
    return backward_relu_bn_fused(pick(W), R, S, stride, pad) &&
           (!dweight || conv2d_direct_wgrad_from_dout(C, H, W, R, S, stride, pad));
}

/* conv2d_direct_backward_relu_bn, and two forms for the pair (on its fused pass only):
 *   dap != NULL: dout is not given (NULL) but read as dap describes, through the padded copy
 *                (backward_relu_bn_reads_padded says where that is possible);
 *   kout != NULL: batchnorm's apply is not run: din is not written, kout[C][3] gets its
 *                coefficients (dgamma, dbeta written), g is left masked. */
static void backward_relu_bn(float *dweight, float *din, float *g, const float *dout, const BnApplyIn *dap,
                             float *kout, const float *in, const float *weight, int N, int C, int H, int W,
                             int K, int R, int S, int stride, int pad, float *workspace, float *dgamma,
                             float *dbeta, const float *bn_in, const float *add, const float *gamma,
                             const float *beta, const float *save_mean, const float *save_invstd)
{
    int P = conv_out_size(H, R, stride, pad), Q = conv_out_size(W, S, stride, pad), HW = H * W;
    const Isa *isa = pick_fwd(W, C, R * S), *isaw = pick(Q);   /* (the same vl and kbw as pick(W)) */
    float *coef = NULL;   /* in == NULL: in = relu(bn_in scale + shift), as the forward applied it */
    if (!in) {
        coef = xmalloc(sizeof(float) * 2 * (size_t)C);
        batchnorm_scale_shift(coef, coef + C, gamma, beta, save_mean, save_invstd, C);
    }
    const Isa *isas = stride > 1 ? pick_fwd(ceil_div(W, stride), C, R * S) : NULL;
    if (stride > 1 && isas && isaw && pad <= R - 1 && pad <= S - 1) {
        if (dap || kout) die("conv2d_direct: a pair's form of the backward on a strided convolution");
        /* strided: the weight gradient (recomputing in where it pads it), then the
         * backward-input with the ReLU's mask and batchnorm's sums in its spread */
        if (dweight) backward_weight(isaw, dweight, dout, in, bn_in, coef, coef ? coef + C : NULL, N, C, H, W, K, R, S,
                                     stride, pad);
        double *sums = xmalloc(sizeof(double) * 2 * (size_t)N * C);
        StridedBnBwd sb = {in, bn_in, save_mean, coef, coef ? coef + C : NULL, sums};
        backward_input_strided(isas, g, dout, weight, N, C, H, W, K, R, S, stride, pad, &sb);
        batchnorm_fast_backward_from_sums(din, dgamma, dbeta, g, bn_in, add, gamma, save_mean, save_invstd, N, C, HW,
                                          sums);
        free(sums);
        free(coef);
        return;
    }
    if (!backward_relu_bn_fused(isa, R, S, stride, pad)) {
        if (dap || kout) die("conv2d_direct: a pair's form of the backward on a shape without the fused pass");
        if (!in) in = bn_relu_all(scratch(&s_actall, sizeof(float) * (size_t)N * C * HW), bn_in, N, C, HW, coef,
                                  coef + C);
        if (dweight) conv2d_direct_backward_weight(dweight, dout, in, N, C, H, W, K, R, S, stride, pad, workspace);
        conv2d_direct_backward_input(g, dout, weight, N, C, H, W, K, R, S, stride, pad, workspace);
        relu_batchnorm_fast_backward(din, dgamma, dbeta, g, in, bn_in, add, gamma, save_mean,
                                     save_invstd, N, C, HW);
        free(coef);
        return;
    }
    /* input side: the forward kernels on dout with the flipped kernel, the ReLU mask and
     * batchnorm's sums in the store */
    Plan pl;
    const float *wt = plan_backward_input(&pl, isa, weight, C, K, P, Q, R, S, pad);
    /* weight side, over the same images in the same pass (dout and the input read once);
     * where it fits, from the backward-input's padded dout (no padded copy of the input) */
    Wgrad w;
    int from_dout = dweight && wgrad_from_dout_fits(isa, C, H, W, P, Q, stride);
    if (dap && dweight && !from_dout) die("conv2d_direct: an unapplied dout needs the weight gradient from its padded copy");
    if (from_dout) wgrad_init_from_dout(&w, isa, &pl, dout, in, N, C, H, W, K, R, S, pad);
    else wgrad_init(&w, isaw, dout, in, N, C, H, W, K, R, S, stride, pad);
    if (from_dout && wgrad_cv_fits(isa, C, R, S)) wgrad_use_cv(&w);
    w.bn_in = bn_in;
    w.scale = coef;
    w.shift = coef ? coef + C : NULL;
    double *sums = xmalloc(sizeof(double) * 2 * (size_t)N * C);
    size_t dimg = (size_t)K * P * Q, img = (size_t)C * HW;
    int VLn = isa->vl;
    #pragma omp parallel for schedule(static)
    for (int ch = 0; ch < w.chunks; ch++) {
        int n0, n1;
        chunk_range(&w, ch, &n0, &n1);
        if (dweight) memset(w.all + (size_t)ch * w.nacc, 0, sizeof(float) * w.nacc);
        for (int nb = n0; nb < n1; nb += w.G) {
            int e = nb + w.G < n1 ? nb + w.G : n1;
            /* the next group's first image, over this group's weight-gradient tiles and
             * backward-input tile groups */
            prefetch_reset();
            if (e < n1) {
                int slices = (dweight ? wgrad_tiles(&w) : 0) + (e - nb) * ceil_div(pl.nvec, FWD_NV);
                if (in) prefetch_plan(in + e * img, sizeof(float) * img, slices);
                if (dap) prefetch_plan(dap->g + e * dimg, sizeof(float) * dimg, slices);
                if (dap) prefetch_plan(dap->x + e * dimg, sizeof(float) * dimg, slices);
                else prefetch_plan(dout + e * dimg, sizeof(float) * dimg, slices);
                prefetch_plan(bn_in + e * img, sizeof(float) * img, slices);
            }
            /* the group's padded dout: one image at a time, or all G kept for both sides */
            float *xpg = scratch(&s_x, sizeof(float) * pl.xfloats * (from_dout ? w.G : 1));
            if (from_dout) {   /* (from_dout: dweight is set) */
                for (int n = nb; n < e; n++) {
                    if (dap) pad_image_bn_apply(&pl, xpg + (n - nb) * pl.xfloats, dap->g + n * dimg, dap->x + n * dimg,
                                                dap->k, dap->mean);
                    else pad_image(&pl, xpg + (n - nb) * pl.xfloats, dout + n * dimg);
                }
                const float *ing = in ? in + nb * img : NULL;
                if (!in) {   /* the group's input, recomputed once for all its tiles */
                    float *act = scratch(&s_act, sizeof(float) * img * w.G);
                    for (int n = nb; n < e; n++) bn_relu_image(act + (n - nb) * img, bn_in + n * img, C, HW, coef, coef + C);
                    ing = act;
                }
                if (w.cv) wgrad_cv_images(&w, ch, nb, e, xpg, ing);
                else wgrad_images_from_dout(&w, ch, nb, e, xpg, ing);
            } else if (dweight) {
                wgrad_images(&w, ch, nb, e);
            }
            for (int n = nb; n < e; n++) {
                float *xp = from_dout ? xpg + (n - nb) * pl.xfloats : xpg;
                float *sv = scratch(&s_bn, sizeof(float) * 2 * (size_t)C * VLn);
                memset(sv, 0, sizeof(float) * 2 * (size_t)C * VLn);
                if (!from_dout && dap) pad_image_bn_apply(&pl, xp, dap->g + n * dimg, dap->x + n * dimg, dap->k, dap->mean);
                else if (!from_dout) pad_image(&pl, xp, dout + n * dimg);
                ConvBnBwd bn = {in ? in + n * img : NULL, bn_in + n * img, save_mean, coef, coef ? coef + C : NULL, sv};
                isa->fwd(xp, pl.toff, pl.T, wt, C, pl.voff, pl.ooff, pl.nl, pl.nvec, g + n * img, NULL,
                         (size_t)HW, &bn, NULL);
                lanes_to_double(sums + (size_t)n * C * 2, sv, 2 * C, VLn);
            }
        }
    }
    if (dweight) wgrad_finish(&w, dweight);
    if (kout) batchnorm_fast_backward_coeffs(kout, dgamma, dbeta, gamma, save_invstd, N, C, HW, sums);
    else batchnorm_fast_backward_from_sums(din, dgamma, dbeta, g, bn_in, add, gamma, save_mean, save_invstd,
                                           N, C, HW, sums);
    free(sums);
    free(coef);
}

void conv2d_direct_backward_relu_bn(float *dweight, float *din, float *g, const float *dout,
                                    const float *in, const float *weight, int N, int C, int H, int W,
                                    int K, int R, int S, int stride, int pad, float *workspace,
                                    float *dgamma, float *dbeta, const float *bn_in, const float *add,
                                    const float *gamma, const float *beta, const float *save_mean,
                                    const float *save_invstd)
{
    backward_relu_bn(dweight, din, g, dout, NULL, NULL, in, weight, N, C, H, W, K, R, S, stride, pad, workspace,
                     dgamma, dbeta, bn_in, add, gamma, beta, save_mean, save_invstd);
}

/* one layer of the pair, as conv2d_direct_backward_relu_bn takes it (in recomputed) */
static void layer_backward(const ConvBnLayer *l, float *din, float *g, const float *dout, const BnApplyIn *dap,
                           float *kout, const float *add, int N, float *workspace)
{
    backward_relu_bn(l->dweight, din, g, dout, dap, kout, NULL, l->weight, N, l->C, l->H, l->W, l->K, l->R, l->S,
                     l->stride, l->pad, workspace, l->dgamma, l->dbeta, l->bn_in, add, l->gamma, l->beta,
                     l->save_mean, l->save_invstd);
}

/* the readable operators' workspace, for a layer whose backward may fall back to them */
static size_t layer_workspace(const ConvBnLayer *l, int N)
{
    int Q = conv_out_size(l->W, l->S, l->stride, l->pad);
    int fallback = !pick(l->W) || !pick(Q) || l->pad > l->R - 1 || l->pad > l->S - 1;
    return fallback ? conv2d_workspace_floats(N, l->C, l->H, l->W, l->K, l->R, l->S, l->stride, l->pad) : 0;
}

void conv2d_direct_backward_relu_bn_pair(float *din, float *g1, float *g2, const float *dout, const ConvBnLayer *l2,
                                         const ConvBnLayer *l1, const float *add, int N)
{
    if (!din) die("conv2d_direct: the pair's d x unapplied (no conv2d_backward_weight_bn_grad on this table)");
    int P1 = conv_out_size(l1->H, l1->R, l1->stride, l1->pad), Q1 = conv_out_size(l1->W, l1->S, l1->stride, l1->pad);
    if (l2->C != l1->K || l2->H != P1 || l2->W != Q1) die("conv2d_direct: a pair whose conv2 does not read conv1's output");
    size_t nws = layer_workspace(l2, N), nws1 = layer_workspace(l1, N);
    float *ws = nws || nws1 ? xmalloc(sizeof(float) * (nws > nws1 ? nws : nws1)) : NULL;
    if (backward_relu_bn_fused(pick(l2->W), l2->R, l2->S, l2->stride, l2->pad) &&
        backward_relu_bn_reads_padded(l1->dweight != NULL, l1->C, l1->H, l1->W, l1->R, l1->S, l1->stride, l1->pad)) {
        /* conv2's backward leaves bn2's apply to conv1's, which applies it as it pads its
         * dout: d(conv1's output) is never stored */
        float *k = xmalloc(sizeof(float) * 3 * (size_t)l2->C);
        layer_backward(l2, NULL, g2, dout, NULL, k, NULL, N, ws);
        BnApplyIn dap = {g2, l2->bn_in, l2->save_mean, k};
        layer_backward(l1, din, g1, NULL, &dap, NULL, add, N, ws);
        free(k);
    } else {   /* the two calls, d(conv1's output) stored in between */
        /* d(conv1's output) in din when it fits there (conv1's backward may read its dout
         * from din; not when din is add, which its apply reads), else a buffer kept */
        size_t nc1 = (size_t)N * l1->K * P1 * Q1, nx1 = (size_t)N * l1->C * l1->H * l1->W;
        float *dc1 = din != add && nc1 <= nx1 ? din : scratch(&s_dc1, sizeof(float) * nc1);
        layer_backward(l2, dc1, g2, dout, NULL, NULL, NULL, N, ws);
        layer_backward(l1, din, g1, dc1, NULL, NULL, add, N, ws);
    }
    free(ws);
}
