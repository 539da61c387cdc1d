/* test_eng_grammar_automaton — the JSON grammar byte by byte (accepts valid documents of a
 * schema, rejects invalid ones at the right byte, ends only where a value is complete); schema
 * keywords: annotations ignored, oneOf / nullable / allOf compiled, string lengths and integer
 * ranges enforced, the unenforceable refused by name (ignored when lenient); and on
 * small-lm-5m's 4096-token vocabulary (and the LLaMA-2 tokenizer.model's 32000) the cached
 * trie-walk mask equals a token-by-token check of every token, with special tokens never
 * allowed and EOS only where the grammar may end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eng_grammar.h"
#include "eng_model.h"
#include "test_check.h"

static const eng_gvocab *g_dummy;

/* 1 when doc is accepted whole and the grammar may end there. */
static int accepts(const eng_grammar *g, const eng_gvocab *v, const char *doc)
{
    eng_gmatch *m = NULL;
    if (eng_gmatch_new(&m, g, v, NULL)) return -1;
    int ok = eng_gmatch_accept_bytes(m, doc, strlen(doc)) == 0 && eng_gmatch_can_end(m);
    eng_gmatch_free(m);
    return ok;
}

static eng_grammar *schema(const char *s)
{
    eng_grammar *g = NULL;
    eng_err err = {0};
    if (eng_grammar_compile_schema(&g, s, strlen(s), &err))
        fprintf(stderr, "compile failed: %s\n", err.msg);
    return g;
}

static void bytes_cases(const eng_gvocab *v)
{
    eng_grammar *g = schema("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},"
                            "\"b\":{\"type\":\"array\",\"items\":{\"enum\":[\"x\",\"yz\",1]}},"
                            "\"c\":{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"null\"},"
                            "{\"$ref\":\"#/$defs/p\"}]}},\"required\":[\"a\"],"
                            "\"additionalProperties\":false,\"$defs\":{\"p\":{\"type\":\"object\","
                            "\"properties\":{\"q\":{\"type\":\"boolean\"}},\"required\":[\"q\"]}}}");
    CHECK(g, "schema compiles");
    if (!g) return;
    static const char *const good[] = {
        "{\"a\":1}", " {\"a\" : -12 , \"b\":[\"x\",1,\"yz\"]}\n", "{\"b\":[],\"a\":0}",
        "{\"a\":3,\"c\":null}", "{\"a\":3,\"c\":\"h\\u00e9\\n\xc3\xa9\"}",
        "{\"a\":3,\"c\":{\"q\":true}}",
    };
    static const char *const bad[] = {
        "{}", "{\"a\":1.5}", "{\"a\":01}", "{\"a\":1,\"a\":2}", "{\"a\":1,\"d\":2}",
        "{\"a\":1,\"b\":[\"xy\"]}", "{\"a\":1,\"c\":{}}", "{\"a\":1,}", "{\"a\":1", "[1]",
        "{\"a\":1,\"c\":\"\x01\"}", "{\"a\":1,\"c\":\"\\x\"}", "{\"a\":1}x",
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        CHECK(accepts(g, v, good[i]) == 1, "accepts %s", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(accepts(g, v, bad[i]) == 0, "rejects %s", bad[i]);
    eng_grammar_free(g);

    eng_grammar *o = NULL;
    CHECK(eng_grammar_compile_json_object(&o, NULL) == 0, "json_object compiles");
    CHECK(accepts(o, v, "{\"k\":[1,{\"z\":null},true,\"s\",-0.5e+3],\"x\":{}}") == 1, "any object");
    CHECK(accepts(o, v, "[1]") == 0 && accepts(o, v, "\"s\"") == 0, "json_object wants an object");
    CHECK(accepts(o, v, "{\"a\":tru}") == 0 && accepts(o, v, "{\"a\":nul}") == 0, "bad literal");
    eng_grammar_free(o);

    eng_grammar *a = schema("{\"type\":\"array\",\"items\":{\"type\":\"integer\"},"
                            "\"minItems\":1,\"maxItems\":3}");
    CHECK(a, "minItems/maxItems compile");
    if (a) {
        CHECK(accepts(a, v, "[]") == 0 && accepts(a, v, "[ ]") == 0, "minItems 1 refuses []");
        CHECK(accepts(a, v, "[1]") == 1 && accepts(a, v, "[1, 2,3]") == 1, "1..3 items");
        CHECK(accepts(a, v, "[1,2,3,4]") == 0, "maxItems 3 refuses a fourth");
    }
    eng_grammar_free(a);
    a = schema("{\"type\":\"array\",\"maxItems\":0}");
    CHECK(a && accepts(a, v, "[]") == 1 && accepts(a, v, "[1]") == 0, "maxItems 0: only []");
    eng_grammar_free(a);

    static const char ord[] = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},"
                              "\"b\":{\"type\":\"integer\"},\"c\":{\"type\":\"integer\"}},"
                              "\"required\":[\"a\",\"c\"]}";
    a = NULL;
    CHECK(eng_grammar_compile_schema_ex(&a, ord, strlen(ord), ENG_GRAMMAR_ORDERED, NULL) == 0,
          "ordered schema compiles");
    if (a) {
        CHECK(accepts(a, v, "{\"a\":1,\"c\":2}") == 1 && accepts(a, v, "{\"a\":1,\"b\":2,\"c\":3}") == 1,
              "ordered: declared order, optional b skipped or not");
        CHECK(accepts(a, v, "{\"c\":1,\"a\":2}") == 0 && accepts(a, v, "{\"b\":1,\"a\":2,\"c\":3}") == 0 &&
              accepts(a, v, "{\"a\":1,\"c\":2,\"b\":3}") == 0, "ordered: no other order");
    }
    eng_grammar_free(a);
    a = NULL;
    CHECK(eng_grammar_compile_schema_ex(&a, ord, strlen(ord), ENG_GRAMMAR_COMPACT, NULL) == 0,
          "compact schema compiles");
    if (a) {
        CHECK(accepts(a, v, " { \"c\": 1,\n\"a\" :2 }") == 1, "compact: one blank per gap");
        CHECK(accepts(a, v, "{\"a\":  1,\"c\":2}") == 0 && accepts(a, v, "  {\"a\":1,\"c\":2}") == 0,
              "compact: not two");
    }
    eng_grammar_free(a);

    /* ordered, optional before required: after the last property no comma may follow (the
     * skipped optional one cannot come back), so {"b":x} is complete and {"b":x, is dead */
    static const char ord2[] = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},"
                               "\"b\":{\"type\":\"boolean\"}},\"required\":[\"b\"]}";
    a = NULL;
    CHECK(eng_grammar_compile_schema_ex(&a, ord2, strlen(ord2), ENG_GRAMMAR_ORDERED, NULL) == 0,
          "ordered schema 2 compiles");
    if (a) {
        eng_gmatch *m = NULL;
        CHECK(eng_gmatch_new(&m, a, v, NULL) == 0, "matcher");
        const char *pre = "{\"b\":false";
        CHECK(m && eng_gmatch_accept_bytes(m, pre, strlen(pre)) == 0, "ordered: b alone");
        CHECK(m && eng_gmatch_accept_bytes(m, ",", 1) != 0,
              "ordered: no comma after the last property once a is skipped");
        eng_gmatch_free(m);
        CHECK(accepts(a, v, "{\"a\":1,\"b\":true}") == 1 && accepts(a, v, "{\"b\":true}") == 1,
              "ordered: a then b, or b alone");
    }
    eng_grammar_free(a);

    /* const / enum values exactly; siblings enforced */
    static const struct { const char *schema, *yes, *no; } lit[] = {
        {"{\"const\":[1,2,3]}", "[1,2,3]", "2"},                         /* an array const */
        {"{\"const\":[]}", "[]", "[1]"},
        {"{\"const\":{\"k\":[0.30000000000000004]}}", "{\"k\":[0.30000000000000004]}",
         "{\"\":[0.30000000000000004]}"},
        {"{\"const\":0.30000000000000004}", "0.30000000000000004", "0.3"},
        {"{\"enum\":[9007199254740992]}", "9007199254740992", "9.00719925474099e+15"},
        {"{\"type\":\"string\",\"enum\":[1,\"a\",null]}", "\"a\"", "1"},  /* type filters */
        {"{\"type\":[\"integer\",\"null\"],\"enum\":[1.5,2,null,\"x\"]}", "2", "1.5"},
        {"{\"type\":\"object\",\"properties\":{\"a\":false,\"b\":{\"type\":\"integer\"}}}",
         "{\"b\":1}", "{\"a\":1}"},                                     /* false: never */
        {"{\"type\":\"array\",\"items\":false}", "[]", "[1]"},
        {"{\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\"}}", "{\"k\":1}",
         "{\"k\":\"s\"}"},
        {"{\"$defs\":{\"d0\":{\"$ref\":\"#/$defs/d1\"},\"d1\":{\"$ref\":\"#/$defs/d2\"},"
         "\"d2\":{\"$ref\":\"#/$defs/d3\"},\"d3\":{\"$ref\":\"#/$defs/d4\"},\"d4\":{\"$ref\":"
         "\"#/$defs/d5\"},\"d5\":{\"$ref\":\"#/$defs/d6\"},\"d6\":{\"$ref\":\"#/$defs/d7\"},"
         "\"d7\":{\"$ref\":\"#/$defs/d8\"},\"d8\":{\"$ref\":\"#/$defs/d9\"},\"d9\":{\"$ref\":"
         "\"#/$defs/da\"},\"da\":{\"$ref\":\"#/$defs/db\"},\"db\":{\"$ref\":\"#/$defs/dc\"},"
         "\"dc\":{\"$ref\":\"#/$defs/dd\"},\"dd\":{\"$ref\":\"#/$defs/de\"},\"de\":{\"$ref\":"
         "\"#/$defs/df\"},\"df\":{\"$ref\":\"#/$defs/dg\"},\"dg\":{\"anyOf\":[{\"anyOf\":"
         "[{\"type\":\"integer\"}]}]}},\"$ref\":\"#/$defs/d0\"}", "7", "\"7\""},   /* 18 aliases */
    };
    for (size_t i = 0; i < sizeof lit / sizeof *lit; i++) {
        eng_grammar *q = schema(lit[i].schema);
        CHECK(q && accepts(q, v, lit[i].yes) == 1 && accepts(q, v, lit[i].no) == 0,
              "%s: accepts %s, not %s", lit[i].schema, lit[i].yes, lit[i].no);
        eng_grammar_free(q);
    }

    eng_grammar *n = schema("{\"type\":\"number\"}");
    CHECK(n && accepts(n, v, "12.5") == 1 && accepts(n, v, "-0") == 1 && accepts(n, v, "1.") == 0,
          "numbers end at the root");
    eng_grammar_free(n);
}

static eng_grammar *schema_flags(const char *s, unsigned flags)
{
    eng_grammar *g = NULL;
    eng_err err = {0};
    if (eng_grammar_compile_schema_ex(&g, s, strlen(s), flags, &err))
        fprintf(stderr, "compile failed: %s\n", err.msg);
    return g;
}

/* Annotations ignored, oneOf / nullable / allOf / $ref siblings compiled, and the value limits
 * the automaton counts (string lengths, integer ranges) kept to byte by byte. */
static void keyword_cases(const eng_gvocab *v)
{
    static const struct { const char *schema, *yes[5], *no[5]; } cases[] = {
        /* annotations, format included: compile in strict mode and change nothing */
        {"{\"type\":\"object\",\"properties\":{\"t\":{\"type\":\"string\",\"format\":"
         "\"date-time\",\"readOnly\":true,\"writeOnly\":false,\"deprecated\":true,"
         "\"contentMediaType\":\"text/plain\",\"contentEncoding\":\"base64\",\"$anchor\":"
         "\"t\",\"example\":\"x\",\"examples\":[\"y\"],\"x-order\":1}},\"discriminator\":"
         "{\"propertyName\":\"t\"},\"required\":[\"t\"]}",
         {"{\"t\":\"not a date\"}"}, {"{\"t\":1}", "{}"}},
        /* oneOf as anyOf */
        {"{\"oneOf\":[{\"type\":\"string\"},{\"type\":\"integer\"}]}", {"\"a\"", "7"},
         {"null", "1.5"}},
        /* nullable: the type or null (with an enum: its values or null) */
        {"{\"type\":\"string\",\"nullable\":true}", {"null", "\"s\""}, {"1", "nul"}},
        {"{\"type\":\"string\",\"enum\":[\"a\"],\"nullable\":true}", {"null", "\"a\""},
         {"\"b\""}},
        {"{\"type\":\"integer\",\"nullable\":false}", {"3"}, {"null"}},
        /* allOf of one $ref beside annotations (pydantic v1) */
        {"{\"type\":\"object\",\"properties\":{\"e\":{\"allOf\":[{\"$ref\":\"#/$defs/E\"}],"
         "\"description\":\"d\",\"default\":\"a\"}},\"$defs\":{\"E\":{\"enum\":[\"a\",\"b\"]}}}",
         {"{\"e\":\"a\"}", "{\"e\":\"b\"}"}, {"{\"e\":\"c\"}"}},
        /* allOf of object branches, one through $ref: merged */
        {"{\"allOf\":[{\"$ref\":\"#/$defs/A\"},{\"type\":\"object\",\"properties\":{\"b\":"
         "{\"type\":\"integer\"}},\"required\":[\"b\"]}],\"$defs\":{\"A\":{\"type\":\"object\","
         "\"properties\":{\"a\":{\"type\":\"string\"}},\"required\":[\"a\"]}}}",
         {"{\"a\":\"x\",\"b\":1}", "{\"b\":2,\"a\":\"\"}"}, {"{\"a\":\"x\"}", "{\"b\":1}",
         "{\"a\":1,\"b\":1}"}},
        /* both closed, same properties: stays closed */
        {"{\"allOf\":[{\"properties\":{\"a\":{\"type\":\"integer\"}},\"additionalProperties\":"
         "false},{\"properties\":{\"a\":{\"type\":\"integer\"}},\"required\":[\"a\"]}]}",
         {"{\"a\":1}"}, {"{}", "{\"a\":1,\"z\":2}"}},
        /* $ref beside annotations, and beside object constraints (read as allOf) */
        {"{\"$defs\":{\"P\":{\"type\":\"integer\"}},\"$ref\":\"#/$defs/P\",\"description\":"
         "\"d\",\"title\":\"t\",\"default\":1,\"examples\":[2]}", {"5"}, {"\"5\""}},
        {"{\"$defs\":{\"P\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}}}},"
         "\"$ref\":\"#/$defs/P\",\"required\":[\"a\"]}", {"{\"a\":1}"}, {"{}"}},
        /* string lengths in characters: UTF-8 and escapes one each, a surrogate pair once */
        {"{\"type\":\"string\",\"minLength\":2,\"maxLength\":4}",
         {"\"ab\"", "\"abcd\"", "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80x\"", "\"\\n\\u00e9\"",
          "\"\\ud83d\\ude00a\""},
         {"\"a\"", "\"abcde\"", "\"\\ud83d\\ude00\"", "\"\"", "\"\xc3\xa9\""}},
        {"{\"type\":\"object\",\"properties\":{\"s\":{\"type\":\"string\",\"maxLength\":0}}}",
         {"{\"s\":\"\"}"}, {"{\"s\":\"a\"}"}},
        /* integer ranges, digit by digit, checked where the number ends */
        {"{\"type\":\"integer\",\"minimum\":-5,\"maximum\":120}", {"-5", "0", "120", "7", "-0"},
         {"-6", "121", "1000", "-10", "1200"}},
        {"{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"minimum\":10,"
         "\"maximum\":20}},\"required\":[\"n\"]}", {"{\"n\":15}", "{\"n\":20 }"},
         {"{\"n\":1}", "{\"n\":5}", "{\"n\":21}", "{\"n\":-15}"}},
        {"{\"type\":\"integer\",\"exclusiveMinimum\":0,\"exclusiveMaximum\":10}", {"1", "9"},
         {"0", "10", "-1"}},
        {"{\"type\":\"integer\",\"minimum\":0,\"exclusiveMinimum\":true}", {"1", "99"},
         {"0", "-0"}},   /* draft 4's boolean form */
        {"{\"type\":\"integer\",\"minimum\":1.5,\"maximum\":1e300}", {"2", "999999999999999"},
         {"1", "-3"}},
        {"{\"type\":[\"integer\",\"null\"],\"minimum\":1}", {"null", "3"}, {"0", "-1"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        eng_grammar *g = schema(cases[i].schema);
        CHECK(g, "compiles: %s", cases[i].schema);
        for (int k = 0; g && k < 5 && cases[i].yes[k]; k++)
            CHECK(accepts(g, v, cases[i].yes[k]) == 1, "%s accepts %s", cases[i].schema,
                  cases[i].yes[k]);
        for (int k = 0; g && k < 5 && cases[i].no[k]; k++)
            CHECK(accepts(g, v, cases[i].no[k]) == 0, "%s rejects %s", cases[i].schema,
                  cases[i].no[k]);
        eng_grammar_free(g);
    }

    /* lenient: what cannot be enforced (and unknown keywords) is ignored, the rest kept */
    static const char len[] = "{\"type\":\"object\",\"properties\":{\"s\":{\"type\":\"string\","
                              "\"pattern\":\"^a\",\"minLength\":2},\"n\":{\"type\":\"number\","
                              "\"minimum\":0,\"multipleOf\":2},\"l\":{\"type\":\"array\","
                              "\"uniqueItems\":true,\"items\":{\"type\":\"integer\",\"maximum\":9}}},"
                              "\"required\":[\"s\"],\"minProperties\":1,\"frobnicate\":{}}";
    eng_grammar *g = NULL;
    eng_err err = {0};
    CHECK(eng_grammar_compile_schema_ex(&g, len, strlen(len), 0, &err) == ENG_E_UNSUPPORTED &&
          strstr(err.msg, "cannot be enforced"), "strict refuses: %s", err.msg);
    eng_grammar_free(g);
    g = schema_flags(len, ENG_GRAMMAR_LENIENT);
    CHECK(g, "lenient compiles");
    if (g) {
        CHECK(accepts(g, v, "{\"s\":\"bb\",\"n\":-1.5,\"l\":[1,1]}") == 1,
              "lenient: pattern, minimum of a number, multipleOf, uniqueItems ignored");
        CHECK(accepts(g, v, "{\"n\":1}") == 0, "lenient: required kept");
        CHECK(accepts(g, v, "{\"s\":\"b\"}") == 0, "lenient: minLength still enforced");
        CHECK(accepts(g, v, "{\"s\":\"bb\",\"l\":[10]}") == 0,
              "lenient: an integer's maximum still enforced");
    }
    eng_grammar_free(g);
    g = schema_flags("{\"type\":\"integer\",\"anyOf\":[{}]}", ENG_GRAMMAR_LENIENT);
    CHECK(!g, "lenient still refuses unsupported structure");
    eng_grammar_free(g);
}

static void rejects_keywords(void)
{
    static const struct { const char *schema, *word; } cases[] = {
        {"{\"type\":\"string\",\"pattern\":\"^a\"}", "\"pattern\""},
        {"{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"string\",\"pattern\":\"a\"}}}",
         "\"pattern\" at #/properties/x cannot be enforced"},
        {"{\"type\":\"integer\",\"multipleOf\":2}", "\"multipleOf\" at # cannot be enforced"},
        {"{\"type\":\"number\",\"minimum\":0}", "\"minimum\" at # cannot be enforced"},
        {"{\"type\":\"object\",\"minProperties\":1}", "\"minProperties\""},
        {"{\"minLength\":1}", "\"minLength\" at # cannot be enforced"},   /* any value */
        {"{\"type\":\"string\",\"frobnicate\":1}", "unsupported JSON Schema keyword \"frobnicate\""},
        {"{\"type\":\"string\",\"minLength\":3,\"maxLength\":2}", "above \"maxLength\""},
        {"{\"type\":\"string\",\"maxLength\":-1}", "\"maxLength\""},
        {"{\"type\":\"integer\",\"minimum\":5,\"maximum\":4.5}", "leave no integer"},
        {"{\"type\":\"integer\",\"exclusiveMinimum\":3,\"exclusiveMaximum\":4}", "leave no integer"},
        {"{\"type\":\"integer\",\"minimum\":1e300}", "leave no integer"},
        {"{\"type\":\"integer\",\"minimum\":\"1\"}", "must be a number"},
        {"{\"type\":\"string\",\"nullable\":1}", "\"nullable\" at # is not a boolean"},
        {"{\"allOf\":[{\"type\":\"string\"},{\"type\":\"object\"}]}", "not an object schema"},
        {"{\"allOf\":[{\"properties\":{\"a\":{\"type\":\"string\"}}},"
         "{\"properties\":{\"a\":{\"type\":\"integer\"}}}]}", "\"a\" a schema another branch"},
        {"{\"allOf\":[{\"properties\":{\"a\":{}},\"additionalProperties\":false},"
         "{\"properties\":{\"b\":{}}}]}", "excludes \"b\""},
        {"{\"allOf\":[{\"properties\":{\"a\":{}}},{\"anyOf\":[{}]}]}", "\"anyOf\" in \"allOf\""},
        {"{\"allOf\":[{\"type\":\"object\"},{\"type\":\"object\",\"pattern\":\"x\"}]}",
         "\"pattern\" at # cannot be enforced"},
        {"{\"allOf\":[]}", "\"allOf\" at # must be an array"},
        {"{\"type\":\"array\",\"uniqueItems\":true}", "\"uniqueItems\""},
        {"{\"type\":\"array\",\"minItems\":3,\"maxItems\":2}", "above"},
        {"{\"type\":\"array\",\"minItems\":-1}", "\"minItems\""},
        {"{\"type\":\"strin\"}", "unknown \"type\""},
        {"{\"$ref\":\"#/$defs/nope\"}", "$ref"},
        {"{\"type\":\"object\",\"properties\":{},\"required\":[\"z\"]}", "required"},
        {"{\"enum\":[]}", "no values"},
        {"[1]", "not an object"},
        /* constraints beside $ref / const / enum / anyOf: refused, never dropped */
        {"{\"$defs\":{\"a\":{\"type\":\"integer\"}},\"$ref\":\"#/$defs/a\",\"type\":\"string\"}",
         "\"$ref\" with constraints beside it at #: branch 0 is not an object"},
        {"{\"type\":\"array\",\"minItems\":2,\"enum\":[[1]]}", "beside \"enum\""},
        {"{\"type\":\"object\",\"additionalProperties\":false,\"const\":{\"z\":1}}",
         "beside \"const\""},
        {"{\"anyOf\":[{\"type\":\"object\"}],\"required\":[\"a\"],\"properties\":{\"a\":{}}}",
         "beside \"anyOf\""},
        {"{\"type\":\"integer\",\"const\":\"abc\"}", "does not have the \"type\""},
        {"{\"type\":\"string\",\"enum\":[1,2,3]}", "no value of \"enum\""},
        {"{\"enum\":[1e400]}", "out of range"},
        {"{\"const\":{\"a\":[-1e400]}}", "out of range"},
        {"{\"type\":\"object\",\"required\":\"a\"}", "not an array"},
        {"{\"$ref\":\"#\"}", "cycle"},
        {"false", "is false"},
        /* 17 nested two-branch anyOfs: the automaton would give every reading up mid-value */
        {"{\"anyOf\":[{\"type\":\"null\"},{\"anyOf\":[{\"type\":\"null\"},{\"anyOf\":[{\"type\":"
         "\"null\"},{\"anyOf\":[{\"type\":\"null\"},{\"anyOf\":[{\"type\":\"null\"},{\"anyOf\":[{"
         "\"type\":\"null\"},{\"anyOf\":[{\"type\":\"null\"},{\"anyOf\":[{\"type\":\"null\"},{"
         "\"anyOf\":[{\"type\":\"null\"},{\"anyOf\":[{\"type\":\"null\"},{\"anyOf\":[{\"type\":"
         "\"null\"},{\"anyOf\":[{\"type\":\"null\"},{\"anyOf\":[{\"type\":\"null\"},{\"anyOf\":[{"
         "\"type\":\"null\"},{\"anyOf\":[{\"type\":\"null\"},{\"anyOf\":[{\"type\":\"null\"},{"
         "\"anyOf\":[{\"type\":\"null\"},{\"type\":\"integer\"}]}]}]}]}]}]}]}]}]}]}]}]}]}]}]}]}]}",
         "nested 17 levels"},
        {"{\"properties\":{\"a\":false},\"required\":[\"a\"]}", "schema is false"},
        {"{\"type\":\"array\",\"items\":false,\"minItems\":1}", "above"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        eng_grammar *g = NULL;
        eng_err err = {0};
        int rc = eng_grammar_compile_schema(&g, cases[i].schema, strlen(cases[i].schema), &err);
        CHECK(rc != 0 && !g && strstr(err.msg, cases[i].word), "%s -> rc %d \"%s\"",
              cases[i].schema, rc, err.msg);
        eng_grammar_free(g);
    }
}

/* The cached mask equals the per-token check, step after step along a document. */
static const char k_mask_schema[] =
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"
    "\"n\":{\"type\":\"number\"},\"e\":{\"enum\":[\"on\",\"off\"]},"
    "\"l\":{\"type\":\"array\",\"items\":{\"anyOf\":[{\"type\":\"integer\"},"
    "{\"type\":\"boolean\"}]}}},\"required\":[\"name\",\"n\"]}";
static const char k_mask_doc[] =
    "{\"name\": \"Bob\\\"s \xc3\xa9\", \"l\": [1, true], \"n\": 2.5e3, \"e\": \"on\"}";
/* limited strings (a maxLength short enough to take the trie walk, and one long enough to
 * start on the fast path) and ranged integers */
static const char k_mask_schema_lim[] =
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"minLength\":3,"
    "\"maxLength\":9},\"bio\":{\"type\":\"string\",\"maxLength\":40},\"age\":{\"type\":"
    "\"integer\",\"minimum\":18,\"maximum\":130},\"t\":{\"type\":\"integer\",\"minimum\":-40,"
    "\"exclusiveMaximum\":-3}},\"required\":[\"name\",\"age\"]}";
static const char k_mask_doc_lim[] =
    "{\"name\": \"B\\u00e9\\\"s \xc3\xa9\", \"bio\": \"A longer text that nearly fills it.\", "
    "\"age\": 42, \"t\": -12}";

static void mask_matches_brute_force(const eng_gvocab *v, const eng_tokenizer *tok, int vocab,
                                     const char *sch, const char *doc)
{
    eng_grammar *g = schema(sch);
    CHECK(g, "schema compiles");
    if (!g) return;
    eng_gmatch *m = NULL;
    CHECK(eng_gmatch_new(&m, g, v, NULL) == 0, "matcher");
    eng_gmatch *c = NULL;
    CHECK(eng_gmatch_new(&c, g, v, NULL) == 0, "matcher");
    int eos = eng_gvocab_eos(v), bad = 0, checked = 0;
    size_t len = strlen(doc);
    for (size_t pos = 0; pos <= len && m && c; pos++) {
        if (pos % 4 == 0 || pos == len) {   /* not every position: the check is slow */
            const uint32_t *mask = eng_gmatch_mask(m);
            for (int t = 0; t < vocab; t++) {
                int in = mask[t >> 5] >> (t & 31) & 1, want;
                if (t == eos) {
                    want = eng_gmatch_can_end(m);
                } else if (eng_tokenizer_is_special(tok, t)) {
                    want = 0;
                } else {
                    char b[300];
                    size_t n = eng_tokenizer_token_bytes(tok, -1, t, b, sizeof b);
                    eng_gmatch_reset(c);
                    eng_gmatch_accept_bytes(c, doc, pos);
                    want = n > 0 && eng_gmatch_accept_bytes(c, b, n) == 0;
                }
                if (in != want && bad++ < 5)
                    fprintf(stderr, "FAIL at byte %zu token %d (%s): mask %d, check %d\n", pos,
                            t, eng_tokenizer_piece(tok, t), in, want);
                checked++;
            }
        }
        if (pos < len)
            CHECK(eng_gmatch_accept_bytes(m, doc + pos, 1) == 0, "byte %zu accepted", pos);
    }
    CHECK(eng_gmatch_can_end(m), "document complete");
    eng_gmatch_free(c);
    CHECK(bad == 0, "%d of %d mask bits differ", bad, checked);
    printf("mask check: %d token x position pairs (vocab %d), %d differ\n", checked, vocab, bad);
    eng_gmatch_free(m);
    eng_grammar_free(g);
}

int main(void)
{
    (void)g_dummy;
    const char *shared = getenv("CLAQ_SHARED");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/small-lm-5m", shared ? shared : "/work/shared");
    eng_model *mdl = NULL;
    eng_tokenizer *tok = NULL;
    eng_gvocab *v = NULL;
    eng_err err = {0};
    if (eng_model_open(&mdl, dir, &err) || eng_model_open_tokenizer(mdl, NULL, &tok, &err)) {
        fprintf(stderr, "skip: %s\n", err.msg);
        eng_model_close(mdl);
        return 77;
    }
    int vocab = mdl->cfg.vocab_size;
    CHECK(eng_gvocab_build(&v, tok, vocab, -1, &err) == 0, "gvocab: %s", err.msg);
    if (v) {
        bytes_cases(v);
        rejects_keywords();
        keyword_cases(v);
        mask_matches_brute_force(v, tok, vocab, k_mask_schema, k_mask_doc);
        mask_matches_brute_force(v, tok, vocab, k_mask_schema_lim, k_mask_doc_lim);
    }
    /* the LLaMA-2 SentencePiece vocabulary (32000 pieces, byte fallback) */
    char tpath[1100];
    snprintf(tpath, sizeof tpath, "%s/models/tokenizer.model", shared ? shared : "/work/shared");
    eng_tokenizer *t32 = NULL;
    eng_gvocab *v32 = NULL;
    if (eng_tokenizer_open(&t32, tpath, 0, &err) == 0) {
        int n32 = eng_tokenizer_vocab_size(t32);
        CHECK(eng_gvocab_build(&v32, t32, n32, -1, &err) == 0, "gvocab 32k: %s", err.msg);
        if (v32) {
            mask_matches_brute_force(v32, t32, n32, k_mask_schema, k_mask_doc);
            mask_matches_brute_force(v32, t32, n32, k_mask_schema_lim, k_mask_doc_lim);
        }
    } else {
        printf("no %s: 32k check skipped\n", tpath);
    }
    eng_gvocab_free(v32);
    eng_tokenizer_close(t32);
    eng_gvocab_free(v);
    eng_tokenizer_close(tok);
    eng_model_close(mdl);
    if (g_fail) fprintf(stderr, "%d failures\n", g_fail);
    else printf("ok\n");
    return g_fail ? 1 : 0;
}
