/* The vector vocabulary of the fast CPU kernels, for one ISA at a time. A kernel file written
 * once in these names (conv2d_direct_kern.h, winograd_kern.h) is included once per ISA between
 *     #define VEC_AVX512 (or VEC_AVX512Y, VEC_AVX2)
 *     #include "cpu/fast/vec.h"
 *     ... the kernel header, with its own SFX (name suffix) and blocking ...
 *     #include "cpu/fast/vec_end.h"     (undefines all of these and the VEC_ switch)
 * The three:
 *   VEC_AVX512   16 floats in a zmm register (AVX-512F)
 *   VEC_AVX512Y  8 floats in a ymm register, with AVX-512VL's masked loads and stores (rows of
 *                8 pixels, where 16 lanes would idle half)
 *   VEC_AVX2     8 floats in a ymm register, masks from a lane-index compare
 * Names: V (the vector type), VL (its floats), TARGET (the function attribute that enables the
 * ISA), VZERO, VLOAD, VSTORE, VBCAST (one float to every lane), VADD, VSUB, VMUL, VMAX,
 * VFMA(a, b, c) = a b + c (one rounding), VLOAD_FIRST / VSTORE_FIRST (the first n lanes,
 * 0 < n < VL; the others read as 0 and left alone), VKEEP_FIRST (the first n lanes, the others
 * 0), VKEEP_GT0(m, v) (v where m > 0, else 0). */
#if defined(VEC_AVX512)
#define TARGET __attribute__((target("avx512f,avx512vl,avx2,fma")))
#define VL 16
#define V __m512
#define VZERO() _mm512_setzero_ps()
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VBCAST(p) _mm512_set1_ps(*(p))
#define VADD(a, b) _mm512_add_ps(a, b)
#define VSUB(a, b) _mm512_sub_ps(a, b)
#define VMUL(a, b) _mm512_mul_ps(a, b)
#define VMAX(a, b) _mm512_max_ps(a, b)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VEC_MASK(n) ((__mmask16)((1u << (n)) - 1))
#define VLOAD_FIRST(p, n) _mm512_maskz_loadu_ps(VEC_MASK(n), p)
#define VSTORE_FIRST(p, v, n) _mm512_mask_storeu_ps(p, VEC_MASK(n), v)
#define VKEEP_FIRST(v, n) _mm512_maskz_mov_ps(VEC_MASK(n), v)
#define VKEEP_GT0(m, v) _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(m, _mm512_setzero_ps(), _CMP_GT_OQ), v)
#elif defined(VEC_AVX512Y) || defined(VEC_AVX2)
#if defined(VEC_AVX512Y)
#define TARGET __attribute__((target("avx512f,avx512vl,avx2,fma")))
#define VEC_MASK(n) ((__mmask8)((1u << (n)) - 1))
#define VLOAD_FIRST(p, n) _mm256_maskz_loadu_ps(VEC_MASK(n), p)
#define VSTORE_FIRST(p, v, n) _mm256_mask_storeu_ps(p, VEC_MASK(n), v)
#define VKEEP_FIRST(v, n) _mm256_maskz_mov_ps(VEC_MASK(n), v)
#else
#define TARGET __attribute__((target("avx2,fma")))
#define VEC_MASK(n) _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define VLOAD_FIRST(p, n) _mm256_maskload_ps(p, VEC_MASK(n))
#define VSTORE_FIRST(p, v, n) _mm256_maskstore_ps(p, VEC_MASK(n), v)
#define VKEEP_FIRST(v, n) _mm256_and_ps(v, _mm256_castsi256_ps(VEC_MASK(n)))
#endif
#define VL 8
#define V __m256
#define VZERO() _mm256_setzero_ps()
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VBCAST(p) _mm256_broadcast_ss(p)
#define VADD(a, b) _mm256_add_ps(a, b)
#define VSUB(a, b) _mm256_sub_ps(a, b)
#define VMUL(a, b) _mm256_mul_ps(a, b)
#define VMAX(a, b) _mm256_max_ps(a, b)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VKEEP_GT0(m, v) _mm256_and_ps(_mm256_cmp_ps(m, _mm256_setzero_ps(), _CMP_GT_OQ), v)
#else
#error "cpu/fast/vec.h: define VEC_AVX512, VEC_AVX512Y or VEC_AVX2 first"
#endif
