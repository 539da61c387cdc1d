/* kern_cpu_claq_ref.c — scalar reference of the packed CLAQ matmul: the oracle every SIMD path is
 * tested against (kern_cpu_claq.h states the exact per-row operation sequence). Short and
 * obvious on purpose: codes are read one at a time through kern_claq_code. Also the production
 * path when CLAQ_ISA=scalar. Pure functions; any worker thread. */
#include "kern_cpu_claq.h"

#include "kern_half.h"

#include <float.h>
#include <math.h>

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

/* ---- the bfloat16 prefill GEMM (kern_cpu_claq.h states its numerics) ---- */

/* bfloat16 of f, round to nearest even (NaN stays NaN). */
static uint16_t bf16_rne(float f)
{
    uint32_t u = kern_bits_from_f32(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* Subnormals as the bfloat16 instructions treat them: read as zero and results flushed to
 * zero, keeping the sign (measured on this CPU: vcvtne2ps2bf16 of 0x007fffff is 0, and
 * vdpbf16ps gives 0 for 2^-126 - 2^-127 but keeps 2^-125 + 2^-130 exactly). */
static float flush(float v)
{
    return fabsf(v) < FLT_MIN ? copysignf(0.0f, v) : v;
}

static float bf16_in(uint16_t h)
{
    return flush(kern_f32_from_bits((uint32_t)h << 16));
}

/* acc + a * b as one vdpbf16ps step: the product exact, the sum rounded once (double holds
 * both exactly enough for that: 53 >= 2 * 24 + 2 bits), the result flushed. */
static float dp_step(float acc, float a, float b)
{
    return flush((float)((double)acc + (double)a * (double)b));
}

void kern_cpu__claq_block_bf16_ref(const float *xs, uint16_t *xh)
{
    for (int c = 0; c < KERN_CLAQ_COL_BLOCK; c++) xh[c] = bf16_rne(flush(xs[c]));
}

void kern_cpu__claq_gemm_bf16_tile_ref(const kern_claq *k, const uint32_t *cbh,
                                       const uint16_t *xh, int64_t nx, int n, int64_t t, float *y,
                                       float *work)
{
    (void)work;
    const int64_t cb = KERN_CLAQ_COL_BLOCK;
    int64_t rt = kern_claq_tile_rows(k, t);
    for (int tok = 0; tok < n; tok++)
        for (int64_t rr = 0; rr < rt; rr++) {
            int64_t r = t * KERN_CLAQ_ROW_TILE + rr;
            float acc = 0.0f;
            for (int64_t s = 0; s < k->cols_pad; s += 2) {
                const uint16_t *xp = xh + ((s / cb) * nx + tok) * cb + s % cb;
                uint16_t w0 = (uint16_t)cbh[s * 16 + kern_claq_code(k, r, s)];
                uint16_t w1 = (uint16_t)(cbh[(s + 1) * 16 + kern_claq_code(k, r, s + 1)] >> 16);
                acc = dp_step(acc, bf16_in(xp[1]), bf16_in(w1));
                acc = dp_step(acc, bf16_in(xp[0]), bf16_in(w0));
            }
            y[(int64_t)tok * KERN_CLAQ_ROW_TILE + rr] = acc;
        }
}

/* cbh for the bfloat16 GEMM (kern_cpu_claq.h): parity-shifted bf16 codebooks. */
void kern_cpu__claq_cb_bf16(const kern_claq *k, uint32_t *cbh)
{
    for (int64_t s = 0; s < k->cols_pad; s++) {
        int b = kern_claq_block_bits(k, s / KERN_CLAQ_COL_BLOCK);
        const uint16_t *cb = k->cb + kern_claq_cb_offset(k, s);
        for (int e = 0; e < 16; e++)
            cbh[s * 16 + e] = (uint32_t)bf16_rne(kern_f16_to_f32(cb[e & ((1 << b) - 1)]))
                              << (16 * (s & 1));
    }
}
