/* bench_quant_matrix.c — times one matrix through the quantizer (eng_quant_matrix) on synthetic
 * data and prints its GPTQ loss: the evidence for choosing a K-Means solver (--kmeans), and a
 * profile target for the column loop without the forward passes. A benchmark, not a test.
 * W is heavy-tailed (Student-t 3), H = 2/S X^T X from S tokens of inputs whose channels have
 * log-normal scales and a shared low-rank component, like real activations. Single thread drives
 * it; BLAS and the quantizer's pool use their own.
 * H is float and mirrored, as the pipeline passes it (eng_quant_matrix_f32).
 * Usage: bench_quant_matrix ROWS COLS [--tokens N] [--bits B] [--method gptq|claq]
 *        [--kmeans optimal|exact|lloyd|plusplus] [--threads N] [--seed S] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "quant.h"

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

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s ROWS COLS [--tokens N] [--bits B] [--method gptq|claq] "
                "[--kmeans optimal|exact|lloyd|plusplus] [--threads N] [--seed S]\n", argv[0]);
        return 2;
    }
    int64_t rows = atoll(argv[1]), cols = atoll(argv[2]), tokens = 4096;
    int threads = 1;
    eng_quant_cfg cfg;
    eng_quant_cfg_default(&cfg);
    cfg.bits = 3;
    for (int i = 3; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--tokens")) tokens = atoll(v);
        else if (!strcmp(k, "--bits")) cfg.bits = atof(v);
        else if (!strcmp(k, "--threads")) threads = atoi(v);
        else if (!strcmp(k, "--seed")) cfg.seed = (uint64_t)atoll(v);
        else if (!strcmp(k, "--method"))
            cfg.method = !strcmp(v, "gptq") ? ENG_QUANT_GPTQ : ENG_QUANT_CLAQ;
        else if (!strcmp(k, "--kmeans")) {
            if (eng_kmeans_init_parse(v, &cfg.kinit)) {
                fprintf(stderr, "unknown --kmeans %s\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "unknown option %s\n", k);
            return 2;
        }
    }
    rng r = {0x5eed};
    float *W = malloc(sizeof(float) * (size_t)(rows * cols));
    float *X = malloc(sizeof(float) * (size_t)(tokens * cols));
    float *Hf = calloc((size_t)(cols * cols), sizeof(float));
    float *H = malloc(sizeof(float) * (size_t)(cols * cols));
    float *scale = malloc(sizeof(float) * (size_t)cols), *dir = malloc(sizeof(float) * (size_t)cols);
    if (!W || !X || !Hf || !H || !scale || !dir) return 1;
    for (int64_t i = 0; i < rows * cols; i++) {
        double g = rng_gauss(&r), c = 0;
        for (int t = 0; t < 3; t++) { double z = rng_gauss(&r); c += z * z; }
        W[i] = (float)(0.02 * g / sqrt(c / 3));
    }
    for (int64_t j = 0; j < cols; j++) {
        scale[j] = (float)exp(0.7 * rng_gauss(&r));
        dir[j] = (float)rng_gauss(&r);
    }
    for (int64_t t = 0; t < tokens; t++) {
        double shared = rng_gauss(&r);
        for (int64_t j = 0; j < cols; j++)
            X[t * cols + j] = scale[j] * (float)(rng_gauss(&r) + 0.5 * shared * dir[j]);
    }
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)cols, (int)tokens, 1.0f, X, (int)cols,
                0.0f, Hf, (int)cols);
    for (int64_t i = 0; i < cols; i++)
        for (int64_t j = i; j < cols; j++)
            H[i * cols + j] = H[j * cols + i] = (float)(2.0 / (double)tokens) * Hf[i * cols + j];
    free(X);
    free(Hf);
    kern_pool *pool = NULL;
    if (threads > 1 && kern_pool_create(&pool, threads)) return 1;
    cfg.pool = pool;
    eng_qmatrix q = {0};
    eng_quant_mstats st = {0};
    eng_err err = {0};
    double t0 = now_s(), c0 = cpu_s();
    if (eng_quant_matrix_f32(W, rows, cols, H, NULL, &cfg, &q, NULL, &st, &err)) {
        fprintf(stderr, "quantize: %s\n", err.msg);
        return 1;
    }
    printf("%s %g bits kmeans=%s [%lldx%lld] gptq-loss %.6g rel-err %.4e wall %.2fs cpu %.2fs "
           "(prep %.2fs, loop %.2fs, kmeans %.2fs)\n", eng_quant_method_name(cfg.method),
           cfg.bits, eng_kmeans_init_name(cfg.kinit), (long long)rows, (long long)cols, st.loss,
           st.rel_err, now_s() - t0, cpu_s() - c0, st.t_prep, st.t_loop, st.t_kmeans);
    eng_qmatrix_free(&q);
    free(W);
    free(H);
    free(scale);
    free(dir);
    kern_pool_destroy(pool);
    return 0;
}
