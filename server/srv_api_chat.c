/* srv_api_chat.c — POST /v1/chat/completions: validates messages (system/user/assistant, content
 * as a string or a list of {type:"text"} parts), renders them with the chat template chosen at
 * load (eng_chat: --chat-template, else detected from tokenizer_config.json), tokenizes, and
 * hands over to srv_gen. Loop thread only. Does not implement templates itself when eng_chat is
 * present. */
#include <stdlib.h>
#include <string.h>

#include "srv_gen.h"
#include "srv_log.h"

#if __has_include("eng_chat.h")
#include "eng_chat.h"
#define SRV_HAVE_ENG_CHAT 1
#else
#define SRV_HAVE_ENG_CHAT 0
#endif

/* Template ids kept in srv_server.chat_tmpl (0 = not chosen). */
enum { TMPL_NONE = 0, TMPL_PLAIN, TMPL_LLAMA2, TMPL_CHATML };

static const char *tmpl_name(int t)
{
    return t == TMPL_LLAMA2 ? "llama2" : t == TMPL_CHATML ? "chatml" : "plain";
}

static int tmpl_from_name(const char *n)
{
    if (strcmp(n, "llama2") == 0)
        return TMPL_LLAMA2;
    if (strcmp(n, "chatml") == 0)
        return TMPL_CHATML;
    return TMPL_PLAIN;
}

void srv_chat_setup(srv_server *s)
{
    int t = TMPL_PLAIN;
    const char *how = "default";
    if (s->cfg->chat_template[0]) {
        t = tmpl_from_name(s->cfg->chat_template);
        how = "--chat-template";
    } else if (s->model && s->model->tokenizer_config_json) {
        const char *j = s->model->tokenizer_config_json;
        if (strstr(j, "<|im_start|>"))
            t = TMPL_CHATML;
        else if (strstr(j, "[INST]"))
            t = TMPL_LLAMA2;
        how = "tokenizer_config.json";
    }
    s->chat_tmpl = t;
    srv_log("info", "chat template: %s (%s)", tmpl_name(t), how);
}

int srv_chat_stop_ids(srv_server *s, int32_t *out, int cap)
{
    int n = 0;
    if (s->chat_tmpl == TMPL_CHATML && cap > n) {
        int id = eng_tokenizer_find(s->tok, "<|im_end|>");
        if (id >= 0)
            out[n++] = id;
    }
    return n;
}

typedef struct chat_msg {
    const char *role;           /* borrowed from the request JSON */
    srv_buf content;            /* owned: the text parts joined */
} chat_msg;

/* Appends the rendering of msgs to out (text; special tokens as their literal text). */
static int chat_render(int tmpl, const chat_msg *m, int n, srv_buf *out)
{
    int rc = 0;
    if (tmpl == TMPL_CHATML) {
        for (int i = 0; i < n; i++)
            rc |= srv_buf_printf(out, "<|im_start|>%s\n%s<|im_end|>\n", m[i].role,
                                 m[i].content.p ? m[i].content.p : "");
        rc |= srv_buf_puts(out, "<|im_start|>assistant\n");
        return rc;
    }
    if (tmpl == TMPL_LLAMA2) {
        /* <s>[INST] <<SYS>>\nsys\n<</SYS>>\n\nuser [/INST] answer </s><s>[INST] ... [/INST] —
         * the first <s> comes from add_bos. */
        const char *sys = NULL;
        int first = 1;
        for (int i = 0; i < n; i++) {
            const char *c = m[i].content.p ? m[i].content.p : "";
            if (strcmp(m[i].role, "system") == 0) {
                sys = c;
            } else if (strcmp(m[i].role, "user") == 0) {
                if (!first)
                    rc |= srv_buf_puts(out, "<s>");
                if (sys)
                    rc |= srv_buf_printf(out, "[INST] <<SYS>>\n%s\n<</SYS>>\n\n%s [/INST]", sys, c);
                else
                    rc |= srv_buf_printf(out, "[INST] %s [/INST]", c);
                sys = NULL;
                first = 0;
            } else {
                rc |= srv_buf_printf(out, " %s </s>", c);
            }
        }
        return rc;
    }
    /* plain: the contents one after another, for base models that just continue text */
    for (int i = 0; i < n; i++) {
        if (i)
            rc |= srv_buf_puts(out, "\n");
        rc |= srv_buf_puts(out, m[i].content.p ? m[i].content.p : "");
    }
    return rc;
}

int srv_chat_prompt(srv_server *s, srv_resp *r, const cJSON *messages, int32_t **ids, int *n,
                    char **text, size_t *text_len)
{
    *ids = NULL;
    *n = 0;
    *text = NULL;
    *text_len = 0;
    if (!cJSON_IsArray(messages) || cJSON_GetArraySize(messages) == 0) {
        srv_resp_bad(r, "messages", "'messages' must be a non-empty list");
        return -1;
    }
    int cnt = cJSON_GetArraySize(messages);
    if (cnt > SRV_MAX_MESSAGES) {
        srv_resp_bad(r, "messages", "'messages' has %d entries; at most %d", cnt,
                     SRV_MAX_MESSAGES);
        return -1;
    }
    chat_msg *m = calloc((size_t)cnt, sizeof(*m));
    if (!m) {
        srv_resp_error(r, 503, "server_error", NULL, "out_of_memory", "out of memory");
        return -1;
    }
    int rc = -1, i = 0;
    size_t total = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, messages) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(e, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsObject(e) || !cJSON_IsString(role)) {
            srv_resp_bad(r, "messages", "messages[%d] must be an object with a string 'role'", i);
            goto out;
        }
        const char *rn = role->valuestring;
        if (strcmp(rn, "developer") == 0)
            rn = "system";
        if (strcmp(rn, "system") != 0 && strcmp(rn, "user") != 0 &&
            strcmp(rn, "assistant") != 0) {
            srv_resp_bad(r, "messages", "messages[%d].role '%.40s' is not system, user or "
                         "assistant", i, role->valuestring);
            goto out;
        }
        m[i].role = rn;
        if (cJSON_IsString(content)) {
            srv_buf_puts(&m[i].content, content->valuestring);
        } else if (cJSON_IsArray(content)) {
            const cJSON *part;
            cJSON_ArrayForEach(part, content) {
                const cJSON *ty = cJSON_GetObjectItemCaseSensitive(part, "type");
                const cJSON *tx = cJSON_GetObjectItemCaseSensitive(part, "text");
                if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "text") != 0 ||
                    !cJSON_IsString(tx)) {
                    srv_resp_bad(r, "messages", "messages[%d].content parts must be "
                                 "{\"type\":\"text\",\"text\":...} (only text is supported)", i);
                    goto out;
                }
                srv_buf_puts(&m[i].content, tx->valuestring);
            }
        } else if (!(cJSON_IsNull(content) && strcmp(rn, "assistant") == 0)) {
            srv_resp_bad(r, "messages", "messages[%d].content must be a string or a list of "
                         "text parts", i);
            goto out;
        }
        total += m[i].content.len;
        i++;
    }
    if (total > SRV_MAX_PROMPT_BYTES) {
        srv_resp_bad(r, "messages", "the messages hold %zu bytes; at most %d", total,
                     SRV_MAX_PROMPT_BYTES);
        goto out;
    }
    srv_buf prompt = {0};
    if (chat_render(s->chat_tmpl, m, cnt, &prompt) != 0) {
        srv_buf_free(&prompt);
        srv_resp_error(r, 503, "server_error", NULL, "out_of_memory", "out of memory");
        goto out;
    }
    int parse_special = s->chat_tmpl != TMPL_PLAIN;
    if (srv_encode(s, prompt.p ? prompt.p : "", prompt.len, 1, parse_special, ids, n) != 0) {
        srv_buf_free(&prompt);
        srv_resp_bad(r, "messages", "the rendered prompt could not be tokenized");
        goto out;
    }
    *text = srv_buf_take(&prompt, text_len);
    rc = 0;
out:
    for (int k = 0; k < cnt; k++)
        srv_buf_free(&m[k].content);
    free(m);
    return rc;
}

void srv_api_chat(srv_server *s, srv_resp *r, const cJSON *body)
{
    if (srv_api_check_model(s, r, body))
        return;
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(body, "messages");
    if (!msgs) {
        srv_resp_bad(r, "messages", "'messages' is required");
        return;
    }
    srv_gen_params p;
    if (srv_gen_parse_params(s, r, body, SRV_GEN_CHAT, &p) != 0) {
        srv_gen_params_free(&p);
        return;
    }
    srv_gen_prompt pr = {0};
    if (srv_chat_prompt(s, r, msgs, &pr.ids, &pr.n, &pr.text, &pr.text_len) != 0) {
        srv_gen_params_free(&p);
        return;
    }
    int32_t stop_ids[SRV_MAX_STOP_IDS];
    int n_stop = srv_chat_stop_ids(s, stop_ids, SRV_MAX_STOP_IDS);
    srv_gen_start(s, r, SRV_GEN_CHAT, &p, &pr, 1, stop_ids, n_stop);
    free(pr.ids);
    free(pr.text);
    srv_gen_params_free(&p);
}
