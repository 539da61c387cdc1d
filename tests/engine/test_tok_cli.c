/* test_tok_cli.c — tokenizer tests on the real tokenizer files, and the driver the Python
 * acceptance tests call.
 *   test_tok_cli                      C checks (the ctest): llama2.c "Zoo" ids, tokenizer.bin ==
 *                                     tokenizer.model on real lines, streaming detok, specials,
 *                                     malformed and fuzzed files, 2 MB encode speed.
 *   test_tok_cli --encode TOK [--bos] [--special]   stdin: records "<len>\n<bytes>"; stdout: one
 *                                     line of ids per record
 *   test_tok_cli --decode TOK         stdin: lines of ids; stdout: records "<len>\n<bytes>\n"
 *                                     (eng_tokenizer_decode with skip_leading_space = 1)
 *   test_tok_cli --detok TOK          as --decode, through eng_detok (skip_leading_space = 1)
 * Single-threaded. Needs CLAQ_SHARED (exit 77 without it). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eng_tokenizer.h"

#include "test_check.h"

static char g_shared[2048];

static const char *shared_path(const char *rel, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s", g_shared, rel);
    return buf;
}

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    unsigned char *p = malloc(cap);
    size_t r;
    while (p && (r = fread(p + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap) {
            unsigned char *q = realloc(p, cap *= 2);
            if (!q) {
                free(p);
                p = NULL;
            }
            p = q;
        }
    }
    fclose(f);
    *n = len;
    return p;
}

static eng_tokenizer *open_tok(const char *rel, int hint)
{
    char path[4096];
    eng_err err = {0};
    eng_tokenizer *t = NULL;
    int rc = eng_tokenizer_open(&t, shared_path(rel, path, sizeof path), hint, &err);
    CHECK(rc == 0 && t, "open %s: %s", rel, err.msg);
    return t;
}

/* Encodes into a malloc'd array (caller frees); *n gets the count. */
static int32_t *encode(const eng_tokenizer *t, const char *s, size_t len, int bos, int special,
                       size_t *n)
{
    eng_err err = {0};
    int32_t *ids = NULL;
    int rc = eng_tokenizer_encode_alloc(t, s, len, bos, special, &ids, n, &err);
    CHECK(rc == 0, "encode: %s", err.msg);
    return ids;
}

/* Decoded text (may hold NUL bytes from <0x00>: *len says how long); caller frees. */
static char *decode_len(const eng_tokenizer *t, const int32_t *ids, size_t n, int skip,
                        size_t *len)
{
    size_t need = eng_tokenizer_decode(t, ids, n, skip, NULL, 0);
    char *s = malloc(need + 1);
    if (!s) return NULL;
    size_t got = eng_tokenizer_decode(t, ids, n, skip, s, need + 1);
    CHECK(got == need && s[need] == '\0', "decode length %zu vs %zu", got, need);
    *len = need;
    return s;
}

static char *decode(const eng_tokenizer *t, const int32_t *ids, size_t n, int skip)
{
    size_t len;
    return decode_len(t, ids, n, skip, &len);
}

/* CPU time of this process: the machine is shared, wall time says more about the others */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- driver modes ------------------------------------------------------------------------ */

static int mode_encode(const char *tokpath, int bos, int special)
{
    eng_err err = {0};
    eng_tokenizer *t = NULL;
    if (eng_tokenizer_open(&t, tokpath, 0, &err)) {
        fprintf(stderr, "open: %s\n", err.msg);
        return 2;
    }
    size_t n;
    unsigned char *in = read_all("/dev/stdin", &n);
    size_t pos = 0;
    int rc = 0;
    while (in && pos < n) {
        char *end;
        unsigned long len = strtoul((const char *)in + pos, &end, 10);
        if (*end != '\n' || len > n - (size_t)(end + 1 - (char *)in)) {
            fprintf(stderr, "bad record at %zu\n", pos);
            rc = 2;
            break;
        }
        pos = (size_t)(end + 1 - (char *)in);
        size_t cnt;
        int32_t *ids = encode(t, (const char *)in + pos, len, bos, special, &cnt);
        for (size_t i = 0; ids && i < cnt; i++) printf(i ? " %d" : "%d", (int)ids[i]);
        putchar('\n');
        free(ids);
        pos += len;
    }
    free(in);
    eng_tokenizer_close(t);
    return rc ? rc : g_fail ? 1 : 0;
}

static int mode_decode(const char *tokpath, int streaming)
{
    eng_err err = {0};
    eng_tokenizer *t = NULL;
    if (eng_tokenizer_open(&t, tokpath, 0, &err)) {
        fprintf(stderr, "open: %s\n", err.msg);
        return 2;
    }
    size_t n;
    char *in = (char *)read_all("/dev/stdin", &n);
    char *p = in, *end = in + n;
    int32_t *ids = malloc((n + 1) * sizeof *ids);
    while (in && ids && p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) nl = end;
        size_t k = 0;
        char *q = p;
        while (q < nl) {
            char *e;
            long v = strtol(q, &e, 10);
            if (e == q) break;
            ids[k++] = (int32_t)v;
            q = e;
        }
        if (!streaming) {
            size_t len = 0;
            char *s = decode_len(t, ids, k, 1, &len);
            printf("%zu\n", len);
            fwrite(s, 1, len, stdout);
            putchar('\n');
            free(s);
        } else {
            eng_detok d;
            eng_detok_init(&d, t, 1);
            size_t cap = 1024 + 4 * k * 300, len = 0;
            char *s = malloc(cap);
            for (size_t i = 0; s && i < k; i++) len += eng_detok_push(&d, ids[i], s + len, 300);
            if (s) len += eng_detok_flush(&d, s + len, 300);
            printf("%zu\n", len);
            fwrite(s, 1, len, stdout);
            putchar('\n');
            free(s);
        }
        p = nl + 1;
    }
    free(ids);
    free(in);
    eng_tokenizer_close(t);
    return g_fail ? 1 : 0;
}

/* ---- C checks ----------------------------------------------------------------------------- */

static void check_zoo(void)
{
    eng_tokenizer *t = open_tok("models/tok512.bin", 512);
    if (!t) return;
    CHECK(eng_tokenizer_vocab_size(t) == 512, "vocab %d", eng_tokenizer_vocab_size(t));
    CHECK(eng_tokenizer_bos(t) == 1 && eng_tokenizer_eos(t) == 2, "bos/eos");
    size_t n;
    int32_t *ids = encode(t, "Zoo", 3, 1, 0, &n);
    CHECK(n == 4 && ids[0] == 1 && ids[1] == 410 && ids[2] == 469 && ids[3] == 347,
          "Zoo -> %zu ids [%d %d %d %d]", n, n > 0 ? ids[0] : -1, n > 1 ? ids[1] : -1,
          n > 2 ? ids[2] : -1, n > 3 ? ids[3] : -1);
    /* llama2.c decode: the space after BOS is dropped (410 is the lone dummy-prefix " ") */
    char buf[64];
    size_t k = eng_tokenizer_token_bytes(t, 1, ids[1], buf, sizeof buf);
    CHECK(k == 0, "token after BOS keeps its space (%zu bytes)", k);
    k = eng_tokenizer_token_bytes(t, 469, ids[1], buf, sizeof buf);
    CHECK(k == 1 && buf[0] == ' ', "token not after BOS lost its space");
    char *s = decode(t, ids, n, 1);
    CHECK(s && strcmp(s, "Zoo") == 0, "decode Zoo: '%s'", s ? s : "(null)");
    free(s);
    /* byte fallback: "\n" is <0x0A> = id 13 in the llama2.c layout */
    free(ids);
    ids = encode(t, "a\nb", 3, 0, 0, &n);
    int has13 = 0;
    for (size_t i = 0; i < n; i++) has13 |= ids[i] == 13;
    CHECK(has13, "newline did not fall back to <0x0A>");
    /* empty text: no dummy prefix */
    free(ids);
    ids = encode(t, "", 0, 1, 0, &n);
    CHECK(n == 1 && ids[0] == 1, "empty text with BOS gave %zu ids", n);
    free(ids);
    /* capacity: the count is full, only cap ids written */
    int32_t small[2] = {-7, -7};
    size_t nn = 0;
    eng_err err = {0};
    CHECK(eng_tokenizer_encode(t, "Zoo", 3, 1, 0, small, 1, &nn, &err) == 0 && nn == 4 &&
              small[0] == 1 && small[1] == -7, "cap=1 gave n=%zu", nn);
    eng_tokenizer_close(t);
}

/* Splits text into lines (no '\n'); returns count, *lines point into text. */
static size_t split_lines(char *text, size_t n, char ***lines, size_t max)
{
    size_t cnt = 0, cap = 1024;
    char **v = malloc(cap * sizeof *v);
    char *p = text, *end = text + n;
    while (v && p < end && cnt < max) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) nl = end;
        *nl = '\0';
        if (cnt == cap) {
            char **w = realloc(v, (cap *= 2) * sizeof *v);
            if (!w) break;
            v = w;
        }
        v[cnt++] = p;
        p = nl + 1;
    }
    *lines = v;
    return cnt;
}

static void check_bin_equals_model(void)
{
    eng_tokenizer *bin = open_tok("models/tokenizer.bin", 32000);
    eng_tokenizer *spm = open_tok("models/tokenizer.model", 0);
    char path[4096];
    size_t n;
    char *text = (char *)read_all(shared_path("data/wikitext-2-raw/wiki.test.raw", path,
                                              sizeof path), &n);
    CHECK(text != NULL, "wiki.test.raw unreadable");
    if (!bin || !spm || !text) goto done;
    CHECK(eng_tokenizer_vocab_size(bin) == 32000 && eng_tokenizer_vocab_size(spm) == 32000,
          "vocab sizes");
    char **lines;
    size_t nl = split_lines(text, n, &lines, 1200), compared = 0, nonempty = 0;
    for (size_t i = 0; i < nl; i++) {
        size_t na, nb;
        size_t len = strlen(lines[i]);
        int32_t *a = encode(bin, lines[i], len, 1, 0, &na);
        int32_t *b = encode(spm, lines[i], len, 1, 0, &nb);
        int same = a && b && na == nb && memcmp(a, b, na * sizeof *a) == 0;
        CHECK(same, "line %zu differs (%zu vs %zu ids): %.60s", i, na, nb, lines[i]);
        compared++;
        nonempty += len > 1;
        free(a);
        free(b);
    }
    CHECK(compared >= 1000 && nonempty >= 500, "compared only %zu lines", compared);
    printf("tokenizer.bin == tokenizer.model on %zu wikitext lines (%zu non-empty)\n", compared,
           nonempty);
    free(lines);
done:
    free(text);
    eng_tokenizer_close(bin);
    eng_tokenizer_close(spm);
}

static int valid_utf8(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t l = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!l || i + l > n) return 0;
        for (size_t k = 1; k < l; k++)
            if (((unsigned char)s[i + k] & 0xC0) != 0x80) return 0;
        i += l;
    }
    return 1;
}

/* Pushes ids through a detok; every chunk must be whole UTF-8; returns the stream. */
static char *stream(const eng_tokenizer *t, const int32_t *ids, size_t n, int skip,
                    int *split_seen)
{
    eng_detok d;
    eng_detok_init(&d, t, skip);
    char *s = malloc(n * 300 + 300);
    size_t len = 0;
    for (size_t i = 0; s && i < n; i++) {
        size_t k = eng_detok_push(&d, ids[i], s + len, 272);
        CHECK(valid_utf8(s + len, k), "chunk %zu is not whole UTF-8", i);
        if (k == 0 && d.n_pending > 0 && split_seen) *split_seen = 1;
        len += k;
    }
    if (s) len += eng_detok_flush(&d, s + len, 272);
    if (s) s[len] = '\0';
    return s;
}

static void check_detok(void)
{
    eng_tokenizer *t = open_tok("models/tokenizer.model", 0);
    if (!t) return;
    const char *text = "Hi 😀 there, 日本語 and 🦙 ok";
    size_t n;
    int32_t *ids = encode(t, text, strlen(text), 1, 0, &n);
    int bytes = 0;
    int f0 = eng_tokenizer_find(t, "<0xF0>");
    for (size_t i = 0; i < n; i++) bytes += ids[i] == f0;
    CHECK(f0 >= 0 && bytes >= 2, "emoji did not use byte fallback (%d)", bytes);
    int split = 0;
    char *full = decode(t, ids, n, 1);
    char *s1 = stream(t, ids, n, 1, &split);
    CHECK(split, "no token held back a partial character");
    CHECK(full && s1 && strcmp(full, s1) == 0, "stream '%s' != decode '%s'", s1, full);
    CHECK(full && strcmp(full, text) == 0, "decode '%s' != text", full);
    /* skip = 0: token_bytes per token, BOS drops the following space */
    char *s0 = stream(t, ids, n, 0, NULL);
    CHECK(s0 && strcmp(s0, text) == 0, "stream(skip=0) '%s'", s0);
    free(full);
    free(s1);
    free(s0);

    /* broken sequences become U+FFFD, one per byte, as SentencePiece decodes them */
    int e2 = eng_tokenizer_find(t, "<0xE2>"), x82 = eng_tokenizer_find(t, "<0x82>");
    int a = eng_tokenizer_find(t, "\xE2\x96\x81" "a");
    CHECK(e2 >= 0 && x82 >= 0 && a >= 0, "pieces missing");
    int32_t bad[3] = {e2, x82, a};
    char *d = decode(t, bad, 3, 1);
    char *st = stream(t, bad, 3, 1, NULL);
    CHECK(d && strcmp(d, "\xEF\xBF\xBD\xEF\xBF\xBD a") == 0, "decode of broken bytes '%s'", d);
    CHECK(d && st && strcmp(d, st) == 0, "stream of broken bytes '%s' vs '%s'", st, d);
    free(d);
    free(st);
    eng_detok dt;
    eng_detok_init(&dt, t, 1);
    char out[300];
    CHECK(eng_detok_push(&dt, e2, out, sizeof out) == 0, "lead byte emitted alone");
    size_t k = eng_detok_flush(&dt, out, sizeof out);
    CHECK(k == 3 && memcmp(out, "\xEF\xBF\xBD", 3) == 0, "flush of a lone lead byte gave %zu", k);
    free(ids);
    eng_tokenizer_close(t);
}

static void check_special(void)
{
    eng_tokenizer *t = open_tok("models/tokenizer.model", 0);
    if (t) {
        size_t n;
        int32_t *ids = encode(t, "<s>Hi</s>", 9, 0, 1, &n);
        CHECK(n >= 3 && ids[0] == 1 && ids[n - 1] == 2, "SPM parse_special gave %zu ids", n);
        free(ids);
        ids = encode(t, "<s>Hi</s>", 9, 0, 0, &n);
        int has = 0;
        for (size_t i = 0; i < n; i++) has |= ids[i] == 1 || ids[i] == 2;
        CHECK(!has && n > 3, "plain text produced control ids");
        CHECK(eng_tokenizer_is_special(t, 1) && eng_tokenizer_is_special(t, 0) &&
                  !eng_tokenizer_is_special(t, 500), "is_special");
        CHECK(eng_tokenizer_find(t, "<unk>") == 0 && eng_tokenizer_find(t, "no such piece") == -1,
              "find");
        CHECK(eng_tokenizer_piece(t, 13) && strcmp(eng_tokenizer_piece(t, 13), "<0x0A>") == 0 &&
                  eng_tokenizer_piece(t, 32000) == NULL, "piece");
        free(ids);
        eng_tokenizer_close(t);
    }
    t = open_tok("models/tinystories-656k/tokenizer.json", 0);
    if (t) {
        CHECK(eng_tokenizer_vocab_size(t) == 2048, "vocab %d", eng_tokenizer_vocab_size(t));
        CHECK(eng_tokenizer_bos(t) == 1 && eng_tokenizer_eos(t) == 2, "HF bos %d eos %d",
              eng_tokenizer_bos(t), eng_tokenizer_eos(t));
        /* <|end_story|> is "normalized": HF looks for "\u2581<|end_story|>", so glued to a
         * word it is plain text */
        const char *s = "Once upon a time <|end_story|>", *glued = "Once upon a time<|end_story|>";
        size_t n;
        int32_t *ids = encode(t, s, strlen(s), 1, 1, &n);
        CHECK(n >= 3 && ids[0] == 1 && ids[n - 1] == 2, "HF parse_special");
        free(ids);
        ids = encode(t, glued, strlen(glued), 1, 1, &n);
        int glued_eos = 0;
        for (size_t i = 0; i < n; i++) glued_eos |= ids[i] == 2;
        CHECK(!glued_eos, "HF parse_special: a normalized token glued to a word matched");
        free(ids);
        ids = encode(t, s, strlen(s), 0, 0, &n);
        int has = 0;
        for (size_t i = 0; i < n; i++) has |= ids[i] == 2;
        CHECK(!has, "HF plain text produced the EOS id");
        free(ids);
        /* characters outside the vocabulary: <unk>, fused per run, never a crash */
        const char *u = "The cat 日本語 sat. 😀";
        ids = encode(t, u, strlen(u), 0, 0, &n);
        int unk = 0;
        for (size_t i = 0; i < n; i++) unk += ids[i] == 0;
        CHECK(unk == 2, "expected 2 fused <unk>, got %d", unk);
        char *d = decode(t, ids, n, 1);
        CHECK(d && strncmp(d, "The cat", 7) == 0, "HF decode '%s'", d);
        free(d);
        free(ids);
        eng_tokenizer_close(t);
    }
}

static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* Opens a possibly broken buffer; when it loads, uses it. Must never crash. */
static int try_buffer(const char *name, const unsigned char *d, size_t n, int hint)
{
    eng_tokenizer *t = NULL;
    eng_err err = {0};
    int rc = eng_tokenizer_open_buffer(&t, name, d, n, hint, &err);
    if (rc == 0) {
        CHECK(t != NULL, "%s: success without a tokenizer", name);
        const char *s = "Hello wörld  \t 日本 😀 <s> x";
        size_t k;
        int32_t ids[256];
        eng_tokenizer_encode(t, s, strlen(s), 1, 1, ids, 256, &k, &err);
        if (k > 256) k = 256;
        char out[2048];
        eng_tokenizer_decode(t, ids, k, 1, out, sizeof out);
        eng_detok dt;
        eng_detok_init(&dt, t, 1);
        for (size_t i = 0; i < k; i++) eng_detok_push(&dt, ids[i], out, 300);
        eng_detok_flush(&dt, out, 300);
        eng_tokenizer_close(t);
    } else {
        CHECK(t == NULL && err.code == rc && err.msg[0], "%s: error without message", name);
    }
    return rc;
}

static void check_malformed(void)
{
    static const char *const files[][2] = {
        {"models/tok512.bin", "tokenizer.bin"},
        {"models/tokenizer.model", "tokenizer.model"},
        {"models/small-lm-5m/tokenizer.model", "tokenizer.model"},
        {"models/tinystories-656k/tokenizer.json", "tokenizer.json"},
    };
    char path[4096];
    uint32_t seed = 12345;
    for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
        size_t n;
        unsigned char *d = read_all(shared_path(files[f][0], path, sizeof path), &n);
        CHECK(d != NULL, "%s unreadable", files[f][0]);
        if (!d) continue;
        int hint = f == 0 ? 512 : 0;
        CHECK(try_buffer(files[f][1], d, n, hint) == 0, "%s: intact file rejected", files[f][0]);
        /* truncations: the llama2.c file with its vocab hint and the JSON must fail; the
         * protobuf must fail when cut inside a piece (sizes that lie) */
        size_t cuts[] = {0, 1, 3, 7, n / 3, n / 2, n - 1};
        for (size_t c = 0; c < sizeof cuts / sizeof *cuts; c++) {
            unsigned char *cp = malloc(cuts[c] + 1);
            memcpy(cp, d, cuts[c]);
            int rc = try_buffer(files[f][1], cp, cuts[c], hint);
            if (f == 0 || f == 3 || cuts[c] < 8)
                CHECK(rc != 0, "%s cut at %zu accepted", files[f][0], cuts[c]);
            free(cp);
        }
        /* random corruption: a few bytes changed, 60 times per file */
        unsigned char *cp = malloc(n);
        for (int round = 0; round < 60; round++) {
            memcpy(cp, d, n);
            int flips = 1 + (int)(lcg(&seed) % 8);
            for (int k = 0; k < flips; k++) cp[lcg(&seed) % n] = (unsigned char)lcg(&seed);
            try_buffer(files[f][1], cp, n, hint);
        }
        free(cp);
        free(d);
    }
    /* hand-made bad inputs, one per failure mode */
    static const unsigned char pb_len_lies[] = {0x0A, 0x7F, 0x0A, 0x01, 'a'};
    CHECK(try_buffer("tokenizer.model", pb_len_lies, sizeof pb_len_lies, 0) == ENG_E_FORMAT,
          "protobuf length past the end accepted");
    static const unsigned char pb_varint[] = {0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                              0xFF, 0xFF, 0xFF, 0x01};
    CHECK(try_buffer("tokenizer.model", pb_varint, sizeof pb_varint, 0) == ENG_E_FORMAT,
          "overlong varint accepted");
    static const unsigned char pb_group[] = {0x0B, 0x0C};
    CHECK(try_buffer("tokenizer.model", pb_group, sizeof pb_group, 0) == ENG_E_FORMAT,
          "protobuf group accepted");
    const char *bad_json[] = {
        "{\"model\": ", "[1,2,3]", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 2}}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}}",
        "{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", 0.0]]}}",
        ("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"normalizer\": {\"type\": "
         "\"NFKC\"}}"),   /* one string, wrapped (clang's -Wstring-concatenation) */
    };
    for (size_t i = 0; i < sizeof bad_json / sizeof *bad_json; i++)
        CHECK(try_buffer("tokenizer.json", (const unsigned char *)bad_json[i],
                         strlen(bad_json[i]), 0) != 0, "bad JSON %zu accepted", i);
    static const unsigned char bin_len_lies[] = {7, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 'x'};
    CHECK(try_buffer("tokenizer.bin", bin_len_lies, sizeof bin_len_lies, 0) == ENG_E_FORMAT,
          "tokenizer.bin piece length past the end accepted");
    eng_tokenizer *t = NULL;
    eng_err err = {0};
    CHECK(eng_tokenizer_open(&t, "/nonexistent/tokenizer.model", 0, &err) == ENG_E_IO &&
              strstr(err.msg, "/nonexistent"), "missing file: %s", err.msg);
}

static void check_speed(void)
{
    static const char *const toks[] = {"models/tokenizer.model",
                                       "models/small-lm-5m/tokenizer.model",
                                       "models/tinystories-656k/tokenizer.json",
                                       "models/tokenizer.bin"};
    char path[4096];
    size_t n;
    char *text = (char *)read_all(shared_path("data/small-lm/train.txt", path, sizeof path), &n);
    CHECK(text != NULL, "train.txt unreadable");
    if (!text) return;
#if defined(__SANITIZE_ADDRESS__)
    const double limit = 20.0;   /* sanitizers slow everything several-fold */
#else
    const double limit = 2.0;
#endif
    for (size_t i = 0; i < sizeof toks / sizeof *toks; i++) {
        eng_tokenizer *t = open_tok(toks[i], i == 3 ? 32000 : 0);
        if (!t) continue;
        double t0 = now_s();
        size_t cnt;
        int32_t *ids = encode(t, text, n, 1, 0, &cnt);
        double dt = now_s() - t0;
        printf("encode %.2f MB with %s: %zu tokens in %.3f s CPU (%.1f MB/s)\n", n / 1e6, toks[i],
               cnt, dt, n / 1e6 / dt);
        CHECK(dt < limit, "%s: %.2f s for %zu bytes", toks[i], dt, n);
        CHECK(cnt > n / 8, "%s: only %zu tokens", toks[i], cnt);
        free(ids);
        eng_tokenizer_close(t);
    }
    free(text);
}

int main(int argc, char **argv)
{
    const char *sh = getenv("CLAQ_SHARED");
    if (argc >= 3 && !strcmp(argv[1], "--encode")) {
        int bos = 0, special = 0;
        for (int i = 3; i < argc; i++) {
            bos |= !strcmp(argv[i], "--bos");
            special |= !strcmp(argv[i], "--special");
        }
        return mode_encode(argv[2], bos, special);
    }
    if (argc >= 3 && !strcmp(argv[1], "--decode")) return mode_decode(argv[2], 0);
    if (argc >= 3 && !strcmp(argv[1], "--detok")) return mode_decode(argv[2], 1);
    if (!sh || !*sh) {
        fprintf(stderr, "CLAQ_SHARED not set: skipping\n");
        return 77;
    }
    snprintf(g_shared, sizeof g_shared, "%s", sh);
    check_zoo();
    check_bin_equals_model();
    check_detok();
    check_special();
    check_malformed();
    check_speed();
    if (g_fail) {
        fprintf(stderr, "%d check(s) failed\n", g_fail);
        return 1;
    }
    printf("all tokenizer checks passed\n");
    return 0;
}
