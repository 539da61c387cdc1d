/* kern_cpu_claq_avx2.c — AVX2 kernels of the packed CLAQ matmul (compiled with -mavx2 -mfma
 * -mf16c; called only when the CPU backend picked KERN_ISA_AVX2): the lookup-table builder, the
 * LUT GEMV and the dequantize-GEMM. Same layout and numerics as the AVX-512 file
 * (kern_cpu_claq.h): one ymm lane = one row, 8 rows per vector; code c of a block is brought to
 * the low bits by a shift (and an OR with the next word for codes that straddle two words).
 * vpermps reads 3 index bits, which covers 2- and 3-bit columns (their tables are periodic);
 * 4-bit columns look up both table halves and blend on bit 3 of the code (moved to the sign
 * bit). Mul then add, never FMA (the build is ISO C, so nothing is contracted): every result
 * equals the scalar reference bit for bit.
 * v1: one 16-row group at a time over all blocks: two add chains (bound by the add's latency)
 * and the whole table (cols_pad * 64 B) read again from L2 for every 16 rows.
 * v2: a whole tile (up to 8 vectors: 8 independent chains) per pass, codes read from L1 as the
 * shift's memory operand instead of held in registers (16 ymm registers do not hold a tile's
 * words); column chunks outer and tiles inner as on AVX-512, so a chunk's table slice stays in
 * L1; the next-but-one item's codes prefetched; a vectorized table build; and a dequantize-GEMM
 * for batches from KERN_CPU_CLAQ_GEMM_MIN_N_AVX2 tokens (4 tokens x 16 rows of accumulators, each
 * dequantized weight vector loaded from L1 serving 4 tokens).
 * Worker threads; pure functions. */
#include "kern_cpu_claq.h"

#include <immintrin.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))
/* Keeps GCC from hoisting a block's lookups ahead of their adds and spilling them. */
#define PIN(v) __asm__ volatile("" : "+x"(v))
/* Makes GCC forget what p points at, so a code word is loaded again where it is used (a
 * memory operand of the shift) instead of kept across columns in registers it does not have. */
#define FORGET(p) __asm__ volatile("" : "+r"(p))

/* Tokens per register group of the GEMM (4 x 2 accumulators, 4 broadcast inputs). */
#define GEMM_TG 4

/* Index vector of code c (width B) for rows [8v, 8v + 8) of a block whose words start at p
 * ([word][row], rt rows per word). */
ALWAYS_INLINE __m256i code_idx(const uint32_t *p, int64_t rt, const int B, const int c,
                               const int v)
{
    const int bit = c * B, w = bit >> 5, sh = bit & 31;
    __m256i a = _mm256_loadu_si256((const __m256i *)(p + w * rt + v * 8));
    if (sh == 0) return a;
    __m256i r = _mm256_srli_epi32(a, sh);
    if (sh + B > 32)
        r = _mm256_or_si256(r, _mm256_slli_epi32(
                                   _mm256_loadu_si256((const __m256i *)(p + (w + 1) * rt + v * 8)),
                                   32 - sh));
    return r;
}

/* Entry idx & (2^B - 1) of a 16-entry table held as two halves (lo = entries 0-7). */
ALWAYS_INLINE __m256 lookup(__m256i idx, __m256 lo, __m256 hi, const int B)
{
    __m256 a = _mm256_permutevar8x32_ps(lo, idx);
    if (B < 4) return a;
    __m256 b = _mm256_permutevar8x32_ps(hi, idx);
    return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

void kern_cpu__claq_lut_avx2(const kern_claq *k, const float *x, float *xs, float *lut)
{
    int64_t s = 0;
    for (int b = 4; b >= 2; b--) {
        int64_t end = s + KERN_CLAQ_COL_BLOCK * k->nblk_bits[b];
        for (; s < end; s++) {
            uint32_t j = k->colmap[s];
            float xv = j == KERN_CLAQ_PAD ? 0.0f : x[j];
            xs[s] = xv;
            const uint16_t *cb = k->cb + kern_claq_cb_offset(k, s);
            __m256 lo, hi;
            if (b == 4) {
                lo = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)cb));
                hi = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(cb + 8)));
            } else if (b == 3) {
                lo = hi = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)cb));
            } else {
                __m128 q = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)cb));
                lo = hi = _mm256_set_m128(q, q);
            }
            __m256 xb = _mm256_set1_ps(xv);
            _mm256_storeu_ps(lut + s * 16, _mm256_mul_ps(xb, lo));
            _mm256_storeu_ps(lut + s * 16 + 8, _mm256_mul_ps(xb, hi));
        }
    }
}

/* One work item of the GEMV: nblk consecutive blocks of width B of one tile (NV = rt / 8
 * vectors) for one token; y holds the tile's partial sums (first: start from zero instead).
 * pf: where the codes of the next-but-one item start; one line of it requested per column. */
ALWAYS_INLINE void gemv_item(const uint32_t *p, int64_t rt, int64_t nblk, const float *lut,
                             const char *pf, int first, float *y, const int B, const int NV)
{
    __m256 acc[8];
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) acc[v] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(y + 8 * v);
    for (int64_t blk = 0; blk < nblk; blk++, p += B * rt, pf += B * rt * 4,
                 lut += 16 * KERN_CLAQ_COL_BLOCK) {
#pragma GCC unroll 32
        for (int c = 0; c < KERN_CLAQ_COL_BLOCK; c++) {
            __m256 lo = _mm256_loadu_ps(lut + c * 16);
            __m256 hi = B == 4 ? _mm256_loadu_ps(lut + c * 16 + 8) : lo;
            PIN(lo);
            if (B == 4) PIN(hi);
            if (c < B * NV / 2) _mm_prefetch(pf + 64 * c, _MM_HINT_T0);
            FORGET(p);
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++)
                acc[v] = _mm256_add_ps(acc[v], lookup(code_idx(p, rt, B, c, v), lo, hi, B));
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++) PIN(acc[v]);
        }
    }
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) _mm256_storeu_ps(y + 8 * v, acc[v]);
}

KERN_CPU_CLAQ_GEMV_ITEM(4, 2) KERN_CPU_CLAQ_GEMV_ITEM(4, 4)
KERN_CPU_CLAQ_GEMV_ITEM(4, 6) KERN_CPU_CLAQ_GEMV_ITEM(4, 8)
KERN_CPU_CLAQ_GEMV_ITEM(3, 2) KERN_CPU_CLAQ_GEMV_ITEM(3, 4)
KERN_CPU_CLAQ_GEMV_ITEM(3, 6) KERN_CPU_CLAQ_GEMV_ITEM(3, 8)
KERN_CPU_CLAQ_GEMV_ITEM(2, 2) KERN_CPU_CLAQ_GEMV_ITEM(2, 4)
KERN_CPU_CLAQ_GEMV_ITEM(2, 6) KERN_CPU_CLAQ_GEMV_ITEM(2, 8)
/* [width][rt / 16]: tiles are 16, 32, 48 or 64 rows (rows are padded to 16), 2-8 vectors. */
static const kern_claq_gemv_items gemv_items = {
    [4] = {NULL, gemv_item_4_2, gemv_item_4_4, gemv_item_4_6, gemv_item_4_8},
    [3] = {NULL, gemv_item_3_2, gemv_item_3_4, gemv_item_3_6, gemv_item_3_8},
    [2] = {NULL, gemv_item_2_2, gemv_item_2_4, gemv_item_2_6, gemv_item_2_8},
};

/* Column chunks outer, tiles inner, as on AVX-512 (kern_cpu__claq_gemv_walk). */
void kern_cpu__claq_gemv_avx2(const kern_claq *k, const float *lut, int n, int64_t t0, int64_t t1,
                              float *y)
{
    kern_cpu__claq_gemv_walk(k, &gemv_items, lut, n, t0, t1, y);
}

/* TG tokens' accumulators for 16 rows walk the dequantized block's 32 columns in order,
 * acc += W * x as a product, then a sum. work: the block [col][64 rows] at this row group;
 * xb: the block's inputs of these tokens, [TG][32]; y: their tile rows at this group, [TG][64]. */
ALWAYS_INLINE void gemm_group_tokens(const float *work, const float *xb, float *y, const int TG)
{
    __m256 a[GEMM_TG][2];
#pragma GCC unroll 4
    for (int j = 0; j < TG; j++)
#pragma GCC unroll 2
        for (int v = 0; v < 2; v++) a[j][v] = _mm256_loadu_ps(y + j * KERN_CLAQ_ROW_TILE + v * 8);
#pragma GCC unroll 2
    for (int c = 0; c < KERN_CLAQ_COL_BLOCK; c++) {
        __m256 b[GEMM_TG];
#pragma GCC unroll 4
        for (int j = 0; j < TG; j++) b[j] = _mm256_broadcast_ss(xb + j * KERN_CLAQ_COL_BLOCK + c);
#pragma GCC unroll 2
        for (int v = 0; v < 2; v++) {
            __m256 w = _mm256_loadu_ps(work + c * KERN_CLAQ_ROW_TILE + v * 8);
#pragma GCC unroll 4
            for (int j = 0; j < TG; j++) a[j][v] = _mm256_add_ps(a[j][v], _mm256_mul_ps(w, b[j]));
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < TG; j++)
#pragma GCC unroll 2
        for (int v = 0; v < 2; v++) _mm256_storeu_ps(y + j * KERN_CLAQ_ROW_TILE + v * 8, a[j][v]);
}

/* Dequantize-GEMM: one block (32 columns x rt rows) is expanded to fp32 in work [col][row] once,
 * then for each 16-row group every token's accumulators walk its 32 columns in order. */
ALWAYS_INLINE void gemm_group(const uint32_t *p, int64_t rt, int64_t nblk, const float *cbf,
                              const float *xb, int64_t nx, int n, const int B, float *y,
                              float *work)
{
    for (int64_t blk = 0; blk < nblk; blk++, p += B * rt, cbf += 16 * KERN_CLAQ_COL_BLOCK,
                 xb += nx * KERN_CLAQ_COL_BLOCK) {
        for (int64_t v = 0; v < rt / 8; v++) {
            const uint32_t *pv = p + v * 8;
#pragma GCC unroll 32
            for (int c = 0; c < KERN_CLAQ_COL_BLOCK; c++) {
                __m256 lo = _mm256_loadu_ps(cbf + c * 16);
                __m256 hi = B == 4 ? _mm256_loadu_ps(cbf + c * 16 + 8) : lo;
                _mm256_storeu_ps(work + c * KERN_CLAQ_ROW_TILE + v * 8,
                                 lookup(code_idx(pv, rt, B, c, 0), lo, hi, B));
            }
        }
        for (int64_t g = 0; g < rt / 16; g++) {
            int tok = 0;
            for (; tok + GEMM_TG <= n; tok += GEMM_TG)
                gemm_group_tokens(work + g * 16, xb + (int64_t)tok * KERN_CLAQ_COL_BLOCK,
                                  y + (int64_t)tok * KERN_CLAQ_ROW_TILE + g * 16, GEMM_TG);
            for (; tok < n; tok++)
                gemm_group_tokens(work + g * 16, xb + (int64_t)tok * KERN_CLAQ_COL_BLOCK,
                                  y + (int64_t)tok * KERN_CLAQ_ROW_TILE + g * 16, 1);
        }
    }
}

void kern_cpu__claq_gemm_tile_avx2(const kern_claq *k, const float *cbf, const float *xb,
                                   int64_t nx, int n, int64_t t, float *y, float *work)
{
    int64_t rt = kern_claq_tile_rows(k, t);
    const uint32_t *p = k->codes + t * KERN_CLAQ_ROW_TILE * k->words_per_row;
    for (int64_t i = 0; i < (int64_t)n * KERN_CLAQ_ROW_TILE; i++) y[i] = 0.0f;
    for (int b = 4; b >= 2; b--) {
        const int64_t nb = k->nblk_bits[b];
        if (b == 4) gemm_group(p, rt, nb, cbf, xb, nx, n, 4, y, work);
        else if (b == 3) gemm_group(p, rt, nb, cbf, xb, nx, n, 3, y, work);
        else gemm_group(p, rt, nb, cbf, xb, nx, n, 2, y, work);
        p += b * rt * nb;
        cbf += 16 * KERN_CLAQ_COL_BLOCK * nb;
        xb += nx * KERN_CLAQ_COL_BLOCK * nb;
    }
}
