/* srv_gen.c — one generation request's life: its tasks (one per prompt x choice, submitted
 * together or not at all), the scheduler's events routed to its choices, and its end (complete,
 * or released with its response). Parameters are read in srv_gen_params.c, the task map is
 * srv_gen_map.c, and what is sent (one JSON object, or SSE chunks with keep-alive comments, a
 * usage chunk on request and `data: [DONE]`) is built in srv_gen_json.c. Loop thread only.
 * Does not tokenize (srv_tokjob.c does). */
#include "srv_gen.h"

#include <math.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "srv_gen_impl.h"
#include "srv_limits.h"

/* ---- generation lifetime ---- */

void srv_gen_free(srv_server *s, srv_gen *g)
{
    if (!g)
        return;
    /* choices may be missing: gen_new ran out of memory */
    for (int i = 0; g->choices && i < g->n_choices; i++) {
        if (g->choices[i].task_id)
            srv_gen_map_del(s, g->choices[i].task_id);
        srv_buf_free(&g->choices[i].text);
        srv_toolscan_free(&g->choices[i].ts);
        cJSON_Delete(g->choices[i].lp);
        free(g->choices[i].held);
        free(g->choices[i].prompt_adv);
        free(g->choices[i].vec);
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
    srv_gen_free(s, g);
    srv_server_check_drained(s);
}


/* Keeps token event e's logprobs entry until its text comes out (srv_choice.held). -1 when
 * memory runs out: the entry then goes out at once, as it did before entries waited. */
static int lp_hold(srv_choice *c, const srv_event *e)
{
    if (c->n_held == c->cap_held) {
        int cap = c->cap_held ? 2 * c->cap_held : 8;
        srv_lp_held *h = realloc(c->held, (size_t)cap * sizeof *h);
        if (!h)
            return -1;
        c->held = h;
        c->cap_held = cap;
    }
    srv_lp_held *h = &c->held[c->n_held++];
    h->ev = *e;
    h->ev.text = NULL;
    h->ev.prev_token = c->prev_tok;
    h->before = c->chars_fed;
    return 0;
}

/* Held entries whose text has begun to come out (all of them: `all`), counted from the
 * oldest. A token that ends no character (a byte of a split one) goes with the token that
 * completes it: both start before the same character. */
static int lp_ready(const srv_choice *c, int all)
{
    int k = 0;
    while (k < c->n_held && (all || c->held[k].before < c->chars_out))
        k++;
    return k;
}

static void lp_drop(srv_choice *c, int k)
{
    if (k == 0)
        return;   /* held may still be NULL */
    memmove(c->held, c->held + k, (size_t)(c->n_held - k) * sizeof *c->held);
    c->n_held -= k;
}

/* Sends (stream: one chunk, with finish) or keeps text and the entries lps[k] of choice ci. */
static void out_text(srv_gen *g, int ci, const char *text, size_t len, const srv_lp_held *lps,
                     int k, const char *finish)
{
    srv_choice *c = &g->choices[ci];
    if (g->stream) {
        if (len > 0 || k > 0)   /* a token's chunk carries "content" even when empty */
            srv_gen_stream_chunk(g, ci, text ? text : "", len, lps, k, finish, NULL);
        else if (finish)
            srv_gen_stream_chunk(g, ci, NULL, 0, NULL, 0, finish, NULL);
    } else {
        srv_buf_append(&c->text, text ? text : "", len);
        if (k > 0 && !c->lp)
            c->lp = srv_gen_lp_new(g);
        for (int i = 0; i < k; i++)
            srv_gen_lp_add(g, c, c->lp, lps[i].ev.prev_token, &lps[i].ev);
    }
}

/* out_text with the k oldest held entries, which then leave the list. */
static void lp_emit(srv_gen *g, int ci, const char *text, size_t len, int k, const char *finish)
{
    out_text(g, ci, text, len, g->choices[ci].held, k, finish);
    lp_drop(&g->choices[ci], k);
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
            srv_gen_lp_add_prompt(g, c, e->prev_token, e->token, e);
        return;
    }
    if (e->kind == SRV_EV_EMBED) {
        free(c->vec);
        c->n_vec = 0;
        c->vec = malloc((size_t)e->n_vec * sizeof(float));
        if (c->vec && e->vec) {
            memcpy(c->vec, e->vec, (size_t)e->n_vec * sizeof(float));
            c->n_vec = e->n_vec;
        }
        return;
    }
    if (c->echo_pending && (e->kind == SRV_EV_TOKEN || e->kind == SRV_EV_DONE))
        srv_gen_echo_flush(g, ci);
    if (e->kind == SRV_EV_TOKEN) {
        if (!g->got_first) {
            g->got_first = 1;
            g->resp->ttft_s = (double)(now - g->resp->t_start) * 1e-9;
            srv_hist_observe(&s->metrics.ttft, g->resp->ttft_s);
            /* The response's counts are kept current from here on, so that the access log of
             * one abandoned midway reports what was read and made (usage_obj sets the final
             * counts of one that completes). */
            g->resp->prompt_tokens = 0;
            for (int i = 0; i < g->n_prompts; i++)
                g->resp->prompt_tokens += g->prompt_tokens[i];
        }
        if (c->t_last)
            srv_hist_observe(&s->metrics.itl, (double)(now - c->t_last) * 1e-9);
        c->t_last = now;
        c->completion_tokens++;
        g->resp->completion_tokens++;
        if (g->tools) {
            srv_gen_tool_event(g, ci, e, 0);
        } else {
            int held = e->has_lp && lp_hold(c, e) == 0;
            c->chars_fed += e->token_chars;
            c->chars_out += srv_gen_utf8_chars(e->text ? e->text : "", e->text_len);
            if (e->has_lp && !held) {   /* no memory to hold it: out at once */
                srv_lp_held now = {.ev = *e};
                now.ev.prev_token = c->prev_tok;
                out_text(g, ci, e->text, e->text_len, &now, 1, NULL);
            } else {
                lp_emit(g, ci, e->text, e->text_len, lp_ready(c, 0), NULL);
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
    g->resp->completion_tokens += e->completion_tokens - c->completion_tokens;
    c->completion_tokens = e->completion_tokens;
    c->cached_tokens = e->cached_tokens;
    snprintf(c->msg, sizeof(c->msg), "%s", e->msg);
    srv_gen_map_del(s, c->task_id);
    c->task_id = 0;
    g->n_done++;
    int ok = e->finish == SRV_FINISH_STOP || e->finish == SRV_FINISH_LENGTH;
    if (g->tools) {
        if (ok)
            srv_gen_tool_event(g, ci, e, 1);
    } else if (ok) {
        /* the text held back comes out now; at a stop string, what it took stays out */
        c->chars_out += srv_gen_utf8_chars(e->text ? e->text : "", e->text_len);
        lp_emit(g, ci, e->text_len ? e->text : NULL, e->text_len,
                lp_ready(c, e->finish != SRV_FINISH_STOP), srv_finish_name(e->finish));
    } else if (!g->stream && e->text_len) {
        srv_buf_append(&c->text, e->text, e->text_len);
    }
    if (g->n_done == g->n_choices)
        srv_gen_complete(s, g);
}

void srv_gen_on_events(srv_server *s, srv_event *ev, int n)
{
    for (int i = 0; i < n; i++) {
        srv_task_ref *ref = srv_gen_map_get(s, ev[i].task_id);
        if (!ref)
            continue;   /* its response is gone: dropped */
        on_event(s, ref->gen, ref->choice, &ev[i]);
    }
}

/* ---- start ---- */


/* Answers r and returns -1 when the request cannot run: too many choices for the server, an
 * empty prompt, or a prompt + max_tokens over the context. Else fills max_tokens[n_prompts]
 * (the endpoint's default where the request set none). */
static int gen_check(srv_server *s, srv_resp *r, srv_gen_kind kind, const srv_gen_params *p,
                     const srv_gen_prompt *prompts, int n_prompts, int *max_tokens)
{
    int n_choices = n_prompts * p->n;
    /* embeddings have no n: their inputs are what the client sent too many of */
    const char *many = kind == SRV_GEN_EMBED ? "input" : "n";
    if (n_choices > SRV_MAX_CHOICES) {
        srv_resp_bad(r, many, "%d prompts x n=%d is %d choices; at most %d", n_prompts, p->n,
                     n_choices, SRV_MAX_CHOICES);
        return -1;
    }
    /* a request the queue could never take is the client's to fix: 400, not a 429 to retry */
    int capacity = s->cfg->max_queue + s->cfg->max_batch;
    if (n_choices > capacity) {
        srv_resp_bad(r, many, "%d prompts x n=%d is %d sequences; this server queues at most %d "
                     "(--max-queue + --max-batch)", n_prompts, p->n, n_choices, capacity);
        return -1;
    }
    const char *what = kind == SRV_GEN_CHAT ? "messages" : kind == SRV_GEN_EMBED ? "input"
                                                                               : "prompt";
    for (int i = 0; i < n_prompts; i++) {
        if (prompts[i].n == 0) {   /* an empty text with a tokenizer that has no BOS */
            srv_resp_bad(r, what, "the prompt is empty after tokenization (this tokenizer has "
                         "no BOS token to start from)");
            return -1;
        }
        int mt = p->max_tokens;
        if (mt < 0)
            mt = kind == SRV_GEN_CHAT ? s->n_ctx - prompts[i].n : 16;
        /* a prompt may fill the context when nothing is to follow it (max_tokens 0: scoring,
         * echo, embeddings); a chat's default completion length would be 0 there: refused */
        if (prompts[i].n + (mt > 0 ? mt : 0) > s->n_ctx ||
            (prompts[i].n >= s->n_ctx && p->max_tokens != 0)) {
            /* name what the client should shrink: the prompt when it alone is too long */
            srv_resp_error(r, 400, "invalid_request_error",
                           prompts[i].n < s->n_ctx && p->max_tokens >= 0 ? "max_tokens" : what,
                           "context_length_exceeded",
                           "This model's maximum context length is %d tokens. However, you "
                           "requested %d tokens (%d in the prompt, %d for the completion). "
                           "Please reduce the prompt or the completion length.",
                           s->n_ctx, prompts[i].n + (mt > 0 ? mt : 0), prompts[i].n,
                           mt > 0 ? mt : 0);   /* a chat's default is what is left: maybe < 0 */
            return -1;
        }
        max_tokens[i] = mt;
    }
    return 0;
}

/* A generation for the request, with its choices (tool scanners set up) and echo texts; NULL
 * when memory runs out (what was made is freed). Counted in s->n_gens. */
static srv_gen *gen_new(srv_server *s, srv_resp *r, srv_gen_kind kind, const srv_gen_params *p,
                        const srv_gen_prompt *prompts, int n_prompts)
{
    srv_gen *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    s->n_gens++;
    g->srv = s;
    g->resp = r;
    g->kind = kind;
    g->stream = p->stream;
    g->include_usage = p->include_usage && p->stream;
    g->echo = p->echo && kind == SRV_GEN_COMPLETION;
    g->logprobs = p->logprobs;
    g->top_logprobs = p->top_logprobs;
    g->base64 = p->base64;
    srv_http_make_id(&s->http, kind == SRV_GEN_CHAT ? "chatcmpl" : "cmpl", g->id, sizeof(g->id));
    g->created = (long long)time(NULL);
    g->n_choices = n_prompts * p->n;
    g->n_prompts = n_prompts;
    g->choices = calloc((size_t)g->n_choices, sizeof(*g->choices));
    g->prompt_tokens = calloc((size_t)n_prompts, sizeof(int));
    if (g->echo) {
        g->echo_text = calloc((size_t)n_prompts, sizeof(char *));
        g->echo_len = calloc((size_t)n_prompts, sizeof(size_t));
    }
    int fail = !g->choices || !g->prompt_tokens || (g->echo && (!g->echo_text || !g->echo_len));
    g->tools = kind == SRV_GEN_CHAT && p->tool_choice != SRV_TOOL_NONE;
    for (int ci = 0; ci < g->n_choices && g->tools && g->choices; ci++)
        srv_toolscan_init(&g->choices[ci].ts, p->tool_args_key, p->tool_parallel);
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
    if (fail) {
        srv_gen_free(s, g);
        return NULL;
    }
    return g;
}

/* The task of choice ci (prompt pr) into *out, and the choice's state for it; -1 when memory
 * runs out (*out, if made, is the caller's to free). */
static int task_new(srv_server *s, srv_gen *g, int ci, const srv_gen_params *p,
                    const srv_gen_prompt *pr, int max_tokens, uint64_t seed, double deadline,
                    const int32_t *stop_ids, int n_stop_ids, srv_task **out)
{
    srv_task *t = calloc(1, sizeof(*t));
    if (!(*out = t))
        return -1;
    t->id = srv_sched_next_id(&s->sched);
    t->prompt = malloc((size_t)pr->n * sizeof(int32_t));
    if (!t->prompt)
        return -1;
    memcpy(t->prompt, pr->ids, (size_t)pr->n * sizeof(int32_t));
    t->n_prompt = pr->n;
    t->shares_prompt = ci % p->n != 0;
    t->max_tokens = max_tokens;
    t->scfg = p->scfg;
    t->scfg.seed = seed;
    if (p->n_bias) {
        t->bias = malloc((size_t)p->n_bias * sizeof(*t->bias));
        if (!t->bias)
            return -1;
        memcpy(t->bias, p->bias, (size_t)p->n_bias * sizeof(*t->bias));
    }
    t->scfg.bias = t->bias;
    t->scfg.n_bias = p->n_bias;
    if (srv_gen_grammar(p, &t->grammar) != 0)
        return -1;   /* it compiled at parse time: only memory can fail here */
    /* tool_choice auto: free text unless the first non-blank byte opens a call */
    t->grammar_lazy = p->tool_choice != SRV_TOOL_AUTO ? SRV_LAZY_OFF
                      : p->tool_parallel ? SRV_LAZY_OBJECT_ARRAY : SRV_LAZY_OBJECT;
    t->want_logprobs = p->logprobs;
    /* the stop strings were validated with the parameters */
    eng_gen_init(&t->dec, max_tokens);
    /* Under a grammar the value decides where the answer ends: a stop string (the request's,
     * or the template's end-of-turn text) could cut a JSON string mid-value into a "stop".
     * With tool_choice auto they apply to a text answer; a call drops them (task_take). */
    if (!t->grammar || t->grammar_lazy != SRV_LAZY_OFF)
        (void)eng_gen_set_stops(&t->dec, p->stops, p->n_stops, NULL);
    eng_gen_add_model_stop_ids(&t->dec, s->model, s->tok);
    eng_gen_add_stop_ids(&t->dec, stop_ids, n_stop_ids);
    t->deadline = deadline;
    srv_choice *c = &g->choices[ci];
    c->prompt_idx = ci / p->n;
    /* with echo the returned text starts with the prompt: offsets count from there */
    c->text_offset = g->echo ? srv_gen_utf8_chars(pr->text ? pr->text : "", pr->text_len) : 0;
    c->prev_tok = pr->n ? pr->ids[pr->n - 1] : -1;
    if (g->echo && g->logprobs && pr->n > 0) {
        /* echo + logprobs scores the prompt too (lm-eval-harness asks for this with
         * max_tokens 0); a stream sends the echo with them, before the first token */
        c->echo_pending = g->stream;
        int from = pr->echo_from;
        t->prompt_lp_from = from > 1 ? from : 1;
        t->n_top_prompt = p->top_logprobs;
        c->lp = srv_gen_lp_new(g);
        if (!c->lp || srv_gen_prompt_advances(g, c, pr->ids, pr->n, from) != 0)
            return -1;
        if (from == 0)
            srv_gen_lp_add_prompt(g, c, -1, pr->ids[0], NULL);
    }
    c->task_id = t->id;
    t->kind = g->kind == SRV_GEN_EMBED ? SRV_TASK_EMBED
              : max_tokens == 0       ? SRV_TASK_SCORE
                                      : SRV_TASK_GENERATE;
    return 0;
}

/* A stream's opening chunks: chat sends the role first, in its own chunk per choice (as
 * OpenAI does); completions with echo send the prompt text (unless it waits for its
 * logprobs). */
static void gen_stream_begin(srv_gen *g)
{
    srv_resp_stream_begin(g->resp);
    for (int ci = 0; ci < g->n_choices; ci++) {
        if (g->kind == SRV_GEN_CHAT) {
            cJSON *o = srv_gen_chunk_base(g);
            cJSON *arr = cJSON_AddArrayToObject(o, "choices");
            cJSON *ch = cJSON_CreateObject();
            cJSON_AddNumberToObject(ch, "index", ci);
            cJSON *d = cJSON_AddObjectToObject(ch, "delta");
            cJSON_AddStringToObject(d, "role", "assistant");
            cJSON_AddStringToObject(d, "content", "");
            cJSON_AddNullToObject(ch, "logprobs");
            cJSON_AddNullToObject(ch, "finish_reason");
            cJSON_AddItemToArray(arr, ch);
            srv_gen_chunk_send(g, o);
        } else if (g->echo) {
            int pi = g->choices[ci].prompt_idx;
            if (g->echo_len[pi] && !g->choices[ci].echo_pending)
                srv_gen_stream_chunk(g, ci, g->echo_text[pi], g->echo_len[pi], NULL, 0, NULL,
                                     NULL);
        }
    }
}

void srv_gen_start(srv_server *s, srv_resp *r, srv_gen_kind kind, const srv_gen_params *p,
                   const srv_gen_prompt *prompts, int n_prompts, const int32_t *stop_ids,
                   int n_stop_ids)
{
    int max_tokens[SRV_MAX_PROMPTS];
    if (gen_check(s, r, kind, p, prompts, n_prompts, max_tokens) != 0)
        return;
    int n_choices = n_prompts * p->n;
    srv_task **tasks = calloc((size_t)n_choices, sizeof(*tasks));
    srv_gen *g = tasks ? gen_new(s, r, kind, p, prompts, n_prompts) : NULL;
    int fail = !g;
    uint64_t base_seed = p->has_seed ? p->seed
                                     : srv_gen_mix64(uv_hrtime() ^ (s->http.id_counter << 17));
    double deadline = (double)uv_hrtime() * 1e-9 + s->cfg->request_timeout_s;
    for (int ci = 0; ci < n_choices && !fail; ci++) {
        int pi = ci / p->n;
        fail = task_new(s, g, ci, p, &prompts[pi], max_tokens[pi], base_seed + (uint64_t)ci,
                        deadline, stop_ids, n_stop_ids, &tasks[ci]) != 0;
    }
    for (int ci = 0; ci < n_choices && !fail; ci++)
        fail = srv_gen_map_put(s, g->choices[ci].task_id, g, ci) != 0;
    int queued = !fail && srv_sched_submit(&s->sched, tasks, n_choices) == 0;
    if (!queued) {
        for (int ci = 0; tasks && ci < n_choices; ci++)
            srv_task_free(tasks[ci]);
        free(tasks);
        if (g)
            srv_gen_free(s, g);
        if (fail) {
            srv_resp_error(r, 503, "server_error", NULL, "out_of_memory", "out of memory");
            return;
        }
        s->metrics.rejections++;
        char hdr[64];
        snprintf(hdr, sizeof(hdr), "Retry-After: %d\r\n", SRV_RETRY_AFTER_S);
        srv_resp_error_h(r, 429, hdr, "rate_limit_error", NULL, "queue_full",
                         "the server is at capacity (wait queue full); retry later");
        return;
    }
    free(tasks);
    srv_resp_set_owner(r, g, gen_release);
    if (g->stream)
        gen_stream_begin(g);
}
