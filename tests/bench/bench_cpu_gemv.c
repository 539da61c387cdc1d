/* bench_cpu_gemv.c — `bench_cpu_gemv` (was `bench_cpu_gemv`): the issue #3 GEMV benchmark of the
 * CPU backend. A benchmark, not a ctest, so it may reach the CPU backend's internals
 * (kernels/cpu), which the engine and its tools may not. Packed CLAQ matrices of
 * LLaMA-7B shapes (4096x4096, 11008x4096, 4096x11008) at 2.1 (AP: 5 % of columns at 4 bits,
 * the rest at 2), 3 and 4 bits with random codes and codebooks (speed only), run through the CPU
 * backend's kern_matmul at batch 1 on 1 and 2 threads; achieved GB/s of weight bytes (every
 * byte of the packed matrix) against the machine's streaming-read bandwidth measured in the same
 * run with 4 KiB pages and with 2 MiB pages (madvise(MADV_HUGEPAGE)), and against the dense
 * FP32 / FP16 GEMV. Weights live in huge-page-backed memory, as eng__load_claq puts them.
 * `--kernel` instead times the machine's tile kernel alone on one thread (LUT built once), on a
 * matrix that stays in L2 and on one that streams, to tell compute-bound from bandwidth-bound.
 * `--gemm` times the whole packed matmul at batch 1 to 512 (the prompt path: dequantize-GEMM from
 * 8 tokens on AVX-512) on TinyLlama's shapes at 3 bits, in weight-token pairs per second against
 * the core's fp32 product-and-sum peak measured in the same run; where the CPU has AVX512_BF16,
 * beside it the bfloat16 prefill GEMM (kern.h matmul_bf16) on the same matrices and inputs.
 * Printed, not a test. Single-threaded front end; the backend's pool does the work. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <immintrin.h>

#include "claq_tool.h"        /* the claq tool's argument parser (engine/tool/claq_args.c) */
#include "kern_cpu_claq.h"
#include "kern_cpu_impl.h"
#include "eng_claq_file.h"
#include "kern_half.h"

#define HP (2u << 20)

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* CPU time of the calling thread: on a shared machine it leaves out the slices another
 * process had the core (it still counts a sibling's contention for the core's pipes). */
static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Anonymous buffer of n bytes, 2 MiB aligned, huge pages on or explicitly off, pre-faulted. */
typedef struct hbuf { void *map; size_t maplen; void *p; } hbuf;
static int hbuf_alloc(hbuf *b, size_t n, int huge)
{
    b->maplen = n + HP;
    b->map = mmap(NULL, b->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b->map == MAP_FAILED) { b->map = NULL; return -1; }
    b->p = (void *)(((uintptr_t)b->map + HP - 1) & ~(uintptr_t)(HP - 1));
    (void)madvise(b->p, n, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    memset(b->p, 1, n);
    return 0;
}
static void hbuf_free(hbuf *b)
{
    if (b->map) munmap(b->map, b->maplen);
    memset(b, 0, sizeof *b);
}

/* ---- streaming read bandwidth ---- */
typedef struct bw_job { const uint64_t *p; int64_t n_words; int64_t per_task; uint64_t sink[64]; } bw_job;
/* Streaming read with full-width loads (AVX-512 when the CPU has it, else plain C) so the
 * ceiling is the memory's, not the loop's. */
__attribute__((target("avx512f"))) static uint64_t read_avx512(const uint64_t *p, int64_t n)
{
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i = 0; i + 32 <= n; i += 32) {
        a0 = _mm512_add_epi64(a0, _mm512_load_si512((const void *)(p + i)));
        a1 = _mm512_add_epi64(a1, _mm512_load_si512((const void *)(p + i + 8)));
        a2 = _mm512_add_epi64(a2, _mm512_load_si512((const void *)(p + i + 16)));
        a3 = _mm512_add_epi64(a3, _mm512_load_si512((const void *)(p + i + 24)));
    }
    a0 = _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3));
    return (uint64_t)_mm512_reduce_add_epi64(a0);
}

static void bw_task(void *arg, int64_t task, int worker)
{
    bw_job *j = arg;
    const uint64_t *p = j->p + task * j->per_task;
    int64_t n = j->per_task;
    if (__builtin_cpu_supports("avx512f")) {
        j->sink[worker & 63] += read_avx512(p, n);
        return;
    }
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    for (int64_t i = 0; i + 8 <= n; i += 8) {
        a0 += p[i]; a1 += p[i + 1]; a2 += p[i + 2]; a3 += p[i + 3];
        a4 += p[i + 4]; a5 += p[i + 5]; a6 += p[i + 6]; a7 += p[i + 7];
    }
    j->sink[worker & 63] += a0 ^ a1 ^ a2 ^ a3 ^ a4 ^ a5 ^ a6 ^ a7;
}

static double read_bw(kern_pool *pool, int threads, const void *buf, size_t n, int reps)
{
    bw_job j = {.p = buf, .n_words = (int64_t)(n / 8)};
    j.per_task = j.n_words / threads / 32 * 32;   /* 256-byte multiples: aligned chunks */
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        kern_pool_run(pool, threads, bw_task, &j);
        double t = now_s() - t0;
        if (t < best) best = t;
    }
    return (double)(j.per_task * threads * 8) / best / 1e9;
}

/* ---- matrices ---- */
static uint64_t rs = 88172645463325252ull;
static uint32_t xr(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (uint32_t)(rs >> 16);
}

/* Random packed matrix: bits4_frac of the columns at 4 bits, the rest at `low` bits. */
static int make_packed(int64_t rows, int64_t cols, double bits4_frac, int low, int out_pct,
                       eng_claq_packed *p, eng_err *err)
{
    eng_qmatrix q;
    int rc = eng_qmatrix_alloc(&q, rows, cols, err);
    if (rc) return rc;
    int64_t n4 = (int64_t)(bits4_frac * (double)cols + 0.5);
    for (int64_t j = 0; j < cols; j++) {
        int b = (j * 7919 % cols) < n4 ? 4 : low;
        q.bits[j] = (uint8_t)b;
        for (int e = 0; e < ENG_QM_CB; e++)
            q.codebook[j * ENG_QM_CB + e] = kern_f32_to_f16(((float)e - 7.5f) * 0.01f);
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++)
            q.codes[r * cols + j] = (uint8_t)(xr() & ((1u << q.bits[j]) - 1));
    for (int64_t j = 0; j < cols && out_pct; j++)      /* ~out_pct % outliers, (col, row) order */
        for (int64_t r = 0; r < rows; r++)
            if (xr() % 100 < (uint32_t)out_pct &&
                eng_qmatrix_add_outlier(&q, (uint32_t)r, (uint32_t)j, kern_f32_to_f16(0.5f))) {
                eng_qmatrix_free(&q);
                return eng_err_set(err, ENG_E_NOMEM, "bench: out of memory");
            }
    rc = eng_claq_pack(&q, "bench", p, err);
    eng_qmatrix_free(&q);
    return rc;
}

static double time_matmul(kern_backend *be, const kern_matrix *w, const float *x, float *y, int reps)
{
    kern_matmul(be, w, x, 1, y);   /* warm-up: scratch, page faults */
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        kern_matmul(be, w, x, 1, y);
        double t = now_s() - t0;
        if (t < best) best = t;
    }
    return best;
}

/* --kernel: the GEMV kernel alone, one thread, LUT of one token built once, tiles in ranges of
 * KERN_CPU_CLAQ_GEMV_TILES as the dispatcher passes them. rows x cols at frac4 / low bits; best
 * wall and best thread-CPU time over reps passes over all tiles. */
static int bench_kernel_case(const char *name, int64_t rows, int64_t cols, double frac4, int low,
                             int reps)
{
    eng_claq_packed p;
    eng_err err = {0};
    if (make_packed(rows, cols, frac4, low, 0, &p, &err)) {
        fprintf(stderr, "bench_cpu_gemv: %s\n", err.msg);
        return 1;
    }
    kern_claq v = p.view;
    int64_t cp = v.cols_pad;
    float *x = malloc(sizeof(float) * (size_t)cols), *xs = malloc(sizeof(float) * (size_t)cp);
    float *lut = malloc(sizeof(float) * (size_t)cp * 16);
    float *y = malloc(sizeof(float) * KERN_CPU_CLAQ_GEMV_TILES * KERN_CLAQ_ROW_TILE);
    hbuf hb = {0};
    int rc = 1;
    if (!x || !xs || !lut || !y || hbuf_alloc(&hb, p.buf_size, 1)) {
        fprintf(stderr, "bench_cpu_gemv: out of memory\n");
        goto done;
    }
    memcpy(hb.p, p.buf, p.buf_size);
    size_t codes_at = (size_t)((const char *)p.view.codes - (const char *)p.buf);
    v.codes = (const uint32_t *)((const char *)hb.p + codes_at);
    kern_claq_fns f = kern_cpu__claq_fns(kern_cpu_detect_isa());
    for (int64_t j = 0; j < cols; j++) x[j] = (float)((int)(xr() % 2001) - 1000) * 1e-3f;
    f.lut(&v, x, xs, lut);
    double best = 1e30, best_cpu = 1e30;
    for (int r = 0; r <= reps; r++) {   /* pass 0 warms up */
        double t0 = now_s(), c0 = cpu_s();
        for (int64_t t = 0; t < v.n_tiles; t += KERN_CPU_CLAQ_GEMV_TILES)
            f.gemv(&v, lut, 1, t, t + KERN_CPU_CLAQ_GEMV_TILES < v.n_tiles ?
                   t + KERN_CPU_CLAQ_GEMV_TILES : v.n_tiles, y);
        double t = now_s() - t0, c = cpu_s() - c0;
        if (r && t < best) best = t;
        if (r && c < best_cpu) best_cpu = c;
    }
    double codes_mib = (double)(v.rows_pad * v.words_per_row * 4) / 1048576.0;
    double w = (double)(v.rows_pad * cp);
    printf("| %s b %lldx%lld | %.1f MiB | %.1f | %.1f | %.1f | %.1f |\n", name, (long long)rows,
           (long long)cols, codes_mib, best * 1e6, w / best / 1e9, w / best_cpu / 1e9,
           (double)(v.rows_pad * v.words_per_row * 4) / best / 1e9);
    rc = 0;
done:
    free(x);
    free(xs);
    free(lut);
    free(y);
    hbuf_free(&hb);
    eng_claq_packed_free(&p);
    return rc;
}

static int bench_kernel(int reps)
{
    kern_isa isa = kern_cpu_detect_isa();
    printf("bench_cpu_gemv --kernel: the %s tile kernel alone, 1 thread, batch 1; weights count "
           "padding (storage columns x padded rows); synthetic weights, speed only\n",
           kern_isa_name(isa));
    double load[3] = {0};
    if (getloadavg(load, 3) == 3)
        printf("load average at start: %.2f %.2f %.2f\n", load[0], load[1], load[2]);
    printf("\n| matrix | codes | time us | Gweights/s (wall) | Gweights/s (thread CPU) "
           "| code GB/s |\n|---|---|---|---|---|---|\n");
    static const struct { const char *name; double frac4; int low; } qs[3] = {
        {"2.1", 0.05, 2}, {"3", 0.0, 3}, {"4", 1.0, 2}};
    for (int qi = 0; qi < 3; qi++) {
        /* 256 x 4096: codes + LUT (256 KiB) < 1 MiB (L2); the other two stream from L3 / DRAM,
         * 11008 x 4096 with the same LUT, 4096 x 11008 with a 688 KiB one. */
        if (bench_kernel_case(qs[qi].name, 256, 4096, qs[qi].frac4, qs[qi].low, reps * 20) ||
            bench_kernel_case(qs[qi].name, 11008, 4096, qs[qi].frac4, qs[qi].low, reps) ||
            bench_kernel_case(qs[qi].name, 4096, 11008, qs[qi].frac4, qs[qi].low, reps))
            return 1;
    }
    return 0;
}

/* Product-and-sum peak of one core: 12 independent chains of vmulps + vaddps (what the kernels
 * execute; on Zen 4/5 the same rate as vfmadd, on the FMUL and FADD pipes), in the widest
 * vectors the ISA the kernels run has: zmm on AVX-512, ymm on AVX2. */
#define PEAK_BODY(VEC, SET1, ADD, MUL, LANES, REDUCE)                                              \
    VEC a[12], b = SET1(0.9999f), c = SET1(1e-4f);                                                  \
    for (int i = 0; i < 12; i++) a[i] = SET1((float)i * 1e-3f);                                     \
    const long n = 50000000;                                                                       \
    double best = 1e30;                                                                            \
    for (int r = 0; r < 3; r++) {                                                                  \
        double t0 = now_s();                                                                       \
        for (long i = 0; i < n; i++)                                                               \
            _Pragma("GCC unroll 12") for (int k = 0; k < 12; k++) a[k] = ADD(a[k], MUL(b, c));     \
        __asm__ volatile("" : "+x"(b));   /* keeps the products in the loop */                     \
        double t = now_s() - t0;                                                                   \
        if (t < best) best = t;                                                                    \
    }                                                                                              \
    float sum = 0;                                                                                 \
    for (int i = 0; i < 12; i++) sum += REDUCE(a[i]);                                              \
    if (sum == 12345.0f) printf(" ");   /* keeps the chains alive */                               \
    return (double)n * 12 * LANES / best;

__attribute__((target("avx512f,fma"))) static double peak_pairs_avx512(void)
{
    PEAK_BODY(__m512, _mm512_set1_ps, _mm512_add_ps, _mm512_mul_ps, 16, _mm512_reduce_add_ps)
}

__attribute__((target("avx2,fma"))) static float reduce8(__m256 v)
{
    float f[8];
    _mm256_storeu_ps(f, v);
    return f[0] + f[1] + f[2] + f[3] + f[4] + f[5] + f[6] + f[7];
}

__attribute__((target("avx2,fma"))) static double peak_pairs_avx2(void)
{
    PEAK_BODY(__m256, _mm256_set1_ps, _mm256_add_ps, _mm256_mul_ps, 8, reduce8)
}
#undef PEAK_BODY

static double mul_add_peak_pairs(kern_isa isa)
{
    if (isa == KERN_ISA_AVX512) return peak_pairs_avx512();
    if (isa == KERN_ISA_AVX2) return peak_pairs_avx2();
    return 0;
}

/* --gemm: the whole packed matmul (dispatcher, tables, kernels, pool) at batch n. */
static int bench_gemm(int reps)
{
    kern_isa isa = kern_cpu_detect_isa();
    double load[3] = {0};
    if (getloadavg(load, 3) == 3)
        printf("load average at start: %.2f %.2f %.2f\n", load[0], load[1], load[2]);
    double peak = mul_add_peak_pairs(isa);
    int bf16 = kern_cpu_has_bf16(isa);
    printf("bench_cpu_gemv --gemm: packed 3-bit matmul, %s kernels; fp32 mul+add peak of one core "
           "%.1f G pairs/s (measured now); bf16 columns: %s\n\n| matrix | tokens | threads | "
           "time ms | G pairs/s | %% of peak | bf16 ms | bf16 G pairs/s | bf16 speed-up |\n"
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n", kern_isa_name(isa), peak / 1e9,
           bf16 ? "the bfloat16 prefill GEMM, same inputs" : "none (no AVX512_BF16)");
    static const int64_t shapes[3][2] = {{2048, 2048}, {5632, 2048}, {2048, 5632}};
    static const int toks[5] = {1, 8, 64, 256, 512};
    for (int si = 0; si < 3; si++) {
        eng_claq_packed p;
        eng_err err = {0};
        if (make_packed(shapes[si][0], shapes[si][1], 0.0, 3, 0, &p, &err)) {
            fprintf(stderr, "bench_cpu_gemv: %s\n", err.msg);
            return 1;
        }
        const int64_t rows = shapes[si][0], cols = shapes[si][1];
        float *x = malloc(sizeof(float) * (size_t)(512 * cols));
        float *y = malloc(sizeof(float) * (size_t)(512 * rows));
        if (!x || !y) return 1;
        for (int64_t i = 0; i < 512 * cols; i++) x[i] = (float)((int)(i % 2001) - 1000) * 1e-3f;
        for (int th = 1; th <= 2; th++) {
            kern_pool *pool = NULL;
            if (kern_pool_create(&pool, th)) return 1;
            /* scratch sized for 512 tokens and allocated once, as the backend keeps its own */
            int64_t shf = kern_cpu__claq_shared_floats(&p.view, 512);
            if (kern_cpu__claq_bf16_shared_floats(&p.view, 512) > shf)
                shf = kern_cpu__claq_bf16_shared_floats(&p.view, 512);
            float *shared = malloc(sizeof(float) * (size_t)shf);
            float *priv[2] = {NULL, NULL};
            for (int i = 0; i < th; i++)
                priv[i] = malloc(sizeof(float) *
                                 (size_t)kern_cpu__claq_priv_floats(&p.view, 512));
            if (!shared || !priv[0] || (th == 2 && !priv[1])) return 1;
            for (int ti = 0; ti < 5; ti++) {
                int n = toks[ti];
                double best = 1e30, best_bf = 1e30;
                int rr = n >= 64 ? (reps + 9) / 10 : reps;
                for (int r = 0; r <= rr; r++) {   /* pass 0 warms up; fp32 and bf16 alternate */
                    double t0 = now_s();
                    if (kern_cpu__claq_matmul_run(isa, pool, th, shared, priv, &p.view, x, n, y))
                        return 1;
                    double t = now_s() - t0;
                    if (r && t < best) best = t;
                    if (!bf16) continue;
                    t0 = now_s();
                    if (kern_cpu__claq_matmul_bf16_run(kern_cpu__claq_bf16_fns(1), pool, th,
                                                       shared, priv, &p.view, x, n, y))
                        return 1;
                    t = now_s() - t0;
                    if (r && t < best_bf) best_bf = t;
                }
                double pairs = (double)rows * (double)cols * n / best;
                printf("| %lldx%lld | %d | %d | %.3f | %.1f | %.0f |", (long long)rows,
                       (long long)cols, n, th, best * 1e3, pairs / 1e9,
                       peak > 0 ? 100.0 * pairs / (peak * th) : 0.0);
                if (bf16)
                    printf(" %.3f | %.1f | %.2f |\n", best_bf * 1e3,
                           (double)rows * (double)cols * n / best_bf / 1e9, best / best_bf);
                else
                    printf(" | | |\n");
            }
            kern_pool_destroy(pool);
            free(shared);
            free(priv[0]);
            free(priv[1]);
        }
        free(x);
        free(y);
        eng_claq_packed_free(&p);
    }
    return 0;
}

int main(int argc, char **argv)
{
    claq_arg spec[] = {
        {"--reps", 1, NULL, "timed repetitions per case, best is reported (default 30)"},
        {"--bw-mib", 1, NULL, "size of the bandwidth buffers in MiB (default 1024)"},
        {"--quant", 1, NULL, "only this packed case: 2.1, 2.1+1%OR, 3 or 4 (default all)"},
        {"--no-dense", 0, NULL, "skip the dense FP32 / FP16 rows"},
        {"--kernel", 0, NULL, "time the tile kernel alone (L2-resident vs streaming), then stop"},
        {"--bw-only", 0, NULL, "print the streaming read bandwidth (1 and 2 threads), then stop"},
        {"--gemm", 0, NULL, "time the packed matmul at batch 1-512 against the core's peak, then stop"},
        {"--help", 0, NULL, "this text"},
    };
    const int ns = (int)(sizeof spec / sizeof spec[0]);
    if (claq_args_parse("bench_cpu_gemv", spec, ns, argc - 1, argv + 1)) return 2;
    if (claq_arg_get(spec, ns, "--help")) {
        claq_args_usage("bench_cpu_gemv",
                        "[--reps N] [--bw-mib N] [--quant Q] [--no-dense] [--kernel] [--bw-only] "
                        "[--gemm]",
                        spec, ns);
        return 0;
    }
    long long reps = 30, mib = 1024;
    const char *v;
    if ((v = claq_arg_get(spec, ns, "--reps")) && claq_parse_int("--reps", v, 1, 100000, &reps)) return 2;
    if ((v = claq_arg_get(spec, ns, "--bw-mib")) &&
        claq_parse_int("--bw-mib", v, 64, 16384, &mib))
        return 2;
    if (claq_arg_get(spec, ns, "--kernel")) return bench_kernel((int)reps);
    if (claq_arg_get(spec, ns, "--gemm")) return bench_gemm((int)reps);
    const char *only = claq_arg_get(spec, ns, "--quant");
    if (only && strcmp(only, "2.1") && strcmp(only, "2.1+1%OR") && strcmp(only, "3") &&
        strcmp(only, "4")) {
        fprintf(stderr, "bench_cpu_gemv: --quant must be 2.1, 2.1+1%%OR, 3 or 4, not '%s'\n",
                only);
        return 2;
    }
    int dense = claq_arg_get(spec, ns, "--no-dense") == NULL;

    printf("bench_cpu_gemv — synthetic random weights: numbers speak to speed only, never quality\n");
    double load[3] = {0};
    if (getloadavg(load, 3) == 3)
        printf("load average at start: %.2f %.2f %.2f (other processes share these cores)\n", load[0],
               load[1], load[2]);
    size_t bwn = (size_t)mib << 20;
    hbuf b4k = {0}, bhp = {0};
    if (hbuf_alloc(&b4k, bwn, 0) || hbuf_alloc(&bhp, bwn, 1)) {
        fprintf(stderr, "bench_cpu_gemv: cannot allocate 2 x %lld MiB\n", mib);
        return 1;
    }
    double ceil4k[3] = {0}, ceilhp[3] = {0};
    for (int t = 1; t <= 2; t++) {
        kern_pool *pool = NULL;
        if (kern_pool_create(&pool, t)) return 1;
        ceil4k[t] = read_bw(pool, t, b4k.p, bwn, 10);
        ceilhp[t] = read_bw(pool, t, bhp.p, bwn, 10);
        kern_pool_destroy(pool);
        printf("read bandwidth, %d thread%s: %.1f GB/s with 4 KiB pages, %.1f GB/s with 2 MiB pages\n",
               t, t > 1 ? "s" : "", ceil4k[t], ceilhp[t]);
    }
    hbuf_free(&b4k);
    hbuf_free(&bhp);
    if (claq_arg_get(spec, ns, "--bw-only")) return 0;

    static const int64_t shapes[3][2] = {{4096, 4096}, {11008, 4096}, {4096, 11008}};
    static const struct { const char *name; double frac4; int low, out_pct; } qs[4] = {
        {"2.1", 0.05, 2, 0}, {"2.1+1%OR", 0.05, 2, 1}, {"3", 0.0, 3, 0}, {"4", 1.0, 2, 0}};
    printf("\n| matrix (rows x cols) | weights | threads | time us | GB/s | Gweights/s | "
           "vs 4K ceiling | vs huge-page ceiling | bytes/weight |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    for (int si = 0; si < 3; si++) {
        int64_t rows = shapes[si][0], cols = shapes[si][1];
        float *x = malloc(sizeof(float) * (size_t)cols), *y = malloc(sizeof(float) * (size_t)rows);
        for (int64_t j = 0; j < cols; j++) x[j] = (float)((int)(xr() % 2001) - 1000) * 1e-3f;
        for (int qi = 0; qi < 4; qi++) {
            if (only && strcmp(only, qs[qi].name) != 0) continue;
            eng_claq_packed p;
            eng_err err = {0};
            if (make_packed(rows, cols, qs[qi].frac4, qs[qi].low, qs[qi].out_pct, &p, &err)) {
                fprintf(stderr, "bench_cpu_gemv: %s\n", err.msg);
                return 1;
            }
            hbuf hb = {0};
            if (hbuf_alloc(&hb, p.buf_size, 1)) return 1;
            memcpy(hb.p, p.buf, p.buf_size);
            kern_claq view = p.view;
            /* Same layout, moved into the huge-page copy. */
            const char *from = p.buf, *to = hb.p;
#define MOVE(f) view.f = view.f ? (const void *)(to + ((const char *)view.f - from)) : NULL
            MOVE(colmap); MOVE(cb); MOVE(codes); MOVE(out_rowptr); MOVE(out_col16);
            MOVE(out_col32); MOVE(out_val); MOVE(out_delta);
#undef MOVE
            double bytes = 0;
            for (int s = 0; s < ENG_CLAQ_NSEC; s++) bytes += (double)p.sec_len[s];
            kern_matrix w = {.dtype = KERN_CLAQ, .rows = rows, .cols = cols, .claq = &view};
            for (int t = 1; t <= 2; t++) {
                kern_backend be = {0};
                if (kern_cpu_backend_create(&be, t)) return 1;
                double s = time_matmul(&be, &w, x, y, (int)reps);
                double gbs = bytes / s / 1e9;
                printf("| claq %s b (%s) %lldx%lld | %.2e | %d | %.1f | %.1f | %.1f | %.0f %% "
                       "| %.0f %% | %.3f |\n",
                       qs[qi].name, kern_cpu_isa_name(&be), (long long)rows, (long long)cols,
                       (double)(rows * cols), t, s * 1e6, gbs, (double)(rows * cols) / s / 1e9,
                       100.0 * gbs / ceil4k[t], 100.0 * gbs / ceilhp[t],
                       bytes / (double)(rows * cols));
                kern_backend_destroy(&be);
            }
            hbuf_free(&hb);
            eng_claq_packed_free(&p);
        }
        for (int dt = 0; dt < 2 * dense; dt++) {
            kern_dtype d = dt ? KERN_F16 : KERN_F32;
            size_t nb = (size_t)(rows * cols) * kern_dtype_size(d);
            hbuf hb = {0};
            if (hbuf_alloc(&hb, nb, 1)) return 1;
            if (d == KERN_F16) {
                uint16_t *h = hb.p;
                for (int64_t i = 0; i < rows * cols; i++) h[i] = kern_f32_to_f16((float)(i % 97) * 1e-3f);
            } else {
                float *f = hb.p;
                for (int64_t i = 0; i < rows * cols; i++) f[i] = (float)(i % 97) * 1e-3f;
            }
            kern_matrix w = {.dtype = d, .rows = rows, .cols = cols, .data = hb.p};
            for (int t = 1; t <= 2; t++) {
                kern_backend be = {0};
                if (kern_cpu_backend_create(&be, t)) return 1;
                double s = time_matmul(&be, &w, x, y, (int)reps < 10 ? (int)reps : 10);
                double gbs = (double)nb / s / 1e9;
                printf("| dense %s %lldx%lld | %.2e | %d | %.1f | %.1f | %.1f | %.0f %% | %.0f %% "
                       "| %.3f |\n",
                       kern_dtype_name(d), (long long)rows, (long long)cols, (double)(rows * cols), t,
                       s * 1e6, gbs, (double)(rows * cols) / s / 1e9, 100.0 * gbs / ceil4k[t],
                       100.0 * gbs / ceilhp[t], (double)kern_dtype_size(d));
                kern_backend_destroy(&be);
            }
            hbuf_free(&hb);
        }
        free(x);
        free(y);
    }
    return 0;
}
