/* kern_backend.c — the kern_* wrappers every caller goes through: argument checks, NULL-op
 * checks, the optional per-kind timing (kern_profile), and backend memory (kern_buf: host memory
 * unless the backend brings its own). The wrappers never read an op's arguments behind its
 * pointers (they may be device memory). Backend-neutral; no state of their own. Same thread
 * contract as the backend a call names. */
#include "kern.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

struct kern_buf {
    void *addr;      /* backend memory; owned (freed through the backend that made it) */
    size_t bytes;
};

const char *kern_strerror(int status)
{
    switch (status) {
    case KERN_OK: return "ok";
    case KERN_E_INVAL: return "invalid kernel arguments";
    case KERN_E_UNSUPPORTED: return "operation not supported by this backend";
    case KERN_E_NOMEM: return "out of memory";
    case KERN_E_DEVICE: return "device error";
    case KERN_E_AGAIN: return "cannot be recorded in a step graph";
    default: return "unknown kernel error";
    }
}

size_t kern_dtype_size(kern_dtype t)
{
    switch (t) {
    case KERN_F32: return 4;
    case KERN_F16: return 2;
    case KERN_BF16: return 2;
    case KERN_Q8_ROW: return 1;
    default: return 0;
    }
}

size_t kern_dense_bytes(kern_dtype t, int64_t rows, int64_t cols)
{
    size_t n = (size_t)rows * (size_t)cols * kern_dtype_size(t);
    return t == KERN_Q8_ROW ? n + (size_t)rows * sizeof(float) : n;
}

const char *kern_dtype_name(kern_dtype t)
{
    switch (t) {
    case KERN_F32: return "F32";
    case KERN_F16: return "F16";
    case KERN_BF16: return "BF16";
    case KERN_CLAQ: return "CLAQ";
    case KERN_Q8_ROW: return "Q8_ROW";
    default: return "?";
    }
}

const char *kern_op_kind_name(kern_op_kind k)
{
    switch (k) {
    case KERN_OP_MATMUL_CLAQ: return "CLAQ matmul";
    case KERN_OP_MATMUL_DENSE: return "dense matmul";
    case KERN_OP_ATTENTION: return "attention";
    case KERN_OP_OTHER: return "other ops";
    default: return "?";
    }
}

static double prof_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* rc = CALL, timed into b->prof under KIND when profiling is on. */
#define TIMED(b, kind, CALL)                                                                  \
    do {                                                                                      \
        if (!(b)->prof) return (CALL);                                                        \
        double t0_ = prof_now();                                                              \
        int rc_ = (CALL);                                                                     \
        (b)->prof->seconds[kind] += prof_now() - t0_;                                         \
        (b)->prof->calls[kind]++;                                                             \
        return rc_;                                                                           \
    } while (0)

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
    TIMED(b, w->dtype == KERN_CLAQ ? KERN_OP_MATMUL_CLAQ : KERN_OP_MATMUL_DENSE,
          b->ops->matmul(b->ctx, w, x, n, y));
}

int kern_embed(kern_backend *b, const kern_matrix *t, const int32_t *ids, int n, float *out)
{
    /* ids are backend memory: each backend checks their range where it can read them */
    if (!b->ops || !b->ops->embed) return KERN_E_UNSUPPORTED;
    if (!matrix_ok(t) || !ids || !out || n <= 0) return KERN_E_INVAL;
    TIMED(b, KERN_OP_OTHER, b->ops->embed(b->ctx, t, ids, n, out));
}

int kern_rmsnorm(kern_backend *b, const float *x, const float *w, int n, int dim, float eps, float *out)
{
    if (!b->ops || !b->ops->rmsnorm) return KERN_E_UNSUPPORTED;
    if (!x || !w || !out || n <= 0 || dim <= 0) return KERN_E_INVAL;
    TIMED(b, KERN_OP_OTHER, b->ops->rmsnorm(b->ctx, x, w, n, dim, eps, out));
}

int kern_rope(kern_backend *b, float *x, const int32_t *pos, int n, int n_heads, int head_dim,
              float theta, const float *freq, kern_rope_style style)
{
    if (!b->ops || !b->ops->rope) return KERN_E_UNSUPPORTED;
    if (!x || !pos || n <= 0 || n_heads <= 0 || head_dim <= 0 || (head_dim & 1)) return KERN_E_INVAL;
    TIMED(b, KERN_OP_OTHER,
          b->ops->rope(b->ctx, x, pos, n, n_heads, head_dim, theta, freq, style));
}

int kern_swiglu(kern_backend *b, const float *gate, const float *up, int64_t count, float *out)
{
    if (!b->ops || !b->ops->swiglu) return KERN_E_UNSUPPORTED;
    if (!gate || !up || !out || count <= 0) return KERN_E_INVAL;
    TIMED(b, KERN_OP_OTHER, b->ops->swiglu(b->ctx, gate, up, count, out));
}

int kern_matmul_multi(kern_backend *b, const kern_matrix *const *w, int count, const float *x,
                      int n, float *const *y)
{
    if (!b->ops || !b->ops->matmul_multi) return KERN_E_UNSUPPORTED;
    if (!w || !y || count < 1 || count > KERN_MATMUL_MULTI_MAX || !x || n <= 0)
        return KERN_E_INVAL;
    for (int i = 0; i < count; i++)
        if (!matrix_ok(w[i]) || w[i]->cols != w[0]->cols || !y[i]) return KERN_E_INVAL;
    TIMED(b, w[0]->dtype == KERN_CLAQ ? KERN_OP_MATMUL_CLAQ : KERN_OP_MATMUL_DENSE,
          b->ops->matmul_multi(b->ctx, w, count, x, n, y));
}

int kern_matmul_swiglu(kern_backend *b, const kern_matrix *gate, const kern_matrix *up,
                       const float *x, int n, float *out)
{
    if (!b->ops || !b->ops->matmul_swiglu) return KERN_E_UNSUPPORTED;
    if (!matrix_ok(gate) || !matrix_ok(up) || gate->rows != up->rows || gate->cols != up->cols ||
        !x || !out || n <= 0)
        return KERN_E_INVAL;
    TIMED(b, gate->dtype == KERN_CLAQ ? KERN_OP_MATMUL_CLAQ : KERN_OP_MATMUL_DENSE,
          b->ops->matmul_swiglu(b->ctx, gate, up, x, n, out));
}

int kern_matmul_add(kern_backend *b, const kern_matrix *w, const float *x, int n, float *acc)
{
    if (!b->ops || !b->ops->matmul_add) return KERN_E_UNSUPPORTED;
    if (!matrix_ok(w) || !x || !acc || n <= 0) return KERN_E_INVAL;
    TIMED(b, w->dtype == KERN_CLAQ ? KERN_OP_MATMUL_CLAQ : KERN_OP_MATMUL_DENSE,
          b->ops->matmul_add(b->ctx, w, x, n, acc));
}

int kern_matmul_bf16(kern_backend *b, const kern_matrix *w, const float *x, int n, float *y)
{
    if (!b->ops || !b->ops->matmul_bf16) return KERN_E_UNSUPPORTED;
    if (!matrix_ok(w) || !x || !y || n <= 0) return KERN_E_INVAL;
    TIMED(b, w->dtype == KERN_CLAQ ? KERN_OP_MATMUL_CLAQ : KERN_OP_MATMUL_DENSE,
          b->ops->matmul_bf16(b->ctx, w, x, n, y));
}

int kern_attention(kern_backend *b, const kern_attn_args *a)
{
    if (!b->ops || !b->ops->attention) return KERN_E_UNSUPPORTED;
    if (!a || a->n <= 0 || a->n_heads <= 0 || a->n_kv_heads <= 0 || a->head_dim <= 0 ||
        a->n_heads % a->n_kv_heads || a->block_tokens <= 0 || a->max_pos <= 0 ||
        (a->kv_dtype != KERN_F32 && a->kv_dtype != KERN_F16) || !a->q || !a->out || !a->pos ||
        !a->bt || !a->k_base || !a->v_base ||
        a->bt_stride < (a->max_pos + a->block_tokens - 1) / a->block_tokens ||
        a->block_stride < (int64_t)a->block_tokens * a->n_kv_heads * a->head_dim)
        return KERN_E_INVAL;
    TIMED(b, KERN_OP_ATTENTION, b->ops->attention(b->ctx, a));
}

int kern_add(kern_backend *b, float *x, const float *y, int64_t count)
{
    if (!b->ops || !b->ops->add) return KERN_E_UNSUPPORTED;
    if (!x || !y || count <= 0) return KERN_E_INVAL;
    TIMED(b, KERN_OP_OTHER, b->ops->add(b->ctx, x, y, count));
}

int kern_kv_write(kern_backend *b, const kern_kv_write_args *a)
{
    if (!b->ops || !b->ops->kv_write) return KERN_E_UNSUPPORTED;
    if (!a || a->n <= 0 || a->kv_dim <= 0 || !a->k || !a->v || !a->slot || !a->k_base ||
        !a->v_base || a->block_tokens <= 0 ||
        a->block_stride < (int64_t)a->block_tokens * a->kv_dim ||
        (a->kv_dtype != KERN_F32 && a->kv_dtype != KERN_F16))
        return KERN_E_INVAL;
    if (a->rope_pos &&
        (!a->q || a->n_heads <= 0 || a->head_dim <= 0 || (a->head_dim & 1) ||
         a->kv_dim % a->head_dim || (!(a->theta > 0.0f) && !a->freq) ||
         (a->style != KERN_ROPE_INTERLEAVED && a->style != KERN_ROPE_HALF)))
        return KERN_E_INVAL;
    TIMED(b, KERN_OP_OTHER, b->ops->kv_write(b->ctx, a));
}

int kern_copy_rows(kern_backend *b, const float *src, const int32_t *rows, int n, int dim,
                   float *dst)
{
    if (!b->ops || !b->ops->copy_rows) return KERN_E_UNSUPPORTED;
    if (!src || !rows || !dst || n <= 0 || dim <= 0) return KERN_E_INVAL;
    TIMED(b, KERN_OP_OTHER, b->ops->copy_rows(b->ctx, src, rows, n, dim, dst));
}

int kern_argmax(kern_backend *b, const float *x, int n, int cols, int32_t *out)
{
    if (!b->ops || !b->ops->argmax) return KERN_E_UNSUPPORTED;
    if (!x || !out || n <= 0 || cols <= 0) return KERN_E_INVAL;
    TIMED(b, KERN_OP_OTHER, b->ops->argmax(b->ctx, x, n, cols, out));
}

int kern_sample(kern_backend *b, float *x, int n, int vocab, const kern_sample_params *p,
                const kern_sample_adj *adj, const uint32_t *allow, int32_t *out,
                kern_sample_lp *lp)
{
    if (!b->ops || !b->ops->sample) return KERN_E_UNSUPPORTED;
    if (!x || !p || !out || n <= 0 || vocab <= 0) return KERN_E_INVAL;
    TIMED(b, KERN_OP_OTHER, b->ops->sample(b->ctx, x, n, vocab, p, adj, allow, out, lp));
}

int kern_has_sample(const kern_backend *b)
{
    return b && b->ops && b->ops->sample;
}

int kern_step_begin(kern_backend *b, int n)
{
    if (!b || !b->ops || !b->ops->step_begin || !b->ops->step_end || n <= 0) return 0;
    return b->ops->step_begin(b->ctx, n) == 1;
}

int kern_step_end(kern_backend *b, int ok)
{
    if (!b || !b->ops || !b->ops->step_end) return KERN_E_AGAIN;
    return b->ops->step_end(b->ctx, ok);
}

/* ---- backend memory ------------------------------------------------------------------------ */

int kern_backend_host_memory(const kern_backend *b)
{
    return b && b->ops && !b->ops->buf_alloc;
}

int kern_buf_alloc(kern_backend *b, size_t bytes, kern_buf **out)
{
    *out = NULL;
    if (!b || !b->ops) return KERN_E_UNSUPPORTED;
    if (bytes == 0) bytes = 1;
    if (bytes > SIZE_MAX - 64) return KERN_E_NOMEM;
    kern_buf *k = calloc(1, sizeof *k);
    if (!k) return KERN_E_NOMEM;
    k->bytes = bytes;
    if (b->ops->buf_alloc) {
        int rc = b->ops->buf_alloc(b->ctx, bytes, &k->addr);
        if (rc) {
            free(k);
            return rc;
        }
    } else {
        /* 64-byte aligned (AVX-512 rows); aligned_alloc wants a multiple of the alignment */
        k->addr = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
        if (!k->addr) {
            free(k);
            return KERN_E_NOMEM;
        }
    }
    *out = k;
    return KERN_OK;
}

void kern_buf_free(kern_backend *b, kern_buf *k)
{
    if (!k) return;
    if (b && b->ops && b->ops->buf_free) b->ops->buf_free(b->ctx, k->addr);
    else if (!b || !b->ops || !b->ops->buf_alloc) free(k->addr);
    free(k);
}

void *kern_buf_addr(const kern_buf *k) { return k ? k->addr : NULL; }
size_t kern_buf_size(const kern_buf *k) { return k ? k->bytes : 0; }

int kern_buf_write(kern_backend *b, kern_buf *dst, size_t off, const void *src, size_t bytes)
{
    if (!b || !b->ops || !dst || (!src && bytes) || off > dst->bytes || bytes > dst->bytes - off)
        return KERN_E_INVAL;
    if (bytes == 0) return KERN_OK;
    if (b->ops->buf_write) return b->ops->buf_write(b->ctx, (char *)dst->addr + off, src, bytes);
    memcpy((char *)dst->addr + off, src, bytes);
    return KERN_OK;
}

int kern_buf_read(kern_backend *b, const kern_buf *src, size_t off, void *dst, size_t bytes)
{
    if (!b || !b->ops || !src || (!dst && bytes) || off > src->bytes || bytes > src->bytes - off)
        return KERN_E_INVAL;
    if (bytes == 0) return KERN_OK;
    if (b->ops->buf_read) return b->ops->buf_read(b->ctx, dst, (const char *)src->addr + off, bytes);
    memcpy(dst, (const char *)src->addr + off, bytes);
    return KERN_OK;
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

void kern_get_graph_stats(kern_backend *b, kern_graph_stats *out)
{
    memset(out, 0, sizeof *out);
    if (b && b->ops && b->ops->graph_stats) b->ops->graph_stats(b->ctx, out);
}
