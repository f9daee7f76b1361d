/* The TensorBoard writer, read back: TFRecord framing, masked CRC32C of length and data,
 * and the Event/Summary/Value protobuf fields with the values written. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/checkpoint.h"
#include "core/tblog.h"
#include "tests/fixtures.h"

static uint64_t varint(const uint8_t *p, size_t *i)
{
    uint64_t v = 0;
    for (int s = 0;; s += 7) {
        uint8_t b = p[(*i)++];
        v |= (uint64_t)(b & 0x7f) << s;
        if (!(b & 0x80)) return v;
    }
}

/* Decodes one Event; returns the number of scalar values found (0 or 1 here). */
static int decode_event(const uint8_t *p, size_t n, long *step, char *tag, float *value, char *version)
{
    size_t i = 0;
    int found = 0;
    while (i < n) {
        uint64_t key = varint(p, &i);
        int field = (int)(key >> 3), wire = (int)(key & 7);
        if (wire == 1) { i += 8; continue; }                       /* wall_time */
        if (wire == 0) { uint64_t v = varint(p, &i); if (field == 2) *step = (long)v; continue; }
        ck_assert_int_eq(wire, 2);
        size_t len = varint(p, &i), end = i + len;
        if (field == 3) { memcpy(version, p + i, len); version[len] = 0; }
        if (field == 5) {                                          /* Summary */
            size_t j = i;
            ck_assert_int_eq(varint(p, &j), (1 << 3) | 2);         /* Summary.value */
            size_t vlen = varint(p, &j), vend = j + vlen;
            while (j < vend) {
                uint64_t k = varint(p, &j);
                if (k == ((1 << 3) | 2)) { size_t tl = varint(p, &j); memcpy(tag, p + j, tl); tag[tl] = 0; j += tl; }
                else if (k == ((2 << 3) | 5)) { memcpy(value, p + j, 4); j += 4; found = 1; }
                else ck_abort_msg("unexpected Value field %llu", (unsigned long long)k);
            }
        }
        i = end;
    }
    return found;
}

START_TEST(events_read_back)
{
    char dir[] = "/tmp/convnet_tb_XXXXXX", err[256];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    TbLog t;
    ck_assert_int_eq(tblog_open(&t, dir, err, sizeof err), 0);
    tblog_scalar(&t, "train_loss", 1, 2.25f);
    tblog_scalar(&t, "val_acc", 352, 0.5f);
    tblog_scalar(&t, "lr", 100000, 0.001f);
    tblog_close(&t);
    size_t len;
    uint8_t *buf = read_file(t.path, &len, err, sizeof err);
    ck_assert_ptr_nonnull(buf);
    ck_assert_ptr_nonnull(strstr(t.path, "events.out.tfevents."));
    const char *tags[] = {"train_loss", "val_acc", "lr"};
    long steps[] = {1, 352, 100000};
    float vals[] = {2.25f, 0.5f, 0.001f};
    size_t off = 0;
    int rec = 0;
    while (off < len) {
        uint64_t n;
        uint32_t lc, dc;
        memcpy(&n, buf + off, 8);
        memcpy(&lc, buf + off + 8, 4);
        ck_assert_uint_eq(lc, tb_masked_crc(buf + off, 8));
        memcpy(&dc, buf + off + 12 + n, 4);
        ck_assert_uint_eq(dc, tb_masked_crc(buf + off + 12, n));
        long step = -1;
        char tag[128] = "", version[64] = "";
        float v = 0;
        int has = decode_event(buf + off + 12, n, &step, tag, &v, version);
        if (rec == 0) {
            ck_assert_str_eq(version, "brain.Event:2");
            ck_assert_int_eq(has, 0);
        } else {
            ck_assert_int_eq(has, 1);
            ck_assert_str_eq(tag, tags[rec - 1]);
            ck_assert_int_eq(step, steps[rec - 1]);
            ck_assert(v == vals[rec - 1]);
        }
        off += 16 + n;
        rec++;
    }
    ck_assert_int_eq(rec, 4);
    /* the masked CRC of a known string (TensorFlow's masking of CRC32C("123456789") = 0xe3069283) */
    uint32_t c = crc32c(0, "123456789", 9);
    ck_assert_uint_eq(c, 0xe3069283u);
    free(buf);
    ck_assert_int_eq(fixture_remove(dir, NULL), 0);
}
END_TEST

Suite *suite_tblog(void)
{
    Suite *s = suite_create("tensorboard events");
    TCase *t = tcase_create("tb");
    tcase_add_test(t, events_read_back);
    suite_add_tcase(s, t);
    return s;
}
