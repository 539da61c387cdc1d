/* eng_kv_prefix.c — automatic prefix caching over the paged KV pool (see eng_kv.h): an index of
 * full blocks keyed by a hash chain over token ids (a block's key hashes its parent's key and its
 * own block_tokens ids, so equal keys mean equal prefixes up to a 64-bit collision, and every
 * match also compares the block's tokens and its parent's key), reference counts for blocks
 * shared by several sequences, and an LRU list of cached blocks no sequence holds, evicted only
 * when the pool has no free block left. Reuse is exact because a position's K/V depend only on
 * the tokens up to it (the engine is batch invariant: batched equals separate, bit for bit).
 * Same owner and thread as the pool (eng_kv.c); no locking. */
#include <stdlib.h>
#include <string.h>

#include "eng_kv.h"
#include "eng_kv_impl.h"

static uint64_t mix64(uint64_t x)
{
    /* splitmix64's finaliser */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static int32_t tok_at(const int32_t *head, int n_head, const int32_t *tail, int p)
{
    return p < n_head ? head[p] : tail[p - n_head];
}

/* Key of the block of positions [first, first + bt) after a block keyed parent. */
static uint64_t block_key(uint64_t parent, const int32_t *head, int n_head, const int32_t *tail,
                          int first, int bt)
{
    uint64_t h = mix64(parent ^ 0x9e3779b97f4a7c15ULL);
    for (int i = 0; i < bt; i++)
        h = mix64(h ^ (uint32_t)tok_at(head, n_head, tail, first + i)) + (uint64_t)i;
    return h;
}

static int same_tokens(const eng_kv *kv, int32_t id, const int32_t *head, int n_head,
                       const int32_t *tail, int first)
{
    const int32_t *t = kv->prefix->tokens + (size_t)id * (size_t)kv->block_tokens;
    for (int i = 0; i < kv->block_tokens; i++)
        if (t[i] != tok_at(head, n_head, tail, first + i))
            return 0;
    return 1;
}

/* The cached block holding positions [first, first + bt) after parent, or -1. */
static int32_t find(const eng_kv *kv, uint64_t key, uint64_t parent, const int32_t *head,
                    int n_head, const int32_t *tail, int first)
{
    const eng_kv_prefix *p = kv->prefix;
    for (int32_t id = p->bucket[key & p->bucket_mask]; id >= 0; id = p->hnext[id])
        if (p->key[id] == key && p->parent[id] == parent &&
            same_tokens(kv, id, head, n_head, tail, first))
            return id;
    return -1;
}

/* ---- the LRU list of idle cached blocks ---- */

static void lru_unlink(eng_kv_prefix *p, int32_t id)
{
    int32_t a = p->lru_prev[id], b = p->lru_next[id];
    if (a >= 0) p->lru_next[a] = b; else p->lru_head = b;
    if (b >= 0) p->lru_prev[b] = a; else p->lru_tail = a;
    p->lru_prev[id] = p->lru_next[id] = -1;
    p->n_idle--;
}

static void lru_push_recent(eng_kv_prefix *p, int32_t id)
{
    p->lru_prev[id] = p->lru_tail;
    p->lru_next[id] = -1;
    if (p->lru_tail >= 0) p->lru_next[p->lru_tail] = id; else p->lru_head = id;
    p->lru_tail = id;
    p->n_idle++;
}

static void index_remove(eng_kv_prefix *p, int32_t id)
{
    int32_t *at = &p->bucket[p->key[id] & p->bucket_mask];
    while (*at != id) at = &p->hnext[*at];
    *at = p->hnext[id];
    p->hnext[id] = -1;
    p->cached[id] = 0;
    p->n_cached--;
}

/* ---- pool hooks ---- */

int32_t eng_kv__take_block(eng_kv *kv)
{
    eng_kv_prefix *p = kv->prefix;
    int32_t id = -1;
    if (kv->n_free > 0) {
        id = kv->free_ids[--kv->n_free];
    } else if (p && p->lru_head >= 0) {
        id = p->lru_head;   /* evict the least recently used idle block */
        lru_unlink(p, id);
        index_remove(p, id);
    }
    if (p && id >= 0) p->ref[id] = 1;
    return id;
}

void eng_kv__drop_block(eng_kv *kv, int32_t id)
{
    eng_kv_prefix *p = kv->prefix;
    if (!p) {
        kv->free_ids[kv->n_free++] = id;
        return;
    }
    if (--p->ref[id] > 0) return;
    if (p->cached[id]) lru_push_recent(p, id);
    else kv->free_ids[kv->n_free++] = id;
}

void eng_kv__prefix_free(eng_kv *kv)
{
    eng_kv_prefix *p = kv->prefix;
    if (!p) return;
    free(p->ref);
    free(p->cached);
    free(p->key);
    free(p->parent);
    free(p->tokens);
    free(p->hnext);
    free(p->bucket);
    free(p->lru_prev);
    free(p->lru_next);
    free(p);
    kv->prefix = NULL;
}

/* ---- public ---- */

int eng_kv_prefix_enable(eng_kv *kv, eng_err *err)
{
    if (kv->prefix) return 0;
    if (kv->n_free != kv->n_blocks)
        return eng_err_set(err, ENG_E_INVAL, "prefix cache: enable it before blocks are in use");
    size_t nb = (size_t)kv->n_blocks;
    uint32_t nbuck = 16;
    while (nbuck < nb && nbuck < (1u << 30)) nbuck <<= 1;
    eng_kv_prefix *p = calloc(1, sizeof *p);
    if (!p) return eng_err_set(err, ENG_E_NOMEM, "prefix cache: out of memory");
    kv->prefix = p;
    p->ref = calloc(nb, sizeof *p->ref);
    p->cached = calloc(nb, 1);
    p->key = calloc(nb, sizeof *p->key);
    p->parent = calloc(nb, sizeof *p->parent);
    p->tokens = malloc(nb * (size_t)kv->block_tokens * sizeof *p->tokens);
    p->hnext = malloc(nb * sizeof *p->hnext);
    p->bucket = malloc((size_t)nbuck * sizeof *p->bucket);
    p->lru_prev = malloc(nb * sizeof *p->lru_prev);
    p->lru_next = malloc(nb * sizeof *p->lru_next);
    if (!p->ref || !p->cached || !p->key || !p->parent || !p->tokens || !p->hnext || !p->bucket ||
        !p->lru_prev || !p->lru_next) {
        eng_kv__prefix_free(kv);
        return eng_err_set(err, ENG_E_NOMEM, "prefix cache: out of memory for %zu blocks", nb);
    }
    p->bucket_mask = nbuck - 1;
    for (uint32_t i = 0; i < nbuck; i++) p->bucket[i] = -1;
    for (size_t i = 0; i < nb; i++) p->hnext[i] = p->lru_prev[i] = p->lru_next[i] = -1;
    p->lru_head = p->lru_tail = -1;
    return 0;
}

int eng_kv_prefix_match(eng_kv *kv, eng_seq *seq, const int32_t *head, int n_head,
                        const int32_t *tail, int max_pos)
{
    eng_kv_prefix *p = kv->prefix;
    if (!p || seq->n_blocks != 0 || max_pos < kv->block_tokens) return 0;
    int bt = kv->block_tokens, n = max_pos / bt;
    if (eng_kv__seq_cap(seq, n)) return 0;   /* no table: no reuse (the reserve reports it) */
    uint64_t parent = 0;
    int b = 0;
    for (; b < n; b++) {
        uint64_t key = block_key(parent, head, n_head, tail, b * bt, bt);
        int32_t id = find(kv, key, parent, head, n_head, tail, b * bt);
        if (id < 0) break;
        if (p->ref[id]++ == 0) lru_unlink(p, id);
        seq->blocks[seq->n_blocks++] = id;
        parent = key;
    }
    seq->n_keyed = b;
    seq->key = parent;
    return b * bt;
}

void eng_kv_prefix_commit(eng_kv *kv, eng_seq *seq, const int32_t *head, int n_head,
                          const int32_t *tail, int n_pos)
{
    eng_kv_prefix *p = kv->prefix;
    if (!p) return;
    int bt = kv->block_tokens;
    while (seq->n_keyed < seq->n_blocks && (seq->n_keyed + 1) * bt <= n_pos) {
        int b = seq->n_keyed, first = b * bt;
        uint64_t parent = b ? seq->key : 0;
        uint64_t key = block_key(parent, head, n_head, tail, first, bt);
        int32_t id = seq->blocks[b];
        if (!p->cached[id] && find(kv, key, parent, head, n_head, tail, first) < 0) {
            p->cached[id] = 1;
            p->key[id] = key;
            p->parent[id] = parent;
            int32_t *t = p->tokens + (size_t)id * (size_t)bt;
            for (int i = 0; i < bt; i++) t[i] = tok_at(head, n_head, tail, first + i);
            uint32_t h = (uint32_t)(key & p->bucket_mask);
            p->hnext[id] = p->bucket[h];
            p->bucket[h] = id;
            p->n_cached++;
        }
        seq->key = key;
        seq->n_keyed++;
    }
}

int eng_kv_prefix_blocks(const eng_kv *kv)
{
    return kv->prefix ? kv->prefix->n_cached : 0;
}
