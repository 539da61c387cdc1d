/* kern_cpu_claq.c — packed CLAQ matmul on the CPU: picks the ISA's tile kernels, splits row
 * tiles over the pool, has each worker build the per-token lookup tables in its own scratch on
 * its first task of the call (a table built by another core had to cross the caches: two
 * threads gained only 1.1-1.5x on 4096-row matrices), and
 * adds the outliers (row-CSR) after each tile range's dense pass. Below the ISA's GEMM threshold
 * (kern_claq_fns.gemm_min_n: 4 tokens on AVX2, 8 on AVX-512) it runs the LUT GEMV (one lookup +
 * add per weight); from there on it
 * dequantizes a tile block once and multiplies every token by it (same fp32 operations,
 * kern_cpu_claq.h), in chunks of KERN_CPU_CLAQ_GEMM_CHUNK tokens over inputs the pool first
 * gathers block-major; the scalar ISA runs the GEMV in 8-token chunks. The opt-in bfloat16 GEMM
 * (kern_cpu__claq_matmul_bf16_run, kern.h matmul_bf16) shares the tile loop, the gather and the
 * outliers, with bf16 inputs and codebooks in place of the fp32 ones, for any number of tokens.
 * Called on the engine's step thread; the tile tasks run on the pool's workers. */
#include "kern_cpu_claq.h"

#include <stdlib.h>
#include <string.h>

kern_claq_fns kern_cpu__claq_fns(kern_isa isa)
{
    /* The scalar ISA runs batches through the GEMV per token (same bits either way); the
     * reference GEMM stays for the tests. */
    kern_claq_fns f = {kern_cpu__claq_lut_ref, kern_cpu__claq_gemv_ref, NULL, 0};
    if (isa == KERN_ISA_AVX2) {
        f.lut = kern_cpu__claq_lut_avx2;
        f.gemv = kern_cpu__claq_gemv_avx2;
        f.gemm = kern_cpu__claq_gemm_tile_avx2;
        f.gemm_min_n = KERN_CPU_CLAQ_GEMM_MIN_N_AVX2;
    } else if (isa == KERN_ISA_AVX512) {
        f.lut = kern_cpu__claq_lut_avx512;
        f.gemv = kern_cpu__claq_gemv_avx512;
        f.gemm = kern_cpu__claq_gemm_tile_avx512;
        f.gemm_min_n = KERN_CPU_CLAQ_GEMM_MIN_N_AVX512;
    }
    return f;
}

kern_claq_bf16_fns kern_cpu__claq_bf16_fns(int avx512bf16)
{
    kern_claq_bf16_fns f = {kern_cpu__claq_block_bf16_ref, kern_cpu__claq_gemm_bf16_tile_ref};
    if (avx512bf16) {
        f.to_bf16 = kern_cpu__claq_block_bf16_avx512;
        f.gemm = kern_cpu__claq_gemm_bf16_tile_avx512;
    }
    return f;
}

void kern_cpu__claq_gemv_walk(const kern_claq *k, const kern_claq_gemv_items *items,
                              const float *lut, int n, int64_t t0, int64_t t1, float *y)
{
    const int64_t nt = t1 - t0, ystride = nt * KERN_CLAQ_ROW_TILE;
    const int64_t tile_words = KERN_CLAQ_ROW_TILE * k->words_per_row;
    int64_t blk0 = 0;
    for (int b = 4; b >= 2; b--) {
        const int64_t nb = k->nblk_bits[b];
        for (int64_t c0 = 0; c0 < nb; c0 += KERN_CPU_CLAQ_GEMV_CHUNK) {
            const int64_t blk = blk0 + c0, left = nb - c0;
            const int64_t cn = left < KERN_CPU_CLAQ_GEMV_CHUNK ? left : KERN_CPU_CLAQ_GEMV_CHUNK;
            const int64_t bw = kern_claq_block_words(k, blk);
            /* The item after next: two tiles on, or early in the next chunk. */
            const int64_t bw_next = kern_claq_block_words(k, blk + cn < kern_claq_nblocks(k) ?
                                                          blk + cn : blk);
            for (int64_t t = t0; t < t1; t++) {
                const int64_t rt = kern_claq_tile_rows(k, t);
                const uint32_t *p = k->codes + t * tile_words + rt * bw;
                int64_t tp = t + 2 < t1 ? t + 2 : t0 + (t + 2 - t1);
                if (tp >= t1) tp = t0;
                const int64_t pbw = t + 2 < t1 ? bw : bw_next;
                const char *pf = (const char *)(k->codes + tp * tile_words +
                                                kern_claq_tile_rows(k, tp) * pbw);
                kern_claq_gemv_item_fn f = (*items)[b][rt / 16];
                const float *l = lut + blk * 16 * KERN_CLAQ_COL_BLOCK;
                for (int tok = 0; tok < n; tok++)
                    f(p, rt, cn, l + (int64_t)tok * k->cols_pad * 16, pf, blk == 0,
                      y + tok * ystride + (t - t0) * KERN_CLAQ_ROW_TILE);
            }
        }
        blk0 += nb;
    }
}

static int use_gemm(kern_isa isa, int n)
{
    const kern_claq_fns f = kern_cpu__claq_fns(isa);
    return f.gemm != NULL && n >= f.gemm_min_n;
}

int64_t kern_cpu__claq_shared_floats(const kern_claq *k, int n)
{
    /* GEMM only (GEMV tables are per worker): block-major xs of every token, fp32 codebooks, a
     * dummy xs and an all-ones x. Sized whenever n allows the GEMM, so the answer does not
     * depend on the ISA; at least one float so the buffer always exists. */
    int64_t cp = k->cols_pad;
    int64_t gemm = (int64_t)n * cp + cp * 16 + cp + k->cols;
    return n >= KERN_CPU_CLAQ_GEMM_MIN_N_ANY ? gemm : 1;
}

/* Floats of the bf16 GEMM's inputs, [n][cols_pad] bf16 (two per float: cols_pad is even). */
static int64_t bf16_inputs_floats(const kern_claq *k, int n)
{
    return (int64_t)n * k->cols_pad / 2;
}

int64_t kern_cpu__claq_bf16_shared_floats(const kern_claq *k, int n)
{
    /* the inputs, then the codebooks' words [cols_pad * 16] */
    return bf16_inputs_floats(k, n) + k->cols_pad * 16;
}

/* Floats of a worker's GEMV tables: xs [m][cols_pad] then LUTs [m][cols_pad * 16]. */
static int64_t gemv_tables_floats(const kern_claq *k, int n)
{
    int64_t m = n < KERN_CPU_CLAQ_GEMV_MAX_N ? n : KERN_CPU_CLAQ_GEMV_MAX_N;
    return m * k->cols_pad * 17;
}

int64_t kern_cpu__claq_priv_floats(const kern_claq *k, int n)
{
    /* GEMV tables, then tile outputs: GEMM [n][64]; GEMV [min(n, 8)][GEMV_TILES * 64]. */
    int64_t gemm = (int64_t)n * KERN_CLAQ_ROW_TILE;
    int64_t m = n < KERN_CPU_CLAQ_GEMV_MAX_N ? n : KERN_CPU_CLAQ_GEMV_MAX_N;
    int64_t gemv = m * KERN_CPU_CLAQ_GEMV_TILES * KERN_CLAQ_ROW_TILE;
    return gemv_tables_floats(k, n) + (gemm > gemv ? gemm : gemv) + KERN_CPU_CLAQ_GEMM_WORK +
           KERN_CLAQ_ROW_TILE;
}

typedef struct claq_job {
    const kern_claq *k;
    kern_claq_fns f;
    int n;
    int gemm;
    const float *x;         /* [n][cols] the inputs */
    const float *xb;        /* GEMM: [blocks][n][32] gathered inputs, block-major */
    const float *cbf;       /* GEMM: [cols_pad * 16] fp32 codebooks */
    const kern_claq_bf16_fns *bf;   /* the bfloat16 GEMM instead of the fp32 paths, or NULL */
    const uint16_t *xh;     /* bf16: [blocks][n][32] gathered inputs, block-major */
    const uint32_t *cbh;    /* bf16: [cols_pad * 16] parity-shifted codebooks */
    float *y;               /* [n][rows] */
    float *const *priv;     /* [workers]: GEMV tables (gemv_tables_floats), then tile outputs */
    int *built;             /* [workers]: this worker's GEMV tables are built for this call */
    int64_t tables;         /* gemv_tables_floats */
    int64_t tiles_per_task;
} claq_job;

/* y[r] += xs[col] * delta over each row's outliers, in ascending storage column. Four rows at a
 * time share the loop for their common length so four independent add chains overlap (each
 * row's own order is unchanged); the leftovers finish one row at a time. */
static void add_outliers(const kern_claq *k, const float *xs, int64_t ra, int64_t rb, float *y)
{
    const uint32_t *rp = k->out_rowptr;
    const float *d = k->out_delta;
    int64_t r = ra;
    if (k->out_col16) {
        const uint16_t *oc = k->out_col16;
        for (; r + 4 <= rb; r += 4) {
            uint32_t i0 = rp[r], i1 = rp[r + 1], i2 = rp[r + 2], i3 = rp[r + 3];
            uint32_t n0 = rp[r + 1] - i0, n1 = rp[r + 2] - i1, n2 = rp[r + 3] - i2,
                     n3 = rp[r + 4] - i3;
            uint32_t m = n0 < n1 ? n0 : n1;
            m = m < n2 ? m : n2;
            m = m < n3 ? m : n3;
            float a0 = y[r], a1 = y[r + 1], a2 = y[r + 2], a3 = y[r + 3];
            for (uint32_t q = 0; q < m; q++) {
                a0 += xs[oc[i0 + q]] * d[i0 + q];
                a1 += xs[oc[i1 + q]] * d[i1 + q];
                a2 += xs[oc[i2 + q]] * d[i2 + q];
                a3 += xs[oc[i3 + q]] * d[i3 + q];
            }
            for (uint32_t q = m; q < n0; q++) a0 += xs[oc[i0 + q]] * d[i0 + q];
            for (uint32_t q = m; q < n1; q++) a1 += xs[oc[i1 + q]] * d[i1 + q];
            for (uint32_t q = m; q < n2; q++) a2 += xs[oc[i2 + q]] * d[i2 + q];
            for (uint32_t q = m; q < n3; q++) a3 += xs[oc[i3 + q]] * d[i3 + q];
            y[r] = a0;
            y[r + 1] = a1;
            y[r + 2] = a2;
            y[r + 3] = a3;
        }
    }
    for (; r < rb; r++) {
        float acc = y[r];
        for (uint32_t i = rp[r]; i < rp[r + 1]; i++) acc += xs[kern_claq_out_col(k, i)] * d[i];
        y[r] = acc;
    }
}

/* xs[i] = x[colmap[s0 + i]] for i < m, 0 for padding: storage columns s0.. of one token. A run
 * of consecutive columns (the usual block: a width group's columns ascend) is one copy. */
static void gather_cols(const kern_claq *k, const float *x, int64_t s0, int64_t m, float *xs)
{
    const uint32_t *cm = k->colmap + s0;
    int run = m > 0 && cm[0] != KERN_CLAQ_PAD;
    for (int64_t i = 1; run && i < m; i++) run = cm[i] == cm[0] + (uint32_t)i;
    if (run) {
        memcpy(xs, x + cm[0], (size_t)m * sizeof(float));
        return;
    }
    for (int64_t i = 0; i < m; i++) xs[i] = cm[i] == KERN_CLAQ_PAD ? 0.0f : x[cm[i]];
}

/* The GEMM's block-major inputs, a range of column blocks per task (written in order). */
typedef struct gather_job {
    const kern_claq *k;
    const float *x;
    int n;
    float *xb;
    uint16_t *xh;                          /* bf16 inputs instead of xb, through to_bf16 */
    kern_claq_block_bf16_fn to_bf16;
    int64_t per_task;
} gather_job;

static void gather_task(void *arg, int64_t task, int worker)
{
    (void)worker;
    const gather_job *g = arg;
    const kern_claq *k = g->k;
    const int64_t nblk = k->cols_pad / KERN_CLAQ_COL_BLOCK;
    int64_t b0 = task * g->per_task, b1 = b0 + g->per_task < nblk ? b0 + g->per_task : nblk;
    float xs[KERN_CLAQ_COL_BLOCK];
    for (int64_t b = b0; b < b1; b++)
        for (int tok = 0; tok < g->n; tok++) {
            const int64_t at = (b * g->n + tok) * KERN_CLAQ_COL_BLOCK;
            gather_cols(k, g->x + (int64_t)tok * k->cols, b * KERN_CLAQ_COL_BLOCK,
                        KERN_CLAQ_COL_BLOCK, g->xh ? xs : g->xb + at);
            if (g->xh) g->to_bf16(xs, g->xh + at);
        }
}

static int gather_inputs(kern_pool *pool, int n_workers, gather_job g)
{
    const kern_claq *k = g.k;
    int64_t nblk = k->cols_pad / KERN_CLAQ_COL_BLOCK, want = 4 * (int64_t)n_workers;
    g.per_task = (nblk + want - 1) / want;
    int64_t tasks = (nblk + g.per_task - 1) / g.per_task;
    if (!pool) {
        for (int64_t t = 0; t < tasks; t++) gather_task(&g, t, 0);
        return KERN_OK;
    }
    return kern_pool_run(pool, tasks, gather_task, &g);
}

static void claq_task(void *arg, int64_t task, int worker)
{
    const claq_job *j = arg;
    const kern_claq *k = j->k;
    int64_t t0 = task * j->tiles_per_task;
    int64_t t1 = t0 + j->tiles_per_task < k->n_tiles ? t0 + j->tiles_per_task : k->n_tiles;
    float *tmp = j->priv[worker] + j->tables;
    const float *xs = NULL, *lut = NULL;
    if (!j->gemm) {
        /* GEMV: this worker's own copy of the tables, built on its first task of the call */
        int64_t cp = k->cols_pad;
        float *wxs = j->priv[worker], *wlut = wxs + (int64_t)j->n * cp;
        if (!j->built[worker]) {
            for (int tok = 0; tok < j->n; tok++)
                j->f.lut(k, j->x + (int64_t)tok * k->cols, wxs + (int64_t)tok * cp,
                         wlut + (int64_t)tok * cp * 16);
            j->built[worker] = 1;
        }
        xs = wxs;
        lut = wlut;
    }
    /* GEMM: one tile at a time; GEMV: up to KERN_CPU_CLAQ_GEMV_TILES tiles per kernel call. */
    int64_t step = j->gemm ? 1 : KERN_CPU_CLAQ_GEMV_TILES;
    for (int64_t ta = t0; ta < t1; ta += step) {
        int64_t tb = ta + step < t1 ? ta + step : t1;
        int64_t r0 = ta * KERN_CLAQ_ROW_TILE;
        int64_t rend = tb * KERN_CLAQ_ROW_TILE < k->rows ? tb * KERN_CLAQ_ROW_TILE : k->rows;
        if (rend <= r0) break;
        int64_t ystride = (tb - ta) * KERN_CLAQ_ROW_TILE;
        if (!j->gemm) {
            j->f.gemv(k, lut, j->n, ta, tb, tmp);
            for (int tok = 0; tok < j->n; tok++)
                memcpy(j->y + (int64_t)tok * k->rows + r0, tmp + tok * ystride,
                       (size_t)(rend - r0) * sizeof(float));
            continue;
        }
        for (int c0 = 0; c0 < j->n; c0 += KERN_CPU_CLAQ_GEMM_CHUNK) {
            int m = j->n - c0 < KERN_CPU_CLAQ_GEMM_CHUNK ? j->n - c0 : KERN_CPU_CLAQ_GEMM_CHUNK;
            float *work = tmp + (int64_t)m * KERN_CLAQ_ROW_TILE;
            if (j->bf)
                j->bf->gemm(k, j->cbh, j->xh + (int64_t)c0 * KERN_CLAQ_COL_BLOCK, j->n, m, ta,
                            tmp, work);
            else
                j->f.gemm(k, j->cbf, j->xb + (int64_t)c0 * KERN_CLAQ_COL_BLOCK, j->n, m, ta, tmp,
                          work);
            for (int tok = 0; tok < m; tok++)
                memcpy(j->y + (int64_t)(c0 + tok) * k->rows + r0, tmp + tok * ystride,
                       (size_t)(rend - r0) * sizeof(float));
        }
    }
    /* Outliers of this task's rows, ascending storage column per row (fixed order). */
    int64_t ra = t0 * KERN_CLAQ_ROW_TILE;
    int64_t rb = t1 * KERN_CLAQ_ROW_TILE < k->rows ? t1 * KERN_CLAQ_ROW_TILE : k->rows;
    if (k->nnz == 0 || ra >= rb) return;
    for (int tok = 0; tok < j->n; tok++) {
        const float *xt = xs ? xs + (int64_t)tok * k->cols_pad : NULL;
        if (j->gemm) {   /* the GEMV tables' room is free: gather the token's inputs there */
            gather_cols(k, j->x + (int64_t)tok * k->cols, 0, k->cols_pad, j->priv[worker]);
            xt = j->priv[worker];
        }
        add_outliers(k, xt, ra, rb, j->y + (int64_t)tok * k->rows);
    }
}

/* Splits j's row tiles over the pool: a few tasks per worker so the dynamic scheduler can
 * balance uneven cores. */
static int run_tiles(kern_pool *pool, int n_workers, claq_job *j)
{
    const kern_claq *k = j->k;
    int64_t want = (int64_t)n_workers * 4;
    j->tiles_per_task = (k->n_tiles + want - 1) / want;
    if (j->tiles_per_task < 1) j->tiles_per_task = 1;
    int64_t n_tasks = (k->n_tiles + j->tiles_per_task - 1) / j->tiles_per_task;
    if (!pool) {
        for (int64_t t = 0; t < n_tasks; t++) claq_task(j, t, 0);
        return KERN_OK;
    }
    return kern_pool_run(pool, n_tasks, claq_task, j);
}

int kern_cpu__claq_matmul_run(kern_isa isa, kern_pool *pool, int n_workers, float *shared,
                              float *const *priv, const kern_claq *k, const float *x, int n,
                              float *y)
{
    if (!k || !x || !y || n <= 0 || !shared || !priv || n_workers <= 0 ||
        (k->nnz > 0 && !k->out_delta))
        return KERN_E_INVAL;
    if (!use_gemm(isa, n) && n > KERN_CPU_CLAQ_GEMV_MAX_N) {
        /* GEMV path for a big batch (no SIMD GEMM on this ISA): chunks bound the LUT memory;
         * per-token results do not depend on the chunking. */
        for (int t0 = 0; t0 < n; t0 += KERN_CPU_CLAQ_GEMV_MAX_N) {
            int m = n - t0 < KERN_CPU_CLAQ_GEMV_MAX_N ? n - t0 : KERN_CPU_CLAQ_GEMV_MAX_N;
            int rc = kern_cpu__claq_matmul_run(isa, pool, n_workers, shared, priv, k,
                                               x + (int64_t)t0 * k->cols, m,
                                               y + (int64_t)t0 * k->rows);
            if (rc) return rc;
        }
        return KERN_OK;
    }
    if (n_workers > KERN_CPU_CLAQ_MAX_WORKERS) return KERN_E_INVAL;
    int built[KERN_CPU_CLAQ_MAX_WORKERS] = {0};
    claq_job j = {.k = k, .f = kern_cpu__claq_fns(isa), .n = n, .gemm = use_gemm(isa, n), .x = x,
                  .y = y, .priv = priv, .built = built, .tables = gemv_tables_floats(k, n)};
    int64_t cp = k->cols_pad;
    if (j.gemm) {
        float *xb = shared, *cbf = xb + (int64_t)n * cp, *dummy = cbf + cp * 16;
        float *ones = dummy + cp;
        for (int64_t c = 0; c < k->cols; c++) ones[c] = 1.0f;
        j.f.lut(k, ones, dummy, cbf);
        int rc = gather_inputs(pool, n_workers, (gather_job){.k = k, .x = x, .n = n, .xb = xb});
        if (rc) return rc;
        j.xb = xb;
        j.cbf = cbf;
    }
    return run_tiles(pool, n_workers, &j);
}

int kern_cpu__claq_matmul_bf16_run(kern_claq_bf16_fns fns, kern_pool *pool, int n_workers,
                                   float *shared, float *const *priv, const kern_claq *k,
                                   const float *x, int n, float *y)
{
    if (!k || !x || !y || n <= 0 || !shared || !priv || n_workers <= 0 ||
        n_workers > KERN_CPU_CLAQ_MAX_WORKERS || (k->nnz > 0 && !k->out_delta))
        return KERN_E_INVAL;
    /* Every batch size takes the GEMM: the bf16 numerics have no GEMV twin to agree with. The
     * tile loop runs in chunks of KERN_CPU_CLAQ_GEMM_CHUNK tokens as the fp32 GEMM does. */
    claq_job j = {.k = k, .n = n, .gemm = 1, .x = x, .y = y, .priv = priv, .bf = &fns,
                  .tables = gemv_tables_floats(k, n)};
    uint16_t *xh = (uint16_t *)shared;
    uint32_t *cbh = (uint32_t *)shared + bf16_inputs_floats(k, n);
    kern_cpu__claq_cb_bf16(k, cbh);
    int rc = gather_inputs(pool, n_workers, (gather_job){.k = k, .x = x, .n = n, .xh = xh,
                                                         .to_bf16 = fns.to_bf16});
    if (rc) return rc;
    j.xh = xh;
    j.cbh = cbh;
    return run_tiles(pool, n_workers, &j);
}

/* The fp32 or the bf16 matmul (the AVX-512 BF16 kernels when isa is AVX-512: the caller checked
 * the CPU has them), and the shared scratch each needs. */
static int64_t shared_floats(const kern_claq *k, int n, int bf16)
{
    return bf16 ? kern_cpu__claq_bf16_shared_floats(k, n) : kern_cpu__claq_shared_floats(k, n);
}

static int run_matmul(kern_isa isa, int bf16, kern_pool *pool, int workers, float *shared,
                      float *const *priv, const kern_claq *k, const float *x, int n, float *y)
{
    if (bf16)
        return kern_cpu__claq_matmul_bf16_run(kern_cpu__claq_bf16_fns(isa == KERN_ISA_AVX512),
                                              pool, workers, shared, priv, k, x, n, y);
    return kern_cpu__claq_matmul_run(isa, pool, workers, shared, priv, k, x, n, y);
}

/* The _isa conveniences: scratch allocated here, then the fp32 or the bf16 matmul. */
static int matmul_alloc(kern_isa isa, int bf16, kern_pool *pool, const kern_claq *k,
                        const float *x, int n, float *y)
{
    if (!k || n <= 0) return KERN_E_INVAL;
    int workers = pool ? kern_pool_threads(pool) : 1;
    int64_t sh = shared_floats(k, n, bf16);
    float *shared = malloc((size_t)sh * sizeof(float));
    float **priv = calloc((size_t)workers, sizeof *priv);
    int rc = shared && priv ? KERN_OK : KERN_E_NOMEM;
    for (int i = 0; i < workers && rc == KERN_OK; i++) {
        priv[i] = malloc((size_t)kern_cpu__claq_priv_floats(k, n) * sizeof(float));
        if (!priv[i]) rc = KERN_E_NOMEM;
    }
    if (rc == KERN_OK) rc = run_matmul(isa, bf16, pool, workers, shared, priv, k, x, n, y);
    for (int i = 0; priv && i < workers; i++) free(priv[i]);
    free(priv);
    free(shared);
    return rc;
}

int kern_cpu__claq_matmul_isa(kern_isa isa, kern_pool *pool, const kern_claq *k, const float *x,
                              int n, float *y)
{
    return matmul_alloc(isa, 0, pool, k, x, n, y);
}

int kern_cpu__claq_matmul_bf16_isa(kern_isa isa, kern_pool *pool, const kern_claq *k,
                                   const float *x, int n, float *y)
{
    return matmul_alloc(isa, 1, pool, k, x, n, y);
}

/* The backend's entry points: scratch from the ctx's per-worker buffers. */
static int matmul_ctx(kern_cpu_ctx *c, int bf16, const kern_matrix *w, const float *x, int n,
                      float *y)
{
    const kern_claq *k = w->claq;
    if (!k || k->rows != w->rows || k->cols != w->cols) return KERN_E_INVAL;
    int64_t sh = shared_floats(k, n, bf16), pr = kern_cpu__claq_priv_floats(k, n);
    int rc = kern_cpu__scratch_reserve(c, sh + pr);
    if (rc) return rc;
    float *priv_stack[64];
    float **priv = c->n_threads <= 64 ? priv_stack : malloc((size_t)c->n_threads * sizeof *priv);
    if (!priv) return KERN_E_NOMEM;
    /* Worker 0's scratch holds the shared tables, then its private part; the others use theirs
     * from the start. */
    priv[0] = c->scratch[0] + sh;
    for (int i = 1; i < c->n_threads; i++) priv[i] = c->scratch[i];
    rc = run_matmul(c->isa, bf16, c->pool, c->n_threads, c->scratch[0], priv, k, x, n, y);
    if (priv != priv_stack) free(priv);
    return rc;
}

int kern_cpu__matmul_claq(kern_cpu_ctx *c, const kern_matrix *w, const float *x, int n, float *y)
{
    return matmul_ctx(c, 0, w, x, n, y);
}

int kern_cpu__matmul_claq_bf16(kern_cpu_ctx *c, const kern_matrix *w, const float *x, int n,
                               float *y)
{
    if (!c->bf16) return KERN_E_UNSUPPORTED;
    return matmul_ctx(c, 1, w, x, n, y);
}
