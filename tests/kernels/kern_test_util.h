/* kern_test_util.h — what the CPU kernel tests share: a seeded xorshift generator, uniform
 * floats in [-1, 1), a CHECK that counts a failure, prints where, and goes on, a bit-for-bit
 * float comparison, and whether this CPU runs an ISA's kernels. One test program per
 * translation unit, single-threaded. */
#ifndef KERN_TEST_UTIL_H
#define KERN_TEST_UTIL_H

#include <cpuid.h>
#include <stdint.h>
#include <stdio.h>

#include "kern_cpu_impl.h"
#include "kern_half.h"

static uint64_t test_rng = 0x9e3779b97f4a7c15ull;
static inline void test_seed(uint64_t s) { test_rng = s ? s : 1; }
static inline uint32_t rnd(void)
{
    test_rng ^= test_rng << 13;
    test_rng ^= test_rng >> 7;
    test_rng ^= test_rng << 17;
    return (uint32_t)(test_rng >> 11);
}
static inline float frnd(void) { return (float)(rnd() >> 8) / 16777216.0f * 2.0f - 1.0f; }

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, \
    __LINE__); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

/* 1 when a[0..n) and b[0..n) are the same bits; else 0 and *where = the first difference. */
static inline int same_bits(const float *a, const float *b, int64_t n, int64_t *where)
{
    for (int64_t i = 0; i < n; i++)
        if (kern_bits_from_f32(a[i]) != kern_bits_from_f32(b[i])) { *where = i; return 0; }
    return 1;
}

static inline int have_isa(kern_isa isa)
{
    __builtin_cpu_init();
    if (isa == KERN_ISA_AVX2) {   /* F16C from CPUID leaf 1 (ECX bit 29): clang 14's
                                   * __builtin_cpu_supports does not know "f16c" */
        unsigned a, b, c, d;
        return __builtin_cpu_supports("avx2") && __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1);
    }
    if (isa == KERN_ISA_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    return 1;
}

#endif
