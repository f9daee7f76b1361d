/* ReLU: out = max(in, 0). Backward uses the forward OUTPUT (out > 0 exactly where in > 0),
 * so the forward may run in place (out == in) and the input need not be kept.
 *   din = dout * [out > 0]     (the subgradient at 0 is 0, as in PyTorch)
 * `omp simd` lets the compiler vectorize although out may alias in (in place). */
#include "cpu/cpu.h"

void relu_forward(real *out, const real *in, size_t n)
{
    #pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) out[i] = in[i] > 0 ? in[i] : 0;
}

void relu_backward(real *din, const real *dout, const real *out, size_t n)
{
    #pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        real d = dout[i];   /* loaded unconditionally, so the select vectorizes (no branch) */
        din[i] = out[i] > 0 ? d : 0;
    }
}
