/* kern_cuda_claq.h — the packed CLAQ matrix as the device kernels see it (kern_cuda_claq.cu's GEMV,
 * reductions and dequantization; kern_cuda_claq_mma.cu's tensor-core GEMM): the arguments passed
 * by value and the device twins of kern_claq.h's layout helpers (block widths, word offsets,
 * codebook offsets, a code from a row's block words, codes unpacked to fp16 through codebooks).
 * Layout: kern_cuda_claq.cu's header.
 * Internal to the CUDA backend (C++, nvcc or the emulator). */
#ifndef KERN_CUDA_CLAQ_H
#define KERN_CUDA_CLAQ_H

#include <stdint.h>

#include <cuda_fp16.h>

#include "kern_cuda_impl.h"

/* #pragma unroll where nvcc compiles; nothing in the host emulator (g++ does not know it). */
#ifdef CLAQ_CUDA_EMU
#define CLAQ_UNROLL
#else
#define CLAQ_UNROLL _Pragma("unroll")
#endif

/* Everything a kernel needs about the matrix, passed by value. */
struct kern_cuda_claq_args {
    const uint32_t *codes, *colmap, *rowptr, *ocol, *oscol;
    const uint16_t *cb, *oval;
    const float *odelta;
    int rows, cols, rows_pad, cols_pad, wpr, nb4, nb3, nb2;
};

static inline kern_cuda_claq_args claq_args(const kern_cuda_weight *w)
{
    const kern_cuda_claqw *q = &w->claq;
    kern_cuda_claq_args a;
    a.codes = q->codes;
    a.colmap = q->colmap;
    a.rowptr = q->rowptr;
    a.ocol = q->ocol;
    a.oscol = q->oscol;
    a.cb = q->cb;
    a.oval = q->oval;
    a.odelta = q->odelta;
    a.rows = (int)w->rows;
    a.cols = (int)w->cols;
    a.rows_pad = (int)q->rows_pad;
    a.cols_pad = (int)q->cols_pad;
    a.wpr = (int)q->words_per_row;
    a.nb4 = (int)q->nblk[4];
    a.nb3 = (int)q->nblk[3];
    a.nb2 = (int)q->nblk[2];
    return a;
}

/* Device twins of kern_claq.h's helpers. */
__device__ __forceinline__ int claq_bits(const kern_cuda_claq_args &k, int blk)
{
    return blk < k.nb4 ? 4 : blk < k.nb4 + k.nb3 ? 3 : 2;
}

__device__ __forceinline__ int claq_block_words(const kern_cuda_claq_args &k, int blk)
{
    if (blk <= k.nb4) return 4 * blk;
    if (blk <= k.nb4 + k.nb3) return 4 * k.nb4 + 3 * (blk - k.nb4);
    return 4 * k.nb4 + 3 * k.nb3 + 2 * (blk - k.nb4 - k.nb3);
}

__device__ __forceinline__ int64_t claq_cb_offset(const kern_cuda_claq_args &k, int s)
{
    const int64_t c4 = 32LL * k.nb4, c3 = 32LL * k.nb3;
    if (s <= c4) return 16LL * s;
    if (s <= c4 + c3) return 16 * c4 + 8 * (s - c4);
    return 16 * c4 + 8 * c3 + 4 * (s - c4 - c3);
}

__device__ __forceinline__ float claq_f16(uint16_t h)
{
    return __half2float(__ushort_as_half(h));
}

/* Loads the b <= 4 words of one row's block (p: word 0, words rt apart); words past b are 0. The
 * loads are predicated, not branched, so the next block's can be issued before this one's math. */
__device__ __forceinline__ void claq_load_words(const uint32_t *__restrict__ p, int rt, int b,
                                                uint32_t (&u)[4])
{
    CLAQ_UNROLL
    for (int i = 0; i < 4; i++) u[i] = i < b ? __ldg(p + (int64_t)i * rt) : 0u;
}

/* Code c (0..31) of a row's block of width B, from the block's words u (a little-endian
 * 32*B-bit string; 3-bit codes 10 and 21 straddle two words). c is a compile-time constant in
 * the unrolled callers, so the shifts are too. */
template <int B>
__device__ __forceinline__ unsigned claq_code_at(const uint32_t (&u)[4], int c)
{
    const int bit = c * B, w = bit >> 5, sh = bit & 31;
    uint32_t code = u[w] >> sh;
    if (sh + B > 32) code |= u[w + 1] << (32 - sh);
    return code & ((1u << B) - 1);
}

/* Codes C0 .. C0 + 8 NQ - 1 of one row's block of width B (its words u) through the codebooks
 * cbs, column c's entries at cbs[c * LD ...], into out[0 .. 8 NQ) as fp16 bits: 8 codes per
 * 16-byte store. The prefill dequantization (whole blocks, [col][16] codebooks) and the
 * tensor-core GEMM (half blocks, [col][2^B]) both unpack this way. */
template <int B, int C0, int NQ, int LD>
__device__ __forceinline__ void claq_dq_codes(const uint32_t (&u)[4],
                                              const uint16_t *__restrict__ cbs,
                                              uint16_t *__restrict__ out)
{
    CLAQ_UNROLL
    for (int q = 0; q < NQ; q++) {
        uint32_t h[4];
        CLAQ_UNROLL
        for (int i = 0; i < 4; i++) {
            const int c = C0 + q * 8 + 2 * i;
            h[i] = (uint32_t)cbs[c * LD + claq_code_at<B>(u, c)] |
                   (uint32_t)cbs[(c + 1) * LD + claq_code_at<B>(u, c + 1)] << 16;
        }
        *(uint4 *)(out + q * 8) = make_uint4(h[0], h[1], h[2], h[3]);
    }
}

#endif
