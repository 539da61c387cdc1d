/* eng_grammar_step.c — the JSON pushdown automaton, one byte at a time: frames for objects,
 * arrays, strings, numbers and literal sets over a compiled grammar (eng_grammar_impl.h), with
 * anyOf forking one stack into several. Pure functions of (grammar, state, byte); knows nothing
 * of tokens or masks (eng_grammar_match.c). Any thread. */
#include "eng_grammar_impl.h"

#include <string.h>

static int is_ws(unsigned char c)
{
    return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int is_hex(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int eng__gstr_step(uint8_t *phase, unsigned char c)
{
    uint8_t p = *phase;
    if (p == 0) {
        if (c == '"')
            return 1;
        if (c == '\\') {
            *phase = 1;
            return 0;
        }
        if (c < 0x20 || c == 0x7f)
            return -1;  /* control characters must be escaped; DEL is legal but useless */
        if (c < 0x80)
            return 0;
        /* UTF-8 lead byte (overlong forms and surrogates are not checked: a simplification;
         * the server's detokenizer turns any invalid sequence into U+FFFD anyway) */
        if (c >= 0xc2 && c <= 0xdf) *phase = 6;
        else if (c >= 0xe0 && c <= 0xef) *phase = 7;
        else if (c >= 0xf0 && c <= 0xf4) *phase = 8;
        else return -1;
        return 0;
    }
    if (p == 1) {
        if (c == 'u') {
            *phase = 5;
            return 0;
        }
        if (c && strchr("\"\\/bfnrt", c)) {
            *phase = 0;
            return 0;
        }
        return -1;
    }
    if (p >= 2 && p <= 5) {
        if (!is_hex(c))
            return -1;
        *phase = p == 2 ? 0 : (uint8_t)(p - 1);
        return 0;
    }
    /* 6..8: continuation bytes */
    if (c < 0x80 || c > 0xbf)
        return -1;
    *phase = p == 6 ? 0 : (uint8_t)(p - 1);
    return 0;
}

/* A ranged integer (GN_INTEGER with has_range): whether some integer the digits so far can
 * still become lies in [lo, hi]. The magnitude mag has k digits (k = 0: none read yet, any
 * magnitude to come); ext: more digits may follow. Values have at most ENG_GRAMMAR_MAX_DIGITS
 * digits, so every bound and magnitude fits an int64. "-0" counts as 0. */
static int range_feasible(const eng_gnode *n, int neg, int64_t mag, int k, int ext)
{
    int64_t p = 1;   /* 10^j: j more digits */
    for (int j = 0; k + j <= ENG_GRAMMAR_MAX_DIGITS; j++, p *= 10) {
        int64_t a = mag * p, b = mag * p + p - 1;
        if (k == 0) {   /* nothing read yet: every magnitude */
            a = 0;
            b = ENG_G_MAX_MAG;
        }
        int64_t x = neg ? -b : a, y = neg ? -a : b;
        if ((x > n->lo ? x : n->lo) <= (y < n->hi ? y : n->hi))
            return 1;
        if (k == 0 || !ext || mag == 0)
            break;
    }
    return 0;
}

static int range_holds(const eng_gnode *n, const eng_gframe *f)
{
    int64_t mag = (int64_t)(f->bits & ~G_NEG), v = f->bits & G_NEG ? -mag : mag;
    return v >= n->lo && v <= n->hi;
}

/* Number step: -1 reject, 0 consumed, 2 the number ended before c (c is not consumed). n: the
 * frame's node, whose range (a GN_INTEGER's) the integer part keeps to digit by digit. */
static int num_step(const eng_gnode *n, eng_gframe *f, unsigned char c, int integer)
{
    int d = is_digit(c);
    int ranged = n->kind == GN_INTEGER && n->has_range;
    switch (f->phase) {
    case N_START:
        if (c == '-') {
            if (ranged && !range_feasible(n, 1, 0, 0, 1)) return -1;
            if (ranged) f->bits = G_NEG;
            f->phase = N_SIGN;
            return 0;
        }
        /* fall through */
    case N_SIGN:
        if (!d) return -1;
        if (ranged && !range_feasible(n, (f->bits & G_NEG) != 0, c - '0', 1, c != '0'))
            return -1;
        if (ranged) f->bits |= (uint64_t)(c - '0');
        f->phase = c == '0' ? N_ZERO : N_INT;
        f->pos = 1;
        return 0;
    case N_ZERO:
    case N_INT:
        if (d && f->phase == N_INT) {
            if (f->pos >= ENG_GRAMMAR_MAX_DIGITS) return -1;
            if (ranged) {
                int64_t mag = (int64_t)(f->bits & ~G_NEG) * 10 + (c - '0');
                if (!range_feasible(n, (f->bits & G_NEG) != 0, mag, (int)f->pos + 1, 1))
                    return -1;
                f->bits = (f->bits & G_NEG) | (uint64_t)mag;
            }
            f->pos++;
            return 0;
        }
        if (d) return -1;   /* no leading zeros */
        if (!integer && c == '.') { f->phase = N_DOT; f->pos = 0; return 0; }
        if (!integer && (c == 'e' || c == 'E')) { f->phase = N_E; f->pos = 0; return 0; }
        return ranged && !range_holds(n, f) ? -1 : 2;
    case N_DOT:
        if (!d) return -1;
        f->phase = N_FRAC;
        f->pos = 1;
        return 0;
    case N_FRAC:
        if (d) {
            if (f->pos >= ENG_GRAMMAR_MAX_DIGITS) return -1;
            f->pos++;
            return 0;
        }
        if (c == 'e' || c == 'E') { f->phase = N_E; f->pos = 0; return 0; }
        return 2;
    case N_E:
        if (c == '+' || c == '-') { f->phase = N_ESIGN; return 0; }
        /* fall through */
    case N_ESIGN:
        if (!d) return -1;
        f->phase = N_EXP;
        f->pos = 1;
        return 0;
    case N_EXP:
        if (d) {
            if (f->pos >= 3) return -1;   /* exponents past 999 overflow a double anyway */
            f->pos++;
            return 0;
        }
        return 2;
    }
    return -1;
}

static int num_terminal(const eng_gnode *n, const eng_gframe *f)
{
    if (n->kind == GN_INTEGER && n->has_range && !range_holds(n, f))
        return 0;
    return f->phase == N_ZERO || f->phase == N_INT || f->phase == N_FRAC || f->phase == N_EXP;
}

/* The F_STR step of a GN_STRING node with minLength / maxLength: counts characters as they
 * begin (in phase 0 every byte but the closing quote begins one: an ASCII byte, a backslash or
 * a UTF-8 lead byte) in f->pos, the upper bound maxLength is checked against, and \uD800-\uDBFF
 * escapes in f->bits, so that pos - bits (a surrogate pair counted once, as JSON Schema
 * validators count code points) is the lower bound minLength is checked against. 0 or -1. */
static int str_count(const eng_gnode *n, eng_gframe *f, uint8_t before, int r, unsigned char c)
{
    if (r == 1)
        return f->pos - (uint32_t)(f->bits & 0xffffffffu) >= (uint32_t)n->min_len ? 0 : -1;
    if (before == 0) {
        if (n->max_len >= 0 && f->pos >= (uint32_t)n->max_len)
            return -1;
        f->pos++;
    } else if (before == 5) {        /* a \u escape's first hex digit */
        if (c == 'd' || c == 'D')
            f->bits |= G_ESC_D;
    } else if (before == 4) {        /* its second: d8..db begin a high surrogate */
        if ((f->bits & G_ESC_D) && c && strchr("89abAB", c))
            f->bits++;
        f->bits &= ~G_ESC_D;
    }
    return 0;
}

static eng_gframe frame(int node, int kind, int phase, uint64_t bits)
{
    eng_gframe f;
    memset(&f, 0, sizeof f);
    f.node = (uint16_t)node;
    f.kind = (uint8_t)kind;
    f.phase = (uint8_t)phase;
    f.bits = bits;
    return f;
}

static uint64_t all_bits(int n)
{
    return n >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << n) - 1);
}

/* Appends st to out unless an identical stack is there or out is full. */
static void emit(eng_gstate *out, const eng_gstack *st)
{
    size_t used = offsetof(eng_gstack, f) + (size_t)st->depth * sizeof(eng_gframe);
    for (int i = 0; i < out->n; i++) {
        if (out->s[i].depth == st->depth && memcmp(&out->s[i], st, used) == 0)
            return;
    }
    if (out->n == ENG_G_MAX_STACKS)
        return;
    memcpy(&out->s[out->n], st, used);
    out->n++;
}

/* The frame on top was completed; tell its parent. which: the literal matched (keys). */
static void child_done(eng_gstack *st, int which)
{
    st->depth--;
    if (st->depth == 0)
        return;
    eng_gframe *p = &st->f[st->depth - 1];
    if (p->kind == F_OBJ) {
        if (p->phase == O_KEY) {
            p->phase = O_COLON;
            p->pos = which < 0 ? 0 : (uint32_t)which;
            if (which >= 0)
                p->bits |= (uint64_t)1 << which;
        } else {
            p->phase = O_AFTER;
        }
    } else if (p->kind == F_ARR) {
        p->phase = A_AFTER;
    }
}

/* Whitespace in a structural position: counted, bounded. */
static void ws_or_reject(const eng_grammar *g, eng_gstack *st, eng_gstate *out)
{
    if (st->ws < (g->compact ? 1 : ENG_GRAMMAR_MAX_WS)) {
        st->ws++;
        emit(out, st);
    }
}

static int push(eng_gstack *st, eng_gframe f)
{
    if (st->depth > ENG_GRAMMAR_MAX_DEPTH)
        return -1;
    st->f[st->depth++] = f;
    return 0;
}

/* Starts a key: a literal over the unseen declared keys, or any string. */
static void key_start(const eng_grammar *g, eng_gstack *st, unsigned char c, eng_gstate *out,
                      int fork);
static void feed(const eng_grammar *g, eng_gstack *st, unsigned char c, eng_gstate *out,
                 int fork);

/* The declared properties of GN_OBJECT n that may be written next, `written` being those
 * written so far: any unwritten one, or in ordered mode those after the last written and not
 * past the next required one. */
static uint64_t next_keys(const eng_grammar *g, const eng_gnode *n, uint64_t written)
{
    uint64_t unseen = all_bits(n->n) & ~written;
    if (g->ordered) {
        if (written)
            unseen &= ~all_bits(64 - __builtin_clzll(written));
        uint64_t req = n->required & unseen;
        if (req)
            unseen &= all_bits(__builtin_ctzll(req) + 1);
    }
    return unseen;
}

static void key_start(const eng_grammar *g, eng_gstack *st, unsigned char c, eng_gstate *out,
                      int fork)
{
    eng_gframe *o = &st->f[st->depth - 1];
    const eng_gnode *n = &g->nodes[o->node];
    if (c != '"')
        return;
    o->phase = O_KEY;
    if (n->kind == GN_ANY_OBJECT) {
        if (push(st, frame(o->node, F_STR, 0, 0)) == 0)
            emit(out, st);
        return;
    }
    uint64_t unseen = next_keys(g, n, o->bits);
    if (!unseen)
        return;
    if (push(st, frame(o->node, F_KEY, 0, unseen)) == 0)
        feed(g, st, c, out, fork);
}

/* Literal step for F_LIT / F_KEY frames. 1 consumed, 2 complete before c (which set), -1. */
static int lit_step(const eng_gnode *n, eng_gframe *f, unsigned char c, int *which)
{
    uint64_t keep = 0;
    int done = -1;
    for (int i = 0; i < n->n; i++) {
        if (!(f->bits >> i & 1))
            continue;
        if (n->lit_len[i] > f->pos && (unsigned char)n->lits[i][f->pos] == c)
            keep |= (uint64_t)1 << i;
        else if (n->lit_len[i] == f->pos)
            done = i;
    }
    if (keep) {
        f->bits = keep;
        f->pos++;
        return 1;
    }
    if (done >= 0) {
        *which = done;
        return 2;
    }
    return -1;
}

static void feed(const eng_grammar *g, eng_gstack *st, unsigned char c, eng_gstate *out,
                 int fork)
{
    if (fork > ENG_G_MAX_ALT_DEPTH)
        return;   /* a $ref / anyOf cycle that consumes nothing: no reading */
    if (!is_ws(c))
        st->ws = 0;
    for (;;) {
        if (st->depth == 0) {
            if (is_ws(c))
                ws_or_reject(g, st, out);
            return;
        }
        eng_gframe *f = &st->f[st->depth - 1];
        const eng_gnode *n = &g->nodes[f->node];
        int r, which = -1;
        switch (f->kind) {
        case F_VAL:
            if (is_ws(c)) {
                ws_or_reject(g, st, out);
                return;
            }
            switch (n->kind) {
            case GN_REF:
                f->node = (uint16_t)n->target;
                return feed(g, st, c, out, fork + 1);
            case GN_ANYOF:
                for (int i = 0; i < n->n; i++) {
                    eng_gstack cp;
                    memcpy(&cp, st, offsetof(eng_gstack, f) + st->depth * sizeof(eng_gframe));
                    cp.f[cp.depth - 1].node = (uint16_t)n->sub[i];
                    feed(g, &cp, c, out, fork + 1);
                }
                return;
            case GN_ANY:
                if (c == '{') *f = frame(g->any_obj, F_OBJ, O_OPEN, 0);
                else if (c == '[') *f = frame(g->any_arr, F_ARR, A_OPEN, 0);
                else if (c == '"') *f = frame(f->node, F_STR, 0, 0);
                else if (c == '-' || is_digit(c)) { *f = frame(f->node, F_NUM, N_START, 0); continue; }
                else if (c == 't' || c == 'f' || c == 'n') {
                    *f = frame(g->lit_tfn, F_LIT, 0, all_bits(g->nodes[g->lit_tfn].n));
                    continue;
                } else return;
                if (f->kind == F_OBJ || f->kind == F_ARR) {
                    if (st->depth > ENG_GRAMMAR_MAX_DEPTH) return;
                }
                emit(out, st);
                return;
            case GN_OBJECT:
            case GN_ANY_OBJECT:
                if (c != '{' || st->depth > ENG_GRAMMAR_MAX_DEPTH) return;
                *f = frame(f->node, F_OBJ, O_OPEN, 0);
                emit(out, st);
                return;
            case GN_ARRAY:
                if (c != '[' || st->depth > ENG_GRAMMAR_MAX_DEPTH) return;
                *f = frame(f->node, F_ARR, A_OPEN, 0);
                emit(out, st);
                return;
            case GN_STRING:
                if (c != '"') return;
                *f = frame(f->node, F_STR, 0, 0);
                emit(out, st);
                return;
            case GN_NUMBER:
            case GN_INTEGER:
                *f = frame(f->node, F_NUM, N_START, 0);
                continue;
            case GN_LITS:
                *f = frame(f->node, F_LIT, 0, all_bits(n->n));
                continue;
            }
            return;
        case F_STR: {
            uint8_t before = f->phase;
            r = eng__gstr_step(&f->phase, c);
            if (r < 0) return;
            if (eng__gstr_limited(n) && str_count(n, f, before, r, c) != 0) return;
            if (r == 1) child_done(st, -1);
            emit(out, st);
            return;
        }
        case F_NUM:
            r = num_step(n, f, c, n->kind == GN_INTEGER);
            if (r < 0) return;
            if (r == 0) { emit(out, st); return; }
            child_done(st, -1);
            continue;   /* c belongs to the parent */
        case F_LIT:
        case F_KEY:
            r = lit_step(n, f, c, &which);
            if (r < 0) return;
            if (r == 1) { emit(out, st); return; }
            child_done(st, f->kind == F_KEY ? which : -1);
            continue;
        case F_OBJ:
            if (is_ws(c) && f->phase != O_KEY && f->phase != O_VALUE) {
                ws_or_reject(g, st, out);
                return;
            }
            switch (f->phase) {
            case O_OPEN:
                if (c == '}') {
                    if (n->kind == GN_OBJECT && n->required) return;
                    child_done(st, -1);
                    emit(out, st);
                    return;
                }
                key_start(g, st, c, out, fork);
                return;
            case O_NEXT:
                key_start(g, st, c, out, fork);
                return;
            case O_COLON: {
                if (c != ':') return;
                int vn = n->kind == GN_OBJECT ? n->sub[f->pos]
                                              : n->target >= 0 ? n->target : g->any;
                f->phase = O_VALUE;
                if (push(st, frame(vn, F_VAL, 0, 0)) == 0) emit(out, st);
                return;
            }
            case O_AFTER:
                if (c == ',') {
                    /* only where a key can follow (in ordered mode, not one skipped earlier) */
                    if (n->kind == GN_OBJECT && !next_keys(g, n, f->bits)) return;
                    f->phase = O_NEXT;
                    emit(out, st);
                    return;
                }
                if (c == '}') {
                    if (n->kind == GN_OBJECT && (n->required & ~f->bits)) return;
                    child_done(st, -1);
                    emit(out, st);
                }
                return;
            }
            return;
        case F_ARR:
            if (is_ws(c) && f->phase != A_VALUE) {
                ws_or_reject(g, st, out);
                return;
            }
            if (c == ']' && (f->phase == A_OPEN || f->phase == A_AFTER)) {
                if (f->pos < (uint32_t)n->min_items) return;
                child_done(st, -1);
                emit(out, st);
                return;
            }
            if (f->phase == A_OPEN || (f->phase == A_AFTER && c == ',')) {
                int first = f->phase == A_OPEN;   /* c begins the first item, or is its ',' */
                if (n->max_items >= 0 && f->pos >= (uint32_t)n->max_items) return;
                if (n->max_items >= 0 || f->pos < (uint32_t)n->min_items) f->pos++;
                f->phase = A_VALUE;
                if (push(st, frame(n->target, F_VAL, 0, 0)) != 0) return;
                if (first) continue;
                emit(out, st);
            }
            return;
        }
        return;
    }
}

void eng__gstate_init(const eng_grammar *g, eng_gstate *st)
{
    memset(st, 0, sizeof *st);
    st->n = 1;
    st->s[0].depth = 1;
    st->s[0].f[0] = frame(g->root, F_VAL, 0, 0);
}

int eng__gstate_feed(const eng_grammar *g, const eng_gstate *in, unsigned char c,
                     eng_gstate *out)
{
    out->n = 0;
    for (int i = 0; i < in->n; i++) {
        eng_gstack cp;
        memcpy(&cp, &in->s[i], offsetof(eng_gstack, f) + in->s[i].depth * sizeof(eng_gframe));
        feed(g, &cp, c, out, 0);
    }
    return out->n;
}

/* A stack may end when its root value is complete, or when only a number or literal at the
 * root is in progress and could stop here. */
static int stack_can_end(const eng_grammar *g, const eng_gstack *s)
{
    if (s->depth == 0)
        return 1;
    if (s->depth != 1)
        return 0;
    const eng_gframe *f = &s->f[0];
    if (f->kind == F_NUM)
        return num_terminal(&g->nodes[f->node], f);
    if (f->kind == F_LIT) {
        const eng_gnode *n = &g->nodes[f->node];
        for (int i = 0; i < n->n; i++) {
            if ((f->bits >> i & 1) && n->lit_len[i] == f->pos)
                return 1;
        }
    }
    return 0;
}

int eng__gstate_can_end(const eng_grammar *g, const eng_gstate *st)
{
    for (int i = 0; i < st->n; i++) {
        if (stack_can_end(g, &st->s[i]))
            return 1;
    }
    return 0;
}

size_t eng__gstate_key(const eng_gstate *st, unsigned char *buf, size_t cap)
{
    size_t k = 0;
    unsigned char n = (unsigned char)st->n;
    if (k < cap) buf[k] = n;
    k++;
    for (int i = 0; i < st->n; i++) {
        size_t used = offsetof(eng_gstack, f) + st->s[i].depth * sizeof(eng_gframe);
        if (k + used <= cap)
            memcpy(buf + k, &st->s[i], used);
        k += used;
    }
    return k;
}

void eng__gstate_copy(eng_gstate *dst, const eng_gstate *src)
{
    dst->n = src->n;
    for (int i = 0; i < src->n; i++)
        memcpy(&dst->s[i], &src->s[i],
               offsetof(eng_gstack, f) + src->s[i].depth * sizeof(eng_gframe));
}
