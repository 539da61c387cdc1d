/* srv_json.c — NUL-safe JSON strings for responses (srv_json.h). Loop thread (no state). */
#include "srv_json.h"

#include <stdlib.h>
#include <string.h>

cJSON *srv_json_text(const char *p, size_t len)
{
    if (!p || !memchr(p, '\0', len)) {
        char *tmp = malloc(len + 1);
        if (!tmp)
            return NULL;
        if (len)
            memcpy(tmp, p, len);
        tmp[len] = '\0';
        cJSON *s = cJSON_CreateString(tmp);
        free(tmp);
        return s;
    }
    char *tmp = malloc(2 * len + 1);
    if (!tmp)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '\0') {
            tmp[o++] = (char)0xC0;
            tmp[o++] = (char)0x80;
        } else {
            tmp[o++] = p[i];
        }
    }
    tmp[o] = '\0';
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
