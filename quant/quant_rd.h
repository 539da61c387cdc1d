/* quant_rd.h — bit allocation under a budget in stored bits (issue 13, item 1): each column of a
 * matrix gets 2, 3 or 4 bits so that the estimated GPTQ-weighted error is smallest while the
 * matrix's bytes in the packed file (format version 2: codes with their row and block padding,
 * codebooks, widths, section alignment, and the planned outliers) stay within target bits per
 * weight. Replaces Adaptive Precision's fixed fractions when --target-bpw is given. Does not run
 * GPTQ. Any thread; the pool (may be NULL) is driven by the calling thread. */
#ifndef QUANT_RD_H
#define QUANT_RD_H

#include <stdint.h>

#include "eng_err.h"

struct kern_pool;

typedef struct eng_rd_plan {
    double target_bpw;       /* the budget: stored bits per weight of this matrix */
    int cb_bits;             /* 8: grid8 codebooks, 16: fp16 (their storage cost differs) */
    int64_t outlier_bytes;   /* bytes the planned outliers will take (counted against it) */
} eng_rd_plan;

/* W [rows][cols] (original order, dead columns zeroed), wgt[cols] the weight of each column's
 * squared error in GPTQ's loss (1 / U_aa^2 at its processing position a; 0 for dead columns).
 * The error of column j at b bits is estimated as wgt[j] x the squared error of its own
 * K-Means codebook of 2^b entries (GPTQ's feedback changes the column, not who needs bits).
 * Lagrangian sweep: for each lambda every column takes the width minimising error + lambda x
 * (its code and codebook bits); the 4- and 3-bit groups are rounded to whole 32-column blocks
 * (both ways, the cheapest change of the Lagrangian first), so no block pays for padding; of the
 * candidates whose exact bytes fit, the least estimated error wins. Then whole blocks of the
 * best 32 columns are upgraded (2->3, 3->4 or 2->4, best error drop per added byte first) while
 * they fit. Writes bits[cols]; *bpw gets the planned stored bits per weight (above the target
 * only when even all-2-bit does not fit).
 * ENG_E_INVAL for a target outside [2, 8], ENG_E_NOMEM. */
int eng_rd_bits(const float *W, int64_t rows, int64_t cols, const double *wgt,
                const eng_rd_plan *plan, struct kern_pool *pool, uint8_t *bits, double *bpw,
                eng_err *err);

/* The stored bytes of a matrix with n[b] columns at b bits (b = 2..4), format version 2,
 * each section rounded up to 64 bytes, outliers excluded. */
int64_t eng_rd_matrix_bytes(int64_t rows, int64_t cols, const int64_t n[5], int cb_bits);

#endif
