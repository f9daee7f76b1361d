/* Forward checks of the CPU operators (float build) against tiny hand-computed cases,
 * GEMM against its reference, and thread-count independence. */
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "core/ops.h"
#include "cpu/cpu.h"
#include "tests/gradcheck.h"

#define EPS 1e-6f

START_TEST(gemm_matches_reference)
{
    /* all four transpose cases, odd sizes, beta 0 on a NaN-filled C and beta 1 */
    int M = 13, N = 17, K = 11;
    float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N);
    float *C0 = malloc(sizeof(float) * M * N), *C1 = malloc(sizeof(float) * M * N);
    fill_normal_f(A, M * K, 1);
    fill_normal_f(B, K * N, 2);
    for (int ta = 0; ta <= 1; ta++)
        for (int tb = 0; tb <= 1; tb++)
            for (int beta = 0; beta <= 1; beta++) {
                fill_normal_f(C0, M * N, 3);
                if (beta == 0) for (int i = 0; i < M * N; i++) C0[i] = NAN;
                memcpy(C1, C0, sizeof(float) * M * N);
                int lda = ta ? M : K, ldb = tb ? K : N;
                gemm_ref(ta, tb, M, N, K, A, lda, B, ldb, (float)beta, C0, N);
                gemm(ta, tb, M, N, K, A, lda, B, ldb, (float)beta, C1, N);
                for (int i = 0; i < M * N; i++)
                    ck_assert_msg(fabsf(C0[i] - C1[i]) <= 1e-5f * (1 + fabsf(C0[i])),
                                  "gemm ta=%d tb=%d beta=%d at %d: %g vs %g", ta, tb, beta, i, C1[i], C0[i]);
            }
    /* 2x2 by hand: [1 2;3 4][5 6;7 8] = [19 22;43 50] */
    float a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8}, c[4];
    gemm(0, 0, 2, 2, 2, a, 2, b, 2, 0, c, 2);
    ck_assert(c[0] == 19 && c[1] == 22 && c[2] == 43 && c[3] == 50);
    free(A); free(B); free(C0); free(C1);
}
END_TEST

START_TEST(conv2d_by_hand)
{
    float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, w[9], out[9], ws[81];
    for (int i = 0; i < 9; i++) w[i] = 1;
    conv2d_forward(out, x, w, 1, 1, 3, 3, 1, 3, 3, 1, 1, ws);        /* 3x3, pad 1 */
    float want[9] = {12, 21, 16, 27, 45, 33, 24, 39, 28};
    for (int i = 0; i < 9; i++) ck_assert_float_eq_tol(out[i], want[i], EPS);
    conv2d_forward(out, x, w, 1, 1, 3, 3, 1, 3, 3, 2, 1, ws);        /* stride 2 */
    float want2[4] = {12, 16, 24, 28};
    for (int i = 0; i < 4; i++) ck_assert_float_eq_tol(out[i], want2[i], EPS);
    /* cross-correlation, not convolution: a kernel with a single 1 at (0,0) shifts */
    memset(w, 0, sizeof w);
    w[0] = 1;
    conv2d_forward(out, x, w, 1, 1, 3, 3, 1, 3, 3, 1, 1, ws);
    ck_assert_float_eq_tol(out[4], 1, EPS);   /* centre picks x[-1,-1] relative = x[0,0] */
    /* 1x1 stride 2, two channels in, one out: 2*x0 + 3*x1 at even positions */
    float x2[18], w2[2] = {2, 3}, o2[4];
    for (int i = 0; i < 18; i++) x2[i] = (float)i;
    conv2d_forward(o2, x2, w2, 1, 2, 3, 3, 1, 1, 1, 2, 0, ws);
    ck_assert_float_eq_tol(o2[0], 2 * 0 + 3 * 9, EPS);
    ck_assert_float_eq_tol(o2[3], 2 * 8 + 3 * 17, EPS);
}
END_TEST

START_TEST(batchnorm_by_hand)
{
    /* one channel, N=2, HW=2: x = 1,2,3,4 -> mean 2.5, biased var 1.25, unbiased 5/3 */
    float x[4] = {1, 2, 3, 4}, y[4], g = 2, b = 0.5f, mean, invstd, rm = 0, rv = 1;
    batchnorm_forward_train(y, &mean, &invstd, &rm, &rv, x, &g, &b, 2, 1, 2, 0.1f, 1e-5f);
    for (int i = 0; i < 4; i++)
        ck_assert_float_eq_tol(y[i], 2 * (x[i] - 2.5f) / sqrtf(1.25f + 1e-5f) + 0.5f, 1e-5f);
    ck_assert_float_eq_tol(mean, 2.5f, EPS);
    ck_assert_float_eq_tol(rm, 0.25f, EPS);
    ck_assert_float_eq_tol(rv, 0.9f + 0.1f * 5.0f / 3.0f, 1e-6f);
    batchnorm_forward_eval(y, x, &g, &b, &rm, &rv, 2, 1, 2, 1e-5f);
    ck_assert_float_eq_tol(y[3], 2 * (4 - rm) / sqrtf(rv + 1e-5f) + 0.5f, 1e-5f);
}
END_TEST

START_TEST(pool_by_hand)
{
    float x[16], out[4], d[16], ones[9], o3[4];
    int32_t arg[4];
    for (int i = 0; i < 16; i++) x[i] = (float)i;
    maxpool2d_forward(out, arg, x, 1, 1, 4, 4, 2, 2, 0);
    ck_assert(out[0] == 5 && out[1] == 7 && out[2] == 13 && out[3] == 15);
    ck_assert(arg[0] == 5 && arg[3] == 15);
    float g[4] = {1, 2, 3, 4};
    maxpool2d_backward(d, g, arg, 1, 1, 4, 4, 2, 2, 0);
    ck_assert(d[5] == 1 && d[7] == 2 && d[13] == 3 && d[15] == 4 && d[0] == 0);
    avgpool2d_forward(out, x, 1, 1, 4, 4, 2, 2, 0);
    ck_assert(out[0] == 2.5f && out[1] == 4.5f && out[2] == 10.5f && out[3] == 12.5f);
    for (int i = 0; i < 9; i++) ones[i] = 1;
    avgpool2d_forward(o3, ones, 1, 1, 3, 3, 3, 2, 1);   /* padding counts in the divisor */
    ck_assert_float_eq_tol(o3[0], 4.0f / 9, EPS);
    avgpool2d_forward(out, x, 1, 1, 4, 4, 4, 1, 0);     /* global */
    ck_assert_float_eq_tol(out[0], 7.5f, EPS);
}
END_TEST

START_TEST(relu_linear_add_by_hand)
{
    float x[3] = {-1, 0, 2}, y[3], dy[3] = {5, 6, 7}, dx[3];
    relu_forward(y, x, 3);
    ck_assert(y[0] == 0 && y[1] == 0 && y[2] == 2);
    relu_backward(dx, dy, y, 3);
    ck_assert(dx[0] == 0 && dx[1] == 0 && dx[2] == 7);
    float in[2] = {1, 2}, w[4] = {1, 0, 3, 4}, b[2] = {0.5f, -1}, out[2];
    linear_forward(out, in, w, b, 1, 2, 2);
    ck_assert(out[0] == 1.5f && out[1] == 10);
    add_forward(y, x, dy, 3);
    ck_assert(y[0] == 4 && y[2] == 9);
    add_inplace(y, x, 3);
    ck_assert(y[0] == 3 && y[2] == 11);
}
END_TEST

START_TEST(softmax_xent_by_hand)
{
    float z[4] = {0, 0, 1000, 0}, loss[2], p[4], dz[4];
    int32_t lab[2] = {0, 1}, cor[2];
    softmax_xent_forward(loss, p, cor, z, lab, 2, 2);
    ck_assert_float_eq_tol(loss[0], logf(2), 1e-6f);
    ck_assert_float_eq_tol(loss[1], 1000, 1e-3f);       /* stable: no inf/NaN */
    ck_assert(cor[0] == 1 && cor[1] == 0);              /* tie: first max wins */
    softmax_xent_backward(dz, p, lab, 2, 2);
    ck_assert_float_eq_tol(dz[0], (0.5f - 1) / 2, EPS);
    ck_assert_float_eq_tol(dz[2], 1.0f / 2, EPS);
    ck_assert_float_eq_tol(dz[3], -1.0f / 2, EPS);
}
END_TEST

START_TEST(sgd_by_hand)
{
    /* PyTorch: g' = g + wd w; buf = g' (first) else m buf + g'; w -= lr buf */
    float w = 1, g = 0.5f, buf = 123;
    sgd_step(&w, &g, &buf, 1, 0.1f, 0.9f, 0.1f, 1);
    ck_assert_float_eq_tol(buf, 0.6f, EPS);
    ck_assert_float_eq_tol(w, 0.94f, EPS);
    sgd_step(&w, &g, &buf, 1, 0.1f, 0.9f, 0.1f, 0);
    ck_assert_float_eq_tol(buf, 0.9f * 0.6f + 0.5f + 0.094f, EPS);
    ck_assert_float_eq_tol(w, 0.94f - 0.1f * (0.54f + 0.594f), EPS);
}
END_TEST

START_TEST(results_independent_of_threads)
{
    int N = 5, C = 3, H = 9, W = 8, K = 4;
    size_t nx = (size_t)N * C * H * W, nw = (size_t)K * C * 9, no = (size_t)N * K * 5 * 4;
    float *x = malloc(nx * 4), *w = malloc(nw * 4), *dy = malloc(no * 4);
    float *ws = malloc(conv2d_workspace_floats(N, C, H, W, K, 3, 3, 2, 1) * 4);
    float *o1 = malloc(no * 4), *o2 = malloc(no * 4), *dw1 = malloc(nw * 4), *dw2 = malloc(nw * 4);
    float *dx1 = malloc(nx * 4), *dx2 = malloc(nx * 4);
    fill_normal_f(x, nx, 1); fill_normal_f(w, nw, 2); fill_normal_f(dy, no, 3);
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    conv2d_forward(o1, x, w, N, C, H, W, K, 3, 3, 2, 1, ws);
    conv2d_backward_weight(dw1, dy, x, N, C, H, W, K, 3, 3, 2, 1, ws);
    conv2d_backward_input(dx1, dy, w, N, C, H, W, K, 3, 3, 2, 1, ws);
    omp_set_num_threads(2);
    conv2d_forward(o2, x, w, N, C, H, W, K, 3, 3, 2, 1, ws);
    conv2d_backward_weight(dw2, dy, x, N, C, H, W, K, 3, 3, 2, 1, ws);
    conv2d_backward_input(dx2, dy, w, N, C, H, W, K, 3, 3, 2, 1, ws);
    omp_set_num_threads(saved);
    ck_assert(memcmp(o1, o2, no * 4) == 0);
    ck_assert(memcmp(dw1, dw2, nw * 4) == 0);
    ck_assert(memcmp(dx1, dx2, nx * 4) == 0);
    free(x); free(w); free(dy); free(ws); free(o1); free(o2); free(dw1); free(dw2); free(dx1); free(dx2);
}
END_TEST

Suite *suite_ops_forward(void)
{
    Suite *s = suite_create("cpu operators (forward, by hand)");
    TCase *t = tcase_create("ops");
    tcase_add_test(t, gemm_matches_reference);
    tcase_add_test(t, conv2d_by_hand);
    tcase_add_test(t, batchnorm_by_hand);
    tcase_add_test(t, pool_by_hand);
    tcase_add_test(t, relu_linear_add_by_hand);
    tcase_add_test(t, softmax_xent_by_hand);
    tcase_add_test(t, sgd_by_hand);
    tcase_add_test(t, results_independent_of_threads);
    suite_add_tcase(s, t);
    return s;
}
