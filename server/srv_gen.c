/* srv_gen.c — one generation request: sampling parameters (validated, OpenAI names and ranges),
 * its tasks (one per prompt x choice, submitted together or not at all), and the response built
 * from their events: one JSON object, or SSE chunks with keep-alive comments, a usage chunk on
 * request and `data: [DONE]`. Loop thread only. Does not tokenize (the handlers do). */
#include "srv_gen.h"

#include <math.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "srv_gen_tools.h"
#include "srv_limits.h"

typedef struct srv_choice {
    uint64_t task_id;
    int prompt_idx;
    srv_buf text;               /* non-stream: the text so far; owned */
    int done;
    srv_finish finish;
    int completion_tokens;
    int cached_tokens;          /* of its prompt, served from the prefix cache */
    cJSON *lp;                  /* non-stream logprobs being built; owned */
    size_t text_offset;         /* completions logprobs: offset of the next token's text */
    size_t prompt_offset;       /* echo + logprobs: offset of the next prompt token's text */
    int echo_pending;           /* stream + echo + logprobs: the echo chunk waits for the
                                   prompt's logprobs, sent before the first token */
    int32_t prev_tok;           /* for token text (leading-space rule) */
    uint64_t t_last;            /* uv_hrtime of the last token (inter-token latency) */
    char msg[256];              /* error text when finish is ERROR/TIMEOUT */
    srv_toolscan ts;            /* tools: text or calls, read as it comes; owned */
} srv_choice;

typedef struct srv_gen {
    srv_server *srv;            /* borrowed */
    srv_resp *resp;             /* borrowed: the slot that owns this generation */
    srv_gen_kind kind;
    int stream, include_usage, echo, logprobs, top_logprobs;
    char id[64];
    long long created;
    int n_choices, n_done;
    srv_choice *choices;        /* [n_choices]; owned */
    int n_prompts;
    int *prompt_tokens;         /* [n_prompts]; owned */
    char **echo_text;           /* [n_prompts] owned strings, or NULL without echo */
    size_t *echo_len;           /* [n_prompts]; owned */
    int got_first;              /* a first token has arrived (TTFT) */
    int tools;                  /* answers may be tool calls (choice.ts in use) */
} srv_gen;

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

/* ---- task id map (open addressing, linear probing, backward-shift deletion) ---- */

static size_t map_slot(uint64_t id, int cap)
{
    uint64_t h = id * 0x9E3779B97F4A7C15ULL;
    return (size_t)(h >> 20) & (size_t)(cap - 1);
}

static int map_put(srv_server *s, uint64_t id, srv_gen *g, int choice)
{
    if ((s->tasks_n + 1) * 2 > s->tasks_cap) {
        int cap = s->tasks_cap ? s->tasks_cap * 2 : 256;
        srv_task_ref *t = calloc((size_t)cap, sizeof(*t));
        if (!t)
            return -1;
        for (int i = 0; i < s->tasks_cap; i++) {
            if (!s->tasks[i].id)
                continue;
            size_t j = map_slot(s->tasks[i].id, cap);
            while (t[j].id)
                j = (j + 1) & (size_t)(cap - 1);
            t[j] = s->tasks[i];
        }
        free(s->tasks);
        s->tasks = t;
        s->tasks_cap = cap;
    }
    size_t j = map_slot(id, s->tasks_cap);
    while (s->tasks[j].id)
        j = (j + 1) & (size_t)(s->tasks_cap - 1);
    s->tasks[j].id = id;
    s->tasks[j].gen = g;
    s->tasks[j].choice = choice;
    s->tasks_n++;
    return 0;
}

static srv_task_ref *map_get(srv_server *s, uint64_t id)
{
    if (!s->tasks_cap || !id)
        return NULL;
    size_t j = map_slot(id, s->tasks_cap);
    while (s->tasks[j].id) {
        if (s->tasks[j].id == id)
            return &s->tasks[j];
        j = (j + 1) & (size_t)(s->tasks_cap - 1);
    }
    return NULL;
}

static void map_del(srv_server *s, uint64_t id)
{
    srv_task_ref *e = map_get(s, id);
    if (!e)
        return;
    size_t mask = (size_t)(s->tasks_cap - 1);
    size_t i = (size_t)(e - s->tasks);
    s->tasks[i].id = 0;
    s->tasks_n--;
    for (size_t j = (i + 1) & mask; s->tasks[j].id; j = (j + 1) & mask) {
        size_t home = map_slot(s->tasks[j].id, s->tasks_cap);
        /* move j back to i when i lies cyclically in [home, j) */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            s->tasks[i] = s->tasks[j];
            s->tasks[j].id = 0;
            i = j;
        }
    }
}

/* ---- parameters ---- */

static int num_field(srv_resp *r, const cJSON *body, const char *name, double lo, double hi,
                     int integral, double *out, int *present)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, name);
    *present = 0;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsNumber(v)) {
        srv_resp_bad(r, name, "'%s' must be a number", name);
        return -1;
    }
    double d = v->valuedouble;
    if (!isfinite(d) || (integral && d != floor(d))) {
        srv_resp_bad(r, name, "'%s' must be %s", name, integral ? "an integer" : "finite");
        return -1;
    }
    if (d < lo || d > hi) {
        srv_resp_bad(r, name, "'%s' is %g; it must be between %g and %g", name, d, lo, hi);
        return -1;
    }
    *out = d;
    *present = 1;
    return 0;
}

static int bool_field(srv_resp *r, const cJSON *obj, const char *name, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsBool(v)) {
        srv_resp_bad(r, name, "'%s' must be a boolean", name);
        return -1;
    }
    *out = cJSON_IsTrue(v);
    return 0;
}

int srv_gen_parse_params(srv_server *s, srv_resp *r, const cJSON *body, srv_gen_kind kind,
                         srv_gen_params *p)
{
    memset(p, 0, sizeof(*p));
    eng_sampler_cfg_default(&p->scfg);
    p->max_tokens = -1;
    p->n = 1;
    double d;
    int has;

    if (num_field(r, body, "max_tokens", 0, 1e9, 1, &d, &has)) return -1;
    if (has) p->max_tokens = (int)d;
    if (num_field(r, body, "max_completion_tokens", 0, 1e9, 1, &d, &has)) return -1;
    if (has) p->max_tokens = (int)d;
    if (num_field(r, body, "n", 1, SRV_MAX_N, 1, &d, &has)) return -1;
    if (has) p->n = (int)d;
    if (num_field(r, body, "temperature", 0, ENG_TEMPERATURE_MAX, 0, &d, &has)) return -1;
    if (has) p->scfg.temperature = (float)d;
    if (num_field(r, body, "top_p", 0, 1, 0, &d, &has)) return -1;
    if (has) {
        if (d <= 0) {
            srv_resp_bad(r, "top_p", "'top_p' must be greater than 0");
            return -1;
        }
        p->scfg.top_p = (float)d;
    }
    if (num_field(r, body, "top_k", -1, ENG_TOP_K_MAX, 1, &d, &has)) return -1;
    if (has) p->scfg.top_k = d < 0 ? 0 : (int)d;
    if (num_field(r, body, "min_p", 0, 1, 0, &d, &has)) return -1;
    if (has) p->scfg.min_p = (float)d;
    if (num_field(r, body, "presence_penalty", -ENG_PENALTY_MAX, ENG_PENALTY_MAX, 0, &d, &has))
        return -1;
    if (has) p->scfg.presence_penalty = (float)d;
    if (num_field(r, body, "frequency_penalty", -ENG_PENALTY_MAX, ENG_PENALTY_MAX, 0, &d, &has))
        return -1;
    if (has) p->scfg.frequency_penalty = (float)d;
    if (num_field(r, body, "repetition_penalty", ENG_REPETITION_MIN, ENG_REPETITION_MAX, 0, &d,
                  &has))
        return -1;
    if (has) p->scfg.repetition_penalty = (float)d;
    /* any int64 or uint64 value: [-2^63, 2^64), the top being the largest double below 2^64 */
    if (num_field(r, body, "seed", -9223372036854775808.0, 18446744073709549568.0, 1, &d, &has))
        return -1;
    if (has) {
        p->has_seed = 1;
        p->seed = d < 0 ? (uint64_t)(int64_t)d : (uint64_t)d;
    }
    if (num_field(r, body, "best_of", 1, 1, 1, &d, &has)) return -1;

    if (srv_gen_parse_format(r, body, p)) return -1;
    if (bool_field(r, body, "stream", &p->stream)) return -1;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(body, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so)) {
            srv_resp_bad(r, "stream_options", "'stream_options' must be an object");
            return -1;
        }
        if (bool_field(r, so, "include_usage", &p->include_usage)) return -1;
    }
    const cJSON *user = cJSON_GetObjectItemCaseSensitive(body, "user");
    if (user && !cJSON_IsNull(user) && !cJSON_IsString(user)) {
        srv_resp_bad(r, "user", "'user' must be a string");
        return -1;
    }

    /* logprobs: completions take an integer (how many alternatives), chat a boolean plus
     * top_logprobs. */
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(body, "logprobs");
    if (kind == SRV_GEN_COMPLETION) {
        if (num_field(r, body, "logprobs", 0, ENG_MAX_TOP_LOGPROBS, 1, &d, &has)) return -1;
        if (has) {
            p->logprobs = 1;
            p->top_logprobs = (int)d;
        }
        if (bool_field(r, body, "echo", &p->echo)) return -1;
        const cJSON *suf = cJSON_GetObjectItemCaseSensitive(body, "suffix");
        if (suf && !cJSON_IsNull(suf)) {
            srv_resp_bad(r, "suffix", "'suffix' is not supported by this server");
            return -1;
        }
    } else {
        if (lp && !cJSON_IsNull(lp) && !cJSON_IsBool(lp)) {
            srv_resp_bad(r, "logprobs", "'logprobs' must be a boolean");
            return -1;
        }
        p->logprobs = lp && cJSON_IsTrue(lp);
        if (num_field(r, body, "top_logprobs", 0, ENG_MAX_TOP_LOGPROBS, 1, &d, &has)) return -1;
        if (has) {
            if (!p->logprobs) {
                srv_resp_bad(r, "top_logprobs", "'top_logprobs' requires 'logprobs': true");
                return -1;
            }
            p->top_logprobs = (int)d;
        }
    }
    p->scfg.n_top_logprobs = p->top_logprobs;

    /* stop: a string or a list of strings */
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(body, "stop");
    if (st && !cJSON_IsNull(st)) {
        if (cJSON_IsString(st)) {
            p->stops[p->n_stops++] = st->valuestring;
        } else if (cJSON_IsArray(st)) {
            const cJSON *e;
            cJSON_ArrayForEach(e, st) {
                if (!cJSON_IsString(e)) {
                    srv_resp_bad(r, "stop", "'stop' must be a string or a list of strings");
                    return -1;
                }
                if (p->n_stops >= ENG_MAX_STOPS) {
                    srv_resp_bad(r, "stop", "at most %d stop strings are supported",
                                 ENG_MAX_STOPS);
                    return -1;
                }
                p->stops[p->n_stops++] = e->valuestring;
            }
        } else {
            srv_resp_bad(r, "stop", "'stop' must be a string or a list of strings");
            return -1;
        }
        eng_stop tmp;
        eng_err err = {0};
        if (eng_stop_init(&tmp, p->stops, p->n_stops, &err) != 0) {
            srv_resp_bad(r, "stop", "invalid 'stop': %s", err.msg);
            return -1;
        }
    }

    /* logit_bias: {"token id": bias} */
    const cJSON *lb = cJSON_GetObjectItemCaseSensitive(body, "logit_bias");
    if (lb && !cJSON_IsNull(lb)) {
        if (!cJSON_IsObject(lb)) {
            srv_resp_bad(r, "logit_bias", "'logit_bias' must be an object of token id -> bias");
            return -1;
        }
        int cnt = cJSON_GetArraySize(lb);
        if (cnt > SRV_MAX_LOGIT_BIAS) {
            srv_resp_bad(r, "logit_bias", "'logit_bias' has %d entries; at most %d", cnt,
                         SRV_MAX_LOGIT_BIAS);
            return -1;
        }
        p->bias = calloc((size_t)(cnt ? cnt : 1), sizeof(*p->bias));
        if (!p->bias) {
            srv_resp_error(r, 503, "server_error", NULL, "out_of_memory", "out of memory");
            return -1;
        }
        int vocab = s->model ? s->model->cfg.vocab_size : 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, lb) {
            /* decimal digits only: strtol alone would take " 5", "+5" and "-0" */
            const char *k = e->string ? e->string : "";
            size_t nd = strspn(k, "0123456789");
            long id = nd > 0 && nd <= 9 && !k[nd] ? strtol(k, NULL, 10) : -1;
            if (id < 0 || id >= vocab) {
                srv_resp_bad(r, "logit_bias", "'logit_bias' key '%.32s' is not a token id in "
                             "[0, %d)", e->string ? e->string : "", vocab);
                return -1;
            }
            if (!cJSON_IsNumber(e) || !(fabs(e->valuedouble) <= ENG_LOGIT_BIAS_MAX)) {
                srv_resp_bad(r, "logit_bias", "'logit_bias' values must be numbers in [-%g, %g]",
                             ENG_LOGIT_BIAS_MAX, ENG_LOGIT_BIAS_MAX);
                return -1;
            }
            p->bias[p->n_bias].token = (int32_t)id;
            p->bias[p->n_bias].bias = (float)e->valuedouble;
            p->n_bias++;
        }
    }
    return 0;
}

void srv_gen_params_free(srv_gen_params *p)
{
    free(p->schema);
    p->schema = NULL;
    free(p->bias);
    p->bias = NULL;
    p->n_bias = 0;
}

void srv_gen_prompts_free(srv_gen_prompt *pr, int n)
{
    if (!pr)
        return;
    for (int i = 0; i < n; i++) {
        free(pr[i].ids);
        free(pr[i].text);
        free(pr[i].plain);
    }
    free(pr);
}

/* ---- generation lifetime ---- */

static void gen_free(srv_server *s, srv_gen *g)
{
    if (!g)
        return;
    for (int i = 0; i < g->n_choices; i++) {
        if (g->choices[i].task_id)
            map_del(s, g->choices[i].task_id);
        srv_buf_free(&g->choices[i].text);
        srv_toolscan_free(&g->choices[i].ts);
        cJSON_Delete(g->choices[i].lp);
    }
    if (g->echo_text)
        for (int i = 0; i < g->n_prompts; i++)
            free(g->echo_text[i]);
    free(g->echo_text);
    free(g->echo_len);
    free(g->prompt_tokens);
    free(g->choices);
    free(g);
    s->n_gens--;
}

/* The response is going away (client gone, connection closed): cancels the tasks still
 * running, frees g (srv_resp_release_fn). */
static void gen_release(srv_resp *r, void *owner)
{
    (void)r;
    srv_gen *g = owner;
    srv_server *s = g->srv;
    uint64_t ids[SRV_MAX_CHOICES];
    int n = 0;
    for (int i = 0; i < g->n_choices; i++)
        if (!g->choices[i].done && g->choices[i].task_id && n < SRV_MAX_CHOICES)
            ids[n++] = g->choices[i].task_id;
    srv_sched_cancel(&s->sched, ids, n);
    gen_free(s, g);
    srv_server_check_drained(s);
}

static void sse_send(srv_gen *g, cJSON *obj)
{
    char *txt = cJSON_PrintUnformatted(obj);
    if (!txt)
        return;
    srv_buf b = {0};
    srv_buf_puts(&b, "data: ");
    srv_buf_puts(&b, txt);
    srv_buf_puts(&b, "\n\n");
    srv_resp_stream_write(g->resp, b.p, b.len);
    srv_buf_free(&b);
    free(txt);
}

/* Sends a choices chunk (usage: null on it when include_usage asks for usage on the final
 * chunk only) and frees it. */
static void chunk_send(srv_gen *g, cJSON *o)
{
    if (g->include_usage)
        cJSON_AddNullToObject(o, "usage");
    sse_send(g, o);
    cJSON_Delete(o);
}

static cJSON *chunk_base(srv_gen *g)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", g->id);
    cJSON_AddStringToObject(o, "object",
                            g->kind == SRV_GEN_CHAT ? "chat.completion.chunk" : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)g->created);
    cJSON_AddStringToObject(o, "model", g->srv->model_id);
    cJSON_AddStringToObject(o, "system_fingerprint", "claq");
    return o;
}

static cJSON *usage_obj(srv_gen *g)
{
    int pt = 0, ct = 0;
    for (int i = 0; i < g->n_prompts; i++)
        pt += g->prompt_tokens[i];
    for (int i = 0; i < g->n_choices; i++)
        ct += g->choices[i].completion_tokens;
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", pt);
    cJSON_AddNumberToObject(u, "completion_tokens", ct);
    cJSON_AddNumberToObject(u, "total_tokens", pt + ct);
    /* OpenAI's prompt caching field: per prompt, what its first choice found cached */
    int cached = 0;
    for (int i = 0; i < g->n_prompts; i++) {
        for (int c = 0; c < g->n_choices; c++) {
            if (g->choices[c].prompt_idx == i) {
                cached += g->choices[c].cached_tokens;
                break;
            }
        }
    }
    cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    if (d)
        cJSON_AddNumberToObject(d, "cached_tokens", cached);
    g->resp->prompt_tokens = pt;
    g->resp->completion_tokens = ct;
    return u;
}

/* Characters (code points) in valid UTF-8: OpenAI's text_offset counts characters, not bytes. */
static size_t utf8_chars(const char *p, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)p[i] & 0xC0) != 0x80;
    return n;
}

/* Text of a token as valid UTF-8 (partial characters become U+FFFD) into out[cap]; its raw
 * bytes into raw[300]. */
static void token_text(srv_server *s, int32_t prev, int32_t tok, char *out, size_t cap,
                       unsigned char *raw, size_t *n_raw)
{
    char b[300];
    size_t n = eng_tokenizer_token_bytes(s->tok, prev, tok, b, sizeof(b));
    if (n > sizeof(b))
        n = sizeof(b);
    memcpy(raw, b, n);
    *n_raw = n;
    srv_utf8_repair(b, n, out, cap);
}

static cJSON *bytes_arr(const unsigned char *raw, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(raw[i]));
    return a;
}

/* One entry of the completions logprobs format: appends to the four parallel arrays of obj the
 * token's text, its logprob and its top alternatives (at most n_top; lp NULL gives null for
 * both: a first prompt token with no context), and the text offset, which *offset advances. */
static void lp_add_entry(srv_server *s, cJSON *obj, int32_t prev, const char *txt,
                         const eng_logprob *lp, int n_top, size_t *offset)
{
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(obj, "tokens"), cJSON_CreateString(txt));
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(obj, "token_logprobs"),
                         lp ? cJSON_CreateNumber(lp->logprob) : cJSON_CreateNull());
    cJSON *top = lp ? cJSON_CreateObject() : cJSON_CreateNull();
    for (int i = 0; lp && i < lp->n_top && i < n_top; i++) {
        char tt[1024];
        unsigned char tr[300];
        size_t ntr;
        token_text(s, prev, lp->top_ids[i], tt, sizeof(tt), tr, &ntr);
        if (!cJSON_GetObjectItemCaseSensitive(top, tt))
            cJSON_AddNumberToObject(top, tt, lp->top_logprobs[i]);
    }
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(obj, "top_logprobs"), top);
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(obj, "text_offset"),
                         cJSON_CreateNumber((double)*offset));
    *offset += utf8_chars(txt, strlen(txt));
}

/* Logprobs of one token: chat format appends to arr ({"content":[...]} entries); completions
 * format appends to the four parallel arrays of obj. */
static void lp_add(srv_gen *g, srv_choice *c, cJSON *target, const srv_event *e)
{
    srv_server *s = g->srv;
    char txt[1024];
    unsigned char raw[300];
    size_t n_raw;
    token_text(s, c->prev_tok, e->token, txt, sizeof(txt), raw, &n_raw);
    if (g->kind == SRV_GEN_CHAT) {
        cJSON *ent = cJSON_CreateObject();
        cJSON_AddStringToObject(ent, "token", txt);
        cJSON_AddNumberToObject(ent, "logprob", e->lp.logprob);
        cJSON_AddItemToObject(ent, "bytes", bytes_arr(raw, n_raw));
        cJSON *top = cJSON_AddArrayToObject(ent, "top_logprobs");
        for (int i = 0; i < e->lp.n_top && i < g->top_logprobs; i++) {
            char tt[1024];
            unsigned char tr[300];
            size_t ntr;
            token_text(s, c->prev_tok, e->lp.top_ids[i], tt, sizeof(tt), tr, &ntr);
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "token", tt);
            cJSON_AddNumberToObject(x, "logprob", e->lp.top_logprobs[i]);
            cJSON_AddItemToObject(x, "bytes", bytes_arr(tr, ntr));
            cJSON_AddItemToArray(top, x);
        }
        cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(target, "content"), ent);
    } else {
        lp_add_entry(s, target, c->prev_tok, txt, &e->lp, g->top_logprobs, &c->text_offset);
    }
}

static cJSON *lp_new(srv_gen *g)
{
    cJSON *o = cJSON_CreateObject();
    if (g->kind == SRV_GEN_CHAT) {
        cJSON_AddArrayToObject(o, "content");
    } else {
        cJSON_AddArrayToObject(o, "tokens");
        cJSON_AddArrayToObject(o, "token_logprobs");
        cJSON_AddArrayToObject(o, "top_logprobs");
        cJSON_AddArrayToObject(o, "text_offset");
    }
    return o;
}

/* Echo + logprobs (non-streaming completions): one prompt token's entry, ahead of the
 * completion's. e NULL gives the first token of a prompt with nothing before it: null logprob
 * and null top_logprobs, as OpenAI reports it. */
static void lp_add_prompt(srv_gen *g, srv_choice *c, int32_t prev, int32_t tok,
                          const srv_event *e)
{
    char txt[1024];
    unsigned char raw[300];
    size_t n_raw;
    token_text(g->srv, prev, tok, txt, sizeof(txt), raw, &n_raw);
    lp_add_entry(g->srv, c->lp, prev, txt, e ? &e->lp : NULL, ENG_MAX_TOP_LOGPROBS,
                 &c->prompt_offset);
}

/* One streamed chunk for choice ci: text (may be empty), logprobs entry, finish reason, and
 * (chat) tool call deltas, which it takes over (NULL: none). */
static void stream_chunk(srv_gen *g, int ci, const char *text, size_t len, const srv_event *lpe,
                         const char *finish, cJSON *tool_calls)
{
    srv_choice *c = &g->choices[ci];
    cJSON *o = chunk_base(g);
    cJSON *arr = cJSON_AddArrayToObject(o, "choices");
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", ci);
    srv_buf t = {0};
    srv_buf_append(&t, text ? text : "", len);
    if (g->kind == SRV_GEN_CHAT) {
        cJSON *delta = cJSON_AddObjectToObject(ch, "delta");
        if (text)
            cJSON_AddStringToObject(delta, "content", t.p ? t.p : "");
        if (tool_calls)
            cJSON_AddItemToObject(delta, "tool_calls", tool_calls);
    } else {
        cJSON_AddStringToObject(ch, "text", t.p ? t.p : "");
    }
    if (lpe) {
        cJSON *lp = lp_new(g);
        lp_add(g, c, lp, lpe);
        cJSON_AddItemToObject(ch, "logprobs", lp);
    } else {
        cJSON_AddNullToObject(ch, "logprobs");
    }
    if (finish)
        cJSON_AddStringToObject(ch, "finish_reason", finish);
    else
        cJSON_AddNullToObject(ch, "finish_reason");
    cJSON_AddItemToArray(arr, ch);
    srv_buf_free(&t);
    chunk_send(g, o);
}

/* The id of call k of choice ci: "call_" and 24 hex digits, the same in a stream and whole. */
static void call_id(const srv_gen *g, int ci, int k, char *out, size_t cap)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = g->id; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    uint64_t a = mix64(h ^ ((uint64_t)ci << 20) ^ (uint64_t)k);
    uint64_t b = mix64(a + 0x9e3779b97f4a7c15ULL);
    snprintf(out, cap, "call_%016llx%08llx", (unsigned long long)a,
             (unsigned long long)(b >> 32));
}

/* The tool_calls delta of what choice ci read since the last one (NULL when nothing new): a
 * call's first entry carries its id, type and name; then argument fragments by index. The
 * blanks at the end of unfinished arguments wait (a whole answer trims them). */
static cJSON *tool_deltas(srv_gen *g, int ci)
{
    srv_choice *c = &g->choices[ci];
    cJSON *arr = NULL;
    for (int k = 0; k < c->ts.n_calls; k++) {
        srv_tool_call *call = &c->ts.calls[k];
        if (!call->name_done)
            break;
        size_t ready = srv_tool_call_ready(call);
        if (call->header_sent && ready <= call->args_sent)
            continue;
        cJSON *it = cJSON_CreateObject();
        cJSON_AddNumberToObject(it, "index", k);
        if (!call->header_sent) {
            char id[48];
            call_id(g, ci, k, id, sizeof(id));
            cJSON_AddStringToObject(it, "id", id);
            cJSON_AddStringToObject(it, "type", "function");
        }
        cJSON *fn = cJSON_AddObjectToObject(it, "function");
        if (!call->header_sent)
            cJSON_AddStringToObject(fn, "name", call->name.p ? call->name.p : "");
        srv_buf frag = {0};
        srv_buf_append(&frag, call->args.p ? call->args.p + call->args_sent : "",
                       ready - call->args_sent);
        cJSON_AddStringToObject(fn, "arguments", frag.p ? frag.p : "");
        srv_buf_free(&frag);
        call->header_sent = 1;
        call->args_sent = ready;
        if (!arr)
            arr = cJSON_CreateArray();
        cJSON_AddItemToArray(arr, it);
    }
    return arr;
}

/* message.tool_calls of a whole answer (the calls are complete). */
static cJSON *tool_calls_json(const srv_gen *g, int ci)
{
    const srv_choice *c = &g->choices[ci];
    cJSON *arr = cJSON_CreateArray();
    for (int k = 0; k < c->ts.n_calls; k++) {
        const srv_tool_call *call = &c->ts.calls[k];
        cJSON *it = cJSON_CreateObject();
        char id[48];
        call_id(g, ci, k, id, sizeof(id));
        cJSON_AddStringToObject(it, "id", id);
        cJSON_AddStringToObject(it, "type", "function");
        cJSON *fn = cJSON_AddObjectToObject(it, "function");
        cJSON_AddStringToObject(fn, "name", call->name.p ? call->name.p : "");
        cJSON_AddStringToObject(fn, "arguments", call->args.p ? call->args.p : "");
        cJSON_AddItemToArray(arr, it);
    }
    return arr;
}

/* The finish reason a choice reports: "tool_calls" for an answer of complete calls. */
static const char *finish_name(const srv_gen *g, const srv_choice *c)
{
    if (g->tools && c->finish == SRV_FINISH_STOP && srv_toolscan_complete(&c->ts))
        return "tool_calls";
    return srv_finish_name(c->finish);
}

static void stream_error(srv_gen *g, const char *type, const char *code, const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddNullToObject(e, "param");
    cJSON_AddStringToObject(e, "code", code);
    sse_send(g, o);
    cJSON_Delete(o);
}

/* All choices are done: finish the response, free g. The last thing that touches g->resp. */
static void gen_complete(srv_server *s, srv_gen *g)
{
    srv_resp *r = g->resp;
    /* the worst outcome decides an error response */
    const srv_choice *bad = NULL;
    for (int i = 0; i < g->n_choices; i++) {
        srv_finish f = g->choices[i].finish;
        if (f == SRV_FINISH_ERROR || f == SRV_FINISH_TIMEOUT || f == SRV_FINISH_CANCELLED) {
            if (!bad || f == SRV_FINISH_ERROR)
                bad = &g->choices[i];
        }
    }
    const char *etype = "server_error", *ecode = "internal_error";
    int estatus = 500;
    if (bad && bad->finish == SRV_FINISH_TIMEOUT) {
        etype = "timeout_error";
        ecode = "request_timeout";
        estatus = 408;
    } else if (bad && bad->finish == SRV_FINISH_CANCELLED) {
        etype = "server_error";
        ecode = "server_shutting_down";
        estatus = 503;
    }
    char emsg[300];
    if (bad)
        snprintf(emsg, sizeof(emsg), "%s", bad->msg[0] ? bad->msg
                                           : bad->finish == SRV_FINISH_CANCELLED
                                               ? "the server is shutting down" : "generation failed");

    if (g->stream) {
        if (bad)
            stream_error(g, etype, ecode, emsg);
        if (g->include_usage) {
            cJSON *o = chunk_base(g);
            cJSON_AddArrayToObject(o, "choices");
            cJSON_AddItemToObject(o, "usage", usage_obj(g));
            sse_send(g, o);
            cJSON_Delete(o);
        } else {
            cJSON_Delete(usage_obj(g));   /* fills the log's token counts */
        }
        srv_resp_stream_write(r, "data: [DONE]\n\n", 14);
        srv_resp_set_owner(r, NULL, NULL);
        gen_free(s, g);
        srv_resp_stream_end(r);
        srv_server_check_drained(s);
        return;
    }
    if (bad) {
        cJSON_Delete(usage_obj(g));
        srv_resp_set_owner(r, NULL, NULL);
        gen_free(s, g);
        srv_resp_error(r, estatus, etype, NULL, ecode, "%s", emsg);
        srv_server_check_drained(s);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", g->id);
    cJSON_AddStringToObject(o, "object", g->kind == SRV_GEN_CHAT ? "chat.completion"
                                                                 : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)g->created);
    cJSON_AddStringToObject(o, "model", s->model_id);
    cJSON_AddStringToObject(o, "system_fingerprint", "claq");
    cJSON *arr = cJSON_AddArrayToObject(o, "choices");
    for (int i = 0; i < g->n_choices; i++) {
        srv_choice *c = &g->choices[i];
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddNumberToObject(ch, "index", i);
        srv_buf t = {0};
        if (g->echo && g->echo_text)
            srv_buf_append(&t, g->echo_text[c->prompt_idx], g->echo_len[c->prompt_idx]);
        srv_buf_append(&t, c->text.p ? c->text.p : "", c->text.len);
        if (g->kind == SRV_GEN_CHAT) {
            cJSON *m = cJSON_AddObjectToObject(ch, "message");
            cJSON_AddStringToObject(m, "role", "assistant");
            if (g->tools && srv_toolscan_complete(&c->ts) && c->finish == SRV_FINISH_STOP) {
                cJSON_AddNullToObject(m, "content");
                cJSON_AddItemToObject(m, "tool_calls", tool_calls_json(g, i));
            } else {
                if (g->tools && c->ts.mode == SRV_TS_CALLS) {
                    /* calls that never ended (max_tokens): what was written, as text */
                    srv_buf_append(&t, c->ts.held.p ? c->ts.held.p : "", c->ts.held.len);
                    srv_buf_append(&t, c->ts.raw.p ? c->ts.raw.p : "", c->ts.raw.len);
                }
                cJSON_AddStringToObject(m, "content", t.p ? t.p : "");
            }
        } else {
            cJSON_AddStringToObject(ch, "text", t.p ? t.p : "");
        }
        srv_buf_free(&t);
        if (c->lp) {
            cJSON_AddItemToObject(ch, "logprobs", c->lp);
            c->lp = NULL;
        } else {
            cJSON_AddNullToObject(ch, "logprobs");
        }
        cJSON_AddStringToObject(ch, "finish_reason", finish_name(g, c));
        cJSON_AddItemToArray(arr, ch);
    }
    cJSON_AddItemToObject(o, "usage", usage_obj(g));
    srv_resp_set_owner(r, NULL, NULL);
    gen_free(s, g);
    srv_resp_json(r, 200, o, NULL);
    cJSON_Delete(o);
    srv_server_check_drained(s);
}

/* Stream + echo + logprobs: the echoed prompt as one chunk carrying the prompt's logprobs
 * (collected in c->lp from SRV_EV_PROMPT_LP), once they are all in. */
static void echo_flush(srv_gen *g, int ci)
{
    srv_choice *c = &g->choices[ci];
    c->echo_pending = 0;
    cJSON *o = chunk_base(g);
    cJSON *arr = cJSON_AddArrayToObject(o, "choices");
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", ci);
    cJSON_AddStringToObject(ch, "text", g->echo_text[c->prompt_idx]);
    if (c->lp)
        cJSON_AddItemToObject(ch, "logprobs", c->lp);
    else
        cJSON_AddNullToObject(ch, "logprobs");
    c->lp = NULL;
    cJSON_AddNullToObject(ch, "finish_reason");
    cJSON_AddItemToArray(arr, ch);
    chunk_send(g, o);
}

/* A token (or, last, the end) of a choice that may call tools: free text goes on as content,
 * calls as tool_calls deltas (stream) or are kept for the whole answer. */
static void tool_event(srv_gen *g, int ci, const srv_event *e, int last)
{
    srv_choice *c = &g->choices[ci];
    srv_buf txt = {0};
    srv_toolscan_feed(&c->ts, e->text ? e->text : "", e->text_len, &txt);
    if (last)
        srv_toolscan_end(&c->ts, &txt);
    if (!g->stream) {
        srv_buf_append(&c->text, txt.p ? txt.p : "", txt.len);
        if (e->has_lp) {
            if (!c->lp)
                c->lp = lp_new(g);
            lp_add(g, c, c->lp, e);
        }
        srv_buf_free(&txt);
        return;
    }
    cJSON *calls = tool_deltas(g, ci);
    const srv_event *lpe = e->has_lp ? e : NULL;
    if (txt.len || calls || lpe || last)
        stream_chunk(g, ci, txt.len ? txt.p : NULL, txt.len, lpe,
                     last ? finish_name(g, c) : NULL, calls);
    srv_buf_free(&txt);
}

static void on_event(srv_server *s, srv_gen *g, int ci, const srv_event *e)
{
    srv_choice *c = &g->choices[ci];
    uint64_t now = uv_hrtime();
    if (e->kind == SRV_EV_KEEPALIVE) {
        if (g->stream)
            srv_resp_stream_write(g->resp, ": keep-alive\n\n", 14);
        return;
    }
    if (e->kind == SRV_EV_PROMPT_LP) {
        if (c->lp)
            lp_add_prompt(g, c, e->prev_token, e->token, e);
        return;
    }
    if (c->echo_pending && (e->kind == SRV_EV_TOKEN || e->kind == SRV_EV_DONE))
        echo_flush(g, ci);
    if (e->kind == SRV_EV_TOKEN) {
        if (!g->got_first) {
            g->got_first = 1;
            g->resp->ttft_s = (double)(now - g->resp->t_start) * 1e-9;
            srv_hist_observe(&s->metrics.ttft, g->resp->ttft_s);
        }
        if (c->t_last)
            srv_hist_observe(&s->metrics.itl, (double)(now - c->t_last) * 1e-9);
        c->t_last = now;
        c->completion_tokens++;
        if (g->tools) {
            tool_event(g, ci, e, 0);
        } else if (g->stream) {
            if (e->text_len > 0 || e->has_lp)
                stream_chunk(g, ci, e->text ? e->text : "", e->text_len,
                             e->has_lp ? e : NULL, NULL, NULL);
        } else {
            srv_buf_append(&c->text, e->text ? e->text : "", e->text_len);
            if (e->has_lp) {
                if (!c->lp)
                    c->lp = lp_new(g);
                lp_add(g, c, c->lp, e);
            }
        }
        c->prev_tok = e->token;
        return;
    }
    if (e->kind != SRV_EV_DONE)
        return;
    /* DONE */
    c->done = 1;
    c->finish = e->finish;
    c->completion_tokens = e->completion_tokens;
    c->cached_tokens = e->cached_tokens;
    snprintf(c->msg, sizeof(c->msg), "%s", e->msg);
    map_del(s, c->task_id);
    c->task_id = 0;
    g->n_done++;
    int ok = e->finish == SRV_FINISH_STOP || e->finish == SRV_FINISH_LENGTH;
    if (g->tools) {
        if (ok)
            tool_event(g, ci, e, 1);
    } else if (g->stream) {
        if (ok)
            stream_chunk(g, ci, e->text_len ? e->text : NULL, e->text_len, NULL,
                         srv_finish_name(e->finish), NULL);
    } else if (e->text_len) {
        srv_buf_append(&c->text, e->text, e->text_len);
    }
    if (g->n_done == g->n_choices)
        gen_complete(s, g);
}

void srv_gen_on_events(srv_server *s, srv_event *ev, int n)
{
    for (int i = 0; i < n; i++) {
        srv_task_ref *ref = map_get(s, ev[i].task_id);
        if (!ref)
            continue;   /* its response is gone: dropped */
        on_event(s, ref->gen, ref->choice, &ev[i]);
    }
}

/* ---- start ---- */


void srv_gen_start(srv_server *s, srv_resp *r, srv_gen_kind kind, const srv_gen_params *p,
                   const srv_gen_prompt *prompts, int n_prompts, const int32_t *stop_ids,
                   int n_stop_ids)
{
    int n_choices = n_prompts * p->n;
    if (n_choices > SRV_MAX_CHOICES) {
        srv_resp_bad(r, "n", "%d prompts x n=%d is %d choices; at most %d", n_prompts, p->n,
                     n_choices, SRV_MAX_CHOICES);
        return;
    }
    /* a request the queue could never take is the client's to fix: 400, not a 429 to retry */
    int capacity = s->cfg->max_queue + s->cfg->max_batch;
    if (n_choices > capacity) {
        srv_resp_bad(r, "n", "%d prompts x n=%d is %d sequences; this server queues at most %d "
                     "(--max-queue + --max-batch)", n_prompts, p->n, n_choices, capacity);
        return;
    }
    /* lengths */
    int max_tokens[SRV_MAX_PROMPTS];
    for (int i = 0; i < n_prompts; i++) {
        if (prompts[i].n == 0) {   /* an empty text with a tokenizer that has no BOS */
            srv_resp_bad(r, kind == SRV_GEN_CHAT ? "messages" : "prompt",
                         "the prompt is empty after tokenization (this tokenizer has no BOS "
                         "token to start from)");
            return;
        }
        int mt = p->max_tokens;
        if (mt < 0)
            mt = kind == SRV_GEN_CHAT ? s->n_ctx - prompts[i].n : 16;
        if (prompts[i].n + (mt > 0 ? mt : 0) > s->n_ctx || prompts[i].n >= s->n_ctx) {
            /* name what the client should shrink: the prompt when it alone is too long */
            const char *what = kind == SRV_GEN_CHAT ? "messages" : "prompt";
            srv_resp_error(r, 400, "invalid_request_error",
                           prompts[i].n < s->n_ctx && p->max_tokens >= 0 ? "max_tokens" : what,
                           "context_length_exceeded",
                           "This model's maximum context length is %d tokens. However, you "
                           "requested %d tokens (%d in the prompt, %d for the completion). "
                           "Please reduce the prompt or the completion length.",
                           s->n_ctx, prompts[i].n + mt, prompts[i].n, mt);
            return;
        }
        max_tokens[i] = mt;
    }

    srv_gen *g = calloc(1, sizeof(*g));
    srv_task **tasks = calloc((size_t)n_choices, sizeof(*tasks));
    if (!g || !tasks) {
        free(g);
        free(tasks);
        srv_resp_error(r, 503, "server_error", NULL, "out_of_memory", "out of memory");
        return;
    }
    s->n_gens++;
    g->srv = s;
    g->resp = r;
    g->kind = kind;
    g->stream = p->stream;
    g->include_usage = p->include_usage && p->stream;
    g->echo = p->echo && kind == SRV_GEN_COMPLETION;
    g->logprobs = p->logprobs;
    g->top_logprobs = p->top_logprobs;
    srv_http_make_id(&s->http, kind == SRV_GEN_CHAT ? "chatcmpl" : "cmpl", g->id, sizeof(g->id));
    g->created = (long long)time(NULL);
    g->n_choices = n_choices;
    g->n_prompts = n_prompts;
    g->choices = calloc((size_t)n_choices, sizeof(*g->choices));
    g->prompt_tokens = calloc((size_t)n_prompts, sizeof(int));
    if (g->echo) {
        g->echo_text = calloc((size_t)n_prompts, sizeof(char *));
        g->echo_len = calloc((size_t)n_prompts, sizeof(size_t));
    }
    int fail = !g->choices || !g->prompt_tokens || (g->echo && (!g->echo_text || !g->echo_len));
    g->tools = kind == SRV_GEN_CHAT && p->tool_choice != SRV_TOOL_NONE;
    for (int ci = 0; ci < n_choices && g->tools && g->choices; ci++)
        srv_toolscan_init(&g->choices[ci].ts, p->tool_args_key, p->tool_parallel);
    /* tool_choice auto: free text unless the first non-blank byte opens a call */
    const int lazy = p->tool_choice != SRV_TOOL_AUTO ? SRV_LAZY_OFF
                     : p->tool_parallel ? SRV_LAZY_OBJECT_ARRAY : SRV_LAZY_OBJECT;
    for (int i = 0; i < n_prompts && !fail; i++) {
        g->prompt_tokens[i] = prompts[i].n;
        if (g->echo) {
            g->echo_text[i] = malloc(prompts[i].text_len + 1);
            if (!g->echo_text[i]) {
                fail = 1;
                break;
            }
            memcpy(g->echo_text[i], prompts[i].text ? prompts[i].text : "", prompts[i].text_len);
            g->echo_text[i][prompts[i].text_len] = '\0';
            g->echo_len[i] = prompts[i].text_len;
        }
    }
    uint64_t base_seed = p->has_seed ? p->seed : mix64(uv_hrtime() ^ (s->http.id_counter << 17));
    double deadline = (double)uv_hrtime() * 1e-9 + s->cfg->request_timeout_s;
    int eos = s->tok ? eng_tokenizer_eos(s->tok) : -1;
    if (eos < 0 && s->model)
        eos = s->model->cfg.eos_id;
    for (int ci = 0; ci < n_choices && !fail; ci++) {
        int pi = ci / p->n;
        srv_task *t = calloc(1, sizeof(*t));
        if (!t) {
            fail = 1;
            break;
        }
        tasks[ci] = t;
        t->id = srv_sched_next_id(&s->sched);
        t->prompt = malloc((size_t)prompts[pi].n * sizeof(int32_t));
        if (!t->prompt) {
            fail = 1;
            break;
        }
        memcpy(t->prompt, prompts[pi].ids, (size_t)prompts[pi].n * sizeof(int32_t));
        t->n_prompt = prompts[pi].n;
        t->max_tokens = max_tokens[pi];
        t->scfg = p->scfg;
        t->scfg.seed = base_seed + (uint64_t)ci;
        if (p->n_bias) {
            t->bias = malloc((size_t)p->n_bias * sizeof(*t->bias));
            if (!t->bias) {
                fail = 1;
                break;
            }
            memcpy(t->bias, p->bias, (size_t)p->n_bias * sizeof(*t->bias));
        }
        t->scfg.bias = t->bias;
        t->scfg.n_bias = p->n_bias;
        if (srv_gen_grammar(p, &t->grammar) != 0) {
            fail = 1;   /* it compiled at parse time: only memory can fail here */
            break;
        }
        t->grammar_lazy = lazy;
        t->want_logprobs = p->logprobs;
        eng_stop_init(&t->stop, p->stops, p->n_stops, NULL);
        if (eos >= 0)
            t->stop_ids[t->n_stop_ids++] = eos;
        /* every end-of-sequence id of the model (LLaMA-3.1: <|end_of_text|>, <|eom_id|>,
         * <|eot_id|>), then the chat template's end of turn */
        const int n_cfg = s->model ? s->model->cfg.n_eos : 0;
        for (int k = 0; k < n_cfg + n_stop_ids; k++) {
            int32_t id = k < n_cfg ? s->model->cfg.eos_ids[k] : stop_ids[k - n_cfg];
            int dup = 0;
            for (int j = 0; j < t->n_stop_ids; j++)
                dup |= t->stop_ids[j] == id;
            if (!dup && t->n_stop_ids < SRV_MAX_STOP_IDS)
                t->stop_ids[t->n_stop_ids++] = id;
        }
        t->deadline = deadline;
        g->choices[ci].prompt_idx = pi;
        /* with echo the returned text starts with the prompt: offsets count from there */
        g->choices[ci].text_offset =
            g->echo ? utf8_chars(prompts[pi].text ? prompts[pi].text : "", prompts[pi].text_len)
                    : 0;
        g->choices[ci].prev_tok = prompts[pi].n ? prompts[pi].ids[prompts[pi].n - 1] : -1;
        if (g->echo && g->logprobs && prompts[pi].n > 0) {
            /* echo + logprobs scores the prompt too (lm-eval-harness asks for this with
             * max_tokens 0); a stream sends the echo with them, before the first token */
            g->choices[ci].echo_pending = g->stream;
            int from = prompts[pi].echo_from;
            t->prompt_lp_from = from > 1 ? from : 1;
            t->n_top_prompt = p->top_logprobs;
            g->choices[ci].lp = lp_new(g);
            if (!g->choices[ci].lp) {
                fail = 1;
                break;
            }
            if (from == 0)
                lp_add_prompt(g, &g->choices[ci], -1, prompts[pi].ids[0], NULL);
        }
        g->choices[ci].task_id = t->id;
    }
    for (int ci = 0; ci < n_choices && !fail; ci++)
        if (map_put(s, g->choices[ci].task_id, g, ci) != 0)
            fail = 1;
    if (fail) {
        for (int ci = 0; ci < n_choices; ci++)
            srv_task_free(tasks[ci]);
        free(tasks);
        gen_free(s, g);
        srv_resp_error(r, 503, "server_error", NULL, "out_of_memory", "out of memory");
        return;
    }
    for (int i = 0; i < n_choices; i++)
        srv_task_set_kind(tasks[i]);
    if (srv_sched_submit(&s->sched, tasks, n_choices) != 0) {
        for (int ci = 0; ci < n_choices; ci++)
            srv_task_free(tasks[ci]);
        free(tasks);
        gen_free(s, g);
        s->metrics.rejections++;
        char hdr[64];
        snprintf(hdr, sizeof(hdr), "Retry-After: %d\r\n", SRV_RETRY_AFTER_S);
        cJSON *o = cJSON_CreateObject();
        cJSON *e = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(e, "message", "the server is at capacity (wait queue full); "
                                              "retry later");
        cJSON_AddStringToObject(e, "type", "rate_limit_error");
        cJSON_AddNullToObject(e, "param");
        cJSON_AddStringToObject(e, "code", "queue_full");
        srv_resp_json(r, 429, o, hdr);
        cJSON_Delete(o);
        return;
    }
    free(tasks);
    srv_resp_set_owner(r, g, gen_release);
    if (g->stream) {
        srv_resp_stream_begin(r);
        if (kind == SRV_GEN_CHAT) {
            /* OpenAI sends the role first, in its own chunk per choice. */
            for (int ci = 0; ci < n_choices; ci++) {
                cJSON *o = chunk_base(g);
                cJSON *arr = cJSON_AddArrayToObject(o, "choices");
                cJSON *ch = cJSON_CreateObject();
                cJSON_AddNumberToObject(ch, "index", ci);
                cJSON *d = cJSON_AddObjectToObject(ch, "delta");
                cJSON_AddStringToObject(d, "role", "assistant");
                cJSON_AddStringToObject(d, "content", "");
                cJSON_AddNullToObject(ch, "logprobs");
                cJSON_AddNullToObject(ch, "finish_reason");
                cJSON_AddItemToArray(arr, ch);
                chunk_send(g, o);
            }
        } else if (g->echo) {
            for (int ci = 0; ci < n_choices; ci++) {
                int pi = g->choices[ci].prompt_idx;
                if (g->echo_len[pi] && !g->choices[ci].echo_pending)
                    stream_chunk(g, ci, g->echo_text[pi], g->echo_len[pi], NULL, NULL, NULL);
            }
        }
    }
}
