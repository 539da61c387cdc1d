/* kern_cpu.c — the CPU backend: its ops table, context, and the dense matmul, embedding, RMSNorm,
 * RoPE, SwiGLU and paged attention loops, split over the worker pool. Packed CLAQ matmuls go to
 * kern_cpu_claq.c; dot products to kern_cpu_dot_*.c (ISA chosen once at creation). Every op computes
 * each output element with one fixed order that does not depend on the batch size or thread count
 * (batch invariance: the server's determinism rests on it). Driven by one thread at a time. */
#include "kern_claq.h"
#include "kern_cpu_impl.h"
#include "kern_half.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Rows per matmul task: small enough to balance 2..16 workers, large enough to amortize dispatch. */
#define KERN_CPU_ROWS_PER_TASK 16

/* Below this many multiply-adds a job runs on the calling thread: waking workers costs more than
 * it saves (tiny models decode several times faster this way). Results do not depend on it. */
#define KERN_CPU_INLINE_WORK (1 << 15)
/* Four floats as one value (GCC/Clang vector extension): lane-wise IEEE operations, so a
 * division of four entries rounds each exactly as a scalar division would. */
typedef float v4f __attribute__((vector_size(16)));
/* Most query heads one attention task serves (a KV head's group; larger groups run per head). */
#define KERN_CPU_ATTN_MAX_GROUP 16

static int run_tasks(kern_cpu_ctx *c, int64_t n_tasks, int64_t work, kern_task_fn fn, void *arg)
{
    if (work < KERN_CPU_INLINE_WORK) {
        for (int64_t t = 0; t < n_tasks; t++) fn(arg, t, 0);
        return KERN_OK;
    }
    return kern_pool_run(c->pool, n_tasks, fn, arg);
}

/* The element-wise ops split a range of items (tokens, or runs of elements) over the pool: fn
 * handles [a, b). Each item's arithmetic is the same whoever runs it, so the split never changes a
 * bit. Inline below KERN_CPU_INLINE_WORK (cost = items x per-item work). */
typedef void (*range_fn)(const void *args, int64_t a, int64_t b);
typedef struct range_job {
    range_fn fn;
    const void *args;
    int64_t count, per_task;
} range_job;

static void range_task(void *arg, int64_t task, int worker)
{
    (void)worker;
    const range_job *j = arg;
    int64_t a = task * j->per_task, b = a + j->per_task < j->count ? a + j->per_task : j->count;
    j->fn(j->args, a, b);
}

static int run_range(kern_cpu_ctx *c, int64_t count, int64_t item_work, range_fn fn,
                     const void *args)
{
    if (count <= 0) return KERN_OK;
    range_job j = {fn, args, count, count};
    if (count * item_work >= KERN_CPU_INLINE_WORK && c->n_threads > 1) {
        int64_t want = 4 * (int64_t)c->n_threads;
        j.per_task = (count + want - 1) / want;
    }
    return run_tasks(c, (count + j.per_task - 1) / j.per_task, count * item_work, range_task, &j);
}

void kern_cpu__exp_ref(const float *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = expf(x[i]);
}

kern_exp_fn kern_cpu__exp_fn(kern_isa isa)
{
    return isa == KERN_ISA_AVX512 ? kern_cpu__exp_avx512
           : isa == KERN_ISA_AVX2 ? kern_cpu__exp_avx2
                                  : kern_cpu__exp_ref;
}

int kern_cpu__scratch_reserve(kern_cpu_ctx *c, int64_t n)
{
    if (n <= c->scratch_floats) return KERN_OK;
    for (int i = 0; i < c->n_threads; i++) {
        float *p = realloc(c->scratch[i], (size_t)n * sizeof(float));
        if (!p) return KERN_E_NOMEM;
        c->scratch[i] = p;
    }
    c->scratch_floats = n;
    return KERN_OK;
}

/* ---- dense matmul ---- */
typedef struct matmul_job {
    const kern_matrix *w;
    const float *x;
    float *y;
    int n;
    kern_dot_fn dot;
    kern_dot4_fn dot4;     /* may be NULL */
} matmul_job;

static void matmul_task(void *arg, int64_t task, int worker)
{
    (void)worker;
    const matmul_job *j = arg;
    int64_t rows = j->w->rows, cols = j->w->cols;
    int64_t r0 = task * KERN_CPU_ROWS_PER_TASK, r1 = r0 + KERN_CPU_ROWS_PER_TASK;
    if (r1 > rows) r1 = rows;
    size_t esz = kern_dtype_size(j->w->dtype);
    const char *base = j->w->data;
    for (int64_t r = r0; r < r1; r++) {
        const void *wr = base + (size_t)r * (size_t)cols * esz;
        int t = 0;
        if (j->dot4)
            for (; t + 4 <= j->n; t += 4) {
                float o[4];
                j->dot4(wr, j->x + (int64_t)t * cols, cols, cols, o);
                for (int k = 0; k < 4; k++) j->y[(int64_t)(t + k) * rows + r] = o[k];
            }
        for (; t < j->n; t++) j->y[(int64_t)t * rows + r] = j->dot(wr, j->x + (int64_t)t * cols, cols);
        if (j->w->dtype == KERN_Q8_ROW) {   /* the row's scale, after its sum */
            float sc;
            memcpy(&sc, base + (size_t)rows * (size_t)cols + (size_t)r * 4, 4);
            for (t = 0; t < j->n; t++) j->y[(int64_t)t * rows + r] *= sc;
        }
    }
}

static int cpu_matmul(void *ctx, const kern_matrix *w, const float *x, int n, float *y)
{
    kern_cpu_ctx *c = ctx;
    if (w->dtype == KERN_CLAQ) return kern_cpu__matmul_claq(c, w, x, n, y);
    if (c->offline && n >= KERN_CPU_BLAS_MIN_N && w->dtype != KERN_Q8_ROW)
        return kern_cpu__matmul_blas(c, w, x, n, y);
    matmul_job j = {w, x, y, n, kern_cpu__dot_fn(c->isa, w->dtype), kern_cpu__dot4_fn(c->isa, w->dtype)};
    if (!j.dot) return KERN_E_UNSUPPORTED;
    int64_t tasks = (w->rows + KERN_CPU_ROWS_PER_TASK - 1) / KERN_CPU_ROWS_PER_TASK;
    return run_tasks(c, tasks, w->rows * w->cols * n, matmul_task, &j);
}

static int cpu_embed(void *ctx, const kern_matrix *t, const int32_t *ids, int n, float *out)
{
    (void)ctx;
    int64_t cols = t->cols;
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->rows) return KERN_E_INVAL;
    for (int i = 0; i < n; i++) {
        float *o = out + (int64_t)i * cols;
        if (t->dtype == KERN_F32) {
            memcpy(o, (const float *)t->data + (int64_t)ids[i] * cols, (size_t)cols * sizeof(float));
        } else if (t->dtype == KERN_F16 || t->dtype == KERN_BF16) {
            const uint16_t *row = (const uint16_t *)t->data + (int64_t)ids[i] * cols;
            for (int64_t k = 0; k < cols; k++)
                o[k] = t->dtype == KERN_F16 ? kern_f16_to_f32(row[k]) : kern_bf16_to_f32(row[k]);
        } else if (t->dtype == KERN_CLAQ) {
            /* a tied packed head gathered as the embedding: the row's codes through their
             * codebooks, then its outliers (the weights eng_claq_unpack gives) */
            const kern_claq *k = t->claq;
            for (int64_t s = 0; s < k->cols_pad; s++) {
                const uint32_t j = k->colmap[s];
                if (j != KERN_CLAQ_PAD)
                    o[j] = kern_f16_to_f32(k->cb[kern_claq_cb_offset(k, s) +
                                                 kern_claq_code(k, ids[i], s)]);
            }
            for (uint32_t e = k->out_rowptr[ids[i]]; e < k->out_rowptr[ids[i] + 1]; e++)
                o[k->colmap[kern_claq_out_col(k, e)]] = kern_f16_to_f32(k->out_val[e]);
        } else if (t->dtype == KERN_Q8_ROW) {
            const int8_t *row = (const int8_t *)t->data + (int64_t)ids[i] * cols;
            float sc;   /* the scales follow the codes; unaligned in general */
            memcpy(&sc, (const char *)t->data + t->rows * cols + (int64_t)ids[i] * 4, 4);
            for (int64_t k = 0; k < cols; k++)
                o[k] = (float)row[k] * sc;
        } else {
            return KERN_E_UNSUPPORTED;
        }
    }
    return KERN_OK;
}

typedef struct rmsnorm_args {
    const float *x, *w;
    int dim;
    float eps;
    float *out;
} rmsnorm_args;

static void rmsnorm_range(const void *args, int64_t a, int64_t b)
{
    const rmsnorm_args *r = args;
    const float *x = r->x, *w = r->w;
    float *out = r->out, eps = r->eps;
    int dim = r->dim;
    for (int64_t t = a; t < b; t++) {
        const float *xt = x + (int64_t)t * dim;
        float *ot = out + (int64_t)t * dim;
        float ss = 0.0f;
        for (int i = 0; i < dim; i++) ss += xt[i] * xt[i];
        ss /= (float)dim;
        ss += eps;
        ss = 1.0f / sqrtf(ss);
        for (int i = 0; i < dim; i++) ot[i] = w[i] * (ss * xt[i]);
    }
}

static int cpu_rmsnorm(void *ctx, const float *x, const float *w, int n, int dim, float eps, float *out)
{
    rmsnorm_args r = {x, w, dim, eps, out};
    return run_range(ctx, n, 2 * (int64_t)dim, rmsnorm_range, &r);
}

typedef struct rope_args {
    float *x;
    const int32_t *pos;
    int n_heads, head_dim;
    float theta;
    const float *freq_tab;
    kern_rope_style style;
} rope_args;

static void rope_range(const void *args, int64_t a, int64_t b)
{
    const rope_args *r = args;
    float *x = r->x, theta = r->theta;
    const int32_t *pos = r->pos;
    const float *freq_tab = r->freq_tab;
    int n_heads = r->n_heads, head_dim = r->head_dim, half = head_dim / 2;
    kern_rope_style style = r->style;
    float cs[512], sn[512]; /* head_dim <= 1024 (checked by cpu_rope) */
    for (int64_t t = a; t < b; t++) {
        for (int i = 0; i < half; i++) {
            /* the llama2.c formula, so its reference text reproduces exactly */
            float freq = freq_tab ? freq_tab[i]
                                  : 1.0f / powf(theta, (float)(2 * i) / (float)head_dim);
            float val = (float)pos[t] * freq;
            cs[i] = cosf(val);
            sn[i] = sinf(val);
        }
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((int64_t)t * n_heads + h) * head_dim;
            for (int i = 0; i < half; i++) {
                int ia = style == KERN_ROPE_INTERLEAVED ? 2 * i : i;
                int ib = style == KERN_ROPE_INTERLEAVED ? 2 * i + 1 : i + half;
                float v0 = v[ia], v1 = v[ib];
                v[ia] = v0 * cs[i] - v1 * sn[i];
                v[ib] = v0 * sn[i] + v1 * cs[i];
            }
        }
    }
}

static int cpu_rope(void *ctx, float *x, const int32_t *pos, int n, int n_heads, int head_dim,
                    float theta, const float *freq_tab, kern_rope_style style)
{
    if (head_dim / 2 > 512) return KERN_E_INVAL;
    rope_args r = {x, pos, n_heads, head_dim, theta, freq_tab, style};
    return run_range(ctx, n, 4 * (int64_t)n_heads * head_dim, rope_range, &r);
}

typedef struct swiglu_args {
    const float *gate, *up;
    float *out;
    kern_exp_fn exp;
} swiglu_args;

/* Elements per range item of the element-wise ops. */
#define KERN_CPU_ELEMS_PER_ITEM 1024

/* out = g * (1 / (1 + expf(-g))) * up per element, the exps an item at a time. */
static void swiglu_range(const void *args, int64_t a, int64_t b)
{
    const swiglu_args *r = args;
    float e[KERN_CPU_ELEMS_PER_ITEM];
    for (int64_t it = a; it < b; it++) {
        const int64_t i0 = it * KERN_CPU_ELEMS_PER_ITEM;
        for (int i = 0; i < KERN_CPU_ELEMS_PER_ITEM; i++) e[i] = -r->gate[i0 + i];
        r->exp(e, e, KERN_CPU_ELEMS_PER_ITEM);
        for (int i = 0; i < KERN_CPU_ELEMS_PER_ITEM; i++) {
            float g = r->gate[i0 + i];
            r->out[i0 + i] = g * (1.0f / (1.0f + e[i])) * r->up[i0 + i];
        }
    }
}

static int cpu_swiglu(void *ctx, const float *gate, const float *up, int64_t count, float *out)
{
    /* whole items on the pool, the tail here */
    int64_t items = count / KERN_CPU_ELEMS_PER_ITEM;
    swiglu_args r = {gate, up, out, kern_cpu__exp_fn(((kern_cpu_ctx *)ctx)->isa)};
    int rc = run_range(ctx, items, 16 * KERN_CPU_ELEMS_PER_ITEM, swiglu_range, &r);
    for (int64_t i = items * KERN_CPU_ELEMS_PER_ITEM; i < count; i++) {
        float g = gate[i];
        out[i] = g * (1.0f / (1.0f + expf(-g))) * up[i];
    }
    return rc;
}

/* ---- attention: one task per (token, group of query heads sharing a KV head) ----
 * The heads of a group read the same K and V rows: a task walks the positions once and serves
 * every head of its group from the row while it is in L1 (per-head tasks re-read each row once
 * per query head: ~50 GB for a 523-token TinyLlama prompt). Per head, the operations and their
 * order are those of one head alone, so the grouping never changes a bit; it is chosen only by
 * how many tasks the pool needs. The block table is walked once per task into row pointers;
 * scores go four heads per K row (dot4), and the weighted sums of V rows go four heads per V row
 * with the outputs in registers over all positions (wsum4; wsum for a remainder). */
typedef struct attn_job {
    const kern_attn_args *a;
    kern_cpu_ctx *c;
    int group;                      /* query heads per task (1 or heads per KV head) */
    kern_dot_fn dot;                /* q . k for the pool's entry type */
    kern_dot4_fn dot4;              /* four heads' q . k at once, same bits; may be NULL */
    kern_wsum_fn wsum;              /* sum over positions of weight x value row */
    kern_wsum4_fn wsum4;            /* the same for four heads, same bits; may be NULL */
    kern_exp_fn exp;                /* the softmax's exps */
} attn_job;

/* A worker's attention scratch, in floats: scores [group][max_pos], then the K and V row
 * pointers of every position [2][max_pos] (two floats each, 8-byte aligned). */
static int64_t attn_scratch_floats(int group, int max_pos)
{
    return ((int64_t)group * max_pos + 1) / 2 * 2 + 4 * (int64_t)max_pos;
}

static void attn_task(void *arg, int64_t task, int worker)
{
    const attn_job *j = arg;
    const kern_attn_args *a = j->a;
    int tasks_per_token = a->n_heads / j->group;
    int t = (int)(task / tasks_per_token), h0 = (int)(task % tasks_per_token) * j->group;
    int g = j->group, hd = a->head_dim, kvh = h0 / (a->n_heads / a->n_kv_heads);
    int kv_dim = a->n_kv_heads * hd;
    const float *q = a->q + ((int64_t)t * a->n_heads + h0) * hd;
    float *out = a->out + ((int64_t)t * a->n_heads + h0) * hd;
    int len = a->pos[t] + 1;
    float *att = j->c->scratch[worker];   /* [g][len] */
    const void **krow = (const void **)(void *)(att + ((int64_t)g * a->max_pos + 1) / 2 * 2);
    const void **vrow = krow + a->max_pos;
    const int32_t *bt = a->bt + (int64_t)(a->bt_row ? a->bt_row[t] : t) * a->bt_stride;
    float scale = 1.0f / sqrtf((float)hd);
    int64_t esz = (int64_t)kern_dtype_size(a->kv_dtype);
    for (int p0 = 0, b = 0; p0 < len; p0 += a->block_tokens, b++) {   /* the table walked once */
        int64_t e = ((int64_t)bt[b] * a->block_stride + (int64_t)kvh * hd) * esz;
        int pe = p0 + a->block_tokens < len ? p0 + a->block_tokens : len;
        for (int p = p0; p < pe; p++, e += (int64_t)kv_dim * esz) {
            krow[p] = (const char *)a->k_base + e;
            vrow[p] = (const char *)a->v_base + e;
        }
    }
    float mx[KERN_CPU_ATTN_MAX_GROUP];
    for (int h = 0; h < g; h++) mx[h] = -INFINITY;
    for (int p = 0; p < len; p++) {
        float d[4];
        int h = 0;
        for (; j->dot4 && h + 4 <= g; h += 4) {   /* the row loaded once for four heads */
            j->dot4(krow[p], q + (int64_t)h * hd, hd, hd, d);
            for (int i = 0; i < 4; i++) {
                float s = d[i] * scale;
                att[(int64_t)(h + i) * len + p] = s;
                if (s > mx[h + i]) mx[h + i] = s;
            }
        }
        for (; h < g; h++) {
            float s = j->dot(krow[p], q + (int64_t)h * hd, hd) * scale;
            att[(int64_t)h * len + p] = s;
            if (s > mx[h]) mx[h] = s;
        }
    }
    /* exps, then each head's sum in position order, then a division per entry, four at a time:
     * the same roundings. The heads' sums run side by side (g independent chains: one sum alone
     * waited on each add's latency), each still in position order. */
    float sums[KERN_CPU_ATTN_MAX_GROUP];
    for (int h = 0; h < g; h++) {
        float *ah = att + (int64_t)h * len;
        for (int p = 0; p < len; p++) ah[p] -= mx[h];
        j->exp(ah, ah, len);
        sums[h] = 0.0f;
    }
    for (int p = 0; p < len; p++)
        for (int h = 0; h < g; h++) sums[h] += att[(int64_t)h * len + p];
    for (int h = 0; h < g; h++) {
        float *ah = att + (int64_t)h * len, sum = sums[h];
        int p = 0;
        for (; p + 4 <= len; p += 4) {
            v4f q;
            memcpy(&q, ah + p, sizeof q);
            q = q / sum;
            memcpy(ah + p, &q, sizeof q);
        }
        for (; p < len; p++) ah[p] /= sum;
    }
    int h = 0;
    for (; j->wsum4 && h + 4 <= g; h += 4)   /* each V row loaded once for four heads */
        j->wsum4(out + (int64_t)h * hd, hd, att + (int64_t)h * len, len,
                 (const void *const *)vrow, len, hd);
    for (; h < g; h++)
        j->wsum(out + (int64_t)h * hd, att + (int64_t)h * len, (const void *const *)vrow, len, hd);
}

static int cpu_attention(void *ctx, const kern_attn_args *a)
{
    kern_cpu_ctx *c = ctx;
    for (int t = 0; t < a->n; t++)
        if (a->pos[t] < 0 || a->pos[t] >= a->max_pos) return KERN_E_INVAL;
    if (a->n_kv_heads <= 0 || a->n_heads % a->n_kv_heads) return KERN_E_INVAL;
    /* Whole groups when there is at least one per thread (a prompt, a batch, a decode token on
     * few threads); single heads otherwise, so every thread has work (a lone decode token of a
     * GQA model on many threads). Grouping decode on 2 threads: 5.9 -> 3.4-4.2 ms of attention
     * per token of the 3-bit TinyLlama at ~550 positions (claq generate --profile). */
    int ratio = a->n_heads / a->n_kv_heads;
    int group = ratio <= KERN_CPU_ATTN_MAX_GROUP &&
                (int64_t)a->n * a->n_kv_heads >= (int64_t)c->n_threads ? ratio : 1;
    int rc = kern_cpu__scratch_reserve(c, attn_scratch_floats(group, a->max_pos));
    if (rc) return rc;
    attn_job j = {a, c, group, kern_cpu__dot_fn(c->isa, a->kv_dtype),
                  kern_cpu__dot4_fn(c->isa, a->kv_dtype), kern_cpu__wsum_fn(c->isa, a->kv_dtype),
                  kern_cpu__wsum4_fn(c->isa, a->kv_dtype), kern_cpu__exp_fn(c->isa)};
    if (!j.dot || !j.wsum) return KERN_E_UNSUPPORTED;
    int64_t work = 0;
    for (int t = 0; t < a->n; t++) work += (int64_t)(a->pos[t] + 1) * a->n_heads * a->head_dim * 2;
    return run_tasks(c, (int64_t)a->n * (a->n_heads / group), work, attn_task, &j);
}

static int cpu_add(void *ctx, float *x, const float *y, int64_t count)
{
    (void)ctx;
    for (int64_t i = 0; i < count; i++) x[i] += y[i];
    return KERN_OK;
}

static int cpu_kv_write(void *ctx, const kern_kv_write_args *a)
{
    size_t esz = kern_dtype_size(a->kv_dtype);
    for (int t = 0; t < a->n; t++)
        if (a->slot[t] < 0) return KERN_E_INVAL;
    if (a->rope_pos) {   /* the step's RoPE first: the same rotation as the rope op */
        int rc = cpu_rope(ctx, a->q, a->rope_pos, a->n, a->n_heads, a->head_dim, a->theta,
                          a->freq, a->style);
        if (!rc)
            rc = cpu_rope(ctx, a->k, a->rope_pos, a->n, a->kv_dim / a->head_dim, a->head_dim,
                          a->theta, a->freq, a->style);
        if (rc) return rc;
    }
    for (int t = 0; t < a->n; t++) {
        int64_t off = ((int64_t)(a->slot[t] / a->block_tokens) * a->block_stride +
                       (int64_t)(a->slot[t] % a->block_tokens) * a->kv_dim) * (int64_t)esz;
        const float *k = a->k + (int64_t)t * a->kv_dim, *v = a->v + (int64_t)t * a->kv_dim;
        char *kd = (char *)a->k_base + off, *vd = (char *)a->v_base + off;
        if (a->kv_dtype == KERN_F16) {
            uint16_t *kh = (uint16_t *)(void *)kd, *vh = (uint16_t *)(void *)vd;
            for (int i = 0; i < a->kv_dim; i++) {
                kh[i] = kern_f32_to_f16(k[i]);
                vh[i] = kern_f32_to_f16(v[i]);
            }
        } else {
            memcpy(kd, k, (size_t)a->kv_dim * sizeof(float));
            memcpy(vd, v, (size_t)a->kv_dim * sizeof(float));
        }
    }
    return KERN_OK;
}

static int cpu_copy_rows(void *ctx, const float *src, const int32_t *rows, int n, int dim,
                         float *dst)
{
    (void)ctx;
    for (int i = 0; i < n; i++) {
        if (rows[i] < 0) return KERN_E_INVAL;
        memmove(dst + (int64_t)i * dim, src + (int64_t)rows[i] * dim, (size_t)dim * sizeof(float));
    }
    return KERN_OK;
}

static int cpu_argmax(void *ctx, const float *x, int n, int cols, int32_t *out)
{
    (void)ctx;
    for (int t = 0; t < n; t++) {
        const float *r = x + (int64_t)t * cols;
        int32_t best = -1;
        float bv = 0.0f;
        for (int i = 0; i < cols; i++) {
            float v = r[i];
            if (isnan(v) || v == -INFINITY) continue;
            if (v == INFINITY) v = 3.0e38f;
            if (best < 0 || v > bv) {
                best = i;
                bv = v;
            }
        }
        out[t] = best;
    }
    return KERN_OK;
}

static int cpu_supports(void *ctx, kern_dtype t)
{
    (void)ctx;
    return t == KERN_F32 || t == KERN_F16 || t == KERN_BF16 || t == KERN_CLAQ || t == KERN_Q8_ROW;
}

static void cpu_destroy(void *ctx)
{
    kern_cpu_ctx *c = ctx;
    if (!c) return;
    kern_pool_destroy(c->pool);
    if (c->scratch)
        for (int i = 0; i < c->n_threads; i++) free(c->scratch[i]);
    free(c->scratch);
    free(c->wide);
    free(c);
}

static int cpu_matmul_bf16(void *ctx, const kern_matrix *w, const float *x, int n, float *y)
{
    if (w->dtype != KERN_CLAQ) return KERN_E_UNSUPPORTED;   /* dense: the caller runs matmul */
    return kern_cpu__matmul_claq_bf16(ctx, w, x, n, y);
}

static const kern_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .matmul = cpu_matmul,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .rope = cpu_rope,
    .swiglu = cpu_swiglu,
    .attention = cpu_attention,
    .add = cpu_add,
    .kv_write = cpu_kv_write,
    .copy_rows = cpu_copy_rows,
    .argmax = cpu_argmax,
    .matmul_bf16 = cpu_matmul_bf16,
    .upload = NULL,
    .release = NULL,
    .supports = cpu_supports,
    .xfer_stats = NULL,
};

int kern_cpu_backend_create(kern_backend *out, int n_threads)
{
    memset(out, 0, sizeof *out);
    if (n_threads <= 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = nc > 0 ? (int)nc : 1;
    }
    kern_cpu_ctx *c = calloc(1, sizeof *c);
    if (!c) return KERN_E_NOMEM;
    c->isa = kern_cpu_detect_isa();
    c->bf16 = kern_cpu_has_bf16(c->isa);
    int rc = kern_pool_create(&c->pool, n_threads);
    if (rc) { free(c); return rc; }
    c->n_threads = kern_pool_threads(c->pool);
    c->scratch = calloc((size_t)c->n_threads, sizeof(float *));
    if (!c->scratch) { cpu_destroy(c); return KERN_E_NOMEM; }
    out->ops = &cpu_ops;
    out->ctx = c;
    out->prof = NULL;
    return KERN_OK;
}

int kern_cpu_backend_set_offline(kern_backend *b, int on)
{
    if (!b || b->ops != &cpu_ops) return KERN_E_INVAL;
    ((kern_cpu_ctx *)b->ctx)->offline = on != 0;
    return KERN_OK;
}

int kern_cpu_bf16(const kern_backend *b)
{
    return b && b->ops == &cpu_ops && ((const kern_cpu_ctx *)b->ctx)->bf16;
}

const char *kern_cpu_isa_name(const kern_backend *b)
{
    if (!b || b->ops != &cpu_ops) return "n/a";
    return kern_isa_name(((const kern_cpu_ctx *)b->ctx)->isa);
}
