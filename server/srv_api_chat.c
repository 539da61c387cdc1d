/* srv_api_chat.c — POST /v1/chat/completions: validates messages (system/user/assistant/tool,
 * content as a string or a list of {type:"text"} parts, assistant tool_calls), renders them with the chat template chosen at
 * load (eng_chat: --chat-template name or Jinja FILE, else the model's own Jinja chat_template
 * from tokenizer_config.json, else a layout detected from it), tokenizes with message contents
 * kept plain, and hands over to srv_gen. Tool turns go to a template that has a tool format as
 * they are, else in the generic form (srv_api_tools.c). A template error (raise_exception
 * included) is a 400.
 * Loop thread only. Does not implement templates (eng_chat / eng_jinja do). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srv_api.h"
#include "srv_limits.h"
#include "srv_log.h"

#include "eng_chat.h"
#include "eng_file.h"
#include "eng_jinja.h"

static int is_layout_name(const char *v)
{
    return eng_chat_template_from_name(v) != ENG_CHAT_UNKNOWN;
}

int srv_chat_load_file(srv_server *s, char *err, size_t cap)
{
    const char *path = s->cfg->chat_template;
    if (!path[0] || is_layout_name(path))
        return 0;
    eng_err oe = {0};
    FILE *f = eng_file_fopen(path, &oe);
    if (!f) {
        snprintf(err, cap, "--chat-template: %s", oe.msg);
        return -1;
    }
    size_t cap_src = (size_t)ENG_JINJA_MAX_SOURCE + 1, n = 0;
    char *src = malloc(cap_src);
    if (src)
        n = fread(src, 1, cap_src, f);
    int rd_err = ferror(f);
    fclose(f);
    if (!src || rd_err) {
        free(src);
        snprintf(err, cap, "--chat-template %.900s: %s", path, src ? "read error" : "out of memory");
        return -1;
    }
    eng_err e = {0};
    eng_chat_tmpl *t = NULL;
    int rc = eng_chat_tmpl_compile(src, n, &t, &e);
    free(src);
    if (rc) {
        snprintf(err, cap, "--chat-template %.500s: %s", path, e.msg);
        return -1;
    }
    s->chat_jinja = t;
    s->chat_from_file = 1;
    return 0;
}

void srv_chat_free(srv_server *s)
{
    eng_chat_tmpl_free(s->chat_jinja);
    s->chat_jinja = NULL;
    free(s->chat_bos);
    free(s->chat_eos);
    s->chat_bos = s->chat_eos = NULL;
}

/* bos_token / eos_token for a Jinja template: tokenizer_config.json's (as HF's
 * special_tokens_map), else the tokenizer's own pieces. */
static char *special_text(srv_server *s, const char *key, int id)
{
    char *v = eng_chat_config_token(s->model ? s->model->tokenizer_config_json : NULL, key);
    if (v || id < 0 || !s->tok)
        return v;
    const char *p = eng_tokenizer_piece(s->tok, id);
    if (!p)
        return NULL;
    size_t n = strlen(p);
    v = malloc(n + 1);
    if (v)
        memcpy(v, p, n + 1);
    return v;
}

void srv_chat_setup(srv_server *s)
{
    const char *cfg = s->cfg->chat_template;
    const char *tc = s->model ? s->model->tokenizer_config_json : NULL;
    eng_chat_template t = ENG_CHAT_PLAIN;
    char how[160];
    if (!s->chat_from_file && cfg[0]) {
        t = eng_chat_template_from_name(cfg);
        snprintf(how, sizeof(how), "--chat-template");
    } else if (!s->chat_from_file) {
        char *src = eng_chat_template_source(tc);
        if (src) {
            eng_err e = {0};
            if (eng_chat_tmpl_compile(src, strlen(src), &s->chat_jinja, &e) != 0)
                srv_log("warn", "the model's chat_template does not compile (%s); falling back "
                        "to a hand-written layout", e.msg);
            free(src);
        }
        if (!s->chat_jinja)
            t = eng_chat_detect(tc);
        snprintf(how, sizeof(how), "%s", tc ? "tokenizer_config.json" : "no tokenizer_config.json");
    }
    s->chat_tmpl = (int)t;
    if (s->chat_jinja) {
        free(s->chat_bos);
        free(s->chat_eos);
        s->chat_bos = special_text(s, "bos_token", s->tok ? eng_tokenizer_bos(s->tok) : -1);
        s->chat_eos = special_text(s, "eos_token", s->tok ? eng_tokenizer_eos(s->tok) : -1);
        srv_log("info", "chat template: jinja (%s; bos_token '%.40s', eos_token '%.40s')",
                s->chat_from_file ? cfg : "the model's chat_template in tokenizer_config.json",
                s->chat_bos ? s->chat_bos : "", s->chat_eos ? s->chat_eos : "");
        return;
    }
    srv_log("info", "chat template: %s (%s)", eng_chat_template_name(t), how);
}

/* End-of-turn markup a Jinja template writes, most specific first; the token text also ends
 * an answer written as plain text. */
static const char *const k_turn_ends[] = {"<|im_end|>", "<|eot_id|>", "<|end|>",
                                          "<end_of_turn>"};

const char *srv_chat_turn_end(srv_server *s)
{
    if (!s->chat_jinja)
        return eng_chat_turn_end((eng_chat_template)s->chat_tmpl);
    for (size_t i = 0; i < sizeof(k_turn_ends) / sizeof(k_turn_ends[0]); i++)
        if (eng_chat_tmpl_has(s->chat_jinja, k_turn_ends[i]))
            return k_turn_ends[i];
    return NULL;
}

int srv_chat_stop_ids(srv_server *s, int32_t *out, int cap)
{
    int n = 0;
    if (s->chat_jinja) {
        /* every end-of-turn token the template writes and the tokenizer knows */
        for (size_t i = 0; i < sizeof(k_turn_ends) / sizeof(k_turn_ends[0]) && n < cap; i++) {
            if (!eng_chat_tmpl_has(s->chat_jinja, k_turn_ends[i]))
                continue;
            int id = eng_tokenizer_find(s->tok, k_turn_ends[i]);
            if (id >= 0)
                out[n++] = id;
        }
        return n;
    }
    const char *end = eng_chat_turn_end((eng_chat_template)s->chat_tmpl);
    if (end && cap > n) {
        int id = eng_tokenizer_find(s->tok, end);   /* "<|im_end|>" is one token in Yi/ChatML */
        if (id >= 0)
            out[n++] = id;
    }
    return n;
}

typedef struct chat_msg {
    const char *role;           /* borrowed from the request JSON, or static */
    srv_buf content;            /* owned: the text parts joined */
    int null_content;           /* an assistant turn of tool calls only: content is null */
    const cJSON *tool_calls;    /* assistant: borrowed from the request, or NULL */
    const char *tool_call_id;   /* tool: borrowed, or NULL */
    int tool_result;            /* generic form: a user turn made from tool results */
} chat_msg;

/* messages[i].content: a string or a list of text parts, appended to out. 0, or -1 with a 400. */
static int read_content(srv_resp *r, const cJSON *content, int i, srv_buf *out)
{
    if (cJSON_IsString(content)) {
        srv_buf_puts(out, content->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(content)) {
        srv_resp_bad(r, "messages", "messages[%d].content must be a string or a list of text "
                     "parts", i);
        return -1;
    }
    const cJSON *part;
    int k = 0;
    cJSON_ArrayForEach(part, content) {
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *tx = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "text") != 0 || !cJSON_IsString(tx)) {
            srv_resp_bad(r, "messages", "messages[%d].content parts must be "
                         "{\"type\":\"text\",\"text\":...} (only text is supported)", i);
            return -1;
        }
        if (k++ > 0)
            srv_buf_puts(out, "\n");   /* as vLLM: parts never run into one word */
        srv_buf_puts(out, tx->valuestring);
    }
    return 0;
}

/* An assistant's tool_calls: [{"id", "type": "function", "function": {"name", "arguments"}}]. */
static int tool_calls_ok(srv_resp *r, const cJSON *tc, int i)
{
    int n = cJSON_IsArray(tc) ? cJSON_GetArraySize(tc) : -1;
    if (n < 1 || n > 64) {
        srv_resp_bad(r, "messages", "messages[%d].tool_calls must be a list of 1 to 64 calls", i);
        return -1;
    }
    const cJSON *c;
    cJSON_ArrayForEach(c, tc) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(c, "type");
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(c, "id")) ||
            (ty && !(cJSON_IsString(ty) && strcmp(ty->valuestring, "function") == 0)) ||
            !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(fn, "name")) ||
            !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(fn, "arguments"))) {
            srv_resp_bad(r, "messages", "messages[%d].tool_calls entries must be {\"id\": "
                         "string, \"type\": \"function\", \"function\": {\"name\": string, "
                         "\"arguments\": string}}", i);
            return -1;
        }
    }
    return 0;
}

/* The function an earlier assistant turn called with this id, or NULL. */
static const char *called_name(const cJSON *messages, int upto, const char *id)
{
    int i = 0;
    const cJSON *e, *c;
    cJSON_ArrayForEach(e, messages) {
        if (i++ >= upto)
            break;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(e, "tool_calls")) {
            const cJSON *cid = cJSON_GetObjectItemCaseSensitive(c, "id");
            const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(fn, "name");
            if (cJSON_IsString(cid) && strcmp(cid->valuestring, id) == 0 && cJSON_IsString(nm))
                return nm->valuestring;
        }
    }
    return NULL;
}

/* Reads messages[] into m (room for one more at the front, for a generic tool list), writing
 * tool turns in the generic form unless the template has its own. *cnt_out messages. */
static int read_messages(srv_resp *r, const cJSON *messages, const srv_tools *tools,
                         chat_msg *m, int *cnt_out)
{
    int i = 0, n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, messages) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(e, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsObject(e) || !cJSON_IsString(role)) {
            srv_resp_bad(r, "messages", "messages[%d] must be an object with a string 'role'", i);
            return -1;
        }
        const char *rn = role->valuestring;
        if (strcmp(rn, "developer") == 0)
            rn = "system";
        if (strcmp(rn, "system") != 0 && strcmp(rn, "user") != 0 &&
            strcmp(rn, "assistant") != 0 && strcmp(rn, "tool") != 0) {
            srv_resp_bad(r, "messages", "messages[%d].role '%.40s' is not system, user, "
                         "assistant or tool", i, role->valuestring);
            return -1;
        }
        chat_msg *cm = &m[n];
        cm->role = rn;
        const cJSON *tc = cJSON_GetObjectItemCaseSensitive(e, "tool_calls");
        if (strcmp(rn, "assistant") == 0 && tc && !cJSON_IsNull(tc)) {
            if (tool_calls_ok(r, tc, i) != 0)
                return -1;
            cm->tool_calls = tc;
        }
        if (strcmp(rn, "tool") == 0) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "tool_call_id");
            if (!cJSON_IsString(id)) {
                srv_resp_bad(r, "messages", "messages[%d] (role tool) needs a string "
                             "'tool_call_id'", i);
                return -1;
            }
            cm->tool_call_id = id->valuestring;
        }
        if (cm->tool_calls && (!content || cJSON_IsNull(content)))
            cm->null_content = 1;
        else if (!(cJSON_IsNull(content) && strcmp(rn, "assistant") == 0) &&
                 read_content(r, content, i, &cm->content) != 0)
            return -1;
        if (!tools->native && cm->tool_calls) {
            /* generic form: the calls as the model writes them, after any text */
            if (cm->content.len)
                srv_buf_puts(&cm->content, "\n");
            srv_tools_calls_text(cm->tool_calls, tools->args_key, &cm->content);
            cm->tool_calls = NULL;
            cm->null_content = 0;
        }
        if (!tools->native && cm->tool_call_id) {
            /* generic form: results come back as a user turn (consecutive ones merged) */
            const char *fn = called_name(messages, i, cm->tool_call_id);
            srv_buf txt = {0};
            srv_buf_printf(&txt, "Result of %s (call %s): ", fn ? fn : "a function",
                           cm->tool_call_id);
            srv_buf_append(&txt, cm->content.p ? cm->content.p : "", cm->content.len);
            srv_buf_free(&cm->content);
            cm->tool_call_id = NULL;
            if (n > 0 && m[n - 1].tool_result) {
                srv_buf_puts(&m[n - 1].content, "\n");
                srv_buf_append(&m[n - 1].content, txt.p ? txt.p : "", txt.len);
                srv_buf_free(&txt);
                memset(cm, 0, sizeof(*cm));
                i++;
                continue;
            }
            cm->content = txt;
            cm->role = "user";
            cm->tool_result = 1;
        }
        i++;
        n++;
    }
    /* generic form: the functions and the call format, in the system turn */
    if (!tools->native && tools->choice != SRV_TOOL_NONE) {
        if (n == 0 || strcmp(m[0].role, "system") != 0) {
            memmove(m + 1, m, (size_t)n * sizeof(*m));
            memset(&m[0], 0, sizeof(m[0]));
            m[0].role = "system";
            n++;
        } else {
            srv_buf_puts(&m[0].content, "\n\n");
        }
        srv_tools_system_text(tools, &m[0].content);
    }
    *cnt_out = n;
    return 0;
}

int srv_chat_prompt(srv_server *s, srv_resp *r, const cJSON *messages, const srv_tools *tools,
                    char **text, size_t *text_len, size_t *enc_from, size_t **plain,
                    int *n_plain)
{
    *text = NULL;
    *text_len = 0;
    *enc_from = 0;
    *plain = NULL;
    *n_plain = 0;
    static const srv_tools no_tools = {0};
    if (!tools)
        tools = &no_tools;
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
    chat_msg *m = calloc((size_t)cnt + 1, sizeof(*m));
    if (!m) {
        srv_resp_error(r, 503, "server_error", NULL, "out_of_memory", "out of memory");
        return -1;
    }
    int rc = -1, n_read = cnt + 1;
    if (read_messages(r, messages, tools, m, &cnt) != 0)
        goto out;
    size_t total = 0;
    for (int k = 0; k < cnt; k++)
        total += m[k].content.len;
    if (total > SRV_MAX_PROMPT_BYTES) {
        srv_resp_bad(r, "messages", "the messages hold %zu bytes; at most %d", total,
                     SRV_MAX_PROMPT_BYTES);
        goto out;
    }
    eng_chat_msg *em = calloc((size_t)n_read, sizeof(*em));   /* cnt <= n_read */
    if (!em) {
        srv_resp_error(r, 503, "server_error", NULL, "out_of_memory", "out of memory");
        goto out;
    }
    for (int k = 0; k < cnt; k++) {
        em[k].role = m[k].role;
        em[k].content = m[k].null_content ? NULL : m[k].content.p ? m[k].content.p : "";
        em[k].tool_calls = m[k].tool_calls;
        em[k].tool_call_id = m[k].tool_call_id;
    }
    eng_err err = {0};
    srv_buf prompt = {0};
    size_t *spans = NULL;
    int n_spans = 0, erc;
    if (s->chat_jinja) {
        eng_chat_tmpl_args ta = {.add_generation_prompt = 1, .bos_token = s->chat_bos,
                                 .eos_token = s->chat_eos,
                                 .tools = tools->native && tools->choice != SRV_TOOL_NONE
                                              ? tools->list : NULL};
        erc = eng_chat_tmpl_render(s->chat_jinja, em, cnt, &ta, &prompt.p, &prompt.len, &spans,
                                   &n_spans, &err);
        prompt.cap = prompt.p ? prompt.len + 1 : 0;
    } else {
        eng_chat_template t = (eng_chat_template)s->chat_tmpl;
        size_t need = 0;
        erc = eng_chat_render(t, em, cnt, 1, NULL, 0, &need, &err);
        spans = malloc(2 * (size_t)cnt * sizeof(*spans));
        if (!spans)
            erc = ENG_E_NOMEM;
        if (erc == ENG_E_FULL || erc == 0) {
            prompt.p = malloc(need + 1);
            prompt.cap = need + 1;
            erc = prompt.p ? eng_chat_render_spans(t, em, cnt, 1, prompt.p, need + 1,
                                                   &prompt.len, spans, &n_spans, &err)
                           : ENG_E_NOMEM;
        }
    }
    free(em);
    if (erc != 0) {
        free(spans);
        srv_buf_free(&prompt);
        if (erc == ENG_E_NOMEM)
            srv_resp_error(r, 503, "server_error", NULL, "out_of_memory", "out of memory");
        else
            srv_resp_bad(r, "messages", "%s", err.msg[0] ? err.msg : eng_strerror(erc));
        goto out;
    }
    /* The template writes BOS as text ("<s>", "<|begin_of_text|>"); a llama2.c tokenizer
     * spells BOS differently, so take it off and let the encoder add the real BOS id. */
    const char *bos = s->chat_jinja ? s->chat_bos : "<s>";
    size_t bl = bos ? strlen(bos) : 0;
    *enc_from = bl > 0 && prompt.len >= bl && memcmp(prompt.p, bos, bl) == 0 ? bl : 0;
    if (*enc_from && n_spans > 0 && spans[0] < bl)
        *enc_from = 0;   /* those bytes are a message's text (a user typing "<s>"): plain */
    if (srv_prompt_bytes_ok(s, r, prompt.len - *enc_from, 0, "messages") != 0) {
        free(spans);
        srv_buf_free(&prompt);
        goto out;
    }
    /* content ranges, counted from where tokenizing starts (clipped at it) */
    for (int k = 0; k < 2 * n_spans; k++)
        spans[k] = spans[k] > *enc_from ? spans[k] - *enc_from : 0;
    *plain = spans;
    *n_plain = n_spans;
    *text = srv_buf_take(&prompt, text_len);
    rc = 0;
out:
    for (int k = 0; k < n_read; k++)
        srv_buf_free(&m[k].content);
    free(m);
    return rc;
}
int srv_chat_adds_bos(const srv_server *s, size_t enc_from)
{
    return !s->chat_jinja || enc_from > 0;
}

void srv_api_chat(srv_server *s, srv_resp *r, const cJSON *body)
{
    if (srv_api_check_model(s, r, body))
        return;
    srv_tools tools;
    if (srv_tools_parse(s, r, body, &tools) != 0)
        return;
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(body, "messages");
    if (!msgs) {
        srv_resp_bad(r, "messages", "'messages' is required");
        return;
    }
    srv_gen_params p;
    if (srv_gen_parse_params(s, r, body, SRV_GEN_CHAT, &p) != 0 ||
        srv_tools_grammar(r, &tools, &p) != 0) {
        srv_gen_params_free(&p);
        return;
    }
    srv_gen_prompt *pr = calloc(1, sizeof(*pr));
    if (!pr) {
        srv_resp_error(r, 503, "server_error", NULL, "out_of_memory", "out of memory");
        srv_gen_params_free(&p);
        return;
    }
    if (srv_chat_prompt(s, r, msgs, &tools, &pr->text, &pr->text_len, &pr->enc_from, &pr->plain,
                        &pr->n_plain) != 0) {
        free(pr);
        srv_gen_params_free(&p);
        return;
    }
    pr->enc_special = 1;   /* the template's markers (<|im_start|>) are special tokens */
    pr->no_bos = !srv_chat_adds_bos(s, pr->enc_from);
    int32_t stop_ids[SRV_MAX_STOP_IDS];
    int n_stop = srv_chat_stop_ids(s, stop_ids, SRV_MAX_STOP_IDS);
    /* the template's end-of-turn text also ends the answer when written as plain text */
    const char *turn_end = srv_chat_turn_end(s);
    _Static_assert(SRV_MAX_STOPS < ENG_MAX_STOPS, "room for the end-of-turn stop");
    if (turn_end && p.n_stops < ENG_MAX_STOPS)
        p.stops[p.n_stops++] = turn_end;
    srv_gen_submit(s, r, SRV_GEN_CHAT, &p, pr, 1, stop_ids, n_stop);
}
