/* cli_api.c — OpenAI request bodies, SSE chunk handling, whole-response parsing and error
 * reporting for claq-client. Does no socket work itself (cli_http.c) and no argv parsing
 * (cli_main.c). Single-threaded. */
#include "cli_api.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cli_sse.h"

static double cli__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void cli_result_free(cli_result *r)
{
    free(r->text);
    memset(r, 0, sizeof *r);
}

static void cli__result_reset(cli_result *r)
{
    memset(r, 0, sizeof *r);
    r->prompt_tokens = r->completion_tokens = r->total_tokens = -1;
    r->ttft_ms = -1;
}

static int cli__result_append(cli_result *r, const char *s, size_t n)
{
    if (r->text_len + n + 1 > r->text_cap) {
        size_t nc = r->text_cap ? r->text_cap : 256;
        while (nc < r->text_len + n + 1)
            nc *= 2;
        char *nt = realloc(r->text, nc);
        if (!nt)
            return CLI_E_NOMEM;
        r->text = nt;
        r->text_cap = nc;
    }
    memcpy(r->text + r->text_len, s, n);
    r->text_len += n;
    r->text[r->text_len] = '\0';
    return CLI_OK;
}

/* ---- request bodies ------------------------------------------------------------------------- */

/* Adds the sampling fields shared by both routes. Returns 0 or CLI_E_NOMEM. */
static int cli__add_common(cJSON *b, const cli_opts *o)
{
    int ok = 1;
    if (o->model)
        ok &= cJSON_AddStringToObject(b, "model", o->model) != NULL;
    if (o->max_tokens >= 0)
        ok &= cJSON_AddNumberToObject(b, "max_tokens", (double)o->max_tokens) != NULL;
    if (o->has_temperature)
        ok &= cJSON_AddNumberToObject(b, "temperature", o->temperature) != NULL;
    if (o->has_top_p)
        ok &= cJSON_AddNumberToObject(b, "top_p", o->top_p) != NULL;
    if (o->has_seed)
        ok &= cJSON_AddNumberToObject(b, "seed", (double)o->seed) != NULL;
    if (o->stop)
        ok &= cJSON_AddStringToObject(b, "stop", o->stop) != NULL;
    ok &= cJSON_AddBoolToObject(b, "stream", o->stream ? 1 : 0) != NULL;
    if (o->stream) {
        cJSON *so = cJSON_AddObjectToObject(b, "stream_options");
        ok &= so && cJSON_AddBoolToObject(so, "include_usage", 1) != NULL;
    }
    return ok ? CLI_OK : CLI_E_NOMEM;
}

cJSON *cli_api_chat_body(const cli_opts *o, const cJSON *messages)
{
    cJSON *b = cJSON_CreateObject();
    cJSON *msgs = b ? cJSON_AddArrayToObject(b, "messages") : NULL;
    if (!msgs)
        goto fail;
    if (o->system) {
        cJSON *m = cJSON_CreateObject();
        if (!m)
            goto fail;
        cJSON_AddItemToArray(msgs, m);
        if (!cJSON_AddStringToObject(m, "role", "system") ||
            !cJSON_AddStringToObject(m, "content", o->system))
            goto fail;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, messages) {
        cJSON *d = cJSON_Duplicate(it, 1);
        if (!d)
            goto fail;
        cJSON_AddItemToArray(msgs, d);
    }
    if (cli__add_common(b, o) != CLI_OK)
        goto fail;
    return b;
fail:
    cJSON_Delete(b);
    return NULL;
}

cJSON *cli_api_complete_body(const cli_opts *o, const char *prompt)
{
    cJSON *b = cJSON_CreateObject();
    if (!b || !cJSON_AddStringToObject(b, "prompt", prompt) || cli__add_common(b, o) != CLI_OK) {
        cJSON_Delete(b);
        return NULL;
    }
    return b;
}

/* ---- errors from the server ----------------------------------------------------------------- */

/* Copies at most cap-1 bytes of s with control bytes replaced, for showing untrusted text. */
static void cli__sanitize(char *dst, size_t cap, const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        dst[k++] = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch;
    }
    dst[k] = '\0';
}

/* Fills err from an OpenAI error object {"message","type","param","code"}, e.g.
 * "HTTP 404 Not Found: model_not_found: The model 'x' does not exist (type
 * invalid_request_error, param model)"; anything else is shown raw, sanitized. */
static int cli__api_error(cli_err *err, int code, const char *prefix, const cJSON *eobj,
                          const char *raw, size_t raw_len)
{
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(eobj, "message");
    if (!cJSON_IsString(msg)) {
        char m[300];
        cli__sanitize(m, sizeof m, raw ? raw : "", raw ? raw_len : 0);
        return cli_err_set(err, code, "%s: %s", prefix, m[0] ? m : "(empty body)");
    }
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(eobj, "type");
    const cJSON *ec = cJSON_GetObjectItemCaseSensitive(eobj, "code");
    const cJSON *pa = cJSON_GetObjectItemCaseSensitive(eobj, "param");
    char m[300], c[64] = "", extra[160] = "";
    cli__sanitize(m, sizeof m, msg->valuestring, strlen(msg->valuestring));
    if (cJSON_IsString(ec))
        cli__sanitize(c, sizeof c, ec->valuestring, strlen(ec->valuestring));
    else if (cJSON_IsNumber(ec))
        snprintf(c, sizeof c, "%d", ec->valueint);
    if (cJSON_IsString(ty) || cJSON_IsString(pa)) {
        char t[64] = "", p[64] = "";
        if (cJSON_IsString(ty))
            cli__sanitize(t, sizeof t, ty->valuestring, strlen(ty->valuestring));
        if (cJSON_IsString(pa))
            cli__sanitize(p, sizeof p, pa->valuestring, strlen(pa->valuestring));
        snprintf(extra, sizeof extra, " (%s%s%s%s%s)", t[0] ? "type " : "", t,
                 t[0] && p[0] ? ", " : "", p[0] ? "param " : "", p);
    }
    return cli_err_set(err, code, "%s: %s%s%s%s", prefix, c, c[0] ? ": " : "", m, extra);
}

static int cli__http_error(cli_http_conn *c, const cli_http_resp *resp, cli_err *err)
{
    char *body = NULL;
    size_t blen = 0;
    cli_err rerr = {0};
    cli_http_read_all(c, resp, CLI_MAX_ERROR_BODY_BYTES, &body, &blen, NULL, &rerr);
    char prefix[160];
    snprintf(prefix, sizeof prefix, "HTTP %d%s%s", resp->status, resp->reason[0] ? " " : "",
             resp->reason);
    cJSON *j = body ? cJSON_ParseWithLength(body, blen) : NULL;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (cJSON_IsString(e)) {  /* {"error": "text"} (TGI/Ollama-native style) */
        char m[300];
        cli__sanitize(m, sizeof m, e->valuestring, strlen(e->valuestring));
        cli_err_set(err, CLI_E_HTTP, "%s: %s", prefix, m);
    } else {
        cli__api_error(err, CLI_E_HTTP, prefix, e, body, blen);
    }
    if (err && resp->retry_after[0]) {
        size_t n = strlen(err->msg);
        snprintf(err->msg + n, sizeof err->msg - n, " [retry after %s s]", resp->retry_after);
    }
    cJSON_Delete(j);
    free(body);
    return CLI_E_HTTP;
}

/* ---- response handling ---------------------------------------------------------------------- */

typedef struct cli__stream {
    const cli_opts *o;      /* borrowed */
    cli_result *r;          /* borrowed */
    FILE *out;              /* borrowed, may be NULL */
    cli_sse sse;            /* owned */
    cli_err *err;           /* borrowed */
    double t0;              /* request start, ms */
    int done;               /* saw data: [DONE] */
} cli__stream;

/* Picks up id, finish_reason, usage and the content of choices[0] from one chunk or response.
 * whole = 1 for a non-streamed response (message.content instead of delta.content). */
/* cJSON's strings end at a NUL, so a \u0000 escape (a NUL the model wrote) would cut the text
 * short. Before parsing, each such escape becomes the two bytes C0 80, which cJSON keeps and a
 * server's valid UTF-8 never holds; cli__unmask_nul turns them back. In place; returns the new
 * length (never longer). */
static size_t cli__mask_nul_escapes(char *p, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (p[i] == '\\' && i + 5 < n && p[i + 1] == 'u' && memcmp(p + i + 2, "0000", 4) == 0) {
            p[o++] = (char)0xC0;
            p[o++] = (char)0x80;
            i += 6;
        } else if (p[i] == '\\' && i + 1 < n) {   /* any other escape, \\ included */
            p[o++] = p[i++];
            p[o++] = p[i++];
        } else {
            p[o++] = p[i++];
        }
    }
    return o;
}

/* s[0..n) with each C0 80 back to a NUL byte, into out (n bytes suffice); returns its length. */
static size_t cli__unmask_nul(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] == 0xC0 && i + 1 < n && (unsigned char)s[i + 1] == 0x80) {
            out[o++] = '\0';
            i++;
        } else {
            out[o++] = s[i];
        }
    }
    return o;
}

static int cli__take(cli_result *r, const cJSON *j, int whole, FILE *out, double t0)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
    if (cJSON_IsString(id) && !r->id[0])
        snprintf(r->id, sizeof r->id, "%s", id->valuestring);
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(j, "usage");
    if (cJSON_IsObject(usage)) {
        const cJSON *pt = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens");
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens");
        const cJSON *tt = cJSON_GetObjectItemCaseSensitive(usage, "total_tokens");
        if (cJSON_IsNumber(pt))
            r->prompt_tokens = (long)pt->valuedouble;
        if (cJSON_IsNumber(ct))
            r->completion_tokens = (long)ct->valuedouble;
        if (cJSON_IsNumber(tt))
            r->total_tokens = (long)tt->valuedouble;
    }
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(j, "choices");
    if (!cJSON_IsArray(choices))
        return usage ? CLI_OK : CLI_E_PROTO;
    const cJSON *ch;
    cJSON_ArrayForEach(ch, choices) {
        const cJSON *idx = cJSON_GetObjectItemCaseSensitive(ch, "index");
        if (cJSON_IsNumber(idx) && idx->valueint != 0)
            continue;  /* n > 1: this client shows the first choice only */
        const cJSON *fr = cJSON_GetObjectItemCaseSensitive(ch, "finish_reason");
        if (cJSON_IsString(fr))
            snprintf(r->finish_reason, sizeof r->finish_reason, "%s", fr->valuestring);
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(ch, "text");
        if (!text) {
            const cJSON *m = cJSON_GetObjectItemCaseSensitive(ch, whole ? "message" : "delta");
            text = cJSON_GetObjectItemCaseSensitive(m, "content");
        }
        if (cJSON_IsString(text) && text->valuestring[0]) {
            size_t n = strlen(text->valuestring);
            char *t = malloc(n);
            if (!t)
                return CLI_E_NOMEM;
            n = cli__unmask_nul(text->valuestring, n, t);
            if (!whole && r->ttft_ms < 0)
                r->ttft_ms = cli__now_ms() - t0;
            if (cli__result_append(r, t, n) != CLI_OK) {
                free(t);
                return CLI_E_NOMEM;
            }
            r->chunks++;
            if (out) {
                fwrite(t, 1, n, out);
                fflush(out);
            }
            free(t);
        }
    }
    return CLI_OK;
}

static int cli__on_event(void *ctx, const char *name, const char *data, size_t len)
{
    cli__stream *s = ctx;
    if (s->done)
        return CLI_OK;  /* nothing is expected after [DONE]; ignore rather than fail */
    if (name[0] && strcmp(name, "message") != 0 && strcmp(name, "error") != 0)
        return CLI_OK;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        s->done = 1;
        return CLI_OK;
    }
    char *copy = malloc(len ? len : 1);
    if (!copy)
        return cli_err_set(s->err, CLI_E_NOMEM, "out of memory");
    memcpy(copy, data, len);
    cJSON *j = cJSON_ParseWithLength(copy, cli__mask_nul_escapes(copy, len));
    free(copy);
    if (!j) {
        char m[120];
        cli__sanitize(m, sizeof m, data, len);
        return cli_err_set(s->err, CLI_E_PROTO, "stream event is not JSON: %s", m);
    }
    int rc = CLI_OK;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (e) {
        rc = cli__api_error(s->err, CLI_E_API, "error in stream", e, data, len);
    } else {
        rc = cli__take(s->r, j, 0, s->out, s->t0);
        if (rc == CLI_E_PROTO)
            rc = cli_err_set(s->err, CLI_E_PROTO, "stream chunk without choices or usage");
        else if (rc == CLI_E_NOMEM)
            rc = cli_err_set(s->err, CLI_E_NOMEM, "out of memory");
    }
    cJSON_Delete(j);
    return rc;
}

static int cli__on_sse_bytes(void *ctx, const char *data, size_t len)
{
    cli__stream *s = ctx;
    return cli_sse_feed(&s->sse, data, len, cli__on_event, s, s->err);
}

/* Authorization header line, or NULL; buf is the caller's storage. */
static const char *cli__auth_header(const cli_opts *o, char *buf, size_t cap)
{
    if (!o->api_key || !o->api_key[0])
        return NULL;
    int n = snprintf(buf, cap, "Authorization: Bearer %s", o->api_key);
    return (n > 0 && (size_t)n < cap) ? buf : NULL;
}

int cli_api_post(const cli_opts *o, const char *route, const cJSON *body, FILE *out,
                 cli_result *r, cli_err *err)
{
    cli__result_reset(r);
    char *json = cJSON_PrintUnformatted(body);
    if (!json)
        return cli_err_set(err, CLI_E_NOMEM, "out of memory building the request");
    char auth[1100];
    const char *hdrs[3] = {0};
    int nh = 0;
    hdrs[nh++] = o->stream ? "Accept: text/event-stream" : "Accept: application/json";
    if (o->api_key && strlen(o->api_key) > 1000) {
        free(json);
        return cli_err_set(err, CLI_E_USAGE, "API key longer than 1000 bytes");
    }
    const char *ah = cli__auth_header(o, auth, sizeof auth);
    if (ah)
        hdrs[nh++] = ah;

    cli_http_conn c;
    cli_http_resp resp;
    double t0 = cli__now_ms();
    int rc = cli_http_request(&c, &o->url, "POST", route, "application/json", json, strlen(json),
                              hdrs, o->timeout_ms, &resp, err);
    free(json);
    if (rc != CLI_OK)
        return rc;
    if (resp.status >= 300) {
        rc = cli__http_error(&c, &resp, err);
        cli_http_close(&c);
        return rc;
    }

    if (o->stream && strncasecmp(resp.content_type, "text/event-stream", 17) == 0) {
        cli__stream s = {.o = o, .r = r, .out = out, .err = err, .t0 = t0};
        rc = cli_http_read_body(&c, &resp, cli__on_sse_bytes, &s, err);
        if (rc == CLI_OK && s.sse.line_len > 0)
            rc = cli_sse_feed(&s.sse, "\n\n", 2, cli__on_event, &s, err);  /* unterminated tail */
        if (rc == CLI_OK && !s.done)
            rc = cli_err_set(err, CLI_E_PROTO, "the stream ended without data: [DONE]");
        cli_sse_free(&s.sse);
    } else {
        /* Not streamed (or a server that ignored stream=true): one JSON document. */
        char *doc = NULL;
        size_t dlen = 0;
        int trunc = 0;
        rc = cli_http_read_all(&c, &resp, CLI_MAX_BODY_BYTES, &doc, &dlen, &trunc, err);
        if (rc == CLI_OK && trunc)
            rc = cli_err_set(err, CLI_E_TOO_BIG, "response body over %d bytes",
                             CLI_MAX_BODY_BYTES);
        cJSON *j = rc == CLI_OK ? cJSON_ParseWithLength(doc, cli__mask_nul_escapes(doc, dlen))
                                : NULL;
        if (rc == CLI_OK && !j) {
            char m[120];
            cli__sanitize(m, sizeof m, doc, dlen);
            rc = cli_err_set(err, CLI_E_PROTO, "response is not JSON: %s", m);
        }
        if (rc == CLI_OK) {
            rc = cli__take(r, j, 1, out, t0);
            if (rc == CLI_E_PROTO)
                cli_err_set(err, rc, "response has no choices");
            else if (rc == CLI_E_NOMEM)
                cli_err_set(err, rc, "out of memory");
        }
        cJSON_Delete(j);
        free(doc);
    }
    r->total_ms = cli__now_ms() - t0;
    cli_http_close(&c);
    return rc;
}

int cli_api_models(const cli_opts *o, FILE *out, cli_err *err)
{
    char auth[1100];
    const char *hdrs[3] = {"Accept: application/json", NULL, NULL};
    if (o->api_key && strlen(o->api_key) > 1000)
        return cli_err_set(err, CLI_E_USAGE, "API key longer than 1000 bytes");
    hdrs[1] = cli__auth_header(o, auth, sizeof auth);
    cli_http_conn c;
    cli_http_resp resp;
    int rc = cli_http_request(&c, &o->url, "GET", "/v1/models", NULL, NULL, 0, hdrs,
                              o->timeout_ms, &resp, err);
    if (rc != CLI_OK)
        return rc;
    if (resp.status >= 300) {
        rc = cli__http_error(&c, &resp, err);
        cli_http_close(&c);
        return rc;
    }
    char *doc = NULL;
    size_t dlen = 0;
    rc = cli_http_read_all(&c, &resp, CLI_MAX_BODY_BYTES, &doc, &dlen, NULL, err);
    cli_http_close(&c);
    if (rc != CLI_OK)
        return rc;
    cJSON *j = cJSON_ParseWithLength(doc, dlen);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
    if (!cJSON_IsArray(data)) {
        rc = cli_err_set(err, CLI_E_PROTO, "/v1/models did not return a list");
    } else {
        const cJSON *m;
        cJSON_ArrayForEach(m, data) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "id");
            if (cJSON_IsString(id))
                fprintf(out, "%s\n", id->valuestring);
        }
    }
    cJSON_Delete(j);
    free(doc);
    return rc;
}

void cli_result_print_stats(const cli_result *r, FILE *f)
{
    double gen_ms = r->ttft_ms >= 0 ? r->total_ms - r->ttft_ms : 0;
    fprintf(f, "[claq-client] id=%s finish_reason=%s prompt_tokens=%ld completion_tokens=%ld "
               "total_tokens=%ld",
            r->id[0] ? r->id : "-", r->finish_reason[0] ? r->finish_reason : "-",
            r->prompt_tokens, r->completion_tokens, r->total_tokens);
    if (r->ttft_ms >= 0)
        fprintf(f, " ttft_ms=%.1f", r->ttft_ms);
    fprintf(f, " total_ms=%.1f", r->total_ms);
    if (r->completion_tokens > 1 && gen_ms > 0)
        fprintf(f, " decode_tok_s=%.1f", (double)(r->completion_tokens - 1) * 1e3 / gen_ms);
    fputc('\n', f);
}
