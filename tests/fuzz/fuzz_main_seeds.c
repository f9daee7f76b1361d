/* make fuzz: writes the seed corpus. usage: fuzz_seeds DIR [CIFAR10_DIR] */
#include <stdio.h>
#include "tests/fuzz/fuzz.h"

int main(int argc, char **argv)
{
    if (argc < 2) { fprintf(stderr, "usage: %s DIR [CIFAR10_DIR]\n", argv[0]); return 2; }
    int n = fuzz_write_seeds(argv[1], argc > 2 && argv[2][0] ? argv[2] : NULL);
    printf("fuzz seeds: %d files in %s\n", n, argv[1]);
    return 0;
}
