/* test_claq_file_packed_head.c — a packed output head (issue 13, item 3) written and read back:
 * tinystories-656k (tied head, F32) with every linear and the head quantized here by a simple
 * per-column uniform 4-/3-bit codebook (the file format is what is tested, not the quantizer)
 * is written with eng_claq_meta.head, loaded, and checked: the loaded head is a KERN_CLAQ
 * matrix while the token embedding stays dense and the file no longer says tied; the head's
 * matmul through the packed kernels equals the dense matmul of eng_qmatrix_dequant(head)
 * within fp32 summation order (1e-5 relative) on real hidden-size vectors; greedy decoding
 * through the loaded model gives finite logits; the same file written without a head keeps the
 * dense tied head. Needs CLAQ_SHARED (77 without it). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eng_claq_file.h"
#include "eng_forward.h"
#include "eng_kv.h"
#include "kern_half.h"

#include "test_check.h"

/* Per-column uniform codebook over [min, max] of column j at bits b; codes = nearest level. */
static int quantize_uniform(const kern_matrix *w, int bits, eng_qmatrix *q)
{
    if (w->dtype != KERN_F32 || eng_qmatrix_alloc(q, w->rows, w->cols, NULL)) return -1;
    const float *d = w->data;
    int levels = 1 << bits;
    for (int64_t j = 0; j < w->cols; j++) {
        float lo = d[j], hi = d[j];
        for (int64_t r = 1; r < w->rows; r++) {
            float v = d[r * w->cols + j];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        q->bits[j] = (uint8_t)bits;
        float cb[ENG_QM_CB];
        for (int k = 0; k < ENG_QM_CB; k++) {
            int kk = k < levels ? k : levels - 1;
            cb[k] = kern_f16_to_f32(kern_f32_to_f16(lo + (hi - lo) * (float)kk / (float)(levels - 1)));
            q->codebook[j * ENG_QM_CB + k] = kern_f32_to_f16(cb[k]);
        }
        for (int64_t r = 0; r < w->rows; r++) {
            float v = d[r * w->cols + j];
            int best = 0;
            for (int k = 1; k < levels; k++)
                if (fabsf(v - cb[k]) < fabsf(v - cb[best])) best = k;
            q->codes[r * w->cols + j] = (uint8_t)best;
        }
    }
    return 0;
}

int main(void)
{
    const char *sh = getenv("CLAQ_SHARED");
    if (!sh) {
        printf("SKIP: CLAQ_SHARED not set\n");
        return 77;
    }
    char mpath[1024], out[1024], out2[1024];
    snprintf(mpath, sizeof mpath, "%s/models/tinystories-656k", sh);
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(out, sizeof out, "%s/claq-head-%d.claq", tmp, (int)getpid());
    snprintf(out2, sizeof out2, "%s/claq-nohead-%d.claq", tmp, (int)getpid());
    eng_err err = {0};
    eng_model *m = NULL, *pm = NULL, *pm2 = NULL;
    CHECK(eng_model_open(&m, mpath, &err) == 0, "open %s: %s", mpath, err.msg);
    if (!m) return 1;
    CHECK(m->cfg.tie_embeddings, "tinystories-656k is expected to tie its head");
    int nm = m->cfg.n_layers * ENG_LIN_COUNT;
    eng_qmatrix *qs = calloc((size_t)nm + 1, sizeof *qs);
    eng_qmatrix **qp = calloc((size_t)nm, sizeof *qp);
    if (!qs || !qp) return 1;
    for (int i = 0; i < nm; i++) {
        qp[i] = &qs[i];
        CHECK(quantize_uniform(&m->w.layers[i / ENG_LIN_COUNT].lin[i % ENG_LIN_COUNT], 4,
                               &qs[i]) == 0, "quantize linear %d", i);
    }
    eng_qmatrix *head = &qs[nm];
    CHECK(quantize_uniform(&m->w.output, 3, head) == 0, "quantize the head");
    eng_claq_meta meta = {.bits = 4, .head = head};
    snprintf(meta.method, sizeof meta.method, "rtn");
    CHECK(eng_claq_write(out, m, qp, &meta, &err) == 0, "write with head: %s", err.msg);
    meta.head = NULL;
    CHECK(eng_claq_write(out2, m, qp, &meta, &err) == 0, "write without head: %s", err.msg);
    CHECK(eng_model_open(&pm, out, &err) == 0, "open packed: %s", err.msg);
    CHECK(eng_model_open(&pm2, out2, &err) == 0, "open packed (dense head): %s", err.msg);
    if (!pm || !pm2) return 1;

    const kern_matrix *ho = &pm->w.output;
    CHECK(ho->dtype == KERN_CLAQ && ho->rows == m->cfg.vocab_size && ho->cols == m->cfg.dim,
          "loaded head is not a packed %d x %d matrix", m->cfg.vocab_size, m->cfg.dim);
    CHECK(pm->w.tok_embed.dtype != KERN_CLAQ, "the token embedding must stay dense");
    CHECK(!pm->cfg.tie_embeddings, "a file with a packed head says tied");
    CHECK(pm2->cfg.tie_embeddings && pm2->w.output.dtype != KERN_CLAQ,
          "without a head the file keeps the dense tied head");

    /* the packed head's matmul == dense matmul of its dequantized weights */
    int V = m->cfg.vocab_size, D = m->cfg.dim, n = 3;
    float *wd = malloc(sizeof(float) * (size_t)V * (size_t)D);
    float *x = malloc(sizeof(float) * (size_t)n * (size_t)D);
    float *ya = malloc(sizeof(float) * (size_t)n * (size_t)V);
    float *yb = malloc(sizeof(float) * (size_t)n * (size_t)V);
    kern_backend be;
    if (!wd || !x || !ya || !yb || kern_cpu_backend_create(&be, 2)) return 1;
    eng_qmatrix_dequant(head, wd);
    const float *emb = m->w.tok_embed.data;   /* real vectors of the hidden size */
    for (int t = 0; t < n; t++) memcpy(x + t * D, emb + (size_t)(100 + 37 * t) * D, sizeof(float) * D);
    kern_matrix dense = {.dtype = KERN_F32, .rows = V, .cols = D, .data = wd};
    CHECK(kern_matmul(&be, ho, x, n, ya) == 0, "packed head matmul");
    CHECK(kern_matmul(&be, &dense, x, n, yb) == 0, "dense head matmul");
    double maxd = 0, maxv = 0;
    for (int64_t i = 0; i < (int64_t)n * V; i++) {
        maxd = fmax(maxd, fabs((double)ya[i] - yb[i]));
        maxv = fmax(maxv, fabs((double)yb[i]));
    }
    CHECK(maxd <= 1e-5 * maxv, "packed head differs from its dequantized weights: %.3g of %.3g",
          maxd, maxv);
    printf("packed head [%d x %d]: max |packed - dense| %.3g (max |y| %.3g)\n", V, D, maxd, maxv);

    /* greedy through the loaded model: finite logits, and the head changes them a little */
    eng_ctx *ctx = NULL, *ctx2 = NULL;
    eng_kv kv = {0}, kv2 = {0};
    eng_seq s1 = {0}, s2 = {0};
    float *l1 = malloc(sizeof(float) * (size_t)V), *l2 = malloc(sizeof(float) * (size_t)V);
    CHECK(eng_ctx_create(&ctx, pm, &be, 8, &err) == 0 && eng_ctx_create(&ctx2, pm2, &be, 8, &err) == 0 &&
          eng_kv_init(&kv, &pm->cfg, 16, &err) == 0 && eng_kv_init(&kv2, &pm2->cfg, 16, &err) == 0 &&
          eng_kv_reserve(&kv, &s1, 16) == 0 && eng_kv_reserve(&kv2, &s2, 16) == 0,
          "ctx/kv: %s", err.msg);
    int32_t prompt[4] = {1, 400, 300, 200};
    eng_batch_item a[4], b[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (eng_batch_item){prompt[i], i, &s1, i == 3};
        b[i] = (eng_batch_item){prompt[i], i, &s2, i == 3};
    }
    CHECK(l1 && l2 && eng_forward(ctx, &kv, a, 4, l1, &err) == 0 &&
          eng_forward(ctx2, &kv2, b, 4, l2, &err) == 0, "forward: %s", err.msg);
    int finite = 1;
    double diff = 0;
    for (int i = 0; l1 && l2 && i < V; i++) {
        finite &= isfinite(l1[i]);
        diff = fmax(diff, fabs((double)l1[i] - l2[i]));
    }
    CHECK(finite && diff > 0, "logits with the packed head: finite %d, max change %.3g", finite, diff);
    printf("logits with the 3-bit head vs the dense head: max change %.3g\n", diff);

    eng_kv_release(&kv, &s1);
    eng_kv_release(&kv2, &s2);
    eng_kv_free(&kv);
    eng_kv_free(&kv2);
    eng_ctx_destroy(ctx);
    eng_ctx_destroy(ctx2);
    kern_backend_destroy(&be);
    free(l1);
    free(l2);
    free(wd);
    free(x);
    free(ya);
    free(yb);
    unlink(out);
    unlink(out2);
    for (int i = 0; i <= nm; i++) eng_qmatrix_free(&qs[i]);
    free(qs);
    free(qp);
    eng_model_close(pm);
    eng_model_close(pm2);
    eng_model_close(m);
    return g_fail ? 1 : 0;
}
