/* eng_json.c — duplicate-key check on a parsed JSON value (eng_json.h). Any thread. */
#include "eng_json.h"

#include <stdlib.h>
#include <string.h>

static int by_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

const char *eng_json_dup_key(const cJSON *v, int *oom)
{
    *oom = 0;
    if (!v || !(cJSON_IsObject(v) || cJSON_IsArray(v)))
        return NULL;
    /* depth first over an explicit stack: a file may nest deeply (cJSON allows 1000 levels) */
    size_t cap = 64, n = 0;
    const cJSON **stack = malloc(cap * sizeof *stack);
    const char **keys = NULL;
    size_t kcap = 0;
    const char *dup = NULL;
    if (!stack) {
        *oom = 1;
        return NULL;
    }
    stack[n++] = v;
    while (n > 0 && !dup && !*oom) {
        const cJSON *o = stack[--n];
        size_t k = 0;
        for (const cJSON *c = o->child; c; c = c->next) {
            if (cJSON_IsObject(o)) {
                if (k == kcap) {
                    size_t nc = kcap ? 2 * kcap : 64;
                    const char **p = realloc(keys, nc * sizeof *p);
                    if (!p) { *oom = 1; break; }
                    keys = p;
                    kcap = nc;
                }
                keys[k++] = c->string ? c->string : "";
            }
            if (c->child) {
                if (n == cap) {
                    const cJSON **p = realloc(stack, 2 * cap * sizeof *p);
                    if (!p) { *oom = 1; break; }
                    stack = p;
                    cap *= 2;
                }
                stack[n++] = c;
            }
        }
        if (*oom || k < 2)
            continue;
        qsort(keys, k, sizeof *keys, by_key);
        for (size_t i = 1; i < k && !dup; i++)
            if (strcmp(keys[i - 1], keys[i]) == 0)
                dup = keys[i];
    }
    free(stack);
    free(keys);
    return *oom ? NULL : dup;
}

int eng_json_check_dups(const cJSON *v, const char *what, eng_err *err)
{
    int oom;
    const char *k = eng_json_dup_key(v, &oom);
    if (oom)
        return eng_err_set(err, ENG_E_NOMEM, "%s: out of memory", what);
    if (k)
        return eng_err_set(err, ENG_E_FORMAT, "%s: the key \"%.80s\" appears twice in one JSON "
                           "object (other readers keep the last, this one would keep the "
                           "first: refused rather than read differently)", what, k);
    return 0;
}

long eng_json_bad_control(const char *text, size_t len)
{
    int in_str = 0, esc = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 && (in_str || (c != '\t' && c != '\n' && c != '\r')))
            return (long)i;
        if (!in_str) {
            in_str = c == '"';
        } else if (esc) {
            esc = 0;
        } else if (c == '\\') {
            esc = 1;
        } else if (c == '"') {
            in_str = 0;
        }
    }
    return -1;
}
