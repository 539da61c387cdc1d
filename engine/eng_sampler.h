/* eng_sampler.h — next-token choice from logits: greedy, temperature, top-k, top-p, min-p,
 * repetition / presence / frequency penalties, logit bias, a seeded RNG (reproducible runs), and
 * log-probabilities of the chosen token and the top N. One sampler per sequence; the caller owns
 * it; not shared across threads. */
#ifndef ENG_SAMPLER_H
#define ENG_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "eng_err.h"
#include "kern.h"

#define ENG_MAX_TOP_LOGPROBS 20

/* The range a request may ask for, one definition for every front end: the server's OpenAI
 * fields and the claq tool's flags check against these (OpenAI's ranges where OpenAI has one,
 * vLLM's for the others). eng_sampler_init itself accepts the wider mathematical domain (any
 * finite temperature >= 0, ...), which the engine's own tests use to flatten distributions. */
#define ENG_TEMPERATURE_MAX 2.0         /* temperature in [0, 2]; 0 is greedy */
#define ENG_TOP_K_MAX (1 << 24)         /* top_k in [0, 2^24]; 0 is off */
/* top_p in (0, 1]; min_p in [0, 1] */
#define ENG_PENALTY_MAX 2.0             /* presence / frequency penalty in [-2, 2] */
#define ENG_REPETITION_MIN 0.01         /* repetition penalty in [0.01, 10]; 1 is off */
#define ENG_REPETITION_MAX 10.0
#define ENG_LOGIT_BIAS_MAX 100.0        /* each logit_bias in [-100, 100] */

typedef struct eng_logit_bias {
    int32_t token;
    float bias;                 /* added to the logit; -100 effectively bans, +100 forces */
} eng_logit_bias;

typedef struct eng_sampler_cfg {
    float temperature;          /* <= 0: greedy (argmax, lowest id on ties) */
    int top_k;                  /* <= 0: off */
    float top_p;                /* >= 1: off */
    float min_p;                /* <= 0: off; keep tokens with p >= min_p * p_max */
    float repetition_penalty;   /* 1: off; CTRL-style, divides positive / multiplies negative;
                                   tokens of the prompt and of the output (as vLLM/HF) */
    float presence_penalty;     /* 0: off; OpenAI: minus once per token of the output */
    float frequency_penalty;    /* 0: off; OpenAI: minus per occurrence in the output */
    uint64_t seed;              /* RNG seed */
    int n_top_logprobs;         /* 0..ENG_MAX_TOP_LOGPROBS */
    const eng_logit_bias *bias; /* borrowed for the sampler's life; may be NULL */
    int n_bias;
} eng_sampler_cfg;

void eng_sampler_cfg_default(eng_sampler_cfg *c);   /* temperature 1, everything else off */

typedef struct eng_logprob {
    int32_t token;              /* the chosen token */
    float logprob;              /* its log-probability (of the distribution after penalties and
                                   bias, before temperature/truncation, as OpenAI reports) */
    int n_top;
    int32_t top_ids[ENG_MAX_TOP_LOGPROBS];
    float top_logprobs[ENG_MAX_TOP_LOGPROBS];  /* descending */
} eng_logprob;

/* The raw distribution's log-probability of tok, and its n_top (0..ENG_MAX_TOP_LOGPROBS) best
 * tokens, descending, lowest id first on ties (prompt scoring: no bias, penalties or
 * temperature). x[vocab] is cleaned in place as the sampler cleans logits (NaN -> -inf,
 * +inf -> a huge finite value): the same log-softmax and top-n as eng_sampler_sample's. All
 * -inf: logprob -inf, no alternatives. */
void eng_logprob_score(float *x, int vocab, int32_t tok, int n_top, eng_logprob *lp);

typedef struct eng_sampler {
    eng_sampler_cfg cfg;
    int vocab;
    uint64_t rng[4];            /* xoshiro256** state */
    float *probs;               /* [vocab] scratch; owned */
    int32_t *idx;               /* [vocab] scratch; owned */
    uint32_t *counts;           /* [vocab] occurrences in the output, for penalties; owned */
    uint8_t *in_prompt;         /* [vocab] 1: in the prompt (repetition penalty only); owned */
    int32_t *seen;              /* [vocab] the tokens with counts > 0 or in_prompt, in the order
                                   first seen (what a device needs for the penalties); owned */
    int n_seen;
    const uint32_t *allow;      /* [(vocab + 31) / 32] bitset of the tokens the next sample may
                                   pick (constrained decoding), or NULL; borrowed for one
                                   eng_sampler_sample call, which clears it */
} eng_sampler;

int eng_sampler_init(eng_sampler *s, const eng_sampler_cfg *cfg, int vocab, eng_err *err);
void eng_sampler_free(eng_sampler *s);  /* safe on zeroed struct, idempotent */

/* Records a generated token for the penalties (all three). */
void eng_sampler_accept(eng_sampler *s, int32_t token);
/* Records a prompt token: only the repetition penalty looks at the prompt (presence and frequency
 * count the output, as OpenAI's and vLLM's do). */
void eng_sampler_accept_prompt(eng_sampler *s, int32_t token);

/* Restricts the next eng_sampler_sample to the tokens whose bit is set in allow (bit t of word
 * t / 32); the others get -inf after bias and penalties, so logprobs describe the constrained
 * distribution. allow must stay valid until that call; NULL lifts the restriction. */
void eng_sampler_set_allow(eng_sampler *s, const uint32_t *allow);

/* The uniform draw the next temperature sample will use, without taking it (a device that
 * samples gets it: kern_sample_params.u), and taking it once the device's pick is used, so the
 * RNG stream is the one eng_sampler_sample would have consumed. */
double eng_sampler_peek_uniform(const eng_sampler *s);
void eng_sampler_skip_uniform(eng_sampler *s);
/* 1 when s's next sample takes a uniform draw (temperature sampling), 0 when it is greedy. */
int eng_sampler_draws(const eng_sampler *s);
/* kern_sample's rules for s's next token: *p from s's configuration, the draw it would take
 * (0 when greedy) and n_logprobs (< 0: none); its bias and penalty entries (kern.h: the bias
 * entries in the configuration's order, then one penalty entry per token the penalties touch)
 * written to adj[0..cap), which the caller places at adj_off of the step's entries. Returns the
 * number of entries (eng_sampler_device_entries), or ENG_E_FULL when cap is too small. */
int eng_sampler_device_params(const eng_sampler *s, int n_logprobs, kern_sample_adj *adj,
                              int cap, int adj_off, kern_sample_params *p);
int eng_sampler_device_entries(const eng_sampler *s);
/* eng_sampler_sample on logits a device already adjusted and cleaned (kern_sample left the row
 * to the host: -2): the same choice and draw, without applying bias and penalties again. */
int32_t eng_sampler_sample_adjusted(eng_sampler *s, float *logits, eng_logprob *lp);

/* Picks the next token from logits [vocab] (modified in place). lp may be NULL. Returns the
 * token id (>= 0) or a negative ENG_E_* code. */
int32_t eng_sampler_sample(eng_sampler *s, float *logits, eng_logprob *lp);

/* Stop strings matched across token boundaries on the detokenized text stream. Text that could
 * be the start of a stop string is held back until it is decided. Caller owns the struct. */
/* 9: a request's 8 (the server's limit) and the chat template's end-of-turn text. */
#define ENG_MAX_STOPS 9
#define ENG_MAX_STOP_LEN 256

typedef struct eng_stop {
    char stops[ENG_MAX_STOPS][ENG_MAX_STOP_LEN + 1];
    int n_stops;
    char held[ENG_MAX_STOP_LEN];  /* text held back: a proper prefix of some stop */
    int n_held;
    int hit;                      /* 1 once a stop string was found */
} eng_stop;

/* ENG_E_INVAL when there are too many or too long (or empty) stop strings. */
int eng_stop_init(eng_stop *st, const char *const *stops, int n, eng_err *err);
/* Feeds text; writes text safe to emit into out (cap must be >= len + ENG_MAX_STOP_LEN) and
 * returns its length. Sets st->hit when a stop string completes: the stop string and anything
 * after it are not emitted. */
size_t eng_stop_feed(eng_stop *st, const char *text, size_t len, char *out, size_t cap);
/* At end of generation (no stop hit): returns the held-back text. */
size_t eng_stop_flush(eng_stop *st, char *out, size_t cap);

#endif
