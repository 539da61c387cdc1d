/* kern_cuda_ops.cu — the non-matmul ops of a step on the device: embedding, RMSNorm, RoPE,
 * SwiGLU, residual add, K/V cache writes (RoPE fused in when asked), row gather, greedy argmax and attention over the paged
 * KV cache. Every pointer is device memory (kern.h); each op queues its kernel on the context's
 * stream and returns. Does not do matmuls (kern_cuda_gemv.cu / kern_cuda_claq.cu /
 * kern_cuda_gemm.cu). Driving thread.
 *
 * Numerics: fp32 throughout; reductions are per-thread strided partial sums followed by a fixed
 * shuffle/shared-memory tree, so results are deterministic and independent of n (each token or
 * row is computed by its own block the same way). Where the CPU backend (kern_cpu.c) fixes an
 * expression, the same fp32 operations are written out with __f*_rn so nvcc cannot contract them
 * into FMAs: only reduction orders and libm ulps differ from the CPU.
 *
 * Attention (version 3, flash-decoding): a token's positions are cut into chunks of 256, a block
 * per (group of query heads sharing a KV head, token, chunk) reading the pool in place through
 * the token's block-table row (bt[bt_row[t]]), each K/V entry once for the group: scores a warp
 * per position, each head's chunk max and exp-sum, and its unnormalized sum of V in position
 * order; tokens past one chunk are then merged by a log-sum-exp rescale
 * (kern_cuda_attn_merge_k). Version 2 ran one block per (token, head) over the whole context,
 * which left most SMs idle at batch 1 and long contexts (32 blocks for a 7B model's heads).
 * Prompts (several tokens of a sequence in the batch, kern_attn_args.n_seqs): a block serves a
 * tile of consecutive tokens of one sequence and reads each K/V entry once for all of them
 * (up to 8 token-heads: 8 tokens for MHA, 2 for 4:1 GQA), the causal limit per token; the same
 * bits per token as one token per block.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_fp16.h>

#include "kern_cuda_impl.h"

/* A K/V entry from fp32: as is, or fp16 rounded to nearest even. */
template <typename T> __device__ __forceinline__ T kv_from_f32(float f);
template <> __device__ __forceinline__ float kv_from_f32<float>(float f) { return f; }
template <> __device__ __forceinline__ __half kv_from_f32<__half>(float f)
{
    return __float2half_rn(f);
}

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
    if (id < 0 || id >= rows) {   /* the engine checked; never read out of bounds regardless */
        for (int c = threadIdx.x; c < cols; c += blockDim.x) out[(int64_t)t * cols + c] = 0.0f;
        return;
    }
    const int64_t base = id * cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        float v;
        if (dtype == KERN_F32) {
            v = ((const float *)table)[base + c];
        } else if (dtype == KERN_Q8_ROW) {
            /* the scales follow the codes, possibly unaligned: read their bytes */
            const unsigned char *sb = (const unsigned char *)table + rows * cols + id * 4;
            const unsigned int bits = (unsigned int)sb[0] | (unsigned int)sb[1] << 8 |
                                      (unsigned int)sb[2] << 16 | (unsigned int)sb[3] << 24;
            v = (float)((const signed char *)table)[base + c] * __uint_as_float(bits);
        } else {
            unsigned short h = ((const unsigned short *)table)[base + c];
            v = dtype == KERN_F16 ? __half2float(__ushort_as_half(h))
                                  : __uint_as_float((unsigned int)h << 16);
        }
        out[(int64_t)t * cols + c] = v;
    }
}

int kern_cuda__embed(kern_cuda_ctx *c, const kern_cuda_weight *t, const int32_t *d_ids, int n,
                     float *d_out)
{
    if (n > 65535 * 1024) return KERN_E_INVAL;
    kern_cuda_embed_k<<<(unsigned)n, OPS_THREADS, 0, c->stream>>>(
        t->data, (int)t->dtype, t->rows, (int)t->cols, d_ids, n, d_out);
    KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_embed_k");
    return KERN_OK;
}

/* ---- RMSNorm ------------------------------------------------------------------------------- */

/* out may alias x: each block reads its row whole (the sum) before any thread writes it back,
 * and each element is read and written by the same thread. */
__global__ void kern_cuda_rmsnorm_k(const float *x, const float *__restrict__ w, int n, int dim,
                                    float eps, float *out)
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
    if (n > 65535 * 1024) return KERN_E_INVAL;
    kern_cuda_rmsnorm_k<<<(unsigned)n, OPS_THREADS, 0, c->stream>>>(x, w, n, dim, eps, out);
    KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_rmsnorm_k");
    return KERN_OK;
}

/* ---- RoPE ---------------------------------------------------------------------------------- */

/* One thread per (token, head, pair i < head_dim / 2). Same formula and fp32 rounding steps as
 * the CPU (llama2.c's: freq = 1 / theta^(2i/d), angle = (float)pos * freq), with theta^(2i/d),
 * cos and sin evaluated in fp64 and rounded once, which is what a correctly rounded libm gives;
 * so CPU and GPU angles agree bit for bit and the rotated values to an ulp or two. */
__device__ __forceinline__ void rope_pair(float *v, int i, int half, int head_dim, int p,
                                          float theta, const float *__restrict__ freq_tab,
                                          int half_style)
{
    const float ex = __fdiv_rn((float)(2 * i), (float)head_dim);
    const float freq =
        freq_tab ? freq_tab[i] : __fdiv_rn(1.0f, (float)pow((double)theta, (double)ex));
    const float ang = __fmul_rn((float)(p > 0 ? p : 0), freq);   /* engine-checked */
    double s, co;
    sincos((double)ang, &s, &co);
    const float sn = (float)s, cs = (float)co;
    const int a = half_style ? i : 2 * i, b = half_style ? i + half : 2 * i + 1;
    const float x0 = v[a], x1 = v[b];
    v[a] = __fsub_rn(__fmul_rn(x0, cs), __fmul_rn(x1, sn));
    v[b] = __fadd_rn(__fmul_rn(x0, sn), __fmul_rn(x1, cs));
}

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
        rope_pair(x + th * head_dim, i, half, head_dim, pos[t], theta, freq_tab, half_style);
    }
}

int kern_cuda__rope(kern_cuda_ctx *c, float *x, const int32_t *pos, int n, int n_heads,
                    int head_dim, float theta, const float *freq, kern_rope_style style)
{
    if (!(theta > 0.0f) && !freq) return KERN_E_INVAL;
    const int64_t pairs = (int64_t)n * n_heads * (head_dim / 2);
    kern_cuda_rope_k<<<kern_cuda__blocks(pairs, OPS_THREADS), OPS_THREADS, 0, c->stream>>>(
        x, pos, n, n_heads, head_dim, theta, freq, style == KERN_ROPE_HALF);
    KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_rope_k");
    return KERN_OK;
}

/* ---- SwiGLU -------------------------------------------------------------------------------- */

__global__ void kern_cuda_swiglu_k(const float *__restrict__ gate, const float *__restrict__ up,
                                   int64_t count, float *__restrict__ out)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (int64_t)gridDim.x * blockDim.x) {
        out[i] = kern_cuda_silu_mul(gate[i], up[i]);
    }
}

int kern_cuda__swiglu(kern_cuda_ctx *c, const float *gate, const float *up, int64_t count,
                      float *out)
{
    kern_cuda_swiglu_k<<<kern_cuda__blocks(count, OPS_THREADS), OPS_THREADS, 0, c->stream>>>(
        gate, up, count, out);
    KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_swiglu_k");
    return KERN_OK;
}

/* ---- residual add, K/V writes, row gather -------------------------------------------------- */

__global__ void kern_cuda_add_k(float *__restrict__ x, const float *__restrict__ y, int64_t count)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (int64_t)gridDim.x * blockDim.x)
        x[i] = __fadd_rn(x[i], y[i]);
}

int kern_cuda__add(kern_cuda_ctx *c, float *x, const float *y, int64_t count)
{
    kern_cuda_add_k<<<kern_cuda__blocks(count, OPS_THREADS), OPS_THREADS, 0, c->stream>>>(x, y,
                                                                                        count);
    KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_add_k");
    return KERN_OK;
}

/* One thread per (token, entry): K and V of token t to entry slot[t] of the layer's view. fp16
 * entries round to nearest even, as kern_f32_to_f16 does on the CPU. */
template <typename T>
__global__ void kern_cuda_kv_write_k(const float *__restrict__ k, const float *__restrict__ v,
                                     const int32_t *__restrict__ slot, int n, int kv_dim,
                                     T *__restrict__ kb, T *__restrict__ vb, int64_t block_stride,
                                     int block_tokens)
{
    const int64_t total = (int64_t)n * kv_dim;
    for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < total;
         g += (int64_t)gridDim.x * blockDim.x) {
        const int t = (int)(g / kv_dim), i = (int)(g % kv_dim);
        const int32_t s = slot[t];
        if (s < 0) continue;   /* the engine built the slots; never write out of bounds */
        const int64_t off = (int64_t)(s / block_tokens) * block_stride +
                            (int64_t)(s % block_tokens) * kv_dim + i;
        kb[off] = kv_from_f32<T>(k[g]);
        vb[off] = kv_from_f32<T>(v[g]);
    }
}

/* RoPE and the cache write in one launch (kern_kv_write_args.rope_pos): per token, one thread
 * per q pair (rotated in place), per k pair (rotated in place, both entries written to the
 * slot) and per V entry. The same rope_pair as kern_cuda_rope_k, so q, k and the cache hold the
 * bits the three separate ops give. */
template <typename T>
__global__ void kern_cuda_rope_kv_write_k(float *__restrict__ q, float *__restrict__ k,
                                          const float *__restrict__ v,
                                          const int32_t *__restrict__ slot,
                                          const int32_t *__restrict__ pos, int n, int n_heads,
                                          int head_dim, int kv_dim, float theta,
                                          const float *__restrict__ freq_tab, int half_style,
                                          T *__restrict__ kb, T *__restrict__ vb,
                                          int64_t block_stride, int block_tokens)
{
    const int half = head_dim / 2, n_kv = kv_dim / head_dim;
    const int64_t qp = (int64_t)n_heads * half, kp = (int64_t)n_kv * half;
    const int64_t per = qp + kp + kv_dim, total = (int64_t)n * per;
    for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < total;
         g += (int64_t)gridDim.x * blockDim.x) {
        const int t = (int)(g / per);
        int64_t j = g % per;
        if (j < qp) {
            rope_pair(q + (int64_t)t * n_heads * head_dim + (j / half) * head_dim, (int)(j % half),
                      half, head_dim, pos[t], theta, freq_tab, half_style);
            continue;
        }
        const int32_t s = slot[t];
        const int64_t off = s < 0 ? -1 : (int64_t)(s / block_tokens) * block_stride +
                                             (int64_t)(s % block_tokens) * kv_dim;
        j -= qp;
        if (j < kp) {
            const int h = (int)(j / half), i = (int)(j % half);
            float *kv = k + (int64_t)t * kv_dim + (int64_t)h * head_dim;
            rope_pair(kv, i, half, head_dim, pos[t], theta, freq_tab, half_style);
            if (off < 0) continue;   /* the engine built the slots; never write out of bounds */
            const int a = half_style ? i : 2 * i, b = half_style ? i + half : 2 * i + 1;
            kb[off + (int64_t)h * head_dim + a] = kv_from_f32<T>(kv[a]);
            kb[off + (int64_t)h * head_dim + b] = kv_from_f32<T>(kv[b]);
            continue;
        }
        j -= kp;
        if (off >= 0) vb[off + j] = kv_from_f32<T>(v[(int64_t)t * kv_dim + j]);
    }
}

int kern_cuda__kv_write(kern_cuda_ctx *c, const kern_kv_write_args *a)
{
    if (a->rope_pos) {
        const int half = a->head_dim / 2;
        const int64_t total =
            (int64_t)a->n * ((int64_t)(a->n_heads + a->kv_dim / a->head_dim) * half + a->kv_dim);
        const unsigned blocks = kern_cuda__blocks(total, OPS_THREADS);
        const int hs = a->style == KERN_ROPE_HALF;
        if (a->kv_dtype == KERN_F16)
            kern_cuda_rope_kv_write_k<__half><<<blocks, OPS_THREADS, 0, c->stream>>>(
                a->q, a->k, a->v, a->slot, a->rope_pos, a->n, a->n_heads, a->head_dim, a->kv_dim,
                a->theta, a->freq, hs, (__half *)a->k_base, (__half *)a->v_base,
                a->block_stride, a->block_tokens);
        else
            kern_cuda_rope_kv_write_k<float><<<blocks, OPS_THREADS, 0, c->stream>>>(
                a->q, a->k, a->v, a->slot, a->rope_pos, a->n, a->n_heads, a->head_dim, a->kv_dim,
                a->theta, a->freq, hs, (float *)a->k_base, (float *)a->v_base, a->block_stride,
                a->block_tokens);
        KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_rope_kv_write_k");
        return KERN_OK;
    }
    const int64_t total = (int64_t)a->n * a->kv_dim;
    const unsigned blocks = kern_cuda__blocks(total, OPS_THREADS);
    if (a->kv_dtype == KERN_F16)
        kern_cuda_kv_write_k<__half><<<blocks, OPS_THREADS, 0, c->stream>>>(
            a->k, a->v, a->slot, a->n, a->kv_dim, (__half *)a->k_base, (__half *)a->v_base,
            a->block_stride, a->block_tokens);
    else
        kern_cuda_kv_write_k<float><<<blocks, OPS_THREADS, 0, c->stream>>>(
            a->k, a->v, a->slot, a->n, a->kv_dim, (float *)a->k_base, (float *)a->v_base,
            a->block_stride, a->block_tokens);
    KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_kv_write_k");
    return KERN_OK;
}

__global__ void kern_cuda_copy_rows_k(const float *__restrict__ src,
                                      const int32_t *__restrict__ rows, int n, int dim,
                                      float *__restrict__ dst)
{
    const int i = blockIdx.x;
    if (i >= n) return;
    const int32_t r = rows[i];
    for (int d = threadIdx.x; d < dim; d += blockDim.x)
        dst[(int64_t)i * dim + d] = r >= 0 ? src[(int64_t)r * dim + d] : 0.0f;
}

int kern_cuda__copy_rows(kern_cuda_ctx *c, const float *src, const int32_t *rows, int n, int dim,
                         float *dst)
{
    if (n > 65535 * 1024) return KERN_E_INVAL;
    kern_cuda_copy_rows_k<<<(unsigned)n, OPS_THREADS, 0, c->stream>>>(src, rows, n, dim, dst);
    KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_copy_rows_k");
    return KERN_OK;
}

/* ---- greedy argmax ------------------------------------------------------------------------- */

/* (value, index) pairs: the larger value wins, equal values the lower index; index -1 (nothing
 * yet) loses to everything. Associative and commutative, so the tree's order cannot matter. */
__device__ __forceinline__ void amax_merge(float &v, int &i, float v2, int i2)
{
    if (i2 < 0) return;
    if (i < 0 || v2 > v || (v2 == v && i2 < i)) {
        v = v2;
        i = i2;
    }
}

/* One block per row. NaN and -inf are skipped, +inf counts as 3e38 (eng_sampler's greedy). */
__global__ void kern_cuda_argmax_k(const float *__restrict__ x, int n, int cols,
                                   int32_t *__restrict__ out)
{
    __shared__ float sv[32];
    __shared__ int si[32];
    const int t = blockIdx.x;
    if (t >= n) return;
    const float *r = x + (int64_t)t * cols;
    float bv = 0.0f;
    int bi = -1;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) {
        float v = r[i];
        if (isnan(v) || v == -INFINITY) continue;
        if (v == INFINITY) v = 3.0e38f;
        amax_merge(bv, bi, v, i);
    }
    for (int off = 16; off > 0; off >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, off);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, off);
        amax_merge(bv, bi, ov, oi);
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) {
        sv[warp] = bv;
        si[warp] = bi;
    }
    __syncthreads();
    if (warp == 0) {
        bv = lane < nw ? sv[lane] : 0.0f;
        bi = lane < nw ? si[lane] : -1;
        for (int off = 16; off > 0; off >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, bv, off);
            const int oi = __shfl_xor_sync(0xffffffffu, bi, off);
            amax_merge(bv, bi, ov, oi);
        }
        if (lane == 0) out[t] = bi;
    }
}

int kern_cuda__argmax(kern_cuda_ctx *c, const float *x, int n, int cols, int32_t *out)
{
    if (n > 65535 * 1024) return KERN_E_INVAL;
    kern_cuda_argmax_k<<<(unsigned)n, OPS_THREADS, 0, c->stream>>>(x, n, cols, out);
    KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_argmax_k");
    return KERN_OK;
}

/* ---- attention ----------------------------------------------------------------------------- */

/* A K/V entry as fp32 (the pool holds fp32 or fp16 entries). */
__device__ __forceinline__ float attn_kv(const float *p, int i) { return p[i]; }
__device__ __forceinline__ float attn_kv(const __half *p, int i) { return __half2float(p[i]); }

/* Flash-decoding split: a token's positions 0..P are cut into chunks of ATTN_CHUNK, a block per
 * (head, token, chunk). The cut depends on P alone, never on the batch, so a token's output is
 * the same bits in any batch (batch invariance). */
#define ATTN_CHUNK 256
#define ATTN_WARPS (ATTN_THREADS / 32)
#define ATTN_GMAX 8   /* query heads a block serves from one KV head (GQA), at most */

/* One chunk of positions [p0, p0 + ATTN_CHUNK) for a tile of up to tq consecutive tokens and
 * the gs query heads h0 .. h0 + gs - 1, which share one KV head (GQA). Tokens of the tile that
 * read the same block-table row (a prompt's tokens, one sequence) are served together: each K
 * and V entry is read once for all of their (token, head) slots, tq * gs <= ATTN_GMAX; a tile
 * whose tokens belong to several sequences is served run by run. Per slot, token t's positions
 * p0 .. p1 = min(pos[t], p0 + ATTN_CHUNK - 1): scores by a warp per position (lanes across
 * head_dim, coalesced), the slot's chunk max m and sum l of exp(s - m), and o[d] = sum_p
 * exp(s_p - m) V_p[d] in position order (a thread per d, coalesced). Per slot the operations
 * and their order are those of one head of one token alone, so the bits do not depend on tq,
 * the tile or the batch. A token whose positions fit one chunk writes out = o / l directly;
 * otherwise the chunk's (o, m, l) go to the partials for kern_cuda_attn_merge_k. K, V: this
 * layer's view of the pool, entries of T; block b, slot s of a position at K + b * block_stride
 * + s * kv_dim; token t's block ids at bt[bt_row[t] * bt_stride ..]. part_o [n][n_heads][nchunk]
 * [head_dim], part_ml [..][nchunk][2]. Dynamic shared memory: tq * gs rows of q (head_dim
 * rounded up to 4), then as many rows of ATTN_CHUNK scores. */
template <typename T>
__global__ void __launch_bounds__(ATTN_THREADS)
kern_cuda_attn_k(const float *__restrict__ q, float *__restrict__ out,
                 const int32_t *__restrict__ pos, const int32_t *__restrict__ bt,
                 const int32_t *__restrict__ bt_row, int bt_stride, int n,
                 const T *__restrict__ K, const T *__restrict__ V, int64_t block_stride,
                 int n_heads, int n_kv_heads, int head_dim, int block_tokens, int max_pos,
                 int nchunk, int gs, int tq, float *__restrict__ part_o, float *__restrict__ part_ml)
{
    extern __shared__ float smem[];
    __shared__ float red[32];
    const int h0 = blockIdx.x * gs, c = blockIdx.z;
    const int tile0 = blockIdx.y * tq, tile1 = min(n, tile0 + tq);
    if (h0 >= n_heads || tile0 >= n) return;   /* uniform per block */
    const int p0 = c * ATTN_CHUNK;
    const int kvh = h0 / (n_heads / n_kv_heads);
    const int kv_dim = n_kv_heads * head_dim;
    const int hd_pad = (head_dim + 3) & ~3;
    const float scale = 1.0f / sqrtf((float)head_dim);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float *q_s = smem, *S = smem + tq * gs * hd_pad;

    for (int r0 = tile0; r0 < tile1;) {   /* runs of tokens on one table row; uniform */
        const int row0 = bt_row ? bt_row[r0] : r0;
        int r1 = r0 + 1;
        while (r1 < tile1 && bt_row && bt_row[r1] == row0) r1++;
        const int nt = r1 - r0;
        const int32_t *tab = bt + (int64_t)row0 * bt_stride;
        /* the run's tokens: last position of this chunk each reads (-1: none), and whether
         * its positions fit one chunk */
        int p1[ATTN_GMAX], single[ATTN_GMAX];
        int pmax = -1;
#pragma unroll
        for (int j = 0; j < ATTN_GMAX; j++) {
            p1[j] = -1;
            single[j] = 0;
            if (j >= nt) continue;
            const int P = pos[r0 + j];
            if (P < 0 || P >= max_pos) {   /* the engine checked; leave no garbage regardless */
                if (c == 0)
                    for (int i = threadIdx.x; i < gs * head_dim; i += blockDim.x)
                        out[((int64_t)(r0 + j) * n_heads + h0) * head_dim + i] = 0.0f;
                continue;
            }
            if (p0 > P) continue;          /* this token has fewer chunks */
            p1[j] = min(P, p0 + ATTN_CHUNK - 1);
            single[j] = P < ATTN_CHUNK;
            pmax = max(pmax, p1[j]);
        }
        if (pmax < 0) {
            r0 = r1;
            continue;
        }
        const int ns = nt * gs;   /* slots: slot i is token r0 + i / gs, head h0 + i % gs */

        /* each q row holds head_dim rounded up to 4 floats, the tail zeroed: on sm_90, ptxas
         * merges a remainder of q loads into one 12-byte shared load that can run past head_dim
         * (compute-sanitizer memcheck flagged it at head_dim 1 on an H200, 2026-12-04). */
        __syncthreads();   /* the previous run's q_s and S are read no more */
        for (int i = threadIdx.x; i < ns * hd_pad; i += blockDim.x) {
            const int sl = i / hd_pad, d = i % hd_pad;
            q_s[i] = d < head_dim
                         ? q[((int64_t)(r0 + sl / gs) * n_heads + h0 + sl % gs) * head_dim + d]
                         : 0.0f;
        }
        __syncthreads();

        for (int p = p0 + warp; p <= pmax; p += ATTN_WARPS) {   /* uniform per warp */
            const int blk = tab[p / block_tokens];
            float dot[ATTN_GMAX];
#pragma unroll
            for (int i = 0; i < ATTN_GMAX; i++) dot[i] = 0.0f;
            if (blk >= 0) {   /* the engine built the table; defensive */
                const T *k = K + (int64_t)blk * block_stride +
                             (int64_t)(p % block_tokens) * kv_dim + (int64_t)kvh * head_dim;
                for (int d = lane; d < head_dim; d += 32) {
                    const float kd = attn_kv(k, d);
#pragma unroll
                    for (int i = 0; i < ATTN_GMAX; i++)
                        if (i < ns) dot[i] = fmaf(q_s[i * hd_pad + d], kd, dot[i]);
                }
            }
#pragma unroll
            for (int i = 0; i < ATTN_GMAX; i++) {
                if (i >= ns) break;   /* uniform */
                float v = dot[i];
#pragma unroll
                for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
                if (lane == 0 && p <= p1[i / gs])
                    S[i * ATTN_CHUNK + p - p0] = blk >= 0 ? v * scale : -INFINITY;
            }
        }
        __syncthreads();   /* S[] written by one lane per position, read by every thread below */
        float m[ATTN_GMAX], l[ATTN_GMAX];
#pragma unroll
        for (int i = 0; i < ATTN_GMAX; i++) {
            m[i] = l[i] = 0.0f;
            if (i >= ns || p1[i / gs] < 0) continue;   /* uniform */
            const int len = p1[i / gs] - p0;
            float *Si = S + i * ATTN_CHUNK;
            float lmax = -INFINITY;
            for (int x = threadIdx.x; x <= len; x += blockDim.x) lmax = fmaxf(lmax, Si[x]);
            m[i] = kern_cuda_block_max(lmax, red);
            float lsum = 0.0f;
            for (int x = threadIdx.x; x <= len; x += blockDim.x) {
                /* a chunk of missing blocks only (m = -inf) weighs nothing, not NaN */
                const float e = m[i] == -INFINITY ? 0.0f : expf(__fsub_rn(Si[x], m[i]));
                Si[x] = e;
                lsum += e;
            }
            l[i] = kern_cuda_block_sum(lsum, red);   /* its barriers order S[] too */
        }
        for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
            float acc[ATTN_GMAX];
#pragma unroll
            for (int i = 0; i < ATTN_GMAX; i++) acc[i] = 0.0f;
            for (int p = p0; p <= pmax; p++) {
                const int blk = tab[p / block_tokens];
                if (blk < 0) continue;
                const T *v = V + (int64_t)blk * block_stride +
                             (int64_t)(p % block_tokens) * kv_dim + (int64_t)kvh * head_dim;
                const float vd = attn_kv(v, d);
#pragma unroll
                for (int i = 0; i < ATTN_GMAX; i++)
                    if (i < ns && p <= p1[i / gs])
                        acc[i] = __fadd_rn(acc[i], __fmul_rn(S[i * ATTN_CHUNK + p - p0], vd));
            }
#pragma unroll
            for (int i = 0; i < ATTN_GMAX; i++) {
                if (i >= ns) break;
                if (p1[i / gs] < 0) continue;
                const int64_t hq = (int64_t)(r0 + i / gs) * n_heads + h0 + i % gs;
                if (single[i / gs])
                    out[hq * head_dim + d] = l[i] > 0.0f ? __fdiv_rn(acc[i], l[i]) : 0.0f;
                else
                    part_o[(hq * nchunk + c) * head_dim + d] = acc[i];
            }
        }
        if (threadIdx.x == 0) {
            for (int i = 0; i < ns; i++) {
                if (p1[i / gs] < 0 || single[i / gs]) continue;
                const int64_t pc = ((int64_t)(r0 + i / gs) * n_heads + h0 + i % gs) * nchunk + c;
                part_ml[pc * 2] = m[i];
                part_ml[pc * 2 + 1] = l[i];
            }
        }
        r0 = r1;
    }
}

/* Tokens with more than one chunk: M = max m_c, L = sum_c l_c e^(m_c - M), out[d] =
 * sum_c o_c[d] e^(m_c - M) / L, chunks in order. A block per (head, token), a thread per d. */
__global__ void __launch_bounds__(ATTN_THREADS)
kern_cuda_attn_merge_k(float *__restrict__ out, const int32_t *__restrict__ pos, int n,
                       int n_heads, int head_dim, int max_pos, int nchunk,
                       const float *__restrict__ part_o, const float *__restrict__ part_ml)
{
    const int h = blockIdx.x, t = blockIdx.y;
    if (h >= n_heads || t >= n) return;
    const int P = pos[t];
    if (P < ATTN_CHUNK || P >= max_pos) return;   /* written by kern_cuda_attn_k */
    const int nc = P / ATTN_CHUNK + 1;
    const int64_t base = ((int64_t)t * n_heads + h) * nchunk;
    float M = -INFINITY;
    for (int c = 0; c < nc; c++) M = fmaxf(M, part_ml[(base + c) * 2]);
    float L = 0.0f;
    for (int c = 0; c < nc; c++) {
        const float mc = part_ml[(base + c) * 2];
        if (mc != -INFINITY) L = __fadd_rn(L, __fmul_rn(part_ml[(base + c) * 2 + 1], expf(__fsub_rn(mc, M))));
    }
    const int64_t qo = ((int64_t)t * n_heads + h) * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float acc = 0.0f;
        for (int c = 0; c < nc; c++) {
            const float mc = part_ml[(base + c) * 2];
            if (mc == -INFINITY) continue;
            acc = __fadd_rn(acc, __fmul_rn(part_o[(base + c) * head_dim + d], expf(__fsub_rn(mc, M))));
        }
        out[qo + d] = L > 0.0f ? __fdiv_rn(acc, L) : 0.0f;
    }
}

int kern_cuda__attention(kern_cuda_ctx *c, const kern_attn_args *a)
{
    if (a->n <= 0 || a->n_heads <= 0 || a->n_kv_heads <= 0 || a->head_dim <= 0 ||
        a->n_heads % a->n_kv_heads || !a->q || !a->out || !a->pos || !a->bt || !a->k_base ||
        !a->v_base || a->block_tokens <= 0 || a->max_pos <= 0 || a->n > 65535 ||
        a->n_heads > 65535)
        return KERN_E_INVAL;
    if (a->kv_dtype != KERN_F32 && a->kv_dtype != KERN_F16) return KERN_E_UNSUPPORTED;
    const int kv_dim = a->n_kv_heads * a->head_dim;
    if (a->block_stride < (int64_t)a->block_tokens * kv_dim ||
        a->bt_stride < (a->max_pos + a->block_tokens - 1) / a->block_tokens)
        return KERN_E_INVAL;
    /* A block serves gs query heads of one KV head: the largest divisor of the group size up
     * to ATTN_GMAX whose q rows and scores fit the dynamic shared memory of a launch without the
     * opt-in attribute (48 KiB in all, red[32] included; head_dim above ~11k: unsupported, not a
     * failed launch). */
    const int group = a->n_heads / a->n_kv_heads;
    const size_t row = (size_t)(((int64_t)a->head_dim + 3) & ~(int64_t)3) + ATTN_CHUNK;
    int gs = group < ATTN_GMAX ? group : ATTN_GMAX;
    while (gs > 1 && (group % gs || gs * row * sizeof(float) > ATTN_SMEM_MAX)) gs--;
    /* Tiles of tq tokens where a batch holds several tokens per sequence (a prompt: each K/V
     * entry then read once for tq of its tokens); one token per block for decode batches,
     * where more blocks keep more SMs busy. */
    int tq = 1;
    if (a->n_seqs > 0 && a->n >= 2 * a->n_seqs) {
        tq = ATTN_GMAX / gs;
        while (tq > 1 && (size_t)tq * gs * row * sizeof(float) > ATTN_SMEM_MAX) tq--;
    }
    const size_t smem = (size_t)tq * gs * row * sizeof(float);
    if (smem > ATTN_SMEM_MAX) return KERN_E_UNSUPPORTED;
    const int nchunk = (a->max_pos + ATTN_CHUNK - 1) / ATTN_CHUNK;
    if (nchunk > 65535) return KERN_E_UNSUPPORTED;
    /* partials only where a token can span chunks: (o, m, l) per (token, head, chunk) */
    float *part_o = NULL, *part_ml = NULL;
    if (nchunk > 1) {
        const size_t per = (size_t)a->n * a->n_heads * nchunk;
        void *d_s = NULL;
        int rc = kern_cuda__slot(c, KERN_CUDA_SLOT_S, per * ((size_t)a->head_dim + 2) * sizeof(float),
                                 &d_s);
        if (rc) return rc;
        part_o = (float *)d_s;
        part_ml = part_o + per * a->head_dim;
    }
    dim3 grid((unsigned)(a->n_heads / gs), (unsigned)((a->n + tq - 1) / tq), (unsigned)nchunk);
    if (a->kv_dtype == KERN_F16)
        kern_cuda_attn_k<__half><<<grid, ATTN_THREADS, smem, c->stream>>>(
            a->q, a->out, a->pos, a->bt, a->bt_row, a->bt_stride, a->n,
            (const __half *)a->k_base, (const __half *)a->v_base, a->block_stride, a->n_heads,
            a->n_kv_heads, a->head_dim, a->block_tokens, a->max_pos, nchunk, gs, tq, part_o, part_ml);
    else
        kern_cuda_attn_k<float><<<grid, ATTN_THREADS, smem, c->stream>>>(
            a->q, a->out, a->pos, a->bt, a->bt_row, a->bt_stride, a->n,
            (const float *)a->k_base, (const float *)a->v_base, a->block_stride, a->n_heads,
            a->n_kv_heads, a->head_dim, a->block_tokens, a->max_pos, nchunk, gs, tq, part_o, part_ml);
    KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_attn_k");
    if (nchunk > 1) {
        kern_cuda_attn_merge_k<<<dim3((unsigned)a->n_heads, (unsigned)a->n), ATTN_THREADS, 0,
                                 c->stream>>>(a->out, a->pos, a->n, a->n_heads, a->head_dim,
                                              a->max_pos, nchunk, part_o, part_ml);
        KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_attn_merge_k");
    }
    return KERN_OK;
}
