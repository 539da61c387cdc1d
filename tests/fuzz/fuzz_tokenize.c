/* fuzz_tokenize.c — libFuzzer target: the real tokenizers of ../shared (llama2.c tokenizer.bin,
 * SentencePiece tokenizer.model, Hugging Face tokenizer.json of tinystories-656k) and two small
 * byte-level BPE tokenizers built here (LLaMA-3's Split regex + ByteLevel, and GPT-2's ByteLevel
 * with add_prefix_space: their pre-tokenizers see every byte sequence), loaded once, on
 * arbitrary bytes: encode with and without special-token parsing, encode_plain with plain ranges
 * taken from the input, decode and the streaming detokenizer on ids taken from the input (in and
 * out of range). Byte 0 picks the tokenizer and the mode; the rest is the text. Needs
 * CLAQ_SHARED (tests/fuzz/run.sh sets it). Single-threaded (libFuzzer's driver). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eng_tokenizer.h"

#define N_FILES 3
#define N_TOK 5

static eng_tokenizer *toks[N_TOK];

/* GPT-2's printable form of byte b, as UTF-8 into out (JSON-escaped); returns its length. */
static int mapped(unsigned b, char *out)
{
    unsigned cp = b;
    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174))
        cp = 256 + (b <= 32 ? b : b <= 160 ? 33 + (b - 127) : 67);
    if (cp == '"' || cp == '\\') {
        out[0] = '\\';
        out[1] = (char)cp;
        return 2;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* A byte-level tokenizer.json: the 256 byte pieces, a few merges of common English pairs, one
 * special token; pre is the "pre_tokenizer" JSON. */
static eng_tokenizer *byte_level(const char *pre)
{
    static const char *const merges[][2] = {{"t", "h"}, {"th", "e"}, {" ", "the"}, {"i", "n"},
                                            {"in", "g"}, {" ", "a"}, {"e", "r"}, {" ", "t"}};
    size_t cap = 1 << 16, n = 0;
    char *j = malloc(cap);
    if (!j) exit(1);
    n += (size_t)snprintf(j + n, cap - n, "{\"added_tokens\":[{\"id\":%d,\"content\":"
                          "\"<|eot_id|>\",\"special\":true}],\"pre_tokenizer\":%s,\"model\":"
                          "{\"type\":\"BPE\",\"ignore_merges\":true,\"vocab\":{", 256 + 8, pre);
    for (unsigned b = 0; b < 256; b++) {
        j[n++] = '"';
        n += (size_t)mapped(b, j + n);
        n += (size_t)snprintf(j + n, cap - n, "\":%u,", b);
    }
    for (int m = 0; m < 8; m++) {
        j[n++] = '"';
        for (const char *p = merges[m][0]; *p; p++) n += (size_t)mapped((unsigned char)*p, j + n);
        for (const char *p = merges[m][1]; *p; p++) n += (size_t)mapped((unsigned char)*p, j + n);
        n += (size_t)snprintf(j + n, cap - n, "\":%d%s", 256 + m, m < 7 ? "," : "},\"merges\":[");
    }
    for (int m = 0; m < 8; m++) {
        j[n++] = '"';
        for (const char *p = merges[m][0]; *p; p++) n += (size_t)mapped((unsigned char)*p, j + n);
        j[n++] = ' ';
        for (const char *p = merges[m][1]; *p; p++) n += (size_t)mapped((unsigned char)*p, j + n);
        n += (size_t)snprintf(j + n, cap - n, "\"%s", m < 7 ? "," : "]}}");
    }
    eng_tokenizer *t = NULL;
    eng_err err = {0};
    if (eng_tokenizer_open_buffer(&t, "tokenizer.json", j, n, 0, &err)) {
        fprintf(stderr, "fuzz_tokenize: byte-level tokenizer: %s\n", err.msg);
        exit(1);
    }
    free(j);
    return t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *sh = getenv("CLAQ_SHARED");
    static const char *files[N_FILES] = {"models/tokenizer.bin", "models/tokenizer.model",
                                         "models/tinystories-656k/tokenizer.json"};
    static const int hints[N_FILES] = {32000, 0, 0};
    for (int i = 0; i < N_FILES; i++) {
        char path[4096];
        eng_err err = {0};
        snprintf(path, sizeof path, "%s/%s", sh ? sh : "../shared", files[i]);
        if (eng_tokenizer_open(&toks[i], path, hints[i], &err)) {
            fprintf(stderr, "fuzz_tokenize: %s: %s (set CLAQ_SHARED)\n", path, err.msg);
            exit(1);
        }
    }
    toks[3] = byte_level("{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\","
                         "\"pattern\":{\"Regex\":\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n"
                         "\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}"
                         "\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|"
                         "\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false},{\"type\":"
                         "\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":false}]}");
    toks[4] = byte_level("{\"type\":\"ByteLevel\",\"add_prefix_space\":true}");
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
