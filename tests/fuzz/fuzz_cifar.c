/* cifar_parse: a CIFAR-10 batch file, with any record count and with exactly 2 expected. */
#include "core/cifar.h"
#include "tests/fuzz/fuzz.h"

int fuzz_cifar(const uint8_t *data, size_t n)
{
    char err[1024];
    for (int expect = 0; expect <= 2; expect += 2) {
        Dataset ds = {0};
        if (cifar_parse(data, n, expect, &ds, "input", err, sizeof err) == 0 &&
            (ds.n * (size_t)CIFAR_RECORD != n || ds.labels[ds.n - 1] > 9))
            __builtin_trap();   /* accepted, but not what the bytes say */
        dataset_free(&ds);
    }
    return 0;
}
FUZZ_ENTRY(fuzz_cifar)
