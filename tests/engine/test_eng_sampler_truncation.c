/* test_eng_sampler_truncation.c — top-k, top-p, min-p and greedy on real logits (stories260K,
 * V = 512, and the Llama 2 piece scores, V = 32000, with a 259-way tie at the top): every draw
 * lies in the reference set (brute-force sort in the test), the set is minimal for top-p (each
 * member is drawn at its renormalized frequency), greedy equals argmax with the lowest id on
 * ties; also prints the time per sample at V = 32000. */
#include <time.h>

#include "eng_sampler.h"
#include "test_eng_sampler_data.h"

typedef struct trunc_case {
    const char *label;
    float T;
    int top_k;
    float top_p;    /* desired; moved to the middle of its cumulative-mass gap, see below */
    float min_p;    /* likewise, to the middle of its probability-ratio gap */
} trunc_case;

/* Float and double sums differ in the last bits, so a top_p that lands exactly on a cumulative
 * sum (or a min_p on a probability ratio) would make the expected set ambiguous. Move each to
 * the middle of the gap it falls in: the set it selects is unchanged, the margin is maximal. */
static void center_thresholds(const float *x, int V, trunc_case *c)
{
    int32_t *order = malloc((size_t)V * sizeof *order);
    double *q = malloc((size_t)V * sizeof *q);
    float *xs = malloc((size_t)V * sizeof *xs);
    td_order(x, V, order);
    int n = V;
    while (n > 0 && x[order[n - 1]] == -INFINITY)
        n--;
    if (c->top_k > 0 && c->top_k < n)
        n = c->top_k;
    for (int i = 0; i < V; i++)
        xs[i] = -INFINITY;
    for (int j = 0; j < n; j++)
        xs[order[j]] = x[order[j]];
    td_softmax(xs, V, c->T, q);
    if (c->top_p < 1.0f) {
        double cum = 0.0, prev = 0.0;
        for (int j = 0; j < n; j++) {
            prev = cum;
            cum += q[order[j]];
            if (cum >= c->top_p) {
                c->top_p = (float)(0.5 * (prev + cum));
                n = j + 1;
                break;
            }
        }
    }
    if (c->min_p > 0.0f) {
        double pmax = q[order[0]];
        for (int j = 1; j < n; j++) {
            double r = q[order[j]] / pmax, r_prev = q[order[j - 1]] / pmax;
            if (r < c->min_p) {
                c->min_p = (float)(0.5 * (r + r_prev));
                break;
            }
        }
    }
    free(order);
    free(q);
    free(xs);
}

static void run_case(const float *x, int V, trunc_case c, int n_draws, uint64_t seed)
{
    center_thresholds(x, V, &c);
    unsigned char *allowed = malloc((size_t)V);
    double *q = malloc((size_t)V * sizeof *q);
    int *counts = calloc((size_t)V, sizeof *counts);
    float *w = malloc((size_t)V * sizeof *w);
    td_reference(x, V, c.T, c.top_k, c.top_p, c.min_p, allowed, q);
    int set = 0;
    for (int i = 0; i < V; i++)
        set += allowed[i];

    eng_sampler_cfg cfg;
    eng_sampler_cfg_default(&cfg);
    cfg.temperature = c.T;
    cfg.top_k = c.top_k;
    cfg.top_p = c.top_p;
    cfg.min_p = c.min_p;
    cfg.seed = seed;
    eng_sampler s;
    eng_err err = {0};
    int rc = eng_sampler_init(&s, &cfg, V, &err);
    CHECK(rc == 0, "%s: init: %s", c.label, err.msg);
    for (int i = 0; rc == 0 && i < n_draws; i++) {
        memcpy(w, x, (size_t)V * sizeof *w);
        int32_t t = eng_sampler_sample(&s, w, NULL);
        CHECK(t >= 0 && t < V, "%s: draw returned %d", c.label, (int)t);
        if (t < 0 || t >= V)
            break;
        counts[t]++;
    }
    char label[128];
    snprintf(label, sizeof label, "%s (set %d)", c.label, set);
    td_check_dist(label, counts, q, allowed, V, n_draws);
    eng_sampler_free(&s);
    free(allowed);
    free(q);
    free(counts);
    free(w);
}

static void check_greedy(const float *x, int V, const char *label)
{
    eng_sampler_cfg cfg;
    eng_sampler_cfg_default(&cfg);
    cfg.temperature = 0.0f;
    cfg.top_k = 3;      /* truncation must not change the greedy choice */
    cfg.top_p = 0.5f;
    eng_sampler s;
    CHECK(eng_sampler_init(&s, &cfg, V, NULL) == 0, "greedy init");
    float *w = malloc((size_t)V * sizeof *w);
    memcpy(w, x, (size_t)V * sizeof *w);
    int32_t best = 0;
    for (int i = 1; i < V; i++)
        if (x[i] > x[best])
            best = i;
    int32_t t = eng_sampler_sample(&s, w, NULL);
    CHECK(t == best, "%s: greedy chose %d, argmax is %d", label, (int)t, (int)best);
    free(w);
    eng_sampler_free(&s);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void time_case(const float *x, int V, const char *label, float T, int top_k, float top_p,
                      float min_p)
{
    eng_sampler_cfg cfg;
    eng_sampler_cfg_default(&cfg);
    cfg.temperature = T;
    cfg.top_k = top_k;
    cfg.top_p = top_p;
    cfg.min_p = min_p;
    eng_sampler s;
    CHECK(eng_sampler_init(&s, &cfg, V, NULL) == 0, "timing init");
    float *w = malloc((size_t)V * sizeof *w);
    enum { N = 200 };
    double t_copy = 0.0, t0 = now_s();
    for (int i = 0; i < N; i++)
        memcpy(w, x, (size_t)V * sizeof *w);
    t_copy = now_s() - t0;
    t0 = now_s();
    for (int i = 0; i < N; i++) {
        memcpy(w, x, (size_t)V * sizeof *w);
        eng_sampler_sample(&s, w, NULL);
    }
    double us = (now_s() - t0 - t_copy) / N * 1e6;
    printf("time per sample, V=%d, %-34s %8.1f us\n", V, label, us);
    /* generous bound (shared 2-core machine, sanitizer builds): a full sort per token at this
     * size costs a few ms, so this only catches something pathological */
    CHECK(us < 20000.0, "%s: %.0f us per sample", label, us);
    free(w);
    eng_sampler_free(&s);
}

int main(void)
{
    static float x[TD_STORIES_V], sc[TD_LLAMA_V], ll[TD_LLAMA_V];
    td_stories_logits(410, x);
    td_llama_scores(sc);

    /* stories260K, 20,000 draws each */
    const trunc_case st[] = {
        {"stories T=4 top_k=1", 4.0f, 1, 1.0f, 0.0f},
        {"stories T=4 top_k=5", 4.0f, 5, 1.0f, 0.0f},
        {"stories T=8 top_k=40", 8.0f, 40, 1.0f, 0.0f},
        {"stories T=4 top_p=0.5", 4.0f, 0, 0.5f, 0.0f},
        {"stories T=8 top_p=0.9", 8.0f, 0, 0.9f, 0.0f},
        {"stories T=8 min_p=0.1", 8.0f, 0, 1.0f, 0.1f},
        {"stories T=8 min_p=0.15", 8.0f, 0, 1.0f, 0.15f},
        {"stories T=8 top_k=100 top_p=0.8 min_p=0.1", 8.0f, 100, 0.8f, 0.1f},
        {"stories T=6 top_k=50 top_p=0.6", 6.0f, 50, 0.6f, 0.0f},
    };
    for (size_t i = 0; i < sizeof st / sizeof st[0]; i++)
        run_case(x, TD_STORIES_V, st[i], 20000, 100 + i);

    /* Llama 2 scores as logits: p ~ exp(-rank / T). The 259 pieces scored 0 tie at the top, so
     * top-k must take the lowest ids among them. Fewer draws: every draw costs O(V). */
    const trunc_case lc[] = {
        {"llama T=1 top_k=40 (all tied)", 1.0f, 40, 1.0f, 0.0f},
        {"llama T=300 top_k=300", 300.0f, 300, 1.0f, 0.0f},
        {"llama T=300 top_p=0.5", 300.0f, 0, 0.5f, 0.0f},
        {"llama T=50 top_p=0.9", 50.0f, 0, 0.9f, 0.0f},
        {"llama T=30 min_p=0.4", 30.0f, 0, 1.0f, 0.4f},
    };
    for (size_t i = 0; i < sizeof lc / sizeof lc[0]; i++)
        run_case(sc, TD_LLAMA_V, lc[i], 2000, 200 + i);

    /* greedy equals argmax: every one of the 512 stories contexts, and the tied Llama head */
    {
        int toks[TD_STORIES_V];
        float *all = malloc((size_t)TD_STORIES_V * TD_STORIES_V * sizeof *all);
        for (int i = 0; i < TD_STORIES_V; i++)
            toks[i] = i;
        td_stories_logits_many(toks, TD_STORIES_V, all);
        for (int tok = 0; tok < TD_STORIES_V; tok++) {
            char label[32];
            snprintf(label, sizeof label, "stories ctx %d", tok);
            check_greedy(all + (size_t)tok * TD_STORIES_V, TD_STORIES_V, label);
        }
        free(all);
    }
    check_greedy(sc, TD_LLAMA_V, "llama scores (tied head)");
    {
        /* lowest id among ties, explicitly: ids 0..258 share the maximum 0 */
        eng_sampler_cfg cfg;
        eng_sampler_cfg_default(&cfg);
        cfg.temperature = 0.0f;
        eng_sampler s;
        eng_sampler_init(&s, &cfg, TD_LLAMA_V, NULL);
        memcpy(ll, sc, sizeof ll);
        ll[0] = ll[1] = ll[2] = -1.0f;
        CHECK(eng_sampler_sample(&s, ll, NULL) == 3, "tie at the top must resolve to id 3");
        eng_sampler_free(&s);
    }

    /* speed at V = 32000, with logits spread like a real model's (scores / 1000) */
    for (int i = 0; i < TD_LLAMA_V; i++)
        ll[i] = sc[i] > -1e8f ? sc[i] / 1000.0f : sc[i];
    time_case(ll, TD_LLAMA_V, "greedy", 0.0f, 0, 1.0f, 0.0f);
    time_case(ll, TD_LLAMA_V, "T=1", 1.0f, 0, 1.0f, 0.0f);
    time_case(ll, TD_LLAMA_V, "T=1 top_k=40", 1.0f, 40, 1.0f, 0.0f);
    time_case(ll, TD_LLAMA_V, "T=0.1 top_p=0.95 (small set)", 0.1f, 0, 0.95f, 0.0f);
    time_case(ll, TD_LLAMA_V, "T=1 top_p=0.95 (large set)", 1.0f, 0, 0.95f, 0.0f);
    time_case(ll, TD_LLAMA_V, "T=1 top_k=40 top_p=0.9 min_p=0.05", 1.0f, 40, 0.9f, 0.05f);

    if (g_fail) {
        fprintf(stderr, "%d checks failed\n", g_fail);
        return 1;
    }
    printf("ok\n");
    return 0;
}
