/* cli_api.h — the OpenAI-shaped part of claq-client: request bodies for /v1/chat/completions
 * and /v1/completions, streamed (SSE) and whole responses, usage and timing, and error bodies
 * turned into one readable line. Does not parse the command line (cli_main.c does).
 * Single-threaded. */
#ifndef CLI_API_H
#define CLI_API_H

#include <stdio.h>

#include <cJSON.h>

#include "cli_http.h"

/* Largest non-streamed response body read (a whole completion with logprobs fits easily). */
#define CLI_MAX_BODY_BYTES (16 * 1024 * 1024)
/* Error bodies are shown, so read at most this much of them. */
#define CLI_MAX_ERROR_BODY_BYTES (64 * 1024)

typedef struct cli_opts {
    cli_url url;                /* parsed --url */
    const char *api_key;        /* borrowed from argv/environ, NULL for none */
    const char *model;          /* borrowed, NULL: let the server pick its served model */
    const char *system;         /* borrowed, chat system prompt or NULL */
    const char *stop;           /* borrowed, one stop string or NULL */
    long max_tokens;            /* -1: server default */
    double temperature;         /* used when has_temperature */
    int has_temperature;        /* --temperature was given */
    double top_p;               /* used when has_top_p */
    int has_top_p;              /* --top-p was given */
    long long seed;             /* used when has_seed */
    int has_seed;               /* --seed was given */
    int stream;                 /* 1: SSE streaming (default), 0: one JSON response */
    int stats;                  /* print id/usage/timing to stderr after each answer */
    int timeout_ms;             /* longest silence tolerated from the server */
} cli_opts;

typedef struct cli_result {
    char *text;                 /* owned (free via cli_result_free): the generated text */
    size_t text_len;            /* bytes in text */
    size_t text_cap;            /* bytes allocated */
    char id[128];               /* response id, "" if none */
    char finish_reason[32];     /* "stop", "length", ... or "" if none was sent */
    long prompt_tokens;         /* from usage, -1 when the server sent none */
    long completion_tokens;     /* from usage, -1 when none */
    long total_tokens;          /* from usage, -1 when none */
    size_t chunks;              /* SSE data events with content (streaming only) */
    double ttft_ms;             /* request sent -> first content byte, -1 when none */
    double total_ms;            /* request sent -> end of response */
} cli_result;

/* Frees the text; safe on a zeroed struct and twice. */
void cli_result_free(cli_result *r);

/* Builds a request body (a new cJSON object the caller deletes). messages is borrowed and
 * duplicated. The chat body puts o->system first when it is set. */
cJSON *cli_api_chat_body(const cli_opts *o, const cJSON *messages);
cJSON *cli_api_complete_body(const cli_opts *o, const char *prompt);

/* POSTs body to route ("/v1/chat/completions" or "/v1/completions"), streaming when
 * o->stream. Generated text goes to out as it arrives (NULL: print nothing); r receives the
 * text, usage and timing. Returns 0 or a negative CLI_E_* code with err filled; HTTP errors
 * carry the server's message. r must be zeroed or freed before the call. */
int cli_api_post(const cli_opts *o, const char *route, const cJSON *body, FILE *out,
                 cli_result *r, cli_err *err);

/* GET /v1/models and print one id per line to out. */
int cli_api_models(const cli_opts *o, FILE *out, cli_err *err);

/* Prints r's id, finish reason, usage and timing as one line to f. */
void cli_result_print_stats(const cli_result *r, FILE *f);

#endif
