/* Winograd F(2x2, 3x3) for the fast CPU path: the 3x3, stride-1, pad-1 convolutions with an
 * even output size and output channels a multiple of 8. The algorithm and its matrices are
 * cpu/winograd.c's (the readable definition, tested against conv2d in double); this file
 * arranges the same arithmetic for vectors: VL tiles side by side in every vector, the input
 * transform read from a channel's rows of a chunk of tiles split by column parity into a few
 * KB that stay in L1 (so the 4x4 inputs of VL neighbouring tiles, which start two columns
 * apart, are one vector load per entry), the 16 elementwise products summed over input
 * channels as small matrix products held in registers, and the output transform written
 * straight into the output rows (winograd_kern.h). The fused slot's form applies batchnorm+ReLU
 * as the rows are split and adds the residual in the output transform.
 * Each output is computed by one thread in a fixed order: the same bits for any thread count.
 * Measured against the direct kernel (bench/ladder's W3 and W4): not faster at the practical's
 * 16-32 channels, so the op table uses it only when asked (winograd_fast_chosen). */
#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "core/util.h"
#include "cpu/fast/fast.h"

#define KB 8   /* output channels of accumulators ... */
#define NV 2   /* ... by vectors of tiles, in the products */

/* cpu/fast/vec.h: what a vector is in each ISA; and two shuffles of this file's own */
#define VEC_AVX512
#include "cpu/fast/vec.h"
#define SFX avx512
/* even = a0 a2 ... a14 b0 b2 ... b14, odd = a1 a3 ... b15 */
#define VDEINTERLEAVE(even, odd, a, b)                                                                   \
    do {                                                                                                 \
        even = _mm512_permutex2var_ps(a, _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), b); \
        odd = _mm512_permutex2var_ps(a, _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31), b); \
    } while (0)
/* lo = a0 b0 a1 b1 ... a7 b7, hi = a8 b8 ... a15 b15 */
#define VINTERLEAVE(lo, hi, a, b)                                                                        \
    do {                                                                                                 \
        lo = _mm512_permutex2var_ps(a, _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), b); \
        hi = _mm512_permutex2var_ps(a, _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), b); \
    } while (0)
#include "cpu/fast/winograd_kern.h"
#include "cpu/fast/vec_end.h"
#undef SFX
#undef VDEINTERLEAVE
#undef VINTERLEAVE

#define VEC_AVX2
#include "cpu/fast/vec.h"
#define SFX avx2
/* even = a0 a2 a4 a6 b0 b2 b4 b6, odd = a1 a3 ... b7 (shuffle works within 128-bit halves) */
#define VDEINTERLEAVE(even, odd, a, b)                                                          \
    do {                                                                                        \
        even = _mm256_castpd_ps(_mm256_permute4x64_pd(                                          \
            _mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0))), _MM_SHUFFLE(3, 1, 2, 0))); \
        odd = _mm256_castpd_ps(_mm256_permute4x64_pd(                                           \
            _mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1))), _MM_SHUFFLE(3, 1, 2, 0))); \
    } while (0)
/* lo = a0 b0 a1 b1 a2 b2 a3 b3, hi = a4 b4 ... a7 b7 (unpack works within 128-bit halves) */
#define VINTERLEAVE(lo, hi, a, b)                                 \
    do {                                                          \
        __m256 l_ = _mm256_unpacklo_ps(a, b), h_ = _mm256_unpackhi_ps(a, b); \
        lo = _mm256_permute2f128_ps(l_, h_, 0x20);                \
        hi = _mm256_permute2f128_ps(l_, h_, 0x31);                \
    } while (0)
#include "cpu/fast/winograd_kern.h"
#include "cpu/fast/vec_end.h"
#undef SFX
#undef VDEINTERLEAVE
#undef VINTERLEAVE

typedef void (*image_fn)(float *, const float *, const float *, float *, float *, float *, int, int, int, int, int, int,
                         int, const float *, const float *, float *, const float *);

int winograd_fast_supported(int C, int H, int W, int K, int R, int S, int stride, int pad)
{
    return R == 3 && S == 3 && stride == 1 && pad == 1 && H % 2 == 0 && W % 2 == 0 && H > 0 && W > 0 && C > 0 &&
           K % KB == 0 && cpu_isa_best() >= CPU_ISA_AVX2;
}

/* Where the fast table takes Winograd instead of the direct kernel, in the fused slot's forward
 * (batchnorm+ReLU applied in the input split). The rule, from bench/ladder's rungs 4 and W4 on
 * the practical's three 3x3 stride-1 layers (Intel Xeon, 2 threads, AVX-512, 2026-12-04:
 * 2.66-2.73 ms direct against 2.98 Winograd at 32x32 16->16, 1.30-1.32 against 1.44-1.48 at
 * 16x16 24->24, 0.84-0.88 against 0.89-0.90 at 8x8 32->32) and bench/train_step (94-96 ms a
 * step direct, 99-100 with Winograd on every such layer): nowhere. F(2x2)'s 2.25x fewer
 * products are spent on its transforms at 16-32 channels, where each transformed value feeds
 * only 16-32 products. CONVNET_WINOGRAD=1 takes it wherever supported (to measure), =0 never;
 * or winograd_fast_set_mode. */
static int mode = -2;   /* -1: the rule, 0 never, 1 wherever supported; -2: not read yet */

void winograd_fast_set_mode(int m) { mode = m; }

static int current_mode(void)
{
    if (mode == -2) {
        const char *e = getenv("CONVNET_WINOGRAD");
        mode = e && *e == '0' ? 0 : e && *e == '1' ? 1 : -1;
    }
    return mode;
}

int winograd_fast_chosen(int C, int H, int W, int K, int R, int S, int stride, int pad)
{
    return current_mode() == 1 && winograd_fast_supported(C, H, W, K, R, S, stride, pad);
}

const char *winograd_fast_choice(void)
{
    return current_mode() == 1 ? "F(2x2,3x3) on every supported 3x3 stride-1 forward (CONVNET_WINOGRAD=1)"
                     : mode == 0 ? "off (CONVNET_WINOGRAD=0 or set so)" : "off (the measured rule: slower than direct here)";
}

const char *winograd_fast_isa(void) { return cpu_isa_best() == CPU_ISA_AVX512 ? "avx512" : "avx2"; }

/* U[x][k][c], x = 4 u + v: the 4x4 G g G^T of kernel (k, c), G = [1 0 0; 1/2 1/2 1/2;
 * 1/2 -1/2 1/2; 0 0 1] (cpu/winograd.c's G2). flip: the backward-input's kernel instead,
 * g'(c, k)[r][s] = w[k][c][2 - r][2 - s], as U[x][c][k] (K and C swap roles). */
static void transform_weights(float *U, const float *w, int K, int C, int flip)
{
    static const float G[4][3] = {{1, 0, 0}, {0.5f, 0.5f, 0.5f}, {0.5f, -0.5f, 0.5f}, {0, 0, 1}};
    for (int k = 0; k < K; k++)
        for (int c = 0; c < C; c++) {
            const float *w9 = w + ((size_t)k * C + c) * 9;
            float g[9];
            for (int e = 0; e < 9; e++) g[e] = flip ? w9[8 - e] : w9[e];   /* (2 - r, 2 - s) is 8 - (3 r + s) */
            float Gg[4][3];
            for (int u = 0; u < 4; u++)
                for (int s = 0; s < 3; s++) Gg[u][s] = G[u][0] * g[s] + G[u][1] * g[3 + s] + G[u][2] * g[6 + s];
            for (int u = 0; u < 4; u++)
                for (int v = 0; v < 4; v++)
                    U[flip ? ((size_t)(u * 4 + v) * C + c) * K + k : ((size_t)(u * 4 + v) * K + k) * C + c] =
                        Gg[u][0] * G[v][0] + Gg[u][1] * G[v][1] + Gg[u][2] * G[v][2];
        }
}

/* Tiles a chunk: about 32 (measured with bench/ladder's W3 against 16, 48, 64 and 128): its
 * Vb and Mb (16 C + 16 K floats a tile) stay close to L1 */
#define CHUNK_TILES 32

static size_t gcd(size_t a, size_t b) { return b ? gcd(b, a % b) : a; }

/* Tc, the floats a chunk's row of Vb [16][C][Tc] and Mb [16][K][Tc] takes: its tiles rounded
 * up to vectors, then of that and the next two vector counts the one whose planes (C Tc and
 * K Tc floats apart) fall on the most different L1 sets (4 KB / gcd(plane bytes, 4 KB)
 * offsets): planes a multiple of 4 KB apart all map to one set (measured: 8x8 32->32 at 1.13
 * ms against 0.78 ms) */
static int plane_floats(int tiles, int C, int K, int vl)
{
    int best = 0;
    size_t best_score = 0;
    for (int e = 0; e < 3; e++) {
        int t = (tiles + vl - 1) / vl * vl + e * vl;
        size_t score = gcd((size_t)C * t * 4, 4096) + gcd((size_t)K * t * 4, 4096);
        if (!best || score < best_score) { best = t; best_score = score; }
    }
    return best;
}

/* out [N,K,H,W] = conv3x3(in [N,C,H,W], kernel U [16][K][C] transformed), stride 1, pad 1;
 * with scale: of a = relu(in scale_c + shift_c) instead, stored to act (if not NULL); plus
 * add (if not NULL) */
static void run(float *out, const float *in, const float *U, int N, int C, int H, int W, int K, const float *scale,
                const float *shift, float *act, const float *add)
{
    int avx512 = cpu_isa_best() == CPU_ISA_AVX512, vl = avx512 ? 16 : 8;
    image_fn image = avx512 ? winograd_image_avx512 : winograd_image_avx2;
    /* a chunk of CR tile rows, about CHUNK_TILES tiles */
    int TW = W / 2, TH = H / 2, CR = TW >= CHUNK_TILES ? 1 : CHUNK_TILES / TW < TH ? CHUNK_TILES / TW : TH;
    int TWV = (TW + vl - 1) / vl * vl + vl, Tcv = plane_floats(CR * TW, C, K, vl);
#pragma omp parallel
    {
        size_t nph = 2 * (2 * (size_t)CR + 2) * TWV, nv = 16 * (size_t)C * Tcv, nm = 16 * (size_t)K * Tcv;
        void *p;
        /* (+ vl: the output transform's loads of a chunk's last tile row, winograd_kern.h) */
        if (posix_memalign(&p, 64, sizeof(float) * (nph + nv + nm + vl))) die("winograd: out of memory");
        float *ph = p, *Vb = ph + nph, *Mb = Vb + nv;   /* (64-byte aligned: Tcv and TWV are vectors) */
        memset(ph, 0, sizeof(float) * (nph + nv + nm + vl));   /* the padding, once */
        size_t in_img = (size_t)C * H * W, out_img = (size_t)K * H * W;
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++)
            image(out + n * out_img, in + n * in_img, U, ph, Vb, Mb, C, K, H, W, TWV, CR, Tcv, scale, shift,
                  act ? act + n * in_img : NULL, add ? add + n * out_img : NULL);
        free(p);
    }
}

/* The three entry points: kernel `weight` [K,C,3,3] transformed (flip: for the backward-input,
 * where the convolution runs from K channels to C), then run; `what` names the caller */
static void convolve(const char *what, float *out, const float *in, const float *weight, int N, int Cin, int H,
                     int W, int Kout, int flip, const float *scale, const float *shift, float *act, const float *add)
{
    if (!winograd_fast_supported(Cin, H, W, Kout, 3, 3, 1, 1)) die("%s: unsupported shape", what);
    float *U = xmalloc(sizeof(float) * 16 * (size_t)Kout * Cin);
    transform_weights(U, weight, flip ? Cin : Kout, flip ? Kout : Cin, flip);
    run(out, in, U, N, Cin, H, W, Kout, scale, shift, act, add);
    free(U);
}

void winograd_fast_forward(float *out, const float *in, const float *weight, int N, int C, int H, int W, int K)
{
    convolve("winograd_fast_forward", out, in, weight, N, C, H, W, K, 0, NULL, NULL, NULL, NULL);
}

void winograd_fast_forward_bn(float *out, float *act, const float *in, const float *weight, const float *add, int N,
                              int C, int H, int W, int K, const float *scale, const float *shift)
{
    convolve("winograd_fast_forward_bn", out, in, weight, N, C, H, W, K, 0, scale, shift, act, add);
}

/* din [N,C,H,W] from dout [N,K,H,W]: the forward of dout with the flipped kernel, input and
 * output channels swapped (pad 2 - 1 = 1): needs C a multiple of 8 */
void winograd_fast_backward_input(float *din, const float *dout, const float *weight, int N, int C, int H, int W, int K)
{
    convolve("winograd_fast_backward_input", din, dout, weight, N, K, H, W, C, 1, NULL, NULL, NULL, NULL);
}
