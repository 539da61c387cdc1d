/* test_eng_sampler_data.h — real logits for the sampler tests, plus the brute-force reference
 * the sampler is checked against. Header-only, included by tests/engine/test_eng_sampler_*.c.
 *  - stories260K.bin (V = 512): logits of the real model's tied classifier applied to the
 *    final-RMSNorm'd embedding of a token (the model with its layers skipped: real weights, real
 *    vocabulary geometry, no forward pass needed);
 *  - tokenizer.bin (V = 32000): the Llama 2 piece scores, a real 32000-long vector with a large
 *    tied head (259 special/byte pieces at 0) and one -1e9 entry.
 * Files come from $CLAQ_SHARED/models; a test exits 77 (skip) when they are absent. */
#ifndef TEST_ENG_SAMPLER_DATA_H
#define TEST_ENG_SAMPLER_DATA_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_check.h"

static inline void td_path(char *buf, size_t cap, const char *rel)
{
    const char *root = getenv("CLAQ_SHARED");
    snprintf(buf, cap, "%s/%s", root ? root : "/work/shared", rel);
}

static inline unsigned char *td_read(const char *rel, size_t *n)
{
    char path[1024];
    td_path(path, sizeof path, rel);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "SKIP: cannot open %s\n", path);
        exit(77);
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)len);
    if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(1);
    }
    fclose(f);
    *n = (size_t)len;
    return buf;
}

#define TD_STORIES_V 512

/* out[n][512]: logits for "next token after toks[i]" with stories260K's layers skipped. */
static inline void td_stories_logits_many(const int *toks, int n_toks, float *out)
{
    size_t n;
    unsigned char *b = td_read("models/stories260K.bin", &n);
    int32_t hdr[7];
    memcpy(hdr, b, sizeof hdr);
    const int dim = hdr[0], hid = hdr[1], nl = hdr[2], nh = hdr[3], nkv = hdr[4], V = hdr[5];
    if (dim != 64 || V != TD_STORIES_V || n != 1056540) {
        fprintf(stderr, "stories260K.bin: unexpected header\n");
        exit(1);
    }
    const float *f = (const float *)(b + 28);  /* 28 is 4-aligned: malloc'd base */
    const float *emb = f;
    size_t kv = (size_t)dim * nkv / nh;
    size_t off = (size_t)V * dim + (size_t)nl * dim + (size_t)nl * dim * dim +
                 2 * (size_t)nl * kv * dim + (size_t)nl * dim * dim + (size_t)nl * dim +
                 3 * (size_t)nl * hid * dim;
    const float *rms_final = f + off;
    for (int t = 0; t < n_toks; t++) {
        const float *e = emb + (size_t)toks[t] * dim;
        float h[64];
        double ss = 0.0;
        for (int i = 0; i < dim; i++)
            ss += (double)e[i] * e[i];
        float inv = (float)(1.0 / sqrt(ss / dim + 1e-5));
        for (int i = 0; i < dim; i++)
            h[i] = e[i] * inv * rms_final[i];
        for (int v = 0; v < V; v++) {
            float acc = 0.0f;
            for (int i = 0; i < dim; i++)
                acc += emb[(size_t)v * dim + i] * h[i];
            out[(size_t)t * V + v] = acc;
        }
    }
    free(b);
}

/* logits[512] for one context token. */
static inline void td_stories_logits(int tok, float *logits)
{
    td_stories_logits_many(&tok, 1, logits);
}

#define TD_LLAMA_V 32000

/* scores[32000] from tokenizer.bin (llama2.c format). */
static inline void td_llama_scores(float *scores)
{
    size_t n;
    unsigned char *b = td_read("models/tokenizer.bin", &n);
    size_t o = 4;
    for (int i = 0; i < TD_LLAMA_V; i++) {
        int32_t len;
        if (o + 8 > n) {
            fprintf(stderr, "tokenizer.bin: truncated\n");
            exit(1);
        }
        memcpy(&scores[i], b + o, 4);
        memcpy(&len, b + o + 4, 4);
        o += 8 + (size_t)len;
    }
    free(b);
}

/* ---- reference ----------------------------------------------------------------------- */

static inline int td_cmp_desc(const void *a, const void *b, void *key)
{
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    float x = ((const float *)key)[i], y = ((const float *)key)[j];
    if (x > y)
        return -1;
    if (x < y)
        return 1;
    return i < j ? -1 : i > j;
}

/* order[V]: token ids by logit descending, lower id first on ties (the sampler's order). */
static inline void td_order(const float *x, int V, int32_t *order)
{
    for (int i = 0; i < V; i++)
        order[i] = i;
    qsort_r(order, (size_t)V, sizeof *order, td_cmp_desc, (void *)x);
}

/* p[V] = softmax(x / T) in double; -inf entries get 0. */
static inline void td_softmax(const float *x, int V, double T, double *p)
{
    double m = -INFINITY, s = 0.0;
    for (int i = 0; i < V; i++)
        if (x[i] > m)
            m = x[i];
    for (int i = 0; i < V; i++) {
        p[i] = x[i] == -INFINITY ? 0.0 : exp(((double)x[i] - m) / T);
        s += p[i];
    }
    for (int i = 0; i < V; i++)
        p[i] /= s;
}

/* Reference truncation: returns allowed[V] (0/1) and the renormalized target q[V] for
 * temperature T, top_k, top_p, min_p, following the documented order. */
static inline void td_reference(const float *x, int V, double T, int top_k, double top_p,
                                double min_p, unsigned char *allowed, double *q)
{
    int32_t *order = malloc((size_t)V * sizeof *order);
    float *xs = malloc((size_t)V * sizeof *xs);
    td_order(x, V, order);
    int n = V;
    while (n > 0 && x[order[n - 1]] == -INFINITY)
        n--;
    if (top_k > 0 && top_k < n)
        n = top_k;
    for (int i = 0; i < V; i++)
        xs[i] = -INFINITY;
    for (int j = 0; j < n; j++)
        xs[order[j]] = x[order[j]];
    td_softmax(xs, V, T, q);
    if (top_p < 1.0) {
        double cum = 0.0;
        for (int j = 0; j < n; j++) {
            cum += q[order[j]];
            if (cum >= top_p) {
                n = j + 1;
                break;
            }
        }
    }
    double pmax = q[order[0]];
    int k = 0;
    while (k < n && q[order[k]] >= min_p * pmax)
        k++;
    n = k;
    memset(allowed, 0, (size_t)V);
    double s = 0.0;
    for (int j = 0; j < n; j++) {
        allowed[order[j]] = 1;
        s += q[order[j]];
    }
    for (int i = 0; i < V; i++)
        q[i] = allowed[i] ? q[i] / s : 0.0;
    free(order);
    free(xs);
}

/* Compares the histogram of N draws with the target q[V]:
 *  - no draw outside allowed[] (exact);
 *  - every token: |count - Nq| <= 5 sd + 1 (sd of the binomial; +1 absorbs tiny Nq);
 *  - every token with Nq >= 20 was drawn at least once (P(miss) <= e^-20);
 *  - Pearson chi-square over tokens with Nq >= 5 (the rest lumped in one cell) below
 *    df + 6 sqrt(2 df), i.e. about 4 standard deviations of the chi-square.
 * With fixed seeds the outcome is deterministic; a correct sampler passes with wide margin,
 * while a wrong temperature, an off-by-one cut or a biased draw fails. */
static inline void td_check_dist(const char *label, const int *counts, const double *q,
                          const unsigned char *allowed, int V, int N)
{
    double chi2 = 0.0, lump_e = 0.0, lump_o = 0.0, worst_z = 0.0;
    int cells = 0, outside = 0;
    for (int i = 0; i < V; i++) {
        if (!allowed[i] && counts[i] > 0) {
            if (outside++ < 5)
                fprintf(stderr, "  %s: token %d drawn %d times but outside the set\n", label, i,
                        counts[i]);
        }
        double e = N * q[i], sd = sqrt(N * q[i] * (1.0 - q[i]));
        double dev = fabs(counts[i] - e);
        if (sd > 0 && dev / sd > worst_z)
            worst_z = dev / sd;
        CHECK(dev <= 5.0 * sd + 1.0, "%s: token %d drawn %d times, expected %.1f (sd %.1f)", label,
              i, counts[i], e, sd);
        if (e >= 20.0)
            CHECK(counts[i] > 0, "%s: token %d (expected %.1f draws) never drawn", label, i, e);
        if (e >= 5.0) {
            chi2 += (counts[i] - e) * (counts[i] - e) / e;
            cells++;
        } else {
            lump_e += e;
            lump_o += counts[i];
        }
    }
    if (lump_e >= 5.0) {
        chi2 += (lump_o - lump_e) * (lump_o - lump_e) / lump_e;
        cells++;
    }
    int df = cells > 1 ? cells - 1 : 1;
    double lim = df + 6.0 * sqrt(2.0 * df);
    CHECK(outside == 0, "%s: %d tokens drawn outside the allowed set", label, outside);
    CHECK(chi2 <= lim, "%s: chi-square %.1f over %d df exceeds %.1f", label, chi2, df, lim);
    printf("%-44s chi2 %8.1f / df %5d (limit %7.1f), worst |z| %.2f\n", label, chi2, df, lim,
           worst_z);
}

#endif
