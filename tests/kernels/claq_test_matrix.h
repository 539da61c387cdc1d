/* claq_test_matrix.h — random CLAQ matrices for the kernel tests (CPU and CUDA), drawn from the
 * test's own seeded generator. One test program per translation unit. */
#ifndef CLAQ_TEST_MATRIX_H
#define CLAQ_TEST_MATRIX_H

#include "eng_claq_file.h"
#include "eng_qmatrix.h"
#include "kern_half.h"

/* Random qmatrix: bits per column from `mix` (0: all 4, 1: all 3, 2: all 2, 3: mixed), sorted
 * fp16 codebooks with heavy-ish tails, outliers at ~2 % of positions; urnd and ufrnd are the
 * test's generator (uniform uint32, uniform float in [-1, 1)). */
static inline int claq_test_make_q(eng_qmatrix *q, int64_t rows, int64_t cols, int mix,
                            uint32_t (*urnd)(void), float (*ufrnd)(void))
{
    if (eng_qmatrix_alloc(q, rows, cols, NULL)) return -1;
    for (int64_t j = 0; j < cols; j++) {
        q->bits[j] = (uint8_t)(mix == 3 ? 2 + (int)(urnd() % 3) : 4 - mix);
        int K = 1 << q->bits[j];
        float v[16];
        for (int e = 0; e < K; e++) {
            float u = ufrnd();
            v[e] = u * u * u * 0.3f + u * 0.05f;
        }
        for (int a = 1; a < K; a++)
            for (int b = a; b > 0 && v[b] < v[b - 1]; b--) {
                float t = v[b]; v[b] = v[b - 1]; v[b - 1] = t;
            }
        for (int e = 0; e < ENG_QM_CB; e++)
            q->codebook[j * ENG_QM_CB + e] = kern_f32_to_f16(v[e < K ? e : K - 1]);
        for (int64_t r = 0; r < rows; r++) q->codes[r * cols + j] = (uint8_t)(urnd() % (uint32_t)K);
    }
    for (int64_t j = 0; j < cols; j++)
        for (int64_t r = 0; r < rows; r++)
            if (urnd() % 50 == 0 && eng_qmatrix_add_outlier(q, (uint32_t)r, (uint32_t)j,
                                                          kern_f32_to_f16(ufrnd() * 2.0f)))
                return -1;
    return 0;
}

/* claq_test_make_q, then packed into p (eng_claq_pack); on failure q is freed, err says why
 * when the packer failed, and -1 is returned. */
static inline int claq_test_make_packed(eng_qmatrix *q, eng_claq_packed *p, int64_t rows, int64_t cols,
                                 int mix, uint32_t (*urnd)(void), float (*ufrnd)(void),
                                 eng_err *err)
{
    if (claq_test_make_q(q, rows, cols, mix, urnd, ufrnd)) return -1;
    if (eng_claq_pack(q, "test", p, err)) {
        eng_qmatrix_free(q);
        return -1;
    }
    return 0;
}

#endif
