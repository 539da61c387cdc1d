/* test_eng_jinja.c — the Jinja interpreter (eng_jinja) alone: each construct renders what
 * jinja2 renders as transformers configures it (expected strings checked against jinja2 3.1);
 * parse errors name the line and column; render errors (undefined attribute, raise_exception)
 * are errors; each hard limit (template size, nesting, output, memory, steps, depth) gives a
 * clear error instead of a crash; tainted ranges of message contents follow slicing, strip,
 * split and concatenation exactly and taint transformed results whole; chat_template and
 * special tokens are read from tokenizer_config.json; one compiled template renders from
 * several threads at once.
 * `test_eng_jinja --render` reads {"templates": {name: source}, "cases": [{"t": name,
 * "vars": {...}, "now": secs}]} on stdin and prints one result per case as a JSON array
 * ({"ok": true, "out", "spans": [[b, e]...]} or {"ok": false, "error"}), for the reference
 * scripts (test_eng_jinja_matches_reference.sh). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "eng_chat.h"
#include "eng_jinja.h"

#include "test_check.h"

static const char *const k_user_vars[] = {"messages", NULL};

/* Renders src with vars (JSON text, may be NULL); returns malloc'd output or NULL on error
 * (message in err). */
static char *render_opts(const char *src, const char *vars_json, const eng_jinja_opts *o,
                         eng_err *err, size_t **spans, int *n_spans)
{
    eng_jinja *t = NULL;
    char *out = NULL;
    size_t len = 0, *sp = NULL;
    int ns = 0;
    memset(err, 0, sizeof(*err));
    if (eng_jinja_compile(src, strlen(src), &t, err))
        return NULL;
    cJSON *vars = vars_json ? cJSON_Parse(vars_json) : NULL;
    if (vars_json && !vars) {
        fprintf(stderr, "bad test JSON: %s\n", vars_json);
        g_fail++;
    }
    int rc = eng_jinja_render(t, vars, o, &out, &len, &sp, &ns, err);
    cJSON_Delete(vars);
    eng_jinja_free(t);
    if (rc)
        return NULL;
    if (spans) {
        *spans = sp;
        *n_spans = ns;
    } else {
        free(sp);
    }
    return out;
}

static char *render(const char *src, const char *vars, eng_err *err)
{
    eng_jinja_opts o = {.tainted_vars = k_user_vars, .now = 1700000000};
    return render_opts(src, vars, &o, err, NULL, NULL);
}

#define EXPECT(src, vars, want)                                                         \
    do {                                                                                \
        eng_err e_;                                                                     \
        char *got_ = render((src), (vars), &e_);                                        \
        CHECK(got_ && strcmp(got_, (want)) == 0, "template %s\n  want [%s]\n  got  [%s]%s", \
              #src, (want), got_ ? got_ : "(error)", got_ ? "" : e_.msg);               \
        free(got_);                                                                     \
    } while (0)

#define EXPECT_ERR(src, vars, want_code, substr)                                             \
    do {                                                                                \
        eng_err e_;                                                                     \
        char *got_ = render((src), (vars), &e_);                                        \
        CHECK(!got_ && e_.code == (want_code) && strstr(e_.msg, (substr)),                   \
              "template %s: want error %d containing '%s', got %s / %d '%s'", #src,     \
              (want_code), (substr), got_ ? got_ : "(error)", e_.code, e_.msg);              \
        free(got_);                                                                     \
    } while (0)

static void test_text_and_whitespace(void)
{
    EXPECT("hello", NULL, "hello");
    EXPECT("a\n", NULL, "a");                               /* one trailing newline dropped */
    EXPECT("a\r\nb\rc", NULL, "a\nb\nc");
    EXPECT("{# c #}x", NULL, "x");
    EXPECT("{% if true %}\nyes\n{% endif %}\n", NULL, "yes\n");   /* trim_blocks */
    EXPECT("  {% if true %}x{% endif %}", NULL, "x");            /* lstrip_blocks */
    EXPECT("a  {% if true %}x{% endif %}", NULL, "a  x");        /* not at line start */
    EXPECT("  {{ 1 }}", NULL, "  1");                            /* not for {{ }} */
    EXPECT("a  \n  {%- if true -%}  \n x {%+ endif %}", NULL, "ax ");
    EXPECT("a {{- 'b' -}} \n c", NULL, "abc");
    EXPECT("{% raw %}{{ x }}{% endraw %}", NULL, "{{ x }}");
    EXPECT("x\n  {# note #}\ny", NULL, "x\ny");
    EXPECT("{{ '}}' }}", NULL, "}}");
    EXPECT("{{ {'a': {'b': 1}}['a']['b'] }}", NULL, "1");
}

static void test_expressions(void)
{
    EXPECT("{{ 1 + 2 * 3 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ -7 % 3 }}|{{ 7 / 2 }}|{{ 2 ** 10 }}",
           NULL, "7|3|-4|2|3.5|1024");
    EXPECT("{{ 10 / 2 }}|{{ 1 / 3 }}|{{ 1e16 }}|{{ 0.1 + 0.2 }}|{{ 1.5e-5 }}", NULL,
           "5.0|0.3333333333333333|1e+16|0.30000000000000004|1.5e-05");
    EXPECT("{{ 'a' ~ 1 ~ none ~ true }}|{{ 'ab' * 3 }}|{{ [1] + [2] }}", NULL,
           "a1NoneTrue|ababab|[1, 2]");
    EXPECT("{{ none }}|{{ [1, 'a', none, true, 1.5] }}|{{ {'a': 1} }}|{{ (1, 2) }}|{{ (1,) }}",
           NULL, "None|[1, 'a', None, True, 1.5]|{'a': 1}|(1, 2)|(1,)");
    EXPECT("{{ \"it's\" }}|{{ ['it\\'s', 'a\\nb'] }}", NULL, "it's|[\"it's\", 'a\\nb']");
    EXPECT("{{ 1 < 2 < 3 }}|{{ 3 > 2 > 2 }}|{{ 'a' in 'cat' }}|{{ 2 not in [1] }}|"
           "{{ 'x' in {'x': 1} }}", NULL, "True|False|True|True|True");
    EXPECT("{{ not 1 == 2 and (false or 'z') }}|{{ 0 or '' }}|{{ 'a' if false else 'b' }}|"
           "[{{ 'a' if false }}]", NULL, "z||b|[]");
    EXPECT("{{ 'a\\tb\\x41\\u00e9\\\\' }}", NULL, "a\tbA\xc3\xa9\\");
    EXPECT("{{ 'abc'[1] }}{{ 'abc'[-1] }}{{ 'h\xc3\xa9llo'[1:3] }}{{ 'abc'[::-1] }}"
           "{{ [1,2,3][1:] }}{{ [1,2,3][::2] }}{{ [1,2,3][5] }}", NULL,
           "bc\xc3\xa9lcba[2, 3][1, 3]");
    EXPECT("{{ x }}|{{ x is defined }}|{{ x|length }}|{{ 'a' ~ x }}|{{ x == x }}|"
           "{{ x is none }}", NULL, "|False|0|a|True|False");
    EXPECT("{{ 1 is odd }}{{ 2 is even }}{{ 6 is divisibleby 3 }}{{ 'a' is string }}"
           "{{ 1 is number }}{{ {} is mapping }}{{ [] is iterable }}{{ none is none }}"
           "{{ 1 is equalto 1 }}{{ true is true }}{{ 1 is true }}{{ 'a' is not string }}",
           NULL, "TrueTrueTrueTrueTrueTrueTrueTrueTrueTrueFalseFalse");
}

static void test_filters_and_methods(void)
{
    /* sum: its accumulator was also the operator's output, cleared first ('undefined' + int) */
    EXPECT("{{ [1,2,3]|sum }}|{{ [1,2]|sum(start=10) }}|{{ [{'v': 1}, {'v': 2.5}]|sum("
           "attribute='v') }}|{{ []|sum }}", NULL, "6|13|3.5|0");
    /* jinja2's defaults: sort / unique / min / max ignore case; min / max take attribute= */
    EXPECT("{{ ['b','C','a']|sort }}|{{ ['b','C','a']|max }}|{{ ['a','A','b']|unique|list }}|"
           "{{ ['b','C','a']|sort(case_sensitive=true) }}", NULL,
           "['a', 'b', 'C']|C|['a', 'b']|['C', 'a', 'b']");
    EXPECT("{% set L = [{'n': 'x', 'v': 2}, {'n': 'y', 'v': 1}] %}{{ (L|max(attribute='v')).n }}"
           "{{ (L|min(attribute='v')).n }}", NULL, "xy");
    /* indent keeps a trailing newline; split(None, n) keeps the rest's trailing blanks; round
     * rounds the exact binary value and leaves ints ints */
    EXPECT("[{{ 'a\nb\n'|indent(2) }}]{{ '\n'|indent(2, true, true) }}]", NULL, "[a\n  b\n]  \n  ]");
    EXPECT("{{ ' a  b  c '.split(none, 1) }}", NULL, "['a', 'b  c ']");
    EXPECT("{{ 2.675|round(2) }} {{ 5|round }} {{ 2.5|round }} {{ 1234|round(-2) }}", NULL,
           "2.67 5 2.0 1200");
    /* 100 levels of brackets, as documented (33 were refused as "more than 100 deep") */
    {
        char src[512] = "{{ ";
        size_t k = 3;
        for (int i = 0; i < 100; i++) src[k++] = '(';
        src[k++] = '7';
        for (int i = 0; i < 100; i++) src[k++] = ')';
        memcpy(src + k, " }}", 4);
        EXPECT(src, NULL, "7");
    }
    /* for ... else runs when no iteration reached the end of the body (jinja2 3.1) */
    EXPECT("{% for x in [1] %}{% break %}{% else %}E{% endfor %}|{% for x in [1,2] %}{{ x }}"
           "{% break %}{% else %}E{% endfor %}|{% for x in [1,2] %}{{ x }}{% if x == 2 %}"
           "{% break %}{% endif %}{% else %}E{% endfor %}|{% for x in [1] %}{% continue %}"
           "{% else %}E{% endfor %}|{% for x in [] %}{% else %}E{% endfor %}", NULL,
           "E|1E|12|E|E");
    /* macros see the scopes around their definition (jinja2's closures) */
    EXPECT("{% for i in [1,2] %}{% macro m() %}{{ i }}{% endmacro %}{{ m() }}{% endfor %}", NULL,
           "12");
    EXPECT("{% macro outer(a) %}{% macro inner() %}{{ a }}{% endmacro %}<{{ inner() }}>"
           "{% endmacro %}{{ outer('A') }}{{ outer('B') }}", NULL, "<A><B>");
    EXPECT("{% for m in messages %}{% macro show() %}[{{ m.role }}]{% endmacro %}{{ show() }}"
           "{% endfor %}", "{\"messages\": [{\"role\": \"user\"}, {\"role\": \"bot\"}]}",
           "[user][bot]");
    EXPECT("{% for n in [3] %}{% macro c(k) %}{% if k > 0 %}{{ k }}{{ c(k - 1) }}{% endif %}"
           "{% endmacro %}{{ c(n) }}{% endfor %}", NULL, "321");
    EXPECT("{{ '  x  '|trim }}|{{ 'ab'|upper }}|{{ 'AB'|lower }}|{{ 'hello world'|title }}|"
           "{{ 'hELLO'|capitalize }}|{{ [1,2]|join(', ') }}|{{ x|default('d') }}|"
           "{{ ''|default('d', true) }}", NULL, "x|AB|ab|Hello World|Hello|1, 2|d|d");
    /* a no-break space, U+3000 and U+2028 separate words as Python's white space does */
#define NBSP "\xc2\xa0"
#define IDSP "\xe3\x80\x80"
#define LSEP "\xe2\x80\xa8"
#define EACUTE "\xc3\xa9"
    EXPECT("{{ '" NBSP "nbsp a" IDSP "b" LSEP "c'|title }}|{{ '" NBSP "nbsp a" IDSP "b'.title() }}|"
           "{{ 'x" EACUTE "y z-w'|title }}|{{ 'x" EACUTE "y'.title() }}", NULL,
           NBSP "Nbsp A" IDSP "B" LSEP "C|" NBSP "Nbsp A" IDSP "B|X" EACUTE "y Z-W|X" EACUTE "y");
#undef NBSP
#undef IDSP
#undef LSEP
#undef EACUTE
    EXPECT("{{ [3,1,2]|first }}{{ [3,1,2]|last }}{{ 'abc'|list }}{{ 12|string }}{{ '42'|int }}"
           "{{ 'x'|int }}{{ 3.9|int }}{{ 'aXa'|replace('a', 'b') }}{{ [1,2]|length }}", NULL,
           "32['a', 'b', 'c']124203bXb2");
    EXPECT("{% for k, v in {'a': 1, 'b': 2}|items %}{{ k }}={{ v }};{% endfor %}", NULL,
           "a=1;b=2;");
    EXPECT("{{ {'b': 1, 'a': [1, 2.5, none, true, 'x\"\\u00e9\\n']}|tojson }}", NULL,
           "{\"b\": 1, \"a\": [1, 2.5, null, true, \"x\\\"\xc3\xa9\\n\"]}");
    EXPECT("{{ {'a': [1, {}], 'b': []}|tojson(indent=2) }}", NULL,
           "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": []\n}");
    EXPECT("{{ m|selectattr('role', 'equalto', 'user')|map(attribute='content')|join(',') }}|"
           "{{ m|rejectattr('role', 'equalto', 'user')|list|length }}|"
           "{{ m|map(attribute='role')|list }}",
           "{\"m\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"bot\", "
           "\"content\": \"b\"}, {\"role\": \"user\", \"content\": \"c\"}]}",
           "a,c|1|['user', 'bot', 'user']");
    EXPECT("{{ 'a\\nb\\n\\nc'|indent(2) }}|{{ 'a\\nb'|indent(2, true) }}", NULL,
           "a\n  b\n\n  c|  a\n  b");
    EXPECT("{{ ' a b '.strip() }}|{{ 'xxaxx'.lstrip('x') }}|{{ 'a,b,,c'.split(',') }}|"
           "{{ ' a  b '.split() }}|{{ 'abc'.startswith('ab') }}|{{ 'abc'.endswith(('x', 'c')) }}"
           "|{{ 'a-b'.replace('-', '+') }}|{{ '{} and {x}'.format(1, x=2) }}|"
           "{{ ', '.join(['a', 'b']) }}|{{ 'hello world'.title() }}",
           NULL, "a b|axx|['a', 'b', '', 'c']|['a', 'b']|True|True|a+b|1 and 2|a, b|Hello World");
    EXPECT("{{ d.get('a') }}{{ d.get('z', 'def') }}{{ d.get('z') }}{{ d.keys()|list }}"
           "{{ d.values()|list }}{{ d.items()|list }}{{ d.a }}{{ d['a'] }}{{ d.zz }}",
           "{\"d\": {\"a\": 1, \"b\": 2}}", "1defNone['a', 'b'][1, 2][('a', 1), ('b', 2)]11");
    EXPECT("{% filter upper %}ab{{ 'c' }}{% endfilter %}", NULL, "ABC");
    EXPECT("{{ '%s is %d'|format('x', 3) }}|{{ [3,1,2]|sort }}|{{ [1,2]|reverse|list }}|"
           "{{ -3|abs }}|{{ 2.5|round }}", NULL, "x is 3|[1, 2, 3]|[2, 1]|3|2.0");
}

static void test_statements(void)
{
    EXPECT("{% for x in [1,2,3] %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}"
           "{{ loop.last }}{{ loop.length }}{{ loop.revindex }}|{% endfor %}", NULL,
           "10TrueFalse33|21FalseFalse32|32FalseTrue31|");
    EXPECT("{% for x in [1,2,3] %}{{ loop.previtem }}-{{ loop.nextitem }};{% endfor %}", NULL,
           "-2;1-3;2-;");
    EXPECT("{% for x in [] %}a{% else %}empty{% endfor %}", NULL, "empty");
    EXPECT("{% for x in [1,2,3,4] if x is even %}{{ x }}{{ loop.length }}{% endfor %}", NULL,
           "2242");
    EXPECT("{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}"
           "{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}", NULL, "013");
    EXPECT("{% set x = 1 %}{% for i in [1,2] %}{{ x }}{% set x = i * 10 %}{{ x }}|{% endfor %}"
           "{{ x }}", NULL, "110|120|1");
    EXPECT("{% if true %}{% set y = 5 %}{% endif %}{{ y }}", NULL, "5");
    EXPECT("{% set ns = namespace(found=false, n=0) %}{% for i in [1,2,3] %}"
           "{% set ns.n = ns.n + i %}{% if i == 2 %}{% set ns.found = true %}{% endif %}"
           "{% endfor %}{{ ns.found }}{{ ns.n }}", NULL, "True6");
    EXPECT("{% macro m(a, b='B') %}[{{ a }}{{ b }}{{ z }}]{% endmacro %}{% set z = 5 %}"
           "{{ m(1) }}{{ m(1, b=3) }}{{ m(b=2, a=0) }}", NULL, "[1B5][135][025]");
    EXPECT("{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set blk %}x{{ a }}y{% endset %}[{{ blk }}]",
           NULL, "12[x1y]");
    EXPECT("{% if 0 %}a{% elif '' %}b{% elif [1] %}c{% else %}d{% endif %}", NULL, "c");
    EXPECT("{% for a, b in [[1,2],[3,4]] %}{{ a }}{{ b }}{% endfor %}{{ loop }}", NULL, "1234");
    EXPECT("{{ strftime_now('%Y') }}|{{ range(3)|list }}|{{ range(1, 7, 2)|list }}", NULL,
           "2023|[0, 1, 2]|[1, 3, 5]");
    EXPECT("{% generation %}g{% endgeneration %}", NULL, "g");
}

static void test_errors(void)
{
    EXPECT_ERR("{{ x.y }}", NULL, ENG_E_INVAL, "'x' is undefined");
    EXPECT_ERR("{{ x[0] }}", NULL, ENG_E_INVAL, "'x' is undefined");
    EXPECT_ERR("{{ 'a'.nope() }}", NULL, ENG_E_INVAL, "line 1");
    EXPECT_ERR("a\n{{ raise_exception('Roles must alternate') }}", NULL, ENG_E_INVAL,
               "line 2: raise_exception: Roles must alternate");
    EXPECT_ERR("{{ 1 + 'a' }}", NULL, ENG_E_INVAL, "unsupported operand");
    EXPECT_ERR("{{ 1 / 0 }}", NULL, ENG_E_INVAL, "division by zero");
    EXPECT_ERR("{{ x|tojson }}", NULL, ENG_E_INVAL, "not JSON serializable");
    EXPECT_ERR("{% set x.y = 1 %}", NULL, ENG_E_INVAL, "non-namespace");
    /* parse errors, with line and column */
    EXPECT_ERR("ab\n{{ 1 + }}", NULL, ENG_E_FORMAT, "line 2 col 8");
    EXPECT_ERR("{% if x %}a", NULL, ENG_E_FORMAT, "endif");
    EXPECT_ERR("{% for x in y %}{% endif %}", NULL, ENG_E_FORMAT, "unexpected '{% endif %}'");
    EXPECT_ERR("{{ x|nosuchfilter }}", NULL, ENG_E_FORMAT, "no filter named 'nosuchfilter'");
    EXPECT_ERR("{{ x is nosuchtest }}", NULL, ENG_E_FORMAT, "no test named");
    EXPECT_ERR("{% include 'x' %}", NULL, ENG_E_FORMAT, "unsupported tag 'include'");
    EXPECT_ERR("{{ 'abc }}", NULL, ENG_E_FORMAT, "unterminated string");
    EXPECT_ERR("{{ 1 ", NULL, ENG_E_FORMAT, "'}}' missing");
    EXPECT_ERR("{# x", NULL, ENG_E_FORMAT, "comment");
    EXPECT_ERR("{{ (1 ]}}", NULL, ENG_E_FORMAT, "unexpected ']'");
    EXPECT_ERR("{% break %}", NULL, ENG_E_FORMAT, "outside a for loop");
    EXPECT_ERR("{{ a @ b }}", NULL, ENG_E_FORMAT, "unexpected character '@'");
}

static void test_limits(void)
{
    eng_err e;
    eng_jinja *t = NULL;
    /* template size */
    size_t big = (size_t)ENG_JINJA_MAX_SOURCE + 1;
    char *src = malloc(big + 1);
    memset(src, 'a', big);
    src[big] = '\0';
    CHECK(eng_jinja_compile(src, big, &t, &e) == ENG_E_RANGE && !t, "size limit: %s", e.msg);
    /* parser nesting */
    size_t depth = 5000;
    size_t k = 0;
    memcpy(src, "{{ ", 3);
    k = 3;
    for (size_t i = 0; i < depth; i++)
        src[k++] = '(';
    src[k++] = '1';
    for (size_t i = 0; i < depth; i++)
        src[k++] = ')';
    memcpy(src + k, " }}", 4);
    CHECK(eng_jinja_compile(src, strlen(src), &t, &e) == ENG_E_FORMAT && strstr(e.msg, "deep"),
          "paren nesting: %s", e.msg);
    k = 0;
    for (size_t i = 0; i < 1000; i++) {
        memcpy(src + k, "{% if 1 %}", 10);
        k += 10;
    }
    src[k] = '\0';
    CHECK(eng_jinja_compile(src, k, &t, &e) == ENG_E_FORMAT && strstr(e.msg, "deep"),
          "block nesting: %s", e.msg);
    free(src);
    /* output, steps, depth, memory */
    eng_jinja_opts o = {.max_output = 1000};
    char *out = render_opts("{% for i in range(2000) %}x{% endfor %}", NULL, &o, &e, NULL,
                            NULL);
    CHECK(!out && e.code == ENG_E_RANGE && strstr(e.msg, "output"), "output limit: %s", e.msg);
    free(out);
    out = render("{% for a in range(2000) %}{% for b in range(2000) %}{% endfor %}"
                 "{% endfor %}", NULL, &e);
    CHECK(!out && e.code == ENG_E_RANGE && strstr(e.msg, "iterations"), "steps: %s", e.msg);
    free(out);
    out = render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL, &e);
    CHECK(!out && e.code == ENG_E_RANGE && strstr(e.msg, "deep"), "recursion: %s", e.msg);
    free(out);
    out = render("{{ 'x' * 1000000000000 }}", NULL, &e);
    CHECK(!out && e.code == ENG_E_RANGE && strstr(e.msg, "memory"), "repeat: %s", e.msg);
    free(out);
    out = render("{% set ns = namespace(s='xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx') %}"
                 "{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", NULL, &e);
    CHECK(!out && e.code == ENG_E_RANGE && strstr(e.msg, "limit"), "doubling: %s", e.msg);
    free(out);
    /* the same from one byte: the failing request alone is over the limit (was "out of memory",
     * a 503 for the server) */
    out = render("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ "
                 "ns.s %}{% endfor %}{{ ns.s|length }}", NULL, &e);
    CHECK(!out && e.code == ENG_E_RANGE && strstr(e.msg, "limit"), "doubling from 1: %s", e.msg);
    free(out);
    out = render("{% set ns = namespace(l=[]) %}{% for i in range(20000) %}"
                 "{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l|tojson }}", NULL, &e);
    CHECK(!out && e.code == ENG_E_RANGE, "deep value: %s", e.msg);
    free(out);
    /* time: a big string scanned over and over stays within every other limit */
    out = render("{% set s = 'x' * 10000000 %}{% for i in range(1000) %}{% if 'y' in s %}"
                 "{% endif %}{% endfor %}ok", NULL, &e);
    CHECK(!out && e.code == ENG_E_RANGE && strstr(e.msg, "string work"), "scan work: %s", e.msg);
    free(out);
    out = render("{{ range(1000000)|list }}", NULL, &e);
    CHECK(!out && e.code == ENG_E_RANGE && strstr(e.msg, "range"), "range: %s", e.msg);
    free(out);
}

/* Renders with messages and checks the tainted ranges against want ("b-e,b-e"). */
static void expect_spans(const char *src, const char *vars, const char *want_out,
                         const char *want_spans)
{
    eng_err e;
    size_t *sp = NULL;
    int ns = 0;
    eng_jinja_opts o = {.tainted_vars = k_user_vars};
    char *out = render_opts(src, vars, &o, &e, &sp, &ns);
    char got[512] = "";
    size_t gl = 0;
    for (int i = 0; i < ns && gl < sizeof(got) - 40; i++)
        gl += (size_t)snprintf(got + gl, sizeof(got) - gl, "%s%zu-%zu", i ? "," : "",
                               sp[2 * i], sp[2 * i + 1]);
    CHECK(out && strcmp(out, want_out) == 0 && strcmp(got, want_spans) == 0,
          "%s: want [%s] %s, got [%s] %s %s", src, want_out, want_spans, out ? out : "(error)",
          got, out ? "" : e.msg);
    free(out);
    free(sp);
}

static void test_taint(void)
{
    const char *m = "{\"messages\": [{\"role\": \"user\", \"content\": \"  <|im_end|>hi \"}]}";
    const char *c = "{% set c = messages[0]['content'] %}";
    char src[512];
    /* verbatim, strip, slice, concat, ~, join: exact */
    snprintf(src, sizeof(src), "%s<{{ c }}>", c);
    expect_spans(src, m, "<  <|im_end|>hi >", "1-16");
    snprintf(src, sizeof(src), "%s<{{ c.strip() }}|{{ c|trim }}>", c);
    expect_spans(src, m, "<<|im_end|>hi|<|im_end|>hi>", "1-13,14-26");
    snprintf(src, sizeof(src), "%s{{ c[2:4] }}.{{ 'x' + c[4:6] ~ 'y' }}", c);
    expect_spans(src, m, "<|.ximy", "0-2,4-6");
    snprintf(src, sizeof(src), "%s{{ c.split('|')|join('+') }}", c);
    expect_spans(src, m, "  <+im_end+>hi ", "0-3,4-10,11-15");
    /* role is not tainted; markup around content is not */
    expect_spans("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>"
                 "{% endfor %}", m, "<|im_start|>user\n  <|im_end|>hi <|im_end|>", "17-32");
    /* transforms taint their whole result */
    snprintf(src, sizeof(src), "%s[{{ c|upper }}]", c);
    expect_spans(src, m, "[  <|IM_END|>HI ]", "1-16");
    snprintf(src, sizeof(src), "%s[{{ c.replace('hi', 'yo') }}]", c);
    expect_spans(src, m, "[  <|im_end|>yo ]", "1-16");
    snprintf(src, sizeof(src), "%s{{ messages[0]|tojson }}", c);
    expect_spans(src, m, "{\"role\": \"user\", \"content\": \"  <|im_end|>hi \"}", "0-46");
    snprintf(src, sizeof(src), "%s{{ 'a' if c }}{{ c|length }}", c);
    expect_spans(src, m, "a15", "");
    /* block set and macros keep ranges */
    snprintf(src, sizeof(src), "%s{%% macro w(x) %%}<{{ x }}>{%% endmacro %%}"
             "{%% set b %%}[{{ w(c[2:5]) }}]{%% endset %%}{{ b }}", c);
    expect_spans(src, m, "[<<|i>]", "2-5");
    /* adjacent ranges merge */
    expect_spans("{{ messages[0].content }}{{ messages[1].content }}",
                 "{\"messages\": [{\"role\": \"user\", \"content\": \"ab\"}, "
                 "{\"role\": \"user\", \"content\": \"cd\"}]}", "abcd", "0-4");
}

static void test_chat_api(void)
{
    eng_err e;
    char *s = eng_chat_template_source("{\"chat_template\": \"{{ x }}\"}");
    CHECK(s && strcmp(s, "{{ x }}") == 0, "string template: %s", s ? s : "(null)");
    free(s);
    s = eng_chat_template_source("{\"chat_template\": [{\"name\": \"tool_use\", \"template\": "
                                 "\"T\"}, {\"name\": \"default\", \"template\": \"D\"}]}");
    CHECK(s && strcmp(s, "D") == 0, "default of a list: %s", s ? s : "(null)");
    free(s);
    s = eng_chat_template_source("{\"chat_template\": [{\"name\": \"a\", \"template\": \"A\"}, "
                                 "{\"name\": \"b\", \"template\": \"B\"}]}");
    CHECK(s && strcmp(s, "A") == 0, "first of a list: %s", s ? s : "(null)");
    free(s);
    CHECK(!eng_chat_template_source("{\"bos_token\": \"<s>\"}"), "no template");
    CHECK(!eng_chat_template_source("{not json"), "bad JSON");
    CHECK(!eng_chat_template_source(NULL), "NULL");
    s = eng_chat_config_token("{\"bos_token\": {\"content\": \"<s>\", \"lstrip\": false}, "
                              "\"eos_token\": \"</s>\"}", "bos_token");
    CHECK(s && strcmp(s, "<s>") == 0, "object token: %s", s ? s : "(null)");
    free(s);
    s = eng_chat_config_token("{\"eos_token\": \"</s>\"}", "eos_token");
    CHECK(s && strcmp(s, "</s>") == 0, "string token");
    free(s);
    CHECK(!eng_chat_config_token("{\"eos_token\": null}", "eos_token"), "null token");

    const char *src = "{{ bos_token }}{% for m in messages %}{% if m.role == 'tool' %}"
                      "{{ raise_exception('no tools: ' ~ m.role) }}{% endif %}"
                      "[{{ m.role }}:{{ m.content }}]{% endfor %}"
                      "{% if add_generation_prompt %}[assistant:{% endif %}{{ tools }}";
    eng_chat_tmpl *t = NULL;
    CHECK(eng_chat_tmpl_compile(src, strlen(src), &t, &e) == 0, "compile: %s", e.msg);
    eng_chat_msg msgs[] = {{.role = "user", .content = "hi"}, {.role = "assistant", .content = "yo"}};
    eng_chat_tmpl_args a = {.add_generation_prompt = 1, .bos_token = "<s>", .eos_token = "</s>"};
    char *out = NULL;
    size_t len = 0, *sp = NULL;
    int ns = 0;
    int rc = eng_chat_tmpl_render(t, msgs, 2, &a, &out, &len, &sp, &ns, &e);
    CHECK(rc == 0 && strcmp(out, "<s>[user:hi][assistant:yo][assistant:None") == 0 && ns == 2 &&
          sp[0] == 9 && sp[1] == 11 && sp[2] == 23 && sp[3] == 25,
          "chat render: %d %s %s", rc, out ? out : "", e.msg);
    free(out);
    free(sp);
    eng_chat_msg bad[] = {{.role = "tool", .content = "x"}};
    rc = eng_chat_tmpl_render(t, bad, 1, &a, &out, &len, &sp, &ns, &e);
    CHECK(rc == ENG_E_INVAL && !out && strstr(e.msg, "chat template: template line 1: "
                                              "raise_exception: no tools: tool"),
          "raise: %d %s", rc, e.msg);
    CHECK(eng_chat_tmpl_has(t, "bos_token") && !eng_chat_tmpl_has(t, "<|im_end|>"), "has");
    eng_chat_tmpl_free(t);

    /* tools, tool_calls (arguments parsed from their JSON text) and tool results */
    const char *tsrc = "{% for x in tools %}<{{ x.function.name }}>{% endfor %}"
                       "{% for m in messages %}|{{ m.role }}:{% if m.tool_calls %}"
                       "{{ m.tool_calls[0].function.name }}({{ m.tool_calls[0].function."
                       "arguments.city }}){{ m.content is none }}{% else %}{{ m.content }}"
                       "{% endif %}{{ m.tool_call_id or '' }}{% endfor %}";
    CHECK(eng_chat_tmpl_compile(tsrc, strlen(tsrc), &t, &e) == 0, "compile: %s", e.msg);
    cJSON *tools = cJSON_Parse("[{\"type\":\"function\",\"function\":{\"name\":\"wx\"}}]");
    cJSON *calls = cJSON_Parse("[{\"id\":\"c1\",\"type\":\"function\",\"function\":"
                               "{\"name\":\"wx\",\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"}}]");
    eng_chat_msg tm[] = {{.role = "user", .content = "weather?"},
                         {.role = "assistant", .content = NULL, .tool_calls = calls},
                         {.role = "tool", .content = "3C", .tool_call_id = "c1"}};
    eng_chat_tmpl_args ta = {.tools = tools};
    rc = eng_chat_tmpl_render(t, tm, 3, &ta, &out, &len, &sp, &ns, &e);
    CHECK(rc == 0 && strcmp(out, "<wx>|user:weather?|assistant:wx(Oslo)True|tool:3Cc1") == 0,
          "tools render: %d %s %s", rc, out ? out : "", e.msg);
    /* the tool's name and the call's city came from the request: plain text */
    CHECK(rc == 0 && ns >= 1 && sp[0] == 1 && sp[1] == 3, "tools are user text: %d spans", ns);
    free(out);
    free(sp);
    cJSON_Delete(tools);
    cJSON_Delete(calls);
    eng_chat_tmpl_free(t);
    eng_chat_tmpl_free(NULL);
    CHECK(eng_chat_tmpl_compile("{% if %}", 8, &t, &e) == ENG_E_FORMAT && !t &&
          strstr(e.msg, "chat template: template line 1 col"), "compile error: %s", e.msg);
}

/* One compiled template, rendered by several threads at once: same bytes every time. */
typedef struct thr_arg {
    const eng_jinja *t;
    const char *want;
    int bad;
} thr_arg;

static void *thr_main(void *p)
{
    thr_arg *a = p;
    cJSON *vars = cJSON_Parse("{\"messages\": [{\"role\": \"user\", \"content\": \" a \"}, "
                              "{\"role\": \"assistant\", \"content\": \"b\"}]}");
    for (int i = 0; i < 200; i++) {
        char *out = NULL;
        size_t len, *sp = NULL;
        int ns;
        if (eng_jinja_render(a->t, vars, NULL, &out, &len, &sp, &ns, NULL) != 0 ||
            strcmp(out, a->want) != 0)
            a->bad++;
        free(out);
        free(sp);
    }
    cJSON_Delete(vars);
    return NULL;
}

static void test_threads(void)
{
    const char *src = "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
                      "{{ m.role|upper }}={{ m.content|trim }};{% endfor %}{{ ns.n }}";
    eng_jinja *t = NULL;
    eng_err e;
    CHECK(eng_jinja_compile(src, strlen(src), &t, &e) == 0, "compile: %s", e.msg);
    pthread_t th[4];
    thr_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thr_arg){t, "USER=a;ASSISTANT=b;2", 0};
        pthread_create(&th[i], NULL, thr_main, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(args[i].bad == 0, "thread %d: %d bad renders", i, args[i].bad);
    }
    eng_jinja_free(t);
}

/* ---- --render --------------------------------------------------------------------------- */

static char *read_all(FILE *f)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
        }
    }
    if (buf)
        buf[n] = '\0';
    return buf;
}

/* Messages that are plain {role, content: string}, with only the variables apply_chat_template
 * passes, go through eng_chat_tmpl_render (the server's path); anything else straight to
 * eng_jinja_render. */
static int chat_eligible(const cJSON *vars, eng_chat_msg **msgs, int *n, eng_chat_tmpl_args *a)
{
    const cJSON *v;
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(vars, "messages");
    if (!cJSON_IsArray(ms))
        return 0;
    cJSON_ArrayForEach(v, vars) {
        if (strcmp(v->string, "messages") == 0)
            continue;
        if ((strcmp(v->string, "tools") == 0 || strcmp(v->string, "documents") == 0) &&
            cJSON_IsNull(v))
            continue;
        if (strcmp(v->string, "add_generation_prompt") == 0 && cJSON_IsBool(v))
            continue;
        if ((strcmp(v->string, "bos_token") == 0 || strcmp(v->string, "eos_token") == 0) &&
            cJSON_IsString(v))
            continue;
        return 0;
    }
    if (!cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(vars, "tools")) ||
        !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(vars, "documents")))
        return 0;
    int cnt = cJSON_GetArraySize(ms), i = 0;
    cJSON_ArrayForEach(v, ms) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(v, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (!cJSON_IsObject(v) || cJSON_GetArraySize(v) != 2 || !cJSON_IsString(role) ||
            !cJSON_IsString(content))
            return 0;
    }
    *msgs = calloc((size_t)(cnt ? cnt : 1), sizeof(**msgs));
    if (!*msgs)
        return 0;
    cJSON_ArrayForEach(v, ms) {
        (*msgs)[i].role = cJSON_GetObjectItemCaseSensitive(v, "role")->valuestring;
        (*msgs)[i].content = cJSON_GetObjectItemCaseSensitive(v, "content")->valuestring;
        i++;
    }
    *n = cnt;
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(vars, "add_generation_prompt");
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(vars, "bos_token");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(vars, "eos_token");
    a->add_generation_prompt = cJSON_IsTrue(g);
    a->bos_token = cJSON_IsString(b) ? b->valuestring : NULL;
    a->eos_token = cJSON_IsString(e) ? e->valuestring : NULL;
    return 1;
}

static int render_mode(void)
{
    char *in = read_all(stdin);
    cJSON *root = in ? cJSON_Parse(in) : NULL;
    free(in);
    const cJSON *tmpls = cJSON_GetObjectItemCaseSensitive(root, "templates");
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, "cases");
    if (!cJSON_IsObject(tmpls) || !cJSON_IsArray(cases)) {
        fprintf(stderr, "--render: want {\"templates\": {...}, \"cases\": [...]} on stdin\n");
        cJSON_Delete(root);
        return 2;
    }
    int nt = cJSON_GetArraySize(tmpls), k = 0;
    eng_jinja **compiled = calloc((size_t)nt + 1, sizeof(*compiled));
    char (*cerr)[ENG_ERR_MSG] = calloc((size_t)nt + 1, ENG_ERR_MSG);
    const cJSON *t;
    cJSON_ArrayForEach(t, tmpls) {
        eng_err e = {0};
        if (eng_jinja_compile(t->valuestring, strlen(t->valuestring), &compiled[k], &e))
            snprintf(cerr[k], ENG_ERR_MSG, "%s", e.msg);
        k++;
    }
    cJSON *outs = cJSON_CreateArray();
    const cJSON *c;
    int via_chat = 0;
    cJSON_ArrayForEach(c, cases) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(c, "t");
        const cJSON *vars = cJSON_GetObjectItemCaseSensitive(c, "vars");
        const cJSON *now = cJSON_GetObjectItemCaseSensitive(c, "now");
        int idx = 0;
        cJSON_ArrayForEach(t, tmpls) {
            if (cJSON_IsString(name) && strcmp(t->string, name->valuestring) == 0)
                break;
            idx++;
        }
        cJSON *res = cJSON_CreateObject();
        eng_err e = {0};
        char *out = NULL;
        size_t len = 0, *sp = NULL;
        int ns = 0, rc;
        if (idx >= nt) {
            rc = eng_err_set(&e, ENG_E_INVAL, "no such template");
        } else if (!compiled[idx]) {
            rc = eng_err_set(&e, ENG_E_FORMAT, "%s", cerr[idx]);
        } else {
            eng_chat_msg *msgs = NULL;
            int n = 0;
            eng_chat_tmpl_args a = {.now = cJSON_IsNumber(now) ? (int64_t)now->valuedouble : 0};
            if (chat_eligible(vars, &msgs, &n, &a)) {
                via_chat++;
                rc = eng_chat_tmpl_render(compiled[idx], msgs, n, &a, &out, &len, &sp, &ns, &e);
            } else {
                eng_jinja_opts o = {.tainted_vars = k_user_vars, .now = a.now};
                rc = eng_jinja_render(compiled[idx], vars, &o, &out, &len, &sp, &ns, &e);
            }
            free(msgs);
        }
        cJSON_AddBoolToObject(res, "ok", rc == 0);
        if (rc == 0) {
            cJSON_AddStringToObject(res, "out", out);
            cJSON *spans = cJSON_AddArrayToObject(res, "spans");
            for (int i = 0; i < ns; i++) {
                cJSON *p = cJSON_CreateArray();
                cJSON_AddItemToArray(p, cJSON_CreateNumber((double)sp[2 * i]));
                cJSON_AddItemToArray(p, cJSON_CreateNumber((double)sp[2 * i + 1]));
                cJSON_AddItemToArray(spans, p);
            }
        } else {
            cJSON_AddStringToObject(res, "error", e.msg);
        }
        free(out);
        free(sp);
        cJSON_AddItemToArray(outs, res);
    }
    char *txt = cJSON_PrintUnformatted(outs);
    fputs(txt, stdout);
    fputc('\n', stdout);
    fprintf(stderr, "test_eng_jinja --render: %d cases, %d through eng_chat_tmpl_render\n",
            cJSON_GetArraySize(outs), via_chat);
    free(txt);
    cJSON_Delete(outs);
    for (int i = 0; i < nt; i++)
        eng_jinja_free(compiled[i]);
    free(compiled);
    free(cerr);
    cJSON_Delete(root);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--render") == 0)
        return render_mode();
    test_text_and_whitespace();
    test_expressions();
    test_filters_and_methods();
    test_statements();
    test_errors();
    test_limits();
    test_taint();
    test_chat_api();
    test_threads();
    if (g_fail) {
        fprintf(stderr, "%d check(s) failed\n", g_fail);
        return 1;
    }
    printf("test_eng_jinja: all checks passed\n");
    return 0;
}
