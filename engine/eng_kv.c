/* eng_kv.c — the paged KV cache pool and per-sequence block tables (see eng_kv.h). Owned by one
 * thread (the CLI or the server's scheduler); no locking. */
#include "eng_kv.h"
#include "eng_kv_impl.h"

#include <stdlib.h>
#include <string.h>

int eng_kv_init(eng_kv *kv, const eng_config *cfg, int64_t total_tokens, eng_err *err)
{
    return eng_kv_init_dtype(kv, cfg, total_tokens, KERN_F32, err);
}

int eng_kv_dtype_parse(const char *s, kern_dtype *out)
{
    if (s && strcmp(s, "f32") == 0) *out = KERN_F32;
    else if (s && strcmp(s, "f16") == 0) *out = KERN_F16;
    else return -1;
    return 0;
}

int eng_kv_init_dtype(eng_kv *kv, const eng_config *cfg, int64_t total_tokens, kern_dtype dtype,
                      eng_err *err)
{
    return eng_kv_init_on(kv, cfg, total_tokens, dtype, NULL, err);
}

int eng_kv_init_on(eng_kv *kv, const eng_config *cfg, int64_t total_tokens, kern_dtype dtype,
                   kern_backend *be, eng_err *err)
{
    memset(kv, 0, sizeof *kv);
    if (total_tokens <= 0) return eng_err_set(err, ENG_E_INVAL, "kv cache: size must be positive");
    if (dtype != KERN_F32 && dtype != KERN_F16)
        return eng_err_set(err, ENG_E_INVAL, "kv cache: entries must be f32 or f16");
    kv->dtype = dtype;
    kv->elem = kern_dtype_size(dtype);
    kv->block_tokens = ENG_KV_BLOCK_TOKENS;
    int64_t nb = (total_tokens + kv->block_tokens - 1) / kv->block_tokens;
    if (nb > (1 << 30)) return eng_err_set(err, ENG_E_INVAL, "kv cache: %lld tokens is too many",
                                           (long long)total_tokens);
    kv->n_blocks = (int)nb;
    kv->n_layers = cfg->n_layers;
    kv->kv_dim = cfg->n_kv_heads * cfg->head_dim;
    kv->block_stride = (int64_t)kv->block_tokens * kv->kv_dim;
    size_t entries = (size_t)nb * (size_t)kv->n_layers * (size_t)kv->block_stride;
    if (be && !kern_backend_host_memory(be)) {
        /* device memory, contents undefined until written (all attention reads); kv->be set
         * first so that eng_kv_free hands back a half-made pair */
        kv->be = be;
        if (!kern_buf_alloc(be, entries * kv->elem, &kv->k_buf) &&
            !kern_buf_alloc(be, entries * kv->elem, &kv->v_buf)) {
            kv->k = kern_buf_addr(kv->k_buf);
            kv->v = kern_buf_addr(kv->v_buf);
        }
    } else {
        kv->k = calloc(entries, kv->elem);
        kv->v = calloc(entries, kv->elem);
    }
    kv->free_ids = malloc((size_t)nb * sizeof(int32_t));
    if (!kv->k || !kv->v || !kv->free_ids) {
        double mib = 2.0 * (double)entries * (double)kv->elem / (1 << 20);
        eng_kv_free(kv);
        return eng_err_set(err, ENG_E_NOMEM, "kv cache: cannot allocate %.1f MiB for %lld tokens",
                           mib, (long long)total_tokens);
    }
    /* stack: lowest ids popped first */
    for (int i = 0; i < kv->n_blocks; i++) kv->free_ids[i] = kv->n_blocks - 1 - i;
    kv->n_free = kv->n_blocks;
    return 0;
}

void eng_kv_free(eng_kv *kv)
{
    if (!kv) return;
    if (kv->be) {
        kern_buf_free(kv->be, kv->k_buf);
        kern_buf_free(kv->be, kv->v_buf);
    } else {
        free(kv->k);
        free(kv->v);
    }
    free(kv->free_ids);
    eng_kv__prefix_free(kv);
    memset(kv, 0, sizeof *kv);
}

int eng_kv_free_tokens(const eng_kv *kv) { return eng_kv_available(kv) * kv->block_tokens; }

int eng_kv_available(const eng_kv *kv)
{
    return kv->n_free + (kv->prefix ? kv->prefix->n_idle : 0);
}

int eng_kv_blocks_for(const eng_kv *kv, int64_t n_pos)
{
    return (int)((n_pos + kv->block_tokens - 1) / kv->block_tokens);
}

int eng_kv__seq_cap(eng_seq *seq, int need)
{
    if (need <= seq->cap_blocks) return 0;
    int cap = seq->cap_blocks ? seq->cap_blocks : 4;
    while (cap < need) cap *= 2;
    int32_t *b = realloc(seq->blocks, (size_t)cap * sizeof *b);
    if (!b) return ENG_E_NOMEM;
    seq->blocks = b;
    seq->cap_blocks = cap;
    return 0;
}

int eng_kv_reserve(eng_kv *kv, eng_seq *seq, int n_pos)
{
    int need = eng_kv_blocks_for(kv, n_pos);
    if (need <= seq->n_blocks) return 0;
    if (need - seq->n_blocks > eng_kv_available(kv)) return ENG_E_FULL;
    if (eng_kv__seq_cap(seq, need)) return ENG_E_NOMEM;
    while (seq->n_blocks < need) seq->blocks[seq->n_blocks++] = eng_kv__take_block(kv);
    return 0;
}

void eng_kv_release(eng_kv *kv, eng_seq *seq)
{
    /* last block first: with prefix caching the tail of a prefix is the first evicted */
    for (int i = seq->n_blocks - 1; i >= 0; i--) eng_kv__drop_block(kv, seq->blocks[i]);
    free(seq->blocks);
    memset(seq, 0, sizeof *seq);
}

void *eng_kv_k_layer(eng_kv *kv, int layer)
{
    return (char *)kv->k + (int64_t)layer * kv->block_stride * (int64_t)kv->elem;
}
void *eng_kv_v_layer(eng_kv *kv, int layer)
{
    return (char *)kv->v + (int64_t)layer * kv->block_stride * (int64_t)kv->elem;
}

int64_t eng_kv_slot_offset(const eng_kv *kv, int32_t block, int slot)
{
    /* blocks are [n_blocks][n_layers][block_tokens][kv_dim]: a block spans n_layers slabs */
    return (int64_t)block * kv->n_layers * kv->block_stride + (int64_t)slot * kv->kv_dim;
}
