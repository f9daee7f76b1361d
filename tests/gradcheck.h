/* Finite-difference gradient checking in double precision (tests only).
 *
 * The operator under test is the double build of cpu/ (see core/real.h). A test defines a
 * scalar loss L(x) = sum_i out_i * R_i with fixed random R, so that dL/dout = R, runs the
 * operator's backward with dout = R for the analytic gradient, and compares it with central
 * differences (L(x + h e_i) - L(x - h e_i)) / 2h for every element i of every input.
 *
 * Error metric: max_i |analytic_i - numeric_i| / max_i |numeric_i|. In double with h = 1e-6
 * correct gradients land near 1e-9; GRAD_TOL is 1e-6, while scaling any gradient by 1.01
 * gives 1e-2, so the check is four orders of magnitude from both sides.
 *
 * Kinks (ReLU at 0, max-pool ties): the loss callback reports through *kink when the
 * perturbed evaluation changed a discrete choice (sign, argmax) relative to the unperturbed
 * one; such coordinates are skipped, as Caffe's checker does, never the tolerance loosened.
 */
#ifndef CONVNET_GRADCHECK_H
#define CONVNET_GRADCHECK_H
#include <stddef.h>

#define GRAD_TOL 1e-6
#define GRAD_H 1e-6

/* Returns L at the current inputs; sets *kink = 1 if a discrete choice differs from the
 * reference evaluation (callers that have no kinks leave it alone). */
typedef double (*loss_fn)(void *ctx, int *kink);

typedef struct GradResult {
    double err;          /* metric above for the analytic gradient as given */
    double err_scaled;   /* the same with the analytic gradient scaled by 1.01 */
    size_t checked, skipped;
} GradResult;

/* Perturbs x in place (restored on return). */
GradResult grad_check(double *x, size_t n, const double *analytic, loss_fn f, void *ctx);

/* sum_i a_i * b_i */
double dot(const double *a, const double *b, size_t n);
/* Fill with N(0,1) / U(lo,hi) from a fixed-seed generator. */
void fill_normal(double *x, size_t n, unsigned seed);
void fill_normal_f(float *x, size_t n, unsigned seed);
void fill_uniform(double *x, size_t n, double lo, double hi, unsigned seed);

/* Asserts err < GRAD_TOL and err_scaled > GRAD_TOL, with a message naming `what`. */
#define ASSERT_GRAD(res, what)                                                               \
    do {                                                                                     \
        GradResult r_ = (res);                                                               \
        ck_assert_msg(r_.err < GRAD_TOL, "%s: gradient error %.3g >= %.1g", what, r_.err,    \
                      GRAD_TOL);                                                             \
        ck_assert_msg(r_.err_scaled > GRAD_TOL,                                              \
                      "%s: a 1%% wrong gradient was not detected (%.3g)", what,              \
                      r_.err_scaled);                                                        \
        ck_assert_msg(r_.skipped * 10 <= r_.checked + r_.skipped,                            \
                      "%s: too many kink points skipped (%zu of %zu)", what, r_.skipped,     \
                      r_.checked + r_.skipped);                                              \
    } while (0)

#endif
