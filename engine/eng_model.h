/* eng_model.h — a loaded model: eng_config (parsed, validated hyper-parameters), eng_weights
 * (kern_matrix views into mmapped files or into buffers the model owns) and the resources that
 * back them. eng_model_open sniffs the path: a llama2.c .bin checkpoint, a Hugging Face model
 * directory (config.json + safetensors), or a packed CLAQ file. Immutable after open; any thread
 * may read it. Does not run anything (eng_forward.h does). */
#ifndef ENG_MODEL_H
#define ENG_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "eng_err.h"
#include "kern.h"

#define ENG_PATH_MAX 4096

typedef enum eng_linear {
    ENG_LIN_Q = 0, ENG_LIN_K, ENG_LIN_V, ENG_LIN_O, ENG_LIN_GATE, ENG_LIN_UP, ENG_LIN_DOWN,
    ENG_LIN_COUNT
} eng_linear;

/* "q_proj", "k_proj", ... (HF names without the prefix). */
const char *eng_linear_name(eng_linear l);

typedef enum eng_model_format {
    ENG_FMT_LLAMA2C = 0,   /* karpathy llama2.c .bin */
    ENG_FMT_HF = 1,        /* Hugging Face directory */
    ENG_FMT_CLAQ = 2,      /* our packed format (docs/format.md) */
} eng_model_format;

/* RoPE frequency scaling (config.json rope_scaling; eng_rope.c computes the table). */
typedef enum eng_rope_type {
    ENG_ROPE_DEFAULT = 0,   /* freq_i = theta^(-2i/d) */
    ENG_ROPE_LINEAR = 1,    /* freq_i / factor (position interpolation) */
    ENG_ROPE_DYNAMIC = 2,   /* NTK: theta raised for the scaled context, fixed at load */
    ENG_ROPE_LLAMA3 = 3,    /* LLaMA-3.1/3.2: low frequencies / factor, high kept, smooth between */
} eng_rope_type;

typedef struct eng_rope_scaling {
    eng_rope_type type;
    float factor;           /* linear, dynamic, llama3 */
    float low_freq_factor;  /* llama3 */
    float high_freq_factor; /* llama3 */
    int orig_max_pos;       /* llama3, dynamic: original_max_position_embeddings */
} eng_rope_scaling;

const char *eng_rope_type_name(eng_rope_type t);   /* "default", "linear", "dynamic", "llama3" */
/* The inverse; -1 for any other name. */
int eng_rope_type_from_name(const char *name);

#define ENG_MAX_EOS 8   /* end-of-sequence ids a config may list */

typedef struct eng_config {
    char arch[32];          /* "llama" or "yi" */
    int dim;                /* hidden size */
    int hidden_dim;         /* FFN intermediate size */
    int n_layers;
    int n_heads;
    int n_kv_heads;         /* GQA: n_heads % n_kv_heads == 0 */
    int head_dim;           /* usually dim / n_heads */
    int vocab_size;
    int seq_len;            /* max positions (max_position_embeddings) */
    float rope_theta;
    eng_rope_scaling rope_scaling;
    float norm_eps;
    kern_rope_style rope_style;
    int tie_embeddings;     /* output head shares tok_embed */
    int bos_id, eos_id;     /* -1 when unknown; eos_id is eos_ids[0] */
    int eos_ids[ENG_MAX_EOS];   /* every id that ends generation: config.json's eos_token_id
                                   (an id or a list, LLaMA-3.1 has three) and
                                   generation_config.json's, first seen first */
    int n_eos;
} eng_config;

/* Adds id (>= 0) to c's end-of-sequence ids unless it is there or the list is full; the first
 * one becomes eos_id. */
void eng_config_add_eos(eng_config *c, int id);

typedef struct eng_layer_weights {
    const float *attn_norm;          /* [dim]; fp32, owned by the model */
    const float *ffn_norm;           /* [dim]; fp32, owned by the model */
    kern_matrix lin[ENG_LIN_COUNT];  /* q [n_heads*hd, dim], k/v [n_kv*hd, dim], o [dim, n_heads*hd],
                                        gate/up [hidden, dim], down [dim, hidden] */
} eng_layer_weights;

typedef struct eng_weights {
    kern_matrix tok_embed;       /* [vocab, dim] */
    kern_matrix output;          /* [vocab, dim]; a copy of tok_embed's view when tied */
    const float *final_norm;     /* [dim]; fp32, owned by the model */
    eng_layer_weights *layers;   /* [n_layers]; owned */
} eng_weights;

typedef struct eng_mapping {
    void *addr;                  /* mmap'd region; owned */
    size_t size;
    int file_backed;             /* 1: a read-only view of a file, whose pages can be dropped
                                  * and read again; 0: an anonymous buffer holding a copy */
} eng_mapping;

typedef struct eng_model {
    eng_config cfg;
    eng_weights w;
    eng_model_format format;
    char path[ENG_PATH_MAX];            /* what was opened */
    char tokenizer_path[ENG_PATH_MAX];  /* tokenizer found beside the model, "" when none */
    char quant_desc[256];               /* "fp32", "fp16", "claq 3.12b (AP+OR)", ... */
    /* A tokenizer carried inside the model file (packed CLAQ files embed one): */
    const void *tokenizer_blob;         /* view into a mapping, or NULL */
    size_t tokenizer_blob_len;
    char tokenizer_blob_name[64];       /* "tokenizer.json", "tokenizer.model", "tokenizer.bin" */
    const char *tokenizer_config_json;  /* tokenizer_config.json text (NUL-terminated, owned) or NULL */
    eng_mapping *maps;  int n_maps;     /* owned file mappings */
    unsigned open_flags;                /* ENG_OPEN_* it was opened with */
    void **owned; int n_owned, cap_owned; /* owned heap buffers (freed on close) */
    void *ext;                          /* format-specific owned state (e.g. packed headers) */
    void (*ext_free)(void *ext);        /* frees ext */
} eng_model;

/* Opens path (file or directory). On failure *out is NULL and err names the file and tensor. */
int eng_model_open(eng_model **out, const char *path, eng_err *err);

/* ENG_OPEN_COLD_WEIGHTS: the loader drops the pages of each file-mapped matrix again once it has
 * checked its values, so opening a model does not leave the whole file resident. For tools that
 * read the weights a layer at a time and hand them back (the quantizer: peak memory of a 7B
 * model is then one layer of source weights, not 13.5 GB); a server wants them resident. */
#define ENG_OPEN_COLD_WEIGHTS 1u
int eng_model_open_ex(eng_model **out, const char *path, unsigned flags, eng_err *err);

/* Drops the resident pages of [p, p + bytes) where that range lies in one of m's file mappings
 * (MADV_DONTNEED on a read-only private mapping: the next read maps the file's pages again, so
 * the content never changes). Does nothing for anything else (owned copies, anonymous buffers).
 * Any thread; it changes what is resident, never a value. */
void eng_model_release_pages(const eng_model *m, const void *p, size_t bytes);
void eng_model_close(eng_model *m);   /* NULL-safe */

/* Opens the model's tokenizer: override_path when given, else the one found beside the model,
 * else the one embedded in it. ENG_E_INVAL with a clear message when there is none; ENG_E_FORMAT
 * when it has more pieces than the model's vocabulary. */
struct eng_tokenizer;
int eng_model_open_tokenizer(const eng_model *m, const char *override_path,
                             struct eng_tokenizer **out, eng_err *err);

/* Checks the config for sane, mutually consistent values; err names the field. */
int eng_config_validate(const eng_config *c, const char *path, eng_err *err);

/* RoPE inverse frequencies freq[head_dim / 2] of c (eng_rope.c). Returns 1 and fills freq when
 * c->rope_scaling asks for a table, 0 (freq untouched) for the default rope, which kernels
 * compute from rope_theta themselves. */
int eng_rope_freq(const eng_config *c, float *freq);

/* ---- for loaders (engine-internal) ---- */
/* Registers buf as owned by m (freed on close). Returns 0, or ENG_E_NOMEM (buf is then freed). */
int eng__model_own(eng_model *m, void *buf);
/* mmaps path read-only, registers the mapping, returns it in *addr / *size. */
int eng__model_map(eng_model *m, const char *path, const void **addr, size_t *size, eng_err *err);
/* Copies n values of dtype at src into a new owned fp32 array (for norm vectors). */
int eng__model_f32_copy(eng_model *m, kern_dtype dt, const void *src, int64_t n, const float **out,
                        eng_err *err);
/* Scans a dense matrix for NaN/Inf; names it in err. With ENG_OPEN_COLD_WEIGHTS, releases the
 * pages it read (eng_model_release_pages). */
int eng__check_finite(const eng_model *m, const kern_matrix *w, const char *file,
                      const char *tensor, eng_err *err);

int eng__load_llama2c(eng_model *m, const char *path, eng_err *err);
int eng__load_hf(eng_model *m, const char *dir, eng_err *err);
int eng__load_claq(eng_model *m, const char *path, eng_err *err);

#endif
