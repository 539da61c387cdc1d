/* claq_perplexity.c — `claq perplexity` with the GPTQ protocol: tokenize the whole file once with
 * BOS at its start, cut the stream into consecutive non-overlapping windows of --ctx tokens (no
 * extra BOS), score every next-token prediction inside each window, print exp(mean NLL). The last
 * stdout line is `perplexity: <value>`.
 * With --reference MODEL (llama.cpp's --kl-divergence convention) the reference model runs the
 * same windows and, token by token, the KL divergence KL(P_ref || P_model) and whether the two
 * argmaxes agree are measured: mean, median, 99th percentile and maximum KL, top-1 agreement, and
 * the reference's own perplexity, printed before the perplexity line. Main thread only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "claq_session.h"
#include "claq_tool.h"
#include "eng_file.h"

static char *read_file(const char *path, size_t *len)
{
    FILE *f = eng_file_fopen(path, NULL);
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        char *nb = realloc(buf, cap *= 2);
        if (!nb) { free(buf); buf = NULL; }
        else buf = nb;
    }
    if (buf && ferror(f)) { free(buf); buf = NULL; }
    fclose(f);
    *len = n;
    return buf;
}

/* log of the softmax normaliser of logits, in double */
static double log_z(const float *logits, int vocab)
{
    double mx = logits[0];
    for (int i = 1; i < vocab; i++) if (logits[i] > mx) mx = logits[i];
    double s = 0;
    for (int i = 0; i < vocab; i++) s += exp((double)logits[i] - mx);
    return log(s) + mx;
}

/* KL(P || Q) of the softmaxes of p and q (nats), given their normalisers lzp and lzq, and
 * whether their argmaxes agree. */
static double kl_div(const float *p, double lzp, const float *q, double lzq, int vocab,
                     int *same_top)
{
    double kl = 0;
    int ap = 0, aq = 0;
    for (int i = 0; i < vocab; i++) {
        double lp = (double)p[i] - lzp, lq = (double)q[i] - lzq;
        kl += exp(lp) * (lp - lq);
        if (p[i] > p[ap]) ap = i;
        if (q[i] > q[aq]) aq = i;
    }
    *same_top = ap == aq;
    return kl > 0 ? kl : 0;   /* rounding can leave a tiny negative for equal distributions */
}

/* llama.cpp's conventions for the sorted KL values s[0..n): the median is the mean of the two
 * middle values when n is even; a percentile interpolates linearly at p (n - 1). */
static double kl_median(const double *s, long long n)
{
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

static double kl_percentile(const double *s, long long n, double p)
{
    double at = p * (double)(n - 1);
    long long lo = (long long)floor(at);
    if (lo + 1 >= n)
        return s[n - 1];
    return s[lo] + (at - (double)lo) * (s[lo + 1] - s[lo]);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}


int claq_cmd_perplexity(int argc, char **argv)
{
    claq_arg spec[] = {
        {"--model", 1, NULL, "model path (required)"},
        {"--tokenizer", 1, NULL, "tokenizer file (llama2.c checkpoints need one)"},
        {"--file", 1, NULL, "UTF-8 text to score (required)"},
        {"--ctx", 1, NULL, "window length in tokens (default: the model's context)"},
        {"--max-windows", 1, NULL, "score at most this many windows (default: all)"},
        {"--device", 1, NULL, "cpu (default), cuda, or auto (cuda when a GPU is present)"},
        {"--kv-dtype", 1, NULL, "KV cache entries: f32 (default) or f16 (half the memory)"},
        {"--threads", 1, NULL, "worker threads (default: one per core)"},
        {"--prefill-precision", 1, NULL, CLAQ_PREFILL_PRECISION_HELP},
        {"--reference", 1, NULL, "also measure KL divergence and top-1 agreement against this "
                                 "model (e.g. the FP original; same vocabulary)"},
        {"--help", 0, NULL, "this text"},
    };
    const int ns = (int)(sizeof spec / sizeof spec[0]);
    if (claq_args_parse("perplexity", spec, ns, argc, argv)) return 2;
    if (claq_arg_get(spec, ns, "--help") || !claq_arg_get(spec, ns, "--model") ||
        !claq_arg_get(spec, ns, "--file")) {
        claq_args_usage("perplexity", "--model PATH [--tokenizer PATH] --file TEXT --ctx N", spec, ns);
        return claq_arg_get(spec, ns, "--help") ? 0 : 2;
    }
    long long ctx = 0, threads = 0, max_windows = 0;
    const char *v;
    kern_dtype kv_dtype = KERN_F32;
    if ((v = claq_arg_get(spec, ns, "--kv-dtype")) && eng_kv_dtype_parse(v, &kv_dtype)) {
        fprintf(stderr, "claq perplexity: --kv-dtype must be f32 or f16, not '%s'\n", v);
        return 2;
    }
    if ((v = claq_arg_get(spec, ns, "--ctx")) && claq_parse_int("--ctx", v, 2, 1 << 22, &ctx)) return 2;
    if ((v = claq_arg_get(spec, ns, "--threads")) && claq_parse_int("--threads", v, 0, 256, &threads)) return 2;
    if ((v = claq_arg_get(spec, ns, "--max-windows")) && claq_parse_int("--max-windows", v, 1, 1 << 30, &max_windows)) return 2;
    int prefill_bf16 = 0;
    if (claq_parse_prefill_precision("perplexity", claq_arg_get(spec, ns, "--prefill-precision"),
                                     &prefill_bf16))
        return 2;
    const char *file = claq_arg_get(spec, ns, "--file");
    size_t len = 0;
    char *text = read_file(file, &len);
    if (!text) {
        fprintf(stderr, "claq perplexity: cannot read %s\n", file);
        return 1;
    }
    claq_session s;
    if (claq_session_open(&s, "perplexity", claq_arg_get(spec, ns, "--model"),
                          claq_arg_get(spec, ns, "--tokenizer"), 1, claq_arg_get(spec, ns, "--device"), (int)threads, 128, 0)) {
        free(text);
        return 1;
    }
    if (claq_session_set_prefill_bf16(&s, "perplexity", prefill_bf16)) {
        claq_session_close(&s);
        free(text);
        return 2;
    }
    int ret = 1, vocab = s.model->cfg.vocab_size;
    eng_err err = {0};
    float *logits = NULL, *ref_logits = NULL;
    double *kls = NULL;
    int32_t *toks = NULL;
    const char *ref_path = claq_arg_get(spec, ns, "--reference");
    claq_session r = {0};
    int have_ref = 0;
    if (ref_path) {
        if (claq_session_open(&r, "perplexity --reference", ref_path, NULL, 0,
                              claq_arg_get(spec, ns, "--device"), (int)threads, 128, 0))
            goto out;
        have_ref = 1;
        if (r.model->cfg.vocab_size != vocab) {
            fprintf(stderr, "claq perplexity: --reference has a vocabulary of %d, the model %d\n",
                    r.model->cfg.vocab_size, vocab);
            goto out;
        }
    }
    size_t n_tok = 0;
    int bos = eng_tokenizer_bos(s.tok);
    if (eng_tokenizer_encode_alloc(s.tok, text, len, bos >= 0, 0, &toks, &n_tok, &err)) goto fail;
    if (ctx == 0) ctx = s.model->cfg.seq_len;
    if (ctx > s.model->cfg.seq_len) {
        fprintf(stderr, "claq perplexity: --ctx %lld exceeds the model's context %d\n", ctx,
                s.model->cfg.seq_len);
        goto out;
    }
    long long windows = (long long)n_tok / ctx;
    if (max_windows && windows > max_windows) windows = max_windows;
    if (windows == 0) {
        fprintf(stderr, "claq perplexity: %s has %zu tokens, fewer than one window of %lld\n", file,
                n_tok, ctx);
        goto out;
    }
    if (eng_kv_init_on(&s.kv, &s.model->cfg, ctx, kv_dtype, &s.be, &err)) goto fail;
    logits = malloc((size_t)ctx * (size_t)vocab * sizeof(float));
    if (!logits) { eng_err_set(&err, ENG_E_NOMEM, "out of memory for logits"); goto fail; }
    if (have_ref) {
        if (ctx > r.model->cfg.seq_len) {
            fprintf(stderr, "claq perplexity: --ctx %lld exceeds the reference's context %d\n",
                    ctx, r.model->cfg.seq_len);
            goto out;
        }
        if (eng_kv_init_on(&r.kv, &r.model->cfg, ctx, kv_dtype, &r.be, &err)) goto fail;
        ref_logits = malloc((size_t)ctx * (size_t)vocab * sizeof(float));
        kls = malloc((size_t)windows * (size_t)ctx * sizeof *kls);
        if (!ref_logits || !kls) { eng_err_set(&err, ENG_E_NOMEM, "out of memory"); goto fail; }
    }
    double ref_sum = 0, kl_sum = 0;
    long long same_top = 0;
    fprintf(stderr, "%s: %zu tokens, %lld windows of %lld\n", file, n_tok, windows, ctx);
    double sum = 0;
    long long count = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long long w = 0; w < windows; w++) {
        eng_seq seq = {0};
        const int32_t *win = toks + w * ctx;
        int rc = claq_session_prefill(&s, &seq, win, (int)ctx, 0, 1, logits, &err);
        eng_kv_release(&s.kv, &seq);
        if (rc) goto fail;
        if (have_ref) {
            eng_seq rseq = {0};
            rc = claq_session_prefill(&r, &rseq, win, (int)ctx, 0, 1, ref_logits, &err);
            eng_kv_release(&r.kv, &rseq);
            if (rc) goto fail;
        }
        for (long long i = 0; i + 1 < ctx; i++) {
            /* NLL = log Z - logit of the target; each normaliser computed once */
            const float *lq = logits + i * vocab;
            double lzq = log_z(lq, vocab);
            if (!isfinite(lzq) || !isfinite(lq[win[i + 1]])) {   /* a NaN is not a score */
                eng_err_set(&err, ENG_E_RANGE, "%s gives non-finite logits (window %lld, "
                            "position %lld): it cannot be scored",
                            claq_arg_get(spec, ns, "--model"), w, i);
                goto fail;
            }
            sum += lzq - (double)lq[win[i + 1]];
            if (have_ref) {
                const float *lp = ref_logits + i * vocab;
                double lzp = log_z(lp, vocab);
                if (!isfinite(lzp) || !isfinite(lp[win[i + 1]])) {
                    eng_err_set(&err, ENG_E_RANGE, "the reference %s gives non-finite logits "
                                "(window %lld, position %lld)",
                                claq_arg_get(spec, ns, "--reference"), w, i);
                    goto fail;
                }
                int same;
                double kl = kl_div(lp, lzp, lq, lzq, vocab, &same);
                kls[count] = kl;
                kl_sum += kl;
                same_top += same;
                ref_sum += lzp - (double)lp[win[i + 1]];
            }
            count++;
        }
        if ((w + 1) % 10 == 0 || w + 1 == windows)
            fprintf(stderr, "  window %lld/%lld: running ppl %.4f\n", w + 1, windows, exp(sum / count));
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    fprintf(stderr, "scored %lld tokens in %.2f s (%.0f tok/s)\n", count, dt, (double)windows * ctx / dt);
    printf("tokens: %zu\nwindows: %lld\nctx: %lld\nscored: %lld\nnll: %.6f\n", n_tok, windows, ctx,
           count, sum / count);
    if (have_ref) {
        qsort(kls, (size_t)count, sizeof *kls, cmp_double);
        printf("reference perplexity: %.4f\nppl ratio: %.5f\n", exp(ref_sum / count),
               exp((sum - ref_sum) / count));
        printf("kl mean: %.6f\nkl median: %.6f\nkl p99: %.6f\nkl max: %.6f\n", kl_sum / count,
               kl_median(kls, count), kl_percentile(kls, count, 0.99), kls[count - 1]);
        printf("top-1 agreement: %.4f\n", (double)same_top / (double)count);
    }
    printf("perplexity: %.4f\n", exp(sum / count));
    ret = 0;
    goto out;
fail:
    fprintf(stderr, "claq perplexity: %s\n", err.msg);
out:
    free(logits);
    free(ref_logits);
    free(kls);
    free(toks);
    free(text);
    if (have_ref) claq_session_close(&r);
    claq_session_close(&s);
    return ret;
}
