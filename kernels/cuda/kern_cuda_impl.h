/* kern_cuda_impl.h — internals shared by the CUDA backend's .cu files: the backend context (stream,
 * cuBLAS handle, grow-only device scratch slots), the device copy of a weight, and the per-file
 * entry points. Not for the engine (kern.h / kern_cuda.h are). C++ (nvcc) only.
 * Thread contract: a context is driven by one host thread at a time, like every backend. */
#ifndef KERN_CUDA_IMPL_H
#define KERN_CUDA_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "kern_cuda.h"        /* brings kern.h with C linkage */
#include "kern_cuda_check.h"

#define KERN_CUDA_ERR_LEN 320   /* bytes of the recorded last-error text */
#define KERN_CUDA_MAX_TOK 8     /* tokens one GEMV launch handles (batch 1..8 in registers) */

/* Device scratch slots: internal temporaries of one op (split-K partial sums, prefill panels, a
 * weight that was never uploaded). Activations are never staged: ops take device addresses
 * (kern.h). A slot only grows (to the largest request seen) and lives until the context dies.
 * Two ops never run at once (one driving thread, one stream), so slots are reused freely, but
 * one op must not use the same slot for two live buffers. */
typedef enum kern_cuda_slot {
    KERN_CUDA_SLOT_S = 0,     /* attention scores, split-K partial sums */
    KERN_CUDA_SLOT_W,         /* a weight staged for one call (matrix never uploaded) */
    KERN_CUDA_SLOT_H,         /* fp16 / bf16 copy of the activations (prefill) */
    KERN_CUDA_SLOT_P,         /* dequantized fp16 weight panels (prefill) */
    KERN_CUDA_SLOT_COUNT
} kern_cuda_slot;

typedef struct kern_cuda_buf {
    void *ptr;                /* device memory; owned */
    size_t bytes;             /* capacity */
} kern_cuda_buf;

/* Device copy of a packed CLAQ matrix: the kern_claq.h layout uploaded as is (codes stay
 * [tile][block][word][row in tile], which is already coalesced for a thread-per-row GEMV), with
 * outliers keyed by original and storage column (uint32) and the fp32 deltas derived on the host when
 * the view has none. Pointers are views into `blob`. Split-K shape chosen at upload (shape + SM
 * count only, never n, so results are batch invariant). */
typedef struct kern_cuda_claqw {
    void *blob;               /* one cudaMalloc holding every array below; owned */
    size_t blob_bytes;
    const uint32_t *codes;    /* [rows_pad * words_per_row]; view into blob */
    const uint32_t *colmap;   /* [cols_pad]; view */
    const uint16_t *cb;       /* fp16 codebooks, storage order; view */
    const uint32_t *rowptr;   /* [rows + 1] outlier row-CSR; view */
    const uint32_t *ocol;     /* [nnz] ORIGINAL column (colmap of the storage column); view */
    const uint16_t *oval;     /* [nnz] fp16 retained value; view */
    const float *odelta;      /* [nnz] fp32 val - cb[code]; view */
    const uint32_t *oscol;    /* [nnz] storage column (the prefill panel's order); view */
    int64_t rows_pad, cols_pad, n_tiles, words_per_row, nnz;
    int64_t nblk[5];          /* [b], b = 2..4: 32-column blocks of width b */
    int ksplit;               /* K slices of the GEMV grid */
    int bps;                  /* 32-column blocks per K slice */
    int mma_ksplit;           /* K slices of the tensor-core GEMM (kern_cuda_claq_mma.cu); 0: none */
    int mma_bps;              /* its blocks per K slice */
} kern_cuda_claqw;

/* What kern_matrix.dev points to for this backend. Host struct, owned by the backend (release). */
typedef struct kern_cuda_weight {
    kern_dtype dtype;
    int64_t rows, cols;
    void *data;               /* dense: device [rows][cols] of dtype; owned; NULL for CLAQ */
    kern_cuda_claqw claq;     /* KERN_CLAQ: device arrays; owned */
} kern_cuda_weight;

/* An executable graph of a recorded step (kern_cuda_graph.cu), one per batch size. */
#define KERN_CUDA_GRAPH_CACHE 8
#define KERN_CUDA_GRAPH_MAX_N 64   /* larger steps are issued op by op */
typedef struct kern_cuda_graph_entry {
    int n;                    /* the step's tokens */
    cudaGraphExec_t exec;     /* owned, or NULL */
    uint64_t used;            /* graph_tick of its last launch */
} kern_cuda_graph_entry;

typedef struct kern_cuda_ctx {
    int device;               /* CUDA ordinal */
    cudaStream_t stream;      /* owned; every op runs on it */
    cublasHandle_t cublas;    /* owned; bound to stream */
    int sm_count;             /* multiprocessors (split-K sizing) */
    size_t smem_optin;        /* max dynamic shared memory per block after opt-in */
    int prefill_min_n;        /* n >= this takes the cuBLAS path; 0 = never (kern_cuda.h) */
    int mma_min_n;            /* CLAQ matmul of n > 8 tokens with n >= this takes the
                                 tensor-core GEMM; 0 = never (kern_cuda.h) */
    kern_cuda_buf slot[KERN_CUDA_SLOT_COUNT]; /* device scratch; owned */
    int check_ptrs;           /* 1: ops refuse pointers that are not device memory (always in
                                 the emulator; CLAQ_CUDA_CHECK_PTRS=1 on a GPU: a driver call per
                                 pointer) */
    kern_xfer_stats xfer;     /* bytes copied each way so far (kern.h) */
    int graphs;               /* 1: steps are recorded and launched as graphs (step_begin) */
    int recording;            /* 1: between step_begin and step_end, the stream capturing */
    int record_n;             /* the recorded step's tokens */
    kern_cuda_graph_entry graph[KERN_CUDA_GRAPH_CACHE];
    uint64_t graph_tick;
    kern_cuda_graph_stats gstats;
    char err[KERN_CUDA_ERR_LEN]; /* last recorded failure, "" if none */
} kern_cuda_ctx;

/* 1 when a matmul of n tokens takes the cuBLAS prefill path (prefill_min_n). */
static inline int kern_cuda__prefill_n(const kern_cuda_ctx *c, int n)
{
    return c->prefill_min_n > 0 && n >= c->prefill_min_n;
}

/* 1 when a CLAQ matmul of n tokens (not on the cuBLAS path) runs on the tensor cores. */
static inline int kern_cuda__mma_n(const kern_cuda_ctx *c, int n)
{
    return c->mma_min_n > 0 && n > KERN_CUDA_MAX_TOK && n >= c->mma_min_n;
}

/* ---- kern_cuda.cu: scratch and pointer checks ---- */
/* Makes slot hold at least `bytes` (grows, never shrinks); *out = its device pointer. */
int kern_cuda__slot(kern_cuda_ctx *c, kern_cuda_slot s, size_t bytes, void **out);
/* 1 when p is device memory (or c does not check pointers); else records why in c->err. */
int kern_cuda__dev(kern_cuda_ctx *c, const void *p, const char *what);

/* ---- kern_cuda_graph.cu: a step recorded and launched as a CUDA graph ---- */
int kern_cuda__step_begin(kern_cuda_ctx *c, int n);
int kern_cuda__step_end(kern_cuda_ctx *c, int ok);
void kern_cuda__graphs_free(kern_cuda_ctx *c);

/* ---- kern_cuda_gemv.cu: y[n][rows] = x[n][cols] W^T with device x, y (batch invariant) ---- */
int kern_cuda__gemv_dense(kern_cuda_ctx *c, const kern_cuda_weight *w, const float *d_x, int n,
                          float *d_y);

/* ---- kern_cuda_claq.cu: packed CLAQ weights ---- */
int kern_cuda__claq_available(void);   /* 1 once the packed layout is implemented */
int kern_cuda__claq_upload(kern_cuda_ctx *c, const kern_matrix *m, kern_cuda_weight *w);
void kern_cuda__claq_release(kern_cuda_weight *w);
/* accumulate = 1: d_y += x W^T instead, the bits of kern_cuda__gemv_claq then kern_cuda__add
 * (the residual add in the reduction's epilogue). */
int kern_cuda__gemv_claq(kern_cuda_ctx *c, const kern_cuda_weight *w, const float *d_x, int n,
                         float *d_y, int accumulate);
/* d_out [n][rows] = silu(x Wg^T) * (x Wu^T), gate and up of the same shape, bit-identical to two
 * kern_cuda__gemv_claq and kern_cuda__swiglu (one reduction kernel instead of three kernels). */
int kern_cuda__gemv_claq_swiglu(kern_cuda_ctx *c, const kern_cuda_weight *wg,
                                const kern_cuda_weight *wu, const float *d_x, int n, float *d_out);
/* d_y[i] [n][rows_i] = x W_i^T for count <= 3 matrices of the same cols (q, k, v), bit-identical
 * to count kern_cuda__gemv_claq (one reduction kernel instead of count). */
int kern_cuda__gemv_claq_multi(kern_cuda_ctx *c, const kern_cuda_weight *const *w, int count,
                               const float *d_x, int n, float *const *d_y);
/* Writes W rows [r0, r0 + nr) as fp16 (outliers patched in) into d_panel [nr][cols_pad], columns
 * in STORAGE order (kern_claq.h; padding columns 0): multiply by kern_cuda__claq_gather_f16's x. */
int kern_cuda__claq_dequant_f16(kern_cuda_ctx *c, const kern_cuda_weight *w, int64_t r0,
                                int64_t nr, uint16_t *d_panel);
/* d_out [n][cols] = rows d_ids of the packed matrix, outliers applied (eng_claq_unpack's values):
 * a tied packed head gathered as the token embedding. */
int kern_cuda__claq_embed(kern_cuda_ctx *c, const kern_cuda_weight *w, const int32_t *d_ids,
                          int n, float *d_out);
/* d_xs [n][cols_pad] = fp16 of d_x [n][cols] in storage column order (0 for padding columns). */
int kern_cuda__claq_gather_f16(kern_cuda_ctx *c, const kern_cuda_weight *w, const float *d_x, int n,
                               uint16_t *d_xs);

/* ---- kern_cuda_claq_mma.cu: packed CLAQ times 9+ tokens on the tensor cores ---- */
/* Sets q->mma_ksplit / mma_bps from the shape and c's SM count (at upload). */
void kern_cuda__claq_mma_shape(const kern_cuda_ctx *c, kern_cuda_claqw *q);
/* The K-slice partial sums of x W^T, part [mma_ksplit][n][rows_pad], as the GEMV writes them
 * (kern_cuda_claq.cu reduces them); uses SLOT_H. */
int kern_cuda__claq_mma_partials(kern_cuda_ctx *c, const kern_cuda_weight *w, const float *d_x,
                                 int n, float *part);

/* ---- kern_cuda_gemm.cu: prefill through cuBLAS (fp16 inputs, fp32 accumulation) ---- */
int kern_cuda__gemm_prefill(kern_cuda_ctx *c, const kern_cuda_weight *w, const float *d_x, int n,
                            float *d_y);

/* ---- kern_cuda_ops.cu: the rest of the layer, device pointers in and out ---- */
int kern_cuda__embed(kern_cuda_ctx *c, const kern_cuda_weight *t, const int32_t *d_ids, int n,
                     float *d_out);
int kern_cuda__rmsnorm(kern_cuda_ctx *c, const float *x, const float *w, int n, int dim,
                       float eps, float *out);
int kern_cuda__rope(kern_cuda_ctx *c, float *x, const int32_t *pos, int n, int n_heads,
                    int head_dim, float theta, const float *freq, kern_rope_style style);
int kern_cuda__swiglu(kern_cuda_ctx *c, const float *gate, const float *up, int64_t count,
                      float *out);
int kern_cuda__add(kern_cuda_ctx *c, float *x, const float *y, int64_t count);
int kern_cuda__kv_write(kern_cuda_ctx *c, const kern_kv_write_args *a);
int kern_cuda__copy_rows(kern_cuda_ctx *c, const float *src, const int32_t *rows, int n, int dim,
                         float *dst);
int kern_cuda__argmax(kern_cuda_ctx *c, const float *x, int n, int cols, int32_t *out);
int kern_cuda__sample(kern_cuda_ctx *c, float *x, int n, int vocab, const kern_sample_params *p,
                      const kern_sample_adj *adj, const uint32_t *allow, int32_t *out,
                      kern_sample_lp *lp);
int kern_cuda__attention(kern_cuda_ctx *c, const kern_attn_args *a);

/* silu(g) * u as kern_cuda_swiglu_k and the fused gate/up reduction both compute it (the CPU
 * backend's expression, each operation rounded: no FMA contraction). */
static __device__ __forceinline__ float kern_cuda_silu_mul(float g, float u)
{
    return __fmul_rn(__fmul_rn(g, __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-g)))), u);
}

/* Sum of v over the 32 lanes of a warp, in a fixed butterfly order, so every lane gets the same
 * bits (the dense and CLAQ GEMV reductions). Explicit __fadd_rn: no contraction into an FMA.
 * All lanes must call it. */
static __device__ __forceinline__ float kern_cuda_warp_sum(float v)
{
    for (int off = 16; off > 0; off >>= 1) v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

/* Most blocks a grid-stride kernel is launched with (every kernel sized by kern_cuda__blocks
 * loops over its items). Emulator builds (tests/kernels/cuda_emu) use a tiny cap so that the
 * tests' small shapes run the stride loops too. */
#ifndef CLAQ_CUDA_EMU
#define KERN_CUDA_GRID_CAP (65535LL * 1024)
#else
#define KERN_CUDA_GRID_CAP 7LL
#endif

/* Grid-size helper for grid-stride kernels: blocks of `threads` covering `items`, capped. */
static inline unsigned kern_cuda__blocks(int64_t items, int threads)
{
    int64_t b = (items + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > KERN_CUDA_GRID_CAP) b = KERN_CUDA_GRID_CAP;
    return (unsigned)b;
}

#endif
