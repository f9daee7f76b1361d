/* The readable Winograd convolution (cpu/winograd.c) against the readable convolution
 * (cpu/conv2d.c): forward, backward-input and the weight gradient, F(2x2,3x3) and F(4x4,3x3)
 * (the weight gradient: their transposed forms), at the practical's
 * 3x3 stride-1 shapes and at odd ones (channel counts not a multiple of a vector, batch 1 and 3,
 * H and W not a multiple of the tile, a 1-pixel image, padding 0, 1 and 2). Error: max |got -
 * want| / max |want| over the output.
 *  - In double (the _f64 build of cpu/), against conv2d in double: the method is exact, so
 *    only rounding remains: about 1e-16 times the transforms' growth (F(4x4)'s entries run
 *    from 1/24 to 8, and a tile sums 36 products of them). Tolerance 1e-12: above the rounding
 *    with a margin, and a wrong transform entry (even by 1%) errs by 1e-3 or more.
 *  - In float, against conv2d in double at the practical's shapes: the error Winograd adds to
 *    fp32 arithmetic, printed beside the float conv2d's own. Measured here, forward and
 *    backward-input: F(2x2) 1.8-2.8e-7, about conv2d's own; F(4x4) 2.9-5.5e-6, 10-30x more (its
 *    fractions are not exact in float, and the transforms grow the values before the
 *    subtractions that cancel them). The weight gradient sums N P Q products per weight, in
 *    the transformed domain: F(2x2) 3.2e-7-1.1e-6, F(4x4) 2.3-6.5e-6. Tolerances 2e-6 and 2e-5,
 *    2.5 times that for the weight gradient: a 3-7x margin over those, while a wrong transform
 *    entry errs by 1e-3. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "core/ops.h"
#include "cpu/cpu.h"
#include "cpu/fast/fast.h"
#include "tests/gradcheck.h"
#include <omp.h>
#include <string.h>

/* the double build's functions (tests/f64_names.h names them) */
void conv2d_forward_f64(double *out, const double *in, const double *weight, int N, int C, int H, int W, int K, int R,
                        int S, int stride, int pad, double *workspace);
void conv2d_backward_input_f64(double *din, const double *dout, const double *weight, int N, int C, int H, int W,
                               int K, int R, int S, int stride, int pad, double *workspace);
void winograd_conv3x3_forward_f64(double *out, const double *in, const double *weight, int N, int C, int H, int W,
                                  int K, int pad, int m);
void winograd_conv3x3_backward_input_f64(double *din, const double *dout, const double *weight, int N, int C, int H,
                                         int W, int K, int pad, int m);
void conv2d_backward_weight_f64(double *dweight, const double *dout, const double *in, int N, int C, int H, int W,
                                int K, int R, int S, int stride, int pad, double *workspace);
void winograd_conv3x3_backward_weight_f64(double *dweight, const double *dout, const double *in, int N, int C, int H,
                                          int W, int K, int pad, int m);

typedef struct { int N, C, H, W, K, pad; } Shape;
static const Shape odd[] = {
    {2, 3, 7, 6, 5, 1},    /* channels not a multiple of a vector, W and H not of the tile */
    {1, 5, 9, 11, 3, 1},   /* batch 1 */
    {3, 2, 5, 5, 4, 0},    /* batch 3, no padding */
    {2, 4, 6, 7, 2, 2},    /* padding 2 */
    {2, 3, 1, 1, 2, 1},    /* a 1-pixel image */
    {1, 17, 8, 8, 9, 1},
};
static const Shape practical[] = {{2, 16, 32, 32, 16, 1}, {2, 24, 16, 16, 24, 1}, {2, 32, 8, 8, 32, 1}};

static double rel_err_d(const double *got, const double *want, size_t n)
{
    double dmax = 0, wmax = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) return INFINITY;
        dmax = fmax(dmax, fabs(got[i] - want[i]));
        wmax = fmax(wmax, fabs(want[i]));
    }
    return dmax / (wmax > 0 ? wmax : 1);
}

static double *dvec(size_t n, unsigned seed)
{
    double *v = malloc(sizeof(double) * (n ? n : 1));
    fill_normal(v, n, seed);
    return v;
}
static double *nans(size_t n)
{
    double *v = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) v[i] = NAN;
    return v;
}

/* forward (dir 0) or backward-input (dir 1) of shape s with tile m: Winograd's error against
 * conv2d's in double; f32: the float build's Winograd instead (m = 0: the float build's
 * conv2d, the direct method's own float error) */
static const char *dir_name[3] = {"forward", "backward-input", "backward-weight"};

/* the float build's version of one pass: conv2d's (m = 0) or Winograd's */
static void run_f32(int dir, int m, const Shape *s, float *out, const float *a, const float *b, float *ws)
{
    int N = s->N, C = s->C, H = s->H, W = s->W, K = s->K, pd = s->pad;
    if (m == 0 && dir == 0) conv2d_forward(out, a, b, N, C, H, W, K, 3, 3, 1, pd, ws);
    else if (m == 0 && dir == 1) conv2d_backward_input(out, a, b, N, C, H, W, K, 3, 3, 1, pd, ws);
    else if (m == 0) conv2d_backward_weight(out, a, b, N, C, H, W, K, 3, 3, 1, pd, ws);
    else if (dir == 0) winograd_conv3x3_forward(out, a, b, N, C, H, W, K, pd, m);
    else if (dir == 1) winograd_conv3x3_backward_input(out, a, b, N, C, H, W, K, pd, m);
    else winograd_conv3x3_backward_weight(out, a, b, N, C, H, W, K, pd, m);
}
/* the double build's version of one pass: conv2d's (m = 0) or Winograd's */
static void run_f64(int dir, int m, const Shape *s, double *out, const double *a, const double *b, double *ws)
{
    int N = s->N, C = s->C, H = s->H, W = s->W, K = s->K, pd = s->pad;
    if (m == 0 && dir == 0) conv2d_forward_f64(out, a, b, N, C, H, W, K, 3, 3, 1, pd, ws);
    else if (m == 0 && dir == 1) conv2d_backward_input_f64(out, a, b, N, C, H, W, K, 3, 3, 1, pd, ws);
    else if (m == 0) conv2d_backward_weight_f64(out, a, b, N, C, H, W, K, 3, 3, 1, pd, ws);
    else if (dir == 0) winograd_conv3x3_forward_f64(out, a, b, N, C, H, W, K, pd, m);
    else if (dir == 1) winograd_conv3x3_backward_input_f64(out, a, b, N, C, H, W, K, pd, m);
    else winograd_conv3x3_backward_weight_f64(out, a, b, N, C, H, W, K, pd, m);
}

/* one pass (dir 0 forward: x, w -> y; 1 backward-input: dy, w -> dx; 2 backward-weight:
 * dy, x -> dw) of shape s with tile m: its error against conv2d's in double. f32: the float
 * build's instead (m = 0 there: the float conv2d, the direct method's own float error) */
static double error_of(const Shape *s, int m, int dir, int f32)
{
    int P = s->H + 2 * s->pad - 2, Q = s->W + 2 * s->pad - 2;
    size_t nx = (size_t)s->N * s->C * s->H * s->W, nw = (size_t)s->K * s->C * 9, ny = (size_t)s->N * s->K * P * Q;
    size_t na = dir ? ny : nx, nb = dir == 2 ? nx : nw, nout = dir == 0 ? ny : dir == 1 ? nx : nw;
    double *a = dvec(na, 1 + m), *b = dvec(nb, 2), *want = nans(nout), *got = nans(nout);
    size_t nws = conv2d_workspace_floats(s->N, s->C, s->H, s->W, s->K, 3, 3, 1, s->pad);
    double *ws = malloc(sizeof(double) * nws);
    if (!f32) {
        run_f64(dir, 0, s, want, a, b, ws);
        run_f64(dir, m, s, got, a, b, ws);
    } else {
        float *fa = malloc(sizeof(float) * na), *fb = malloc(sizeof(float) * nb), *fout = malloc(sizeof(float) * nout);
        float *fws = malloc(sizeof(float) * nws);
        for (size_t i = 0; i < na; i++) a[i] = fa[i] = (float)a[i];   /* the reference sees the same rounded inputs */
        for (size_t i = 0; i < nb; i++) b[i] = fb[i] = (float)b[i];
        run_f64(dir, 0, s, want, a, b, ws);
        run_f32(dir, m, s, fout, fa, fb, fws);
        for (size_t i = 0; i < nout; i++) got[i] = fout[i];
        free(fa); free(fb); free(fout); free(fws);
    }
    double e = rel_err_d(got, want, nout);
    free(a); free(b); free(want); free(got); free(ws);
    return e;
}

START_TEST(winograd_matches_conv_in_double)
{
    double worst[2] = {0, 0};
    for (int m = 2; m <= 4; m += 2)
        for (int dir = 0; dir < 3; dir++) {
            for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
                double e = error_of(&odd[i], m, dir, 0);
                worst[m / 4] = fmax(worst[m / 4], e);
                ck_assert_msg(e <= 1e-12, "F(%dx%d) %s, odd shape %zu: error %g", m, m, dir_name[dir],
                              i, e);
            }
            for (size_t i = 0; i < sizeof practical / sizeof practical[0]; i++) {
                double e = error_of(&practical[i], m, dir, 0);
                worst[m / 4] = fmax(worst[m / 4], e);
                ck_assert_msg(e <= 1e-12, "F(%dx%d) %s, practical shape %zu: error %g", m, m,
                              dir_name[dir], i, e);
            }
        }
    printf("  winograd in double: largest error F(2x2) %.1e, F(4x4) %.1e (tolerance 1e-12)\n", worst[0], worst[1]);
}
END_TEST

START_TEST(winograd_error_in_float)
{
    for (int m = 2; m <= 4; m += 2)
        for (int dir = 0; dir < 3; dir++)
            for (size_t i = 0; i < sizeof practical / sizeof practical[0]; i++) {
                const Shape *s = &practical[i];
                double e = error_of(s, m, dir, 1), tol = (m == 2 ? 2e-6 : 2e-5) * (dir == 2 ? 2.5 : 1), direct = error_of(s, 0, dir, 1);
                printf("  winograd F(%dx%d) %-14s %2d->%2d at %2dx%2d: float error %.2e (tolerance %.0e; conv2d's own "
                       "%.2e)\n", m, m, dir_name[dir], s->C, s->K, s->H, s->W, e, tol, direct);
                ck_assert_msg(e <= tol, "F(%dx%d) %s, practical shape %zu: float error %g", m, m,
                              dir_name[dir], i, e);
            }
}
END_TEST

/* The fast F(2x2, 3x3) forward and backward-input (cpu/fast/winograd.c) against conv2d in double, for every
 * instruction set this CPU runs, at the practical's shapes and at odd ones it supports (a
 * 2x2 image; fewer tiles in a row than a vector holds; more than one vector and a part);
 * the tolerance is the readable F(2x2)'s (2e-6: the same arithmetic, summed in another
 * order). Also: 1 and 2 threads give the same bits, and the shapes it does not take are
 * refused. */
/* dir 0: forward; 1: backward-input; 2: the fused slot's forward, conv(relu(x scale + shift))
 * + add, whose activation must also come out with the bits of the direct kernel's input copy
 * (x scale, then + shift, then max 0: no FMA) */
static double fast_error(const Shape *s, int dir, int threads, float **keep, size_t *n_out)
{
    size_t nx = (size_t)s->N * s->C * s->H * s->W, nw = (size_t)s->K * s->C * 9, ny = (size_t)s->N * s->K * s->H * s->W;
    size_t na = dir == 1 ? ny : nx, nout = dir == 1 ? nx : ny;
    double *a = dvec(na, 7), *b = dvec(nw, 8), *want = nans(nout), *add = dvec(nout, 9), *coef = dvec(2 * (size_t)s->C, 10);
    float *fa = malloc(sizeof(float) * na), *fb = malloc(sizeof(float) * nw), *got = malloc(sizeof(float) * nout);
    float *fadd = malloc(sizeof(float) * nout), *fcoef = malloc(sizeof(float) * 2 * s->C);
    float *act = malloc(sizeof(float) * na), *act_want = malloc(sizeof(float) * na);
    for (size_t i = 0; i < na; i++) a[i] = fa[i] = (float)a[i];
    for (size_t i = 0; i < nw; i++) b[i] = fb[i] = (float)b[i];
    for (size_t i = 0; i < nout; i++) { add[i] = fadd[i] = (float)add[i]; got[i] = NAN; }
    for (int c = 0; c < 2 * s->C; c++) fcoef[c] = (float)coef[c];
    if (dir == 2)   /* the activation, as conv2d_direct.c's pad_image_bn_relu computes it */
        for (size_t i = 0; i < na; i++) {
            int c = (int)(i / ((size_t)s->H * s->W) % s->C);
            float v = fa[i] * fcoef[c] + fcoef[s->C + c];
            act_want[i] = v > 0 ? v : 0;
            a[i] = act_want[i];
            act[i] = NAN;
        }
    double *ws = malloc(sizeof(double) * conv2d_workspace_floats(s->N, s->C, s->H, s->W, s->K, 3, 3, 1, 1));
    if (dir != 1) conv2d_forward_f64(want, a, b, s->N, s->C, s->H, s->W, s->K, 3, 3, 1, 1, ws);
    else conv2d_backward_input_f64(want, a, b, s->N, s->C, s->H, s->W, s->K, 3, 3, 1, 1, ws);
    if (dir == 2)
        for (size_t i = 0; i < nout; i++) want[i] += add[i];
    int before = omp_get_max_threads();
    omp_set_num_threads(threads);
    if (dir == 0) winograd_fast_forward(got, fa, fb, s->N, s->C, s->H, s->W, s->K);
    else if (dir == 1) winograd_fast_backward_input(got, fa, fb, s->N, s->C, s->H, s->W, s->K);
    else winograd_fast_forward_bn(got, act, fa, fb, fadd, s->N, s->C, s->H, s->W, s->K, fcoef, fcoef + s->C);
    omp_set_num_threads(before);
    if (dir == 2)
        ck_assert_msg(memcmp(act, act_want, sizeof(float) * na) == 0, "fused forward: the stored activation differs");
    free(add); free(coef); free(fadd); free(fcoef); free(act); free(act_want);
    *n_out = nout;
    double *g = malloc(sizeof(double) * nout);
    for (size_t i = 0; i < nout; i++) g[i] = got[i];
    double e = rel_err_d(g, want, nout);
    free(a); free(b); free(want); free(fa); free(fb); free(g); free(ws);
    *keep = got;
    return e;
}

START_TEST(winograd_fast_matches)
{
    static const Shape shapes[] = {{2, 16, 32, 32, 16, 1}, {2, 24, 16, 16, 24, 1}, {2, 32, 8, 8, 32, 1},
                                   {1, 5, 2, 2, 8, 1}, {3, 3, 6, 10, 8, 1}, {2, 17, 4, 36, 16, 1},
                                   {1, 8, 2, 2, 8, 1}, {3, 8, 6, 10, 16, 1}, {2, 16, 4, 36, 8, 1},
                                   /* a last chunk of fewer tile rows than the others (the split's
                                    * planes must not move), and a second image on the same thread */
                                   {2, 8, 6, 32, 8, 1}, {2, 8, 10, 16, 8, 1}, {3, 8, 20, 20, 8, 1}};
    static const int isas[] = {CPU_ISA_AVX2, CPU_ISA_AVX512};
    static const char *fast_name[3] = {"forward", "backward-input", "fused forward"};
    int ran = 0;
    for (int k = 0; k < 2; k++) {
        if (!cpu_isa_force(isas[k])) continue;
        ran++;
        for (int dir = 0; dir < 3; dir++)
            for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
                const Shape *s = &shapes[i];
                int cin = dir == 1 ? s->K : s->C, cout = dir == 1 ? s->C : s->K;   /* the convolution it runs */
                if (!winograd_fast_supported(cin, s->H, s->W, cout, 3, 3, 1, 1)) {
                    ck_assert_msg(cout % 8, "shape %zu refused", i);   /* only for the channel count */
                    continue;
                }
                float *one, *two;
                size_t n;
                double e = fast_error(s, dir, 1, &one, &n), e2 = fast_error(s, dir, 2, &two, &n);
                ck_assert_msg(e <= 2e-6, "fast F(2x2) %s (%s), shape %zu: error %g", fast_name[dir], winograd_fast_isa(), i, e);
                ck_assert_msg(e == e2 && memcmp(one, two, sizeof(float) * n) == 0,
                              "fast F(2x2) %s (%s), shape %zu: 1 and 2 threads differ", fast_name[dir], winograd_fast_isa(), i);
                if (i < 3) printf("  winograd fast F(2x2) %-14s (%s) %2d->%2d at %2dx%2d: float error %.2e (tolerance 2e-6)\n",
                                  fast_name[dir], winograd_fast_isa(), s->C, s->K, s->H, s->W, e);
                free(one); free(two);
            }
    }
    cpu_isa_force(-1);
    if (!ran) printf("  winograd fast forward: this CPU has no AVX2; not run\n");
    ck_assert(!winograd_fast_supported(16, 32, 31, 16, 3, 3, 1, 1));   /* odd width */
    ck_assert(!winograd_fast_supported(16, 32, 32, 12, 3, 3, 1, 1));   /* K not a multiple of 8 */
    ck_assert(!winograd_fast_supported(16, 32, 32, 16, 3, 3, 2, 1));   /* stride 2 */
    ck_assert(!winograd_fast_supported(16, 32, 32, 16, 3, 3, 1, 0));   /* pad 0 */
}
END_TEST

/* The fast table's fused slot with Winograd chosen (winograd_fast_set_mode(1), what
 * CONVNET_WINOGRAD=1 does; the measured rule keeps it off) against the same slot with the
 * direct kernel: the same batchnorm statistics and stored activation, bit for bit, and the
 * output within the fast Winograd's tolerance (2e-6, above). */
START_TEST(winograd_in_fused_slot)
{
    int N = 2, C = 16, H = 32, W = 32, K = 16;
    size_t nx = (size_t)N * C * H * W, ny = (size_t)N * K * H * W;
    float *x = malloc(sizeof(float) * nx), *w = malloc(sizeof(float) * K * C * 9), *add = malloc(sizeof(float) * ny);
    float *out[2], *a[2], *st[2];
    double *dx = dvec(nx, 11), *dw = dvec((size_t)K * C * 9, 12), *dadd = dvec(ny, 13);
    for (size_t i = 0; i < nx; i++) x[i] = (float)dx[i];
    for (int i = 0; i < K * C * 9; i++) w[i] = (float)dw[i];
    for (size_t i = 0; i < ny; i++) add[i] = (float)dadd[i];
    float *ws = malloc(sizeof(float) * conv2d_workspace_floats(N, C, H, W, K, 3, 3, 1, 1));
    for (int m = 0; m < 2; m++) {
        winograd_fast_set_mode(m);
        ck_assert_int_eq(winograd_fast_chosen(C, H, W, K, 3, 3, 1, 1), m && cpu_isa_best() >= CPU_ISA_AVX2);
        out[m] = malloc(sizeof(float) * ny); a[m] = malloc(sizeof(float) * nx); st[m] = calloc(6 * (size_t)C, sizeof(float));
        float *g = st[m] + 4 * C, *b = st[m] + 5 * C;
        for (int c = 0; c < C; c++) { g[c] = 1.0f + 0.1f * c; b[c] = 0.05f * c - 0.3f; st[m][3 * C + c] = 1; }
        batchnorm_relu_conv2d_direct_forward(out[m], a[m], x, w, add, N, C, H, W, K, 3, 3, 1, 1, ws, st[m], st[m] + C,
                                             st[m] + 2 * C, st[m] + 3 * C, g, b, 0.1f, 1e-5f, 1);
    }
    winograd_fast_set_mode(-2);   /* (CONVNET_WINOGRAD read again, as at the start) */
    ck_assert_msg(memcmp(a[0], a[1], sizeof(float) * nx) == 0 && memcmp(st[0], st[1], sizeof(float) * 4 * C) == 0,
                  "activation or statistics differ");
    double dmax = 0, ymax = 0;
    for (size_t i = 0; i < ny; i++) {
        dmax = fmax(dmax, fabs((double)out[1][i] - out[0][i]));
        ymax = fmax(ymax, fabs((double)out[0][i]));
    }
    printf("  the fused slot with Winograd against the direct kernel: output %.2e of its largest (tolerance 2e-6)\n",
           dmax / ymax);
    ck_assert_msg(dmax / ymax <= 2e-6, "fused slot output: %g", dmax / ymax);
    for (int m = 0; m < 2; m++) { free(out[m]); free(a[m]); free(st[m]); }
    free(x); free(w); free(add); free(dx); free(dw); free(dadd); free(ws);
}
END_TEST

Suite *suite_winograd(void)
{
    Suite *s = suite_create("winograd (readable)");
    TCase *t = tcase_create("winograd");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, winograd_matches_conv_in_double);
    tcase_add_test(t, winograd_error_in_float);
    tcase_add_test(t, winograd_fast_matches);
    tcase_add_test(t, winograd_in_fused_slot);
    suite_add_tcase(s, t);
    return s;
}
