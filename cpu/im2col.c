/* im2col / col2im for one image.
 *   in  [C,H,W]
 *   col [C*R*S, P*Q]:  col[(c*R + r)*S + s, p*Q + q] = in[c, p*stride - pad + r, q*stride - pad + s]
 *                      (0 where that position falls in the zero padding)
 * so a convolution becomes out[K, P*Q] = weight[K, C*R*S] * col.
 * col2im is the adjoint: it ADDS every col entry back onto the input pixel it came from
 * (pixels covered by several windows receive several contributions). The caller zeroes `in`. */
#include "cpu/cpu.h"

void im2col(real *col, const real *in, int C, int H, int W, int R, int S,
            int stride, int pad, int P, int Q)
{
    for (int c = 0; c < C; c++)
        for (int r = 0; r < R; r++)
            for (int s = 0; s < S; s++) {
                real *row = col + ((size_t)(c * R + r) * S + s) * P * Q;
                for (int p = 0; p < P; p++) {
                    int h = p * stride - pad + r;
                    for (int q = 0; q < Q; q++) {
                        int w = q * stride - pad + s;
                        int inside = h >= 0 && h < H && w >= 0 && w < W;
                        row[p * Q + q] = inside ? in[((size_t)c * H + h) * W + w] : 0;
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
                for (int p = 0; p < P; p++) {
                    int h = p * stride - pad + r;
                    if (h < 0 || h >= H) continue;
                    for (int q = 0; q < Q; q++) {
                        int w = q * stride - pad + s;
                        if (w >= 0 && w < W) in[((size_t)c * H + h) * W + w] += row[p * Q + q];
                    }
                }
            }
}
