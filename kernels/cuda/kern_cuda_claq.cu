/* kern_cuda_claq.cu — packed CLAQ weights on the device: upload, the LUT GEMV (any n, 8 tokens per
 * launch) with split-K and the outliers fused into the split-K reduction (which also reduces the
 * tensor-core GEMM's partials, kern_cuda_claq_mma.cu), and the fp16
 * dequantization the prefill path feeds to cuBLAS. Device pointers in and out (kern.h: the
 * engine keeps activations on the device). Does not pick the path (kern_cuda.cu does). Driving
 * thread only.
 *
 * Layout: exactly kern_claq.h's, uploaded without repacking. Codes of row tile t (64 rows, the
 * last tile rt = 16..64 rows) are [block][word w < b][row in tile], so with one thread per row,
 * a warp's load of word w of a block is 128 contiguous bytes (32 rows x 4 B). A block is 32
 * storage columns of one width b in {4, 3, 2}; a row's 32 codes form a little-endian 32*b-bit
 * string over its b words (3-bit codes 10 and 21 straddle words). Outliers are kept with their
 * original column (the GEMV's reduction reads x there) and their storage column (the prefill
 * panel's), both uint32, and the fp32 deltas (val - cb[code]) are taken from the view or derived
 * here.
 *
 * GEMV (version 4; v2 was the first measured on a GPU: H200, 2026-12-04, docs/benchmarks.md):
 * grid = (rows_pad / 256 row groups, ksplit K slices, token chunks of NT <= 8).
 *  1. Each thread owns one row and requests its first block's code words, then the CTA builds
 *     its K slice's tables in shared memory (claq_build_tables, at most 48 KiB). NT == 1: the
 *     products x_s * cb_s[k] of 4-bit columns, and for 3-bit and 2-bit columns PAIR tables, the
 *     sums x_a * cb_a[i] + x_b * cb_b[j] of adjacent columns indexed by the pair's 2b code bits
 *     (64 or 16 entries), so one lookup covers two weights. NT > 1: fp32 codebooks plus the
 *     gathered x of each token (x_s = x[colmap[s]], 0 for padding columns).
 *  2. Per block the thread has the b words (the next block's already requested) and adds, with
 *     compile-time shifts, L[code] per 4-bit column or P[pair code] per 2/3-bit pair (NT == 1:
 *     shift, mask, add, one shared load and one fadd per lookup), or computes the same products
 *     and pair sums from the codebooks (NT > 1): the same rounded operations in the same order
 *     either way, so both give the same bits. All lanes of a warp read the same table at a given
 *     column: no bank conflicts for 16-entry tables, at most 2-way for 64-entry ones.
 *  3. Partial sums go to part[split][token][rows_pad] (no atomics).
 * Version 2 used one 16-entry table per column for every width (about 7 instructions per weight
 * in the PTX, against 2.5 now for 2/3-bit columns) and built the tables before asking for codes.
 * Reduce + outliers: a warp per (token, row); lanes take the K-slice partials and the row's
 * outliers (x_j * delta, product then add) in strides of 32, then two fixed-order warp sums.
 * Version 1 did this with a thread per output walking its outliers one dependent load after
 * another: on the H200 that kernel, not the GEMV, took most of the 28-69 us per LLaMA-7B matrix.
 * Batch invariance: ksplit/bps depend on the shape and SM count only, and a token's arithmetic
 * never depends on NT, n or its chunk, so y[t] is bit-identical for any n. It is NOT bit-identical
 * to the CPU (the CPU sums all columns in one sequence; here K slices are summed at the end).
 * Next versions: 16-byte code loads (several blocks per load), the outliers in the GEMV CTA
 * itself (one launch, no partials). Batches of 9+ tokens can take the tensor-core GEMM instead
 * (kern_cuda_claq_mma.cu, opt-in: kern_cuda__mma_n), which writes the same partials for the same
 * reductions.
 */
#include <stdlib.h>
#include <string.h>

#include <cuda_fp16.h>

#include "kern_claq.h"
#include "kern_cuda_claq.h"
#include "kern_cuda_impl.h"
#include "kern_half.h"

#define CLAQ_THREADS 256      /* rows per CTA */
#define CLAQ_MAX_BPS 12       /* blocks per K slice: 384 columns, <= 48 KiB of tables (NT = 1:
                                 4 KiB per 3-bit block; NT = 8: 2.5 KiB per block) */

/* NB bits at bit offset BIT of u, times 4: the byte offset of that entry in a float table. With
 * constant arguments this is a shift (a funnel shift when the field straddles words) and a mask. */
__device__ __forceinline__ uint32_t claq_off4(const uint32_t (&u)[4], int bit, int nb)
{
    const int w = bit >> 5, sh = bit & 31;
    const uint32_t mask = ((1u << nb) - 1) << 2;
    uint32_t v;
    if (sh + nb > 32) v = (u[w] >> sh | u[w + 1] << (32 - sh)) << 2;
    else if (sh >= 2) v = u[w] >> (sh - 2);
    else v = u[w] << (2 - sh);
    return v & mask;
}

__device__ __forceinline__ float claq_lds(const float *tab, uint32_t byte_off)
{
    return *(const float *)((const char *)tab + byte_off);
}

/* One 32-column block of width B for one row, from its words u. The arithmetic, identical for
 * every NT so that a token's bits never depend on the batch:
 *   B = 4:     acc[c & 1] += x_c * cb_c[code_c]                                  (c = 0..31)
 *   B = 3, 2:  acc[p & 1] += x_2p * cb_2p[code_2p] + x_2p+1 * cb_2p+1[code_2p+1]  (p = 0..15)
 * NT == 1 reads the products (B = 4) or the pair sums (B < 4, indexed by the 2B bits of the
 * pair) from tables the CTA built; NT > 1 computes them from fp32 codebooks tab [32][16] and the
 * gathered x, xs [NT][xs_stride]. */
template <int B, int NT>
__device__ __forceinline__ void claq_block(const uint32_t (&u)[4], const float *__restrict__ tab,
                                           const float *__restrict__ xs, int xs_stride,
                                           float (&a0)[NT], float (&a1)[NT])
{
    if (B == 4) {
#pragma unroll
        for (int c = 0; c < 32; c++) {
            if (NT == 1) {
                const float v = claq_lds(tab + c * 16, claq_off4(u, 4 * c, 4));
                if (c & 1) a1[0] = __fadd_rn(a1[0], v);
                else a0[0] = __fadd_rn(a0[0], v);
            } else {
                const float v = tab[c * 16 + claq_code_at<4>(u, c)];
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    const float prod = __fmul_rn(v, xs[t * xs_stride + c]);
                    if (c & 1) a1[t] = __fadd_rn(a1[t], prod);
                    else a0[t] = __fadd_rn(a0[t], prod);
                }
            }
        }
    } else {
#pragma unroll
        for (int p = 0; p < 16; p++) {
            if (NT == 1) {
                const float v = claq_lds(tab + p * (1 << (2 * B)), claq_off4(u, 2 * B * p, 2 * B));
                if (p & 1) a1[0] = __fadd_rn(a1[0], v);
                else a0[0] = __fadd_rn(a0[0], v);
            } else {
                const float va = tab[(2 * p) * 16 + claq_code_at<B>(u, 2 * p)];
                const float vb = tab[(2 * p + 1) * 16 + claq_code_at<B>(u, 2 * p + 1)];
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    const float pair = __fadd_rn(__fmul_rn(va, xs[t * xs_stride + 2 * p]),
                                                 __fmul_rn(vb, xs[t * xs_stride + 2 * p + 1]));
                    if (p & 1) a1[t] = __fadd_rn(a1[t], pair);
                    else a0[t] = __fadd_rn(a0[t], pair);
                }
            }
        }
    }
}

/* Blocks of each width in the K slice [blk0, blk0 + nbl) (blocks are ordered 4, 3, 2). */
__device__ __forceinline__ void claq_slice_widths(const kern_cuda_claq_args &k, int blk0, int nbl,
                                                  int &n4, int &n3)
{
    n4 = max(0, min(k.nb4, blk0 + nbl) - blk0);
    n3 = max(0, min(k.nb4 + k.nb3, blk0 + nbl) - max(blk0, k.nb4));
}

/* x_s for storage column s of token row xt (0 for padding). */
__device__ __forceinline__ float claq_x(const kern_cuda_claq_args &k, const float *__restrict__ xt,
                                        int s)
{
    const uint32_t j = __ldg(k.colmap + s);
    return j == KERN_CLAQ_PAD ? 0.0f : __ldg(xt + j);
}

/* The NT == 1 tables of a K slice: 4-bit blocks first, 512 floats each ([column][16] products
 * x * cb, entries past 2^b unused), then 3-bit blocks, 1024 floats ([pair][64] pair sums indexed
 * code_2p | code_2p+1 << 3), then 2-bit blocks, 256 floats ([pair][16]). A task writes 16, 8 or
 * 4 consecutive entries (16-byte stores, a warp's run contiguous). */
__device__ void claq_build_tables(const kern_cuda_claq_args &k, const float *__restrict__ xt,
                                  int blk0, int n4, int n3, int n2, float *__restrict__ tab)
{
    const int t4 = n4 * 32, t3 = n3 * 16 * 8, t2 = n2 * 16 * 4;   /* tasks of each kind */
    for (int task = threadIdx.x; task < t4 + t3 + t2; task += blockDim.x) {
        if (task < t4) {   /* column: 16 products */
            const int s = blk0 * 32 + task;
            const float xv = claq_x(k, xt, s);
            const uint16_t *cbs = k.cb + claq_cb_offset(k, s);
            float *o = tab + task * 16;
#pragma unroll
            for (int e = 0; e < 16; e += 4)
                *(float4 *)(o + e) =
                    make_float4(__fmul_rn(xv, claq_f16(__ldg(cbs + e))),
                                __fmul_rn(xv, claq_f16(__ldg(cbs + e + 1))),
                                __fmul_rn(xv, claq_f16(__ldg(cbs + e + 2))),
                                __fmul_rn(xv, claq_f16(__ldg(cbs + e + 3))));
        } else {           /* (pair, j): entries i + (j << B) for i < 2^B */
            const int B = task < t4 + t3 ? 3 : 2, nc = 1 << B;
            const int rel = task < t4 + t3 ? task - t4 : task - t4 - t3;
            const int pair = rel >> B, j = rel & (nc - 1);
            const int blk = blk0 + n4 + (B == 3 ? 0 : n3) + (pair >> 4);
            const int sa = blk * 32 + 2 * (pair & 15);
            const float xa = claq_x(k, xt, sa), xb = claq_x(k, xt, sa + 1);
            const uint16_t *ca = k.cb + claq_cb_offset(k, sa);
            const float bv = __fmul_rn(xb, claq_f16(__ldg(ca + nc + j)));   /* column sa + 1 */
            float *o = tab + t4 * 16 + (B == 3 ? pair * 64 : n3 * 1024 + pair * 16) + (j << B);
            for (int i = 0; i < nc; i += 4)
                *(float4 *)(o + i) =
                    make_float4(__fadd_rn(__fmul_rn(xa, claq_f16(__ldg(ca + i))), bv),
                                __fadd_rn(__fmul_rn(xa, claq_f16(__ldg(ca + i + 1))), bv),
                                __fadd_rn(__fmul_rn(xa, claq_f16(__ldg(ca + i + 2))), bv),
                                __fadd_rn(__fmul_rn(xa, claq_f16(__ldg(ca + i + 3))), bv));
        }
    }
}

/* x: this launch's first token [n_tok][cols]; part: this launch's first token of split 0,
 * part[split * split_stride + t * rows_pad + r]. */
template <int NT>
__global__ void __launch_bounds__(CLAQ_THREADS)
kern_cuda_claq_gemv_k(kern_cuda_claq_args k, const float *__restrict__ x, int n_tok, int bps,
                      int nblocks, float *__restrict__ part, int64_t split_stride)
{
    extern __shared__ float sm[];
    const int split = blockIdx.y, t0 = blockIdx.z * NT;
    const int blk0 = split * bps;
    if (t0 + NT > n_tok || blk0 >= nblocks) return;   /* uniform per CTA */
    const int nbl = min(bps, nblocks - blk0);
    const int ncol = nbl * 32, s0 = blk0 * 32;
    int n4, n3;
    claq_slice_widths(k, blk0, nbl, n4, n3);
    float *tab = sm;                   /* NT == 1: claq_build_tables; else [ncol][16] codebooks */
    float *xs = sm + ncol * 16;        /* [NT][ncol], NT > 1 only */

    /* This row's first block of codes is requested before the tables are built. */
    const int r = blockIdx.x * CLAQ_THREADS + threadIdx.x;
    const bool live = r < k.rows_pad;
    const int tile = r >> 6, rr = r & 63;
    const int rt = live ? min(64, k.rows_pad - tile * 64) : 0;
    const uint32_t *base = live ? k.codes + (int64_t)tile * 64 * k.wpr + rr : k.codes;
    uint32_t u[4], un[4];
    int b = claq_bits(k, blk0);
    claq_load_words(base + (int64_t)rt * claq_block_words(k, blk0), rt, live ? b : 0, u);

    if (NT == 1) {
        claq_build_tables(k, x + (int64_t)t0 * k.cols, blk0, n4, n3, nbl - n4 - n3, tab);
    } else {
        /* A thread per column: its 2^b codebook entries (independent loads), x of each token. */
        for (int cl = threadIdx.x; cl < ncol; cl += blockDim.x) {
            const int s = s0 + cl;
            const int bb = claq_bits(k, s >> 5);
            const uint16_t *cbs = k.cb + claq_cb_offset(k, s);
#pragma unroll
            for (int e = 0; e < 16; e++) tab[cl * 16 + e] = claq_f16(__ldg(cbs + (e & ((1 << bb) - 1))));
#pragma unroll
            for (int t = 0; t < NT; t++) xs[t * ncol + cl] = claq_x(k, x + (int64_t)(t0 + t) * k.cols, s);
        }
    }
    __syncthreads();
    if (!live) return;   /* after the only barrier */

    float a0[NT], a1[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) a0[t] = a1[t] = 0.0f;
    /* Two blocks in flight: block bl + 1's words are requested before block bl is summed. */
    for (int bl = 0; bl < nbl; bl++) {
        const int blk = blk0 + bl;
        const int bn = bl + 1 < nbl ? claq_bits(k, blk + 1) : 0;
        claq_load_words(base + (int64_t)rt * claq_block_words(k, blk + 1), rt, bn, un);
        const float *xb = xs + bl * 32;
        if (NT == 1) {
            const float *tb = b == 4 ? tab + bl * 512
                              : b == 3 ? tab + n4 * 512 + (bl - n4) * 1024
                                       : tab + n4 * 512 + n3 * 1024 + (bl - n4 - n3) * 256;
            switch (b) {
            case 4: claq_block<4, NT>(u, tb, xb, ncol, a0, a1); break;
            case 3: claq_block<3, NT>(u, tb, xb, ncol, a0, a1); break;
            default: claq_block<2, NT>(u, tb, xb, ncol, a0, a1); break;
            }
        } else {
            const float *tb = tab + bl * 32 * 16;
            switch (b) {
            case 4: claq_block<4, NT>(u, tb, xb, ncol, a0, a1); break;
            case 3: claq_block<3, NT>(u, tb, xb, ncol, a0, a1); break;
            default: claq_block<2, NT>(u, tb, xb, ncol, a0, a1); break;
            }
        }
#pragma unroll
        for (int i = 0; i < 4; i++) u[i] = un[i];
        b = bn;
    }
#pragma unroll
    for (int t = 0; t < NT; t++)
        part[(int64_t)split * split_stride + (int64_t)(t0 + t) * k.rows_pad + r] =
            __fadd_rn(a0[t], a1[t]);
}

/* y[t][r] = (K-slice partials) + (outliers of row r, x[j] * delta), for one warp: lane l sums
 * slices l, l + 32, ... and outliers rowptr[r] + l, + 32, ... in order, then each sum is reduced
 * over the warp in a fixed order, so y[t][r] depends on the row only, never on n. Every lane
 * gets it. */
__device__ __forceinline__ float claq_reduce_one(const kern_cuda_claq_args &k,
                                                 const float *__restrict__ x, int n, int ksplit,
                                                 const float *__restrict__ part, int t, int r,
                                                 int lane)
{
    const int64_t split_stride = (int64_t)n * k.rows_pad;
    const float *pp = part + (int64_t)t * k.rows_pad + r;
    float s = 0.0f;
    for (int sp = lane; sp < ksplit; sp += 32) s = __fadd_rn(s, __ldg(pp + sp * split_stride));
    const float *xt = x + (int64_t)t * k.cols;
    float o = 0.0f;
    const uint32_t end = __ldg(k.rowptr + r + 1);
    for (uint32_t i = __ldg(k.rowptr + r) + lane; i < end; i += 32)
        o = __fadd_rn(o, __fmul_rn(__ldg(xt + __ldg(k.ocol + i)), __ldg(k.odelta + i)));
    s = kern_cuda_warp_sum(s);
    o = kern_cuda_warp_sum(o);
    return __fadd_rn(s, o);
}

/* y[t][r] for every (t, r), a warp each; accumulate: y[t][r] = y[t][r] + that instead (the
 * residual add in the epilogue, kern_cuda_add_k's operation). */
__global__ void kern_cuda_claq_reduce_k(kern_cuda_claq_args k, const float *__restrict__ x, int n,
                                        int ksplit, const float *__restrict__ part,
                                        float *__restrict__ y, int accumulate)
{
    const int64_t total = (int64_t)n * k.rows;
    const int lane = threadIdx.x & 31, wpb = blockDim.x >> 5;
    for (int64_t g = (int64_t)blockIdx.x * wpb + (threadIdx.x >> 5); g < total;
         g += (int64_t)gridDim.x * wpb) {   /* g is uniform across the warp */
        const int t = (int)(g / k.rows), r = (int)(g % k.rows);
        const float v = claq_reduce_one(k, x, n, ksplit, part, t, r, lane);
        if (lane == 0) {
            float *o = y + (int64_t)t * k.rows + r;
            *o = accumulate ? __fadd_rn(*o, v) : v;
        }
    }
}

/* Up to three matrices of the same input (q, k, v) reduced by one kernel: warp g serves matrix m
 * where g falls in its range of n * rows outputs, each output as kern_cuda_claq_reduce_k makes
 * it (the same bits, one launch instead of three). */
struct kern_cuda_claq_multi {
    kern_cuda_claq_args k[KERN_MATMUL_MULTI_MAX];
    const float *part[KERN_MATMUL_MULTI_MAX];
    float *y[KERN_MATMUL_MULTI_MAX];
    int ksplit[KERN_MATMUL_MULTI_MAX];
    int64_t end[KERN_MATMUL_MULTI_MAX];   /* cumulative n * rows */
    int count;
};

__global__ void kern_cuda_claq_reduce_multi_k(kern_cuda_claq_multi mm, const float *__restrict__ x,
                                              int n)
{
    const int lane = threadIdx.x & 31, wpb = blockDim.x >> 5;
    for (int64_t g = (int64_t)blockIdx.x * wpb + (threadIdx.x >> 5); g < mm.end[mm.count - 1];
         g += (int64_t)gridDim.x * wpb) {   /* uniform across the warp */
        int m = 0;
        while (g >= mm.end[m]) m++;
        const int64_t o = g - (m ? mm.end[m - 1] : 0);
        const kern_cuda_claq_args &k = mm.k[m];
        const int t = (int)(o / k.rows), r = (int)(o % k.rows);
        const float v = claq_reduce_one(k, x, n, mm.ksplit[m], mm.part[m], t, r, lane);
        if (lane == 0) mm.y[m][(int64_t)t * k.rows + r] = v;
    }
}

/* The gate and up projections' reductions and the SwiGLU between them, one warp per (t, r):
 * out[t][r] = silu(gate[t][r]) * up[t][r], each of the two as kern_cuda_claq_reduce_k makes it
 * and the product as kern_cuda_swiglu_k makes it (kern_cuda_silu_mul): the same bits as the
 * three kernels, without the two intermediate rows. */
__global__ void kern_cuda_claq_reduce_swiglu_k(kern_cuda_claq_args kg, kern_cuda_claq_args ku,
                                               const float *__restrict__ x, int n, int ksg,
                                               int ksu, const float *__restrict__ part_g,
                                               const float *__restrict__ part_u,
                                               float *__restrict__ out)
{
    const int64_t total = (int64_t)n * kg.rows;
    const int lane = threadIdx.x & 31, wpb = blockDim.x >> 5;
    for (int64_t g = (int64_t)blockIdx.x * wpb + (threadIdx.x >> 5); g < total;
         g += (int64_t)gridDim.x * wpb) {
        const int t = (int)(g / kg.rows), r = (int)(g % kg.rows);
        const float gv = claq_reduce_one(kg, x, n, ksg, part_g, t, r, lane);
        const float uv = claq_reduce_one(ku, x, n, ksu, part_u, t, r, lane);
        if (lane == 0) out[(int64_t)t * kg.rows + r] = kern_cuda_silu_mul(gv, uv);
    }
}

/* panel[rl][s] (fp16 bits, [nr][cols_pad]) = W[r0 + rl][colmap[s]] for storage column s, from the
 * codebooks; outliers are patched in after, padding columns come out 0 (their codebooks are 0).
 * The prefill GEMM multiplies this panel by x gathered into storage order (x_s = x[colmap[s]], 0
 * for padding: kern_cuda__claq_gather_f16), so no store ever follows colmap: every panel row is
 * written as whole 16-byte runs. A CTA is DQ_ROWS rows x DQ_BLOCKS 32-column blocks: codebooks
 * staged in shared memory; warp w unpacks block w, a lane per row (consecutive rows: coalesced
 * code words), into a shared [row][storage column] tile, 16 bytes per store; then each warp
 * copies whole tile rows out, 16 bytes per lane. Version 2 wrote the panel in original column
 * order through colmap (2-byte scattered stores): 2.6x the fp16 cuBLAS time at n = 512 on the
 * H200; version 1 computed each element's code from scratch: 5.5x. */
#define DQ_ROWS 32
#define DQ_BLOCKS 8
#define DQ_LD (DQ_BLOCKS * 32 + 8)   /* tile row stride in halves: 16-byte rows, banks spread */

__global__ void __launch_bounds__(DQ_BLOCKS * 32)
kern_cuda_claq_dequant_k(kern_cuda_claq_args k, int r0, int nr, uint16_t *__restrict__ panel)
{
    __shared__ uint16_t cb_s[DQ_BLOCKS * 32 * 16];   /* [column][16], entries repeat past 2^b */
    __shared__ uint4 tile16[DQ_ROWS * DQ_LD / 8];     /* uint4: 16-byte aligned rows */
    uint16_t *tile = (uint16_t *)tile16;
    const int nblocks = k.nb4 + k.nb3 + k.nb2;
    const int blk0 = blockIdx.y * DQ_BLOCKS, rl0 = blockIdx.x * DQ_ROWS;
    const int s0 = blk0 * 32;
    const int ncol = min(DQ_BLOCKS, nblocks - blk0) * 32;
    for (int cl = threadIdx.x; cl < ncol; cl += blockDim.x) {
        const int s = s0 + cl, b = claq_bits(k, s >> 5);
        const uint16_t *cbs = k.cb + claq_cb_offset(k, s);
#pragma unroll
        for (int e = 0; e < 16; e++) cb_s[cl * 16 + e] = __ldg(cbs + (e & ((1 << b) - 1)));
    }
    __syncthreads();
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int rl = rl0 + lane, blk = blk0 + w;
    if (rl < nr && blk < nblocks) {   /* no barrier inside */
        const int r = r0 + rl, t = r >> 6, rr = r & 63;
        const int rt = min(64, k.rows_pad - t * 64), b = claq_bits(k, blk);
        uint32_t u[4];
        const uint32_t *p = k.codes + (int64_t)t * 64 * k.wpr + rr;
        claq_load_words(p + (int64_t)rt * claq_block_words(k, blk), rt, b, u);
        const uint16_t *cbs = cb_s + w * 32 * 16;
        uint16_t *out = tile + lane * DQ_LD + w * 32;
        switch (b) {
        case 4: claq_dq_codes<4, 0, 4, 16>(u, cbs, out); break;
        case 3: claq_dq_codes<3, 0, 4, 16>(u, cbs, out); break;
        default: claq_dq_codes<2, 0, 4, 16>(u, cbs, out); break;
        }
    }
    __syncthreads();
    for (int i = w; i < DQ_ROWS && rl0 + i < nr; i += DQ_BLOCKS)
        if (lane * 8 < ncol)
            *(uint4 *)(panel + (int64_t)(rl0 + i) * k.cols_pad + s0 + lane * 8) =
                *(const uint4 *)(tile + i * DQ_LD + lane * 8);
}

/* Outliers of rows [r0, r0 + nr) into the storage-order panel. */
__global__ void kern_cuda_claq_patch_k(kern_cuda_claq_args k, int r0, int nr,
                                       uint16_t *__restrict__ panel)
{
    for (int rl = blockIdx.x * blockDim.x + threadIdx.x; rl < nr; rl += gridDim.x * blockDim.x) {
        const int r = r0 + rl;
        for (uint32_t i = k.rowptr[r]; i < k.rowptr[r + 1]; i++)
            panel[(int64_t)rl * k.cols_pad + k.oscol[i]] = k.oval[i];
    }
}

/* xs[t][s] = fp16(x[t][colmap[s]]), 0 for padding columns: x in the panel's column order. */
__global__ void kern_cuda_claq_gather_f16_k(kern_cuda_claq_args k, const float *__restrict__ x,
                                            int n, __half *__restrict__ xs)
{
    const int64_t count = (int64_t)n * k.cols_pad;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / k.cols_pad;
        const uint32_t j = __ldg(k.colmap + (i - t * k.cols_pad));
        xs[i] = j == KERN_CLAQ_PAD ? __float2half_rn(0.0f) : __float2half_rn(x[t * k.cols + j]);
    }
}

/* ---- host side ----------------------------------------------------------------------------- */

int kern_cuda__claq_available(void) { return 1; }

/* Checks the view against itself (a view comes from a loader that validated the file, but a bad
 * one would make kernels read out of bounds, so the cheap invariants are re-checked). */
static int claq_validate(const kern_matrix *m, const kern_claq *k)
{
    if (!k || k->rows != m->rows || k->cols != m->cols) return KERN_E_INVAL;
    if (k->rows_pad < k->rows || k->rows_pad % KERN_CLAQ_ROW_ALIGN ||
        k->n_tiles != (k->rows_pad + KERN_CLAQ_ROW_TILE - 1) / KERN_CLAQ_ROW_TILE)
        return KERN_E_INVAL;
    for (int b = 2; b <= 4; b++)
        if (k->nblk_bits[b] < 0) return KERN_E_INVAL;
    const int64_t nb = kern_claq_nblocks(k);
    if (nb <= 0 || k->cols_pad != KERN_CLAQ_COL_BLOCK * nb ||
        k->words_per_row != 4 * k->nblk_bits[4] + 3 * k->nblk_bits[3] + 2 * k->nblk_bits[2])
        return KERN_E_INVAL;
    if (k->rows_pad > INT32_MAX / 2 || k->cols_pad > INT32_MAX / 16 ||
        k->rows_pad * k->words_per_row > (int64_t)1 << 40)
        return KERN_E_INVAL;
    if (!k->colmap || !k->cb || !k->codes || k->nnz < 0 || k->nnz > UINT32_MAX) return KERN_E_INVAL;
    for (int64_t s = 0; s < k->cols_pad; s++)
        if (k->colmap[s] != KERN_CLAQ_PAD && k->colmap[s] >= (uint64_t)k->cols) return KERN_E_INVAL;
    if (k->nnz == 0) return KERN_OK;
    if (!k->out_rowptr || (!k->out_col16 && !k->out_col32) || !k->out_val) return KERN_E_INVAL;
    if (k->out_rowptr[0] != 0 || k->out_rowptr[k->rows] != (uint64_t)k->nnz) return KERN_E_INVAL;
    for (int64_t r = 0; r < k->rows; r++)
        if (k->out_rowptr[r + 1] < k->out_rowptr[r]) return KERN_E_INVAL;
    for (int64_t i = 0; i < k->nnz; i++) {
        const uint32_t s = kern_claq_out_col(k, i);
        if (s >= (uint64_t)k->cols_pad || k->colmap[s] == KERN_CLAQ_PAD) return KERN_E_INVAL;
    }
    return KERN_OK;
}

static size_t claq_align(size_t v) { return (v + 255) & ~(size_t)255; }

int kern_cuda__claq_upload(kern_cuda_ctx *c, const kern_matrix *m, kern_cuda_weight *w)
{
    const kern_claq *k = m->claq;
    int rc = claq_validate(m, k);
    if (rc) return rc;
    kern_cuda_claqw *q = &w->claq;
    const int64_t nnz = k->nnz;
    const size_t b_codes = (size_t)(k->rows_pad * k->words_per_row) * 4;
    const size_t b_colmap = (size_t)k->cols_pad * 4;
    const size_t b_cb = (size_t)kern_claq_cb_entries(k) * 2;
    const size_t b_rowptr = (size_t)(k->rows + 1) * 4;
    const size_t b_ocol = (size_t)nnz * 4, b_oval = (size_t)nnz * 2, b_odelta = (size_t)nnz * 4;
    size_t off[8], total = 0;
    const size_t sizes[8] = { b_codes, b_colmap, b_cb, b_rowptr, b_ocol, b_oval, b_odelta, b_ocol };
    for (int i = 0; i < 8; i++) {
        off[i] = total;
        total += claq_align(sizes[i] ? sizes[i] : 4);
    }

    /* Host-side arrays the view may not have in the device's form. */
    uint32_t *h_rowptr = NULL, *h_ocol = NULL, *h_oscol = NULL;
    float *h_delta = NULL;
    char *d = NULL;
    if (nnz == 0) {
        h_rowptr = (uint32_t *)calloc((size_t)k->rows + 1, 4);
        if (!h_rowptr) return KERN_E_NOMEM;
    } else {
        h_ocol = (uint32_t *)malloc(b_ocol);
        h_oscol = (uint32_t *)malloc(b_ocol);
        if (!k->out_delta) h_delta = (float *)malloc(b_odelta);
        if (!h_ocol || !h_oscol || (!k->out_delta && !h_delta)) {
            rc = KERN_E_NOMEM;
            goto done;
        }
        /* the device keeps each outlier's ORIGINAL column (claq_validate: never padding) */
        for (int64_t i = 0; i < nnz; i++) {
            h_oscol[i] = kern_claq_out_col(k, i);
            h_ocol[i] = k->colmap[h_oscol[i]];
        }
        if (h_delta) {
            for (int64_t r = 0; r < k->rows; r++)
                for (uint32_t i = k->out_rowptr[r]; i < k->out_rowptr[r + 1]; i++) {
                    const int64_t s = kern_claq_out_col(k, i);
                    const float cbv =
                        kern_f16_to_f32(k->cb[kern_claq_cb_offset(k, s) + kern_claq_code(k, r, s)]);
                    h_delta[i] = kern_f16_to_f32(k->out_val[i]) - cbv;
                }
        }
    }

    {
        cudaError_t e = cudaMalloc((void **)&d, total);
        if (e != cudaSuccess) {
            d = NULL;
            (void)cudaGetLastError();
            kern_cuda__fail(c, "cudaMalloc(claq weight)", cudaGetErrorString(e), __FILE__,
                            __LINE__);
            rc = e == cudaErrorMemoryAllocation ? KERN_E_NOMEM : KERN_E_DEVICE;
            goto done;
        }
    }
    {
        const void *src[8] = { k->codes, k->colmap, k->cb, h_rowptr ? h_rowptr : k->out_rowptr,
                               h_ocol, k->out_val, h_delta ? h_delta : k->out_delta, h_oscol };
        for (int i = 0; i < 8; i++) {
            if (!sizes[i]) continue;
            KERN_CUDA_TRY(c, cudaMemcpyAsync(d + off[i], src[i], sizes[i], cudaMemcpyHostToDevice,
                                             c->stream), rc, done);
            c->xfer.h2d_bytes += sizes[i];
            c->xfer.weight_h2d_bytes += sizes[i];
        }
        KERN_CUDA_TRY(c, cudaStreamSynchronize(c->stream), rc, done);
    }
    q->blob = d;
    q->blob_bytes = total;
    d = NULL;
    q->codes = (const uint32_t *)((char *)q->blob + off[0]);
    q->colmap = (const uint32_t *)((char *)q->blob + off[1]);
    q->cb = (const uint16_t *)((char *)q->blob + off[2]);
    q->rowptr = (const uint32_t *)((char *)q->blob + off[3]);
    q->ocol = (const uint32_t *)((char *)q->blob + off[4]);
    q->oval = (const uint16_t *)((char *)q->blob + off[5]);
    q->odelta = (const float *)((char *)q->blob + off[6]);
    q->oscol = (const uint32_t *)((char *)q->blob + off[7]);
    q->rows_pad = k->rows_pad;
    q->cols_pad = k->cols_pad;
    q->n_tiles = k->n_tiles;
    q->words_per_row = k->words_per_row;
    q->nnz = nnz;
    for (int b = 0; b < 5; b++) q->nblk[b] = b >= 2 ? k->nblk_bits[b] : 0;
    {
        /* Split-K: about 4 CTAs per SM over (row groups x K slices), K slices of at most
         * CLAQ_MAX_BPS blocks. Depends on the shape and the device only (batch invariance). */
        const int64_t nb = kern_claq_nblocks(k);
        const int64_t groups = (k->rows_pad + CLAQ_THREADS - 1) / CLAQ_THREADS;
        const int64_t target = 4LL * (c ? c->sm_count : 132);
        int64_t ks = (target + groups - 1) / groups;
        if (ks < 1) ks = 1;
        if (ks > nb) ks = nb;
        int64_t bps = (nb + ks - 1) / ks;
        if (bps > CLAQ_MAX_BPS) bps = CLAQ_MAX_BPS;
        ks = (nb + bps - 1) / bps;
        if (ks > 65535) {
            rc = KERN_E_UNSUPPORTED;
            goto done;
        }
        q->ksplit = (int)ks;
        q->bps = (int)bps;
    }
    kern_cuda__claq_mma_shape(c, q);
    rc = KERN_OK;
done:
    if (d) (void)cudaFree(d);
    free(h_rowptr);
    free(h_ocol);
    free(h_oscol);
    free(h_delta);
    if (rc) kern_cuda__claq_release(w);
    return rc;
}

void kern_cuda__claq_release(kern_cuda_weight *w)
{
    if (!w) return;
    if (w->claq.blob) (void)cudaFree(w->claq.blob);
    memset(&w->claq, 0, sizeof w->claq);
}

template <int NT>
static int claq_launch(kern_cuda_ctx *c, const kern_cuda_claq_args &a, const kern_cuda_claqw *q,
                       const float *x, int n_tok, float *part, int64_t split_stride)
{
    if (n_tok % NT || n_tok / NT > 65535) return KERN_E_INVAL;
    const int nblocks = (int)(q->nblk[2] + q->nblk[3] + q->nblk[4]);
    const int ncol = q->bps * 32;
    size_t smem = (size_t)ncol * 16 * sizeof(float) + (size_t)NT * ncol * sizeof(float);
    if (NT == 1) {   /* claq_build_tables: the largest slice's tables */
        smem = 0;
        for (int blk0 = 0; blk0 < nblocks; blk0 += q->bps) {
            const int nbl = nblocks - blk0 < q->bps ? nblocks - blk0 : q->bps;
            const int e4 = (int)q->nblk[4], e3 = e4 + (int)q->nblk[3];
            const int n4 = blk0 + nbl < e4 ? nbl : (e4 > blk0 ? e4 - blk0 : 0);
            const int lo3 = blk0 > e4 ? blk0 : e4, hi3 = blk0 + nbl < e3 ? blk0 + nbl : e3;
            const int n3 = hi3 > lo3 ? hi3 - lo3 : 0;
            const size_t t = ((size_t)n4 * 512 + (size_t)n3 * 1024 + (size_t)(nbl - n4 - n3) * 256) *
                             sizeof(float);
            if (t > smem) smem = t;
        }
    }
    if (smem > 48 * 1024) return KERN_E_INVAL;   /* CLAQ_MAX_BPS keeps it at or under 48 KiB */
    dim3 grid((unsigned)((a.rows_pad + CLAQ_THREADS - 1) / CLAQ_THREADS), (unsigned)q->ksplit,
              (unsigned)(n_tok / NT));
    kern_cuda_claq_gemv_k<NT><<<grid, CLAQ_THREADS, smem, c->stream>>>(a, x, n_tok, q->bps,
                                                                       nblocks, part,
                                                                       split_stride);
    KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_claq_gemv_k");
    return KERN_OK;
}

/* The K-slice partial sums of w for n tokens into part [ks][n][rows_pad]: the GEMV launches,
 * or the tensor-core GEMM where the context asks for it (kern_cuda__mma_n); *ks = the K slices
 * of the path taken (what the reduction sums). */
static int claq_ksplit(const kern_cuda_ctx *c, const kern_cuda_claqw *q, int n)
{
    return kern_cuda__mma_n(c, n) && q->mma_ksplit > 0 ? q->mma_ksplit : q->ksplit;
}

static int claq_partials(kern_cuda_ctx *c, const kern_cuda_weight *w, const float *d_x, int n,
                         float *part)
{
    const kern_cuda_claqw *q = &w->claq;
    if (kern_cuda__mma_n(c, n) && q->mma_ksplit > 0)
        return kern_cuda__claq_mma_partials(c, w, d_x, n, part);
    const kern_cuda_claq_args a = claq_args(w);
    const int64_t split_stride = (int64_t)n * q->rows_pad;
    int rc = KERN_OK;
    const int full = n / KERN_CUDA_MAX_TOK, rem = n % KERN_CUDA_MAX_TOK;
    if (full) {
        rc = claq_launch<KERN_CUDA_MAX_TOK>(c, a, q, d_x, full * KERN_CUDA_MAX_TOK, part,
                                            split_stride);
        if (rc) return rc;
    }
    if (rem) {
        const int t0 = full * KERN_CUDA_MAX_TOK;
        const float *xr = d_x + (int64_t)t0 * a.cols;
        float *pr = part + (int64_t)t0 * q->rows_pad;
        switch (rem) {
        case 1: rc = claq_launch<1>(c, a, q, xr, 1, pr, split_stride); break;
        case 2: rc = claq_launch<2>(c, a, q, xr, 2, pr, split_stride); break;
        case 3: rc = claq_launch<3>(c, a, q, xr, 3, pr, split_stride); break;
        case 4: rc = claq_launch<4>(c, a, q, xr, 4, pr, split_stride); break;
        case 5: rc = claq_launch<5>(c, a, q, xr, 5, pr, split_stride); break;
        case 6: rc = claq_launch<6>(c, a, q, xr, 6, pr, split_stride); break;
        default: rc = claq_launch<7>(c, a, q, xr, 7, pr, split_stride); break;
        }
    }
    return rc;
}

/* The K-slice partials of count matrices of the same input, side by side in SLOT_S: part[i]
 * [ks[i]][n][rows_pad_i] for matrix i. */
static int claq_partials_all(kern_cuda_ctx *c, const kern_cuda_weight *const *w, int count,
                             const float *d_x, int n, float **part, int *ks)
{
    size_t off[KERN_MATMUL_MULTI_MAX], total = 0;
    for (int i = 0; i < count; i++) {
        const kern_cuda_claqw *q = &w[i]->claq;
        if (!q->blob || w[i]->cols != w[0]->cols) return KERN_E_INVAL;
        ks[i] = claq_ksplit(c, q, n);
        off[i] = total;
        total += (size_t)ks[i] * (size_t)n * (size_t)q->rows_pad;
    }
    void *d_part = NULL;
    int rc = kern_cuda__slot(c, KERN_CUDA_SLOT_S, total * sizeof(float), &d_part);
    for (int i = 0; !rc && i < count; i++) {
        part[i] = (float *)d_part + off[i];
        rc = claq_partials(c, w[i], d_x, n, part[i]);
    }
    return rc;
}

int kern_cuda__gemv_claq(kern_cuda_ctx *c, const kern_cuda_weight *w, const float *d_x, int n,
                         float *d_y, int accumulate)
{
    if (n <= 0) return KERN_E_INVAL;
    float *part = NULL;
    int ks = 0;
    int rc = claq_partials_all(c, &w, 1, d_x, n, &part, &ks);
    if (rc) return rc;
    const kern_cuda_claq_args a = claq_args(w);
    const int64_t outs = (int64_t)n * a.rows;   /* a warp each */
    const unsigned blocks = kern_cuda__blocks(outs, 256 / 32);
    kern_cuda_claq_reduce_k<<<blocks, 256, 0, c->stream>>>(a, d_x, n, ks, part, d_y, accumulate);
    KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_claq_reduce_k");
    return KERN_OK;
}

int kern_cuda__gemv_claq_multi(kern_cuda_ctx *c, const kern_cuda_weight *const *w, int count,
                               const float *d_x, int n, float *const *d_y)
{
    if (count < 1 || count > KERN_MATMUL_MULTI_MAX || n <= 0) return KERN_E_INVAL;
    float *part[KERN_MATMUL_MULTI_MAX];
    int ks[KERN_MATMUL_MULTI_MAX];
    int rc = claq_partials_all(c, w, count, d_x, n, part, ks);
    if (rc) return rc;
    kern_cuda_claq_multi mm;
    memset(&mm, 0, sizeof mm);
    mm.count = count;
    for (int i = 0; i < count; i++) {
        mm.k[i] = claq_args(w[i]);
        mm.part[i] = part[i];
        mm.y[i] = d_y[i];
        mm.ksplit[i] = ks[i];
        mm.end[i] = (i ? mm.end[i - 1] : 0) + (int64_t)n * w[i]->rows;
    }
    kern_cuda_claq_reduce_multi_k<<<kern_cuda__blocks(mm.end[count - 1], 256 / 32), 256, 0,
                                    c->stream>>>(mm, d_x, n);
    KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_claq_reduce_multi_k");
    return KERN_OK;
}

int kern_cuda__gemv_claq_swiglu(kern_cuda_ctx *c, const kern_cuda_weight *wg,
                                const kern_cuda_weight *wu, const float *d_x, int n, float *d_out)
{
    if (n <= 0 || wg->rows != wu->rows || wg->cols != wu->cols) return KERN_E_INVAL;
    const kern_cuda_weight *w[2] = {wg, wu};
    float *part[2];
    int ks[2];
    int rc = claq_partials_all(c, w, 2, d_x, n, part, ks);
    if (rc) return rc;
    const unsigned blocks = kern_cuda__blocks((int64_t)n * wg->rows, 256 / 32);
    kern_cuda_claq_reduce_swiglu_k<<<blocks, 256, 0, c->stream>>>(
        claq_args(wg), claq_args(wu), d_x, n, ks[0], ks[1], part[0], part[1], d_out);
    KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_claq_reduce_swiglu_k");
    return KERN_OK;
}

int kern_cuda__claq_dequant_f16(kern_cuda_ctx *c, const kern_cuda_weight *w, int64_t r0,
                                int64_t nr, uint16_t *d_panel)
{
    const kern_cuda_claqw *q = &w->claq;
    if (!q->blob || r0 < 0 || nr <= 0 || r0 + nr > w->rows) return KERN_E_INVAL;
    const kern_cuda_claq_args a = claq_args(w);
    const int64_t nblocks = q->nblk[2] + q->nblk[3] + q->nblk[4];
    const dim3 grid((unsigned)((nr + DQ_ROWS - 1) / DQ_ROWS),
                    (unsigned)((nblocks + DQ_BLOCKS - 1) / DQ_BLOCKS));
    if (grid.y > 65535 || grid.x > 65535u * 1024) return KERN_E_UNSUPPORTED;
    kern_cuda_claq_dequant_k<<<grid, DQ_BLOCKS * 32, 0, c->stream>>>(a, (int)r0, (int)nr, d_panel);
    KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_claq_dequant_k");
    if (q->nnz) {
        kern_cuda_claq_patch_k<<<kern_cuda__blocks(nr, 128), 128, 0, c->stream>>>(a, (int)r0,
                                                                                   (int)nr, d_panel);
        KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_claq_patch_k");
    }
    return KERN_OK;
}

int kern_cuda__claq_gather_f16(kern_cuda_ctx *c, const kern_cuda_weight *w, const float *d_x, int n,
                               uint16_t *d_xs)
{
    const kern_cuda_claqw *q = &w->claq;
    if (!q->blob || n <= 0) return KERN_E_INVAL;
    const kern_cuda_claq_args a = claq_args(w);
    kern_cuda_claq_gather_f16_k<<<kern_cuda__blocks((int64_t)n * q->cols_pad, 256), 256, 0,
                                  c->stream>>>(a, d_x, n, (__half *)d_xs);
    KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_claq_gather_f16_k");
    return KERN_OK;
}

/* ---- a tied packed head gathered as the token embedding ------------------------------------ */

/* Block t writes token t's row: threads stride over storage columns, each decoding its code
 * (the same bits as kern_claq_code) through its codebook into the original column; then, after
 * a barrier, the row's outliers overwrite theirs. An id out of range gives a zero row (the engine
 * checked; never read out of bounds regardless). */
__global__ void kern_cuda_claq_embed_k(kern_cuda_claq_args a, const int32_t *__restrict__ ids,
                                       int n, float *__restrict__ out)
{
    const int t = blockIdx.x;
    if (t >= n) return;
    const int64_t id = ids[t];
    float *o = out + (int64_t)t * a.cols;
    if (id < 0 || id >= a.rows) {
        for (int c = threadIdx.x; c < a.cols; c += blockDim.x) o[c] = 0.0f;
        return;
    }
    const int tile = (int)(id / 64), rr = (int)(id % 64);
    const int rt = a.rows_pad - tile * 64 < 64 ? a.rows_pad - tile * 64 : 64;
    const uint32_t *tw = a.codes + (int64_t)tile * 64 * a.wpr;
    for (int s = threadIdx.x; s < a.cols_pad; s += blockDim.x) {
        const uint32_t j = a.colmap[s];
        if (j == 0xffffffffu) continue;
        const int blk = s >> 5, b = claq_bits(a, blk), bit = (s & 31) * b;
        const uint32_t *p = tw + (int64_t)rt * claq_block_words(a, blk);
        const int w = bit >> 5, sh = bit & 31;
        uint32_t code = __ldg(p + (int64_t)w * rt + rr) >> sh;
        if (sh + b > 32) code |= __ldg(p + (int64_t)(w + 1) * rt + rr) << (32 - sh);
        code &= (1u << b) - 1;
        o[j] = claq_f16(a.cb[claq_cb_offset(a, s) + code]);
    }
    __syncthreads();
    for (uint32_t e = a.rowptr[id] + threadIdx.x; e < a.rowptr[id + 1]; e += blockDim.x)
        o[a.ocol[e]] = claq_f16(a.oval[e]);
}

int kern_cuda__claq_embed(kern_cuda_ctx *c, const kern_cuda_weight *w, const int32_t *d_ids,
                          int n, float *d_out)
{
    if (!w->claq.blob || n <= 0 || n > 65535 * 1024) return KERN_E_INVAL;
    kern_cuda_claq_embed_k<<<(unsigned)n, 256, 0, c->stream>>>(claq_args(w), d_ids, n, d_out);
    KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_claq_embed_k");
    return KERN_OK;
}
