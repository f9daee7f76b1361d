/* The fast CPU kernels (cpu/fast/) against the readable operators of cpu/ (float build):
 * every output of every fast kernel, at the practical's layer shapes and at odd ones, for
 * every instruction set this machine runs (AVX-512, AVX2, and "none" = the readable
 * fallback), plus thread-count independence (bit-identical 1 vs 2 threads).
 *
 * Metric: max_i |fast_i - ref_i| / max_i |ref_i| <= FAST_TOL. The two differ only in float
 * rounding order (FMA, summation order): observed ~1e-7. A 1% error in any one output
 * channel gives ~1e-2, so the check sits four orders of magnitude from both sides. */
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/model.h"
#include "core/ops.h"
#include "cpu/cpu.h"
#include "cpu/fast/fast.h"
#include "tests/gradcheck.h"

#define FAST_TOL 1e-5

static double rel_err(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > num || d != d) num = d;
        if (fabs((double)b[i]) > den) den = fabs((double)b[i]);
    }
    return num / (den > 0 ? den : 1);
}

/* A batch mean's error in units of the channel's standard deviation (|dm| * invstd): what it
 * does to the normalized output. (Relative to the mean itself it would blow up for means
 * near 0, which is where batchnorm inputs usually are.) */
static double mean_err(const float *m, const float *ref, const float *invstd, int C)
{
    double e = 0;
    for (int c = 0; c < C; c++) {
        double d = fabs((double)m[c] - ref[c]) * invstd[c];
        if (d > e || d != d) e = d;
    }
    return e;
}

static float *nan_floats(size_t n)
{
    float *p = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) p[i] = NAN;
    return p;
}

typedef struct { int N, C, H, W, K, R, S, stride, pad; } ConvShape;

/* The practical's layers (batch 3) and odd shapes: odd channels, batch 1 and 10, 5x5 and 1x1
 * and 2x3 kernels, stride 2 and 3, odd and non-square images, rows wider than one vector with
 * a partial tail, pad 0 and 2. */
static const ConvShape conv_shapes[] = {
    {3, 3, 32, 32, 16, 3, 3, 1, 1},  {3, 16, 32, 32, 16, 3, 3, 1, 1}, {3, 16, 32, 32, 24, 3, 3, 2, 1},
    {3, 16, 32, 32, 24, 1, 1, 2, 0}, {3, 24, 16, 16, 24, 3, 3, 1, 1}, {3, 24, 16, 16, 32, 3, 3, 2, 1},
    {3, 24, 16, 16, 32, 1, 1, 2, 0}, {3, 32, 8, 8, 32, 3, 3, 1, 1},
    {1, 5, 11, 13, 7, 3, 3, 1, 1},   {3, 3, 9, 7, 5, 5, 5, 1, 2},    {2, 4, 10, 9, 3, 2, 3, 1, 1},
    {3, 5, 13, 11, 6, 3, 3, 2, 1},   {1, 6, 7, 7, 9, 1, 1, 1, 0},    {2, 3, 21, 19, 10, 3, 3, 1, 0},
    {1, 2, 12, 12, 4, 5, 5, 3, 2},   {3, 7, 25, 17, 11, 3, 3, 1, 1}, {2, 3, 4, 4, 5, 5, 5, 1, 2},
    /* whole vectors and channel blocks with other kernels, pad 0 and 2, odd output channel
     * counts, and 10 images (more than CONV_DW_CHUNKS, in uneven chunks) */
    {2, 8, 16, 16, 5, 5, 5, 1, 2},   {5, 16, 16, 16, 7, 3, 3, 1, 0}, {1, 16, 8, 8, 9, 2, 3, 1, 1},
    {10, 8, 8, 16, 4, 3, 3, 1, 1},
};

typedef struct { double fwd, add, bin, bw; } ConvErr;

static ConvErr conv_errors(const ConvShape *s)
{
    int P = conv_out_size(s->H, s->R, s->stride, s->pad), Q = conv_out_size(s->W, s->S, s->stride, s->pad);
    size_t nin = (size_t)s->N * s->C * s->H * s->W, nout = (size_t)s->N * s->K * P * Q;
    size_t nw = (size_t)s->K * s->C * s->R * s->S;
    size_t ws = conv2d_workspace_floats(s->N, s->C, s->H, s->W, s->K, s->R, s->S, s->stride, s->pad);
    float *x = malloc(sizeof(float) * nin), *w = malloc(sizeof(float) * nw), *dy = malloc(sizeof(float) * nout);
    float *add = malloc(sizeof(float) * nout), *work = nan_floats(ws);
    fill_normal_f(x, nin, 11); fill_normal_f(w, nw, 12); fill_normal_f(dy, nout, 13); fill_normal_f(add, nout, 14);
    float *y0 = nan_floats(nout), *y1 = nan_floats(nout), *y2 = nan_floats(nout);
    float *dx0 = nan_floats(nin), *dx1 = nan_floats(nin), *dw0 = nan_floats(nw), *dw1 = nan_floats(nw);
#define ARGS s->N, s->C, s->H, s->W, s->K, s->R, s->S, s->stride, s->pad, work
    conv2d_forward(y0, x, w, ARGS);
    conv2d_direct_forward(y1, x, w, ARGS);
    conv2d_direct_forward_add(y2, x, w, add, ARGS);
    conv2d_backward_input(dx0, dy, w, ARGS);
    conv2d_direct_backward_input(dx1, dy, w, ARGS);
    conv2d_backward_weight(dw0, dy, x, ARGS);
    conv2d_direct_backward_weight(dw1, dy, x, ARGS);
#undef ARGS
    for (size_t i = 0; i < nout; i++) y0[i] += add[i];
    ConvErr e = {0, rel_err(y2, y0, nout), rel_err(dx1, dx0, nin), rel_err(dw1, dw0, nw)};
    for (size_t i = 0; i < nout; i++) y0[i] -= add[i];
    e.fwd = rel_err(y1, y0, nout);
    free(x); free(w); free(dy); free(add); free(work);
    free(y0); free(y1); free(y2); free(dx0); free(dx1); free(dw0); free(dw1);
    return e;
}

/* The kernel sets to test, each where the CPU runs it: AVX-512 (rows of 8 pixels or fewer by
 * the channel-vector kernel where it is chosen), AVX-512 with 8-lane pixel vectors for those
 * rows (ISA_AVX512_ROWS), AVX2, and none (the readable operators). */
enum { ISA_AVX512_ROWS = 10 + CPU_ISA_AVX512 };
static const int isas[] = {CPU_ISA_AVX512, ISA_AVX512_ROWS, CPU_ISA_AVX2, CPU_ISA_NONE};

static int use_isa(int code)   /* 0 if this CPU cannot run it */
{
    conv2d_direct_set_cv(code < 10 ? -1 : 0);
    return cpu_isa_force(code % 10);
}

static const char *isa_label(int code) { return code >= 10 ? "avx512 (8-lane rows)" : cpu_isa_name(code); }

static void use_isa_default(void)
{
    cpu_isa_force(-1);
    conv2d_direct_set_cv(-1);
}

/* a = relu(x scale + shift) [N,C,HW] with the coefficients of batchnorm_scale_shift (C <= 64):
 * the activation the fast table applies and recomputes (recompute_act) */
static void act_from_saved(float *a, const float *x, const float *gamma, const float *beta, const float *mean,
                           const float *invstd, int N, int C, int HW)
{
    float sc[64], sh[64];
    batchnorm_scale_shift(sc, sh, gamma, beta, mean, invstd, C);
    for (size_t i = 0; i < (size_t)N * C * HW; i++) {
        int c = (int)(i / HW % C);
        float v = x[i] * sc[c] + sh[c];
        a[i] = v > 0 ? v : 0;
    }
}

/* The fused conv backward (weight and input) -> ReLU -> batchnorm backward against the
 * readable operators in turn: dweight, din (with and without a residual add, and aliasing
 * dout), dgamma, dbeta; with recompute, the ReLU's output not given (in = NULL: the op
 * table's recompute_act) but recomputed from batchnorm's input and saved statistics. */
static double conv_relu_bn_error(const ConvShape *s, int with_add, int with_alias, int recompute)
{
    int P = conv_out_size(s->H, s->R, s->stride, s->pad), Q = conv_out_size(s->W, s->S, s->stride, s->pad);
    int C = s->C, HW = s->H * s->W;
    size_t nin = (size_t)s->N * C * HW, nout = (size_t)s->N * s->K * P * Q, nw = (size_t)s->K * C * s->R * s->S;
    size_t ws = conv2d_workspace_floats(s->N, C, s->H, s->W, s->K, s->R, s->S, s->stride, s->pad);
    float *w = malloc(sizeof(float) * nw), *dy = malloc(sizeof(float) * (nout > nin ? nout : nin));
    float *bx = malloc(sizeof(float) * nin), *a = malloc(sizeof(float) * nin), *add = malloc(sizeof(float) * nin);
    float *gamma = malloc(sizeof(float) * C), *beta = malloc(sizeof(float) * C), *mean = malloc(sizeof(float) * C);
    float *invstd = malloc(sizeof(float) * C), *rm = malloc(sizeof(float) * C), *rv = malloc(sizeof(float) * C);
    float *work = nan_floats(ws);
    fill_normal_f(w, nw, 21); fill_normal_f(dy, nout, 22); fill_normal_f(bx, nin, 23); fill_normal_f(add, nin, 24);
    fill_normal_f(gamma, C, 25); fill_normal_f(beta, C, 26);
    for (int c = 0; c < C; c++) { rm[c] = 0; rv[c] = 1; }
    /* a = relu(bn(bx)) with the batch statistics, as the forward made it; recomputed: from the
     * coefficients the forward and the backward share (batchnorm_scale_shift), so that no
     * value near 0 lands on the other side of the ReLU in the reference */
    batchnorm_forward_train(a, mean, invstd, rm, rv, bx, gamma, beta, s->N, C, HW, 0.1f, 1e-5f);
    relu_forward(a, a, nin);
    if (recompute) act_from_saved(a, bx, gamma, beta, mean, invstd, s->N, C, HW);
    float *g0 = nan_floats(nin), *d0 = nan_floats(nin), *g1 = nan_floats(nin), *d1 = nan_floats(nin);
    float dg0[64], db0[64], dg1[64], db1[64];
    const float *ad = with_add ? add : NULL;
    conv2d_backward_input(g0, dy, w, s->N, C, s->H, s->W, s->K, s->R, s->S, s->stride, s->pad, work);
    relu_backward(g0, g0, a, nin);
    batchnorm_backward(d0, dg0, db0, g0, bx, gamma, mean, invstd, s->N, C, HW);
    if (ad) add_inplace(d0, ad, nin);
    float *dout = dy;
    if (with_alias) {            /* din aliasing dout, as the model does in strided blocks */
        free(d1);
        dout = d1 = malloc(sizeof(float) * (nout > nin ? nout : nin));
        memcpy(d1, dy, sizeof(float) * nout);
    }
    float *dw0 = nan_floats(nw), *dw1 = nan_floats(nw);
    conv2d_backward_weight(dw0, dy, a, s->N, C, s->H, s->W, s->K, s->R, s->S, s->stride, s->pad, work);
    conv2d_direct_backward_relu_bn(dw1, d1, g1, dout, recompute ? NULL : a, w, s->N, C, s->H, s->W, s->K, s->R, s->S,
                                   s->stride, s->pad, work, dg1, db1, bx, ad, gamma, beta, mean, invstd);
    double e = rel_err(d1, d0, nin), e3 = rel_err(dg1, dg0, C), e4 = rel_err(db1, db0, C);
    double e5 = rel_err(dw1, dw0, nw);
    free(dw0); free(dw1);
    if (e5 > e) e = e5;
    if (e3 > e) e = e3;
    if (e4 > e) e = e4;
    free(w); free(dy); free(bx); free(a); free(add); free(gamma); free(beta); free(mean); free(invstd);
    free(rm); free(rv); free(work); free(g0); free(d0); free(g1); free(d1);
    return e;
}

START_TEST(conv_relu_bn_backward_matches_reference)
{
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (!use_isa(isas[i])) continue;
        int from_dout = 0;   /* shapes whose weight gradient comes from the padded dout */
        for (size_t k = 0; k < sizeof conv_shapes / sizeof conv_shapes[0]; k++) {
            const ConvShape *s = &conv_shapes[k];
            if (s->C > 64) continue;
            from_dout += conv2d_direct_wgrad_from_dout(s->C, s->H, s->W, s->R, s->S, s->stride, s->pad);
            for (int mode = 0; mode < 4; mode++) {
                double e = conv_relu_bn_error(s, mode == 1 || mode == 3, mode == 2, mode == 3);
                ck_assert_msg(e <= FAST_TOL, "isa %s, N%d C%d %dx%d K%d %dx%d/s%d/p%d %s: error %.3g",
                              isa_label(isas[i]), s->N, s->C, s->H, s->W, s->K, s->R, s->S, s->stride,
                              s->pad, mode == 1 ? "with add" : mode == 2 ? "din aliasing dout" :
                              mode == 3 ? "with add, the ReLU's output recomputed" : "", e);
            }
        }
        /* the three practical 3x3 stride-1 layers past the stem and the last four shapes
         * except pad 0 (a smaller output: the padded-input form does fewer products) */
        if (isas[i] != CPU_ISA_NONE)
            ck_assert_msg(from_dout == 6, "isa %s: %d shapes took the weight gradient from dout, not 6",
                          isa_label(isas[i]), from_dout);
    }
    use_isa_default();
}
END_TEST

START_TEST(conv_direct_matches_reference)
{
    int tested = 0;
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (!use_isa(isas[i])) continue;   /* this CPU cannot run it */
        tested++;
        for (size_t k = 0; k < sizeof conv_shapes / sizeof conv_shapes[0]; k++) {
            const ConvShape *s = &conv_shapes[k];
            ConvErr e = conv_errors(s);
            char what[160];
            snprintf(what, sizeof what, "isa %s, N%d C%d %dx%d K%d %dx%d/s%d/p%d",
                     isa_label(isas[i]), s->N, s->C, s->H, s->W, s->K, s->R, s->S, s->stride, s->pad);
            ck_assert_msg(e.fwd <= FAST_TOL, "%s: forward error %.3g", what, e.fwd);
            ck_assert_msg(e.add <= FAST_TOL, "%s: forward+add error %.3g", what, e.add);
            ck_assert_msg(e.bin <= FAST_TOL, "%s: backward-input error %.3g", what, e.bin);
            ck_assert_msg(e.bw <= FAST_TOL, "%s: backward-weight error %.3g", what, e.bw);
        }
    }
    use_isa_default();
    ck_assert_int_ge(tested, 1);
}
END_TEST

/* The pair slot (conv2d_direct_backward_relu_bn_pair: a pre-activation block's two layers)
 * against its two calls with d(conv1's output) stored in between: the same bits for every
 * output (din with a residual add, both weight and batchnorm gradients), on every ISA.
 * conv1 at stride 1 takes the form that applies bn2's backward in its padded dout; at
 * stride 2, and with 5 channels (no weight gradient from the padded dout), the two calls. */
START_TEST(conv_relu_bn_pair_matches_two_calls)
{
    static const int shapes[][6] = {{3, 16, 16, 16, 16, 1}, {2, 8, 8, 16, 16, 1}, {3, 16, 16, 16, 24, 2},
                                    {2, 5, 9, 9, 6, 1}};
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (!use_isa(isas[i])) continue;
        for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
            int N = shapes[t][0], C = shapes[t][1], H = shapes[t][2], W = shapes[t][3], K = shapes[t][4];
            int st = shapes[t][5], P = conv_out_size(H, 3, st, 1), Q = conv_out_size(W, 3, st, 1);
            size_t nx = (size_t)N * C * H * W, nc = (size_t)N * K * P * Q, nw1 = (size_t)K * C * 9, nw2 = (size_t)K * K * 9;
            float *x = malloc(sizeof(float) * nx), *c1 = malloc(sizeof(float) * nc), *dy = malloc(sizeof(float) * nc);
            float *add = malloc(sizeof(float) * nx), *w1 = malloc(sizeof(float) * nw1), *w2 = malloc(sizeof(float) * nw2);
            size_t nws1 = conv2d_workspace_floats(N, C, H, W, K, 3, 3, st, 1), nws2 = conv2d_workspace_floats(N, K, P, Q, K, 3, 3, 1, 1);
            float bn[8][32], *ws = nan_floats((nws1 > nws2 ? nws1 : nws2) + 1);
            fill_normal_f(x, nx, 61); fill_normal_f(c1, nc, 62); fill_normal_f(dy, nc, 63); fill_normal_f(add, nx, 64);
            fill_normal_f(w1, nw1, 65); fill_normal_f(w2, nw2, 66);
            for (int j = 0; j < 4; j++) fill_normal_f(bn[j], 32, 67 + j);   /* gamma1, beta1, gamma2, beta2 */
            float rm[32], rv[32], *tmp = malloc(sizeof(float) * (nx > nc ? nx : nc));
            for (int j = 0; j < 32; j++) { rm[j] = 0; rv[j] = 1; }
            /* bn1's statistics of x, bn2's of c1 (saved mean, invstd) */
            batchnorm_forward_train(tmp, bn[4], bn[5], rm, rv, x, bn[0], bn[1], N, C, H * W, 0.1f, 1e-5f);
            batchnorm_forward_train(tmp, bn[6], bn[7], rm, rv, c1, bn[2], bn[3], N, K, P * Q, 0.1f, 1e-5f);
            float *out[3][8];   /* din, dw1, dw2, dgamma1, dbeta1, dgamma2, dbeta2 */
            size_t len[7] = {nx, nw1, nw2, (size_t)C, (size_t)C, (size_t)K, (size_t)K};
            for (int v = 0; v < 3; v++) {   /* the two calls; the pair; the pair with din aliasing add */
                for (int j = 0; j < 7; j++) out[v][j] = nan_floats(len[j]);
                if (v == 2) memcpy(out[v][0], add, sizeof(float) * nx);
                float *g1 = nan_floats(nx), *g2 = nan_floats(nc), *dc1 = nan_floats(nc);
                ConvBnLayer l1 = {w1, x, bn[0], bn[1], bn[4], bn[5], out[v][1], out[v][3], out[v][4], C, H, W, K, 3, 3, st, 1};
                ConvBnLayer l2 = {w2, c1, bn[2], bn[3], bn[6], bn[7], out[v][2], out[v][5], out[v][6], K, P, Q, K, 3, 3, 1, 1};
                if (v == 0) {
                    conv2d_direct_backward_relu_bn(l2.dweight, dc1, g2, dy, NULL, w2, N, K, P, Q, K, 3, 3, 1, 1, ws, l2.dgamma,
                                                   l2.dbeta, c1, NULL, l2.gamma, l2.beta, l2.save_mean, l2.save_invstd);
                    conv2d_direct_backward_relu_bn(l1.dweight, out[v][0], g1, dc1, NULL, w1, N, C, H, W, K, 3, 3, st, 1, ws,
                                                   l1.dgamma, l1.dbeta, x, add, l1.gamma, l1.beta, l1.save_mean,
                                                   l1.save_invstd);
                } else {
                    conv2d_direct_backward_relu_bn_pair(out[v][0], g1, g2, dy, &l2, &l1, v == 2 ? out[v][0] : add, N);
                }
                free(g1); free(g2); free(dc1);
            }
            static const char *names[7] = {"din", "dweight1", "dweight2", "dgamma1", "dbeta1", "dgamma2", "dbeta2"};
            for (int v = 1; v < 3; v++)
                for (int j = 0; j < 7; j++)
                    ck_assert_msg(memcmp(out[0][j], out[v][j], sizeof(float) * len[j]) == 0,
                                  "isa %s, N%d C%d %dx%d K%d stride %d%s: %s differs from the two calls (%.3g)",
                                  isa_label(isas[i]), N, C, H, W, K, st, v == 2 ? ", din aliasing add" : "",
                                  names[j], rel_err(out[v][j], out[0][j], len[j]));
            for (int v = 0; v < 3; v++)
                for (int j = 0; j < 7; j++) free(out[v][j]);
            free(x); free(c1); free(dy); free(add); free(w1); free(w2); free(ws); free(tmp);
        }
    }
    use_isa_default();
}
END_TEST

/* The same conv computed with 1 and with 2 threads must agree bit for bit. */
START_TEST(conv_direct_thread_independent)
{
    ConvShape s = {9, 16, 32, 32, 24, 3, 3, 2, 1};
    int P = 16, Q = 16;
    size_t nin = (size_t)s.N * s.C * s.H * s.W, nout = (size_t)s.N * s.K * P * Q, nw = (size_t)s.K * s.C * 9;
    size_t ws = conv2d_workspace_floats(s.N, s.C, s.H, s.W, s.K, 3, 3, 2, 1);
    float *x = malloc(sizeof(float) * nin), *w = malloc(sizeof(float) * nw), *dy = malloc(sizeof(float) * nout);
    float *work = nan_floats(ws), *out[2], *dw[2];
    fill_normal_f(x, nin, 1); fill_normal_f(w, nw, 2); fill_normal_f(dy, nout, 3);
    int saved = omp_get_max_threads();
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t + 1);
        out[t] = nan_floats(nout); dw[t] = nan_floats(nw);
        conv2d_direct_forward(out[t], x, w, s.N, s.C, s.H, s.W, s.K, 3, 3, 2, 1, work);
        conv2d_direct_backward_weight(dw[t], dy, x, s.N, s.C, s.H, s.W, s.K, 3, 3, 2, 1, work);
    }
    omp_set_num_threads(saved);
    ck_assert(memcmp(out[0], out[1], sizeof(float) * nout) == 0);
    ck_assert(memcmp(dw[0], dw[1], sizeof(float) * nw) == 0);
    free(x); free(w); free(dy); free(work);
    for (int t = 0; t < 2; t++) { free(out[t]); free(dw[t]); }
}
END_TEST

/* batchnorm's statistics (saved and running) made by the fast code against the readable
 * batchnorm's: m, v (saved mean, invstd), rm, rv (running) vs m0, v0, rm0, rv0 */
static void expect_stats(const char *what, const float *m, const float *v, const float *rm, const float *rv,
                         const float *m0, const float *v0, const float *rm0, const float *rv0, int C)
{
    ck_assert_msg(mean_err(m, m0, v0, C) <= FAST_TOL && rel_err(v, v0, C) <= FAST_TOL,
                  "%s: saved stats: mean %.3g invstd %.3g", what, mean_err(m, m0, v0, C), rel_err(v, v0, C));
    ck_assert_msg(rel_err(rm, rm0, C) <= FAST_TOL && rel_err(rv, rv0, C) <= FAST_TOL, "%s: running stats %.3g %.3g",
                  what, rel_err(rm, rm0, C), rel_err(rv, rv0, C));
}

/* batchnorm_sync of one process (the sums are already the whole batch's): with it set, the
 * statistics take the data-parallel path (one shift, the running mean) */
static void sync_one_process(double *v, int n) { (void)v; (void)n; }

/* The chained slot (batchnorm_relu_conv2d_direct_forward_chained) against the readable
 * operators: y0 = conv(relu(bn(x))) (+ add) made with bn's batch statistics m0, v0 (or
 * conv(x) (+ add) when bn == NULL); the chained call with in's statistics ready (given m0, v0)
 * or made by it (!ready), and the statistics of its output made in its store for two
 * batchnorms reading it, against a readable batchnorm over y0. */
static void check_chained(const char *what, const ConvShape *s, const float *y0, const float *x, const float *w,
                          const float *add, const float *g, const float *b, const float *m0, const float *v0,
                          const float *rm0, const float *rv0, int with_bn, int ready)
{
    int P = conv_out_size(s->H, s->R, s->stride, s->pad), Q = conv_out_size(s->W, s->S, s->stride, s->pad);
    int C = s->C, K = s->K;
    size_t nout = (size_t)s->N * K * P * Q;
    float *y = nan_floats(nout), *t = nan_floats(nout);
    float m[32], v[32], rm[32], rv[32], ng[32], nb[32], nm0[32], nv0[32], nrm0[32], nrv0[32];
    float nm[2][32], nv[2][32], nrm[2][32], nrv[2][32];
    fill_normal_f(ng, K, 46); fill_normal_f(nb, K, 47);
    for (int c = 0; c < C; c++) {   /* ready: the statistics and running update made before */
        m[c] = ready ? m0[c] : NAN; v[c] = ready ? v0[c] : NAN;
        rm[c] = ready ? rm0[c] : 0.1f * c; rv[c] = ready ? rv0[c] : 1.0f + 0.1f * c;
    }
    for (int k = 0; k < K; k++) { nrm0[k] = 0.2f; nrv0[k] = 1.5f; }
    batchnorm_forward_train(t, nm0, nv0, nrm0, nrv0, y0, ng, nb, s->N, K, P * Q, 0.1f, 1e-5f);
    BnRefs self = {m, v, rm, rv, g, b, 0.1f, 1e-5f}, nx[2];
    for (int j = 0; j < 2; j++) {
        for (int k = 0; k < K; k++) { nm[j][k] = nv[j][k] = NAN; nrm[j][k] = 0.2f; nrv[j][k] = 1.5f; }
        nx[j] = (BnRefs){nm[j], nv[j], nrm[j], nrv[j], ng, nb, 0.1f, 1e-5f};
    }
    batchnorm_relu_conv2d_direct_forward_chained(y, x, w, add, s->N, C, s->H, s->W, K, s->R, s->S, s->stride, s->pad,
                                                 with_bn ? &self : NULL, ready, nx, 2);
    char at[200];
    snprintf(at, sizeof at, "%s chained (bn %d, ready %d)", what, with_bn, ready);
    ck_assert_msg(rel_err(y, y0, nout) <= FAST_TOL, "%s: out %.3g", at, rel_err(y, y0, nout));
    if (with_bn) expect_stats(at, m, v, rm, rv, m0, v0, rm0, rv0, C);
    for (int j = 0; j < 2; j++) expect_stats(at, nm[j], nv[j], nrm[j], nrv[j], nm0, nv0, nrm0, nrv0, K);
    free(y); free(t);
}

/* The fused batchnorm -> ReLU -> conv forward (train and eval, with and without a residual
 * add) against the readable operators in turn: out, a, and batchnorm's saved and running
 * statistics; in training also with a not stored (a = NULL) and the chained slot. */
START_TEST(bn_relu_conv_forward_matches_reference)
{
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (!use_isa(isas[i])) continue;
        for (size_t k = 0; k < sizeof conv_shapes / sizeof conv_shapes[0]; k++) {
            const ConvShape *s = &conv_shapes[k];
            int P = conv_out_size(s->H, s->R, s->stride, s->pad), Q = conv_out_size(s->W, s->S, s->stride, s->pad);
            int C = s->C, HW = s->H * s->W;
            size_t nin = (size_t)s->N * C * HW, nout = (size_t)s->N * s->K * P * Q, nw = (size_t)s->K * C * s->R * s->S;
            size_t ws = conv2d_workspace_floats(s->N, C, s->H, s->W, s->K, s->R, s->S, s->stride, s->pad);
            float *x = malloc(sizeof(float) * nin), *w = malloc(sizeof(float) * nw), *add = malloc(sizeof(float) * nout);
            float *work = nan_floats(ws), *a0 = nan_floats(nin), *a1 = nan_floats(nin);
            float *y0 = nan_floats(nout), *y1 = nan_floats(nout);
            float g[32], b[32], m0[32], m1[32], v0[32], v1[32], rm0[32], rv0[32], rm1[32], rv1[32];
            fill_normal_f(x, nin, 41); fill_normal_f(w, nw, 42); fill_normal_f(add, nout, 43);
            fill_normal_f(g, C, 44); fill_normal_f(b, C, 45);
            for (int mode = 0; mode < 4; mode++) {     /* train / eval x no add / add */
                int train = mode < 2;
                const float *ad = mode % 2 ? add : NULL;
                for (int c = 0; c < C; c++) { rm0[c] = rm1[c] = 0.1f * c; rv0[c] = rv1[c] = 1.0f + 0.1f * c; }
                if (train) batchnorm_forward_train(a0, m0, v0, rm0, rv0, x, g, b, s->N, C, HW, 0.1f, 1e-5f);
                else batchnorm_forward_eval(a0, x, g, b, rm0, rv0, s->N, C, HW, 1e-5f);
                relu_forward(a0, a0, nin);
                conv2d_forward(y0, a0, w, s->N, C, s->H, s->W, s->K, s->R, s->S, s->stride, s->pad, work);
                if (ad) add_inplace(y0, ad, nout);
                batchnorm_relu_conv2d_direct_forward(y1, a1, x, w, ad, s->N, C, s->H, s->W, s->K, s->R, s->S,
                                                     s->stride, s->pad, work, m1, v1, rm1, rv1, g, b, 0.1f, 1e-5f, train);
                char what[160];
                snprintf(what, sizeof what, "isa %s, N%d C%d %dx%d K%d %dx%d/s%d/p%d mode %d", isa_label(isas[i]),
                         s->N, C, s->H, s->W, s->K, s->R, s->S, s->stride, s->pad, mode);
                ck_assert_msg(rel_err(y1, y0, nout) <= FAST_TOL, "%s: out %.3g", what, rel_err(y1, y0, nout));
                ck_assert_msg(rel_err(a1, a0, nin) <= FAST_TOL, "%s: a %.3g", what, rel_err(a1, a0, nin));
                ck_assert_msg(rel_err(rm1, rm0, C) <= FAST_TOL && rel_err(rv1, rv0, C) <= FAST_TOL, "%s: running stats", what);
                if (train) ck_assert_msg(mean_err(m1, m0, v0, C) <= FAST_TOL && rel_err(v1, v0, C) <= FAST_TOL,
                                         "%s: saved stats: mean %.3g invstd %.3g", what, mean_err(m1, m0, v0, C), rel_err(v1, v0, C));
                if (!train) continue;
                for (int c = 0; c < C; c++) { rm1[c] = 0.1f * c; rv1[c] = 1.0f + 0.1f * c; }
                batchnorm_relu_conv2d_direct_forward(y1, NULL, x, w, ad, s->N, C, s->H, s->W, s->K, s->R, s->S,
                                                     s->stride, s->pad, work, m1, v1, rm1, rv1, g, b, 0.1f, 1e-5f, 1);
                ck_assert_msg(rel_err(y1, y0, nout) <= FAST_TOL, "%s: out, a not stored %.3g", what, rel_err(y1, y0, nout));
                expect_stats(what, m1, v1, rm1, rv1, m0, v0, rm0, rv0, C);
                if (!winograd_fast_chosen(C, s->H, s->W, s->K, s->R, s->S, s->stride, s->pad)) {
                    /* the forward applied the coefficients the backward recomputes its mask and
                     * input with: the direct conv of that activation gives the same bits */
                    act_from_saved(a1, x, g, b, m1, v1, s->N, C, HW);
                    conv2d_direct_forward_add(y0, a1, w, ad, s->N, C, s->H, s->W, s->K, s->R, s->S, s->stride, s->pad,
                                              work);
                    ck_assert_msg(memcmp(y0, y1, sizeof(float) * nout) == 0,
                                  "%s: a not stored: the forward's coefficients are not batchnorm_scale_shift's", what);
                    conv2d_forward(y0, a0, w, s->N, C, s->H, s->W, s->K, s->R, s->S, s->stride, s->pad, work);
                    if (ad) add_inplace(y0, ad, nout);   /* y0 as it was */
                }
                check_chained(what, s, y0, x, w, ad, g, b, m0, v0, rm0, rv0, 1, 1);
                check_chained(what, s, y0, x, w, ad, g, b, m0, v0, rm0, rv0, 1, 0);
                batchnorm_sync = sync_one_process;   /* the data-parallel shift: the running mean */
                check_chained(what, s, y0, x, w, ad, g, b, m0, v0, rm0, rv0, 1, 0);
                batchnorm_sync = NULL;
                conv2d_forward(y1, x, w, s->N, C, s->H, s->W, s->K, s->R, s->S, s->stride, s->pad, work);
                if (ad) add_inplace(y1, ad, nout);
                check_chained(what, s, y1, x, w, ad, g, b, m0, v0, rm0, rv0, 0, 0);   /* a plain conv */
            }
            free(x); free(w); free(add); free(work); free(a0); free(a1); free(y0); free(y1);
        }
    }
    use_isa_default();
}
END_TEST

/* Fused batchnorm(+ReLU) forward (train and eval) and backward (with the ReLU mask, with a
 * residual add) against the readable batchnorm, relu and add operators, at the practical's
 * shapes and odd ones (batch 1 and 3, odd channel counts and plane sizes). A channel mean
 * far from 0 checks the shifted one-pass variance. (Not with 2 values per channel: there
 * the true d/dx is ~0 (xhat = +-1 whatever x is) and only rounding is left to compare.) */
START_TEST(batchnorm_fast_matches_reference)
{
    const int shapes[][3] = {{3, 16, 1024}, {3, 24, 256}, {3, 32, 64}, {1, 5, 49}, {3, 7, 13}, {2, 3, 5}};
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (!use_isa(isas[i])) continue;
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            int N = shapes[k][0], C = shapes[k][1], HW = shapes[k][2];
            size_t n = (size_t)N * C * HW;
            float *x = malloc(sizeof(float) * n), *dy = malloc(sizeof(float) * n), *add = malloc(sizeof(float) * n);
            float *y0 = nan_floats(n), *y1 = nan_floats(n), *d0 = nan_floats(n), *d1 = nan_floats(n);
            float g[32], b[32], m0[32], m1[32], s0[32], s1[32], rm0[32], rv0[32], rm1[32], rv1[32];
            float dg0[32], db0[32], dg1[32], db1[32];
            fill_normal_f(x, n, 31); fill_normal_f(dy, n, 32); fill_normal_f(add, n, 33);
            fill_normal_f(g, C, 34); fill_normal_f(b, C, 35);
            for (size_t j = 0; j < n; j++) x[j] += 20.0f * (float)((j / HW) % C == 1);   /* mean 20 */
            for (int c = 0; c < C; c++) { rm0[c] = rm1[c] = 0.5f; rv0[c] = rv1[c] = 2.0f; }
            char what[96];
            snprintf(what, sizeof what, "isa %s, N%d C%d HW%d", isa_label(isas[i]), N, C, HW);
            for (int relu = 0; relu <= 1; relu++) {
                batchnorm_forward_train(y0, m0, s0, rm0, rv0, x, g, b, N, C, HW, 0.1f, 1e-5f);
                if (relu) relu_forward(y0, y0, n);
                (relu ? batchnorm_relu_fast_forward_train : batchnorm_fast_forward_train)
                    (y1, m1, s1, rm1, rv1, x, g, b, N, C, HW, 0.1f, 1e-5f);
                ck_assert_msg(rel_err(y1, y0, n) <= FAST_TOL, "%s relu %d: train out %.3g", what, relu, rel_err(y1, y0, n));
                ck_assert_msg(mean_err(m1, m0, s0, C) <= FAST_TOL && rel_err(s1, s0, C) <= FAST_TOL, "%s: saved stats", what);
                ck_assert_msg(rel_err(rm1, rm0, C) <= FAST_TOL && rel_err(rv1, rv0, C) <= FAST_TOL, "%s: running stats", what);
                batchnorm_forward_eval(y0, x, g, b, rm0, rv0, N, C, HW, 1e-5f);
                if (relu) relu_forward(y0, y0, n);
                (relu ? batchnorm_relu_fast_forward_eval : batchnorm_fast_forward_eval)(y1, x, g, b, rm0, rv0, N, C, HW, 1e-5f);
                ck_assert_msg(rel_err(y1, y0, n) <= FAST_TOL, "%s relu %d: eval out %.3g", what, relu, rel_err(y1, y0, n));
            }
            /* y0 = relu(bn(x)) with batch statistics: the mask of the fused backward */
            batchnorm_forward_train(y0, m0, s0, rm0, rv0, x, g, b, N, C, HW, 0.1f, 1e-5f);
            relu_forward(y0, y0, n);
            for (int mode = 0; mode < 3; mode++) {     /* plain, ReLU mask, ReLU mask + add */
                float *t = nan_floats(n);
                if (mode) relu_backward(t, dy, y0, n); else memcpy(t, dy, sizeof(float) * n);
                batchnorm_backward(d0, dg0, db0, t, x, g, m0, s0, N, C, HW);
                if (mode == 2) add_inplace(d0, add, n);
                if (mode == 0) batchnorm_fast_backward(d1, dg1, db1, dy, x, g, m0, s0, N, C, HW);
                else relu_batchnorm_fast_backward(d1, dg1, db1, dy, y0, x, mode == 2 ? add : NULL, g, m0, s0, N, C, HW);
                ck_assert_msg(rel_err(d1, d0, n) <= FAST_TOL, "%s mode %d: din %.3g", what, mode, rel_err(d1, d0, n));
                ck_assert_msg(rel_err(dg1, dg0, C) <= FAST_TOL, "%s mode %d: dgamma %.3g", what, mode, rel_err(dg1, dg0, C));
                ck_assert_msg(rel_err(db1, db0, C) <= FAST_TOL, "%s mode %d: dbeta %.3g", what, mode, rel_err(db1, db0, C));
                free(t);
            }
            free(x); free(dy); free(add); free(y0); free(y1); free(d0); free(d1);
        }
    }
    use_isa_default();
}
END_TEST

/* A whole training step of the practical's network on the default (fast) CPU table gives
 * the same bits with 1 and with 2 threads: loss, every gradient, the weights after SGD.
 * _i 1: with the fast Winograd forced on (CONVNET_WINOGRAD=1's choice). */
START_TEST(model_step_thread_independent)
{
    if (_i && !cpu_isa_supported(CPU_ISA_AVX2)) return;   /* no fast Winograd on this CPU */
    winograd_fast_set_mode(_i ? 1 : -2);
    if (_i) ck_assert(winograd_fast_chosen(16, 32, 32, 16, 3, 3, 1, 1));
    ModelConfig cfg;
    model_config_default(&cfg);
    int N = 16;
    float *x = malloc(sizeof(float) * N * 3 * 32 * 32);
    int32_t y[16];
    fill_normal_f(x, (size_t)N * 3 * 32 * 32, 51);
    for (int i = 0; i < N; i++) y[i] = (i * 7) % 10;
    float *grads[2], *params[2];
    double loss[2];
    int saved = omp_get_max_threads();
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t + 1);
        Model *m = model_create(&ops_cpu, &cfg, N);
        Rng rng;
        rng_seed(&rng, 5, 1);
        model_init(m, &rng);
        model_forward(m, x, N, 1);
        loss[t] = model_loss(m, y, N, NULL);
        model_backward(m, N);
        grads[t] = malloc(sizeof(float) * m->n_params);
        memcpy(grads[t], m->grads, sizeof(float) * m->n_params);
        model_sgd_step(m, 0.1f, 0.9f, 1e-4f);
        params[t] = malloc(sizeof(float) * m->n_params);
        model_get_params(m, params[t]);
        size_t np = m->n_params;
        model_free(m);
        if (t) {
            ck_assert(loss[0] == loss[1]);
            ck_assert_msg(memcmp(grads[0], grads[1], sizeof(float) * np) == 0, "gradients differ with the thread count");
            ck_assert_msg(memcmp(params[0], params[1], sizeof(float) * np) == 0, "weights differ with the thread count");
        }
    }
    omp_set_num_threads(saved);
    winograd_fast_set_mode(-2);
    for (int t = 0; t < 2; t++) { free(grads[t]); free(params[t]); }
    free(x);
}
END_TEST

Suite *suite_fast(void)
{
    Suite *s = suite_create("fast_cpu");
    TCase *t = tcase_create("fast_cpu");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, conv_direct_matches_reference);
    tcase_add_test(t, conv_direct_thread_independent);
    tcase_add_test(t, conv_relu_bn_backward_matches_reference);
    tcase_add_test(t, conv_relu_bn_pair_matches_two_calls);
    tcase_add_test(t, batchnorm_fast_matches_reference);
    tcase_add_test(t, bn_relu_conv_forward_matches_reference);
    tcase_add_loop_test(t, model_step_thread_independent, 0, 2);   /* 1: Winograd on */
    suite_add_tcase(s, t);
    return s;
}
