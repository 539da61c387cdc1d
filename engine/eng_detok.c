/* eng_detok.c — the streaming detokenizer: turns tokens into text one at a time and emits only
 * whole UTF-8 characters (a character split across byte-fallback tokens waits in the struct).
 * With skip_leading_space the stream equals eng_tokenizer_decode(..., 1) of all pushed ids;
 * without it each token gives eng_tokenizer_token_bytes (llama2.c's rule after BOS). One
 * eng_detok per stream, used by one thread at a time; no heap. */
#include "eng_tokenizer_impl.h"

#include <string.h>

void eng_detok_init(eng_detok *d, const eng_tokenizer *t, int skip_leading_space)
{
    if (!d) return;
    memset(d, 0, sizeof *d);
    d->tok = t;
    d->prev = -1;
    d->skip_leading_space = skip_leading_space != 0;
}

size_t eng_detok_push(eng_detok *d, int id, char *out, size_t cap)
{
    if (!d || !d->tok) return 0;
    const eng_tokenizer *t = d->tok;
    int prev = d->prev;
    d->prev = id;
    if (id < 0 || id >= t->n_vocab) return 0;
    if (d->n_pending < 0 || d->n_pending > 3) d->n_pending = 0;   /* caller scribbled on it */

    char raw[ENG_TOK_MAX_PIECE + 8];
    size_t nr = 0;
    int hf_strip = 0;
    int b = eng__tok_byte_value(t, id);
    if (!d->skip_leading_space) {
        nr = eng_tokenizer_token_bytes(t, prev, id, raw, sizeof raw);
    } else if (t->byte_level) {   /* HF ByteLevel decoder: bytes as they are, no strip */
        if (!eng_tokenizer_is_special(t, id))
            nr = eng__tok_piece_text(t, id, 0, NULL, raw, sizeof raw);
    } else if (t->kind == ENG__TOK_HF) {
        /* HF's Strip decoder: the first byte of the whole text when it is a space */
        hf_strip = !d->emitted_any;
        if (b >= 0) raw[0] = (char)b, nr = 1;
        else if (!eng_tokenizer_is_special(t, id))
            nr = eng__tok_piece_text(t, id, 0, NULL, raw, sizeof raw);
    } else if (b >= 0) {
        /* SentencePiece: bytes make the text non-empty, which ends the leading-space phase */
        raw[0] = (char)b;
        nr = 1;
        d->emitted_any = 1;
    } else if (!eng_tokenizer_is_special(t, id)) {
        int strip = !d->emitted_any && (t->add_dummy_prefix || t->remove_extra_ws), stripped = 0;
        nr = eng__tok_piece_text(t, id, strip, &stripped, raw, sizeof raw);
        if (nr > 0 || (stripped && !t->remove_extra_ws)) d->emitted_any = 1;
    }
    if (nr > sizeof raw) nr = sizeof raw;   /* cannot happen: pieces are <= 256 bytes */

    /* a byte run ends at a non-byte piece: SentencePiece validates each run on its own */
    size_t w = 0;
    if (b < 0 && d->n_pending > 0 && !t->byte_level)
        w = eng__utf8_feed(d->pending, &d->n_pending, NULL, 0, 1, 0, out, cap);
    if (w > cap) w = cap;
    size_t m = eng__utf8_feed(d->pending, &d->n_pending, (const unsigned char *)raw, nr, 0,
                              t->byte_level, out ? out + w : NULL, out ? cap - w : 0);
    if (m > cap - w) m = cap - w;
    if (hf_strip && w + m > 0) {
        if (out && out[0] == ' ') {
            memmove(out, out + 1, w + m - 1);
            m--;
        }
        d->emitted_any = 1;
    }
    return w + m;
}

size_t eng_detok_flush(eng_detok *d, char *out, size_t cap)
{
    if (!d || d->n_pending <= 0 || d->n_pending > 3) {
        if (d) d->n_pending = 0;
        return 0;
    }
    size_t w = eng__utf8_feed(d->pending, &d->n_pending, NULL, 0, 1,
                              d->tok ? d->tok->byte_level : 0, out, cap);
    d->n_pending = 0;
    if (w > cap) w = cap;
    if (d->skip_leading_space && d->tok && d->tok->kind == ENG__TOK_HF && !d->tok->byte_level &&
        !d->emitted_any) {
        if (w > 0 && out && out[0] == ' ') memmove(out, out + 1, --w);
        d->emitted_any = 1;
    }
    return w;
}
