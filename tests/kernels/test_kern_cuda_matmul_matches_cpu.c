/* test_kern_cuda_matmul_matches_cpu.c — the CUDA matmul against the scalar CPU backend:
 *  - dense fp32 / fp16 / bf16 weights and packed CLAQ weights (mixed 2/3/4-bit columns, ~2 %
 *    outliers), odd shapes (rows 1..1000, cols 1..1000, batch 1..20), fresh random inputs, output
 *    poisoned with NaN before every run;
 *  - batch invariance: token t alone (n = 1) gives the same bits as inside a batch of 20;
 *  - a resident (uploaded) weight and a per-call staged one give the same bits;
 *  - the opt-in cuBLAS prefill path (fp16 / bf16 inputs) within its looser bound;
 *  - the opt-in tensor-core CLAQ GEMM (n >= 9): within the fp32 bound plus 2^-21 for x, batch
 *    invariant among n >= 9, another path than the GEMV, and the fused ops on it (mma_case);
 *  - real matrices of the shared models (small-lm-5m, tinystories-656k) when present;
 *  - gate and up with the SwiGLU in one op (kern_matmul_swiglu) give the bits of two matmuls
 *    and kern_swiglu; dense matrices are refused (KERN_E_UNSUPPORTED) without a write; q, k
 *    and v in one op (kern_matmul_multi) give the bits of three matmuls; a matmul with the
 *    residual add in its epilogue (kern_matmul_add) gives the bits of kern_matmul then kern_add,
 *    and leaves a dense matrix's accumulator untouched (KERN_E_UNSUPPORTED).
 * Tolerance (both sides accumulate in fp32, in different orders), per output:
 *   |y_cuda - y_cpu| <= 2 * (terms + 2) * FLT_EPSILON * sum_j |W[r][j] x[j]|
 * with terms = cols (dense) or cols_pad + nnz + K slices (CLAQ); the cuBLAS path adds the
 * rounding of x to fp16 (2^-11) or bf16 (2^-8) times the same magnitude. NaN never passes.
 * Skips (77) without a CUDA device (CLAQ_CUDA_TEST_STANDIN=1 runs it with the CPU backend in
 * CUDA's place, which checks only the test itself). CLAQ_CUDA_TEST_QUICK=1 keeps one shape of
 * each kind (every kernel and path still runs) for compute-sanitizer, whose racecheck did not
 * finish the full list in 50 s on an H200. */
/* ctest-cost: 40 (about 40 s in its longer pass; ctest -j starts the costliest first) */
#include <float.h>

#include "cuda_test_common.h"
#include "claq_test_matrix.h"
#include "eng_claq_file.h"
#include "eng_model.h"
#include "kern_half.h"

#define NMAX 20

/* y_cuda vs y_cpu for n tokens; mag[t*rows + r] = sum |W x| (double). */
static void compare(const char *what, const float *yc, const float *yr, const double *mag, int n,
                    int64_t rows, double terms, double x_round)
{
    for (int t = 0; t < n; t++)
        for (int64_t r = 0; r < rows; r++) {
            const size_t i = (size_t)t * rows + r;
            /* x_round > 0 (the prefill path): fp16 subnormals round x absolutely, not relatively */
            const double tol = (2.0 * (terms + 2) * FLT_EPSILON + x_round) * mag[i] +
                               (x_round > 0 ? 1e-6 : 1e-30);
            if (!ct_close(yc[i], yr[i], tol)) {
                CT_CHECK(0, "%s: token %d row %lld: cuda %.9g cpu %.9g (tol %.3g)", what, t,
                         (long long)r, yc[i], yr[i], tol);
                return;
            }
        }
}

/* kern_matmul on the CUDA backend from and to host arrays: x copied into a buffer of the
 * backend, y into a NaN-poisoned one and read back (ops take backend memory, kern.h). */
static int cu_matmul(kern_backend *cu, const kern_matrix *m, const float *x, int n, float *y)
{
    const size_t xb = sizeof(float) * (size_t)n * (size_t)m->cols;
    const size_t yb = sizeof(float) * (size_t)n * (size_t)m->rows;
    kern_buf *d_x = ct_buf(cu, x, xb), *d_y = ct_buf(cu, NULL, yb);
    int rc = d_x && d_y ? kern_matmul(cu, m, CT_ADDR(d_x), n, CT_ADDR(d_y)) : KERN_E_NOMEM;
    if (!rc) rc = kern_buf_read(cu, d_y, 0, y, yb);
    kern_buf_free(cu, d_x);
    kern_buf_free(cu, d_y);
    return rc;
}

/* Everything one matrix must pass. w_f32 [rows][cols] is W as fp32 (for the magnitudes). */
static void check_matrix(kern_backend *cu, kern_backend *cpu, kern_matrix *m, const float *w_f32,
                         double terms, const char *name)
{
    const int64_t rows = m->rows, cols = m->cols;
    float *x = malloc(sizeof(float) * (size_t)(NMAX * cols));
    float *yr = malloc(sizeof(float) * (size_t)(NMAX * rows));
    float *yc = malloc(sizeof(float) * (size_t)(NMAX * rows));
    float *y1 = malloc(sizeof(float) * (size_t)rows);
    double *mag = malloc(sizeof(double) * (size_t)(NMAX * rows));
    if (!x || !yr || !yc || !y1 || !mag) {
        CT_CHECK(0, "oom");
        goto out;
    }
    for (int64_t i = 0; i < NMAX * cols; i++) x[i] = ct_frnd() * 2.0f;
    for (int t = 0; t < NMAX; t++)
        for (int64_t r = 0; r < rows; r++) {
            double s = 0;
            for (int64_t j = 0; j < cols; j++) s += fabs((double)w_f32[r * cols + j] * x[t * cols + j]);
            mag[(size_t)t * rows + r] = s;
        }
    CT_CHECK(kern_matmul(cpu, m, x, NMAX, yr) == 0, "%s: cpu matmul", name);

    const int ns[] = {1, 3, 8, 9, NMAX};
    char what[160];
    /* Staged (never uploaded) first, then resident: same bits. */
    float *staged = malloc(sizeof(float) * (size_t)(NMAX * rows));
    ct_poison(staged, (size_t)(NMAX * rows));
    int rc = cu_matmul(cu, m, x, NMAX, staged);
    CT_CHECK(rc == 0, "%s: staged matmul: %s %s", name, kern_strerror(rc), ct_cuda_err(cu));
    rc = kern_upload(cu, m);
    CT_CHECK(rc == 0 && (m->dev || ct_standin), "%s: upload: %s %s", name, kern_strerror(rc),
             ct_cuda_err(cu));

    for (unsigned k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        const int n = ns[k];
        ct_poison(yc, (size_t)(n * rows));
        rc = cu_matmul(cu, m, x, n, yc);
        CT_CHECK(rc == 0, "%s n=%d: %s %s", name, n, kern_strerror(rc), ct_cuda_err(cu));
        snprintf(what, sizeof what, "%s n=%d", name, n);
        compare(what, yc, yr, mag, n, rows, terms, 0.0);
    }
    /* yc now holds n = NMAX. Batch invariance and staged == resident. */
    size_t at = 0;
    CT_CHECK(ct_same_bits(staged, yc, (size_t)(NMAX * rows), &at),
             "%s: staged vs resident differ at %zu: %.9g vs %.9g", name, at, staged[at], yc[at]);
    for (int t = 0; t < NMAX; t += 3) {
        ct_poison(y1, (size_t)rows);
        CT_CHECK(cu_matmul(cu, m, x + t * cols, 1, y1) == 0, "%s: n=1", name);
        CT_CHECK(ct_same_bits(y1, yc + (size_t)t * rows, (size_t)rows, &at),
                 "%s: token %d alone differs from inside the batch at row %zu: %.9g vs %.9g",
                 name, t, at, y1[at], yc[(size_t)t * rows + at]);
    }
    /* Opt-in cuBLAS prefill path. */
    if (ct_set_prefill_min_n(cu, 1) == 0) {
        const double xr = m->dtype == KERN_F32 ? 0.0 : m->dtype == KERN_BF16 ? 1.0 / 256 : 1.0 / 2048;
        ct_poison(yc, (size_t)(NMAX * rows));
        rc = cu_matmul(cu, m, x, NMAX, yc);
        CT_CHECK(rc == 0, "%s prefill: %s %s", name, kern_strerror(rc), ct_cuda_err(cu));
        snprintf(what, sizeof what, "%s prefill path", name);
        compare(what, yc, yr, mag, NMAX, rows, terms, xr);
        ct_set_prefill_min_n(cu, 0);
    }
    kern_release(cu, m);
    CT_CHECK(m->dev == NULL, "%s: release left dev set", name);
    free(staged);
out:
    free(x); free(yr); free(yc); free(y1); free(mag);
}

static void dense_case(kern_backend *cu, kern_backend *cpu, kern_dtype dt, int64_t rows,
                       int64_t cols)
{
    float *wf = malloc(sizeof(float) * (size_t)(rows * cols));
    void *wd = malloc(kern_dense_bytes(dt, rows, cols));
    for (int64_t r = 0; dt == KERN_Q8_ROW && r < rows; r++) {   /* scales: unaligned for odd cols */
        const float sc = 0.001f + 0.01f * fabsf(ct_frnd());
        memcpy((char *)wd + rows * cols + r * 4, &sc, 4);
    }
    for (int64_t i = 0; i < rows * cols; i++) {
        float v = ct_frnd();
        if (dt == KERN_Q8_ROW) {   /* a tied 8-bit head: int8 codes times the row's scale */
            const int8_t q = (int8_t)(ct_rnd() % 255u - 127u);
            float sc;
            memcpy(&sc, (char *)wd + rows * cols + (i / cols) * 4, 4);
            ((int8_t *)wd)[i] = q;
            wf[i] = (float)q * sc;
        } else if (dt == KERN_F16) {
            ((uint16_t *)wd)[i] = kern_f32_to_f16(v);
            wf[i] = kern_f16_to_f32(((uint16_t *)wd)[i]);
        } else if (dt == KERN_BF16) {
            ((uint16_t *)wd)[i] = kern_f32_to_bf16(v);
            wf[i] = kern_bf16_to_f32(((uint16_t *)wd)[i]);
        } else {
            ((float *)wd)[i] = v;
            wf[i] = v;
        }
    }
    kern_matrix m = {dt, rows, cols, wd, NULL, NULL};
    char name[96];
    snprintf(name, sizeof name, "%s %lldx%lld", kern_dtype_name(dt), (long long)rows,
             (long long)cols);
    check_matrix(cu, cpu, &m, wf, (double)cols, name);
    free(wf);
    free(wd);
}

/* Random CLAQ matrices (claq_test_matrix.h) from this test's generator. */
static int make_q(eng_qmatrix *q, int64_t rows, int64_t cols, int mix)
{
    return claq_test_make_q(q, rows, cols, mix, ct_rnd, ct_frnd);
}

static void claq_case(kern_backend *cu, kern_backend *cpu, int64_t rows, int64_t cols, int mix)
{
    eng_qmatrix q;
    eng_claq_packed p;
    eng_err err = {0};
    memset(&p, 0, sizeof p);
    if (make_q(&q, rows, cols, mix)) {
        CT_CHECK(0, "make_q");
        return;
    }
    int rc = eng_claq_pack(&q, "test", &p, &err);
    CT_CHECK(rc == 0, "pack: %s", err.msg);
    if (!rc) {
        float *wf = malloc(sizeof(float) * (size_t)(rows * cols));
        eng_claq_unpack(&p.view, wf);
        kern_matrix m = {KERN_CLAQ, rows, cols, NULL, &p.view, NULL};
        char name[96];
        snprintf(name, sizeof name, "CLAQ mix%d %lldx%lld", mix, (long long)rows, (long long)cols);
        /* K slices are at most cols_pad / 32; x2: outliers add |cb x| + |delta x| terms */
        check_matrix(cu, cpu, &m, wf,
                     2.0 * (double)(p.view.cols_pad + p.view.nnz + p.view.cols_pad / 32),
                     name);
        free(wf);
    }
    eng_claq_packed_free(&p);
    eng_qmatrix_free(&q);
}

/* Gate and up fused with the SwiGLU (kern_matmul_swiglu) against kern_matmul twice and
 * kern_swiglu on the same backend: the same bits, for n = 1, 2, 3, 7, 11 (a chunk of 8 and a
 * rest).
 * Dense matrices are not fused: KERN_E_UNSUPPORTED, the output left as it was. */
static void swiglu_case(kern_backend *cu, int64_t rows, int64_t cols, int mix_g, int mix_u)
{
    eng_qmatrix q[2];
    eng_claq_packed p[2];
    eng_err err = {0};
    memset(p, 0, sizeof p);
    int ok = make_q(&q[0], rows, cols, mix_g) == 0 && make_q(&q[1], rows, cols, mix_u) == 0 &&
             eng_claq_pack(&q[0], "gate", &p[0], &err) == 0 &&
             eng_claq_pack(&q[1], "up", &p[1], &err) == 0;
    CT_CHECK(ok, "swiglu case: %s", err.msg);
    kern_matrix g = {KERN_CLAQ, rows, cols, NULL, &p[0].view, NULL};
    kern_matrix u = {KERN_CLAQ, rows, cols, NULL, &p[1].view, NULL};
    if (ok) ok = kern_upload(cu, &g) == 0 && kern_upload(cu, &u) == 0;
    const int nmax = 11;
    const size_t xn = (size_t)nmax * cols, yn = (size_t)nmax * rows;
    float *x = malloc(xn * sizeof(float)), *a = malloc(yn * sizeof(float)),
          *b = malloc(yn * sizeof(float));
    for (size_t i = 0; i < xn; i++) x[i] = ct_frnd();
    kern_buf *dx = ct_buf(cu, x, xn * sizeof(float)), *dg = ct_buf(cu, NULL, yn * sizeof(float)),
             *du = ct_buf(cu, NULL, yn * sizeof(float)), *dy = ct_buf(cu, NULL, yn * sizeof(float));
    for (int n = 1; ok && n <= nmax; n += (n < 3 ? 1 : 4)) {
        const size_t m = (size_t)n * rows;
        int rc = kern_matmul(cu, &g, CT_ADDR(dx), n, CT_ADDR(dg));
        if (!rc) rc = kern_matmul(cu, &u, CT_ADDR(dx), n, CT_ADDR(du));
        if (!rc) rc = kern_swiglu(cu, CT_ADDR(dg), CT_ADDR(du), (int64_t)m, CT_ADDR(dg));
        if (!rc) rc = kern_matmul_swiglu(cu, &g, &u, CT_ADDR(dx), n, CT_ADDR(dy));
        CT_CHECK(rc == 0, "swiglu %lldx%lld n=%d: rc %d %s", (long long)rows, (long long)cols, n,
                 rc, ct_cuda_err(cu));
        size_t at = 0;
        CT_CHECK(rc == 0 && ct_get(cu, dg, a, m * sizeof(float)) == 0 &&
                     ct_get(cu, dy, b, m * sizeof(float)) == 0 && ct_same_bits(a, b, m, &at),
                 "swiglu %lldx%lld mix %d/%d n=%d: fused %.9g, three ops %.9g at %zu",
                 (long long)rows, (long long)cols, mix_g, mix_u, n, b[at], a[at], at);
    }
    if (ok) {   /* dense: not fused, nothing written */
        float *w = calloc((size_t)(rows * cols), sizeof(float));
        kern_matrix dn = {KERN_F32, rows, cols, w, NULL, NULL};
        ct_poison(b, (size_t)rows);
        CT_CHECK(kern_buf_write(cu, dy, 0, b, (size_t)rows * sizeof(float)) == 0 &&
                     kern_matmul_swiglu(cu, &dn, &dn, CT_ADDR(dx), 1, CT_ADDR(dy)) ==
                         KERN_E_UNSUPPORTED &&
                     ct_get(cu, dy, a, (size_t)rows * sizeof(float)) == 0 &&
                     !memcmp(a, b, (size_t)rows * sizeof(float)),
                 "dense gate/up: KERN_E_UNSUPPORTED and nothing written");
        free(w);
    }
    kern_buf *bufs[] = {dx, dg, du, dy};
    for (unsigned i = 0; i < 4; i++) kern_buf_free(cu, bufs[i]);
    kern_release(cu, &g);
    kern_release(cu, &u);
    free(x); free(a); free(b);
    for (int i = 0; i < 2; i++) {
        eng_claq_packed_free(&p[i]);
        eng_qmatrix_free(&q[i]);
    }
}

/* The residual add in the epilogue (kern_matmul_add) against kern_matmul into a buffer and
 * kern_add: the same bits from the same starting accumulator, for n = 1, 2, 3, 7, 11; dense refused
 * with the accumulator untouched. */
static void add_case(kern_backend *cu, int64_t rows, int64_t cols, int mix)
{
    eng_qmatrix q;
    eng_claq_packed p;
    eng_err err = {0};
    memset(&p, 0, sizeof p);
    int ok = make_q(&q, rows, cols, mix) == 0 && eng_claq_pack(&q, "o", &p, &err) == 0;
    CT_CHECK(ok, "add case: %s", err.msg);
    kern_matrix m = {KERN_CLAQ, rows, cols, NULL, ok ? &p.view : NULL, NULL};
    ok = ok && kern_upload(cu, &m) == 0;
    const int nmax = 11;
    const size_t xn = (size_t)nmax * cols, yn = (size_t)nmax * rows;
    float *x = malloc(xn * sizeof(float)), *acc = malloc(yn * sizeof(float)),
          *a = malloc(yn * sizeof(float)), *b = malloc(yn * sizeof(float));
    for (size_t i = 0; i < xn; i++) x[i] = ct_frnd();
    for (size_t i = 0; i < yn; i++) acc[i] = ct_frnd() * 4.0f;
    kern_buf *dx = ct_buf(cu, x, xn * sizeof(float)), *dy = ct_buf(cu, NULL, yn * sizeof(float)),
             *da = ct_buf(cu, acc, yn * sizeof(float)), *db = ct_buf(cu, acc, yn * sizeof(float));
    for (int n = 1; ok && n <= nmax; n += (n < 3 ? 1 : 4)) {
        const size_t cnt = (size_t)n * rows;
        int rc = kern_buf_write(cu, da, 0, acc, cnt * sizeof(float));
        if (!rc) rc = kern_buf_write(cu, db, 0, acc, cnt * sizeof(float));
        if (!rc) rc = kern_matmul(cu, &m, CT_ADDR(dx), n, CT_ADDR(dy));
        if (!rc) rc = kern_add(cu, CT_ADDR(da), CT_ADDR(dy), (int64_t)cnt);
        if (!rc) rc = kern_matmul_add(cu, &m, CT_ADDR(dx), n, CT_ADDR(db));
        CT_CHECK(rc == 0, "add %lldx%lld n=%d: rc %d %s", (long long)rows, (long long)cols, n, rc,
                 ct_cuda_err(cu));
        size_t at = 0;
        CT_CHECK(rc == 0 && ct_get(cu, da, a, cnt * sizeof(float)) == 0 &&
                     ct_get(cu, db, b, cnt * sizeof(float)) == 0 && ct_same_bits(a, b, cnt, &at) &&
                     memcmp(a, acc, cnt * sizeof(float)) != 0,
                 "add %lldx%lld mix %d n=%d: fused %.9g, matmul + add %.9g at %zu",
                 (long long)rows, (long long)cols, mix, n, b[at], a[at], at);
    }
    if (ok) {   /* dense: not fused, the accumulator untouched */
        float *w = calloc((size_t)(rows * cols), sizeof(float));
        kern_matrix dn = {KERN_F32, rows, cols, w, NULL, NULL};
        CT_CHECK(kern_buf_write(cu, db, 0, acc, (size_t)rows * sizeof(float)) == 0 &&
                     kern_matmul_add(cu, &dn, CT_ADDR(dx), 1, CT_ADDR(db)) == KERN_E_UNSUPPORTED &&
                     ct_get(cu, db, b, (size_t)rows * sizeof(float)) == 0 &&
                     !memcmp(b, acc, (size_t)rows * sizeof(float)),
                 "dense matmul_add: KERN_E_UNSUPPORTED and nothing written");
        free(w);
    }
    kern_buf *bufs[] = {dx, dy, da, db};
    for (unsigned i = 0; i < 4; i++) kern_buf_free(cu, bufs[i]);
    kern_release(cu, &m);
    free(x); free(acc); free(a); free(b);
    eng_claq_packed_free(&p);
    eng_qmatrix_free(&q);
}

/* q, k and v in one op (kern_matmul_multi) against three kern_matmul: the same bits, for
 * matrices of different heights (GQA: k and v shorter) and n = 1..11; dense refused. */
static void multi_case(kern_backend *cu, int64_t rq, int64_t rkv, int64_t cols)
{
    const int64_t rows[3] = {rq, rkv, rkv};
    eng_qmatrix q[3];
    eng_claq_packed p[3];
    kern_matrix m[3];
    eng_err err = {0};
    memset(p, 0, sizeof p);
    int ok = 1;
    for (int i = 0; i < 3; i++) {
        ok = ok && make_q(&q[i], rows[i], cols, (i + 1) % 4) == 0 &&
             eng_claq_pack(&q[i], "qkv", &p[i], &err) == 0;
        m[i] = (kern_matrix){KERN_CLAQ, rows[i], cols, NULL, ok ? &p[i].view : NULL, NULL};
        ok = ok && kern_upload(cu, &m[i]) == 0;
    }
    CT_CHECK(ok, "multi case: %s", err.msg);
    const int nmax = 11;
    float *x = malloc(sizeof(float) * (size_t)(nmax * cols));
    for (int64_t i = 0; i < nmax * cols; i++) x[i] = ct_frnd();
    kern_buf *dx = ct_buf(cu, x, sizeof(float) * (size_t)(nmax * cols)), *da[3], *db[3];
    for (int i = 0; i < 3; i++) {
        da[i] = ct_buf(cu, NULL, sizeof(float) * (size_t)(nmax * rows[i]));
        db[i] = ct_buf(cu, NULL, sizeof(float) * (size_t)(nmax * rows[i]));
    }
    const kern_matrix *mp[3] = {&m[0], &m[1], &m[2]};
    float *yb[3] = {CT_ADDR(db[0]), CT_ADDR(db[1]), CT_ADDR(db[2])};
    float *ha = malloc(sizeof(float) * (size_t)(nmax * rq)), *hb = malloc(sizeof(float) * (size_t)(nmax * rq));
    for (int n = 1; ok && n <= nmax; n += (n < 3 ? 1 : 4)) {
        int rc = 0;
        for (int i = 0; !rc && i < 3; i++) rc = kern_matmul(cu, &m[i], CT_ADDR(dx), n, CT_ADDR(da[i]));
        if (!rc) rc = kern_matmul_multi(cu, mp, 3, CT_ADDR(dx), n, yb);
        CT_CHECK(rc == 0, "multi n=%d: rc %d %s", n, rc, ct_cuda_err(cu));
        for (int i = 0; !rc && i < 3; i++) {
            size_t at = 0, cnt = (size_t)(n * rows[i]);
            CT_CHECK(ct_get(cu, da[i], ha, cnt * sizeof(float)) == 0 &&
                         ct_get(cu, db[i], hb, cnt * sizeof(float)) == 0 &&
                         ct_same_bits(ha, hb, cnt, &at),
                     "multi %lld/%lld x %lld n=%d matrix %d: fused %.9g, alone %.9g at %zu",
                     (long long)rq, (long long)rkv, (long long)cols, n, i, hb[at], ha[at], at);
        }
    }
    if (ok) {
        float *w = calloc((size_t)(rq * cols), sizeof(float));
        kern_matrix dn = {KERN_F32, rq, cols, w, NULL, NULL};
        const kern_matrix *dp[1] = {&dn};
        CT_CHECK(kern_matmul_multi(cu, dp, 1, CT_ADDR(dx), 1, yb) == KERN_E_UNSUPPORTED,
                 "dense q/k/v: KERN_E_UNSUPPORTED");
        free(w);
    }
    kern_buf_free(cu, dx);
    for (int i = 0; i < 3; i++) {
        kern_buf_free(cu, da[i]);
        kern_buf_free(cu, db[i]);
        kern_release(cu, &m[i]);
        eng_claq_packed_free(&p[i]);
        eng_qmatrix_free(&q[i]);
    }
    free(x); free(ha); free(hb);
}

/* The tensor-core GEMM (kern_cuda_set_mma_min_n): against the CPU within the fp32 bound plus x's
 * rounding to its two fp16 halves (2^-21 relative), for n = 9..70 (a full group of 64 tokens and
 * a short one); token rows of zeros, of 1e6 (past fp16's range) and of 1e-6 (per-token scaling);
 * batch invariant among n >= 9 (each token's bits equal in every batch, also at another place in
 * its group; all_n = 0: n = 40, 70 and tokens 61..69 only); and really another path than the GEMV
 * (some bits differ at n = 9). */
#define MMA_NMAX 70
static void mma_case(kern_backend *cu, kern_backend *cpu, int64_t rows, int64_t cols, int mix,
                     int all_n)
{
    eng_qmatrix q;
    eng_claq_packed p;
    eng_err err = {0};
    memset(&p, 0, sizeof p);
    if (make_q(&q, rows, cols, mix) || eng_claq_pack(&q, "mma", &p, &err)) {
        CT_CHECK(0, "mma case: %s", err.msg);
        eng_qmatrix_free(&q);
        return;
    }
    kern_matrix m = {KERN_CLAQ, rows, cols, NULL, &p.view, NULL};
    const size_t xn = (size_t)MMA_NMAX * cols, yn = (size_t)MMA_NMAX * rows;
    float *wf = malloc(sizeof(float) * (size_t)(rows * cols)), *x = malloc(xn * sizeof(float));
    float *yr = malloc(yn * sizeof(float)), *yall = malloc(yn * sizeof(float));
    float *yc = malloc(yn * sizeof(float));
    double *mag = malloc(yn * sizeof(double));
    eng_claq_unpack(&p.view, wf);
    for (size_t i = 0; i < xn; i++) x[i] = ct_frnd() * 2.0f;
    for (int64_t j = 0; j < cols; j++) {
        x[3 * cols + j] = 0.0f;
        x[5 * cols + j] *= 1e6f;
        x[66 * cols + j] *= 1e-6f;
    }
    for (int t = 0; t < MMA_NMAX; t++)
        for (int64_t r = 0; r < rows; r++) {
            double s = 0;
            for (int64_t j = 0; j < cols; j++) s += fabs((double)wf[r * cols + j] * x[t * cols + j]);
            mag[(size_t)t * rows + r] = s;
        }
    char name[96], what[160];
    snprintf(name, sizeof name, "mma CLAQ mix%d %lldx%lld", mix, (long long)rows, (long long)cols);
    int rc = kern_matmul(cpu, &m, x, MMA_NMAX, yr);
    if (!rc) rc = kern_upload(cu, &m);
    CT_CHECK(rc == 0, "%s: setup: %s %s", name, kern_strerror(rc), ct_cuda_err(cu));
    const double terms = 2.0 * (double)(p.view.cols_pad + p.view.nnz + p.view.cols_pad / 32);
    /* The GEMV's bits at n = 9, then the mma path's. */
    float *ygemv = malloc((size_t)9 * rows * sizeof(float));
    ct_poison(ygemv, (size_t)9 * rows);
    if (!rc) rc = cu_matmul(cu, &m, x, 9, ygemv);
    if (!rc) rc = ct_set_mma_min_n(cu, 9);
    CT_CHECK(rc == 0, "%s: gemv / mma switch: %s %s", name, kern_strerror(rc), ct_cuda_err(cu));
    ct_poison(yall, yn);
    if (!rc) rc = cu_matmul(cu, &m, x, MMA_NMAX, yall);
    CT_CHECK(rc == 0, "%s n=%d: %s %s", name, MMA_NMAX, kern_strerror(rc), ct_cuda_err(cu));
    if (!rc) {
        snprintf(what, sizeof what, "%s n=%d", name, MMA_NMAX);
        compare(what, yall, yr, mag, MMA_NMAX, rows, terms, 1.0 / (1 << 21));
    }
    if (!rc && cols >= 64) {   /* tokens 0..8 of n = 70 have the bits of n = 9 (below) */
        int differs = 0;
        for (size_t i = 0; i < (size_t)9 * rows; i++) differs |= yall[i] != ygemv[i];
        CT_CHECK(differs, "%s: the GEMV's bits at n=9: the mma path did not run", name);
    }
    /* Each kernel instance: 40 tokens run as 7 n-tiles (5, 6 and 7 share one), 9 / 16 as 2,
     * 23 as 3, 31 as 4, 64 as 8 (70: 8, then 1 for the short group). */
    const int ns[] = {40, 9, 23, 31, 16, 64};
    size_t at = 0;
    for (unsigned k = 0; !rc && k < (all_n ? sizeof ns / sizeof ns[0] : 1u); k++) {
        ct_poison(yc, (size_t)ns[k] * rows);
        rc = cu_matmul(cu, &m, x, ns[k], yc);
        CT_CHECK(rc == 0 && ct_same_bits(yc, yall, (size_t)ns[k] * rows, &at),
                 "%s: n=%d differs from n=%d at token %zu row %zu: %.9g vs %.9g (rc %d)", name,
                 ns[k], MMA_NMAX, at / rows, at % rows, yc[at], yall[at], rc);
    }
    /* Tokens 61..69 (the short group's 6 and the full one's last 3) as the first 9 of a batch. */
    ct_poison(yc, (size_t)9 * rows);
    if (!rc) rc = cu_matmul(cu, &m, x + 61 * cols, 9, yc);
    CT_CHECK(rc == 0 && ct_same_bits(yc, yall + (size_t)61 * rows, (size_t)9 * rows, &at),
             "%s: tokens 61..69 alone differ at token %zu row %zu: %.9g vs %.9g", name,
             61 + at / rows, at % rows, yc[at], yall[(size_t)61 * rows + at]);
    ct_set_mma_min_n(cu, 0);
    kern_release(cu, &m);
    free(ygemv); free(wf); free(x); free(yr); free(yall); free(yc); free(mag);
    eng_claq_packed_free(&p);
    eng_qmatrix_free(&q);
}

/* Real weights: a few matrices of each shared model, as stored (fp32 here). */
static void real_models(kern_backend *cu, kern_backend *cpu)
{
    const char *sh = getenv("CLAQ_SHARED");
    const char *dirs[] = {"models/small-lm-5m", "models/tinystories-656k", "models/stories260K.bin"};
    if (!sh) {
        printf("note: CLAQ_SHARED unset, real-model matrices skipped\n");
        return;
    }
    for (unsigned d = 0; d < sizeof dirs / sizeof dirs[0]; d++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", sh, dirs[d]);
        eng_model *mo = NULL;
        eng_err err = {0};
        if (eng_model_open(&mo, path, &err)) {
            CT_CHECK(0, "open %s: %s", path, err.msg);
            continue;
        }
        kern_matrix *ms[] = {&mo->w.layers[0].lin[ENG_LIN_Q], &mo->w.layers[0].lin[ENG_LIN_K],
                             &mo->w.layers[0].lin[ENG_LIN_DOWN], &mo->w.output};
        for (unsigned i = 0; i < sizeof ms / sizeof ms[0]; i++) {
            kern_matrix *m = ms[i];
            if (m->dtype == KERN_CLAQ || !m->data) continue;
            float *wf = malloc(sizeof(float) * (size_t)(m->rows * m->cols));
            for (int64_t j = 0; j < m->rows * m->cols; j++)
                wf[j] = m->dtype == KERN_F32 ? ((const float *)m->data)[j]
                        : m->dtype == KERN_F16 ? kern_f16_to_f32(((const uint16_t *)m->data)[j])
                                               : kern_bf16_to_f32(((const uint16_t *)m->data)[j]);
            char name[160];
            snprintf(name, sizeof name, "%s matrix %u (%lldx%lld)", dirs[d], i, (long long)m->rows,
                     (long long)m->cols);
            check_matrix(cu, cpu, m, wf, (double)m->cols, name);
            free(wf);
        }
        eng_model_close(mo);
    }
}

int main(void)
{
    kern_backend cu, cpu;
    ct_open_cuda_or_skip(&cu);
    ct_open_cpu_ref(&cpu);
    CT_CHECK(cu.ops->supports && cu.ops->supports(cu.ctx, KERN_CLAQ), "CLAQ not supported");

    const char *qe = getenv("CLAQ_CUDA_TEST_QUICK");
    const int quick = qe && qe[0] == '1';
    const int64_t rows[] = {1, 7, 33, 257, 1000};
    const int64_t cols[] = {1, 3, 8, 17, 130, 264, 1000};
    const kern_dtype dts[] = {KERN_F32, KERN_F16, KERN_BF16, KERN_Q8_ROW};
    for (unsigned d = 0; d < 4; d++)
        for (unsigned a = quick ? 2 : 0; a < (quick ? 3u : sizeof rows / sizeof rows[0]); a++)
            for (unsigned b = quick ? 3 : 0; b < (quick ? 5u : sizeof cols / sizeof cols[0]); b++)
                dense_case(&cu, &cpu, dts[d], rows[a], cols[b]);

    const int64_t qrows[] = {1, 7, 16, 33, 100, 257};
    const int64_t qcols[] = {1, 3, 17, 33, 130, 600};
    for (unsigned a = quick ? 3 : 0; a < (quick ? 4u : sizeof qrows / sizeof qrows[0]); a++)
        for (unsigned b = quick ? 4 : 0; b < (quick ? 5u : sizeof qcols / sizeof qcols[0]); b++)
            for (int mix = 0; mix < 4; mix++) claq_case(&cu, &cpu, qrows[a], qcols[b], mix);
    if (!quick) {
        claq_case(&cu, &cpu, 1000, 2100, 3);   /* many K slices, several row groups, short tile */
        claq_case(&cu, &cpu, 600, 4096, 1);
    }
    /* Tall: 16 row groups make K slices of several blocks (bps > 1 at 80..132 SMs) with a short
     * last slice; every shape above gets bps = 1. */
    claq_case(&cu, &cpu, 4096, 1100, 3);
    add_case(&cu, 33, 130, 3);
    add_case(&cu, 257, 600, 1);
    swiglu_case(&cu, 33, 130, 1, 3);
    swiglu_case(&cu, 257, 600, 3, 0);
    if (!quick) swiglu_case(&cu, 1000, 2100, 2, 3);
    multi_case(&cu, 64, 16, 130);
    multi_case(&cu, 257, 65, 600);

    /* The tensor-core GEMM, and the fused ops with it (n = 11 takes it there). */
    if (ct_set_mma_min_n(&cu, 9) == 0) {
        ct_set_mma_min_n(&cu, 0);
        /* quick (compute-sanitizer): n = 9 and 70 only, every kernel instance still runs */
        mma_case(&cu, &cpu, 33, 130, 1, !quick);
        mma_case(&cu, &cpu, 257, 600, 3, !quick);
        mma_case(&cu, &cpu, 16, 1, 0, !quick);   /* one product: x rounded to fp16 would fail it */
        /* 64 row tiles at 132 SMs: 13 blocks in K slices of 3 (the pipeline) and a short one */
        mma_case(&cu, &cpu, 4096, 400, 2, 0);
        ct_set_mma_min_n(&cu, 9);
        add_case(&cu, 257, 600, 1);
        swiglu_case(&cu, 257, 600, 3, 0);
        multi_case(&cu, 257, 65, 600);
        ct_set_mma_min_n(&cu, 0);
    }

    if (!quick) real_models(&cu, &cpu);

    kern_backend_destroy(&cu);
    kern_backend_destroy(&cpu);
    if (ct_failures) {
        fprintf(stderr, "%d failures\n", ct_failures);
        return 1;
    }
    printf("ok: CUDA matmul (dense f32/f16/bf16/q8_row, CLAQ, prefill path, CLAQ mma path) matches the CPU reference; "
           "batch invariant; staged == resident; gate/up + SwiGLU fused == three ops; q/k/v fused == three matmuls; "
           "matmul + residual add fused == two ops\n");
    return 0;
}
