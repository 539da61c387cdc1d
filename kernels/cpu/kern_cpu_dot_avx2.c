/* kern_cpu_dot_avx2.c — AVX2+FMA+F16C dot products: 4 accumulators of 8 lanes over 32-element
 * steps, a fixed horizontal reduction, then a scalar tail. Same order for every call with the same n. */
#include "kern_cpu_impl.h"
#include "kern_half.h"

#include <immintrin.h>

static inline float hsum256(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

static inline __m256 load_f16(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline __m256 load_bf16(const uint16_t *p)
{
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

#define DOT_BODY(LOAD, TAIL_CONV)                                                          \
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                             \
    int64_t i = 0;                                                                          \
    for (; i + 32 <= n; i += 32) {                                                          \
        a0 = _mm256_fmadd_ps(LOAD(w + i), _mm256_loadu_ps(x + i), a0);                      \
        a1 = _mm256_fmadd_ps(LOAD(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);              \
        a2 = _mm256_fmadd_ps(LOAD(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);            \
        a3 = _mm256_fmadd_ps(LOAD(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);            \
    }                                                                                       \
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(LOAD(w + i), _mm256_loadu_ps(x + i), a0); \
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));         \
    for (; i < n; i++) s += TAIL_CONV(w[i]) * x[i];                                         \
    return s;

static inline float ident(float v) { return v; }

float kern_cpu__dot_f32_avx2(const void *wv, const float *x, int64_t n)
{
    const float *w = wv;
    DOT_BODY(_mm256_loadu_ps, ident)
}

float kern_cpu__dot_f16_avx2(const void *wv, const float *x, int64_t n)
{
    const uint16_t *w = wv;
    DOT_BODY(load_f16, kern_f16_to_f32)
}

static inline __m256 load_f32(const float *p) { return _mm256_loadu_ps(p); }

/* Four vectors of out (32 elements) at a time over every position, then one, then scalars:
 * per element the reference's product and sum in position order. */
#define WSUM_BODY(T, LOAD, CONV)                                                             \
    int64_t d = 0;                                                                            \
    for (; d + 32 <= n; d += 32) {                                                            \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                           \
        for (int p = 0; p < len; p++) {                                                       \
            const T *r = (const T *)rows[p] + d;                                              \
            __m256 wp = _mm256_set1_ps(w[p]);                                                 \
            a0 = _mm256_add_ps(a0, _mm256_mul_ps(wp, LOAD(r)));                               \
            a1 = _mm256_add_ps(a1, _mm256_mul_ps(wp, LOAD(r + 8)));                           \
            a2 = _mm256_add_ps(a2, _mm256_mul_ps(wp, LOAD(r + 16)));                          \
            a3 = _mm256_add_ps(a3, _mm256_mul_ps(wp, LOAD(r + 24)));                          \
        }                                                                                     \
        _mm256_storeu_ps(out + d, a0);                                                        \
        _mm256_storeu_ps(out + d + 8, a1);                                                    \
        _mm256_storeu_ps(out + d + 16, a2);                                                   \
        _mm256_storeu_ps(out + d + 24, a3);                                                   \
    }                                                                                         \
    for (; d + 8 <= n; d += 8) {                                                              \
        __m256 a0 = _mm256_setzero_ps();                                                      \
        for (int p = 0; p < len; p++)                                                         \
            a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_set1_ps(w[p]),                        \
                                                 LOAD((const T *)rows[p] + d)));              \
        _mm256_storeu_ps(out + d, a0);                                                        \
    }                                                                                         \
    for (; d < n; d++) {                                                                      \
        float s = 0.0f;                                                                       \
        for (int p = 0; p < len; p++) {                                                       \
            float prod = w[p] * CONV(((const T *)rows[p])[d]);                                \
            s += prod;                                                                        \
        }                                                                                     \
        out[d] = s;                                                                           \
    }

void kern_cpu__wsum_f32_avx2(float *out, const float *w, const void *const *rows, int len,
                             int64_t n)
{
    WSUM_BODY(float, load_f32, ident)
}

void kern_cpu__wsum_f16_avx2(float *out, const float *w, const void *const *rows, int len,
                             int64_t n)
{
    WSUM_BODY(uint16_t, load_f16, kern_f16_to_f32)
}

float kern_cpu__dot_bf16_avx2(const void *wv, const float *x, int64_t n)
{
    const uint16_t *w = wv;
    DOT_BODY(load_bf16, kern_bf16_to_f32)
}
