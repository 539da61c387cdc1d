/* eng_chat.c — chat templates (eng_chat.h): renders message lists with the model's Jinja
 * template (through eng_jinja) or, for models without one, as Llama-2 chat, ChatML or plain
 * text (written out by hand, matching HF's templates byte for byte); reads chat_template and
 * special tokens from tokenizer_config.json. Produces text only; does not tokenize. No state;
 * any thread. */
#include "eng_chat.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "eng_jinja.h"

/* Output cursor over the caller's buffer: counts every byte, writes only what fits with room
 * for the NUL, so one pass both renders and measures. */
typedef struct chat_out {
    char *buf;      /* borrowed from the caller; may be NULL when cap is 0 */
    size_t cap;
    size_t len;     /* bytes produced so far, written or not */
    size_t *spans;  /* borrowed: [begin, end) of each content written, or NULL */
    int n_spans;
} chat_out;

static void put_n(chat_out *o, const char *s, size_t n)
{
    if (o->buf && o->len + n < o->cap)
        memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void put(chat_out *o, const char *s)
{
    put_n(o, s, strlen(s));
}

/* Message content: written like put_n, and its range recorded (empty ones are not). */
static void put_content(chat_out *o, const char *s, size_t n)
{
    if (o->spans && n > 0) {
        o->spans[2 * o->n_spans] = o->len;
        o->spans[2 * o->n_spans + 1] = o->len + n;
        o->n_spans++;
    }
    put_n(o, s, n);
}

/* ---- Python str.strip() ------------------------------------------------------------------
 * Jinja's .strip() is Python's: it removes Unicode whitespace, which in UTF-8 is the ASCII set
 * below plus U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000. */

static int ascii_ws(unsigned char c)
{
    return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
}

/* Is the 2- or 3-byte UTF-8 sequence at p (length n) a Unicode whitespace code point? */
static int utf8_ws(const unsigned char *p, size_t n)
{
    if (n == 2 && p[0] == 0xc2)
        return p[1] == 0x85 || p[1] == 0xa0;
    if (n != 3)
        return 0;
    if (p[0] == 0xe1)
        return p[1] == 0x9a && p[2] == 0x80;
    if (p[0] == 0xe2 && p[1] == 0x80)
        return (p[2] >= 0x80 && p[2] <= 0x8a) || p[2] == 0xa8 || p[2] == 0xa9 || p[2] == 0xaf;
    if (p[0] == 0xe2 && p[1] == 0x81)
        return p[2] == 0x9f;
    if (p[0] == 0xe3)
        return p[1] == 0x80 && p[2] == 0x80;
    return 0;
}

/* Byte length of a whitespace character starting at s[0], or 0. */
static size_t ws_at_start(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    if (n >= 1 && ascii_ws(p[0]))
        return 1;
    if (n >= 2 && utf8_ws(p, 2))
        return 2;
    if (n >= 3 && utf8_ws(p, 3))
        return 3;
    return 0;
}

/* Byte length of a whitespace character ending at s[n-1], or 0. */
static size_t ws_at_end(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    if (n >= 1 && ascii_ws(p[n - 1]))
        return 1;
    if (n >= 2 && utf8_ws(p + n - 2, 2))
        return 2;
    if (n >= 3 && utf8_ws(p + n - 3, 3))
        return 3;
    return 0;
}

/* Narrows [*s, *s + *n) to its stripped form. */
static void strip(const char **s, size_t *n)
{
    size_t k;
    while (*n > 0 && (k = ws_at_start(*s, *n)) > 0) {
        *s += k;
        *n -= k;
    }
    while (*n > 0 && (k = ws_at_end(*s, *n)) > 0)
        *n -= k;
}

/* ---- templates ---------------------------------------------------------------------------- */

static int role_is(const eng_chat_msg *m, const char *role)
{
    return strcmp(m->role, role) == 0;
}

/* HF meta-llama/Llama-2-*-chat-hf chat_template, equivalent to Meta's chat_completion():
 *   [<s>[INST] {(<<SYS>>\n{system}\n<</SYS>>\n\n)?user}.strip() [/INST]
 *    ( {assistant.strip()} </s>)?]*
 * The system block is glued to the first user message before .strip(), so only that combined
 * string's ends are stripped (an all-blank first user message strips the "\n\n" after <</SYS>>
 * as well). */
static int render_llama2(const eng_chat_msg *msgs, int n, chat_out *o, eng_err *err)
{
    int first = 0;
    const char *sys = NULL;
    if (role_is(&msgs[0], "system")) {
        sys = msgs[0].content;
        first = 1;
        if (n == 1)
            return eng_err_set(err, ENG_E_INVAL,
                               "chat: llama2: the system message needs a user message after it");
    }
    for (int i = first; i < n; i++) {
        const char *want = (i - first) % 2 == 0 ? "user" : "assistant";
        if (!role_is(&msgs[i], want))
            return eng_err_set(err, ENG_E_INVAL,
                               "chat: llama2: messages[%d].role is '%.32s', expected '%s' "
                               "(an optional system message, then user/assistant alternating)",
                               i, msgs[i].role, want);
        const char *c = msgs[i].content;
        size_t cn = strlen(c);
        if (want[0] == 'u') {
            put(o, "<s>[INST] ");
            if (i == first && sys) {
                put(o, "<<SYS>>\n");
                put_content(o, sys, strlen(sys));
                /* strip the combined string: leading side starts with "<<SYS>>" */
                while (cn > 0) {
                    size_t k = ws_at_end(c, cn);
                    if (!k)
                        break;
                    cn -= k;
                }
                if (cn > 0) {
                    put(o, "\n<</SYS>>\n\n");
                    put_content(o, c, cn);
                } else {
                    put(o, "\n<</SYS>>");
                }
            } else {
                strip(&c, &cn);
                put_content(o, c, cn);
            }
            put(o, " [/INST]");
        } else {
            strip(&c, &cn);
            put(o, " ");
            put_content(o, c, cn);
            put(o, " </s>");
        }
    }
    return 0;
}

static int render_chatml(const eng_chat_msg *msgs, int n, int add_gen, chat_out *o)
{
    for (int i = 0; i < n; i++) {
        put(o, "<|im_start|>");
        put(o, msgs[i].role);
        put(o, "\n");
        put_content(o, msgs[i].content, strlen(msgs[i].content));
        put(o, "<|im_end|>\n");
    }
    if (add_gen)
        put(o, "<|im_start|>assistant\n");
    return 0;
}

/* Ours: "Role: content" blocks joined by blank lines, content stripped so that the model sees
 * exactly one space after the colon. */
static int render_plain(const eng_chat_msg *msgs, int n, int add_gen, chat_out *o)
{
    for (int i = 0; i < n; i++) {
        if (i > 0)
            put(o, "\n\n");
        put(o, role_is(&msgs[i], "system") ? "System: "
               : role_is(&msgs[i], "user") ? "User: " : "Assistant: ");
        const char *c = msgs[i].content;
        size_t cn = strlen(c);
        strip(&c, &cn);
        put_content(o, c, cn);
    }
    if (add_gen)
        put(o, n > 0 ? "\n\nAssistant:" : "Assistant:");
    return 0;
}

int eng_chat_render(eng_chat_template t, const eng_chat_msg *msgs, int n,
                    int add_generation_prompt, char *out, size_t cap, size_t *len, eng_err *err)
{
    return eng_chat_render_spans(t, msgs, n, add_generation_prompt, out, cap, len, NULL, NULL,
                                 err);
}

int eng_chat_render_spans(eng_chat_template t, const eng_chat_msg *msgs, int n,
                          int add_generation_prompt, char *out, size_t cap, size_t *len,
                          size_t *spans, int *n_spans, eng_err *err)
{
    if (n_spans)
        *n_spans = 0;
    if (len)
        *len = 0;
    if (out && cap > 0)
        out[0] = '\0';
    if (!len)
        return eng_err_set(err, ENG_E_INVAL, "chat: len is NULL");
    if (n < 1 || !msgs)
        return eng_err_set(err, ENG_E_INVAL, "chat: messages must hold at least one message");
    for (int i = 0; i < n; i++) {
        if (!msgs[i].role)
            return eng_err_set(err, ENG_E_INVAL, "chat: messages[%d].role is missing", i);
        if (msgs[i].tool_calls)
            return eng_err_set(err, ENG_E_INVAL, "chat: messages[%d] has tool_calls, which the "
                               "%s layout cannot write", i, eng_chat_template_name(t));
        if (!msgs[i].content)
            return eng_err_set(err, ENG_E_INVAL, "chat: messages[%d].content is missing", i);
        if (!role_is(&msgs[i], "system") && !role_is(&msgs[i], "user") &&
            !role_is(&msgs[i], "assistant"))
            return eng_err_set(err, ENG_E_INVAL,
                               "chat: messages[%d].role '%.32s' is not system, user or assistant",
                               i, msgs[i].role);
    }
    chat_out o = {cap > 0 ? out : NULL, cap, 0, n_spans ? spans : NULL, 0};
    int rc;
    switch (t) {
    case ENG_CHAT_LLAMA2:
        rc = render_llama2(msgs, n, &o, err);
        break;
    case ENG_CHAT_CHATML:
        rc = render_chatml(msgs, n, add_generation_prompt, &o);
        break;
    case ENG_CHAT_PLAIN:
        rc = render_plain(msgs, n, add_generation_prompt, &o);
        break;
    default:
        return eng_err_set(err, ENG_E_INVAL, "chat: unknown template %d", (int)t);
    }
    if (rc)
        return rc;
    *len = o.len;
    if (n_spans)
        *n_spans = o.n_spans;
    if (!o.buf || o.len >= cap) {
        if (out && cap > 0)
            out[0] = '\0';
        return eng_err_set(err, ENG_E_FULL, "chat: prompt needs %zu bytes, buffer holds %zu",
                           o.len + 1, cap);
    }
    o.buf[o.len] = '\0';
    return 0;
}

/* ---- selection ---------------------------------------------------------------------------- */

static eng_chat_template classify(const char *tmpl)
{
    if (!tmpl)
        return ENG_CHAT_PLAIN;
    if (strstr(tmpl, "[INST]"))
        return ENG_CHAT_LLAMA2;
    if (strstr(tmpl, "<|im_start|>"))
        return ENG_CHAT_CHATML;
    return ENG_CHAT_PLAIN;
}

/* The template a tokenizer_config.json names: its "chat_template" string, or from a list of
 * {"name", "template"} the one named "default", else the first; NULL when none. */
static const cJSON *chosen_template(const cJSON *root)
{
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
    if (cJSON_IsString(ct))
        return ct;
    if (!cJSON_IsArray(ct))
        return NULL;
    /* [{"name": "default", "template": "..."}, {"name": "tool_use", ...}] */
    const cJSON *chosen = NULL, *item;
    cJSON_ArrayForEach(item, ct) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(item, "name");
        const cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(item, "template");
        if (!cJSON_IsString(tmpl))
            continue;
        if (!chosen)
            chosen = tmpl;
        if (cJSON_IsString(name) && strcmp(name->valuestring, "default") == 0)
            return tmpl;
    }
    return chosen;
}

eng_chat_template eng_chat_detect(const char *tokenizer_config_json)
{
    if (!tokenizer_config_json)
        return ENG_CHAT_PLAIN;
    cJSON *root = cJSON_Parse(tokenizer_config_json);
    if (!root)
        return ENG_CHAT_PLAIN;
    const cJSON *ct = chosen_template(root);
    eng_chat_template t = classify(ct ? ct->valuestring : NULL);
    cJSON_Delete(root);
    return t;
}

eng_chat_template eng_chat_template_from_name(const char *name)
{
    if (!name)
        return ENG_CHAT_UNKNOWN;
    if (strcmp(name, "llama2") == 0)
        return ENG_CHAT_LLAMA2;
    if (strcmp(name, "chatml") == 0)
        return ENG_CHAT_CHATML;
    if (strcmp(name, "plain") == 0)
        return ENG_CHAT_PLAIN;
    return ENG_CHAT_UNKNOWN;
}

const char *eng_chat_template_name(eng_chat_template t)
{
    switch (t) {
    case ENG_CHAT_LLAMA2: return "llama2";
    case ENG_CHAT_CHATML: return "chatml";
    case ENG_CHAT_PLAIN: return "plain";
    default: return "unknown";
    }
}

const char *eng_chat_turn_end(eng_chat_template t)
{
    switch (t) {
    case ENG_CHAT_CHATML: return "<|im_end|>";
    case ENG_CHAT_PLAIN: return "\n\nUser:";
    default: return NULL;
    }
}

/* ---- Jinja templates ---------------------------------------------------------------------- */

int eng_chat_tmpl_compile(const char *src, size_t len, eng_chat_tmpl **out, eng_err *err)
{
    eng_err e = {0};
    int rc = eng_jinja_compile(src, len, out, &e);
    if (rc)
        return eng_err_set(err, rc, "chat template: %s", e.msg);
    return 0;
}

void eng_chat_tmpl_free(eng_chat_tmpl *t)
{
    eng_jinja_free(t);
}

int eng_chat_tmpl_has(const eng_chat_tmpl *t, const char *s)
{
    return eng_jinja_source_has(t, s);
}

/* One message as the template sees it (see eng_chat_tmpl_render); NULL when out of memory. */
static cJSON *message_json(const eng_chat_msg *msg)
{
    cJSON *m = cJSON_CreateObject();
    int ok = m && cJSON_AddStringToObject(m, "role", msg->role);
    if (ok && msg->content)
        ok = cJSON_AddStringToObject(m, "content", msg->content) != NULL;
    else if (ok)
        ok = cJSON_AddNullToObject(m, "content") != NULL;
    if (ok && msg->tool_calls) {
        cJSON *calls = cJSON_Duplicate(msg->tool_calls, 1), *c;
        ok = calls != NULL;
        if (ok)
            cJSON_AddItemToObject(m, "tool_calls", calls);
        cJSON_ArrayForEach(c, calls) {
            cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
            cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
            cJSON *v = cJSON_IsString(args) ? cJSON_Parse(args->valuestring) : NULL;
            if (v)
                cJSON_ReplaceItemInObjectCaseSensitive(fn, "arguments", v);
        }
    }
    if (ok && msg->tool_call_id)
        ok = cJSON_AddStringToObject(m, "tool_call_id", msg->tool_call_id) != NULL;
    if (ok && msg->name)
        ok = cJSON_AddStringToObject(m, "name", msg->name) != NULL;
    if (!ok) {
        cJSON_Delete(m);
        return NULL;
    }
    return m;
}

int eng_chat_tmpl_render(const eng_chat_tmpl *t, const eng_chat_msg *msgs, int n,
                         const eng_chat_tmpl_args *a, char **out, size_t *len, size_t **spans,
                         int *n_spans, eng_err *err)
{
    *out = NULL;
    *len = 0;
    *spans = NULL;
    *n_spans = 0;
    if (!t || (n > 0 && !msgs) || n < 0)
        return eng_err_set(err, ENG_E_INVAL, "chat template: no template or messages");
    for (int i = 0; i < n; i++)
        if (!msgs[i].role || (!msgs[i].content && !msgs[i].tool_calls))
            return eng_err_set(err, ENG_E_INVAL, "chat: messages[%d].%s is missing", i,
                               msgs[i].role ? "content" : "role");
    cJSON *vars = cJSON_CreateObject(), *list = cJSON_CreateArray();
    int ok = vars && list;
    if (ok)
        cJSON_AddItemToObject(vars, "messages", list);
    else
        cJSON_Delete(list);
    for (int i = 0; ok && i < n; i++) {
        cJSON *m = message_json(&msgs[i]);
        ok = m != NULL;
        if (m)
            cJSON_AddItemToArray(list, m);
    }
    cJSON *tools = a && a->tools ? cJSON_Duplicate(a->tools, 1) : cJSON_CreateNull();
    ok = ok && tools;
    if (ok)
        cJSON_AddItemToObject(vars, "tools", tools);
    else
        cJSON_Delete(tools);
    ok = ok && cJSON_AddNullToObject(vars, "documents") &&
         cJSON_AddBoolToObject(vars, "add_generation_prompt", a && a->add_generation_prompt);
    if (ok && a && a->bos_token)
        ok = cJSON_AddStringToObject(vars, "bos_token", a->bos_token) != NULL;
    if (ok && a && a->eos_token)
        ok = cJSON_AddStringToObject(vars, "eos_token", a->eos_token) != NULL;
    if (!ok) {
        cJSON_Delete(vars);
        return eng_err_set(err, ENG_E_NOMEM, "chat template: out of memory");
    }
    static const char *const user_vars[] = {"messages", "tools", NULL};
    eng_jinja_opts o = {.tainted_vars = user_vars, .now = a ? a->now : 0};
    eng_err e = {0};
    int rc = eng_jinja_render(t, vars, &o, out, len, spans, n_spans, &e);
    cJSON_Delete(vars);
    if (rc)
        return eng_err_set(err, rc, "chat template: %s", e.msg);
    return 0;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d)
        memcpy(d, s, n + 1);
    return d;
}

char *eng_chat_template_source(const char *tokenizer_config_json)
{
    if (!tokenizer_config_json)
        return NULL;
    cJSON *root = cJSON_Parse(tokenizer_config_json);
    const cJSON *t = root ? chosen_template(root) : NULL;
    char *out = t ? dup_str(t->valuestring) : NULL;
    cJSON_Delete(root);
    return out;
}

char *eng_chat_config_token(const char *tokenizer_config_json, const char *key)
{
    if (!tokenizer_config_json || !key)
        return NULL;
    cJSON *root = cJSON_Parse(tokenizer_config_json);
    const cJSON *v = root ? cJSON_GetObjectItemCaseSensitive(root, key) : NULL;
    if (cJSON_IsObject(v))
        v = cJSON_GetObjectItemCaseSensitive(v, "content");
    char *out = cJSON_IsString(v) ? dup_str(v->valuestring) : NULL;
    cJSON_Delete(root);
    return out;
}
