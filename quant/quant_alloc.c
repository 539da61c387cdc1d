/* quant_alloc.c — Adaptive Precision bit allocation and Outlier Reservation budgets and
 * selection. Does not touch codebooks or the GPTQ loop. Any thread; no state. */
#include "quant_alloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int64_t eng_claq_round_half_even(double v)
{
    double f = floor(v), d = v - f;
    if (d > 0.5) return (int64_t)f + 1;
    if (d < 0.5) return (int64_t)f;
    return ((int64_t)f % 2 == 0) ? (int64_t)f : (int64_t)f + 1;
}

double eng_claq_outlier_counts(const float *W, int64_t rows, int64_t cols, const uint8_t *dead,
                               double T, int32_t *count)
{
    double sum = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++)
            if (!dead || !dead[j]) sum += fabs((double)W[r * cols + j]);
    double mean = sum / ((double)rows * (double)cols);
    /* float threshold as the reference compares fp32 tensors */
    float thr = (float)(T * mean);
    memset(count, 0, (size_t)cols * sizeof *count);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) {
            float v = (dead && dead[j]) ? 0.0f : W[r * cols + j];
            if (v <= -thr || v >= thr) count[j]++;
        }
    if (thr == 0)   /* an all-zero matrix: nothing is an outlier */
        memset(count, 0, (size_t)cols * sizeof *count);
    return mean;
}

typedef struct alloc_key {
    int32_t c;
    int64_t i;
} alloc_key;

static int alloc_cmp(const void *a, const void *b)
{
    const alloc_key *x = a, *y = b;
    if (x->c != y->c) return x->c > y->c ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

int eng_claq_rank(const int32_t *count, int64_t cols, int64_t *rank_order)
{
    alloc_key *k = malloc((size_t)cols * sizeof *k);
    if (!k) return ENG_E_NOMEM;
    for (int64_t i = 0; i < cols; i++) { k[i].c = count[i]; k[i].i = i; }
    qsort(k, (size_t)cols, sizeof *k, alloc_cmp);
    for (int64_t i = 0; i < cols; i++) rank_order[i] = k[i].i;
    free(k);
    return 0;
}

int64_t eng_claq_ap_n4(int64_t cols, double B)
{
    if (!(B >= 2 && B <= 4)) return 0;
    if (B == 4) return cols;
    if (B == floor(B)) return 0;
    int64_t n = B < 3 ? eng_claq_round_half_even((double)cols * (B - 2) / 2)
                      : eng_claq_round_half_even((double)cols * (B - 3));
    return n < 0 ? 0 : (n > cols ? cols : n);
}

int eng_claq_ap_bits(const int32_t *count, int64_t cols, double B, uint8_t *bits)
{
    if (!(B >= 2 && B <= 4) || cols <= 0) return ENG_E_INVAL;
    uint8_t base = (uint8_t)(B < 3 ? 2 : (B < 4 ? 3 : 4));
    memset(bits, base, (size_t)cols);
    int64_t n4 = eng_claq_ap_n4(cols, B);
    if (n4 == 0 || base == 4) return 0;
    int64_t *order = malloc((size_t)cols * sizeof *order);
    if (!order) return ENG_E_NOMEM;
    int rc = eng_claq_rank(count, cols, order);
    if (rc == 0)
        for (int64_t i = 0; i < n4; i++) bits[order[i]] = 4;
    free(order);
    return rc;
}

int eng_claq_or_fracs(const int32_t *count, int64_t cols, double f_hi, double f_lo, float *frac)
{
    if (cols <= 0) return ENG_E_INVAL;
    int64_t *order = malloc((size_t)cols * sizeof *order);
    if (!order) return ENG_E_NOMEM;
    int rc = eng_claq_rank(count, cols, order);
    if (rc == 0) {
        int64_t top = eng_claq_round_half_even(ENG_CLAQ_OR_TOP * (double)cols);
        for (int64_t i = 0; i < cols; i++) frac[order[i]] = (float)(i < top ? f_hi : f_lo);
    }
    free(order);
    return rc;
}

static int alloc_cmp_f_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

int64_t eng_claq_or_select(const float *w, int64_t n, double f, float *scratch, uint8_t *keep)
{
    memset(keep, 0, (size_t)n);
    if (n <= 0 || !(f > 0)) return 0;
    memcpy(scratch, w, (size_t)n * sizeof *w);
    qsort(scratch, (size_t)n, sizeof *scratch, alloc_cmp_f_desc);
    int64_t ih = eng_claq_round_half_even((double)n * f);
    int64_t il = eng_claq_round_half_even((double)n * (1.0 - f));
    if (ih > n - 1) ih = n - 1;
    if (il > n - 1) il = n - 1;
    if (ih < 0) ih = 0;
    if (il < 0) il = 0;
    float hi = scratch[ih], lo = scratch[il];
    int64_t kept = 0;
    for (int64_t r = 0; r < n; r++)
        if (w[r] >= hi || w[r] <= lo) { keep[r] = 1; kept++; }
    return kept;
}
