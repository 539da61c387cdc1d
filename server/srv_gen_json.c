/* srv_gen_json.c — what a generation sends: OpenAI's text_completion / chat.completion objects
 * and their SSE chunks, logprobs (token text, bytes, alternatives, offsets), tool-call deltas,
 * usage, in-stream errors, and the final response when every choice is done. Loop thread
 * only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "srv_gen_impl.h"
#include "srv_json.h"
#include "srv_limits.h"

static void sse_send(srv_gen *g, cJSON *obj)
{
    size_t len = 0;
    char *txt = srv_json_print(obj, &len);
    if (!txt)
        return;
    srv_buf b = {0};
    srv_buf_puts(&b, "data: ");
    srv_buf_append(&b, txt, len);
    srv_buf_puts(&b, "\n\n");
    srv_resp_stream_write(g->resp, b.p, b.len);
    srv_buf_free(&b);
    free(txt);
}

/* Sends a choices chunk (usage: null on it when include_usage asks for usage on the final
 * chunk only) and frees it. */
void srv_gen_chunk_send(srv_gen *g, cJSON *o)
{
    if (g->include_usage)
        cJSON_AddNullToObject(o, "usage");
    sse_send(g, o);
    cJSON_Delete(o);
}

cJSON *srv_gen_chunk_base(srv_gen *g)
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
size_t srv_gen_utf8_chars(const char *p, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)p[i] & 0xC0) != 0x80;
    return n;
}

/* Text of a token as valid UTF-8 (partial characters become U+FFFD) into out[cap] (1024: the
 * repair at most triples 300 bytes), a NUL byte masked as srv_json_text masks it, so that it
 * survives as a C string into cJSON; its raw bytes into raw[300]. */
static void token_text(srv_server *s, int32_t prev, int32_t tok, char *out, size_t cap,
                       unsigned char *raw, size_t *n_raw)
{
    char b[300], fixed[3 * sizeof b + 1];
    size_t n = eng_tokenizer_token_bytes(s->tok, prev, tok, b, sizeof(b));
    if (n > sizeof(b))
        n = sizeof(b);
    memcpy(raw, b, n);
    *n_raw = n;
    size_t w = srv_utf8_repair(b, n, fixed, sizeof fixed);
    srv_json_mask_nul(fixed, w, out, cap);
}

static cJSON *bytes_arr(const unsigned char *raw, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(raw[i]));
    return a;
}

/* The completions format's name for a token, in "tokens" and as a key of "top_logprobs": its
 * text, or, when its bytes are not whole UTF-8 characters (a byte-fallback piece, half of an
 * emoji), "bytes:\xe2\x80" as OpenAI writes them: U+FFFD for each would give distinct tokens one
 * key, and a chosen token's logprob could then be shown under another token's value.
 * out must hold 6 + 4 x 300 bytes. */
static void lp_key(const char *txt, const unsigned char *raw, size_t n_raw, char *out, size_t cap)
{
    if (srv_utf8_valid((const char *)raw, n_raw)) {
        snprintf(out, cap, "%s", txt);
        return;
    }
    size_t w = (size_t)snprintf(out, cap, "bytes:");
    for (size_t i = 0; i < n_raw && w + 5 <= cap; i++)
        w += (size_t)snprintf(out + w, cap - w, "\\x%02x", raw[i]);
}

#define LP_KEY_CAP (6 + 4 * 300 + 1)

/* One entry of the completions logprobs format: appends to the four parallel arrays of obj the
 * token's name (lp_key), its logprob and its top alternatives (at most n_top, and the token
 * itself when it is not among them; lp NULL gives null for both: a first prompt token with no
 * context), and the text offset, which then advances by adv,
 * the characters the token added to the returned text (vLLM's convention: a token whose bytes
 * end no character adds none, and the one that completes it adds it). Two alternatives with one
 * name keep the likelier; the chosen token's name always maps to its own logprob. */
static void lp_add_entry(srv_server *s, cJSON *obj, int32_t prev, int32_t tok, const char *txt,
                         const unsigned char *raw, size_t n_raw, const eng_logprob *lp,
                         int n_top, size_t *offset, size_t adv)
{
    char key[LP_KEY_CAP];
    lp_key(txt, raw, n_raw, key, sizeof key);
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(obj, "tokens"), cJSON_CreateString(key));
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(obj, "token_logprobs"),
                         lp ? cJSON_CreateNumber(lp->logprob) : cJSON_CreateNull());
    cJSON *top = lp ? cJSON_CreateObject() : cJSON_CreateNull();
    for (int i = 0; lp && i < lp->n_top && i < n_top; i++) {
        char tt[1024], tk[LP_KEY_CAP];
        unsigned char tr[300];
        size_t ntr;
        token_text(s, prev, lp->top_ids[i], tt, sizeof(tt), tr, &ntr);
        lp_key(tt, tr, ntr, tk, sizeof tk);
        if (lp->top_ids[i] != tok && strcmp(tk, key) == 0)
            continue;   /* another token under the chosen one's name */
        if (!cJSON_GetObjectItemCaseSensitive(top, tk))
            cJSON_AddNumberToObject(top, tk, lp->top_logprobs[i]);
    }
    /* the chosen token too, as OpenAI's completions (and vLLM) always return it: up to n_top + 1
     * entries */
    if (lp && !cJSON_GetObjectItemCaseSensitive(top, key))
        cJSON_AddNumberToObject(top, key, lp->logprob);
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(obj, "top_logprobs"), top);
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(obj, "text_offset"),
                         cJSON_CreateNumber((double)*offset));
    *offset += adv;
}

/* Logprobs of one token: chat format appends to arr ({"content":[...]} entries); completions
 * format appends to the four parallel arrays of obj. */
void srv_gen_lp_add(srv_gen *g, srv_choice *c, cJSON *target, int32_t prev, const srv_event *e)
{
    srv_server *s = g->srv;
    char txt[1024];
    unsigned char raw[300];
    size_t n_raw;
    token_text(s, prev, e->token, txt, sizeof(txt), raw, &n_raw);
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
            token_text(s, prev, e->lp.top_ids[i], tt, sizeof(tt), tr, &ntr);
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "token", tt);
            cJSON_AddNumberToObject(x, "logprob", e->lp.top_logprobs[i]);
            cJSON_AddItemToObject(x, "bytes", bytes_arr(tr, ntr));
            cJSON_AddItemToArray(top, x);
        }
        cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(target, "content"), ent);
    } else {
        /* the token's own characters: text held back for a stop string comes out with a
         * later token, and counting what came out shifted every offset after it */
        lp_add_entry(s, target, prev, e->token, txt, raw, n_raw, &e->lp, g->top_logprobs,
                     &c->text_offset, e->token_chars);
    }
}

cJSON *srv_gen_lp_new(srv_gen *g)
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
void srv_gen_lp_add_prompt(srv_gen *g, srv_choice *c, int32_t prev, int32_t tok,
                          const srv_event *e)
{
    char txt[1024];
    unsigned char raw[300];
    size_t n_raw;
    token_text(g->srv, prev, tok, txt, sizeof(txt), raw, &n_raw);
    const size_t adv = c->prompt_at < c->n_prompt_adv ? c->prompt_adv[c->prompt_at] : 0;
    c->prompt_at++;
    lp_add_entry(g->srv, c->lp, prev, tok, txt, raw, n_raw, e ? &e->lp : NULL,
                 ENG_MAX_TOP_LOGPROBS, &c->prompt_offset, adv);
}

int srv_gen_prompt_advances(srv_gen *g, srv_choice *c, const int32_t *ids, int n, int from)
{
    c->prompt_adv = calloc(n > 0 ? (size_t)n : 1, sizeof *c->prompt_adv);
    if (!c->prompt_adv)
        return -1;
    c->n_prompt_adv = n;
    c->prompt_at = from;
    eng_detok d;
    eng_detok_init(&d, g->srv->tok, 1);   /* as the echoed text of ids is decoded */
    char out[ENG_GEN_TEXT_CAP];
    for (int i = from; i < n; i++) {
        size_t w = eng_detok_push(&d, ids[i], out, sizeof out);
        if (i == n - 1)
            w += eng_detok_flush(&d, out + w, sizeof out - w);
        c->prompt_adv[i] = (uint16_t)srv_gen_utf8_chars(out, w);
    }
    return 0;
}

void srv_gen_stream_chunk(srv_gen *g, int ci, const char *text, size_t len,
                          const srv_lp_held *lps, int n_lps, const char *finish,
                          cJSON *tool_calls)
{
    srv_choice *c = &g->choices[ci];
    cJSON *o = srv_gen_chunk_base(g);
    cJSON *arr = cJSON_AddArrayToObject(o, "choices");
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", ci);
    srv_buf t = {0};
    srv_buf_append(&t, text ? text : "", len);
    if (g->kind == SRV_GEN_CHAT) {
        cJSON *delta = cJSON_AddObjectToObject(ch, "delta");
        if (text)
            srv_json_add_text(delta, "content", t.p, t.len);
        if (tool_calls)
            cJSON_AddItemToObject(delta, "tool_calls", tool_calls);
    } else {
        srv_json_add_text(ch, "text", t.p, t.len);
    }
    if (n_lps > 0) {
        cJSON *lp = srv_gen_lp_new(g);
        for (int i = 0; i < n_lps; i++)
            srv_gen_lp_add(g, c, lp, lps[i].ev.prev_token, &lps[i].ev);
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
    srv_gen_chunk_send(g, o);
}

/* The id of call k of choice ci: "call_" and 24 hex digits, the same in a stream and whole. */
static void call_id(const srv_gen *g, int ci, int k, char *out, size_t cap)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = g->id; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    uint64_t a = srv_gen_mix64(h ^ ((uint64_t)ci << 20) ^ (uint64_t)k);
    uint64_t b = srv_gen_mix64(a + 0x9e3779b97f4a7c15ULL);
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

/* message.tool_calls of a whole answer: every call, or (cut: the answer ended inside them) the
 * calls whose name was written, with their arguments as far as a stream would have sent them. */
static cJSON *tool_calls_json(const srv_gen *g, int ci, int cut)
{
    const srv_choice *c = &g->choices[ci];
    cJSON *arr = cJSON_CreateArray();
    for (int k = 0; k < c->ts.n_calls; k++) {
        const srv_tool_call *call = &c->ts.calls[k];
        if (cut && !call->name_done)
            break;
        cJSON *it = cJSON_CreateObject();
        char id[48];
        call_id(g, ci, k, id, sizeof(id));
        cJSON_AddStringToObject(it, "id", id);
        cJSON_AddStringToObject(it, "type", "function");
        cJSON *fn = cJSON_AddObjectToObject(it, "function");
        cJSON_AddStringToObject(fn, "name", call->name.p ? call->name.p : "");
        srv_buf args = {0};
        srv_buf_append(&args, call->args.p ? call->args.p : "",
                       cut ? srv_tool_call_ready(call) : call->args.len);
        cJSON_AddStringToObject(fn, "arguments", args.p ? args.p : "");
        srv_buf_free(&args);
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
    srv_buf b = {0};
    srv_buf_puts(&b, "data: ");
    srv_error_body(&b, type, NULL, code, msg);
    srv_buf_puts(&b, "\n\n");
    if (b.p)
        srv_resp_stream_write(g->resp, b.p, b.len);
    srv_buf_free(&b);
}

/* All choices are done: finish the response, free g. The last thing that touches g->resp. */
/* Base64 of the little-endian float32 bytes of v[n] (OpenAI's encoding_format "base64"). */
static char *base64_floats(const float *v, int n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t len = (size_t)n * 4, o = 0;
    unsigned char *b = malloc(len ? len : 1);
    char *out = malloc((len + 2) / 3 * 4 + 1);
    if (!b || !out) {
        free(b);
        free(out);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int k = 0; k < 4; k++)
            b[4 * i + k] = (unsigned char)(u >> (8 * k));
    }
    for (size_t i = 0; i < len; i += 3) {
        uint32_t w = (uint32_t)b[i] << 16 | (i + 1 < len ? (uint32_t)b[i + 1] << 8 : 0) |
                     (i + 2 < len ? b[i + 2] : 0);
        out[o++] = tab[w >> 18 & 63];
        out[o++] = tab[w >> 12 & 63];
        out[o++] = i + 1 < len ? tab[w >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? tab[w & 63] : '=';
    }
    out[o] = 0;
    free(b);
    return out;
}

/* /v1/embeddings: {"object":"list","data":[{"object":"embedding","index",
 * "embedding"}],"model","usage"}, then g is freed. */
static void embed_response(srv_server *s, srv_gen *g)
{
    srv_resp *r = g->resp;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *arr = cJSON_AddArrayToObject(o, "data");
    for (int i = 0; i < g->n_choices; i++) {
        const srv_choice *c = &g->choices[i];
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "object", "embedding");
        cJSON_AddNumberToObject(d, "index", i);
        if (g->base64) {
            char *b64 = base64_floats(c->vec, c->n_vec);
            cJSON_AddStringToObject(d, "embedding", b64 ? b64 : "");
            free(b64);
        } else {
            cJSON *e = cJSON_AddArrayToObject(d, "embedding");
            for (int j = 0; e && j < c->n_vec; j++)
                cJSON_AddItemToArray(e, cJSON_CreateNumber((double)c->vec[j]));
        }
        cJSON_AddItemToArray(arr, d);
    }
    cJSON_AddStringToObject(o, "model", s->model_id);
    cJSON *u = usage_obj(g);
    cJSON_DeleteItemFromObjectCaseSensitive(u, "completion_tokens");
    cJSON_DeleteItemFromObjectCaseSensitive(u, "prompt_tokens_details");
    cJSON_AddItemToObject(o, "usage", u);
    srv_resp_set_owner(r, NULL, NULL);
    srv_gen_free(s, g);
    srv_resp_json(r, 200, o, NULL);
    cJSON_Delete(o);
    srv_server_check_drained(s);
}

void srv_gen_complete(srv_server *s, srv_gen *g)
{
    srv_resp *r = g->resp;
    /* the worst outcome decides an error response */
    const srv_choice *bad = NULL;
    for (int i = 0; i < g->n_choices; i++) {
        srv_finish f = g->choices[i].finish;
        if (f == SRV_FINISH_ERROR || f == SRV_FINISH_TIMEOUT || f == SRV_FINISH_CANCELLED ||
            f == SRV_FINISH_GRAMMAR) {
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
    } else if (bad && bad->finish == SRV_FINISH_GRAMMAR) {
        /* the request asks for what this model cannot write: the client's to change */
        etype = "invalid_request_error";
        ecode = "unsatisfiable_format";
        estatus = 400;
    } else if (bad && bad->finish == SRV_FINISH_CANCELLED) {
        etype = "server_error";
        ecode = "server_shutting_down";
        estatus = 503;
    }
    char emsg[300];
    if (bad)
        snprintf(emsg, sizeof(emsg), "%s",
                 bad->msg[0] ? bad->msg
                 : bad->finish == SRV_FINISH_CANCELLED ? "the server is shutting down"
                                                       : "generation failed");

    if (g->stream) {
        if (bad)
            stream_error(g, etype, ecode, emsg);
        if (g->include_usage) {
            cJSON *o = srv_gen_chunk_base(g);
            cJSON_AddArrayToObject(o, "choices");
            cJSON_AddItemToObject(o, "usage", usage_obj(g));
            sse_send(g, o);
            cJSON_Delete(o);
        } else {
            cJSON_Delete(usage_obj(g));   /* fills the log's token counts */
        }
        srv_resp_stream_write(r, "data: [DONE]\n\n", 14);
        srv_resp_set_owner(r, NULL, NULL);
        srv_gen_free(s, g);
        srv_resp_stream_end(r);
        srv_server_check_drained(s);
        return;
    }
    for (int i = 0; !bad && g->kind == SRV_GEN_EMBED && i < g->n_choices; i++) {
        if (g->choices[i].n_vec == 0) {   /* the vector was lost (out of memory) */
            bad = &g->choices[i];
            snprintf(emsg, sizeof(emsg), "out of memory for an embedding");
            estatus = 503;
            ecode = "out_of_memory";
        }
    }
    if (bad) {
        cJSON_Delete(usage_obj(g));
        srv_resp_set_owner(r, NULL, NULL);
        srv_gen_free(s, g);
        srv_resp_error(r, estatus, etype, NULL, ecode, "%s", emsg);
        srv_server_check_drained(s);
        return;
    }
    if (g->kind == SRV_GEN_EMBED) {
        embed_response(s, g);
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
            int whole = g->tools && srv_toolscan_complete(&c->ts) &&
                        c->finish == SRV_FINISH_STOP;
            /* calls cut short (max_tokens) once a name was whole: what a stream sent, as
             * tool_calls with the arguments written so far, finish_reason "length" */
            int cut = !whole && g->tools && c->ts.mode == SRV_TS_CALLS && c->ts.n_calls > 0 &&
                      c->ts.calls[0].name_done;
            if (whole || cut) {
                cJSON_AddNullToObject(m, "content");
                cJSON_AddItemToObject(m, "tool_calls", tool_calls_json(g, i, cut));
            } else {
                if (g->tools && c->ts.mode == SRV_TS_CALLS) {
                    /* a call cut before its name was whole: what was written, as text */
                    srv_buf_append(&t, c->ts.held.p ? c->ts.held.p : "", c->ts.held.len);
                    srv_buf_append(&t, c->ts.raw.p ? c->ts.raw.p : "", c->ts.raw.len);
                }
                srv_json_add_text(m, "content", t.p, t.len);
            }
        } else {
            srv_json_add_text(ch, "text", t.p, t.len);
        }
        srv_buf_free(&t);
        if (c->lp) {
            cJSON_AddItemToObject(ch, "logprobs", c->lp);
            c->lp = NULL;
        } else if (g->logprobs) {
            /* asked for, and no token came with text (the first was an end token): empty
             * lists, as OpenAI sends them, not null (SDKs read .content / .tokens) */
            cJSON_AddItemToObject(ch, "logprobs", srv_gen_lp_new(g));
        } else {
            cJSON_AddNullToObject(ch, "logprobs");
        }
        cJSON_AddStringToObject(ch, "finish_reason", finish_name(g, c));
        cJSON_AddItemToArray(arr, ch);
    }
    cJSON_AddItemToObject(o, "usage", usage_obj(g));
    srv_resp_set_owner(r, NULL, NULL);
    srv_gen_free(s, g);
    srv_resp_json(r, 200, o, NULL);
    cJSON_Delete(o);
    srv_server_check_drained(s);
}

/* Stream + echo + logprobs: the echoed prompt as one chunk carrying the prompt's logprobs
 * (collected in c->lp from SRV_EV_PROMPT_LP), once they are all in. */
void srv_gen_echo_flush(srv_gen *g, int ci)
{
    srv_choice *c = &g->choices[ci];
    c->echo_pending = 0;
    cJSON *o = srv_gen_chunk_base(g);
    cJSON *arr = cJSON_AddArrayToObject(o, "choices");
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", ci);
    srv_json_add_text(ch, "text", g->echo_text[c->prompt_idx], g->echo_len[c->prompt_idx]);
    if (c->lp)
        cJSON_AddItemToObject(ch, "logprobs", c->lp);
    else
        cJSON_AddNullToObject(ch, "logprobs");
    c->lp = NULL;
    cJSON_AddNullToObject(ch, "finish_reason");
    cJSON_AddItemToArray(arr, ch);
    srv_gen_chunk_send(g, o);
}

/* A token (or, last, the end) of a choice that may call tools: free text goes on as content,
 * calls as tool_calls deltas (stream) or are kept for the whole answer. */
void srv_gen_tool_event(srv_gen *g, int ci, const srv_event *e, int last)
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
                c->lp = srv_gen_lp_new(g);
            srv_gen_lp_add(g, c, c->lp, c->prev_tok, e);
        }
        srv_buf_free(&txt);
        return;
    }
    cJSON *calls = tool_deltas(g, ci);
    if (last && c->ts.mode == SRV_TS_CALLS && !calls &&
        (c->ts.n_calls == 0 || !c->ts.calls[0].header_sent) &&
        !(c->finish == SRV_FINISH_STOP && srv_toolscan_complete(&c->ts))) {
        /* a call cut before its name was whole sent nothing yet: it ends as text, as the
         * whole answer's content does */
        srv_buf_append(&txt, c->ts.held.p ? c->ts.held.p : "", c->ts.held.len);
        srv_buf_append(&txt, c->ts.raw.p ? c->ts.raw.p : "", c->ts.raw.len);
    }
    srv_lp_held one = {.ev = *e};
    one.ev.text = NULL;
    one.ev.prev_token = c->prev_tok;
    const int n_lp = e->has_lp ? 1 : 0;
    if (txt.len || calls || n_lp || last)
        srv_gen_stream_chunk(g, ci, txt.len ? txt.p : NULL, txt.len, &one, n_lp,
                     last ? finish_name(g, c) : NULL, calls);
    srv_buf_free(&txt);
}
