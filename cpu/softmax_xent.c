/* Softmax cross-entropy (PyTorch CrossEntropyLoss, reduction 'mean').
 *   logits [N,C], labels [N] in 0..C-1
 *   probs[n,:] = exp(z - max z) / sum exp(z - max z)        (stable)
 *   losses[n]  = -log probs[n, y_n] = logsumexp(z) - z[y_n]   (mean loss = sum/N, on the host)
 *   correct[n] = argmax_j z[n,j] == y_n  (first max on ties)
 * backward of the MEAN loss:  dlogits[n,j] = (probs[n,j] - [j == y_n]) / N */
#include <math.h>
#include "cpu/cpu.h"

void softmax_xent_forward(real *losses, real *probs, int32_t *correct,
                          const real *logits, const int32_t *labels, int N, int C)
{
    for (int n = 0; n < N; n++) {
        const real *z = logits + (size_t)n * C;
        real *p = probs + (size_t)n * C;
        int arg = 0;
        for (int j = 1; j < C; j++) if (z[j] > z[arg]) arg = j;
        double zmax = z[arg], sum = 0;
        for (int j = 0; j < C; j++) sum += exp(z[j] - zmax);
        for (int j = 0; j < C; j++) p[j] = (real)(exp(z[j] - zmax) / sum);
        losses[n] = (real)(log(sum) + zmax - z[labels[n]]);
        correct[n] = arg == labels[n];
    }
}

void softmax_xent_backward(real *dlogits, const real *probs, const int32_t *labels,
                           int N, int C)
{
    for (int n = 0; n < N; n++)
        for (int j = 0; j < C; j++)
            dlogits[(size_t)n * C + j] =
                (probs[(size_t)n * C + j] - (j == labels[n] ? 1 : 0)) / (real)N;
}
