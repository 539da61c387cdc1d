/* claq_quantize.c — `claq quantize`: FP checkpoint + calibration text -> packed CLAQ model.
 * Parses the flags, draws the calibration windows (eng_calib_load), runs the layer-by-layer
 * pipeline (eng_quant_model; progress on stderr) and hands the quantized linears to the packed
 * format writer (eng_claq_write). Single-threaded front end; the CPU backend, BLAS and the
 * quantizer's kern_pool (created here) use their own threads. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "claq_tool.h"
#include "eng_claq_file.h"
#include "eng_tokenizer.h"
#include "quant.h"

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s && s[1] ? s + 1 : p;
}

/* Fails (with the reason) when out cannot be created: the writer creates out.tmp there, so try
 * exactly that and remove it again. */
static int check_writable(const char *out)
{
    eng_err err = {0};
    if (eng_claq_out_ok(out, &err) != 0) {
        fprintf(stderr, "claq quantize: %s\n", err.msg);
        return 1;
    }
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", out) >= (int)sizeof tmp) {
        fprintf(stderr, "claq quantize: --out path too long\n");
        return 1;
    }
    int fd = mkstemp(tmp);   /* where the writer's own temp file will go */
    if (fd < 0) {
        fprintf(stderr, "claq quantize: cannot write beside %s: %s\n", out, strerror(errno));
        return 1;
    }
    close(fd);
    unlink(tmp);
    return 0;
}

/* 1 when a and b name the same existing file. */
static int same_file(const char *a, const char *b)
{
    struct stat x, y;
    return a && b && *a && *b && stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev &&
           x.st_ino == y.st_ino;
}

/* --out must not replace what the command reads: the model (a file, or any file of its
 * directory), the tokenizer, the calibration text. The writer renames over the target, so
 * neither a read-only mode nor the file being open would stop it. */
static int check_not_input(const char *out, const eng_model *m, const char *model_path,
                           const char *tok_path, const char *calib)
{
    const char *inputs[] = {model_path, tok_path, calib, m->tokenizer_path};
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++)
        if (same_file(out, inputs[i])) {
            fprintf(stderr, "claq quantize: --out %s is an input of this command (%s); "
                    "choose another path\n", out, inputs[i]);
            return 1;
        }
    struct stat st;
    char dir[PATH_MAX], where[PATH_MAX];
    if (stat(model_path, &st) == 0 && S_ISDIR(st.st_mode) && realpath(model_path, dir) &&
        access(out, F_OK) == 0 && realpath(out, where) &&
        strncmp(where, dir, strlen(dir)) == 0 && where[strlen(dir)] == '/') {
        fprintf(stderr, "claq quantize: --out %s would replace a file of the model directory "
                "%s; choose another path\n", out, model_path);
        return 1;
    }
    return 0;
}

/* True bits per weight of the linears of the packed file at path, every stored byte counted
 * as `claq inspect` counts it; -1 when it cannot be read. */
static double linears_true_bpw(const char *path)
{
    eng_model *pm = NULL;
    eng_err err = {0};
    if (eng_model_open(&pm, path, &err)) return -1;
    const eng_claq_model_info *info = pm->format == ENG_FMT_CLAQ ? pm->ext : NULL;
    double params = 0, bytes = 0;
    for (int l = 0; info && l < pm->cfg.n_layers; l++)
        for (int i = 0; i < ENG_LIN_COUNT; i++) {
            const kern_matrix *w = &pm->w.layers[l].lin[i];
            const int64_t mi = (int64_t)l * ENG_LIN_COUNT + i;
            params += (double)w->rows * (double)w->cols;
            if (w->dtype != KERN_CLAQ) {
                bytes += (double)w->rows * (double)w->cols * (double)kern_dtype_size(w->dtype);
                continue;
            }
            eng_claq_stats st;
            eng_claq_stats_of(w->claq, info->sec_len[mi], info->matrix_bytes[mi], &st);
            bytes += (double)st.total_bytes;
        }
    eng_model_close(pm);
    return info && params > 0 ? bytes * 8.0 / params : -1;
}

int claq_cmd_quantize(int argc, char **argv)
{
    claq_arg spec[] = {
        {"--model", 1, NULL, "FP source model: llama2.c .bin or HF directory (required)"},
        {"--tokenizer", 1, NULL, "tokenizer file (llama2.c checkpoints need one)"},
        {"--calib", 1, NULL, "calibration text file (required unless --method rtn)"},
        {"--method", 1, NULL, "rtn | gptq | claq (required)"},
        {"--bits", 1, NULL, "2..4; fractional (2.1, 3.05) = Adaptive Precision, claq only"},
        {"--target-bpw", 1, NULL, "instead of --bits: give each matrix's columns 2, 3 or 4 bits "
                                  "to fit this many stored bits per weight (codes, codebooks, "
                                  "padding and outliers counted; claq only)"},
        {"--outliers", 0, NULL, "Outlier Reservation (claq only)"},
        {"--or-budget", 1, NULL, "scale of the OR fractions 0.014/0.004 (default 1)"},
        {"--or-compat-index", 0, NULL, "the reference code's block-local OR budget index"},
        {"--kmeans-init", 1, NULL, "optimal (default: binned DP + Lloyd) | exact (DP over every "
                                   "point, slower) | lloyd (quantile init) | plusplus (seeded)"},
        {"--cb-bits", 1, NULL, "codebook entries: 8 = on a per-column 8-bit grid (4 + 2^b bytes "
                               "a column; default) | 16 = free fp16 values (2 * 2^b bytes, the "
                               "paper's)"},
        {"--fast-inverse", 0, NULL, "GPTQ's inverse factor by 1 Cholesky + 1 triangular inverse "
                                    "(half the flops; rounds differently from GPTQ's)"},
        {"--f32-inverse", 0, NULL, "factor GPTQ's inverse in float, as GPTQ's own code does "
                                   "(default: double)"},
        {"--nsamples", 1, NULL, "calibration windows (default 128)"},
        {"--seqlen", 1, NULL, "tokens per window (default 2048, clipped to the context)"},
        {"--seed", 1, NULL, "seed for the windows and k-means++ (default 0)"},
        {"--head-bits", 1, NULL, "also pack the output head at these bits (2, 3 or 4; default: "
                                 "keep it dense): GPTQ + CLAQ on the final norm's outputs, or "
                                 "per-column K-Means with --method rtn"},
        {"--embed-bits", 1, NULL, "8, 7 or 6: store the token embedding as integers with a "
                                  "scale per row (q8_row / q7_row / q6_row; on a tied model "
                                  "without --head-bits it is the head too), 16: keep its dtype "
                                  "(default), "
                                  "or shared: a tied model's packed head (--head-bits) is its "
                                  "embedding too, one matrix for both"},
        {"--threads", 1, NULL, "threads for the forward passes and the GPTQ loop (default: one "
                               "per core; results do not depend on it)"},
        {"--act-budget-mb", 1, NULL, "activations kept in RAM before a temp file (default 2048)"},
        {"--out", 1, NULL, "packed output file (required)"},
        {"--help", 0, NULL, "this text"},
    };
    const int ns = (int)(sizeof spec / sizeof spec[0]);
    const char *synopsis = "--model PATH [--tokenizer PATH] --calib TEXT --method rtn|gptq|claq "
                           "--bits B|--target-bpw X [--outliers] [--nsamples N] [--seqlen L] [--seed S] --out PATH";
    if (claq_args_parse("quantize", spec, ns, argc, argv)) return 2;
    const char *model_path = claq_arg_get(spec, ns, "--model");
    const char *method = claq_arg_get(spec, ns, "--method");
    const char *calib = claq_arg_get(spec, ns, "--calib");
    const char *out = claq_arg_get(spec, ns, "--out");
    const char *tok_path = claq_arg_get(spec, ns, "--tokenizer");
    if (claq_arg_get(spec, ns, "--help")) {
        claq_args_usage("quantize", synopsis, spec, ns);
        return 0;
    }
    const char *target = claq_arg_get(spec, ns, "--target-bpw");
    if (target && claq_arg_get(spec, ns, "--bits")) {
        fprintf(stderr, "claq quantize: give --bits or --target-bpw, not both\n");
        return 2;
    }
    if (!model_path || !method || !out || (!claq_arg_get(spec, ns, "--bits") && !target)) {
        claq_args_usage("quantize", synopsis, spec, ns);
        return 2;
    }
    if (!*out) {
        fprintf(stderr, "claq quantize: --out is empty\n");
        return 2;
    }
    eng_quant_cfg cfg;
    eng_quant_cfg_default(&cfg);
    cfg.log = stderr;
    if (strcmp(method, "rtn") == 0) cfg.method = ENG_QUANT_RTN;
    else if (strcmp(method, "gptq") == 0) cfg.method = ENG_QUANT_GPTQ;
    else if (strcmp(method, "claq") == 0) cfg.method = ENG_QUANT_CLAQ;
    else {
        fprintf(stderr, "claq quantize: --method must be rtn, gptq or claq, got '%s'\n", method);
        return 2;
    }
    if (cfg.method != ENG_QUANT_RTN && !calib) {
        fprintf(stderr, "claq quantize: --method %s needs --calib TEXTFILE\n", method);
        return 2;
    }
    long long nsamples = 128, seqlen = 2048, seed = 0, threads = 0, budget_mb = 2048;
    const char *v;
    if (target) {
        if (claq_parse_float("--target-bpw", target, 2, 8, &cfg.target_bpw)) return 2;
        cfg.bits = 2;   /* unused: the allocation decides */
    } else if (claq_parse_float("--bits", claq_arg_get(spec, ns, "--bits"), 2, 4, &cfg.bits)) {
        return 2;
    }
    if ((v = claq_arg_get(spec, ns, "--nsamples")) &&
        claq_parse_int("--nsamples", v, 1, 1 << 20, &nsamples)) return 2;
    if ((v = claq_arg_get(spec, ns, "--seqlen")) &&
        claq_parse_int("--seqlen", v, 1, 1 << 22, &seqlen)) return 2;
    if ((v = claq_arg_get(spec, ns, "--seed")) &&
        claq_parse_int("--seed", v, 0, (1LL << 62), &seed)) return 2;
    if ((v = claq_arg_get(spec, ns, "--threads")) &&
        claq_parse_int("--threads", v, 0, 256, &threads)) return 2;
    long long head_bits = 0;
    if ((v = claq_arg_get(spec, ns, "--head-bits")) &&
        claq_parse_int("--head-bits", v, 2, 4, &head_bits)) return 2;
    if (claq_parse_8_or_16("--cb-bits", claq_arg_get(spec, ns, "--cb-bits"), 8, &cfg.cb_bits))
        return 2;
    int embed_bits, embed_shared;
    if (claq_parse_embed_bits(claq_arg_get(spec, ns, "--embed-bits"), &embed_bits,
                              &embed_shared))
        return 2;
    if (embed_shared && !claq_arg_get(spec, ns, "--head-bits")) {
        fprintf(stderr, "claq quantize: --embed-bits shared stores the packed head as the "
                "embedding: it needs --head-bits\n");
        return 2;
    }
    if ((v = claq_arg_get(spec, ns, "--act-budget-mb")) &&
        claq_parse_int("--act-budget-mb", v, 0, 1 << 24, &budget_mb)) return 2;
    if ((v = claq_arg_get(spec, ns, "--or-budget")) &&
        claq_parse_float("--or-budget", v, 1e-6, 30, &cfg.or_budget)) return 2;
    if ((v = claq_arg_get(spec, ns, "--kmeans-init")) && eng_kmeans_init_parse(v, &cfg.kinit)) {
        fprintf(stderr, "claq quantize: --kmeans-init must be optimal, exact, lloyd or "
                "plusplus\n");
        return 2;
    }
    cfg.outliers = claq_arg_get(spec, ns, "--outliers") != NULL;
    if (cfg.method != ENG_QUANT_RTN) cfg.head_bits = (double)head_bits;
    cfg.gptq.fast_inverse = claq_arg_get(spec, ns, "--fast-inverse") != NULL;
    cfg.gptq.f32_inverse = claq_arg_get(spec, ns, "--f32-inverse") != NULL;
    cfg.or_compat_index = claq_arg_get(spec, ns, "--or-compat-index") != NULL;
    cfg.seed = (uint64_t)seed;
    cfg.act_budget = (size_t)budget_mb << 20;
    if ((cfg.or_compat_index || claq_arg_get(spec, ns, "--or-budget")) && !cfg.outliers) {
        fprintf(stderr, "claq quantize: --or-budget / --or-compat-index need --outliers\n");
        return 2;
    }
    eng_err err = {0};
    if (eng_quant_cfg_check(&cfg, &err)) {
        fprintf(stderr, "claq quantize: %s\n", err.msg);
        return 2;
    }

    int ret = 1;
    eng_model *m = NULL;
    kern_backend be = {0};
    int32_t *windows = NULL;
    eng_qmatrix **qp = NULL;
    eng_qmatrix head = {0};   /* the packed output head with --head-bits */
    eng_quant_result res = {0};
    kern_pool *pool = NULL;
    /* cold: the loader's value checks would otherwise leave the whole source file resident
     * (13.5 GB for a 7B in FP16); the pipeline reads one layer at a time and drops it after */
    if (eng_model_open_ex(&m, model_path, ENG_OPEN_COLD_WEIGHTS, &err)) {
        fprintf(stderr, "claq quantize: %s\n", err.msg);
        goto done;
    }
    /* before hours of work, not after */
    if (check_writable(out) || check_not_input(out, m, model_path, tok_path, calib)) goto done;
    if (embed_shared && !m->cfg.tie_embeddings) {
        fprintf(stderr, "claq quantize: --embed-bits shared needs a model whose head is its "
                "embedding (tie_word_embeddings); %s has its own head\n", model_path);
        goto done;
    }
    if (tok_path && *tok_path) {
        /* the tokenizer named here is the one calibration reads and the packed file carries
         * (a llama2.c checkpoint has none beside it); checked now, before any work */
        eng_tokenizer *t = NULL;
        if (eng_model_open_tokenizer(m, tok_path, &t, &err)) {
            fprintf(stderr, "claq quantize: %s\n", err.msg);
            goto done;
        }
        eng_tokenizer_close(t);
        if (snprintf(m->tokenizer_path, sizeof m->tokenizer_path, "%s", tok_path) >=
            (int)sizeof m->tokenizer_path) {
            fprintf(stderr, "claq quantize: --tokenizer path too long\n");
            goto done;
        }
    }
    if (cfg.method != ENG_QUANT_RTN && seqlen > m->cfg.seq_len) {
        fprintf(stderr, "claq quantize: --seqlen %lld clipped to the model's context %d\n", seqlen,
                m->cfg.seq_len);
        seqlen = m->cfg.seq_len;
    }
    if (cfg.method != ENG_QUANT_RTN) {
        int64_t n_text = 0;
        int overlap = 0;
        if (eng_calib_load(m, tok_path, calib, (int)nsamples, (int)seqlen, cfg.seed, &windows,
                           &n_text, &overlap, &err)) {
            fprintf(stderr, "claq quantize: %s\n", err.msg);
            goto done;
        }
        fprintf(stderr, "calibration: %s, %lld tokens, %lld windows of %lld tokens (seed %lld)\n",
                calib, (long long)n_text, nsamples, seqlen, seed);
        if (overlap)
            fprintf(stderr, "calibration: the text has fewer than %lld tokens, so windows "
                    "overlap\n", nsamples * seqlen);
        char blas[256];
        quant_blas_describe(blas, sizeof blas);
        fprintf(stderr, "dense algebra: %s\n", blas);
    }
    if (kern_cpu_backend_create(&be, (int)threads)) {
        fprintf(stderr, "claq quantize: cannot start the CPU backend\n");
        goto done;
    }
    kern_cpu_backend_set_offline(&be, 1);   /* calibration passes: BLAS GEMMs, no invariance needed */
    if (cfg.method != ENG_QUANT_RTN) {
        long nproc = sysconf(_SC_NPROCESSORS_ONLN);
        int nt = threads > 0 ? (int)threads : (nproc > 0 ? (int)nproc : 1);
        if (nt > 1 && kern_pool_create(&pool, nt)) {
            fprintf(stderr, "claq quantize: cannot start %d threads\n", nt);
            goto done;
        }
        cfg.pool = pool;   /* the GPTQ loop's row work; driven by this thread */
    }
    if (eng_quant_model(m, &be, windows, (int)nsamples, (int)seqlen, &cfg, &res, &err)) {
        fprintf(stderr, "claq quantize: %s\n", err.msg);
        goto done;
    }
    int nm = res.n_layers * ENG_LIN_COUNT;
    qp = malloc(sizeof *qp * (size_t)nm);
    if (!qp) {
        fprintf(stderr, "claq quantize: out of memory\n");
        goto done;
    }
    double bits_w = 0, weights = 0, outl = 0;
    for (int i = 0; i < nm; i++) {
        qp[i] = &res.mats[i];
        double n = (double)res.mats[i].rows * (double)res.mats[i].cols;
        bits_w += eng_qmatrix_nominal_bits(&res.mats[i]) * n;
        weights += n;
        outl += (double)res.mats[i].n_outliers;
    }
    eng_claq_meta meta = {.bits = cfg.bits, .target_bpw = target ? cfg.target_bpw : 0,
                          .head_bits = (int)head_bits, .cb_bits = cfg.cb_bits,
                          .outliers = cfg.outliers, .or_budget = cfg.or_budget,
                          .or_compat_index = cfg.or_compat_index,
                          .nsamples = cfg.method == ENG_QUANT_RTN ? 0 : (int)nsamples,
                          .seqlen = cfg.method == ENG_QUANT_RTN ? 0 : (int)seqlen,
                          .seed = cfg.seed, .quant_seconds = res.seconds};
    snprintf(meta.method, sizeof meta.method, "%s", method);
    if (cfg.method == ENG_QUANT_CLAQ)
        snprintf(meta.kmeans_init, sizeof meta.kmeans_init, "%s",
                 claq_arg_get(spec, ns, "--kmeans-init") ? claq_arg_get(spec, ns, "--kmeans-init")
                                                         : "optimal");
    if (cfg.method != ENG_QUANT_RTN)
        snprintf(meta.inverse, sizeof meta.inverse, "%s%s", cfg.gptq.f32_inverse ? "f32" : "double",
                 cfg.gptq.fast_inverse ? "-fast" : "");
    snprintf(meta.calib, sizeof meta.calib, "%s",
             cfg.method == ENG_QUANT_RTN || !calib ? "" : base_name(calib));
    snprintf(meta.source, sizeof meta.source, "%s", model_path);
    if (res.head.rows) {
        meta.head = &res.head;   /* calibrated: GPTQ + CLAQ in the pipeline */
    } else if (head_bits) {
        /* RTN: the head by per-column K-Means, as the other matrices get no calibration */
        const kern_matrix *hw = &m->w.output;
        int hrc = hw->dtype == KERN_CLAQ
                      ? eng_err_set(&err, ENG_E_INVAL, "output head: already packed")
                      : eng_qmatrix_alloc(&head, hw->rows, hw->cols, &err);
        if (!hrc && cfg.cb_bits == 8) hrc = eng_qmatrix_grid_alloc(&head, &err);
        if (!hrc) {
            memset(head.bits, (int)head_bits, (size_t)hw->cols);
            hrc = eng_quant_kmeans_matrix(hw, cfg.seed ^ 0x4eadull, pool, &head, &err);
        }
        if (hrc) {
            fprintf(stderr, "claq quantize: %s\n", err.msg);
            goto done;
        }
        meta.head = &head;
        fprintf(stderr, "output head: per-column K-Means at %lld bits\n", head_bits);
    }
    meta.embed_bits = embed_bits;
    meta.embed_shared = embed_shared;
    if (eng_claq_write(out, m, (eng_qmatrix *const *)qp, &meta, &err)) {
        fprintf(stderr, "claq quantize: %s\n", err.msg);
        goto done;
    }
    char label[48];
    if (target) snprintf(label, sizeof label, "--target-bpw %g", cfg.target_bpw);
    else snprintf(label, sizeof label, "%.4g bits", cfg.bits);
    fprintf(stderr, "wrote %s: %s %s, nominal code bits %.4f, %.0f outliers (%.3f%% of "
            "weights), quantized in %.1fs\n", out, method, label, bits_w / weights, outl,
            100.0 * outl / weights, res.seconds);
    printf("quant_seconds: %.3f\n", res.seconds);
    if (target) {
        /* a budget below what the smallest form costs (every column at 2 bits: the codebooks
         * and padding of small matrices, and the planned outliers) cannot be met: say so */
        const double tb = linears_true_bpw(out);
        if (tb > cfg.target_bpw + 1e-9)
            fprintf(stderr, "claq quantize: warning: the linears take %.4f stored bits per weight, "
                    "over --target-bpw %g: the matrices that could not fit are all 2-bit%s "
                    "(claq inspect lists each one)\n", tb, cfg.target_bpw,
                    cfg.outliers ? ", with their planned outliers" : "");
        else if (tb > 0)
            fprintf(stderr, "linears: %.4f stored bits per weight (--target-bpw %g)\n", tb,
                    cfg.target_bpw);
    }
    ret = 0;
done:
    eng_qmatrix_free(&head);
    free(qp);
    eng_quant_result_free(&res);
    free(windows);
    kern_backend_destroy(&be);
    kern_pool_destroy(pool);
    eng_model_close(m);
    return ret;
}
