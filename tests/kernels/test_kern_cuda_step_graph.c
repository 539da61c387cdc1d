/* test_kern_cuda_step_graph.c — decode steps recorded as CUDA graphs and replayed
 * (kern_cuda_graph.cu) give the same bits as the same steps issued op by op.
 *
 * On stories260K and tinystories-656k with resident weights and the KV pool on the device, a
 * run of three phases, once with graphs off and once on (kern_cuda_set_graphs):
 *   greedy     a prompt of 9 tokens in one batch, then 12 decode steps of two sequences, picks
 *              made on the device (kern_argmax), logits read back; every other step wants the
 *              first row only, so the head's and the pick's sizes change from step to step (a
 *              graph replayed with stale arguments gets them wrong);
 *   sampled    6 more steps with kern_sample (temperature, top-k, top-p, logprobs: other kernels,
 *              so the kept graph cannot be updated and is built again);
 *   one        4 steps of one sequence (another batch size: a graph of its own).
 * Every step's logits, picks and logprobs must be bit-identical between the two runs; the graph
 * counters must show the steps launched as graphs (updates and instantiations). Then the same
 * with one layer's weights not resident: their staging cannot be recorded, so every step's
 * recording is dropped and the step issued again op by op, and still matches.
 * Skips (77) without a CUDA device (the emulated build, test_kern_cuda_emu_step_graph, always
 * has one) and under CLAQ_CUDA_TEST_STANDIN (graphs are a CUDA matter). */
#include "cuda_test_common.h"
#include "eng_forward.h"
#include "eng_kv.h"
#include "eng_model.h"
#include "eng_resident.h"

#define NP 9
#define GREEDY 12
#define SAMPLED 6
#define ONE 4
#define STEPS (GREEDY + SAMPLED + ONE)

typedef struct trace {
    float *logits;                /* [STEPS][2][vocab] */
    int32_t picks[STEPS][2];
    kern_sample_lp lp[STEPS][2];  /* the sampled steps' logprobs */
    float *back;                  /* [2][vocab] rows kern_sample leaves to the host */
} trace;

#ifdef CLAQ_HAVE_CUDA
static int set_graphs(kern_backend *b, int on) { return kern_cuda_set_graphs(b, on); }
static void graph_stats(kern_backend *b, kern_cuda_graph_stats *s) { kern_cuda_get_graph_stats(b, s); }
#else   /* never reached: ct_open_cuda_or_skip skips first */
typedef struct kern_cuda_graph_stats {
    uint64_t launched, updated, instantiated, fallbacks;
} kern_cuda_graph_stats;
static int set_graphs(kern_backend *b, int on) { (void)b; (void)on; return KERN_E_INVAL; }
static void graph_stats(kern_backend *b, kern_cuda_graph_stats *s) { (void)b; memset(s, 0, sizeof *s); }
#endif

static int run(const eng_model *m, kern_backend *be, const eng_resident *res,
               const eng_layer_weights *lw, trace *tr, const char *label)
{
    const int vocab = m->cfg.vocab_size;
    eng_err err = {0};
    eng_ctx *ctx = NULL;
    eng_kv kv;
    eng_seq seq[2];
    memset(&kv, 0, sizeof kv);
    memset(seq, 0, sizeof seq);
    int rc = 1;
    if (eng_ctx_create(&ctx, m, be, 2 * NP, &err) || eng_ctx_use_resident(ctx, res) ||
        eng_kv_init_on(&kv, &m->cfg, 2 * (NP + STEPS + 16), KERN_F32, be, &err) ||
        eng_kv_reserve(&kv, &seq[0], NP + STEPS) || eng_kv_reserve(&kv, &seq[1], NP + STEPS)) {
        CT_CHECK(0, "%s: setup: %s", label, err.msg);
        goto done;
    }
    if (lw) eng_ctx_set_layer_weights(ctx, 1, lw);
    int32_t tok[2] = {0, 0};
    {   /* the prompts, both sequences in one batch */
        eng_batch_item it[2 * NP];
        for (int s = 0; s < 2; s++)
            for (int i = 0; i < NP; i++)
                it[s * NP + i] = (eng_batch_item){(int32_t)((7 + 31 * i + 101 * s) % vocab), i,
                                                  &seq[s], i == NP - 1, 0};
        int32_t pk[2];
        eng_forward_out out = {.argmax = pk};
        if (eng_forward_ex(ctx, &kv, it, 2 * NP, &out, &err)) {
            CT_CHECK(0, "%s: prompt: %s", label, err.msg);
            goto done;
        }
        tok[0] = pk[0];
        tok[1] = pk[1];
    }
    for (int st = 0; st < STEPS; st++) {
        const int n = st < GREEDY + SAMPLED ? 2 : 1, pos = NP + st;
        eng_batch_item it[2];
        /* the greedy phase's odd steps want only the first row: the head and the pick then
         * take other sizes, which a graph replayed with stale arguments would get wrong */
        const int want1 = !(st < GREEDY && st % 2);
        for (int s = 0; s < n; s++)
            it[s] = (eng_batch_item){tok[s] < 0 ? 0 : tok[s], pos, &seq[s], s == 0 || want1, 0};
        float *lg = tr->logits + (size_t)st * 2 * vocab;
        kern_sample_params sp[2];
        kern_sample_lp lp[2];
        memset(lp, 0, sizeof lp);
        eng_logprob elp[2];
        memset(elp, 0, sizeof elp);
        eng_forward_out out = {.logits = lg, .argmax = tr->picks[st]};
        if (st >= GREEDY && st < GREEDY + SAMPLED) {
            for (int s = 0; s < n; s++)
                sp[s] = (kern_sample_params){.temperature = 0.8f, .top_k = 40, .top_p = 0.9f,
                                             .u = (double)(st * 2 + s + 1) / 40.0,
                                             .n_logprobs = 3};
            out.logits = NULL;   /* the sampler adjusts them on the device */
            out.sample = sp;
            out.sample_logits = tr->back;
            out.sample_lp = elp;
        }
        if (eng_forward_ex(ctx, &kv, it, n, &out, &err)) {
            CT_CHECK(0, "%s: step %d: %s", label, st, err.msg);
            goto done;
        }
        if (n == 2 && !want1) {
            tr->picks[st][1] = (tok[1] + 1) % vocab;   /* its next token, chosen here */
            elp[1] = (eng_logprob){0};
        }
        for (int s = 0; s < n; s++) {
            tr->lp[st][s].token = elp[s].token;
            tr->lp[st][s].logprob = elp[s].logprob;
            tr->lp[st][s].n_top = elp[s].n_top;
            for (int j = 0; j < elp[s].n_top && j < KERN_MAX_TOP_LOGPROBS; j++) {
                tr->lp[st][s].top_ids[j] = elp[s].top_ids[j];
                tr->lp[st][s].top_logprobs[j] = elp[s].top_logprobs[j];
            }
            tok[s] = tr->picks[st][s];
        }
    }
    rc = 0;
done:
    eng_kv_release(&kv, &seq[0]);
    eng_kv_release(&kv, &seq[1]);
    eng_kv_free(&kv);
    eng_ctx_destroy(ctx);
    return rc;
}

static void compare(const eng_model *m, const trace *a, const trace *b, const char *label)
{
    const int vocab = m->cfg.vocab_size;
    for (int st = 0; st < STEPS; st++) {
        const int n = st < GREEDY + SAMPLED ? 2 : 1;
        const int sampled = st >= GREEDY && st < GREEDY + SAMPLED;
        for (int s = 0; s < n; s++) {
            CT_CHECK(a->picks[st][s] == b->picks[st][s], "%s: step %d row %d: pick %d, op by op %d",
                     label, st, s, b->picks[st][s], a->picks[st][s]);
            if (!sampled && (s == 0 || st >= GREEDY || st % 2 == 0)) {
                size_t where = 0;
                const float *x = a->logits + ((size_t)st * 2 + s) * vocab;
                const float *y = b->logits + ((size_t)st * 2 + s) * vocab;
                CT_CHECK(ct_same_bits(x, y, (size_t)vocab, &where),
                         "%s: step %d row %d: logit %zu is %.9g, op by op %.9g", label, st, s,
                         where, y[where], x[where]);
            } else {
                CT_CHECK(!memcmp(&a->lp[st][s], &b->lp[st][s], sizeof a->lp[st][s]),
                         "%s: step %d row %d: logprobs differ (%.9g vs %.9g op by op)", label, st,
                         s, b->lp[st][s].logprob, a->lp[st][s].logprob);
            }
        }
    }
}

static void one_model(kern_backend *cu, const char *path, const char *label)
{
    eng_model *m = NULL;
    eng_err err = {0};
    if (eng_model_open(&m, path, &err)) {
        CT_CHECK(0, "open %s: %s", path, err.msg);
        return;
    }
    eng_resident *res = NULL;
    if (eng_resident_create(&res, m, cu, &err)) {
        CT_CHECK(0, "%s: resident weights: %s", label, err.msg);
        eng_model_close(m);
        return;
    }
    const size_t lbytes = sizeof(float) * STEPS * 2 * (size_t)m->cfg.vocab_size;
    trace eager, graph, host;
    memset(&eager, 0, sizeof eager);
    memset(&graph, 0, sizeof graph);
    memset(&host, 0, sizeof host);
    eager.logits = malloc(lbytes);
    graph.logits = malloc(lbytes);
    host.logits = malloc(lbytes);
    eager.back = malloc(sizeof(float) * 2 * (size_t)m->cfg.vocab_size);
    graph.back = malloc(sizeof(float) * 2 * (size_t)m->cfg.vocab_size);
    host.back = malloc(sizeof(float) * 2 * (size_t)m->cfg.vocab_size);
    ct_poison(eager.logits, lbytes / sizeof(float));
    ct_poison(graph.logits, lbytes / sizeof(float));
    ct_poison(host.logits, lbytes / sizeof(float));

    kern_cuda_graph_stats gs, g0, g1, g2;
    CT_CHECK(set_graphs(cu, 0) == KERN_OK, "graphs off");
    graph_stats(cu, &gs);
    if (run(m, cu, res, NULL, &eager, label)) goto done;
    graph_stats(cu, &g0);
    CT_CHECK(g0.launched == gs.launched && g0.fallbacks == gs.fallbacks,
             "%s: graphs off, yet %llu launched", label,
             (unsigned long long)(g0.launched - gs.launched));

    CT_CHECK(set_graphs(cu, 1) == KERN_OK, "graphs on");
    if (run(m, cu, res, NULL, &graph, label)) goto done;
    graph_stats(cu, &g1);
    compare(m, &eager, &graph, label);
    uint64_t launched = g1.launched - g0.launched, updated = g1.updated - g0.updated,
             inst = g1.instantiated - g0.instantiated, fb = g1.fallbacks - g0.fallbacks;
    printf("%s: %d steps: %llu launched as graphs (%llu updated, %llu instantiated), %llu "
           "issued op by op after a dropped recording\n", label, STEPS + 1,
           (unsigned long long)launched, (unsigned long long)updated,
           (unsigned long long)inst, (unsigned long long)fb);
    /* every step recorded (the op-by-op run grew the scratch already), at most the first of
     * each phase dropped should one need more */
    CT_CHECK(launched + fb == STEPS + 1 && launched >= STEPS - 3,
             "%s: %llu of %d steps launched as graphs, %llu dropped", label,
             (unsigned long long)launched, STEPS + 1, (unsigned long long)fb);
    CT_CHECK(inst >= 3 && updated >= GREEDY - 2,
             "%s: %llu instantiations (3 phases at least), %llu updates", label,
             (unsigned long long)inst, (unsigned long long)updated);

    {   /* layer 1 not resident: its matmuls stage weights, which is never recorded */
        eng_layer_weights lw = *eng_resident_layer(res, 1);
        for (int i = 0; i < ENG_LIN_COUNT; i++) lw.lin[i].dev = NULL;
        if (run(m, cu, res, &lw, &host, label)) goto done;
        graph_stats(cu, &g2);
        compare(m, &eager, &host, label);
        CT_CHECK(g2.launched == g1.launched && g2.fallbacks - g1.fallbacks == STEPS + 1,
                 "%s: host weights: %llu launched, %llu dropped (every step expected)", label,
                 (unsigned long long)(g2.launched - g1.launched),
                 (unsigned long long)(g2.fallbacks - g1.fallbacks));
    }
done:
    (void)set_graphs(cu, 0);
    free(eager.logits);
    free(graph.logits);
    free(host.logits);
    free(eager.back);
    free(graph.back);
    free(host.back);
    eng_resident_destroy(res);
    eng_model_close(m);
}

int main(void)
{
    kern_backend cu;
    ct_open_cuda_or_skip(&cu);
    if (ct_standin) {
        printf("skip: graphs are a CUDA matter (CLAQ_CUDA_TEST_STANDIN)\n");
        kern_backend_destroy(&cu);
        return 77;
    }
    const char *sh = ct_shared_or_skip(&cu);
    const char *models[][2] = {{"models/stories260K.bin", "stories260K"},
                               {"models/tinystories-656k", "tinystories-656k"}};
    for (int i = 0; i < 2; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", sh, models[i][0]);
        one_model(&cu, path, models[i][1]);
    }
    kern_backend_destroy(&cu);
    if (ct_failures) {
        fprintf(stderr, "%d failure(s)\n", ct_failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
