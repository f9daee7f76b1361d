/* Linear (fully connected), PyTorch nn.Linear:
 *   in [N,I], weight [O,I], bias [O], out [N,O] = in * weight^T + bias
 * backward:  din [N,I] = dout * weight;  dweight [O,I] = dout^T * in;  dbias = sum_n dout */
#include "cpu/cpu.h"

void linear_forward(real *out, const real *in, const real *weight, const real *bias,
                    int N, int I, int O)
{
    gemm(0, 1, N, O, I, in, I, weight, I, 0, out, O);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < O; o++) out[(size_t)n * O + o] += bias[o];
}

void linear_backward(real *din, real *dweight, real *dbias, const real *dout,
                     const real *in, const real *weight, int N, int I, int O)
{
    gemm(0, 0, N, I, O, dout, O, weight, I, 0, din, I);
    gemm(1, 0, O, I, N, dout, O, in, I, 0, dweight, I);
    for (int o = 0; o < O; o++) {
        double acc = 0;
        for (int n = 0; n < N; n++) acc += dout[(size_t)n * O + o];
        dbias[o] = (real)acc;
    }
}
