/* claq_test_matrix.h — random CLAQ matrices for the CPU kernel tests (after kern_test_util.h,
 * whose seeded generator it draws from). One test program per translation unit. */
#ifndef CLAQ_TEST_MATRIX_H
#define CLAQ_TEST_MATRIX_H

#include "eng_qmatrix.h"

/* Random qmatrix: bits per column from `mix` (0: all 4, 1: all 3, 2: all 2, 3: mixed), sorted
 * fp16 codebooks with heavy-ish tails, outliers at ~2 % of positions. */
static int make_q(eng_qmatrix *q, int64_t rows, int64_t cols, int mix)
{
    if (eng_qmatrix_alloc(q, rows, cols, NULL)) return -1;
    for (int64_t j = 0; j < cols; j++) {
        q->bits[j] = (uint8_t)(mix == 3 ? 2 + (int)(rnd() % 3) : 4 - mix);
        int K = 1 << q->bits[j];
        float v[16];
        for (int e = 0; e < K; e++) {
            float u = frnd();
            v[e] = u * u * u * 0.3f + u * 0.05f;
        }
        for (int a = 1; a < K; a++)
            for (int b = a; b > 0 && v[b] < v[b - 1]; b--) {
                float t = v[b]; v[b] = v[b - 1]; v[b - 1] = t;
            }
        for (int e = 0; e < ENG_QM_CB; e++)
            q->codebook[j * ENG_QM_CB + e] = kern_f32_to_f16(v[e < K ? e : K - 1]);
        for (int64_t r = 0; r < rows; r++) q->codes[r * cols + j] = (uint8_t)(rnd() % (uint32_t)K);
    }
    for (int64_t j = 0; j < cols; j++)
        for (int64_t r = 0; r < rows; r++)
            if (rnd() % 50 == 0 && eng_qmatrix_add_outlier(q, (uint32_t)r, (uint32_t)j,
                                                          kern_f32_to_f16(frnd() * 2.0f)))
                return -1;
    return 0;
}

#endif
