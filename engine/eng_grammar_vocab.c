/* eng_grammar_vocab.c — the per-tokenizer index constrained decoding needs: each token's bytes,
 * a byte trie over them (so a mask walks shared prefixes once), and which tokens stay inside a
 * JSON string, leave it, or are invalid there, for each string phase. Built once per tokenizer
 * (about 10 ms at 32k tokens), immutable afterwards: any thread may read it. Does not know any
 * grammar (eng_grammar_match.c combines the two). */
#include "eng_grammar_impl.h"

#include <stdlib.h>
#include <string.h>

#define TOK_BYTES_MAX 256   /* longer tokens are never allowed (none exist in practice) */

void eng_gvocab_free(eng_gvocab *v)
{
    if (!v)
        return;
    free(v->off);
    free(v->bytes);
    free(v->t_first);
    free(v->t_next);
    free(v->t_byte);
    free(v->t_tok);
    free(v->tok_next);
    for (int p = 0; p < ENG_G_STR_PHASES; p++) {
        free(v->str_in[p]);
        free(v->str_out[p]);
    }
    free(v);
}

int eng_gvocab_eos(const eng_gvocab *v)
{
    return v ? v->eos : -1;
}

/* The child of node under byte b, created when absent; -1 when out of memory. */
static int32_t trie_child(eng_gvocab *v, int *cap, int32_t node, unsigned char b)
{
    for (int32_t c = v->t_first[node]; c >= 0; c = v->t_next[c]) {
        if (v->t_byte[c] == b)
            return c;
    }
    if (v->n_trie == *cap) {
        int nc = *cap * 2;
        int32_t *f = realloc(v->t_first, (size_t)nc * sizeof *f);
        if (f) v->t_first = f;
        int32_t *n = realloc(v->t_next, (size_t)nc * sizeof *n);
        if (n) v->t_next = n;
        unsigned char *by = realloc(v->t_byte, (size_t)nc);
        if (by) v->t_byte = by;
        int32_t *tk = realloc(v->t_tok, (size_t)nc * sizeof *tk);
        if (tk) v->t_tok = tk;
        if (!f || !n || !by || !tk)
            return -1;
        *cap = nc;
    }
    int32_t c = v->n_trie++;
    v->t_first[c] = -1;
    v->t_tok[c] = -1;
    v->t_byte[c] = b;
    v->t_next[c] = v->t_first[node];
    v->t_first[node] = c;
    return c;
}

int eng_gvocab_build(eng_gvocab **out, const eng_tokenizer *t, int vocab, int eos_override,
                     eng_err *err)
{
    *out = NULL;
    if (!t || vocab <= 0)
        return eng_err_set(err, ENG_E_INVAL, "grammar vocab: no tokenizer or vocab %d", vocab);
    eng_gvocab *v = calloc(1, sizeof *v);
    if (!v)
        return eng_err_set(err, ENG_E_NOMEM, "grammar vocab: out of memory");
    v->vocab = vocab;
    v->words = (vocab + 31) / 32;
    v->eos = eos_override >= 0 ? eos_override : eng_tokenizer_eos(t);
    int n_tok = eng_tokenizer_vocab_size(t);
    size_t cap_bytes = (size_t)vocab * 8 + 64, used = 0;
    v->off = malloc(((size_t)vocab + 1) * sizeof *v->off);
    v->bytes = malloc(cap_bytes);
    v->tok_next = malloc((size_t)vocab * sizeof *v->tok_next);
    int cap_trie = 1024;
    v->t_first = malloc((size_t)cap_trie * sizeof *v->t_first);
    v->t_next = malloc((size_t)cap_trie * sizeof *v->t_next);
    v->t_byte = malloc((size_t)cap_trie);
    v->t_tok = malloc((size_t)cap_trie * sizeof *v->t_tok);
    if (!v->off || !v->bytes || !v->tok_next || !v->t_first || !v->t_next || !v->t_byte ||
        !v->t_tok)
        goto nomem;
    v->n_trie = 1;
    v->t_first[0] = -1;
    v->t_next[0] = -1;
    v->t_tok[0] = -1;
    v->t_byte[0] = 0;
    for (int id = 0; id < vocab; id++) {
        char buf[TOK_BYTES_MAX + 1];
        size_t n = 0;
        v->tok_next[id] = -1;
        if (id < n_tok && !eng_tokenizer_is_special(t, id)) {
            n = eng_tokenizer_token_bytes(t, -1, id, buf, sizeof buf);
            if (n > TOK_BYTES_MAX)
                n = 0;
        }
        if (used + n > cap_bytes) {
            size_t nc = (used + n) * 2;
            unsigned char *b = realloc(v->bytes, nc);
            if (!b)
                goto nomem;
            v->bytes = b;
            cap_bytes = nc;
        }
        v->off[id] = (uint32_t)used;
        memcpy(v->bytes + used, buf, n);
        used += n;
        if (n == 0)
            continue;
        if ((int)n > v->max_len)
            v->max_len = (int)n;
        int32_t node = 0;
        for (size_t i = 0; i < n && node >= 0; i++)
            node = trie_child(v, &cap_trie, node, (unsigned char)buf[i]);
        if (node < 0)
            goto nomem;
        v->tok_next[id] = v->t_tok[node];
        v->t_tok[node] = id;
    }
    v->off[vocab] = (uint32_t)used;

    /* Each token from each string phase: inside all along, leaving (context decides), or
     * invalid. */
    for (int p = 0; p < ENG_G_STR_PHASES; p++) {
        v->str_in[p] = calloc((size_t)v->words, sizeof(uint32_t));
        if (!v->str_in[p])
            goto nomem;
        int n_out = 0, cap_out = 64;
        v->str_out[p] = malloc((size_t)cap_out * sizeof(int32_t));
        if (!v->str_out[p])
            goto nomem;
        for (int id = 0; id < vocab; id++) {
            uint32_t a = v->off[id], b = v->off[id + 1];
            if (a == b)
                continue;
            uint8_t ph = (uint8_t)p;
            int r = 0;
            for (uint32_t i = a; i < b && r == 0; i++)
                r = eng__gstr_step(&ph, v->bytes[i]);
            if (r == 0) {
                v->str_in[p][id >> 5] |= 1u << (id & 31);
            } else if (r == 1) {
                if (n_out == cap_out) {
                    cap_out *= 2;
                    int32_t *o = realloc(v->str_out[p], (size_t)cap_out * sizeof *o);
                    if (!o)
                        goto nomem;
                    v->str_out[p] = o;
                }
                v->str_out[p][n_out++] = id;
            }
        }
        v->n_out[p] = n_out;
    }
    *out = v;
    return 0;
nomem:
    eng_gvocab_free(v);
    return eng_err_set(err, ENG_E_NOMEM, "grammar vocab: out of memory for %d tokens", vocab);
}

int eng_gvocab_lead(const eng_gvocab *v, int token)
{
    if (!v || token < 0 || token >= v->vocab || v->off[token] == v->off[token + 1])
        return -2;
    for (uint32_t i = v->off[token]; i < v->off[token + 1]; i++) {
        unsigned char c = v->bytes[i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            return c;
    }
    return -1;
}
