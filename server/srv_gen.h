/* srv_gen.h — one generation request (completions or chat): its validated sampling parameters,
 * the scheduler tasks it submitted (one per prompt x choice), and the response it builds from
 * their events, as one JSON object or as SSE chunks. A generation is owned by its response slot
 * and refers to tasks by id only. Loop thread only. Does not parse prompts or messages (the
 * srv_api_* handlers do). */
#ifndef SRV_GEN_H
#define SRV_GEN_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "srv_errors.h"
#include "srv_http.h"
#include "srv_sched.h"
#include "srv_server.h"

typedef enum srv_gen_kind {
    SRV_GEN_COMPLETION = 0,
    SRV_GEN_CHAT = 1,
    SRV_GEN_EMBED = 2,              /* /v1/embeddings: one vector per prompt, nothing sampled */
} srv_gen_kind;

typedef struct srv_gen_params {
    int max_tokens;                 /* -1 = the endpoint's default */
    int n;                          /* choices per prompt */
    int stream, include_usage, echo;
    int base64;                     /* embeddings: encoding_format "base64" */
    eng_sampler_cfg scfg;           /* scfg.bias unset (tasks own copies) */
    int has_seed;
    uint64_t seed;
    eng_logit_bias *bias;           /* [n_bias]; owned until srv_gen_params_free */
    int n_bias;
    int logprobs;                   /* 1: report logprobs */
    int top_logprobs;               /* 0..ENG_MAX_TOP_LOGPROBS */
    const char *stops[ENG_MAX_STOPS]; /* borrowed from the request JSON */
    int n_stops;
    int json_mode;                  /* SRV_JSON_*: constrained decoding of the answer */
    char *schema;                   /* SRV_JSON_SCHEMA: the JSON Schema as compact JSON text;
                                       owned until srv_gen_params_free */
    unsigned schema_flags;          /* ENG_GRAMMAR_* flags the schema compiles with */
    int tool_choice;                /* SRV_TOOL_*: answers may be tool calls (chat only) */
    int tool_parallel;              /* parallel_tool_calls: an array of calls may answer */
    const char *tool_args_key;      /* "arguments" or "parameters": the call's arguments
                                       member in the model's output (static text) */
} srv_gen_params;

enum { SRV_JSON_NONE = 0, SRV_JSON_OBJECT = 1, SRV_JSON_SCHEMA = 2 };
enum { SRV_TOOL_NONE = 0, SRV_TOOL_AUTO = 1, SRV_TOOL_REQUIRED = 2 };

/* srv_api_tools.c: the request's tools, tool_choice and parallel_tool_calls, validated. */
typedef struct srv_tools {
    const cJSON *list;              /* the "tools" array (borrowed from the request), or NULL */
    int choice;                     /* SRV_TOOL_* (a named function is REQUIRED, one function) */
    const char *named;              /* tool_choice {"type":"function","function":{"name"}};
                                       borrowed, or NULL */
    int parallel;                   /* parallel_tool_calls (default true) */
    int native;                     /* the Jinja template writes tools and tool turns itself;
                                       else the generic form (docs/api.md) is used */
    const char *args_key;           /* "parameters" when the template's own call format says so
                                       (LLaMA-3.1), else "arguments"; static */
    unsigned lenient;               /* ENG_GRAMMAR_LENIENT when a callable function is not
                                       strict (its unenforceable keywords are ignored), else 0 */
    uint64_t loose;                 /* bit i: tools[i] is not strict and its parameters use
                                       structure the grammar lacks: its arguments are any
                                       object (OpenAI does not constrain non-strict calls) */
} srv_tools;

/* Reads tools / tool_choice / parallel_tool_calls (and refuses the deprecated functions /
 * function_call) into *t. 0, or -1 with a 400 naming the field sent. */
int srv_tools_parse(srv_server *s, srv_resp *r, const cJSON *body, srv_tools *t);
/* When t lets the model call tools: the grammar of a call (each function's name with its
 * parameters' schema; an array of calls too when parallel) into p->schema, and the tool
 * fields of p. 0, or -1 with a 400 (a parameters schema the grammar cannot take, named). */
int srv_tools_grammar(srv_resp *r, const srv_tools *t, srv_gen_params *p);
/* Generic form (templates without a tool format): the system text that lists the functions
 * and the answer format, appended to *out. */
void srv_tools_system_text(const srv_tools *t, srv_buf *out);
/* Generic form: an assistant turn's tool_calls written as the model would write them. */
void srv_tools_calls_text(const cJSON *tool_calls, const char *args_key, srv_buf *out);

/* srv_api_format.c: response_format ({"type": "text" | "json_object" | "json_schema",
 * "json_schema": {"name", "schema", "strict", "description"}}) into p->json_mode / p->schema,
 * compiling the schema once to answer a 400 that names an unsupported keyword. 0, or -1 with a
 * 400 sent. */
int srv_gen_parse_format(srv_resp *r, const cJSON *body, srv_gen_params *p);
/* The grammar a task of p decodes under (NULL with 0 when p has none). */
struct eng_grammar;
int srv_gen_grammar(const srv_gen_params *p, struct eng_grammar **out);

typedef struct srv_gen_prompt {
    int32_t *ids;                   /* owned (malloc); NULL: tokenize text (srv_gen_submit) */
    int n;
    char *text;                     /* owned: the prompt as text (echo), or NULL */
    size_t text_len;
    size_t enc_from;                /* ids == NULL: tokenize text from this offset, BOS added */
    int no_bos;                     /* ... unless set (a chat template that wrote none) */
    int enc_special;                /* ... with special-token text (<|im_start|>) as its ids */
    size_t *plain;                  /* ... except in these [begin, end) byte ranges counted from
                                       enc_from (chat message contents); owned, or NULL */
    int n_plain;
    int echo_from;                  /* first id the echoed text shows (1 after an added BOS) */
} srv_gen_prompt;

/* Parses and validates the fields common to both endpoints. 0, or -1 with a 400 sent. */
int srv_gen_parse_params(srv_server *s, srv_resp *r, const cJSON *body, srv_gen_kind kind,
                         srv_gen_params *p);
void srv_gen_params_free(srv_gen_params *p);
void srv_gen_prompts_free(srv_gen_prompt *pr, int n);

/* Checks lengths, builds the tasks, submits them and attaches the generation to r (or answers r
 * with an error). Takes nothing over: the caller still frees params and prompts. stop_ids are
 * extra token ids that end a sequence (besides EOS). */
void srv_gen_start(srv_server *s, srv_resp *r, srv_gen_kind kind, const srv_gen_params *p,
                   const srv_gen_prompt *prompts, int n_prompts, const int32_t *stop_ids,
                   int n_stop_ids);

/* srv_tokjob.c: tokenizes text (malloc'd *ids, caller frees). 0 or a negative ENG_E_*. Any
 * thread (the tokenizer is read-only once loaded). parse_special: special-token text becomes
 * their ids, except inside the n_plain byte ranges plain[2k]..plain[2k + 1] of text. */
int srv_encode(const eng_tokenizer *tok, const char *text, size_t len, int add_bos,
               int parse_special, const size_t *plain, int n_plain, int32_t **ids, int *n);

typedef struct srv_tokjob srv_tokjob;
/* srv_tokjob.c: tokenizes the prompts whose ids are NULL (off the loop thread when they are
 * large, see --tokenize-inline-bytes), then calls srv_gen_start with r. Takes p's allocations
 * and the malloc'd prompts array over and frees them in every case; the stop strings p borrows
 * are copied first, so the request JSON may go. */
void srv_gen_submit(srv_server *s, srv_resp *r, srv_gen_kind kind, srv_gen_params *p,
                    srv_gen_prompt *prompts, int n_prompts, const int32_t *stop_ids,
                    int n_stop_ids);

/* Routes scheduler events to their generations; events for unknown ids are dropped. */
void srv_gen_on_events(srv_server *s, srv_event *ev, int n);

#endif
