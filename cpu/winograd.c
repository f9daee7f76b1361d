/* Winograd convolution for 3x3 kernels at stride 1 (Lavin and Gray, "Fast Algorithms for
 * Convolutional Neural Networks", 2016), the readable version: the definition faster Winograd
 * kernels are tested against. Same result as conv2d_forward (cpu/conv2d.c) up to rounding.
 *   in [N,C,H,W], weight [K,C,3,3], out [N,K,P,Q], P = H + 2 pad - 2, Q = W + 2 pad - 2
 *
 * F(m x m, 3 x 3) computes an m x m tile of outputs from an a x a tile of inputs, a = m + 2:
 *   U = G g G^T          the kernel g [3x3] of (k, c), transformed once   [a x a]
 *   V = B^T d B          the input tile d [a x a] of (n, c, tile)         [a x a]
 *   M = sum_c U . V      elementwise products, summed over input channels [a x a]
 *   Y = A^T M A          the tile of outputs                              [m x m]
 * a^2 multiplications per tile and channel pair instead of the direct method's 9 m^2: 2.25x
 * fewer for m = 2 (a = 4), 4x fewer for m = 4 (a = 6). The transforms' entries (fractions
 * for m = 4) make the rounding error grow with m: see tests/test_winograd.c.
 *
 * The backward of the input is itself a 3x3 stride-1 convolution: of dout with the kernel
 * flipped in space and with input and output channels swapped, padded by 2 - pad.
 *
 * The weight gradient, dW[k,c,r,s] = sum_{n,p,q} dout[n,k,p,q] in[n,c,p+r-pad,q+s-pad], uses
 * the same matrices transposed (the transposition principle: y = A^T ((G g) . (B^T d))
 * computes a correlation, so g' = G^T ((A y) . (B^T d)) computes its derivative in g): per
 * m x m tile y of dout and its a x a input tile d,
 *   dW[k,c] = G^T ( sum_{n, tiles} (A y_k A^T) . (B^T d_c B) ) G        [3 x 3]
 * F(2x2, 3x3)'s matrices give F(3x3, 2x2) this way. */
#include <stdlib.h>
#include <string.h>
#include "cpu/cpu.h"

/* F(2x2, 3x3): interpolation points 0, 1, -1 and infinity */
static const real BT2[4 * 4] = {1, 0, -1, 0,
                                0, 1, 1, 0,
                                0, -1, 1, 0,
                                0, 1, 0, -1};
static const real G2[4 * 3] = {1, 0, 0,
                               0.5, 0.5, 0.5,
                               0.5, -0.5, 0.5,
                               0, 0, 1};
static const real AT2[2 * 4] = {1, 1, 1, 0,
                                0, 1, -1, -1};

/* F(4x4, 3x3): points 0, 1, -1, 2, -2 and infinity */
static const real BT4[6 * 6] = {4, 0, -5, 0, 1, 0,
                                0, -4, -4, 1, 1, 0,
                                0, 4, -4, -1, 1, 0,
                                0, -2, -1, 2, 1, 0,
                                0, 2, -1, -2, 1, 0,
                                0, 4, 0, -5, 0, 1};
static const real G4[6 * 3] = {(real)1 / 4, 0, 0,
                               (real)-1 / 6, (real)-1 / 6, (real)-1 / 6,
                               (real)-1 / 6, (real)1 / 6, (real)-1 / 6,
                               (real)1 / 24, (real)1 / 12, (real)1 / 6,
                               (real)1 / 24, (real)-1 / 12, (real)1 / 6,
                               0, 0, 1};
static const real AT4[4 * 6] = {1, 1, 1, 1, 1, 0,
                                0, 1, -1, 2, -2, 0,
                                0, 1, 1, 4, 4, 0,
                                0, 1, -1, 8, -8, 1};

/* out [rows x cols] = L [rows x inner] X [inner x cols] */
static void matmul(real *out, const real *L, const real *X, int rows, int inner, int cols)
{
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            real s = 0;
            for (int k = 0; k < inner; k++) s += L[i * inner + k] * X[k * cols + j];
            out[i * cols + j] = s;
        }
}

/* out [rows x rows] = L X L^T, L [rows x n], X [n x n] */
static void sandwich(real *out, const real *L, const real *X, int rows, int n)
{
    real LX[6 * 6], LT[6 * 6];
    matmul(LX, L, X, rows, n, n);
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < n; j++) LT[j * rows + i] = L[i * n + j];
    matmul(out, LX, LT, rows, n, rows);
}

int winograd_supported(int m) { return m == 2 || m == 4; }

void winograd_conv3x3_forward(real *out, const real *in, const real *weight, int N, int C, int H, int W, int K,
                              int pad, int m)
{
    if (!winograd_supported(m) || pad < 0 || pad > 2) return;
    int a = m + 2, P = H + 2 * pad - 2, Q = W + 2 * pad - 2;
    const real *BT = m == 2 ? BT2 : BT4, *G = m == 2 ? G2 : G4, *AT = m == 2 ? AT2 : AT4;
    /* U[k][c] = G g G^T for every kernel, once */
    real *U = malloc(sizeof(real) * (size_t)K * C * a * a);
    for (int kc = 0; kc < K * C; kc++) sandwich(U + (size_t)kc * a * a, G, weight + (size_t)kc * 9, a, 3);
    int tiles_p = (P + m - 1) / m, tiles_q = (Q + m - 1) / m;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++)
        for (int tp = 0; tp < tiles_p; tp++) {
            real d[6 * 6], V[6 * 6], Y[4 * 4], *M = malloc(sizeof(real) * (size_t)K * a * a);
            for (int tq = 0; tq < tiles_q; tq++) {
                memset(M, 0, sizeof(real) * (size_t)K * a * a);
                for (int c = 0; c < C; c++) {
                    const real *img = in + ((size_t)n * C + c) * H * W;
                    for (int i = 0; i < a; i++)   /* the input tile, zero outside the image */
                        for (int j = 0; j < a; j++) {
                            int h = tp * m - pad + i, w = tq * m - pad + j;
                            d[i * a + j] = h >= 0 && h < H && w >= 0 && w < W ? img[(size_t)h * W + w] : 0;
                        }
                    real BTd[6 * 6], B[6 * 6];
                    matmul(BTd, BT, d, a, a, a);           /* V = B^T d B */
                    for (int i = 0; i < a; i++)
                        for (int j = 0; j < a; j++) B[i * a + j] = BT[j * a + i];
                    matmul(V, BTd, B, a, a, a);
                    for (int k = 0; k < K; k++) {           /* M_k += U_kc . V */
                        const real *u = U + ((size_t)k * C + c) * a * a;
                        for (int e = 0; e < a * a; e++) M[(size_t)k * a * a + e] += u[e] * V[e];
                    }
                }
                for (int k = 0; k < K; k++) {               /* Y = A^T M_k A, the part inside P x Q */
                    sandwich(Y, AT, M + (size_t)k * a * a, m, a);
                    real *o = out + ((size_t)n * K + k) * P * Q;
                    for (int i = 0; i < m && tp * m + i < P; i++)
                        for (int j = 0; j < m && tq * m + j < Q; j++) o[(size_t)(tp * m + i) * Q + tq * m + j] = Y[i * m + j];
                }
            }
            free(M);
        }
    free(U);
}

void winograd_conv3x3_backward_input(real *din, const real *dout, const real *weight, int N, int C, int H, int W,
                                     int K, int pad, int m)
{
    if (!winograd_supported(m) || pad < 0 || pad > 2) return;
    /* din = conv(dout, w'), w'[c][k][r][s] = w[k][c][2-r][2-s], padding 2 - pad */
    real *wf = malloc(sizeof(real) * (size_t)K * C * 9);
    for (int k = 0; k < K; k++)
        for (int c = 0; c < C; c++)
            for (int rs = 0; rs < 9; rs++) wf[((size_t)c * K + k) * 9 + rs] = weight[((size_t)k * C + c) * 9 + 8 - rs];
    winograd_conv3x3_forward(din, dout, wf, N, K, H + 2 * pad - 2, W + 2 * pad - 2, C, 2 - pad, m);
    free(wf);
}

void winograd_conv3x3_backward_weight(real *dweight, const real *dout, const real *in, int N, int C, int H, int W,
                                      int K, int pad, int m)
{
    if (!winograd_supported(m) || pad < 0 || pad > 2) return;
    int a = m + 2, P = H + 2 * pad - 2, Q = W + 2 * pad - 2;
    const real *BT = m == 2 ? BT2 : BT4, *G = m == 2 ? G2 : G4, *AT = m == 2 ? AT2 : AT4;
    real A[6 * 4], GT[3 * 6];   /* A = (A^T)^T [a x m], G^T [3 x a] */
    for (int i = 0; i < m; i++)
        for (int j = 0; j < a; j++) A[j * m + i] = AT[i * a + j];
    for (int i = 0; i < a; i++)
        for (int j = 0; j < 3; j++) GT[j * a + i] = G[i * 3 + j];
    int tiles_p = (P + m - 1) / m, tiles_q = (Q + m - 1) / m;
    #pragma omp parallel for schedule(static)
    for (int k = 0; k < K; k++) {   /* each (k, c) summed by one thread, in a fixed order */
        real *Mk = calloc((size_t)C * a * a, sizeof(real)), y[4 * 4], Z[6 * 6], d[6 * 6], V[6 * 6];
        for (int n = 0; n < N; n++)
            for (int tp = 0; tp < tiles_p; tp++)
                for (int tq = 0; tq < tiles_q; tq++) {
                    const real *g = dout + ((size_t)n * K + k) * P * Q;
                    for (int i = 0; i < m; i++)   /* the dout tile, zero past the edge */
                        for (int j = 0; j < m; j++) {
                            int p = tp * m + i, q = tq * m + j;
                            y[i * m + j] = p < P && q < Q ? g[(size_t)p * Q + q] : 0;
                        }
                    sandwich(Z, A, y, a, m);      /* Z = A y A^T */
                    for (int c = 0; c < C; c++) {
                        const real *img = in + ((size_t)n * C + c) * H * W;
                        for (int i = 0; i < a; i++)
                            for (int j = 0; j < a; j++) {
                                int h = tp * m - pad + i, w = tq * m - pad + j;
                                d[i * a + j] = h >= 0 && h < H && w >= 0 && w < W ? img[(size_t)h * W + w] : 0;
                            }
                        sandwich(V, BT, d, a, a); /* V = B^T d B */
                        real *acc = Mk + (size_t)c * a * a;
                        for (int e = 0; e < a * a; e++) acc[e] += Z[e] * V[e];
                    }
                }
        for (int c = 0; c < C; c++) sandwich(dweight + ((size_t)k * C + c) * 9, GT, Mk + (size_t)c * a * a, 3, a);
        free(Mk);
    }
}
