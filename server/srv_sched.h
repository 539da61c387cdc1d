/* srv_sched.h — the scheduler: its own thread owns the engine (model, tokenizer, backend, eng_ctx,
 * the paged eng_kv) and runs continuous batching over every live sequence. The loop thread talks
 * to it only through this header: srv_sched_submit / srv_sched_cancel (mutex queue + condvar in)
 * and srv_sched_drain (outbox out, after uv_async_send). Tasks are referred to by id, never by
 * pointer, once submitted. Does no socket I/O and no JSON. */
#ifndef SRV_SCHED_H
#define SRV_SCHED_H

#include <stdint.h>
#include <uv.h>

#include "eng_forward.h"
#include "eng_gen.h"
#include "eng_grammar.h"
#include "eng_kv.h"
#include "eng_model.h"
#include "eng_sampler.h"
#include "eng_tokenizer.h"
#include "srv_config.h"

#define SRV_MAX_STOP_IDS 8    /* a request's extra stop ids (the chat template's ends of turn) */

typedef enum srv_finish {
    SRV_FINISH_NONE = 0,
    SRV_FINISH_STOP,        /* EOS, a stop token or a stop string */
    SRV_FINISH_LENGTH,      /* max_tokens reached */
    SRV_FINISH_TIMEOUT,     /* the request deadline passed */
    SRV_FINISH_CANCELLED,   /* the client went away, or shutdown */
    SRV_FINISH_ERROR,       /* engine error (message in the event) */
    SRV_FINISH_GRAMMAR,     /* the grammar came to a dead end: the model's end token was the
                               only way on and the value is not complete (a vocabulary without
                               the tokens a response_format or tool schema needs) */
} srv_finish;

const char *srv_finish_name(srv_finish f);   /* "stop", "length", ... */

/* srv_task.grammar_lazy: which first non-blank byte of the answer puts it under the grammar */
enum { SRV_LAZY_OFF = 0, SRV_LAZY_OBJECT = 1, SRV_LAZY_OBJECT_ARRAY = 2 };

/* What a task asks the engine for. */
typedef enum srv_task_kind {
    SRV_TASK_GENERATE = 0,          /* sample max_tokens (>= 1) tokens after the prompt */
    SRV_TASK_SCORE,                 /* only the prompt's log-probabilities (echo + logprobs with
                                       max_tokens 0): ends once the prompt is in the cache */
    SRV_TASK_EMBED,                 /* the mean of the prompt's final-normed hidden states, L2
                                       normalised (/v1/embeddings): one SRV_EV_EMBED, then DONE */
} srv_task_kind;

/* One sequence to generate or score. The loop fills the request part, submits, and never
 * touches it again: from srv_sched_submit on, the scheduler owns it and frees it when it ends. */
typedef struct srv_task {
    /* request part (filled by the loop) */
    uint64_t id;                    /* unique, from srv_sched_next_id */
    srv_task_kind kind;             /* what it asks for (max_tokens 0 without an embedding:
                                       SRV_TASK_SCORE) */
    int32_t *prompt;                /* [n_prompt]; owned (malloc) */
    int n_prompt;
    int shares_prompt;              /* a later choice of an n > 1 request: its prompt is counted
                                       once, with the first choice (claq_prompt_tokens_total =
                                       the requests' usage.prompt_tokens) */
    int max_tokens;                 /* >= 0 */
    eng_sampler_cfg scfg;           /* scfg.bias points at bias below */
    eng_logit_bias *bias;           /* [n_bias]; owned (malloc) or NULL */
    int want_logprobs;              /* send eng_logprob with each token */
    int prompt_lp_from;             /* >= 1: send SRV_EV_PROMPT_LP for prompt tokens
                                       [prompt_lp_from, n_prompt) (echo + logprobs); 0 = off */
    int n_top_prompt;               /* alternatives per prompt token (0..ENG_MAX_TOP_LOGPROBS) */
    eng_gen dec;                    /* decoding after the prompt: the loop sets its budget,
                                       stop strings (validated there) and stop ids (EOS, BOS,
                                       <|im_end|>, ...); started at the first admission */
    double deadline;                /* uv_hrtime seconds after which the task times out */
    eng_grammar *grammar;           /* response_format / tools: the answer's grammar, or NULL;
                                       owned */
    int grammar_lazy;               /* SRV_LAZY_* (tool_choice auto): the grammar holds only if
                                       the first non-blank byte is '{' (or '[' too); any other
                                       first byte makes the answer free text */
    /* scheduler part (zero at submit) */
    eng_gmatch *gm;                 /* grammar state and mask cache; owned */
    uint32_t *mask;                 /* [(vocab + 31) / 32] this step's allowed tokens; owned */
    struct srv_task *next;          /* list link; owned by whichever list holds the task */
    eng_seq seq;                    /* KV blocks; owned */
    int32_t *gen;                   /* [cap_gen] tokens generated so far, in order (a preempted
                                       task recomputes their K/V); owned (malloc) */
    int cap_gen;
    int n_gen;                      /* tokens generated */
    int n_fed;                      /* positions whose K/V are in the cache: the prompt first,
                                       then generated tokens; 0 again after a preemption */
    int admitted;                   /* sampler and detokenizer set up (stays 1 when preempted) */
    int preemptions;                /* times its KV blocks were taken back */
    int cached_tokens;              /* prompt positions its first admission found in the prefix
                                       cache (their K/V reused, not computed) */
    double *embed_sum;              /* SRV_TASK_EMBED: [dim] sum of the hidden states so far,
                                       in position order; owned */
    int cancelled;
    double last_emit;               /* time of the last event sent (keep-alives) */
} srv_task;

typedef enum srv_event_kind {
    SRV_EV_TOKEN = 1,       /* one generated token (+ the text it made safe to emit) */
    SRV_EV_DONE,            /* the task ended: finish, final text, token counts */
    SRV_EV_KEEPALIVE,       /* nothing produced yet, still alive (SSE comment) */
    SRV_EV_PROMPT_LP,       /* log-probability of one prompt token (token, prev_token, lp) */
    SRV_EV_EMBED,           /* an embedding task's vector (vec, n_vec), just before its DONE */
    SRV_EV_READY,           /* model loaded (task_id 0) */
    SRV_EV_LOAD_FAILED,     /* model failed to load (msg) */
} srv_event_kind;

typedef struct srv_event {
    srv_event_kind kind;
    uint64_t task_id;
    char *text;                     /* owned (malloc) or NULL */
    size_t text_len;
    size_t token_chars;             /* SRV_EV_TOKEN: characters the token added to the answer's
                                       text, whenever the stop matcher lets them out */
    int32_t token;
    int32_t prev_token;             /* SRV_EV_PROMPT_LP: the prompt token before token */
    int has_lp;
    eng_logprob lp;
    srv_finish finish;
    int prompt_tokens, completion_tokens;
    int cached_tokens;              /* SRV_EV_DONE: prompt tokens served from the prefix cache */
    float *vec;                     /* SRV_EV_EMBED: [n_vec]; owned (malloc) */
    int n_vec;
    char msg[256];
} srv_event;

typedef struct srv_sched_stats {
    int running, waiting;           /* sequences admitted / queued */
    int kv_used_tokens, kv_total_tokens;
    uint64_t steps;                 /* engine steps so far */
    /* counted when a sequence ends, whoever was waiting for it (even nobody): */
    uint64_t prompt_tokens;         /* prompt tokens of ended sequences */
    uint64_t generation_tokens;     /* tokens they generated */
    uint64_t finished_stop, finished_length;
    uint64_t cancelled;             /* client gone or shutdown */
    uint64_t timeouts;              /* request deadline passed */
    uint64_t errors;                /* engine failures */
    uint64_t preemptions;           /* running sequences whose KV blocks were taken back (they
                                       wait again, then recompute their K/V) */
    kern_xfer_stats xfer;           /* backend's host <-> device bytes (all 0 on the CPU) */
    kern_graph_stats graphs;        /* steps launched as CUDA graphs (all 0 unless on) */
    /* prefix cache (0 when --no-prefix-cache): counted at each admission, readmissions after a
       preemption included */
    uint64_t prefix_queries;        /* positions looked up (the tokens a sequence knows) */
    uint64_t prefix_hits;           /* of those, found cached */
    int prefix_blocks;              /* blocks in the cache's index */
} srv_sched_stats;

typedef struct srv_sched {
    const srv_config *cfg;          /* borrowed from main for the scheduler's life */
    uv_async_t *wake;               /* borrowed: the loop's async handle, sent after each post */
    uv_thread_t thread;
    int started;
    uv_mutex_t mu;
    uv_cond_t cv;
    /* under mu: */
    srv_task *inbox_head, *inbox_tail;  /* submitted, not yet seen by the scheduler; owned */
    uint64_t *cancels; int n_cancels, cap_cancels;  /* ids to cancel; owned */
    srv_event *outbox; int n_out, cap_out;          /* events for the loop; owned */
    int stop;                       /* 1: cancel everything and exit */
    int n_inbox;
    srv_sched_stats stats;          /* published after each step */
    uint64_t next_id;
    /* set by the scheduler thread before SRV_EV_READY, read-only for everyone afterwards: */
    eng_model *model;               /* owned */
    eng_tokenizer *tok;             /* owned */
    int n_ctx;                      /* longest prompt + max_tokens a request may ask for */
    int64_t kv_tokens;              /* positions in the KV pool */
    kern_dtype kv_dtype;            /* its entries: KERN_F32 or KERN_F16 */
    int prefill_bf16;               /* --prefill-precision bf16: prompt items take matmul_bf16 */
    /* scheduler thread only: */
    kern_backend be;                /* owned */
    eng_resident *res;              /* owned: the model's weights on be, uploaded once at load */
    eng_ctx *ctx;                   /* owned; runs on res */
    eng_kv kv;                      /* owned */
    float *logits;                  /* [batch cap][vocab]; owned */
    float *hidden;                  /* [batch cap][dim] final-normed states (embeddings); owned */
    int32_t *picks;                 /* [batch cap] the backend's picks; owned */
    kern_sample_params *sparams;    /* [batch cap] each row's rules for the backend's pick; owned */
    kern_sample_adj *adj;           /* [adj_cap] the rows' bias and penalty entries; owned */
    size_t adj_cap;
    uint32_t *allow;                /* [allow_cap] words: the grammar masks of backend-sampled
                                       rows, (vocab + 31) / 32 words each; owned */
    size_t allow_cap;
    eng_logprob *slp;               /* [batch cap] the backend's logprobs of its picks; owned */
    eng_batch_item *items;          /* [batch cap]; owned */
    srv_task **item_task;           /* [batch cap] task of each item; borrowed */
    eng_batch_item *iso_items;      /* [batch cap]; owned: one task's items when a batch failed */
    srv_task **iso_task;            /* [batch cap]; borrowed */
    int batch_cap;
    srv_task *waiting, *running;    /* lists; owned */
    eng_gvocab *gvocab;             /* token bytes for grammars, built at the first constrained
                                       task; owned */
    srv_sched_stats counts;         /* the counters above, copied into stats at publish */
} srv_sched;

/* Starts the scheduler thread, which loads the model then posts SRV_EV_READY or
 * SRV_EV_LOAD_FAILED. s must be zeroed. Loop thread. */
int srv_sched_start(srv_sched *s, const srv_config *cfg, uv_async_t *wake);
/* Cancels everything, joins the thread, frees the engine. Safe on a zeroed or stopped struct. */
void srv_sched_stop(srv_sched *s);
uint64_t srv_sched_next_id(srv_sched *s);
/* Hands tasks over (all or none). Returns 0, or -1 when waiting + n would exceed max_queue (the
 * tasks stay the caller's). Any thread. */
int srv_sched_submit(srv_sched *s, srv_task **tasks, int n);
void srv_sched_cancel(srv_sched *s, const uint64_t *ids, int n);
/* Swaps the outbox out: *out gets an array (caller frees it and each text) of *n events. */
void srv_sched_drain(srv_sched *s, srv_event **out, int *n);
void srv_sched_get_stats(srv_sched *s, srv_sched_stats *st);
/* Frees what an event owns (text, vec). */
void srv_event_free(srv_event *e);
/* Frees a task that was never submitted (or after the scheduler is done with it). */
void srv_task_free(srv_task *t);

#endif
