/* Residual add: out = a + b (forward). Its backward hands dout unchanged to both inputs,
 * which the model does by accumulating: y += x (add_inplace). And y *= a (scale_inplace:
 * the loss gradient times a process's share of the batch, core/net_plain.c). */
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

void scale_inplace(real *y, real a, size_t n)
{
    #pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) y[i] *= a;
}
