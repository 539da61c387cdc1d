/* eng_kv.h — the paged KV cache: one pool of fixed-size blocks shared by every sequence, and a
 * per-sequence block table. A sequence gets exactly the blocks its positions need, so one long
 * request can use what short ones leave (no fixed split per slot). Entries are fp32, or fp16 for
 * half the memory (rounded when written; attention reads them back as fp32).
 *
 * Optional prefix caching (eng_kv_prefix_enable): full blocks of token prefixes stay in the pool
 * after their sequence ends, keyed by a hash chain over their token ids, shared read-only by
 * every later sequence that starts with the same tokens, and evicted least recently used only
 * when a sequence needs a block and none is free (eng_kv_prefix.c).
 *
 * Owned by whoever drives the engine (the CLI, or the server's scheduler thread); not
 * thread-safe. */
#ifndef ENG_KV_H
#define ENG_KV_H

#include <stdint.h>

#include "eng_err.h"
#include "eng_model.h"

#define ENG_KV_BLOCK_TOKENS 16

typedef struct eng_kv {
    int block_tokens;        /* positions per block */
    int n_blocks;            /* blocks in the pool */
    int n_layers, kv_dim;    /* kv_dim = n_kv_heads * head_dim */
    int64_t block_stride;    /* entries per (block, layer) slab = block_tokens * kv_dim */
    kern_dtype dtype;        /* KERN_F32 or KERN_F16 */
    size_t elem;             /* bytes per entry */
    void *k, *v;             /* [n_blocks][n_layers][block_tokens][kv_dim] entries: host
                                memory (owned, calloc) or backend memory of be (k_buf, v_buf) */
    kern_backend *be;        /* borrowed, or NULL: host memory */
    kern_buf *k_buf, *v_buf; /* owned when be is set */
    int32_t *free_ids;       /* stack of free block ids; owned */
    int n_free;
    struct eng_kv_prefix *prefix;  /* the prefix cache's index, or NULL (off); owned */
} eng_kv;

typedef struct eng_seq {
    int32_t *blocks;         /* block ids, in position order; owned */
    int n_blocks, cap_blocks;
    int n_pos;               /* positions written so far (the next position to fill) */
    int n_keyed;             /* prefix cache: leading blocks whose key is known (matched from
                                the cache or committed to it) */
    uint64_t key;            /* the key of block n_keyed - 1 (the chain's head) */
} eng_seq;

/* Pool sized for total_tokens positions (rounded up to whole blocks), fp32 entries. */
int eng_kv_init(eng_kv *kv, const eng_config *cfg, int64_t total_tokens, eng_err *err);
/* The same with entries of dtype (KERN_F32 or KERN_F16; ENG_E_INVAL otherwise). */
int eng_kv_init_dtype(eng_kv *kv, const eng_config *cfg, int64_t total_tokens, kern_dtype dtype,
                      eng_err *err);
/* The same in the memory of backend be (device memory on CUDA; be outlives the pool). be NULL or
 * a host backend: host memory, as eng_kv_init_dtype. eng_forward on a device backend needs the
 * pool on that backend. */
int eng_kv_init_on(eng_kv *kv, const eng_config *cfg, int64_t total_tokens, kern_dtype dtype,
                   kern_backend *be, eng_err *err);
/* "f32" / "f16" -> dtype; -1 for anything else. */
int eng_kv_dtype_parse(const char *s, kern_dtype *out);
void eng_kv_free(eng_kv *kv);   /* safe on zeroed, idempotent */
int eng_kv_free_tokens(const eng_kv *kv);   /* positions that free blocks can still hold */
/* Blocks a sequence can still get: the free ones, plus cached blocks no sequence holds (evicted
 * on demand). Equals n_free without prefix caching. */
int eng_kv_available(const eng_kv *kv);
/* Blocks needed to hold n_pos positions. */
int eng_kv_blocks_for(const eng_kv *kv, int64_t n_pos);
/* Ensures seq has blocks for n_pos positions; ENG_E_FULL (nothing taken) when the pool lacks them. */
int eng_kv_reserve(eng_kv *kv, eng_seq *seq, int n_pos);
/* Returns all of seq's blocks to the pool and frees its table; seq is zeroed. Cached blocks it
 * shared or committed stay cached (the last ones first in line for eviction). */
void eng_kv_release(eng_kv *kv, eng_seq *seq);
/* Base addresses for layer l (what kern_attn_args wants; backend memory when be is set). */
void *eng_kv_k_layer(eng_kv *kv, int layer);
void *eng_kv_v_layer(eng_kv *kv, int layer);
/* Offset in entries from a layer base to (block, slot). */
int64_t eng_kv_slot_offset(const eng_kv *kv, int32_t block, int slot);

/* ---- prefix caching (eng_kv_prefix.c) ----
 * Tokens are given as two spans, head[0..n_head) then tail[...] (a prompt and what was
 * generated after it): position p's token is p < n_head ? head[p] : tail[p - n_head]. */

/* Turns prefix caching on for kv (before any sequence holds blocks). */
int eng_kv_prefix_enable(eng_kv *kv, eng_err *err);
/* For a sequence without blocks: appends the cached blocks of the longest cached prefix of the
 * tokens, whole blocks of at most max_pos positions, and returns the positions they hold
 * (0 when off or nothing matches). Their K/V must not be written again: feed from there on. */
int eng_kv_prefix_match(eng_kv *kv, eng_seq *seq, const int32_t *head, int n_head,
                        const int32_t *tail, int max_pos);
/* Offers seq's full blocks among positions [0, n_pos), whose K/V are written, to the cache
 * (a no-op when off). A block already cached under the same tokens stays the cached one. */
void eng_kv_prefix_commit(eng_kv *kv, eng_seq *seq, const int32_t *head, int n_head,
                          const int32_t *tail, int n_pos);
/* Blocks in the index (held by sequences or not); 0 when off. */
int eng_kv_prefix_blocks(const eng_kv *kv);

#endif
