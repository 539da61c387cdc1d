/* quant_pipeline.c — the layer-by-layer quantization pipeline (claq-algorithm.md §1.2): embeds
 * every calibration window, then per decoder layer runs staged passes over all windows (see
 * qp_layer: each group's Hessian from what the already-quantized groups produce, intermediate
 * results kept so the layer's linears run once per window), accumulates the Hessians with
 * ssyrk, quantizes each group's linears with one shared GPTQ preparation (quant_matrix.c), swaps
 * in their fake-quantized fp32 copies, and feeds the quantized layer's outputs to the next layer;
 * a finished layer's codes go to a temp file and its source weights' pages are released.
 * Prints a progress line per matrix and per layer (elapsed, ETA). Does not write the output. One
 * thread drives it; BLAS, the backend and cfg->pool run their own workers. */
#include "quant.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "eng_forward.h"
#include "eng_kv.h"
#include "kern_half.h"
#include "quant_mem.h"

#define QP_MAX_BATCH 512   /* tokens per forward call (longer windows run in chunks) */

void eng_quant_result_free(eng_quant_result *r)
{
    if (!r) return;
    if (r->mats)
        for (int i = 0; i < r->n_layers * ENG_LIN_COUNT; i++) eng_qmatrix_free(&r->mats[i]);
    eng_qmatrix_free(&r->head);
    free(r->mats);
    free(r->stats);
    memset(r, 0, sizeof *r);
}

static double qp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- activations of all windows for one layer: in RAM, or in an unlinked temp file ---- */

typedef struct qp_acts {
    float *mem;          /* [n][per] when in RAM; owned */
    int fd;              /* temp file when on disk, else -1; owned */
    int64_t per;         /* floats per window (seqlen * dim) */
    int n;
} qp_acts;

static int qp_acts_init(qp_acts *a, int n, int64_t per, size_t budget, eng_err *err)
{
    a->mem = NULL;
    a->fd = -1;
    a->per = per;
    a->n = n;
    size_t bytes = (size_t)n * (size_t)per * sizeof(float);
    if (bytes <= budget) {
        a->mem = eng_quant_big_alloc(bytes);
        if (a->mem) return 0;
    }
    const char *dir = getenv("TMPDIR");
    char path[ENG_PATH_MAX];
    snprintf(path, sizeof path, "%s/claq-acts-XXXXXX", dir && *dir ? dir : "/tmp");
    a->fd = mkstemp(path);
    if (a->fd < 0)
        return eng_err_set(err, ENG_E_IO, "cannot create a temp file for %zu bytes of "
                           "activations in %s", bytes, dir && *dir ? dir : "/tmp");
    unlink(path);
    return 0;
}

static void qp_acts_free(qp_acts *a)
{
    free(a->mem);
    a->mem = NULL;
    if (a->fd >= 0) close(a->fd);
    a->fd = -1;
}

static int qp_acts_io(qp_acts *a, int i, float *buf, int write, eng_err *err)
{
    size_t bytes = (size_t)a->per * sizeof(float);
    if (a->mem) {
        float *p = a->mem + (size_t)i * (size_t)a->per;
        if (write) memcpy(p, buf, bytes);
        else memcpy(buf, p, bytes);
        return 0;
    }
    off_t off = (off_t)i * (off_t)bytes;
    size_t done = 0;
    while (done < bytes) {
        ssize_t r = write ? pwrite(a->fd, (const char *)buf + done, bytes - done, off + (off_t)done)
                          : pread(a->fd, (char *)buf + done, bytes - done, off + (off_t)done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return eng_err_set(err, ENG_E_IO, "activation temp file %s failed at window "
                               "%d", write ? "write" : "read", i);
        done += (size_t)r;
    }
    return 0;
}

/* ---- Hessian capture ---- */

#define QP_SYRK_TOKENS 1024   /* rows per ssyrk: each call streams all of H, and at k = 256 an
                                 11008-wide update ran ~20 % slower than at k >= 512 */

/* x^T x accumulated into H's upper triangle, rows staged until QP_SYRK_TOKENS are gathered. */
typedef struct qp_capture {
    int width;
    float *H;            /* [width][width]; borrowed */
    float *stage;        /* [cap][width] staged rows; borrowed; NULL: one ssyrk per call */
    int cap, n;          /* capacity and rows staged */
    int64_t tokens;
} qp_capture;

static void qp_capture_flush(qp_capture *c)
{
    if (c->n > 0)
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, c->width, c->n, 1.0f, c->stage,
                    c->width, 1.0f, c->H, c->width);
    c->n = 0;
}

static void qp_capture_add(qp_capture *c, const float *x, int n)
{
    c->tokens += n;
    if (!c->stage) {
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, c->width, n, 1.0f, x, c->width, 1.0f,
                    c->H, c->width);
        return;
    }
    while (n > 0) {
        int k = c->cap - c->n < n ? c->cap - c->n : n;
        memcpy(c->stage + (size_t)c->n * (size_t)c->width, x, sizeof(float) * (size_t)k *
               (size_t)c->width);
        c->n += k;
        x += (size_t)k * (size_t)c->width;
        n -= k;
        if (c->n == c->cap) qp_capture_flush(c);
    }
}

/* H = 2/S sum x x^T over S windows (the reference's scale), upper triangle mirrored to full. */
static void qp_hessian_finish(float *H, int wd, int nsamples)
{
    const float scale = (float)(2.0 / nsamples);
    for (int i = 0; i < wd; i++) {
        float *row = H + (size_t)i * wd;
        for (int j = i; j < wd; j++) row[j] *= scale;
        for (int j = 0; j < i; j++) row[j] = H[(size_t)j * wd + i];
    }
}

/* ---- the pipeline ---- */

typedef struct qp {
    const eng_model *m;          /* borrowed */
    kern_backend *be;            /* borrowed: runs the forward pass */
    const eng_quant_cfg *cfg;    /* borrowed */
    eng_ctx *ctx;                /* owned */
    eng_kv kv;                   /* owned: room for one window */
    eng_batch_item *items;       /* [max_batch]; owned */
    int max_batch;
    const int32_t *tokens;       /* [nsamples][seqlen]; borrowed */
    int nsamples, seqlen;
    double t0;
    double t_setup;              /* seconds before layer 0 (embedding the windows) */
    int spill_warned;            /* a codes spill failed and was reported */
} qp;

/* fp32 copy of a dense weight (any dtype the loaders produce). */
static int qp_weight_f32(const kern_matrix *w, float **out, eng_err *err)
{
    size_t n = (size_t)w->rows * (size_t)w->cols;
    *out = NULL;
    if (w->dtype != KERN_F32 && w->dtype != KERN_F16 && w->dtype != KERN_BF16)
        return eng_err_set(err, ENG_E_UNSUPPORTED, "the source model is already "
                           "quantized (%s); start from an fp32/fp16/bf16 checkpoint",
                           kern_dtype_name(w->dtype));
    float *f = eng_quant_big_alloc(n * sizeof *f);
    if (!f) return eng_err_set(err, ENG_E_NOMEM, "out of memory");
    if (w->dtype == KERN_F32) {
        memcpy(f, w->data, n * sizeof *f);
    } else {
        const uint16_t *h = w->data;
        for (size_t i = 0; i < n; i++)
            f[i] = w->dtype == KERN_F16 ? kern_f16_to_f32(h[i]) : kern_bf16_to_f32(h[i]);
    }
    for (size_t i = 0; i < n; i++)
        if (!isfinite(f[i])) {
            free(f);
            return eng_err_set(err, ENG_E_RANGE, "non-finite weight at %zu", i);
        }
    *out = f;
    return 0;
}

static void qp_log_matrix(const qp *p, int l, eng_linear lin, const eng_qmatrix *q,
                          const eng_quant_mstats *st)
{
    FILE *f = p->cfg->log;
    if (!f) return;
    int64_t n3 = 0;
    for (int64_t j = 0; j < q->cols; j++) n3 += q->bits[j] == 3;
    char planned[48] = "";
    if (st->planned_bpw > 0) snprintf(planned, sizeof planned, " (planned %.3f bpw stored)",
                                      st->planned_bpw);
    /* RTN has no Hessian: no GPTQ loss or output error to show ("-", not "0" and "nan") */
    char loss[64] = "gptq-loss -, rel-err -";
    if (!isnan(st->rel_err))
        snprintf(loss, sizeof loss, "gptq-loss %.4g, rel-err %.3e", st->loss, st->rel_err);
    fprintf(f, "layer %d/%d %-9s [%lldx%lld] %.3f bits%s, %lld/%lld cols at 4b/3b, %lld outliers (%.2f%%), "
            "%s, %.2fs (prep %.2fs, loop %.2fs, k-means %.2fs; elapsed %.1fs)\n",
            l + 1, p->m->cfg.n_layers, eng_linear_name(lin), (long long)q->rows,
            (long long)q->cols, eng_qmatrix_nominal_bits(q), planned, (long long)st->n4,
            (long long)n3, (long long)st->n_outliers, 100.0 * (double)st->n_outliers / ((double)q->rows * (double)q->cols),
            loss, st->seconds, st->t_prep, st->t_loop, st->t_kmeans, qp_now() - p->t0);
    fflush(f);
}

/* Spills a finished matrix's codes to a temp file (eng_qmatrix_spill_codes); where that fails
 * (no writable temp directory) they stay in RAM, which only costs memory: said once. */
static void qp_spill(qp *p, eng_qmatrix *q)
{
    eng_err e = {0};
    if (eng_qmatrix_spill_codes(q, NULL, &e) == 0 || p->spill_warned) return;
    p->spill_warned = 1;
    if (p->cfg->log) fprintf(p->cfg->log, "note: quantized codes stay in RAM (%s)\n", e.msg);
}

static int qp_rtn(qp *p, eng_quant_result *res, eng_err *err)
{
    for (int l = 0; l < p->m->cfg.n_layers; l++)
        for (int li = 0; li < ENG_LIN_COUNT; li++) {
            const kern_matrix *w = &p->m->w.layers[l].lin[li];
            float *W;
            int rc = qp_weight_f32(w, &W, err);
            if (rc) return rc;
            eng_quant_mstats *st = &res->stats[l * ENG_LIN_COUNT + li];
            eng_qmatrix *q = &res->mats[l * ENG_LIN_COUNT + li];
            rc = eng_quant_matrix(W, w->rows, w->cols, NULL, p->cfg, q, NULL, st, err);
            free(W);
            if (rc) {
                if (err) {   /* name the matrix, as qp_layer does */
                    char msg[ENG_ERR_MSG];
                    snprintf(msg, sizeof msg, "%s", err->msg);
                    eng_err_set(err, rc, "layer %d %s: %s", l, eng_linear_name(li), msg);
                }
                return rc;
            }
            qp_spill(p, q);
            eng_model_release_pages(p->m, w->data, kern_dense_bytes(w->dtype, w->rows, w->cols));
            qp_log_matrix(p, l, (eng_linear)li, q, st);
        }
    return 0;
}

/* Group members in the reference's order. */
static const int qp_groups[4][3] = {
    {ENG_LIN_K, ENG_LIN_V, ENG_LIN_Q}, {ENG_LIN_O, -1, -1}, {ENG_LIN_UP, ENG_LIN_GATE, -1},
    {ENG_LIN_DOWN, -1, -1},
};

/* Scratch of one window for the staged passes; all [seqlen][width]. */
typedef struct qp_scratch {
    float *x;        /* [seqlen][dim] residual stream; borrowed from the caller */
    float *att;      /* [seqlen][q_dim] attention output (o_proj input) */
    float *xn;       /* [seqlen][dim] a normed copy of x */
    float *y;        /* [seqlen][dim] a linear's output */
    float *hb, *hb2; /* [seqlen][hidden] gate and up outputs; hb becomes the SwiGLU */
} qp_scratch;

static int qp_kfail(eng_err *err, int rc, const char *what, int l)
{
    return eng_err_set(err, rc == KERN_E_NOMEM ? ENG_E_NOMEM : ENG_E_INVAL, "layer %d %s: %s", l,
                       what, kern_strerror(rc));
}

/* y[t] = x[t] . W^T over the window, in the forward pass's chunks of max_batch tokens (so the
 * BLAS calls, and their rounding, are the ones eng_forward_layer would make). */
static int qp_matmul(qp *p, const kern_matrix *w, const float *x, float *y)
{
    int64_t in = w->cols, out = w->rows;
    for (int start = 0; start < p->seqlen; start += p->max_batch) {
        int n = p->seqlen - start < p->max_batch ? p->seqlen - start : p->max_batch;
        int rc = kern_matmul(p->be, w, x + (size_t)start * (size_t)in, n,
                             y + (size_t)start * (size_t)out);
        if (rc) return rc;
    }
    return 0;
}

static void qp_add(float *x, const float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

static void qp_fmt_dur(char *buf, size_t n, double s)
{
    if (s < 0 || !isfinite(s)) snprintf(buf, n, "?");
    else if (s < 90) snprintf(buf, n, "%.0fs", s);
    else if (s < 5400) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

/* One decoder layer in staged passes: each pass computes only what the next group's Hessian
 * needs from what the previous groups' quantized weights produced, and keeps it (the attention
 * output for o_proj, the SwiGLU output for down_proj), so the layer's linears run once per
 * window in all instead of once per group (4x) as a whole-layer pass would. Every value is
 * the one eng_forward_layer computes with the fake-quantized weights swapped in: the same
 * kernels, in the same chunks.
 *   {k,v,q}: attn_norm(x)                      -> H_qkv; quantize k, v, q (one preparation)
 *   {o}:     att = attention(x)   (kept)       -> H_o;   quantize o
 *   {up,gate}: h = x + o(att) (replaces x), ffn_norm(h) -> H_ffn; quantize up, gate
 *   {down}:  act = swiglu(gate(.), up(.)) (kept) -> H_down; quantize down
 *   output:  x = h + down(act). */
static int qp_layer(qp *p, int l, qp_acts *acts, qp_scratch *sc, eng_quant_result *res,
                    eng_err *err)
{
    const eng_config *cf = &p->m->cfg;
    const eng_layer_weights *orig = &p->m->w.layers[l];
    eng_layer_weights lw = *orig;        /* what the ctx runs: members swapped as they finish */
    float *fake[ENG_LIN_COUNT] = {0};    /* fake-quantized fp32 weights; owned */
    int q_dim = cf->n_heads * cf->head_dim;
    int widths[4] = {cf->dim, q_dim, cf->dim, cf->hidden_dim};
    int maxw = cf->dim > cf->hidden_dim ? cf->dim : cf->hidden_dim;
    if (widths[1] > maxw) maxw = widths[1];
    float *H = eng_quant_big_alloc(sizeof(float) * (size_t)maxw * (size_t)maxw);
    /* staging rows for the Hessians' ssyrk (without it: one call per window, still correct) */
    float *stage = malloc(sizeof(float) * QP_SYRK_TOKENS * (size_t)maxw);
    qp_acts kept = {.fd = -1};           /* att, then act, of every window */
    eng_gptq_prep prep = {0};
    double t_fwd = 0, t_q = 0, tl = qp_now();
    int64_t per = (int64_t)p->seqlen;
    int rc = 0;
    if (!H) {
        rc = eng_err_set(err, ENG_E_NOMEM, "out of memory for a %d-wide Hessian", maxw);
        goto done;
    }
    eng_ctx_set_layer_weights(p->ctx, l, &lw);
    for (int g = 0; g < 4; g++) {
        int wd = widths[g];
        double t1 = qp_now();
        memset(H, 0, sizeof(float) * (size_t)wd * (size_t)wd);
        qp_capture cap = {.width = wd, .H = H, .stage = stage, .cap = QP_SYRK_TOKENS};
        if (g == 1 || g == 3) {
            qp_acts_free(&kept);
            if ((rc = qp_acts_init(&kept, p->nsamples, per * wd, p->cfg->act_budget, err)))
                goto done;
        }
        for (int s = 0; s < p->nsamples && !rc; s++) {
            if ((rc = qp_acts_io(acts, s, sc->x, 0, err))) break;
            const float *hx = NULL;     /* what this group's Hessian is built from */
            int krc = 0;
            if (g == 0) {
                krc = kern_rmsnorm(p->be, sc->x, orig->attn_norm, p->seqlen, cf->dim,
                                   cf->norm_eps, sc->xn);
                hx = sc->xn;
            } else if (g == 1) {
                eng_seq seq = {0};
                if ((rc = eng_kv_reserve(&p->kv, &seq, p->seqlen))) {
                    rc = eng_err_set(err, rc, "KV cache cannot hold a window of %d", p->seqlen);
                    break;
                }
                const int32_t *tok = p->tokens + (size_t)s * (size_t)p->seqlen;
                for (int start = 0; start < p->seqlen && !rc; start += p->max_batch) {
                    int n = p->seqlen - start < p->max_batch ? p->seqlen - start : p->max_batch;
                    for (int i = 0; i < n; i++)
                        p->items[i] = (eng_batch_item){tok[start + i], start + i, &seq, 0, 0};
                    rc = eng_forward_attn(p->ctx, &p->kv, l, p->items, n,
                                          sc->x + (size_t)start * (size_t)cf->dim,
                                          sc->att + (size_t)start * (size_t)q_dim, err);
                }
                eng_kv_release(&p->kv, &seq);
                if (rc) break;
                hx = sc->att;
                rc = qp_acts_io(&kept, s, sc->att, 1, err);
            } else if (g == 2) {
                if ((rc = qp_acts_io(&kept, s, sc->att, 0, err))) break;
                krc = qp_matmul(p, &lw.lin[ENG_LIN_O], sc->att, sc->y);
                if (!krc) {
                    qp_add(sc->x, sc->y, per * cf->dim);
                    rc = qp_acts_io(acts, s, sc->x, 1, err);   /* x becomes h */
                    krc = kern_rmsnorm(p->be, sc->x, orig->ffn_norm, p->seqlen, cf->dim,
                                       cf->norm_eps, sc->xn);
                }
                hx = sc->xn;
            } else {
                krc = kern_rmsnorm(p->be, sc->x, orig->ffn_norm, p->seqlen, cf->dim,
                                   cf->norm_eps, sc->xn);
                if (!krc) krc = qp_matmul(p, &lw.lin[ENG_LIN_GATE], sc->xn, sc->hb);
                if (!krc) krc = qp_matmul(p, &lw.lin[ENG_LIN_UP], sc->xn, sc->hb2);
                if (!krc) krc = kern_swiglu(p->be, sc->hb, sc->hb2, per * cf->hidden_dim, sc->hb);
                hx = sc->hb;
                if (!krc) rc = qp_acts_io(&kept, s, sc->hb, 1, err);
            }
            if (krc) rc = qp_kfail(err, krc, "calibration pass", l);
            if (rc) break;
            qp_capture_add(&cap, hx, p->seqlen);
        }
        if (rc) goto done;
        qp_capture_flush(&cap);
        if (g == 2) qp_acts_free(&kept);   /* the attention outputs are consumed */
        if (cap.tokens != (int64_t)p->nsamples * p->seqlen) {
            rc = eng_err_set(err, ENG_E_INVAL, "layer %d group %d captured %lld tokens, "
                             "expected %lld", l, g, (long long)cap.tokens,
                             (long long)p->nsamples * p->seqlen);
            goto done;
        }
        qp_hessian_finish(H, wd, p->nsamples);
        t_fwd += qp_now() - t1;
        t1 = qp_now();
        /* The members share their input, hence H and its preparation. */
        double tp = qp_now();
        if ((rc = eng_gptq_prepare_f32(&prep, H, wd, &p->cfg->gptq, err))) {
            char msg[ENG_ERR_MSG];
            snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
            rc = eng_err_set(err, rc, "layer %d group %d: %s", l, g, msg);
            goto done;
        }
        tp = qp_now() - tp;
        for (int mi = 0; mi < 3 && qp_groups[g][mi] >= 0; mi++) {
            int li = qp_groups[g][mi];
            const kern_matrix *w = &orig->lin[li];
            if (w->cols != wd) {
                rc = eng_err_set(err, ENG_E_INVAL, "layer %d %s has %lld inputs, the "
                                 "captured width is %d", l, eng_linear_name(li),
                                 (long long)w->cols, wd);
                goto done;
            }
            float *W;
            if ((rc = qp_weight_f32(w, &W, err))) goto done;
            fake[li] = eng_quant_big_alloc(sizeof(float) * (size_t)w->rows * (size_t)w->cols);
            eng_quant_mstats *st = &res->stats[l * ENG_LIN_COUNT + li];
            eng_qmatrix *q = &res->mats[l * ENG_LIN_COUNT + li];
            rc = fake[li] ? eng_quant_matrix_f32(W, w->rows, w->cols, H, &prep, p->cfg, q,
                                                 fake[li], st, err)
                          : eng_err_set(err, ENG_E_NOMEM, "out of memory");
            free(W);
            if (rc) {
                if (err) {
                    char msg[ENG_ERR_MSG];
                    snprintf(msg, sizeof msg, "%s", err->msg);
                    eng_err_set(err, rc, "layer %d %s: %s", l, eng_linear_name(li), msg);
                }
                goto done;
            }
            if (mi == 0) st->t_prep = tp;   /* the shared preparation, charged to the first */
            lw.lin[li] = (kern_matrix){.dtype = KERN_F32, .rows = w->rows, .cols = w->cols,
                                       .data = fake[li]};
            qp_log_matrix(p, l, (eng_linear)li, q, st);
        }
        eng_gptq_prep_free(&prep);
        t_q += qp_now() - t1;
    }
    /* The quantized layer's outputs are the next layer's inputs: x = h + down(act). The last
     * layer's are needed only when the head is calibrated on them. */
    double t1 = qp_now();
    int out_pass = l + 1 < cf->n_layers || p->cfg->head_bits > 0;
    for (int s = 0; s < p->nsamples && out_pass && !rc; s++) {
        if ((rc = qp_acts_io(acts, s, sc->x, 0, err))) break;
        if ((rc = qp_acts_io(&kept, s, sc->hb, 0, err))) break;
        int krc = qp_matmul(p, &lw.lin[ENG_LIN_DOWN], sc->hb, sc->y);
        if (krc) {
            rc = qp_kfail(err, krc, "output pass", l);
            break;
        }
        qp_add(sc->x, sc->y, per * cf->dim);
        rc = qp_acts_io(acts, s, sc->x, 1, err);
    }
    t_fwd += qp_now() - t1;
    if (!rc && p->cfg->log) {
        double el = qp_now() - p->t0, layer_s = qp_now() - tl;
        int left = cf->n_layers - (l + 1);
        char eta[32], ela[32];
        qp_fmt_dur(eta, sizeof eta, left * (el - p->t_setup) / (l + 1));
        qp_fmt_dur(ela, sizeof ela, el);
        fprintf(p->cfg->log, "layer %d/%d done in %.2fs (forward passes and Hessians %.2fs%s, "
                "quantization %.2fs); elapsed %s, ETA %s for %d more layer%s\n", l + 1,
                cf->n_layers, layer_s, t_fwd, out_pass ? "" : ", no output pass after the last "
                "layer", t_q, ela, left ? eta : "0s", left, left == 1 ? "" : "s");
        fflush(p->cfg->log);
    }
done:
    eng_ctx_set_layer_weights(p->ctx, l, NULL);   /* outputs are computed: restore the original */
    for (int i = 0; i < ENG_LIN_COUNT; i++) free(fake[i]);
    eng_gptq_prep_free(&prep);
    qp_acts_free(&kept);
    free(H);
    free(stage);
    return rc;
}

/* The output head by GPTQ + CLAQ like a linear (cfg->head_bits): its Hessian from the final
 * norm of the last layer's outputs (what the head multiplies), then CLAQ at head_bits (no AP,
 * no OR, no budget) into res->head. */
static int qp_head(qp *p, qp_acts *acts, qp_scratch *sc, eng_quant_result *res, eng_err *err)
{
    const eng_config *cf = &p->m->cfg;
    const int wd = cf->dim;
    const kern_matrix *w = &p->m->w.output;
    float *H = eng_quant_big_alloc(sizeof(float) * (size_t)wd * (size_t)wd), *W = NULL;
    double t0 = qp_now();
    int rc = H ? 0 : eng_err_set(err, ENG_E_NOMEM, "out of memory for the head's Hessian");
    if (!rc) memset(H, 0, sizeof(float) * (size_t)wd * (size_t)wd);
    float *stage = malloc(sizeof(float) * QP_SYRK_TOKENS * (size_t)wd);
    qp_capture cap = {.width = wd, .H = H, .stage = stage, .cap = QP_SYRK_TOKENS};
    for (int s = 0; s < p->nsamples && !rc; s++) {
        if ((rc = qp_acts_io(acts, s, sc->x, 0, err))) break;
        int krc = kern_rmsnorm(p->be, sc->x, p->m->w.final_norm, p->seqlen, wd, cf->norm_eps,
                               sc->xn);
        if (krc) {
            rc = qp_kfail(err, krc, "head calibration pass", cf->n_layers - 1);
            break;
        }
        qp_capture_add(&cap, sc->xn, p->seqlen);
    }
    qp_capture_flush(&cap);
    if (!rc) {
        qp_hessian_finish(H, wd, p->nsamples);
        rc = qp_weight_f32(w, &W, err);
    }
    if (!rc) {
        eng_quant_cfg hc = *p->cfg;
        hc.method = ENG_QUANT_CLAQ;
        hc.bits = p->cfg->head_bits;
        hc.target_bpw = 0;
        hc.outliers = 0;
        rc = eng_quant_matrix_f32(W, w->rows, w->cols, H, NULL, &hc, &res->head, NULL,
                                  &res->head_stats, err);
        if (rc && err) {
            char msg[ENG_ERR_MSG];
            snprintf(msg, sizeof msg, "%s", err->msg);
            eng_err_set(err, rc, "output head: %s", msg);
        }
    }
    if (!rc && p->cfg->log)
        fprintf(p->cfg->log, "output head [%lldx%lld] CLAQ %.0f bits, gptq-loss %.4g, rel-err "
                "%.3e, %.2fs\n", (long long)w->rows, (long long)w->cols, p->cfg->head_bits,
                res->head_stats.loss, res->head_stats.rel_err, qp_now() - t0);
    free(H);
    free(W);
    free(stage);
    return rc;
}

int eng_quant_model(const eng_model *m, kern_backend *be, const int32_t *tokens, int nsamples,
                    int seqlen, const eng_quant_cfg *cfg, eng_quant_result *res, eng_err *err)
{
    memset(res, 0, sizeof *res);
    int rc = eng_quant_cfg_check(cfg, err);
    if (rc) return rc;
    const eng_config *cf = &m->cfg;
    qp p = {.m = m, .be = be, .cfg = cfg, .tokens = tokens, .nsamples = nsamples, .seqlen = seqlen,
            .t0 = qp_now()};
    qp_acts acts = {.fd = -1};
    float *x = NULL;
    qp_scratch scratch_own = {0};
    res->n_layers = cf->n_layers;
    res->mats = calloc((size_t)cf->n_layers * ENG_LIN_COUNT, sizeof *res->mats);
    res->stats = calloc((size_t)cf->n_layers * ENG_LIN_COUNT, sizeof *res->stats);
    if (!res->mats || !res->stats) {
        rc = eng_err_set(err, ENG_E_NOMEM, "out of memory");
        goto done;
    }
    if (cfg->method == ENG_QUANT_RTN) {
        rc = qp_rtn(&p, res, err);
        goto done;
    }
    if (!tokens || nsamples <= 0 || seqlen <= 0 || seqlen > cf->seq_len) {
        rc = eng_err_set(err, ENG_E_INVAL, "%s needs calibration windows of 1..%d "
                         "tokens (got %d x %d)", eng_quant_method_name(cfg->method), cf->seq_len,
                         nsamples, seqlen);
        goto done;
    }
    for (int64_t i = 0; i < (int64_t)nsamples * seqlen; i++)
        if (tokens[i] < 0 || tokens[i] >= cf->vocab_size) {
            rc = eng_err_set(err, ENG_E_RANGE, "calibration token %d out of range",
                             tokens[i]);
            goto done;
        }
    p.max_batch = seqlen < QP_MAX_BATCH ? seqlen : QP_MAX_BATCH;
    if ((rc = eng_ctx_create(&p.ctx, m, be, p.max_batch, err))) goto done;
    if ((rc = eng_kv_init(&p.kv, cf, seqlen, err))) goto done;
    p.items = malloc(sizeof *p.items * (size_t)p.max_batch);
    int64_t per = (int64_t)seqlen * cf->dim;
    x = malloc(sizeof(float) * (size_t)per);
    size_t sl = (size_t)seqlen;
    qp_scratch sc = {.x = x};
    sc.att = malloc(sizeof(float) * sl * (size_t)(cf->n_heads * cf->head_dim));
    sc.xn = malloc(sizeof(float) * sl * (size_t)cf->dim);
    sc.y = malloc(sizeof(float) * sl * (size_t)cf->dim);
    sc.hb = malloc(sizeof(float) * sl * (size_t)cf->hidden_dim);
    sc.hb2 = malloc(sizeof(float) * sl * (size_t)cf->hidden_dim);
    scratch_own = sc;
    if (!p.items || !x || !sc.att || !sc.xn || !sc.y || !sc.hb || !sc.hb2) {
        rc = eng_err_set(err, ENG_E_NOMEM, "out of memory");
        goto done;
    }
    if ((rc = qp_acts_init(&acts, nsamples, per, cfg->act_budget, err))) goto done;
    res->act_on_disk = acts.fd >= 0;
    if (cfg->log)
        fprintf(cfg->log, "%s %.4g %s%s: %d windows x %d tokens, activations %.1f MiB %s\n",
                eng_quant_method_name(cfg->method),
                cfg->target_bpw > 0 ? cfg->target_bpw : cfg->bits,
                cfg->target_bpw > 0 ? "stored bits per weight (target)" : "bits",
                cfg->outliers ? " + OR" : "",
                nsamples, seqlen, (double)nsamples * (double)per * 4.0 / (1 << 20),
                res->act_on_disk ? "in a temp file" : "in RAM");
    /* Inputs of layer 0: the embeddings of every window. */
    eng_seq dummy = {0};
    for (int s = 0; s < nsamples && !rc; s++) {
        const int32_t *tok = tokens + (size_t)s * (size_t)seqlen;
        for (int start = 0; start < seqlen && !rc; start += p.max_batch) {
            int n = seqlen - start < p.max_batch ? seqlen - start : p.max_batch;
            for (int i = 0; i < n; i++)
                p.items[i] = (eng_batch_item){tok[start + i], start + i, &dummy, 0, 0};
            rc = eng_forward_embed(p.ctx, p.items, n, x + (size_t)start * (size_t)cf->dim, err);
        }
        if (!rc) rc = qp_acts_io(&acts, s, x, 1, err);
    }
    p.t_setup = qp_now() - p.t0;
    for (int l = 0; l < cf->n_layers && !rc; l++) {
        if ((rc = qp_layer(&p, l, &acts, &sc, res, err))) break;
        /* Peak memory of a deep model: the layer's source weights are never read again and
         * its codes are final, so neither stays resident until the file is written. */
        for (int li = 0; li < ENG_LIN_COUNT; li++) {
            const kern_matrix *w = &m->w.layers[l].lin[li];
            eng_model_release_pages(m, w->data, kern_dense_bytes(w->dtype, w->rows, w->cols));
            qp_spill(&p, &res->mats[l * ENG_LIN_COUNT + li]);
        }
    }
    if (!rc && cfg->head_bits > 0) rc = qp_head(&p, &acts, &sc, res, err);
done:
    res->seconds = qp_now() - p.t0;
    qp_acts_free(&acts);
    free(x);
    free(scratch_own.att);
    free(scratch_own.xn);
    free(scratch_own.y);
    free(scratch_own.hb);
    free(scratch_own.hb2);
    free(p.items);
    eng_kv_free(&p.kv);
    eng_ctx_destroy(p.ctx);
    if (rc) eng_quant_result_free(res);
    return rc;
}
