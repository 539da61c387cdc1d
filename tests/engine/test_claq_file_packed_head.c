/* test_claq_file_packed_head.c — a packed output head (issue 13, item 3) written and read back:
 * tinystories-656k (tied head, F32) with every linear and the head quantized here by a simple
 * per-column uniform 4-/3-bit codebook (the file format is what is tested, not the quantizer)
 * is written with eng_claq_meta.head, loaded, and checked: the loaded head is a KERN_CLAQ
 * matrix while the token embedding stays dense and the file no longer says tied; the head's
 * matmul through the packed kernels equals the dense matmul of eng_qmatrix_dequant(head)
 * within fp32 summation order (1e-5 relative) on real hidden-size vectors; greedy decoding
 * through the loaded model gives finite logits; the same file written without a head keeps the
 * dense tied head. With the head packed, the token embedding may be stored as q8_row
 * (eng_claq_meta.embed_bits): every weight read back is within half a step (its row's scale / 2)
 * of the source and the scale is max |row| / 127, kern_embed gathers exactly those values,
 * logits move by a small fraction of the dense-embedding file's, the file shrinks by 3/4 of
 * the embedding's bytes; a NaN scale is refused at load naming the tensor. A tied model may keep
 * one matrix for both roles: q8_row without a packed head (its matmul is scale x the int8 sum,
 * checked against the dense product of its dequantized weights), or the packed head shared as
 * the embedding (eng_claq_meta.embed_shared: kern_embed gathers exactly the rows of
 * eng_qmatrix_dequant(head), and the file is smaller than the one with a dense embedding).
 * Needs CLAQ_SHARED (77 without it). */
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

/* Largest |a - b| over count values; *maxv gets the largest |b|. */
static double max_diff(const float *a, const float *b, int64_t count, double *maxv)
{
    double d = 0;
    *maxv = 0;
    for (int64_t i = 0; i < count; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        *maxv = fmax(*maxv, fabs((double)b[i]));
    }
    return d;
}

static long file_size(const char *p)
{
    FILE *f = fopen(p, "rb");
    long n = -1;
    if (f && fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (f) fclose(f);
    return n;
}

/* The q8_row embedding of out3 against the source m (see the top comment); out is the same file
 * written with a dense embedding, logits_dense its logits after prompt[0..4). */
static void check_q8(const eng_model *m, const char *out, const char *out3,
                     kern_backend *be, const int32_t *prompt, const float *logits_dense)
{
    eng_err err = {0};
    eng_model *qm = NULL;
    CHECK(eng_model_open(&qm, out3, &err) == 0, "open q8: %s", err.msg);
    if (!qm) return;
    const kern_matrix *e = &qm->w.tok_embed;
    int V = m->cfg.vocab_size, D = m->cfg.dim;
    CHECK(e->dtype == KERN_Q8_ROW && e->rows == V && e->cols == D && !qm->cfg.tie_embeddings,
          "loaded embedding is %s", kern_dtype_name(e->dtype));
    const float *src = m->w.tok_embed.data;
    const int8_t *q = e->data;
    int bad = 0;
    for (int64_t r = 0; r < V && e->dtype == KERN_Q8_ROW; r++) {
        float sc, amax = 0;
        memcpy(&sc, (const char *)e->data + (size_t)V * D + r * 4, 4);
        for (int64_t c = 0; c < D; c++) amax = fmaxf(amax, fabsf(src[r * D + c]));
        if (fabsf(sc - amax / 127.0f) > 1e-6f * amax && bad++ < 3)
            fprintf(stderr, "row %lld: scale %g, max/127 %g\n", (long long)r, sc, amax / 127.0f);
        for (int64_t c = 0; c < D; c++)
            if (fabsf((float)q[r * D + c] * sc - src[r * D + c]) > 0.5f * sc * 1.0001f + 1e-12f &&
                bad++ < 3)
                fprintf(stderr, "row %lld col %lld off by more than half a step\n", (long long)r,
                        (long long)c);
    }
    CHECK(bad == 0, "q8 embedding: %d rows/values off", bad);
    int32_t ids[3] = {0, 7, V - 1};
    float *g = malloc(sizeof(float) * 3 * (size_t)D);
    CHECK(g && kern_embed(be, e, ids, 3, g) == 0, "kern_embed of q8_row");
    int same = 1;
    for (int t = 0; g && t < 3; t++) {
        float sc;
        memcpy(&sc, (const char *)e->data + (size_t)V * D + (size_t)ids[t] * 4, 4);
        for (int c = 0; c < D; c++) same &= g[t * D + c] == (float)q[(int64_t)ids[t] * D + c] * sc;
    }
    CHECK(same, "kern_embed differs from code x scale");
    free(g);

    eng_ctx *ctx = NULL;
    eng_kv kv = {0};
    eng_seq sq = {0};
    float *l = malloc(sizeof(float) * (size_t)V);
    eng_batch_item a[4];
    for (int i = 0; i < 4; i++) a[i] = (eng_batch_item){prompt[i], i, &sq, i == 3, 0};
    CHECK(l && eng_ctx_create(&ctx, qm, be, 8, &err) == 0 && eng_kv_init(&kv, &qm->cfg, 16, &err) == 0 &&
          eng_kv_reserve(&kv, &sq, 16) == 0 && eng_forward(ctx, &kv, a, 4, l, &err) == 0,
          "q8 forward: %s", err.msg);
    double d = 0, mx = 0;
    for (int i = 0; l && i < V; i++) {
        d = fmax(d, fabs((double)l[i] - logits_dense[i]));
        mx = fmax(mx, fabs((double)logits_dense[i]));
    }
    CHECK(d <= 0.05 * mx, "q8 embedding moved the logits by %.3g (max |logit| %.3g)", d, mx);
    long s_dense = file_size(out), s_q8 = file_size(out3);
    long saved = (long)V * D * 4 - ((long)V * D + 4L * V);
    printf("q8_row embedding [%d x %d]: logits move by %.3g of %.3g; file %ld -> %ld bytes\n", V,
           D, d, mx, s_dense, s_q8);
    CHECK(s_dense - s_q8 >= saved - 128 && s_dense - s_q8 <= saved + 128,
          "file shrank by %ld bytes, expected %ld", s_dense - s_q8, saved);
    eng_kv_release(&kv, &sq);
    eng_kv_free(&kv);
    eng_ctx_destroy(ctx);
    free(l);
    eng_model_close(qm);

    /* a NaN scale is refused at load */
    FILE *f = fopen(out3, "r+b");
    unsigned char hdr[40];
    uint64_t data_off = 0;
    if (f && fread(hdr, 1, 40, f) == 40)
        for (int i = 7; i >= 0; i--) data_off = data_off << 8 | hdr[32 + i];
    float nan = NAN;
    int wrote = f && data_off && fseek(f, (long)(data_off + (uint64_t)V * D + 4 * 5), SEEK_SET) == 0 &&
                fwrite(&nan, 4, 1, f) == 1;
    if (f) fclose(f);
    CHECK(wrote, "could not corrupt %s", out3);
    qm = NULL;
    int rc = eng_model_open(&qm, out3, &err);
    CHECK(rc == ENG_E_RANGE && !qm && strstr(err.msg, "tok_embeddings") && strstr(err.msg, "row 5"),
          "NaN scale: rc %d (%s)", rc, err.msg);
    eng_model_close(qm);
}

/* The tied forms: one q8_row matrix, or the packed head shared as the embedding. */
static void check_tied_forms(eng_model *m, eng_qmatrix **qp, const eng_qmatrix *head,
                             const char *out_head, const char *tmp, kern_backend *be)
{
    char q8t[1100], shared[1100];
    snprintf(q8t, sizeof q8t, "%s/claq-q8tied-%d.claq", tmp, (int)getpid());
    snprintf(shared, sizeof shared, "%s/claq-shared-%d.claq", tmp, (int)getpid());
    eng_err err = {0};
    const int V = m->cfg.vocab_size, D = m->cfg.dim, n = 3;
    eng_claq_meta meta = {.bits = 4, .embed_bits = 8};
    snprintf(meta.method, sizeof meta.method, "rtn");
    CHECK(eng_claq_write(q8t, m, qp, &meta, &err) == 0, "write tied q8: %s", err.msg);
    meta.embed_bits = 0;
    meta.head = head;
    meta.embed_shared = 1;
    CHECK(eng_claq_write(shared, m, qp, &meta, &err) == 0, "write shared head: %s", err.msg);
    meta.embed_bits = 8;
    CHECK(eng_claq_write(shared, m, qp, &meta, &err) == ENG_E_INVAL,
          "shared head with a q8 embedding accepted");
    eng_model *a = NULL, *b = NULL;
    CHECK(eng_model_open(&a, q8t, &err) == 0, "open tied q8: %s", err.msg);
    CHECK(eng_model_open(&b, shared, &err) == 0, "open shared: %s", err.msg);
    float *x = malloc(sizeof(float) * (size_t)n * D), *ya = malloc(sizeof(float) * (size_t)n * V);
    float *yb = malloc(sizeof(float) * (size_t)n * V), *wd = malloc(sizeof(float) * (size_t)V * D);
    if (a && b && x && ya && yb && wd) {
        CHECK(a->cfg.tie_embeddings && a->w.tok_embed.dtype == KERN_Q8_ROW &&
              a->w.output.data == a->w.tok_embed.data && a->w.output.dtype == KERN_Q8_ROW,
              "tied q8: one matrix for both roles");
        /* its dequantized weights, by the format's definition */
        const int8_t *q = a->w.tok_embed.data;
        for (int r = 0; r < V; r++) {
            float sc;
            memcpy(&sc, (const char *)a->w.tok_embed.data + (size_t)V * D + 4 * (size_t)r, 4);
            for (int c = 0; c < D; c++) wd[(size_t)r * D + c] = (float)q[(size_t)r * D + c] * sc;
        }
        const float *emb = m->w.tok_embed.data;
        for (int t = 0; t < n; t++)
            memcpy(x + t * D, emb + (size_t)(50 + 91 * t) * D, sizeof(float) * D);
        kern_matrix dense = {.dtype = KERN_F32, .rows = V, .cols = D, .data = wd};
        CHECK(kern_matmul(be, &a->w.output, x, n, ya) == 0 && kern_matmul(be, &dense, x, n, yb) == 0,
              "q8 head matmul");
        double maxv, maxd = max_diff(ya, yb, (int64_t)n * V, &maxv);
        CHECK(maxd <= 1e-5 * maxv, "q8 head differs from its dequantized weights: %.3g of %.3g",
              maxd, maxv);
        printf("tied q8_row head [%d x %d]: max |q8 - dense| %.3g (max |y| %.3g)\n", V, D, maxd,
               maxv);

        CHECK(b->cfg.tie_embeddings && b->w.tok_embed.dtype == KERN_CLAQ &&
              b->w.output.claq == b->w.tok_embed.claq, "shared: the packed head is the embedding");
        eng_qmatrix_dequant(head, wd);
        int32_t ids[4] = {0, 7, V / 2, V - 1};
        float *rows = malloc(sizeof(float) * 4 * (size_t)D);
        CHECK(rows && kern_embed(be, &b->w.tok_embed, ids, 4, rows) == 0, "gather from the head");
        int same = rows != NULL;
        for (int i = 0; same && i < 4; i++)
            same = !memcmp(rows + (size_t)i * D, wd + (size_t)ids[i] * D, sizeof(float) * D);
        CHECK(same, "gathered rows differ from the head's dequantized rows");
        free(rows);
        CHECK(file_size(shared) < file_size(out_head), "shared file %ld bytes, head + dense "
              "embedding %ld", file_size(shared), file_size(out_head));
        printf("shared packed head: %ld bytes, with a dense embedding %ld\n", file_size(shared),
               file_size(out_head));
    }
    free(x);
    free(ya);
    free(yb);
    free(wd);
    eng_model_close(a);
    eng_model_close(b);
    unlink(q8t);
    unlink(shared);
}

int main(void)
{
    const char *sh = getenv("CLAQ_SHARED");
    if (!sh) {
        printf("SKIP: CLAQ_SHARED not set\n");
        return 77;
    }
    char mpath[1024], out[1024], out2[1024], out3[1024];
    snprintf(mpath, sizeof mpath, "%s/models/tinystories-656k", sh);
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(out, sizeof out, "%s/claq-head-%d.claq", tmp, (int)getpid());
    snprintf(out2, sizeof out2, "%s/claq-nohead-%d.claq", tmp, (int)getpid());
    snprintf(out3, sizeof out3, "%s/claq-q8emb-%d.claq", tmp, (int)getpid());
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
    meta.embed_bits = 8;
    CHECK(eng_claq_write(out3, m, qp, &meta, &err) == 0, "write with head + q8 embedding: %s",
          err.msg);
    meta.head = NULL;
    meta.embed_bits = 0;
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
    double maxv, maxd = max_diff(ya, yb, (int64_t)n * V, &maxv);
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
        a[i] = (eng_batch_item){prompt[i], i, &s1, i == 3, 0};
        b[i] = (eng_batch_item){prompt[i], i, &s2, i == 3, 0};
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

    check_q8(m, out, out3, &be, prompt, l1);
    check_tied_forms(m, qp, head, out, tmp, &be);

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
    unlink(out3);
    for (int i = 0; i <= nm; i++) eng_qmatrix_free(&qs[i]);
    free(qs);
    free(qp);
    eng_model_close(pm);
    eng_model_close(pm2);
    eng_model_close(m);
    return g_fail ? 1 : 0;
}
