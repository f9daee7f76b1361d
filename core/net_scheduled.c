/* The scheduled walk: the same network as core/net_plain.c, run through the fast tables'
 * fused slots (core/ops_fused.h) so that fewer passes over memory and fewer launches do the
 * same work. Every function here names the plain-walk lines it stands for; the tests hold the
 * two walks to the same results (PyTorch parity for both CPU tables, GPU vs CPU). What it
 * schedules, where the table has the slot:
 *   - relu(bn(x)) and the conv that reads it as one call (a pre-activation never stored on a
 *     table with recompute_act: the conv applies batchnorm and ReLU as it reads x)
 *   - chained statistics: batchnorm's batch statistics made in the store of the conv that
 *     produces its input (training, pre-activation blocks)
 *   - a conv's backward through the ReLU and batchnorm before it as one call; a pre-activation
 *     block's two layers as one call (the pair), which need not store the gradient between them
 *   - the first block's d x never stored: the stem's weight gradient computes it as it reads it
 *   - the classifier head's backward as one call
 *   - a downsampling block's shortcut on a side branch beside conv1 */
#include "core/net.h"
#include "core/ops_fused.h"
#include "core/util.h"

/* ------------------------------------------------------------------ fused layer calls */

/* out = relu(bn(in)) in one call; replaces net_batchnorm + relu_forward */
static void bn_relu_fwd(Model *m, BatchNorm *b, float *out, const float *in, int N, int train)
{
    float *p = m->params, *buf = m->buffers;
    if (train) {
        m->ops->fused->batchnorm_relu_forward_train(out, b->mean, b->invstd, buf + b->rmean, buf + b->rvar,
                                             in, p + b->gamma, p + b->beta, N, b->C, b->HW, BN_MOMENTUM, BN_EPS);
        m->num_batches_tracked[b->index]++;
    } else {
        m->ops->fused->batchnorm_relu_forward_eval(out, in, p + b->gamma, p + b->beta, buf + b->rmean,
                                            buf + b->rvar, N, b->C, b->HW, BN_EPS);
    }
}

/* the backward of out = relu(bn(in)): din from dout, the ReLU's output and bn's input,
 * plus `add` (a residual gradient; NULL for none); replaces relu_backward +
 * net_batchnorm_backward (+ add_inplace) */
static void relu_bn_bwd(Model *m, const BatchNorm *b, float *din, const float *dout,
                        const float *out, const float *in, const float *add, int N)
{
    m->ops->fused->relu_batchnorm_backward(din, m->grads + b->gamma, m->grads + b->beta, dout, out, in,
                                    add, m->params + b->gamma, b->mean, b->invstd, N, b->C, b->HW);
}

/* both gradients of a bias-free conv whose input `in` = relu(bn(bn_in)), the input side
 * continued through that ReLU and bn: din = d(bn_in) (+ add); g: scratch; replaces
 * net_conv_backward + relu_backward + net_batchnorm_backward (+ add_inplace) */
static void conv_relu_bn_bwd(Model *m, const Conv *c, const BatchNorm *b, float *din, float *g,
                             const float *dout, const float *in, const float *bn_in,
                             const float *add, int N)
{
    if (c->has_bias) die("model: conv_relu_bn_bwd on a conv with bias");
    m->ops->fused->conv2d_relu_batchnorm_backward(m->grads + c->w, din, g, dout, in, m->params + c->w, N,
        c->C, c->H, c->W, c->K, c->R, c->S, c->stride, c->pad, m->ws, m->grads + b->gamma,
        m->grads + b->beta, bn_in, add, m->params + b->gamma, m->params + b->beta, b->mean, b->invstd);
}

/* a = relu(bn(in)), out = conv(a) (+ add): one call (bias-free conv); replaces net_batchnorm +
 * relu_forward + net_conv (+ add_inplace) */
static void bn_relu_conv_fwd(Model *m, BatchNorm *b, const Conv *c, float *out, float *a,
                             const float *in, const float *add, int N, int train)
{
    if (c->has_bias) die("model: bn_relu_conv_fwd on a conv with bias");
    float *p = m->params, *buf = m->buffers;
    m->ops->fused->batchnorm_relu_conv2d_forward(out, a, in, p + c->w, add, N, c->C, c->H, c->W, c->K, c->R,
        c->S, c->stride, c->pad, m->ws, b->mean, b->invstd, buf + b->rmean, buf + b->rvar,
        p + b->gamma, p + b->beta, BN_MOMENTUM, BN_EPS, train);
    if (train) m->num_batches_tracked[b->index]++;
}

static BnRefs bn_refs(Model *m, BatchNorm *b)
{
    BnRefs r = {b->mean, b->invstd, m->buffers + b->rmean, m->buffers + b->rvar, m->params + b->gamma,
                m->params + b->beta, BN_MOMENTUM, BN_EPS};
    return r;
}

/* bn_relu_conv_fwd in training mode on a table with batchnorm_relu_conv2d_forward_chained: bn's
 * statistics of `in` already made when in_ready; those of `out` made for next[0..n_next) */
static void bn_relu_conv_chained(Model *m, BatchNorm *b, const Conv *c, float *out, const float *in,
                                 const float *add, int N, int in_ready, BatchNorm *const *next, int n_next)
{   /* b == NULL: a plain conv (the stem) */
    if (c->has_bias) die("model: bn_relu_conv_fwd on a conv with bias");
    BnRefs self = b ? bn_refs(m, b) : (BnRefs){0}, nx[2];
    for (int k = 0; k < n_next; k++) nx[k] = bn_refs(m, next[k]);
    m->ops->fused->batchnorm_relu_conv2d_forward_chained(out, in, m->params + c->w, add, N, c->C, c->H, c->W, c->K,
        c->R, c->S, c->stride, c->pad, b ? &self : NULL, in_ready, nx, n_next);
    if (b) m->num_batches_tracked[b->index]++;
}

/* the batchnorms that read a block's input: bn1, and ds_bn where it downsamples */
static int block_input_bns(Block *b, BatchNorm **bns)
{
    int n = 0;
    bns[n++] = &b->bn1;
    if (b->sub) bns[n++] = &b->ds_bn;
    return n;
}


/* ------------------------------------------------------------------ blocks */

/* How a pre-activation block's forward runs: chained (training on a table that makes
 * batchnorm statistics in the producing conv) or through the plain slot. Chained: the
 * statistics of the block input were made already when in_ready (by the previous block's
 * conv2, or the stem); conv1 makes bn2's, conv2 those of next's bn1 and ds_bn. */
typedef struct { int train, chained, in_ready; Block *next; } PreactPass;

/* one relu(bn(in)) -> conv (+ add) of the block; next[0..n_next): the batchnorms reading out */
static void preact_conv(Model *m, const PreactPass *pp, BatchNorm *b, const Conv *c, float *out, float *a,
                        const float *in, const float *add, int N, int in_ready, BatchNorm *const *next, int n_next)
{
    if (pp->chained) bn_relu_conv_chained(m, b, c, out, in, add, N, in_ready, next, n_next);
    else bn_relu_conv_fwd(m, b, c, out, a, in, add, N, pp->train);
}

/* net_plain.c's preact_forward, each relu(bn(.)) -> conv one call */
static void preact_forward(Model *m, Block *b, const float *x, int N, const PreactPass *pp)
{
    const FusedOps *f = m->ops->fused;
    BatchNorm *after_c1[1] = {&b->bn2}, *after_y[2];
    int n_after_y = pp->next ? block_input_bns(pp->next, after_y) : 0, in_ready = pp->in_ready;
    /* chained, the shortcut conv beside conv1 (a branch) when x's statistics are ready: then
     * neither runs batchnorm's statistics kernel, whose scratch buffer and ticket exist once */
    int branch = pp->chained && b->sub && in_ready && f->branch_begin;
    if (branch) {
        f->branch_begin();
        preact_conv(m, pp, &b->ds_bn, &b->ds_conv, m->t1, b->ds_a, x, NULL, N, in_ready, NULL, 0);
        f->branch_end();
    }
    preact_conv(m, pp, &b->bn1, &b->conv1, b->c1, b->a1, x, NULL, N, in_ready, after_c1, 1);
    if (b->sub) {
        if (branch) f->branch_join();
        else preact_conv(m, pp, &b->ds_bn, &b->ds_conv, m->t1, b->ds_a, x, NULL, N, in_ready, NULL, 0);
        preact_conv(m, pp, &b->bn2, &b->conv2, b->y, b->a2, b->c1, m->t1, N, 1, after_y, n_after_y);  /* + shortcut */
    } else {
        preact_conv(m, pp, &b->bn2, &b->conv2, b->y, b->a2, b->c1, x, N, 1, after_y, n_after_y);      /* + x */
    }
}

/* the layer a conv and the batchnorm before it make, for conv2d_relu_batchnorm_backward_pair */
static ConvBnLayer conv_bn_layer(Model *m, const Conv *c, const BatchNorm *b, const float *bn_in)
{
    if (c->has_bias) die("model: conv_bn_layer on a conv with bias");
    ConvBnLayer l = {m->params + c->w, bn_in, m->params + b->gamma, m->params + b->beta, b->mean, b->invstd,
                     m->grads + c->w, m->grads + b->gamma, m->grads + b->beta,
                     c->C, c->H, c->W, c->K, c->R, c->S, c->stride, c->pad};
    return l;
}

/* net_plain.c's preact_backward (dy: gradient w.r.t. the block output, left intact; dx:
 * written with d/dx), each conv's backward through the ReLU and bn before it one call, or
 * both layers of the main path one call (the pair). Or dx == NULL
 * (on a pair table with conv2d_backward_weight_bn_grad, a block without a shortcut conv):
 * d x left unapplied, its gradient at bn1's ReLU in t2, for conv2d_backward_weight_bn_grad */
static void preact_backward(Model *m, Block *b, float *dx, const float *dy, const float *x, int N)
{
    const FusedOps *f = m->ops->fused;
    float *t1 = m->t1, *t2 = m->t2;      /* t1: scratch for g; t2: d c1, then d x (main path) */
    if (f->recompute_act && f->conv2d_relu_batchnorm_backward_pair) {
        /* both layers in one call: d c1 need not be stored. Without a shortcut conv: dx = d x
         * (main) + dy, g in t1 and t2; with one: d x (main) into t2 (g1 in dx, free until the
         * shortcut's call writes it), then the shortcut adds it */
        ConvBnLayer l2 = conv_bn_layer(m, &b->conv2, &b->bn2, b->c1), l1 = conv_bn_layer(m, &b->conv1, &b->bn1, x);
        if (!b->sub) {
            f->conv2d_relu_batchnorm_backward_pair(dx, t2, t1, dy, &l2, &l1, dy, N);
        } else {
            f->conv2d_relu_batchnorm_backward_pair(t2, dx, t1, dy, &l2, &l1, NULL, N);
            conv_relu_bn_bwd(m, &b->ds_conv, &b->ds_bn, dx, t1, dy, b->ds_a, x, t2, N);   /* + main */
        }
        return;
    }
    conv_relu_bn_bwd(m, &b->conv2, &b->bn2, t2, t1, dy, b->a2, b->c1, NULL, N);
    if (b->sub) {
        conv_relu_bn_bwd(m, &b->conv1, &b->bn1, t2, t1, t2, b->a1, x, NULL, N);
        conv_relu_bn_bwd(m, &b->ds_conv, &b->ds_bn, dx, t1, dy, b->ds_a, x, t2, N);  /* + main */
    } else {
        conv_relu_bn_bwd(m, &b->conv1, &b->bn1, dx, t1, t2, b->a1, x, dy, N);        /* + dy */
    }
}

/* net_plain.c's original_forward with relu(bn1(.)) one call */
static void original_forward(Model *m, Block *b, const float *x, int N, int train)
{
    const Ops *o = m->ops;
    net_conv(m, &b->conv1, b->c1, x, N);
    bn_relu_fwd(m, &b->bn1, b->a1, b->c1, N, train);
    net_conv(m, &b->conv2, b->c2, b->a1, N);
    net_batchnorm(m, &b->bn2, b->y, b->c2, N, train);
    if (b->sub) {
        net_conv(m, &b->ds_conv, m->t1, x, N);
        o->add_inplace(b->y, m->t1, out_numel(b, N));
    } else {
        o->add_inplace(b->y, x, out_numel(b, N));
    }
    o->relu_forward(b->y, b->y, out_numel(b, N));
}

/* net_plain.c's original_backward with bn1's and its ReLU's backward one call (dy is
 * overwritten with the gradient before the final ReLU) */
static void original_backward(Model *m, Block *b, float *dx, float *dy, const float *x, int N)
{
    const Ops *o = m->ops;
    float *t1 = m->t1, *t2 = m->t2;
    o->relu_backward(dy, dy, b->y, out_numel(b, N));
    net_batchnorm_backward(m, &b->bn2, t1, dy, b->c2, N);
    net_conv_backward(m, &b->conv2, t2, t1, b->a1, N);
    relu_bn_bwd(m, &b->bn1, t1, t2, b->a1, b->c1, NULL, N);
    net_conv_backward(m, &b->conv1, dx, t1, x, N);
    if (b->sub) {
        net_conv_backward(m, &b->ds_conv, t1, dy, x, N);
        o->add_inplace(dx, t1, in_numel(b, N));
    } else {
        o->add_inplace(dx, dy, in_numel(b, N));
    }
}

/* plain_forward: the stem's conv makes block 0's statistics (chained) */
void scheduled_forward(Model *m, int N, int train)
{
    const Ops *o = m->ops;
    const FusedOps *f = o->fused;
    const ModelConfig *c = &m->cfg;
    int chained = train && c->block == BLOCK_PREACT && f->batchnorm_relu_conv2d_forward_chained;
    if (chained && !f->recompute_act) die("model: the %s table chains batchnorm statistics but stores activations", o->name);
    int stem_chained = chained && !m->stem.has_bias;   /* the stem makes block 0's statistics */
    if (stem_chained) {
        BatchNorm *bns[2];
        int n = block_input_bns(&m->blocks[0], bns);
        bn_relu_conv_chained(m, NULL, &m->stem, m->stem_c, m->input, NULL, N, 0, bns, n);
    } else {
        net_conv(m, &m->stem, m->stem_c, m->input, N);
    }
    if (c->block == BLOCK_ORIGINAL) {
        bn_relu_fwd(m, &m->stem_bn, m->stem_a, m->stem_c, N, train);
    }
    for (int i = 0; i < m->n_blocks; i++) {
        Block *next = i + 1 < m->n_blocks ? &m->blocks[i + 1] : NULL;
        PreactPass pp = {train, chained, i > 0 || stem_chained, next};
        if (c->block == BLOCK_PREACT) preact_forward(m, &m->blocks[i], net_block_input(m, i), N, &pp);
        else original_forward(m, &m->blocks[i], net_block_input(m, i), N, train);
    }
    net_head_forward(m, N);
}

/* plain_backward: the head's backward one call, the first block's d x read unapplied by the
 * stem's weight gradient */
void scheduled_backward(Model *m, int N)
{
    const Ops *o = m->ops;
    const FusedOps *f = o->fused;
    const ModelConfig *c = &m->cfg;
    const Block *last = &m->blocks[m->n_blocks - 1];
    float *g = m->g0, *gnext = m->g1;
    if (f->classifier_backward && last->Ho == last->Wo && m->batch_share == 1) {   /* the head in one call */
        f->classifier_backward(g, m->grads + m->fc_w, m->grads + m->fc_b, m->probs, m->labels, m->pooled,
                               m->params + m->fc_w, N, m->feat, c->classes, last->Ho, last->Wo);
    } else {
        net_head_backward(m, g, N);
    }
    /* the stem's weight gradient may read the first block's d x unapplied (ops_fused.h:
     * conv2d_backward_weight_bn_grad): then that d x is never stored */
    Block *first = m->n_blocks > 0 ? &m->blocks[0] : NULL;
    int unapplied = first && c->block == BLOCK_PREACT && f->recompute_act && f->conv2d_relu_batchnorm_backward_pair &&
                    f->conv2d_backward_weight_bn_grad && !first->sub && !m->stem.has_bias;
    for (int i = m->n_blocks - 1; i >= 0; i--) {
        float *dx = i == 0 && unapplied ? NULL : gnext;
        if (c->block == BLOCK_PREACT) preact_backward(m, &m->blocks[i], dx, g, net_block_input(m, i), N);
        else original_backward(m, &m->blocks[i], dx, g, net_block_input(m, i), N);
        if (!dx) break;   /* g stays block 0's dy */
        float *t = g; g = gnext; gnext = t;
    }
    if (unapplied) {   /* d x = g + bn1's backward of t2, computed as the stem's weight gradient reads it */
        const Conv *s = &m->stem;
        ConvBnLayer l1 = conv_bn_layer(m, &first->conv1, &first->bn1, net_block_input(m, 0));
        f->conv2d_backward_weight_bn_grad(m->grads + s->w, m->input, N, s->C, s->H, s->W, s->K, s->R, s->S, s->stride,
                                          s->pad, m->t2, &l1, g);
        return;
    }
    if (c->block == BLOCK_ORIGINAL) {
        relu_bn_bwd(m, &m->stem_bn, m->t1, g, m->stem_a, m->stem_c, NULL, N);
        g = m->t1;
    }
    net_conv_backward(m, &m->stem, NULL, g, m->input, N);
}

