/* test_eng_kv — the paged KV cache: blocks are handed out exactly as positions need them, a full
 * pool refuses without taking anything, released blocks are reused, and one long sequence can use
 * the whole pool (no fixed split per slot). */
#include <stdio.h>
#include <string.h>

#include "eng_kv.h"

static int fails;
#define CHECK(cond, ...) do { if (!(cond)) { fails++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
    printf(__VA_ARGS__); printf("\n"); } } while (0)

int main(void)
{
    eng_config cfg = {.dim = 64, .n_layers = 3, .n_heads = 4, .n_kv_heads = 2, .head_dim = 16};
    eng_kv kv;
    eng_err err = {0};
    CHECK(eng_kv_init(&kv, &cfg, 100, &err) == 0, "init: %s", err.msg);
    CHECK(kv.n_blocks == 7, "100 tokens -> 7 blocks of 16, got %d", kv.n_blocks);
    CHECK(eng_kv_free_tokens(&kv) == 112, "free tokens %d", eng_kv_free_tokens(&kv));
    eng_seq a = {0}, b = {0}, c = {0};
    CHECK(eng_kv_reserve(&kv, &a, 1) == 0 && a.n_blocks == 1, "1 position -> 1 block");
    CHECK(eng_kv_reserve(&kv, &a, 16) == 0 && a.n_blocks == 1, "16 positions still 1 block");
    CHECK(eng_kv_reserve(&kv, &a, 17) == 0 && a.n_blocks == 2, "17 positions -> 2 blocks");
    CHECK(eng_kv_reserve(&kv, &b, 80) == 0 && b.n_blocks == 5, "80 positions -> 5 blocks");
    CHECK(kv.n_free == 0, "pool now empty, %d free", kv.n_free);
    CHECK(eng_kv_reserve(&kv, &c, 1) == ENG_E_FULL && c.n_blocks == 0, "full pool refuses");
    CHECK(eng_kv_reserve(&kv, &a, 33) == ENG_E_FULL && a.n_blocks == 2, "growth refused, nothing taken");
    /* blocks are distinct */
    int used[7] = {0};
    for (int i = 0; i < a.n_blocks; i++) used[a.blocks[i]]++;
    for (int i = 0; i < b.n_blocks; i++) used[b.blocks[i]]++;
    for (int i = 0; i < 7; i++) CHECK(used[i] == 1, "block %d used %d times", i, used[i]);
    eng_kv_release(&kv, &b);
    CHECK(b.blocks == NULL && b.n_blocks == 0 && kv.n_free == 5, "release returns 5 blocks");
    eng_kv_release(&kv, &a);
    /* one long sequence may take the whole pool */
    CHECK(eng_kv_reserve(&kv, &c, 112) == 0 && c.n_blocks == 7, "one sequence gets all 7 blocks");
    /* offsets: distinct (block, slot) never overlap and stay inside the pool */
    int64_t total = (int64_t)kv.n_blocks * kv.n_layers * kv.block_stride;
    for (int l = 0; l < kv.n_layers; l++)
        for (int blk = 0; blk < kv.n_blocks; blk++) {
            int64_t off = ((char *)eng_kv_k_layer(&kv, l) - (char *)kv.k) / (int64_t)kv.elem +
                          eng_kv_slot_offset(&kv, blk, kv.block_tokens - 1);
            CHECK(off + kv.kv_dim <= total, "offset past the pool");
        }
    eng_kv_release(&kv, &c);
    eng_kv_free(&kv);
    eng_kv_free(&kv); /* idempotent */
    printf("%d failed\n", fails);
    return fails ? 1 : 0;
}
