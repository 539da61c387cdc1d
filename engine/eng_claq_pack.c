/* eng_claq_pack.c — eng_qmatrix -> the packed layout of kern_claq.h (columns grouped by width,
 * tiled bit-string codes, fp16 codebooks, row-CSR outliers), its exact inverse (unpack, for
 * tests), the consistency check the loader runs on untrusted views, and byte accounting.
 * Does no file I/O (eng_claq_file.c does). Pure functions; any thread. */
#include "eng_claq_file.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kern_half.h"

const char *const eng_claq_sec_names[ENG_CLAQ_NSEC] = {"colmap", "cb", "codes", "rowptr",
                                                        "outcol", "outval"};

#define MAX_DIM (1 << 24)

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

int eng_claq_shape_fill(kern_claq *k, const char *file, const char *name, eng_err *err)
{
    if (k->rows <= 0 || k->cols <= 0 || k->rows > MAX_DIM || k->cols > MAX_DIM)
        return eng_err_set(err, ENG_E_FORMAT, "%s: tensor %s: bad shape %lld x %lld", file, name,
                           (long long)k->rows, (long long)k->cols);
    int64_t sum = 0;
    for (int b = 2; b <= 4; b++) {
        if (k->ncols_bits[b] < 0 || k->ncols_bits[b] > k->cols)
            return eng_err_set(err, ENG_E_FORMAT, "%s: tensor %s: bad %d-bit column count %lld",
                               file, name, b, (long long)k->ncols_bits[b]);
        sum += k->ncols_bits[b];
    }
    if (sum != k->cols)
        return eng_err_set(err, ENG_E_FORMAT,
                           "%s: tensor %s: column counts by width sum to %lld, not cols %lld",
                           file, name, (long long)sum, (long long)k->cols);
    if (k->nnz < 0 || k->nnz > k->rows * k->cols)
        return eng_err_set(err, ENG_E_FORMAT, "%s: tensor %s: bad outlier count %lld", file, name,
                           (long long)k->nnz);
    k->ncols_bits[0] = k->ncols_bits[1] = 0;
    k->nblk_bits[0] = k->nblk_bits[1] = 0;
    k->rows_pad = (k->rows + KERN_CLAQ_ROW_ALIGN - 1) / KERN_CLAQ_ROW_ALIGN * KERN_CLAQ_ROW_ALIGN;
    k->n_tiles = (k->rows_pad + KERN_CLAQ_ROW_TILE - 1) / KERN_CLAQ_ROW_TILE;
    k->words_per_row = 0;
    for (int b = 2; b <= 4; b++) {
        k->nblk_bits[b] = (k->ncols_bits[b] + KERN_CLAQ_COL_BLOCK - 1) / KERN_CLAQ_COL_BLOCK;
        k->words_per_row += b * k->nblk_bits[b];
    }
    k->cols_pad = KERN_CLAQ_COL_BLOCK * kern_claq_nblocks(k);
    return 0;
}

void eng_claq_sec_lengths(const kern_claq *k, size_t len[ENG_CLAQ_NSEC])
{
    len[ENG_CLAQ_SEC_COLMAP] = (size_t)k->cols_pad * 4;
    len[ENG_CLAQ_SEC_CB] = (size_t)kern_claq_cb_entries(k) * 2;
    len[ENG_CLAQ_SEC_CODES] = (size_t)k->rows_pad * (size_t)k->words_per_row * 4;
    len[ENG_CLAQ_SEC_ROWPTR] = (size_t)(k->rows + 1) * 4;
    len[ENG_CLAQ_SEC_OUTCOL] = (size_t)k->nnz * (k->cols_pad <= 65536 ? 2 : 4);
    len[ENG_CLAQ_SEC_OUTVAL] = (size_t)k->nnz * 2;
}

/* Sets the code of (r, s) in a zeroed code array (the inverse of kern_claq_code). */
static void set_code(kern_claq *k, uint32_t *codes, int64_t r, int64_t s, unsigned code)
{
    int64_t t = r / KERN_CLAQ_ROW_TILE, rr = r % KERN_CLAQ_ROW_TILE;
    int64_t rt = kern_claq_tile_rows(k, t);
    int64_t blk = s / KERN_CLAQ_COL_BLOCK, c = s % KERN_CLAQ_COL_BLOCK;
    int b = kern_claq_block_bits(k, blk);
    uint32_t *base = codes + t * KERN_CLAQ_ROW_TILE * k->words_per_row +
                     rt * kern_claq_block_words(k, blk);
    int64_t bit = c * b, w = bit >> 5, sh = bit & 31;
    base[w * rt + rr] |= (uint32_t)code << sh;
    if (sh + b > 32) base[(w + 1) * rt + rr] |= (uint32_t)code >> (32 - sh);
}

void eng_claq_deltas(const kern_claq *k, float *delta)
{
    for (int64_t r = 0; r < k->rows; r++)
        for (uint32_t i = k->out_rowptr[r]; i < k->out_rowptr[r + 1]; i++) {
            uint32_t s = kern_claq_out_col(k, i);
            float cbv = kern_f16_to_f32(k->cb[kern_claq_cb_offset(k, s) + kern_claq_code(k, r, s)]);
            delta[i] = kern_f16_to_f32(k->out_val[i]) - cbv;
        }
}

static int check_qmatrix(const eng_qmatrix *q, const char *name, eng_err *err)
{
    if (q->rows <= 0 || q->cols <= 0 || q->rows > MAX_DIM || q->cols > MAX_DIM || !q->bits ||
        !q->codebook || !q->codes)
        return eng_err_set(err, ENG_E_INVAL, "pack %s: empty or bad qmatrix", name);
    for (int64_t j = 0; j < q->cols; j++)
        if (q->bits[j] < 2 || q->bits[j] > 4)
            return eng_err_set(err, ENG_E_INVAL, "pack %s: column %lld has %d bits (need 2..4)", name,
                               (long long)j, q->bits[j]);
    for (int64_t r = 0; r < q->rows; r++)
        for (int64_t j = 0; j < q->cols; j++)
            if (q->codes[r * q->cols + j] >> q->bits[j])
                return eng_err_set(err, ENG_E_INVAL, "pack %s: code %u at (%lld, %lld) >= 2^%d",
                                   name, q->codes[r * q->cols + j], (long long)r, (long long)j,
                                   q->bits[j]);
    for (int64_t i = 0; i < q->n_outliers; i++) {
        if (q->out_row[i] >= q->rows || q->out_col[i] >= q->cols)
            return eng_err_set(err, ENG_E_INVAL, "pack %s: outlier %lld at (%u, %u) out of range",
                               name, (long long)i, q->out_row[i], q->out_col[i]);
        if (i > 0 && (q->out_col[i] < q->out_col[i - 1] ||
                      (q->out_col[i] == q->out_col[i - 1] && q->out_row[i] <= q->out_row[i - 1])))
            return eng_err_set(err, ENG_E_INVAL,
                               "pack %s: outliers not strictly sorted by (col, row) at %lld", name,
                               (long long)i);
    }
    return 0;
}

int eng_claq_pack(const eng_qmatrix *q, const char *name, eng_claq_packed *out, eng_err *err)
{
    memset(out, 0, sizeof *out);
    int rc = check_qmatrix(q, name, err);
    if (rc) return rc;
    kern_claq *k = &out->view;
    k->rows = q->rows;
    k->cols = q->cols;
    k->nnz = q->n_outliers;
    for (int64_t j = 0; j < q->cols; j++) k->ncols_bits[q->bits[j]]++;
    rc = eng_claq_shape_fill(k, "pack", name, err);
    if (rc) return rc;

    eng_claq_sec_lengths(k, out->sec_len);
    size_t off = 0;
    for (int i = 0; i < ENG_CLAQ_NSEC; i++) {
        out->sec_off[i] = off;
        off += align64(out->sec_len[i]);
    }
    size_t delta_off = off;
    off += align64((size_t)k->nnz * sizeof(float));
    out->buf_size = off;
    out->buf = aligned_alloc(64, off ? off : 64);
    int64_t *colstart = calloc((size_t)q->cols + 1, sizeof *colstart);
    uint32_t *fill = calloc((size_t)q->rows + 1, sizeof *fill);
    if (!out->buf || !colstart || !fill) {
        free(colstart);
        free(fill);
        eng_claq_packed_free(out);
        return eng_err_set(err, ENG_E_NOMEM, "pack %s: out of memory (%zu bytes)", name, off);
    }
    memset(out->buf, 0, out->buf_size);
    char *b = out->buf;
    uint32_t *colmap = (uint32_t *)(b + out->sec_off[ENG_CLAQ_SEC_COLMAP]);
    uint16_t *cb = (uint16_t *)(b + out->sec_off[ENG_CLAQ_SEC_CB]);
    uint32_t *codes = (uint32_t *)(b + out->sec_off[ENG_CLAQ_SEC_CODES]);
    uint32_t *rowptr = (uint32_t *)(b + out->sec_off[ENG_CLAQ_SEC_ROWPTR]);
    void *outcol = b + out->sec_off[ENG_CLAQ_SEC_OUTCOL];
    uint16_t *outval = (uint16_t *)(b + out->sec_off[ENG_CLAQ_SEC_OUTVAL]);
    float *delta = (float *)(b + delta_off);
    k->colmap = colmap;
    k->cb = cb;
    k->codes = codes;
    k->out_rowptr = rowptr;
    k->out_col16 = k->cols_pad <= 65536 ? outcol : NULL;
    k->out_col32 = k->cols_pad <= 65536 ? NULL : outcol;
    k->out_val = outval;
    k->out_delta = delta;

    /* Column grouping: 4-bit, 3-bit, 2-bit, each ascending, padded to whole blocks. */
    int64_t s = 0;
    for (int bw = 4; bw >= 2; bw--) {
        int64_t start = s;
        for (int64_t j = 0; j < q->cols; j++)
            if (q->bits[j] == bw) colmap[s++] = (uint32_t)j;
        int64_t end = start + KERN_CLAQ_COL_BLOCK * k->nblk_bits[bw];
        while (s < end) colmap[s++] = KERN_CLAQ_PAD;
    }
    for (s = 0; s < k->cols_pad; s++) {
        if (colmap[s] == KERN_CLAQ_PAD) continue;
        int64_t j = colmap[s], K = (int64_t)1 << q->bits[j];
        memcpy(cb + kern_claq_cb_offset(k, s), q->codebook + j * ENG_QM_CB, (size_t)K * 2);
        for (int64_t r = 0; r < q->rows; r++) set_code(k, codes, r, s, q->codes[r * q->cols + j]);
    }

    /* Outliers: (col, row)-sorted list -> row-CSR by ascending storage column. */
    for (int64_t i = 0; i < q->n_outliers; i++) {
        colstart[q->out_col[i] + 1]++;
        rowptr[q->out_row[i] + 1]++;
    }
    for (int64_t j = 0; j < q->cols; j++) colstart[j + 1] += colstart[j];
    for (int64_t r = 0; r < q->rows; r++) rowptr[r + 1] += rowptr[r];
    for (s = 0; s < k->cols_pad; s++) {
        uint32_t j = colmap[s];
        if (j == KERN_CLAQ_PAD) continue;
        for (int64_t i = colstart[j]; i < colstart[j + 1]; i++) {
            uint32_t r = q->out_row[i];
            uint32_t at = rowptr[r] + fill[r]++;
            if (k->out_col16) ((uint16_t *)outcol)[at] = (uint16_t)s;
            else ((uint32_t *)outcol)[at] = (uint32_t)s;
            outval[at] = q->out_val[i];
        }
    }
    free(colstart);
    free(fill);
    eng_claq_deltas(k, delta);
    return 0;
}

void eng_claq_packed_free(eng_claq_packed *p)
{
    if (!p) return;
    free(p->buf);
    memset(p, 0, sizeof *p);
}

void eng_claq_unpack(const kern_claq *k, float *w)
{
    for (int64_t s = 0; s < k->cols_pad; s++) {
        uint32_t j = k->colmap[s];
        if (j == KERN_CLAQ_PAD) continue;
        const uint16_t *cb = k->cb + kern_claq_cb_offset(k, s);
        for (int64_t r = 0; r < k->rows; r++)
            w[r * k->cols + j] = kern_f16_to_f32(cb[kern_claq_code(k, r, s)]);
    }
    for (int64_t r = 0; r < k->rows; r++)
        for (uint32_t i = k->out_rowptr[r]; i < k->out_rowptr[r + 1]; i++)
            w[r * k->cols + k->colmap[kern_claq_out_col(k, i)]] = kern_f16_to_f32(k->out_val[i]);
}

int eng_claq_validate(const kern_claq *k, const char *file, const char *name, eng_err *err)
{
    /* Column map: each group's real columns first, padding after, a permutation overall. */
    uint8_t *seen = calloc((size_t)k->cols, 1);
    if (!seen) return eng_err_set(err, ENG_E_NOMEM, "%s: tensor %s: out of memory", file, name);
    int64_t s = 0;
    int rc = 0;
    for (int bw = 4; bw >= 2 && !rc; bw--) {
        int64_t start = s, end = s + KERN_CLAQ_COL_BLOCK * k->nblk_bits[bw];
        for (; s < end; s++) {
            uint32_t j = k->colmap[s];
            int real = s - start < k->ncols_bits[bw];
            if (real ? (j >= k->cols || seen[j]) : j != KERN_CLAQ_PAD) {
                rc = eng_err_set(err, ENG_E_FORMAT,
                                 "%s: tensor %s: colmap[%lld] = %u is not a valid %s", file, name,
                                 (long long)s, j, real ? "unused column index" : "padding mark");
                break;
            }
            if (real) seen[j] = 1;
        }
    }
    free(seen);
    if (rc) return rc;
    int64_t ncb = kern_claq_cb_entries(k);
    for (int64_t i = 0; i < ncb; i++)
        if ((k->cb[i] & 0x7c00) == 0x7c00)
            return eng_err_set(err, ENG_E_FORMAT,
                               "%s: tensor %s: codebook entry %lld is not finite (0x%04x)", file,
                               name, (long long)i, k->cb[i]);
    if (k->out_rowptr[0] != 0 || k->out_rowptr[k->rows] != (uint64_t)k->nnz)
        return eng_err_set(err, ENG_E_FORMAT,
                           "%s: tensor %s: outlier row pointers do not span 0..%lld", file, name,
                           (long long)k->nnz);
    for (int64_t r = 0; r < k->rows; r++) {
        uint32_t a = k->out_rowptr[r], e = k->out_rowptr[r + 1];
        if (e < a || e > (uint64_t)k->nnz)
            return eng_err_set(err, ENG_E_FORMAT,
                               "%s: tensor %s: outlier row pointer of row %lld out of order", file,
                               name, (long long)r);
        for (uint32_t i = a; i < e; i++) {
            uint32_t sc = kern_claq_out_col(k, i);
            if (sc >= k->cols_pad || k->colmap[sc] == KERN_CLAQ_PAD ||
                (i > a && sc <= kern_claq_out_col(k, i - 1)))
                return eng_err_set(err, ENG_E_FORMAT,
                                   "%s: tensor %s: outlier %u (row %lld) has bad column index %u",
                                   file, name, i, (long long)r, sc);
            if ((k->out_val[i] & 0x7c00) == 0x7c00)
                return eng_err_set(err, ENG_E_FORMAT,
                                   "%s: tensor %s: outlier %u value is not finite", file, name, i);
        }
    }
    return 0;
}

void eng_claq_stats_of(const kern_claq *k, const size_t len[ENG_CLAQ_NSEC],
                       int64_t stored_bytes, eng_claq_stats *st)
{
    memset(st, 0, sizeof *st);
    for (int b = 2; b <= 4; b++) st->cols_by_bits[b] = k->ncols_bits[b];
    st->n_outliers = k->nnz;
    st->codebook_bytes = (int64_t)len[ENG_CLAQ_SEC_CB];
    st->code_bytes = (int64_t)len[ENG_CLAQ_SEC_CODES];
    st->outlier_bytes = (int64_t)(len[ENG_CLAQ_SEC_ROWPTR] + len[ENG_CLAQ_SEC_OUTCOL] +
                                  len[ENG_CLAQ_SEC_OUTVAL]);
    st->total_bytes = stored_bytes;
    st->other_bytes = stored_bytes - st->codebook_bytes - st->code_bytes - st->outlier_bytes;
    st->nominal_bits = (4.0 * (double)k->ncols_bits[4] + 3.0 * (double)k->ncols_bits[3] +
                        2.0 * (double)k->ncols_bits[2]) / (double)k->cols;
    st->true_bpw = (double)stored_bytes * 8.0 / ((double)k->rows * (double)k->cols);
}
