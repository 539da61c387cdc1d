/* eng_claq_file.c — the packed CLAQ model file (docs/format.md): eng_claq_write (64-byte fixed
 * header, JSON directory, 64-byte-aligned sections) and eng__load_claq, which trusts nothing:
 * every offset, length, count and index is checked against the file and the config before use,
 * and errors name the file and the tensor. The loader copies the file into a huge-page-backed
 * anonymous buffer (MADV_HUGEPAGE; CLAQ_MMAP=1 maps it instead) because the LUT GEMV streams
 * codes at DRAM speed and 4 KiB pages cost ~45 % of the bandwidth here (architecture.md).
 * Does not pack (eng_claq_pack.c) or compute. One thread per call; no globals. */
#include "eng_claq_file.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eng_file.h"
#include "eng_json.h"
#include "eng_qrow.h"
#include "kern_half.h"

#define HDR_BYTES 64
#define MAX_JSON (64u << 20)          /* directory JSON we accept before allocating */
#define MAX_TOKENIZER (256u << 20)    /* embedded tokenizer bytes */
#define HUGE_PAGE (2u << 20)

static uint64_t al64(uint64_t n) { return (n + 63) & ~(uint64_t)63; }

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static const char *dtype_str(kern_dtype t)
{
    return t == KERN_F32 ? "f32" : t == KERN_F16 ? "f16" : t == KERN_BF16 ? "bf16"
           : t == KERN_Q8_ROW ? "q8_row" : "?";
}
static int dtype_parse(const char *s, kern_dtype *t)
{
    if (!strcmp(s, "f32")) *t = KERN_F32;
    else if (!strcmp(s, "f16")) *t = KERN_F16;
    else if (!strcmp(s, "bf16")) *t = KERN_BF16;
    else if (!strcmp(s, "q8_row")) *t = KERN_Q8_ROW;
    else return -1;
    return 0;
}

/* Expected shape of linear l of a layer: [rows][cols]. */
static void lin_shape(const eng_config *c, int l, int64_t *rows, int64_t *cols)
{
    int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    switch (l) {
    case ENG_LIN_Q: *rows = q; *cols = c->dim; break;
    case ENG_LIN_K: case ENG_LIN_V: *rows = kv; *cols = c->dim; break;
    case ENG_LIN_O: *rows = c->dim; *cols = q; break;
    case ENG_LIN_GATE: case ENG_LIN_UP: *rows = c->hidden_dim; *cols = c->dim; break;
    default: *rows = c->dim; *cols = c->hidden_dim; break;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* writer                                                                                      */

typedef struct wsec {           /* one planned data section */
    uint64_t off, len;
} wsec;

static int read_small_file(const char *path, size_t max, unsigned char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    FILE *f = eng_file_fopen(path, NULL);
    if (!f) return -1;
    unsigned char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            if (cap > max + 1) cap = max + 1;
            unsigned char *p = realloc(buf, cap);
            if (!p) { free(buf); fclose(f); return -1; }
            buf = p;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
        if (n > max) { free(buf); fclose(f); return -1; }
    }
    fclose(f);
    *out = buf;
    *len = n;
    return 0;
}

static int write_all(FILE *f, const void *p, uint64_t n)
{
    return n == 0 || fwrite(p, 1, (size_t)n, f) == n ? 0 : -1;
}

static int write_pad_to(FILE *f, uint64_t *pos, uint64_t target)
{
    static const unsigned char zeros[64];
    while (*pos < target) {
        uint64_t k = target - *pos < 64 ? target - *pos : 64;
        if (write_all(f, zeros, k)) return -1;
        *pos += k;
    }
    return 0;
}

static cJSON *sec_json(uint64_t off, uint64_t len)
{
    cJSON *a = cJSON_CreateArray();
    cJSON_AddItemToArray(a, cJSON_CreateNumber((double)off));
    cJSON_AddItemToArray(a, cJSON_CreateNumber((double)len));
    return a;
}

static cJSON *dense_json(const char *name, const char *dtype, int64_t d0, int64_t d1,
                        uint64_t off, uint64_t len)
{
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "name", name);
    cJSON_AddStringToObject(t, "dtype", dtype);
    cJSON *sh = cJSON_AddArrayToObject(t, "shape");
    cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)d0));
    if (d1 > 0) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)d1));
    cJSON_AddItemToObject(t, "data", sec_json(off, len));
    return t;
}

/* The directory entry of a packed matrix whose sections start at *pos (advanced past them). */
/* cb_form < 0: version 1's sections; else version 2's with that codebook form. */
static cJSON *claq_json(const char *name, const kern_claq *k, int cb_form, uint64_t *pos)
{
    size_t len[ENG_CLAQ_NSEC];
    const char *const *names = cb_form < 0 ? eng_claq_sec_names : eng_claq_v2_sec_names;
    if (cb_form < 0) eng_claq_sec_lengths(k, len);
    else eng_claq_v2_lengths(k, cb_form, len);
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "name", name);
    cJSON_AddStringToObject(t, "dtype", "claq");
    cJSON_AddNumberToObject(t, "rows", (double)k->rows);
    cJSON_AddNumberToObject(t, "cols", (double)k->cols);
    cJSON_AddNumberToObject(t, "cols4", (double)k->ncols_bits[4]);
    cJSON_AddNumberToObject(t, "cols3", (double)k->ncols_bits[3]);
    cJSON_AddNumberToObject(t, "cols2", (double)k->ncols_bits[2]);
    cJSON_AddNumberToObject(t, "nnz", (double)k->nnz);
    if (cb_form >= 0)
        cJSON_AddStringToObject(t, "cb_form", cb_form == ENG_CLAQ_CB_GRID8 ? "grid8" : "f16");
    cJSON *sj = cJSON_AddObjectToObject(t, "sections");
    for (int s = 0; s < ENG_CLAQ_NSEC; s++) {
        cJSON_AddItemToObject(sj, names[s], sec_json(*pos, len[s]));
        *pos = al64(*pos + len[s]);
    }
    return t;
}

/* The codebook form a matrix is written in: -1 in version 1 (one form only). */
static int matrix_cb_form(uint32_t ver, const eng_qmatrix *q)
{
    if (ver == 1) return -1;
    return q->grid ? ENG_CLAQ_CB_GRID8 : ENG_CLAQ_CB_F16;
}

/* Checks every packed matrix (and the head, when packed) against the config and fills the
 * kernels' shapes: section sizes, without packing yet. */
static int plan_shapes(const char *path, const eng_config *c, eng_qmatrix *const *q,
                       const eng_qmatrix *hq, kern_claq *shapes, kern_claq *head_shape,
                       eng_err *err)
{
    int rc;
    for (int l = 0; l < c->n_layers; l++)
        for (int i = 0; i < ENG_LIN_COUNT; i++) {
            const eng_qmatrix *m = q[(int64_t)l * ENG_LIN_COUNT + i];
            int64_t rows, cols;
            lin_shape(c, i, &rows, &cols);
            if (!m || m->rows != rows || m->cols != cols)
                return eng_err_set(err, ENG_E_INVAL,
                                   "%s: layers.%d.%s: quantized shape %lld x %lld, config wants "
                                   "%lld x %lld", path, l, eng_linear_name(i),
                                   m ? (long long)m->rows : -1LL, m ? (long long)m->cols : -1LL,
                                   (long long)rows, (long long)cols);
            kern_claq *k = &shapes[(int64_t)l * ENG_LIN_COUNT + i];
            k->rows = rows;
            k->cols = cols;
            k->nnz = m->n_outliers;
            for (int64_t j = 0; j < cols; j++)
                if (m->bits[j] >= 2 && m->bits[j] <= 4) k->ncols_bits[m->bits[j]]++;
            char nm[64];
            snprintf(nm, sizeof nm, "layers.%d.%s", l, eng_linear_name(i));
            if ((rc = eng_claq_shape_fill(k, path, nm, err))) return rc;
        }
    if (!hq) return 0;
    if (hq->rows != c->vocab_size || hq->cols != c->dim)
        return eng_err_set(err, ENG_E_INVAL, "%s: output: quantized shape %lld x %lld, config "
                           "wants %d x %d", path, (long long)hq->rows, (long long)hq->cols,
                           c->vocab_size, c->dim);
    head_shape->rows = hq->rows;
    head_shape->cols = hq->cols;
    head_shape->nnz = hq->n_outliers;
    for (int64_t j = 0; j < hq->cols; j++)
        if (hq->bits[j] >= 2 && hq->bits[j] <= 4) head_shape->ncols_bits[hq->bits[j]]++;
    return eng_claq_shape_fill(head_shape, path, "output", err);
}

/* The directory's "config" object. */
static void config_json(cJSON *root, const eng_config *c, int tie)
{
    cJSON *cj = cJSON_AddObjectToObject(root, "config");
    cJSON_AddStringToObject(cj, "arch", c->arch);
    cJSON_AddNumberToObject(cj, "dim", c->dim);
    cJSON_AddNumberToObject(cj, "hidden_dim", c->hidden_dim);
    cJSON_AddNumberToObject(cj, "n_layers", c->n_layers);
    cJSON_AddNumberToObject(cj, "n_heads", c->n_heads);
    cJSON_AddNumberToObject(cj, "n_kv_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(cj, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(cj, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(cj, "seq_len", c->seq_len);
    cJSON_AddNumberToObject(cj, "rope_theta", c->rope_theta);
    cJSON_AddNumberToObject(cj, "norm_eps", c->norm_eps);
    cJSON_AddStringToObject(cj, "rope_style",
                            c->rope_style == KERN_ROPE_HALF ? "half" : "interleaved");
    if (c->rope_scaling.type != ENG_ROPE_DEFAULT) {   /* absent means default */
        cJSON *rsj = cJSON_AddObjectToObject(cj, "rope_scaling");
        cJSON_AddStringToObject(rsj, "type", eng_rope_type_name(c->rope_scaling.type));
        cJSON_AddNumberToObject(rsj, "factor", c->rope_scaling.factor);
        cJSON_AddNumberToObject(rsj, "low_freq_factor", c->rope_scaling.low_freq_factor);
        cJSON_AddNumberToObject(rsj, "high_freq_factor", c->rope_scaling.high_freq_factor);
        cJSON_AddNumberToObject(rsj, "orig_max_pos", c->rope_scaling.orig_max_pos);
    }
    cJSON_AddBoolToObject(cj, "tie_embeddings", tie);
    cJSON_AddNumberToObject(cj, "bos_id", c->bos_id);
    cJSON_AddNumberToObject(cj, "eos_id", c->eos_id);
    if (c->n_eos > 1) {   /* optional (format.md): every id that ends generation */
        cJSON *ej = cJSON_AddArrayToObject(cj, "eos_ids");
        for (int i = 0; ej && i < c->n_eos; i++)
            cJSON_AddItemToArray(ej, cJSON_CreateNumber(c->eos_ids[i]));
    }
}

/* The directory's "quant" object (how the file was made); mt's strings are terminated here. */
static void quant_json(cJSON *root, eng_claq_meta *mt)
{
    mt->method[sizeof mt->method - 1] = 0;
    mt->calib[sizeof mt->calib - 1] = 0;
    mt->source[sizeof mt->source - 1] = 0;
    cJSON *qj = cJSON_AddObjectToObject(root, "quant");
    cJSON_AddStringToObject(qj, "method", mt->method);
    cJSON_AddNumberToObject(qj, "bits", mt->bits);
    cJSON_AddBoolToObject(qj, "outliers", mt->outliers != 0);
    cJSON_AddNumberToObject(qj, "or_budget", mt->or_budget);
    cJSON_AddBoolToObject(qj, "or_compat_index", mt->or_compat_index != 0);
    cJSON_AddNumberToObject(qj, "nsamples", mt->nsamples);
    cJSON_AddNumberToObject(qj, "seqlen", mt->seqlen);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)mt->seed);
    cJSON_AddStringToObject(qj, "seed", seed);
    cJSON_AddStringToObject(qj, "calib", mt->calib);
    cJSON_AddStringToObject(qj, "source", mt->source);
    /* the other settings a run depends on (absent in files written before 2026-12-07) */
    mt->kmeans_init[sizeof mt->kmeans_init - 1] = 0;
    mt->inverse[sizeof mt->inverse - 1] = 0;
    if (mt->target_bpw > 0) cJSON_AddNumberToObject(qj, "target_bpw", mt->target_bpw);
    if (mt->head_bits > 0) cJSON_AddNumberToObject(qj, "head_bits", mt->head_bits);
    if (mt->cb_bits > 0) cJSON_AddNumberToObject(qj, "cb_bits", mt->cb_bits);
    if (mt->kmeans_init[0]) cJSON_AddStringToObject(qj, "kmeans_init", mt->kmeans_init);
    if (mt->inverse[0]) cJSON_AddStringToObject(qj, "inverse", mt->inverse);
    /* no wall-clock time: the same command and seed write the same bytes (files written
     * before 2026-12-07 carry "quant_seconds", which the loader still reads) */
}

/* Writes the data area in directory order, each section padded to 64 bytes. io sticks at 1
 * after the first failed write; dpos is the offset reached inside the data area. */
typedef struct data_writer {
    FILE *f;
    uint64_t data_off, dpos, fpos;
    int io;
    eng_claq_packed *pk;    /* scratch for one packed matrix */
    eng_claq_v2 *v2;        /* scratch for its version 2 forms */
    uint32_t ver;
} data_writer;

/* Header, directory JSON, padding to the data area. */
static void write_header(data_writer *w, uint32_t ver, const char *json, uint64_t json_len,
                         uint64_t data_len)
{
    unsigned char hdr[HDR_BYTES] = {0};
    memcpy(hdr, ENG_CLAQ_MAGIC, 8);
    put_u32(hdr + 8, ver);
    put_u32(hdr + 12, HDR_BYTES);
    put_u64(hdr + 16, HDR_BYTES);
    put_u64(hdr + 24, json_len);
    put_u64(hdr + 32, w->data_off);
    put_u64(hdr + 40, data_len);
    put_u64(hdr + 48, w->data_off + data_len);
    w->io = write_all(w->f, hdr, HDR_BYTES) || write_all(w->f, json, json_len);
    w->fpos = HDR_BYTES + json_len;
    w->io = w->io || write_pad_to(w->f, &w->fpos, w->data_off);
}

static void emit(data_writer *w, const void *p, uint64_t n)
{
    w->io = w->io || write_all(w->f, p, n);
    w->dpos += n;
    w->fpos = w->data_off + w->dpos;
    w->io = w->io || write_pad_to(w->f, &w->fpos, w->data_off + al64(w->dpos));
    w->dpos = al64(w->dpos);
}

/* One packed matrix: the kernels' layout (version 1) or its version 2 forms. */
static int emit_matrix(data_writer *w, const eng_qmatrix *qm, const char *nm, eng_err *err)
{
    int rc = eng_claq_pack(qm, nm, w->pk, err);
    if (rc) return rc;
    if (w->ver == 1) {
        for (int s = 0; s < ENG_CLAQ_NSEC; s++)
            emit(w, (const char *)w->pk->buf + w->pk->sec_off[s], w->pk->sec_len[s]);
    } else {
        if ((rc = eng_claq_v2_encode(w->pk, qm, nm, w->v2, err))) return rc;
        for (int s = 0; s < ENG_CLAQ_NSEC; s++) emit(w, w->v2->sec[s], w->v2->len[s]);
        eng_claq_v2_free(w->v2);
    }
    eng_claq_packed_free(w->pk);
    eng_qmatrix_evict_codes(qm);   /* spilled codes: not resident once written */
    return 0;
}

/* The tokenizer to embed: the file beside the source model (read into *owned), else the one
 * the source embeds; none when it has neither. */
static int pick_tokenizer(const char *path, const eng_model *src, unsigned char **owned,
                          const unsigned char **bytes, size_t *len, const char **name,
                          eng_err *err)
{
    if (src->tokenizer_path[0]) {
        if (read_small_file(src->tokenizer_path, MAX_TOKENIZER, owned, len))
            return eng_err_set(err, ENG_E_IO, "%s: cannot read tokenizer %s", path,
                               src->tokenizer_path);
        *bytes = *owned;
        const char *slash = strrchr(src->tokenizer_path, '/');
        *name = slash ? slash + 1 : src->tokenizer_path;
    } else if (src->tokenizer_blob) {
        *bytes = src->tokenizer_blob;
        *len = src->tokenizer_blob_len;
        *name = src->tokenizer_blob_name;
    }
    if (*name && strlen(*name) >= 64) *name = "tokenizer.bin";
    return 0;
}

/* Directory entries of the final norm and every layer (norms, packed matrices), from *pos. */
static void dir_layers(cJSON *tj, const eng_config *c, const kern_claq *shapes,
                       eng_qmatrix *const *q, uint32_t ver, uint64_t *pos)
{
    const uint64_t norm_len = (uint64_t)c->dim * 4;
    cJSON_AddItemToArray(tj, dense_json("final_norm", "f32", c->dim, 0, *pos, norm_len));
    *pos = al64(*pos + norm_len);
    for (int l = 0; l < c->n_layers; l++) {
        char nm[64];
        snprintf(nm, sizeof nm, "layers.%d.attn_norm", l);
        cJSON_AddItemToArray(tj, dense_json(nm, "f32", c->dim, 0, *pos, norm_len));
        *pos = al64(*pos + norm_len);
        snprintf(nm, sizeof nm, "layers.%d.ffn_norm", l);
        cJSON_AddItemToArray(tj, dense_json(nm, "f32", c->dim, 0, *pos, norm_len));
        *pos = al64(*pos + norm_len);
        for (int i = 0; i < ENG_LIN_COUNT; i++) {
            snprintf(nm, sizeof nm, "layers.%d.%s", l, eng_linear_name(i));
            const int64_t mi = (int64_t)l * ENG_LIN_COUNT + i;
            cJSON_AddItemToArray(tj, claq_json(nm, &shapes[mi], matrix_cb_form(ver, q[mi]), pos));
        }
    }
}

/* Sections of the embedded tokenizer (named tok_name; none when NULL) and its config. */
static void dir_tokenizer(cJSON *root, const char *tok_name, size_t tok_len, size_t tcfg_len,
                          uint64_t *pos)
{
    if (tok_name) {
        cJSON *t = cJSON_AddObjectToObject(root, "tokenizer");
        cJSON_AddStringToObject(t, "name", tok_name);
        cJSON_AddItemToObject(t, "data", sec_json(*pos, tok_len));
        *pos = al64(*pos + tok_len);
    }
    if (tcfg_len) {
        cJSON *t = cJSON_AddObjectToObject(root, "tokenizer_config");
        cJSON_AddItemToObject(t, "data", sec_json(*pos, tcfg_len));
        *pos = al64(*pos + tcfg_len);
    }
}

/* The source's dense matrices that are copied as they are: the token embedding always (it is
 * packed from dense weights too), the output head when untied and not packed (hq NULL). */
static int check_source(const char *path, const eng_model *src, const eng_qmatrix *hq,
                        eng_err *err)
{
    const eng_config *c = &src->cfg;
    const kern_matrix *emb = &src->w.tok_embed, *outm = &src->w.output;
    if (emb->dtype == KERN_CLAQ || emb->dtype == KERN_Q8_ROW || emb->rows != c->vocab_size ||
        emb->cols != c->dim)
        return eng_err_set(err, ENG_E_INVAL, "%s: source token embedding is not a dense %d x %d "
                           "of f32, f16 or bf16", path, c->vocab_size, c->dim);
    if (!hq && !c->tie_embeddings &&
        (outm->dtype == KERN_CLAQ || outm->rows != c->vocab_size || outm->cols != c->dim))
        return eng_err_set(err, ENG_E_INVAL, "%s: source output head is not a dense %d x %d",
                           path, c->vocab_size, c->dim);
    return 0;
}

/* The token embedding as the file stores it: its dtype as is (embed_bits 0), or row-quantized
 * (eng_qrow.h) at 8 bits (q8_row, the in-memory layout) or bit-packed at 7 or 6 (q7_row,
 * q6_row). The buffers are owned by the struct (the caller frees q8 and packed). */
typedef struct emb_form {
    void *q8, *packed;
    const void *data;     /* what is written: the source's data, q8 or packed */
    const char *dtype;    /* the directory's dtype string */
    uint64_t len;         /* bytes of data */
} emb_form;

static int embed_form(const char *path, const kern_matrix *emb, int bits, emb_form *ef,
                      eng_err *err)
{
    *ef = (emb_form){.data = emb->data, .dtype = dtype_str(emb->dtype),
                     .len = kern_dense_bytes(emb->dtype, emb->rows, emb->cols)};
    if (!bits) return 0;
    if (bits < 6 || bits > 8)
        return eng_err_set(err, ENG_E_INVAL, "%s: a row-quantized embedding has 6, 7 or 8 "
                           "bits, not %d", path, bits);
    int rc = eng_qrow_pack(emb, bits, &ef->q8, err);
    if (rc) return rc;
    ef->data = ef->q8;
    ef->dtype = dtype_str(KERN_Q8_ROW);
    ef->len = kern_dense_bytes(KERN_Q8_ROW, emb->rows, emb->cols);
    if (bits == 8) return 0;
    ef->len = eng_qrow_packed_bytes(bits, emb->rows, emb->cols);
    if (!(ef->packed = malloc(ef->len)))
        return eng_err_set(err, ENG_E_NOMEM, "%s: out of memory for the q%d_row embedding",
                           path, bits);
    if (eng_qrow_encode(ef->q8, bits, emb->rows, emb->cols, ef->packed))
        return eng_err_set(err, ENG_E_INVAL, "%s: a %d-bit code out of range", path, bits);
    ef->data = ef->packed;
    ef->dtype = bits == 6 ? "q6_row" : "q7_row";
    return 0;
}

int eng_claq_out_ok(const char *path, eng_err *err)
{
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return eng_err_set(err, ENG_E_INVAL, "%s exists and is not a regular file: the packed "
                           "file is written beside it and renamed over it, so it is not "
                           "replaced", path);
    return 0;
}

int eng_claq_write(const char *path, const eng_model *src, eng_qmatrix *const *q,
                   const eng_claq_meta *meta, eng_err *err)
{
    const eng_config *c = &src->cfg;
    int rc = eng_claq_out_ok(path, err);
    if (rc) return rc;
    rc = eng_config_validate(c, src->path, err);
    if (rc) return rc;
    int L = c->n_layers;
    int64_t nmat = (int64_t)L * ENG_LIN_COUNT;
    unsigned char *tok = NULL;
    size_t tok_len = 0;
    const unsigned char *tok_bytes = NULL;
    const char *tok_name = NULL;
    char tmp[ENG_PATH_MAX + 16];
    cJSON *root = NULL;
    char *json = NULL;
    FILE *f = NULL;
    eng_claq_packed pk = {0};
    eng_claq_v2 v2 = {0};
    const uint32_t ver = meta && meta->format_version ? (uint32_t)meta->format_version
                                                      : ENG_CLAQ_VERSION;
    if (ver != 1 && ver != ENG_CLAQ_VERSION)
        return eng_err_set(err, ENG_E_INVAL, "%s: cannot write format version %u", path, ver);
    emb_form ef = {0};    /* the token embedding as stored */
    kern_claq *shapes = calloc((size_t)nmat, sizeof *shapes);
    if (!shapes) return eng_err_set(err, ENG_E_NOMEM, "%s: out of memory", path);

    if ((rc = pick_tokenizer(path, src, &tok, &tok_bytes, &tok_len, &tok_name, err))) goto done;

    const eng_qmatrix *hq = meta ? meta->head : NULL;
    kern_claq head_shape = {0};
    if ((rc = plan_shapes(path, c, q, hq, shapes, &head_shape, err))) goto done;

    /* Directory JSON, with offsets relative to the start of the data area. */
    const int shared = meta && meta->embed_shared;
    if (shared && !(c->tie_embeddings && hq && !meta->embed_bits)) {
        rc = eng_err_set(err, ENG_E_INVAL, "%s: a shared packed embedding needs a tied model, a "
                         "packed head and no row-quantized embedding", path);
        goto done;
    }
    root = cJSON_CreateObject();
    config_json(root, c, c->tie_embeddings && (!hq || shared));
    eng_claq_meta mt = {0};
    if (meta) mt = *meta;
    quant_json(root, &mt);

    uint64_t pos = 0;
    cJSON *tj = cJSON_AddArrayToObject(root, "tensors");
    const kern_matrix *emb = &src->w.tok_embed, *outm = &src->w.output;
    if ((rc = check_source(path, src, hq, err))) goto done;
    /* q8/q7/q6 on a tied model without a packed head: the one row-quantized matrix is gathered
     * as the embedding and multiplied as the head (tie_embeddings stays true) */
    if ((rc = embed_form(path, emb, mt.embed_bits, &ef, err))) goto done;
    if (shared) {
        cJSON_AddItemToArray(tj, claq_json("tok_embeddings", &head_shape,
                                           matrix_cb_form(ver, hq), &pos));
    } else {
        cJSON_AddItemToArray(tj, dense_json("tok_embeddings", ef.dtype, emb->rows, emb->cols,
                                            pos, ef.len));
        pos = al64(pos + ef.len);
    }
    uint64_t out_len = 0;
    if (shared) {
        /* no "output": the head is the embedding */
    } else if (hq) {
        cJSON_AddItemToArray(tj, claq_json("output", &head_shape, matrix_cb_form(ver, hq), &pos));
    } else if (!c->tie_embeddings) {
        out_len = (uint64_t)outm->rows * (uint64_t)outm->cols * kern_dtype_size(outm->dtype);
        cJSON_AddItemToArray(tj, dense_json("output", dtype_str(outm->dtype), outm->rows,
                                            outm->cols, pos, out_len));
        pos = al64(pos + out_len);
    }
    const uint64_t norm_len = (uint64_t)c->dim * 4;
    dir_layers(tj, c, shapes, q, ver, &pos);
    size_t tcfg_len = src->tokenizer_config_json ? strlen(src->tokenizer_config_json) : 0;
    dir_tokenizer(root, tok_bytes ? tok_name : NULL, tok_len, tcfg_len, &pos);
    uint64_t data_len = pos;
    json = cJSON_PrintUnformatted(root);
    if (!json) {
        rc = eng_err_set(err, ENG_E_NOMEM, "%s: out of memory for the directory", path);
        goto done;
    }
    uint64_t json_len = strlen(json), data_off = al64(HDR_BYTES + json_len);

    /* a temp name of its own beside the target: two writers of one path never share it */
    snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path);
    int tfd = mkstemp(tmp);
    f = tfd >= 0 ? fdopen(tfd, "wb") : NULL;
    if (!f) {
        rc = eng_err_set(err, ENG_E_IO, "%s: cannot create: %s", tmp, strerror(errno));
        if (tfd >= 0) {
            close(tfd);
            unlink(tmp);
        }
        goto done;
    }
    (void)fchmod(tfd, 0644);   /* mkstemp makes 0600; a model file is for every reader */
    data_writer w = {.f = f, .data_off = data_off, .pk = &pk, .v2 = &v2, .ver = ver};
    write_header(&w, ver, json, json_len, data_len);
#define EMIT(ptr, n) emit(&w, (ptr), (n))
#define EMIT_MATRIX(qm, nm) do { if ((rc = emit_matrix(&w, (qm), (nm), err))) goto done; } while (0)
    if (shared) EMIT_MATRIX(hq, "tok_embeddings");
    else EMIT(ef.data, ef.len);
    if (shared) {
        /* written above */
    } else if (hq) {
        EMIT_MATRIX(hq, "output");
    } else if (!c->tie_embeddings) {
        EMIT(outm->data, out_len);
    }
    EMIT(src->w.final_norm, norm_len);
    for (int l = 0; l < L && !w.io; l++) {
        EMIT(src->w.layers[l].attn_norm, norm_len);
        EMIT(src->w.layers[l].ffn_norm, norm_len);
        for (int i = 0; i < ENG_LIN_COUNT && !w.io; i++) {
            char nm[64];
            snprintf(nm, sizeof nm, "layers.%d.%s", l, eng_linear_name(i));
            EMIT_MATRIX(q[(int64_t)l * ENG_LIN_COUNT + i], nm);
        }
    }
    if (tok_bytes) EMIT(tok_bytes, tok_len);
    if (tcfg_len) EMIT(src->tokenizer_config_json, tcfg_len);
#undef EMIT_MATRIX
#undef EMIT
    int io = w.io || w.dpos != data_len;
    if (fclose(f) != 0) io = 1;
    f = NULL;
    if (io) {
        unlink(tmp);
        rc = eng_err_set(err, ENG_E_IO, "%s: write failed: %s", tmp, strerror(errno));
        goto done;
    }
    if ((rc = eng_claq_out_ok(path, err)) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        if (rc) goto done;
        rc = eng_err_set(err, ENG_E_IO, "%s: rename failed: %s", path, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    eng_claq_v2_free(&v2);
    free(ef.q8);
    free(ef.packed);
    if (f) {
        fclose(f);
        unlink(tmp);
    }
    eng_claq_packed_free(&pk);
    cJSON_free(json);
    cJSON_Delete(root);
    free(tok);
    free(shapes);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* loader                                                                                      */

static void info_free(void *p)
{
    eng_claq_model_info *info = p;
    if (!info) return;
    free(info->matrix_bytes);
    free(info->sec_len);
    free(info->views);
    free(info);
}

/* Reads path into an anonymous buffer backed by huge pages where the kernel allows; registers
 * it as one of m's mappings (munmap'd on close). */
static int load_bytes(eng_model *m, const char *path, const void **addr, size_t *size,
                      eng_err *err)
{
    const char *mm = getenv("CLAQ_MMAP");
    if (mm && !strcmp(mm, "1")) return eng__model_map(m, path, addr, size, err);
    int fd = eng_file_open(path, err);
    if (fd < 0) return fd;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size <= 0) {
        close(fd);
        return eng_err_set(err, ENG_E_IO, "%s: not a regular non-empty file", path);
    }
    size_t n = (size_t)st.st_size, maplen = (n + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    void *p = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        close(fd);
        return eng_err_set(err, ENG_E_NOMEM, "%s: cannot allocate %zu bytes", path, maplen);
    }
    (void)madvise(p, maplen, MADV_HUGEPAGE);   /* a hint: failure only costs speed */
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)p + got, n - got, (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            close(fd);
            munmap(p, maplen);
            return eng_err_set(err, ENG_E_IO, "%s: read failed at byte %zu", path, got);
        }
        got += (size_t)r;
    }
    close(fd);
    eng_mapping *maps = realloc(m->maps, (size_t)(m->n_maps + 1) * sizeof *maps);
    if (!maps) {
        munmap(p, maplen);
        return eng_err_set(err, ENG_E_NOMEM, "%s: out of memory", path);
    }
    m->maps = maps;
    m->maps[m->n_maps].addr = p;
    m->maps[m->n_maps].size = maplen;
    m->maps[m->n_maps].file_backed = 0;
    m->n_maps++;
    *addr = p;
    *size = n;
    return 0;
}

/* One section of the data area a tensor claimed (j_sec), for the overlap check. */
typedef struct sec_span {
    uint64_t off, len;
    char what[64];               /* the tensor's name (callers pass it from stack buffers) */
    const char *sec;             /* a literal */
} sec_span;

typedef struct sec_list {
    sec_span *v;
    size_t n, cap;
    int oom;
} sec_list;

typedef struct lctx {
    const char *path;
    uint32_t version;            /* the file's format version, 1 or 2 */
    const unsigned char *data;   /* data area */
    uint64_t data_len;
    eng_err *err;
    sec_list *spans;             /* every non-empty section claimed so far (owned by the loader) */
} lctx;

static int j_i64(const lctx *x, const cJSON *o, const char *key, const char *what, int64_t lo,
                 int64_t hi, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1e300;
    if (!cJSON_IsNumber(v) || !(d >= (double)lo && d <= (double)hi) || d != (double)(int64_t)d)
        return eng_err_set(x->err, ENG_E_FORMAT, "%s: %s: field \"%s\" missing or out of range",
                           x->path, what, key);
    *out = (int64_t)d;
    return 0;
}

static int j_num(const lctx *x, const cJSON *o, const char *key, const char *what, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v))
        return eng_err_set(x->err, ENG_E_FORMAT, "%s: %s: field \"%s\" missing or not a number",
                           x->path, what, key);
    *out = v->valuedouble;
    return 0;
}

/* A [offset, nbytes] pair inside the data area, 64-aligned, of exactly want bytes. */
static int j_sec(const lctx *x, const cJSON *arr, const char *what, const char *sec, uint64_t want,
                 const void **out)
{
    const cJSON *a = cJSON_IsArray(arr) && cJSON_GetArraySize(arr) == 2 ? arr->child : NULL;
    const cJSON *b = a ? a->next : NULL;
    if (!a || !b || !cJSON_IsNumber(a) || !cJSON_IsNumber(b) || a->valuedouble < 0 ||
        b->valuedouble < 0 || a->valuedouble > 9e15 || b->valuedouble > 9e15)
        return eng_err_set(x->err, ENG_E_FORMAT, "%s: tensor %s: section %s: bad [offset, nbytes]",
                           x->path, what, sec);
    uint64_t off = (uint64_t)a->valuedouble, len = (uint64_t)b->valuedouble;
    if ((double)off != a->valuedouble || (double)len != b->valuedouble || off % 64)
        return eng_err_set(x->err, ENG_E_FORMAT,
                           "%s: tensor %s: section %s: offset %llu not a 64-aligned integer",
                           x->path, what, sec, (unsigned long long)off);
    if (len != want)
        return eng_err_set(x->err, ENG_E_FORMAT,
                           "%s: tensor %s: section %s: %llu bytes, the shape implies %llu",
                           x->path, what, sec, (unsigned long long)len, (unsigned long long)want);
    if (off > x->data_len || len > x->data_len - off)
        return eng_err_set(x->err, ENG_E_FORMAT,
                           "%s: tensor %s: section %s: bytes %llu..%llu past the end of the data "
                           "(%llu bytes)", x->path, what, sec, (unsigned long long)off,
                           (unsigned long long)(off + len), (unsigned long long)x->data_len);
    sec_list *l = x->spans;
    if (l && len > 0 && !l->oom) {
        if (l->n == l->cap) {
            size_t nc = l->cap ? 2 * l->cap : 64;
            sec_span *v = realloc(l->v, nc * sizeof *v);
            if (!v) {
                l->oom = 1;
                return eng_err_set(x->err, ENG_E_NOMEM, "%s: out of memory", x->path);
            }
            l->v = v;
            l->cap = nc;
        }
        sec_span *sp = &l->v[l->n++];
        sp->off = off;
        sp->len = len;
        sp->sec = sec;
        snprintf(sp->what, sizeof sp->what, "%s", what);
    }
    *out = x->data + off;
    return 0;
}

static int by_offset(const void *a, const void *b)
{
    const sec_span *p = a, *q = b;
    return p->off < q->off ? -1 : p->off > q->off;
}

/* No two sections share a byte: a directory whose tensors alias one another (two norms on
 * one array, a layer reading another's codes) loads as a different model than it claims, as
 * the safetensors loader already refuses. */
static int check_overlaps(const lctx *x)
{
    sec_list *l = x->spans;
    qsort(l->v, l->n, sizeof *l->v, by_offset);
    for (size_t i = 1; i < l->n; i++) {
        const sec_span *p = &l->v[i - 1], *q = &l->v[i];
        if (q->off < p->off + p->len)
            return eng_err_set(x->err, ENG_E_FORMAT, "%s: tensor %s section %s (bytes %llu..) "
                               "overlaps tensor %s section %s (bytes %llu..%llu)", x->path,
                               q->what, q->sec, (unsigned long long)q->off, p->what, p->sec,
                               (unsigned long long)p->off,
                               (unsigned long long)(p->off + p->len));
    }
    return 0;
}

static const cJSON *find_tensor(const cJSON *arr, const char *name)
{
    const cJSON *t;
    cJSON_ArrayForEach(t, arr) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(t, "name");
        if (cJSON_IsString(n) && !strcmp(n->valuestring, name)) return t;
    }
    return NULL;
}

/* Tensor t's "shape" is [d0] (d1 <= 0) or [d0, d1]. */
static int check_shape(const lctx *x, const cJSON *t, const char *name, int64_t d0, int64_t d1)
{
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(t, "shape");
    int nd = cJSON_IsArray(sh) ? cJSON_GetArraySize(sh) : -1;
    const cJSON *a = nd > 0 ? sh->child : NULL, *b = nd > 1 ? a->next : NULL;
    if (nd != (d1 > 0 ? 2 : 1) || !cJSON_IsNumber(a) || a->valuedouble != (double)d0 ||
        (d1 > 0 && (!cJSON_IsNumber(b) || b->valuedouble != (double)d1)))
        return eng_err_set(x->err, ENG_E_FORMAT,
                           "%s: tensor %s: shape disagrees with the config (want %lld x %lld)",
                           x->path, name, (long long)d0, (long long)(d1 > 0 ? d1 : 1));
    return 0;
}

/* A dense tensor: dtype allowed by f32_only, shape [d0] or [d0, d1]. */
static int load_dense(const lctx *x, const cJSON *arr, const char *name, int64_t d0, int64_t d1,
                      int f32_only, kern_dtype *dt, const void **data)
{
    const cJSON *t = find_tensor(arr, name);
    if (!t) return eng_err_set(x->err, ENG_E_FORMAT, "%s: tensor %s missing", x->path, name);
    const cJSON *ds = cJSON_GetObjectItemCaseSensitive(t, "dtype");
    if (!cJSON_IsString(ds) || dtype_parse(ds->valuestring, dt) || (f32_only && *dt != KERN_F32))
        return eng_err_set(x->err, ENG_E_FORMAT, "%s: tensor %s: unsupported dtype", x->path, name);
    int rc = check_shape(x, t, name, d0, d1);
    if (rc) return rc;
    if (*dt == KERN_Q8_ROW && strcmp(name, "tok_embeddings") != 0)
        return eng_err_set(x->err, ENG_E_FORMAT, "%s: tensor %s: q8_row is only for the token "
                           "embedding", x->path, name);
    uint64_t want = kern_dense_bytes(*dt, d0, d1 > 0 ? d1 : 1);
    return j_sec(x, cJSON_GetObjectItemCaseSensitive(t, "data"), name, "data", want, data);
}

/* The token embedding t in a bit-packed row form (q6_row, q7_row: bits): its section checked
 * and expanded into a KERN_Q8_ROW buffer the model owns (*data). */
static int load_packed_row(const lctx *x, const cJSON *t, int bits, int64_t rows, int64_t cols,
                           eng_model *m, const void **data)
{
    const char *name = "tok_embeddings";
    const void *src;
    int rc = check_shape(x, t, name, rows, cols);
    if (!rc) rc = j_sec(x, cJSON_GetObjectItemCaseSensitive(t, "data"), name, "data",
                        eng_qrow_packed_bytes(bits, rows, cols), &src);
    if (rc) return rc;
    void *q8 = malloc(kern_dense_bytes(KERN_Q8_ROW, rows, cols));
    if (!q8 || eng__model_own(m, q8))   /* frees q8 on failure */
        return eng_err_set(x->err, ENG_E_NOMEM, "%s: out of memory for %s", x->path, name);
    eng_err e = {0};
    if (eng_qrow_decode(src, bits, rows, cols, q8, &e))
        return eng_err_set(x->err, ENG_E_FORMAT, "%s: tensor %s: %s", x->path, name, e.msg);
    *data = q8;
    return 0;
}

/* A packed matrix: its sections checked against the shape, version 2's forms decoded into the
 * kernels' arrays, the whole view validated, the outlier deltas computed. *stored gets its bytes
 * in the file, len (may be NULL) its section lengths. */
static int load_claq_matrix(const lctx *x, const cJSON *arr, const char *name, int64_t rows,
                            int64_t cols, eng_model *m, kern_claq *k, int64_t *stored,
                            size_t *len_out)
{
    const cJSON *t = find_tensor(arr, name);
    if (!t) return eng_err_set(x->err, ENG_E_FORMAT, "%s: tensor %s missing", x->path, name);
    const cJSON *ds = cJSON_GetObjectItemCaseSensitive(t, "dtype");
    if (!cJSON_IsString(ds) || strcmp(ds->valuestring, "claq"))
        return eng_err_set(x->err, ENG_E_FORMAT, "%s: tensor %s: dtype is not \"claq\"", x->path,
                           name);
    int64_t r, c;
    int rc;
    memset(k, 0, sizeof *k);
    if ((rc = j_i64(x, t, "rows", name, 1, 1 << 24, &r)) ||
        (rc = j_i64(x, t, "cols", name, 1, 1 << 24, &c)))
        return rc;
    if (r != rows || c != cols)
        return eng_err_set(x->err, ENG_E_FORMAT,
                           "%s: tensor %s: shape %lld x %lld disagrees with the config (%lld x %lld)",
                           x->path, name, (long long)r, (long long)c, (long long)rows,
                           (long long)cols);
    k->rows = r;
    k->cols = c;
    if ((rc = j_i64(x, t, "cols4", name, 0, c, &k->ncols_bits[4])) ||
        (rc = j_i64(x, t, "cols3", name, 0, c, &k->ncols_bits[3])) ||
        (rc = j_i64(x, t, "cols2", name, 0, c, &k->ncols_bits[2])) ||
        (rc = j_i64(x, t, "nnz", name, 0, r * c, &k->nnz)))
        return rc;
    if ((rc = eng_claq_shape_fill(k, x->path, name, x->err))) return rc;
    int form = -1;   /* version 1 */
    if (x->version >= 2) {
        const cJSON *cf = cJSON_GetObjectItemCaseSensitive(t, "cb_form");
        const char *fs = cJSON_IsString(cf) ? cf->valuestring : "";
        form = !strcmp(fs, "f16") ? ENG_CLAQ_CB_F16 : !strcmp(fs, "grid8") ? ENG_CLAQ_CB_GRID8 : -1;
        if (form < 0)
            return eng_err_set(x->err, ENG_E_FORMAT, "%s: tensor %s: cb_form \"%.16s\" is not "
                               "f16 or grid8", x->path, name, fs);
    }
    size_t len[ENG_CLAQ_NSEC];
    if (form < 0) eng_claq_sec_lengths(k, len);
    else eng_claq_v2_lengths(k, form, len);
    const char *const *names = form < 0 ? eng_claq_sec_names : eng_claq_v2_sec_names;
    const cJSON *secs = cJSON_GetObjectItemCaseSensitive(t, "sections");
    const void *p[ENG_CLAQ_NSEC];
    *stored = 0;
    for (int s = 0; s < ENG_CLAQ_NSEC; s++) {
        rc = j_sec(x, cJSON_GetObjectItemCaseSensitive(secs, names[s]), name, names[s], len[s],
                   &p[s]);
        if (rc) return rc;
        *stored += (int64_t)al64(len[s]);
        if (len_out) len_out[s] = len[s];
    }
    if (form >= 0) {
        void *owned = NULL;
        if ((rc = eng_claq_v2_decode(k, form, p, &owned, x->path, name, x->err))) return rc;
        if (eng__model_own(m, owned))
            return eng_err_set(x->err, ENG_E_NOMEM, "%s: tensor %s: out of memory", x->path, name);
    } else {
        k->colmap = p[ENG_CLAQ_SEC_COLMAP];
        k->cb = p[ENG_CLAQ_SEC_CB];
        k->codes = p[ENG_CLAQ_SEC_CODES];
        k->out_rowptr = p[ENG_CLAQ_SEC_ROWPTR];
        k->out_col16 = k->cols_pad <= 65536 ? p[ENG_CLAQ_SEC_OUTCOL] : NULL;
        k->out_col32 = k->cols_pad <= 65536 ? NULL : p[ENG_CLAQ_SEC_OUTCOL];
        k->out_val = p[ENG_CLAQ_SEC_OUTVAL];
    }
    if ((rc = eng_claq_validate(k, x->path, name, x->err))) return rc;
    float *delta = malloc((size_t)(k->nnz ? k->nnz : 1) * sizeof(float));
    if (!delta || eng__model_own(m, delta))
        return eng_err_set(x->err, ENG_E_NOMEM, "%s: tensor %s: out of memory", x->path, name);
    eng_claq_deltas(k, delta);
    k->out_delta = delta;
    return 0;
}

/* An informational number, clamped so any JSON value converts safely (0 when absent). */
static double meta_num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    double d = cJSON_IsNumber(v) ? v->valuedouble : 0.0;
    return d == d && d > -1e9 && d < 1e9 ? d : 0.0;
}

static void copy_str(char *dst, size_t cap, const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    snprintf(dst, cap, "%s", cJSON_IsString(v) ? v->valuestring : "");
}

/* The directory's "config" object into c (checked by eng_config_validate). */
static int read_config(const lctx *x, const cJSON *cj, eng_config *c)
{
    const char *path = x->path;
    eng_err *err = x->err;
    int64_t v[9];
    const char *ik[9] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "head_dim",
                         "vocab_size", "seq_len", "bos_id"};
    double th = 0, eps = 0;
    int rc = cJSON_IsObject(cj) ? 0 : eng_err_set(err, ENG_E_FORMAT, "%s: no config object", path);
    for (int i = 0; i < 9 && !rc; i++) rc = j_i64(x, cj, ik[i], "config", -1, 1 << 24, &v[i]);
    int64_t eos = -1;
    if (!rc) rc = j_i64(x, cj, "eos_id", "config", -1, 1 << 24, &eos);
    if (!rc) rc = j_num(x, cj, "rope_theta", "config", &th);
    if (!rc) rc = j_num(x, cj, "norm_eps", "config", &eps);
    if (rc) return rc;
    copy_str(c->arch, sizeof c->arch, cj, "arch");
    c->dim = (int)v[0]; c->hidden_dim = (int)v[1]; c->n_layers = (int)v[2]; c->n_heads = (int)v[3];
    c->n_kv_heads = (int)v[4]; c->head_dim = (int)v[5]; c->vocab_size = (int)v[6];
    c->seq_len = (int)v[7]; c->bos_id = (int)v[8]; c->eos_id = (int)eos;
    c->n_eos = 0;
    eng_config_add_eos(c, c->eos_id);
    const cJSON *eids = cJSON_GetObjectItemCaseSensitive(cj, "eos_ids"), *eit;
    if (eids && (!cJSON_IsArray(eids) || cJSON_GetArraySize(eids) > ENG_MAX_EOS)) {
        rc = eng_err_set(err, ENG_E_FORMAT, "%s: config eos_ids is not a list of at most %d ids",
                         path, ENG_MAX_EOS);
        return rc;
    }
    cJSON_ArrayForEach(eit, eids) {
        if (!cJSON_IsNumber(eit) || eit->valuedouble < 0 || eit->valuedouble >= (1 << 24) ||
            eit->valuedouble != (double)(int)eit->valuedouble) {
            rc = eng_err_set(err, ENG_E_FORMAT, "%s: config eos_ids holds a bad id", path);
            return rc;
        }
        eng_config_add_eos(c, (int)eit->valuedouble);
    }
    c->rope_theta = (float)th;
    c->norm_eps = (float)eps;
    /* every writer since the first format version stores it; anything else would run the
     * model with the wrong rotation, silently */
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(cj, "rope_style");
    const char *rsv = cJSON_IsString(rs) && rs->valuestring ? rs->valuestring : NULL;
    if (!rsv || (strcmp(rsv, "half") != 0 && strcmp(rsv, "interleaved") != 0))
        return eng_err_set(err, ENG_E_FORMAT, "%s: config rope_style %s%.40s%s is not \"half\" "
                           "or \"interleaved\"", path, rsv ? "\"" : "", rsv ? rsv : "missing",
                           rsv ? "\"" : "");
    c->rope_style = !strcmp(rsv, "half") ? KERN_ROPE_HALF : KERN_ROPE_INTERLEAVED;
    /* the writer always stores a boolean; "yes" or a missing key read as false would swap a
     * tied model's head for an absent one (or the reverse) without a word */
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(cj, "tie_embeddings");
    if (!cJSON_IsBool(tie))
        return eng_err_set(err, ENG_E_FORMAT, "%s: config tie_embeddings is %s, not a boolean",
                           path, tie ? "present" : "missing");
    c->tie_embeddings = cJSON_IsTrue(tie);
    const cJSON *rsj = cJSON_GetObjectItemCaseSensitive(cj, "rope_scaling");
    if (rsj) {
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(rsj, "type");
        const char *t = cJSON_IsString(ty) && ty->valuestring ? ty->valuestring : "";
        eng_rope_scaling *s = &c->rope_scaling;
        const int type = eng_rope_type_from_name(t);
        double f = 0, lo = 0, hi = 0;
        int64_t om = 0;
        rc = type <= ENG_ROPE_DEFAULT   /* the writer never stores "default" */
                 ? eng_err_set(err, ENG_E_FORMAT, "%s: config rope_scaling type \"%.40s\" "
                               "unknown", path, t)
                 : j_num(x, rsj, "factor", "config.rope_scaling", &f);
        s->type = type > 0 ? (eng_rope_type)type : ENG_ROPE_DEFAULT;
        if (!rc) rc = j_num(x, rsj, "low_freq_factor", "config.rope_scaling", &lo);
        if (!rc) rc = j_num(x, rsj, "high_freq_factor", "config.rope_scaling", &hi);
        if (!rc) rc = j_i64(x, rsj, "orig_max_pos", "config.rope_scaling", 0, 1 << 24, &om);
        if (rc) return rc;
        s->factor = (float)f;
        s->low_freq_factor = (float)lo;
        s->high_freq_factor = (float)hi;
        s->orig_max_pos = (int)om;
    }
    return eng_config_validate(c, path, err);

}

/* Quantization metadata (informational; absent fields read as empty/zero). */
static void read_meta(const cJSON *qj, eng_claq_model_info *info, eng_model *m)
{
    eng_claq_meta *mt = &info->meta;
    copy_str(mt->method, sizeof mt->method, qj, "method");
    copy_str(mt->calib, sizeof mt->calib, qj, "calib");
    copy_str(mt->source, sizeof mt->source, qj, "source");
    mt->bits = meta_num(qj, "bits");
    mt->or_budget = meta_num(qj, "or_budget");
    mt->nsamples = (int)meta_num(qj, "nsamples");
    mt->seqlen = (int)meta_num(qj, "seqlen");
    mt->quant_seconds = meta_num(qj, "quant_seconds");
    const cJSON *qv = cJSON_GetObjectItemCaseSensitive(qj, "seed");
    if (cJSON_IsString(qv)) mt->seed = strtoull(qv->valuestring, NULL, 10);
    mt->outliers = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(qj, "outliers"));
    mt->or_compat_index = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(qj, "or_compat_index"));
    mt->target_bpw = meta_num(qj, "target_bpw");
    mt->head_bits = (int)meta_num(qj, "head_bits");
    mt->cb_bits = (int)meta_num(qj, "cb_bits");
    copy_str(mt->kmeans_init, sizeof mt->kmeans_init, qj, "kmeans_init");
    copy_str(mt->inverse, sizeof mt->inverse, qj, "inverse");
    if (mt->target_bpw > 0)   /* a budget in stored bits, not a code-bit count */
        snprintf(m->quant_desc, sizeof m->quant_desc, "%s --target-bpw %.3g%s",
                 mt->method[0] ? mt->method : "claq", mt->target_bpw,
                 mt->outliers ? " (OR)" : "");
    else
        snprintf(m->quant_desc, sizeof m->quant_desc, "%s %.2fb%s",
                 mt->method[0] ? mt->method : "claq", mt->bits, mt->outliers ? " (OR)" : "");

}

/* The token embedding and the output head: dense, a packed head, or one packed matrix for
 * both (a tied model stored once). */
static int load_embed_head(const lctx *x, const cJSON *arr, eng_model *m,
                           eng_claq_model_info *info)
{
    const char *path = x->path;
    eng_err *err = x->err;
    eng_config *c = &m->cfg;
    int rc;
    kern_dtype dt;
    const void *p;
    const cJSON *et = find_tensor(arr, "tok_embeddings");
    const cJSON *eds = et ? cJSON_GetObjectItemCaseSensitive(et, "dtype") : NULL;
    if (cJSON_IsString(eds) && !strcmp(eds->valuestring, "claq")) {
        /* a tied model's one packed matrix: gathered as the embedding, multiplied as the head */
        kern_claq *ek = calloc(1, sizeof *ek);
        int64_t stored = 0;
        if (eng__model_own(m, ek)) {   /* frees ek on failure */
            rc = eng_err_set(err, ENG_E_NOMEM, "%s: out of memory", path);
            return rc;
        }
        if (!c->tie_embeddings) {
            rc = eng_err_set(err, ENG_E_FORMAT, "%s: tensor tok_embeddings: a packed embedding "
                             "must be the tied head (tie_embeddings is false)", path);
            return rc;
        }
        if ((rc = load_claq_matrix(x, arr, "tok_embeddings", c->vocab_size, c->dim, m, ek,
                                   &stored, NULL)))
            return rc;
        m->w.tok_embed = (kern_matrix){.dtype = KERN_CLAQ, .rows = c->vocab_size,
                                       .cols = c->dim, .claq = ek};
        snprintf(info->dtype_dense, sizeof info->dtype_dense, "f32");
        info->meta.embed_shared = 1;
        m->w.output = m->w.tok_embed;
        return 0;
    }
    const int pbits = !cJSON_IsString(eds) ? 0 : !strcmp(eds->valuestring, "q6_row") ? 6
                      : !strcmp(eds->valuestring, "q7_row") ? 7 : 0;
    if (pbits) {
        if ((rc = load_packed_row(x, et, pbits, c->vocab_size, c->dim, m, &p))) return rc;
        dt = KERN_Q8_ROW;
        info->meta.embed_bits = pbits;
        snprintf(info->dtype_dense, sizeof info->dtype_dense, "f32");
    } else {
        rc = load_dense(x, arr, "tok_embeddings", c->vocab_size, c->dim, 0, &dt, &p);
        if (rc) return rc;
        if (dt == KERN_Q8_ROW) info->meta.embed_bits = 8;
        snprintf(info->dtype_dense, sizeof info->dtype_dense, "%s",
                 dt == KERN_Q8_ROW ? "f32" : dtype_str(dt));   /* the norms' dtype */
    }
    m->w.tok_embed = (kern_matrix){.dtype = dt, .rows = c->vocab_size, .cols = c->dim, .data = p};
    if ((rc = eng__check_finite(m, &m->w.tok_embed, path, "tok_embeddings", err))) return rc;
    const cJSON *ot = find_tensor(arr, "output");
    const cJSON *ods = ot ? cJSON_GetObjectItemCaseSensitive(ot, "dtype") : NULL;
    if (c->tie_embeddings && ot) {
        /* format.md: "output" exists only when untied; reading past it would drop a head
         * the file holds (or leave unchecked bytes it points at) */
        return eng_err_set(err, ENG_E_FORMAT, "%s: tensor output is present but "
                           "tie_embeddings is true (a tied model's head is tok_embeddings)",
                           path);
    }
    if (c->tie_embeddings) {
        m->w.output = m->w.tok_embed;
    } else if (cJSON_IsString(ods) && !strcmp(ods->valuestring, "claq")) {
        /* a packed output head (format.md): its view lives as long as the model */
        kern_claq *hk = calloc(1, sizeof *hk);
        int64_t stored = 0;
        if (eng__model_own(m, hk)) {   /* frees hk on failure */
            rc = eng_err_set(err, ENG_E_NOMEM, "%s: out of memory", path);
            return rc;
        }
        if ((rc = load_claq_matrix(x, arr, "output", c->vocab_size, c->dim, m, hk, &stored,
                                   NULL)))
            return rc;
        m->w.output = (kern_matrix){.dtype = KERN_CLAQ, .rows = c->vocab_size, .cols = c->dim,
                                    .claq = hk};
    } else {
        if ((rc = load_dense(x, arr, "output", c->vocab_size, c->dim, 0, &dt, &p))) return rc;
        m->w.output = (kern_matrix){.dtype = dt, .rows = c->vocab_size, .cols = c->dim, .data = p};
        if ((rc = eng__check_finite(m, &m->w.output, path, "output", err))) return rc;
    }
    return 0;
}

/* One norm vector (dim floats) into *dst, refused when it holds a NaN or an infinity, as the
 * llama2.c and HF loaders refuse them (a NaN norm made every logit NaN). */
static int load_norm(const lctx *x, const cJSON *arr, const char *name, eng_model *m,
                     const float **dst)
{
    kern_dtype dt;
    const void *p;
    int rc;
    if ((rc = load_dense(x, arr, name, m->cfg.dim, 0, 1, &dt, &p)) ||
        (rc = eng__model_f32_copy(m, KERN_F32, p, m->cfg.dim, dst, x->err)))
        return rc;
    kern_matrix v = {.dtype = KERN_F32, .rows = 1, .cols = m->cfg.dim, .data = *dst};
    return eng__check_finite(m, &v, x->path, name, x->err);
}

/* The norms and every layer's packed matrices (their views kept in info). */
static int load_layers(const lctx *x, const cJSON *arr, eng_model *m, eng_claq_model_info *info)
{
    const char *path = x->path;
    eng_err *err = x->err;
    eng_config *c = &m->cfg;
    int rc;
    if ((rc = load_norm(x, arr, "final_norm", m, &m->w.final_norm)))
        return rc;
    m->w.layers = calloc((size_t)c->n_layers, sizeof *m->w.layers);
    info->n_matrices = (int64_t)c->n_layers * ENG_LIN_COUNT;
    info->views = calloc((size_t)info->n_matrices, sizeof *info->views);
    info->matrix_bytes = calloc((size_t)info->n_matrices, sizeof *info->matrix_bytes);
    info->sec_len = calloc((size_t)info->n_matrices, sizeof *info->sec_len);
    if (!m->w.layers || !info->views || !info->matrix_bytes || !info->sec_len) {
        rc = eng_err_set(err, ENG_E_NOMEM, "%s: out of memory", path);
        return rc;
    }
    for (int l = 0; l < c->n_layers; l++) {
        char nm[64];
        eng_layer_weights *lw = &m->w.layers[l];
        snprintf(nm, sizeof nm, "layers.%d.attn_norm", l);
        if ((rc = load_norm(x, arr, nm, m, &lw->attn_norm)))
            return rc;
        snprintf(nm, sizeof nm, "layers.%d.ffn_norm", l);
        if ((rc = load_norm(x, arr, nm, m, &lw->ffn_norm)))
            return rc;
        for (int i = 0; i < ENG_LIN_COUNT; i++) {
            int64_t rows, cols, idx = (int64_t)l * ENG_LIN_COUNT + i;
            lin_shape(c, i, &rows, &cols);
            snprintf(nm, sizeof nm, "layers.%d.%s", l, eng_linear_name(i));
            kern_claq *k = &info->views[idx];
            if ((rc = load_claq_matrix(x, arr, nm, rows, cols, m, k, &info->matrix_bytes[idx],
                                       info->sec_len[idx])))
                return rc;
            lw->lin[i] = (kern_matrix){.dtype = KERN_CLAQ, .rows = rows, .cols = cols, .claq = k};
        }
    }

    return 0;
}

/* The embedded tokenizer file and tokenizer_config.json, when present. */
static int load_tokenizer_blobs(const lctx *x, const cJSON *root, eng_model *m)
{
    const char *path = x->path;
    eng_err *err = x->err;
    const void *p;
    int rc;
    const cJSON *tk = cJSON_GetObjectItemCaseSensitive(root, "tokenizer");
    if (tk) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(tk, "data");
        const cJSON *len = cJSON_GetArraySize(d) == 2 ? d->child->next : NULL;
        uint64_t want = cJSON_IsNumber(len) && len->valuedouble >= 0 &&
                                len->valuedouble <= MAX_TOKENIZER
                            ? (uint64_t)len->valuedouble : UINT64_MAX;
        if ((rc = j_sec(x, d, "tokenizer", "data", want, &p))) return rc;
        copy_str(m->tokenizer_blob_name, sizeof m->tokenizer_blob_name, tk, "name");
        if (!m->tokenizer_blob_name[0] || strchr(m->tokenizer_blob_name, '/')) {
            rc = eng_err_set(err, ENG_E_FORMAT, "%s: tokenizer: bad name", path);
            return rc;
        }
        m->tokenizer_blob = p;
        m->tokenizer_blob_len = (size_t)want;
    }
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, "tokenizer_config");
    if (tc) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(tc, "data");
        const cJSON *len = cJSON_GetArraySize(d) == 2 ? d->child->next : NULL;
        uint64_t want = cJSON_IsNumber(len) && len->valuedouble >= 0 && len->valuedouble <= MAX_JSON
                            ? (uint64_t)len->valuedouble : UINT64_MAX;
        if ((rc = j_sec(x, d, "tokenizer_config", "data", want, &p))) return rc;
        char *txt = malloc((size_t)want + 1);
        if (!txt || eng__model_own(m, txt)) {
            rc = eng_err_set(err, ENG_E_NOMEM, "%s: out of memory", path);
            return rc;
        }
        memcpy(txt, p, (size_t)want);
        txt[want] = 0;
        m->tokenizer_config_json = txt;
    }
    return 0;
}

int eng__load_claq(eng_model *m, const char *path, eng_err *err)
{
    const void *addr;
    size_t size;
    int rc = load_bytes(m, path, &addr, &size, err);
    if (rc) return rc;
    const unsigned char *b = addr;
    if (size < HDR_BYTES || memcmp(b, ENG_CLAQ_MAGIC, 8) != 0)
        return eng_err_set(err, ENG_E_FORMAT, "%s: not a packed CLAQ file (bad magic or too short)",
                           path);
    uint32_t ver = get_u32(b + 8), hdr = get_u32(b + 12);
    if (ver != 1 && ver != ENG_CLAQ_VERSION)
        return eng_err_set(err, ENG_E_UNSUPPORTED, "%s: packed format version %u (this build "
                           "reads 1 and %u)", path, ver, ENG_CLAQ_VERSION);
    uint64_t json_off = get_u64(b + 16), json_len = get_u64(b + 24), data_off = get_u64(b + 32),
             data_len = get_u64(b + 40), file_size = get_u64(b + 48);
    if (file_size != size)
        return eng_err_set(err, ENG_E_FORMAT,
                           "%s: file is %zu bytes but its header says %llu (truncated or padded)",
                           path, size, (unsigned long long)file_size);
    if (hdr != HDR_BYTES || json_off != HDR_BYTES || json_len == 0 || json_len > MAX_JSON ||
        data_off % 64 || data_off < json_off + json_len || data_off > size ||
        data_len != size - data_off)
        return eng_err_set(err, ENG_E_FORMAT, "%s: header offsets are inconsistent", path);
    long bad = eng_json_bad_control((const char *)b + json_off, (size_t)json_len);
    if (bad >= 0)
        return eng_err_set(err, ENG_E_FORMAT, "%s: directory has control byte 0x%02x at byte "
                           "%ld (JSON allows none in a string)", path, b[json_off + bad],
                           (long)json_off + bad);
    cJSON *root = cJSON_ParseWithLength((const char *)b + json_off, (size_t)json_len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return eng_err_set(err, ENG_E_FORMAT, "%s: directory is not valid JSON", path);
    }
    if ((rc = eng_json_check_dups(root, path, err))) {
        cJSON_Delete(root);
        return rc;
    }
    sec_list spans = {0};
    lctx x = {.path = path, .version = ver, .data = b + data_off, .data_len = data_len, .err = err,
              .spans = &spans};
    eng_claq_model_info *info = calloc(1, sizeof *info);
    if (!info) {
        cJSON_Delete(root);
        return eng_err_set(err, ENG_E_NOMEM, "%s: out of memory", path);
    }
    m->ext = info;
    m->ext_free = info_free;
    info->file_bytes = (int64_t)size;
    info->meta.format_version = (int)ver;

    /* Config, quantization metadata, tensors, tokenizer. */
    const cJSON *cj = cJSON_GetObjectItemCaseSensitive(root, "config");
    if ((rc = read_config(&x, cj, &m->cfg))) goto fail;
    read_meta(cJSON_GetObjectItemCaseSensitive(root, "quant"), info, m);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "tensors");
    if (!cJSON_IsArray(arr)) {
        rc = eng_err_set(err, ENG_E_FORMAT, "%s: no tensor directory", path);
        goto fail;
    }
    if ((rc = load_embed_head(&x, arr, m, info)) || (rc = load_layers(&x, arr, m, info)) ||
        (rc = load_tokenizer_blobs(&x, root, m)))
        goto fail;
    /* every entry was used: one the model would leave out (a layer past n_layers, a name the
     * writer never writes) means the config and the data disagree */
    const int want = 2 + (find_tensor(arr, "output") != NULL) + 9 * m->cfg.n_layers;
    if (cJSON_GetArraySize(arr) != want) {
        rc = eng_err_set(err, ENG_E_FORMAT, "%s: the tensor directory has %d entries; config "
                         "n_layers %d needs %d", path, cJSON_GetArraySize(arr),
                         m->cfg.n_layers, want);
        goto fail;
    }
    if ((rc = check_overlaps(&x)))
        goto fail;
    free(spans.v);
    cJSON_Delete(root);
    return 0;
fail:
    free(spans.v);
    cJSON_Delete(root);
    return rc;
}
