/* The plain walk: the whole ResNet's forward and backward as the practical's basic operators,
 * called in order, one line of math each. Any op table runs it; the reference tables (the
 * readable kernels, on either device) always do. Shapes: x [N, C, H, W]; a block maps
 * [N, Cin, H, W] to [N, Cout, Ho, Wo]; every buffer is one model_create allocated (model.h).
 *
 *   pre-activation block:  y = conv2(relu(bn2(conv1(relu(bn1(x)))))) + shortcut(x)
 *                          shortcut(x) = x, or conv1x1/2(relu(bn_ds(x))) where it downsamples
 *   original block:        y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))
 *                          shortcut(x) = x, or conv1x1/2(x) + bias where it downsamples
 *   network:               logits = linear(avgpool(blocks(stem(x)))),
 *                          stem = conv3x3 (original: then relu(bn(.)))
 *   loss:                  mean over the batch of -log softmax(logits)[label]
 *
 * The backward walks the same lines in reverse, each operator's backward taking the gradient
 * of its output: d(a + b) reaches a and b; relu_backward masks by the stored ReLU output;
 * batchnorm_backward and the convolutions' backward write the parameters' gradients too. */
#include "core/net.h"

/* out = conv(in) (+ bias) */
void net_conv(Model *m, const Conv *c, float *out, const float *in, int N)
{
    m->ops->conv2d_forward(out, in, m->params + c->w, N, c->C, c->H, c->W, c->K, c->R, c->S, c->stride, c->pad, m->ws);
    if (c->has_bias) m->ops->bias_forward(out, m->params + c->b, N, c->K, c->P * c->Q);
}

/* dW = dout (x) in, (dbias = sum dout), din = conv's transpose of dout (din NULL: not needed) */
void net_conv_backward(Model *m, const Conv *c, float *din, const float *dout, const float *in, int N)
{
    const Ops *o = m->ops;
    o->conv2d_backward_weight(m->grads + c->w, dout, in, N, c->C, c->H, c->W, c->K, c->R, c->S, c->stride, c->pad,
                              m->ws);
    if (c->has_bias) o->bias_backward(m->grads + c->b, dout, N, c->K, c->P * c->Q);
    if (din)
        o->conv2d_backward_input(din, dout, m->params + c->w, N, c->C, c->H, c->W, c->K, c->R, c->S, c->stride,
                                 c->pad, m->ws);
}

/* out = gamma (in - mean) / sqrt(var + eps) + beta: batch statistics while training (and the
 * running ones updated), the running statistics otherwise */
void net_batchnorm(Model *m, BatchNorm *b, float *out, const float *in, int N, int train)
{
    float *p = m->params, *buf = m->buffers;
    if (train) {
        m->ops->batchnorm_forward_train(out, b->mean, b->invstd, buf + b->rmean, buf + b->rvar, in, p + b->gamma,
                                        p + b->beta, N, b->C, b->HW, BN_MOMENTUM, BN_EPS);
        m->num_batches_tracked[b->index]++;
    } else {
        m->ops->batchnorm_forward_eval(out, in, p + b->gamma, p + b->beta, buf + b->rmean, buf + b->rvar, N, b->C,
                                       b->HW, BN_EPS);
    }
}

/* din, dgamma, dbeta from dout and batchnorm's input (and the statistics of its forward) */
void net_batchnorm_backward(Model *m, const BatchNorm *b, float *din, const float *dout, const float *in, int N)
{
    m->ops->batchnorm_backward(din, m->grads + b->gamma, m->grads + b->beta, dout, in, m->params + b->gamma, b->mean,
                               b->invstd, N, b->C, b->HW);
}

const float *net_block_input(const Model *m, int i)
{
    if (i > 0) return m->blocks[i - 1].y;
    return m->cfg.block == BLOCK_PREACT ? m->stem_c : m->stem_a;
}

/* ------------------------------------------------------------------ pre-activation block */

static void preact_forward(Model *m, Block *b, const float *x, int N, int train)
{
    const Ops *o = m->ops;
    net_batchnorm(m, &b->bn1, b->a1, x, N, train);          /* a1 = relu(bn1(x))   */
    o->relu_forward(b->a1, b->a1, in_numel(b, N));
    net_conv(m, &b->conv1, b->c1, b->a1, N);                /* c1 = conv1(a1)      */
    net_batchnorm(m, &b->bn2, b->a2, b->c1, N, train);      /* a2 = relu(bn2(c1))  */
    o->relu_forward(b->a2, b->a2, out_numel(b, N));
    net_conv(m, &b->conv2, b->y, b->a2, N);                 /* y = conv2(a2)       */
    if (b->sub) {
        net_batchnorm(m, &b->ds_bn, b->ds_a, x, N, train);  /* ds_a = relu(bn_ds(x)) */
        o->relu_forward(b->ds_a, b->ds_a, in_numel(b, N));
        net_conv(m, &b->ds_conv, m->t1, b->ds_a, N);        /* y += conv_ds(ds_a)  */
        o->add_inplace(b->y, m->t1, out_numel(b, N));
    } else {
        o->add_inplace(b->y, x, out_numel(b, N));           /* y += x              */
    }
}

/* dy: the gradient of the block's output (kept); dx: written with the gradient of x */
static void preact_backward(Model *m, Block *b, float *dx, const float *dy, const float *x, int N)
{
    const Ops *o = m->ops;
    float *t1 = m->t1, *t2 = m->t2;
    net_conv_backward(m, &b->conv2, t1, dy, b->a2, N);      /* t1 = d a2, dW2      */
    o->relu_backward(t1, t1, b->a2, out_numel(b, N));       /* t1 = d bn2(c1)      */
    net_batchnorm_backward(m, &b->bn2, t2, t1, b->c1, N);   /* t2 = d c1           */
    net_conv_backward(m, &b->conv1, t1, t2, b->a1, N);      /* t1 = d a1, dW1      */
    o->relu_backward(t1, t1, b->a1, in_numel(b, N));        /* t1 = d bn1(x)       */
    net_batchnorm_backward(m, &b->bn1, dx, t1, x, N);       /* dx = d x, main path */
    if (b->sub) {
        net_conv_backward(m, &b->ds_conv, t1, dy, b->ds_a, N);  /* the shortcut's path */
        o->relu_backward(t1, t1, b->ds_a, in_numel(b, N));
        net_batchnorm_backward(m, &b->ds_bn, t2, t1, x, N);
        o->add_inplace(dx, t2, in_numel(b, N));             /* dx += d x, shortcut */
    } else {
        o->add_inplace(dx, dy, in_numel(b, N));             /* dx += dy (identity) */
    }
}

/* ------------------------------------------------------------------ original block */

static void original_forward(Model *m, Block *b, const float *x, int N, int train)
{
    const Ops *o = m->ops;
    net_conv(m, &b->conv1, b->c1, x, N);                    /* c1 = conv1(x)       */
    net_batchnorm(m, &b->bn1, b->a1, b->c1, N, train);      /* a1 = relu(bn1(c1))  */
    o->relu_forward(b->a1, b->a1, out_numel(b, N));
    net_conv(m, &b->conv2, b->c2, b->a1, N);                /* c2 = conv2(a1)      */
    net_batchnorm(m, &b->bn2, b->y, b->c2, N, train);       /* y = bn2(c2)         */
    if (b->sub) {
        net_conv(m, &b->ds_conv, m->t1, x, N);              /* y += conv_ds(x) + bias */
        o->add_inplace(b->y, m->t1, out_numel(b, N));
    } else {
        o->add_inplace(b->y, x, out_numel(b, N));           /* y += x              */
    }
    o->relu_forward(b->y, b->y, out_numel(b, N));           /* y = relu(y)         */
}

/* dy: the gradient of the block's output, overwritten (with the gradient before the ReLU) */
static void original_backward(Model *m, Block *b, float *dx, float *dy, const float *x, int N)
{
    const Ops *o = m->ops;
    float *t1 = m->t1, *t2 = m->t2;
    o->relu_backward(dy, dy, b->y, out_numel(b, N));        /* dy = d(bn2 + shortcut) */
    net_batchnorm_backward(m, &b->bn2, t1, dy, b->c2, N);   /* t1 = d c2           */
    net_conv_backward(m, &b->conv2, t2, t1, b->a1, N);      /* t2 = d a1, dW2      */
    o->relu_backward(t2, t2, b->a1, out_numel(b, N));       /* t2 = d bn1(c1)      */
    net_batchnorm_backward(m, &b->bn1, t1, t2, b->c1, N);   /* t1 = d c1           */
    net_conv_backward(m, &b->conv1, dx, t1, x, N);          /* dx = d x, main path */
    if (b->sub) {
        net_conv_backward(m, &b->ds_conv, t1, dy, x, N);    /* dx += d x, shortcut */
        o->add_inplace(dx, t1, in_numel(b, N));
    } else {
        o->add_inplace(dx, dy, in_numel(b, N));             /* dx += dy (identity) */
    }
}

/* ------------------------------------------------------------------ the network */

/* the head: pooled = the last block's output averaged over H x W, logits = pooled W^T + b */
void net_head_forward(Model *m, int N)
{
    const Block *last = &m->blocks[m->n_blocks - 1];
    m->ops->avgpool2d_forward(m->pooled, last->y, N, last->Cout, last->Ho, last->Wo, last->Ho, 1, 0);
    m->ops->linear_forward(m->logits, m->pooled, m->params + m->fc_w, m->params + m->fc_b, N, m->feat, m->cfg.classes);
}

/* The loss's gradient: dlogits = (probs - onehot) / N; with the batch split over processes
 * (core/dist.h) the loss is the whole batch's mean: times this process's share of it. */
void net_loss_backward(Model *m, int N)
{
    m->ops->softmax_xent_backward(m->dlogits, m->probs, m->labels, N, m->cfg.classes);
    if (m->batch_share != 1) m->ops->scale(m->dlogits, (float)m->batch_share, (size_t)N * m->cfg.classes);
}

/* the head's backward from the loss: its gradient, the linear layer's gradients, then
 * g = d(last block's output) through the pooling */
void net_head_backward(Model *m, float *g, int N)
{
    const Ops *o = m->ops;
    const Block *last = &m->blocks[m->n_blocks - 1];
    net_loss_backward(m, N);
    o->linear_backward(m->dpooled, m->grads + m->fc_w, m->grads + m->fc_b, m->dlogits, m->pooled, m->params + m->fc_w,
                       N, m->feat, m->cfg.classes);
    o->avgpool2d_backward(g, m->dpooled, N, last->Cout, last->Ho, last->Wo, last->Ho, 1, 0);
}

void plain_forward(Model *m, int N, int train)
{
    const Ops *o = m->ops;
    const ModelConfig *c = &m->cfg;
    net_conv(m, &m->stem, m->stem_c, m->input, N);          /* stem */
    if (c->block == BLOCK_ORIGINAL) {
        net_batchnorm(m, &m->stem_bn, m->stem_a, m->stem_c, N, train);
        o->relu_forward(m->stem_a, m->stem_a, (size_t)N * m->stem.K * m->stem.P * m->stem.Q);
    }
    for (int i = 0; i < m->n_blocks; i++) {
        if (c->block == BLOCK_PREACT) preact_forward(m, &m->blocks[i], net_block_input(m, i), N, train);
        else original_forward(m, &m->blocks[i], net_block_input(m, i), N, train);
    }
    net_head_forward(m, N);                                 /* logits */
}

void plain_backward(Model *m, int N)
{
    const Ops *o = m->ops;
    const ModelConfig *c = &m->cfg;
    float *g = m->g0, *gnext = m->g1;
    net_head_backward(m, g, N);                             /* g: d(last block's output) */
    for (int i = m->n_blocks - 1; i >= 0; i--) {            /* g: d(block i's output) */
        if (c->block == BLOCK_PREACT) preact_backward(m, &m->blocks[i], gnext, g, net_block_input(m, i), N);
        else original_backward(m, &m->blocks[i], gnext, g, net_block_input(m, i), N);
        float *t = g; g = gnext; gnext = t;
    }
    if (c->block == BLOCK_ORIGINAL) {                       /* the stem's relu(bn(.)) */
        o->relu_backward(g, g, m->stem_a, (size_t)N * m->stem.K * m->stem.P * m->stem.Q);
        net_batchnorm_backward(m, &m->stem_bn, m->t1, g, m->stem_c, N);
        g = m->t1;
    }
    net_conv_backward(m, &m->stem, NULL, g, m->input, N);   /* the images need no gradient */
}
