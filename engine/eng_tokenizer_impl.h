/* eng_tokenizer_impl.h — the eng_tokenizer struct and the internals shared by eng_tokenizer.c
 * (vocab, hash, normalization, BPE, decode), eng_tok_load.c (the three file loaders) and
 * eng_detok.c. Not a public interface: only those files include it. No state outside the
 * struct; a finished tokenizer is immutable, so any thread may read it. */
#ifndef ENG_TOKENIZER_IMPL_H
#define ENG_TOKENIZER_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "eng_tokenizer.h"

#define ENG_TOK_MAX_PIECE 256        /* longest piece we accept (bytes); the detok relies on it */
#define ENG_TOK_MAX_VOCAB (1 << 22)  /* 4M pieces: far above any real vocab, stops lying files */

/* Which file the tokenizer came from; decides normalization and the merge rule. */
enum {
    ENG__TOK_BIN = 1,   /* llama2.c tokenizer.bin: run.c encode(), pieces hold real spaces */
    ENG__TOK_SPM = 2,   /* SentencePiece BPE model: normalizer + score merges */
    ENG__TOK_HF = 3,    /* HF tokenizer.json BPE: merge ranks (or scores when no merges) */
};

/* Piece types: SentencePiece's enum values, used for all three formats. */
enum {
    ENG__PT_NORMAL = 1,
    ENG__PT_UNKNOWN = 2,
    ENG__PT_CONTROL = 3,
    ENG__PT_USER = 4,     /* user-defined (SPM) or non-special added token (HF) */
    ENG__PT_UNUSED = 5,
    ENG__PT_BYTE = 6,
};

/* HF prepend: NEVER; ALWAYS = the Prepend normalizer (unconditional on non-empty text);
 * FIRST = Metaspace (only when the text does not already start with a space). */
enum { ENG__PREPEND_NEVER = 0, ENG__PREPEND_ALWAYS = 1, ENG__PREPEND_FIRST = 2 };

struct eng_tokenizer {
    int kind;                 /* ENG__TOK_* */
    int n_vocab;              /* number of ids */
    char *text;               /* owned: every piece, NUL-terminated, back to back */
    size_t text_len, text_cap;
    uint32_t *off;            /* owned [n_vocab]: offset of piece id in text */
    uint16_t *len;            /* owned [n_vocab]: byte length of piece id */
    float *score;             /* owned [n_vocab] */
    uint8_t *type;            /* owned [n_vocab]: ENG__PT_*, 0 = id not set yet (loader) */
    int32_t *htab;            /* owned [hmask + 1]: open addressing, piece text -> id + 1 */
    uint32_t hmask;
    int32_t byte_id[256];     /* id of piece <0xHH>, -1 when absent (any id: vocabularies put
                                 byte pieces past 32767 too) */
    int unk_id, bos_id, eos_id;   /* -1 when none */
    int add_bos;              /* encode's add_bos prepends bos_id (0: a tokenizer.json whose
                                 config or post_processor adds none, as HF) */

    /* normalization (SPM semantics; BIN uses dummy prefix " " only; HF sets the same flags) */
    int add_dummy_prefix;     /* prepend the space symbol to non-empty text */
    int remove_extra_ws;      /* SPM: strip leading/trailing spaces, squeeze runs */
    int escape_ws;            /* ' ' -> U+2581 */
    int byte_fallback;        /* unknown characters become <0xHH> pieces */
    uint32_t *trie;           /* owned [n_trie]: SPM precompiled charsmap (Darts units), or NULL */
    size_t n_trie;
    char *norm_blob;          /* owned [n_norm]: NUL-terminated replacement strings */
    size_t n_norm;
    int max_user_len;         /* longest user-defined piece (SPM), 0 when none */
    int has_unused;           /* some piece is UNUSED (SPM resegments those) */

    /* HF BPE */
    uint64_t *mkey;           /* owned [mmask + 1]: (left id << 32 | right id) + 1, 0 = empty */
    int32_t *mrank;           /* owned [mmask + 1]: merge rank */
    int32_t *mnew;            /* owned [mmask + 1]: id of the merged piece */
    uint32_t mmask;
    int n_merges;             /* 0: merge by piece score instead (SPM rule) */
    int hf_fuse_unk;          /* consecutive unknown characters -> one <unk> */
    int hf_ignore_merges;     /* a word found whole in the vocab is emitted as is */
    int hf_metaspace_split;   /* pre-tokenizer splits before every U+2581 */
    int hf_prepend;           /* ENG__PREPEND_* (normalizer Prepend / Metaspace) */
    int hf_norm_prepend;      /* the normalizer itself prepends U+2581 (Prepend) */
    int hf_norm_ws;           /* the normalizer itself turns ' ' into U+2581 (Replace) */
    uint8_t *hf_norm_added;   /* owned [n_vocab] or NULL: 1 for an added token marked
                               * "normalized", which HF matches as the normalizer's output */
    int hf_scored;            /* vocab came as [piece, score] pairs: merge by score */

    /* HF byte-level BPE (GPT-2, LLaMA-3, Qwen2): pieces are stored as the raw bytes they stand
     * for (the loader undoes the byte <-> Unicode mapping), byte_id[b] is the piece of the single
     * byte b, text is cut into pre-tokens by the Split pattern before BPE, and decoding
     * concatenates bytes and repairs invalid UTF-8 as WHATWG / Rust's from_utf8_lossy do */
    int byte_level;
    int split_kind;           /* ENG__SPLIT_*: the pre-tokenizer's regex */
    int split_digits;         /* ENG__SPLIT_CL100K: longest digit run (3 LLaMA-3, 1 Qwen2) */
    int bl_prefix_space;      /* ByteLevel add_prefix_space: a segment gets a leading ' ' */

    /* tokens matched literally when parse_special (control, unknown, added, user-defined) */
    int32_t *special;         /* owned [n_special], longest match text first */
    int n_special;
    char *smatch;             /* owned: the text each special is matched as, back to back (the
                               * piece, or for hf_norm_added the normalized piece) */
    uint32_t *smatch_off;     /* owned [n_special]: offset of special[k]'s match text */
    uint32_t *smatch_len;     /* owned [n_special]: its length */
    uint8_t special_first[256];   /* first bytes of the match texts */
    uint8_t barrier[256];     /* ASCII bytes no mergeable piece of >= 2 bytes contains: BPE never
                               * merges across them, so text is processed in chunks cut there */
};

/* ---- building (loaders) ---- */
/* Allocates an empty tokenizer with n ids, all unset; *out NULL on failure. */
int eng__tok_new(eng_tokenizer **out, int kind, int n, eng_err *err);
/* Grows the id space to n (new ids unset). */
int eng__tok_resize(eng_tokenizer *t, int n, eng_err *err);
/* Sets id's text (len bytes, need not be NUL-terminated), score and type. */
int eng__tok_set(eng_tokenizer *t, int id, const char *s, size_t len, float score, int type,
                 eng_err *err);
/* Checks that every id is set, builds the hash, byte table, special list and barriers. */
int eng__tok_finish(eng_tokenizer *t, eng_err *err);
/* Adds merge (a, b) -> merged with the given rank (later duplicates win, as in HF). */
int eng__tok_add_merge(eng_tokenizer *t, int a, int b, int merged, int rank, eng_err *err);
/* Sizes the merge table for n merges; call once before eng__tok_add_merge. */
int eng__tok_merges_reserve(eng_tokenizer *t, int n, eng_err *err);
/* Looks len bytes up; -1 when absent. */
int eng__tok_lookup(const eng_tokenizer *t, const char *s, size_t len);

/* ---- byte-level BPE (eng_tok_pretok.c) ---- */
enum { ENG__SPLIT_NONE = 0, ENG__SPLIT_CL100K = 1, ENG__SPLIT_GPT2 = 2 };
/* The ENG__SPLIT_* kind of a Split regex (exact text of a known pattern), -1 when unknown;
 * *max_digits gets the pattern's digit-run limit. */
int eng__pretok_pattern(const char *regex, int *max_digits);
/* Length in bytes of the pre-token that starts at s[0] (n > 0; always >= 1). */
size_t eng__pretok_next(int kind, int max_digits, const char *s, size_t n);
/* The GPT-2 mapped form of byte b (1 or 2 bytes of UTF-8) into out; returns its length. */
size_t eng__bytelevel_map(unsigned char b, char out[2]);
/* Undoes the mapping of s[0..n) into out (at most cap bytes): returns the byte count, or
 * (size_t)-1 when s holds a character that is not one of the 256 mapped ones. */
size_t eng__bytelevel_unmap(const char *s, size_t n, char *out, size_t cap);

/* ---- loaders (eng_tok_load.c) ---- */
int eng__tok_load_bin(eng_tokenizer **out, const unsigned char *d, size_t n, int vocab_hint,
                      eng_err *err);
int eng__tok_load_spm(eng_tokenizer **out, const unsigned char *d, size_t n, eng_err *err);
/* config_json: the sibling tokenizer_config.json (bos/eos names), or NULL. */
int eng__tok_load_hf(eng_tokenizer **out, const char *d, size_t n, const char *config_json,
                     size_t config_len, eng_err *err);

/* ---- decoding helpers (eng_tokenizer.c), shared with eng_detok.c ---- */
/* Byte value of a byte piece, -1 for any other id. */
int eng__tok_byte_value(const eng_tokenizer *t, int id);
/* Text of a non-byte, non-special piece with the space symbol turned into ' '. When
 * strip_space, one leading space is dropped and *stripped set. Writes at most cap bytes,
 * returns the full length. */
size_t eng__tok_piece_text(const eng_tokenizer *t, int id, int strip_space, int *stripped,
                           char *out, size_t cap);

/* UTF-8 assembly. SentencePiece's rules (DecodeUTF8: overlong, surrogates and > U+10FFFF are
 * invalid; an invalid byte becomes U+FFFD and consumes one byte), or with whatwg the WHATWG /
 * Unicode "maximal subpart" rule of HF's ByteLevel decoder (Rust's from_utf8_lossy): a truncated
 * but so far valid sequence becomes one U+FFFD. Consumes in[0..n): complete characters are
 * written to out (at most cap bytes; returns bytes written, or what they would need when out is
 * NULL); an incomplete tail that may still become valid is left in pending and n_pending (at
 * most 3 bytes) unless final. pending holds bytes carried in. */
size_t eng__utf8_feed(unsigned char *pending, int *n_pending, const unsigned char *in, size_t n,
                      int final, int whatwg, char *out, size_t cap);

#endif
