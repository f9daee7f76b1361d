/* The practical's ResNet (tutorial 5 structure), built on the op table.
 *
 * preact:   input_net = conv3x3(3->c0)
 *           block     = x + conv(relu(bn(conv(relu(bn(x))))))           [PreActResNetBlock]
 *           subsample: first block of stages > 0, stride-2 first conv; shortcut
 *                      conv1x1/s2(relu(bn(x)))
 * original: input_net = relu(bn(conv3x3(3->c0)))
 *           block     = relu(bn(conv(relu(bn(conv(x))))) + x)             [ResNetBlock]
 *           subsample shortcut: conv1x1/s2 with bias
 * output:   global average pool -> linear(c_last -> classes)
 * mlp:      (Part 3's comparison, the previous practical's network) the image flattened to
 *           in_c*in_h*in_w values -> [linear -> relu] per hidden layer -> linear(-> classes);
 *           state_dict names of nn.Sequential(Flatten, Linear, ReLU, ..., Linear): model.1.*,
 *           model.3.*, ...
 *
 * All trainable parameters live in one flat array (params), in PyTorch state_dict order,
 * with grads and momentum buffers of the same layout; BN running statistics in a second
 * flat array (buffers); num_batches_tracked per BN layer on the host. `entries` lists every
 * state_dict tensor (name "model.<...>", shape, where it lives) for checkpoints.
 */
#ifndef CONVNET_MODEL_H
#define CONVNET_MODEL_H
#include <stdint.h>
#include "core/ops.h"
#include "core/rng.h"

#define MAX_STAGES 8
/* batchnorm's settings, PyTorch's defaults: running = (1 - momentum) running + momentum batch */
#define BN_MOMENTUM 0.1f
#define BN_EPS 1e-5f

typedef enum { BLOCK_PREACT = 0, BLOCK_ORIGINAL = 1 } BlockType;

typedef struct ModelConfig {
    BlockType block;
    int n_stages;
    int blocks[MAX_STAGES];     /* blocks per stage, e.g. 2,2,3 */
    int channels[MAX_STAGES];   /* channels per stage, e.g. 16,24,32 */
    int classes;                /* 10 */
    int in_c, in_h, in_w;       /* 3, 32, 32 */
    int mlp;                    /* 1: the MLP below instead of the ResNet */
    int n_hidden, hidden[4];    /* MLP hidden widths, e.g. 512,256 */
} ModelConfig;

void model_config_default(ModelConfig *cfg);   /* the practical's: preact [2,2,3] x [16,24,32] */
void model_config_mlp(ModelConfig *cfg);       /* 3072-512-256-10 with ReLU */
/* 1 if both describe the same network (the fields in use, not unused stage slots) */
int model_config_same(const ModelConfig *a, const ModelConfig *b);

typedef struct Conv { int C, K, R, S, stride, pad, H, W, P, Q; size_t w, b; int has_bias; } Conv;
typedef struct BatchNorm { int C, HW; size_t gamma, beta, rmean, rvar; int index; float *mean, *invstd; } BatchNorm;

typedef struct Block {
    int sub, Cin, Cout, H, W, Ho, Wo;
    BatchNorm bn1, bn2, ds_bn;
    Conv conv1, conv2, ds_conv;
    /* stored activations [max_batch, ...]:
     * preact:   a1 = relu(bn1(x)), c1 = conv1(a1), a2 = relu(bn2(c1)), y, ds_a = relu(ds_bn(x))
     * original: c1 = conv1(x), a1 = relu(bn1(c1)), c2 = conv2(a1), y = relu(bn2(c2) + shortcut)
     * (preact's a1, a2, ds_a are NULL on a table whose fused slots recompute them: never
     * stored, core/ops_fused.h) */
    float *a1, *c1, *a2, *c2, *y, *ds_a;
} Block;

enum { ENTRY_PARAM = 0, ENTRY_BUFFER = 1, ENTRY_COUNT = 2 };
typedef struct Entry { char name[96]; int ndim, shape[4]; int kind; size_t offset, numel; } Entry;

typedef struct Model {
    const Ops *ops;
    ModelConfig cfg;
    int max_batch;
    float *params, *grads, *momentum, *buffers;   /* device memory */
    size_t n_params, n_buffers;
    int64_t *num_batches_tracked;                 /* host, one per BN layer */
    int n_bn;
    Entry *entries;
    int n_entries;
    long steps;                                    /* optimizer steps taken (0: buffers fresh) */

    Conv stem;
    BatchNorm stem_bn;                             /* original only */
    float *stem_c, *stem_a;                        /* stem conv output; original: relu(bn(.)) */
    Block *blocks;
    int n_blocks;
    size_t fc_w, fc_b;
    int feat;                                      /* channels entering the linear layer */
    float *input, *pooled, *logits, *probs, *losses, *dlogits, *dpooled;
    int32_t *labels, *correct;
    float *g0, *g1, *t1, *t2, *ws;                  /* gradient and scratch buffers */
    /* MLP: layer l maps width[l] -> width[l+1]; act[l] = relu output of hidden layer l */
    int n_layers, width[6];
    /* data-parallel training (core/dist.h): this process's rows over the whole batch's; the
     * loss is the whole batch's mean, so its gradient is scaled by this (1: one process) */
    double batch_share;
    size_t lw[5], lb[5];
    float *act[4];
    float *host_losses;
    int32_t *host_correct;
} Model;

Model *model_create(const Ops *ops, const ModelConfig *cfg, int max_batch);
void model_free(Model *m);
void model_init(Model *m, Rng *rng);                   /* PyTorch's init scheme (see model.c) */
size_t model_num_trainable(const Model *m);

/* x: host images [N, in_c, in_h, in_w], N <= max_batch. train selects batch statistics
 * (and updates running stats) vs running statistics. Logits land in m->logits (device). */
void model_forward(Model *m, const float *x, int N, int train);
/* The same on images already in m->input (device memory), e.g. from the device data path. */
void model_forward_input(Model *m, int N, int train);
/* Loss and accuracy of the last forward. Returns mean cross-entropy; *correct gets the count. */
double model_loss(Model *m, const int32_t *labels, int N, int *correct);
/* Gradients of the mean loss of the last forward/model_loss w.r.t. every parameter. */
void model_backward(Model *m, int N);
void model_sgd_step(Model *m, float lr, float momentum, float weight_decay);

/* Host copies of the device state (for checkpoints and tests). */
void model_get_params(const Model *m, float *host);     /* n_params floats */
void model_set_params(Model *m, const float *host);
void model_get_buffers(const Model *m, float *host);    /* n_buffers floats */
void model_set_buffers(Model *m, const float *host);

/* Parse "2,2,3" style lists; returns count or -1. */
int parse_int_list(const char *s, int *out, int max);

#endif
