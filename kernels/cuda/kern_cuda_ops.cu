/* kern_cuda_ops.cu — the non-matmul ops of a layer on the device: embedding, RMSNorm, RoPE,
 * SwiGLU and attention over the paged KV cache. Each takes the HOST pointers of kern.h, stages
 * them through the context's slots, runs one kernel and copies the result back (slow, correct).
 * Does not do matmuls (kern_cuda_gemv.cu / kern_cuda_claq.cu / kern_cuda_gemm.cu). Driving thread.
 *
 * Numerics: fp32 throughout; reductions are per-thread strided partial sums followed by a fixed
 * shuffle/shared-memory tree, so results are deterministic and independent of n (each token or
 * row is computed by its own block the same way). Where the CPU backend (kern_cpu.c) fixes an
 * expression, the same fp32 operations are written out with __f*_rn so nvcc cannot contract them
 * into FMAs: only reduction orders and libm ulps differ from the CPU.
 *
 * Attention (version 1, one block per (token, head), two passes over the keys):
 *   the host gathers the KV blocks the batch needs (only slots up to the furthest position a token
 *   reads) into compact device arrays K, V [block][slot][kv_dim], rewrites every token's block table
 *   to compact indices, and the kernel computes scores into a scratch row [max_pos], softmax (max,
 *   exp, sum, divide), then out = sum_p a_p V_p in position order, like the CPU. A flash-decoding split over positions with a
 *   log-sum-exp merge is the next version (long contexts leave SMs idle here).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_fp16.h>

#include "kern_cuda_impl.h"

#define OPS_THREADS 256
#define ATTN_THREADS 128
#define ATTN_SMEM_MAX (48 * 1024 - 32 * sizeof(float))   /* dynamic smem bytes for q */

/* Block-wide sum / max over blockDim.x (a multiple of 32, at most 1024) threads; every thread
 * gets the result. red must hold 32 floats; it is reused, so callers sync between uses (done
 * here at the start). Fixed order: lane butterfly, then warp 0 over the warp partials. */
__device__ float kern_cuda_block_sum(float v, float *red)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.0f;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

__device__ float kern_cuda_block_max(float v, float *red)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : -INFINITY;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

/* ---- embedding ----------------------------------------------------------------------------- */

__global__ void kern_cuda_embed_k(const void *__restrict__ table, int dtype, int64_t rows, int cols,
                                  const int32_t *__restrict__ ids, int n, float *__restrict__ out)
{
    const int t = blockIdx.x;
    if (t >= n) return;
    const int64_t id = ids[t];
    if (id < 0 || id >= rows) return;   /* host checked; never read out of bounds regardless */
    const int64_t base = id * cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        float v;
        if (dtype == KERN_F32) {
            v = ((const float *)table)[base + c];
        } else {
            unsigned short h = ((const unsigned short *)table)[base + c];
            v = dtype == KERN_F16 ? __half2float(__ushort_as_half(h))
                                  : __uint_as_float((unsigned int)h << 16);
        }
        out[(int64_t)t * cols + c] = v;
    }
}

int kern_cuda__embed(kern_cuda_ctx *c, const kern_cuda_weight *t, const int32_t *ids, int n,
                     float *out)
{
    if (n > 65535 * 1024) return KERN_E_INVAL;
    void *d_ids = NULL, *d_out = NULL;
    int rc = kern_cuda__upload_to_slot(c, KERN_CUDA_SLOT_A, ids, (size_t)n * sizeof(int32_t),
                                       &d_ids);
    if (rc) return rc;
    const size_t obytes = (size_t)n * (size_t)t->cols * sizeof(float);
    rc = kern_cuda__slot(c, KERN_CUDA_SLOT_Y, obytes, &d_out);
    if (rc) return rc;
    kern_cuda_embed_k<<<(unsigned)n, OPS_THREADS, 0, c->stream>>>(
        t->data, (int)t->dtype, t->rows, (int)t->cols, (const int32_t *)d_ids, n, (float *)d_out);
    KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_embed_k");
    return kern_cuda__download(c, out, d_out, obytes);
}

/* ---- RMSNorm ------------------------------------------------------------------------------- */

__global__ void kern_cuda_rmsnorm_k(const float *__restrict__ x, const float *__restrict__ w,
                                    int n, int dim, float eps, float *__restrict__ out)
{
    __shared__ float red[32];
    const int t = blockIdx.x;
    if (t >= n) return;
    const float *xr = x + (int64_t)t * dim;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) ss = __fadd_rn(ss, __fmul_rn(xr[i], xr[i]));
    ss = kern_cuda_block_sum(ss, red);
    /* the CPU's expression and rounding order from here on: w * (inv * x) */
    const float inv = 1.0f / sqrtf(__fadd_rn(__fdiv_rn(ss, (float)dim), eps));
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        out[(int64_t)t * dim + i] = __fmul_rn(w[i], __fmul_rn(inv, xr[i]));
}

int kern_cuda__rmsnorm(kern_cuda_ctx *c, const float *x, const float *w, int n, int dim, float eps,
                       float *out)
{
    const size_t bytes = (size_t)n * (size_t)dim * sizeof(float);
    void *d_x = NULL, *d_w = NULL, *d_out = NULL;
    int rc = kern_cuda__upload_to_slot(c, KERN_CUDA_SLOT_X, x, bytes, &d_x);
    if (!rc) rc = kern_cuda__upload_to_slot(c, KERN_CUDA_SLOT_A, w, (size_t)dim * sizeof(float),
                                            &d_w);
    if (!rc) rc = kern_cuda__slot(c, KERN_CUDA_SLOT_Y, bytes, &d_out);
    if (rc) return rc;
    if (n > 65535 * 1024) return KERN_E_INVAL;
    kern_cuda_rmsnorm_k<<<(unsigned)n, OPS_THREADS, 0, c->stream>>>(
        (const float *)d_x, (const float *)d_w, n, dim, eps, (float *)d_out);
    KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_rmsnorm_k");
    return kern_cuda__download(c, out, d_out, bytes);
}

/* ---- RoPE ---------------------------------------------------------------------------------- */

/* One thread per (token, head, pair i < head_dim / 2). Same formula and fp32 rounding steps as
 * the CPU (llama2.c's: freq = 1 / theta^(2i/d), angle = (float)pos * freq), with theta^(2i/d),
 * cos and sin evaluated in fp64 and rounded once, which is what a correctly rounded libm gives;
 * so CPU and GPU angles agree bit for bit and the rotated values to an ulp or two. */
__global__ void kern_cuda_rope_k(float *__restrict__ x, const int32_t *__restrict__ pos, int n,
                                 int n_heads, int head_dim, float theta,
                                 const float *__restrict__ freq_tab, int half_style)
{
    const int half = head_dim / 2;
    const int64_t total = (int64_t)n * n_heads * half;
    for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < total;
         g += (int64_t)gridDim.x * blockDim.x) {
        const int i = (int)(g % half);
        const int64_t th = g / half;           /* token * n_heads + head */
        const int t = (int)(th / n_heads);
        float *v = x + th * head_dim;
        const float ex = __fdiv_rn((float)(2 * i), (float)head_dim);
        const float freq =
            freq_tab ? freq_tab[i] : __fdiv_rn(1.0f, (float)pow((double)theta, (double)ex));
        const float ang = __fmul_rn((float)pos[t], freq);
        double s, co;
        sincos((double)ang, &s, &co);
        const float sn = (float)s, cs = (float)co;
        const int a = half_style ? i : 2 * i, b = half_style ? i + half : 2 * i + 1;
        const float x0 = v[a], x1 = v[b];
        v[a] = __fsub_rn(__fmul_rn(x0, cs), __fmul_rn(x1, sn));
        v[b] = __fadd_rn(__fmul_rn(x0, sn), __fmul_rn(x1, cs));
    }
}

int kern_cuda__rope(kern_cuda_ctx *c, float *x, const int32_t *pos, int n, int n_heads,
                    int head_dim, float theta, const float *freq, kern_rope_style style)
{
    if (!(theta > 0.0f) && !freq) return KERN_E_INVAL;
    const size_t bytes = (size_t)n * (size_t)n_heads * (size_t)head_dim * sizeof(float);
    void *d_x = NULL, *d_pos = NULL, *d_f = NULL;
    int rc = kern_cuda__upload_to_slot(c, KERN_CUDA_SLOT_X, x, bytes, &d_x);
    if (!rc) rc = kern_cuda__upload_to_slot(c, KERN_CUDA_SLOT_A, pos, (size_t)n * sizeof(int32_t),
                                            &d_pos);
    if (!rc && freq)
        rc = kern_cuda__upload_to_slot(c, KERN_CUDA_SLOT_B, freq,
                                       (size_t)(head_dim / 2) * sizeof(float), &d_f);
    if (rc) return rc;
    const int64_t pairs = (int64_t)n * n_heads * (head_dim / 2);
    kern_cuda_rope_k<<<kern_cuda__blocks(pairs, OPS_THREADS), OPS_THREADS, 0, c->stream>>>(
        (float *)d_x, (const int32_t *)d_pos, n, n_heads, head_dim, theta, (const float *)d_f,
        style == KERN_ROPE_HALF);
    KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_rope_k");
    return kern_cuda__download(c, x, d_x, bytes);
}

/* ---- SwiGLU -------------------------------------------------------------------------------- */

__global__ void kern_cuda_swiglu_k(const float *__restrict__ gate, const float *__restrict__ up,
                                   int64_t count, float *__restrict__ out)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (int64_t)gridDim.x * blockDim.x) {
        const float g = gate[i];
        out[i] = __fmul_rn(__fmul_rn(g, __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-g)))), up[i]);
    }
}

int kern_cuda__swiglu(kern_cuda_ctx *c, const float *gate, const float *up, int64_t count,
                      float *out)
{
    const size_t bytes = (size_t)count * sizeof(float);
    void *d_g = NULL, *d_u = NULL, *d_o = NULL;
    int rc = kern_cuda__upload_to_slot(c, KERN_CUDA_SLOT_X, gate, bytes, &d_g);
    if (!rc) rc = kern_cuda__upload_to_slot(c, KERN_CUDA_SLOT_A, up, bytes, &d_u);
    if (!rc) rc = kern_cuda__slot(c, KERN_CUDA_SLOT_Y, bytes, &d_o);
    if (rc) return rc;
    kern_cuda_swiglu_k<<<kern_cuda__blocks(count, OPS_THREADS), OPS_THREADS, 0, c->stream>>>(
        (const float *)d_g, (const float *)d_u, count, (float *)d_o);
    KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_swiglu_k");
    return kern_cuda__download(c, out, d_o, bytes);
}

/* ---- attention ----------------------------------------------------------------------------- */

/* A K/V entry as fp32 (the pool holds fp32 or fp16 entries). */
__device__ __forceinline__ float attn_kv(const float *p, int i) { return p[i]; }
__device__ __forceinline__ float attn_kv(const __half *p, int i) { return __half2float(p[i]); }

/* meta = [pos[n]][table[n][max_blocks]] (compact block indices). K, V [nb][block_tokens][kv_dim]
 * of T (float or __half). scores [n][n_heads][max_pos] scratch. Dynamic shared memory: q,
 * head_dim rounded up to 4. */
template <typename T>
__global__ void __launch_bounds__(ATTN_THREADS)
kern_cuda_attn_k(const float *__restrict__ q, float *__restrict__ out,
                 const int32_t *__restrict__ meta, int n, int max_blocks, int nb,
                 const T *__restrict__ K, const T *__restrict__ V, int n_heads,
                 int n_kv_heads, int head_dim, int block_tokens, int max_pos,
                 float *__restrict__ scores)
{
    extern __shared__ float q_s[];
    __shared__ float red[32];
    const int h = blockIdx.x, t = blockIdx.y;
    if (h >= n_heads || t >= n) return;   /* uniform per block */
    const int P = meta[t];
    if (P < 0 || P >= max_pos) return;    /* host checked */
    const int32_t *tab = meta + n + (int64_t)t * max_blocks;
    const int kvh = h / (n_heads / n_kv_heads);
    const int kv_dim = n_kv_heads * head_dim;
    const int64_t qo = ((int64_t)t * n_heads + h) * head_dim;
    float *S = scores + ((int64_t)t * n_heads + h) * max_pos;

    /* q_s holds head_dim rounded up to 4 floats, the tail zeroed: on sm_90, ptxas merges the
     * q.k loop's remainder loads into one 12-byte shared load that can run past head_dim
     * (compute-sanitizer memcheck flagged it at head_dim 1 on an H200, 2026-12-04). */
    const int hd_pad = (head_dim + 3) & ~3;
    for (int d = threadIdx.x; d < hd_pad; d += blockDim.x) q_s[d] = d < head_dim ? q[qo + d] : 0.0f;
    __syncthreads();

    const float scale = 1.0f / sqrtf((float)head_dim);
    float lmax = -INFINITY;
    for (int p = threadIdx.x; p <= P; p += blockDim.x) {
        const int blk = tab[p / block_tokens];
        if (blk < 0 || blk >= nb) continue;   /* host built the table; defensive */
        const T *k = K + ((int64_t)blk * block_tokens + p % block_tokens) * kv_dim +
                     (int64_t)kvh * head_dim;
        float dot = 0.0f;
        for (int d = 0; d < head_dim; d++) dot = fmaf(q_s[d], attn_kv(k, d), dot);
        const float s = dot * scale;
        S[p] = s;
        lmax = fmaxf(lmax, s);
    }
    const float m = kern_cuda_block_max(lmax, red);
    float lsum = 0.0f;
    for (int p = threadIdx.x; p <= P; p += blockDim.x) {
        const float e = expf(__fsub_rn(S[p], m));
        S[p] = e;
        lsum += e;
    }
    const float sum = kern_cuda_block_sum(lsum, red);
    for (int p = threadIdx.x; p <= P; p += blockDim.x) S[p] = __fdiv_rn(S[p], sum);
    __syncthreads();   /* S[] written by every thread, read by every thread below */
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float acc = 0.0f;
        for (int p = 0; p <= P; p++) {
            const int blk = tab[p / block_tokens];
            if (blk < 0 || blk >= nb) continue;
            const T *v = V + ((int64_t)blk * block_tokens + p % block_tokens) * kv_dim +
                         (int64_t)kvh * head_dim;
            acc = __fadd_rn(acc, __fmul_rn(S[p], attn_kv(v, d)));   /* the CPU's order, rounding */
        }
        out[qo + d] = acc;
    }
}

static int attn_cmp_i32(const void *a, const void *b)
{
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Index of id in the sorted unique list u[nu], or -1. */
static int attn_find(const int32_t *u, int nu, int32_t id)
{
    int lo = 0, hi = nu - 1;
    while (lo <= hi) {
        const int mid = lo + (hi - lo) / 2;
        if (u[mid] == id) return mid;
        if (u[mid] < id) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

int kern_cuda__attention(kern_cuda_ctx *c, const kern_attn_args *a)
{
    if (a->n <= 0 || a->n_heads <= 0 || a->n_kv_heads <= 0 || a->head_dim <= 0 ||
        a->n_heads % a->n_kv_heads || !a->q || !a->out || !a->pos || !a->block_table ||
        !a->k_base || !a->v_base || a->block_tokens <= 0 || a->max_pos <= 0 || a->n > 65535 ||
        a->n_heads > 65535)
        return KERN_E_INVAL;
    if (a->kv_dtype != KERN_F32 && a->kv_dtype != KERN_F16) return KERN_E_UNSUPPORTED;
    const size_t esz = a->kv_dtype == KERN_F16 ? 2 : 4;   /* bytes per K/V entry */
    const int n = a->n, bt = a->block_tokens;
    const int kv_dim = a->n_kv_heads * a->head_dim;
    if (a->block_stride < (int64_t)bt * kv_dim) return KERN_E_INVAL;
    /* q lives in dynamic shared memory, launched without the opt-in attribute: 48 KiB per block
     * in all, red[32] included (head_dim above ~12k: unsupported, not a failed launch). */
    const size_t q_smem = (size_t)(((int64_t)a->head_dim + 3) & ~(int64_t)3) * sizeof(float);
    if (q_smem > ATTN_SMEM_MAX) return KERN_E_UNSUPPORTED;
    const int max_blocks = (a->max_pos + bt - 1) / bt;
    for (int t = 0; t < n; t++) {
        if (a->pos[t] < 0 || a->pos[t] >= a->max_pos || !a->block_table[t]) return KERN_E_INVAL;
        for (int b = 0; b <= a->pos[t] / bt; b++)
            if (a->block_table[t][b] < 0) return KERN_E_INVAL;
    }

    /* Host staging: meta [n + n * max_blocks] int32, ids [n * max_blocks], need [n * max_blocks]
     * (furthest slot needed per unique block). */
    const size_t cells = (size_t)n * (size_t)max_blocks;
    void *hs = NULL;
    int rc = kern_cuda__host_scratch(c, ((size_t)n + 3 * cells) * sizeof(int32_t), &hs);
    if (rc) return rc;
    int32_t *meta = (int32_t *)hs;
    int32_t *uniq = meta + n + cells;
    int32_t *need = uniq + cells;
    int nu = 0;
    for (int t = 0; t < n; t++)
        for (int b = 0; b <= a->pos[t] / bt; b++) uniq[nu++] = a->block_table[t][b];
    qsort(uniq, (size_t)nu, sizeof(int32_t), attn_cmp_i32);
    int w = 0;
    for (int i = 0; i < nu; i++)
        if (w == 0 || uniq[w - 1] != uniq[i]) uniq[w++] = uniq[i];
    nu = w;
    for (int i = 0; i < nu; i++) need[i] = 0;
    for (int t = 0; t < n; t++) {
        meta[t] = a->pos[t];
        int32_t *row = meta + n + (size_t)t * max_blocks;
        const int last = a->pos[t] / bt;
        for (int b = 0; b < max_blocks; b++) {
            if (b > last) {
                row[b] = -1;
                continue;
            }
            const int k = attn_find(uniq, nu, a->block_table[t][b]);
            row[b] = k;
            const int slots = b < last ? bt : a->pos[t] % bt + 1;
            if (slots > need[k]) need[k] = slots;
        }
    }

    const size_t blk_entries = (size_t)bt * kv_dim;
    const size_t qbytes = (size_t)n * a->n_heads * a->head_dim * sizeof(float);
    void *d_q = NULL, *d_o = NULL, *d_meta = NULL, *d_k = NULL, *d_v = NULL, *d_s = NULL;
    rc = kern_cuda__upload_to_slot(c, KERN_CUDA_SLOT_X, a->q, qbytes, &d_q);
    if (!rc) rc = kern_cuda__slot(c, KERN_CUDA_SLOT_Y, qbytes, &d_o);
    if (!rc) rc = kern_cuda__slot(c, KERN_CUDA_SLOT_K, (size_t)nu * blk_entries * esz, &d_k);
    if (!rc) rc = kern_cuda__slot(c, KERN_CUDA_SLOT_V, (size_t)nu * blk_entries * esz, &d_v);
    if (!rc) rc = kern_cuda__slot(c, KERN_CUDA_SLOT_S,
                                  (size_t)n * a->n_heads * a->max_pos * sizeof(float), &d_s);
    if (!rc) rc = kern_cuda__upload_to_slot(c, KERN_CUDA_SLOT_A, meta,
                                            ((size_t)n + cells) * sizeof(int32_t), &d_meta);
    if (rc) return rc;
    for (int i = 0; i < nu; i++) {   /* byte offsets: entries of esz bytes */
        const size_t off = (size_t)uniq[i] * (size_t)a->block_stride * esz;
        const size_t len = (size_t)need[i] * kv_dim * esz;
        const size_t dst = (size_t)i * blk_entries * esz;
        KERN_CUDA_CHECK(c, cudaMemcpyAsync((char *)d_k + dst, (const char *)a->k_base + off, len,
                                           cudaMemcpyHostToDevice, c->stream));
        KERN_CUDA_CHECK(c, cudaMemcpyAsync((char *)d_v + dst, (const char *)a->v_base + off, len,
                                           cudaMemcpyHostToDevice, c->stream));
        c->xfer.h2d_bytes += 2 * len;
    }
    dim3 grid((unsigned)a->n_heads, (unsigned)n);
    if (a->kv_dtype == KERN_F16)
        kern_cuda_attn_k<__half><<<grid, ATTN_THREADS, q_smem, c->stream>>>(
            (const float *)d_q, (float *)d_o, (const int32_t *)d_meta, n, max_blocks, nu,
            (const __half *)d_k, (const __half *)d_v, a->n_heads, a->n_kv_heads, a->head_dim, bt,
            a->max_pos, (float *)d_s);
    else
        kern_cuda_attn_k<float><<<grid, ATTN_THREADS, q_smem, c->stream>>>(
            (const float *)d_q, (float *)d_o, (const int32_t *)d_meta, n, max_blocks, nu,
            (const float *)d_k, (const float *)d_v, a->n_heads, a->n_kv_heads, a->head_dim, bt,
            a->max_pos, (float *)d_s);
    KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_attn_k");
    return kern_cuda__download(c, a->out, d_o, qbytes);
}
