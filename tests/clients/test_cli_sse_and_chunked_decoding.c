/* test_cli_sse_and_chunked_decoding.c — claq-client's stream decoders on every way a server may
 * cut its bytes: the SSE parser (LF / CRLF / CR line ends, comments, multi-line data, events
 * split at every byte offset, the size limit) and the chunked-transfer decoder (split at every
 * offset, extensions, trailers, malformed sizes), plus URL parsing and a NUL in the answer's
 * text (\u0000: kept, with the text after it; an escaped backslash before u0000 is text). The
 * client sources are
 * compiled in directly (the llama2.c test.c pattern), since claq-client is not a library. */
#include "../../clients/cli_api.c"
#include "../../clients/cli_http.c"
#include "../../clients/cli_sse.c"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            failures++;                                                                        \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                               \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fputc('\n', stderr);                                                               \
        }                                                                                      \
    } while (0)

/* Collects events as "name|data\n" lines. */
typedef struct collect {
    char buf[8192];  /* joined events */
    size_t len;      /* bytes used */
} collect;

static int on_event(void *ctx, const char *name, const char *data, size_t len)
{
    collect *c = ctx;
    int n = snprintf(c->buf + c->len, sizeof c->buf - c->len, "%s|%.*s\n", name, (int)len, data);
    if (n > 0)
        c->len += (size_t)n;
    return 0;
}

static int on_body(void *ctx, const char *data, size_t len)
{
    collect *c = ctx;
    if (c->len + len < sizeof c->buf) {
        memcpy(c->buf + c->len, data, len);
        c->len += len;
        c->buf[c->len] = '\0';
    }
    return 0;
}

/* Feeds `in` to a fresh SSE parser in pieces of every split point (two pieces) and byte by
 * byte, and checks that all give `want`. */
static void check_sse(const char *in, const char *want, size_t want_comments)
{
    size_t n = strlen(in);
    for (size_t split = 0; split <= n + 1; split++) {
        cli_sse s;
        memset(&s, 0, sizeof s);
        collect c = {.len = 0};
        c.buf[0] = '\0';
        int rc = 0;
        if (split <= n) {
            rc |= cli_sse_feed(&s, in, split, on_event, &c, NULL);
            rc |= cli_sse_feed(&s, in + split, n - split, on_event, &c, NULL);
        } else {
            for (size_t i = 0; i < n; i++)
                rc |= cli_sse_feed(&s, in + i, 1, on_event, &c, NULL);
        }
        CHECK(rc == 0, "sse rc %d at split %zu", rc, split);
        CHECK(strcmp(c.buf, want) == 0, "sse split %zu: got [%s] want [%s]", split, c.buf, want);
        CHECK(s.comments == want_comments, "sse comments %zu want %zu", s.comments,
              want_comments);
        cli_sse_free(&s);
        cli_sse_free(&s);  /* twice is safe */
    }
}

static void test_sse(void)
{
    /* An OpenAI-style stream with a keep-alive comment, CRLF endings and [DONE]. */
    check_sse(": ping\r\n\r\ndata: {\"a\":1}\r\n\r\ndata: [DONE]\r\n\r\n",
              "|{\"a\":1}\n|[DONE]\n", 1);
    /* LF, CR-only, multi-line data joined by '\n', "data:" without the space, event names. */
    check_sse("data: x\ndata:y\n\rdata: z\r\revent: error\ndata: e\n\n", "|x\ny\n|z\nerror|e\n", 0);
    /* A blank line without data dispatches nothing; unknown fields and ids are ignored. */
    check_sse("\n\nid: 7\nretry: 10\nfoo\ndata: q\n\n", "|q\n", 0);
    /* An unterminated final event is not dispatched. */
    check_sse("data: a\n\ndata: b", "|a\n", 0);

    /* Over the event limit: a clear error instead of unbounded growth. */
    cli_sse s;
    memset(&s, 0, sizeof s);
    size_t big = (size_t)CLI_MAX_SSE_EVENT_BYTES + 16;
    char *line = malloc(big);
    CHECK(line != NULL, "malloc");
    if (line) {
        memcpy(line, "data: ", 6);
        memset(line + 6, 'x', big - 6);
        cli_err err = {0};
        int rc = cli_sse_feed(&s, line, big, on_event, NULL, &err);
        CHECK(rc == CLI_E_TOO_BIG, "oversize event rc %d", rc);
        CHECK(strstr(err.msg, "SSE event over") != NULL, "oversize message '%s'", err.msg);
        free(line);
    }
    cli_sse_free(&s);
}

/* Decodes `in` split at every offset; checks the decoded body and the final state. */
static void check_chunked(const char *in, size_t n, const char *want, int want_rc)
{
    for (size_t split = 0; split <= n; split++) {
        cli_chunked ch;
        memset(&ch, 0, sizeof ch);
        collect c = {.len = 0};
        c.buf[0] = '\0';
        int rc = cli_chunked_feed(&ch, in, split, on_body, &c, NULL);
        if (rc == 0)
            rc = cli_chunked_feed(&ch, in + split, n - split, on_body, &c, NULL);
        CHECK(rc == want_rc, "chunked split %zu: rc %d want %d", split, rc, want_rc);
        if (want_rc == 0) {
            CHECK(ch.state == CLI_CHUNK_DONE, "chunked split %zu: not done", split);
            CHECK(strcmp(c.buf, want) == 0, "chunked split %zu: got [%s] want [%s]", split,
                  c.buf, want);
        }
    }
}

static void test_chunked(void)
{
    const char ok[] = "5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\njunk";
    check_chunked(ok, sizeof ok - 1, "hello 0123456789", 0);
    const char lf[] = "3\nabc\n0\n\n";
    check_chunked(lf, sizeof lf - 1, "abc", 0);
    const char badsize[] = "zz\r\nabc\r\n0\r\n\r\n";
    check_chunked(badsize, sizeof badsize - 1, "", CLI_E_PROTO);
    const char nocrlf[] = "3\r\nabcX0\r\n\r\n";
    check_chunked(nocrlf, sizeof nocrlf - 1, "", CLI_E_PROTO);
    const char huge[] = "ffffffffffffffffff\r\n";
    check_chunked(huge, sizeof huge - 1, "", CLI_E_PROTO);
}

static void test_url(void)
{
    cli_url u;
    cli_err err = {0};
    CHECK(cli_url_parse(&u, "http://127.0.0.1:8080", &err) == 0, "%s", err.msg);
    CHECK(strcmp(u.host, "127.0.0.1") == 0 && strcmp(u.port, "8080") == 0 && !u.prefix[0],
          "plain url: %s %s %s", u.host, u.port, u.prefix);
    CHECK(cli_url_parse(&u, "http://[::1]:9/api/v1/", &err) == 0, "%s", err.msg);
    CHECK(strcmp(u.host, "::1") == 0 && strcmp(u.port, "9") == 0 &&
              strcmp(u.prefix, "/api") == 0,
          "v6 url: %s %s %s", u.host, u.port, u.prefix);
    CHECK(cli_url_parse(&u, "localhost", &err) == 0 && strcmp(u.port, "80") == 0, "%s", err.msg);
    CHECK(cli_url_parse(&u, "https://x", &err) == CLI_E_USAGE, "https accepted");
    CHECK(cli_url_parse(&u, "http://h:99999", &err) == CLI_E_USAGE, "port 99999 accepted");
    CHECK(cli_url_parse(&u, "http://h:8x", &err) == CLI_E_USAGE, "port 8x accepted");
    CHECK(cli_url_parse(&u, "http://:80", &err) == CLI_E_USAGE, "empty host accepted");
    CHECK(cli_url_parse(&u, "http://h/a b", &err) == CLI_E_USAGE, "space in path accepted");
}

/* A generated NUL (\u0000) survives cJSON, whole and streamed; "\\u0000" stays six characters. */
static void test_nul_text(void)
{
    for (int whole = 0; whole <= 1; whole++) {
        char doc[] = "{\"choices\":[{\"index\":0,\"text\":\"before\\u0000after \\\\u0000\"}]}";
        size_t n = cli__mask_nul_escapes(doc, strlen(doc));
        cJSON *j = cJSON_ParseWithLength(doc, n);
        cli_result r;
        memset(&r, 0, sizeof r);
        r.ttft_ms = -1;
        const char want[] = "before\0after \\u0000";
        CHECK(j && cli__take(&r, j, whole, NULL, 0) == CLI_OK && r.text_len == sizeof want - 1 &&
                  memcmp(r.text, want, sizeof want - 1) == 0,
              "NUL in the text (whole %d): %zu bytes", whole, r.text_len);
        cJSON_Delete(j);
        cli_result_free(&r);
    }
}

int main(void)
{
    test_nul_text();
    test_sse();
    test_chunked();
    test_url();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("ok: SSE, chunked and URL decoding\n");
    return 0;
}
