/* quant_kmeans.c — 1-D K-Means for one weight column (claq-algorithm.md §3.2): radix-sort the
 * column, prefix sums, the optimal partition by dynamic programming (default) or greedy
 * k-means++ (option), then Lloyd iterations where each cluster is a contiguous range of the
 * sorted data found by binary search at the midpoints (O(k log n) per iteration). Does not decide
 * bit-widths or outliers (quant_alloc.c) and does not run GPTQ (quant_gptq.c). Any thread; all
 * state lives in the caller's scratch. */
#include "quant_kmeans.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kern_half.h"

#define KM_MAX_K 16
#define KM_MAX_ITER 300     /* scikit-learn's max_iter */
#define KM_TOL 1e-4         /* scikit-learn's tol, relative to the data variance */
#define KM_DP_MAX_N 1024    /* columns up to this length get the exact optimum; longer ones
                               are binned into KM_DP_BINS units first */
#define KM_DP_BINS 512

/* ---- sorting: floats -> order-preserving uint32 keys, LSD radix (insertion sort when tiny) ---- */

static inline uint32_t km_key(float f)
{
    uint32_t u = kern_bits_from_f32(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static inline float km_unkey(uint32_t k)
{
    return kern_f32_from_bits((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

/* Sorts n keys in a (tmp is n more keys); the result ends in a. */
static void km_radix_sort(uint32_t *a, uint32_t *tmp, int64_t n)
{
    if (n <= 48) {
        for (int64_t i = 1; i < n; i++) {
            uint32_t v = a[i];
            int64_t j = i;
            while (j > 0 && a[j - 1] > v) { a[j] = a[j - 1]; j--; }
            a[j] = v;
        }
        return;
    }
    uint32_t *src = a, *dst = tmp;
    for (int shift = 0; shift < 32; shift += 8) {
        int64_t cnt[256] = {0};
        for (int64_t i = 0; i < n; i++) cnt[(src[i] >> shift) & 255]++;
        if (cnt[(src[0] >> shift) & 255] == n) continue;   /* every key shares this byte */
        int64_t pos = 0;
        for (int b = 0; b < 256; b++) { int64_t c = cnt[b]; cnt[b] = pos; pos += c; }
        for (int64_t i = 0; i < n; i++) dst[cnt[(src[i] >> shift) & 255]++] = src[i];
        uint32_t *t = src; src = dst; dst = t;
    }
    if (src != a) memcpy(a, src, (size_t)n * sizeof *a);
}

/* ---- small helpers over the sorted data s[0..n) and its prefix sums P (P[i] = s[0]+..+s[i]) ---- */

static inline double km_psum(const double *P, int64_t a, int64_t b)   /* sum of s[a..b) */
{
    return (b > 0 ? P[b - 1] : 0.0) - (a > 0 ? P[a - 1] : 0.0);
}

/* First index i with s[i] > v (so values equal to a midpoint go to the lower cluster). */
static int64_t km_upper(const double *s, int64_t n, double v)
{
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (s[mid] > v) hi = mid; else lo = mid + 1;
    }
    return lo;
}

static void km_sort_small(double *c, int k)
{
    for (int i = 1; i < k; i++) {
        double v = c[i];
        int j = i;
        while (j > 0 && c[j - 1] > v) { c[j] = c[j - 1]; j--; }
        c[j] = v;
    }
}

/* Cluster ranges for sorted centers c: cluster i is s[bnd[i] .. bnd[i+1]). */
static void km_bounds(const double *s, int64_t n, const double *c, int k, int64_t *bnd)
{
    bnd[0] = 0;
    bnd[k] = n;
    for (int i = 1; i < k; i++) {
        int64_t b = km_upper(s, n, 0.5 * (c[i - 1] + c[i]));
        bnd[i] = b < bnd[i - 1] ? bnd[i - 1] : b;
    }
}

/* Lloyd's algorithm from the centers in c (sorted in place, updated). Stops as scikit-learn:
 * assignments unchanged, or total squared center shift <= tol, or KM_MAX_ITER. */
static void km_lloyd(const double *s, const double *P, int64_t n, double *c, int k, double tol)
{
    int64_t bnd[KM_MAX_K + 1], old[KM_MAX_K + 1];
    km_sort_small(c, k);
    for (int it = 0; it < KM_MAX_ITER; it++) {
        km_bounds(s, n, c, k, bnd);
        if (it > 0 && memcmp(bnd, old, sizeof(int64_t) * (size_t)(k + 1)) == 0) break;
        memcpy(old, bnd, sizeof(int64_t) * (size_t)(k + 1));
        double nc[KM_MAX_K];
        int n_empty = 0;
        for (int i = 0; i < k; i++) {
            int64_t a = bnd[i], b = bnd[i + 1];
            if (b > a) nc[i] = km_psum(P, a, b) / (double)(b - a);
            else { nc[i] = NAN; n_empty++; }
        }
        /* Empty clusters: re-seed each at the point farthest from its own center (the extremes
         * of the non-empty ranges), taking distinct points one after the other. */
        for (int e = 0; e < n_empty; e++) {
            int64_t best_idx = -1;
            double best_d = -1;
            for (int i = 0; i < k; i++) {
                int64_t a = bnd[i], b = bnd[i + 1];
                if (b <= a) continue;
                int64_t cand[2] = {a, b - 1};
                for (int t = 0; t < 2; t++) {
                    double d = fabs(s[cand[t]] - c[i]);
                    int used = 0;
                    for (int u = 0; u < k; u++)
                        if (!isnan(nc[u]) && nc[u] == s[cand[t]]) used = 1;
                    if (!used && d > best_d) { best_d = d; best_idx = cand[t]; }
                }
            }
            for (int i = 0; i < k; i++)
                if (isnan(nc[i])) { nc[i] = best_idx >= 0 ? s[best_idx] : c[i]; break; }
        }
        double shift = 0;
        for (int i = 0; i < k; i++) shift += (nc[i] - c[i]) * (nc[i] - c[i]);
        memcpy(c, nc, sizeof(double) * (size_t)k);
        km_sort_small(c, k);
        if (shift <= tol) break;
    }
}

/* ---- initialisations ---- */

static inline uint64_t km_rand(uint64_t *st)   /* splitmix64 */
{
    uint64_t z = (*st += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline double km_unif(uint64_t *st) { return (double)(km_rand(st) >> 11) * 0x1.0p-53; }

/* Greedy k-means++ as scikit-learn: first center uniform, then the best (lowest potential) of
 * 2 + floor(ln k) candidates drawn with probability proportional to D^2. D has n doubles. */
static void km_init_plusplus(const double *s, int64_t n, int k, uint64_t seed, double *D, double *c)
{
    uint64_t st = seed;
    c[0] = s[km_rand(&st) % (uint64_t)n];
    double pot = 0;
    for (int64_t i = 0; i < n; i++) { D[i] = (s[i] - c[0]) * (s[i] - c[0]); pot += D[i]; }
    int trials = 2 + (int)floor(log((double)k));
    for (int ci = 1; ci < k; ci++) {
        double best_pot = INFINITY, best_c = c[ci - 1];
        for (int t = 0; t < trials; t++) {
            double r = km_unif(&st) * pot, acc = 0;
            int64_t idx = n - 1;
            for (int64_t i = 0; i < n; i++) {
                acc += D[i];
                if (acc > r) { idx = i; break; }
            }
            double cand = s[idx], p = 0;
            for (int64_t i = 0; i < n; i++) {
                double d = (s[i] - cand) * (s[i] - cand);
                p += d < D[i] ? d : D[i];
            }
            if (p < best_pot) { best_pot = p; best_c = cand; }
        }
        c[ci] = best_c;
        pot = 0;
        for (int64_t i = 0; i < n; i++) {
            double d = (s[i] - best_c) * (s[i] - best_c);
            if (d < D[i]) D[i] = d;
            pot += D[i];
        }
    }
}

/* ---- exact optimum by dynamic programming over "units" of the sorted data ----
 * A unit is one point (columns up to KM_DP_MAX_N rows: the exact optimum) or an equal-count bin
 * of consecutive sorted points (longer columns: optimal up to cuts at bin edges, then polished
 * by Lloyd on the points). Prefix arrays Pu/Qu/Nu have U+1 entries (sum, sum of squares, count
 * before unit u). D_c[m] = min_a D_{c-1}[a] + SSE(units a..m); the best a is monotone in m, so
 * each of the k layers is solved by divide and conquer in O(U log U). */

typedef struct km_dp {
    const double *Pu, *Qu, *Nu;
    const double *prev;      /* D_{c-1}[0..U] */
    double *cur;             /* D_c[0..U] */
    int32_t *arg;            /* this layer's argmin row */
} km_dp;

static inline double km_usse(const km_dp *d, int64_t a, int64_t b)
{
    double cnt = d->Nu[b] - d->Nu[a];
    if (cnt <= 1) return 0;
    double sm = d->Pu[b] - d->Pu[a], v = d->Qu[b] - d->Qu[a] - sm * sm / cnt;
    return v > 0 ? v : 0;
}

static void km_dp_solve(km_dp *d, int64_t lo, int64_t hi, int64_t alo, int64_t ahi)
{
    while (lo <= hi) {
        int64_t m = lo + (hi - lo) / 2, best_a = alo, top = ahi < m - 1 ? ahi : m - 1;
        double best = INFINITY;
        for (int64_t a = alo; a <= top; a++) {
            double v = d->prev[a] + km_usse(d, a, m);
            if (v < best) { best = v; best_a = a; }
        }
        d->cur[m] = best;
        d->arg[m] = (int32_t)best_a;
        km_dp_solve(d, lo, m - 1, alo, best_a);
        lo = m + 1;   /* the right half iteratively */
        alo = best_a;
    }
}

/* Centres of the optimal partition of the sorted points s[0..n) into k ranges (cuts restricted
 * to U equal-count bins when U < n). ENG_E_NOMEM when the tables cannot be allocated. */
static int km_exact(const double *P, const double *Q, int64_t n, int64_t U, int k, double *c)
{
    size_t u1 = (size_t)U + 1;
    double *buf = malloc(sizeof(double) * 5 * u1);
    int32_t *arg = malloc(sizeof(int32_t) * (size_t)k * u1);
    if (!buf || !arg) {
        free(buf);
        free(arg);
        return ENG_E_NOMEM;
    }
    double *Pu = buf, *Qu = buf + u1, *Nu = buf + 2 * u1, *rows = buf + 3 * u1;
    /* Unit edges: with U < n, the E most extreme points at each end stay single units (heavy
     * tails want singleton clusters there) and the middle is cut into equal-count bins. */
    int64_t E = U < n ? (U / 4 < n / 8 ? U / 4 : n / 8) : 0, M = U - 2 * E;
    for (int64_t u = 0; u <= U; u++) {
        int64_t i = U == n ? u
                  : u <= E ? u
                  : u >= U - E ? n - (U - u)
                  : E + (u - E) * (n - 2 * E) / M;   /* first point of unit u */
        Pu[u] = i > 0 ? P[i - 1] : 0;
        Qu[u] = i > 0 ? Q[i - 1] : 0;
        Nu[u] = (double)i;
    }
    km_dp d = {Pu, Qu, Nu, NULL, NULL, NULL};
    for (int64_t m = 0; m <= U; m++) rows[m] = km_usse(&d, 0, m);
    for (int cl = 1; cl < k; cl++) {
        int32_t *a = arg + (size_t)cl * u1;
        d.prev = rows + (size_t)((cl - 1) & 1) * u1;
        d.cur = rows + (size_t)(cl & 1) * u1;
        d.arg = a;
        for (int64_t m = 0; m <= cl && m <= U; m++) {
            d.cur[m] = 0;
            a[m] = (int32_t)(m > 0 ? m - 1 : 0);
        }
        if (cl + 1 <= U) km_dp_solve(&d, cl + 1, U, cl, U - 1);
    }
    int64_t end = U;
    for (int cl = k - 1; cl >= 0; cl--) {
        int64_t st = cl > 0 ? arg[(size_t)cl * u1 + (size_t)end] : 0;
        double cnt = Nu[end] - Nu[st];
        c[cl] = cnt > 0 ? (Pu[end] - Pu[st]) / cnt : 0;
        end = st;
    }
    free(buf);
    free(arg);
    return 0;
}

static void km_write_cb(const double *c, int k, uint16_t *cb_f16)
{
    for (int i = 0; i < k; i++) cb_f16[i] = kern_f32_to_f16((float)c[i]);
    /* fp16 rounding is monotonic, so the codebook stays ascending; make sure anyway */
    for (int i = 1; i < k; i++)
        if (kern_f16_to_f32(cb_f16[i]) < kern_f16_to_f32(cb_f16[i - 1])) cb_f16[i] = cb_f16[i - 1];
}

int eng_kmeans_1d(const float *x, int64_t n, int k, eng_kmeans_init init, uint64_t seed,
                  double *scratch, uint16_t *cb_f16)
{
    if (!x || !scratch || !cb_f16 || n <= 0 || k < 1 || k > KM_MAX_K) return ENG_E_INVAL;
    if (init != ENG_KMEANS_QUANTILE && init != ENG_KMEANS_PLUSPLUS && init != ENG_KMEANS_EXACT &&
        init != ENG_KMEANS_LLOYD)
        return ENG_E_INVAL;
    double *s = scratch, *P = scratch + n, *Q = scratch + 2 * n;
    /* Sort: keys live in the P/Q area (2n uint32 fit in n doubles), then expand into s. */
    uint32_t *keys = (uint32_t *)P, *tmp = keys + n;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) return ENG_E_INVAL;
        keys[i] = km_key(x[i]);
    }
    km_radix_sort(keys, tmp, n);
    for (int64_t i = 0; i < n; i++) s[i] = (double)km_unkey(keys[i]);

    /* Few distinct values: they are the centers, padded by repeating the last. */
    double c[KM_MAX_K];
    int nd = 0;
    for (int64_t i = 0; i < n && nd <= k; i++)
        if (i == 0 || s[i] != s[i - 1]) {
            if (nd < k) c[nd] = s[i];
            nd++;
        }
    if (nd <= k) {
        for (int i = nd; i < k; i++) c[i] = c[nd - 1];
        km_write_cb(c, k, cb_f16);
        return 0;
    }

    if (init == ENG_KMEANS_PLUSPLUS) km_init_plusplus(s, n, k, seed, Q, c);   /* Q as D^2 */
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < n; i++) {
        sum += s[i];
        sq += s[i] * s[i];
        P[i] = sum;
        Q[i] = sq;
    }
    double mean = sum / (double)n, var = sq / (double)n - mean * mean;
    double tol = KM_TOL * (var > 0 ? var : 0);

    if (init == ENG_KMEANS_PLUSPLUS) {
        km_lloyd(s, P, n, c, k, tol);
    } else if (init == ENG_KMEANS_EXACT) {
        /* The optimum over every point is already a Lloyd fixed point. */
        if (km_exact(P, Q, n, n, k, c)) return ENG_E_NOMEM;
    } else if (init == ENG_KMEANS_LLOYD) {
        for (int i = 0; i < k; i++) {   /* means of k equal-count slices of the sorted data */
            int64_t a = (int64_t)i * n / k, b = (int64_t)(i + 1) * n / k;
            c[i] = km_psum(P, a, b) / (double)(b - a);
        }
        km_lloyd(s, P, n, c, k, tol);
    } else {
        /* Deterministic: the optimal partition by dynamic programming (exact up to
         * KM_DP_MAX_N rows, over KM_DP_BINS units beyond), then Lloyd to the nearest-centre
         * fixed point. Lloyd alone from quantile starts loses up to ~10% MSE to scikit-learn's
         * k-means++ on heavy-tailed columns (local optima); this never does (see
         * test_quant_kmeans_sklearn.py). */
        int64_t U = n <= KM_DP_MAX_N ? n : KM_DP_BINS;
        if (km_exact(P, Q, n, U, k, c)) return ENG_E_NOMEM;
        km_lloyd(s, P, n, c, k, tol);
    }
    km_write_cb(c, k, cb_f16);
    return 0;
}

int eng_kmeans_init_parse(const char *s, eng_kmeans_init *out)
{
    static const char *names[] = {"optimal", "plusplus", "exact", "lloyd"};
    for (int i = 0; i < 4; i++)
        if (s && strcmp(s, names[i]) == 0) {
            *out = (eng_kmeans_init)i;
            return 0;
        }
    return ENG_E_INVAL;
}

const char *eng_kmeans_init_name(eng_kmeans_init i)
{
    switch (i) {
    case ENG_KMEANS_QUANTILE: return "optimal";
    case ENG_KMEANS_PLUSPLUS: return "plusplus";
    case ENG_KMEANS_EXACT: return "exact";
    case ENG_KMEANS_LLOYD: return "lloyd";
    }
    return "?";
}

int eng_kmeans_nearest(const uint16_t *cb_f16, int k, float v)
{
    /* Count midpoints strictly below v: ties go to the lower centroid. The midpoint of two
     * fp16 values is exact in double. */
    int idx = 0;
    double prev = kern_f16_to_f32(cb_f16[0]);
    for (int i = 1; i < k; i++) {
        double cur = kern_f16_to_f32(cb_f16[i]);
        if ((double)v > 0.5 * (prev + cur)) idx = i;
        else break;
        prev = cur;
    }
    return idx;
}
