/* quant_calib.c — calibration windows for the quantizer: reads a text file, tokenizes it once with
 * the model's tokenizer, and draws N windows of L tokens with a seed (GPTQ's protocol draws random
 * windows from random documents; here the file is one stream). Does not run the model
 * (quant_pipeline.c does). Any thread; no state. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "eng_file.h"
#include "eng_tokenizer.h"

#define CALIB_MAX_FILE ((size_t)1 << 31)   /* calibration text larger than 2 GiB is refused */

static uint64_t calib_rand(uint64_t *st)   /* splitmix64 */
{
    uint64_t z = (*st += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int calib_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int eng_calib_windows(const int32_t *toks, int64_t n_toks, int nsamples, int seqlen,
                      uint64_t seed, int32_t *out, int *overlap, eng_err *err)
{
    if (overlap) *overlap = 0;
    if (nsamples <= 0 || seqlen <= 0)
        return eng_err_set(err, ENG_E_INVAL, "calibration: %d samples of %d tokens", nsamples,
                           seqlen);
    if (n_toks < seqlen)
        return eng_err_set(err, ENG_E_INVAL, "calibration text has %lld tokens, fewer than one "
                           "window of %d (lower --seqlen)", (long long)n_toks, seqlen);
    uint64_t st = seed ^ 0x5ca1ab1ec0ffeeull;
    int64_t need = (int64_t)nsamples * seqlen;
    int64_t *start = malloc(sizeof(int64_t) * (size_t)nsamples);
    if (!start) return eng_err_set(err, ENG_E_NOMEM, "calibration: out of memory");
    if (n_toks >= need) {
        /* Disjoint windows at random places: spread the slack by N sorted uniform draws. */
        uint64_t slack = (uint64_t)(n_toks - need);
        for (int i = 0; i < nsamples; i++) start[i] = (int64_t)(calib_rand(&st) % (slack + 1));
        qsort(start, (size_t)nsamples, sizeof *start, calib_cmp_i64);
        for (int i = 0; i < nsamples; i++) start[i] += (int64_t)i * seqlen;
    } else {
        /* Too little text for disjoint windows: independent draws, which overlap. */
        if (overlap) *overlap = 1;
        uint64_t span = (uint64_t)(n_toks - seqlen);
        for (int i = 0; i < nsamples; i++) start[i] = (int64_t)(calib_rand(&st) % (span + 1));
    }
    for (int i = 0; i < nsamples; i++)
        memcpy(out + (size_t)i * (size_t)seqlen, toks + start[i], sizeof(int32_t) * (size_t)seqlen);
    free(start);
    return 0;
}

static int calib_read(const char *path, char **text, size_t *len, eng_err *err)
{
    *text = NULL;
    *len = 0;
    eng_err oe = {0};
    FILE *f = eng_file_fopen(path, &oe);
    if (!f) return eng_err_set(err, oe.code, "calibration: %s", oe.msg);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    int rc = 0;
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        if (cap >= CALIB_MAX_FILE) {
            rc = eng_err_set(err, ENG_E_RANGE, "calibration: %s is larger than %zu bytes", path,
                             CALIB_MAX_FILE);
            break;
        }
        char *nb = realloc(buf, cap *= 2);
        if (!nb) { free(buf); buf = NULL; }
        else buf = nb;
    }
    if (!rc && !buf) rc = eng_err_set(err, ENG_E_NOMEM, "calibration: out of memory for %s", path);
    if (!rc && ferror(f)) rc = eng_err_set(err, ENG_E_IO, "calibration: read error on %s", path);
    fclose(f);
    if (rc) {
        free(buf);
        return rc;
    }
    *text = buf;
    *len = n;
    return 0;
}

int eng_calib_load(const eng_model *m, const char *tok_override, const char *path, int nsamples,
                   int seqlen, uint64_t seed, int32_t **out, int64_t *n_text_toks, int *overlap,
                   eng_err *err)
{
    *out = NULL;
    if (n_text_toks) *n_text_toks = 0;
    char *text = NULL;
    size_t len = 0;
    eng_tokenizer *tok = NULL;
    int32_t *ids = NULL, *win = NULL;
    int rc = calib_read(path, &text, &len, err);
    if (rc) return rc;
    if ((rc = eng_model_open_tokenizer(m, tok_override, &tok, err))) goto done;
    size_t n_ids = 0;
    win = malloc(sizeof(int32_t) * (size_t)nsamples * (size_t)(seqlen > 0 ? seqlen : 1));
    if (!win) {
        rc = eng_err_set(err, ENG_E_NOMEM, "calibration: out of memory");
        goto done;
    }
    if ((rc = eng_tokenizer_encode_alloc(tok, text, len, 0, 0, &ids, &n_ids, err))) goto done;
    if (n_text_toks) *n_text_toks = (int64_t)n_ids;
    if ((rc = eng_calib_windows(ids, (int64_t)n_ids, nsamples, seqlen, seed, win, overlap, err)))
        goto done;
    *out = win;
    win = NULL;
done:
    free(text);
    free(ids);
    free(win);
    eng_tokenizer_close(tok);
    return rc;
}
