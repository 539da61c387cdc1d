/* eng_jinja_impl.h — what the Jinja interpreter's files share (not for use outside them): the
 * arena, the parsed tree (eng_jinja_parse.c builds it, immutable afterwards), values and the
 * render context (eng_jinja_eval.c), and the filter / test / method library
 * (eng_jinja_lib.c). */
#ifndef ENG_JINJA_IMPL_H
#define ENG_JINJA_IMPL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "eng_jinja.h"

/* ---- arena: bump allocation in malloc'd blocks, freed all at once; total bytes capped ---- */
typedef struct jj_block {
    struct jj_block *next;
    size_t cap, used;
    max_align_t data[];
} jj_block;

typedef struct jj_arena {
    jj_block *head;             /* owned list */
    size_t total;               /* bytes taken from malloc */
    size_t limit;               /* 0 = none */
    int refused;                /* 1 once the limit (not malloc) refused an allocation */
} jj_arena;

void *eng__jj_alloc(jj_arena *a, size_t n);     /* NULL: out of memory or over limit */
void eng__jj_arena_free(jj_arena *a);

/* ---- values ---------------------------------------------------------------------------- */
typedef enum jv_type {
    JV_UNDEF, JV_NONE, JV_BOOL, JV_INT, JV_FLOAT, JV_STR, JV_LIST, JV_DICT, JV_NS, JV_MACRO,
    JV_FUNC, JV_LOOP,
} jv_type;

typedef enum jfunc {
    JF_RAISE, JF_RANGE, JF_NAMESPACE, JF_STRFTIME, JF_DICT,
} jfunc;

struct jlist;
struct jdict;
struct jmacro;
struct jloop;
struct jstmt;

typedef struct jv {
    jv_type t;
    uint32_t nt;                /* STR: taint ranges in tr */
    union {
        int64_t i;              /* BOOL (0/1), INT */
        double f;               /* FLOAT */
        struct jlist *l;        /* LIST (tuples too) */
        struct jdict *d;        /* DICT, NS (mutable) */
        const struct jmacro *m; /* MACRO (eng_jinja_eval.c) */
        int fn;                 /* FUNC: jfunc */
        struct jloop *loop;     /* LOOP */
    } u;
    const char *p;              /* STR: bytes (not NUL-terminated); UNDEF: name or NULL */
    size_t n;                   /* STR: length in bytes */
    const size_t *tr;           /* STR: nt [begin, end) byte pairs, ascending, merged */
} jv;

typedef struct jlist {
    jv *v;
    size_t n;
    int tuple;                  /* prints as (a, b) */
} jlist;

typedef struct jdict {
    jv *k, *v;                  /* insertion order is kept (json.dumps / items order) */
    size_t n, cap;
} jdict;

typedef struct jloop {
    const jlist *items;         /* what is iterated */
    size_t i;                   /* current index */
    size_t cycle_pos;
} jloop;

/* ---- tree ------------------------------------------------------------------------------ */
typedef enum je_kind {
    JE_CONST, JE_NAME, JE_LIST, JE_TUPLE, JE_DICT, JE_ATTR, JE_ITEM, JE_SLICE, JE_CALL,
    JE_FILTER, JE_TEST, JE_NEG, JE_POS, JE_NOT, JE_BIN, JE_AND, JE_OR, JE_CMP, JE_COND,
    JE_BODY,                    /* the body of a {% filter %} block, as a filter's input */
} je_kind;

typedef enum jop {
    JOP_ADD, JOP_SUB, JOP_MUL, JOP_DIV, JOP_FDIV, JOP_MOD, JOP_POW, JOP_CAT,
    JOP_EQ, JOP_NE, JOP_LT, JOP_LE, JOP_GT, JOP_GE, JOP_IN, JOP_NOTIN,
} jop;

typedef struct jexpr {
    je_kind k;
    int line;
    const char *name;           /* NAME, ATTR, FILTER, TEST: NUL-terminated, in the arena */
    struct jexpr *a, *b, *c, *d; /* operands: ATTR/ITEM/CALL/FILTER/TEST/unary: a; BIN: a, b;
                                   SLICE: a[b:c:d]; COND: a if b else c; ITEM: a[b] */
    struct jexpr **args;        /* LIST/TUPLE items; DICT keys and values interleaved;
                                   CALL/FILTER/TEST positional arguments; CMP operands */
    int n_args;
    const char **kw;            /* CALL/FILTER/TEST keyword names */
    struct jexpr **kwv;
    int n_kw;
    jop op;                     /* BIN */
    jop *ops;                   /* CMP: n_args - 1 operators */
    int neg;                    /* TEST: "is not" */
    jv val;                     /* CONST */
} jexpr;

typedef enum js_kind {
    JS_TEXT, JS_OUT, JS_IF, JS_FOR, JS_SET, JS_SETBLOCK, JS_MACRO, JS_FILTER, JS_BREAK,
    JS_CONTINUE, JS_BLOCK,
} js_kind;

typedef struct jbody {
    struct jstmt **s;
    int n;
} jbody;

typedef struct jstmt {
    js_kind k;
    int line;
    const char *text;           /* TEXT (not NUL-terminated) */
    size_t text_n;
    jexpr *e;                   /* OUT, IF condition, FOR iterable, SET value, FILTER chain */
    jexpr *e2;                  /* FOR: the "if" filter */
    jbody body, orelse;         /* IF then / else; FOR body / else; SETBLOCK, MACRO, BLOCK */
    const char **names;         /* FOR / SET targets, MACRO parameters */
    int n_names;
    const char *attr;           /* SET ns.attr: names[0] is ns */
    jexpr **defaults;           /* MACRO: per parameter, or NULL */
} jstmt;

struct eng_jinja {
    jj_arena a;                 /* owns everything below */
    const char *src;            /* normalized source (newlines folded to \n) */
    size_t src_n;
    jbody root;
};

/* ---- render context -------------------------------------------------------------------- */
typedef struct jbuf {
    char *p;                    /* owned (malloc) */
    size_t n, cap;
    size_t *sp;                 /* owned: tainted ranges, pairs */
    int nsp, capsp;
} jbuf;

typedef struct jr {
    jj_arena a;                 /* values made while rendering */
    eng_err *err;
    int failed;
    int depth;
    long steps, max_steps;
    unsigned long long work;    /* bytes built or scanned so far (ENG_JINJA_MAX_WORK) */
    size_t max_output;
    int64_t now;
} jr;

/* Sets the render error once (later failures keep the first message); returns -1. */
int eng__jj_fail(jr *r, int code, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Charges n bytes of string work (built or scanned); -1 with ENG_E_RANGE past
 * ENG_JINJA_MAX_WORK: a template's time is bounded even where loops and memory are not
 * ('x' in a 10 MB string a thousand times). */
int eng__jj_work(jr *r, size_t n, int line);

/* An allocation failed: ENG_E_RANGE naming the memory limit when the limit refused it (a 400
 * for the template's author), else ENG_E_NOMEM. Returns -1. */
int eng__jj_oom(jr *r, int line);

/* Buffers (eng_jinja_eval.c). put appends n bytes whose tainted ranges (relative to s) are
 * tr[0..nt). -1 on the output limit or out of memory (error set). */
int eng__jb_put(jr *r, jbuf *b, const char *s, size_t n, const size_t *tr, uint32_t nt);
int eng__jb_puts(jr *r, jbuf *b, const char *s);
void eng__jb_free(jbuf *b);
/* The buffer's text as an arena string value (taint kept); -1 on memory. */
int eng__jb_value(jr *r, const jbuf *b, jv *out);

/* Values (eng_jinja_lib.c). */
int eng__jv_truthy(const jv *v);
int eng__jv_eq(const jv *a, const jv *b, int depth);
int eng__jv_tainted(const jv *v, int depth);   /* any tainted string inside */
/* str(v) appended to b (Python's str; repr for items inside lists and dicts). */
int eng__jv_str(jr *r, jbuf *b, const jv *v, int line);
/* The string value of str(v): v itself when a string. */
int eng__jv_to_str(jr *r, const jv *v, jv *out, int line);
jv eng__jv_mkstr(const char *p, size_t n);
int eng__jv_newstr(jr *r, const char *p, size_t n, int tainted, jv *out);
/* Substring [b, e) of s (byte offsets) with its taint narrowed exactly. */
int eng__jv_substr(jr *r, const jv *s, size_t b, size_t e, jv *out);
int eng__jv_dict_get(const jdict *d, const char *key, size_t n, jv *out);
int eng__jv_dict_set(jr *r, jdict *d, const jv *k, const jv *v, int line);
const char *eng__jv_type_name(const jv *v);
size_t eng__utf8_len(const char *p, size_t n);        /* code points */
size_t eng__utf8_next(const char *p, size_t n, size_t i); /* byte after the code point at i */
size_t eng__ws_at_start(const char *s, size_t n);     /* Python str.isspace() char, bytes */
size_t eng__ws_at_end(const char *s, size_t n);

/* Library entry points: 0 or -1 (error set). args are evaluated positional / keyword args. */
typedef struct jargs {
    jv *pos;
    int n_pos;
    const char **kw;
    jv *kwv;
    int n_kw;
} jargs;
int eng__jj_filter(jr *r, const char *name, jv *in, jargs *a, jv *out, int line);
int eng__jj_test(jr *r, const char *name, const jv *in, jargs *a, int *out, int line);
/* Method call recv.name(args): 0 with *out, 1 when recv has no such method, -1 on error. */
int eng__jj_method(jr *r, jv *recv, const char *name, jargs *a, jv *out, int line);
int eng__jj_filter_known(const char *name);
int eng__jj_test_known(const char *name);
int eng__jj_binop(jr *r, jop op, const jv *a, const jv *b, jv *out, int line);
/* Python slice semantics over a list or string; -1 on error. */
int eng__jj_slice(jr *r, const jv *obj, const jv *lo, const jv *hi, const jv *step, jv *out,
                  int line);
int eng__jj_getitem(jr *r, const jv *obj, const jv *key, jv *out, int line);

/* Parser (eng_jinja_parse.c): fills t->root; 0 or ENG_E_FORMAT / ENG_E_NOMEM with err set. */
int eng__jj_parse(eng_jinja *t, eng_err *err);

#endif
