/* cli_http.h — a minimal blocking HTTP/1.1 client over POSIX sockets for claq-client and its
 * tests: URL parsing, one request per connection (Connection: close), status line and headers,
 * and a body reader that undoes chunked transfer coding. No TLS, no redirects, no keep-alive.
 * Single-threaded: each cli_http_conn belongs to one thread. */
#ifndef CLI_HTTP_H
#define CLI_HTTP_H

#include <stddef.h>
#include <stdint.h>

/* ---- limits (each one sentence, h2o style) -------------------------------------------------- */

/* Longest URL host name accepted; DNS names are at most 253 bytes. */
#define CLI_MAX_HOST 256
/* Longest path prefix taken from --url (e.g. "/api" behind a proxy). */
#define CLI_MAX_PATH 512
/* Status line plus all response headers must fit here, or the response is refused. */
#define CLI_MAX_HEADER_BYTES (64 * 1024)
/* Longest chunk-size line of a chunked body (hex digits, extensions, CRLF). */
#define CLI_MAX_CHUNK_LINE 256

/* ---- errors --------------------------------------------------------------------------------- */

enum {
    CLI_OK = 0,
    CLI_E_USAGE = -1,    /* bad command line or URL */
    CLI_E_CONNECT = -2,  /* name resolution or TCP connect failed */
    CLI_E_IO = -3,       /* send/recv failed or the peer closed early */
    CLI_E_TIMEOUT = -4,  /* no byte within the timeout */
    CLI_E_PROTO = -5,    /* the response is not valid HTTP/1.x, SSE or JSON as expected */
    CLI_E_HTTP = -6,     /* the server answered with a 4xx/5xx status */
    CLI_E_NOMEM = -7,    /* allocation failed */
    CLI_E_TOO_BIG = -8,  /* a response part passed one of our limits */
    CLI_E_API = -9,      /* the server reported an error in-band (inside an SSE stream) */
};

#define CLI_ERR_MSG 512

typedef struct cli_err {
    int code;               /* last CLI_E_* code, 0 when none */
    char msg[CLI_ERR_MSG];  /* human-readable, names host/port, status, server message */
} cli_err;

/* Fills err (when non-NULL) with code and a printf-style message; returns code. */
int cli_err_set(cli_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Static text for a code. */
const char *cli_strerror(int code);

/* ---- URL ------------------------------------------------------------------------------------ */

typedef struct cli_url {
    char host[CLI_MAX_HOST];  /* without brackets for IPv6 literals */
    char port[8];             /* decimal, "80" when the URL names none */
    char prefix[CLI_MAX_PATH];/* path before the API routes, "" or "/x/y" (no trailing '/') */
} cli_url;

/* Parses "http://host[:port][/prefix]". A trailing "/v1" is dropped from the prefix so that
 * OpenAI-style base URLs ("http://h:8080/v1") work too. https:// is refused (no TLS here). */
int cli_url_parse(cli_url *u, const char *text, cli_err *err);

/* ---- chunked transfer decoding (incremental, so tests can feed it byte by byte) ------------ */

typedef enum cli_chunk_state {
    CLI_CHUNK_SIZE = 0,  /* reading the hex size line */
    CLI_CHUNK_DATA,      /* copying `left` bytes of chunk data */
    CLI_CHUNK_DATA_CR,   /* expecting the CR after the data */
    CLI_CHUNK_DATA_LF,   /* expecting the LF after the data */
    CLI_CHUNK_TRAILER,   /* after the 0-size chunk: trailer lines until an empty one */
    CLI_CHUNK_DONE,      /* the whole body has been seen */
} cli_chunk_state;

typedef struct cli_chunked {
    cli_chunk_state state;           /* see the enum */
    uint64_t left;                   /* data bytes left in the current chunk */
    char line[CLI_MAX_CHUNK_LINE];   /* the size or trailer line being collected */
    size_t line_len;                 /* bytes used in line */
} cli_chunked;

/* Called with each piece of decoded body; return nonzero to stop reading (the value is
 * passed back to the caller of cli_http_read_body). */
typedef int (*cli_body_cb)(void *ctx, const char *data, size_t len);

/* Decodes `len` raw bytes; calls cb for each data piece. Returns 0, a negative CLI_E_PROTO
 * on malformed framing, or the callback's nonzero value. Bytes after the final chunk are
 * ignored. A zeroed struct is a fresh decoder. */
int cli_chunked_feed(cli_chunked *c, const char *in, size_t len, cli_body_cb cb, void *ctx,
                     cli_err *err);

/* ---- one HTTP exchange ---------------------------------------------------------------------- */

typedef struct cli_http_resp {
    int status;                 /* e.g. 200 */
    char reason[64];            /* reason phrase, truncated */
    char content_type[128];     /* Content-Type value, "" when absent */
    char request_id[128];       /* X-Request-Id value, "" when absent */
    char retry_after[32];       /* Retry-After value, "" when absent */
    int chunked;                /* Transfer-Encoding: chunked */
    int64_t content_length;     /* -1 when absent: read until the server closes */
} cli_http_resp;

typedef struct cli_http_conn {
    int fd;                     /* owned socket, meaningful only while is_open */
    int is_open;                /* 1 between a successful connect and cli_http_close */
    int timeout_ms;             /* longest wait for any single read or write */
    char *buf;                  /* owned; bytes read past the headers, not yet consumed */
    size_t buf_len;             /* bytes in buf */
    size_t buf_off;             /* consumed prefix of buf */
    size_t buf_cap;             /* capacity of buf */
} cli_http_conn;

/* Connects to u, sends `method path` with the given body (may be NULL) and headers, and reads
 * the status line and headers into resp. extra_headers is a list of complete "Name: value"
 * lines without CRLF (NULL-terminated, may be NULL). On success the connection is positioned
 * at the body; the caller reads it with cli_http_read_body and then calls cli_http_close.
 * On failure the connection is closed. c must be zeroed or closed before the call. */
int cli_http_request(cli_http_conn *c, const cli_url *u, const char *method, const char *path,
                     const char *content_type, const char *body, size_t body_len,
                     const char *const *extra_headers, int timeout_ms, cli_http_resp *resp,
                     cli_err *err);

/* Streams the body to cb as it arrives (dechunked), until the end of the body, the callback
 * returns nonzero, or an error. Returns 0, a negative CLI_E_* code, or the callback's value. */
int cli_http_read_body(cli_http_conn *c, const cli_http_resp *resp, cli_body_cb cb, void *ctx,
                       cli_err *err);

/* Reads the whole body into a NUL-terminated heap string of at most max_bytes (owned by the
 * caller, free()). Longer bodies are truncated and still returned, with *truncated set. */
int cli_http_read_all(cli_http_conn *c, const cli_http_resp *resp, size_t max_bytes,
                      char **out, size_t *out_len, int *truncated, cli_err *err);

/* Closes the socket and frees buffers. Safe on a zeroed struct and safe to call twice. */
void cli_http_close(cli_http_conn *c);

#endif
