/* srv_metrics.c — Prometheus text exposition of srv_metrics. Buckets are fixed (seconds) and
 * shared by the three histograms. Loop thread only. */
#include "srv_metrics.h"

#include <string.h>

static const double srv__buckets[SRV_HIST_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
};

void srv_metrics_init(srv_metrics *m)
{
    memset(m, 0, sizeof(*m));
}

void srv_hist_observe(srv_hist *h, double v)
{
    int i = 0;
    while (i < SRV_HIST_BUCKETS && v > srv__buckets[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

static int hist_render(srv_buf *o, const char *name, const char *help, const srv_hist *h,
                       const char *model)
{
    int rc = srv_buf_printf(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < SRV_HIST_BUCKETS && rc == 0; i++) {
        cum += h->counts[i];
        rc = srv_buf_printf(o, "%s_bucket{model_name=\"%s\",le=\"%g\"} %llu\n", name, model,
                            srv__buckets[i], (unsigned long long)cum);
    }
    cum += h->counts[SRV_HIST_BUCKETS];
    if (rc == 0)
        rc = srv_buf_printf(o, "%s_bucket{model_name=\"%s\",le=\"+Inf\"} %llu\n"
                               "%s_sum{model_name=\"%s\"} %.6f\n%s_count{model_name=\"%s\"} %llu\n",
                            name, model, (unsigned long long)cum, name, model, h->sum, name, model,
                            (unsigned long long)h->count);
    return rc;
}

static int counter(srv_buf *o, const char *name, const char *type, const char *help,
                   const char *model, double v)
{
    return srv_buf_printf(o, "# HELP %s %s\n# TYPE %s %s\n%s{model_name=\"%s\"} %.17g\n", name,
                          help, name, type, name, model, v);
}

int srv_metrics_render(const srv_metrics *m, const srv_sched_stats *st, int ready,
                       const char *model, srv_buf *o)
{
    int rc = 0;
    double kv_ratio = st->kv_total_tokens > 0
                          ? (double)st->kv_used_tokens / (double)st->kv_total_tokens : 0.0;
    rc |= counter(o, "claq_ready", "gauge", "1 when the model is loaded", model, ready);
    rc |= counter(o, "claq_num_requests_running", "gauge", "sequences in the running batch",
                  model, st->running);
    rc |= counter(o, "claq_num_requests_waiting", "gauge", "sequences waiting for admission",
                  model, st->waiting);
    rc |= counter(o, "claq_tokenize_jobs", "gauge",
                  "requests whose prompts are being tokenized on a worker thread", model,
                  m->tokenize_jobs);
    rc |= counter(o, "claq_kv_cache_usage_ratio", "gauge", "fraction of KV cache blocks in use",
                  model, kv_ratio);
    rc |= counter(o, "claq_kv_cache_tokens", "gauge", "positions the KV cache holds", model,
                  st->kv_total_tokens);
    rc |= counter(o, "claq_engine_steps_total", "counter", "engine steps run", model,
                  (double)st->steps);
    rc |= counter(o, "claq_http_requests_total", "counter", "HTTP requests answered", model,
                  (double)m->requests_total);
    rc |= counter(o, "claq_http_requests_abandoned_total", "counter",
                  "HTTP requests whose connection closed before their answer was written", model,
                  (double)m->requests_abandoned);
    rc |= srv_buf_printf(o, "# HELP claq_http_responses_total HTTP responses by status class\n"
                            "# TYPE claq_http_responses_total counter\n");
    for (int c = 1; c < 6; c++)
        rc |= srv_buf_printf(o, "claq_http_responses_total{model_name=\"%s\",code=\"%dxx\"} %llu\n",
                             model, c, (unsigned long long)m->responses_by_class[c]);
    rc |= counter(o, "claq_prompt_tokens_total", "counter", "prompt tokens processed", model,
                  (double)st->prompt_tokens);
    rc |= counter(o, "claq_generation_tokens_total", "counter", "tokens generated", model,
                  (double)st->generation_tokens);
    rc |= counter(o, "claq_admission_rejections_total", "counter",
                  "requests refused with 429 (queue full)", model, (double)m->rejections);
    rc |= counter(o, "claq_requests_cancelled_total", "counter",
                  "sequences cancelled (client gone, shutdown)", model, (double)st->cancelled);
    rc |= counter(o, "claq_requests_timeout_total", "counter",
                  "sequences ended by the request timeout", model, (double)st->timeouts);
    rc |= counter(o, "claq_preemptions_total", "counter",
                  "running sequences sent back to wait when KV blocks ran out (recomputed later)",
                  model, (double)st->preemptions);
    rc |= counter(o, "claq_prefix_cache_queries_total", "counter",
                  "positions looked up in the prefix cache at admission (0 when it is off)",
                  model, (double)st->prefix_queries);
    rc |= counter(o, "claq_prefix_cache_hits_total", "counter",
                  "of those, positions whose K/V were found cached and reused", model,
                  (double)st->prefix_hits);
    rc |= counter(o, "claq_prefix_cache_blocks", "gauge",
                  "KV blocks in the prefix cache's index (in use or idle)", model,
                  st->prefix_blocks);
    const char *dirs[3] = {"h2d", "d2h", "h2d_weights"};
    const uint64_t bytes[3] = {st->xfer.h2d_bytes, st->xfer.d2h_bytes, st->xfer.weight_h2d_bytes};
    rc |= srv_buf_printf(o, "# HELP claq_device_copy_bytes_total bytes the compute backend copied "
                            "between host and device (0 on the CPU backend)\n"
                            "# TYPE claq_device_copy_bytes_total counter\n");
    for (int i = 0; i < 3; i++)
        rc |= srv_buf_printf(o, "claq_device_copy_bytes_total{model_name=\"%s\",direction=\"%s\"} "
                                "%llu\n", model, dirs[i], (unsigned long long)bytes[i]);
    rc |= counter(o, "claq_device_graph_steps_total", "counter",
                  "engine steps launched as one recorded CUDA graph (0 unless CLAQ_CUDA_GRAPHS=1 "
                  "on the CUDA backend)", model, (double)st->graphs.launched);
    rc |= counter(o, "claq_device_graph_builds_total", "counter",
                  "executable graphs built (a new batch size, or the step's kernels changed); the "
                  "other graph steps updated a kept one in place", model,
                  (double)st->graphs.instantiated);
    rc |= counter(o, "claq_device_graph_fallbacks_total", "counter",
                  "recorded steps that could not be launched as a graph and ran op by op", model,
                  (double)st->graphs.fallbacks);
    rc |= srv_buf_printf(o, "# HELP claq_request_success_total finished sequences by reason\n"
                            "# TYPE claq_request_success_total counter\n"
                            "claq_request_success_total{model_name=\"%s\",finished_reason=\"stop\"} %llu\n"
                            "claq_request_success_total{model_name=\"%s\",finished_reason=\"length\"} %llu\n",
                         model, (unsigned long long)st->finished_stop, model,
                         (unsigned long long)st->finished_length);
    rc |= hist_render(o, "claq_time_to_first_token_seconds", "time to first token", &m->ttft,
                      model);
    rc |= hist_render(o, "claq_inter_token_latency_seconds", "time between tokens", &m->itl,
                      model);
    rc |= hist_render(o, "claq_e2e_request_latency_seconds", "request latency, first byte to end",
                      &m->e2e, model);
    return rc ? -1 : 0;
}
