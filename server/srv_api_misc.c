/* srv_api_misc.c — the small endpoints: GET /v1/models (and /v1/models/{id}), GET /health,
 * GET /metrics, POST /tokenize and /detokenize, plus the tokenizing helpers the generation
 * handlers share. Loop thread only (the tokenizer is immutable and thread-safe). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "srv_api.h"
#include "srv_json.h"
#include "srv_limits.h"

int srv_prompt_bytes_ok(srv_server *s, srv_resp *r, size_t len, size_t floor, const char *param)
{
    size_t cap = (size_t)s->n_ctx * SRV_MAX_PROMPT_BYTES_PER_TOKEN;
    if (cap < floor)
        cap = floor;
    if (len <= cap)
        return 0;
    if (cap == floor)
        srv_resp_error(r, 400, "invalid_request_error", param, "context_length_exceeded",
                       "The text is %zu bytes; this endpoint tokenizes at most %zu bytes.", len,
                       cap);
    else
        srv_resp_error(r, 400, "invalid_request_error", param, "context_length_exceeded",
                       "The prompt is %zu bytes of text; this server tokenizes at most %zu bytes "
                       "(%d bytes per token of the %d-token context). Please reduce the prompt.",
                       len, cap, SRV_MAX_PROMPT_BYTES_PER_TOKEN, s->n_ctx);
    return -1;
}

int srv_token_array(srv_server *s, srv_resp *r, const cJSON *arr, const char *param,
                    int32_t **ids, int *n)
{
    *ids = NULL;
    *n = 0;
    int cnt = cJSON_GetArraySize(arr);
    int vocab = s->model->cfg.vocab_size;
    int32_t *v = malloc((size_t)(cnt ? cnt : 1) * sizeof(int32_t));
    if (!v) {
        srv_resp_error(r, 503, "server_error", NULL, "out_of_memory", "out of memory");
        return -1;
    }
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        /* range first: converting 1e300 or inf to an integer type is undefined behaviour */
        if (!cJSON_IsNumber(e) || !(e->valuedouble >= 0 && e->valuedouble < vocab) ||
            e->valuedouble != (double)(int32_t)e->valuedouble) {
            free(v);
            srv_resp_bad(r, param, "'%s' must hold integer token ids in [0, %d)", param, vocab);
            return -1;
        }
        v[i++] = (int32_t)e->valuedouble;
    }
    *ids = v;
    *n = i;
    return 0;
}

int srv_api_check_model(srv_server *s, srv_resp *r, const cJSON *body)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(body, "model");
    if (!m || cJSON_IsNull(m))
        return 0;
    if (!cJSON_IsString(m)) {
        srv_resp_bad(r, "model", "'model' must be a string");
        return -1;
    }
    if (strcmp(m->valuestring, s->model_id) != 0) {
        srv_resp_error(r, 404, "invalid_request_error", "model", "model_not_found",
                       "The model '%.200s' does not exist; this server serves '%s'",
                       m->valuestring, s->model_id);
        return -1;
    }
    return 0;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes the path segment at p (up to '?', '#' or the end) into out (cap bytes,
 * NUL-terminated): clients that URL-encode path parameters send "org%2Fmodel" for "org/model".
 * -1 for a malformed escape or an encoded NUL. */
static int url_decode(const char *p, char *out, size_t cap)
{
    size_t n = 0;
    for (; *p && *p != '?' && *p != '#' && n + 1 < cap; p++) {
        int c = (unsigned char)*p;
        if (c == '%') {
            int hi = hex_digit(p[1]), lo = hi < 0 ? -1 : hex_digit(p[2]);
            if (lo < 0 || (hi == 0 && lo == 0))
                return -1;
            c = hi * 16 + lo;
            p += 2;
        }
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return 0;
}

static cJSON *model_obj(srv_server *s)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", s->model_id);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)s->created);
    cJSON_AddStringToObject(m, "owned_by", "claq");
    if (s->ready) {
        cJSON_AddNumberToObject(m, "max_model_len", s->n_ctx);
        cJSON_AddStringToObject(m, "quantization", s->model->quant_desc);
    }
    return m;
}

void srv_api_models(srv_server *s, srv_resp *r, const srv_request *q)
{
    const char *one = "/v1/models/";
    if (strncmp(q->url, one, strlen(one)) == 0) {
        char id[SRV_MAX_URL_BYTES + 1];
        if (url_decode(q->url + strlen(one), id, sizeof id) != 0) {
            srv_resp_bad(r, NULL, "the model id in the path is not valid percent-encoding (a "
                         "'%%' must be followed by two hex digits and may not encode NUL)");
            return;
        }
        if (strcmp(id, s->model_id) != 0) {
            srv_resp_error(r, 404, "invalid_request_error", "model", "model_not_found",
                           "The model '%.200s' does not exist", id);
            return;
        }
        cJSON *m = model_obj(s);
        srv_resp_json(r, 200, m, NULL);
        cJSON_Delete(m);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *d = cJSON_AddArrayToObject(o, "data");
    cJSON_AddItemToArray(d, model_obj(s));
    srv_resp_json(r, 200, o, NULL);
    cJSON_Delete(o);
}

void srv_api_health(srv_server *s, srv_resp *r, const srv_request *q)
{
    (void)q;
    if (s->ready && !s->draining) {
        static const char ok[] = "{\"status\":\"ok\"}";
        srv_resp_send(r, 200, "application/json", ok, sizeof(ok) - 1, NULL);
        return;
    }
    const char *why = s->draining ? "the server is shutting down"
                      : s->load_failed ? "the model failed to load" : "the model is loading";
    srv_resp_error(r, 503, "server_error", NULL,
                   s->draining ? "server_shutting_down" : "model_loading", "%s", why);
}

void srv_api_metrics(srv_server *s, srv_resp *r, const srv_request *q)
{
    (void)q;
    srv_sched_stats st = {0};
    if (s->sched.started)
        srv_sched_get_stats(&s->sched, &st);
    srv_buf b = {0};
    if (srv_metrics_render(&s->metrics, &st, s->ready, s->model_id, &b) != 0) {
        srv_buf_free(&b);
        srv_resp_error(r, 503, "server_error", NULL, "out_of_memory", "out of memory");
        return;
    }
    srv_resp_send(r, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len, NULL);
    srv_buf_free(&b);
}

void srv_api_tokenize(srv_server *s, srv_resp *r, const cJSON *body)
{
    if (srv_api_check_model(s, r, body))
        return;
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(body, "messages");
    const cJSON *txt = cJSON_GetObjectItemCaseSensitive(body, "prompt");
    if (!txt)
        txt = cJSON_GetObjectItemCaseSensitive(body, "content");
    int add_special = 1;
    const cJSON *as = cJSON_GetObjectItemCaseSensitive(body, "add_special_tokens");
    if (as && !cJSON_IsNull(as)) {
        if (!cJSON_IsBool(as)) {
            srv_resp_bad(r, "add_special_tokens", "'add_special_tokens' must be a boolean");
            return;
        }
        add_special = cJSON_IsTrue(as);
    }
    int32_t *ids = NULL;
    int n = 0;
    if (msgs && !cJSON_IsNull(msgs)) {
        char *text = NULL;
        size_t tl = 0, from = 0, *plain = NULL;
        int n_plain = 0;
        /* the request's tools (and the template's tool format) render as the chat renders
         * them, so the count is the chat's prompt_tokens */
        srv_tools tools;
        if (srv_tools_parse(s, r, body, &tools) != 0 ||
            srv_chat_prompt(s, r, msgs, &tools, &text, &tl, &from, &plain, &n_plain) != 0)
            return;
        int rc = srv_encode(s->tok, text + from, tl - from, srv_chat_adds_bos(s, from), 1, plain,
                            n_plain, &ids, &n);
        free(text);
        free(plain);
        if (rc != 0) {
            srv_resp_bad(r, "messages", "could not tokenize: %s", eng_strerror(rc));
            return;
        }
    } else {
        if (!txt || !cJSON_IsString(txt)) {
            srv_resp_bad(r, "prompt", "'prompt' (a string) or 'messages' is required");
            return;
        }
        size_t len = strlen(txt->valuestring);
        if (srv_prompt_bytes_ok(s, r, len, SRV_MAX_TOKENIZE_BYTES, "prompt") != 0)
            return;
        int rc = srv_encode(s->tok, txt->valuestring, len, add_special, 0, NULL, 0, &ids, &n);
        if (rc != 0) {
            srv_resp_bad(r, "prompt", "could not tokenize: %s", eng_strerror(rc));
            return;
        }
    }
    cJSON *o = cJSON_CreateObject();
    cJSON *a = cJSON_AddArrayToObject(o, "tokens");
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
    cJSON_AddNumberToObject(o, "count", n);
    cJSON_AddNumberToObject(o, "max_model_len", s->n_ctx);
    free(ids);
    srv_resp_json(r, 200, o, NULL);
    cJSON_Delete(o);
}

void srv_api_detokenize(srv_server *s, srv_resp *r, const cJSON *body)
{
    if (srv_api_check_model(s, r, body))
        return;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(body, "tokens");
    if (!t || !cJSON_IsArray(t)) {
        srv_resp_bad(r, "tokens", "'tokens' must be a list of token ids");
        return;
    }
    const int cnt = cJSON_GetArraySize(t);
    const int cap = s->n_ctx > SRV_MAX_DETOKENIZE_TOKENS ? s->n_ctx : SRV_MAX_DETOKENIZE_TOKENS;
    if (cnt > cap) {
        srv_resp_error(r, 400, "invalid_request_error", "tokens", "context_length_exceeded",
                       "'tokens' holds %d ids; this endpoint decodes at most %d.", cnt, cap);
        return;
    }
    int32_t *ids;
    int n;
    if (srv_token_array(s, r, t, "tokens", &ids, &n) != 0)
        return;
    char probe[1];
    size_t need = eng_tokenizer_decode(s->tok, ids, (size_t)n, 1, probe, sizeof(probe));
    char *out = malloc(need + 1);
    if (!out) {
        free(ids);
        srv_resp_error(r, 503, "server_error", NULL, "out_of_memory", "out of memory");
        return;
    }
    eng_tokenizer_decode(s->tok, ids, (size_t)n, 1, out, need + 1);
    free(ids);
    char *fixed = malloc(need * 3 + 1);
    if (!fixed) {
        free(out);
        srv_resp_error(r, 503, "server_error", NULL, "out_of_memory", "out of memory");
        return;
    }
    size_t w = srv_utf8_repair(out, need, fixed, need * 3 + 1);
    cJSON *o = cJSON_CreateObject();
    srv_json_add_text(o, "prompt", fixed, w);
    free(out);
    free(fixed);
    srv_resp_json(r, 200, o, NULL);
    cJSON_Delete(o);
}
