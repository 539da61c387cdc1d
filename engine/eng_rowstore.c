/* eng_rowstore.c — see eng_rowstore.h. The host keeps a mirror of exactly what the backend holds
 * (row r's first len[r] elements; the rest unknown), so a put compares against the mirror and
 * writes only the differing range; a growth copies the mirror into the new layout and sends it
 * whole, once. */
#include "eng_rowstore.h"

#include <stdlib.h>
#include <string.h>

struct eng_rowstore {
    kern_backend *be;        /* borrowed */
    size_t elem;             /* bytes per element */
    int max_rows, first_stride;
    int rows, stride;        /* allocated rows, elements per row */
    kern_buf *buf;           /* [rows][stride] elements in backend memory; owned */
    unsigned char *mirror;   /* [rows][stride] what buf holds; owned */
    const void **key;        /* [rows] the sequence a row last served */
    int32_t *len;            /* [rows] elements of the row the mirror knows */
    uint64_t *used;          /* [rows] step that last used the row */
    uint64_t step;
};

int eng_rowstore_create(eng_rowstore **out, kern_backend *be, size_t elem, int max_rows,
                        int first_stride)
{
    *out = NULL;
    if (!be || elem == 0 || max_rows <= 0 || first_stride <= 0) return KERN_E_INVAL;
    eng_rowstore *r = calloc(1, sizeof *r);
    if (!r) return KERN_E_NOMEM;
    r->be = be;
    r->elem = elem;
    r->max_rows = max_rows;
    r->first_stride = first_stride;
    r->step = 1;
    *out = r;
    return 0;
}

void eng_rowstore_destroy(eng_rowstore *r)
{
    if (!r) return;
    kern_buf_free(r->be, r->buf);
    free(r->mirror);
    free(r->key);
    free(r->len);
    free(r->used);
    free(r);
}

void eng_rowstore_step(eng_rowstore *r) { r->step++; }

/* Makes room for rows x stride (never fewer than now): a new buffer holding the old rows'
 * elements, sent in one write. */
static int grow(eng_rowstore *r, int rows, int stride)
{
    if (rows < r->rows) rows = r->rows;
    if (stride < r->stride) stride = r->stride;
    size_t row_bytes = (size_t)stride * r->elem, old_row = (size_t)r->stride * r->elem;
    unsigned char *m = calloc((size_t)rows, row_bytes);
    const void **k = realloc(r->key, (size_t)rows * sizeof *k);
    if (k) r->key = k;
    int32_t *l = realloc(r->len, (size_t)rows * sizeof *l);
    if (l) r->len = l;
    uint64_t *u = realloc(r->used, (size_t)rows * sizeof *u);
    if (u) r->used = u;
    kern_buf *nb = NULL;
    int rc = !m || !k || !l || !u ? KERN_E_NOMEM
                                  : kern_buf_alloc(r->be, (size_t)rows * row_bytes, &nb);
    for (int i = 0; !rc && i < r->rows; i++)
        memcpy(m + (size_t)i * row_bytes, r->mirror + (size_t)i * old_row, old_row);
    if (!rc && r->rows) rc = kern_buf_write(r->be, nb, 0, m, (size_t)r->rows * row_bytes);
    if (rc) {
        free(m);
        kern_buf_free(r->be, nb);
        return rc;
    }
    for (int i = r->rows; i < rows; i++) {
        r->key[i] = NULL;
        r->len[i] = 0;
        r->used[i] = 0;
    }
    free(r->mirror);
    r->mirror = m;
    kern_buf_free(r->be, r->buf);
    r->buf = nb;
    r->rows = rows;
    r->stride = stride;
    return 0;
}

int eng_rowstore_row(eng_rowstore *r, const void *key, int *row)
{
    int pick = -1;
    for (int i = 0; i < r->rows; i++) {
        if (r->key[i] == key) {
            pick = i;
            break;
        }
        if (r->used[i] != r->step && (pick < 0 || r->used[i] < r->used[pick])) pick = i;
    }
    if (pick < 0) {   /* every row serves this step: one more */
        if (r->rows >= r->max_rows) return KERN_E_INVAL;
        int rows = r->rows ? r->rows * 2 : 4;
        if (rows > r->max_rows) rows = r->max_rows;
        pick = r->rows;
        int rc = grow(r, rows, r->stride ? r->stride : r->first_stride);
        if (rc) return rc;
    }
    if (r->key[pick] != key) {
        r->key[pick] = key;
        r->len[pick] = 0;   /* another sequence's elements: compare nothing */
    }
    r->used[pick] = r->step;
    *row = pick;
    return 0;
}

int eng_rowstore_put(eng_rowstore *r, int row, const void *data, int count)
{
    if (row < 0 || row >= r->rows || count < 0) return KERN_E_INVAL;
    if (count > r->stride) {
        int rc = grow(r, r->rows, r->stride * 2 > count ? r->stride * 2 : count);
        if (rc) return rc;
    }
    const size_t e = r->elem;
    unsigned char *m = r->mirror + (size_t)row * (size_t)r->stride * e;
    const unsigned char *d = data;
    int have = r->len[row] < count ? r->len[row] : count;
    int lo = 0;
    while (lo < have && !memcmp(m + (size_t)lo * e, d + (size_t)lo * e, e)) lo++;
    if (lo == count) {
        r->len[row] = count;
        return 0;
    }
    int hi = count - 1;   /* the last that differs (anything past what the mirror knows does) */
    while (hi > lo && hi < have && !memcmp(m + (size_t)hi * e, d + (size_t)hi * e, e)) hi--;
    size_t bytes = (size_t)(hi - lo + 1) * e;
    memcpy(m + (size_t)lo * e, d + (size_t)lo * e, bytes);
    r->len[row] = 0;   /* unknown until the write lands */
    int rc = kern_buf_write(r->be, r->buf, ((size_t)row * (size_t)r->stride + (size_t)lo) * e,
                            m + (size_t)lo * e, bytes);
    if (!rc) r->len[row] = count;
    return rc;
}

void *eng_rowstore_addr(const eng_rowstore *r) { return r->buf ? kern_buf_addr(r->buf) : NULL; }

int eng_rowstore_stride(const eng_rowstore *r) { return r->stride; }
