/* One ISA's Winograd F(2x2, 3x3) forward (included by cpu/fast/winograd.c with SFX, TARGET,
 * VL, KB, V and the vector macros defined). For one image and one row of tiles i (output rows
 * 2i, 2i+1), VL tiles at a time (tiles j0 .. j0+VL-1, output columns 2 j0 .. 2 j0 + 2 VL - 1):
 *   1. V = B^T d B for every input channel: the 16 entries of d for VL tiles are 16 vector
 *      loads from the phase-split padded image (ph[c][f][row][j]: padded column 2 j + f), and
 *      the transform is adds and subtracts across them;              Vb [16][C][VL]
 *   2. M = U . V summed over c, as 16 products of [K x C] by [C x VL]: KB output channels of
 *      accumulators per vector of tiles;                              Mb [16][KB][VL]
 *   3. Y = A^T M A, two vectors per output row, interleaved into the row's 2 VL columns. */
#define WCAT_(a, b) a##_##b
#define WCAT(a, b) WCAT_(a, b)

TARGET static void WCAT(wino2_row, SFX)(float *out, const float *ph, const float *U, float *Vb, float *Mb,
                                        int C, int K, int i, int P, int Q, int rows, int TWV)
{
    const int TW = Q / 2;
    for (int j0 = 0; j0 < TW; j0 += VL) {
        /* 1. input transform, all channels */
        for (int c = 0; c < C; c++) {
            V d[4][4], t[4][4];
            for (int r = 0; r < 4; r++)
                for (int s = 0; s < 4; s++)
                    d[r][s] = VLOAD(ph + (((size_t)c * 2 + (s & 1)) * rows + 2 * i + r) * TWV + j0 + (s >> 1));
            for (int s = 0; s < 4; s++) {   /* t = B^T d: rows d0 - d2, d1 + d2, d2 - d1, d1 - d3 */
                t[0][s] = VSUB(d[0][s], d[2][s]);
                t[1][s] = VADD(d[1][s], d[2][s]);
                t[2][s] = VSUB(d[2][s], d[1][s]);
                t[3][s] = VSUB(d[1][s], d[3][s]);
            }
            for (int u = 0; u < 4; u++) {   /* V = t B: the same on the columns */
                float *v = Vb + ((size_t)(u * 4) * C + c) * VL;
                VSTORE(v, VSUB(t[u][0], t[u][2]));
                VSTORE(v + (size_t)C * VL, VADD(t[u][1], t[u][2]));
                VSTORE(v + (size_t)2 * C * VL, VSUB(t[u][2], t[u][1]));
                VSTORE(v + (size_t)3 * C * VL, VSUB(t[u][1], t[u][3]));
            }
        }
        for (int k0 = 0; k0 < K; k0 += KB) {   /* K is a multiple of KB (winograd_fast_supported) */
            /* 2. the 16 products, KB output channels at a time */
            for (int x = 0; x < 16; x++) {
                V acc[KB];
                for (int b = 0; b < KB; b++) acc[b] = VZERO();
                const float *vx = Vb + (size_t)x * C * VL, *ux = U + ((size_t)x * K + k0) * C;
                for (int c = 0; c < C; c++) {
                    V v = VLOAD(vx + (size_t)c * VL);
                    for (int b = 0; b < KB; b++)
                        acc[b] = VFMA(VBCAST(ux + (size_t)b * C + c), v, acc[b]);
                }
                for (int b = 0; b < KB; b++) VSTORE(Mb + ((size_t)x * KB + b) * VL, acc[b]);
            }
            /* 3. output transform: s = A^T m (rows m0 + m1 + m2, m1 - m2 - m3), y = s A */
            for (int b = 0; b < KB; b++) {
                V m[16], s[2][4];
                for (int x = 0; x < 16; x++) m[x] = VLOAD(Mb + ((size_t)x * KB + b) * VL);
                for (int v = 0; v < 4; v++) {
                    s[0][v] = VADD(VADD(m[v], m[4 + v]), m[8 + v]);
                    s[1][v] = VSUB(VSUB(m[4 + v], m[8 + v]), m[12 + v]);
                }
                int cols = 2 * (TW - j0 < VL ? TW - j0 : VL);   /* output columns of this vector */
                for (int a = 0; a < 2; a++) {
                    V y0 = VADD(VADD(s[a][0], s[a][1]), s[a][2]), y1 = VSUB(VSUB(s[a][1], s[a][2]), s[a][3]);
                    float *o = out + ((size_t)(k0 + b) * P + 2 * i + a) * Q + 2 * j0;
                    V lo, hi;
                    VINTERLEAVE(lo, hi, y0, y1);
                    if (cols >= 2 * VL) { VSTORE(o, lo); VSTORE(o + VL, hi); }
                    else if (cols > VL) { VSTORE(o, lo); VSTORE_FIRST(o + VL, hi, cols - VL); }
                    else VSTORE_FIRST(o, lo, cols);
                }
            }
        }
    }
}
#undef WCAT_
#undef WCAT
