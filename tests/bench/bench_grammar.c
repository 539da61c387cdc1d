/* bench_grammar — what constrained decoding costs (issue 16). Part 1, on a real model
 * (small-lm-5m by default): decode tok/s unconstrained, under json_object and under a JSON
 * Schema, side by side (forward + sampling + masks, one thread, temperature 0.8, several seeds).
 * Part 2, on a 32000-token vocabulary (the LLaMA-2 tokenizer.model, no model of that size being
 * at hand): microseconds per token of sampling from random logits with and without the grammar's
 * mask, i.e. the mask's cost against the sampler's, which a real forward only dwarfs further.
 * Prints the load average, since the machine is shared. Not a test.
 * Usage: bench_grammar [MODEL_DIR [TOKENIZER_32K]] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eng_forward.h"
#include "eng_grammar.h"
#include "eng_kv.h"
#include "eng_model.h"
#include "eng_sampler.h"

static const char *k_schema =
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":"
    "\"integer\"},\"mood\":{\"enum\":[\"happy\",\"sad\",\"angry\"]},\"tags\":{\"type\":\"array\","
    "\"items\":{\"type\":\"string\"}},\"home\":{\"type\":\"object\",\"properties\":{\"city\":"
    "{\"type\":\"string\"},\"zip\":{\"type\":\"number\"}},\"required\":[\"city\",\"zip\"]}},"
    "\"required\":[\"name\",\"age\",\"mood\",\"tags\",\"home\"],\"additionalProperties\":false}";

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void loadavg(void)
{
    FILE *f = fopen("/proc/loadavg", "r");
    char b[128] = "?";
    if (f) {
        if (!fgets(b, sizeof b, f)) strcpy(b, "?\n");
        fclose(f);
    }
    printf("load average: %s", b);
}

/* Decodes up to n tokens after a short prompt; mode 0 free, 1 json_object, 2 schema. Returns
 * tokens generated, *secs the time. */
static int decode(eng_model *m, eng_tokenizer *tok, eng_gvocab *gv, int mode, uint64_t seed,
                  int n, double *secs)
{
    kern_backend be;
    eng_ctx *ctx = NULL;
    eng_kv kv = {0};
    eng_seq seq = {0};
    eng_err err = {0};
    int vocab = m->cfg.vocab_size, got = 0;
    *secs = 0;
    float *lg = malloc((size_t)vocab * 64 * sizeof(float));
    eng_grammar *g = NULL;
    eng_gmatch *gm = NULL;
    if (mode == 1) eng_grammar_compile_json_object(&g, NULL);
    if (mode == 2) eng_grammar_compile_schema(&g, k_schema, strlen(k_schema), NULL);
    if (g) eng_gmatch_new(&gm, g, gv, NULL);
    if (kern_cpu_backend_create(&be, 1) || eng_ctx_create(&ctx, m, &be, 64, &err) ||
        eng_kv_init_dtype(&kv, &m->cfg, n + 64, KERN_F32, &err) || eng_kv_reserve(&kv, &seq, n + 32))
        goto done;
    int32_t ids[32];
    size_t nid = 0;
    eng_tokenizer_encode(tok, "A child as JSON:", 16, 1, 0, ids, 32, &nid, &err);
    eng_batch_item it[32];
    for (size_t i = 0; i < nid; i++) it[i] = (eng_batch_item){ids[i], (int)i, &seq, i + 1 == nid, 0};
    eng_sampler_cfg sc;
    eng_sampler_cfg_default(&sc);
    sc.temperature = 0.8f;
    sc.seed = seed;
    eng_sampler s;
    eng_sampler_init(&s, &sc, vocab, &err);
    double t0 = now_s();
    int rc = eng_forward(ctx, &kv, it, (int)nid, lg, &err), pos = (int)nid;
    int eos = eng_tokenizer_eos(tok);
    while (rc == 0 && got < n) {
        if (gm) eng_sampler_set_allow(&s, eng_gmatch_mask(gm));
        int32_t t = eng_sampler_sample(&s, lg, NULL);
        if (t < 0 || t == eos) break;
        if (gm && eng_gmatch_accept(gm, t)) break;
        eng_sampler_accept(&s, t);
        got++;
        it[0] = (eng_batch_item){t, pos++, &seq, 1, 0};
        rc = eng_forward(ctx, &kv, it, 1, lg, &err);
    }
    *secs = now_s() - t0;
    eng_sampler_free(&s);
done:
    eng_kv_release(&kv, &seq);
    eng_kv_free(&kv);
    eng_ctx_destroy(ctx);
    kern_backend_destroy(&be);
    eng_gmatch_free(gm);
    eng_grammar_free(g);
    free(lg);
    return got;
}

static void part1(const char *dir)
{
    eng_model *m = NULL;
    eng_tokenizer *tok = NULL;
    eng_gvocab *gv = NULL;
    eng_err err = {0};
    if (eng_model_open(&m, dir, &err) || eng_model_open_tokenizer(m, NULL, &tok, &err) ||
        eng_gvocab_build(&gv, tok, m->cfg.vocab_size, -1, &err)) {
        printf("%s: %s\n", dir, err.msg);
        goto out;
    }
    double t0 = now_s();
    eng_gvocab *gv2 = NULL;
    eng_gvocab_build(&gv2, tok, m->cfg.vocab_size, -1, &err);
    printf("%s: vocab %d, token index built in %.1f ms\n", dir, m->cfg.vocab_size,
           (now_s() - t0) * 1e3);
    eng_gvocab_free(gv2);
    static const char *const names[] = {"unconstrained", "json_object", "json_schema"};
    double tps[3];
    for (int mode = 0; mode < 3; mode++) {
        int toks = 0;
        double secs = 0;
        for (int seed = 1; seed <= 8; seed++) {
            double s1 = 0;
            toks += decode(m, tok, gv, mode, (uint64_t)seed, 200, &s1);
            secs += s1;
        }
        tps[mode] = toks / secs;
        printf("  %-14s %6d tokens %7.3f s  %8.1f tok/s  (%.1f%% of unconstrained)\n", names[mode],
               toks, secs, tps[mode], 100.0 * tps[mode] / tps[0]);
    }
out:
    eng_gvocab_free(gv);
    eng_tokenizer_close(tok);
    eng_model_close(m);
}

static void part2(const char *path)
{
    eng_tokenizer *tok = NULL;
    eng_gvocab *gv = NULL;
    eng_err err = {0};
    if (eng_tokenizer_open(&tok, path, 0, &err)) {
        printf("%s: %s\n", path, err.msg);
        return;
    }
    int vocab = eng_tokenizer_vocab_size(tok);
    double t0 = now_s();
    eng_gvocab_build(&gv, tok, vocab, -1, &err);
    printf("%s: vocab %d, token index built in %.1f ms\n", path, vocab, (now_s() - t0) * 1e3);
    float *base = malloc((size_t)vocab * sizeof(float)), *lg = malloc((size_t)vocab * sizeof(float));
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < vocab; i++) {   /* a peaked, story-like distribution */
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        base[i] = (float)((double)(x >> 11) / 9007199254740992.0 * 8.0 - 4.0);
    }
    eng_grammar *g = NULL;
    eng_grammar_compile_schema(&g, k_schema, strlen(k_schema), NULL);
    const int steps = 4000;
    double times[2];
    uint64_t computed = 0, cached = 0;
    int docs = 0;
    double gram_s = 0;
    for (int mode = 0; mode < 2; mode++) {
        eng_sampler_cfg sc;
        eng_sampler_cfg_default(&sc);
        sc.temperature = 0.8f;
        sc.seed = 9;
        eng_sampler s;
        eng_sampler_init(&s, &sc, vocab, &err);
        eng_gmatch *gm = NULL;
        if (mode) eng_gmatch_new(&gm, g, gv, NULL);
        double t1 = now_s();
        for (int i = 0; i < steps; i++) {
            memcpy(lg, base, (size_t)vocab * sizeof(float));
            lg[i % vocab] += 3.0f;
            double t2 = now_s();
            if (gm) eng_sampler_set_allow(&s, eng_gmatch_mask(gm));
            gram_s += now_s() - t2;
            int32_t t = eng_sampler_sample(&s, lg, NULL);
            if (gm) {
                t2 = now_s();
                if (t == eng_gvocab_eos(gv) || eng_gmatch_accept(gm, t)) {
                    eng_gmatch_reset(gm);   /* a document done: the next one, cache kept */
                    docs++;
                }
                gram_s += now_s() - t2;
            }
        }
        times[mode] = (now_s() - t1) / steps * 1e6;
        if (gm) eng_gmatch_stats(gm, &computed, &cached);
        eng_gmatch_free(gm);
        eng_sampler_free(&s);
    }
    printf("  sampling alone %.1f us/token; with the schema's mask %.1f us/token, of which mask "
           "+ advance %.1f us (%d documents, %llu masks computed, %llu from the cache)\n",
           times[0], times[1], gram_s / steps * 1e6, docs, (unsigned long long)computed,
           (unsigned long long)cached);
    free(base);
    free(lg);
    eng_grammar_free(g);
    eng_gvocab_free(gv);
    eng_tokenizer_close(tok);
}

int main(int argc, char **argv)
{
    const char *shared = getenv("CLAQ_SHARED");
    char m[1024], t[1024];
    snprintf(m, sizeof m, "%s/models/small-lm-5m", shared ? shared : "/work/shared");
    snprintf(t, sizeof t, "%s/models/tokenizer.model", shared ? shared : "/work/shared");
    loadavg();
    part1(argc > 1 ? argv[1] : m);
    part2(argc > 2 ? argv[2] : t);
    loadavg();
    return 0;
}
