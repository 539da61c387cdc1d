/* claq_inspect.c — `claq inspect PATH`: what a model file holds, for every format the engine
 * opens (llama2.c .bin, HF directory, packed CLAQ): config, tensors and dtypes, and for packed
 * files per matrix the bit-width histogram, outliers, codebook bytes, nominal bits and TRUE bits
 * per weight counting every byte stored. The last line is always `true_bpw: <value>` for the
 * whole model (every stored byte except the embedded tokenizer, over every parameter).
 * Read-only; single-threaded front end. */
#include <stdio.h>
#include <string.h>

#include "claq_tool.h"
#include "eng_claq_file.h"
#include "eng_model.h"
#include "eng_qrow.h"

static const char *fmt_name(eng_model_format f)
{
    return f == ENG_FMT_LLAMA2C ? "llama2.c checkpoint" : f == ENG_FMT_HF ? "Hugging Face directory"
                                                                          : "packed CLAQ";
}

int claq_cmd_inspect(int argc, char **argv)
{
    claq_arg spec[] = {
        {"--model", 1, NULL, "model path (or give it as the first argument)"},
        {"--brief", 0, NULL, "print only the totals, not one line per matrix"},
        {"--help", 0, NULL, "this text"},
    };
    const int ns = (int)(sizeof spec / sizeof spec[0]);
    const char *path = NULL;
    if (argc > 0 && argv[0][0] != '-') {
        path = argv[0];
        argc--;
        argv++;
    }
    if (claq_args_parse("inspect", spec, ns, argc, argv)) return 2;
    if (!path) path = claq_arg_get(spec, ns, "--model");
    if (claq_arg_get(spec, ns, "--help") || !path) {
        claq_args_usage("inspect", "PATH [--brief]", spec, ns);
        return claq_arg_get(spec, ns, "--help") ? 0 : 2;
    }
    int brief = claq_arg_get(spec, ns, "--brief") != NULL;
    eng_model *m = NULL;
    eng_err err = {0};
    if (eng_model_open(&m, path, &err)) {
        fprintf(stderr, "claq inspect: %s\n", err.msg);
        return 1;
    }
    const eng_config *c = &m->cfg;
    const eng_claq_model_info *pinfo = m->format == ENG_FMT_CLAQ ? m->ext : NULL;
    printf("path: %s\nformat: %s", m->path, fmt_name(m->format));
    if (pinfo) printf(", version %d", pinfo->meta.format_version);
    printf("\nquant: %s\n", m->quant_desc);
    printf("config: arch=%s dim=%d hidden_dim=%d n_layers=%d n_heads=%d n_kv_heads=%d head_dim=%d "
           "vocab_size=%d seq_len=%d rope_theta=%g norm_eps=%g rope=%s tie_embeddings=%d bos=%d "
           "eos=%d\n", c->arch, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
           c->head_dim, c->vocab_size, c->seq_len, c->rope_theta, c->norm_eps,
           c->rope_style == KERN_ROPE_HALF ? "half" : "interleaved", c->tie_embeddings, c->bos_id,
           c->eos_id);
    if (c->n_eos > 1) {
        printf("eos_ids:");
        for (int i = 0; i < c->n_eos; i++) printf(" %d", c->eos_ids[i]);
        printf("\n");
    }
    const eng_rope_scaling *rs = &c->rope_scaling;
    if (rs->type != ENG_ROPE_DEFAULT)
        printf("rope_scaling: type=%s factor=%g low_freq_factor=%g high_freq_factor=%g "
               "original_max_position_embeddings=%d\n", eng_rope_type_name(rs->type), rs->factor,
               rs->low_freq_factor, rs->high_freq_factor, rs->orig_max_pos);
    if (m->tokenizer_path[0]) printf("tokenizer: %s (beside the model)\n", m->tokenizer_path);
    else if (m->tokenizer_blob)
        printf("tokenizer: %s embedded, %zu bytes%s\n", m->tokenizer_blob_name,
               m->tokenizer_blob_len, m->tokenizer_config_json ? " (+ tokenizer_config.json)" : "");
    else printf("tokenizer: none found\n");

    const kern_matrix *e = &m->w.tok_embed;
    /* norms have the dense dtype (f32 in packed files, where the embedding may be q8_row) */
    size_t dense_sz = e->dtype == KERN_Q8_ROW ? 4 : kern_dtype_size(e->dtype);
    double params = 0, bytes = 0;
    const eng_claq_model_info *info = m->format == ENG_FMT_CLAQ ? m->ext : NULL;
    /* q6_row / q7_row: stored bit-packed, int8 in memory */
    const int pb = info && info->meta.embed_bits < 8 ? info->meta.embed_bits : 0;
    printf("tensor tok_embeddings: %s [%lld, %lld]\n",
           pb == 6 ? "Q6_ROW" : pb == 7 ? "Q7_ROW" : kern_dtype_name(e->dtype),
           (long long)e->rows, (long long)e->cols);
    params += (double)e->rows * (double)e->cols;
    bytes += pb ? (double)eng_qrow_packed_bytes(pb, e->rows, e->cols)
                : (double)kern_dense_bytes(e->dtype, e->rows, e->cols);
    if (!c->tie_embeddings) {
        const kern_matrix *o = &m->w.output;
        printf("tensor output: %s [%lld, %lld]\n", kern_dtype_name(o->dtype), (long long)o->rows,
               (long long)o->cols);
        params += (double)o->rows * (double)o->cols;
        bytes += (double)o->rows * (double)o->cols * (double)kern_dtype_size(o->dtype);
    } else {
        printf("tensor output: tied to tok_embeddings\n");
    }
    double norm_params = (double)c->dim * (2.0 * c->n_layers + 1);
    printf("tensor norms: %d vectors of [%d]\n", 2 * c->n_layers + 1, c->dim);
    params += norm_params;
    bytes += norm_params * (double)dense_sz;

    double lin_params = 0, lin_bytes = 0, lin_nominal = 0;
    int64_t hist[5] = {0}, outl = 0, cbb = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int i = 0; i < ENG_LIN_COUNT; i++) {
            const kern_matrix *w = &m->w.layers[l].lin[i];
            double np = (double)w->rows * (double)w->cols;
            lin_params += np;
            if (w->dtype != KERN_CLAQ || !info) {
                lin_bytes += np * (double)kern_dtype_size(w->dtype);
                if (!brief && l == 0)
                    printf("layers.*.%s: %s [%lld, %lld]\n", eng_linear_name(i),
                           kern_dtype_name(w->dtype), (long long)w->rows, (long long)w->cols);
                continue;
            }
            eng_claq_stats st;
            const int64_t mi = (int64_t)l * ENG_LIN_COUNT + i;
            eng_claq_stats_of(w->claq, info->sec_len[mi], info->matrix_bytes[mi], &st);
            lin_bytes += (double)st.total_bytes;
            lin_nominal += st.nominal_bits * np;
            for (int b = 2; b <= 4; b++) hist[b] += st.cols_by_bits[b];
            outl += st.n_outliers;
            cbb += st.codebook_bytes;
            if (!brief)
                printf("layers.%d.%-9s [%5lld, %5lld] cols 4b/3b/2b %lld/%lld/%lld  outliers %lld "
                       "(%.3f%%)  codebook %lld B  nominal %.3f  true %.4f bpw\n", l,
                       eng_linear_name(i), (long long)w->rows, (long long)w->cols,
                       (long long)st.cols_by_bits[4], (long long)st.cols_by_bits[3],
                       (long long)st.cols_by_bits[2], (long long)st.n_outliers,
                       100.0 * (double)st.n_outliers / np, (long long)st.codebook_bytes,
                       st.nominal_bits, st.true_bpw);
        }
    params += lin_params;
    if (info) {
        const eng_claq_meta *mt = &info->meta;
        printf("quantization: method=%s", mt->method);
        if (mt->target_bpw > 0) printf(" target_bpw=%g", mt->target_bpw);   /* not --bits */
        else printf(" bits=%g", mt->bits);
        printf(" outliers=%d or_budget=%g or_compat_index=%d nsamples=%d seqlen=%d seed=%llu "
               "calib=%s source=%s", mt->outliers, mt->or_budget, mt->or_compat_index,
               mt->nsamples, mt->seqlen, (unsigned long long)mt->seed,
               mt->calib[0] ? mt->calib : "-", mt->source[0] ? mt->source : "-");
        if (mt->head_bits > 0) printf(" head_bits=%d", mt->head_bits);
        if (mt->cb_bits > 0) printf(" cb_bits=%d", mt->cb_bits);
        if (mt->kmeans_init[0]) printf(" kmeans_init=%s", mt->kmeans_init);
        if (mt->inverse[0]) printf(" inverse=%s", mt->inverse);
        if (mt->quant_seconds > 0) printf(" time=%.1fs", mt->quant_seconds);   /* older files */
        printf("\n");
        int64_t cols = hist[2] + hist[3] + hist[4];
        printf("linears: columns 4b %lld, 3b %lld, 2b %lld; outliers %lld (%.3f%%); codebooks %lld "
               "bytes; nominal %.4f bits; true %.4f bpw\n", (long long)hist[4], (long long)hist[3],
               (long long)hist[2], (long long)outl, 100.0 * (double)outl / lin_params,
               (long long)cbb, lin_nominal / lin_params, lin_bytes * 8.0 / lin_params);
        (void)cols;
        /* Whole model: every byte of the file except the embedded tokenizer (+ its config). */
        double tok = (double)m->tokenizer_blob_len +
                     (m->tokenizer_config_json ? (double)strlen(m->tokenizer_config_json) : 0);
        bytes = (double)info->file_bytes - tok;
        printf("file: %lld bytes (%.0f of them tokenizer)\n", (long long)info->file_bytes, tok);
    } else {
        bytes += lin_bytes;
        printf("linears: dense; %.4f bpw\n", lin_bytes * 8.0 / lin_params);
    }
    printf("params: %.0f\n", params);
    printf("true_bpw: %.4f\n", bytes * 8.0 / params);
    eng_model_close(m);
    return 0;
}
