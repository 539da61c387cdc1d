/* kern_cpu_claq.h — internals of the CPU packed-CLAQ matmul, shared by kern_cpu_claq.c (the
 * dispatcher: LUT building, threading, outliers) and the per-ISA tile kernels in
 * kern_cpu_claq_{ref,avx2,avx512}.c. Not for the engine (kern.h is).
 *
 * Numerics (the batch-invariance and bit-identity contract): for token t and row r,
 *   y[t][r] = 0; for s = 0 .. cols_pad-1 in order: y += L_s[code(r, s)]
 *   then for each outlier of row r in ascending storage column: y += xs[s] * delta
 * where xs[s] = x[t][colmap[s]] (0 for padding) and L_s[k] = xs[s] * cb_s[k] (one fp32 product,
 * no FMA). Every path — scalar, AVX2, AVX-512, GEMV or dequantize-GEMM — performs exactly this
 * sequence of fp32 operations per row, so results are bit-identical across paths, batch sizes
 * and thread counts. (A fused multiply-add would halve the GEMM's instructions but not its time
 * on Zen 4/5, whose two FMUL and two FADD pipes give a product and a sum per cycle at the FMA
 * rate; and the GEMV's lookup of precomputed products, one add per weight, lost ~20 % when it
 * became a codebook lookup plus FMA. Measured 2026-12-06, docs/benchmarks.md.) */
#ifndef KERN_CPU_CLAQ_H
#define KERN_CPU_CLAQ_H

#include <stdint.h>

#include "kern_claq.h"
#include "kern_cpu_impl.h"

/* LUT of one token: lut[s*16 + k] = xs[s] * cb_s[k & (2^b - 1)] for k < 16 (entries past 2^b
 * repeat the table periodically so a kernel may look up with any garbage in bits >= b).
 * lut has cols_pad * 16 floats; xs (out) has cols_pad floats. */
typedef void (*kern_claq_lut_fn)(const kern_claq *k, const float *x, float *xs, float *lut);
void kern_cpu__claq_lut_ref(const kern_claq *k, const float *x, float *xs, float *lut);
void kern_cpu__claq_lut_avx2(const kern_claq *k, const float *x, float *xs, float *lut);
void kern_cpu__claq_lut_avx512(const kern_claq *k, const float *x, float *xs, float *lut);

/* Dense LUT pass of tile t for one token: y[r - t*64] for the tile's rt rows (y has room for
 * KERN_CLAQ_ROW_TILE floats; padding rows are computed too). The per-tile reference. */
void kern_cpu__claq_gemv_tile_ref(const kern_claq *k, const float *lut, int64_t t, float *y);

/* Dense LUT pass of tiles [t0, t1) for n tokens, what the dispatcher calls: lut [n][cols_pad *
 * 16]; y [n][(t1 - t0) * KERN_CLAQ_ROW_TILE], token-major, rows relative to tile t0's first row
 * (padding rows are computed too). t1 - t0 <= KERN_CPU_CLAQ_GEMV_TILES, n <=
 * KERN_CPU_CLAQ_GEMV_MAX_N. A range lets a kernel walk a few blocks' columns over all its tiles
 * while their LUT slice is in L1 (the per-tile LUT is cols_pad * 64 bytes, far past L1). */
#define KERN_CPU_CLAQ_GEMV_TILES 16
typedef void (*kern_claq_gemv_fn)(const kern_claq *k, const float *lut, int n, int64_t t0,
                                  int64_t t1, float *y);
void kern_cpu__claq_gemv_ref(const kern_claq *k, const float *lut, int n, int64_t t0, int64_t t1,
                             float *y);
void kern_cpu__claq_gemv_avx2(const kern_claq *k, const float *lut, int n, int64_t t0, int64_t t1,
                              float *y);
void kern_cpu__claq_gemv_avx512(const kern_claq *k, const float *lut, int n, int64_t t0,
                                int64_t t1, float *y);

/* One work item of a SIMD GEMV: nblk consecutive blocks of width B (the table's row) of one
 * tile of rt rows (rt / 16 its column) for one token; y holds the tile's partial sums (first:
 * start from zero instead); pf is where the codes of the next-but-one item start (prefetch
 * only, may point past the codes). items[B][rt / 16] per ISA. */
typedef void (*kern_claq_gemv_item_fn)(const uint32_t *p, int64_t rt, int64_t nblk,
                                       const float *lut, const char *pf, int first, float *y);
typedef kern_claq_gemv_item_fn kern_claq_gemv_items[5][5];
/* In a SIMD file: defines gemv_item_B_NV, an item kernel that calls the file's always-inline
 * gemv_item(p, rt, nblk, lut, pf, first, y, B, NV) with constant width and vector count. */
#define KERN_CPU_CLAQ_GEMV_ITEM(B, NV)                                                             \
    static void gemv_item_##B##_##NV(const uint32_t *p, int64_t rt, int64_t nblk, const float *l,  \
                                     const char *pf, int first, float *y)                          \
    {                                                                                              \
        gemv_item(p, rt, nblk, l, pf, first, y, B, NV);                                            \
    }
/* The walk both SIMD GEMVs share: column chunks of KERN_CPU_CLAQ_GEMV_CHUNK blocks outer,
 * tiles [t0, t1) inner, tokens innermost, so a chunk's table slice stays in L1 while every
 * tile walks it; each row still adds its lookups in storage-column order (partial sums wait in
 * y between chunks, exact in fp32), so the result is the per-tile reference's bit for bit. */
#define KERN_CPU_CLAQ_GEMV_CHUNK 4
void kern_cpu__claq_gemv_walk(const kern_claq *k, const kern_claq_gemv_items *items,
                              const float *lut, int n, int64_t t0, int64_t t1, float *y);

/* Dense dequantize-and-multiply pass of tile t for n tokens: cbf is the LUT of an all-ones
 * input (the fp32 codebooks, periodic as above); xb their gathered inputs block-major within a
 * layout of nx tokens, xb[(blk * nx + tok) * KERN_CLAQ_COL_BLOCK + c] = xs of token tok at
 * storage column blk * 32 + c (one block's inputs for all tokens are contiguous; a chunk of
 * tokens passes xb at its first token and the layout's nx); y [n][KERN_CLAQ_ROW_TILE]
 * (token-major, tile-local rows, overwritten). work: at least KERN_CPU_CLAQ_GEMM_WORK floats.
 * Per row it adds xs * W in storage-column order, the same fp32 product and sum as the LUT. */
#define KERN_CPU_CLAQ_GEMM_WORK (KERN_CLAQ_COL_BLOCK * KERN_CLAQ_ROW_TILE)
typedef void (*kern_claq_gemm_fn)(const kern_claq *k, const float *cbf, const float *xb,
                                  int64_t nx, int n, int64_t t, float *y, float *work);
void kern_cpu__claq_gemm_tile_ref(const kern_claq *k, const float *cbf, const float *xb,
                                  int64_t nx, int n, int64_t t, float *y, float *work);
void kern_cpu__claq_gemm_tile_avx2(const kern_claq *k, const float *cbf, const float *xb,
                                   int64_t nx, int n, int64_t t, float *y, float *work);
void kern_cpu__claq_gemm_tile_avx512(const kern_claq *k, const float *cbf, const float *xb,
                                     int64_t nx, int n, int64_t t, float *y, float *work);
/* Tokens per dequantize-GEMM pass: a chunk's tile outputs (32 KiB) and block inputs (16 KiB) stay
 * near L1 (all 512 tokens of a prompt at once spilled to L3 on 5632-column matrices); each
 * chunk dequantizes the tile again (~2 % of the work). */
#define KERN_CPU_CLAQ_GEMM_CHUNK 128

/* The bfloat16 prefill GEMM (kern.h matmul_bf16: relaxed numerics, not the contract above).
 * Per row of token t, storage columns taken in pairs (2i, 2i+1) in order:
 *   y = 0; for each pair: y += xh[2i+1] * wh[2i+1]; y += xh[2i] * wh[2i]
 * where xh = bf16(xs) and wh = bf16(fp32 codebook entry), both rounded to nearest even, each
 * product exact and each sum one fp32 rounding (what vdpbf16ps does), subnormal inputs read
 * as zero and subnormal results flushed to zero (its DAZ/FTZ, and vcvtne2ps2bf16's); then the
 * outliers in fp32 exactly as above. The order
 * depends on nothing but the matrix, so y[t] is the same for any n and thread count.
 * xh: [blocks][nx][32] bf16, block-major as xb above; cbh [cols_pad * 16]: bf16 of column s's
 * periodic codebook, in the low half of the word for even s and the high half for odd s (so a
 * pair's two lookups OR into one dot-product operand). work: KERN_CPU_CLAQ_GEMM_WORK floats. */
typedef void (*kern_claq_gemm_bf16_fn)(const kern_claq *k, const uint32_t *cbh,
                                       const uint16_t *xh, int64_t nx, int n, int64_t t, float *y,
                                       float *work);
void kern_cpu__claq_gemm_bf16_tile_ref(const kern_claq *k, const uint32_t *cbh,
                                       const uint16_t *xh, int64_t nx, int n, int64_t t, float *y,
                                       float *work);
void kern_cpu__claq_gemm_bf16_tile_avx512(const kern_claq *k, const uint32_t *cbh,
                                          const uint16_t *xh, int64_t nx, int n, int64_t t,
                                          float *y, float *work);
/* xh[c] = bf16(xs[c]) for c < 32: one block of one token's inputs, already gathered into
 * storage order (the fp32 GEMM's gather), rounded as the GEMM's numerics say. */
typedef void (*kern_claq_block_bf16_fn)(const float *xs, uint16_t *xh);
void kern_cpu__claq_block_bf16_ref(const float *xs, uint16_t *xh);
void kern_cpu__claq_block_bf16_avx512(const float *xs, uint16_t *xh);
/* Fills cbh [cols_pad * 16] (every ISA: once per call, not per token). */
void kern_cpu__claq_cb_bf16(const kern_claq *k, uint32_t *cbh);

/* Functions of an ISA (gemm NULL, the scalar ISA: batches of any size run the GEMV, in 8-token
 * chunks). */
typedef struct kern_claq_fns {
    kern_claq_lut_fn lut;
    kern_claq_gemv_fn gemv;
    kern_claq_gemm_fn gemm;
    int gemm_min_n;   /* batches from this size take the GEMM (when there is one) */
} kern_claq_fns;
kern_claq_fns kern_cpu__claq_fns(kern_isa isa);

/* The bfloat16 GEMM's functions: the AVX-512 BF16 kernels when avx512bf16 (the CPU has
 * vdpbf16ps: kern_cpu_has_bf16), else the scalar reference (the tests' oracle). */
typedef struct kern_claq_bf16_fns {
    kern_claq_block_bf16_fn to_bf16;
    kern_claq_gemm_bf16_fn gemm;
} kern_claq_bf16_fns;
kern_claq_bf16_fns kern_cpu__claq_bf16_fns(int avx512bf16);

/* Tokens of one GEMV pass at most (its tables are per token): larger batches without a GEMM run
 * in chunks of this many. */
#define KERN_CPU_CLAQ_GEMV_MAX_N 8
/* Batch size from which the dispatcher switches from the LUT GEMV to the dequantize-GEMM, per
 * ISA (the same bits either way: only speed decides). AVX-512: 8. AVX2: 4, where its GEMM's
 * 4-token register group is full; measured 2026-12-07 on Zen 3 (bench_cpu_gemv --gemm, 3-bit
 * TinyLlama shapes, one thread): at 4 and 6 tokens the GEMM gave 10.5-15.2 G pairs/s against the
 * GEMV's 7.9-10.2, at 2 tokens 6.6-7.6 against 8.9-11.2, at 3 about even. _ANY: the smallest
 * of them (what scratch is sized for, so sizes do not depend on the ISA). */
#define KERN_CPU_CLAQ_GEMM_MIN_N_AVX512 8
#define KERN_CPU_CLAQ_GEMM_MIN_N_AVX2 4
#define KERN_CPU_CLAQ_GEMM_MIN_N_ANY 4

/* Scratch the matmul needs: `shared` floats written once per call before the split (the GEMM's
 * fp32 codebooks and block-major inputs, read-only afterwards) and `priv` floats per worker (its
 * own GEMV lookup tables, then its tile outputs). */
int64_t kern_cpu__claq_shared_floats(const kern_claq *k, int n);
int64_t kern_cpu__claq_priv_floats(const kern_claq *k, int n);
#define KERN_CPU_CLAQ_MAX_WORKERS 256   /* the pool's limit */

/* The whole matmul with an explicit ISA and pool (pool NULL: everything on the calling thread,
 * n_workers must then be 1). shared: kern_cpu__claq_shared_floats; priv[n_workers]: each
 * kern_cpu__claq_priv_floats. Same contract as kern_cpu__matmul_claq. */
int kern_cpu__claq_matmul_run(kern_isa isa, kern_pool *pool, int n_workers, float *shared,
                              float *const *priv, const kern_claq *k, const float *x, int n,
                              float *y);

/* The bfloat16 matmul (kern_cpu__claq_gemm_bf16_* numerics) through fns, same scratch
 * conventions with kern_cpu__claq_bf16_shared_floats for `shared`. */
int64_t kern_cpu__claq_bf16_shared_floats(const kern_claq *k, int n);
int kern_cpu__claq_matmul_bf16_run(kern_claq_bf16_fns fns, kern_pool *pool, int n_workers,
                                   float *shared, float *const *priv, const kern_claq *k,
                                   const float *x, int n, float *y);

/* Convenience for tests and benchmarks: allocates the scratch itself (slow; not for hot loops).
 * bf16 = 1: the bfloat16 matmul through the reference (isa below AVX-512) or the AVX-512 BF16
 * kernels (isa AVX-512: the caller checked the CPU has them, kern_cpu_has_bf16). */
int kern_cpu__claq_matmul_isa(kern_isa isa, kern_pool *pool, const kern_claq *k, const float *x,
                              int n, float *y);
int kern_cpu__claq_matmul_bf16_isa(kern_isa isa, kern_pool *pool, const kern_claq *k,
                                   const float *x, int n, float *y);

#endif
