/* test_kern_claq_simd_matches_ref.c — the packed CLAQ matmul: every ISA path (AVX2 / AVX-512
 * LUT GEMV and dequantize-GEMM) equals the scalar reference BIT FOR BIT, on odd shapes
 * (rows 1..100, cols 1..130, mixed 2/3/4-bit columns, outliers), and so do each ISA's lookup
 * tables and dequantize-GEMM tile; batch invariance (token t's result is identical for n = 1, 3,
 * 4, 5, 9, 64, 300 and for 1 vs 2 pool threads); every ISA's GEMV over any range of tiles equals
 * the per-tile reference; and the GEMV agrees with a dense fp32 matmul of the unpacked matrix
 * within the fp32 summation bound
 *   |y - y_dense| <= 2 * (cols_pad + nnz) * FLT_EPSILON * sum_j |W[r][j] * x[j]|   (per row).
 * Bit-exactness is the contract (kern_cpu_claq.h), not a tolerance. Matrices are random (sorted
 * heavy-tailed fp16 codebooks, ~2 % outliers, fixed seed); any single differing bit fails. */
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

static void run_shape(int64_t rows, int64_t cols, int mix, kern_pool *pool2)
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
    float *y = malloc(sizeof(float) * (size_t)(nmax * rows));
    float *w = malloc(sizeof(float) * (size_t)(rows * cols));
    for (int64_t i = 0; i < nmax * cols; i++) x[i] = frnd() * 3.0f;
    eng_claq_unpack(k, w);

    /* Oracle: scalar, one token at a time (GEMV path), one thread. */
    for (int t = 0; t < nmax; t++)
        CHECK(kern_cpu__claq_matmul_isa(KERN_ISA_SCALAR, NULL, k, x + t * cols, 1,
                                        yref + t * rows) == 0, "ref");

    /* GEMV vs dense fp32 of the unpacked matrix, within the summation bound. */
    for (int t = 0; t < 3; t++)
        for (int64_t r = 0; r < rows; r++) {
            double d = 0, mag = 0;
            for (int64_t j = 0; j < cols; j++) {
                d += (double)w[r * cols + j] * x[t * cols + j];
                mag += fabs((double)w[r * cols + j] * x[t * cols + j]);
            }
            double tol = 2.0 * (double)(k->cols_pad + k->nnz) * FLT_EPSILON * mag + 1e-30;
            CHECK(fabs(yref[t * rows + r] - d) <= tol, "dense %lldx%lld r=%lld: %g vs %g (tol %g)",
                  (long long)rows, (long long)cols, (long long)r, yref[t * rows + r], d, tol);
        }

    const int ns[] = {1, 3, 4, 5, 9, 64, 300};   /* 3 | 4: the AVX2 GEMV | GEMM threshold */
    for (int isa = KERN_ISA_SCALAR; isa <= KERN_ISA_AVX512; isa++) {
        if (!have_isa((kern_isa)isa)) {
            printf("skip %s: not supported by this CPU\n", kern_isa_name((kern_isa)isa));
            continue;
        }
        for (unsigned ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
            for (int th = 0; th < 2; th++) {
                int n = ns[ni];
                memset(y, 0xff, sizeof(float) * (size_t)(n * rows));
                rc = kern_cpu__claq_matmul_isa((kern_isa)isa, th ? pool2 : NULL, k, x, n, y);
                int64_t at = 0;
                CHECK(rc == 0 && same_bits(y, yref, n * rows, &at),
                      "%s n=%d threads=%d %lldx%lld mix=%d: differs at token %lld row %lld: "
                      "%.9g vs ref %.9g", kern_isa_name((kern_isa)isa), n, th + 1,
                      (long long)rows, (long long)cols, mix, (long long)(at / rows),
                      (long long)(at % rows), y[at], yref[at]);
            }
    }
    /* Tile level: the reference dequantize-GEMM (and each ISA's) equal the reference GEMV's
     * dense pass bit for bit. */
    {
        const int nt = 6;   /* the SIMD GEMMs' four-token group and two single tokens */
        const int64_t cp = k->cols_pad, cb = KERN_CLAQ_COL_BLOCK;
        float *xs = malloc(sizeof(float) * (size_t)(nt * cp));
        float *xb = malloc(sizeof(float) * (size_t)(nt * cp));
        float *lut = malloc(sizeof(float) * (size_t)(nt * cp * 16));
        float *cbf = malloc(sizeof(float) * (size_t)(cp * 16));
        float *dummy = malloc(sizeof(float) * (size_t)cp);
        float *ones = malloc(sizeof(float) * (size_t)cols);
        float *ga = malloc(sizeof(float) * nt * KERN_CLAQ_ROW_TILE);
        float *gb = malloc(sizeof(float) * nt * KERN_CLAQ_ROW_TILE);
        float work[KERN_CPU_CLAQ_GEMM_WORK];
        for (int64_t c = 0; c < cols; c++) ones[c] = 1.0f;
        kern_cpu__claq_lut_ref(k, ones, dummy, cbf);
        for (int t = 0; t < nt; t++) {
            kern_cpu__claq_lut_ref(k, x + t * cols, xs + t * cp, lut + t * cp * 16);
            for (int64_t s = 0; s < cp; s++) xb[((s / cb) * nt + t) * cb + s % cb] = xs[t * cp + s];
        }
        for (int64_t tile = 0; tile < k->n_tiles; tile++) {
            int64_t rt = kern_claq_tile_rows(k, tile), at = 0;
            for (int t = 0; t < nt; t++)
                kern_cpu__claq_gemv_tile_ref(k, lut + t * cp * 16, tile, ga + t * KERN_CLAQ_ROW_TILE);
            kern_cpu__claq_gemm_tile_ref(k, cbf, xb, nt, nt, tile, gb, work);
            for (int t = 0; t < nt; t++)
                CHECK(same_bits(ga + t * KERN_CLAQ_ROW_TILE, gb + t * KERN_CLAQ_ROW_TILE, rt, &at),
                      "ref gemm tile %lld token %d row %lld", (long long)tile, t, (long long)at);
            for (int isa = KERN_ISA_AVX2; isa <= KERN_ISA_AVX512; isa++) {
                kern_claq_gemm_fn gemm = kern_cpu__claq_fns((kern_isa)isa).gemm;
                if (!have_isa((kern_isa)isa) || !gemm) continue;
                memset(gb, 0xff, sizeof(float) * nt * KERN_CLAQ_ROW_TILE);
                gemm(k, cbf, xb, nt, nt, tile, gb, work);
                for (int t = 0; t < nt; t++)
                    CHECK(same_bits(ga + t * KERN_CLAQ_ROW_TILE, gb + t * KERN_CLAQ_ROW_TILE, rt,
                                    &at), "%s gemm tile %lld token %d row %lld",
                          kern_isa_name((kern_isa)isa), (long long)tile, t, (long long)at);
            }
        }
        /* Each ISA's table builder equals the reference's, xs and every entry. */
        float *lut2 = malloc(sizeof(float) * (size_t)(cp * 16));
        float *xs2 = malloc(sizeof(float) * (size_t)cp);
        for (int isa = KERN_ISA_AVX2; isa <= KERN_ISA_AVX512; isa++) {
            if (!have_isa((kern_isa)isa)) continue;
            int64_t at = 0;
            memset(lut2, 0xff, sizeof(float) * (size_t)(cp * 16));
            memset(xs2, 0xff, sizeof(float) * (size_t)cp);
            kern_cpu__claq_fns((kern_isa)isa).lut(k, x + cols, xs2, lut2);
            CHECK(same_bits(xs2, xs + cp, cp, &at), "%s lut xs column %lld",
                  kern_isa_name((kern_isa)isa), (long long)at);
            CHECK(same_bits(lut2, lut + cp * 16, cp * 16, &at), "%s lut entry %lld",
                  kern_isa_name((kern_isa)isa), (long long)at);
        }
        free(lut2);
        free(xs2);
        /* Range level: each ISA's GEMV over tile ranges [t0, t1) (every start, every length up
         * to KERN_CPU_CLAQ_GEMV_TILES) for nt tokens equals the reference tile by tile. */
        float *gr = malloc(sizeof(float) * nt * KERN_CPU_CLAQ_GEMV_TILES * KERN_CLAQ_ROW_TILE);
        for (int isa = KERN_ISA_SCALAR; isa <= KERN_ISA_AVX512; isa++) {
            if (!have_isa((kern_isa)isa)) continue;
            kern_claq_gemv_fn gemv = kern_cpu__claq_fns((kern_isa)isa).gemv;
            for (int64_t t0 = 0; t0 < k->n_tiles; t0++)
                for (int64_t t1 = t0 + 1; t1 <= k->n_tiles && t1 - t0 <= KERN_CPU_CLAQ_GEMV_TILES;
                     t1++) {
                    int64_t ys = (t1 - t0) * KERN_CLAQ_ROW_TILE, at = 0;
                    gemv(k, lut, nt, t0, t1, gr);
                    for (int64_t tile = t0; tile < t1; tile++)
                        for (int t = 0; t < nt; t++) {
                            kern_cpu__claq_gemv_tile_ref(k, lut + t * cp * 16, tile, ga);
                            CHECK(same_bits(ga, gr + t * ys + (tile - t0) * KERN_CLAQ_ROW_TILE,
                                            kern_claq_tile_rows(k, tile), &at),
                                  "%s gemv tiles [%lld, %lld) tile %lld token %d row %lld",
                                  kern_isa_name((kern_isa)isa), (long long)t0, (long long)t1,
                                  (long long)tile, t, (long long)at);
                        }
                }
        }
        free(gr);
        free(xs); free(xb); free(lut); free(cbf); free(dummy); free(ones); free(ga); free(gb);
    }
    free(x); free(yref); free(y); free(w);
    eng_claq_packed_free(&p);
    eng_qmatrix_free(&q);
}

int main(void)
{
    kern_pool *pool2 = NULL;
    if (kern_pool_create(&pool2, 2) != 0) { fprintf(stderr, "pool\n"); return 1; }
    const int64_t rows[] = {1, 7, 16, 33, 100, 130};
    const int64_t cols[] = {1, 3, 17, 33, 130};
    for (unsigned a = 0; a < sizeof rows / sizeof rows[0]; a++)
        for (unsigned b = 0; b < sizeof cols / sizeof cols[0]; b++)
            for (int mix = 0; mix < 4; mix++) run_shape(rows[a], cols[b], mix, pool2);
    run_shape(257, 300, 3, pool2);   /* several tiles, a short last tile, every group */
    run_shape(100, 1500, 3, pool2);  /* several column chunks of every width per GEMV range */
    kern_pool_destroy(pool2);
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("ok: every ISA path bit-identical to the scalar reference; batch/thread invariant\n");
    return 0;
}
