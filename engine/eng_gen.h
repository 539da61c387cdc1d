/* eng_gen.h — one sequence's decoding after its prompt, the same for `claq generate` and for
 * each of the server's sequences: the sampler (penalties see the prompt and the output), the
 * detokenizer (only whole UTF-8 leaves it), the stop strings (text that may begin one is held
 * back), the stop token ids and the token budget. The caller runs the model, samples with
 * g->sampler, and hands each chosen token to eng_gen_push, which says whether the sequence
 * goes on and gives the text it made safe to emit. One owner thread; the struct is the
 * caller's. */
#ifndef ENG_GEN_H
#define ENG_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "eng_err.h"
#include "eng_model.h"
#include "eng_sampler.h"
#include "eng_tokenizer.h"

#define ENG_GEN_MAX_STOP_IDS 20   /* EOS, BOS, the config's eos ids (<= 8), ends of turn */
/* out capacity that eng_gen_push and eng_gen_flush always fit */
#define ENG_GEN_TEXT_CAP (1024 + ENG_MAX_STOP_LEN + 8)

typedef enum eng_gen_end {
    ENG_GEN_GOING = 0,
    ENG_GEN_END_ID,         /* a stop token id (EOS, BOS, end of turn): adds no text */
    ENG_GEN_END_STRING,     /* a stop string completed: the text ends before it */
    ENG_GEN_END_LENGTH,     /* max_tokens tokens chosen */
} eng_gen_end;

typedef struct eng_gen {
    eng_sampler sampler;    /* owned once started */
    eng_detok detok;
    eng_stop stop;
    int32_t stop_ids[ENG_GEN_MAX_STOP_IDS];
    int n_stop_ids;
    int max_tokens;         /* >= 1 */
    int n_gen;              /* tokens pushed, a final stop id included */
    size_t last_chars;      /* characters (code points) the last pushed token added to the
                               text, counted before any were held back for a stop string */
    int started;
} eng_gen;

/* Zeroes g: no stop strings or ids yet, budget max_tokens. */
void eng_gen_init(eng_gen *g, int max_tokens);
/* Stop strings (ENG_E_INVAL: too many, too long, empty). */
int eng_gen_set_stops(eng_gen *g, const char *const *stops, int n, eng_err *err);
/* From the next token on, the stop strings are not matched (a grammar decides the end); text
 * held back as a possible stop prefix comes out with the next text, or at eng_gen_flush. */
void eng_gen_drop_stops(eng_gen *g);
/* Adds stop token ids (repeats and ids past ENG_GEN_MAX_STOP_IDS are dropped). */
void eng_gen_add_stop_ids(eng_gen *g, const int32_t *ids, int n);
/* Adds the ids that end every sequence of model m: the tokenizer's EOS (else the config's),
 * every end-of-sequence id of the config (LLaMA-3.1 lists three), and BOS, which llama2.c
 * checkpoints emit between stories and which never belongs inside an answer. */
void eng_gen_add_model_stop_ids(eng_gen *g, const eng_model *m, const eng_tokenizer *tok);
int eng_gen_is_stop_id(const eng_gen *g, int32_t tok);
/* Starts decoding after prompt[n_prompt] (n_prompt >= 1): the sampler for vocab tokens, with
 * the prompt counted for the repetition penalty, and the detokenizer after its last token. */
int eng_gen_start(eng_gen *g, const eng_sampler_cfg *sc, int vocab, const eng_tokenizer *tok,
                  const int32_t *prompt, int n_prompt, eng_err *err);
/* The next chosen token: counts it, and unless it is a stop id, feeds the sampler, the
 * detokenizer and the stop strings. Writes the text now safe to emit into out[cap]
 * (cap >= ENG_GEN_TEXT_CAP) and its length into *n_out. */
eng_gen_end eng_gen_push(eng_gen *g, int32_t tok, char *out, size_t cap, size_t *n_out);
/* The sequence ended for another reason than a stop string (a stop id, the budget, the
 * context, a deadline): the text still held back, into out[cap >= ENG_GEN_TEXT_CAP]. */
size_t eng_gen_flush(eng_gen *g, char *out, size_t cap);
void eng_gen_free(eng_gen *g);   /* safe on an initialised or zeroed g, idempotent */

#endif
