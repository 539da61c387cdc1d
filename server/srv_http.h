/* srv_http.h — HTTP/1.1 connections on libuv + llhttp: a parsed request (bounded copies of what we
 * need from the headers, the body), and the ordered queue of responses of one connection, which
 * handlers fill (at once, or later as tokens arrive) and the connection writes in request order.
 * Loop thread only. Does not parse JSON or know routes (srv_router.c does). */
#ifndef SRV_HTTP_H
#define SRV_HTTP_H

#include <llhttp.h>
#include <stdint.h>
#include <uv.h>

#include "srv_buf.h"
#include "srv_limits.h"

typedef struct srv_server srv_server;
typedef struct srv_conn srv_conn;
struct srv_gen;

typedef struct srv_request {
    uint8_t method;                         /* llhttp_method_t */
    char url[SRV_MAX_URL_BYTES + 1];        /* path and query, NUL-terminated */
    size_t url_len;
    int url_overflow;                       /* the URL was longer than the buffer */
    char request_id[SRV_MAX_REQUEST_ID + 1];/* from X-Request-Id, or generated */
    int request_id_long;                    /* X-Request-Id was longer than SRV_MAX_REQUEST_ID */
    char auth[512];                         /* Authorization value (truncated) */
    char origin[256];                       /* Origin value (truncated) */
    char acr_method[32];                    /* Access-Control-Request-Method (preflight) */
    char acr_headers[512];                  /* Access-Control-Request-Headers (truncated) */
    char transfer_encoding[64];             /* Transfer-Encoding value (truncated) */
    char content_type[128];
    char host[256];                         /* Host value (truncated) */
    char expect[32];                        /* Expect value ("100-continue") */
    srv_buf body;                           /* owned */
    size_t body_counted;                    /* of it, counted in srv_server.body_inflight */
    int keep_alive;                         /* llhttp_should_keep_alive at the end */
    uint64_t t_start;                       /* uv_hrtime at the first byte */
    /* header parsing state */
    size_t header_bytes;                    /* request line + headers so far */
    int n_headers;
    char field[40];                         /* current header name, lower-case, truncated */
    size_t field_len;
    int in_value;                           /* last callback was a value */
    int headers_done;
    uint64_t t_headers;                     /* uv_hrtime at the end of the headers */
} srv_request;

/* One response slot. Handlers write into out; the connection sends the head slot's bytes as
 * they come and moves on when it is done, so pipelined responses leave in request order. */
typedef struct srv_resp {
    struct srv_resp *next;      /* queue link; the connection owns the queue */
    srv_conn *conn;             /* borrowed back-pointer, valid while the slot is queued */
    srv_buf out;                /* bytes not yet handed to libuv; owned */
    int done;                   /* every byte of the response is in out (or sent) */
    int close_after;            /* close the connection once this response is sent */
    int chunked;                /* streaming: body framed as HTTP chunks */
    int http10;                 /* the request was HTTP/1.0 (no chunked coding) */
    int head_only;              /* a HEAD request: headers as for GET, never a body */
    int status;                 /* for the access log and metrics */
    char route[48];             /* "POST /v1/completions" style, for the log */
    char request_id[SRV_MAX_REQUEST_ID + 1];
    char origin[256];           /* request Origin (CORS) */
    uint64_t t_start;           /* uv_hrtime at the request's first byte */
    double ttft_s;              /* time to first token, -1 when none */
    int prompt_tokens, completion_tokens;
    struct srv_gen *gen;        /* owned: the generation writing this response, or NULL */
    struct srv_tokjob *job;     /* borrowed: tokenization under way for it, or NULL (the job
                                   owns itself; srv_tokjob_orphan when this slot goes) */
} srv_resp;

struct srv_conn {
    uv_tcp_t tcp;               /* embedded; the conn is freed in its close callback */
    srv_server *srv;            /* borrowed */
    srv_conn *prev, *next;      /* the server's list of open connections */
    llhttp_t parser;
    srv_request req;            /* the request being parsed */
    int in_message;             /* between on_message_begin and on_message_complete */
    int err_status;             /* status chosen by a callback that failed the parse */
    char err_msg[128];
    srv_resp *rq_head, *rq_tail;/* responses in request order; owned */
    int n_resp;
    char *pending;              /* unparsed bytes while the parser is paused; owned */
    size_t n_pending;
    int paused;                 /* parser paused: too many requests in flight */
    int in_execute;             /* inside llhttp_execute (no re-entrant parsing) */
    int input_closed;           /* no more requests will be read (error, EOF, drain) */
    int closing;                /* uv_close called */
    int doomed;                 /* close at the next sweep: 1 write failure, 2 hard limit */
    uint64_t last_active;       /* uv_hrtime of the last read or write completion */
    uint64_t linger_since;      /* uv_hrtime the lingering close began (input_closed == 2) */
    uint64_t write_soft_since;  /* when the write queue first passed the soft limit, 0 = below */
    size_t wq_prev;             /* write queue bytes at the previous sweep */
    char rbuf[16384];           /* read buffer; llhttp slices point into it */
};

/* Fills the llhttp callbacks (once, into the server). */
void srv_http_settings(llhttp_settings_t *st);
/* Listener and accept. */
int srv_http_listen(srv_server *s, char *err, size_t cap);
/* Periodic check of every connection: header/body/idle deadlines, write backpressure. */
void srv_http_sweep(srv_server *s);
/* Closes a connection now: cancels its generations, frees its responses. */
void srv_conn_close(srv_conn *c);

/* ---- response API for handlers ---- */
/* Complete response with Content-Length. extra_headers: "Name: v\r\n..." or NULL. */
void srv_resp_send(srv_resp *r, int status, const char *content_type, const char *body,
                   size_t len, const char *extra_headers);
/* Starts a chunked SSE response (200, text/event-stream). */
void srv_resp_stream_begin(srv_resp *r);
/* Appends one chunk (no-op for len 0). */
void srv_resp_stream_write(srv_resp *r, const char *data, size_t len);
/* Ends a chunked response. */
void srv_resp_stream_end(srv_resp *r);
/* Sends what is buffered (call after writing outside srv_resp_* helpers). */
void srv_resp_flush(srv_resp *r);

const char *srv_http_reason(int status);

#endif
