/* eng_qrow.c — per-row quantization of a dense matrix (eng_qrow.h): the KERN_Q8_ROW packing
 * at 8, 7 or 6 bits and the bit-packed file forms' (q7_row, q6_row) encoder and decoder. Pure
 * functions; any thread. */
#include "eng_qrow.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kern_half.h"

#define QROW_CLIP_STEPS 16  /* 6-/7-bit scale candidates: max |w| x (1 - k/64), k < 16 */

static float qrow_at(const kern_matrix *m, int64_t i)
{
    return m->dtype == KERN_F32 ? ((const float *)m->data)[i]
           : m->dtype == KERN_F16 ? kern_f16_to_f32(((const uint16_t *)m->data)[i])
                                  : kern_bf16_to_f32(((const uint16_t *)m->data)[i]);
}

/* Codes of row (cols values) at scale = a / qmax into q; returns the squared error. */
static double qrow_codes(const float *row, int64_t cols, float a, int qmax, int8_t *q)
{
    const float scale = a / (float)qmax, inv = a > 0.0f ? (float)qmax / a : 0.0f;
    double e = 0.0;
    for (int64_t c = 0; c < cols; c++) {
        long v = lrintf(row[c] * inv);
        v = v > qmax ? qmax : v < -qmax ? -qmax : v;
        q[c] = (int8_t)v;
        double d = (double)v * (double)scale - (double)row[c];
        e += d * d;
    }
    return e;
}

int eng_qrow_pack(const kern_matrix *m, int bits, void **out, eng_err *err)
{
    *out = NULL;
    if (m->dtype != KERN_F32 && m->dtype != KERN_F16 && m->dtype != KERN_BF16)
        return eng_err_set(err, ENG_E_INVAL, "q%d_row: the source must be f32, f16 or bf16",
                           bits);
    if (bits < 6 || bits > 8)
        return eng_err_set(err, ENG_E_INVAL, "row quantization at %d bits (6, 7 or 8)", bits);
    const int64_t rows = m->rows, cols = m->cols;
    const int qmax = eng_qrow_qmax(bits);
    unsigned char *buf = malloc(kern_dense_bytes(KERN_Q8_ROW, rows, cols));
    float *row = malloc((size_t)cols * sizeof(float));
    if (!buf || !row) {
        free(buf);
        free(row);
        return eng_err_set(err, ENG_E_NOMEM, "q%d_row: out of memory for %lld x %lld", bits,
                           (long long)rows, (long long)cols);
    }
    for (int64_t r = 0; r < rows; r++) {
        float amax = 0.0f;
        for (int64_t c = 0; c < cols; c++) {
            float v = qrow_at(m, r * cols + c);
            if (!isfinite(v)) {
                free(buf);
                free(row);
                return eng_err_set(err, ENG_E_RANGE, "q%d_row: non-finite value in row %lld",
                                   bits, (long long)r);
            }
            row[c] = v;
            amax = fmaxf(amax, fabsf(v));
        }
        int8_t *q = (int8_t *)buf + r * cols;
        float best = amax;
        if (bits < 8 && amax > 0.0f) {
            double best_e = INFINITY;
            for (int k = 0; k < QROW_CLIP_STEPS; k++) {
                float a = amax * (1.0f - (float)k / 64.0f);
                double e = qrow_codes(row, cols, a, qmax, q);
                if (e < best_e) {
                    best_e = e;
                    best = a;
                }
            }
        }
        qrow_codes(row, cols, best, qmax, q);
        float scale = best / (float)qmax;
        memcpy(buf + rows * cols + r * (int64_t)sizeof(float), &scale, sizeof(float));
    }
    free(row);
    *out = buf;
    return 0;
}

size_t eng_qrow_packed_bytes(int bits, int64_t rows, int64_t cols)
{
    return (size_t)rows * (((size_t)cols * (size_t)bits + 7) / 8) + (size_t)rows * sizeof(float);
}

int eng_qrow_encode(const void *q8, int bits, int64_t rows, int64_t cols, void *dst)
{
    const int8_t *q = q8;
    unsigned char *d = dst;
    const int qmax = eng_qrow_qmax(bits), bias = qmax + 1;
    const size_t rb = ((size_t)cols * (size_t)bits + 7) / 8;
    for (int64_t r = 0; r < rows; r++) {
        unsigned char *o = d + (size_t)r * rb;
        memset(o, 0, rb);
        for (int64_t c = 0; c < cols; c++) {
            int v = q[r * cols + c];
            if (v < -qmax || v > qmax) return -1;
            unsigned u = (unsigned)(v + bias);
            size_t bit = (size_t)c * (size_t)bits, sh = bit % 8;
            o[bit / 8] |= (unsigned char)(u << sh);
            if (sh + (size_t)bits > 8) o[bit / 8 + 1] |= (unsigned char)(u >> (8 - sh));
        }
    }
    memcpy(d + (size_t)rows * rb, (const unsigned char *)q8 + (size_t)rows * (size_t)cols,
           (size_t)rows * sizeof(float));
    return 0;
}

int eng_qrow_decode(const void *src, int bits, int64_t rows, int64_t cols, void *dst,
                    eng_err *err)
{
    const unsigned char *s = src;
    int8_t *q = dst;
    const int bias = eng_qrow_qmax(bits) + 1;
    const unsigned mask = (1u << bits) - 1u;
    const size_t rb = ((size_t)cols * (size_t)bits + 7) / 8;
    for (int64_t r = 0; r < rows; r++) {
        const unsigned char *in = s + (size_t)r * rb;
        for (int64_t c = 0; c < cols; c++) {
            size_t bit = (size_t)c * (size_t)bits, sh = bit % 8;
            unsigned u = (unsigned)in[bit / 8] >> sh;
            if (sh + (size_t)bits > 8) u |= (unsigned)in[bit / 8 + 1] << (8 - sh);
            u &= mask;
            if (u == 0)
                return eng_err_set(err, ENG_E_FORMAT, "q%d_row: row %lld column %lld holds the "
                                   "unused code %d", bits, (long long)r, (long long)c, -bias);
            q[r * cols + c] = (int8_t)((int)u - bias);
        }
    }
    memcpy((unsigned char *)dst + (size_t)rows * (size_t)cols, s + (size_t)rows * rb,
           (size_t)rows * sizeof(float));
    return 0;
}
