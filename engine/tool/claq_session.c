/* claq_session.c — opening/closing the model stack for the claq subcommands, and the chunked
 * prefill they share. */
#include "claq_session.h"

#include "eng_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int claq_session_open(claq_session *s, const char *cmd, const char *model_path,
                      const char *tokenizer_path, int want_tokenizer, const char *device,
                      int threads, int max_batch, int64_t kv_tokens)
{
    memset(s, 0, sizeof *s);
    eng_err err = {0};
    int rc = eng_model_open(&s->model, model_path, &err);
    if (rc) goto fail;
    if (want_tokenizer && (rc = eng_model_open_tokenizer(s->model, tokenizer_path, &s->tok, &err)))
        goto fail;
    if ((rc = eng_backend_open(&s->be, device, threads, &err))) goto fail;
    if ((rc = eng_resident_create(&s->res, s->model, &s->be, &err))) goto fail;
    if ((rc = eng_ctx_create(&s->ctx, s->model, &s->be, max_batch, &err))) goto fail;
    if ((rc = eng_ctx_use_resident(s->ctx, s->res))) goto fail;
    if (kv_tokens > 0 && (rc = eng_kv_init_on(&s->kv, &s->model->cfg, kv_tokens, KERN_F32, &s->be, &err))) goto fail;
    return 0;
fail:
    fprintf(stderr, "claq %s: %s\n", cmd, err.msg[0] ? err.msg : eng_strerror(rc));
    claq_session_close(s);
    return rc ? rc : -1;
}

void claq_session_close(claq_session *s)
{
    eng_kv_free(&s->kv);
    eng_ctx_destroy(s->ctx);
    eng_resident_destroy(s->res);
    kern_backend_destroy(&s->be);
    eng_tokenizer_close(s->tok);
    eng_model_close(s->model);
    memset(s, 0, sizeof *s);
}

int claq_session_prefill(claq_session *s, eng_seq *seq, const int32_t *tokens, int n, int start,
                         int all_logits, float *logits, eng_err *err)
{
    int mb = eng_ctx_max_batch(s->ctx), vocab = s->model->cfg.vocab_size;
    if (start + n > s->model->cfg.seq_len)
        return eng_err_set(err, ENG_E_RANGE, "%d tokens do not fit the model's context of %d",
                           start + n, s->model->cfg.seq_len);
    int rc = eng_kv_reserve(&s->kv, seq, start + n);
    if (rc) return eng_err_set(err, rc, "kv cache too small for %d positions", start + n);
    eng_batch_item *items = malloc((size_t)mb * sizeof *items);
    if (!items) return eng_err_set(err, ENG_E_NOMEM, "out of memory");
    for (int i0 = 0; i0 < n && rc == 0; i0 += mb) {
        int m = n - i0 < mb ? n - i0 : mb;
        for (int i = 0; i < m; i++) {
            items[i].token = tokens[i0 + i];
            items[i].pos = start + i0 + i;
            items[i].seq = seq;
            items[i].want_logits = logits && (all_logits || i0 + i == n - 1);
            items[i].prompt = 1;
        }
        float *out = !logits ? NULL : all_logits ? logits + (int64_t)i0 * vocab : logits;
        rc = eng_forward(s->ctx, &s->kv, items, m, out, err);
    }
    free(items);
    return rc;
}

int claq_parse_prefill_precision(const char *cmd, const char *s, int *bf16)
{
    *bf16 = 0;
    if (!s || strcmp(s, "fp32") == 0) return 0;
    if (strcmp(s, "bf16") == 0) {
        *bf16 = 1;
        return 0;
    }
    fprintf(stderr, "claq %s: --prefill-precision must be fp32 or bf16, not '%s'\n", cmd, s);
    return -1;
}

int claq_session_set_prefill_bf16(claq_session *s, const char *cmd, int bf16)
{
    if (!bf16) return 0;
    if (eng_ctx_set_prefill_bf16(s->ctx, 1)) {
        fprintf(stderr, "claq %s: --prefill-precision bf16: the %s backend has no bfloat16 "
                "path\n", cmd, s->be.ops && s->be.ops->name ? s->be.ops->name : "?");
        return -1;
    }
    if (!kern_cpu_bf16(&s->be))
        fprintf(stderr, "claq %s: note: no AVX512_BF16 on this CPU (or CLAQ_ISA caps the "
                "kernels); prompts run in fp32\n", cmd);
    return 0;
}

int claq_parse_ids(const char *s, int32_t *ids, int cap)
{
    int n = 0;
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > 0x7fffffff) {
            fprintf(stderr, "claq: bad token id list near '%.20s'\n", p);
            return -1;
        }
        if (n == cap) {
            fprintf(stderr, "claq: too many token ids (max %d)\n", cap);
            return -1;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    return n;
}
