/* Part 3's MLP (the previous practical's network): the image flattened, then linear layers with
 * ReLU between them, trained with the same loss and SGD as the ResNet. Basic operators only,
 * so every table runs it. Layer l maps width[l] to width[l+1] values per image; act[l] holds
 * hidden layer l's ReLU output [N, width[l+1]]. */
#include "core/net.h"

/* act[l] = relu(act[l-1] W_l^T + b_l) (act[-1] = the flattened images), logits = the last
 * linear layer's output */
void mlp_forward(Model *m, int N)
{
    const float *x = m->input;
    for (int l = 0; l < m->n_layers; l++) {
        int last = l == m->n_layers - 1;
        float *out = last ? m->logits : m->act[l];
        m->ops->linear_forward(out, x, m->params + m->lw[l], m->params + m->lb[l], N, m->width[l], m->width[l + 1]);
        if (!last) m->ops->relu_forward(out, out, (size_t)N * m->width[l + 1]);
        x = out;
    }
}

/* from the loss's gradient back through each linear layer and ReLU; the images need none */
void mlp_backward(Model *m, int N)
{
    const Ops *o = m->ops;
    net_loss_backward(m, N);
    const float *dout = m->dlogits;
    float *g = m->g0, *gnext = m->g1;
    for (int l = m->n_layers - 1; l >= 0; l--) {
        const float *in = l ? m->act[l - 1] : m->input;
        o->linear_backward(g, m->grads + m->lw[l], m->grads + m->lb[l], dout, in, m->params + m->lw[l],
                           N, m->width[l], m->width[l + 1]);
        if (l) o->relu_backward(g, g, m->act[l - 1], (size_t)N * m->width[l]);
        dout = g;
        float *t = g; g = gnext; gnext = t;
    }
}

