/* PyTorch parity: the reference model's weights (a safetensors file written from PyTorch by
 * tests/torch_golden.py), one training-mode forward/backward on a batch of 4 and one SGD
 * step must reproduce PyTorch's logits, loss, every parameter gradient, the BN running
 * statistics and the updated weights, each within relative error 1e-4 (||ours - torch|| /
 * ||torch|| per tensor, fp32). Then a checkpoint round trip through our own writer. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/checkpoint.h"
#include "core/model.h"
#include "cpu/cpu.h"
#include "cpu/fast/fast.h"

#define PARITY_TOL 1e-4

typedef struct { char name[128]; uint32_t n; float *v; } Rec;
typedef struct { Rec *r; int n; char *blob; } Golden;

static Golden golden_load(const char *path)
{
    Golden g = {0};
    size_t len;
    char err[512];
    g.blob = read_file(path, &len, err, sizeof err);
    ck_assert_msg(g.blob != NULL, "%s (regenerate with python3 tests/torch_golden.py write)", err);
    ck_assert(len > 8 && memcmp(g.blob, "CNVGOLD1", 8) == 0);
    size_t off = 8;
    while (off < len) {
        uint32_t nl, n;
        memcpy(&nl, g.blob + off, 4); off += 4;
        g.r = realloc(g.r, sizeof(Rec) * (g.n + 1));
        Rec *r = &g.r[g.n++];
        ck_assert(nl < sizeof r->name);
        memcpy(r->name, g.blob + off, nl); r->name[nl] = 0; off += nl;
        memcpy(&n, g.blob + off, 4); off += 4;
        r->n = n;
        r->v = malloc(sizeof(float) * n);
        memcpy(r->v, g.blob + off, sizeof(float) * n);
        off += sizeof(float) * n;
    }
    return g;
}

static const Rec *find(const Golden *g, const char *name)
{
    for (int i = 0; i < g->n; i++) if (!strcmp(g->r[i].name, name)) return &g->r[i];
    ck_abort_msg("golden file lacks %s", name);
    return NULL;
}

static double rel_err(const float *a, const float *b, size_t n)
{
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) { d += (double)(a[i] - b[i]) * (a[i] - b[i]); s += (double)b[i] * b[i]; }
    return sqrt(d) / (sqrt(s) + 1e-30);
}

static void golden_free(Golden *g)
{
    for (int i = 0; i < g->n; i++) free(g->r[i].v);
    free(g->r);
    free(g->blob);
}

/* _i 0-3: bit 0 block type (preact, original), bit 1 the CPU table (default fast one,
 * readable); 4: preact on the fast table with its Winograd F(2x2,3x3) forced on every 3x3
 * stride-1 forward it takes (what CONVNET_WINOGRAD=1 does; the original block has no fused
 * batchnorm-ReLU-conv slot, so no Winograd to test). The same tolerance: Winograd's float
 * error, 2e-6 of a layer's largest output in tests/test_winograd.c, is far under 1e-4. */
START_TEST(matches_pytorch)
{
    const char *block = _i & 1 ? "original" : "preact";
    const Ops *ops = _i & 2 ? &ops_cpu_ref : &ops_cpu;
    int winograd = _i == 4;
    if (winograd) {
        if (!cpu_isa_supported(CPU_ISA_AVX2)) return;   /* no fast Winograd on this CPU */
        winograd_fast_set_mode(1);
        ck_assert(winograd_fast_chosen(16, 32, 32, 16, 3, 3, 1, 1));
    }
    char lbl[80];
    snprintf(lbl, sizeof lbl, "%s (%s table%s)", block, ops->name, winograd ? ", Winograd on" : "");
    char path[256], err[512];
    snprintf(path, sizeof path, "tests/data/golden_%s.bin", block);
    Golden g = golden_load(path);
    ModelConfig cfg;
    model_config_default(&cfg);
    cfg.block = _i & 1 ? BLOCK_ORIGINAL : BLOCK_PREACT;
    Model *m = model_create(ops, &cfg, 4);
    snprintf(path, sizeof path, "tests/data/golden_%s.safetensors", block);
    ck_assert_msg(checkpoint_load(m, path, err, sizeof err) == 0, "%s", err);

    const Rec *x = find(&g, "x"), *lab = find(&g, "labels");
    int32_t y[4];
    for (int i = 0; i < 4; i++) y[i] = (int32_t)lab->v[i];
    model_forward(m, x->v, 4, 1);
    double loss = model_loss(m, y, 4, NULL);
    double e = rel_err(m->logits, find(&g, "logits")->v, 40);
    ck_assert_msg(e < PARITY_TOL, "%s logits rel err %g", lbl, e);
    ck_assert_msg(fabs(loss - find(&g, "loss")->v[0]) < PARITY_TOL * fabs(loss), "%s loss %g vs %g", lbl, loss, find(&g, "loss")->v[0]);
    model_backward(m, 4);
    float *before = malloc(sizeof(float) * m->n_params), *d1 = malloc(sizeof(float) * m->n_params),
          *d2 = malloc(sizeof(float) * m->n_params);
    memcpy(before, m->params, sizeof(float) * m->n_params);
    model_sgd_step(m, 0.1f, 0.9f, 1e-4f);
    int checked = 0;
    for (int i = 0; i < m->n_entries; i++) {
        const Entry *en = &m->entries[i];
        char name[160];
        if (en->kind == ENTRY_PARAM) {
            snprintf(name, sizeof name, "grad.%s", en->name);
            const Rec *r = find(&g, name);
            ck_assert_uint_eq(r->n, en->numel);
            e = rel_err(m->grads + en->offset, r->v, en->numel);
            ck_assert_msg(e < PARITY_TOL, "%s %s rel err %g", lbl, name, e);
            /* compare the update (after - before), not the weights, so that a wrong weight
             * decay or learning rate cannot hide under the size of the weights */
            snprintf(name, sizeof name, "after.%s", en->name);
            r = find(&g, name);
            for (size_t k = 0; k < en->numel; k++) {
                d1[k] = m->params[en->offset + k] - before[en->offset + k];
                d2[k] = r->v[k] - before[en->offset + k];
            }
            e = rel_err(d1, d2, en->numel);
            ck_assert_msg(e < PARITY_TOL, "%s %s rel err %g", lbl, name, e);
            checked += 2;
        } else if (en->kind == ENTRY_BUFFER) {
            snprintf(name, sizeof name, "buffer.%s", en->name);
            e = rel_err(m->buffers + en->offset, find(&g, name)->v, en->numel);
            ck_assert_msg(e < PARITY_TOL, "%s %s rel err %g", lbl, name, e);
            checked++;
        } else {
            ck_assert_int_eq(m->num_batches_tracked[en->offset], 1);   /* was 0 in the file */
        }
    }
    ck_assert_int_eq(checked, g.n - 4);   /* every golden array was compared */
    free(before); free(d1); free(d2);
    model_free(m);
    golden_free(&g);
    winograd_fast_set_mode(-2);   /* back to CONVNET_WINOGRAD's choice */
}
END_TEST

/* Our writer -> our reader gives back identical tensors; a corrupted or foreign file is a
 * clear error and leaves the model untouched. */
START_TEST(checkpoint_roundtrip_and_errors)
{
    ModelConfig cfg;
    model_config_default(&cfg);
    Model *a = model_create(&ops_cpu, &cfg, 1), *b = model_create(&ops_cpu, &cfg, 1);
    Rng r;
    rng_seed(&r, 3, 3);
    model_init(a, &r);
    for (int i = 0; i < a->n_bn; i++) a->num_batches_tracked[i] = 1000 + i;
    char path[] = "/tmp/convnet_ckpt_XXXXXX", err[512];
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_msg(checkpoint_save(a, path, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(checkpoint_load(b, path, err, sizeof err) == 0, "%s", err);
    ck_assert(memcmp(a->params, b->params, a->n_params * 4) == 0);
    ck_assert(memcmp(a->buffers, b->buffers, a->n_buffers * 4) == 0);
    ck_assert(memcmp(a->num_batches_tracked, b->num_batches_tracked, a->n_bn * 8) == 0);
    /* truncate: clear error */
    ck_assert_int_eq(truncate(path, 1000), 0);
    ck_assert_int_eq(checkpoint_load(b, path, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, path));
    /* a checkpoint of the other block type does not load */
    cfg.block = BLOCK_ORIGINAL;
    Model *c = model_create(&ops_cpu, &cfg, 1);
    ck_assert_int_eq(checkpoint_load(c, "tests/data/golden_preact.safetensors", err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "golden_preact.safetensors"));
    unlink(path);
    close(fd);
    model_free(a); model_free(b); model_free(c);
}
END_TEST

/* A checkpoint written by our writer loads strictly into the project's PyTorch definition
 * (tools/convnet_torch.py) for each of the practical's networks, the shipped Part 1 checkpoint
 * too, and one of the other block type does not (the check is strict). Needs a python3 with
 * torch (python3, else /usr/bin/python3); without one it says so and checks nothing. */
START_TEST(checkpoints_load_into_pytorch)
{
    const char *py = NULL;
    static const char *pys[] = {"python3", "/usr/bin/python3"};
    char cmd[1024], dir[] = "/tmp/convnet_torchload.XXXXXX", path[256], err[512];
    for (int k = 0; k < 2 && !py; k++) {
        snprintf(cmd, sizeof cmd, "%s -c 'import torch, numpy' > /dev/null 2>&1", pys[k]);
        if (system(cmd) == 0) py = pys[k];
    }
    if (!py) { printf("skip: no python3 with torch and numpy: checkpoints not loaded into PyTorch\n"); return; }
    ck_assert_ptr_nonnull(mkdtemp(dir));
    static const char *kind[3] = {"preact", "original", "mlp"};
    for (int k = 0; k < 3; k++) {
        ModelConfig cfg;
        model_config_default(&cfg);
        if (k == 1) cfg.block = BLOCK_ORIGINAL;
        if (k == 2) model_config_mlp(&cfg);
        Model *m = model_create(&ops_cpu, &cfg, 1);
        Rng r;
        rng_seed(&r, 3, 3);
        model_init(m, &r);
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, kind[k]);
        ck_assert_msg(checkpoint_save(m, path, err, sizeof err) == 0, "%s", err);
        model_free(m);
        snprintf(cmd, sizeof cmd, "%s tools/convnet_torch.py check %s %s", py, path, kind[k]);
        ck_assert_msg(system(cmd) == 0, "%s: did not load strictly into PyTorch", cmd);
    }
    snprintf(cmd, sizeof cmd, "%s tools/convnet_torch.py check apps/results/ResNet/best.safetensors preact", py);
    ck_assert_msg(system(cmd) == 0, "%s: did not load strictly into PyTorch", cmd);
    snprintf(cmd, sizeof cmd, "%s tools/convnet_torch.py check %s/original.safetensors preact > /dev/null 2>&1", py, dir);
    ck_assert_msg(system(cmd) != 0, "an original-block checkpoint loaded into the pre-activation network");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

Suite *suite_parity(void)
{
    Suite *s = suite_create("pytorch parity + checkpoints");
    TCase *t = tcase_create("parity");
    tcase_set_timeout(t, 60);
    tcase_add_loop_test(t, matches_pytorch, 0, 5);   /* 4: the fast table with Winograd */
    tcase_add_test(t, checkpoint_roundtrip_and_errors);
    tcase_add_test(t, checkpoints_load_into_pytorch);
    suite_add_tcase(s, t);
    return s;
}
