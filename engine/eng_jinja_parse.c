/* eng_jinja_parse.c — Jinja source to tree: newline folding, the lexer (jinja2's rules with
 * trim_blocks and lstrip_blocks: whitespace control, comments, raw blocks, brace balancing
 * inside tags) and a recursive-descent parser following jinja2/parser.py's precedence. Unknown
 * filters and tests are compile errors, as in jinja2. Runs once per template, in the caller's
 * thread; the tree it builds is never written afterwards. Does not evaluate (eng_jinja_eval.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eng_jinja_impl.h"

typedef enum jt_kind {
    JT_EOF, JT_DATA, JT_VAR_BEGIN, JT_VAR_END, JT_BLOCK_BEGIN, JT_BLOCK_END, JT_NAME,
    JT_STRING, JT_INT, JT_FLOAT, JT_OP,
} jt_kind;

typedef struct jtok {
    jt_kind k;
    int line, col;
    const char *p;              /* DATA / NAME / OP: into the source; STRING: decoded (arena) */
    size_t n;
    int64_t i;
    double f;
} jtok;

typedef struct jp {
    eng_jinja *t;
    eng_err *err;
    const char *s;              /* normalized source */
    size_t n;
    jtok *tok;                  /* owned (malloc) */
    int nt, ct;
    int pos;                    /* parser cursor */
    int depth;                  /* parser recursion, against JP_MAX_RECURSION */
    int blocks;                 /* nested statement bodies, against ENG_JINJA_MAX_NESTING */
    int in_loop;                /* break / continue allowed */
    int failed;
} jp;

static void line_col(const jp *P, size_t off, int *line, int *col)
{
    int l = 1, c = 1;
    for (size_t i = 0; i < off && i < P->n; i++) {
        if (P->s[i] == '\n') {
            l++;
            c = 1;
        } else {
            c++;
        }
    }
    *line = l;
    *col = c;
}

__attribute__((format(printf, 3, 4)))
static int perr(jp *P, const jtok *at, const char *fmt, ...)
{
    if (P->failed)
        return -1;
    P->failed = 1;
    char msg[ENG_ERR_MSG - 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (at)
        eng_err_set(P->err, ENG_E_FORMAT, "template line %d col %d: %s", at->line, at->col, msg);
    else
        eng_err_set(P->err, ENG_E_FORMAT, "template: %s", msg);
    return -1;
}

static int perr_at(jp *P, size_t off, const char *fmt, const char *what)
{
    jtok t = {0};
    line_col(P, off, &t.line, &t.col);
    return perr(P, &t, fmt, what);
}

static void *palloc(jp *P, size_t n)
{
    void *p = eng__jj_alloc(&P->t->a, n);
    if (!p && !P->failed) {
        P->failed = 1;
        eng_err_set(P->err, ENG_E_NOMEM, "template: out of memory");
    }
    return p;
}

static char *pstrdup(jp *P, const char *s, size_t n)
{
    char *d = palloc(P, n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* ---- lexer ----------------------------------------------------------------------------- */

static jtok *push(jp *P, jt_kind k, size_t off, const char *p, size_t n)
{
    if (P->nt == P->ct) {
        int nc = P->ct ? 2 * P->ct : 256;
        jtok *nt = realloc(P->tok, (size_t)nc * sizeof(*nt));
        if (!nt) {
            perr(P, NULL, "out of memory");
            return NULL;
        }
        P->tok = nt;
        P->ct = nc;
    }
    jtok *t = &P->tok[P->nt++];
    memset(t, 0, sizeof(*t));
    t->k = k;
    line_col(P, off, &t->line, &t->col);
    t->p = p;
    t->n = n;
    return t;
}

static size_t skip_ws(const char *s, size_t n, size_t i)
{
    size_t k;
    while (i < n && (k = eng__ws_at_start(s + i, n - i)) > 0)
        i += k;
    return i;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static size_t put_utf8(char *o, unsigned long cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* A string literal at s[i] (the quote); Python's unicode-escape rules for the common escapes,
 * unknown escapes kept as written. Returns the index past the closing quote, 0 on error. */
static size_t lex_string(jp *P, size_t i)
{
    const char *s = P->s;
    char q = s[i];
    size_t j = i + 1;
    while (j < P->n && s[j] != q) {
        if (s[j] == '\\' && j + 1 < P->n)
            j++;
        j++;
    }
    if (j >= P->n) {
        perr_at(P, i, "%s", "unterminated string literal");
        return 0;
    }
    char *o = palloc(P, (j - i) * 2 + 1);   /* an escape never grows past 4 bytes for 2+ */
    if (!o)
        return 0;
    size_t on = 0;
    for (size_t k = i + 1; k < j; k++) {
        if (s[k] != '\\') {
            o[on++] = s[k];
            continue;
        }
        char c = s[++k];
        int digits = 0;
        switch (c) {
        case 'n': o[on++] = '\n'; break;
        case 't': o[on++] = '\t'; break;
        case 'r': o[on++] = '\r'; break;
        case 'b': o[on++] = '\b'; break;
        case 'f': o[on++] = '\f'; break;
        case 'v': o[on++] = '\v'; break;
        case 'a': o[on++] = '\a'; break;
        case '\\': o[on++] = '\\'; break;
        case '\'': o[on++] = '\''; break;
        case '"': o[on++] = '"'; break;
        case '\n': break;
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        default:
            if (c >= '0' && c <= '7') {
                unsigned long v = 0;
                int m = 0;
                while (m < 3 && k < j && s[k] >= '0' && s[k] <= '7') {
                    v = v * 8 + (unsigned long)(s[k] - '0');
                    k++;
                    m++;
                }
                k--;
                on += put_utf8(o + on, v);
            } else {
                o[on++] = '\\';
                o[on++] = c;
            }
        }
        if (digits) {
            unsigned long v = 0;
            for (int m = 0; m < digits; m++) {
                int h = k + 1 < j ? hexval((unsigned char)s[k + 1]) : -1;
                if (h < 0) {
                    perr_at(P, k, "%s", "truncated \\x / \\u escape in a string literal");
                    return 0;
                }
                v = v * 16 + (unsigned long)h;
                k++;
            }
            if (v > 0x10ffff) {
                perr_at(P, k, "%s", "escape out of the Unicode range in a string literal");
                return 0;
            }
            on += put_utf8(o + on, v);
        }
    }
    jtok *t = push(P, JT_STRING, i, o, on);
    return t ? j + 1 : 0;
}

static int is_name0(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

/* A number at s[i]: jinja2's integer and float rules (underscores between digits). */
static size_t lex_number(jp *P, size_t i)
{
    const char *s = P->s;
    size_t j = i;
    int is_float = 0;
    while (j < P->n && (is_digit(s[j]) || (s[j] == '_' && j + 1 < P->n && is_digit(s[j + 1]))))
        j++;
    if (j + 1 < P->n && s[j] == '.' && is_digit(s[j + 1])) {
        is_float = 1;
        j++;
        while (j < P->n && (is_digit(s[j]) || (s[j] == '_' && j + 1 < P->n &&
                                               is_digit(s[j + 1]))))
            j++;
    }
    if (j < P->n && (s[j] == 'e' || s[j] == 'E')) {
        size_t k = j + 1;
        if (k < P->n && (s[k] == '+' || s[k] == '-'))
            k++;
        if (k < P->n && is_digit(s[k])) {
            is_float = 1;
            j = k;
            while (j < P->n && is_digit(s[j]))
                j++;
        }
    }
    char buf[64];
    size_t bn = 0;
    for (size_t k = i; k < j && bn + 1 < sizeof(buf); k++)
        if (s[k] != '_')
            buf[bn++] = s[k];
    buf[bn] = '\0';
    if (j - i >= sizeof(buf)) {
        perr_at(P, i, "%s", "number literal too long");
        return 0;
    }
    jtok *t = push(P, is_float ? JT_FLOAT : JT_INT, i, s + i, j - i);
    if (!t)
        return 0;
    errno = 0;
    if (is_float) {
        t->f = strtod(buf, NULL);
    } else {
        t->i = strtoll(buf, NULL, 10);
        if (errno == ERANGE) {
            perr_at(P, i, "%s", "integer literal out of the 64-bit range");
            return 0;
        }
    }
    return j;
}

static const char *const k_ops[] = {
    "//", "**", "==", "!=", ">=", "<=", "+", "-", "*", "/", "%", "~", "[", "]", "(", ")",
    "{", "}", ">", "<", "=", ".", ":", "|", ",", ";",
};

/* Tokens of one {{ }} or {% %} tag from s[i] (past the opening and its sign) up to the end
 * marker; returns the index past the end marker and its whitespace handling, 0 on error. */
static size_t lex_tag(jp *P, size_t i, int block, size_t open_at)
{
    const char *s = P->s;
    size_t n = P->n;
    char stack[ENG_JINJA_MAX_NESTING];
    int depth = 0;
    for (;;) {
        i = skip_ws(s, n, i);
        if (i >= n) {
            perr_at(P, open_at, "%s", block ? "unexpected end of template: '%}' missing"
                                             : "unexpected end of template: '}}' missing");
            return 0;
        }
        if (depth == 0) {
            if (block) {
                if (s[i] == '-' && i + 2 < n && s[i + 1] == '%' && s[i + 2] == '}') {
                    if (!push(P, JT_BLOCK_END, i, NULL, 0))
                        return 0;
                    return skip_ws(s, n, i + 3);
                }
                if (s[i] == '+' && i + 2 < n && s[i + 1] == '%' && s[i + 2] == '}')
                    return push(P, JT_BLOCK_END, i, NULL, 0) ? i + 3 : 0;
                if (s[i] == '%' && i + 1 < n && s[i + 1] == '}') {
                    if (!push(P, JT_BLOCK_END, i, NULL, 0))
                        return 0;
                    return i + 2 < n && s[i + 2] == '\n' ? i + 3 : i + 2;   /* trim_blocks */
                }
            } else {
                if (s[i] == '-' && i + 2 < n && s[i + 1] == '}' && s[i + 2] == '}') {
                    if (!push(P, JT_VAR_END, i, NULL, 0))
                        return 0;
                    return skip_ws(s, n, i + 3);
                }
                if (s[i] == '}' && i + 1 < n && s[i + 1] == '}')
                    return push(P, JT_VAR_END, i, NULL, 0) ? i + 2 : 0;
            }
        }
        unsigned char c = (unsigned char)s[i];
        if (c == '\'' || c == '"') {
            i = lex_string(P, i);
            if (!i)
                return 0;
            continue;
        }
        if (is_digit(c)) {
            i = lex_number(P, i);
            if (!i)
                return 0;
            continue;
        }
        if (is_name0(c)) {
            size_t j = i;
            while (j < n && (is_name0((unsigned char)s[j]) || is_digit(s[j])))
                j++;
            if (!push(P, JT_NAME, i, s + i, j - i))
                return 0;
            i = j;
            continue;
        }
        size_t k;
        for (k = 0; k < sizeof(k_ops) / sizeof(k_ops[0]); k++) {
            size_t on = strlen(k_ops[k]);
            if (i + on <= n && memcmp(s + i, k_ops[k], on) == 0)
                break;
        }
        if (k == sizeof(k_ops) / sizeof(k_ops[0])) {
            char what[8];
            snprintf(what, sizeof(what), "%c", c >= 0x20 && c < 0x7f ? c : '?');
            perr_at(P, i, "unexpected character '%s' in a tag", what);
            return 0;
        }
        const char *op = k_ops[k];
        size_t on = strlen(op);
        if (op[0] == '(' || op[0] == '[' || op[0] == '{') {
            if (depth == ENG_JINJA_MAX_NESTING) {
                perr_at(P, i, "%s", "brackets nested too deeply");
                return 0;
            }
            stack[depth++] = op[0] == '(' ? ')' : op[0] == '[' ? ']' : '}';
        } else if (op[0] == ')' || op[0] == ']' || op[0] == '}') {
            if (depth == 0 || stack[depth - 1] != op[0]) {
                perr_at(P, i, "unexpected '%s'", op);
                return 0;
            }
            depth--;
        }
        if (!push(P, JT_OP, i, op, on))
            return 0;
        i += on;
    }
}

/* Data before a tag: the "-" sign strips all whitespace before it; otherwise lstrip_blocks
 * removes spaces between the line start and a block or comment tag (not a {{ }}). */
static int emit_data(jp *P, size_t from, size_t to, char sign, int is_var, int line_starting)
{
    const char *s = P->s;
    if (sign == '-') {
        size_t k;
        while (to > from && (k = eng__ws_at_end(s + from, to - from)) > 0)
            to -= k;
    } else if (sign != '+' && !is_var) {
        size_t l = to;
        while (l > from && s[l - 1] != '\n')
            l--;
        if ((l > from || line_starting) && l < to) {
            size_t k = l;
            size_t w;
            while (k < to && s[k] != '\n' && (w = eng__ws_at_start(s + k, to - k)) > 0)
                k += w;
            if (k == to)
                to = l;
        }
    }
    if (to > from && !push(P, JT_DATA, from, s + from, to - from))
        return -1;
    return 0;
}

/* "{%[-+]? raw [-]?%}" at s[i]: returns the index past it, or 0 when it is not a raw tag. */
static size_t raw_open(const char *s, size_t n, size_t i, char *sign, int *strip_after)
{
    size_t j = i + 2;
    *sign = 0;
    if (j < n && (s[j] == '-' || s[j] == '+'))
        *sign = s[j++];
    j = skip_ws(s, n, j);
    if (j + 3 > n || memcmp(s + j, "raw", 3) != 0)
        return 0;
    j = skip_ws(s, n, j + 3);
    *strip_after = 0;
    if (j + 3 <= n && s[j] == '-' && s[j + 1] == '%' && s[j + 2] == '}') {
        *strip_after = 1;
        return j + 3;
    }
    if (j + 2 <= n && s[j] == '%' && s[j + 1] == '}')
        return j + 2;
    return 0;
}

static int lex(jp *P)
{
    const char *s = P->s;
    size_t n = P->n, i = 0;
    int line_starting = 1;
    while (i < n) {
        size_t j = i;
        while (j + 1 < n && !(s[j] == '{' && (s[j + 1] == '{' || s[j + 1] == '%' ||
                                              s[j + 1] == '#')))
            j++;
        if (j + 1 >= n) {
            if (!push(P, JT_DATA, i, s + i, n - i))
                return -1;
            break;
        }
        char kind = s[j + 1];
        char sign = j + 2 < n && (s[j + 2] == '-' || s[j + 2] == '+') ? s[j + 2] : 0;
        char rsign;
        int strip_after;
        size_t rend = kind == '%' ? raw_open(s, n, j, &rsign, &strip_after) : 0;
        if (emit_data(P, i, j, sign, kind == '{', line_starting))
            return -1;
        if (rend) {
            /* raw: find "{%[-+]? endraw [-+]?%}" */
            size_t b = strip_after ? skip_ws(s, n, rend) : rend;
            size_t k = b, e = 0, after = 0;
            char esign = 0;
            for (; k + 1 < n; k++) {
                if (s[k] != '{' || s[k + 1] != '%')
                    continue;
                size_t m = k + 2;
                esign = m < n && (s[m] == '-' || s[m] == '+') ? s[m] : 0;
                if (esign)
                    m++;
                m = skip_ws(s, n, m);
                if (m + 6 > n || memcmp(s + m, "endraw", 6) != 0)
                    continue;
                m = skip_ws(s, n, m + 6);
                if (m + 3 <= n && s[m] == '-' && s[m + 1] == '%' && s[m + 2] == '}') {
                    after = skip_ws(s, n, m + 3);
                } else if (m + 3 <= n && s[m] == '+' && s[m + 1] == '%' && s[m + 2] == '}') {
                    after = m + 3;
                } else if (m + 2 <= n && s[m] == '%' && s[m + 1] == '}') {
                    after = m + 2 < n && s[m + 2] == '\n' ? m + 3 : m + 2;
                } else {
                    continue;
                }
                e = k;
                break;
            }
            if (!after)
                return perr_at(P, j, "%s", "{% raw %} without {% endraw %}");
            if (emit_data(P, b, e, esign, 0, 0))
                return -1;
            line_starting = s[after - 1] == '\n';
            i = after;
            continue;
        }
        size_t body = j + 2 + (sign ? 1 : 0);
        if (kind == '#') {
            size_t k = body;
            while (k + 1 < n && !(s[k] == '#' && s[k + 1] == '}'))
                k++;
            if (k + 1 >= n)
                return perr_at(P, j, "%s", "missing end of comment tag '#}'");
            if (k > body && s[k - 1] == '-')
                i = skip_ws(s, n, k + 2);
            else if (k > body && s[k - 1] == '+')
                i = k + 2;
            else
                i = k + 2 < n && s[k + 2] == '\n' ? k + 3 : k + 2;
        } else {
            if (!push(P, kind == '%' ? JT_BLOCK_BEGIN : JT_VAR_BEGIN, j, NULL, 0))
                return -1;
            i = lex_tag(P, body, kind == '%', j);
            if (!i)
                return -1;
        }
        line_starting = s[i - 1] == '\n';
    }
    return push(P, JT_EOF, n, NULL, 0) ? 0 : -1;
}

/* ---- parser: expressions ---------------------------------------------------------------- */

static jtok *cur(jp *P)
{
    return &P->tok[P->pos];
}

static jtok *peek(jp *P, int k)
{
    int i = P->pos + k;
    return &P->tok[i < P->nt ? i : P->nt - 1];
}

static int is_op(const jtok *t, const char *op)
{
    return t->k == JT_OP && t->n == strlen(op) && memcmp(t->p, op, t->n) == 0;
}

static int is_name(const jtok *t, const char *name)
{
    return t->k == JT_NAME && t->n == strlen(name) && memcmp(t->p, name, t->n) == 0;
}

static void advance(jp *P)
{
    if (P->tok[P->pos].k != JT_EOF)
        P->pos++;
}

static const char *tok_desc(const jtok *t, char *buf, size_t cap)
{
    switch (t->k) {
    case JT_EOF: return "end of template";
    case JT_DATA: return "template text";
    case JT_VAR_BEGIN: return "'{{'";
    case JT_VAR_END: return "'}}'";
    case JT_BLOCK_BEGIN: return "'{%'";
    case JT_BLOCK_END: return "'%}'";
    case JT_STRING: return "a string";
    case JT_INT: case JT_FLOAT: return "a number";
    default:
        snprintf(buf, cap, "'%.*s'", (int)(t->n < 40 ? t->n : 40), t->p);
        return buf;
    }
}

static int expect_op(jp *P, const char *op)
{
    if (is_op(cur(P), op)) {
        advance(P);
        return 0;
    }
    char b[64];
    return perr(P, cur(P), "expected '%s', got %s", op, tok_desc(cur(P), b, sizeof(b)));
}

static jexpr *mk(jp *P, je_kind k, int line)
{
    jexpr *e = palloc(P, sizeof(*e));
    if (e) {
        memset(e, 0, sizeof(*e));
        e->k = k;
        e->line = line;
    }
    return e;
}

/* A growable pointer list built in malloc memory, then copied into the arena. */
typedef struct plist {
    void **v;
    int n, cap;
} plist;

static int pl_push(jp *P, plist *l, void *x)
{
    if (l->n == l->cap) {
        int nc = l->cap ? 2 * l->cap : 8;
        void **nv = realloc(l->v, (size_t)nc * sizeof(*nv));
        if (!nv)
            return perr(P, NULL, "out of memory");
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = x;
    return 0;
}

static void **pl_done(jp *P, plist *l)
{
    void **out = NULL;
    if (l->n > 0) {
        out = palloc(P, (size_t)l->n * sizeof(*out));
        if (out)
            memcpy(out, l->v, (size_t)l->n * sizeof(*out));
    }
    free(l->v);
    l->v = NULL;
    return out;
}

static jexpr *parse_expr(jp *P, int with_cond);
static jexpr *parse_unary(jp *P, int with_filter);
static jexpr *parse_primary(jp *P);
static jexpr *parse_postfix(jp *P, jexpr *e);

/* The parser's C recursion: a bracket level costs about three frames (expression, unary,
 * primary) and the lexer allows ENG_JINJA_MAX_NESTING brackets per tag, so the documented 100
 * levels fit; blocks are counted apart (parse_body). */
#define JP_MAX_RECURSION (6 * ENG_JINJA_MAX_NESTING)

static int enter(jp *P)
{
    if (++P->depth > JP_MAX_RECURSION)
        return perr(P, cur(P), "expression nested too deeply (over %d levels of operators and "
                    "brackets)", JP_MAX_RECURSION);
    return 0;
}

/* "(" args ")" into e->args / e->kw (cursor on "("). */
static int parse_call_args(jp *P, jexpr *e)
{
    if (expect_op(P, "("))
        return -1;
    plist pos = {0}, kw = {0}, kwv = {0};
    int rc = -1;
    while (!is_op(cur(P), ")")) {
        if (pos.n + kw.n > 0 && expect_op(P, ","))
            goto out;
        if (is_op(cur(P), ")"))
            break;
        if (is_op(cur(P), "*") || is_op(cur(P), "**")) {
            perr(P, cur(P), "*args / **kwargs in calls are not supported");
            goto out;
        }
        if (cur(P)->k == JT_NAME && is_op(peek(P, 1), "=")) {
            char *name = pstrdup(P, cur(P)->p, cur(P)->n);
            advance(P);
            advance(P);
            jexpr *v = parse_expr(P, 1);
            if (!name || !v || pl_push(P, &kw, name) || pl_push(P, &kwv, v))
                goto out;
        } else {
            if (kw.n > 0) {
                perr(P, cur(P), "positional argument after a keyword argument");
                goto out;
            }
            jexpr *v = parse_expr(P, 1);
            if (!v || pl_push(P, &pos, v))
                goto out;
        }
    }
    advance(P);
    rc = 0;
out:
    e->n_args = pos.n;
    e->args = (jexpr **)pl_done(P, &pos);
    e->n_kw = kw.n;
    e->kw = (const char **)pl_done(P, &kw);
    e->kwv = (jexpr **)pl_done(P, &kwv);
    return rc || P->failed ? -1 : 0;
}

/* Tuple: expr ("," expr)* without parentheses, as jinja2's parse_tuple (the tuple ends before
 * '%}', '}}', ')' and the names in `ends`). */
static int tuple_end(jp *P, const char *const *ends)
{
    const jtok *t = cur(P);
    if (t->k == JT_VAR_END || t->k == JT_BLOCK_END || t->k == JT_EOF || is_op(t, ")") ||
        is_op(t, "="))
        return 1;
    for (; ends && *ends; ends++)
        if (is_name(t, *ends))
            return 1;
    return 0;
}

static jexpr *parse_tuple(jp *P, int with_cond, const char *const *ends, int explicit_parens)
{
    int line = cur(P)->line;
    plist items = {0};
    int is_tuple = 0;
    for (;;) {
        if (items.n > 0) {
            if (!is_op(cur(P), ","))
                break;
            advance(P);
            is_tuple = 1;
        }
        if (tuple_end(P, ends))
            break;
        jexpr *e = parse_expr(P, with_cond);
        if (!e || pl_push(P, &items, e)) {
            free(items.v);
            return NULL;
        }
    }
    if (items.n == 0 && !explicit_parens) {
        free(items.v);
        char b[64];
        perr(P, cur(P), "expected an expression, got %s", tok_desc(cur(P), b, sizeof(b)));
        return NULL;
    }
    if (items.n == 1 && !is_tuple) {
        jexpr *e = items.v[0];
        free(items.v);
        return e;
    }
    jexpr *t = mk(P, JE_TUPLE, line);
    int n = items.n;
    void **v = pl_done(P, &items);
    if (!t)
        return NULL;
    t->args = (jexpr **)v;
    t->n_args = n;
    return t;
}

static jexpr *parse_primary(jp *P)
{
    jtok *t = cur(P);
    jexpr *e = NULL;
    if (enter(P))
        return NULL;
    if (t->k == JT_NAME) {
        e = mk(P, JE_CONST, t->line);
        if (!e)
            return NULL;
        if (is_name(t, "true") || is_name(t, "True")) {
            e->val.t = JV_BOOL;
            e->val.u.i = 1;
        } else if (is_name(t, "false") || is_name(t, "False")) {
            e->val.t = JV_BOOL;
        } else if (is_name(t, "none") || is_name(t, "None")) {
            e->val.t = JV_NONE;
        } else {
            e->k = JE_NAME;
            e->name = pstrdup(P, t->p, t->n);
        }
        advance(P);
    } else if (t->k == JT_STRING) {
        /* adjacent literals concatenate */
        size_t total = 0;
        int k = P->pos;
        while (P->tok[k].k == JT_STRING)
            total += P->tok[k++].n;
        char *buf = palloc(P, total + 1);
        e = mk(P, JE_CONST, t->line);
        if (!buf || !e)
            return NULL;
        size_t o = 0;
        while (cur(P)->k == JT_STRING) {
            memcpy(buf + o, cur(P)->p, cur(P)->n);
            o += cur(P)->n;
            advance(P);
        }
        e->val = eng__jv_mkstr(buf, o);
    } else if (t->k == JT_INT || t->k == JT_FLOAT) {
        e = mk(P, JE_CONST, t->line);
        if (!e)
            return NULL;
        if (t->k == JT_INT) {
            e->val.t = JV_INT;
            e->val.u.i = t->i;
        } else {
            e->val.t = JV_FLOAT;
            e->val.u.f = t->f;
        }
        advance(P);
    } else if (is_op(t, "(")) {
        advance(P);
        e = parse_tuple(P, 1, NULL, 1);
        if (!e || expect_op(P, ")"))
            return NULL;
    } else if (is_op(t, "[")) {
        advance(P);
        plist items = {0};
        while (!is_op(cur(P), "]")) {
            if (items.n > 0 && expect_op(P, ","))
                break;
            if (is_op(cur(P), "]"))
                break;
            jexpr *x = parse_expr(P, 1);
            if (!x || pl_push(P, &items, x))
                break;
        }
        int n = items.n;
        void **v = pl_done(P, &items);
        if (P->failed || expect_op(P, "]"))
            return NULL;
        e = mk(P, JE_LIST, t->line);
        if (!e)
            return NULL;
        e->args = (jexpr **)v;
        e->n_args = n;
    } else if (is_op(t, "{")) {
        advance(P);
        plist items = {0};
        while (!is_op(cur(P), "}")) {
            if (items.n > 0 && expect_op(P, ","))
                break;
            if (is_op(cur(P), "}"))
                break;
            jexpr *k = parse_expr(P, 1);
            if (!k || expect_op(P, ":"))
                break;
            jexpr *v = parse_expr(P, 1);
            if (!v || pl_push(P, &items, k) || pl_push(P, &items, v))
                break;
        }
        int n = items.n;
        void **v = pl_done(P, &items);
        if (P->failed || expect_op(P, "}"))
            return NULL;
        e = mk(P, JE_DICT, t->line);
        if (!e)
            return NULL;
        e->args = (jexpr **)v;
        e->n_args = n;
    } else {
        char b[64];
        perr(P, t, "unexpected %s", tok_desc(t, b, sizeof(b)));
        return NULL;
    }
    P->depth--;
    return e;
}

static jexpr *parse_postfix(jp *P, jexpr *e)
{
    while (e) {
        jtok *t = cur(P);
        if (is_op(t, ".")) {
            advance(P);
            jtok *a = cur(P);
            if (a->k == JT_NAME) {
                jexpr *x = mk(P, JE_ATTR, a->line);
                if (!x)
                    return NULL;
                x->a = e;
                x->name = pstrdup(P, a->p, a->n);
                advance(P);
                e = x;
            } else if (a->k == JT_INT) {
                jexpr *x = mk(P, JE_ITEM, a->line), *k = mk(P, JE_CONST, a->line);
                if (!x || !k)
                    return NULL;
                k->val.t = JV_INT;
                k->val.u.i = a->i;
                x->a = e;
                x->b = k;
                advance(P);
                e = x;
            } else {
                char b[64];
                perr(P, a, "expected an attribute name after '.', got %s",
                     tok_desc(a, b, sizeof(b)));
                return NULL;
            }
        } else if (is_op(t, "[")) {
            advance(P);
            jexpr *parts[3] = {NULL, NULL, NULL};
            int np = 0, slice = 0;
            for (;;) {
                if (is_op(cur(P), ":")) {
                    if (np == 2)
                        return perr(P, cur(P), "too many ':' in a slice"), NULL;
                    slice = 1;
                    np++;
                    advance(P);
                    continue;
                }
                if (is_op(cur(P), "]"))
                    break;
                if (parts[np])
                    return perr(P, cur(P), "expected ':' or ']' in a subscript"), NULL;
                parts[np] = parse_expr(P, 1);
                if (!parts[np])
                    return NULL;
            }
            advance(P);
            jexpr *x = mk(P, slice ? JE_SLICE : JE_ITEM, t->line);
            if (!x)
                return NULL;
            if (!slice && !parts[0])
                return perr(P, t, "empty subscript '[]'"), NULL;
            x->a = e;
            x->b = parts[0];
            x->c = parts[1];
            x->d = parts[2];
            e = x;
        } else if (is_op(t, "(")) {
            jexpr *x = mk(P, JE_CALL, t->line);
            if (!x)
                return NULL;
            x->a = e;
            if (parse_call_args(P, x))
                return NULL;
            e = x;
        } else {
            break;
        }
    }
    return e;
}

static jexpr *parse_filter(jp *P, jexpr *in)
{
    jtok *t = cur(P);
    if (t->k != JT_NAME) {
        char b[64];
        perr(P, t, "expected a filter name after '|', got %s", tok_desc(t, b, sizeof(b)));
        return NULL;
    }
    jexpr *f = mk(P, JE_FILTER, t->line);
    if (!f)
        return NULL;
    f->a = in;
    f->name = pstrdup(P, t->p, t->n);
    if (!f->name)
        return NULL;
    if (!eng__jj_filter_known(f->name)) {
        perr(P, t, "no filter named '%s'", f->name);
        return NULL;
    }
    advance(P);
    if (is_op(cur(P), "(") && parse_call_args(P, f))
        return NULL;
    return f;
}

static jexpr *parse_filter_expr(jp *P, jexpr *e)
{
    while (e) {
        jtok *t = cur(P);
        if (is_op(t, "|")) {
            advance(P);
            e = parse_filter(P, e);
        } else if (is_name(t, "is")) {
            advance(P);
            jexpr *x = mk(P, JE_TEST, t->line);
            if (!x)
                return NULL;
            x->a = e;
            if (is_name(cur(P), "not")) {
                x->neg = 1;
                advance(P);
            }
            jtok *nt = cur(P);
            if (nt->k != JT_NAME) {
                char b[64];
                perr(P, nt, "expected a test name after 'is', got %s",
                     tok_desc(nt, b, sizeof(b)));
                return NULL;
            }
            x->name = pstrdup(P, nt->p, nt->n);
            if (!x->name)
                return NULL;
            if (!eng__jj_test_known(x->name)) {
                perr(P, nt, "no test named '%s'", x->name);
                return NULL;
            }
            advance(P);
            jtok *a = cur(P);
            if (is_op(a, "(")) {
                if (parse_call_args(P, x))
                    return NULL;
            } else if ((a->k == JT_NAME || a->k == JT_STRING || a->k == JT_INT ||
                        a->k == JT_FLOAT || is_op(a, "[") || is_op(a, "{")) &&
                       !is_name(a, "else") && !is_name(a, "or") && !is_name(a, "and")) {
                if (is_name(a, "is"))
                    return perr(P, a, "you cannot chain multiple tests with 'is'"), NULL;
                jexpr *arg = parse_postfix(P, parse_primary(P));
                if (!arg)
                    return NULL;
                x->args = palloc(P, sizeof(*x->args));
                if (!x->args)
                    return NULL;
                x->args[0] = arg;
                x->n_args = 1;
            }
            e = x;
        } else if (is_op(t, "(")) {
            jexpr *x = mk(P, JE_CALL, t->line);
            if (!x)
                return NULL;
            x->a = e;
            if (parse_call_args(P, x))
                return NULL;
            e = x;
        } else {
            break;
        }
    }
    return e;
}

static jexpr *parse_unary(jp *P, int with_filter)
{
    jtok *t = cur(P);
    jexpr *e;
    if (enter(P))
        return NULL;
    if (is_op(t, "-") || is_op(t, "+")) {
        advance(P);
        e = mk(P, t->p[0] == '-' ? JE_NEG : JE_POS, t->line);
        if (!e || !(e->a = parse_unary(P, 0)))
            return NULL;
    } else {
        e = parse_primary(P);
    }
    e = parse_postfix(P, e);
    if (with_filter)
        e = parse_filter_expr(P, e);
    P->depth--;
    return e;
}

static jexpr *binop(jp *P, jexpr *a, jop op, jexpr *b, int line)
{
    if (!a || !b)
        return NULL;
    jexpr *e = mk(P, JE_BIN, line);
    if (e) {
        e->a = a;
        e->b = b;
        e->op = op;
    }
    return e;
}

static jexpr *parse_pow(jp *P)
{
    jexpr *e = parse_unary(P, 1);
    while (e && is_op(cur(P), "**")) {
        int line = cur(P)->line;
        advance(P);
        e = binop(P, e, JOP_POW, parse_unary(P, 1), line);
    }
    return e;
}

static jexpr *parse_math2(jp *P)
{
    jexpr *e = parse_pow(P);
    for (;;) {
        jtok *t = cur(P);
        jop op;
        if (is_op(t, "*"))
            op = JOP_MUL;
        else if (is_op(t, "/"))
            op = JOP_DIV;
        else if (is_op(t, "//"))
            op = JOP_FDIV;
        else if (is_op(t, "%"))
            op = JOP_MOD;
        else
            return e;
        if (!e)
            return NULL;
        advance(P);
        e = binop(P, e, op, parse_pow(P), t->line);
    }
}

static jexpr *parse_concat(jp *P)
{
    jexpr *e = parse_math2(P);
    while (e && is_op(cur(P), "~")) {
        int line = cur(P)->line;
        advance(P);
        e = binop(P, e, JOP_CAT, parse_math2(P), line);
    }
    return e;
}

static jexpr *parse_math1(jp *P)
{
    jexpr *e = parse_concat(P);
    while (e && (is_op(cur(P), "+") || is_op(cur(P), "-"))) {
        jtok *t = cur(P);
        advance(P);
        e = binop(P, e, t->p[0] == '+' ? JOP_ADD : JOP_SUB, parse_concat(P), t->line);
    }
    return e;
}

static jexpr *parse_compare(jp *P)
{
    int line = cur(P)->line;
    jexpr *first = parse_math1(P);
    if (!first)
        return NULL;
    plist operands = {0};
    jop ops[64];
    int nops = 0;
    if (pl_push(P, &operands, first))
        return NULL;
    for (;;) {
        jtok *t = cur(P);
        jop op;
        if (is_op(t, "=="))
            op = JOP_EQ;
        else if (is_op(t, "!="))
            op = JOP_NE;
        else if (is_op(t, "<"))
            op = JOP_LT;
        else if (is_op(t, "<="))
            op = JOP_LE;
        else if (is_op(t, ">"))
            op = JOP_GT;
        else if (is_op(t, ">="))
            op = JOP_GE;
        else if (is_name(t, "in"))
            op = JOP_IN;
        else if (is_name(t, "not") && is_name(peek(P, 1), "in")) {
            op = JOP_NOTIN;
            advance(P);
        } else
            break;
        if (nops == 64) {
            free(operands.v);
            return perr(P, t, "comparison chain too long"), NULL;
        }
        advance(P);
        jexpr *x = parse_math1(P);
        if (!x || pl_push(P, &operands, x)) {
            free(operands.v);
            return NULL;
        }
        ops[nops++] = op;
    }
    if (nops == 0) {
        free(operands.v);
        return first;
    }
    jexpr *e = mk(P, JE_CMP, line);
    int n = operands.n;
    void **v = pl_done(P, &operands);
    jop *o = palloc(P, (size_t)nops * sizeof(*o));
    if (!e || !v || !o)
        return NULL;
    memcpy(o, ops, (size_t)nops * sizeof(*o));
    e->args = (jexpr **)v;
    e->n_args = n;
    e->ops = o;
    return e;
}

static jexpr *parse_not(jp *P)
{
    if (is_name(cur(P), "not")) {
        int line = cur(P)->line;
        advance(P);
        if (enter(P))
            return NULL;
        jexpr *e = mk(P, JE_NOT, line);
        if (!e || !(e->a = parse_not(P)))
            return NULL;
        P->depth--;
        return e;
    }
    return parse_compare(P);
}

static jexpr *parse_and(jp *P)
{
    jexpr *e = parse_not(P);
    while (e && is_name(cur(P), "and")) {
        int line = cur(P)->line;
        advance(P);
        jexpr *x = mk(P, JE_AND, line);
        if (!x || !(x->b = parse_not(P)))
            return NULL;
        x->a = e;
        e = x;
    }
    return e;
}

static jexpr *parse_or(jp *P)
{
    jexpr *e = parse_and(P);
    while (e && is_name(cur(P), "or")) {
        int line = cur(P)->line;
        advance(P);
        jexpr *x = mk(P, JE_OR, line);
        if (!x || !(x->b = parse_and(P)))
            return NULL;
        x->a = e;
        e = x;
    }
    return e;
}

static jexpr *parse_expr(jp *P, int with_cond)
{
    if (enter(P))
        return NULL;
    jexpr *e = parse_or(P);
    while (with_cond && e && is_name(cur(P), "if")) {
        int line = cur(P)->line;
        advance(P);
        jexpr *x = mk(P, JE_COND, line);
        if (!x || !(x->b = parse_or(P)))
            return NULL;
        x->a = e;
        if (is_name(cur(P), "else")) {
            advance(P);
            if (!(x->c = parse_expr(P, 1)))
                return NULL;
        }
        e = x;
    }
    P->depth--;
    return e;
}

/* ---- parser: statements ----------------------------------------------------------------- */

static int parse_body(jp *P, jbody *b, const char *const *ends);

static int expect_block_end(jp *P)
{
    if (cur(P)->k == JT_BLOCK_END) {
        advance(P);
        return 0;
    }
    char b[64];
    return perr(P, cur(P), "expected '%%}', got %s", tok_desc(cur(P), b, sizeof(b)));
}

static jstmt *mks(jp *P, js_kind k, int line)
{
    jstmt *s = palloc(P, sizeof(*s));
    if (s) {
        memset(s, 0, sizeof(*s));
        s->k = k;
        s->line = line;
    }
    return s;
}

static char *expect_name(jp *P, const char *what)
{
    jtok *t = cur(P);
    if (t->k != JT_NAME) {
        char b[64];
        perr(P, t, "expected %s, got %s", what, tok_desc(t, b, sizeof(b)));
        return NULL;
    }
    advance(P);
    return pstrdup(P, t->p, t->n);
}

/* Targets of for / set: a name, or names separated by commas (optionally in parentheses). */
static int parse_targets(jp *P, jstmt *s)
{
    plist names = {0};
    int paren = is_op(cur(P), "(");
    if (paren)
        advance(P);
    for (;;) {
        char *nm = expect_name(P, "a variable name");
        if (!nm || pl_push(P, &names, nm)) {
            free(names.v);
            return -1;
        }
        if (!is_op(cur(P), ","))
            break;
        advance(P);
        if (paren && is_op(cur(P), ")"))
            break;
    }
    if (paren && expect_op(P, ")")) {
        free(names.v);
        return -1;
    }
    s->n_names = names.n;
    s->names = (const char **)pl_done(P, &names);
    return P->failed ? -1 : 0;
}

static const char *const k_end_if[] = {"elif", "else", "endif", NULL};
static const char *const k_end_for[] = {"else", "endfor", NULL};

static jstmt *parse_if(jp *P, int line)
{
    jstmt *s = mks(P, JS_IF, line);
    if (!s || !(s->e = parse_tuple(P, 1, NULL, 0)) || expect_block_end(P) ||
        parse_body(P, &s->body, k_end_if))
        return NULL;
    jtok *t = cur(P);   /* the name that ended the body; the {% was consumed */
    advance(P);
    if (is_name(t, "elif")) {
        jstmt *e = parse_if(P, t->line);
        if (!e)
            return NULL;
        s->orelse.s = palloc(P, sizeof(*s->orelse.s));
        if (!s->orelse.s)
            return NULL;
        s->orelse.s[0] = e;
        s->orelse.n = 1;
        return s;
    }
    if (is_name(t, "else")) {
        static const char *const end[] = {"endif", NULL};
        if (expect_block_end(P) || parse_body(P, &s->orelse, end))
            return NULL;
        advance(P);
    }
    return expect_block_end(P) ? NULL : s;
}

static jstmt *parse_stmt(jp *P)
{
    jtok *t = cur(P);
    int line = t->line;
    if (t->k != JT_NAME) {
        char b[64];
        perr(P, t, "expected a tag name after '{%%', got %s", tok_desc(t, b, sizeof(b)));
        return NULL;
    }
    advance(P);
    jstmt *s = NULL;
    if (is_name(t, "if"))
        return parse_if(P, line);
    if (is_name(t, "for")) {
        static const char *const ends_in[] = {"in", NULL};
        static const char *const ends_iter[] = {"recursive", "if", NULL};
        s = mks(P, JS_FOR, line);
        if (!s || parse_targets(P, s))
            return NULL;
        (void)ends_in;
        if (!is_name(cur(P), "in")) {
            char b[64];
            perr(P, cur(P), "expected 'in' in a for loop, got %s", tok_desc(cur(P), b, 64));
            return NULL;
        }
        advance(P);
        if (!(s->e = parse_tuple(P, 0, ends_iter, 0)))
            return NULL;
        if (is_name(cur(P), "if")) {
            advance(P);
            if (!(s->e2 = parse_expr(P, 1)))
                return NULL;
        }
        if (is_name(cur(P), "recursive"))
            return perr(P, cur(P), "recursive loops are not supported"), NULL;
        if (expect_block_end(P))
            return NULL;
        int was = P->in_loop;
        P->in_loop = 1;
        int rc = parse_body(P, &s->body, k_end_for);
        P->in_loop = was;
        if (rc)
            return NULL;
        jtok *e = cur(P);
        advance(P);
        if (is_name(e, "else")) {
            static const char *const end[] = {"endfor", NULL};
            if (expect_block_end(P) || parse_body(P, &s->orelse, end))
                return NULL;
            advance(P);
        }
        return expect_block_end(P) ? NULL : s;
    }
    if (is_name(t, "set")) {
        s = mks(P, JS_SET, line);
        if (!s)
            return NULL;
        if (cur(P)->k == JT_NAME && is_op(peek(P, 1), ".") && peek(P, 2)->k == JT_NAME) {
            s->names = palloc(P, sizeof(*s->names));
            if (!s->names)
                return NULL;
            s->names[0] = expect_name(P, "a name");
            advance(P);
            s->attr = expect_name(P, "an attribute name");
            s->n_names = 1;
            if (!s->names[0] || !s->attr)
                return NULL;
        } else if (parse_targets(P, s)) {
            return NULL;
        }
        if (cur(P)->k == JT_BLOCK_END) {
            if (s->attr || s->n_names != 1)
                return perr(P, cur(P), "a block set takes one plain variable name"), NULL;
            static const char *const end[] = {"endset", NULL};
            s->k = JS_SETBLOCK;
            advance(P);
            if (parse_body(P, &s->body, end))
                return NULL;
            advance(P);
            return expect_block_end(P) ? NULL : s;
        }
        if (expect_op(P, "=") || !(s->e = parse_tuple(P, 1, NULL, 0)))
            return NULL;
        return expect_block_end(P) ? NULL : s;
    }
    if (is_name(t, "macro")) {
        s = mks(P, JS_MACRO, line);
        if (!s || !(s->attr = expect_name(P, "a macro name")) || expect_op(P, "("))
            return NULL;
        plist names = {0}, defs = {0};
        while (!P->failed && !is_op(cur(P), ")")) {
            if (names.n > 0 && expect_op(P, ","))
                break;
            if (is_op(cur(P), ")"))
                break;
            char *nm = expect_name(P, "a parameter name");
            jexpr *d = NULL;
            if (nm && is_op(cur(P), "=")) {
                advance(P);
                d = parse_expr(P, 1);
                if (!d)
                    break;
            } else if (nm && defs.n > 0 && defs.v[defs.n - 1]) {
                perr(P, cur(P), "parameter without a default after one with a default");
                break;
            }
            if (!nm || pl_push(P, &names, nm) || pl_push(P, &defs, d))
                break;
        }
        s->n_names = names.n;
        s->names = (const char **)pl_done(P, &names);
        s->defaults = (jexpr **)pl_done(P, &defs);
        if (P->failed || expect_op(P, ")") || expect_block_end(P))
            return NULL;
        static const char *const end[] = {"endmacro", NULL};
        int was = P->in_loop;
        P->in_loop = 0;
        int rc = parse_body(P, &s->body, end);
        P->in_loop = was;
        if (rc)
            return NULL;
        advance(P);
        if (cur(P)->k == JT_NAME)   /* {% endmacro name %} */
            advance(P);
        return expect_block_end(P) ? NULL : s;
    }
    if (is_name(t, "filter")) {
        s = mks(P, JS_FILTER, line);
        jexpr *body = mk(P, JE_BODY, line);
        if (!s || !body)
            return NULL;
        jexpr *e = parse_filter(P, body);
        while (e && is_op(cur(P), "|")) {
            advance(P);
            e = parse_filter(P, e);
        }
        static const char *const end[] = {"endfilter", NULL};
        if (!e || expect_block_end(P) || parse_body(P, &s->body, end))
            return NULL;
        s->e = e;
        advance(P);
        return expect_block_end(P) ? NULL : s;
    }
    if (is_name(t, "generation")) {   /* transformers' AssistantTracker: renders its body */
        s = mks(P, JS_BLOCK, line);
        static const char *const end[] = {"endgeneration", NULL};
        if (!s || expect_block_end(P) || parse_body(P, &s->body, end))
            return NULL;
        advance(P);
        return expect_block_end(P) ? NULL : s;
    }
    if (is_name(t, "break") || is_name(t, "continue")) {
        if (!P->in_loop)
            return perr(P, t, "'%.*s' outside a for loop", (int)t->n, t->p), NULL;
        s = mks(P, t->p[0] == 'b' ? JS_BREAK : JS_CONTINUE, line);
        return !s || expect_block_end(P) ? NULL : s;
    }
    perr(P, t, "unknown or unsupported tag '%.*s'", (int)(t->n < 40 ? t->n : 40), t->p);
    return NULL;
}

/* Statements until EOF (ends == NULL) or until "{% name" with name in ends; the cursor is then
 * left on that name. */
static int parse_body(jp *P, jbody *b, const char *const *ends)
{
    plist items = {0};
    if (enter(P))
        return -1;
    if (++P->blocks > ENG_JINJA_MAX_NESTING + 1)   /* + the template's own body */
        return perr(P, cur(P), "blocks nested more than %d deep", ENG_JINJA_MAX_NESTING);
    for (;;) {
        jtok *t = cur(P);
        jstmt *s = NULL;
        if (t->k == JT_EOF) {
            if (ends) {
                const char *want = ends[0];
                for (const char *const *e = ends; *e; e++)
                    if (strncmp(*e, "end", 3) == 0)
                        want = *e;
                free(items.v);
                return perr(P, t, "unexpected end of template: '{%% %s %%}' missing", want);
            }
            break;
        }
        if (t->k == JT_DATA) {
            s = mks(P, JS_TEXT, t->line);
            if (s) {
                s->text = t->p;
                s->text_n = t->n;
            }
            advance(P);
        } else if (t->k == JT_VAR_BEGIN) {
            advance(P);
            s = mks(P, JS_OUT, t->line);
            if (s && (s->e = parse_tuple(P, 1, NULL, 0)) != NULL) {
                if (cur(P)->k != JT_VAR_END) {
                    char bb[64];
                    perr(P, cur(P), "expected '}}', got %s", tok_desc(cur(P), bb, 64));
                    s = NULL;
                } else {
                    advance(P);
                }
            } else {
                s = NULL;
            }
        } else if (t->k == JT_BLOCK_BEGIN) {
            jtok *name = peek(P, 1);
            int is_end = 0;
            for (const char *const *e = ends; e && *e; e++)
                if (is_name(name, *e))
                    is_end = 1;
            if (is_end) {
                advance(P);
                break;
            }
            if (name->k == JT_NAME && name->n > 3 && memcmp(name->p, "end", 3) == 0) {
                free(items.v);
                return perr(P, name, "unexpected '{%% %.*s %%}'%s%s", (int)(name->n < 40 ?
                            name->n : 40), name->p, ends ? ", expected " : "",
                            ends ? ends[0] : "");
            }
            advance(P);
            s = parse_stmt(P);
        } else {
            char bb[64];
            perr(P, t, "unexpected %s", tok_desc(t, bb, sizeof(bb)));
        }
        if (!s || pl_push(P, &items, s)) {
            free(items.v);
            return -1;
        }
    }
    b->n = items.n;
    b->s = (jstmt **)pl_done(P, &items);
    P->depth--;
    P->blocks--;
    return P->failed ? -1 : 0;
}

int eng__jj_parse(eng_jinja *t, eng_err *err)
{
    jp P = {.t = t, .err = err, .s = t->src, .n = t->src_n};
    int rc = lex(&P);
    if (rc == 0)
        rc = parse_body(&P, &t->root, NULL);
    free(P.tok);
    if (rc || P.failed)
        return err && err->code ? err->code : ENG_E_FORMAT;
    return 0;
}
