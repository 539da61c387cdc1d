/* eng_safetensors.h — a bounds-checked safetensors reader: parses the header of a mapped
 * .safetensors file (8-byte LE length + JSON + data) into a sorted tensor table of views, and
 * opens a model directory's single file or its sharded set (model.safetensors.index.json).
 * Does not convert or copy tensor data and does not know about LLaMA names (eng_load_hf.c does).
 * No global state; a set is used by one thread while built, then read-only. */
#ifndef ENG_SAFETENSORS_H
#define ENG_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "eng_err.h"
#include "kern.h"

#define ENG_ST_MAX_HEADER   (100u << 20) /* header JSON bytes we accept before allocating */
#define ENG_ST_MAX_INDEX    (64u << 20)  /* model.safetensors.index.json bytes */
#define ENG_ST_MAX_DIMS     8            /* tensor rank we accept */
#define ENG_ST_MAX_TENSORS  (1 << 20)    /* tensors per set */
#define ENG_ST_MAX_SHARDS   4096         /* shard files per index */

struct eng_model;

typedef struct eng_st_tensor {
    char *name;                      /* owned, NUL-terminated */
    char dtype[16];                  /* as written in the header: "F32", "I8", ... (truncated) */
    int known;                       /* 1 when dtype is F32/F16/BF16 and kdt is valid */
    kern_dtype kdt;                  /* valid when known */
    int n_dims;
    int64_t shape[ENG_ST_MAX_DIMS];
    uint64_t nbytes;                 /* end - begin, checked against shape * element size when
                                        the element size of dtype is known */
    const void *data;                /* view into the file's mapping (maybe unaligned) */
    int file;                        /* index into eng_st_set.files */
} eng_st_tensor;

typedef struct eng_st_set {
    eng_st_tensor *tensors;          /* [n_tensors], owned, sorted by name */
    int n_tensors;
    int cap_tensors;
    char **files;                    /* [n_files] owned paths of the files the views point into */
    int n_files;
} eng_st_set;

/* Parses one mapped safetensors file (addr/size borrowed: must outlive the set) and adds its
 * tensors to s. path is used for messages and recorded in s->files. Every offset, size and
 * shape is checked against the mapping; overlapping tensors, duplicate names (also across files
 * already in s), a header that is not a JSON object, or one longer than ENG_ST_MAX_HEADER are
 * ENG_E_FORMAT with err naming the file and the tensor. Gaps between tensors are allowed. */
int eng_st_parse(eng_st_set *s, const char *path, const void *addr, size_t size, eng_err *err);

/* Opens dir/model.safetensors, or every shard listed in dir/model.safetensors.index.json
 * (checking that each tensor the index names is in the shard it names). The files are mapped
 * through eng__model_map, so the mappings belong to m. ENG_E_IO when neither file exists. */
int eng_st_open_dir(eng_st_set *s, struct eng_model *m, const char *dir, eng_err *err);

/* The tensor called name, or NULL. */
const eng_st_tensor *eng_st_find(const eng_st_set *s, const char *name);

/* Frees what the set owns (not the mappings). Safe on a zeroed struct and twice. */
void eng_st_free(eng_st_set *s);

/* Reads a whole small file into a new NUL-terminated heap buffer (*out, freed by the caller
 * with free()). ENG_E_IO when it cannot be read, ENG_E_FORMAT when it is over max bytes. */
int eng_st_read_text(const char *path, size_t max, char **out, size_t *len, eng_err *err);

#endif
