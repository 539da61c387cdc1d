/* test_kern_cuda_sample_matches_sampler.c — kern_sample on the CUDA backend against the host
 * sampler (eng_sampler_sample) on the same logits and the same seeded draw:
 *   rows      vocabularies of 512, 32000 and 128256 entries: peaked (Gaussian logits x 8, a few
 *             spikes), moderate (x 2; once all negative) and flat (x 0.1) distributions, repeated values (ties
 *             broken by id), NaN / +inf / -inf entries, one row with a single finite logit and
 *             one with none (-1);
 *   rules     greedy, temperature 0.7 / 1 / 1.5 with top-k 1 / 40 / 1000, top-p 0.5 / 0.9 /
 *             0.999, min-p 0.05 and their combinations; with logit_bias (a token biased twice,
 *             a ban, a boost) and repetition / presence / frequency penalties over a history
 *             of prompt and output tokens (greedy too); every row of a batch with its own rules;
 *   expected  the host's token for every (row, rules, seed), or -2 exactly where the host would
 *             sort more than 1024 candidates (top-k 2000; top-p over the flat rows), which the
 *             engine then samples on the host; picks may differ only where the draw falls
 *             within rounding of a boundary (device expf ulps and summation order): at most
 *             0.2 % of the draws, counted and printed; a row left to the host, sampled by
 *             eng_sampler_sample_adjusted from the row as the device adjusted it, gives the host's
 *             token from the raw row;
 *   masks     one row in five has a grammar's mask of allowed tokens (eng_sampler_set_allow on
 *             the host, kern_sample's allow array on the device): half the vocabulary at random,
 *             2 % of it, or a single token; the row's best token and the doubly boosted one are
 *             banned, so the mask moves greedy picks and no bias lifts a ban;
 *   logprobs  two rows in three ask for the pick's log-probability and 0, 5 or 20 alternatives:
 *             the same ids as the host sampler's, values within 1e-6 relative;
 *   cleaning  the logits rows come back cleaned as the host sampler cleans them (NaN -> -inf,
 *             +inf -> 3e38), bit for bit.
 * Skips (77) without a CUDA device, and under CLAQ_CUDA_TEST_STANDIN (the CPU backend has no
 * sample op: the engine samples host logits where they are). */
#include <float.h>

#include "cuda_test_common.h"
#include "eng_sampler.h"

static float gauss(void)
{
    float u1 = (ct_frnd() + 1.0f) * 0.5f + 1e-7f, u2 = (ct_frnd() + 1.0f) * 0.5f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

/* Row kind k of vocab entries. */
static void fill_row(float *x, int vocab, int k)
{
    const float scale[] = {8.0f, 2.0f, 0.1f};
    for (int i = 0; i < vocab; i++) x[i] = gauss() * scale[k % 3];
    if (k % 3 == 0)
        for (int j = 0; j < 4; j++) x[ct_rnd() % (uint32_t)vocab] = 40.0f + (float)j;
    if (k == 4)   /* every logit negative: the repetition penalty multiplies */
        for (int i = 0; i < vocab; i++) x[i] -= 20.0f;
    if (k >= 3) {   /* ties and special values */
        for (int i = 0; i < vocab; i += 7) x[i] = roundf(x[i]);
        x[ct_rnd() % (uint32_t)vocab] = NAN;
        x[ct_rnd() % (uint32_t)vocab] = -INFINITY;
        if (k == 5) x[ct_rnd() % (uint32_t)vocab] = INFINITY;
    }
}

typedef struct rules {
    float t;
    int k;
    float p, minp;
    float rep, pres, freq;   /* penalties */
    int bias;                /* 1: the logit_bias list below */
} rules;

static const rules RULES[] = {
    {0.0f, 0, 1.0f, 0.0f, 1, 0, 0, 0},    {1.0f, 0, 1.0f, 0.0f, 1, 0, 0, 0},
    {0.7f, 40, 1.0f, 0.0f, 1, 0, 0, 0},   {1.0f, 1, 1.0f, 0.0f, 1, 0, 0, 0},
    {1.0f, 0, 0.9f, 0.0f, 1, 0, 0, 0},    {1.5f, 0, 0.5f, 0.0f, 1, 0, 0, 0},
    {1.0f, 0, 0.999f, 0.0f, 1, 0, 0, 0},  {1.0f, 0, 1.0f, 0.05f, 1, 0, 0, 0},
    {0.7f, 40, 0.9f, 0.05f, 1, 0, 0, 0},  {1.0f, 1000, 0.9f, 0.0f, 1, 0, 0, 0},
    {1.0f, 2000, 1.0f, 0.0f, 1, 0, 0, 0}, {1.5f, 0, 0.9f, 0.05f, 1, 0, 0, 0},
    {1.0f, 40, 0.9f, 0.0f, 1.3f, 0.5f, 0.3f, 1}, {0.0f, 0, 1.0f, 0.0f, 1.2f, 0, 0.5f, 1},
    {0.8f, 0, 0.95f, 0.02f, 1, 1.0f, 0, 0},       {1.0f, 0, 1.0f, 0.0f, 0.8f, -0.5f, 0, 1},
};
/* a token biased twice (the host adds in order), one banned, one raised */
static const eng_logit_bias BIAS[] = {{7, 5.0f}, {3, -100.0f}, {7, 2.5f}, {11, 3.0f}};
#define NRULES ((int)(sizeof RULES / sizeof RULES[0]))

/* ids of the 64 largest finite logits of x[n], largest first (the history's tokens) */
static void top64(const float *x, int n, int32_t *ids)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (!(x[i] > -INFINITY) || isnan(x[i])) continue;
        if (k == 64 && !(x[i] > x[ids[63]])) continue;
        int j = k < 64 ? k++ : 63;
        while (j > 0 && x[i] > x[ids[j - 1]]) {
            ids[j] = ids[j - 1];
            j--;
        }
        ids[j] = i;
    }
    for (int j = k; j < 64; j++) ids[j] = j % n;
}

/* rows asking for log-probabilities: two in three, with 0, 5 or 20 alternatives */
#define LP_WANT(row) ((row) % 3 != 2)
#define LP_N(row) ((row) % 7 == 0 ? 20 : (row) % 2 ? 5 : 0)

/* finite entries of a row the host sampler adjusted (banned tokens are -inf there) */
static int n_finite(const float *x, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++) k += x[i] != -INFINITY;
    return k;
}

/* rows with a grammar's mask: one in five */
#define MASKED(row) ((row) % 5 == 2)

static int allowed(const uint32_t *mask, int i)
{
    return !mask || (mask[i >> 5] >> (i & 31) & 1);
}

static void clean_like_host(float *x, int n, const uint32_t *mask)
{
    for (int i = 0; i < n; i++) {
        if (isnan(x[i]) || !allowed(mask, i)) x[i] = -INFINITY;
        else if (x[i] == INFINITY) x[i] = 3.0e38f;
    }
}

/* Row row's mask of vocab bits, kind (row / 5) % 3: half the tokens at random, 2 % of them, or
 * one finite token; never the row's best token x[best] nor token 7 (which BIAS raises twice). */
static void fill_mask(uint32_t *mask, int vocab, int row, const float *x)
{
    const int words = (vocab + 31) / 32, kind = (row / 5) % 3;
    memset(mask, 0, sizeof(uint32_t) * (size_t)words);
    int best = -1;
    for (int i = 0; i < vocab; i++)
        if (!isnan(x[i]) && (best < 0 || x[i] > x[best])) best = i;
    if (kind == 2) {
        int one = (int)(ct_rnd() % (uint32_t)vocab);
        while (!isfinite(x[one]) || one == best || one == 7) one = (one + 1) % vocab;
        mask[one >> 5] |= 1u << (one & 31);
        return;
    }
    for (int i = 0; i < vocab; i++)
        if (ct_rnd() % 100u < (kind == 0 ? 50u : 2u)) mask[i >> 5] |= 1u << (i & 31);
    if (best >= 0) mask[best >> 5] &= ~(1u << (best & 31));
    mask[0] &= ~(1u << 7);
}

int main(void)
{
    kern_backend cu;
    ct_open_cuda_or_skip(&cu);
    if (!kern_has_sample(&cu)) {
        printf("skip: the stand-in backend has no sample op\n");
        kern_backend_destroy(&cu);
        return 77;
    }
    const int vocabs[] = {512, 32000, 128256};
    const int seeds = 6, kinds = 6;
    long draws = 0, mismatches = 0, host_left = 0, agree_left = 0, lp_checked = 0, masked = 0;
    for (unsigned v = 0; v < 3; v++) {
        const int vocab = vocabs[v];
        /* a batch: kinds rows x NRULES rules, each row its own rules */
        const int n = kinds * NRULES + 2;
        float *x = malloc(sizeof(float) * (size_t)n * vocab);
        float *host = malloc(sizeof(float) * (size_t)vocab);
        float *back = malloc(sizeof(float) * (size_t)n * vocab);
        kern_sample_params *p = calloc((size_t)n, sizeof *p);
        int32_t *got = malloc(sizeof(int32_t) * (size_t)n);
        const int adj_cap = n * (vocab + 4);
        kern_sample_adj *adj = malloc(sizeof *adj * (size_t)adj_cap);
        kern_sample_lp *dlp = malloc(sizeof *dlp * (size_t)n);
        const int words = (vocab + 31) / 32;
        uint32_t *allow = calloc((size_t)n * words, sizeof(uint32_t));
        for (int k = 0; k < kinds; k++) {
            fill_row(x + (size_t)k * NRULES * vocab, vocab, k);
            for (int r = 1; r < NRULES; r++)
                memcpy(x + ((size_t)k * NRULES + r) * vocab, x + (size_t)k * NRULES * vocab,
                       sizeof(float) * (size_t)vocab);
        }
        float *one = x + (size_t)(n - 2) * vocab, *none = x + (size_t)(n - 1) * vocab;
        for (int i = 0; i < vocab; i++) one[i] = none[i] = i % 2 ? -INFINITY : NAN;
        one[vocab / 2] = 1.0f;   /* a single finite logit: always picked */
        for (int seed = 0; seed < seeds; seed++) {
            eng_sampler smp[kinds * NRULES + 2];
            int off = 0, n_masks = 0;
            for (int row = 0; row < n; row++) {
                const rules *ru = &RULES[row < n - 2 ? row % NRULES : 1];
                eng_sampler_cfg c;
                eng_sampler_cfg_default(&c);
                c.temperature = ru->t;
                c.top_k = ru->k;
                c.top_p = ru->p;
                c.min_p = ru->minp;
                c.repetition_penalty = ru->rep;
                c.presence_penalty = ru->pres;
                c.frequency_penalty = ru->freq;
                if (ru->bias) {
                    c.bias = BIAS;
                    c.n_bias = 4;
                }
                c.seed = (uint64_t)seed * 1000003u + (uint64_t)row;
                c.n_top_logprobs = LP_N(row);
                eng_err err;
                CT_CHECK(eng_sampler_init(&smp[row], &c, vocab, &err) == 0, "sampler init");
                /* a history: prompt tokens, and output tokens some of them several times, drawn
                 * from the row's 64 largest logits so that the penalties move the choice */
                int32_t top[64];
                top64(x + (size_t)row * vocab, vocab, top);
                for (int j = 0; j < 24; j++)
                    eng_sampler_accept_prompt(&smp[row], top[ct_rnd() % 64u]);
                for (int j = 0; j < 30; j++)
                    eng_sampler_accept(&smp[row], top[ct_rnd() % 16u]);
                const int k = eng_sampler_device_params(&smp[row], LP_WANT(row) ? LP_N(row) : -1,
                                                        adj + off, adj_cap - off, off, &p[row]);
                CT_CHECK(k >= 0 && k == eng_sampler_device_entries(&smp[row]),
                         "device entries: %d", k);
                off += k > 0 ? k : 0;
                if (MASKED(row) && row < n - 2) {
                    uint32_t *m = allow + (size_t)n_masks * words;
                    fill_mask(m, vocab, row, x + (size_t)row * vocab);
                    p[row].has_allow = 1;
                    p[row].allow_off = n_masks++ * words;
                }
            }
            kern_buf *d_x = ct_buf(&cu, x, sizeof(float) * (size_t)n * vocab);
            kern_buf *d_p = ct_buf(&cu, p, sizeof *p * (size_t)n);
            kern_buf *d_o = ct_buf(&cu, NULL, sizeof(int32_t) * (size_t)n);
            kern_buf *d_a = ct_buf(&cu, adj, sizeof *adj * (size_t)(off ? off : 1));
            kern_buf *d_l = ct_buf(&cu, NULL, sizeof(kern_sample_lp) * (size_t)n);
            kern_buf *d_m = ct_buf(&cu, allow, sizeof(uint32_t) * (size_t)n_masks * words);
            int rc = kern_sample(&cu, CT_ADDR(d_x), n, vocab, CT_ADDR(d_p), CT_ADDR(d_a),
                                 CT_ADDR(d_m), CT_ADDR(d_o), CT_ADDR(d_l));
            ct_get(&cu, d_l, dlp, sizeof(kern_sample_lp) * (size_t)n);
            CT_CHECK(rc == 0, "kern_sample rc %d %s", rc, ct_cuda_err(&cu));
            memset(got, 0x7f, sizeof(int32_t) * (size_t)n);
            ct_get(&cu, d_o, got, sizeof(int32_t) * (size_t)n);
            ct_get(&cu, d_x, back, sizeof(float) * (size_t)n * vocab);
            if (seed == 0) {
                for (int row = 0; row < n; row++) {
                    if (RULES[row < n - 2 ? row % NRULES : 1].rep != 1.0f ||
                        RULES[row < n - 2 ? row % NRULES : 1].bias ||
                        RULES[row < n - 2 ? row % NRULES : 1].pres != 0.0f)
                        continue;   /* adjusted rows: checked through the picks */
                    memcpy(host, x + (size_t)row * vocab, sizeof(float) * (size_t)vocab);
                    clean_like_host(host, vocab,
                                    p[row].has_allow ? allow + p[row].allow_off : NULL);
                    CT_CHECK(memcmp(host, back + (size_t)row * vocab, sizeof(float) * (size_t)vocab) == 0,
                             "vocab %d row %d: the cleaned logits differ from the host's", vocab, row);
                }
            }
            for (int row = 0; row < n; row++) {
                const uint32_t *mask = p[row].has_allow ? allow + p[row].allow_off : NULL;
                /* a row left to the host: the sampler on the device's adjusted row (a copy of
                 * the sampler: same draw) must pick what it picks from the raw logits */
                int32_t from_adjusted = -3;
                if (mask) eng_sampler_set_allow(&smp[row], mask);
                if (got[row] == -2) {
                    eng_sampler tmp = smp[row];   /* shares scratch only; not freed */
                    from_adjusted = eng_sampler_sample_adjusted(&tmp, back + (size_t)row * vocab,
                                                                NULL);
                }
                memcpy(host, x + (size_t)row * vocab, sizeof(float) * (size_t)vocab);
                eng_logprob hl;
                const int32_t want = eng_sampler_sample(&smp[row], host, &hl);
                if (mask) {
                    masked++;
                    CT_CHECK(got[row] < 0 || allowed(mask, got[row]),
                             "vocab %d row %d: the device picked banned token %d", vocab, row,
                             got[row]);
                }
                if (LP_WANT(row) && got[row] >= 0 && got[row] == want) {
                    /* the device's log-probabilities of its pick: the host's */
                    const kern_sample_lp *d = &dlp[row];
                    int ok = d->token == hl.token && d->n_top == hl.n_top &&
                             fabsf(d->logprob - hl.logprob) <= 1e-6f * (1 + fabsf(hl.logprob));
                    for (int j = 0; ok && j < hl.n_top; j++)
                        ok = d->top_ids[j] == hl.top_ids[j] &&
                             fabsf(d->top_logprobs[j] - hl.top_logprobs[j]) <=
                                 1e-6f * (1 + fabsf(hl.top_logprobs[j]));
                    lp_checked++;
                    CT_CHECK(ok, "vocab %d row %d: device logprobs (%d, %g, %d top, first %d %g) vs "
                             "host (%d, %g, %d top, first %d %g)", vocab, row, d->token,
                             d->logprob, d->n_top, d->top_ids[0], d->top_logprobs[0], hl.token,
                             hl.logprob, hl.n_top, hl.top_ids[0], hl.top_logprobs[0]);
                }
                CT_CHECK(got[row] != -2 || from_adjusted == want, "vocab %d row %d: the host's "
                         "sample of the device-adjusted row %d, of the raw row %d", vocab, row,
                         from_adjusted, want);
                const rules *ru = &RULES[row < n - 2 ? row % NRULES : 1];
                draws++;
                if (row == n - 1) {
                    CT_CHECK(got[row] == -1 && want < 0, "no finite logit: device %d host %d",
                             got[row], want);
                } else if (row == n - 2) {
                    CT_CHECK(got[row] == vocab / 2 && want == vocab / 2,
                             "one finite logit: device %d host %d", got[row], want);
                } else if (got[row] == -2) {
                    host_left++;
                    /* only where the host sorts more than 1024 candidates */
                    CT_CHECK(ru->k > 1024 || (ru->k == 0 && ru->p < 1.0f),
                             "vocab %d row %d (t %g k %d p %g min_p %g): left to the host", vocab,
                             row, ru->t, ru->k, ru->p, ru->minp);
                } else if (got[row] != want) {
                    mismatches++;
                    if (mismatches <= 5)
                        printf("note: vocab %d row %d seed %d (t %g k %d p %g min_p %g): device %d, "
                               "host %d\n", vocab, row, seed, ru->t, ru->k, ru->p, ru->minp,
                               got[row], want);
                } else if (ru->k > 1024 && ru->k < n_finite(host, vocab)) {
                    agree_left++;   /* top-k above the cap must have been left to the host */
                }
                eng_sampler_free(&smp[row]);
            }
            kern_buf_free(&cu, d_x);
            kern_buf_free(&cu, d_p);
            kern_buf_free(&cu, d_o);
            kern_buf_free(&cu, d_a);
            kern_buf_free(&cu, d_l);
            kern_buf_free(&cu, d_m);
        }
        free(x); free(host); free(back); free(p); free(got); free(adj); free(dlp); free(allow);
    }
    CT_CHECK(agree_left == 0, "%ld rows with top-k above the cap were sampled on the device",
             agree_left);
    CT_CHECK(mismatches * 500 <= draws, "%ld of %ld device picks differ from the host's",
             mismatches, draws);
    CT_CHECK(host_left * 4 < draws, "%ld of %ld draws left to the host", host_left, draws);
    kern_backend_destroy(&cu);
    if (ct_failures) {
        printf("%d failures\n", ct_failures);
        return 1;
    }
    CT_CHECK(lp_checked > draws / 3, "only %ld picks had their logprobs checked", lp_checked);
    printf("ok: kern_sample picks the host sampler's tokens: %ld draws (%ld under a grammar's "
           "mask), %ld differ, %ld left to the host (more than 1024 candidates); logprobs equal "
           "the host's on %ld picks\n", draws, masked, mismatches, host_left, lp_checked);
    return 0;
}
