/* eng_claq_compact.c — the storage forms of a packed matrix in format version 2 (docs/format.md):
 * what the file holds instead of version 1's runtime arrays, and their decoding back into them.
 * A column map is derived from 2-bit widths (none when every column has one width), codebooks
 * keep real columns only (fp16, or lo/step/index bytes on an 8-bit grid), outlier row pointers
 * become per-row counts (none without outliers). Codes and outlier columns/values are stored as
 * the kernels read them. Pure functions; any thread. */
#include "eng_claq_file.h"

#include <stdlib.h>
#include <string.h>

const char *const eng_claq_v2_sec_names[ENG_CLAQ_NSEC] = {"widths", "cb", "codes", "rowcnt",
                                                           "outcol", "outval"};

static int mixed_widths(const kern_claq *k)
{
    int groups = 0;
    for (int b = 2; b <= 4; b++) groups += k->ncols_bits[b] > 0;
    return groups > 1;
}

static int64_t real_cols(const kern_claq *k)
{
    return k->ncols_bits[2] + k->ncols_bits[3] + k->ncols_bits[4];
}

/* Row counts are u16 while a row cannot hold 65536 outliers. */
static size_t rowcnt_size(const kern_claq *k) { return k->cols < 65536 ? 2 : 4; }

void eng_claq_v2_lengths(const kern_claq *k, int cb_form, size_t len[ENG_CLAQ_NSEC])
{
    size_t entries = 0;
    for (int b = 2; b <= 4; b++) entries += (size_t)k->ncols_bits[b] << b;
    len[ENG_CLAQ_SEC_COLMAP] = mixed_widths(k) ? (size_t)(k->cols + 3) / 4 : 0;
    len[ENG_CLAQ_SEC_CB] = cb_form == ENG_CLAQ_CB_GRID8 ? 4 * (size_t)real_cols(k) + entries
                                                        : 2 * entries;
    len[ENG_CLAQ_SEC_CODES] = (size_t)k->rows_pad * (size_t)k->words_per_row * 4;
    len[ENG_CLAQ_SEC_ROWPTR] = k->nnz ? (size_t)k->rows * rowcnt_size(k) : 0;
    len[ENG_CLAQ_SEC_OUTCOL] = (size_t)k->nnz * (k->cols_pad <= 65536 ? 2 : 4);
    len[ENG_CLAQ_SEC_OUTVAL] = (size_t)k->nnz * 2;
}

void eng_claq_v2_free(eng_claq_v2 *v)
{
    if (!v) return;
    free(v->buf);
    memset(v, 0, sizeof *v);
}

int eng_claq_v2_encode(const eng_claq_packed *pk, const eng_qmatrix *q, const char *name,
                       eng_claq_v2 *out, eng_err *err)
{
    const kern_claq *k = &pk->view;
    memset(out, 0, sizeof *out);
    out->cb_form = q->grid ? ENG_CLAQ_CB_GRID8 : ENG_CLAQ_CB_F16;
    eng_claq_v2_lengths(k, out->cb_form, out->len);
    size_t lw = out->len[ENG_CLAQ_SEC_COLMAP], lc = out->len[ENG_CLAQ_SEC_CB];
    size_t lr = out->len[ENG_CLAQ_SEC_ROWPTR];
    unsigned char *buf = calloc(1, lw + lc + lr + 1);
    if (!buf) return eng_err_set(err, ENG_E_NOMEM, "pack %s: out of memory", name);
    out->buf = buf;
    unsigned char *widths = buf, *cb = buf + lw, *rowcnt = buf + lw + lc;

    if (lw)
        for (int64_t j = 0; j < q->cols; j++)
            widths[j / 4] |= (unsigned char)((q->bits[j] - 2) << (2 * (j % 4)));

    /* Codebooks of the real storage columns, in storage order. */
    const int64_t nreal = real_cols(k);
    unsigned char *idx = cb + 4 * nreal;
    int64_t e = 0, c = 0;
    for (int64_t s = 0; s < k->cols_pad; s++) {
        uint32_t j = k->colmap[s];
        if (j == KERN_CLAQ_PAD) continue;
        const int K = 1 << q->bits[j];
        const uint16_t *stored = k->cb + kern_claq_cb_offset(k, s);
        if (out->cb_form == ENG_CLAQ_CB_F16) {
            for (int i = 0; i < K; i++, e++) {
                cb[2 * e] = (unsigned char)(stored[i] & 0xff);
                cb[2 * e + 1] = (unsigned char)(stored[i] >> 8);
            }
            continue;
        }
        const uint16_t lo = q->grid[2 * j], step = q->grid[2 * j + 1];
        for (int i = 0; i < K; i++, e++) {
            uint8_t g = q->grid_idx[j * ENG_QM_CB + i];
            if (eng_cb_grid_value(lo, step, g) != stored[i]) {
                eng_claq_v2_free(out);
                return eng_err_set(err, ENG_E_INVAL, "pack %s: column %u: codebook entry %d is "
                                   "not on its grid", name, j, i);
            }
            idx[e] = g;
        }
        unsigned char *ls = cb + 4 * c++;
        ls[0] = (unsigned char)(lo & 0xff);
        ls[1] = (unsigned char)(lo >> 8);
        ls[2] = (unsigned char)(step & 0xff);
        ls[3] = (unsigned char)(step >> 8);
    }

    for (int64_t r = 0; lr && r < k->rows; r++) {
        uint32_t n = k->out_rowptr[r + 1] - k->out_rowptr[r];
        for (size_t b = 0; b < rowcnt_size(k); b++)
            rowcnt[(size_t)r * rowcnt_size(k) + b] = (unsigned char)(n >> (8 * b));
    }

    out->sec[ENG_CLAQ_SEC_COLMAP] = widths;
    out->sec[ENG_CLAQ_SEC_CB] = cb;
    out->sec[ENG_CLAQ_SEC_CODES] = k->codes;
    out->sec[ENG_CLAQ_SEC_ROWPTR] = rowcnt;
    out->sec[ENG_CLAQ_SEC_OUTCOL] = k->out_col16 ? (const void *)k->out_col16
                                                 : (const void *)k->out_col32;
    out->sec[ENG_CLAQ_SEC_OUTVAL] = k->out_val;
    return 0;
}

static uint32_t le(const unsigned char *p, size_t n)
{
    uint32_t v = 0;
    for (size_t b = 0; b < n; b++) v |= (uint32_t)p[b] << (8 * b);
    return v;
}

int eng_claq_v2_decode(kern_claq *k, int cb_form, const void *const sec[ENG_CLAQ_NSEC],
                       void **owned, const char *file, const char *name, eng_err *err)
{
    *owned = NULL;
    const size_t ncb = (size_t)kern_claq_cb_entries(k);
    size_t off_cb = (size_t)k->cols_pad * 4, off_rp = off_cb + (ncb * 2 + 3) / 4 * 4;
    unsigned char *buf = calloc(1, off_rp + (size_t)(k->rows + 1) * 4);
    if (!buf) return eng_err_set(err, ENG_E_NOMEM, "%s: tensor %s: out of memory", file, name);
    uint32_t *colmap = (uint32_t *)buf, *rowptr = (uint32_t *)(buf + off_rp);
    uint16_t *cb = (uint16_t *)(buf + off_cb);
    int rc = 0;

    /* Column map: each width's columns in ascending order, then padding to whole blocks. */
    const unsigned char *widths = sec[ENG_CLAQ_SEC_COLMAP];
    int only = 0;   /* the one width when the file stores none */
    for (int b = 2; b <= 4; b++)
        if (k->ncols_bits[b] == k->cols) only = b;
    int64_t s = 0, count[5] = {0};
    for (int bw = 4; bw >= 2; bw--) {
        for (int64_t j = 0; j < k->cols; j++) {
            int b = only ? only : 2 + ((widths[j / 4] >> (2 * (j % 4))) & 3);
            if (bw == 4 && (b > 4 || (only && b != only))) {
                rc = eng_err_set(err, ENG_E_FORMAT, "%s: tensor %s: column %lld has width code "
                                 "%d", file, name, (long long)j, b - 2);
                goto fail;
            }
            if (b != bw) continue;
            if (count[bw]++ >= k->ncols_bits[bw]) break;
            colmap[s++] = (uint32_t)j;
        }
        if (count[bw] != k->ncols_bits[bw]) {
            rc = eng_err_set(err, ENG_E_FORMAT, "%s: tensor %s: widths give %s %d-bit columns "
                             "than cols%d = %lld", file, name,
                             count[bw] > k->ncols_bits[bw] ? "more" : "fewer", bw, bw,
                             (long long)k->ncols_bits[bw]);
            goto fail;
        }
        int64_t end = (s + KERN_CLAQ_COL_BLOCK - 1) / KERN_CLAQ_COL_BLOCK * KERN_CLAQ_COL_BLOCK;
        while (s < end) colmap[s++] = KERN_CLAQ_PAD;
    }
    if (!only && (k->cols % 4) && (widths[k->cols / 4] >> (2 * (k->cols % 4)))) {
        rc = eng_err_set(err, ENG_E_FORMAT, "%s: tensor %s: widths has stray bits past the last "
                         "column", file, name);
        goto fail;
    }

    /* Codebooks: real columns in storage order; padding columns stay zero. */
    const unsigned char *cs = sec[ENG_CLAQ_SEC_CB];
    int64_t nreal = k->ncols_bits[2] + k->ncols_bits[3] + k->ncols_bits[4], e = 0, c = 0;
    const unsigned char *idx = cs + 4 * nreal;
    for (s = 0; s < k->cols_pad; s++) {
        if (colmap[s] == KERN_CLAQ_PAD) continue;
        int K = 1 << kern_claq_block_bits(k, s / KERN_CLAQ_COL_BLOCK);
        uint16_t *dst = cb + kern_claq_cb_offset(k, s);
        if (cb_form == ENG_CLAQ_CB_F16) {
            for (int i = 0; i < K; i++, e++) dst[i] = (uint16_t)le(cs + 2 * e, 2);
            continue;
        }
        uint16_t lo = (uint16_t)le(cs + 4 * c, 2), step = (uint16_t)le(cs + 4 * c + 2, 2);
        c++;
        if ((step & 0x8000) || (step & 0x7c00) == 0x7c00) {
            rc = eng_err_set(err, ENG_E_FORMAT, "%s: tensor %s: column %u: grid step 0x%04x is "
                             "negative or not finite", file, name, colmap[s], step);
            goto fail;
        }
        for (int i = 0; i < K; i++, e++) {
            if (i > 0 && idx[e] < idx[e - 1]) {
                rc = eng_err_set(err, ENG_E_FORMAT, "%s: tensor %s: column %u: grid indices "
                                 "not ascending", file, name, colmap[s]);
                goto fail;
            }
            dst[i] = eng_cb_grid_value(lo, step, idx[e]);
        }
    }

    /* Outlier row pointers from per-row counts. */
    const unsigned char *rc_bytes = sec[ENG_CLAQ_SEC_ROWPTR];
    uint64_t sum = 0;
    for (int64_t r = 0; r < k->rows; r++) {
        uint32_t n = k->nnz ? le(rc_bytes + (size_t)r * rowcnt_size(k), rowcnt_size(k)) : 0;
        sum += n;
        if (n > (uint64_t)k->cols || sum > (uint64_t)k->nnz) {
            rc = eng_err_set(err, ENG_E_FORMAT, "%s: tensor %s: outlier count of row %lld "
                             "out of range", file, name, (long long)r);
            goto fail;
        }
        rowptr[r + 1] = (uint32_t)sum;
    }
    if (sum != (uint64_t)k->nnz) {
        rc = eng_err_set(err, ENG_E_FORMAT, "%s: tensor %s: outlier counts sum to %llu, not nnz "
                         "%lld", file, name, (unsigned long long)sum, (long long)k->nnz);
        goto fail;
    }

    k->colmap = colmap;
    k->cb = cb;
    k->codes = sec[ENG_CLAQ_SEC_CODES];
    k->out_rowptr = rowptr;
    k->out_col16 = k->cols_pad <= 65536 ? sec[ENG_CLAQ_SEC_OUTCOL] : NULL;
    k->out_col32 = k->cols_pad <= 65536 ? NULL : sec[ENG_CLAQ_SEC_OUTCOL];
    k->out_val = sec[ENG_CLAQ_SEC_OUTVAL];
    *owned = buf;
    return 0;
fail:
    free(buf);
    return rc;
}
