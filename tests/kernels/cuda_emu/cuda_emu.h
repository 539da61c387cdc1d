/* cuda_emu.h — lets the CUDA backend's .cu sources compile as plain host C++ (g++) so their
 * kernels can be EXECUTED on a machine without a GPU: CUDA thread builtins, the device
 * intrinsics the backend uses, __syncthreads / __shfl_xor_sync, and a launcher that runs every
 * block's threads as cooperative user-level contexts (cuda_emu.cpp). cuda_emu.sh rewrites each
 * `k<<<cfg>>>(args)` into `emu_launch(cfg)("k", k, args)` and `__shared__` into block-shared
 * storage (a static: blocks run one at a time).
 * A development check of the kernels' logic (indexing, layouts, barriers); it says nothing about
 * speed, memory-model races, or the real compiler and hardware. Single host thread. */
#ifndef CUDA_EMU_H
#define CUDA_EMU_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <functional>
#include <tuple>
#include <utility>

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __launch_bounds__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

/* ---- builtins: the running context's coordinates (set by the scheduler at each switch) ---- */
extern uint3 emu_threadIdx, emu_blockIdx;
extern dim3 emu_blockDim, emu_gridDim;
#define threadIdx emu_threadIdx
#define blockIdx emu_blockIdx
#define blockDim emu_blockDim
#define gridDim emu_gridDim

void emu_syncthreads(void);
uint64_t emu_shfl(uint64_t mine, int src_lane);    /* every lane posts; each gets src_lane's */
void *emu_dyn_smem(void);                          /* this block's dynamic shared memory */
void emu_shared_fresh(void *p, size_t n);          /* static __shared__: 0xff once per block */
void emu_misaligned(const void *p, size_t align);  /* reports and aborts */
#define __syncthreads() emu_syncthreads()
/* The tensor-core mma.sync m16n8k16 (fp16 in, fp32 accumulate), PTX fragment layout; a warp
 * collective like a shuffle (cuda_emu.cpp). */
void emu_mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]);

/* Lanes are threadIdx.x & 31: the backend's blocks are 1-D with a multiple of 32 threads. */
template <typename T> static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask)
{
    (void)mask;
    static_assert(sizeof(T) <= 8, "shuffle of a wide type");
    uint64_t mine = 0;
    memcpy(&mine, &v, sizeof(T));
    const uint64_t got = emu_shfl(mine, (int)((threadIdx.x & 31) ^ (unsigned)lane_mask));
    T r;
    memcpy(&r, &got, sizeof(T));
    return r;
}

/* Vector loads (float4, uint4) fault on a GPU when misaligned; so do they here. */
template <typename T> static inline T __ldg(const T *p)
{
    if ((uintptr_t)p % alignof(T)) emu_misaligned(p, alignof(T));
    return *p;
}

static inline float __uint_as_float(unsigned int u) { float f; memcpy(&f, &u, 4); return f; }
static inline unsigned int __float_as_uint(float f) { unsigned int u; memcpy(&u, &f, 4); return u; }
/* Host fp32 ops round to nearest; the build uses -ffp-contract=off so nothing fuses. */
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
/* Shared-memory integer atomics: threads switch only at barriers and shuffles, so a plain
 * read-modify-write is atomic here. */
static inline int atomicAdd(int *p, int v) { const int o = *p; *p = o + v; return o; }
using std::max;
using std::min;

/* ---- launches ---- */
namespace cuda_emu {
/* Checks the configuration like the runtime does (cudaErrorInvalidConfiguration, recorded for
 * cudaGetLastError; nothing runs), then runs fn once per thread of every block, blocks one after
 * another, each block's threads as cooperative contexts that switch only at __syncthreads and
 * warp shuffles. Barrier misuse (a thread that returned while others wait, lanes missing from a
 * shuffle, a deadlock) prints what happened in which kernel and block, then aborts. */
void run_grid(const char *name, dim3 grid, dim3 block, size_t smem,
              const std::function<void()> &fn);
/* Stream capture (cudaStreamBeginCapture): while a stream captures, a launch on it is recorded
 * as a graph node, its arguments copied as the real runtime copies them, and runs only when the
 * graph is launched. Returns 1 when recorded. */
bool capture_kernel(cudaStream_t s, dim3 grid, dim3 block, size_t smem,
                    std::function<void()> node);

struct launch {
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    template <typename... P, typename... A>
    void operator()(const char *name, void (*k)(P...), A &&...a) const
    {
        std::tuple<P...> args(static_cast<P>(std::forward<A>(a))...);
        const dim3 g = grid, b = block;
        const size_t sm = smem;
        if (capture_kernel(stream, g, b, sm, [=]() {
                run_grid(name, g, b, sm, [&]() { std::apply(k, args); });
            }))
            return;
        run_grid(name, grid, block, smem, [&]() { std::apply(k, args); });
    }
};
}   /* namespace cuda_emu */

static inline cuda_emu::launch emu_launch(dim3 g, dim3 b, size_t smem = 0, cudaStream_t s = 0)
{
    return cuda_emu::launch{g, b, smem, s};
}

#endif
