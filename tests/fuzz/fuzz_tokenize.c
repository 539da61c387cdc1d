/* fuzz_tokenize.c — libFuzzer target: the real tokenizers of ../shared (llama2.c tokenizer.bin,
 * SentencePiece tokenizer.model, Hugging Face tokenizer.json of tinystories-656k), loaded once, on
 * arbitrary bytes: encode with and without special-token parsing, encode_plain with plain ranges
 * taken from the input, decode and the streaming detokenizer on ids taken from the input (in and
 * out of range). Byte 0 picks the tokenizer and the mode; the rest is the text. Needs
 * CLAQ_SHARED (tests/fuzz/run.sh sets it). Single-threaded (libFuzzer's driver). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eng_tokenizer.h"

#define N_TOK 3

static eng_tokenizer *toks[N_TOK];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *sh = getenv("CLAQ_SHARED");
    static const char *files[N_TOK] = {"models/tokenizer.bin", "models/tokenizer.model",
                                       "models/tinystories-656k/tokenizer.json"};
    static const int hints[N_TOK] = {32000, 0, 0};
    for (int i = 0; i < N_TOK; i++) {
        char path[4096];
        eng_err err = {0};
        snprintf(path, sizeof path, "%s/%s", sh ? sh : "../shared", files[i]);
        if (eng_tokenizer_open(&toks[i], path, hints[i], &err)) {
            fprintf(stderr, "fuzz_tokenize: %s: %s (set CLAQ_SHARED)\n", path, err.msg);
            exit(1);
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const eng_tokenizer *t = toks[data[0] % N_TOK];
    const int mode = data[0] / N_TOK;
    const char *text = (const char *)data + 1;
    const size_t len = size - 1;
    int32_t ids[512];
    size_t n = 0;
    eng_err err = {0};

    if (mode & 1) {   /* plain ranges: pairs of offsets from the text's own bytes, made ascending */
        size_t plain[8], np = 0, at = 0;
        for (size_t i = 0; i + 1 < len && np < 4; i += 2) {
            size_t a = at + (unsigned char)text[i] % 16, b = a + (unsigned char)text[i + 1] % 16;
            if (b > len) break;
            plain[2 * np] = a;
            plain[2 * np + 1] = b;
            np++;
            at = b;
        }
        (void)eng_tokenizer_encode_plain(t, text, len, mode & 2, plain, np, ids, 512, &n, &err);
    } else {
        (void)eng_tokenizer_encode(t, text, len, mode & 2, (mode >> 2) & 1, ids, 512, &n, &err);
    }
    if (n > 512) n = 512;

    /* decode what was encoded, then ids read straight from the input (any int32) */
    char out[4096];
    (void)eng_tokenizer_decode(t, ids, n, 1, out, sizeof out);
    size_t nr = len / 4 < 128 ? len / 4 : 128;
    int32_t raw[128];
    memcpy(raw, text, nr * 4);
    (void)eng_tokenizer_decode(t, raw, nr, 0, out, sizeof out);
    eng_detok d;
    eng_detok_init(&d, t, mode & 8);
    for (size_t i = 0; i < nr; i++) (void)eng_detok_push(&d, raw[i], out, 272);
    for (size_t i = 0; i < n; i++) (void)eng_detok_push(&d, ids[i], out, 272);
    return 0;
}
