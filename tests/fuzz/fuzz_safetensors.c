/* checkpoint_parse: a safetensors file as the apps load it (strict names/shapes/dtypes). */
#include <stdlib.h>
#include "core/checkpoint.h"
#include "tests/fuzz/fuzz.h"

int fuzz_safetensors(const uint8_t *data, size_t n)
{
    Model *m = fuzz_model();
    char err[1024];
    checkpoint_parse(m, (const char *)data, n, "input", err, sizeof err);
    return 0;
}
FUZZ_ENTRY(fuzz_safetensors)
