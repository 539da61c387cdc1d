/* srv_errors.h — the one builder of error bodies ({"error":{"message","type","param","code"}},
 * OpenAI's shape, used for protocol errors by the HTTP layer and for everything else by the
 * API) and of plain JSON responses. Sits on srv_http.h; loop thread only. */
#ifndef SRV_ERRORS_H
#define SRV_ERRORS_H

#include <cjson/cJSON.h>

#include "srv_http.h"

/* The body alone, appended to b (an SSE error event carries it too); param/code may be NULL
 * (null). */
void srv_error_body(srv_buf *b, const char *type, const char *param, const char *code,
                    const char *msg);
/* param/code may be NULL (null). */
void srv_resp_error(srv_resp *r, int status, const char *type, const char *param,
                    const char *code, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* The same with extra header lines ("Name: v\r\n...", e.g. Retry-After). */
void srv_resp_error_h(srv_resp *r, int status, const char *extra_headers, const char *type,
                      const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
/* 400 invalid_request_error naming param. */
void srv_resp_bad(srv_resp *r, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Serialises obj (borrowed) as the whole response. */
void srv_resp_json(srv_resp *r, int status, const cJSON *obj, const char *extra_headers);

#endif
