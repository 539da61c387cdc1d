/* test_claq_file_rejects_corrupt.c — the packed file end to end on a real model, then abuse.
 * 1. stories260K (real weights, $CLAQ_SHARED) is quantized per column with a plain uniform grid
 *    (bits 2/3/4 by column, the largest |w| of each column kept as an fp16 outlier), written with
 *    eng_claq_write (tokenizer tok512.bin embedded), reopened with eng_model_open: config,
 *    embedding, norms and tokenizer bytes are identical, every linear unpacks bit-exactly to
 *    eng_qmatrix_dequant, and kern_matmul through the CPU backend equals the scalar reference.
 * 2. The file is truncated at ~60 lengths, has ~300 single bits flipped, and gets targeted edits
 *    (magic, version, size field, shapes in the directory, colmap, row pointers, outlier
 *    columns, non-finite codebook/outlier/embedding values): eng_model_open must return an error
 *    whose message names the file (and the tensor, for tensor damage) — never crash (run under
 *    ASan in CI) and never accept a broken index. Skips (77) without the shared folder. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eng_claq_file.h"
#include "kern_cpu_claq.h"
#include "kern_half.h"

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, \
    __LINE__); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)sz + 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) { free(b); b = NULL; }
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static int spill(const char *path, const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(b, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* Uniform per-column grid with bits 2 + j % 3 and the largest |w| kept as an outlier. */
static int quantize(const kern_matrix *w, eng_qmatrix *q)
{
    int64_t R = w->rows, C = w->cols;
    if (eng_qmatrix_alloc(q, R, C, NULL) || eng_qmatrix_grid_alloc(q, NULL)) return -1;
    for (int64_t j = 0; j < C; j++) {
        float lo = INFINITY, hi = -INFINITY, big = 0;
        int64_t at = 0;
        for (int64_t r = 0; r < R; r++) {
            float v = ((const float *)w->data)[r * C + j];
            if (v < lo) lo = v;
            if (v > hi) hi = v;
            if (fabsf(v) > big) { big = fabsf(v); at = r; }
        }
        int b = 2 + (int)(j % 3), K = 1 << b;
        q->bits[j] = (uint8_t)b;
        for (int e = 0; e < ENG_QM_CB; e++) {
            int ee = e < K ? e : K - 1;
            q->codebook[j * ENG_QM_CB + e] = kern_f32_to_f16(lo + (hi - lo) * (float)ee / (float)(K - 1));
        }
        if (eng_qmatrix_grid_fit_col(q, j)) return -1;   /* version 2 stores it as grid8 */
        for (int64_t r = 0; r < R; r++) {
            float v = ((const float *)w->data)[r * C + j];
            int best = 0;
            float bd = INFINITY;
            for (int e = 0; e < K; e++) {
                float d = fabsf(v - kern_f16_to_f32(q->codebook[j * ENG_QM_CB + e]));
                if (d < bd) { bd = d; best = e; }
            }
            q->codes[r * C + j] = (uint8_t)best;
        }
        if (eng_qmatrix_add_outlier(q, (uint32_t)at, (uint32_t)j,
                                    kern_f32_to_f16(((const float *)w->data)[at * C + j])))
            return -1;
    }
    return 0;
}

/* Opens a damaged copy; it must fail with a message naming the file (and `want` if given). */
static void expect_reject(const char *tmp, const unsigned char *b, size_t n, const char *want,
                          const char *what)
{
    if (spill(tmp, b, n)) { CHECK(0, "cannot write %s", tmp); return; }
    eng_model *m = NULL;
    eng_err err = {0};
    int rc = eng_model_open(&m, tmp, &err);
    CHECK(rc != 0 && m == NULL, "%s: damaged file accepted", what);
    CHECK(rc == 0 || strstr(err.msg, tmp) != NULL, "%s: message does not name the file: %s", what,
          err.msg);
    CHECK(rc == 0 || !want || strstr(err.msg, want) != NULL, "%s: message lacks \"%s\": %s", what,
          want, err.msg);
    eng_model_close(m);
}

/* Opens a damaged copy that may legitimately load (a flipped code bit); must not crash. */
static void expect_clean(const char *tmp, const unsigned char *b, size_t n)
{
    if (spill(tmp, b, n)) return;
    eng_model *m = NULL;
    eng_err err = {0};
    int rc = eng_model_open(&m, tmp, &err);
    CHECK(rc != 0 || m != NULL, "rc 0 without a model");
    CHECK(rc == 0 || err.msg[0], "error without message");
    eng_model_close(m);
}

static uint64_t rd64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Byte offset in the file of section `sec` of tensor `name` (via the directory). */
static size_t sec_at(const unsigned char *b, const char *name, const char *sec)
{
    uint64_t jl = rd64(b + 24), doff = rd64(b + 32);
    cJSON *root = cJSON_ParseWithLength((const char *)b + 64, (size_t)jl);
    size_t at = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(root, "tensors")) {
        if (strcmp(cJSON_GetObjectItem(t, "name")->valuestring, name)) continue;
        const cJSON *s = cJSON_GetObjectItem(t, "sections");
        const cJSON *a = s ? cJSON_GetObjectItem(s, sec) : cJSON_GetObjectItem(t, "data");
        at = (size_t)(doff + (uint64_t)a->child->valuedouble);
    }
    cJSON_Delete(root);
    return at;
}

/* Same-length edit of the directory JSON: replaces the first `from` with `to`. */
static int json_edit(unsigned char *b, const char *from, const char *to)
{
    uint64_t jl = rd64(b + 24);
    char *j = (char *)b + 64;
    for (uint64_t i = 0; i + strlen(from) <= jl; i++)
        if (!memcmp(j + i, from, strlen(from))) {
            memcpy(j + i, to, strlen(to));
            return 0;
        }
    return -1;
}

/* Writes the quantized model in format version ver, reopens and checks it, then damages it. */
static void run_version(int ver, eng_model *src, eng_qmatrix *qs, eng_qmatrix **qp, int nm,
                        const char *tokp, const char *out, const char *tmp)
{
    const int L = src->cfg.n_layers;
    eng_claq_meta meta = {.method = "rtn", .bits = 3.0, .outliers = 1, .or_budget = 1.0,
                          .nsamples = 0, .seqlen = 0, .seed = 42, .calib = "",
                          .source = "stories260K.bin", .format_version = ver};
    eng_err err = {0};
    int rc = eng_claq_write(out, src, qp, &meta, &err);
    CHECK(rc == 0, "write: %s", err.msg);

    eng_model *pm = NULL;
    rc = eng_model_open(&pm, out, &err);
    CHECK(rc == 0, "reopen: %s", err.msg);
    if (rc == 0) {
        const eng_config *a = &src->cfg, *b = &pm->cfg;
        CHECK(a->dim == b->dim && a->hidden_dim == b->hidden_dim && a->n_layers == b->n_layers &&
              a->n_heads == b->n_heads && a->n_kv_heads == b->n_kv_heads &&
              a->head_dim == b->head_dim && a->vocab_size == b->vocab_size &&
              a->seq_len == b->seq_len && a->rope_theta == b->rope_theta &&
              a->norm_eps == b->norm_eps && a->rope_style == b->rope_style &&
              a->tie_embeddings == b->tie_embeddings && a->bos_id == b->bos_id &&
              a->eos_id == b->eos_id && !strcmp(a->arch, b->arch), "config differs");
        CHECK(pm->format == ENG_FMT_CLAQ, "format");
        const eng_claq_model_info *info = pm->ext;
        CHECK(info && info->meta.format_version == ver, "version %d read as %d", ver,
              info ? info->meta.format_version : -1);
        size_t eb = (size_t)a->vocab_size * (size_t)a->dim * kern_dtype_size(src->w.tok_embed.dtype);
        CHECK(pm->w.tok_embed.dtype == src->w.tok_embed.dtype &&
              !memcmp(pm->w.tok_embed.data, src->w.tok_embed.data, eb), "embedding differs");
        CHECK(!memcmp(pm->w.final_norm, src->w.final_norm, sizeof(float) * (size_t)a->dim), "norm");
        for (int l = 0; l < L; l++)
            CHECK(!memcmp(pm->w.layers[l].attn_norm, src->w.layers[l].attn_norm, 4 * (size_t)a->dim) &&
                  !memcmp(pm->w.layers[l].ffn_norm, src->w.layers[l].ffn_norm, 4 * (size_t)a->dim),
                  "layer %d norms", l);
        size_t tn = 0;
        unsigned char *tb = slurp(tokp, &tn);
        CHECK(tb && pm->tokenizer_blob && pm->tokenizer_blob_len == tn &&
              !memcmp(pm->tokenizer_blob, tb, tn) && !strcmp(pm->tokenizer_blob_name, "tok512.bin"),
              "embedded tokenizer differs");
        free(tb);
        kern_backend be = {0};
        CHECK(kern_cpu_backend_create(&be, 2) == 0, "backend");
        for (int i = 0; i < nm; i++) {
            const kern_matrix *w = &pm->w.layers[i / ENG_LIN_COUNT].lin[i % ENG_LIN_COUNT];
            size_t n = (size_t)(w->rows * w->cols);
            float *x1 = malloc(n * 4), *x2 = malloc(n * 4);
            eng_qmatrix_dequant(&qs[i], x1);
            eng_claq_unpack(w->claq, x2);
            CHECK(w->dtype == KERN_CLAQ && !memcmp(x1, x2, n * 4), "matrix %d unpack != dequant", i);
            /* The backend's dispatch reaches the packed kernels and agrees with the oracle. */
            float x[3 * 1024], y1[3 * 1024], y2[3 * 1024];
            for (int t = 0; t < 3 * w->cols; t++) x[t] = sinf((float)t * 0.37f);
            CHECK(kern_matmul(&be, w, x, 3, y1) == 0, "kern_matmul");
            CHECK(kern_cpu__claq_matmul_isa(KERN_ISA_SCALAR, NULL, w->claq, x, 3, y2) == 0, "ref");
            CHECK(!memcmp(y1, y2, sizeof(float) * 3 * (size_t)w->rows), "matrix %d: backend != ref", i);
            free(x1);
            free(x2);
        }
        kern_backend_destroy(&be);
    }
    eng_model_close(pm);

    size_t n = 0;
    unsigned char *orig = slurp(out, &n), *b = malloc(n);
    CHECK(orig && b, "slurp");
    if (orig && b) {
        /* Truncation anywhere is rejected (the header records the size). */
        size_t cuts[] = {0, 1, 8, 63, 64, 65, 100, (size_t)rd64(orig + 32), n / 2, n - 64, n - 1};
        for (unsigned i = 0; i < sizeof cuts / sizeof cuts[0]; i++)
            expect_reject(tmp, orig, cuts[i], NULL, "truncated");
        for (int i = 1; i < 50; i++) expect_reject(tmp, orig, n * (size_t)i / 50, NULL, "truncated");
        memcpy(b, orig, n); b[0] ^= 1;       expect_reject(tmp, b, n, NULL, "magic");
        memcpy(b, orig, n); b[8] = 9;        expect_reject(tmp, b, n, "version", "version");
        memcpy(b, orig, n); b[48] ^= 1;      expect_reject(tmp, b, n, NULL, "size field");
        memcpy(b, orig, n); b[24] ^= 0x40;   expect_reject(tmp, b, n, NULL, "json length");
        memcpy(b, orig, n);
        CHECK(json_edit(b, "\"name\":\"layers.0.k_proj\",\"dtype\":\"claq\",\"rows\":32",
                        "\"name\":\"layers.0.k_proj\",\"dtype\":\"claq\",\"rows\":31") == 0, "edit");
        expect_reject(tmp, b, n, "layers.0.k_proj", "rows vs config");
        memcpy(b, orig, n);
        CHECK(json_edit(b, "\"layers.1.up_proj\",\"dtype\":\"claq\",\"rows\":172,\"cols\":64,\"cols4\":2",
                        "\"layers.1.up_proj\",\"dtype\":\"claq\",\"rows\":172,\"cols\":64,\"cols4\":3")
              == 0, "edit2");
        expect_reject(tmp, b, n, "layers.1.up_proj", "column counts");
        memcpy(b, orig, n);
        CHECK(json_edit(b, "\"dim\":64", "\"dim\":65") == 0, "edit3");
        expect_reject(tmp, b, n, NULL, "config dim");
        memcpy(b, orig, n);
        CHECK(json_edit(b, "\"seq_len\":512", "\"seq_len\":9e9") == 0, "edit5");
        expect_reject(tmp, b, n, "seq_len", "huge number");
        memcpy(b, orig, n);
        CHECK(json_edit(b, "\"tensors\"", "\"tensorz\"") == 0, "edit4");
        expect_reject(tmp, b, n, NULL, "no directory");
        memcpy(b, orig, n);   /* read as false, it would have dropped the tied head */
        CHECK(json_edit(b, "\"tie_embeddings\":true", "\"tie_embeddings\":1234") == 0, "edit7");
        expect_reject(tmp, b, n, "tie_embeddings", "tie_embeddings not a boolean");
        size_t at;
        if (ver == 1) {
            at = sec_at(orig, "layers.0.q_proj", "colmap");
            memcpy(b, orig, n); b[at] = 0xf0; b[at + 1] = b[at + 2] = b[at + 3] = 0xff;
            expect_reject(tmp, b, n, "layers.0.q_proj", "colmap out of range");
            memcpy(b, orig, n); memcpy(b + at, b + at + 4, 4);
            expect_reject(tmp, b, n, "layers.0.q_proj", "colmap duplicate");
            at = sec_at(orig, "layers.2.v_proj", "rowptr");
            memcpy(b, orig, n); b[at + 7] = 0x7f;
            expect_reject(tmp, b, n, "layers.2.v_proj", "row pointer");
            at = sec_at(orig, "layers.4.gate_proj", "cb");
            memcpy(b, orig, n); b[at] = 0x00; b[at + 1] = 0x7c;
            expect_reject(tmp, b, n, "layers.4.gate_proj", "codebook inf");
        } else {
            at = sec_at(orig, "layers.0.q_proj", "widths");   /* code 3 = 5 bits */
            memcpy(b, orig, n); b[at] |= 3;
            expect_reject(tmp, b, n, "layers.0.q_proj", "width code");
            memcpy(b, orig, n); b[at] ^= 1;   /* a column changes width: counts disagree */
            expect_reject(tmp, b, n, "layers.0.q_proj", "widths vs counts");
            at = sec_at(orig, "layers.2.v_proj", "rowcnt");
            memcpy(b, orig, n); b[at + 1] = 0x7f;
            expect_reject(tmp, b, n, "layers.2.v_proj", "outlier count");
            memcpy(b, orig, n); b[at] ^= 1;
            expect_reject(tmp, b, n, "layers.2.v_proj", "outlier counts sum");
            at = sec_at(orig, "layers.4.gate_proj", "cb");   /* lo, step of the first column */
            memcpy(b, orig, n); b[at + 2] = 0x00; b[at + 3] = 0x7c;
            expect_reject(tmp, b, n, "layers.4.gate_proj", "grid step inf");
            memcpy(b, orig, n); b[at + 3] |= 0x80;
            expect_reject(tmp, b, n, "layers.4.gate_proj", "grid step negative");
            memcpy(b, orig, n); b[at + 0] = 0x00; b[at + 1] = 0x7c;
            expect_reject(tmp, b, n, "layers.4.gate_proj", "grid lo inf");
            memcpy(b, orig, n);
            CHECK(json_edit(b, "\"cb_form\":\"grid8\"", "\"cb_form\":\"grid9\"") == 0, "edit6");
            expect_reject(tmp, b, n, "cb_form", "unknown codebook form");
        }
        at = sec_at(orig, "layers.3.down_proj", "outcol");
        memcpy(b, orig, n); b[at] = 0xff; b[at + 1] = 0xff;
        expect_reject(tmp, b, n, "layers.3.down_proj", "outlier column");
        at = sec_at(orig, "layers.4.o_proj", "outval");
        memcpy(b, orig, n); b[at] = 0x00; b[at + 1] = 0x7e;
        expect_reject(tmp, b, n, "layers.4.o_proj", "outlier NaN");
        at = sec_at(orig, "tok_embeddings", NULL);
        memcpy(b, orig, n); b[at + 3] = 0x7f; b[at + 2] = 0xc0;
        expect_reject(tmp, b, n, "tok_embeddings", "embedding NaN");
        /* Single bit flips everywhere: clean error or a valid model, never a crash. */
        uint64_t s = 12345;
        for (int i = 0; i < 300; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            size_t pos = i < 150 ? (size_t)((s >> 33) % (rd64(orig + 32) + 64)) : (size_t)((s >> 33) % n);
            memcpy(b, orig, n);
            b[pos] ^= (unsigned char)(1u << ((s >> 20) & 7));
            expect_clean(tmp, b, n);
        }
    }
    free(orig);
    free(b);
    unlink(tmp);
}

int main(void)
{
    const char *shared = getenv("CLAQ_SHARED");
    char model[4096], tokp[4096], dir[] = "/tmp/claq_corruptXXXXXX", out[4200], tmp[4200];
    if (!shared) shared = "../shared";
    snprintf(model, sizeof model, "%s/models/stories260K.bin", shared);
    snprintf(tokp, sizeof tokp, "%s/models/tok512.bin", shared);
    if (access(model, R_OK) || access(tokp, R_OK)) {
        printf("skip: %s not found\n", model);
        return 77;
    }
    if (!mkdtemp(dir)) return 1;
    snprintf(out, sizeof out, "%s/s260k.claq", dir);
    snprintf(tmp, sizeof tmp, "%s/damaged.claq", dir);

    eng_err err = {0};
    eng_model *src = NULL;
    if (eng_model_open(&src, model, &err)) {
        fprintf(stderr, "open %s: %s\n", model, err.msg);
        return 1;
    }
    snprintf(src->tokenizer_path, sizeof src->tokenizer_path, "%s", tokp);
    int L = src->cfg.n_layers, nm = L * ENG_LIN_COUNT;
    eng_qmatrix *qs = calloc((size_t)nm, sizeof *qs);
    eng_qmatrix **qp = calloc((size_t)nm, sizeof *qp);
    for (int i = 0; i < nm; i++) {
        qp[i] = &qs[i];
        const kern_matrix *w = &src->w.layers[i / ENG_LIN_COUNT].lin[i % ENG_LIN_COUNT];
        CHECK(w->dtype == KERN_F32 && quantize(w, &qs[i]) == 0, "quantize %d", i);
    }
    for (int ver = 1; ver <= 2; ver++) run_version(ver, src, qs, qp, nm, tokp, out, tmp);
    unlink(out);
    rmdir(dir);
    for (int i = 0; i < nm; i++) eng_qmatrix_free(&qs[i]);
    free(qs);
    free(qp);
    eng_model_close(src);
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("ok: stories260K round-trips through the packed file; all damage rejected cleanly\n");
    return 0;
}
