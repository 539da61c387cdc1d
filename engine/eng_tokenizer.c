/* eng_tokenizer.c — the tokenizer core: vocab and piece hash, SentencePiece normalization,
 * BPE encoding with a heap (SentencePiece's O(n log n) algorithm, for score merges and HF merge
 * ranks alike), decoding and the UTF-8 assembler. Does not read files (eng_tok_load.c does) and
 * keeps no state outside the tokenizer, which is immutable after load: any thread may call. */
#include "eng_tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

#define SPACE_SYM "\xE2\x96\x81"   /* U+2581, SentencePiece's escaped space */
#define SPACE_SYM_LEN 3

/* ------------------------------------------------------------------------------------------ */
/* Vocab building                                                                              */
/* ------------------------------------------------------------------------------------------ */

static uint32_t hash_bytes(const char *s, size_t n)
{
    uint32_t h = 2166136261u;   /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static uint32_t hash_u64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return (uint32_t)k;
}

int eng__tok_new(eng_tokenizer **out, int kind, int n, eng_err *err)
{
    *out = NULL;
    eng_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return eng_err_set(err, ENG_E_NOMEM, "tokenizer: out of memory");
    t->kind = kind;
    t->unk_id = t->bos_id = t->eos_id = -1;
    t->add_bos = 1;
    t->escape_ws = 1;
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    int rc = eng__tok_resize(t, n, err);
    if (rc) {
        eng_tokenizer_close(t);
        return rc;
    }
    *out = t;
    return 0;
}

int eng__tok_resize(eng_tokenizer *t, int n, eng_err *err)
{
    if (n < 0 || n > ENG_TOK_MAX_VOCAB)
        return eng_err_set(err, ENG_E_FORMAT, "tokenizer: vocab size %d out of range", n);
    if (n <= t->n_vocab) return 0;
    size_t nn = (size_t)n;
    uint32_t *off = realloc(t->off, nn * sizeof *off);
    if (off) t->off = off;
    uint16_t *len = realloc(t->len, nn * sizeof *len);
    if (len) t->len = len;
    float *score = realloc(t->score, nn * sizeof *score);
    if (score) t->score = score;
    uint8_t *type = realloc(t->type, nn);
    if (type) t->type = type;
    if (!off || !len || !score || !type)
        return eng_err_set(err, ENG_E_NOMEM, "tokenizer: out of memory for %d pieces", n);
    if (t->hf_norm_added) {
        uint8_t *na = realloc(t->hf_norm_added, nn);
        if (!na) return eng_err_set(err, ENG_E_NOMEM, "tokenizer: out of memory for %d pieces", n);
        memset(na + t->n_vocab, 0, nn - (size_t)t->n_vocab);
        t->hf_norm_added = na;
    }
    for (int i = t->n_vocab; i < n; i++) {
        t->off[i] = 0;
        t->len[i] = 0;
        t->score[i] = 0.0f;
        t->type[i] = 0;
    }
    t->n_vocab = n;
    return 0;
}

int eng__tok_set(eng_tokenizer *t, int id, const char *s, size_t len, float score, int type,
                 eng_err *err)
{
    if (id < 0 || id >= t->n_vocab)
        return eng_err_set(err, ENG_E_FORMAT, "tokenizer: piece id %d out of range", id);
    if (len > ENG_TOK_MAX_PIECE)
        return eng_err_set(err, ENG_E_FORMAT, "tokenizer: piece %d is %zu bytes (max %d)", id,
                           len, ENG_TOK_MAX_PIECE);
    if (type < ENG__PT_NORMAL || type > ENG__PT_BYTE)
        return eng_err_set(err, ENG_E_FORMAT, "tokenizer: piece %d has bad type %d", id, type);
    if (t->text_len + len + 1 > t->text_cap) {
        size_t cap = t->text_cap ? t->text_cap * 2 : 4096;
        while (cap < t->text_len + len + 1) cap *= 2;
        if (cap > UINT32_MAX) return eng_err_set(err, ENG_E_FORMAT, "tokenizer: vocab too large");
        char *p = realloc(t->text, cap);
        if (!p) return eng_err_set(err, ENG_E_NOMEM, "tokenizer: out of memory");
        t->text = p;
        t->text_cap = cap;
    }
    if (len) memcpy(t->text + t->text_len, s, len);
    t->text[t->text_len + len] = '\0';
    t->off[id] = (uint32_t)t->text_len;
    t->len[id] = (uint16_t)len;
    t->score[id] = score;
    t->type[id] = (uint8_t)type;
    t->text_len += len + 1;
    return 0;
}

int eng__tok_lookup(const eng_tokenizer *t, const char *s, size_t len)
{
    if (!t->htab || len > ENG_TOK_MAX_PIECE) return -1;
    uint32_t i = hash_bytes(s, len) & t->hmask;
    for (;;) {
        int32_t v = t->htab[i];
        if (v == 0) return -1;
        int id = v - 1;
        if (t->len[id] == len && memcmp(t->text + t->off[id], s, len) == 0) return id;
        i = (i + 1) & t->hmask;
    }
}

/* "<0xHH>" -> HH, else -1. */
static int parse_byte_piece(const char *s, size_t n)
{
    if (n != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10
              : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static int is_special_type(int type)
{
    return type == ENG__PT_CONTROL || type == ENG__PT_UNKNOWN;
}

/* Whether BPE may produce piece id by merging (SentencePiece's pieces_ map; llama2.c's run.c
 * looks every piece up). */
static int mergeable(const eng_tokenizer *t, int id)
{
    int ty = t->type[id];
    if (t->kind == ENG__TOK_BIN) return 1;
    if (t->kind == ENG__TOK_HF && t->n_merges > 0) return 1;
    return ty == ENG__PT_NORMAL || ty == ENG__PT_USER || ty == ENG__PT_UNUSED;
}

static int cmp_special_len(const void *a, const void *b, void *ctx);
static size_t special_match_text(const eng_tokenizer *t, int id, char *out);

/* Whether parse_special matches id's text. */
static int literal_special(const eng_tokenizer *t, int id)
{
    int ty = t->type[id];
    if (t->len[id] == 0) return 0;
    return is_special_type(ty) || (ty == ENG__PT_USER && t->kind == ENG__TOK_HF);
}

/* Whether s[0..n) can be a BPE symbol: a piece, or one character (which may be unknown). */
static int formable(const eng_tokenizer *t, const char *s, size_t n)
{
    static const unsigned char k_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return n == 1 || k_len[(unsigned char)s[0] >> 4] == n || eng__tok_lookup(t, s, n) >= 0;
}

int eng__tok_finish(eng_tokenizer *t, eng_err *err)
{
    if (t->n_vocab <= 0) return eng_err_set(err, ENG_E_FORMAT, "tokenizer: no pieces");
    for (int i = 0; i < t->n_vocab; i++)
        if (t->type[i] == 0)
            return eng_err_set(err, ENG_E_FORMAT, "tokenizer: id %d has no piece", i);

    /* piece hash: power of two >= 2n, first id wins on duplicates */
    uint32_t cap = 16;
    while (cap < (uint32_t)t->n_vocab * 2u) cap <<= 1;
    free(t->htab);
    t->htab = calloc(cap, sizeof *t->htab);
    if (!t->htab) return eng_err_set(err, ENG_E_NOMEM, "tokenizer: out of memory (hash)");
    t->hmask = cap - 1;
    for (int id = 0; id < t->n_vocab; id++) {
        const char *s = t->text + t->off[id];
        uint32_t i = hash_bytes(s, t->len[id]) & t->hmask;
        int dup = 0;
        while (t->htab[i]) {
            int o = t->htab[i] - 1;
            if (t->len[o] == t->len[id] && memcmp(t->text + t->off[o], s, t->len[id]) == 0) {
                dup = 1;
                break;
            }
            i = (i + 1) & t->hmask;
        }
        if (!dup) t->htab[i] = id + 1;
    }

    /* byte pieces; SPM marks them, the others are recognized by their text */
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    for (int id = 0; id < t->n_vocab; id++) {
        int b = parse_byte_piece(t->text + t->off[id], t->len[id]);
        if (b < 0) continue;
        if (t->kind != ENG__TOK_SPM && t->type[id] == ENG__PT_NORMAL) t->type[id] = ENG__PT_BYTE;
        if (t->type[id] == ENG__PT_BYTE && t->byte_id[b] < 0) t->byte_id[b] = id;
    }
    if (t->byte_level)   /* every byte is a piece of its own (stored raw) */
        for (int b = 0; b < 256; b++) {
            char c = (char)b;
            t->byte_id[b] = eng__tok_lookup(t, &c, 1);
        }
    for (int id = 0; id < t->n_vocab; id++)   /* SPM: BYTE-typed pieces must parse */
        if (t->type[id] == ENG__PT_BYTE && parse_byte_piece(t->text + t->off[id], t->len[id]) < 0)
            return eng_err_set(err, ENG_E_FORMAT, "tokenizer: byte piece %d is not <0xHH>", id);

    /* specials for parse_special, longest first (SPM matches its user-defined pieces in
     * ordinary encoding already) */
    int ns = 0;
    t->max_user_len = 0;
    for (int id = 0; id < t->n_vocab; id++) {
        if (literal_special(t, id)) ns++;
        if (t->type[id] == ENG__PT_USER && t->len[id] > t->max_user_len)
            t->max_user_len = t->len[id];
    }
    free(t->special);
    free(t->smatch);
    free(t->smatch_off);
    free(t->smatch_len);
    t->special = NULL;
    t->smatch = NULL;
    t->smatch_off = t->smatch_len = NULL;
    t->n_special = 0;
    memset(t->special_first, 0, sizeof t->special_first);
    if (ns) {
        t->special = malloc((size_t)ns * sizeof *t->special);
        t->smatch_off = malloc((size_t)ns * sizeof *t->smatch_off);
        t->smatch_len = malloc((size_t)ns * sizeof *t->smatch_len);
        if (!t->special || !t->smatch_off || !t->smatch_len)
            return eng_err_set(err, ENG_E_NOMEM, "tokenizer: out of memory");
        size_t total = 0;
        for (int id = 0; id < t->n_vocab; id++)
            if (literal_special(t, id)) {
                t->special[t->n_special++] = id;
                total += special_match_text(t, id, NULL);
            }
        if (total > UINT32_MAX)
            return eng_err_set(err, ENG_E_FORMAT, "tokenizer: special tokens too long");
        t->smatch = malloc(total);
        if (!t->smatch) return eng_err_set(err, ENG_E_NOMEM, "tokenizer: out of memory");
        qsort_r(t->special, (size_t)ns, sizeof *t->special, cmp_special_len, t);
        size_t at = 0;
        for (int i = 0; i < ns; i++) {
            t->smatch_off[i] = (uint32_t)at;
            t->smatch_len[i] = (uint32_t)special_match_text(t, t->special[i], t->smatch + at);
            t->special_first[(unsigned char)t->smatch[at]] = 1;
            at += t->smatch_len[i];
        }
    }

    /* barriers: an ASCII byte that no mergeable multi-byte piece contains */
    memset(t->barrier, 0, sizeof t->barrier);
    for (int b = 0; b < 128; b++) t->barrier[b] = 1;
    for (int id = 0; id < t->n_vocab; id++) {
        if (t->len[id] < 2 || !mergeable(t, id)) continue;
        const char *p = t->text + t->off[id];
        /* a merge joins two symbols, each a piece or a single character: a piece that splits
         * into no such pair is never formed (llama2.c's "\n<s>\n"), and need not block */
        int split = t->type[id] == ENG__PT_USER;   /* matched whole, without merging */
        for (int k = 1; k < t->len[id] && !split; k++)
            split = formable(t, p, (size_t)k) && formable(t, p + k, (size_t)(t->len[id] - k));
        if (!split) continue;
        const unsigned char *s = (const unsigned char *)p;
        for (int k = 0; k < t->len[id]; k++) t->barrier[s[k]] = 0;
    }
    for (int b = 0; b < 128; b++) {
        char c = (char)b;
        /* HF fuses unknown characters before merging: a barrier must be a known character */
        if (t->kind == ENG__TOK_HF && eng__tok_lookup(t, &c, 1) < 0) t->barrier[b] = 0;
    }
    for (int b = 128; b < 256; b++) t->barrier[b] = 0;
    /* HF ignore_merges looks whole words up: chunks must then be whole words */
    if (t->kind == ENG__TOK_HF && t->hf_ignore_merges) memset(t->barrier, 0, sizeof t->barrier);
    /* byte-level text is cut by its pre-tokenizer instead */
    if (t->byte_level) memset(t->barrier, 0, sizeof t->barrier);
    /* SentencePiece's resegmentation of UNUSED pieces remembers the last pair queued for a
     * piece across the whole text, in heap order: only whole-text merging reproduces it */
    t->has_unused = 0;
    for (int id = 0; id < t->n_vocab; id++) t->has_unused |= t->type[id] == ENG__PT_UNUSED;
    if (t->has_unused) memset(t->barrier, 0, sizeof t->barrier);
    return 0;
}

/* The text parse_special looks for to find special id: the piece itself, except that HF
 * matches an added token marked "normalized" after running its normalizer over it, as it runs
 * over the text (tinystories-656k's Prepend + Replace make "<unk>" "\u2581<unk>": "a<unk>" is
 * plain text, "a <unk>" is not). Writes the text to out when out is not NULL; returns its
 * length. */
static size_t special_match_text(const eng_tokenizer *t, int id, char *out)
{
    const char *p = t->text + t->off[id];
    const size_t n = t->len[id];
    if (!t->hf_norm_added || !t->hf_norm_added[id]) {
        if (out) memcpy(out, p, n);
        return n;
    }
    size_t k = 0;
    if (t->hf_norm_prepend) {
        if (out) memcpy(out, SPACE_SYM, SPACE_SYM_LEN);
        k += SPACE_SYM_LEN;
    }
    for (size_t i = 0; i < n; i++) {
        if (t->hf_norm_ws && p[i] == ' ') {
            if (out) memcpy(out + k, SPACE_SYM, SPACE_SYM_LEN);
            k += SPACE_SYM_LEN;
        } else {
            if (out) out[k] = p[i];
            k++;
        }
    }
    return k;
}

static int cmp_special_len(const void *a, const void *b, void *ctx)
{
    const eng_tokenizer *t = ctx;
    int ia = *(const int32_t *)a, ib = *(const int32_t *)b;
    size_t la = special_match_text(t, ia, NULL), lb = special_match_text(t, ib, NULL);
    if (la != lb) return la > lb ? -1 : 1;
    return ia < ib ? -1 : ia > ib;
}

int eng__tok_merges_reserve(eng_tokenizer *t, int n, eng_err *err)
{
    if (n < 0 || n > ENG_TOK_MAX_VOCAB * 2)
        return eng_err_set(err, ENG_E_FORMAT, "tokenizer: %d merges out of range", n);
    uint32_t cap = 16;
    while (cap < (uint32_t)n * 2u) cap <<= 1;
    t->mkey = calloc(cap, sizeof *t->mkey);
    t->mrank = calloc(cap, sizeof *t->mrank);
    t->mnew = calloc(cap, sizeof *t->mnew);
    if (!t->mkey || !t->mrank || !t->mnew)
        return eng_err_set(err, ENG_E_NOMEM, "tokenizer: out of memory (merges)");
    t->mmask = cap - 1;
    return 0;
}

int eng__tok_add_merge(eng_tokenizer *t, int a, int b, int merged, int rank, eng_err *err)
{
    if (!t->mkey) return eng_err_set(err, ENG_E_INVAL, "tokenizer: merges not reserved");
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    uint32_t i = hash_u64(key) & t->mmask;
    size_t probes = 0;
    while (t->mkey[i] && t->mkey[i] != key) {
        i = (i + 1) & t->mmask;
        if (++probes > t->mmask) return eng_err_set(err, ENG_E_FULL, "tokenizer: merge table full");
    }
    if (!t->mkey[i]) t->n_merges++;
    t->mkey[i] = key;
    t->mrank[i] = rank;
    t->mnew[i] = merged;
    return 0;
}

static int merge_lookup(const eng_tokenizer *t, int a, int b, int *rank)
{
    if (a < 0 || b < 0) return -1;
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    uint32_t i = hash_u64(key) & t->mmask;
    while (t->mkey[i]) {
        if (t->mkey[i] == key) {
            *rank = t->mrank[i];
            return t->mnew[i];
        }
        i = (i + 1) & t->mmask;
    }
    return -1;
}

void eng_tokenizer_close(eng_tokenizer *t)
{
    if (!t) return;
    free(t->text);
    free(t->off);
    free(t->len);
    free(t->score);
    free(t->type);
    free(t->htab);
    free(t->trie);
    free(t->norm_blob);
    free(t->mkey);
    free(t->mrank);
    free(t->mnew);
    free(t->special);
    free(t->smatch);
    free(t->smatch_off);
    free(t->smatch_len);
    free(t->hf_norm_added);
    free(t);
}

/* ------------------------------------------------------------------------------------------ */
/* Queries                                                                                     */
/* ------------------------------------------------------------------------------------------ */

int eng_tokenizer_vocab_size(const eng_tokenizer *t) { return t ? t->n_vocab : 0; }
int eng_tokenizer_bos(const eng_tokenizer *t) { return t ? t->bos_id : -1; }
int eng_tokenizer_eos(const eng_tokenizer *t) { return t ? t->eos_id : -1; }

int eng_tokenizer_find(const eng_tokenizer *t, const char *piece)
{
    if (!t || !piece) return -1;
    return eng__tok_lookup(t, piece, strlen(piece));
}

const char *eng_tokenizer_piece(const eng_tokenizer *t, int id)
{
    if (!t || id < 0 || id >= t->n_vocab) return NULL;
    return t->text + t->off[id];
}

int eng_tokenizer_is_special(const eng_tokenizer *t, int id)
{
    if (!t || id < 0 || id >= t->n_vocab) return 0;
    return is_special_type(t->type[id]) || id == t->bos_id || id == t->eos_id;
}

int eng__tok_byte_value(const eng_tokenizer *t, int id)
{
    if (id < 0 || id >= t->n_vocab || t->type[id] != ENG__PT_BYTE) return -1;
    return parse_byte_piece(t->text + t->off[id], t->len[id]);
}

/* ------------------------------------------------------------------------------------------ */
/* UTF-8                                                                                       */
/* ------------------------------------------------------------------------------------------ */

/* SentencePiece's DecodeUTF8 on p[0..avail): 1 = valid character of *len bytes, 0 = invalid
 * (*len = 1), -1 = a proper prefix of a character that more bytes might complete. */
static int utf8_at(const unsigned char *p, size_t avail, size_t *len)
{
    unsigned c = p[0];
    size_t need;
    uint32_t cp, min;
    *len = 1;
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) { need = 2; cp = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { need = 3; cp = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { need = 4; cp = c & 0x07; min = 0x10000; }
    else return 0;
    size_t have = avail < need ? avail : need;
    for (size_t k = 1; k < have; k++) {
        if ((p[k] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (p[k] & 0x3F);
    }
    if (avail < need) return -1;
    if (cp < min || (cp >= 0xD800 && cp < 0xE000) || cp > 0x10FFFF) return 0;
    *len = need;
    return 1;
}

/* The same under WHATWG's decoder: the second byte's range depends on the first (which rules
 * out overlongs, surrogates and > U+10FFFF as early as possible) and an invalid sequence
 * consumes its longest valid prefix (*len = 1 .. 3). */
static int utf8_at_whatwg(const unsigned char *p, size_t avail, size_t *len)
{
    unsigned c = p[0], lo = 0x80, hi = 0xBF;
    size_t need;
    *len = 1;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    for (size_t k = 1; k < need; k++) {
        if (k >= avail) {
            *len = avail;   /* at the end of the text the whole valid prefix is one U+FFFD */
            return -1;
        }
        unsigned b = p[k];
        if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) {
            *len = k;
            return 0;
        }
    }
    *len = need;
    return 1;
}

typedef struct obuf {
    char *p;        /* borrowed: caller's buffer, may be NULL */
    size_t cap;     /* bytes p can take */
    size_t n;       /* bytes produced (may exceed cap) */
} obuf;

static void ob_put(obuf *o, const void *s, size_t n)
{
    if (o->p && o->n < o->cap) {
        size_t k = o->cap - o->n < n ? o->cap - o->n : n;
        memcpy(o->p + o->n, s, k);
    }
    o->n += n;
}

static const char k_fffd[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

size_t eng__utf8_feed(unsigned char *pending, int *n_pending, const unsigned char *in, size_t n,
                      int final, int whatwg, char *out, size_t cap)
{
    int (*at)(const unsigned char *, size_t, size_t *) = whatwg ? utf8_at_whatwg : utf8_at;
    obuf o = {out, cap, 0};
    size_t np = (size_t)*n_pending, j = 0, len;
    if (np > 0) {
        /* characters that start in the pending bytes: look at them with up to 4 new bytes */
        unsigned char tmp[8];
        memcpy(tmp, pending, np);
        size_t take = n < 4 ? n : 4;
        if (take) memcpy(tmp + np, in, take);
        size_t tl = np + take, pos = 0;
        while (pos < np) {
            int r = at(tmp + pos, tl - pos, &len);
            if (r < 0 && !final) {      /* still incomplete: everything is pending now */
                *n_pending = (int)(tl - pos);
                memmove(pending, tmp + pos, tl - pos);
                return o.n;
            }
            if (r > 0) ob_put(&o, tmp + pos, len);
            else ob_put(&o, k_fffd, 3);
            pos += len;
        }
        j = pos - np;
        *n_pending = 0;
    }
    while (j < n) {
        int r = at(in + j, n - j, &len);
        if (r < 0 && !final) {
            memcpy(pending, in + j, n - j);
            *n_pending = (int)(n - j);
            return o.n;
        }
        if (r > 0) ob_put(&o, in + j, len);
        else ob_put(&o, k_fffd, 3);
        j += len;
    }
    return o.n;
}

/* ------------------------------------------------------------------------------------------ */
/* Growable byte buffer and the encoder's output                                               */
/* ------------------------------------------------------------------------------------------ */

typedef struct gbuf {
    char *p;        /* owned */
    size_t n, cap;
} gbuf;

static int gb_put(gbuf *b, const void *s, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

typedef struct emitter {
    int32_t *ids;   /* borrowed: caller's array */
    size_t cap;
    size_t n;       /* ids produced (may exceed cap) */
    int prev_unk;   /* SPM: last emitted id came from an unknown piece (runs collapse) */
} emitter;

static void emit(emitter *e, int id)
{
    if (e->ids && e->n < e->cap) e->ids[e->n] = id;
    e->n++;
}

/* ------------------------------------------------------------------------------------------ */
/* Normalization                                                                               */
/* ------------------------------------------------------------------------------------------ */

/* Longest match of the precompiled charsmap at s[0..n): replacement string and its length,
 * input bytes consumed in *used (0 when none). Every index is bounds-checked: the trie comes
 * from the file. */
static const char *charsmap_match(const eng_tokenizer *t, const unsigned char *s, size_t n,
                                  size_t *used, size_t *rlen)
{
    *used = 0;
    if (!t->trie || t->n_trie == 0) return NULL;
    const uint32_t *a = t->trie;
    size_t pos = 0;
    uint32_t unit = a[0];
    pos ^= (size_t)((unit >> 10) << ((unit & (1u << 9)) >> 6));
    const char *best = NULL;
    for (size_t i = 0; i < n; i++) {
        pos ^= s[i];
        if (pos >= t->n_trie) break;
        unit = a[pos];
        if ((unit & ((1u << 31) | 0xFF)) != s[i]) break;
        pos ^= (size_t)((unit >> 10) << ((unit & (1u << 9)) >> 6));
        if (pos >= t->n_trie) break;
        if ((unit >> 8) & 1) {
            uint32_t v = a[pos] & 0x7FFFFFFFu;
            if (v >= t->n_norm) break;
            const char *r = t->norm_blob + v;
            const char *z = memchr(r, '\0', t->n_norm - v);
            if (!z) break;
            best = r;
            *rlen = (size_t)(z - r);
            *used = i + 1;
        }
    }
    return best;
}

/* Longest user-defined piece at s[0..n), its length or 0. */
static size_t user_match(const eng_tokenizer *t, const char *s, size_t n)
{
    size_t m = (size_t)t->max_user_len < n ? (size_t)t->max_user_len : n;
    for (size_t l = m; l > 0; l--) {
        int id = eng__tok_lookup(t, s, l);
        if (id >= 0 && t->type[id] == ENG__PT_USER) return l;
    }
    return 0;
}

/* SentencePiece's NormalizePrefix: the normalized text of the next unit of s and the bytes it
 * consumes. */
static const char *norm_prefix(const eng_tokenizer *t, const char *s, size_t n, size_t *used,
                               size_t *rlen)
{
    if (t->max_user_len) {
        size_t l = user_match(t, s, n);
        if (l) {
            *used = *rlen = l;
            return s;
        }
    }
    const char *r = charsmap_match(t, (const unsigned char *)s, n, used, rlen);
    if (r) return r;
    size_t len;
    if (utf8_at((const unsigned char *)s, n, &len) <= 0) {
        *used = 1;
        *rlen = 3;
        return k_fffd;
    }
    *used = *rlen = len;
    return s;
}

static int put_escaped(const eng_tokenizer *t, gbuf *b, const char *s, size_t n)
{
    if (!t->escape_ws) return gb_put(b, s, n);
    size_t i = 0;
    while (i < n) {
        size_t k = i;
        while (k < n && s[k] != ' ') k++;
        if (k > i && gb_put(b, s + i, k - i)) return -1;
        if (k < n && gb_put(b, SPACE_SYM, SPACE_SYM_LEN)) return -1;
        i = k + 1;
    }
    return 0;
}

/* SentencePiece Normalizer::Normalize (add_dummy_prefix, remove_extra_whitespaces,
 * escape_whitespaces, charsmap; whitespace-as-suffix is rejected at load). */
static int normalize_spm(const eng_tokenizer *t, const char *s, size_t n, gbuf *b)
{
    size_t used, rlen;
    b->n = 0;
    if (t->remove_extra_ws) {
        while (n > 0) {
            const char *r = norm_prefix(t, s, n, &used, &rlen);
            if (!(rlen == 1 && r[0] == ' ')) break;
            s += used;
            n -= used;
        }
    }
    if (n == 0) return 0;
    if (t->add_dummy_prefix && put_escaped(t, b, " ", 1)) return -1;
    int prev_space = t->remove_extra_ws;
    while (n > 0) {
        const char *r = norm_prefix(t, s, n, &used, &rlen);
        while (prev_space && rlen > 0 && r[0] == ' ') r++, rlen--;
        if (rlen > 0) {
            if (put_escaped(t, b, r, rlen)) return -1;
            prev_space = r[rlen - 1] == ' ';
        }
        s += used;
        n -= used;
        if (!t->remove_extra_ws) prev_space = 0;
    }
    if (t->remove_extra_ws) {
        const char *sp = t->escape_ws ? SPACE_SYM : " ";
        size_t sl = t->escape_ws ? SPACE_SYM_LEN : 1;
        while (b->n >= sl && memcmp(b->p + b->n - sl, sp, sl) == 0) b->n -= sl;
    }
    return 0;
}

/* llama2.c: a " " dummy prefix for non-empty text, nothing else. HF: Prepend + Replace. */
static int normalize_simple(const eng_tokenizer *t, const char *s, size_t n, gbuf *b)
{
    b->n = 0;
    if (n == 0) return 0;
    int prepend = t->add_dummy_prefix;
    if (t->kind == ENG__TOK_HF) {
        prepend = t->hf_prepend == ENG__PREPEND_ALWAYS ||
                  (t->hf_prepend == ENG__PREPEND_FIRST &&
                   !(s[0] == ' ' || (n >= 3 && memcmp(s, SPACE_SYM, 3) == 0)));
    }
    if (prepend && (t->kind == ENG__TOK_HF ? gb_put(b, SPACE_SYM, SPACE_SYM_LEN)
                                           : put_escaped(t, b, " ", 1)))
        return -1;
    return put_escaped(t, b, s, n);
}

/* ------------------------------------------------------------------------------------------ */
/* BPE                                                                                         */
/* ------------------------------------------------------------------------------------------ */

typedef struct sym {
    int32_t start, len;     /* bytes of the normalized chunk */
    int32_t prev, next;     /* neighbours, -1 at the ends */
    int32_t id;             /* piece id, -1 when the text is not a piece */
    int32_t freeze;         /* never merged (user-defined, byte fallback, unknown) */
} sym;

typedef struct pairc {
    float score;            /* higher first */
    int32_t left, right;    /* symbol indices */
    int32_t size;           /* merged byte length, to detect stale entries */
    int32_t id;             /* merged piece id */
} pairc;

typedef struct work {
    sym *s;                 /* owned */
    size_t ns, caps;
    pairc *h;               /* owned: binary max-heap */
    size_t nh, caph;
    int32_t *rev_llen;      /* owned [n_vocab] when the model has UNUSED pieces: left length of
                             * the last queued pair that makes the piece (SPM's rev_merge) */
    uint32_t *rev_stamp;    /* owned [n_vocab]: chunk stamp that makes rev_llen[id] valid */
    uint32_t stamp;
} work;

static int better(const pairc *a, const pairc *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int heap_push(work *w, pairc p)
{
    if (w->nh == w->caph) {
        size_t cap = w->caph ? w->caph * 2 : 256;
        pairc *h = realloc(w->h, cap * sizeof *h);
        if (!h) return -1;
        w->h = h;
        w->caph = cap;
    }
    size_t i = w->nh++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!better(&p, &w->h[up])) break;
        w->h[i] = w->h[up];
        i = up;
    }
    w->h[i] = p;
    return 0;
}

static pairc heap_pop(work *w)
{
    pairc top = w->h[0], last = w->h[--w->nh];
    size_t i = 0, n = w->nh;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && better(&w->h[c + 1], &w->h[c])) c++;
        if (!better(&w->h[c], &last)) break;
        w->h[i] = w->h[c];
        i = c;
    }
    if (n) w->h[i] = last;
    return top;
}

static int sym_push(work *w, int32_t start, int32_t len, int32_t id, int freeze)
{
    if (w->ns == w->caps) {
        size_t cap = w->caps ? w->caps * 2 : 256;
        sym *s = realloc(w->s, cap * sizeof *s);
        if (!s) return -1;
        w->s = s;
        w->caps = cap;
    }
    sym *y = &w->s[w->ns];
    y->start = start;
    y->len = len;
    y->prev = (int32_t)w->ns - 1;
    y->next = -1;
    if (w->ns > 0) w->s[w->ns - 1].next = (int32_t)w->ns;
    y->id = id;
    y->freeze = freeze;
    w->ns++;
    return 0;
}

/* Queues the merge of symbols l and r when the result is a piece. */
static int try_pair(const eng_tokenizer *t, work *w, const char *txt, int32_t l, int32_t r)
{
    if (l < 0 || r < 0) return 0;
    const sym *a = &w->s[l], *b = &w->s[r];
    if (a->freeze || b->freeze) return 0;
    pairc p = {0.0f, l, r, a->len + b->len, -1};
    if (t->kind == ENG__TOK_HF && t->n_merges == 0 && !t->hf_scored) return 0;
    if (t->kind == ENG__TOK_HF && t->n_merges > 0) {
        int rank;
        p.id = merge_lookup(t, a->id, b->id, &rank);
        if (p.id < 0) return 0;
        p.score = -(float)rank;
    } else {
        p.id = eng__tok_lookup(t, txt + a->start, (size_t)(a->len + b->len));
        if (p.id < 0 || !mergeable(t, p.id)) return 0;
        p.score = t->score[p.id];
        if (t->kind == ENG__TOK_BIN && !(p.score > -1e10f)) return 0;   /* run.c's floor */
        if (w->rev_llen && t->type[p.id] == ENG__PT_UNUSED) {
            w->rev_llen[p.id] = a->len;
            w->rev_stamp[p.id] = w->stamp;
        }
    }
    return heap_push(w, p);
}

/* Merges the symbols of w (a chunk of txt) to completion. */
static int bpe_run(const eng_tokenizer *t, work *w, const char *txt)
{
    w->nh = 0;
    for (size_t i = 1; i < w->ns; i++)
        if (try_pair(t, w, txt, (int32_t)i - 1, (int32_t)i)) return -1;
    while (w->nh > 0) {
        pairc p = heap_pop(w);
        sym *a = &w->s[p.left], *b = &w->s[p.right];
        if (a->len == 0 || b->len == 0 || a->len + b->len != p.size || a->next != p.right)
            continue;
        a->len += b->len;
        a->id = p.id;
        a->next = b->next;
        if (b->next >= 0) w->s[b->next].prev = p.left;
        b->len = 0;
        if (try_pair(t, w, txt, a->prev, p.left)) return -1;
        if (try_pair(t, w, txt, p.left, a->next)) return -1;
    }
    return 0;
}

/* Emits the bytes of an unknown SPM/BIN piece: byte pieces, or one <unk> per run. */
static void emit_unknown(const eng_tokenizer *t, emitter *e, const char *s, size_t n)
{
    if (t->byte_fallback) {
        for (size_t k = 0; k < n; k++) {
            int id = t->byte_id[(unsigned char)s[k]];
            emit(e, id >= 0 ? id : t->unk_id);
        }
        e->prev_unk = 1;
        return;
    }
    if (!e->prev_unk && t->unk_id >= 0) emit(e, t->unk_id);
    e->prev_unk = 1;
}

/* Emits one final SPM symbol s[0..n) with piece id (-1 unknown). An UNUSED piece is split
 * back into the two pieces that made it, recursively (SentencePiece's resegment). */
static void emit_spm(const eng_tokenizer *t, const work *w, emitter *e, const char *s, size_t n,
                     int id, int depth)
{
    if (id >= 0 && t->type[id] == ENG__PT_UNUSED && w->rev_llen && depth < ENG_TOK_MAX_PIECE &&
        w->rev_stamp[id] == w->stamp) {
        size_t l = (size_t)w->rev_llen[id];
        if (l > 0 && l < n) {
            emit_spm(t, w, e, s, l, eng__tok_lookup(t, s, l), depth + 1);
            emit_spm(t, w, e, s + l, n - l, eng__tok_lookup(t, s + l, n - l), depth + 1);
            return;
        }
    }
    if (id < 0) {
        emit_unknown(t, e, s, n);
        return;
    }
    emit(e, id);
    e->prev_unk = 0;
}

/* Splits chunk c[0..n) into initial symbols, merges, emits. */
static int encode_chunk(const eng_tokenizer *t, work *w, const char *c, size_t n, emitter *e)
{
    w->ns = 0;
    size_t i = 0;
    int prev_unk_sym = 0;       /* HF fuse_unk: last symbol is an <unk> run */
    while (i < n) {
        size_t l;
        if (t->kind == ENG__TOK_BIN) {
            /* run.c: a non-continuation byte plus up to 3 continuation bytes */
            l = 1;
            while (i + l < n && ((unsigned char)c[i + l] & 0xC0) == 0x80 && l < 4) l++;
            int id = eng__tok_lookup(t, c + i, l);
            if (id >= 0) {
                if (sym_push(w, (int32_t)i, (int32_t)l, id, 0)) return -1;
            } else {
                for (size_t k = 0; k < l; k++) {
                    int b = t->byte_id[(unsigned char)c[i + k]];
                    if (sym_push(w, (int32_t)(i + k), 1, b >= 0 ? b : t->unk_id, 1)) return -1;
                }
            }
            i += l;
            continue;
        }
        if (t->kind == ENG__TOK_SPM) {
            l = t->max_user_len ? user_match(t, c + i, n - i) : 0;
            int freeze = l > 0;
            if (!l) {
                static const unsigned char k_len[16] = {1, 1, 1, 1, 1, 1, 1, 1,
                                                        1, 1, 1, 1, 2, 2, 3, 4};
                l = k_len[(unsigned char)c[i] >> 4];
                if (l > n - i) l = n - i;
            }
            if (sym_push(w, (int32_t)i, (int32_t)l, eng__tok_lookup(t, c + i, l), freeze))
                return -1;
            i += l;
            continue;
        }
        if (t->byte_level) {   /* HF byte-level: every byte is a symbol */
            int id = t->byte_id[(unsigned char)c[i]];
            if (sym_push(w, (int32_t)i, 1, id, id < 0)) return -1;
            i++;
            continue;
        }
        /* HF: one character (an invalid byte counts as one) */
        if (utf8_at((const unsigned char *)c + i, n - i, &l) <= 0) l = 1;
        int id = eng__tok_lookup(t, c + i, l);
        int score_mode = t->n_merges == 0;
        if (id >= 0) {
            if (sym_push(w, (int32_t)i, (int32_t)l, id, 0)) return -1;
            prev_unk_sym = 0;
        } else {
            int all = t->byte_fallback;
            for (size_t k = 0; all && k < l; k++) all = t->byte_id[(unsigned char)c[i + k]] >= 0;
            if (all) {
                for (size_t k = 0; k < l; k++)
                    if (sym_push(w, (int32_t)(i + k), 1, t->byte_id[(unsigned char)c[i + k]],
                                 score_mode))
                        return -1;
                prev_unk_sym = 0;
            } else if (t->unk_id >= 0) {
                if (prev_unk_sym && t->hf_fuse_unk) {
                    w->s[w->ns - 1].len += (int32_t)l;
                } else {
                    if (sym_push(w, (int32_t)i, (int32_t)l, t->unk_id, score_mode)) return -1;
                }
                prev_unk_sym = 1;
            }
        }
        i += l;
    }
    if (w->ns == 0) return 0;

    if (t->kind == ENG__TOK_HF && t->hf_ignore_merges) {
        int id = eng__tok_lookup(t, c, n);
        if (id >= 0) {
            emit(e, id);
            return 0;
        }
    }
    if (t->has_unused && t->kind == ENG__TOK_SPM && !w->rev_llen) {
        w->rev_llen = calloc((size_t)t->n_vocab, sizeof *w->rev_llen);
        w->rev_stamp = calloc((size_t)t->n_vocab, sizeof *w->rev_stamp);
        if (!w->rev_llen || !w->rev_stamp) return -1;
    }
    w->stamp++;
    if (bpe_run(t, w, c)) return -1;
    for (int32_t k = 0; k >= 0; k = w->s[k].next) {
        const sym *y = &w->s[k];
        if (t->kind == ENG__TOK_SPM) {
            emit_spm(t, w, e, c + y->start, (size_t)y->len, y->id, 0);
            continue;
        }
        if (y->id >= 0) emit(e, y->id);
        e->prev_unk = 0;
    }
    return 0;
}

/* Byte-level text: the Split pre-tokenizer's pre-tokens, each merged on its own. */
static int encode_pretokens(const eng_tokenizer *t, work *w, const char *s, size_t n, emitter *e)
{
    for (size_t i = 0; i < n;) {
        size_t l = eng__pretok_next(t->split_kind, t->split_digits, s + i, n - i);
        if (encode_chunk(t, w, s + i, l, e)) return -1;
        i += l;
    }
    return 0;
}

/* Encodes normalized text in chunks cut at barrier bytes (and before U+2581 for HF Metaspace
 * splitting); each barrier byte is a chunk of its own. */
static int encode_normalized(const eng_tokenizer *t, work *w, const char *s, size_t n,
                             emitter *e)
{
    if (t->byte_level) {
        if (t->bl_prefix_space && n > 0 && s[0] != ' ') {   /* ByteLevel add_prefix_space */
            char *p = malloc(n + 1);
            if (!p) return -1;
            p[0] = ' ';
            memcpy(p + 1, s, n);
            int rc = encode_pretokens(t, w, p, n + 1, e);
            free(p);
            return rc;
        }
        return encode_pretokens(t, w, s, n, e);
    }
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int cut_before = 0, own = 0;
        if (t->barrier[c]) own = 1;
        else if (t->hf_metaspace_split && i > start && i + 3 <= n &&
                 memcmp(s + i, SPACE_SYM, SPACE_SYM_LEN) == 0)
            cut_before = 1;
        if (own || cut_before) {
            if (i > start && encode_chunk(t, w, s + start, i - start, e)) return -1;
            start = i;
            if (own) {
                if (encode_chunk(t, w, s + i, 1, e)) return -1;
                start = i + 1;
            }
        }
    }
    if (n > start && encode_chunk(t, w, s + start, n - start, e)) return -1;
    return 0;
}

/* Next special token in s[from..n): its position (n when none), id and length. */
static size_t find_special(const eng_tokenizer *t, const char *s, size_t n, size_t from, int *id,
                           size_t *len)
{
    for (size_t i = from; i < n; i++) {
        if (!t->special_first[(unsigned char)s[i]]) continue;
        for (int k = 0; k < t->n_special; k++) {
            int sid = t->special[k];
            size_t l = t->smatch_len[k];
            if (l <= n - i && memcmp(s + i, t->smatch + t->smatch_off[k], l) == 0) {
                *id = sid;
                *len = l;
                return i;
            }
        }
    }
    return n;
}

/* Whether raw bytes [a, b) overlap a plain range (plain: n ascending [begin, end) pairs). */
static int overlaps_plain(const size_t *plain, size_t n, size_t a, size_t b)
{
    size_t lo = 0, hi = n;   /* first range whose end is past a */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (plain[2 * mid + 1] <= a) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && plain[2 * lo] < b;
}

/* The next special token at or after from in s[0..n) whose raw bytes overlap no plain range
 * (map: raw offset of each byte of s; NULL when s is the raw text itself). */
static size_t find_special_outside(const eng_tokenizer *t, const char *s, size_t n, size_t from,
                                   const size_t *map, const size_t *plain, size_t n_plain,
                                   int *id, size_t *len)
{
    for (;;) {
        size_t at = find_special(t, s, n, from, id, len);
        if (at >= n || !n_plain) return at;
        const size_t a = map ? map[at] : at;
        const size_t b = map ? map[at + *len - 1] + 1 : at + *len;
        if (!overlaps_plain(plain, n_plain, a, b)) return at;
        from = at + 1;
    }
}

static int encode_impl(const eng_tokenizer *t, const char *text, size_t len, int add_bos,
                       int parse_special, const size_t *plain, size_t n_plain, int32_t *ids,
                       size_t cap, size_t *n_ids, eng_err *err);

int eng_tokenizer_encode(const eng_tokenizer *t, const char *text, size_t len, int add_bos,
                         int parse_special, int32_t *ids, size_t cap, size_t *n_ids, eng_err *err)
{
    return encode_impl(t, text, len, add_bos, parse_special, NULL, 0, ids, cap, n_ids, err);
}

int eng_tokenizer_encode_alloc(const eng_tokenizer *t, const char *text, size_t len, int add_bos,
                               int parse_special, int32_t **ids, size_t *n_ids, eng_err *err)
{
    if (ids) *ids = NULL;
    if (n_ids) *n_ids = 0;
    if (!ids || !n_ids) return eng_err_set(err, ENG_E_INVAL, "tokenizer encode: bad arguments");
    /* one id per byte plus BOS covers nearly every text; the rare expanding one (NFKC, byte
     * fallback) costs a second pass with the exact count */
    size_t cap = len + 8, got = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (cap > SIZE_MAX / sizeof(int32_t))
            return eng_err_set(err, ENG_E_NOMEM, "tokenizer encode: %zu ids do not fit", cap);
        int32_t *buf = malloc(cap * sizeof *buf);
        if (!buf) return eng_err_set(err, ENG_E_NOMEM, "tokenizer encode: out of memory");
        int rc = eng_tokenizer_encode(t, text, len, add_bos, parse_special, buf, cap, &got, err);
        if (rc == 0 && got <= cap) {
            *ids = buf;
            *n_ids = got;
            return 0;
        }
        free(buf);
        if (rc) return rc;
        cap = got;
    }
    /* encoding is deterministic: the second pass had room for the count the first reported */
    return eng_err_set(err, ENG_E_RANGE, "tokenizer encode: id count changed between passes");
}

int eng_tokenizer_encode_plain(const eng_tokenizer *t, const char *text, size_t len, int add_bos,
                               const size_t *plain, size_t n_plain, int32_t *ids, size_t cap,
                               size_t *n_ids, eng_err *err)
{
    if (n_plain && !plain) return eng_err_set(err, ENG_E_INVAL, "tokenizer encode: bad arguments");
    for (size_t k = 0; k < n_plain; k++)
        if (plain[2 * k] > plain[2 * k + 1] || (k && plain[2 * k] < plain[2 * k - 1]))
            return eng_err_set(err, ENG_E_INVAL, "tokenizer encode: plain ranges out of order");
    return encode_impl(t, text, len, add_bos, 1, plain, n_plain, ids, cap, n_ids, err);
}

static int encode_impl(const eng_tokenizer *t, const char *text, size_t len, int add_bos,
                       int parse_special, const size_t *plain, size_t n_plain, int32_t *ids,
                       size_t cap, size_t *n_ids, eng_err *err)
{
    if (n_ids) *n_ids = 0;
    if (!t || !n_ids || (!text && len > 0) || (!ids && cap > 0))
        return eng_err_set(err, ENG_E_INVAL, "tokenizer encode: bad arguments");
    if (len > (size_t)INT32_MAX / 4)
        return eng_err_set(err, ENG_E_RANGE, "tokenizer encode: text of %zu bytes too long", len);
    emitter e = {ids, cap, 0, 0};
    work w = {0};
    gbuf nb = {0};
    size_t *map = NULL;
    int rc = 0;
    if (add_bos && t->add_bos && t->bos_id >= 0) emit(&e, t->bos_id);
    int split = parse_special && t->n_special > 0;

    if (t->kind == ENG__TOK_HF) {
        /* HF normalizes the whole text, then splits on (normalized) added tokens */
        if (normalize_simple(t, text ? text : "", len, &nb)) goto oom;
        if (nb.n > INT32_MAX) goto too_long;
        if (split && n_plain) {   /* raw offset of each normalized byte, for the plain ranges */
            map = malloc((nb.n ? nb.n : 1) * sizeof *map);
            if (!map) goto oom;
            size_t esc = len, k = 0;   /* normalized = [prepended "▁"] + text, ' ' escaped */
            if (t->escape_ws)
                for (size_t i = 0; i < len; i++) esc += text[i] == ' ' ? SPACE_SYM_LEN - 1 : 0;
            for (; k < nb.n - esc; k++) map[k] = 0;
            for (size_t i = 0; i < len; i++) {
                const size_t w = t->escape_ws && text[i] == ' ' ? SPACE_SYM_LEN : 1;
                for (size_t j = 0; j < w && k < nb.n; j++) map[k++] = i;
            }
        }
        size_t pos = 0;
        while (pos < nb.n) {
            int sid = -1;
            size_t sl = 0;
            size_t at = split ? find_special_outside(t, nb.p, nb.n, pos, map, plain, n_plain,
                                                     &sid, &sl)
                              : nb.n;
            if (at > pos && encode_normalized(t, &w, nb.p + pos, at - pos, &e)) goto oom;
            if (at >= nb.n) break;
            emit(&e, sid);
            e.prev_unk = 0;
            pos = at + sl;
        }
    } else {
        /* SentencePiece / llama.cpp: each text segment between special tokens is encoded on
         * its own, dummy prefix included */
        size_t pos = 0;
        while (pos < len) {
            int sid = -1;
            size_t sl = 0;
            size_t at = split ? find_special_outside(t, text, len, pos, NULL, plain, n_plain,
                                                     &sid, &sl)
                              : len;
            if (at > pos) {
                int r = t->kind == ENG__TOK_SPM ? normalize_spm(t, text + pos, at - pos, &nb)
                                                : normalize_simple(t, text + pos, at - pos, &nb);
                if (r) goto oom;
                if (nb.n > INT32_MAX) goto too_long;
                if (encode_normalized(t, &w, nb.p, nb.n, &e)) goto oom;
            }
            if (at >= len) break;
            emit(&e, sid);
            e.prev_unk = 0;
            pos = at + sl;
        }
    }
    *n_ids = e.n;
    goto done;
too_long:
    rc = eng_err_set(err, ENG_E_RANGE, "tokenizer encode: normalized text over 2 GiB");
    goto done;
oom:
    rc = eng_err_set(err, ENG_E_NOMEM, "tokenizer encode: out of memory (%zu bytes of text)", len);
done:
    free(w.s);
    free(w.h);
    free(w.rev_llen);
    free(w.rev_stamp);
    free(nb.p);
    free(map);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Decoding                                                                                    */
/* ------------------------------------------------------------------------------------------ */

size_t eng__tok_piece_text(const eng_tokenizer *t, int id, int strip_space, int *stripped,
                           char *out, size_t cap)
{
    obuf o = {out, cap, 0};
    const char *s = t->text + t->off[id];
    size_t n = t->len[id], i = 0;
    if (stripped) *stripped = 0;
    if (strip_space) {
        if (t->escape_ws && n >= SPACE_SYM_LEN && memcmp(s, SPACE_SYM, SPACE_SYM_LEN) == 0)
            i = SPACE_SYM_LEN;
        else if (!t->escape_ws && n >= 1 && s[0] == ' ')
            i = 1;
        if (i && stripped) *stripped = 1;
    }
    while (i < n) {
        if (t->escape_ws && n - i >= SPACE_SYM_LEN &&
            memcmp(s + i, SPACE_SYM, SPACE_SYM_LEN) == 0) {
            ob_put(&o, " ", 1);
            i += SPACE_SYM_LEN;
        } else {
            ob_put(&o, s + i, 1);
            i++;
        }
    }
    return o.n;
}

size_t eng_tokenizer_token_bytes(const eng_tokenizer *t, int prev, int id, char *out, size_t cap)
{
    if (!t || id < 0 || id >= t->n_vocab || eng_tokenizer_is_special(t, id)) return 0;
    int b = eng__tok_byte_value(t, id);
    if (b >= 0) {
        if (out && cap > 0) out[0] = (char)b;
        return 1;
    }
    int strip = t->bos_id >= 0 && prev == t->bos_id && !t->byte_level;
    return eng__tok_piece_text(t, id, strip, NULL, out, cap);
}

size_t eng_tokenizer_decode(const eng_tokenizer *t, const int32_t *ids, size_t n,
                            int skip_leading_space, char *out, size_t cap)
{
    if (out && cap > 0) out[0] = '\0';
    if (!t || (!ids && n > 0)) return 0;
    obuf o = {out, cap > 0 ? cap - 1 : 0, 0};
    unsigned char pend[8];
    int np = 0;
    char piece[ENG_TOK_MAX_PIECE * 3 + 16], asm_out[ENG_TOK_MAX_PIECE * 3 + 32];
    int hf_strip = skip_leading_space && t->kind == ENG__TOK_HF && !t->byte_level;
    const int bl = t->byte_level;   /* bytes join across all pieces; WHATWG repair */
    int spm_strip = skip_leading_space && t->kind != ENG__TOK_HF &&
                    (t->add_dummy_prefix || t->remove_extra_ws);
    int is_bos_ws = 1, bos_ws_seen = 0;
    for (size_t k = 0; k <= n; k++) {
        size_t pl = 0;
        int final = k == n, id = final ? -1 : ids[k];
        if (!final && (id < 0 || id >= t->n_vocab)) continue;
        int b = final ? -1 : eng__tok_byte_value(t, id);
        if (b >= 0) {
            piece[0] = (char)b;
            pl = 1;
        } else {
            /* SentencePiece validates each run of byte pieces on its own */
            size_t m = bl && !final ? 0
                                    : eng__utf8_feed(pend, &np, NULL, 0, 1, bl, asm_out,
                                                     sizeof asm_out);
            if (hf_strip && m > 0 && o.n == 0 && asm_out[0] == ' ') ob_put(&o, asm_out + 1, m - 1);
            else ob_put(&o, asm_out, m);
            if (m > 0) hf_strip = 0;
            if (final) break;
            if (bos_ws_seen || o.n > 0) is_bos_ws = 0;
            if (eng_tokenizer_is_special(t, id)) {
                bos_ws_seen = 0;
                continue;
            }
            int stripped = 0;
            pl = eng__tok_piece_text(t, id, spm_strip && is_bos_ws, &stripped, piece,
                                     sizeof piece);
            bos_ws_seen = stripped && !t->remove_extra_ws;
        }
        size_t m = eng__utf8_feed(pend, &np, (const unsigned char *)piece, pl, 0, bl, asm_out,
                                  sizeof asm_out);
        size_t skip = 0;
        if (hf_strip && m > 0) {
            if (o.n == 0 && asm_out[0] == ' ') skip = 1;
            hf_strip = 0;
        }
        ob_put(&o, asm_out + skip, m - skip);
    }
    if (out && cap > 0) out[o.n < cap - 1 ? o.n : cap - 1] = '\0';
    return o.n;
}
