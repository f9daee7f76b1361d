/* Convolution benchmark on the practical's layer shapes at batch 128: our im2col + GEMM
 * conv (forward, backward-input, backward-weight) against a direct nested-loop convolution
 * (the textbook seven loops, parallel over images; the baseline), same run, same threads.
 * Also batchnorm and ReLU in GB/s. Prints a Markdown table.
 *   bench/conv [--threads 2] [--reps 5] [--batch-size 128] */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bench/bench.h"
#include "core/cli.h"
#include "core/ops.h"
#include "core/util.h"
#include "cpu/cpu.h"

typedef struct { int N, C, H, W, K, R, stride, pad, P, Q; float *x, *w, *y, *dy, *dx, *dw, *ws, *g, *b, *m, *v; int op; } Ctx;

/* Baseline: direct convolution, out[n,k,p,q] = sum_{c,r,s} w[k,c,r,s] x[n,c,p*st-pad+r,q*st-pad+s] */
static void conv_direct(Ctx *c)
{
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < c->N; n++)
        for (int k = 0; k < c->K; k++)
            for (int p = 0; p < c->P; p++)
                for (int q = 0; q < c->Q; q++) {
                    float acc = 0;
                    for (int ch = 0; ch < c->C; ch++)
                        for (int r = 0; r < c->R; r++) {
                            int h = p * c->stride - c->pad + r;
                            if (h < 0 || h >= c->H) continue;
                            for (int s = 0; s < c->R; s++) {
                                int w = q * c->stride - c->pad + s;
                                if (w < 0 || w >= c->W) continue;
                                acc += c->w[((k * c->C + ch) * c->R + r) * c->R + s] * c->x[(((size_t)n * c->C + ch) * c->H + h) * c->W + w];
                            }
                        }
                    c->y[(((size_t)n * c->K + k) * c->P + p) * c->Q + q] = acc;
                }
}

static void run(void *p)
{
    Ctx *c = p;
    switch (c->op) {
    case 0: conv2d_forward(c->y, c->x, c->w, c->N, c->C, c->H, c->W, c->K, c->R, c->R, c->stride, c->pad, c->ws); break;
    case 1: conv2d_backward_input(c->dx, c->dy, c->w, c->N, c->C, c->H, c->W, c->K, c->R, c->R, c->stride, c->pad, c->ws); break;
    case 2: conv2d_backward_weight(c->dw, c->dy, c->x, c->N, c->C, c->H, c->W, c->K, c->R, c->R, c->stride, c->pad, c->ws); break;
    case 3: conv_direct(c); break;
    case 4: batchnorm_forward_train(c->dx, c->m, c->v, c->m + 64, c->v + 64, c->x, c->g, c->b, c->N, c->C, c->H * c->W, 0.1f, 1e-5f); break;
    case 5: relu_forward(c->dx, c->x, (size_t)c->N * c->C * c->H * c->W); break;
    }
}

int main(int argc, char **argv)
{
    int threads = 2, reps = 5, N = 128;
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "--threads", 9)) threads = (int)cli_long("--threads", cli_value(argc, argv, &i), 1, 256);
        else if (!strncmp(argv[i], "--reps", 6)) reps = (int)cli_long("--reps", cli_value(argc, argv, &i), 1, 10000);
        else if (!strncmp(argv[i], "--batch-size", 12)) N = (int)cli_long("--batch-size", cli_value(argc, argv, &i), 1, 4096);
        else die_code(2, "unknown flag '%s'", argv[i]);
    }
    omp_set_num_threads(threads);
    /* {C, H, K, R, stride, pad}: every distinct conv of PreAct ResNet [2,2,3] x [16,24,32] */
    int shapes[][6] = {{3, 32, 16, 3, 1, 1}, {16, 32, 16, 3, 1, 1}, {16, 32, 24, 3, 2, 1}, {16, 32, 24, 1, 2, 0},
                       {24, 16, 24, 3, 1, 1}, {24, 16, 32, 3, 2, 1}, {24, 16, 32, 1, 2, 0}, {32, 8, 32, 3, 1, 1}};
    printf("| conv (batch %d) | fwd ms | fwd GFLOP/s | direct ms | fwd speedup vs direct | bwd-input ms | bwd-weight ms | BN fwd GB/s | ReLU GB/s |\n", N);
    printf("|---|---|---|---|---|---|---|---|---|\n");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        Ctx c;
        memset(&c, 0, sizeof c);
        c.N = N; c.C = shapes[s][0]; c.H = c.W = shapes[s][1]; c.K = shapes[s][2];
        c.R = shapes[s][3]; c.stride = shapes[s][4]; c.pad = shapes[s][5];
        c.P = conv_out_size(c.H, c.R, c.stride, c.pad);
        c.Q = c.P;
        size_t nx = (size_t)N * c.C * c.H * c.W, nw = (size_t)c.K * c.C * c.R * c.R, ny = (size_t)N * c.K * c.P * c.Q;
        c.x = xmalloc_floats(nx); c.w = xmalloc_floats(nw); c.y = xmalloc_floats(ny); c.dy = xmalloc_floats(ny);
        c.dx = xmalloc_floats(nx); c.dw = xmalloc_floats(nw);
        c.ws = xmalloc_floats(conv2d_workspace_floats(N, c.C, c.H, c.W, c.K, c.R, c.R, c.stride, c.pad));
        c.g = xmalloc_floats(64); c.b = xmalloc_floats(64); c.m = xmalloc_floats(128); c.v = xmalloc_floats(128);
        for (size_t i = 0; i < nx; i++) c.x[i] = (float)((i * 7919) % 1000) / 500.0f - 1.0f;
        for (size_t i = 0; i < nw; i++) c.w[i] = (float)((i * 104729) % 1000) / 5000.0f - 0.1f;
        for (size_t i = 0; i < ny; i++) c.dy[i] = (float)((i * 31) % 1000) / 500.0f - 1.0f;
        for (int i = 0; i < 64; i++) { c.g[i] = 1; c.b[i] = 0; }
        for (int i = 0; i < 128; i++) { c.m[i] = 0; c.v[i] = 1; }
        double t[6];
        for (c.op = 0; c.op < 6; c.op++) t[c.op] = time_median(run, &c, 1, c.op == 3 ? (reps < 3 ? reps : 3) : reps);
        double flop = 2.0 * N * c.K * c.P * c.Q * c.C * c.R * c.R, bytes = 2.0 * nx * 4;
        printf("| %dx%d %d->%d %dx%d/s%d | %.2f | %.1f | %.2f | %.1fx | %.2f | %.2f | %.1f | %.1f |\n", c.H, c.W, c.C, c.K,
               c.R, c.R, c.stride, t[0] * 1e3, flop / t[0] * 1e-9, t[3] * 1e3, t[3] / t[0], t[1] * 1e3, t[2] * 1e3,
               (bytes + nx * 4) / t[4] * 1e-9, bytes / t[5] * 1e-9);
        free(c.x); free(c.w); free(c.y); free(c.dy); free(c.dx); free(c.dw); free(c.ws);
        free(c.g); free(c.b); free(c.m); free(c.v);
    }
    printf("\n%d threads\n", threads);
    return 0;
}
