/* test_eng_grammar_gen — constrained generation on a real model, as a driver for
 * test_eng_grammar_validates.py: with "MODEL_DIR" and jobs on stdin (one JSON object a line:
 * {"schema": {...} | "json_object" | null, "prompt", "seed", "temperature", "max_tokens"}), it
 * generates each with the engine's sampler under the grammar's mask and prints one JSON line per
 * job: the text, token count, whether it ended on EOS, and the greedy check (at every step where
 * the unconstrained argmax is allowed, the constrained greedy pick must be that token). Without
 * arguments it runs a small self-check on small-lm-5m (skips, 77, when CLAQ_SHARED lacks it). */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
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
#include "eng_tokenizer.h"

#define MAX_CTX 512

typedef struct gen_env {
    eng_model *m;
    eng_tokenizer *tok;
    eng_gvocab *gv;
    kern_backend be;
    eng_ctx *ctx;
    eng_kv kv;
    float *logits;
    int vocab;
} gen_env;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int env_open(gen_env *e, const char *dir)
{
    eng_err err = {0};
    memset(e, 0, sizeof *e);
    if (eng_model_open(&e->m, dir, &err) || eng_model_open_tokenizer(e->m, NULL, &e->tok, &err) ||
        kern_cpu_backend_create(&e->be, 1) || eng_ctx_create(&e->ctx, e->m, &e->be, MAX_CTX, &err) ||
        eng_kv_init_dtype(&e->kv, &e->m->cfg, MAX_CTX + 16, KERN_F32, &err)) {
        fprintf(stderr, "open %s: %s\n", dir, err.msg);
        return -1;
    }
    e->vocab = e->m->cfg.vocab_size;
    if (eng_gvocab_build(&e->gv, e->tok, e->vocab, -1, &err)) {
        fprintf(stderr, "gvocab: %s\n", err.msg);
        return -1;
    }
    e->logits = malloc((size_t)MAX_CTX * e->vocab * sizeof(float));
    return e->logits ? 0 : -1;
}

static void env_close(gen_env *e)
{
    free(e->logits);
    eng_gvocab_free(e->gv);
    eng_kv_free(&e->kv);
    eng_ctx_destroy(e->ctx);
    kern_backend_destroy(&e->be);
    eng_tokenizer_close(e->tok);
    eng_model_close(e->m);
}

static int argmax(const float *v, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++) if (v[i] > v[b]) b = i;
    return b;
}

/* Runs one job; returns a JSON object (caller deletes) or NULL on an engine failure. */
static cJSON *run_job(gen_env *e, const cJSON *job)
{
    eng_err err = {0};
    const cJSON *js = cJSON_GetObjectItem(job, "schema");
    const char *prompt = cJSON_GetStringValue(cJSON_GetObjectItem(job, "prompt"));
    double seed = cJSON_GetNumberValue(cJSON_GetObjectItem(job, "seed"));
    double temp = cJSON_GetNumberValue(cJSON_GetObjectItem(job, "temperature"));
    double maxt = cJSON_GetNumberValue(cJSON_GetObjectItem(job, "max_tokens"));
    if (!prompt) prompt = "Once upon a time";
    if (isnan(seed)) seed = 0;
    if (isnan(temp)) temp = 0;
    if (isnan(maxt)) maxt = 64;
    eng_grammar *g = NULL;
    eng_gmatch *gm = NULL;
    cJSON *res = cJSON_CreateObject();
    if (js && cJSON_IsString(js) && strcmp(js->valuestring, "json_object") == 0) {
        if (eng_grammar_compile_json_object(&g, &err)) goto fail;
    } else if (js && !cJSON_IsNull(js)) {
        int rc = eng_grammar_compile_cjson(&g, js, &err);
        if (rc) {
            cJSON_AddStringToObject(res, "compile_error", err.msg);
            return res;
        }
    }
    if (g && eng_gmatch_new(&gm, g, e->gv, &err)) goto fail;

    int32_t ids[MAX_CTX];
    size_t n_ids = 0;
    if (eng_tokenizer_encode(e->tok, prompt, strlen(prompt), 1, 0, ids, MAX_CTX / 2, &n_ids, &err))
        goto fail;
    if (n_ids > MAX_CTX / 2) {   /* only MAX_CTX / 2 ids were written */
        eng_err_set(&err, ENG_E_RANGE, "prompt of %zu tokens, at most %d", n_ids, MAX_CTX / 2);
        goto fail;
    }
    int n = (int)n_ids, max_new = (int)maxt;
    if (n + max_new > MAX_CTX) max_new = MAX_CTX - n;
    eng_seq seq = {0};
    if (eng_kv_reserve(&e->kv, &seq, n + max_new + 1)) goto fail;
    eng_sampler_cfg sc;
    eng_sampler_cfg_default(&sc);
    sc.temperature = (float)temp;
    sc.seed = (uint64_t)seed;
    eng_sampler smp;
    if (eng_sampler_init(&smp, &sc, e->vocab, &err)) goto fail;
    eng_detok dt;
    eng_detok_init(&dt, e->tok, 0);
    dt.prev = ids[n - 1];
    eng_batch_item items[MAX_CTX];
    for (int i = 0; i < n; i++) items[i] = (eng_batch_item){ids[i], i, &seq, i == n - 1, 0};
    int fed = 0, rc = eng_forward(e->ctx, &e->kv, items, n, e->logits, &err);
    char *text = calloc(1, (size_t)max_new * 300 + 16);
    size_t tl = 0;
    int ended = 0, checks = 0, viol = 0, n_gen = 0, eos = eng_tokenizer_eos(e->tok);
    double mask_ms = 0;
    fed = n;
    for (int step = 0; rc == 0 && step < max_new; step++) {
        float *lg = e->logits;
        int amax = argmax(lg, e->vocab), am_ok = 0;
        if (gm) {
            double t0 = now_ms();
            const uint32_t *mask = eng_gmatch_mask(gm);
            mask_ms += now_ms() - t0;
            eng_sampler_set_allow(&smp, mask);
            am_ok = temp == 0 && (mask[amax >> 5] >> (amax & 31) & 1);
            checks += am_ok;
        }
        int32_t t = eng_sampler_sample(&smp, lg, NULL);
        if (t < 0) { rc = t; break; }
        if (am_ok && t != amax)
            viol++;   /* the unconstrained argmax was allowed but not picked */
        if (gm && eng_gmatch_accept(gm, t) != 0) {
            cJSON_AddStringToObject(res, "error", "sampled token rejected by the grammar");
            break;
        }
        eng_sampler_accept(&smp, t);
        n_gen++;
        if (t == eos) { ended = 1; break; }
        tl += eng_detok_push(&dt, t, text + tl, 300);
        items[0] = (eng_batch_item){t, fed++, &seq, 1, 0};
        rc = eng_forward(e->ctx, &e->kv, items, 1, e->logits, &err);
    }
    tl += eng_detok_flush(&dt, text + tl, 300);
    text[tl] = 0;
    cJSON_AddStringToObject(res, "text", text);
    cJSON_AddNumberToObject(res, "tokens", n_gen);
    cJSON_AddBoolToObject(res, "ended", ended);
    cJSON_AddBoolToObject(res, "can_end", gm ? eng_gmatch_can_end(gm) : 0);
    cJSON_AddNumberToObject(res, "argmax_allowed", checks);
    cJSON_AddNumberToObject(res, "argmax_violations", viol);
    cJSON_AddNumberToObject(res, "mask_ms", mask_ms);
    if (rc) cJSON_AddStringToObject(res, "error", err.msg);
    free(text);
    eng_sampler_free(&smp);
    eng_kv_release(&e->kv, &seq);
    eng_gmatch_free(gm);
    eng_grammar_free(g);
    return res;
fail:
    fprintf(stderr, "job failed: %s\n", err.msg);
    eng_gmatch_free(gm);
    eng_grammar_free(g);
    cJSON_Delete(res);
    return NULL;
}

static int self_check(const char *shared)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/small-lm-5m", shared);
    gen_env e;
    if (env_open(&e, dir)) return 77;
    static const char *const schemas[] = {
        "\"json_object\"",
        "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":"
        "\"integer\"},\"pet\":{\"enum\":[\"cat\",\"dog\"]}},\"required\":[\"name\",\"age\",\"pet\"],"
        "\"additionalProperties\":false}",
        "{\"type\":\"array\",\"items\":{\"anyOf\":[{\"type\":\"number\"},{\"type\":\"null\"}]}}",
    };
    int fails = 0;
    for (size_t i = 0; i < sizeof schemas / sizeof schemas[0]; i++) {
        for (int temp = 0; temp < 2; temp++) {
            char buf[1024];
            snprintf(buf, sizeof buf, "{\"schema\":%s,\"seed\":%zu,\"temperature\":%d,"
                     "\"max_tokens\":200}", schemas[i], i, temp);
            cJSON *job = cJSON_Parse(buf);
            cJSON *r = run_job(&e, job);
            const char *text = r ? cJSON_GetStringValue(cJSON_GetObjectItem(r, "text")) : NULL;
            cJSON *parsed = text ? cJSON_Parse(text) : NULL;
            int ended = r && cJSON_IsTrue(cJSON_GetObjectItem(r, "ended"));
            printf("schema %zu temp %d: %s -> %s\n", i, temp, ended ? "ended" : "cut", text ? text : "?");
            if (!r || cJSON_GetObjectItem(r, "error") || (ended && !parsed)) {
                fprintf(stderr, "FAIL schema %zu temp %d\n", i, temp);
                fails++;
            }
            cJSON_Delete(parsed);
            cJSON_Delete(r);
            cJSON_Delete(job);
        }
    }
    env_close(&e);
    return fails ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        const char *shared = getenv("CLAQ_SHARED");
        return self_check(shared ? shared : "/work/shared");
    }
    gen_env e;
    if (env_open(&e, argv[1])) return 2;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, stdin)) > 0) {
        cJSON *job = cJSON_ParseWithLength(line, (size_t)len);
        cJSON *r = job ? run_job(&e, job) : NULL;
        char *out = r ? cJSON_PrintUnformatted(r) : NULL;
        printf("%s\n", out ? out : "{\"error\":\"job failed\"}");
        fflush(stdout);
        free(out);
        cJSON_Delete(r);
        cJSON_Delete(job);
    }
    free(line);
    env_close(&e);
    return 0;
}
