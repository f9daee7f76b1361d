/* im2col / col2im for one image.
 *   in  [C,H,W]
 *   col [C*R*S, P*Q]:  col[(c*R + r)*S + s, p*Q + q] = in[c, p*stride - pad + r, q*stride - pad + s]
 *                      (0 where that position falls in the zero padding)
 * so a convolution becomes out[K, P*Q] = weight[K, C*R*S] * col.
 * col2im is the adjoint: it ADDS every col entry back onto the input pixel it came from
 * (pixels covered by several windows receive several contributions). The caller zeroes `in`. */
#include <string.h>
#include "cpu/cpu.h"

/* Output columns q whose input column q*stride - pad + s lies inside [0, W): [*lo, *hi). */
static void valid_range(int W, int Q, int stride, int pad, int s, int *lo, int *hi)
{
    int a = pad - s;                                   /* need q*stride >= a */
    *lo = a <= 0 ? 0 : (a + stride - 1) / stride;
    int b = W + pad - s;                               /* need q*stride < b */
    *hi = b <= 0 ? 0 : (b + stride - 1) / stride;
    if (*hi > Q) *hi = Q;
    if (*lo > *hi) *lo = *hi;
}

void im2col(real *col, const real *in, int C, int H, int W, int R, int S,
            int stride, int pad, int P, int Q)
{
    for (int c = 0; c < C; c++)
        for (int r = 0; r < R; r++)
            for (int s = 0; s < S; s++) {
                real *row = col + ((size_t)(c * R + r) * S + s) * P * Q;
                int qlo, qhi;
                valid_range(W, Q, stride, pad, s, &qlo, &qhi);
                for (int p = 0; p < P; p++) {
                    int h = p * stride - pad + r;
                    real *dst = row + (size_t)p * Q;
                    if (h < 0 || h >= H) { for (int q = 0; q < Q; q++) dst[q] = 0; continue; }
                    const real *src = in + ((size_t)c * H + h) * W - pad + s;   /* src[q*stride] */
                    for (int q = 0; q < qlo; q++) dst[q] = 0;
                    if (stride == 1) memcpy(dst + qlo, src + qlo, sizeof(real) * (qhi - qlo));
                    else for (int q = qlo; q < qhi; q++) dst[q] = src[q * stride];
                    for (int q = qhi; q < Q; q++) dst[q] = 0;
                }
            }
}

/* The transpose of im2col: colT[p*Q + q, (c*R + r)*S + s], shape [P*Q, C*R*S]. The weight
 * gradient dW = dout[K,PQ] * colT[PQ,CRS] is then a plain (non-transposed) GEMM whose B
 * operand the fast GEMM reads in place, instead of transposing col inside the GEMM. */
void im2col_t(real *colT, const real *in, int C, int H, int W, int R, int S,
              int stride, int pad, int P, int Q)
{
    int CRS = C * R * S;
    for (int p = 0; p < P; p++)
        for (int q = 0; q < Q; q++) {
            real *row = colT + ((size_t)p * Q + q) * CRS;
            for (int c = 0; c < C; c++)
                for (int r = 0; r < R; r++) {
                    int h = p * stride - pad + r;
                    const real *src = in + ((size_t)c * H + h) * W;
                    for (int s = 0; s < S; s++) {
                        int w = q * stride - pad + s;
                        row[(c * R + r) * S + s] = h >= 0 && h < H && w >= 0 && w < W ? src[w] : 0;
                    }
                }
        }
}

void col2im(real *in, const real *col, int C, int H, int W, int R, int S,
            int stride, int pad, int P, int Q)
{
    for (int c = 0; c < C; c++)
        for (int r = 0; r < R; r++)
            for (int s = 0; s < S; s++) {
                const real *row = col + ((size_t)(c * R + r) * S + s) * P * Q;
                int qlo, qhi;
                valid_range(W, Q, stride, pad, s, &qlo, &qhi);
                for (int p = 0; p < P; p++) {
                    int h = p * stride - pad + r;
                    if (h < 0 || h >= H) continue;
                    real *dst = in + ((size_t)c * H + h) * W - pad + s;         /* dst[q*stride] */
                    const real *src = row + (size_t)p * Q;
                    if (stride == 1) {
                        #pragma omp simd
                        for (int q = qlo; q < qhi; q++) dst[q] += src[q];
                    }
                    else for (int q = qlo; q < qhi; q++) dst[q * stride] += src[q];
                }
            }
}
