/* eng_kv_impl.h — private to eng_kv.c and eng_kv_prefix.c: the prefix cache's index and the
 * pool hooks through which blocks are taken and given back when it is on. Same thread rules as
 * eng_kv.h (one owner, no locking). */
#ifndef ENG_KV_IMPL_H
#define ENG_KV_IMPL_H

#include <stdint.h>

#include "eng_kv.h"

/* Per block (arrays of n_blocks): a block is free (on kv->free_ids), held (ref > 0) or cached
 * and idle (ref == 0, in the index and on the LRU list). Cached blocks may be held too. */
typedef struct eng_kv_prefix {
    int32_t *ref;            /* sequences holding the block */
    uint8_t *cached;         /* 1: in the index */
    uint64_t *key;           /* its key: a hash of the parent's key and its tokens */
    uint64_t *parent;        /* the key of the block before it (0 for a first block) */
    int32_t *tokens;         /* [n_blocks][block_tokens] its tokens, compared on every match */
    int32_t *hnext;          /* next block in its bucket, -1 */
    int32_t *bucket;         /* [n_buckets] first block of each bucket, -1 */
    uint32_t bucket_mask;    /* n_buckets - 1 (a power of two) */
    int32_t *lru_prev, *lru_next;  /* idle cached blocks, least recently used at lru_head */
    int32_t lru_head, lru_tail;
    int n_idle;              /* blocks on the LRU list */
    int n_cached;            /* blocks in the index */
} eng_kv_prefix;

/* A block for a sequence: a free one, else the least recently used idle cached block (dropped
 * from the index). -1 when neither exists. Its ref is 1. */
int32_t eng_kv__take_block(eng_kv *kv);
/* One sequence lets go of block id: free again, or idle in the cache when cached. */
void eng_kv__drop_block(eng_kv *kv, int32_t id);
/* Grows seq's block table to hold at least need ids. */
int eng_kv__seq_cap(eng_seq *seq, int need);
void eng_kv__prefix_free(eng_kv *kv);

#endif
