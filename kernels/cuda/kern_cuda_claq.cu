/* kern_cuda_claq.cu — packed CLAQ weights on the device: upload (repacking at load time), the LUT
 * GEMV for batch 1..8 and the fp16 dequantization used by the prefill path. Placeholder until the
 * packed layout (kernels/kern_claq.h, docs/format.md) is committed: every entry reports
 * KERN_E_UNSUPPORTED, and supports(KERN_CLAQ) is 0. Driving thread only. */
#include "kern_cuda_impl.h"

int kern_cuda__claq_available(void) { return 0; }

int kern_cuda__claq_upload(kern_cuda_ctx *c, const kern_matrix *m, kern_cuda_weight *w)
{
    (void)c; (void)m; (void)w;
    return KERN_E_UNSUPPORTED;
}

void kern_cuda__claq_release(kern_cuda_weight *w)
{
    if (!w) return;
    if (w->claq.blob) (void)cudaFree(w->claq.blob);
    w->claq.blob = NULL;
    w->claq.blob_bytes = 0;
    w->claq.ready = 0;
}

int kern_cuda__gemv_claq(kern_cuda_ctx *c, const kern_cuda_weight *w, const float *d_x, int n,
                         float *d_y)
{
    (void)c; (void)w; (void)d_x; (void)n; (void)d_y;
    return KERN_E_UNSUPPORTED;
}

int kern_cuda__claq_dequant_f16(kern_cuda_ctx *c, const kern_cuda_weight *w, int64_t r0,
                                int64_t nr, uint16_t *d_panel)
{
    (void)c; (void)w; (void)r0; (void)nr; (void)d_panel;
    return KERN_E_UNSUPPORTED;
}
