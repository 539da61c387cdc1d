/* test_eng_kv_prefix — the prefix cache's bookkeeping over the paged pool: only full, written
 * blocks are offered; a later sequence gets the longest cached prefix in whole blocks, never
 * past max_pos, shared (reference-counted) with the sequence still holding it; a prefix that
 * differs in one token or in an earlier block does not match; idle cached blocks count as
 * available and are evicted least recently used, tail blocks first, only when no free block is
 * left; the same block computed twice is cached once; a full pool and repeated use never lose a
 * block (every id is free, idle or held, exactly once). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eng_kv.h"

static int fails;
#define CHECK(cond, ...) do { if (!(cond)) { fails++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
    printf(__VA_ARGS__); printf("\n"); } } while (0)

/* Every block is exactly one of: free, held by a listed sequence (counted once per holder),
 * idle in the cache. Returns the number of distinct held blocks. */
static int check_pool(const eng_kv *kv, eng_seq **seqs, int n_seqs, const char *when)
{
    int *held = calloc((size_t)kv->n_blocks, sizeof(int));
    int *free_ = calloc((size_t)kv->n_blocks, sizeof(int));
    for (int i = 0; i < kv->n_free; i++) free_[kv->free_ids[i]]++;
    for (int s = 0; s < n_seqs; s++)
        for (int b = 0; b < seqs[s]->n_blocks; b++) held[seqs[s]->blocks[b]]++;
    int n_held = 0, bad = 0;
    for (int i = 0; i < kv->n_blocks; i++) {
        if (free_[i] > 1 || (free_[i] && held[i])) bad++;
        n_held += held[i] > 0;
    }
    int idle = eng_kv_available(kv) - kv->n_free;
    CHECK(!bad, "%s: a block is free twice or free and held", when);
    CHECK(kv->n_free + idle + n_held == kv->n_blocks, "%s: free %d + idle %d + held %d != %d",
          when, kv->n_free, idle, n_held, kv->n_blocks);
    free(held);
    free(free_);
    return n_held;
}

int main(void)
{
    eng_config cfg = {.dim = 64, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 16};
    eng_kv kv;
    eng_err err = {0};
    const int bt = ENG_KV_BLOCK_TOKENS;
    CHECK(eng_kv_init(&kv, &cfg, 8 * bt, &err) == 0, "init: %s", err.msg);
    CHECK(eng_kv_prefix_enable(&kv, &err) == 0, "enable: %s", err.msg);

    int32_t a[80], b[80];
    for (int i = 0; i < 80; i++) a[i] = b[i] = 100 + i;
    b[40] = 7;   /* b shares a's first 2 blocks, differs inside the third */

    /* sequence A: 50 positions written; 3 full blocks offered */
    eng_seq sa = {0}, sb = {0}, sc = {0};
    CHECK(eng_kv_prefix_match(&kv, &sa, a, 80, NULL, 79) == 0, "empty cache matches nothing");
    CHECK(eng_kv_reserve(&kv, &sa, 50) == 0 && sa.n_blocks == 4, "A gets 4 blocks");
    eng_kv_prefix_commit(&kv, &sa, a, 80, NULL, 50);
    CHECK(eng_kv_prefix_blocks(&kv) == 3, "3 full blocks cached, got %d",
          eng_kv_prefix_blocks(&kv));
    CHECK(eng_kv_available(&kv) == 4, "held cached blocks are not available: %d",
          eng_kv_available(&kv));

    /* B (shares 2 blocks, then differs) matches 2 blocks, shared with A while A lives */
    CHECK(eng_kv_prefix_match(&kv, &sb, b, 80, NULL, 79) == 2 * bt, "B reuses 2 blocks");
    CHECK(sb.n_blocks == 2 && sb.blocks[0] == sa.blocks[0] && sb.blocks[1] == sa.blocks[1],
          "B holds A's first two blocks");
    CHECK(eng_kv_reserve(&kv, &sb, 60) == 0 && sb.n_blocks == 4, "B grows by its own blocks");
    CHECK(sb.blocks[2] != sa.blocks[2], "B's third block is its own");
    eng_seq *both[] = {&sa, &sb};
    check_pool(&kv, both, 2, "A and B");
    eng_kv_prefix_commit(&kv, &sb, b, 80, NULL, 60);
    CHECK(eng_kv_prefix_blocks(&kv) == 4, "B adds its third block: %d cached",
          eng_kv_prefix_blocks(&kv));

    /* max_pos caps the match; a sequence that already has blocks gets nothing */
    CHECK(eng_kv_prefix_match(&kv, &sc, a, 80, NULL, 2 * bt + 5) == 2 * bt, "max_pos caps");
    CHECK(eng_kv_prefix_match(&kv, &sc, a, 80, NULL, 79) == 0, "only for an empty sequence");
    eng_kv_release(&kv, &sc);
    CHECK(eng_kv_prefix_match(&kv, &sc, a, 80, NULL, bt - 1) == 0, "less than a block: none");

    /* tokens given as prompt + generated spans key the same blocks */
    CHECK(eng_kv_prefix_match(&kv, &sc, a, 20, a + 20, 79) == 3 * bt, "split spans match 3");
    eng_kv_release(&kv, &sc);

    /* the same block committed twice stays cached once */
    eng_seq sd = {0};
    CHECK(eng_kv_reserve(&kv, &sd, 20) == 0, "D");
    eng_kv_prefix_commit(&kv, &sd, a, 80, NULL, 20);
    CHECK(eng_kv_prefix_blocks(&kv) == 4, "duplicate not indexed: %d", eng_kv_prefix_blocks(&kv));
    eng_kv_release(&kv, &sd);

    /* A and B end: cached blocks become idle and available, nothing is lost */
    eng_kv_release(&kv, &sa);
    eng_kv_release(&kv, &sb);
    CHECK(eng_kv_available(&kv) == kv.n_blocks, "all blocks available after release: %d",
          eng_kv_available(&kv));
    check_pool(&kv, NULL, 0, "idle");
    CHECK(eng_kv_prefix_match(&kv, &sa, a, 80, NULL, 79) == 3 * bt, "A's prefix still cached");
    eng_kv_release(&kv, &sa);

    /* a sequence needing the whole pool evicts every idle block; the cache empties */
    eng_seq big = {0};
    int32_t z[8 * 16];
    for (int i = 0; i < 8 * bt; i++) z[i] = 9000 + i;
    CHECK(eng_kv_reserve(&kv, &big, 8 * bt) == 0 && big.n_blocks == 8, "whole pool");
    CHECK(eng_kv_prefix_blocks(&kv) == 0, "everything evicted: %d left",
          eng_kv_prefix_blocks(&kv));
    eng_kv_prefix_commit(&kv, &big, z, 8 * bt, NULL, 8 * bt);
    eng_kv_release(&kv, &big);
    CHECK(eng_kv_prefix_blocks(&kv) == 8, "big's 8 blocks cached");

    /* eviction order: least recently used first, and a sequence's tail before its head */
    eng_seq e1 = {0};
    CHECK(eng_kv_reserve(&kv, &e1, 2 * bt) == 0, "e1");
    CHECK(eng_kv_prefix_blocks(&kv) == 6, "two evicted: %d", eng_kv_prefix_blocks(&kv));
    eng_seq probe = {0};
    CHECK(eng_kv_prefix_match(&kv, &probe, z, 8 * bt, NULL, 8 * bt) == 6 * bt,
          "the head of big's prefix survives (tail evicted first)");
    eng_seq *live[] = {&e1, &probe};
    check_pool(&kv, live, 2, "after eviction");
    eng_kv_release(&kv, &probe);
    eng_kv_release(&kv, &e1);

    eng_kv_free(&kv);

    /* off: match and commit do nothing, the pool behaves as before */
    CHECK(eng_kv_init(&kv, &cfg, 4 * bt, &err) == 0, "init off");
    CHECK(eng_kv_reserve(&kv, &sa, 40) == 0, "reserve off");
    eng_kv_prefix_commit(&kv, &sa, a, 80, NULL, 40);
    CHECK(eng_kv_prefix_blocks(&kv) == 0 && eng_kv_available(&kv) == kv.n_free, "off: no cache");
    eng_kv_release(&kv, &sa);
    CHECK(eng_kv_prefix_match(&kv, &sa, a, 80, NULL, 79) == 0, "off: no match");
    CHECK(eng_kv_prefix_enable(&kv, &err) == 0, "enable on an idle pool");
    CHECK(eng_kv_reserve(&kv, &sa, 5) == 0, "reserve");
    eng_kv_free(&kv);   /* frees the index too (ASan checks) */
    free(sa.blocks);
    printf("%d failed\n", fails);
    return fails ? 1 : 0;
}
