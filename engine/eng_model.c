/* eng_model.c — eng_model_open (sniffs the path and calls the right loader), close, and the
 * resource helpers loaders share: file mappings, owned buffers, fp32 copies of small vectors,
 * finite-value checks, config validation, finding the model's tokenizer. Not thread-specific. */
#include "eng_model.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eng_tokenizer.h"
#include "eng_file.h"
#include "kern_half.h"

const char *eng_linear_name(eng_linear l)
{
    static const char *const names[ENG_LIN_COUNT] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                     "gate_proj", "up_proj", "down_proj"};
    return (unsigned)l < ENG_LIN_COUNT ? names[l] : "?";
}

int eng__model_own(eng_model *m, void *buf)
{
    if (!buf) return ENG_E_NOMEM;
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? m->cap_owned * 2 : 16;
        void **p = realloc(m->owned, (size_t)cap * sizeof *p);
        if (!p) { free(buf); return ENG_E_NOMEM; }
        m->owned = p;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = buf;
    return 0;
}

int eng__model_map(eng_model *m, const char *path, const void **addr, size_t *size, eng_err *err)
{
    int fd = eng_file_open(path, err);
    if (fd < 0) return fd;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return eng_err_set(err, ENG_E_IO, "%s: cannot stat: %s", path, strerror(errno));
    }
    if (st.st_size == 0) {
        close(fd);
        return eng_err_set(err, ENG_E_FORMAT, "%s: file is empty", path);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return eng_err_set(err, ENG_E_IO, "%s: mmap failed: %s", path, strerror(errno));
    eng_mapping *maps = realloc(m->maps, (size_t)(m->n_maps + 1) * sizeof *maps);
    if (!maps) {
        munmap(p, (size_t)st.st_size);
        return eng_err_set(err, ENG_E_NOMEM, "%s: out of memory", path);
    }
    m->maps = maps;
    m->maps[m->n_maps].addr = p;
    m->maps[m->n_maps].size = (size_t)st.st_size;
    m->maps[m->n_maps].file_backed = 1;
    m->n_maps++;
    *addr = p;
    *size = (size_t)st.st_size;
    return 0;
}

int eng__model_f32_copy(eng_model *m, kern_dtype dt, const void *src, int64_t n, const float **out,
                        eng_err *err)
{
    float *dst = malloc((size_t)n * sizeof(float));
    if (!dst || eng__model_own(m, dst)) return eng_err_set(err, ENG_E_NOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        if (dt == KERN_F32) memcpy(&dst[i], (const char *)src + 4 * i, 4);
        else {
            uint16_t h;
            memcpy(&h, (const char *)src + 2 * i, 2);
            dst[i] = dt == KERN_F16 ? kern_f16_to_f32(h) : kern_bf16_to_f32(h);
        }
    }
    *out = dst;
    return 0;
}

void eng_model_release_pages(const eng_model *m, const void *p, size_t bytes)
{
    long pg = sysconf(_SC_PAGESIZE);
    if (!m || !p || bytes == 0 || pg <= 0) return;
    uintptr_t a = (uintptr_t)p, e = a + bytes, P = (uintptr_t)pg;
    for (int i = 0; i < m->n_maps; i++) {
        uintptr_t lo = (uintptr_t)m->maps[i].addr, hi = lo + m->maps[i].size;
        if (!m->maps[i].file_backed || a < lo || e > hi) continue;
        a = (a + P - 1) / P * P;   /* whole pages inside the range: a neighbour keeps its edge */
        e = e / P * P;
        if (e > a) (void)madvise((void *)a, e - a, MADV_DONTNEED);   /* a hint: pages stay */
        return;
    }
}

static int check_finite(const kern_matrix *w, const char *file, const char *tensor, eng_err *err)
{
    if (w->dtype == KERN_CLAQ) return 0;
    int64_t n = w->rows * w->cols;
    if (w->dtype == KERN_Q8_ROW) {   /* int8 codes are always finite: check the row scales */
        const unsigned char *sc = (const unsigned char *)w->data + n;
        for (int64_t r = 0; r < w->rows; r++) {
            float v;
            memcpy(&v, sc + r * 4, 4);
            if (!(v >= 0.0f && v <= 3.4e38f))
                return eng_err_set(err, ENG_E_RANGE, "%s: tensor %s: row %lld has scale %g "
                                   "(must be finite and >= 0)", file, tensor, (long long)r,
                                   (double)v);
        }
        return 0;
    }
    if (w->dtype == KERN_F32) {
        const uint32_t *p = w->data;
        for (int64_t i = 0; i < n; i++)
            if ((p[i] & 0x7f800000u) == 0x7f800000u)
                return eng_err_set(err, ENG_E_RANGE, "%s: tensor %s: non-finite value at element %lld",
                                   file, tensor, (long long)i);
    } else {
        const uint16_t *p = w->data;
        uint16_t mask = w->dtype == KERN_F16 ? 0x7c00 : 0x7f80;
        for (int64_t i = 0; i < n; i++)
            if ((p[i] & mask) == mask)
                return eng_err_set(err, ENG_E_RANGE, "%s: tensor %s: non-finite value at element %lld",
                                   file, tensor, (long long)i);
    }
    return 0;
}

int eng__check_finite(const eng_model *m, const kern_matrix *w, const char *file,
                      const char *tensor, eng_err *err)
{
    int rc = check_finite(w, file, tensor, err);
    if (rc == 0 && (m->open_flags & ENG_OPEN_COLD_WEIGHTS) && w->dtype != KERN_CLAQ)
        eng_model_release_pages(m, w->data, kern_dense_bytes(w->dtype, w->rows, w->cols));
    return rc;
}

int eng_config_validate(const eng_config *c, const char *path, eng_err *err)
{
    if (c->dim <= 0 || c->dim > (1 << 16))
        return eng_err_set(err, ENG_E_FORMAT, "%s: config hidden_size %d out of range", path, c->dim);
    if (c->hidden_dim <= 0 || c->hidden_dim > (1 << 18))
        return eng_err_set(err, ENG_E_FORMAT, "%s: config intermediate_size %d out of range", path,
                           c->hidden_dim);
    if (c->n_layers <= 0 || c->n_layers > 1024)
        return eng_err_set(err, ENG_E_FORMAT, "%s: config num_hidden_layers %d out of range", path,
                           c->n_layers);
    if (c->n_heads <= 0 || c->n_heads > 1024)
        return eng_err_set(err, ENG_E_FORMAT, "%s: config num_attention_heads %d out of range", path,
                           c->n_heads);
    if (c->n_kv_heads <= 0 || c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads)
        return eng_err_set(err, ENG_E_FORMAT,
                           "%s: config num_key_value_heads %d must divide num_attention_heads %d",
                           path, c->n_kv_heads, c->n_heads);
    if (c->head_dim <= 0 || c->head_dim > 1024 || (c->head_dim & 1))
        return eng_err_set(err, ENG_E_FORMAT, "%s: config head_dim %d out of range (even, <= 1024)",
                           path, c->head_dim);
    if (c->vocab_size <= 0 || c->vocab_size > (1 << 22))
        return eng_err_set(err, ENG_E_FORMAT, "%s: config vocab_size %d out of range (1 to %d)",
                           path, c->vocab_size, 1 << 22);
    if (c->seq_len <= 0 || c->seq_len > (1 << 22))
        return eng_err_set(err, ENG_E_FORMAT, "%s: config max_position_embeddings %d out of range "
                           "(1 to %d)", path, c->seq_len, 1 << 22);
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta))
        return eng_err_set(err, ENG_E_FORMAT, "%s: config rope_theta must be positive and finite "
                           "as a float", path);
    const eng_rope_scaling *rs = &c->rope_scaling;
    if (rs->type != ENG_ROPE_DEFAULT) {
        if ((int)rs->type < 0 || rs->type > ENG_ROPE_LLAMA3)
            return eng_err_set(err, ENG_E_FORMAT, "%s: config rope_scaling type unknown", path);
        if (!(rs->factor > 0) || !isfinite(rs->factor))
            return eng_err_set(err, ENG_E_FORMAT, "%s: config rope_scaling factor must be positive",
                               path);
        if (rs->type == ENG_ROPE_DYNAMIC && c->head_dim <= 2)
            return eng_err_set(err, ENG_E_FORMAT, "%s: dynamic rope_scaling needs head_dim > 2",
                               path);
        if (rs->type == ENG_ROPE_LLAMA3 &&
            (!(rs->low_freq_factor > 0) || !(rs->high_freq_factor > rs->low_freq_factor) ||
             !isfinite(rs->high_freq_factor) || rs->orig_max_pos <= 0))
            return eng_err_set(err, ENG_E_FORMAT, "%s: llama3 rope_scaling needs 0 < "
                               "low_freq_factor < high_freq_factor and "
                               "original_max_position_embeddings > 0", path);
    }
    if (!(c->norm_eps > 0) || !(c->norm_eps <= 0.5f))
        return eng_err_set(err, ENG_E_FORMAT, "%s: config rms_norm_eps must be in (0, 0.5]", path);
    if (c->bos_id >= c->vocab_size || c->eos_id >= c->vocab_size)
        return eng_err_set(err, ENG_E_FORMAT, "%s: config bos/eos id outside the vocabulary", path);
    if (c->n_eos < 0 || c->n_eos > ENG_MAX_EOS)
        return eng_err_set(err, ENG_E_FORMAT, "%s: config lists %d eos ids", path, c->n_eos);
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] < 0 || c->eos_ids[i] >= c->vocab_size)
            return eng_err_set(err, ENG_E_FORMAT, "%s: config eos id %d outside the vocabulary",
                               path, c->eos_ids[i]);
    return 0;
}

void eng_config_add_eos(eng_config *c, int id)
{
    if (id < 0) return;
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == id) return;
    if (c->n_eos >= ENG_MAX_EOS) return;
    c->eos_ids[c->n_eos++] = id;
    if (c->n_eos == 1) c->eos_id = id;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int eng_model_open(eng_model **out, const char *path, eng_err *err)
{
    return eng_model_open_ex(out, path, 0, err);
}

int eng_model_open_ex(eng_model **out, const char *path, unsigned flags, eng_err *err)
{
    *out = NULL;
    if (!path || !*path) return eng_err_set(err, ENG_E_INVAL, "no model path given");
    if (strlen(path) >= ENG_PATH_MAX) return eng_err_set(err, ENG_E_INVAL, "model path too long");
    eng_model *m = calloc(1, sizeof *m);
    if (!m) return eng_err_set(err, ENG_E_NOMEM, "out of memory");
    snprintf(m->path, sizeof m->path, "%s", path);
    m->open_flags = flags;
    int rc;
    if (is_dir(path)) {
        m->format = ENG_FMT_HF;
        rc = eng__load_hf(m, path, err);
    } else {
        unsigned char magic[4] = {0};
        int fd = eng_file_open(path, err);
        if (fd < 0) {
            rc = fd;
        } else {
            ssize_t got = read(fd, magic, 4);
            close(fd);
            if (got == 4 && memcmp(magic, "CLAQ", 4) == 0) {
                m->format = ENG_FMT_CLAQ;
                rc = eng__load_claq(m, path, err);
            } else {
                m->format = ENG_FMT_LLAMA2C;
                rc = eng__load_llama2c(m, path, err);
            }
        }
    }
    if (rc == 0) rc = eng_config_validate(&m->cfg, path, err);
    if (rc) {
        eng_model_close(m);
        return rc;
    }
    *out = m;
    return 0;
}

void eng_model_close(eng_model *m)
{
    if (!m) return;
    if (m->ext && m->ext_free) m->ext_free(m->ext);
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    for (int i = 0; i < m->n_maps; i++) munmap(m->maps[i].addr, m->maps[i].size);
    free(m->maps);
    free(m->w.layers);
    free(m);
}

int eng_model_open_tokenizer(const eng_model *m, const char *override_path,
                             struct eng_tokenizer **out, eng_err *err)
{
    *out = NULL;
    int vocab = m->cfg.vocab_size, rc;
    if (override_path && *override_path) rc = eng_tokenizer_open(out, override_path, vocab, err);
    else if (m->tokenizer_path[0]) rc = eng_tokenizer_open(out, m->tokenizer_path, vocab, err);
    else if (m->tokenizer_blob)
        rc = eng_tokenizer_open_buffer_config(out, m->tokenizer_blob_name, m->tokenizer_blob,
                                              m->tokenizer_blob_len, m->tokenizer_config_json,
                                              m->tokenizer_config_json
                                                  ? strlen(m->tokenizer_config_json) : 0,
                                              vocab, err);
    else
        return eng_err_set(err, ENG_E_INVAL,
                           "%s: the model carries no tokenizer; pass one with --tokenizer PATH",
                           m->path);
    /* More pieces than the model has embedding rows: ids the model cannot embed would fail
     * later, in the middle of a batch. Refuse the pair here, for every caller. */
    if (rc == 0 && eng_tokenizer_vocab_size(*out) > vocab) {
        rc = eng_err_set(err, ENG_E_FORMAT, "%s: tokenizer has %d pieces, but the model's "
                         "vocabulary has %d: they do not belong together", m->path,
                         eng_tokenizer_vocab_size(*out), vocab);
        eng_tokenizer_close(*out);
        *out = NULL;
    }
    return rc;
}
