/* eng_chat.h — chat templates: turns an OpenAI-style message list into the prompt text a chat
 * model was trained on. The model's own Jinja chat_template (from tokenizer_config.json, or a
 * file) is compiled and rendered by eng_jinja; three hand-written layouts (Llama-2 chat, ChatML
 * as used by Yi chat models, and a plain "User: / Assistant:" layout for base models) remain
 * for models without one. Text only: special tokens appear literally ("<s>", "<|im_start|>") and
 * the caller encodes the result with parse_special = 1, keeping the returned content ranges
 * plain. No state; any thread (a compiled template is immutable). */
#ifndef ENG_CHAT_H
#define ENG_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "eng_err.h"

typedef enum eng_chat_template {
    ENG_CHAT_UNKNOWN = -1,  /* only from eng_chat_template_from_name */
    ENG_CHAT_PLAIN = 0,     /* "System: ...\n\nUser: ...\n\nAssistant: ..." for base models */
    ENG_CHAT_LLAMA2 = 1,    /* Meta / HF Llama-2 chat: <s>[INST] <<SYS>>...<</SYS>> ... [/INST] */
    ENG_CHAT_CHATML = 2,    /* <|im_start|>role\ncontent<|im_end|>\n (Yi chat, many others) */
} eng_chat_template;

struct cJSON;

typedef struct eng_chat_msg {
    const char *role;       /* "system", "user" or "assistant" (Jinja templates: also "tool");
                               borrowed for the call */
    const char *content;    /* UTF-8, NUL-terminated; borrowed for the call. NULL only beside
                               tool_calls (Jinja templates see null) */
    /* Tool calling, Jinja templates only (the hand-written layouts refuse them): */
    const struct cJSON *tool_calls; /* assistant: OpenAI's [{id, type, function: {name,
                                       arguments}}], or NULL; borrowed */
    const char *tool_call_id;       /* tool: the call answered, or NULL; borrowed */
    const char *name;               /* tool: the function's name, or NULL; borrowed */
} eng_chat_msg;

/* Renders msgs[0..n) into out (NUL-terminated) and sets *len to the text length. When cap is too
 * small (out may then be NULL with cap 0, to measure) returns ENG_E_FULL with *len set to the
 * length needed, not counting the NUL. ENG_E_INVAL (message names the index / field) for n < 1,
 * a NULL role or content, an unknown role, or an order the template cannot express: Llama-2
 * takes an optional first system message, then user and assistant strictly alternating from
 * user, as HF's template enforces. add_generation_prompt appends the assistant header
 * (ChatML "<|im_start|>assistant\n", plain "Assistant:"); Llama-2 has none (a prompt ending in a
 * user turn already ends in "[/INST]").
 * Llama-2 and plain strip each turn's content (Python str.strip(), as the HF Llama-2 template
 * does); ChatML copies it verbatim, as HF's ChatML templates do. Content is not escaped: callers
 * tokenize with eng_chat_render_spans' content ranges as plain text, so a user who types
 * "<|im_end|>" gets those characters, not the control token (HF and llama.cpp parse them). */
int eng_chat_render(eng_chat_template t, const eng_chat_msg *msgs, int n,
                    int add_generation_prompt, char *out, size_t cap, size_t *len, eng_err *err);

/* eng_chat_render, and the byte ranges of the output that came from message contents:
 * spans[2k], spans[2k + 1] = begin, end of range k, ascending; *n_spans ranges (at most n: each
 * message's content is written once). spans holds 2 * n entries; NULL to skip. These are what
 * eng_tokenizer_encode_plain must keep plain. */
int eng_chat_render_spans(eng_chat_template t, const eng_chat_msg *msgs, int n,
                          int add_generation_prompt, char *out, size_t cap, size_t *len,
                          size_t *spans, int *n_spans, eng_err *err);

/* Picks the template from the text of a tokenizer_config.json: its "chat_template" (a string, or
 * a list of {"name", "template"} where "default" or else the first is used) containing "[INST]"
 * gives Llama-2, containing "<|im_start|>" gives ChatML; anything else, no chat_template, NULL or
 * JSON that does not parse gives plain. */
eng_chat_template eng_chat_detect(const char *tokenizer_config_json);

/* "llama2" / "chatml" / "plain" (exact, lower case); ENG_CHAT_UNKNOWN for anything else. */
eng_chat_template eng_chat_template_from_name(const char *name);

/* The inverse; "unknown" for values outside the enum. Static text. */
const char *eng_chat_template_name(eng_chat_template t);

/* The text that ends an assistant turn in this template when the model writes it as text
 * rather than as its EOS token: "<|im_end|>" (ChatML), "\n\nUser:" (plain), NULL for Llama-2
 * (its turns end with the EOS token </s>). Servers add it to the request's stop strings. */
const char *eng_chat_turn_end(eng_chat_template t);

/* ---- Jinja chat templates (eng_jinja) ---------------------------------------------------- */

typedef struct eng_jinja eng_chat_tmpl;

/* Compiles a Jinja chat template from src[0..len). 0 with *out (free with eng_chat_tmpl_free),
 * or ENG_E_FORMAT / ENG_E_RANGE / ENG_E_NOMEM with err naming the problem and its line. */
int eng_chat_tmpl_compile(const char *src, size_t len, eng_chat_tmpl **out, eng_err *err);

/* Safe on NULL. */
void eng_chat_tmpl_free(eng_chat_tmpl *t);

typedef struct eng_chat_tmpl_args {
    int add_generation_prompt;
    const char *bos_token;      /* the template's bos_token / eos_token variables (as HF passes */
    const char *eos_token;      /* special_tokens_map); NULL leaves them undefined */
    int64_t now;                /* strftime_now's clock, Unix seconds; 0 = now */
    const struct cJSON *tools;  /* OpenAI's tools list ([{type: "function", function: {name,
                                   description, parameters}}]), or NULL for none; borrowed */
} eng_chat_tmpl_args;

/* Renders msgs[0..n) as transformers' apply_chat_template does (messages, tools, documents =
 * none, add_generation_prompt, bos_token, eos_token). A message's tool_calls reach the template
 * with each function.arguments that is a JSON text parsed into its value (OpenAI sends a
 * string; HF templates such as LLaMA-3.1's write `arguments | tojson`), as vLLM does; tool
 * messages carry tool_call_id and name when given. 0 with *out (malloc'd,
 * NUL-terminated, caller frees), *len, and *spans (malloc'd, caller frees, NULL when none):
 * *n_spans ascending [begin, end) byte ranges of the output that came from message contents,
 * which the caller must tokenize as plain text (every string of messages and tools but role
 * names). A content string changed by the template other
 * than by slicing, stripping, splitting or concatenation counts whole. Roles are not checked
 * here: the template decides (raise_exception). On error (ENG_E_INVAL for a template error,
 * including raise_exception, whose message is quoted; ENG_E_RANGE for a render limit) err
 * says "chat template: ..." with the problem and the template line. */
int eng_chat_tmpl_render(const eng_chat_tmpl *t, const eng_chat_msg *msgs, int n,
                         const eng_chat_tmpl_args *a, char **out, size_t *len, size_t **spans,
                         int *n_spans, eng_err *err);

/* Whether the template's text contains s (e.g. "<|im_end|>": its end-of-turn markup). */
int eng_chat_tmpl_has(const eng_chat_tmpl *t, const char *s);

/* The chat_template of a tokenizer_config.json text: the string, or from a list of
 * {"name", "template"} the one named "default", else the first. malloc'd (caller frees), or
 * NULL when there is none or the JSON does not parse. */
char *eng_chat_template_source(const char *tokenizer_config_json);

/* A special token's text from tokenizer_config.json (key "bos_token", "eos_token", ...): a
 * string or an {"content": ...} object. malloc'd (caller frees), or NULL. */
char *eng_chat_config_token(const char *tokenizer_config_json, const char *key);

#endif
