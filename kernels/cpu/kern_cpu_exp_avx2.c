/* kern_cpu_exp_avx2.c — y[i] = expf(x[i]) for a whole array on AVX2 + FMA, bit for bit what
 * glibc's expf gives on such CPUs (its ifunc takes __expf_fma where FMA and AVX2 are usable),
 * so softmax and SwiGLU keep the exact numbers of the scalar libm path on CPUs without AVX-512
 * too. The method, its operations and their fusing are the AVX-512 file's
 * (kern_cpu_exp_avx512.c, which describes them), four doubles per vector, and the 2^(i/32)
 * table read by a gather instead of two-register permutes. Lanes with |x| >= 88, infinities
 * and NaN take libm's expf itself. tests/kernels/test_kern_exp_matches_libm.c compares against
 * libm expf. Pure function; any thread. Compiled with -mavx2 -mfma -mf16c. */
#include "kern_cpu_exp_consts.h"
#include "kern_cpu_impl.h"

#include <immintrin.h>
#include <math.h>

/* exp of 4 floats in double precision, the glibc sequence. */
static inline __m128 exp4(__m128 x)
{
    const __m256d xd = _mm256_cvtps_pd(x);
    const __m256d inv = _mm256_set1_pd(EXPF_INV_LN2_32), shift = _mm256_set1_pd(EXPF_SHIFT);
    const __m256d kds = _mm256_fmadd_pd(inv, xd, shift);   /* k + SHIFT: k in the low bits */
    const __m256i ki = _mm256_castpd_si256(kds);
    const __m256d kd = _mm256_sub_pd(kds, shift);
    const __m256d r = _mm256_fmsub_pd(inv, xd, kd);
    const __m256i i = _mm256_and_si256(ki, _mm256_set1_epi64x(31));
    const __m256d t = _mm256_i64gather_pd(exp2_32nds, i, 8);
    /* 2^(k/32) = 2^(i/32) * 2^((k - i) / 32), modulo 2^64 like glibc's uint64 arithmetic */
    const __m256i sb = _mm256_add_epi64(
        _mm256_castpd_si256(t),
        _mm256_sub_epi64(_mm256_slli_epi64(ki, 47), _mm256_slli_epi64(i, 47)));
    const __m256d s = _mm256_castsi256_pd(sb);
    const __m256d z = _mm256_fmadd_pd(r, _mm256_set1_pd(EXPF_P3), _mm256_set1_pd(EXPF_P2));
    const __m256d r2 = _mm256_mul_pd(r, r);
    __m256d y = _mm256_fmadd_pd(r, _mm256_set1_pd(EXPF_P1), _mm256_set1_pd(1.0));
    y = _mm256_fmadd_pd(z, r2, y);
    return _mm256_cvtpd_ps(_mm256_mul_pd(y, s));
}

void kern_cpu__exp_avx2(const float *x, float *y, int64_t n)
{
    /* |x| >= 88 (top 12 bits of |x| >= those of 88.0f), infinities and NaN: libm's own path */
    const __m256i below_big = _mm256_set1_epi32(0x42b - 1);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256i top = _mm256_and_si256(_mm256_srli_epi32(_mm256_castps_si256(v), 20),
                                             _mm256_set1_epi32(0x7ff));
        const int special =
            _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(top, below_big)));
        const __m128 e0 = exp4(_mm256_castps256_ps128(v));
        const __m128 e1 = exp4(_mm256_extractf128_ps(v, 1));
        _mm256_storeu_ps(y + i, _mm256_set_m128(e1, e0));
        if (special) {   /* from the loaded copy: y may be x */
            float xs[8];
            _mm256_storeu_ps(xs, v);
            for (int l = 0; l < 8; l++)
                if (special >> l & 1) y[i + l] = expf(xs[l]);
        }
    }
    for (; i < n; i++) y[i] = expf(x[i]);
}
