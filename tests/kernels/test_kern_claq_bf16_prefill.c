/* test_kern_claq_bf16_prefill.c — the bfloat16 prefill GEMM of packed CLAQ matrices (kern.h
 * matmul_bf16, kern_cpu_claq.h "The bfloat16 prefill GEMM"), on random matrices of odd shapes
 * (mixed 2/3/4-bit columns, ~2 % outliers):
 *  - the AVX-512 BF16 kernels equal the scalar reference of the stated numerics BIT FOR BIT,
 *    for n = 1, 5, 9, 64, 300 tokens and 1 or 2 pool threads: a token's result depends on
 *    nothing but its input (the batch invariance prompts keep under the relaxed numerics);
 *    also with inputs near and below FLT_MIN (subnormal inputs and sums: the instructions'
 *    flush to zero, which the reference models);
 *  - the reference agrees with a float64 matmul of the unpacked matrix within the bfloat16
 *    bound |y - y_exact| <= (2^-7 + 2^-16 + 2 (cols_pad + nnz) FLT_EPSILON) * sum_j |W[r][j] x[j]|
 *    (each input and weight rounded once to nearest, relative 2^-8 each: (1 + 2^-8)^2 - 1 per
 *    term);
 *  - it is relaxed for real: some rows differ from the fp32 matmul's bits;
 *  - through the backend: kern_matmul_bf16 gives the kernel's bits on a CPU with AVX512_BF16,
 *    and KERN_E_UNSUPPORTED (y untouched) for a dense matrix and for an ISA capped to AVX2.
 * Without AVX512_BF16 on this CPU only the reference's checks run (printed). */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eng_claq_file.h"
#include "kern_cpu_claq.h"
#include "kern_half.h"
#include "kern_test_util.h"
#include "claq_test_matrix.h"

static int have_bf16;
static double worst_rel;   /* largest |y - exact| / sum |terms| seen, printed */

/* xscale: the inputs' magnitude (1: ordinary; ~1e-38: subnormal inputs, products and sums,
 * where only the bit-for-bit comparison applies). */
static void run_shape(int64_t rows, int64_t cols, int mix, kern_pool *pool2, float xscale)
{
    eng_qmatrix q;
    eng_claq_packed p;
    eng_err err = {0};
    int rc = claq_test_make_packed(&q, &p, rows, cols, mix, rnd, frnd, &err);
    CHECK(rc == 0, "make and pack %lldx%lld: %s", (long long)rows, (long long)cols, err.msg);
    if (rc) return;
    const kern_claq *k = &p.view;
    const int nmax = 300;   /* past two GEMM chunks (KERN_CPU_CLAQ_GEMM_CHUNK) */
    float *x = malloc(sizeof(float) * (size_t)(nmax * cols));
    float *yref = malloc(sizeof(float) * (size_t)(nmax * rows));
    float *yf32 = malloc(sizeof(float) * (size_t)(nmax * rows));
    float *y = malloc(sizeof(float) * (size_t)(nmax * rows));
    float *w = malloc(sizeof(float) * (size_t)(rows * cols));
    for (int64_t i = 0; i < nmax * cols; i++) x[i] = frnd() * 3.0f * xscale;
    eng_claq_unpack(k, w);
    const int tiny = xscale < 1e-30f;

    /* Oracle: the scalar reference, one token at a time, one thread. */
    for (int t = 0; t < nmax; t++)
        CHECK(kern_cpu__claq_matmul_bf16_isa(KERN_ISA_SCALAR, NULL, k, x + t * cols, 1,
                                             yref + t * rows) == 0, "ref");
    CHECK(kern_cpu__claq_matmul_isa(KERN_ISA_SCALAR, NULL, k, x, nmax, yf32) == 0, "fp32");

    /* Within the bfloat16 bound of the exact product; and not the fp32 bits everywhere. */
    int64_t differ = 0;
    for (int t = 0; t < nmax; t++)
        for (int64_t r = 0; r < rows; r++) {
            double d = 0, mag = 0;
            for (int64_t j = 0; j < cols; j++) {
                d += (double)w[r * cols + j] * x[t * cols + j];
                mag += fabs((double)w[r * cols + j] * x[t * cols + j]);
            }
            double err1 = fabs(yref[t * rows + r] - d);
            double tol = (1.0 / 128 + 1.0 / 65536 +
                          2.0 * (double)(k->cols_pad + k->nnz) * FLT_EPSILON) * mag + 1e-30;
            if (tiny) continue;
            CHECK(err1 <= tol, "bound %lldx%lld t=%d r=%lld: %g vs %g (tol %g)", (long long)rows,
                  (long long)cols, t, (long long)r, yref[t * rows + r], d, tol);
            if (mag > 0 && err1 / mag > worst_rel) worst_rel = err1 / mag;
            differ += kern_bits_from_f32(yref[t * rows + r]) != kern_bits_from_f32(yf32[t * rows + r]);
        }
    if (cols >= 17 && !tiny) CHECK(differ > 0, "%lldx%lld: bf16 results equal fp32 everywhere",
                          (long long)rows, (long long)cols);

    /* The AVX-512 BF16 kernels: every batch size and thread count, the reference's bits. */
    const int ns[] = {1, 5, 9, 64, 300};
    for (unsigned ni = 0; have_bf16 && ni < sizeof ns / sizeof ns[0]; ni++)
        for (int th = 0; th < 2; th++) {
            int n = ns[ni];
            memset(y, 0xff, sizeof(float) * (size_t)(n * rows));
            rc = kern_cpu__claq_matmul_bf16_isa(KERN_ISA_AVX512, th ? pool2 : NULL, k, x, n, y);
            int64_t at = 0;
            CHECK(rc == 0 && same_bits(y, yref, n * rows, &at),
                  "avx512bf16 n=%d threads=%d %lldx%lld mix=%d: differs at token %lld row %lld: "
                  "%.9g vs ref %.9g", n, th + 1, (long long)rows, (long long)cols, mix,
                  (long long)(at / rows), (long long)(at % rows), y[at], yref[at]);
        }
    free(x); free(yref); free(yf32); free(y); free(w);
    eng_claq_packed_free(&p);
    eng_qmatrix_free(&q);
}

/* The backend op: the kernel's bits where the CPU has BF16; UNSUPPORTED elsewhere. */
static void backend_op(void)
{
    eng_qmatrix q;
    eng_claq_packed p;
    eng_err err = {0};
    const int64_t rows = 130, cols = 200;
    const int n = 40;
    if (claq_test_make_packed(&q, &p, rows, cols, 3, rnd, frnd, &err)) {
        CHECK(0, "make/pack: %s", err.msg);
        return;
    }
    float *x = malloc(sizeof(float) * (size_t)(n * cols));
    float *y = malloc(sizeof(float) * (size_t)(n * rows));
    float *yk = malloc(sizeof(float) * (size_t)(n * rows));
    float *dense = calloc((size_t)(rows * cols), sizeof(float));
    for (int64_t i = 0; i < n * cols; i++) x[i] = frnd();
    kern_matrix wq = {.dtype = KERN_CLAQ, .rows = rows, .cols = cols, .claq = &p.view};
    kern_matrix wd = {.dtype = KERN_F32, .rows = rows, .cols = cols, .data = dense};

    kern_backend be;
    CHECK(kern_cpu_backend_create(&be, 2) == 0, "backend");
    memset(y, 0x7f, sizeof(float) * (size_t)(n * rows));
    int rc = kern_matmul_bf16(&be, &wq, x, n, y);
    if (have_bf16) {
        kern_cpu__claq_matmul_bf16_isa(KERN_ISA_SCALAR, NULL, &p.view, x, n, yk);
        int64_t at = 0;
        CHECK(rc == 0 && same_bits(y, yk, n * rows, &at), "backend op rc=%d differs at %lld",
              rc, (long long)at);
    } else {
        CHECK(rc == KERN_E_UNSUPPORTED, "no BF16 on this CPU: rc %d", rc);
    }
    memset(y, 0x7f, sizeof(float) * (size_t)(n * rows));
    CHECK(kern_matmul_bf16(&be, &wd, x, n, y) == KERN_E_UNSUPPORTED, "dense matrix");
    CHECK(kern_bits_from_f32(y[0]) == 0x7f7f7f7fu, "dense matrix: y written");
    kern_backend_destroy(&be);

    setenv("CLAQ_ISA", "avx2", 1);
    CHECK(kern_cpu_backend_create(&be, 1) == 0, "backend avx2");
    memset(y, 0x7f, sizeof(float) * (size_t)(n * rows));
    CHECK(kern_matmul_bf16(&be, &wq, x, n, y) == KERN_E_UNSUPPORTED, "ISA capped to avx2");
    CHECK(kern_bits_from_f32(y[0]) == 0x7f7f7f7fu, "ISA capped to avx2: y written");
    kern_backend_destroy(&be);
    unsetenv("CLAQ_ISA");

    free(x); free(y); free(yk); free(dense);
    eng_claq_packed_free(&p);
    eng_qmatrix_free(&q);
}

int main(void)
{
    have_bf16 = kern_cpu_has_bf16(kern_cpu_detect_isa());
    if (!have_bf16) printf("this CPU has no AVX512_BF16: checking the reference only\n");
    kern_pool *pool2 = NULL;
    if (kern_pool_create(&pool2, 2) != 0) { fprintf(stderr, "pool\n"); return 1; }
    const int64_t rows[] = {1, 16, 33, 100};
    const int64_t cols[] = {1, 17, 33, 130};
    for (unsigned a = 0; a < sizeof rows / sizeof rows[0]; a++)
        for (unsigned b = 0; b < sizeof cols / sizeof cols[0]; b++)
            for (int mix = 0; mix < 4; mix++) run_shape(rows[a], cols[b], mix, pool2, 1.0f);
    run_shape(257, 300, 3, pool2, 1.0f);   /* several tiles, a short last tile, every group */
    run_shape(100, 130, 3, pool2, 4e-38f);   /* subnormal inputs, products and sums */
    run_shape(33, 300, 1, pool2, 1e-36f);
    kern_pool_destroy(pool2);
    backend_op();
    printf("largest |error| / sum|terms| against float64: %.3g (bound 2^-7 + 2^-16)\n", worst_rel);
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("ok: bfloat16 prefill GEMM %s the reference bit for bit, batch/thread invariant, "
           "within the bound\n", have_bf16 ? "equals" : "(reference only):");
    return 0;
}
