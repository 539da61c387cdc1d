/* kern_cuda_claq_mma.cu — packed CLAQ times a batch of 9 or more tokens on the tensor cores (issue
 * 10, item 5): each 32-column block of a 64-row tile is dequantized through its codebooks into
 * shared memory as fp16 and multiplied by the batch's x with mma.sync m16n8k16 (fp16 inputs, fp32
 * accumulation), so a batch reads the packed weights once instead of once per 8 tokens (the
 * GEMV's chunks). Writes the same K-slice partial sums as the GEMV (part[split][t][rows_pad]):
 * kern_cuda_claq.cu's reduction kernels add the slices and the outliers (x_j * delta in fp32, the
 * GEMV's operation) and fuse the SwiGLU, q/k/v and residual-add epilogues, unchanged.
 * Does not pick the path (kern_cuda_claq.cu does, from kern_cuda_ctx.mma_min_n). Driving thread.
 *
 * x in two fp16 halves: per token t, e_t is the power of two that brings max_j |x[t][j]| into
 * [2^13, 2^14); xs = x * 2^-e_t is split into hi = fp16(xs) and lo = fp16(xs - hi) (the
 * subtraction is exact), gathered into storage column order (kern_cuda_claq_mma_split_k). The
 * weights are fp16 codebook entries, exact in fp16, so A (hi + lo) carries x to about 22 bits
 * instead of fp16's 11, and the fp16 range never clips an activation; the partial sums are scaled
 * back by 2^e_t (exact). Two mma per fragment (hi, lo), the same fp32 accumulator.
 *
 * GEMM (version 1; NOT run on a GPU yet, only on the host emulator): grid = (row tiles,
 * mma_ksplit K slices, groups of 64 tokens), 128 threads = 4 warps, warp w owning n-tiles w and
 * w + 4 (8 tokens each) over all four 16-row m-tiles of the tile (at most 32 fp32 accumulators a
 * lane). A warp per 16 rows over every token was the first layout: it had each warp read all of
 * x's fragments, 4x the shared-memory traffic of x (64 KiB per block at 64 tokens against 16 now,
 * plus 16 KiB of A fragments), which would have bound the kernel at about twice its mma time.
 * Per block, double-buffered in shared memory (one barrier per block):
 *  - A [64][40] fp16: thread (row tid & 63, half tid >> 6) unpacks 16 codes of its row (the b
 *    code words of the row, coalesced across the warp's 32 rows) through the block's codebooks
 *    and stores them as two 16-byte runs;
 *  - X hi / lo [8 NNT][40] fp16: the block's 32 storage columns of each token, 16-byte copies;
 *  - the block's codebooks [32][2^b] fp16, staged two blocks ahead.
 * Iteration bl requests block bl+1's code words and x and block bl+2's codebooks, runs block bl's
 * mma (per warp: 2 k-steps x 4 m-tiles x its n-tiles x hi / lo), then stores what it requested
 * and dequantizes bl+1.
 * Row strides of 40 halves (80 bytes) make every fragment load and 16-byte store conflict-free.
 * Batch invariance: the K split depends on the shape and SM count only (mma_ksplit, at upload),
 * a token's column of each mma depends on its own x only, and the block order is fixed, so y[t]
 * is bit-identical for any n >= 9 on this path. It is NOT bit-identical to the GEMV (n <= 8):
 * another summation order and x in 22 bits; the path is opt-in for that reason (kern_cuda.h).
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include <cuda_fp16.h>

#include "kern_claq.h"
#include "kern_cuda_claq.h"
#include "kern_cuda_impl.h"

#define MMA_THREADS 128   /* 4 warps, two n-tiles of 8 tokens each at most */
#define MMA_TOK 64        /* tokens per CTA at most: 8 n-tiles of 8 */
#define MMA_LD 40         /* row stride of the A and X tiles in halves (32 columns + 8) */

/* d += A B on the tensor cores, one warp (PTX mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32;
 * fragment layout in cuda_emu.cpp's emulation of it). */
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4],
                                          const uint32_t (&b)[2])
{
#ifdef CLAQ_CUDA_EMU
    emu_mma_m16n8k16(d, a, b);
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

__device__ __forceinline__ uint32_t mma_ld32(const uint16_t *p) { return *(const uint32_t *)p; }

/* hi / lo [n][cols_pad] and scale [n] of x (the header): a block per token. */
__global__ void kern_cuda_claq_mma_split_k(kern_cuda_claq_args k, const float *__restrict__ x,
                                           __half *__restrict__ hi, __half *__restrict__ lo,
                                           float *__restrict__ scale)
{
    __shared__ float wmax[32];
    const int t = blockIdx.x;
    const float *xt = x + (int64_t)t * k.cols;
    float m = 0.0f;
    for (int j = threadIdx.x; j < k.cols; j += blockDim.x) m = fmaxf(m, fabsf(xt[j]));
    for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
    if ((threadIdx.x & 31) == 0) wmax[threadIdx.x >> 5] = m;
    __syncthreads();
    m = 0.0f;
    for (int i = 0; i < (int)(blockDim.x >> 5); i++) m = fmaxf(m, wmax[i]);
    int e = 0;
    if (m > 0.0f && m <= FLT_MAX) {   /* else 0: a zero row, or inf / NaN passed on */
        int ex = 0;
        (void)frexpf(m, &ex);                  /* m in [2^(ex-1), 2^ex) */
        e = min(127, max(-126, ex - 14));      /* 2^e stays a normal float */
    }
    const int64_t o = (int64_t)t * k.cols_pad;
    for (int s = threadIdx.x; s < k.cols_pad; s += blockDim.x) {
        const uint32_t j = __ldg(k.colmap + s);
        const float v = j == KERN_CLAQ_PAD ? 0.0f : ldexpf(xt[j], -e);
        const __half h = __float2half_rn(v);
        hi[o + s] = h;
        lo[o + s] = __float2half_rn(__fsub_rn(v, __half2float(h)));
    }
    if (threadIdx.x == 0) scale[t] = ldexpf(1.0f, e);
}

/* One thread's share of a block's A tile: 16 codes (half hh) of its row's block of width b, words
 * u, through the block's codebooks cbs [32][2^b]; a row past the tile writes 0. */
__device__ __forceinline__ void mma_dq_row(const uint32_t (&u)[4], int b, bool live, int hh,
                                           const uint16_t *__restrict__ cbs,
                                           uint16_t *__restrict__ out)
{
    if (!live) {
        *(uint4 *)out = make_uint4(0u, 0u, 0u, 0u);
        *(uint4 *)(out + 8) = make_uint4(0u, 0u, 0u, 0u);
        return;
    }
    if (hh == 0) {
        switch (b) {
        case 4: claq_dq_codes<4, 0, 2, (1 << 4)>(u, cbs, out); break;
        case 3: claq_dq_codes<3, 0, 2, (1 << 3)>(u, cbs, out); break;
        default: claq_dq_codes<2, 0, 2, (1 << 2)>(u, cbs, out); break;
        }
    } else {
        switch (b) {
        case 4: claq_dq_codes<4, 16, 2, (1 << 4)>(u, cbs, out); break;
        case 3: claq_dq_codes<3, 16, 2, (1 << 3)>(u, cbs, out); break;
        default: claq_dq_codes<2, 16, 2, (1 << 2)>(u, cbs, out); break;
        }
    }
}

/* A block's codebooks, [32][2^b] fp16 = 1 KiB, 512 or 256 bytes contiguous in the upload (block
 * starts are 256-byte aligned): a 16-byte piece per thread of the first 64 / 32 / 16. */
__device__ __forceinline__ bool mma_cb_get(const kern_cuda_claq_args &k, int blk, uint4 &v)
{
    const int b = claq_bits(k, blk);
    if ((int)threadIdx.x >= (32 << b) / 8) return false;
    v = __ldg((const uint4 *)(k.cb + claq_cb_offset(k, blk * 32)) + threadIdx.x);
    return true;
}

/* part[split][t][rows_pad] for the tokens [t0, min(t0 + 8 NNT, n)) of this CTA's group. */
template <int NNT>
__global__ void __launch_bounds__(MMA_THREADS)
kern_cuda_claq_mma_k(kern_cuda_claq_args k, const __half *__restrict__ xhi,
                     const __half *__restrict__ xlo, const float *__restrict__ scale, int n,
                     int t0, int bps, int nblocks, float *__restrict__ part, int64_t split_stride)
{
    constexpr int NTOK = 8 * NNT;
    constexpr int XPT = (NTOK * 8 + MMA_THREADS - 1) / MMA_THREADS;   /* 16-byte x pieces */
    extern __shared__ uint4 mma_smem[];
    uint16_t *A = (uint16_t *)mma_smem;            /* [2][64][MMA_LD] */
    uint16_t *X = A + 2 * 64 * MMA_LD;             /* [2][hi, lo][NTOK][MMA_LD] */
    uint16_t *CB = X + 2 * 2 * NTOK * MMA_LD;      /* [2][512] */

    const int tile = blockIdx.x, split = blockIdx.y;
    t0 += blockIdx.z * MMA_TOK;
    const int blk0 = split * bps;
    if (blk0 >= nblocks) return;   /* uniform per CTA */
    const int nbl = min(bps, nblocks - blk0);
    const int rt = min(64, k.rows_pad - tile * 64);
    const int tid = threadIdx.x, rr = tid & 63, hh = tid >> 6;
    const bool live = rr < rt;
    const uint32_t *rowp = k.codes + (int64_t)tile * 64 * k.wpr + rr;

    /* x of block blk into registers: piece i = (array, token, 16-byte quarter). */
    auto x_get = [&](int blk, uint4 (&v)[XPT]) {
#pragma unroll
        for (int p = 0; p < XPT; p++) {
            const int i = tid + p * MMA_THREADS;
            const int arr = i / (NTOK * 4), tl = (i / 4) % NTOK, qq = i % 4;
            v[p] = make_uint4(0u, 0u, 0u, 0u);
            if (i < NTOK * 8 && t0 + tl < n)
                v[p] = __ldg((const uint4 *)((arr ? xlo : xhi) + (int64_t)(t0 + tl) * k.cols_pad +
                                             blk * 32) + qq);
        }
    };
    auto x_put = [&](int buf, const uint4 (&v)[XPT]) {
#pragma unroll
        for (int p = 0; p < XPT; p++) {
            const int i = tid + p * MMA_THREADS;
            const int arr = i / (NTOK * 4), tl = (i / 4) % NTOK, qq = i % 4;
            if (i < NTOK * 8)
                *(uint4 *)(X + ((buf * 2 + arr) * NTOK + tl) * MMA_LD + qq * 8) = v[p];
        }
    };
    auto words = [&](int blk, uint32_t (&u)[4]) {
        const int b = claq_bits(k, blk);
        claq_load_words(rowp + (int64_t)rt * claq_block_words(k, blk), rt, live ? b : 0, u);
    };

    /* Prologue: codebooks of the first two blocks, x and A of the first. */
    uint4 cv;
    if (mma_cb_get(k, blk0, cv)) *(uint4 *)(CB + tid * 8) = cv;
    if (nbl > 1 && mma_cb_get(k, blk0 + 1, cv)) *(uint4 *)(CB + 512 + tid * 8) = cv;
    uint4 xv[XPT];
    x_get(blk0, xv);
    x_put(0, xv);
    uint32_t u[4];
    words(blk0, u);
    __syncthreads();
    mma_dq_row(u, claq_bits(k, blk0), live, hh, CB, A + rr * MMA_LD + hh * 16);
    __syncthreads();

    /* Warp w owns n-tiles w and w + 4 (tokens 8j..8j+7 of the group) across all the tile's
     * 16-row m-tiles: each token's x fragments are read from shared memory by one warp only,
     * and the A tile (4 KiB a block) by every warp. */
    constexpr int JPW = (NNT + 3) / 4;   /* n-tiles per warp at most */
    const int w = tid >> 5, lane = tid & 31, g = lane >> 2, tq = lane & 3;
    const int nm = rt / 16;              /* live m-tiles: rt is a multiple of 16 */
    float acc[4][JPW][4];
#pragma unroll
    for (int m = 0; m < 4; m++)
#pragma unroll
        for (int jj = 0; jj < JPW; jj++) acc[m][jj][0] = acc[m][jj][1] = acc[m][jj][2] = acc[m][jj][3] = 0.0f;

    for (int bl = 0; bl < nbl; bl++) {
        const int cur = bl & 1, nxt = cur ^ 1, blk = blk0 + bl;
        const bool more = bl + 1 < nbl;
        bool cb_more = false;
        if (more) {
            words(blk + 1, u);
            x_get(blk + 1, xv);
        }
        if (bl + 2 < nbl) cb_more = mma_cb_get(k, blk + 2, cv);

        if (w < NNT) {   /* uniform per warp */
            const uint16_t *As = A + cur * 64 * MMA_LD + g * MMA_LD + tq * 2;
            const uint16_t *Xh = X + (cur * 2) * NTOK * MMA_LD + g * MMA_LD + tq * 2;
            const uint16_t *Xl = Xh + NTOK * MMA_LD;
#pragma unroll
            for (int ks = 0; ks < 2; ks++) {
                uint32_t bh[JPW][2], blo[JPW][2];
#pragma unroll
                for (int jj = 0; jj < JPW; jj++) {
                    const int o = (w + 4 * jj) * 8 * MMA_LD + ks * 16;
                    const bool on = w + 4 * jj < NNT;
                    bh[jj][0] = on ? mma_ld32(Xh + o) : 0u;
                    bh[jj][1] = on ? mma_ld32(Xh + o + 8) : 0u;
                    blo[jj][0] = on ? mma_ld32(Xl + o) : 0u;
                    blo[jj][1] = on ? mma_ld32(Xl + o + 8) : 0u;
                }
#pragma unroll
                for (int m = 0; m < 4; m++) {
                    if (m < nm) {   /* uniform per CTA */
                        const uint16_t *am = As + m * 16 * MMA_LD + ks * 16;
                        const uint32_t a[4] = {mma_ld32(am), mma_ld32(am + 8 * MMA_LD),
                                               mma_ld32(am + 8), mma_ld32(am + 8 * MMA_LD + 8)};
#pragma unroll
                        for (int jj = 0; jj < JPW; jj++)
                            if (w + 4 * jj < NNT) {   /* uniform per warp */
                                mma_16816(acc[m][jj], a, bh[jj]);
                                mma_16816(acc[m][jj], a, blo[jj]);
                            }
                    }
                }
            }
        }

        if (more) {
            x_put(nxt, xv);
            mma_dq_row(u, claq_bits(k, blk + 1), live, hh, CB + nxt * 512,
                       A + nxt * 64 * MMA_LD + rr * MMA_LD + hh * 16);
        }
        if (cb_more) *(uint4 *)(CB + cur * 512 + tid * 8) = cv;
        __syncthreads();
    }

    if (w >= NNT) return;   /* after the last barrier */
    float *ps = part + (int64_t)split * split_stride;
#pragma unroll
    for (int m = 0; m < 4; m++)
#pragma unroll
        for (int jj = 0; jj < JPW; jj++) {
            if (m >= nm || w + 4 * jj >= NNT) continue;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int t = t0 + (w + 4 * jj) * 8 + tq * 2 + (i & 1);
                const int r = tile * 64 + m * 16 + g + (i >= 2 ? 8 : 0);
                if (t < n) ps[(int64_t)t * k.rows_pad + r] = __fmul_rn(acc[m][jj][i], __ldg(scale + t));
            }
        }
}

/* ---- host side ----------------------------------------------------------------------------- */

static size_t mma_smem_bytes(int nnt)
{
    return (size_t)(2 * 64 * MMA_LD + 2 * 2 * 8 * nnt * MMA_LD + 2 * 512) * sizeof(uint16_t);
}

template <int NNT>
static int mma_launch(kern_cuda_ctx *c, const kern_cuda_claq_args &a, const kern_cuda_claqw *q,
                      const __half *hi, const __half *lo, const float *scale, int n, int t0,
                      int groups, float *part, int64_t split_stride)
{
    const int nblocks = (int)(q->nblk[2] + q->nblk[3] + q->nblk[4]);
    const dim3 grid((unsigned)q->n_tiles, (unsigned)q->mma_ksplit, (unsigned)groups);
    kern_cuda_claq_mma_k<NNT><<<grid, MMA_THREADS, mma_smem_bytes(NNT), c->stream>>>(
        a, hi, lo, scale, n, t0, q->mma_bps, nblocks, part, split_stride);
    KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_claq_mma_k");
    return KERN_OK;
}

void kern_cuda__claq_mma_shape(const kern_cuda_ctx *c, kern_cuda_claqw *q)
{
    /* About 2 CTAs per SM for one group of 64 tokens: more K slices hide more latency but add
     * ksplit * n * rows_pad partial sums to write and reduce. */
    const int64_t nb = q->nblk[2] + q->nblk[3] + q->nblk[4];
    const int64_t target = 2LL * (c ? c->sm_count : 132);
    int64_t ks = (target + q->n_tiles - 1) / q->n_tiles;
    if (ks < 1) ks = 1;
    if (ks > nb) ks = nb;
    const int64_t bps = (nb + ks - 1) / ks;
    ks = (nb + bps - 1) / bps;
    q->mma_ksplit = (int)(ks > 65535 ? 0 : ks);   /* 0: no mma path for this matrix */
    q->mma_bps = (int)bps;
}

int kern_cuda__claq_mma_partials(kern_cuda_ctx *c, const kern_cuda_weight *w, const float *d_x,
                                 int n, float *part)
{
    const kern_cuda_claqw *q = &w->claq;
    if (!q->blob || n <= 0 || q->mma_ksplit <= 0 || q->n_tiles > 0x7fffffff)
        return KERN_E_INVAL;
    const kern_cuda_claq_args a = claq_args(w);
    const size_t xs = (size_t)n * (size_t)q->cols_pad;
    void *d_h = NULL;
    int rc = kern_cuda__slot(c, KERN_CUDA_SLOT_H, xs * 4 + (size_t)n * 4, &d_h);
    if (rc) return rc;
    __half *hi = (__half *)d_h, *lo = hi + xs;
    float *scale = (float *)(lo + xs);   /* xs * 4 bytes in: 4-byte aligned */
    kern_cuda_claq_mma_split_k<<<(unsigned)n, 256, 0, c->stream>>>(a, d_x, hi, lo, scale);
    KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_claq_mma_split_k");

    const int64_t split_stride = (int64_t)n * q->rows_pad;
    const int full = n / MMA_TOK, rem = n % MMA_TOK;
    if (full > 65535) return KERN_E_UNSUPPORTED;
    if (full) {
        rc = mma_launch<8>(c, a, q, hi, lo, scale, n, 0, full, part, split_stride);
        if (rc) return rc;
    }
    if (rem) {
        const int t0 = full * MMA_TOK;
        switch ((rem + 7) / 8) {
        case 1: return mma_launch<1>(c, a, q, hi, lo, scale, n, t0, 1, part, split_stride);
        case 2: return mma_launch<2>(c, a, q, hi, lo, scale, n, t0, 1, part, split_stride);
        case 3: return mma_launch<3>(c, a, q, hi, lo, scale, n, t0, 1, part, split_stride);
        case 4: return mma_launch<4>(c, a, q, hi, lo, scale, n, t0, 1, part, split_stride);
        /* 5 and 6 n-tiles run as 7: ptxas (13.0, sm_90) spilled 8 bytes in those two */
        case 5: case 6: case 7:
            return mma_launch<7>(c, a, q, hi, lo, scale, n, t0, 1, part, split_stride);
        default: return mma_launch<8>(c, a, q, hi, lo, scale, n, t0, 1, part, split_stride);
        }
    }
    return KERN_OK;
}
