/* cuda_bench.cu — GPU benchmark of the CUDA backend (not a test; cuda_bench.sh builds and runs
 * it on a machine with a GPU). It calls the backend's device-pointer entry points directly
 * (kern_cuda_impl.h), so no host staging is timed. Timing: CUDA events around many calls, weights
 * rotated among copies whose total exceeds 3x the L2 cache (METHOD.md), inputs random.
 * Prints, for LLaMA-7B shapes at 2.1 / 3 / 4 bits per column (0.5 % outliers):
 *   1. device copy bandwidth (bytes read + written), the floor's denominator;
 *   2. CLAQ GEMV (n = 1, 8): time, achieved GB/s of weight bytes, % of copy bandwidth, and the
 *      ratio to cuBLAS fp16 GEMV (GemmEx, n = 1 / 8) on the same shape;
 *   3. matmul-only decode of a synthetic LLaMA-7B-shaped CLAQ model (32 layers x 7 linears +
 *      fp16 lm_head 32000 x 4096) at batch 1, 8, 32 (GEMV) and 32, 64 (tensor-core GEMM, "mma"):
 *      tokens/s eager and replayed as a CUDA graph, against the bandwidth floor (all weight
 *      bytes / copy bandwidth per step);
 *   4. prefill (n = 512): CLAQ dequant + cuBLAS and the tensor-core GEMM vs cuBLAS fp16 on the
 *      7 layer shapes;
 *   5. decode attention over an fp16 paged pool (7B heads) at batch 1/8/32 and contexts up to
 *      4096: us per layer and K/V bytes read against the copy bandwidth;
 *   6. prefill attention of one sequence (128 / 512 / 2048 tokens, MHA and 8 KV heads): one
 *      token per block against tiles of tokens sharing their K/V reads (kern_attn_args.n_seqs).
 * Norms and the rest of the step are not in these numbers (`cuda_bench.sh step` times the whole
 * device-resident step). Single-threaded host; one device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_fp16.h>

#include "kern_cuda_impl.h"
extern "C" {
#include "eng_claq_file.h"
#include "eng_qmatrix.h"
}
#include "kern_half.h"

#define BENCH_CHECK(stmt)                                                                     \
    do {                                                                                      \
        cudaError_t e_ = (stmt);                                                              \
        if (e_ != cudaSuccess) {                                                              \
            fprintf(stderr, "%s failed: %s (%s:%d)\n", #stmt, cudaGetErrorString(e_),          \
                    __FILE__, __LINE__);                                                      \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)
#define BENCH_OK(expr, ctx)                                                                   \
    do {                                                                                      \
        int rc_ = (expr);                                                                     \
        if (rc_) {                                                                            \
            fprintf(stderr, "%s failed: %s [%s] (%s:%d)\n", #expr, kern_strerror(rc_),        \
                    (ctx)->err, __FILE__, __LINE__);                                          \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
static float frnd(void) { return (float)(rnd() >> 8) / 16777216.0f * 2.0f - 1.0f; }

/* bits: 21 -> 95 % 2-bit + 5 % 4-bit columns (2.1 average), else all columns `bits`. */
static void make_packed(int64_t rows, int64_t cols, int bits, eng_claq_packed *p)
{
    eng_qmatrix q;
    eng_err err;
    memset(&err, 0, sizeof err);
    if (eng_qmatrix_alloc(&q, rows, cols, NULL)) exit(1);
    for (int64_t j = 0; j < cols; j++) {
        const int b = bits == 21 ? (rnd() % 100 < 5 ? 4 : 2) : bits;
        q.bits[j] = (uint8_t)b;
        const int K = 1 << b;
        for (int e = 0; e < ENG_QM_CB; e++) {
            const int ee = e < K ? e : K - 1;
            q.codebook[j * ENG_QM_CB + e] = kern_f32_to_f16(0.02f * (2.0f * ee / (K - 1) - 1.0f));
        }
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++)
            q.codes[r * cols + j] = (uint8_t)(rnd() & ((1u << q.bits[j]) - 1));
    for (int64_t j = 0; j < cols; j++)
        for (int64_t r = 0; r < rows; r++)
            if (rnd() % 200 == 0 &&
                eng_qmatrix_add_outlier(&q, (uint32_t)r, (uint32_t)j, kern_f32_to_f16(frnd() * 0.5f)))
                exit(1);
    if (eng_claq_pack(&q, "bench", p, &err)) {
        fprintf(stderr, "pack: %s\n", err.msg);
        exit(1);
    }
    eng_qmatrix_free(&q);
}

/* Bytes a GEMV must read of the weight (codes, codebooks, colmap, outlier CSR + deltas). */
static double claq_bytes(const kern_claq *k)
{
    return (double)k->rows_pad * k->words_per_row * 4 + (double)kern_claq_cb_entries(k) * 2 +
           (double)k->cols_pad * 4 + (double)(k->rows + 1) * 4 + (double)k->nnz * 8;
}

static kern_cuda_ctx *C;
static kern_backend B;

static float *dev_random(size_t n)
{
    float *h = (float *)malloc(n * sizeof(float)), *d = NULL;
    for (size_t i = 0; i < n; i++) h[i] = frnd();
    BENCH_CHECK(cudaMalloc(&d, n * sizeof(float)));
    BENCH_CHECK(cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice));
    free(h);
    return d;
}

static __half *dev_random_f16(size_t n)
{
    uint16_t *h = (uint16_t *)malloc(n * 2);
    __half *d = NULL;
    for (size_t i = 0; i < n; i++) h[i] = kern_f32_to_f16(frnd() * 0.02f);
    BENCH_CHECK(cudaMalloc(&d, n * 2));
    BENCH_CHECK(cudaMemcpy(d, h, n * 2, cudaMemcpyHostToDevice));
    free(h);
    return d;
}

static cudaEvent_t ev0, ev1;
static float elapsed_ms(void)
{
    float ms = 0;
    BENCH_CHECK(cudaEventSynchronize(ev1));
    BENCH_CHECK(cudaEventElapsedTime(&ms, ev0, ev1));
    return ms;
}

static double copy_bandwidth(void)
{
    const size_t bytes = (size_t)1 << 30;
    void *a = NULL, *b = NULL;
    BENCH_CHECK(cudaMalloc(&a, bytes));
    BENCH_CHECK(cudaMalloc(&b, bytes));
    BENCH_CHECK(cudaMemset(a, 1, bytes));
    for (int i = 0; i < 3; i++) BENCH_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, C->stream));
    const int it = 20;
    BENCH_CHECK(cudaEventRecord(ev0, C->stream));
    for (int i = 0; i < it; i++)
        BENCH_CHECK(cudaMemcpyAsync(i & 1 ? a : b, i & 1 ? b : a, bytes, cudaMemcpyDeviceToDevice, C->stream));
    BENCH_CHECK(cudaEventRecord(ev1, C->stream));
    const double s = elapsed_ms() / 1e3 / it;
    BENCH_CHECK(cudaFree(a));
    BENCH_CHECK(cudaFree(b));
    return 2.0 * bytes / s / 1e9;
}

/* cuBLAS fp16 GEMV/GEMM: y[n][rows] = x16[n][cols] W16^T, fp32 out. */
static void fp16_gemm(const __half *w, const __half *x, float *y, int rows, int cols, int n)
{
    const float one = 1.0f, zero = 0.0f;
    if (cublasGemmEx(C->cublas, CUBLAS_OP_T, CUBLAS_OP_N, rows, n, cols, &one, w, CUDA_R_16F, cols,
                     x, CUDA_R_16F, cols, &zero, y, CUDA_R_32F, rows, CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "cublasGemmEx failed\n");
        exit(1);
    }
}

static const char *bits_name(int b) { return b == 21 ? "2.1" : b == 3 ? "3" : "4"; }

static void bench_gemv(double bw, size_t l2, int iters)
{
    const int shapes[3][2] = {{4096, 4096}, {11008, 4096}, {4096, 11008}};
    const int bits[3] = {21, 3, 4};
    printf("\n## CLAQ GEMV vs cuBLAS fp16 (LLaMA-7B shapes, weights rotated over > 3x L2)\n");
    printf("| shape | bits | n | claq us | weight GB/s | %% of copy bw | fp16 us | speedup |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    for (int s = 0; s < 3; s++)
        for (int bi = 0; bi < 3; bi++) {
            const int rows = shapes[s][0], cols = shapes[s][1];
            eng_claq_packed p;
            memset(&p, 0, sizeof p);
            make_packed(rows, cols, bits[bi], &p);
            const double wb = claq_bytes(&p.view);
            int R = (int)ceil(3.0 * (double)l2 / wb) + 1;
            if (R < 2) R = 2;
            kern_matrix *m = (kern_matrix *)calloc((size_t)R, sizeof *m);
            for (int r = 0; r < R; r++) {
                m[r] = (kern_matrix){KERN_CLAQ, rows, cols, NULL, &p.view, NULL};
                BENCH_OK(kern_upload(&B, &m[r]), C);
            }
            const double fb = 2.0 * rows * cols;
            int R16 = (int)ceil(3.0 * (double)l2 / fb) + 1;
            if (R16 < 2) R16 = 2;
            __half **w16 = (__half **)calloc((size_t)R16, sizeof *w16);
            for (int r = 0; r < R16; r++) w16[r] = dev_random_f16((size_t)rows * cols);
            float *x = dev_random((size_t)8 * cols), *y = NULL;
            __half *x16 = dev_random_f16((size_t)8 * cols);
            BENCH_CHECK(cudaMalloc(&y, sizeof(float) * 8 * rows));
            const int ns[2] = {1, 8};
            for (int ni = 0; ni < 2; ni++) {
                const int n = ns[ni];
                for (int i = 0; i < 3; i++)
                    BENCH_OK(kern_cuda__gemv_claq(C, (const kern_cuda_weight *)m[i % R].dev, x, n, y, 0), C);
                BENCH_CHECK(cudaEventRecord(ev0, C->stream));
                for (int i = 0; i < iters; i++)
                    BENCH_OK(kern_cuda__gemv_claq(C, (const kern_cuda_weight *)m[i % R].dev, x, n, y, 0), C);
                BENCH_CHECK(cudaEventRecord(ev1, C->stream));
                const double us = elapsed_ms() * 1e3 / iters;
                for (int i = 0; i < 3; i++) fp16_gemm(w16[i % R16], x16, y, rows, cols, n);
                BENCH_CHECK(cudaEventRecord(ev0, C->stream));
                for (int i = 0; i < iters; i++) fp16_gemm(w16[i % R16], x16, y, rows, cols, n);
                BENCH_CHECK(cudaEventRecord(ev1, C->stream));
                const double us16 = elapsed_ms() * 1e3 / iters;
                const double gbs = wb / (us * 1e-6) / 1e9;
                printf("| %dx%d | %s | %d | %.2f | %.0f | %.1f | %.2f | %.2fx |\n", rows, cols,
                       bits_name(bits[bi]), n, us, gbs, 100.0 * gbs / bw, us16, us16 / us);
            }
            for (int r = 0; r < R; r++) kern_release(&B, &m[r]);
            for (int r = 0; r < R16; r++) BENCH_CHECK(cudaFree(w16[r]));
            BENCH_CHECK(cudaFree(x));
            BENCH_CHECK(cudaFree(x16));
            BENCH_CHECK(cudaFree(y));
            free(m);
            free(w16);
            eng_claq_packed_free(&p);
        }
}

/* One matmul-only decode step of the synthetic model: 32 layers x 7 linears + the fp16 head. */
static void decode_step(kern_matrix *lin, const __half *head, float *x, __half *x16, float *y,
                        int n)
{
    for (int l = 0; l < 32; l++)
        for (int i = 0; i < 7; i++)
            BENCH_OK(kern_cuda__gemv_claq(C, (const kern_cuda_weight *)lin[l * 7 + i].dev, x, n, y, 0), C);
    fp16_gemm(head, x16, y, 32000, 4096, n);
}

static void bench_decode(double bw)
{
    const int shp[7][2] = {{4096, 4096}, {4096, 4096}, {4096, 4096}, {4096, 4096},
                           {11008, 4096}, {11008, 4096}, {4096, 11008}};
    const int bits[3] = {21, 3, 4};
    printf("\n## Matmul-only decode, synthetic LLaMA-7B CLAQ (32 x 7 linears + fp16 lm_head)\n");
    printf("| bits | batch | step ms eager | step ms graph | tok/s (graph) | floor tok/s | %% of floor |\n");
    printf("|---|---|---|---|---|---|---|\n");
    __half *head = dev_random_f16((size_t)32000 * 4096);
    float *x = dev_random((size_t)64 * 11008), *y = NULL;   /* batches up to 64 */
    __half *x16 = dev_random_f16((size_t)64 * 11008);
    BENCH_CHECK(cudaMalloc(&y, sizeof(float) * 64 * 32000));
    for (int bi = 0; bi < 3; bi++) {
        eng_claq_packed p[7];
        memset(p, 0, sizeof p);
        double bytes = 2.0 * 32000 * 4096;
        for (int i = 0; i < 7; i++) {
            make_packed(shp[i][0], shp[i][1], bits[bi], &p[i]);
            bytes += 32 * claq_bytes(&p[i].view);
        }
        kern_matrix *lin = (kern_matrix *)calloc(32 * 7, sizeof *lin);
        for (int l = 0; l < 32; l++)
            for (int i = 0; i < 7; i++) {
                lin[l * 7 + i] = (kern_matrix){KERN_CLAQ, shp[i][0], shp[i][1], NULL, &p[i].view, NULL};
                BENCH_OK(kern_upload(&B, &lin[l * 7 + i]), C);
            }
        /* batch 32 and 64 on the GEMV (chunks of 8 tokens) and on the tensor-core GEMM */
        const int batches[5] = {1, 8, 32, 32, 64}, mma[5] = {0, 0, 0, 9, 9};
        for (int k = 0; k < 5; k++) {
            const int n = batches[k];
            C->mma_min_n = mma[k];
            decode_step(lin, head, x, x16, y, n);   /* grows every staging slot before capture */
            BENCH_CHECK(cudaStreamSynchronize(C->stream));
            BENCH_CHECK(cudaEventRecord(ev0, C->stream));
            for (int it = 0; it < 5; it++) decode_step(lin, head, x, x16, y, n);
            BENCH_CHECK(cudaEventRecord(ev1, C->stream));
            const double eager = elapsed_ms() / 5;
            cudaGraph_t g;
            cudaGraphExec_t ge;
            BENCH_CHECK(cudaStreamBeginCapture(C->stream, cudaStreamCaptureModeThreadLocal));
            decode_step(lin, head, x, x16, y, n);
            BENCH_CHECK(cudaStreamEndCapture(C->stream, &g));
            BENCH_CHECK(cudaGraphInstantiate(&ge, g, 0));
            BENCH_CHECK(cudaGraphLaunch(ge, C->stream));
            BENCH_CHECK(cudaEventRecord(ev0, C->stream));
            for (int it = 0; it < 10; it++) BENCH_CHECK(cudaGraphLaunch(ge, C->stream));
            BENCH_CHECK(cudaEventRecord(ev1, C->stream));
            const double graph = elapsed_ms() / 10;
            BENCH_CHECK(cudaGraphExecDestroy(ge));
            BENCH_CHECK(cudaGraphDestroy(g));
            const double floor_ms = bytes / (bw * 1e9) * 1e3;
            printf("| %s | %d%s | %.3f | %.3f | %.0f | %.0f | %.1f |\n", bits_name(bits[bi]), n,
                   mma[k] ? " mma" : "", eager, graph, n / (graph * 1e-3), n / (floor_ms * 1e-3),
                   100.0 * floor_ms / graph);
        }
        C->mma_min_n = 0;
        for (int i = 0; i < 32 * 7; i++) kern_release(&B, &lin[i]);
        free(lin);
        for (int i = 0; i < 7; i++) eng_claq_packed_free(&p[i]);
    }
    BENCH_CHECK(cudaFree(head));
    BENCH_CHECK(cudaFree(x));
    BENCH_CHECK(cudaFree(x16));
    BENCH_CHECK(cudaFree(y));
}

static void bench_prefill(void)
{
    const int shp[3][2] = {{4096, 4096}, {11008, 4096}, {4096, 11008}};
    const int n = 512;
    printf("\n## Prefill n = %d: CLAQ 3-bit dequant + cuBLAS vs cuBLAS fp16 (layer = 4+2+1 of these)\n", n);
    printf("| shape | claq us (dequant + cuBLAS) | claq mma us | fp16 us | ratio | mma ratio |\n"
           "|---|---|---|---|---|---|\n");
    float *x = dev_random((size_t)n * 11008), *y = NULL;
    __half *x16 = dev_random_f16((size_t)n * 11008);
    BENCH_CHECK(cudaMalloc(&y, sizeof(float) * n * 11008));
    double tl = 0, tlm = 0, tl16 = 0;
    const int mult[3] = {4, 2, 1};
    for (int s = 0; s < 3; s++) {
        eng_claq_packed p;
        memset(&p, 0, sizeof p);
        make_packed(shp[s][0], shp[s][1], 3, &p);
        kern_matrix m = {KERN_CLAQ, shp[s][0], shp[s][1], NULL, &p.view, NULL};
        BENCH_OK(kern_upload(&B, &m), C);
        __half *w16 = dev_random_f16((size_t)shp[s][0] * shp[s][1]);
        const kern_cuda_weight *w = (const kern_cuda_weight *)m.dev;
        for (int i = 0; i < 2; i++) BENCH_OK(kern_cuda__gemm_prefill(C, w, x, n, y), C);
        BENCH_CHECK(cudaEventRecord(ev0, C->stream));
        for (int i = 0; i < 10; i++) BENCH_OK(kern_cuda__gemm_prefill(C, w, x, n, y), C);
        BENCH_CHECK(cudaEventRecord(ev1, C->stream));
        const double us = elapsed_ms() * 100;
        C->mma_min_n = 9;   /* the tensor-core GEMM and its split-K reduction */
        for (int i = 0; i < 2; i++) BENCH_OK(kern_cuda__gemv_claq(C, w, x, n, y, 0), C);
        BENCH_CHECK(cudaEventRecord(ev0, C->stream));
        for (int i = 0; i < 10; i++) BENCH_OK(kern_cuda__gemv_claq(C, w, x, n, y, 0), C);
        BENCH_CHECK(cudaEventRecord(ev1, C->stream));
        const double usm = elapsed_ms() * 100;
        C->mma_min_n = 0;
        for (int i = 0; i < 2; i++) fp16_gemm(w16, x16, y, shp[s][0], shp[s][1], n);
        BENCH_CHECK(cudaEventRecord(ev0, C->stream));
        for (int i = 0; i < 10; i++) fp16_gemm(w16, x16, y, shp[s][0], shp[s][1], n);
        BENCH_CHECK(cudaEventRecord(ev1, C->stream));
        const double us16 = elapsed_ms() * 100;
        printf("| %dx%d | %.1f | %.1f | %.1f | %.2fx | %.2fx |\n", shp[s][0], shp[s][1], us, usm,
               us16, us / us16, usm / us16);
        tl += mult[s] * us;
        tlm += mult[s] * usm;
        tl16 += mult[s] * us16;
        kern_release(&B, &m);
        BENCH_CHECK(cudaFree(w16));
        eng_claq_packed_free(&p);
    }
    printf("| layer (32 layers) | prefill %.0f tok/s | mma %.0f tok/s | fp16 %.0f tok/s | %.2fx | "
           "%.2fx |\n", n / (32 * tl * 1e-6), n / (32 * tlm * 1e-6), n / (32 * tl16 * 1e-6),
           tl / tl16, tlm / tl16);
    BENCH_CHECK(cudaFree(x));
    BENCH_CHECK(cudaFree(x16));
    BENCH_CHECK(cudaFree(y));
}

/* Decode attention of 32 query heads x 128 over an fp16 paged pool (16-token blocks, one layer's
 * view): MHA (LLaMA-7B) and GQA with 8 KV heads (LLaMA-3-8B), at batch 1/8/32 and contexts
 * 512/2048/4096: time per call and the K/V bytes it must read against the copy bandwidth (its
 * floor). Every sequence its own blocks. */
static void bench_attention_shape(double bw, int nkv);
static void bench_prefill_attention(int nkv);
static void bench_attention(double bw)
{
    for (int shape = 0; shape < 2; shape++) bench_attention_shape(bw, shape ? 8 : 32);
    for (int shape = 0; shape < 2; shape++) bench_prefill_attention(shape ? 8 : 32);
}

/* Device buffers of one attention case: an fp16 pool of nblocks blocks (table ids 0, 1, ...),
 * q and out for n tokens at positions h_pos, on table row 0 each (one_row) or row t (token t). */
typedef struct bench_attn {
    __half *k, *v;
    float *q, *o;
    int32_t *bt, *pos, *row;
} bench_attn;

static int32_t *dev_ints(const int32_t *h, size_t count)
{
    int32_t *d = NULL;
    BENCH_CHECK(cudaMalloc(&d, sizeof(int32_t) * count));
    BENCH_CHECK(cudaMemcpy(d, h, sizeof(int32_t) * count, cudaMemcpyHostToDevice));
    return d;
}

static bench_attn bench_attn_make(int nblocks, int64_t stride, int n, int nh, int hd,
                                  const int32_t *h_pos, int one_row)
{
    bench_attn b;
    b.k = dev_random_f16((size_t)nblocks * stride);
    b.v = dev_random_f16((size_t)nblocks * stride);
    b.q = dev_random((size_t)n * nh * hd);
    BENCH_CHECK(cudaMalloc(&b.o, sizeof(float) * (size_t)n * nh * hd));
    int32_t *h = (int32_t *)malloc(sizeof(int32_t) * (size_t)(nblocks > n ? nblocks : n));
    for (int i = 0; i < nblocks; i++) h[i] = i;
    b.bt = dev_ints(h, (size_t)nblocks);
    for (int t = 0; t < n; t++) h[t] = one_row ? 0 : t;
    b.row = dev_ints(h, (size_t)n);
    b.pos = dev_ints(h_pos, (size_t)n);
    free(h);
    return b;
}

static void bench_attn_free(bench_attn *b)
{
    void *p[] = {b->k, b->v, b->q, b->o, b->bt, b->pos, b->row};
    for (unsigned i = 0; i < sizeof p / sizeof p[0]; i++) BENCH_CHECK(cudaFree(p[i]));
}

/* A prompt of n tokens of one sequence (positions 0..n-1, causal): one token per block
 * (n_seqs = 0) against tiles of a sequence's tokens sharing their K/V reads (n_seqs = 1). */
static void bench_prefill_attention(int nkv)
{
    const int nh = 32, hd = 128, bt = 16, lens[3] = {128, 512, 2048};
    const int kv_dim = nkv * hd;
    printf("\n## Prefill attention, one sequence, 32 query heads x 128, %d KV heads, fp16 KV "
           "(one layer)\n", nkv);
    printf("| prompt | us, token per block | us, tiles | ratio |\n|---|---|---|---|\n");
    for (int li = 0; li < 3; li++) {
        const int n = lens[li], bps = n / bt;
        const int64_t stride = (int64_t)bt * kv_dim;
        int32_t *h_pos = (int32_t *)malloc(sizeof(int32_t) * (size_t)n);
        for (int t = 0; t < n; t++) h_pos[t] = t;
        bench_attn b = bench_attn_make(bps, stride, n, nh, hd, h_pos, 1);
        double us[2];
        for (int tiled = 0; tiled < 2; tiled++) {
            kern_attn_args a = {.n = n, .n_heads = nh, .n_kv_heads = nkv, .head_dim = hd,
                                .q = b.q, .out = b.o, .pos = b.pos, .bt = b.bt, .bt_row = b.row,
                                .bt_stride = bps, .kv_dtype = KERN_F16, .k_base = b.k,
                                .v_base = b.v, .block_stride = stride, .block_tokens = bt,
                                .max_pos = n, .n_seqs = tiled};
            for (int i = 0; i < 2; i++) BENCH_OK(kern_cuda__attention(C, &a), C);
            const int it = 10;
            BENCH_CHECK(cudaEventRecord(ev0, C->stream));
            for (int i = 0; i < it; i++) BENCH_OK(kern_cuda__attention(C, &a), C);
            BENCH_CHECK(cudaEventRecord(ev1, C->stream));
            us[tiled] = elapsed_ms() * 1e3 / it;
        }
        printf("| %d | %.1f | %.1f | %.2f |\n", n, us[0], us[1], us[0] / us[1]);
        bench_attn_free(&b);
        free(h_pos);
    }
}

static void bench_attention_shape(double bw, int nkv)
{
    const int nh = 32, hd = 128, bt = 16, ctxs[3] = {512, 2048, 4096}, batches[3] = {1, 8, 32};
    const int kv_dim = nkv * hd;
    printf("\n## Decode attention, 32 query heads x 128, %d KV heads, fp16 KV, 16-token blocks "
           "(one layer)\n", nkv);
    printf("| batch | context | us | KV GB/s | %% of copy bw |\n|---|---|---|---|---|\n");
    for (int ci = 0; ci < 3; ci++) {
        const int max_pos = ctxs[ci], bps = max_pos / bt;
        for (int bi = 0; bi < 3; bi++) {
            const int n = batches[bi], nblocks = n * bps;
            const int64_t stride = (int64_t)bt * kv_dim;
            int32_t *h_pos = (int32_t *)malloc(sizeof(int32_t) * (size_t)n);
            for (int t = 0; t < n; t++) h_pos[t] = max_pos - 1;
            bench_attn b = bench_attn_make(nblocks, stride, n, nh, hd, h_pos, 0);
            /* token t's row t: the table read from row t * bps */
            kern_attn_args a = {.n = n, .n_heads = nh, .n_kv_heads = nkv, .head_dim = hd,
                                .q = b.q, .out = b.o, .pos = b.pos, .bt = b.bt, .bt_row = NULL,
                                .bt_stride = bps, .kv_dtype = KERN_F16, .k_base = b.k,
                                .v_base = b.v, .block_stride = stride, .block_tokens = bt,
                                .max_pos = max_pos};
            for (int i = 0; i < 3; i++) BENCH_OK(kern_cuda__attention(C, &a), C);
            const int it = 50;
            BENCH_CHECK(cudaEventRecord(ev0, C->stream));
            for (int i = 0; i < it; i++) BENCH_OK(kern_cuda__attention(C, &a), C);
            BENCH_CHECK(cudaEventRecord(ev1, C->stream));
            const double us = elapsed_ms() * 1e3 / it;
            const double bytes = 2.0 * n * (double)max_pos * kv_dim * 2;   /* K and V, fp16 */
            const double gbs = bytes / (us * 1e-6) / 1e9;
            printf("| %d | %d | %.1f | %.0f | %.1f %% |\n", n, max_pos, us, gbs, 100.0 * gbs / bw);
            bench_attn_free(&b);
            free(h_pos);
        }
    }
}

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 200;
    if (iters < 1) iters = 1;
    int rc = kern_cuda_backend_create(&B, 0);
    if (rc) {
        char why[256] = "";
        kern_cuda_device_count(why, sizeof why);
        fprintf(stderr, "no CUDA backend: %s (%s)\n", kern_strerror(rc), why);
        return 77;
    }
    C = (kern_cuda_ctx *)B.ctx;
    cudaDeviceProp prop;
    BENCH_CHECK(cudaGetDeviceProperties(&prop, 0));
    BENCH_CHECK(cudaEventCreate(&ev0));
    BENCH_CHECK(cudaEventCreate(&ev1));
    const double bw = copy_bandwidth();
    printf("# claq CUDA bench: %s, %d SMs, L2 %d MiB, device copy %.0f GB/s (read + write)\n",
           prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20, bw);
    bench_gemv(bw, (size_t)prop.l2CacheSize, iters);
    bench_decode(bw);
    bench_prefill();
    bench_attention(bw);
    cudaEventDestroy(ev0);
    cudaEventDestroy(ev1);
    kern_backend_destroy(&B);
    return 0;
}
