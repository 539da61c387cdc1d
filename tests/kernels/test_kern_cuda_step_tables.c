/* test_kern_cuda_step_tables.c — the block tables a forward pass keeps on the backend between
 * steps (eng_forward.c, block_tables, through eng_rowstore.c): a step sends only the table
 * entries that changed.
 *
 * One long-lived ctx (max batch 32) serves six sequences of stories260K, with prompts of 4-64
 * random tokens, through four phases:
 *   steady    four sequences, every block reserved up front, decode together: after the first
 *             step the tables send 0 bytes (the old code sent every row whole each step);
 *   rotation  four of the six per step, in turn, so the ctx's four table rows are taken over
 *             least recently used and sent again; a longer prompt makes the rows grow;
 *   reuse     two sequences released and started again in the same eng_seq structs with new
 *             tokens and new block ids (popped from the free list in another order), their blocks
 *             reserved one position at a time: the tables send exactly 4 bytes per block added;
 *   growth    all six in one batch, more sequences than the table has rows: reallocated;
 *   restart   then one of them released and started again in its struct at once (its row,
 *             used in the step just done, still holds the old sequence's ids).
 * Every logit row of every phase must equal, bit for bit, the row of a fresh ctx and pool fed
 * that sequence's tokens alone, in chunks of 32 (batch invariance makes that exact): a stale or misplaced table
 * entry reads another block's keys and cannot pass. Runs on the CPU backend (host memory, no
 * byte counts), then on CUDA with the byte checks; skips (77) the CUDA half without a device
 * (the emulated build, test_kern_cuda_emu_step_tables, always has one). */
#include "cuda_test_common.h"
#include "eng_forward.h"
#include "eng_kv.h"
#include "eng_model.h"
#include "eng_resident.h"

#define NS 6       /* sequences */
#define MB 32      /* the ctx's max batch: prompt chunks */
#define NDEC 6     /* decode steps per sequence and phase */
#define NTOK 96    /* tokens per stream, at most */

typedef struct stream {
    int32_t toks[NTOK];
    int np;        /* prompt length */
    int len;       /* tokens to feed in all */
    int fed;       /* tokens fed so far (the next position) */
    float *ref;    /* [len - np][vocab] logits after each token past the prompt, from a fresh ctx */
    eng_seq seq;
} stream;

static void stream_init(stream *s, int vocab, int np, int len)
{
    for (int i = 0; i < len; i++) s->toks[i] = (int32_t)(ct_rnd() % (uint32_t)vocab);
    s->np = np;
    s->len = len;
    s->fed = 0;
}

/* The reference: the stream alone in a fresh ctx and pool on be. */
static int reference(const eng_model *m, kern_backend *be, const eng_resident *res, stream *s)
{
    const int vocab = m->cfg.vocab_size;
    eng_err err = {0};
    eng_ctx *ctx = NULL;
    eng_kv kv;
    eng_seq seq;
    memset(&kv, 0, sizeof kv);
    memset(&seq, 0, sizeof seq);
    int rc = 1;
    free(s->ref);
    s->ref = malloc(sizeof(float) * (size_t)(s->len - s->np) * (size_t)vocab);
    if (!s->ref || eng_ctx_create(&ctx, m, be, MB, &err) ||
        (res && eng_ctx_use_resident(ctx, res)) ||
        eng_kv_init_on(&kv, &m->cfg, s->len + 16, KERN_F32, res ? be : NULL, &err) ||
        eng_kv_reserve(&kv, &seq, s->len)) {
        CT_CHECK(0, "reference setup: %s", err.msg);
        goto done;
    }
    /* chunks of MB tokens, logits of every token past the prompt: by batch invariance the
     * same bits as one token per step */
    for (int p = 0; p < s->len;) {
        int n = s->len - p < MB ? s->len - p : MB, want = 0;
        eng_batch_item it[MB];
        for (int i = 0; i < n; i++) {
            it[i] = (eng_batch_item){s->toks[p + i], p + i, &seq, p + i >= s->np, 0};
            want += p + i >= s->np;
        }
        float *lg = want ? s->ref + (size_t)(p + n - want - s->np) * vocab : NULL;
        if (eng_forward(ctx, &kv, it, n, lg, &err)) {
            CT_CHECK(0, "reference at %d: %s", p, err.msg);
            goto done;
        }
        p += n;
    }
    rc = 0;
done:
    eng_kv_release(&kv, &seq);
    eng_kv_free(&kv);
    eng_ctx_destroy(ctx);
    return rc;
}

typedef struct rig {
    const eng_model *m;
    kern_backend *be;
    const eng_resident *res;
    eng_ctx *ctx;
    eng_kv kv;
    int vocab;
    int incremental;      /* reserve one position at a time (else the whole stream up front) */
    uint64_t table_bytes; /* h2d bytes beyond ids, positions, slots, rows: the tables */
    int blocks_added;     /* blocks reserved during the counted steps */
    int rows_checked;
} rig;

/* One forward of the next token of each stream in ss[0..k) (or the next prompt chunk of one
 * stream, k == 1), logits compared with the reference past the prompt. */
static int step(rig *r, stream **ss, int k, const char *phase)
{
    eng_batch_item it[MB];
    int n = 0, want = 0, added = 0;
    eng_err err = {0};
    for (int j = 0; j < k; j++) {
        stream *s = ss[j];
        int c = s->fed < s->np ? (k == 1 ? (s->np - s->fed < MB ? s->np - s->fed : MB) : 1) : 1;
        int before = s->seq.n_blocks;
        if (eng_kv_reserve(&r->kv, &s->seq, r->incremental ? s->fed + c : s->len)) {
            CT_CHECK(0, "%s: pool full", phase);
            return 1;
        }
        added += s->seq.n_blocks - before;
        for (int i = 0; i < c; i++, n++) {
            int p = s->fed + i, w = p >= s->np;
            it[n] = (eng_batch_item){s->toks[p], p, &s->seq, w, 0};
            want += w;
        }
    }
    float *lg = malloc(sizeof(float) * (size_t)(want ? want : 1) * (size_t)r->vocab);
    ct_poison(lg, (size_t)(want ? want : 1) * (size_t)r->vocab);
    kern_xfer_stats x0, x1;
    kern_get_xfer_stats(r->be, &x0);
    int rc = eng_forward(r->ctx, &r->kv, it, n, want ? lg : NULL, &err);
    kern_get_xfer_stats(r->be, &x1);
    CT_CHECK(rc == 0, "%s: forward: %s", phase, err.msg);
    uint64_t fixed = 4ull * (4ull * (uint64_t)n + (uint64_t)want);   /* ids, pos, slot, btrow, rows */
    r->table_bytes += x1.h2d_bytes - x0.h2d_bytes - (x1.h2d_bytes > x0.h2d_bytes ? fixed : 0);
    r->blocks_added += added;
    int row = 0;
    for (int i = 0; !rc && i < n; i++) {
        if (!it[i].want_logits) continue;
        stream *s = NULL;
        for (int j = 0; j < k; j++)
            if (&ss[j]->seq == it[i].seq) s = ss[j];
        size_t where = 0;
        const float *want_row = s->ref + (size_t)(it[i].pos - s->np) * r->vocab;
        CT_CHECK(ct_same_bits(lg + (size_t)row * r->vocab, want_row, (size_t)r->vocab, &where),
                 "%s: position %d: logit %zu is %.9g, alone %.9g", phase, it[i].pos, where,
                 lg[(size_t)row * r->vocab + where], want_row[where]);
        row++;
        r->rows_checked++;
    }
    for (int j = 0; j < k; j++)
        ss[j]->fed += ss[j]->fed < ss[j]->np && k == 1
                          ? (ss[j]->np - ss[j]->fed < MB ? ss[j]->np - ss[j]->fed : MB)
                          : 1;
    free(lg);
    return rc;
}

static void prefill(rig *r, stream *s, const char *phase)
{
    while (s->fed < s->np && !ct_failures) step(r, &s, 1, phase);
}

static void scenario(const eng_model *m, kern_backend *be, const eng_resident *res, int counts,
                     const char *label)
{
    static stream st[NS];
    rig r = {.m = m, .be = be, .res = res, .vocab = m->cfg.vocab_size};
    eng_err err = {0};
    char phase[96];
    for (int i = 0; i < NS; i++) {
        memset(&st[i].seq, 0, sizeof st[i].seq);
        st[i].ref = NULL;
    }
    if (eng_ctx_create(&r.ctx, m, be, MB, &err) || (res && eng_ctx_use_resident(r.ctx, res)) ||
        eng_kv_init_on(&r.kv, &m->cfg, NS * 128, KERN_F32, res ? be : NULL, &err)) {
        CT_CHECK(0, "%s: setup: %s", label, err.msg);
        goto done;
    }
    /* prompts of 4-64 tokens, then NDEC tokens for each decode phase */
    for (int i = 0; i < NS; i++) {
        stream_init(&st[i], r.vocab, 4 + 12 * i, 4 + 12 * i + 3 * NDEC);
        if (reference(m, be, res, &st[i])) goto done;
    }

    /* steady: blocks reserved up front and sent with the prompts; decode sends no table */
    snprintf(phase, sizeof phase, "%s steady", label);
    for (int i = 0; i < 4; i++) prefill(&r, &st[i], phase);
    for (int t = 0; t < NDEC && !ct_failures; t++) {
        if (t == 1) r.table_bytes = 0;   /* the first step may resend rows a growth dropped */
        stream *b[4] = {&st[0], &st[1], &st[2], &st[3]};
        step(&r, b, 4, phase);
    }
    if (counts)
        CT_CHECK(r.table_bytes == 0, "%s: %d decode steps of 4 sequences sent %llu table bytes "
                 "(nothing changed)", phase, NDEC - 1, (unsigned long long)r.table_bytes);
    printf("%s: %d steps x 4 sequences at positions %d-%d: %llu table bytes\n", phase,
           NDEC - 1, st[0].np, st[3].np + NDEC, (unsigned long long)r.table_bytes);

    /* rotation: six sequences through four rows (the fifth prompt outgrows a row: reallocated) */
    snprintf(phase, sizeof phase, "%s rotation", label);
    for (int i = 4; i < NS; i++) prefill(&r, &st[i], phase);
    for (int t = 0; !ct_failures; t++) {
        stream *b[4];
        int k = 0;
        for (int j = 0; j < NS && k < 4; j++) {
            stream *s = &st[(t + j) % NS];
            if (s->fed < s->np + 2 * NDEC) b[k++] = s;
        }
        if (!k) break;
        step(&r, b, k, phase);
    }

    /* reuse: two sequences end; new ones start in the same structs, blocks taken as they go */
    snprintf(phase, sizeof phase, "%s reuse", label);
    eng_kv_release(&r.kv, &st[1].seq);
    eng_kv_release(&r.kv, &st[4].seq);
    stream_init(&st[4], r.vocab, 30, 30 + 2 * NDEC);   /* a block added at 32 */
    stream_init(&st[1], r.vocab, 46, 46 + 2 * NDEC);   /* and at 48 */
    if (reference(m, be, res, &st[1]) || reference(m, be, res, &st[4])) goto done;
    r.incremental = 1;
    prefill(&r, &st[4], phase);
    prefill(&r, &st[1], phase);
    r.table_bytes = 0;
    r.blocks_added = 0;
    for (int t = 0; t < NDEC && !ct_failures; t++) {
        stream *b[2] = {&st[1], &st[4]};
        step(&r, b, 2, phase);
    }
    if (counts)
        CT_CHECK(r.table_bytes == 4ull * (uint64_t)r.blocks_added && r.blocks_added == 2,
                 "%s: %llu table bytes for %d blocks added (2 blocks of 4 bytes expected)",
                 phase, (unsigned long long)r.table_bytes, r.blocks_added);
    printf("%s: %d steps x 2 sequences: %d blocks added, %llu table bytes\n", phase, NDEC,
           r.blocks_added, (unsigned long long)r.table_bytes);

    /* growth: all six in one batch, more sequences than the rows so far */
    snprintf(phase, sizeof phase, "%s growth", label);
    for (int t = 0; t < NDEC && !ct_failures; t++) {
        stream *b[NS];
        for (int i = 0; i < NS; i++) b[i] = &st[i];
        step(&r, b, NS, phase);
    }
    /* and at once: st[2]'s row served the step just done, its struct now a new sequence's */
    snprintf(phase, sizeof phase, "%s restart", label);
    eng_kv_release(&r.kv, &st[2].seq);
    eng_seq hold;   /* takes a block first, so the new sequence's ids differ from the old ones */
    memset(&hold, 0, sizeof hold);
    CT_CHECK(eng_kv_reserve(&r.kv, &hold, 1) == 0, "%s: pool", phase);
    stream_init(&st[2], r.vocab, 20, 20 + NDEC);
    if (reference(m, be, res, &st[2])) goto done;
    r.incremental = 1;
    prefill(&r, &st[2], phase);
    for (int t = 0; t < NDEC && !ct_failures; t++) {
        stream *b[1] = {&st[2]};
        step(&r, b, 1, phase);
    }
    eng_kv_release(&r.kv, &hold);
    printf("%s: %d logit rows compared, all bit-identical to each sequence alone\n", label,
           r.rows_checked);
done:
    for (int i = 0; i < NS; i++) {
        eng_kv_release(&r.kv, &st[i].seq);
        free(st[i].ref);
        st[i].ref = NULL;
    }
    eng_kv_free(&r.kv);
    eng_ctx_destroy(r.ctx);
}

int main(void)
{
    const char *sh = ct_shared_or_skip(NULL);
    char path[1024];
    snprintf(path, sizeof path, "%s/models/stories260K.bin", sh);
    eng_model *m = NULL;
    eng_err err = {0};
    if (eng_model_open(&m, path, &err)) {
        fprintf(stderr, "FAIL: open %s: %s\n", path, err.msg);
        return 1;
    }
    kern_backend cpu;
    if (kern_cpu_backend_create(&cpu, 2)) {
        fprintf(stderr, "FAIL: kern_cpu_backend_create\n");
        return 1;
    }
    scenario(m, &cpu, NULL, 0, "cpu");
    kern_backend_destroy(&cpu);
    if (ct_failures) {
        eng_model_close(m);
        fprintf(stderr, "%d failure(s)\n", ct_failures);
        return 1;
    }
    kern_backend cu;
    ct_open_cuda_or_skip(&cu);
    eng_resident *res = NULL;
    if (eng_resident_create(&res, m, &cu, &err)) {
        CT_CHECK(0, "resident weights: %s", err.msg);
    } else {
        scenario(m, &cu, res, !ct_standin, "cuda");
        eng_resident_destroy(res);
    }
    kern_backend_destroy(&cu);
    eng_model_close(m);
    if (ct_failures) {
        fprintf(stderr, "%d failure(s)\n", ct_failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
