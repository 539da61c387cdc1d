/* kern_cpu_claq_avx512.c — AVX-512 tile kernels of the packed CLAQ matmul (compiled with
 * -mavx512f/bw/vl/dq; called only when the CPU backend picked KERN_ISA_AVX512).
 * Layout consumed (kern_claq.h): a block of width b is b words per row, stored [word][row], so
 * one 64-byte load gives one word of 16 consecutive rows: lane i = row i. Code c of the block is
 * bits [c*b, c*b+b) of the row's bit string; a constant rotate (a shift pair and an OR with the
 * next word for the two straddling 3-bit codes) brings it to the low bits, and vpermps
 * (_mm512_permutexvar_ps) looks it up in the column's 16-entry LUT, which only reads the index's
 * low 4 bits — the LUT is periodic in 2^b, so the garbage above bit b needs no mask. Then one
 * vaddps per 16 weights.
 * v1: 4 x 16 rows per pass (a 64-row tile), codes of a block held in registers, loops fully
 * unrolled per width; mul then add (never FMA) so results equal the scalar reference bit for bit.
 * v2: vprord instead of vpsrld for the index (Zen 5 issues it on the FMA pipes, leaving the
 * FADD pipes to vaddps and vpermps: ~1.0 -> ~0.8 cycles per 16 weights in L2), codes
 * prefetched 8 KiB ahead (4 KiB was too short for the faster loop).
 * v3: the GEMV takes a range of tiles and walks it column chunk by column chunk (4 blocks = 128
 * columns, an 8 KiB LUT slice that stays in L1), tiles inside; partial sums wait in y. The
 * per-tile walk re-read the whole LUT (cols_pad * 64 B, 2x the 4-bit codes' bytes) from L2 or
 * worse for every tile. Streaming 4-bit, one core: ~48 -> ~59 Gweights/s. Prefetches spread one
 * per column, two items ahead (T1 hints, 1 or 4 items ahead, 8-block chunks: all slower).
 * v4: the dequantize-GEMM multiplies four tokens per weight vector loaded (was two), reads the
 * inputs block-major (a block's inputs for every token contiguous, was one strided row per
 * token) and runs in token chunks (kern_cpu_claq.h): ~40 % -> ~75-80 % of the core's
 * product-and-sum peak, a 523-token TinyLlama prompt 1.6x faster. (A fused multiply-add did not
 * help: Zen 5's FMUL and FADD pipes give the same rate, and the GEMV lost 20 % with it.)
 * Worker threads; pure functions. */
#include "kern_cpu_claq_avx512.h"

/* Tokens per register group of the dequantize-GEMM and its column unroll (6 measured the same). */
#define GEMM_TG 4
#define GEMM_UNROLL 2
#define DO_PRAGMA(x) _Pragma(#x)
#define UNROLL_N(n) DO_PRAGMA(GCC unroll n)

/* Periodic 16-entry table of column s: fp16 codebook -> fp32, entries k & (2^b-1). */
ALWAYS_INLINE __m512 cb_periodic(const kern_claq *k, int64_t s, int b)
{
    const uint16_t *cb = k->cb + kern_claq_cb_offset(k, s);
    if (b == 4) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)cb));
    __m512 v;
    if (b == 3) v = _mm512_castps256_ps512(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)cb)));
    else v = _mm512_castps128_ps512(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)cb)));
    const __m512i idx = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    return _mm512_permutexvar_ps(_mm512_and_si512(idx, _mm512_set1_epi32((1 << b) - 1)), v);
}

void kern_cpu__claq_lut_avx512(const kern_claq *k, const float *x, float *xs, float *lut)
{
    int64_t s = 0;
    for (int b = 4; b >= 2; b--) {
        int64_t end = s + KERN_CLAQ_COL_BLOCK * k->nblk_bits[b];
        for (; s < end; s++) {
            uint32_t j = k->colmap[s];
            float xv = j == KERN_CLAQ_PAD ? 0.0f : x[j];
            xs[s] = xv;
            _mm512_storeu_ps(lut + s * 16, _mm512_mul_ps(_mm512_set1_ps(xv), cb_periodic(k, s, b)));
        }
    }
}

/* nblk consecutive blocks of one width for NV 16-row vectors: acc[v] += LUT lookups, column by
 * column. pf: where the codes of the next-but-one work item start (same block layout); its lines
 * are requested while this item computes (prefetches never fault, so pf may run past the end). */
ALWAYS_INLINE void gemv_blocks(const uint32_t *p, int64_t rt, int64_t nblk, const float *lut,
                               const char *pf, const int B, const int NV, __m512 *acc)
{
    for (int64_t blk = 0; blk < nblk; blk++, p += B * rt, pf += B * rt * 4,
                 lut += 16 * KERN_CLAQ_COL_BLOCK) {
        __m512i W[4][4];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
#pragma GCC unroll 4
            for (int w = 0; w < B; w++)
                W[v][w] = _mm512_loadu_si512((const void *)(p + w * rt + v * 16));
#pragma GCC unroll 32
        for (int c = 0; c < KERN_CLAQ_COL_BLOCK; c++) {
            __m512 L = _mm512_loadu_ps(lut + c * 16);
            PIN(L);
            /* The pf block's B * NV lines, one per column (measured 0-10 % faster streaming
             * than issuing them all at the block's start). */
            if (c < B * NV) _mm_prefetch(pf + 64 * c, _MM_HINT_T0);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                acc[v] = _mm512_add_ps(acc[v], _mm512_permutexvar_ps(code_idx(W[v], B, c), L));
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) PIN(acc[v]);
        }
    }
}

/* One work item: nblk blocks of width B of one tile (NV = rt / 16 vectors) for one token;
 * y holds the tile's partial sums (first: start from zero instead). */
ALWAYS_INLINE void gemv_item(const uint32_t *p, int64_t rt, int64_t nblk, const float *lut,
                             const char *pf, int first, float *y, const int B, const int NV)
{
    __m512 acc[4];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) acc[v] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(y + 16 * v);
    gemv_blocks(p, rt, nblk, lut, pf, B, NV, acc);
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) _mm512_storeu_ps(y + 16 * v, acc[v]);
}

KERN_CPU_CLAQ_GEMV_ITEM(4, 1) KERN_CPU_CLAQ_GEMV_ITEM(4, 2)
KERN_CPU_CLAQ_GEMV_ITEM(4, 3) KERN_CPU_CLAQ_GEMV_ITEM(4, 4)
KERN_CPU_CLAQ_GEMV_ITEM(3, 1) KERN_CPU_CLAQ_GEMV_ITEM(3, 2)
KERN_CPU_CLAQ_GEMV_ITEM(3, 3) KERN_CPU_CLAQ_GEMV_ITEM(3, 4)
KERN_CPU_CLAQ_GEMV_ITEM(2, 1) KERN_CPU_CLAQ_GEMV_ITEM(2, 2)
KERN_CPU_CLAQ_GEMV_ITEM(2, 3) KERN_CPU_CLAQ_GEMV_ITEM(2, 4)
static const kern_claq_gemv_items gemv_items = {
    [4] = {NULL, gemv_item_4_1, gemv_item_4_2, gemv_item_4_3, gemv_item_4_4},
    [3] = {NULL, gemv_item_3_1, gemv_item_3_2, gemv_item_3_3, gemv_item_3_4},
    [2] = {NULL, gemv_item_2_1, gemv_item_2_2, gemv_item_2_3, gemv_item_2_4},
};

/* Column chunks of KERN_CPU_CLAQ_GEMV_CHUNK blocks (an 8 KiB LUT slice per token, in L1) outer,
 * tiles inner (kern_cpu__claq_gemv_walk): codes are read in runs of 4 blocks per tile instead of
 * one sequential stream; the prefetch runs two items ahead. */
void kern_cpu__claq_gemv_avx512(const kern_claq *k, const float *lut, int n, int64_t t0,
                                int64_t t1, float *y)
{
    kern_cpu__claq_gemv_walk(k, &gemv_items, lut, n, t0, t1, y);
}

/* TG tokens' accumulators walk the dequantized block's 32 columns in order, acc += W * x as a
 * product, then a sum: TG x NV independent chains, and each weight vector loaded
 * from L1 serves TG of them.
 * xb: the block's inputs of these tokens, [TG][32]; y: their tile rows, [TG][64]. */
ALWAYS_INLINE void gemm_group_tokens(const float *work, const float *xb, float *y, const int TG,
                                     const int NV)
{
    __m512 a[GEMM_TG][4];
#pragma GCC unroll 8
    for (int j = 0; j < TG; j++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) a[j][v] = _mm512_loadu_ps(y + j * KERN_CLAQ_ROW_TILE + v * 16);
    UNROLL_N(GEMM_UNROLL)
    for (int c = 0; c < KERN_CLAQ_COL_BLOCK; c++) {
        __m512 b[GEMM_TG];
#pragma GCC unroll 8
        for (int j = 0; j < TG; j++) b[j] = _mm512_set1_ps(xb[j * KERN_CLAQ_COL_BLOCK + c]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            __m512 w = _mm512_loadu_ps(work + c * KERN_CLAQ_ROW_TILE + v * 16);
#pragma GCC unroll 8
            for (int j = 0; j < TG; j++) a[j][v] = _mm512_add_ps(a[j][v], _mm512_mul_ps(w, b[j]));
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < TG; j++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) _mm512_storeu_ps(y + j * KERN_CLAQ_ROW_TILE + v * 16, a[j][v]);
}

/* Every token of the block: groups of GEMM_TG, then one at a time. */
ALWAYS_INLINE void gemm_tokens(const float *work, const float *xb, int n, float *y, const int NV)
{
    int tok = 0;
    for (; tok + GEMM_TG <= n; tok += GEMM_TG)
        gemm_group_tokens(work, xb + (int64_t)tok * KERN_CLAQ_COL_BLOCK,
                          y + (int64_t)tok * KERN_CLAQ_ROW_TILE, GEMM_TG, NV);
    for (; tok < n; tok++)
        gemm_group_tokens(work, xb + (int64_t)tok * KERN_CLAQ_COL_BLOCK,
                          y + (int64_t)tok * KERN_CLAQ_ROW_TILE, 1, NV);
}

/* Dequantize-GEMM: one block (32 columns x rt rows) is expanded to fp32 in work [col][row] once,
 * then every token's accumulators walk its 32 columns in order: acc += W * x (mul, then add). */
ALWAYS_INLINE void gemm_group(const uint32_t *p, int64_t rt, int64_t nblk, const float *cbf,
                              const float *xb, int64_t nx, int n, const int B, float *y,
                              float *work)
{
    const int64_t nv = rt / 16;
    for (int64_t blk = 0; blk < nblk; blk++, p += B * rt, cbf += 16 * KERN_CLAQ_COL_BLOCK,
                 xb += nx * KERN_CLAQ_COL_BLOCK) {
        for (int64_t v = 0; v < nv; v++) {
            __m512i W[4];
#pragma GCC unroll 4
            for (int w = 0; w < B; w++)
                W[w] = _mm512_loadu_si512((const void *)(p + w * rt + v * 16));
#pragma GCC unroll 32
            for (int c = 0; c < KERN_CLAQ_COL_BLOCK; c++)
                _mm512_storeu_ps(work + c * KERN_CLAQ_ROW_TILE + v * 16,
                                 _mm512_permutexvar_ps(code_idx(W, B, c),
                                                       _mm512_loadu_ps(cbf + c * 16)));
        }
        switch (nv) {
        case 1: gemm_tokens(work, xb, n, y, 1); break;
        case 2: gemm_tokens(work, xb, n, y, 2); break;
        case 3: gemm_tokens(work, xb, n, y, 3); break;
        default: gemm_tokens(work, xb, n, y, 4); break;
        }
    }
}

void kern_cpu__claq_gemm_tile_avx512(const kern_claq *k, const float *cbf, const float *xb,
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
