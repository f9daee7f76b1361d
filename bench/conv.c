/* Per-layer benchmark on the practical's layer shapes at batch 128: every distinct conv of
 * PreAct ResNet [2,2,3] x [16,24,32] (forward, backward-input, backward-weight) and the
 * batchnorm+ReLU that feeds it (forward train, fused backward), for the default CPU table
 * (fast kernels) and the readable one (ops_cpu_ref), same run, same threads. With
 * --torch FILE (written by bench/torch_layers.py in the same `make bench` run) it adds
 * PyTorch's time for the same operations and our speedup over it. Prints a Markdown table.
 *   bench/conv [--threads 2] [--reps 5] [--batch-size 128] [--torch FILE] */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bench/bench.h"
#include "core/cli.h"
#include "core/ops.h"
#include "core/ops_fused.h"
#include "core/util.h"
#include "cpu/fast/fast.h"

typedef struct {
    const Ops *o;
    const FusedOps *f;   /* batchnorm + ReLU: the table's fused slots, or their definition */
    int N, C, H, W, K, R, stride, pad, P, Q, op;
    float *x, *w, *y, *dy, *dx, *dw, *ws, *g, *b, *m, *v, *bx, *bo, *bg;
} Ctx;

enum { FWD, BWD_IN, BWD_W, BN_FWD, BN_BWD, NOPS };

static void run(void *p)
{
    Ctx *c = p;
    const Ops *o = c->o;
    size_t nin = (size_t)c->N * c->C * c->H * c->W;
    switch (c->op) {
    case FWD: o->conv2d_forward(c->y, c->x, c->w, c->N, c->C, c->H, c->W, c->K, c->R, c->R, c->stride, c->pad, c->ws); break;
    case BWD_IN: o->conv2d_backward_input(c->dx, c->dy, c->w, c->N, c->C, c->H, c->W, c->K, c->R, c->R, c->stride, c->pad, c->ws); break;
    case BWD_W: o->conv2d_backward_weight(c->dw, c->dy, c->x, c->N, c->C, c->H, c->W, c->K, c->R, c->R, c->stride, c->pad, c->ws); break;
    /* the batchnorm + ReLU whose output is this conv's input: shape [N, C, H, W] */
    case BN_FWD: c->f->batchnorm_relu_forward_train(c->bo, c->m, c->v, c->m + 64, c->v + 64, c->bx, c->g, c->b, c->N, c->C, c->H * c->W, 0.1f, 1e-5f); break;
    case BN_BWD: c->f->relu_batchnorm_backward(c->bg, c->dw + 0, c->dw + 64, c->dx, c->bo, c->bx, NULL, c->g, c->m, c->v, c->N, c->C, c->H * c->W); break;
    }
    (void)nin;
}

/* PyTorch's figures: lines "<C> <H> <K> <R> <stride> fwd_ms bwd_ms bnrelu_fwd_ms bnrelu_bwd_ms"
 * (bwd_ms: input and weight gradients together, as autograd computes them). */
typedef struct { int C, H, K, R, st; double fwd, bwd, bnf, bnb; } TorchRow;

static int read_torch(const char *path, TorchRow *rows, int max)
{
    FILE *f = fopen(path, "r");
    if (!f) die_code(2, "cannot open --torch file '%s'", path);
    int n = 0;
    char line[512];
    while (n < max && fgets(line, sizeof line, f)) {
        TorchRow r;
        if (sscanf(line, "%d %d %d %d %d %lf %lf %lf %lf", &r.C, &r.H, &r.K, &r.R, &r.st, &r.fwd, &r.bwd, &r.bnf, &r.bnb) == 9)
            rows[n++] = r;
    }
    fclose(f);
    return n;
}

int main(int argc, char **argv)
{
    int threads = 2, reps = 5, N = 128;
    const char *torch_file = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "--threads", 9)) threads = (int)cli_long("--threads", cli_value(argc, argv, &i), 1, 256);
        else if (!strncmp(argv[i], "--reps", 6)) reps = (int)cli_long("--reps", cli_value(argc, argv, &i), 1, 10000);
        else if (!strncmp(argv[i], "--batch-size", 12)) N = (int)cli_long("--batch-size", cli_value(argc, argv, &i), 1, 4096);
        else if (!strncmp(argv[i], "--torch", 7)) torch_file = cli_value(argc, argv, &i);
        else die_code(2, "unknown flag '%s'", argv[i]);
    }
    omp_set_num_threads(threads);
    TorchRow trows[32];
    int ntorch = torch_file ? read_torch(torch_file, trows, 32) : 0;
    /* {C, H, K, R, stride, pad} */
    int shapes[][6] = {{3, 32, 16, 3, 1, 1}, {16, 32, 16, 3, 1, 1}, {16, 32, 24, 3, 2, 1}, {16, 32, 24, 1, 2, 0},
                       {24, 16, 24, 3, 1, 1}, {24, 16, 32, 3, 2, 1}, {24, 16, 32, 1, 2, 0}, {32, 8, 32, 3, 1, 1}};
    printf("| conv (batch %d) | kernel | fwd ms | fwd GFLOP/s | bwd-in ms | bwd-w ms | BN+ReLU fwd ms | BN+ReLU bwd ms | readable fwd+bwd ms | speedup vs readable |", N);
    if (ntorch) printf(" torch conv fwd ms | torch conv bwd ms | torch BN+ReLU fwd+bwd ms | speedup vs torch |");
    printf("\n|---|---|---|---|---|---|---|---|---|---|%s\n", ntorch ? "---|---|---|---|" : "");
    double tot[2] = {0, 0}, tot_torch = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        Ctx c;
        memset(&c, 0, sizeof c);
        c.N = N; c.C = shapes[s][0]; c.H = c.W = shapes[s][1]; c.K = shapes[s][2];
        c.R = shapes[s][3]; c.stride = shapes[s][4]; c.pad = shapes[s][5];
        c.P = conv_out_size(c.H, c.R, c.stride, c.pad);
        c.Q = c.P;
        size_t nx = (size_t)N * c.C * c.H * c.W, nw = (size_t)c.K * c.C * c.R * c.R, ny = (size_t)N * c.K * c.P * c.Q;
        c.x = xmalloc_floats(nx); c.w = xmalloc_floats(nw); c.y = xmalloc_floats(ny); c.dy = xmalloc_floats(ny);
        c.dx = xmalloc_floats(nx); c.dw = xmalloc_floats(nw > 128 ? nw : 128);
        c.bx = xmalloc_floats(nx); c.bo = xmalloc_floats(nx); c.bg = xmalloc_floats(nx);
        c.ws = xmalloc_floats(conv2d_workspace_floats(N, c.C, c.H, c.W, c.K, c.R, c.R, c.stride, c.pad));
        c.g = xmalloc_floats(64); c.b = xmalloc_floats(64); c.m = xmalloc_floats(128); c.v = xmalloc_floats(128);
        for (size_t i = 0; i < nx; i++) c.x[i] = (float)((i * 7919) % 1000) / 500.0f - 1.0f;
        for (size_t i = 0; i < nx; i++) c.bx[i] = (float)((i * 7907) % 1000) / 500.0f - 1.0f;
        for (size_t i = 0; i < nx; i++) c.dx[i] = (float)((i * 37) % 1000) / 500.0f - 1.0f;
        for (size_t i = 0; i < nw; i++) c.w[i] = (float)((i * 104729) % 1000) / 5000.0f - 0.1f;
        for (size_t i = 0; i < ny; i++) c.dy[i] = (float)((i * 31) % 1000) / 500.0f - 1.0f;
        for (int i = 0; i < 64; i++) { c.g[i] = 1; c.b[i] = 0; }
        for (int i = 0; i < 128; i++) { c.m[i] = 0; c.v[i] = 1; }
        double t[2][NOPS];
        const Ops *tabs[2] = {&ops_cpu, &ops_cpu_ref};
        const FusedOps *fus[2] = {ops_cpu.fused, &fused_cpu_ref};   /* the readable table: ops in turn */
        for (int k = 0; k < 2; k++) {
            c.o = tabs[k];
            c.f = fus[k];
            for (c.op = 0; c.op < NOPS; c.op++) t[k][c.op] = time_median(run, &c, 1, reps);
        }
        double sum[2];
        for (int k = 0; k < 2; k++) {
            sum[k] = 0;
            for (int op = 0; op < NOPS; op++) sum[k] += t[k][op];
            tot[k] += sum[k];
        }
        double flop = 2.0 * N * c.K * c.P * c.Q * c.C * c.R * c.R;
        printf("| %dx%d %d->%d %dx%d/s%d | %s | %.2f | %.1f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2fx |", c.H, c.W, c.C,
               c.K, c.R, c.R, c.stride, conv2d_direct_kernel_name(c.Q, c.K, c.R * c.R), t[0][FWD] * 1e3, flop / t[0][FWD] * 1e-9,
               t[0][BWD_IN] * 1e3, t[0][BWD_W] * 1e3, t[0][BN_FWD] * 1e3, t[0][BN_BWD] * 1e3, sum[1] * 1e3,
               sum[1] / sum[0]);
        if (ntorch) {
            const TorchRow *r = NULL;
            for (int i = 0; i < ntorch; i++)
                if (trows[i].C == c.C && trows[i].H == c.H && trows[i].K == c.K && trows[i].R == c.R && trows[i].st == c.stride) r = &trows[i];
            if (r) {
                double ts = (r->fwd + r->bwd + r->bnf + r->bnb) * 1e-3;
                tot_torch += ts;
                printf(" %.2f | %.2f | %.2f | %.2fx |", r->fwd, r->bwd, r->bnf + r->bnb, ts / sum[0]);
            } else {
                printf(" - | - | - | - |");
            }
        }
        printf("\n");
        free(c.x); free(c.w); free(c.y); free(c.dy); free(c.dx); free(c.dw); free(c.ws);
        free(c.bx); free(c.bo); free(c.bg);
        free(c.g); free(c.b); free(c.m); free(c.v);
    }
    printf("\n%d threads; ISA %s. All layers once (conv fwd + bwd-in + bwd-w + BN+ReLU fwd + bwd): "
           "fast %.1f ms, readable %.1f ms (%.2fx)", threads, cpu_isa_name(cpu_isa_best()), tot[0] * 1e3,
           tot[1] * 1e3, tot[1] / tot[0]);
    if (ntorch) printf(", torch %.1f ms (ours %.2fx faster)", tot_torch * 1e3, tot_torch / tot[0]);
    printf("\n");
    return 0;
}
