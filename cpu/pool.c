/* 2-D pooling with a k x k window, stride and zero/implicit padding (PyTorch MaxPool2d,
 * AvgPool2d with count_include_pad=True, ceil_mode=False).
 *   in [N,C,H,W] -> out [N,C,P,Q], P = (H + 2pad - k)/stride + 1 (same for Q)
 * max: out = max over the window of in (padding counts as -inf); argmax stores the index
 *      h*W + w of the winner inside its plane (first one on ties).
 *      backward: din[argmax] += dout (windows may overlap).
 * avg: out = (1/k^2) sum over the window (padding counts as 0; divisor always k*k).
 *      backward: every input in the window receives dout / k^2.
 * Global average pooling is avgpool2d with k = H = W, stride 1 (or any), pad 0. */
#include <math.h>
#include <string.h>
#include "cpu/cpu.h"

void maxpool2d_forward(real *out, int32_t *argmax, const real *in,
                       int N, int C, int H, int W, int k, int stride, int pad)
{
    int P = (H + 2 * pad - k) / stride + 1, Q = (W + 2 * pad - k) / stride + 1;
    #pragma omp parallel for schedule(static)
    for (int nc = 0; nc < N * C; nc++) {
        const real *x = in + (size_t)nc * H * W;
        for (int p = 0; p < P; p++)
            for (int q = 0; q < Q; q++) {
                real best = -INFINITY;
                int32_t besti = -1;
                for (int r = 0; r < k; r++)
                    for (int s = 0; s < k; s++) {
                        int h = p * stride - pad + r, w = q * stride - pad + s;
                        if (h < 0 || h >= H || w < 0 || w >= W) continue;
                        if (besti < 0 || x[h * W + w] > best) { best = x[h * W + w]; besti = h * W + w; }
                    }
                out[(size_t)nc * P * Q + p * Q + q] = best;
                argmax[(size_t)nc * P * Q + p * Q + q] = besti;
            }
    }
}

void maxpool2d_backward(real *din, const real *dout, const int32_t *argmax,
                        int N, int C, int H, int W, int k, int stride, int pad)
{
    int P = (H + 2 * pad - k) / stride + 1, Q = (W + 2 * pad - k) / stride + 1;
    #pragma omp parallel for schedule(static)
    for (int nc = 0; nc < N * C; nc++) {
        real *dx = din + (size_t)nc * H * W;
        memset(dx, 0, sizeof(real) * (size_t)H * W);
        for (int i = 0; i < P * Q; i++)
            dx[argmax[(size_t)nc * P * Q + i]] += dout[(size_t)nc * P * Q + i];
    }
}

void avgpool2d_forward(real *out, const real *in,
                       int N, int C, int H, int W, int k, int stride, int pad)
{
    int P = (H + 2 * pad - k) / stride + 1, Q = (W + 2 * pad - k) / stride + 1;
    #pragma omp parallel for schedule(static)
    for (int nc = 0; nc < N * C; nc++) {
        const real *x = in + (size_t)nc * H * W;
        for (int p = 0; p < P; p++)
            for (int q = 0; q < Q; q++) {
                double acc = 0;
                for (int r = 0; r < k; r++)
                    for (int s = 0; s < k; s++) {
                        int h = p * stride - pad + r, w = q * stride - pad + s;
                        if (h >= 0 && h < H && w >= 0 && w < W) acc += x[h * W + w];
                    }
                out[(size_t)nc * P * Q + p * Q + q] = (real)(acc / (k * k));
            }
    }
}

void avgpool2d_backward(real *din, const real *dout,
                        int N, int C, int H, int W, int k, int stride, int pad)
{
    int P = (H + 2 * pad - k) / stride + 1, Q = (W + 2 * pad - k) / stride + 1;
    #pragma omp parallel for schedule(static)
    for (int nc = 0; nc < N * C; nc++) {
        real *dx = din + (size_t)nc * H * W;
        memset(dx, 0, sizeof(real) * (size_t)H * W);
        for (int p = 0; p < P; p++)
            for (int q = 0; q < Q; q++) {
                real g = dout[(size_t)nc * P * Q + p * Q + q] / (real)(k * k);
                for (int r = 0; r < k; r++)
                    for (int s = 0; s < k; s++) {
                        int h = p * stride - pad + r, w = q * stride - pad + s;
                        if (h >= 0 && h < H && w >= 0 && w < W) dx[h * W + w] += g;
                    }
            }
    }
}
