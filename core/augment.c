#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/augment.h"
#include "core/files.h"
#include "core/cifar.h"
#include "core/util.h"

void hflip_u8(uint8_t *dst, const uint8_t *src, int C, int H, int W)
{
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++) {
            const uint8_t *s = src + ((size_t)c * H + y) * W;
            uint8_t *d = dst + ((size_t)c * H + y) * W;
            for (int x = 0; x < W / 2; x++) {   /* swap pairs: works in place too */
                uint8_t a = s[x], b = s[W - 1 - x];
                d[x] = b;
                d[W - 1 - x] = a;
            }
            if (W % 2) d[W / 2] = s[W / 2];
        }
}

void random_resized_crop_params(Rng *rng, int H, int W, double scale_lo, double scale_hi,
                                double ratio_lo, double ratio_hi, int *top, int *left,
                                int *h, int *w)
{
    double area = (double)H * W, lr0 = log(ratio_lo), lr1 = log(ratio_hi);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * rng_uniform_range(rng, scale_lo, scale_hi);
        double ar = exp(rng_uniform_range(rng, lr0, lr1));
        int cw = (int)lround(sqrt(target * ar)), ch = (int)lround(sqrt(target / ar));
        if (cw > 0 && cw <= W && ch > 0 && ch <= H) {
            *top = rng_int(rng, H - ch + 1);
            *left = rng_int(rng, W - cw + 1);
            *h = ch;
            *w = cw;
            return;
        }
    }
    double in_ratio = (double)W / H;                 /* fallback: centre crop */
    int cw = W, ch = H;
    if (in_ratio < ratio_lo) ch = (int)lround(cw / ratio_lo);
    else if (in_ratio > ratio_hi) cw = (int)lround(ch * ratio_hi);
    *top = (H - ch) / 2;
    *left = (W - cw) / 2;
    *h = ch;
    *w = cw;
}

void resized_crop_u8(uint8_t *dst, int OH, int OW, const uint8_t *src, int C, int H, int W,
                     int top, int left, int h, int w)
{
    (void)H;
    double sy = (double)h / OH, sx = (double)w / OW;
    for (int oy = 0; oy < OH; oy++) {
        double fy = (oy + 0.5) * sy - 0.5;
        if (fy < 0) fy = 0;
        if (fy > h - 1) fy = h - 1;
        int y0 = (int)fy, y1 = y0 + 1 < h ? y0 + 1 : y0;
        double wy = fy - y0;
        for (int ox = 0; ox < OW; ox++) {
            double fx = (ox + 0.5) * sx - 0.5;
            if (fx < 0) fx = 0;
            if (fx > w - 1) fx = w - 1;
            int x0 = (int)fx, x1 = x0 + 1 < w ? x0 + 1 : x0;
            double wx = fx - x0;
            for (int c = 0; c < C; c++) {
                const uint8_t *p = src + (size_t)c * H * W;
#define PX(yy, xx) p[(size_t)(top + (yy)) * W + left + (xx)]
                double v = (1 - wy) * ((1 - wx) * PX(y0, x0) + wx * PX(y0, x1)) +
                           wy * ((1 - wx) * PX(y1, x0) + wx * PX(y1, x1));
#undef PX
                long r = lround(v);
                dst[((size_t)c * OH + oy) * OW + ox] = (uint8_t)(r < 0 ? 0 : r > 255 ? 255 : r);
            }
        }
    }
}

void rotate_u8(uint8_t *dst, const uint8_t *src, int C, int H, int W, double degrees)
{
    /* Inverse map: output pixel centre (x', y') relative to the image centre comes from
     * x = cos(a) x' - sin(a) y',  y = sin(a) x' + cos(a) y'   (y axis pointing down). */
    double a = fmod(degrees, 360.0);
    if (a < 0) a += 360;
    double cs, sn;
    if (a == 0) { cs = 1; sn = 0; }                 /* exact at the right angles */
    else if (a == 90) { cs = 0; sn = 1; }
    else if (a == 180) { cs = -1; sn = 0; }
    else if (a == 270) { cs = 0; sn = -1; }
    else { cs = cos(a * M_PI / 180); sn = sin(a * M_PI / 180); }
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double xo = x + 0.5 - W / 2.0, yo = y + 0.5 - H / 2.0;
            double xi = cs * xo - sn * yo + W / 2.0 - 0.5, yi = sn * xo + cs * yo + H / 2.0 - 0.5;
            long ix = lrint(xi), iy = lrint(yi);          /* round half to even, as grid_sample */
            int inside = ix >= 0 && ix < W && iy >= 0 && iy < H;
            for (int c = 0; c < C; c++)
                dst[((size_t)c * H + y) * W + x] =
                    inside ? src[((size_t)c * H + iy) * W + ix] : 0;
        }
}

void permute_pixels_u8(uint8_t *dst, const uint8_t *src, const int *perm, int C, int HW)
{
    for (int c = 0; c < C; c++)
        for (int k = 0; k < HW; k++) dst[(size_t)c * HW + k] = src[(size_t)c * HW + perm[k]];
}

void permutation_from_seed(int *perm, int n, uint64_t seed)
{
    for (int i = 0; i < n; i++) perm[i] = i;
    Rng r;
    rng_seed(&r, seed, 0x9e37);
    rng_shuffle(&r, perm, n);
}

/* Text format: "convnet-permutation <n>" then n indices, one per line. Written atomically. */
int permutation_save(const char *path, const int *perm, int n, char *err, size_t errlen)
{
    size_t cap = 32 + (size_t)(n > 0 ? n : 0) * 12, len = 0;
    char *txt = xmalloc(cap);
    len += (size_t)snprintf(txt, cap, "convnet-permutation %d\n", n);
    for (int i = 0; i < n; i++) len += (size_t)snprintf(txt + len, cap - len, "%d\n", perm[i]);
    int rc = atomic_write(path, txt, len, err, errlen);
    free(txt);
    return rc;
}

/* a decimal integer after optional spaces/newlines, within [*p, end); 0 if none */
static int next_int(const char **p, const char *end, long *v)
{
    const char *q = *p;
    while (q < end && (*q == ' ' || *q == '\n' || *q == '\r' || *q == '\t')) q++;
    long x = 0;
    int digits = 0;
    for (; q < end && *q >= '0' && *q <= '9' && digits < 10; q++, digits++) x = x * 10 + (*q - '0');
    if (!digits || (q < end && *q >= '0' && *q <= '9')) return 0;
    *v = x;
    *p = q;
    return 1;
}

int permutation_parse(const char *text, size_t len, int *perm, int n, const char *path, char *err, size_t errlen)
{
    static const char magic[] = "convnet-permutation";
    const char *p = text, *end = text + len;
    long count = -1;
    int ok = len > sizeof magic && !memcmp(p, magic, sizeof magic - 1) && (p += sizeof magic - 1, 1) &&
             next_int(&p, end, &count) && count == n;
    char *seen = xcalloc(n > 0 ? n : 1, 1);
    int *out = xmalloc(sizeof(int) * (n > 0 ? n : 1));
    for (int i = 0; ok && i < n; i++) {
        long v;
        ok = next_int(&p, end, &v) && v < n && !seen[v];
        if (ok) { seen[v] = 1; out[i] = (int)v; }
    }
    while (ok && p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    if (ok && p != end) ok = 0;   /* nothing may follow the n indices */
    if (ok) memcpy(perm, out, sizeof(int) * (size_t)n);
    else snprintf(err, errlen, "%s: not a valid permutation of %d pixels", path, n);
    free(seen);
    free(out);
    return ok ? 0 : -1;
}

int permutation_load(const char *path, int *perm, int n, char *err, size_t errlen)
{
    size_t len;
    char *text = read_file_max(path, 1 << 20, &len, err, errlen);
    if (!text) return -1;
    int rc = permutation_parse(text, len, perm, n, path, err, errlen);
    free(text);
    return rc;
}

void normalize_u8(float *dst, const uint8_t *src, int n, int C, int HW, const float *mean,
                  const float *std)
{
    for (int i = 0; i < n; i++)
        for (int c = 0; c < C; c++) {
            const uint8_t *s = src + ((size_t)i * C + c) * HW;
            float *d = dst + ((size_t)i * C + c) * HW;
            float k = 1.0f / (255.0f * std[c]), b = mean[c] / std[c];
            for (int j = 0; j < HW; j++) d[j] = s[j] * k - b;
        }
}

void augment_draw(Rng *rng, int flip, int crop, AugParams *p)
{
    p->flip = flip && rng_uniform(rng) < 0.5;
    p->h = 0;
    if (crop) random_resized_crop_params(rng, 32, 32, 0.8, 1.0, 0.9, 1.1, &p->top, &p->left, &p->h, &p->w);
}

void augment_apply(float *dst, const uint8_t *src, const AugParams *p, double rotate_deg, const int *perm)
{
    enum { C = 3, H = 32, W = 32, N = C * H * W };
    uint8_t img[N], tmp[N];
    memcpy(img, src, N);
    if (p->flip) hflip_u8(img, img, C, H, W);
    if (p->h) {
        resized_crop_u8(tmp, H, W, img, C, H, W, p->top, p->left, p->h, p->w);
        memcpy(img, tmp, N);
    }
    if (rotate_deg != 0) {
        rotate_u8(tmp, img, C, H, W, rotate_deg);
        memcpy(img, tmp, N);
    }
    if (perm) {
        permute_pixels_u8(tmp, img, perm, C, H * W);
        memcpy(img, tmp, N);
    }
    normalize_u8(dst, img, 1, C, H * W, cifar_mean, cifar_std);
}
