/* Linked instead of gpu/ when this build has no CUDA toolkit. */
#include "core/ops.h"

const Ops *ops_gpu(const char **why)
{
    if (why) *why = "this build has no CUDA support: nvcc was not found at build time";
    return 0;
}
