/* quant_pipeline.c — the layer-by-layer quantization pipeline (claq-algorithm.md §1.2): embeds every
 * calibration window, then per decoder layer runs the current layer over all windows once per
 * group {o}, {up,gate}, {down} to accumulate that group's Hessian through the engine's capture
 * hook ({k,v,q} only need attn_norm of the stored inputs), quantizes the group's linears (quant_matrix.c), swaps in their fake-quantized
 * fp32 copies, and finally runs the fully quantized layer to produce the next layer's inputs.
 * Does not write files. One thread drives it (BLAS and the backend may use their own). */
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

#define QP_MAX_BATCH 512   /* tokens per forward call (longer windows run in chunks) */

void eng_quant_result_free(eng_quant_result *r)
{
    if (!r) return;
    if (r->mats)
        for (int i = 0; i < r->n_layers * ENG_LIN_COUNT; i++) eng_qmatrix_free(&r->mats[i]);
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
        a->mem = malloc(bytes);
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

typedef struct qp_capture {
    int layer, group;    /* the group being accumulated; -1 = none */
    int width;
    float *H;            /* [width][width] upper triangle accumulates x^T x; borrowed */
    int64_t tokens;
} qp_capture;

static void qp_capture_fn(void *ud, int layer, int group, const float *x, int n, int width)
{
    qp_capture *c = ud;
    if (layer != c->layer || group != c->group || width != c->width) return;
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, width, n, 1.0f, x, width, 1.0f, c->H, width);
    c->tokens += n;
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
} qp;

/* Runs decoder layer l in place on x [seqlen][dim] for window s: one sequence, prefilled in
 * chunks of max_batch consecutive tokens. */
static int qp_run_layer(qp *p, int l, int s, float *x, eng_err *err)
{
    eng_seq seq = {0};
    int rc = eng_kv_reserve(&p->kv, &seq, p->seqlen);
    if (rc) return eng_err_set(err, rc, "KV cache cannot hold a window of %d", p->seqlen);
    const int32_t *tok = p->tokens + (size_t)s * (size_t)p->seqlen;
    int dim = p->m->cfg.dim;
    for (int start = 0; start < p->seqlen && !rc; start += p->max_batch) {
        int n = p->seqlen - start < p->max_batch ? p->seqlen - start : p->max_batch;
        for (int i = 0; i < n; i++)
            p->items[i] = (eng_batch_item){tok[start + i], start + i, &seq, 0};
        rc = eng_forward_layer(p->ctx, &p->kv, l, p->items, n, x + (size_t)start * (size_t)dim, err);
    }
    eng_kv_release(&p->kv, &seq);
    return rc;
}

/* fp32 copy of a dense weight (any dtype the loaders produce). */
static int qp_weight_f32(const kern_matrix *w, float **out, eng_err *err)
{
    size_t n = (size_t)w->rows * (size_t)w->cols;
    *out = NULL;
    if (w->dtype != KERN_F32 && w->dtype != KERN_F16 && w->dtype != KERN_BF16)
        return eng_err_set(err, ENG_E_UNSUPPORTED, "the source model is already "
                           "quantized (%s); start from an fp32/fp16/bf16 checkpoint",
                           kern_dtype_name(w->dtype));
    float *f = malloc(n * sizeof *f);
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
    fprintf(f, "layer %d/%d %-9s [%lldx%lld] %.3f bits, %lld cols at 4b, %lld outliers (%.2f%%), "
            "gptq-loss %.4g, rel-err %.3e, %.2fs (elapsed %.1fs)\n",
            l + 1, p->m->cfg.n_layers, eng_linear_name(lin), (long long)q->rows,
            (long long)q->cols, eng_qmatrix_nominal_bits(q), (long long)st->n4,
            (long long)st->n_outliers, 100.0 * (double)st->n_outliers / ((double)q->rows * (double)q->cols),
            st->loss, st->rel_err, st->seconds, qp_now() - p->t0);
    fflush(f);
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
            if (rc) return rc;
            qp_log_matrix(p, l, (eng_linear)li, q, st);
        }
    return 0;
}

/* Group members in the reference's order. */
static const int qp_groups[4][3] = {
    {ENG_LIN_K, ENG_LIN_V, ENG_LIN_Q}, {ENG_LIN_O, -1, -1}, {ENG_LIN_UP, ENG_LIN_GATE, -1},
    {ENG_LIN_DOWN, -1, -1},
};

static int qp_layer(qp *p, int l, qp_acts *acts, float *x, eng_quant_result *res, eng_err *err)
{
    const eng_config *cf = &p->m->cfg;
    const eng_layer_weights *orig = &p->m->w.layers[l];
    eng_layer_weights lw = *orig;        /* what the ctx runs: members swapped as they finish */
    float *fake[ENG_LIN_COUNT] = {0};    /* fake-quantized fp32 weights; owned */
    int widths[4] = {cf->dim, cf->n_heads * cf->head_dim, cf->dim, cf->hidden_dim};
    int maxw = cf->dim > cf->hidden_dim ? cf->dim : cf->hidden_dim;
    if (widths[1] > maxw) maxw = widths[1];
    float *Hf = malloc(sizeof(float) * (size_t)maxw * (size_t)maxw);
    float *xn = malloc(sizeof(float) * (size_t)p->seqlen * (size_t)cf->dim);   /* normed x */
    double *H = malloc(sizeof(double) * (size_t)maxw * (size_t)maxw);
    qp_capture cap = {.layer = -1, .group = -1};
    double t_fwd = 0, t_q = 0, tl = qp_now();
    int rc = 0;
    if (!Hf || !H || !xn) {
        rc = eng_err_set(err, ENG_E_NOMEM, "out of memory for a %d-wide Hessian", maxw);
        goto done;
    }
    eng_ctx_set_layer_weights(p->ctx, l, &lw);
    eng_ctx_set_capture(p->ctx, qp_capture_fn, &cap);
    for (int g = 0; g < 4; g++) {
        int wd = widths[g];
        double t1 = qp_now();
        memset(Hf, 0, sizeof(float) * (size_t)wd * (size_t)wd);
        cap = (qp_capture){.layer = l, .group = g, .width = wd, .H = Hf, .tokens = 0};
        for (int s = 0; s < p->nsamples && !rc; s++) {
            if ((rc = qp_acts_io(acts, s, x, 0, err))) break;
            if (g == 0) {
                /* {k,v,q} see attn_norm(x): the same kernel the forward pass would run, without
                 * the rest of the layer (saves one of the five passes) */
                int krc = kern_rmsnorm(p->be, x, orig->attn_norm, p->seqlen, cf->dim,
                                       cf->norm_eps, xn);
                if (krc) {
                    rc = eng_err_set(err, ENG_E_INVAL, "rmsnorm: %s",
                                     kern_strerror(krc));
                    break;
                }
                qp_capture_fn(&cap, l, 0, xn, p->seqlen, cf->dim);
            } else {
                rc = qp_run_layer(p, l, s, x, err);
            }
        }
        cap.layer = -1;
        if (rc) goto done;
        if (cap.tokens != (int64_t)p->nsamples * p->seqlen) {
            rc = eng_err_set(err, ENG_E_INVAL, "layer %d group %d captured %lld tokens, "
                             "expected %lld", l, g, (long long)cap.tokens,
                             (long long)p->nsamples * p->seqlen);
            goto done;
        }
        /* H = 2/S sum x x^T over S windows (the reference's scale), mirrored to full */
        double scale = 2.0 / p->nsamples;
        for (int i = 0; i < wd; i++)
            for (int j = i; j < wd; j++)
                H[(size_t)i * wd + j] = H[(size_t)j * wd + i] = scale * Hf[(size_t)i * wd + j];
        t_fwd += qp_now() - t1;
        t1 = qp_now();
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
            fake[li] = malloc(sizeof(float) * (size_t)w->rows * (size_t)w->cols);
            eng_quant_mstats *st = &res->stats[l * ENG_LIN_COUNT + li];
            eng_qmatrix *q = &res->mats[l * ENG_LIN_COUNT + li];
            rc = fake[li] ? eng_quant_matrix(W, w->rows, w->cols, H, p->cfg, q, fake[li], st, err)
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
            lw.lin[li] = (kern_matrix){.dtype = KERN_F32, .rows = w->rows, .cols = w->cols,
                                       .data = fake[li]};
            qp_log_matrix(p, l, (eng_linear)li, q, st);
        }
        t_q += qp_now() - t1;
    }
    /* The quantized layer's outputs are the next layer's inputs. */
    double t1 = qp_now();
    for (int s = 0; s < p->nsamples && !rc; s++) {
        if ((rc = qp_acts_io(acts, s, x, 0, err))) break;
        if ((rc = qp_run_layer(p, l, s, x, err))) break;
        rc = qp_acts_io(acts, s, x, 1, err);
    }
    t_fwd += qp_now() - t1;
    if (!rc && p->cfg->log) {
        fprintf(p->cfg->log, "layer %d/%d done in %.2fs (forward passes %.2fs, quantization "
                "%.2fs; elapsed %.1fs)\n", l + 1, cf->n_layers, qp_now() - tl, t_fwd, t_q,
                qp_now() - p->t0);
        fflush(p->cfg->log);
    }
done:
    eng_ctx_set_capture(p->ctx, NULL, NULL);
    eng_ctx_set_layer_weights(p->ctx, l, NULL);   /* outputs are computed: restore the original */
    for (int i = 0; i < ENG_LIN_COUNT; i++) free(fake[i]);
    free(Hf);
    free(H);
    free(xn);
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
    if (!p.items || !x) {
        rc = eng_err_set(err, ENG_E_NOMEM, "out of memory");
        goto done;
    }
    if ((rc = qp_acts_init(&acts, nsamples, per, cfg->act_budget, err))) goto done;
    res->act_on_disk = acts.fd >= 0;
    if (cfg->log)
        fprintf(cfg->log, "%s %.4g bits%s: %d windows x %d tokens, activations %.1f MiB %s\n",
                eng_quant_method_name(cfg->method), cfg->bits, cfg->outliers ? " + OR" : "",
                nsamples, seqlen, (double)nsamples * (double)per * 4.0 / (1 << 20),
                res->act_on_disk ? "in a temp file" : "in RAM");
    /* Inputs of layer 0: the embeddings of every window. */
    eng_seq dummy = {0};
    for (int s = 0; s < nsamples && !rc; s++) {
        const int32_t *tok = tokens + (size_t)s * (size_t)seqlen;
        for (int start = 0; start < seqlen && !rc; start += p.max_batch) {
            int n = seqlen - start < p.max_batch ? seqlen - start : p.max_batch;
            for (int i = 0; i < n; i++)
                p.items[i] = (eng_batch_item){tok[start + i], start + i, &dummy, 0};
            rc = eng_forward_embed(p.ctx, p.items, n, x + (size_t)start * (size_t)cf->dim, err);
        }
        if (!rc) rc = qp_acts_io(&acts, s, x, 1, err);
    }
    for (int l = 0; l < cf->n_layers && !rc; l++) rc = qp_layer(&p, l, &acts, x, res, err);
done:
    res->seconds = qp_now() - p.t0;
    qp_acts_free(&acts);
    free(x);
    free(p.items);
    eng_kv_free(&p.kv);
    eng_ctx_destroy(p.ctx);
    if (rc) eng_quant_result_free(res);
    return rc;
}
