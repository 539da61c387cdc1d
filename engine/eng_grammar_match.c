/* eng_grammar_match.c — one sequence's grammar state: advances it by tokens and computes the
 * mask of allowed tokens, cached per automaton state. A mask is computed by walking the vocab
 * trie with the automaton (prefixes shared by many tokens are fed once, dead branches pruned);
 * inside a JSON string, where nearly every token is allowed, it starts from the vocab's
 * precomputed "stays inside" set and only runs the tokens that close the string. One matcher per
 * sequence, one thread at a time. */
#include "eng_grammar_impl.h"

#include <stdlib.h>
#include <string.h>

#define CACHE_SLOTS 1024        /* open-addressing slots (power of two) */
#define CACHE_MAX 512           /* entries before the cache is emptied and refilled */
#define KEY_MAX (1 + ENG_G_MAX_STACKS * (8 + (ENG_GRAMMAR_MAX_DEPTH + 1) * 16))

typedef struct slot {
    uint64_t hash;
    unsigned char *key;         /* owned; NULL = empty slot */
    size_t key_len;
    uint32_t *mask;             /* [words]; owned */
    int end_ok;                 /* the state may end here (or has no way forward) */
} slot;

struct eng_gmatch {
    const eng_grammar *g;       /* borrowed */
    const eng_gvocab *v;        /* borrowed */
    eng_gstate cur;
    eng_gstate *scratch;        /* [max_len + 2] states for the trie walk; owned */
    uint32_t *mask;             /* [words] the mask handed out last (points into a slot or
                                   into own_mask) */
    uint32_t *own_mask;         /* [words]; owned: used when the cache cannot take an entry */
    slot *slots;                /* [CACHE_SLOTS]; owned */
    int n_cached;
    uint64_t computed, hits;
    int end_ok;                 /* of the mask handed out last */
    unsigned char key[KEY_MAX];
};

int eng_gmatch_new(eng_gmatch **out, const eng_grammar *g, const eng_gvocab *v, eng_err *err)
{
    *out = NULL;
    if (!g || !v)
        return eng_err_set(err, ENG_E_INVAL, "grammar matcher: no grammar or vocab");
    eng_gmatch *m = calloc(1, sizeof *m);
    if (!m)
        return eng_err_set(err, ENG_E_NOMEM, "grammar matcher: out of memory");
    m->g = g;
    m->v = v;
    m->scratch = malloc(((size_t)v->max_len + 2) * sizeof *m->scratch);
    m->own_mask = malloc((size_t)v->words * sizeof(uint32_t));
    m->slots = calloc(CACHE_SLOTS, sizeof *m->slots);
    if (!m->scratch || !m->own_mask || !m->slots) {
        eng_gmatch_free(m);
        return eng_err_set(err, ENG_E_NOMEM, "grammar matcher: out of memory");
    }
    eng__gstate_init(g, &m->cur);
    *out = m;
    return 0;
}

static void cache_clear(eng_gmatch *m)
{
    for (int i = 0; i < CACHE_SLOTS; i++) {
        free(m->slots[i].key);
        free(m->slots[i].mask);
        memset(&m->slots[i], 0, sizeof m->slots[i]);
    }
    m->n_cached = 0;
}

void eng_gmatch_free(eng_gmatch *m)
{
    if (!m)
        return;
    if (m->slots)
        cache_clear(m);
    free(m->slots);
    free(m->scratch);
    free(m->own_mask);
    free(m);
}

static uint64_t fnv1a(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* Runs the automaton over token id's bytes from st; 1 when all of them are accepted. */
static int token_ok(const eng_gmatch *m, const eng_gstate *st, int id, eng_gstate *a,
                    eng_gstate *b)
{
    const eng_gvocab *v = m->v;
    uint32_t lo = v->off[id], hi = v->off[id + 1];
    if (lo == hi)
        return 0;
    const eng_gstate *in = st;
    for (uint32_t i = lo; i < hi; i++) {
        eng_gstate *o = in == a ? b : a;
        if (eng__gstate_feed(m->g, in, v->bytes[i], o) == 0)
            return 0;
        in = o;
    }
    return 1;
}

static void set_bit(uint32_t *mask, int id)
{
    mask[id >> 5] |= 1u << (id & 31);
}

/* Marks every token under trie node `node` whose bytes the automaton accepts from
 * m->scratch[depth]. */
static void walk(eng_gmatch *m, int32_t node, int depth, uint32_t *mask)
{
    const eng_gvocab *v = m->v;
    for (int32_t c = v->t_first[node]; c >= 0; c = v->t_next[c]) {
        if (eng__gstate_feed(m->g, &m->scratch[depth], v->t_byte[c], &m->scratch[depth + 1]) == 0)
            continue;
        for (int32_t t = v->t_tok[c]; t >= 0; t = v->tok_next[t])
            set_bit(mask, t);
        if (v->t_first[c] >= 0)
            walk(m, c, depth + 1, mask);
    }
}

static int compute(eng_gmatch *m, uint32_t *mask)
{
    const eng_gvocab *v = m->v;
    const eng_gstate *st = &m->cur;
    memset(mask, 0, (size_t)v->words * sizeof(uint32_t));
    const eng_gstack *s0 = &st->s[0];
    const eng_gframe *top = s0->depth > 0 ? &s0->f[s0->depth - 1] : NULL;
    /* a maxLength near enough to bind could refuse a token that stays inside: those strings
     * take the trie walk (tokens that close the string are run whole either way, so minLength
     * needs nothing here) */
    const eng_gnode *tn = top ? &m->g->nodes[top->node] : NULL;
    int fast = st->n == 1 && top && top->kind == F_STR &&
               (!eng__gstr_limited(tn) || tn->max_len < 0 ||
                (int64_t)tn->max_len - top->pos >= v->max_len);
    if (fast) {
        int p = top->phase;
        memcpy(mask, v->str_in[p], (size_t)v->words * sizeof(uint32_t));
        for (int i = 0; i < v->n_out[p]; i++) {
            int id = v->str_out[p][i];
            if (token_ok(m, st, id, &m->scratch[0], &m->scratch[1]))
                set_bit(mask, id);
        }
    } else if (st->n > 0) {
        eng__gstate_copy(&m->scratch[0], st);
        walk(m, 0, 0, mask);
    }
    int any = 0;
    for (int i = 0; i < v->words && !any; i++)
        any = mask[i] != 0;
    int end_ok = !any || eng__gstate_can_end(m->g, st);
    if (v->eos >= 0 && v->eos < v->vocab && end_ok)
        set_bit(mask, v->eos);   /* where it may end, or (no way forward) to end at all */
    m->computed++;
    return end_ok;
}

const uint32_t *eng_gmatch_mask(eng_gmatch *m)
{
    size_t klen = eng__gstate_key(&m->cur, m->key, sizeof m->key);
    uint64_t h = fnv1a(m->key, klen);
    size_t i = (size_t)h & (CACHE_SLOTS - 1);
    for (;;) {
        slot *s = &m->slots[i];
        if (!s->key)
            break;
        if (s->hash == h && s->key_len == klen && memcmp(s->key, m->key, klen) == 0) {
            m->hits++;
            m->end_ok = s->end_ok;
            return m->mask = s->mask;
        }
        i = (i + 1) & (CACHE_SLOTS - 1);
    }
    if (m->n_cached >= CACHE_MAX) {
        cache_clear(m);
        i = (size_t)h & (CACHE_SLOTS - 1);
    }
    slot *s = &m->slots[i];
    s->key = malloc(klen);
    s->mask = malloc((size_t)m->v->words * sizeof(uint32_t));
    if (!s->key || !s->mask) {
        free(s->key);
        free(s->mask);
        s->key = NULL;
        s->mask = NULL;
        m->end_ok = compute(m, m->own_mask);
        return m->mask = m->own_mask;
    }
    memcpy(s->key, m->key, klen);
    s->key_len = klen;
    s->hash = h;
    m->n_cached++;
    m->end_ok = s->end_ok = compute(m, s->mask);
    return m->mask = s->mask;
}

int eng_gmatch_accept_bytes(eng_gmatch *m, const char *bytes, size_t n)
{
    eng_gstate *a = &m->scratch[0], *b = &m->scratch[1];
    const eng_gstate *in = &m->cur;
    for (size_t i = 0; i < n; i++) {
        eng_gstate *o = in == a ? b : a;
        if (eng__gstate_feed(m->g, in, (unsigned char)bytes[i], o) == 0)
            return ENG_E_INVAL;
        in = o;
    }
    if (in != &m->cur)
        eng__gstate_copy(&m->cur, in);
    return 0;
}

int eng_gmatch_accept(eng_gmatch *m, int token)
{
    const eng_gvocab *v = m->v;
    if (token < 0 || token >= v->vocab)
        return ENG_E_INVAL;
    if (token == v->eos) {
        if (eng__gstate_can_end(m->g, &m->cur))
            return 0;
        const uint32_t *mask = eng_gmatch_mask(m);   /* a dead end offers EOS too */
        return mask && (mask[token >> 5] >> (token & 31) & 1) ? 0 : ENG_E_INVAL;
    }
    uint32_t lo = v->off[token], hi = v->off[token + 1];
    if (lo == hi)
        return ENG_E_INVAL;
    return eng_gmatch_accept_bytes(m, (const char *)v->bytes + lo, hi - lo);
}

int eng_gmatch_end_allowed(eng_gmatch *m)
{
    return eng_gmatch_mask(m) ? m->end_ok : 1;
}

void eng_gmatch_reset(eng_gmatch *m)
{
    eng__gstate_init(m->g, &m->cur);
}

int eng_gmatch_can_end(const eng_gmatch *m)
{
    return eng__gstate_can_end(m->g, &m->cur);
}

void eng_gmatch_stats(const eng_gmatch *m, uint64_t *computed, uint64_t *cached)
{
    if (computed) *computed = m->computed;
    if (cached) *cached = m->hits;
}
