#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/util.h"

static DieHook die_hook;
void die_set_hook(DieHook hook) { die_hook = hook; }

void die_code(int code, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (die_hook) die_hook(code, msg);
    fprintf(stderr, "convnet: %s\n", msg);
    exit(code);
}

void xfclose(FILE *f, const char *path)
{
    int saved = 0, bad = ferror(f);
    if (fflush(f) != 0) { bad = 1; saved = errno; }
    if (fclose(f) != 0 && !saved) { bad = 1; saved = errno; }
    if (bad) die("cannot write %s: %s", path, saved ? strerror(saved) : "write error (disk full?)");
}

void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) die("out of memory allocating %zu bytes", bytes);
    return p;
}

void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) die("out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

float *xmalloc_floats(size_t n) { return xmalloc(n * sizeof(float)); }

double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int exe_dir(char *buf, size_t n)
{
    if (n < 2) return -1;
    ssize_t len = readlink("/proc/self/exe", buf, n - 1);
    if (len <= 0) return -1;
    buf[len] = 0;
    char *slash = strrchr(buf, '/');
    if (!slash) return -1;
    *slash = 0;
    return 0;
}

void mkdir_p(const char *dir)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') { *p = 0; mkdir(buf, 0755); *p = '/'; }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) die_code(2, "cannot create output directory %s: %s", dir, strerror(errno));
}
