/* eng_tok_pretok.c — the byte-level BPE pieces of the tokenizer: GPT-2's byte <-> Unicode
 * mapping (vocabularies store bytes as printable characters: ' ' is "Ġ", '\n' is "Ċ") and the
 * Split pre-tokenizers of tokenizer.json, as hand-written matchers of the regexes the common
 * vocabularies ship (LLaMA-3, Qwen2, GPT-2). Each matcher returns what the regex's leftmost match
 * at the current position is under Oniguruma's rules (HF tokenizers' engine): \s is
 * \p{White_Space}, (?i:) folds U+017F (long s) to 's'. Pure functions; any thread. */
#include <string.h>

#include "eng_tokenizer_impl.h"
#include "eng_unicode.h"

/* ---- GPT-2 byte <-> Unicode ---------------------------------------------------------------- */

/* Bytes that map to themselves: '!'..'~', U+00A1..U+00AC, U+00AE..U+00FF. The other 68
 * (0..32, 127..160, 173) map to U+0100 + their rank among them. */
static int self_mapped(unsigned b)
{
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
}

size_t eng__bytelevel_map(unsigned char b, char out[2])
{
    unsigned cp;
    if (self_mapped(b)) {
        cp = b;
    } else {
        unsigned rank = b <= 32 ? b : b <= 160 ? 33 + (b - 127) : 67;
        cp = 256 + rank;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* The byte a mapped code point stands for, -1 when cp is not one of the 256. */
static int unmap_cp(uint32_t cp)
{
    if (cp < 256) return self_mapped(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    unsigned r = cp - 256;
    return r < 33 ? (int)r : r < 67 ? (int)(127 + (r - 33)) : 173;
}

/* Decodes one well-formed UTF-8 character of s[0..n); returns its length, 0 when malformed. */
static size_t utf8_char(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t need;
    uint32_t v, min;
    if ((c & 0xE0) == 0xC0) { need = 2; v = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { need = 3; v = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { need = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if (n < need) return 0;
    for (size_t k = 1; k < need; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        v = v << 6 | (s[k] & 0x3F);
    }
    if (v < min || (v >= 0xD800 && v < 0xE000) || v > 0x10FFFF) return 0;
    *cp = v;
    return need;
}

size_t eng__bytelevel_unmap(const char *s, size_t n, char *out, size_t cap)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0;
    while (i < n) {
        uint32_t cp;
        size_t l = utf8_char(p + i, n - i, &cp);
        int b = l ? unmap_cp(cp) : -1;
        if (b < 0 || o >= cap) return (size_t)-1;
        out[o++] = (char)b;
        i += l;
    }
    return o;
}

/* ---- Split patterns -------------------------------------------------------------------------- */

/* The exact regexes (as in tokenizer.json after JSON unescaping) and what they are. */
static const struct {
    const char *regex;
    int kind, max_digits;
} k_patterns[] = {
    /* LLaMA-3 / 3.1 / 3.2 (tiktoken cl100k-style) */
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
     "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", ENG__SPLIT_CL100K, 3},
    /* Qwen2: the same with single digits */
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
     "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", ENG__SPLIT_CL100K, 1},
    /* GPT-2 (also what ByteLevel's use_regex applies) */
    {"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
     ENG__SPLIT_GPT2, 0},
};

int eng__pretok_pattern(const char *regex, int *max_digits)
{
    for (size_t i = 0; i < sizeof k_patterns / sizeof *k_patterns; i++)
        if (strcmp(regex, k_patterns[i].regex) == 0) {
            *max_digits = k_patterns[i].max_digits;
            return k_patterns[i].kind;
        }
    return -1;
}

/* One character of the text being split: its class and length. A malformed byte is a
 * character of its own, of no class (a symbol, as [^\s\p{L}\p{N}] takes it). */
typedef struct ch {
    uint32_t cp;    /* 0xFFFFFFFF for a malformed byte */
    unsigned cls;   /* ENG__UNI_* */
    size_t len;
} ch;

static ch char_at(const unsigned char *s, size_t n, size_t i)
{
    ch c = {0xFFFFFFFFu, 0, 1};
    if (i >= n) {
        c.len = 0;
        return c;
    }
    if (s[i] < 0x80) {
        c.cp = s[i];
        c.cls = eng__uni_ascii[s[i]];
        return c;
    }
    size_t l = utf8_char(s + i, n - i, &c.cp);
    if (l) {
        c.len = l;
        c.cls = eng__uni_class(c.cp);
    } else {
        c.cp = 0xFFFFFFFFu;
    }
    return c;
}

#define IS_L(c) ((c).len && ((c).cls & ENG__UNI_L))
#define IS_N(c) ((c).len && ((c).cls & ENG__UNI_N))
#define IS_WS(c) ((c).len && ((c).cls & ENG__UNI_WS))
#define IS_SYM(c) ((c).len && !((c).cls & (ENG__UNI_L | ENG__UNI_N | ENG__UNI_WS)))
#define IS_CRLF(c) ((c).len && ((c).cp == '\r' || (c).cp == '\n'))

/* Length of the run of characters from i that satisfy pred (a class mask; sym = no class). */
static size_t run(const unsigned char *s, size_t n, size_t i, unsigned mask, int sym)
{
    size_t j = i;
    for (;;) {
        ch c = char_at(s, n, j);
        if (!c.len || (sym ? !IS_SYM(c) : !(c.cls & mask))) break;
        j += c.len;
    }
    return j - i;
}

/* 's 't 're 've 'm 'll 'd at s[0] (s[0] == '\''); fold: case-insensitive. 0 when none. */
static size_t contraction(const unsigned char *s, size_t n, int fold)
{
    ch a = char_at(s, n, 1);
    if (!a.len) return 0;
    uint32_t x = a.cp;
    if (fold) {
        if (x >= 'A' && x <= 'Z') x += 32;
        if (x == 0x17F) x = 's';   /* LATIN SMALL LETTER LONG S case-folds to 's' */
    }
    if (x == 's' || x == 't' || x == 'm' || x == 'd') return 1 + a.len;
    if (x != 'r' && x != 'v' && x != 'l') return 0;
    ch b = char_at(s, n, 1 + a.len);
    uint32_t y = b.len ? b.cp : 0;
    if (fold && y >= 'A' && y <= 'Z') y += 32;
    if (y == (x == 'l' ? 'l' : 'e')) return 1 + a.len + b.len;
    return 0;
}

/* \s+(?!\S)|\s+ at a white-space character: the run, less its last character when a
 * non-space follows and the run has more than one. */
static size_t spaces(const unsigned char *s, size_t n)
{
    size_t e = 0, last = 0;
    for (;;) {
        ch c = char_at(s, n, e);
        if (!IS_WS(c)) break;
        last = e;
        e += c.len;
    }
    if (e == n || last == 0) return e;
    return last;
}

/* LLaMA-3 / Qwen2:
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 * \s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t next_cl100k(const unsigned char *s, size_t n, int max_digits)
{
    ch c0 = char_at(s, n, 0);
    if (c0.cp == '\'') {
        size_t l = contraction(s, n, 1);
        if (l) return l;
    }
    if (IS_L(c0)) return run(s, n, 0, ENG__UNI_L, 0);
    if (!IS_CRLF(c0) && !IS_N(c0)) {
        ch c1 = char_at(s, n, c0.len);
        if (IS_L(c1)) return c0.len + run(s, n, c0.len, ENG__UNI_L, 0);
    }
    if (IS_N(c0)) {
        size_t j = 0;
        for (int k = 0; k < max_digits; k++) {
            ch c = char_at(s, n, j);
            if (!IS_N(c)) break;
            j += c.len;
        }
        return j;
    }
    size_t p = 0;
    if (c0.cp == ' ' && IS_SYM(char_at(s, n, 1))) p = 1;
    if (IS_SYM(char_at(s, n, p))) {
        size_t j = p + run(s, n, p, 0, 1);
        while (j < n && (s[j] == '\r' || s[j] == '\n')) j++;
        return j;
    }
    /* white space: \s*[\r\n]+ ends at the last \r or \n of the run */
    size_t e = 0, crlf = 0;
    int have = 0;
    for (;;) {
        ch c = char_at(s, n, e);
        if (!IS_WS(c)) break;
        if (IS_CRLF(c)) crlf = e, have = 1;
        e += c.len;
    }
    if (have) return crlf + 1;
    return spaces(s, n);
}

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t next_gpt2(const unsigned char *s, size_t n)
{
    ch c0 = char_at(s, n, 0);
    if (c0.cp == '\'') {
        size_t l = contraction(s, n, 0);
        if (l) return l;
    }
    size_t p = 0;
    ch c = c0;
    if (c0.cp == ' ') {
        ch c1 = char_at(s, n, 1);
        if (IS_L(c1) || IS_N(c1) || IS_SYM(c1)) p = 1, c = c1;
    }
    if (IS_L(c)) return p + run(s, n, p, ENG__UNI_L, 0);
    if (IS_N(c)) return p + run(s, n, p, ENG__UNI_N, 0);
    if (IS_SYM(c)) return p + run(s, n, p, 0, 1);
    return spaces(s, n);
}

size_t eng__pretok_next(int kind, int max_digits, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t l;
    if (n == 0) return 0;
    switch (kind) {
    case ENG__SPLIT_CL100K: l = next_cl100k(p, n, max_digits); break;
    case ENG__SPLIT_GPT2: l = next_gpt2(p, n); break;
    default: l = n; break;
    }
    return l ? l : 1;   /* every character matches some alternative; never stall */
}
