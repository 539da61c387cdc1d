/* kern_cpu_claq_avx512.h — inline helpers of the AVX-512 CLAQ kernels, shared by the fp32 tile
 * kernels (kern_cpu_claq_avx512.c) and the bfloat16 prefill GEMM (kern_cpu_claq_avx512bf16.c):
 * pulling code c of a block out of its packed words as a vpermps/vpermd index. Include only from
 * files compiled with the AVX-512 flags. Pure functions; any worker thread. */
#ifndef KERN_CPU_CLAQ_AVX512_H
#define KERN_CPU_CLAQ_AVX512_H

#include <immintrin.h>

#include "kern_cpu_claq.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))
/* An empty asm that "changes" v: keeps GCC from hoisting all 128 lookups of a block ahead of
 * their adds (it did, and spilled them to the stack: 2x slower). */
#define PIN(v) __asm__ volatile("" : "+v"(v))

/* v rotated right by sh (1..31). vprord takes an immediate, and _mm512_ror_epi32 needs a literal
 * once the compiler does not fold sh (-O0, some -O1 builds), so each count gets its own literal;
 * optimized builds with a constant sh keep one case: a single vprord $sh. (_mm512_rorv_epi32
 * with a broadcast count compiles everywhere but stays vprorvd plus a broadcast: slower.) */
ALWAYS_INLINE __m512i ror32(__m512i v, const int sh)
{
#define ROR_CASE(n) case n: return _mm512_ror_epi32(v, n);
    switch (sh) {
    ROR_CASE(1) ROR_CASE(2) ROR_CASE(3) ROR_CASE(4) ROR_CASE(5) ROR_CASE(6) ROR_CASE(7)
    ROR_CASE(8) ROR_CASE(9) ROR_CASE(10) ROR_CASE(11) ROR_CASE(12) ROR_CASE(13) ROR_CASE(14)
    ROR_CASE(15) ROR_CASE(16) ROR_CASE(17) ROR_CASE(18) ROR_CASE(19) ROR_CASE(20) ROR_CASE(21)
    ROR_CASE(22) ROR_CASE(23) ROR_CASE(24) ROR_CASE(25) ROR_CASE(26) ROR_CASE(27) ROR_CASE(28)
    ROR_CASE(29) ROR_CASE(30) ROR_CASE(31)
    default: return v;
    }
#undef ROR_CASE
}

/* Index vector of code c (width B) from the block's words W[0..B). A rotate, not a shift: on
 * Zen 4/5 vprord issues on the FMA pipes, vpsrld on the two FADD pipes that the vaddps needs. */
ALWAYS_INLINE __m512i code_idx(const __m512i *W, const int B, const int c)
{
    const int bit = c * B, w = bit >> 5, sh = bit & 31;
    if (sh == 0) return W[w];
    if (sh + B <= 32) return ror32(W[w], sh);
    return _mm512_or_si512(_mm512_srli_epi32(W[w], sh), _mm512_slli_epi32(W[w + 1], 32 - sh));
}

#endif
