/* GEMM, row-major:  C[M,N] = op(A)[M,K] * op(B)[K,N] + beta * C
 *   op(A) = A      (A is [M,K], lda >= K)   or  A^T (A is [K,M], lda >= M)
 *   op(B) = B      (B is [K,N], ldb >= N)   or  B^T (B is [N,K], ldb >= K)
 * beta == 0 means C is write-only (never read, so it may hold NaN).
 *
 * gemm_ref: the definition, one dot product per output element. Tests compare against it.
 * gemm:     in the float build, gemm_fast (gemm_fast.c: packed, AVX2/FMA micro-kernel);
 *           with CONVNET_GEMM=simple (and in the double build used by the gradient checks)
 *           the loops below, ordered for contiguous access, output rows split across threads. Every C element is still summed by one thread in
 *           a fixed k order, so the result does not depend on the thread count.
 */
#include <stdlib.h>
#include <string.h>
#include "cpu/cpu.h"

#define AT(X, ld, i, j) (X)[(size_t)(i) * (ld) + (j)]

void gemm_ref(int transA, int transB, int M, int N, int K, const real *A, int lda,
              const real *B, int ldb, real beta, real *C, int ldc)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            real acc = 0;
            for (int k = 0; k < K; k++) {
                real a = transA ? AT(A, lda, k, i) : AT(A, lda, i, k);
                real b = transB ? AT(B, ldb, j, k) : AT(B, ldb, k, j);
                acc += a * b;
            }
            AT(C, ldc, i, j) = beta == 0 ? acc : acc + beta * AT(C, ldc, i, j);
        }
}

/* Row i of C: c[j] = beta*c[j] + sum_k op(A)[i,k] * op(B)[k,j]. */
static void gemm_row(int transA, int transB, int i, int N, int K, const real *A, int lda,
                     const real *B, int ldb, real beta, real *c)
{
    if (!transB) {
        /* axpy form: c += a_ik * B[k,:]  (contiguous in j, vectorizes) */
        for (int j = 0; j < N; j++) c[j] = beta == 0 ? 0 : beta * c[j];
        for (int k = 0; k < K; k++) {
            real a = transA ? AT(A, lda, k, i) : AT(A, lda, i, k);
            const real *b = &AT(B, ldb, k, 0);
            for (int j = 0; j < N; j++) c[j] += a * b[j];
        }
    } else {
        /* dot form: c[j] = A[i,:] . B[j,:]  (B^T rows are contiguous in k) */
        for (int j = 0; j < N; j++) {
            const real *b = &AT(B, ldb, j, 0);
            real acc = 0;
            if (!transA) {
                const real *a = &AT(A, lda, i, 0);
                for (int k = 0; k < K; k++) acc += a[k] * b[k];
            } else {
                for (int k = 0; k < K; k++) acc += AT(A, lda, k, i) * b[k];
            }
            c[j] = beta == 0 ? acc : acc + beta * c[j];
        }
    }
}

void gemm(int transA, int transB, int M, int N, int K, const real *A, int lda,
          const real *B, int ldb, real beta, real *C, int ldc)
{
#ifndef CONVNET_REAL_DOUBLE
    /* float build: the packed AVX2 GEMM of gemm_fast.c unless CONVNET_GEMM=simple asks for
     * the readable loops below (kept for reading and for comparison in bench/). */
    static int simple = -1;
    if (simple < 0) { const char *e = getenv("CONVNET_GEMM"); simple = e && !strcmp(e, "simple"); }
    if (!simple) { gemm_fast(transA, transB, M, N, K, A, lda, B, ldb, beta, C, ldc); return; }
#endif
    #pragma omp parallel for schedule(static) if ((long)M * N * K > 32768)
    for (int i = 0; i < M; i++)
        gemm_row(transA, transB, i, N, K, A, lda, B, ldb, beta, &AT(C, ldc, i, 0));
}
