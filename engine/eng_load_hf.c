/* eng_load_hf.c — loads a Hugging Face LLaMA / Yi directory: config.json, model.safetensors (or
 * shards via the index), the tokenizer path and tokenizer_config.json. F32/F16/BF16 matrices are
 * views into the mappings (copied only when a tensor is misaligned for its dtype); norm vectors
 * become owned fp32; rope_scaling (linear, dynamic, llama3) goes into the config. Does not parse
 * the tokenizer (eng_tokenizer) and does not support biases or other activations yet. Any
 * thread. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "eng_json.h"
#include "eng_model.h"
#include "eng_safetensors.h"

#define HF_MAX_CONFIG (1u << 20)          /* config.json bytes */
#define HF_MAX_TOKENIZER_CONFIG (16u << 20) /* tokenizer_config.json bytes (chat templates) */
#define HF_MAX_DIM (1 << 20)              /* caps on config integers, before any arithmetic */
#define HF_MAX_LAYERS 4096
#define HF_MAX_VOCAB (1 << 24)
#define HF_MAX_POS (1 << 22)   /* eng_config_validate's cap on seq_len: one place says it */

/* ---- config.json -------------------------------------------------------------------------- */

/* Reads integer field name into *out: absent -> def (or an error when def < 0 means required). */
static int hf_int(const cJSON *root, const char *path, const char *name, int required, int def,
                  long long lo, long long hi, int *out, eng_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!v || cJSON_IsNull(v)) {
        if (required)
            return eng_err_set(err, ENG_E_FORMAT, "%s: missing \"%s\"", path, name);
        *out = def;
        return 0;
    }
    double d = v->valuedouble;
    /* range first: casting 1e300 to an integer is undefined behaviour */
    if (!cJSON_IsNumber(v) || !(d >= (double)lo && d <= (double)hi) || d != floor(d))
        return eng_err_set(err, ENG_E_FORMAT, "%s: \"%s\" must be an integer in %lld..%lld",
                           path, name, lo, hi);
    *out = (int)d;
    return 0;
}

static int hf_float(const cJSON *root, const char *path, const char *name, double def,
                    double lo, double hi, float *out, eng_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!v || cJSON_IsNull(v)) {
        *out = (float)def;
        return 0;
    }
    if (!cJSON_IsNumber(v) || !(v->valuedouble > lo && v->valuedouble <= hi) ||
        !((float)v->valuedouble > (float)lo))   /* a positive value float cannot hold is 0 */
        return eng_err_set(err, ENG_E_FORMAT, "%s: \"%s\" must be a number in (%g, %g] that a "
                           "float holds", path, name, lo, hi);
    *out = (float)v->valuedouble;
    return 0;
}

/* rope_scaling: null/absent, or {"rope_type" (or "type"): "default" | "linear" | "dynamic" |
 * "llama3", "factor", and for llama3 "low_freq_factor", "high_freq_factor",
 * "original_max_position_embeddings"}. c->seq_len must be parsed (dynamic's default original
 * length). Anything else is refused with the field named. */
static int hf_rope_scaling(const cJSON *root, const char *path, eng_config *c, eng_err *err)
{
    eng_rope_scaling *s = &c->rope_scaling;
    memset(s, 0, sizeof *s);
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    if (!rs || cJSON_IsNull(rs)) return 0;
    if (!cJSON_IsObject(rs))
        return eng_err_set(err, ENG_E_FORMAT, "%s: rope_scaling must be an object or null", path);
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!ty) ty = cJSON_GetObjectItemCaseSensitive(rs, "type");
    if (!cJSON_IsString(ty) || !ty->valuestring)
        return eng_err_set(err, ENG_E_FORMAT, "%s: rope_scaling.rope_type missing", path);
    const char *t = ty->valuestring;
    char rpath[ENG_PATH_MAX + 32];   /* errors below name the field as "<path> rope_scaling" */
    snprintf(rpath, sizeof rpath, "%s rope_scaling", path);
    path = rpath;
    const int type = eng_rope_type_from_name(t);
    if (type < 0)
        return eng_err_set(err, ENG_E_UNSUPPORTED, "%s: rope_type \"%.40s\" is not supported "
                           "(default, linear, dynamic, llama3)", path, t);
    s->type = (eng_rope_type)type;
    if (s->type == ENG_ROPE_DEFAULT) return 0;
    int rc = hf_float(rs, path, "factor", 0.0, 0.0, 1e6, &s->factor, err);
    if (!rc && !(s->factor > 0))
        rc = eng_err_set(err, ENG_E_FORMAT, "%s: \"factor\" missing", path);
    if (!rc && s->type == ENG_ROPE_LLAMA3) {
        if ((rc = hf_float(rs, path, "low_freq_factor", 1.0, 0.0, 1e6, &s->low_freq_factor,
                           err)) ||
            (rc = hf_float(rs, path, "high_freq_factor", 4.0, 0.0, 1e6, &s->high_freq_factor,
                           err)) ||
            (rc = hf_int(rs, path, "original_max_position_embeddings", 1, 0, 1, HF_MAX_POS,
                         &s->orig_max_pos, err)))
            return rc;
    } else if (!rc && s->type == ENG_ROPE_DYNAMIC) {
        rc = hf_int(rs, path, "original_max_position_embeddings", 0, c->seq_len, 1, HF_MAX_POS,
                    &s->orig_max_pos, err);
    }
    return rc;
}

/* bos/eos: an integer, a list (take the first) or null/absent (-1). */
/* Whether v is a token id: an integral number in [0, HF_MAX_VOCAB], range checked before any
 * conversion (casting 1e300 to an integer is undefined). */
static int hf_is_id(const cJSON *v)
{
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    return d >= 0 && d <= HF_MAX_VOCAB && d == (double)(int)d;
}

static int hf_token_id(const cJSON *root, const char *path, const char *name, int *out,
                       eng_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (cJSON_IsArray(v)) v = v->child;
    if (!v || cJSON_IsNull(v)) {
        *out = -1;
        return 0;
    }
    if (!hf_is_id(v))
        return eng_err_set(err, ENG_E_FORMAT, "%s: \"%s\" must be a token id", path, name);
    *out = (int)v->valuedouble;
    return 0;
}

/* name (an id or a list of ids: LLaMA-3.1 lists <|end_of_text|>, <|eom_id|>, <|eot_id|>) into
 * c's end-of-sequence ids. */
static int hf_eos_ids(const cJSON *root, const char *path, const char *name, eng_config *c,
                      eng_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name), *it;
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsArray(v)) {
        int id;
        int rc = hf_token_id(root, path, name, &id, err);
        if (!rc) eng_config_add_eos(c, id);
        return rc;
    }
    if (cJSON_GetArraySize(v) > ENG_MAX_EOS)
        return eng_err_set(err, ENG_E_FORMAT, "%s: \"%s\" lists more than %d ids", path, name,
                           ENG_MAX_EOS);
    cJSON_ArrayForEach(it, v) {
        if (!hf_is_id(it))
            return eng_err_set(err, ENG_E_FORMAT, "%s: \"%s\" must be token ids", path, name);
        eng_config_add_eos(c, (int)it->valuedouble);
    }
    return 0;
}

static int hf_bool(const cJSON *root, const char *path, const char *name, int def, int *out,
                   eng_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!v || cJSON_IsNull(v)) *out = def;
    else if (cJSON_IsBool(v)) *out = cJSON_IsTrue(v);
    else return eng_err_set(err, ENG_E_FORMAT, "%s: \"%s\" must be true or false", path, name);
    return 0;
}

static int hf_arch_ok(const cJSON *root, char *arch, size_t arch_len)
{
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (cJSON_IsString(mt) && mt->valuestring &&
        (strcmp(mt->valuestring, "llama") == 0 || strcmp(mt->valuestring, "yi") == 0 ||
         strcmp(mt->valuestring, "mistral") == 0)) {
        snprintf(arch, arch_len, "%s", mt->valuestring);
        return 1;
    }
    const cJSON *ar = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *a;
    cJSON_ArrayForEach(a, ar) {
        if (!cJSON_IsString(a) || !a->valuestring) continue;
        if (strcmp(a->valuestring, "LlamaForCausalLM") == 0) {
            snprintf(arch, arch_len, "llama");
            return 1;
        }
        if (strcmp(a->valuestring, "YiForCausalLM") == 0) {
            snprintf(arch, arch_len, "yi");
            return 1;
        }
        if (strcmp(a->valuestring, "MistralForCausalLM") == 0) {
            snprintf(arch, arch_len, "mistral");
            return 1;
        }
    }
    return 0;
}

static int hf_parse_config(eng_config *c, const char *path, const char *text, size_t len,
                           eng_err *err)
{
    int rc = 0;
    long bad = eng_json_bad_control(text, len);
    if (bad >= 0)
        return eng_err_set(err, ENG_E_FORMAT, "%s: control byte 0x%02x at byte %ld (JSON allows "
                           "none in a string)", path, (unsigned char)text[bad], bad);
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!cJSON_IsObject(root)) {
        rc = eng_err_set(err, ENG_E_FORMAT, "%s: not a JSON object", path);
        goto out;
    }
    if ((rc = eng_json_check_dups(root, path, err)))
        goto out;
    memset(c, 0, sizeof *c);
    if (!hf_arch_ok(root, c->arch, sizeof c->arch)) {
        const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
        rc = eng_err_set(err, ENG_E_UNSUPPORTED, "%s: model_type \"%s\" is not supported "
                         "(llama, yi or mistral)", path,
                         cJSON_IsString(mt) && mt->valuestring ? mt->valuestring : "?");
        goto out;
    }
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (act && !(cJSON_IsString(act) && act->valuestring && strcmp(act->valuestring, "silu") == 0)) {
        rc = eng_err_set(err, ENG_E_UNSUPPORTED, "%s: hidden_act must be \"silu\"", path);
        goto out;
    }
    static const char *bias_fields[2] = { "attention_bias", "mlp_bias" };
    for (int i = 0; i < 2; i++) {
        int b = 0;
        if ((rc = hf_bool(root, path, bias_fields[i], 0, &b, err))) goto out;
        if (b) {
            rc = eng_err_set(err, ENG_E_UNSUPPORTED, "%s: %s = true is not supported", path,
                             bias_fields[i]);
            goto out;
        }
    }
    if ((rc = hf_int(root, path, "hidden_size", 1, 0, 1, HF_MAX_DIM, &c->dim, err)) ||
        (rc = hf_int(root, path, "intermediate_size", 1, 0, 1, HF_MAX_DIM * 4LL, &c->hidden_dim,
                     err)) ||
        (rc = hf_int(root, path, "num_hidden_layers", 1, 0, 1, HF_MAX_LAYERS, &c->n_layers, err)) ||
        (rc = hf_int(root, path, "num_attention_heads", 1, 0, 1, HF_MAX_DIM, &c->n_heads, err)) ||
        (rc = hf_int(root, path, "num_key_value_heads", 0, c->n_heads, 1, HF_MAX_DIM,
                     &c->n_kv_heads, err)) ||
        (rc = hf_int(root, path, "vocab_size", 1, 0, 1, HF_MAX_VOCAB, &c->vocab_size, err)) ||
        (rc = hf_int(root, path, "max_position_embeddings", 0, 2048, 1, HF_MAX_POS, &c->seq_len,
                     err)))
        goto out;
    /* head_dim defaults to hidden/heads, which must then divide exactly. */
    const cJSON *hd = cJSON_GetObjectItemCaseSensitive(root, "head_dim");
    if (!hd || cJSON_IsNull(hd)) {
        if (c->dim % c->n_heads != 0) {
            rc = eng_err_set(err, ENG_E_FORMAT, "%s: num_attention_heads = %d does not divide "
                             "hidden_size = %d", path, c->n_heads, c->dim);
            goto out;
        }
        c->head_dim = c->dim / c->n_heads;
    } else if ((rc = hf_int(root, path, "head_dim", 1, 0, 1, HF_MAX_DIM, &c->head_dim, err))) {
        goto out;
    }
    if ((int64_t)c->n_heads * c->head_dim > HF_MAX_DIM * 4LL) {
        rc = eng_err_set(err, ENG_E_FORMAT, "%s: num_attention_heads x head_dim is too large",
                         path);
        goto out;
    }
    if (c->n_heads % c->n_kv_heads != 0) {
        rc = eng_err_set(err, ENG_E_FORMAT, "%s: num_key_value_heads = %d does not divide "
                         "num_attention_heads = %d", path, c->n_kv_heads, c->n_heads);
        goto out;
    }
    if (c->head_dim % 2 != 0) {
        rc = eng_err_set(err, ENG_E_FORMAT, "%s: head_dim = %d is odd (RoPE needs pairs)", path,
                         c->head_dim);
        goto out;
    }
    if ((rc = hf_float(root, path, "rope_theta", 10000.0, 0.0, 1e12, &c->rope_theta, err)) ||
        (rc = hf_rope_scaling(root, path, c, err)) ||
        (rc = hf_float(root, path, "rms_norm_eps", 1e-6, 0.0, 0.5, &c->norm_eps, err)) ||
        (rc = hf_bool(root, path, "tie_word_embeddings", 0, &c->tie_embeddings, err)) ||
        (rc = hf_token_id(root, path, "bos_token_id", &c->bos_id, err)) ||
        (rc = hf_eos_ids(root, path, "eos_token_id", c, err)))
        goto out;
    if (c->n_eos == 0) c->eos_id = -1;
    /* Mistral's sliding_window: within the window full attention is the same computation, so
     * the context is capped at the window (exact) rather than refused */
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
    if (sw && !cJSON_IsNull(sw)) {
        if (!cJSON_IsNumber(sw) || sw->valuedouble < 1 || sw->valuedouble > HF_MAX_POS ||
            sw->valuedouble != (double)(int)sw->valuedouble) {
            rc = eng_err_set(err, ENG_E_FORMAT, "%s: \"sliding_window\" must be a positive "
                             "integer or null", path);
            goto out;
        }
        if ((int)sw->valuedouble < c->seq_len) c->seq_len = (int)sw->valuedouble;
    }
    c->rope_style = KERN_ROPE_HALF;
out:
    cJSON_Delete(root);
    return rc;
}

/* ---- tensors ------------------------------------------------------------------------------ */

typedef struct hf_ctx {
    eng_model *m;            /* borrowed */
    eng_st_set *st;          /* borrowed */
    const char *dir;         /* borrowed: the model directory, for messages */
    unsigned dtypes_seen;    /* bit per kern_dtype of the linears */
} hf_ctx;

/* The tensor's data as a pointer aligned for its dtype: the mapping itself, or an owned copy
 * when the file placed it at an odd offset (kernels dereference typed pointers). */
static int hf_aligned(hf_ctx *h, const eng_st_tensor *t, const void **out, eng_err *err)
{
    size_t a = kern_dtype_size(t->kdt);
    if (((uintptr_t)t->data % a) == 0) {
        *out = t->data;
        return 0;
    }
    void *copy = malloc(t->nbytes ? (size_t)t->nbytes : 1);
    if (!copy)
        return eng_err_set(err, ENG_E_NOMEM, "%s: tensor '%s': out of memory",
                           h->st->files[t->file], t->name);
    memcpy(copy, t->data, (size_t)t->nbytes);
    int rc = eng__model_own(h->m, copy);
    if (rc)
        return eng_err_set(err, rc, "%s: tensor '%s': out of memory", h->st->files[t->file],
                           t->name);
    *out = copy;
    return 0;
}

/* Looks up name and checks dtype and shape (rows x cols, or [rows] when cols == 0). */
static int hf_get(hf_ctx *h, const char *name, int64_t rows, int64_t cols,
                  const eng_st_tensor **out, eng_err *err)
{
    const eng_st_tensor *t = eng_st_find(h->st, name);
    const char *file = h->st->n_files == 1 ? h->st->files[0] : h->dir;
    if (!t)
        return eng_err_set(err, ENG_E_FORMAT, "%s: missing tensor '%s'", file, name);
    file = h->st->files[t->file];
    if (!t->known)
        return eng_err_set(err, ENG_E_UNSUPPORTED, "%s: tensor '%s' has dtype %s (supported: F32,"
                           " F16, BF16)", file, name, t->dtype);
    int want_dims = cols ? 2 : 1;
    if (t->n_dims != want_dims || t->shape[0] != rows || (cols && t->shape[1] != cols)) {
        char got[96] = "", want[48];
        size_t n = 0;
        for (int d = 0; d < t->n_dims && n < sizeof got - 24; d++)
            n += (size_t)snprintf(got + n, sizeof got - n, "%s%lld", d ? ", " : "",
                                  (long long)t->shape[d]);
        if (cols) snprintf(want, sizeof want, "%lld, %lld", (long long)rows, (long long)cols);
        else snprintf(want, sizeof want, "%lld", (long long)rows);
        return eng_err_set(err, ENG_E_FORMAT, "%s: tensor '%s' has shape [%s], config implies "
                           "[%s]", file, name, got, want);
    }
    *out = t;
    return 0;
}

static int hf_matrix(hf_ctx *h, const char *name, int64_t rows, int64_t cols, kern_matrix *w,
                     eng_err *err)
{
    const eng_st_tensor *t = NULL;
    const void *data = NULL;
    int rc;
    if ((rc = hf_get(h, name, rows, cols, &t, err)) || (rc = hf_aligned(h, t, &data, err)))
        return rc;
    memset(w, 0, sizeof *w);
    w->dtype = t->kdt;
    w->rows = rows;
    w->cols = cols;
    w->data = data;
    h->dtypes_seen |= 1u << t->kdt;
    return eng__check_finite(h->m, w, h->st->files[t->file], name, err);
}

static int hf_norm(hf_ctx *h, const char *name, int64_t dim, const float **out, eng_err *err)
{
    const eng_st_tensor *t = NULL;
    const void *data = NULL;
    int rc;
    if ((rc = hf_get(h, name, dim, 0, &t, err)) || (rc = hf_aligned(h, t, &data, err)) ||
        (rc = eng__model_f32_copy(h->m, t->kdt, data, dim, out, err)))
        return rc;
    kern_matrix v = { .dtype = KERN_F32, .rows = 1, .cols = dim, .data = *out };
    return eng__check_finite(h->m, &v, h->st->files[t->file], name, err);
}

/* Tensors left unused would change what the checkpoint means, silently: a layer past
 * num_hidden_layers (config.json and the weights disagree) or a bias (a LLaMA has none: Qwen2's
 * q/k/v biases, say, would be dropped). Other names (an old export's rotary_emb.inv_freq) are
 * derived data and are ignored. */
static int hf_check_unused(hf_ctx *h, eng_err *err)
{
    const eng_config *c = &h->m->cfg;
    for (int i = 0; i < h->st->n_tensors; i++) {
        const char *nm = h->st->tensors[i].name;
        const size_t n = strlen(nm);
        int l;
        if (sscanf(nm, "model.layers.%d.", &l) == 1 && (l < 0 || l >= c->n_layers))
            return eng_err_set(err, ENG_E_FORMAT, "%s: tensor '%s' is past config.json's "
                               "num_hidden_layers %d: the config and the weights disagree",
                               h->st->files[h->st->tensors[i].file], nm, c->n_layers);
        if (n > 5 && strcmp(nm + n - 5, ".bias") == 0)
            return eng_err_set(err, ENG_E_FORMAT, "%s: tensor '%s': biases are not supported (a "
                               "LLaMA-family model has none)",
                               h->st->files[h->st->tensors[i].file], nm);
    }
    return 0;
}

static int hf_load_tensors(hf_ctx *h, eng_err *err)
{
    eng_model *m = h->m;
    const eng_config *c = &m->cfg;
    char name[128];
    int rc;

    /* Embedding and head. When tied, whichever of the two exists serves as both (TinyStories-656K
     * ships only lm_head.weight); when untied, both are required. */
    const char *emb_name = "model.embed_tokens.weight", *head_name = "lm_head.weight";
    int has_emb = eng_st_find(h->st, emb_name) != NULL;
    int has_head = eng_st_find(h->st, head_name) != NULL;
    if (c->tie_embeddings || !has_emb || !has_head) {
        if (!c->tie_embeddings && (has_emb || has_head)) {
            /* untied config with only one of them: the other is missing */
            return eng_err_set(err, ENG_E_FORMAT, "%s: missing tensor '%s' "
                               "(tie_word_embeddings is false)", h->st->files[0],
                               has_emb ? head_name : emb_name);
        }
        if ((rc = hf_matrix(h, has_emb || !has_head ? emb_name : head_name, c->vocab_size, c->dim,
                            &m->w.tok_embed, err)))
            return rc;
        m->w.output = m->w.tok_embed;
    } else {
        if ((rc = hf_matrix(h, emb_name, c->vocab_size, c->dim, &m->w.tok_embed, err)) ||
            (rc = hf_matrix(h, head_name, c->vocab_size, c->dim, &m->w.output, err)))
            return rc;
    }

    eng_layer_weights *layers = calloc((size_t)c->n_layers, sizeof *layers);
    if (!layers) return eng_err_set(err, ENG_E_NOMEM, "%s: out of memory", m->path);
    m->w.layers = layers;   /* owned by m: eng_model_close frees it */

    const int64_t d = c->dim, hid = c->hidden_dim;
    const int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    static const char *lin_fmt[ENG_LIN_COUNT] = {
        "model.layers.%d.self_attn.q_proj.weight", "model.layers.%d.self_attn.k_proj.weight",
        "model.layers.%d.self_attn.v_proj.weight", "model.layers.%d.self_attn.o_proj.weight",
        "model.layers.%d.mlp.gate_proj.weight", "model.layers.%d.mlp.up_proj.weight",
        "model.layers.%d.mlp.down_proj.weight",
    };
    const int64_t rows[ENG_LIN_COUNT] = { qd, kvd, kvd, d, hid, hid, d };
    const int64_t cols[ENG_LIN_COUNT] = { d, d, d, qd, d, d, hid };
    for (int l = 0; l < c->n_layers; l++) {
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        if ((rc = hf_norm(h, name, d, &layers[l].attn_norm, err))) return rc;
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        if ((rc = hf_norm(h, name, d, &layers[l].ffn_norm, err))) return rc;
        for (int k = 0; k < ENG_LIN_COUNT; k++) {
            snprintf(name, sizeof name, lin_fmt[k], l);
            if ((rc = hf_matrix(h, name, rows[k], cols[k], &layers[l].lin[k], err))) return rc;
        }
    }
    if ((rc = hf_norm(h, "model.norm.weight", d, &m->w.final_norm, err))) return rc;
    return hf_check_unused(h, err);
}

/* ---- entry point -------------------------------------------------------------------------- */

static int hf_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int eng__load_hf(eng_model *m, const char *dir, eng_err *err)
{
    char path[ENG_PATH_MAX];
    char *text = NULL;
    size_t len = 0;
    eng_st_set st = { 0 };
    int rc;

    if (!m->path[0]) snprintf(m->path, sizeof m->path, "%s", dir);
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
        return eng_err_set(err, ENG_E_INVAL, "%s: path too long", dir);
    if ((rc = eng_st_read_text(path, HF_MAX_CONFIG, &text, &len, err))) return rc;
    rc = hf_parse_config(&m->cfg, path, text, len, err);
    free(text);
    text = NULL;
    if (rc) return rc;
    /* generation_config.json (optional): the end-of-turn ids HF's generate() stops on */
    if (snprintf(path, sizeof path, "%s/generation_config.json", dir) < (int)sizeof path &&
        hf_exists(path)) {
        if ((rc = eng_st_read_text(path, HF_MAX_CONFIG, &text, &len, err))) return rc;
        cJSON *g = cJSON_ParseWithLength(text, len);
        free(text);
        text = NULL;
        if (!cJSON_IsObject(g)) {
            cJSON_Delete(g);
            return eng_err_set(err, ENG_E_FORMAT, "%s: not a JSON object", path);
        }
        rc = hf_eos_ids(g, path, "eos_token_id", &m->cfg, err);
        cJSON_Delete(g);
        if (rc) return rc;
        for (int i = 0; i < m->cfg.n_eos; i++)   /* named here, not as config.json's fault */
            if (m->cfg.eos_ids[i] >= m->cfg.vocab_size)
                return eng_err_set(err, ENG_E_FORMAT, "%s: eos_token_id %d is outside the "
                                   "vocabulary of %d", path, m->cfg.eos_ids[i],
                                   m->cfg.vocab_size);
    }
    snprintf(path, sizeof path, "%s/config.json", dir);
    if ((rc = eng_config_validate(&m->cfg, path, err))) return rc;

    if ((rc = eng_st_open_dir(&st, m, dir, err))) goto out;
    hf_ctx h = { .m = m, .st = &st, .dir = dir, .dtypes_seen = 0 };
    if ((rc = hf_load_tensors(&h, err))) goto out;

    static const char *dt_desc[3] = { "fp32", "fp16", "bf16" };
    size_t n = 0;
    for (int k = 0; k < 3; k++) {
        if (!(h.dtypes_seen & (1u << k))) continue;
        n += (size_t)snprintf(m->quant_desc + n, sizeof m->quant_desc - n, "%s%s", n ? "+" : "",
                              dt_desc[k]);
    }

    /* Tokenizer beside the model: tokenizer.json preferred, else SentencePiece. */
    m->tokenizer_path[0] = '\0';
    static const char *tok_names[2] = { "tokenizer.json", "tokenizer.model" };
    for (int k = 0; k < 2 && !m->tokenizer_path[0]; k++) {
        if (snprintf(path, sizeof path, "%s/%s", dir, tok_names[k]) < (int)sizeof path &&
            hf_exists(path))
            snprintf(m->tokenizer_path, sizeof m->tokenizer_path, "%s", path);
    }
    if (snprintf(path, sizeof path, "%s/tokenizer_config.json", dir) < (int)sizeof path &&
        hf_exists(path)) {
        if ((rc = eng_st_read_text(path, HF_MAX_TOKENIZER_CONFIG, &text, &len, err))) goto out;
        if ((rc = eng__model_own(m, text))) {
            rc = eng_err_set(err, rc, "%s: out of memory", path);
            goto out;
        }
        m->tokenizer_config_json = text;
    }
    m->format = ENG_FMT_HF;
    rc = 0;
out:
    eng_st_free(&st);
    return rc;
}
