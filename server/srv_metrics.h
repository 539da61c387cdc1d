/* srv_metrics.h — Prometheus counters, gauges and latency histograms of the server (TTFT,
 * inter-token latency, end-to-end latency, rejections), rendered with the scheduler's gauges and
 * token counters (srv_sched_stats) as text for GET /metrics. Loop thread only. */
#ifndef SRV_METRICS_H
#define SRV_METRICS_H

#include <stdint.h>

#include "srv_buf.h"
#include "srv_sched.h"

#define SRV_HIST_BUCKETS 16

typedef struct srv_hist {
    uint64_t counts[SRV_HIST_BUCKETS + 1];  /* per bucket, the last one is +Inf */
    double sum;
    uint64_t count;
} srv_hist;

typedef struct srv_metrics {
    uint64_t requests_total;        /* HTTP requests answered */
    uint64_t requests_abandoned;    /* HTTP requests whose connection closed before the answer */
    uint64_t responses_by_class[6]; /* [status / 100] */
    uint64_t rejections;            /* 429s from the bounded queue */
    int tokenize_jobs;              /* tokenization jobs on the threadpool (srv_tokjob.c); the
                                       shutdown waits for 0, as they read the tokenizer */
    srv_hist ttft, itl, e2e;        /* seconds */
} srv_metrics;

void srv_metrics_init(srv_metrics *m);
void srv_hist_observe(srv_hist *h, double seconds);
/* Renders everything; model names the model label. Returns 0 or -1 (out of memory). */
int srv_metrics_render(const srv_metrics *m, const srv_sched_stats *st, int ready,
                       const char *model, srv_buf *out);

#endif
