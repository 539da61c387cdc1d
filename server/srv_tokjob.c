/* srv_tokjob.c — srv_encode (text to token ids, any thread) and srv_gen_submit: tokenizes a
 * generation request's text prompts, then starts the generation. Up to --tokenize-inline-bytes
 * of text is tokenized at once on the loop thread; more (64 context-sized prompts are
 * megabytes, seconds of BPE) goes to the libuv threadpool so the loop keeps serving every other
 * connection meanwhile. A queued job belongs to itself: its response slot only points at it,
 * and a client that leaves unhooks it (job_orphan, the slot's release); the job then frees
 * itself when the work returns. The server counts the jobs (the claq_tokenize_jobs gauge) and
 * waits for none before it frees the tokenizer. Loop thread, except job_work. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srv_gen.h"
#include "srv_server.h"

struct srv_tokjob {
    uv_work_t work;                 /* work.data = this job */
    srv_server *srv;                /* borrowed */
    srv_resp *resp;                 /* borrowed; NULL once the response slot went away */
    const eng_tokenizer *tok;       /* borrowed: the scheduler's, freed only when no job runs */
    srv_gen_kind kind;
    srv_gen_params p;               /* owned (bias); p.stops point into stop_text */
    char *stop_text[ENG_MAX_STOPS]; /* owned copies of the stop strings */
    srv_gen_prompt *pr;             /* [n_prompts]; owned */
    int n_prompts;
    int32_t stop_ids[SRV_MAX_STOP_IDS];
    int n_stop_ids;
    int rc;                         /* 0, or the ENG_E_* of the first prompt that failed */
};

int srv_encode(const eng_tokenizer *tok, const char *text, size_t len, int add_bos,
               int parse_special, const size_t *plain, int n_plain, int32_t **ids, int *n)
{
    size_t cap = len + 8, got = 0;
    *ids = NULL;
    *n = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        int32_t *buf = malloc(cap * sizeof(int32_t));
        if (!buf)
            return ENG_E_NOMEM;
        int rc = parse_special && n_plain > 0
                     ? eng_tokenizer_encode_plain(tok, text, len, add_bos, plain,
                                                  (size_t)n_plain, buf, cap, &got, NULL)
                     : eng_tokenizer_encode(tok, text, len, add_bos, parse_special, buf, cap,
                                            &got, NULL);
        if (rc != 0) {
            free(buf);
            return rc;
        }
        if (got <= cap) {
            *ids = buf;
            *n = (int)got;
            return 0;
        }
        free(buf);
        cap = got;
    }
    return ENG_E_RANGE;
}

static void job_free(srv_tokjob *j)
{
    for (int i = 0; i < ENG_MAX_STOPS; i++)
        free(j->stop_text[i]);
    srv_gen_prompts_free(j->pr, j->n_prompts);
    srv_gen_params_free(&j->p);
    free(j);
}

/* Tokenizes every prompt without ids. Touches only the job and the read-only tokenizer. */
static void job_encode(srv_tokjob *j)
{
    int bos = eng_tokenizer_bos(j->tok);
    for (int i = 0; i < j->n_prompts && j->rc == 0; i++) {
        srv_gen_prompt *pr = &j->pr[i];
        if (pr->ids)
            continue;
        size_t from = pr->enc_from < pr->text_len ? pr->enc_from : pr->text_len;
        j->rc = srv_encode(j->tok, pr->text ? pr->text + from : "", pr->text_len - from,
                           !pr->no_bos,
                           pr->enc_special, pr->plain, pr->n_plain, &pr->ids, &pr->n);
        /* the BOS the encoder added is not part of the echoed text (nor of its logprobs) */
        if (j->rc == 0 && j->kind == SRV_GEN_COMPLETION)
            pr->echo_from = pr->n > 0 && bos >= 0 && pr->ids[0] == bos ? 1 : 0;
    }
}

/* Answers the response (error or generation start) if it is still there. */
static void job_finish(srv_tokjob *j)
{
    srv_resp *r = j->resp;
    if (!r)
        return;
    srv_resp_set_owner(r, NULL, NULL);
    j->resp = NULL;
    if (j->srv->drain_cancelled)   /* tokenized after the drain deadline: nobody would cancel it */
        srv_resp_error(r, 503, "server_error", NULL, "server_shutting_down",
                       "the server is shutting down");
    else if (j->rc == ENG_E_NOMEM)
        srv_resp_error(r, 503, "server_error", NULL, "out_of_memory", "out of memory");
    else if (j->rc == ENG_E_FULL)   /* the threadpool dropped the job (never asked for today) */
        srv_resp_error(r, 503, "server_error", NULL, "server_busy", "tokenization was cancelled");
    else if (j->rc != 0)
        srv_resp_bad(r, j->kind == SRV_GEN_CHAT    ? "messages"
                        : j->kind == SRV_GEN_EMBED ? "input"
                                                   : "prompt",
                     "the %s could not be tokenized: %s",
                     j->kind == SRV_GEN_CHAT ? "rendered prompt" : "prompt", eng_strerror(j->rc));
    else
        srv_gen_start(j->srv, r, j->kind, &j->p, j->pr, j->n_prompts, j->stop_ids,
                      j->n_stop_ids);
}

static void job_work(uv_work_t *w)
{
    job_encode(w->data);
}

static void job_after(uv_work_t *w, int status)
{
    srv_tokjob *j = w->data;
    srv_server *s = j->srv;
    if (status != 0 && j->rc == 0)
        j->rc = ENG_E_FULL;
    job_finish(j);
    job_free(j);
    srv_server_job_done(s);
}

/* The response slot of a queued job is going away (srv_resp_release_fn): the job frees itself
 * when its work ends. */
static void job_orphan(srv_resp *r, void *owner)
{
    (void)r;
    srv_tokjob *j = owner;
    j->resp = NULL;
    /* not started yet: dropped (job_after still runs, with UV_ECANCELED); running: finishes */
    (void)uv_cancel((uv_req_t *)&j->work);
}

void srv_gen_submit(srv_server *s, srv_resp *r, srv_gen_kind kind, srv_gen_params *p,
                    srv_gen_prompt *prompts, int n_prompts, const int32_t *stop_ids,
                    int n_stop_ids)
{
    srv_tokjob *j = calloc(1, sizeof(*j));
    if (!j) {
        srv_resp_error(r, 503, "server_error", NULL, "out_of_memory", "out of memory");
        srv_gen_prompts_free(prompts, n_prompts);
        srv_gen_params_free(p);
        return;
    }
    j->srv = s;
    j->resp = r;
    j->tok = s->tok;
    j->kind = kind;
    j->p = *p;
    memset(p, 0, sizeof(*p));   /* the job owns p's allocations now */
    j->pr = prompts;
    j->n_prompts = n_prompts;
    j->n_stop_ids = n_stop_ids < SRV_MAX_STOP_IDS ? n_stop_ids : SRV_MAX_STOP_IDS;
    if (j->n_stop_ids > 0)
        memcpy(j->stop_ids, stop_ids, (size_t)j->n_stop_ids * sizeof(*stop_ids));
    for (int i = 0; i < j->p.n_stops; i++) {
        j->stop_text[i] = strdup(j->p.stops[i]);
        if (!j->stop_text[i])
            j->rc = ENG_E_NOMEM;
        j->p.stops[i] = j->stop_text[i];
    }
    size_t bytes = 0;
    for (int i = 0; i < n_prompts; i++)
        if (!prompts[i].ids)
            bytes += prompts[i].text_len;
    if (j->rc == 0 && bytes > (size_t)s->cfg->tokenize_inline_bytes) {
        if (s->metrics.tokenize_jobs >= SRV_MAX_TOKENIZE_JOBS) {
            char hdr[64];
            snprintf(hdr, sizeof(hdr), "Retry-After: %d\r\n", SRV_RETRY_AFTER_S);
            s->metrics.rejections++;
            srv_resp_error_h(r, 429, hdr, "rate_limit_error", NULL, "queue_full",
                             "%d requests are being tokenized already; retry later",
                             SRV_MAX_TOKENIZE_JOBS);
            job_free(j);
            return;
        }
        j->work.data = j;
        if (uv_queue_work(s->loop, &j->work, job_work, job_after) == 0) {
            srv_resp_set_owner(r, j, job_orphan);
            s->metrics.tokenize_jobs++;
            return;
        }
    }
    /* small (or the threadpool refused it): tokenize here */
    if (j->rc == 0)
        job_encode(j);
    job_finish(j);
    job_free(j);
}
