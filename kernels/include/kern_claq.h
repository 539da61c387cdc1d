/* kern_claq.h — the packed CLAQ matrix as kernels see it: a read-only view (pointers into a
 * mapped/loaded file or a packer's buffer; the view owns nothing) plus inline helpers that
 * locate codes and codebooks. Layout in words (docs/format.md has a worked example):
 *
 *  - Columns are stored grouped by bit-width: all 4-bit columns, then 3-bit, then 2-bit, each
 *    group in ascending original index and padded with zero columns to a multiple of
 *    KERN_CLAQ_COL_BLOCK (32). colmap[s] gives the original column of storage column s
 *    (KERN_CLAQ_PAD for padding). A block is 32 storage columns of one width b.
 *  - Rows are padded to a multiple of KERN_CLAQ_ROW_ALIGN (16) and cut into row tiles of
 *    KERN_CLAQ_ROW_TILE (64) rows; the last tile may be shorter (rt rows, a multiple of 16).
 *    Tile t starts at word t * 64 * words_per_row of `codes`; inside it, blocks follow in storage
 *    order, and a block of width b is b * rt uint32 words laid out [word w][row in tile].
 *  - One row's 32 codes of a block form a 32*b-bit little-endian bit string spread over its b
 *    words: code c sits at bits [c*b, c*b + b); for b = 3, codes 10 and 21 straddle two words.
 *    So 16 consecutive rows of one word are one 64-byte load, and a SIMD lane is a row.
 *  - Codebooks: fp16, storage order, exactly 2^b entries per column (4-bit group: 16 per column,
 *    then 3-bit: 8, then 2-bit: 4); padding columns hold zeros. Every b-bit pattern is a valid
 *    code, so codes cannot be out of range.
 *  - Outliers: row-CSR. out_rowptr[rows + 1]; for row r, entries [rowptr[r], rowptr[r+1]) hold
 *    a storage column (uint16 when cols_pad <= 65536, else uint32), strictly ascending, and the
 *    retained fp16 value. W[r][colmap[s]] = val there. out_delta (fp32 val - cb[code], derived at
 *    load, not stored) lets kernels add x * delta after the dense pass without a branch.
 * Any thread may read a view; nothing here writes. */
#ifndef KERN_CLAQ_H
#define KERN_CLAQ_H

#include <stdint.h>

#include "kern.h"

#define KERN_CLAQ_ROW_TILE 64     /* rows per tile (the last tile may be shorter) */
#define KERN_CLAQ_ROW_ALIGN 16    /* rows are padded to a multiple of this */
#define KERN_CLAQ_COL_BLOCK 32    /* storage columns per code block */
#define KERN_CLAQ_PAD 0xffffffffu /* colmap entry of a padding column */

struct kern_claq {
    int64_t rows, cols;          /* logical shape: out features x in features */
    int64_t rows_pad;            /* rows rounded up to KERN_CLAQ_ROW_ALIGN */
    int64_t n_tiles;             /* ceil(rows_pad / KERN_CLAQ_ROW_TILE) */
    int64_t ncols_bits[5];       /* [b], b = 2..4: original columns of width b */
    int64_t nblk_bits[5];        /* [b]: 32-column blocks of width b (ceil(ncols_bits[b] / 32)) */
    int64_t cols_pad;            /* storage columns incl. padding = 32 * number of blocks */
    int64_t words_per_row;       /* uint32 code words per row = sum_b b * nblk_bits[b] */
    const uint32_t *colmap;      /* [cols_pad] storage -> original column; view */
    const uint16_t *cb;          /* fp16 codebooks, storage order (see above); view */
    const uint32_t *codes;       /* [rows_pad * words_per_row] tiled words; view */
    int64_t nnz;                 /* outliers */
    const uint32_t *out_rowptr;  /* [rows + 1]; view */
    const uint16_t *out_col16;   /* [nnz] storage columns when cols_pad <= 65536, else NULL; view */
    const uint32_t *out_col32;   /* [nnz] storage columns otherwise, else NULL; view */
    const uint16_t *out_val;     /* [nnz] fp16 retained values; view */
    const float *out_delta;      /* [nnz] fp32 (val - cb[code]); view into a loader-owned buffer */
};

/* Number of code blocks. */
static inline int64_t kern_claq_nblocks(const kern_claq *k)
{
    return k->nblk_bits[4] + k->nblk_bits[3] + k->nblk_bits[2];
}

/* Bit-width of block blk (blocks are ordered 4, 3, 2). */
static inline int kern_claq_block_bits(const kern_claq *k, int64_t blk)
{
    if (blk < k->nblk_bits[4]) return 4;
    if (blk < k->nblk_bits[4] + k->nblk_bits[3]) return 3;
    return 2;
}

/* Words of one row that precede block blk (multiply by the tile's row count for the offset). */
static inline int64_t kern_claq_block_words(const kern_claq *k, int64_t blk)
{
    int64_t n4 = k->nblk_bits[4], n3 = k->nblk_bits[3];
    if (blk <= n4) return 4 * blk;
    if (blk <= n4 + n3) return 4 * n4 + 3 * (blk - n4);
    return 4 * n4 + 3 * n3 + 2 * (blk - n4 - n3);
}

/* Index of the first fp16 codebook entry of storage column s. */
static inline int64_t kern_claq_cb_offset(const kern_claq *k, int64_t s)
{
    int64_t c4 = 32 * k->nblk_bits[4], c3 = 32 * k->nblk_bits[3];
    if (s <= c4) return 16 * s;
    if (s <= c4 + c3) return 16 * c4 + 8 * (s - c4);
    return 16 * c4 + 8 * c3 + 4 * (s - c4 - c3);
}

/* Total fp16 codebook entries. */
static inline int64_t kern_claq_cb_entries(const kern_claq *k)
{
    return kern_claq_cb_offset(k, k->cols_pad);
}

/* Rows in tile t. */
static inline int64_t kern_claq_tile_rows(const kern_claq *k, int64_t t)
{
    int64_t left = k->rows_pad - t * KERN_CLAQ_ROW_TILE;
    return left < KERN_CLAQ_ROW_TILE ? left : KERN_CLAQ_ROW_TILE;
}

/* Code of (row r < rows_pad, storage column s < cols_pad): the slow, obvious way (tests, the
 * packer's inverse, outlier deltas). */
static inline unsigned kern_claq_code(const kern_claq *k, int64_t r, int64_t s)
{
    int64_t t = r / KERN_CLAQ_ROW_TILE, rr = r % KERN_CLAQ_ROW_TILE;
    int64_t rt = kern_claq_tile_rows(k, t);
    int64_t blk = s / KERN_CLAQ_COL_BLOCK, c = s % KERN_CLAQ_COL_BLOCK;
    int b = kern_claq_block_bits(k, blk);
    const uint32_t *base = k->codes + t * KERN_CLAQ_ROW_TILE * k->words_per_row +
                           rt * kern_claq_block_words(k, blk);
    int64_t bit = c * b, w = bit >> 5, sh = bit & 31;
    uint32_t v = base[w * rt + rr] >> sh;
    if (sh + b > 32) v |= base[(w + 1) * rt + rr] << (32 - sh);
    return v & ((1u << b) - 1);
}

/* Storage column of outlier i. */
static inline uint32_t kern_claq_out_col(const kern_claq *k, int64_t i)
{
    return k->out_col16 ? k->out_col16[i] : k->out_col32[i];
}

#endif
