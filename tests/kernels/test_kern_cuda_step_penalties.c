/* test_kern_cuda_step_penalties.c — the sampler's bias and penalty entries kept on the device
 * between steps (eng_forward.c, adj_deltas): a step sends only the entries that changed.
 *
 * Three sequences of stories260K decode 40 tokens in one batch, sampled on the device
 * (kern_sample: temperature 0.9, top-k 40, repetition 1.3, presence 0.4 and frequency 0.6
 * penalties, two logit_bias entries each, seeded), their entries built by eng_sampler as the
 * server's scheduler builds them. The same steps are run again with the logits read back and
 * sampled on the host by eng_sampler_sample from the same draws: every pick must match, so a
 * stale or misplaced entry (the penalties of an earlier step, or of another sequence) shows.
 * Bytes: each step's host-to-device copies must be exactly the ids, positions, cache slots,
 * table rows, head rows and rules (kern_sample_params) plus, per sequence, the entries from the
 * first that differs from its previous step's list to the last that does (one entry per step:
 * a token generated again changes its penalty, a new one is added) — against the whole lists,
 * which the step sent before. (The lists stay under 64 entries, the rows' first size, so no
 * growth of the rows is sent here.) Midway a sequence ends and a new one starts in its struct: its
 * row still holds the old sequence's entries, and what differs from them is sent. Skips (77) without a CUDA
 * device (the emulated build, test_kern_cuda_emu_step_penalties, always has one) and under the
 * CPU stand-in (no kern_sample). */
#include "cuda_test_common.h"
#include "eng_forward.h"
#include "eng_kv.h"
#include "eng_model.h"
#include "eng_resident.h"
#include "eng_sampler.h"

#define NS 3
#define NP 6
#define STEPS 40
#define RESTART 20   /* sequence 1 starts again here */

typedef struct run_out {
    int32_t picks[STEPS][NS];
    uint64_t entry_bytes;   /* h2d beyond the fixed part, summed over the steps */
    uint64_t want_bytes;    /* what the first-to-last-difference rule predicts */
    uint64_t whole_bytes;   /* the whole lists every step */
} run_out;

static const eng_logit_bias bias[2] = {{13, 2.5f}, {101, -1.5f}};

static int init_sampler(eng_sampler *sm, int vocab, uint64_t seed, const int32_t *prompt)
{
    eng_sampler_cfg cfg;
    eng_sampler_cfg_default(&cfg);
    cfg.temperature = 0.9f;
    cfg.top_k = 40;
    cfg.repetition_penalty = 1.3f;
    cfg.presence_penalty = 0.4f;
    cfg.frequency_penalty = 0.6f;
    cfg.seed = seed;
    cfg.bias = bias;
    cfg.n_bias = 2;
    eng_err err = {0};
    if (eng_sampler_init(sm, &cfg, vocab, &err)) return 1;
    for (int i = 0; i < NP; i++) eng_sampler_accept_prompt(sm, prompt[i]);
    return 0;
}

/* device = 1: picks by kern_sample with the entries kept on the device; 0: logits back and
 * eng_sampler_sample on the host. */
static int run(const eng_model *m, kern_backend *be, const eng_resident *res, int device,
               run_out *ro)
{
    const int vocab = m->cfg.vocab_size;
    eng_err err = {0};
    eng_ctx *ctx = NULL;
    eng_kv kv;
    eng_seq seq[NS];
    eng_sampler sm[NS];
    int32_t prompt[NS][NP];
    memset(&kv, 0, sizeof kv);
    memset(seq, 0, sizeof seq);
    memset(sm, 0, sizeof sm);
    memset(ro, 0, sizeof *ro);
    kern_sample_adj *adj = malloc(sizeof *adj * NS * (size_t)vocab);
    kern_sample_adj *prev = calloc((size_t)NS * vocab, sizeof *prev);
    int prev_n[NS] = {0};
    float *lg = malloc(sizeof(float) * NS * (size_t)vocab);
    int rc = 1;
    if (eng_ctx_create(&ctx, m, be, NS * NP, &err) || eng_ctx_use_resident(ctx, res) ||
        eng_kv_init_on(&kv, &m->cfg, 2 * NS * (NP + STEPS + 16), KERN_F32, be, &err)) {
        CT_CHECK(0, "setup: %s", err.msg);
        goto done;
    }
    int32_t tok[NS], pos[NS];
    for (int s = 0; s < NS; s++) {
        for (int i = 0; i < NP; i++) prompt[s][i] = (int32_t)((5 + 37 * i + 211 * s) % vocab);
        if (init_sampler(&sm[s], vocab, 1000 + (uint64_t)s, prompt[s]) ||
            eng_kv_reserve(&kv, &seq[s], NP + STEPS)) {
            CT_CHECK(0, "sampler / pool");
            goto done;
        }
        eng_batch_item it[NP];
        for (int i = 0; i < NP; i++) it[i] = (eng_batch_item){prompt[s][i], i, &seq[s], 0, 0};
        if (eng_forward(ctx, &kv, it, NP, NULL, &err)) {
            CT_CHECK(0, "prompt: %s", err.msg);
            goto done;
        }
        tok[s] = prompt[s][NP - 1];
        pos[s] = NP;
    }
    /* the first step feeds each prompt's last token again at its position: re-feed instead
     * (position NP - 1 is written already; feeding NP - 1 again writes the same K/V) */
    for (int s = 0; s < NS; s++) pos[s] = NP - 1;
    for (int st = 0; st < STEPS; st++) {
        if (st == RESTART) {   /* sequence 1 ends; a new one takes its struct */
            eng_kv_release(&kv, &seq[1]);
            eng_sampler_free(&sm[1]);
            for (int i = 0; i < NP; i++) prompt[1][i] = (int32_t)((77 + 13 * i) % vocab);
            if (init_sampler(&sm[1], vocab, 77, prompt[1]) ||
                eng_kv_reserve(&kv, &seq[1], NP + STEPS)) {
                CT_CHECK(0, "restart");
                goto done;
            }
            eng_batch_item it[NP];
            for (int i = 0; i < NP; i++) it[i] = (eng_batch_item){prompt[1][i], i, &seq[1], 0, 0};
            if (eng_forward(ctx, &kv, it, NP, NULL, &err)) {
                CT_CHECK(0, "restart prompt: %s", err.msg);
                goto done;
            }
            tok[1] = prompt[1][NP - 1];
            pos[1] = NP - 1;
        }
        eng_batch_item it[NS];
        for (int s = 0; s < NS; s++) it[s] = (eng_batch_item){tok[s], pos[s], &seq[s], 1, 0};
        kern_sample_params sp[NS];
        int off = 0;
        for (int s = 0; s < NS; s++) {
            int k = eng_sampler_device_params(&sm[s], -1, adj + off, NS * vocab - off, off, &sp[s]);
            if (k < 0) {
                CT_CHECK(0, "entries");
                goto done;
            }
            /* the oracle: from the first entry that differs from the previous list to the last */
            const kern_sample_adj *pv = prev + (size_t)s * vocab;
            int have = prev_n[s] < k ? prev_n[s] : k, lo = 0;
            while (lo < have && !memcmp(&pv[lo], &adj[off + lo], sizeof *adj)) lo++;
            if (lo < k) {
                int hi = k - 1;
                while (hi > lo && hi < have && !memcmp(&pv[hi], &adj[off + hi], sizeof *adj)) hi--;
                ro->want_bytes += (uint64_t)(hi - lo + 1) * sizeof *adj;
            }
            ro->whole_bytes += (uint64_t)k * sizeof *adj;
            memcpy(prev + (size_t)s * vocab, adj + off, (size_t)k * sizeof *adj);
            prev_n[s] = k;
            off += k;
        }
        int32_t picks[NS];
        eng_logprob lpv[NS];
        eng_forward_out out = {.argmax = picks};
        if (device) {
            out.sample = sp;
            out.sample_logits = lg;
            out.sample_adj = adj;
            out.n_sample_adj = off;
        } else {
            out.argmax = NULL;
            out.logits = lg;
        }
        kern_xfer_stats x0, x1;
        kern_get_xfer_stats(be, &x0);
        if (eng_forward_ex(ctx, &kv, it, NS, &out, &err)) {
            CT_CHECK(0, "step %d: %s", st, err.msg);
            goto done;
        }
        kern_get_xfer_stats(be, &x1);
        const uint64_t fixed = 4ull * (5 * NS) + (device ? NS * sizeof(kern_sample_params) : 0);
        ro->entry_bytes += x1.h2d_bytes - x0.h2d_bytes - fixed;
        for (int s = 0; s < NS; s++) {
            int32_t t;
            if (device) {
                t = picks[s];
                if (t == -2) t = eng_sampler_sample_adjusted(&sm[s], lg + (size_t)s * vocab, &lpv[s]);
                else if (eng_sampler_draws(&sm[s])) eng_sampler_skip_uniform(&sm[s]);
            } else {
                t = eng_sampler_sample(&sm[s], lg + (size_t)s * vocab, &lpv[s]);
            }
            if (t < 0) {
                CT_CHECK(0, "step %d row %d: no pick", st, s);
                goto done;
            }
            eng_sampler_accept(&sm[s], t);
            ro->picks[st][s] = t;
            tok[s] = t;
            pos[s]++;
        }
    }
    rc = 0;
done:
    for (int s = 0; s < NS; s++) {
        eng_kv_release(&kv, &seq[s]);
        eng_sampler_free(&sm[s]);
    }
    eng_kv_free(&kv);
    eng_ctx_destroy(ctx);
    free(adj);
    free(prev);
    free(lg);
    return rc;
}

int main(void)
{
    kern_backend cu;
    ct_open_cuda_or_skip(&cu);
    if (ct_standin || !kern_has_sample(&cu)) {
        printf("skip: no kern_sample on this backend\n");
        kern_backend_destroy(&cu);
        return 77;
    }
    const char *sh = ct_shared_or_skip(&cu);
    char path[1024];
    snprintf(path, sizeof path, "%s/models/stories260K.bin", sh);
    eng_model *m = NULL;
    eng_err err = {0};
    eng_resident *res = NULL;
    if (eng_model_open(&m, path, &err) || eng_resident_create(&res, m, &cu, &err)) {
        fprintf(stderr, "FAIL: %s: %s\n", path, err.msg);
        return 1;
    }
    static run_out dev, host;
    if (run(m, &cu, res, 1, &dev) == 0 && run(m, &cu, res, 0, &host) == 0) {
        int diff = 0;
        for (int st = 0; st < STEPS; st++)
            for (int s = 0; s < NS; s++)
                if (dev.picks[st][s] != host.picks[st][s] && diff++ < 5)
                    CT_CHECK(0, "step %d row %d: device picked %d, the host sampler %d", st, s,
                             dev.picks[st][s], host.picks[st][s]);
        CT_CHECK(dev.entry_bytes == dev.want_bytes,
                 "entries: %llu bytes sent over %d steps, the changed ranges are %llu",
                 (unsigned long long)dev.entry_bytes, STEPS, (unsigned long long)dev.want_bytes);
        printf("%d steps x %d sequences: picks equal the host sampler's; entries sent %llu bytes "
               "(%.1f per sequence-step), the whole lists would be %llu\n", STEPS, NS,
               (unsigned long long)dev.entry_bytes, (double)dev.entry_bytes / (STEPS * NS),
               (unsigned long long)dev.whole_bytes);
    }
    eng_resident_destroy(res);
    eng_model_close(m);
    kern_backend_destroy(&cu);
    if (ct_failures) {
        fprintf(stderr, "%d failure(s)\n", ct_failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
