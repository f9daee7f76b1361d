#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include "core/checkpoint.h"
#include "core/tblog.h"
#include "core/util.h"

uint32_t tb_masked_crc(const void *data, size_t len)
{
    uint32_t c = crc32c(0, data, len);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        p[n++] = (uint8_t)(b | (v ? 0x80 : 0));
    } while (v);
    return n;
}

static void write_record(TbLog *t, const uint8_t *data, size_t len)
{
    uint64_t l = len;
    uint32_t lc = tb_masked_crc(&l, 8), dc = tb_masked_crc(data, len);
    fwrite(&l, 8, 1, t->f);
    fwrite(&lc, 4, 1, t->f);
    fwrite(data, 1, len, t->f);
    fwrite(&dc, 4, 1, t->f);
}

static double wall_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int tblog_open(TbLog *t, const char *dir, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: cannot create: %s", dir, strerror(errno));
        return -1;
    }
    snprintf(t->path, sizeof t->path, "%s/events.out.tfevents.%ld.convnet", dir, (long)time(NULL));
    t->f = fopen(t->path, "ab");
    if (!t->f) { snprintf(err, errlen, "%s: cannot create: %s", t->path, strerror(errno)); return -1; }
    uint8_t buf[64];
    size_t n = 0;
    double wt = wall_time();
    buf[n++] = (1 << 3) | 1;                 /* wall_time, fixed64 */
    memcpy(buf + n, &wt, 8); n += 8;
    const char *ver = "brain.Event:2";
    buf[n++] = (3 << 3) | 2;                 /* file_version, length-delimited */
    buf[n++] = (uint8_t)strlen(ver);
    memcpy(buf + n, ver, strlen(ver)); n += strlen(ver);
    write_record(t, buf, n);
    return 0;
}

void tblog_scalar(TbLog *t, const char *tag, long step, float value)
{
    if (!t->f) return;
    uint8_t val[160], sum[176], ev[224];
    size_t tl = strlen(tag) > 120 ? 120 : strlen(tag), nv = 0, ns = 0, ne = 0;
    val[nv++] = (1 << 3) | 2;                /* Value.tag */
    nv += put_varint(val + nv, tl);
    memcpy(val + nv, tag, tl); nv += tl;
    val[nv++] = (2 << 3) | 5;                /* Value.simple_value, fixed32 */
    memcpy(val + nv, &value, 4); nv += 4;
    sum[ns++] = (1 << 3) | 2;                /* Summary.value */
    ns += put_varint(sum + ns, nv);
    memcpy(sum + ns, val, nv); ns += nv;
    double wt = wall_time();
    ev[ne++] = (1 << 3) | 1;                 /* Event.wall_time */
    memcpy(ev + ne, &wt, 8); ne += 8;
    ev[ne++] = (2 << 3) | 0;                 /* Event.step, varint */
    ne += put_varint(ev + ne, (uint64_t)step);
    ev[ne++] = (5 << 3) | 2;                 /* Event.summary */
    ne += put_varint(ev + ne, ns);
    memcpy(ev + ne, sum, ns); ne += ns;
    write_record(t, ev, ne);
}

/* A failed write (disk full) ends the run with one line, as every other output does; the
 * checkpoints saved before it are intact. */
void tblog_flush(TbLog *t)
{
    if (t->f && (fflush(t->f) != 0 || ferror(t->f))) die("cannot write %s: %s", t->path, strerror(errno));
}
void tblog_close(TbLog *t)
{
    if (t->f) xfclose(t->f, t->path);
    t->f = NULL;
}
