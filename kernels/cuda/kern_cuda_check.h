/* kern_cuda_check.h — the CUDA backend's error checks: every CUDA runtime and cuBLAS call goes
 * through one of these. A failure records the statement, file, line and the driver's text in the
 * backend context and turns into KERN_E_DEVICE; nothing here prints, exits or aborts.
 * Used from the step thread that drives the backend (the context is not shared). */
#ifndef KERN_CUDA_CHECK_H
#define KERN_CUDA_CHECK_H

#include <cublas_v2.h>
#include <cuda_runtime.h>

struct kern_cuda_ctx;

/* Records "<what>: <why> at file:line" in ctx (ctx may be NULL: nothing recorded). Defined in
 * kern_cuda.cu. Returns KERN_E_DEVICE so call sites can `return kern_cuda__fail(...)`. */
int kern_cuda__fail(struct kern_cuda_ctx *ctx, const char *what, const char *why,
                    const char *file, int line);

/* Evaluates a cudaError_t expression; on failure records it and returns KERN_E_DEVICE from the
 * enclosing function (which must return int). */
#define KERN_CUDA_CHECK(ctx, stmt)                                                            \
    do {                                                                                      \
        cudaError_t kern_e_ = (stmt);                                                         \
        if (kern_e_ != cudaSuccess)                                                           \
            return kern_cuda__fail((ctx), #stmt, cudaGetErrorString(kern_e_), __FILE__,       \
                                   __LINE__);                                                 \
    } while (0)

/* Same for a cublasStatus_t expression. */
#define KERN_CUBLAS_CHECK(ctx, stmt)                                                          \
    do {                                                                                      \
        cublasStatus_t kern_s_ = (stmt);                                                      \
        if (kern_s_ != CUBLAS_STATUS_SUCCESS)                                                 \
            return kern_cuda__fail((ctx), #stmt, cublasGetStatusString(kern_s_), __FILE__,    \
                                   __LINE__);                                                 \
    } while (0)

/* Variants for functions that unwind through a label: set `rc` and jump to `label`. */
#define KERN_CUDA_TRY(ctx, stmt, rc, label)                                                   \
    do {                                                                                      \
        cudaError_t kern_e_ = (stmt);                                                         \
        if (kern_e_ != cudaSuccess) {                                                         \
            (rc) = kern_cuda__fail((ctx), #stmt, cudaGetErrorString(kern_e_), __FILE__,       \
                                   __LINE__);                                                 \
            goto label;                                                                       \
        }                                                                                     \
    } while (0)

#define KERN_CUBLAS_TRY(ctx, stmt, rc, label)                                                 \
    do {                                                                                      \
        cublasStatus_t kern_s_ = (stmt);                                                      \
        if (kern_s_ != CUBLAS_STATUS_SUCCESS) {                                               \
            (rc) = kern_cuda__fail((ctx), #stmt, cublasGetStatusString(kern_s_), __FILE__,    \
                                   __LINE__);                                                 \
            goto label;                                                                       \
        }                                                                                     \
    } while (0)

/* After every kernel launch: catches bad launch configurations (the launch itself is async, so
 * faults inside the kernel surface at the next synchronizing call, which is checked too). */
#define KERN_CUDA_CHECK_LAUNCH(ctx, name)                                                     \
    do {                                                                                      \
        cudaError_t kern_e_ = cudaGetLastError();                                             \
        if (kern_e_ != cudaSuccess)                                                           \
            return kern_cuda__fail((ctx), "launch " name, cudaGetErrorString(kern_e_),        \
                                   __FILE__, __LINE__);                                       \
    } while (0)

#endif
