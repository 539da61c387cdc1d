/* kern_cuda.cu — the CUDA backend object: its ops table, the context (device, stream, cuBLAS
 * handle, scratch slots), backend memory (kern_buf: cudaMalloc, counted copies), weight
 * upload/release and the matmul path choice. It does not hold any kernel (kern_cuda_gemv.cu,
 * kern_cuda_claq.cu, kern_cuda_gemm.cu, kern_cuda_ops.cu, kern_cuda_sample.cu do), nor the step
 * graphs (kern_cuda_graph.cu).
 * Thread contract: one host thread drives a backend at a time (kern.h); no global mutable state.
 *
 * Every op takes device addresses (kern.h: activations, norm weights, ids, positions, block
 * tables and the KV pool live in kern_bufs), queues its kernels on the context's stream and
 * returns without waiting; only kern_buf_write / kern_buf_read copy between host and device
 * (kern_buf_read waits for the stream), and both are counted (kern_xfer_stats). Weights are
 * resident: upload() copies them once; a matrix never uploaded is staged per call (counted as
 * weight bytes, so tests can tell).
 *
 * Still to come for the "whole step on the GPU" design (issue 10; the step boundary and its CUDA
 * graphs are in kern_cuda_graph.cu, emulated only so far): more fused ops (rmsnorm into the
 * matmul input; RoPE is in the K/V write, the residual adds in the o and down reductions, the
 * SwiGLU in the gate/up reduction and q/k/v in one reduction already); sampling is on the device
 * (kern_cuda_sample.cu: bias, penalties, grammar masks, temperature, top-k, top-p, min-p,
 * logprobs; block tables and bias / penalty entries stay in backend memory and a step sends only
 * what changed: eng_forward.c, eng_rowstore.c; a grammar's mask goes whole each step);
 * and a way to report which op failed asynchronously (errors surface at the next read).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern_cuda_impl.h"

/* ---- errors -------------------------------------------------------------------------------- */

int kern_cuda__fail(struct kern_cuda_ctx *ctx, const char *what, const char *why, const char *file,
                    int line)
{
    if (ctx) {
        const char *base = strrchr(file, '/');
        snprintf(ctx->err, sizeof ctx->err, "%s: %s at %s:%d", what, why ? why : "?",
                 base ? base + 1 : file, line);
    }
    return KERN_E_DEVICE;
}

/* ---- scratch ------------------------------------------------------------------------------- */

int kern_cuda__slot(kern_cuda_ctx *c, kern_cuda_slot s, size_t bytes, void **out)
{
    kern_cuda_buf *b = &c->slot[s];
    if (bytes == 0) bytes = 16;
    if (b->bytes < bytes) {
        /* a recorded step may already use the old memory, and nothing has run: grow it when
         * the step is issued again (kern_cuda_graph.cu) */
        if (c->recording) return KERN_E_AGAIN;
        size_t want = bytes + bytes / 4;   /* some headroom: shapes grow in steps */
        want = (want + 255) & ~(size_t)255;
        if (b->ptr) {
            /* the stream may still read the old buffer */
            KERN_CUDA_CHECK(c, cudaStreamSynchronize(c->stream));
            KERN_CUDA_CHECK(c, cudaFree(b->ptr));
            b->ptr = NULL;
            b->bytes = 0;
        }
        cudaError_t e = cudaMalloc(&b->ptr, want);
        if (e == cudaErrorMemoryAllocation) {
            (void)cudaGetLastError();   /* clear the non-sticky error */
            b->ptr = NULL;
            kern_cuda__fail(c, "cudaMalloc(scratch slot)", cudaGetErrorString(e), __FILE__,
                            __LINE__);
            return KERN_E_NOMEM;
        }
        if (e != cudaSuccess) {
            b->ptr = NULL;
            return kern_cuda__fail(c, "cudaMalloc(scratch slot)", cudaGetErrorString(e),
                                   __FILE__, __LINE__);
        }
        b->bytes = want;
    }
#ifdef CLAQ_CUDA_EMU
    /* Emulator builds (tests/kernels/cuda_emu): a slot is scratch, so fill it with NaN bytes on
     * every use; a kernel that reads part of it nobody wrote in this op then fails its test
     * instead of passing on stale results of an earlier op. */
    KERN_CUDA_CHECK(c, cudaMemsetAsync(b->ptr, 0xff, bytes, c->stream));
#endif
    *out = b->ptr;
    return KERN_OK;
}

int kern_cuda__dev(kern_cuda_ctx *c, const void *p, const char *what)
{
    if (!c->check_ptrs) return 1;
    cudaPointerAttributes a;
    cudaError_t e = cudaPointerGetAttributes(&a, p);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        kern_cuda__fail(c, what, cudaGetErrorString(e), __FILE__, __LINE__);
        return 0;
    }
    if (a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged) return 1;
    snprintf(c->err, sizeof c->err, "%s: %p is not device memory (ops take kern_buf addresses)",
             what, p);
    return 0;
}

/* Copies a host weight into SLOT_W for one call (a matrix that was never uploaded). */
static int stage_weight(kern_cuda_ctx *c, const void *host, size_t bytes, void **out)
{
    if (c->recording) return KERN_E_AGAIN;   /* a host copy is not recorded */
    int rc = kern_cuda__slot(c, KERN_CUDA_SLOT_W, bytes, out);
    if (rc) return rc;
    KERN_CUDA_CHECK(c, cudaMemcpyAsync(*out, host, bytes, cudaMemcpyHostToDevice, c->stream));
    c->xfer.h2d_bytes += bytes;
    c->xfer.weight_h2d_bytes += bytes;
    return KERN_OK;
}

/* ---- backend memory (kern_buf) ------------------------------------------------------------- */

static int cuda_buf_alloc(void *ctx, size_t bytes, void **addr)
{
    kern_cuda_ctx *c = (kern_cuda_ctx *)ctx;
    *addr = NULL;
    KERN_CUDA_CHECK(c, cudaSetDevice(c->device));
    cudaError_t e = cudaMalloc(addr, bytes);
    if (e != cudaSuccess) {
        *addr = NULL;
        (void)cudaGetLastError();   /* an allocation failure is not sticky */
        kern_cuda__fail(c, "cudaMalloc(buffer)", cudaGetErrorString(e), __FILE__, __LINE__);
        return e == cudaErrorMemoryAllocation ? KERN_E_NOMEM : KERN_E_DEVICE;
    }
    return KERN_OK;
}

static void cuda_buf_free(void *ctx, void *addr)
{
    kern_cuda_ctx *c = (kern_cuda_ctx *)ctx;
    if (!addr) return;
    /* queued ops may still read it */
    if (cudaSetDevice(c->device) == cudaSuccess) (void)cudaStreamSynchronize(c->stream);
    (void)cudaFree(addr);
}

static int cuda_buf_write(void *ctx, void *addr, const void *src, size_t bytes)
{
    kern_cuda_ctx *c = (kern_cuda_ctx *)ctx;
    if (c->recording) return KERN_E_INVAL;   /* copies come before step_begin or after step_end */
    KERN_CUDA_CHECK(c, cudaSetDevice(c->device));
    /* from pageable memory the copy has left src when the call returns: src is free to reuse */
    KERN_CUDA_CHECK(c, cudaMemcpyAsync(addr, src, bytes, cudaMemcpyHostToDevice, c->stream));
    c->xfer.h2d_bytes += bytes;
    return KERN_OK;
}

static int cuda_buf_read(void *ctx, void *dst, const void *addr, size_t bytes)
{
    kern_cuda_ctx *c = (kern_cuda_ctx *)ctx;
    if (c->recording) return KERN_E_INVAL;
    KERN_CUDA_CHECK(c, cudaSetDevice(c->device));
    KERN_CUDA_CHECK(c, cudaMemcpyAsync(dst, addr, bytes, cudaMemcpyDeviceToHost, c->stream));
    KERN_CUDA_CHECK(c, cudaStreamSynchronize(c->stream));
    c->xfer.d2h_bytes += bytes;
    return KERN_OK;
}

/* ---- weights ------------------------------------------------------------------------------- */

static int cuda_dense_ok(kern_dtype t)
{
    return t == KERN_F32 || t == KERN_F16 || t == KERN_BF16;
}

/* Local copy of kern_dtype_size: this library links after claq_engine, so it must not call back
 * into it. */
static size_t cuda_dtype_size(kern_dtype t)
{
    return t == KERN_F32 ? 4 : (t == KERN_F16 || t == KERN_BF16) ? 2 : t == KERN_Q8_ROW ? 1 : 0;
}

/* Bytes of a dense weight's data (KERN_Q8_ROW: its codes, then a float scale per row). */
static size_t cuda_dense_bytes(const kern_matrix *m)
{
    size_t n = (size_t)m->rows * (size_t)m->cols * cuda_dtype_size(m->dtype);
    return m->dtype == KERN_Q8_ROW ? n + (size_t)m->rows * sizeof(float) : n;
}

/* Dense tables the embedding gather reads (a KERN_Q8_ROW table is only ever gathered). */
static int cuda_gather_ok(kern_dtype t)
{
    return cuda_dense_ok(t) || t == KERN_Q8_ROW;
}

static void cuda_weight_free(kern_cuda_weight *w)
{
    if (!w) return;
    if (w->data) cudaFree(w->data);   /* result ignored: nothing useful to do on teardown */
    w->data = NULL;
    kern_cuda__claq_release(w);
}

/* Builds a device copy of m into *w (zeroed by the caller). */
static int cuda_weight_build(kern_cuda_ctx *c, const kern_matrix *m, kern_cuda_weight *w)
{
    w->dtype = m->dtype;
    w->rows = m->rows;
    w->cols = m->cols;
    if (m->dtype == KERN_CLAQ) return kern_cuda__claq_upload(c, m, w);
    if (!cuda_gather_ok(m->dtype)) return KERN_E_UNSUPPORTED;
    if (!m->data) return KERN_E_INVAL;
    size_t bytes = cuda_dense_bytes(m);
    cudaError_t e = cudaMalloc(&w->data, bytes);
    if (e != cudaSuccess) {
        w->data = NULL;
        (void)cudaGetLastError();
        kern_cuda__fail(c, "cudaMalloc(weight)", cudaGetErrorString(e), __FILE__, __LINE__);
        return e == cudaErrorMemoryAllocation ? KERN_E_NOMEM : KERN_E_DEVICE;
    }
    KERN_CUDA_CHECK(c, cudaMemcpyAsync(w->data, m->data, bytes, cudaMemcpyHostToDevice,
                                       c->stream));
    KERN_CUDA_CHECK(c, cudaStreamSynchronize(c->stream));
    c->xfer.h2d_bytes += bytes;
    c->xfer.weight_h2d_bytes += bytes;
    return KERN_OK;
}

static int cuda_check_matrix(const kern_matrix *m)
{
    if (!m || m->rows <= 0 || m->cols <= 0 || m->rows > INT32_MAX || m->cols > INT32_MAX)
        return KERN_E_INVAL;
    if (m->dtype == KERN_CLAQ ? !m->claq : !m->data) return KERN_E_INVAL;
    return KERN_OK;
}

static int cuda_upload(void *ctx, kern_matrix *m)
{
    kern_cuda_ctx *c = (kern_cuda_ctx *)ctx;
    int rc = cuda_check_matrix(m);
    if (rc) return rc;
    if (m->dev) return KERN_OK;   /* already resident */
    KERN_CUDA_CHECK(c, cudaSetDevice(c->device));
    kern_cuda_weight *w = (kern_cuda_weight *)calloc(1, sizeof *w);
    if (!w) return KERN_E_NOMEM;
    rc = cuda_weight_build(c, m, w);
    if (rc) {
        cuda_weight_free(w);
        free(w);
        return rc;
    }
    m->dev = w;
    return KERN_OK;
}

static void cuda_release(void *ctx, kern_matrix *m)
{
    kern_cuda_ctx *c = (kern_cuda_ctx *)ctx;
    if (!m || !m->dev) return;
    if (cudaSetDevice(c->device) == cudaSuccess) (void)cudaStreamSynchronize(c->stream);
    kern_cuda_weight *w = (kern_cuda_weight *)m->dev;
    cuda_weight_free(w);
    free(w);
    m->dev = NULL;
}

/* The device copy of m for one call: the resident one, or a temporary built into *tmp. A CLAQ
 * temporary owns device memory (the caller frees it with kern_cuda__claq_release); a dense one
 * borrows SLOT_W and must not be freed. Matrices the engine uploaded never take this path. */
static int cuda_weight_for_call(kern_cuda_ctx *c, const kern_matrix *m, kern_cuda_weight *tmp,
                                const kern_cuda_weight **out)
{
    if (m->dev) {
        const kern_cuda_weight *w = (const kern_cuda_weight *)m->dev;
        if (w->dtype != m->dtype || w->rows != m->rows || w->cols != m->cols) return KERN_E_INVAL;
        *out = w;
        return KERN_OK;
    }
    memset(tmp, 0, sizeof *tmp);
    tmp->dtype = m->dtype;
    tmp->rows = m->rows;
    tmp->cols = m->cols;
    if (m->dtype == KERN_CLAQ) {
        int rc = kern_cuda__claq_upload(c, m, tmp);
        if (rc) return rc;
        *out = tmp;
        return KERN_OK;
    }
    if (!cuda_gather_ok(m->dtype)) return KERN_E_UNSUPPORTED;
    size_t bytes = cuda_dense_bytes(m);
    void *d = NULL;
    int rc = stage_weight(c, m->data, bytes, &d);
    if (rc) return rc;
    tmp->data = d;   /* borrowed from SLOT_W: a dense temporary is never passed to weight_free */
    *out = tmp;
    return KERN_OK;
}

/* ---- ops table ----------------------------------------------------------------------------- */

static int cuda_supports(void *ctx, kern_dtype t)
{
    (void)ctx;
    if (cuda_dense_ok(t) || t == KERN_Q8_ROW) return 1;
    if (t == KERN_CLAQ) return kern_cuda__claq_available();
    return 0;
}

/* Device-pointer checks of an op's arguments (kern_cuda__dev); KERN_E_INVAL names the first
 * that is not. */
#define DEV(p) (kern_cuda__dev(c, (p), #p))

static int cuda_matmul(void *ctx, const kern_matrix *m, const float *x, int n, float *y)
{
    kern_cuda_ctx *c = (kern_cuda_ctx *)ctx;
    int rc = cuda_check_matrix(m);
    if (rc) return rc;
    if (!cuda_supports(ctx, m->dtype)) return KERN_E_UNSUPPORTED;
    if (!x || !y || n <= 0) return KERN_E_INVAL;
    if (!DEV(x) || !DEV(y)) return KERN_E_INVAL;
    KERN_CUDA_CHECK(c, cudaSetDevice(c->device));

    const int prefill = kern_cuda__prefill_n(c, n) && m->dtype != KERN_Q8_ROW;
    if (c->recording && (!m->dev || prefill)) return KERN_E_AGAIN;   /* staged, or cuBLAS */
    kern_cuda_weight tmp;
    const kern_cuda_weight *w = NULL;
    rc = cuda_weight_for_call(c, m, &tmp, &w);
    if (rc) return rc;
    int temp_claq = (w == &tmp && m->dtype == KERN_CLAQ);
    if (prefill)
        rc = kern_cuda__gemm_prefill(c, w, x, n, y);
    else if (m->dtype == KERN_CLAQ)
        rc = kern_cuda__gemv_claq(c, w, x, n, y, 0);
    else
        rc = kern_cuda__gemv_dense(c, w, x, n, y);
    if (temp_claq) {
        (void)cudaStreamSynchronize(c->stream);
        kern_cuda__claq_release(&tmp);
    }
    return rc;
}

static int cuda_embed(void *ctx, const kern_matrix *t, const int32_t *ids, int n, float *out)
{
    kern_cuda_ctx *c = (kern_cuda_ctx *)ctx;
    int rc = cuda_check_matrix(t);
    if (rc) return rc;
    if (!ids || !out || n <= 0) return KERN_E_INVAL;
    if (!cuda_gather_ok(t->dtype) && t->dtype != KERN_CLAQ) return KERN_E_UNSUPPORTED;
    if (!DEV(ids) || !DEV(out)) return KERN_E_INVAL;
    if (c->recording && !t->dev) return KERN_E_AGAIN;   /* a staged table is not recorded */
    KERN_CUDA_CHECK(c, cudaSetDevice(c->device));
    kern_cuda_weight tmp;
    const kern_cuda_weight *w = NULL;
    rc = cuda_weight_for_call(c, t, &tmp, &w);
    if (rc) return rc;
    return t->dtype == KERN_CLAQ ? kern_cuda__claq_embed(c, w, ids, n, out)
                                 : kern_cuda__embed(c, w, ids, n, out);
}

static int cuda_rmsnorm(void *ctx, const float *x, const float *w, int n, int dim, float eps,
                        float *out)
{
    kern_cuda_ctx *c = (kern_cuda_ctx *)ctx;
    if (!x || !w || !out || n <= 0 || dim <= 0) return KERN_E_INVAL;
    if (!DEV(x) || !DEV(w) || !DEV(out)) return KERN_E_INVAL;
    KERN_CUDA_CHECK(c, cudaSetDevice(c->device));
    return kern_cuda__rmsnorm(c, x, w, n, dim, eps, out);
}

static int cuda_rope(void *ctx, float *x, const int32_t *pos, int n, int n_heads, int head_dim,
                     float theta, const float *freq, kern_rope_style style)
{
    kern_cuda_ctx *c = (kern_cuda_ctx *)ctx;
    if (!x || !pos || n <= 0 || n_heads <= 0 || head_dim <= 0 || (head_dim & 1)) return KERN_E_INVAL;
    if (style != KERN_ROPE_INTERLEAVED && style != KERN_ROPE_HALF) return KERN_E_INVAL;
    if (!DEV(x) || !DEV(pos) || (freq && !DEV(freq))) return KERN_E_INVAL;
    KERN_CUDA_CHECK(c, cudaSetDevice(c->device));
    return kern_cuda__rope(c, x, pos, n, n_heads, head_dim, theta, freq, style);
}

static int cuda_swiglu(void *ctx, const float *gate, const float *up, int64_t count, float *out)
{
    kern_cuda_ctx *c = (kern_cuda_ctx *)ctx;
    if (!gate || !up || !out || count < 0) return KERN_E_INVAL;
    if (count == 0) return KERN_OK;
    if (!DEV(gate) || !DEV(up) || !DEV(out)) return KERN_E_INVAL;
    KERN_CUDA_CHECK(c, cudaSetDevice(c->device));
    return kern_cuda__swiglu(c, gate, up, count, out);
}

static int cuda_attention(void *ctx, const kern_attn_args *a)
{
    kern_cuda_ctx *c = (kern_cuda_ctx *)ctx;
    if (!a) return KERN_E_INVAL;
    if (!DEV(a->q) || !DEV(a->out) || !DEV(a->pos) || !DEV(a->bt) ||
        (a->bt_row && !DEV(a->bt_row)) || !DEV(a->k_base) || !DEV(a->v_base))
        return KERN_E_INVAL;
    KERN_CUDA_CHECK(c, cudaSetDevice(c->device));
    return kern_cuda__attention(c, a);
}

static int cuda_add(void *ctx, float *x, const float *y, int64_t count)
{
    kern_cuda_ctx *c = (kern_cuda_ctx *)ctx;
    if (!DEV(x) || !DEV(y)) return KERN_E_INVAL;
    KERN_CUDA_CHECK(c, cudaSetDevice(c->device));
    return kern_cuda__add(c, x, y, count);
}

static int cuda_kv_write(void *ctx, const kern_kv_write_args *a)
{
    kern_cuda_ctx *c = (kern_cuda_ctx *)ctx;
    if (!DEV(a->k) || !DEV(a->v) || !DEV(a->slot) || !DEV(a->k_base) || !DEV(a->v_base))
        return KERN_E_INVAL;
    if (a->rope_pos && (!DEV(a->rope_pos) || !DEV(a->q) || (a->freq && !DEV(a->freq))))
        return KERN_E_INVAL;
    KERN_CUDA_CHECK(c, cudaSetDevice(c->device));
    return kern_cuda__kv_write(c, a);
}

static int cuda_copy_rows(void *ctx, const float *src, const int32_t *rows, int n, int dim,
                          float *dst)
{
    kern_cuda_ctx *c = (kern_cuda_ctx *)ctx;
    if (!DEV(src) || !DEV(rows) || !DEV(dst)) return KERN_E_INVAL;
    KERN_CUDA_CHECK(c, cudaSetDevice(c->device));
    return kern_cuda__copy_rows(c, src, rows, n, dim, dst);
}

static int cuda_argmax(void *ctx, const float *x, int n, int cols, int32_t *out)
{
    kern_cuda_ctx *c = (kern_cuda_ctx *)ctx;
    if (!DEV(x) || !DEV(out)) return KERN_E_INVAL;
    KERN_CUDA_CHECK(c, cudaSetDevice(c->device));
    return kern_cuda__argmax(c, x, n, cols, out);
}

static void cuda_xfer_stats(void *ctx, kern_xfer_stats *out)
{
    *out = ((const kern_cuda_ctx *)ctx)->xfer;
}

static void cuda_destroy(void *ctx)
{
    kern_cuda_ctx *c = (kern_cuda_ctx *)ctx;
    if (!c) return;
    (void)cudaSetDevice(c->device);
    if (c->recording) {   /* destroyed mid-step: end the capture, launch nothing */
        cudaGraph_t g = NULL;
        if (cudaStreamEndCapture(c->stream, &g) == cudaSuccess && g) (void)cudaGraphDestroy(g);
        (void)cudaGetLastError();
        c->recording = 0;
    }
    if (c->stream) (void)cudaStreamSynchronize(c->stream);
    kern_cuda__graphs_free(c);
    for (int i = 0; i < KERN_CUDA_SLOT_COUNT; i++)
        if (c->slot[i].ptr) (void)cudaFree(c->slot[i].ptr);
    if (c->cublas) (void)cublasDestroy(c->cublas);
    if (c->stream) (void)cudaStreamDestroy(c->stream);
    free(c);
}

static int cuda_sample(void *ctx, float *x, int n, int vocab, const kern_sample_params *p,
                       const kern_sample_adj *adj, const uint32_t *allow, int32_t *out,
                       kern_sample_lp *lp)
{
    kern_cuda_ctx *c = (kern_cuda_ctx *)ctx;
    if (!DEV(x) || !DEV(p) || !DEV(out) || (adj && !DEV(adj)) || (allow && !DEV(allow)) ||
        (lp && !DEV(lp)))
        return KERN_E_INVAL;
    KERN_CUDA_CHECK(c, cudaSetDevice(c->device));
    return kern_cuda__sample(c, x, n, vocab, p, adj, allow, out, lp);
}

/* 1 when m is a resident CLAQ matrix that a matmul of n tokens runs through the GEMV: what the
 * fused ops below fuse. */
static int claq_gemv_path(const kern_cuda_ctx *c, const kern_matrix *m, int n)
{
    return m->dtype == KERN_CLAQ && m->dev && kern_cuda__claq_available() &&
           !kern_cuda__prefill_n(c, n);
}

/* Gate and up in one pass where both take the CLAQ GEMV path (the reductions and the SwiGLU in
 * one kernel); anything else: KERN_E_UNSUPPORTED, nothing done. */
static int cuda_matmul_swiglu(void *ctx, const kern_matrix *g, const kern_matrix *u,
                              const float *x, int n, float *out)
{
    kern_cuda_ctx *c = (kern_cuda_ctx *)ctx;
    if (!claq_gemv_path(c, g, n) || !claq_gemv_path(c, u, n)) return KERN_E_UNSUPPORTED;
    int rc = cuda_check_matrix(g);
    if (!rc) rc = cuda_check_matrix(u);
    if (rc) return rc;
    if (!DEV(x) || !DEV(out)) return KERN_E_INVAL;
    KERN_CUDA_CHECK(c, cudaSetDevice(c->device));
    return kern_cuda__gemv_claq_swiglu(c, (const kern_cuda_weight *)g->dev,
                                       (const kern_cuda_weight *)u->dev, x, n, out);
}

/* acc += x W^T with the add in the reduction's epilogue where w takes the CLAQ GEMV path (the o
 * and down projections into the residual stream: one kernel and one pass over acc fewer);
 * anything else: KERN_E_UNSUPPORTED, nothing done. */
static int cuda_matmul_add(void *ctx, const kern_matrix *w, const float *x, int n, float *acc)
{
    kern_cuda_ctx *c = (kern_cuda_ctx *)ctx;
    if (!claq_gemv_path(c, w, n)) return KERN_E_UNSUPPORTED;
    int rc = cuda_check_matrix(w);
    if (rc) return rc;
    if (!DEV(x) || !DEV(acc)) return KERN_E_INVAL;
    KERN_CUDA_CHECK(c, cudaSetDevice(c->device));
    return kern_cuda__gemv_claq(c, (const kern_cuda_weight *)w->dev, x, n, acc, 1);
}

/* q, k and v in one reduction where all take the CLAQ GEMV path; anything else:
 * KERN_E_UNSUPPORTED, nothing done. */
static int cuda_matmul_multi(void *ctx, const kern_matrix *const *w, int count, const float *x,
                             int n, float *const *y)
{
    kern_cuda_ctx *c = (kern_cuda_ctx *)ctx;
    for (int i = 0; i < count; i++)
        if (!claq_gemv_path(c, w[i], n)) return KERN_E_UNSUPPORTED;
    const kern_cuda_weight *dw[KERN_MATMUL_MULTI_MAX];
    for (int i = 0; i < count; i++) {
        int rc = cuda_check_matrix(w[i]);
        if (rc) return rc;
        if (!DEV(y[i])) return KERN_E_INVAL;
        dw[i] = (const kern_cuda_weight *)w[i]->dev;
    }
    if (!DEV(x)) return KERN_E_INVAL;
    KERN_CUDA_CHECK(c, cudaSetDevice(c->device));
    return kern_cuda__gemv_claq_multi(c, dw, count, x, n, y);
}

static int cuda_step_begin(void *ctx, int n)
{
    return kern_cuda__step_begin((kern_cuda_ctx *)ctx, n);
}

static int cuda_step_end(void *ctx, int ok)
{
    return kern_cuda__step_end((kern_cuda_ctx *)ctx, ok);
}

static void cuda_graph_stats(void *ctx, kern_graph_stats *out)
{
    *out = ((const kern_cuda_ctx *)ctx)->gstats;
}

static const kern_backend_ops kern_cuda_ops = {
    /* .name       = */ "cuda",
    /* .destroy    = */ cuda_destroy,
    /* .matmul     = */ cuda_matmul,
    /* .embed      = */ cuda_embed,
    /* .rmsnorm    = */ cuda_rmsnorm,
    /* .rope       = */ cuda_rope,
    /* .swiglu     = */ cuda_swiglu,
    /* .attention  = */ cuda_attention,
    /* .add        = */ cuda_add,
    /* .kv_write   = */ cuda_kv_write,
    /* .copy_rows  = */ cuda_copy_rows,
    /* .argmax     = */ cuda_argmax,
    /* .buf_alloc  = */ cuda_buf_alloc,
    /* .buf_free   = */ cuda_buf_free,
    /* .buf_write  = */ cuda_buf_write,
    /* .buf_read   = */ cuda_buf_read,
    /* .upload     = */ cuda_upload,
    /* .release    = */ cuda_release,
    /* .supports   = */ cuda_supports,
    /* .xfer_stats = */ cuda_xfer_stats,
    /* .sample     = */ cuda_sample,
    /* .step_begin = */ cuda_step_begin,
    /* .step_end   = */ cuda_step_end,
    /* .matmul_swiglu = */ cuda_matmul_swiglu,
    /* .matmul_multi = */ cuda_matmul_multi,
    /* .matmul_bf16 = */ NULL,   /* prompts on the GPU take matmul (cuBLAS fp16 from 65 tokens) */
    /* .matmul_add = */ cuda_matmul_add,
    /* .graph_stats = */ cuda_graph_stats,
};

/* ---- entry points (kern_cuda_impl_*, see kern_cuda.h; kern_cuda_loader.c calls them) -------- */

extern "C" int kern_cuda_impl_device_count(char *why, size_t why_len)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        if (why && why_len) snprintf(why, why_len, "%s", cudaGetErrorString(e));
        (void)cudaGetLastError();
        return 0;
    }
    if (n == 0 && why && why_len) snprintf(why, why_len, "the CUDA runtime reports 0 devices");
    return n;
}

extern "C" const char *kern_cuda_impl_last_error(const kern_backend *b)
{
    if (!b || b->ops != &kern_cuda_ops || !b->ctx) return "";
    return ((const kern_cuda_ctx *)b->ctx)->err;
}

extern "C" int kern_cuda_impl_set_prefill_min_n(kern_backend *b, int min_n)
{
    if (!b || b->ops != &kern_cuda_ops || !b->ctx || min_n < 0) return KERN_E_INVAL;
    ((kern_cuda_ctx *)b->ctx)->prefill_min_n = min_n;
    return KERN_OK;
}

extern "C" int kern_cuda_impl_set_mma_min_n(kern_backend *b, int min_n)
{
    if (!b || b->ops != &kern_cuda_ops || !b->ctx || min_n < 0) return KERN_E_INVAL;
    ((kern_cuda_ctx *)b->ctx)->mma_min_n = min_n;
    return KERN_OK;
}

extern "C" int kern_cuda_impl_set_graphs(kern_backend *b, int on)
{
    if (!b || b->ops != &kern_cuda_ops || !b->ctx || (on != 0 && on != 1)) return KERN_E_INVAL;
    kern_cuda_ctx *c = (kern_cuda_ctx *)b->ctx;
    if (c->recording) return KERN_E_INVAL;
    c->graphs = on;
    return KERN_OK;
}

extern "C" void kern_cuda_impl_get_graph_stats(const kern_backend *b, kern_cuda_graph_stats *out)
{
    memset(out, 0, sizeof *out);
    if (b && b->ops == &kern_cuda_ops && b->ctx) *out = ((const kern_cuda_ctx *)b->ctx)->gstats;
}

extern "C" int kern_cuda_impl_backend_create(kern_backend *out, int device)
{
    if (!out) return KERN_E_INVAL;
    out->ops = NULL;
    out->ctx = NULL;
    int count = kern_cuda_impl_device_count(NULL, 0);
    if (device < 0 || device >= count) return KERN_E_UNSUPPORTED;

    kern_cuda_ctx *c = (kern_cuda_ctx *)calloc(1, sizeof *c);
    if (!c) return KERN_E_NOMEM;
    int rc = KERN_OK;
    cudaDeviceProp prop;
    c->device = device;
    KERN_CUDA_TRY(c, cudaSetDevice(device), rc, fail);
    KERN_CUDA_TRY(c, cudaGetDeviceProperties(&prop, device), rc, fail);
    c->sm_count = prop.multiProcessorCount > 0 ? prop.multiProcessorCount : 1;
    c->smem_optin = prop.sharedMemPerBlockOptin;
    KERN_CUDA_TRY(c, cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), rc, fail);
    KERN_CUBLAS_TRY(c, cublasCreate(&c->cublas), rc, fail);
    KERN_CUBLAS_TRY(c, cublasSetStream(c->cublas, c->stream), rc, fail);
    {
#ifdef CLAQ_CUDA_EMU
        c->check_ptrs = 1;
#else
        const char *chk = getenv("CLAQ_CUDA_CHECK_PTRS");
        c->check_ptrs = chk && strcmp(chk, "1") == 0;
#endif
        const char *env = getenv("CLAQ_CUDA_PREFILL_MIN_N");
        if (env && *env) {
            char *end = NULL;
            long v = strtol(env, &end, 10);
            if (end && *end == '\0' && v >= 0 && v <= INT32_MAX) c->prefill_min_n = (int)v;
        }
        const char *mma = getenv("CLAQ_CUDA_MMA_MIN_N");
        if (mma && *mma) {
            char *end = NULL;
            long v = strtol(mma, &end, 10);
            if (end && *end == '\0' && v >= 0 && v <= INT32_MAX) c->mma_min_n = (int)v;
        }
        const char *gr = getenv("CLAQ_CUDA_GRAPHS");
        c->graphs = gr && strcmp(gr, "1") == 0;
    }
    out->ops = &kern_cuda_ops;
    out->ctx = c;
    out->prof = NULL;
    return KERN_OK;
fail:
    cuda_destroy(c);
    return rc;
}
