/* One ISA's Winograd F(2x2, 3x3) forward for one image (included by cpu/fast/winograd.c with
 * SFX, KB, NV, VDEINTERLEAVE, VINTERLEAVE and one ISA's cpu/fast/vec.h defined). Tiles are numbered t = i TW + j
 * (tile row i, column j; TW = Q / 2 tiles a row) and taken a chunk of tile rows at a time:
 *   0. a channel's rows of the chunk, split by column parity into ph[f][r][j] =
 *      in[c][h][2 j + f - 1] (padded column 2 j + f), zero outside the image: a few KB that
 *      stay in L1 (winograd_parity_split);
 *      With batchnorm+ReLU (the fused slot) applied to each value as it is split;
 *   1. V = B^T d B for the channel and every tile of the chunk: the 4x4 inputs of VL
 *      neighbouring tiles (which start two columns apart) are 16 vector loads from ph;
 *      then the next channel;                                                Vb [16][C][Tc]
 *   2. M = U . V summed over c: for each of the 16 entries a [K x C] by [C x Tc] product,
 *      KB output channels by NV vectors of tiles of accumulators;             Mb [16][K][Tc]
 *   3. Y = A^T M A, interleaved into the two output rows of each tile row (plus the residual,
 *      in the fused slot). Its vector loads of a chunk's last tile row may run up to a vector
 *      past the chunk's tiles (masked out of the stores; run() allocates a vector of slack). */
#define WCAT_(a, b) a##_##b
#define WCAT(a, b) WCAT_(a, b)

/* 0: rows [pr0, pr0 + nrows) of channel xc padded by one row above and below, split by column
 *    parity: ph[f][r][j] = xc[pr0 + r - 1][2 j + f - 1] (plane f at f NR rows: NR = 2 CR + 2,
 *    the rows of a whole chunk, whatever nrows this chunk has), zero outside the image. ph's
 *    column 0 of f = 0 and its columns past the image are never written: they keep the zeros
 *    of the first memset, since every chunk puts each plane at the same place. With bn (the fused slot): each value is first a = max(0, x sc + sh) (the
 *    padding stays 0: it pads a, not x), a multiply then an add, as conv2d_direct.c's
 *    pad_image_bn_relu, and a is also stored to ac when it is not NULL. (The same bits need
 *    the multiply and the add kept apart: GCC may fuse these intrinsics like any * and +, and
 *    does not here only because -std=c11 turns contraction off, as it does for the C side.) */
TARGET static void WCAT(winograd_parity_split, SFX)(float *ph, const float *xc, int H, int W, int TWV, int pr0,
                                                    int nrows, int NR, int bn, float sc, float sh, float *ac)
{
    V vsc = VBCAST(&sc), vsh = VBCAST(&sh), zero = VZERO();
    for (int r = 0; r < nrows; r++) {
        int h = pr0 + r - 1;
        float *even = ph + (size_t)r * TWV, *odd = ph + ((size_t)NR + r) * TWV;   /* in[2 j - 1]; in[2 j] */
        if (h < 0 || h >= H) {
            memset(even, 0, sizeof(float) * TWV);
            memset(odd, 0, sizeof(float) * TWV);
            continue;
        }
        const float *src = xc + (size_t)h * W;
        for (int w = 0; w < W; w += 2 * VL) {
            int left = W - w;
            V a = left >= VL ? VLOAD(src + w) : VLOAD_FIRST(src + w, left);
            V b = left >= 2 * VL ? VLOAD(src + w + VL) : left > VL ? VLOAD_FIRST(src + w + VL, left - VL) : VZERO();
            if (bn) {   /* (lanes past the image: back to 0 below) */
                a = VMAX(VADD(VMUL(a, vsc), vsh), zero);
                b = VMAX(VADD(VMUL(b, vsc), vsh), zero);
                if (left < VL) a = VKEEP_FIRST(a, left);
                if (left < 2 * VL) b = left > VL ? VKEEP_FIRST(b, left - VL) : zero;
                if (ac) {
                    float *ar = ac + (size_t)h * W + w;
                    if (left >= VL) VSTORE(ar, a); else VSTORE_FIRST(ar, a, left);
                    if (left >= 2 * VL) VSTORE(ar + VL, b); else if (left > VL) VSTORE_FIRST(ar + VL, b, left - VL);
                }
            }
            V ev, od;
            VDEINTERLEAVE(ev, od, a, b);   /* ev = in[w], in[w + 2], ...; od = in[w + 1], ... */
            VSTORE(odd + w / 2, ev);
            VSTORE(even + w / 2 + 1, od);
        }
    }
}

/* 2, for NV vectors of tiles from t: KB output channels from k */
TARGET static inline __attribute__((always_inline)) void WCAT(winograd_products, SFX)(float *Mb, const float *Vb,
        const float *U, int C, int K, int Tcv, int k, int t, int nv)
{
    for (int x = 0; x < 16; x++) {
        V acc[KB][NV];
        _Pragma("GCC unroll 16")
        for (int b = 0; b < KB; b++)
            _Pragma("GCC unroll 16")
            for (int v = 0; v < NV; v++) acc[b][v] = VZERO();
        const float *vx = Vb + (size_t)x * C * Tcv + t, *ux = U + ((size_t)x * K + k) * C;
        for (int c = 0; c < C; c++) {
            V d[NV];
            _Pragma("GCC unroll 16")
            for (int v = 0; v < NV; v++)
                if (v < nv) d[v] = VLOAD(vx + (size_t)c * Tcv + v * VL);
            _Pragma("GCC unroll 16")
            for (int b = 0; b < KB; b++) {
                V u = VBCAST(ux + (size_t)b * C + c);
                _Pragma("GCC unroll 16")
                for (int v = 0; v < NV; v++)
                    if (v < nv) acc[b][v] = VFMA(u, d[v], acc[b][v]);
            }
        }
        _Pragma("GCC unroll 16")
        for (int b = 0; b < KB; b++)
            _Pragma("GCC unroll 16")
            for (int v = 0; v < NV; v++)
                if (v < nv) VSTORE(Mb + ((size_t)x * K + k + b) * Tcv + t + v * VL, acc[b][v]);
    }
}

TARGET static void WCAT(winograd_image, SFX)(float *out, const float *x, const float *U, float *ph, float *Vb,
                                             float *Mb, int C, int K, int P, int Q, int TWV, int CR, int Tcv,
                                             const float *scale, const float *shift, float *act, const float *add)
{
    const int TW = Q / 2, TH = P / 2;
    for (int i0 = 0; i0 < TH; i0 += CR) {
        int i1 = i0 + CR < TH ? i0 + CR : TH, nrows = 2 * (i1 - i0) + 2, NR = 2 * CR + 2;
        /* 0 and 1: each channel's rows of the chunk split, then transformed (ph stays in L1) */
        for (int c = 0; c < C; c++) {
            WCAT(winograd_parity_split, SFX)(ph, x + (size_t)c * P * Q, P, Q, TWV, 2 * i0, nrows, NR, scale != NULL,
                                             scale ? scale[c] : 0, shift ? shift[c] : 0, act ? act + (size_t)c * P * Q : NULL);
            for (int i = i0; i < i1; i++)
                for (int j0 = 0; j0 < TW; j0 += VL) {
                    int lanes = TW - j0 < VL ? TW - j0 : VL;
                    V d[4][4], t[4][4];
                    _Pragma("GCC unroll 16")
                    for (int r = 0; r < 4; r++)
                        _Pragma("GCC unroll 16")
                        for (int s = 0; s < 4; s++)
                            d[r][s] = VLOAD(ph + ((size_t)(s & 1) * NR + 2 * (i - i0) + r) * TWV + j0 + (s >> 1));
                    _Pragma("GCC unroll 16")
                    for (int s = 0; s < 4; s++) {   /* t = B^T d: rows d0 - d2, d1 + d2, d2 - d1, d1 - d3 */
                        t[0][s] = VSUB(d[0][s], d[2][s]);
                        t[1][s] = VADD(d[1][s], d[2][s]);
                        t[2][s] = VSUB(d[2][s], d[1][s]);
                        t[3][s] = VSUB(d[1][s], d[3][s]);
                    }
                    size_t at = (size_t)c * Tcv + (size_t)(i - i0) * TW + j0, xs = (size_t)C * Tcv;
                    _Pragma("GCC unroll 16")
                    for (int u = 0; u < 4; u++) {   /* V = t B: the same on the columns */
                        float *v = Vb + 4 * u * xs + at;
                        V v0 = VSUB(t[u][0], t[u][2]), v1 = VADD(t[u][1], t[u][2]);
                        V v2 = VSUB(t[u][2], t[u][1]), v3 = VSUB(t[u][1], t[u][3]);
                        if (lanes == VL) {
                            VSTORE(v, v0); VSTORE(v + xs, v1); VSTORE(v + 2 * xs, v2); VSTORE(v + 3 * xs, v3);
                        } else {
                            VSTORE_FIRST(v, v0, lanes); VSTORE_FIRST(v + xs, v1, lanes);
                            VSTORE_FIRST(v + 2 * xs, v2, lanes); VSTORE_FIRST(v + 3 * xs, v3, lanes);
                        }
                    }
                }
        }
        /* 2. the products, over the chunk's vectors of tiles (lanes past its last tile are
         *    computed from zeros and never read) */
        int nvec = ((i1 - i0) * TW + VL - 1) / VL;
        for (int k = 0; k < K; k += KB) {
            int v = 0;
            for (; v + NV <= nvec; v += NV) WCAT(winograd_products, SFX)(Mb, Vb, U, C, K, Tcv, k, v * VL, NV);
            if (v < nvec) WCAT(winograd_products, SFX)(Mb, Vb, U, C, K, Tcv, k, v * VL, nvec - v);
        }
        /* 3. output transform: s = A^T m (rows m0 + m1 + m2, m1 - m2 - m3), y = s A */
        for (int k = 0; k < K; k++)
            for (int i = i0; i < i1; i++)
                for (int j0 = 0; j0 < TW; j0 += VL) {
                    V m[16], s[2][4];
                    const float *mk = Mb + (size_t)k * Tcv + (size_t)(i - i0) * TW + j0;
                    _Pragma("GCC unroll 16")
                    for (int x = 0; x < 16; x++) m[x] = VLOAD(mk + (size_t)x * K * Tcv);
                    _Pragma("GCC unroll 16")
                    for (int v = 0; v < 4; v++) {
                        s[0][v] = VADD(VADD(m[v], m[4 + v]), m[8 + v]);
                        s[1][v] = VSUB(VSUB(m[4 + v], m[8 + v]), m[12 + v]);
                    }
                    int cols = 2 * (TW - j0 < VL ? TW - j0 : VL);   /* output columns of this vector */
                    _Pragma("GCC unroll 16")
                    for (int a = 0; a < 2; a++) {
                        V y0 = VADD(VADD(s[a][0], s[a][1]), s[a][2]), y1 = VSUB(VSUB(s[a][1], s[a][2]), s[a][3]);
                        size_t at = ((size_t)k * P + 2 * i + a) * Q + 2 * j0;
                        float *o = out + at;
                        V lo, hi;
                        VINTERLEAVE(lo, hi, y0, y1);
                        if (add) {   /* the residual: out = conv + add */
                            const float *ad = add + at;
                            if (cols >= 2 * VL) { lo = VADD(lo, VLOAD(ad)); hi = VADD(hi, VLOAD(ad + VL)); }
                            else if (cols > VL) { lo = VADD(lo, VLOAD(ad)); hi = VADD(hi, VLOAD_FIRST(ad + VL, cols - VL)); }
                            else lo = VADD(lo, VLOAD_FIRST(ad, cols));
                        }
                        if (cols >= 2 * VL) { VSTORE(o, lo); VSTORE(o + VL, hi); }
                        else if (cols > VL) { VSTORE(o, lo); VSTORE_FIRST(o + VL, hi, cols - VL); }
                        else VSTORE_FIRST(o, lo, cols);
                    }
                }
    }
}
#undef WCAT_
#undef WCAT
