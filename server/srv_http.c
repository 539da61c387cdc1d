/* srv_http.c — the listener and each client connection: read buffer, llhttp state and limits
 * (header bytes 431, body bytes 413 from Content-Length or a chunk header before reading,
 * header/body deadlines 408, content codings 415), pipelined responses written in request
 * order (parsing pauses at SRV_MAX_PIPELINE in flight or write_soft_bytes unsent), keep-alive,
 * reading on after the last request so that a client leaving cancels its generations,
 * lingering close after an error, and write backpressure. Loop thread only. Does not know
 * routes: a complete request goes to the on_request hook (the server's router), which fills a
 * response slot; protocol errors are answered here (srv_errors.h). */
#include "srv_http.h"

#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "srv_errors.h"
#include "srv_log.h"

#define LINGER_NS (2000ULL * 1000000ULL)   /* read-and-discard after an error response: a fixed
                                              window, however long the peer keeps sending */

typedef struct wreq {
    uv_write_t req;
    char *data;                 /* owned; freed in the write callback */
} wreq;

typedef struct sreq {
    uv_shutdown_t req;
} sreq;

const char *srv_http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

static void conn_flush(srv_conn *c);
static void conn_parse(srv_conn *c, const char *data, size_t len);
static void conn_maybe_resume(srv_conn *c);
static void conn_end_input(srv_conn *c);
static void conn_sync_reading(srv_conn *c);

/* Whether `more` body bytes fit the server-wide budget; if not, sets the 503 the parser stops
 * with. */
static int body_budget_ok(srv_conn *c, int64_t more)
{
    const srv_http *s = c->http;
    if (s->body_inflight + more <= s->cfg->max_inflight_body_bytes)
        return 1;
    c->err_status = 503;
    snprintf(c->err_msg, sizeof(c->err_msg), "the server holds %lld bytes of request bodies "
             "(at most %lld); retry shortly", (long long)s->body_inflight,
             (long long)s->cfg->max_inflight_body_bytes);
    return 0;
}

/* Frees the request's body and gives its bytes back to the server-wide budget. */
static void req_body_free(srv_conn *c)
{
    c->http->body_inflight -= (int64_t)c->req.body_counted;
    c->req.body_counted = 0;
    srv_buf_free(&c->req.body);
}

/* ---- response slots ---- */

static srv_resp *conn_push_resp(srv_conn *c)
{
    srv_resp *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->conn = c;
    r->ttft_s = -1;
    r->t_start = uv_hrtime();
    if (c->rq_tail)
        c->rq_tail->next = r;
    else
        c->rq_head = r;
    c->rq_tail = r;
    c->n_resp++;
    return r;
}

void srv_resp_set_owner(srv_resp *r, void *owner, srv_resp_release_fn release)
{
    r->owner = owner;
    r->release = owner ? release : NULL;
}

static void resp_free(srv_resp *r)
{
    if (r->release) {
        srv_resp_release_fn release = r->release;
        void *owner = r->owner;
        srv_resp_set_owner(r, NULL, NULL);
        release(r, owner);
    }
    srv_buf_free(&r->out);
    free(r);
}

static void resp_head(srv_resp *r, int status, const char *ctype, long long clen,
                      const char *extra)
{
    srv_conn *c = r->conn;
    srv_http *s = c->http;
    r->status = status;
    if (s->draining)
        r->close_after = 1;
    srv_buf *b = &r->out;
    srv_buf_printf(b, "HTTP/1.1 %d %s\r\n", status, srv_http_reason(status));
    /* RFC 9110 6.6.1: a server with a clock sends Date (the C locale spells the names) */
    time_t now = time(NULL);
    struct tm tm;
    char date[64];
    if (gmtime_r(&now, &tm) && strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm))
        srv_buf_printf(b, "Date: %s\r\n", date);
    if (ctype)
        srv_buf_printf(b, "Content-Type: %s\r\n", ctype);
    if (clen >= 0 && status != 204 && status != 304)   /* RFC 9110 8.6: never on 204 / 304 */
        srv_buf_printf(b, "Content-Length: %lld\r\n", clen);
    else if (r->chunked)
        srv_buf_puts(b, "Transfer-Encoding: chunked\r\n");
    if (r->request_id[0])
        srv_buf_printf(b, "X-Request-Id: %s\r\n", r->request_id);
    if (s->cfg->cors_origin[0]) {
        int star = strcmp(s->cfg->cors_origin, "*") == 0;
        srv_buf_printf(b, "Access-Control-Allow-Origin: %s\r\n"
                          "Access-Control-Expose-Headers: X-Request-Id\r\n",
                       s->cfg->cors_origin);
        if (!star)
            srv_buf_puts(b, "Vary: Origin\r\n");
    }
    srv_buf_printf(b, "Connection: %s\r\n", r->close_after ? "close" : "keep-alive");
    if (extra)
        srv_buf_puts(b, extra);
    srv_buf_puts(b, "\r\n");
}

void srv_resp_send(srv_resp *r, int status, const char *content_type, const char *body,
                   size_t len, const char *extra_headers)
{
    if (r->done)
        return;
    resp_head(r, status, content_type, (long long)len, extra_headers);
    if (!r->head_only)
        srv_buf_append(&r->out, body, len);
    r->done = 1;
    conn_flush(r->conn);
}

void srv_resp_stream_begin(srv_resp *r)
{
    /* HTTP/1.0 has no chunked coding: the body then ends with the connection. */
    r->chunked = !r->http10;
    if (r->http10)
        r->close_after = 1;
    resp_head(r, 200, "text/event-stream", -1, "Cache-Control: no-cache\r\n"
                                               "X-Accel-Buffering: no\r\n");
    conn_flush(r->conn);
}

void srv_resp_stream_write(srv_resp *r, const char *data, size_t len)
{
    if (len == 0 || r->done)
        return;
    if (r->chunked)
        srv_buf_printf(&r->out, "%zx\r\n", len);
    srv_buf_append(&r->out, data, len);
    if (r->chunked)
        srv_buf_puts(&r->out, "\r\n");
    conn_flush(r->conn);
}

void srv_resp_stream_end(srv_resp *r)
{
    if (r->done)
        return;
    if (r->chunked)
        srv_buf_puts(&r->out, "0\r\n\r\n");
    r->done = 1;
    conn_flush(r->conn);
}

void srv_resp_flush(srv_resp *r)
{
    conn_flush(r->conn);
}

/* ---- connection lifetime ---- */

static void on_conn_closed(uv_handle_t *h)
{
    srv_conn *c = h->data;
    srv_http *s = c->http;
    free(c);
    if (s->hooks.on_progress)
        s->hooks.on_progress(s->hooks.ctx);
}

void srv_conn_close(srv_conn *c)
{
    if (c->closing)
        return;
    srv_http *s = c->http;
    c->closing = 1;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->n_conns--;
    while (c->rq_head) {
        srv_resp *r = c->rq_head;
        c->rq_head = r->next;
        if (s->hooks.on_response_abandoned)
            s->hooks.on_response_abandoned(s->hooks.ctx, r);
        resp_free(r);
    }
    c->rq_tail = NULL;
    c->n_resp = 0;
    free(c->pending);
    c->pending = NULL;
    req_body_free(c);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_write(uv_write_t *w, int status)
{
    wreq *wr = (wreq *)w;
    srv_conn *c = w->handle->data;
    free(wr->data);
    free(wr);
    if (c->closing)
        return;
    if (status != 0) {
        srv_conn_close(c);   /* the peer is gone (EPIPE, reset): cancel its generations */
        return;
    }
    c->last_active = uv_hrtime();
    conn_maybe_resume(c);   /* the backlog that paused reading may have drained */
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    srv_conn *c = req->handle->data;
    free(req);
    if (status != 0 || c->closing) {
        srv_conn_close(c);
        return;
    }
    /* Lingering close: read (and discard) again for a moment, so that a client still sending
     * does not turn our last response into a reset (closing with unread data sends RST, and
     * many stacks then drop the response the client had not read yet). Reading stopped at
     * the half-close; start it again. */
    c->last_active = c->linger_since = uv_hrtime();
    conn_sync_reading(c);
}

/* No more responses will be sent: half-close after the queued writes, then linger. */
static void conn_finish(srv_conn *c)
{
    if (c->closing || c->input_closed == 2)
        return;
    c->input_closed = 2;   /* 2 = lingering */
    conn_sync_reading(c);  /* not until the shutdown is done: an EOF now would cut the writes */
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (!req || uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        free(req);
        srv_conn_close(c);
    }
}

static void conn_flush(srv_conn *c)
{
    srv_http *s = c->http;
    while (c->rq_head && !c->closing) {
        srv_resp *r = c->rq_head;
        if (r->out.len) {
            wreq *wr = malloc(sizeof(*wr));
            if (!wr) {
                c->doomed = 1;   /* the sweep closes it: never close under a caller */
                return;
            }
            size_t len;
            wr->data = srv_buf_take(&r->out, &len);
            c->bytes_queued += len;
            uv_buf_t b = uv_buf_init(wr->data, (unsigned)len);
            if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
                free(wr->data);
                free(wr);
                c->doomed = 1;
                return;
            }
        }
        if (!r->done)
            break;
        /* finished: account for it, then move to the next one */
        if (s->hooks.on_response_sent)
            s->hooks.on_response_sent(s->hooks.ctx, r);
        int close_after = r->close_after;
        c->rq_head = r->next;
        if (!c->rq_head)
            c->rq_tail = NULL;
        c->n_resp--;
        resp_free(r);
        if (close_after) {
            c->input_closed = 1;
            /* later pipelined responses are dropped with the connection */
            while (c->rq_head) {
                srv_resp *x = c->rq_head;
                c->rq_head = x->next;
                c->n_resp--;
                if (s->hooks.on_response_abandoned)
                    s->hooks.on_response_abandoned(s->hooks.ctx, x);
                resp_free(x);
            }
            c->rq_tail = NULL;
            conn_finish(c);
            return;
        }
    }
    if (c->closing)
        return;
    if (c->input_closed == 1 && !c->rq_head)
        conn_finish(c);
    else if (!c->in_execute)
        conn_maybe_resume(c);
}

/* Queues an error response for a protocol problem and stops reading requests. */
static void conn_protocol_error(srv_conn *c, int status, const char *msg)
{
    srv_resp *r = conn_push_resp(c);
    c->input_closed = 1;
    conn_sync_reading(c);   /* reads on, discarding, so a peer leaving is seen */
    if (!r) {
        c->doomed = 1;
        return;
    }
    r->close_after = 1;
    snprintf(r->route, sizeof(r->route), "-");
    r->t_start = c->in_message && c->req.t_start ? c->req.t_start : uv_hrtime();
    srv_http_make_id(c->http, "req", r->request_id, sizeof(r->request_id));
    if (status == 503) {   /* the server-wide body budget: try again shortly */
        srv_resp_error_h(r, 503, "Retry-After: 1\r\n", "server_error", NULL, "server_busy",
                         "%s", msg);
        return;
    }
    if (status == 415) {   /* only a Content-Encoding: RFC 9110 15.5.16 says what we take */
        srv_resp_error_h(r, 415, "Accept-Encoding: identity\r\n", "invalid_request_error", NULL,
                         "unsupported_content_encoding", "%s", msg);
        return;
    }
    const char *code = status == 413 ? "request_too_large"
                       : status == 431 ? "headers_too_large"
                       : status == 408 ? "request_timeout" : "bad_request";
    srv_resp_error(r, status, "invalid_request_error", NULL, code, "%s", msg);
}

/* Bytes of answers not yet taken by the kernel: libuv's write queue, and what responses hold
 * that was not handed to it yet (finished answers queued behind an unfinished one). */
static size_t conn_unsent(const srv_conn *c)
{
    size_t n = uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp);
    for (const srv_resp *r = c->rq_head; r; r = r->next)
        n += r->out.len;
    return n;
}

/* Whether the next request may be parsed: fewer than SRV_MAX_PIPELINE in flight, and no more
 * than write_soft_bytes unsent (half that to resume, so that a paused parser goes on for many
 * requests at a time rather than one per write completed). A client that pipelines requests
 * and reads no answers would otherwise have us read and answer without bound (130 MB a
 * connection of /metrics answers); paused, the kernel's buffers fill and its sends stop. */
static int conn_may_parse(const srv_conn *c, int resuming)
{
    const size_t soft = (size_t)c->http->cfg->write_soft_bytes;
    return c->n_resp < SRV_MAX_PIPELINE && conn_unsent(c) <= (resuming ? soft / 2 : soft);
}

/* ---- llhttp callbacks ---- */

static int on_message_begin(llhttp_t *p)
{
    srv_conn *c = p->data;
    srv_request *q = &c->req;
    req_body_free(c);
    memset(q, 0, sizeof(*q));
    q->t_start = uv_hrtime();
    c->in_message = 1;
    c->n_begun++;
    return 0;
}

static int header_budget(srv_conn *c, size_t len)
{
    c->req.header_bytes += len;
    if (c->req.header_bytes > (size_t)c->http->cfg->max_header_bytes) {
        c->err_status = 431;
        snprintf(c->err_msg, sizeof(c->err_msg), "request headers exceed %lld bytes",
                 (long long)c->http->cfg->max_header_bytes);
        return -1;
    }
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    srv_conn *c = p->data;
    if (header_budget(c, len))
        return -1;
    srv_request *q = &c->req;
    if (q->url_len + len > SRV_MAX_URL_BYTES) {
        c->err_status = 414;
        snprintf(c->err_msg, sizeof(c->err_msg), "URL longer than %d bytes", SRV_MAX_URL_BYTES);
        return -1;
    }
    memcpy(q->url + q->url_len, at, len);
    q->url_len += len;
    q->url[q->url_len] = '\0';
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    srv_conn *c = p->data;
    srv_request *q = &c->req;
    if (header_budget(c, len))
        return -1;
    if (q->headers_done)
        return 0;   /* a chunked trailer field: counted, never read (see on_header_value) */
    if (q->in_value || q->n_headers == 0) {
        q->n_headers++;
        q->field_len = 0;
        q->in_value = 0;
        if (q->n_headers > SRV_MAX_HEADERS) {
            c->err_status = 431;
            snprintf(c->err_msg, sizeof(c->err_msg), "more than %d header fields",
                     SRV_MAX_HEADERS);
            return -1;
        }
    }
    for (size_t i = 0; i < len && q->field_len + 1 < sizeof(q->field); i++)
        q->field[q->field_len++] = (char)tolower((unsigned char)at[i]);
    q->field[q->field_len] = '\0';
    return 0;
}

static void append_bounded(char *dst, size_t cap, const char *at, size_t len)
{
    size_t cur = strlen(dst);
    if (cur + 1 >= cap)
        return;
    if (len > cap - 1 - cur)
        len = cap - 1 - cur;
    memcpy(dst + cur, at, len);
    dst[cur + len] = '\0';
}

/* Fields read once, whose second copy is a 400 rather than a value run together (RFC 9112
 * 3.2: Host; Authorization: two would be joined into a credential no one sent). Two
 * Content-Types run together and get the router's 415. */
#define SRV_HDR_HOST 1u
#define SRV_HDR_AUTH 2u

static void once(srv_request *q, int first, unsigned bit, const char *name)
{
    if (first && (q->seen & bit) && !q->dup_field)
        q->dup_field = name;
    q->seen |= bit;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    srv_conn *c = p->data;
    srv_request *q = &c->req;
    if (header_budget(c, len))
        return -1;
    /* Trailer fields of a chunked body (RFC 9110 6.5.1) arrive after the headers were judged:
     * merged into them, an Authorization there would pass --api-key and a Content-Type the 415
     * check. We take none of them; they still count against the header byte limit. */
    if (q->headers_done)
        return 0;
    int first = !q->in_value;
    q->in_value = 1;
    const char *f = q->field;
    if (strcmp(f, "host") == 0)
        once(q, first, SRV_HDR_HOST, "Host");
    else if (strcmp(f, "authorization") == 0)
        once(q, first, SRV_HDR_AUTH, "Authorization");
    if (strcmp(f, "x-request-id") == 0) {
        if (first) {
            q->request_id[0] = '\0';
            q->request_id_long = 0;
        }
        if (strlen(q->request_id) + len > SRV_MAX_REQUEST_ID)
            q->request_id_long = 1;   /* replaced, not cut: a cut id would match nothing */
        append_bounded(q->request_id, sizeof(q->request_id), at, len);
    } else if (strcmp(f, "authorization") == 0) {
        append_bounded(q->auth, sizeof(q->auth), at, len);
    } else if (strcmp(f, "origin") == 0) {
        append_bounded(q->origin, sizeof(q->origin), at, len);
    } else if (strcmp(f, "access-control-request-method") == 0) {
        append_bounded(q->acr_method, sizeof(q->acr_method), at, len);
    } else if (strcmp(f, "host") == 0) {
        append_bounded(q->host, sizeof(q->host), at, len);
    } else if (strcmp(f, "content-type") == 0) {
        append_bounded(q->content_type, sizeof(q->content_type), at, len);
    } else if (strcmp(f, "expect") == 0) {
        append_bounded(q->expect, sizeof(q->expect), at, len);
    } else if (strcmp(f, "access-control-request-headers") == 0) {
        append_bounded(q->acr_headers, sizeof(q->acr_headers), at, len);
    } else if (strcmp(f, "transfer-encoding") == 0) {
        /* two Transfer-Encoding fields run together and fail the check below */
        append_bounded(q->transfer_encoding, sizeof(q->transfer_encoding), at, len);
    } else if (strcmp(f, "content-encoding") == 0) {
        /* a second field continues the list (RFC 9110 5.3) */
        if (first && q->content_encoding[0])
            append_bounded(q->content_encoding, sizeof(q->content_encoding), ",", 1);
        append_bounded(q->content_encoding, sizeof(q->content_encoding), at, len);
    }
    return 0;
}

/* 1 when a Content-Encoding list names no coding but "identity" (empty elements allowed). */
static int identity_only(const char *v)
{
    while (*v) {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        size_t n = strcspn(v, " \t,");
        if (n && !(n == 8 && strncasecmp(v, "identity", 8) == 0))
            return 0;
        v += n;
    }
    return 1;
}

/* Drops a value's trailing spaces and tabs (llhttp drops the leading ones: RFC 9110 5.5). */
static void rtrim_ows(char *v)
{
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        v[--n] = '\0';
}

static int on_headers_complete(llhttp_t *p)
{
    srv_conn *c = p->data;
    srv_request *q = &c->req;
    q->headers_done = 1;
    q->t_headers = uv_hrtime();
    char *vals[] = {q->request_id, q->auth,    q->origin,       q->acr_method,
                    q->acr_headers, q->host,   q->expect,       q->content_type,
                    q->transfer_encoding,      q->content_encoding};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
        rtrim_ows(vals[i]);
    if (p->http_major != 1) {   /* a 400 like llhttp's for versions it does not parse */
        c->err_status = 400;
        snprintf(c->err_msg, sizeof(c->err_msg), "HTTP/%d.%d is not supported: HTTP/1.1 or 1.0",
                 p->http_major, p->http_minor);
        return -1;
    }
    if (q->dup_field) {
        c->err_status = 400;
        snprintf(c->err_msg, sizeof(c->err_msg), "more than one %s header field", q->dup_field);
        return -1;
    }
    if (p->http_minor >= 1 && !(q->seen & SRV_HDR_HOST)) {
        c->err_status = 400;
        snprintf(c->err_msg, sizeof(c->err_msg), "an HTTP/1.1 request needs a Host header field");
        return -1;
    }
    /* RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing (1.0 has
     * no chunked coding; llhttp would decode it all the same) */
    if ((p->flags & F_TRANSFER_ENCODING) && p->http_minor == 0) {
        c->err_status = 400;
        snprintf(c->err_msg, sizeof(c->err_msg),
                 "Transfer-Encoding is not allowed in an HTTP/1.0 request: send Content-Length");
        return -1;
    }
    /* llhttp takes "gzip, chunked" as chunked and would hand us the still-encoded bytes; the
     * only coding we decode is chunked (h2o's rule: an unknown coding is a 400). */
    if ((p->flags & F_TRANSFER_ENCODING) && strcasecmp(q->transfer_encoding, "chunked") != 0) {
        c->err_status = 400;
        snprintf(c->err_msg, sizeof(c->err_msg),
                 "unsupported Transfer-Encoding '%.40s': only chunked is accepted",
                 q->transfer_encoding);
        return -1;
    }
    /* We decode no content coding: a gzip body would be read as (invalid) JSON text, and a
     * "br" label on plain JSON would be silently wrong. Refused before reading the body. */
    if (!identity_only(q->content_encoding)) {
        c->err_status = 415;
        snprintf(c->err_msg, sizeof(c->err_msg),
                 "unsupported Content-Encoding '%.40s': request bodies are taken uncompressed "
                 "only (identity)", q->content_encoding);
        return -1;
    }
    if ((p->flags & F_CONTENT_LENGTH) &&
        p->content_length > (uint64_t)c->http->cfg->max_body_bytes) {
        c->err_status = 413;
        snprintf(c->err_msg, sizeof(c->err_msg),
                 "request body of %llu bytes exceeds the limit of %lld bytes",
                 (unsigned long long)p->content_length, (long long)c->http->cfg->max_body_bytes);
        return -1;
    }
    if ((p->flags & F_CONTENT_LENGTH) && !body_budget_ok(c, (int64_t)p->content_length))
        return -1;
    /* curl sends "Expect: 100-continue" for larger bodies and waits a second for this line.
     * Only when nothing is queued before it: an interim line must not overtake a response.
     * Never to HTTP/1.0, which has no 1xx responses (RFC 9110 10.1.1: ignore the field). */
    if (strcasecmp(q->expect, "100-continue") == 0 && !c->rq_head && p->http_minor >= 1) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        wreq *wr = malloc(sizeof(*wr));
        char *copy = malloc(sizeof(cont) - 1);
        if (wr && copy) {
            memcpy(copy, cont, sizeof(cont) - 1);
            wr->data = copy;
            uv_buf_t b = uv_buf_init(copy, sizeof(cont) - 1);
            if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) == 0)
                return 0;
        }
        free(copy);
        free(wr);
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    srv_conn *c = p->data;
    srv_request *q = &c->req;
    if (q->body.len + len > (size_t)c->http->cfg->max_body_bytes) {
        c->err_status = 413;
        snprintf(c->err_msg, sizeof(c->err_msg), "request body exceeds the limit of %lld bytes",
                 (long long)c->http->cfg->max_body_bytes);
        return -1;
    }
    if (!body_budget_ok(c, (int64_t)len))   /* chunked bodies, or a lying Content-Length */
        return -1;
    if (srv_buf_append(&q->body, at, len) != 0) {
        c->err_status = 413;
        snprintf(c->err_msg, sizeof(c->err_msg), "request body could not be stored");
        return -1;
    }
    q->body_counted += len;
    c->http->body_inflight += (int64_t)len;
    return 0;
}

/* A chunk announcing more than the body limit is refused at once (a 413 now, not a 408 once
 * the body timeout has passed waiting for bytes we would refuse anyway). */
static int on_chunk_header(llhttp_t *p)
{
    srv_conn *c = p->data;
    const uint64_t max = (uint64_t)c->http->cfg->max_body_bytes;
    if (p->content_length > max || c->req.body.len + p->content_length > max) {
        c->err_status = 413;
        snprintf(c->err_msg, sizeof(c->err_msg), "request body exceeds the limit of %lld bytes "
                 "(a chunk of %llu bytes announced)", (long long)max,
                 (unsigned long long)p->content_length);
        return -1;
    }
    return 0;
}

/* A request id we echo must be short printable ASCII without quotes; otherwise we make one. */
static int request_id_ok(const char *id)
{
    if (!id[0])
        return 0;
    for (const char *p = id; *p; p++)
        if (*p < 0x21 || *p > 0x7E || *p == '"' || *p == '\\')
            return 0;
    return 1;
}

/* An absolute-form target ("http://host/path?query", RFC 9112 3.2.2) becomes its path and
 * query. The authority ends at the first '/', '?' or '#' (RFC 3986 3.2); with no path there,
 * the path is "/" ("http://h?x=/health" asks for "/" with the query "x=/health"). */
static void url_strip_authority(srv_request *q)
{
    size_t skip;
    if (strncasecmp(q->url, "http://", 7) == 0)
        skip = 7;
    else if (strncasecmp(q->url, "https://", 8) == 0)
        skip = 8;
    else
        return;
    const char *rest = q->url + skip + strcspn(q->url + skip, "/?#");
    size_t n = strlen(rest);
    if (*rest == '/') {
        memmove(q->url, rest, n + 1);
        q->url_len = n;
        return;
    }
    /* the scheme and authority removed free at least 7 bytes for the '/' */
    memmove(q->url + 1, rest, n + 1);
    q->url[0] = '/';
    q->url_len = n + 1;
}

static int on_message_complete(llhttp_t *p)
{
    srv_conn *c = p->data;
    srv_http *s = c->http;
    srv_request *q = &c->req;
    c->in_message = 0;
    q->method = llhttp_get_method(p);
    q->keep_alive = llhttp_should_keep_alive(p);
    if (q->request_id_long || !request_id_ok(q->request_id))
        srv_http_make_id(s, "req", q->request_id, sizeof(q->request_id));
    srv_resp *r = conn_push_resp(c);
    if (!r) {
        c->err_status = 503;
        snprintf(c->err_msg, sizeof(c->err_msg), "out of memory");
        return -1;
    }
    r->t_start = q->t_start;
    memcpy(r->request_id, q->request_id, sizeof(r->request_id));
    snprintf(r->origin, sizeof(r->origin), "%s", q->origin);
    r->http10 = p->http_major == 1 && p->http_minor == 0;
    r->head_only = q->method == HTTP_HEAD;
    url_strip_authority(q);
    /* Connection: close, HTTP/1.0 without "Connection: keep-alive" (ab -k sends it), HTTP/0.9,
     * or an Upgrade we do not take: this is the last request we read. */
    if (!q->keep_alive || p->http_major != 1 || p->upgrade) {
        r->close_after = 1;
        c->input_closed = 1;
    }
    s->hooks.on_request(s->hooks.ctx, r, q);
    req_body_free(c);
    if (c->input_closed || c->closing)
        return HPE_PAUSED;   /* read nothing more */
    if (!conn_may_parse(c, 0))
        return HPE_PAUSED;   /* conn_maybe_resume goes on from here */
    return 0;
}

static void http_settings(llhttp_settings_t *st)
{
    llhttp_settings_init(st);
    st->on_message_begin = on_message_begin;
    st->on_url = on_url;
    st->on_header_field = on_header_field;
    st->on_header_value = on_header_value;
    st->on_headers_complete = on_headers_complete;
    st->on_body = on_body;
    st->on_chunk_header = on_chunk_header;
    st->on_message_complete = on_message_complete;
}

/* ---- reading ---- */

static void conn_parse(srv_conn *c, const char *data, size_t len)
{
    c->in_execute = 1;
    llhttp_errno_t e = llhttp_execute(&c->parser, data, len);
    c->in_execute = 0;
    if (c->closing || e == HPE_OK)
        return;
    if (e == HPE_PAUSED) {
        const char *pos = llhttp_get_error_pos(&c->parser);
        size_t used = pos && pos >= data && pos <= data + len ? (size_t)(pos - data) : len;
        if (c->input_closed) {
            conn_sync_reading(c);   /* the last request: what follows is discarded */
            return;
        }
        size_t rest = len - used;
        free(c->pending);
        c->pending = NULL;
        c->n_pending = 0;
        if (rest) {
            c->pending = malloc(rest);
            if (!c->pending) {
                c->doomed = 1;   /* the sweep closes it: a handler may be below us */
                c->input_closed = 1;
                conn_sync_reading(c);
                return;
            }
            memcpy(c->pending, data + used, rest);
            c->n_pending = rest;
        }
        /* Reading stops while paused (what is not read stays in the kernel's buffers, which
         * bounds it); the sweep still looks for the peer leaving (conn_peer_gone). */
        c->paused = 1;
        conn_sync_reading(c);
        return;
    }
    if (e == HPE_PAUSED_UPGRADE) {
        conn_end_input(c);
        return;
    }
    int status = c->err_status ? c->err_status : 400;
    char msg[256];
    if (c->err_status)
        snprintf(msg, sizeof(msg), "%s", c->err_msg);
    else if (e == HPE_PAUSED_H2_UPGRADE)   /* curl --http2-prior-knowledge */
        snprintf(msg, sizeof(msg), "HTTP/2 is not supported: use HTTP/1.1");
    else
        snprintf(msg, sizeof(msg), "malformed HTTP request: %s (%s)",
                 llhttp_get_error_reason(&c->parser) ? llhttp_get_error_reason(&c->parser) : "",
                 llhttp_errno_name(e));
    conn_protocol_error(c, status, msg);
}

/* Parses what a pause left over, and reads again, once conn_may_parse allows it. Called when
 * a response goes and when a write completes; never under llhttp_execute. */
static void conn_maybe_resume(srv_conn *c)
{
    while (c->paused && !c->closing && !c->in_execute && !c->input_closed &&
           conn_may_parse(c, 1)) {
        c->paused = 0;
        llhttp_resume(&c->parser);
        char *p = c->pending;
        size_t n = c->n_pending;
        c->pending = NULL;
        c->n_pending = 0;
        if (n)
            conn_parse(c, p, n);
        free(p);
        if (!c->closing)
            conn_sync_reading(c);
    }
}

/* Stop reading requests; close once the queued responses are out. */
static void conn_end_input(srv_conn *c)
{
    c->input_closed = 1;
    conn_sync_reading(c);
    if (!c->rq_head)
        conn_finish(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    srv_conn *c = h->data;
    buf->base = c->rbuf;
    buf->len = sizeof(c->rbuf);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    srv_conn *c = st->data;
    (void)buf;
    if (c->closing)
        return;
    if (nread == 0)
        return;
    if (c->input_closed == 2) {
        /* lingering: discard; the peer's EOF ends it */
        c->last_active = uv_hrtime();
        if (nread < 0)
            srv_conn_close(c);
        return;
    }
    if (nread < 0) {
        if (nread != UV_EOF) {
            srv_conn_close(c);   /* reset: the peer is gone, cancel what it had in flight */
            return;
        }
        c->read_eof = 1;   /* libuv stopped reading */
        /* EOF. A request cut short gets a 400 (for a client that half-closed). */
        if (c->in_message && !c->input_closed) {
            conn_protocol_error(c, 400, "request truncated: the connection ended mid-request");
            return;
        }
        /* An answer still being made (a generation) is for a client that left: most clients
         * never half-close, and a server that kept generating for a closed socket is the
         * classic leak, so cancel whatever is in flight. This holds after the last request
         * too (Connection: close, HTTP/1.0): reading goes on after it for this. */
        if (c->rq_head || uv_stream_get_write_queue_size(st) == 0) {
            srv_conn_close(c);
            return;
        }
        /* every answer is made and only bytes are left: let them out to a half-closed peer */
        conn_end_input(c);
        return;
    }
    if (c->input_closed)
        return;   /* after the last request: discarded */
    /* Activity is request bytes: the empty lines llhttp skips between requests start no
     * request, so they neither start the header deadline nor may keep an idle connection
     * open (a peer sending "\r\n" now and then held it forever). */
    const uint64_t begun = c->n_begun;
    const int was_in = c->in_message;
    conn_parse(c, c->rbuf, (size_t)nread);
    if (was_in || c->in_message || c->n_begun != begun)
        c->last_active = uv_hrtime();
    if (!c->closing && !c->in_execute)
        conn_maybe_resume(c);
}

/* Starts or stops reading to match the state: requests are read unless the parser is paused;
 * after the last request reading goes on (discarding) until EOF, so that a client leaving is
 * seen and its generations cancelled; lingering reads once the half-close is done. A failure
 * to start dooms the connection (the sweep closes it: a caller may be below us). */
static void conn_sync_reading(srv_conn *c)
{
    if (c->closing)
        return;
    int want = c->input_closed == 2 ? c->linger_since != 0
               : c->input_closed == 1 ? !c->read_eof
                                      : !c->paused;
    if (!want) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        return;
    }
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc != 0 && rc != UV_EALREADY)
        c->doomed = 1;
}

/* Whether the peer has closed or reset a connection we are not reading (parser paused): its
 * kernel state says so even with unread requests before the FIN. Elsewhere a peek sees an
 * EOF or error only when nothing unread is left. */
static int conn_peer_gone(srv_conn *c)
{
    uv_os_fd_t fd;
    if (uv_fileno((const uv_handle_t *)&c->tcp, &fd) != 0)
        return 0;
#if defined(__linux__) && defined(TCP_INFO)
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0)
        return ti.tcpi_state != TCP_ESTABLISHED;
#endif
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* ---- accept ---- */

static void on_connection(uv_stream_t *ls, int status)
{
    srv_http *s = ls->data;
    if (status < 0)
        return;
    srv_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->http = s;
    uv_tcp_init(s->loop, &c->tcp);
    c->tcp.data = c;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
        srv_conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (s->cfg->sndbuf > 0) {
        int v = s->cfg->sndbuf;
        uv_send_buffer_size((uv_handle_t *)&c->tcp, &v);
    }
    llhttp_init(&c->parser, HTTP_REQUEST, &s->settings);
    c->parser.data = c;
    c->last_active = uv_hrtime();
    if (s->n_conns > s->cfg->max_conns || s->draining) {
        srv_resp *r = conn_push_resp(c);
        c->input_closed = 1;
        if (!r) {
            srv_conn_close(c);
            return;
        }
        r->close_after = 1;
        snprintf(r->route, sizeof(r->route), "-");
        srv_http_make_id(s, "req", r->request_id, sizeof(r->request_id));
        srv_resp_error(r, 503, "server_error", NULL, s->draining ? "server_shutting_down"
                                                                 : "too_many_connections",
                       "%s", s->draining ? "the server is shutting down"
                                         : "too many open connections");
        return;
    }
    conn_sync_reading(c);
    if (c->doomed)
        srv_conn_close(c);
}

int srv_http_listen(srv_http *s, char *err, size_t cap)
{
    http_settings(&s->settings);
    struct sockaddr_storage addr;
    const char *host = s->cfg->host;
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    int family = strchr(host, ':') ? AF_INET6 : AF_INET;
    int rc = family == AF_INET6
                 ? uv_ip6_addr(host, s->cfg->port, (struct sockaddr_in6 *)&addr)
                 : uv_ip4_addr(host, s->cfg->port, (struct sockaddr_in *)&addr);
    if (rc != 0) {
        snprintf(err, cap, "--host '%s' is not a numeric IPv4/IPv6 address", s->cfg->host);
        return -1;
    }
    rc = uv_tcp_init_ex(s->loop, &s->listener, (unsigned)family);
    if (rc != 0) {
        snprintf(err, cap, "socket: %s", uv_strerror(rc));
        return -1;
    }
    s->listener_open = 1;
    s->listener.data = s;
    if (s->cfg->reuseport) {
        uv_os_fd_t fd;
        int one = 1;
        if (uv_fileno((uv_handle_t *)&s->listener, &fd) != 0 ||
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
            snprintf(err, cap, "SO_REUSEPORT could not be set");
            return -1;
        }
    }
    rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
    if (rc != 0) {
        snprintf(err, cap, "listen on %s:%d: %s", s->cfg->host, s->cfg->port, uv_strerror(rc));
        return -1;
    }
    struct sockaddr_storage bound;
    int len = sizeof(bound);
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
    if (bound.ss_family == AF_INET6) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&bound;
        uv_ip6_name(a6, s->host, sizeof(s->host));
        s->port = ntohs(a6->sin6_port);
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&bound;
        uv_ip4_name(a4, s->host, sizeof(s->host));
        s->port = ntohs(a4->sin_port);
    }
    return 0;
}

void srv_http_stop_listening(srv_http *s)
{
    if (s->listener_open) {
        uv_close((uv_handle_t *)&s->listener, NULL);
        s->listener_open = 0;
    }
}

int srv_http_idle(const srv_http *s)
{
    for (const srv_conn *c = s->conns; c; c = c->next) {
        if (c->closing)
            continue;
        if (c->rq_head || (c->in_message && !c->input_closed) ||
            uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp) > 0)
            return 0;   /* a request still arriving gets its answer (503) too */
    }
    return 1;
}

void srv_http_close_all(srv_http *s)
{
    while (s->conns)
        srv_conn_close(s->conns);
}

void srv_http_make_id(srv_http *s, const char *prefix, char *out, size_t cap)
{
    uint64_t x = ++s->id_counter * 0x9E3779B97F4A7C15ULL ^ uv_hrtime();
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 29;
    snprintf(out, cap, "%s-%016llx", prefix, (unsigned long long)x);
}

/* ---- deadlines and backpressure ---- */

void srv_http_sweep(srv_http *s)
{
    uint64_t now = uv_hrtime();
    const srv_config *cfg = s->cfg;
    uint64_t hdr_ns = (uint64_t)(cfg->header_timeout_s * 1e9);
    uint64_t body_ns = (uint64_t)(cfg->body_timeout_s * 1e9);
    uint64_t idle_ns = (uint64_t)(cfg->idle_timeout_s * 1e9);
    srv_conn *c = s->conns, *nx;
    for (; c; c = nx) {
        nx = c->next;
        if (c->closing)
            continue;
        if (c->doomed) {
            srv_conn_close(c);
            continue;
        }
        if (c->input_closed == 2 && c->linger_since) {
            /* the lingering window runs from the half-close, which waits for every write */
            if (now - c->linger_since > LINGER_NS)
                srv_conn_close(c);
            continue;
        }
        /* Unsent: the socket's write queue (libuv shrinks it as the kernel takes bytes, also
         * inside one large write) and the finished answers queued behind an unfinished one of
         * a pipeline (not written yet, but held all the same). Any shrink is progress. */
        size_t wq = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
        const uint64_t taken = c->bytes_queued - wq;   /* bytes the kernel accepted so far */
        const int took = taken > c->taken_prev;
        c->taken_prev = taken;
        for (const srv_resp *r = c->rq_head ? c->rq_head->next : NULL; r; r = r->next)
            wq += r->out.len;
        const size_t prev = c->wq_prev;
        c->wq_prev = wq;
        if (took)
            c->last_active = now;
        /* over the hard limit at two sweeps in a row (100 ms apart) with nothing taken in
         * between: a stalled reader. One still taking a large response keeps going, however
         * fast the answer grows (the soft limit below bounds how long). */
        if (wq > (size_t)cfg->write_hard_bytes && prev > (size_t)cfg->write_hard_bytes &&
            !took) {
            srv_log("warn", "closing a connection: %zu bytes unsent (slow reader)", wq);
            srv_conn_close(c);
            continue;
        }
        if (wq > (size_t)cfg->write_soft_bytes) {
            if (!c->write_soft_since)
                c->write_soft_since = now;
            else if (now - c->write_soft_since > (uint64_t)(cfg->write_soft_s * 1e9)) {
                srv_log("warn", "closing a connection: write queue over %lld bytes for %.1f s",
                        (long long)cfg->write_soft_bytes, cfg->write_soft_s);
                srv_conn_close(c);
                continue;
            }
        } else {
            c->write_soft_since = 0;
        }
        if (c->paused && c->rq_head && !c->input_closed && conn_peer_gone(c)) {
            /* not reading (pipeline full, or backpressure), so no EOF to see: the client left
             * with answers still being made; cancel them */
            srv_conn_close(c);
            continue;
        }
        if (c->in_message && !c->input_closed) {
            if (!c->req.headers_done && now - c->req.t_start > hdr_ns) {
                conn_protocol_error(c, 408, "request headers not received in time");
            } else if (c->req.headers_done && now - c->req.t_headers > body_ns) {
                conn_protocol_error(c, 408, "request body not received in time");
            }
            continue;
        }
        if (c->input_closed == 2) {
            /* the last answer is still being written: a reader that takes nothing for the idle
             * timeout is gone (the limits above bound a slow one) */
            if (now - c->last_active > idle_ns)
                srv_conn_close(c);
            continue;
        }
        if (!c->rq_head && !c->in_message && now - c->last_active > idle_ns)
            srv_conn_close(c);   /* idle keep-alive, or a reader that took nothing that long */
    }
}
