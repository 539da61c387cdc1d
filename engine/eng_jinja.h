/* eng_jinja.h — a small Jinja interpreter for the subset Hugging Face chat templates use,
 * configured as transformers configures jinja2 (ImmutableSandboxedEnvironment, trim_blocks,
 * lstrip_blocks, loopcontrols, HF's tojson / raise_exception / strftime_now). A compiled
 * template is immutable: render it from any number of threads at once. Rendering tracks which
 * output bytes came from user text ("taint"), so callers can tokenize those bytes as plain text.
 * Does not do template inheritance, includes, imports, call blocks or autoescaping (a template
 * that uses them fails to compile with a message naming the tag). No global state. */
#ifndef ENG_JINJA_H
#define ENG_JINJA_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "eng_err.h"

/* Hard limits against hostile templates: exceeding one is an error, never a crash or unbounded
 * memory. The defaults are far above what real chat templates need. */
#define ENG_JINJA_MAX_SOURCE (1 << 20)          /* template text bytes */
#define ENG_JINJA_MAX_NESTING 100               /* parser: nested blocks / parentheses */
#define ENG_JINJA_MAX_OUTPUT (64u << 20)        /* rendered bytes (default) */
#define ENG_JINJA_MAX_MEMORY (128u << 20)       /* values made while rendering (default) */
#define ENG_JINJA_MAX_STEPS 1000000L            /* loop iterations + macro calls (default) */
#define ENG_JINJA_MAX_WORK (1ULL << 30)         /* bytes written into strings and scanned by
                                                   'in' over a render: well under a second */
#define ENG_JINJA_MAX_DEPTH 400                 /* evaluation recursion (macro calls, values) */

typedef struct eng_jinja eng_jinja;

/* Compiles src[0..len) (need not be NUL-terminated). 0 with *out (free with eng_jinja_free),
 * or ENG_E_FORMAT with err naming the problem and "line L col C"; ENG_E_RANGE when len is over
 * ENG_JINJA_MAX_SOURCE; ENG_E_NOMEM. */
int eng_jinja_compile(const char *src, size_t len, eng_jinja **out, eng_err *err);

/* Safe on NULL. */
void eng_jinja_free(eng_jinja *t);

typedef struct eng_jinja_opts {
    size_t max_output;          /* 0 = ENG_JINJA_MAX_OUTPUT */
    size_t max_memory;          /* 0 = ENG_JINJA_MAX_MEMORY */
    long max_steps;             /* 0 = ENG_JINJA_MAX_STEPS */
    int64_t now;                /* strftime_now's clock (Unix seconds, local time); 0 = time() */
    const char *const *tainted_vars; /* NULL-terminated names of top-level variables whose
                                   strings are user text (every string under them except the
                                   value of a "role" key), or NULL */
} eng_jinja_opts;

/* Renders t with the members of vars (a cJSON object, borrowed; NULL = none) as variables.
 * 0 with *out (malloc'd, NUL-terminated, caller frees), *len, and *spans (malloc'd, caller
 * frees; NULL when *n_spans is 0): *n_spans ranges spans[2k]..spans[2k + 1], ascending,
 * non-overlapping and merged, of output bytes that came from tainted strings unchanged (a
 * tainted string transformed other than by slicing, stripping, splitting or concatenation marks
 * its whole result tainted). On error (ENG_E_INVAL for a render error, including
 * raise_exception; ENG_E_RANGE for a limit; ENG_E_NOMEM) nothing is returned and err names the
 * problem and the template line. opts may be NULL. */
int eng_jinja_render(const eng_jinja *t, const cJSON *vars, const eng_jinja_opts *opts,
                     char **out, size_t *len, size_t **spans, int *n_spans, eng_err *err);

/* Whether the template's source text contains s (for callers that key behaviour on markup,
 * e.g. which end-of-turn token a template writes). */
int eng_jinja_source_has(const eng_jinja *t, const char *s);

#endif
