/* kern_cuda_gemv.cu — dense matmul y[n][rows] = x[n][cols] W^T on the device for any n, with W in
 * fp32, fp16, bf16 or int8 with a scale per row (KERN_Q8_ROW, a tied 8-bit head) and fp32
 * accumulation. Device pointers in and out (kern.h).
 * Does not do CLAQ weights (kern_cuda_claq.cu) or the cuBLAS prefill path (kern_cuda_gemm.cu).
 * Called from the backend's driving thread; kernels run on the context's stream.
 *
 * Layout and work split: W is row-major [rows][cols] (nn.Linear). One warp owns one output row
 * and up to KERN_CUDA_MAX_TOK = 8 tokens; a block is 8 warps = 8 consecutive rows; grid.y walks
 * chunks of 8 tokens, and a remainder chunk (n % 8 tokens) gets its own launch.
 *  - cols % 8 == 0: lane l reads elements [8l + 256i, 8l + 256i + 8) of the row (one 16-byte load
 *    for fp16/bf16, two for fp32; a warp reads 512 B or 1 KiB contiguous per step), and the same
 *    8 x values of each token (two float4 loads, L1/L2 resident).
 *  - otherwise (odd widths): lane l reads elements l, l + 32, ... one at a time.
 * Batch invariance (kern.h contract): a token's sum is formed in an order fixed by (lane, step,
 * element) and a fixed xor-butterfly, never by n or by the token's chunk, and with explicit fmaf
 * so the compiler cannot contract differently per instantiation. y[t] is therefore bit-identical
 * for any n. The same holds for repeated runs (no atomics).
 *
 * Versions: 1 — warp per row, 2 accumulators per token per lane (this file).
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kern_cuda_impl.h"

#define GEMV_WARPS 8   /* rows per block */

/* Element loaders: convert W's storage type to fp32. */
struct kern_ld_f32 {
    static __device__ __forceinline__ float finish(const void *, int64_t, int, int, float s)
    {
        return s;
    }
    static __device__ __forceinline__ float one(const void *w, int64_t i)
    {
        return __ldg((const float *)w + i);
    }
    static __device__ __forceinline__ void eight(const void *w, int64_t i, float v[8])
    {
        const float4 *p = (const float4 *)((const float *)w + i);
        float4 a = __ldg(p), b = __ldg(p + 1);
        v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
        v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
    }
};

struct kern_ld_f16 {
    static __device__ __forceinline__ float finish(const void *, int64_t, int, int, float s)
    {
        return s;
    }
    static __device__ __forceinline__ float one(const void *w, int64_t i)
    {
        return __half2float(__ushort_as_half(__ldg((const unsigned short *)w + i)));
    }
    static __device__ __forceinline__ void eight(const void *w, int64_t i, float v[8])
    {
        uint4 q = __ldg((const uint4 *)((const unsigned short *)w + i));
        const unsigned int u[4] = { q.x, q.y, q.z, q.w };
#pragma unroll
        for (int k = 0; k < 4; k++) {
            v[2 * k] = __half2float(__ushort_as_half((unsigned short)(u[k] & 0xffffu)));
            v[2 * k + 1] = __half2float(__ushort_as_half((unsigned short)(u[k] >> 16)));
        }
    }
};

struct kern_ld_bf16 {
    static __device__ __forceinline__ float finish(const void *, int64_t, int, int, float s)
    {
        return s;
    }
    static __device__ __forceinline__ float one(const void *w, int64_t i)
    {
        return __uint_as_float((unsigned int)__ldg((const unsigned short *)w + i) << 16);
    }
    static __device__ __forceinline__ void eight(const void *w, int64_t i, float v[8])
    {
        uint4 q = __ldg((const uint4 *)((const unsigned short *)w + i));
        const unsigned int u[4] = { q.x, q.y, q.z, q.w };
#pragma unroll
        for (int k = 0; k < 4; k++) {
            v[2 * k] = __uint_as_float(u[k] << 16);
            v[2 * k + 1] = __uint_as_float(u[k] & 0xffff0000u);
        }
    }
};

/* KERN_Q8_ROW (a tied 8-bit head): int8 codes, and the row's float scale applied to the sum. */
struct kern_ld_q8 {
    static __device__ __forceinline__ float finish(const void *w, int64_t rows, int cols, int row,
                                                   float s)
    {
        /* the scales follow the codes, possibly unaligned: read their bytes */
        const unsigned char *sb = (const unsigned char *)w + rows * cols + (int64_t)row * 4;
        const unsigned int bits = (unsigned int)sb[0] | (unsigned int)sb[1] << 8 |
                                  (unsigned int)sb[2] << 16 | (unsigned int)sb[3] << 24;
        return __fmul_rn(s, __uint_as_float(bits));
    }
    static __device__ __forceinline__ float one(const void *w, int64_t i)
    {
        return (float)__ldg((const signed char *)w + i);
    }
    static __device__ __forceinline__ void eight(const void *w, int64_t i, float v[8])
    {
        const uint2 q = __ldg((const uint2 *)((const signed char *)w + i));
        const unsigned int u[2] = { q.x, q.y };
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] = (float)(signed char)(u[k >> 2] >> (8 * (k & 3)));
    }
};

/* x [n_tok][cols] and y [n_tok][rows] point at this launch's first token; grid.y * NT == n_tok. */
template <typename LD, int NT>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
kern_cuda_gemv_dense_k(const void *__restrict__ w, const float *__restrict__ x, int rows, int cols,
                       int n_tok, int vec8, float *__restrict__ y)
{
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    const int t0 = blockIdx.y * NT;
    if (row >= rows || t0 + NT > n_tok) return;   /* whole warps leave together */

    const int64_t wrow = (int64_t)row * cols;
    float acc0[NT], acc1[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) acc0[t] = acc1[t] = 0.0f;

    if (vec8) {
        for (int c = lane * 8; c < cols; c += 256) {
            float wv[8];
            LD::eight(w, wrow + c, wv);
#pragma unroll
            for (int t = 0; t < NT; t++) {
                const float4 *xp = (const float4 *)(x + (int64_t)(t0 + t) * cols + c);
                float4 a = __ldg(xp), b = __ldg(xp + 1);
                acc0[t] = __fmaf_rn(wv[0], a.x, acc0[t]);
                acc1[t] = __fmaf_rn(wv[1], a.y, acc1[t]);
                acc0[t] = __fmaf_rn(wv[2], a.z, acc0[t]);
                acc1[t] = __fmaf_rn(wv[3], a.w, acc1[t]);
                acc0[t] = __fmaf_rn(wv[4], b.x, acc0[t]);
                acc1[t] = __fmaf_rn(wv[5], b.y, acc1[t]);
                acc0[t] = __fmaf_rn(wv[6], b.z, acc0[t]);
                acc1[t] = __fmaf_rn(wv[7], b.w, acc1[t]);
            }
        }
    } else {
        int parity = 0;
        for (int c = lane; c < cols; c += 32, parity ^= 1) {
            float wv = LD::one(w, wrow + c);
#pragma unroll
            for (int t = 0; t < NT; t++) {
                float xv = __ldg(x + (int64_t)(t0 + t) * cols + c);
                if (parity) acc1[t] = __fmaf_rn(wv, xv, acc1[t]);
                else acc0[t] = __fmaf_rn(wv, xv, acc0[t]);
            }
        }
    }
#pragma unroll
    for (int t = 0; t < NT; t++) {
        const float s = kern_cuda_warp_sum(__fadd_rn(acc0[t], acc1[t]));
        if (lane == 0) y[(int64_t)(t0 + t) * rows + row] = LD::finish(w, rows, cols, row, s);
    }
}

template <typename LD, int NT>
static int gemv_launch(kern_cuda_ctx *c, const void *w, const float *x, int rows, int cols,
                       int n_tok, float *y)
{
    if (n_tok % NT) return KERN_E_INVAL;
    int chunks = n_tok / NT;
    if (chunks > 65535) return KERN_E_INVAL;   /* grid.y limit; ~524k tokens per call */
    const int vec8 = (cols % 8) == 0;          /* aligned: rows and x rows start on 32 B */
    dim3 grid((unsigned)((rows + GEMV_WARPS - 1) / GEMV_WARPS), (unsigned)chunks);
    kern_cuda_gemv_dense_k<LD, NT><<<grid, GEMV_WARPS * 32, 0, c->stream>>>(w, x, rows, cols,
                                                                             n_tok, vec8, y);
    KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_gemv_dense_k");
    return KERN_OK;
}

template <typename LD>
static int gemv_dtype(kern_cuda_ctx *c, const void *w, const float *x, int rows, int cols, int n,
                      float *y)
{
    const int full = n / KERN_CUDA_MAX_TOK, rem = n % KERN_CUDA_MAX_TOK;
    int rc = KERN_OK;
    if (full) rc = gemv_launch<LD, KERN_CUDA_MAX_TOK>(c, w, x, rows, cols, full * KERN_CUDA_MAX_TOK,
                                                      y);
    if (rc || !rem) return rc;
    const float *xr = x + (int64_t)full * KERN_CUDA_MAX_TOK * cols;
    float *yr = y + (int64_t)full * KERN_CUDA_MAX_TOK * rows;
    switch (rem) {
    case 1: return gemv_launch<LD, 1>(c, w, xr, rows, cols, 1, yr);
    case 2: return gemv_launch<LD, 2>(c, w, xr, rows, cols, 2, yr);
    case 3: return gemv_launch<LD, 3>(c, w, xr, rows, cols, 3, yr);
    case 4: return gemv_launch<LD, 4>(c, w, xr, rows, cols, 4, yr);
    case 5: return gemv_launch<LD, 5>(c, w, xr, rows, cols, 5, yr);
    case 6: return gemv_launch<LD, 6>(c, w, xr, rows, cols, 6, yr);
    default: return gemv_launch<LD, 7>(c, w, xr, rows, cols, 7, yr);
    }
}

int kern_cuda__gemv_dense(kern_cuda_ctx *c, const kern_cuda_weight *w, const float *d_x, int n,
                          float *d_y)
{
    if (!w->data || n <= 0) return KERN_E_INVAL;
    const int rows = (int)w->rows, cols = (int)w->cols;
    switch (w->dtype) {
    case KERN_F32: return gemv_dtype<kern_ld_f32>(c, w->data, d_x, rows, cols, n, d_y);
    case KERN_F16: return gemv_dtype<kern_ld_f16>(c, w->data, d_x, rows, cols, n, d_y);
    case KERN_BF16: return gemv_dtype<kern_ld_bf16>(c, w->data, d_x, rows, cols, n, d_y);
    case KERN_Q8_ROW: return gemv_dtype<kern_ld_q8>(c, w->data, d_x, rows, cols, n, d_y);
    default: return KERN_E_UNSUPPORTED;
    }
}
