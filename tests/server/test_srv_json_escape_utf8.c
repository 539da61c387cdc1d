/* test_srv_json_escape_utf8.c — srv_buf's JSON string escaping and UTF-8 checks, and srv_json's
 * NUL-safe response text, which stand between client bytes (prompts, request ids, token pieces)
 * and every JSON we emit: control characters escaped, invalid UTF-8 (truncated, overlong,
 * surrogates, > U+10FFFF) replaced by U+FFFD, valid multi-byte text untouched, a NUL written as
 * \u0000, and the result always parses as JSON (cJSON). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srv_buf.h"
#include "srv_json.h"

static int fails;

#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fails++;                                                                      \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            printf(__VA_ARGS__);                                                          \
            printf("\n");                                                                 \
        }                                                                                 \
    } while (0)

/* Escapes in, checks the literal, and that cJSON reads back want (NULL: in itself). */
static void esc(const char *in, size_t len, const char *lit, const char *want)
{
    srv_buf b = {0};
    CHECK(srv_buf_json_str(&b, in, len) == 0, "append");
    if (lit)
        CHECK(strcmp(b.p, lit) == 0, "literal: got %s want %s", b.p, lit);
    cJSON *j = cJSON_Parse(b.p);
    CHECK(j && cJSON_IsString(j), "parses: %s", b.p);
    if (j && cJSON_IsString(j))
        CHECK(strcmp(j->valuestring, want ? want : in) == 0, "round trip of %s", b.p);
    CHECK(srv_utf8_valid(b.p, b.len), "escaped output is valid UTF-8: %s", b.p);
    cJSON_Delete(j);
    srv_buf_free(&b);
}

int main(void)
{
    esc("plain", 5, "\"plain\"", NULL);
    esc("q\"b\\s", 5, "\"q\\\"b\\\\s\"", NULL);
    esc("nl\n\tcr\r", 7, "\"nl\\n\\tcr\\r\"", NULL);
    esc("\x01\x1f\x7f", 3, "\"\\u0001\\u001f\\u007f\"", NULL);
    esc("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14, NULL, NULL);    /* é € 😀 kept */
    esc("a\xff" "b", 3, "\"a\xef\xbf\xbd" "b\"", "a\xef\xbf\xbd" "b");        /* stray byte */
    esc("\xc0\xaf", 2, NULL, "\xef\xbf\xbd\xef\xbf\xbd");                  /* overlong */
    esc("\xed\xa0\x80", 3, NULL, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  /* surrogate */
    esc("\xf4\x90\x80\x80", 4, NULL,
        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");                /* > U+10FFFF */
    esc("\xe2\x82", 2, NULL, "\xef\xbf\xbd\xef\xbf\xbd");                  /* truncated */
    esc("", 0, "\"\"", NULL);
    /* embedded NUL is escaped, not a terminator */
    srv_buf b = {0};
    srv_buf_json_str(&b, "a\0b", 3);
    CHECK(strcmp(b.p, "\"a\\u0000b\"") == 0, "NUL escaped: %s", b.p);
    srv_buf_free(&b);

    CHECK(srv_utf8_valid("caf\xc3\xa9", 5), "valid");
    CHECK(!srv_utf8_valid("caf\xc3", 4), "truncated invalid");
    CHECK(!srv_utf8_valid("\xc1\xbf", 2), "overlong invalid");

    char out[16];
    size_t n = srv_utf8_repair("ab\xff\xe2\x82\xac", 6, out, sizeof(out));
    CHECK(n == 8 && memcmp(out, "ab\xef\xbf\xbd\xe2\x82\xac", 8) == 0 && out[n] == 0, "repair");
    n = srv_utf8_repair("\xe2\x82\xac\xe2\x82\xac", 6, out, 5);
    CHECK(n == 3 && strcmp(out, "\xe2\x82\xac") == 0, "repair never splits a character");

    /* printf growth past the small buffer */
    srv_buf g = {0};
    for (int i = 0; i < 1000; i++)
        srv_buf_printf(&g, "%04d,", i);
    CHECK(g.len == 5000 && strncmp(g.p + 4995, "0999,", 5) == 0, "growth");
    char big[2000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    srv_buf_printf(&g, "%s", big);
    CHECK(g.len == 5000 + 1999 && g.p[g.len] == 0, "large printf");
    size_t tl;
    char *t = srv_buf_take(&g, &tl);
    CHECK(t && tl == 6999 && g.p == NULL && g.len == 0, "take");
    free(t);
    srv_buf_free(&g);
    srv_buf_free(&g);

    /* NUL bytes in response text: masked into cJSON, printed as \u0000 */
    cJSON *o = cJSON_CreateObject();
    srv_json_add_text(o, "t", "a\0b\0", 4);
    srv_json_add_text(o, "u", "caf\xc3\xa9", 5);
    size_t pl = 0;
    char *pr = srv_json_print(o, &pl);
    const char *want_p = "{\"t\":\"a\\u0000b\\u0000\",\"u\":\"caf\xc3\xa9\"}";
    CHECK(pr && pl == strlen(want_p) && strcmp(pr, want_p) == 0, "print: %s", pr ? pr : "(null)");
    cJSON *back = pr ? cJSON_Parse(pr) : NULL;
    CHECK(back && cJSON_IsString(cJSON_GetObjectItem(back, "u")), "printed text parses");
    cJSON_Delete(back);
    free(pr);
    cJSON_Delete(o);
    char m[8];
    CHECK(srv_json_mask_nul("x\0y", 3, m, sizeof m) == 4 && memcmp(m, "x\xc0\x80y", 5) == 0,
          "mask");
    CHECK(srv_json_mask_nul("xy\0", 3, m, 4) == 2 && strcmp(m, "xy") == 0,
          "a masked NUL is never split at the end of out");
    printf("%s (%d failures)\n", fails ? "FAILED" : "ok", fails);
    return fails ? 1 : 0;
}
