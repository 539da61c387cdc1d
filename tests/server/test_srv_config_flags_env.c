/* test_srv_config_flags_env.c — srv_config: defaults come from srv_limits.h, environment
 * variables apply, flags win over them, both spellings (--flag v, --flag=v) work, and bad input
 * (unknown flag, missing value, non-number, out of range, too long, bad template) is an error
 * with a message, never a crash or a silent default. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srv_config.h"
#include "srv_limits.h"

static int fails;

#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fails++;                                                                      \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            printf(__VA_ARGS__);                                                          \
            printf("\n");                                                                 \
        }                                                                                 \
    } while (0)

static int parse(srv_config *c, char *err, int argc, char **argv)
{
    srv_config_defaults(c);
    FILE *devnull = fopen("/dev/null", "w");
    int rc = srv_config_parse(c, argc, argv, devnull, err, 256);
    fclose(devnull);
    return rc;
}

int main(void)
{
    srv_config c;
    char err[256];
    unsetenv("CLAQ_MODEL");
    unsetenv("CLAQ_PORT");
    unsetenv("CLAQ_MAX_BATCH");

    char *a1[] = {"x", "--model", "m.bin"};
    CHECK(parse(&c, err, 3, a1) == 0, "minimal: %s", err);
    CHECK(c.port == SRV_DEFAULT_PORT && c.max_batch == SRV_MAX_BATCH &&
          c.max_queue == SRV_MAX_QUEUE && c.max_body_bytes == SRV_MAX_BODY_BYTES &&
          c.prefill_chunk == SRV_PREFILL_CHUNK && strcmp(c.host, "127.0.0.1") == 0,
          "defaults from srv_limits.h");

    setenv("CLAQ_MODEL", "env.bin", 1);
    setenv("CLAQ_PORT", "9000", 1);
    setenv("CLAQ_MAX_BATCH", "4", 1);
    char *a2[] = {"x", "--port=0"};
    CHECK(parse(&c, err, 2, a2) == 0, "env model: %s", err);
    CHECK(strcmp(c.model, "env.bin") == 0 && c.port == 0 && c.max_batch == 4,
          "env applies, flag wins (model %s port %d batch %d)", c.model, c.port, c.max_batch);
    setenv("CLAQ_PORT", "notaport", 1);
    CHECK(parse(&c, err, 1, a2) == -1 && strstr(err, "CLAQ_PORT"), "bad env named: %s", err);
    unsetenv("CLAQ_PORT");
    unsetenv("CLAQ_MODEL");
    unsetenv("CLAQ_MAX_BATCH");

    char *a3[] = {"x", "--model", "m", "--request-timeout", "2.5", "--reuseport",
                  "--chat-template", "chatml", "--api-key", "k"};
    CHECK(parse(&c, err, 10, a3) == 0, "mixed: %s", err);
    CHECK(c.request_timeout_s == 2.5 && c.reuseport == 1 &&
          strcmp(c.chat_template, "chatml") == 0 && strcmp(c.api_key, "k") == 0, "values");

    /* --no-NAME turns a 0|1 flag off; not a value flag's, and not with "=" */
    CHECK(c.prefix_cache == 1 && c.access_log == 1, "prefix cache and access log on by default");
    char *a5[] = {"x", "--model", "m", "--no-prefix-cache", "--no-access-log"};
    CHECK(parse(&c, err, 5, a5) == 0 && c.prefix_cache == 0 && c.access_log == 0,
          "--no-prefix-cache --no-access-log: %s", err);
    char *b12[] = {"x", "--model", "m", "--no-port"};
    CHECK(parse(&c, err, 4, b12) == -1 && strstr(err, "no-port"), "--no-port refused: %s", err);
    char *b13[] = {"x", "--model", "m", "--no-prefix-cache=1"};
    CHECK(parse(&c, err, 4, b13) == -1, "--no-NAME=V refused: %s", err);

    char *b1[] = {"x"};
    CHECK(parse(&c, err, 1, b1) == -1 && strstr(err, "--model"), "model required: %s", err);
    char *b2[] = {"x", "--model", "m", "--nope"};
    CHECK(parse(&c, err, 4, b2) == -1 && strstr(err, "nope"), "unknown flag: %s", err);
    char *b3[] = {"x", "--model", "m", "--port"};
    CHECK(parse(&c, err, 4, b3) == -1 && strstr(err, "needs a value"), "missing value: %s", err);
    char *b4[] = {"x", "--model", "m", "--port", "70000"};
    CHECK(parse(&c, err, 5, b4) == -1 && strstr(err, "outside"), "range: %s", err);
    char *b5[] = {"x", "--model", "m", "--max-batch", "2.5"};
    CHECK(parse(&c, err, 5, b5) == -1 && strstr(err, "integer"), "integer: %s", err);
    char *b6[] = {"x", "--model", "m", "--max-queue", "1e400"};
    CHECK(parse(&c, err, 5, b6) == -1, "overflow: %s", err);
    char *b7[] = {"x", "--model", "m", "--chat-template", "jinja"};
    CHECK(parse(&c, err, 5, b7) == -1 && strstr(err, "chat-template"), "template: %s", err);
    char *b10[] = {"x", "--model", "m", "--kv-dtype", "f8"};
    CHECK(parse(&c, err, 5, b10) == -1 && strstr(err, "kv-dtype"), "kv dtype: %s", err);
    char *b11[] = {"x", "--model", "m", "--kv-dtype", "f32", "--device", "gpu"};
    CHECK(parse(&c, err, 7, b11) == -1 && strstr(err, "--device"), "device: %s", err);
    char *a4[] = {"x", "--model", "m", "--kv-dtype", "f16", "--device", "auto"};
    CHECK(parse(&c, err, 7, a4) == 0 && strcmp(c.kv_dtype, "f16") == 0 &&
          strcmp(c.device, "auto") == 0, "kv dtype and device: %s", err);
    char longv[2000];
    memset(longv, 'a', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = 0;
    char *b8[] = {"x", "--model", longv};
    CHECK(parse(&c, err, 3, b8) == -1 && strstr(err, "too long"), "too long: %s", err);
    char *b9[] = {"x", "stray"};
    CHECK(parse(&c, err, 2, b9) == -1, "stray argument");
    char *h[] = {"x", "--help"};
    CHECK(parse(&c, err, 2, h) == 1, "--help returns 1");
    char *v[] = {"x", "--version"};
    CHECK(parse(&c, err, 2, v) == 1, "--version returns 1");

    /* booleans take true/false/yes/no/on/off too, as compose files write them */
    setenv("CLAQ_REUSEPORT", "true", 1);
    setenv("CLAQ_ACCESS_LOG", "OFF", 1);
    CHECK(parse(&c, err, 3, a1) == 0 && c.reuseport == 1 && c.access_log == 0,
          "bool words from env: %s", err);
    char *bw[] = {"x", "--model", "m", "--reuseport", "no"};
    CHECK(parse(&c, err, 5, bw) == 0 && c.reuseport == 0, "bool word as a flag value: %s", err);
    setenv("CLAQ_REUSEPORT", "maybe", 1);
    CHECK(parse(&c, err, 3, a1) == -1 && strstr(err, "CLAQ_REUSEPORT"), "bad bool: %s", err);
    unsetenv("CLAQ_REUSEPORT");
    unsetenv("CLAQ_ACCESS_LOG");
    printf("%s (%d failures)\n", fails ? "FAILED" : "ok", fails);
    return fails ? 1 : 0;
}
