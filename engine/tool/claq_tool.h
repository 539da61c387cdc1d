/* claq_tool.h — the `claq` command-line tool: one function per subcommand (each in its own
 * claq_<cmd>.c), plus the small argument parser they share. Exit codes: 0 ok, 1 runtime error
 * (bad file, bad input), 2 usage error. Single-threaded front end. */
#ifndef CLAQ_TOOL_H
#define CLAQ_TOOL_H

#include <stdint.h>

int claq_cmd_generate(int argc, char **argv);
int claq_cmd_perplexity(int argc, char **argv);
int claq_cmd_tokenize(int argc, char **argv);
int claq_cmd_logits(int argc, char **argv);
int claq_cmd_inspect(int argc, char **argv);
int claq_cmd_quantize(int argc, char **argv);
int claq_cmd_synth(int argc, char **argv);

/* Flag parsing: argv holds "--name value" pairs and bare "--flag"s after the subcommand.
 * A spec lists the accepted flags; claq_args_parse rejects unknown ones, missing values and
 * duplicates with a message on stderr and returns -1. */
typedef struct claq_arg {
    const char *name;     /* "--model" */
    int takes_value;      /* 1: needs a value; 0: boolean flag */
    const char *value;    /* filled: the value, or "1" for a present flag, NULL when absent */
    const char *help;     /* one line for the usage text */
} claq_arg;

int claq_args_parse(const char *cmd, claq_arg *spec, int n_spec, int argc, char **argv);
void claq_args_usage(const char *cmd, const char *synopsis, const claq_arg *spec, int n_spec);
const char *claq_arg_get(const claq_arg *spec, int n_spec, const char *name);
/* Strict number parsing: whole string must parse, within [lo, hi]; message on stderr. */
int claq_parse_int(const char *flag, const char *s, long long lo, long long hi, long long *out);
int claq_parse_float(const char *flag, const char *s, double lo, double hi, double *out);
/* Flags that take 8 or 16 (--cb-bits): s NULL gives dflt; anything but "8" or
 * "16" is a message on stderr naming flag and -1. */
int claq_parse_8_or_16(const char *flag, const char *s, int dflt, int *bits);
/* --embed-bits: NULL or 16 keeps the embedding's dtype (*bits = 0), 8, 7 or 6 asks for q8_row /
 * q7_row / q6_row (*bits = 8, 7 or 6), "shared" makes a tied model's packed head its embedding too
 * (*shared = 1); else a message and -1. */
int claq_parse_embed_bits(const char *s, int *bits, int *shared);

#endif
