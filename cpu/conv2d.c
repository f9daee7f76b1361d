/* 2-D convolution (PyTorch Conv2d: cross-correlation, zero padding), via im2col + GEMM.
 *   in [N,C,H,W], weight [K,C,R,S], out [N,K,P,Q], P = (H+2pad-R)/stride+1 (same for Q)
 *   out[n,k,p,q] = sum_{c,r,s} weight[k,c,r,s] * in[n, c, p*stride-pad+r, q*stride-pad+s]
 *
 * Per image n, with col_n = im2col(in[n]) of shape [CRS, PQ]:
 *   forward          out[n]  = weight[K,CRS] * col_n                 (GEMM NN)
 *   backward_input   din[n]  = col2im( weight^T[CRS,K] * dout[n] )   (GEMM TN)
 *   backward_weight  dweight = sum_n dout[n][K,PQ] * colT_n          (GEMM NN; colT_n = col_n^T
 *                                                                     built directly by im2col_t)
 * workspace: conv2d_workspace_floats() (room for N image columns plus the weight-gradient
 * partials; the CPU uses one column slice per thread, the GPU all N at once).
 */
#include <omp.h>
#include <string.h>
#include "cpu/cpu.h"

/* Each thread im2cols one image at a time into its own slice of the workspace (a few hundred
 * KB that stays in cache) and multiplies right away. */
static int threads_for(int jobs)
{
    int t = omp_get_max_threads();
    return t < jobs ? t : jobs > 0 ? jobs : 1;
}

void conv2d_forward(real *out, const real *in, const real *weight,
                    int N, int C, int H, int W, int K, int R, int S,
                    int stride, int pad, real *workspace)
{
    int P = (H + 2 * pad - R) / stride + 1, Q = (W + 2 * pad - S) / stride + 1;
    int CRS = C * R * S, PQ = P * Q;
    #pragma omp parallel for schedule(static) num_threads(threads_for(N))
    for (int n = 0; n < N; n++) {
        real *col = workspace + (size_t)omp_get_thread_num() * CRS * PQ;
        im2col(col, in + (size_t)n * C * H * W, C, H, W, R, S, stride, pad, P, Q);
        gemm(0, 0, K, PQ, CRS, weight, CRS, col, PQ, 0, out + (size_t)n * K * PQ, PQ);
    }
}

void conv2d_backward_input(real *din, const real *dout, const real *weight,
                           int N, int C, int H, int W, int K, int R, int S,
                           int stride, int pad, real *workspace)
{
    int P = (H + 2 * pad - R) / stride + 1, Q = (W + 2 * pad - S) / stride + 1;
    int CRS = C * R * S, PQ = P * Q;
    #pragma omp parallel for schedule(static) num_threads(threads_for(N))
    for (int n = 0; n < N; n++) {
        real *col = workspace + (size_t)omp_get_thread_num() * CRS * PQ;
        gemm(1, 0, CRS, PQ, K, weight, CRS, dout + (size_t)n * K * PQ, PQ, 0, col, PQ);
        real *dimg = din + (size_t)n * C * H * W;
        memset(dimg, 0, sizeof(real) * (size_t)C * H * W);
        col2im(dimg, col, C, H, W, R, S, stride, pad, P, Q);
    }
}

/* The batch is cut into CONV_DW_CHUNKS fixed chunks (fewer if N is smaller); each chunk sums
 * its images into its own partial dweight, and the partials are added in chunk order. The
 * split depends on N only, so the result does not depend on the number of threads. */
void conv2d_backward_weight(real *dweight, const real *dout, const real *in,
                            int N, int C, int H, int W, int K, int R, int S,
                            int stride, int pad, real *workspace)
{
    int P = (H + 2 * pad - R) / stride + 1, Q = (W + 2 * pad - S) / stride + 1;
    int CRS = C * R * S, PQ = P * Q, chunks = N < CONV_DW_CHUNKS ? N : CONV_DW_CHUNKS;
    real *partial = workspace + (size_t)N * CRS * PQ;          /* chunks x [K, CRS] */
    #pragma omp parallel for schedule(static) num_threads(threads_for(chunks))
    for (int c = 0; c < chunks; c++) {
        real *col = workspace + (size_t)omp_get_thread_num() * CRS * PQ;
        real *part = partial + (size_t)c * K * CRS;
        int n0 = (int)((long)c * N / chunks), n1 = (int)((long)(c + 1) * N / chunks);
        for (int n = n0; n < n1; n++) {
            im2col_t(col, in + (size_t)n * C * H * W, C, H, W, R, S, stride, pad, P, Q);
            gemm(0, 0, K, CRS, PQ, dout + (size_t)n * K * PQ, PQ, col, CRS, n == n0 ? 0 : 1, part, CRS);
        }
    }
    memcpy(dweight, partial, sizeof(real) * (size_t)K * CRS);
    for (int c = 1; c < chunks; c++)
        for (size_t i = 0; i < (size_t)K * CRS; i++) dweight[i] += partial[(size_t)c * K * CRS + i];
}

/* Bias of a convolution: out[n,k,i] += bias[k]; dbias[k] = sum_{n,i} dout[n,k,i]. */
void bias_forward(real *out, const real *bias, int N, int K, int HW)
{
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            real *o = out + ((size_t)n * K + k) * HW;
            for (int i = 0; i < HW; i++) o[i] += bias[k];
        }
}

void bias_backward(real *dbias, const real *dout, int N, int K, int HW)
{
    for (int k = 0; k < K; k++) {
        double acc = 0;
        for (int n = 0; n < N; n++) {
            const real *d = dout + ((size_t)n * K + k) * HW;
            for (int i = 0; i < HW; i++) acc += d[i];
        }
        dbias[k] = (real)acc;
    }
}
