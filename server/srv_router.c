/* srv_router.c — from a complete request to a handler: path and method (404, 405 with Allow),
 * CORS preflight, the optional Bearer key (401), readiness (503 while loading or draining), and
 * the JSON body (400 when not valid UTF-8 JSON object). Loop thread only. Does not generate or
 * format results (the srv_api_* handlers do). */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "srv_api.h"
#include "srv_log.h"

enum {
    R_HEALTH, R_METRICS, R_MODELS, R_MODEL_ONE, R_COMPLETIONS, R_CHAT, R_EMBEDDINGS, R_TOKENIZE,
    R_DETOKENIZE,
};

typedef struct route {
    const char *path;
    int id;
    uint8_t method;         /* the one method it takes besides OPTIONS */
    int is_public;          /* no API key needed */
    int needs_model;        /* 503 while loading */
    int json_body;
} route;

static const route srv__routes[] = {
    {"/health", R_HEALTH, HTTP_GET, 1, 0, 0},
    {"/metrics", R_METRICS, HTTP_GET, 1, 0, 0},   /* public only with --metrics-public */
    {"/v1/models", R_MODELS, HTTP_GET, 0, 0, 0},
    {"/v1/completions", R_COMPLETIONS, HTTP_POST, 0, 1, 1},
    {"/v1/chat/completions", R_CHAT, HTTP_POST, 0, 1, 1},
    {"/v1/embeddings", R_EMBEDDINGS, HTTP_POST, 0, 1, 1},
    {"/tokenize", R_TOKENIZE, HTTP_POST, 0, 1, 1},
    {"/detokenize", R_DETOKENIZE, HTTP_POST, 0, 1, 1},
};
static const route srv__model_one = {"/v1/models/", R_MODEL_ONE, HTTP_GET, 0, 0, 0};

/* Whether a host name or address (as in --host, or a Host header without its port) is this
 * machine's loopback: localhost (or a name under .localhost), 127.x.y.z, ::1. */
static int loopback_name(const char *h, size_t n)
{
    if (n > 0 && h[n - 1] == '.')   /* "localhost." */
        n--;
    if ((n == 9 && strncasecmp(h, "localhost", 9) == 0) ||
        (n > 10 && strncasecmp(h + n - 10, ".localhost", 10) == 0))
        return 1;
    if (n == 3 && memcmp(h, "::1", 3) == 0)
        return 1;
    if (n < 4 || memcmp(h, "127.", 4) != 0)
        return 0;
    for (size_t i = 4; i < n; i++)   /* the rest: digits and dots only */
        if (!((h[i] >= '0' && h[i] <= '9') || h[i] == '.'))
            return 0;
    return 1;
}

/* A Host header value ("name", "name:port", "[v6]:port") names the loopback. */
static int loopback_host_header(const char *v)
{
    if (v[0] == '[') {
        const char *e = strchr(v, ']');
        return e && loopback_name(v + 1, (size_t)(e - v - 1));
    }
    const char *colon = strchr(v, ':');
    return loopback_name(v, colon ? (size_t)(colon - v) : strlen(v));
}

/* "application/json", any case, optionally followed by parameters ("; charset=utf-8"). */
static int json_content_type(const char *ct)
{
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, "application/json", 16) != 0)
        return 0;
    ct += 16;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
}

/* Constant-time comparison, so the key cannot be guessed byte by byte from timings. */
static int key_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = (unsigned char)(la != lb);
    for (size_t i = 0; i < lb; i++)
        d |= (unsigned char)(a[i < la ? i : 0] ^ b[i]);
    return d == 0;
}

static int auth_ok(srv_server *s, const srv_request *q)
{
    const char *key = s->cfg->api_key;
    if (!key[0])
        return 1;
    const char *h = q->auth;
    if (strncasecmp(h, "Bearer ", 7) != 0)
        return 0;
    h += 7;
    while (*h == ' ')
        h++;
    return key_equal(h, key);
}

/* cJSON keeps strings NUL-terminated, so a "\u0000" escape would silently cut a prompt or a
 * stop string short: refuse it instead. An escaped backslash ("\\u0000") is plain text. */
static int has_nul_escape(const char *p, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (p[i] != '\\')
            continue;
        if (p[i + 1] == 'u' && i + 5 < len && memcmp(p + i + 2, "0000", 4) == 0)
            return 1;
        i++;   /* skip the escaped character */
    }
    return 0;
}

/* The preflight's Access-Control-Allow-Headers: the headers the browser asked for (the OpenAI
 * SDKs send x-stainless-* and openai-beta), kept to token characters, or our own list. */
static void cors_allow_headers(const char *asked, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = asked; *p && o + 1 < cap; p++) {
        unsigned char ch = (unsigned char)*p;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == ',' || ch == ' ')
            out[o++] = (char)ch;
    }
    out[o] = '\0';
    if (!strstr(out, "uthorization") && o + 1 < cap)   /* always allowed: keys travel in it */
        snprintf(out + o, cap - o, "%sAuthorization", o ? ", " : "");
    if (!out[0])
        snprintf(out, cap, "Authorization, Content-Type, X-Request-Id");
}

/* Whitespace after the JSON value is fine; anything else is not. */
static int only_space(const char *p, const char *end)
{
    for (; p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
            return 0;
    return 1;
}

void srv_route(srv_server *s, srv_resp *r, const srv_request *q)
{
    char path[SRV_MAX_URL_BYTES + 1];
    size_t n = strcspn(q->url, "?#");
    memcpy(path, q->url, n);
    path[n] = '\0';
    const char *mname = llhttp_method_name((llhttp_method_t)q->method);
    snprintf(r->route, sizeof(r->route), "%s %.36s", mname, path);

    const route *rt = NULL;
    for (size_t i = 0; i < sizeof(srv__routes) / sizeof(srv__routes[0]); i++)
        if (strcmp(path, srv__routes[i].path) == 0)
            rt = &srv__routes[i];
    if (!rt && strncmp(path, srv__model_one.path, strlen(srv__model_one.path)) == 0 &&
        path[strlen(srv__model_one.path)])
        rt = &srv__model_one;
    if (!rt) {
        srv_resp_error(r, 404, "invalid_request_error", NULL, "not_found",
                       "unknown path '%.200s'", path);
        return;
    }
    /* GET routes take HEAD too (RFC 9110 9.3.2); srv_resp_send leaves the body out */
    const char *methods = rt->method == HTTP_GET ? "GET, HEAD" : "POST";
    char allow[80];
    snprintf(allow, sizeof(allow), "Allow: %s, OPTIONS\r\n", methods);
    if (q->method == HTTP_OPTIONS) {
        char hdr[1024], ah[600];
        cors_allow_headers(q->acr_headers, ah, sizeof(ah));
        snprintf(hdr, sizeof(hdr), "%sAccess-Control-Allow-Methods: %s, OPTIONS\r\n"
                 "Access-Control-Allow-Headers: %s\r\n"
                 "Access-Control-Max-Age: 86400\r\n", allow, methods, ah);
        srv_resp_send(r, 204, NULL, "", 0, hdr);
        return;
    }
    if (q->method != rt->method && !(q->method == HTTP_HEAD && rt->method == HTTP_GET)) {
        srv_resp_error_h(r, 405, allow, "invalid_request_error", NULL, "method_not_allowed",
                         "method %s is not allowed on %s; use %s", mname, rt->path,
                         llhttp_method_name((llhttp_method_t)rt->method));
        return;
    }
    /* DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1 reaches a
     * server on loopback with "Host: evil.example". With no API key to stop it, such a server
     * answers only requests addressed to a loopback name. (No Host: not a browser.) */
    if (!s->cfg->api_key[0] && q->host[0] && !loopback_host_header(q->host) &&
        loopback_name(s->cfg->host, strlen(s->cfg->host))) {
        srv_resp_error(r, 403, "invalid_request_error", NULL, "forbidden_host",
                       "this server is bound to loopback without an API key and answers only "
                       "requests for localhost, not '%.80s' (set --api-key to serve other names)",
                       q->host);
        return;
    }
    /* /metrics (request counts, model name, load) sits behind the key like the API, unless
     * --metrics-public says a scraper without it may read them */
    const int is_public = rt->is_public && !(rt->id == R_METRICS && !s->cfg->metrics_public);
    if (!is_public && !auth_ok(s, q)) {
        srv_resp_error_h(r, 401, "WWW-Authenticate: Bearer\r\n", "invalid_request_error", NULL,
                         "invalid_api_key",
                         "missing or invalid API key (send 'Authorization: Bearer <key>')");
        return;
    }
    if (rt->needs_model && s->draining) {
        srv_resp_error(r, 503, "server_error", NULL, "server_shutting_down",
                       "the server is shutting down");
        return;
    }
    if (rt->needs_model && !s->ready) {
        srv_resp_error_h(r, 503, s->load_failed ? NULL : "Retry-After: 1\r\n", "server_error",
                         NULL, "model_loading",
                       s->load_failed ? "the model failed to load" : "the model is loading");
        return;
    }
    cJSON *body = NULL;
    if (rt->json_body) {
        /* JSON only: this also keeps out the "simple" cross-site POSTs (text/plain, forms) a
         * browser sends without asking the server first */
        if (!json_content_type(q->content_type)) {
            srv_resp_error(r, 415, "invalid_request_error", NULL, "unsupported_media_type",
                           "the request body must be sent as 'Content-Type: application/json' "
                           "(got '%.60s')", q->content_type[0] ? q->content_type : "none");
            return;
        }
        if (q->body.len == 0) {
            srv_resp_bad(r, NULL, "the request body must be a JSON object");
            return;
        }
        if (!srv_utf8_valid(q->body.p, q->body.len)) {
            srv_resp_bad(r, NULL, "the request body is not valid UTF-8");
            return;
        }
        if (has_nul_escape(q->body.p, q->body.len)) {
            srv_resp_bad(r, NULL, "the request body holds a NUL character (\\u0000), which "
                         "is not supported in any field");
            return;
        }
        const char *end = NULL;
        body = cJSON_ParseWithLengthOpts(q->body.p, q->body.len, &end, 0);
        if (!body || !end || !only_space(end, q->body.p + q->body.len)) {
            cJSON_Delete(body);
            srv_resp_bad(r, NULL, "the request body is not valid JSON");
            return;
        }
        if (!cJSON_IsObject(body)) {
            cJSON_Delete(body);
            srv_resp_bad(r, NULL, "the request body must be a JSON object");
            return;
        }
    }
    switch (rt->id) {
    case R_HEALTH: srv_api_health(s, r, q); break;
    case R_METRICS: srv_api_metrics(s, r, q); break;
    case R_MODELS: srv_api_models(s, r, q); break;
    case R_MODEL_ONE: srv_api_models(s, r, q); break;
    case R_COMPLETIONS: srv_api_completions(s, r, body); break;
    case R_CHAT: srv_api_chat(s, r, body); break;
    case R_EMBEDDINGS: srv_api_embeddings(s, r, body); break;
    case R_TOKENIZE: srv_api_tokenize(s, r, body); break;
    case R_DETOKENIZE: srv_api_detokenize(s, r, body); break;
    default: srv_resp_error(r, 404, "invalid_request_error", NULL, "not_found", "unknown path");
    }
    cJSON_Delete(body);
}
