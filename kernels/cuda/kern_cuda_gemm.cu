/* kern_cuda_gemm.cu — the prefill matmul: y[n][rows] = x[n][cols] W^T through cuBLAS, for large n.
 * fp32 W: cublasSgemm (fp32 throughout). fp16 / bf16 W: x rounded to the same 16-bit type, then
 * cublasGemmEx with fp32 accumulation and fp32 output. CLAQ W: row panels are dequantized to fp16
 * (outliers patched in, so the panel is exactly the CLAQ weight) into a scratch slot, columns in
 * the packed storage order, and multiplied by x gathered into that order (kern_cuda_claq.cu).
 * Not batch invariant (cuBLAS picks algorithms by shape) and x is rounded to 16 bits, hence off by
 * default (kern_cuda.h). Device pointers in and out (kern.h). Driving thread only.
 *
 * cuBLAS is column-major; a row-major [rows][cols] W is a column-major cols x rows matrix with
 * ld = cols, so y^T (rows x n, ld = rows) = op_T(W) (rows x cols) * x^T (cols x n, ld = cols).
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kern_cuda_impl.h"

#ifndef CLAQ_CUDA_EMU
#define GEMM_PANEL_ELEMS (32LL << 20)   /* dequantized panel: at most 32 Mi fp16 = 64 MiB */
#else
#define GEMM_PANEL_ELEMS (1LL << 14)    /* emulator builds: small panels, so tests run the loop */
#endif

__global__ void kern_cuda_f32_to_f16_k(const float *__restrict__ x, int64_t count,
                                       __half *__restrict__ out)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (int64_t)gridDim.x * blockDim.x)
        out[i] = __float2half_rn(x[i]);
}

__global__ void kern_cuda_f32_to_bf16_k(const float *__restrict__ x, int64_t count,
                                        __nv_bfloat16 *__restrict__ out)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (int64_t)gridDim.x * blockDim.x)
        out[i] = __float2bfloat16_rn(x[i]);
}

static unsigned gemm_grid(int64_t count)
{
    unsigned b = kern_cuda__blocks(count, 256);
    return b > 4096 ? 4096 : b;   /* grid-stride loops cover the rest */
}

int kern_cuda__gemm_prefill(kern_cuda_ctx *c, const kern_cuda_weight *w, const float *d_x, int n,
                            float *d_y)
{
    const int rows = (int)w->rows, cols = (int)w->cols;
    const float one = 1.0f, zero = 0.0f;
    const int64_t xcount = (int64_t)n * cols;
    void *d_h = NULL;
    int rc;

    if (w->dtype == KERN_F32) {
        KERN_CUBLAS_CHECK(c, cublasSgemm(c->cublas, CUBLAS_OP_T, CUBLAS_OP_N, rows, n, cols, &one,
                                         (const float *)w->data, cols, d_x, cols, &zero, d_y,
                                         rows));
        return KERN_OK;
    }
    if (w->dtype == KERN_BF16) {
        rc = kern_cuda__slot(c, KERN_CUDA_SLOT_H, (size_t)xcount * 2, &d_h);
        if (rc) return rc;
        kern_cuda_f32_to_bf16_k<<<gemm_grid(xcount), 256, 0, c->stream>>>(
            d_x, xcount, (__nv_bfloat16 *)d_h);
        KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_f32_to_bf16_k");
        KERN_CUBLAS_CHECK(c, cublasGemmEx(c->cublas, CUBLAS_OP_T, CUBLAS_OP_N, rows, n, cols, &one,
                                          w->data, CUDA_R_16BF, cols, d_h, CUDA_R_16BF, cols,
                                          &zero, d_y, CUDA_R_32F, rows, CUBLAS_COMPUTE_32F,
                                          CUBLAS_GEMM_DEFAULT));
        return KERN_OK;
    }
    if (w->dtype != KERN_F16 && w->dtype != KERN_CLAQ) return KERN_E_UNSUPPORTED;

    if (w->dtype == KERN_F16) {
        rc = kern_cuda__slot(c, KERN_CUDA_SLOT_H, (size_t)xcount * 2, &d_h);
        if (rc) return rc;
        kern_cuda_f32_to_f16_k<<<gemm_grid(xcount), 256, 0, c->stream>>>(d_x, xcount,
                                                                          (__half *)d_h);
        KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_f32_to_f16_k");
        KERN_CUBLAS_CHECK(c, cublasGemmEx(c->cublas, CUBLAS_OP_T, CUBLAS_OP_N, rows, n, cols, &one,
                                          w->data, CUDA_R_16F, cols, d_h, CUDA_R_16F, cols, &zero,
                                          d_y, CUDA_R_32F, rows, CUBLAS_COMPUTE_32F,
                                          CUBLAS_GEMM_DEFAULT));
        return KERN_OK;
    }

    /* CLAQ: panels of whole rows (a multiple of 128 rows unless the matrix is smaller) in storage
     * column order, times x gathered into that order: the inner dimension is cols_pad. */
    const int kp = (int)w->claq.cols_pad;
    rc = kern_cuda__slot(c, KERN_CUDA_SLOT_H, (size_t)n * kp * 2, &d_h);
    if (rc) return rc;
    rc = kern_cuda__claq_gather_f16(c, w, d_x, n, (uint16_t *)d_h);
    if (rc) return rc;
    int64_t panel = GEMM_PANEL_ELEMS / kp;
    if (panel >= 128) panel -= panel % 128;
    if (panel < 1) panel = 1;
    if (panel > rows) panel = rows;
    void *d_p = NULL;
    rc = kern_cuda__slot(c, KERN_CUDA_SLOT_P, (size_t)panel * kp * 2, &d_p);
    if (rc) return rc;
    for (int64_t r0 = 0; r0 < rows; r0 += panel) {
        const int nr = (int)(rows - r0 < panel ? rows - r0 : panel);
        rc = kern_cuda__claq_dequant_f16(c, w, r0, nr, (uint16_t *)d_p);
        if (rc) return rc;
        KERN_CUBLAS_CHECK(c, cublasGemmEx(c->cublas, CUBLAS_OP_T, CUBLAS_OP_N, nr, n, kp, &one,
                                          d_p, CUDA_R_16F, kp, d_h, CUDA_R_16F, kp, &zero,
                                          d_y + r0, CUDA_R_32F, rows, CUBLAS_COMPUTE_32F,
                                          CUBLAS_GEMM_DEFAULT));
    }
    return KERN_OK;
}
