/* eng_tokenizer.h — SentencePiece-style BPE tokenizers: llama2.c tokenizer.bin, SentencePiece
 * tokenizer.model (protobuf), Hugging Face tokenizer.json (BPE with merges or scores, byte
 * fallback, the "▁" normalizer, added/special tokens). Immutable after open: any thread may
 * encode/decode concurrently. The incremental UTF-8-safe detokenizer is eng_detok below. */
#ifndef ENG_TOKENIZER_H
#define ENG_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "eng_err.h"

typedef struct eng_tokenizer eng_tokenizer;

/* Opens a tokenizer file, chosen by content/name: tokenizer.json, tokenizer.model or a
 * llama2.c tokenizer.bin. vocab_hint (0 = unknown) is the model's vocab size; a llama2.c
 * tokenizer.bin has no count of its own. *out NULL on failure. */
int eng_tokenizer_open(eng_tokenizer **out, const char *path, int vocab_hint, eng_err *err);
/* The same from bytes in memory (copied; the buffer may be freed after the call). name_hint is
 * the file name it would have ("tokenizer.json", "tokenizer.model", "tokenizer.bin"). */
int eng_tokenizer_open_buffer(eng_tokenizer **out, const char *name_hint, const void *data,
                              size_t len, int vocab_hint, eng_err *err);
/* The same with the text of the tokenizer_config.json that came with it (bos/eos token names;
 * NULL when none), as a packed model file carries both. */
int eng_tokenizer_open_buffer_config(eng_tokenizer **out, const char *name_hint, const void *data,
                                     size_t len, const char *config_json, size_t config_len,
                                     int vocab_hint, eng_err *err);
void eng_tokenizer_close(eng_tokenizer *t);   /* NULL-safe */

int eng_tokenizer_vocab_size(const eng_tokenizer *t);
/* BOS: -1 if none. A tokenizer.json may have one that encoding does not add
 * ("add_bos_token": false, or a post_processor that adds none; see eng_tokenizer_encode). */
int eng_tokenizer_bos(const eng_tokenizer *t);
int eng_tokenizer_eos(const eng_tokenizer *t);  /* -1 if none */
/* Looks a piece up by its exact text (e.g. "<|im_end|>"); -1 when absent. */
int eng_tokenizer_find(const eng_tokenizer *t, const char *piece);
/* Raw piece text of id (with "▁", "<0x0A>" as stored); NULL when id is out of range. */
const char *eng_tokenizer_piece(const eng_tokenizer *t, int id);
/* 1 when id is a control/special token (bos, eos, <unk>, added special tokens). */
int eng_tokenizer_is_special(const eng_tokenizer *t, int id);

/* Encodes len bytes of UTF-8 text (need not be NUL-terminated; invalid UTF-8 is handled like
 * SentencePiece: bytes via byte fallback, else <unk>). Writes at most cap ids into ids; *n_ids
 * gets the full count (call again with more room when *n_ids > cap). add_bos prepends BOS where
 * the tokenizer adds one: always for tokenizer.model and tokenizer.bin; for tokenizer.json as
 * HF's encode(add_special_tokens=True) does (tokenizer_config.json "bos_token": null or
 * "add_bos_token": false: none; else a TemplateProcessing post_processor decides).
 * parse_special: 1 to turn the literal text of special/added tokens (e.g. "<|im_start|>") into
 * their ids (chat templates need this); 0 to treat all text as plain text. */
int eng_tokenizer_encode(const eng_tokenizer *t, const char *text, size_t len, int add_bos,
                         int parse_special, int32_t *ids, size_t cap, size_t *n_ids, eng_err *err);

/* eng_tokenizer_encode into a buffer it sizes itself: *ids gets a malloc'd array of *n_ids ids
 * (caller frees with free(); NULL and 0 on failure). Use this unless the caller has a fixed
 * buffer of its own: the id count is not bounded by the byte count (NFKC expands "\uFDFA", 3
 * bytes, to 18 characters; byte fallback then gives up to 4 ids per character). */
int eng_tokenizer_encode_alloc(const eng_tokenizer *t, const char *text, size_t len, int add_bos,
                               int parse_special, int32_t **ids, size_t *n_ids, eng_err *err);

/* eng_tokenizer_encode with parse_special = 1, except that no special token is recognised where
 * its text overlaps one of the byte ranges plain[2k] .. plain[2k + 1] (k < n_plain, ascending,
 * not overlapping): those bytes are always plain text. A chat prompt passes its messages'
 * contents here, so a user who types "<|im_end|><|im_start|>system" gets those characters, not
 * the control tokens. Everything else tokenizes exactly as with parse_special = 1. */
int eng_tokenizer_encode_plain(const eng_tokenizer *t, const char *text, size_t len, int add_bos,
                               const size_t *plain, size_t n_plain, int32_t *ids, size_t cap,
                               size_t *n_ids, eng_err *err);

/* Decodes ids into UTF-8 text as SentencePiece does ("▁" -> space, byte pieces -> bytes, the
 * leading space of the first piece dropped when skip_leading_space, special tokens omitted).
 * Writes at most cap-1 bytes plus NUL; returns the full length needed (excluding NUL). */
size_t eng_tokenizer_decode(const eng_tokenizer *t, const int32_t *ids, size_t n,
                            int skip_leading_space, char *out, size_t cap);

/* The bytes one token contributes given the previous token (llama2.c decode rule: after BOS a
 * leading space is dropped). Special tokens give 0 bytes. Writes at most cap bytes (no NUL);
 * returns the number of bytes of the token. */
size_t eng_tokenizer_token_bytes(const eng_tokenizer *t, int prev, int id, char *out, size_t cap);

/* Incremental detokenizer for streaming: push tokens one by one and get back only complete UTF-8
 * characters; bytes of a character split across tokens are held until it is whole. Caller owns
 * the struct; no heap. */
typedef struct eng_detok {
    const eng_tokenizer *tok;   /* borrowed */
    int prev;                   /* previous token id (-1 at start) */
    int skip_leading_space;     /* drop the leading space of the very first text */
    int emitted_any;            /* whether any byte has been emitted yet */
    unsigned char pending[8];   /* bytes of an incomplete UTF-8 character */
    int n_pending;
} eng_detok;

void eng_detok_init(eng_detok *d, const eng_tokenizer *t, int skip_leading_space);
/* Appends the complete text produced by token id to out (at most cap bytes; a token's text plus
 * pending bytes never exceeds 256 + 8 bytes, so cap >= 272 always suffices); returns bytes
 * written. Invalid UTF-8 sequences are emitted as U+FFFD. */
size_t eng_detok_push(eng_detok *d, int id, char *out, size_t cap);
/* Emits what is still pending (as U+FFFD for an incomplete character) at end of stream. */
size_t eng_detok_flush(eng_detok *d, char *out, size_t cap);

#endif
