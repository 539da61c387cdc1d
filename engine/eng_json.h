/* eng_json.h — checks on parsed JSON that cJSON does not make, shared by the loaders of model
 * files (config.json, safetensors headers and index, the packed file's directory). Any thread;
 * pure functions. */
#ifndef ENG_JSON_H
#define ENG_JSON_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "eng_err.h"

/* A key that appears twice in one object of v, at any depth: cJSON's lookups return the first
 * of them where Python's json (and so transformers and the safetensors reader) keep the last,
 * so a file with one would load as a different model here than there. Returns the key (owned
 * by v), or NULL when there is none; *oom set when memory ran out (then NULL too). */
const char *eng_json_dup_key(const cJSON *v, int *oom);

/* RFC 8259 allows no control character (below 0x20) inside a string, and only tab, line feed
 * and carriage return between tokens; cJSON takes them all, and stops a string at a NUL
 * ("model.norm.weight\0junk" read as model.norm.weight, where other readers refuse the file).
 * The offset of the first such byte in text[len], or -1 when there is none. */
long eng_json_bad_control(const char *text, size_t len);

/* eng_json_dup_key as a loader's check: 0, or ENG_E_FORMAT (ENG_E_NOMEM) with err naming
 * the file (what) and the key. */
int eng_json_check_dups(const cJSON *v, const char *what, eng_err *err);

#endif
