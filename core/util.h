/* Small helpers: fatal errors with one clear line, checked allocation, timing. */
#ifndef CONVNET_UTIL_H
#define CONVNET_UTIL_H
#include <stddef.h>

/* Print "convnet: <message>" to stderr and exit with `code` (2 = user error, 1 = internal). */
void die_code(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
#define die(...) die_code(1, __VA_ARGS__)

void *xmalloc(size_t bytes);              /* exits with a message instead of returning NULL */
void *xcalloc(size_t count, size_t size);
float *xmalloc_floats(size_t n);
double now_seconds(void);                 /* monotonic clock */

/* The directory of the running program (from /proc/self/exe): 0, or -1 if unknown. */
int exe_dir(char *buf, size_t n);
/* mkdir -p; exits with one line (status 2) if it cannot. */
void mkdir_p(const char *dir);

#endif
