/* quant_gptq.c — GPTQ preparation (the inverse's upper Cholesky factor in double or float, with
 * retry: as GPTQ computes it, or from one potrf and one trtri) and the blocked column loop with
 * lazy error feedback (W kept transposed so columns are contiguous; rows split among a
 * kern_pool's workers; the trailing update of each block is one sgemm). Does not choose
 * codebooks (the caller's callback does). Any thread, one call per thread (a pool passed in is
 * driven by the calling thread). */
#include "quant_gptq.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kern_half.h"
#include "quant_mem.h"

#define GPTQ_ROW_CHUNK 512   /* rows per task of the column loop */
#define GPTQ_REL_EXACT 4e9    /* multiply-adds up to which the relative error is exact */
#define GPTQ_REL_SAMPLE 512   /* rows it is estimated on above that */

void eng_gptq_cfg_default(eng_gptq_cfg *c)
{
    c->percdamp = 0.01;
    c->blocksize = 128;
    c->act_order = 1;
    c->max_retries = 8;
    c->fast_inverse = 0;
    c->f32_inverse = 0;
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

/* The factor is computed in double or, with cfg->f32_inverse, in float (the precision GPTQ's
 * own code factors in: half the memory traffic and twice the SIMD width). gptq_fac is the n x n
 * work array in either type; the LAPACK steps and the O(n^2) moves below take both. */
typedef struct gptq_fac {
    void *a;      /* double[n*n] or float[n*n] */
    int f32;
} gptq_fac;

static lapack_int gptq_potrf(gptq_fac A, char uplo, lapack_int n)
{
    return A.f32 ? LAPACKE_spotrf(LAPACK_COL_MAJOR, uplo, n, A.a, n)
                 : LAPACKE_dpotrf(LAPACK_COL_MAJOR, uplo, n, A.a, n);
}

static lapack_int gptq_potri(gptq_fac A, char uplo, lapack_int n)
{
    return A.f32 ? LAPACKE_spotri(LAPACK_COL_MAJOR, uplo, n, A.a, n)
                 : LAPACKE_dpotri(LAPACK_COL_MAJOR, uplo, n, A.a, n);
}

static lapack_int gptq_trtri_lower(gptq_fac A, lapack_int n)
{
    return A.f32 ? LAPACKE_strtri(LAPACK_COL_MAJOR, 'L', 'N', n, A.a, n)
                 : LAPACKE_dtrtri(LAPACK_COL_MAJOR, 'L', 'N', n, A.a, n);
}

static inline void gptq_swap(gptq_fac A, size_t x, size_t y)
{
    if (A.f32) {
        float *f = A.a, t = f[x];
        f[x] = f[y];
        f[y] = t;
    } else {
        double *d = A.a, t = d[x];
        d[x] = d[y];
        d[y] = t;
    }
}

/* Transposes the n x n row-major matrix A in place, in 64 x 64 tiles (a 969 MB factor of an
 * 11008-wide Hessian is far larger than any cache, and a plain double loop misses on every
 * element of one side). */
static void gptq_transpose_inplace(gptq_fac A, int64_t n)
{
    enum { T = 64 };
    for (int64_t i0 = 0; i0 < n; i0 += T)
        for (int64_t j0 = i0; j0 < n; j0 += T) {
            int64_t i1 = i0 + T < n ? i0 + T : n, j1 = j0 + T < n ? j0 + T : n;
            for (int64_t i = i0; i < i1; i++)
                for (int64_t j = (j0 == i0 ? i + 1 : j0); j < j1; j++)
                    gptq_swap(A, (size_t)(i * n + j), (size_t)(j * n + i));
        }
}

/* Zeroes the strict lower triangle of the row-major n x n A. */
static void gptq_zero_lower(gptq_fac A, int64_t n)
{
    size_t esz = A.f32 ? sizeof(float) : sizeof(double);
    for (int64_t a = 0; a < n; a++) memset((char *)A.a + (size_t)(a * n) * esz, 0, (size_t)a * esz);
}

/* The upper Cholesky factor U of the inverse of the damped, permuted Hessian as GPTQ computes
 * it: H = L L^T, H^-1 from L (potri), H^-1 = U^T U (potrf). On entry A holds H (symmetric); on
 * success it holds U row-major with a zero lower triangle. Column-major LAPACK on a symmetric
 * matrix: the row-major view is the transpose. Returns the LAPACK info. */
static int gptq_inv_chol_ref(gptq_fac A, int64_t n)
{
    lapack_int N = (lapack_int)n;
    int info = gptq_potrf(A, 'L', N);                  /* H = L L^T */
    if (info != 0) return info;
    info = gptq_potri(A, 'L', N);                      /* Hinv, lower part */
    if (info != 0) return info;
    for (int64_t j = 0; j < n; j++)                    /* mirror lower -> upper */
        for (int64_t i = j + 1; i < n; i++) {
            if (A.f32) ((float *)A.a)[i * n + j] = ((float *)A.a)[j * n + i];
            else ((double *)A.a)[i * n + j] = ((double *)A.a)[j * n + i];
        }
    info = gptq_potrf(A, 'U', N);                      /* Hinv = U^T U */
    if (info != 0) return info;
    gptq_transpose_inplace(A, n);            /* column-major upper -> row-major upper */
    gptq_zero_lower(A, n);
    return 0;
}

/* The upper Cholesky factor U of the inverse of the damped, permuted Hessian, by one Cholesky
 * and one triangular inverse instead of GPTQ's three factorizations: with J the reversal
 * permutation and J H J = L L^T, H^-1 = J L^-T L^-1 J = U^T U for U = J L^-1 J, which is upper
 * triangular with a positive diagonal, hence THE upper factor (Cholesky factors are unique).
 * About 2/3 n^3 flops instead of 4/3 n^3. On entry A holds J H J (symmetric, row-major ==
 * column-major); on success it holds U row-major with a zero lower triangle. Returns the LAPACK
 * info (0 on success). */
static int gptq_inv_chol(gptq_fac A, int64_t n)
{
    lapack_int N = (lapack_int)n;
    int info = gptq_potrf(A, 'L', N);                  /* J H J = L L^T */
    if (info != 0) return info;
    info = gptq_trtri_lower(A, N);                     /* L^-1, lower */
    if (info != 0) return info;
    /* Column-major lower M = L^-1 is row-major upper M^T: element (i, j), i >= j, sits at
     * A[j n + i]. U[a][b] = M[n-1-a][n-1-b] sits at A[(n-1-b) n + (n-1-a)] = A[nn-1-(b n + a)]:
     * reverse the array, then transpose. */
    size_t nn = (size_t)n * (size_t)n;
    for (size_t i = 0, k = nn - 1; i < k; i++, k--) gptq_swap(A, i, k);
    gptq_transpose_inplace(A, n);
    gptq_zero_lower(A, n);
    return 0;
}

/* H[i][j] from the double or the float copy (exactly one is non-NULL). */
static inline double gptq_h(const double *Hd, const float *Hf, int64_t cols, int64_t i, int64_t j)
{
    return Hd ? Hd[i * cols + j] : (double)Hf[i * cols + j];
}

static int gptq_prepare(eng_gptq_prep *p, const double *Hd, const float *Hf, int64_t cols,
                        const eng_gptq_cfg *cfg, eng_err *err)
{
    memset(p, 0, sizeof *p);
    if ((!Hd && !Hf) || cols <= 0 || cols > (1 << 20) || !cfg || cfg->percdamp < 0)
        return eng_err_set(err, ENG_E_INVAL, "gptq: bad arguments (cols %lld)", (long long)cols);
    size_t nn = (size_t)cols * (size_t)cols;
    p->cols = cols;
    p->perm = malloc((size_t)cols * sizeof *p->perm);
    p->dead = calloc((size_t)cols, 1);
    p->U = eng_quant_big_alloc(nn * sizeof *p->U);
    gptq_sortkey *keys = malloc((size_t)cols * sizeof *keys);
    int rc = 0;
    if (!p->perm || !p->dead || !p->U || !keys) {
        rc = eng_err_set(err, ENG_E_NOMEM, "gptq: out of memory for a %lld-column Hessian",
                         (long long)cols);
        goto done;
    }
    for (int64_t j = 0; j < cols; j++) {
        double d = gptq_h(Hd, Hf, cols, j, j);
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

    /* Dead inputs: their row/column is zero already (H is a Gram matrix), and the diagonal
     * becomes 1, as GPTQ does. */
    double mean_diag = 0;
    for (int64_t a = 0; a < cols; a++) mean_diag += keys[a].d;
    mean_diag /= (double)cols;
    double damp = cfg->percdamp * mean_diag;
    if (damp <= 0) damp = 1e-8;   /* an all-zero H cannot be factored without some damping */
    for (int attempt = 0;; attempt++) {
        p->damp = damp * (attempt + 1);
        /* U = Hp + damp I (reference), or J Hp J + damp I (fast: U[a][b] = Hp[C-1-a][C-1-b]),
         * Hp the permuted H. Rebuilt on each attempt instead of keeping a second n x n copy. */
        int fast = cfg->fast_inverse;
        /* With f32_inverse the work array is p->U's first half as float, widened in place
         * to double at the end (backwards: each double lands at or after its float). */
        gptq_fac A = {p->U, cfg->f32_inverse};
        float *Uf = (float *)(void *)p->U;
        for (int64_t a = 0; a < cols; a++) {
            int64_t ja = p->perm[fast ? cols - 1 - a : a];
            for (int64_t b = 0; b < cols; b++) {
                int64_t jb = p->perm[fast ? cols - 1 - b : b];
                double v = (p->dead[ja] || p->dead[jb]) ? 0.0 : gptq_h(Hd, Hf, cols, ja, jb);
                if (!isfinite(v)) {
                    rc = eng_err_set(err, ENG_E_RANGE, "gptq: Hessian entry (%lld,%lld) is %g",
                                     (long long)ja, (long long)jb, v);
                    goto done;
                }
                if (a == b) v = (p->dead[ja] ? 1.0 : v) + p->damp;
                if (A.f32) Uf[a * cols + b] = (float)v;
                else p->U[a * cols + b] = v;
            }
        }
        int info = fast ? gptq_inv_chol(A, cols) : gptq_inv_chol_ref(A, cols);
        if (info == 0) {
            if (A.f32)
                for (size_t i = nn; i-- > 0;) p->U[i] = (double)Uf[i];
            p->retries = attempt;
            break;
        }
        if (attempt >= cfg->max_retries) {
            rc = eng_err_set(err, ENG_E_RANGE,
                             "gptq: Hessian not positive definite after %d dampening rounds "
                             "(LAPACK info %d)", attempt + 1, info);
            goto done;
        }
    }
done:
    free(keys);
    if (rc) eng_gptq_prep_free(p);
    return rc;
}

int eng_gptq_prepare(eng_gptq_prep *p, const double *H, int64_t cols, const eng_gptq_cfg *cfg,
                     eng_err *err)
{
    if (!H) {
        memset(p, 0, sizeof *p);
        return eng_err_set(err, ENG_E_INVAL, "gptq: no Hessian");
    }
    return gptq_prepare(p, H, NULL, cols, cfg, err);
}

int eng_gptq_prepare_f32(eng_gptq_prep *p, const float *H, int64_t cols,
                         const eng_gptq_cfg *cfg, eng_err *err)
{
    if (!H) {
        memset(p, 0, sizeof *p);
        return eng_err_set(err, ENG_E_INVAL, "gptq: no Hessian");
    }
    return gptq_prepare(p, NULL, H, cols, cfg, err);
}

/* ---- the column loop ----
 * Wt [C][rows] holds the columns in processing order, each contiguous. Within a block the
 * updates are lazy: column a is brought up to date just before it is quantized,
 * w_a -= sum_{t < a, t in block} e_t U[t][a], each row summing in t order (the same order, and
 * so the same float result, whatever the row split). The rows are split among the pool's
 * workers; only the caller's quantizer callback runs on one thread. After a block, the columns
 * to its right get one sgemm. */

typedef struct gptq_loop {
    const eng_gptq_prep *p;
    float *Wt;            /* [C][rows] */
    float *Err;           /* [bs_max][rows] scaled errors of the current block */
    const float *q;       /* [rows] the quantized column (callback output) */
    float *uc;            /* [bs_max] U[i1 + t][a] of the column being updated, as float */
    double *lpart;        /* [n_chunks] loss partial sums */
    int64_t rows, chunk;
    int64_t i1, i;        /* block start, position in block of the column just quantized */
    int64_t next_n;       /* columns of Err feeding the next column's update (0 = none) */
    float inv_d;
} gptq_loop;

/* Task: rows [r0, r1): error of the just-quantized column i (into Err[i], q written back into
 * Wt), then the lazy update of the next column of the block from Err[0 .. next_n). */
static void gptq_rows_task(void *arg, int64_t task, int worker)
{
    (void)worker;
    gptq_loop *L = arg;
    int64_t rows = L->rows, r0 = task * L->chunk, r1 = r0 + L->chunk < rows ? r0 + L->chunk : rows;
    int64_t a = L->i1 + L->i;
    float *w = L->Wt + a * rows, *e = L->Err + L->i * rows;
    const float *q = L->q;
    double l = 0;
    float inv_d = L->inv_d;
    for (int64_t r = r0; r < r1; r++) {
        float diff = w[r] - q[r];
        l += (double)diff * diff;
        e[r] = diff * inv_d;
        w[r] = q[r];
    }
    L->lpart[task] = l;
    if (L->next_n > 0) {
        /* saxpy, as the eager loop this replaces did: the same fused multiply-adds in the same
         * t order, so each element gets exactly the value the eager update gave it */
        float *wn = L->Wt + (a + 1) * rows + r0;
        for (int64_t t = 0; t < L->next_n; t++)
            cblas_saxpy((int)(r1 - r0), -L->uc[t], L->Err + t * rows + r0, 1, wn, 1);
    }
}

/* Task: Q[r][perm[a]] = Wt[a][r] for a tile of 64 processing positions (all rows). */
typedef struct gptq_untr {
    const eng_gptq_prep *p;
    const float *Wt;
    float *Q;
    int64_t rows;
} gptq_untr;

static void gptq_untranspose_task(void *arg, int64_t task, int worker)
{
    (void)worker;
    const gptq_untr *u = arg;
    int64_t C = u->p->cols, a0 = task * 64, a1 = a0 + 64 < C ? a0 + 64 : C;
    for (int64_t r0 = 0; r0 < u->rows; r0 += 64) {
        int64_t r1 = r0 + 64 < u->rows ? r0 + 64 : u->rows;
        for (int64_t r = r0; r < r1; r++)
            for (int64_t a = a0; a < a1; a++) u->Q[r * C + u->p->perm[a]] = u->Wt[a * u->rows + r];
    }
}

static void gptq_pool_run(kern_pool *pool, int64_t n, kern_task_fn fn, void *arg)
{
    if (pool && n > 1 && kern_pool_run(pool, n, fn, arg) == 0) return;
    for (int64_t t = 0; t < n; t++) fn(arg, t, 0);
}

int eng_gptq_run_pool(const eng_gptq_prep *p, const float *W, int64_t rows, int blocksize,
                      eng_gptq_colq_fn fn, void *ud, float *Q, double *loss, kern_pool *pool,
                      eng_err *err)
{
    if (!p || !p->U || !W || !Q || !fn || rows <= 0 || blocksize <= 0)
        return eng_err_set(err, ENG_E_INVAL, "gptq: bad arguments to run");
    int64_t C = p->cols, bs_max = blocksize < C ? blocksize : C;
    /* Row chunks of a fixed size, whatever the thread count, so that even the loss (summed per
     * chunk, then over chunks in order) is the same number with 1 or N threads. */
    int64_t chunk = GPTQ_ROW_CHUNK;
    int64_t n_chunks = (rows + chunk - 1) / chunk;
    float *Wt = eng_quant_big_alloc((size_t)C * (size_t)rows * sizeof *Wt);      /* [C][rows], processing order */
    float *Err = malloc((size_t)bs_max * (size_t)rows * sizeof *Err);
    float *Ub = malloc((size_t)bs_max * (size_t)C * sizeof *Ub);   /* U[i1:i2, i2:C] as float */
    float *q = malloc((size_t)rows * sizeof *q);
    float *uc = malloc((size_t)bs_max * sizeof *uc);
    double *lpart = malloc((size_t)n_chunks * sizeof *lpart);
    int rc = 0;
    double total = 0;
    if (!Wt || !Err || !Ub || !q || !uc || !lpart) {
        rc = eng_err_set(err, ENG_E_NOMEM, "gptq: out of memory for %lld x %lld",
                         (long long)rows, (long long)C);
        goto done;
    }
    /* Transpose into processing order, in tiles. Q may alias W, so everything is read here
     * first. */
    for (int64_t r0 = 0; r0 < rows; r0 += 64) {
        int64_t r1 = r0 + 64 < rows ? r0 + 64 : rows;
        for (int64_t a = 0; a < C; a++) {
            int64_t j = p->perm[a];
            float *dst = Wt + a * rows;
            if (p->dead[j]) for (int64_t r = r0; r < r1; r++) dst[r] = 0;
            else for (int64_t r = r0; r < r1; r++) dst[r] = W[r * C + j];
        }
    }
    gptq_loop L = {.p = p, .Wt = Wt, .Err = Err, .q = q, .uc = uc, .lpart = lpart, .rows = rows,
                   .chunk = chunk};

    for (int64_t i1 = 0; i1 < C; i1 += blocksize) {
        int64_t i2 = i1 + blocksize < C ? i1 + blocksize : C, bs = i2 - i1;
        L.i1 = i1;
        for (int64_t i = 0; i < bs; i++) {
            int64_t a = i1 + i, j = p->perm[a];
            rc = fn(ud, a, j, Wt + a * rows, rows, q);
            if (rc) {
                eng_err_set(err, rc, "gptq: quantizer failed on column %lld", (long long)j);
                goto done;
            }
            double d = p->U[a * C + a];
            L.i = i;
            L.inv_d = (float)(1.0 / d);
            L.next_n = i + 1 < bs ? i + 1 : 0;
            for (int64_t t = 0; t < L.next_n; t++) uc[t] = (float)p->U[(i1 + t) * C + a + 1];
            gptq_pool_run(pool, n_chunks, gptq_rows_task, &L);
            double l = 0;
            for (int64_t t = 0; t < n_chunks; t++) l += lpart[t];   /* fixed order */
            total += l / (d * d) / 2;
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
    /* Wt now holds the quantized columns: back to [rows][cols] in original order. */
    gptq_untr u = {p, Wt, Q, rows};
    gptq_pool_run(pool, (C + 63) / 64, gptq_untranspose_task, &u);
    if (loss) *loss = total;
done:
    free(Wt);
    free(Err);
    free(Ub);
    free(q);
    free(uc);
    free(lpart);
    return rc;
}

int eng_gptq_run(const eng_gptq_prep *p, const float *W, int64_t rows, int blocksize,
                 eng_gptq_colq_fn fn, void *ud, float *Q, double *loss, eng_err *err)
{
    return eng_gptq_run_pool(p, W, rows, blocksize, fn, ud, Q, loss, NULL, err);
}

/* tr(D H D^T) and tr(W H W^T) over the rows listed in sel (every row when sel is NULL), in
 * double. */
static double gptq_rel_error_exact(const double *H, const float *W, const float *Q, int64_t rows,
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

double eng_gptq_rel_error(const double *H, const float *W, const float *Q, int64_t rows,
                          int64_t cols)
{
    return gptq_rel_error_exact(H, W, Q, rows, cols);
}

double eng_gptq_rel_error_f32(const float *H, const float *W, const float *Q, int64_t rows,
                              int64_t cols)
{
    /* Exact (double) up to GPTQ_REL_EXACT multiply-adds; above, the rows of an even stride
     * (GPTQ_REL_SAMPLE of them) through one float GEMM each for D and W with double sums:
     * at LLaMA-7B sizes the exact form costs as much as the GPTQ sweep itself. */
    size_t rc = (size_t)rows * (size_t)cols;
    if ((double)rows * (double)cols * (double)cols <= GPTQ_REL_EXACT) {
        double *Hd = malloc((size_t)cols * (size_t)cols * sizeof *Hd);
        if (!Hd) return NAN;
        for (size_t i = 0; i < (size_t)cols * (size_t)cols; i++) Hd[i] = H[i];
        double out = gptq_rel_error_exact(Hd, W, Q, rows, cols);
        free(Hd);
        return out;
    }
    (void)rc;
    int64_t stride = rows / GPTQ_REL_SAMPLE > 1 ? rows / GPTQ_REL_SAMPLE : 1;
    int64_t n = (rows + stride - 1) / stride;
    size_t sz = (size_t)(2 * n) * (size_t)cols;
    float *A = malloc(sz * sizeof *A), *T = malloc(sz * sizeof *T);
    double out = NAN;
    if (A && T) {
        for (int64_t i = 0; i < n; i++) {
            const float *w = W + i * stride * cols, *q = Q + i * stride * cols;
            for (int64_t j = 0; j < cols; j++) {
                A[i * cols + j] = w[j] - q[j];
                A[(n + i) * cols + j] = w[j];
            }
        }
        cblas_ssymm(CblasRowMajor, CblasRight, CblasUpper, (int)(2 * n), (int)cols, 1.0f, H,
                    (int)cols, A, (int)cols, 0.0f, T, (int)cols);
        double num = 0, den = 0;
        for (size_t i = 0; i < (size_t)n * (size_t)cols; i++) num += (double)A[i] * T[i];
        for (size_t i = (size_t)n * (size_t)cols; i < sz; i++) den += (double)A[i] * T[i];
        out = den > 0 ? num / den : (num > 0 ? INFINITY : 0.0);
    }
    free(A);
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
