/* quant_kmeans_matrix.c — a whole matrix quantized by per-column K-Means, with no calibration
 * and no GPTQ: `claq quantize --head-bits` uses it for the output head (the pipeline does not
 * collect the final norm's output), and `claq synth --pack` for every matrix (speed work). Each
 * column gets its own seed (seed + column), so the result does not depend on the thread count.
 * Called from the claq tool's thread; the column tasks run on the pool's workers. */
#include <stdlib.h>

#include "quant.h"
#include "quant_kmeans.h"
#include "kern_half.h"
#include "kern_pool.h"

typedef struct cols_job {
    const kern_matrix *w;
    eng_qmatrix *q;
    uint64_t seed;
    double *scratch;      /* [workers][3 * rows] */
    float *col;           /* [workers][rows] */
    int failed;
} cols_job;

static float wval(const kern_matrix *w, int64_t i)
{
    if (w->dtype == KERN_F32) return ((const float *)w->data)[i];
    uint16_t h = ((const uint16_t *)w->data)[i];
    return w->dtype == KERN_F16 ? kern_f16_to_f32(h) : kern_bf16_to_f32(h);
}

static void cols_task(void *arg, int64_t j, int worker)
{
    cols_job *h = arg;
    const kern_matrix *w = h->w;
    float *x = h->col + (size_t)worker * (size_t)w->rows;
    for (int64_t r = 0; r < w->rows; r++) x[r] = wval(w, r * w->cols + j);
    int K = 1 << h->q->bits[j];
    uint16_t cb[16];
    if (eng_kmeans_1d(x, w->rows, K, ENG_KMEANS_QUANTILE, h->seed + (uint64_t)j,
                      h->scratch + (size_t)worker * 3 * (size_t)w->rows, cb)) {
        h->failed = 1;
        return;
    }
    uint16_t *qcb = h->q->codebook + j * ENG_QM_CB;
    for (int e = 0; e < ENG_QM_CB; e++) qcb[e] = cb[e < K ? e : K - 1];
    if (eng_qmatrix_grid_fit_col(h->q, j)) {   /* the stored codebook, when q has a grid */
        h->failed = 1;
        return;
    }
    for (int64_t r = 0; r < w->rows; r++)
        h->q->codes[r * w->cols + j] = (uint8_t)eng_kmeans_nearest(qcb, K, x[r]);
}

int eng_quant_kmeans_matrix(const kern_matrix *w, uint64_t seed, struct kern_pool *pool,
                            eng_qmatrix *q, eng_err *err)
{
    if (!w || w->dtype == KERN_CLAQ || !q || q->rows != w->rows || q->cols != w->cols)
        return eng_err_set(err, ENG_E_INVAL, "K-Means: needs a dense matrix and a qmatrix of "
                           "its shape");
    for (int64_t j = 0; j < w->cols; j++)
        if (q->bits[j] < 2 || q->bits[j] > 4)
            return eng_err_set(err, ENG_E_INVAL, "K-Means: column %lld has %d bits (2..4)",
                               (long long)j, q->bits[j]);
    int nw = pool ? kern_pool_threads(pool) : 1, rc = 0;
    cols_job h = {.w = w, .q = q, .seed = seed};
    h.scratch = malloc(sizeof(double) * 3 * (size_t)w->rows * (size_t)nw);
    h.col = malloc(sizeof(float) * (size_t)w->rows * (size_t)nw);
    if (!h.scratch || !h.col) {
        rc = eng_err_set(err, ENG_E_NOMEM, "K-Means: out of memory");
    } else if (pool) {
        kern_pool_run(pool, w->cols, cols_task, &h);
    } else {
        for (int64_t j = 0; j < w->cols; j++) cols_task(&h, j, 0);
    }
    if (!rc && h.failed)
        rc = eng_err_set(err, ENG_E_INVAL, "K-Means failed (non-finite weight?)");
    free(h.scratch);
    free(h.col);
    return rc;
}
