/* eng_tok_load.c — the three tokenizer loaders: llama2.c tokenizer.bin, SentencePiece
 * tokenizer.model (protobuf, parsed by hand with every length checked) and HF tokenizer.json
 * (cJSON), plus eng_tokenizer_open/_open_buffer, which pick one by name and content. Builds
 * the struct through eng__tok_*; does no encoding itself. Any thread; no shared state. */
#include "eng_tokenizer_impl.h"

#include "eng_file.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENG_TOK_MAX_FILE ((size_t)512 << 20)   /* 512 MiB: far above any tokenizer file */

/* ------------------------------------------------------------------------------------------ */
/* llama2.c tokenizer.bin                                                                      */
/* ------------------------------------------------------------------------------------------ */

static uint32_t rd_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int eng__tok_load_bin(eng_tokenizer **out, const unsigned char *d, size_t n, int vocab_hint,
                      eng_err *err)
{
    *out = NULL;
    if (n < 4) return eng_err_set(err, ENG_E_FORMAT, "tokenizer.bin: %zu bytes, no header", n);
    int32_t max_len = (int32_t)rd_u32(d);
    if (max_len <= 0 || max_len > ENG_TOK_MAX_PIECE)
        return eng_err_set(err, ENG_E_FORMAT, "tokenizer.bin: max_token_length %d out of range",
                           (int)max_len);
    if (vocab_hint < 0 || vocab_hint > ENG_TOK_MAX_VOCAB)
        return eng_err_set(err, ENG_E_INVAL, "tokenizer.bin: vocab_hint %d out of range",
                           vocab_hint);
    /* count the pieces first (the file does not say how many) */
    size_t pos = 4;
    int count = 0;
    while (pos < n && (vocab_hint == 0 || count < vocab_hint)) {
        if (n - pos < 8)
            return eng_err_set(err, ENG_E_FORMAT, "tokenizer.bin: truncated at byte %zu (piece %d)",
                               pos, count);
        int32_t len = (int32_t)rd_u32(d + pos + 4);
        if (len < 0 || len > max_len || (size_t)len > n - pos - 8)
            return eng_err_set(err, ENG_E_FORMAT,
                               "tokenizer.bin: piece %d has length %d at byte %zu (max %d, %zu "
                               "bytes left)", count, (int)len, pos, (int)max_len, n - pos - 8);
        pos += 8 + (size_t)len;
        if (++count > ENG_TOK_MAX_VOCAB)
            return eng_err_set(err, ENG_E_FORMAT, "tokenizer.bin: too many pieces");
    }
    if (vocab_hint > 0 && count < vocab_hint)
        return eng_err_set(err, ENG_E_FORMAT, "tokenizer.bin: %d pieces, the model needs %d",
                           count, vocab_hint);
    if (vocab_hint > 0 && pos < n)   /* llama2.c writes exactly the model's pieces */
        return eng_err_set(err, ENG_E_FORMAT, "tokenizer.bin: more than the model's %d pieces "
                           "(%zu bytes follow piece %d): a tokenizer for another model",
                           vocab_hint, n - pos, count - 1);
    if (count < 3) return eng_err_set(err, ENG_E_FORMAT, "tokenizer.bin: only %d pieces", count);

    eng_tokenizer *t;
    int rc = eng__tok_new(&t, ENG__TOK_BIN, count, err);
    if (rc) return rc;
    pos = 4;
    for (int id = 0; id < count; id++) {
        float score;
        uint32_t bits = rd_u32(d + pos);
        memcpy(&score, &bits, sizeof score);
        size_t len = rd_u32(d + pos + 4);
        /* llama2.c hard-codes 0 = <unk>, 1 = BOS, 2 = EOS */
        int type = id == 0 ? ENG__PT_UNKNOWN : id <= 2 ? ENG__PT_CONTROL : ENG__PT_NORMAL;
        rc = eng__tok_set(t, id, (const char *)d + pos + 8, len, score, type, err);
        if (rc) goto fail;
        pos += 8 + len;
    }
    t->unk_id = 0;
    t->bos_id = 1;
    t->eos_id = 2;
    t->add_dummy_prefix = 1;
    t->escape_ws = 0;           /* llama2.c stores pieces with real spaces */
    rc = eng__tok_finish(t, err);
    if (rc) goto fail;
    for (int b = 0; b < 256; b++)
        if (t->byte_id[b] >= 0) t->byte_fallback = 1;
    *out = t;
    return 0;
fail:
    eng_tokenizer_close(t);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* SentencePiece ModelProto                                                                    */
/* ------------------------------------------------------------------------------------------ */

typedef struct pbr {
    const unsigned char *p, *end;   /* view into the caller's buffer */
} pbr;

typedef struct pbf {
    uint32_t field;
    int wt;                         /* wire type: 0 varint, 1 fixed64, 2 bytes, 5 fixed32 */
    uint64_t v;                     /* varint / fixed value */
    const unsigned char *data;      /* wire type 2: view into the buffer */
    size_t len;
} pbf;

static int pb_varint(pbr *r, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return -1;
        unsigned c = *r->p++;
        x |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* Reads the next field; 1 when one was read, 0 at the end, -1 when malformed. */
static int pb_next(pbr *r, pbf *f)
{
    if (r->p >= r->end) return 0;
    uint64_t key;
    if (pb_varint(r, &key)) return -1;
    f->field = (uint32_t)(key >> 3);
    f->wt = (int)(key & 7);
    if (f->field == 0 || key >> 32) return -1;
    switch (f->wt) {
    case 0:
        return pb_varint(r, &f->v) ? -1 : 1;
    case 1:
        if (r->end - r->p < 8) return -1;
        f->v = (uint64_t)rd_u32(r->p) | (uint64_t)rd_u32(r->p + 4) << 32;
        r->p += 8;
        return 1;
    case 5:
        if (r->end - r->p < 4) return -1;
        f->v = rd_u32(r->p);
        r->p += 4;
        return 1;
    case 2: {
        uint64_t len;
        if (pb_varint(r, &len) || len > (uint64_t)(r->end - r->p)) return -1;
        f->data = r->p;
        f->len = (size_t)len;
        r->p += len;
        return 1;
    }
    default:
        return -1;   /* groups (3, 4) are not used by ModelProto */
    }
}

typedef struct spm_spec {
    int model_type, byte_fallback, unk_id, bos_id, eos_id, ws_suffix;
    int add_dummy_prefix, remove_extra_ws, escape_ws;
    const unsigned char *charsmap;   /* view into the file */
    size_t charsmap_len;
} spm_spec;

static int spm_trainer(const unsigned char *d, size_t n, spm_spec *s)
{
    pbr r = {d, d + n};
    pbf f;
    int k;
    while ((k = pb_next(&r, &f)) > 0) {
        if (f.wt != 0) continue;
        int32_t v = (int32_t)(int64_t)f.v;
        switch (f.field) {
        case 3: s->model_type = v; break;
        case 24: s->ws_suffix = v != 0; break;
        case 35: s->byte_fallback = v != 0; break;
        case 40: s->unk_id = v; break;
        case 41: s->bos_id = v; break;
        case 42: s->eos_id = v; break;
        default: break;
        }
    }
    return k;
}

static int spm_normalizer(const unsigned char *d, size_t n, spm_spec *s)
{
    pbr r = {d, d + n};
    pbf f;
    int k;
    while ((k = pb_next(&r, &f)) > 0) {
        if (f.field == 2 && f.wt == 2) {
            s->charsmap = f.data;
            s->charsmap_len = f.len;
        } else if (f.wt == 0) {
            if (f.field == 3) s->add_dummy_prefix = f.v != 0;
            if (f.field == 4) s->remove_extra_ws = f.v != 0;
            if (f.field == 5) s->escape_ws = f.v != 0;
        }
    }
    return k;
}

static int spm_charsmap(eng_tokenizer *t, const unsigned char *d, size_t n, eng_err *err)
{
    if (n == 0) return 0;
    if (n < 4) return eng_err_set(err, ENG_E_FORMAT, "tokenizer.model: charsmap truncated");
    size_t trie_bytes = rd_u32(d);
    if (trie_bytes == 0 || trie_bytes % 4 || trie_bytes > n - 4)
        return eng_err_set(err, ENG_E_FORMAT,
                           "tokenizer.model: charsmap trie of %zu bytes in a %zu-byte map",
                           trie_bytes, n);
    t->n_trie = trie_bytes / 4;
    t->trie = malloc(trie_bytes);
    t->n_norm = n - 4 - trie_bytes;
    t->norm_blob = malloc(t->n_norm ? t->n_norm : 1);
    if (!t->trie || !t->norm_blob)
        return eng_err_set(err, ENG_E_NOMEM, "tokenizer.model: out of memory (charsmap)");
    for (size_t i = 0; i < t->n_trie; i++) t->trie[i] = rd_u32(d + 4 + 4 * i);
    if (t->n_norm) memcpy(t->norm_blob, d + 4 + trie_bytes, t->n_norm);
    return 0;
}

int eng__tok_load_spm(eng_tokenizer **out, const unsigned char *d, size_t n, eng_err *err)
{
    *out = NULL;
    spm_spec s = {.model_type = 1, .unk_id = 0, .bos_id = 1, .eos_id = 2,
                  .add_dummy_prefix = 1, .remove_extra_ws = 1, .escape_ws = 1};
    pbr r = {d, d + n};
    pbf f;
    int k, count = 0;
    while ((k = pb_next(&r, &f)) > 0) {
        if (f.field == 1 && f.wt == 2) {
            if (++count > ENG_TOK_MAX_VOCAB)
                return eng_err_set(err, ENG_E_FORMAT, "tokenizer.model: too many pieces");
        } else if (f.field == 2 && f.wt == 2) {
            if (spm_trainer(f.data, f.len, &s) < 0)
                return eng_err_set(err, ENG_E_FORMAT, "tokenizer.model: malformed trainer_spec");
        } else if (f.field == 3 && f.wt == 2) {
            if (spm_normalizer(f.data, f.len, &s) < 0)
                return eng_err_set(err, ENG_E_FORMAT,
                                   "tokenizer.model: malformed normalizer_spec");
        }
    }
    if (k < 0)
        return eng_err_set(err, ENG_E_FORMAT, "tokenizer.model: malformed protobuf at byte %zu",
                           (size_t)(r.p - d));
    if (count == 0) return eng_err_set(err, ENG_E_FORMAT, "tokenizer.model: no pieces");
    if (s.model_type != 2)
        return eng_err_set(err, ENG_E_UNSUPPORTED,
                           "tokenizer.model: model_type %d (only BPE = 2 is supported)",
                           s.model_type);
    if (s.ws_suffix)
        return eng_err_set(err, ENG_E_UNSUPPORTED,
                           "tokenizer.model: treat_whitespace_as_suffix is not supported");

    eng_tokenizer *t;
    int rc = eng__tok_new(&t, ENG__TOK_SPM, count, err);
    if (rc) return rc;
    r.p = d;
    int id = 0;
    while (pb_next(&r, &f) > 0) {
        if (!(f.field == 1 && f.wt == 2)) continue;
        pbr pr = {f.data, f.data + f.len};
        pbf g;
        const unsigned char *ps = (const unsigned char *)"";
        size_t pl = 0;
        float score = 0.0f;
        int type = ENG__PT_NORMAL, kk;
        while ((kk = pb_next(&pr, &g)) > 0) {
            if (g.field == 1 && g.wt == 2) {
                ps = g.data;
                pl = g.len;
            } else if (g.field == 2 && g.wt == 5) {
                uint32_t bits = (uint32_t)g.v;
                memcpy(&score, &bits, sizeof score);
            } else if (g.field == 3 && g.wt == 0) {
                type = (int)(int64_t)g.v;
            }
        }
        if (kk < 0) {
            rc = eng_err_set(err, ENG_E_FORMAT, "tokenizer.model: piece %d malformed", id);
            goto fail;
        }
        rc = eng__tok_set(t, id, (const char *)ps, pl, score, type, err);
        if (rc) goto fail;
        if (type == ENG__PT_UNKNOWN && t->unk_id < 0) t->unk_id = id;
        id++;
    }
    t->add_dummy_prefix = s.add_dummy_prefix;
    t->remove_extra_ws = s.remove_extra_ws;
    t->escape_ws = s.escape_ws;
    t->byte_fallback = s.byte_fallback;
    rc = spm_charsmap(t, s.charsmap, s.charsmap_len, err);
    if (rc) goto fail;
    rc = eng__tok_finish(t, err);
    if (rc) goto fail;
    if (t->unk_id < 0 && s.unk_id >= 0 && s.unk_id < count) t->unk_id = s.unk_id;
    t->bos_id = s.bos_id >= 0 && s.bos_id < count ? s.bos_id : -1;
    t->eos_id = s.eos_id >= 0 && s.eos_id < count ? s.eos_id : -1;
    *out = t;
    return 0;
fail:
    eng_tokenizer_close(t);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* HF tokenizer.json                                                                           */
/* ------------------------------------------------------------------------------------------ */

#define HF_SPACE "\xE2\x96\x81"

static const char *json_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int json_bool(const cJSON *o, const char *key, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return dflt;
}

static int json_id(const cJSON *v, int *id)
{
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= ENG_TOK_MAX_VOCAB ||
        v->valuedouble != (double)(int)v->valuedouble)
        return -1;
    *id = (int)v->valuedouble;
    return 0;
}

static int hf_normalizer(eng_tokenizer *t, const cJSON *nz, eng_err *err)
{
    if (!nz || cJSON_IsNull(nz)) return 0;
    const char *type = json_str(nz, "type");
    if (!type) return eng_err_set(err, ENG_E_FORMAT, "tokenizer.json: normalizer without type");
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(nz, "normalizers");
        if (!cJSON_IsArray(list))
            return eng_err_set(err, ENG_E_FORMAT, "tokenizer.json: Sequence without a list");
        const cJSON *it;
        cJSON_ArrayForEach(it, list) {
            int rc = hf_normalizer(t, it, err);
            if (rc) return rc;
        }
        return 0;
    }
    if (!strcmp(type, "Prepend")) {
        const char *p = json_str(nz, "prepend");
        if (!p || strcmp(p, HF_SPACE))
            return eng_err_set(err, ENG_E_UNSUPPORTED,
                               "tokenizer.json: Prepend normalizer other than U+2581");
        t->hf_prepend = ENG__PREPEND_ALWAYS;
        t->hf_norm_prepend = 1;
        return 0;
    }
    if (!strcmp(type, "Replace")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(nz, "pattern");
        const char *from = pat ? json_str(pat, "String") : NULL;
        const char *to = json_str(nz, "content");
        if (!from || !to || strcmp(from, " ") || strcmp(to, HF_SPACE))
            return eng_err_set(err, ENG_E_UNSUPPORTED,
                               "tokenizer.json: only the Replace \" \" -> U+2581 normalizer is "
                               "supported");
        t->escape_ws = 1;
        t->hf_norm_ws = 1;
        return 0;
    }
    return eng_err_set(err, ENG_E_UNSUPPORTED, "tokenizer.json: normalizer %.64s not supported",
                       type);
}

/* One pre-tokenizer of tokenizer.json; *seen_bl tells a Split whether ByteLevel came first. */
static int hf_pretok_one(eng_tokenizer *t, const cJSON *pt, int *seen_bl, eng_err *err)
{
    const char *type = json_str(pt, "type");
    if (type && !strcmp(type, "ByteLevel")) {
        if (*seen_bl)
            return eng_err_set(err, ENG_E_UNSUPPORTED, "tokenizer.json: two ByteLevel "
                               "pre_tokenizers");
        *seen_bl = 1;
        t->byte_level = 1;
        t->bl_prefix_space = json_bool(pt, "add_prefix_space", 0);
        if (json_bool(pt, "use_regex", 1)) {
            if (t->split_kind != ENG__SPLIT_NONE)
                return eng_err_set(err, ENG_E_UNSUPPORTED, "tokenizer.json: ByteLevel with "
                                   "use_regex after a Split is not supported");
            t->split_kind = ENG__SPLIT_GPT2;
        } else if (t->split_kind != ENG__SPLIT_NONE && t->bl_prefix_space) {
            return eng_err_set(err, ENG_E_UNSUPPORTED, "tokenizer.json: ByteLevel "
                               "add_prefix_space after a Split is not supported");
        }
        return 0;
    }
    if (type && !strcmp(type, "Split")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(pt, "pattern");
        const char *re = pat ? json_str(pat, "Regex") : NULL;
        const char *beh = json_str(pt, "behavior");
        int digits = 0, kind = re ? eng__pretok_pattern(re, &digits) : -1;
        if (!re)
            return eng_err_set(err, ENG_E_UNSUPPORTED, "tokenizer.json: Split pre_tokenizer "
                               "without a Regex pattern is not supported");
        if (kind < 0)
            return eng_err_set(err, ENG_E_UNSUPPORTED, "tokenizer.json: Split pattern \"%.120s\" "
                               "is not supported (known: LLaMA-3, Qwen2, GPT-2)", re);
        if ((beh && strcmp(beh, "Isolated")) || json_bool(pt, "invert", 0))
            return eng_err_set(err, ENG_E_UNSUPPORTED, "tokenizer.json: Split behavior %.32s%s "
                               "is not supported (only Isolated)", beh ? beh : "?",
                               json_bool(pt, "invert", 0) ? " inverted" : "");
        if (*seen_bl || t->split_kind != ENG__SPLIT_NONE)
            return eng_err_set(err, ENG_E_UNSUPPORTED, "tokenizer.json: only one Split, before "
                               "ByteLevel, is supported");
        t->split_kind = kind;
        t->split_digits = digits;
        return 0;
    }
    if (!type || strcmp(type, "Metaspace"))
        return eng_err_set(err, ENG_E_UNSUPPORTED, "tokenizer.json: pre_tokenizer %.64s not "
                           "supported (Metaspace, ByteLevel, Split + ByteLevel)",
                           type ? type : "?");
    const char *rep = json_str(pt, "replacement");
    if (rep && strcmp(rep, HF_SPACE))
        return eng_err_set(err, ENG_E_UNSUPPORTED, "tokenizer.json: Metaspace replacement must "
                           "be U+2581");
    t->escape_ws = 1;
    t->hf_metaspace_split = json_bool(pt, "split", 1);
    const char *scheme = json_str(pt, "prepend_scheme");
    int prepend = scheme ? strcmp(scheme, "never") != 0 : json_bool(pt, "add_prefix_space", 1);
    if (prepend && t->hf_prepend == ENG__PREPEND_NEVER) t->hf_prepend = ENG__PREPEND_FIRST;
    return 0;
}

/* The pre_tokenizer: Metaspace (SentencePiece-style vocabularies), ByteLevel, or a Sequence of
 * one Split with a known pattern and ByteLevel (LLaMA-3, Qwen2). */
static int hf_pretokenizer(eng_tokenizer *t, const cJSON *pt, eng_err *err)
{
    if (!pt || cJSON_IsNull(pt)) return 0;
    int seen_bl = 0, rc;
    const char *type = json_str(pt, "type");
    if (type && !strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers"), *it;
        if (!cJSON_IsArray(list))
            return eng_err_set(err, ENG_E_FORMAT, "tokenizer.json: Sequence without a list");
        cJSON_ArrayForEach(it, list) {
            if ((rc = hf_pretok_one(t, it, &seen_bl, err))) return rc;
        }
    } else if ((rc = hf_pretok_one(t, pt, &seen_bl, err))) {
        return rc;
    }
    if (t->split_kind != ENG__SPLIT_NONE && !t->byte_level)
        return eng_err_set(err, ENG_E_UNSUPPORTED, "tokenizer.json: a Split pre_tokenizer "
                           "without ByteLevel is not supported");
    if (t->byte_level && t->escape_ws)
        return eng_err_set(err, ENG_E_UNSUPPORTED, "tokenizer.json: ByteLevel together with "
                           "Metaspace is not supported");
    return 0;
}

/* Name of a token in tokenizer_config.json: a string or {"content": ...}. */
static const char *config_token(const cJSON *cfg, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsString(v)) return v->valuestring;
    if (cJSON_IsObject(v)) return json_str(v, "content");
    return NULL;
}

/* The TemplateProcessing of a post_processor: itself, or the one inside a Sequence (LLaMA-3
 * puts ByteLevel first); NULL when there is none. */
static const cJSON *hf_template_processing(const cJSON *pp)
{
    const char *type = json_str(pp, "type");
    if (type && !strcmp(type, "TemplateProcessing")) return pp;
    if (!type || strcmp(type, "Sequence")) return NULL;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(pp, "processors"), *it;
    if (!cJSON_IsArray(list)) return NULL;
    cJSON_ArrayForEach(it, list) {
        const char *ti = json_str(it, "type");
        if (ti && !strcmp(ti, "TemplateProcessing")) return it;
    }
    return NULL;
}

/* BOS, EOS, and whether encoding adds the BOS, as HF decides (its post_processor runs on
 * encode(add_special_tokens=True)):
 *   1. tokenizer_config.json "bos_token": null: there is no BOS;
 *   2. "add_bos_token": false: the named BOS exists (chat templates write it) but is not added;
 *   3. a TemplateProcessing post_processor: the special token its "single" template starts
 *      with is the BOS, added; a template that starts with the text ($A) adds none;
 *   4. otherwise the config's bos_token, else a guess by name (<s>, <|begin_of_text|>, ...),
 *      else id 1 when it is a control token (the SentencePiece layout), added.
 * EOS: the config's eos_token, else the guess by name, else id 2 when a control token. */
static void hf_bos_eos(eng_tokenizer *t, const cJSON *root, const cJSON *cfg)
{
    const cJSON *cb = cJSON_GetObjectItemCaseSensitive(cfg, "bos_token");
    const cJSON *tp = hf_template_processing(cJSON_GetObjectItemCaseSensitive(root,
                                                                              "post_processor"));
    int decided = 1;
    if (cfg) {
        const char *b = config_token(cfg, "bos_token"), *e = config_token(cfg, "eos_token");
        if (b) t->bos_id = eng__tok_lookup(t, b, strlen(b));
        if (e) t->eos_id = eng__tok_lookup(t, e, strlen(e));
    }
    if (cJSON_IsNull(cb)) {
        t->bos_id = -1;
        t->add_bos = 0;
    } else if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token"))) {
        t->add_bos = 0;
    } else if (tp) {
        const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(tp, "single"), 0);
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(first, "SpecialToken");
        const char *name = json_str(st, "id");
        int id = name ? eng__tok_lookup(t, name, strlen(name)) : -1;
        if (id >= 0) t->bos_id = id;
        else t->add_bos = 0;
    } else {
        decided = 0;
    }
    static const char *const bos_names[] = {"<s>", "<|begin_of_text|>", "<|startoftext|>", "<bos>"};
    static const char *const eos_names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>"};
    for (size_t i = 0; !decided && t->bos_id < 0 && i < sizeof bos_names / sizeof *bos_names; i++)
        t->bos_id = eng__tok_lookup(t, bos_names[i], strlen(bos_names[i]));
    for (size_t i = 0; t->eos_id < 0 && i < sizeof eos_names / sizeof *eos_names; i++)
        t->eos_id = eng__tok_lookup(t, eos_names[i], strlen(eos_names[i]));
    /* the SentencePiece convention: 1 and 2 when they are special tokens */
    if (!decided && t->bos_id < 0 && t->n_vocab > 1 && t->type[1] == ENG__PT_CONTROL)
        t->bos_id = 1;
    if (t->eos_id < 0 && t->n_vocab > 2 && t->type[2] == ENG__PT_CONTROL) t->eos_id = 2;
}

/* A vocab piece; byte-level vocabularies store the bytes a piece stands for ("Ġthe" is " the";
 * a piece with a character outside the mapping keeps its text, as HF's decoder does). */
static int hf_set_piece(eng_tokenizer *t, int id, const char *s, float score, eng_err *err)
{
    size_t n = strlen(s);
    char raw[ENG_TOK_MAX_PIECE];
    if (t->byte_level) {
        size_t r = eng__bytelevel_unmap(s, n, raw, sizeof raw);
        if (r != (size_t)-1) return eng__tok_set(t, id, raw, r, score, ENG__PT_NORMAL, err);
    }
    return eng__tok_set(t, id, s, n, score, ENG__PT_NORMAL, err);
}

/* The id of merge side s[0..n) (unmapped first in a byte-level vocabulary); -1 when absent. */
static int hf_merge_side(const eng_tokenizer *t, const char *s, size_t n, char *raw, size_t *rn)
{
    if (t->byte_level) {
        size_t r = eng__bytelevel_unmap(s, n, raw, ENG_TOK_MAX_PIECE);
        if (r != (size_t)-1) {
            *rn = r;
            return eng__tok_lookup(t, raw, r);
        }
    }
    if (n > ENG_TOK_MAX_PIECE) return -1;
    memcpy(raw, s, n);
    *rn = n;
    return eng__tok_lookup(t, s, n);
}

static int hf_merges(eng_tokenizer *t, const cJSON *merges, eng_err *err)
{
    int n = cJSON_GetArraySize(merges), rank = 0, rc;
    if ((rc = eng__tok_merges_reserve(t, n, err))) return rc;
    char buf[2 * ENG_TOK_MAX_PIECE + 2];
    const cJSON *m;
    cJSON_ArrayForEach(m, merges) {
        const char *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        if (cJSON_IsString(m)) {
            const char *s = m->valuestring, *sp = strchr(s, ' ');
            if (sp) {
                a = s;
                la = (size_t)(sp - s);
                b = sp + 1;
                lb = strlen(b);
            }
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 &&
                   cJSON_IsString(cJSON_GetArrayItem(m, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(m, 1))) {
            a = cJSON_GetArrayItem(m, 0)->valuestring;
            b = cJSON_GetArrayItem(m, 1)->valuestring;
            la = strlen(a);
            lb = strlen(b);
        }
        if (!a || la > ENG_TOK_MAX_PIECE || lb > ENG_TOK_MAX_PIECE)
            return eng_err_set(err, ENG_E_FORMAT, "tokenizer.json: merge %d is malformed", rank);
        size_t ra = 0, rb = 0;
        int ia = hf_merge_side(t, a, la, buf, &ra);
        int ib = hf_merge_side(t, b, lb, buf + ra, &rb);
        int im = eng__tok_lookup(t, buf, ra + rb);
        if (ia < 0 || ib < 0 || im < 0)
            return eng_err_set(err, ENG_E_FORMAT,
                               "tokenizer.json: merge %d (%.40s) uses a piece not in the vocab",
                               rank, cJSON_IsString(m) ? m->valuestring : "[a, b]");
        if ((rc = eng__tok_add_merge(t, ia, ib, im, rank, err))) return rc;
        rank++;
    }
    return 0;
}

static int hf_build(eng_tokenizer **out, const cJSON *root, const cJSON *cfg, eng_err *err)
{
    *out = NULL;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model))
        return eng_err_set(err, ENG_E_FORMAT, "tokenizer.json: no \"model\" object");
    const char *mtype = json_str(model, "type");
    if (mtype && strcmp(mtype, "BPE"))
        return eng_err_set(err, ENG_E_UNSUPPORTED, "tokenizer.json: model type %.32s (only BPE)",
                           mtype);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    int scored = cJSON_IsArray(vocab);   /* [[piece, score], ...]: merge by score */
    if (!cJSON_IsObject(vocab) && !scored)
        return eng_err_set(err, ENG_E_FORMAT, "tokenizer.json: model.vocab missing");
    if (merges && !cJSON_IsArray(merges) && !cJSON_IsNull(merges))
        return eng_err_set(err, ENG_E_FORMAT, "tokenizer.json: model.merges is not an array");

    /* id space: the largest id of the vocab and the added tokens */
    int n = 0, id;
    const cJSON *it;
    if (scored) {
        n = cJSON_GetArraySize(vocab);
    } else {
        cJSON_ArrayForEach(it, vocab) {
            if (json_id(it, &id))
                return eng_err_set(err, ENG_E_FORMAT, "tokenizer.json: vocab entry %.40s has a "
                                   "bad id", it->string ? it->string : "?");
            if (id + 1 > n) n = id + 1;
        }
    }
    if (cJSON_IsArray(added)) {
        cJSON_ArrayForEach(it, added) {
            if (json_id(cJSON_GetObjectItemCaseSensitive(it, "id"), &id) ||
                !json_str(it, "content"))
                return eng_err_set(err, ENG_E_FORMAT, "tokenizer.json: malformed added token");
            if (id + 1 > n) n = id + 1;
        }
    }
    eng_tokenizer *t;
    int rc = eng__tok_new(&t, ENG__TOK_HF, n, err);
    if (rc) return rc;
    t->escape_ws = 0;
    /* normalizer and pre_tokenizer first: ByteLevel decides how vocab pieces are stored */
    if ((rc = hf_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), err)))
        goto fail;
    if ((rc = hf_pretokenizer(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), err)))
        goto fail;
    if (scored) {
        id = 0;
        cJSON_ArrayForEach(it, vocab) {
            const cJSON *p = cJSON_GetArrayItem(it, 0), *s = cJSON_GetArrayItem(it, 1);
            if (!cJSON_IsArray(it) || !cJSON_IsString(p) || !cJSON_IsNumber(s)) {
                rc = eng_err_set(err, ENG_E_FORMAT, "tokenizer.json: vocab entry %d is not "
                                 "[piece, score]", id);
                goto fail;
            }
            rc = hf_set_piece(t, id, p->valuestring, (float)s->valuedouble, err);
            if (rc) goto fail;
            id++;
        }
    } else {
        cJSON_ArrayForEach(it, vocab) {
            id = 0;
            json_id(it, &id);
            rc = hf_set_piece(t, id, it->string, 0.0f, err);
            if (rc) goto fail;
        }
    }
    if (cJSON_IsArray(added)) {
        /* HF matches an added token marked "normalized" (the default for a non-special one) on
         * the normalized text: when the normalizer changes anything, remember which */
        if (t->hf_norm_prepend || t->hf_norm_ws) {
            t->hf_norm_added = calloc((size_t)t->n_vocab, 1);
            if (!t->hf_norm_added) {
                rc = eng_err_set(err, ENG_E_NOMEM, "tokenizer: out of memory");
                goto fail;
            }
        }
        cJSON_ArrayForEach(it, added) {
            id = 0;
            json_id(cJSON_GetObjectItemCaseSensitive(it, "id"), &id);
            const char *c = json_str(it, "content");
            int special = json_bool(it, "special", 0);
            rc = eng__tok_set(t, id, c, strlen(c), 0.0f, special ? ENG__PT_CONTROL : ENG__PT_USER,
                              err);
            if (rc) goto fail;
            if (t->hf_norm_added && id < t->n_vocab)
                t->hf_norm_added[id] = (uint8_t)json_bool(it, "normalized", !special);
        }
    }
    if ((rc = eng__tok_finish(t, err))) goto fail;   /* builds the hash the rest needs */

    const char *unk = json_str(model, "unk_token");
    if (unk) {
        t->unk_id = eng__tok_lookup(t, unk, strlen(unk));
        if (t->unk_id >= 0 && t->type[t->unk_id] == ENG__PT_NORMAL)
            t->type[t->unk_id] = ENG__PT_UNKNOWN;
    }
    t->byte_fallback = json_bool(model, "byte_fallback", 0);
    t->hf_fuse_unk = json_bool(model, "fuse_unk", 0);
    t->hf_ignore_merges = json_bool(model, "ignore_merges", 0);
    if (!scored && cJSON_IsArray(merges) && cJSON_GetArraySize(merges) > 0) {
        if ((rc = hf_merges(t, merges, err))) goto fail;
    }
    t->hf_scored = scored;   /* neither merges nor scores: characters are never merged */
    if ((rc = eng__tok_finish(t, err))) goto fail;   /* types may have changed */
    hf_bos_eos(t, root, cfg);
    *out = t;
    return 0;
fail:
    eng_tokenizer_close(t);
    return rc;
}

int eng__tok_load_hf(eng_tokenizer **out, const char *d, size_t n, const char *config_json,
                     size_t config_len, eng_err *err)
{
    *out = NULL;
    cJSON *root = cJSON_ParseWithLength(d, n);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return eng_err_set(err, ENG_E_FORMAT, "tokenizer.json: not valid JSON (%zu bytes)", n);
    }
    cJSON *cfg = config_json ? cJSON_ParseWithLength(config_json, config_len) : NULL;
    int rc = hf_build(out, root, cJSON_IsObject(cfg) ? cfg : NULL, err);
    cJSON_Delete(cfg);
    cJSON_Delete(root);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Opening                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

enum { FMT_BIN = 1, FMT_SPM, FMT_HF };

static int sniff(const char *name, const unsigned char *d, size_t n)
{
    if (name) {
        if (ends_with(name, ".json")) return FMT_HF;
        if (ends_with(name, ".model")) return FMT_SPM;
        if (ends_with(name, ".bin")) return FMT_BIN;
    }
    size_t i = 0;
    while (i < n && (d[i] == ' ' || d[i] == '\t' || d[i] == '\n' || d[i] == '\r')) i++;
    if (i < n && d[i] == '{') return FMT_HF;
    /* llama2.c: a small little-endian max_token_length; protobuf never has 0x00 as a key */
    if (n >= 4 && d[1] == 0 && d[2] == 0 && d[3] == 0 && d[0] > 0) return FMT_BIN;
    return FMT_SPM;
}

static int open_mem(eng_tokenizer **out, const char *name, const unsigned char *d, size_t n,
                    int vocab_hint, const char *cfg, size_t cfg_len, eng_err *err)
{
    switch (sniff(name, d, n)) {
    case FMT_HF: return eng__tok_load_hf(out, (const char *)d, n, cfg, cfg_len, err);
    case FMT_BIN: return eng__tok_load_bin(out, d, n, vocab_hint, err);
    default: return eng__tok_load_spm(out, d, n, err);
    }
}

int eng_tokenizer_open_buffer_config(eng_tokenizer **out, const char *name_hint, const void *data,
                                     size_t len, const char *config_json, size_t config_len,
                                     int vocab_hint, eng_err *err)
{
    if (!out) return eng_err_set(err, ENG_E_INVAL, "tokenizer: out is NULL");
    *out = NULL;
    if (!data && len > 0) return eng_err_set(err, ENG_E_INVAL, "tokenizer: data is NULL");
    /* loaders copy what they keep, so the caller's buffer may go after this call */
    return open_mem(out, name_hint, data ? data : "", len, vocab_hint,
                    config_json, config_json ? config_len : 0, err);
}

int eng_tokenizer_open_buffer(eng_tokenizer **out, const char *name_hint, const void *data,
                              size_t len, int vocab_hint, eng_err *err)
{
    return eng_tokenizer_open_buffer_config(out, name_hint, data, len, NULL, 0, vocab_hint, err);
}

/* Reads a whole file (at most ENG_TOK_MAX_FILE bytes) into a new buffer (caller frees). */
static int read_file(const char *path, unsigned char **buf, size_t *len, eng_err *err)
{
    *buf = NULL;
    *len = 0;
    FILE *f = eng_file_fopen(path, err);
    if (!f) return err ? err->code : ENG_E_IO;
    size_t cap = 1 << 16, n = 0;
    unsigned char *p = malloc(cap);
    int rc = 0;
    if (!p) {
        rc = eng_err_set(err, ENG_E_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (;;) {
        if (n == cap) {
            if (cap >= ENG_TOK_MAX_FILE) {
                rc = eng_err_set(err, ENG_E_FORMAT, "%s: larger than %zu bytes", path,
                                 ENG_TOK_MAX_FILE);
                goto done;
            }
            unsigned char *q = realloc(p, cap * 2);
            if (!q) {
                rc = eng_err_set(err, ENG_E_NOMEM, "%s: out of memory", path);
                goto done;
            }
            p = q;
            cap *= 2;
        }
        size_t r = fread(p + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    if (ferror(f)) rc = eng_err_set(err, ENG_E_IO, "%s: read error", path);
done:
    fclose(f);
    if (rc) {
        free(p);
        return rc;
    }
    *buf = p;
    *len = n;
    return 0;
}

int eng_tokenizer_open(eng_tokenizer **out, const char *path, int vocab_hint, eng_err *err)
{
    if (!out) return eng_err_set(err, ENG_E_INVAL, "tokenizer: out is NULL");
    *out = NULL;
    if (!path) return eng_err_set(err, ENG_E_INVAL, "tokenizer: path is NULL");
    unsigned char *d, *cfg = NULL;
    size_t n, cfg_len = 0;
    int rc = read_file(path, &d, &n, err);
    if (rc) return rc;
    if (sniff(path, d, n) == FMT_HF) {
        /* bos/eos names live in tokenizer_config.json beside it; optional */
        const char *slash = strrchr(path, '/');
        size_t dir = slash ? (size_t)(slash - path + 1) : 0;
        char cpath[4096];
        if (dir + sizeof "tokenizer_config.json" <= sizeof cpath) {
            memcpy(cpath, path, dir);
            memcpy(cpath + dir, "tokenizer_config.json", sizeof "tokenizer_config.json");
            if (read_file(cpath, &cfg, &cfg_len, NULL)) cfg = NULL;
        }
    }
    rc = open_mem(out, path, d, n, vocab_hint, (const char *)cfg, cfg_len, err);
    if (rc && err && err->code == rc && !strstr(err->msg, path)) {
        char msg[ENG_ERR_MSG];
        snprintf(msg, sizeof msg, "%s", err->msg);
        eng_err_set(err, rc, "%.200s: %.300s", path, msg);
    }
    free(cfg);
    free(d);
    return rc;
}
