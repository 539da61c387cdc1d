/* test_load_open.c — the model loaders on real checkpoints, and the safetensors parser on
 * hand-built hostile headers. With a PATH argument it is a tool for the script tests instead:
 * opens PATH, prints "OK" and one line per tensor (name dtype rows cols), or "ERROR <code>: msg"
 * on stderr and exits 1. Single-threaded. Needs CLAQ_SHARED (exit 77 without it). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "eng_model.h"
#include "eng_safetensors.h"
#include "kern_half.h"

#include "test_check.h"

/* ---- tool mode ---------------------------------------------------------------------------- */

/* Sum of all elements in fp64: lets script tests compare what the views point at across
 * dtypes and containers. */
static double matrix_sum(const kern_matrix *w)
{
    double s = 0;
    int64_t n = w->rows * w->cols;
    for (int64_t i = 0; i < n; i++) {
        if (w->dtype == KERN_F32) {
            float f;
            memcpy(&f, (const char *)w->data + 4 * i, 4);
            s += f;
        } else {
            uint16_t h;
            memcpy(&h, (const char *)w->data + 2 * i, 2);
            s += w->dtype == KERN_F16 ? kern_f16_to_f32(h) : kern_bf16_to_f32(h);
        }
    }
    return s;
}

static void print_matrix(const char *name, const kern_matrix *w)
{
    printf("tensor %s %s %lld %lld sum %.17g\n", name, kern_dtype_name(w->dtype),
           (long long)w->rows, (long long)w->cols, matrix_sum(w));
}

static void print_norm(const char *name, const float *v, int dim)
{
    double s = 0;
    for (int i = 0; i < dim; i++) s += v[i];
    printf("norm %s %d sum %.17g\n", name, dim, s);
}

static int tool_main(const char *path)
{
    eng_model *m = NULL;
    eng_err err = { 0 };
    int rc = eng_model_open(&m, path, &err);
    if (rc) {
        fprintf(stderr, "ERROR %d (%s): %s\n", rc, eng_strerror(rc), err.msg);
        return 1;
    }
    const eng_config *c = &m->cfg;
    printf("OK format %d quant %s\n", (int)m->format, m->quant_desc);
    printf("config arch %s dim %d hidden %d layers %d heads %d kv %d head_dim %d vocab %d seq %d "
           "theta %g eps %g rope %d tie %d bos %d eos %d\n", c->arch, c->dim, c->hidden_dim,
           c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->vocab_size, c->seq_len,
           (double)c->rope_theta, (double)c->norm_eps, (int)c->rope_style, c->tie_embeddings,
           c->bos_id, c->eos_id);
    printf("tokenizer %s\n", m->tokenizer_path[0] ? m->tokenizer_path : "-");
    print_matrix("tok_embed", &m->w.tok_embed);
    print_matrix("output", &m->w.output);
    printf("tied_view %d\n", m->w.output.data == m->w.tok_embed.data);
    for (int l = 0; l < c->n_layers; l++) {
        char name[64];
        for (int k = 0; k < ENG_LIN_COUNT; k++) {
            snprintf(name, sizeof name, "layers.%d.%s", l, eng_linear_name((eng_linear)k));
            print_matrix(name, &m->w.layers[l].lin[k]);
        }
        snprintf(name, sizeof name, "layers.%d.attn_norm", l);
        print_norm(name, m->w.layers[l].attn_norm, c->dim);
        snprintf(name, sizeof name, "layers.%d.ffn_norm", l);
        print_norm(name, m->w.layers[l].ffn_norm, c->dim);
    }
    print_norm("final_norm", m->w.final_norm, c->dim);
    eng_model_close(m);
    return 0;
}

/* ---- helpers ------------------------------------------------------------------------------ */

static int read_at(const char *path, long off, void *buf, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    int ok = fseek(f, off, SEEK_SET) == 0 && fread(buf, 1, n, f) == n;
    fclose(f);
    return ok ? 0 : -1;
}

/* True when p lies inside one of the model's mappings (zero-copy view). */
static int in_mapping(const eng_model *m, const void *p, size_t *offset)
{
    for (int i = 0; i < m->n_maps; i++) {
        const char *a = m->maps[i].addr;
        if ((const char *)p >= a && (const char *)p < a + m->maps[i].size) {
            if (offset) *offset = (size_t)((const char *)p - a);
            return 1;
        }
    }
    return 0;
}

/* Resident bytes of the mapping that holds p, from /proc/self/smaps; -1 when not found. */
static long mapping_rss(const void *p)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[512];
    int in = 0;
    long rss = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
            continue;
        }
        long kb;
        if (in && sscanf(line, "Rss: %ld kB", &kb) == 1) {
            rss = kb * 1024;
            break;
        }
    }
    fclose(f);
    return rss;
}

/* The quantizer opens its source with ENG_OPEN_COLD_WEIGHTS: the loader's value checks read
 * every weight, and without the flag the whole file stays resident (13.5 GB for a 7B in
 * FP16). Cold, the mapping keeps only what the checks could not give back (page edges, the
 * kernel's fault-around); the weights read the same; eng_model_release_pages drops a
 * resident matrix of a normally opened model without changing it. */
static void test_load_cold_weights(const char *shared)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/models/small-lm-5m", shared);
    eng_model *hot = NULL, *cold = NULL;
    eng_err err = { 0 };
    CHECK(eng_model_open(&hot, path, &err) == 0, "open %s: %s", path, err.msg);
    CHECK(eng_model_open_ex(&cold, path, ENG_OPEN_COLD_WEIGHTS, &err) == 0, "open cold %s: %s",
          path, err.msg);
    if (!hot || !cold) goto done;
    CHECK(hot->n_maps == 1 && cold->n_maps == 1 && hot->maps[0].file_backed, "one file mapping");
    long size = (long)hot->maps[0].size;
    long rh = mapping_rss(hot->maps[0].addr), rc = mapping_rss(cold->maps[0].addr);
    printf("small-lm-5m mapping %ld bytes: resident after open %ld, cold %ld\n", size, rh, rc);
    CHECK(rh > size * 9 / 10, "a normal open leaves the checked file resident (%ld of %ld)", rh,
          size);
    CHECK(rc >= 0 && rc < size / 5, "a cold open gives the pages back (%ld of %ld resident)", rc,
          size);
    int same = 1;
    for (int l = 0; l < hot->cfg.n_layers; l++)
        for (int i = 0; i < ENG_LIN_COUNT; i++) {
            const kern_matrix *a = &hot->w.layers[l].lin[i], *b = &cold->w.layers[l].lin[i];
            same &= a->dtype == b->dtype && a->rows == b->rows && a->cols == b->cols &&
                    memcmp(a->data, b->data, kern_dense_bytes(a->dtype, a->rows, a->cols)) == 0;
        }
    CHECK(same, "cold weights read back the same as resident ones");
    /* a released matrix of the normal open: fewer resident bytes, same values */
    const kern_matrix *up = &hot->w.layers[0].lin[ENG_LIN_UP];
    size_t nb = kern_dense_bytes(up->dtype, up->rows, up->cols);
    double before = matrix_sum(up);
    long r0 = mapping_rss(hot->maps[0].addr);
    eng_model_release_pages(hot, up->data, nb);
    long r1 = mapping_rss(hot->maps[0].addr);
    CHECK(r0 - r1 >= (long)nb - 2 * 4096, "release dropped %ld of %zu bytes", r0 - r1, nb);
    CHECK(matrix_sum(up) == before, "released matrix reads the same");
    float copy[4] = { 1, 2, 3, 4 };
    eng_model_release_pages(hot, copy, sizeof copy);   /* not the model's: nothing happens */
    CHECK(copy[0] == 1 && copy[3] == 4, "memory outside the mappings untouched");
done:
    eng_model_close(hot);
    eng_model_close(cold);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* ---- real checkpoints --------------------------------------------------------------------- */

static void test_load_llama2c_stories260k(const char *shared)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/models/stories260K.bin", shared);
    eng_model *m = NULL;
    eng_err err = { 0 };
    int rc = eng_model_open(&m, path, &err);
    CHECK(rc == 0, "open %s: %s", path, err.msg);
    if (rc) return;
    const eng_config *c = &m->cfg;
    CHECK(c->dim == 64 && c->hidden_dim == 172 && c->n_layers == 5 && c->n_heads == 8 &&
          c->n_kv_heads == 4 && c->head_dim == 8 && c->vocab_size == 512 && c->seq_len == 512,
          "config %d %d %d %d %d %d %d %d", c->dim, c->hidden_dim, c->n_layers, c->n_heads,
          c->n_kv_heads, c->head_dim, c->vocab_size, c->seq_len);
    CHECK(c->rope_style == KERN_ROPE_INTERLEAVED && c->tie_embeddings == 1, "rope/tie");
    CHECK(fabsf(c->norm_eps - 1e-5f) < 1e-12f && c->rope_theta == 10000.0f, "eps/theta");
    CHECK(c->bos_id == 1 && c->eos_id == 2 && strcmp(c->arch, "llama") == 0, "bos/eos/arch");
    CHECK(m->format == ENG_FMT_LLAMA2C && strcmp(m->quant_desc, "fp32") == 0, "%s",
          m->quant_desc);

    /* Zero copy: the embedding sits right after the 28-byte header, and the tied head is
     * the same view. */
    size_t off = 0;
    CHECK(in_mapping(m, m->w.tok_embed.data, &off) && off == 28, "tok_embed offset %zu", off);
    CHECK(m->w.output.data == m->w.tok_embed.data, "tied head is not the embedding view");
    const eng_layer_weights *L = m->w.layers;
    CHECK(L[0].lin[ENG_LIN_Q].rows == 64 && L[0].lin[ENG_LIN_Q].cols == 64, "wq shape");
    CHECK(L[4].lin[ENG_LIN_K].rows == 32 && L[4].lin[ENG_LIN_K].cols == 64, "wk shape");
    CHECK(L[2].lin[ENG_LIN_GATE].rows == 172 && L[2].lin[ENG_LIN_GATE].cols == 64, "w1 shape");
    CHECK(L[2].lin[ENG_LIN_DOWN].rows == 64 && L[2].lin[ENG_LIN_DOWN].cols == 172, "w2 shape");

    /* Offsets in floats after the header, from the README layout. */
    const long E = 512 * 64, NA = 5 * 64, Q = 5 * 64 * 64, KV = 5 * 32 * 64, O = 5 * 64 * 64;
    const long NF = 5 * 64, W1 = 5 * 172 * 64, W2 = 5 * 64 * 172;
    float want[4];
    CHECK(read_at(path, 28 + 4 * E, want, 4 * 4) == 0, "read");
    CHECK(memcmp(L[0].attn_norm, want, 16) == 0, "layer 0 rms_att differs from the file");
    long ffn1 = E + NA + Q + KV + KV + O + 64;          /* rms_ffn of layer 1 */
    CHECK(read_at(path, 28 + 4 * ffn1, want, 16) == 0, "read");
    CHECK(memcmp(L[1].ffn_norm, want, 16) == 0, "layer 1 rms_ffn differs from the file");
    long w3_4 = E + NA + Q + KV + KV + O + NF + W1 + W2 + 4L * 172 * 64;
    CHECK(in_mapping(m, L[4].lin[ENG_LIN_UP].data, &off) && off == (size_t)(28 + 4 * w3_4),
          "layer 4 w3 offset %zu", off);
    long fin = w3_4 + 172 * 64;
    CHECK(read_at(path, 28 + 4 * fin, want, 16) == 0, "read");
    CHECK(memcmp(m->w.final_norm, want, 16) == 0, "rms_final differs from the file");
    CHECK(!in_mapping(m, m->w.final_norm, NULL), "norms must be owned copies");
    eng_model_close(m);
}

static void test_load_hf_tinystories_tied_via_lm_head(const char *shared)
{
    char path[1024], file[1100];
    snprintf(path, sizeof path, "%s/models/tinystories-656k", shared);
    snprintf(file, sizeof file, "%s/model.safetensors", path);
    eng_model *m = NULL;
    eng_err err = { 0 };
    int rc = eng_model_open(&m, path, &err);
    CHECK(rc == 0, "open %s: %s", path, err.msg);
    if (rc) return;
    const eng_config *c = &m->cfg;
    CHECK(c->dim == 128 && c->hidden_dim == 384 && c->n_layers == 2 && c->n_heads == 8 &&
          c->n_kv_heads == 4 && c->head_dim == 16 && c->vocab_size == 2048 && c->seq_len == 512,
          "config");
    CHECK(c->rope_style == KERN_ROPE_HALF && c->tie_embeddings == 1, "rope/tie");
    CHECK(fabsf(c->norm_eps - 1e-6f) < 1e-13f && c->rope_theta == 10000.0f, "eps/theta");
    CHECK(c->bos_id == 1 && c->eos_id == 2, "bos %d eos %d", c->bos_id, c->eos_id);
    CHECK(m->format == ENG_FMT_HF && strcmp(m->quant_desc, "fp32") == 0, "%s", m->quant_desc);
    CHECK(ends_with(m->tokenizer_path, "/tokenizer.json"), "tokenizer %s", m->tokenizer_path);
    CHECK(m->tokenizer_config_json && strstr(m->tokenizer_config_json, "LlamaTokenizer"),
          "tokenizer_config_json not loaded");

    /* The header is 2160 bytes; lm_head is the first tensor of the data section. */
    size_t off = 0;
    CHECK(in_mapping(m, m->w.tok_embed.data, &off) && off == 8 + 2160, "embed offset %zu", off);
    CHECK(m->w.output.data == m->w.tok_embed.data && m->w.output.rows == 2048, "tied head");
    const kern_matrix *down = &m->w.layers[1].lin[ENG_LIN_DOWN];
    CHECK(down->rows == 128 && down->cols == 384 && down->dtype == KERN_F32, "down_proj shape");
    CHECK(in_mapping(m, down->data, &off) && off == 8 + 2160 + 1836544, "down offset %zu", off);
    const kern_matrix *k = &m->w.layers[0].lin[ENG_LIN_K];
    CHECK(k->rows == 64 && k->cols == 128, "k_proj shape");
    float want[4];
    CHECK(read_at(file, 8 + 2160 + 2623488, want, 16) == 0, "read");
    CHECK(memcmp(m->w.final_norm, want, 16) == 0, "model.norm differs from the file");
    eng_model_close(m);
}

static void test_load_hf_small_lm_head_dim_and_spm(const char *shared)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/models/small-lm-5m", shared);
    eng_model *m = NULL;
    eng_err err = { 0 };
    int rc = eng_model_open(&m, path, &err);
    CHECK(rc == 0, "open %s: %s", path, err.msg);
    if (rc) return;
    const eng_config *c = &m->cfg;
    CHECK(c->dim == 256 && c->hidden_dim == 768 && c->n_layers == 6 && c->n_heads == 4 &&
          c->n_kv_heads == 2 && c->head_dim == 64 && c->vocab_size == 4096 && c->seq_len == 256,
          "config");
    CHECK(fabsf(c->norm_eps - 1e-5f) < 1e-12f, "eps");
    CHECK(ends_with(m->tokenizer_path, "/tokenizer.model"), "tokenizer %s", m->tokenizer_path);
    CHECK(m->w.layers[5].lin[ENG_LIN_V].rows == 128, "v_proj rows");
    CHECK(in_mapping(m, m->w.layers[5].lin[ENG_LIN_V].data, NULL), "v_proj not a view");
    eng_model_close(m);
}

static void test_load_rejects_missing_paths(const char *shared)
{
    char path[1024];
    eng_model *m = NULL;
    eng_err err = { 0 };
    snprintf(path, sizeof path, "%s/models/no-such-model.bin", shared);
    int rc = eng_model_open(&m, path, &err);
    CHECK(rc == ENG_E_IO && m == NULL && strstr(err.msg, "no-such-model.bin"), "%d %s", rc,
          err.msg);
    /* A safetensors file given instead of its directory. */
    snprintf(path, sizeof path, "%s/models/tinystories-656k/model.safetensors", shared);
    rc = eng_model_open(&m, path, &err);
    CHECK(rc == ENG_E_INVAL && m == NULL && strstr(err.msg, "directory"), "%d %s", rc, err.msg);
    /* A directory without config.json. */
    snprintf(path, sizeof path, "%s/data", shared);
    rc = eng_model_open(&m, path, &err);
    CHECK(rc != 0 && m == NULL && strstr(err.msg, "config.json"), "%d %s", rc, err.msg);
}

/* ---- the parser on hand-built headers ----------------------------------------------------- */

/* Builds 8-byte length + json + data_len zero bytes in buf; returns the total size. */
static size_t st_build(uint8_t *buf, size_t cap, const char *json, uint64_t hlen_override,
                       size_t data_len)
{
    size_t n = strlen(json);
    uint64_t h = hlen_override ? hlen_override : n;
    if (8 + n + data_len > cap) return 0;
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(h >> (8 * i));
    memcpy(buf + 8, json, n);
    memset(buf + 8 + n, 0, data_len);
    return 8 + n + data_len;
}

static int st_try(const char *json, uint64_t hlen_override, size_t data_len, eng_err *err)
{
    static uint8_t buf[1 << 16];
    size_t n = st_build(buf, sizeof buf, json, hlen_override, data_len);
    eng_st_set s = { 0 };
    int rc = eng_st_parse(&s, "mem.safetensors", buf, n, err);
    eng_st_free(&s);
    eng_st_free(&s); /* twice: must be safe */
    return rc;
}

static void test_st_parser_rejects_hostile_headers(void)
{
    static const struct { const char *json; uint64_t hlen; size_t data; const char *want; } bad[] = {
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 1ull << 40, 8,
          "over the" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 60000, 8,
          "larger than the file" },
        { "[1,2,3]", 0, 0, "does not start with a JSON object" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 0, 8, "not valid JSON" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", 0, 8, "outside" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 0, 12, "needs 12" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 0, 8, "outside" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 0, 8, "shape[0]" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 0, 8, "shape[0]" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
          "\"data_offsets\":[0,8]}}", 0, 8, "needs more than" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 0, 4,
          "rank 9" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
          "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 0, 12, "overlaps" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
          "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 0, 8, "twice" },
        { "{\"a\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 8, "dtype" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 0, 8, "data_offsets" },
        { "{\"a\":[1,2]}", 0, 0, "not an object" },
        { "{\"__metadata__\":3}", 0, 0, "__metadata__" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,1e300]}}", 0, 8,
          "not non-negative integers" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        eng_err err = { 0 };
        int rc = st_try(bad[i].json, bad[i].hlen, bad[i].data, &err);
        CHECK(rc == ENG_E_FORMAT && strstr(err.msg, bad[i].want) &&
              strstr(err.msg, "mem.safetensors"), "case %zu: rc %d msg '%s' (want '%s')", i, rc,
              err.msg, bad[i].want);
    }
    /* Too short for the length prefix. */
    eng_st_set s = { 0 };
    eng_err err = { 0 };
    uint8_t tiny[4] = { 1, 0, 0, 0 };
    CHECK(eng_st_parse(&s, "tiny", tiny, sizeof tiny, &err) == ENG_E_FORMAT, "tiny");

    /* Well-formed: unknown dtypes parse (failing only when a loader asks for them), metadata
     * is skipped, gaps are allowed, lookups work. */
    const char *good = "{\"__metadata__\":{\"format\":\"pt\"},"
                       "\"z\":{\"dtype\":\"I8\",\"shape\":[3],\"data_offsets\":[16,19]},"
                       "\"a\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
                       "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]},"
                       "\"q\":{\"dtype\":\"X9\",\"shape\":[5],\"data_offsets\":[20,21]}}";
    static uint8_t buf[4096];
    size_t n = st_build(buf, sizeof buf, good, 0, 24);
    int rc = eng_st_parse(&s, "good", buf, n, &err);
    CHECK(rc == 0, "good: %s", err.msg);
    CHECK(s.n_tensors == 4 && s.n_files == 1, "n %d", s.n_tensors);
    const eng_st_tensor *a = eng_st_find(&s, "a"), *z = eng_st_find(&s, "z");
    CHECK(a && a->known && a->kdt == KERN_BF16 && a->n_dims == 2 && a->shape[1] == 2 &&
          a->data == buf + 8 + strlen(good), "tensor a");
    CHECK(z && !z->known && strcmp(z->dtype, "I8") == 0, "tensor z");
    CHECK(eng_st_find(&s, "b") == NULL && eng_st_find(&s, "__metadata__") == NULL, "find");
    /* The same file again: every name is now a duplicate; the set must stay as it was. */
    rc = eng_st_parse(&s, "again", buf, n, &err);
    CHECK(rc == ENG_E_FORMAT && strstr(err.msg, "twice") && s.n_tensors == 4 && s.n_files == 1,
          "dup across files: %d %s", rc, err.msg);
    eng_st_free(&s);
}

/* Random byte flips in the real tinystories header: must never crash or read out of bounds
 * (ASan builds check the latter); either parses or fails with a message. */
static void test_st_parser_survives_mutated_real_header(const char *shared)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/models/tinystories-656k/model.safetensors", shared);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "open %s", path);
    if (!f) return;
    enum { HDR = 8 + 2160, SIZE = 2626168 };
    uint8_t *buf = malloc(SIZE), orig[HDR];
    size_t n = buf ? fread(buf, 1, SIZE, f) : 0;
    fclose(f);
    CHECK(n == SIZE, "read %zu", n);
    if (n != SIZE) {
        free(buf);
        return;
    }
    memcpy(orig, buf, HDR);
    uint32_t rng = 12345;
    int parsed = 0, rejected = 0;
    for (int it = 0; it < 3000; it++) {
        int flips = 1 + it % 4;
        for (int k = 0; k < flips; k++) {
            rng = rng * 1664525u + 1013904223u;
            size_t pos = (rng >> 8) % HDR;
            rng = rng * 1664525u + 1013904223u;
            /* Mostly digits and JSON punctuation, so that numbers change rather than only
             * the syntax breaking. */
            static const char alphabet[] = "0123456789,:[]{}\"e-. ";
            buf[pos] = (it & 1) ? (uint8_t)(rng >> 24)
                                : (uint8_t)alphabet[(rng >> 24) % (sizeof alphabet - 1)];
        }
        eng_st_set s = { 0 };
        eng_err err = { 0 };
        /* Alternate the full file and a truncated one, so offsets can run past the end. */
        size_t len = (it % 3 == 0) ? SIZE - 1000 : SIZE;
        int rc = eng_st_parse(&s, "mut", buf, len, &err);
        if (rc == 0) parsed++;
        else {
            rejected++;
            CHECK(err.msg[0] != '\0', "error without a message");
        }
        eng_st_free(&s);
        memcpy(buf, orig, HDR);
    }
    CHECK(rejected > 0 && parsed > 0, "parsed %d rejected %d", parsed, rejected);
    printf("mutated headers: %d parsed, %d rejected with a message\n", parsed, rejected);
    free(buf);
}

/* Random values in config.json fields (beside a symlink to the real weights) and in the
 * llama2.c header: every open either succeeds with a config that passes validation, or fails
 * with a message; never a crash, never an out-of-bounds read (ASan builds). */
static cJSON *fuzz_value(uint32_t r)
{
    static const double nums[] = { 0, -1, 1, 2, 3, 4, 7, 8, 16, 64, 128, 384, 2048, 4096,
                                   2147483647.0, 2147483648.0, -2147483648.0, 1e300, -1e300,
                                   0.5, 1e-6, 9007199254740993.0 };
    const size_t nn = sizeof nums / sizeof nums[0];
    switch (r % (nn + 5)) {
    case 0: return cJSON_CreateString("128");
    case 1: return cJSON_CreateNull();
    case 2: return cJSON_CreateTrue();
    case 3: return cJSON_CreateArray();
    case 4: return cJSON_CreateObject();
    default: return cJSON_CreateNumber(nums[r % (nn + 5) - 5]);
    }
}

static void test_load_fuzz_config_and_llama2c_header(const char *shared)
{
    static const char *keys[] = { "hidden_size", "intermediate_size", "num_hidden_layers",
                                  "num_attention_heads", "num_key_value_heads", "head_dim",
                                  "vocab_size", "max_position_embeddings", "rope_theta",
                                  "rms_norm_eps", "tie_word_embeddings", "bos_token_id",
                                  "eos_token_id", "rope_scaling", "model_type" };
    const int nk = (int)(sizeof keys / sizeof keys[0]);
    char dir[] = "/tmp/claq_load_fuzz_XXXXXX", path[1200], src[1100];
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        return;
    }
    snprintf(src, sizeof src, "%s/models/tinystories-656k/config.json", shared);
    char *orig = NULL;
    size_t len = 0;
    eng_err err = { 0 };
    CHECK(eng_st_read_text(src, 1 << 20, &orig, &len, &err) == 0, "%s", err.msg);
    snprintf(src, sizeof src, "%s/models/tinystories-656k/model.safetensors", shared);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK(symlink(src, path) == 0, "symlink");
    uint32_t rng = 777;
    int opened = 0, rejected = 0;
    for (int it = 0; orig && it < 400; it++) {
        cJSON *cfg = cJSON_Parse(orig);
        int edits = 1 + it % 3;
        for (int e = 0; e < edits; e++) {
            rng = rng * 1664525u + 1013904223u;
            const char *k = keys[(rng >> 8) % (uint32_t)nk];
            rng = rng * 1664525u + 1013904223u;
            cJSON_DeleteItemFromObjectCaseSensitive(cfg, k);
            cJSON_AddItemToObject(cfg, k, fuzz_value(rng >> 8));
        }
        char *text = cJSON_PrintUnformatted(cfg);
        cJSON_Delete(cfg);
        snprintf(path, sizeof path, "%s/config.json", dir);
        FILE *f = fopen(path, "wb");
        if (f && text) fputs(text, f);
        if (f) fclose(f);
        free(text);
        eng_model *m = NULL;
        memset(&err, 0, sizeof err);
        int rc = eng_model_open(&m, dir, &err);
        if (rc == 0) {
            opened++;
            CHECK(eng_config_validate(&m->cfg, dir, &err) == 0, "opened an invalid config");
            eng_model_close(m);
        } else {
            rejected++;
            CHECK(m == NULL && err.msg[0], "rc %d without a message", rc);
        }
    }
    free(orig);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);

    /* llama2.c: the real file with random header integers. */
    snprintf(src, sizeof src, "%s/models/stories260K.bin", shared);
    FILE *f = fopen(src, "rb");
    uint8_t *bin = malloc(1056540);
    size_t n = (f && bin) ? fread(bin, 1, 1056540, f) : 0;
    if (f) fclose(f);
    CHECK(n == 1056540, "read %s", src);
    snprintf(path, sizeof path, "%s/fuzz.bin", dir);
    static const int32_t vals[] = { 0, -1, 1, 2, 3, 4, 5, 8, 64, 172, 512, -512, 1 << 20,
                                    INT32_MAX, INT32_MIN, 0x616b3432 };
    const uint32_t nv = sizeof vals / sizeof vals[0];
    int32_t hdr[7];
    if (n == 1056540) memcpy(hdr, bin, sizeof hdr);
    /* Written once; each round rewrites only the 28-byte header in place (truncation is
     * covered by test_load_malformed.py). */
    int fd = n == 1056540 ? open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600) : -1;
    CHECK(n != 1056540 || (fd >= 0 && write(fd, bin, n) == (ssize_t)n), "write %s", path);
    for (int it = 0; fd >= 0 && it < 300; it++) {
        int32_t h[7];
        memcpy(h, hdr, sizeof h);
        for (int e = 0; e < 1 + it % 2; e++) {
            rng = rng * 1664525u + 1013904223u;
            int idx = (int)((rng >> 8) % 7);
            rng = rng * 1664525u + 1013904223u;
            h[idx] = vals[(rng >> 8) % nv];
        }
        CHECK(pwrite(fd, h, sizeof h, 0) == (ssize_t)sizeof h, "pwrite");
        eng_model *m = NULL;
        memset(&err, 0, sizeof err);
        int rc = eng_model_open(&m, path, &err);
        if (rc == 0) {
            opened++;
            eng_model_close(m);
        } else {
            rejected++;
            CHECK(m == NULL && err.msg[0], "rc %d without a message", rc);
        }
    }
    if (fd >= 0) close(fd);
    free(bin);
    unlink(path);
    rmdir(dir);
    CHECK(opened > 0 && rejected > 0, "opened %d rejected %d", opened, rejected);
    printf("fuzzed configs and llama2.c headers: %d opened, %d rejected with a message\n",
           opened, rejected);
}

int main(int argc, char **argv)
{
    if (argc > 1) return tool_main(argv[1]);
    const char *shared = getenv("CLAQ_SHARED");
    if (!shared || !*shared) {
        fprintf(stderr, "CLAQ_SHARED not set: skipping\n");
        return 77;
    }
    test_load_llama2c_stories260k(shared);
    test_load_hf_tinystories_tied_via_lm_head(shared);
    test_load_hf_small_lm_head_dim_and_spm(shared);
    test_load_rejects_missing_paths(shared);
    test_load_cold_weights(shared);
    test_st_parser_rejects_hostile_headers();
    test_st_parser_survives_mutated_real_header(shared);
    test_load_fuzz_config_and_llama2c_header(shared);
    if (g_fail) {
        fprintf(stderr, "%d check(s) failed\n", g_fail);
        return 1;
    }
    printf("all loader checks passed\n");
    return 0;
}
