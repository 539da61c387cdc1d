/* eng_sampler.c — next-token choice from one logits row: bias, penalties, log-probs, greedy,
 * temperature, top-k, top-p, min-p and a seeded xoshiro256** draw (contract in eng_sampler.h).
 * Does not detokenize or match stop strings (eng_stop.c does). One sampler per sequence, used by
 * one thread at a time (the scheduler thread); no globals. */
#include "eng_sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- RNG: xoshiro256** seeded through splitmix64 (Blackman & Vigna) ------------------------ */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(uint64_t s[4])
{
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

/* Uniform double in [0, 1) from the top 53 bits. */
static double rng_uniform(uint64_t s[4])
{
    return (double)(xoshiro_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- config ------------------------------------------------------------------------------ */

void eng_sampler_cfg_default(eng_sampler_cfg *c)
{
    memset(c, 0, sizeof *c);
    c->temperature = 1.0f;
    c->top_k = 0;
    c->top_p = 1.0f;
    c->min_p = 0.0f;
    c->repetition_penalty = 1.0f;
    c->presence_penalty = 0.0f;
    c->frequency_penalty = 0.0f;
    c->seed = 0;
    c->n_top_logprobs = 0;
    c->bias = NULL;
    c->n_bias = 0;
}

/* Checks every field; the message names the offending one. */
static int cfg_validate(const eng_sampler_cfg *c, int vocab, eng_err *err)
{
    if (vocab <= 0)
        return eng_err_set(err, ENG_E_INVAL, "sampler: vocab must be > 0 (got %d)", vocab);
    if (!isfinite(c->temperature) || c->temperature < 0.0f)
        return eng_err_set(err, ENG_E_INVAL,
                           "sampler: temperature must be finite and >= 0 (got %g)",
                           (double)c->temperature);
    if (!(c->top_p > 0.0f && c->top_p <= 1.0f))
        return eng_err_set(err, ENG_E_INVAL, "sampler: top_p must be in (0, 1] (got %g)",
                           (double)c->top_p);
    if (!(c->min_p >= 0.0f && c->min_p <= 1.0f))
        return eng_err_set(err, ENG_E_INVAL, "sampler: min_p must be in [0, 1] (got %g)",
                           (double)c->min_p);
    if (!isfinite(c->repetition_penalty) || !(c->repetition_penalty > 0.0f))
        return eng_err_set(err, ENG_E_INVAL,
                           "sampler: repetition_penalty must be finite and > 0 (got %g)",
                           (double)c->repetition_penalty);
    if (!isfinite(c->presence_penalty))
        return eng_err_set(err, ENG_E_INVAL, "sampler: presence_penalty must be finite");
    if (!isfinite(c->frequency_penalty))
        return eng_err_set(err, ENG_E_INVAL, "sampler: frequency_penalty must be finite");
    if (c->n_top_logprobs < 0 || c->n_top_logprobs > ENG_MAX_TOP_LOGPROBS)
        return eng_err_set(err, ENG_E_INVAL, "sampler: n_top_logprobs must be in 0..%d (got %d)",
                           ENG_MAX_TOP_LOGPROBS, c->n_top_logprobs);
    if (c->n_bias < 0 || (c->n_bias > 0 && !c->bias))
        return eng_err_set(err, ENG_E_INVAL, "sampler: logit_bias: n_bias %d with %s array",
                           c->n_bias, c->bias ? "an" : "no");
    for (int i = 0; i < c->n_bias; i++) {
        if (c->bias[i].token < 0 || c->bias[i].token >= vocab)
            return eng_err_set(err, ENG_E_INVAL,
                               "sampler: logit_bias[%d].token %d outside [0, %d)", i,
                               (int)c->bias[i].token, vocab);
        if (!isfinite(c->bias[i].bias))
            return eng_err_set(err, ENG_E_INVAL, "sampler: logit_bias[%d].bias is not finite", i);
    }
    return 0;
}

int eng_sampler_init(eng_sampler *s, const eng_sampler_cfg *cfg, int vocab, eng_err *err)
{
    memset(s, 0, sizeof *s);
    if (!cfg)
        return eng_err_set(err, ENG_E_INVAL, "sampler: cfg is NULL");
    int rc = cfg_validate(cfg, vocab, err);
    if (rc)
        return rc;
    s->cfg = *cfg;
    s->vocab = vocab;
    s->probs = malloc((size_t)vocab * sizeof *s->probs);
    s->idx = malloc((size_t)vocab * sizeof *s->idx);
    s->counts = calloc((size_t)vocab, sizeof *s->counts);
    s->in_prompt = calloc((size_t)vocab, 1);
    s->seen = malloc((size_t)vocab * sizeof *s->seen);
    if (!s->probs || !s->idx || !s->counts || !s->in_prompt || !s->seen) {
        eng_sampler_free(s);
        return eng_err_set(err, ENG_E_NOMEM, "sampler: out of memory for vocab %d", vocab);
    }
    uint64_t x = cfg->seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
    return 0;
}

void eng_sampler_free(eng_sampler *s)
{
    if (!s)
        return;
    free(s->probs);
    free(s->idx);
    free(s->counts);
    free(s->in_prompt);
    free(s->seen);
    s->seen = NULL;
    s->n_seen = 0;
    s->probs = NULL;
    s->idx = NULL;
    s->counts = NULL;
    s->in_prompt = NULL;
    s->vocab = 0;
}

double eng_sampler_peek_uniform(const eng_sampler *s)
{
    uint64_t st[4];
    memcpy(st, s->rng, sizeof st);
    return rng_uniform(st);
}

void eng_sampler_skip_uniform(eng_sampler *s)
{
    (void)rng_uniform(s->rng);
}

static int penalties_on(const eng_sampler_cfg *c)
{
    return c->repetition_penalty != 1.0f || c->presence_penalty != 0.0f ||
           c->frequency_penalty != 0.0f;
}

int eng_sampler_draws(const eng_sampler *s)
{
    return s->cfg.temperature > 0.0f && isfinite(1.0f / s->cfg.temperature);
}

int eng_sampler_device_entries(const eng_sampler *s)
{
    return s->cfg.n_bias + (penalties_on(&s->cfg) ? s->n_seen : 0);
}

/* The bias entries in the configuration's order, then one penalty entry per token the
 * penalties touch, into adj[0..cap); ENG_E_FULL when cap is too small. */
static int device_adj(const eng_sampler *s, kern_sample_adj *adj, int cap, int *n_bias,
                      int *n_pen)
{
    const eng_sampler_cfg *c = &s->cfg;
    int n = 0;
    for (int i = 0; i < c->n_bias; i++) {
        if (n == cap)
            return ENG_E_FULL;
        adj[n++] = (kern_sample_adj){.token = c->bias[i].token, .rep = 1.0f,
                                     .val = c->bias[i].bias};
    }
    *n_bias = n;
    if (penalties_on(c)) {
        /* adjust_logits' expressions: the same float operations, so the same bits */
        for (int i = 0; i < s->n_seen; i++) {
            int32_t t = s->seen[i];
            if (n == cap)
                return ENG_E_FULL;
            float sub = s->counts[t] > 0
                            ? c->presence_penalty + c->frequency_penalty * (float)s->counts[t]
                            : 0.0f;
            adj[n++] = (kern_sample_adj){.token = t, .rep = c->repetition_penalty, .val = sub};
        }
    }
    *n_pen = n - *n_bias;
    return 0;
}

int eng_sampler_device_params(const eng_sampler *s, int n_logprobs, kern_sample_adj *adj,
                              int cap, int adj_off, kern_sample_params *p)
{
    int nb = 0, np = 0;
    int rc = device_adj(s, adj, cap, &nb, &np);
    if (rc)
        return rc;
    const eng_sampler_cfg *c = &s->cfg;
    *p = (kern_sample_params){.temperature = c->temperature, .top_k = c->top_k,
                              .top_p = c->top_p, .min_p = c->min_p,
                              .u = eng_sampler_draws(s) ? eng_sampler_peek_uniform(s) : 0.0,
                              .adj_off = adj_off, .n_bias = nb, .n_pen = np,
                              .n_logprobs = n_logprobs};
    return nb + np;
}

void eng_sampler_set_allow(eng_sampler *s, const uint32_t *allow)
{
    if (s)
        s->allow = allow;
}

void eng_sampler_accept(eng_sampler *s, int32_t token)
{
    if (!s->counts || token < 0 || token >= s->vocab)
        return;
    if (s->counts[token] == 0 && !s->in_prompt[token])
        s->seen[s->n_seen++] = token;
    if (s->counts[token] != UINT32_MAX)
        s->counts[token]++;
}

void eng_sampler_accept_prompt(eng_sampler *s, int32_t token)
{
    if (s->in_prompt && token >= 0 && token < s->vocab) {
        if (!s->in_prompt[token] && s->counts[token] == 0)
            s->seen[s->n_seen++] = token;
        s->in_prompt[token] = 1;
    }
}

/* ---- ordering helpers --------------------------------------------------------------------
 * Candidates are token ids ordered by their logit, descending, ties broken by the lower id, so
 * the order is total and every result is deterministic. Ordering by logit is the same as by
 * probability at any positive temperature, so nothing is ever sorted by float probability. */

static int before(const float *x, int32_t a, int32_t b)
{
    return x[a] > x[b] || (x[a] == x[b] && a < b);
}

static void swap_i32(int32_t *a, int32_t *b)
{
    int32_t t = *a;
    *a = *b;
    *b = t;
}

static void sift_down(int32_t *idx, int n, int i, const float *x)
{
    /* min-heap in "before" order: the root is the candidate that sorts last */
    for (;;) {
        int l = 2 * i + 1, m = i;
        if (l < n && before(x, idx[m], idx[l]))
            m = l;
        if (l + 1 < n && before(x, idx[m], idx[l + 1]))
            m = l + 1;
        if (m == i)
            return;
        swap_i32(&idx[i], &idx[m]);
        i = m;
    }
}

/* Heapsort into descending order: O(n log n) worst case, no recursion, no allocation. */
static void sort_desc(int32_t *idx, int n, const float *x)
{
    for (int i = n / 2 - 1; i >= 0; i--)
        sift_down(idx, n, i, x);
    for (int end = n - 1; end > 0; end--) {
        swap_i32(&idx[0], &idx[end]);
        sift_down(idx, end, 0, x);
    }
    /* the root was always the candidate that sorts last, so the tail filled up from the last
     * one backwards: idx[0] is now the first (largest) candidate */
}

/* Moves the k first candidates (in "before" order) to idx[0..k), unordered: quickselect with a
 * median-of-three pivot; after too many rounds (adversarial input) it falls back to a full
 * heapsort, so the worst case stays O(n log n). */
static void select_top(int32_t *idx, int n, int k, const float *x)
{
    int lo = 0, hi = n - 1, rounds = 0;
    while (hi > lo) {
        if (++rounds > 64) {
            sort_desc(idx + lo, hi - lo + 1, x);
            return;
        }
        int mid = lo + (hi - lo) / 2;
        if (before(x, idx[mid], idx[lo]))
            swap_i32(&idx[mid], &idx[lo]);
        if (before(x, idx[hi], idx[lo]))
            swap_i32(&idx[hi], &idx[lo]);
        if (before(x, idx[hi], idx[mid]))
            swap_i32(&idx[hi], &idx[mid]);
        int32_t pivot = idx[mid];
        swap_i32(&idx[mid], &idx[hi]);
        int store = lo;
        for (int i = lo; i < hi; i++) {
            if (before(x, idx[i], pivot))
                swap_i32(&idx[i], &idx[store++]);
        }
        swap_i32(&idx[store], &idx[hi]);
        /* idx[lo..store) come before the pivot, idx[store] is the pivot */
        if (store == k - 1 || store == k)
            return;
        if (store > k)
            hi = store - 1;
        else
            lo = store + 1;
    }
}

/* ---- log-probabilities ------------------------------------------------------------------- */

/* log(sum(exp(x))) over the finite entries; m is their maximum. */
static double log_sum_exp(const float *x, int n, float m)
{
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        if (x[i] != -INFINITY)
            sum += exp((double)x[i] - (double)m);
    }
    return (double)m + log(sum);
}

/* The n_want best tokens, descending, by insertion into a short sorted list (n_want <= 20,
 * and almost every token fails the first comparison). Returns how many were found. */
static int top_n(const float *x, int vocab, int n_want, int32_t *ids)
{
    int n = 0;
    for (int32_t i = 0; i < vocab && n_want > 0; i++) {
        if (x[i] == -INFINITY)
            continue;
        if (n == n_want && !before(x, i, ids[n - 1]))
            continue;
        int j = n < n_want ? n++ : n - 1;
        while (j > 0 && before(x, i, ids[j - 1])) {
            ids[j] = ids[j - 1];
            j--;
        }
        ids[j] = i;
    }
    return n;
}

/* ---- sampling ---------------------------------------------------------------------------- */

/* Applies bias, then the repetition penalty, then presence/frequency, in place; maps NaN to -inf
 * and +inf to a huge finite value (so exp(x - max) stays defined). Returns the number of finite
 * logits; *amax gets the argmax (lowest id on ties). */
static int adjust_logits(eng_sampler *s, float *x, int32_t *amax, int adjusted)
{
    const eng_sampler_cfg *c = &s->cfg;
    int V = s->vocab;
    for (int i = 0; i < c->n_bias && !adjusted; i++)
        x[c->bias[i].token] += c->bias[i].bias;
    int pen = !adjusted && penalties_on(c);
    int n_finite = 0;
    int32_t best = -1;
    const uint32_t *allow = s->allow;
    for (int i = 0; i < V; i++) {
        if (allow && !(allow[i >> 5] >> (i & 31) & 1)) {
            x[i] = -INFINITY;   /* after the bias: logit_bias cannot lift a grammar's ban */
            continue;
        }
        float v = x[i];
        if (pen && (s->counts[i] > 0 || s->in_prompt[i]) && !isnan(v)) {
            float p = c->repetition_penalty;
            if (p != 1.0f)
                v = v > 0.0f ? v / p : v * p;
            if (s->counts[i] > 0)
                v -= c->presence_penalty + c->frequency_penalty * (float)s->counts[i];
        }
        if (isnan(v))
            v = -INFINITY;
        else if (v == INFINITY)
            v = 3.0e38f;    /* keeps exp(x - max) well defined; still beats every real logit */
        x[i] = v;
        if (v != -INFINITY) {
            n_finite++;
            if (best < 0 || v > x[best])
                best = i;
        }
    }
    *amax = best;
    return n_finite;
}

/* Writes tok's log-prob and the top n_top into lp; x is clean (no NaN or +inf), m its max. */
static void fill_lp(const float *x, int vocab, float m, int32_t tok, int n_top, eng_logprob *lp)
{
    double lse = log_sum_exp(x, vocab, m);
    lp->token = tok;
    lp->logprob = (float)((double)x[tok] - lse);
    lp->n_top = top_n(x, vocab, n_top, lp->top_ids);
    for (int i = 0; i < lp->n_top; i++)
        lp->top_logprobs[i] = (float)((double)x[lp->top_ids[i]] - lse);
}

/* The same for a sampled token (distribution = the adjusted logits). */
static void fill_logprobs(const eng_sampler *s, const float *x, float m, int32_t tok,
                          eng_logprob *lp)
{
    fill_lp(x, s->vocab, m, tok, s->cfg.n_top_logprobs, lp);
}

void eng_logprob_score(float *x, int vocab, int32_t tok, int n_top, eng_logprob *lp)
{
    float m = -INFINITY;
    for (int i = 0; i < vocab; i++) {
        float v = x[i];
        if (isnan(v))
            v = -INFINITY;
        else if (v == INFINITY)
            v = 3.0e38f;   /* as adjust_logits */
        x[i] = v;
        m = v > m ? v : m;
    }
    if (n_top > ENG_MAX_TOP_LOGPROBS)
        n_top = ENG_MAX_TOP_LOGPROBS;
    if (m == -INFINITY) {
        lp->token = tok;
        lp->logprob = -INFINITY;
        lp->n_top = 0;
        return;
    }
    fill_lp(x, vocab, m, tok, n_top < 0 ? 0 : n_top, lp);
}

/* exp of a scaled, max-shifted logit; below -88 the result is subnormal or zero, which glibc's
 * expf computes on a slow path, and which cannot matter next to the maximum's 1. */
static float exp_shifted(float x, float m, float inv_t)
{
    float z = (x - m) * inv_t;
    return z < -88.0f ? 0.0f : expf(z);
}

/* Keeps the candidates with x >= cut at the front of idx (order kept); returns their count. */
static int keep_at_least(int32_t *idx, int n, const float *x, float cut)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (x[idx[i]] >= cut)
            idx[k++] = idx[i];
    }
    return k;
}

static int32_t sample_impl(eng_sampler *s, float *logits, eng_logprob *lp, int adjusted);

int32_t eng_sampler_sample(eng_sampler *s, float *logits, eng_logprob *lp)
{
    return sample_impl(s, logits, lp, 0);
}

int32_t eng_sampler_sample_adjusted(eng_sampler *s, float *logits, eng_logprob *lp)
{
    return sample_impl(s, logits, lp, 1);
}

/* adjusted: bias and penalties are already in the logits (a device applied them) */
static int32_t sample_impl(eng_sampler *s, float *logits, eng_logprob *lp, int adjusted)
{
    if (!s || !s->probs || !logits)
        return ENG_E_INVAL;
    const eng_sampler_cfg *c = &s->cfg;
    float *x = logits;
    int32_t *idx = s->idx;
    float *e = s->probs;    /* e[j] = exp((x[idx[j]] - max) / T), unnormalized */

    int32_t amax;
    int n = adjust_logits(s, x, &amax, adjusted);
    s->allow = NULL;
    if (n == 0)
        return ENG_E_RANGE;
    float m = x[amax];

    /* a subnormal temperature overflows 1/T; such a T is greedy in all but name */
    float inv_t = c->temperature > 0.0f ? 1.0f / c->temperature : INFINITY;
    if (inv_t == INFINITY) {
        if (lp)
            fill_logprobs(s, x, m, amax, lp);
        return amax;
    }

    /* candidates: every finite token, in id order */
    n = 0;
    for (int32_t i = 0; i < s->vocab; i++) {
        if (x[i] != -INFINITY)
            idx[n++] = i;
    }
    int sorted = 0;
    if (c->top_k > 0 && c->top_k < n) {
        select_top(idx, n, c->top_k, x);
        n = c->top_k;
        sort_desc(idx, n, x);
        sorted = 1;
    }

    double sum = 0.0;
    for (int j = 0; j < n; j++) {
        e[j] = exp_shifted(x[idx[j]], m, inv_t);
        sum += e[j];
    }

    if (c->top_p < 1.0f) {
        double need = (double)c->top_p * sum;
        if (!sorted) {
            /* Sort only the tokens above a probability threshold, lowering it until they hold
             * at least top_p of the mass; they are then exactly the head of the full order. */
            int k = n;
            for (double tau = 1e-3; tau > 1e-10; tau *= 1e-2) {
                /* p >= tau  <=>  (x - m) / T >= log(tau * sum) */
                float cut = (float)((double)m + log(tau * sum) * (double)c->temperature);
                double part = 0.0;
                for (int j = 0; j < n; j++) {
                    if (x[idx[j]] >= cut)
                        part += e[j];
                }
                if (part >= need) {
                    k = keep_at_least(idx, n, x, cut);
                    break;
                }
            }
            n = k;
            sort_desc(idx, n, x);
            for (int j = 0; j < n; j++)
                e[j] = exp_shifted(x[idx[j]], m, inv_t);
        }
        double cum = 0.0;
        int keep = n;
        for (int j = 0; j < n; j++) {
            cum += e[j];
            if (cum >= need) {
                keep = j + 1;
                break;
            }
        }
        n = keep;
    }

    if (c->min_p > 0.0f) {
        /* p_j >= min_p * p_max  <=>  e_j >= min_p, since e of the maximum is exp(0) = 1 */
        int k = 0;
        for (int j = 0; j < n; j++) {
            if (e[j] >= c->min_p) {
                idx[k] = idx[j];
                e[k] = e[j];
                k++;
            }
        }
        n = k;  /* the maximum (e = 1) always survives, so n >= 1 */
    }

    double total = 0.0;
    for (int j = 0; j < n; j++)
        total += e[j];
    double r = rng_uniform(s->rng) * total;
    int32_t tok = idx[n - 1];
    double cum = 0.0;
    for (int j = 0; j < n; j++) {
        cum += e[j];
        if (r < cum && e[j] > 0.0f) {
            tok = idx[j];
            break;
        }
    }
    if (lp)
        fill_logprobs(s, x, m, tok, lp);
    return tok;
}
