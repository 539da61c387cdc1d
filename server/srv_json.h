/* srv_json.h — JSON text that may hold NUL bytes. cJSON keeps strings NUL-terminated, so a NUL
 * in model output (a <0x00> byte token) or in a decoded prompt would cut the text short. Such
 * text enters cJSON through srv_json_text, which stores each NUL as the two bytes C0 80 (an
 * overlong form that valid UTF-8 never holds: every text we emit went through srv_utf8_repair
 * or the detokenizer, both of which replace invalid sequences), and every response is printed
 * by srv_json_print, which writes those two bytes as \u0000. Loop thread (no state). */
#ifndef SRV_JSON_H
#define SRV_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>

/* p[0..len) into out[cap] (NUL-terminated) with each NUL masked as C0 80; stops at the last
 * whole byte that fits (2 * len + 1 always does). Returns the bytes written. */
size_t srv_json_mask_nul(const char *p, size_t len, char *out, size_t cap);
/* A cJSON string of p[0..len) (NULs masked); NULL when memory runs out. */
cJSON *srv_json_text(const char *p, size_t len);
/* Adds it to obj under key; returns the item or NULL. */
cJSON *srv_json_add_text(cJSON *obj, const char *key, const char *p, size_t len);
/* cJSON_PrintUnformatted with masked NULs written as \u0000; *len gets the length. Caller
 * frees; NULL when memory runs out. */
char *srv_json_print(const cJSON *obj, size_t *len);

#endif
