/* eng_safetensors.c — safetensors header parsing over a mapped file, and the single-file /
 * sharded-directory opener. Trusts nothing in the file: every length, offset and shape is
 * checked before use, in 64-bit arithmetic with overflow checks. Does not convert data and
 * knows no model names (eng_load_hf.c). Any thread, one set per thread while building. */
#include "eng_safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "eng_file.h"
#include "eng_json.h"
#include "eng_model.h"

#define ST_NAME_MAX 4096        /* longest tensor name we accept */
#define ST_JSON_INT_MAX 9007199254740992.0  /* 2^53: largest exactly representable integer */

/* Element sizes of the safetensors dtypes we can size-check; 0 means unknown. Only F32/F16/BF16
 * map to kernel dtypes; the rest exist so that a well-formed file holding, say, an I64 buffer
 * still parses and only fails if a loader asks for that tensor. */
static const struct { const char *name; unsigned size; int known; kern_dtype kdt; } st_dtypes[] = {
    { "F32", 4, 1, KERN_F32 },  { "F16", 2, 1, KERN_F16 },   { "BF16", 2, 1, KERN_BF16 },
    { "F64", 8, 0, KERN_F32 },  { "I64", 8, 0, KERN_F32 },   { "I32", 4, 0, KERN_F32 },
    { "I16", 2, 0, KERN_F32 },  { "I8", 1, 0, KERN_F32 },    { "U8", 1, 0, KERN_F32 },
    { "U16", 2, 0, KERN_F32 },  { "U32", 4, 0, KERN_F32 },   { "U64", 8, 0, KERN_F32 },
    { "BOOL", 1, 0, KERN_F32 }, { "F8_E4M3", 1, 0, KERN_F32 }, { "F8_E5M2", 1, 0, KERN_F32 },
    { "F8_E8M0", 1, 0, KERN_F32 }, { "C64", 8, 0, KERN_F32 },
};

/* Reads a JSON number that must be a non-negative integer <= 2^53. */
static int st_json_u64(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0.0) || d > ST_JSON_INT_MAX || d != (double)(uint64_t)d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static int st_grow(eng_st_set *s, eng_err *err)
{
    if (s->n_tensors < s->cap_tensors) return 0;
    if (s->cap_tensors >= ENG_ST_MAX_TENSORS)
        return eng_err_set(err, ENG_E_FORMAT, "more than %d tensors", ENG_ST_MAX_TENSORS);
    int cap = s->cap_tensors ? s->cap_tensors * 2 : 64;
    if (cap > ENG_ST_MAX_TENSORS) cap = ENG_ST_MAX_TENSORS;
    eng_st_tensor *t = realloc(s->tensors, (size_t)cap * sizeof *t);
    if (!t) return eng_err_set(err, ENG_E_NOMEM, "out of memory for the tensor table");
    s->tensors = t;
    s->cap_tensors = cap;
    return 0;
}

static int st_cmp_name(const void *a, const void *b)
{
    return strcmp(((const eng_st_tensor *)a)->name, ((const eng_st_tensor *)b)->name);
}

typedef struct st_span { uint64_t begin, end; int idx; } st_span;

static int st_cmp_span(const void *a, const void *b)
{
    const st_span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Parses one header entry into t (name already set). data/dsize: the file's data region. */
static int st_parse_entry(eng_st_tensor *t, const cJSON *e, const char *path,
                          const uint8_t *data, uint64_t dsize, uint64_t *begin_out,
                          eng_err *err)
{
    if (!cJSON_IsObject(e))
        return eng_err_set(err, ENG_E_FORMAT, "%s: tensor '%s': header entry is not an object",
                           path, t->name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || !dt->valuestring)
        return eng_err_set(err, ENG_E_FORMAT, "%s: tensor '%s': missing or non-string dtype",
                           path, t->name);
    snprintf(t->dtype, sizeof t->dtype, "%s", dt->valuestring);
    unsigned esize = 0;
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++) {
        if (strcmp(dt->valuestring, st_dtypes[i].name) == 0) {
            esize = st_dtypes[i].size;
            t->known = st_dtypes[i].known;
            t->kdt = st_dtypes[i].kdt;
        }
    }
    if (!cJSON_IsArray(sh))
        return eng_err_set(err, ENG_E_FORMAT, "%s: tensor '%s': missing or non-array shape",
                           path, t->name);
    int nd = cJSON_GetArraySize(sh);
    if (nd > ENG_ST_MAX_DIMS)
        return eng_err_set(err, ENG_E_FORMAT, "%s: tensor '%s': rank %d over the limit %d",
                           path, t->name, nd, ENG_ST_MAX_DIMS);
    t->n_dims = nd;
    uint64_t count = 1;
    int d = 0, overflow = 0;
    for (const cJSON *v = sh->child; v; v = v->next, d++) {
        uint64_t x = 0;
        if (!st_json_u64(v, &x) || x > INT64_MAX)
            return eng_err_set(err, ENG_E_FORMAT,
                               "%s: tensor '%s': shape[%d] is not a non-negative integer",
                               path, t->name, d);
        t->shape[d] = (int64_t)x;
        if (__builtin_mul_overflow(count, x, &count)) overflow = 1;
    }
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return eng_err_set(err, ENG_E_FORMAT, "%s: tensor '%s': data_offsets is not [begin, end]",
                           path, t->name);
    uint64_t begin = 0, end = 0;
    if (!st_json_u64(off->child, &begin) || !st_json_u64(off->child->next, &end))
        return eng_err_set(err, ENG_E_FORMAT,
                           "%s: tensor '%s': data_offsets are not non-negative integers",
                           path, t->name);
    if (begin > end || end > dsize)
        return eng_err_set(err, ENG_E_FORMAT,
                           "%s: tensor '%s': data_offsets [%llu, %llu] outside the %llu-byte "
                           "data section", path, t->name, (unsigned long long)begin,
                           (unsigned long long)end, (unsigned long long)dsize);
    t->nbytes = end - begin;
    if (esize) {
        uint64_t need = 0;
        if (overflow || __builtin_mul_overflow(count, (uint64_t)esize, &need) || need != t->nbytes)
            return eng_err_set(err, ENG_E_FORMAT,
                               "%s: tensor '%s': data_offsets span %llu bytes but shape x %s "
                               "needs %s%llu", path, t->name, (unsigned long long)t->nbytes,
                               t->dtype, overflow ? "more than " : "",
                               overflow ? (unsigned long long)UINT64_MAX
                                        : (unsigned long long)(count * esize));
    }
    t->data = data + begin;
    *begin_out = begin;
    return 0;
}

int eng_st_parse(eng_st_set *s, const char *path, const void *addr, size_t size, eng_err *err)
{
    const uint8_t *p = addr;
    int first = s->n_tensors, rc = 0;
    cJSON *root = NULL;
    st_span *spans = NULL;
    char **files = NULL;

    if (!p || size < 8)
        return eng_err_set(err, ENG_E_FORMAT, "%s: %zu bytes is too short for a safetensors "
                           "header", path, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | p[i];   /* little-endian u64 */
    if (hlen > ENG_ST_MAX_HEADER)
        return eng_err_set(err, ENG_E_FORMAT, "%s: safetensors header length %llu is over the "
                           "%u-byte limit", path, (unsigned long long)hlen, ENG_ST_MAX_HEADER);
    if (hlen > (uint64_t)size - 8)
        return eng_err_set(err, ENG_E_FORMAT, "%s: safetensors header length %llu is larger "
                           "than the file (%zu bytes)", path, (unsigned long long)hlen, size);
    if (hlen < 2 || p[8] != '{')
        return eng_err_set(err, ENG_E_FORMAT, "%s: safetensors header does not start with a "
                           "JSON object (wrong magic or not a safetensors file)", path);
    const char *end_at = NULL;
    root = cJSON_ParseWithLengthOpts((const char *)p + 8, (size_t)hlen, &end_at, 0);
    if (!root) {
        long at = end_at ? (long)(end_at - (const char *)p) : -1;
        return eng_err_set(err, ENG_E_FORMAT, "%s: safetensors header is not valid JSON "
                           "(near byte %ld)", path, at);
    }
    /* in the JSON value itself (what follows it is checked as data offsets) */
    long bad = eng_json_bad_control((const char *)p + 8, (size_t)(end_at - (const char *)p - 8));
    if (bad >= 0) {
        rc = eng_err_set(err, ENG_E_FORMAT, "%s: safetensors header has control byte 0x%02x at "
                         "byte %ld (JSON allows none in a string)", path, p[8 + bad], 8 + bad);
        goto fail;
    }
    if (!cJSON_IsObject(root)) {
        rc = eng_err_set(err, ENG_E_FORMAT, "%s: safetensors header is not a JSON object", path);
        goto fail;
    }
    if ((rc = eng_json_check_dups(root, path, err)))
        goto fail;
    const uint8_t *data = p + 8 + hlen;
    uint64_t dsize = (uint64_t)size - 8 - hlen;

    files = realloc(s->files, (size_t)(s->n_files + 1) * sizeof *files);
    if (!files) {
        rc = eng_err_set(err, ENG_E_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    s->files = files;
    files = NULL;
    int file_idx = s->n_files;

    for (const cJSON *e = root->child; e; e = e->next) {
        if (!e->string) {
            rc = eng_err_set(err, ENG_E_FORMAT, "%s: header entry without a name", path);
            goto fail;
        }
        if (strcmp(e->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(e)) {
                rc = eng_err_set(err, ENG_E_FORMAT, "%s: __metadata__ is not an object", path);
                goto fail;
            }
            continue;
        }
        size_t nl = strlen(e->string);
        if (nl == 0 || nl > ST_NAME_MAX) {
            rc = eng_err_set(err, ENG_E_FORMAT, "%s: tensor name of %zu bytes (allowed 1..%d)",
                             path, nl, ST_NAME_MAX);
            goto fail;
        }
        if ((rc = st_grow(s, err)) != 0) goto fail;
        eng_st_tensor *t = &s->tensors[s->n_tensors];
        memset(t, 0, sizeof *t);
        t->file = file_idx;
        if (!(t->name = strdup(e->string))) {
            rc = eng_err_set(err, ENG_E_NOMEM, "%s: out of memory", path);
            goto fail;
        }
        s->n_tensors++;
        uint64_t begin = 0;
        if ((rc = st_parse_entry(t, e, path, data, dsize, &begin, err)) != 0) goto fail;
    }

    /* Overlap check over this file's tensors, in offset order. */
    int n_new = s->n_tensors - first;
    if (n_new > 0) {
        spans = malloc((size_t)n_new * sizeof *spans);
        if (!spans) {
            rc = eng_err_set(err, ENG_E_NOMEM, "%s: out of memory", path);
            goto fail;
        }
        for (int i = 0; i < n_new; i++) {
            const eng_st_tensor *t = &s->tensors[first + i];
            spans[i].begin = (uint64_t)((const uint8_t *)t->data - data);
            spans[i].end = spans[i].begin + t->nbytes;
            spans[i].idx = first + i;
        }
        qsort(spans, (size_t)n_new, sizeof *spans, st_cmp_span);
        for (int i = 1; i < n_new; i++) {
            if (spans[i].begin < spans[i - 1].end) {
                rc = eng_err_set(err, ENG_E_FORMAT, "%s: tensor '%s' overlaps tensor '%s' "
                                 "(bytes %llu..%llu vs %llu..%llu)", path,
                                 s->tensors[spans[i].idx].name, s->tensors[spans[i - 1].idx].name,
                                 (unsigned long long)spans[i].begin,
                                 (unsigned long long)spans[i].end,
                                 (unsigned long long)spans[i - 1].begin,
                                 (unsigned long long)spans[i - 1].end);
                goto fail;
            }
        }
    }

    if (!(s->files[file_idx] = strdup(path))) {
        rc = eng_err_set(err, ENG_E_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    s->n_files++;

    /* Sort by name and reject duplicates (within the file or against earlier files). */
    if (s->n_tensors > 1)   /* qsort(NULL, 0, ...) is undefined behaviour */
        qsort(s->tensors, (size_t)s->n_tensors, sizeof *s->tensors, st_cmp_name);
    for (int i = 1; i < s->n_tensors; i++) {
        if (strcmp(s->tensors[i].name, s->tensors[i - 1].name) == 0) {
            const eng_st_tensor *a = &s->tensors[i - 1], *b = &s->tensors[i];
            eng_err_set(err, ENG_E_FORMAT, "%s: tensor '%s' appears twice (in %s and %s)", path,
                        a->name, s->files[a->file], s->files[b->file]);
            /* The table is re-sorted: drop this file's entries by file index instead. */
            int w = 0;
            for (int r = 0; r < s->n_tensors; r++) {
                if (s->tensors[r].file == file_idx) free(s->tensors[r].name);
                else s->tensors[w++] = s->tensors[r];
            }
            s->n_tensors = w;
            free(s->files[file_idx]);
            s->n_files--;
            free(spans);
            cJSON_Delete(root);
            return ENG_E_FORMAT;
        }
    }
    free(spans);
    cJSON_Delete(root);
    return 0;

fail:
    /* Roll back this file's tensors (they are still the tail: sorting happens only on success). */
    for (int i = first; i < s->n_tensors; i++) free(s->tensors[i].name);
    s->n_tensors = first;
    free(spans);
    cJSON_Delete(root);
    return rc;
}

const eng_st_tensor *eng_st_find(const eng_st_set *s, const char *name)
{
    int lo = 0, hi = s->n_tensors - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, s->tensors[mid].name);
        if (c == 0) return &s->tensors[mid];
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

void eng_st_free(eng_st_set *s)
{
    if (!s) return;
    for (int i = 0; i < s->n_tensors; i++) free(s->tensors[i].name);
    free(s->tensors);
    for (int i = 0; i < s->n_files; i++) free(s->files[i]);
    free(s->files);
    memset(s, 0, sizeof *s);
}

int eng_st_read_text(const char *path, size_t max, char **out, size_t *len, eng_err *err)
{
    *out = NULL;
    if (len) *len = 0;
    int fd = eng_file_open(path, err);
    if (fd < 0) return fd;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return eng_err_set(err, ENG_E_IO, "%s: cannot stat: %s", path, strerror(errno));
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return eng_err_set(err, ENG_E_FORMAT, "%s: %lld bytes is over the %zu-byte limit", path,
                           (long long)st.st_size, max);
    }
    size_t n = (size_t)st.st_size, got = 0;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return eng_err_set(err, ENG_E_NOMEM, "%s: out of memory", path);
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;  /* shrank while reading: keep what we have */
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    if (len) *len = got;
    return 0;
}

/* dir + "/" + name into buf[ENG_PATH_MAX]. */
static int st_join(char *buf, const char *dir, const char *name, eng_err *err)
{
    int n = snprintf(buf, ENG_PATH_MAX, "%s/%s", dir, name);
    if (n < 0 || n >= ENG_PATH_MAX)
        return eng_err_set(err, ENG_E_INVAL, "%s/%s: path too long", dir, name);
    return 0;
}

static int st_map_parse(eng_st_set *s, eng_model *m, const char *path, eng_err *err)
{
    const void *addr = NULL;
    size_t size = 0;
    int rc = eng__model_map(m, path, &addr, &size, err);
    if (rc) return rc;
    return eng_st_parse(s, path, addr, size, err);
}

/* A shard name from the index must be a plain file name inside dir. */
static int st_shard_name_ok(const char *f)
{
    size_t n = strlen(f);
    return n > 0 && n < 256 && !strchr(f, '/') && strcmp(f, ".") != 0 && strcmp(f, "..") != 0;
}

static int st_open_index(eng_st_set *s, eng_model *m, const char *dir, const char *ipath,
                         eng_err *err)
{
    char *text = NULL;
    size_t len = 0;
    const char **shards = NULL;  /* borrowed from root */
    int *shard_file = NULL, n_shards = 0, rc;
    cJSON *root = NULL;
    char path[ENG_PATH_MAX];

    if ((rc = eng_st_read_text(ipath, ENG_ST_MAX_INDEX, &text, &len, err)) != 0) return rc;
    root = cJSON_ParseWithLength(text, len);
    if (root && (rc = eng_json_check_dups(root, ipath, err)))
        goto out;
    const cJSON *wm = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!cJSON_IsObject(wm)) {
        rc = eng_err_set(err, ENG_E_FORMAT, "%s: %s", ipath, root ? "no \"weight_map\" object"
                         : "not valid JSON");
        goto out;
    }
    int n_entries = cJSON_GetArraySize(wm);
    shards = calloc((size_t)n_entries + 1, sizeof *shards);
    shard_file = calloc((size_t)n_entries + 1, sizeof *shard_file);
    if (!shards || !shard_file) {
        rc = eng_err_set(err, ENG_E_NOMEM, "%s: out of memory", ipath);
        goto out;
    }
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !e->valuestring || !st_shard_name_ok(e->valuestring)) {
            rc = eng_err_set(err, ENG_E_FORMAT, "%s: tensor '%s': shard must be a plain file "
                             "name in the model directory", ipath, e->string ? e->string : "?");
            goto out;
        }
        int k = 0;
        while (k < n_shards && strcmp(shards[k], e->valuestring) != 0) k++;
        if (k == n_shards) {
            if (n_shards >= ENG_ST_MAX_SHARDS) {
                rc = eng_err_set(err, ENG_E_FORMAT, "%s: more than %d shards", ipath,
                                 ENG_ST_MAX_SHARDS);
                goto out;
            }
            shards[n_shards++] = e->valuestring;
        }
    }
    if (n_shards == 0) {
        rc = eng_err_set(err, ENG_E_FORMAT, "%s: weight_map is empty", ipath);
        goto out;
    }
    for (int k = 0; k < n_shards; k++) {
        if ((rc = st_join(path, dir, shards[k], err)) != 0) goto out;
        shard_file[k] = s->n_files;
        if ((rc = st_map_parse(s, m, path, err)) != 0) goto out;
    }
    for (const cJSON *e = wm->child; e; e = e->next) {
        const eng_st_tensor *t = eng_st_find(s, e->string);
        int k = 0;
        while (strcmp(shards[k], e->valuestring) != 0) k++;
        if (!t || t->file != shard_file[k]) {
            rc = eng_err_set(err, ENG_E_FORMAT, "%s: tensor '%s': the index places it in %s, "
                             "which does not contain it", ipath, e->string, e->valuestring);
            goto out;
        }
    }
    rc = 0;
out:
    free(shards);
    free(shard_file);
    cJSON_Delete(root);
    free(text);
    return rc;
}

int eng_st_open_dir(eng_st_set *s, eng_model *m, const char *dir, eng_err *err)
{
    char path[ENG_PATH_MAX];
    struct stat st;
    int rc;
    if ((rc = st_join(path, dir, "model.safetensors", err)) != 0) return rc;
    if (stat(path, &st) == 0) return st_map_parse(s, m, path, err);
    if ((rc = st_join(path, dir, "model.safetensors.index.json", err)) != 0) return rc;
    if (stat(path, &st) == 0) return st_open_index(s, m, dir, path, err);
    return eng_err_set(err, ENG_E_IO, "%s: no model.safetensors or model.safetensors.index.json",
                       dir);
}
