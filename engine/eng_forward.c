/* eng_forward.c — the LLaMA/Yi decoder forward pass over a batch of (token, position, sequence)
 * items: RMSNorm, q/k/v projections, RoPE, K/V written to the paged cache, grouped-query attention,
 * output projection, SwiGLU FFN, final norm and head, and on request the greedy pick. All math
 * goes through kern.h, on the backend's memory: on a device backend the residual stream, the
 * scratch, the KV pool, the block tables and the logits stay on the device, and a step copies
 * only its token ids, positions, cache slots and the block-table entries that changed in, and
 * the logits or picked ids out. Where the backend fuses them, q/k/v, gate/up with the SwiGLU, and
 * the projections into the residual stream run as one op each; with the relaxed prefill on,
 * prompt items' linears take matmul_bf16 in runs of their own. The ctx owns that scratch for
 * max_batch tokens; one thread drives a ctx at a time. */
#include "eng_forward.h"

#include "eng_rowstore.h"

#include <stdlib.h>
#include <string.h>

struct eng_ctx {
    const eng_model *m;                /* borrowed */
    kern_backend *be;                  /* borrowed */
    int host;                          /* be's memory is host memory (kern_backend_host_memory) */
    int max_batch;
    const eng_resident *res;           /* borrowed, or NULL: the model's own weights */
    const kern_matrix *embed, *output; /* the resident set's, or the model's */
    const float *final_norm;           /* likewise (backend memory) */
    const eng_layer_weights **lw;      /* [n_layers] weights in use (see above, or an override) */
    eng_capture_fn capture;
    void *capture_ud;
    /* Backend memory, [max_batch] rows each; owned. The float / int32 pointers are their
     * addresses (what ops take). */
    kern_buf *b_x, *b_xb, *b_q, *b_att, *b_k, *b_v, *b_hb, *b_hb2;
    kern_buf *b_ids, *b_pos, *b_slot, *b_rows, *b_btrow, *b_amax, *b_freq;
    kern_buf *b_logits;                /* [max_batch][vocab], made on first need */
    kern_buf *b_sparams;               /* [max_batch] kern_sample_params, made on first need */
    kern_buf *b_sadj;                  /* the step's kern_sample_adj entries, grown on need */
    kern_buf *b_slp;                   /* the step's kern_sample_lp results, grown on need */
    kern_buf *b_sallow;                /* the step's grammar masks (words), grown on need */
    float *x;                          /* [max_batch][dim] residual stream of eng_forward */
    float *xb;                         /* [max_batch][max(dim, q_dim)] */
    float *q, *att;                    /* [max_batch][q_dim] */
    float *k, *v;                      /* [max_batch][kv_dim] */
    float *hb, *hb2;                   /* [max_batch][hidden] */
    int32_t *ids, *pos, *slot, *rows, *btrow, *amax;   /* [max_batch] */
    int32_t *bt;                       /* the step's block tables (bt_store's address) */
    float *logits;                     /* b_logits' address */
    float *rope_freq;                  /* [head_dim / 2] scaled RoPE frequencies, or NULL for the
                                          default rope (kernels derive it from theta) */
    /* Host mirrors of the step's small tables (what kern_buf_write sends); owned. */
    int32_t *h_ids, *h_pos, *h_slot, *h_rows, *h_btrow;
    uint8_t *h_bf16;                   /* [max_batch] the step's items whose linears take
                                          matmul_bf16 (prompt items, when prefill_bf16) */
    int prefill_bf16;                  /* eng_ctx_set_prefill_bf16 */
    int n_bf16;                        /* items of the step with h_bf16 set */
    /* Kept in backend memory from step to step, a row per sequence, sent by deltas
     * (eng_rowstore): the block tables, and the sampler's bias and penalty entries. */
    eng_rowstore *bt_store;            /* int32 block ids; owned */
    eng_rowstore *adj_store;           /* kern_sample_adj; owned, made on first need */
    int bt_stride;                     /* bt_store's stride in this step */
    kern_sample_params *h_sp;          /* [max_batch] the step's rules as sent; owned */
    int32_t *h_adjrow;                 /* [max_batch] adj_store row of each sampled row */
    /* The step prepared by step_prepare. */
    int max_pos, n_want;
    int n_runs;                        /* runs of consecutive items of one sequence */
};

static int kern_fail(eng_err *err, int rc, const char *what, int layer)
{
    return eng_err_set(err, rc == KERN_E_NOMEM ? ENG_E_NOMEM : rc == KERN_E_DEVICE ? ENG_E_DEVICE
                                                                                    : ENG_E_INVAL,
                       "%s (layer %d): %s", what, layer, kern_strerror(rc));
}

/* Allocates *b of `bytes` on the ctx's backend; *addr = its address. */
static int ctx_buf(eng_ctx *c, kern_buf **b, size_t bytes, void *addr)
{
    int rc = kern_buf_alloc(c->be, bytes, b);
    if (rc) return rc;
    *(void **)addr = kern_buf_addr(*b);
    return 0;
}

int eng_ctx_create(eng_ctx **out, const eng_model *m, kern_backend *be, int max_batch, eng_err *err)
{
    *out = NULL;
    if (max_batch <= 0 || max_batch > (1 << 16))
        return eng_err_set(err, ENG_E_INVAL, "max batch %d out of range", max_batch);
    const eng_config *c = &m->cfg;
    eng_ctx *x = calloc(1, sizeof *x);
    if (!x) return eng_err_set(err, ENG_E_NOMEM, "out of memory");
    x->m = m;
    x->be = be;
    x->host = kern_backend_host_memory(be);
    x->max_batch = max_batch;
    size_t B = (size_t)max_batch, F = sizeof(float), I = sizeof(int32_t);
    size_t q_dim = (size_t)c->n_heads * c->head_dim, kv_dim = (size_t)c->n_kv_heads * c->head_dim;
    size_t wide = q_dim > (size_t)c->dim ? q_dim : (size_t)c->dim;
    x->lw = calloc((size_t)c->n_layers, sizeof *x->lw);
    x->h_ids = malloc(B * I);
    x->h_pos = malloc(B * I);
    x->h_slot = malloc(B * I);
    x->h_rows = malloc(B * I);
    x->h_btrow = malloc(B * I);
    x->h_sp = malloc(B * sizeof *x->h_sp);
    x->h_adjrow = malloc(B * I);
    x->h_bf16 = calloc(B, 1);
    int rc = !x->lw || !x->h_ids || !x->h_pos || !x->h_slot || !x->h_rows || !x->h_btrow ||
                     !x->h_sp || !x->h_adjrow || !x->h_bf16
                 ? KERN_E_NOMEM
                 : 0;
    if (!rc) rc = eng_rowstore_create(&x->bt_store, be, sizeof(int32_t), max_batch, 16);
    if (!rc) rc = ctx_buf(x, &x->b_x, B * (size_t)c->dim * F, &x->x);
    if (!rc) rc = ctx_buf(x, &x->b_xb, B * wide * F, &x->xb);
    if (!rc) rc = ctx_buf(x, &x->b_q, B * q_dim * F, &x->q);
    if (!rc) rc = ctx_buf(x, &x->b_att, B * q_dim * F, &x->att);
    if (!rc) rc = ctx_buf(x, &x->b_k, B * kv_dim * F, &x->k);
    if (!rc) rc = ctx_buf(x, &x->b_v, B * kv_dim * F, &x->v);
    if (!rc) rc = ctx_buf(x, &x->b_hb, B * (size_t)c->hidden_dim * F, &x->hb);
    if (!rc) rc = ctx_buf(x, &x->b_hb2, B * (size_t)c->hidden_dim * F, &x->hb2);
    if (!rc) rc = ctx_buf(x, &x->b_ids, B * I, &x->ids);
    if (!rc) rc = ctx_buf(x, &x->b_pos, B * I, &x->pos);
    if (!rc) rc = ctx_buf(x, &x->b_slot, B * I, &x->slot);
    if (!rc) rc = ctx_buf(x, &x->b_rows, B * I, &x->rows);
    if (!rc) rc = ctx_buf(x, &x->b_btrow, B * I, &x->btrow);
    if (!rc) rc = ctx_buf(x, &x->b_amax, B * I, &x->amax);
    if (!rc && c->rope_scaling.type != ENG_ROPE_DEFAULT) {
        size_t half = (size_t)(c->head_dim / 2);
        float *f = malloc(half * F);
        rc = f ? 0 : KERN_E_NOMEM;
        if (!rc) {
            eng_rope_freq(c, f);
            rc = ctx_buf(x, &x->b_freq, half * F, &x->rope_freq);
            if (!rc) rc = kern_buf_write(be, x->b_freq, 0, f, half * F);
        }
        free(f);
    }
    if (rc) {
        eng_ctx_destroy(x);
        return eng_err_set(err, rc == KERN_E_NOMEM ? ENG_E_NOMEM : ENG_E_DEVICE,
                           "scratch for a batch of %d tokens on the %s backend: %s", max_batch,
                           be->ops && be->ops->name ? be->ops->name : "?", kern_strerror(rc));
    }
    for (int l = 0; l < c->n_layers; l++) x->lw[l] = &m->w.layers[l];
    x->embed = &m->w.tok_embed;
    x->output = &m->w.output;
    x->final_norm = m->w.final_norm;
    *out = x;
    return 0;
}

void eng_ctx_destroy(eng_ctx *x)
{
    if (!x) return;
    kern_buf *bufs[] = {x->b_x,   x->b_xb,  x->b_q,    x->b_att,  x->b_k,     x->b_v,
                        x->b_hb,  x->b_hb2, x->b_ids,  x->b_pos,  x->b_slot,  x->b_rows,
                        x->b_btrow, x->b_amax, x->b_freq, x->b_logits,
                        x->b_sparams, x->b_sadj, x->b_slp, x->b_sallow};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) kern_buf_free(x->be, bufs[i]);
    free(x->lw);
    free(x->h_ids);
    free(x->h_pos);
    free(x->h_slot);
    free(x->h_rows);
    free(x->h_btrow);
    eng_rowstore_destroy(x->bt_store);
    eng_rowstore_destroy(x->adj_store);
    free(x->h_sp);
    free(x->h_adjrow);
    free(x->h_bf16);
    free(x);
}

int eng_ctx_max_batch(const eng_ctx *c) { return c->max_batch; }

int eng_ctx_set_prefill_bf16(eng_ctx *c, int on)
{
    if (on && (!c->be->ops || !c->be->ops->matmul_bf16)) return ENG_E_UNSUPPORTED;
    c->prefill_bf16 = on != 0;
    return 0;
}

void eng_ctx_set_capture(eng_ctx *c, eng_capture_fn fn, void *ud)
{
    c->capture = fn;
    c->capture_ud = ud;
}

static const eng_layer_weights *own_layer(const eng_ctx *c, int layer)
{
    return c->res ? eng_resident_layer(c->res, layer) : &c->m->w.layers[layer];
}

void eng_ctx_set_layer_weights(eng_ctx *c, int layer, const eng_layer_weights *lw)
{
    if (layer < 0 || layer >= c->m->cfg.n_layers) return;
    c->lw[layer] = lw ? lw : own_layer(c, layer);
}

int eng_ctx_use_resident(eng_ctx *c, const eng_resident *r)
{
    if (r && eng_resident_model(r) != c->m) return ENG_E_INVAL;
    c->res = r;
    c->embed = r ? eng_resident_embed(r) : &c->m->w.tok_embed;
    c->output = r ? eng_resident_output(r) : &c->m->w.output;
    c->final_norm = r ? eng_resident_final_norm(r) : c->m->w.final_norm;
    for (int l = 0; l < c->m->cfg.n_layers; l++) c->lw[l] = own_layer(c, l);
    return 0;
}

/* What the device path needs beyond the items: the model's norm weights in the backend's
 * memory (a resident set), the pool on this backend, and a host backend for the hooks that read
 * activations. */
static int check_backend(const eng_ctx *c, const eng_kv *kv, eng_err *err)
{
    if (c->host) return 0;
    if (!c->res)
        return eng_err_set(err, ENG_E_INVAL, "the %s backend runs only on resident weights "
                           "(eng_resident_create, eng_ctx_use_resident)",
                           c->be->ops && c->be->ops->name ? c->be->ops->name : "device");
    if (kv && kv->be != c->be)
        return eng_err_set(err, ENG_E_INVAL, "the KV cache is not in the backend's memory "
                           "(eng_kv_init_on with the ctx's backend)");
    if (c->capture)
        return eng_err_set(err, ENG_E_INVAL, "activation capture needs a host backend");
    return 0;
}

static int check_items(const eng_ctx *c, const eng_kv *kv, const eng_batch_item *it, int n,
                       eng_err *err)
{
    if (n <= 0 || n > c->max_batch)
        return eng_err_set(err, ENG_E_INVAL, "batch of %d tokens (max %d)", n, c->max_batch);
    for (int i = 0; i < n; i++) {
        if (it[i].token < 0 || it[i].token >= c->m->cfg.vocab_size)
            return eng_err_set(err, ENG_E_RANGE, "token id %d outside the vocabulary (%d)",
                               it[i].token, c->m->cfg.vocab_size);
        if (it[i].pos < 0 || !it[i].seq ||
            (kv && it[i].pos >= (int64_t)it[i].seq->n_blocks * kv->block_tokens))
            return eng_err_set(err, ENG_E_RANGE, "position %d has no KV block reserved", it[i].pos);
    }
    return check_backend(c, kv, err);
}

/* Each item's block-table row (h_btrow), every sequence's row brought up to date: only the
 * entries that differ from what the backend holds are sent (none in most decode steps, one id
 * when a block was added). Counts the runs of consecutive items of one sequence (n_runs). */
static int block_tables(eng_ctx *c, const eng_batch_item *items, int n)
{
    eng_rowstore_step(c->bt_store);
    int rc = 0;
    c->n_runs = 0;
    for (int i = 0; !rc && i < n; i++) {
        if (i > 0 && items[i].seq == items[i - 1].seq) {
            c->h_btrow[i] = c->h_btrow[i - 1];
            continue;
        }
        c->n_runs++;
        rc = eng_rowstore_row(c->bt_store, items[i].seq, &c->h_btrow[i]);
        if (!rc)
            rc = eng_rowstore_put(c->bt_store, c->h_btrow[i], items[i].seq->blocks,
                                  items[i].seq->n_blocks);
    }
    c->bt = eng_rowstore_addr(c->bt_store);
    c->bt_stride = eng_rowstore_stride(c->bt_store);
    return rc;
}

/* Builds the step's small tables on the host and sends them to the backend, once per forward:
 * token ids, positions, each token's cache slot (block * block_tokens + slot), each token's
 * block-table row (block_tables: only changed entries are sent), and the rows the head reads.
 * Advances each sequence's n_pos. kv may be NULL (no pool: ids and head rows only). */
static int step_prepare(eng_ctx *c, eng_kv *kv, const eng_batch_item *items, int n, eng_err *err)
{
    int rc = check_items(c, kv, items, n, err);
    if (rc) return rc;
    c->max_pos = 0;
    c->n_want = 0;
    c->n_bf16 = 0;
    for (int i = 0; i < n; i++) {
        c->h_bf16[i] = c->prefill_bf16 && items[i].prompt;
        c->n_bf16 += c->h_bf16[i];
        c->h_ids[i] = items[i].token;
        c->h_pos[i] = items[i].pos;
        if (items[i].pos + 1 > c->max_pos) c->max_pos = items[i].pos + 1;
        if (items[i].want_logits) c->h_rows[c->n_want++] = i;
    }
    size_t I = sizeof(int32_t);
    rc = kern_buf_write(c->be, c->b_ids, 0, c->h_ids, (size_t)n * I);
    if (!rc && c->n_want)
        rc = kern_buf_write(c->be, c->b_rows, 0, c->h_rows, (size_t)c->n_want * I);
    if (!rc && kv) {
        int bt = kv->block_tokens;
        for (int i = 0; i < n; i++) {
            const eng_seq *s = items[i].seq;
            int p = items[i].pos;
            c->h_slot[i] = s->blocks[p / bt] * bt + p % bt;
        }
        rc = block_tables(c, items, n);
        if (!rc) rc = kern_buf_write(c->be, c->b_pos, 0, c->h_pos, (size_t)n * I);
        if (!rc) rc = kern_buf_write(c->be, c->b_slot, 0, c->h_slot, (size_t)n * I);
        if (!rc) rc = kern_buf_write(c->be, c->b_btrow, 0, c->h_btrow, (size_t)n * I);
        for (int i = 0; !rc && i < n; i++)
            if (items[i].pos + 1 > items[i].seq->n_pos) items[i].seq->n_pos = items[i].pos + 1;
    }
    return rc ? kern_fail(err, rc, "sending the step's tables", -1) : 0;
}

/* y = x W^T for the step's n items: one matmul, or, when some items take the relaxed prefill
 * numerics, one call per run of items of the same kind (matmul_bf16 for prompt items, falling
 * back to matmul where the backend has no bfloat16 path for w). */
static int linear(eng_ctx *c, const kern_matrix *w, const float *x, int n, float *y)
{
    if (!c->n_bf16) return kern_matmul(c->be, w, x, n, y);
    for (int i = 0; i < n;) {
        int j = i + 1;
        while (j < n && c->h_bf16[j] == c->h_bf16[i]) j++;
        const float *xi = x + (int64_t)i * w->cols;
        float *yi = y + (int64_t)i * w->rows;
        int rc = c->h_bf16[i] ? kern_matmul_bf16(c->be, w, xi, j - i, yi) : KERN_E_UNSUPPORTED;
        if (rc == KERN_E_UNSUPPORTED) rc = kern_matmul(c->be, w, xi, j - i, yi);
        if (rc) return rc;
        i = j;
    }
    return 0;
}

/* x += in W^T, the projections into the residual stream: one op where the backend fuses the add
 * (the same bits), else the linear into c->xb and an add. */
static int linear_add(eng_ctx *c, const kern_matrix *w, const float *in, int n, float *x)
{
    int rc = c->n_bf16 ? KERN_E_UNSUPPORTED : kern_matmul_add(c->be, w, in, n, x);
    if (rc != KERN_E_UNSUPPORTED) return rc;
    rc = linear(c, w, in, n, c->xb);
    return rc ? rc : kern_add(c->be, x, c->xb, (int64_t)n * w->rows);
}

/* The attention half of layer l on x (backend memory): attn_norm(x) -> q/k/v -> RoPE -> K/V
 * into the cache -> attention, leaving the result (before o_proj) in c->att [n][q_dim]. x is not
 * modified. Needs step_prepare. */
static int layer_attn(eng_ctx *c, eng_kv *kv, int l, int n, const float *x, eng_err *err)
{
    const eng_config *cf = &c->m->cfg;
    const eng_layer_weights *w = c->lw[l];
    int dim = cf->dim, hd = cf->head_dim;
    int q_dim = cf->n_heads * hd, kv_dim = cf->n_kv_heads * hd;
    if (kv->kv_dim != kv_dim || kv->n_layers != cf->n_layers)
        return eng_err_set(err, ENG_E_INVAL, "kv cache shape does not match the model");
    int rc;
    if ((rc = kern_rmsnorm(c->be, x, w->attn_norm, n, dim, cf->norm_eps, c->xb))) goto kfail;
    if (c->capture) c->capture(c->capture_ud, l, 0, c->xb, n, dim);
    /* q, k and v in one op where the backend fuses them (same bits), else three */
    const kern_matrix *qkv[3] = {&w->lin[ENG_LIN_Q], &w->lin[ENG_LIN_K], &w->lin[ENG_LIN_V]};
    float *const qkv_out[3] = {c->q, c->k, c->v};
    rc = c->n_bf16 ? KERN_E_UNSUPPORTED : kern_matmul_multi(c->be, qkv, 3, c->xb, n, qkv_out);
    if (rc == KERN_E_UNSUPPORTED) {
        if ((rc = linear(c, qkv[0], c->xb, n, c->q))) goto kfail;
        if ((rc = linear(c, qkv[1], c->xb, n, c->k))) goto kfail;
        rc = linear(c, qkv[2], c->xb, n, c->v);
    }
    if (rc) goto kfail;
    void *kl = eng_kv_k_layer(kv, l), *vl = eng_kv_v_layer(kv, l);
    int64_t block_stride = (int64_t)kv->n_layers * kv->block_stride;
    /* RoPE on q and k, then k and v into their cache slots: one op */
    kern_kv_write_args wa = {
        .n = n, .kv_dim = kv_dim, .k = c->k, .v = c->v, .slot = c->slot, .kv_dtype = kv->dtype,
        .k_base = kl, .v_base = vl, .block_stride = block_stride, .block_tokens = kv->block_tokens,
        .rope_pos = c->pos, .q = c->q, .n_heads = cf->n_heads, .head_dim = hd,
        .theta = cf->rope_theta, .freq = c->rope_freq, .style = cf->rope_style,
    };
    if ((rc = kern_kv_write(c->be, &wa))) goto kfail;
    kern_attn_args a = {
        .n = n, .n_heads = cf->n_heads, .n_kv_heads = cf->n_kv_heads, .head_dim = hd,
        .q = c->q, .out = c->att, .pos = c->pos, .bt = c->bt, .bt_row = c->btrow,
        .bt_stride = c->bt_stride, .kv_dtype = kv->dtype, .k_base = kl, .v_base = vl,
        .block_stride = block_stride, .block_tokens = kv->block_tokens, .max_pos = c->max_pos,
        .n_seqs = c->n_runs,
    };
    if ((rc = kern_attention(c->be, &a))) goto kfail;
    if (c->capture) c->capture(c->capture_ud, l, 1, c->att, n, q_dim);
    return 0;
kfail:
    return kern_fail(err, rc, "forward", l);
}

/* Decoder layer l in place on x (backend memory). Needs step_prepare. */
static int layer(eng_ctx *c, eng_kv *kv, int l, int n, float *x, eng_err *err)
{
    const eng_config *cf = &c->m->cfg;
    const eng_layer_weights *w = c->lw[l];
    int dim = cf->dim, hidden = cf->hidden_dim;
    int rc = layer_attn(c, kv, l, n, x, err);
    if (rc) return rc;
    if ((rc = linear_add(c, &w->lin[ENG_LIN_O], c->att, n, x))) goto kfail;

    /* feed-forward block */
    if ((rc = kern_rmsnorm(c->be, x, w->ffn_norm, n, dim, cf->norm_eps, c->xb))) goto kfail;
    if (c->capture) c->capture(c->capture_ud, l, 2, c->xb, n, dim);
    /* gate, up and SwiGLU in one op where the backend fuses them (same bits), else three */
    rc = c->n_bf16 ? KERN_E_UNSUPPORTED
                   : kern_matmul_swiglu(c->be, &w->lin[ENG_LIN_GATE], &w->lin[ENG_LIN_UP], c->xb,
                                        n, c->hb);
    if (rc == KERN_E_UNSUPPORTED) {
        if ((rc = linear(c, &w->lin[ENG_LIN_GATE], c->xb, n, c->hb))) goto kfail;
        if ((rc = linear(c, &w->lin[ENG_LIN_UP], c->xb, n, c->hb2))) goto kfail;
        rc = kern_swiglu(c->be, c->hb, c->hb2, (int64_t)n * hidden, c->hb);
    }
    if (rc) goto kfail;
    if (c->capture) c->capture(c->capture_ud, l, 3, c->hb, n, hidden);
    if ((rc = linear_add(c, &w->lin[ENG_LIN_DOWN], c->hb, n, x))) goto kfail;
    return 0;
kfail:
    return kern_fail(err, rc, "forward", l);
}

/* Final norm of the prepared step's wanted rows of x into c->xb, then the head into out
 * [n_want][vocab] (backend memory; NULL: the norm only). */
static int head(eng_ctx *c, const float *x, float *out, eng_err *err)
{
    const eng_config *cf = &c->m->cfg;
    int dim = cf->dim, nw = c->n_want;
    int rc = kern_copy_rows(c->be, x, c->rows, nw, dim, c->xb);
    if (!rc) rc = kern_rmsnorm(c->be, c->xb, c->final_norm, nw, dim, cf->norm_eps, c->xb);
    if (!rc && out) rc = kern_matmul(c->be, c->output, c->xb, nw, out);
    return rc ? kern_fail(err, rc, "output head", cf->n_layers) : 0;
}

/* The pieces below take the caller's host arrays, which only a host backend's ops accept. */
static int need_host(const eng_ctx *c, const char *what, eng_err *err)
{
    return c->host ? 0 : eng_err_set(err, ENG_E_INVAL, "%s needs a host backend", what);
}

int eng_forward_embed(eng_ctx *c, const eng_batch_item *items, int n, float *x, eng_err *err)
{
    int rc = need_host(c, "eng_forward_embed", err);
    if (!rc) rc = step_prepare(c, NULL, items, n, err);
    if (rc) return rc;
    rc = kern_embed(c->be, c->embed, c->ids, n, x);
    return rc ? kern_fail(err, rc, "embedding", -1) : 0;
}

int eng_forward_layer(eng_ctx *c, eng_kv *kv, int l, const eng_batch_item *items, int n, float *x,
                      eng_err *err)
{
    int rc = need_host(c, "eng_forward_layer", err);
    if (!rc) rc = step_prepare(c, kv, items, n, err);
    return rc ? rc : layer(c, kv, l, n, x, err);
}

int eng_forward_attn(eng_ctx *c, eng_kv *kv, int l, const eng_batch_item *items, int n,
                     const float *x, float *att, eng_err *err)
{
    int rc = need_host(c, "eng_forward_attn", err);
    if (!rc) rc = step_prepare(c, kv, items, n, err);
    if (!rc) rc = layer_attn(c, kv, l, n, x, err);
    if (rc) return rc;
    const eng_config *cf = &c->m->cfg;
    memcpy(att, c->att, sizeof(float) * (size_t)n * (size_t)(cf->n_heads * cf->head_dim));
    return 0;
}

int eng_forward_head(eng_ctx *c, const eng_batch_item *items, int n, const float *x, float *logits,
                     eng_err *err)
{
    int rc = need_host(c, "eng_forward_head", err);
    if (!rc) rc = step_prepare(c, NULL, items, n, err);
    return rc || c->n_want == 0 ? rc : head(c, x, logits, err);
}

/* The wanted rows' final-normed states (c->xb after head) into the caller's hidden. */
static int read_hidden(eng_ctx *c, float *hidden)
{
    size_t bytes = (size_t)c->n_want * (size_t)c->m->cfg.dim * sizeof(float);
    return kern_buf_read(c->be, c->b_xb, 0, hidden, bytes);
}

/* Grows *b (backend memory) to hold bytes. */
static int grow_buf(eng_ctx *c, kern_buf **b, size_t bytes)
{
    if (*b && kern_buf_size(*b) >= bytes) return 0;
    kern_buf_free(c->be, *b);
    *b = NULL;
    return kern_buf_alloc(c->be, bytes + bytes / 2, b);
}

/* The backend's log-probabilities of the step's picks into out->sample_lp (rows that asked). */
static int read_logprobs(eng_ctx *c, const eng_forward_out *out, int nw)
{
    kern_sample_lp *h = malloc((size_t)nw * sizeof *h);
    if (!h) return KERN_E_NOMEM;
    int rc = kern_buf_read(c->be, c->b_slp, 0, h, (size_t)nw * sizeof *h);
    for (int r = 0; r < nw && !rc; r++) {
        if (out->sample[r].n_logprobs < 0 || out->argmax[r] < 0) continue;
        eng_logprob *lp = &out->sample_lp[r];
        lp->token = h[r].token;
        lp->logprob = h[r].logprob;
        lp->n_top = h[r].n_top;
        for (int j = 0; j < h[r].n_top && j < ENG_MAX_TOP_LOGPROBS; j++) {
            lp->top_ids[j] = h[r].top_ids[j];
            lp->top_logprobs[j] = h[r].top_logprobs[j];
        }
    }
    free(h);
    return rc;
}

/* How the step ends: which outputs the ops make (decided, and the buffers they need made or
 * filled, before the ops are issued, so the ops between kern_step_begin and kern_step_end copy
 * nothing between host and device). */
typedef struct step_plan {
    int head;           /* 0: no head; 1: final norm only (hidden states); 2: logits */
    float *lg;          /* where the head writes the logits (backend memory) */
    int pick;           /* 0: none; 1: kern_argmax; 2: kern_sample */
    size_t adj_bytes;   /* kern_sample: bytes of the rows' adjustment entries (0: none) */
    size_t allow_bytes; /* kern_sample: bytes of the rows' grammar masks (0: none) */
    const kern_sample_adj *adj;   /* kern_sample: where they are on the backend */
    int want_lp;        /* kern_sample: some row asked for logprobs */
} step_plan;

/* Entries a sequence's row of adj_store holds before it first grows: a request's bias entries
 * and the tokens its penalties touch in a short answer (768 bytes a row). */
#define ADJ_FIRST_STRIDE 64

/* The sampled rows' bias and penalty entries through adj_store: each sequence's entries stay on
 * the backend from step to step, and a step sends the ones that changed (one entry per row: a
 * token generated again changes its penalty, a new one is added), with each row's adj_off in
 * h_sp pointed at its sequence's row. Returns 1 when done; 0 when a sequence has entries in two
 * rows of the step (they then go whole, as given); a KERN_E_* code on failure. */
static int adj_deltas(eng_ctx *c, const eng_batch_item *items, const eng_forward_out *out)
{
    int rc = 0, nw = c->n_want;
    if (!c->adj_store &&
        (rc = eng_rowstore_create(&c->adj_store, c->be, sizeof(kern_sample_adj), c->max_batch,
                                  ADJ_FIRST_STRIDE)))
        return rc;
    eng_rowstore_step(c->adj_store);
    for (int r = 0; r < nw; r++) {
        const kern_sample_params *p = &out->sample[r];
        const int cnt = p->n_bias + p->n_pen;
        c->h_adjrow[r] = -1;
        if (cnt == 0) continue;
        if (p->n_bias < 0 || p->n_pen < 0 || p->adj_off < 0 || !out->sample_adj ||
            (int64_t)p->adj_off + cnt > out->n_sample_adj)
            return KERN_E_INVAL;
        rc = eng_rowstore_row(c->adj_store, items[c->h_rows[r]].seq, &c->h_adjrow[r]);
        if (rc) return rc;
        for (int q = 0; q < r; q++)
            if (c->h_adjrow[q] == c->h_adjrow[r]) return 0;
    }
    for (int r = 0; !rc && r < nw; r++)
        if (c->h_adjrow[r] >= 0)
            rc = eng_rowstore_put(c->adj_store, c->h_adjrow[r],
                                  out->sample_adj + out->sample[r].adj_off,
                                  out->sample[r].n_bias + out->sample[r].n_pen);
    if (rc) return rc;
    const int stride = eng_rowstore_stride(c->adj_store);
    for (int r = 0; r < nw; r++)
        if (c->h_adjrow[r] >= 0) c->h_sp[r].adj_off = c->h_adjrow[r] * stride;
    return 1;
}

static int plan_step(eng_ctx *c, const eng_batch_item *items, const eng_forward_out *out,
                     step_plan *sp)
{
    memset(sp, 0, sizeof *sp);
    if (c->n_want == 0 || !out || (!out->logits && !out->argmax && !out->hidden)) return 0;
    if (!out->logits && !out->argmax) {   /* hidden states only: no matmul */
        sp->head = 1;
        return 0;
    }
    const int vocab = c->m->cfg.vocab_size, nw = c->n_want;
    sp->head = 2;
    sp->lg = c->host ? out->logits : NULL;   /* a host backend writes the caller's array */
    int rc = 0;
    if (!sp->lg) {
        if (!c->b_logits)
            rc = ctx_buf(c, &c->b_logits, (size_t)c->max_batch * (size_t)vocab * sizeof(float),
                         &c->logits);
        sp->lg = c->logits;
    }
    if (rc || !out->argmax) return rc;
    if (!out->sample) {
        sp->pick = 1;
        return 0;
    }
    if (!kern_has_sample(c->be) || !out->sample_logits) return KERN_E_INVAL;
    sp->pick = 2;
    sp->adj_bytes = (size_t)out->n_sample_adj * sizeof(kern_sample_adj);
    for (int r = 0; r < nw && out->sample_lp; r++) sp->want_lp |= out->sample[r].n_logprobs >= 0;
    const int64_t words = ((int64_t)vocab + 31) / 32;
    for (int r = 0; r < nw; r++) {
        const kern_sample_params *p = &out->sample[r];
        if (!p->has_allow) continue;
        if (!out->sample_allow || p->allow_off < 0 || p->allow_off + words > out->n_sample_allow)
            return KERN_E_INVAL;
        sp->allow_bytes = (size_t)out->n_sample_allow * sizeof(uint32_t);
    }
    memcpy(c->h_sp, out->sample, (size_t)nw * sizeof(kern_sample_params));
    int kept = 0;
    if (sp->adj_bytes) {
        kept = adj_deltas(c, items, out);
        if (kept < 0) return kept;
    }
    rc = grow_buf(c, &c->b_sparams, (size_t)c->max_batch * sizeof(kern_sample_params));
    if (!rc) rc = kern_buf_write(c->be, c->b_sparams, 0, c->h_sp,
                                 (size_t)nw * sizeof(kern_sample_params));
    if (!rc && sp->adj_bytes && kept) {
        sp->adj = eng_rowstore_addr(c->adj_store);
    } else if (!rc && sp->adj_bytes) {   /* whole, as given */
        rc = grow_buf(c, &c->b_sadj, sp->adj_bytes);
        if (!rc) rc = kern_buf_write(c->be, c->b_sadj, 0, out->sample_adj, sp->adj_bytes);
        sp->adj = kern_buf_addr(c->b_sadj);
    }
    if (!rc && sp->allow_bytes) {
        rc = grow_buf(c, &c->b_sallow, sp->allow_bytes);
        if (!rc) rc = kern_buf_write(c->be, c->b_sallow, 0, out->sample_allow, sp->allow_bytes);
    }
    if (!rc && sp->want_lp) rc = grow_buf(c, &c->b_slp, (size_t)nw * sizeof(kern_sample_lp));
    return rc;
}

/* The pick on the backend (kern_argmax or kern_sample) into c->amax. */
static int pick_op(eng_ctx *c, const step_plan *sp)
{
    const int vocab = c->m->cfg.vocab_size;
    if (sp->pick == 1) return kern_argmax(c->be, sp->lg, c->n_want, vocab, c->amax);
    return kern_sample(c->be, sp->lg, c->n_want, vocab, kern_buf_addr(c->b_sparams),
                       sp->adj_bytes ? sp->adj : NULL,
                       sp->allow_bytes ? kern_buf_addr(c->b_sallow) : NULL, c->amax,
                       sp->want_lp ? kern_buf_addr(c->b_slp) : NULL);
}

/* The step's ops, embedding to head, and the pick unless it comes later, on backend memory
 * only. */
static int step_ops(eng_ctx *c, eng_kv *kv, int n, const step_plan *sp, int with_pick,
                    eng_err *err)
{
    int rc = kern_embed(c->be, c->embed, c->ids, n, c->x);
    if (rc) return kern_fail(err, rc, "embedding", -1);
    for (int l = 0; rc == 0 && l < c->m->cfg.n_layers; l++) rc = layer(c, kv, l, n, c->x, err);
    if (!rc && sp->head) rc = head(c, c->x, sp->head == 2 ? sp->lg : NULL, err);
    if (rc || !sp->pick || !with_pick) return rc;
    rc = pick_op(c, sp);
    return rc ? kern_fail(err, rc, "picking the step's tokens", c->m->cfg.n_layers) : 0;
}

/* The step's results into out: logits, hidden states, picks (made here with late_pick: after
 * the raw logits are read, since kern_sample adjusts them in place), logprobs, and the adjusted
 * logits of rows kern_sample left to the host (-2). */
static int read_results(eng_ctx *c, const step_plan *sp, const eng_forward_out *out,
                        int late_pick)
{
    const int vocab = c->m->cfg.vocab_size, nw = c->n_want;
    const size_t row_bytes = (size_t)vocab * sizeof(float);
    int rc = 0;
    if (sp->head == 2 && out->logits && sp->lg != out->logits)
        rc = kern_buf_read(c->be, c->b_logits, 0, out->logits, (size_t)nw * row_bytes);
    if (!rc && out->hidden) rc = read_hidden(c, out->hidden);
    if (rc || !sp->pick) return rc;
    if (late_pick) rc = pick_op(c, sp);
    if (!rc) rc = kern_buf_read(c->be, c->b_amax, 0, out->argmax, (size_t)nw * sizeof(int32_t));
    if (sp->pick == 1) return rc;
    if (!rc && sp->want_lp) rc = read_logprobs(c, out, nw);
    for (int r = 0; r < nw && !rc; r++) {
        if (out->argmax[r] != -2) continue;
        float *dst = out->sample_logits + (size_t)r * (size_t)vocab;
        if (sp->lg == out->logits) memcpy(dst, sp->lg + (size_t)r * (size_t)vocab, row_bytes);
        else rc = kern_buf_read(c->be, c->b_logits, (size_t)r * row_bytes, dst, row_bytes);
    }
    return rc;
}

int eng_forward_ex(eng_ctx *c, eng_kv *kv, const eng_batch_item *items, int n,
                   const eng_forward_out *out, eng_err *err)
{
    int rc = step_prepare(c, kv, items, n, err);
    if (rc) return rc;
    step_plan sp;
    rc = plan_step(c, items, out, &sp);
    if (rc) return kern_fail(err, rc, "preparing the step's outputs", -1);
    /* A device backend may record the ops and launch them as one graph at kern_step_end; when
     * it does not launch them (something could not be recorded, or an op failed), none of them
     * ran, so they are issued again as they come (which also reports a real failure). */
    const int late_pick = sp.pick == 2 && out->logits;
    int recording = kern_step_begin(c->be, n);
    rc = step_ops(c, kv, n, &sp, !late_pick, err);
    if (recording) {
        int e = kern_step_end(c->be, rc == 0);
        if (e == KERN_E_AGAIN || rc) rc = step_ops(c, kv, n, &sp, !late_pick, err);
        else if (e) rc = kern_fail(err, e, "launching the step", -1);
    }
    if (rc) return rc;
    if (sp.head == 0) return 0;
    rc = read_results(c, &sp, out, late_pick);
    return rc ? kern_fail(err, rc, "reading the step's results", c->m->cfg.n_layers) : 0;
}

int eng_forward(eng_ctx *c, eng_kv *kv, const eng_batch_item *items, int n, float *logits,
                eng_err *err)
{
    eng_forward_out out = {.logits = logits};
    return eng_forward_ex(c, kv, items, n, &out, err);
}
