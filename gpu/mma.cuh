// Tensor-core multiply-add for the implicit-GEMM convolution: the warp-wide
// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 (sm_80 and later), used three times per
// product in the "3xTF32" split so that the result keeps fp32's accuracy:
//
//   x = big(x) + small(x),  big = tf32(x),  small = tf32(x - big)   (tf32: 10 mantissa bits,
//                                                                    rounded to nearest, ties away)
//   a b ~ big(a) big(b) + big(a) small(b) + small(a) big(b)         (small(a) small(b), about
//                                                                    2^-22 |a b|, is dropped)
// Each tf32 x tf32 product is exact in fp32 (11 x 11 significant bits), so what is lost against
// an fp32 multiply-add is that dropped term and small's rounding: both under 2^-21 |a b|,
// against fp32's own rounding of the sum, 2^-24 per addition.
//
// One mma: D (16x8) = A (16x8) B (8x8) + C, spread over the 32 lanes of a warp. With
// g = lane / 4 and t = lane % 4, as the PTX ISA defines the fragments of this shape:
//   a[0] = A[g][t]   a[1] = A[g+8][t]   a[2] = A[g][t+4]   a[3] = A[g+8][t+4]
//   b[0] = B[t][g]   b[1] = B[t+4][g]
//   c[0] = C[g][2t]  c[1] = C[g][2t+1]  c[2] = C[g+8][2t]  c[3] = C[g+8][2t+1]   (D likewise)
// Under the emulator (tests/emu) the warp exchanges its fragments and every lane computes its
// four outputs from them with the same layout; the test mma_fragment_layout checks that
// layout against a plain product, on the emulator in make test and on a real card in
// bench/gpu_check.sh.
#ifndef CONVNET_GPU_MMA_CUH
#define CONVNET_GPU_MMA_CUH
#include "gpu/cuda_compat.h"

namespace gpu {
namespace {

// tf32(x) as cvt.rna.tf32.f32 makes it (an fp32 value whose low 13 mantissa bits are 0)
__device__ __forceinline__ float to_tf32(float x)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return __uint_as_float(r);
#elif defined(CONVNET_EMU)
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;   // ties away: on the magnitude
    float r;
    memcpy(&r, &u, 4);
    return r;
#else
    return x;
#endif
}

#ifdef CONVNET_EMU
// The emulator's mma: D = A B + C for one 16x8x8 tile from the warp's exchanged fragments
// (lane l's 4 A values at l XCHG_FLOATS + oa, its 2 B values at l XCHG_FLOATS + ob), each
// lane's four outputs summed over k = 0..7 in order.
__device__ __forceinline__ void emu_mma(float (&d)[4], const float *x, int oa, int ob)
{
    constexpr int stride = emu::XCHG_FLOATS;
    int lane = (int)emu::lane_id(), g = lane / 4, t = lane % 4;
    for (int q = 0; q < 4; q++) {
        int row = g + 8 * (q >> 1), col = 2 * t + (q & 1);
        float s = d[q];
        for (int k = 0; k < 8; k++) {
            float av = x[(4 * (row % 8) + k % 4) * stride + oa + (row >= 8) + 2 * (k >= 4)];
            float bv = x[(4 * col + k % 4) * stride + ob + (k >= 4)];
            s += av * bv;
        }
        d[q] = s;
    }
}
#endif

// acc[mi][nj] (a 16x8 fragment each) += A_mi B_nj in 3xTF32, over one k-step of 8: the warp
// tile of MI x NJ mma tiles. a[mi], b[nj]: this lane's fp32 fragments of A_mi and B_nj.
// Per tile the order is big*small, small*big, big*big (the small terms first).
template <int MI, int NJ>
__device__ __forceinline__ void mma_3xtf32(float (&acc)[MI][NJ][4], const float (&a)[MI][4], const float (&b)[NJ][2])
{
    float ab[MI][4], as[MI][4], bb[NJ][2], bs[NJ][2];
    for (int i = 0; i < MI; i++)
        for (int r = 0; r < 4; r++) {
            ab[i][r] = to_tf32(a[i][r]);
            as[i][r] = to_tf32(a[i][r] - ab[i][r]);
        }
    for (int j = 0; j < NJ; j++)
        for (int r = 0; r < 2; r++) {
            bb[j][r] = to_tf32(b[j][r]);
            bs[j][r] = to_tf32(b[j][r] - bb[j][r]);
        }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define CONVNET_MMA(D, A, B)                                                                                    \
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, " \
                 "{%0,%1,%2,%3};"                                                                              \
                 : "+f"(D[0]), "+f"(D[1]), "+f"(D[2]), "+f"(D[3])                                              \
                 : "r"(__float_as_uint(A[0])), "r"(__float_as_uint(A[1])), "r"(__float_as_uint(A[2])),         \
                   "r"(__float_as_uint(A[3])), "r"(__float_as_uint(B[0])), "r"(__float_as_uint(B[1])))
#pragma unroll
    for (int i = 0; i < MI; i++)
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            CONVNET_MMA(acc[i][j], ab[i], bs[j]);
            CONVNET_MMA(acc[i][j], as[i], bb[j]);
            CONVNET_MMA(acc[i][j], ab[i], bb[j]);
        }
#undef CONVNET_MMA
#elif defined(CONVNET_EMU)
    // this lane's fragments: [MI][big 4, small 4] then [NJ][big 2, small 2], STRIDE floats
    constexpr int STRIDE = 8 * MI + 4 * NJ;
    static_assert(STRIDE <= emu::XCHG_FLOATS, "warp tile too large for the emulator's exchange");
    float mine[STRIDE];
    for (int i = 0; i < MI; i++)
        for (int r = 0; r < 4; r++) {
            mine[8 * i + r] = ab[i][r];
            mine[8 * i + 4 + r] = as[i][r];
        }
    for (int j = 0; j < NJ; j++)
        for (int r = 0; r < 2; r++) {
            mine[8 * MI + 4 * j + r] = bb[j][r];
            mine[8 * MI + 4 * j + 2 + r] = bs[j][r];
        }
    const float *x = emu::warp_exchange(mine, STRIDE);
    for (int i = 0; i < MI; i++)
        for (int j = 0; j < NJ; j++) {
            emu_mma(acc[i][j], x, 8 * i, 8 * MI + 4 * j + 2);       // big a, small b
            emu_mma(acc[i][j], x, 8 * i + 4, 8 * MI + 4 * j);       // small a, big b
            emu_mma(acc[i][j], x, 8 * i, 8 * MI + 4 * j);           // big a, big b
        }
    emu::warp_exchange_end();
#else
    (void)acc; (void)ab; (void)as; (void)bb; (void)bs;
    __trap();   // built for a card without tensor cores: the host never selects this path
#endif
}

}  // namespace
}  // namespace gpu
#endif
