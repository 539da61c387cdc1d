/* quant_matrix.c — quantizes one weight matrix given its calibration Hessian: RTN, GPTQ with
 * a per-column uniform grid, or CLAQ (K-Means codebook fitted on each error-updated column,
 * Adaptive Precision bits, Outlier Reservation), producing an eng_qmatrix in original column
 * order. Does not run the model or capture Hessians (quant_pipeline.c). Any thread, no state;
 * the calling thread drives cfg->pool (the GPTQ loop's row work) when one is given. */
#include "quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quant_alloc.h"
#include "quant_mem.h"
#include "quant_rd.h"
#include "kern_half.h"

const char *eng_quant_method_name(eng_quant_method m)
{
    switch (m) {
    case ENG_QUANT_RTN: return "rtn";
    case ENG_QUANT_GPTQ: return "gptq";
    case ENG_QUANT_CLAQ: return "claq";
    }
    return "?";
}

void eng_quant_cfg_default(eng_quant_cfg *c)
{
    memset(c, 0, sizeof *c);
    c->method = ENG_QUANT_CLAQ;
    c->bits = 4;
    c->or_budget = 1.0;
    c->kinit = ENG_KMEANS_QUANTILE;
    c->cb_bits = 16;
    eng_gptq_cfg_default(&c->gptq);
    c->act_budget = ENG_QUANT_ACT_BUDGET;
}

int eng_quant_cfg_check(const eng_quant_cfg *c, eng_err *err)
{
    if (c->method != ENG_QUANT_RTN && c->method != ENG_QUANT_GPTQ && c->method != ENG_QUANT_CLAQ)
        return eng_err_set(err, ENG_E_INVAL, "unknown method %d", (int)c->method);
    if (!(c->bits >= 2 && c->bits <= 4))
        return eng_err_set(err, ENG_E_INVAL, "--bits must be in [2, 4], got %g", c->bits);
    int integral = c->bits == floor(c->bits);
    if (!integral && c->method != ENG_QUANT_CLAQ)
        return eng_err_set(err, ENG_E_INVAL, "fractional --bits %g (Adaptive Precision) "
                           "needs --method claq", c->bits);
    if (c->target_bpw != 0 && (c->method != ENG_QUANT_CLAQ || !(c->target_bpw >= 2 &&
                                                                c->target_bpw <= 8)))
        return eng_err_set(err, ENG_E_INVAL, "--target-bpw needs --method claq and a value in "
                           "[2, 8], got %g", c->target_bpw);
    if (c->head_bits != 0 && !(c->head_bits >= 2 && c->head_bits <= 4))
        return eng_err_set(err, ENG_E_INVAL, "--head-bits must be in [2, 4], got %g", c->head_bits);
    if (c->cb_bits != 0 && c->cb_bits != 8 && c->cb_bits != 16)
        return eng_err_set(err, ENG_E_INVAL, "--cb-bits must be 8 or 16, got %d", c->cb_bits);
    if (c->outliers && c->method != ENG_QUANT_CLAQ)
        return eng_err_set(err, ENG_E_INVAL, "--outliers needs --method claq");
    if (c->outliers && !(c->or_budget > 0 && c->or_budget * ENG_CLAQ_OR_F_HI < 0.5))
        return eng_err_set(err, ENG_E_INVAL, "--or-budget %g out of range", c->or_budget);
    if (c->gptq.blocksize <= 0 || c->gptq.percdamp < 0)
        return eng_err_set(err, ENG_E_INVAL, "bad GPTQ block size or dampening");
    return 0;
}

static double qm_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct qm_outlier {
    uint32_t col, row;
    uint16_t val;
} qm_outlier;

typedef struct qm_ctx {
    const eng_quant_cfg *cfg;       /* borrowed */
    eng_qmatrix *qm;                /* borrowed: bits set, codebooks/codes written here */
    const float *frac;              /* [cols] OR tail fraction by processing position, or NULL */
    double *km_scratch;             /* [3*rows]; owned by the caller */
    float *or_scratch;              /* [rows] */
    uint8_t *keep;                  /* [rows] */
    qm_outlier *outl;               /* collected outliers; owned by the caller (realloc'ed) */
    int64_t n_outl, cap_outl;
    uint8_t *codes_t;               /* [cols][rows] codes column by column (contiguous writes),
                                       transposed into qm->codes at the end; NULL = write
                                       qm->codes directly; owned by the caller */
    double t_kmeans;                /* seconds in eng_kmeans_1d */
} qm_ctx;

static int qm_push_outlier(qm_ctx *c, uint32_t col, uint32_t row, uint16_t val)
{
    if (c->n_outl == c->cap_outl) {
        int64_t cap = c->cap_outl ? c->cap_outl * 2 : 256;
        qm_outlier *o = realloc(c->outl, (size_t)cap * sizeof *o);
        if (!o) return ENG_E_NOMEM;
        c->outl = o;
        c->cap_outl = cap;
    }
    c->outl[c->n_outl++] = (qm_outlier){col, row, val};
    return 0;
}

/* Assigns w to the column's codebook (already in qm), writes codes (to dst with stride, one
 * per row) and q. Nearest by counting the midpoints strictly below v (in double, where the
 * midpoint of two fp16 values is exact): the same index as eng_kmeans_nearest, ties to the
 * lower centroid, but branch-free so the compiler vectorises it. */
static void qm_assign(eng_qmatrix *qm, int64_t col, const float *w, int64_t rows, float *q,
                      uint8_t *dst, int64_t stride)
{
    int k = 1 << qm->bits[col];
    uint16_t *cb = qm->codebook + col * ENG_QM_CB;
    for (int i = k; i < ENG_QM_CB; i++) cb[i] = cb[k - 1];
    double mid[ENG_QM_CB];
    float val[ENG_QM_CB];
    for (int i = 0; i < k; i++) val[i] = kern_f16_to_f32(cb[i]);
    for (int i = 0; i + 1 < k; i++) mid[i] = 0.5 * ((double)val[i] + (double)val[i + 1]);
    for (int64_t r = 0; r < rows; r++) {
        double v = w[r];
        int code = 0;
        for (int i = 0; i + 1 < k; i++) code += v > mid[i];
        dst[r * stride] = (uint8_t)code;
        q[r] = val[code];
    }
}

/* GPTQ column callback shared by the GPTQ-grid and CLAQ methods. */
static int qm_column(void *ud, int64_t pos, int64_t col, const float *w, int64_t rows, float *q)
{
    qm_ctx *c = ud;
    eng_qmatrix *qm = c->qm;
    if (c->cfg->method == ENG_QUANT_CLAQ) {
        uint64_t seed = c->cfg->seed ^ ((uint64_t)(col + 1) * 0x9e3779b97f4a7c15ull);
        double t0 = qm_now();
        int rc = eng_kmeans_1d(w, rows, 1 << qm->bits[col], c->cfg->kinit, seed, c->km_scratch,
                               qm->codebook + col * ENG_QM_CB);
        c->t_kmeans += qm_now() - t0;
        if (rc || (rc = eng_qmatrix_grid_fit_col(qm, col))) return rc;
    }   /* GPTQ: the grid was fixed on the original column before the loop */
    if (c->codes_t) qm_assign(qm, col, w, rows, q, c->codes_t + col * rows, 1);
    else qm_assign(qm, col, w, rows, q, qm->codes + col, qm->cols);
    if (c->frac) {
        /* §11.1: the reference reads the budget with the block-local index */
        int64_t idx = c->cfg->or_compat_index ? pos % c->cfg->gptq.blocksize : pos;
        if (eng_claq_or_select(w, rows, c->frac[idx], c->or_scratch, c->keep) > 0)
            for (int64_t r = 0; r < rows; r++) {
                if (!c->keep[r]) continue;
                uint16_t v = kern_f32_to_f16(w[r]);
                /* a value the codebook already holds exactly gains nothing from being stored
                 * (tied zeros of a dead column would otherwise all be kept) */
                if (kern_f16_to_f32(v) == q[r]) continue;
                q[r] = kern_f16_to_f32(v);
                if (qm_push_outlier(c, (uint32_t)col, (uint32_t)r, v)) return ENG_E_NOMEM;
            }
    }
    return 0;
}

static int qm_cmp_outlier(const void *a, const void *b)
{
    const qm_outlier *x = a, *y = b;
    if (x->col != y->col) return x->col < y->col ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row);
}

/* The one implementation: H given as double (Hd) or float (Hf), at most one non-NULL (neither
 * for RTN); prep_in (may be NULL) already prepared from that H. */
static int qm_quantize(const float *W, int64_t rows, int64_t cols, const double *Hd,
                       const float *Hf, const eng_gptq_prep *prep_in, const eng_quant_cfg *cfg,
                       eng_qmatrix *out, float *fake, eng_quant_mstats *st, eng_err *err)
{
    const void *H = Hd ? (const void *)Hd : (const void *)Hf;
    double t0 = qm_now();
    eng_quant_mstats stats = {0};
    stats.rel_err = NAN;
    memset(out, 0, sizeof *out);
    int rc = eng_quant_cfg_check(cfg, err);
    if (rc) return rc;
    if (!W || (cfg->method != ENG_QUANT_RTN && !H))
        return eng_err_set(err, ENG_E_INVAL, "%s needs a Hessian",
                           eng_quant_method_name(cfg->method));
    rc = eng_qmatrix_alloc(out, rows, cols, err);
    if (!rc && cfg->cb_bits == 8) rc = eng_qmatrix_grid_alloc(out, err);
    if (rc) {
        eng_qmatrix_free(out);
        return rc;
    }

    eng_gptq_prep prep = {0};
    qm_ctx c = {.cfg = cfg, .qm = out};
    float *Wz = NULL, *Q = NULL, *Fown = NULL, *frac = NULL;
    int32_t *count = NULL, *count_pos = NULL;
    uint8_t *bits_pos = NULL;
    float *col = malloc((size_t)rows * sizeof *col);
    float *qcol = malloc((size_t)rows * sizeof *qcol);
    if (!col || !qcol) goto nomem;

    if (cfg->method == ENG_QUANT_RTN) {
        memset(out->bits, (int)cfg->bits, (size_t)cols);
        for (int64_t j = 0; j < cols; j++) {
            for (int64_t r = 0; r < rows; r++) col[r] = W[r * cols + j];
            eng_gptq_uniform_grid(col, rows, (int)cfg->bits, out->codebook + j * ENG_QM_CB);
            if ((rc = eng_qmatrix_grid_fit_col(out, j))) goto grid_fail;
            qm_assign(out, j, col, rows, qcol, out->codes + j, cols);
        }
        goto finish;
    }

    double tp = qm_now();
    if (!prep_in) {
        rc = Hd ? eng_gptq_prepare(&prep, Hd, cols, &cfg->gptq, err)
                : eng_gptq_prepare_f32(&prep, Hf, cols, &cfg->gptq, err);
        if (rc) goto fail;
        prep_in = &prep;
        stats.t_prep = qm_now() - tp;
    } else if (prep_in->cols != cols) {
        rc = eng_err_set(err, ENG_E_INVAL, "a %lld-column preparation for %lld columns",
                         (long long)prep_in->cols, (long long)cols);
        goto fail;
    }
    const eng_gptq_prep *pp = prep_in;
    stats.retries = pp->retries;
    for (int64_t j = 0; j < cols; j++) stats.n_dead += pp->dead[j];

    /* The dead-zeroed original W: what the grid (GPTQ) and the metric (AP/OR) look at. */
    Wz = eng_quant_big_alloc((size_t)rows * (size_t)cols * sizeof *Wz);
    Q = eng_quant_big_alloc((size_t)rows * (size_t)cols * sizeof *Q);
    if (!Wz || !Q) goto nomem;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++)
            Wz[r * cols + j] = pp->dead[j] ? 0.0f : W[r * cols + j];

    if (cfg->method == ENG_QUANT_GPTQ) {
        memset(out->bits, (int)cfg->bits, (size_t)cols);
        for (int64_t j = 0; j < cols; j++) {
            for (int64_t r = 0; r < rows; r++) col[r] = Wz[r * cols + j];
            eng_gptq_uniform_grid(col, rows, (int)cfg->bits, out->codebook + j * ENG_QM_CB);
            if ((rc = eng_qmatrix_grid_fit_col(out, j))) goto grid_fail;
        }
    } else {
        count = malloc((size_t)cols * sizeof *count);
        count_pos = malloc((size_t)cols * sizeof *count_pos);
        bits_pos = malloc((size_t)cols);
        c.km_scratch = malloc((size_t)rows * 3 * sizeof *c.km_scratch);
        if (!count || !count_pos || !bits_pos || !c.km_scratch) goto nomem;
        eng_claq_outlier_counts(Wz, rows, cols, pp->dead, ENG_CLAQ_T, count);
        for (int64_t a = 0; a < cols; a++) count_pos[a] = count[pp->perm[a]];
        int64_t outlier_bytes = 0;   /* what the planned outliers will store (--target-bpw) */
        if (cfg->outliers) {
            frac = malloc((size_t)cols * sizeof *frac);
            c.or_scratch = malloc((size_t)rows * sizeof *c.or_scratch);
            c.keep = malloc((size_t)rows);
            if (!frac || !c.or_scratch || !c.keep) goto nomem;
            rc = eng_claq_or_fracs(count_pos, cols, ENG_CLAQ_OR_F_HI * cfg->or_budget,
                                   ENG_CLAQ_OR_F_LO * cfg->or_budget, frac);
            if (rc) goto fail;
            c.frac = frac;
            /* each column keeps about round(rows f) values of each tail (eng_claq_or_select):
             * a u16/u32 column index and an fp16 value each, plus a row count per row */
            for (int64_t a = 0; a < cols; a++)
                outlier_bytes += 2 * (eng_claq_round_half_even((double)rows * frac[a]) + 1) *
                                 (cols <= 65504 ? 4 : 6);
            outlier_bytes += rows * (cols < 65536 ? 2 : 4);
        }
        if (cfg->target_bpw > 0) {
            /* GPTQ's own weight of a column's error: its loss is sum (w - q)^2 / U_aa^2 at
             * processing position a */
            double *wgt = malloc((size_t)cols * sizeof *wgt);
            if (!wgt) goto nomem;
            for (int64_t a = 0; a < cols; a++) {
                const double u = pp->U[a * cols + a];
                wgt[pp->perm[a]] = pp->dead[pp->perm[a]] || !(u > 0) ? 0.0 : 1.0 / (u * u);
            }
            eng_rd_plan plan = {.target_bpw = cfg->target_bpw, .cb_bits = cfg->cb_bits ? cfg->cb_bits : 16,
                                .outlier_bytes = outlier_bytes};
            rc = eng_rd_bits(Wz, rows, cols, wgt, &plan, cfg->pool, out->bits,
                             &stats.planned_bpw, err);
            free(wgt);
            if (rc) goto fail;
        } else {
            rc = eng_claq_ap_bits(count_pos, cols, cfg->bits, bits_pos);
            if (rc) goto fail;
            for (int64_t a = 0; a < cols; a++) out->bits[pp->perm[a]] = bits_pos[a];
        }
    }
    c.codes_t = eng_quant_big_alloc((size_t)rows * (size_t)cols);
    if (!c.codes_t) goto nomem;
    double tl = qm_now();
    rc = eng_gptq_run_pool(pp, Wz, rows, cfg->gptq.blocksize, qm_column, &c, Q, &stats.loss,
                           cfg->pool, err);
    if (rc) goto fail;
    stats.t_loop = qm_now() - tl;
    stats.t_kmeans = c.t_kmeans;
    for (int64_t r0 = 0; r0 < rows; r0 += 64)   /* codes [cols][rows] -> [rows][cols], tiled */
        for (int64_t j0 = 0; j0 < cols; j0 += 64) {
            int64_t r1 = r0 + 64 < rows ? r0 + 64 : rows, j1 = j0 + 64 < cols ? j0 + 64 : cols;
            for (int64_t r = r0; r < r1; r++)
                for (int64_t j = j0; j < j1; j++) out->codes[r * cols + j] = c.codes_t[j * rows + r];
        }
    if (c.n_outl > 0) {
        qsort(c.outl, (size_t)c.n_outl, sizeof *c.outl, qm_cmp_outlier);
        for (int64_t i = 0; i < c.n_outl; i++)
            if (eng_qmatrix_add_outlier(out, c.outl[i].row, c.outl[i].col, c.outl[i].val))
                goto nomem;
    }

finish:
    /* fp16 codebooks (--cb-bits 16) cannot hold a weight past 65504: an infinite entry would
     * make a file no reader takes (the 8-bit grid refuses such columns when it is fitted) */
    for (int64_t j = 0; j < cols; j++)
        for (int e = 0; e < (1 << out->bits[j]); e++)
            if ((out->codebook[j * ENG_QM_CB + e] & 0x7c00) == 0x7c00) {
                rc = eng_err_set(err, ENG_E_RANGE, "column %lld holds a weight beyond fp16's "
                                 "range (65504): its codebook entry is not finite",
                                 (long long)j);
                goto fail;
            }
    for (int64_t j = 0; j < cols; j++) stats.n4 += out->bits[j] == 4;
    stats.n_outliers = out->n_outliers;
    if (fake || H) {
        float *F = fake;
        if (!F && !(F = Fown = eng_quant_big_alloc((size_t)rows * (size_t)cols * sizeof *F))) goto nomem;
        eng_qmatrix_dequant(out, F);
        /* Invariant: what the GPTQ loop fed back is exactly what the qmatrix stores. */
        if (Q && memcmp(F, Q, (size_t)rows * (size_t)cols * sizeof *F) != 0) {
            rc = eng_err_set(err, ENG_E_RANGE, "internal error: stored matrix differs "
                             "from the one GPTQ quantized");
            goto fail;
        }
        if (Hd) stats.rel_err = eng_gptq_rel_error(Hd, W, F, rows, cols);
        else if (Hf) stats.rel_err = eng_gptq_rel_error_f32(Hf, W, F, rows, cols);
    }
    stats.seconds = qm_now() - t0;
    if (st) *st = stats;
    rc = 0;
    goto done;
grid_fail:
    rc = eng_err_set(err, rc, "a codebook could not be put on its 8-bit grid");
    goto fail;
nomem:
    rc = eng_err_set(err, ENG_E_NOMEM, "out of memory for a %lld x %lld matrix",
                     (long long)rows, (long long)cols);
fail:
    eng_qmatrix_free(out);
done:
    eng_gptq_prep_free(&prep);
    free(c.km_scratch);
    free(c.or_scratch);
    free(c.keep);
    free(c.outl);
    free(c.codes_t);
    free(Wz);
    free(Q);
    free(Fown);
    free(frac);
    free(count);
    free(count_pos);
    free(bits_pos);
    free(col);
    free(qcol);
    return rc;
}

int eng_quant_matrix(const float *W, int64_t rows, int64_t cols, const double *H,
                     const eng_quant_cfg *cfg, eng_qmatrix *out, float *fake,
                     eng_quant_mstats *st, eng_err *err)
{
    return qm_quantize(W, rows, cols, H, NULL, NULL, cfg, out, fake, st, err);
}

int eng_quant_matrix_f32(const float *W, int64_t rows, int64_t cols, const float *H,
                         const eng_gptq_prep *prep, const eng_quant_cfg *cfg, eng_qmatrix *out,
                         float *fake, eng_quant_mstats *st, eng_err *err)
{
    return qm_quantize(W, rows, cols, NULL, H, prep, cfg, out, fake, st, err);
}
