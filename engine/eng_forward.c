/* eng_forward.c — the LLaMA/Yi decoder forward pass over a batch of (token, position, sequence)
 * items: RMSNorm, q/k/v projections, RoPE, K/V written to the paged cache, grouped-query attention,
 * output projection, SwiGLU FFN, final norm and head. All math goes through kern.h. The ctx owns
 * scratch for max_batch tokens; one thread drives a ctx at a time. */
#include "eng_forward.h"

#include <stdlib.h>
#include <string.h>

#include "kern_half.h"

struct eng_ctx {
    const eng_model *m;                /* borrowed */
    kern_backend *be;                  /* borrowed */
    int max_batch;
    const eng_resident *res;           /* borrowed, or NULL: the model's own weights */
    const kern_matrix *embed, *output; /* the resident set's, or the model's */
    const eng_layer_weights **lw;      /* [n_layers] weights in use (see above, or an override) */
    eng_capture_fn capture;
    void *capture_ud;
    float *x;                          /* [max_batch][dim] residual stream of eng_forward; owned */
    float *xb;                         /* [max_batch][max(dim, q_dim)]; owned */
    float *q, *att;                    /* [max_batch][q_dim]; owned */
    float *k, *v;                      /* [max_batch][kv_dim]; owned */
    float *hb, *hb2;                   /* [max_batch][hidden]; owned */
    int32_t *ids, *pos;                /* [max_batch]; owned */
    float *rope_freq;                  /* [head_dim / 2] scaled RoPE frequencies, or NULL for the
                                          default rope (kernels derive it from theta); owned */
    const int32_t **bt;                /* [max_batch] block tables; owned array of borrowed ptrs */
};

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
    x->max_batch = max_batch;
    size_t B = (size_t)max_batch;
    size_t q_dim = (size_t)c->n_heads * c->head_dim, kv_dim = (size_t)c->n_kv_heads * c->head_dim;
    size_t wide = q_dim > (size_t)c->dim ? q_dim : (size_t)c->dim;
    x->lw = calloc((size_t)c->n_layers, sizeof *x->lw);
    x->x = malloc(B * (size_t)c->dim * sizeof(float));
    x->xb = malloc(B * wide * sizeof(float));
    x->q = malloc(B * q_dim * sizeof(float));
    x->att = malloc(B * q_dim * sizeof(float));
    x->k = malloc(B * kv_dim * sizeof(float));
    x->v = malloc(B * kv_dim * sizeof(float));
    x->hb = malloc(B * (size_t)c->hidden_dim * sizeof(float));
    x->hb2 = malloc(B * (size_t)c->hidden_dim * sizeof(float));
    x->ids = malloc(B * sizeof(int32_t));
    x->pos = malloc(B * sizeof(int32_t));
    x->bt = malloc(B * sizeof *x->bt);
    if (!x->lw || !x->x || !x->xb || !x->q || !x->att || !x->k || !x->v || !x->hb || !x->hb2 || !x->ids ||
        !x->pos || !x->bt) {
        eng_ctx_destroy(x);
        return eng_err_set(err, ENG_E_NOMEM, "out of memory for a batch of %d", max_batch);
    }
    if (c->rope_scaling.type != ENG_ROPE_DEFAULT) {
        x->rope_freq = malloc((size_t)(c->head_dim / 2) * sizeof(float));
        if (!x->rope_freq) {
            eng_ctx_destroy(x);
            return eng_err_set(err, ENG_E_NOMEM, "out of memory");
        }
        eng_rope_freq(c, x->rope_freq);
    }
    for (int l = 0; l < c->n_layers; l++) x->lw[l] = &m->w.layers[l];
    x->embed = &m->w.tok_embed;
    x->output = &m->w.output;
    *out = x;
    return 0;
}

void eng_ctx_destroy(eng_ctx *x)
{
    if (!x) return;
    free(x->lw);
    free(x->x);
    free(x->xb);
    free(x->q);
    free(x->att);
    free(x->k);
    free(x->v);
    free(x->hb);
    free(x->hb2);
    free(x->ids);
    free(x->pos);
    free(x->bt);
    free(x->rope_freq);
    free(x);
}

int eng_ctx_max_batch(const eng_ctx *c) { return c->max_batch; }

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
    for (int l = 0; l < c->m->cfg.n_layers; l++) c->lw[l] = own_layer(c, l);
    return 0;
}

static int kern_fail(eng_err *err, int rc, const char *what, int layer)
{
    return eng_err_set(err, rc == KERN_E_NOMEM ? ENG_E_NOMEM : rc == KERN_E_DEVICE ? ENG_E_DEVICE
                                                                                    : ENG_E_INVAL,
                       "%s (layer %d): %s", what, layer, kern_strerror(rc));
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
    return 0;
}

int eng_forward_embed(eng_ctx *c, const eng_batch_item *items, int n, float *x, eng_err *err)
{
    int rc = check_items(c, NULL, items, n, err);
    if (rc) return rc;
    for (int i = 0; i < n; i++) c->ids[i] = items[i].token;
    rc = kern_embed(c->be, c->embed, c->ids, n, x);
    return rc ? kern_fail(err, rc, "embedding", -1) : 0;
}

/* Writes one position's K or V (kv_dim floats) into the cache in its entry type. */
static void kv_store(char *dst, kern_dtype dt, const float *src, int n)
{
    if (dt == KERN_F16) {
        uint16_t *h = (uint16_t *)(void *)dst;
        for (int i = 0; i < n; i++) h[i] = kern_f32_to_f16(src[i]);
    } else {
        memcpy(dst, src, (size_t)n * sizeof(float));
    }
}

static void add_inplace(float *x, const float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

/* The attention half of layer l: attn_norm(x) -> q/k/v -> RoPE -> K/V into the cache ->
 * attention, leaving the result (before o_proj) in c->att [n][q_dim]. x is not modified. */
static int layer_attn(eng_ctx *c, eng_kv *kv, int l, const eng_batch_item *items, int n,
                      const float *x, eng_err *err)
{
    const eng_config *cf = &c->m->cfg;
    const eng_layer_weights *w = c->lw[l];
    int dim = cf->dim, hd = cf->head_dim;
    int q_dim = cf->n_heads * hd, kv_dim = cf->n_kv_heads * hd;
    int rc = check_items(c, kv, items, n, err);
    if (rc) return rc;
    if (kv->kv_dim != kv_dim || kv->n_layers != cf->n_layers)
        return eng_err_set(err, ENG_E_INVAL, "kv cache shape does not match the model");
    int max_pos = 0;
    for (int i = 0; i < n; i++) {
        c->pos[i] = items[i].pos;
        c->bt[i] = items[i].seq->blocks;
        if (items[i].pos + 1 > max_pos) max_pos = items[i].pos + 1;
    }

    if ((rc = kern_rmsnorm(c->be, x, w->attn_norm, n, dim, cf->norm_eps, c->xb))) goto kfail;
    if (c->capture) c->capture(c->capture_ud, l, 0, c->xb, n, dim);
    if ((rc = kern_matmul(c->be, &w->lin[ENG_LIN_Q], c->xb, n, c->q))) goto kfail;
    if ((rc = kern_matmul(c->be, &w->lin[ENG_LIN_K], c->xb, n, c->k))) goto kfail;
    if ((rc = kern_matmul(c->be, &w->lin[ENG_LIN_V], c->xb, n, c->v))) goto kfail;
    if ((rc = kern_rope(c->be, c->q, c->pos, n, cf->n_heads, hd, cf->rope_theta, c->rope_freq,
                        cf->rope_style)))
        goto kfail;
    if ((rc = kern_rope(c->be, c->k, c->pos, n, cf->n_kv_heads, hd, cf->rope_theta, c->rope_freq,
                        cf->rope_style)))
        goto kfail;
    char *kl = eng_kv_k_layer(kv, l), *vl = eng_kv_v_layer(kv, l);
    for (int i = 0; i < n; i++) {
        int p = items[i].pos;
        int64_t off = eng_kv_slot_offset(kv, items[i].seq->blocks[p / kv->block_tokens],
                                         p % kv->block_tokens) * (int64_t)kv->elem;
        kv_store(kl + off, kv->dtype, c->k + (int64_t)i * kv_dim, kv_dim);
        kv_store(vl + off, kv->dtype, c->v + (int64_t)i * kv_dim, kv_dim);
        if (p + 1 > items[i].seq->n_pos) items[i].seq->n_pos = p + 1;
    }
    kern_attn_args a = {
        .n = n, .n_heads = cf->n_heads, .n_kv_heads = cf->n_kv_heads, .head_dim = hd,
        .q = c->q, .out = c->att, .pos = c->pos, .block_table = c->bt, .kv_dtype = kv->dtype,
        .k_base = kl, .v_base = vl, .block_stride = (int64_t)kv->n_layers * kv->block_stride,
        .block_tokens = kv->block_tokens, .max_pos = max_pos,
    };
    if ((rc = kern_attention(c->be, &a))) goto kfail;
    if (c->capture) c->capture(c->capture_ud, l, 1, c->att, n, q_dim);
    return 0;
kfail:
    return kern_fail(err, rc, "forward", l);
}

int eng_forward_attn(eng_ctx *c, eng_kv *kv, int l, const eng_batch_item *items, int n,
                     const float *x, float *att, eng_err *err)
{
    int rc = layer_attn(c, kv, l, items, n, x, err);
    if (rc) return rc;
    const eng_config *cf = &c->m->cfg;
    memcpy(att, c->att, sizeof(float) * (size_t)n * (size_t)(cf->n_heads * cf->head_dim));
    return 0;
}

int eng_forward_layer(eng_ctx *c, eng_kv *kv, int l, const eng_batch_item *items, int n, float *x,
                      eng_err *err)
{
    const eng_config *cf = &c->m->cfg;
    const eng_layer_weights *w = c->lw[l];
    int dim = cf->dim, hidden = cf->hidden_dim;
    int rc = layer_attn(c, kv, l, items, n, x, err);
    if (rc) return rc;
    if ((rc = kern_matmul(c->be, &w->lin[ENG_LIN_O], c->att, n, c->xb))) goto kfail;
    add_inplace(x, c->xb, (int64_t)n * dim);

    /* feed-forward block */
    if ((rc = kern_rmsnorm(c->be, x, w->ffn_norm, n, dim, cf->norm_eps, c->xb))) goto kfail;
    if (c->capture) c->capture(c->capture_ud, l, 2, c->xb, n, dim);
    if ((rc = kern_matmul(c->be, &w->lin[ENG_LIN_GATE], c->xb, n, c->hb))) goto kfail;
    if ((rc = kern_matmul(c->be, &w->lin[ENG_LIN_UP], c->xb, n, c->hb2))) goto kfail;
    if ((rc = kern_swiglu(c->be, c->hb, c->hb2, (int64_t)n * hidden, c->hb))) goto kfail;
    if (c->capture) c->capture(c->capture_ud, l, 3, c->hb, n, hidden);
    if ((rc = kern_matmul(c->be, &w->lin[ENG_LIN_DOWN], c->hb, n, c->xb))) goto kfail;
    add_inplace(x, c->xb, (int64_t)n * dim);
    return 0;
kfail:
    return kern_fail(err, rc, "forward", l);
}

int eng_forward_head(eng_ctx *c, const eng_batch_item *items, int n, const float *x, float *logits,
                     eng_err *err)
{
    const eng_config *cf = &c->m->cfg;
    int dim = cf->dim, n_want = 0;
    for (int i = 0; i < n; i++) {
        if (!items[i].want_logits) continue;
        memcpy(c->xb + (int64_t)n_want * dim, x + (int64_t)i * dim, (size_t)dim * sizeof(float));
        n_want++;
    }
    if (n_want == 0) return 0;
    int rc = kern_rmsnorm(c->be, c->xb, c->m->w.final_norm, n_want, dim, cf->norm_eps, c->xb);
    if (!rc) rc = kern_matmul(c->be, c->output, c->xb, n_want, logits);
    return rc ? kern_fail(err, rc, "output head", cf->n_layers) : 0;
}

int eng_forward(eng_ctx *c, eng_kv *kv, const eng_batch_item *items, int n, float *logits,
                eng_err *err)
{
    int rc = check_items(c, kv, items, n, err);
    if (rc) return rc;
    float *x = c->x;
    rc = eng_forward_embed(c, items, n, x, err);
    for (int l = 0; rc == 0 && l < c->m->cfg.n_layers; l++)
        rc = eng_forward_layer(c, kv, l, items, n, x, err);
    if (rc == 0) rc = eng_forward_head(c, items, n, x, logits, err);
    return rc;
}
