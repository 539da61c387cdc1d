/* test_eng_chat.c — chat templates render a multi-turn exchange (system, user, assistant, user)
 * to exactly the expected Llama-2 / ChatML / plain strings (Llama-2's and ChatML's expected
 * strings are what HF's own Jinja templates produce: test_eng_chat_matches_jinja.sh checks that
 * independently); strip rules; bad message lists rejected; the buffer contract (measure with
 * cap 0, ENG_E_FULL one byte short); detection from the shared models' real
 * tokenizer_config.json files and from configs carrying real HF templates.
 * `test_eng_chat --dump-all` prints the built-in conversations and their renderings as JSON,
 * for test_eng_chat_matches_jinja.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "eng_chat.h"

#include "test_check.h"

/* The conversation: whitespace at the ends of turns on purpose (Llama-2 strips it), text from
 * the TinyStories sample in $CLAQ_SHARED/data. */
static const eng_chat_msg k_conv[] = {
    {.role = "system", .content = "You are a storyteller for small children."},
    {.role = "user", .content = "  Tell me about the girl who found a needle.\n"},
    {.role = "assistant", .content = "One day, a little girl named Lily found a needle in her room. "},
    {.role = "user", .content = "What did she do with it?"},
};
#define N_CONV 4

static const eng_chat_msg uni[] = {
    {.role = "user", .content = "\xe3\x80\x80\xc2\xa0Lily\xe2\x80\x89\xc2\x85"},
    {.role = "assistant", .content = "\t\x1f sewed a button \r\n"},
};
static const eng_chat_msg blank[] = {{.role = "system", .content = " sys "}, {.role = "user", .content = " \n "}};
static const eng_chat_msg empty_sys[] = {{.role = "system", .content = ""}, {.role = "user", .content = "Hi"}};

/* The conversations --dump-all prints (for test_eng_chat_matches_jinja.sh). */
static const struct {
    const eng_chat_msg *m;
    int n;
} k_dumps[] = {{k_conv, N_CONV}, {k_conv + 1, 2}, {k_conv + 3, 1}, {uni, 2}, {blank, 2},
               {empty_sys, 2}};
#define N_DUMPS 6

static const char k_llama2[] =
    "<s>[INST] <<SYS>>\nYou are a storyteller for small children.\n<</SYS>>\n\n"
    "  Tell me about the girl who found a needle. [/INST] "
    "One day, a little girl named Lily found a needle in her room. </s>"
    "<s>[INST] What did she do with it? [/INST]";

static const char k_chatml[] =
    "<|im_start|>system\nYou are a storyteller for small children.<|im_end|>\n"
    "<|im_start|>user\n  Tell me about the girl who found a needle.\n<|im_end|>\n"
    "<|im_start|>assistant\nOne day, a little girl named Lily found a needle in her room. "
    "<|im_end|>\n"
    "<|im_start|>user\nWhat did she do with it?<|im_end|>\n"
    "<|im_start|>assistant\n";

static const char k_plain[] =
    "System: You are a storyteller for small children.\n\n"
    "User: Tell me about the girl who found a needle.\n\n"
    "Assistant: One day, a little girl named Lily found a needle in her room.\n\n"
    "User: What did she do with it?\n\n"
    "Assistant:";

static void expect(eng_chat_template t, const eng_chat_msg *m, int n, int gen, const char *want,
                   const char *label)
{
    char out[4096];
    size_t len = 12345;
    eng_err err = {0};
    int rc = eng_chat_render(t, m, n, gen, out, sizeof out, &len, &err);
    CHECK(rc == 0, "%s: rc %d (%s)", label, rc, err.msg);
    if (rc)
        return;
    CHECK(len == strlen(want) && strcmp(out, want) == 0 && out[len] == '\0',
          "%s:\n--- got (%zu)\n%s\n--- want (%zu)\n%s\n---", label, len, out, strlen(want), want);
}

static void check_exchange(void)
{
    expect(ENG_CHAT_LLAMA2, k_conv, N_CONV, 1, k_llama2, "llama2");
    expect(ENG_CHAT_LLAMA2, k_conv, N_CONV, 0, k_llama2, "llama2, no generation prompt");
    expect(ENG_CHAT_CHATML, k_conv, N_CONV, 1, k_chatml, "chatml");
    expect(ENG_CHAT_PLAIN, k_conv, N_CONV, 1, k_plain, "plain");

    /* without the generation prompt ChatML / plain end after the last turn */
    char want[4096];
    size_t cut = strlen(k_chatml) - strlen("<|im_start|>assistant\n");
    memcpy(want, k_chatml, cut);
    want[cut] = '\0';
    expect(ENG_CHAT_CHATML, k_conv, N_CONV, 0, want, "chatml, no generation prompt");
    cut = strlen(k_plain) - strlen("\n\nAssistant:");
    memcpy(want, k_plain, cut);
    want[cut] = '\0';
    expect(ENG_CHAT_PLAIN, k_conv, N_CONV, 0, want, "plain, no generation prompt");

    /* no system message; a conversation that ends with the assistant */
    expect(ENG_CHAT_LLAMA2, k_conv + 1, 2, 1,
           "<s>[INST] Tell me about the girl who found a needle. [/INST] "
           "One day, a little girl named Lily found a needle in her room. </s>",
           "llama2, no system, ends with assistant");
    expect(ENG_CHAT_CHATML, k_conv + 3, 1, 1,
           "<|im_start|>user\nWhat did she do with it?<|im_end|>\n<|im_start|>assistant\n",
           "chatml, one user turn");
    expect(ENG_CHAT_PLAIN, k_conv + 3, 1, 1, "User: What did she do with it?\n\nAssistant:",
           "plain, one user turn");

    /* Python's str.strip() covers Unicode spaces: U+3000, U+00A0, U+2009, U+0085 */
    expect(ENG_CHAT_LLAMA2, uni, 2, 1, "<s>[INST] Lily [/INST] sewed a button </s>",
           "llama2, unicode strip");
    /* a blank first user turn after a system message strips into the system block, as the HF
     * template's .strip() on the combined string does */
    expect(ENG_CHAT_LLAMA2, blank, 2, 1, "<s>[INST] <<SYS>>\n sys \n<</SYS>> [/INST]",
           "llama2, blank user after system");
    expect(ENG_CHAT_LLAMA2, empty_sys, 2, 1, "<s>[INST] <<SYS>>\n\n<</SYS>>\n\nHi [/INST]",
           "llama2, empty system");
}

static void check_errors(void)
{
    char out[1024];
    size_t len;
    eng_err err = {0};
    const eng_chat_msg two_users[] = {{.role = "user", .content = "a"}, {.role = "user", .content = "b"}};
    CHECK(eng_chat_render(ENG_CHAT_LLAMA2, two_users, 2, 1, out, sizeof out, &len, &err) ==
              ENG_E_INVAL && strstr(err.msg, "messages[1]"),
          "llama2 accepted two user turns in a row (%s)", err.msg);
    /* ChatML and plain have no alternation rule */
    CHECK(eng_chat_render(ENG_CHAT_CHATML, two_users, 2, 1, out, sizeof out, &len, &err) == 0,
          "chatml rejected two user turns");
    const eng_chat_msg asst_first[] = {{.role = "assistant", .content = "a"}, {.role = "user", .content = "b"}};
    CHECK(eng_chat_render(ENG_CHAT_LLAMA2, asst_first, 2, 1, out, sizeof out, &len, &err) ==
              ENG_E_INVAL,
          "llama2 accepted an assistant first");
    const eng_chat_msg late_sys[] = {{.role = "user", .content = "a"}, {.role = "assistant", .content = "b"}, {.role = "system", .content = "c"}};
    CHECK(eng_chat_render(ENG_CHAT_LLAMA2, late_sys, 3, 1, out, sizeof out, &len, &err) ==
              ENG_E_INVAL && strstr(err.msg, "messages[2]"),
          "llama2 accepted a late system message (%s)", err.msg);
    const eng_chat_msg only_sys[] = {{.role = "system", .content = "a"}};
    CHECK(eng_chat_render(ENG_CHAT_LLAMA2, only_sys, 1, 1, out, sizeof out, &len, &err) ==
              ENG_E_INVAL,
          "llama2 accepted a lone system message");
    const eng_chat_msg tool[] = {{.role = "tool", .content = "a"}};
    const eng_chat_msg no_role[] = {{.role = NULL, .content = "a"}};
    const eng_chat_msg no_content[] = {{.role = "user", .content = NULL}};
    for (int t = 0; t <= 2; t++) {
        CHECK(eng_chat_render(t, tool, 1, 1, out, sizeof out, &len, &err) == ENG_E_INVAL &&
                  strstr(err.msg, "role"),
              "template %d accepted role 'tool'", t);
        CHECK(eng_chat_render(t, no_role, 1, 1, out, sizeof out, &len, &err) == ENG_E_INVAL,
              "template %d accepted a NULL role", t);
        CHECK(eng_chat_render(t, no_content, 1, 1, out, sizeof out, &len, &err) == ENG_E_INVAL &&
                  strstr(err.msg, "content"),
              "template %d accepted NULL content", t);
        CHECK(eng_chat_render(t, k_conv, 0, 1, out, sizeof out, &len, &err) == ENG_E_INVAL,
              "template %d accepted zero messages", t);
        /* tool calls have no hand-written form (servers rewrite them first) */
        cJSON *calls = cJSON_Parse("[{\"id\":\"c1\",\"type\":\"function\",\"function\":"
                                   "{\"name\":\"f\",\"arguments\":\"{}\"}}]");
        const eng_chat_msg call[] = {{.role = "user", .content = "hi"},
                                     {.role = "assistant", .content = "", .tool_calls = calls}};
        CHECK(eng_chat_render(t, call, 2, 1, out, sizeof out, &len, &err) == ENG_E_INVAL &&
                  strstr(err.msg, "tool_calls"),
              "template %d accepted tool_calls (%s)", t, err.msg);
        cJSON_Delete(calls);
    }
    CHECK(eng_chat_render((eng_chat_template)7, k_conv, N_CONV, 1, out, sizeof out, &len, &err) ==
              ENG_E_INVAL,
          "unknown template accepted");
    CHECK(eng_chat_render(ENG_CHAT_UNKNOWN, k_conv, N_CONV, 1, out, sizeof out, &len, &err) ==
              ENG_E_INVAL,
          "ENG_CHAT_UNKNOWN accepted");

    /* buffer contract: measure, exact fit, one byte short */
    size_t need = 0;
    CHECK(eng_chat_render(ENG_CHAT_LLAMA2, k_conv, N_CONV, 1, NULL, 0, &need, &err) == ENG_E_FULL,
          "measuring call did not return ENG_E_FULL");
    CHECK(need == strlen(k_llama2), "measured %zu, text is %zu", need, strlen(k_llama2));
    char *exact = malloc(need + 1);
    CHECK(eng_chat_render(ENG_CHAT_LLAMA2, k_conv, N_CONV, 1, exact, need + 1, &len, &err) == 0 &&
              strcmp(exact, k_llama2) == 0,
          "exact-size buffer failed");
    memset(exact, 'x', need + 1);
    CHECK(eng_chat_render(ENG_CHAT_LLAMA2, k_conv, N_CONV, 1, exact, need, &len, &err) ==
              ENG_E_FULL && len == need && exact[0] == '\0',
          "one byte short: not ENG_E_FULL with an empty string");
    for (size_t i = 1; i < need; i++)
        CHECK(exact[i] == 'x' || exact[i] == k_llama2[i], "byte %zu written wrongly", i);
    free(exact);
}

static char *read_shared(const char *rel)
{
    const char *root = getenv("CLAQ_SHARED");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root ? root : "/work/shared", rel);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = '\0';
    fclose(f);
    return buf;
}

/* HF meta-llama/Llama-2-7b-chat-hf and a Yi-style ChatML chat_template, JSON-escaped as they
 * appear in tokenizer_config.json. */
#define LLAMA2_TEMPLATE_JSON                                                                    \
    "\"{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"          \
    "{% set system_message = messages[0]['content'] %}{% else %}"                               \
    "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"             \
    "{% for message in loop_messages %}{% if (message['role'] == 'user') != "                   \
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "           \
    "user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and "              \
    "system_message != false %}{% set content = '<<SYS>>\\\\n' + system_message + "             \
    "'\\\\n<</SYS>>\\\\n\\\\n' + message['content'] %}{% else %}"                               \
    "{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"       \
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"                                \
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"   \
    "{% endif %}{% endfor %}\""
#define CHATML_TEMPLATE_JSON                                                                    \
    "\"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "              \
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"     \
    "{{ '<|im_start|>assistant\\n' }}{% endif %}\""

static void check_detect(void)
{
    /* the shared models' real configs carry no chat_template: plain */
    const char *real[] = {"models/tinystories-656k/tokenizer_config.json",
                          "models/small-lm-5m/tokenizer_config.json"};
    for (int i = 0; i < 2; i++) {
        char *json = read_shared(real[i]);
        if (!json) {
            fprintf(stderr, "SKIP part: %s missing\n", real[i]);
            continue;
        }
        CHECK(eng_chat_detect(json) == ENG_CHAT_PLAIN, "%s not detected as plain", real[i]);
        /* the same file with a chat_template added */
        char *p = strchr(json, '{');
        size_t n = strlen(json);
        char *with = malloc(n + 4096);
        snprintf(with, n + 4096, "{\"chat_template\": %s,%s", LLAMA2_TEMPLATE_JSON, p + 1);
        CHECK(eng_chat_detect(with) == ENG_CHAT_LLAMA2, "%s + llama2 template", real[i]);
        snprintf(with, n + 4096, "{\"chat_template\": %s,%s", CHATML_TEMPLATE_JSON, p + 1);
        CHECK(eng_chat_detect(with) == ENG_CHAT_CHATML, "%s + chatml template", real[i]);
        free(with);
        free(json);
    }
    /* the list form (named templates): "default" wins, else the first */
    CHECK(eng_chat_detect("{\"chat_template\": [{\"name\": \"tool_use\", \"template\": "
                          "\"[INST]\"}, {\"name\": \"default\", \"template\": "
                          "\"<|im_start|>\"}]}") == ENG_CHAT_CHATML,
          "list form: default not preferred");
    CHECK(eng_chat_detect("{\"chat_template\": [{\"name\": \"a\", \"template\": \"x [INST] y\"}]}")
              == ENG_CHAT_LLAMA2,
          "list form: first not used");
    /* JSON escapes are decoded before matching */
    CHECK(eng_chat_detect("{\"chat_template\": \"\\u003c|im_start|\\u003e\"}") == ENG_CHAT_CHATML,
          "escaped ChatML marker not recognised");
    CHECK(eng_chat_detect("{\"chat_template\": \"{{ messages }}\"}") == ENG_CHAT_PLAIN,
          "unknown template not plain");
    CHECK(eng_chat_detect("{\"chat_template\": 3}") == ENG_CHAT_PLAIN, "non-string not plain");
    CHECK(eng_chat_detect("{\"chat_template\": \"[INST]\"") == ENG_CHAT_PLAIN,
          "truncated JSON not plain");
    CHECK(eng_chat_detect("") == ENG_CHAT_PLAIN && eng_chat_detect(NULL) == ENG_CHAT_PLAIN,
          "empty / NULL not plain");

    const char *names[] = {"llama2", "chatml", "plain"};
    for (int i = 0; i < 3; i++) {
        eng_chat_template t = eng_chat_template_from_name(names[i]);
        CHECK(t != ENG_CHAT_UNKNOWN && strcmp(eng_chat_template_name(t), names[i]) == 0,
              "name round trip for %s", names[i]);
    }
    CHECK(eng_chat_template_from_name("Llama2") == ENG_CHAT_UNKNOWN &&
              eng_chat_template_from_name("") == ENG_CHAT_UNKNOWN &&
              eng_chat_template_from_name(NULL) == ENG_CHAT_UNKNOWN,
          "unknown names accepted");
    CHECK(strcmp(eng_chat_turn_end(ENG_CHAT_CHATML), "<|im_end|>") == 0 &&
              eng_chat_turn_end(ENG_CHAT_LLAMA2) == NULL &&
              strcmp(eng_chat_turn_end(ENG_CHAT_PLAIN), "\n\nUser:") == 0,
          "turn ends");
}

/* Prints every built-in conversation with its renderings as one JSON array:
 * [{"messages": [...], "llama2": [no_gen, gen], "chatml": [...], "plain": [...]}, ...]. */
static int dump_all(void)
{
    static const char *names[] = {"llama2", "chatml", "plain"};
    cJSON *arr = cJSON_CreateArray();
    for (int c = 0; c < N_DUMPS; c++) {
        cJSON *o = cJSON_CreateObject();
        cJSON *msgs = cJSON_AddArrayToObject(o, "messages");
        for (int i = 0; i < k_dumps[c].n; i++) {
            cJSON *m = cJSON_CreateObject();
            cJSON_AddStringToObject(m, "role", k_dumps[c].m[i].role);
            cJSON_AddStringToObject(m, "content", k_dumps[c].m[i].content);
            cJSON_AddItemToArray(msgs, m);
        }
        for (int t = 0; t < 3; t++) {
            cJSON *r = cJSON_AddArrayToObject(o, names[t]);
            for (int gen = 0; gen <= 1; gen++) {
                char out[4096];
                size_t len;
                eng_err err = {0};
                int rc = eng_chat_render(eng_chat_template_from_name(names[t]), k_dumps[c].m,
                                         k_dumps[c].n, gen, out, sizeof out, &len, &err);
                cJSON_AddItemToArray(r, rc ? cJSON_CreateNull() : cJSON_CreateString(out));
            }
        }
        cJSON_AddItemToArray(arr, o);
    }
    char *text = cJSON_PrintUnformatted(arr);
    fputs(text, stdout);
    cJSON_free(text);
    cJSON_Delete(arr);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--dump-all") == 0)
        return dump_all();
    check_exchange();
    check_errors();
    check_detect();
    if (g_fail) {
        fprintf(stderr, "%d checks failed\n", g_fail);
        return 1;
    }
    printf("ok\n");
    return 0;
}
