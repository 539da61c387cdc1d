/* kern_half.h — IEEE fp16 and bfloat16 <-> fp32 conversions (portable, exact, round-to-nearest-
 * even on the way down). Header-only, no state; used by loaders, the quantizer and the kernels. */
#ifndef KERN_HALF_H
#define KERN_HALF_H

#include <stdint.h>
#include <string.h>

static inline float kern_f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t kern_bits_from_f32(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static inline float kern_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0) {
        if (man == 0) return kern_f32_from_bits(sign);
        /* subnormal: normalise */
        int e = -1;
        do { man <<= 1; e++; } while (!(man & 0x400));
        man &= 0x3ff;
        return kern_f32_from_bits(sign | ((uint32_t)(127 - 15 - e) << 23) | (man << 13));
    }
    if (exp == 31) return kern_f32_from_bits(sign | 0x7f800000u | (man << 13));
    return kern_f32_from_bits(sign | ((exp + 127 - 15) << 23) | (man << 13));
}

static inline uint16_t kern_f32_to_f16(float f)
{
    uint32_t x = kern_bits_from_f32(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds to >= 65520: inf */
    if (absx < 0x38800000u) { /* result is subnormal or zero */
        if (absx < 0x33000000u) return (uint16_t)sign; /* < 2^-25: rounds to 0 */
        uint32_t e = absx >> 23;
        uint32_t m = (absx & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14 + (113 - e) */
        uint32_t r = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((absx >> 13) - ((127 - 15) << 10));
    uint32_t rem = absx & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

static inline float kern_bf16_to_f32(uint16_t h) { return kern_f32_from_bits((uint32_t)h << 16); }

static inline uint16_t kern_f32_to_bf16(float f)
{
    uint32_t x = kern_bits_from_f32(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet nan */
    uint32_t lsb = (x >> 16) & 1;
    return (uint16_t)((x + 0x7fff + lsb) >> 16);
}

/* Rounds through fp16 and back: what a value stored as fp16 reads as. */
static inline float kern_round_f16(float f) { return kern_f16_to_f32(kern_f32_to_f16(f)); }

#endif
