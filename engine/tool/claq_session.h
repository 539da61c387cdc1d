/* claq_session.h — what the model-running subcommands share: model + tokenizer + backend + the
 * weights made resident on it + forward ctx + KV cache, opened together from the common flags and
 * freed in reverse order. */
#ifndef CLAQ_SESSION_H
#define CLAQ_SESSION_H

/* The --prefill-precision entry of a subcommand's flag table. */
#define CLAQ_PREFILL_PRECISION_HELP                                                                \
    "prompt linears: fp32 (default, exact) or bf16 (bfloat16 products: 1.6-1.8x the speed on "    \
    "CPUs with AVX512_BF16, relaxed numerics, docs/cpu-backend.md)"

#include "eng_forward.h"
#include "eng_kv.h"
#include "eng_model.h"
#include "eng_resident.h"
#include "eng_tokenizer.h"

typedef struct claq_session {
    eng_model *model;        /* owned */
    eng_tokenizer *tok;      /* owned; NULL when not requested */
    kern_backend be;         /* owned */
    eng_resident *res;       /* owned: the model's weights on be, uploaded once at open */
    eng_ctx *ctx;            /* owned; runs on res */
    eng_kv kv;               /* owned */
} claq_session;

/* Opens everything; on failure prints the error to stderr (prefixed by cmd), frees what was built
 * and returns non-zero. device: "cpu", "cuda" or "auto" (NULL = cpu). threads <= 0: one per core.
 * kv_tokens: KV cache capacity in positions (0: none yet). */
int claq_session_open(claq_session *s, const char *cmd, const char *model_path,
                      const char *tokenizer_path, int want_tokenizer, const char *device,
                      int threads, int max_batch, int64_t kv_tokens);
void claq_session_close(claq_session *s);

/* Runs tokens [0, n) of one sequence through the model starting at position start (the sequence's
 * blocks are reserved here), in chunks of the ctx's max batch. logits: NULL for none, else
 * [n][vocab] for every token when all_logits, or [vocab] for the last token only. */
int claq_session_prefill(claq_session *s, eng_seq *seq, const int32_t *tokens, int n, int start,
                         int all_logits, float *logits, eng_err *err);

/* --prefill-precision: s NULL or "fp32" gives 0, "bf16" 1; anything else is a message on stderr
 * (prefixed by cmd) and -1. */
int claq_parse_prefill_precision(const char *cmd, const char *s, int *bf16);
/* Turns the relaxed prefill numerics on (eng_ctx_set_prefill_bf16) when bf16: non-zero after a
 * message when the backend has no bfloat16 path at all; a note on stderr when this CPU lacks
 * AVX512_BF16 (prompts then run in fp32 as without the flag). */
int claq_session_set_prefill_bf16(claq_session *s, const char *cmd, int bf16);

/* Parses "1 2 3" (spaces or commas) into ids; returns the count or -1 (message on stderr). */
int claq_parse_ids(const char *s, int32_t *ids, int cap);

#endif
