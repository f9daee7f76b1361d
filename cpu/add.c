/* Residual add: out = a + b (forward). Its backward hands dout unchanged to both inputs,
 * which the model does by accumulating: y += x (add_inplace). */
#include "cpu/cpu.h"

void add_forward(real *out, const real *a, const real *b, size_t n)
{
    #pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void add_inplace(real *y, const real *x, size_t n)
{
    #pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}
