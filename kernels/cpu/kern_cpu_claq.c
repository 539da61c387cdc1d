/* kern_cpu_claq.c — packed CLAQ matmul on the CPU (placeholder until the packed format lands). */
#include "kern_cpu_impl.h"

int kern_cpu__matmul_claq(kern_cpu_ctx *c, const kern_matrix *w, const float *x, int n, float *y)
{
    (void)c; (void)w; (void)x; (void)n; (void)y;
    return KERN_E_UNSUPPORTED;
}
