/* kern_cpu_dot_avx512.c — AVX-512 dot products: 4 accumulators of 16 lanes over 64-element steps,
 * a masked final partial vector, fixed reduction order. Same order for every call with the same n,
 * and the four-token form gives each token that same order. */
#include "kern_cpu_impl.h"
#include "kern_half.h"

#include <immintrin.h>

static inline __m512 load_f16(const uint16_t *p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

static inline __m512 load_bf16(const uint16_t *p)
{
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

static inline __m512 load_f16_mask(const uint16_t *p, __mmask16 m)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

static inline __m512 load_bf16_mask(const uint16_t *p, __mmask16 m)
{
    __m256i h = _mm256_maskz_loadu_epi16(m, p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

static inline __m512 load_f32_mask(const float *p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }

#define DOT_BODY(LOAD, LOADM)                                                                \
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                               \
    int64_t i = 0;                                                                            \
    for (; i + 64 <= n; i += 64) {                                                            \
        a0 = _mm512_fmadd_ps(LOAD(w + i), _mm512_loadu_ps(x + i), a0);                        \
        a1 = _mm512_fmadd_ps(LOAD(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);              \
        a2 = _mm512_fmadd_ps(LOAD(w + i + 32), _mm512_loadu_ps(x + i + 32), a2);              \
        a3 = _mm512_fmadd_ps(LOAD(w + i + 48), _mm512_loadu_ps(x + i + 48), a3);              \
    }                                                                                         \
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(LOAD(w + i), _mm512_loadu_ps(x + i), a0); \
    if (i < n) {                                                                              \
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);                                       \
        a1 = _mm512_fmadd_ps(LOADM(w + i, m), _mm512_maskz_loadu_ps(m, x + i), a1);           \
    }                                                                                         \
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));

/* Four tokens against one weight row: each token keeps exactly DOT_BODY's accumulators, operand
 * order and final reduction, so out[j] is bit-identical to dot(w, x_j, n) (batch invariance);
 * the row is loaded once per 64-element step instead of once per token. */
#define DOT4_BODY(LOAD, LOADM)                                                               \
    const float *xs[4] = {x, x + xstride, x + 2 * xstride, x + 3 * xstride};                  \
    __m512 a[4][4];                                                                           \
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++)                                                               \
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) a[j][k] = _mm512_setzero_ps();                            \
    int64_t i = 0;                                                                            \
    for (; i + 64 <= n; i += 64) {                                                            \
        __m512 w0 = LOAD(w + i), w1 = LOAD(w + i + 16), w2 = LOAD(w + i + 32),               \
               w3 = LOAD(w + i + 48);                                                         \
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {                                                         \
            a[j][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xs[j] + i), a[j][0]);               \
            a[j][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xs[j] + i + 16), a[j][1]);          \
            a[j][2] = _mm512_fmadd_ps(w2, _mm512_loadu_ps(xs[j] + i + 32), a[j][2]);          \
            a[j][3] = _mm512_fmadd_ps(w3, _mm512_loadu_ps(xs[j] + i + 48), a[j][3]);          \
        }                                                                                     \
    }                                                                                         \
    for (; i + 16 <= n; i += 16) {                                                            \
        __m512 w0 = LOAD(w + i);                                                              \
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++)                                                           \
            a[j][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xs[j] + i), a[j][0]);               \
    }                                                                                         \
    if (i < n) {                                                                              \
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);                                       \
        __m512 w0 = LOADM(w + i, m);                                                          \
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++)                                                           \
            a[j][1] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m, xs[j] + i), a[j][1]);      \
    }                                                                                         \
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++)                                                               \
        out[j] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a[j][0], a[j][1]),          \
                                                    _mm512_add_ps(a[j][2], a[j][3])));

void kern_cpu__dot4_f32_avx512(const void *wv, const float *x, int64_t xstride, int64_t n,
                               float *out)
{
    const float *w = wv;
    DOT4_BODY(_mm512_loadu_ps, load_f32_mask)
}

void kern_cpu__dot4_f16_avx512(const void *wv, const float *x, int64_t xstride, int64_t n,
                               float *out)
{
    const uint16_t *w = wv;
    DOT4_BODY(load_f16, load_f16_mask)
}

void kern_cpu__dot4_bf16_avx512(const void *wv, const float *x, int64_t xstride, int64_t n,
                                float *out)
{
    const uint16_t *w = wv;
    DOT4_BODY(load_bf16, load_bf16_mask)
}

float kern_cpu__dot_f32_avx512(const void *wv, const float *x, int64_t n)
{
    const float *w = wv;
    DOT_BODY(_mm512_loadu_ps, load_f32_mask)
}

float kern_cpu__dot_f16_avx512(const void *wv, const float *x, int64_t n)
{
    const uint16_t *w = wv;
    DOT_BODY(load_f16, load_f16_mask)
}

float kern_cpu__dot_bf16_avx512(const void *wv, const float *x, int64_t n)
{
    const uint16_t *w = wv;
    DOT_BODY(load_bf16, load_bf16_mask)
}

/* Attention's weighted sum of rows (kern_cpu_impl.h): four vectors of out (64 elements, a
 * 64-dim head whole) stay in registers over every position, then one vector, then scalars; per
 * element the reference's product and sum in position order. */
#define WSUM_BODY(T, LOAD, CONV)                                                             \
    int64_t d = 0;                                                                            \
    for (; d + 64 <= n; d += 64) {                                                            \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                           \
        for (int p = 0; p < len; p++) {                                                       \
            const T *r = (const T *)rows[p] + d;                                              \
            __m512 wp = _mm512_set1_ps(w[p]);                                                 \
            a0 = _mm512_add_ps(a0, _mm512_mul_ps(wp, LOAD(r)));                               \
            a1 = _mm512_add_ps(a1, _mm512_mul_ps(wp, LOAD(r + 16)));                          \
            a2 = _mm512_add_ps(a2, _mm512_mul_ps(wp, LOAD(r + 32)));                          \
            a3 = _mm512_add_ps(a3, _mm512_mul_ps(wp, LOAD(r + 48)));                          \
        }                                                                                     \
        _mm512_storeu_ps(out + d, a0);                                                        \
        _mm512_storeu_ps(out + d + 16, a1);                                                   \
        _mm512_storeu_ps(out + d + 32, a2);                                                   \
        _mm512_storeu_ps(out + d + 48, a3);                                                   \
    }                                                                                         \
    for (; d + 16 <= n; d += 16) {                                                            \
        __m512 a0 = _mm512_setzero_ps();                                                      \
        for (int p = 0; p < len; p++)                                                         \
            a0 = _mm512_add_ps(a0, _mm512_mul_ps(_mm512_set1_ps(w[p]),                        \
                                                 LOAD((const T *)rows[p] + d)));              \
        _mm512_storeu_ps(out + d, a0);                                                        \
    }                                                                                         \
    for (; d < n; d++) {                                                                      \
        float s = 0.0f;                                                                       \
        for (int p = 0; p < len; p++) {                                                       \
            float prod = w[p] * CONV(((const T *)rows[p])[d]);                                \
            s += prod;                                                                        \
        }                                                                                     \
        out[d] = s;                                                                           \
    }

static inline float ident_f32(float v) { return v; }

void kern_cpu__wsum_f32_avx512(float *out, const float *w, const void *const *rows, int len,
                               int64_t n)
{
    WSUM_BODY(float, _mm512_loadu_ps, ident_f32)
}

void kern_cpu__wsum_f16_avx512(float *out, const float *w, const void *const *rows, int len,
                               int64_t n)
{
    WSUM_BODY(uint16_t, load_f16, kern_f16_to_f32)
}

/* Four heads at once (kern_cpu_impl.h): per position the row's four vectors are loaded once and
 * serve 16 accumulators (4 heads x 64 elements); each element's products and sums are wsum's. */
#define WSUM4_BODY(T, LOAD, CONV)                                                            \
    int64_t d = 0;                                                                            \
    for (; d + 64 <= n; d += 64) {                                                            \
        __m512 a[4][4];                                                                       \
        _Pragma("GCC unroll 4") for (int h = 0; h < 4; h++)                                   \
            _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) a[h][k] = _mm512_setzero_ps(); \
        for (int p = 0; p < len; p++) {                                                       \
            const T *r = (const T *)rows[p] + d;                                              \
            __m512 v[4] = {LOAD(r), LOAD(r + 16), LOAD(r + 32), LOAD(r + 48)};                \
            _Pragma("GCC unroll 4") for (int h = 0; h < 4; h++) {                             \
                __m512 wp = _mm512_set1_ps(w[h * ws + p]);                                    \
                _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++)                           \
                    a[h][k] = _mm512_add_ps(a[h][k], _mm512_mul_ps(wp, v[k]));                \
            }                                                                                 \
        }                                                                                     \
        _Pragma("GCC unroll 4") for (int h = 0; h < 4; h++)                                   \
            _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++)                               \
                _mm512_storeu_ps(out + h * os + d + 16 * k, a[h][k]);                         \
    }                                                                                         \
    for (; d + 16 <= n; d += 16) {                                                            \
        __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),         \
                       _mm512_setzero_ps()};                                                  \
        for (int p = 0; p < len; p++) {                                                       \
            __m512 v = LOAD((const T *)rows[p] + d);                                          \
            _Pragma("GCC unroll 4") for (int h = 0; h < 4; h++)                               \
                a[h] = _mm512_add_ps(a[h], _mm512_mul_ps(_mm512_set1_ps(w[h * ws + p]), v));  \
        }                                                                                     \
        _Pragma("GCC unroll 4") for (int h = 0; h < 4; h++)                                   \
            _mm512_storeu_ps(out + h * os + d, a[h]);                                         \
    }                                                                                         \
    for (; d < n; d++)                                                                        \
        for (int h = 0; h < 4; h++) {                                                         \
            float s = 0.0f;                                                                   \
            for (int p = 0; p < len; p++) {                                                   \
                float prod = w[h * ws + p] * CONV(((const T *)rows[p])[d]);                   \
                s += prod;                                                                    \
            }                                                                                 \
            out[h * os + d] = s;                                                              \
        }

void kern_cpu__wsum4_f32_avx512(float *out, int64_t os, const float *w, int64_t ws,
                                const void *const *rows, int len, int64_t n)
{
    WSUM4_BODY(float, _mm512_loadu_ps, ident_f32)
}

void kern_cpu__wsum4_f16_avx512(float *out, int64_t os, const float *w, int64_t ws,
                                const void *const *rows, int len, int64_t n)
{
    WSUM4_BODY(uint16_t, load_f16, kern_f16_to_f32)
}
