/* test_eng_sampler_penalties_logprobs.c — on real stories260K logits: logit bias, repetition,
 * presence and frequency penalties change each logit by the documented formulas and in the
 * documented order; log-probs are log_softmax of the adjusted logits before temperature (the
 * exp of all of them sums to 1, the top N are the N best, descending); NaN / inf logits; every
 * invalid config field is rejected with ENG_E_INVAL and a message naming it; prompt scoring
 * (eng_logprob_score) gives exactly what a plain sampler reports for the same logits, and the
 * reference log-softmax, NaN and inf included. */
#include "eng_sampler.h"
#include "test_eng_sampler_data.h"

#define V TD_STORIES_V

/* Reference adjustment, written from the spec, in the spec's order. */
static float ref_adjust(float x, int tok, const eng_sampler_cfg *c, const uint32_t *counts)
{
    for (int i = 0; i < c->n_bias; i++)
        if (c->bias[i].token == tok)
            x += c->bias[i].bias;
    if (counts[tok] > 0) {
        x = x > 0.0f ? x / c->repetition_penalty : x * c->repetition_penalty;
        x -= c->presence_penalty * 1.0f + c->frequency_penalty * (float)counts[tok];
    }
    return x;
}

static void check_penalties(void)
{
    static float x[V], w[V];
    td_stories_logits(410, x);
    /* history: the README's real prompt tokens for "Zoo", then repeats and the vocab edges */
    const int32_t seen[] = {1, 410, 469, 347, 469, 469, 347, 5, 511, 0};
    uint32_t counts[V] = {0};
    const eng_logit_bias bias[] = {{469, 2.5f}, {12, -100.0f}, {347, 0.75f}, {200, 3.0f}};

    const float reps[] = {1.0f, 1.3f, 0.8f};
    for (size_t r = 0; r < sizeof reps / sizeof reps[0]; r++) {
        eng_sampler_cfg cfg;
        eng_sampler_cfg_default(&cfg);
        cfg.temperature = 0.0f;
        cfg.repetition_penalty = reps[r];
        cfg.presence_penalty = 0.5f;
        cfg.frequency_penalty = 0.25f;
        cfg.bias = bias;
        cfg.n_bias = 4;
        eng_sampler s;
        eng_err err = {0};
        CHECK(eng_sampler_init(&s, &cfg, V, &err) == 0, "init: %s", err.msg);
        memset(counts, 0, sizeof counts);
        for (size_t i = 0; i < sizeof seen / sizeof seen[0]; i++) {
            eng_sampler_accept(&s, seen[i]);
            counts[seen[i]]++;
        }
        eng_sampler_accept(&s, -1);     /* out of range: ignored */
        eng_sampler_accept(&s, V);
        memcpy(w, x, sizeof w);
        int32_t t = eng_sampler_sample(&s, w, NULL);
        int bad = 0;
        int32_t best = 0;
        float ref_best = -INFINITY;
        for (int i = 0; i < V; i++) {
            float want = ref_adjust(x[i], i, &cfg, counts);
            if (fabsf(w[i] - want) > 1e-5f * (1.0f + fabsf(want))) {
                if (bad++ < 5)
                    fprintf(stderr, "  rep %.2f token %d: logit %g -> %g, expected %g\n",
                            (double)reps[r], i, (double)x[i], (double)w[i], (double)want);
            }
            if (want > ref_best) {
                ref_best = want;
                best = i;
            }
        }
        CHECK(bad == 0, "rep %.2f: %d adjusted logits differ from the formulas", (double)reps[r],
              bad);
        CHECK(t == best, "rep %.2f: greedy after penalties chose %d, expected %d",
              (double)reps[r], (int)t, (int)best);
        /* the penalties must matter on this input: some seen token moved */
        CHECK(w[469] != x[469] && w[1] != x[1], "penalties did not change seen tokens");
        CHECK(w[100] == x[100], "an unseen, unbiased token changed");
        eng_sampler_free(&s);
    }

    /* the order is bias, then repetition: with a positive logit made negative by the bias the
     * repetition penalty must multiply, not divide */
    {
        eng_sampler_cfg cfg;
        eng_sampler_cfg_default(&cfg);
        cfg.temperature = 0.0f;
        cfg.repetition_penalty = 2.0f;
        const eng_logit_bias b1[] = {{7, -10.0f}};
        cfg.bias = b1;
        cfg.n_bias = 1;
        eng_sampler s;
        eng_sampler_init(&s, &cfg, V, NULL);
        eng_sampler_accept(&s, 7);
        memcpy(w, x, sizeof w);
        w[7] = 3.0f;
        eng_sampler_sample(&s, w, NULL);
        CHECK(fabsf(w[7] - (-14.0f)) < 1e-6f, "bias then repetition: got %g, expected -14",
              (double)w[7]);
        eng_sampler_free(&s);
    }
    /* prompt tokens: the repetition penalty sees them, presence/frequency count the output only
     * (vLLM's and OpenAI's semantics); a token in both gets all three */
    {
        eng_sampler_cfg cfg;
        eng_sampler_cfg_default(&cfg);
        cfg.temperature = 0.0f;
        cfg.repetition_penalty = 2.0f;
        cfg.presence_penalty = 1.0f;
        cfg.frequency_penalty = 0.5f;
        eng_sampler s;
        CHECK(eng_sampler_init(&s, &cfg, V, NULL) == 0, "init");
        eng_sampler_accept_prompt(&s, 7);
        eng_sampler_accept_prompt(&s, 7);   /* repeats in the prompt do not add up */
        eng_sampler_accept_prompt(&s, 8);
        eng_sampler_accept(&s, 8);
        eng_sampler_accept_prompt(&s, V);   /* out of range: ignored */
        memcpy(w, x, sizeof w);
        w[7] = 3.0f;
        w[8] = -3.0f;
        w[9] = 3.0f;
        eng_sampler_sample(&s, w, NULL);
        CHECK(fabsf(w[7] - 1.5f) < 1e-6f, "prompt-only token: got %g, expected 3/2", (double)w[7]);
        CHECK(fabsf(w[8] - (-7.5f)) < 1e-6f, "prompt+output token: got %g, expected -3*2-1-0.5",
              (double)w[8]);
        CHECK(w[9] == 3.0f, "unseen token changed to %g", (double)w[9]);
        eng_sampler_free(&s);
    }
    /* +100 bias forces a token under sampling too */
    {
        eng_sampler_cfg cfg;
        eng_sampler_cfg_default(&cfg);
        cfg.temperature = 1.0f;
        const eng_logit_bias b2[] = {{333, 100.0f}};
        cfg.bias = b2;
        cfg.n_bias = 1;
        eng_sampler s;
        eng_sampler_init(&s, &cfg, V, NULL);
        int forced = 0;
        for (int i = 0; i < 200; i++) {
            memcpy(w, x, sizeof w);
            forced += eng_sampler_sample(&s, w, NULL) == 333;
        }
        CHECK(forced == 200, "+100 bias forced token 333 only %d/200 times", forced);
        eng_sampler_free(&s);
    }
}

static double ref_lse(const float *a, int n)
{
    double m = -INFINITY, s = 0.0;
    for (int i = 0; i < n; i++)
        if (a[i] > m)
            m = a[i];
    for (int i = 0; i < n; i++)
        if (a[i] != -INFINITY)
            s += exp((double)a[i] - m);
    return m + log(s);
}

static void check_logprobs(void)
{
    static float x[V], w[V], adj[V];
    td_stories_logits(469, x);

    /* (a) vocab 16 (the first 16 real logits), all 16 reported: exp of all sums to 1, with a
     * temperature and top-k that must not change the reported distribution */
    {
        eng_sampler_cfg cfg;
        eng_sampler_cfg_default(&cfg);
        cfg.temperature = 3.0f;
        cfg.top_k = 2;
        cfg.n_top_logprobs = 16;
        cfg.frequency_penalty = 0.5f;
        eng_sampler s;
        CHECK(eng_sampler_init(&s, &cfg, 16, NULL) == 0, "init v16");
        eng_sampler_accept(&s, 3);
        for (int rep = 0; rep < 50; rep++) {
            float ws[16];
            memcpy(ws, x, sizeof ws);
            eng_logprob lp;
            memset(&lp, 0xff, sizeof lp);
            int32_t t = eng_sampler_sample(&s, ws, &lp);
            CHECK(t >= 0 && t < 16 && lp.token == t, "v16: token %d lp.token %d", (int)t,
                  (int)lp.token);
            CHECK(lp.n_top == 16, "v16: n_top %d", lp.n_top);
            double sum = 0.0;
            int seen[16] = {0};
            for (int i = 0; i < lp.n_top && i < 16; i++) {
                sum += exp((double)lp.top_logprobs[i]);
                if (lp.top_ids[i] >= 0 && lp.top_ids[i] < 16)
                    seen[lp.top_ids[i]]++;
                if (i > 0)
                    CHECK(lp.top_logprobs[i] <= lp.top_logprobs[i - 1], "v16: not descending");
                if (lp.top_ids[i] == t)
                    CHECK(lp.top_logprobs[i] == lp.logprob, "v16: chosen logprob mismatch");
            }
            for (int i = 0; i < 16; i++)
                CHECK(seen[i] == 1, "v16: token %d appears %d times in the top list", i, seen[i]);
            CHECK(fabs(sum - 1.0) < 1e-5, "v16: exp(logprobs) sums to %.8f", sum);
        }
        eng_sampler_free(&s);
    }

    /* (b) full vocab, top 20: values equal log_softmax of the adjusted logits (T ignored), the
     * ids are the 20 best in the sampler's order */
    {
        eng_sampler_cfg cfg;
        eng_sampler_cfg_default(&cfg);
        cfg.temperature = 5.0f;
        cfg.top_p = 0.9f;
        cfg.presence_penalty = 1.0f;
        cfg.n_top_logprobs = ENG_MAX_TOP_LOGPROBS;
        eng_sampler s;
        CHECK(eng_sampler_init(&s, &cfg, V, NULL) == 0, "init full");
        uint32_t counts[V] = {0};
        eng_sampler_accept(&s, 469);
        counts[469]++;
        for (int i = 0; i < V; i++)
            adj[i] = ref_adjust(x[i], i, &cfg, counts);
        double lse = ref_lse(adj, V);
        int32_t order[V];
        td_order(adj, V, order);
        for (int rep = 0; rep < 20; rep++) {
            memcpy(w, x, sizeof w);
            eng_logprob lp;
            int32_t t = eng_sampler_sample(&s, w, &lp);
            CHECK(t >= 0 && lp.token == t, "full: token %d", (int)t);
            if (t < 0)
                break;
            CHECK(fabs(lp.logprob - (adj[t] - lse)) < 1e-4, "full: logprob %g, expected %g",
                  (double)lp.logprob, adj[t] - lse);
            CHECK(lp.n_top == ENG_MAX_TOP_LOGPROBS, "full: n_top %d", lp.n_top);
            double sum = 0.0;
            for (int i = 0; i < lp.n_top; i++) {
                CHECK(lp.top_ids[i] == order[i], "full: top[%d] is %d, expected %d", i,
                      (int)lp.top_ids[i], (int)order[i]);
                CHECK(fabs(lp.top_logprobs[i] - (adj[order[i]] - lse)) < 1e-4,
                      "full: top[%d] logprob %g, expected %g", i, (double)lp.top_logprobs[i],
                      adj[order[i]] - lse);
                sum += exp((double)lp.top_logprobs[i]);
            }
            CHECK(sum <= 1.0 + 1e-6, "full: top-20 mass %.6f > 1", sum);
        }
        eng_sampler_free(&s);
    }
}

static void check_nonfinite(void)
{
    static float x[V], w[V];
    td_stories_logits(347, x);
    eng_sampler_cfg cfg;
    eng_sampler_cfg_default(&cfg);
    cfg.n_top_logprobs = 5;
    eng_sampler s;
    eng_sampler_init(&s, &cfg, V, NULL);

    /* NaN on the real argmax and on half the vocab: never chosen, logprobs finite */
    int32_t amax = 0;
    for (int i = 1; i < V; i++)
        if (x[i] > x[amax])
            amax = i;
    for (int rep = 0; rep < 500; rep++) {
        memcpy(w, x, sizeof w);
        for (int i = 0; i < V; i += 2)
            w[i] = NAN;
        w[amax] = NAN;
        eng_logprob lp;
        int32_t t = eng_sampler_sample(&s, w, &lp);
        CHECK(t >= 0 && (t % 2) == 1 && t != amax, "NaN logits: drew %d", (int)t);
        CHECK(isfinite(lp.logprob) && lp.logprob <= 0.0f, "NaN logits: logprob %g",
              (double)lp.logprob);
        for (int i = 0; i < lp.n_top; i++)
            CHECK(isfinite(lp.top_logprobs[i]), "NaN logits: top logprob %d not finite", i);
    }
    /* all NaN, all -inf: ENG_E_RANGE, no crash */
    for (int i = 0; i < V; i++)
        w[i] = NAN;
    CHECK(eng_sampler_sample(&s, w, NULL) == ENG_E_RANGE, "all NaN must give ENG_E_RANGE");
    for (int i = 0; i < V; i++)
        w[i] = -INFINITY;
    CHECK(eng_sampler_sample(&s, w, NULL) == ENG_E_RANGE, "all -inf must give ENG_E_RANGE");
    /* one +inf wins, with a finite log-prob of 0 */
    memcpy(w, x, sizeof w);
    w[99] = INFINITY;
    eng_logprob lp;
    CHECK(eng_sampler_sample(&s, w, &lp) == 99, "+inf logit must be chosen");
    CHECK(lp.logprob == 0.0f, "+inf logit: logprob %g", (double)lp.logprob);
    /* a subnormal temperature (1/T overflows) behaves as greedy instead of producing NaN */
    {
        eng_sampler_cfg tc;
        eng_sampler_cfg_default(&tc);
        tc.temperature = 1e-40f;
        tc.top_p = 0.9f;
        eng_sampler ts;
        CHECK(eng_sampler_init(&ts, &tc, V, NULL) == 0, "subnormal temperature rejected");
        int32_t best = 0;
        for (int i = 1; i < V; i++)
            if (x[i] > x[best])
                best = i;
        for (int rep = 0; rep < 20; rep++) {
            memcpy(w, x, sizeof w);
            int32_t t = eng_sampler_sample(&ts, w, NULL);
            CHECK(t == best, "T=1e-40 chose %d, argmax %d", (int)t, (int)best);
        }
        eng_sampler_free(&ts);
    }
    /* a single finite token among -inf: always that token, any truncation */
    for (int i = 0; i < V; i++)
        w[i] = -INFINITY;
    w[V - 1] = -50.0f;
    CHECK(eng_sampler_sample(&s, w, NULL) == V - 1, "single finite token not chosen");
    eng_sampler_free(&s);
    eng_sampler_free(&s);

    /* an uninitialized (zeroed) sampler is refused, not dereferenced */
    eng_sampler z;
    memset(&z, 0, sizeof z);
    CHECK(eng_sampler_sample(&z, w, NULL) == ENG_E_INVAL, "zeroed sampler must give INVAL");
    eng_sampler_accept(&z, 3);
    eng_sampler_free(&z);
}

typedef struct bad_cfg {
    const char *field;  /* must appear in the error message */
    void (*set)(eng_sampler_cfg *c);
} bad_cfg;

static const eng_logit_bias g_bad_tok[] = {{V, 1.0f}};
static const eng_logit_bias g_neg_tok[] = {{-1, 1.0f}};
static const eng_logit_bias g_nan_bias[] = {{5, NAN}};

static void b_temp_neg(eng_sampler_cfg *c) { c->temperature = -0.5f; }
static void b_temp_nan(eng_sampler_cfg *c) { c->temperature = NAN; }
static void b_temp_inf(eng_sampler_cfg *c) { c->temperature = INFINITY; }
static void b_topp_zero(eng_sampler_cfg *c) { c->top_p = 0.0f; }
static void b_topp_big(eng_sampler_cfg *c) { c->top_p = 1.5f; }
static void b_topp_nan(eng_sampler_cfg *c) { c->top_p = NAN; }
static void b_minp_neg(eng_sampler_cfg *c) { c->min_p = -0.1f; }
static void b_minp_big(eng_sampler_cfg *c) { c->min_p = 1.01f; }
static void b_rep_zero(eng_sampler_cfg *c) { c->repetition_penalty = 0.0f; }
static void b_rep_inf(eng_sampler_cfg *c) { c->repetition_penalty = INFINITY; }
static void b_pres_nan(eng_sampler_cfg *c) { c->presence_penalty = NAN; }
static void b_freq_inf(eng_sampler_cfg *c) { c->frequency_penalty = -INFINITY; }
static void b_ntop_neg(eng_sampler_cfg *c) { c->n_top_logprobs = -1; }
static void b_ntop_big(eng_sampler_cfg *c) { c->n_top_logprobs = ENG_MAX_TOP_LOGPROBS + 1; }
static void b_bias_tok(eng_sampler_cfg *c) { c->bias = g_bad_tok; c->n_bias = 1; }
static void b_bias_neg(eng_sampler_cfg *c) { c->bias = g_neg_tok; c->n_bias = 1; }
static void b_bias_nan(eng_sampler_cfg *c) { c->bias = g_nan_bias; c->n_bias = 1; }
static void b_bias_null(eng_sampler_cfg *c) { c->bias = NULL; c->n_bias = 2; }

static void check_invalid_configs(void)
{
    const bad_cfg bad[] = {
        {"temperature", b_temp_neg}, {"temperature", b_temp_nan}, {"temperature", b_temp_inf},
        {"top_p", b_topp_zero},      {"top_p", b_topp_big},       {"top_p", b_topp_nan},
        {"min_p", b_minp_neg},       {"min_p", b_minp_big},
        {"repetition_penalty", b_rep_zero}, {"repetition_penalty", b_rep_inf},
        {"presence_penalty", b_pres_nan},   {"frequency_penalty", b_freq_inf},
        {"n_top_logprobs", b_ntop_neg},     {"n_top_logprobs", b_ntop_big},
        {"logit_bias", b_bias_tok},  {"logit_bias", b_bias_neg}, {"logit_bias", b_bias_nan},
        {"logit_bias", b_bias_null},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        eng_sampler_cfg cfg;
        eng_sampler_cfg_default(&cfg);
        bad[i].set(&cfg);
        eng_sampler s;
        eng_err err = {0};
        int rc = eng_sampler_init(&s, &cfg, V, &err);
        CHECK(rc == ENG_E_INVAL && err.code == ENG_E_INVAL, "case %zu (%s): rc %d", i,
              bad[i].field, rc);
        CHECK(strstr(err.msg, bad[i].field) != NULL, "case %zu: message '%s' does not name %s", i,
              err.msg, bad[i].field);
        CHECK(s.probs == NULL && s.idx == NULL && s.counts == NULL, "case %zu: leaked scratch", i);
        eng_sampler_free(&s);
    }
    /* the edges that are valid */
    eng_sampler_cfg cfg;
    eng_sampler_cfg_default(&cfg);
    cfg.temperature = 0.0f;
    cfg.top_p = 1.0f;
    cfg.min_p = 1.0f;
    cfg.n_top_logprobs = ENG_MAX_TOP_LOGPROBS;
    cfg.presence_penalty = -2.0f;
    eng_sampler s;
    eng_err err = {0};
    CHECK(eng_sampler_init(&s, &cfg, V, &err) == 0, "valid edge config rejected: %s", err.msg);
    eng_sampler_free(&s);
    CHECK(eng_sampler_init(&s, &cfg, 0, &err) == ENG_E_INVAL && strstr(err.msg, "vocab"),
          "vocab 0 accepted");
    CHECK(eng_sampler_init(&s, NULL, V, NULL) == ENG_E_INVAL, "NULL cfg accepted");
}

/* Prompt scoring: the raw distribution through the sampler's own log-softmax and top-n. */
static void check_score(void)
{
    static float x[V], y[V];
    td_stories_logits(469, x);
    eng_sampler_cfg cfg;
    eng_sampler_cfg_default(&cfg);
    cfg.temperature = 0.0f;   /* greedy: the reported token is the argmax */
    cfg.n_top_logprobs = 5;
    eng_sampler s;
    CHECK(eng_sampler_init(&s, &cfg, V, NULL) == 0, "init");
    memcpy(y, x, sizeof x);
    eng_logprob a, b;
    int32_t tok = eng_sampler_sample(&s, y, &a);
    memcpy(y, x, sizeof x);
    eng_logprob_score(y, V, tok, 5, &b);
    CHECK(b.token == tok && b.logprob == a.logprob && b.n_top == 5 &&
          memcmp(b.top_ids, a.top_ids, sizeof(int32_t) * 5) == 0 &&
          memcmp(b.top_logprobs, a.top_logprobs, sizeof(float) * 5) == 0,
          "score = sampler's logprobs for the same logits");
    /* any token, against the reference log-softmax */
    memcpy(y, x, sizeof x);
    eng_logprob_score(y, V, 7, 0, &b);
    CHECK(fabs(b.logprob - (x[7] - ref_lse(x, V))) < 1e-5 && b.n_top == 0, "token 7: %g vs %g",
          b.logprob, x[7] - ref_lse(x, V));
    /* NaN counts as -inf, +inf as the certain token; all -inf: -inf, no alternatives */
    memcpy(y, x, sizeof x);
    y[3] = NAN;
    y[9] = INFINITY;
    eng_logprob_score(y, V, 3, 2, &b);
    CHECK(b.logprob == -INFINITY && b.n_top == 2 && b.top_ids[0] == 9 &&
          b.top_logprobs[0] == 0.0f, "NaN/inf: %g, top %d (%g)", b.logprob, b.top_ids[0],
          b.top_logprobs[0]);
    for (int i = 0; i < V; i++)
        y[i] = -INFINITY;
    eng_logprob_score(y, V, 1, 3, &b);
    CHECK(b.logprob == -INFINITY && b.n_top == 0, "all -inf");
    eng_sampler_free(&s);
}

int main(void)
{
    check_score();
    check_penalties();
    check_logprobs();
    check_nonfinite();
    check_invalid_configs();
    if (g_fail) {
        fprintf(stderr, "%d checks failed\n", g_fail);
        return 1;
    }
    printf("ok\n");
    return 0;
}
