/* cli_http.c — blocking HTTP/1.1 over POSIX sockets: URL parsing, connect with a timeout,
 * request writing, status/header parsing, chunked decoding. Owns no JSON and no SSE
 * (cli_api.c and cli_sse.c do). One thread per connection; no globals. */
#include "cli_http.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

/* ---- errors --------------------------------------------------------------------------------- */

int cli_err_set(cli_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *cli_strerror(int code)
{
    switch (code) {
    case CLI_OK: return "ok";
    case CLI_E_USAGE: return "bad usage";
    case CLI_E_CONNECT: return "cannot connect";
    case CLI_E_IO: return "I/O error";
    case CLI_E_TIMEOUT: return "timed out";
    case CLI_E_PROTO: return "protocol error";
    case CLI_E_HTTP: return "HTTP error status";
    case CLI_E_NOMEM: return "out of memory";
    case CLI_E_TOO_BIG: return "response too large";
    case CLI_E_API: return "server reported an error";
    default: return "unknown error";
    }
}

/* ---- URL ------------------------------------------------------------------------------------ */

int cli_url_parse(cli_url *u, const char *text, cli_err *err)
{
    memset(u, 0, sizeof *u);
    if (!text || !*text)
        return cli_err_set(err, CLI_E_USAGE, "empty URL");
    if (strncasecmp(text, "https://", 8) == 0)
        return cli_err_set(err, CLI_E_USAGE, "%s: https is not supported (no TLS in claq-client); "
                           "use http:// or a TLS-terminating proxy", text);
    const char *p = text;
    if (strncasecmp(p, "http://", 7) == 0)
        p += 7;
    else if (strstr(p, "://"))
        return cli_err_set(err, CLI_E_USAGE, "%s: only http:// URLs are supported", text);

    /* host: [v6] or name/v4 up to ':' or '/' */
    const char *host_end;
    const char *after;
    if (*p == '[') {
        host_end = strchr(p, ']');
        if (!host_end)
            return cli_err_set(err, CLI_E_USAGE, "%s: unterminated IPv6 literal", text);
        p++;
        after = host_end + 1;
    } else {
        host_end = p + strcspn(p, ":/");
        after = host_end;
    }
    size_t hlen = (size_t)(host_end - p);
    if (hlen == 0 || hlen >= sizeof u->host)
        return cli_err_set(err, CLI_E_USAGE, "%s: missing or overlong host", text);
    memcpy(u->host, p, hlen);
    u->host[hlen] = '\0';

    if (*after == ':') {
        const char *ps = after + 1;
        size_t plen = strspn(ps, "0123456789");
        if (plen == 0 || plen > 5 || (ps[plen] != '\0' && ps[plen] != '/'))
            return cli_err_set(err, CLI_E_USAGE, "%s: bad port", text);
        memcpy(u->port, ps, plen);
        u->port[plen] = '\0';
        long port = strtol(u->port, NULL, 10);
        if (port < 1 || port > 65535)
            return cli_err_set(err, CLI_E_USAGE, "%s: port out of range", text);
        after = ps + plen;
    } else {
        strcpy(u->port, "80");
    }
    if (*after != '\0' && *after != '/')
        return cli_err_set(err, CLI_E_USAGE, "%s: unexpected text after host", text);

    size_t plen = strlen(after);
    while (plen > 0 && after[plen - 1] == '/')
        plen--;
    if (plen >= 3 && memcmp(after + plen - 3, "/v1", 3) == 0)
        plen -= 3;
    if (plen >= sizeof u->prefix)
        return cli_err_set(err, CLI_E_USAGE, "%s: path too long", text);
    for (size_t i = 0; i < plen; i++) {
        unsigned char ch = (unsigned char)after[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '?' || ch == '#')
            return cli_err_set(err, CLI_E_USAGE, "%s: unsupported character in path", text);
    }
    memcpy(u->prefix, after, plen);
    u->prefix[plen] = '\0';
    return CLI_OK;
}

/* ---- chunked decoding ----------------------------------------------------------------------- */

int cli_chunked_feed(cli_chunked *c, const char *in, size_t len, cli_body_cb cb, void *ctx,
                     cli_err *err)
{
    size_t i = 0;
    while (i < len && c->state != CLI_CHUNK_DONE) {
        switch (c->state) {
        case CLI_CHUNK_SIZE:
        case CLI_CHUNK_TRAILER: {
            char ch = in[i++];
            if (ch != '\n') {
                if (c->line_len + 1 >= sizeof c->line)
                    return cli_err_set(err, CLI_E_PROTO, "chunk size line over %d bytes",
                                       CLI_MAX_CHUNK_LINE);
                c->line[c->line_len++] = ch;
                break;
            }
            if (c->line_len > 0 && c->line[c->line_len - 1] == '\r')
                c->line_len--;
            c->line[c->line_len] = '\0';
            if (c->state == CLI_CHUNK_TRAILER) {
                if (c->line_len == 0)
                    c->state = CLI_CHUNK_DONE;
                c->line_len = 0;
                break;
            }
            /* size in hex, optionally followed by ";ext" */
            uint64_t size = 0;
            size_t k = 0, digits = 0;
            for (; k < c->line_len && isxdigit((unsigned char)c->line[k]); k++, digits++) {
                if (digits >= 15)
                    return cli_err_set(err, CLI_E_PROTO, "chunk size too large");
                int d = isdigit((unsigned char)c->line[k])
                            ? c->line[k] - '0'
                            : (tolower((unsigned char)c->line[k]) - 'a' + 10);
                size = size * 16 + (uint64_t)d;
            }
            while (k < c->line_len && (c->line[k] == ' ' || c->line[k] == '\t'))
                k++;
            if (digits == 0 || (k < c->line_len && c->line[k] != ';'))
                return cli_err_set(err, CLI_E_PROTO, "bad chunk size line");
            c->line_len = 0;
            c->left = size;
            c->state = size == 0 ? CLI_CHUNK_TRAILER : CLI_CHUNK_DATA;
            break;
        }
        case CLI_CHUNK_DATA: {
            size_t n = len - i;
            if ((uint64_t)n > c->left)
                n = (size_t)c->left;
            if (cb) {
                int rc = cb(ctx, in + i, n);
                if (rc)
                    return rc;
            }
            i += n;
            c->left -= n;
            if (c->left == 0)
                c->state = CLI_CHUNK_DATA_CR;
            break;
        }
        case CLI_CHUNK_DATA_CR:
            if (in[i] == '\r') {
                i++;
                c->state = CLI_CHUNK_DATA_LF;
            } else if (in[i] == '\n') {  /* tolerate a bare LF */
                i++;
                c->state = CLI_CHUNK_SIZE;
            } else {
                return cli_err_set(err, CLI_E_PROTO, "missing CRLF after chunk data");
            }
            break;
        case CLI_CHUNK_DATA_LF:
            if (in[i++] != '\n')
                return cli_err_set(err, CLI_E_PROTO, "missing LF after chunk data");
            c->state = CLI_CHUNK_SIZE;
            break;
        case CLI_CHUNK_DONE:
            break;
        }
    }
    return CLI_OK;
}

/* ---- sockets -------------------------------------------------------------------------------- */

/* Waits until fd is readable (events=POLLIN) or writable; 0, CLI_E_TIMEOUT or CLI_E_IO. */
static int cli__wait(int fd, short events, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    for (;;) {
        int n = poll(&p, 1, timeout_ms);
        if (n > 0)
            return CLI_OK;
        if (n == 0)
            return CLI_E_TIMEOUT;
        if (errno != EINTR)
            return CLI_E_IO;
    }
}

/* Non-blocking connect with a timeout, then back to blocking mode. Returns the fd or -errno
 * style failure through *why (errno value). */
static int cli__connect_one(const struct addrinfo *ai, int timeout_ms, int *why)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
        *why = errno;
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc < 0 && errno == EINPROGRESS) {
        int w = cli__wait(fd, POLLOUT, timeout_ms);
        if (w == CLI_E_TIMEOUT) {
            *why = ETIMEDOUT;
            close(fd);
            return -1;
        }
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (w != CLI_OK || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
            soerr = errno;
        if (soerr) {
            *why = soerr;
            close(fd);
            return -1;
        }
    } else if (rc < 0) {
        *why = errno;
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fl);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int cli__send_all(cli_http_conn *c, const char *p, size_t n, cli_err *err)
{
    while (n > 0) {
        int w = cli__wait(c->fd, POLLOUT, c->timeout_ms);
        if (w == CLI_E_TIMEOUT)
            return cli_err_set(err, CLI_E_TIMEOUT, "timed out sending the request");
        ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return cli_err_set(err, CLI_E_IO, "send failed: %s", strerror(errno));
        }
        p += k;
        n -= (size_t)k;
    }
    return CLI_OK;
}

/* Reads more bytes into c->buf (growing it up to cap_limit). Returns bytes read, 0 on EOF,
 * or a negative CLI_E_* code. */
static long cli__recv_more(cli_http_conn *c, size_t cap_limit, cli_err *err)
{
    if (c->buf_off > 0 && c->buf_off == c->buf_len) {
        c->buf_off = c->buf_len = 0;
    }
    if (c->buf_len == c->buf_cap) {
        if (c->buf_off > 0) {
            memmove(c->buf, c->buf + c->buf_off, c->buf_len - c->buf_off);
            c->buf_len -= c->buf_off;
            c->buf_off = 0;
        } else {
            size_t ncap = c->buf_cap ? c->buf_cap * 2 : 16384;
            if (ncap > cap_limit)
                ncap = cap_limit;
            if (ncap <= c->buf_cap)
                return cli_err_set(err, CLI_E_TOO_BIG, "response headers over %zu bytes",
                                   cap_limit);
            char *nb = realloc(c->buf, ncap);
            if (!nb)
                return cli_err_set(err, CLI_E_NOMEM, "out of memory reading the response");
            c->buf = nb;
            c->buf_cap = ncap;
        }
    }
    for (;;) {
        int w = cli__wait(c->fd, POLLIN, c->timeout_ms);
        if (w == CLI_E_TIMEOUT)
            return cli_err_set(err, CLI_E_TIMEOUT, "no data from the server for %d ms",
                               c->timeout_ms);
        ssize_t k = recv(c->fd, c->buf + c->buf_len, c->buf_cap - c->buf_len, 0);
        if (k < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return cli_err_set(err, CLI_E_IO, "recv failed: %s", strerror(errno));
        }
        c->buf_len += (size_t)k;
        return (long)k;
    }
}

/* Copies a header value (trimmed) into dst of size cap. */
static void cli__copy_value(char *dst, size_t cap, const char *v, size_t n)
{
    while (n > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

/* Parses status line and headers in buf[0..hdr_len). */
static int cli__parse_head(const char *h, size_t hdr_len, cli_http_resp *r, cli_err *err)
{
    memset(r, 0, sizeof *r);
    r->content_length = -1;
    const char *end = h + hdr_len;
    const char *eol = memchr(h, '\n', hdr_len);
    if (!eol || hdr_len < 12 || memcmp(h, "HTTP/1.", 7) != 0 || h[8] != ' ')
        return cli_err_set(err, CLI_E_PROTO, "the server did not answer with HTTP/1.x");
    int st = 0;
    for (int k = 9; k < 12; k++) {
        if (!isdigit((unsigned char)h[k]))
            return cli_err_set(err, CLI_E_PROTO, "bad HTTP status line");
        st = st * 10 + (h[k] - '0');
    }
    r->status = st;
    const char *rs = h + 12;
    size_t rl = (size_t)(eol - rs);
    cli__copy_value(r->reason, sizeof r->reason, rs, rl && rs[rl - 1] == '\r' ? rl - 1 : rl);

    const char *p = eol + 1;
    while (p < end) {
        const char *le = memchr(p, '\n', (size_t)(end - p));
        if (!le)
            le = end;
        size_t ll = (size_t)(le - p);
        if (ll > 0 && p[ll - 1] == '\r')
            ll--;
        if (ll == 0)
            break;
        const char *colon = memchr(p, ':', ll);
        if (!colon)
            return cli_err_set(err, CLI_E_PROTO, "malformed response header line");
        size_t nl = (size_t)(colon - p);
        const char *v = colon + 1;
        size_t vl = ll - nl - 1;
        if (nl == 14 && strncasecmp(p, "Content-Length", 14) == 0) {
            char tmp[32];
            cli__copy_value(tmp, sizeof tmp, v, vl);
            char *e = NULL;
            errno = 0;
            long long n = strtoll(tmp, &e, 10);
            if (!tmp[0] || *e || n < 0 || errno)
                return cli_err_set(err, CLI_E_PROTO, "bad Content-Length '%s'", tmp);
            r->content_length = n;
        } else if (nl == 17 && strncasecmp(p, "Transfer-Encoding", 17) == 0) {
            char tmp[64];
            cli__copy_value(tmp, sizeof tmp, v, vl);
            if (strcasestr(tmp, "chunked"))
                r->chunked = 1;
        } else if (nl == 12 && strncasecmp(p, "Content-Type", 12) == 0) {
            cli__copy_value(r->content_type, sizeof r->content_type, v, vl);
        } else if (nl == 12 && strncasecmp(p, "X-Request-Id", 12) == 0) {
            cli__copy_value(r->request_id, sizeof r->request_id, v, vl);
        } else if (nl == 11 && strncasecmp(p, "Retry-After", 11) == 0) {
            cli__copy_value(r->retry_after, sizeof r->retry_after, v, vl);
        }
        p = le + 1;
    }
    if (r->chunked)
        r->content_length = -1;  /* RFC 9112: Transfer-Encoding overrides Content-Length */
    return CLI_OK;
}

/* Finds the end of the header block ("\r\n\r\n" or "\n\n"); returns its length or 0. */
static size_t cli__head_end(const char *b, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (b[i] == '\n' && b[i + 1] == '\n')
            return i + 2;
        if (i + 3 < n && b[i] == '\r' && b[i + 1] == '\n' && b[i + 2] == '\r' && b[i + 3] == '\n')
            return i + 4;
    }
    return 0;
}

int cli_http_request(cli_http_conn *c, const cli_url *u, const char *method, const char *path,
                     const char *content_type, const char *body, size_t body_len,
                     const char *const *extra_headers, int timeout_ms, cli_http_resp *resp,
                     cli_err *err)
{
    memset(c, 0, sizeof *c);
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 600000;

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(u->host, u->port, &hints, &res);
    if (gai != 0)
        return cli_err_set(err, CLI_E_CONNECT, "cannot resolve %s: %s", u->host,
                           gai_strerror(gai));
    int why = 0;
    int fd = -1;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next)
        fd = cli__connect_one(ai, c->timeout_ms < 10000 ? c->timeout_ms : 10000, &why);
    freeaddrinfo(res);
    if (fd < 0)
        return cli_err_set(err, CLI_E_CONNECT, "cannot connect to %s:%s: %s%s", u->host, u->port,
                           strerror(why),
                           why == ECONNREFUSED ? " (is claq-server running there?)" : "");
    c->fd = fd;
    c->is_open = 1;

    /* The request head is small and bounded: method, path, a handful of headers. */
    char head[4096];
    int n = snprintf(head, sizeof head,
                     "%s %s%s HTTP/1.1\r\nHost: %s%s%s:%s\r\nUser-Agent: claq-client/0.1\r\n"
                     "Connection: close\r\n",
                     method, u->prefix, path, strchr(u->host, ':') ? "[" : "", u->host,
                     strchr(u->host, ':') ? "]" : "", u->port);
    if (n < 0 || (size_t)n >= sizeof head)
        goto too_long;
    if (body) {
        int k = snprintf(head + n, sizeof head - (size_t)n,
                         "Content-Type: %s\r\nContent-Length: %zu\r\n",
                         content_type ? content_type : "application/json", body_len);
        if (k < 0 || (size_t)k >= sizeof head - (size_t)n)
            goto too_long;
        n += k;
    }
    for (const char *const *h = extra_headers; h && *h; h++) {
        if (strpbrk(*h, "\r\n")) {
            cli_http_close(c);
            return cli_err_set(err, CLI_E_USAGE, "header contains a line break");
        }
        int k = snprintf(head + n, sizeof head - (size_t)n, "%s\r\n", *h);
        if (k < 0 || (size_t)k >= sizeof head - (size_t)n)
            goto too_long;
        n += k;
    }
    if ((size_t)n + 2 >= sizeof head)
        goto too_long;
    memcpy(head + n, "\r\n", 3);
    n += 2;

    int rc = cli__send_all(c, head, (size_t)n, err);
    if (rc == CLI_OK && body && body_len)
        rc = cli__send_all(c, body, body_len, err);
    if (rc != CLI_OK) {
        cli_http_close(c);
        return rc;
    }

    size_t hl = 0;
    while ((hl = cli__head_end(c->buf, c->buf_len)) == 0) {
        long k = cli__recv_more(c, CLI_MAX_HEADER_BYTES, err);
        if (k < 0) {
            cli_http_close(c);
            return (int)k;
        }
        if (k == 0) {
            cli_http_close(c);
            return cli_err_set(err, CLI_E_IO, "%s:%s closed the connection before answering",
                               u->host, u->port);
        }
    }
    rc = cli__parse_head(c->buf, hl, resp, err);
    if (rc != CLI_OK) {
        cli_http_close(c);
        return rc;
    }
    c->buf_off = hl;
    return CLI_OK;

too_long:
    cli_http_close(c);
    return cli_err_set(err, CLI_E_USAGE, "request head too long (path or headers)");
}

int cli_http_read_body(cli_http_conn *c, const cli_http_resp *resp, cli_body_cb cb, void *ctx,
                       cli_err *err)
{
    if (!c->is_open)
        return cli_err_set(err, CLI_E_IO, "connection is closed");
    cli_chunked ch;
    memset(&ch, 0, sizeof ch);
    int64_t left = resp->content_length;  /* -1: until close */
    if (resp->status == 204 || resp->status == 304)
        return CLI_OK;
    for (;;) {
        size_t avail = c->buf_len - c->buf_off;
        if (avail > 0) {
            const char *p = c->buf + c->buf_off;
            int rc;
            if (resp->chunked) {
                rc = cli_chunked_feed(&ch, p, avail, cb, ctx, err);
                c->buf_off += avail;
                if (rc)
                    return rc;
                if (ch.state == CLI_CHUNK_DONE)
                    return CLI_OK;
            } else {
                size_t n = avail;
                if (left >= 0 && (int64_t)n > left)
                    n = (size_t)left;
                c->buf_off += n;
                if (left >= 0)
                    left -= (int64_t)n;
                rc = n ? cb(ctx, p, n) : 0;
                if (rc)
                    return rc;
            }
        }
        if (!resp->chunked && left == 0)
            return CLI_OK;
        c->buf_off = c->buf_len = 0;  /* everything consumed: reuse the buffer from its start */
        size_t limit = c->buf_cap ? c->buf_cap : 16384;
        long k = cli__recv_more(c, limit, err);
        if (k < 0)
            return (int)k;
        if (k == 0) {
            if (!resp->chunked && left < 0)
                return CLI_OK;  /* read-until-close body */
            return cli_err_set(err, CLI_E_IO, "the server closed the connection mid-body");
        }
    }
}

typedef struct cli__acc {
    char *data;      /* owned until handed to the caller */
    size_t len;      /* bytes used */
    size_t cap;      /* bytes allocated */
    size_t max;      /* truncation point */
    int truncated;   /* set when bytes were dropped */
} cli__acc;

static int cli__acc_cb(void *ctx, const char *d, size_t n)
{
    cli__acc *a = ctx;
    if (a->len + n > a->max) {
        n = a->max - a->len;
        a->truncated = 1;
    }
    if (a->len + n + 1 > a->cap) {
        size_t nc = a->cap ? a->cap : 4096;
        while (nc < a->len + n + 1)
            nc *= 2;
        char *nd = realloc(a->data, nc);
        if (!nd)
            return CLI_E_NOMEM;
        a->data = nd;
        a->cap = nc;
    }
    memcpy(a->data + a->len, d, n);
    a->len += n;
    a->data[a->len] = '\0';
    return 0;
}

int cli_http_read_all(cli_http_conn *c, const cli_http_resp *resp, size_t max_bytes,
                      char **out, size_t *out_len, int *truncated, cli_err *err)
{
    cli__acc a = {.max = max_bytes};
    *out = NULL;
    int rc = cli_http_read_body(c, resp, cli__acc_cb, &a, err);
    if (rc == CLI_E_NOMEM)
        cli_err_set(err, rc, "out of memory reading the response body");
    if (rc != CLI_OK) {
        free(a.data);
        return rc;
    }
    if (!a.data) {
        a.data = calloc(1, 1);
        if (!a.data)
            return cli_err_set(err, CLI_E_NOMEM, "out of memory");
    }
    *out = a.data;
    if (out_len)
        *out_len = a.len;
    if (truncated)
        *truncated = a.truncated;
    return CLI_OK;
}

void cli_http_close(cli_http_conn *c)
{
    if (c->is_open) {
        close(c->fd);
        c->is_open = 0;
    }
    free(c->buf);
    c->buf = NULL;
    c->buf_len = c->buf_off = c->buf_cap = 0;
}
