/* GEMM benchmark: our packed AVX2 GEMM (cpu/gemm_fast.c) and the readable loops (cpu/gemm.c,
 * CONVNET_GEMM=simple path) against OpenBLAS sgemm, same shapes, same threads, same run.
 * Shapes: the GEMMs the practical's ResNet runs per image at batch 128, with the transposes
 * cpu/conv2d.c uses (forward K x PQ x CRS NN, backward-input CRS x PQ x K TN, backward-weight
 * K x CRS x PQ NN on im2col_t's col^T) and a square sweep.
 * Prints a Markdown table; GFLOP/s = 2 M N K / median time.
 *   bench/gemm [--threads 2] [--reps 15] */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bench/bench.h"
#include "core/cli.h"
#include "core/util.h"
#include "cpu/cpu.h"
#include <cblas.h>   /* after our headers: it pulls in complex.h, which defines I */

typedef struct { int ta, tb, M, N, K, which; float *A, *B, *C; } G;

static void run(void *p)
{
    G *g = p;
    int lda = g->ta ? g->M : g->K, ldb = g->tb ? g->K : g->N;
    if (g->which == 0) gemm_fast(g->ta, g->tb, g->M, g->N, g->K, g->A, lda, g->B, ldb, 0, g->C, g->N);
    else if (g->which == 1) cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans,
                                        g->M, g->N, g->K, 1.0f, g->A, lda, g->B, ldb, 0.0f, g->C, g->N);
    else {
        setenv("CONVNET_GEMM", "simple", 1);   /* read once by gemm(); this process only */
        gemm(g->ta, g->tb, g->M, g->N, g->K, g->A, lda, g->B, ldb, 0, g->C, g->N);
    }
}

int main(int argc, char **argv)
{
    int threads = 2, reps = 15;
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "--threads", 9)) threads = (int)cli_long("--threads", cli_value(argc, argv, &i), 1, 256);
        else if (!strncmp(argv[i], "--reps", 6)) reps = (int)cli_long("--reps", cli_value(argc, argv, &i), 1, 10000);
        else die_code(2, "unknown flag '%s'", argv[i]);
    }
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    /* {name, transA, transB, M, N, K, batch}: conv GEMMs are run once per image of a 128-image batch
     * (our conv does exactly that), so each is timed as 128 back-to-back calls. */
    struct { const char *name; int ta, tb, M, N, K, batch; } shapes[] = {
        {"conv 16->16 3x3 32x32 fwd", 0, 0, 16, 1024, 144, 128},
        {"conv 16->16 3x3 32x32 bwd-input", 1, 0, 144, 1024, 16, 128},
        {"conv 16->16 3x3 32x32 bwd-weight", 0, 0, 16, 144, 1024, 128},
        {"conv 24->24 3x3 16x16 fwd", 0, 0, 24, 256, 216, 128},
        {"conv 24->24 3x3 16x16 bwd-input", 1, 0, 216, 256, 24, 128},
        {"conv 24->24 3x3 16x16 bwd-weight", 0, 0, 24, 216, 256, 128},
        {"conv 32->32 3x3 8x8 fwd", 0, 0, 32, 64, 288, 128},
        {"conv 32->32 3x3 8x8 bwd-weight", 0, 0, 32, 288, 64, 128},
        {"square 256", 0, 0, 256, 256, 256, 1},
        {"square 512", 0, 0, 512, 512, 512, 1},
        {"square 1024", 0, 0, 1024, 1024, 1024, 1},
    };
    printf("| shape | M x N x K (x calls) | ours GFLOP/s | OpenBLAS GFLOP/s | ours / OpenBLAS | readable loops GFLOP/s |\n");
    printf("|---|---|---|---|---|---|\n");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int M = shapes[s].M, N = shapes[s].N, K = shapes[s].K, nb = shapes[s].batch;
        G g = {shapes[s].ta, shapes[s].tb, M, N, K, 0, xmalloc_floats((size_t)M * K), xmalloc_floats((size_t)K * N),
               xmalloc_floats((size_t)M * N)};
        for (size_t i = 0; i < (size_t)M * K; i++) g.A[i] = (float)(i % 7) * 0.1f - 0.3f;
        for (size_t i = 0; i < (size_t)K * N; i++) g.B[i] = (float)(i % 5) * 0.1f - 0.2f;
        double gf[3];
        for (int w = 0; w < 3; w++) {
            g.which = w;
            /* batched shapes: time nb calls (each parallel inside), like a batch of images */
            double t = 0;
            int r = w == 2 && M * (double)N * K * nb > 5e9 ? 3 : reps;
            double *ts = xmalloc(sizeof(double) * r);
            for (int i = -1; i < r; i++) {
                double t0 = now_seconds();
                for (int b = 0; b < nb; b++) run(&g);
                if (i >= 0) ts[i] = now_seconds() - t0;
            }
            t = median(ts, r);
            free(ts);
            gf[w] = 2.0 * M * N * K * nb / t * 1e-9;
        }
        printf("| %s | %d x %d x %d (x%d) | %.1f | %.1f | %.2f | %.1f |\n", shapes[s].name, M, N, K, nb, gf[0], gf[1],
               gf[0] / gf[1], gf[2]);
        free(g.A); free(g.B); free(g.C);
    }
    printf("\n%d threads; micro-kernel: %s\n", threads, gemm_fast_isa());
    return 0;
}
