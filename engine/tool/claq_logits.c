/* claq_logits.c — `claq logits`: runs a token sequence through the model in one prefill and writes
 * the logits of every position as raw little-endian float32 [n][vocab] to --out. Reference tests
 * (numpy) compare against it; --batch-check also runs the tokens one at a time and fails unless
 * both give bit-identical logits (prefill vs decode invariance). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "claq_session.h"
#include "claq_tool.h"

int claq_cmd_logits(int argc, char **argv)
{
    claq_arg spec[] = {
        {"--model", 1, NULL, "model path (required)"},
        {"--tokenizer", 1, NULL, "tokenizer (only needed with --text)"},
        {"--ids", 1, NULL, "token ids, e.g. \"1 415 22\""},
        {"--text", 1, NULL, "text to tokenize (BOS prepended) instead of --ids"},
        {"--out", 1, NULL, "output file for float32 [n][vocab] (required)"},
        {"--device", 1, NULL, "cpu (default), cuda, or auto (cuda when a GPU is present)"},
        {"--threads", 1, NULL, "worker threads"},
        {"--prefill-precision", 1, NULL, CLAQ_PREFILL_PRECISION_HELP},
        {"--batch-check", 0, NULL, "also decode one token at a time and require identical logits"},
        {"--help", 0, NULL, "this text"},
    };
    const int ns = (int)(sizeof spec / sizeof spec[0]);
    if (claq_args_parse("logits", spec, ns, argc, argv)) return 2;
    const char *ids_s = claq_arg_get(spec, ns, "--ids"), *text = claq_arg_get(spec, ns, "--text");
    const char *out = claq_arg_get(spec, ns, "--out");
    if (claq_arg_get(spec, ns, "--help") || !claq_arg_get(spec, ns, "--model") || !out ||
        (!ids_s == !text)) {
        claq_args_usage("logits", "--model PATH (--ids \"1 2 3\" | --text T) --out FILE", spec, ns);
        return claq_arg_get(spec, ns, "--help") ? 0 : 2;
    }
    long long threads = 0;
    const char *v;
    if ((v = claq_arg_get(spec, ns, "--threads")) && claq_parse_int("--threads", v, 0, 256, &threads)) return 2;
    int prefill_bf16 = 0;
    if (claq_parse_prefill_precision("logits", claq_arg_get(spec, ns, "--prefill-precision"),
                                     &prefill_bf16))
        return 2;
    claq_session s;
    if (claq_session_open(&s, "logits", claq_arg_get(spec, ns, "--model"),
                          claq_arg_get(spec, ns, "--tokenizer"), text != NULL, claq_arg_get(spec, ns, "--device"), (int)threads, 64, 0))
        return 1;
    if (claq_session_set_prefill_bf16(&s, "logits", prefill_bf16)) {
        claq_session_close(&s);
        return 2;
    }
    int ret = 1, vocab = s.model->cfg.vocab_size, ctxlen = s.model->cfg.seq_len;
    eng_err err = {0};
    int32_t *ids = malloc((size_t)ctxlen * sizeof *ids);
    float *lg = NULL, *lg2 = NULL;
    FILE *f = NULL;
    int n = 0;
    if (!ids) { eng_err_set(&err, ENG_E_NOMEM, "out of memory"); goto fail; }
    if (ids_s) {
        if ((n = claq_parse_ids(ids_s, ids, ctxlen)) < 0) goto out;
    } else {
        size_t nn = 0;
        int32_t *tmp = NULL;
        int rc = eng_tokenizer_encode_alloc(s.tok, text, strlen(text),
                                            eng_tokenizer_bos(s.tok) >= 0, 0, &tmp, &nn, &err);
        if (!rc && nn > (size_t)ctxlen) rc = eng_err_set(&err, ENG_E_RANGE, "text is %zu tokens, "
                                                         "the context %d", nn, ctxlen);
        if (!rc) memcpy(ids, tmp, nn * sizeof *ids);
        free(tmp);
        if (rc) goto fail;
        n = (int)nn;
    }
    if (n == 0) { fprintf(stderr, "claq logits: no tokens\n"); goto out; }
    if (eng_kv_init_on(&s.kv, &s.model->cfg, n, KERN_F32, &s.be, &err)) goto fail;
    lg = malloc((size_t)n * (size_t)vocab * sizeof(float));
    if (!lg) { eng_err_set(&err, ENG_E_NOMEM, "out of memory"); goto fail; }
    eng_seq seq = {0};
    int rc = claq_session_prefill(&s, &seq, ids, n, 0, 1, lg, &err);
    eng_kv_release(&s.kv, &seq);
    if (rc) goto fail;
    if (claq_arg_get(spec, ns, "--batch-check")) {
        lg2 = malloc((size_t)vocab * sizeof(float));
        if (!lg2) { eng_err_set(&err, ENG_E_NOMEM, "out of memory"); goto fail; }
        eng_seq s2 = {0};
        for (int i = 0; i < n && rc == 0; i++) {
            rc = claq_session_prefill(&s, &s2, ids + i, 1, i, 0, lg2, &err);
            if (!rc && memcmp(lg2, lg + (int64_t)i * vocab, (size_t)vocab * sizeof(float)) != 0)
                rc = eng_err_set(&err, ENG_E_RANGE, "batch check: position %d logits differ between "
                                 "prefill and one-token decode", i);
        }
        eng_kv_release(&s.kv, &s2);
        if (rc) goto fail;
        fprintf(stderr, "batch check: %d positions bit-identical\n", n);
    }
    f = fopen(out, "wb");
    if (!f || fwrite(lg, sizeof(float), (size_t)n * vocab, f) != (size_t)n * vocab) {
        eng_err_set(&err, ENG_E_IO, "cannot write %s", out);
        goto fail;
    }
    ret = 0;
    goto out;
fail:
    fprintf(stderr, "claq logits: %s\n", err.msg);
out:
    if (f) fclose(f);
    free(lg2);
    free(lg);
    free(ids);
    claq_session_close(&s);
    return ret;
}
