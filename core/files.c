#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/files.h"
#include "core/util.h"

#define TEMP_MARK ".tmp."

int atomic_write(const char *path, const void *data, size_t len, char *err, size_t errlen)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s" TEMP_MARK "%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno)); return -1; }
    const char *p = data;
    size_t left = len;
    const char *what = NULL;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { what = w < 0 ? strerror(errno) : "nothing written (disk full?)"; break; }
        p += w; left -= (size_t)w;
    }
    if (!what && fsync(fd) != 0) what = strerror(errno);
    if (close(fd) != 0 && !what) what = strerror(errno);
    if (!what && rename(tmp, path) != 0) what = strerror(errno);
    if (what) {
        snprintf(err, errlen, "cannot write %s: %s (the previous version, if any, is unchanged)", path, what);
        unlink(tmp);
        return -1;
    }
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", path);
    int dfd = open(dirname(dir), O_RDONLY);
    if (dfd >= 0) { fsync(dfd); close(dfd); }
    return 0;
}

void *read_file_max(const char *path, size_t max_bytes, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno)); return NULL; }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        fclose(f);
        return NULL;
    }
    if (max_bytes && (size_t)st.st_size > max_bytes) {
        snprintf(err, errlen, "%s: %lld bytes, more than the %zu this file can have", path, (long long)st.st_size, max_bytes);
        fclose(f);
        return NULL;
    }
    char *buf = xmalloc((size_t)st.st_size + 1);
    size_t got = fread(buf, 1, (size_t)st.st_size, f);
    int bad = ferror(f);
    fclose(f);
    if (got != (size_t)st.st_size || bad) {
        snprintf(err, errlen, "%s: read error (%zu of %lld bytes)", path, got, (long long)st.st_size);
        free(buf);
        return NULL;
    }
    buf[got] = 0;
    *len = got;
    return buf;
}

void *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    return read_file_max(path, 0, len, err, errlen);
}

/* "<name>.tmp.<digits>" with a name before it: the pid, else 0 */
static long temp_pid(const char *name)
{
    const char *mark = strstr(name, TEMP_MARK);
    if (!mark || mark == name) return 0;
    const char *d = mark + strlen(TEMP_MARK);
    while (strstr(d, TEMP_MARK)) d = strstr(d, TEMP_MARK) + strlen(TEMP_MARK);
    if (!*d) return 0;
    long pid = 0;
    for (; *d; d++) {
        if (*d < '0' || *d > '9' || pid > 1L << 40) return 0;
        pid = pid * 10 + (*d - '0');
    }
    return pid;
}

int files_remove_stale_temps(const char *dir, int quiet)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int removed = 0;
    for (struct dirent *e; (e = readdir(d));) {
        long pid = temp_pid(e->d_name);
        if (pid <= 0) continue;
        /* a running process with that pid may be saving right now (another run sharing the
         * directory): leave its file alone */
        if (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno == EPERM) continue;
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (unlink(path) == 0) {
            removed++;
            if (!quiet) printf("removed %s (left by an interrupted save)\n", path);
        }
    }
    closedir(d);
    return removed;
}
