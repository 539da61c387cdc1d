/* eng_gen.c — one sequence's decoding after its prompt (see eng_gen.h): stop ids, stop strings,
 * detokenized text and the budget, decided in one place for the CLI and the server. Owner
 * thread only. */
#include "eng_gen.h"

#include <string.h>

void eng_gen_init(eng_gen *g, int max_tokens)
{
    memset(g, 0, sizeof *g);
    g->max_tokens = max_tokens;
}

int eng_gen_set_stops(eng_gen *g, const char *const *stops, int n, eng_err *err)
{
    return eng_stop_init(&g->stop, stops, n, err);
}

int eng_gen_is_stop_id(const eng_gen *g, int32_t tok)
{
    for (int i = 0; i < g->n_stop_ids; i++)
        if (g->stop_ids[i] == tok)
            return 1;
    return 0;
}

void eng_gen_add_stop_ids(eng_gen *g, const int32_t *ids, int n)
{
    for (int i = 0; i < n; i++)
        if (ids[i] >= 0 && !eng_gen_is_stop_id(g, ids[i]) && g->n_stop_ids < ENG_GEN_MAX_STOP_IDS)
            g->stop_ids[g->n_stop_ids++] = ids[i];
}

void eng_gen_add_model_stop_ids(eng_gen *g, const eng_model *m, const eng_tokenizer *tok)
{
    int32_t ids[ENG_MAX_EOS + 2];
    int n = 0;
    int eos = tok ? eng_tokenizer_eos(tok) : -1;
    ids[n++] = eos >= 0 ? eos : (m ? m->cfg.eos_id : -1);
    for (int k = 0; m && k < m->cfg.n_eos && k < ENG_MAX_EOS; k++)
        ids[n++] = m->cfg.eos_ids[k];
    ids[n++] = tok ? eng_tokenizer_bos(tok) : (m ? m->cfg.bos_id : -1);
    eng_gen_add_stop_ids(g, ids, n);
}

int eng_gen_start(eng_gen *g, const eng_sampler_cfg *sc, int vocab, const eng_tokenizer *tok,
                  const int32_t *prompt, int n_prompt, eng_err *err)
{
    int rc = eng_sampler_init(&g->sampler, sc, vocab, err);
    if (rc != 0)
        return rc;
    for (int i = 0; i < n_prompt; i++)
        eng_sampler_accept_prompt(&g->sampler, prompt[i]);
    eng_detok_init(&g->detok, tok, 0);
    /* the first token's text depends on the last prompt token (llama2.c drops the space after
     * BOS) */
    g->detok.prev = n_prompt > 0 ? prompt[n_prompt - 1] : -1;
    g->started = 1;
    return 0;
}

void eng_gen_drop_stops(eng_gen *g)
{
    g->stop.n_stops = 0;   /* eng_stop_feed then passes everything through, held text first */
}

eng_gen_end eng_gen_push(eng_gen *g, int32_t tok, char *out, size_t cap, size_t *n_out)
{
    *n_out = 0;
    g->n_gen++;
    if (eng_gen_is_stop_id(g, tok))
        return ENG_GEN_END_ID;
    eng_sampler_accept(&g->sampler, tok);
    char piece[512];
    size_t n = eng_detok_push(&g->detok, tok, piece, sizeof piece);
    g->last_chars = 0;
    for (size_t i = 0; i < n; i++)   /* the detokenizer hands out whole UTF-8 characters */
        g->last_chars += ((unsigned char)piece[i] & 0xC0) != 0x80;
    if (n > 0 && !g->stop.hit)
        *n_out = eng_stop_feed(&g->stop, piece, n, out, cap);
    if (g->stop.hit)
        return ENG_GEN_END_STRING;
    return g->n_gen >= g->max_tokens ? ENG_GEN_END_LENGTH : ENG_GEN_GOING;
}

size_t eng_gen_flush(eng_gen *g, char *out, size_t cap)
{
    if (!g->started || g->stop.hit)
        return 0;
    char buf[1024];
    size_t n = eng_detok_flush(&g->detok, buf, sizeof buf), n_out = 0;
    if (n > 0)
        n_out = eng_stop_feed(&g->stop, buf, n, out, cap);
    if (!g->stop.hit)
        n_out += eng_stop_flush(&g->stop, out + n_out, cap - n_out);
    return n_out;
}

void eng_gen_free(eng_gen *g)
{
    if (g->started)
        eng_sampler_free(&g->sampler);
    g->started = 0;
}
