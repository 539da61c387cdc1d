/* eng_forward.h — the LLaMA/Yi forward pass over a batch of tokens that may belong to different
 * sequences at different positions: continuous batching (one decode token for each of several
 * sequences) and prefill (many consecutive tokens of one sequence) are the same call. Each token
 * writes its K/V into its sequence's blocks, then attends to positions 0..pos of that sequence.
 * One eng_ctx per driving thread (it owns scratch); the model is shared read-only. */
#ifndef ENG_FORWARD_H
#define ENG_FORWARD_H

#include <stdint.h>

#include "eng_err.h"
#include "eng_kv.h"
#include "eng_model.h"
#include "eng_resident.h"
#include "eng_sampler.h"
#include "kern.h"

typedef struct eng_batch_item {
    int32_t token;           /* input token id */
    int32_t pos;             /* its position in its sequence */
    eng_seq *seq;            /* its sequence; blocks must already cover pos (eng_kv_reserve) */
    int want_logits;         /* 1: write logits for this token */
    int prompt;              /* 1: a prompt token being read (not one the model generated): its
                                linears take the relaxed prefill numerics where the ctx has them
                                on (eng_ctx_set_prefill_bf16); 0 (the default): exact */
} eng_batch_item;

/* Called with the input of each group of linears (the quantizer's calibration hook):
 * group 0 = {q,k,v} input [n][dim], 1 = {o} input [n][n_heads*hd], 2 = {gate,up} input [n][dim],
 * 3 = {down} input [n][hidden]. x is valid only during the call. */
typedef void (*eng_capture_fn)(void *ud, int layer, int group, const float *x, int n, int width);

typedef struct eng_ctx eng_ctx;

/* Scratch for up to max_batch tokens per call. The backend is borrowed (outlives the ctx). */
int eng_ctx_create(eng_ctx **out, const eng_model *m, kern_backend *be, int max_batch,
                   eng_err *err);
void eng_ctx_destroy(eng_ctx *c);   /* NULL-safe */
int eng_ctx_max_batch(const eng_ctx *c);
void eng_ctx_set_capture(eng_ctx *c, eng_capture_fn fn, void *ud);
/* Replace the weights used for layer l (the quantizer swaps in fake-quantized copies).
 * NULL restores the ctx's own (the resident set's, else the model's). Borrowed until replaced or
 * the ctx is destroyed. */
void eng_ctx_set_layer_weights(eng_ctx *c, int layer, const eng_layer_weights *lw);
/* Relaxed prefill numerics (on = 1; off, the default): the linears of items marked `prompt`
 * run through kern.h matmul_bf16 (inputs and weights in bfloat16, sums in fp32: about twice
 * the fp32 GEMM's speed on CPUs with AVX512_BF16) instead of matmul. Items not so marked keep
 * matmul's exact bits, and every token's result still depends on nothing but its own inputs,
 * so batching stays invariant; what changes is that a prompt token's numbers are no longer
 * those of the same token fed as a generated one (docs/cpu-backend.md). Where the backend or
 * a matrix has no bfloat16 path the matmul runs as usual. ENG_E_UNSUPPORTED (nothing changed)
 * when the backend has no matmul_bf16 op at all. */
int eng_ctx_set_prefill_bf16(eng_ctx *c, int on);
/* Runs on r's device copies (every layer, the embedding and the head) instead of the model's
 * host weights; NULL goes back to the model's. r must be of this ctx's model and outlive its use
 * here. ENG_E_INVAL for another model's set. */
int eng_ctx_use_resident(eng_ctx *c, const eng_resident *r);

/* What a forward pass hands back to the host, for the items with want_logits, in item order.
 * Either may be NULL; on a device backend only what is asked for crosses to the host. */
typedef struct eng_forward_out {
    float *logits;          /* [n_want][vocab] */
    int32_t *argmax;        /* [n_want] the greedy pick (eng_sampler's at temperature 0 without
                               bias, penalties or a grammar: lowest id on ties), or -1 for a row
                               without a finite logit; chosen on the backend */
    float *hidden;          /* [n_want][dim] the final-normed hidden state of each wanted row
                               (what the head multiplies: embeddings), or NULL */
    /* With argmax: each row's pick by these rules instead (temperature <= 0: greedy, as
     * above, after the row's bias and penalty entries; else eng_sampler's rules from the draw
     * u, which the caller peeked: eng_sampler_peek_uniform). A row the backend leaves to the
     * host reads -2 in argmax and its logits row, adjusted, is written to sample_logits (the
     * caller then runs eng_sampler_sample_adjusted on it, which takes the same draw). Use only
     * where kern_has_sample: without it the rows are argmax picks of the raw logits. */
    const kern_sample_params *sample;   /* [n_want] or NULL */
    float *sample_logits;               /* [n_want][vocab]; may be logits */
    const kern_sample_adj *sample_adj;  /* [n_sample_adj] the rows' bias and penalty entries
                                           (kern_sample_params.adj_off), or NULL */
    int n_sample_adj;
    const uint32_t *sample_allow;       /* [n_sample_allow] words: the grammar masks of the rows
                                           with has_allow (kern_sample_params.allow_off, each
                                           (vocab + 31) / 32 words), or NULL */
    int64_t n_sample_allow;
    eng_logprob *sample_lp;             /* [n_want] or NULL: the log-probabilities of each row
                                           with n_logprobs >= 0 and a pick >= 0 */
} eng_forward_out;

/* Runs the whole model on n items (n <= max batch, larger batches are split by the caller).
 * On a device backend the ctx must use resident weights (eng_ctx_use_resident) and kv must live
 * on the same backend (eng_kv_init_on); then only the step's ids, positions, slots and block
 * tables go to the device and only `out` comes back. */
int eng_forward_ex(eng_ctx *c, eng_kv *kv, const eng_batch_item *items, int n,
                   const eng_forward_out *out, eng_err *err);
/* eng_forward_ex with logits only: logits gets [count of items with want_logits][vocab]. */
int eng_forward(eng_ctx *c, eng_kv *kv, const eng_batch_item *items, int n, float *logits,
                eng_err *err);

/* Pieces of eng_forward, for the quantizer: embedding into x [n][dim]; one decoder layer
 * in place on x; final norm + head. They take the caller's host arrays, so they run on host
 * backends only (ENG_E_INVAL elsewhere); so does the capture hook. */
int eng_forward_embed(eng_ctx *c, const eng_batch_item *items, int n, float *x, eng_err *err);
int eng_forward_layer(eng_ctx *c, eng_kv *kv, int layer, const eng_batch_item *items, int n,
                      float *x, eng_err *err);
/* The attention half of decoder layer l alone (attn_norm, q/k/v, RoPE, K/V into the cache,
 * attention): att gets [n][n_heads*head_dim], the input of o_proj; x is not modified. The
 * quantizer's staged calibration passes compute the rest from it with kern_* calls. */
int eng_forward_attn(eng_ctx *c, eng_kv *kv, int layer, const eng_batch_item *items, int n,
                     const float *x, float *att, eng_err *err);
int eng_forward_head(eng_ctx *c, const eng_batch_item *items, int n, const float *x,
                     float *logits, eng_err *err);

#endif
