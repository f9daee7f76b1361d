/* Fast float GEMM for the CPU path: packed panels + an AVX2/FMA register-blocked micro-kernel.
 * Same contract as gemm() in gemm.c (row-major, optional transposes, beta == 0 write-only).
 *
 * Blocking (the Goto/BLIS scheme, reduced to what the practical's shapes need):
 *   for each KC-deep slice of the k dimension:
 *     pack op(B)[k-slice, all N] into NR-wide column panels   (Bp: kc x NR per panel;
 *       skipped when B is not transposed: its rows are read in place, ldb apart)
 *     pack op(A)[all M, k-slice] into MR-tall row panels      (Ap: kc x MR per panel)
 *     for each (NR panel, MR panel): C[MR x NR] (+)= Ap^T Bp   (micro-kernel, 12 ymm accumulators)
 * Each C element is summed by exactly one thread in a fixed k order (slices in order, k in
 * order inside), so results do not depend on the thread count.
 * The micro-kernel is compiled for AVX2+FMA with a target attribute and chosen at run time
 * (__builtin_cpu_supports); other CPUs get the same packing with a plain C kernel.
 * (An 8x16 AVX-512 kernel was tried on this project's Xeon and measured slower than this one
 * against OpenBLAS in the same process on the practical's shapes, so it is not kept.)
 * Pack buffers are per thread and grow once (no allocation per call in steady state). */
#ifndef CONVNET_REAL_DOUBLE
#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "cpu/cpu.h"
#include "core/util.h"

#define MR 6
#define NR 16
#define KC 256

static _Thread_local float *pack_buf;
static _Thread_local size_t pack_cap;

static float *pack_space(size_t floats)
{
    if (floats > pack_cap) {
        free(pack_buf);
        pack_buf = NULL;
        if (posix_memalign((void **)&pack_buf, 64, floats * sizeof(float)) != 0) die("out of memory (gemm pack)");
        pack_cap = floats;
    }
    return pack_buf;
}

/* op(A)[i, k] and op(B)[k, j] */
#define OPA(i, k) (transA ? A[(size_t)(k) * lda + (i)] : A[(size_t)(i) * lda + (k)])
#define OPB(k, j) (transB ? B[(size_t)(j) * ldb + (k)] : B[(size_t)(k) * ldb + (j)])

static void pack_a(float *Ap, int transA, const float *A, int lda, int M, int k0, int kc)
{
    for (int i0 = 0; i0 < M; i0 += MR, Ap += (size_t)kc * MR)
        for (int k = 0; k < kc; k++)
            for (int r = 0; r < MR; r++)
                Ap[k * MR + r] = i0 + r < M ? OPA(i0 + r, k0 + k) : 0;
}

/* direct: B is not transposed and full panels are read in place; only the last partial
 * panel is packed (reading it in place would run past the end of the matrix). */
static void pack_b(float *Bp, int transB, const float *B, int ldb, int N, int k0, int kc, int direct)
{
    for (int j0 = 0; j0 < N; j0 += NR, Bp += (size_t)kc * NR) {
        if (direct && j0 + NR <= N) continue;
        if (!transB && j0 + NR <= N) {
            for (int k = 0; k < kc; k++) memcpy(Bp + k * NR, &B[(size_t)(k0 + k) * ldb + j0], NR * sizeof(float));
        } else if (transB) {   /* read rows of B (contiguous in k), write strided */
            for (int c = 0; c < NR; c++) {
                const float *src = &B[(size_t)(j0 + c) * ldb + k0];
                if (j0 + c < N) for (int k = 0; k < kc; k++) Bp[k * NR + c] = src[k];
                else for (int k = 0; k < kc; k++) Bp[k * NR + c] = 0;
            }
        } else {
            for (int k = 0; k < kc; k++)
                for (int c = 0; c < NR; c++) Bp[k * NR + c] = j0 + c < N ? OPB(k0 + k, j0 + c) : 0;
        }
    }
}

/* Writes an MR x NR tile (only mr x nr of it inside C). */
static void store_tile(const float *t, float *C, int ldc, int mr, int nr, float beta)
{
    for (int r = 0; r < mr; r++)
        for (int c = 0; c < nr; c++) {
            float *p = &C[(size_t)r * ldc + c];
            *p = beta == 0 ? t[r * NR + c] : t[r * NR + c] + beta * *p;
        }
}

/* Bp rows are ldbp apart: NR for a packed panel, ldb when B is read in place. */
static void kernel_plain(int kc, const float *Ap, const float *Bp, int ldbp, float *C, int ldc, int mr, int nr, float beta)
{
    float t[MR * NR] = {0};
    for (int k = 0; k < kc; k++)
        for (int r = 0; r < MR; r++)
            for (int c = 0; c < NR; c++) t[r * NR + c] += Ap[k * MR + r] * Bp[(size_t)k * ldbp + c];
    store_tile(t, C, ldc, mr, nr, beta);
}

__attribute__((target("avx2,fma")))
static void kernel_avx2(int kc, const float *Ap, const float *Bp, int ldbp, float *C, int ldc, int mr, int nr, float beta)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
           c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_loadu_ps(Bp + (size_t)k * ldbp), b1 = _mm256_loadu_ps(Bp + (size_t)k * ldbp + 8);
        const float *a = Ap + k * MR;
        __m256 a0 = _mm256_broadcast_ss(a + 0), a1 = _mm256_broadcast_ss(a + 1);
        c00 = _mm256_fmadd_ps(a0, b0, c00); c01 = _mm256_fmadd_ps(a0, b1, c01);
        c10 = _mm256_fmadd_ps(a1, b0, c10); c11 = _mm256_fmadd_ps(a1, b1, c11);
        a0 = _mm256_broadcast_ss(a + 2); a1 = _mm256_broadcast_ss(a + 3);
        c20 = _mm256_fmadd_ps(a0, b0, c20); c21 = _mm256_fmadd_ps(a0, b1, c21);
        c30 = _mm256_fmadd_ps(a1, b0, c30); c31 = _mm256_fmadd_ps(a1, b1, c31);
        a0 = _mm256_broadcast_ss(a + 4); a1 = _mm256_broadcast_ss(a + 5);
        c40 = _mm256_fmadd_ps(a0, b0, c40); c41 = _mm256_fmadd_ps(a0, b1, c41);
        c50 = _mm256_fmadd_ps(a1, b0, c50); c51 = _mm256_fmadd_ps(a1, b1, c51);
    }
    if (mr == MR && nr == NR) {
        __m256 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
        __m256 vb = _mm256_set1_ps(beta);
        for (int r = 0; r < MR; r++) {
            float *p = C + (size_t)r * ldc;
            if (beta != 0) {
                acc[r][0] = _mm256_fmadd_ps(vb, _mm256_loadu_ps(p), acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(vb, _mm256_loadu_ps(p + 8), acc[r][1]);
            }
            _mm256_storeu_ps(p, acc[r][0]);
            _mm256_storeu_ps(p + 8, acc[r][1]);
        }
        return;
    }
    float t[MR * NR] __attribute__((aligned(32)));
    __m256 all[12] = {c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51};
    for (int i = 0; i < 12; i++) _mm256_store_ps(t + i * 8, all[i]);
    store_tile(t, C, ldc, mr, nr, beta);
}

typedef void (*kernel_fn)(int, const float *, const float *, int, float *, int, int, int, float);

static kernel_fn pick_kernel(void)
{
    static kernel_fn k;   /* decided once from the CPU; benign race (same value) */
    if (!k) {
        __builtin_cpu_init();
        k = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? kernel_avx2 : kernel_plain;
    }
    return k;
}

int gemm_fast_available(void) { return pick_kernel() == kernel_avx2; }
const char *gemm_fast_isa(void) { return gemm_fast_available() ? "avx2+fma" : "plain C"; }

void gemm_fast(int transA, int transB, int M, int N, int K, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc)
{
    kernel_fn kern = pick_kernel();
    int mp = (M + MR - 1) / MR, np = (N + NR - 1) / NR;
    if (K == 0) {   /* C = beta C */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = beta == 0 ? 0 : beta * C[(size_t)i * ldc + j];
        return;
    }
    size_t a_sz = (size_t)mp * MR * KC, b_sz = (size_t)np * NR * KC;
    float *Ap = pack_space(a_sz + b_sz), *Bp = Ap + a_sz;
    int par = !omp_in_parallel() && (double)M * N * K > 2e5 && mp * np > 1;
    int direct = !transB;   /* B's rows are already contiguous panels: no copy needed */
    for (int k0 = 0; k0 < K; k0 += KC) {
        int kc = K - k0 < KC ? K - k0 : KC;
        float b = k0 == 0 ? beta : 1;
        pack_a(Ap, transA, A, lda, M, k0, kc);
        pack_b(Bp, transB, B, ldb, N, k0, kc, direct);
        #pragma omp parallel for collapse(2) schedule(static) if (par)
        for (int jp = 0; jp < np; jp++)
            for (int ip = 0; ip < mp; ip++) {
                int i0 = ip * MR, j0 = jp * NR, full = j0 + NR <= N;
                const float *bp = direct && full ? B + (size_t)k0 * ldb + j0 : Bp + (size_t)jp * kc * NR;
                kern(kc, Ap + (size_t)ip * kc * MR, bp, direct && full ? ldb : NR, C + (size_t)i0 * ldc + j0,
                     ldc, M - i0 < MR ? M - i0 : MR, N - j0 < NR ? N - j0 : NR, b);
            }
    }
}
#endif
