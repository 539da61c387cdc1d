/* srv_log.c — JSON lines on stderr (server events and the access log). Messages are escaped, so
 * client-controlled text (request ids are already sanitised) cannot forge lines. Loop or main
 * thread; one fputs per line so lines do not interleave. */
#include "srv_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "srv_http.h"

static void log_ts(srv_buf *b)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char t[64];
    strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%S", &tm);
    srv_buf_printf(b, "{\"ts\":\"%s.%03ldZ\"", t, ts.tv_nsec / 1000000);
}

void srv_log(const char *level, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    srv_buf b = {0};
    log_ts(&b);
    srv_buf_printf(&b, ",\"level\":\"%s\",\"msg\":", level);
    srv_buf_json_str(&b, msg, strlen(msg));
    srv_buf_puts(&b, "}\n");
    if (b.p)
        fputs(b.p, stderr);
    fflush(stderr);
    srv_buf_free(&b);
}

static void log_access(const srv_resp *r, int abandoned)
{
    double total_ms = (double)(uv_hrtime() - r->t_start) * 1e-6;
    srv_buf b = {0};
    log_ts(&b);
    srv_buf_puts(&b, ",\"level\":\"info\",\"msg\":\"access\",\"request_id\":");
    srv_buf_json_str(&b, r->request_id, strlen(r->request_id));
    srv_buf_puts(&b, ",\"route\":");
    srv_buf_json_str(&b, r->route, strlen(r->route));
    srv_buf_printf(&b, ",\"status\":%d,\"prompt_tokens\":%d,\"completion_tokens\":%d",
                   abandoned && !r->status ? 499 : r->status, r->prompt_tokens,
                   r->completion_tokens);
    if (abandoned)
        srv_buf_puts(&b, ",\"client_gone\":true");
    if (r->ttft_s >= 0)
        srv_buf_printf(&b, ",\"ttft_ms\":%.3f", r->ttft_s * 1e3);
    else
        srv_buf_puts(&b, ",\"ttft_ms\":null");
    srv_buf_printf(&b, ",\"total_ms\":%.3f}\n", total_ms);
    if (b.p)
        fputs(b.p, stderr);
    fflush(stderr);
    srv_buf_free(&b);
}

void srv_log_access(const srv_resp *r) { log_access(r, 0); }

void srv_log_access_abandoned(const srv_resp *r) { log_access(r, 1); }
