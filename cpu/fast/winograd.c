/* Winograd F(2x2, 3x3) for the fast CPU path: the 3x3, stride-1, pad-1 convolutions with an
 * even output size and output channels a multiple of 8. The algorithm and its matrices are
 * cpu/winograd.c's (the readable definition, tested against conv2d in double); this file
 * arranges the same arithmetic for vectors: VL tiles side by side in every vector, the input
 * transform read from a copy of the image split by column parity (so the 4x4 inputs of VL
 * neighbouring tiles, which start two columns apart, are one vector load per entry), the 16
 * elementwise products summed over input channels as small matrix products held in registers,
 * and the output transform written straight into the output rows (winograd_kern.h).
 * Each output is computed by one thread in a fixed order: the same bits for any thread count. */
#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "core/util.h"
#include "cpu/fast/fast.h"

#define KB 8   /* output channels of accumulators ... */
#define NV 2   /* ... by vectors of tiles, in the products */

#define SFX avx512
#define TARGET __attribute__((target("avx512f,avx512vl,avx2,fma")))
#define VL 16
#define V __m512
#define VZERO() _mm512_setzero_ps()
#define VLOAD(p) _mm512_loadu_ps(p)
#define VBCAST(p) _mm512_set1_ps(*(p))
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VADD(a, b) _mm512_add_ps(a, b)
#define VSUB(a, b) _mm512_sub_ps(a, b)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VSTORE_FIRST(p, v, n) _mm512_mask_storeu_ps(p, (__mmask16)((1u << (n)) - 1), v)
#define VLOAD_FIRST(p, n) _mm512_maskz_loadu_ps((__mmask16)((1u << (n)) - 1), p)
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
#undef SFX
#undef TARGET
#undef VL
#undef V
#undef VZERO
#undef VLOAD
#undef VBCAST
#undef VFMA
#undef VADD
#undef VSUB
#undef VSTORE
#undef VSTORE_FIRST
#undef VLOAD_FIRST
#undef VINTERLEAVE
#undef VDEINTERLEAVE

#define SFX avx2
#define TARGET __attribute__((target("avx2,fma")))
#define VL 8
#define V __m256
#define VZERO() _mm256_setzero_ps()
#define VLOAD(p) _mm256_loadu_ps(p)
#define VBCAST(p) _mm256_broadcast_ss(p)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VADD(a, b) _mm256_add_ps(a, b)
#define VSUB(a, b) _mm256_sub_ps(a, b)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define LANES_BELOW(n) _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define VSTORE_FIRST(p, v, n) _mm256_maskstore_ps(p, LANES_BELOW(n), v)
#define VLOAD_FIRST(p, n) _mm256_maskload_ps(p, LANES_BELOW(n))
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

typedef void (*split_fn)(float *, const float *, int, int, int, int);
typedef void (*image_fn)(float *, const float *, const float *, float *, float *, int, int, int, int, int, int, int);

int winograd_fast_supported(int C, int H, int W, int K, int R, int S, int stride, int pad)
{
    return R == 3 && S == 3 && stride == 1 && pad == 1 && H % 2 == 0 && W % 2 == 0 && H > 0 && W > 0 && C > 0 &&
           K % KB == 0 && cpu_isa_best() >= CPU_ISA_AVX2;
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

/* out [N,K,H,W] = conv3x3(in [N,C,H,W], kernel U [16][K][C] transformed), stride 1, pad 1 */
static void run(float *out, const float *in, const float *U, int N, int C, int H, int W, int K)
{
    int avx512 = cpu_isa_best() == CPU_ISA_AVX512, vl = avx512 ? 16 : 8;
    split_fn split = avx512 ? winograd_parity_split_avx512 : winograd_parity_split_avx2;
    image_fn image = avx512 ? winograd_image_avx512 : winograd_image_avx2;
    /* a chunk of CR tile rows, about 64 tiles: its Vb and Mb (16 C and 16 K floats a tile)
     * stay in the core's L2 */
    int TW = W / 2, TH = H / 2, CR = TW >= 64 ? 1 : 64 / TW < TH ? 64 / TW : TH;
    int TWV = (TW + vl - 1) / vl * vl + vl, rows = H + 2, Tcv = (CR * TW + vl - 1) / vl * vl + vl;
#pragma omp parallel
    {
        size_t nph = (size_t)C * 2 * rows * TWV, nv = 16 * (size_t)C * Tcv, nm = 16 * (size_t)K * Tcv;
        float *ph = xmalloc(sizeof(float) * (nph + nv + nm));
        memset(ph, 0, sizeof(float) * (nph + nv + nm));   /* the padding, once */
        float *Vb = ph + nph, *Mb = Vb + nv;
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            split(ph, in + (size_t)n * C * H * W, C, H, W, TWV);
            image(out + (size_t)n * K * H * W, ph, U, Vb, Mb, C, K, H, W, TWV, CR, Tcv);
        }
        free(ph);
    }
}

void winograd_fast_forward(float *out, const float *in, const float *weight, int N, int C, int H, int W, int K)
{
    if (!winograd_fast_supported(C, H, W, K, 3, 3, 1, 1)) die("winograd_fast_forward: unsupported shape");
    float *U = xmalloc(sizeof(float) * 16 * (size_t)K * C);
    transform_weights(U, weight, K, C, 0);
    run(out, in, U, N, C, H, W, K);
    free(U);
}

/* din [N,C,H,W] from dout [N,K,H,W]: the forward of dout with the flipped kernel, input and
 * output channels swapped (pad 2 - 1 = 1): needs C a multiple of 8 */
void winograd_fast_backward_input(float *din, const float *dout, const float *weight, int N, int C, int H, int W, int K)
{
    if (!winograd_fast_supported(K, H, W, C, 3, 3, 1, 1)) die("winograd_fast_backward_input: unsupported shape");
    float *U = xmalloc(sizeof(float) * 16 * (size_t)K * C);
    transform_weights(U, weight, K, C, 1);
    run(din, dout, U, N, K, H, W, C);
    free(U);
}
