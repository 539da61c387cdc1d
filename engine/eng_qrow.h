/* eng_qrow.h — a dense matrix quantized per row (one f32 scale per row, integer codes), for the
 * token embedding and a tied head: the in-memory form the kernels read (KERN_Q8_ROW: int8
 * codes [rows][cols], then the f32 scales [rows]) and the file forms (format.md): "q8_row" is
 * that layout byte for byte; "q7_row" and "q6_row" pack 7- or 6-bit codes and are expanded to
 * KERN_Q8_ROW at load (the kernels read 8 bits per weight either way). Pure functions; any
 * thread. */
#ifndef ENG_QROW_H
#define ENG_QROW_H

#include <stddef.h>
#include <stdint.h>

#include "eng_err.h"
#include "kern.h"

/* Largest code magnitude at bits (6, 7 or 8): 31, 63 or 127. */
static inline int eng_qrow_qmax(int bits) { return (1 << (bits - 1)) - 1; }

/* A dense f32/f16/bf16 matrix as KERN_Q8_ROW with codes in [-qmax, qmax] (bits 6, 7 or 8): per
 * row, q = round(w / scale) clamped to that range. At 8 bits scale = max |w| / 127; at 6 and 7
 * bits the scale is the one of max |w| x (1 - k/64) / qmax, k = 0..15, with the least squared
 * error of the row (clipping the largest weight a little often lowers it). One malloc'd buffer
 * (*out, caller frees) of kern_dense_bytes(KERN_Q8_ROW, rows, cols). A non-finite value is
 * ENG_E_RANGE naming its row; bits outside 6..8 ENG_E_INVAL. */
int eng_qrow_pack(const kern_matrix *m, int bits, void **out, eng_err *err);

/* Bytes of the bit-packed file form at bits (6 or 7): per row ceil(bits x cols / 8) bytes of
 * codes, then 4 per row. */
size_t eng_qrow_packed_bytes(int bits, int64_t rows, int64_t cols);

/* KERN_Q8_ROW data whose codes are all in [-qmax, qmax] -> the q6_row / q7_row file form in dst
 * (eng_qrow_packed_bytes bytes): code + qmax + 1 (1 .. 2^bits - 1) in bits bits, little-endian
 * within each row (code c in bits [bits x c, bits x (c + 1)) of the row's bytes, unused high
 * bits of the last byte zero), then the scales unchanged. Returns -1 (nothing defined in dst)
 * if a code is out of range. */
int eng_qrow_encode(const void *q8, int bits, int64_t rows, int64_t cols, void *dst);

/* The q6_row / q7_row file form (src, eng_qrow_packed_bytes bytes, untrusted) -> KERN_Q8_ROW
 * data in dst (kern_dense_bytes(KERN_Q8_ROW, rows, cols) bytes). A stored 0 (code -qmax - 1,
 * never written) is ENG_E_FORMAT naming the row and column; the scales are checked by the
 * caller as for q8_row. */
int eng_qrow_decode(const void *src, int bits, int64_t rows, int64_t cols, void *dst,
                    eng_err *err);

#endif
