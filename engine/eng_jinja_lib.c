/* eng_jinja_lib.c — the value side of the Jinja interpreter: Python's str/repr, truth and
 * equality, operators, subscripts and slices, string / dict methods, and the filters and tests
 * chat templates use (tojson as transformers defines it: json.dumps(ensure_ascii=False)).
 * Taint: slicing, stripping, splitting and concatenation keep exact tainted ranges; any other
 * transform of a tainted input taints its whole result. Case mapping (upper, lower, title,
 * capitalize) is ASCII-only: other characters pass unchanged. Any thread (state is the jr). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eng_jinja_impl.h"

/* ---- UTF-8 and whitespace --------------------------------------------------------------- */

size_t eng__utf8_next(const char *p, size_t n, size_t i)
{
    unsigned char c = (unsigned char)p[i];
    size_t k = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    if (i + k > n)
        return i + 1;
    for (size_t j = 1; j < k; j++)
        if (((unsigned char)p[i + j] & 0xc0) != 0x80)
            return i + 1;
    return i + k;
}

size_t eng__utf8_len(const char *p, size_t n)
{
    size_t cnt = 0;
    for (size_t i = 0; i < n; i = eng__utf8_next(p, n, i))
        cnt++;
    return cnt;
}

static uint32_t cp_at(const char *p, size_t n, size_t i, size_t *next)
{
    size_t e = eng__utf8_next(p, n, i);
    const unsigned char *u = (const unsigned char *)p + i;
    uint32_t cp = u[0];
    if (e - i == 2)
        cp = ((u[0] & 0x1fu) << 6) | (u[1] & 0x3fu);
    else if (e - i == 3)
        cp = ((u[0] & 0x0fu) << 12) | ((u[1] & 0x3fu) << 6) | (u[2] & 0x3fu);
    else if (e - i == 4)
        cp = ((u[0] & 0x07u) << 18) | ((u[1] & 0x3fu) << 12) | ((u[2] & 0x3fu) << 6) |
             (u[3] & 0x3fu);
    *next = e;
    return cp;
}

/* Python str.isspace() */
static int cp_space(uint32_t c)
{
    return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f) || c == 0x85 ||
           c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 ||
           c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

size_t eng__ws_at_start(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    size_t e;
    uint32_t c = cp_at(s, n, 0, &e);
    return cp_space(c) ? e : 0;
}

/* start of the code point that ends at s[n - 1] */
static size_t cp_start_before(const char *s, size_t n)
{
    size_t i = n - 1;
    int k = 0;
    while (i > 0 && k < 3 && ((unsigned char)s[i] & 0xc0) == 0x80) {
        i--;
        k++;
    }
    if (eng__utf8_next(s, n, i) != n)
        return n - 1;
    return i;
}

size_t eng__ws_at_end(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    size_t b = cp_start_before(s, n), e;
    uint32_t c = cp_at(s, n, b, &e);
    return cp_space(c) ? n - b : 0;
}

/* ---- strings and taint ------------------------------------------------------------------ */

jv eng__jv_mkstr(const char *p, size_t n)
{
    jv v;
    memset(&v, 0, sizeof(v));
    v.t = JV_STR;
    v.p = p;
    v.n = n;
    return v;
}

static int oom(jr *r, int line) { return eng__jj_oom(r, line); }

static int set_whole_taint(jr *r, jv *v, int tainted)
{
    v->tr = NULL;
    v->nt = 0;
    if (tainted && v->n > 0) {
        size_t *tr = eng__jj_alloc(&r->a, 2 * sizeof(*tr));
        if (!tr)
            return oom(r, 0);
        tr[0] = 0;
        tr[1] = v->n;
        v->tr = tr;
        v->nt = 1;
    }
    return 0;
}

int eng__jv_newstr(jr *r, const char *p, size_t n, int tainted, jv *out)
{
    char *d = eng__jj_alloc(&r->a, n + 1);
    if (!d)
        return oom(r, 0);
    if (n)
        memcpy(d, p, n);
    d[n] = '\0';
    *out = eng__jv_mkstr(d, n);
    return set_whole_taint(r, out, tainted);
}

int eng__jv_substr(jr *r, const jv *s, size_t b, size_t e, jv *out)
{
    *out = eng__jv_mkstr(s->p + b, e - b);
    uint32_t k = 0;
    for (uint32_t i = 0; i < s->nt; i++)
        if (s->tr[2 * i] < e && s->tr[2 * i + 1] > b)
            k++;
    if (!k)
        return 0;
    size_t *tr = eng__jj_alloc(&r->a, 2 * (size_t)k * sizeof(*tr));
    if (!tr)
        return oom(r, 0);
    k = 0;
    for (uint32_t i = 0; i < s->nt; i++) {
        size_t lo = s->tr[2 * i], hi = s->tr[2 * i + 1];
        if (lo < e && hi > b) {
            tr[2 * k] = (lo > b ? lo : b) - b;
            tr[2 * k + 1] = (hi < e ? hi : e) - b;
            k++;
        }
    }
    out->tr = tr;
    out->nt = k;
    return 0;
}

int eng__jv_tainted(const jv *v, int depth)
{
    if (depth > ENG_JINJA_MAX_DEPTH)
        return 1;   /* conservative */
    if (v->t == JV_STR)
        return v->nt > 0;
    if (v->t == JV_LIST) {
        for (size_t i = 0; i < v->u.l->n; i++)
            if (eng__jv_tainted(&v->u.l->v[i], depth + 1))
                return 1;
    } else if (v->t == JV_DICT || v->t == JV_NS) {
        for (size_t i = 0; i < v->u.d->n; i++)
            if (eng__jv_tainted(&v->u.d->k[i], depth + 1) ||
                eng__jv_tainted(&v->u.d->v[i], depth + 1))
                return 1;
    }
    return 0;
}

/* A buffer's text as a string value whose taint is the whole text when `tainted`, else the
 * buffer's own ranges. Frees the buffer. */
static int buf_result(jr *r, jbuf *b, int tainted, jv *out)
{
    int rc = eng__jb_value(r, b, out);
    eng__jb_free(b);
    if (rc)
        return -1;
    return tainted ? set_whole_taint(r, out, 1) : 0;
}

/* ---- type names, truth, equality -------------------------------------------------------- */

const char *eng__jv_type_name(const jv *v)
{
    switch (v->t) {
    case JV_UNDEF: return "undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST: return v->u.l->tuple ? "tuple" : "list";
    case JV_DICT: return "dict";
    case JV_NS: return "Namespace";
    case JV_MACRO: return "Macro";
    case JV_FUNC: return "function";
    case JV_LOOP: return "LoopContext";
    }
    return "object";
}

int eng__jv_truthy(const jv *v)
{
    switch (v->t) {
    case JV_UNDEF: case JV_NONE: return 0;
    case JV_BOOL: case JV_INT: return v->u.i != 0;
    case JV_FLOAT: return v->u.f != 0.0;
    case JV_STR: return v->n > 0;
    case JV_LIST: return v->u.l->n > 0;
    case JV_DICT: return v->u.d->n > 0;
    default: return 1;
    }
}

static int is_num(const jv *v)
{
    return v->t == JV_BOOL || v->t == JV_INT || v->t == JV_FLOAT;
}

static double num(const jv *v)
{
    return v->t == JV_FLOAT ? v->u.f : (double)v->u.i;
}

int eng__jv_eq(const jv *a, const jv *b, int depth)
{
    if (depth > ENG_JINJA_MAX_DEPTH)
        return 0;
    if (is_num(a) && is_num(b)) {
        if (a->t != JV_FLOAT && b->t != JV_FLOAT)
            return a->u.i == b->u.i;
        return num(a) == num(b);
    }
    if (a->t != b->t)
        return 0;
    switch (a->t) {
    case JV_UNDEF: case JV_NONE: return 1;
    case JV_STR: return a->n == b->n && (a->n == 0 || memcmp(a->p, b->p, a->n) == 0);
    case JV_LIST:
        if (a->u.l->n != b->u.l->n || a->u.l->tuple != b->u.l->tuple)
            return 0;
        for (size_t i = 0; i < a->u.l->n; i++)
            if (!eng__jv_eq(&a->u.l->v[i], &b->u.l->v[i], depth + 1))
                return 0;
        return 1;
    case JV_DICT:
        if (a->u.d->n != b->u.d->n)
            return 0;
        for (size_t i = 0; i < a->u.d->n; i++) {
            size_t j;
            for (j = 0; j < b->u.d->n; j++)
                if (eng__jv_eq(&a->u.d->k[i], &b->u.d->k[j], depth + 1))
                    break;
            if (j == b->u.d->n || !eng__jv_eq(&a->u.d->v[i], &b->u.d->v[j], depth + 1))
                return 0;
        }
        return 1;
    case JV_NS: return a->u.d == b->u.d;
    case JV_MACRO: return a->u.m == b->u.m;
    case JV_FUNC: return a->u.fn == b->u.fn;
    case JV_LOOP: return a->u.loop == b->u.loop;
    default: return 0;
    }
}

int eng__jv_dict_get(const jdict *d, const char *key, size_t n, jv *out)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].t == JV_STR && d->k[i].n == n && memcmp(d->k[i].p, key, n) == 0) {
            *out = d->v[i];
            return 1;
        }
    return 0;
}

static int dict_find(const jdict *d, const jv *k)
{
    for (size_t i = 0; i < d->n; i++)
        if (eng__jv_eq(&d->k[i], k, 0))
            return (int)i;
    return -1;
}

int eng__jv_dict_set(jr *r, jdict *d, const jv *k, const jv *v, int line)
{
    if (k->t == JV_LIST && !k->u.l->tuple)
        return eng__jj_fail(r, ENG_E_INVAL, line, "unhashable type: 'list'");
    if (k->t == JV_DICT || k->t == JV_NS)
        return eng__jj_fail(r, ENG_E_INVAL, line, "unhashable type: 'dict'");
    int i = dict_find(d, k);
    if (i >= 0) {
        d->v[i] = *v;
        return 0;
    }
    if (d->n == d->cap) {
        size_t nc = d->cap ? 2 * d->cap : 4;
        jv *nk = eng__jj_alloc(&r->a, nc * sizeof(jv)), *nv = eng__jj_alloc(&r->a, nc * sizeof(jv));
        if (!nk || !nv)
            return oom(r, line);
        if (d->n) {
            memcpy(nk, d->k, d->n * sizeof(jv));
            memcpy(nv, d->v, d->n * sizeof(jv));
        }
        d->k = nk;
        d->v = nv;
        d->cap = nc;
    }
    d->k[d->n] = *k;
    d->v[d->n] = *v;
    d->n++;
    return 0;
}

/* ---- str / repr ------------------------------------------------------------------------- */

/* Python's repr(float): the shortest digits that round-trip, fixed notation for exponents
 * -4..15, else d.ddde+XX. */
static void py_float(char *out, size_t cap, double x, int json)
{
    if (isnan(x)) {
        snprintf(out, cap, "%s", json ? "NaN" : "nan");
        return;
    }
    if (isinf(x)) {
        snprintf(out, cap, "%s%s", x < 0 ? "-" : "", json ? "Infinity" : "inf");
        return;
    }
    char tmp[48];
    int p;
    for (p = 1; p < 17; p++) {
        snprintf(tmp, sizeof(tmp), "%.*e", p - 1, x);
        if (strtod(tmp, NULL) == x)
            break;
    }
    snprintf(tmp, sizeof(tmp), "%.*e", p - 1, x);
    char digits[24];
    int nd = 0, neg = tmp[0] == '-';
    const char *q = tmp + neg;
    for (; *q && *q != 'e'; q++)
        if (*q >= '0' && *q <= '9')
            digits[nd++] = *q;
    digits[nd] = '\0';
    int ex = atoi(q + 1);
    size_t o = 0;
    char *s = out;
#define PUTC(ch) do { if (o + 1 < cap) s[o] = (ch); o++; } while (0)
    if (neg)
        PUTC('-');
    if (ex >= -4 && ex < 16) {
        if (ex >= 0) {
            for (int i = 0; i <= ex; i++)
                PUTC(i < nd ? digits[i] : '0');
            PUTC('.');
            if (nd > ex + 1)
                for (int i = ex + 1; i < nd; i++)
                    PUTC(digits[i]);
            else
                PUTC('0');
        } else {
            PUTC('0');
            PUTC('.');
            for (int i = 0; i < -ex - 1; i++)
                PUTC('0');
            for (int i = 0; i < nd; i++)
                PUTC(digits[i]);
        }
    } else {
        PUTC(digits[0]);
        if (nd > 1) {
            PUTC('.');
            for (int i = 1; i < nd; i++)
                PUTC(digits[i]);
        }
        char e[16];
        snprintf(e, sizeof(e), "e%c%02d", ex < 0 ? '-' : '+', ex < 0 ? -ex : ex);
        for (char *c = e; *c; c++)
            PUTC(*c);
    }
#undef PUTC
    s[o < cap ? o : cap - 1] = '\0';
}

/* Python str.isprintable() is false for these (besides C0 / DEL): repr escapes them. */
static int cp_unprintable(uint32_t c)
{
    return c < 0x20 || (c >= 0x7f && c <= 0xa0) || c == 0xad || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200f) || (c >= 0x2028 && c <= 0x202f) ||
           (c >= 0x205f && c <= 0x2064) || c == 0x3000 || c == 0xfeff ||
           (c >= 0xd800 && c <= 0xdfff);
}

static int py_repr_str(jr *r, jbuf *b, const char *p, size_t n)
{
    int has_sq = memchr(p, '\'', n) != NULL, has_dq = memchr(p, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    if (eng__jb_put(r, b, &q, 1, NULL, 0))
        return -1;
    size_t i = 0;
    while (i < n) {
        size_t e;
        uint32_t c = cp_at(p, n, i, &e);
        char esc[16];
        const char *w = NULL;
        if (c == '\\')
            w = "\\\\";
        else if (c == (uint32_t)q)
            w = q == '\'' ? "\\'" : "\\\"";
        else if (c == '\n')
            w = "\\n";
        else if (c == '\r')
            w = "\\r";
        else if (c == '\t')
            w = "\\t";
        else if (cp_unprintable(c)) {
            if (c < 0x100)
                snprintf(esc, sizeof(esc), "\\x%02x", c);
            else
                snprintf(esc, sizeof(esc), "\\u%04x", c);
            w = esc;
        }
        if (w ? eng__jb_puts(r, b, w) : eng__jb_put(r, b, p + i, e - i, NULL, 0))
            return -1;
        i = e;
    }
    return eng__jb_put(r, b, &q, 1, NULL, 0);
}

static int repr_into(jr *r, jbuf *b, const jv *v, int line, int depth);

/* str(v) without taint (the caller decides the taint of compound values). */
static int str_into(jr *r, jbuf *b, const jv *v, int line, int depth)
{
    char num_buf[64];
    if (depth > ENG_JINJA_MAX_DEPTH)
        return eng__jj_fail(r, ENG_E_RANGE, line, "value nested too deeply to print");
    switch (v->t) {
    case JV_UNDEF: return 0;
    case JV_NONE: return eng__jb_puts(r, b, "None");
    case JV_BOOL: return eng__jb_puts(r, b, v->u.i ? "True" : "False");
    case JV_INT:
        snprintf(num_buf, sizeof(num_buf), "%lld", (long long)v->u.i);
        return eng__jb_puts(r, b, num_buf);
    case JV_FLOAT:
        py_float(num_buf, sizeof(num_buf), v->u.f, 0);
        return eng__jb_puts(r, b, num_buf);
    case JV_STR: return eng__jb_put(r, b, v->p, v->n, NULL, 0);
    case JV_LIST: {
        const jlist *l = v->u.l;
        if (eng__jb_puts(r, b, l->tuple ? "(" : "["))
            return -1;
        for (size_t i = 0; i < l->n; i++)
            if ((i && eng__jb_puts(r, b, ", ")) || repr_into(r, b, &l->v[i], line, depth + 1))
                return -1;
        if (l->tuple && l->n == 1 && eng__jb_puts(r, b, ","))
            return -1;
        return eng__jb_puts(r, b, l->tuple ? ")" : "]");
    }
    case JV_DICT:
    case JV_NS: {
        const jdict *d = v->u.d;
        if (eng__jb_puts(r, b, v->t == JV_NS ? "<Namespace {" : "{"))
            return -1;
        for (size_t i = 0; i < d->n; i++)
            if ((i && eng__jb_puts(r, b, ", ")) || repr_into(r, b, &d->k[i], line, depth + 1) ||
                eng__jb_puts(r, b, ": ") || repr_into(r, b, &d->v[i], line, depth + 1))
                return -1;
        return eng__jb_puts(r, b, v->t == JV_NS ? "}>" : "}");
    }
    case JV_MACRO: return eng__jb_puts(r, b, "<Macro>");
    case JV_FUNC: return eng__jb_puts(r, b, "<function>");
    case JV_LOOP: return eng__jb_puts(r, b, "<LoopContext>");
    }
    return 0;
}

static int repr_into(jr *r, jbuf *b, const jv *v, int line, int depth)
{
    if (v->t == JV_STR)
        return py_repr_str(r, b, v->p, v->n);
    if (v->t == JV_UNDEF)
        return eng__jb_puts(r, b, "Undefined");
    return str_into(r, b, v, line, depth);
}

int eng__jv_str(jr *r, jbuf *b, const jv *v, int line)
{
    if (v->t == JV_STR)
        return eng__jb_put(r, b, v->p, v->n, v->tr, v->nt);
    if (v->t != JV_LIST && v->t != JV_DICT && v->t != JV_NS)
        return str_into(r, b, v, line, 0);
    jbuf t = {0};
    int rc = str_into(r, &t, v, line, 0);
    if (rc == 0) {
        size_t whole[2] = {0, t.n};
        rc = eng__jb_put(r, b, t.p ? t.p : "", t.n, whole, eng__jv_tainted(v, 0) ? 1 : 0);
    }
    eng__jb_free(&t);
    return rc;
}

int eng__jv_to_str(jr *r, const jv *v, jv *out, int line)
{
    if (v->t == JV_STR) {
        *out = *v;
        return 0;
    }
    jbuf b = {0};
    if (eng__jv_str(r, &b, v, line)) {
        eng__jb_free(&b);
        return -1;
    }
    return buf_result(r, &b, 0, out);
}

/* ---- tojson: json.dumps(x, ensure_ascii, indent, separators, sort_keys) ------------------ */

typedef struct json_opts {
    int ascii;
    const char *indent;         /* NULL = no newlines */
    size_t indent_n;
    const char *item_sep, *key_sep;
    size_t item_sep_n, key_sep_n;
    int sort_keys;
} json_opts;

static int json_str(jr *r, jbuf *b, const char *p, size_t n, int ascii)
{
    if (eng__jb_puts(r, b, "\""))
        return -1;
    size_t i = 0;
    while (i < n) {
        size_t e;
        uint32_t c = cp_at(p, n, i, &e);
        char esc[16];
        const char *w = NULL;
        switch (c) {
        case '"': w = "\\\""; break;
        case '\\': w = "\\\\"; break;
        case '\n': w = "\\n"; break;
        case '\r': w = "\\r"; break;
        case '\t': w = "\\t"; break;
        case '\b': w = "\\b"; break;
        case '\f': w = "\\f"; break;
        default:
            if (c < 0x20 || (ascii && c >= 0x7f)) {
                if (c >= 0x10000) {
                    uint32_t v = c - 0x10000;
                    snprintf(esc, sizeof(esc), "\\u%04x\\u%04x", 0xd800 + (v >> 10),
                             0xdc00 + (v & 0x3ff));
                } else {
                    snprintf(esc, sizeof(esc), "\\u%04x", c);
                }
                w = esc;
            }
        }
        if (w ? eng__jb_puts(r, b, w) : eng__jb_put(r, b, p + i, e - i, NULL, 0))
            return -1;
        i = e;
    }
    return eng__jb_puts(r, b, "\"");
}

static int json_nl(jr *r, jbuf *b, const json_opts *o, int level)
{
    if (!o->indent)
        return 0;
    if (eng__jb_puts(r, b, "\n"))
        return -1;
    for (int i = 0; i < level; i++)
        if (eng__jb_put(r, b, o->indent, o->indent_n, NULL, 0))
            return -1;
    return 0;
}

static int json_key(jr *r, jbuf *b, const jv *k, const json_opts *o, int line)
{
    char buf[64];
    switch (k->t) {
    case JV_STR: return json_str(r, b, k->p, k->n, o->ascii);
    case JV_NONE: return eng__jb_puts(r, b, "\"null\"");
    case JV_BOOL: return eng__jb_puts(r, b, k->u.i ? "\"true\"" : "\"false\"");
    case JV_INT:
        snprintf(buf, sizeof(buf), "\"%lld\"", (long long)k->u.i);
        return eng__jb_puts(r, b, buf);
    case JV_FLOAT:
        buf[0] = '"';
        py_float(buf + 1, sizeof(buf) - 2, k->u.f, 1);
        strcat(buf, "\"");
        return eng__jb_puts(r, b, buf);
    default:
        return eng__jj_fail(r, ENG_E_INVAL, line, "tojson: keys must be str, int, float, bool "
                            "or None, not %s", eng__jv_type_name(k));
    }
}

static int bytes_cmp(const jv *a, const jv *b)
{
    size_t n = a->n < b->n ? a->n : b->n;
    int c = n ? memcmp(a->p, b->p, n) : 0;
    return c ? c : (a->n > b->n) - (a->n < b->n);
}

static int json_into(jr *r, jbuf *b, const jv *v, const json_opts *o, int level, int line)
{
    char buf[64];
    if (level > ENG_JINJA_MAX_DEPTH)
        return eng__jj_fail(r, ENG_E_RANGE, line, "tojson: value nested too deeply");
    switch (v->t) {
    case JV_NONE: return eng__jb_puts(r, b, "null");
    case JV_BOOL: return eng__jb_puts(r, b, v->u.i ? "true" : "false");
    case JV_INT:
        snprintf(buf, sizeof(buf), "%lld", (long long)v->u.i);
        return eng__jb_puts(r, b, buf);
    case JV_FLOAT:
        py_float(buf, sizeof(buf), v->u.f, 1);
        return eng__jb_puts(r, b, buf);
    case JV_STR: return json_str(r, b, v->p, v->n, o->ascii);
    case JV_LIST: {
        const jlist *l = v->u.l;
        if (l->n == 0)
            return eng__jb_puts(r, b, "[]");
        if (eng__jb_puts(r, b, "["))
            return -1;
        for (size_t i = 0; i < l->n; i++) {
            if (i && eng__jb_put(r, b, o->item_sep, o->item_sep_n, NULL, 0))
                return -1;
            if (json_nl(r, b, o, level + 1) || json_into(r, b, &l->v[i], o, level + 1, line))
                return -1;
        }
        return json_nl(r, b, o, level) || eng__jb_puts(r, b, "]") ? -1 : 0;
    }
    case JV_DICT: {
        const jdict *d = v->u.d;
        if (d->n == 0)
            return eng__jb_puts(r, b, "{}");
        size_t *ord = malloc(d->n * sizeof(*ord));
        if (!ord)
            return oom(r, line);
        for (size_t i = 0; i < d->n; i++)
            ord[i] = i;
        if (o->sort_keys) {
            for (size_t i = 1; i < d->n; i++) {
                if (d->k[ord[i]].t != JV_STR) {
                    free(ord);
                    return eng__jj_fail(r, ENG_E_INVAL, line, "tojson: sort_keys needs str "
                                        "keys");
                }
                for (size_t j = i; j > 0 && bytes_cmp(&d->k[ord[j - 1]], &d->k[ord[j]]) > 0;
                     j--) {
                    size_t t = ord[j];
                    ord[j] = ord[j - 1];
                    ord[j - 1] = t;
                }
            }
        }
        int rc = eng__jb_puts(r, b, "{");
        for (size_t i = 0; i < d->n && rc == 0; i++) {
            if (i)
                rc = eng__jb_put(r, b, o->item_sep, o->item_sep_n, NULL, 0);
            if (rc == 0)
                rc = json_nl(r, b, o, level + 1);
            if (rc == 0)
                rc = json_key(r, b, &d->k[ord[i]], o, line);
            if (rc == 0)
                rc = eng__jb_put(r, b, o->key_sep, o->key_sep_n, NULL, 0);
            if (rc == 0)
                rc = json_into(r, b, &d->v[ord[i]], o, level + 1, line);
        }
        free(ord);
        return rc || json_nl(r, b, o, level) || eng__jb_puts(r, b, "}") ? -1 : 0;
    }
    default:
        return eng__jj_fail(r, ENG_E_INVAL, line, "tojson: Object of type %s is not JSON "
                            "serializable", v->t == JV_UNDEF ? "Undefined" :
                            eng__jv_type_name(v));
    }
}

/* ---- arguments ------------------------------------------------------------------------- */

/* Argument `name` at position pos (-1: keyword only) or NULL. */
static const jv *arg(const jargs *a, int pos, const char *name)
{
    if (pos >= 0 && pos < a->n_pos)
        return &a->pos[pos];
    for (int k = 0; k < a->n_kw; k++)
        if (strcmp(a->kw[k], name) == 0)
            return &a->kwv[k];
    return NULL;
}

static int want_str(jr *r, const jv *v, const char *what, int line)
{
    if (v->t != JV_STR)
        return eng__jj_fail(r, ENG_E_INVAL, line, "%s must be a string, not %s", what,
                            eng__jv_type_name(v));
    return 0;
}

static int new_list(jr *r, size_t n, jv *out, int line)
{
    jlist *l = eng__jj_alloc(&r->a, sizeof(*l));
    jv *v = n ? eng__jj_alloc(&r->a, n * sizeof(jv)) : NULL;
    if (!l || (n && !v))
        return oom(r, line);
    l->v = v;
    l->n = n;
    l->tuple = 0;
    memset(out, 0, sizeof(*out));
    out->t = JV_LIST;
    out->u.l = l;
    return 0;
}

/* ---- string helpers -------------------------------------------------------------------- */

static int in_chars(uint32_t c, const jv *chars)
{
    size_t i = 0, e;
    while (i < chars->n) {
        if (cp_at(chars->p, chars->n, i, &e) == c)
            return 1;
        i = e;
    }
    return 0;
}

/* Python strip/lstrip/rstrip: which = 1 left, 2 right, 3 both. */
static int do_strip(jr *r, const jv *s, const jv *chars, int which, jv *out)
{
    size_t b = 0, e = s->n, k;
    int use = chars && chars->t == JV_STR;
    if (which & 1) {
        while (b < e) {
            uint32_t c = cp_at(s->p, e, b, &k);
            if (use ? !in_chars(c, chars) : !cp_space(c))
                break;
            b = k;
        }
    }
    if (which & 2) {
        while (e > b) {
            size_t st = cp_start_before(s->p + b, e - b) + b;
            uint32_t c = cp_at(s->p, e, st, &k);
            if (use ? !in_chars(c, chars) : !cp_space(c))
                break;
            e = st;
        }
    }
    return eng__jv_substr(r, s, b, e, out);
}

static int find_bytes(const char *h, size_t hn, const char *n, size_t nn, size_t from,
                      size_t *at)
{
    if (nn == 0) {
        *at = from;
        return from <= hn;
    }
    if (from > hn)
        return 0;
    const char *p = memmem(h + from, hn - from, n, nn);   /* glibc: SIMD / two-way, not n*m */
    if (!p)
        return 0;
    *at = (size_t)(p - h);
    return 1;
}

static int do_split(jr *r, const jv *s, const jv *sep, int64_t maxsplit, jv *out, int line)
{
    jv parts[1];
    size_t cap = 16, n = 0;
    jv *v = malloc(cap * sizeof(jv));
    if (!v)
        return oom(r, line);
    (void)parts;
    int rc = 0;
#define ADD(b, e)                                                                   \
    do {                                                                            \
        if (n == cap) {                                                             \
            jv *nv = realloc(v, 2 * cap * sizeof(jv));                              \
            if (!nv) { rc = oom(r, line); goto done; }                              \
            v = nv;                                                                 \
            cap *= 2;                                                               \
        }                                                                           \
        if ((rc = eng__jv_substr(r, s, (b), (e), &v[n++])) != 0) goto done;        \
    } while (0)
    if (!sep || sep->t == JV_NONE) {
        size_t i = 0, k;
        int64_t splits = 0;
        for (;;) {
            while (i < s->n && cp_space(cp_at(s->p, s->n, i, &k)))
                i = k;
            if (i >= s->n)
                break;
            if (maxsplit >= 0 && splits >= maxsplit) {
                ADD(i, s->n);   /* the rest as it is, trailing blanks too (CPython) */
                break;
            }
            size_t b = i;
            while (i < s->n && !cp_space(cp_at(s->p, s->n, i, &k)))
                i = k;
            ADD(b, i);
            splits++;
        }
    } else {
        if (want_str(r, sep, "split() separator", line)) {
            rc = -1;
            goto done;
        }
        if (sep->n == 0) {
            rc = eng__jj_fail(r, ENG_E_INVAL, line, "split(): empty separator");
            goto done;
        }
        size_t i = 0, at;
        int64_t splits = 0;
        while ((maxsplit < 0 || splits < maxsplit) &&
               find_bytes(s->p, s->n, sep->p, sep->n, i, &at)) {
            ADD(i, at);
            i = at + sep->n;
            splits++;
        }
        ADD(i, s->n);
    }
#undef ADD
    if (new_list(r, n, out, line) == 0) {
        if (n)
            memcpy(out->u.l->v, v, n * sizeof(jv));
    } else {
        rc = -1;
    }
done:
    free(v);
    return rc ? -1 : 0;
}

static int concat(jr *r, const jv *a, const jv *b, jv *out, int line)
{
    jbuf t = {0};
    if (eng__jb_put(r, &t, a->p, a->n, a->tr, a->nt) ||
        eng__jb_put(r, &t, b->p, b->n, b->tr, b->nt)) {
        eng__jb_free(&t);
        return -1;
    }
    (void)line;
    return buf_result(r, &t, 0, out);
}

/* Bytes of the white-space character at p (Python's str.isspace, which jinja's \s and
 * str.title follow: ASCII 09-0D and 1C-20, U+0085, U+00A0, U+1680, U+2000-200A, U+2028,
 * U+2029, U+202F, U+205F, U+3000), else 0. */
static size_t space_len(const unsigned char *p, size_t n)
{
    if (n >= 1 && ((p[0] >= 0x09 && p[0] <= 0x0d) || (p[0] >= 0x1c && p[0] <= 0x20)))
        return 1;
    if (n >= 2 && p[0] == 0xc2 && (p[1] == 0x85 || p[1] == 0xa0))
        return 2;
    if (n < 3)
        return 0;
    if ((p[0] == 0xe1 && p[1] == 0x9a && p[2] == 0x80) ||                      /* U+1680 */
        (p[0] == 0xe2 && p[1] == 0x80 &&
         (p[2] <= 0x8a || p[2] == 0xa8 || p[2] == 0xa9 || p[2] == 0xaf)) ||    /* U+2000.. */
        (p[0] == 0xe2 && p[1] == 0x81 && p[2] == 0x9f) ||                      /* U+205F */
        (p[0] == 0xe3 && p[1] == 0x80 && p[2] == 0x80))                        /* U+3000 */
        return 3;
    return 0;
}

/* ASCII case mapping: mode 'u' upper, 'l' lower, 'c' capitalize, 't' Python title (a letter
 * after an uncased character starts a word; other non-ASCII characters count as cased), 'j'
 * jinja's title filter (words start after white space, '-', '(', '{', '[', '<'). White space
 * is Unicode's (space_len), so a no-break space separates words as in Python. */
static int do_case(jr *r, const jv *s, int mode, jv *out)
{
    char *d = eng__jj_alloc(&r->a, s->n + 1);
    if (!d)
        return oom(r, 0);
    const unsigned char *p = (const unsigned char *)s->p;
    int prev_cased = 0, prev_sep = 1;
    for (size_t i = 0; i < s->n;) {
        unsigned char c = p[i];
        size_t sp = space_len(p + i, s->n - i);
        if (c >= 0x80) {   /* a whole non-ASCII character: copied as it is */
            size_t k = sp ? sp : 1;
            while (!sp && i + k < s->n && (p[i + k] & 0xC0) == 0x80)
                k++;
            memcpy(d + i, p + i, k);
            i += k;
            prev_cased = !sp;
            prev_sep = sp > 0;
            continue;
        }
        int lower = c >= 'a' && c <= 'z', upper = c >= 'A' && c <= 'Z';
        int up;
        switch (mode) {
        case 'u': up = 1; break;
        case 'l': up = 0; break;
        case 'c': up = i == 0; break;
        case 't': up = !prev_cased; break;
        default: up = prev_sep; break;
        }
        if (up && lower)
            c = (unsigned char)(c - 32);
        else if (!up && upper)
            c = (unsigned char)(c + 32);
        d[i++] = (char)c;
        prev_cased = lower || upper;
        prev_sep = sp > 0 || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    }
    d[s->n] = '\0';
    *out = eng__jv_mkstr(d, s->n);
    return set_whole_taint(r, out, s->nt > 0);
}

static int do_replace(jr *r, const jv *s, const jv *old, const jv *new_, int64_t count,
                      jv *out, int line)
{
    if (want_str(r, old, "replace() old", line) || want_str(r, new_, "replace() new", line))
        return -1;
    jbuf b = {0};
    size_t i = 0, at;
    int64_t done = 0;
    int rc = 0;
    if (old->n == 0) {
        /* Python: inserts new between every character and at both ends */
        size_t k = 0;
        while (rc == 0 && (count < 0 || done < count)) {
            rc = eng__jb_put(r, &b, new_->p, new_->n, NULL, 0);
            done++;
            if (k >= s->n)
                break;
            size_t e = eng__utf8_next(s->p, s->n, k);
            if (rc == 0)
                rc = eng__jb_put(r, &b, s->p + k, e - k, NULL, 0);
            k = e;
        }
        i = k;
    } else {
        while (rc == 0 && (count < 0 || done < count) &&
               find_bytes(s->p, s->n, old->p, old->n, i, &at)) {
            rc = eng__jb_put(r, &b, s->p + i, at - i, NULL, 0);
            if (rc == 0)
                rc = eng__jb_put(r, &b, new_->p, new_->n, NULL, 0);
            i = at + old->n;
            done++;
        }
    }
    if (rc == 0 && i < s->n)
        rc = eng__jb_put(r, &b, s->p + i, s->n - i, NULL, 0);
    if (rc == 0 && !b.p)
        rc = eng__jb_put(r, &b, "", 0, NULL, 0);
    if (rc) {
        eng__jb_free(&b);
        return -1;
    }
    return buf_result(r, &b, s->nt || old->nt || new_->nt, out);
}

/* str.join / the join filter: items as str, exact taint. */
static int do_join(jr *r, const jlist *l, const jv *sep, const char *attr, jv *out, int line)
{
    jbuf b = {0};
    int rc = eng__jb_put(r, &b, "", 0, NULL, 0);
    for (size_t i = 0; i < l->n && rc == 0; i++) {
        jv item = l->v[i];
        if (attr) {
            jv key = eng__jv_mkstr(attr, strlen(attr));
            rc = eng__jj_getitem(r, &item, &key, &item, line);
        }
        if (rc == 0 && i)
            rc = eng__jb_put(r, &b, sep->p, sep->n, sep->tr, sep->nt);
        if (rc == 0)
            rc = eng__jv_str(r, &b, &item, line);
    }
    if (rc) {
        eng__jb_free(&b);
        return -1;
    }
    return buf_result(r, &b, 0, out);
}

/* Python str.format with {} / {0} / {name} fields, str() conversion, no format specs. */
static int do_format_braces(jr *r, const jv *s, jargs *a, jv *out, int line)
{
    jbuf b = {0};
    int rc = 0, auto_i = 0, taint = s->nt > 0;
    for (size_t i = 0; i < s->n && rc == 0; i++) {
        char c = s->p[i];
        if ((c == '{' || c == '}') && i + 1 < s->n && s->p[i + 1] == c) {
            rc = eng__jb_put(r, &b, &c, 1, NULL, 0);
            i++;
            continue;
        }
        if (c != '{') {
            if (c == '}')
                rc = eng__jj_fail(r, ENG_E_INVAL, line, "format(): single '}'");
            else
                rc = eng__jb_put(r, &b, &c, 1, NULL, 0);
            continue;
        }
        size_t e = i + 1;
        while (e < s->n && s->p[e] != '}')
            e++;
        if (e >= s->n) {
            rc = eng__jj_fail(r, ENG_E_INVAL, line, "format(): single '{'");
            break;
        }
        const jv *v = NULL;
        size_t fn = e - i - 1;
        const char *f = s->p + i + 1;
        if (memchr(f, ':', fn) || memchr(f, '!', fn)) {
            rc = eng__jj_fail(r, ENG_E_UNSUPPORTED, line, "format(): format specs are not "
                              "supported");
            break;
        }
        if (fn == 0) {
            v = auto_i < a->n_pos ? &a->pos[auto_i] : NULL;
            auto_i++;
        } else if (f[0] >= '0' && f[0] <= '9') {
            int k = atoi(f);
            v = k < a->n_pos ? &a->pos[k] : NULL;
        } else {
            for (int k = 0; k < a->n_kw; k++)
                if (strlen(a->kw[k]) == fn && memcmp(a->kw[k], f, fn) == 0)
                    v = &a->kwv[k];
        }
        if (!v) {
            rc = eng__jj_fail(r, ENG_E_INVAL, line, "format(): no argument for field '%.*s'",
                              (int)(fn < 40 ? fn : 40), f);
            break;
        }
        taint |= eng__jv_tainted(v, 0);
        rc = eng__jv_str(r, &b, v, line);
        i = e;
    }
    if (rc == 0 && !b.p)
        rc = eng__jb_put(r, &b, "", 0, NULL, 0);
    if (rc) {
        eng__jb_free(&b);
        return -1;
    }
    return buf_result(r, &b, taint, out);
}

/* printf-style "%s" % args (the format filter): %s %d %i %r %%. */
static int do_percent(jr *r, const jv *s, jargs *a, jv *out, int line)
{
    jbuf b = {0};
    int rc = 0, k = 0, taint = s->nt > 0;
    for (size_t i = 0; i < s->n && rc == 0; i++) {
        char c = s->p[i];
        if (c != '%') {
            rc = eng__jb_put(r, &b, &c, 1, NULL, 0);
            continue;
        }
        char f = i + 1 < s->n ? s->p[++i] : 0;
        if (f == '%') {
            rc = eng__jb_puts(r, &b, "%");
            continue;
        }
        if (k >= a->n_pos) {
            rc = eng__jj_fail(r, ENG_E_INVAL, line, "format: not enough arguments");
            break;
        }
        const jv *v = &a->pos[k++];
        taint |= eng__jv_tainted(v, 0);
        if (f == 's') {
            rc = eng__jv_str(r, &b, v, line);
        } else if (f == 'r') {
            rc = repr_into(r, &b, v, line, 0);
        } else if ((f == 'd' || f == 'i') && is_num(v)) {
            char nb[32];
            snprintf(nb, sizeof(nb), "%lld", v->t == JV_FLOAT ? (long long)v->u.f
                                                               : (long long)v->u.i);
            rc = eng__jb_puts(r, &b, nb);
        } else {
            rc = eng__jj_fail(r, ENG_E_UNSUPPORTED, line, "format: unsupported conversion "
                              "'%%%c' or argument type", f ? f : '?');
        }
    }
    if (rc == 0 && !b.p)
        rc = eng__jb_put(r, &b, "", 0, NULL, 0);
    if (rc) {
        eng__jb_free(&b);
        return -1;
    }
    return buf_result(r, &b, taint, out);
}

/* ---- operators ------------------------------------------------------------------------- */

static int repeat(jr *r, const jv *s, int64_t times, jv *out, int line)
{
    if (times <= 0 || s->n == 0)
        return eng__jv_newstr(r, "", 0, 0, out);
    if ((uint64_t)times > (r->a.limit ? r->a.limit : ((size_t)1 << 40)) / s->n)
        return eng__jj_fail(r, ENG_E_RANGE, line, "string repetition over the memory limit");
    size_t n = s->n * (size_t)times;
    char *d = eng__jj_alloc(&r->a, n + 1);
    if (!d)
        return oom(r, line);
    for (int64_t i = 0; i < times; i++)
        memcpy(d + (size_t)i * s->n, s->p, s->n);
    d[n] = '\0';
    *out = eng__jv_mkstr(d, n);
    return set_whole_taint(r, out, s->nt > 0);
}

static int cmp_order(jr *r, const jv *a, const jv *b, int *res, int line, int depth)
{
    if (is_num(a) && is_num(b)) {
        double x = num(a), y = num(b);
        if (a->t != JV_FLOAT && b->t != JV_FLOAT)
            *res = (a->u.i > b->u.i) - (a->u.i < b->u.i);
        else
            *res = (x > y) - (x < y);
        return 0;
    }
    if (a->t == JV_STR && b->t == JV_STR) {
        int c = bytes_cmp(a, b);
        *res = (c > 0) - (c < 0);
        return 0;
    }
    if (a->t == JV_LIST && b->t == JV_LIST && depth < ENG_JINJA_MAX_DEPTH) {
        size_t n = a->u.l->n < b->u.l->n ? a->u.l->n : b->u.l->n;
        for (size_t i = 0; i < n; i++) {
            if (eng__jv_eq(&a->u.l->v[i], &b->u.l->v[i], 0))
                continue;
            return cmp_order(r, &a->u.l->v[i], &b->u.l->v[i], res, line, depth + 1);
        }
        *res = (a->u.l->n > b->u.l->n) - (a->u.l->n < b->u.l->n);
        return 0;
    }
    return eng__jj_fail(r, ENG_E_INVAL, line, "'<' not supported between %s and %s",
                        eng__jv_type_name(a), eng__jv_type_name(b));
}

static int contains(jr *r, const jv *needle, const jv *hay, int *res, int line)
{
    *res = 0;
    switch (hay->t) {
    case JV_STR: {
        if (needle->t != JV_STR)
            return eng__jj_fail(r, ENG_E_INVAL, line, "'in <string>' requires string as left "
                                "operand, not %s", eng__jv_type_name(needle));
        size_t at;
        if (eng__jj_work(r, hay->n, line))
            return -1;
        *res = find_bytes(hay->p, hay->n, needle->p, needle->n, 0, &at);
        return 0;
    }
    case JV_LIST:
        for (size_t i = 0; i < hay->u.l->n; i++)
            if (eng__jv_eq(needle, &hay->u.l->v[i], 0)) {
                *res = 1;
                break;
            }
        return 0;
    case JV_DICT:
        *res = dict_find(hay->u.d, needle) >= 0;
        return 0;
    case JV_UNDEF:
        return 0;
    default:
        return eng__jj_fail(r, ENG_E_INVAL, line, "argument of type '%s' is not iterable",
                            eng__jv_type_name(hay));
    }
}

static int arith_err(jr *r, const char *op, const jv *a, const jv *b, int line)
{
    if (a->t == JV_UNDEF || b->t == JV_UNDEF) {
        const jv *u = a->t == JV_UNDEF ? a : b;
        if (u->p)
            return eng__jj_fail(r, ENG_E_INVAL, line, "'%s' is undefined", u->p);
    }
    return eng__jj_fail(r, ENG_E_INVAL, line, "unsupported operand type(s) for %s: '%s' and "
                        "'%s'", op, eng__jv_type_name(a), eng__jv_type_name(b));
}

int eng__jj_binop(jr *r, jop op, const jv *a, const jv *b, jv *out, int line)
{
    static const char *const names[] = {"+", "-", "*", "/", "//", "%", "**", "~"};
    memset(out, 0, sizeof(*out));
    if (op == JOP_CAT) {
        jv x, y;
        if (eng__jv_to_str(r, a, &x, line) || eng__jv_to_str(r, b, &y, line))
            return -1;
        return concat(r, &x, &y, out, line);
    }
    if (op >= JOP_EQ) {
        int res = 0;
        if (op == JOP_IN || op == JOP_NOTIN) {
            if (contains(r, a, b, &res, line))
                return -1;
            res = op == JOP_IN ? res : !res;
        } else if (op == JOP_EQ || op == JOP_NE) {
            res = eng__jv_eq(a, b, 0) == (op == JOP_EQ);
        } else {
            int c;
            if (cmp_order(r, a, b, &c, line, 0))
                return -1;
            res = op == JOP_LT ? c < 0 : op == JOP_LE ? c <= 0 : op == JOP_GT ? c > 0 : c >= 0;
        }
        out->t = JV_BOOL;
        out->u.i = res;
        return 0;
    }
    if (op == JOP_ADD && a->t == JV_STR && b->t == JV_STR)
        return concat(r, a, b, out, line);
    if (op == JOP_ADD && a->t == JV_LIST && b->t == JV_LIST) {
        const jlist *x = a->u.l, *y = b->u.l;
        if (x->tuple != y->tuple)
            return arith_err(r, "+", a, b, line);
        if (new_list(r, x->n + y->n, out, line))
            return -1;
        if (x->n)
            memcpy(out->u.l->v, x->v, x->n * sizeof(jv));
        if (y->n)
            memcpy(out->u.l->v + x->n, y->v, y->n * sizeof(jv));
        out->u.l->tuple = x->tuple;
        return 0;
    }
    if (op == JOP_MUL && ((a->t == JV_STR && (b->t == JV_INT || b->t == JV_BOOL)) ||
                          (b->t == JV_STR && (a->t == JV_INT || a->t == JV_BOOL))))
        return a->t == JV_STR ? repeat(r, a, b->u.i, out, line) : repeat(r, b, a->u.i, out, line);
    if (op == JOP_MUL && a->t == JV_LIST && (b->t == JV_INT || b->t == JV_BOOL)) {
        int64_t t = b->u.i > 0 ? b->u.i : 0;
        size_t n = a->u.l->n;
        if (n && (uint64_t)t > (r->a.limit ? r->a.limit : ((size_t)1 << 40)) / (n * sizeof(jv)))
            return eng__jj_fail(r, ENG_E_RANGE, line, "list repetition over the memory limit");
        if (new_list(r, n * (size_t)t, out, line))
            return -1;
        for (int64_t i = 0; i < t; i++)
            memcpy(out->u.l->v + (size_t)i * n, a->u.l->v, n * sizeof(jv));
        return 0;
    }
    if (!is_num(a) || !is_num(b))
        return arith_err(r, names[op], a, b, line);
    int ints = a->t != JV_FLOAT && b->t != JV_FLOAT;
    int64_t x = a->u.i, y = b->u.i;
    double fx = num(a), fy = num(b);
    if ((op == JOP_DIV || op == JOP_FDIV || op == JOP_MOD) && (ints ? y == 0 : fy == 0.0))
        return eng__jj_fail(r, ENG_E_INVAL, line, "division by zero");
    if (ints) {
        int64_t v;
        out->t = JV_INT;
        switch (op) {
        case JOP_ADD:
            if (__builtin_add_overflow(x, y, &v))
                goto big;
            out->u.i = v;
            return 0;
        case JOP_SUB:
            if (__builtin_sub_overflow(x, y, &v))
                goto big;
            out->u.i = v;
            return 0;
        case JOP_MUL:
            if (__builtin_mul_overflow(x, y, &v))
                goto big;
            out->u.i = v;
            return 0;
        case JOP_DIV:
            out->t = JV_FLOAT;
            out->u.f = fx / fy;
            return 0;
        case JOP_FDIV:
            if (x == INT64_MIN && y == -1)
                goto big;
            v = x / y;
            if ((x % y != 0) && ((x < 0) != (y < 0)))
                v--;
            out->u.i = v;
            return 0;
        case JOP_MOD:
            if (y == -1) {
                out->u.i = 0;
                return 0;
            }
            v = x % y;
            if (v != 0 && ((v < 0) != (y < 0)))
                v += y;
            out->u.i = v;
            return 0;
        case JOP_POW:
            if (y < 0) {
                out->t = JV_FLOAT;
                out->u.f = pow(fx, fy);
                return 0;
            }
            v = 1;
            for (int64_t i = 0; i < y; i++) {
                if (__builtin_mul_overflow(v, x, &v))
                    goto big;
                if (v == 0 || v == 1)
                    break;
            }
            if (v == 1 && x == -1)
                v = (y % 2) ? -1 : 1;
            out->u.i = v;
            return 0;
        default:
            break;
        }
    }
    out->t = JV_FLOAT;
    switch (op) {
    case JOP_ADD: out->u.f = fx + fy; return 0;
    case JOP_SUB: out->u.f = fx - fy; return 0;
    case JOP_MUL: out->u.f = fx * fy; return 0;
    case JOP_DIV: out->u.f = fx / fy; return 0;
    case JOP_FDIV: out->u.f = floor(fx / fy); return 0;
    case JOP_MOD: {
        double m = fmod(fx, fy);
        if (m != 0 && ((m < 0) != (fy < 0)))
            m += fy;
        out->u.f = m;
        return 0;
    }
    case JOP_POW: out->u.f = pow(fx, fy); return 0;
    default: break;
    }
    return arith_err(r, "?", a, b, line);
big:
    return eng__jj_fail(r, ENG_E_RANGE, line, "integer result outside the 64-bit range");
}

/* ---- subscripts ------------------------------------------------------------------------ */

/* byte offset of code point index k (k <= count) */
static size_t cp_offset(const char *p, size_t n, size_t k)
{
    size_t i = 0;
    while (k > 0 && i < n) {
        i = eng__utf8_next(p, n, i);
        k--;
    }
    return i;
}

int eng__jj_getitem(jr *r, const jv *obj, const jv *key, jv *out, int line)
{
    memset(out, 0, sizeof(*out));
    out->t = JV_UNDEF;
    switch (obj->t) {
    case JV_UNDEF:
        if (obj->p)
            return eng__jj_fail(r, ENG_E_INVAL, line, "'%s' is undefined", obj->p);
        return eng__jj_fail(r, ENG_E_INVAL, line, "subscript of an undefined value");
    case JV_LIST:
    case JV_STR: {
        if (key->t != JV_INT && key->t != JV_BOOL)
            return 0;
        int64_t n = obj->t == JV_LIST ? (int64_t)obj->u.l->n
                                      : (int64_t)eng__utf8_len(obj->p, obj->n);
        int64_t i = key->u.i < 0 ? key->u.i + n : key->u.i;
        if (i < 0 || i >= n)
            return 0;
        if (obj->t == JV_LIST) {
            *out = obj->u.l->v[i];
            return 0;
        }
        size_t b = cp_offset(obj->p, obj->n, (size_t)i);
        return eng__jv_substr(r, obj, b, eng__utf8_next(obj->p, obj->n, b), out);
    }
    case JV_DICT: {
        int i = dict_find(obj->u.d, key);
        if (i >= 0)
            *out = obj->u.d->v[i];
        return 0;
    }
    default:
        return 0;
    }
}

static int slice_arg(jr *r, const jv *v, int64_t *out, int line)
{
    if (v->t == JV_NONE)
        return 0;
    if (v->t != JV_INT && v->t != JV_BOOL)
        return eng__jj_fail(r, ENG_E_INVAL, line, "slice indices must be integers or None");
    *out = v->u.i;
    return 1;
}

int eng__jj_slice(jr *r, const jv *obj, const jv *lo, const jv *hi, const jv *st, jv *out,
                  int line)
{
    memset(out, 0, sizeof(*out));
    if (obj->t == JV_UNDEF)
        return eng__jj_getitem(r, obj, lo, out, line);
    if (obj->t != JV_LIST && obj->t != JV_STR) {
        out->t = JV_UNDEF;
        return 0;
    }
    int64_t n = obj->t == JV_LIST ? (int64_t)obj->u.l->n : (int64_t)eng__utf8_len(obj->p, obj->n);
    int64_t step = 1, start = 0, stop = 0;
    int hs, he, hst;
    if ((hst = slice_arg(r, st, &step, line)) < 0)
        return -1;
    if (step == 0)
        return eng__jj_fail(r, ENG_E_INVAL, line, "slice step cannot be zero");
    if ((hs = slice_arg(r, lo, &start, line)) < 0 || (he = slice_arg(r, hi, &stop, line)) < 0)
        return -1;
    /* PySlice_AdjustIndices */
    if (!hs)
        start = step < 0 ? n - 1 : 0;
    else if (start < 0)
        start = start + n < 0 ? (step < 0 ? -1 : 0) : start + n;
    else if (start >= n)
        start = step < 0 ? n - 1 : n;
    if (!he)
        stop = step < 0 ? -1 : n;
    else if (stop < 0)
        stop = stop + n < 0 ? (step < 0 ? -1 : 0) : stop + n;
    else if (stop >= n)
        stop = step < 0 ? n - 1 : n;
    (void)hst;
    int64_t cnt = 0;
    if (step > 0 && stop > start)
        cnt = (stop - start - 1) / step + 1;
    else if (step < 0 && start > stop)
        cnt = (start - stop - 1) / (-step) + 1;
    if (obj->t == JV_LIST) {
        if (new_list(r, (size_t)cnt, out, line))
            return -1;
        for (int64_t k = 0; k < cnt; k++)
            out->u.l->v[k] = obj->u.l->v[start + k * step];
        out->u.l->tuple = obj->u.l->tuple;
        return 0;
    }
    if (step == 1) {
        size_t b = cp_offset(obj->p, obj->n, (size_t)(cnt ? start : 0));
        size_t e = cnt ? cp_offset(obj->p, obj->n, (size_t)stop) : b;
        return eng__jv_substr(r, obj, b, e, out);
    }
    /* other steps: code points gathered; tainted as a whole (conservative) */
    size_t *offs = malloc(((size_t)n + 1) * sizeof(*offs));
    if (!offs)
        return oom(r, line);
    size_t i = 0;
    for (int64_t k = 0; k <= n; k++) {
        offs[k] = i;
        if (i < obj->n)
            i = eng__utf8_next(obj->p, obj->n, i);
    }
    jbuf b = {0};
    int rc = eng__jb_put(r, &b, "", 0, NULL, 0);
    for (int64_t k = 0; k < cnt && rc == 0; k++) {
        int64_t c = start + k * step;
        rc = eng__jb_put(r, &b, obj->p + offs[c], offs[c + 1] - offs[c], NULL, 0);
    }
    free(offs);
    if (rc) {
        eng__jb_free(&b);
        return -1;
    }
    return buf_result(r, &b, obj->nt > 0, out);
}

/* ---- methods --------------------------------------------------------------------------- */

static int64_t int_arg(const jv *v, int64_t def)
{
    return v && (v->t == JV_INT || v->t == JV_BOOL) ? v->u.i : def;
}

static int prefix_test(jr *r, const jv *s, const jv *x, int end, int *res, int line)
{
    if (x->t == JV_LIST && x->u.l->tuple) {
        *res = 0;
        for (size_t i = 0; i < x->u.l->n && !*res; i++)
            if (prefix_test(r, s, &x->u.l->v[i], end, res, line))
                return -1;
        return 0;
    }
    if (want_str(r, x, end ? "endswith() argument" : "startswith() argument", line))
        return -1;
    *res = x->n <= s->n && (x->n == 0 || memcmp(end ? s->p + s->n - x->n : s->p, x->p, x->n) == 0);
    return 0;
}

static int mk_bool(jv *out, int b)
{
    memset(out, 0, sizeof(*out));
    out->t = JV_BOOL;
    out->u.i = b != 0;
    return 0;
}

static int mk_int(jv *out, int64_t i)
{
    memset(out, 0, sizeof(*out));
    out->t = JV_INT;
    out->u.i = i;
    return 0;
}

static int dict_view(jr *r, const jdict *d, int which, jv *out, int line)
{
    if (new_list(r, d->n, out, line))
        return -1;
    for (size_t i = 0; i < d->n; i++) {
        if (which == 'k') {
            out->u.l->v[i] = d->k[i];
        } else if (which == 'v') {
            out->u.l->v[i] = d->v[i];
        } else {
            jv pair;
            if (new_list(r, 2, &pair, line))
                return -1;
            pair.u.l->tuple = 1;
            pair.u.l->v[0] = d->k[i];
            pair.u.l->v[1] = d->v[i];
            out->u.l->v[i] = pair;
        }
    }
    return 0;
}

int eng__jj_method(jr *r, jv *recv, const char *m, jargs *a, jv *out, int line)
{
    memset(out, 0, sizeof(*out));
    if (recv->t == JV_STR) {
        const jv *s = recv;
        if (!strcmp(m, "strip") || !strcmp(m, "lstrip") || !strcmp(m, "rstrip"))
            return do_strip(r, s, arg(a, 0, "chars"), m[0] == 'l' ? 1 : m[0] == 'r' ? 2 : 3, out);
        if (!strcmp(m, "split"))
            return do_split(r, s, arg(a, 0, "sep"), int_arg(arg(a, 1, "maxsplit"), -1), out, line);
        if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
            const jv *x = arg(a, 0, "prefix");
            int res;
            if (!x)
                return eng__jj_fail(r, ENG_E_INVAL, line, "%s() takes an argument", m);
            if (prefix_test(r, s, x, m[0] == 'e', &res, line))
                return -1;
            return mk_bool(out, res);
        }
        if (!strcmp(m, "upper") || !strcmp(m, "lower") || !strcmp(m, "title") ||
            !strcmp(m, "capitalize"))
            return do_case(r, s, m[0] == 'u' ? 'u' : m[0] == 'l' ? 'l' : m[0] == 't' ? 't' : 'c',
                           out);
        if (!strcmp(m, "replace")) {
            const jv *o = arg(a, 0, "old"), *n = arg(a, 1, "new");
            if (!o || !n)
                return eng__jj_fail(r, ENG_E_INVAL, line, "replace() takes old and new");
            return do_replace(r, s, o, n, int_arg(arg(a, 2, "count"), -1), out, line);
        }
        if (!strcmp(m, "join")) {
            const jv *it = arg(a, 0, "iterable");
            jv l;
            jargs none = {0};
            if (!it || eng__jj_filter(r, "list", (jv *)it, &none, &l, line))
                return it ? -1 : eng__jj_fail(r, ENG_E_INVAL, line, "join() takes a list");
            for (size_t i = 0; i < l.u.l->n; i++)
                if (l.u.l->v[i].t != JV_STR)
                    return eng__jj_fail(r, ENG_E_INVAL, line, "join(): sequence item %zu: "
                                        "expected str, %s found", i,
                                        eng__jv_type_name(&l.u.l->v[i]));
            return do_join(r, l.u.l, s, NULL, out, line);
        }
        if (!strcmp(m, "format"))
            return do_format_braces(r, s, a, out, line);
        if (!strcmp(m, "find") || !strcmp(m, "count")) {
            const jv *x = arg(a, 0, "sub");
            if (!x || want_str(r, x, "argument", line))
                return x ? -1 : eng__jj_fail(r, ENG_E_INVAL, line, "%s() takes an argument", m);
            size_t at, from = 0;
            int64_t cnt = 0;
            if (m[0] == 'f') {
                if (!find_bytes(s->p, s->n, x->p, x->n, 0, &at))
                    return mk_int(out, -1);
                return mk_int(out, (int64_t)eng__utf8_len(s->p, at));
            }
            if (x->n == 0)
                return mk_int(out, (int64_t)eng__utf8_len(s->p, s->n) + 1);
            while (find_bytes(s->p, s->n, x->p, x->n, from, &at)) {
                cnt++;
                from = at + x->n;
            }
            return mk_int(out, cnt);
        }
        if (!strcmp(m, "isspace") || !strcmp(m, "isdigit") || !strcmp(m, "isalpha") ||
            !strcmp(m, "isupper") || !strcmp(m, "islower")) {
            int any = 0, ok = s->n > 0, cased = 0;
            for (size_t i = 0; i < s->n && ok; i++) {
                unsigned char c = (unsigned char)s->p[i];
                if (m[2] == 's') {
                    size_t k = eng__ws_at_start(s->p + i, s->n - i);
                    ok = k > 0;
                    if (k)
                        i += k - 1;
                } else if (m[2] == 'd') {
                    ok = c >= '0' && c <= '9';
                } else if (m[2] == 'a') {
                    ok = (c | 32) >= 'a' && (c | 32) <= 'z';
                } else {
                    int up = c >= 'A' && c <= 'Z', lo = c >= 'a' && c <= 'z';
                    if (up || lo)
                        cased = 1;
                    ok = m[2] == 'u' ? !lo : !up;
                }
                any = 1;
            }
            if (m[2] == 'u' || m[2] == 'l')
                ok = ok && cased;
            return mk_bool(out, ok && any);
        }
        return 1;
    }
    if (recv->t == JV_DICT) {
        const jdict *d = recv->u.d;
        if (!strcmp(m, "get")) {
            const jv *k = arg(a, 0, "key"), *def = arg(a, 1, "default");
            if (!k)
                return eng__jj_fail(r, ENG_E_INVAL, line, "get() takes a key");
            int i = dict_find(d, k);
            if (i >= 0)
                *out = d->v[i];
            else if (def)
                *out = *def;
            else
                out->t = JV_NONE;
            return 0;
        }
        if (!strcmp(m, "items"))
            return dict_view(r, d, 'i', out, line);
        if (!strcmp(m, "keys"))
            return dict_view(r, d, 'k', out, line);
        if (!strcmp(m, "values"))
            return dict_view(r, d, 'v', out, line);
        return 1;
    }
    if (recv->t == JV_LIST) {
        if (!strcmp(m, "count") || !strcmp(m, "index")) {
            const jv *x = arg(a, 0, "value");
            if (!x)
                return eng__jj_fail(r, ENG_E_INVAL, line, "%s() takes an argument", m);
            int64_t cnt = 0;
            for (size_t i = 0; i < recv->u.l->n; i++)
                if (eng__jv_eq(&recv->u.l->v[i], x, 0)) {
                    if (m[0] == 'i')
                        return mk_int(out, (int64_t)i);
                    cnt++;
                }
            if (m[0] == 'i')
                return eng__jj_fail(r, ENG_E_INVAL, line, "index(): value is not in the list");
            return mk_int(out, cnt);
        }
        return 1;
    }
    return 1;
}

/* ---- tests ----------------------------------------------------------------------------- */

static const char *const k_tests[] = {
    "defined", "undefined", "none", "boolean", "false", "true", "integer", "float", "number",
    "string", "mapping", "iterable", "sequence", "callable", "odd", "even", "divisibleby",
    "equalto", "eq", "ne", "lt", "le", "gt", "ge", "greaterthan", "lessthan", "in", "sameas",
    "lower", "upper", "escaped", NULL,
};

int eng__jj_test_known(const char *name)
{
    for (int i = 0; k_tests[i]; i++)
        if (strcmp(k_tests[i], name) == 0)
            return 1;
    return 0;
}

int eng__jj_test(jr *r, const char *t, const jv *v, jargs *a, int *res, int line)
{
    const jv *x = arg(a, 0, "other");
    *res = 0;
    if (!strcmp(t, "defined")) *res = v->t != JV_UNDEF;
    else if (!strcmp(t, "undefined")) *res = v->t == JV_UNDEF;
    else if (!strcmp(t, "none")) *res = v->t == JV_NONE;
    else if (!strcmp(t, "boolean")) *res = v->t == JV_BOOL;
    else if (!strcmp(t, "false")) *res = v->t == JV_BOOL && !v->u.i;
    else if (!strcmp(t, "true")) *res = v->t == JV_BOOL && v->u.i;
    else if (!strcmp(t, "integer")) *res = v->t == JV_INT;
    else if (!strcmp(t, "float")) *res = v->t == JV_FLOAT;
    else if (!strcmp(t, "number")) *res = is_num(v);
    else if (!strcmp(t, "string")) *res = v->t == JV_STR;
    else if (!strcmp(t, "mapping")) *res = v->t == JV_DICT;
    else if (!strcmp(t, "iterable"))
        *res = v->t == JV_STR || v->t == JV_LIST || v->t == JV_DICT || v->t == JV_UNDEF;
    else if (!strcmp(t, "sequence"))
        *res = v->t == JV_STR || v->t == JV_LIST || v->t == JV_DICT || v->t == JV_UNDEF;
    else if (!strcmp(t, "callable")) *res = v->t == JV_MACRO || v->t == JV_FUNC;
    else if (!strcmp(t, "odd") || !strcmp(t, "even") || !strcmp(t, "divisibleby")) {
        if (v->t != JV_INT && v->t != JV_BOOL)
            return eng__jj_fail(r, ENG_E_INVAL, line, "test '%s' needs an integer, not %s", t,
                                eng__jv_type_name(v));
        if (t[0] == 'o')
            *res = v->u.i % 2 != 0;
        else if (t[0] == 'e')
            *res = v->u.i % 2 == 0;
        else {
            if (!x || (x->t != JV_INT && x->t != JV_BOOL) || x->u.i == 0)
                return eng__jj_fail(r, ENG_E_INVAL, line, "divisibleby needs a nonzero integer");
            *res = v->u.i % x->u.i == 0;
        }
    } else if (!strcmp(t, "lower") || !strcmp(t, "upper")) {
        jv m;
        jargs none = {0};
        if (v->t != JV_STR)
            return eng__jj_fail(r, ENG_E_INVAL, line, "test '%s' needs a string", t);
        if (eng__jj_method(r, (jv *)v, t[0] == 'l' ? "islower" : "isupper", &none, &m, line))
            return -1;
        *res = (int)m.u.i;
    } else if (!strcmp(t, "escaped")) {
        *res = 0;
    } else {
        if (!x)
            return eng__jj_fail(r, ENG_E_INVAL, line, "test '%s' takes an argument", t);
        jop op;
        if (!strcmp(t, "equalto") || !strcmp(t, "eq") || !strcmp(t, "sameas"))
            op = JOP_EQ;
        else if (!strcmp(t, "ne"))
            op = JOP_NE;
        else if (!strcmp(t, "lt") || !strcmp(t, "lessthan"))
            op = JOP_LT;
        else if (!strcmp(t, "le"))
            op = JOP_LE;
        else if (!strcmp(t, "gt") || !strcmp(t, "greaterthan"))
            op = JOP_GT;
        else if (!strcmp(t, "ge"))
            op = JOP_GE;
        else
            op = JOP_IN;
        if (op == JOP_EQ && t[0] == 's' && (v->t != x->t || (v->t != JV_NONE && v->t != JV_BOOL &&
                                                            v->t != JV_UNDEF))) {
            /* sameas is identity: equal singletons only (none, true, false) */
            *res = (v->t == JV_NONE || v->t == JV_BOOL) && eng__jv_eq(v, x, 0) &&
                   v->t == x->t;
            return 0;
        }
        jv o;
        if (eng__jj_binop(r, op, v, x, &o, line))
            return -1;
        *res = (int)o.u.i;
    }
    return 0;
}

/* ---- filters --------------------------------------------------------------------------- */

static const char *const k_filters[] = {
    "trim", "tojson", "length", "count", "upper", "lower", "title", "capitalize", "join",
    "default", "d", "first", "last", "list", "string", "int", "float", "replace", "items",
    "selectattr", "rejectattr", "select", "reject", "map", "indent", "safe", "abs", "round",
    "reverse", "escape", "e", "format", "sort", "attr", "sum", "unique", "min", "max", NULL,
};

int eng__jj_filter_known(const char *name)
{
    for (int i = 0; k_filters[i]; i++)
        if (strcmp(k_filters[i], name) == 0)
            return 1;
    return 0;
}

/* item.a.b as jinja's attribute getters do (environment.getitem per dotted part) */
static int get_path(jr *r, const jv *item, const char *path, jv *out, int line)
{
    *out = *item;
    const char *p = path;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        jv key;
        int is_int = n > 0;
        for (size_t i = 0; i < n; i++)
            is_int &= p[i] >= '0' && p[i] <= '9';
        if (is_int)
            mk_int(&key, atoll(p));
        else
            key = eng__jv_mkstr(p, n);
        jv cur = *out;
        if (cur.t == JV_UNDEF) {
            memset(out, 0, sizeof(*out));
            return 0;
        }
        if (cur.t == JV_NS) {
            memset(out, 0, sizeof(*out));
            eng__jv_dict_get(cur.u.d, p, n, out);
        } else if (eng__jj_getitem(r, &cur, &key, out, line)) {
            return -1;
        }
        if (!dot)
            break;
        p = dot + 1;
    }
    return 0;
}

static int seq_of(jr *r, jv *in, const jlist **out, int line)
{
    jv l;
    jargs none = {0};
    if (eng__jj_filter(r, "list", in, &none, &l, line))
        return -1;
    *out = l.u.l;
    return 0;
}

static int select_filter(jr *r, const char *name, jv *in, jargs *a, jv *out, int line)
{
    int by_attr = name[1] == 'e' && name[6] == 'a';   /* selectattr / rejectattr */
    int reject = name[0] == 'r';
    const jlist *l;
    if (seq_of(r, in, &l, line) || new_list(r, l->n, out, line))
        return -1;
    int base = 0;
    const char *attr = NULL;
    if (by_attr) {
        if (a->n_pos < 1 || a->pos[0].t != JV_STR)
            return eng__jj_fail(r, ENG_E_INVAL, line, "%s needs an attribute name", name);
        char *an = eng__jj_alloc(&r->a, a->pos[0].n + 1);
        if (!an)
            return oom(r, line);
        memcpy(an, a->pos[0].p, a->pos[0].n);
        an[a->pos[0].n] = '\0';
        attr = an;
        base = 1;
    }
    char tname[32] = "";
    if (a->n_pos > base) {
        const jv *tn = &a->pos[base];
        if (tn->t != JV_STR || tn->n >= sizeof(tname))
            return eng__jj_fail(r, ENG_E_INVAL, line, "%s: test name must be a string", name);
        memcpy(tname, tn->p, tn->n);
        tname[tn->n] = '\0';
        if (!eng__jj_test_known(tname))
            return eng__jj_fail(r, ENG_E_INVAL, line, "no test named '%s'", tname);
    }
    jargs targs = {0};
    if (a->n_pos > base + 1) {
        targs.pos = a->pos + base + 1;
        targs.n_pos = a->n_pos - base - 1;
    }
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++) {
        jv v;
        int keep;
        if (attr ? get_path(r, &l->v[i], attr, &v, line) : (v = l->v[i], 0))
            return -1;
        if (tname[0]) {
            if (eng__jj_test(r, tname, &v, &targs, &keep, line))
                return -1;
        } else {
            keep = eng__jv_truthy(&v);
        }
        if (keep != reject)
            out->u.l->v[n++] = l->v[i];
    }
    out->u.l->n = n;
    return 0;
}

static int indent_filter(jr *r, jv *s, jargs *a, jv *out, int line)
{
    const jv *w = arg(a, 0, "width"), *first = arg(a, 1, "first"), *blank = arg(a, 2, "blank");
    char ind_buf[256];
    const char *ind = "    ";
    size_t ind_n = 4;
    if (w && w->t == JV_STR) {
        ind = w->p;
        ind_n = w->n;
    } else if (w) {
        int64_t k = int_arg(w, 4);
        if (k < 0)
            k = 0;
        if (k > (int64_t)sizeof(ind_buf))
            return eng__jj_fail(r, ENG_E_RANGE, line, "indent width over %zu", sizeof(ind_buf));
        memset(ind_buf, ' ', (size_t)k);
        ind = ind_buf;
        ind_n = (size_t)k;
    }
    jv str;
    if (eng__jv_to_str(r, s, &str, line))
        return -1;
    int do_first = first && eng__jv_truthy(first), do_blank = blank && eng__jv_truthy(blank);
    /* lines as str.splitlines() of (s + "\n") */
    jbuf b = {0};
    int rc = eng__jb_put(r, &b, "", 0, NULL, 0);
    size_t i = 0;
    int lineno = 0;
    if (do_first)
        rc = eng__jb_put(r, &b, ind, ind_n, NULL, 0);
    while (rc == 0 && i < str.n) {
        size_t e = i, k;
        size_t brk = 0;
        while (e < str.n) {
            uint32_t c = cp_at(str.p, str.n, e, &k);
            if (c == '\r' && k < str.n && str.p[k] == '\n') {
                brk = k + 1 - e;
                break;
            }
            if (c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || (c >= 0x1c && c <= 0x1e) ||
                c == 0x85 || c == 0x2028 || c == 0x2029) {
                brk = k - e;
                break;
            }
            e = k;
        }
        if (lineno > 0) {
            rc = eng__jb_puts(r, &b, "\n");
            if (rc == 0 && (e > i || do_blank))
                rc = eng__jb_put(r, &b, ind, ind_n, NULL, 0);
        }
        if (rc == 0)
            rc = eng__jb_put(r, &b, str.p + i, e - i, NULL, 0);
        lineno++;
        i = e + brk;
        /* a break at the very end leaves an empty last line (s + "\n" splits into one more),
         * so 'a\nb\n' keeps its newline */
        if (rc == 0 && brk && i == str.n) {
            rc = eng__jb_puts(r, &b, "\n");
            if (rc == 0 && do_blank)
                rc = eng__jb_put(r, &b, ind, ind_n, NULL, 0);
        }
    }
    if (rc) {
        eng__jb_free(&b);
        return -1;
    }
    return buf_result(r, &b, str.nt > 0, out);
}

/* The comparison keys of sort, unique, min and max, as jinja2 makes them: the item, or its
 * `attribute` (a dotted path), lower-cased when a string unless case_sensitive is true (their
 * default is false). keys[n], malloc'd by the caller. */
static int order_keys(jr *r, const jlist *l, const jv *attr, const jv *cs, jv *keys, int line)
{
    char path[128] = "";
    if (attr && attr->t == JV_STR) {
        if (attr->n >= sizeof(path))
            return eng__jj_fail(r, ENG_E_INVAL, line, "attribute name too long");
        memcpy(path, attr->p, attr->n);
        path[attr->n] = '\0';
    }
    int fold = !(cs && eng__jv_truthy(cs));
    for (size_t i = 0; i < l->n; i++) {
        if (path[0] ? get_path(r, &l->v[i], path, &keys[i], line) : (keys[i] = l->v[i], 0))
            return -1;
        jv low;
        if (fold && keys[i].t == JV_STR) {
            if (do_case(r, &keys[i], 'l', &low))
                return -1;
            keys[i] = low;
        }
    }
    return 0;
}

static int sort_filter(jr *r, jv *in, jargs *a, jv *out, int line)
{
    const jv *rev = arg(a, 0, "reverse"), *attr = arg(a, 2, "attribute");
    const jlist *l;
    if (seq_of(r, in, &l, line) || new_list(r, l->n, out, line))
        return -1;
    jv *keys = malloc((l->n ? l->n : 1) * sizeof(jv));
    if (!keys)
        return oom(r, line);
    for (size_t i = 0; i < l->n; i++)
        out->u.l->v[i] = l->v[i];
    int rc = order_keys(r, l, attr, arg(a, 1, "case_sensitive"), keys, line);
    int desc = rev && eng__jv_truthy(rev);
    for (size_t i = 1; i < l->n && rc == 0; i++) {
        for (size_t j = i; j > 0; j--) {
            int c;
            if ((rc = cmp_order(r, &keys[j - 1], &keys[j], &c, line, 0)) != 0)
                break;
            if (desc ? c >= 0 : c <= 0)
                break;
            jv t = keys[j];
            keys[j] = keys[j - 1];
            keys[j - 1] = t;
            t = out->u.l->v[j];
            out->u.l->v[j] = out->u.l->v[j - 1];
            out->u.l->v[j - 1] = t;
        }
    }
    free(keys);
    return rc ? -1 : 0;
}

int eng__jj_filter(jr *r, const char *f, jv *in, jargs *a, jv *out, int line)
{
    memset(out, 0, sizeof(*out));
    if (!strcmp(f, "safe"))
        return *out = *in, 0;
    if (!strcmp(f, "string"))
        return eng__jv_to_str(r, in, out, line);
    if (!strcmp(f, "default") || !strcmp(f, "d")) {
        const jv *dv = arg(a, 0, "default_value"), *boolean = arg(a, 1, "boolean");
        int use = in->t == JV_UNDEF || (boolean && eng__jv_truthy(boolean) &&
                                        !eng__jv_truthy(in));
        if (!use)
            *out = *in;
        else if (dv)
            *out = *dv;
        else
            *out = eng__jv_mkstr("", 0);
        return 0;
    }
    if (!strcmp(f, "tojson")) {
        json_opts o = {.item_sep = ", ", .key_sep = ": ", .item_sep_n = 2, .key_sep_n = 2};
        const jv *ea = arg(a, 0, "ensure_ascii"), *ind = arg(a, 1, "indent"),
                 *sep = arg(a, 2, "separators"), *sk = arg(a, 3, "sort_keys");
        char ib[256];
        o.ascii = ea && eng__jv_truthy(ea);
        o.sort_keys = sk && eng__jv_truthy(sk);
        if (ind && ind->t == JV_STR) {
            o.indent = ind->p;
            o.indent_n = ind->n;
        } else if (ind && (ind->t == JV_INT || ind->t == JV_BOOL)) {
            int64_t k = ind->u.i < 0 ? 0 : ind->u.i;
            if (k > (int64_t)sizeof(ib))
                return eng__jj_fail(r, ENG_E_RANGE, line, "tojson indent over %zu", sizeof(ib));
            memset(ib, ' ', (size_t)k);
            o.indent = ib;
            o.indent_n = (size_t)k;
        }
        if (o.indent) {
            o.item_sep = ",";
            o.item_sep_n = 1;
        }
        if (sep && sep->t == JV_LIST && sep->u.l->n == 2 && sep->u.l->v[0].t == JV_STR &&
            sep->u.l->v[1].t == JV_STR) {
            o.item_sep = sep->u.l->v[0].p;
            o.item_sep_n = sep->u.l->v[0].n;
            o.key_sep = sep->u.l->v[1].p;
            o.key_sep_n = sep->u.l->v[1].n;
        }
        jbuf b = {0};
        if (json_into(r, &b, in, &o, 0, line) || (!b.p && eng__jb_put(r, &b, "", 0, NULL, 0))) {
            eng__jb_free(&b);
            return -1;
        }
        return buf_result(r, &b, eng__jv_tainted(in, 0), out);
    }
    if (!strcmp(f, "length") || !strcmp(f, "count")) {
        switch (in->t) {
        case JV_STR: return mk_int(out, (int64_t)eng__utf8_len(in->p, in->n));
        case JV_LIST: return mk_int(out, (int64_t)in->u.l->n);
        case JV_DICT: case JV_NS: return mk_int(out, (int64_t)in->u.d->n);
        case JV_UNDEF: return mk_int(out, 0);
        default:
            return eng__jj_fail(r, ENG_E_INVAL, line, "object of type '%s' has no len()",
                                eng__jv_type_name(in));
        }
    }
    if (!strcmp(f, "list")) {
        if (in->t == JV_LIST) {
            if (new_list(r, in->u.l->n, out, line))
                return -1;
            if (in->u.l->n)
                memcpy(out->u.l->v, in->u.l->v, in->u.l->n * sizeof(jv));
            return 0;
        }
        if (in->t == JV_DICT)
            return dict_view(r, in->u.d, 'k', out, line);
        if (in->t == JV_UNDEF)
            return new_list(r, 0, out, line);
        if (in->t == JV_STR) {
            size_t n = eng__utf8_len(in->p, in->n), i = 0;
            if (new_list(r, n, out, line))
                return -1;
            for (size_t k = 0; k < n; k++) {
                size_t e = eng__utf8_next(in->p, in->n, i);
                if (eng__jv_substr(r, in, i, e, &out->u.l->v[k]))
                    return -1;
                i = e;
            }
            return 0;
        }
        return eng__jj_fail(r, ENG_E_INVAL, line, "'%s' object is not iterable",
                            eng__jv_type_name(in));
    }
    if (!strcmp(f, "first") || !strcmp(f, "last")) {
        if (in->t == JV_LIST) {
            if (in->u.l->n)
                *out = in->u.l->v[f[0] == 'f' ? 0 : in->u.l->n - 1];
            return 0;
        }
        if (in->t == JV_UNDEF)
            return 0;
        if (in->t == JV_STR) {
            if (!in->n)
                return 0;
            if (f[0] == 'f')
                return eng__jv_substr(r, in, 0, eng__utf8_next(in->p, in->n, 0), out);
            return eng__jv_substr(r, in, cp_start_before(in->p, in->n), in->n, out);
        }
        if (in->t == JV_DICT) {
            if (in->u.d->n)
                *out = in->u.d->k[f[0] == 'f' ? 0 : in->u.d->n - 1];
            return 0;
        }
        return eng__jj_fail(r, ENG_E_INVAL, line, "'%s' object is not iterable",
                            eng__jv_type_name(in));
    }
    if (!strcmp(f, "items")) {
        if (in->t == JV_UNDEF)
            return new_list(r, 0, out, line);
        if (in->t != JV_DICT)
            return eng__jj_fail(r, ENG_E_INVAL, line, "items: can only get item pairs from a "
                                "mapping");
        return dict_view(r, in->u.d, 'i', out, line);
    }
    if (!strcmp(f, "join")) {
        const jv *sep = arg(a, 0, "d"), *attr = arg(a, 1, "attribute");
        jv sv = eng__jv_mkstr("", 0);
        const jlist *l;
        char path[128];
        if (sep && eng__jv_to_str(r, sep, &sv, line))
            return -1;
        if (seq_of(r, in, &l, line))
            return -1;
        if (attr && attr->t == JV_STR && attr->n < sizeof(path)) {
            memcpy(path, attr->p, attr->n);
            path[attr->n] = '\0';
            jv mapped;
            if (new_list(r, l->n, &mapped, line))
                return -1;
            for (size_t i = 0; i < l->n; i++)
                if (get_path(r, &l->v[i], path, &mapped.u.l->v[i], line))
                    return -1;
            l = mapped.u.l;
        }
        return do_join(r, l, &sv, NULL, out, line);
    }
    if (!strcmp(f, "int") || !strcmp(f, "float")) {
        const jv *dv = arg(a, 0, "default");
        int is_int = f[0] == 'i';
        jv def;
        if (dv)
            def = *dv;
        else if (is_int)
            mk_int(&def, 0);
        else
            def = (jv){.t = JV_FLOAT};
        if (in->t == JV_INT || in->t == JV_BOOL) {
            if (is_int)
                return mk_int(out, in->u.i);
            return *out = (jv){.t = JV_FLOAT, .u.f = (double)in->u.i}, 0;
        }
        if (in->t == JV_FLOAT) {
            if (!is_int)
                return *out = *in, 0;
            if (!(in->u.f > -9.2e18 && in->u.f < 9.2e18))
                return *out = def, 0;
            return mk_int(out, (int64_t)in->u.f);
        }
        if (in->t != JV_STR)
            return *out = def, 0;
        char buf[128];
        jv s;
        if (do_strip(r, in, NULL, 3, &s))
            return -1;
        if (s.n == 0 || s.n >= sizeof(buf))
            return *out = def, 0;
        size_t bn = 0;
        for (size_t i = 0; i < s.n; i++)
            if (s.p[i] != '_')
                buf[bn++] = s.p[i];
        buf[bn] = '\0';
        char *end;
        if (is_int) {
            long long v = strtoll(buf, &end, 10);
            if (*end == '\0' && end != buf)
                return mk_int(out, v);
        }
        double d = strtod(buf, &end);
        if (*end != '\0' || end == buf)
            return *out = def, 0;
        if (!is_int)
            return *out = (jv){.t = JV_FLOAT, .u.f = d}, 0;
        if (!(d > -9.2e18 && d < 9.2e18))
            return *out = def, 0;
        return mk_int(out, (int64_t)d);
    }
    if (!strcmp(f, "abs")) {
        if (in->t == JV_INT || in->t == JV_BOOL)
            return mk_int(out, in->u.i < 0 ? -in->u.i : in->u.i);
        if (in->t == JV_FLOAT)
            return *out = (jv){.t = JV_FLOAT, .u.f = fabs(in->u.f)}, 0;
        return eng__jj_fail(r, ENG_E_INVAL, line, "bad operand type for abs(): '%s'",
                            eng__jv_type_name(in));
    }
    if (!strcmp(f, "round")) {
        int64_t prec = int_arg(arg(a, 0, "precision"), 0);
        const jv *meth = arg(a, 1, "method");
        if (!is_num(in))
            return eng__jj_fail(r, ENG_E_INVAL, line, "round needs a number");
        double x = num(in), p = pow(10.0, (double)prec), v;
        if (meth && meth->t == JV_STR && meth->n == 4 && !memcmp(meth->p, "ceil", 4))
            v = ceil(x * p) / p;
        else if (meth && meth->t == JV_STR && meth->n == 5 && !memcmp(meth->p, "floor", 5))
            v = floor(x * p) / p;
        else if (in->t != JV_FLOAT) {   /* Python's round() of an int stays an int */
            if (prec >= 0)
                return *out = (jv){.t = JV_INT, .u.i = in->u.i}, 0;
            return *out = (jv){.t = JV_INT, .u.i = (int64_t)(nearbyint(x * p) / p)}, 0;
        } else if (prec >= 0 && prec <= 300 && isfinite(x)) {
            /* Python rounds the exact binary value (2.675 is 2.67499..., so 2.67): printf's
             * correctly rounded digits read back give the same double */
            char buf[700];
            snprintf(buf, sizeof buf, "%.*f", (int)prec, x);
            v = strtod(buf, NULL);
        } else {
            v = nearbyint(x * p) / p;   /* half to even */
        }
        return *out = (jv){.t = JV_FLOAT, .u.f = v}, 0;
    }
    if (!strcmp(f, "attr")) {
        const jv *n = arg(a, 0, "name");
        char path[128];
        if (!n || n->t != JV_STR || n->n >= sizeof(path) || memchr(n->p, '.', n->n))
            return eng__jj_fail(r, ENG_E_INVAL, line, "attr needs an attribute name");
        memcpy(path, n->p, n->n);
        path[n->n] = '\0';
        return get_path(r, in, path, out, line);
    }
    if (!strcmp(f, "map")) {
        const jv *attr = arg(a, -1, "attribute"), *dv = arg(a, -1, "default");
        const jlist *l;
        if (seq_of(r, in, &l, line) || new_list(r, l->n, out, line))
            return -1;
        if (attr) {
            char path[128];
            if (attr->t != JV_STR || attr->n >= sizeof(path))
                return eng__jj_fail(r, ENG_E_INVAL, line, "map: attribute must be a string");
            memcpy(path, attr->p, attr->n);
            path[attr->n] = '\0';
            for (size_t i = 0; i < l->n; i++) {
                if (get_path(r, &l->v[i], path, &out->u.l->v[i], line))
                    return -1;
                if (out->u.l->v[i].t == JV_UNDEF && dv)
                    out->u.l->v[i] = *dv;
            }
            return 0;
        }
        if (a->n_pos < 1 || a->pos[0].t != JV_STR || a->pos[0].n >= 32)
            return eng__jj_fail(r, ENG_E_INVAL, line, "map needs a filter name or attribute=");
        char fname[32];
        memcpy(fname, a->pos[0].p, a->pos[0].n);
        fname[a->pos[0].n] = '\0';
        if (!eng__jj_filter_known(fname))
            return eng__jj_fail(r, ENG_E_INVAL, line, "no filter named '%s'", fname);
        jargs sub = {.pos = a->pos + 1, .n_pos = a->n_pos - 1, .kw = a->kw, .kwv = a->kwv,
                     .n_kw = a->n_kw};
        for (size_t i = 0; i < l->n; i++) {
            jv item = l->v[i];
            if (eng__jj_filter(r, fname, &item, &sub, &out->u.l->v[i], line))
                return -1;
        }
        return 0;
    }
    if (!strcmp(f, "selectattr") || !strcmp(f, "rejectattr") || !strcmp(f, "select") ||
        !strcmp(f, "reject"))
        return select_filter(r, f, in, a, out, line);
    if (!strcmp(f, "sort"))
        return sort_filter(r, in, a, out, line);
    if (!strcmp(f, "reverse")) {
        if (in->t == JV_STR) {
            jv st = {.t = JV_INT, .u.i = -1}, none = {.t = JV_NONE};
            return eng__jj_slice(r, in, &none, &none, &st, out, line);
        }
        const jlist *l;
        if (seq_of(r, in, &l, line) || new_list(r, l->n, out, line))
            return -1;
        for (size_t i = 0; i < l->n; i++)
            out->u.l->v[i] = l->v[l->n - 1 - i];
        return 0;
    }
    if (!strcmp(f, "unique") || !strcmp(f, "min") || !strcmp(f, "max") || !strcmp(f, "sum")) {
        const jlist *l;
        if (seq_of(r, in, &l, line))
            return -1;
        if (f[0] != 's') {   /* unique / min / max (case_sensitive=False, attribute=None) */
            jv *keys = malloc((l->n ? l->n : 1) * sizeof(jv));
            if (!keys)
                return oom(r, line);
            int rc = order_keys(r, l, arg(a, 1, "attribute"), arg(a, 0, "case_sensitive"), keys,
                                line);
            if (rc == 0 && f[1] == 'n') {
                rc = new_list(r, l->n, out, line);
                size_t n = 0;
                for (size_t i = 0; i < l->n && rc == 0; i++) {
                    size_t j;
                    for (j = 0; j < i; j++)   /* first of each key, in order */
                        if (eng__jv_eq(&keys[j], &keys[i], 0))
                            break;
                    if (j == i)
                        out->u.l->v[n++] = l->v[i];
                }
                if (rc == 0)
                    out->u.l->n = n;
            } else if (rc == 0) {
                out->t = JV_UNDEF;
                size_t best = 0;
                for (size_t i = 1; i < l->n && rc == 0; i++) {
                    int c;
                    if ((rc = cmp_order(r, &keys[i], &keys[best], &c, line, 0)) == 0 &&
                        (f[1] == 'i' ? c < 0 : c > 0))
                        best = i;
                }
                if (rc == 0 && l->n)
                    *out = l->v[best];
            }
            free(keys);
            return rc ? -1 : 0;
        }
        if (f[0] == 's') {
            jv acc;
            mk_int(&acc, 0);
            const jv *st = arg(a, 1, "start");
            if (st)
                acc = *st;
            char by[128] = "";   /* sum(attribute=...) adds that attribute of each item */
            const jv *at = arg(a, 0, "attribute");
            if (at && at->t != JV_UNDEF && at->t != JV_NONE) {
                if (want_str(r, at, "sum's attribute", line))
                    return -1;
                if (at->n >= sizeof by)
                    return eng__jj_fail(r, ENG_E_INVAL, line, "sum's attribute is too long");
                memcpy(by, at->p, at->n);
                by[at->n] = '\0';
            }
            for (size_t i = 0; i < l->n; i++) {
                jv item = l->v[i], sum;   /* binop clears its output first: never alias it */
                if (by[0] && get_path(r, &l->v[i], by, &item, line))
                    return -1;
                if (eng__jj_binop(r, JOP_ADD, &acc, &item, &sum, line))
                    return -1;
                acc = sum;
            }
            *out = acc;
            return 0;
        }
    }
    if (!strcmp(f, "format")) {
        jv s;
        return eng__jv_to_str(r, in, &s, line) || do_percent(r, &s, a, out, line) ? -1 : 0;
    }
    if (!strcmp(f, "indent"))
        return indent_filter(r, in, a, out, line);
    /* the rest take str(value) */
    jv s;
    if (eng__jv_to_str(r, in, &s, line))
        return -1;
    if (!strcmp(f, "trim"))
        return do_strip(r, &s, arg(a, 0, "chars"), 3, out);
    if (!strcmp(f, "upper"))
        return do_case(r, &s, 'u', out);
    if (!strcmp(f, "lower"))
        return do_case(r, &s, 'l', out);
    if (!strcmp(f, "capitalize"))
        return do_case(r, &s, 'c', out);
    if (!strcmp(f, "title"))
        return do_case(r, &s, 'j', out);
    if (!strcmp(f, "replace")) {
        const jv *o = arg(a, 0, "old"), *n = arg(a, 1, "new");
        if (!o || !n)
            return eng__jj_fail(r, ENG_E_INVAL, line, "replace needs old and new");
        jv os, ns;
        if (eng__jv_to_str(r, o, &os, line) || eng__jv_to_str(r, n, &ns, line))
            return -1;
        return do_replace(r, &s, &os, &ns, int_arg(arg(a, 2, "count"), -1), out, line);
    }
    if (!strcmp(f, "escape") || !strcmp(f, "e")) {
        jbuf b = {0};
        int rc = eng__jb_put(r, &b, "", 0, NULL, 0);
        for (size_t i = 0; i < s.n && rc == 0; i++) {
            const char *w = NULL;
            switch (s.p[i]) {
            case '&': w = "&amp;"; break;
            case '<': w = "&lt;"; break;
            case '>': w = "&gt;"; break;
            case '"': w = "&#34;"; break;
            case '\'': w = "&#39;"; break;
            }
            rc = w ? eng__jb_puts(r, &b, w) : eng__jb_put(r, &b, s.p + i, 1, NULL, 0);
        }
        if (rc) {
            eng__jb_free(&b);
            return -1;
        }
        return buf_result(r, &b, s.nt > 0, out);
    }
    return eng__jj_fail(r, ENG_E_INVAL, line, "no filter named '%s'", f);
}
