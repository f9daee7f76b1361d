/* train_state_parse: a --resume file. Random bytes rarely carry a valid CRC32C, so each
 * input is also tried with its last 4 bytes replaced by the right checksum: that reaches
 * the version, size and value checks behind it. */
#include <stdlib.h>
#include <string.h>
#include "core/checkpoint.h"
#include "tests/fuzz/fuzz.h"

int fuzz_state(const uint8_t *data, size_t n)
{
    Model *m = fuzz_model();
    TrainState st;
    char err[1024];
    train_state_parse(m, &st, (const char *)data, n, "input", err, sizeof err);
    if (n >= 4) {
        char *fixed = malloc(n);
        memcpy(fixed, data, n);
        uint32_t crc = crc32c(0, fixed, n - 4);
        memcpy(fixed + n - 4, &crc, 4);
        train_state_parse(m, &st, fixed, n, "input", err, sizeof err);
        free(fixed);
    }
    return 0;
}
FUZZ_ENTRY(fuzz_state)
