/* srv_log.h — structured logging on stderr: one JSON object per line, for server events and for
 * the access log (one line per request). Below HTTP (which logs through it); srv_log.c reads
 * the response fields of srv_http.h. Loop thread and main thread; never the scheduler. */
#ifndef SRV_LOG_H
#define SRV_LOG_H

struct srv_resp;   /* srv_http.h */

void srv_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* {"ts","level":"info","msg":"access","request_id","route","status","prompt_tokens",
 *  "completion_tokens","ttft_ms","total_ms"} */
void srv_log_access(const struct srv_resp *r);
/* The same for a response its client left before it was written: "client_gone": true, and the
 * status it began with (499 when none went out). */
void srv_log_access_abandoned(const struct srv_resp *r);

#endif
