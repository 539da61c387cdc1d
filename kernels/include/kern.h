/* kern.h — the one numeric interface the engine calls; CPU (kernels/cpu) and CUDA (kernels/cuda)
 * backends implement it. A backend is { ops table, private context }; the kern_* wrappers check
 * for NULL entries so the engine never calls a missing op and never includes a backend header.
 * Thread contract: one backend object is driven by one thread at a time (the engine's step
 * thread); a backend may use worker threads of its own inside a call.
 *
 * Memory: every pointer an op takes for activations, norm weights, token ids, positions, block
 * tables and the KV pool is an address in the BACKEND's memory: kern_buf_addr(buf) + offset of a
 * kern_buf the backend allocated. On a host backend (kern_backend_host_memory: the CPU) that is
 * plain host memory and any host pointer will do; on a device backend (CUDA) it is device memory,
 * ops never copy to or from the host, and a host pointer is refused (KERN_E_INVAL) where the
 * backend can tell. Only kern_buf_write / kern_buf_read cross between host and device. Ops run in
 * order; a device backend may run them asynchronously, and kern_buf_read waits for them. Weights
 * (kern_matrix) are host views that kern_upload copies once. */
#ifndef KERN_H
#define KERN_H

#include <stddef.h>
#include <stdint.h>

typedef enum kern_status {
    KERN_OK = 0,
    KERN_E_INVAL = -1,        /* bad shapes or arguments */
    KERN_E_UNSUPPORTED = -2,  /* this backend lacks the op or dtype */
    KERN_E_NOMEM = -3,
    KERN_E_DEVICE = -4,       /* CUDA / driver failure */
    KERN_E_AGAIN = -5,        /* recording a step (step_begin): this op cannot be recorded;
                                 nothing of the step has run, issue it again as it comes */
} kern_status;

const char *kern_strerror(int status);

typedef enum kern_dtype {
    KERN_F32 = 0,
    KERN_F16 = 1,
    KERN_BF16 = 2,
    KERN_CLAQ = 3,            /* packed CLAQ matrix, see kern_claq.h */
    KERN_Q8_ROW = 4,          /* int8 [rows][cols], then one float scale per row [rows]:
                                 w[r][c] = q[r][c] * scale[r]. Gathered (kern_embed) and, as a
                                 tied head, multiplied: y[r] = scale[r] * sum_c q[r][c] x[c] */
} kern_dtype;

size_t kern_dtype_size(kern_dtype t); /* bytes per element of a dense dtype (1 for KERN_Q8_ROW,
                                         whose scales come on top); 0 for KERN_CLAQ */
/* Bytes of a dense matrix's data: rows * cols * element size, plus the scales of KERN_Q8_ROW;
 * 0 for KERN_CLAQ. */
size_t kern_dense_bytes(kern_dtype t, int64_t rows, int64_t cols);
const char *kern_dtype_name(kern_dtype t);

typedef struct kern_claq kern_claq;   /* packed CLAQ matrix view (kern_claq.h) */

/* A weight matrix W [rows = out features][cols = in features] (nn.Linear layout).
 * Dense: data is row-major rows x cols of dtype. CLAQ: claq describes the packed layout.
 * The matrix never owns data/claq: they are views into a mapped file or buffers owned by the
 * model; `dev` is the backend's own copy (uploaded once), owned and freed by that backend. */
typedef struct kern_matrix {
    kern_dtype dtype;
    int64_t rows;             /* out features */
    int64_t cols;             /* in features */
    const void *data;         /* dense: [rows][cols] of dtype; borrowed */
    const kern_claq *claq;    /* KERN_CLAQ: packed view; borrowed */
    void *dev;                /* backend-private copy or NULL; owned by the backend */
} kern_matrix;

typedef enum kern_rope_style {
    KERN_ROPE_INTERLEAVED = 0, /* llama2.c / Meta: rotate pairs (2i, 2i+1) */
    KERN_ROPE_HALF = 1,        /* Hugging Face rotate_half: pairs (i, i + head_dim/2) */
} kern_rope_style;

/* Attention over a paged KV cache for a batch of tokens that may belong to different sequences.
 * Token t attends to positions 0..pos[t] of its own sequence, whose keys/values live in blocks
 * bt[row][p / block_tokens], slot p % block_tokens, where row = bt_row[t] (t when bt_row is NULL):
 * one table row per sequence, so a prefill of many tokens of one sequence sends its table once.
 * The caller has already written the keys/values of every token in the batch for this layer
 * (kern_kv_write). Layout of one block for this layer: k_base + block * block_stride +
 * slot * kv_dim (likewise v). All pointers are backend memory. */
typedef struct kern_attn_args {
    int n;                              /* tokens in the batch */
    int n_heads, n_kv_heads, head_dim;  /* GQA: n_heads % n_kv_heads == 0 */
    const float *q;                     /* [n][n_heads * head_dim] */
    float *out;                         /* [n][n_heads * head_dim] */
    const int32_t *pos;                 /* [n] */
    const int32_t *bt;                  /* [rows][bt_stride] block ids, row per sequence */
    const int32_t *bt_row;              /* [n] row of bt for token t, or NULL: row t */
    int bt_stride;                      /* int32 entries per row (>= max_pos / block_tokens) */
    kern_dtype kv_dtype;                /* entries of the pool: KERN_F32 or KERN_F16 */
    const void *k_base, *v_base;        /* this layer's view of the KV pool */
    int64_t block_stride;               /* entries from one block to the next */
    int block_tokens;                   /* positions per block */
    int max_pos;                        /* upper bound of pos[] + 1 (scratch sizing) */
    int n_seqs;                         /* a hint: runs of consecutive tokens on one bt row
                                           (one per sequence in a step); 0: unknown. A device
                                           backend serves a prompt's tokens together when
                                           n >= 2 n_seqs; results never depend on it */
} kern_attn_args;

/* Writes this step's keys and values into their cache slots: for t < n, k[t] and v[t] (kv_dim
 * fp32 each) go to entry slot[t] of this layer's view, i.e. block slot[t] / block_tokens, slot
 * slot[t] % block_tokens (offset block * block_stride + slot * kv_dim), rounded to kv_dtype.
 * With rope_pos set, the step's RoPE comes first, in the same op: q [n][n_heads * head_dim] and
 * k (kv_dim / head_dim heads) are rotated in place at rope_pos[t] exactly as kern_rope rotates
 * them (same bits), then k is written rotated (one op where there were three). */
typedef struct kern_kv_write_args {
    int n, kv_dim;
    float *k;                           /* [n][kv_dim]; rotated in place with rope_pos */
    const float *v;                     /* [n][kv_dim] */
    const int32_t *slot;                /* [n] block * block_tokens + slot in block */
    kern_dtype kv_dtype;                /* KERN_F32 or KERN_F16 */
    void *k_base, *v_base;              /* this layer's view of the pool */
    int64_t block_stride;
    int block_tokens;
    /* optional RoPE (kern_rope's arguments); rope_pos NULL: none, the rest is ignored */
    const int32_t *rope_pos;            /* [n] */
    float *q;                           /* [n][n_heads * head_dim], rotated in place */
    int n_heads, head_dim;              /* head_dim even, dividing kv_dim */
    float theta;
    const float *freq;                  /* [head_dim / 2] or NULL */
    kern_rope_style style;
} kern_kv_write_args;

/* How one row's next token is chosen by kern_sample: eng_sampler's rules (logit bias,
 * repetition / presence / frequency penalties, a grammar's mask of allowed tokens, temperature,
 * top-k, top-p, min-p, and the pick's logprobs). The mask is built on the host (the grammar's
 * state) and sent with the step; the logits never leave the device. */
typedef struct kern_sample_params {
    float temperature;          /* <= 0: greedy (the largest adjusted logit, lowest id on ties) */
    int32_t top_k;              /* <= 0: off */
    float top_p;                /* >= 1: off */
    float min_p;                /* <= 0: off */
    double u;                   /* the row's uniform draw in [0, 1), from the host's RNG */
    int32_t adj_off;            /* the row's entries in the adj array: n_bias bias entries, */
    int32_t n_bias, n_pen;      /* then n_pen penalty entries (distinct tokens) */
    int32_t n_logprobs;         /* < 0: none; 0..KERN_MAX_TOP_LOGPROBS: the chosen token's
                                   log-probability and that many alternatives, into lp[t] */
    int32_t has_allow;          /* 0: every token may be chosen; 1: only those whose bit is set
                                   in the row's mask (a grammar), eng_sampler_set_allow's: */
    int32_t allow_off;          /* the mask's first word in kern_sample's allow array: bit i of
                                   word allow_off + i / 32 (bit i % 32) is token i. A banned
                                   token's logit becomes -inf after bias and penalties (neither
                                   can lift a ban), and the logprobs are of the masked row */
} kern_sample_params;

/* The log-probabilities of a pick (eng_sampler's: of the adjusted logits, before temperature
 * and truncation; alternatives descending, lowest id first on ties). */
#define KERN_MAX_TOP_LOGPROBS 20
typedef struct kern_sample_lp {
    int32_t token;
    float logprob;
    int32_t n_top;
    int32_t top_ids[KERN_MAX_TOP_LOGPROBS];
    float top_logprobs[KERN_MAX_TOP_LOGPROBS];
} kern_sample_lp;

/* An adjustment of one logit, applied before anything else, in eng_sampler's order: every bias
 * entry in turn (x[token] += val), then the penalty entries (a logit that is not NaN: divided by
 * rep if positive, else multiplied by it, when rep != 1; then x[token] -= val). */
typedef struct kern_sample_adj {
    int32_t token;
    float rep;
    float val;
} kern_sample_adj;

/* Backend memory: what ops read and write. Opaque; allocated and freed through the backend that
 * owns it (a buffer outlives no backend). Contents start undefined. */
typedef struct kern_buf kern_buf;

/* Bytes a backend has copied between host and device memory since it was created. Host
 * backends copy nothing: all zero. */
typedef struct kern_xfer_stats {
    uint64_t h2d_bytes;          /* host -> device, everything (weights included) */
    uint64_t d2h_bytes;          /* device -> host */
    uint64_t weight_h2d_bytes;   /* the part of h2d_bytes that was weights: uploads at load and
                                    matrices staged for one call because they were not resident */
} kern_xfer_stats;

/* Steps a device backend recorded and launched as one unit (kern_backend_ops.step_begin /
 * step_end: CUDA graphs). All zero where nothing is recorded (the CPU, graphs off). */
typedef struct kern_graph_stats {
    uint64_t launched;        /* steps launched as a graph */
    uint64_t updated;         /* of those, through an update of the kept executable graph */
    uint64_t instantiated;    /* executable graphs built (first step of a batch size, or the
                                 step's kernels changed) */
    uint64_t fallbacks;       /* recorded steps dropped and issued again one op at a time */
} kern_graph_stats;

typedef struct kern_backend_ops {
    const char *name;
    void (*destroy)(void *ctx);
    /* y[t][r] = sum_c W[r][c] * x[t][c] for t < n. x [n][cols], y [n][rows].
     * Contract (batch invariance): y[t] must be bit-identical for any n and any thread count. */
    int (*matmul)(void *ctx, const kern_matrix *w, const float *x, int n, float *y);
    /* out[t] = table row ids[t] as fp32; out [n][cols]. Ids must be < rows (checked). */
    int (*embed)(void *ctx, const kern_matrix *table, const int32_t *ids, int n, float *out);
    /* out[t] = x[t] / rms(x[t]) * w, per row of dim; out may alias x. */
    int (*rmsnorm)(void *ctx, const float *x, const float *w, int n, int dim, float eps, float *out);
    /* Rotates x [n][n_heads * head_dim] in place at positions pos[t]. Pair i turns by
     * pos * freq[i], freq [head_dim / 2] (a scaled RoPE: LLaMA-3.1, linear, NTK); freq NULL:
     * freq[i] = theta^(-2i / head_dim), computed as llama2.c does. */
    int (*rope)(void *ctx, float *x, const int32_t *pos, int n, int n_heads, int head_dim,
                float theta, const float *freq, kern_rope_style style);
    /* out[i] = silu(gate[i]) * up[i]; out may alias gate. */
    int (*swiglu)(void *ctx, const float *gate, const float *up, int64_t count, float *out);
    int (*attention)(void *ctx, const kern_attn_args *a);
    /* x[i] += y[i] for i < count (the residual adds). */
    int (*add)(void *ctx, float *x, const float *y, int64_t count);
    int (*kv_write)(void *ctx, const kern_kv_write_args *a);
    /* dst[i] = src[rows[i]] for i < n, rows of dim floats (the rows the head needs). */
    int (*copy_rows)(void *ctx, const float *src, const int32_t *rows, int n, int dim, float *dst);
    /* out[t] = index of the largest of x[t][0..cols): eng_sampler's greedy choice, on the
     * backend. NaN and -inf never win, +inf counts as 3e38 (so ties keep the lowest id, as
     * there); -1 when the row has nothing else. */
    int (*argmax)(void *ctx, const float *x, int n, int cols, int32_t *out);
    /* Backend memory. All optional: NULL means host memory (malloc, memcpy), the host backends'.
     * buf_alloc sets *addr; buf_write / buf_read copy `bytes` between host memory and addr (an
     * address inside a buffer) and are counted in xfer_stats; buf_read waits for the ops queued
     * before it. */
    int (*buf_alloc)(void *ctx, size_t bytes, void **addr);
    void (*buf_free)(void *ctx, void *addr);
    int (*buf_write)(void *ctx, void *addr, const void *src, size_t bytes);
    int (*buf_read)(void *ctx, void *dst, const void *addr, size_t bytes);
    /* Optional: copy a weight to the device once (sets w->dev); NULL on host backends. */
    int (*upload)(void *ctx, kern_matrix *w);
    /* Optional: free what upload made. */
    void (*release)(void *ctx, kern_matrix *w);
    /* Optional: reports whether matmul handles this dtype. NULL means "all". */
    int (*supports)(void *ctx, kern_dtype t);
    /* Optional: host <-> device byte counts so far. NULL: nothing is ever copied (host memory). */
    void (*xfer_stats)(void *ctx, kern_xfer_stats *out);
    /* Optional (device backends; on host memory the engine's sampler reads the logits where
     * they are): out[t] = the token chosen from row t of x [n][vocab] by p[t] (backend memory,
     * [n]) and adj (backend memory, the rows' adjustment entries; NULL when no row has any):
     * the id, -1 when the row has no finite logit, or -2 when the backend leaves the row to the
     * host (too many candidates to sort; the caller samples x[t] itself with the same draw:
     * eng_sampler_sample_adjusted). x is adjusted, masked and cleaned in place as the host
     * sampler adjusts and cleans it. allow (backend memory, or NULL when no row has a mask): the
     * rows' masks (kern_sample_params.allow_off). lp (backend memory, [n], or NULL when no row
     * asks): the picks' log-probabilities for rows with n_logprobs >= 0 and a pick >= 0. */
    int (*sample)(void *ctx, float *x, int n, int vocab, const kern_sample_params *p,
                  const kern_sample_adj *adj, const uint32_t *allow, int32_t *out,
                  kern_sample_lp *lp);
    /* Optional (device backends): the ops issued between step_begin and step_end are one step
     * of n tokens that the backend may record and launch as one unit (a CUDA graph, replayed
     * with the next step's arguments). step_begin returns 1 when it records: the ops then check
     * their arguments and return as usual but run only at step_end, and an op that cannot be
     * recorded returns KERN_E_AGAIN. No buffer copies in between. step_end(ok = 0) drops the
     * recording; it returns KERN_OK once the ops are launched, KERN_E_AGAIN when none of them
     * ran (the caller issues them again without step_begin), or another error. */
    int (*step_begin)(void *ctx, int n);
    int (*step_end)(void *ctx, int ok);
    /* Optional: out[t][r] = silu((W_gate x[t])[r]) * (W_up x[t])[r], the same bits as matmul,
     * matmul and swiglu, in fewer passes (the SwiGLU in the projections' epilogue). Returns
     * KERN_E_UNSUPPORTED, having done nothing, for matrices it does not fuse: the caller then
     * runs the three ops. */
    int (*matmul_swiglu)(void *ctx, const kern_matrix *gate, const kern_matrix *up,
                         const float *x, int n, float *out);
    /* Optional: y[i] = matmul of w[i] and x for count <= KERN_MATMUL_MULTI_MAX matrices with the
     * same input (q, k and v), the same bits as count matmuls, in fewer passes. Returns
     * KERN_E_UNSUPPORTED, having done nothing, for matrices it does not fuse. */
    int (*matmul_multi)(void *ctx, const kern_matrix *const *w, int count, const float *x, int n,
                        float *const *y);
    /* Optional: y = x W^T with relaxed numerics, for prompt tokens: inputs and weights rounded
     * to bfloat16, each product exact, summed in fp32 in one fixed order per row. Not matmul's
     * bits (about 2^-9 relative per term), but y[t] still depends on x[t] alone: the same for
     * any n and thread count. Returns KERN_E_UNSUPPORTED, having done nothing, where the backend,
     * the CPU or the matrix's dtype has no such path (the caller then runs matmul). */
    int (*matmul_bf16)(void *ctx, const kern_matrix *w, const float *x, int n, float *y);
    /* Optional: acc[t][r] += (x W^T)[t][r], the same bits as matmul into a buffer and then add
     * (the residual add in the projection's epilogue). Returns KERN_E_UNSUPPORTED, having done
     * nothing, for matrices it does not fuse. x and acc must not overlap. */
    int (*matmul_add)(void *ctx, const kern_matrix *w, const float *x, int n, float *acc);
    /* Optional: the recorded steps so far. NULL: none ever. */
    void (*graph_stats)(void *ctx, kern_graph_stats *out);
} kern_backend_ops;

/* Where a forward pass spends its time, by kind of op: host wall seconds inside the kern_*
 * calls, summed while a backend's prof points at one (the owner sets and clears it; NULL, the
 * default, costs one test per call). On the CPU backend that is each op's whole time; a device
 * backend returns once the op is queued, so its figures are submission times, not op times. */
typedef enum kern_op_kind {
    KERN_OP_MATMUL_CLAQ,     /* kern_matmul of a packed CLAQ matrix */
    KERN_OP_MATMUL_DENSE,    /* kern_matmul of a dense one (the FP16 head, an FP model) */
    KERN_OP_ATTENTION,       /* kern_attention */
    KERN_OP_OTHER,           /* everything else: embed, norms, RoPE, SwiGLU, adds, KV writes... */
    KERN_OP_KINDS
} kern_op_kind;
typedef struct kern_profile {
    double seconds[KERN_OP_KINDS];
    uint64_t calls[KERN_OP_KINDS];
} kern_profile;
const char *kern_op_kind_name(kern_op_kind k);

typedef struct kern_backend {
    const kern_backend_ops *ops;
    void *ctx;
    kern_profile *prof;   /* NULL, or where the wrappers add each call's time; owner's memory */
} kern_backend;

/* CPU backend with n_threads workers (n_threads <= 0: one per online core). Workers block on a
 * condition variable when idle; they never spin. ISA chosen once from CPUID + XGETBV, or forced
 * by the environment variable CLAQ_ISA=scalar|avx2|avx512 (tests use this). */
int kern_cpu_backend_create(kern_backend *out, int n_threads);
/* Offline mode (on = 1): dense matmuls of 16 or more tokens run as one BLAS sgemm. Several
 * times faster for calibration, but results then depend on the batch size: never for serving,
 * where batch invariance is promised. KERN_E_INVAL for a non-CPU backend. */
int kern_cpu_backend_set_offline(kern_backend *b, int on);
/* Name of the ISA path the CPU backend picked ("scalar", "avx2", "avx512"). */
const char *kern_cpu_isa_name(const kern_backend *b);
/* 1 when b is the CPU backend and its matmul_bf16 runs (AVX-512 with AVX512_BF16), else 0. */
int kern_cpu_bf16(const kern_backend *b);

/* CUDA backend on device `device`; KERN_E_UNSUPPORTED when built without CUDA, when
 * libclaq_cuda.so or the CUDA runtime cannot be loaded, or with no GPU (kern_cuda_device_count
 * says which). Loads the CUDA libraries only when called (kernels/kern_cuda_loader.c). */
int kern_cuda_backend_create(kern_backend *out, int device);
/* Number of CUDA devices (>= 0). When there is none to use (a build without CUDA, the backend
 * library or the CUDA runtime not loadable, no driver, no device node) it returns 0 and writes
 * the reason into why[why_len] (may be NULL). */
int kern_cuda_device_count(char *why, size_t why_len);
/* 1 when the machine shows an NVIDIA GPU node (/dev/nvidiaN, or WSL's /dev/dxg): a cheap test
 * that loads nothing, for --device auto on machines without a GPU. */
int kern_cuda_driver_present(void);

void kern_backend_destroy(kern_backend *b);   /* safe on a zeroed struct; idempotent */
/* 1 when b's memory is host memory (no buffer ops: the CPU backend): ops then take any host
 * pointer, and the engine may read activations directly. */
int kern_backend_host_memory(const kern_backend *b);

/* Backend memory (see the top of this file). kern_buf_alloc: KERN_E_NOMEM when the backend has
 * no room, contents undefined. kern_buf_free: NULL-safe, before the backend is destroyed.
 * kern_buf_addr: the address ops take (host memory on host backends, device memory on CUDA).
 * kern_buf_write / kern_buf_read copy bytes at byte offset off (KERN_E_INVAL past the end);
 * kern_buf_read returns once the copied bytes are final (earlier ops done). */
int kern_buf_alloc(kern_backend *b, size_t bytes, kern_buf **out);
void kern_buf_free(kern_backend *b, kern_buf *buf);
void *kern_buf_addr(const kern_buf *buf);
size_t kern_buf_size(const kern_buf *buf);
int kern_buf_write(kern_backend *b, kern_buf *dst, size_t off, const void *src, size_t bytes);
int kern_buf_read(kern_backend *b, const kern_buf *src, size_t off, void *dst, size_t bytes);

/* Wrappers: check the op exists and the arguments are sane, then call it. */
int kern_matmul(kern_backend *b, const kern_matrix *w, const float *x, int n, float *y);
int kern_embed(kern_backend *b, const kern_matrix *t, const int32_t *ids, int n, float *out);
int kern_rmsnorm(kern_backend *b, const float *x, const float *w, int n, int dim, float eps, float *out);
int kern_rope(kern_backend *b, float *x, const int32_t *pos, int n, int n_heads, int head_dim,
              float theta, const float *freq, kern_rope_style style);
int kern_swiglu(kern_backend *b, const float *gate, const float *up, int64_t count, float *out);
#define KERN_MATMUL_MULTI_MAX 3
/* The matmul_multi op; KERN_E_UNSUPPORTED (nothing done) where b lacks it or does not fuse
 * these matrices. */
int kern_matmul_multi(kern_backend *b, const kern_matrix *const *w, int count, const float *x,
                      int n, float *const *y);
/* The matmul_swiglu op; KERN_E_UNSUPPORTED (nothing done) where b lacks it or does not fuse
 * these matrices. */
int kern_matmul_swiglu(kern_backend *b, const kern_matrix *gate, const kern_matrix *up,
                       const float *x, int n, float *out);
/* The matmul_add op; KERN_E_UNSUPPORTED (nothing done) where b lacks it or does not fuse w. */
int kern_matmul_add(kern_backend *b, const kern_matrix *w, const float *x, int n, float *acc);
/* The matmul_bf16 op; KERN_E_UNSUPPORTED (nothing done) where b, its CPU or w's dtype has
 * none. */
int kern_matmul_bf16(kern_backend *b, const kern_matrix *w, const float *x, int n, float *y);
int kern_attention(kern_backend *b, const kern_attn_args *a);
int kern_add(kern_backend *b, float *x, const float *y, int64_t count);
int kern_kv_write(kern_backend *b, const kern_kv_write_args *a);
int kern_copy_rows(kern_backend *b, const float *src, const int32_t *rows, int n, int dim,
                   float *dst);
int kern_argmax(kern_backend *b, const float *x, int n, int cols, int32_t *out);
int kern_sample(kern_backend *b, float *x, int n, int vocab, const kern_sample_params *p,
                const kern_sample_adj *adj, const uint32_t *allow, int32_t *out,
                kern_sample_lp *lp);
int kern_has_sample(const kern_backend *b);   /* 1 when kern_sample runs on b */
/* The step_begin / step_end ops (kern_backend_ops); 0 and KERN_E_AGAIN where b lacks them. */
int kern_step_begin(kern_backend *b, int n);
int kern_step_end(kern_backend *b, int ok);
int kern_upload(kern_backend *b, kern_matrix *w);
void kern_release(kern_backend *b, kern_matrix *w);
/* Fills *out (all zero for backends without the op). */
void kern_get_xfer_stats(kern_backend *b, kern_xfer_stats *out);
/* The graph_stats op; all zero when b has none. */
void kern_get_graph_stats(kern_backend *b, kern_graph_stats *out);

#endif
