/* quant_rd.c — bit allocation under a budget in stored bits (quant_rd.h): per-column error
 * estimates at 2/3/4 bits from K-Means on the pool, then a Lagrangian sweep with block-rounded
 * groups and block-wise upgrades, all against the exact version 2 byte count. Any thread; all state in the call. */
#include "quant_rd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eng_claq_file.h"
#include "kern_half.h"
#include "kern_pool.h"
#include "quant_kmeans.h"

static int64_t al64(int64_t n) { return (n + 63) & ~(int64_t)63; }

int64_t eng_rd_matrix_bytes(int64_t rows, int64_t cols, const int64_t n[5], int cb_bits)
{
    kern_claq k = {.rows = rows, .cols = cols};
    for (int b = 2; b <= 4; b++) k.ncols_bits[b] = n[b];
    if (eng_claq_shape_fill(&k, "rd", "plan", NULL)) return INT64_MAX;
    size_t len[ENG_CLAQ_NSEC];
    eng_claq_v2_lengths(&k, cb_bits == 16 ? ENG_CLAQ_CB_F16 : ENG_CLAQ_CB_GRID8, len);
    int64_t bytes = 0;
    for (int s = 0; s < ENG_CLAQ_NSEC; s++) bytes += al64((int64_t)len[s]);
    return bytes;
}

typedef struct rd_job {
    const float *W;
    int64_t rows, cols;
    const double *wgt;
    float *col;        /* [workers][rows] */
    double *scratch;   /* [workers][3 rows] */
    double *dist;      /* [cols][5]: estimated error at b = 2..4 */
    int failed;
} rd_job;

static void rd_task(void *arg, int64_t j, int worker)
{
    rd_job *h = arg;
    const int64_t rows = h->rows;
    float *x = h->col + (size_t)worker * (size_t)rows;
    double *scr = h->scratch + (size_t)worker * 3 * (size_t)rows;
    for (int64_t r = 0; r < rows; r++) x[r] = h->W[r * h->cols + j];
    for (int b = 2; b <= 4; b++) {
        uint16_t cb[16];
        const int K = 1 << b;
        if (eng_kmeans_1d(x, rows, K, ENG_KMEANS_QUANTILE, (uint64_t)j, scr, cb)) {
            h->failed = 1;
            return;
        }
        double sse = 0;
        for (int64_t r = 0; r < rows; r++) {
            const int c = eng_kmeans_nearest(cb, K, x[r]);
            const double d = (double)x[r] - (double)kern_f16_to_f32(cb[c]);
            sse += d * d;
        }
        h->dist[j * 5 + b] = h->wgt[j] * sse;
    }
}

/* Bits one column of width b costs, padding aside: its codes and its codebook. */
static double col_rate(int64_t rows_pad, int cb_bits, int b)
{
    return (double)rows_pad * b + (cb_bits == 16 ? 16.0 * (1 << b) : 8.0 * (4 + (1 << b)));
}

typedef struct rd_key {
    double cost;
    int64_t j;
} rd_key;

static int rd_key_cmp(const void *a, const void *b)
{
    const rd_key *x = a, *y = b;
    if (x->cost != y->cost) return x->cost < y->cost ? -1 : 1;
    return (x->j > y->j) - (x->j < y->j);
}

typedef struct rd_sweep {
    const rd_job *h;
    int64_t rows, cols;
    double rate[5];      /* col_rate per width */
    uint8_t *b;          /* [cols] the candidate's widths */
    rd_key *keys;        /* [cols] scratch */
} rd_sweep;

static double lag(const rd_sweep *w, int64_t j, int b, double lambda)
{
    return w->h->dist[j * 5 + b] + lambda * w->rate[b];
}

/* Moves columns into or out of width `bw` until it holds exactly `want`, cheapest change of
 * the Lagrangian first. Columns of widths above bw are never touched (they are placed); columns
 * leaving bw go to the best width below it. */
static void rd_set_count(rd_sweep *w, int bw, int64_t want, double lambda)
{
    int64_t have = 0, nk = 0;
    for (int64_t j = 0; j < w->cols; j++) have += w->b[j] == bw;
    if (have == want) return;
    for (int64_t j = 0; j < w->cols; j++) {
        if (w->b[j] > bw || (have < want) == (w->b[j] == bw)) continue;
        double c;
        if (have < want) {
            c = lag(w, j, bw, lambda) - lag(w, j, w->b[j], lambda);
        } else {   /* leaving bw: to the best lower width */
            double best = INFINITY;
            for (int lb = 2; lb < bw; lb++) best = fmin(best, lag(w, j, lb, lambda));
            c = best - lag(w, j, bw, lambda);
        }
        w->keys[nk++] = (rd_key){c, j};
    }
    qsort(w->keys, (size_t)nk, sizeof *w->keys, rd_key_cmp);
    const int64_t k = have < want ? want - have : have - want;
    for (int64_t i = 0; i < k && i < nk; i++) {
        const int64_t j = w->keys[i].j;
        if (have < want) {
            w->b[j] = (uint8_t)bw;
        } else {
            int nb = 2;
            for (int lb = 3; lb < bw; lb++)
                if (lag(w, j, lb, lambda) < lag(w, j, nb, lambda)) nb = lb;
            w->b[j] = (uint8_t)nb;
        }
    }
}

int eng_rd_bits(const float *W, int64_t rows, int64_t cols, const double *wgt,
                const eng_rd_plan *plan, struct kern_pool *pool, uint8_t *bits, double *bpw,
                eng_err *err)
{
    if (!(plan->target_bpw >= 2 && plan->target_bpw <= 8) || rows <= 0 || cols <= 0)
        return eng_err_set(err, ENG_E_INVAL, "--target-bpw must be in [2, 8], got %g",
                           plan->target_bpw);
    const int nw = pool ? kern_pool_threads(pool) : 1;
    rd_job h = {.W = W, .rows = rows, .cols = cols, .wgt = wgt};
    h.col = malloc(sizeof(float) * (size_t)rows * (size_t)nw);
    h.scratch = malloc(sizeof(double) * 3 * (size_t)rows * (size_t)nw);
    h.dist = calloc((size_t)cols * 5, sizeof(double));
    if (!h.col || !h.scratch || !h.dist) {
        free(h.col);
        free(h.scratch);
        free(h.dist);
        return eng_err_set(err, ENG_E_NOMEM, "bit allocation: out of memory");
    }
    if (pool) kern_pool_run(pool, cols, rd_task, &h);
    else for (int64_t j = 0; j < cols; j++) rd_task(&h, j, 0);
    free(h.col);
    free(h.scratch);
    if (h.failed) {
        free(h.dist);
        return eng_err_set(err, ENG_E_INVAL, "bit allocation: K-Means failed (non-finite weight?)");
    }

    const double budget = plan->target_bpw * (double)rows * (double)cols / 8.0 -
                          (double)plan->outlier_bytes;
    const int64_t rows_pad = (rows + 15) / 16 * 16, blk = KERN_CLAQ_COL_BLOCK;
    rd_sweep w = {.h = &h, .rows = rows, .cols = cols};
    for (int b = 2; b <= 4; b++) w.rate[b] = col_rate(rows_pad, plan->cb_bits, b);
    w.b = malloc((size_t)cols);
    w.keys = malloc((size_t)cols * sizeof *w.keys);
    if (!w.b || !w.keys) {
        free(w.b);
        free(w.keys);
        free(h.dist);
        return eng_err_set(err, ENG_E_NOMEM, "bit allocation: out of memory");
    }
    /* Lagrangian sweep: for each lambda every column takes the width minimising
     * error + lambda x bits; the 4- and 3-bit groups are then rounded to whole 32-column blocks
     * (both ways, cheapest Lagrangian change first), so no block pays for padding. Of all the
     * candidates whose exact stored bytes fit, the one with the least estimated error wins. */
    memset(bits, 2, (size_t)cols);
    double best_d = 0;
    for (int64_t j = 0; j < cols; j++) best_d += h.dist[j * 5 + 2];
    double lmax = 0;   /* above it every column stays at 2 bits */
    for (int64_t j = 0; j < cols; j++)
        lmax = fmax(lmax, (h.dist[j * 5 + 2] - h.dist[j * 5 + 4]) / (w.rate[4] - w.rate[2]));
    for (int step = 0; step <= 240 && lmax > 0; step++) {
        const double lambda = lmax * pow(10.0, -(double)step / 24.0);   /* 10 decades */
        for (int rnd = 0; rnd < 4; rnd++) {
            int64_t n[5] = {0};
            for (int64_t j = 0; j < cols; j++) {
                int bb = 2;
                for (int b = 3; b <= 4; b++)
                    if (lag(&w, j, b, lambda) < lag(&w, j, bb, lambda)) bb = b;
                w.b[j] = (uint8_t)bb;
                n[bb]++;
            }
            int64_t t4 = n[4] / blk * blk + ((rnd & 1) && n[4] % blk ? blk : 0);
            rd_set_count(&w, 4, t4 > cols ? cols : t4, lambda);
            int64_t n3 = 0;
            for (int64_t j = 0; j < cols; j++) n3 += w.b[j] == 3;
            int64_t t3 = n3 / blk * blk + ((rnd & 2) && n3 % blk ? blk : 0);
            int64_t room = cols - (t4 > cols ? cols : t4);
            rd_set_count(&w, 3, t3 > room ? room : t3, lambda);
            double d = 0;
            int64_t m[5] = {0};
            for (int64_t j = 0; j < cols; j++) {
                d += h.dist[j * 5 + w.b[j]];
                m[w.b[j]]++;
            }
            if (d < best_d && (double)eng_rd_matrix_bytes(rows, cols, m, plan->cb_bits) <= budget) {
                best_d = d;
                memcpy(bits, w.b, (size_t)cols);
            }
        }
    }
    /* Then whole blocks at a time while they fit: columns of equal sensitivity flip together
     * in the sweep, so it can stop a block-multiple short of the budget. */
    int64_t n[5] = {0};
    for (int64_t j = 0; j < cols; j++) n[bits[j]]++;
    static const int from[3] = {2, 3, 2}, to[3] = {3, 4, 4};
    for (;;) {
        const int64_t cur = eng_rd_matrix_bytes(rows, cols, n, plan->cb_bits);
        double best_gain = 0;
        int best_m = -1;
        for (int m = 0; m < 3; m++) {
            int64_t nk = 0;
            for (int64_t j = 0; j < cols; j++)
                if (bits[j] == from[m])
                    w.keys[nk++] = (rd_key){h.dist[j * 5 + to[m]] - h.dist[j * 5 + from[m]], j};
            if (nk < blk) continue;
            qsort(w.keys, (size_t)nk, sizeof *w.keys, rd_key_cmp);
            double gain = 0;
            for (int64_t i = 0; i < blk; i++) gain -= w.keys[i].cost;
            n[from[m]] -= blk;
            n[to[m]] += blk;
            const int64_t bytes = eng_rd_matrix_bytes(rows, cols, n, plan->cb_bits);
            n[from[m]] += blk;
            n[to[m]] -= blk;
            const double per_byte = gain / (double)(bytes > cur ? bytes - cur : 1);
            if ((double)bytes <= budget && gain > 0 && per_byte > best_gain) {
                best_gain = per_byte;
                best_m = m;
            }
        }
        if (best_m < 0) break;
        int64_t nk = 0;
        for (int64_t j = 0; j < cols; j++)
            if (bits[j] == from[best_m])
                w.keys[nk++] = (rd_key){h.dist[j * 5 + to[best_m]] - h.dist[j * 5 + from[best_m]], j};
        qsort(w.keys, (size_t)nk, sizeof *w.keys, rd_key_cmp);
        for (int64_t i = 0; i < blk; i++) bits[w.keys[i].j] = (uint8_t)to[best_m];
        n[from[best_m]] -= blk;
        n[to[best_m]] += blk;
    }
    free(w.b);
    free(w.keys);
    const int64_t cur = eng_rd_matrix_bytes(rows, cols, n, plan->cb_bits);
    *bpw = 8.0 * ((double)cur + (double)plan->outlier_bytes) / ((double)rows * (double)cols);
    free(h.dist);
    return 0;
}
