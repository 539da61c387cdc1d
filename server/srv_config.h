/* srv_config.h — claq-server configuration: every flag, its environment variable and its
 * default, parsed once by main before anything starts. Does not validate paths (the scheduler
 * opens the model). Main thread only; read-only afterwards, so any thread may read it. */
#ifndef SRV_CONFIG_H
#define SRV_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SRV_CFG_STR 1024
#define SRV_VERSION "0.1.0"             /* --version; the API is OpenAI v1 */

typedef struct srv_config {
    char model[SRV_CFG_STR];        /* --model: file or directory */
    char tokenizer[SRV_CFG_STR];    /* --tokenizer: override, "" = beside/inside the model */
    char host[256];                 /* --host */
    int port;                       /* --port (0 = any free port) */
    char api_key[256];              /* --api-key ("" = no auth) */
    char served_name[256];          /* --served-model-name ("" = model base name) */
    int64_t kv_cache_tokens;        /* --kv-cache-tokens (0 = from SRV_DEFAULT_KV_BYTES) */
    int max_batch;                  /* --max-batch: sequences per decode step */
    int max_queue;                  /* --max-queue: waiting sequences before 429 */
    int threads;                    /* --threads: CPU backend workers (0 = all cores) */
    char chat_template[SRV_CFG_STR]; /* --chat-template: llama2|chatml|plain or a Jinja file
                                       ("" = the model's chat_template, else detected) */
    double request_timeout_s;       /* --request-timeout */
    int64_t max_body_bytes;         /* --max-body-bytes */
    int64_t max_inflight_body_bytes; /* --max-inflight-body-bytes */
    int64_t max_header_bytes;       /* --max-header-bytes */
    double header_timeout_s;        /* --header-timeout */
    double body_timeout_s;          /* --body-timeout */
    double idle_timeout_s;          /* --idle-timeout */
    int prefill_chunk;              /* --prefill-chunk: prompt tokens per step */
    int tokenize_inline_bytes;      /* --tokenize-inline-bytes: more goes to the threadpool */
    double drain_timeout_s;         /* --drain-timeout */
    double keepalive_s;             /* --sse-keepalive: SSE comment interval while waiting */
    int max_conns;                  /* --max-connections */
    int64_t write_soft_bytes;       /* --write-soft-bytes: unsent bytes tolerated for a while */
    double write_soft_s;            /* --write-soft-seconds: ... for this long */
    int64_t write_hard_bytes;       /* --write-hard-bytes: unsent bytes that close at once */
    int reuseport;                  /* --reuseport: set SO_REUSEPORT on the listener */
    int sndbuf;                     /* --socket-sndbuf: SO_SNDBUF per client (0 = kernel) */
    char cors_origin[256];          /* --cors-origin ("" by default = no CORS headers) */
    int access_log;                 /* --access-log 0|1 */
    int metrics_public;             /* --metrics-public 0|1: /metrics without the API key */
    char device[16];                /* --device: cpu|cuda|auto */
    char kv_dtype[8];               /* --kv-dtype: auto|f32|f16 */
    char prefill_precision[8];      /* --prefill-precision: fp32|bf16 */
    int prefix_cache;               /* 0 with --no-prefix-cache (--prefix-cache 0|1) */
    int step_delay_ms;              /* --step-delay-ms: testing aid, sleep after each step */
} srv_config;

void srv_config_defaults(srv_config *c);
/* Applies environment variables, then argv (flags win). Returns 0 to run, 1 when --help or
 * --version was printed to out, or -1 with a message in err (cap bytes). */
int srv_config_parse(srv_config *c, int argc, char **argv, FILE *out, char *err, size_t cap);
void srv_config_usage(FILE *out);

#endif
