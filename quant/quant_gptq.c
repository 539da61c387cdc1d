/* quant_gptq.c — GPTQ preparation (LAPACKE dpotrf/dpotri/dpotrf in double, with retry) and the
 * blocked column loop with error feedback (W kept transposed so columns are contiguous; the
 * trailing update of each block is one sgemm). Does not choose codebooks (the caller's callback
 * does). Any thread; no state outside the caller's structs. */
#include "quant_gptq.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kern_half.h"

void eng_gptq_cfg_default(eng_gptq_cfg *c)
{
    c->percdamp = 0.01;
    c->blocksize = 128;
    c->act_order = 1;
    c->max_retries = 8;
}

void eng_gptq_prep_free(eng_gptq_prep *p)
{
    if (!p) return;
    free(p->perm);
    free(p->dead);
    free(p->U);
    memset(p, 0, sizeof *p);
}

typedef struct gptq_sortkey {
    double d;
    int64_t idx;
} gptq_sortkey;

static int gptq_cmp_desc(const void *a, const void *b)   /* diag descending, index ascending */
{
    const gptq_sortkey *x = a, *y = b;
    if (x->d > y->d) return -1;
    if (x->d < y->d) return 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* Cholesky factor of the inverse of the damped, permuted Hessian in A (n x n symmetric).
 * Column-major LAPACK on a symmetric matrix: the row-major view is the transpose. Returns the
 * LAPACK info (0 on success). */
static int gptq_inv_chol(double *A, int64_t n)
{
    lapack_int N = (lapack_int)n;
    int info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', N, A, N);      /* H = L L^T */
    if (info != 0) return info;
    info = LAPACKE_dpotri(LAPACK_COL_MAJOR, 'L', N, A, N);          /* Hinv, lower part */
    if (info != 0) return info;
    for (int64_t j = 0; j < n; j++)                                  /* mirror lower -> upper */
        for (int64_t i = j + 1; i < n; i++) A[i * n + j] = A[j * n + i];
    return LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', N, A, N);          /* Hinv = U^T U */
}

int eng_gptq_prepare(eng_gptq_prep *p, const double *H, int64_t cols, const eng_gptq_cfg *cfg,
                     eng_err *err)
{
    memset(p, 0, sizeof *p);
    if (!H || cols <= 0 || cols > (1 << 20) || !cfg || cfg->percdamp < 0)
        return eng_err_set(err, ENG_E_INVAL, "gptq: bad arguments (cols %lld)", (long long)cols);
    size_t nn = (size_t)cols * (size_t)cols;
    p->cols = cols;
    p->perm = malloc((size_t)cols * sizeof *p->perm);
    p->dead = calloc((size_t)cols, 1);
    p->U = malloc(nn * sizeof *p->U);
    double *Hp = malloc(nn * sizeof *Hp);
    gptq_sortkey *keys = malloc((size_t)cols * sizeof *keys);
    int rc = 0;
    if (!p->perm || !p->dead || !p->U || !Hp || !keys) {
        rc = eng_err_set(err, ENG_E_NOMEM, "gptq: out of memory for a %lld-column Hessian",
                         (long long)cols);
        goto done;
    }
    for (int64_t j = 0; j < cols; j++) {
        double d = H[j * cols + j];
        if (!isfinite(d) || d < 0) {
            rc = eng_err_set(err, ENG_E_RANGE, "gptq: Hessian diagonal %lld is %g",
                             (long long)j, d);
            goto done;
        }
        if (d == 0) p->dead[j] = 1;
        keys[j].d = p->dead[j] ? 1.0 : d;
        keys[j].idx = j;
    }
    if (cfg->act_order) qsort(keys, (size_t)cols, sizeof *keys, gptq_cmp_desc);
    for (int64_t a = 0; a < cols; a++) p->perm[a] = keys[a].idx;

    /* Permuted H with dead inputs: their row/column is zero already (H is a Gram matrix), and
     * the diagonal becomes 1, as GPTQ does. */
    double mean_diag = 0;
    for (int64_t a = 0; a < cols; a++) {
        int64_t ja = p->perm[a];
        for (int64_t b = 0; b < cols; b++) {
            int64_t jb = p->perm[b];
            double v = (p->dead[ja] || p->dead[jb]) ? 0.0 : H[ja * cols + jb];
            if (!isfinite(v)) {
                rc = eng_err_set(err, ENG_E_RANGE, "gptq: Hessian entry (%lld,%lld) is %g",
                                 (long long)ja, (long long)jb, v);
                goto done;
            }
            Hp[a * cols + b] = v;
        }
        if (p->dead[ja]) Hp[a * cols + a] = 1.0;
        mean_diag += Hp[a * cols + a];
    }
    mean_diag /= (double)cols;
    double damp = cfg->percdamp * mean_diag;
    if (damp <= 0) damp = 1e-8;   /* an all-zero H cannot be factored without some damping */
    for (int attempt = 0;; attempt++) {
        p->damp = damp * (attempt + 1);
        memcpy(p->U, Hp, nn * sizeof *Hp);
        for (int64_t a = 0; a < cols; a++) p->U[a * cols + a] += p->damp;
        int info = gptq_inv_chol(p->U, cols);
        if (info == 0) { p->retries = attempt; break; }
        if (attempt >= cfg->max_retries) {
            rc = eng_err_set(err, ENG_E_RANGE,
                             "gptq: Hessian not positive definite after %d dampening rounds "
                             "(LAPACK info %d)", attempt + 1, info);
            goto done;
        }
    }
    /* Column-major upper factor == row-major lower; transpose in place to row-major upper. */
    for (int64_t a = 0; a < cols; a++)
        for (int64_t b = a + 1; b < cols; b++) {
            double t = p->U[a * cols + b];
            p->U[a * cols + b] = p->U[b * cols + a];
            p->U[b * cols + a] = t;
        }
    for (int64_t a = 0; a < cols; a++)
        for (int64_t b = 0; b < a; b++) p->U[a * cols + b] = 0;
done:
    free(Hp);
    free(keys);
    if (rc) eng_gptq_prep_free(p);
    return rc;
}

int eng_gptq_run(const eng_gptq_prep *p, const float *W, int64_t rows, int blocksize,
                 eng_gptq_colq_fn fn, void *ud, float *Q, double *loss, eng_err *err)
{
    if (!p || !p->U || !W || !Q || !fn || rows <= 0 || blocksize <= 0)
        return eng_err_set(err, ENG_E_INVAL, "gptq: bad arguments to run");
    int64_t C = p->cols, bs_max = blocksize < C ? blocksize : C;
    float *Wt = malloc((size_t)C * (size_t)rows * sizeof *Wt);      /* [C][rows], processing order */
    float *Err = malloc((size_t)bs_max * (size_t)rows * sizeof *Err);
    float *Ub = malloc((size_t)bs_max * (size_t)C * sizeof *Ub);   /* U[i1:i2, i2:C] as float */
    float *q = malloc((size_t)rows * sizeof *q);
    int rc = 0;
    double total = 0;
    if (!Wt || !Err || !Ub || !q) {
        rc = eng_err_set(err, ENG_E_NOMEM, "gptq: out of memory for %lld x %lld",
                         (long long)rows, (long long)C);
        goto done;
    }
    /* Transpose into processing order. Q may alias W, so everything is read here first. */
    for (int64_t a = 0; a < C; a++) {
        int64_t j = p->perm[a];
        float *dst = Wt + a * rows;
        if (p->dead[j]) memset(dst, 0, (size_t)rows * sizeof *dst);
        else for (int64_t r = 0; r < rows; r++) dst[r] = W[r * C + j];
    }
    for (int64_t i1 = 0; i1 < C; i1 += blocksize) {
        int64_t i2 = i1 + blocksize < C ? i1 + blocksize : C, bs = i2 - i1;
        for (int64_t i = 0; i < bs; i++) {
            int64_t a = i1 + i, j = p->perm[a];
            float *w = Wt + a * rows, *e = Err + i * rows;
            rc = fn(ud, a, j, w, rows, q);
            if (rc) {
                eng_err_set(err, rc, "gptq: quantizer failed on column %lld", (long long)j);
                goto done;
            }
            double d = p->U[a * C + a];
            float inv_d = (float)(1.0 / d);
            double l = 0;
            for (int64_t r = 0; r < rows; r++) {
                float diff = w[r] - q[r];
                l += (double)diff * diff;
                e[r] = diff * inv_d;
                Q[r * C + j] = q[r];
            }
            total += l / (d * d) / 2;
            /* Error feedback inside the block, column by column (saxpy on contiguous rows). */
            for (int64_t jj = i + 1; jj < bs; jj++)
                cblas_saxpy((int)rows, -(float)p->U[a * C + i1 + jj], e, 1, Wt + (i1 + jj) * rows, 1);
        }
        if (i2 < C) {
            /* Wt[i2:C] -= U[i1:i2, i2:C]^T . Err  (one GEMM per block) */
            int64_t rest = C - i2;
            for (int64_t i = 0; i < bs; i++)
                for (int64_t b = 0; b < rest; b++)
                    Ub[i * rest + b] = (float)p->U[(i1 + i) * C + i2 + b];
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)rest, (int)rows, (int)bs,
                        -1.0f, Ub, (int)rest, Err, (int)rows, 1.0f, Wt + i2 * rows, (int)rows);
        }
    }
    if (loss) *loss = total;
done:
    free(Wt);
    free(Err);
    free(Ub);
    free(q);
    return rc;
}

double eng_gptq_rel_error(const double *H, const float *W, const float *Q, int64_t rows,
                          int64_t cols)
{
    size_t rc = (size_t)rows * (size_t)cols;
    double *D = calloc(rc, sizeof *D), *Wd = calloc(rc, sizeof *Wd);   /* calloc: rc may be 0 */
    double *T = malloc(rc * sizeof *T);
    double out = NAN;
    if (D && Wd && T) {
        for (size_t i = 0; i < rc; i++) {
            Wd[i] = W[i];
            D[i] = (double)W[i] - (double)Q[i];
        }
        double num = 0, den = 0;
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)cols, (int)cols,
                    1.0, D, (int)cols, H, (int)cols, 0.0, T, (int)cols);
        for (size_t i = 0; i < rc; i++) num += D[i] * T[i];
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)cols, (int)cols,
                    1.0, Wd, (int)cols, H, (int)cols, 0.0, T, (int)cols);
        for (size_t i = 0; i < rc; i++) den += Wd[i] * T[i];
        out = den > 0 ? num / den : (num > 0 ? INFINITY : 0.0);
    }
    free(D);
    free(Wd);
    free(T);
    return out;
}

void eng_gptq_uniform_grid(const float *x, int64_t n, int bits, uint16_t *cb_f16)
{
    double xmin = 0, xmax = 0;
    for (int64_t i = 0; i < n; i++) {
        if (x[i] < xmin) xmin = x[i];
        if (x[i] > xmax) xmax = x[i];
    }
    if (xmin == 0 && xmax == 0) { xmin = -1; xmax = 1; }
    int maxq = (1 << bits) - 1;
    double scale = (xmax - xmin) / maxq;
    double zero = nearbyint(-xmin / scale);   /* torch.round: half to even */
    for (int i = 0; i <= maxq; i++) cb_f16[i] = kern_f32_to_f16((float)(scale * (i - zero)));
}
