/* kern_cpu_features.c — picks the CPU kernel ISA once: CPUID feature bits plus the OS-support
 * check (XGETBV: the OS saves YMM / ZMM state), capped by env CLAQ_ISA=scalar|avx2|avx512; and
 * whether the AVX-512 path may use bfloat16 dot products. */
#include "kern_cpu_impl.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static kern_isa hw_isa(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return KERN_ISA_SCALAR;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return KERN_ISA_SCALAR;
    uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) return KERN_ISA_SCALAR; /* XMM + YMM state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return KERN_ISA_SCALAR;
    int avx2 = (b >> 5) & 1;
    int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512bw = (b >> 30) & 1,
        avx512vl = (b >> 31) & 1;
    if (!avx2 || !fma || !f16c) return KERN_ISA_SCALAR;
    if (avx512f && avx512dq && avx512bw && avx512vl && (xcr0 & 0xe6) == 0xe6) return KERN_ISA_AVX512;
    return KERN_ISA_AVX2;
}

static int hw_bf16(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return 0;
    return (a >> 5) & 1;   /* CPUID.(EAX=7,ECX=1):EAX[5] = AVX512_BF16 */
}
#else
static kern_isa hw_isa(void) { return KERN_ISA_SCALAR; }
static int hw_bf16(void) { return 0; }
#endif

int kern_cpu_has_bf16(kern_isa isa)
{
    return isa == KERN_ISA_AVX512 && hw_bf16();
}

kern_isa kern_cpu_detect_isa(void)
{
    kern_isa isa = hw_isa();
    const char *env = getenv("CLAQ_ISA");
    if (env) {
        kern_isa want = isa;
        if (strcmp(env, "scalar") == 0) want = KERN_ISA_SCALAR;
        else if (strcmp(env, "avx2") == 0) want = KERN_ISA_AVX2;
        else if (strcmp(env, "avx512") == 0) want = KERN_ISA_AVX512;
        if (want < isa) isa = want; /* never above what the hardware can run */
    }
    return isa;
}

const char *kern_isa_name(kern_isa isa)
{
    switch (isa) {
    case KERN_ISA_AVX512: return "avx512";
    case KERN_ISA_AVX2: return "avx2";
    default: return "scalar";
    }
}
