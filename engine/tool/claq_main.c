/* claq_main.c — entry point of the `claq` tool: dispatches to one subcommand. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "claq_tool.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"generate", claq_cmd_generate, "generate text from a prompt"},
    {"perplexity", claq_cmd_perplexity, "perplexity of a text file (GPTQ protocol)"},
    {"tokenize", claq_cmd_tokenize, "print the token ids of a text"},
    {"logits", claq_cmd_logits, "write the logits of a token sequence (for reference tests)"},
    {"inspect", claq_cmd_inspect, "describe what a model file holds"},
    {"quantize", claq_cmd_quantize, "quantize a model with RTN, GPTQ or CLAQ"},
    {"synth", claq_cmd_synth, "write a synthetic model of a real architecture's shapes"},
};

static void usage(void)
{
    fprintf(stderr, "usage: claq <command> [options]   (claq <command> --help)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(stderr, "  %-11s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage();
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) != 0) continue;
        int rc = commands[i].fn(argc - 2, argv + 2);
        /* what a command printed is its result: a full disk or closed pipe is a failure */
        if (fflush(stdout) != 0 || ferror(stdout)) {
            fprintf(stderr, "claq %s: writing standard output: %s\n", argv[1], strerror(errno));
            return rc ? rc : 1;
        }
        return rc;
    }
    fprintf(stderr, "claq: unknown command '%s'\n", argv[1]);
    usage();
    return 2;
}
