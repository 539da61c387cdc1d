/* kern_cpu_claq_avx512bf16.c — the bfloat16 prefill GEMM of packed CLAQ matrices on AVX-512 BF16
 * (vdpbf16ps; compiled with -mavx512bf16, called only when kern_cpu_has_bf16 said the CPU has
 * it). Numerics: kern_cpu_claq.h, "The bfloat16 prefill GEMM" — relaxed against the fp32 matmul,
 * fixed per token. A block (32 columns x rt rows) is dequantized once per token chunk into work
 * as 16 column pairs x rt rows, one 32-bit word per (pair, row) holding the two columns' bf16
 * weights (even column low): two vpermd lookups in the parity-shifted codebooks and an OR. Then
 * each token's accumulators walk the pairs in order, one vdpbf16ps per 16 rows x 2 columns
 * against the token's broadcast input pair: 32 products per instruction where the fp32 GEMM
 * issues a vmulps and a vaddps for 16. Worker threads; pure functions. */
#include "kern_cpu_claq_avx512.h"

/* Tokens per register group: TG x NV accumulators (NV <= 4 row vectors). 4 measured ~5 % faster
 * than 6 (and 8 spilled: 30 % slower), bench_cpu_gemv --gemm on TinyLlama's shapes. */
#define BF_TG 4
#define PAIRS (KERN_CLAQ_COL_BLOCK / 2)

void kern_cpu__claq_block_bf16_avx512(const float *xs, uint16_t *xh)
{
    /* cvtne2ps: the second operand's 16 values land first, so (hi, lo) keeps column order. */
    __m512bh h = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(xs + 16), _mm512_loadu_ps(xs));
    _mm512_storeu_si512((void *)xh, (__m512i)h);
}

/* TG tokens x NV row vectors over the dequantized block: acc += pair products, pair by pair.
 * xh: the block's inputs of these tokens, [TG][32] bf16; y: their tile rows, [TG][64]. */
ALWAYS_INLINE void bf_group_tokens(const uint32_t *work, const uint16_t *xh, float *y,
                                   const int TG, const int NV)
{
    __m512 a[BF_TG][4];
#pragma GCC unroll 8
    for (int j = 0; j < TG; j++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) a[j][v] = _mm512_loadu_ps(y + j * KERN_CLAQ_ROW_TILE + v * 16);
#pragma GCC unroll 2
    for (int p = 0; p < PAIRS; p++) {
        __m512bh b[BF_TG];
#pragma GCC unroll 8
        for (int j = 0; j < TG; j++) {
            uint32_t pair;
            __builtin_memcpy(&pair, xh + j * KERN_CLAQ_COL_BLOCK + 2 * p, 4);
            b[j] = (__m512bh)_mm512_set1_epi32((int)pair);
        }
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            __m512bh w = (__m512bh)_mm512_loadu_si512((const void *)(work + p * KERN_CLAQ_ROW_TILE +
                                                                     v * 16));
#pragma GCC unroll 8
            for (int j = 0; j < TG; j++) a[j][v] = _mm512_dpbf16_ps(a[j][v], w, b[j]);
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < TG; j++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) _mm512_storeu_ps(y + j * KERN_CLAQ_ROW_TILE + v * 16, a[j][v]);
}

ALWAYS_INLINE void bf_tokens(const uint32_t *work, const uint16_t *xh, int n, float *y,
                             const int NV)
{
    int tok = 0;
    for (; tok + BF_TG <= n; tok += BF_TG)
        bf_group_tokens(work, xh + (int64_t)tok * KERN_CLAQ_COL_BLOCK,
                        y + (int64_t)tok * KERN_CLAQ_ROW_TILE, BF_TG, NV);
    for (; tok < n; tok++)
        bf_group_tokens(work, xh + (int64_t)tok * KERN_CLAQ_COL_BLOCK,
                        y + (int64_t)tok * KERN_CLAQ_ROW_TILE, 1, NV);
}

/* nblk blocks of width B: dequantize each to work [pair][row], then run every token over it. */
ALWAYS_INLINE void bf_group(const uint32_t *p, int64_t rt, int64_t nblk, const uint32_t *cbh,
                            const uint16_t *xh, int64_t nx, int n, const int B, float *y,
                            uint32_t *work)
{
    const int64_t nv = rt / 16;
    for (int64_t blk = 0; blk < nblk; blk++, p += B * rt, cbh += 16 * KERN_CLAQ_COL_BLOCK,
                 xh += nx * KERN_CLAQ_COL_BLOCK) {
        for (int64_t v = 0; v < nv; v++) {
            __m512i W[4];
#pragma GCC unroll 4
            for (int w = 0; w < B; w++)
                W[w] = _mm512_loadu_si512((const void *)(p + w * rt + v * 16));
#pragma GCC unroll 16
            for (int q = 0; q < PAIRS; q++) {
                __m512i lo = _mm512_permutexvar_epi32(code_idx(W, B, 2 * q),
                                                      _mm512_loadu_si512(cbh + 2 * q * 16));
                __m512i hi = _mm512_permutexvar_epi32(code_idx(W, B, 2 * q + 1),
                                                      _mm512_loadu_si512(cbh + (2 * q + 1) * 16));
                _mm512_storeu_si512((void *)(work + q * KERN_CLAQ_ROW_TILE + v * 16),
                                    _mm512_or_si512(lo, hi));
            }
        }
        switch (nv) {
        case 1: bf_tokens(work, xh, n, y, 1); break;
        case 2: bf_tokens(work, xh, n, y, 2); break;
        case 3: bf_tokens(work, xh, n, y, 3); break;
        default: bf_tokens(work, xh, n, y, 4); break;
        }
    }
}

void kern_cpu__claq_gemm_bf16_tile_avx512(const kern_claq *k, const uint32_t *cbh,
                                          const uint16_t *xh, int64_t nx, int n, int64_t t,
                                          float *y, float *work)
{
    int64_t rt = kern_claq_tile_rows(k, t);
    const uint32_t *p = k->codes + t * KERN_CLAQ_ROW_TILE * k->words_per_row;
    uint32_t *wk = (uint32_t *)work;
    for (int64_t i = 0; i < (int64_t)n * KERN_CLAQ_ROW_TILE; i++) y[i] = 0.0f;
    for (int b = 4; b >= 2; b--) {
        const int64_t nb = k->nblk_bits[b];
        if (b == 4) bf_group(p, rt, nb, cbh, xh, nx, n, 4, y, wk);
        else if (b == 3) bf_group(p, rt, nb, cbh, xh, nx, n, 3, y, wk);
        else bf_group(p, rt, nb, cbh, xh, nx, n, 2, y, wk);
        p += b * rt * nb;
        cbh += 16 * KERN_CLAQ_COL_BLOCK * nb;
        xh += nx * KERN_CLAQ_COL_BLOCK * nb;
    }
}
