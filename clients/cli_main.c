/* cli_main.c — claq-client's command line: option parsing (flags and environment variables),
 * the chat / complete / models subcommands, reading the message from argv or stdin, and the
 * interactive chat REPL on a terminal. Owns no HTTP or JSON details (cli_api.c, cli_http.c).
 * Main thread only. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_api.h"

/* Longest message read from stdin (non-interactive use, e.g. `claq-client chat < file`). */
#define CLI_MAX_STDIN_BYTES (1024 * 1024)
/* Longest line typed at the REPL. */
#define CLI_MAX_REPL_LINE (64 * 1024)

/* Exit statuses, documented in --help. */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_ERROR = 1,    /* the server answered with an error, or the answer was malformed */
    CLI_EXIT_USAGE = 2,    /* bad command line */
    CLI_EXIT_CONNECT = 3,  /* could not connect, or the server stopped answering */
};

static const char cli__usage[] =
    "usage: claq-client [options] chat [MESSAGE]\n"
    "       claq-client [options] complete PROMPT\n"
    "       claq-client [options] models\n"
    "\n"
    "Talks to claq-server (or any OpenAI-compatible server) over HTTP/1.1 and prints the\n"
    "generated text as it streams. MESSAGE/PROMPT '-' (or omitted, with stdin not a terminal)\n"
    "reads it from stdin; `chat` with no message on a terminal starts an interactive chat\n"
    "(commands: /reset forgets the conversation, /exit or Ctrl-D quits).\n"
    "\n"
    "options (may appear anywhere before --; --opt=value also works; after -- every\n"
    "argument is the command or the message, e.g. complete -- \"-1 is a number\"):\n"
    "  --url URL            server base URL, http only (a trailing /v1 is accepted)\n"
    "                       [env CLAQ_URL; default http://127.0.0.1:8080]\n"
    "  --api-key KEY        sent as 'Authorization: Bearer KEY'\n"
    "                       [env CLAQ_API_KEY, then OPENAI_API_KEY; default none]\n"
    "  --model NAME         model id to request\n"
    "                       [env CLAQ_CLIENT_MODEL; default: the server's served model]\n"
    "  --system TEXT        system message (chat)\n"
    "  --max-tokens N       max_tokens (0 and up)\n"
    "  --temperature T      sampling temperature (0 = greedy)\n"
    "  --top-p P            nucleus sampling mass, 0 < P <= 1\n"
    "  --seed N             sampling seed\n"
    "  --stop TEXT          stop string\n"
    "  --no-stream          ask for one JSON response instead of an SSE stream\n"
    "  --stats, -v          print id, finish_reason, usage, TTFT and timing to stderr\n"
    "  --timeout SECONDS    longest silence tolerated from the server [default 300]\n"
    "  -h, --help           this text\n"
    "\n"
    "exit status: 0 ok, 1 server error or malformed answer (the server's message is shown),\n"
    "2 bad usage, 3 cannot connect or the server stopped answering.\n";

typedef enum cli_cmd { CLI_CMD_NONE = 0, CLI_CMD_CHAT, CLI_CMD_COMPLETE, CLI_CMD_MODELS } cli_cmd;

static int cli__exit_for(int rc)
{
    switch (rc) {
    case CLI_OK: return CLI_EXIT_OK;
    case CLI_E_USAGE: return CLI_EXIT_USAGE;
    case CLI_E_CONNECT:
    case CLI_E_TIMEOUT:
    case CLI_E_IO: return CLI_EXIT_CONNECT;
    default: return CLI_EXIT_ERROR;
    }
}

static int cli__parse_long(const char *s, long lo, long hi, long *out)
{
    char *e = NULL;
    errno = 0;
    long v = strtol(s, &e, 10);
    if (!*s || *e || errno || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int cli__parse_double(const char *s, double lo, double hi, double *out)
{
    char *e = NULL;
    errno = 0;
    double v = strtod(s, &e);
    if (!*s || *e || errno || !isfinite(v) || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* Reads all of stdin (up to CLI_MAX_STDIN_BYTES) into a heap string the caller frees, with
 * one trailing newline removed. NULL on error or when too long. */
static char *cli__read_stdin(void)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    for (;;) {
        if (len + 1 == cap) {
            if (cap > CLI_MAX_STDIN_BYTES) {
                fprintf(stderr, "claq-client: stdin is over %d bytes\n", CLI_MAX_STDIN_BYTES);
                free(buf);
                return NULL;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - 1 - len, stdin);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(stdin)) {
        free(buf);
        return NULL;
    }
    if (len > 0 && buf[len - 1] == '\n')
        len--;
    buf[len] = '\0';
    return buf;
}

/* Runs one request and prints the answer; returns a CLI_E_* code (error already printed). */
static int cli__run_one(const cli_opts *o, const char *route, const cJSON *body,
                        cli_result *r)
{
    cli_err err = {0};
    int rc = cli_api_post(o, route, body, stdout, r, &err);
    if (r->text_len > 0 && r->text[r->text_len - 1] != '\n')
        fputc('\n', stdout);
    fflush(stdout);
    if (rc != CLI_OK)
        fprintf(stderr, "claq-client: %s\n", err.msg[0] ? err.msg : cli_strerror(rc));
    else if (o->stats)
        cli_result_print_stats(r, stderr);
    return rc;
}

/* Appends {"role": role, "content": text} to the array; 0 or CLI_E_NOMEM. */
static int cli__push_message(cJSON *msgs, const char *role, const char *text)
{
    cJSON *m = cJSON_CreateObject();
    if (!m)
        return CLI_E_NOMEM;
    cJSON_AddItemToArray(msgs, m);
    if (!cJSON_AddStringToObject(m, "role", role) || !cJSON_AddStringToObject(m, "content", text))
        return CLI_E_NOMEM;
    return CLI_OK;
}

static int cli__chat_once(const cli_opts *o, const char *message)
{
    cJSON *msgs = cJSON_CreateArray();
    cJSON *body = NULL;
    cli_result r = {0};
    int rc = msgs ? cli__push_message(msgs, "user", message) : CLI_E_NOMEM;
    if (rc == CLI_OK) {
        body = cli_api_chat_body(o, msgs);
        rc = body ? cli__run_one(o, "/v1/chat/completions", body, &r) : CLI_E_NOMEM;
    }
    if (rc == CLI_E_NOMEM && !body)
        fprintf(stderr, "claq-client: out of memory\n");
    cli_result_free(&r);
    cJSON_Delete(body);
    cJSON_Delete(msgs);
    return rc;
}

/* Interactive chat: the conversation grows turn by turn; a failed turn is forgotten. */
static int cli__chat_repl(const cli_opts *o)
{
    char *line = malloc(CLI_MAX_REPL_LINE);
    cJSON *msgs = cJSON_CreateArray();
    if (!line || !msgs) {
        free(line);
        cJSON_Delete(msgs);
        fprintf(stderr, "claq-client: out of memory\n");
        return CLI_E_NOMEM;
    }
    fprintf(stderr, "claq-client: chatting with %s:%s (/reset, /exit)\n", o->url.host,
            o->url.port);
    int last = CLI_OK;
    for (;;) {
        fputs("> ", stderr);
        fflush(stderr);
        if (!fgets(line, CLI_MAX_REPL_LINE, stdin))
            break;
        size_t n = strlen(line);
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0)
            continue;
        if (strcmp(line, "/exit") == 0 || strcmp(line, "/quit") == 0)
            break;
        if (strcmp(line, "/reset") == 0) {
            while (cJSON_GetArraySize(msgs) > 0)
                cJSON_DeleteItemFromArray(msgs, 0);
            fprintf(stderr, "(conversation cleared)\n");
            continue;
        }
        if (cli__push_message(msgs, "user", line) != CLI_OK) {
            last = CLI_E_NOMEM;
            break;
        }
        cJSON *body = cli_api_chat_body(o, msgs);
        cli_result r = {0};
        last = body ? cli__run_one(o, "/v1/chat/completions", body, &r) : CLI_E_NOMEM;
        cJSON_Delete(body);
        if (last == CLI_OK)
            last = cli__push_message(msgs, "assistant", r.text ? r.text : "");
        else
            cJSON_DeleteItemFromArray(msgs, cJSON_GetArraySize(msgs) - 1);
        cli_result_free(&r);
        if (last == CLI_E_NOMEM)
            break;
    }
    free(line);
    cJSON_Delete(msgs);
    return last;
}

/* Takes the value of option `name` from "--name=value" or the next argument. When the value
 * is missing it reports that, sets *missing and returns "" so the caller can stop. */
static const char *cli__optval(int argc, char **argv, int *i, const char *arg, const char *name,
                               int *missing)
{
    size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0)
        return NULL;
    if (arg[n] == '=')
        return arg + n + 1;
    if (arg[n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "claq-client: %s needs a value\n", name);
        *missing = 1;
        return "";
    }
    return argv[++*i];
}

int main(int argc, char **argv)
{
    cli_opts o;
    memset(&o, 0, sizeof o);
    o.max_tokens = -1;
    o.stream = 1;
    o.timeout_ms = 300 * 1000;
    const char *url = getenv("CLAQ_URL");
    o.api_key = getenv("CLAQ_API_KEY");
    if (!o.api_key)
        o.api_key = getenv("OPENAI_API_KEY");
    o.model = getenv("CLAQ_CLIENT_MODEL");
    if (o.model && !o.model[0])
        o.model = NULL;

    cli_cmd cmd = CLI_CMD_NONE;
    const char *text = NULL;
    int missing = 0, opts_end = 0;
    for (int i = 1; i < argc && !missing; i++) {
        const char *a = argv[i];
        const char *v;
        int positional = 0;
        if (opts_end) {
            positional = 1;   /* after "--": the command or the message ("-1 is a number") */
        } else if (strcmp(a, "--") == 0) {
            opts_end = 1;
            continue;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(cli__usage, stdout);
            return CLI_EXIT_OK;
        } else if (strcmp(a, "--no-stream") == 0) {
            o.stream = 0;
        } else if (strcmp(a, "--stream") == 0) {
            o.stream = 1;
        } else if (strcmp(a, "--stats") == 0 || strcmp(a, "-v") == 0) {
            o.stats = 1;
        } else if ((v = cli__optval(argc, argv, &i, a, "--url", &missing))) {
            url = v;
        } else if ((v = cli__optval(argc, argv, &i, a, "--api-key", &missing))) {
            o.api_key = v;
        } else if ((v = cli__optval(argc, argv, &i, a, "--model", &missing))) {
            o.model = v[0] ? v : NULL;
        } else if ((v = cli__optval(argc, argv, &i, a, "--system", &missing))) {
            o.system = v;
        } else if ((v = cli__optval(argc, argv, &i, a, "--stop", &missing))) {
            if (!v[0])
                goto bad_value;
            o.stop = v;
        } else if ((v = cli__optval(argc, argv, &i, a, "--max-tokens", &missing))) {
            if (cli__parse_long(v, 0, INT_MAX, &o.max_tokens) != 0)
                goto bad_value;
        } else if ((v = cli__optval(argc, argv, &i, a, "--temperature", &missing))) {
            if (cli__parse_double(v, 0.0, 100.0, &o.temperature) != 0)
                goto bad_value;
            o.has_temperature = 1;
        } else if ((v = cli__optval(argc, argv, &i, a, "--top-p", &missing))) {
            if (cli__parse_double(v, 0.0, 1.0, &o.top_p) != 0 || o.top_p <= 0.0)
                goto bad_value;
            o.has_top_p = 1;
        } else if ((v = cli__optval(argc, argv, &i, a, "--seed", &missing))) {
            long s;
            if (cli__parse_long(v, LONG_MIN, LONG_MAX, &s) != 0)
                goto bad_value;
            o.seed = s;
            o.has_seed = 1;
        } else if ((v = cli__optval(argc, argv, &i, a, "--timeout", &missing))) {
            long t;
            if (cli__parse_long(v, 1, 24 * 3600, &t) != 0)
                goto bad_value;
            o.timeout_ms = (int)(t * 1000);
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "claq-client: unknown option '%s' (see --help; a message that "
                    "starts with '-' goes after --)\n", a);
            return CLI_EXIT_USAGE;
        } else {
            positional = 1;
        }
        if (positional && cmd == CLI_CMD_NONE) {
            if (strcmp(a, "chat") == 0)
                cmd = CLI_CMD_CHAT;
            else if (strcmp(a, "complete") == 0 || strcmp(a, "completion") == 0)
                cmd = CLI_CMD_COMPLETE;
            else if (strcmp(a, "models") == 0)
                cmd = CLI_CMD_MODELS;
            else {
                fprintf(stderr, "claq-client: unknown command '%s' (chat, complete, models)\n", a);
                return CLI_EXIT_USAGE;
            }
        } else if (positional && !text) {
            text = a;
        } else if (positional) {
            fprintf(stderr, "claq-client: unexpected argument '%s' (quote the message)\n", a);
            return CLI_EXIT_USAGE;
        }
        continue;
    bad_value:
        if (!missing)
            fprintf(stderr, "claq-client: bad value for %s (see --help)\n", a);
        return CLI_EXIT_USAGE;
    }
    if (missing)
        return CLI_EXIT_USAGE;
    if (cmd == CLI_CMD_NONE) {
        fputs(cli__usage, stderr);
        return CLI_EXIT_USAGE;
    }
    cli_err err = {0};
    if (cli_url_parse(&o.url, url ? url : "http://127.0.0.1:8080", &err) != CLI_OK) {
        fprintf(stderr, "claq-client: %s\n", err.msg);
        return CLI_EXIT_USAGE;
    }

    if (cmd == CLI_CMD_MODELS) {
        int rc = cli_api_models(&o, stdout, &err);
        if (rc != CLI_OK)
            fprintf(stderr, "claq-client: %s\n", err.msg);
        return cli__exit_for(rc);
    }

    char *owned = NULL;
    int interactive = !text && isatty(STDIN_FILENO);
    if (interactive && cmd == CLI_CMD_CHAT)
        return cli__exit_for(cli__chat_repl(&o));
    if (interactive) {
        fprintf(stderr, "claq-client: complete needs a PROMPT (or '-' to read stdin)\n");
        return CLI_EXIT_USAGE;
    }
    if (!text || strcmp(text, "-") == 0) {
        owned = cli__read_stdin();
        if (!owned) {
            fprintf(stderr, "claq-client: cannot read the message from stdin\n");
            return CLI_EXIT_USAGE;
        }
        text = owned;
    }

    int rc;
    if (cmd == CLI_CMD_CHAT) {
        rc = cli__chat_once(&o, text);
    } else {
        cJSON *body = cli_api_complete_body(&o, text);
        cli_result r = {0};
        rc = body ? cli__run_one(&o, "/v1/completions", body, &r) : CLI_E_NOMEM;
        if (!body)
            fprintf(stderr, "claq-client: out of memory\n");
        cli_result_free(&r);
        cJSON_Delete(body);
    }
    free(owned);
    return cli__exit_for(rc);
}
