/* eng_grammar.h — constrained decoding: a JSON grammar (any JSON object for OpenAI's json_object
 * mode, or an automaton compiled from a JSON Schema subset), a per-tokenizer index of token bytes
 * (eng_gvocab), and a matcher that advances the grammar token by token and gives the set of
 * tokens allowed next as a bitset, cached per automaton state. A compiled grammar and a vocab
 * index are immutable after creation (any thread may read them); a matcher belongs to one
 * sequence and one thread at a time (the scheduler thread in the server). */
#ifndef ENG_GRAMMAR_H
#define ENG_GRAMMAR_H

#include <stddef.h>
#include <stdint.h>

#include "eng_err.h"
#include "eng_tokenizer.h"

typedef struct eng_grammar eng_grammar;
typedef struct eng_gvocab eng_gvocab;
typedef struct eng_gmatch eng_gmatch;

/* Limits of the schema subset (each checked at compile; the message names the one exceeded). */
#define ENG_GRAMMAR_MAX_NODES 2048      /* compiled schema nodes */
#define ENG_GRAMMAR_MAX_PROPS 64        /* properties of one object */
#define ENG_GRAMMAR_MAX_ENUM 64         /* values of one enum (keys count the same way) */
#define ENG_GRAMMAR_MAX_DEPTH 24        /* nesting of objects and arrays in the output */
#define ENG_GRAMMAR_MAX_WS 12           /* consecutive whitespace bytes between tokens of JSON */
#define ENG_GRAMMAR_MAX_DIGITS 15       /* digits of an integer part / a fraction / an exponent */
#define ENG_GRAMMAR_MAX_SCHEMA 65536    /* bytes of schema text */
/* Readings of the output kept alive at once (anyOf alternatives that the bytes so far have not
 * told apart); more are dropped, which stays sound but makes the dropped ones unreachable. So an
 * anyOf whose alternatives share a long prefix should have at most this many. */
#define ENG_GRAMMAR_MAX_READINGS 8

/* Any JSON object (values of any type, nesting up to ENG_GRAMMAR_MAX_DEPTH). *out: free with
 * eng_grammar_free. */
int eng_grammar_compile_json_object(eng_grammar **out, eng_err *err);

/* Compiles a JSON Schema given as JSON text [0..len). Enforced: "type" (object, array, string,
 * number, integer, boolean, null, or a list of them), "properties", "required",
 * "additionalProperties" (only declared properties are ever generated), "items",
 * "minItems" / "maxItems", "minLength" / "maxLength" of strings (in characters, a surrogate
 * pair once; a \uD800-\uDBFF escape counts toward maxLength as one), "minimum" / "maximum" /
 * "exclusiveMinimum" / "exclusiveMaximum" of integers (numbers or draft 4 booleans), "enum",
 * "const", "anyOf", "oneOf" (as anyOf: that only one branch matches is not enforced),
 * "allOf" (one branch as itself; several object branches merged into one object, their
 * properties agreeing), "nullable": true (OpenAPI 3.0: the schema or null), "$defs" /
 * "definitions" with "$ref" ("#", "#/$defs/x", "#/definitions/x"; constraints beside it are
 * read as allOf). Ignored annotations: title, description, default, examples, example,
 * $schema, $id, $comment, $anchor, $dynamicAnchor, strict, readOnly, writeOnly, deprecated,
 * contentMediaType, contentEncoding, contentSchema, discriminator, xml, externalDocs, "x-..."
 * extensions, and "format" (an annotation in 2020-12 unless a validator opts in; claq does not
 * check it). Value constraints the automaton cannot keep to (pattern, multipleOf, uniqueItems,
 * minProperties, maxProperties, patternProperties, propertyNames, dependentRequired, not,
 * if/then/else, prefixItems, ..., and a number's minimum / maximum) are ENG_E_UNSUPPORTED
 * ("JSON Schema keyword \"pattern\" at #/properties/x cannot be enforced ..."), as is any other
 * keyword ("unsupported JSON Schema keyword ..."), unless ENG_GRAMMAR_LENIENT. A malformed
 * schema is ENG_E_INVAL with the same kind of message. Enum and const values match their
 * compact JSON serialization exactly, numbers in the shortest form that reads back as the
 * same double. */
int eng_grammar_compile_schema(eng_grammar **out, const char *schema, size_t len, eng_err *err);

/* eng_grammar_compile_schema with flags (ENG_GRAMMAR_*). ENG_GRAMMAR_ORDERED writes the declared properties of
 * every object in the order the schema lists them (optional ones may be skipped, required ones
 * may not), as OpenAI's structured outputs do; tool calls use it so that "name" comes before
 * the arguments and decides the function at once. */
#define ENG_GRAMMAR_ORDERED 1u
/* ENG_GRAMMAR_COMPACT allows at most one blank (space, tab, LF, CR) in each place JSON allows
 * whitespace instead of ENG_GRAMMAR_MAX_WS: small models otherwise spend their tokens on it. */
#define ENG_GRAMMAR_COMPACT 2u
/* ENG_GRAMMAR_LENIENT ignores what would be refused as unenforceable or unknown (see above):
 * for requests that do not ask for strict conformance (OpenAI's non-strict tools and
 * response_format without strict), whose output then keeps to the rest of the schema.
 * Malformed schemas and unsupported structure are still refused. */
#define ENG_GRAMMAR_LENIENT 4u
int eng_grammar_compile_schema_ex(eng_grammar **out, const char *schema, size_t len,
                                  unsigned flags, eng_err *err);

/* The same from a parsed cJSON node (borrowed for the call). */
struct cJSON;
int eng_grammar_compile_cjson(eng_grammar **out, const struct cJSON *schema, eng_err *err);
int eng_grammar_compile_cjson_ex(eng_grammar **out, const struct cJSON *schema, unsigned flags,
                                 eng_err *err);
/* A schema's compact JSON text to compile later, numbers exact as above (cJSON's own printer
 * keeps 15 digits when they read back within an epsilon: 0.30000000000000004 became 0.3). NULL
 * with err set: ENG_E_INVAL for a number beyond a double (1e400), ENG_E_NOMEM. free() it. */
char *eng_grammar_print_schema(const struct cJSON *schema, eng_err *err);

void eng_grammar_free(eng_grammar *g);   /* NULL-safe */

/* Token bytes of every id (eng_tokenizer_token_bytes with no previous token), a byte trie over
 * them, and the tokens' behaviour inside a JSON string, precomputed once per tokenizer.
 * Special tokens and tokens with no bytes are never allowed by a grammar; eos (the tokenizer's
 * unless eos_override >= 0) is allowed exactly where the grammar may end. */
int eng_gvocab_build(eng_gvocab **out, const eng_tokenizer *t, int vocab, int eos_override,
                     eng_err *err);
void eng_gvocab_free(eng_gvocab *v);     /* NULL-safe */
int eng_gvocab_eos(const eng_gvocab *v);
/* The first byte of token's bytes that is not JSON whitespace (space, tab, LF, CR); -1 when all
 * of them are, -2 when the token has no bytes here (special tokens, ids out of range). Lets a
 * caller decide between free text and a grammar by the first byte that is not whitespace
 * (tool_choice "auto": '{' begins a tool call). */
int eng_gvocab_lead(const eng_gvocab *v, int token);

/* A matcher: the grammar's current state for one sequence and its mask cache. g and v are
 * borrowed for the matcher's life. */
int eng_gmatch_new(eng_gmatch **out, const eng_grammar *g, const eng_gvocab *v, eng_err *err);
void eng_gmatch_free(eng_gmatch *m);     /* NULL-safe */

/* The tokens allowed next: a bitset of (vocab + 31) / 32 words, bit t of word t / 32 set when
 * token t is allowed. Valid until the next call on m. NULL only on out-of-memory. When the
 * grammar has no way forward (a schema that cannot be satisfied within the limits) only EOS is
 * allowed, so a sequence always ends. */
const uint32_t *eng_gmatch_mask(eng_gmatch *m);

/* Advances by token id: 0, or ENG_E_INVAL when the token is not allowed (m unchanged). EOS is
 * accepted where the mask offers it and leaves the state as it was. */
int eng_gmatch_accept(eng_gmatch *m, int token);

/* Advances by raw bytes (tests, tool prefixes): 0, or ENG_E_INVAL at the first byte the grammar
 * rejects (m unchanged). */
int eng_gmatch_accept_bytes(eng_gmatch *m, const char *bytes, size_t n);

/* Whether the current mask offers EOS: the grammar may end here, or has no way forward. Servers
 * allow their other end-of-sequence ids (<|im_end|>, <|eot_id|>) exactly then. */
int eng_gmatch_end_allowed(eng_gmatch *m);

/* Back to the grammar's start (the mask cache is kept). */
void eng_gmatch_reset(eng_gmatch *m);

/* 1 when what was accepted so far is a complete value (EOS would be allowed). */
int eng_gmatch_can_end(const eng_gmatch *m);

/* Counters for benchmarks: masks computed (cache misses) and served from the cache. */
void eng_gmatch_stats(const eng_gmatch *m, uint64_t *computed, uint64_t *cached);

#endif
