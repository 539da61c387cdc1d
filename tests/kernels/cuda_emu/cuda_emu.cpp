/* cuda_emu.cpp — the CUDA emulator's runtime (see cuda_emu.h): the block scheduler that runs a
 * kernel's threads as cooperative contexts (one host thread; a context switches only at
 * __syncthreads and warp shuffles), the checks on barrier use, and a fake CUDA runtime + the two
 * cuBLAS calls the backend makes, on host memory. Test infrastructure: never linked into the
 * engine or the server.
 *
 * State: the CUDA runtime API is itself process-global (the current device, the last error), so
 * the emulated one is too: one `emu` struct below, used from one host thread.
 *
 * Device memory is malloc'd (256-byte aligned) and filled with 0xff bytes on cudaMalloc, so a
 * kernel that reads memory nobody wrote sees NaN / 0xffffffff; dynamic shared memory is refilled
 * the same way before every block. Every cudaMemcpy must lie inside one live allocation (else
 * cudaErrorInvalidValue, like a real runtime on a bad device pointer). Allocations stop at
 * CLAQ_CUDA_EMU_MEM_MB (default 4096) in total: cudaErrorMemoryAllocation past that. The device
 * reports H100-like properties (132 SMs unless CLAQ_CUDA_EMU_SMS says otherwise).
 *
 * Contexts: on x86-64 a hand-written switch (callee-saved registers + stack pointer, no signal
 * mask syscall); elsewhere ucontext. Each context has a 64 KiB stack with a guard page below it.
 * A thread that blocks switches straight to the next ready thread of the round (the order is
 * the scheduler's); the scheduler runs only between rounds.
 */
#include "cuda_emu.h"

#include <stdio.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include <map>
#include <vector>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

uint3 emu_threadIdx, emu_blockIdx;
dim3 emu_blockDim, emu_gridDim;

/* A node of a captured graph: a kernel launch (its arguments copied at capture) or a memset. */
namespace cuda_emu {
struct node {
    int kind;                  /* 0 kernel, 1 memset (cudaGraphExecUpdate pairs them by kind) */
    std::function<void()> run;
};
}   /* namespace cuda_emu */
struct CUgraph_st {
    std::vector<cuda_emu::node> nodes;
};
struct CUgraphExec_st {
    std::vector<cuda_emu::node> nodes;
};

namespace {

enum th_state { TH_READY, TH_BARRIER, TH_WARP, TH_DONE };

struct th {
    th_state state;
    void *sp;                  /* saved stack pointer while switched out (x86-64) */
#if !defined(__x86_64__)
    ucontext_t uc;
#endif
    uint3 idx;
};

struct warp {
    int size;                  /* lanes that exist (the last warp may be partial) */
    int arrived;               /* lanes waiting in the current exchange */
    int exited;
    uint64_t pending[32], snapshot[32];
    uint32_t mma_in[32][10];   /* emu_mma_m16n8k16: each lane's a, b, d */
    float mma_out[32][4];      /* and its result */
};

struct emu_state {
    /* runtime */
    cudaError_t last_error = cudaSuccess;
    std::map<uintptr_t, size_t> allocs;   /* device allocations: start -> bytes */
    size_t allocated = 0, limit = 0;
    /* the block being run */
    const char *kernel = "";
    const std::function<void()> *fn = nullptr;
    std::vector<th> threads;
    std::vector<warp> warps;
    int nthreads = 0, cur = -1, barrier_arrived = 0, exited = 0;
    std::vector<unsigned char> dyn_smem;  /* exactly the launch's size (ASan sees overruns) */
    std::map<void *, uint64_t> shared_seen;  /* static __shared__ -> block_serial last filled */
    uint64_t block_serial = 0;
    int order = -1;            /* CLAQ_CUDA_EMU_ORDER: 0 forward, 1 reverse, 2 shuffled */
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    std::vector<int> run_order;
    /* the round in progress: run_order position of the running thread, threads resumed in
     * this round, threads of the block not yet returned */
    int pos = 0, ran = 0, live = 0;
    /* stream capture: one stream at a time */
    bool capturing = false, capture_invalid = false;
    cudaStream_t capture_stream = nullptr;
    std::vector<cuda_emu::node> captured;
    /* contexts */
    char *stacks = nullptr;
    size_t stack_bytes = 64 << 10, page = 4096;
    int stacks_n = 0;
    void *sched_sp = nullptr;
#if !defined(__x86_64__)
    ucontext_t sched_uc;
#endif
};

emu_state emu;

[[noreturn]] void emu_fatal(const char *what)
{
    fprintf(stderr,
            "cuda_emu: %s: kernel %s, block (%u,%u,%u), thread (%u,%u,%u) of (%u,%u,%u)\n", what,
            emu.kernel, emu_blockIdx.x, emu_blockIdx.y, emu_blockIdx.z, emu_threadIdx.x,
            emu_threadIdx.y, emu_threadIdx.z, emu_blockDim.x, emu_blockDim.y, emu_blockDim.z);
    abort();
}

/* ---- contexts ---------------------------------------------------------------------------- */

#if defined(__x86_64__)
/* emu_switch(&save_sp, new_sp): pushes the callee-saved registers, saves rsp, loads new_sp, pops
 * the other context's registers and returns into it. */
extern "C" void emu_switch(void **save_sp, void *new_sp);
asm(R"(
    .text
    .p2align 4
    .type emu_switch, @function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch, .-emu_switch
)");
#endif

void thread_body();

extern "C" void emu_thread_entry(void)
{
    thread_body();
    /* not reached: thread_body switches away for good */
    abort();
}

void stacks_reserve(int n)
{
    if (n <= emu.stacks_n) return;
    if (emu.stacks) munmap(emu.stacks, (size_t)emu.stacks_n * (emu.stack_bytes + emu.page));
    const size_t one = emu.stack_bytes + emu.page;
    void *p = mmap(nullptr, (size_t)n * one, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED) emu_fatal("cannot map thread stacks");
    emu.stacks = (char *)p;
    emu.stacks_n = n;
    for (int i = 0; i < n; i++)   /* guard page at the low end of each stack */
        if (mprotect(emu.stacks + (size_t)i * one, emu.page, PROT_NONE))
            emu_fatal("cannot protect a stack guard page");
}

void ctx_init(int i)
{
    const size_t one = emu.stack_bytes + emu.page;
    char *top = emu.stacks + (size_t)i * one + one;
#if defined(__x86_64__)
    /* After emu_switch pops 6 registers and returns into emu_thread_entry, rsp must be
     * 8 mod 16 (as after a call). */
    uintptr_t t = ((uintptr_t)top & ~(uintptr_t)15) - 8;   /* slot of a fake return address */
    void **sp = (void **)t;
    *sp = (void *)(uintptr_t)0;                             /* entry never returns */
    *--sp = (void *)emu_thread_entry;
    for (int r = 0; r < 6; r++) *--sp = nullptr;
    emu.threads[i].sp = sp;
#else
    ucontext_t *uc = &emu.threads[i].uc;
    getcontext(uc);
    uc->uc_stack.ss_sp = emu.stacks + (size_t)i * one + emu.page;
    uc->uc_stack.ss_size = emu.stack_bytes;
    uc->uc_link = nullptr;
    makecontext(uc, (void (*)(void))emu_thread_entry, 0);
#endif
}

/* The next run_order position from `from` on whose thread is ready, or -1. */
int next_ready(int from)
{
    for (int k = from; k < emu.nthreads; k++)
        if (emu.threads[emu.run_order[k]].state == TH_READY) return k;
    return -1;
}

/* Makes the thread at run_order[k] the running one (the switch to it is the caller's). */
int take(int k)
{
    const int i = emu.run_order[k];
    emu.pos = k;
    emu.cur = i;
    emu.ran++;
    emu_threadIdx = emu.threads[i].idx;
    return i;
}

void enter(int k)   /* scheduler -> the thread at run_order[k]; back when the round ends */
{
    const int i = take(k);
#if defined(__x86_64__)
    emu_switch(&emu.sched_sp, emu.threads[i].sp);
#else
    swapcontext(&emu.sched_uc, &emu.threads[i].uc);
#endif
    emu.cur = -1;
}

/* The current thread stops (barrier, exchange, return): the next ready thread of the round
 * runs, switched to directly (half the switches of going through the scheduler, same order);
 * the scheduler gets control back when the round has no ready thread left. */
void switch_away()
{
    th *t = &emu.threads[emu.cur];
    const int k = next_ready(emu.pos + 1);
    if (k >= 0) {
        const int i = take(k);
#if defined(__x86_64__)
        emu_switch(&t->sp, emu.threads[i].sp);
#else
        swapcontext(&t->uc, &emu.threads[i].uc);
#endif
    } else {
#if defined(__x86_64__)
        emu_switch(&t->sp, emu.sched_sp);
#else
        swapcontext(&t->uc, &emu.sched_uc);
#endif
    }
    /* back in this thread: whoever switched here set emu.cur and emu_threadIdx */
}

void thread_body()
{
    (*emu.fn)();
    th *t = &emu.threads[emu.cur];
    warp *w = &emu.warps[emu.cur / 32];
    if (emu.barrier_arrived)
        emu_fatal("a thread returned while others of its block wait at __syncthreads");
    if (w->arrived) emu_fatal("a lane returned while its warp waits in a shuffle");
    t->state = TH_DONE;
    emu.live--;
    emu.exited++;
    w->exited++;
    for (;;) switch_away();
}

}   /* namespace */

/* ---- what kernels call --------------------------------------------------------------------- */

void emu_syncthreads(void)
{
    if (emu.cur < 0) emu_fatal("__syncthreads outside a kernel");
    if (emu.exited)
        emu_fatal("__syncthreads reached after other threads of the block returned");
    if (++emu.barrier_arrived == emu.nthreads) {
        emu.barrier_arrived = 0;
        for (th &t : emu.threads)
            if (t.state == TH_BARRIER) t.state = TH_READY;
        return;
    }
    emu.threads[emu.cur].state = TH_BARRIER;
    switch_away();
}

uint64_t emu_shfl(uint64_t mine, int src_lane)
{
    if (emu.cur < 0) emu_fatal("warp shuffle outside a kernel");
    const int wi = emu.cur / 32, lane = emu.cur % 32;
    warp *w = &emu.warps[wi];
    if (w->exited) emu_fatal("full-mask warp shuffle after lanes of the warp returned");
    w->pending[lane] = mine;
    if (++w->arrived == w->size) {
        w->arrived = 0;
        memcpy(w->snapshot, w->pending, sizeof w->snapshot);
        for (int l = 0; l < w->size; l++)
            if (emu.threads[wi * 32 + l].state == TH_WARP) emu.threads[wi * 32 + l].state = TH_READY;
    } else {
        emu.threads[emu.cur].state = TH_WARP;
        switch_away();
    }
    return w->snapshot[src_lane & 31];   /* a lane past a partial warp reads 0xff.. */
}

/* mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32, d += A B, as the PTX ISA lays the fragments
 * out (groupID g = lane >> 2, t = lane % 4): a[0] = A[g][2t, 2t+1], a[1] = A[g+8][2t, 2t+1],
 * a[2] = A[g][2t+8, 2t+9], a[3] = A[g+8][2t+8, 2t+9] (low half first); b[0] = B[2t, 2t+1][g],
 * b[1] = B[2t+8, 2t+9][g]; d[0..1] = D[g][2t, 2t+1], d[2..3] = D[g+8][2t, 2t+1]. Every lane posts
 * its a, b and d (one exchange, like a shuffle: all 32 lanes must take part); the last to arrive
 * computes the warp's 16 x 8 outputs: the 16 products exactly, summed in double, added to d and
 * rounded once (a tensor core's own accumulation order and rounding are not modelled). */
static float emu_half(uint32_t reg, int hi)
{
    return __half2float(__ushort_as_half((unsigned short)(hi ? reg >> 16 : reg & 0xffffu)));
}

static void emu_mma_compute(warp *w)
{
    float A[16][16], B[16][8];
    for (int l = 0; l < 32; l++) {
        const int g = l >> 2, t = l & 3;
        const uint32_t *f = w->mma_in[l];
        for (int h = 0; h < 2; h++) {
            A[g][2 * t + h] = emu_half(f[0], h);
            A[g + 8][2 * t + h] = emu_half(f[1], h);
            A[g][2 * t + 8 + h] = emu_half(f[2], h);
            A[g + 8][2 * t + 8 + h] = emu_half(f[3], h);
            B[2 * t + h][g] = emu_half(f[4], h);
            B[2 * t + 8 + h][g] = emu_half(f[5], h);
        }
    }
    for (int l = 0; l < 32; l++) {
        const int g = l >> 2, t = l & 3;
        for (int i = 0; i < 4; i++) {
            const int r = i < 2 ? g : g + 8, c = 2 * t + (i & 1);
            double s = 0.0;
            for (int k = 0; k < 16; k++) s += (double)A[r][k] * (double)B[k][c];
            float d;
            memcpy(&d, &w->mma_in[l][6 + i], 4);
            w->mma_out[l][i] = (float)((double)d + s);
        }
    }
}

void emu_mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2])
{
    if (emu.cur < 0) emu_fatal("mma outside a kernel");
    const int wi = emu.cur / 32, lane = emu.cur % 32;
    warp *w = &emu.warps[wi];
    if (w->exited || w->size != 32) emu_fatal("mma.sync with lanes of the warp missing");
    memcpy(w->mma_in[lane], a, 16);
    memcpy(w->mma_in[lane] + 4, b, 8);
    memcpy(w->mma_in[lane] + 6, d, 16);
    if (++w->arrived == w->size) {
        w->arrived = 0;
        emu_mma_compute(w);
        for (int l = 0; l < w->size; l++)
            if (emu.threads[wi * 32 + l].state == TH_WARP) emu.threads[wi * 32 + l].state = TH_READY;
    } else {
        emu.threads[emu.cur].state = TH_WARP;
        switch_away();
    }
    memcpy(d, w->mma_out[lane], 16);
}

void emu_shared_fresh(void *p, size_t n)
{
    if (emu.cur < 0) emu_fatal("__shared__ outside a kernel");
    auto it = emu.shared_seen.find(p);
    if (it != emu.shared_seen.end() && it->second == emu.block_serial) return;
    emu.shared_seen[p] = emu.block_serial;
    memset(p, 0xff, n);
}

void emu_misaligned(const void *p, size_t align)
{
    char what[96];
    snprintf(what, sizeof what, "misaligned %zu-byte vector load at %p", align, p);
    emu_fatal(what);
}

/* The order the scheduler resumes ready threads in: a race between threads of a block (one
 * reads what another writes, with no barrier between) gives order-dependent results, which
 * running the tests under each order exposes. */
static void shuffle_order()
{
    if (emu.order < 0) {
        const char *e = getenv("CLAQ_CUDA_EMU_ORDER");
        emu.order = !e ? 0 : !strcmp(e, "reverse") ? 1 : !strcmp(e, "shuffle") ? 2 : 0;
    }
    const int n = emu.nthreads;
    if ((int)emu.run_order.size() != n) emu.run_order.resize(n);
    for (int i = 0; i < n; i++) emu.run_order[i] = emu.order == 1 ? n - 1 - i : i;
    if (emu.order == 2)
        for (int i = n - 1; i > 0; i--) {
            emu.rng ^= emu.rng << 13;
            emu.rng ^= emu.rng >> 7;
            emu.rng ^= emu.rng << 17;
            std::swap(emu.run_order[i], emu.run_order[(int)(emu.rng % (uint64_t)(i + 1))]);
        }
}

void *emu_dyn_smem(void)
{
    return emu.dyn_smem.empty() ? nullptr : emu.dyn_smem.data();
}

static bool config_ok(dim3 grid, dim3 block, size_t smem)
{
    const uint64_t nth = (uint64_t)block.x * block.y * block.z;
    return !(grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu ||
             grid.y > 65535 || grid.z > 65535 || nth == 0 || nth > 1024 || block.z > 64 ||
             smem > 48 * 1024);
}

/* A call the runtime refuses while a stream captures: the capture is invalidated, as there. */
static bool refused_in_capture(void)
{
    if (!emu.capturing) return false;
    emu.capture_invalid = true;
    emu.last_error = cudaErrorStreamCaptureUnsupported;
    return true;
}

bool cuda_emu::capture_kernel(cudaStream_t s, dim3 grid, dim3 block, size_t smem,
                              std::function<void()> node)
{
    if (!emu.capturing) return false;
    if (s != emu.capture_stream) {   /* another stream: the legacy one would join; refuse */
        refused_in_capture();
        return true;
    }
    if (!config_ok(grid, block, smem)) {
        emu.last_error = cudaErrorInvalidConfiguration;
        emu.capture_invalid = true;
        return true;
    }
    emu.captured.push_back(cuda_emu::node{0, std::move(node)});
    return true;
}

void cuda_emu::run_grid(const char *name, dim3 grid, dim3 block, size_t smem,
                        const std::function<void()> &fn)
{
    const uint64_t nth = (uint64_t)block.x * block.y * block.z;
    if (!config_ok(grid, block, smem)) {
        emu.last_error = cudaErrorInvalidConfiguration;
        return;
    }
    if (emu.cur >= 0) emu_fatal("kernel launched from a kernel");
    emu.kernel = name;
    emu.fn = &fn;
    emu.nthreads = (int)nth;
    emu.threads.assign(nth, th{});
    emu.warps.assign((nth + 31) / 32, warp{});
    for (size_t w = 0; w < emu.warps.size(); w++)
        emu.warps[w].size = (int)std::min<uint64_t>(32, nth - 32 * w);
    for (uint64_t i = 0; i < nth; i++)
        emu.threads[i].idx = uint3{(unsigned)(i % block.x), (unsigned)(i / block.x % block.y),
                                   (unsigned)(i / ((uint64_t)block.x * block.y))};
    std::vector<unsigned char>(smem).swap(emu.dyn_smem);
    stacks_reserve((int)nth);
    emu_gridDim = grid;
    emu_blockDim = block;
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) {
                emu_blockIdx = uint3{bx, by, bz};
                emu.block_serial++;
                if (smem) memset(emu.dyn_smem.data(), 0xff, smem);
                emu.barrier_arrived = 0;
                emu.exited = 0;
                for (warp &w : emu.warps) {
                    w.arrived = 0;
                    w.exited = 0;
                    memset(w.snapshot, 0xff, sizeof w.snapshot);
                }
                for (int i = 0; i < emu.nthreads; i++) {
                    emu.threads[i].state = TH_READY;
                    ctx_init(i);
                }
                emu.live = emu.nthreads;
                while (emu.live > 0) {
                    emu.ran = 0;
                    shuffle_order();
                    const int k = next_ready(0);
                    if (k >= 0) enter(k);
                    if (!emu.ran && emu.live > 0) {
                        emu_threadIdx = uint3{0, 0, 0};
                        emu_fatal("deadlock: threads wait at __syncthreads and in warp shuffles "
                                  "that can never complete");
                    }
                }
            }
    emu.fn = nullptr;
    emu.kernel = "";
}

/* ---- the CUDA runtime ------------------------------------------------------------------- */

namespace {

size_t emu_limit()
{
    if (!emu.limit) {
        const char *e = getenv("CLAQ_CUDA_EMU_MEM_MB");
        long mb = e && *e ? strtol(e, nullptr, 10) : 4096;
        if (mb <= 0) mb = 4096;
        emu.limit = (size_t)mb << 20;
    }
    return emu.limit;
}

/* 1 if [p, p + n) lies inside one live device allocation. */
bool in_device(const void *p, size_t n)
{
    auto it = emu.allocs.upper_bound((uintptr_t)p);
    if (it == emu.allocs.begin()) return false;
    --it;
    const uintptr_t a = (uintptr_t)p;
    return a >= it->first && n <= it->second && a - it->first <= it->second - n;
}

cudaError_t fail(cudaError_t e)
{
    emu.last_error = e;
    return e;
}

cudaError_t copy(void *dst, const void *src, size_t n, cudaMemcpyKind kind)
{
    if (n == 0) return cudaSuccess;
    if (!dst || !src) return fail(cudaErrorInvalidValue);
    bool ok;
    switch (kind) {
    case cudaMemcpyHostToDevice: ok = in_device(dst, n) && !in_device(src, 1); break;
    case cudaMemcpyDeviceToHost: ok = in_device(src, n) && !in_device(dst, 1); break;
    case cudaMemcpyDeviceToDevice: ok = in_device(src, n) && in_device(dst, n); break;
    case cudaMemcpyHostToHost: ok = true; break;
    default: ok = (in_device(dst, 1) ? in_device(dst, n) : true) &&
                  (in_device(src, 1) ? in_device(src, n) : true);
    }
    if (!ok) return fail(cudaErrorInvalidValue);
    memmove(dst, src, n);
    return cudaSuccess;
}

}   /* namespace */

extern "C" {

cudaError_t cudaMalloc(void **p, size_t n)
{
    /* stricter than the runtime's relaxed capture mode, which allows it: the backend never
     * allocates while it records a step, and this keeps it so */
    if (refused_in_capture()) return cudaErrorStreamCaptureUnsupported;
    if (!p) return fail(cudaErrorInvalidValue);
    *p = nullptr;
    if (n == 0) return cudaSuccess;
    if (n > emu_limit() || emu.allocated > emu_limit() - n) return fail(cudaErrorMemoryAllocation);
    const size_t rounded = (n + 255) & ~(size_t)255;
    void *m = aligned_alloc(256, rounded);
    if (!m) return fail(cudaErrorMemoryAllocation);
    memset(m, 0xff, rounded);   /* garbage that reads as NaN */
    emu.allocs[(uintptr_t)m] = n;
    emu.allocated += n;
    *p = m;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p)
{
    if (refused_in_capture()) return cudaErrorStreamCaptureUnsupported;
    if (!p) return cudaSuccess;
    auto it = emu.allocs.find((uintptr_t)p);
    if (it == emu.allocs.end()) return fail(cudaErrorInvalidValue);
    emu.allocated -= it->second;
    emu.allocs.erase(it);
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind)
{
    if (refused_in_capture()) return cudaErrorStreamCaptureUnsupported;
    return copy(dst, src, n, kind);
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind,
                            cudaStream_t s)
{
    (void)s;
    /* host copies are never recorded by the backend (pageable memory cannot be) */
    if (refused_in_capture()) return cudaErrorStreamCaptureUnsupported;
    return copy(dst, src, n, kind);
}

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes *a, const void *p)
{
    if (!a) return fail(cudaErrorInvalidValue);
    memset(a, 0, sizeof *a);
    /* what CUDA 11+ says: device memory, or unregistered host memory (no error) */
    a->type = p && in_device(p, 1) ? cudaMemoryTypeDevice : cudaMemoryTypeUnregistered;
    a->device = 0;
    a->devicePointer = a->type == cudaMemoryTypeDevice ? (void *)p : nullptr;
    return cudaSuccess;
}

cudaError_t cudaMemset(void *p, int v, size_t n)
{
    if (refused_in_capture()) return cudaErrorStreamCaptureUnsupported;
    if (n && !in_device(p, n)) return fail(cudaErrorInvalidValue);
    memset(p, v, n);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s)
{
    if (emu.capturing && s == emu.capture_stream) {
        if (n && !in_device(p, n)) {
            emu.capture_invalid = true;
            return fail(cudaErrorInvalidValue);
        }
        emu.captured.push_back(cuda_emu::node{1, [=]() { memset(p, v, n); }});
        return cudaSuccess;
    }
    return cudaMemset(p, v, n);
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags)
{
    (void)flags;
    if (!s) return fail(cudaErrorInvalidValue);
    static char token;   /* any non-null handle; streams carry no state here */
    *s = (cudaStream_t)(void *)&token;
    return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamDestroy(cudaStream_t s) { (void)s; return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t s)
{
    (void)s;
    return refused_in_capture() ? cudaErrorStreamCaptureUnsupported : cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void)
{
    return refused_in_capture() ? cudaErrorStreamCaptureUnsupported : cudaSuccess;
}

/* ---- graphs: capture, instantiate, update, launch ---------------------------------------- */

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode)
{
    (void)mode;
    if (emu.capturing) return fail(cudaErrorIllegalState);
    emu.capturing = true;
    emu.capture_invalid = false;
    emu.capture_stream = s;
    emu.captured.clear();
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g)
{
    if (!g) return fail(cudaErrorInvalidValue);
    *g = nullptr;
    if (!emu.capturing || s != emu.capture_stream) return fail(cudaErrorIllegalState);
    emu.capturing = false;
    if (emu.capture_invalid) {
        emu.captured.clear();
        return fail(cudaErrorStreamCaptureInvalidated);
    }
    *g = new CUgraph_st{std::move(emu.captured)};
    emu.captured.clear();
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long flags)
{
    (void)flags;
    if (!e || !g) return fail(cudaErrorInvalidValue);
    *e = new CUgraphExec_st{g->nodes};
    return cudaSuccess;
}

/* Same nodes of the same kinds in the same order: the new arguments and grids replace the old
 * (the runtime's rule for a captured chain; it also allows a kernel's function to change). */
cudaError_t cudaGraphExecUpdate(cudaGraphExec_t e, cudaGraph_t g, cudaGraphExecUpdateResultInfo *info)
{
    if (!e || !g) return fail(cudaErrorInvalidValue);
    if (info) memset(info, 0, sizeof *info);
    bool same = e->nodes.size() == g->nodes.size();
    for (size_t i = 0; same && i < g->nodes.size(); i++) same = e->nodes[i].kind == g->nodes[i].kind;
    if (!same) {
        if (info) info->result = cudaGraphExecUpdateErrorTopologyChanged;
        return fail(cudaErrorGraphExecUpdateFailure);
    }
    e->nodes = g->nodes;
    if (info) info->result = cudaGraphExecUpdateSuccess;
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s)
{
    (void)s;
    if (!e) return fail(cudaErrorInvalidValue);
    if (emu.capturing) return fail(cudaErrorStreamCaptureUnsupported);
    for (const cuda_emu::node &n : e->nodes) n.run();
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e)
{
    delete e;
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t g)
{
    delete g;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice); }
cudaError_t cudaGetDevice(int *d)
{
    if (!d) return fail(cudaErrorInvalidValue);
    *d = 0;
    return cudaSuccess;
}
cudaError_t cudaGetDeviceCount(int *n)
{
    if (!n) return fail(cudaErrorInvalidValue);
    *n = 1;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int d)
{
    if (!prop) return fail(cudaErrorInvalidValue);
    if (d != 0) return fail(cudaErrorInvalidDevice);
    memset(prop, 0, sizeof *prop);
    snprintf(prop->name, sizeof prop->name, "cuda_emu (host emulation, H100-like properties)");
    prop->totalGlobalMem = emu_limit();
    prop->sharedMemPerBlock = 48 * 1024;
    prop->sharedMemPerBlockOptin = 227 * 1024;
    prop->sharedMemPerMultiprocessor = 228 * 1024;
    prop->regsPerBlock = 65536;
    prop->warpSize = 32;
    prop->maxThreadsPerBlock = 1024;
    prop->maxThreadsDim[0] = 1024;
    prop->maxThreadsDim[1] = 1024;
    prop->maxThreadsDim[2] = 64;
    prop->maxGridSize[0] = 0x7fffffff;
    prop->maxGridSize[1] = 65535;
    prop->maxGridSize[2] = 65535;
    /* CLAQ_CUDA_EMU_SMS: another SM count, which changes the CLAQ split-K shape (1 gives the
     * largest K slices: 16 blocks, exactly 48 KiB of shared memory at 8 tokens). */
    const char *sms = getenv("CLAQ_CUDA_EMU_SMS");
    const long n_sm = sms && *sms ? strtol(sms, nullptr, 10) : 132;
    prop->multiProcessorCount = n_sm > 0 && n_sm < 100000 ? (int)n_sm : 132;
    prop->maxThreadsPerMultiProcessor = 2048;
    prop->l2CacheSize = 50 << 20;
    prop->major = 9;
    prop->minor = 0;
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void)
{
    cudaError_t e = emu.last_error;
    emu.last_error = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) { return emu.last_error; }

const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument (cuda_emu)";
    case cudaErrorMemoryAllocation: return "out of memory (cuda_emu)";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument (cuda_emu)";
    case cudaErrorInvalidDevice: return "invalid device ordinal (cuda_emu)";
    case cudaErrorStreamCaptureUnsupported:
        return "operation not permitted when stream is capturing (cuda_emu)";
    case cudaErrorStreamCaptureInvalidated: return "capture sequence invalidated (cuda_emu)";
    case cudaErrorGraphExecUpdateFailure: return "graph update not performed (cuda_emu)";
    case cudaErrorIllegalState: return "illegal state (cuda_emu)";
    default: return "unknown error (cuda_emu)";
    }
}

/* ---- cuBLAS: reference loops, fp32 accumulation ---------------------------------------- */

struct cublasContext {
    int unused;
};

cublasStatus_t cublasCreate_v2(cublasHandle_t *h)
{
    if (!h) return CUBLAS_STATUS_INVALID_VALUE;
    *h = (cublasHandle_t)calloc(1, sizeof(cublasContext));
    return *h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t h)
{
    free(h);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t h, cudaStream_t s)
{
    (void)s;
    return h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

const char *cublasGetStatusString(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE (cuda_emu)";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED (cuda_emu)";
    default: return "cuBLAS error (cuda_emu)";
    }
}

}   /* extern "C" */

namespace {

float load_elem(const void *p, cudaDataType t, int64_t i)
{
    if (t == CUDA_R_32F) return ((const float *)p)[i];
    const uint16_t h = ((const uint16_t *)p)[i];
    if (t == CUDA_R_16F) return __half2float(__ushort_as_half(h));
    return __uint_as_float((unsigned)h << 16);   /* CUDA_R_16BF */
}

/* C (m x n, ldc) = alpha op(A) op(B) + beta C, column-major, fp32 output. Every operand must lie
 * in device memory (checked: a wrong ld or size shows up as INVALID_VALUE). */
cublasStatus_t gemm_ref(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                        const float *alpha, const void *A, cudaDataType at, int lda, const void *B,
                        cudaDataType bt, int ldb, const float *beta, void *C, cudaDataType ct,
                        int ldc)
{
    if (m < 0 || n < 0 || k < 0 || !alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
    if (ct != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    if ((ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) || (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    const int arows = ta == CUBLAS_OP_N ? m : k, acols = ta == CUBLAS_OP_N ? k : m;
    const int brows = tb == CUBLAS_OP_N ? k : n, bcols = tb == CUBLAS_OP_N ? n : k;
    if (lda < std::max(1, arows) || ldb < std::max(1, brows) || ldc < std::max(1, m))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    const size_t ae = at == CUDA_R_32F ? 4 : 2, be = bt == CUDA_R_32F ? 4 : 2;
    if (k > 0 && (!in_device(A, ((size_t)(acols - 1) * lda + arows) * ae) ||
                  !in_device(B, ((size_t)(bcols - 1) * ldb + brows) * be)))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (!in_device(C, ((size_t)(n - 1) * ldc + m) * 4)) return CUBLAS_STATUS_INVALID_VALUE;
    float *c = (float *)C;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float acc = 0.0f;
            for (int l = 0; l < k; l++) {
                const int64_t ai = ta == CUBLAS_OP_N ? (int64_t)l * lda + i : (int64_t)i * lda + l;
                const int64_t bi = tb == CUBLAS_OP_N ? (int64_t)j * ldb + l : (int64_t)l * ldb + j;
                acc += load_elem(A, at, ai) * load_elem(B, bt, bi);
            }
            float *o = c + (int64_t)j * ldc + i;
            *o = *beta == 0.0f ? *alpha * acc : *alpha * acc + *beta * *o;
        }
    return CUBLAS_STATUS_SUCCESS;
}

}   /* namespace */

extern "C" {

cublasStatus_t cublasSgemm_v2(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                              int n, int k, const float *alpha, const float *A, int lda,
                              const float *B, int ldb, const float *beta, float *C, int ldc)
{
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    return gemm_ref(ta, tb, m, n, k, alpha, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb, beta, C,
                    CUDA_R_32F, ldc);
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType at,
                            int lda, const void *B, cudaDataType bt, int ldb, const void *beta,
                            void *C, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t algo)
{
    (void)algo;
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (compute != CUBLAS_COMPUTE_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    const cudaDataType ok[] = {CUDA_R_32F, CUDA_R_16F, CUDA_R_16BF};
    if (std::find(ok, ok + 3, at) == ok + 3 || std::find(ok, ok + 3, bt) == ok + 3)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    return gemm_ref(ta, tb, m, n, k, (const float *)alpha, A, at, lda, B, bt, ldb,
                    (const float *)beta, C, ct, ldc);
}

}   /* extern "C" */
