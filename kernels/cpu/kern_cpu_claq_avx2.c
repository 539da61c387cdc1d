/* kern_cpu_claq_avx2.c — AVX2 LUT-GEMV tile kernel of the packed CLAQ matmul (compiled with
 * -mavx2 -mfma -mf16c; called only when the CPU backend picked KERN_ISA_AVX2). Same layout and
 * numerics as the AVX-512 file: one ymm lane = one row, 8 rows per vector, two vectors per 16
 * rows. vpermps (_mm256_permutevar8x32_ps) reads 3 index bits, which covers 2- and 3-bit
 * columns (their LUT is periodic); 4-bit columns look up both LUT halves and blend on bit 3 of
 * the code (moved to the sign bit). Mul then add, never FMA: bit-identical to the reference.
 * The dequantize-GEMM path uses the reference tile (AVX2 machines are not our target).
 * v1: one 16-row group at a time, all blocks; codes of a block in registers. */
#include "kern_cpu_claq.h"

#include <immintrin.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))
/* Keeps GCC from hoisting a block's lookups ahead of their adds and spilling them. */
#define PIN(v) __asm__ volatile("" : "+x"(v))

ALWAYS_INLINE __m256i code_idx(const __m256i *W, const int B, const int c)
{
    const int bit = c * B, w = bit >> 5, sh = bit & 31;
    __m256i v = _mm256_srli_epi32(W[w], sh);
    if (sh + B > 32) v = _mm256_or_si256(v, _mm256_slli_epi32(W[w + 1], 32 - sh));
    return v;
}

ALWAYS_INLINE __m256 lookup(__m256i idx, __m256 lo, __m256 hi, const int B)
{
    __m256 a = _mm256_permutevar8x32_ps(lo, idx);
    if (B < 4) return a;
    __m256 b = _mm256_permutevar8x32_ps(hi, idx);
    return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

/* All blocks of one width for one 16-row group (two ymm of rows). */
ALWAYS_INLINE void gemv_group(const uint32_t *p, int64_t rt, int64_t nblk, const float *lut,
                              const int B, __m256 *acc)
{
    for (int64_t blk = 0; blk < nblk; blk++, p += B * rt, lut += 16 * KERN_CLAQ_COL_BLOCK) {
        __m256i W0[4], W1[4];
#pragma GCC unroll 4
        for (int w = 0; w < B; w++) {
            W0[w] = _mm256_loadu_si256((const __m256i *)(p + w * rt));
            W1[w] = _mm256_loadu_si256((const __m256i *)(p + w * rt + 8));
        }
#pragma GCC unroll 32
        for (int c = 0; c < KERN_CLAQ_COL_BLOCK; c++) {
            __m256 lo = _mm256_loadu_ps(lut + c * 16);
            __m256 hi = B == 4 ? _mm256_loadu_ps(lut + c * 16 + 8) : lo;
            PIN(lo);
            PIN(hi);
            acc[0] = _mm256_add_ps(acc[0], lookup(code_idx(W0, B, c), lo, hi, B));
            acc[1] = _mm256_add_ps(acc[1], lookup(code_idx(W1, B, c), lo, hi, B));
            PIN(acc[0]);
            PIN(acc[1]);
        }
    }
}

void kern_cpu__claq_gemv_tile_avx2(const kern_claq *k, const float *lut, int64_t t, float *y)
{
    int64_t rt = kern_claq_tile_rows(k, t);
    const uint32_t *tile = k->codes + t * KERN_CLAQ_ROW_TILE * k->words_per_row;
    int64_t w4 = 4 * rt * k->nblk_bits[4], w3 = 3 * rt * k->nblk_bits[3];
    const float *l3 = lut + 16 * KERN_CLAQ_COL_BLOCK * k->nblk_bits[4];
    const float *l2 = l3 + 16 * KERN_CLAQ_COL_BLOCK * k->nblk_bits[3];
    for (int64_t v = 0; v < rt / 16; v++) {
        __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
        const uint32_t *p = tile + v * 16;
        gemv_group(p, rt, k->nblk_bits[4], lut, 4, acc);
        gemv_group(p + w4, rt, k->nblk_bits[3], l3, 3, acc);
        gemv_group(p + w4 + w3, rt, k->nblk_bits[2], l2, 2, acc);
        _mm256_storeu_ps(y + 16 * v, acc[0]);
        _mm256_storeu_ps(y + 16 * v + 8, acc[1]);
    }
}

void kern_cpu__claq_gemv_avx2(const kern_claq *k, const float *lut, int n, int64_t t0, int64_t t1,
                              float *y)
{
    int64_t ystride = (t1 - t0) * KERN_CLAQ_ROW_TILE;
    for (int64_t t = t0; t < t1; t++)
        for (int tok = 0; tok < n; tok++)
            kern_cpu__claq_gemv_tile_avx2(k, lut + (int64_t)tok * k->cols_pad * 16, t,
                                          y + tok * ystride + (t - t0) * KERN_CLAQ_ROW_TILE);
}
