/* srv_api_tools.c — the request side of tool calling on /v1/chat/completions: validates tools,
 * tool_choice and parallel_tool_calls (OpenAI's shapes), builds the grammar a call is decoded
 * under (a JSON Schema: {"name": <const>, "arguments": <the function's parameters>} per
 * function, "name" written first, an array of them when parallel calls are allowed) and the
 * generic prompt text for templates that have no tool format. Loop thread only. Does not
 * decode (the scheduler applies the grammar) or parse answers (srv_gen_tools.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srv_api.h"

#include "eng_chat.h"
#include "eng_grammar.h"

#define SRV_MAX_TOOLS 64
#define SRV_MAX_TOOL_NAME 64

static int name_ok(const char *n)
{
    size_t len = strlen(n);
    if (len < 1 || len > SRV_MAX_TOOL_NAME)
        return 0;
    return strspn(n, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == len;
}

static const cJSON *fn_of(const cJSON *tool)
{
    return cJSON_GetObjectItemCaseSensitive(tool, "function");
}

static const char *fn_name(const cJSON *tool)
{
    return cJSON_GetObjectItemCaseSensitive(fn_of(tool), "name")->valuestring;
}

/* One entry of "tools": {"type": "function", "function": {"name", "description"?,
 * "parameters"?, "strict"?}}, its shape only (tool_schema_ok compiles the parameters of those
 * that may be called). 0 or -1 with a 400. */
static int tool_ok(srv_resp *r, const cJSON *tool, int i)
{
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(tool, "type");
    const cJSON *fn = fn_of(tool);
    if (!cJSON_IsObject(tool) || !cJSON_IsString(ty) || strcmp(ty->valuestring, "function") ||
        !cJSON_IsObject(fn)) {
        srv_resp_bad(r, "tools", "tools[%d] must be {\"type\": \"function\", \"function\": "
                     "{...}} (only function tools are supported)", i);
        return -1;
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
    if (!cJSON_IsString(name) || !name_ok(name->valuestring)) {
        srv_resp_bad(r, "tools", "tools[%d].function.name must be 1 to %d characters of a-z, "
                     "A-Z, 0-9, '_' and '-'", i, SRV_MAX_TOOL_NAME);
        return -1;
    }
    const cJSON *desc = cJSON_GetObjectItemCaseSensitive(fn, "description");
    const cJSON *strict = cJSON_GetObjectItemCaseSensitive(fn, "strict");
    if ((desc && !cJSON_IsNull(desc) && !cJSON_IsString(desc)) ||
        (strict && !cJSON_IsNull(strict) && !cJSON_IsBool(strict))) {
        srv_resp_bad(r, "tools", "tools[%d].function: 'description' must be a string and "
                     "'strict' a boolean", i);
        return -1;
    }
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
    if (params && !cJSON_IsNull(params) && !cJSON_IsObject(params)) {
        srv_resp_bad(r, "tools", "tools[%d].function.parameters must be a JSON Schema object",
                     i);
        return -1;
    }
    return 0;
}

/* The parameters of tools[i], a function that may be called: they must describe an object and
 * compile, strictly when the function is strict (an unenforceable keyword is a 400 naming it),
 * else leniently (ignored); a non-strict function whose schema needs structure the grammar
 * lacks is called with any object as its arguments (t->loose). 0 or -1 with a 400. */
static int tool_schema_ok(srv_resp *r, const cJSON *tool, int i, srv_tools *t)
{
    const cJSON *fn = fn_of(tool);
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
    int strict = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(fn, "strict"));
    if (!strict)
        t->lenient = ENG_GRAMMAR_LENIENT;
    if (!params || cJSON_IsNull(params))
        return 0;
    /* a call's arguments are a JSON object (OpenAI's rule; clients parse them as one) */
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(params, "type");
    int obj = !pt || (cJSON_IsString(pt) && strcmp(pt->valuestring, "object") == 0);
    static const char *const not_obj[] = {"enum", "const", "anyOf", "oneOf", "$ref", "items",
                                          "minItems", "maxItems"};
    for (size_t k = 0; k < sizeof not_obj / sizeof not_obj[0]; k++)
        obj = obj && !cJSON_GetObjectItemCaseSensitive(params, not_obj[k]);
    if (!obj) {
        srv_resp_bad(r, "tools", "tools[%d].function.parameters must describe an object "
                     "({\"type\": \"object\", \"properties\": ...}): a call's arguments are a "
                     "JSON object", i);
        return -1;
    }
    eng_grammar *g = NULL;
    eng_err err = {0};
    int rc = eng_grammar_compile_cjson_ex(&g, params, strict ? 0 : ENG_GRAMMAR_LENIENT, &err);
    eng_grammar_free(g);
    if (rc == ENG_E_NOMEM) {
        srv_resp_error(r, 503, "server_error", NULL, "out_of_memory", "out of memory");
        return -1;
    }
    if (rc == ENG_E_UNSUPPORTED && !strict) {
        t->loose |= (uint64_t)1 << i;
        return 0;
    }
    if (rc != 0) {
        srv_resp_bad(r, "tools", "tools[%d].function.parameters (%s%s): %s", i, fn_name(tool),
                     strict ? ", strict" : "", err.msg);
        return -1;
    }
    return 0;
}

int srv_tools_parse(srv_server *s, srv_resp *r, const cJSON *body, srv_tools *t)
{
    memset(t, 0, sizeof(*t));
    static const char *const legacy[] = {"functions", "function_call"};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, legacy[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0)) {
            srv_resp_bad(r, legacy[i], "'%s' is deprecated and not supported; use 'tools' and "
                         "'tool_choice'", legacy[i]);
            return -1;
        }
    }
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(body, "tools");
    if (list && !cJSON_IsNull(list)) {
        if (!cJSON_IsArray(list)) {
            srv_resp_bad(r, "tools", "'tools' must be a list of function tools");
            return -1;
        }
        int n = cJSON_GetArraySize(list), i = 0;
        if (n > SRV_MAX_TOOLS) {
            srv_resp_bad(r, "tools", "'tools' has %d entries; at most %d", n, SRV_MAX_TOOLS);
            return -1;
        }
        const cJSON *e;
        cJSON_ArrayForEach(e, list) {
            if (tool_ok(r, e, i) != 0)
                return -1;
            const cJSON *o = list->child;
            for (int k = 0; k < i; k++, o = o->next) {
                if (strcmp(fn_name(o), fn_name(e)) == 0) {
                    srv_resp_bad(r, "tools", "tools[%d] and tools[%d] are both named '%s'", k, i,
                                 fn_name(e));
                    return -1;
                }
            }
            i++;
        }
        t->list = n > 0 ? list : NULL;
    }
    t->choice = t->list ? SRV_TOOL_AUTO : SRV_TOOL_NONE;
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(body, "tool_choice");
    if (ch && !cJSON_IsNull(ch)) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(ch, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(ch, "type");
        if (cJSON_IsString(ch) && strcmp(ch->valuestring, "none") == 0) {
            t->choice = SRV_TOOL_NONE;
        } else if (cJSON_IsString(ch) && strcmp(ch->valuestring, "auto") == 0) {
            /* as set above: auto with tools, nothing to call without */
        } else if (cJSON_IsString(ch) && strcmp(ch->valuestring, "required") == 0) {
            t->choice = SRV_TOOL_REQUIRED;
        } else if (cJSON_IsObject(ch) && cJSON_IsString(ty) &&
                   strcmp(ty->valuestring, "function") == 0 && cJSON_IsString(name)) {
            t->choice = SRV_TOOL_REQUIRED;
            t->named = name->valuestring;
        } else {
            srv_resp_bad(r, "tool_choice", "'tool_choice' must be \"none\", \"auto\", "
                         "\"required\" or {\"type\": \"function\", \"function\": {\"name\": "
                         "...}}");
            return -1;
        }
        if (t->choice == SRV_TOOL_REQUIRED && !t->list) {
            srv_resp_bad(r, "tool_choice", "'tool_choice' asks for a tool call but 'tools' is "
                         "empty");
            return -1;
        }
        int found = !t->named;
        const cJSON *e;
        cJSON_ArrayForEach(e, t->list)
            found |= t->named && strcmp(fn_name(e), t->named) == 0;
        if (!found) {
            srv_resp_bad(r, "tool_choice", "'tool_choice' names '%.64s', which is not in "
                         "'tools'", t->named);
            return -1;
        }
    }
    t->parallel = 1;
    const cJSON *par = cJSON_GetObjectItemCaseSensitive(body, "parallel_tool_calls");
    if (par && !cJSON_IsNull(par)) {
        if (!cJSON_IsBool(par)) {
            srv_resp_bad(r, "parallel_tool_calls", "'parallel_tool_calls' must be a boolean");
            return -1;
        }
        t->parallel = cJSON_IsTrue(par);
    }
    if (t->named)
        t->parallel = 0;   /* OpenAI: a named function is called once */
    /* tool_choice "none" builds no grammar: the schemas of functions that cannot be called are
     * not compiled (their shape was checked above) */
    if (t->choice != SRV_TOOL_NONE) {
        const cJSON *e;
        int i = 0;
        cJSON_ArrayForEach(e, t->list) {
            if ((!t->named || strcmp(fn_name(e), t->named) == 0) &&
                tool_schema_ok(r, e, i, t) != 0)
                return -1;
            i++;
        }
    }
    t->native = s->chat_jinja && eng_chat_tmpl_has(s->chat_jinja, "tools") &&
                eng_chat_tmpl_has(s->chat_jinja, "tool_calls");
    t->args_key = t->native && eng_chat_tmpl_has(s->chat_jinja, "\"parameters\": ")
                      ? "parameters" : "arguments";
    return 0;
}

/* {"type":"object","properties":{"name":{"const":N},K:P},"required":["name",K],
 * "additionalProperties":false} for one function; its $defs move to the root under
 * "f<i>_<key>", with every "$ref" inside rewritten to match ("#" itself included). */
static int rewrite_refs(cJSON *node, int i, int *root_refs)
{
    if (cJSON_IsObject(node)) {
        cJSON *ref = cJSON_GetObjectItemCaseSensitive(node, "$ref");
        if (cJSON_IsString(ref)) {
            const char *v = ref->valuestring, *key = NULL;
            if (strcmp(v, "#") == 0) {
                key = "";
                (*root_refs)++;
            } else if (strncmp(v, "#/$defs/", 8) == 0) {
                key = v + 8;
            } else if (strncmp(v, "#/definitions/", 14) == 0) {
                key = v + 14;
            }
            if (key) {
                char buf[512];
                snprintf(buf, sizeof(buf), "#/$defs/f%d_%s", i, key[0] ? key : "_root");
                if (!cJSON_SetValuestring(ref, buf))
                    return -1;
            }
        }
    }
    cJSON *c;
    cJSON_ArrayForEach(c, node) {
        if (rewrite_refs(c, i, root_refs) != 0)
            return -1;
    }
    return 0;
}

static cJSON *call_schema(const cJSON *tool, int i, const char *args_key, cJSON *defs,
                          int loose)
{
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn_of(tool), "parameters");
    cJSON *ps = params && !cJSON_IsNull(params) && !loose
                    ? cJSON_Duplicate(params, 1) : cJSON_Parse("{\"type\":\"object\"}");
    cJSON *o = cJSON_CreateObject();
    int root_refs = 0;
    if (!ps || !o || rewrite_refs(ps, i, &root_refs) != 0)
        goto fail;
    if (!cJSON_GetObjectItemCaseSensitive(ps, "type") &&
        !cJSON_AddStringToObject(ps, "type", "object"))   /* {} or bare properties: an object */
        goto fail;
    char key[600];
    static const char *const def_keys[] = {"$defs", "definitions"};
    for (int k = 0; k < 2; k++) {
        cJSON *d = cJSON_DetachItemFromObjectCaseSensitive(ps, def_keys[k]), *e;
        cJSON_ArrayForEach(e, d) {
            snprintf(key, sizeof(key), "f%d_%s", i, e->string);
            cJSON_AddItemToObject(defs, key, cJSON_Duplicate(e, 1));
        }
        cJSON_Delete(d);
    }
    if (root_refs) {   /* "#" inside the parameters: their own root, kept under $defs */
        snprintf(key, sizeof(key), "f%d__root", i);
        cJSON_AddItemToObject(defs, key, cJSON_Duplicate(ps, 1));
    }
    cJSON_AddStringToObject(o, "type", "object");
    cJSON *props = cJSON_AddObjectToObject(o, "properties");
    cJSON *nm = cJSON_AddObjectToObject(props, "name");
    cJSON_AddStringToObject(nm, "const", fn_name(tool));
    cJSON_AddItemToObject(props, args_key, ps);
    ps = NULL;
    cJSON *req = cJSON_AddArrayToObject(o, "required");
    cJSON_AddItemToArray(req, cJSON_CreateString("name"));
    cJSON_AddItemToArray(req, cJSON_CreateString(args_key));
    cJSON_AddBoolToObject(o, "additionalProperties", 0);
    return o;
fail:
    cJSON_Delete(ps);
    cJSON_Delete(o);
    return NULL;
}

int srv_tools_grammar(srv_resp *r, const srv_tools *t, srv_gen_params *p)
{
    if (t->choice == SRV_TOOL_NONE)
        return 0;
    int n_callable = t->named ? 1 : cJSON_GetArraySize(t->list);
    if (n_callable > ENG_GRAMMAR_MAX_READINGS) {
        /* every call begins {"name": "...": the grammar must keep one reading per function
         * alive until the name tells them apart */
        srv_resp_bad(r, "tools", "'tools' offers %d functions; at most %d can be callable at "
                     "once (name one with 'tool_choice', or send fewer)", n_callable,
                     ENG_GRAMMAR_MAX_READINGS);
        return -1;
    }
    if (p->json_mode != SRV_JSON_NONE) {
        srv_resp_bad(r, "response_format", "'response_format' with 'tools' is not supported; "
                     "set 'tool_choice' to \"none\" to get structured text");
        return -1;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON *defs = cJSON_AddObjectToObject(root, "$defs");
    cJSON *calls = cJSON_CreateArray();
    int i = 0, ok = root && defs && calls;
    const cJSON *e;
    cJSON_ArrayForEach(e, t->list) {
        if (ok && (!t->named || strcmp(fn_name(e), t->named) == 0)) {
            cJSON *c = call_schema(e, i, t->args_key, defs, (int)(t->loose >> i & 1));
            ok = ok && c;
            cJSON_AddItemToArray(calls, c);
        }
        i++;
    }
    cJSON *any = cJSON_AddArrayToObject(root, "anyOf");
    ok = ok && any;
    if (ok) {
        cJSON *one = cJSON_CreateObject();
        cJSON_AddItemToObject(one, "anyOf", calls);
        calls = NULL;
        cJSON_AddItemToArray(any, one);
        if (t->parallel) {
            cJSON *arr = cJSON_CreateObject();
            cJSON_AddStringToObject(arr, "type", "array");
            cJSON_AddItemToObject(arr, "items", cJSON_Duplicate(one, 1));
            cJSON_AddNumberToObject(arr, "minItems", 1);
            cJSON_AddItemToArray(any, arr);
        }
    }
    cJSON_Delete(calls);
    eng_err err = {0};
    /* numbers exact (each tool's parameters compiled from cJSON already, so only memory fails) */
    char *text = ok ? eng_grammar_print_schema(root, &err) : NULL;
    cJSON_Delete(root);
    if (!text) {
        srv_resp_error(r, 503, "server_error", NULL, "out_of_memory", "out of memory");
        return -1;
    }
    eng_grammar *g = NULL;
    /* lenient when a callable function is not strict: the strict ones compiled strictly on
     * their own (srv_tools_parse), so leniency ignores nothing of theirs */
    const unsigned flags = ENG_GRAMMAR_ORDERED | ENG_GRAMMAR_COMPACT | t->lenient;
    int rc = eng_grammar_compile_schema_ex(&g, text, strlen(text), flags, &err);
    eng_grammar_free(g);
    if (rc != 0) {
        free(text);
        if (rc == ENG_E_NOMEM)
            srv_resp_error(r, 503, "server_error", NULL, "out_of_memory", "out of memory");
        else
            srv_resp_bad(r, "tools", "the tools together: %s", err.msg);
        return -1;
    }
    p->schema = text;
    p->schema_flags = flags;
    p->json_mode = SRV_JSON_SCHEMA;
    p->tool_choice = t->choice;
    p->tool_parallel = t->parallel;
    p->tool_args_key = t->args_key;
    return 0;
}

void srv_tools_system_text(const srv_tools *t, srv_buf *out)
{
    srv_buf_puts(out, "Functions you can call:\n");
    const cJSON *e;
    cJSON_ArrayForEach(e, t->list) {
        const cJSON *fn = fn_of(e);
        if (t->named && strcmp(fn_name(e), t->named) != 0)
            continue;
        cJSON *o = cJSON_CreateObject();
        static const char *const keys[] = {"name", "description", "parameters"};
        for (int k = 0; o && k < 3; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(fn, keys[k]);
            if (v && !cJSON_IsNull(v))
                cJSON_AddItemToObject(o, keys[k], cJSON_Duplicate(v, 1));
        }
        char *txt = o ? cJSON_PrintUnformatted(o) : NULL;
        if (txt) {
            srv_buf_puts(out, txt);
            srv_buf_puts(out, "\n");
        }
        free(txt);
        cJSON_Delete(o);
    }
    srv_buf_printf(out, "To call one, reply with only JSON: {\"name\": ..., \"%s\": {...}}%s.",
                   t->args_key, t->parallel ? ", or a list of them" : "");
}

void srv_tools_calls_text(const cJSON *tool_calls, const char *args_key, srv_buf *out)
{
    int n = cJSON_GetArraySize(tool_calls), k = 0;
    if (n > 1)
        srv_buf_puts(out, "[");
    const cJSON *c;
    cJSON_ArrayForEach(c, tool_calls) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        cJSON *o = cJSON_CreateObject();
        cJSON *av = cJSON_IsString(args) ? cJSON_Parse(args->valuestring) : NULL;
        if (!av && cJSON_IsString(args))
            av = cJSON_CreateString(args->valuestring);   /* not JSON: kept as a string */
        if (o) {
            cJSON_AddStringToObject(o, "name", cJSON_IsString(name) ? name->valuestring : "");
            cJSON_AddItemToObject(o, args_key, av ? av : cJSON_CreateObject());
            av = NULL;
        }
        cJSON_Delete(av);
        char *txt = o ? cJSON_PrintUnformatted(o) : NULL;
        if (k++ > 0)
            srv_buf_puts(out, ", ");
        if (txt)
            srv_buf_puts(out, txt);
        free(txt);
        cJSON_Delete(o);
    }
    if (n > 1)
        srv_buf_puts(out, "]");
}
