/* kern_cpu_dot_avx512.c — AVX-512 dot products: 4 accumulators of 16 lanes over 64-element steps,
 * a masked final partial vector, fixed reduction order. Same order for every call with the same n. */
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
