/* test_kern_cuda_greedy_matches_cpu.c — whole forward passes on the CUDA backend against the CPU
 * backend, on the real shared models (stories260K, tinystories-656k, small-lm-5m) as stored and
 * with every linear layer replaced by a packed CLAQ matrix at 2.1, 3 and 4 bits per column
 * (mixed widths for 2.1, ~0.3-1 % outliers; a simple uniform-grid quantizer here, since the
 * kernels only care about the packed layout). Per model and variant: the CPU greedy-decodes a
 * prompt (prefilled in one batch) for STEPS tokens; the CUDA backend is fed the same tokens and
 * must pick the same argmax at every step, except where the CPU's top-2 logit gap is below 1e-3
 * (those are counted and printed, not failed). Logits must also agree within
 * 1e-3 * (1 + max |logit|). Then CUDA batch invariance at the engine level: two sequences decoded
 * in one batch give the same logit bits as each alone. Weights are made resident once
 * (eng_resident) and the KV pool lives on the device (eng_kv_init_on): a decode step must then
 * copy no weight bytes (kern_xfer_stats), while the same step with linears never uploaded does.
 * Then the device-resident step: greedy decoding with the pick made on the device
 * (eng_forward_ex argmax, no logits copied back) gives the CPU's tokens and copies under 64 KiB
 * per decode step in all; and sampling on the device (temperature with top-k, top-p, min-p from
 * a seeded host draw) picks what the host sampler picks from the CPU's logits (device_sampling).
 * Host <-> device bytes per decode step are printed. And for the 2.1-bit variant, a prompt of 20
 * tokens on the tensor-core CLAQ GEMM (mma_prefill).
 * Skips (77) without a CUDA device (CLAQ_CUDA_TEST_STANDIN=1: CPU in CUDA's place). */
/* ctest-cost: 95 (about 95 s in its longer pass; ctest -j starts the costliest first) */
#include "cuda_test_common.h"
#include "eng_claq_file.h"
#include "eng_forward.h"
#include "eng_kv.h"
#include "eng_model.h"
#include "eng_resident.h"
#include "eng_sampler.h"
#include "kern_half.h"

#define STEPS 24
#define MAXP 8

static int argmax(const float *v, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

static float top2_gap(const float *v, int n)
{
    int b = argmax(v, n);
    float s = -INFINITY;
    for (int i = 0; i < n; i++)
        if (i != b && v[i] > s) s = v[i];
    return v[b] - s;
}

/* Runs prompt + decode on one backend, KV pool on it with entries of kvt. toks [np + STEPS]: the
 * prompt, then (greedy = 1) filled with the picks, or (greedy = 0) read as the tokens to feed.
 * logits (may be NULL) [STEPS][vocab]: each step's logits, and with greedy the pick is their
 * argmax, taken here. picks (may be NULL) [STEPS]: the backend's own argmax of each step
 * (eng_forward_out); with greedy and no logits they are the picks, and no logits leave the
 * device (the device-resident step). */
static kern_xfer_stats g_step;   /* bytes of the last run's decode steps (CUDA runs) */

static int run(eng_model *m, kern_backend *be, const eng_resident *res,
               const eng_layer_weights *lws, kern_dtype kvt, int32_t *toks, int np, int greedy,
               float *logits, int32_t *picks, const kern_sample_params *sp)
{
    eng_err err = {0};
    eng_ctx *ctx = NULL;
    eng_kv kv;
    eng_seq seq;
    memset(&kv, 0, sizeof kv);
    memset(&seq, 0, sizeof seq);
    const int vocab = m->cfg.vocab_size;
    int rc = 1;
    /* sp [STEPS]: each step's pick by those rules on the backend; a row it leaves to the host
     * (-2) comes back in row_back */
    float *row_back = sp ? malloc(sizeof(float) * (size_t)vocab) : NULL;
    if (eng_ctx_create(&ctx, m, be, 64, &err) ||
        eng_kv_init_on(&kv, &m->cfg, np + STEPS + 16, kvt, be, &err) ||
        eng_kv_reserve(&kv, &seq, np + STEPS)) {
        CT_CHECK(0, "engine setup: %s", err.msg);
        goto done;
    }
    if (res && eng_ctx_use_resident(ctx, res)) {
        CT_CHECK(0, "resident weights refused");
        goto done;
    }
    if (lws)
        for (int l = 0; l < m->cfg.n_layers; l++) eng_ctx_set_layer_weights(ctx, l, &lws[l]);
    eng_batch_item items[MAXP];
    for (int i = 0; i < np; i++) items[i] = (eng_batch_item){toks[i], i, &seq, i == np - 1, 0};
    eng_forward_out out = {.logits = logits, .argmax = picks, .sample = sp,
                           .sample_logits = row_back};
    if (eng_forward_ex(ctx, &kv, items, np, &out, &err)) {
        CT_CHECK(0, "prefill: %s", err.msg);
        goto done;
    }
    kern_xfer_stats x0, x1;
    kern_get_xfer_stats(be, &x0);
    for (int s = 1; s <= STEPS; s++) {
        if (greedy) {   /* the pick of step s - 1 */
            toks[np + s - 1] = logits ? argmax(logits + (size_t)(s - 1) * vocab, vocab)
                                      : picks[s - 1];
            if (toks[np + s - 1] < 0) {
                CT_CHECK(0, "no pick at step %d", s - 1);
                goto done;
            }
        }
        if (s == STEPS) break;
        items[0] = (eng_batch_item){toks[np + s - 1], np + s - 1, &seq, 1, 0};
        out.logits = logits ? logits + (size_t)s * vocab : NULL;
        out.argmax = picks ? picks + s : NULL;
        out.sample = sp ? sp + s : NULL;
        if (eng_forward_ex(ctx, &kv, items, 1, &out, &err)) {
            CT_CHECK(0, "decode step %d: %s", s, err.msg);
            goto done;
        }
    }
    kern_get_xfer_stats(be, &x1);
    g_step.h2d_bytes = (x1.h2d_bytes - x0.h2d_bytes) / (STEPS - 1);
    g_step.d2h_bytes = (x1.d2h_bytes - x0.d2h_bytes) / (STEPS - 1);
    g_step.weight_h2d_bytes = x1.weight_h2d_bytes - x0.weight_h2d_bytes;   /* total, not mean */
    rc = 0;
done:
    free(row_back);
    eng_kv_release(&kv, &seq);
    eng_kv_free(&kv);
    eng_ctx_destroy(ctx);
    return rc;
}

/* Two sequences in one batch vs each alone, on be: same logit bits. */
static void batch_invariance(eng_model *m, kern_backend *be, const eng_resident *res,
                             const eng_layer_weights *lws, const int32_t *toks, int np,
                             const char *name)
{
    eng_err err = {0};
    const int vocab = m->cfg.vocab_size;
    float *both = malloc(sizeof(float) * 2 * vocab), *alone = malloc(sizeof(float) * 2 * vocab);
    for (int mode = 0; mode < 2; mode++) {
        eng_ctx *ctx = NULL;
        eng_kv kv;
        eng_seq sq[2];
        memset(&kv, 0, sizeof kv);
        memset(sq, 0, sizeof sq);
        if (eng_ctx_create(&ctx, m, be, 64, &err) ||
            eng_kv_init_on(&kv, &m->cfg, 64, KERN_F32, be, &err) ||
            eng_kv_reserve(&kv, &sq[0], np + 1) || eng_kv_reserve(&kv, &sq[1], 3)) {
            CT_CHECK(0, "%s: batch setup: %s", name, err.msg);
            eng_ctx_destroy(ctx);
            eng_kv_free(&kv);
            break;
        }
        if (res) eng_ctx_use_resident(ctx, res);
        if (lws)
            for (int l = 0; l < m->cfg.n_layers; l++) eng_ctx_set_layer_weights(ctx, l, &lws[l]);
        /* seq 0: the prompt; seq 1: two tokens of it reversed. Then one decode token each. */
        eng_batch_item it[MAXP + 2];
        int n = 0;
        for (int i = 0; i < np; i++) it[n++] = (eng_batch_item){toks[i], i, &sq[0], 0, 0};
        it[n++] = (eng_batch_item){toks[1], 0, &sq[1], 0, 0};
        it[n++] = (eng_batch_item){toks[0], 1, &sq[1], 0, 0};
        int ok = eng_forward(ctx, &kv, it, n, NULL, &err) == 0;
        eng_batch_item d0 = {toks[np], np, &sq[0], 1, 0}, d1 = {toks[np], 2, &sq[1], 1, 0};
        float *out = mode ? alone : both;
        if (ok && mode == 0) {
            eng_batch_item dd[2] = {d0, d1};
            ok = eng_forward(ctx, &kv, dd, 2, out, &err) == 0;
        } else if (ok) {
            ok = eng_forward(ctx, &kv, &d0, 1, out, &err) == 0 &&
                 eng_forward(ctx, &kv, &d1, 1, out + vocab, &err) == 0;
        }
        CT_CHECK(ok, "%s: batch run: %s", name, err.msg);
        eng_kv_release(&kv, &sq[0]);
        eng_kv_release(&kv, &sq[1]);
        eng_kv_free(&kv);
        eng_ctx_destroy(ctx);
    }
    size_t at = 0;
    CT_CHECK(ct_same_bits(both, alone, (size_t)2 * vocab, &at),
             "%s: batched decode differs from separate decode at seq %zu logit %zu: %.9g vs %.9g",
             name, at / vocab, at % vocab, both[at], alone[at]);
    free(both);
    free(alone);
}

/* Packs W (fp32 [rows][cols]) with a uniform grid per column over mean +- 3 sigma; entries
 * outside that range are outliers. bits: 4, 3, or 21 (95 % 2-bit, 5 % 4-bit columns). */
static int quantize(const float *w, int64_t rows, int64_t cols, int bits, eng_claq_packed *out)
{
    eng_qmatrix q;
    eng_err err = {0};
    if (eng_qmatrix_alloc(&q, rows, cols, NULL)) return -1;
    int rc = 0;
    for (int64_t j = 0; j < cols && !rc; j++) {
        int b = bits == 21 ? ((j * 2654435761u) % 100 < 5 ? 4 : 2) : bits;
        q.bits[j] = (uint8_t)b;
        double mean = 0, var = 0;
        for (int64_t r = 0; r < rows; r++) mean += w[r * cols + j];
        mean /= (double)rows;
        for (int64_t r = 0; r < rows; r++) var += (w[r * cols + j] - mean) * (w[r * cols + j] - mean);
        double sd = sqrt(var / (double)rows) + 1e-12;
        double lo = mean - 3 * sd, hi = mean + 3 * sd;
        const int K = 1 << b;
        for (int e = 0; e < ENG_QM_CB; e++) {
            int ee = e < K ? e : K - 1;
            q.codebook[j * ENG_QM_CB + e] = kern_f32_to_f16((float)(lo + (hi - lo) * ee / (K - 1)));
        }
        for (int64_t r = 0; r < rows; r++) {
            float v = w[r * cols + j];
            int best = 0;
            float bd = INFINITY;
            for (int e = 0; e < K; e++) {
                float d = fabsf(kern_f16_to_f32(q.codebook[j * ENG_QM_CB + e]) - v);
                if (d < bd) { bd = d; best = e; }
            }
            q.codes[r * cols + j] = (uint8_t)best;
            if ((v < lo || v > hi) &&
                eng_qmatrix_add_outlier(&q, (uint32_t)r, (uint32_t)j, kern_f32_to_f16(v)))
                rc = -1;
        }
    }
    if (!rc) rc = eng_claq_pack(&q, "test", out, &err);
    eng_qmatrix_free(&q);
    return rc;
}

static float *to_f32(const kern_matrix *m)
{
    const int64_t cnt = m->rows * m->cols;
    float *f = malloc(sizeof(float) * (size_t)cnt);
    for (int64_t i = 0; i < cnt; i++)
        f[i] = m->dtype == KERN_F32 ? ((const float *)m->data)[i]
               : m->dtype == KERN_F16 ? kern_f16_to_f32(((const uint16_t *)m->data)[i])
                                      : kern_bf16_to_f32(((const uint16_t *)m->data)[i]);
    return f;
}

/* The device samples (kern_sample through eng_forward_out.sample), fed the CPU's greedy tokens,
 * with the draws of a seeded host sampler: every step's device pick must be what the host
 * sampler picks from the device's own logits of that step (exact but for expf ulps and
 * summation order: none allowed here), and what it picks from the CPU's logits except where the
 * logits' last-bit differences move a boundary past the draw (at most 2 of the draws, counted
 * and printed). A step copies no logits (under 1 KiB back, 64 KiB in all) unless the device left
 * the row to the host (-2, counted). */
static int host_pick(eng_sampler *smp, const float *logits, float *row, int vocab)
{
    memcpy(row, logits, sizeof(float) * (size_t)vocab);
    return eng_sampler_sample(smp, row, NULL);
}

static void device_sampling(eng_model *m, kern_backend *cu, const eng_resident *res,
                            const int32_t *toks, int np, const float *lc, const char *name)
{
    const int vocab = m->cfg.vocab_size;
    const struct { float t; int k; float p, minp; } rules[3] = {
        {0.9f, 40, 0.95f, 0.0f}, {1.0f, 0, 0.9f, 0.0f}, {0.7f, 0, 1.0f, 0.05f}};
    float *row = malloc(sizeof(float) * (size_t)vocab);
    float *ld = malloc(sizeof(float) * (size_t)STEPS * vocab);
    int mism = 0, left = 0, draws = 0;
    for (int r = 0; r < 3; r++) {
        eng_sampler sc, sd;   /* the same seed: the same draws, over the CPU's / device's logits */
        eng_sampler_cfg c;
        eng_sampler_cfg_default(&c);
        c.temperature = rules[r].t;
        c.top_k = rules[r].k;
        c.top_p = rules[r].p;
        c.min_p = rules[r].minp;
        c.seed = 17u + (uint64_t)r;
        eng_err err;
        if (eng_sampler_init(&sc, &c, vocab, &err) || eng_sampler_init(&sd, &c, vocab, &err)) {
            CT_CHECK(0, "sampler init: %s", err.msg);
            break;
        }
        kern_sample_params sp[STEPS];
        int32_t got[STEPS], dt[MAXP + STEPS];
        /* the draws, read from sd's stream without taking them (sd and sc then take them) */
        eng_sampler peek;
        if (eng_sampler_init(&peek, &c, vocab, &err)) break;
        for (int s = 0; s < STEPS; s++) {
            CT_CHECK(eng_sampler_device_params(&peek, -1, NULL, 0, 0, &sp[s]) == 0,
                     "device params");
            eng_sampler_skip_uniform(&peek);
        }
        eng_sampler_free(&peek);
        /* with the logits copied back too, to check each pick against the device's logits; then
         * (first rules only) without, to count the bytes of a device-sampled step */
        for (int with_logits = 1; with_logits >= (r == 0 ? 0 : 1); with_logits--) {
            memcpy(dt, toks, sizeof(int32_t) * (size_t)(np + STEPS));
            memset(got, 0x7f, sizeof got);
            if (run(m, cu, res, NULL, KERN_F16, dt, np, 0, with_logits ? ld : NULL, got, sp)) {
                CT_CHECK(0, "%s: device sampling run failed (%s)", name, ct_cuda_err(cu));
                break;
            }
            const kern_xfer_stats ds = g_step;
            if (!with_logits) {
                CT_CHECK(ds.h2d_bytes + ds.d2h_bytes < 64 * 1024 && ds.d2h_bytes < 1024,
                         "%s: a device-sampled decode step copied %llu + %llu bytes", name,
                         (unsigned long long)ds.h2d_bytes, (unsigned long long)ds.d2h_bytes);
                break;
            }
            for (int s = 0; s < STEPS; s++) {
                const int want_cpu = host_pick(&sc, lc + (size_t)s * vocab, row, vocab);
                const int want_dev = host_pick(&sd, ld + (size_t)s * vocab, row, vocab);
                draws++;
                if (got[s] == -2) {
                    left++;
                    continue;
                }
                CT_CHECK(got[s] == want_dev, "%s rules %d step %d: the device samples %d, the host "
                         "sampler %d from the device's logits", name, r, s, got[s], want_dev);
                if (got[s] != want_cpu) {
                    mism++;
                    printf("note: %s rules %d step %d: device samples %d, host %d from the CPU's "
                           "logits (%d from the device's)\n", name, r, s, got[s], want_cpu,
                           want_dev);
                }
            }
        }
        eng_sampler_free(&sc);
        eng_sampler_free(&sd);
    }
    CT_CHECK(mism <= 2, "%s: %d of %d device-sampled picks differ from the host sampler's on the "
             "CPU's logits", name, mism, draws);
    printf("%-40s device sampling (top-k + top-p, top-p, min-p; f16 pool): %d/%d picks as the "
           "host sampler's on the CPU's logits, %d left to the host\n", name,
           draws - mism - left, draws, left);
    free(row);
    free(ld);
}

/* Folds one row pair into the running max |a - b| (NaN sticks) and max |a|. */
static void row_diff(const float *a, const float *b, int vocab, double *maxd, double *maxl)
{
    for (int i = 0; i < vocab; i++) {
        const double d = fabs((double)a[i] - b[i]);
        if (!(d <= *maxd)) *maxd = d;
        if (fabs(a[i]) > *maxl) *maxl = fabs(a[i]);
    }
}

/* logits [n][vocab] of toks [n] read as one prompt batch (every position's logits) on be. */
static int prefill_all(eng_model *m, kern_backend *be, const eng_resident *res,
                       const eng_layer_weights *lws, const int32_t *toks, int n, float *logits)
{
    eng_err err = {0};
    eng_ctx *ctx = NULL;
    eng_kv kv;
    eng_seq seq;
    memset(&kv, 0, sizeof kv);
    memset(&seq, 0, sizeof seq);
    eng_batch_item *it = calloc((size_t)n, sizeof *it);
    int rc = !it || eng_ctx_create(&ctx, m, be, 64, &err) ||
             eng_kv_init_on(&kv, &m->cfg, n + 16, KERN_F32, be, &err) ||
             eng_kv_reserve(&kv, &seq, n) || (res && eng_ctx_use_resident(ctx, res));
    if (!rc && lws)
        for (int l = 0; l < m->cfg.n_layers; l++) eng_ctx_set_layer_weights(ctx, l, &lws[l]);
    for (int i = 0; !rc && i < n; i++) it[i] = (eng_batch_item){toks[i], i, &seq, 1, 1};
    if (!rc) rc = eng_forward(ctx, &kv, it, n, logits, &err);
    CT_CHECK(rc == 0, "prefill of %d tokens: %s %s", n, err.msg, ct_cuda_err(be));
    eng_kv_release(&kv, &seq);
    eng_kv_free(&kv);
    eng_ctx_destroy(ctx);
    free(it);
    return rc;
}

/* A prompt of 20 tokens in one batch with every packed linear on the tensor-core GEMM
 * (kern_cuda_set_mma_min_n; the fused q/k/v, gate/up + SwiGLU and residual-add epilogues on it):
 * each position's logits within 1e-3 * (1 + max |logit|) of the CPU's and the same argmax except
 * where the CPU's top-2 gap is below 1e-3; the backend's GEMV path (mma off) gives other bits (the
 * mma path ran). */
static void mma_prefill(eng_model *m, kern_backend *cu, kern_backend *cpu, const eng_resident *res,
                        const eng_layer_weights *lw_cpu, const eng_layer_weights *lw_cu,
                        const int32_t *toks, const char *name)
{
    const int n = 20, vocab = m->cfg.vocab_size;   /* three n-tiles of 8 tokens */
    const size_t cnt = (size_t)n * vocab;
    float *lc = malloc(cnt * sizeof(float)), *lm = malloc(cnt * sizeof(float)),
          *l2 = malloc(cnt * sizeof(float));
    ct_poison(lm, cnt);
    ct_poison(l2, cnt);
    int rc = prefill_all(m, cpu, NULL, lw_cpu, toks, n, lc) || ct_set_mma_min_n(cu, 9) ||
             prefill_all(m, cu, res, lw_cu, toks, n, lm) || ct_set_mma_min_n(cu, 0) ||
             prefill_all(m, cu, res, lw_cu, toks, n, l2);
    ct_set_mma_min_n(cu, 0);
    if (rc) {
        CT_CHECK(0, "%s: mma prefill runs failed", name);
        free(lc); free(lm); free(l2);
        return;
    }
    double maxd = 0, maxl = 0;
    int close_calls = 0, same_as_gemv = 1;
    for (int p = 0; p < n; p++) {
        const float *a = lc + (size_t)p * vocab, *b = lm + (size_t)p * vocab;
        row_diff(a, b, vocab, &maxd, &maxl);
        same_as_gemv &= memcmp(b, l2 + (size_t)p * vocab, sizeof(float) * (size_t)vocab) == 0;
        if (top2_gap(a, vocab) < 1e-3f) {
            close_calls++;
            continue;
        }
        CT_CHECK(argmax(a, vocab) == argmax(b, vocab), "%s mma prefill position %d: cuda %d, cpu %d",
                 name, p, argmax(b, vocab), argmax(a, vocab));
    }
    CT_CHECK(maxd <= 1e-3 * (1 + maxl), "%s mma prefill: max |logit diff| %g (max |logit| %g)",
             name, maxd, maxl);
    CT_CHECK(!same_as_gemv, "%s mma prefill: the GEMV's bits (the mma path did not run)", name);
    printf("%-40s prefill of %d tokens on the tensor-core GEMM: max |dlogit| %.3g, %d close calls\n",
           name, n, maxd, close_calls);
    free(lc); free(lm); free(l2);
}

static void compare_variant(eng_model *m, kern_backend *cu, kern_backend *cpu,
                            const eng_resident *res, const eng_layer_weights *lw_cpu,
                            const eng_layer_weights *lw_cu, const int32_t *prompt, int np,
                            const char *name, int mma)
{
    const int vocab = m->cfg.vocab_size;
    int32_t toks[MAXP + STEPS];
    memcpy(toks, prompt, sizeof(int32_t) * (size_t)np);
    float *lc = malloc(sizeof(float) * (size_t)STEPS * vocab);
    float *lg = malloc(sizeof(float) * (size_t)STEPS * vocab);
    ct_poison(lg, (size_t)STEPS * vocab);
    int32_t picks[STEPS];
    memset(picks, 0x7f, sizeof picks);
    if (run(m, cpu, NULL, lw_cpu, KERN_F32, toks, np, 1, lc, NULL, NULL) ||
        run(m, cu, res, lw_cu, KERN_F32, toks, np, 0, lg, picks, NULL)) {
        CT_CHECK(0, "%s: run failed (%s)", name, ct_cuda_err(cu));
        free(lc); free(lg);
        return;
    }
    int close_calls = 0, mism = 0;
    double maxd = 0, maxl = 0;
    for (int s = 0; s < STEPS; s++) {
        const float *a = lc + (size_t)s * vocab, *b = lg + (size_t)s * vocab;
        row_diff(a, b, vocab, &maxd, &maxl);
        const int ta = argmax(a, vocab), tb = argmax(b, vocab);
        CT_CHECK(picks[s] == tb, "%s step %d: the backend's argmax %d, of its own logits %d",
                 name, s, picks[s], tb);
        if (top2_gap(a, vocab) < 1e-3f) {
            close_calls++;
            continue;
        }
        if (ta != tb) {
            mism++;
            CT_CHECK(0, "%s step %d: cuda picks %d, cpu %d (cpu gap %g)", name, s, tb, ta,
                     top2_gap(a, vocab));
        }
    }
    CT_CHECK(maxd <= 1e-3 * (1 + maxl), "%s: max |logit diff| %g (max |logit| %g)", name, maxd, maxl);
    const kern_xfer_stats st = g_step;
    CT_CHECK(st.weight_h2d_bytes == 0, "%s: %llu weight bytes copied during %d decode steps of "
             "a resident model", name, (unsigned long long)st.weight_h2d_bytes, STEPS - 1);
    CT_CHECK(ct_standin || (st.h2d_bytes > 0 && st.d2h_bytes > 0),
             "%s: the CUDA backend counted no host <-> device bytes", name);
    printf("%-40s %d steps: %d argmax mismatches, %d close calls (cpu top-2 gap < 1e-3), "
           "max |dlogit| %.3g; per decode step %.1f KiB h2d, %.1f KiB d2h, 0 B of weights\n",
           name, STEPS, mism, close_calls, maxd, st.h2d_bytes / 1024.0, st.d2h_bytes / 1024.0);
    batch_invariance(m, cu, res, lw_cu, toks, np, name);
    if (mma && !ct_standin) mma_prefill(m, cu, cpu, res, lw_cpu, lw_cu, toks, name);

    /* The device-resident step (the model as stored; the packed variants' picks are checked
     * above): the device's picks are the CPU's greedy tokens (toks), except after a close call,
     * where the CPU's own pick could have gone either way and the sequences may part. fp32 and
     * fp16 (the server's default) pools. */
    for (int f16 = 0; !lw_cu && f16 < 2; f16++) {
        int32_t dt[MAXP + STEPS];
        memcpy(dt, toks, sizeof(int32_t) * (size_t)np);
        int32_t dpicks[STEPS];
        memset(dpicks, 0x7f, sizeof dpicks);
        if (run(m, cu, res, lw_cu, f16 ? KERN_F16 : KERN_F32, dt, np, 1, NULL, dpicks, NULL)) {
            CT_CHECK(0, "%s: device greedy run failed (%s)", name, ct_cuda_err(cu));
            continue;
        }
        const kern_xfer_stats ds = g_step;
        int agree = 0;
        for (int s = 0; s < STEPS; s++) {
            if (dt[np + s] != toks[np + s]) break;
            agree++;
        }
        int first_close = STEPS;
        for (int s = 0; s < STEPS; s++)
            if (top2_gap(lc + (size_t)s * vocab, vocab) < (f16 ? 2e-2f : 1e-3f)) {
                first_close = s;
                break;
            }
        CT_CHECK(agree >= first_close, "%s %s pool: device greedy parts from the CPU at step %d "
                 "(%d vs %d), before any close call (first at %d)", name, f16 ? "f16" : "f32",
                 agree, agree < STEPS ? dt[np + agree] : -1, agree < STEPS ? toks[np + agree] : -1,
                 first_close);
        CT_CHECK(ds.weight_h2d_bytes == 0, "%s: device greedy copied %llu weight bytes", name,
                 (unsigned long long)ds.weight_h2d_bytes);
        CT_CHECK(ds.h2d_bytes + ds.d2h_bytes < 64 * 1024, "%s: a device-resident decode step "
                 "copied %llu + %llu bytes (limit 64 KiB)", name,
                 (unsigned long long)ds.h2d_bytes, (unsigned long long)ds.d2h_bytes);
        CT_CHECK(ct_standin || (ds.h2d_bytes > 0 && ds.d2h_bytes > 0),
                 "%s: device greedy counted no host <-> device bytes", name);
        printf("%-40s device greedy, %s pool: %d/%d tokens as the CPU's (first close call at %d); "
               "per decode step %llu B h2d, %llu B d2h, 0 B of weights\n", name,
               f16 ? "f16" : "f32", agree, STEPS, first_close,
               (unsigned long long)ds.h2d_bytes, (unsigned long long)ds.d2h_bytes);
    }
    if (!lw_cu && kern_has_sample(cu)) device_sampling(m, cu, res, toks, np, lc, name);
    free(lc);
    free(lg);
}

static void one_model(kern_backend *cu, kern_backend *cpu, const char *path, const char *label)
{
    eng_model *m = NULL;
    eng_err err = {0};
    if (eng_model_open(&m, path, &err)) {
        CT_CHECK(0, "open %s: %s", path, err.msg);
        return;
    }
    const int vocab = m->cfg.vocab_size, L = m->cfg.n_layers;
    int32_t prompt[MAXP] = {1, 410, 469, 347, 5, 99, 1000, 7};   /* stories260K's "Zoo" + more */
    const int np = 6;
    for (int i = 0; i < MAXP; i++) prompt[i] %= vocab;
    eng_resident *res = NULL;
    if (eng_resident_create(&res, m, cu, &err)) {
        CT_CHECK(0, "%s: resident weights: %s", label, err.msg);
        eng_model_close(m);
        return;
    }
    /* The counter sees weights staged per call: decode with linears that were never uploaded
     * (the resident norms, the model's host matrices) copies them. */
    if (!ct_standin) {
        int32_t t2[MAXP + STEPS];
        memcpy(t2, prompt, sizeof(int32_t) * (size_t)np);
        float *lt = malloc(sizeof(float) * (size_t)STEPS * vocab);
        eng_layer_weights *hw = calloc((size_t)L, sizeof *hw);
        for (int l = 0; l < L; l++) {
            hw[l] = *eng_resident_layer(res, l);
            for (int i = 0; i < ENG_LIN_COUNT; i++) hw[l].lin[i].dev = NULL;
        }
        CT_CHECK(run(m, cu, res, hw, KERN_F32, t2, np, 1, lt, NULL, NULL) == 0 && g_step.weight_h2d_bytes > 0,
                 "%s: decode on host weights copied %llu weight bytes", label,
                 (unsigned long long)g_step.weight_h2d_bytes);
        free(hw);
        free(lt);
    }
    char name[128];
    snprintf(name, sizeof name, "%s fp", label);
    compare_variant(m, cu, cpu, res, NULL, NULL, prompt, np, name, 0);

    const int variants[] = {21, 3, 4};
    for (unsigned v = 0; v < 3; v++) {
        eng_claq_packed *pk = calloc((size_t)L * ENG_LIN_COUNT, sizeof *pk);
        eng_layer_weights *lc = calloc((size_t)L, sizeof *lc), *lg = calloc((size_t)L, sizeof *lg);
        int ok = 1;
        for (int l = 0; l < L && ok; l++) {
            lc[l] = m->w.layers[l];
            for (int i = 0; i < ENG_LIN_COUNT && ok; i++) {
                const kern_matrix *src = &m->w.layers[l].lin[i];
                float *wf = to_f32(src);
                eng_claq_packed *p = &pk[l * ENG_LIN_COUNT + i];
                ok = quantize(wf, src->rows, src->cols, variants[v], p) == 0;
                free(wf);
                lc[l].lin[i] = (kern_matrix){KERN_CLAQ, src->rows, src->cols, NULL, &p->view, NULL};
            }
            /* the CUDA copy: the resident norms (device memory), these linears uploaded */
            lg[l] = *eng_resident_layer(res, l);
            memcpy(lg[l].lin, lc[l].lin, sizeof lg[l].lin);
            for (int i = 0; i < ENG_LIN_COUNT && ok; i++) {
                lg[l].lin[i].dev = NULL;
                CT_CHECK(kern_upload(cu, &lg[l].lin[i]) == 0, "upload claq: %s", ct_cuda_err(cu));
            }
        }
        CT_CHECK(ok, "%s: quantize", label);
        if (ok) {
            snprintf(name, sizeof name, "%s claq %s bits", label,
                     variants[v] == 21 ? "2.1" : variants[v] == 3 ? "3" : "4");
            /* the tensor-core GEMM on the mixed 2/4-bit variant (every width: the matmul test) */
            compare_variant(m, cu, cpu, res, lc, lg, prompt, np, name, variants[v] == 21);
        }
        for (int l = 0; l < L; l++)
            for (int i = 0; i < ENG_LIN_COUNT; i++) {
                kern_release(cu, &lg[l].lin[i]);
                eng_claq_packed_free(&pk[l * ENG_LIN_COUNT + i]);
            }
        free(pk); free(lc); free(lg);
    }
    eng_resident_destroy(res);
    eng_model_close(m);
}

int main(void)
{
    kern_backend cu, cpu;
    ct_open_cuda_or_skip(&cu);
    const char *sh = ct_shared_or_skip(&cu);
    ct_open_cpu_ref(&cpu);
    const char *models[][2] = {{"models/stories260K.bin", "stories260K"},
                               {"models/tinystories-656k", "tinystories-656k"},
                               {"models/small-lm-5m", "small-lm-5m"}};
    for (int i = 0; i < 3; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", sh, models[i][0]);
        one_model(&cu, &cpu, path, models[i][1]);
    }
    kern_backend_destroy(&cu);
    kern_backend_destroy(&cpu);
    if (ct_failures) {
        fprintf(stderr, "%d failures\n", ct_failures);
        return 1;
    }
    printf("ok: CUDA greedy tokens equal the CPU's on every model and CLAQ variant\n");
    return 0;
}
