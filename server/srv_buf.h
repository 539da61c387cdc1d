/* srv_buf.h — a growable byte buffer (kilo's abuf, but failures are reported, never dropped)
 * and JSON-string escaping into it. No threads of its own: whoever owns a buffer uses it. */
#ifndef SRV_BUF_H
#define SRV_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct srv_buf {
    char *p;        /* owned (malloc), NUL-terminated when non-NULL */
    size_t len;
    size_t cap;
} srv_buf;

/* Each returns 0, or -1 on allocation failure (the buffer is unchanged). */
int srv_buf_append(srv_buf *b, const void *data, size_t len);
int srv_buf_puts(srv_buf *b, const char *s);
int srv_buf_printf(srv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal with quotes; invalid UTF-8 becomes U+FFFD. */
int srv_buf_json_str(srv_buf *b, const char *s, size_t len);
/* Hands the memory over: returns p (caller frees) and leaves b empty. */
char *srv_buf_take(srv_buf *b, size_t *len);
void srv_buf_free(srv_buf *b);   /* safe on zeroed, idempotent */

/* 1 when s[0..len) is valid UTF-8 (no overlongs, no surrogates). */
int srv_utf8_valid(const char *s, size_t len);
/* Copies s[0..len) into out (NUL-terminated, at most cap-1 bytes, whole characters only) with
 * each invalid byte replaced by U+FFFD; returns the bytes written. */
size_t srv_utf8_repair(const char *s, size_t len, char *out, size_t cap);

#endif
