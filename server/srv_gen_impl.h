/* srv_gen_impl.h — private to the srv_gen*.c files: a generation and its choices, and the
 * functions they share (the task map, the OpenAI JSON of srv_gen_json.c, the lifetime in
 * srv_gen.c). Loop thread only. */
#ifndef SRV_GEN_IMPL_H
#define SRV_GEN_IMPL_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "srv_gen.h"
#include "srv_gen_tools.h"

/* A token's logprobs entry waiting for its text (see srv_choice.held). */
typedef struct srv_lp_held {
    srv_event ev;               /* the token's event, text NULL; ev.prev_token: the token before */
    uint64_t before;            /* characters of the answer ahead of the token's own */
} srv_lp_held;

typedef struct srv_choice {
    uint64_t task_id;
    int prompt_idx;
    srv_buf text;               /* non-stream: the text so far; owned */
    int done;
    srv_finish finish;
    int completion_tokens;
    int cached_tokens;          /* of its prompt, served from the prefix cache */
    cJSON *lp;                  /* non-stream logprobs being built; owned */
    size_t text_offset;         /* completions logprobs: offset of the next token's text */
    size_t prompt_offset;       /* echo + logprobs: offset of the next prompt token's text */
    uint16_t *prompt_adv;       /* echo + logprobs: [n_prompt_adv] characters each prompt token
                                   adds to the echoed text (a streaming decode of the ids, so a
                                   character split over byte tokens counts once); owned */
    int n_prompt_adv, prompt_at;   /* ... and the next prompt token to get an entry */
    int echo_pending;           /* stream + echo + logprobs: the echo chunk waits for the
                                   prompt's logprobs, sent before the first token */
    int32_t prev_tok;           /* for token text (leading-space rule) */
    /* Logprobs follow the text: a token's entry waits while the stop matcher holds its text
     * back, goes out with the first of its characters, and is dropped when a stop string takes
     * all of them (a client that rebuilds or highlights the text from the tokens would show the
     * stop string). Not used for choices that may call tools. */
    srv_lp_held *held;          /* [n_held], oldest first; owned */
    int n_held, cap_held;
    uint64_t chars_fed;         /* characters of every token so far (token_chars summed) */
    uint64_t chars_out;         /* characters of the answer's text let out so far */
    uint64_t t_last;            /* uv_hrtime of the last token (inter-token latency) */
    char msg[256];              /* error text when finish is ERROR/TIMEOUT */
    srv_toolscan ts;            /* tools: text or calls, read as it comes; owned */
    float *vec;                 /* embeddings: the prompt's vector [n_vec]; owned */
    int n_vec;
} srv_choice;

typedef struct srv_gen {
    srv_server *srv;            /* borrowed */
    srv_resp *resp;             /* borrowed: the slot that owns this generation */
    srv_gen_kind kind;
    int stream, include_usage, echo, logprobs, top_logprobs;
    char id[64];
    long long created;
    int n_choices, n_done;
    srv_choice *choices;        /* [n_choices]; owned */
    int n_prompts;
    int *prompt_tokens;         /* [n_prompts]; owned */
    char **echo_text;           /* [n_prompts] owned strings, or NULL without echo */
    size_t *echo_len;           /* [n_prompts]; owned */
    int got_first;              /* a first token has arrived (TTFT) */
    int tools;                  /* answers may be tool calls (choice.ts in use) */
    int base64;                 /* embeddings as base64 of little-endian float32 */
} srv_gen;

static inline uint64_t srv_gen_mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

/* srv_gen_map.c: task id -> (generation, choice), open addressing */
int srv_gen_map_put(srv_server *s, uint64_t id, srv_gen *g, int choice);
srv_task_ref *srv_gen_map_get(srv_server *s, uint64_t id);
void srv_gen_map_del(srv_server *s, uint64_t id);

/* srv_gen.c */
void srv_gen_free(srv_server *s, srv_gen *g);

/* srv_gen_json.c: the OpenAI objects and SSE chunks */
cJSON *srv_gen_chunk_base(srv_gen *g);
void srv_gen_chunk_send(srv_gen *g, cJSON *o);
cJSON *srv_gen_lp_new(srv_gen *g);
size_t srv_gen_utf8_chars(const char *p, size_t len);
/* Appends token event e's logprobs entry (prev: the token before it) to target. */
void srv_gen_lp_add(srv_gen *g, srv_choice *c, cJSON *target, int32_t prev, const srv_event *e);
/* echo + logprobs: c's prompt_adv from the prompt's ids, the first `from` not shown (BOS).
 * Returns 0, or -1 when memory runs out. */
int srv_gen_prompt_advances(srv_gen *g, srv_choice *c, const int32_t *ids, int n, int from);
void srv_gen_lp_add_prompt(srv_gen *g, srv_choice *c, int32_t prev, int32_t tok,
                          const srv_event *e);
/* One streamed chunk for choice ci: text (may be NULL), the logprobs entries lps[n_lps], the
 * finish reason, and (chat) tool call deltas, which it takes over (NULL: none). */
void srv_gen_stream_chunk(srv_gen *g, int ci, const char *text, size_t len,
                          const srv_lp_held *lps, int n_lps, const char *finish,
                          cJSON *tool_calls);
void srv_gen_complete(srv_server *s, srv_gen *g);
void srv_gen_echo_flush(srv_gen *g, int ci);
void srv_gen_tool_event(srv_gen *g, int ci, const srv_event *e, int last);

#endif
