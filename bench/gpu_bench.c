/* GPU GEMM benchmark (needs a GPU): our naive and tiled SGEMM kernels against cuBLAS
 * (loaded with dlopen when present; bench only), square sizes 256..4096, timed with CUDA
 * events (median of reps after warm-up), checked against each other before timing.
 *   bench/gpu_bench [--reps 10] [--max 4096] */
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bench/bench.h"
#include "core/cli.h"
#include "core/util.h"

void gpu_gemm_tiled(int, int, int, int, int, const float *, int, const float *, int, float, float *, int);
void gpu_gemm_naive(int, int, int, int, int, const float *, int, const float *, int, float, float *, int);

#define CK(call) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) die("CUDA error %s: %s", cudaGetErrorString(e_), #call); } while (0)

typedef int (*cublas_create_fn)(void **);
typedef int (*cublas_sgemm_fn)(void *, int, int, int, int, int, const float *, const float *, int,
                               const float *, int, const float *, float *, int);

int main(int argc, char **argv)
{
    int reps = 10, maxn = 4096;
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "--reps", 6)) reps = (int)cli_long("--reps", cli_value(argc, argv, &i), 1, 1000);
        else if (!strncmp(argv[i], "--max", 5)) maxn = (int)cli_long("--max", cli_value(argc, argv, &i), 64, 16384);
        else die_code(2, "unknown flag '%s'", argv[i]);
    }
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) die_code(2, "no usable CUDA GPU");
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    void *lib = dlopen("libcublas.so", RTLD_NOW);
    if (!lib) lib = dlopen("libcublas.so.13", RTLD_NOW);
    if (!lib) lib = dlopen("libcublas.so.12", RTLD_NOW);
    void *handle = NULL;
    cublas_sgemm_fn sgemm = NULL;
    if (lib) {
        cublas_create_fn create = (cublas_create_fn)dlsym(lib, "cublasCreate_v2");
        sgemm = (cublas_sgemm_fn)dlsym(lib, "cublasSgemm_v2");
        if (!create || !sgemm || create(&handle) != 0) sgemm = NULL;
    }
    printf("device: %s (sm_%d%d); cuBLAS: %s\n\n", prop.name, prop.major, prop.minor,
           sgemm ? "loaded" : "not available (no cuBLAS column; the tiled kernel is checked against the naive one)");
    printf("| n (n x n x n fp32) | naive GFLOP/s | tiled GFLOP/s | cuBLAS GFLOP/s | tiled / cuBLAS | max rel diff |\n|---|---|---|---|---|---|\n");
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (int n = 256; n <= maxn; n *= 2) {
        size_t bytes = sizeof(float) * n * n;
        float *hA = xmalloc(bytes), *hB = xmalloc(bytes), *h1 = xmalloc(bytes), *h2 = xmalloc(bytes);
        for (size_t i = 0; i < (size_t)n * n; i++) { hA[i] = (float)((i * 7919) % 2001) / 1000.0f - 1; hB[i] = (float)((i * 104729) % 2001) / 1000.0f - 1; }
        float *A, *B, *C;
        CK(cudaMalloc((void **)&A, bytes)); CK(cudaMalloc((void **)&B, bytes)); CK(cudaMalloc((void **)&C, bytes));
        CK(cudaMemcpy(A, hA, bytes, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(B, hB, bytes, cudaMemcpyHostToDevice));
        double gf[3] = {0, 0, 0};
        float one = 1, zero = 0;
        for (int w = 0; w < 3; w++) {
            if (w == 2 && !sgemm) break;
            if (w == 0 && n > 2048) continue;   /* the naive kernel is only a reference */
            double *t = xmalloc(sizeof(double) * reps);
            for (int r = -2; r < reps; r++) {
                CK(cudaEventRecord(e0, 0));
                if (w == 0) gpu_gemm_naive(0, 0, n, n, n, A, n, B, n, 0, C, n);
                else if (w == 1) gpu_gemm_tiled(0, 0, n, n, n, A, n, B, n, 0, C, n);
                else sgemm(handle, 0, 0, n, n, n, &one, B, n, A, n, &zero, C, n);   /* row-major via C^T = B^T A^T */
                CK(cudaEventRecord(e1, 0));
                CK(cudaEventSynchronize(e1));
                float ms;
                CK(cudaEventElapsedTime(&ms, e0, e1));
                if (r >= 0) t[r] = ms * 1e-3;
            }
            gf[w] = 2.0 * n * n * n / median(t, reps) * 1e-9;
            free(t);
            CK(cudaMemcpy(w == 1 ? h1 : h2, C, bytes, cudaMemcpyDeviceToHost));
        }
        /* the tiled result against cuBLAS, or without cuBLAS against the naive kernel; past
         * 2048 without cuBLAS there is nothing to compare with, and the table says so */
        int cmp = sgemm || n <= 2048;
        double d = 0, mx = 0;
        if (cmp) for (size_t i = 0; i < (size_t)n * n; i++) { d = fmax(d, fabs(h1[i] - h2[i])); mx = fmax(mx, fabs(h2[i])); }
        char diff[48], cub[24], ratio[24];
        if (cmp) snprintf(diff, sizeof diff, "%.1e%s", mx > 0 ? d / mx : 0, sgemm ? "" : " (vs naive)");
        else snprintf(diff, sizeof diff, "no comparison");
        snprintf(cub, sizeof cub, sgemm ? "%.0f" : "-", gf[2]);
        snprintf(ratio, sizeof ratio, sgemm ? "%.2f" : "-", gf[2] > 0 ? gf[1] / gf[2] : 0);
        printf("| %d | %.0f | %.0f | %s | %s | %s |\n", n, gf[0], gf[1], cub, ratio, diff);
        CK(cudaFree(A)); CK(cudaFree(B)); CK(cudaFree(C));
        free(hA); free(hB); free(h1); free(h2);
    }
    return 0;
}
