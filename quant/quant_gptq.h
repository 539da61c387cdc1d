/* quant_gptq.h — the GPTQ core used by every calibrated method (claq-algorithm.md §2): Hessian
 * preparation (dead inputs, act-order, dampening, inverse Cholesky factor with retry) and the
 * blocked column loop with error feedback, parameterised by a per-column quantizer callback
 * (uniform grid for the GPTQ baseline, K-Means for CLAQ). Does not pick bit-widths or outliers
 * (quant_alloc.h) and does not run the model (quant.h). Pure computation on caller
 * buffers: any thread, one call per thread (with a pool, the calling thread drives it). */
#ifndef QUANT_GPTQ_H
#define QUANT_GPTQ_H

#include <stdint.h>

#include "eng_err.h"
#include "kern_pool.h"

typedef struct eng_gptq_cfg {
    double percdamp;      /* dampening as a fraction of mean(diag H); GPTQ's 0.01 */
    int blocksize;        /* columns per error-feedback block; GPTQ's 128 */
    int act_order;        /* 1: process columns by diag(H) descending (stable) */
    int max_retries;      /* extra dampening rounds after a failed Cholesky step */
    int fast_inverse;     /* 0: U as GPTQ computes it (potrf, potri, potrf: 4/3 n^3 flops);
                             1: U = J chol(J H J)^-1 J (potrf, trtri: 2/3 n^3), the same
                             factor in exact arithmetic but rounded differently */
    int f32_inverse;      /* 1: that factorization in float, as GPTQ's code does (U is then
                             widened to double); 0: in double */
} eng_gptq_cfg;

void eng_gptq_cfg_default(eng_gptq_cfg *c);   /* 0.01, 128, act-order on, 8 retries, GPTQ's
                                                  inverse in double */

/* What the column loop needs from H, in processing order. */
typedef struct eng_gptq_prep {
    int64_t cols;
    int64_t *perm;        /* [cols] processing position -> original column; owned */
    uint8_t *dead;        /* [cols] by ORIGINAL column: 1 where H[j][j] == 0; owned */
    double *U;            /* [cols][cols] row-major, upper triangle: U with (H+damp)^-1 = U^T U,
                             rows/cols in processing order; lower triangle zero; owned */
    double damp;          /* total dampening added to the diagonal */
    int retries;          /* dampening rounds added after Cholesky failures */
} eng_gptq_prep;

/* H: [cols][cols] symmetric, original column order (not modified). Fills p (zeroed first).
 * ENG_E_RANGE when H stays indefinite after cfg->max_retries rounds or holds NaN/Inf. */
int eng_gptq_prepare(eng_gptq_prep *p, const double *H, int64_t cols, const eng_gptq_cfg *cfg,
                     eng_err *err);
/* The same from a float H (what the pipeline accumulates; each entry is widened to double). */
int eng_gptq_prepare_f32(eng_gptq_prep *p, const float *H, int64_t cols, const eng_gptq_cfg *cfg,
                         eng_err *err);
void eng_gptq_prep_free(eng_gptq_prep *p);   /* safe on zeroed, idempotent */

/* Per-column quantizer. pos: processing position; col: original column index; w: the column's
 * `rows` error-updated values (read-only, valid during the call); q: out, `rows` values exactly
 * as they will be stored (e.g. fp16 codebook entries). Returns 0 or a negative ENG_E_* code,
 * which aborts the run. */
typedef int (*eng_gptq_colq_fn)(void *ud, int64_t pos, int64_t col, const float *w,
                                int64_t rows, float *q);

/* Runs the column loop. W: [rows][cols] row-major original weights (dead columns are treated as
 * zero). Q: out [rows][cols], the quantized matrix in original column order (may alias W).
 * loss (may be NULL): GPTQ's loss, sum over columns of |w - q|^2 / U[j][j]^2 / 2. */
int eng_gptq_run(const eng_gptq_prep *p, const float *W, int64_t rows, int blocksize,
                 eng_gptq_colq_fn fn, void *ud, float *Q, double *loss, eng_err *err);
/* The same with the row work split among pool's workers (NULL: the calling thread alone); fn
 * still runs on the calling thread only. Q and loss are bit-identical for any thread count. */
int eng_gptq_run_pool(const eng_gptq_prep *p, const float *W, int64_t rows, int blocksize,
                      eng_gptq_colq_fn fn, void *ud, float *Q, double *loss, kern_pool *pool,
                      eng_err *err);

/* Relative output error tr((W-Q) H (W-Q)^T) / tr(W H W^T) with the undamped H (original
 * order). W, Q: [rows][cols]. Returns NAN on allocation failure. */
double eng_gptq_rel_error(const double *H, const float *W, const float *Q, int64_t rows,
                          int64_t cols);
/* The same with a float H (upper triangle read; symmetric): exact in double up to 4e9
 * multiply-adds (rows x cols^2), above that estimated on 512 evenly strided rows (float GEMM,
 * double sums), since the exact form would cost as much as the GPTQ sweep. */
double eng_gptq_rel_error_f32(const float *H, const float *W, const float *Q, int64_t rows,
                              int64_t cols);

/* Uniform asymmetric grid (GPTQ's Quantizer.find_params, per column): range [min(x,0), max(x,0)]
 * of x[0..n) (both zero -> [-1, 1]), 2^bits levels scale*(i - zero), rounded to fp16, ascending.
 * Writes 2^bits entries. */
void eng_gptq_uniform_grid(const float *x, int64_t n, int bits, uint16_t *cb_f16);

#endif
