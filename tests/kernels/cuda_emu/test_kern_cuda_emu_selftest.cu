/* test_kern_cuda_emu_selftest.cu — the CUDA emulator checks itself: written as CUDA, rewritten by
 * cuda_emu.sh and built by g++ like the backend (CMakeLists.txt, CLAQ_CUDA_EMU block; never
 * compiled by nvcc). It asserts that
 *  - a block reduction through shuffles, static and dynamic shared memory and barriers gives
 *    the exact sum, under every thread order (forward, reverse, shuffled: set per child process);
 *  - each misuse it promises to catch aborts: a thread returning before a barrier others wait
 *    at, a barrier reached after threads returned, a full-mask shuffle after lanes returned, a
 *    misaligned float4 __ldg;
 *  - illegal launch shapes give cudaErrorInvalidConfiguration and run nothing; copies outside a
 *    device allocation give cudaErrorInvalidValue; cudaMalloc memory reads as NaN;
 *  - the tensor-core mma.m16n8k16 (emu_mma_m16n8k16) computes D = A B + C exactly on integer
 *    operands with the fragments placed by the PTX ISA's element formulas (written out again
 *    here, element by element, apart from the emulator's register view), and aborts when a lane
 *    of the warp is missing.
 * Misuse cases run in forked children (abort is the expected outcome). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

static int failures;
#define CHECK(cond, ...)                                                                        \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                \
            fprintf(stderr, __VA_ARGS__);                                                       \
            fputc('\n', stderr);                                                                \
            failures++;                                                                         \
        }                                                                                       \
    } while (0)

/* out[b] = sum of in[b * blockDim.x ...] over the block: lane butterfly, warp partials in static
 * shared memory, a barrier, warp 0 again; in[] also goes through dynamic shared memory. */
__global__ void sum_k(const float *in, float *out)
{
    extern __shared__ float stage[];
    __shared__ float red[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    stage[threadIdx.x] = in[blockIdx.x * blockDim.x + threadIdx.x];
    __syncthreads();
    float v = stage[blockDim.x - 1 - threadIdx.x];   /* another thread's element */
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.0f;
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (threadIdx.x == 0) out[blockIdx.x] = v;
}

__global__ void return_before_barrier_k(float *out)
{
    if (threadIdx.x == 5) return;
    __syncthreads();
    out[threadIdx.x] = 1.0f;
}

__global__ void barrier_after_return_k(float *out)
{
    if (threadIdx.x >= 64) return;   /* fine on its own ... */
    __syncthreads();                 /* ... but the block's other threads never arrive */
    out[threadIdx.x] = 1.0f;
}

__global__ void shuffle_after_lane_return_k(float *out)
{
    if ((threadIdx.x & 31) == 31) return;
    float v = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
    out[threadIdx.x] = v;
}

__global__ void misaligned_ldg_k(const float *in, float *out)
{
    const float4 v = __ldg((const float4 *)(in + 1));
    out[threadIdx.x] = v.x;
}

/* One warp: D [16][8] = A [16][16] B [16][8] + C, operands fp16 / fp32 in memory, row-major.
 * PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type": groupID = lane >> 2,
 * threadID_in_group = lane % 4; A's a_i (i = 0..7, two per register, low half first): row =
 * groupID for i < 2 or 4 <= i < 6, else groupID + 8; col = threadID_in_group * 2 + (i & 1),
 * + 8 for i >= 4. B's b_i (i = 0..3): row = threadID_in_group * 2 + (i & 1), + 8 for i >= 2;
 * col = groupID. C / D's c_i (i = 0..3): row = groupID for i < 2, else groupID + 8; col =
 * threadID_in_group * 2 + (i & 1). */
__global__ void mma_k(const unsigned short *A, const unsigned short *B, const float *C, float *D,
                      int lanes)
{
    const int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
    if (lane >= lanes) return;
    unsigned short ae[8], be[4];
    for (int i = 0; i < 8; i++) {
        const int row = (i < 2 || (i >= 4 && i < 6)) ? g : g + 8;
        const int col = t * 2 + (i & 1) + (i >= 4 ? 8 : 0);
        ae[i] = A[row * 16 + col];
    }
    for (int i = 0; i < 4; i++) be[i] = B[(t * 2 + (i & 1) + (i >= 2 ? 8 : 0)) * 8 + g];
    uint32_t a[4], b[2];
    for (int r = 0; r < 4; r++) a[r] = (uint32_t)ae[2 * r] | (uint32_t)ae[2 * r + 1] << 16;
    for (int r = 0; r < 2; r++) b[r] = (uint32_t)be[2 * r] | (uint32_t)be[2 * r + 1] << 16;
    float d[4];
    for (int i = 0; i < 4; i++) d[i] = C[(i < 2 ? g : g + 8) * 8 + t * 2 + (i & 1)];
    emu_mma_m16n8k16(d, a, b);
    for (int i = 0; i < 4; i++) D[(i < 2 ? g : g + 8) * 8 + t * 2 + (i & 1)] = d[i];
}

__global__ void write_k(float *out) { out[threadIdx.x] = 2.0f; }

/* Exact sums: integer-valued floats far below 2^24. */
static int run_sum(int blocks, int threads)
{
    const int n = blocks * threads;
    float *h = (float *)malloc(sizeof(float) * n), *r = (float *)malloc(sizeof(float) * blocks);
    float *d_in = NULL, *d_out = NULL;
    int bad = 0;
    for (int i = 0; i < n; i++) h[i] = (float)(i % 97);
    if (cudaMalloc((void **)&d_in, sizeof(float) * n) || cudaMalloc((void **)&d_out, sizeof(float) * blocks) ||
        cudaMemcpy(d_in, h, sizeof(float) * n, cudaMemcpyHostToDevice)) {
        bad = 1;
        goto out;
    }
    sum_k<<<blocks, threads, threads * sizeof(float)>>>(d_in, d_out);
    if (cudaGetLastError() || cudaMemcpy(r, d_out, sizeof(float) * blocks, cudaMemcpyDeviceToHost)) {
        bad = 1;
        goto out;
    }
    for (int b = 0; b < blocks; b++) {
        double s = 0;
        for (int i = 0; i < threads; i++) s += h[b * threads + i];
        if ((double)r[b] != s) bad = 1;
    }
out:
    cudaFree(d_in);
    cudaFree(d_out);
    free(h);
    free(r);
    return bad;
}

/* Runs fn in a child with CLAQ_CUDA_EMU_ORDER=order; returns its exit status as wait() gives it. */
static int in_child(int (*fn)(void), const char *order)
{
    fflush(stdout);
    fflush(stderr);
    pid_t p = fork();
    if (p == 0) {
        setenv("CLAQ_CUDA_EMU_ORDER", order, 1);
        if (freopen("/dev/null", "w", stderr) == NULL) _exit(3);
        _exit(fn());
    }
    int st = 0;
    if (p < 0 || waitpid(p, &st, 0) != p) return -1;
    return st;
}

static int sums(void)
{
    return run_sum(3, 32) | run_sum(5, 256) | run_sum(2, 1024) | run_sum(1, 96);
}

/* D = A B + C on small integers (exact in fp16 and fp32) against the host's product. */
static int mma_lanes;
static int run_mma(void)
{
    unsigned short ha[256], hb[128];
    float hc[128], hd[128];
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++) ha[r * 16 + c] = __half_as_ushort(__float2half((float)((r * 7 + c * 3) % 23 - 11)));
    for (int k = 0; k < 16; k++)
        for (int n = 0; n < 8; n++) hb[k * 8 + n] = __half_as_ushort(__float2half((float)((k * 5 + n * 11) % 19 - 9)));
    for (int i = 0; i < 128; i++) hc[i] = (float)(i % 13) - 6.0f;
    unsigned short *da = NULL, *db = NULL;
    float *dc = NULL, *dd = NULL;
    if (cudaMalloc((void **)&da, sizeof ha) || cudaMalloc((void **)&db, sizeof hb) ||
        cudaMalloc((void **)&dc, sizeof hc) || cudaMalloc((void **)&dd, sizeof hd) ||
        cudaMemcpy(da, ha, sizeof ha, cudaMemcpyHostToDevice) ||
        cudaMemcpy(db, hb, sizeof hb, cudaMemcpyHostToDevice) ||
        cudaMemcpy(dc, hc, sizeof hc, cudaMemcpyHostToDevice))
        return 1;
    mma_k<<<1, 32>>>(da, db, dc, dd, mma_lanes);
    if (cudaGetLastError() || cudaMemcpy(hd, dd, sizeof hd, cudaMemcpyDeviceToHost)) return 1;
    int bad = 0;
    for (int r = 0; r < 16; r++)
        for (int n = 0; n < 8; n++) {
            float s = hc[r * 8 + n];
            for (int k = 0; k < 16; k++)
                s += __half2float(__ushort_as_half(ha[r * 16 + k])) * __half2float(__ushort_as_half(hb[k * 8 + n]));
            if (hd[r * 8 + n] != s) bad = 1;
        }
    cudaFree(da);
    cudaFree(db);
    cudaFree(dc);
    cudaFree(dd);
    return bad;
}
static int mma_full(void)
{
    mma_lanes = 32;
    return run_mma();
}
static int m_mma_lane_missing(void)
{
    mma_lanes = 31;
    return run_mma();
}

static float *dev_floats(int n)
{
    float *d = NULL;
    return cudaMalloc((void **)&d, sizeof(float) * n) ? NULL : d;
}

static int m_return_before_barrier(void)
{
    return_before_barrier_k<<<1, 64>>>(dev_floats(64));
    return 0;
}
static int m_barrier_after_return(void)
{
    barrier_after_return_k<<<1, 128>>>(dev_floats(128));
    return 0;
}
static int m_shuffle_after_return(void)
{
    shuffle_after_lane_return_k<<<1, 32>>>(dev_floats(32));
    return 0;
}
static int m_misaligned(void)
{
    float *d = dev_floats(64);
    misaligned_ldg_k<<<1, 1>>>(d, d + 32);
    return 0;
}

int main(void)
{
    const char *orders[] = {"forward", "reverse", "shuffle"};
    for (int o = 0; o < 3; o++) {
        const int st = in_child(sums, orders[o]);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "block sums wrong under order %s (status %#x)",
              orders[o], st);
    }

    for (int o = 0; o < 3; o++) {
        const int st = in_child(mma_full, orders[o]);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "mma.m16n8k16 wrong under order %s (status "
              "%#x)", orders[o], st);
    }

    struct {
        const char *what;
        int (*fn)(void);
    } misuse[] = {
        {"a thread returns before a barrier others wait at", m_return_before_barrier},
        {"a barrier is reached after threads returned", m_barrier_after_return},
        {"a full-mask shuffle after a lane returned", m_shuffle_after_return},
        {"a misaligned float4 __ldg", m_misaligned},
        {"an mma.sync with a lane of the warp missing", m_mma_lane_missing},
    };
    for (unsigned i = 0; i < sizeof misuse / sizeof misuse[0]; i++) {
        const int st = in_child(misuse[i].fn, "forward");
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "not caught: %s (status %#x)",
              misuse[i].what, st);
    }

    float *d = dev_floats(64);
    CHECK(d != NULL, "cudaMalloc");
    float h[64];
    CHECK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess && h[0] != h[0] &&
              h[63] != h[63], "fresh device memory does not read as NaN");
    write_k<<<1, 2048>>>(d);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "2048 threads per block accepted");
    write_k<<<dim3(1, 65536), 32>>>(d);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "grid.y = 65536 accepted");
    write_k<<<1, 32, 48 * 1024 + 4>>>(d);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "49 KiB dynamic smem accepted");
    CHECK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess && h[0] != h[0],
          "a rejected launch ran");
    write_k<<<1, 64>>>(d);
    CHECK(cudaGetLastError() == cudaSuccess, "a legal launch failed");
    CHECK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess && h[0] == 2.0f &&
              h[63] == 2.0f, "write_k did not write");
    CHECK(cudaMemcpy(d + 1, h, sizeof h, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
          "a copy past the end of an allocation accepted");
    CHECK(cudaMemcpy(h, h + 1, 4, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue,
          "a host pointer accepted as device memory");
    CHECK(cudaFree(d) == cudaSuccess && cudaFree(d) == cudaErrorInvalidValue, "double free accepted");

    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("ok: the CUDA emulator computes block reductions exactly under every thread order and "
           "catches barrier, shuffle, alignment, launch and copy misuse; mma.m16n8k16 exact in the PTX "
           "fragment layout\n");
    return 0;
}
