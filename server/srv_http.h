/* srv_http.h — HTTP/1.1 connections on libuv + llhttp: the listener and its connections
 * (srv_http), a parsed request (bounded copies of what we need from the headers, the body), and
 * the ordered queue of responses of one connection, which handlers fill (at once, or later as
 * tokens arrive) and the connection writes in request order. The layer above plugs in through
 * srv_http_hooks (a complete request, a response sent, a connection gone) and may give a
 * response an owner that is told when the response goes. Includes nothing of the API, the
 * generations or the scheduler. Loop thread only. Does not know routes (srv_router.c does). */
#ifndef SRV_HTTP_H
#define SRV_HTTP_H

#include <llhttp.h>
#include <stdint.h>
#include <uv.h>

#include "srv_buf.h"
#include "srv_config.h"
#include "srv_limits.h"

typedef struct srv_http srv_http;
typedef struct srv_conn srv_conn;
typedef struct srv_resp srv_resp;

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
    char content_encoding[64];              /* Content-Encoding values, comma-joined (truncated) */
    char content_type[128];
    char host[256];                         /* Host value (truncated) */
    char expect[32];                        /* Expect value ("100-continue") */
    unsigned seen;                          /* SRV_HDR_* bits: fields that came */
    const char *dup_field;                  /* a field allowed once that came twice, or NULL */
    srv_buf body;                           /* owned */
    size_t body_counted;                    /* of it, counted in srv_http.body_inflight */
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

/* Told when a response slot goes (sent, or dropped with its connection): its owner lets go of
 * it (a generation cancels and frees itself, a tokenization job forgets it). */
typedef void (*srv_resp_release_fn)(srv_resp *r, void *owner);

/* One response slot. Handlers write into out; the connection sends the head slot's bytes as
 * they come and moves on when it is done, so pipelined responses leave in request order. */
struct srv_resp {
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
    void *owner;                /* what fills this response later (a generation, a tokenization
                                   job), or NULL; see srv_resp_set_owner */
    srv_resp_release_fn release;
};

/* What the layer above does; every hook is called on the loop thread with ctx. */
typedef struct srv_http_hooks {
    void *ctx;
    /* a complete request: answer r now or later (srv_resp_*); req is valid during the call */
    void (*on_request)(void *ctx, srv_resp *r, const srv_request *req);
    /* r has been sent in full, just before it is freed (metrics, access log) */
    void (*on_response_sent)(void *ctx, const srv_resp *r);
    /* r will not be sent in full: its connection closed first (the client left, was cut off as
     * a slow reader, or the response sat behind one that closes); just before it is freed */
    void (*on_response_abandoned)(void *ctx, const srv_resp *r);
    /* a connection closed or a response went: a drain may be over */
    void (*on_progress)(void *ctx);
} srv_http_hooks;

/* The listener and every open connection. Set cfg, loop and hooks, then srv_http_listen. */
struct srv_http {
    const srv_config *cfg;      /* borrowed: limits, timeouts, host and port */
    uv_loop_t *loop;            /* borrowed */
    srv_http_hooks hooks;
    llhttp_settings_t settings; /* callbacks shared by every parser (must outlive them) */
    uv_tcp_t listener;
    int listener_open;
    srv_conn *conns;            /* open connections (list); each owned by itself */
    int n_conns;
    int64_t body_inflight;      /* request body bytes buffered over all connections */
    char host[256];             /* bound address, for the log */
    int port;                   /* bound port */
    int draining;               /* set by the owner: new connections and requests get 503
                                   (answered by the hooks), responses close their connection */
    uint64_t id_counter;        /* for srv_http_make_id */
};

struct srv_conn {
    uv_tcp_t tcp;               /* embedded; the conn is freed in its close callback */
    srv_http *http;             /* borrowed */
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
    int paused;                 /* parser paused, reading stopped: SRV_MAX_PIPELINE requests in
                                   flight, or more than write_soft_bytes unsent (backpressure) */
    int in_execute;             /* inside llhttp_execute (no re-entrant parsing) */
    int input_closed;           /* no more requests will be read (error, EOF, drain); 1: still
                                   reading, to discard, so that the peer leaving is seen; 2:
                                   half-closed, lingering (reading again once the shutdown is
                                   done) */
    int read_eof;               /* the peer's EOF was read: nothing more will come */
    uint64_t n_begun;           /* requests begun (on_message_begin) over the connection's life */
    int closing;                /* uv_close called */
    int doomed;                 /* close at the next sweep (a write could not be queued) */
    uint64_t last_active;       /* uv_hrtime of the last read of request bytes (not the empty
                                   lines llhttp skips between requests) or write completion */
    uint64_t linger_since;      /* uv_hrtime the lingering close began (input_closed == 2) */
    uint64_t write_soft_since;  /* when the write queue first passed the soft limit, 0 = below */
    size_t wq_prev;             /* unsent bytes at the previous sweep */
    uint64_t bytes_queued;      /* bytes handed to uv_write over the connection's life */
    uint64_t taken_prev;        /* of those, accepted by the kernel at the previous sweep */
    char rbuf[16384];           /* read buffer; llhttp slices point into it */
};

/* Binds and listens on cfg's host and port (fills host and port with the bound address). */
int srv_http_listen(srv_http *h, char *err, size_t cap);
/* Stops accepting (idempotent). */
void srv_http_stop_listening(srv_http *h);
/* Periodic check of every connection: header/body/idle deadlines, write backpressure. */
void srv_http_sweep(srv_http *h);
/* 1 when no connection has a response to send, a request arriving, or bytes unwritten. */
int srv_http_idle(const srv_http *h);
/* Closes every connection now (their responses' owners are released). */
void srv_http_close_all(srv_http *h);
/* Closes a connection now: releases its responses' owners, frees its responses. */
void srv_conn_close(srv_conn *c);
/* A fresh printable id ("prefix-<hex>") in out. */
void srv_http_make_id(srv_http *h, const char *prefix, char *out, size_t cap);

/* Attaches (owner, release) to r, or detaches with (NULL, NULL); release runs once when r
 * goes, unless detached first. */
void srv_resp_set_owner(srv_resp *r, void *owner, srv_resp_release_fn release);

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
