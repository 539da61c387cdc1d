/* eng_claq_file.h — the packed CLAQ model file (docs/format.md): the writer the quantizer calls,
 * the packer that turns an eng_qmatrix into the kernels' layout (kern_claq.h), and the loader
 * behind eng_model_open (eng__load_claq). Does not quantize (the quantizer does) and does not
 * compute (kernels/cpu/kern_cpu_claq*.c do). Pure functions of their arguments; any thread. */
#ifndef ENG_CLAQ_FILE_H
#define ENG_CLAQ_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "eng_err.h"
#include "eng_model.h"
#include "eng_qmatrix.h"
#include "kern_claq.h"

#define ENG_CLAQ_MAGIC "CLAQPACK"  /* 8 bytes at offset 0 */
#define ENG_CLAQ_VERSION 2u        /* what the writer writes; the loader reads 1 and 2 */
#define ENG_CLAQ_ALIGN 64          /* every section starts on a multiple of this */

/* Quantization metadata stored in the file (strings are NUL-terminated, truncated if longer). */
typedef struct eng_claq_meta {
    char method[16];          /* "rtn", "gptq", "claq", "synth-kmeans" */
    double bits;              /* target average code bits (--bits), e.g. 2.12 */
    double target_bpw;        /* --target-bpw (stored bits per weight of the linears), or 0
                                 when the bits were given with --bits */
    int head_bits;            /* --head-bits, 0 when the head stays dense */
    int cb_bits;              /* codebook form asked for: 8 (grid) or 16 (fp16); 0 unknown */
    char kmeans_init[16];     /* --kmeans-init ("" when none ran) */
    char inverse[16];         /* GPTQ's inverse factor: "double", "f32", with "-fast" for
                                 --fast-inverse ("" when no GPTQ ran) */
    int outliers;             /* Outlier Reservation on (1) / off (0) */
    double or_budget;         /* OR budget scale (1.0 = the spec's 10 % / 0.014 / 0.004) */
    int or_compat_index;      /* 1: the reference code's block-local OR indexing */
    int nsamples;             /* calibration samples (0 when none) */
    int seqlen;               /* calibration sample length in tokens */
    uint64_t seed;
    char calib[256];          /* calibration file name ("" when none) */
    char source[256];         /* source model path */
    double quant_seconds;     /* wall time of the quantization */
    const eng_qmatrix *head;  /* the output head quantized ([vocab][dim]; borrowed), or NULL to
                                 keep it dense in its source dtype. A tied model's head is then
                                 written as its own tensor (tie_embeddings false in the file) and
                                 the token embedding stays dense, since it is only gathered. */
    int embed_bits;           /* 0: the token embedding keeps its dtype; 8, 7 or 6: stored
                                 as q8_row / q7_row / q6_row (integer codes and a scale per
                                 row, eng_qrow.h, format.md); on a tied model without a packed
                                 head it is the head too */
    int embed_shared;         /* 1: a tied model keeps one matrix: the packed head (head, above)
                                 is also the token embedding, gathered from its codes
                                 ("tok_embeddings" of dtype claq, tie_embeddings true, no
                                 "output"); needs a tied source and head */
    int format_version;       /* 0: the current (ENG_CLAQ_VERSION); 1: version 1's layout (the
                                 tests write it to prove old files still load); set by the
                                 loader to the file's version */
} eng_claq_meta;

/* Writes a packed model to path (atomically: path.tmp then rename).
 * src: the FP source model; it provides the config, the non-quantized tensors (token embedding,
 *      output head when untied, norms; written in their source dtype) and the tokenizer (the bytes
 *      of src->tokenizer_path, else src's embedded blob; tokenizer_config.json when it has one).
 * q:   [n_layers * ENG_LIN_COUNT] quantized linears, layer-major (q[l*ENG_LIN_COUNT + ENG_LIN_Q]),
 *      each of the shape the config implies; borrowed, not modified.
 * Returns 0 or ENG_E_*; err names the file and tensor. */
int eng_claq_write(const char *path, const eng_model *src, eng_qmatrix *const *q,
                   const eng_claq_meta *meta, eng_err *err);
/* 0 when path may be written by eng_claq_write: absent, or a regular file (a device, directory
 * or FIFO there is refused, never replaced: --out /dev/null must not delete /dev/null). */
int eng_claq_out_ok(const char *path, eng_err *err);

/* ---- packing (eng_claq_pack.c) ---- */

/* A packed matrix that owns its buffers (the writer, tests and benchmarks use it; the loader
 * builds views into the mapping instead). view's pointers point into buf. */
enum { ENG_CLAQ_SEC_COLMAP = 0, ENG_CLAQ_SEC_CB, ENG_CLAQ_SEC_CODES, ENG_CLAQ_SEC_ROWPTR,
       ENG_CLAQ_SEC_OUTCOL, ENG_CLAQ_SEC_OUTVAL, ENG_CLAQ_NSEC };
extern const char *const eng_claq_sec_names[ENG_CLAQ_NSEC];  /* "colmap", "cb", ... */

typedef struct eng_claq_packed {
    kern_claq view;           /* the kernels' view; pointers into buf */
    void *buf;                /* owned; 64-byte aligned; the file sections then the fp32 deltas */
    size_t buf_size;
    size_t sec_off[ENG_CLAQ_NSEC];  /* byte offset of each file section in buf (64-aligned) */
    size_t sec_len[ENG_CLAQ_NSEC];  /* its exact length in bytes (without alignment padding) */
} eng_claq_packed;

/* Exact byte lengths of the file sections of a view with this shape (colmap, cb, codes, rowptr,
 * outcol, outval). The view's counts (rows, cols, ncols_bits, nnz) must be filled and
 * eng_claq_shape_fill must have run. */
void eng_claq_sec_lengths(const kern_claq *k, size_t len[ENG_CLAQ_NSEC]);

/* Fills the derived counts of k (rows_pad, n_tiles, nblk_bits, cols_pad, words_per_row) from
 * rows, cols and ncols_bits[2..4]. ENG_E_FORMAT when they are out of range or inconsistent. */
int eng_claq_shape_fill(kern_claq *k, const char *file, const char *name, eng_err *err);

/* Computes the fp32 deltas (val - cb[code]) of a view's outliers into delta[nnz]. */
void eng_claq_deltas(const kern_claq *k, float *delta);

/* Packs q (validated: bits 2..4, codes < 2^bits, outliers in range and sorted by (col,row)).
 * Returns 0 or ENG_E_INVAL / ENG_E_NOMEM with a message naming `name`. */
int eng_claq_pack(const eng_qmatrix *q, const char *name, eng_claq_packed *out, eng_err *err);
void eng_claq_packed_free(eng_claq_packed *p);  /* safe on zeroed, idempotent */

/* The fake-quantized matrix of a packed view: w [rows][cols] fp32 in ORIGINAL column order,
 * outliers applied. Equals eng_qmatrix_dequant of the source bit for bit. */
void eng_claq_unpack(const kern_claq *k, float *w);

/* ---- version 2 storage forms (eng_claq_compact.c) ---- */

/* A packed matrix in a version 2 file: the same six sections by index, under these names:
 * widths (2 bits per column, none when all columns share a width), cb (real columns only: fp16,
 * or on an 8-bit grid), codes (as version 1), rowcnt (outliers per row, none when nnz = 0),
 * outcol, outval (as version 1). */
extern const char *const eng_claq_v2_sec_names[ENG_CLAQ_NSEC];
enum { ENG_CLAQ_CB_F16 = 0, ENG_CLAQ_CB_GRID8 = 1 };   /* the tensor's "cb_form" */

/* Exact byte lengths of a version 2 matrix's sections (k's counts filled). */
void eng_claq_v2_lengths(const kern_claq *k, int cb_form, size_t len[ENG_CLAQ_NSEC]);

typedef struct eng_claq_v2 {
    int cb_form;                      /* ENG_CLAQ_CB_* */
    const void *sec[ENG_CLAQ_NSEC];   /* each section's bytes: into buf or the packed matrix */
    size_t len[ENG_CLAQ_NSEC];
    void *buf;                        /* owned: widths, cb, rowcnt */
} eng_claq_v2;

/* Encodes pk (packed from q) in version 2's forms: grid8 codebooks when q has a grid (every
 * entry checked to decode to the packed one: ENG_E_INVAL otherwise), fp16 otherwise. out
 * borrows pk's codes and outliers: free it before pk. */
int eng_claq_v2_encode(const eng_claq_packed *pk, const eng_qmatrix *q, const char *name,
                       eng_claq_v2 *out, eng_err *err);
void eng_claq_v2_free(eng_claq_v2 *v);   /* safe on zeroed, idempotent */

/* Rebuilds the kernels' arrays of k (counts filled by eng_claq_shape_fill) from version 2
 * sections sec[] of the lengths eng_claq_v2_lengths gives: colmap, cb and rowptr go to one
 * buffer (*owned, caller frees); codes, outcol and outval stay views into sec. ENG_E_FORMAT
 * naming file and name for widths that disagree with the counts, a negative or non-finite grid
 * step, grid indices out of order or row counts that do not sum to nnz. The caller then runs
 * eng_claq_validate and computes the deltas. */
int eng_claq_v2_decode(kern_claq *k, int cb_form, const void *const sec[ENG_CLAQ_NSEC],
                       void **owned, const char *file, const char *name, eng_err *err);

/* Checks a view's internal consistency (sizes, codes < 2^bits, outlier indices, permutation);
 * used by the loader on untrusted files. err names `file` and `name`. */
int eng_claq_validate(const kern_claq *k, const char *file, const char *name, eng_err *err);

/* Byte accounting of one packed matrix (claq inspect): len = its section lengths as stored
 * (either version), stored_bytes = everything it occupies in the file. */
typedef struct eng_claq_stats {
    int64_t cols_by_bits[5];  /* index 2..4: original columns at that width */
    int64_t n_outliers;
    int64_t codebook_bytes;   /* fp16 codebooks */
    int64_t code_bytes;       /* packed codes incl. row/column padding */
    int64_t outlier_bytes;    /* row pointers or counts + columns + values */
    int64_t other_bytes;      /* colmap or widths, alignment padding */
    int64_t total_bytes;      /* everything stored for this matrix */
    double nominal_bits;      /* mean code bits per column (the paper's label, no outliers) */
    double true_bpw;          /* total_bytes * 8 / (rows * cols) */
} eng_claq_stats;
void eng_claq_stats_of(const kern_claq *k, const size_t len[ENG_CLAQ_NSEC],
                       int64_t stored_bytes, eng_claq_stats *st);

/* Packed-model extras hung on eng_model.ext by eng__load_claq (claq inspect reads them). */
typedef struct eng_claq_model_info {
    eng_claq_meta meta;
    int64_t n_matrices;              /* n_layers * ENG_LIN_COUNT */
    int64_t *matrix_bytes;           /* [n_matrices] bytes stored per packed matrix; owned */
    size_t (*sec_len)[ENG_CLAQ_NSEC];  /* [n_matrices] their section lengths; owned */
    kern_claq *views;                /* [n_matrices] views into the mapping; owned array */
    int64_t file_bytes;
    char dtype_dense[8];             /* dtype of the non-quantized tensors: "f32", "f16", "bf16" */
} eng_claq_model_info;

#endif
