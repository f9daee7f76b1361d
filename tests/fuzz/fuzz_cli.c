/* The flag parsers of apps/resnet, apps/rotation and apps/shuffle. The first byte picks the
 * app, the rest is split at NUL bytes into argv. A bad flag ends in die_code (one line,
 * exit 2): here a hook jumps back instead of exiting, after checking the status is 2. */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/util.h"
#include "tests/fuzz/fuzz.h"

#define main fuzz_resnet_main
#include "apps/resnet.c"
#undef main
#define main fuzz_rotation_main
#include "apps/rotation.c"
#undef main
#define main fuzz_shuffle_main
#include "apps/shuffle.c"
#undef main

static jmp_buf back;
static void on_die(int code, const char *msg)
{
    (void)msg;
    if (code != 2) __builtin_trap();   /* a user error must be status 2 */
    longjmp(back, 1);
}

int fuzz_cli(const uint8_t *data, size_t n)
{
    if (n < 1 || n > 4096) return 0;
    enum { MAX_ARGS = 32 };
    static char buf[4097];
    char *argv[MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = "app";
    memcpy(buf, data + 1, n - 1);
    buf[n - 1] = 0;
    for (size_t i = 0; i < n - 1 && argc <= MAX_ARGS; i++) {   /* args at NUL boundaries */
        if (i == 0 || buf[i - 1] == 0) argv[argc++] = buf + i;
    }
    argv[argc] = NULL;
    TrainConfig cfg;
    int threads, step, max_images;
    ShuffleFlags sf;
    static FILE *devnull;
    if (!devnull && !(devnull = fopen("/dev/null", "w"))) abort();
    FILE *saved = stdout;
    die_set_hook(on_die);
    if (!setjmp(back)) {
        stdout = devnull;   /* --help text */
        switch (data[0] % 3) {
        case 0: resnet_flags(argc, argv, &cfg, &threads); break;
        case 1: rotation_flags(argc, argv, &cfg, &threads, &step, &max_images); break;
        default: shuffle_flags(argc, argv, &cfg, &sf); break;
        }
    }
    die_set_hook(NULL);
    stdout = saved;
    return 0;
}
FUZZ_ENTRY(fuzz_cli)
