/* The model: configuration, parameters in PyTorch's state_dict order (names and shapes for
 * checkpoints), buffers, initialization, and the choice of walk (core/net.h) that runs it.
 * See model.h for the structure and memory layout. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/model.h"
#include "core/net.h"
#include "core/ops_fused.h"
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
    m->batch_share = 1;
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

    /* ---- allocation ---- (a table whose fused slots recompute relu(bn(.)) where it is read
     * stores no pre-activation a1, a2, ds_a: core/ops_fused.h) */
    int recompute = ops->fused && ops->fused->recompute_act;
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
        if (pre) {   /* a1, ds_a, a2: not stored where the table recomputes them (ops_fused.h) */
            if (!recompute) b->a1 = ops->alloc(N * in_sz * fl);
            if (b->sub && !recompute) b->ds_a = ops->alloc(N * in_sz * fl);
        } else {
            b->a1 = ops->alloc(N * out_sz * fl);
            b->c2 = ops->alloc(N * out_sz * fl);
        }
        b->c1 = ops->alloc(N * out_sz * fl);
        if (pre && !recompute) b->a2 = ops->alloc(N * out_sz * fl);
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

/* ------------------------------------------------------------------ model */

void model_forward(Model *m, const float *x, int N, int train)
{
    const ModelConfig *c = &m->cfg;
    if (N > m->max_batch || N <= 0) die("model_forward: batch %d outside 1..%d", N, m->max_batch);
    m->ops->upload(m->input, x, sizeof(float) * N * c->in_c * c->in_h * c->in_w);
    model_forward_input(m, N, train);
}

/* the walk a model runs: the MLP's, the scheduled one on a table with fused slots, else the
 * plain one (core/net.h) */
void model_forward_input(Model *m, int N, int train)
{
    if (N > m->max_batch || N <= 0) die("model_forward: batch %d outside 1..%d", N, m->max_batch);
    if (m->cfg.mlp) mlp_forward(m, N);
    else if (m->ops->fused) scheduled_forward(m, N, train);
    else plain_forward(m, N, train);
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
    if (m->cfg.mlp) mlp_backward(m, N);
    else if (m->ops->fused) scheduled_backward(m, N);
    else plain_backward(m, N);
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
