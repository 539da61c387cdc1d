/* test_quant_core.c — the quantizer's numerical core against independent references: 1-D
 * K-Means (exact DP optimum on small columns, invariants), the GPTQ loop against a plain double
 * OBQ-style reference (explicit inverse, sequential rank-1 downdates), Adaptive Precision and
 * Outlier Reservation counts (the spec's figures, short 32/64-row columns), the 8-bit codebook
 * grid, the stored-bits allocation (--target-bpw), and whole-matrix RTN / GPTQ / CLAQ runs. With no arguments it runs its own checks; `--kmeans FILE N K [pp]`
 * prints the MSE of each N-float column of FILE for test_quant_kmeans_sklearn.py. Single thread. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quant_alloc.h"
#include "quant_gptq.h"
#include "quant_kmeans.h"
#include "quant_rd.h"
#include "quant.h"
#include "kern_half.h"

static int g_fail;
#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            g_fail++;                                                           \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)

/* ---- random numbers ---- */

typedef struct rng { uint64_t s; } rng;
static uint64_t rng_u64(rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double rng_unif(rng *r) { return ((double)(rng_u64(r) >> 11) + 0.5) * 0x1.0p-53; }
static double rng_gauss(rng *r)
{
    return sqrt(-2 * log(rng_unif(r))) * cos(6.283185307179586 * rng_unif(r));
}
/* Student-t with 3 degrees of freedom: LLaMA-like heavy tails. */
static double rng_heavy(rng *r)
{
    double g = rng_gauss(r), c = 0;
    for (int i = 0; i < 3; i++) { double z = rng_gauss(r); c += z * z; }
    return g / sqrt(c / 3);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* MSE of x under a sorted fp16 codebook with nearest assignment. */
static double cb_mse(const float *x, int64_t n, const uint16_t *cb, int k)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)x[i] - kern_f16_to_f32(cb[eng_kmeans_nearest(cb, k, x[i])]);
        s += d * d;
    }
    return s / (double)n;
}

/* Exact optimal 1-D k-means SSE by dynamic programming over the sorted data, O(k n^2). */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double kmeans_dp_sse(const float *x, int n, int k)
{
    double *s = malloc(sizeof(double) * (size_t)n), *P = calloc((size_t)n + 1, sizeof(double));
    double *Q = calloc((size_t)n + 1, sizeof(double));
    double *D = malloc(sizeof(double) * (size_t)(n + 1) * (size_t)(k + 1));
    for (int i = 0; i < n; i++) s[i] = x[i];
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    for (int i = 0; i < n; i++) { P[i + 1] = P[i] + s[i]; Q[i + 1] = Q[i] + s[i] * s[i]; }
#define COST(a, b) (Q[b] - Q[a] - (P[b] - P[a]) * (P[b] - P[a]) / (double)((b) - (a)))
#define DD(m, c) D[(size_t)(m) * (size_t)(k + 1) + (size_t)(c)]
    for (int m = 0; m <= n; m++)
        for (int c = 0; c <= k; c++) DD(m, c) = INFINITY;
    DD(0, 0) = 0;
    for (int c = 1; c <= k; c++)
        for (int m = 1; m <= n; m++)
            for (int a = c - 1; a < m; a++) {
                double v = DD(a, c - 1) + COST(a, m);
                if (v < DD(m, c)) DD(m, c) = v;
            }
    double best = DD(n, k);
#undef COST
#undef DD
    free(s); free(P); free(Q); free(D);
    return best < 0 ? 0 : best;
}

/* ---------------------------------------------------------------------------------------- */

static void test_kmeans_basic(void)
{
    double scratch[3 * 64];
    uint16_t cb[16];
    /* fewer distinct values than centroids: the values themselves, padded with the last */
    float few[6] = {3.0f, -1.0f, 3.0f, 0.5f, -1.0f, 0.5f};
    CHECK(eng_kmeans_1d(few, 6, 8, ENG_KMEANS_QUANTILE, 0, scratch, cb) == 0, "few");
    float want[8] = {-1.0f, 0.5f, 3.0f, 3.0f, 3.0f, 3.0f, 3.0f, 3.0f};
    for (int i = 0; i < 8; i++)
        CHECK(kern_f16_to_f32(cb[i]) == want[i], "few[%d] = %g want %g", i,
              kern_f16_to_f32(cb[i]), want[i]);
    float cst[5] = {0.25f, 0.25f, 0.25f, 0.25f, 0.25f};
    CHECK(eng_kmeans_1d(cst, 5, 4, ENG_KMEANS_QUANTILE, 0, scratch, cb) == 0, "constant");
    for (int i = 0; i < 4; i++) CHECK(kern_f16_to_f32(cb[i]) == 0.25f, "constant cb");
    /* invalid input is rejected, not crashed on */
    float bad[3] = {1.0f, NAN, 2.0f};
    CHECK(eng_kmeans_1d(bad, 3, 2, ENG_KMEANS_QUANTILE, 0, scratch, cb) == ENG_E_INVAL, "nan");
    CHECK(eng_kmeans_1d(few, 6, 17, ENG_KMEANS_QUANTILE, 0, scratch, cb) == ENG_E_INVAL, "k>16");
    CHECK(eng_kmeans_1d(few, 0, 4, ENG_KMEANS_QUANTILE, 0, scratch, cb) == ENG_E_INVAL, "n=0");
    /* nearest: exact midpoint goes to the lower centroid */
    uint16_t two[2] = {kern_f32_to_f16(0.0f), kern_f32_to_f16(1.0f)};
    CHECK(eng_kmeans_nearest(two, 2, 0.5f) == 0, "tie -> lower");
    CHECK(eng_kmeans_nearest(two, 2, 0.5000001f) == 1, "above midpoint");
    CHECK(eng_kmeans_nearest(two, 2, -5.0f) == 0 && eng_kmeans_nearest(two, 2, 5.0f) == 1, "ends");
    /* two well separated groups are found exactly */
    float grp[40];
    for (int i = 0; i < 40; i++) grp[i] = i < 20 ? -2.0f + 0.001f * (float)(i % 3) : 5.0f;
    CHECK(eng_kmeans_1d(grp, 40, 2, ENG_KMEANS_QUANTILE, 0, scratch, cb) == 0, "groups");
    CHECK(fabsf(kern_f16_to_f32(cb[0]) + 1.999f) < 2e-3f && kern_f16_to_f32(cb[1]) == 5.0f,
          "groups: %g %g", kern_f16_to_f32(cb[0]), kern_f16_to_f32(cb[1]));
}

/* Lloyd from our initialisations must land close to the exact optimum, codebooks ascending,
 * and both initialisations deterministic. */
static void test_kmeans_vs_dp(void)
{
    rng r = {11};
    enum { N = 160 };
    float x[N];
    double *scratch = malloc(sizeof(double) * 3 * N);
    double worst = 0, sum_ratio = 0;
    int cnt = 0;
    for (int t = 0; t < 60; t++) {
        int k = t % 3 == 0 ? 4 : (t % 3 == 1 ? 8 : 16);
        for (int i = 0; i < N; i++) x[i] = (float)(t & 1 ? rng_heavy(&r) : rng_gauss(&r));
        uint16_t cb[16], cb2[16];
        CHECK(eng_kmeans_1d(x, N, k, ENG_KMEANS_QUANTILE, 0, scratch, cb) == 0, "km");
        CHECK(eng_kmeans_1d(x, N, k, ENG_KMEANS_QUANTILE, 0, scratch, cb2) == 0, "km again");
        CHECK(memcmp(cb, cb2, sizeof(uint16_t) * (size_t)k) == 0, "quantile init deterministic");
        for (int i = 1; i < k; i++)
            CHECK(kern_f16_to_f32(cb[i]) >= kern_f16_to_f32(cb[i - 1]), "ascending");
        double opt = kmeans_dp_sse(x, N, k) / N, got = cb_mse(x, N, cb, k);
        double ratio = got / (opt > 0 ? opt : 1e-30);
        if (ratio > worst) worst = ratio;
        sum_ratio += ratio;
        cnt++;
        uint16_t p1[16], p2[16];
        CHECK(eng_kmeans_1d(x, N, k, ENG_KMEANS_PLUSPLUS, 42, scratch, p1) == 0, "pp");
        CHECK(eng_kmeans_1d(x, N, k, ENG_KMEANS_PLUSPLUS, 42, scratch, p2) == 0, "pp again");
        CHECK(memcmp(p1, p2, sizeof(uint16_t) * (size_t)k) == 0, "k-means++ seeded deterministic");
        double pp = cb_mse(x, N, p1, k);
        CHECK(pp <= opt * 1.5, "k-means++ mse %g vs optimum %g", pp, opt);
    }
    printf("kmeans vs exact DP optimum (n=%d, k=4/8/16, 60 columns): mean ratio %.5f worst %.5f\n",
           N, sum_ratio / cnt, worst);
    CHECK(sum_ratio / cnt < 1.01, "mean MSE ratio to the optimum %g", sum_ratio / cnt);
    CHECK(worst < 1.10, "worst MSE ratio to the optimum %g", worst);
    free(scratch);
}

static void test_kmeans_speed(void)
{
    rng r = {5};
    enum { N = 4096, COLS = 200 };
    float *x = malloc(sizeof(float) * N * COLS);
    double *scratch = malloc(sizeof(double) * 3 * N);
    for (int i = 0; i < N * COLS; i++) x[i] = (float)(0.02 * rng_heavy(&r));
    int lens[3] = {256, 768, N};
    for (int li = 0; li < 3; li++)
        for (int k = 4; k <= 16; k *= 2) {
            uint16_t cb[16];
            double t0 = now_s();
            for (int c = 0; c < COLS; c++)
                CHECK(eng_kmeans_1d(x + (size_t)c * N, lens[li], k, ENG_KMEANS_QUANTILE, 0, scratch,
                                    cb) == 0, "speed km");
            printf("kmeans n=%d k=%d: %.1f us per column\n", lens[li], k,
                   (now_s() - t0) / COLS * 1e6);
        }
    free(x);
    free(scratch);
}

/* ---- GPTQ against a double reference ---------------------------------------------------- */

/* H = X X^T / m over random X [cols][m], with the listed dead inputs zeroed. */
static double *make_hessian(rng *r, int cols, int m, const int *dead, int n_dead)
{
    double *X = malloc(sizeof(double) * (size_t)cols * (size_t)m);
    double *H = calloc((size_t)cols * (size_t)cols, sizeof(double));
    for (int i = 0; i < cols; i++) {
        double scale = 0.2 + 2.0 * rng_unif(r);   /* uneven diagonal: act-order matters */
        for (int t = 0; t < m; t++) X[(size_t)i * m + t] = scale * rng_gauss(r);
    }
    for (int d = 0; d < n_dead; d++)
        for (int t = 0; t < m; t++) X[(size_t)dead[d] * m + t] = 0;
    for (int i = 0; i < cols; i++)
        for (int j = 0; j <= i; j++) {
            double s = 0;
            for (int t = 0; t < m; t++) s += X[(size_t)i * m + t] * X[(size_t)j * m + t];
            H[(size_t)i * cols + j] = H[(size_t)j * cols + i] = 2.0 * s / m;
        }
    free(X);
    return H;
}

/* In-place Gauss-Jordan inverse with partial pivoting (double). */
static int invert(double *A, int n)
{
    double *I = calloc((size_t)n * (size_t)n, sizeof(double));
    for (int i = 0; i < n; i++) I[(size_t)i * n + i] = 1;
    for (int c = 0; c < n; c++) {
        int p = c;
        for (int i = c + 1; i < n; i++)
            if (fabs(A[(size_t)i * n + c]) > fabs(A[(size_t)p * n + c])) p = i;
        if (A[(size_t)p * n + c] == 0) { free(I); return -1; }
        for (int j = 0; j < n; j++) {
            double t = A[(size_t)c * n + j]; A[(size_t)c * n + j] = A[(size_t)p * n + j]; A[(size_t)p * n + j] = t;
            t = I[(size_t)c * n + j]; I[(size_t)c * n + j] = I[(size_t)p * n + j]; I[(size_t)p * n + j] = t;
        }
        double piv = A[(size_t)c * n + c];
        for (int j = 0; j < n; j++) { A[(size_t)c * n + j] /= piv; I[(size_t)c * n + j] /= piv; }
        for (int i = 0; i < n; i++) {
            if (i == c) continue;
            double f = A[(size_t)i * n + c];
            if (f == 0) continue;
            for (int j = 0; j < n; j++) {
                A[(size_t)i * n + j] -= f * A[(size_t)c * n + j];
                I[(size_t)i * n + j] -= f * I[(size_t)c * n + j];
            }
        }
    }
    memcpy(A, I, sizeof(double) * (size_t)n * (size_t)n);
    free(I);
    return 0;
}

typedef enum { QZ_LINEAR, QZ_GRID } qz_kind;

/* Reference quantizer: LINEAR q = 0.5 w (smooth: outputs must agree to rounding); GRID: nearest
 * value of a fixed 16-level grid per column (original column index). */
typedef struct qz { qz_kind kind; const float *grid; int cols; } qz;

static double qz_apply(const qz *z, int col, double w)
{
    if (z->kind == QZ_LINEAR) return 0.5 * w;
    const float *g = z->grid + (size_t)col * 16;
    int best = 0;
    for (int i = 1; i < 16; i++)
        if (fabs(w - g[i]) < fabs(w - g[best])) best = i;
    return g[best];
}

static int qz_callback(void *ud, int64_t pos, int64_t col, const float *w, int64_t rows, float *q)
{
    (void)pos;
    const qz *z = ud;
    for (int64_t r = 0; r < rows; r++) q[r] = (float)qz_apply(z, (int)col, w[r]);
    return 0;
}

/* The OBQ formulation GPTQ is derived from: for each column in order, quantize, spread the
 * scaled error over the remaining columns through Hinv, then remove the column from Hinv by a
 * rank-1 downdate. All in double, with an explicit inverse: independent of the Cholesky path. */
static double gptq_reference(const double *H, const float *W, int rows, int cols, const qz *z,
                             double percdamp, double *Qout /* [rows][cols] original order */)
{
    int *perm = malloc(sizeof(int) * (size_t)cols);
    double *diag = malloc(sizeof(double) * (size_t)cols);
    for (int j = 0; j < cols; j++) {
        diag[j] = H[(size_t)j * cols + j] == 0 ? 1.0 : H[(size_t)j * cols + j];
        perm[j] = j;
    }
    for (int i = 1; i < cols; i++) {   /* stable insertion sort, diag descending */
        int v = perm[i], j = i;
        while (j > 0 && diag[perm[j - 1]] < diag[v]) { perm[j] = perm[j - 1]; j--; }
        perm[j] = v;
    }
    double *Hi = malloc(sizeof(double) * (size_t)cols * (size_t)cols);
    double mean = 0;
    for (int a = 0; a < cols; a++) {
        for (int b = 0; b < cols; b++) Hi[(size_t)a * cols + b] = H[(size_t)perm[a] * cols + perm[b]];
        if (H[(size_t)perm[a] * cols + perm[a]] == 0) Hi[(size_t)a * cols + a] = 1;
        mean += Hi[(size_t)a * cols + a];
    }
    mean /= cols;
    for (int a = 0; a < cols; a++) Hi[(size_t)a * cols + a] += percdamp * mean;
    invert(Hi, cols);
    double *Wp = malloc(sizeof(double) * (size_t)rows * (size_t)cols);
    for (int r = 0; r < rows; r++)
        for (int a = 0; a < cols; a++)
            Wp[(size_t)r * cols + a] = diag[perm[a]] == 1.0 && H[(size_t)perm[a] * cols + perm[a]] == 0
                                           ? 0.0 : W[(size_t)r * cols + perm[a]];
    double loss = 0;
    for (int a = 0; a < cols; a++) {
        double hjj = Hi[(size_t)a * cols + a];
        for (int r = 0; r < rows; r++) {
            double w = Wp[(size_t)r * cols + a], q = qz_apply(z, perm[a], w);
            Qout[(size_t)r * cols + perm[a]] = q;
            loss += (w - q) * (w - q) / hjj / 2;
            double e = (w - q) / hjj;
            for (int b = a + 1; b < cols; b++) Wp[(size_t)r * cols + b] -= e * Hi[(size_t)a * cols + b];
        }
        for (int b = a + 1; b < cols; b++)
            for (int c = a + 1; c < cols; c++)
                Hi[(size_t)b * cols + c] -= Hi[(size_t)b * cols + a] * Hi[(size_t)a * cols + c] / hjj;
    }
    free(perm); free(diag); free(Hi); free(Wp);
    return loss;
}

static void test_gptq_vs_reference(void)
{
    rng r = {2024};
    enum { ROWS = 24, COLS = 300 };   /* 300 = two full 128-blocks and a partial one */
    int dead[3] = {7, 150, 299};
    double *H = make_hessian(&r, COLS, 2 * COLS, dead, 3);
    float *W = malloc(sizeof(float) * ROWS * COLS), *Q = malloc(sizeof(float) * ROWS * COLS);
    float *grid = malloc(sizeof(float) * 16 * COLS);
    double *Qr = malloc(sizeof(double) * ROWS * COLS);
    for (int i = 0; i < ROWS * COLS; i++) W[i] = (float)(0.05 * rng_heavy(&r));
    eng_gptq_cfg cfg;
    eng_gptq_cfg_default(&cfg);
    eng_gptq_prep prep;
    eng_err err = {0};
    CHECK(eng_gptq_prepare(&prep, H, COLS, &cfg, &err) == 0, "prepare: %s", err.msg);
    CHECK(prep.retries == 0, "no retry needed");
    int n_dead = 0;
    for (int j = 0; j < COLS; j++) n_dead += prep.dead[j];
    CHECK(n_dead == 3 && prep.dead[7] && prep.dead[150] && prep.dead[299], "dead columns found");
    /* act-order: diag(H) non-increasing along the processing order (dead count as 1) */
    for (int a = 1; a < COLS; a++) {
        double d0 = prep.dead[prep.perm[a - 1]] ? 1 : H[prep.perm[a - 1] * COLS + prep.perm[a - 1]];
        double d1 = prep.dead[prep.perm[a]] ? 1 : H[prep.perm[a] * COLS + prep.perm[a]];
        CHECK(d0 >= d1, "act-order at %d", a);
    }

    qz lin = {QZ_LINEAR, NULL, COLS};
    double loss = 0;
    CHECK(eng_gptq_run(&prep, W, ROWS, 128, qz_callback, &lin, Q, &loss, &err) == 0, "run");
    double ref_loss = gptq_reference(H, W, ROWS, COLS, &lin, 0.01, Qr);
    double maxdiff = 0, maxref = 0;
    for (int i = 0; i < ROWS * COLS; i++) {
        double d = fabs(Q[i] - Qr[i]);
        if (d > maxdiff) maxdiff = d;
        if (fabs(Qr[i]) > maxref) maxref = fabs(Qr[i]);
    }
    printf("gptq linear quantizer vs double reference: max |Q - Qref| %.3g (max |Qref| %.3g), "
           "loss %.6g vs %.6g\n", maxdiff, maxref, loss, ref_loss);
    CHECK(maxdiff <= 1e-4 * maxref, "linear: Q differs from the reference by %g", maxdiff);
    CHECK(fabs(loss - ref_loss) <= 1e-4 * ref_loss, "linear: loss %g vs %g", loss, ref_loss);
    /* the blocked loop must not depend on the block size */
    float *Q2 = malloc(sizeof(float) * ROWS * COLS);
    CHECK(eng_gptq_run(&prep, W, ROWS, 37, qz_callback, &lin, Q2, NULL, &err) == 0, "run bs 37");
    double bd = 0;
    for (int i = 0; i < ROWS * COLS; i++) bd = fmax(bd, fabs(Q[i] - Q2[i]));
    CHECK(bd <= 1e-4 * maxref, "block size 37 vs 128 differ by %g", bd);

    /* a discrete quantizer: the uniform grid fixed on the original columns */
    for (int j = 0; j < COLS; j++) {
        float col[ROWS];
        uint16_t cb[16];
        for (int rr = 0; rr < ROWS; rr++) col[rr] = prep.dead[j] ? 0.0f : W[rr * COLS + j];
        eng_gptq_uniform_grid(col, ROWS, 4, cb);
        for (int i = 0; i < 16; i++) grid[j * 16 + i] = kern_f16_to_f32(cb[i]);
    }
    qz grd = {QZ_GRID, grid, COLS};
    CHECK(eng_gptq_run(&prep, W, ROWS, 128, qz_callback, &grd, Q, &loss, &err) == 0, "grid run");
    ref_loss = gptq_reference(H, W, ROWS, COLS, &grd, 0.01, Qr);
    int same = 0;
    for (int i = 0; i < ROWS * COLS; i++) same += Q[i] == (float)Qr[i];
    printf("gptq 4-bit grid vs double reference: %d / %d values identical, loss %.6g vs %.6g\n",
           same, ROWS * COLS, loss, ref_loss);
    CHECK(same >= ROWS * COLS * 99 / 100, "grid: only %d of %d values agree", same, ROWS * COLS);
    CHECK(fabs(loss - ref_loss) <= 1e-2 * ref_loss, "grid: loss %g vs %g", loss, ref_loss);
    eng_gptq_prep_free(&prep);
    eng_gptq_prep_free(&prep);   /* idempotent */

    /* the one-Cholesky inverse factor (--fast-inverse) is the same U up to rounding */
    {
        eng_gptq_cfg fcfg = cfg;
        eng_gptq_prep fp;
        fcfg.fast_inverse = 1;
        CHECK(eng_gptq_prepare(&prep, H, COLS, &cfg, &err) == 0, "prepare again");
        CHECK(eng_gptq_prepare(&fp, H, COLS, &fcfg, &err) == 0, "prepare fast: %s", err.msg);
        double md = 0, mu = 0;
        for (int i = 0; i < COLS * COLS; i++) {
            md = fmax(md, fabs(prep.U[i] - fp.U[i]));
            mu = fmax(mu, fabs(prep.U[i]));
        }
        int lower_zero = 1;
        for (int a = 0; a < COLS; a++)
            for (int b = 0; b < a; b++) lower_zero &= fp.U[a * COLS + b] == 0;
        printf("fast inverse factor vs GPTQ's: max |dU| %.3g (max |U| %.3g)\n", md, mu);
        CHECK(md <= 1e-9 * mu && lower_zero, "fast inverse differs by %g", md);
        eng_gptq_prep_free(&fp);
        /* factored in float (--f32-inverse), both ways: the same U to float precision */
        for (int fast = 0; fast <= 1; fast++) {
            fcfg.fast_inverse = fast;
            fcfg.f32_inverse = 1;
            CHECK(eng_gptq_prepare(&fp, H, COLS, &fcfg, &err) == 0, "prepare f32: %s", err.msg);
            md = 0;
            lower_zero = 1;
            int exact = 0;
            for (int i = 0; i < COLS * COLS; i++) {
                md = fmax(md, fabs(prep.U[i] - fp.U[i]));
                exact += prep.U[i] == fp.U[i] && prep.U[i] != 0;
            }
            for (int a = 0; a < COLS; a++)
                for (int b = 0; b < a; b++) lower_zero &= fp.U[a * COLS + b] == 0;
            printf("f32 inverse factor (fast %d) vs GPTQ's in double: max |dU| %.3g, %d nonzero "
                   "entries equal\n", fast, md, exact);
            /* float rounding, not double's: close, but not bit-equal everywhere */
            CHECK(md <= 1e-3 * mu && md > 1e-9 * mu && lower_zero, "f32 inverse differs by %g",
                  md);
            eng_gptq_prep_free(&fp);
        }
        eng_gptq_prep_free(&prep);
    }

    /* without act-order the identity permutation is used */
    cfg.act_order = 0;
    CHECK(eng_gptq_prepare(&prep, H, COLS, &cfg, &err) == 0, "prepare no act-order");
    for (int a = 0; a < COLS; a++) CHECK(prep.perm[a] == a, "identity perm");
    eng_gptq_prep_free(&prep);
    free(H); free(W); free(Q); free(Q2); free(grid); free(Qr);
}

/* An indefinite H (rank-deficient Gram matrix minus 1.5x the dampening) needs a retry; a
 * hopeless one (negative definite) fails with ENG_E_RANGE instead of crashing. */
static void test_gptq_retry(void)
{
    rng r = {7};
    enum { C = 40 };
    double *H = make_hessian(&r, C, 10, NULL, 0);   /* rank 10 < 40 */
    double mean = 0;
    for (int j = 0; j < C; j++) mean += H[j * C + j];
    mean /= C;
    for (int j = 0; j < C; j++) H[j * C + j] -= 0.015 * mean;
    eng_gptq_cfg cfg;
    eng_gptq_cfg_default(&cfg);
    eng_gptq_prep prep;
    eng_err err = {0};
    int rc = eng_gptq_prepare(&prep, H, C, &cfg, &err);
    CHECK(rc == 0 && prep.retries >= 1, "retry: rc %d retries %d (%s)", rc, prep.retries, err.msg);
    eng_gptq_prep_free(&prep);
    for (int i = 0; i < C * C; i++) H[i] = 0;
    for (int j = 0; j < C; j++) H[j * C + j] = -1.0;
    err.code = 0;
    CHECK(eng_gptq_prepare(&prep, H, C, &cfg, &err) == ENG_E_RANGE, "negative diag rejected");
    CHECK(prep.U == NULL, "nothing left allocated");
    H[0] = NAN;
    CHECK(eng_gptq_prepare(&prep, H, C, &cfg, &err) == ENG_E_RANGE, "NaN rejected");
    free(H);
}

/* ---- Adaptive Precision and Outlier Reservation ----------------------------------------- */

static int64_t count_bits(const uint8_t *b, int64_t n, int v)
{
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++) c += b[i] == v;
    return c;
}

static void test_ap_counts(void)
{
    struct { int64_t C; double B; int64_t n4; int base; } cases[] = {
        {4096, 2.1, 205, 2}, {11008, 2.05, 275, 2}, {4096, 3.05, 205, 3}, {11008, 2.1, 550, 2},
        {4096, 2.05, 102, 2}, {4096, 2.5, 1024, 2}, {4096, 3.0, 0, 3}, {4096, 2.0, 0, 2},
        {4096, 4.0, 4096, 4}, {256, 2.1, 13, 2}, {768, 3.1, 77, 3},
    };
    rng r = {3};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        int64_t C = cases[t].C;
        int32_t *cnt = malloc(sizeof(int32_t) * (size_t)C);
        uint8_t *bits = malloc((size_t)C);
        for (int64_t j = 0; j < C; j++) cnt[j] = rng_unif(&r) < 0.1 ? (int32_t)(rng_u64(&r) % 5) : 0;
        CHECK(eng_claq_ap_n4(C, cases[t].B) == cases[t].n4, "n4(C=%lld, B=%g) = %lld want %lld",
              (long long)C, cases[t].B, (long long)eng_claq_ap_n4(C, cases[t].B),
              (long long)cases[t].n4);
        CHECK(eng_claq_ap_bits(cnt, C, cases[t].B, bits) == 0, "ap_bits");
        CHECK(count_bits(bits, C, 4) == cases[t].n4, "C=%lld B=%g: %lld columns at 4 bits",
              (long long)C, cases[t].B, (long long)count_bits(bits, C, 4));
        if (cases[t].base != 4)
            CHECK(count_bits(bits, C, cases[t].base) == C - cases[t].n4, "rest at base bits");
        /* every 4-bit column outranks every other: count >= and, on ties, earlier position */
        int64_t last4 = -1;
        int32_t min4 = INT32_MAX;
        for (int64_t j = 0; j < C; j++)
            if (bits[j] == 4 && cnt[j] <= min4) { min4 = cnt[j]; }
        for (int64_t j = 0; j < C; j++) if (bits[j] == 4 && cnt[j] == min4) last4 = j;
        for (int64_t j = 0; j < C && cases[t].base != 4 && cases[t].n4 > 0; j++) {
            if (bits[j] == 4) continue;
            CHECK(cnt[j] < min4 || (cnt[j] == min4 && j > last4), "ranking not stable at %lld",
                  (long long)j);
        }
        free(cnt);
        free(bits);
    }
    uint8_t b1[4];
    int32_t c1[4] = {0};
    CHECK(eng_claq_ap_bits(c1, 4, 1.5, b1) == ENG_E_INVAL, "B < 2 rejected");
    CHECK(eng_claq_ap_bits(c1, 4, 4.5, b1) == ENG_E_INVAL, "B > 4 rejected");
    CHECK(eng_claq_round_half_even(2.5) == 2 && eng_claq_round_half_even(3.5) == 4 &&
          eng_claq_round_half_even(204.8) == 205 && eng_claq_round_half_even(-0.5) == 0,
          "round half even");

    /* the metric: entries on or beyond 13 x mean|W|, dead columns excluded */
    enum { R = 100, C = 5 };
    float W[R * C];
    for (int i = 0; i < R * C; i++) W[i] = (i % 2) ? 0.01f : -0.01f;
    W[3 * C + 1] = 1.0f;    /* column 1: two outliers */
    W[9 * C + 1] = -1.0f;
    W[5 * C + 4] = 1.0f;    /* column 4: one, but dead */
    uint8_t dead[C] = {0, 0, 0, 0, 1};
    int32_t cnt[C];
    double mean = eng_claq_outlier_counts(W, R, C, dead, ENG_CLAQ_T, cnt);
    CHECK(fabs(mean - (0.01 * (R * C - R - 2) + 2.0) / (R * C)) < 1e-9, "mean|W| %g", mean);
    CHECK(cnt[0] == 0 && cnt[1] == 2 && cnt[2] == 0 && cnt[3] == 0 && cnt[4] == 0,
          "counts %d %d %d %d %d", cnt[0], cnt[1], cnt[2], cnt[3], cnt[4]);
}

static void test_or_counts(void)
{
    struct { int64_t n; double f; int64_t kept; } cases[] = {
        {4096, 0.004, 33}, {4096, 0.014, 115}, {11008, 0.004, 89}, {11008, 0.014, 309},
        /* short columns: the upper quantile index rounds to n and is clamped to n-1 */
        {32, 0.004, 2}, {32, 0.014, 2}, {64, 0.004, 2}, {64, 0.014, 3}, {128, 0.014, 5},
        {4096, 0.0, 0},
    };
    rng r = {99};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        int64_t n = cases[t].n;
        float *w = malloc(sizeof(float) * (size_t)n), *s = malloc(sizeof(float) * (size_t)n);
        uint8_t *keep = malloc((size_t)n);
        for (int64_t i = 0; i < n; i++) w[i] = (float)rng_gauss(&r);   /* no ties */
        int64_t k = eng_claq_or_select(w, n, cases[t].f, s, keep);
        int64_t k2 = 0;
        for (int64_t i = 0; i < n; i++) k2 += keep[i];
        CHECK(k == cases[t].kept && k2 == k, "OR n=%lld f=%g kept %lld want %lld",
              (long long)n, cases[t].f, (long long)k, (long long)cases[t].kept);
        /* what is kept are the extremes: every kept value beats every dropped one in |tail| */
        float max_drop = -INFINITY, min_drop = INFINITY;
        for (int64_t i = 0; i < n; i++)
            if (!keep[i]) { max_drop = fmaxf(max_drop, w[i]); min_drop = fminf(min_drop, w[i]); }
        for (int64_t i = 0; i < n; i++)
            if (keep[i]) CHECK(w[i] > max_drop || w[i] < min_drop, "kept value inside the bulk");
        free(w); free(s); free(keep);
    }
    /* budgets: the top round(0.1 C) columns by the metric get f_hi */
    enum { C = 300 };
    int32_t cnt[C];
    float frac[C];
    for (int j = 0; j < C; j++) cnt[j] = (j % 7 == 0) ? 3 : 0;   /* 43 columns with count 3 */
    CHECK(eng_claq_or_fracs(cnt, C, 0.014, 0.004, frac) == 0, "fracs");
    int hi = 0;
    for (int j = 0; j < C; j++) hi += frac[j] == 0.014f;
    CHECK(hi == 30, "top 10%% of 300 = 30 columns, got %d", hi);
    for (int j = 0; j < C; j++)
        if (frac[j] == 0.014f) CHECK(cnt[j] == 3 && j <= 29 * 7, "f_hi on the top ranked only");
}

/* ---- whole matrices ----------------------------------------------------------------------- */

static void make_layer(rng *r, int rows, int cols, float *W, double **H)
{
    for (int i = 0; i < rows * cols; i++) W[i] = (float)(0.02 * rng_heavy(r));
    for (int j = 0; j < cols; j += 17)                 /* a few outlier-heavy input columns */
        for (int i = 0; i < rows; i += 5) W[i * cols + j] *= 8;
    int dead[1] = {cols - 3};
    *H = make_hessian(r, cols, 2 * cols, dead, 1);
}

static void check_qmatrix(const eng_qmatrix *q, const char *what)
{
    for (int64_t j = 0; j < q->cols; j++) {
        int k = 1 << q->bits[j];
        CHECK(q->bits[j] >= 2 && q->bits[j] <= 4, "%s: bits", what);
        for (int i = 1; i < ENG_QM_CB; i++) {
            float a = kern_f16_to_f32(q->codebook[j * ENG_QM_CB + i - 1]);
            float b = kern_f16_to_f32(q->codebook[j * ENG_QM_CB + i]);
            CHECK(a <= b, "%s: codebook of column %lld not ascending", what, (long long)j);
            if (i >= k) CHECK(a == b, "%s: padding repeats the last entry", what);
        }
        for (int64_t r = 0; r < q->rows; r++)
            if (q->codes[r * q->cols + j] >= k) {
                CHECK(0, "%s: code out of range at (%lld,%lld)", what, (long long)r, (long long)j);
                return;
            }
    }
    for (int64_t i = 1; i < q->n_outliers; i++)
        CHECK(q->out_col[i - 1] < q->out_col[i] ||
              (q->out_col[i - 1] == q->out_col[i] && q->out_row[i - 1] < q->out_row[i]),
              "%s: outliers not in (col,row) order at %lld", what, (long long)i);
}


/* The 8-bit codebook grid: every entry decodes from (lo, step, idx) by the one formula, indices
 * ascend, the top index reaches the last centroid, and each entry moves by at most half a step. */
static void test_cb_grid(void)
{
    rng r = {5};
    for (int t = 0; t < 2000; t++) {
        const int k = 1 << (2 + t % 3);
        float c[16];
        double scale = pow(10.0, -4.0 + 4.0 * rng_unif(&r));
        for (int i = 0; i < k; i++) c[i] = (float)((rng_unif(&r) - 0.5) * scale);
        for (int i = 1; i < k; i++)   /* insertion sort: ascending centroids */
            for (int j = i; j > 0 && c[j] < c[j - 1]; j--) {
                float x = c[j]; c[j] = c[j - 1]; c[j - 1] = x;
            }
        if (t % 97 == 0) for (int i = 0; i < k; i++) c[i] = c[0];   /* degenerate column */
        uint16_t cb[16], orig[16], ls[2];
        uint8_t idx[16];
        for (int i = 0; i < k; i++) cb[i] = orig[i] = kern_f32_to_f16(c[i]);
        CHECK(eng_cb_grid_fit(cb, k, ls, idx) == 0, "grid fit %d", t);
        const float step = kern_f16_to_f32(ls[1]);
        CHECK(ls[0] == orig[0] && step >= 0, "lo is the first entry, step non-negative");
        CHECK(kern_f16_to_f32(eng_cb_grid_value(ls[0], ls[1], 255)) >= kern_f16_to_f32(orig[k - 1]),
              "255 steps reach the last entry (%d)", t);
        for (int i = 0; i < k; i++) {
            CHECK(cb[i] == eng_cb_grid_value(ls[0], ls[1], idx[i]), "entry %d decodes", i);
            CHECK(i == 0 || idx[i] >= idx[i - 1], "indices ascend");
            const float e = fabsf(kern_f16_to_f32(cb[i]) - kern_f16_to_f32(orig[i]));
            /* half a step, plus one fp16 rounding of the decoded value */
            CHECK(e <= 0.5f * step + fabsf(kern_f16_to_f32(cb[i])) * 0x1p-10f + 1e-7f,
                  "entry %d moved by %g with step %g", i, e, step);
        }
    }
    uint16_t bad[4] = {kern_f32_to_f16(1.0f), kern_f32_to_f16(0.5f), 0, 0};
    uint16_t ls[2];
    uint8_t idx[4];
    CHECK(eng_cb_grid_fit(bad, 2, ls, idx) == ENG_E_RANGE, "descending entries refused");
}

/* --target-bpw's allocation: the planned bytes are the packed file's (format v2), they stay
 * within the budget, 4/3-bit groups are whole blocks, more budget gives less estimated error
 * and more bits, and the heavily weighted columns get the bits. */
static void test_rd_alloc(void)
{
    rng r = {11};
    enum { ROWS = 256, COLS = 256 };
    float *W = malloc(sizeof(float) * ROWS * COLS);
    double wgt[COLS];
    for (int64_t i = 0; i < ROWS * COLS; i++) W[i] = (float)(rng_unif(&r) - 0.5);
    for (int j = 0; j < COLS; j++) wgt[j] = j < 64 ? 100.0 : 1.0;   /* 64 sensitive columns */
    uint8_t bits[COLS];
    eng_err err = {0};
    double prev_bpw = 0, prev_sum = 0;
    const double targets[] = {2.2, 2.6, 3.0, 3.4, 3.9, 5.0};
    for (int t = 0; t < 6; t++) {
        eng_rd_plan plan = {.target_bpw = targets[t], .cb_bits = 8};
        double bpw = 0;
        CHECK(eng_rd_bits(W, ROWS, COLS, wgt, &plan, NULL, bits, &bpw, &err) == 0, "rd: %s",
              err.msg);
        int64_t n[5] = {0};
        double sum_hot = 0, sum_cold = 0;
        for (int j = 0; j < COLS; j++) {
            n[bits[j]]++;
            *(j < 64 ? &sum_hot : &sum_cold) += bits[j];
        }
        const int64_t bytes = eng_rd_matrix_bytes(ROWS, COLS, n, 8);
        CHECK(fabs(bpw - 8.0 * (double)bytes / (ROWS * COLS)) < 1e-12, "planned bpw is the bytes");
        CHECK(bpw <= targets[t] || (n[3] == 0 && n[4] == 0), "target %g: planned %g",
              targets[t], bpw);
        CHECK(n[4] % 32 == 0 && n[3] % 32 == 0, "whole blocks (%lld, %lld)", (long long)n[4],
              (long long)n[3]);
        CHECK(bpw >= prev_bpw && sum_hot + sum_cold >= prev_sum, "more budget, more bits");
        CHECK(sum_hot / 64 >= sum_cold / 192, "target %g: sensitive columns %g bits, others %g",
              targets[t], sum_hot / 64, sum_cold / 192);
        if (targets[t] >= 3.0 && targets[t] < 4.6)   /* 4.625 is all 4-bit */
            CHECK(bpw > targets[t] - 0.16, "target %g: budget used (planned %g)", targets[t], bpw);
        prev_bpw = bpw;
        prev_sum = sum_hot + sum_cold;
    }
    eng_rd_plan plan = {.target_bpw = 1.5, .cb_bits = 8};
    double bpw;
    CHECK(eng_rd_bits(W, ROWS, COLS, wgt, &plan, NULL, bits, &bpw, &err) == ENG_E_INVAL,
          "target 1.5 refused");
    free(W);
}

static void test_quant_matrix(void)
{
    rng r = {77};
    enum { ROWS = 64, COLS = 320 };
    float *W = malloc(sizeof(float) * ROWS * COLS), *F = malloc(sizeof(float) * ROWS * COLS);
    float *F2 = malloc(sizeof(float) * ROWS * COLS), *F3 = malloc(sizeof(float) * ROWS * COLS);
    double *H;
    make_layer(&r, ROWS, COLS, W, &H);
    eng_err err = {0};
    eng_quant_cfg cfg;
    eng_qmatrix q = {0};
    eng_quant_mstats st;
    double rel[3][3];
    for (int b = 2; b <= 4; b++)
        for (int m = 0; m < 3; m++) {
            eng_quant_cfg_default(&cfg);
            cfg.method = (eng_quant_method)m;
            cfg.bits = b;
            int rc = eng_quant_matrix(W, ROWS, COLS, H, &cfg, &q, F, &st, &err);
            CHECK(rc == 0, "%s %d-bit: %s", eng_quant_method_name(cfg.method), b, err.msg);
            if (rc) continue;
            check_qmatrix(&q, eng_quant_method_name(cfg.method));
            float *D = malloc(sizeof(float) * ROWS * COLS);
            eng_qmatrix_dequant(&q, D);
            CHECK(memcmp(D, F, sizeof(float) * ROWS * COLS) == 0, "fake == dequant");
            free(D);
            CHECK(count_bits(q.bits, COLS, b) == COLS, "uniform bits");
            rel[b - 2][m] = st.rel_err;
            if (m != 0) CHECK(st.n_dead == 1, "one dead column");
            eng_qmatrix_free(&q);
        }
    for (int b = 0; b < 3; b++)
        printf("rel output error %d-bit: rtn %.5f gptq %.5f claq %.5f\n", b + 2, rel[b][0],
               rel[b][1], rel[b][2]);
    for (int b = 0; b < 3; b++) {
        CHECK(rel[b][2] <= rel[b][1], "%d-bit: CLAQ %g worse than GPTQ %g", b + 2, rel[b][2], rel[b][1]);
        CHECK(rel[b][1] <= rel[b][0], "%d-bit: GPTQ %g worse than RTN %g", b + 2, rel[b][1], rel[b][0]);
        if (b > 0) CHECK(rel[b][2] < rel[b - 1][2], "more bits, less error");
    }

    /* AP 2.1 + OR: the 4-bit columns, the outlier counts, determinism, and the index quirk */
    eng_quant_cfg_default(&cfg);
    cfg.bits = 2.1;
    CHECK(eng_quant_matrix(W, ROWS, COLS, H, &cfg, &q, F, &st, &err) == 0, "AP: %s", err.msg);
    CHECK(st.n4 == 16 && count_bits(q.bits, COLS, 4) == 16, "AP 2.1 on 320 columns: %lld at 4 bits",
          (long long)st.n4);
    double rel_ap = st.rel_err;
    eng_qmatrix_free(&q);
    CHECK(rel_ap < rel[0][2], "AP 2.1 (%g) beats pure 2-bit (%g)", rel_ap, rel[0][2]);
    cfg.outliers = 1;
    CHECK(eng_quant_matrix(W, ROWS, COLS, H, &cfg, &q, F, &st, &err) == 0, "AP+OR: %s", err.msg);
    check_qmatrix(&q, "AP+OR");
    /* 64 rows: f 0.014 keeps 3, f 0.004 keeps 2 (clamped upper index); the dead (all-zero)
     * column would keep all 64 tied zeros, but values the codebook already holds exactly are
     * not stored (the optimal codebooks often give an extreme value its own centroid) */
    printf("AP+OR 2.1: %lld outliers (%.2f%%), rel err %.5f (AP only %.5f)\n",
           (long long)st.n_outliers, 100.0 * st.n_outliers / (ROWS * COLS), st.rel_err, rel_ap);
    CHECK(st.n_outliers >= (32 * 3 + 287 * 2) / 2 && st.n_outliers <= 32 * 3 + 287 * 2,
          "outlier count %lld", (long long)st.n_outliers);
    CHECK(st.rel_err < rel_ap, "OR lowers the error");
    /* every outlier value is exactly what fake holds at its position */
    for (int64_t i = 0; i < q.n_outliers; i++)
        CHECK(F[q.out_row[i] * COLS + q.out_col[i]] == kern_f16_to_f32(q.out_val[i]), "outlier value");
    int64_t n_fixed = st.n_outliers;
    eng_qmatrix_free(&q);
    CHECK(eng_quant_matrix(W, ROWS, COLS, H, &cfg, &q, F2, &st, &err) == 0, "again");
    CHECK(memcmp(F, F2, sizeof(float) * ROWS * COLS) == 0, "deterministic");
    eng_qmatrix_free(&q);
    cfg.or_compat_index = 1;
    CHECK(eng_quant_matrix(W, ROWS, COLS, H, &cfg, &q, F3, &st, &err) == 0, "compat");
    printf("OR index: fixed %lld outliers, compat (block-local) %lld\n", (long long)n_fixed,
           (long long)st.n_outliers);
    CHECK(memcmp(F, F3, sizeof(float) * ROWS * COLS) != 0, "compat index changes the result");
    eng_qmatrix_free(&q);
    cfg.or_compat_index = 0;
    cfg.or_budget = 0.25;   /* 0.0035 / 0.001: only the clamped extremes remain */
    CHECK(eng_quant_matrix(W, ROWS, COLS, H, &cfg, &q, F3, &st, &err) == 0, "budget");
    CHECK(st.n_outliers < n_fixed, "smaller budget, fewer outliers (%lld vs %lld)",
          (long long)st.n_outliers, (long long)n_fixed);
    eng_qmatrix_free(&q);

    /* k-means++ initialisation through the whole matrix */
    cfg.or_budget = 1;
    cfg.kinit = ENG_KMEANS_PLUSPLUS;
    cfg.seed = 5;
    CHECK(eng_quant_matrix(W, ROWS, COLS, H, &cfg, &q, F3, &st, &err) == 0, "pp");
    CHECK(st.rel_err < rel[0][2] * 1.5, "k-means++ path sane: %g", st.rel_err);
    eng_qmatrix_free(&q);

    /* configuration errors */
    eng_quant_cfg_default(&cfg);
    cfg.method = ENG_QUANT_GPTQ;
    cfg.bits = 2.1;
    CHECK(eng_quant_matrix(W, ROWS, COLS, H, &cfg, &q, F, &st, &err) == ENG_E_INVAL, "AP needs claq");
    cfg.bits = 3;
    cfg.outliers = 1;
    CHECK(eng_quant_matrix(W, ROWS, COLS, H, &cfg, &q, F, &st, &err) == ENG_E_INVAL, "OR needs claq");
    cfg.method = ENG_QUANT_CLAQ;
    cfg.outliers = 0;
    CHECK(eng_quant_matrix(W, ROWS, COLS, NULL, &cfg, &q, F, &st, &err) == ENG_E_INVAL, "needs H");
    eng_qmatrix_free(&q);
    free(W); free(F); free(F2); free(F3); free(H);
}

/* ---- mode for the scikit-learn comparison --------------------------------------------------- */

static int mode_kmeans(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: test_quant_core --kmeans FILE N K [pp]\n");
        return 2;
    }
    const char *path = argv[2];
    long n = atol(argv[3]), k = atol(argv[4]);
    eng_kmeans_init init = (argc > 5 && strcmp(argv[5], "pp") == 0) ? ENG_KMEANS_PLUSPLUS
                                                                     : ENG_KMEANS_QUANTILE;
    FILE *f = fopen(path, "rb");
    if (!f || n <= 0 || k < 1 || k > 16) {
        fprintf(stderr, "bad arguments or file %s\n", path);
        if (f) fclose(f);
        return 2;
    }
    float *x = malloc(sizeof(float) * (size_t)n);
    double *scratch = malloc(sizeof(double) * 3 * (size_t)n);
    uint16_t cb[16];
    double t = 0;
    long cols = 0;
    while (fread(x, sizeof(float), (size_t)n, f) == (size_t)n) {
        double t0 = now_s();
        int rc = eng_kmeans_1d(x, n, (int)k, init, 10 + (uint64_t)cols, scratch, cb);
        t += now_s() - t0;
        if (rc) { fprintf(stderr, "kmeans failed: %d\n", rc); return 1; }
        printf("%.12g\n", cb_mse(x, n, cb, (int)k));
        cols++;
    }
    fprintf(stderr, "kmeans n=%ld k=%ld: %ld columns, %.1f us per column\n", n, k, cols,
            cols ? t / cols * 1e6 : 0);
    fclose(f);
    free(x);
    free(scratch);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--kmeans") == 0) return mode_kmeans(argc, argv);
    if (argc > 1) {
        fprintf(stderr, "usage: test_quant_core [--kmeans FILE N K [pp]]\n");
        return 2;
    }
    test_kmeans_basic();
    test_kmeans_vs_dp();
    test_kmeans_speed();
    test_gptq_vs_reference();
    test_gptq_retry();
    test_ap_counts();
    test_or_counts();
    test_cb_grid();
    test_rd_alloc();
    test_quant_matrix();
    if (g_fail) {
        fprintf(stderr, "%d check(s) failed\n", g_fail);
        return 1;
    }
    printf("all quant core checks passed\n");
    return 0;
}
