/* quant_kmeans.h — 1-D K-Means for one weight column (CLAQ's per-column codebook): sorted data,
 * prefix sums, Lloyd iterations by midpoint boundaries (claq-algorithm.md §3.2). Deterministic for
 * a given seed. Pure functions; thread-safe (the caller passes scratch; the default init also
 * mallocs its small DP tables). */
#ifndef QUANT_KMEANS_H
#define QUANT_KMEANS_H

#include <stdint.h>

#include "eng_err.h"

typedef enum eng_kmeans_init {
    ENG_KMEANS_QUANTILE = 0,   /* deterministic (default): the optimal partition by dynamic
                                  programming (exact up to 1024 rows, over 512 equal-count bins
                                  with single-point tails beyond), then Lloyd */
    ENG_KMEANS_PLUSPLUS = 1,   /* greedy k-means++ as scikit-learn (seeded) */
    ENG_KMEANS_EXACT = 2,      /* the exact optimum by dynamic programming over every point
                                  (O(k n log n), Ckmeans.1d.dp's divide and conquer), no Lloyd */
    ENG_KMEANS_LLOYD = 3,      /* Lloyd only, from the means of k equal-count slices */
} eng_kmeans_init;

/* "optimal", "plusplus", "exact", "lloyd" <-> the enum. parse: 0 or ENG_E_INVAL. */
int eng_kmeans_init_parse(const char *s, eng_kmeans_init *out);
const char *eng_kmeans_init_name(eng_kmeans_init i);

/* Fits k (<= 16) centroids to x[0..n). Writes them to cb_f16[0..k) as fp16 bits, ascending,
 * rounded to fp16 before the final assignment (degenerate columns repeat the last value).
 * scratch must hold 3*n doubles. Returns 0, ENG_E_INVAL (bad k/n, NaN/Inf data) or
 * ENG_E_NOMEM. */
int eng_kmeans_1d(const float *x, int64_t n, int k, eng_kmeans_init init, uint64_t seed,
                  double *scratch, uint16_t *cb_f16);

/* Index of the nearest centroid of a sorted fp16 codebook of k entries (ties -> lower). */
int eng_kmeans_nearest(const uint16_t *cb_f16, int k, float v);

#endif
