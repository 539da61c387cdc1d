/* srv_errors.c — OpenAI-shaped error responses ({"error":{"message","type","param","code"}},
 * string codes) and plain JSON responses (srv_errors.h), for the HTTP layer's protocol errors
 * and the API's alike. Loop thread only. Decides no status itself: callers
 * pick it (4xx for anything the client can fix, never 500 for bad input). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srv_errors.h"
#include "srv_json.h"

void srv_resp_json(srv_resp *r, int status, const cJSON *obj, const char *extra_headers)
{
    size_t len = 0;
    char *txt = srv_json_print(obj, &len);
    if (!txt) {
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":"
                                  "\"server_error\",\"param\":null,\"code\":\"out_of_memory\"}}";
        srv_resp_send(r, 503, "application/json", oom, sizeof(oom) - 1, NULL);
        return;
    }
    srv_resp_send(r, status, "application/json", txt, len, extra_headers);
    free(txt);
}

void srv_error_body(srv_buf *b, const char *type, const char *param, const char *code,
                    const char *msg)
{
    srv_buf_puts(b, "{\"error\":{\"message\":");
    srv_buf_json_str(b, msg, strlen(msg));
    srv_buf_puts(b, ",\"type\":");
    srv_buf_json_str(b, type, strlen(type));
    srv_buf_puts(b, ",\"param\":");
    if (param)
        srv_buf_json_str(b, param, strlen(param));
    else
        srv_buf_puts(b, "null");
    srv_buf_puts(b, ",\"code\":");
    if (code)
        srv_buf_json_str(b, code, strlen(code));
    else
        srv_buf_puts(b, "null");
    srv_buf_puts(b, "}}");
}

static void resp_verror(srv_resp *r, int status, const char *extra, const char *type,
                        const char *param, const char *code, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    srv_buf b = {0};
    srv_error_body(&b, type, param, code, msg);
    srv_resp_send(r, status, "application/json", b.p ? b.p : "{}", b.p ? b.len : 2, extra);
    srv_buf_free(&b);
}

void srv_resp_error(srv_resp *r, int status, const char *type, const char *param,
                    const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    resp_verror(r, status, NULL, type, param, code, fmt, ap);
    va_end(ap);
}

void srv_resp_error_h(srv_resp *r, int status, const char *extra_headers, const char *type,
                      const char *param, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    resp_verror(r, status, extra_headers, type, param, code, fmt, ap);
    va_end(ap);
}

void srv_resp_bad(srv_resp *r, const char *param, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    resp_verror(r, 400, NULL, "invalid_request_error", param, "invalid_request_error", fmt, ap);
    va_end(ap);
}
