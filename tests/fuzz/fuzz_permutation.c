/* permutation_parse: Part 3's permutation.txt, for the real 1024 pixels and for 8 (short
 * enough that the fuzzer builds valid files). An accepted file must be a permutation. */
#include <string.h>
#include "core/augment.h"
#include "tests/fuzz/fuzz.h"

int fuzz_permutation(const uint8_t *data, size_t n)
{
    static int perm[1024];
    char err[1024];
    for (int size = 8; size <= 1024; size += 1016) {
        if (permutation_parse((const char *)data, n, perm, size, "input", err, sizeof err) == 0) {
            char seen[1024] = {0};
            for (int i = 0; i < size; i++) {
                if (perm[i] < 0 || perm[i] >= size || seen[perm[i]]) __builtin_trap();
                seen[perm[i]] = 1;
            }
        }
    }
    return 0;
}
FUZZ_ENTRY(fuzz_permutation)
