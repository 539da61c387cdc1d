/* eng_grammar_impl.h — what the eng_grammar_*.c files share: compiled schema nodes, the
 * pushdown automaton's frames, stacks and state sets, and the vocab index layout. Not a public
 * header. The automaton's state is a small set of stacks (anyOf keeps every alternative alive
 * until the bytes decide); every stack in it is a valid reading of the bytes so far, so any
 * output the matcher lets through is valid whichever stack survives. */
#ifndef ENG_GRAMMAR_IMPL_H
#define ENG_GRAMMAR_IMPL_H

#include "eng_grammar.h"

typedef enum eng_gnode_kind {
    GN_ANY = 0,         /* any JSON value */
    GN_OBJECT,          /* declared properties only; props / required */
    GN_ANY_OBJECT,      /* an object with any keys; values: target, or any (-1) */
    GN_ARRAY,           /* items: node */
    GN_STRING,
    GN_NUMBER,
    GN_INTEGER,
    GN_LITS,            /* one of lits[] exactly (enum, const, boolean, null) */
    GN_ANYOF,           /* alts[] */
    GN_REF,             /* target: resolved $ref */
} eng_gnode_kind;

typedef struct eng_gnode {
    eng_gnode_kind kind;
    int n;              /* GN_OBJECT: properties; GN_LITS: literals; GN_ANYOF: alternatives */
    char **lits;        /* GN_OBJECT: each key as a JSON string with quotes; GN_LITS: each value
                           in compact JSON; owned */
    size_t *lit_len;    /* [n]; owned */
    int *sub;           /* GN_OBJECT: value node of each property; GN_ANYOF: alternatives; owned */
    uint64_t required;  /* GN_OBJECT: bit i = property i is required */
    int target;         /* GN_ARRAY: items node; GN_REF: the node referred to (-1 unresolved);
                           GN_ANY_OBJECT: the values' node (-1: any value) */
    int min_items;      /* GN_ARRAY: minItems (0 = none) */
    int max_items;      /* GN_ARRAY: maxItems (-1 = none) */
    int min_len;        /* GN_STRING: minLength in characters (0 = none) */
    int max_len;        /* GN_STRING: maxLength in characters (-1 = none) */
    int has_range;      /* GN_INTEGER: lo / hi apply (else any integer, and the frame keeps no
                           value, so unbounded integers share cache states) */
    int64_t lo, hi;     /* GN_INTEGER: the inclusive range, within +-(10^15 - 1) */
} eng_gnode;

struct eng_grammar {
    eng_gnode *nodes;   /* [n_nodes]; owned */
    int n_nodes, cap_nodes;
    int root;
    int lit_tfn;        /* GN_LITS of true, false, null (GN_ANY's keyword literals) */
    int any;            /* a GN_ANY node (values of GN_ANY_OBJECT, items of any arrays) */
    int any_obj;        /* a GN_ANY_OBJECT node (objects inside GN_ANY) */
    int any_arr;        /* a GN_ARRAY node of GN_ANY items (arrays inside GN_ANY) */
    int ordered;        /* ENG_GRAMMAR_ORDERED: declared properties in declaration order */
    int compact;        /* ENG_GRAMMAR_COMPACT: at most one blank between JSON tokens */
};

/* GN_STRING with minLength / maxLength: F_STR frames count characters (see F_STR below). */
static inline int eng__gstr_limited(const eng_gnode *n)
{
    return n->kind == GN_STRING && (n->min_len > 0 || n->max_len >= 0);
}

/* anyOf / $ref resolutions the automaton follows for one byte before giving a reading up (a
 * guard against cycles that consume nothing); schemas nesting them deeper are refused when
 * compiled (eng_grammar_schema.c). */
#define ENG_G_MAX_ALT_DEPTH 16

/* Frame kinds: what the innermost value in progress is. */
enum { F_VAL = 0, F_OBJ, F_ARR, F_STR, F_NUM, F_LIT, F_KEY };

/* F_OBJ phases */
enum { O_OPEN = 0, O_KEY, O_COLON, O_VALUE, O_AFTER, O_NEXT };
/* F_ARR phases */
enum { A_OPEN = 0, A_VALUE, A_AFTER };
/* F_STR phases: 0 plain, 1 after a backslash, 2..5 that many \u hex digits still to come,
 * 6..8 UTF-8 continuation bytes still to come (1..3) */
#define ENG_G_STR_PHASES 9
/* The largest integer magnitude (ENG_GRAMMAR_MAX_DIGITS digits) */
#define ENG_G_MAX_MAG 999999999999999LL
_Static_assert(ENG_GRAMMAR_MAX_DIGITS == 15, "ENG_G_MAX_MAG has ENG_GRAMMAR_MAX_DIGITS nines");
#define G_NEG ((uint64_t)1 << 63)
#define G_ESC_D ((uint64_t)1 << 62)
/* F_NUM phases */
enum { N_START = 0, N_SIGN, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };

typedef struct eng_gframe {
    uint16_t node;      /* schema node this frame matches */
    uint8_t kind;       /* F_* */
    uint8_t phase;      /* per kind, above */
    uint32_t pos;       /* F_LIT / F_KEY: bytes matched; F_NUM: digits in the current part;
                           F_OBJ: property whose key was read; F_ARR: items begun (counted
                           only under minItems / maxItems, so plain arrays share cache states);
                           F_STR: characters begun (only under minLength / maxLength) */
    uint64_t bits;      /* F_LIT / F_KEY: candidates still matching; F_OBJ: properties seen;
                           F_NUM of a ranged integer: the magnitude so far, G_NEG when a '-'
                           was read; F_STR of a limited string: \uD800-\uDBFF escapes begun
                           (high surrogates: the pair is one character), G_ESC_D while a \u
                           escape's first hex digit was d or D */
} eng_gframe;

typedef struct eng_gstack {
    uint8_t depth;      /* frames in use; 0 = the root value is complete */
    uint8_t ws;         /* whitespace bytes in a row so far */
    uint8_t pad[6];     /* zero: stacks are compared and hashed as bytes */
    eng_gframe f[ENG_GRAMMAR_MAX_DEPTH + 1];
} eng_gstack;

#define ENG_G_MAX_STACKS ENG_GRAMMAR_MAX_READINGS

typedef struct eng_gstate {
    int n;              /* stacks; 0 = dead */
    eng_gstack s[ENG_G_MAX_STACKS];
} eng_gstate;

/* eng_grammar_step.c */
void eng__gstate_init(const eng_grammar *g, eng_gstate *st);
/* Advances in by byte c into out (which must not alias in); returns out->n (0: rejected). */
int eng__gstate_feed(const eng_grammar *g, const eng_gstate *in, unsigned char c,
                     eng_gstate *out);
int eng__gstate_can_end(const eng_grammar *g, const eng_gstate *st);
/* The F_STR step (shared with the vocab index): -1 reject, 0 consumed, 1 string closed. */
int eng__gstr_step(uint8_t *phase, unsigned char c);
/* Bytes of st worth copying / hashing (n, then each stack's header and used frames). */
size_t eng__gstate_key(const eng_gstate *st, unsigned char *buf, size_t cap);
void eng__gstate_copy(eng_gstate *dst, const eng_gstate *src);

/* The vocab index (eng_grammar_vocab.c). */
struct eng_gvocab {
    int vocab;
    int eos;
    int words;                  /* (vocab + 31) / 32 */
    uint32_t *off;              /* [vocab + 1] byte offsets into bytes; owned */
    unsigned char *bytes;       /* token bytes, concatenated; owned */
    /* byte trie: node 0 is the root; children of a node are first_child, next_sibling */
    int n_trie;
    int32_t *t_first, *t_next;  /* [n_trie]; owned */
    unsigned char *t_byte;      /* [n_trie] the byte on the edge into the node; owned */
    int32_t *t_tok;             /* [n_trie] first token ending here, -1 none; owned */
    int32_t *tok_next;          /* [vocab] next token with the same bytes, -1 none; owned */
    int max_len;                /* longest token in bytes */
    /* inside a JSON string in phase p: str_in[p] = tokens that stay inside (bitset);
     * str_out[p][0..n_out[p]) = tokens that close it at some byte (the rest needs context) */
    uint32_t *str_in[ENG_G_STR_PHASES];     /* owned */
    int32_t *str_out[ENG_G_STR_PHASES];     /* owned */
    int n_out[ENG_G_STR_PHASES];
};

#endif
