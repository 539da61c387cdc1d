/* quant_alloc.h — CLAQ's two column-level allocations (claq-algorithm.md §4, §5, §11):
 * Adaptive Precision (which columns get 4 bits, from the outlier-order metric) and Outlier
 * Reservation (each column's tail fraction, and which entries of an error-updated column are
 * kept as exact values). Does not fit codebooks (quant_kmeans.h) or run GPTQ (quant_gptq.h). Pure
 * functions on caller buffers; any thread. */
#ifndef QUANT_ALLOC_H
#define QUANT_ALLOC_H

#include <stdint.h>

#include "eng_err.h"

#define ENG_CLAQ_T 13.0           /* outlier threshold factor on mean|W| (hard-coded upstream) */
#define ENG_CLAQ_OR_TOP 0.1       /* share of columns (by the metric) with the high tail fraction */
#define ENG_CLAQ_OR_F_HI 0.014    /* tail fraction of those columns */
#define ENG_CLAQ_OR_F_LO 0.004    /* tail fraction of all others */

/* Python's round(): half to even. */
int64_t eng_claq_round_half_even(double v);

/* Outlier-order metric: count[j] = #{r : |W[r][j]| >= T * mean|W|}, with mean|W| over ALL
 * entries of W [rows][cols] (original order) where dead columns (dead[j] = 1, may be NULL)
 * count as zero. Writes count[cols]; returns mean|W|. */
double eng_claq_outlier_counts(const float *W, int64_t rows, int64_t cols, const uint8_t *dead,
                               double T, int32_t *count);

/* Ranking: rank_order[i] = the position (index into count[]) of the i-th column, counts
 * descending, ties kept in position order (stable). count is given in processing order, so ties
 * fall to the column processed first (larger H_jj under act-order). */
int eng_claq_rank(const int32_t *count, int64_t cols, int64_t *rank_order);

/* Adaptive Precision: number of 4-bit columns for target average B in [2, 4]:
 * B < 3: round_half_even(C (B-2) / 2) (others 2-bit); B >= 3: round_half_even(C (B-3))
 * (others 3-bit); B == 4: all. Integer B: 0 (uniform B bits). */
int64_t eng_claq_ap_n4(int64_t cols, double B);
/* Writes bits[cols] (same order as count): the top-ranked n4 columns get 4, the rest the base
 * (floor of B, 2 or 3; uniform B when B is an integer in 2..4). ENG_E_INVAL for B outside [2,4]. */
int eng_claq_ap_bits(const int32_t *count, int64_t cols, double B, uint8_t *bits);

/* Outlier Reservation budgets: frac[cols] (same order as count): the top round(0.1 C) ranked
 * columns get f_hi, all others f_lo. */
int eng_claq_or_fracs(const int32_t *count, int64_t cols, double f_hi, double f_lo, float *frac);

/* Which entries of one error-updated column w[0..n) are retained (§5.2): with s = w sorted
 * descending, hi = s[round(n f)], lo = s[round(n (1-f))], indices CLAMPED to [0, n-1] (short
 * columns of 32 or 64 rows run past the end otherwise); keep w >= hi or w <= lo. f <= 0 keeps
 * nothing. keep[n] gets 0/1; scratch holds n floats. Returns the number kept. */
int64_t eng_claq_or_select(const float *w, int64_t n, double f, float *scratch, uint8_t *keep);

#endif
