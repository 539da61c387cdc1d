/* kern_cpu_exp_avx512.c — y[i] = expf(x[i]) for a whole array on AVX-512, bit for bit what glibc's
 * expf gives on x86-64 CPUs with FMA (its __expf_fma: every AVX-512 CPU takes that variant), so
 * the softmax and SwiGLU loops that call it keep the exact numbers of the scalar libm path.
 * The method is the one glibc's single-precision exp documents (Szabolcs Nagy's, from Arm's
 * optimized-routines): in double precision, x * 32 / ln 2 = k + r with k rounded to nearest,
 * exp(x) = 2^(k/32) * p(r) with 2^(i/32) from a 32-entry table and p a cubic, then one rounding
 * to float. The order and fusing of the operations below are those of glibc's FMA build (its
 * disassembly: the scaling into k and into r, and all three polynomial steps, are fused
 * multiply-adds); tests/kernels/test_kern_exp_matches_libm.c compares against libm expf.
 * Lanes with |x| >= 88, infinities and NaN take libm's expf itself (overflow, underflow, the
 * special values). Pure function; any thread. Compiled with the AVX-512 flags. */
#include "kern_cpu_exp_consts.h"
#include "kern_cpu_impl.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

/* exp of 8 floats in double precision, the glibc sequence. */
static inline __m256 exp8(__m256 x, const __m512d *tab)
{
    const __m512d xd = _mm512_cvtps_pd(x);
    const __m512d inv = _mm512_set1_pd(EXPF_INV_LN2_32), shift = _mm512_set1_pd(EXPF_SHIFT);
    const __m512d kds = _mm512_fmadd_pd(inv, xd, shift);   /* k + SHIFT: k in the low bits */
    const __m512i ki = _mm512_castpd_si512(kds);
    const __m512d kd = _mm512_sub_pd(kds, shift);
    const __m512d r = _mm512_fmsub_pd(inv, xd, kd);
    const __m512i i = _mm512_and_si512(ki, _mm512_set1_epi64(31));
    const __m512d lo = _mm512_permutex2var_pd(tab[0], i, tab[1]);   /* entries 0-15 */
    const __m512d hi = _mm512_permutex2var_pd(tab[2], i, tab[3]);   /* 16-31 */
    const __m512d t = _mm512_mask_blend_pd(_mm512_test_epi64_mask(i, _mm512_set1_epi64(16)), lo,
                                           hi);
    /* 2^(k/32) = 2^(i/32) * 2^((k - i) / 32): (k - i) / 32 into the exponent, modulo 2^64 like
     * glibc's uint64 arithmetic */
    const __m512i sb = _mm512_add_epi64(
        _mm512_castpd_si512(t),
        _mm512_sub_epi64(_mm512_slli_epi64(ki, 47), _mm512_slli_epi64(i, 47)));
    const __m512d s = _mm512_castsi512_pd(sb);
    const __m512d z = _mm512_fmadd_pd(r, _mm512_set1_pd(EXPF_P3), _mm512_set1_pd(EXPF_P2));
    const __m512d r2 = _mm512_mul_pd(r, r);
    __m512d y = _mm512_fmadd_pd(r, _mm512_set1_pd(EXPF_P1), _mm512_set1_pd(1.0));
    y = _mm512_fmadd_pd(z, r2, y);
    return _mm512_cvtpd_ps(_mm512_mul_pd(y, s));
}

void kern_cpu__exp_avx512(const float *x, float *y, int64_t n)
{
    __m512d tab[4];
    for (int q = 0; q < 4; q++) tab[q] = _mm512_loadu_pd(exp2_32nds + 8 * q);
    /* |x| >= 88 (top 12 bits of |x| >= those of 88.0f), infinities and NaN: libm's own path */
    const __m512i big = _mm512_set1_epi32(0x42b);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        const __m512i top = _mm512_and_si512(_mm512_srli_epi32(_mm512_castps_si512(v), 20),
                                             _mm512_set1_epi32(0x7ff));
        const __mmask16 special = _mm512_cmpge_epi32_mask(top, big);
        const __m256 e0 = exp8(_mm512_castps512_ps256(v), tab);
        const __m256 e1 = exp8(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)),
                               tab);
        __m512 e = _mm512_insertf32x8(_mm512_castps256_ps512(e0), e1, 1);
        _mm512_storeu_ps(y + i, e);
        if (special) {   /* from the loaded copy: y may be x */
            float xs[16];
            _mm512_storeu_ps(xs, v);
            for (int l = 0; l < 16; l++)
                if (special >> l & 1) y[i + l] = expf(xs[l]);
        }
    }
    for (; i < n; i++) y[i] = expf(x[i]);
}
