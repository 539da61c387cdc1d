/* cli_sse.h — an incremental Server-Sent Events parser (the WHATWG "event stream" rules):
 * lines end in LF, CRLF or CR (also when split across reads), ':' lines are comments (server
 * keep-alives), "data:" lines accumulate, a blank line dispatches the event. Knows nothing of
 * HTTP or JSON. Single-threaded: one parser per stream. */
#ifndef CLI_SSE_H
#define CLI_SSE_H

#include <stddef.h>

#include "cli_http.h"

/* Longest single event (all its data lines joined) accepted; longer ones fail the stream. */
#define CLI_MAX_SSE_EVENT_BYTES (1024 * 1024)
/* Longest event name kept ("event:" field). */
#define CLI_MAX_SSE_NAME 64

/* Called once per dispatched event. data is NUL-terminated (data lines joined with '\n', no
 * trailing '\n'), valid only during the call. name is "" for the default "message" event.
 * Return nonzero to stop parsing; the value comes back from cli_sse_feed. */
typedef int (*cli_sse_event_cb)(void *ctx, const char *name, const char *data, size_t len);

typedef struct cli_sse {
    char *line;                     /* owned; the line being collected */
    size_t line_len;                /* bytes used in line */
    size_t line_cap;                /* bytes allocated for line */
    char *data;                     /* owned; the event's data so far */
    size_t data_len;                /* bytes used in data */
    size_t data_cap;                /* bytes allocated for data */
    int have_data;                  /* at least one data field was seen for this event */
    char name[CLI_MAX_SSE_NAME];    /* current event name, "" for default */
    int after_cr;                   /* last byte was CR: a following LF belongs to it */
    size_t comments;                /* comment lines seen (keep-alives), for statistics */
    size_t events;                  /* events dispatched */
} cli_sse;

/* A zeroed struct is ready to use; cli_sse_free releases it (safe twice, safe on zeroed). */
void cli_sse_free(cli_sse *s);

/* Feeds bytes. Returns 0, CLI_E_TOO_BIG / CLI_E_NOMEM, or the callback's nonzero value. */
int cli_sse_feed(cli_sse *s, const char *in, size_t len, cli_sse_event_cb cb, void *ctx,
                 cli_err *err);

#endif
