/* Small helpers: fatal errors with one clear line, checked allocation, timing. */
#ifndef CONVNET_UTIL_H
#define CONVNET_UTIL_H
#include <stddef.h>
#include <stdio.h>

/* Print "convnet: <message>" to stderr and exit with `code` (2 = user error, 1 = internal). */
void die_code(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
#define die(...) die_code(1, __VA_ARGS__)
/* Fuzzing harnesses (tests/fuzz/) catch user errors instead of exiting: when a hook is set,
 * die_code formats the message and calls hook(code, message), which must not return
 * (it longjmps back into the harness). NULL restores exit(). */
typedef void (*DieHook)(int code, const char *message);
void die_set_hook(DieHook hook);

/* Closes a text file written with stdio; any earlier write error or a failing close (full
 * disk, file-size limit) is one line naming the file, exit status 1. */
void xfclose(FILE *f, const char *path);

void *xmalloc(size_t bytes);              /* exits with a message instead of returning NULL */
void *xcalloc(size_t count, size_t size);
float *xmalloc_floats(size_t n);
double now_seconds(void);                 /* monotonic clock */

/* The directory of the running program (from /proc/self/exe): 0, or -1 if unknown. */
int exe_dir(char *buf, size_t n);
/* mkdir -p; exits with one line (status 2) if it cannot. */
void mkdir_p(const char *dir);

#endif
