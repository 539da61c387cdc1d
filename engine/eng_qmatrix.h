/* eng_qmatrix.h — a quantized matrix in plain (unpacked) form: what the quantizer produces and
 * the packer consumes. Every column j (input feature) has bits[j] in {2,3,4}, a sorted fp16
 * codebook, one code per weight, and a list of fp16 outliers that replace the codebook value at
 * their (row, col). Uniform baselines (RTN, GPTQ grid) are codebooks too (evenly spaced values).
 * Canonical value: W[r][j] = codebook[j][codes[r*cols+j]], or the outlier value at its position.
 * Owned by the caller; not thread-safe. */
#ifndef ENG_QMATRIX_H
#define ENG_QMATRIX_H

#include <stdint.h>

#include "eng_err.h"

#define ENG_QM_CB 16   /* codebook stride: room for 2^4 entries */

typedef struct eng_qmatrix {
    int64_t rows, cols;
    uint8_t *bits;          /* [cols] bit-width per original column, 2..4; owned */
    uint16_t *codebook;     /* [cols][ENG_QM_CB] fp16 bits, ascending; entries at and past
                               2^bits[j] repeat the last real one; owned */
    uint8_t *codes;         /* [rows][cols] code per weight, < 2^bits[col]; owned */
    int64_t n_outliers;
    int64_t cap_outliers;
    uint32_t *out_row;      /* [n_outliers] sorted by (col, row); owned */
    uint32_t *out_col;      /* [n_outliers]; owned */
    uint16_t *out_val;      /* [n_outliers] fp16 bits of the retained value; owned */
} eng_qmatrix;

int eng_qmatrix_alloc(eng_qmatrix *q, int64_t rows, int64_t cols, eng_err *err);
void eng_qmatrix_free(eng_qmatrix *q);   /* safe on zeroed, idempotent */
/* Appends an outlier (callers append in (col,row) order). */
int eng_qmatrix_add_outlier(eng_qmatrix *q, uint32_t row, uint32_t col, uint16_t val_f16);
/* The fake-quantized matrix: w [rows][cols] fp32 (every value exactly an fp16). */
void eng_qmatrix_dequant(const eng_qmatrix *q, float *w);
/* Nominal code bits per weight: mean of bits[] (the paper's label, without outliers). */
double eng_qmatrix_nominal_bits(const eng_qmatrix *q);

#endif
