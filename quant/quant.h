/* quant.h — the quantizer: one matrix at a time (RTN, GPTQ with a uniform grid, CLAQ K-Means
 * with Adaptive Precision and/or Outlier Reservation; quant_matrix.c), and the layer-by-layer
 * pipeline over a model (calibration windows, Hessians captured through the engine's own forward
 * pass, fake-quantized weights swapped in, quantized outputs fed forward; quant_pipeline.c,
 * quant_calib.c). Does not write files (the packed-format writer does). One thread drives a run;
 * BLAS, the backend and cfg->pool use their own threads inside. */
#ifndef QUANT_H
#define QUANT_H

#include <stdint.h>
#include <stdio.h>

#include "eng_err.h"
#include "quant_gptq.h"
#include "quant_kmeans.h"
#include "eng_model.h"
#include "eng_qmatrix.h"
#include "kern.h"

typedef enum eng_quant_method {
    ENG_QUANT_RTN = 0,    /* per-column min/max uniform grid, no calibration */
    ENG_QUANT_GPTQ = 1,   /* GPTQ, per-column uniform grid fixed on the original column */
    ENG_QUANT_CLAQ = 2,   /* GPTQ + per-column K-Means on the error-updated column (+ AP, OR) */
} eng_quant_method;

const char *eng_quant_method_name(eng_quant_method m);   /* "rtn", "gptq", "claq" */

/* One line naming the BLAS kernels in use and whether the environment forced them
 * (quant_blas.c), for the quantizer's banner. */
void quant_blas_describe(char *buf, size_t cap);

#define ENG_QUANT_ACT_BUDGET ((size_t)2 << 30)   /* activations kept in RAM; above: temp file */

typedef struct eng_quant_cfg {
    eng_quant_method method;
    double bits;             /* 2..4; fractional = Adaptive Precision (CLAQ only) */
    double target_bpw;       /* > 0: each matrix's columns get 2/3/4 bits to fit this many stored
                                bits per weight (quant_rd.h; CLAQ only), instead of bits */
    int outliers;            /* 1: Outlier Reservation (CLAQ only) */
    int or_compat_index;     /* 1: the reference's block-local budget index (§11.1) */
    double or_budget;        /* scales the OR fractions 0.014 / 0.004 (1.0 = the paper's) */
    double head_bits;        /* > 0: the output head too, by GPTQ + CLAQ at these bits (2..4)
                                with its Hessian from the final norm's outputs (res->head) */
    eng_kmeans_init kinit;   /* K-Means initialisation */
    int cb_bits;             /* codebook entries: 8 = on a per-column 8-bit grid (format.md,
                                grid8; fitted before the codes are assigned, so GPTQ's error
                                feedback sees what is stored), 16 = free fp16 values (the
                                paper's) */
    uint64_t seed;           /* calibration windows and k-means++ */
    eng_gptq_cfg gptq;       /* dampening, block size, act-order */
    size_t act_budget;       /* bytes of layer activations held in RAM (see eng_quant_model) */
    FILE *log;               /* progress lines; NULL = silent; borrowed */
    kern_pool *pool;         /* workers for the row work of the GPTQ loop and the Hessians;
                                NULL = the calling thread only; borrowed, driven by the thread
                                that calls the quantizer. Results do not depend on it. */
} eng_quant_cfg;

void eng_quant_cfg_default(eng_quant_cfg *c);   /* claq, 4 bits, no OR, seed 0 */
/* Checks the combination (AP and OR need CLAQ; bits in [2,4], integral for RTN/GPTQ). */
int eng_quant_cfg_check(const eng_quant_cfg *c, eng_err *err);

typedef struct eng_quant_mstats {
    double loss;             /* GPTQ loss sum |w-q|^2/d^2/2 (0 for RTN) */
    double rel_err;          /* tr((W-Q)H(W-Q)^T) / tr(WHW^T); NAN without H */
    int64_t n4;              /* columns at 4 bits */
    int64_t n_outliers;      /* retained values */
    int64_t n_dead;          /* dead input columns */
    int retries;             /* extra dampening rounds */
    double seconds;
    double t_prep;           /* seconds in the Hessian preparation (0 when it was shared) */
    double t_loop;           /* seconds in the GPTQ column loop, K-Means included */
    double t_kmeans;         /* seconds fitting codebooks (inside t_loop) */
    double planned_bpw;      /* --target-bpw: the stored bits per weight the allocation planned */
} eng_quant_mstats;

/* Quantizes W [rows][cols] (fp32, original order). H [cols][cols] double (the calibration
 * Hessian, original order) is required for GPTQ/CLAQ and ignored by RTN. out is allocated here
 * (eng_qmatrix_free it). fake (may be NULL): [rows][cols] the fake-quantized matrix, equal to
 * eng_qmatrix_dequant(out). st may be NULL. */
int eng_quant_matrix(const float *W, int64_t rows, int64_t cols, const double *H,
                     const eng_quant_cfg *cfg, eng_qmatrix *out, float *fake,
                     eng_quant_mstats *st, eng_err *err);

/* The same with a float H [cols][cols] (both triangles filled) and, optionally, its GPTQ
 * preparation already done (prep may be NULL; it is the same for every matrix that shares an
 * input, e.g. k/v/q and up/gate, so the pipeline factors it once per group). rel_err is
 * estimated on a row sample for large matrices (eng_gptq_rel_error_f32). */
int eng_quant_matrix_f32(const float *W, int64_t rows, int64_t cols, const float *H,
                         const eng_gptq_prep *prep, const eng_quant_cfg *cfg, eng_qmatrix *out,
                         float *fake, eng_quant_mstats *st, eng_err *err);

/* ---- calibration (quant_calib.c) ---- */

/* Draws nsamples windows of seqlen tokens from toks[0..n_toks) with the seed into
 * out [nsamples][seqlen]. With n_toks >= nsamples*seqlen the windows are disjoint and randomly
 * placed; with fewer they are drawn independently and may overlap (*overlap = 1). ENG_E_INVAL
 * when n_toks < seqlen. */
int eng_calib_windows(const int32_t *toks, int64_t n_toks, int nsamples, int seqlen,
                      uint64_t seed, int32_t *out, int *overlap, eng_err *err);
/* Reads the text file at path, tokenizes it once with the model's tokenizer (tok_override may be
 * NULL) and draws the windows. *out is malloc'ed [nsamples][seqlen] (caller frees); *n_text_toks
 * gets the token count of the file. */
int eng_calib_load(const eng_model *m, const char *tok_override, const char *path, int nsamples,
                   int seqlen, uint64_t seed, int32_t **out, int64_t *n_text_toks, int *overlap,
                   eng_err *err);

/* ---- the model pipeline (quant_pipeline.c) ---- */

typedef struct eng_quant_result {
    int n_layers;
    eng_qmatrix *mats;          /* [n_layers * ENG_LIN_COUNT], index layer*7 + linear; owned */
    eng_quant_mstats *stats;    /* same indexing; owned */
    eng_qmatrix head;           /* the output head when cfg->head_bits > 0 (else zeroed); owned */
    eng_quant_mstats head_stats;
    double seconds;             /* wall time of the whole run */
    int act_on_disk;            /* 1 when activations were streamed through a temp file */
} eng_quant_result;

void eng_quant_result_free(eng_quant_result *r);   /* safe on zeroed, idempotent */

/* quant_kmeans_matrix.c: per-column K-Means of the dense matrix w into q, allocated by the
 * caller to w's shape with q->bits (2..4 per column) set; fills the codebooks and codes. Column
 * j is seeded seed + j; columns run on pool when given (NULL: this thread), so the result does
 * not depend on the thread count. No calibration, no GPTQ. */
struct kern_pool;
int eng_quant_kmeans_matrix(const kern_matrix *w, uint64_t seed, struct kern_pool *pool,
                            eng_qmatrix *q, eng_err *err);

/* Quantizes every linear of every decoder layer of m (embedding and norms stay as they are; the
 * head too unless cfg->head_bits is set). tokens: [nsamples][seqlen] calibration windows (unused, may be NULL, for RTN). be: the
 * backend that runs the forward pass (borrowed). Peak memory: nsamples*seqlen*dim floats of
 * activations plus, while the FFN is quantized, nsamples*seqlen*hidden floats of kept SwiGLU
 * outputs (each store held in RAM up to cfg->act_budget, else in an unlinked temp file under
 * TMPDIR), one layer's fake-quantized fp32 weights, the widest group's Hessian (hidden^2 floats)
 * and its inverse factor (hidden^2 doubles), and GPTQ scratch for the largest matrix. Every
 * layer's eng_qmatrix (a byte per weight) stays in res until the caller writes the file. */
int eng_quant_model(const eng_model *m, kern_backend *be, const int32_t *tokens, int nsamples,
                    int seqlen, const eng_quant_cfg *cfg, eng_quant_result *res, eng_err *err);

#endif
