/* Linked instead of gpu/ when this build has no CUDA toolkit. */
#include "core/ops.h"

const Ops *ops_gpu(const char **why)
{
    if (why) *why = "this build has no CUDA support: nvcc was not found at build time";
    return 0;
}

const Ops *ops_gpu_ref(const char **why) { return ops_gpu(why); }
const Ops *ops_gpu_data_parallel(const char **why) { return ops_gpu(why); }

int gpu_set_conv_math(int math) { return math == GPU_CONV_FP32 ? 0 : -1; }
int gpu_conv_math(void) { return GPU_CONV_FP32; }
void gpu_set_conv_fusion(int per) { (void)per; }
void gpu_profile_begin(void) {}
long gpu_profile_end(int steps, FILE *out) { (void)steps; (void)out; return 0; }
int gpu_dist_init(int rank, int size, int local_rank, int local_size, void (*bcast)(void *buf, size_t bytes),
                  char *err, size_t errlen)
{
    (void)rank; (void)local_rank; (void)local_size; (void)bcast;
    if (size == 1) return 0;
    snprintf(err, errlen, "this build has no CUDA support: nvcc was not found at build time");
    return -1;
}
void gpu_dist_finalize(void) {}
