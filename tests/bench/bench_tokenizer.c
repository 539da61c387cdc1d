/* bench_tokenizer.c — encode and decode speed of the tokenizers (a benchmark that prints
 * figures, not a test): each TOKENIZER given encodes TEXTFILE (read whole, encoded in 64 KiB
 * slices cut at line ends, as a server sees prompts) on one thread, best of --reps runs, and
 * decodes the ids back. Prints MB/s of text and tokens/s, with the load average.
 * Usage: bench_tokenizer TEXTFILE TOKENIZER... [--reps N]
 * tests/bench/bench_tokenizer.sh builds LLaMA-3's tokenizer.json and runs it on real text.
 * Single-threaded. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eng_tokenizer.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (p && fread(p, 1, (size_t)len, f) != (size_t)len) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *n = p ? (size_t)len : 0;
    return p;
}

int main(int argc, char **argv)
{
    int reps = 3, ntok = 0;
    const char *text_path = NULL, *toks[16];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!text_path) text_path = argv[i];
        else if (ntok < 16) toks[ntok++] = argv[i];
    }
    if (!text_path || !ntok || reps < 1) {
        fprintf(stderr, "usage: bench_tokenizer TEXTFILE TOKENIZER... [--reps N]\n");
        return 2;
    }
    size_t n;
    char *text = read_all(text_path, &n);
    if (!text) {
        fprintf(stderr, "bench_tokenizer: cannot read %s\n", text_path);
        return 1;
    }
    double load[3] = {0};
    FILE *la = fopen("/proc/loadavg", "r");
    if (la) {
        if (fscanf(la, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1;
        fclose(la);
    }
    printf("text %s: %.2f MB; load average %.2f %.2f %.2f; best of %d\n", text_path, n / 1e6,
           load[0], load[1], load[2], reps);
    printf("%-48s %8s %10s %10s %12s %10s\n", "tokenizer", "vocab", "tokens", "enc MB/s",
           "enc tok/s", "dec MB/s");
    size_t cap = n + 16;
    int32_t *ids = malloc(cap * sizeof *ids);
    char *back = malloc(4 * n + 64);
    if (!ids || !back) return 1;
    for (int k = 0; k < ntok; k++) {
        eng_tokenizer *t;
        eng_err err = {0};
        if (eng_tokenizer_open(&t, toks[k], 32000, &err)) {
            fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
            return 1;
        }
        double best_enc = 1e30, best_dec = 1e30;
        size_t total = 0;
        for (int r = 0; r < reps; r++) {
            double t0 = now_s();
            total = 0;
            for (size_t off = 0; off < n;) {
                size_t len = n - off < 65536 ? n - off : 65536;
                while (off + len < n && len > 1 && text[off + len - 1] != '\n') len--;
                size_t got;
                if (eng_tokenizer_encode(t, text + off, len, 0, 0, ids + total, cap - total, &got,
                                         &err)) {
                    fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
                    return 1;
                }
                if (got > cap - total) {   /* only cap - total ids were written */
                    fprintf(stderr, "bench_tokenizer: more ids than the buffer holds\n");
                    return 1;
                }
                total += got;
                off += len;
            }
            double t1 = now_s();
            eng_tokenizer_decode(t, ids, total, 0, back, 4 * n + 64);
            double t2 = now_s();
            if (t1 - t0 < best_enc) best_enc = t1 - t0;
            if (t2 - t1 < best_dec) best_dec = t2 - t1;
        }
        printf("%-48.48s %8d %10zu %10.2f %12.0f %10.2f\n", toks[k], eng_tokenizer_vocab_size(t),
               total, n / 1e6 / best_enc, total / best_enc, n / 1e6 / best_dec);
        eng_tokenizer_close(t);
    }
    free(ids);
    free(back);
    free(text);
    return 0;
}
