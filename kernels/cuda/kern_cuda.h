/* kern_cuda.h — the CUDA backend's private C API beyond kern.h (whose kern_cuda_backend_create,
 * kern_cuda_device_count and kern_cuda_driver_present are all the engine sees): the text of the
 * last device error, the prefill-path and graph switches, for the kernel tests and benchmarks, and the
 * kern_cuda_impl_* exports of libclaq_cuda.so. kernels/kern_cuda_loader.c implements the
 * public ones in every build: it loads libclaq_cuda.so on first use. Not on the engine's include
 * path. Same thread contract as the backend. */
#ifndef KERN_CUDA_H
#define KERN_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {   /* kern.h has no guards of its own: give its declarations C linkage here */
#endif

#include "kern.h"

/* 1 when this build's CUDA backend library loads (always 1 in the emulator build, 0 without
 * CUDA); else 0 with the loader's reason in why. Loads it. Tests tell "broken build" from "no
 * GPU" with this. */
int kern_cuda_library_loadable(char *why, size_t why_len);

/* Text of the last device failure recorded by a CUDA backend ("" if none, or if b is not a CUDA
 * backend): "<statement>: <driver text> at <file>:<line>". Valid until the next call on b. */
const char *kern_cuda_last_error(const kern_backend *b);

/* Dense and CLAQ matmul with n >= min_n tokens take the prefill path (weights dequantized to fp16
 * panels + cuBLAS GEMM with fp16 inputs and fp32 accumulation). That path is NOT batch invariant
 * and rounds x to fp16, so it is off by default (min_n = 0); the environment variable
 * CLAQ_CUDA_PREFILL_MIN_N sets it at creation. KERN_E_INVAL if b is not a CUDA backend. */
int kern_cuda_set_prefill_min_n(kern_backend *b, int min_n);

/* CLAQ matmul with n > 8 tokens and n >= min_n take the tensor-core GEMM (kern_cuda_claq_mma.cu:
 * weights read once per 64 tokens instead of once per 8; x carried in two fp16 halves, about 22
 * bits). Its results are batch invariant among n >= 9 but not bit-identical to the GEMV's (n <= 8),
 * so it is off by default (min_n = 0); CLAQ_CUDA_MMA_MIN_N sets it at creation. The cuBLAS
 * prefill path, where on, takes precedence. KERN_E_INVAL if b is not a CUDA backend. */
int kern_cuda_set_mma_min_n(kern_backend *b, int min_n);

/* Steps recorded as CUDA graphs and replayed (kern.h step_begin / step_end; kern_cuda_graph.cu):
 * on = 1 turns it on, 0 off (the default; the environment variable CLAQ_CUDA_GRAPHS=1 turns it
 * on at creation). KERN_E_INVAL if b is not a CUDA backend. */
int kern_cuda_set_graphs(kern_backend *b, int on);
/* What the graphs did so far (all zero for other backends); kern.h's kern_get_graph_stats
 * gives the same through the backend's ops. */
typedef kern_graph_stats kern_cuda_graph_stats;
void kern_cuda_get_graph_stats(const kern_backend *b, kern_cuda_graph_stats *out);

/* What libclaq_cuda.so exports (kern_cuda.cu), found by kern_cuda_loader.c with dlsym; the
 * emulator build links them in directly. Nobody else calls these. */
int kern_cuda_impl_device_count(char *why, size_t why_len);
const char *kern_cuda_impl_last_error(const kern_backend *b);
int kern_cuda_impl_set_prefill_min_n(kern_backend *b, int min_n);
int kern_cuda_impl_set_mma_min_n(kern_backend *b, int min_n);
int kern_cuda_impl_set_graphs(kern_backend *b, int on);
void kern_cuda_impl_get_graph_stats(const kern_backend *b, kern_cuda_graph_stats *out);
int kern_cuda_impl_backend_create(kern_backend *out, int device);

#ifdef __cplusplus
}
#endif

#endif
