/* srv_json.c — NUL-safe JSON strings for responses (srv_json.h). Loop thread (no state). */
#include "srv_json.h"

#include <stdlib.h>
#include <string.h>

size_t srv_json_mask_nul(const char *p, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 1 + (p[i] == '\0') < cap; i++) {
        if (p[i] == '\0') {
            out[o++] = (char)0xC0;
            out[o++] = (char)0x80;
        } else {
            out[o++] = p[i];
        }
    }
    if (cap)
        out[o] = '\0';
    return o;
}

cJSON *srv_json_text(const char *p, size_t len)
{
    size_t cap = p && memchr(p, '\0', len) ? 2 * len + 1 : len + 1;
    char *tmp = malloc(cap);
    if (!tmp)
        return NULL;
    srv_json_mask_nul(p ? p : "", p ? len : 0, tmp, cap);
    cJSON *s = cJSON_CreateString(tmp);
    free(tmp);
    return s;
}

cJSON *srv_json_add_text(cJSON *obj, const char *key, const char *p, size_t len)
{
    cJSON *s = srv_json_text(p, len);
    if (s && !cJSON_AddItemToObject(obj, key, s)) {
        cJSON_Delete(s);
        return NULL;
    }
    return s;
}

char *srv_json_print(const cJSON *obj, size_t *len)
{
    char *txt = cJSON_PrintUnformatted(obj);
    if (!txt)
        return NULL;
    size_t n = strlen(txt), masked = 0;
    for (size_t i = 0; i + 1 < n; i++)
        masked += (unsigned char)txt[i] == 0xC0 && (unsigned char)txt[i + 1] == 0x80;
    if (!masked) {
        *len = n;
        return txt;
    }
    char *out = malloc(n + 4 * masked + 1);   /* 2 bytes become the 6 of \u0000 */
    if (!out) {
        free(txt);
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (i + 1 < n && (unsigned char)txt[i] == 0xC0 && (unsigned char)txt[i + 1] == 0x80) {
            memcpy(out + o, "\\u0000", 6);
            o += 6;
            i++;
        } else {
            out[o++] = txt[i];
        }
    }
    out[o] = '\0';
    free(txt);
    *len = o;
    return out;
}
