#include <math.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/checkpoint.h"
#include "core/util.h"

/* ------------------------------------------------------------------ files */

uint32_t crc32c(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return ~crc;
}

/* ------------------------------------------------------------------ safetensors */

typedef struct { char *p; size_t len, cap; } Str;
static void str_add(Str *s, const void *data, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        s->cap = (s->len + n + 1) * 2;
        s->p = realloc(s->p, s->cap);
        if (!s->p) die("out of memory");
    }
    memcpy(s->p + s->len, data, n);
    s->len += n;
    s->p[s->len] = 0;
}
static void str_printf(Str *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void str_printf(Str *s, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    str_add(s, buf, (size_t)n);
}

static size_t entry_bytes(const Entry *e) { return e->kind == ENTRY_COUNT ? 8 : e->numel * 4; }

int checkpoint_save(const Model *m, const char *path, char *err, size_t errlen)
{
    float *params = xmalloc_floats(m->n_params), *bufs = xmalloc_floats(m->n_buffers ? m->n_buffers : 1);
    model_get_params(m, params);
    model_get_buffers(m, bufs);
    Str h = {0}, data = {0};
    str_add(&h, "{", 1);
    size_t off = 0;
    for (int i = 0; i < m->n_entries; i++) {
        const Entry *e = &m->entries[i];
        str_printf(&h, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "", e->name,
                   e->kind == ENTRY_COUNT ? "I64" : "F32");
        for (int d = 0; d < e->ndim; d++) str_printf(&h, "%s%d", d ? "," : "", e->shape[d]);
        size_t nb = entry_bytes(e);
        str_printf(&h, "],\"data_offsets\":[%zu,%zu]}", off, off + nb);
        off += nb;
        if (e->kind == ENTRY_PARAM) str_add(&data, params + e->offset, nb);
        else if (e->kind == ENTRY_BUFFER) str_add(&data, bufs + e->offset, nb);
        else str_add(&data, &m->num_batches_tracked[e->offset], 8);   /* little-endian host */
    }
    str_add(&h, ",\"__metadata__\":{\"format\":\"pt\"}}", 32);
    while (h.len % 8) str_add(&h, " ", 1);          /* data starts 8-byte aligned */
    uint64_t hl = h.len;
    size_t total = 8 + h.len + data.len;
    char *file = xmalloc(total);
    memcpy(file, &hl, 8);
    memcpy(file + 8, h.p, h.len);
    memcpy(file + 8 + h.len, data.p, data.len);
    int rc = atomic_write(path, file, total, err, errlen);
    free(file); free(h.p); free(data.p); free(params); free(bufs);
    return rc;
}

/* Minimal parser for the flat safetensors header: {"name":{"dtype":"F32","shape":[..],
 * "data_offsets":[a,b]}, ..., "__metadata__":{...}}. */
typedef struct { const char *p, *end; } Cur;
static void ws(Cur *c) { while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\t' || *c->p == '\r')) c->p++; }
static int eat(Cur *c, char ch) { ws(c); if (c->p < c->end && *c->p == ch) { c->p++; return 1; } return 0; }
static int jstring(Cur *c, char *out, size_t cap)
{
    if (!eat(c, '"')) return 0;
    size_t n = 0;
    while (c->p < c->end && *c->p != '"') {
        if (*c->p == '\\' && ++c->p == c->end) return 0;   /* escape: take the next byte */
        if (n + 1 < cap) out[n++] = *c->p;
        c->p++;
    }
    out[n] = 0;
    return eat(c, '"');
}
static int jint(Cur *c, long long *v)   /* [-]digits within the header, |v| < 2^62 */
{
    ws(c);
    int neg = c->p < c->end && *c->p == '-';
    const char *q = c->p + neg;
    long long x = 0;
    int digits = 0;
    for (; q < c->end && *q >= '0' && *q <= '9'; q++, digits++) {
        if (x > (1LL << 62) / 10) return 0;
        x = x * 10 + (*q - '0');
    }
    if (!digits) return 0;
    *v = neg ? -x : x;
    c->p = q;
    return 1;
}
static int jint_array(Cur *c, long long *v, int cap, int *n)
{
    *n = 0;
    if (!eat(c, '[')) return 0;
    if (eat(c, ']')) return 1;
    do {
        if (*n >= cap || !jint(c, &v[*n])) return 0;
        (*n)++;
    } while (eat(c, ','));
    return eat(c, ']');
}
static int jskip_object(Cur *c)   /* {"k":"v",...} with string values (metadata) */
{
    char tmp[256];
    if (!eat(c, '{')) return 0;
    if (eat(c, '}')) return 1;
    do { if (!jstring(c, tmp, sizeof tmp) || !eat(c, ':') || !jstring(c, tmp, sizeof tmp)) return 0; } while (eat(c, ','));
    return eat(c, '}');
}

int checkpoint_load(Model *m, const char *path, char *err, size_t errlen)
{
    size_t len;
    char *file = read_file_max(path, CHECKPOINT_MAX_BYTES, &len, err, errlen);
    if (!file) return -1;
    int rc = checkpoint_parse(m, file, len, path, err, errlen);
    free(file);
    return rc;
}

int checkpoint_parse(Model *m, const char *file, size_t len, const char *path, char *err, size_t errlen)
{
    int rc = -1;
    float *params = xmalloc_floats(m->n_params), *bufs = xmalloc_floats(m->n_buffers ? m->n_buffers : 1);
    int64_t *counts = xcalloc(m->n_bn ? m->n_bn : 1, sizeof(int64_t));
    char *found = xcalloc(m->n_entries, 1);
    uint64_t hl;
    if (len < 8) { snprintf(err, errlen, "%s: not a safetensors file (too short)", path); goto done; }
    memcpy(&hl, file, 8);
    if (hl > len - 8) { snprintf(err, errlen, "%s: not a safetensors file (bad header length)", path); goto done; }
    const char *data = file + 8 + hl;
    size_t dlen = len - 8 - hl;
    Cur c = {file + 8, file + 8 + hl};
    if (!eat(&c, '{')) { snprintf(err, errlen, "%s: not a safetensors file (header is not JSON)", path); goto done; }
    int nfound = 0;
    if (!eat(&c, '}')) do {
        char name[256], key[64], dtype[16] = "";
        long long shape[8], offs[2];
        int nshape = -1, noffs = 0;
        if (!jstring(&c, name, sizeof name) || !eat(&c, ':')) goto bad;
        if (strcmp(name, "__metadata__") == 0) { if (!jskip_object(&c)) goto bad; continue; }
        if (!eat(&c, '{')) goto bad;
        do {
            if (!jstring(&c, key, sizeof key) || !eat(&c, ':')) goto bad;
            if (!strcmp(key, "dtype")) { if (!jstring(&c, dtype, sizeof dtype)) goto bad; }
            else if (!strcmp(key, "shape")) { if (!jint_array(&c, shape, 8, &nshape)) goto bad; }
            else if (!strcmp(key, "data_offsets")) { if (!jint_array(&c, offs, 2, &noffs) || noffs != 2) goto bad; }
            else goto bad;
        } while (eat(&c, ','));
        if (!eat(&c, '}') || nshape < 0 || noffs != 2) goto bad;
        int idx = -1;
        for (int i = 0; i < m->n_entries; i++) if (!strcmp(m->entries[i].name, name)) { idx = i; break; }
        if (idx < 0) { snprintf(err, errlen, "%s: unexpected tensor '%s' (checkpoint of a different model?)", path, name); goto done; }
        const Entry *e = &m->entries[idx];
        int shape_ok = nshape == e->ndim;
        for (int d = 0; shape_ok && d < e->ndim; d++) shape_ok = shape[d] == e->shape[d];
        if (!shape_ok) { snprintf(err, errlen, "%s: tensor '%s' has a different shape than this model's", path, name); goto done; }
        const char *want = e->kind == ENTRY_COUNT ? "I64" : "F32";
        if (strcmp(dtype, want)) { snprintf(err, errlen, "%s: tensor '%s' is %s, expected %s", path, name, dtype, want); goto done; }
        if (offs[0] < 0 || offs[1] < offs[0] || (size_t)offs[1] > dlen || (size_t)(offs[1] - offs[0]) != entry_bytes(e)) {
            snprintf(err, errlen, "%s: tensor '%s' has bad data offsets (truncated file?)", path, name);
            goto done;
        }
        if (e->kind == ENTRY_PARAM) memcpy(params + e->offset, data + offs[0], entry_bytes(e));
        else if (e->kind == ENTRY_BUFFER) memcpy(bufs + e->offset, data + offs[0], entry_bytes(e));
        else memcpy(&counts[e->offset], data + offs[0], 8);
        if (!found[idx]) nfound++;
        found[idx] = 1;
    } while (eat(&c, ','));
    if (!eat(&c, '}')) goto bad;
    for (int i = 0; i < m->n_entries; i++)
        if (!found[i]) { snprintf(err, errlen, "%s: missing tensor '%s'", path, m->entries[i].name); goto done; }
    model_set_params(m, params);
    model_set_buffers(m, bufs);
    memcpy(m->num_batches_tracked, counts, sizeof(int64_t) * m->n_bn);
    rc = 0;
    goto done;
bad:
    snprintf(err, errlen, "%s: malformed safetensors header", path);
done:
    free(params); free(bufs); free(counts); free(found);
    return rc;
}

/* ------------------------------------------------------------------ training state */

#define STATE_MAGIC "CNVSTATE"
#define STATE_VERSION 2

/* version 1: the header up to best_val (a state at an epoch boundary only); version 2 adds
 * the position inside an epoch and that epoch's running sums (a run stopped by a signal). */
typedef struct StateHeader {
    char magic[8];
    uint32_t version, n_bn;
    uint64_t n_params, n_buffers, seed;
    int64_t epoch, steps, best_epoch;
    double best_val;
    /* version 2 */
    int64_t step, correct, seen;
    double loss_sum, seconds;
} StateHeader;
#define STATE_HEADER_V1 offsetof(StateHeader, step)

int train_state_save(const Model *m, const TrainState *st, const char *path, char *err, size_t errlen)
{
    StateHeader h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, STATE_MAGIC, 8);
    h.version = STATE_VERSION;
    h.n_bn = (uint32_t)m->n_bn;
    h.n_params = m->n_params; h.n_buffers = m->n_buffers; h.seed = st->seed;
    h.epoch = st->epoch; h.steps = st->steps; h.best_epoch = st->best_epoch; h.best_val = st->best_val;
    h.step = st->step; h.correct = st->correct; h.seen = st->seen;
    h.loss_sum = st->loss_sum; h.seconds = st->seconds;
    size_t np = m->n_params * 4, nb = m->n_buffers * 4, nc = (size_t)m->n_bn * 8;
    size_t total = sizeof h + 2 * np + nb + nc + 4;
    char *buf = xmalloc(total), *p = buf;
    memcpy(p, &h, sizeof h); p += sizeof h;
    model_get_params(m, (float *)p); p += np;
    m->ops->download(p, m->momentum, np); p += np;
    model_get_buffers(m, (float *)p); p += nb;
    memcpy(p, m->num_batches_tracked, nc); p += nc;
    uint32_t crc = crc32c(0, buf, (size_t)(p - buf));
    memcpy(p, &crc, 4);
    int rc = atomic_write(path, buf, total, err, errlen);
    free(buf);
    return rc;
}

int train_state_load(Model *m, TrainState *st, const char *path, char *err, size_t errlen)
{
    size_t len;
    char *buf = read_file_max(path, CHECKPOINT_MAX_BYTES, &len, err, errlen);
    if (!buf) return -1;
    int rc = train_state_parse(m, st, buf, len, path, err, errlen);
    free(buf);
    return rc;
}

int train_state_parse(Model *m, TrainState *st, const char *buf, size_t len, const char *path, char *err, size_t errlen)
{
    StateHeader h;
    memset(&h, 0, sizeof h);
    if (len < STATE_HEADER_V1 || memcmp(buf, STATE_MAGIC, 8)) {
        snprintf(err, errlen, "%s: not a training-state file", path);
        return -1;
    }
    memcpy(&h, buf, STATE_HEADER_V1);
    if (h.version != 1 && h.version != STATE_VERSION) {
        snprintf(err, errlen, "%s: training-state version %u, this build reads 1 and %d", path, h.version, STATE_VERSION);
        return -1;
    }
    size_t hl = h.version == 1 ? STATE_HEADER_V1 : sizeof h;
    size_t np = m->n_params * 4, nb = m->n_buffers * 4, nc = (size_t)m->n_bn * 8;
    size_t total = hl + 2 * np + nb + nc + 4;
    if (h.n_params != m->n_params || h.n_buffers != m->n_buffers || h.n_bn != (uint32_t)m->n_bn || len != total) {
        snprintf(err, errlen, "%s: training state belongs to a different model (or is truncated)", path);
        return -1;
    }
    memcpy(&h, buf, hl);
    uint32_t crc;
    memcpy(&crc, buf + total - 4, 4);
    if (crc != crc32c(0, buf, total - 4)) { snprintf(err, errlen, "%s: checksum mismatch (corrupt file)", path); return -1; }
    /* a file with a valid checksum can still hold values no run writes */
    if (h.epoch < 0 || h.epoch > 1000000 || h.steps < 0 || h.best_epoch < -1 || h.best_epoch > h.epoch ||
        !(h.best_val >= -1 && h.best_val <= 1) || h.step < 0 || h.step > 100000000 || h.seen < 0 ||
        h.correct < 0 || h.correct > h.seen || !isfinite(h.loss_sum) || !isfinite(h.seconds)) {
        snprintf(err, errlen, "%s: training state holds impossible values (epoch %lld, step %lld)", path,
                 (long long)h.epoch, (long long)h.step);
        return -1;
    }
    const char *p = buf + hl;
    model_set_params(m, (const float *)p); p += np;
    m->ops->upload(m->momentum, p, np); p += np;
    model_set_buffers(m, (const float *)p); p += nb;
    memcpy(m->num_batches_tracked, p, nc);
    st->epoch = (int)h.epoch; st->steps = h.steps; st->best_epoch = (int)h.best_epoch;
    st->best_val = h.best_val; st->seed = h.seed;
    st->step = (int)h.step; st->correct = h.correct; st->seen = h.seen;
    st->loss_sum = h.loss_sum; st->seconds = h.seconds;
    m->steps = h.steps;
    return 0;
}
