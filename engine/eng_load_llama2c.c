/* eng_load_llama2c.c — loads karpathy llama2.c checkpoints: the legacy v0 .bin (7 int32 header,
 * sign of vocab_size flags an unshared classifier) and the fp32 "ak42" version 1 export. All
 * views point into the mapping; only norm vectors are copied (to owned fp32). Does not read the
 * tokenizer (tokenizer.bin is separate) and does not load the Q8_0 version 2. Any thread. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eng_model.h"

#define L2C_MAGIC 0x616b3432u        /* "ak42" as a little-endian uint32 */
#define L2C_V1_HEADER 256            /* bytes of the version 1 header */
#define L2C_MAX_DIM (1 << 20)        /* caps that keep every 64-bit size product far from */
#define L2C_MAX_HIDDEN (1 << 22)     /* overflow, and reject garbage headers early */
#define L2C_MAX_LAYERS 4096
#define L2C_MAX_VOCAB (1 << 24)
#define L2C_MAX_SEQ (1 << 24)

/* Walks a cursor through the mapped weights; every take is bounds-checked. */
typedef struct l2c_cursor {
    const uint8_t *base;     /* view into mmap */
    uint64_t size, pos;      /* bytes */
    const char *path;        /* borrowed, for messages */
    const eng_model *m;      /* borrowed: the model being loaded */
} l2c_cursor;

static int l2c_take(l2c_cursor *c, uint64_t n_floats, const char *what, const float **out,
                    eng_err *err)
{
    uint64_t bytes = n_floats * 4;   /* n_floats is bounded by the header caps */
    if (bytes > c->size - c->pos)
        return eng_err_set(err, ENG_E_FORMAT, "%s: %s: truncated at byte %llu (needs %llu more, "
                           "file has %llu)", c->path, what, (unsigned long long)c->pos,
                           (unsigned long long)bytes, (unsigned long long)(c->size - c->pos));
    *out = (const float *)(const void *)(c->base + c->pos);
    c->pos += bytes;
    return 0;
}

static int l2c_matrix(l2c_cursor *c, kern_matrix *w, int64_t rows, int64_t cols,
                      const char *what, eng_err *err)
{
    const float *p = NULL;
    int rc = l2c_take(c, (uint64_t)rows * (uint64_t)cols, what, &p, err);
    if (rc) return rc;
    memset(w, 0, sizeof *w);
    w->dtype = KERN_F32;
    w->rows = rows;
    w->cols = cols;
    w->data = p;
    return eng__check_finite(c->m, w, c->path, what, err);
}

static int l2c_norm(eng_model *m, l2c_cursor *c, int dim, const char *what, const float **out,
                    eng_err *err)
{
    const float *p = NULL;
    int rc = l2c_take(c, (uint64_t)dim, what, &p, err);
    if (rc) return rc;
    if ((rc = eng__model_f32_copy(m, KERN_F32, p, dim, out, err)) != 0) return rc;
    kern_matrix v = { .dtype = KERN_F32, .rows = 1, .cols = dim, .data = *out };
    return eng__check_finite(m, &v, c->path, what, err);
}

static int32_t l2c_i32(const uint8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);   /* files are little-endian; so is every host we build for */
    return v;
}

/* Checks the header values before any size arithmetic uses them. */
static int l2c_check_header(const char *path, const int32_t h[7], eng_err *err)
{
    static const char *names[7] = { "dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads",
                                    "vocab_size", "seq_len" };
    static const int64_t caps[7] = { L2C_MAX_DIM, L2C_MAX_HIDDEN, L2C_MAX_LAYERS, L2C_MAX_DIM,
                                     L2C_MAX_DIM, L2C_MAX_VOCAB, L2C_MAX_SEQ };
    for (int i = 0; i < 7; i++) {
        int64_t v = h[i];
        if (i == 5 && v < 0) v = -v;   /* negative vocab_size: unshared classifier */
        if (v <= 0 || v > caps[i])
            return eng_err_set(err, ENG_E_FORMAT, "%s: header %s = %d is out of range (1..%lld)"
                               " - not a llama2.c checkpoint?", path, names[i], h[i],
                               (long long)caps[i]);
    }
    if (h[0] % h[3] != 0)
        return eng_err_set(err, ENG_E_FORMAT, "%s: header n_heads = %d does not divide dim = %d",
                           path, h[3], h[0]);
    if (h[3] % h[4] != 0)
        return eng_err_set(err, ENG_E_FORMAT, "%s: header n_kv_heads = %d does not divide "
                           "n_heads = %d", path, h[4], h[3]);
    if ((h[0] / h[3]) % 2 != 0)
        return eng_err_set(err, ENG_E_FORMAT, "%s: head_dim = %d is odd (RoPE needs pairs)",
                           path, h[0] / h[3]);
    return 0;
}

int eng__load_llama2c(eng_model *m, const char *path, eng_err *err)
{
    const void *addr = NULL;
    size_t size = 0;
    if (!m->path[0]) snprintf(m->path, sizeof m->path, "%s", path);
    size_t plen = strlen(path);
    if ((plen >= 12 && strcmp(path + plen - 12, ".safetensors") == 0) ||
        (plen >= 5 && strcmp(path + plen - 5, ".json") == 0))
        return eng_err_set(err, ENG_E_INVAL, "%s: part of a Hugging Face model; open the directory"
                           " that holds config.json instead", path);
    int rc = eng__model_map(m, path, &addr, &size, err);
    if (rc) return rc;
    const uint8_t *p = addr;

    int version = 0, shared = 0;
    uint64_t hdr_bytes = 0;
    int32_t h[7];
    if (size >= 8 && (uint32_t)l2c_i32(p) == L2C_MAGIC) {
        version = l2c_i32(p + 4);
        if (version == 2)
            return eng_err_set(err, ENG_E_UNSUPPORTED, "%s: llama2.c version 2 (Q8_0) checkpoints"
                               " are not supported; export with --version 0 or 1", path);
        if (version != 1)
            return eng_err_set(err, ENG_E_FORMAT, "%s: unknown llama2.c export version %d", path,
                               version);
        if (size < L2C_V1_HEADER)
            return eng_err_set(err, ENG_E_FORMAT, "%s: truncated: %zu bytes is shorter than the "
                               "%d-byte version 1 header", path, size, L2C_V1_HEADER);
        for (int i = 0; i < 7; i++) h[i] = l2c_i32(p + 8 + 4 * i);
        if (h[5] < 0)
            return eng_err_set(err, ENG_E_FORMAT, "%s: negative vocab_size in a version 1 header",
                               path);
        shared = p[36] != 0;
        hdr_bytes = L2C_V1_HEADER;
    } else {
        if (size < 28)
            return eng_err_set(err, ENG_E_FORMAT, "%s: truncated: %zu bytes is shorter than the "
                               "28-byte llama2.c header", path, size);
        for (int i = 0; i < 7; i++) h[i] = l2c_i32(p + 4 * i);
        shared = h[5] > 0;
        hdr_bytes = 28;
    }
    if ((rc = l2c_check_header(path, h, err)) != 0) return rc;

    eng_config *c = &m->cfg;
    memset(c, 0, sizeof *c);
    snprintf(c->arch, sizeof c->arch, "llama");
    c->dim = h[0];
    c->hidden_dim = h[1];
    c->n_layers = h[2];
    c->n_heads = h[3];
    c->n_kv_heads = h[4];
    c->head_dim = h[0] / h[3];
    c->vocab_size = h[5] < 0 ? -h[5] : h[5];
    c->seq_len = h[6];
    c->rope_theta = 10000.0f;
    c->norm_eps = 1e-5f;
    c->rope_style = KERN_ROPE_INTERLEAVED;
    c->tie_embeddings = shared;
    c->bos_id = 1;
    c->eos_id = 2;
    c->eos_ids[0] = 2;
    c->n_eos = 1;

    /* Exact size the header implies, in 64 bits (each term is bounded by the caps above). */
    const uint64_t L = (uint64_t)c->n_layers, D = (uint64_t)c->dim, H = (uint64_t)c->hidden_dim;
    const uint64_t V = (uint64_t)c->vocab_size, hd = (uint64_t)c->head_dim;
    const uint64_t qd = (uint64_t)c->n_heads * hd, kvd = (uint64_t)c->n_kv_heads * hd;
    uint64_t floats = V * D + 2 * L * D + D                   /* embedding, norms */
                    + L * D * qd * 2 + L * D * kvd * 2        /* wq, wo, wk, wv */
                    + L * D * H * 3                           /* w1, w2, w3 */
                    + (shared ? 0 : V * D);
    if (version == 0) floats += (uint64_t)c->seq_len * hd;     /* freq_cis real + imag */
    uint64_t want = hdr_bytes + floats * 4;
    if ((uint64_t)size != want)
        return eng_err_set(err, ENG_E_FORMAT, "%s: file is %zu bytes but its header (dim %d, "
                           "hidden %d, layers %d, heads %d/%d, vocab %d, seq %d, v%d) implies %llu",
                           path, size, h[0], h[1], h[2], h[3], h[4], h[5], h[6], version,
                           (unsigned long long)want);

    if ((rc = eng_config_validate(c, path, err)) != 0) return rc;

    eng_layer_weights *layers = calloc((size_t)c->n_layers, sizeof *layers);
    if (!layers) return eng_err_set(err, ENG_E_NOMEM, "%s: out of memory", path);
    m->w.layers = layers;   /* owned by m: eng_model_close frees it */

    l2c_cursor cur = { .base = p, .size = size, .pos = hdr_bytes, .path = path,
                       .m = m };
    char what[64];
    const int nl = c->n_layers;
    const int64_t d = c->dim, hid = c->hidden_dim;
    /* (rows, cols) of each linear in llama2.c order wq wk wv wo, then w1 w2 w3. */
    const eng_linear order[7] = { ENG_LIN_Q, ENG_LIN_K, ENG_LIN_V, ENG_LIN_O,
                                  ENG_LIN_GATE, ENG_LIN_DOWN, ENG_LIN_UP };
    const char *l2c_names[7] = { "wq", "wk", "wv", "wo", "w1", "w2", "w3" };
    const int64_t rows[7] = { (int64_t)qd, (int64_t)kvd, (int64_t)kvd, d, hid, d, hid };
    const int64_t cols[7] = { d, d, d, (int64_t)qd, d, hid, d };

    if (version == 1) {
        for (int l = 0; l < nl; l++) {
            snprintf(what, sizeof what, "layer %d rms_att", l);
            if ((rc = l2c_norm(m, &cur, c->dim, what, &layers[l].attn_norm, err))) return rc;
        }
        for (int l = 0; l < nl; l++) {
            snprintf(what, sizeof what, "layer %d rms_ffn", l);
            if ((rc = l2c_norm(m, &cur, c->dim, what, &layers[l].ffn_norm, err))) return rc;
        }
        if ((rc = l2c_norm(m, &cur, c->dim, "rms_final", &m->w.final_norm, err))) return rc;
        if ((rc = l2c_matrix(&cur, &m->w.tok_embed, c->vocab_size, d, "token_embedding", err)))
            return rc;
    } else {
        if ((rc = l2c_matrix(&cur, &m->w.tok_embed, c->vocab_size, d, "token_embedding", err)))
            return rc;
        for (int l = 0; l < nl; l++) {
            snprintf(what, sizeof what, "layer %d rms_att", l);
            if ((rc = l2c_norm(m, &cur, c->dim, what, &layers[l].attn_norm, err))) return rc;
        }
    }
    for (int k = 0; k < 7; k++) {
        /* v0 puts rms_ffn between wo and w1. */
        if (version == 0 && k == 4) {
            for (int l = 0; l < nl; l++) {
                snprintf(what, sizeof what, "layer %d rms_ffn", l);
                if ((rc = l2c_norm(m, &cur, c->dim, what, &layers[l].ffn_norm, err))) return rc;
            }
        }
        for (int l = 0; l < nl; l++) {
            snprintf(what, sizeof what, "layer %d %s", l, l2c_names[k]);
            if ((rc = l2c_matrix(&cur, &layers[l].lin[order[k]], rows[k], cols[k], what, err)))
                return rc;
        }
    }
    if (version == 0) {
        if ((rc = l2c_norm(m, &cur, c->dim, "rms_final", &m->w.final_norm, err))) return rc;
        const float *skip = NULL;   /* freq_cis_real/imag: RoPE comes from rope_theta */
        if ((rc = l2c_take(&cur, (uint64_t)c->seq_len * hd / 2, "freq_cis_real", &skip, err)))
            return rc;
        if ((rc = l2c_take(&cur, (uint64_t)c->seq_len * hd / 2, "freq_cis_imag", &skip, err)))
            return rc;
    }
    if (shared) {
        m->w.output = m->w.tok_embed;
    } else if ((rc = l2c_matrix(&cur, &m->w.output, c->vocab_size, d, "wcls", err))) {
        return rc;
    }
    if (cur.pos != cur.size)   /* cannot happen after the exact size check; kept as a guard */
        return eng_err_set(err, ENG_E_FORMAT, "%s: %llu trailing bytes", path,
                           (unsigned long long)(cur.size - cur.pos));

    m->format = ENG_FMT_LLAMA2C;
    snprintf(m->quant_desc, sizeof m->quant_desc, "fp32");
    return 0;
}
