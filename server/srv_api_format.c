/* srv_api_format.c — the request's response_format (JSON mode, JSON Schema) into the grammar its
 * answer is decoded under: validates the OpenAI shape, compiles the schema once so that an
 * unsupported keyword is a 400 naming it, and compiles it again per task (a compiled grammar is
 * owned by one task, so no sharing across threads). Loop thread only. Does not decode (the
 * scheduler applies the grammar's masks). */
#include <stdlib.h>
#include <string.h>

#include "srv_api.h"

#include "eng_grammar.h"

int srv_gen_parse_format(srv_resp *r, const cJSON *body, srv_gen_params *p)
{
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(body, "response_format");
    if (!rf || cJSON_IsNull(rf))
        return 0;
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(rf, "type");
    if (!cJSON_IsObject(rf) || !cJSON_IsString(ty)) {
        srv_resp_bad(r, "response_format", "'response_format' must be an object with a 'type' "
                     "of \"text\", \"json_object\" or \"json_schema\"");
        return -1;
    }
    if (strcmp(ty->valuestring, "text") == 0)
        return 0;
    if (strcmp(ty->valuestring, "json_object") == 0) {
        p->json_mode = SRV_JSON_OBJECT;
        return 0;
    }
    if (strcmp(ty->valuestring, "json_schema") != 0) {
        srv_resp_bad(r, "response_format", "'response_format.type' must be \"text\", "
                     "\"json_object\" or \"json_schema\" (got \"%.32s\")", ty->valuestring);
        return -1;
    }
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(rf, "json_schema");
    if (!cJSON_IsObject(js)) {
        srv_resp_bad(r, "response_format", "'response_format.json_schema' must be an object "
                     "with 'name' and 'schema'");
        return -1;
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(js, "name");
    size_t chars = 0;   /* characters, not bytes: UTF-8 lead bytes */
    for (const char *q = cJSON_IsString(name) ? name->valuestring : ""; *q; q++)
        chars += ((unsigned char)*q & 0xC0) != 0x80;
    if (!cJSON_IsString(name) || chars == 0 || chars > 64) {
        srv_resp_bad(r, "response_format", "'response_format.json_schema.name' must be a "
                     "string of 1 to 64 characters");
        return -1;
    }
    const cJSON *strict = cJSON_GetObjectItemCaseSensitive(js, "strict");
    if (strict && !cJSON_IsNull(strict) && !cJSON_IsBool(strict)) {
        srv_resp_bad(r, "response_format", "'response_format.json_schema.strict' must be a "
                     "boolean");
        return -1;
    }
    const cJSON *desc = cJSON_GetObjectItemCaseSensitive(js, "description");
    if (desc && !cJSON_IsNull(desc) && !cJSON_IsString(desc)) {
        srv_resp_bad(r, "response_format", "'response_format.json_schema.description' must be "
                     "a string");
        return -1;
    }
    /* strict or not, the answer is decoded under the schema: a grammar is the only way a small
     * model keeps to one. Not strict: what the grammar cannot enforce (pattern, ...) is
     * ignored; strict: refused by name */
    p->schema_flags = cJSON_IsTrue(strict) ? 0 : ENG_GRAMMAR_LENIENT;
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(js, "schema");
    if (!schema) {
        p->json_mode = SRV_JSON_OBJECT;   /* OpenAI: no schema = any JSON object */
        return 0;
    }
    /* compiled from the text each task will compile (srv_gen_grammar), so its limits
     * (ENG_GRAMMAR_MAX_SCHEMA bytes) are a 400 here, not a failure later */
    eng_err err = {0};
    p->schema = eng_grammar_print_schema(schema, &err);   /* numbers exact, unlike cJSON's */
    if (!p->schema) {
        if (err.code == ENG_E_NOMEM)
            srv_resp_error(r, 503, "server_error", NULL, "out_of_memory", "out of memory");
        else
            srv_resp_bad(r, "response_format", "'response_format.json_schema.schema': %s",
                         err.msg);
        return -1;
    }
    eng_grammar *g = NULL;
    int rc = eng_grammar_compile_schema_ex(&g, p->schema, strlen(p->schema), p->schema_flags,
                                           &err);
    eng_grammar_free(g);
    if (rc != 0) {
        free(p->schema);
        p->schema = NULL;
        if (rc == ENG_E_NOMEM) {
            srv_resp_error(r, 503, "server_error", NULL, "out_of_memory", "out of memory");
            return -1;
        }
        srv_resp_bad(r, "response_format", "'response_format.json_schema.schema': %s", err.msg);
        return -1;
    }
    p->json_mode = SRV_JSON_SCHEMA;
    return 0;
}

int srv_gen_grammar(const srv_gen_params *p, eng_grammar **out)
{
    *out = NULL;
    if (p->json_mode == SRV_JSON_OBJECT)
        return eng_grammar_compile_json_object(out, NULL);
    if (p->json_mode == SRV_JSON_SCHEMA && p->schema)
        return eng_grammar_compile_schema_ex(out, p->schema, strlen(p->schema), p->schema_flags,
                                             NULL);
    return 0;
}
