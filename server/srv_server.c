/* srv_server.c — the server's lifetime on the loop: start (listener first, so /health answers
 * 503 while the scheduler loads the model), the scheduler's wake-up (drains the whole outbox:
 * uv_async_send coalesces), the sweep timer, SIGTERM/SIGINT drain, and the ordered shutdown:
 * stop accepting, finish or cancel tasks, join the scheduler, close every handle. Loop thread
 * only. Does not parse HTTP (srv_http.c) or build responses (srv_api_*.c). */
#include "srv_server.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "srv_api.h"
#include "srv_gen.h"
#include "srv_log.h"

#define SWEEP_MS 100

static void final_shutdown(srv_server *s);

/* ---- HTTP hooks ---- */

static void http_on_request(void *ctx, srv_resp *r, const srv_request *req)
{
    srv_route(ctx, r, req);
}

/* A response went out in full: counted, and logged (--access-log). */
static void http_on_response_sent(void *ctx, const srv_resp *r)
{
    srv_server *s = ctx;
    s->metrics.requests_total++;
    if (r->status >= 100 && r->status < 600)
        s->metrics.responses_by_class[r->status / 100]++;
    /* every answered generation: one that made tokens, or one that read a prompt and made
     * none (max_tokens 0 scoring, embeddings) */
    if (r->t_start && (r->ttft_s >= 0 || r->prompt_tokens > 0))
        srv_hist_observe(&s->metrics.e2e, (double)(uv_hrtime() - r->t_start) * 1e-9);
    if (s->cfg->access_log)
        srv_log_access(r);
}

/* A response its client will not get in full: counted apart, and logged with the status it
 * began with (499, nginx's "client closed request", when none went out yet). */
static void http_on_response_abandoned(void *ctx, const srv_resp *r)
{
    srv_server *s = ctx;
    s->metrics.requests_abandoned++;
    if (s->cfg->access_log)
        srv_log_access_abandoned(r);
}

static void http_on_progress(void *ctx)
{
    srv_server_check_drained(ctx);
}

static void on_wake(uv_async_t *a)
{
    srv_server *s = a->data;
    srv_event *ev = NULL;
    int n = 0;
    srv_sched_drain(&s->sched, &ev, &n);
    for (int i = 0; i < n; i++) {
        if (ev[i].kind == SRV_EV_READY) {
            s->model = s->sched.model;
            s->tok = s->sched.tok;
            s->n_ctx = s->sched.n_ctx;
            s->ready = 1;
            srv_chat_setup(s);
            int want = strcmp(s->cfg->prefill_precision, "bf16") == 0;
            srv_log("info", "model loaded: %s (%s, %d layers, dim %d, vocab %d); context %d, "
                    "KV cache %lld tokens (%s), max batch %d, prefill %s", s->model->path,
                    s->model->quant_desc, s->model->cfg.n_layers, s->model->cfg.dim,
                    s->model->cfg.vocab_size, s->n_ctx, (long long)s->sched.kv_tokens,
                    kern_dtype_name(s->sched.kv_dtype), s->cfg->max_batch,
                    !want                  ? "fp32"
                    : s->sched.prefill_bf16 ? "bf16"
                    : !kern_cpu_bf16(&s->sched.be)
                        ? "fp32 (bf16 asked; no AVX512_BF16 on this CPU or CLAQ_ISA caps it)"
                        : "fp32 (bf16 asked; the model has no packed linears)");
        } else if (ev[i].kind == SRV_EV_LOAD_FAILED) {
            s->load_failed = 1;
            s->exit_code = 1;
            srv_log("error", "could not load the model: %s", ev[i].msg);
        }
    }
    srv_gen_on_events(s, ev, n);
    for (int i = 0; i < n; i++)
        srv_event_free(&ev[i]);
    free(ev);
    if (s->load_failed && !s->stopping)
        final_shutdown(s);
}

static void on_sweep(uv_timer_t *t)
{
    srv_server *s = t->data;
    srv_http_sweep(&s->http);
    srv_server_check_drained(s);
}

/* After the drain deadline: how long the cancelled generations' answers get to reach their
 * clients before the connections close anyway (a client that does not read). */
#define SRV_DRAIN_GRACE_MS 2000

/* The drain deadline: the generations still running are cancelled, so each client gets an
 * answer (503 server_shutting_down, or a stream's in-band error and [DONE]) rather than a
 * closed socket; the server stops once they are written (srv_server_check_drained), or after
 * SRV_DRAIN_GRACE_MS. */
static void on_drain_deadline(uv_timer_t *t)
{
    srv_server *s = t->data;
    /* a request still being tokenized is answered 503 when its job returns (job_finish): it
     * gets the grace period like a cancelled generation */
    if (s->drain_cancelled || (s->tasks_n == 0 && s->metrics.tokenize_jobs == 0)) {
        if (s->drain_cancelled)
            srv_log("warn", "drain grace passed: closing %d generation(s)", s->n_gens);
        final_shutdown(s);
        return;
    }
    srv_log("warn", "drain deadline passed: cancelling %d generation(s)", s->n_gens);
    uint64_t ids[256];
    int n = 0;
    for (int i = 0; i < s->tasks_cap; i++) {
        if (!s->tasks[i].id)
            continue;
        ids[n++] = s->tasks[i].id;
        if (n == (int)(sizeof ids / sizeof ids[0])) {
            srv_sched_cancel(&s->sched, ids, n);
            n = 0;
        }
    }
    srv_sched_cancel(&s->sched, ids, n);
    s->drain_cancelled = 1;
    uv_timer_start(&s->drain, on_drain_deadline, SRV_DRAIN_GRACE_MS, 0);
}

static void on_signal(uv_signal_t *h, int signum)
{
    srv_server *s = h->data;
    if (s->draining) {
        srv_log("warn", "second signal %d: stopping now", signum);
        final_shutdown(s);
        return;
    }
    srv_log("info", "signal %d: draining (up to %.0f s)", signum, s->cfg->drain_timeout_s);
    srv_server_drain(s);
}

void srv_server_drain(srv_server *s)
{
    if (s->draining || s->stopping)
        return;
    s->draining = 1;
    s->http.draining = 1;
    srv_http_stop_listening(&s->http);
    uv_timer_start(&s->drain, on_drain_deadline, (uint64_t)(s->cfg->drain_timeout_s * 1000), 0);
    srv_server_check_drained(s);
}

void srv_server_check_drained(srv_server *s)
{
    if (!s->draining || s->stopping || s->n_gens > 0)
        return;
    if (!srv_http_idle(&s->http))
        return;   /* a request still arriving gets its answer (503) too */
    srv_log("info", "drained: every request answered");
    final_shutdown(s);
}

static void close_if(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Joins the scheduler (which frees the model and tokenizer) and closes every handle; uv_run
 * then returns. Runs once no tokenization job can still read the tokenizer. */
static void shutdown_engine(srv_server *s)
{
    srv_sched_stop(&s->sched);
    s->model = NULL;
    s->tok = NULL;
    s->ready = 0;
    if (s->handles_open) {
        close_if((uv_handle_t *)&s->wake);
        close_if((uv_handle_t *)&s->sig_term);
        close_if((uv_handle_t *)&s->sig_int);
        close_if((uv_handle_t *)&s->sweep);
        close_if((uv_handle_t *)&s->drain);
        s->handles_open = 0;
        /* Closing the signal handles restored the default action; a late SIGTERM (a
         * supervisor repeating itself) must not turn this orderly exit into a kill. */
        signal(SIGTERM, SIG_IGN);
        signal(SIGINT, SIG_IGN);
    }
}

/* Stop accepting, close every connection (cancelling their tasks), then shutdown_engine, at
 * once or when the last tokenization job returns. */
static void final_shutdown(srv_server *s)
{
    if (s->stopping)
        return;
    s->stopping = 1;
    srv_http_stop_listening(&s->http);
    srv_http_close_all(&s->http);
    if (s->metrics.tokenize_jobs == 0)
        shutdown_engine(s);
    else
        srv_log("info", "waiting for %d tokenization job(s) to return", s->metrics.tokenize_jobs);
}

void srv_server_job_done(srv_server *s)
{
    if (--s->metrics.tokenize_jobs == 0 && s->stopping)
        shutdown_engine(s);
}

/* The model's id in the API: --served-model-name as given (an HF-style "org/name" included),
 * or else the last part of the model path. Kept printable and quote-free either way: it goes
 * into JSON, headers and metric labels. */
static void model_id(const char *served, const char *path, char *out, size_t cap)
{
    char tmp[SRV_CFG_STR];
    const char *b = served;
    if (!b[0]) {
        snprintf(tmp, sizeof(tmp), "%s", path);
        size_t n = strlen(tmp);
        while (n > 1 && tmp[n - 1] == '/')
            tmp[--n] = '\0';
        b = strrchr(tmp, '/');
        b = b ? b + 1 : tmp;
    }
    size_t o = 0;
    for (; *b && o + 1 < cap; b++)
        out[o++] = (*b > 0x20 && *b < 0x7F && *b != '"' && *b != '\\') ? *b : '_';
    out[o] = '\0';
}

int srv_server_start(srv_server *s, const srv_config *cfg, uv_loop_t *loop, char *err,
                     size_t cap)
{
    s->cfg = cfg;
    s->loop = loop;
    srv_metrics_init(&s->metrics);
    s->http.cfg = cfg;
    s->http.loop = loop;
    s->http.hooks = (srv_http_hooks){.ctx = s, .on_request = http_on_request,
                                     .on_response_sent = http_on_response_sent,
                                     .on_response_abandoned = http_on_response_abandoned,
                                     .on_progress = http_on_progress};
    model_id(cfg->served_name, cfg->model, s->model_id, sizeof(s->model_id));
    s->created = (int64_t)time(NULL);
    uv_async_init(loop, &s->wake, on_wake);
    s->wake.data = s;
    uv_signal_init(loop, &s->sig_term);
    uv_signal_init(loop, &s->sig_int);
    s->sig_term.data = s->sig_int.data = s;
    uv_timer_init(loop, &s->sweep);
    uv_timer_init(loop, &s->drain);
    s->sweep.data = s->drain.data = s;
    s->handles_open = 1;
    if (srv_chat_load_file(s, err, cap) != 0)
        return -1;
    uv_signal_start(&s->sig_term, on_signal, SIGTERM);
    uv_signal_start(&s->sig_int, on_signal, SIGINT);
    uv_timer_start(&s->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    if (srv_http_listen(&s->http, err, cap) != 0)
        return -1;
    srv_log("info", "listening on http://%s%s%s:%d (model id '%s')",
            strchr(s->http.host, ':') ? "[" : "", s->http.host,
            strchr(s->http.host, ':') ? "]" : "", s->http.port,
            s->model_id);
    if (srv_sched_start(&s->sched, cfg, &s->wake) != 0) {
        snprintf(err, cap, "could not start the scheduler thread");
        return -1;
    }
    return 0;
}

void srv_server_free(srv_server *s)
{
    final_shutdown(s);
    srv_chat_free(s);
    free(s->tasks);
    s->tasks = NULL;
    s->tasks_cap = s->tasks_n = 0;
}
