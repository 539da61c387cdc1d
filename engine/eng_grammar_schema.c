/* eng_grammar_schema.c — compiles a JSON Schema subset (or "any JSON object") into the node
 * graph eng_grammar_step.c walks: structure and the value limits the automaton counts are
 * enforced, annotations ignored, the rest refused by name with its location (or ignored when
 * lenient). Does not run the automaton. Any thread; the result is immutable. */
#include "eng_grammar_impl.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct compiler {
    eng_grammar *g;
    const cJSON *root;      /* borrowed: the schema being compiled */
    const cJSON *defs[2];   /* root's $defs and definitions, or NULL */
    /* $ref targets compiled so far: the JSON node and its grammar node */
    const cJSON *ref_json[256];
    int ref_node[256];
    int n_refs;
    int lenient;            /* ENG_GRAMMAR_LENIENT: ignore what cannot be enforced */
    eng_err *err;
} compiler;

void eng_grammar_free(eng_grammar *g)
{
    if (!g)
        return;
    for (int i = 0; i < g->n_nodes; i++) {
        eng_gnode *n = &g->nodes[i];
        if (n->lits) {
            for (int j = 0; j < n->n; j++)
                free(n->lits[j]);
        }
        free(n->lits);
        free(n->lit_len);
        free(n->sub);
    }
    free(g->nodes);
    free(g);
}

static int new_node(compiler *c, eng_gnode_kind kind)
{
    eng_grammar *g = c->g;
    if (g->n_nodes >= ENG_GRAMMAR_MAX_NODES)
        return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema too large: more than %d nodes",
                           ENG_GRAMMAR_MAX_NODES);
    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? g->cap_nodes * 2 : 16;
        eng_gnode *v = realloc(g->nodes, (size_t)cap * sizeof *v);
        if (!v)
            return eng_err_set(c->err, ENG_E_NOMEM, "out of memory compiling a JSON Schema");
        g->nodes = v;
        g->cap_nodes = cap;
    }
    eng_gnode *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->target = -1;
    n->max_items = -1;
    return g->n_nodes++;
}

/* Gives node i room for k literals / subnodes. */
static int node_alloc(compiler *c, int i, int k, int lits, int subs)
{
    eng_gnode *n = &c->g->nodes[i];
    n->n = 0;
    if (lits) {
        n->lits = calloc((size_t)(k ? k : 1), sizeof *n->lits);
        n->lit_len = calloc((size_t)(k ? k : 1), sizeof *n->lit_len);
        if (!n->lits || !n->lit_len)
            return eng_err_set(c->err, ENG_E_NOMEM, "out of memory compiling a JSON Schema");
    }
    if (subs) {
        n->sub = calloc((size_t)(k ? k : 1), sizeof *n->sub);
        if (!n->sub)
            return eng_err_set(c->err, ENG_E_NOMEM, "out of memory compiling a JSON Schema");
    }
    return 0;
}

/* Adds a literal (taking text over) to node i. */
static int add_lit(compiler *c, int i, char *text)
{
    eng_gnode *n = &c->g->nodes[i];
    if (!text)
        return eng_err_set(c->err, ENG_E_NOMEM, "out of memory compiling a JSON Schema");
    n->lits[n->n] = text;
    n->lit_len[n->n] = strlen(text);
    n->n++;
    return 0;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* The compact JSON text of a string (with quotes and escapes, as cJSON writes it). */
static char *json_quote(const char *s)
{
    cJSON *v = cJSON_CreateString(s);
    char *t = v ? cJSON_PrintUnformatted(v) : NULL;
    cJSON_Delete(v);
    char *d = t ? dup_str(t) : NULL;
    free(t);
    return d;
}

static char *json_print(const cJSON *v)
{
    char *t = cJSON_PrintUnformatted(v);
    char *d = t ? dup_str(t) : NULL;
    free(t);
    return d;
}

static int compile(compiler *c, const cJSON *s, const char *where, int into);

/* The shortest of %.15g .. %.17g that reads back as exactly v. cJSON's own printer settles for
 * 15 digits within a relative epsilon: 0.30000000000000004 came out as 0.3 and 2^53 as
 * 9.00719925474099e+15, literals no validator takes for the schema's values. */
static void num_text(double v, char *buf, size_t cap)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

/* Replaces every number inside v (an owned copy) by a raw node of its exact text; ENG_E_INVAL
 * for a number that does not fit a double (cJSON reads 1e400 as infinity, printed "null"). */
static int exact_numbers(eng_err *err, cJSON *v, const char *where, const char *kw)
{
    cJSON *k = v->child;
    while (k) {
        cJSON *next = k->next;
        if (cJSON_IsNumber(k)) {
            if (!isfinite(k->valuedouble)) {
                if (!where)
                    return eng_err_set(err, ENG_E_INVAL, "JSON Schema: a number is out of "
                                       "range (beyond a double)");
                return eng_err_set(err, ENG_E_INVAL, "JSON Schema: a number in \"%s\" at %s "
                                   "is out of range", kw, where);
            }
            char buf[40];
            num_text(k->valuedouble, buf, sizeof buf);
            cJSON *raw = cJSON_CreateRaw(buf);
            if (raw) {   /* the key moves over (ReplaceItemViaPointer keeps none) */
                raw->string = k->string;
                raw->type |= k->type & cJSON_StringIsConst;
                k->string = NULL;
            }
            if (!raw || !cJSON_ReplaceItemViaPointer(v, k, raw)) {
                cJSON_Delete(raw);
                return eng_err_set(err, ENG_E_NOMEM, "out of memory compiling a JSON Schema");
            }
        } else if (k->child) {
            int rc = exact_numbers(err, k, where, kw);
            if (rc)
                return rc;
        }
        k = next;
    }
    return 0;
}

/* The compact JSON text of the enum / const value v, numbers exact. */
static int lit_text(compiler *c, const cJSON *v, const char *where, const char *kw, char **out)
{
    *out = NULL;
    if (cJSON_IsNumber(v)) {
        if (!isfinite(v->valuedouble))
            return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: a number in \"%s\" at %s is "
                               "out of range", kw, where);
        char buf[40];
        num_text(v->valuedouble, buf, sizeof buf);
        *out = dup_str(buf);
    } else {
        cJSON *d = cJSON_Duplicate(v, 1);
        if (!d)
            return eng_err_set(c->err, ENG_E_NOMEM, "out of memory compiling a JSON Schema");
        int rc = exact_numbers(c->err, d, where, kw);
        if (!rc)
            *out = json_print(d);
        cJSON_Delete(d);
        if (rc)
            return rc;
    }
    return *out ? 0 : eng_err_set(c->err, ENG_E_NOMEM, "out of memory compiling a JSON Schema");
}

/* The keywords, in four classes. Structure the grammar builds (k_structural) and value limits
 * the automaton counts (k_limits: string lengths, an integer's range) are enforced; annotations
 * (k_annotations, and any "x-..." extension) are ignored always; value constraints the automaton
 * cannot keep to (k_unenforced) and keywords claq does not know are refused, or ignored under
 * ENG_GRAMMAR_LENIENT (non-strict requests: the output keeps to the rest of the schema). */
static const char *const k_structural[] = {
    "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
    "enum", "const", "anyOf", "oneOf", "allOf", "$ref", NULL,
};
static const char *const k_limits[] = {
    "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", NULL,
};
/* format is an annotation in JSON Schema 2020-12 unless a validator opts in; claq does not */
static const char *const k_annotations[] = {
    "title", "description", "default", "examples", "example", "$schema", "$id", "$comment",
    "strict", "readOnly", "writeOnly", "deprecated", "contentMediaType", "contentEncoding",
    "contentSchema", "$anchor", "$dynamicAnchor", "discriminator", "format", "xml",
    "externalDocs", "$defs", "definitions", "nullable", NULL,
};
static const char *const k_unenforced[] = {
    "multipleOf", "pattern", "uniqueItems", "minProperties", "maxProperties",
    "patternProperties", "propertyNames", "dependentRequired", "dependentSchemas",
    "dependencies", "contains", "minContains", "maxContains", "prefixItems", "additionalItems",
    "unevaluatedProperties", "unevaluatedItems", "not", "if", "then", "else", "$dynamicRef",
    NULL,
};

static int in_list(const char *const *list, const char *k)
{
    for (int i = 0; list[i]; i++) {
        if (strcmp(list[i], k) == 0)
            return 1;
    }
    return 0;
}

/* A keyword that would constrain a value but cannot be enforced: refused (ENG_E_UNSUPPORTED,
 * naming it) unless lenient, then 0 (ignored). */
static int unenforceable(compiler *c, const char *kw, const char *where)
{
    if (c->lenient)
        return 0;
    return eng_err_set(c->err, ENG_E_UNSUPPORTED, "JSON Schema keyword \"%.64s\" at %s cannot "
                       "be enforced by constrained decoding (without strict mode it is accepted "
                       "and ignored)", kw, where);
}

/* Checks keyword k of a schema at `where`: 0 when the compiler handles it (or it annotates),
 * else an error, or 0 under lenient for those it ignores. */
static int check_keyword(compiler *c, const char *k, const char *where)
{
    if (in_list(k_structural, k) || in_list(k_limits, k) || in_list(k_annotations, k) ||
        strncmp(k, "x-", 2) == 0)
        return 0;
    if (in_list(k_unenforced, k))
        return unenforceable(c, k, where);
    if (c->lenient)
        return 0;
    return eng_err_set(c->err, ENG_E_UNSUPPORTED, "unsupported JSON Schema keyword \"%.64s\" at "
                       "%s", k, where);
}

/* The first constraint keyword of s other than `self` and `also` (NULL: none). Used where the
 * compiler would otherwise drop it silently: beside const, enum and anyOf. Value limits count
 * only when they would be enforced (not lenient). */
static const char *other_constraint(const compiler *c, const cJSON *s, const char *self,
                                    const char *also)
{
    for (int l = 0; l < 2; l++) {
        const char *const *list = l ? k_limits : k_structural;
        if (l && c->lenient)
            break;
        for (int i = 0; list[i]; i++) {
            const char *k = list[i];
            if (strcmp(k, self) != 0 && (!also || strcmp(k, also) != 0) &&
                cJSON_GetObjectItemCaseSensitive(s, k))
                return k;
        }
    }
    return NULL;
}

/* 1 when the JSON value v has the JSON Schema type t (a name or a list of names), 0 when not,
 * -1 when t is not a type. */
static int has_type(const cJSON *v, const cJSON *t)
{
    if (cJSON_IsArray(t)) {
        const cJSON *e;
        int any = 0;
        cJSON_ArrayForEach(e, t) {
            int r = has_type(v, e);
            if (r < 0)
                return r;
            any |= r;
        }
        return any;
    }
    if (!cJSON_IsString(t))
        return -1;
    const char *n = t->valuestring;
    if (strcmp(n, "object") == 0) return cJSON_IsObject(v);
    if (strcmp(n, "array") == 0) return cJSON_IsArray(v);
    if (strcmp(n, "string") == 0) return cJSON_IsString(v);
    if (strcmp(n, "boolean") == 0) return cJSON_IsBool(v);
    if (strcmp(n, "null") == 0) return cJSON_IsNull(v);
    if (strcmp(n, "number") == 0) return cJSON_IsNumber(v);
    if (strcmp(n, "integer") == 0)
        return cJSON_IsNumber(v) && isfinite(v->valuedouble) &&
               v->valuedouble == floor(v->valuedouble);
    return -1;
}

static int type_kind(const char *t)
{
    static const struct { const char *name; int kind; } k[] = {
        {"object", GN_OBJECT}, {"array", GN_ARRAY}, {"string", GN_STRING},
        {"number", GN_NUMBER}, {"integer", GN_INTEGER}, {"boolean", 100}, {"null", 101},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        if (strcmp(k[i].name, t) == 0)
            return k[i].kind;
    }
    return -1;
}

/* A literal-set node of the given values (enum, const, boolean, null). */
static int compile_lits(compiler *c, int into, const cJSON *vals, int nvals, const char *where,
                        const char *kw, int single)
{
    if (nvals < 1)
        return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: \"%s\" at %s has no values", kw,
                           where);
    if (nvals > ENG_GRAMMAR_MAX_ENUM)
        return eng_err_set(c->err, ENG_E_INVAL,
                           "JSON Schema: \"%s\" at %s has %d values (at most %d)", kw, where,
                           nvals, ENG_GRAMMAR_MAX_ENUM);
    c->g->nodes[into].kind = GN_LITS;
    int rc = node_alloc(c, into, nvals, 1, 0);
    if (rc)
        return rc;
    char *text;
    if (!single) {   /* an array of values (a const's array is one value) */
        const cJSON *v;
        cJSON_ArrayForEach(v, vals) {
            if ((rc = lit_text(c, v, where, kw, &text)) != 0 || (rc = add_lit(c, into, text)) != 0)
                return rc;
        }
    } else if ((rc = lit_text(c, vals, where, kw, &text)) != 0 ||
               (rc = add_lit(c, into, text)) != 0) {
        return rc;
    }
    return into;
}

static int compile_object(compiler *c, const cJSON *s, const char *where, int into)
{
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");
    const cJSON *addl = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
    if (props && !cJSON_IsObject(props))
        return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: \"properties\" at %s is not an "
                           "object", where);
    if (addl && !cJSON_IsBool(addl) && !cJSON_IsObject(addl))
        return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: \"additionalProperties\" at %s "
                           "is not a boolean or a schema", where);
    int np = props ? cJSON_GetArraySize(props) : 0;
    if (np > ENG_GRAMMAR_MAX_PROPS)
        return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: %d properties at %s (at most %d)",
                           np, where, ENG_GRAMMAR_MAX_PROPS);
    if (req && !cJSON_IsArray(req))
        return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: \"required\" at %s is not an "
                           "array", where);
    /* no declared properties and not closed: any object, as a plain {"type":"object"} means;
     * a schema for additionalProperties constrains every value */
    if (np == 0 && !(addl && cJSON_IsFalse(addl))) {
        if (req && cJSON_GetArraySize(req) > 0)
            return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: \"required\" at %s names "
                               "properties that \"properties\" does not declare", where);
        c->g->nodes[into].kind = GN_ANY_OBJECT;
        if (addl && cJSON_IsObject(addl) && addl->child) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s/additionalProperties", where);
            int k = compile(c, addl, sub, -1);
            if (k < 0)
                return k;
            c->g->nodes[into].target = k;
        }
        return into;
    }
    c->g->nodes[into].kind = GN_OBJECT;
    int rc = node_alloc(c, into, np, 1, 1);
    if (rc)
        return rc;
    const cJSON *p;
    int i = 0;
    cJSON_ArrayForEach(p, props) {
        char sub[256];
        snprintf(sub, sizeof sub, "%s/properties/%s", where, p->string);
        if (cJSON_IsFalse(p))
            continue;   /* a property that may not appear: never written */
        if ((rc = add_lit(c, into, json_quote(p->string))) != 0)
            return rc;
        int k = compile(c, p, sub, -1);
        if (k < 0)
            return k;
        c->g->nodes[into].sub[i++] = k;
    }
    if (req) {
        const cJSON *r;
        cJSON_ArrayForEach(r, req) {
            if (!cJSON_IsString(r))
                return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: \"required\" at %s holds "
                                   "a non-string", where);
            int found = -1, j = 0;
            cJSON_ArrayForEach(p, props) {
                if (strcmp(p->string, r->valuestring) == 0) {
                    if (cJSON_IsFalse(p))
                        return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: \"required\" at "
                                           "%s names \"%.64s\", whose schema is false: no "
                                           "object can match", where, r->valuestring);
                    found = j;
                }
                j += !cJSON_IsFalse(p);
            }
            if (found < 0)
                return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: \"required\" at %s names "
                                   "\"%.64s\", which \"properties\" does not declare", where,
                                   r->valuestring);
            c->g->nodes[into].required |= (uint64_t)1 << found;
        }
    }
    return into;
}

/* The schema a $ref names (NULL with err set when it names none). */
static const cJSON *resolve_ref(compiler *c, const cJSON *ref, const char *where)
{
    if (!cJSON_IsString(ref)) {
        eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: \"$ref\" at %s is not a string", where);
        return NULL;
    }
    const char *r = ref->valuestring;
    const cJSON *t = NULL;
    if (strcmp(r, "#") == 0) {
        t = c->root;
    } else if (strncmp(r, "#/$defs/", 8) == 0 && c->defs[0]) {
        t = cJSON_GetObjectItemCaseSensitive(c->defs[0], r + 8);
    } else if (strncmp(r, "#/definitions/", 14) == 0 && c->defs[1]) {
        t = cJSON_GetObjectItemCaseSensitive(c->defs[1], r + 14);
    }
    if (!t)
        eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: \"$ref\" \"%.128s\" at %s does not name a "
                    "definition of this schema (\"#/$defs/...\")", r, where);
    return t;
}

/* Resolves a $ref to its grammar node (compiling the target on first use, so that recursive
 * schemas become cycles in the graph). */
static int compile_ref(compiler *c, const cJSON *ref, const char *where, int into)
{
    const cJSON *t = resolve_ref(c, ref, where);
    if (!t)
        return ENG_E_INVAL;   /* resolve_ref set err */
    const char *r = ref->valuestring;
    c->g->nodes[into].kind = GN_REF;
    for (int i = 0; i < c->n_refs; i++) {
        if (c->ref_json[i] == t) {
            c->g->nodes[into].target = c->ref_node[i];
            return into;
        }
    }
    if (c->n_refs == (int)(sizeof c->ref_json / sizeof c->ref_json[0]))
        return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: too many $ref targets");
    int k = new_node(c, GN_ANY);
    if (k < 0)
        return k;
    c->ref_json[c->n_refs] = t;
    c->ref_node[c->n_refs] = k;
    c->n_refs++;
    c->g->nodes[into].target = k;
    k = compile(c, t, r, k);
    return k < 0 ? k : into;
}

/* Adds a copy of the property p (named p->string) to merged's "properties"; the same name with
 * another schema is a conflict. */
static int merge_property(compiler *c, cJSON *props, const cJSON *p, const char *what,
                          const char *where, int b)
{
    const cJSON *have = cJSON_GetObjectItemCaseSensitive(props, p->string);
    if (have) {
        if (cJSON_Compare(have, p, 1))
            return 0;
        return eng_err_set(c->err, ENG_E_UNSUPPORTED, "JSON Schema: %s at %s: branch %d "
                           "gives property \"%.64s\" a schema another branch contradicts (claq "
                           "merges object branches only when their properties agree)", what,
                           where, b, p->string);
    }
    cJSON *d = cJSON_Duplicate(p, 1);
    if (!d || !cJSON_AddItemToObject(props, p->string, d)) {
        cJSON_Delete(d);
        return eng_err_set(c->err, ENG_E_NOMEM, "out of memory compiling a JSON Schema");
    }
    return 0;
}

/* Merges one allOf branch (after $ref resolution) into merged, an object schema. Only object
 * schemas merge: properties and required are united. closed[b]: the branch had
 * additionalProperties false (checked against the union once every branch is in). */
static int merge_branch(compiler *c, cJSON *merged, const cJSON *br, const char *what,
                        const char *where, int b, const cJSON **closed)
{
    const cJSON *k;
    for (int hops = 0; cJSON_IsObject(br) && cJSON_GetObjectItemCaseSensitive(br, "$ref"); hops++) {
        const char *o = other_constraint(c, br, "$ref", NULL);
        if (o || hops > ENG_G_MAX_ALT_DEPTH)
            return eng_err_set(c->err, ENG_E_UNSUPPORTED, "JSON Schema: %s at %s: branch "
                               "%d is not an object schema (only objects are merged)", what,
                               where, b);
        if (!(br = resolve_ref(c, cJSON_GetObjectItemCaseSensitive(br, "$ref"), where)))
            return ENG_E_INVAL;   /* resolve_ref set err */
    }
    if (cJSON_IsTrue(br))
        return 0;
    if (!cJSON_IsObject(br))
        return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: %s at %s: branch %d is %s",
                           what, where, b, cJSON_IsFalse(br) ? "false: no value can match"
                                                       : "not a schema");
    cJSON *props = cJSON_GetObjectItemCaseSensitive(merged, "properties");
    cJSON *req = cJSON_GetObjectItemCaseSensitive(merged, "required");
    cJSON_ArrayForEach(k, br) {
        const char *kw = k->string;
        int rc = check_keyword(c, kw, where);
        if (rc)
            return rc;
        if (strcmp(kw, "type") == 0) {
            if (!cJSON_IsString(k) || strcmp(k->valuestring, "object") != 0)
                return eng_err_set(c->err, ENG_E_UNSUPPORTED, "JSON Schema: %s at %s: "
                                   "branch %d is not an object schema (only objects are "
                                   "merged)", what, where, b);
        } else if (strcmp(kw, "properties") == 0) {
            if (!cJSON_IsObject(k))
                return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: \"properties\" in "
                                   "\"allOf\" at %s is not an object", where);
            const cJSON *p;
            cJSON_ArrayForEach(p, k) {
                if ((rc = merge_property(c, props, p, what, where, b)) != 0)
                    return rc;
            }
        } else if (strcmp(kw, "required") == 0) {
            if (!cJSON_IsArray(k))
                return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: \"required\" in \"allOf\" "
                                   "at %s is not an array", where);
            const cJSON *r, *q;
            cJSON_ArrayForEach(r, k) {
                int dup = 0;
                cJSON_ArrayForEach(q, req)
                    dup |= cJSON_Compare(q, r, 1);
                if (!dup && !cJSON_AddItemToArray(req, cJSON_Duplicate(r, 1)))
                    return eng_err_set(c->err, ENG_E_NOMEM, "out of memory compiling a JSON "
                                       "Schema");
            }
        } else if (strcmp(kw, "additionalProperties") == 0) {
            if (cJSON_IsFalse(k))
                closed[b] = cJSON_GetObjectItemCaseSensitive(br, "properties");
            else if (!cJSON_IsTrue(k) && !(cJSON_IsObject(k) && !k->child))
                return eng_err_set(c->err, ENG_E_UNSUPPORTED, "JSON Schema: %s at %s: "
                                   "branch %d has an \"additionalProperties\" schema (only "
                                   "true or false are merged)", what, where, b);
        } else if (strcmp(kw, "nullable") == 0) {
            if (!cJSON_IsFalse(k))
                return eng_err_set(c->err, ENG_E_UNSUPPORTED, "JSON Schema: %s at %s: "
                                   "branch %d is nullable (only objects are merged)", what,
                                   where, b);
        } else if (in_list(k_structural, kw)) {
            return eng_err_set(c->err, ENG_E_UNSUPPORTED, "JSON Schema: \"%s\" in \"allOf\" at "
                               "%s, branch %d: only object schemas (type, properties, required, "
                               "additionalProperties) are merged", kw, where, b);
        }
        /* value limits (minLength, ...) do not apply to objects; annotations do nothing */
    }
    if (!closed[b] && cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(br, "additionalProperties")))
        closed[b] = cJSON_GetObjectItemCaseSensitive(br, "additionalProperties");   /* no props */
    return 0;
}

/* allOf (and $ref beside other constraints, which 2020-12 reads the same way): one branch that
 * constrains compiles as itself; several must be object schemas and merge into one object. */
static int compile_allof(compiler *c, const cJSON *s, const char *where, int into)
{
    const cJSON *all = cJSON_GetObjectItemCaseSensitive(s, "allOf");
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(s, "$ref");
    if (all && (!cJSON_IsArray(all) || cJSON_GetArraySize(all) < 1 ||
                cJSON_GetArraySize(all) > ENG_GRAMMAR_MAX_ENUM))
        return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: \"allOf\" at %s must be an array "
                           "of 1..%d schemas", where, ENG_GRAMMAR_MAX_ENUM);
    const char *what = all ? "\"allOf\"" : "\"$ref\" with constraints beside it";
    /* the branches: allOf's, {"$ref"}, and the siblings when they constrain */
    cJSON *br = cJSON_CreateArray(), *rest = cJSON_Duplicate(s, 1);
    int rc = br && rest ? 0 : eng_err_set(c->err, ENG_E_NOMEM, "out of memory compiling a JSON "
                                          "Schema");
    if (!rc && all) {
        const cJSON *a;
        cJSON_ArrayForEach(a, all)
            cJSON_AddItemToArray(br, cJSON_Duplicate(a, 1));
    }
    if (!rc && ref) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "$ref", cJSON_Duplicate(ref, 1));
        cJSON_AddItemToArray(br, o);
    }
    if (!rc) {
        static const char *const drop[] = {"allOf", "$ref", "$defs", "definitions"};
        for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++)
            cJSON_DeleteItemFromObjectCaseSensitive(rest, drop[i]);
        if (other_constraint(c, rest, "", NULL)) {
            cJSON_AddItemToArray(br, rest);
            rest = NULL;
        }
    }
    int nb = br ? cJSON_GetArraySize(br) : 0;
    if (!rc && nb == 1) {
        rc = compile(c, br->child, where, into);
    } else if (!rc) {
        const cJSON *closed[ENG_GRAMMAR_MAX_ENUM + 2] = {0};
        cJSON *merged = cJSON_Parse("{\"type\":\"object\",\"properties\":{},\"required\":[]}");
        if (!merged)
            rc = eng_err_set(c->err, ENG_E_NOMEM, "out of memory compiling a JSON Schema");
        const cJSON *b;
        int i = 0;
        cJSON_ArrayForEach(b, br) {
            if (!rc)
                rc = merge_branch(c, merged, b, what, where, i, closed);
            i++;
        }
        /* additionalProperties false in one branch: the union may hold no other property */
        const cJSON *props = cJSON_GetObjectItemCaseSensitive(merged, "properties"), *p;
        for (i = 0; !rc && i < nb; i++) {
            if (!closed[i])
                continue;
            const cJSON *own = cJSON_IsObject(closed[i]) ? closed[i] : NULL;
            cJSON_ArrayForEach(p, props) {
                if (!rc && !cJSON_GetObjectItemCaseSensitive(own, p->string))
                    rc = eng_err_set(c->err, ENG_E_UNSUPPORTED, "JSON Schema: %s at %s: "
                                     "branch %d has \"additionalProperties\": false, which "
                                     "excludes \"%.64s\" that another branch declares", what,
                                     where, i, p->string);
            }
            if (!rc && !cJSON_GetObjectItemCaseSensitive(merged, "additionalProperties"))
                cJSON_AddFalseToObject(merged, "additionalProperties");
        }
        if (!rc)
            rc = compile(c, merged, where, into);
        cJSON_Delete(merged);
    }
    cJSON_Delete(br);
    cJSON_Delete(rest);
    return rc;
}

/* A min / max pair of counts (minItems / maxItems, minLength / maxLength) into lim: 0 and -1
 * when absent; 0 or ENG_E_INVAL. */
static int count_limits(compiler *c, const cJSON *s, const char *const kw[2], const char *where,
                        int lim[2])
{
    lim[0] = 0;
    lim[1] = -1;
    for (int k = 0; k < 2; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, kw[k]);
        if (!v)
            continue;
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 65535 ||
            v->valuedouble != (double)(int)v->valuedouble)
            return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: \"%s\" at %s must be an "
                               "integer from 0 to 65535", kw[k], where);
        lim[k] = (int)v->valuedouble;
    }
    return 0;
}

/* minLength / maxLength of a string into node `into`'s limits. */
static int string_limits(compiler *c, const cJSON *s, const char *where, int into)
{
    int lim[2];
    static const char *const kw[2] = {"minLength", "maxLength"};
    int rc = count_limits(c, s, kw, where, lim);
    if (rc)
        return rc;
    if (lim[1] >= 0 && lim[0] > lim[1])
        return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: \"minLength\" at %s is above "
                           "\"maxLength\"", where);
    c->g->nodes[into].min_len = lim[0];
    c->g->nodes[into].max_len = lim[1];
    return into;
}

/* minimum / maximum / exclusiveMinimum / exclusiveMaximum (a number, or draft 4's boolean
 * beside minimum / maximum) of an integer into node `into`'s range. */
static int integer_range(compiler *c, const cJSON *s, const char *where, int into)
{
    static const char *const kw[4] = {"minimum", "maximum", "exclusiveMinimum",
                                      "exclusiveMaximum"};
    const cJSON *v[4];
    int any = 0;
    for (int k = 0; k < 4; k++) {
        v[k] = cJSON_GetObjectItemCaseSensitive(s, kw[k]);
        if (v[k] && !(cJSON_IsNumber(v[k]) && isfinite(v[k]->valuedouble)) &&
            !(k >= 2 && cJSON_IsBool(v[k])))
            return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: \"%s\" at %s must be a "
                               "number", kw[k], where);
        any |= v[k] != NULL;
    }
    if (!any)
        return into;
    double lo = -(double)ENG_G_MAX_MAG, hi = (double)ENG_G_MAX_MAG;
    for (int k = 0; k < 2; k++) {
        const cJSON *ex = v[k + 2];
        int excl_bool = cJSON_IsTrue(ex);     /* draft 4: minimum itself is excluded */
        if (v[k]) {
            double b = v[k]->valuedouble;
            if (k == 0)
                lo = fmax(lo, excl_bool ? floor(b) + 1 : ceil(b));
            else
                hi = fmin(hi, excl_bool ? ceil(b) - 1 : floor(b));
        }
        if (cJSON_IsNumber(ex)) {
            double b = ex->valuedouble;
            if (k == 0)
                lo = fmax(lo, floor(b) + 1);
            else
                hi = fmin(hi, ceil(b) - 1);
        }
    }
    if (lo > hi)
        return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: the bounds at %s leave no integer "
                           "of at most %d digits", where, ENG_GRAMMAR_MAX_DIGITS);
    eng_gnode *n = &c->g->nodes[into];
    n->has_range = 1;
    n->lo = (int64_t)lo;
    n->hi = (int64_t)hi;
    return into;
}

/* Compiles schema s into node `into` (or a new node when into < 0); returns the node. */
static int compile(compiler *c, const cJSON *s, const char *where, int into)
{
    if (into < 0 && (into = new_node(c, GN_ANY)) < 0)
        return into;
    if (cJSON_IsTrue(s))
        return into;    /* true: anything */
    if (cJSON_IsFalse(s))
        return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: the schema at %s is false: no "
                           "value can match", where);
    if (!cJSON_IsObject(s))
        return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: the schema at %s is not an object",
                           where);
    const cJSON *k;
    cJSON_ArrayForEach(k, s) {
        int rc = check_keyword(c, k->string, where);
        if (rc)
            return rc;
    }
    /* OpenAPI 3.0's nullable: the schema or null */
    const cJSON *nl = cJSON_GetObjectItemCaseSensitive(s, "nullable");
    if (nl && !cJSON_IsBool(nl))
        return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: \"nullable\" at %s is not a "
                           "boolean", where);
    if (cJSON_IsTrue(nl)) {
        cJSON *copy = cJSON_Duplicate(s, 1);
        if (!copy)
            return eng_err_set(c->err, ENG_E_NOMEM, "out of memory compiling a JSON Schema");
        cJSON_DeleteItemFromObjectCaseSensitive(copy, "nullable");
        c->g->nodes[into].kind = GN_ANYOF;
        int rc = node_alloc(c, into, 2, 0, 1);
        int k0 = rc ? rc : compile(c, copy, where, -1);
        cJSON_Delete(copy);
        if (k0 < 0)
            return k0;
        cJSON *nv = cJSON_Parse("[null]");
        int k1 = new_node(c, GN_LITS);
        if (k1 >= 0)
            k1 = nv ? compile_lits(c, k1, nv, 1, where, "nullable", 0)
                    : eng_err_set(c->err, ENG_E_NOMEM, "out of memory compiling a JSON Schema");
        cJSON_Delete(nv);
        if (k1 < 0)
            return k1;
        c->g->nodes[into].sub[0] = k0;
        c->g->nodes[into].sub[1] = k1;
        c->g->nodes[into].n = 2;
        return into;
    }
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(s, "$ref");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(s, "type");
    const char *o;
    if (cJSON_GetObjectItemCaseSensitive(s, "allOf"))
        return compile_allof(c, s, where, into);
    if (ref) {
        if (other_constraint(c, s, "$ref", NULL))
            return compile_allof(c, s, where, into);   /* constraints beside $ref apply too */
        return compile_ref(c, ref, where, into);
    }
    const cJSON *cst = cJSON_GetObjectItemCaseSensitive(s, "const");
    if (cst) {
        if ((o = other_constraint(c, s, "const", "type")))
            return eng_err_set(c->err, ENG_E_UNSUPPORTED, "JSON Schema: \"%s\" beside \"const\" "
                               "at %s is not supported", o, where);
        int r = type ? has_type(cst, type) : 1;
        if (r < 0)
            return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: unknown \"type\" at %s", where);
        if (r == 0)
            return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: \"const\" at %s does not have "
                               "the \"type\" beside it: no value can match both", where);
        return compile_lits(c, into, cst, 1, where, "const", 1);
    }
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(s, "enum");
    if (en) {
        if (!cJSON_IsArray(en))
            return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: \"enum\" at %s is not an "
                               "array", where);
        if ((o = other_constraint(c, s, "enum", "type")))
            return eng_err_set(c->err, ENG_E_UNSUPPORTED, "JSON Schema: \"%s\" beside \"enum\" "
                               "at %s is not supported", o, where);
        if (!type)
            return compile_lits(c, into, en, cJSON_GetArraySize(en), where, "enum", 0);
        /* both apply: the values of the type */
        cJSON *keep = cJSON_CreateArray();
        if (!keep)
            return eng_err_set(c->err, ENG_E_NOMEM, "out of memory compiling a JSON Schema");
        const cJSON *v;
        int rc = 0;
        cJSON_ArrayForEach(v, en) {
            int r = has_type(v, type);
            if (r < 0) {
                rc = eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: unknown \"type\" at %s", where);
                break;
            }
            if (r && !cJSON_AddItemToArray(keep, cJSON_Duplicate(v, 1))) {
                rc = eng_err_set(c->err, ENG_E_NOMEM, "out of memory compiling a JSON Schema");
                break;
            }
        }
        int nk = cJSON_GetArraySize(keep);
        if (!rc && nk == 0 && cJSON_GetArraySize(en) > 0)
            rc = eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: no value of \"enum\" at %s has "
                             "the \"type\" beside it", where);
        if (!rc)
            rc = compile_lits(c, into, keep, nk, where, "enum", 0);
        cJSON_Delete(keep);
        return rc;
    }
    /* oneOf compiles as anyOf: that exactly one branch matches is not enforced (llama.cpp's
     * grammars do the same); branches that overlap can both be read */
    const char *akw = cJSON_GetObjectItemCaseSensitive(s, "anyOf") ? "anyOf" : "oneOf";
    const cJSON *any = cJSON_GetObjectItemCaseSensitive(s, akw);
    if (any) {
        int na = cJSON_IsArray(any) ? cJSON_GetArraySize(any) : 0;
        if (na < 1 || na > ENG_GRAMMAR_MAX_ENUM)
            return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: \"%s\" at %s must be an "
                               "array of 1..%d schemas", akw, where, ENG_GRAMMAR_MAX_ENUM);
        if (type)
            return eng_err_set(c->err, ENG_E_UNSUPPORTED, "JSON Schema: \"%s\" beside "
                               "\"type\" at %s is not supported (put the type in each branch)",
                               akw, where);
        if ((o = other_constraint(c, s, akw, NULL)))
            return eng_err_set(c->err, ENG_E_UNSUPPORTED, "JSON Schema: \"%s\" beside \"%s\" "
                               "at %s is not supported (put it in each branch)", o, akw, where);
        c->g->nodes[into].kind = GN_ANYOF;
        int rc = node_alloc(c, into, na, 0, 1);
        if (rc)
            return rc;
        const cJSON *a;
        int i = 0;
        cJSON_ArrayForEach(a, any) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s/%s/%d", where, akw, i);
            int kk = compile(c, a, sub, -1);
            if (kk < 0)
                return kk;
            c->g->nodes[into].sub[i++] = kk;
            c->g->nodes[into].n = i;
        }
        return into;
    }
    if (!type) {
        if (cJSON_GetObjectItemCaseSensitive(s, "properties"))
            return compile_object(c, s, where, into);
        if (cJSON_GetObjectItemCaseSensitive(s, "items")) {
            type = NULL;
        } else {
            /* any value: a string's or a number's limits would go unenforced */
            for (int i = 0; k_limits[i]; i++) {
                int rc = cJSON_GetObjectItemCaseSensitive(s, k_limits[i])
                             ? unenforceable(c, k_limits[i], where) : 0;
                if (rc)
                    return rc;
            }
            return into;    /* no constraint: any value */
        }
    }
    if (type && cJSON_IsArray(type)) {
        /* a list of types: an anyOf of the same schema with each type */
        int nt = cJSON_GetArraySize(type);
        if (nt < 1 || nt > 7)
            return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: \"type\" at %s must list 1..7 "
                               "types", where);
        c->g->nodes[into].kind = GN_ANYOF;
        int rc = node_alloc(c, into, nt, 0, 1);
        if (rc)
            return rc;
        cJSON *copy = cJSON_Duplicate(s, 1);
        if (!copy)
            return eng_err_set(c->err, ENG_E_NOMEM, "out of memory compiling a JSON Schema");
        const cJSON *t;
        int i = 0;
        cJSON_ArrayForEach(t, type) {
            if (!cJSON_IsString(t)) {
                cJSON_Delete(copy);
                return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: \"type\" at %s holds a "
                                   "non-string", where);
            }
            cJSON_ReplaceItemInObjectCaseSensitive(copy, "type", cJSON_CreateString(t->valuestring));
            int kk = compile(c, copy, where, -1);
            if (kk < 0) {
                cJSON_Delete(copy);
                return kk;
            }
            c->g->nodes[into].sub[i++] = kk;
            c->g->nodes[into].n = i;
        }
        cJSON_Delete(copy);
        return into;
    }
    int kind = GN_ARRAY;
    if (type) {
        if (!cJSON_IsString(type) || (kind = type_kind(type->valuestring)) < 0)
            return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: unknown \"type\" at %s (one of "
                               "object, array, string, number, integer, boolean, null)", where);
    }
    switch (kind) {
    case GN_OBJECT:
        return compile_object(c, s, where, into);
    case GN_ARRAY: {
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
        int it;
        int no_items = cJSON_IsFalse(items);   /* items: false allows only [] */
        if (items && !no_items) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s/items", where);
            it = compile(c, items, sub, -1);
            if (it < 0)
                return it;
        } else {
            it = c->g->any;
        }
        int lim[2];
        static const char *const kw[2] = {"minItems", "maxItems"};
        int rc = count_limits(c, s, kw, where, lim);
        if (rc)
            return rc;
        if (no_items)
            lim[1] = 0;
        if (lim[1] >= 0 && lim[0] > lim[1])
            return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: \"minItems\" at %s is above "
                               "\"maxItems\" (or \"items\" is false)", where);
        c->g->nodes[into].kind = GN_ARRAY;
        c->g->nodes[into].target = it;
        c->g->nodes[into].min_items = lim[0];
        c->g->nodes[into].max_items = lim[1];
        return into;
    }
    case 100: {
        cJSON *tf = cJSON_Parse("[true,false]");
        int rc = compile_lits(c, into, tf, 2, where, "type", 0);
        cJSON_Delete(tf);
        return rc;
    }
    case 101: {
        cJSON *nl = cJSON_Parse("[null]");
        int rc = compile_lits(c, into, nl, 1, where, "type", 0);
        cJSON_Delete(nl);
        return rc;
    }
    case GN_STRING:
        c->g->nodes[into].kind = GN_STRING;
        return string_limits(c, s, where, into);
    case GN_INTEGER:
        c->g->nodes[into].kind = GN_INTEGER;
        return integer_range(c, s, where, into);
    default:
        /* a number's bounds: the automaton keeps only integers in a range */
        for (int i = 2; k_limits[i]; i++) {
            int rc = cJSON_GetObjectItemCaseSensitive(s, k_limits[i])
                         ? unenforceable(c, k_limits[i], where) : 0;
            if (rc)
                return rc;
        }
        c->g->nodes[into].kind = (eng_gnode_kind)kind;
        return into;
    }
}

/* The nodes every grammar has: GN_ANY and what it needs. */
static int builtins(compiler *c)
{
    int rc;
    if ((rc = new_node(c, GN_ANY)) < 0) return rc;
    c->g->any = rc;
    if ((rc = new_node(c, GN_ANY_OBJECT)) < 0) return rc;
    c->g->any_obj = rc;
    if ((rc = new_node(c, GN_ARRAY)) < 0) return rc;
    c->g->any_arr = rc;
    c->g->nodes[rc].target = c->g->any;
    if ((rc = new_node(c, GN_LITS)) < 0) return rc;
    c->g->lit_tfn = rc;
    cJSON *v = cJSON_Parse("[true,false,null]");
    if (!v)
        return eng_err_set(c->err, ENG_E_NOMEM, "out of memory compiling a JSON Schema");
    rc = compile_lits(c, c->g->lit_tfn, v, 3, "#", "type", 0);
    cJSON_Delete(v);
    return rc < 0 ? rc : 0;
}

/* A one-branch anyOf is an alias; every alias ($ref) then points past the aliases it names
 * straight at a value's node. The automaton follows at most 16 of them without reading a byte
 * (a guard against cycles), so a chain of 16 plain $refs used to end generation. A cycle of
 * aliases alone ({"$ref": "#"} at the root) describes no value: ENG_E_INVAL. */
static int collapse_aliases(compiler *c)
{
    eng_grammar *g = c->g;
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].kind == GN_ANYOF && g->nodes[i].n == 1) {
            g->nodes[i].kind = GN_REF;
            g->nodes[i].target = g->nodes[i].sub[0];
        }
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].kind != GN_REF)
            continue;
        int t = g->nodes[i].target, hops = 0;
        while (t >= 0 && g->nodes[t].kind == GN_REF && hops++ <= g->n_nodes)
            t = g->nodes[t].target;
        if (t < 0 || hops > g->n_nodes)
            return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: a $ref or anyOf cycle that "
                               "never reaches a value");
        g->nodes[i].target = t;
    }
    return 0;
}

/* anyOf / $ref levels from node i down to a node that reads a byte; a back edge (recursion
 * through alternatives) counts nothing: the automaton drops such a reading by itself. memo:
 * -1 unknown, -2 on the current path, else the depth (capped at 100). */
static int alt_depth(const eng_grammar *g, int i, signed char *memo)
{
    const eng_gnode *n = &g->nodes[i];
    if (n->kind != GN_REF && n->kind != GN_ANYOF)
        return 0;
    if (memo[i] == -2)
        return 0;
    if (memo[i] >= 0)
        return memo[i];
    memo[i] = -2;
    int d = 0;
    if (n->kind == GN_REF) {
        d = alt_depth(g, n->target, memo);
    } else {
        for (int k = 0; k < n->n; k++) {
            int x = alt_depth(g, n->sub[k], memo);
            d = x > d ? x : d;
        }
    }
    d = d + 1 > 100 ? 100 : d + 1;
    memo[i] = (signed char)d;
    return d;
}

/* The automaton gives a reading up after ENG_G_MAX_ALT_DEPTH resolutions for one byte, so a
 * deeper nesting of alternatives would end generation mid-value: refused here instead. */
static int check_alt_depth(compiler *c)
{
    eng_grammar *g = c->g;
    signed char *memo = malloc((size_t)g->n_nodes);
    if (!memo)
        return eng_err_set(c->err, ENG_E_NOMEM, "out of memory compiling a JSON Schema");
    memset(memo, -1, (size_t)g->n_nodes);
    int worst = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        int d = alt_depth(g, i, memo);
        worst = d > worst ? d : worst;
    }
    free(memo);
    if (worst > ENG_G_MAX_ALT_DEPTH)
        return eng_err_set(c->err, ENG_E_INVAL, "JSON Schema: anyOf / $ref nested %s%d levels "
                           "deep with no value between (at most %d)", worst >= 100 ? "over " : "",
                           worst, ENG_G_MAX_ALT_DEPTH);
    return 0;
}

static int start(compiler *c, eng_grammar **out, eng_err *err)
{
    memset(c, 0, sizeof *c);
    c->err = err;
    *out = NULL;
    c->g = calloc(1, sizeof *c->g);
    if (!c->g)
        return eng_err_set(err, ENG_E_NOMEM, "out of memory compiling a JSON Schema");
    int rc = builtins(c);
    if (rc) {
        eng_grammar_free(c->g);
        c->g = NULL;
    }
    return rc;
}

int eng_grammar_compile_json_object(eng_grammar **out, eng_err *err)
{
    compiler c;
    int rc = start(&c, out, err);
    if (rc)
        return rc;
    c.g->root = c.g->any_obj;
    *out = c.g;
    return 0;
}

int eng_grammar_compile_cjson(eng_grammar **out, const cJSON *schema, eng_err *err)
{
    return eng_grammar_compile_cjson_ex(out, schema, 0, err);
}

int eng_grammar_compile_cjson_ex(eng_grammar **out, const cJSON *schema, unsigned flags,
                                 eng_err *err)
{
    compiler c;
    int rc = start(&c, out, err);
    if (rc)
        return rc;
    c.root = schema;
    c.lenient = (flags & ENG_GRAMMAR_LENIENT) != 0;
    c.g->ordered = (flags & ENG_GRAMMAR_ORDERED) != 0;
    c.g->compact = (flags & ENG_GRAMMAR_COMPACT) != 0;
    if (cJSON_IsObject(schema)) {
        c.defs[0] = cJSON_GetObjectItemCaseSensitive(schema, "$defs");
        c.defs[1] = cJSON_GetObjectItemCaseSensitive(schema, "definitions");
        for (int i = 0; i < 2; i++) {
            if (c.defs[i] && !cJSON_IsObject(c.defs[i])) {
                eng_grammar_free(c.g);
                return eng_err_set(err, ENG_E_INVAL, "JSON Schema: \"%s\" is not an object",
                                   i ? "definitions" : "$defs");
            }
        }
    }
    int root = compile(&c, schema, "#", -1);
    if (root >= 0) {
        int rc2 = collapse_aliases(&c);
        if (!rc2)
            rc2 = check_alt_depth(&c);
        if (rc2)
            root = rc2;
    }
    if (root < 0) {
        eng_grammar_free(c.g);
        return root;
    }
    c.g->root = root;
    *out = c.g;
    return 0;
}

char *eng_grammar_print_schema(const cJSON *schema, eng_err *err)
{
    cJSON *d = cJSON_Duplicate(schema, 1);
    if (!d) {
        eng_err_set(err, ENG_E_NOMEM, "out of memory printing a JSON Schema");
        return NULL;
    }
    char *text = NULL;
    if (cJSON_IsNumber(d)) {
        eng_err_set(err, ENG_E_INVAL, "JSON Schema: the schema is a number, not an object");
    } else if (exact_numbers(err, d, NULL, NULL) == 0) {
        text = cJSON_PrintUnformatted(d);
        if (!text)
            eng_err_set(err, ENG_E_NOMEM, "out of memory printing a JSON Schema");
    }
    cJSON_Delete(d);
    return text;
}

int eng_grammar_compile_schema(eng_grammar **out, const char *schema, size_t len, eng_err *err)
{
    return eng_grammar_compile_schema_ex(out, schema, len, 0, err);
}

int eng_grammar_compile_schema_ex(eng_grammar **out, const char *schema, size_t len,
                                  unsigned flags, eng_err *err)
{
    *out = NULL;
    if (len > ENG_GRAMMAR_MAX_SCHEMA)
        return eng_err_set(err, ENG_E_INVAL, "JSON Schema: %zu bytes (at most %d)", len,
                           ENG_GRAMMAR_MAX_SCHEMA);
    cJSON *s = cJSON_ParseWithLength(schema, len);
    if (!s)
        return eng_err_set(err, ENG_E_INVAL, "JSON Schema: not valid JSON");
    int rc = eng_grammar_compile_cjson_ex(out, s, flags, err);
    cJSON_Delete(s);
    return rc;
}
