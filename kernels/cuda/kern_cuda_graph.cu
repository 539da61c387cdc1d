/* kern_cuda_graph.cu — a step recorded as a CUDA graph and replayed (kern.h: step_begin,
 * step_end). Driving thread only.
 *
 * step_begin starts a stream capture (relaxed mode); the ops that follow check their arguments
 * and enqueue their kernels as usual, which the capture records instead of running. step_end
 * ends the capture and launches the graph through an executable graph kept per batch size n:
 * updated in place with this step's parameters (cudaGraphExecUpdate: same nodes, new kernel
 * arguments and grids; steps of up to KERN_CUDA_GRAPH_MAX_N tokens) or, when the nodes differ (attention's merge appears past one chunk, a
 * sampler with logprobs), instantiated again. A decode step of a 7B model is some 400 kernels of
 * 5-30 us each: launched one by one the CPU's launch cost and the gaps between kernels are a
 * large part of the step; as one graph they go out in one call and run back to back.
 *
 * What cannot be recorded returns KERN_E_AGAIN from the op (kern_cuda__slot growing a scratch
 * buffer: its old memory may still be referenced; a weight staged from the host; the cuBLAS
 * prefill path), step_end then drops the capture and the engine issues the step again without
 * recording, which grows the buffers, so the next step records. Nothing of a dropped capture has
 * run. Off unless asked (kern_cuda_set_graphs, CLAQ_CUDA_GRAPHS=1): it has run only in the host
 * emulator so far, which models capture, update and replay (tests/kernels/cuda_emu). */
#include <string.h>

#include "kern_cuda_impl.h"

void kern_cuda__graphs_free(kern_cuda_ctx *c)
{
    for (int i = 0; i < KERN_CUDA_GRAPH_CACHE; i++) {
        if (c->graph[i].exec) (void)cudaGraphExecDestroy(c->graph[i].exec);
        memset(&c->graph[i], 0, sizeof c->graph[i]);
    }
}

int kern_cuda__step_begin(kern_cuda_ctx *c, int n)
{
    if (!c->graphs || c->recording) return 0;
    /* decode-sized steps only: a prompt chunk's kernels are long enough that launching them
     * one by one costs little, and every new size would build a graph */
    if (n > KERN_CUDA_GRAPH_MAX_N) return 0;
    if (kern_cuda__prefill_n(c, n)) return 0;   /* cuBLAS: not recorded */
    if (cudaSetDevice(c->device) != cudaSuccess ||
        cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeRelaxed) != cudaSuccess) {
        (void)cudaGetLastError();
        c->gstats.fallbacks++;
        return 0;
    }
    c->recording = 1;
    c->record_n = n;
    return 1;
}

/* The cache entry for batch size n: its own, else the least recently used. */
static kern_cuda_graph_entry *entry_for(kern_cuda_ctx *c, int n)
{
    kern_cuda_graph_entry *e = &c->graph[0];
    for (int i = 0; i < KERN_CUDA_GRAPH_CACHE; i++) {
        if (c->graph[i].exec && c->graph[i].n == n) return &c->graph[i];
        if (c->graph[i].used < e->used) e = &c->graph[i];
    }
    return e;
}

int kern_cuda__step_end(kern_cuda_ctx *c, int ok)
{
    if (!c->recording) return KERN_E_AGAIN;
    c->recording = 0;
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(c->stream, &g);
    if (e != cudaSuccess || !g || !ok) {
        (void)cudaGetLastError();   /* an invalidated capture leaves a non-sticky error */
        if (g) (void)cudaGraphDestroy(g);
        c->gstats.fallbacks++;
        return KERN_E_AGAIN;
    }
    kern_cuda_graph_entry *ent = entry_for(c, c->record_n);
    int updated = 0;
    if (ent->exec && ent->n == c->record_n) {
        cudaGraphExecUpdateResultInfo info;
        if (cudaGraphExecUpdate(ent->exec, g, &info) == cudaSuccess) updated = 1;
        else (void)cudaGetLastError();
    }
    if (!updated) {
        if (ent->exec) (void)cudaGraphExecDestroy(ent->exec);
        ent->exec = NULL;
        if (cudaGraphInstantiate(&ent->exec, g, 0) != cudaSuccess) {
            (void)cudaGetLastError();
            ent->exec = NULL;
            (void)cudaGraphDestroy(g);
            c->gstats.fallbacks++;
            return KERN_E_AGAIN;
        }
        ent->n = c->record_n;
        c->gstats.instantiated++;
    } else {
        c->gstats.updated++;
    }
    (void)cudaGraphDestroy(g);
    ent->used = ++c->graph_tick;
    KERN_CUDA_CHECK(c, cudaGraphLaunch(ent->exec, c->stream));
    c->gstats.launched++;
    return KERN_OK;
}
