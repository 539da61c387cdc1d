/* kern_cpu_exp_consts.h — the constants of glibc's single-precision exp (2^(i/32) table, the
 * k/32 scaling, the cubic's coefficients), shared by the AVX-512 and AVX2 array exps
 * (kern_cpu_exp_avx512.c, kern_cpu_exp_avx2.c), whose header comments describe the method.
 * Read-only data; any thread. */
#ifndef KERN_CPU_EXP_CONSTS_H
#define KERN_CPU_EXP_CONSTS_H

/* 2^(i/32), correctly rounded. */
static const double exp2_32nds[32] = {
    0x1.0000000000000p+0, 0x1.059b0d3158574p+0, 0x1.0b5586cf9890fp+0, 0x1.11301d0125b51p+0,
    0x1.172b83c7d517bp+0, 0x1.1d4873168b9aap+0, 0x1.2387a6e756238p+0, 0x1.29e9df51fdee1p+0,
    0x1.306fe0a31b715p+0, 0x1.371a7373aa9cbp+0, 0x1.3dea64c123422p+0, 0x1.44e086061892dp+0,
    0x1.4bfdad5362a27p+0, 0x1.5342b569d4f82p+0, 0x1.5ab07dd485429p+0, 0x1.6247eb03a5585p+0,
    0x1.6a09e667f3bcdp+0, 0x1.71f75e8ec5f74p+0, 0x1.7a11473eb0187p+0, 0x1.82589994cce13p+0,
    0x1.8ace5422aa0dbp+0, 0x1.93737b0cdc5e5p+0, 0x1.9c49182a3f090p+0, 0x1.a5503b23e255dp+0,
    0x1.ae89f995ad3adp+0, 0x1.b7f76f2fb5e47p+0, 0x1.c199bdd85529cp+0, 0x1.cb720dcef9069p+0,
    0x1.d5818dcfba487p+0, 0x1.dfc97337b9b5fp+0, 0x1.ea4afa2a490dap+0, 0x1.f50765b6e4540p+0,
};

/* 32 / ln 2; the shift whose addition rounds to an integer; the cubic's coefficients, scaled
 * by 32^-k */
#define EXPF_INV_LN2_32 (0x1.71547652b82fep+0 * 32)
#define EXPF_SHIFT 0x1.8p+52
#define EXPF_P3 (0x1.c6af84b912394p-5 / 32 / 32 / 32)
#define EXPF_P2 (0x1.ebfce50fac4f3p-3 / 32 / 32)
#define EXPF_P1 (0x1.62e42ff0c52d6p-1 / 32)

#endif
