/* Finite-difference gradient checks of every CPU operator with a backward, in double.
 * See tests/gradcheck.h for the method. This file sees the _f64 build of cpu/. */
#define CONVNET_REAL_DOUBLE
#include "tests/f64_names.h"
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cpu/cpu.h"
#include "core/ops.h"
#include "tests/gradcheck.h"

static double *dalloc(size_t n) { return calloc(n ? n : 1, sizeof(double)); }
static double *dnormal(size_t n, unsigned seed) { double *x = dalloc(n); fill_normal(x, n, seed); return x; }

/* ------------------------------------------------------------------ conv2d */
typedef struct { int N, C, H, W, K, R, S, stride, pad; } ConvShape;
static const ConvShape conv_shapes[] = {
    {2, 3, 7, 6, 4, 3, 3, 1, 1},   /* 3x3 / s1 / p1, odd sizes */
    {2, 3, 7, 7, 5, 3, 3, 2, 1},   /* 3x3 / s2 / p1 */
    {3, 4, 6, 5, 2, 1, 1, 2, 0},   /* 1x1 / s2 / p0 (the downsample conv) */
    {2, 2, 5, 7, 3, 2, 3, 2, 0},   /* non-square kernel */
    {1, 2, 4, 4, 3, 5, 5, 1, 2},   /* kernel larger than the image */
};
typedef struct { ConvShape s; double *x, *w, *out, *rnd, *ws; size_t nout; } ConvCtx;

static double conv_loss(void *p, int *kink)
{
    (void)kink;
    ConvCtx *c = p;
    ConvShape s = c->s;
    conv2d_forward(c->out, c->x, c->w, s.N, s.C, s.H, s.W, s.K, s.R, s.S, s.stride, s.pad, c->ws);
    return dot(c->out, c->rnd, c->nout);
}

START_TEST(grad_conv2d)
{
    ConvShape s = conv_shapes[_i];
    int P = (s.H + 2 * s.pad - s.R) / s.stride + 1, Q = (s.W + 2 * s.pad - s.S) / s.stride + 1;
    size_t nx = (size_t)s.N * s.C * s.H * s.W, nw = (size_t)s.K * s.C * s.R * s.S;
    ConvCtx c = {s, dnormal(nx, 1), dnormal(nw, 2), dalloc((size_t)s.N * s.K * P * Q),
                 dnormal((size_t)s.N * s.K * P * Q, 3), dalloc(conv2d_workspace_floats(s.N, s.C, s.H, s.W, s.K, s.R, s.S, s.stride, s.pad)),
                 (size_t)s.N * s.K * P * Q};
    double *dx = dalloc(nx), *dw = dalloc(nw);
    conv2d_backward_input(dx, c.rnd, c.w, s.N, s.C, s.H, s.W, s.K, s.R, s.S, s.stride, s.pad, c.ws);
    conv2d_backward_weight(dw, c.rnd, c.x, s.N, s.C, s.H, s.W, s.K, s.R, s.S, s.stride, s.pad, c.ws);
    ASSERT_GRAD(grad_check(c.x, nx, dx, conv_loss, &c), "conv2d d/dinput");
    ASSERT_GRAD(grad_check(c.w, nw, dw, conv_loss, &c), "conv2d d/dweight");
    free(c.x); free(c.w); free(c.out); free(c.rnd); free(c.ws); free(dx); free(dw);
}
END_TEST

/* ------------------------------------------------------------------ bias */
typedef struct { int N, K, HW; double *x, *b, *out, *rnd; } BiasCtx;
static double bias_loss(void *p, int *kink)
{
    (void)kink;
    BiasCtx *c = p;
    size_t n = (size_t)c->N * c->K * c->HW;
    memcpy(c->out, c->x, n * sizeof(double));
    bias_forward(c->out, c->b, c->N, c->K, c->HW);
    return dot(c->out, c->rnd, n);
}
START_TEST(grad_bias)
{
    BiasCtx c = {3, 4, 5, dnormal(60, 1), dnormal(4, 2), dalloc(60), dnormal(60, 3)};
    double *db = dalloc(4);
    bias_backward(db, c.rnd, 3, 4, 5);
    ASSERT_GRAD(grad_check(c.b, 4, db, bias_loss, &c), "conv bias d/dbias");
    free(c.x); free(c.b); free(c.out); free(c.rnd); free(db);
}
END_TEST

/* ------------------------------------------------------------------ batchnorm */
typedef struct { int N, C, HW; double *x, *g, *b, *out, *rnd, *mean, *invstd, *rm, *rv; } BnCtx;
static double bn_loss(void *p, int *kink)
{
    (void)kink;
    BnCtx *c = p;
    batchnorm_forward_train(c->out, c->mean, c->invstd, c->rm, c->rv, c->x, c->g, c->b,
                            c->N, c->C, c->HW, 0.1, 1e-5);
    return dot(c->out, c->rnd, (size_t)c->N * c->C * c->HW);
}
START_TEST(grad_batchnorm)
{
    static const int shapes[][3] = {{3, 4, 15}, {5, 3, 1}, {2, 2, 9}};
    int N = shapes[_i][0], C = shapes[_i][1], HW = shapes[_i][2];
    size_t n = (size_t)N * C * HW;
    BnCtx c = {N, C, HW, dnormal(n, 1), dnormal(C, 2), dnormal(C, 3), dalloc(n), dnormal(n, 4),
               dalloc(C), dalloc(C), dalloc(C), dalloc(C)};
    for (size_t i = 0; i < n; i++) c.x[i] = 0.5 + 2 * c.x[i];   /* not already normalized */
    double *dx = dalloc(n), *dg = dalloc(C), *db = dalloc(C);
    bn_loss(&c, NULL);
    batchnorm_backward(dx, dg, db, c.rnd, c.x, c.g, c.mean, c.invstd, N, C, HW);
    ASSERT_GRAD(grad_check(c.x, n, dx, bn_loss, &c), "batchnorm d/dinput");
    ASSERT_GRAD(grad_check(c.g, C, dg, bn_loss, &c), "batchnorm d/dgamma");
    ASSERT_GRAD(grad_check(c.b, C, db, bn_loss, &c), "batchnorm d/dbeta");
    free(c.x); free(c.g); free(c.b); free(c.out); free(c.rnd); free(c.mean); free(c.invstd);
    free(c.rm); free(c.rv); free(dx); free(dg); free(db);
}
END_TEST

/* ------------------------------------------------------------------ relu */
typedef struct { size_t n; double *x, *x0, *out, *rnd; } ReluCtx;
static double relu_loss(void *p, int *kink)
{
    ReluCtx *c = p;
    relu_forward(c->out, c->x, c->n);
    for (size_t i = 0; i < c->n; i++)
        if ((c->x[i] > 0) != (c->x0[i] > 0)) *kink = 1;   /* crossed the kink at 0 */
    return dot(c->out, c->rnd, c->n);
}
START_TEST(grad_relu)
{
    size_t n = 97;
    ReluCtx c = {n, dnormal(n, 1), dalloc(n), dalloc(n), dnormal(n, 2)};
    c.x[5] = 0.3e-6;       /* within a step of the kink: must be skipped, not mis-checked */
    memcpy(c.x0, c.x, n * sizeof(double));
    double *dx = dalloc(n);
    relu_forward(c.out, c.x, n);
    relu_backward(dx, c.rnd, c.out, n);
    GradResult r = grad_check(c.x, n, dx, relu_loss, &c);
    ASSERT_GRAD(r, "relu d/dinput");
    ck_assert_uint_eq(r.skipped, 1);
    free(c.x); free(c.x0); free(c.out); free(c.rnd); free(dx);
}
END_TEST

/* ------------------------------------------------------------------ pooling */
typedef struct { int N, C, H, W, k, stride, pad, max; double *x, *out, *rnd; int32_t *arg, *arg0; size_t nout; } PoolCtx;
static double pool_loss(void *p, int *kink)
{
    PoolCtx *c = p;
    if (c->max) {
        maxpool2d_forward(c->out, c->arg, c->x, c->N, c->C, c->H, c->W, c->k, c->stride, c->pad);
        if (memcmp(c->arg, c->arg0, c->nout * sizeof(int32_t)) != 0) *kink = 1;
    } else {
        avgpool2d_forward(c->out, c->x, c->N, c->C, c->H, c->W, c->k, c->stride, c->pad);
    }
    return dot(c->out, c->rnd, c->nout);
}
START_TEST(grad_pool)
{
    /* {N,C,H,W,k,stride,pad}: 3x3/s2/p1, 2x2/s2, global (k = H = W) */
    static const int shapes[][7] = {{2, 3, 7, 6, 3, 2, 1}, {2, 2, 6, 6, 2, 2, 0}, {3, 2, 5, 5, 5, 1, 0}};
    for (int max = 0; max <= 1; max++) {
        const int *s = shapes[_i];
        int P = (s[2] + 2 * s[6] - s[4]) / s[5] + 1, Q = (s[3] + 2 * s[6] - s[4]) / s[5] + 1;
        size_t nx = (size_t)s[0] * s[1] * s[2] * s[3], nout = (size_t)s[0] * s[1] * P * Q;
        PoolCtx c = {s[0], s[1], s[2], s[3], s[4], s[5], s[6], max, dnormal(nx, 1), dalloc(nout),
                     dnormal(nout, 2), calloc(nout, 4), calloc(nout, 4), nout};
        double *dx = dalloc(nx);
        if (max) {
            maxpool2d_forward(c.out, c.arg0, c.x, c.N, c.C, c.H, c.W, c.k, c.stride, c.pad);
            maxpool2d_backward(dx, c.rnd, c.arg0, c.N, c.C, c.H, c.W, c.k, c.stride, c.pad);
        } else {
            avgpool2d_backward(dx, c.rnd, c.N, c.C, c.H, c.W, c.k, c.stride, c.pad);
        }
        ASSERT_GRAD(grad_check(c.x, nx, dx, pool_loss, &c), max ? "maxpool d/dinput" : "avgpool d/dinput");
        free(c.x); free(c.out); free(c.rnd); free(c.arg); free(c.arg0); free(dx);
    }
}
END_TEST

/* ------------------------------------------------------------------ linear */
typedef struct { int N, I, O; double *x, *w, *b, *out, *rnd; } LinCtx;
static double lin_loss(void *p, int *kink)
{
    (void)kink;
    LinCtx *c = p;
    linear_forward(c->out, c->x, c->w, c->b, c->N, c->I, c->O);
    return dot(c->out, c->rnd, (size_t)c->N * c->O);
}
START_TEST(grad_linear)
{
    int N = 3, I = 7, O = 5;
    LinCtx c = {N, I, O, dnormal(N * I, 1), dnormal(O * I, 2), dnormal(O, 3), dalloc(N * O), dnormal(N * O, 4)};
    double *dx = dalloc(N * I), *dw = dalloc(O * I), *db = dalloc(O);
    linear_backward(dx, dw, db, c.rnd, c.x, c.w, N, I, O);
    ASSERT_GRAD(grad_check(c.x, N * I, dx, lin_loss, &c), "linear d/dinput");
    ASSERT_GRAD(grad_check(c.w, O * I, dw, lin_loss, &c), "linear d/dweight");
    ASSERT_GRAD(grad_check(c.b, O, db, lin_loss, &c), "linear d/dbias");
    free(c.x); free(c.w); free(c.b); free(c.out); free(c.rnd); free(dx); free(dw); free(db);
}
END_TEST

/* ------------------------------------------------------------------ softmax cross-entropy */
typedef struct { int N, C; double *z, *loss, *prob; int32_t *lab, *cor; } XentCtx;
static double xent_loss(void *p, int *kink)
{
    (void)kink;
    XentCtx *c = p;
    softmax_xent_forward(c->loss, c->prob, c->cor, c->z, c->lab, c->N, c->C);
    double s = 0;
    for (int n = 0; n < c->N; n++) s += c->loss[n];
    return s / c->N;                                   /* the mean, as the model uses it */
}
START_TEST(grad_softmax_xent)
{
    int N = 4, C = 7;
    int32_t lab[4] = {0, 6, 3, 3}, cor[4];
    XentCtx c = {N, C, dnormal(N * C, 1), dalloc(N), dalloc(N * C), lab, cor};
    for (int i = 0; i < N * C; i++) c.z[i] *= 3;
    double *dz = dalloc(N * C);
    xent_loss(&c, NULL);
    softmax_xent_backward(dz, c.prob, lab, N, C);
    ASSERT_GRAD(grad_check(c.z, N * C, dz, xent_loss, &c), "softmax_xent d/dlogits");
    free(c.z); free(c.loss); free(c.prob); free(dz);
}
END_TEST

/* ------------------------------------------------------------------ residual add */
typedef struct { size_t n; double *a, *b, *out, *rnd; } AddCtx;
static double add_loss(void *p, int *kink)
{
    (void)kink;
    AddCtx *c = p;
    add_forward(c->out, c->a, c->b, c->n);
    return dot(c->out, c->rnd, c->n);
}
START_TEST(grad_add)
{
    size_t n = 33;
    AddCtx c = {n, dnormal(n, 1), dnormal(n, 2), dalloc(n), dnormal(n, 3)};
    /* backward: both inputs receive dout; the model accumulates with add_inplace */
    double *da = dalloc(n), *db = dalloc(n);
    add_inplace(da, c.rnd, n);
    add_inplace(db, c.rnd, n);
    ASSERT_GRAD(grad_check(c.a, n, da, add_loss, &c), "add d/da");
    ASSERT_GRAD(grad_check(c.b, n, db, add_loss, &c), "add d/db");
    free(c.a); free(c.b); free(c.out); free(c.rnd); free(da); free(db);
}
END_TEST

Suite *suite_gradcheck(void)
{
    Suite *s = suite_create("gradcheck (cpu, double)");
    TCase *t = tcase_create("fd");
    tcase_set_timeout(t, 120);
    tcase_add_loop_test(t, grad_conv2d, 0, (int)(sizeof conv_shapes / sizeof conv_shapes[0]));
    tcase_add_test(t, grad_bias);
    tcase_add_loop_test(t, grad_batchnorm, 0, 3);
    tcase_add_test(t, grad_relu);
    tcase_add_loop_test(t, grad_pool, 0, 3);
    tcase_add_test(t, grad_linear);
    tcase_add_test(t, grad_softmax_xent);
    tcase_add_test(t, grad_add);
    suite_add_tcase(s, t);
    return s;
}
