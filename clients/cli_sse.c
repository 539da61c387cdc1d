/* cli_sse.c — incremental SSE parsing: line splitting, field handling, event dispatch.
 * Does not read sockets (cli_http.c) or parse JSON (cli_api.c). One thread per parser. */
#include "cli_sse.h"

#include <stdlib.h>
#include <string.h>

void cli_sse_free(cli_sse *s)
{
    free(s->line);
    free(s->data);
    memset(s, 0, sizeof *s);
}

/* Grows *buf to hold need bytes (plus a NUL), doubling, capped at CLI_MAX_SSE_EVENT_BYTES. */
static int cli__sse_reserve(char **buf, size_t *cap, size_t need, cli_err *err)
{
    if (need > CLI_MAX_SSE_EVENT_BYTES)
        return cli_err_set(err, CLI_E_TOO_BIG, "SSE event over %d bytes",
                           CLI_MAX_SSE_EVENT_BYTES);
    if (need + 1 <= *cap)
        return CLI_OK;
    size_t nc = *cap ? *cap : 256;
    while (nc < need + 1)
        nc *= 2;
    char *nb = realloc(*buf, nc);
    if (!nb)
        return cli_err_set(err, CLI_E_NOMEM, "out of memory parsing the event stream");
    *buf = nb;
    *cap = nc;
    return CLI_OK;
}

/* Handles one complete line (without its terminator). */
static int cli__sse_line(cli_sse *s, cli_sse_event_cb cb, void *ctx, cli_err *err)
{
    const char *l = s->line ? s->line : "";
    size_t n = s->line_len;
    if (n == 0) {  /* blank line: dispatch */
        int rc = 0;
        if (s->have_data) {
            s->events++;
            if (!s->data) {
                rc = cli__sse_reserve(&s->data, &s->data_cap, 0, err);
                if (rc)
                    return rc;
            }
            s->data[s->data_len] = '\0';
            rc = cb ? cb(ctx, s->name, s->data, s->data_len) : 0;
        }
        s->data_len = 0;
        s->have_data = 0;
        s->name[0] = '\0';
        return rc;
    }
    if (l[0] == ':') {
        s->comments++;
        return CLI_OK;
    }
    const char *colon = memchr(l, ':', n);
    size_t fl = colon ? (size_t)(colon - l) : n;
    const char *v = colon ? colon + 1 : l + n;
    size_t vl = colon ? n - fl - 1 : 0;
    if (vl > 0 && *v == ' ') {
        v++;
        vl--;
    }
    if (fl == 4 && memcmp(l, "data", 4) == 0) {
        size_t need = s->data_len + (s->have_data ? 1 : 0) + vl;
        int rc = cli__sse_reserve(&s->data, &s->data_cap, need, err);
        if (rc)
            return rc;
        if (s->have_data)
            s->data[s->data_len++] = '\n';
        memcpy(s->data + s->data_len, v, vl);
        s->data_len += vl;
        s->have_data = 1;
    } else if (fl == 5 && memcmp(l, "event", 5) == 0) {
        size_t k = vl < sizeof s->name - 1 ? vl : sizeof s->name - 1;
        memcpy(s->name, v, k);
        s->name[k] = '\0';
    }
    /* "id", "retry" and unknown fields are ignored: the OpenAI stream does not use them. */
    return CLI_OK;
}

int cli_sse_feed(cli_sse *s, const char *in, size_t len, cli_sse_event_cb cb, void *ctx,
                 cli_err *err)
{
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (s->after_cr) {
            s->after_cr = 0;
            if (ch == '\n')
                continue;  /* the LF of a CRLF whose CR ended the line already */
        }
        if (ch == '\r' || ch == '\n') {
            s->after_cr = ch == '\r';
            int rc = cli__sse_line(s, cb, ctx, err);
            s->line_len = 0;
            if (rc)
                return rc;
            continue;
        }
        int rc = cli__sse_reserve(&s->line, &s->line_cap, s->line_len + 1, err);
        if (rc)
            return rc;
        s->line[s->line_len++] = ch;
    }
    return CLI_OK;
}
