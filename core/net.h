/* The network's walks over the op table, one file each (model.c picks one per model):
 *   core/net_plain.c      the plain walk: every layer as the practical's basic operators, in
 *                         order; any table runs it, the reference tables always do
 *   core/net_scheduled.c  the scheduled walk: the same network through the fast tables' fused
 *                         slots (core/ops_fused.h); each function names the plain one it replaces
 *   core/net_mlp.c        Part 3's MLP (basic operators only, on every table)
 * All of them read and write the buffers model_create allocated (core/model.h). */
#ifndef CONVNET_NET_H
#define CONVNET_NET_H
#include "core/model.h"

void plain_forward(Model *m, int N, int train);   /* m->input -> m->logits */
void plain_backward(Model *m, int N);             /* m->probs, m->labels -> m->grads */
void scheduled_forward(Model *m, int N, int train);
void scheduled_backward(Model *m, int N);
void mlp_forward(Model *m, int N);
void mlp_backward(Model *m, int N);

/* the plain walk's layer calls, shared with the scheduled walk where it runs a layer unfused */
void net_loss_backward(Model *m, int N);   /* m->probs, m->labels -> m->dlogits */
void net_conv(Model *m, const Conv *c, float *out, const float *in, int N);
void net_conv_backward(Model *m, const Conv *c, float *din, const float *dout, const float *in, int N);
void net_batchnorm(Model *m, BatchNorm *b, float *out, const float *in, int N, int train);
void net_batchnorm_backward(Model *m, const BatchNorm *b, float *din, const float *dout, const float *in, int N);
void net_head_forward(Model *m, int N);             /* last block's output -> logits */
void net_head_backward(Model *m, float *g, int N);  /* probs, labels -> head's grads, g = d(last output) */
/* the input of block i: the previous block's output, or the stem's */
const float *net_block_input(const Model *m, int i);
/* values in a block's input and output for a batch of N */
static inline size_t in_numel(const Block *b, int N) { return (size_t)N * b->Cin * b->H * b->W; }
static inline size_t out_numel(const Block *b, int N) { return (size_t)N * b->Cout * b->Ho * b->Wo; }

#endif
