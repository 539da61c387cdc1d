/* srv_buf.c — growable byte buffer and JSON string escaping. Does no I/O. Any thread (a buffer
 * belongs to one thread at a time). */
#include "srv_buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int buf_reserve(srv_buf *b, size_t extra)
{
    if (extra > ((size_t)1 << 40) || b->len + extra + 1 <= b->cap)
        return extra > ((size_t)1 << 40) ? -1 : 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int srv_buf_append(srv_buf *b, const void *data, size_t len)
{
    if (buf_reserve(b, len) != 0)
        return -1;
    if (len)
        memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
    return 0;
}

int srv_buf_puts(srv_buf *b, const char *s)
{
    return srv_buf_append(b, s, strlen(s));
}

int srv_buf_printf(srv_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[512];
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n < sizeof(small))
        return srv_buf_append(b, small, (size_t)n);
    if (buf_reserve(b, (size_t)n) != 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned min;
    if ((c & 0xE0) == 0xC0) { n = 2; min = 0x80; c &= 0x1F; }
    else if ((c & 0xF0) == 0xE0) { n = 3; min = 0x800; c &= 0x0F; }
    else if ((c & 0xF8) == 0xF0) { n = 4; min = 0x10000; c &= 0x07; }
    else return 0;
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    return n;
}

int srv_utf8_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq(u + i, len - i);
        if (!n)
            return 0;
        i += n;
    }
    return 1;
}

size_t srv_utf8_repair(const char *s, size_t len, char *out, size_t cap)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0;
    if (cap == 0)
        return 0;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq(u + i, len - i);
        const char *src = s + i;
        size_t w = n;
        if (!n) {
            src = "\xEF\xBF\xBD";
            w = 3;
            n = 1;
        }
        if (o + w + 1 > cap)
            break;
        memcpy(out + o, src, w);
        o += w;
        i += n;
    }
    out[o] = '\0';
    return o;
}

int srv_buf_json_str(srv_buf *b, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    if (buf_reserve(b, len + 2) != 0)
        return -1;
    int rc = srv_buf_append(b, "\"", 1);
    size_t run = 0;   /* start of the pending run of bytes copied as they are */
    for (size_t i = 0; i < len && rc == 0;) {
        unsigned c = u[i];
        const char *esc = NULL;
        char tmp[8];
        size_t n = 1;
        if (c == '"') esc = "\\\"";
        else if (c == '\\') esc = "\\\\";
        else if (c == '\n') esc = "\\n";
        else if (c == '\r') esc = "\\r";
        else if (c == '\t') esc = "\\t";
        else if (c < 0x20 || c == 0x7F) {
            snprintf(tmp, sizeof(tmp), "\\u%04x", c);
            esc = tmp;
        } else if (c >= 0x80) {
            n = utf8_seq(u + i, len - i);
            if (!n) {
                esc = "\xEF\xBF\xBD";
                n = 1;
            }
        }
        if (esc) {
            rc = srv_buf_append(b, s + run, i - run);
            if (rc == 0)
                rc = srv_buf_puts(b, esc);
            run = i + n;
        }
        i += n;
    }
    if (rc == 0)
        rc = srv_buf_append(b, s + run, len - run);
    if (rc == 0)
        rc = srv_buf_append(b, "\"", 1);
    return rc;
}

char *srv_buf_take(srv_buf *b, size_t *len)
{
    char *p = b->p;
    if (len)
        *len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

void srv_buf_free(srv_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}
