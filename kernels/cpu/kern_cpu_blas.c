/* kern_cpu_blas.c — the CPU backend's opt-in BLAS path for dense matmuls of many tokens
 * (kern_cpu_backend_set_offline): one cblas_sgemm per call instead of a dot product per (row,
 * token). Several times faster for calibration-sized batches, but its summation order depends on
 * the batch size and OpenBLAS's blocking, so results are NOT batch invariant: offline work only
 * (the quantizer's calibration passes), never serving. F16/BF16 weights are widened into a
 * grow-only fp32 buffer owned by the context. Called on the engine's thread; BLAS threads its own. */
#include "kern_cpu_impl.h"
#include "kern_half.h"

#include <cblas.h>
#include <stdlib.h>

int kern_cpu__matmul_blas(kern_cpu_ctx *c, const kern_matrix *w, const float *x, int n, float *y)
{
    int64_t rows = w->rows, cols = w->cols;
    const float *W = w->data;
    if (w->dtype == KERN_F16 || w->dtype == KERN_BF16) {
        int64_t need = rows * cols;
        if (need > c->wide_floats) {
            float *p = realloc(c->wide, (size_t)need * sizeof(float));
            if (!p) return KERN_E_NOMEM;
            c->wide = p;
            c->wide_floats = need;
        }
        const uint16_t *h = w->data;
        for (int64_t i = 0; i < need; i++)
            c->wide[i] = w->dtype == KERN_F16 ? kern_f16_to_f32(h[i]) : kern_bf16_to_f32(h[i]);
        W = c->wide;
    } else if (w->dtype != KERN_F32) {
        return KERN_E_UNSUPPORTED;
    }
    if (rows > 0x7fffffff || cols > 0x7fffffff) return KERN_E_INVAL;
    /* y [n][rows] = x [n][cols] . W^T, W stored [rows][cols] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, (int)rows, (int)cols, 1.0f, x,
                (int)cols, W, (int)cols, 0.0f, y, (int)rows);
    return KERN_OK;
}
