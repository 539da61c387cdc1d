/* claq_args.c — the strict flag parser shared by the claq subcommands. */
#include "claq_tool.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int claq_args_parse(const char *cmd, claq_arg *spec, int n_spec, int argc, char **argv)
{
    for (int i = 0; i < n_spec; i++) spec[i].value = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int k = -1;
        for (int j = 0; j < n_spec; j++)
            if (strcmp(a, spec[j].name) == 0) { k = j; break; }
        if (k < 0) {
            fprintf(stderr, "claq %s: unknown argument '%s' (see claq %s --help)\n", cmd, a, cmd);
            return -1;
        }
        if (spec[k].value) {
            fprintf(stderr, "claq %s: %s given twice\n", cmd, a);
            return -1;
        }
        if (spec[k].takes_value) {
            if (i + 1 >= argc) {
                fprintf(stderr, "claq %s: %s needs a value\n", cmd, a);
                return -1;
            }
            spec[k].value = argv[++i];
        } else {
            spec[k].value = "1";
        }
    }
    return 0;
}

void claq_args_usage(const char *cmd, const char *synopsis, const claq_arg *spec, int n_spec)
{
    fprintf(stderr, "usage: claq %s %s\n", cmd, synopsis);
    for (int i = 0; i < n_spec; i++)
        fprintf(stderr, "  %-18s %s\n", spec[i].name, spec[i].help ? spec[i].help : "");
}

const char *claq_arg_get(const claq_arg *spec, int n_spec, const char *name)
{
    for (int i = 0; i < n_spec; i++)
        if (strcmp(spec[i].name, name) == 0) return spec[i].value;
    return NULL;
}

int claq_parse_int(const char *flag, const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "claq: %s must be an integer in [%lld, %lld], got '%s'\n", flag, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int claq_parse_float(const char *flag, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "claq: %s must be a number in [%g, %g], got '%s'\n", flag, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int claq_parse_8_or_16(const char *flag, const char *s, int dflt, int *bits)
{
    long long b = dflt;
    *bits = dflt;
    if (s && (claq_parse_int(flag, s, 8, 16, &b) || (b != 8 && b != 16))) {
        fprintf(stderr, "claq: %s must be 8 or 16\n", flag);
        return -1;
    }
    *bits = (int)b;
    return 0;
}

int claq_parse_embed_bits(const char *s, int *bits, int *shared)
{
    *bits = *shared = 0;
    if (!s || !strcmp(s, "16")) return 0;
    if (!strcmp(s, "shared")) {
        *shared = 1;
        return 0;
    }
    if (!strcmp(s, "8") || !strcmp(s, "7") || !strcmp(s, "6")) {
        *bits = s[0] - '0';
        return 0;
    }
    fprintf(stderr, "claq: --embed-bits must be 6, 7, 8, 16 or shared (got \"%s\")\n", s);
    return -1;
}
