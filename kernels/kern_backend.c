/* kern_backend.c — the kern_* wrappers every caller goes through: argument checks, NULL-op
 * checks, and the CUDA constructor stub for builds without CUDA. Backend-neutral; no state. */
#include "kern.h"

#include <string.h>

const char *kern_strerror(int status)
{
    switch (status) {
    case KERN_OK: return "ok";
    case KERN_E_INVAL: return "invalid kernel arguments";
    case KERN_E_UNSUPPORTED: return "operation not supported by this backend";
    case KERN_E_NOMEM: return "out of memory";
    case KERN_E_DEVICE: return "device error";
    default: return "unknown kernel error";
    }
}

size_t kern_dtype_size(kern_dtype t)
{
    switch (t) {
    case KERN_F32: return 4;
    case KERN_F16: return 2;
    case KERN_BF16: return 2;
    default: return 0;
    }
}

const char *kern_dtype_name(kern_dtype t)
{
    switch (t) {
    case KERN_F32: return "F32";
    case KERN_F16: return "F16";
    case KERN_BF16: return "BF16";
    case KERN_CLAQ: return "CLAQ";
    default: return "?";
    }
}

void kern_backend_destroy(kern_backend *b)
{
    if (!b || !b->ops) return;
    if (b->ops->destroy) b->ops->destroy(b->ctx);
    memset(b, 0, sizeof *b);
}

static int matrix_ok(const kern_matrix *w)
{
    if (!w || w->rows <= 0 || w->cols <= 0) return 0;
    if (w->dtype == KERN_CLAQ) return w->claq != NULL;
    return w->data != NULL && kern_dtype_size(w->dtype) != 0;
}

int kern_matmul(kern_backend *b, const kern_matrix *w, const float *x, int n, float *y)
{
    if (!b->ops || !b->ops->matmul) return KERN_E_UNSUPPORTED;
    if (!matrix_ok(w) || !x || !y || n <= 0) return KERN_E_INVAL;
    if (b->ops->supports && !b->ops->supports(b->ctx, w->dtype)) return KERN_E_UNSUPPORTED;
    return b->ops->matmul(b->ctx, w, x, n, y);
}

int kern_embed(kern_backend *b, const kern_matrix *t, const int32_t *ids, int n, float *out)
{
    if (!b->ops || !b->ops->embed) return KERN_E_UNSUPPORTED;
    if (!matrix_ok(t) || !ids || !out || n <= 0) return KERN_E_INVAL;
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->rows) return KERN_E_INVAL;
    return b->ops->embed(b->ctx, t, ids, n, out);
}

int kern_rmsnorm(kern_backend *b, const float *x, const float *w, int n, int dim, float eps, float *out)
{
    if (!b->ops || !b->ops->rmsnorm) return KERN_E_UNSUPPORTED;
    if (!x || !w || !out || n <= 0 || dim <= 0) return KERN_E_INVAL;
    return b->ops->rmsnorm(b->ctx, x, w, n, dim, eps, out);
}

int kern_rope(kern_backend *b, float *x, const int32_t *pos, int n, int n_heads, int head_dim,
              float theta, const float *freq, kern_rope_style style)
{
    if (!b->ops || !b->ops->rope) return KERN_E_UNSUPPORTED;
    if (!x || !pos || n <= 0 || n_heads <= 0 || head_dim <= 0 || (head_dim & 1)) return KERN_E_INVAL;
    return b->ops->rope(b->ctx, x, pos, n, n_heads, head_dim, theta, freq, style);
}

int kern_swiglu(kern_backend *b, const float *gate, const float *up, int64_t count, float *out)
{
    if (!b->ops || !b->ops->swiglu) return KERN_E_UNSUPPORTED;
    if (!gate || !up || !out || count <= 0) return KERN_E_INVAL;
    return b->ops->swiglu(b->ctx, gate, up, count, out);
}

int kern_attention(kern_backend *b, const kern_attn_args *a)
{
    if (!b->ops || !b->ops->attention) return KERN_E_UNSUPPORTED;
    if (!a || a->n <= 0 || a->n_heads <= 0 || a->n_kv_heads <= 0 || a->head_dim <= 0 ||
        a->n_heads % a->n_kv_heads || a->block_tokens <= 0 || a->max_pos <= 0 ||
        (a->kv_dtype != KERN_F32 && a->kv_dtype != KERN_F16))
        return KERN_E_INVAL;
    return b->ops->attention(b->ctx, a);
}

int kern_upload(kern_backend *b, kern_matrix *w)
{
    if (!b->ops) return KERN_E_UNSUPPORTED;
    if (!b->ops->upload) return KERN_OK; /* host backends read weights in place */
    return b->ops->upload(b->ctx, w);
}

void kern_release(kern_backend *b, kern_matrix *w)
{
    if (b && b->ops && b->ops->release) b->ops->release(b->ctx, w);
}


void kern_get_xfer_stats(kern_backend *b, kern_xfer_stats *out)
{
    memset(out, 0, sizeof *out);
    if (b && b->ops && b->ops->xfer_stats) b->ops->xfer_stats(b->ctx, out);
}
