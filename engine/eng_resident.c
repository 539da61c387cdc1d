/* eng_resident.c — see eng_resident.h. */
#include "eng_resident.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct eng_resident {
    const eng_model *m;              /* borrowed; outlives this */
    kern_backend *be;                /* borrowed; outlives this */
    kern_matrix embed, output;       /* copies of the model's descriptors, dev owned here */
    int output_shares_embed;         /* tied head: output.dev is embed.dev, released once */
    eng_layer_weights *layers;       /* [n_layers]; owned; lin[].dev owned here */
    uint64_t uploaded;               /* weight bytes copied at creation */
    kern_buf *norms;                 /* device backends: every RMSNorm weight, [2 n_layers + 1]
                                        [dim] (attn, ffn per layer, then final); owned */
    const float *final_norm;         /* in norms, or the model's */
};

/* On a device backend the norm weights are op arguments in its memory too: one buffer for all
 * of them, and the layer copies point into it. */
static int upload_norms(eng_resident *r, eng_err *err)
{
    const eng_model *m = r->m;
    r->final_norm = m->w.final_norm;
    if (kern_backend_host_memory(r->be)) return 0;
    size_t dim = (size_t)m->cfg.dim, count = 2 * (size_t)m->cfg.n_layers + 1;
    int rc = kern_buf_alloc(r->be, count * dim * sizeof(float), &r->norms);
    for (int l = 0; !rc && l < m->cfg.n_layers; l++) {
        rc = kern_buf_write(r->be, r->norms, (2 * (size_t)l) * dim * sizeof(float),
                            m->w.layers[l].attn_norm, dim * sizeof(float));
        if (!rc)
            rc = kern_buf_write(r->be, r->norms, (2 * (size_t)l + 1) * dim * sizeof(float),
                                m->w.layers[l].ffn_norm, dim * sizeof(float));
    }
    if (!rc)
        rc = kern_buf_write(r->be, r->norms, (count - 1) * dim * sizeof(float), m->w.final_norm,
                            dim * sizeof(float));
    if (rc)
        return eng_err_set(err, rc == KERN_E_NOMEM ? ENG_E_NOMEM : ENG_E_DEVICE,
                           "uploading the norm weights of %s: %s", m->path, kern_strerror(rc));
    const float *base = kern_buf_addr(r->norms);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        r->layers[l].attn_norm = base + (2 * (size_t)l) * dim;
        r->layers[l].ffn_norm = base + (2 * (size_t)l + 1) * dim;
    }
    r->final_norm = base + (count - 1) * dim;
    return 0;
}

static int upload_one(eng_resident *r, kern_matrix *w, const char *what, int layer, eng_err *err)
{
    int rc = kern_upload(r->be, w);
    if (!rc) return 0;
    char where[48] = "";
    if (layer >= 0) snprintf(where, sizeof where, " of layer %d", layer);
    return eng_err_set(err, rc == KERN_E_NOMEM         ? ENG_E_NOMEM
                           : rc == KERN_E_UNSUPPORTED ? ENG_E_UNSUPPORTED
                                                      : ENG_E_DEVICE,
                       "uploading %s%s of %s (%lld x %lld %s) to the %s backend: %s", what, where,
                       r->m->path, (long long)w->rows, (long long)w->cols,
                       kern_dtype_name(w->dtype),
                       r->be->ops && r->be->ops->name ? r->be->ops->name : "?",
                       kern_strerror(rc));
}

int eng_resident_create(eng_resident **out, const eng_model *m, kern_backend *be, eng_err *err)
{
    *out = NULL;
    eng_resident *r = calloc(1, sizeof *r);
    if (!r) return eng_err_set(err, ENG_E_NOMEM, "out of memory");
    r->m = m;
    r->be = be;
    r->layers = calloc((size_t)m->cfg.n_layers, sizeof *r->layers);
    if (!r->layers) {
        free(r);
        return eng_err_set(err, ENG_E_NOMEM, "out of memory");
    }
    kern_xfer_stats before, after;
    kern_get_xfer_stats(be, &before);
    r->embed = m->w.tok_embed;
    r->output = m->w.output;
    r->embed.dev = r->output.dev = NULL;
    /* A tied head is the same view as the embedding: one device copy serves both. */
    r->output_shares_embed = m->w.output.data == m->w.tok_embed.data &&
                             m->w.output.claq == m->w.tok_embed.claq &&
                             m->w.output.dtype == m->w.tok_embed.dtype &&
                             m->w.output.rows == m->w.tok_embed.rows &&
                             m->w.output.cols == m->w.tok_embed.cols;
    int rc = upload_one(r, &r->embed, "the token embedding", -1, err);
    if (!rc) {
        if (r->output_shares_embed) r->output.dev = r->embed.dev;
        else rc = upload_one(r, &r->output, "the output head", -1, err);
    }
    for (int l = 0; !rc && l < m->cfg.n_layers; l++) {
        r->layers[l] = m->w.layers[l];
        for (int i = 0; i < ENG_LIN_COUNT; i++) r->layers[l].lin[i].dev = NULL;
        for (int i = 0; !rc && i < ENG_LIN_COUNT; i++)
            rc = upload_one(r, &r->layers[l].lin[i], eng_linear_name((eng_linear)i), l, err);
    }
    if (!rc) rc = upload_norms(r, err);
    if (rc) {
        eng_resident_destroy(r);
        return rc;
    }
    kern_get_xfer_stats(be, &after);
    r->uploaded = after.weight_h2d_bytes - before.weight_h2d_bytes;
    *out = r;
    return 0;
}

void eng_resident_destroy(eng_resident *r)
{
    if (!r) return;
    if (r->layers)
        for (int l = 0; l < r->m->cfg.n_layers; l++)
            for (int i = 0; i < ENG_LIN_COUNT; i++) kern_release(r->be, &r->layers[l].lin[i]);
    if (r->output_shares_embed) r->output.dev = NULL;
    else kern_release(r->be, &r->output);
    kern_release(r->be, &r->embed);
    kern_buf_free(r->be, r->norms);
    free(r->layers);
    free(r);
}

const eng_model *eng_resident_model(const eng_resident *r) { return r->m; }
const kern_matrix *eng_resident_embed(const eng_resident *r) { return &r->embed; }
const kern_matrix *eng_resident_output(const eng_resident *r) { return &r->output; }
const eng_layer_weights *eng_resident_layer(const eng_resident *r, int layer)
{
    return layer >= 0 && layer < r->m->cfg.n_layers ? &r->layers[layer] : NULL;
}
const float *eng_resident_final_norm(const eng_resident *r) { return r->final_norm; }
uint64_t eng_resident_uploaded_bytes(const eng_resident *r) { return r->uploaded; }
