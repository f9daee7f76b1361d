// Convolution as implicit GEMM: the GEMM tiles gather their operands straight from the
// NCHW tensors, so no im2col/col2im buffer makes a round trip through DRAM (gpu/conv2d.cu,
// the readable version, writes and reads one of N*C*R*S*P*Q floats per pass).
//
//   forward          out[k, (n,p,q)]  = sum_{(c,r,s)} w[k,c,r,s] in[n, c, p st - pad + r, q st - pad + s]
//                    (+ add[same index]: a residual added in the store)
//                    M = K, columns = N*P*Q, reduction = C*R*S
//   backward_input   din[c, (n,h,w)]  = sum_{(k,r,s)} w[k,c,r,s] dout[n, k, (h + pad - r)/st, (w + pad - s)/st]
//                    (terms where the division is not exact or out of range are 0)
//                    M = C, columns = N*H*W, reduction = K*R*S
//   backward_weight  dW_z[k, (c,r,s)] = sum_{(n,p,q) in pixel group z} dout[n,k,p,q] in[n, c, ...]
//                    M = K, columns = C*R*S, reduction = the group's output pixels; the groups'
//                    partial dW added in group order by sum_groups_kernel, one launch for every
//                    weight gradient of the step (conv2d_igemm_weight_sums, before SGD)
//   backward (fused) backward_input with batchnorm's sums, then backward_weight over the same
//                    pixels, in one kernel (conv_bwd_fused_kernel, where fused_plan takes it)
// forward and backward_weight can read their input through batchnorm+ReLU (BnRelu, gpu.h):
// each gathered in-image value v becomes max(0, v scale_c + shift_c), so the activation
// a = relu(batchnorm(x)) of a pre-activation block is never stored (padding stays 0: it is
// padding of a, not of x).
// backward_input and backward_weight can read dout unapplied (BnGrad, gpu.h): each value they
// gather computed from batchnorm's backward of the gradient after it, so that a block's
// d(conv1's output) is never stored either (ops_gpu.cu: the two-layer backward).
// Tiles: BM x BN outputs per block, each thread TM x TN = 4 x 4 of them, BK = 16 reduction
// steps through shared memory. BM (16, 32 or 64) is the smallest that covers the 16/24/32
// channels of the practical's layers; BN (256 down to 16, blockDim = BM*BN/16) the largest
// that still gives about 4 blocks per SM of a 132-SM card. Every output is one thread's sum
// in a fixed order: deterministic, no atomics.
#include <vector>
#include "gpu/cuda_compat.h"
#include "gpu/gpu.h"
#include "gpu/mma.cuh"
#include "gpu/reduce.cuh"

#if defined(CONVNET_EMU) || (defined(CONVNET_CUDA_ARCH) && CONVNET_CUDA_ARCH >= 80)
#define CONVNET_CONV_TC 1
#else
#define CONVNET_CONV_TC 0
#endif

namespace gpu {

struct ConvGeo {
    int N, C, H, W, K, R, S, stride, pad, P, Q;
};

constexpr int IG_BK = 16, IG_TM = 4, IG_TN = 4;
// shared tiles' row padding: the tensor-core path's fragment reads (rows t and t+4, columns g)
// then fall in distinct banks
constexpr int IG_PAD = 8;

// dout[e] of channel k, or (d.g set) computed from batchnorm's unapplied backward (BnGrad,
// gpu.h) with the operations of batchnorm_split's apply kernel (reduce.cuh: bn_grad_value)
__device__ __forceinline__ float dout_at(const float *dout, const BnGrad &d, long e, int k, int K)
{
    if (!d.g) return dout[e];
    BnAffine a = bn_affine(d.gamma[k], d.beta[k], d.mean[k], d.invstd[k]);
    float x = d.x[e];
    float gv = bn_apply(x, a) > 0.f ? d.g[e] : 0.f;
    float xhat = bn_xhat(x, d.mean[k], d.invstd[k]);
    float v = d.kk ? bn_grad_value(d.kk, k, K, d.M, gv, xhat)
                   : bn_grad_value3(bn_grad_scale(d.gamma, d.invstd, k, d.M), d.dbeta[k], d.dgamma[k], d.M, gv, xhat);
    return d.add ? v + d.add[e] : v;   // batchnorm_split's apply: v + add
}

// op(A)[i, kk] and op(B)[kk, j] of each mode (0 when a gathered input is out of range)
template <int MODE> __device__ __forceinline__ float load_a(const ConvGeo &g, const float *a, const BnGrad &dg, int i,
                                                          long kk)
{
    if (MODE == 0) return a[(long)i * g.C * g.R * g.S + kk];                    // w[k][crs]
    if (MODE == 1) {                                                              // w[k][c][r][s], i = c
        int RS = g.R * g.S, k = (int)(kk / RS), rs = (int)(kk % RS);
        return a[((long)k * g.C + i) * RS + rs];
    }
    long PQ = (long)g.P * g.Q, n = kk / PQ, pq = kk % PQ;                        // dout[n][k][p][q], i = k
    return dout_at(a, dg, (n * g.K + i) * PQ + pq, i, g.K);
}

// the input pixel a (c,r,s) tap reads for output pixel (n,p,q); 0 outside the image.
// With bn.gamma: relu(v scale + shift), scale = gamma invstd, shift = beta - mean scale, the
// operations of batchnorm_split's finalize and apply (the same bits as a stored activation).
__device__ __forceinline__ float gather_in(const ConvGeo &g, const float *in, const BnRelu &bn, long n, int p,
                                           int q, int crs)
{
    int RS = g.R * g.S, c = crs / RS, r = crs % RS / g.S, s = crs % g.S;
    int h = p * g.stride - g.pad + r, w = q * g.stride - g.pad + s;
    if (h < 0 || h >= g.H || w < 0 || w >= g.W) return 0.f;
    float v = in[((n * g.C + c) * g.H + h) * g.W + w];
    if (bn.gamma) {
        v = bn_apply(v, bn_affine(bn.gamma[c], bn.beta[c], bn.mean[c], bn.invstd[c]));
        v = v > 0.f ? v : 0.f;
    }
    return v;
}

template <int MODE> __device__ __forceinline__ float load_b(const ConvGeo &g, const float *b, const BnRelu &bn,
                                                          const BnGrad &dg, long kk, long j)
{
    if (MODE == 0) {   // kk = (c,r,s), j = (n,p,q)
        long PQ = (long)g.P * g.Q, n = j / PQ;
        int pq = (int)(j % PQ);
        return gather_in(g, b, bn, n, pq / g.Q, pq % g.Q, (int)kk);
    }
    if (MODE == 1) {   // kk = (k,r,s), j = (n,h,w): dout at ((h + pad - r)/st, (w + pad - s)/st)
        long HW = (long)g.H * g.W, n = j / HW;
        int hw = (int)(j % HW), h = hw / g.W, w = hw % g.W, RS = g.R * g.S;
        int k = (int)(kk / RS), r = (int)(kk % RS) / g.S, s = (int)(kk % g.S);
        int hh = h + g.pad - r, ww = w + g.pad - s;
        if (hh < 0 || ww < 0 || hh % g.stride || ww % g.stride) return 0.f;
        int p = hh / g.stride, q = ww / g.stride;
        if (p >= g.P || q >= g.Q) return 0.f;
        return dout_at(b, dg, ((n * g.K + k) * g.P + p) * g.Q + q, k, g.K);
    }
    long PQ = (long)g.P * g.Q, n = kk / PQ;   // MODE 2: kk = (n,p,q), j = (c,r,s)
    int pq = (int)(kk % PQ);
    return gather_in(g, b, bn, n, pq / g.Q, pq % g.Q, (int)j);
}

template <int MODE> __device__ __forceinline__ long out_index(const ConvGeo &g, int i, long j)
{
    if (MODE == 0) {
        long PQ = (long)g.P * g.Q;
        return ((j / PQ) * g.K + i) * PQ + j % PQ;
    }
    if (MODE == 1) {
        long HW = (long)g.H * g.W;
        return ((j / HW) * g.C + i) * HW + j % HW;
    }
    return (long)i * g.C * g.R * g.S + j;
}

// The epilogues' reductions (batchnorm's statistics in the forward's store, its sums in
// backward-input's) are finished in two levels so that no block reads every column tile's
// partial sums alone: the last block of each group of GROUP_TILES column tiles combines the
// group's partials (in tile order), and the last group to finish combines the groups (in
// group order) and writes the results. "Last" is found with tickets: integer counters taken
// after a __threadfence, zero at load and set back to 0 by the block that takes the last one
// (launches with an epilogue never overlap: they are all on the main stream).
constexpr int GROUP_TILES = 32, MAX_GROUPS = 4096;
__device__ unsigned igemm_ticket, igemm_group_ticket[MAX_GROUPS];

// Accumulators of the two reductions: W floats per channel and item.
struct SumAcc {   // sums (batchnorm's backward: sum g, sum g xhat)
    static constexpr int W = 2;
    float a = 0.f, b = 0.f;
    __device__ void add(const float *p, bool global)
    {
        a += global ? __ldcg(p) : p[0];
        b += global ? __ldcg(p + 1) : p[1];
    }
    __device__ void store(float *p) const { p[0] = a; p[1] = b; }
};
struct ChanAcc {   // count, mean, M2 (batchnorm's statistics), combined with Chan's formula
    static constexpr int W = 3;
    float n = 0.f, mean = 0.f, m2 = 0.f;
    __device__ void add(const float *p, bool global)
    {
        float nb = global ? __ldcg(p) : p[0];
        if (nb > 0.f) chan_combine(n, mean, m2, nb, global ? __ldcg(p + 1) : p[1], global ? __ldcg(p + 2) : p[2]);
    }
    __device__ void store(float *p) const { p[0] = n; p[1] = mean; p[2] = m2; }
};

// For every channel c < M: the items t0 <= t < t1 of src ([M][items][W], written by other
// blocks of this launch) combined in order, handed to out(c, acc). All threads of the block
// call it; L = blockDim/M lanes per channel each take every L-th item, then the lanes are
// combined in lane order. lanes: W * blockDim floats of shared memory.
template <class Acc, class Out>
__device__ void combine_items(const float *src, long items, long t0, long t1, int M, float *lanes, Out out)
{
    int threads = blockDim.x, tid = threadIdx.x;
    int L = threads / M > 0 ? threads / M : 1, per_round = threads / L;
    for (int c0 = 0; c0 < M; c0 += per_round) {
        int c = c0 + tid / L, l = tid % L;
        bool on = tid < per_round * L && c < M;
        Acc a;
        if (on)
            for (long t = t0 + l; t < t1; t += L) a.add(src + Acc::W * ((long)c * items + t), true);
        a.store(lanes + Acc::W * tid);
        __syncthreads();
        if (on && l == 0) {
            Acc s;
            for (int k = 0; k < L; k++) s.add(lanes + Acc::W * (tid + k), false);
            out(c, s);
        }
        __syncthreads();
    }
}

// Which column tile an epilogue finishes: tile of tiles, each split in rows row tiles (the
// plain kernel: blockIdx.x of gridDim.x, gridDim.y; the fused backward: one block takes several)
struct TileId {
    long tile, tiles;
    unsigned rows;
};

// After each block wrote its tile's partials part[c][t.tile] (W floats each; part has room
// for [M][groups] more after its [M][tiles]): the two levels; finish(c, acc) runs in the
// last group's last block for every channel.
template <class Acc, class Out>
__device__ void finish_tiles(float *part, int M, float *lanes, const TileId &t, Out finish)
{
    long groups = (t.tiles + GROUP_TILES - 1) / GROUP_TILES, g = t.tile / GROUP_TILES;
    long t0 = g * GROUP_TILES, t1 = t0 + GROUP_TILES < t.tiles ? t0 + GROUP_TILES : t.tiles;
    float *gpart = part + Acc::W * (long)M * t.tiles;
    if (!last_of(&igemm_group_ticket[g], (unsigned)((t1 - t0) * t.rows))) return;
    combine_items<Acc>(part, t.tiles, t0, t1, M, lanes,
                       [&](int c, const Acc &a) { a.store(gpart + Acc::W * ((long)c * groups + g)); });
    if (!last_of(&igemm_ticket, (unsigned)groups)) return;
    combine_items<Acc>(gpart, groups, 0, groups, M, lanes, finish);
}

// Sums over the TX = BN/4 threads of one tile row (the threads with the same ty), in a fixed
// order: row_put runs a shuffle tree within each warp segment of the row and keeps the
// segments' sums in red[slot][row][segment]; after a barrier, row_total adds them in order.
template <int BN> struct TileRow {
    static constexpr int TX = BN / IG_TN, SEG = TX < 32 ? TX : 32, SEGS = TX / SEG;
};
template <int BM, int BN> __device__ void row_put(float q, float *red, int slot, int row)
{
    using T = TileRow<BN>;
    int tx = threadIdx.x % T::TX;
    for (int off = T::SEG / 2; off > 0; off >>= 1) q += __shfl_xor_sync(0xffffffffu, q, off, T::SEG);
    if (tx % T::SEG == 0) red[(slot * BM + row) * T::SEGS + tx / T::SEG] = q;
}
template <int BM, int BN> __device__ float row_total(const float *red, int slot, int row)
{
    using T = TileRow<BN>;
    float q = 0.f;
    for (int t = 0; t < T::SEGS; t++) q += red[(slot * BM + row) * T::SEGS + t];
    return q;
}

// The epilogue of backward_input when batchnorm+ReLU sits between this conv and its input
// (BnSums.part set): with din the tile's values (g) and x = batchnorm's input at the same
// index, per channel c the tile's sums of g [x scale + shift > 0] and of that times
// xhat = (x - mean) invstd (the sums batchnorm's backward needs, as bn_chunk_grads makes them),
// written per column tile, then added in tile order (finish_tiles) -> dbeta, dgamma, and kk
// for batchnorm_split_backward_apply.
// red, lanes: the tile loop's shared memory (free by now), 2 BM SEGS and 2 THREADS floats.
template <int BM, int BN>
__device__ void bn_sums_epilogue(const float (&acc)[IG_TM][IG_TN], const ConvGeo &g, const BnSums &s, int M, long Ncol,
                                 int m0, long n0, const TileId &id, float *red, float *lanes)
{
    constexpr int THREADS = BM * BN / (IG_TM * IG_TN), TX = BN / IG_TN;
    int tid = threadIdx.x, tx = tid % TX, ty = tid / TX;
    for (int i = 0; i < IG_TM; i++) {
        int c = m0 + ty * IG_TM + i;
        float s1 = 0.f, s2 = 0.f;
        if (c < M) {
            float mean = s.mean[c], inv = s.invstd[c];
            BnAffine a = bn_affine(s.gamma[c], s.beta[c], mean, inv);
            for (int j = 0; j < IG_TN; j++) {
                long col = n0 + tx * IG_TN + j;
                if (col >= Ncol) continue;
                float x = s.x[out_index<1>(g, c, col)];
                float gv = bn_apply(x, a) > 0.f ? acc[i][j] : 0.f;
                s1 = __fadd_rn(s1, gv);
                s2 = __fadd_rn(s2, __fmul_rn(__fmul_rn(gv, __fsub_rn(x, mean)), inv));
            }
        }
        row_put<BM, BN>(s1, red, 0, ty * IG_TM + i);
        row_put<BM, BN>(s2, red, 1, ty * IG_TM + i);
    }
    __syncthreads();
    for (int r = tid; r < BM; r += THREADS) {
        if (m0 + r >= M) continue;
        float *p = s.part + 2 * ((long)(m0 + r) * id.tiles + id.tile);
        p[0] = row_total<BM, BN>(red, 0, r);
        p[1] = row_total<BM, BN>(red, 1, r);
    }
    finish_tiles<SumAcc>(s.part, M, lanes, id, [&](int c, const SumAcc &t) {
        bn_finish_grads(s.kk, s.dgamma, s.dbeta, s.gamma, s.invstd, c, M, t.a, t.b, s.count);
    });
}

struct BnStats {   // the forward's statistics epilogue (part == nullptr: none)
    BnRefs t[2];
    int n;
    float *part;   // [M][tiles][3]: count, mean, M2
    long count;    // values per channel (N*P*Q)
};

// The forward's epilogue when batchnorms read its output: v = the tile's stored values; per
// channel the tile's count, mean and M2 (sum of squared deviations from the tile's mean),
// each a fixed tree over the row's threads; the column tiles combined in order (finish_tiles)
// and each batchnorm finalized.
// red, lanes: the tile loop's shared memory, 2 BM SEGS and 3 THREADS floats.
template <int BM, int BN>
__device__ void bn_stats_epilogue(const float (&v)[IG_TM][IG_TN], const BnStats &s, int M, long Ncol, int m0, long n0,
                                  const TileId &id, float *red, float *lanes)
{
    constexpr int THREADS = BM * BN / (IG_TM * IG_TN), TX = BN / IG_TN;
    int tid = threadIdx.x, tx = tid % TX, ty = tid / TX;
    float cnt = (float)(Ncol - n0 < BN ? Ncol - n0 : BN);
    float mean[IG_TM];
    for (int pass = 0; pass < 2; pass++) {   // the tile's sums, then its squared deviations
        for (int i = 0; i < IG_TM; i++) {
            float q = 0.f;
            for (int j = 0; j < IG_TN; j++) {
                if (n0 + tx * IG_TN + j >= Ncol) continue;
                float d = pass ? v[i][j] - mean[i] : v[i][j];
                q += pass ? d * d : d;
            }
            row_put<BM, BN>(q, red, pass, ty * IG_TM + i);
        }
        __syncthreads();
        if (pass == 0)
            for (int i = 0; i < IG_TM; i++) mean[i] = row_total<BM, BN>(red, 0, ty * IG_TM + i) / cnt;
    }
    for (int r = tid; r < BM; r += THREADS) {
        if (m0 + r >= M) continue;
        float *p = s.part + 3 * ((long)(m0 + r) * id.tiles + id.tile);
        p[0] = cnt;
        p[1] = row_total<BM, BN>(red, 0, r) / cnt;
        p[2] = row_total<BM, BN>(red, 1, r);
    }
    finish_tiles<ChanAcc>(s.part, M, lanes, id, [&](int c, const ChanAcc &t) {
        for (int k = 0; k < s.n; k++) bn_finish_stats(s.t[k], c, t.mean, t.m2, s.count);
    });
}

// The tile loop on tensor cores (TC): the block's warps each own a WM x WN part of the BM x BN
// tile (WN = min(BN, 32), WM = 512 / WN: 16 or 32 rows), MI x NJ mma tiles of 16 x 8, fed from
// the same As/Bs tiles two k-steps of 8 at a time (gpu/mma.cuh, 3xTF32). The fragments are
// then laid out as the CUDA-core loop leaves its acc (thread (ty, tx) holding rows ty*4.. and
// columns tx*4..) through shared memory, so the store and the epilogues are the same code.
template <int BM, int BN> struct TcTile {
    static constexpr int WN = BN < 32 ? BN : 32, WM = 512 / WN, MI = WM / 16, NJ = WN / 8, WARPS_N = BN / WN;
};
template <int BM, int BN>
__device__ __forceinline__ void tc_k_steps(float (&c)[TcTile<BM, BN>::MI][TcTile<BM, BN>::NJ][4],
                                           const float (*As)[BM + IG_PAD], const float (*Bs)[BN + IG_PAD])
{
    using T = TcTile<BM, BN>;
    static_assert(BM % T::WM == 0 && BN % T::WN == 0, "tile not a whole number of warp tiles");
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    int r0 = warp / T::WARPS_N * T::WM, c0 = warp % T::WARPS_N * T::WN;
#pragma unroll
    for (int ks = 0; ks < IG_BK; ks += 8) {
        float a[T::MI][4], b[T::NJ][2];
#pragma unroll
        for (int i = 0; i < T::MI; i++) {
            int r = r0 + 16 * i + g;
            a[i][0] = As[ks + t][r];
            a[i][1] = As[ks + t][r + 8];
            a[i][2] = As[ks + t + 4][r];
            a[i][3] = As[ks + t + 4][r + 8];
        }
#pragma unroll
        for (int j = 0; j < T::NJ; j++) {
            b[j][0] = Bs[ks + t][c0 + 8 * j + g];
            b[j][1] = Bs[ks + t + 4][c0 + 8 * j + g];
        }
        mma_3xtf32<T::MI, T::NJ>(c, a, b);
    }
}
template <int BM, int BN>
__device__ __forceinline__ void tc_to_threads(float (&acc)[IG_TM][IG_TN], const float (&c)[TcTile<BM, BN>::MI][TcTile<BM, BN>::NJ][4],
                                              float (*Cs)[BN + 1])
{
    using T = TcTile<BM, BN>;
    constexpr int TX = BN / IG_TN;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    int r0 = warp / T::WARPS_N * T::WM, c0 = warp % T::WARPS_N * T::WN;
    for (int i = 0; i < T::MI; i++)
        for (int j = 0; j < T::NJ; j++)
            for (int q = 0; q < 4; q++) Cs[r0 + 16 * i + g + 8 * (q >> 1)][c0 + 8 * j + 2 * t + (q & 1)] = c[i][j][q];
    __syncthreads();
    int tx = threadIdx.x % TX, ty = threadIdx.x / TX;
    for (int i = 0; i < IG_TM; i++)
        for (int j = 0; j < IG_TN; j++) acc[i][j] = Cs[ty * IG_TM + i][tx * IG_TN + j];
}

// The shared tiles of one block
template <int BM, int BN, bool TC> struct IgemmShared {
    __align__(16) float As[IG_BK][BM + IG_PAD];
    __align__(16) float Bs[IG_BK][BN + IG_PAD];
    float Cs[TC ? BM : 1][BN + 1];
};

// One BM x BN tile of op(A) op(B), rows m0.., columns n0.., over reduction steps [k0, k1), into
// acc in the CUDA-core thread layout (thread (ty, tx): rows ty*4.., columns tx*4..). TC: the
// products on tensor cores (3xTF32), else on CUDA cores in fp32. A warp (TC) or thread whose
// columns are all past Ncol skips the products (a partial last tile; they would be zeros).
// All threads of the block call it; it ends after a barrier that follows its last read of the
// tiles' As and Bs.
template <int MODE, int BM, int BN, bool TC>
__device__ void igemm_tile(float (&acc)[IG_TM][IG_TN], IgemmShared<BM, BN, TC> &sh, const float *a, const float *b,
                           const BnRelu &bn, const BnGrad &dg, const ConvGeo &g, int M, long Ncol, int m0, long n0,
                           long k0, long k1)
{
    constexpr int THREADS = BM * BN / (IG_TM * IG_TN), TX = BN / IG_TN;
    int tid = threadIdx.x, tx = tid % TX, ty = tid / TX;
    for (int i = 0; i < IG_TM; i++)
        for (int j = 0; j < IG_TN; j++) acc[i][j] = 0.f;
    float c[TcTile<BM, BN>::MI][TcTile<BM, BN>::NJ][4] = {};
    bool live = TC ? n0 + tid / 32 % TcTile<BM, BN>::WARPS_N * TcTile<BM, BN>::WN < Ncol : n0 + tx * IG_TN < Ncol;
    for (long kb = k0; kb < k1; kb += IG_BK) {
        for (int e = tid; e < BM * IG_BK; e += THREADS) {   // consecutive threads: consecutive kk
            int i = e / IG_BK, k = e % IG_BK;
            long gk = kb + k;
            sh.As[k][i] = m0 + i < M && gk < k1 ? load_a<MODE>(g, a, dg, m0 + i, gk) : 0.f;
        }
        for (int e = tid; e < BN * IG_BK; e += THREADS) {   // consecutive threads: consecutive j
            int j = e % BN, k = e / BN;
            long gk = kb + k, gj = n0 + j;
            sh.Bs[k][j] = gj < Ncol && gk < k1 ? load_b<MODE>(g, b, bn, dg, gk, gj) : 0.f;
        }
        __syncthreads();
        if constexpr (TC) {
            if (live) tc_k_steps<BM, BN>(c, sh.As, sh.Bs);
        } else if (live) {
#pragma unroll
            for (int k = 0; k < IG_BK; k++) {
                float av[IG_TM], bv[IG_TN];
#pragma unroll
                for (int i = 0; i < IG_TM; i++) av[i] = sh.As[k][ty * IG_TM + i];
#pragma unroll
                for (int j = 0; j < IG_TN; j++) bv[j] = sh.Bs[k][tx * IG_TN + j];
#pragma unroll
                for (int i = 0; i < IG_TM; i++)
#pragma unroll
                    for (int j = 0; j < IG_TN; j++) acc[i][j] += av[i] * bv[j];
            }
        }
        __syncthreads();
    }
    if constexpr (TC) tc_to_threads<BM, BN>(acc, c, sh.Cs);
}

// acc's values at rows m0.., columns n0.. of out (+ add[same index]: a residual added in the
// store; acc then holds the sums)
template <int MODE, int BM, int BN>
__device__ void igemm_store(float (&acc)[IG_TM][IG_TN], float *o, const float *add, const ConvGeo &g, int M,
                            long Ncol, int m0, long n0)
{
    constexpr int TX = BN / IG_TN;
    int tx = threadIdx.x % TX, ty = threadIdx.x / TX;
    for (int i = 0; i < IG_TM; i++) {
        int gi = m0 + ty * IG_TM + i;
        if (gi >= M) continue;
        for (int j = 0; j < IG_TN; j++) {
            long gj = n0 + tx * IG_TN + j;
            if (gj >= Ncol) continue;
            long at = out_index<MODE>(g, gi, gj);
            if (add) acc[i][j] += add[at];
            o[at] = acc[i][j];
        }
    }
}

// One BM x BN tile of out = op(A) op(B) over reduction steps [k0, k1) (MODE 2: the pixel
// group blockIdx.z, written to out + z * M * Ncol), then the mode's epilogue if asked for.
template <int MODE, int BM, int BN, bool TC>
__global__ void __launch_bounds__(BM * BN / (IG_TM * IG_TN)) conv_igemm_kernel(float *out, const float *a,
        const float *b, const float *add, BnRelu bn, BnGrad dg, BnSums sums, BnStats stats, ConvGeo g, int M,
        long Ncol, long Kdim, long per)
{
    // the epilogues' scratch: As for their row sums (2 BM SEGS <= 16 BM floats), Bs for their
    // lanes (2 or 3 THREADS = BM BN / 8 or 3 BM BN / 16 floats, within Bs's 16 BN)
    static_assert(3 * BM <= 16 * IG_BK, "epilogue scratch in Bs");
    __shared__ IgemmShared<BM, BN, TC> sh;
    int m0 = blockIdx.y * BM;
    long n0 = (long)blockIdx.x * BN;
    long k0 = MODE == 2 ? blockIdx.z * per : 0, k1 = MODE == 2 ? (k0 + per < Kdim ? k0 + per : Kdim) : Kdim;
    float acc[IG_TM][IG_TN];
    igemm_tile<MODE, BM, BN, TC>(acc, sh, a, b, bn, dg, g, M, Ncol, m0, n0, k0, k1);
    igemm_store<MODE, BM, BN>(acc, MODE == 2 ? out + (long)blockIdx.z * M * Ncol : out, add, g, M, Ncol, m0, n0);
    TileId id = {blockIdx.x, gridDim.x, gridDim.y};
    if (MODE == 1 && sums.part) bn_sums_epilogue<BM, BN>(acc, g, sums, M, Ncol, m0, n0, id, &sh.As[0][0], &sh.Bs[0][0]);
    if (MODE == 0 && stats.part) bn_stats_epilogue<BM, BN>(acc, stats, M, Ncol, m0, n0, id, &sh.As[0][0], &sh.Bs[0][0]);
}

// A convolution's backward (stride 1, output the input's size: the column (n,h,w) of
// backward-input is also the output pixel (n,p,q) the weight gradient sums over) in one
// kernel, each block for a run of `per` column tiles:
//   1. backward-input with batchnorm's sums (as conv_igemm_kernel<1> with BnSums) for each of
//      its column tiles in turn;
//   2. its share of the weight gradient: the partial dW over the run's pixels (as
//      conv_igemm_kernel<2> with those pixels for its group), K x CRS in BM x BN tiles, into
//      part + blockIdx.x * K * CRS (summed in block order with the other pending ones).
// dout (or BnGrad's g and x) and batchnorm's input x are read from DRAM once for both: step
// 2 reads what step 1 read moments before on the same SM (dout at the run's pixels, x at
// them and their 1-pixel halo). Worth it where the partial dW is small against the tensors
// (conv2d_igemm_fused_blocks).
template <int BM, int BN, bool TC>
__global__ void __launch_bounds__(BM * BN / (IG_TM * IG_TN)) conv_bwd_fused_kernel(float *din, float *part,
        const float *w, const float *dout, BnRelu bn, BnGrad dg, BnSums sums, ConvGeo g, long tiles, int per)
{
    static_assert(3 * BM <= 16 * IG_BK, "epilogue scratch in Bs");
    __shared__ IgemmShared<BM, BN, TC> sh;
    long Ncol = (long)g.N * g.H * g.W, crs = (long)g.C * g.R * g.S;
    long t0 = (long)blockIdx.x * per, t1 = t0 + per < tiles ? t0 + per : tiles;
    float acc[IG_TM][IG_TN];
    for (long t = t0; t < t1; t++) {
        igemm_tile<1, BM, BN, TC>(acc, sh, w, dout, BnRelu{}, dg, g, g.C, Ncol, 0, t * BN, 0, (long)g.K * g.R * g.S);
        igemm_store<1, BM, BN>(acc, din, nullptr, g, g.C, Ncol, 0, t * BN);
        bn_sums_epilogue<BM, BN>(acc, g, sums, g.C, Ncol, 0, t * BN, TileId{t, tiles, 1}, &sh.As[0][0], &sh.Bs[0][0]);
        __syncthreads();   // the epilogue's scratch is the next tile's As and Bs (it ends on a barrier after
                           // its last reads already; this one keeps the loop safe without that)
    }
    long p0 = t0 * BN, p1 = t1 * BN < Ncol ? t1 * BN : Ncol;   // the run's pixels
    float *o = part + (long)blockIdx.x * g.K * crs;
    for (int m0 = 0; m0 < g.K; m0 += BM)
        for (long n0 = 0; n0 < crs; n0 += BN) {
            igemm_tile<2, BM, BN, TC>(acc, sh, dout, sums.x, bn, dg, g, g.K, crs, m0, n0, p0, p1);
            igemm_store<2, BM, BN>(acc, o, nullptr, g, g.K, crs, m0, n0);
        }
}

// The pending weight gradients' group sums, all in one launch: job j (start[j] <= e <
// start[j + 1]) is dW_j[i] = sum over groups z (in order) of part_j[z][i], i = e - start[j]
constexpr int MAX_SUM_JOBS = 48;
struct SumJobs {
    float *dw[MAX_SUM_JOBS];
    const float *part[MAX_SUM_JOBS];
    long start[MAX_SUM_JOBS + 1];
    int groups[MAX_SUM_JOBS];
    int n;
};
__global__ void sum_groups_kernel(SumJobs jobs)
{
    long total = jobs.start[jobs.n];
    for (long e = blockIdx.x * (long)blockDim.x + threadIdx.x; e < total; e += (long)gridDim.x * blockDim.x) {
        int j = 0;
        while (e >= jobs.start[j + 1]) j++;
        long n = jobs.start[j + 1] - jobs.start[j], i = e - jobs.start[j];
        const float *p = jobs.part[j];
        float s = 0.f;
        for (int z = 0; z < jobs.groups[j]; z++) s += p[z * n + i];
        jobs.dw[j][i] = s;
    }
}

namespace {
constexpr long TARGET_BLOCKS = 4 * CARD_SMS;

// The products' arithmetic: tensor cores in 3xTF32 where the build's card has them (sm_80 on;
// the emulator has them), else fp32 on CUDA cores.
#if CONVNET_CONV_TC
int conv_math = GPU_CONV_3XTF32;
#else
int conv_math = GPU_CONV_FP32;
#endif

// Scratch: backward_input_bn's per-tile sums and kk, and the forward's per-tile statistics
// (both used on the main stream only); the weight gradient's per-group partial dW (the side
// stream only)
Scratch sums_buf, stats_buf;
// The weight gradients' partial sums, one buffer per weight gradient since the last
// conv2d_igemm_weight_sums (the side stream only), and their pending sums
std::vector<Scratch> partials_bufs;
SumJobs pending;

int pick_bm(int M) { return M <= 16 ? 16 : M <= 32 ? 32 : 64; }
// the largest BN whose grid (times z) still has TARGET_BLOCKS blocks, with 32 to 256 threads
int pick_bn(int BM, long M, long Ncol, long z)
{
    int lo = 512 / BM < 16 ? 16 : 512 / BM, hi = 4096 / BM < 256 ? 4096 / BM : 256;
    long mt = (M + BM - 1) / BM;
    for (int bn = hi; bn > lo; bn /= 2)
        if (mt * ((Ncol + bn - 1) / bn) * z >= TARGET_BLOCKS) return bn;
    return lo;
}
// column tiles of a single-z launch (the items an epilogue's reduction combines)
long col_tiles(int M, long Ncol)
{
    long bn = pick_bn(pick_bm(M), M, Ncol, 1);
    return (Ncol + bn - 1) / bn;
}

// Room for an epilogue's reduction over M channels x w floats (finish_tiles: [M][tiles], then
// [M][groups]) plus `extra` floats after it, which start at the returned pointer + *offset.
float *epilogue_partials(Scratch &buf, int M, long Ncol, int w, size_t extra, size_t *offset)
{
    long tiles = col_tiles(M, Ncol), groups = (tiles + GROUP_TILES - 1) / GROUP_TILES;
    if (groups > MAX_GROUPS) GPU_FAIL("conv2d_igemm: %ld column tiles is too many", tiles);
    *offset = (size_t)w * M * (tiles + groups);
    return buf.get(*offset + extra);
}

// batchnorm's sums in backward-input's epilogue over C channels x Ncol values: the per-tile
// partials in sums_buf, then kk (or in kk_out)
BnSums bn_sums(const float *x, const BnRelu &bn, float *dgamma, float *dbeta, float *kk_out, int C, long Ncol)
{
    size_t kk_at;
    float *buf = epilogue_partials(sums_buf, C, Ncol, SumAcc::W, 3 * (size_t)C, &kk_at);
    return BnSums{x, bn.gamma, bn.beta, bn.mean, bn.invstd, buf, kk_out ? kk_out : buf + kk_at, dgamma, dbeta, Ncol};
}

// f.template run<BM, BN, TC>() for the tile shape bm x bn and the products' math (TC: tensor
// cores). pick_bm/pick_bn keep BM BN within [512, 4096] (32 to 256 threads); no other shape
// is built.
template <int BM, int BN, class F> void with_math(const F &f)
{
    if constexpr (BM * BN < 512 || BM * BN > 4096) {
        GPU_FAIL("conv2d_igemm: no %d x %d tile", BM, BN);
    } else if (conv_math == GPU_CONV_3XTF32) {
        f.template run<BM, BN, true>();
    } else {
        f.template run<BM, BN, false>();
    }
}
template <int BM, class F> void with_bn(int bn, const F &f)
{
    switch (bn) {
#define CASE(B) case B: with_math<BM, B>(f); break;
        CASE(256) CASE(128) CASE(64) CASE(32) CASE(16)
#undef CASE
    }
}
template <class F> void with_tile(int bm, int bn, const F &f)
{
    if (bm == 16) with_bn<16>(bn, f);
    else if (bm == 32) with_bn<32>(bn, f);
    else with_bn<64>(bn, f);
}

// conv_igemm_kernel<MODE> over a grid of column tiles x row tiles x z
template <int MODE> struct IgemmLaunch {
    float *out;
    const float *a, *b, *add;
    BnRelu bn;
    BnGrad dg;
    BnSums sums;
    BnStats stats;
    ConvGeo g;
    int M;
    long Ncol, Kdim, per;
    int z;
    template <int BM, int BN, bool TC> void run() const
    {
        dim3 grid((unsigned)((Ncol + BN - 1) / BN), (unsigned)((M + BM - 1) / BM), (unsigned)z);
        // (TC spelled out: the emulator's trace names a kernel by the launch's text)
        if constexpr (TC)
            LAUNCH((conv_igemm_kernel<MODE, BM, BN, true>), grid, BM * BN / 16, 0, gpu::stream())(out, a, b, add, bn,
                    dg, sums, stats, g, M, Ncol, Kdim, per);
        else
            LAUNCH((conv_igemm_kernel<MODE, BM, BN, false>), grid, BM * BN / 16, 0, gpu::stream())(out, a, b, add, bn,
                    dg, sums, stats, g, M, Ncol, Kdim, per);
        CUDA_CHECK_LAUNCH();
    }
};

template <int MODE>
void launch(float *out, const float *a, const float *b, const float *add, const BnRelu &bn, const BnGrad &dg,
            const BnSums &sums, const BnStats &stats, const ConvGeo &g, int M, long Ncol, long Kdim, long per, int z)
{
    if (sums.part || stats.part) require_main_stream("conv_igemm_kernel with an epilogue's sums");
    int bm = pick_bm(M);
    with_tile(bm, pick_bn(bm, M, Ncol, z), IgemmLaunch<MODE>{out, a, b, add, bn, dg, sums, stats, g, M, Ncol, Kdim, per, z});
}

ConvGeo geo(int N, int C, int H, int W, int K, int R, int S, int stride, int pad)
{
    return ConvGeo{N, C, H, W, K, R, S, stride, pad, (H + 2 * pad - R) / stride + 1, (W + 2 * pad - S) / stride + 1};
}
}  // namespace

int set_conv_math(int math)
{
    if (math == GPU_CONV_3XTF32 && !CONVNET_CONV_TC) return -1;
    if (math != GPU_CONV_FP32 && math != GPU_CONV_3XTF32) return -1;
    conv_math = math;
    return 0;
}
int get_conv_math() { return conv_math; }

void conv2d_igemm_release()
{
    for (Scratch &b : partials_bufs) b.release();
    pending.n = 0;
    sums_buf.release();
    stats_buf.release();
}

void conv2d_igemm_forward(float *out, const float *in, const float *weight, const float *add, int N, int C,
                          int H, int W, int K, int R, int S, int stride, int pad, BnRelu bn, const BnRefs *next,
                          int n_next)
{
    ConvGeo g = geo(N, C, H, W, K, R, S, stride, pad);
    BnStats st = {};
    if (n_next > 2) GPU_FAIL("conv2d_igemm_forward: at most 2 batchnorms read one output");
    long Ncol = (long)N * g.P * g.Q;
    if (n_next > 0) {
        size_t end;
        st.part = epilogue_partials(stats_buf, K, Ncol, ChanAcc::W, 0, &end);
        st.n = n_next;
        st.count = Ncol;
        for (int k = 0; k < n_next; k++) st.t[k] = next[k];
    }
    launch<0>(out, weight, in, add, bn, BnGrad{}, BnSums{}, st, g, K, Ncol, (long)C * R * S, 0, 1);
}

void conv2d_igemm_backward_input(float *din, const float *dout, const float *weight, int N, int C, int H,
                                 int W, int K, int R, int S, int stride, int pad)
{
    ConvGeo g = geo(N, C, H, W, K, R, S, stride, pad);
    launch<1>(din, weight, dout, nullptr, BnRelu{}, BnGrad{}, BnSums{}, BnStats{}, g, C, (long)N * H * W, (long)K * R * S,
              0, 1);
}

const float *conv2d_igemm_backward_input_bn(float *din, const float *dout, const float *weight, int N, int C,
        int H, int W, int K, int R, int S, int stride, int pad, const float *x, const float *gamma,
        const float *beta, const float *mean, const float *invstd, float *dgamma, float *dbeta, float *kk_out,
        const BnGrad *dout_bn)
{
    ConvGeo g = geo(N, C, H, W, K, R, S, stride, pad);
    long Ncol = (long)N * H * W;
    BnSums s = bn_sums(x, BnRelu{gamma, beta, mean, invstd}, dgamma, dbeta, kk_out, C, Ncol);
    launch<1>(din, weight, dout, nullptr, BnRelu{}, dout_bn ? *dout_bn : BnGrad{}, s, BnStats{}, g, C, Ncol,
              (long)K * R * S, 0, 1);
    return s.kk;
}

// Where `groups` partial sums of a weight gradient of n floats go: dweight itself for one group,
// else a buffer of its own, summed into dweight by the next conv2d_igemm_weight_sums
float *pending_partials(float *dweight, int groups, long n)
{
    if (groups == 1) return dweight;
    if (pending.n == MAX_SUM_JOBS) conv2d_igemm_weight_sums();   // (more layers than the practical's)
    int j = pending.n;
    if ((int)partials_bufs.size() <= j) partials_bufs.resize(j + 1);
    float *part = partials_bufs[j].get((size_t)groups * n);
    pending.dw[j] = dweight;
    pending.part[j] = part;
    pending.groups[j] = groups;
    pending.start[j + 1] = pending.start[j] + n;
    pending.n = j + 1;
    return part;
}

// Pixel groups of the weight gradient: enough for WGRAD_BLOCKS tiles of BN = 64 (2 per SM; the
// launch may still narrow its tiles for more blocks). Not more: each group writes and the sum
// reads back a whole partial dW, and the weight gradient runs beside backward-input on the
// side stream, which fills the card with it.
constexpr long WGRAD_BLOCKS = 2 * CARD_SMS;
int conv2d_igemm_weight_groups(int N, int K, int C, int R, int S, int P, int Q)
{
    int bm = pick_bm(K);
    long crs = (long)C * R * S, tiles = ((K + bm - 1) / bm) * ((crs + 63) / 64);   // at BN = 64
    long want = (WGRAD_BLOCKS + tiles - 1) / tiles, pix = (long)N * P * Q;
    long per = pix / want / IG_BK * IG_BK;   // whole reduction steps per group, at least `want` groups
    if (per < IG_BK) per = IG_BK;
    return (int)((pix + per - 1) / per);
}

void conv2d_igemm_backward_weight(float *dweight, const float *dout, const float *in, int N, int C, int H,
                                  int W, int K, int R, int S, int stride, int pad, BnRelu bn, const BnGrad *dout_bn)
{
    ConvGeo g = geo(N, C, H, W, K, R, S, stride, pad);
    long crs = (long)C * R * S, pix = (long)N * g.P * g.Q;
    int groups = conv2d_igemm_weight_groups(N, K, C, R, S, g.P, g.Q);
    long per = (pix + groups - 1) / groups;
    per = (per + IG_BK - 1) / IG_BK * IG_BK;
    groups = (int)((pix + per - 1) / per);
    float *part = pending_partials(dweight, groups, (long)K * crs);
    launch<2>(part, dout, in, nullptr, bn, dout_bn ? *dout_bn : BnGrad{}, BnSums{}, BnStats{}, g, K, crs, pix, per,
              groups);
}

// The fused backward (conv_bwd_fused_kernel) of a convolution: its tiles are backward-input's
// (pick_bm, pick_bn: the same column tiles, so the same bits of din and of batchnorm's sums),
// `per` of them a block. fuse_per: -1 never; 0 (the default) where it pays: the blocks' partial
// dW, written and read back, cost at most one of the two tensor reads the fusion saves (dout
// and batchnorm's input; or g and x of a BnGrad dout, and the input: three), with per as small
// as keeps WGRAD_BLOCKS blocks (more blocks, more partials); n > 0: wherever the geometry
// allows, n tiles a block (tests).
struct FusedPlan {
    int bm = 0, bn = 0, per = 0, blocks = 0;
    long tiles = 0;
};
int fuse_per = 0;
FusedPlan fused_plan(const ConvGeo &g)
{
    FusedPlan f;
    if (fuse_per < 0 || g.stride != 1 || g.P != g.H || g.Q != g.W || pick_bm(g.C) < g.C) return f;
    long Ncol = (long)g.N * g.H * g.W, crs = (long)g.C * g.R * g.S;
    f.bm = pick_bm(g.C);
    f.bn = pick_bn(f.bm, g.C, Ncol, 1);
    f.tiles = (Ncol + f.bn - 1) / f.bn;
    f.per = fuse_per > 0 ? fuse_per : (int)(f.tiles / WGRAD_BLOCKS > 1 ? f.tiles / WGRAD_BLOCKS : 1);
    f.blocks = (int)((f.tiles + f.per - 1) / f.per);
    if (fuse_per == 0 && 2.0 * f.blocks * g.K * crs > (double)Ncol * g.C) f.blocks = 0;
    return f;
}

// conv_bwd_fused_kernel over f.blocks blocks
struct FusedLaunch {
    FusedPlan f;
    float *din, *part;
    const float *w, *dout;
    BnRelu bn;
    BnGrad dg;
    BnSums sums;
    ConvGeo g;
    template <int BM, int BN, bool TC> void run() const
    {
        dim3 grid((unsigned)f.blocks);
        if constexpr (TC)
            LAUNCH((conv_bwd_fused_kernel<BM, BN, true>), grid, BM * BN / 16, 0, gpu::stream())(din, part, w, dout, bn,
                    dg, sums, g, f.tiles, f.per);
        else
            LAUNCH((conv_bwd_fused_kernel<BM, BN, false>), grid, BM * BN / 16, 0, gpu::stream())(din, part, w, dout, bn,
                    dg, sums, g, f.tiles, f.per);
        CUDA_CHECK_LAUNCH();
    }
};

const float *conv2d_igemm_backward_fused(float *dweight, float *din, const float *dout, const float *weight, int N,
        int C, int H, int W, int K, int R, int S, int stride, int pad, BnRelu bn, const float *x, float *dgamma,
        float *dbeta, float *kk_out, const BnGrad *dout_bn)
{
    ConvGeo g = geo(N, C, H, W, K, R, S, stride, pad);
    FusedPlan f = fused_plan(g);
    if (!f.blocks) return nullptr;
    BnSums s = bn_sums(x, bn, dgamma, dbeta, kk_out, C, (long)N * H * W);
    float *part = pending_partials(dweight, f.blocks, (long)K * C * R * S);
    require_main_stream("conv_bwd_fused_kernel");
    with_tile(f.bm, f.bn, FusedLaunch{f, din, part, weight, dout, bn, dout_bn ? *dout_bn : BnGrad{}, s, g});
    return s.kk;
}

void conv2d_igemm_weight_sums()
{
    if (pending.n == 0) return;
    LAUNCH(sum_groups_kernel, grid_for((size_t)pending.start[pending.n], 256), 256, 0, gpu::stream())(pending);
    CUDA_CHECK_LAUNCH();
    pending.n = 0;
}
}  // namespace gpu

// column tiles of an implicit GEMM with M rows and Ncol columns (bench/gpu_plan: the
// partial sums an epilogue's last block combines)
extern "C" int gpu_set_conv_math(int math) { return gpu::set_conv_math(math); }
extern "C" int gpu_conv_math(void) { return gpu::get_conv_math(); }

extern "C" long gpu_conv2d_igemm_col_tiles(int M, long Ncol) { return gpu::col_tiles(M, Ncol); }

// blocks of the fused backward for this convolution (0: it takes the two launches), and the
// switch (core/ops.h; gpu::fuse_per above)
extern "C" int gpu_conv2d_igemm_fused_blocks(int N, int C, int H, int W, int K, int R, int S, int stride, int pad)
{
    return gpu::fused_plan(gpu::geo(N, C, H, W, K, R, S, stride, pad)).blocks;
}
extern "C" void gpu_set_conv_fusion(int per) { gpu::fuse_per = per; }

extern "C" int gpu_conv2d_igemm_weight_groups(int N, int K, int C, int R, int S, int P, int Q)
{
    return gpu::conv2d_igemm_weight_groups(N, K, C, R, S, P, Q);
}
