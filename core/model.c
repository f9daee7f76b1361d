/* ResNet graph over the op table. See model.h for the structure and memory layout. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/model.h"
#include "core/util.h"

void model_config_default(ModelConfig *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->block = BLOCK_PREACT;
    cfg->n_stages = 3;
    cfg->blocks[0] = 2; cfg->blocks[1] = 2; cfg->blocks[2] = 3;
    cfg->channels[0] = 16; cfg->channels[1] = 24; cfg->channels[2] = 32;
    cfg->classes = 10;
    cfg->in_c = 3; cfg->in_h = 32; cfg->in_w = 32;
}

void model_config_mlp(ModelConfig *cfg)
{
    model_config_default(cfg);
    cfg->mlp = 1;
    cfg->n_hidden = 2;
    cfg->hidden[0] = 512; cfg->hidden[1] = 256;
}

int model_config_same(const ModelConfig *a, const ModelConfig *b)
{
    if (a->block != b->block || a->n_stages != b->n_stages || a->classes != b->classes || a->in_c != b->in_c ||
        a->in_h != b->in_h || a->in_w != b->in_w || a->mlp != b->mlp || a->n_hidden != b->n_hidden)
        return 0;
    for (int s = 0; s < a->n_stages; s++)
        if (a->blocks[s] != b->blocks[s] || a->channels[s] != b->channels[s]) return 0;
    for (int h = 0; h < a->n_hidden; h++)
        if (a->hidden[h] != b->hidden[h]) return 0;
    return 1;
}

int parse_int_list(const char *s, int *out, int max)
{
    int n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0 || v > 1000000 || n == max) return -1;
        out[n++] = (int)v;
        if (*end == ',') end++;
        else if (*end) return -1;
        s = end;
    }
    return n;
}

/* ------------------------------------------------------------------ planning */

static void add_entry(Model *m, const char *name, int ndim, const int *shape, int kind,
                      size_t offset)
{
    m->entries = realloc(m->entries, sizeof(Entry) * (m->n_entries + 1));
    if (!m->entries) die("out of memory");
    Entry *e = &m->entries[m->n_entries++];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->ndim = ndim;
    e->numel = 1;
    for (int i = 0; i < ndim; i++) { e->shape[i] = shape[i]; e->numel *= shape[i]; }
    e->kind = kind;
    e->offset = offset;
}

static Conv plan_conv(Model *m, const char *prefix, int C, int K, int R, int stride, int pad,
                      int H, int W, int has_bias)
{
    Conv c = {C, K, R, R, stride, pad, H, W, conv_out_size(H, R, stride, pad),
              conv_out_size(W, R, stride, pad), 0, 0, has_bias};
    char name[96];
    int shape[4] = {K, C, R, R};
    c.w = m->n_params;
    snprintf(name, sizeof name, "%s.weight", prefix);
    add_entry(m, name, 4, shape, ENTRY_PARAM, c.w);
    m->n_params += (size_t)K * C * R * R;
    if (has_bias) {
        c.b = m->n_params;
        snprintf(name, sizeof name, "%s.bias", prefix);
        add_entry(m, name, 1, &K, ENTRY_PARAM, c.b);
        m->n_params += K;
    }
    return c;
}

static BatchNorm plan_bn(Model *m, const char *prefix, int C, int HW)
{
    BatchNorm b = {C, HW, 0, 0, 0, 0, m->n_bn++, NULL, NULL};
    char name[96];
    b.gamma = m->n_params;  snprintf(name, sizeof name, "%s.weight", prefix);
    add_entry(m, name, 1, &C, ENTRY_PARAM, b.gamma);
    b.beta = m->n_params + C;  snprintf(name, sizeof name, "%s.bias", prefix);
    add_entry(m, name, 1, &C, ENTRY_PARAM, b.beta);
    m->n_params += 2 * (size_t)C;
    b.rmean = m->n_buffers;  snprintf(name, sizeof name, "%s.running_mean", prefix);
    add_entry(m, name, 1, &C, ENTRY_BUFFER, b.rmean);
    b.rvar = m->n_buffers + C;  snprintf(name, sizeof name, "%s.running_var", prefix);
    add_entry(m, name, 1, &C, ENTRY_BUFFER, b.rvar);
    m->n_buffers += 2 * (size_t)C;
    snprintf(name, sizeof name, "%s.num_batches_tracked", prefix);
    add_entry(m, name, 0, NULL, ENTRY_COUNT, (size_t)b.index);
    return b;
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

/* What every model has for a batch of N: the input images, logits, loss and accuracy
 * buffers (device and host), and two gradient buffers of `width` floats per image. */
static void alloc_io(Model *m, size_t N, size_t width)
{
    const Ops *ops = m->ops;
    const ModelConfig *cfg = &m->cfg;
    size_t fl = sizeof(float);
    m->input = ops->alloc(N * cfg->in_c * cfg->in_h * cfg->in_w * fl);
    m->logits = ops->alloc(N * cfg->classes * fl);
    m->probs = ops->alloc(N * cfg->classes * fl);
    m->dlogits = ops->alloc(N * cfg->classes * fl);
    m->losses = ops->alloc(N * fl);
    m->labels = ops->alloc(N * sizeof(int32_t));
    m->correct = ops->alloc(N * sizeof(int32_t));
    m->g0 = ops->alloc(N * width * fl);
    m->g1 = ops->alloc(N * width * fl);
    m->host_losses = xmalloc(N * fl);
    m->host_correct = xmalloc(N * sizeof(int32_t));
}

/* The MLP: linear layers (PyTorch Linear init in model_init), ReLU between them. */
static Model *mlp_create(Model *m, int max_batch)
{
    const ModelConfig *cfg = &m->cfg;
    const Ops *ops = m->ops;
    if (cfg->n_hidden < 0 || cfg->n_hidden > 4) die_code(2, "model: %d hidden layers (0..4)", cfg->n_hidden);
    m->n_layers = cfg->n_hidden + 1;
    m->width[0] = cfg->in_c * cfg->in_h * cfg->in_w;
    for (int l = 0; l < cfg->n_hidden; l++) m->width[l + 1] = cfg->hidden[l];
    m->width[m->n_layers] = cfg->classes;
    int widest = 0;
    for (int l = 0; l <= m->n_layers; l++) widest = m->width[l] > widest ? m->width[l] : widest;
    for (int l = 0; l < m->n_layers; l++) {
        char name[96];
        int shape[2] = {m->width[l + 1], m->width[l]};
        m->lw[l] = m->n_params;
        snprintf(name, sizeof name, "model.%d.weight", 2 * l + 1);
        add_entry(m, name, 2, shape, ENTRY_PARAM, m->lw[l]);
        m->n_params += (size_t)shape[0] * shape[1];
        m->lb[l] = m->n_params;
        snprintf(name, sizeof name, "model.%d.bias", 2 * l + 1);
        add_entry(m, name, 1, shape, ENTRY_PARAM, m->lb[l]);
        m->n_params += shape[0];
    }
    size_t N = (size_t)max_batch, fl = sizeof(float);
    m->params = ops->alloc(m->n_params * fl);
    m->grads = ops->alloc(m->n_params * fl);
    m->momentum = ops->alloc(m->n_params * fl);
    m->buffers = ops->alloc(fl);
    m->num_batches_tracked = xcalloc(1, sizeof(int64_t));
    for (int l = 0; l < cfg->n_hidden; l++) m->act[l] = ops->alloc(N * m->width[l + 1] * fl);
    alloc_io(m, N, widest);
    return m;
}

Model *model_create(const Ops *ops, const ModelConfig *cfg, int max_batch)
{
    Model *m = xcalloc(1, sizeof *m);
    m->ops = ops;
    m->cfg = *cfg;
    m->max_batch = max_batch;
    if (cfg->mlp) return mlp_create(m, max_batch);
    int pre = cfg->block == BLOCK_PREACT;
    int H = cfg->in_h, W = cfg->in_w, C = cfg->channels[0];
    if (H != W) die("model: only square inputs are supported (got %dx%d)", H, W);
    if (cfg->n_stages < 1 || cfg->n_stages > MAX_STAGES) die_code(2, "model: %d stages (1..%d)", cfg->n_stages, MAX_STAGES);
    for (int s = 0; s < cfg->n_stages; s++)
        if (cfg->blocks[s] <= 0 || cfg->channels[s] <= 0)
            die_code(2, "model: stage %d has no block count or channel count "
                        "(--blocks and --channels need the same number of entries)", s + 1);

    m->stem = plan_conv(m, "model.input_net.0", cfg->in_c, C, 3, 1, 1, H, W, 0);
    if (!pre) m->stem_bn = plan_bn(m, "model.input_net.1", C, H * W);
    for (int s = 0; s < cfg->n_stages; s++) m->n_blocks += cfg->blocks[s];
    m->blocks = xcalloc(m->n_blocks, sizeof(Block));
    int bi = 0;
    for (int s = 0; s < cfg->n_stages; s++)
        for (int i = 0; i < cfg->blocks[s]; i++, bi++) {
            Block *b = &m->blocks[bi];
            char p[96];
            b->sub = i == 0 && s > 0;
            b->Cin = b->sub ? cfg->channels[s - 1] : cfg->channels[s];
            b->Cout = cfg->channels[s];
            b->H = H; b->W = W;
            int st = b->sub ? 2 : 1;
            b->Ho = conv_out_size(H, 3, st, 1); b->Wo = conv_out_size(W, 3, st, 1);
            int hw = H * W, ohw = b->Ho * b->Wo;
#define NAME(fmt) (snprintf(p, sizeof p, "model.blocks.%d." fmt, bi), p)
            if (pre) {
                b->bn1 = plan_bn(m, NAME("net.0"), b->Cin, hw);
                b->conv1 = plan_conv(m, NAME("net.2"), b->Cin, b->Cout, 3, st, 1, H, W, 0);
                b->bn2 = plan_bn(m, NAME("net.3"), b->Cout, ohw);
                b->conv2 = plan_conv(m, NAME("net.5"), b->Cout, b->Cout, 3, 1, 1, b->Ho, b->Wo, 0);
                if (b->sub) {
                    b->ds_bn = plan_bn(m, NAME("downsample.0"), b->Cin, hw);
                    b->ds_conv = plan_conv(m, NAME("downsample.2"), b->Cin, b->Cout, 1, 2, 0, H, W, 0);
                }
            } else {
                b->conv1 = plan_conv(m, NAME("net.0"), b->Cin, b->Cout, 3, st, 1, H, W, 0);
                b->bn1 = plan_bn(m, NAME("net.1"), b->Cout, ohw);
                b->conv2 = plan_conv(m, NAME("net.3"), b->Cout, b->Cout, 3, 1, 1, b->Ho, b->Wo, 0);
                b->bn2 = plan_bn(m, NAME("net.4"), b->Cout, ohw);
                if (b->sub)
                    b->ds_conv = plan_conv(m, NAME("downsample"), b->Cin, b->Cout, 1, 2, 0, H, W, 1);
            }
#undef NAME
            if (b->sub && (b->ds_conv.P != b->Ho || b->ds_conv.Q != b->Wo))
                die("model: shortcut and residual shapes differ at block %d", bi);
            H = b->Ho; W = b->Wo;
        }
    m->feat = cfg->channels[cfg->n_stages - 1];
    int fshape[2] = {cfg->classes, m->feat};
    m->fc_w = m->n_params;
    add_entry(m, "model.output_net.2.weight", 2, fshape, ENTRY_PARAM, m->fc_w);
    m->n_params += (size_t)cfg->classes * m->feat;
    m->fc_b = m->n_params;
    add_entry(m, "model.output_net.2.bias", 1, &cfg->classes, ENTRY_PARAM, m->fc_b);
    m->n_params += cfg->classes;

    /* ---- allocation ---- */
    size_t N = (size_t)max_batch, fl = sizeof(float);
    m->params = ops->alloc(m->n_params * fl);
    m->grads = ops->alloc(m->n_params * fl);
    m->momentum = ops->alloc(m->n_params * fl);
    m->buffers = ops->alloc(m->n_buffers * fl);
    m->num_batches_tracked = xcalloc(m->n_bn, sizeof(int64_t));
    size_t act = (size_t)cfg->in_c * cfg->in_h * cfg->in_w, ws = 0;
    size_t stem_sz = (size_t)C * cfg->in_h * cfg->in_w;
    act = max_sz(act, stem_sz);
    m->stem_c = ops->alloc(N * stem_sz * fl);
    if (!pre) m->stem_a = ops->alloc(N * stem_sz * fl);
    ws = conv2d_workspace_floats(max_batch, cfg->in_c, cfg->in_h, cfg->in_w, C, 3, 3, 1, 1);
#define BN_ALLOC(bn) do { if ((bn).C) { (bn).mean = ops->alloc((bn).C * fl); (bn).invstd = ops->alloc((bn).C * fl); } } while (0)
    BN_ALLOC(m->stem_bn);
    for (int i = 0; i < m->n_blocks; i++) {
        Block *b = &m->blocks[i];
        size_t in_sz = (size_t)b->Cin * b->H * b->W, out_sz = (size_t)b->Cout * b->Ho * b->Wo;
        act = max_sz(act, max_sz(in_sz, out_sz));
        if (pre) {   /* a1, ds_a, a2: not stored where the table recomputes them (ops.h) */
            if (!ops->recompute_act) b->a1 = ops->alloc(N * in_sz * fl);
            if (b->sub && !ops->recompute_act) b->ds_a = ops->alloc(N * in_sz * fl);
        } else {
            b->a1 = ops->alloc(N * out_sz * fl);
            b->c2 = ops->alloc(N * out_sz * fl);
        }
        b->c1 = ops->alloc(N * out_sz * fl);
        if (pre && !ops->recompute_act) b->a2 = ops->alloc(N * out_sz * fl);
        b->y = ops->alloc(N * out_sz * fl);
        BN_ALLOC(b->bn1); BN_ALLOC(b->bn2); BN_ALLOC(b->ds_bn);
        const Conv *cs[3] = {&b->conv1, &b->conv2, &b->ds_conv};
        for (int k = 0; k < 3; k++)
            if (cs[k]->K)
                ws = max_sz(ws, conv2d_workspace_floats(max_batch, cs[k]->C, cs[k]->H, cs[k]->W,
                                                        cs[k]->K, cs[k]->R, cs[k]->S,
                                                        cs[k]->stride, cs[k]->pad));
    }
#undef BN_ALLOC
    alloc_io(m, N, act);
    m->pooled = ops->alloc(N * m->feat * fl);
    m->dpooled = ops->alloc(N * m->feat * fl);
    m->t1 = ops->alloc(N * act * fl);
    m->t2 = ops->alloc(N * act * fl);
    m->ws = ops->alloc(ws * fl);
    return m;
}

void model_free(Model *m)
{
    if (!m) return;
    const Ops *o = m->ops;
    void *bufs[] = {m->params, m->grads, m->momentum, m->buffers, m->stem_c, m->stem_a,
                    m->stem_bn.mean, m->stem_bn.invstd, m->input, m->pooled, m->dpooled,
                    m->logits, m->probs, m->dlogits, m->losses, m->labels, m->correct,
                    m->g0, m->g1, m->t1, m->t2, m->ws};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) if (bufs[i]) o->free(bufs[i]);
    for (int l = 0; l < 4; l++) if (m->act[l]) o->free(m->act[l]);
    for (int i = 0; i < m->n_blocks; i++) {
        Block *b = &m->blocks[i];
        void *bb[] = {b->a1, b->c1, b->a2, b->c2, b->y, b->ds_a, b->bn1.mean, b->bn1.invstd,
                      b->bn2.mean, b->bn2.invstd, b->ds_bn.mean, b->ds_bn.invstd};
        for (size_t k = 0; k < sizeof bb / sizeof bb[0]; k++) if (bb[k]) o->free(bb[k]);
    }
    free(m->blocks);
    free(m->entries);
    free(m->num_batches_tracked);
    free(m->host_losses);
    free(m->host_correct);
    free(m);
}

size_t model_num_trainable(const Model *m) { return m->n_params; }

/* ------------------------------------------------------------------ init */

/* conv: kaiming_normal_(mode='fan_out', nonlinearity='relu'): N(0, 2 / (K*R*S));
 *       a conv bias keeps PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C*R*S.
 * BN:   weight 1, bias 0, running_mean 0, running_var 1.
 * linear: PyTorch default: weight and bias U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform, a=sqrt 5). */
static void init_conv(float *p, const Conv *c, Rng *rng)
{
    double std = sqrt(2.0 / ((double)c->K * c->R * c->S));
    for (size_t i = 0; i < (size_t)c->K * c->C * c->R * c->S; i++) p[c->w + i] = (float)(std * rng_normal(rng));
    if (c->has_bias) {
        double bound = 1.0 / sqrt((double)c->C * c->R * c->S);
        for (int i = 0; i < c->K; i++) p[c->b + i] = (float)rng_uniform_range(rng, -bound, bound);
    }
}

static void init_bn(float *p, float *buf, const BatchNorm *b)
{
    if (!b->C) return;
    for (int i = 0; i < b->C; i++) {
        p[b->gamma + i] = 1; p[b->beta + i] = 0;
        buf[b->rmean + i] = 0; buf[b->rvar + i] = 1;
    }
}

void model_init(Model *m, Rng *rng)
{
    if (m->cfg.mlp) {   /* PyTorch Linear default: weight and bias U(-1/sqrt(in), 1/sqrt(in)) */
        float *p = xcalloc(m->n_params, sizeof(float));
        for (int l = 0; l < m->n_layers; l++) {
            double bound = 1.0 / sqrt((double)m->width[l]);
            for (size_t i = 0; i < (size_t)m->width[l + 1] * m->width[l]; i++)
                p[m->lw[l] + i] = (float)rng_uniform_range(rng, -bound, bound);
            for (int i = 0; i < m->width[l + 1]; i++) p[m->lb[l] + i] = (float)rng_uniform_range(rng, -bound, bound);
        }
        model_set_params(m, p);
        m->steps = 0;
        free(p);
        return;
    }
    float *p = xcalloc(m->n_params, sizeof(float)), *buf = xcalloc(m->n_buffers, sizeof(float));
    init_conv(p, &m->stem, rng);
    init_bn(p, buf, &m->stem_bn);
    for (int i = 0; i < m->n_blocks; i++) {
        Block *b = &m->blocks[i];
        init_bn(p, buf, &b->bn1);
        init_conv(p, &b->conv1, rng);
        init_bn(p, buf, &b->bn2);
        init_conv(p, &b->conv2, rng);
        init_bn(p, buf, &b->ds_bn);
        if (b->sub) init_conv(p, &b->ds_conv, rng);
    }
    double bound = 1.0 / sqrt((double)m->feat);
    for (size_t i = 0; i < (size_t)m->cfg.classes * m->feat; i++) p[m->fc_w + i] = (float)rng_uniform_range(rng, -bound, bound);
    for (int i = 0; i < m->cfg.classes; i++) p[m->fc_b + i] = (float)rng_uniform_range(rng, -bound, bound);
    model_set_params(m, p);
    model_set_buffers(m, buf);
    memset(m->num_batches_tracked, 0, sizeof(int64_t) * m->n_bn);
    m->steps = 0;
    free(p);
    free(buf);
}

/* ------------------------------------------------------------------ layer helpers */

static void conv_fwd(Model *m, const Conv *c, float *out, const float *in, int N)
{
    m->ops->conv2d_forward(out, in, m->params + c->w, N, c->C, c->H, c->W, c->K, c->R, c->S,
                           c->stride, c->pad, m->ws);
    if (c->has_bias) m->ops->bias_forward(out, m->params + c->b, N, c->K, c->P * c->Q);
}

/* din may be NULL (input gradient not needed, e.g. the images) */
static void conv_bwd(Model *m, const Conv *c, float *din, const float *dout, const float *in, int N)
{
    const Ops *o = m->ops;
    o->conv2d_backward_weight(m->grads + c->w, dout, in, N, c->C, c->H, c->W, c->K, c->R, c->S,
                              c->stride, c->pad, m->ws);
    if (c->has_bias) o->bias_backward(m->grads + c->b, dout, N, c->K, c->P * c->Q);
    if (din)
        o->conv2d_backward_input(din, dout, m->params + c->w, N, c->C, c->H, c->W, c->K, c->R,
                                 c->S, c->stride, c->pad, m->ws);
}

static void bn_fwd(Model *m, BatchNorm *b, float *out, const float *in, int N, int train)
{
    float *p = m->params, *buf = m->buffers;
    if (train) {
        m->ops->batchnorm_forward_train(out, b->mean, b->invstd, buf + b->rmean, buf + b->rvar, in,
                                        p + b->gamma, p + b->beta, N, b->C, b->HW, 0.1f, 1e-5f);
        m->num_batches_tracked[b->index]++;
    } else {
        m->ops->batchnorm_forward_eval(out, in, p + b->gamma, p + b->beta, buf + b->rmean,
                                       buf + b->rvar, N, b->C, b->HW, 1e-5f);
    }
}

static void bn_bwd(Model *m, const BatchNorm *b, float *din, const float *dout, const float *in, int N)
{
    m->ops->batchnorm_backward(din, m->grads + b->gamma, m->grads + b->beta, dout, in,
                               m->params + b->gamma, b->mean, b->invstd, N, b->C, b->HW);
}

/* out = relu(bn(in)) in one operator */
static void bn_relu_fwd(Model *m, BatchNorm *b, float *out, const float *in, int N, int train)
{
    float *p = m->params, *buf = m->buffers;
    if (train) {
        m->ops->batchnorm_relu_forward_train(out, b->mean, b->invstd, buf + b->rmean, buf + b->rvar,
                                             in, p + b->gamma, p + b->beta, N, b->C, b->HW, 0.1f, 1e-5f);
        m->num_batches_tracked[b->index]++;
    } else {
        m->ops->batchnorm_relu_forward_eval(out, in, p + b->gamma, p + b->beta, buf + b->rmean,
                                            buf + b->rvar, N, b->C, b->HW, 1e-5f);
    }
}

/* the backward of out = relu(bn(in)): din from dout, the ReLU's output and bn's input,
 * plus `add` (a residual gradient; NULL for none) */
static void relu_bn_bwd(Model *m, const BatchNorm *b, float *din, const float *dout,
                        const float *out, const float *in, const float *add, int N)
{
    m->ops->relu_batchnorm_backward(din, m->grads + b->gamma, m->grads + b->beta, dout, out, in,
                                    add, m->params + b->gamma, b->mean, b->invstd, N, b->C, b->HW);
}

/* both gradients of a bias-free conv whose input `in` = relu(bn(bn_in)), the input side
 * continued through that ReLU and bn: din = d(bn_in) (+ add); g: scratch */
static void conv_relu_bn_bwd(Model *m, const Conv *c, const BatchNorm *b, float *din, float *g,
                             const float *dout, const float *in, const float *bn_in,
                             const float *add, int N)
{
    if (c->has_bias) die("model: conv_relu_bn_bwd on a conv with bias");
    m->ops->conv2d_relu_batchnorm_backward(m->grads + c->w, din, g, dout, in, m->params + c->w, N,
        c->C, c->H, c->W, c->K, c->R, c->S, c->stride, c->pad, m->ws, m->grads + b->gamma,
        m->grads + b->beta, bn_in, add, m->params + b->gamma, m->params + b->beta, b->mean, b->invstd);
}

/* a = relu(bn(in)), out = conv(a) (+ add): one operator (bias-free conv) */
static void bn_relu_conv_fwd(Model *m, BatchNorm *b, const Conv *c, float *out, float *a,
                             const float *in, const float *add, int N, int train)
{
    if (c->has_bias) die("model: bn_relu_conv_fwd on a conv with bias");
    float *p = m->params, *buf = m->buffers;
    m->ops->batchnorm_relu_conv2d_forward(out, a, in, p + c->w, add, N, c->C, c->H, c->W, c->K, c->R,
        c->S, c->stride, c->pad, m->ws, b->mean, b->invstd, buf + b->rmean, buf + b->rvar,
        p + b->gamma, p + b->beta, 0.1f, 1e-5f, train);
    if (train) m->num_batches_tracked[b->index]++;
}


static BnRefs bn_refs(Model *m, BatchNorm *b)
{
    BnRefs r = {b->mean, b->invstd, m->buffers + b->rmean, m->buffers + b->rvar, m->params + b->gamma,
                m->params + b->beta, 0.1f, 1e-5f};
    return r;
}

/* training mode on a table with batchnorm_relu_conv2d_forward_chained: bn's statistics of `in`
 * already made when in_ready; those of `out` made for next[0..n_next) */
static void bn_relu_conv_chained(Model *m, BatchNorm *b, const Conv *c, float *out, const float *in,
                                 const float *add, int N, int in_ready, BatchNorm *const *next, int n_next)
{   /* b == NULL: a plain conv (the stem) */
    if (c->has_bias) die("model: bn_relu_conv_fwd on a conv with bias");
    BnRefs self = b ? bn_refs(m, b) : (BnRefs){0}, nx[2];
    for (int k = 0; k < n_next; k++) nx[k] = bn_refs(m, next[k]);
    m->ops->batchnorm_relu_conv2d_forward_chained(out, in, m->params + c->w, add, N, c->C, c->H, c->W, c->K,
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

static size_t out_numel(const Block *b, int N) { return (size_t)N * b->Cout * b->Ho * b->Wo; }
static size_t in_numel(const Block *b, int N) { return (size_t)N * b->Cin * b->H * b->W; }

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

static void preact_forward(Model *m, Block *b, const float *x, int N, const PreactPass *pp)
{
    const Ops *o = m->ops;
    BatchNorm *after_c1[1] = {&b->bn2}, *after_y[2];
    int n_after_y = pp->next ? block_input_bns(pp->next, after_y) : 0, in_ready = pp->in_ready;
    /* chained, the shortcut conv beside conv1 (a branch) when x's statistics are ready: then
     * neither runs batchnorm's statistics kernel, whose scratch buffer and ticket exist once */
    int branch = pp->chained && b->sub && in_ready && o->branch_begin;
    if (branch) {
        o->branch_begin();
        preact_conv(m, pp, &b->ds_bn, &b->ds_conv, m->t1, b->ds_a, x, NULL, N, in_ready, NULL, 0);
        o->branch_end();
    }
    preact_conv(m, pp, &b->bn1, &b->conv1, b->c1, b->a1, x, NULL, N, in_ready, after_c1, 1);
    if (b->sub) {
        if (branch) o->branch_join();
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

/* dy: gradient w.r.t. the block output (left intact), dx: written with d/dx; or dx == NULL
 * (on a pair table with conv2d_backward_weight_bn_grad, a block without a shortcut conv):
 * d x left unapplied, its gradient at bn1's ReLU in t2, for conv2d_backward_weight_bn_grad */
static void preact_backward(Model *m, Block *b, float *dx, const float *dy, const float *x, int N)
{
    float *t1 = m->t1, *t2 = m->t2;      /* t1: scratch for g; t2: d c1, then d x (main path) */
    if (m->ops->recompute_act && m->ops->conv2d_relu_batchnorm_backward_pair) {
        /* both layers in one call: d c1 need not be stored. Without a shortcut conv: dx = d x
         * (main) + dy, g in t1 and t2; with one: d x (main) into t2 (g1 in dx, free until the
         * shortcut's call writes it), then the shortcut adds it */
        ConvBnLayer l2 = conv_bn_layer(m, &b->conv2, &b->bn2, b->c1), l1 = conv_bn_layer(m, &b->conv1, &b->bn1, x);
        if (!b->sub) {
            m->ops->conv2d_relu_batchnorm_backward_pair(dx, t2, t1, dy, &l2, &l1, dy, N);
        } else {
            m->ops->conv2d_relu_batchnorm_backward_pair(t2, dx, t1, dy, &l2, &l1, NULL, N);
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

static void original_forward(Model *m, Block *b, const float *x, int N, int train)
{
    const Ops *o = m->ops;
    conv_fwd(m, &b->conv1, b->c1, x, N);
    bn_relu_fwd(m, &b->bn1, b->a1, b->c1, N, train);
    conv_fwd(m, &b->conv2, b->c2, b->a1, N);
    bn_fwd(m, &b->bn2, b->y, b->c2, N, train);
    if (b->sub) {
        conv_fwd(m, &b->ds_conv, m->t1, x, N);
        o->add_inplace(b->y, m->t1, out_numel(b, N));
    } else {
        o->add_inplace(b->y, x, out_numel(b, N));
    }
    o->relu_forward(b->y, b->y, out_numel(b, N));
}

/* dy is overwritten (with the gradient before the final ReLU) */
static void original_backward(Model *m, Block *b, float *dx, float *dy, const float *x, int N)
{
    const Ops *o = m->ops;
    float *t1 = m->t1, *t2 = m->t2;
    o->relu_backward(dy, dy, b->y, out_numel(b, N));
    bn_bwd(m, &b->bn2, t1, dy, b->c2, N);
    conv_bwd(m, &b->conv2, t2, t1, b->a1, N);
    relu_bn_bwd(m, &b->bn1, t1, t2, b->a1, b->c1, NULL, N);
    conv_bwd(m, &b->conv1, dx, t1, x, N);
    if (b->sub) {
        conv_bwd(m, &b->ds_conv, t1, dy, x, N);
        o->add_inplace(dx, t1, in_numel(b, N));
    } else {
        o->add_inplace(dx, dy, in_numel(b, N));
    }
}

/* ------------------------------------------------------------------ model */

static const float *block_input(const Model *m, int i)
{
    if (i > 0) return m->blocks[i - 1].y;
    return m->cfg.block == BLOCK_PREACT ? m->stem_c : m->stem_a;
}

void model_forward(Model *m, const float *x, int N, int train)
{
    const ModelConfig *c = &m->cfg;
    if (N > m->max_batch || N <= 0) die("model_forward: batch %d outside 1..%d", N, m->max_batch);
    m->ops->upload(m->input, x, sizeof(float) * N * c->in_c * c->in_h * c->in_w);
    model_forward_input(m, N, train);
}

/* MLP forward: act[l] = relu(linear_l(act[l-1])), logits = last linear */
static void mlp_forward(Model *m, int N)
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

static void mlp_backward(Model *m, int N)
{
    const Ops *o = m->ops;
    o->softmax_xent_backward(m->dlogits, m->probs, m->labels, N, m->cfg.classes);
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

void model_forward_input(Model *m, int N, int train)
{
    const Ops *o = m->ops;
    const ModelConfig *c = &m->cfg;
    if (N > m->max_batch || N <= 0) die("model_forward: batch %d outside 1..%d", N, m->max_batch);
    if (c->mlp) { mlp_forward(m, N); return; }
    int chained = train && c->block == BLOCK_PREACT && o->batchnorm_relu_conv2d_forward_chained;
    if (chained && !o->recompute_act) die("model: the %s table chains batchnorm statistics but stores activations", o->name);
    int stem_chained = chained && !m->stem.has_bias;   /* the stem makes block 0's statistics */
    if (stem_chained) {
        BatchNorm *bns[2];
        int n = block_input_bns(&m->blocks[0], bns);
        bn_relu_conv_chained(m, NULL, &m->stem, m->stem_c, m->input, NULL, N, 0, bns, n);
    } else {
        conv_fwd(m, &m->stem, m->stem_c, m->input, N);
    }
    if (c->block == BLOCK_ORIGINAL) {
        bn_relu_fwd(m, &m->stem_bn, m->stem_a, m->stem_c, N, train);
    }
    for (int i = 0; i < m->n_blocks; i++) {
        Block *next = i + 1 < m->n_blocks ? &m->blocks[i + 1] : NULL;
        PreactPass pp = {train, chained, i > 0 || stem_chained, next};
        if (c->block == BLOCK_PREACT) preact_forward(m, &m->blocks[i], block_input(m, i), N, &pp);
        else original_forward(m, &m->blocks[i], block_input(m, i), N, train);
    }
    const Block *last = &m->blocks[m->n_blocks - 1];
    o->avgpool2d_forward(m->pooled, last->y, N, last->Cout, last->Ho, last->Wo, last->Ho, 1, 0);
    o->linear_forward(m->logits, m->pooled, m->params + m->fc_w, m->params + m->fc_b, N, m->feat,
                      c->classes);
}

double model_loss(Model *m, const int32_t *labels, int N, int *correct)
{
    const Ops *o = m->ops;
    o->upload(m->labels, labels, sizeof(int32_t) * N);
    o->softmax_xent_forward(m->losses, m->probs, m->correct, m->logits, m->labels, N, m->cfg.classes);
    o->download(m->host_losses, m->losses, sizeof(float) * N);
    o->download(m->host_correct, m->correct, sizeof(int32_t) * N);
    double sum = 0;
    int ok = 0;
    for (int n = 0; n < N; n++) { sum += m->host_losses[n]; ok += m->host_correct[n]; }
    if (correct) *correct = ok;
    return sum / N;
}

void model_backward(Model *m, int N)
{
    const Ops *o = m->ops;
    const ModelConfig *c = &m->cfg;
    if (c->mlp) { mlp_backward(m, N); return; }
    const Block *last = &m->blocks[m->n_blocks - 1];
    float *g = m->g0, *gnext = m->g1;
    if (o->classifier_backward && last->Ho == last->Wo) {   /* the head in one call (global pooling) */
        o->classifier_backward(g, m->grads + m->fc_w, m->grads + m->fc_b, m->probs, m->labels, m->pooled,
                               m->params + m->fc_w, N, m->feat, c->classes, last->Ho, last->Wo);
    } else {
        o->softmax_xent_backward(m->dlogits, m->probs, m->labels, N, c->classes);
        o->linear_backward(m->dpooled, m->grads + m->fc_w, m->grads + m->fc_b, m->dlogits, m->pooled,
                           m->params + m->fc_w, N, m->feat, c->classes);
        o->avgpool2d_backward(g, m->dpooled, N, last->Cout, last->Ho, last->Wo, last->Ho, 1, 0);
    }
    /* the stem's weight gradient may read the first block's d x unapplied (ops.h:
     * conv2d_backward_weight_bn_grad): then that d x is never stored */
    Block *first = m->n_blocks > 0 ? &m->blocks[0] : NULL;
    int unapplied = first && c->block == BLOCK_PREACT && o->recompute_act && o->conv2d_relu_batchnorm_backward_pair &&
                    o->conv2d_backward_weight_bn_grad && !first->sub && !m->stem.has_bias;
    for (int i = m->n_blocks - 1; i >= 0; i--) {
        float *dx = i == 0 && unapplied ? NULL : gnext;
        if (c->block == BLOCK_PREACT) preact_backward(m, &m->blocks[i], dx, g, block_input(m, i), N);
        else original_backward(m, &m->blocks[i], dx, g, block_input(m, i), N);
        if (!dx) break;   /* g stays block 0's dy */
        float *t = g; g = gnext; gnext = t;
    }
    if (unapplied) {   /* d x = g + bn1's backward of t2, computed as the stem's weight gradient reads it */
        const Conv *s = &m->stem;
        ConvBnLayer l1 = conv_bn_layer(m, &first->conv1, &first->bn1, block_input(m, 0));
        o->conv2d_backward_weight_bn_grad(m->grads + s->w, m->input, N, s->C, s->H, s->W, s->K, s->R, s->S, s->stride,
                                          s->pad, m->t2, &l1, g);
        return;
    }
    if (c->block == BLOCK_ORIGINAL) {
        relu_bn_bwd(m, &m->stem_bn, m->t1, g, m->stem_a, m->stem_c, NULL, N);
        g = m->t1;
    }
    conv_bwd(m, &m->stem, NULL, g, m->input, N);
}

void model_sgd_step(Model *m, float lr, float momentum, float weight_decay)
{
    m->ops->sgd_step(m->params, m->grads, m->momentum, m->n_params, lr, momentum, weight_decay,
                     m->steps == 0);
    m->steps++;
}

void model_get_params(const Model *m, float *host) { m->ops->download(host, m->params, m->n_params * sizeof(float)); }
void model_set_params(Model *m, const float *host) { m->ops->upload(m->params, host, m->n_params * sizeof(float)); }
void model_get_buffers(const Model *m, float *host) { m->ops->download(host, m->buffers, m->n_buffers * sizeof(float)); }
void model_set_buffers(Model *m, const float *host) { m->ops->upload(m->buffers, host, m->n_buffers * sizeof(float)); }
