/* eng_qmatrix.h — a quantized matrix in plain (unpacked) form: what the quantizer produces and
 * the packer consumes. Every column j (input feature) has bits[j] in {2,3,4}, a sorted fp16
 * codebook, one code per weight, and a list of fp16 outliers that replace the codebook value at
 * their (row, col). Uniform baselines (RTN, GPTQ grid) are codebooks too (evenly spaced values).
 * Canonical value: W[r][j] = codebook[j][codes[r*cols+j]], or the outlier value at its position.
 * Owned by the caller; not thread-safe. */
#ifndef ENG_QMATRIX_H
#define ENG_QMATRIX_H

#include <stddef.h>
#include <stdint.h>

#include "eng_err.h"

#define ENG_QM_CB 16   /* codebook stride: room for 2^4 entries */

typedef struct eng_qmatrix {
    int64_t rows, cols;
    uint8_t *bits;          /* [cols] bit-width per original column, 2..4; owned */
    uint16_t *codebook;     /* [cols][ENG_QM_CB] fp16 bits, ascending; entries at and past
                               2^bits[j] repeat the last real one; owned */
    uint8_t *codes;         /* [rows][cols] code per weight, < 2^bits[col]; owned: heap, or
                               after eng_qmatrix_spill_codes a read-only file mapping */
    size_t codes_map;       /* bytes of that mapping; 0 while codes is on the heap */
    int64_t n_outliers;
    int64_t cap_outliers;
    uint32_t *out_row;      /* [n_outliers] sorted by (col, row); owned */
    uint32_t *out_col;      /* [n_outliers]; owned */
    uint16_t *out_val;      /* [n_outliers] fp16 bits of the retained value; owned */
    uint16_t *grid;         /* [cols][2] lo, step (fp16 bits) of each column's 8-bit codebook
                               grid, or NULL: codebooks are free fp16 values; owned */
    uint8_t *grid_idx;      /* [cols][ENG_QM_CB] grid index of each codebook entry: entry k of
                               column j is eng_cb_grid_value(lo, step, idx); owned */
} eng_qmatrix;

/* Codebooks on an 8-bit grid (docs/format.md, "cb" in grid8 form): a column stores lo and step
 * (fp16) and one byte per entry, 4 + 2^b bytes instead of 2 * 2^b. Entry = fp16(lo + idx * step)
 * computed in fp32: the one definition, used by the quantizer and the loader. */
#define ENG_CB_GRID_LEVELS 256
uint16_t eng_cb_grid_value(uint16_t lo, uint16_t step, unsigned idx);
/* Projects the k ascending fp16 entries cb[0..k) onto their column's grid (lo = cb[0], step the
 * smallest fp16 whose 255 steps reach cb[k-1]): writes lostep[2], idx[0..k) (ascending) and
 * replaces cb[0..k) by the values they decode to. ENG_E_RANGE when the entries are not finite
 * or not ascending. */
int eng_cb_grid_fit(uint16_t *cb, int k, uint16_t lostep[2], uint8_t *idx);
/* Allocates q->grid and q->grid_idx (zeroed): the quantizer then fits every column. */
int eng_qmatrix_grid_alloc(eng_qmatrix *q, eng_err *err);
/* Fits column j's codebook (2^bits[j] entries, already set) onto its grid and repeats the last
 * entry past them; a no-op returning 0 when q has no grid. */
int eng_qmatrix_grid_fit_col(eng_qmatrix *q, int64_t j);

int eng_qmatrix_alloc(eng_qmatrix *q, int64_t rows, int64_t cols, eng_err *err);
/* Moves q's codes (final: read-only from now on) into an unlinked temporary file in dir
 * (NULL: $TMPDIR, else /tmp) mapped back read-only, so they leave the process's resident
 * memory: one byte per weight, 6.5 GB for a 32-layer LLaMA-7B, would otherwise stay on the heap
 * until the packed file is written. ENG_E_IO / ENG_E_NOMEM with q unchanged on failure. */
int eng_qmatrix_spill_codes(eng_qmatrix *q, const char *dir, eng_err *err);
/* Drops the resident pages of spilled codes (read back from the file on the next access);
 * nothing for heap codes. For a reader done with q for now (the packed-file writer). */
void eng_qmatrix_evict_codes(const eng_qmatrix *q);
void eng_qmatrix_free(eng_qmatrix *q);   /* safe on zeroed, idempotent */
/* Appends an outlier (callers append in (col,row) order). */
int eng_qmatrix_add_outlier(eng_qmatrix *q, uint32_t row, uint32_t col, uint16_t val_f16);
/* The fake-quantized matrix: w [rows][cols] fp32 (every value exactly an fp16). */
void eng_qmatrix_dequant(const eng_qmatrix *q, float *w);
/* Nominal code bits per weight: mean of bits[] (the paper's label, without outliers). */
double eng_qmatrix_nominal_bits(const eng_qmatrix *q);

#endif
