/* kern_cpu_dot_ref.c — scalar reference dot products (the oracle the SIMD paths are tested
 * against): one sequential fp32 sum, weights converted from their dtype first. */
#include "kern_cpu_impl.h"
#include "kern_half.h"

float kern_cpu__dot_f32_ref(const void *w, const float *x, int64_t n)
{
    const float *a = w;
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += a[i] * x[i];
    return s;
}

float kern_cpu__dot_f16_ref(const void *w, const float *x, int64_t n)
{
    const uint16_t *a = w;
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += kern_f16_to_f32(a[i]) * x[i];
    return s;
}

float kern_cpu__dot_bf16_ref(const void *w, const float *x, int64_t n)
{
    const uint16_t *a = w;
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += kern_bf16_to_f32(a[i]) * x[i];
    return s;
}

/* int8 weights (KERN_Q8_ROW codes; the caller applies the row's scale). Eight lanes, each a
 * sequential sum over i = lane mod 8, added in a fixed tree: the same on every ISA (the compiler
 * may vectorise the lanes, which does not change any lane's order). */
float kern_cpu__dot_q8(const void *w, const float *x, int64_t n)
{
    const int8_t *a = w;
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += (float)a[i + l] * x[i + l];
    for (int l = 0; i < n; i++, l++) acc[l] += (float)a[i] * x[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

void kern_cpu__wsum_f32_ref(float *out, const float *w, const void *const *rows, int len,
                            int64_t n)
{
    for (int64_t d = 0; d < n; d++) {
        float s = 0.0f;
        for (int p = 0; p < len; p++) {
            float prod = w[p] * ((const float *)rows[p])[d];
            s += prod;
        }
        out[d] = s;
    }
}

void kern_cpu__wsum_f16_ref(float *out, const float *w, const void *const *rows, int len,
                            int64_t n)
{
    for (int64_t d = 0; d < n; d++) {
        float s = 0.0f;
        for (int p = 0; p < len; p++) {
            float prod = w[p] * kern_f16_to_f32(((const uint16_t *)rows[p])[d]);
            s += prod;
        }
        out[d] = s;
    }
}

kern_wsum4_fn kern_cpu__wsum4_fn(kern_isa isa, kern_dtype dt)
{
#if defined(__x86_64__)
    if (isa == KERN_ISA_AVX512 && dt == KERN_F32) return kern_cpu__wsum4_f32_avx512;
    if (isa == KERN_ISA_AVX512 && dt == KERN_F16) return kern_cpu__wsum4_f16_avx512;
#else
    (void)isa;
    (void)dt;
#endif
    return NULL;
}

kern_wsum_fn kern_cpu__wsum_fn(kern_isa isa, kern_dtype dt)
{
    if (dt != KERN_F32 && dt != KERN_F16) return NULL;
#if defined(__x86_64__)
    if (isa == KERN_ISA_AVX512) return dt == KERN_F32 ? kern_cpu__wsum_f32_avx512
                                                     : kern_cpu__wsum_f16_avx512;
    if (isa == KERN_ISA_AVX2) return dt == KERN_F32 ? kern_cpu__wsum_f32_avx2
                                                   : kern_cpu__wsum_f16_avx2;
#else
    (void)isa;
#endif
    return dt == KERN_F32 ? kern_cpu__wsum_f32_ref : kern_cpu__wsum_f16_ref;
}

kern_dot4_fn kern_cpu__dot4_fn(kern_isa isa, kern_dtype dt)
{
#if defined(__x86_64__)
    static const kern_dot4_fn avx512[3] = {kern_cpu__dot4_f32_avx512, kern_cpu__dot4_f16_avx512,
                                           kern_cpu__dot4_bf16_avx512};
    if (isa == KERN_ISA_AVX512 && (int)dt >= 0 && dt <= KERN_BF16) return avx512[dt];
#else
    (void)isa;
    (void)dt;
#endif
    return NULL;
}

kern_dot_fn kern_cpu__dot_fn(kern_isa isa, kern_dtype dt)
{
    static const kern_dot_fn table[3][3] = {
        [KERN_ISA_SCALAR] = {kern_cpu__dot_f32_ref, kern_cpu__dot_f16_ref, kern_cpu__dot_bf16_ref},
#if defined(__x86_64__)
        [KERN_ISA_AVX2] = {kern_cpu__dot_f32_avx2, kern_cpu__dot_f16_avx2, kern_cpu__dot_bf16_avx2},
        [KERN_ISA_AVX512] = {kern_cpu__dot_f32_avx512, kern_cpu__dot_f16_avx512,
                             kern_cpu__dot_bf16_avx512},
#endif
    };
    if (dt == KERN_Q8_ROW) return kern_cpu__dot_q8;   /* one version for every ISA */
    if ((int)dt < 0 || dt > KERN_BF16 || (int)isa < 0 || isa > KERN_ISA_AVX512) return NULL;
    kern_dot_fn f = table[isa][dt];
    return f ? f : table[KERN_ISA_SCALAR][dt];
}
