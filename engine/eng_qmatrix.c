/* eng_qmatrix.c — allocation, outlier list, fake-quant expansion, the 8-bit codebook grid and
 * the spilling of codes to a temporary file of eng_qmatrix. Any thread, one per matrix; no
 * globals (the spill reads $TMPDIR). */
#include "eng_qmatrix.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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
    if (q->codes_map) munmap(q->codes, q->codes_map);
    else free(q->codes);
    free(q->out_row);
    free(q->out_col);
    free(q->out_val);
    free(q->grid);
    free(q->grid_idx);
    memset(q, 0, sizeof *q);
}

int eng_qmatrix_spill_codes(eng_qmatrix *q, const char *dir, eng_err *err)
{
    if (q->codes_map || !q->codes) return 0;
    size_t bytes = (size_t)q->rows * (size_t)q->cols;
    const char *env = getenv("TMPDIR");
    if (!dir || !*dir) dir = env && *env ? env : "/tmp";
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/claq-codes-XXXXXX", dir) >= sizeof path)
        return eng_err_set(err, ENG_E_IO, "temp directory name too long: %s", dir);
    int fd = mkstemp(path);
    if (fd < 0)
        return eng_err_set(err, ENG_E_IO, "cannot create a temp file for %zu bytes of codes "
                           "in %s: %s", bytes, dir, strerror(errno));
    unlink(path);
    size_t done = 0;
    while (done < bytes) {
        ssize_t n = pwrite(fd, q->codes + done, bytes - done, (off_t)done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int e = n < 0 ? errno : ENOSPC;
            close(fd);
            return eng_err_set(err, ENG_E_IO, "writing %zu bytes of codes to a temp file in "
                               "%s: %s", bytes, dir, strerror(e));
        }
        done += (size_t)n;
    }
    void *m = mmap(NULL, bytes, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);   /* the mapping keeps the file */
    if (m == MAP_FAILED)
        return eng_err_set(err, ENG_E_NOMEM, "cannot map %zu bytes of spilled codes", bytes);
    free(q->codes);
    q->codes = m;
    q->codes_map = bytes;
    eng_qmatrix_evict_codes(q);   /* what pwrite left in the page cache is not ours to keep */
    return 0;
}

void eng_qmatrix_evict_codes(const eng_qmatrix *q)
{
    /* clean shared file pages: dropping them loses nothing */
    if (q && q->codes_map) (void)madvise(q->codes, q->codes_map, MADV_DONTNEED);
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

int eng_qmatrix_grid_alloc(eng_qmatrix *q, eng_err *err)
{
    free(q->grid);
    free(q->grid_idx);
    q->grid = calloc((size_t)q->cols * 2, sizeof *q->grid);
    q->grid_idx = calloc((size_t)q->cols * ENG_QM_CB, 1);
    if (q->grid && q->grid_idx) return 0;
    free(q->grid);
    free(q->grid_idx);
    q->grid = NULL;
    q->grid_idx = NULL;
    return eng_err_set(err, ENG_E_NOMEM, "qmatrix: out of memory for the codebook grid");
}

uint16_t eng_cb_grid_value(uint16_t lo, uint16_t step, unsigned idx)
{
    return kern_f32_to_f16(kern_f16_to_f32(lo) + (float)idx * kern_f16_to_f32(step));
}

int eng_cb_grid_fit(uint16_t *cb, int k, uint16_t lostep[2], uint8_t *idx)
{
    const int top = ENG_CB_GRID_LEVELS - 1;
    float lo = kern_f16_to_f32(cb[0]), hi = kern_f16_to_f32(cb[k - 1]);
    if (!isfinite(lo) || !isfinite(hi) || hi < lo) return ENG_E_RANGE;
    uint16_t step = kern_f32_to_f16((hi - lo) / (float)top);
    if (step & 0x8000) step = 0;   /* -0 */
    /* the smallest step whose top index reaches hi (fp16 bits of positive values are ordered) */
    while (step < 0x7bff && kern_f16_to_f32(eng_cb_grid_value(cb[0], step, (unsigned)top)) < hi)
        step++;
    while (step > 0 && kern_f16_to_f32(eng_cb_grid_value(cb[0], (uint16_t)(step - 1),
                                                         (unsigned)top)) >= hi)
        step--;
    if ((eng_cb_grid_value(cb[0], step, (unsigned)top) & 0x7c00) == 0x7c00) return ENG_E_RANGE;
    lostep[0] = cb[0];
    lostep[1] = step;
    float st = kern_f16_to_f32(step);
    int prev = 0;
    for (int i = 0; i < k; i++) {
        float v = kern_f16_to_f32(cb[i]);
        if (!isfinite(v) || (i > 0 && v < kern_f16_to_f32(cb[i - 1]))) return ENG_E_RANGE;
        long g = st > 0 ? lrintf((v - lo) / st) : 0;
        int best = -1;
        float bd = INFINITY;
        for (long t = g - 1; t <= g + 1; t++) {   /* nearest decoded value, ties to the lower */
            if (t < prev || t > top) continue;
            float d = fabsf(kern_f16_to_f32(eng_cb_grid_value(cb[0], step, (unsigned)t)) - v);
            if (d < bd) {
                bd = d;
                best = (int)t;
            }
        }
        if (best < 0) best = prev;   /* cannot happen for ascending input; stay monotone */
        idx[i] = (uint8_t)best;
        prev = best;
    }
    for (int i = 0; i < k; i++) cb[i] = eng_cb_grid_value(lostep[0], step, idx[i]);
    return 0;
}

int eng_qmatrix_grid_fit_col(eng_qmatrix *q, int64_t j)
{
    if (!q->grid) return 0;
    int k = 1 << q->bits[j];
    uint16_t *cb = q->codebook + j * ENG_QM_CB;
    uint8_t *idx = q->grid_idx + j * ENG_QM_CB;
    int rc = eng_cb_grid_fit(cb, k, q->grid + 2 * j, idx);
    if (rc) return rc;
    for (int e = k; e < ENG_QM_CB; e++) {
        cb[e] = cb[k - 1];
        idx[e] = idx[k - 1];
    }
    return 0;
}
