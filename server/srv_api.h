/* srv_api.h — the handlers behind each route and the helpers they share (chat templates, token
 * arrays, prompt limits). Above the generations (srv_gen.h) and HTTP (srv_http.h, error bodies
 * in srv_errors.h). Loop thread only. */
#ifndef SRV_API_H
#define SRV_API_H

#include <cjson/cJSON.h>

#include "srv_errors.h"
#include "srv_gen.h"
#include "srv_http.h"
#include "srv_sched.h"
#include "srv_server.h"

/* srv_router.c: picks the handler for req (auth, CORS preflight, 404/405, JSON parsing). */
void srv_route(srv_server *s, srv_resp *r, const srv_request *req);

/* srv_api_misc.c */
void srv_api_models(srv_server *s, srv_resp *r, const srv_request *req);
void srv_api_health(srv_server *s, srv_resp *r, const srv_request *req);
void srv_api_metrics(srv_server *s, srv_resp *r, const srv_request *req);
void srv_api_tokenize(srv_server *s, srv_resp *r, const cJSON *body);
void srv_api_detokenize(srv_server *s, srv_resp *r, const cJSON *body);

/* srv_api_completions.c: a prompt (or input) in its four shapes into *out (caller frees with
 * srv_gen_prompts_free) and *n; 0, or -1 with r answered naming param. */
int srv_api_prompts(srv_server *s, srv_resp *r, const cJSON *pv, const char *param,
                    srv_gen_prompt **out, int *n);
/* srv_api_embeddings.c: POST /v1/embeddings */
void srv_api_embeddings(srv_server *s, srv_resp *r, const cJSON *body);

/* srv_api_completions.c / srv_api_chat.c */
void srv_api_completions(srv_server *s, srv_resp *r, const cJSON *body);
void srv_api_chat(srv_server *s, srv_resp *r, const cJSON *body);
/* Compiles --chat-template FILE when the flag names a file (at start, before the model loads).
 * 0, or -1 with err naming the file and the problem (a startup error). */
int srv_chat_load_file(srv_server *s, char *err, size_t cap);
/* Chooses the chat template at model load: --chat-template, else the model's Jinja
 * chat_template from tokenizer_config.json, else a hand-written layout detected from it. */
void srv_chat_setup(srv_server *s);
/* Frees what srv_chat_load_file / srv_chat_setup made; safe twice. */
void srv_chat_free(srv_server *s);
/* Validates messages (param "messages") and renders them with the chat template, with the
 * request's tools (srv_gen.h; NULL = none) where the model may call them. 0 with *text
 * (caller frees), *enc_from, the offset where the text to tokenize begins (past a "<s>" the
 * template wrote: the encoder adds the real BOS id), and *plain (caller frees) / *n_plain, the
 * byte ranges of the message contents counted from enc_from, which srv_encode keeps plain text
 * (a user cannot type control tokens); or -1 with r answered. */
struct srv_tools;
/* Whether a chat prompt from srv_chat_prompt is tokenized with BOS: with a Jinja template only
 * where the template wrote it (enc_from > 0), as HF's apply_chat_template and vLLM tokenize a
 * rendered chat (a template without bos_token gets none: ChatML, Zephyr); the built-in
 * templates always. */
int srv_chat_adds_bos(const srv_server *s, size_t enc_from);
int srv_chat_prompt(srv_server *s, srv_resp *r, const cJSON *messages,
                    const struct srv_tools *tools, char **text, size_t *text_len,
                    size_t *enc_from, size_t **plain, int *n_plain);
/* The text that ends an assistant turn in the chosen template ("<|im_end|>", "<|eot_id|>"),
 * added to the stop strings; NULL when none. Static or template-owned text. */
const char *srv_chat_turn_end(srv_server *s);
/* Token ids that end a chat turn for the chosen template (besides EOS); returns the count. */
int srv_chat_stop_ids(srv_server *s, int32_t *out, int cap);

/* Reads a JSON array of token ids in [0, vocab) into *ids (caller frees); 0, or -1 with r
 * answered (param names the field). */
int srv_token_array(srv_server *s, srv_resp *r, const cJSON *arr, const char *param,
                    int32_t **ids, int *n);

/* 0 when len bytes of prompt text may be tokenized (n_ctx * SRV_MAX_PROMPT_BYTES_PER_TOKEN, or
 * at least floor bytes); else -1 with a 400 context_length_exceeded naming param sent. */
int srv_prompt_bytes_ok(srv_server *s, srv_resp *r, size_t len, size_t floor, const char *param);

/* Checks the optional "model" field: 0, or -1 with a 404/400 already sent. */
int srv_api_check_model(srv_server *s, srv_resp *r, const cJSON *body);

#endif
