/* srv_sched.c — the scheduler thread: loads the model, then runs continuous batching. Each step
 * ends cancelled and timed-out sequences, admits waiting ones in arrival order while the batch
 * and the KV pool have room (the prompt's blocks, one spare block per running sequence), gives
 * every decoding sequence the block its next position needs (taking back the blocks of the
 * newest requests when the pool is empty: they wait again, then recompute their K/V),
 * then decodes one token for every running sequence and prefills up to prefill_chunk tokens
 * shared by the prefilling ones, in one eng_forward call. With the prefix cache on, admission
 * starts a sequence after the longest cached prefix of its tokens, and full blocks are offered
 * to the cache once their K/V are written. Runs only on its own thread, except
 * the srv_sched_* entry points, which take the mutex. No sockets, no JSON. */
#include "srv_sched.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eng_backend.h"
#include "srv_limits.h"

const char *srv_finish_name(srv_finish f)
{
    switch (f) {
    case SRV_FINISH_STOP: return "stop";
    case SRV_FINISH_LENGTH: return "length";
    case SRV_FINISH_TIMEOUT: return "timeout";
    case SRV_FINISH_CANCELLED: return "cancelled";
    case SRV_FINISH_ERROR: return "error";
    case SRV_FINISH_GRAMMAR: return "grammar";
    default: return "none";
    }
}

static double now_s(void)
{
    return (double)uv_hrtime() * 1e-9;
}

void srv_event_free(srv_event *e)
{
    free(e->text);
    free(e->vec);
    e->text = NULL;
    e->vec = NULL;
}

void srv_task_free(srv_task *t)
{
    if (!t)
        return;
    eng_gen_free(&t->dec);
    free(t->embed_sum);
    eng_gmatch_free(t->gm);
    eng_grammar_free(t->grammar);
    free(t->mask);
    free(t->gen);
    free(t->prompt);
    free(t->bias);
    free(t);
}

/* ---- events (scheduler side): collected during a step, posted once at its end ---- */

typedef struct ev_list {
    srv_event *v;
    int n, cap;
} ev_list;

static srv_event *ev_push(ev_list *l, srv_event_kind kind, uint64_t id)
{
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 64;
        srv_event *v = realloc(l->v, (size_t)cap * sizeof(*v));
        if (!v)
            return NULL;   /* dropped: the loop will see the task end via its DONE later */
        l->v = v;
        l->cap = cap;
    }
    srv_event *e = &l->v[l->n++];
    memset(e, 0, sizeof(*e));
    e->kind = kind;
    e->task_id = id;
    return e;
}

static void ev_post(srv_sched *s, ev_list *l)
{
    if (l->n == 0)
        return;
    uv_mutex_lock(&s->mu);
    if (s->n_out + l->n > s->cap_out) {
        int cap = s->cap_out ? s->cap_out : 64;
        while (cap < s->n_out + l->n)
            cap *= 2;
        srv_event *v = realloc(s->outbox, (size_t)cap * sizeof(*v));
        if (v) {
            s->outbox = v;
            s->cap_out = cap;
        }
    }
    int fit = s->cap_out - s->n_out;
    int n = l->n < fit ? l->n : fit;
    memcpy(s->outbox + s->n_out, l->v, (size_t)n * sizeof(srv_event));
    s->n_out += n;
    uv_mutex_unlock(&s->mu);
    for (int i = n; i < l->n; i++)
        srv_event_free(&l->v[i]);
    l->n = 0;
    uv_async_send(s->wake);
}

static void ev_text(srv_event *e, const char *txt, size_t len)
{
    if (!e || len == 0)
        return;
    e->text = malloc(len + 1);
    if (!e->text)
        return;
    memcpy(e->text, txt, len);
    e->text[len] = '\0';
    e->text_len = len;
}

/* ---- task lists ---- */

static void list_append(srv_task **head, srv_task *t)
{
    t->next = NULL;
    while (*head)
        head = &(*head)->next;
    *head = t;
}

static void list_remove(srv_task **head, srv_task *t)
{
    for (; *head; head = &(*head)->next) {
        if (*head == t) {
            *head = t->next;
            t->next = NULL;
            return;
        }
    }
}

/* Keeps a list in request order (ids grow with arrival): a preempted sequence waits ahead of
 * newer requests, regains its place when readmitted, and the newest running request is always
 * the first to be preempted. */
static void list_insert_by_id(srv_task **head, srv_task *t)
{
    while (*head && (*head)->id < t->id)
        head = &(*head)->next;
    t->next = *head;
    *head = t;
}

static srv_task *list_last(srv_task *t)
{
    while (t && t->next)
        t = t->next;
    return t;
}

static int list_len(const srv_task *t)
{
    int n = 0;
    for (; t; t = t->next)
        n++;
    return n;
}

/* Offers t's full blocks among the positions it has fed (all written: called between steps or
 * after a forward that succeeded) to the prefix cache. With the relaxed prefill numerics only
 * prompt positions are offered: a later request reads every cached position as prompt, and
 * generated ones were computed exactly, so reusing them would give other numbers than a run
 * without the cache. */
static void task_commit(srv_sched *s, srv_task *t)
{
    int n = t->n_fed;
    if (s->prefill_bf16 && n > t->n_prompt)
        n = t->n_prompt;
    eng_kv_prefix_commit(&s->kv, &t->seq, t->prompt, t->n_prompt, t->gen, n);
}

/* Ends t: emits the text still held (detokenizer, stop matcher) and a DONE event, returns its KV
 * blocks, unlinks and frees it. */
static void task_finish(srv_sched *s, srv_task *t, srv_finish why, const char *msg, ev_list *ev)
{
    char out[ENG_GEN_TEXT_CAP];
    size_t n_out = 0;
    if (why != SRV_FINISH_CANCELLED && t->admitted)
        n_out = eng_gen_flush(&t->dec, out, sizeof(out));
    srv_event *e = ev_push(ev, SRV_EV_DONE, t->id);
    if (e) {
        ev_text(e, out, n_out);
        e->finish = why;
        e->prompt_tokens = t->n_prompt;
        e->completion_tokens = t->n_gen;
        e->cached_tokens = t->cached_tokens;
        if (msg)
            snprintf(e->msg, sizeof(e->msg), "%s", msg);
    }
    srv_sched_stats *k = &s->counts;
    if (!t->shares_prompt)
        k->prompt_tokens += (uint64_t)t->n_prompt;
    k->generation_tokens += (uint64_t)t->n_gen;
    switch (why) {
    case SRV_FINISH_STOP: k->finished_stop++; break;
    case SRV_FINISH_LENGTH: k->finished_length++; break;
    case SRV_FINISH_CANCELLED: k->cancelled++; break;
    case SRV_FINISH_TIMEOUT: k->timeouts++; break;
    default: k->errors++; break;
    }
    if (why != SRV_FINISH_ERROR)
        task_commit(s, t);   /* an error may have left this step's positions unwritten */
    eng_kv_release(&s->kv, &t->seq);
    list_remove(&s->running, t);
    list_remove(&s->waiting, t);
    srv_task_free(t);
}

/* Positions t knows the token of: its prompt, then what it generated. The K/V of the first
 * n_fed are cached; the last one's logits give the next token. */
static int task_known(const srv_task *t)
{
    return t->n_prompt + t->n_gen;
}

static int32_t task_tok_at(const srv_task *t, int pos)
{
    return pos < t->n_prompt ? t->prompt[pos] : t->gen[pos - t->n_prompt];
}

/* With the prefix cache on, gives a sequence without blocks the cached blocks of its longest
 * cached prefix and starts feeding after them; returns the positions reused. At least the last
 * known position is always fed (its logits give the next token), and a sequence that reports
 * prompt logprobs reuses nothing past the first position whose logits it needs. */
static int task_reuse(srv_sched *s, srv_task *t)
{
    if (!s->kv.prefix || t->seq.n_blocks != 0 || t->kind == SRV_TASK_EMBED)
        return 0;   /* an embedding needs every position's hidden state */
    int max_pos = task_known(t) - 1;
    if (t->prompt_lp_from > 0 && t->prompt_lp_from - 1 < max_pos)
        max_pos = t->prompt_lp_from - 1;
    /* relaxed prefill: cached blocks hold prompt numerics; a readmitted sequence's generated
     * positions were computed exactly, so it reuses nothing past its prompt */
    if (s->prefill_bf16 && max_pos > t->n_prompt)
        max_pos = t->n_prompt;
    int hit = eng_kv_prefix_match(&s->kv, &t->seq, t->prompt, t->n_prompt, t->gen, max_pos);
    t->n_fed = hit;
    return hit;
}

/* Takes the blocks for t's known positions, keeping `spare` blocks free for the running
 * sequences' next positions; sets up its sampler and detokenizer on the first admission. */
static int task_admit(srv_sched *s, srv_task *t, int spare, eng_err *err)
{
    if (task_known(t) == 0)
        return eng_err_set(err, ENG_E_INVAL, "empty prompt");   /* refused at submit already */
    int hit = task_reuse(s, t);
    int need = eng_kv_blocks_for(&s->kv, task_known(t)) - t->seq.n_blocks;
    int rc = need > 0 && eng_kv_available(&s->kv) - need < spare ? ENG_E_FULL : 0;
    if (rc == 0)
        rc = eng_kv_reserve(&s->kv, &t->seq, task_known(t));
    if (rc != 0) {
        eng_kv_release(&s->kv, &t->seq);   /* the shared blocks go back to the cache */
        t->n_fed = 0;
        return rc == ENG_E_NOMEM ? eng_err_set(err, rc, "out of memory for the KV block table")
                                 : rc;
    }
    if (s->kv.prefix) {
        s->counts.prefix_queries += (uint64_t)task_known(t);
        s->counts.prefix_hits += (uint64_t)hit;
    }
    if (t->admitted)
        return 0;   /* readmitted after a preemption: sampler, detokenizer, stop state kept */
    t->cached_tokens = hit;
    if (t->kind == SRV_TASK_EMBED) {
        t->embed_sum = calloc((size_t)s->model->cfg.dim, sizeof(double));
        if (!t->embed_sum) {
            eng_kv_release(&s->kv, &t->seq);
            return eng_err_set(err, ENG_E_NOMEM, "out of memory for an embedding");
        }
        t->admitted = 1;
        return 0;
    }
    t->scfg.bias = t->bias;
    rc = eng_gen_start(&t->dec, &t->scfg, s->model->cfg.vocab_size, s->tok, t->prompt,
                       t->n_prompt, err);
    if (rc != 0) {
        eng_kv_release(&s->kv, &t->seq);
        return rc;
    }
    if (t->grammar) {
        int vocab = s->model->cfg.vocab_size;
        if (!s->gvocab && (rc = eng_gvocab_build(&s->gvocab, s->tok, vocab, -1, err)) != 0)
            goto grammar_fail;
        t->mask = malloc((size_t)(vocab + 31) / 32 * sizeof(uint32_t));
        if (!t->mask) {
            rc = eng_err_set(err, ENG_E_NOMEM, "out of memory for a grammar mask");
            goto grammar_fail;
        }
        if ((rc = eng_gmatch_new(&t->gm, t->grammar, s->gvocab, err)) != 0)
            goto grammar_fail;
    }
    t->admitted = 1;
    return 0;
grammar_fail:
    eng_gen_free(&t->dec);
    eng_kv_release(&s->kv, &t->seq);
    return rc;
}

/* Takes t's KV blocks back and returns it to the waiting list in request order. It keeps
 * everything else (tokens, sampler, detokenizer, stop matcher) and recomputes its K/V when
 * readmitted. Prompt log-probabilities already sent are not sent again. */
static void task_preempt(srv_sched *s, srv_task *t)
{
    if (t->prompt_lp_from > 0 && t->prompt_lp_from < t->n_fed + 1)
        t->prompt_lp_from = t->n_fed + 1;
    task_commit(s, t);   /* readmitted, it may find its own blocks still cached */
    if (t->embed_sum)    /* every position is computed again */
        memset(t->embed_sum, 0, sizeof(double) * (size_t)s->model->cfg.dim);
    eng_kv_release(&s->kv, &t->seq);
    t->n_fed = 0;
    t->preemptions++;
    s->counts.preemptions++;
    list_remove(&s->running, t);
    list_insert_by_id(&s->waiting, t);
}

/* Gives every running sequence that decodes this step the block for its next position,
 * preempting the newest requests (possibly the one asking) while the pool has none. A sequence
 * alone always fits: requests longer than the pool are refused at submit. */
static void sched_grow(srv_sched *s, ev_list *ev)
{
    srv_task *t, *nx;
    for (t = s->running; t; t = nx) {
        nx = t->next;
        if (t->n_fed != task_known(t) - 1)
            continue;   /* prefilling: its blocks were taken at admission */
        int rc;
        while ((rc = eng_kv_reserve(&s->kv, &t->seq, t->n_fed + 1)) == ENG_E_FULL) {
            srv_task *v = list_last(s->running);
            if (v == nx)
                nx = NULL;   /* v is last: nothing follows it */
            task_preempt(s, v);
            if (v == t)
                break;
        }
        if (rc != 0 && rc != ENG_E_FULL)
            task_finish(s, t, SRV_FINISH_ERROR, "out of memory for the KV block table", ev);
    }
}

/* Handles one sampled token of t; may finish t. */
static void task_token(srv_sched *s, srv_task *t, int32_t tok, const eng_logprob *lp,
                       ev_list *ev)
{
    if (t->n_gen == t->cap_gen) {
        int cap = t->cap_gen ? t->cap_gen * 2 : 64;
        int32_t *g = realloc(t->gen, (size_t)cap * sizeof(*g));
        if (!g) {
            task_finish(s, t, SRV_FINISH_ERROR, "out of memory for generated tokens", ev);
            return;
        }
        t->gen = g;
        t->cap_gen = cap;
    }
    t->gen[t->n_gen++] = tok;
    char out[ENG_GEN_TEXT_CAP];
    size_t n_out;
    eng_gen_end end = eng_gen_push(&t->dec, tok, out, sizeof(out), &n_out);
    if (end == ENG_GEN_END_ID) {
        task_finish(s, t, SRV_FINISH_STOP, NULL, ev);
        return;
    }
    srv_event *e = ev_push(ev, SRV_EV_TOKEN, t->id);
    if (e) {
        ev_text(e, out, n_out);
        e->token_chars = t->dec.last_chars;
        e->token = tok;
        if (lp && t->want_logprobs) {
            e->has_lp = 1;
            e->lp = *lp;
        }
    }
    t->last_emit = now_s();
    if (end == ENG_GEN_END_STRING)
        task_finish(s, t, SRV_FINISH_STOP, NULL, ev);
    else if (end == ENG_GEN_END_LENGTH || t->n_prompt + t->n_gen >= s->n_ctx)
        task_finish(s, t, SRV_FINISH_LENGTH, NULL, ev);
}

/* One position's final-normed hidden state h of an embedding task, in position order; at the
 * last one, the mean of all, L2-normalised, goes out in an SRV_EV_EMBED and the task ends. */
static void task_embed(srv_sched *s, srv_task *t, const float *h, int pos, ev_list *ev)
{
    const int dim = s->model->cfg.dim;
    for (int j = 0; j < dim; j++)
        t->embed_sum[j] += (double)h[j];
    if (pos < t->n_prompt - 1)
        return;
    double norm = 0;
    for (int j = 0; j < dim; j++)
        norm += t->embed_sum[j] * t->embed_sum[j];
    norm = sqrt(norm);
    srv_event *e = ev_push(ev, SRV_EV_EMBED, t->id);
    float *v = e ? malloc((size_t)dim * sizeof(float)) : NULL;
    if (!v) {
        task_finish(s, t, SRV_FINISH_ERROR, "out of memory for an embedding", ev);
        return;
    }
    for (int j = 0; j < dim; j++)
        v[j] = norm > 0 ? (float)(t->embed_sum[j] / norm) : 0.0f;
    e->vec = v;
    e->n_vec = dim;
    task_finish(s, t, SRV_FINISH_STOP, NULL, ev);
}

/* Log-probability of prompt token pos of t under the raw model distribution (logits [vocab]
 * from position pos - 1, no penalties, bias or temperature: prompt scoring, as vLLM reports
 * it), plus the n_top_prompt most likely tokens: eng_logprob_score, the sampler's own
 * log-softmax and top-n. lg is this step's scratch row (cleaned in place). */
static void task_prompt_logprob(srv_sched *s, srv_task *t, float *lg, int pos, ev_list *ev)
{
    srv_event *e = ev_push(ev, SRV_EV_PROMPT_LP, t->id);
    if (!e)
        return;
    e->token = t->prompt[pos];
    e->prev_token = t->prompt[pos - 1];
    e->has_lp = 1;
    eng_logprob_score(lg, s->model->cfg.vocab_size, e->token, t->n_top_prompt, &e->lp);
}

static void sched_publish(srv_sched *s)
{
    uv_mutex_lock(&s->mu);
    s->stats.running = list_len(s->running);
    s->stats.waiting = list_len(s->waiting) + s->n_inbox;
    s->stats.kv_total_tokens = s->kv.n_blocks * s->kv.block_tokens;
    s->stats.kv_used_tokens = (s->kv.n_blocks - eng_kv_available(&s->kv)) * s->kv.block_tokens;
    s->stats.steps = s->counts.steps;
    s->stats.prompt_tokens = s->counts.prompt_tokens;
    s->stats.generation_tokens = s->counts.generation_tokens;
    s->stats.finished_stop = s->counts.finished_stop;
    s->stats.finished_length = s->counts.finished_length;
    s->stats.cancelled = s->counts.cancelled;
    s->stats.timeouts = s->counts.timeouts;
    s->stats.errors = s->counts.errors;
    s->stats.preemptions = s->counts.preemptions;
    s->stats.prefix_queries = s->counts.prefix_queries;
    s->stats.prefix_hits = s->counts.prefix_hits;
    s->stats.prefix_blocks = eng_kv_prefix_blocks(&s->kv);
    kern_get_xfer_stats(&s->be, &s->stats.xfer);
    kern_get_graph_stats(&s->be, &s->stats.graphs);
    uv_mutex_unlock(&s->mu);
}

/* Undecided lazy grammar (grammar_lazy set): 1 when token tok begins free text, i.e. it has
 * no bytes here (special tokens) or its first non-blank byte is not one that opens a call. */
static int lazy_text(const srv_sched *s, const srv_task *t, int32_t tok)
{
    int lead = eng_gvocab_lead(s->gvocab, tok);
    int opens = lead == '{' || (lead == '[' && t->grammar_lazy == SRV_LAZY_OBJECT_ARRAY);
    return lead == -2 || (lead >= 0 && !opens);
}

/* The grammar's mask for t's next token into t->mask, with every stop id of the task (EOS,
 * <|im_end|>, ...) allowed exactly where the grammar allows its EOS. The host sampler takes it
 * through eng_sampler_set_allow, the backend's as a row of kern_sample's allow array. */
static int task_mask(srv_sched *s, srv_task *t)
{
    const uint32_t *m = eng_gmatch_mask(t->gm);
    if (!m)
        return ENG_E_NOMEM;
    int words = (t->dec.sampler.vocab + 31) / 32;
    memcpy(t->mask, m, (size_t)words * sizeof(uint32_t));
    int end_ok = eng_gmatch_end_allowed(t->gm);
    if (t->grammar_lazy) {
        /* undecided: the grammar's tokens (blanks, or a call's start), and every token whose
         * first non-blank byte begins free text; ending here is an empty text answer */
        for (int id = 0; id < t->dec.sampler.vocab; id++) {
            if (lazy_text(s, t, id))
                t->mask[id >> 5] |= 1u << (id & 31);
        }
        end_ok = 1;
    }
    for (int i = 0; i < t->dec.n_stop_ids; i++) {
        int32_t id = t->dec.stop_ids[i];
        if (id < 0 || id >= t->dec.sampler.vocab)
            continue;
        if (end_ok)
            t->mask[id >> 5] |= 1u << (id & 31);
        else
            t->mask[id >> 5] &= ~(1u << (id & 31));
    }
    return 0;
}

/* 1 when item i's next token is plain greedy: the backend's pick (eng_forward_out.argmax, the
 * sampler's greedy rule) is the sampler's answer, and the logits need not reach the host. Not
 * for prompt logprobs, scoring, logprobs, bias, penalties or a grammar, which read the logits. */
static int backend_picks(const eng_batch_item *it, const srv_task *t)
{
    const eng_sampler_cfg *c = &t->scfg;
    return it->pos >= t->n_prompt - 1 && t->kind == SRV_TASK_GENERATE && !t->want_logprobs &&
           !t->gm &&
           c->temperature <= 0.0f && c->n_bias == 0 &&
           c->repetition_penalty == 1.0f && c->presence_penalty == 0.0f &&
           c->frequency_penalty == 0.0f;
}

/* 1 when item i's next token can be chosen by the backend (kern_sample, a device; on host
 * memory the logits already are where the sampler reads them): a generated token (bias,
 * penalties, a grammar's mask, temperature, top-k, top-p, min-p and logprobs all run there).
 * The backend picks from the draw the task's sampler would take next (eng_sampler_draws), and
 * the logits stay on the device unless it leaves the row to us (-2). */
static int backend_samples(srv_sched *s, const eng_batch_item *it, const srv_task *t)
{
    return kern_has_sample(&s->be) && it->pos >= t->n_prompt - 1 &&
           t->kind == SRV_TASK_GENERATE;
}

/* Each backend-sampled row's rules, adjustment entries (bias, penalties) and grammar mask into
 * s->sparams, s->adj and s->allow (grown to fit). Returns 0, or ENG_E_NOMEM (a grammar's mask
 * included: its task cannot go on either way). */
static int sched_sample_rows(srv_sched *s, const eng_batch_item *items, srv_task *const *task,
                             int n, int *any, int *n_adj, int *any_lp, int64_t *n_allow)
{
    const size_t words = ((size_t)s->model->cfg.vocab_size + 31) / 32;
    size_t need = 0, masks = 0;
    for (int i = 0; i < n; i++)
        if (items[i].want_logits && task[i]->kind != SRV_TASK_EMBED &&
            backend_samples(s, &items[i], task[i])) {
            need += (size_t)eng_sampler_device_entries(&task[i]->dec.sampler);
            masks += task[i]->gm != NULL;
        }
    if (need > s->adj_cap) {
        kern_sample_adj *a = realloc(s->adj, need * sizeof *a);
        if (!a)
            return ENG_E_NOMEM;
        s->adj = a;
        s->adj_cap = need;
    }
    if (masks * words > s->allow_cap) {
        uint32_t *a = realloc(s->allow, masks * words * sizeof *a);
        if (!a)
            return ENG_E_NOMEM;
        s->allow = a;
        s->allow_cap = masks * words;
    }
    int row = 0, off = 0;
    size_t mask_at = 0;
    *any = *any_lp = 0;
    for (int i = 0; i < n; i++) {
        if (!items[i].want_logits)
            continue;
        kern_sample_params *p = &s->sparams[row++];
        memset(p, 0, sizeof *p);   /* greedy, or a row whose pick goes unused */
        p->n_logprobs = -1;
        if (task[i]->kind == SRV_TASK_EMBED || !backend_samples(s, &items[i], task[i]))
            continue;
        int k = eng_sampler_device_params(&task[i]->dec.sampler,
                                          task[i]->want_logprobs ? task[i]->scfg.n_top_logprobs
                                                                 : -1,
                                          s->adj + off, (int)(need - (size_t)off), off, p);
        if (k < 0)
            return ENG_E_NOMEM;   /* cannot happen: need counted every entry */
        off += k;
        if (task[i]->gm) {
            if (task_mask(s, task[i]) != 0)
                return ENG_E_NOMEM;
            memcpy(s->allow + mask_at, task[i]->mask, words * sizeof(uint32_t));
            p->has_allow = 1;
            p->allow_off = (int32_t)mask_at;
            mask_at += words;
        }
        *any = 1;
        *any_lp |= task[i]->want_logprobs;
    }
    *n_adj = off;
    *n_allow = (int64_t)mask_at;
    return 0;
}

/* Runs items[0..n) and leaves what sched_use_logits needs: the picks always, the logits only
 * when some item's task reads them (on a device backend they are most of a step's traffic). */
static int sched_forward(srv_sched *s, const eng_batch_item *items, srv_task *const *task, int n,
                         eng_err *err)
{
    int need_logits = 0, need_picks = 0, need_hidden = 0, any_sampled = 0, n_adj = 0, any_lp = 0;
    int64_t n_allow = 0;
    for (int i = 0; i < n; i++) {
        if (!items[i].want_logits)
            continue;
        if (task[i]->kind == SRV_TASK_EMBED) {
            need_hidden = 1;   /* no head: an embedding step skips the vocabulary matmul */
        } else {
            need_picks = 1;
            need_logits |= !backend_picks(&items[i], task[i]) &&
                           !backend_samples(s, &items[i], task[i]);
        }
    }
    if (need_picks &&
        sched_sample_rows(s, items, task, n, &any_sampled, &n_adj, &any_lp, &n_allow))
        return eng_err_set(err, ENG_E_NOMEM, "out of memory for sampling rules");
    eng_forward_out out = {.logits = need_logits ? s->logits : NULL,
                           .argmax = need_picks ? s->picks : NULL,
                           .hidden = need_hidden ? s->hidden : NULL,
                           .sample = any_sampled ? s->sparams : NULL,
                           .sample_logits = s->logits,
                           .sample_adj = n_adj ? s->adj : NULL,
                           .n_sample_adj = n_adj,
                           .sample_allow = n_allow ? s->allow : NULL,
                           .n_sample_allow = n_allow,
                           .sample_lp = any_lp ? s->slp : NULL};
    int rc = eng_forward_ex(s->ctx, &s->kv, items, n, &out, err);
    s->counts.steps++;
    return rc;
}

/* t's next token tok (chosen on the host or the backend, under t's grammar mask when it has
 * one): the lazy grammar's decision (free text, or a call held to the end), the grammar's
 * step, then the token itself. */
static void task_take(srv_sched *s, srv_task *t, int32_t tok, const eng_logprob *lp,
                      ev_list *ev)
{
    const int stop = eng_gen_is_stop_id(&t->dec, tok);
    if (t->gm && !t->grammar_lazy && stop && !eng_gmatch_can_end(t->gm)) {
        /* the mask offered the end only because nothing else continues the value: ending
         * would return text that does not parse, as if it were a complete answer */
        task_finish(s, t, SRV_FINISH_GRAMMAR, "the model cannot produce the required output: "
                    "no token of its vocabulary continues the JSON value of response_format "
                    "(or the tool call) at this point", ev);
        return;
    }
    if (t->gm && t->grammar_lazy && !stop) {
        if (lazy_text(s, t, tok)) {
            /* free text from here on */
            eng_gmatch_free(t->gm);
            t->gm = NULL;
            eng_sampler_set_allow(&t->dec.sampler, NULL);
        } else if (eng_gvocab_lead(s->gvocab, tok) >= 0) {
            t->grammar_lazy = SRV_LAZY_OFF;   /* a call: the grammar holds to the end, */
            eng_gen_drop_stops(&t->dec);      /* and decides where it ends */
        }
    }
    if (t->gm && !stop && eng_gmatch_accept(t->gm, tok) != 0) {
        task_finish(s, t, SRV_FINISH_ERROR, "grammar rejected the sampled token", ev);
        return;
    }
    task_token(s, t, tok, lp, ev);
}

/* Hands the logits of a finished forward to the tasks of its items (items[0..n), task[i] the
 * task of item i): prompt logprobs, the end of a scoring-only task, or the next token. */
static void sched_use_logits(srv_sched *s, const eng_batch_item *items, srv_task *const *task,
                             int n, ev_list *ev)
{
    int vocab = s->model->cfg.vocab_size, row = 0;
    for (int i = 0; i < n; i++) {
        if (!items[i].want_logits)
            continue;
        srv_task *bt = task[i];
        const int32_t *pick = s->picks + row;   /* read only for a task whose step made one */
        const float *hid = s->hidden + (size_t)row * (size_t)s->model->cfg.dim;
        float *lg = s->logits + (size_t)row++ * (size_t)vocab;
        if (bt->kind == SRV_TASK_EMBED) {
            task_embed(s, bt, hid, items[i].pos, ev);
            continue;
        }
        if (backend_picks(&items[i], bt)) {
            if (*pick < 0) task_finish(s, bt, SRV_FINISH_ERROR, "sampler failed", ev);
            else task_token(s, bt, *pick, NULL, ev);
            continue;
        }
        const int on_backend = backend_samples(s, &items[i], bt);
        eng_logprob lp;
        const eng_logprob *tok_lp = NULL;
        int32_t tok;
        if (on_backend && *pick != -2) {
            /* the backend's pick from the draw the sampler would have taken: take it too */
            if (eng_sampler_draws(&bt->dec.sampler)) eng_sampler_skip_uniform(&bt->dec.sampler);
            tok = *pick;
            tok_lp = bt->want_logprobs ? &s->slp[pick - s->picks] : NULL;
        } else {
            /* -2: left to us; lg holds the row as the backend adjusted and masked it, and the
             * sampler below takes the same draw */
            if (items[i].pos < bt->n_prompt - 1) {
                task_prompt_logprob(s, bt, lg, items[i].pos + 1, ev);
                continue;
            }
            if (bt->kind == SRV_TASK_SCORE) {   /* the last position's logits score nothing */
                task_finish(s, bt, SRV_FINISH_LENGTH, NULL, ev);
                continue;
            }
            /* a backend-sampled row's mask is this step's already (sched_sample_rows) */
            if (bt->gm && !on_backend && task_mask(s, bt) != 0) {
                task_finish(s, bt, SRV_FINISH_ERROR, "out of memory for a grammar mask", ev);
                continue;
            }
            if (bt->gm) eng_sampler_set_allow(&bt->dec.sampler, bt->mask);
            eng_logprob *want_lp = bt->want_logprobs ? &lp : NULL;
            tok = on_backend ? eng_sampler_sample_adjusted(&bt->dec.sampler, lg, want_lp)
                             : eng_sampler_sample(&bt->dec.sampler, lg, want_lp);
            tok_lp = want_lp;
        }
        if (tok < 0) {
            task_finish(s, bt, SRV_FINISH_ERROR, "sampler failed", ev);
            continue;
        }
        task_take(s, bt, tok, tok_lp, ev);
    }
}

/* The batch of s->items[0..n) failed in the engine. A per-request cause (a token outside the
 * vocabulary, a position without a KV block) must fail that request alone, so each task's items
 * run again as a batch of their own (the forward checks its inputs before it computes, and KV
 * writes of a position are idempotent; batch invariance makes the results those of the shared
 * batch): a task whose own batch fails ends with that error, the others carry on. A failure of
 * the whole engine (device, memory) fails every task this way too, one forward each. */
static void sched_forward_isolated(srv_sched *s, int n, ev_list *ev)
{
    for (int i = 0; i < n; i++) {
        srv_task *bt = s->item_task[i];
        if (!bt)
            continue;
        int k = 0;
        for (int j = i; j < n; j++) {
            if (s->item_task[j] != bt)
                continue;
            s->iso_items[k] = s->items[j];
            s->iso_task[k++] = bt;
            s->item_task[j] = NULL;
        }
        eng_err err = {0};
        int rc = sched_forward(s, s->iso_items, s->iso_task, k, &err);
        if (rc == 0) {
            sched_use_logits(s, s->iso_items, s->iso_task, k, ev);
            continue;
        }
        char msg[ENG_ERR_MSG + 32];
        snprintf(msg, sizeof(msg), "engine: %s", err.msg[0] ? err.msg : eng_strerror(rc));
        task_finish(s, bt, SRV_FINISH_ERROR, msg, ev);
    }
}

/* ---- one engine step, phase by phase ---- */

/* Ends cancelled and timed-out sequences, running or waiting. */
static void sched_expire(srv_sched *s, ev_list *ev)
{
    double now = now_s();
    srv_task *lists[2] = {s->running, s->waiting};
    for (int l = 0; l < 2; l++) {
        srv_task *t, *nx;
        for (t = lists[l]; t; t = nx) {
            nx = t->next;
            if (t->cancelled)
                task_finish(s, t, SRV_FINISH_CANCELLED, NULL, ev);
            else if (now > t->deadline)
                task_finish(s, t, SRV_FINISH_TIMEOUT, "request timeout", ev);
        }
    }
}

/* Admission in arrival order (preempted sequences first); the head waits for blocks rather
 * than being overtaken. One block stays free per running sequence, so admitting does not
 * force a preemption at the next block boundary. */
static void sched_admit(srv_sched *s, ev_list *ev)
{
    int n_running = list_len(s->running);
    while (s->waiting && n_running < s->cfg->max_batch) {
        srv_task *t = s->waiting;
        if (t->kind == SRV_TASK_SCORE && !t->prompt_lp_from) {
            task_finish(s, t, SRV_FINISH_LENGTH, NULL, ev);   /* nothing to score */
            continue;
        }
        eng_err err = {0};
        int rc = task_admit(s, t, n_running, &err);
        if (rc == ENG_E_FULL)
            break;
        if (rc != 0) {
            task_finish(s, t, SRV_FINISH_ERROR, err.msg, ev);
            continue;
        }
        list_remove(&s->waiting, t);
        list_insert_by_id(&s->running, t);
        n_running++;
    }
}

/* A scoring task is done once every position but the last is in the cache: every logprob has
 * been sent (the last position's logits score nothing), so it ends without feeding that
 * position, or growing, or being preempted for it. */
static void sched_end_scoring(srv_sched *s, ev_list *ev)
{
    srv_task *t, *nx;
    for (t = s->running; t; t = nx) {
        nx = t->next;
        if (t->kind == SRV_TASK_SCORE && t->n_fed >= task_known(t) - 1)
            task_finish(s, t, SRV_FINISH_LENGTH, NULL, ev);
    }
}

/* Appends the batch item for position pos of t. */
static void batch_add(srv_sched *s, int *n, srv_task *t, int pos, int want_logits)
{
    eng_batch_item *it = &s->items[*n];
    it->token = task_tok_at(t, pos);
    it->pos = pos;
    it->seq = &t->seq;
    it->want_logits = want_logits;
    /* prompt positions may take the relaxed prefill numerics; generated ones, recomputed after
     * a preemption included, keep the exact ones they were first computed with */
    it->prompt = pos < t->n_prompt;
    s->item_task[(*n)++] = t;
}

/* Decode: one item per sequence with exactly one position left to feed. Returns the count. */
static int sched_batch_decode(srv_sched *s)
{
    int n = 0;
    for (srv_task *t = s->running; t && n < s->batch_cap; t = t->next) {
        if (t->n_fed != task_known(t) - 1)
            continue;
        batch_add(s, &n, t, t->n_fed++, 1);
    }
    return n;
}

/* Prefill: up to --prefill-chunk positions shared by the sequences still reading their prompt
 * (or recomputing after a preemption), after the n decode items. Returns the new count. */
static int sched_batch_prefill(srv_sched *s, int n)
{
    int budget = s->cfg->prefill_chunk;
    for (srv_task *t = s->running; t && budget > 0 && n < s->batch_cap; t = t->next) {
        if (t->n_fed >= task_known(t) - 1)
            continue;
        /* a scoring task stops before its last position (sched_end_scoring) */
        int k = task_known(t) - (t->kind == SRV_TASK_SCORE ? 1 : 0) - t->n_fed;
        if (k > budget)
            k = budget;
        if (k > s->batch_cap - n)
            k = s->batch_cap - n;
        for (int j = 0; j < k; j++) {
            int p = t->n_fed + j;
            /* the logits at p score prompt token p + 1 when its logprob is asked for */
            int want = p == task_known(t) - 1 || t->kind == SRV_TASK_EMBED ||
                       (t->prompt_lp_from && p + 1 >= t->prompt_lp_from && p < t->n_prompt - 1);
            batch_add(s, &n, t, p, want);
        }
        t->n_fed += k;
        budget -= k;
    }
    return n;
}

/* Runs the batch, then samples and emits (sched_use_logits), and offers the blocks it filled
 * to the prefix cache. */
static void sched_run(srv_sched *s, int n, ev_list *ev)
{
    if (n == 0)
        return;
    eng_err err = {0};
    int rc = sched_forward(s, s->items, s->item_task, n, &err);
    if (rc == 0)
        sched_use_logits(s, s->items, s->item_task, n, ev);
    else
        sched_forward_isolated(s, n, ev);
    for (srv_task *t = s->running; t; t = t->next)
        task_commit(s, t);   /* those whose forward failed have ended */
}

/* SSE keep-alives for sequences that have sent nothing for a while (waiting, prefilling, or
 * preempted mid-stream). */
static void sched_keepalive(srv_sched *s, ev_list *ev)
{
    double now = now_s();
    srv_task *lists[2] = {s->running, s->waiting};
    for (int l = 0; l < 2; l++) {
        for (srv_task *t = lists[l]; t; t = t->next) {
            if (now - t->last_emit >= s->cfg->keepalive_s) {
                ev_push(ev, SRV_EV_KEEPALIVE, t->id);
                t->last_emit = now;
            }
        }
    }
}

/* One engine step over everything running: expire, admit, end finished scoring, give decoding
 * sequences their next block (preempting when the pool is empty), then one forward of the
 * decode tokens and the shared prefill chunks, sampling and emitting from its logits. */
static void sched_step(srv_sched *s, ev_list *ev)
{
    sched_expire(s, ev);
    sched_admit(s, ev);
    sched_end_scoring(s, ev);
    sched_grow(s, ev);
    int n = sched_batch_decode(s);
    n = sched_batch_prefill(s, n);
    sched_run(s, n, ev);
    sched_keepalive(s, ev);
}

static int sched_load(srv_sched *s, char *msg, size_t cap)
{
    const srv_config *cfg = s->cfg;
    eng_err err = {0};
    int rc = eng_model_open(&s->model, cfg->model, &err);
    if (rc != 0) {
        snprintf(msg, cap, "model %.200s: %.300s", cfg->model,
                 err.msg[0] ? err.msg : eng_strerror(rc));
        return rc;
    }
    rc = eng_model_open_tokenizer(s->model, cfg->tokenizer[0] ? cfg->tokenizer : NULL, &s->tok,
                                  &err);
    if (rc != 0) {
        snprintf(msg, cap, "tokenizer: %s", err.msg[0] ? err.msg : eng_strerror(rc));
        return rc;
    }
    rc = eng_backend_open(&s->be, cfg->device, cfg->threads, &err);
    if (rc != 0) {
        snprintf(msg, cap, "%s", err.msg[0] ? err.msg : eng_strerror(rc));
        return rc;
    }
    rc = eng_resident_create(&s->res, s->model, &s->be, &err);
    if (rc != 0) {
        snprintf(msg, cap, "%s", err.msg[0] ? err.msg : eng_strerror(rc));
        return rc;
    }
    const eng_config *mc = &s->model->cfg;
    /* fp16 entries halve the cache; both backends' attention reads them */
    kern_dtype kvd = KERN_F16;
    if (strcmp(cfg->kv_dtype, "auto") != 0 && eng_kv_dtype_parse(cfg->kv_dtype, &kvd) != 0)
        kvd = KERN_F32;
    s->kv_dtype = kvd;
    int64_t per_tok = 2LL * mc->n_layers * mc->n_kv_heads * mc->head_dim *
                      (int64_t)kern_dtype_size(kvd);
    int64_t kvt = cfg->kv_cache_tokens;
    if (kvt <= 0) {
        kvt = per_tok > 0 ? SRV_DEFAULT_KV_BYTES / per_tok : mc->seq_len;
        int64_t want = (int64_t)mc->seq_len * cfg->max_batch;
        if (kvt > want)
            kvt = want;
        if (kvt < mc->seq_len)
            kvt = mc->seq_len;
    }
    s->kv_tokens = kvt;
    s->n_ctx = mc->seq_len < kvt ? mc->seq_len : (int)kvt;
    rc = eng_kv_init_on(&s->kv, mc, kvt, kvd, &s->be, &err);
    if (rc == 0 && cfg->prefix_cache)
        rc = eng_kv_prefix_enable(&s->kv, &err);
    if (rc != 0) {
        snprintf(msg, cap, "kv cache (%lld tokens): %s", (long long)kvt,
                 err.msg[0] ? err.msg : eng_strerror(rc));
        return rc;
    }
    s->batch_cap = cfg->max_batch + cfg->prefill_chunk;
    rc = eng_ctx_create(&s->ctx, s->model, &s->be, s->batch_cap, &err);
    if (rc == 0) rc = eng_ctx_use_resident(s->ctx, s->res);
    /* on where it runs: a CPU with AVX512_BF16 and packed linears (else everything is exact
     * and the prefix cache need not drop generated blocks) */
    int want_bf16 = strcmp(cfg->prefill_precision, "bf16") == 0;
    s->prefill_bf16 = want_bf16 && kern_cpu_bf16(&s->be) &&
                      s->model->w.layers[0].lin[ENG_LIN_Q].dtype == KERN_CLAQ;
    if (rc == 0 && want_bf16 && (rc = eng_ctx_set_prefill_bf16(s->ctx, 1)) != 0)
        eng_err_set(&err, rc, "--prefill-precision bf16: the %s backend has no bfloat16 path",
                    s->be.ops && s->be.ops->name ? s->be.ops->name : "?");
    if (rc != 0) {
        snprintf(msg, cap, "engine context: %s", err.msg[0] ? err.msg : eng_strerror(rc));
        return rc;
    }
    s->logits = malloc((size_t)s->batch_cap * (size_t)mc->vocab_size * sizeof(float));
    s->hidden = malloc((size_t)s->batch_cap * (size_t)mc->dim * sizeof(float));
    s->picks = malloc((size_t)s->batch_cap * sizeof(int32_t));
    s->sparams = calloc((size_t)s->batch_cap, sizeof(*s->sparams));
    s->slp = calloc((size_t)s->batch_cap, sizeof(*s->slp));
    s->items = calloc((size_t)s->batch_cap, sizeof(*s->items));
    s->item_task = calloc((size_t)s->batch_cap, sizeof(*s->item_task));
    s->iso_items = calloc((size_t)s->batch_cap, sizeof(*s->iso_items));
    s->iso_task = calloc((size_t)s->batch_cap, sizeof(*s->iso_task));
    if (!s->logits || !s->hidden || !s->picks || !s->sparams || !s->slp || !s->items ||
        !s->item_task || !s->iso_items || !s->iso_task) {
        snprintf(msg, cap, "out of memory for batch buffers");
        return ENG_E_NOMEM;
    }
    return 0;
}

static void sched_main(void *arg)
{
    srv_sched *s = arg;
    ev_list ev = {0};
    char msg[ENG_ERR_MSG + 64] = "";
    if (sched_load(s, msg, sizeof(msg)) != 0) {
        srv_event *e = ev_push(&ev, SRV_EV_LOAD_FAILED, 0);
        if (e)
            snprintf(e->msg, sizeof(e->msg), "%.255s", msg);
        ev_post(s, &ev);
        uv_mutex_lock(&s->mu);
        while (!s->stop)
            uv_cond_wait(&s->cv, &s->mu);
        uv_mutex_unlock(&s->mu);
        free(ev.v);
        return;
    }
    sched_publish(s);
    ev_push(&ev, SRV_EV_READY, 0);
    ev_post(s, &ev);

    uint64_t *cancels = NULL;
    int n_cancels = 0, cap_cancels = 0;
    for (;;) {
        uv_mutex_lock(&s->mu);
        while (!s->stop && !s->inbox_head && !s->n_cancels && !s->waiting && !s->running)
            uv_cond_wait(&s->cv, &s->mu);
        if (s->stop) {
            uv_mutex_unlock(&s->mu);
            break;
        }
        srv_task *in = s->inbox_head;
        s->inbox_head = s->inbox_tail = NULL;
        s->n_inbox = 0;
        if (s->n_cancels > cap_cancels) {
            uint64_t *c = realloc(cancels, (size_t)s->n_cancels * sizeof(*c));
            if (c) {
                cancels = c;
                cap_cancels = s->n_cancels;
            }
        }
        n_cancels = s->n_cancels < cap_cancels ? s->n_cancels : cap_cancels;
        if (n_cancels)
            memcpy(cancels, s->cancels, (size_t)n_cancels * sizeof(*cancels));
        s->n_cancels = 0;
        uv_mutex_unlock(&s->mu);

        double now = now_s();
        while (in) {
            srv_task *t = in;
            in = in->next;
            t->last_emit = now;
            list_append(&s->waiting, t);
        }
        for (int i = 0; i < n_cancels; i++) {
            srv_task *lists[2] = {s->running, s->waiting};
            for (int l = 0; l < 2; l++)
                for (srv_task *t = lists[l]; t; t = t->next)
                    if (t->id == cancels[i])
                        t->cancelled = 1;
        }
        sched_step(s, &ev);
        sched_publish(s);
        ev_post(s, &ev);
        if (s->cfg->step_delay_ms > 0 && (s->running || s->waiting))
            uv_sleep((unsigned)s->cfg->step_delay_ms);
        if (!s->running && s->waiting) {
            /* Nothing can run: the head waits for blocks that only a finish frees. Cannot
             * happen (a task never needs more than the pool), but never spin if it does. */
            uv_mutex_lock(&s->mu);
            if (!s->stop && !s->inbox_head && !s->n_cancels)
                uv_cond_timedwait(&s->cv, &s->mu, 50 * 1000000ULL);
            uv_mutex_unlock(&s->mu);
        }
    }
    /* Shutdown: everything still alive is cancelled. */
    uv_mutex_lock(&s->mu);
    srv_task *in = s->inbox_head;
    s->inbox_head = s->inbox_tail = NULL;
    uv_mutex_unlock(&s->mu);
    while (in) {
        srv_task *t = in;
        in = in->next;
        list_append(&s->waiting, t);
    }
    while (s->running)
        task_finish(s, s->running, SRV_FINISH_CANCELLED, NULL, &ev);
    while (s->waiting)
        task_finish(s, s->waiting, SRV_FINISH_CANCELLED, NULL, &ev);
    ev_post(s, &ev);
    sched_publish(s);
    free(cancels);
    free(ev.v);
}

int srv_sched_start(srv_sched *s, const srv_config *cfg, uv_async_t *wake)
{
    s->cfg = cfg;
    s->wake = wake;
    s->next_id = 1;
    if (uv_mutex_init(&s->mu) != 0)
        return -1;
    if (uv_cond_init(&s->cv) != 0) {
        uv_mutex_destroy(&s->mu);
        return -1;
    }
    if (uv_thread_create(&s->thread, sched_main, s) != 0) {
        uv_cond_destroy(&s->cv);
        uv_mutex_destroy(&s->mu);
        return -1;
    }
    s->started = 1;
    return 0;
}

void srv_sched_stop(srv_sched *s)
{
    if (!s->started)
        return;
    uv_mutex_lock(&s->mu);
    s->stop = 1;
    uv_cond_signal(&s->cv);
    uv_mutex_unlock(&s->mu);
    uv_thread_join(&s->thread);
    s->started = 0;
    for (int i = 0; i < s->n_out; i++)
        srv_event_free(&s->outbox[i]);
    free(s->outbox);
    s->outbox = NULL;
    s->n_out = s->cap_out = 0;
    free(s->cancels);
    s->cancels = NULL;
    free(s->logits);
    free(s->hidden);
    s->hidden = NULL;
    free(s->picks);
    s->picks = NULL;
    free(s->sparams);
    s->sparams = NULL;
    free(s->adj);
    s->adj = NULL;
    free(s->slp);
    s->slp = NULL;
    s->adj_cap = 0;
    free(s->allow);
    s->allow = NULL;
    s->allow_cap = 0;
    free(s->items);
    free(s->item_task);
    free(s->iso_items);
    free(s->iso_task);
    s->logits = NULL;
    s->items = NULL;
    s->item_task = NULL;
    s->iso_items = NULL;
    s->iso_task = NULL;
    eng_ctx_destroy(s->ctx);
    s->ctx = NULL;
    eng_kv_free(&s->kv);
    eng_resident_destroy(s->res);
    s->res = NULL;
    kern_backend_destroy(&s->be);
    eng_tokenizer_close(s->tok);
    s->tok = NULL;
    eng_gvocab_free(s->gvocab);
    s->gvocab = NULL;
    eng_model_close(s->model);
    s->model = NULL;
    uv_cond_destroy(&s->cv);
    uv_mutex_destroy(&s->mu);
}

uint64_t srv_sched_next_id(srv_sched *s)
{
    return s->next_id++;   /* loop thread only */
}

int srv_sched_submit(srv_sched *s, srv_task **tasks, int n)
{
    uv_mutex_lock(&s->mu);
    int waiting = s->stats.waiting > s->n_inbox ? s->stats.waiting : s->n_inbox;
    if (s->stop || waiting + n > s->cfg->max_queue + s->cfg->max_batch - s->stats.running) {
        uv_mutex_unlock(&s->mu);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        srv_task *t = tasks[i];
        t->next = NULL;
        if (s->inbox_tail)
            s->inbox_tail->next = t;
        else
            s->inbox_head = t;
        s->inbox_tail = t;
    }
    s->n_inbox += n;
    s->stats.waiting += n;
    uv_cond_signal(&s->cv);
    uv_mutex_unlock(&s->mu);
    return 0;
}

void srv_sched_cancel(srv_sched *s, const uint64_t *ids, int n)
{
    if (!s->started || n <= 0)
        return;
    uv_mutex_lock(&s->mu);
    if (s->n_cancels + n > s->cap_cancels) {
        int cap = s->cap_cancels ? s->cap_cancels : 16;
        while (cap < s->n_cancels + n)
            cap *= 2;
        uint64_t *c = realloc(s->cancels, (size_t)cap * sizeof(*c));
        if (c) {
            s->cancels = c;
            s->cap_cancels = cap;
        }
    }
    for (int i = 0; i < n && s->n_cancels < s->cap_cancels; i++)
        s->cancels[s->n_cancels++] = ids[i];
    uv_cond_signal(&s->cv);
    uv_mutex_unlock(&s->mu);
}

void srv_sched_drain(srv_sched *s, srv_event **out, int *n)
{
    uv_mutex_lock(&s->mu);
    *out = s->outbox;
    *n = s->n_out;
    s->outbox = NULL;
    s->n_out = s->cap_out = 0;
    uv_mutex_unlock(&s->mu);
}

void srv_sched_get_stats(srv_sched *s, srv_sched_stats *st)
{
    uv_mutex_lock(&s->mu);
    *st = s->stats;
    uv_mutex_unlock(&s->mu);
}
