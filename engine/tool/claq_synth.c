/* claq_synth.c — `claq synth`: synthetic models of real architectures' shapes for speed and
 * memory work (numbers from them speak to speed only, never quality).
 *   claq synth --shape llama-7b|tinyllama-1.1b|yi-6b|llama3.2-1b|llama3-8b|mistral-7b|small|
 *              llama3-tiny --out DIR --tokenizer PATH
 *              [--layers N] [--seed S] [--threads T]
 *     writes an HF directory: config.json (generation_config.json when the shape lists several
 *     eos ids), model.safetensors (F16) and a copy of the tokenizer (and of the
 *     tokenizer_config.json beside it).
 *     Weights are Student-t (nu = 5, a scale mixture of normals) with std ~0.02, and ~0.5 % of the
 *     input columns of every matrix carry 8x larger weights (LLaMA's outlier-heavy channels).
 *   claq synth --pack --model PATH --bits B --out FILE [--threads T] [--seed S]
 *     the fast path: per-column K-Means only (eng_quant_kmeans_matrix, no calibration, no GPTQ, no
 *     outliers), fractional B gives the top-outlier-count columns 4 bits (AP-style), the packed
 *     file is written with eng_claq_write. Columns are quantized in parallel.
 * Front end on the main thread; generation and K-Means run on a kern_pool. Deterministic for a
 * given seed whatever the thread count (every row/column has its own RNG stream). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "claq_tool.h"
#include "kern_pool.h"
#include "eng_claq_file.h"
#include "quant.h"
#include "eng_model.h"
#include "eng_tokenizer.h"
#include "kern_half.h"

typedef struct synth_shape {
    const char *name;
    int dim, hidden, layers, heads, kv_heads, vocab, seq;
    double theta, eps;
    const char *model_type;   /* config.json model_type / architectures[0] */
    const char *arch;
    int tie;                  /* tie_word_embeddings: no lm_head tensor */
    int bos;
    const char *eos;          /* eos_token_id as JSON: an id or a list */
    const char *rope_scaling; /* JSON object, or NULL */
} synth_shape;

#define L3_ROPE(f) "{\"rope_type\": \"llama3\", \"factor\": " #f ", \"low_freq_factor\": 1.0, " \
                   "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}"
#define L3_EOS "[128001, 128008, 128009]"
/* The real models' config.json numbers (LLaMA-3.x: Meta's HF releases; Mistral v0.3). */
static const synth_shape shapes[] = {
    {"llama-7b", 4096, 11008, 32, 32, 32, 32000, 2048, 10000.0, 1e-6, "llama", "LlamaForCausalLM",
     0, 1, "2", NULL},
    {"tinyllama-1.1b", 2048, 5632, 22, 32, 4, 32000, 2048, 10000.0, 1e-5, "llama",
     "LlamaForCausalLM", 0, 1, "2", NULL},
    {"yi-6b", 4096, 11008, 32, 32, 4, 64000, 4096, 5000000.0, 1e-5, "llama", "LlamaForCausalLM",
     0, 1, "2", NULL},
    {"llama3.2-1b", 2048, 8192, 16, 32, 8, 128256, 131072, 500000.0, 1e-5, "llama",
     "LlamaForCausalLM", 1, 128000, L3_EOS, L3_ROPE(32.0)},
    {"llama3-8b", 4096, 14336, 32, 32, 8, 128256, 131072, 500000.0, 1e-5, "llama",
     "LlamaForCausalLM", 0, 128000, L3_EOS, L3_ROPE(8.0)},
    {"mistral-7b", 4096, 14336, 32, 32, 8, 32768, 32768, 1000000.0, 1e-5, "mistral",
     "MistralForCausalLM", 0, 1, "2", NULL},
    {"small", 512, 1376, 4, 8, 4, 32000, 2048, 10000.0, 1e-5, "llama", "LlamaForCausalLM", 0, 1,
     "2", NULL},
    /* LLaMA-3.2's layout (vocabulary, GQA, tied head, llama3 RoPE) at test size */
    {"llama3-tiny", 64, 192, 2, 4, 2, 128256, 8192, 500000.0, 1e-5, "llama", "LlamaForCausalLM", 1,
     128000, L3_EOS, L3_ROPE(32.0)},
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static inline uint64_t mix64(uint64_t z)   /* splitmix64 finalizer */
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ---- weight generation ---- */
typedef struct gen_job {
    uint16_t *out;         /* [rows][cols] fp16 */
    int64_t rows, cols;
    uint64_t seed;         /* tensor seed */
    float std;
    const float *tscale;   /* [256] Student-t scale-mixture quantiles */
    const uint8_t *hot;    /* [cols] 1 for an outlier-heavy input column */
    int norm;              /* 1: a norm vector (around 1.0) */
} gen_job;

static void gen_task(void *arg, int64_t r, int worker)
{
    (void)worker;
    const gen_job *j = arg;
    uint64_t s = mix64(j->seed ^ mix64((uint64_t)r + 1));
    uint16_t *o = j->out + r * j->cols;
    for (int64_t c = 0; c < j->cols; c++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        /* Irwin-Hall(3) approximates a unit normal; the scale from a random quantile of
         * sqrt(nu / chi2_nu) (the top byte) turns it into Student-t. */
        uint64_t u = s;
        float n = (float)(u & 0xffff) + (float)((u >> 16) & 0xffff) + (float)((u >> 32) & 0xffff);
        n = (n - 1.5f * 65535.0f) / 65535.0f * 2.0f;   /* 3 uniforms: var 3/12 -> 1 */
        float v = j->norm ? 1.0f + 0.05f * n
                          : j->std * n * j->tscale[(u >> 56) & 255] * (j->hot[c] ? 8.0f : 1.0f);
        o[c] = kern_f32_to_f16(v);
    }
}

static void student_table(float *t)
{
    /* 256 quantiles of sqrt(nu / chi2_nu), nu = 5, normalised to unit variance of the mixture
     * (Var t_nu = nu / (nu - 2)). Quantiles of chi2_5 by bisection on the CDF. */
    const double nu = 5.0;
    for (int i = 0; i < 256; i++) {
        double p = (i + 0.5) / 256.0, lo = 1e-6, hi = 100.0;
        for (int it = 0; it < 80; it++) {
            double x = 0.5 * (lo + hi), h = x / 2.0;
            /* chi2 with 5 dof: CDF = P(2.5, x/2), regularized lower gamma by series */
            double sum = 0, term = 1.0 / 2.5;
            for (int k = 0; k < 200; k++) {
                sum += term;
                term *= h / (2.5 + k + 1);
            }
            double cdf = sum * exp(-h + 2.5 * log(h) - lgamma(2.5));
            if (cdf < p) lo = x; else hi = x;
        }
        t[i] = (float)sqrt(nu / (0.5 * (lo + hi)) / (nu / (nu - 2.0)));
    }
}

static int write_json_config(const char *dir, const synth_shape *s, int layers)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "w");
    if (!f) return -1;
    fprintf(f, "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n"
               "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n  \"num_hidden_layers\": %d,\n"
               "  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n  \"vocab_size\": %d,\n"
               "  \"max_position_embeddings\": %d,\n  \"rms_norm_eps\": %g,\n  \"rope_theta\": %.1f,\n"
               "  \"tie_word_embeddings\": %s,\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %s,\n"
               "  \"rope_scaling\": %s,\n"
               "  \"hidden_act\": \"silu\",\n  \"torch_dtype\": \"float16\",\n"
               "  \"claq_synthetic\": \"%s: random weights, for speed measurements only\"\n}\n",
            s->arch, s->model_type, s->dim, s->hidden, layers, s->heads, s->kv_heads, s->vocab,
            s->seq, s->eps, s->theta, s->tie ? "true" : "false", s->bos, s->eos,
            s->rope_scaling ? s->rope_scaling : "null", s->name);
    if (fclose(f)) return -1;
    if (s->eos[0] != '[') return 0;
    /* a list of end ids lives in generation_config.json too, as Meta ships it */
    snprintf(p, sizeof p, "%s/generation_config.json", dir);
    f = fopen(p, "w");
    if (!f) return -1;
    fprintf(f, "{\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %s,\n  \"do_sample\": true,\n"
               "  \"temperature\": 0.6,\n  \"top_p\": 0.9\n}\n", s->bos, s->eos);
    return fclose(f);
}

static int copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = a ? fopen(to, "wb") : NULL;
    if (!a || !b) {
        if (a) fclose(a);
        return -1;
    }
    char buf[65536];
    size_t n;
    int rc = 0;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0)
        if (fwrite(buf, 1, n, b) != n) rc = -1;
    fclose(a);
    if (fclose(b)) rc = -1;
    return rc;
}

typedef struct tdesc { char name[96]; int64_t rows, cols; int norm; } tdesc;

static int synth_hf(const synth_shape *s, int layers, const char *dir, const char *tok,
                    uint64_t seed, int threads)
{
    if (access(tok, R_OK) != 0) {   /* before anything is written into dir */
        fprintf(stderr, "claq synth: cannot read tokenizer %s: %s\n", tok, strerror(errno));
        return 1;
    }
    mkdir(dir, 0755);
    if (write_json_config(dir, s, layers)) {
        fprintf(stderr, "claq synth: cannot write %s/config.json\n", dir);
        return 1;
    }
    char p[4200];
    const char *base = strrchr(tok, '/');
    snprintf(p, sizeof p, "%s/%s", dir, base ? base + 1 : tok);
    if (copy_file(tok, p)) {
        fprintf(stderr, "claq synth: cannot copy tokenizer %s to %s\n", tok, p);
        return 1;
    }
    /* tokenizer_config.json beside the tokenizer (bos/eos names, chat template) comes along */
    char from[4200];
    snprintf(from, sizeof from, "%.*stokenizer_config.json", base ? (int)(base - tok + 1) : 0,
             tok);
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    FILE *probe = fopen(from, "rb");
    if (probe) {
        fclose(probe);
        if (copy_file(from, p)) {
            fprintf(stderr, "claq synth: cannot copy %s to %s\n", from, p);
            return 1;
        }
    }
    int64_t nt = 3 - (s->tie != 0) + (int64_t)layers * 9, k = 0;
    tdesc *td = calloc((size_t)nt, sizeof *td);
    if (!td) return 1;
    int64_t q = (int64_t)s->heads * (s->dim / s->heads), kv = (int64_t)s->kv_heads * (s->dim / s->heads);
    snprintf(td[k].name, 96, "model.embed_tokens.weight"); td[k].rows = s->vocab; td[k++].cols = s->dim;
    if (!s->tie) {
        snprintf(td[k].name, 96, "lm_head.weight"); td[k].rows = s->vocab; td[k++].cols = s->dim;
    }
    snprintf(td[k].name, 96, "model.norm.weight"); td[k].rows = s->dim; td[k].cols = 1; td[k++].norm = 1;
    for (int l = 0; l < layers; l++) {
        static const char *const nm[9] = {"input_layernorm", "post_attention_layernorm",
            "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
            "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
        int64_t r[9] = {s->dim, s->dim, q, kv, kv, s->dim, s->hidden, s->hidden, s->dim};
        int64_t c[9] = {1, 1, s->dim, s->dim, s->dim, q, s->dim, s->dim, s->hidden};
        for (int i = 0; i < 9; i++) {
            snprintf(td[k].name, 96, "model.layers.%d.%s.weight", l, nm[i]);
            td[k].rows = r[i];
            td[k].cols = c[i];
            td[k++].norm = i < 2;
        }
    }
    /* safetensors header: offsets in order, padded with spaces to a multiple of 64. */
    size_t cap = (size_t)nt * 160 + 256, len = 0;
    char *hdr = malloc(cap);
    uint64_t off = 0;
    len += (size_t)snprintf(hdr + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int64_t i = 0; i < nt; i++) {
        uint64_t nb = (uint64_t)td[i].rows * (uint64_t)td[i].cols * 2;
        if (td[i].norm)
            len += (size_t)snprintf(hdr + len, cap - len, ",\"%s\":{\"dtype\":\"F16\",\"shape\":[%lld],"
                                    "\"data_offsets\":[%llu,%llu]}", td[i].name, (long long)td[i].rows,
                                    (unsigned long long)off, (unsigned long long)(off + nb));
        else
            len += (size_t)snprintf(hdr + len, cap - len,
                                    ",\"%s\":{\"dtype\":\"F16\",\"shape\":[%lld,%lld],"
                                    "\"data_offsets\":[%llu,%llu]}", td[i].name, (long long)td[i].rows,
                                    (long long)td[i].cols, (unsigned long long)off,
                                    (unsigned long long)(off + nb));
        off += nb;
    }
    len += (size_t)snprintf(hdr + len, cap - len, "}");
    while ((len + 8) % 64) hdr[len++] = ' ';
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    FILE *f = fopen(p, "wb");
    unsigned char l8[8];
    for (int i = 0; i < 8; i++) l8[i] = (unsigned char)((uint64_t)len >> (8 * i));
    int io = !f || fwrite(l8, 1, 8, f) != 8 || fwrite(hdr, 1, len, f) != len;
    free(hdr);
    float tscale[256];
    student_table(tscale);
    kern_pool *pool = NULL;
    if (kern_pool_create(&pool, threads)) io = 1;
    double t0 = now_s(), bytes = 0;
    for (int64_t i = 0; i < nt && !io; i++) {
        size_t n = (size_t)(td[i].rows * td[i].cols);
        uint16_t *buf = malloc(n * 2);
        uint8_t *hot = calloc((size_t)td[i].cols, 1);
        if (!buf || !hot) { free(buf); free(hot); io = 1; break; }
        /* Outlier-heavy input columns: the same hidden channels in every matrix reading the
         * residual stream (LLaMA's pattern), their own set for down_proj. */
        uint64_t hs = seed ^ (uint64_t)td[i].cols * 0x9e37ull;
        for (int64_t c = 0; c < td[i].cols; c++) hot[c] = mix64(hs + (uint64_t)c) % 200 == 0;
        gen_job j = {.out = buf, .rows = td[i].rows, .cols = td[i].cols,
                     .seed = mix64(seed ^ mix64((uint64_t)i + 77)), .std = 0.02f, .tscale = tscale,
                     .hot = hot, .norm = td[i].norm};
        if (td[i].norm) { j.rows = 1; j.cols = td[i].rows; }
        kern_pool_run(pool, j.rows, gen_task, &j);
        if (fwrite(buf, 2, n, f) != n) io = 1;
        bytes += (double)n * 2;
        free(buf);
        free(hot);
    }
    kern_pool_destroy(pool);
    if (f && fclose(f)) io = 1;
    free(td);
    if (io) {
        fprintf(stderr, "claq synth: writing %s failed\n", p);
        return 1;
    }
    printf("wrote %s: %s shape, %d layers, %.2f GB F16 in %.1f s (synthetic: speed only, never "
           "quality)\n", dir, s->name, layers, bytes / 1e9, now_s() - t0);
    return 0;
}

/* ---- --pack: per-column K-Means ---- */
static float wval(const kern_matrix *w, int64_t r, int64_t c)
{
    int64_t i = r * w->cols + c;
    if (w->dtype == KERN_F32) return ((const float *)w->data)[i];
    uint16_t h = ((const uint16_t *)w->data)[i];
    return w->dtype == KERN_F16 ? kern_f16_to_f32(h) : kern_bf16_to_f32(h);
}

/* AP-style bits: the columns with the most |w| >= 13 * mean|W| get 4 bits, the rest `low`. */
static void assign_bits(const kern_matrix *w, double bits, uint8_t *out)
{
    int low = bits >= 3.0 ? 3 : 2;
    if (bits >= 4.0) low = 4;
    int64_t C = w->cols, R = w->rows, n4 = 0;
    if (low < 4) n4 = (int64_t)floor((double)C * (bits - low) / (4.0 - low) + 0.5);
    for (int64_t c = 0; c < C; c++) out[c] = (uint8_t)low;
    if (n4 <= 0) return;
    double mean = 0;
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++) mean += fabs(wval(w, r, c));
    mean /= (double)(R * C);
    int64_t *cnt = calloc((size_t)C, sizeof *cnt);
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++) cnt[c] += fabs(wval(w, r, c)) >= 13.0 * mean;
    for (int64_t i = 0; i < n4; i++) {   /* n4 is small (a few %): repeated selection is fine */
        int64_t best = -1;
        for (int64_t c = 0; c < C; c++)
            if (out[c] != 4 && (best < 0 || cnt[c] > cnt[best])) best = c;
        out[best] = 4;
    }
    free(cnt);
}

/* embed_bits: 0, 8, 7 or 6 (eng_claq_meta.embed_bits); embed_shared: the tied packed head is the
 * embedding too */
static int synth_pack(const char *model, const char *tok, double bits, double head_bits,
                      int embed_bits, int embed_shared, int cb_bits, const char *out,
                      uint64_t seed, int threads)
{
    eng_model *m = NULL;
    eng_err err = {0};
    double t0 = now_s();
    if (eng_model_open(&m, model, &err)) {
        fprintf(stderr, "claq synth --pack: %s\n", err.msg);
        return 1;
    }
    if (tok && *tok) {
        /* the packed file carries this tokenizer (a llama2.c checkpoint has none beside it),
         * as claq quantize --tokenizer does */
        eng_tokenizer *t = NULL;
        if (eng_model_open_tokenizer(m, tok, &t, &err) ||
            snprintf(m->tokenizer_path, sizeof m->tokenizer_path, "%s", tok) >=
                (int)sizeof m->tokenizer_path) {
            fprintf(stderr, "claq synth --pack: %s\n", err.msg[0] ? err.msg :
                    "--tokenizer path too long");
            eng_tokenizer_close(t);
            eng_model_close(m);
            return 1;
        }
        eng_tokenizer_close(t);
    }
    int L = m->cfg.n_layers, rc = 0;
    int64_t nm = (int64_t)L * ENG_LIN_COUNT;
    /* one more matrix at the end: the output head, with --head-bits */
    eng_qmatrix *qs = calloc((size_t)nm + 1, sizeof *qs);
    eng_qmatrix **qp = calloc((size_t)nm, sizeof *qp);
    kern_pool *pool = NULL;
    if (!qs || !qp || kern_pool_create(&pool, threads)) rc = 1;
    for (int64_t i = 0; i < nm && !rc; i++) {
        const kern_matrix *w = &m->w.layers[i / ENG_LIN_COUNT].lin[i % ENG_LIN_COUNT];
        qp[i] = &qs[i];
        if (w->dtype == KERN_CLAQ || eng_qmatrix_alloc(&qs[i], w->rows, w->cols, &err) ||
            (cb_bits == 8 && eng_qmatrix_grid_alloc(&qs[i], &err))) {
            fprintf(stderr, "claq synth --pack: matrix %lld: %s\n", (long long)i,
                    w->dtype == KERN_CLAQ ? "already packed" : err.msg);
            rc = 1;
            break;
        }
        assign_bits(w, bits, qs[i].bits);
        if (eng_quant_kmeans_matrix(w, seed ^ (uint64_t)i, pool, &qs[i], &err)) {
            fprintf(stderr, "claq synth --pack: layers.%lld.%s: %s\n",
                    (long long)(i / ENG_LIN_COUNT), eng_linear_name((eng_linear)(i % ENG_LIN_COUNT)),
                    err.msg);
            rc = 1;
        }
        if ((i + 1) % ENG_LIN_COUNT == 0)
            fprintf(stderr, "\rlayer %lld/%d quantized (%.1f s)", (long long)(i / ENG_LIN_COUNT) + 1,
                    L, now_s() - t0);
    }
    if (!rc && head_bits > 0) {   /* the output head: the same per-column K-Means */
        const kern_matrix *w = &m->w.output;
        if (w->dtype == KERN_CLAQ || eng_qmatrix_alloc(&qs[nm], w->rows, w->cols, &err) ||
            (cb_bits == 8 && eng_qmatrix_grid_alloc(&qs[nm], &err))) {
            fprintf(stderr, "claq synth --pack: output head: %s\n",
                    w->dtype == KERN_CLAQ ? "already packed" : err.msg);
            rc = 1;
        } else {
            assign_bits(w, head_bits, qs[nm].bits);
            if (eng_quant_kmeans_matrix(w, seed ^ 0x4eadull, pool, &qs[nm], &err)) {
                fprintf(stderr, "claq synth --pack: output head: %s\n", err.msg);
                rc = 1;
            }
        }
    }
    fprintf(stderr, "\n");
    if (!rc) {
        eng_claq_meta meta = {.bits = bits, .or_budget = 0, .seed = seed,
                              .head = head_bits > 0 ? &qs[nm] : NULL, .embed_bits = embed_bits,
                              .embed_shared = embed_shared};
        snprintf(meta.method, sizeof meta.method, "synth-kmeans");
        snprintf(meta.source, sizeof meta.source, "%s", model);
        meta.quant_seconds = now_s() - t0;
        if (eng_claq_write(out, m, qp, &meta, &err)) {
            fprintf(stderr, "claq synth --pack: %s\n", err.msg);
            rc = 1;
        }
    }
    if (!rc)
        printf("wrote %s: per-column K-Means %.2f bits, %d layers in %.1f s (no calibration: "
               "speed only, never quality)\n", out, bits, L, now_s() - t0);
    kern_pool_destroy(pool);
    for (int64_t i = 0; qs && i <= nm; i++) eng_qmatrix_free(&qs[i]);
    free(qs);
    free(qp);
    eng_model_close(m);
    return rc;
}

int claq_cmd_synth(int argc, char **argv)
{
    claq_arg spec[] = {
        {"--shape", 1, NULL, "llama-7b | tinyllama-1.1b | yi-6b | llama3.2-1b | llama3-8b | "
                             "mistral-7b | small | llama3-tiny"},
        {"--out", 1, NULL, "output directory (HF) or file (--pack)"},
        {"--tokenizer", 1, NULL, "tokenizer file to copy into the directory (required); with "
                                 "--pack, embedded in the packed file"},
        {"--layers", 1, NULL, "number of decoder layers (default: the architecture's)"},
        {"--seed", 1, NULL, "random seed (default 1)"},
        {"--threads", 1, NULL, "worker threads (default: one per core)"},
        {"--pack", 0, NULL, "fast path: K-Means-only pack of --model into --out"},
        {"--model", 1, NULL, "with --pack: the FP model to pack"},
        {"--bits", 1, NULL, "with --pack: average code bits, 2..4 (fractional: 4-bit columns)"},
        {"--head-bits", 1, NULL, "with --pack: also pack the output head at these bits (2..4; "
                                 "default: keep it dense)"},
        {"--embed-bits", 1, NULL, "with --pack: 8, 7 or 6 stores the token embedding as "
                                  "integers with a scale per row (q8_row / q7_row / q6_row), 16 "
                                  "keeps its dtype (default), shared: a tied model's packed "
                                  "head is its embedding too"},
        {"--cb-bits", 1, NULL, "with --pack: codebook entries on an 8-bit grid per column (8, "
                               "default) or free fp16 values (16); see claq quantize"},
        {"--help", 0, NULL, "this text"},
    };
    const int ns = (int)(sizeof spec / sizeof spec[0]);
    if (claq_args_parse("synth", spec, ns, argc, argv)) return 2;
    const char *out = claq_arg_get(spec, ns, "--out"), *v;
    int pack = claq_arg_get(spec, ns, "--pack") != NULL;
    long long layers = 0, seed = 1, threads = 0;
    if (claq_arg_get(spec, ns, "--help") || !out ||
        (pack ? !claq_arg_get(spec, ns, "--model") || !claq_arg_get(spec, ns, "--bits")
              : !claq_arg_get(spec, ns, "--shape") || !claq_arg_get(spec, ns, "--tokenizer"))) {
        claq_args_usage("synth", "--shape S --out DIR --tokenizer PATH [--layers N] [--seed S]\n"
                        "       claq synth --pack --model PATH --bits B --out FILE", spec, ns);
        return claq_arg_get(spec, ns, "--help") ? 0 : 2;
    }
    if ((v = claq_arg_get(spec, ns, "--seed")) && claq_parse_int("--seed", v, 0, 1LL << 62, &seed))
        return 2;
    if ((v = claq_arg_get(spec, ns, "--threads")) &&
        claq_parse_int("--threads", v, 0, 256, &threads))
        return 2;
    if (pack) {
        double bits = 0;
        if (claq_parse_float("--bits", claq_arg_get(spec, ns, "--bits"), 2.0, 4.0, &bits)) return 2;
        long long head_bits = 0;   /* whole bits, as claq quantize takes them */
        if ((v = claq_arg_get(spec, ns, "--head-bits")) &&
            claq_parse_int("--head-bits", v, 2, 4, &head_bits))
            return 2;
        int embed_bits, embed_shared, cb_bits;
        if (claq_parse_embed_bits(claq_arg_get(spec, ns, "--embed-bits"), &embed_bits,
                                  &embed_shared) ||
            claq_parse_8_or_16("--cb-bits", claq_arg_get(spec, ns, "--cb-bits"), 8, &cb_bits))
            return 2;
        return synth_pack(claq_arg_get(spec, ns, "--model"), claq_arg_get(spec, ns, "--tokenizer"),
                          bits, (double)head_bits, embed_bits, embed_shared, cb_bits, out,
                          (uint64_t)seed, (int)threads);
    }
    const char *sn = claq_arg_get(spec, ns, "--shape");
    const synth_shape *s = NULL;
    for (unsigned i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (!strcmp(shapes[i].name, sn)) s = &shapes[i];
    if (!s) {
        fprintf(stderr, "claq synth: unknown --shape '%s' (llama-7b, tinyllama-1.1b, yi-6b, "
                        "llama3.2-1b, llama3-8b, mistral-7b, small, llama3-tiny)\n", sn);
        return 2;
    }
    layers = s->layers;
    if ((v = claq_arg_get(spec, ns, "--layers")) &&
        claq_parse_int("--layers", v, 1, 1024, &layers))
        return 2;
    return synth_hf(s, (int)layers, out, claq_arg_get(spec, ns, "--tokenizer"), (uint64_t)seed,
                    (int)threads);
}
