/* fuzz_jinja.c — libFuzzer target: the Jinja chat-template interpreter (eng_jinja via eng_chat)
 * on arbitrary templates and messages. The input is the template source, then a NUL byte, then
 * message text: lines alternate role and content (a role line of "u", "a" or "s" and then any
 * bytes, so contents may hold markup, quotes and invalid UTF-8). The template is compiled; when
 * it compiles it is rendered with and without the generation prompt, and the spans it reports
 * must be ascending, in range and non-overlapping (abort otherwise). Limits (size, depth,
 * output, iterations) must turn every hostile template into an error, never a crash or a hang
 * past libFuzzer's -timeout. Single-threaded (libFuzzer's driver). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eng_chat.h"

#define MAX_MSGS 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t tl = nul ? (size_t)(nul - data) : size;
    eng_chat_tmpl *t = NULL;
    eng_err err = {0};
    if (eng_chat_tmpl_compile((const char *)data, tl, &t, &err)) return 0;

    /* messages: a NUL-terminated copy of the rest, cut into role / content lines */
    size_t rl = nul ? size - tl - 1 : 0;
    char *rest = malloc(rl + 1);
    if (!rest) abort();
    if (rl) memcpy(rest, nul + 1, rl);
    rest[rl] = '\0';
    eng_chat_msg msgs[MAX_MSGS];
    memset(msgs, 0, sizeof(msgs));
    int n = 0;
    char *p = rest;
    while (n < MAX_MSGS && *p) {
        char *role_end = strchr(p, '\n');
        if (!role_end) break;
        *role_end = '\0';
        char *content = role_end + 1, *end = strchr(content, '\n');
        if (end) *end = '\0';
        msgs[n].role = p[0] == 'a' ? "assistant" : p[0] == 's' ? "system" : "user";
        msgs[n].content = content;
        n++;
        if (!end) break;
        p = end + 1;
    }
    if (n == 0) {
        msgs[0].role = "user";
        msgs[0].content = "hi";
        n = 1;
    }
    for (int gen = 0; gen < 2; gen++) {
        eng_chat_tmpl_args a = {.add_generation_prompt = gen, .bos_token = "<s>",
                                .eos_token = "</s>", .now = 1700000000};
        char *out = NULL;
        size_t len = 0, *spans = NULL;
        int ns = 0;
        if (eng_chat_tmpl_render(t, msgs, n, &a, &out, &len, &spans, &ns, &err) == 0) {
            for (int k = 0; k < ns; k++) {
                size_t b = spans[2 * k], e = spans[2 * k + 1];
                if (b > e || e > len || (k && b < spans[2 * k - 1])) {
                    fprintf(stderr, "fuzz_jinja: bad span %d [%zu, %zu) of %zu\n", k, b, e, len);
                    abort();
                }
            }
            if (out && out[len] != '\0') abort();
        }
        free(out);
        free(spans);
    }
    eng_chat_tmpl_free(t);
    free(rest);
    return 0;
}
