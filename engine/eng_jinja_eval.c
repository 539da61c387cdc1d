/* eng_jinja_eval.c — compiling (source normalization, then eng_jinja_parse.c) and rendering:
 * scopes as jinja2 has them (a for loop iteration and a macro call are scopes, an if is not),
 * expression evaluation with jinja2's Undefined, statements, the output buffer with its tainted
 * ranges, and the limits (output, memory, steps, depth). Any thread: all render state lives in
 * one jr on the caller's stack. Filters, tests and methods are in eng_jinja_lib.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eng_jinja_impl.h"

/* ---- arena ----------------------------------------------------------------------------- */

void *eng__jj_alloc(jj_arena *a, size_t n)
{
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (n == 0)
        n = sizeof(max_align_t);
    jj_block *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > (64u << 10) ? n : (64u << 10);
        if (a->limit && (cap > a->limit || a->total > a->limit - cap)) {
            a->refused = 1;
            return NULL;
        }
        b = malloc(sizeof(*b) + cap);
        if (!b)
            return NULL;
        b->cap = cap;
        b->used = 0;
        b->next = a->head;
        a->head = b;
        a->total += cap;
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    return p;
}

void eng__jj_arena_free(jj_arena *a)
{
    jj_block *b = a->head;
    while (b) {
        jj_block *nx = b->next;
        free(b);
        b = nx;
    }
    a->head = NULL;
    a->total = 0;
}

/* ---- errors and buffers ---------------------------------------------------------------- */

int eng__jj_fail(jr *r, int code, int line, const char *fmt, ...)
{
    if (r->failed)
        return -1;
    r->failed = 1;
    char msg[ENG_ERR_MSG - 32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (line > 0)
        eng_err_set(r->err, code, "template line %d: %s", line, msg);
    else
        eng_err_set(r->err, code, "template: %s", msg);
    return -1;
}

int eng__jj_oom(jr *r, int line)
{
    if (r->a.refused || (r->a.limit && r->a.total + (64u << 10) > r->a.limit))
        return eng__jj_fail(r, ENG_E_RANGE, line, "rendering needs more than %zu bytes of "
                            "memory (limit)", r->a.limit);
    return eng__jj_fail(r, ENG_E_NOMEM, line, "out of memory");
}

static int oom(jr *r, int line) { return eng__jj_oom(r, line); }

int eng__jj_work(jr *r, size_t n, int line)
{
    r->work += n;
    if (r->work > ENG_JINJA_MAX_WORK)
        return eng__jj_fail(r, ENG_E_RANGE, line, "more than %llu bytes of string work "
                            "(limit)", (unsigned long long)ENG_JINJA_MAX_WORK);
    return 0;
}

int eng__jb_put(jr *r, jbuf *b, const char *s, size_t n, const size_t *tr, uint32_t nt)
{
    if (eng__jj_work(r, n, 0))
        return -1;
    if (n > r->max_output || b->n > r->max_output - n)
        return eng__jj_fail(r, ENG_E_RANGE, 0, "text over %zu bytes (output limit)",
                            r->max_output);
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1)
            nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np)
            return eng__jj_fail(r, ENG_E_NOMEM, 0, "out of memory");
        b->p = np;
        b->cap = nc;
    }
    if (n)
        memcpy(b->p + b->n, s, n);
    for (uint32_t k = 0; k < nt; k++) {
        size_t lo = b->n + tr[2 * k], hi = b->n + tr[2 * k + 1];
        if (hi <= lo)
            continue;
        if (b->nsp > 0 && b->sp[2 * b->nsp - 1] >= lo) {
            if (hi > b->sp[2 * b->nsp - 1])
                b->sp[2 * b->nsp - 1] = hi;
            continue;
        }
        if (b->nsp == b->capsp) {
            int nc = b->capsp ? 2 * b->capsp : 16;
            size_t *ns = realloc(b->sp, 2 * (size_t)nc * sizeof(*ns));
            if (!ns)
                return eng__jj_fail(r, ENG_E_NOMEM, 0, "out of memory");
            b->sp = ns;
            b->capsp = nc;
        }
        b->sp[2 * b->nsp] = lo;
        b->sp[2 * b->nsp + 1] = hi;
        b->nsp++;
    }
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

int eng__jb_puts(jr *r, jbuf *b, const char *s)
{
    return eng__jb_put(r, b, s, strlen(s), NULL, 0);
}

void eng__jb_free(jbuf *b)
{
    free(b->p);
    free(b->sp);
    memset(b, 0, sizeof(*b));
}

int eng__jb_value(jr *r, const jbuf *b, jv *out)
{
    char *p = eng__jj_alloc(&r->a, b->n + 1);
    size_t *tr = b->nsp ? eng__jj_alloc(&r->a, 2 * (size_t)b->nsp * sizeof(*tr)) : NULL;
    if (!p || (b->nsp && !tr))
        return oom(r, 0);
    if (b->n)
        memcpy(p, b->p, b->n);
    p[b->n] = '\0';
    if (b->nsp)
        memcpy(tr, b->sp, 2 * (size_t)b->nsp * sizeof(*tr));
    *out = eng__jv_mkstr(p, b->n);
    out->tr = tr;
    out->nt = (uint32_t)b->nsp;
    return 0;
}

/* ---- scopes ---------------------------------------------------------------------------- */

typedef struct jvar {
    struct jvar *next;
    const char *name;           /* borrowed from the tree or a literal */
    jv v;
} jvar;

typedef struct jframe {
    struct jframe *parent;      /* NULL at the root */
    jvar *vars;                 /* owned list (malloc): a loop iteration's or a macro call's
                                   variables die with it, so long loops do not grow the arena */
} jframe;

/* A macro value: its statement, and a copy of what the scopes around its definition held
 * (a loop's variables, an enclosing macro's arguments, sets there, itself), which its body sees
 * as jinja2's closures do; the root scope is read live. Arena-allocated, as are the copies:
 * valid for the whole render, even after those scopes ended. */
typedef struct jmacro {
    const struct jstmt *s;
    jvar *closure;
} jmacro;

static void frame_free(jframe *f)
{
    jvar *v = f->vars;
    while (v) {
        jvar *nx = v->next;
        free(v);
        v = nx;
    }
    f->vars = NULL;
}

static jvar *frame_find(jframe *f, const char *name)
{
    for (jvar *v = f->vars; v; v = v->next)
        if (strcmp(v->name, name) == 0)
            return v;
    return NULL;
}

static int frame_set(jr *r, jframe *f, const char *name, const jv *val)
{
    jvar *v = frame_find(f, name);
    if (!v) {
        v = malloc(sizeof(*v));
        if (!v)
            return eng__jj_fail(r, ENG_E_NOMEM, 0, "out of memory");
        v->name = name;
        v->next = f->vars;
        f->vars = v;
    }
    v->v = *val;
    return 0;
}

static const struct {
    const char *name;
    jfunc fn;
} k_globals[] = {
    {"raise_exception", JF_RAISE}, {"range", JF_RANGE}, {"namespace", JF_NAMESPACE},
    {"strftime_now", JF_STRFTIME}, {"dict", JF_DICT},
};

static jv lookup(jframe *f, const char *name)
{
    for (; f; f = f->parent) {
        jvar *v = frame_find(f, name);
        if (v)
            return v->v;
    }
    jv out = {.t = JV_UNDEF, .p = name};
    for (size_t i = 0; i < sizeof(k_globals) / sizeof(k_globals[0]); i++)
        if (strcmp(k_globals[i].name, name) == 0) {
            out.t = JV_FUNC;
            out.u.fn = (int)k_globals[i].fn;
        }
    return out;
}

/* ---- cJSON to values ------------------------------------------------------------------- */

static int from_json(jr *r, const cJSON *j, int taint, int depth, jv *out)
{
    memset(out, 0, sizeof(*out));
    if (depth > 128)
        return eng__jj_fail(r, ENG_E_RANGE, 0, "variables nested more than 128 deep");
    if (cJSON_IsNull(j) || !j) {
        out->t = JV_NONE;
    } else if (cJSON_IsBool(j)) {
        out->t = JV_BOOL;
        out->u.i = cJSON_IsTrue(j);
    } else if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == (double)(int64_t)d && d > -9.007199254740992e15 && d < 9.007199254740992e15) {
            out->t = JV_INT;
            out->u.i = (int64_t)d;
        } else {
            out->t = JV_FLOAT;
            out->u.f = d;
        }
    } else if (cJSON_IsString(j)) {
        return eng__jv_newstr(r, j->valuestring, strlen(j->valuestring), taint, out);
    } else if (cJSON_IsArray(j)) {
        int n = cJSON_GetArraySize(j);
        jlist *l = eng__jj_alloc(&r->a, sizeof(*l));
        jv *v = n ? eng__jj_alloc(&r->a, (size_t)n * sizeof(*v)) : NULL;
        if (!l || (n && !v))
            return oom(r, 0);
        l->v = v;
        l->n = (size_t)n;
        l->tuple = 0;
        int k = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, j) {
            if (from_json(r, e, taint, depth + 1, &v[k++]))
                return -1;
        }
        out->t = JV_LIST;
        out->u.l = l;
    } else if (cJSON_IsObject(j)) {
        int n = cJSON_GetArraySize(j);
        jdict *d = eng__jj_alloc(&r->a, sizeof(*d));
        if (!d)
            return oom(r, 0);
        d->n = 0;
        d->cap = (size_t)n;
        d->k = n ? eng__jj_alloc(&r->a, (size_t)n * sizeof(jv)) : NULL;
        d->v = n ? eng__jj_alloc(&r->a, (size_t)n * sizeof(jv)) : NULL;
        if (n && (!d->k || !d->v))
            return oom(r, 0);
        const cJSON *e;
        cJSON_ArrayForEach(e, j) {
            jv k = eng__jv_mkstr(e->string, strlen(e->string)), v;
            int t = taint && strcmp(e->string, "role") != 0;
            if (from_json(r, e, t, depth + 1, &v) || eng__jv_dict_set(r, d, &k, &v, 0))
                return -1;
        }
        out->t = JV_DICT;
        out->u.d = d;
    } else {
        out->t = JV_NONE;
    }
    return 0;
}

/* ---- expressions ----------------------------------------------------------------------- */

typedef struct jctx {
    jr *r;
    jframe *root;
    const jv *body;             /* the current {% filter %} body, or NULL */
} jctx;

static int eval(jctx *c, const jexpr *e, jframe *f, jv *out);
static int exec_body(jctx *c, const jbody *b, jframe *f, jbuf *o);

static int eval_args(jctx *c, const jexpr *e, jframe *f, jargs *a, const jv *first)
{
    jr *r = c->r;
    int extra = first ? 1 : 0;
    memset(a, 0, sizeof(*a));
    a->n_pos = e->n_args + extra;
    a->pos = a->n_pos ? eng__jj_alloc(&r->a, (size_t)a->n_pos * sizeof(jv)) : NULL;
    a->n_kw = e->n_kw;
    a->kw = e->kw;
    a->kwv = e->n_kw ? eng__jj_alloc(&r->a, (size_t)e->n_kw * sizeof(jv)) : NULL;
    if ((a->n_pos && !a->pos) || (a->n_kw && !a->kwv))
        return oom(r, e->line);
    if (first)
        a->pos[0] = *first;
    for (int i = 0; i < e->n_args; i++)
        if (eval(c, e->args[i], f, &a->pos[i + extra]))
            return -1;
    for (int i = 0; i < e->n_kw; i++)
        if (eval(c, e->kwv[i], f, &a->kwv[i]))
            return -1;
    return 0;
}

static int step(jr *r, int line)
{
    if (++r->steps > r->max_steps)
        return eng__jj_fail(r, ENG_E_RANGE, line, "more than %ld loop iterations and macro "
                            "calls (limit)", r->max_steps);
    return 0;
}

static int call_macro(jctx *c, const jmacro *mc, jargs *a, jv *out, int line)
{
    jr *r = c->r;
    const jstmt *m = mc->s;
    if (step(r, line))
        return -1;
    if (a->n_pos > m->n_names)
        return eng__jj_fail(r, ENG_E_INVAL, line, "macro '%s' takes not more than %d "
                            "argument(s)", m->attr, m->n_names);
    for (int k = 0; k < a->n_kw; k++) {
        int at = -1;
        for (int i = 0; i < m->n_names; i++)
            if (strcmp(a->kw[k], m->names[i]) == 0)
                at = i;
        if (at < 0)
            return eng__jj_fail(r, ENG_E_INVAL, line, "macro '%s' has no argument '%s'",
                                m->attr, a->kw[k]);
        if (at < a->n_pos)
            return eng__jj_fail(r, ENG_E_INVAL, line, "macro '%s' got multiple values for "
                                "argument '%s'", m->attr, m->names[at]);
    }
    jframe cl = {.parent = c->root, .vars = mc->closure};   /* arena-owned: never freed here */
    jframe fr = {.parent = mc->closure ? &cl : c->root, .vars = NULL};
    int rc = 0;
    for (int i = 0; i < m->n_names && rc == 0; i++) {
        jv v = {.t = JV_UNDEF, .p = m->names[i]};
        int given = 0;
        if (i < a->n_pos) {
            v = a->pos[i];
            given = 1;
        }
        for (int k = 0; k < a->n_kw; k++)
            if (strcmp(a->kw[k], m->names[i]) == 0) {
                v = a->kwv[k];
                given = 1;
            }
        if (!given && m->defaults[i])
            rc = eval(c, m->defaults[i], &fr, &v);
        if (rc == 0)
            rc = frame_set(r, &fr, m->names[i], &v);
    }
    jbuf o = {0};
    if (rc == 0)
        rc = exec_body(c, &m->body, &fr, &o);
    if (rc == 0)
        rc = eng__jb_value(r, &o, out);
    eng__jb_free(&o);
    frame_free(&fr);
    return rc < 0 ? -1 : 0;
}

static int call_func(jctx *c, int fn, jargs *a, jv *out, int line)
{
    jr *r = c->r;
    memset(out, 0, sizeof(*out));
    switch ((jfunc)fn) {
    case JF_RAISE: {
        jv msg = {.t = JV_UNDEF};
        jbuf b = {0};
        if (a->n_pos > 0)
            msg = a->pos[0];
        if (eng__jv_str(r, &b, &msg, line) == 0)
            eng__jj_fail(r, ENG_E_INVAL, line, "raise_exception: %s", b.p ? b.p : "");
        eng__jb_free(&b);
        return -1;
    }
    case JF_RANGE: {
        int64_t v[3] = {0, 0, 1};
        if (a->n_pos < 1 || a->n_pos > 3 || a->n_kw)
            return eng__jj_fail(r, ENG_E_INVAL, line, "range() takes 1 to 3 integers");
        for (int i = 0; i < a->n_pos; i++) {
            if (a->pos[i].t != JV_INT && a->pos[i].t != JV_BOOL)
                return eng__jj_fail(r, ENG_E_INVAL, line, "range() takes integers, not %s",
                                    eng__jv_type_name(&a->pos[i]));
        }
        if (a->n_pos == 1) {
            v[1] = a->pos[0].u.i;
        } else {
            v[0] = a->pos[0].u.i;
            v[1] = a->pos[1].u.i;
            if (a->n_pos == 3)
                v[2] = a->pos[2].u.i;
        }
        if (v[2] == 0)
            return eng__jj_fail(r, ENG_E_INVAL, line, "range() step must not be zero");
        int64_t n = 0;
        if (v[2] > 0 && v[1] > v[0])
            n = (int64_t)(((double)v[1] - (double)v[0] - 1) / (double)v[2]) + 1;
        else if (v[2] < 0 && v[1] < v[0])
            n = (int64_t)(((double)v[0] - (double)v[1] - 1) / (double)-v[2]) + 1;
        if (n > 100000)   /* jinja2.sandbox.MAX_RANGE */
            return eng__jj_fail(r, ENG_E_RANGE, line, "range() of %lld items is over the "
                                "sandbox's 100000", (long long)n);
        jlist *l = eng__jj_alloc(&r->a, sizeof(*l));
        jv *items = n ? eng__jj_alloc(&r->a, (size_t)n * sizeof(jv)) : NULL;
        if (!l || (n && !items))
            return oom(r, line);
        for (int64_t i = 0; i < n; i++) {
            memset(&items[i], 0, sizeof(jv));
            items[i].t = JV_INT;
            items[i].u.i = v[0] + i * v[2];
        }
        l->v = items;
        l->n = (size_t)n;
        l->tuple = 0;
        out->t = JV_LIST;
        out->u.l = l;
        return 0;
    }
    case JF_NAMESPACE:
    case JF_DICT: {
        jdict *d = eng__jj_alloc(&r->a, sizeof(*d));
        if (!d)
            return oom(r, line);
        memset(d, 0, sizeof(*d));
        for (int i = 0; i < a->n_pos; i++) {
            if (a->pos[i].t != JV_DICT)
                return eng__jj_fail(r, ENG_E_INVAL, line, "%s() takes a mapping or keyword "
                                    "arguments", fn == JF_DICT ? "dict" : "namespace");
            const jdict *s = a->pos[i].u.d;
            for (size_t k = 0; k < s->n; k++)
                if (eng__jv_dict_set(r, d, &s->k[k], &s->v[k], line))
                    return -1;
        }
        for (int k = 0; k < a->n_kw; k++) {
            jv key = eng__jv_mkstr(a->kw[k], strlen(a->kw[k]));
            if (eng__jv_dict_set(r, d, &key, &a->kwv[k], line))
                return -1;
        }
        out->t = fn == JF_DICT ? JV_DICT : JV_NS;
        out->u.d = d;
        return 0;
    }
    case JF_STRFTIME: {
        jv fmt;
        if (a->n_pos != 1 || (fmt = a->pos[0]).t != JV_STR)
            return eng__jj_fail(r, ENG_E_INVAL, line, "strftime_now() takes one format string");
        if (fmt.n > 256)
            return eng__jj_fail(r, ENG_E_RANGE, line, "strftime_now() format over 256 bytes");
        char f[260], buf[1024];
        memcpy(f, fmt.p, fmt.n);
        f[fmt.n] = '\0';
        time_t now = (time_t)(r->now ? r->now : (int64_t)time(NULL));
        struct tm tm;
        if (!localtime_r(&now, &tm))
            return eng__jj_fail(r, ENG_E_INVAL, line, "strftime_now(): no local time");
        size_t n = fmt.n ? strftime(buf, sizeof(buf), f, &tm) : 0;
        return eng__jv_newstr(r, buf, n, 0, out);
    }
    }
    return eng__jj_fail(r, ENG_E_INVAL, line, "unknown function");
}

static int getattr_v(jr *r, const jv *obj, const char *name, jv *out, int line)
{
    memset(out, 0, sizeof(*out));
    out->t = JV_UNDEF;
    out->p = name;
    switch (obj->t) {
    case JV_UNDEF:
        if (obj->p)
            return eng__jj_fail(r, ENG_E_INVAL, line, "'%s' is undefined", obj->p);
        return eng__jj_fail(r, ENG_E_INVAL, line, "attribute '%s' of an undefined value",
                            name);
    case JV_DICT:
    case JV_NS:
        eng__jv_dict_get(obj->u.d, name, strlen(name), out);
        return 0;
    case JV_LOOP: {
        const jloop *L = obj->u.loop;
        int64_t n = (int64_t)L->items->n, i = (int64_t)L->i;
        int64_t iv = -1;
        if (strcmp(name, "index") == 0)
            iv = i + 1;
        else if (strcmp(name, "index0") == 0)
            iv = i;
        else if (strcmp(name, "revindex") == 0)
            iv = n - i;
        else if (strcmp(name, "revindex0") == 0)
            iv = n - i - 1;
        else if (strcmp(name, "length") == 0)
            iv = n;
        else if (strcmp(name, "depth") == 0)
            iv = 1;
        else if (strcmp(name, "depth0") == 0)
            iv = 0;
        if (iv >= 0) {
            out->t = JV_INT;
            out->u.i = iv;
        } else if (strcmp(name, "first") == 0 || strcmp(name, "last") == 0) {
            out->t = JV_BOOL;
            out->u.i = name[0] == 'f' ? i == 0 : i == n - 1;
        } else if (strcmp(name, "previtem") == 0) {
            if (i > 0)
                *out = L->items->v[i - 1];
        } else if (strcmp(name, "nextitem") == 0) {
            if (i + 1 < n)
                *out = L->items->v[i + 1];
        }
        return 0;
    }
    default:
        return 0;   /* jinja2: a missing attribute is undefined */
    }
}

static int eval_call(jctx *c, const jexpr *e, jframe *f, jv *out)
{
    jr *r = c->r;
    jargs a;
    if (e->a->k == JE_ATTR) {
        jv recv;
        if (eval(c, e->a->a, f, &recv))
            return -1;
        if (recv.t == JV_UNDEF)
            return getattr_v(r, &recv, e->a->name, out, e->line);
        if (recv.t == JV_LOOP && strcmp(e->a->name, "cycle") == 0) {
            if (eval_args(c, e, f, &a, NULL))
                return -1;
            if (a.n_pos == 0)
                return eng__jj_fail(r, ENG_E_INVAL, e->line, "loop.cycle() needs arguments");
            *out = a.pos[recv.u.loop->i % (size_t)a.n_pos];
            return 0;
        }
        if (eval_args(c, e, f, &a, NULL))
            return -1;
        int rc = eng__jj_method(r, &recv, e->a->name, &a, out, e->line);
        if (rc <= 0)
            return rc;
        /* not a method: maybe a macro stored in a dict / namespace */
        jv callee;
        if (getattr_v(r, &recv, e->a->name, &callee, e->line))
            return -1;
        if (callee.t == JV_MACRO)
            return call_macro(c, callee.u.m, &a, out, e->line);
        return eng__jj_fail(r, ENG_E_INVAL, e->line, "%s has no method '%s'",
                            eng__jv_type_name(&recv), e->a->name);
    }
    jv callee;
    if (eval(c, e->a, f, &callee))
        return -1;
    if (eval_args(c, e, f, &a, NULL))
        return -1;
    if (callee.t == JV_MACRO)
        return call_macro(c, callee.u.m, &a, out, e->line);
    if (callee.t == JV_FUNC)
        return call_func(c, callee.u.fn, &a, out, e->line);
    if (callee.t == JV_UNDEF)
        return eng__jj_fail(r, ENG_E_INVAL, e->line, "'%s' is undefined",
                            callee.p ? callee.p : "value");
    return eng__jj_fail(r, ENG_E_INVAL, e->line, "%s object is not callable",
                        eng__jv_type_name(&callee));
}

static int make_list(jctx *c, const jexpr *e, jframe *f, jv *out)
{
    jr *r = c->r;
    jlist *l = eng__jj_alloc(&r->a, sizeof(*l));
    jv *v = e->n_args ? eng__jj_alloc(&r->a, (size_t)e->n_args * sizeof(jv)) : NULL;
    if (!l || (e->n_args && !v))
        return oom(r, e->line);
    for (int i = 0; i < e->n_args; i++)
        if (eval(c, e->args[i], f, &v[i]))
            return -1;
    l->v = v;
    l->n = (size_t)e->n_args;
    l->tuple = e->k == JE_TUPLE;
    memset(out, 0, sizeof(*out));
    out->t = JV_LIST;
    out->u.l = l;
    return 0;
}

static int compare(jr *r, jop op, const jv *a, const jv *b, int *res, int line)
{
    jv t;
    if (op == JOP_EQ || op == JOP_NE) {
        int eq = eng__jv_eq(a, b, 0);
        *res = op == JOP_EQ ? eq : !eq;
        return 0;
    }
    if (eng__jj_binop(r, op, a, b, &t, line))
        return -1;
    *res = (int)t.u.i;
    return 0;
}

static int eval_inner(jctx *c, const jexpr *e, jframe *f, jv *out)
{
    jr *r = c->r;
    jv a, b;
    memset(out, 0, sizeof(*out));
    switch (e->k) {
    case JE_CONST:
        *out = e->val;
        return 0;
    case JE_NAME:
        *out = lookup(f, e->name);
        return 0;
    case JE_LIST:
    case JE_TUPLE:
        return make_list(c, e, f, out);
    case JE_DICT: {
        jdict *d = eng__jj_alloc(&r->a, sizeof(*d));
        if (!d)
            return oom(r, e->line);
        memset(d, 0, sizeof(*d));
        for (int i = 0; i + 1 < e->n_args; i += 2) {
            if (eval(c, e->args[i], f, &a) || eval(c, e->args[i + 1], f, &b) ||
                eng__jv_dict_set(r, d, &a, &b, e->line))
                return -1;
        }
        out->t = JV_DICT;
        out->u.d = d;
        return 0;
    }
    case JE_ATTR:
        if (eval(c, e->a, f, &a))
            return -1;
        return getattr_v(r, &a, e->name, out, e->line);
    case JE_ITEM:
        if (eval(c, e->a, f, &a) || eval(c, e->b, f, &b))
            return -1;
        return eng__jj_getitem(r, &a, &b, out, e->line);
    case JE_SLICE: {
        jv lo = {.t = JV_NONE}, hi = {.t = JV_NONE}, st = {.t = JV_NONE};
        if (eval(c, e->a, f, &a) || (e->b && eval(c, e->b, f, &lo)) ||
            (e->c && eval(c, e->c, f, &hi)) || (e->d && eval(c, e->d, f, &st)))
            return -1;
        return eng__jj_slice(r, &a, &lo, &hi, &st, out, e->line);
    }
    case JE_CALL:
        return eval_call(c, e, f, out);
    case JE_FILTER: {
        jargs args;
        if (e->a->k == JE_BODY) {
            a = *c->body;
        } else if (eval(c, e->a, f, &a)) {
            return -1;
        }
        if (eval_args(c, e, f, &args, NULL))
            return -1;
        return eng__jj_filter(r, e->name, &a, &args, out, e->line);
    }
    case JE_TEST: {
        jargs args;
        int res;
        if (eval(c, e->a, f, &a) || eval_args(c, e, f, &args, NULL) ||
            eng__jj_test(r, e->name, &a, &args, &res, e->line))
            return -1;
        out->t = JV_BOOL;
        out->u.i = e->neg ? !res : res;
        return 0;
    }
    case JE_NEG:
    case JE_POS: {
        if (eval(c, e->a, f, &a))
            return -1;
        if (a.t == JV_BOOL || a.t == JV_INT) {
            out->t = JV_INT;
            out->u.i = e->k == JE_NEG ? -a.u.i : a.u.i;
        } else if (a.t == JV_FLOAT) {
            out->t = JV_FLOAT;
            out->u.f = e->k == JE_NEG ? -a.u.f : a.u.f;
        } else {
            return eng__jj_fail(r, ENG_E_INVAL, e->line, "bad operand type for unary %c: %s",
                                e->k == JE_NEG ? '-' : '+', eng__jv_type_name(&a));
        }
        return 0;
    }
    case JE_NOT:
        if (eval(c, e->a, f, &a))
            return -1;
        out->t = JV_BOOL;
        out->u.i = !eng__jv_truthy(&a);
        return 0;
    case JE_AND:
    case JE_OR:
        if (eval(c, e->a, f, &a))
            return -1;
        if (eng__jv_truthy(&a) == (e->k == JE_OR)) {
            *out = a;
            return 0;
        }
        return eval(c, e->b, f, out);
    case JE_BIN:
        if (eval(c, e->a, f, &a) || eval(c, e->b, f, &b))
            return -1;
        return eng__jj_binop(r, e->op, &a, &b, out, e->line);
    case JE_CMP: {
        if (eval(c, e->args[0], f, &a))
            return -1;
        int res = 1;
        for (int i = 1; i < e->n_args && res; i++) {
            if (eval(c, e->args[i], f, &b) || compare(r, e->ops[i - 1], &a, &b, &res, e->line))
                return -1;
            a = b;
        }
        out->t = JV_BOOL;
        out->u.i = res;
        return 0;
    }
    case JE_COND:
        if (eval(c, e->b, f, &a))
            return -1;
        if (eng__jv_truthy(&a))
            return eval(c, e->a, f, out);
        if (e->c)
            return eval(c, e->c, f, out);
        out->t = JV_UNDEF;
        return 0;
    case JE_BODY:
        *out = *c->body;
        return 0;
    }
    return eng__jj_fail(r, ENG_E_INVAL, e->line, "unknown expression");
}

static int eval(jctx *c, const jexpr *e, jframe *f, jv *out)
{
    jr *r = c->r;
    if (++r->depth > ENG_JINJA_MAX_DEPTH) {
        r->depth--;
        return eng__jj_fail(r, ENG_E_RANGE, e->line, "evaluation nested more than %d deep "
                            "(limit; recursive macro?)", ENG_JINJA_MAX_DEPTH);
    }
    int rc = eval_inner(c, e, f, out);
    r->depth--;
    return rc;
}

/* ---- statements ------------------------------------------------------------------------ */

enum { EX_OK = 0, EX_BREAK = 1, EX_CONTINUE = 2, EX_ERR = -1 };

/* Iteration order of a value as a list: lists themselves, dict keys, string characters,
 * nothing for undefined; others are an error. */
static int as_list(jr *r, const jv *v, const jlist **out, int line)
{
    static const jlist empty = {NULL, 0, 0};
    if (v->t == JV_LIST) {
        *out = v->u.l;
        return 0;
    }
    if (v->t == JV_UNDEF) {
        *out = &empty;
        return 0;
    }
    if (v->t == JV_DICT || v->t == JV_STR) {
        jv l;
        jargs a = {0};
        if (eng__jj_filter(r, "list", (jv *)v, &a, &l, line))
            return -1;
        *out = l.u.l;
        return 0;
    }
    return eng__jj_fail(r, ENG_E_INVAL, line, "%s object is not iterable",
                        eng__jv_type_name(v));
}

static int assign(jr *r, jframe *f, const jstmt *s, const jv *v)
{
    if (s->n_names == 1)
        return frame_set(r, f, s->names[0], v);
    const jlist *l;
    if (as_list(r, v, &l, s->line))
        return -1;
    if (l->n != (size_t)s->n_names)
        return eng__jj_fail(r, ENG_E_INVAL, s->line, "cannot unpack %zu values into %d names",
                            l->n, s->n_names);
    for (int i = 0; i < s->n_names; i++)
        if (frame_set(r, f, s->names[i], &l->v[i]))
            return -1;
    return 0;
}

static int exec_for(jctx *c, const jstmt *s, jframe *f, jbuf *o)
{
    jr *r = c->r;
    jv it;
    const jlist *items;
    if (eval(c, s->e, f, &it) || as_list(r, &it, &items, s->line))
        return EX_ERR;
    if (s->e2) {
        /* {% for x in xs if cond %}: filter first, so loop.* counts what is kept */
        jlist *kept = eng__jj_alloc(&r->a, sizeof(*kept));
        jv *kv = items->n ? eng__jj_alloc(&r->a, items->n * sizeof(jv)) : NULL;
        if (!kept || (items->n && !kv))
            return oom(r, s->line);
        kept->n = 0;
        kept->tuple = 0;
        kept->v = kv;
        for (size_t i = 0; i < items->n; i++) {
            jframe fr = {.parent = f};
            jv cond;
            int bad = step(r, s->line) || assign(r, &fr, s, &items->v[i]) ||
                      eval(c, s->e2, &fr, &cond);
            frame_free(&fr);
            if (bad)
                return EX_ERR;
            if (eng__jv_truthy(&cond))
                kv[kept->n++] = items->v[i];
        }
        items = kept;
    }
    jloop *L = eng__jj_alloc(&r->a, sizeof(*L));
    if (!L)
        return oom(r, s->line);
    L->items = items;
    L->cycle_pos = 0;
    jv lv = {.t = JV_LOOP, .u.loop = L};
    int completed = 0;   /* an iteration ran to the end of the body */
    for (size_t i = 0; i < items->n; i++) {
        L->i = i;
        jframe fr = {.parent = f};
        int rc = EX_ERR;
        if (!step(r, s->line) && !assign(r, &fr, s, &items->v[i]) &&
            !frame_set(r, &fr, "loop", &lv))
            rc = exec_body(c, &s->body, &fr, o);
        frame_free(&fr);
        if (rc == EX_ERR)
            return EX_ERR;
        completed |= rc == EX_OK;
        if (rc == EX_BREAK)
            break;
    }
    /* jinja2's else: no iteration got to the end of the body (none at all, or each ended in
     * break / continue before it) */
    if (!completed && s->orelse.n)
        return exec_body(c, &s->orelse, f, o) == EX_ERR ? EX_ERR : EX_OK;
    return EX_OK;
}

static jframe *find_ns(jframe *f, const char *name, jv *out)
{
    for (; f; f = f->parent) {
        jvar *v = frame_find(f, name);
        if (v) {
            *out = v->v;
            return f;
        }
    }
    return NULL;
}

static int exec_stmt(jctx *c, const jstmt *s, jframe *f, jbuf *o)
{
    jr *r = c->r;
    jv v;
    switch (s->k) {
    case JS_TEXT:
        return eng__jb_put(r, o, s->text, s->text_n, NULL, 0);
    case JS_OUT:
        if (eval(c, s->e, f, &v))
            return EX_ERR;
        return eng__jv_str(r, o, &v, s->line);
    case JS_IF:
        if (eval(c, s->e, f, &v))
            return EX_ERR;
        return exec_body(c, eng__jv_truthy(&v) ? &s->body : &s->orelse, f, o);
    case JS_FOR:
        return exec_for(c, s, f, o);
    case JS_SET:
        if (eval(c, s->e, f, &v))
            return EX_ERR;
        if (s->attr) {
            jv ns;
            if (!find_ns(f, s->names[0], &ns) || ns.t != JV_NS)
                return eng__jj_fail(r, ENG_E_INVAL, s->line, "cannot assign attribute on "
                                    "non-namespace object '%s'", s->names[0]);
            jv key = eng__jv_mkstr(s->attr, strlen(s->attr));
            return eng__jv_dict_set(r, ns.u.d, &key, &v, s->line);
        }
        return assign(r, f, s, &v);
    case JS_SETBLOCK:
    case JS_FILTER: {
        jbuf b = {0};
        int rc = exec_body(c, &s->body, f, &b);
        if (rc == EX_OK)
            rc = eng__jb_value(r, &b, &v);
        eng__jb_free(&b);
        if (rc != EX_OK)
            return rc;
        if (s->k == JS_SETBLOCK)
            return frame_set(r, f, s->names[0], &v);
        const jv *was = c->body;
        jv res;
        c->body = &v;
        rc = eval(c, s->e, f, &res);
        c->body = was;
        return rc ? EX_ERR : eng__jv_str(r, o, &res, s->line);
    }
    case JS_MACRO: {
        jmacro *mc = eng__jj_alloc(&r->a, sizeof(*mc));
        if (!mc)
            return oom(r, s->line);
        mc->s = s;
        mc->closure = NULL;
        v = (jv){.t = JV_MACRO, .u.m = mc};
        /* the enclosing scopes below the root, innermost first (it shadows), and the macro */
        for (jframe *g = f; g && g != c->root; g = g->parent)
            for (jvar *x = g->vars; x; x = x->next) {
                int seen = strcmp(x->name, s->attr) == 0;
                for (jvar *y = mc->closure; y && !seen; y = y->next)
                    seen = strcmp(y->name, x->name) == 0;
                if (seen)
                    continue;
                jvar *cv = eng__jj_alloc(&r->a, sizeof(*cv));
                if (!cv)
                    return oom(r, s->line);
                *cv = *x;
                cv->next = mc->closure;
                mc->closure = cv;
            }
        if (mc->closure) {   /* recursion inside a scope: the body must see the macro too */
            jvar *self = eng__jj_alloc(&r->a, sizeof(*self));
            if (!self)
                return oom(r, s->line);
            *self = (jvar){.next = mc->closure, .name = s->attr, .v = v};
            mc->closure = self;
        }
        return frame_set(r, f, s->attr, &v);
    }
    case JS_BREAK:
        return EX_BREAK;
    case JS_CONTINUE:
        return EX_CONTINUE;
    case JS_BLOCK:
        return exec_body(c, &s->body, f, o);
    }
    return eng__jj_fail(r, ENG_E_INVAL, s->line, "unknown statement");
}

static int exec_body(jctx *c, const jbody *b, jframe *f, jbuf *o)
{
    jr *r = c->r;
    if (++r->depth > ENG_JINJA_MAX_DEPTH) {
        r->depth--;
        return eng__jj_fail(r, ENG_E_RANGE, b->n ? b->s[0]->line : 0, "blocks nested more "
                            "than %d deep (limit; recursive macro?)", ENG_JINJA_MAX_DEPTH);
    }
    int rc = EX_OK;
    for (int i = 0; i < b->n && rc == EX_OK; i++)
        rc = exec_stmt(c, b->s[i], f, o);
    r->depth--;
    return rc;
}

/* ---- public ---------------------------------------------------------------------------- */

int eng_jinja_compile(const char *src, size_t len, eng_jinja **out, eng_err *err)
{
    *out = NULL;
    if (!src && len)
        return eng_err_set(err, ENG_E_INVAL, "template: no source");
    if (len > ENG_JINJA_MAX_SOURCE)
        return eng_err_set(err, ENG_E_RANGE, "template: %zu bytes, over the %d-byte limit",
                           len, ENG_JINJA_MAX_SOURCE);
    eng_jinja *t = calloc(1, sizeof(*t));
    if (!t)
        return eng_err_set(err, ENG_E_NOMEM, "template: out of memory");
    /* jinja2 folds \r\n and \r to \n and drops one trailing newline (keep_trailing_newline
     * is off) */
    char *s = eng__jj_alloc(&t->a, len + 1);
    if (!s) {
        eng_jinja_free(t);
        return eng_err_set(err, ENG_E_NOMEM, "template: out of memory");
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n')
                i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n > 0 && s[n - 1] == '\n')
        n--;
    s[n] = '\0';
    t->src = s;
    t->src_n = n;
    eng_err tmp = {0};
    int rc = eng__jj_parse(t, err ? err : &tmp);
    if (rc) {
        eng_jinja_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void eng_jinja_free(eng_jinja *t)
{
    if (!t)
        return;
    eng__jj_arena_free(&t->a);
    free(t);
}

int eng_jinja_source_has(const eng_jinja *t, const char *s)
{
    return t && s && strstr(t->src, s) != NULL;
}

int eng_jinja_render(const eng_jinja *t, const cJSON *vars, const eng_jinja_opts *opts,
                     char **out, size_t *len, size_t **spans, int *n_spans, eng_err *err)
{
    *out = NULL;
    *len = 0;
    *spans = NULL;
    *n_spans = 0;
    eng_err tmp = {0};
    jr r = {.err = err ? err : &tmp};
    r.a.limit = opts && opts->max_memory ? opts->max_memory : ENG_JINJA_MAX_MEMORY;
    r.max_output = opts && opts->max_output ? opts->max_output : ENG_JINJA_MAX_OUTPUT;
    r.max_steps = opts && opts->max_steps ? opts->max_steps : ENG_JINJA_MAX_STEPS;
    r.now = opts ? opts->now : 0;
    const char *const *tainted = opts ? opts->tainted_vars : NULL;
    jframe root = {0};
    jctx c = {.r = &r, .root = &root};
    jbuf o = {0};
    int rc = 0;
    if (vars && !cJSON_IsObject(vars)) {
        rc = eng__jj_fail(&r, ENG_E_INVAL, 0, "variables must be a JSON object");
    } else if (vars) {
        const cJSON *e;
        cJSON_ArrayForEach(e, vars) {
            jv v;
            int taint = 0;
            for (int k = 0; tainted && tainted[k] && !taint; k++)
                taint = strcmp(e->string, tainted[k]) == 0;
            if (from_json(&r, e, taint, 0, &v) || frame_set(&r, &root, e->string, &v)) {
                rc = -1;
                break;
            }
        }
    }
    if (rc == 0 && exec_body(&c, &t->root, &root, &o) == EX_ERR)
        rc = -1;
    if (rc == 0 && !o.p && eng__jb_put(&r, &o, "", 0, NULL, 0))
        rc = -1;
    frame_free(&root);
    eng__jj_arena_free(&r.a);
    if (rc) {
        eng__jb_free(&o);
        return r.err->code ? r.err->code : ENG_E_INVAL;
    }
    *out = o.p;
    *len = o.n;
    *n_spans = o.nsp;
    *spans = o.nsp ? o.sp : NULL;
    if (!o.nsp)
        free(o.sp);
    return 0;
}
