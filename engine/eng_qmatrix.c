/* eng_qmatrix.c — allocation, outlier list and fake-quant expansion of eng_qmatrix. */
#include "eng_qmatrix.h"

#include <stdlib.h>
#include <string.h>

#include "kern_half.h"

int eng_qmatrix_alloc(eng_qmatrix *q, int64_t rows, int64_t cols, eng_err *err)
{
    memset(q, 0, sizeof *q);
    if (rows <= 0 || cols <= 0 || rows > (1 << 24) || cols > (1 << 24))
        return eng_err_set(err, ENG_E_INVAL, "qmatrix: bad shape %lld x %lld",
                           (long long)rows, (long long)cols);
    q->rows = rows;
    q->cols = cols;
    q->bits = calloc((size_t)cols, 1);
    q->codebook = calloc((size_t)cols * ENG_QM_CB, sizeof(uint16_t));
    q->codes = calloc((size_t)rows * (size_t)cols, 1);
    if (!q->bits || !q->codebook || !q->codes) {
        eng_qmatrix_free(q);
        return eng_err_set(err, ENG_E_NOMEM, "qmatrix: out of memory for %lld x %lld",
                           (long long)rows, (long long)cols);
    }
    return 0;
}

void eng_qmatrix_free(eng_qmatrix *q)
{
    if (!q) return;
    free(q->bits);
    free(q->codebook);
    free(q->codes);
    free(q->out_row);
    free(q->out_col);
    free(q->out_val);
    memset(q, 0, sizeof *q);
}

int eng_qmatrix_add_outlier(eng_qmatrix *q, uint32_t row, uint32_t col, uint16_t val_f16)
{
    if (q->n_outliers == q->cap_outliers) {
        int64_t cap = q->cap_outliers ? q->cap_outliers * 2 : 1024;
        uint32_t *r = realloc(q->out_row, (size_t)cap * sizeof *r);
        if (r) q->out_row = r;
        uint32_t *c = realloc(q->out_col, (size_t)cap * sizeof *c);
        if (c) q->out_col = c;
        uint16_t *v = realloc(q->out_val, (size_t)cap * sizeof *v);
        if (v) q->out_val = v;
        if (!r || !c || !v) return ENG_E_NOMEM;
        q->cap_outliers = cap;
    }
    q->out_row[q->n_outliers] = row;
    q->out_col[q->n_outliers] = col;
    q->out_val[q->n_outliers] = val_f16;
    q->n_outliers++;
    return 0;
}

void eng_qmatrix_dequant(const eng_qmatrix *q, float *w)
{
    for (int64_t r = 0; r < q->rows; r++)
        for (int64_t j = 0; j < q->cols; j++) {
            uint8_t code = q->codes[r * q->cols + j];
            w[r * q->cols + j] = kern_f16_to_f32(q->codebook[j * ENG_QM_CB + (code & 15)]);
        }
    for (int64_t i = 0; i < q->n_outliers; i++)
        w[(int64_t)q->out_row[i] * q->cols + q->out_col[i]] = kern_f16_to_f32(q->out_val[i]);
}

double eng_qmatrix_nominal_bits(const eng_qmatrix *q)
{
    double s = 0;
    for (int64_t j = 0; j < q->cols; j++) s += q->bits[j];
    return q->cols ? s / (double)q->cols : 0;
}
