/* quant_head.c — the output head quantized for `claq quantize --head-bits B`: per-column
 * K-Means of the [vocab][dim] head at a uniform width (eng_kmeans_1d, the quantizer's default
 * solver), no calibration and no GPTQ (the head's inputs are the final norm's output, which the
 * pipeline does not collect). Columns run in parallel on the pool when one is given; each column
 * has its own seed, so the result does not depend on the thread count. Called from the claq
 * tool's thread; the column tasks run on the pool's workers. */
#include <stdlib.h>

#include "quant.h"
#include "quant_kmeans.h"
#include "kern_half.h"
#include "kern_pool.h"

typedef struct head_job {
    const kern_matrix *w;
    eng_qmatrix *q;
    int bits;
    uint64_t seed;
    double *scratch;      /* [workers][3 * rows] */
    float *col;           /* [workers][rows] */
    int failed;
} head_job;

static float wval(const kern_matrix *w, int64_t i)
{
    if (w->dtype == KERN_F32) return ((const float *)w->data)[i];
    uint16_t h = ((const uint16_t *)w->data)[i];
    return w->dtype == KERN_F16 ? kern_f16_to_f32(h) : kern_bf16_to_f32(h);
}

static void head_task(void *arg, int64_t j, int worker)
{
    head_job *h = arg;
    const kern_matrix *w = h->w;
    float *x = h->col + (size_t)worker * (size_t)w->rows;
    for (int64_t r = 0; r < w->rows; r++) x[r] = wval(w, r * w->cols + j);
    int K = 1 << h->bits;
    uint16_t cb[16];
    if (eng_kmeans_1d(x, w->rows, K, ENG_KMEANS_QUANTILE, h->seed + (uint64_t)j,
                      h->scratch + (size_t)worker * 3 * (size_t)w->rows, cb)) {
        h->failed = 1;
        return;
    }
    h->q->bits[j] = (uint8_t)h->bits;
    for (int e = 0; e < ENG_QM_CB; e++) h->q->codebook[j * ENG_QM_CB + e] = cb[e < K ? e : K - 1];
    for (int64_t r = 0; r < w->rows; r++)
        h->q->codes[r * w->cols + j] = (uint8_t)eng_kmeans_nearest(cb, K, x[r]);
}

int eng_quant_head(const kern_matrix *w, int bits, uint64_t seed, kern_pool *pool,
                   eng_qmatrix *q, eng_err *err)
{
    if (!w || w->dtype == KERN_CLAQ || bits < 2 || bits > 4)
        return eng_err_set(err, ENG_E_INVAL, "output head: needs a dense head and 2..4 bits");
    int rc = eng_qmatrix_alloc(q, w->rows, w->cols, err);
    if (rc) return rc;
    int nw = pool ? kern_pool_threads(pool) : 1;
    head_job h = {.w = w, .q = q, .bits = bits, .seed = seed ^ 0x4eadull};
    h.scratch = malloc(sizeof(double) * 3 * (size_t)w->rows * (size_t)nw);
    h.col = malloc(sizeof(float) * (size_t)w->rows * (size_t)nw);
    if (!h.scratch || !h.col) {
        rc = eng_err_set(err, ENG_E_NOMEM, "output head: out of memory");
    } else if (pool) {
        kern_pool_run(pool, w->cols, head_task, &h);
    } else {
        for (int64_t j = 0; j < w->cols; j++) head_task(&h, j, 0);
    }
    if (!rc && h.failed)
        rc = eng_err_set(err, ENG_E_INVAL, "output head: K-Means failed (non-finite weight?)");
    free(h.scratch);
    free(h.col);
    if (rc) eng_qmatrix_free(q);
    return rc;
}
