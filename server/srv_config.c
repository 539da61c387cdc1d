/* srv_config.c — the flag table: each flag's name, environment variable, type, default and help
 * line in one row, so --help, env parsing and argv parsing cannot disagree. Does not open files.
 * Main thread only, before the loop starts. */
#include "srv_config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "srv_limits.h"

typedef enum { CFG_STR, CFG_INT, CFG_I64, CFG_DBL, CFG_BOOL } cfg_type;

typedef struct cfg_flag {
    const char *name;       /* without the leading "--" */
    const char *env;        /* environment variable */
    cfg_type type;
    size_t off;             /* offset in srv_config */
    size_t size;            /* CFG_STR: buffer size */
    double lo, hi;          /* numeric range (inclusive) */
    const char *help;
} cfg_flag;

#define F(field) offsetof(srv_config, field), sizeof(((srv_config *)0)->field)

static const cfg_flag srv__flags[] = {
    {"model", "CLAQ_MODEL", CFG_STR, F(model), 0, 0,
     "model: llama2.c .bin, Hugging Face directory or packed CLAQ file (required)"},
    {"tokenizer", "CLAQ_TOKENIZER", CFG_STR, F(tokenizer), 0, 0,
     "tokenizer file (default: beside or inside the model)"},
    {"host", "CLAQ_HOST", CFG_STR, F(host), 0, 0, "address to listen on (default 127.0.0.1)"},
    {"port", "CLAQ_PORT", CFG_INT, F(port), 0, 65535, "TCP port; 0 picks a free one (default 8080)"},
    {"api-key", "CLAQ_API_KEY", CFG_STR, F(api_key), 0, 0,
     "require 'Authorization: Bearer KEY' (except /health, CORS preflight, and /metrics with "
     "--metrics-public); without a key, a loopback --host answers only Host: localhost names"},
    {"metrics-public", "CLAQ_METRICS_PUBLIC", CFG_BOOL, F(metrics_public), 0, 1,
     "serve /metrics without the API key (default 0: behind it when one is set)"},
    {"served-model-name", "CLAQ_SERVED_MODEL_NAME", CFG_STR, F(served_name), 0, 0,
     "model id in the API (default: the model's file or directory base name)"},
    {"kv-cache-tokens", "CLAQ_KV_CACHE_TOKENS", CFG_I64, F(kv_cache_tokens), 0, 1e9,
     "positions in the shared paged KV cache; sequences take blocks as they grow, the newest "
     "is preempted (and later recomputed) when none is free (default: 2 GiB worth, at most "
     "context x batch)"},
    {"max-batch", "CLAQ_MAX_BATCH", CFG_INT, F(max_batch), 1, 1024,
     "sequences decoded together per step (default 32)"},
    {"max-queue", "CLAQ_MAX_QUEUE", CFG_INT, F(max_queue), 0, 1000000,
     "sequences waiting for admission before 429 (default 256)"},
    {"threads", "CLAQ_THREADS", CFG_INT, F(threads), 0, 1024,
     "CPU worker threads; 0 = one per core (default 0)"},
    {"chat-template", "CLAQ_CHAT_TEMPLATE", CFG_STR, F(chat_template), 0, 0,
     "llama2 | chatml | plain | FILE holding a Jinja chat template (default: the model's own "
     "chat_template from tokenizer_config.json; without one, a layout detected from it, else "
     "plain)"},
    {"request-timeout", "CLAQ_REQUEST_TIMEOUT", CFG_DBL, F(request_timeout_s), 0.001, 1e7,
     "seconds a generation may run before it is ended (default 600)"},
    {"max-body-bytes", "CLAQ_MAX_BODY_BYTES", CFG_I64, F(max_body_bytes), 1, 1LL << 34,
     "largest request body; larger gets 413 (default 4 MiB)"},
    {"max-inflight-body-bytes", "CLAQ_MAX_INFLIGHT_BODY_BYTES", CFG_I64,
     F(max_inflight_body_bytes), 1024, 1LL << 40,
     "request body bytes buffered over all connections; a body past it gets 503 with "
     "Retry-After (default 64 MiB)"},
    {"max-header-bytes", "CLAQ_MAX_HEADER_BYTES", CFG_I64, F(max_header_bytes), 256, 1 << 24,
     "request line + headers; larger gets 431 (default 16 KiB)"},
    {"header-timeout", "CLAQ_HEADER_TIMEOUT", CFG_DBL, F(header_timeout_s), 0.001, 1e6,
     "seconds (total, from the first byte) to receive headers; else 408 (default 10)"},
    {"body-timeout", "CLAQ_BODY_TIMEOUT", CFG_DBL, F(body_timeout_s), 0.001, 1e6,
     "seconds to receive the body after the headers; else 408 (default 30)"},
    {"idle-timeout", "CLAQ_IDLE_TIMEOUT", CFG_DBL, F(idle_timeout_s), 0.001, 1e6,
     "seconds an idle keep-alive connection stays open (default 60)"},
    {"prefill-chunk", "CLAQ_PREFILL_CHUNK", CFG_INT, F(prefill_chunk), 1, 65536,
     "prompt tokens prefilled per engine step, shared (default 256)"},
    {"tokenize-inline-bytes", "CLAQ_TOKENIZE_INLINE_BYTES", CFG_INT, F(tokenize_inline_bytes),
     0, 1 << 30, "prompt text a request may have tokenized on the event loop; a request with "
     "more is tokenized on a worker thread so other streams never stall (default 16384)"},
    {"drain-timeout", "CLAQ_DRAIN_TIMEOUT", CFG_DBL, F(drain_timeout_s), 0, 1e6,
     "seconds in-flight requests get to finish after SIGTERM/SIGINT (default 30)"},
    {"sse-keepalive", "CLAQ_SSE_KEEPALIVE", CFG_DBL, F(keepalive_s), 0.01, 1e6,
     "seconds between ': keep-alive' SSE comments while a stream waits (default 2)"},
    {"max-connections", "CLAQ_MAX_CONNECTIONS", CFG_INT, F(max_conns), 1, 1000000,
     "open connections; more are answered 503 (default 4096)"},
    {"write-soft-bytes", "CLAQ_WRITE_SOFT_BYTES", CFG_I64, F(write_soft_bytes), 1024, 1LL << 34,
     "a client this many bytes behind for --write-soft-seconds is cut off, and no new request "
     "of its is read while it is (default 1 MiB)"},
    {"write-soft-seconds", "CLAQ_WRITE_SOFT_SECONDS", CFG_DBL, F(write_soft_s), 0.01, 1e6,
     "how long a client may stay over --write-soft-bytes (default 10)"},
    {"write-hard-bytes", "CLAQ_WRITE_HARD_BYTES", CFG_I64, F(write_hard_bytes), 1024, 1LL << 36,
     "a client this many bytes behind that takes nothing for 100 ms is cut off (one larger "
     "answer alone is not: default 16 MiB)"},
    {"socket-sndbuf", "CLAQ_SOCKET_SNDBUF", CFG_INT, F(sndbuf), 0, 1 << 30,
     "SO_SNDBUF of client sockets; small values make slow readers show up sooner in the "
     "write queue limits (default 0: kernel autotuning)"},
    {"reuseport", "CLAQ_REUSEPORT", CFG_BOOL, F(reuseport), 0, 1,
     "set SO_REUSEPORT on the listening socket (default 0)"},
    {"cors-origin", "CLAQ_CORS_ORIGIN", CFG_STR, F(cors_origin), 0, 0,
     "Access-Control-Allow-Origin value, e.g. * or https://app.example (default: empty, CORS "
     "off: browsers on other origins cannot call the API)"},
    {"access-log", "CLAQ_ACCESS_LOG", CFG_BOOL, F(access_log), 0, 1,
     "one JSON line per request on stderr (default 1)"},
    {"kv-dtype", "CLAQ_KV_DTYPE", CFG_STR, F(kv_dtype), 0, 0,
     "KV cache entries: f32, f16 (half the memory, so twice the positions per byte), or auto "
     "(= f16) (default auto)"},
    {"prefill-precision", "CLAQ_PREFILL_PRECISION", CFG_STR, F(prefill_precision), 0, 0,
     "prompt tokens' linears: fp32 (exact: a prompt token's numbers equal a generated one's) "
     "or bf16 (bfloat16 products, 1.6-1.8x faster prefill on CPUs with AVX512_BF16; relaxed "
     "numerics, docs/cpu-backend.md) (default fp32)"},
    {"prefix-cache", "CLAQ_PREFIX_CACHE", CFG_BOOL, F(prefix_cache), 0, 1,
     "keep the KV blocks of prompt prefixes and reuse them for later requests that start with "
     "the same tokens (exact: same tokens and logprobs as without); --no-prefix-cache = 0 "
     "(default 1)"},
    {"device", "CLAQ_DEVICE", CFG_STR, F(device), 0, 0,
     "cpu | cuda | auto (cuda when a GPU is usable, else cpu) (default cpu)"},
    {"step-delay-ms", "CLAQ_STEP_DELAY_MS", CFG_INT, F(step_delay_ms), 0, 10000,
     "testing aid: sleep this long after each engine step, as a slow model would (default 0)"},
};
#define N_FLAGS (sizeof(srv__flags) / sizeof(srv__flags[0]))

void srv_config_defaults(srv_config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->host, sizeof(c->host), "127.0.0.1");
    c->port = SRV_DEFAULT_PORT;
    c->max_batch = SRV_MAX_BATCH;
    c->max_queue = SRV_MAX_QUEUE;
    c->request_timeout_s = SRV_REQUEST_TIMEOUT_S;
    c->max_body_bytes = SRV_MAX_BODY_BYTES;
    c->max_inflight_body_bytes = SRV_MAX_INFLIGHT_BODY_BYTES;
    c->max_header_bytes = SRV_MAX_HEADER_BYTES;
    c->header_timeout_s = SRV_HEADER_TIMEOUT_MS / 1000.0;
    c->body_timeout_s = SRV_BODY_TIMEOUT_MS / 1000.0;
    c->idle_timeout_s = SRV_IDLE_TIMEOUT_MS / 1000.0;
    c->prefill_chunk = SRV_PREFILL_CHUNK;
    c->tokenize_inline_bytes = SRV_TOKENIZE_INLINE_BYTES;
    c->drain_timeout_s = SRV_DRAIN_TIMEOUT_S;
    c->keepalive_s = SRV_KEEPALIVE_MS / 1000.0;
    c->max_conns = SRV_MAX_CONNS;
    c->write_soft_bytes = SRV_WRITE_SOFT_BYTES;
    c->write_soft_s = SRV_WRITE_SOFT_SECONDS;
    c->write_hard_bytes = SRV_WRITE_HARD_BYTES;
    c->cors_origin[0] = '\0';   /* CORS off unless asked for: a laptop server is not an open API */
    c->access_log = 1;
    c->prefix_cache = 1;
    snprintf(c->device, sizeof(c->device), "cpu");
    snprintf(c->kv_dtype, sizeof(c->kv_dtype), "auto");
    snprintf(c->prefill_precision, sizeof(c->prefill_precision), "fp32");
}

void srv_config_usage(FILE *out)
{
    fprintf(out, "usage: claq-server --model PATH [options]\n\n"
                 "OpenAI-compatible HTTP server for LLaMA-family models (FP and packed CLAQ).\n"
                 "Every flag also reads the environment variable shown; flags win. A 0|1 flag\n"
                 "alone means 1, and --no-NAME means --NAME 0.\n\n");
    for (size_t i = 0; i < N_FLAGS; i++) {
        const cfg_flag *f = &srv__flags[i];
        const char *arg = f->type == CFG_STR ? " S" : f->type == CFG_DBL ? " SEC"
                          : f->type == CFG_BOOL ? " 0|1" : " N";
        char left[64];
        snprintf(left, sizeof(left), "--%s%s", f->name, arg);
        /* the help text wrapped at word boundaries to keep lines under 100 columns */
        const char *h = f->help;
        int first = 1;
        while (*h) {
            size_t n = strlen(h);
            if (n > 70) {
                n = 70;
                while (n > 0 && h[n] != ' ')
                    n--;
                if (n == 0)
                    n = 70;
            }
            fprintf(out, "  %-26s %.*s\n", first ? left : "", (int)n, h);
            first = 0;
            h += n;
            while (*h == ' ')
                h++;
        }
        fprintf(out, "  %-26s [env %s]\n", "", f->env);
    }
    fprintf(out, "  %-26s %s\n", "--version", "print the version and exit");
    fprintf(out, "  %-26s %s\n", "--help, -h", "print this and exit");
}

static int cfg_set(srv_config *c, const cfg_flag *f, const char *val, const char *from, char *err,
                   size_t cap)
{
    char *base = (char *)c + f->off;
    if (f->type == CFG_STR) {
        size_t n = strlen(val);
        if (n >= f->size) {
            snprintf(err, cap, "%s: value too long (%zu bytes, max %zu)", from, n, f->size - 1);
            return -1;
        }
        memcpy(base, val, n + 1);
        return 0;
    }
    if (f->type == CFG_BOOL) {   /* docker/compose users write true/false */
        static const char *const yes[] = {"true", "yes", "on"};
        static const char *const no[] = {"false", "no", "off"};
        for (int k = 0; k < 3; k++) {
            if (strcasecmp(val, yes[k]) == 0 || strcasecmp(val, no[k]) == 0) {
                *(int *)base = strcasecmp(val, yes[k]) == 0;
                return 0;
            }
        }
    }
    errno = 0;
    char *end = NULL;
    double v = strtod(val, &end);
    if (end == val || *end != '\0' || errno != 0 || !isfinite(v)) {
        snprintf(err, cap, "%s: '%s' is not a number", from, val);
        return -1;
    }
    if (f->type != CFG_DBL && v != floor(v)) {
        snprintf(err, cap, "%s: '%s' is not an integer", from, val);
        return -1;
    }
    if (v < f->lo || v > f->hi) {
        snprintf(err, cap, "%s: %s is outside [%g, %g]", from, val, f->lo, f->hi);
        return -1;
    }
    switch (f->type) {
    case CFG_INT: case CFG_BOOL: *(int *)base = (int)v; break;
    case CFG_I64: *(int64_t *)base = (int64_t)v; break;
    case CFG_DBL: *(double *)base = v; break;
    default: break;
    }
    return 0;
}

static const cfg_flag *cfg_find(const char *name, size_t len)
{
    for (size_t i = 0; i < N_FLAGS; i++)
        if (strlen(srv__flags[i].name) == len && memcmp(srv__flags[i].name, name, len) == 0)
            return &srv__flags[i];
    return NULL;
}

int srv_config_parse(srv_config *c, int argc, char **argv, FILE *out, char *err, size_t cap)
{
    char from[96];
    for (size_t i = 0; i < N_FLAGS; i++) {
        const char *v = getenv(srv__flags[i].env);
        if (v && *v) {
            snprintf(from, sizeof(from), "env %s", srv__flags[i].env);
            if (cfg_set(c, &srv__flags[i], v, from, err, cap) != 0)
                return -1;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            srv_config_usage(out);
            return 1;
        }
        if (strcmp(a, "--version") == 0) {
            fprintf(out, "claq-server %s\n", SRV_VERSION);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, cap, "unexpected argument '%s' (see --help)", a);
            return -1;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const cfg_flag *f = cfg_find(name, nlen);
        int negated = 0;   /* --no-NAME for a 0|1 flag NAME: 0 */
        if (!f && !eq && nlen > 3 && strncmp(name, "no-", 3) == 0) {
            f = cfg_find(name + 3, nlen - 3);
            negated = f && f->type == CFG_BOOL;
            if (!negated)
                f = NULL;
        }
        if (!f) {
            snprintf(err, cap, "unknown flag '%.*s' (see --help)", (int)nlen + 2, a);
            return -1;
        }
        const char *val;
        if (negated) {
            val = "0";
        } else if (eq) {
            val = eq + 1;
        } else if (f->type == CFG_BOOL && (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)) {
            val = "1";
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            snprintf(err, cap, "flag --%s needs a value", f->name);
            return -1;
        }
        snprintf(from, sizeof(from), "--%s", f->name);
        if (cfg_set(c, f, val, from, err, cap) != 0)
            return -1;
    }
    if (!c->model[0]) {
        snprintf(err, cap, "--model is required (or CLAQ_MODEL); see --help");
        return -1;
    }
    if (c->chat_template[0] && strcmp(c->chat_template, "llama2") != 0 &&
        strcmp(c->chat_template, "chatml") != 0 && strcmp(c->chat_template, "plain") != 0 &&
        access(c->chat_template, R_OK) != 0) {
        snprintf(err, cap, "--chat-template: '%.900s' is not llama2, chatml, plain or a "
                 "readable template file", c->chat_template);
        return -1;
    }
    if (strcmp(c->device, "cpu") != 0 && strcmp(c->device, "cuda") != 0 &&
        strcmp(c->device, "auto") != 0) {
        snprintf(err, cap, "--device: '%s' is not cpu, cuda or auto", c->device);
        return -1;
    }
    if (strcmp(c->kv_dtype, "auto") != 0 && strcmp(c->kv_dtype, "f32") != 0 &&
        strcmp(c->kv_dtype, "f16") != 0) {
        snprintf(err, cap, "--kv-dtype: '%s' is not auto, f32 or f16", c->kv_dtype);
        return -1;
    }
    if (strcmp(c->prefill_precision, "fp32") != 0 && strcmp(c->prefill_precision, "bf16") != 0) {
        snprintf(err, cap, "--prefill-precision: '%s' is not fp32 or bf16", c->prefill_precision);
        return -1;
    }
    return 0;
}
