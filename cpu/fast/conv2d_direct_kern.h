/* Register-tiled inner loops of the direct convolution (cpu/fast/conv2d_direct.c), written
 * once and compiled once per ISA. The includer defines SFX (the name suffix: avx512, avx512y,
 * avx2), KB (output channels per register tile) and one ISA's vector vocabulary
 * (cpu/fast/vec.h: V, VL, TARGET, VLOAD, VFMA, VSTORE_FIRST, VKEEP_GT0, ...).
 *
 * Both kernels see an image through a zero-padded, phase-split copy (conv2d_direct.c):
 * an output pixel vector (row p, columns q0..q0+VL-1) meets tap t = (c, r, s) at the VL
 * consecutive floats starting at  x + voff[v] + toff[t],  whatever the stride. (The weight
 * gradient's "from dout" form shifts along the padded dout instead, its in-place operand the
 * input: conv2d_direct.c, wgrad_init_from_dout.) */

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define NV FWD_NV   /* pixel vectors per forward tile (3): KB*NV accumulators stay in registers */

/* Forward tile: nv (<= NV) pixel vectors x KB output channels.
 *   acc[kb][i] = sum_{t < T} wt[t*KB + kb] * x[voff[i] + toff[t] + lane]
 * then out row kb (dst[i] + kb*plane) gets the first n[i] lanes (k0 + kb < kvalid only);
 * with add != NULL the stored value is acc + add[same offset] (a fused residual add).
 * The epilogue, a compile-time constant ep in the specialized copies:
 *   EP_STORE     the store above
 *   EP_BN_BWD    a backward-input whose output feeds relu(batchnorm) backward: it stores
 *                g = acc * [relu_out > 0] (relu_out read from bn->mask, or recomputed as
 *                bn_in scale + shift when bn->mask is NULL) and adds, per channel, g and
 *                g * (bn_in - mean) into the lane sums bn->sv (see ConvBnBwd)
 *   EP_STATS     the store, and per channel the sums of (y - x0) and (y - x0)^2 of the stored
 *                values y into st->sv, x0 the image's first value of the channel, taken by
 *                the image's first tile (first = 1; its pixel vector 0 starts at pixel 0)
 *                (see ConvStats)
 * fwd_store is that epilogue for sums acc of KB channels x nv pixel vectors (also used by
 * conv2d_direct.c's channel-vector kernel), fwd_tile the sums and then fwd_store. */
TARGET static inline __attribute__((always_inline)) void
CAT(fwd_store, SFX)(V acc[KB][NV], const int nv, float *out, const float *add, const int *ooff, const int *n,
                    size_t plane, int kvalid, const int ep, const ConvBnBwd *bn, const ConvStats *st, int first,
                    int k0)
{
    #pragma GCC unroll 8
    for (int kb = 0; kb < KB; kb++) {
        if (kb >= kvalid) break;
        if (ep == EP_BN_BWD) {
            size_t cb = (size_t)(k0 + kb) * plane;
            V mean = VBCAST(bn->mean + k0 + kb), s1 = VLOAD(bn->sv + (k0 + kb) * 2 * VL);
            V s2 = VLOAD(bn->sv + ((k0 + kb) * 2 + 1) * VL);
            V sc = VZERO(), sh = VZERO();
            if (!bn->mask) { sc = VBCAST(bn->scale + k0 + kb); sh = VBCAST(bn->shift + k0 + kb); }
            #pragma GCC unroll 4
            for (int i = 0; i < nv; i++) {
                size_t at = (size_t)kb * plane + ooff[i];
                int full = n[i] == VL;
                V xv = full ? VLOAD(bn->x + cb + ooff[i]) : VLOAD_FIRST(bn->x + cb + ooff[i], n[i]);
                /* relu_out > 0 iff bn_in scale + shift > 0 (the forward's product and sum, two
                 * roundings there too: the build's -ffp-contract=off);
                 * lanes past n[i] are 0, so that g is 0 there */
                V m = !bn->mask ? (full ? VADD(VMUL(xv, sc), sh) : VKEEP_FIRST(VADD(VMUL(xv, sc), sh), n[i]))
                    : full ? VLOAD(bn->mask + cb + ooff[i]) : VLOAD_FIRST(bn->mask + cb + ooff[i], n[i]);
                V g = VKEEP_GT0(m, acc[kb][i]);
                s1 = VADD(s1, g);
                s2 = VFMA(g, VSUB(xv, mean), s2);
                if (full) VSTORE(out + at, g);
                else VSTORE_FIRST(out + at, g, n[i]);
            }
            VSTORE(bn->sv + (k0 + kb) * 2 * VL, s1);
            VSTORE(bn->sv + ((k0 + kb) * 2 + 1) * VL, s2);
            continue;
        }
        V r[NV];
        #pragma GCC unroll 4
        for (int i = 0; i < nv; i++) {
            size_t at = (size_t)kb * plane + ooff[i];
            int full = n[i] == VL;
            r[i] = !add ? acc[kb][i] : VADD(acc[kb][i], full ? VLOAD(add + at) : VLOAD_FIRST(add + at, n[i]));
            if (full) VSTORE(out + at, r[i]);
            else VSTORE_FIRST(out + at, r[i], n[i]);
        }
        if (ep == EP_STATS) {
            int k = k0 + kb;
            if (first) st->x0[k] = out[(size_t)kb * plane + ooff[0]];   /* pixel 0, just stored */
            V x0 = VBCAST(st->x0 + k), s1 = VLOAD(st->sv + k * 2 * VL), s2 = VLOAD(st->sv + (k * 2 + 1) * VL);
            #pragma GCC unroll 4
            for (int i = 0; i < nv; i++) {
                V d = VSUB(r[i], x0);
                if (n[i] != VL) d = VKEEP_FIRST(d, n[i]);
                s1 = VADD(s1, d);
                s2 = VFMA(d, d, s2);
            }
            VSTORE(st->sv + k * 2 * VL, s1);
            VSTORE(st->sv + (k * 2 + 1) * VL, s2);
        }
    }
}

TARGET static inline __attribute__((always_inline)) void
CAT(fwd_tile, SFX)(const float *x, const int *toff, int T, const float *wt, const int *voff,
                   const int nv, float *out, const float *add, const int *ooff, const int *n,
                   size_t plane, int kvalid, const int ep, const ConvBnBwd *bn, const ConvStats *st,
                   int first, int k0)
{
    V acc[KB][NV];
    const float *xb[NV];
    #pragma GCC unroll 8
    for (int kb = 0; kb < KB; kb++)
        #pragma GCC unroll 4
        for (int i = 0; i < nv; i++) acc[kb][i] = VZERO();
    #pragma GCC unroll 4
    for (int i = 0; i < nv; i++) xb[i] = x + voff[i];
    for (int t = 0; t < T; t++) {
        int o = toff[t];
        const float *w = wt + (size_t)t * KB;
        V xv[NV];
        #pragma GCC unroll 4
        for (int i = 0; i < nv; i++) xv[i] = VLOAD(xb[i] + o);
        #pragma GCC unroll 8
        for (int kb = 0; kb < KB; kb++) {
            V b = VBCAST(w + kb);
            #pragma GCC unroll 4
            for (int i = 0; i < nv; i++) acc[kb][i] = VFMA(b, xv[i], acc[kb][i]);
        }
    }
    CAT(fwd_store, SFX)(acc, nv, out, add, ooff, n, plane, kvalid, ep, bn, st, first, k0);
}

/* Forward over one padded image: every (pixel-vector group, channel block) tile.
 *   x: padded image; toff[T] tap offsets; wt: [kblocks][T][KB] repacked weights;
 *   voff/ooff/n: per pixel vector (nvec of them) input offset, output offset, valid lanes;
 *   out: this image's output [K][plane]; add: same shape or NULL;
 *   bn: NULL, or the fused batchnorm-backward epilogue (then add is NULL);
 *   st: NULL, or the statistics epilogue (bn NULL). */
TARGET static void CAT(fwd_image, SFX)(const float *x, const int *toff, int T, const float *wt,
                                       int K, const int *voff, const int *ooff, const int *n,
                                       int nvec, float *out, const float *add, size_t plane,
                                       const ConvBnBwd *bn, const ConvStats *st)
{
#define TILE(NVV, E) CAT(fwd_tile, SFX)(x, toff, T, w, voff + v, NVV, o, a, ooff + v, n + v, plane, K - k0, E, bn, st, \
                                        v == 0, k0)
#define TILES(E) do { if (left >= 3) TILE(3, E); else if (left == 2) TILE(2, E); else TILE(1, E); } while (0)
    for (int v = 0; v < nvec; v += NV) {
        int left = nvec - v;
        for (int k0 = 0; k0 < K; k0 += KB) {
            const float *w = wt + (size_t)(k0 / KB) * T * KB;
            float *o = out + (size_t)k0 * plane;
            const float *a = add ? add + (size_t)k0 * plane : NULL;
            if (bn) TILES(EP_BN_BWD);
            else if (st) TILES(EP_STATS);
            else TILES(EP_STORE);
        }
        prefetch_slice();   /* a slice of the next image (conv2d_direct.c) */
    }
#undef TILES
#undef TILE
}

/* Weight-gradient tile: KB channels of the in-place operand d (output channels; input channels
 * in the "from dout" form) x ns (<= 3) consecutive taps s of one (channel, r) of the padded
 * image x, summed over every pixel vector of the image:
 *   vacc[kb][j] += sum_v  d[kb*dplane + doff[v] + lane] * x[voff[v] + soff[j] + lane]
 * vacc holds VL lanes per entry (reduced across lanes once per chunk of images). */
TARGET static inline __attribute__((always_inline)) void
CAT(bwdw_tile, SFX)(const float *x, const int *soff, const int ns, const float *d, size_t dplane,
                    const int *voff, const int *doff, int nvec, float *vacc)
{
    V acc[KB][3];
    #pragma GCC unroll 8
    for (int kb = 0; kb < KB; kb++)
        #pragma GCC unroll 3
        for (int j = 0; j < ns; j++) acc[kb][j] = VLOAD(vacc + (kb * 3 + j) * VL);
    for (int v = 0; v < nvec; v++) {
        const float *xv = x + voff[v];
        const float *dv = d + doff[v];
        V xs[3];
        #pragma GCC unroll 3
        for (int j = 0; j < ns; j++) xs[j] = VLOAD(xv + soff[j]);
        #pragma GCC unroll 8
        for (int kb = 0; kb < KB; kb++) {
            V dk = VLOAD(dv + (size_t)kb * dplane);
            __asm__("" : "+v"(dk));   /* one load into a register, not one memory operand per FMA */
            #pragma GCC unroll 3
            for (int j = 0; j < ns; j++) acc[kb][j] = VFMA(dk, xs[j], acc[kb][j]);
        }
    }
    #pragma GCC unroll 8
    for (int kb = 0; kb < KB; kb++)
        #pragma GCC unroll 3
        for (int j = 0; j < ns; j++) VSTORE(vacc + (kb * 3 + j) * VL, acc[kb][j]);
}

TARGET static void CAT(bwdw_group, SFX)(const float *x, const int *soff, int ns, const float *d,
                                        size_t dplane, const int *voff, const int *doff, int nvec,
                                        float *vacc)
{
    if (ns == 3) CAT(bwdw_tile, SFX)(x, soff, 3, d, dplane, voff, doff, nvec, vacc);
    else if (ns == 2) CAT(bwdw_tile, SFX)(x, soff, 2, d, dplane, voff, doff, nvec, vacc);
    else CAT(bwdw_tile, SFX)(x, soff, 1, d, dplane, voff, doff, nvec, vacc);
}

#undef NV
#undef CAT
#undef CAT_
