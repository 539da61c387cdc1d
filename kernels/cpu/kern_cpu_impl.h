/* kern_cpu_impl.h — internals shared by the CPU backend's files: the worker pool, the ISA choice,
 * the backend context, and the per-dtype matmul entry points. Not for the engine (kern.h is). */
#ifndef KERN_CPU_IMPL_H
#define KERN_CPU_IMPL_H

#include <stdint.h>

#include "kern.h"
#include "kern_pool.h"   /* the worker pool (kern_cpu_pool.c) */

/* ---- instruction set (kern_cpu_features.c) ---- */
typedef enum kern_isa { KERN_ISA_SCALAR = 0, KERN_ISA_AVX2 = 1, KERN_ISA_AVX512 = 2 } kern_isa;
/* Best ISA the CPU and OS support (CPUID + XGETBV), capped by env CLAQ_ISA when set. */
kern_isa kern_cpu_detect_isa(void);
const char *kern_isa_name(kern_isa isa);
/* 1 when isa is AVX-512 and the CPU has AVX512_BF16 (vdpbf16ps): the bfloat16 prefill GEMM. */
int kern_cpu_has_bf16(kern_isa isa);

typedef struct kern_cpu_ctx {
    kern_pool *pool;        /* owned */
    kern_isa isa;           /* chosen once at creation */
    int n_threads;
    float **scratch;        /* [n_threads] per-worker scratch; owned */
    int64_t scratch_floats; /* size of each scratch buffer */
    int bf16;               /* kern_cpu_has_bf16: matmul_bf16 runs (else KERN_E_UNSUPPORTED) */
    int offline;            /* 1: dense matmuls of >= KERN_CPU_BLAS_MIN_N tokens use BLAS */
    float *wide;            /* fp32 copy of an F16/BF16 weight for BLAS; grow-only; owned */
    int64_t wide_floats;
} kern_cpu_ctx;

/* kern_cpu_blas.c: y = x W^T through cblas_sgemm (not batch invariant: see the file). */
#define KERN_CPU_BLAS_MIN_N 16
int kern_cpu__matmul_blas(kern_cpu_ctx *c, const kern_matrix *w, const float *x, int n, float *y);

/* Grows every worker's scratch to at least n floats (called before kern_pool_run). */
int kern_cpu__scratch_reserve(kern_cpu_ctx *c, int64_t n);

/* ---- dense dot products (kern_cpu_dot_*.c): sum_i w[i]*x[i], w in the given dtype.
 * One fixed summation order per ISA, independent of anything but n. */
typedef float (*kern_dot_fn)(const void *w, const float *x, int64_t n);
kern_dot_fn kern_cpu__dot_fn(kern_isa isa, kern_dtype dt);
/* out[j] = dot(w, x + j*xstride, n) for j < 4, each bit-identical to the ISA's kern_dot_fn.
 * NULL where the ISA has none (the caller then uses kern_dot_fn per token). */
typedef void (*kern_dot4_fn)(const void *w, const float *x, int64_t xstride, int64_t n, float *out);
kern_dot4_fn kern_cpu__dot4_fn(kern_isa isa, kern_dtype dt);
void kern_cpu__dot4_f32_avx512(const void *w, const float *x, int64_t xstride, int64_t n, float *out);
void kern_cpu__dot4_f16_avx512(const void *w, const float *x, int64_t xstride, int64_t n, float *out);
void kern_cpu__dot4_bf16_avx512(const void *w, const float *x, int64_t xstride, int64_t n, float *out);
float kern_cpu__dot_f32_ref(const void *w, const float *x, int64_t n);
float kern_cpu__dot_q8(const void *w, const float *x, int64_t n);   /* codes only, no scale */
float kern_cpu__dot_f16_ref(const void *w, const float *x, int64_t n);
float kern_cpu__dot_bf16_ref(const void *w, const float *x, int64_t n);
float kern_cpu__dot_f32_avx2(const void *w, const float *x, int64_t n);
float kern_cpu__dot_f16_avx2(const void *w, const float *x, int64_t n);
float kern_cpu__dot_bf16_avx2(const void *w, const float *x, int64_t n);
float kern_cpu__dot_f32_avx512(const void *w, const float *x, int64_t n);
float kern_cpu__dot_f16_avx512(const void *w, const float *x, int64_t n);
float kern_cpu__dot_bf16_avx512(const void *w, const float *x, int64_t n);
/* Attention's weighted sum of value rows: out[d] = sum over p = 0 .. len-1, in order, of
 * w[p] * rows[p][d], starting from 0, a product then a sum per element (never a fused
 * multiply-add), so every ISA gives the same bits; rows hold n entries of the dtype (f32 or
 * f16). The SIMD forms keep a vector of out in registers across all positions. */
typedef void (*kern_wsum_fn)(float *out, const float *w, const void *const *rows, int len,
                             int64_t n);
kern_wsum_fn kern_cpu__wsum_fn(kern_isa isa, kern_dtype dt);   /* NULL: dtype not supported */
void kern_cpu__wsum_f32_ref(float *out, const float *w, const void *const *rows, int len,
                            int64_t n);
void kern_cpu__wsum_f16_ref(float *out, const float *w, const void *const *rows, int len,
                            int64_t n);
void kern_cpu__wsum_f32_avx2(float *out, const float *w, const void *const *rows, int len,
                             int64_t n);
void kern_cpu__wsum_f16_avx2(float *out, const float *w, const void *const *rows, int len,
                             int64_t n);
void kern_cpu__wsum_f32_avx512(float *out, const float *w, const void *const *rows, int len,
                               int64_t n);
void kern_cpu__wsum_f16_avx512(float *out, const float *w, const void *const *rows, int len,
                               int64_t n);
/* Four heads over the same rows: out + h * out_stride gets wsum(w + h * w_stride) for h < 4,
 * each bit-identical to the ISA's kern_wsum_fn; a row is loaded once for the four. NULL where
 * the ISA has none (the caller then calls kern_wsum_fn per head). */
typedef void (*kern_wsum4_fn)(float *out, int64_t out_stride, const float *w, int64_t w_stride,
                              const void *const *rows, int len, int64_t n);
kern_wsum4_fn kern_cpu__wsum4_fn(kern_isa isa, kern_dtype dt);
void kern_cpu__wsum4_f32_avx512(float *out, int64_t out_stride, const float *w, int64_t w_stride,
                                const void *const *rows, int len, int64_t n);
void kern_cpu__wsum4_f16_avx512(float *out, int64_t out_stride, const float *w, int64_t w_stride,
                                const void *const *rows, int len, int64_t n);

/* ---- exp of an array: y[i] = expf(x[i]) (y may be x), libm's bits on every path; the AVX-512
 * and AVX2 ones vectorize glibc's method (kern_cpu_exp_avx512.c, _avx2.c). ---- */
typedef void (*kern_exp_fn)(const float *x, float *y, int64_t n);
kern_exp_fn kern_cpu__exp_fn(kern_isa isa);
void kern_cpu__exp_ref(const float *x, float *y, int64_t n);
void kern_cpu__exp_avx2(const float *x, float *y, int64_t n);
void kern_cpu__exp_avx512(const float *x, float *y, int64_t n);

/* ---- packed CLAQ matmul (kern_cpu_claq*.c): same contract as kern_backend_ops.matmul,
 * including batch invariance (y[t] bit-identical for any n and thread count). */
int kern_cpu__matmul_claq(kern_cpu_ctx *c, const kern_matrix *w, const float *x, int n, float *y);
/* kern.h matmul_bf16 for packed CLAQ (kern_cpu_claq.h: the bfloat16 prefill GEMM);
 * KERN_E_UNSUPPORTED where the CPU lacks AVX512_BF16. */
int kern_cpu__matmul_claq_bf16(kern_cpu_ctx *c, const kern_matrix *w, const float *x, int n,
                               float *y);

#endif
