/* quant_blas.c — says which dense-algebra kernels the quantizer's BLAS runs (its forward passes,
 * Hessians and factorizations spend most of a calibrated run there), and whether the
 * environment chose them: OpenBLAS honours OPENBLAS_CORETYPE, and a forced older core can halve
 * sgemm (docs/results.md: a LLaMA-7B-shaped layer 168 s with Haswell kernels forced, 111 s with
 * OpenBLAS's own choice on the same AVX-512 machine). Any thread; reads the environment. */
#include "quant.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

void quant_blas_describe(char *buf, size_t cap)
{
    const char *core = openblas_get_corename();
    const char *forced = getenv("OPENBLAS_CORETYPE");
    if (forced && *forced)
        snprintf(buf, cap, "OpenBLAS, %s kernels, forced by OPENBLAS_CORETYPE=%s in the "
                 "environment (unset, OpenBLAS picks the CPU's best)", core ? core : "?", forced);
    else
        snprintf(buf, cap, "OpenBLAS, %s kernels", core ? core : "?");
}
