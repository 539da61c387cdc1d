/* kern_cpu_claq_ref.c — scalar reference of the packed CLAQ matmul: the oracle every SIMD path is
 * tested against (kern_cpu_claq.h states the exact per-row operation sequence). Short and
 * obvious on purpose: codes are read one at a time through kern_claq_code. Also the production
 * path when CLAQ_ISA=scalar. Pure functions; any worker thread. */
#include "kern_cpu_claq.h"

#include "kern_half.h"

void kern_cpu__claq_lut_ref(const kern_claq *k, const float *x, float *xs, float *lut)
{
    for (int64_t s = 0; s < k->cols_pad; s++) {
        uint32_t j = k->colmap[s];
        xs[s] = j == KERN_CLAQ_PAD ? 0.0f : x[j];
        int b = kern_claq_block_bits(k, s / KERN_CLAQ_COL_BLOCK);
        const uint16_t *cb = k->cb + kern_claq_cb_offset(k, s);
        for (int e = 0; e < 16; e++)
            lut[s * 16 + e] = xs[s] * kern_f16_to_f32(cb[e & ((1 << b) - 1)]);
    }
}

void kern_cpu__claq_gemv_tile_ref(const kern_claq *k, const float *lut, int64_t t, float *y)
{
    int64_t rt = kern_claq_tile_rows(k, t);
    for (int64_t rr = 0; rr < rt; rr++) {
        int64_t r = t * KERN_CLAQ_ROW_TILE + rr;
        float acc = 0.0f;
        for (int64_t s = 0; s < k->cols_pad; s++) acc += lut[s * 16 + kern_claq_code(k, r, s)];
        y[rr] = acc;
    }
}

void kern_cpu__claq_gemv_ref(const kern_claq *k, const float *lut, int n, int64_t t0, int64_t t1,
                             float *y)
{
    int64_t ystride = (t1 - t0) * KERN_CLAQ_ROW_TILE;
    for (int tok = 0; tok < n; tok++)
        for (int64_t t = t0; t < t1; t++)
            kern_cpu__claq_gemv_tile_ref(k, lut + (int64_t)tok * k->cols_pad * 16, t,
                                         y + tok * ystride + (t - t0) * KERN_CLAQ_ROW_TILE);
}

void kern_cpu__claq_gemm_tile_ref(const kern_claq *k, const float *cbf, const float *xb,
                                  int64_t nx, int n, int64_t t, float *y, float *work)
{
    (void)work;
    const int64_t cb = KERN_CLAQ_COL_BLOCK;
    int64_t rt = kern_claq_tile_rows(k, t);
    for (int tok = 0; tok < n; tok++)
        for (int64_t rr = 0; rr < rt; rr++) {
            int64_t r = t * KERN_CLAQ_ROW_TILE + rr;
            float acc = 0.0f;
            for (int64_t s = 0; s < k->cols_pad; s++)
                acc += xb[((s / cb) * nx + tok) * cb + s % cb] *
                       cbf[s * 16 + kern_claq_code(k, r, s)];
            y[(int64_t)tok * KERN_CLAQ_ROW_TILE + rr] = acc;
        }
}
