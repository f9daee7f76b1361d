/* SGD with momentum and weight decay, exactly as torch.optim.SGD (dampening 0, no nesterov):
 *   g   = grad + wd * w
 *   buf = g                      on the first step (PyTorch creates the buffer from g)
 *   buf = momentum * buf + g     afterwards
 *   w  -= lr * buf
 * Applied to one flat array holding every parameter (BN weights/biases included). */
#include "cpu/cpu.h"

void sgd_step(real *w, const real *g, real *buf, size_t n,
              real lr, real momentum, real wd, int first_step)
{
    #pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        real gi = g[i] + wd * w[i];
        buf[i] = first_step ? gi : momentum * buf[i] + gi;
        w[i] -= lr * buf[i];
    }
}
