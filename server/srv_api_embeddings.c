/* srv_api_embeddings.c — POST /v1/embeddings (OpenAI's shape): "input" as a string, a list of
 * strings, a list of token ids or a list of token-id lists (srv_api_prompts); each becomes one
 * embedding task (srv_gen with SRV_GEN_EMBED): the mean of the prompt's final-normed hidden
 * states, L2-normalised, as floats or base64 ("encoding_format"). "dimensions" may only name
 * the model's width. Loop thread only. */
#include <string.h>

#include "srv_api.h"

void srv_api_embeddings(srv_server *s, srv_resp *r, const cJSON *body)
{
    if (srv_api_check_model(s, r, body))
        return;
    srv_gen_params p;
    memset(&p, 0, sizeof(p));
    eng_sampler_cfg_default(&p.scfg);
    p.n = 1;
    p.max_tokens = 0;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(body, "encoding_format");
    if (fmt && !cJSON_IsNull(fmt)) {
        if (!cJSON_IsString(fmt) || (strcmp(fmt->valuestring, "float") != 0 &&
                                     strcmp(fmt->valuestring, "base64") != 0)) {
            srv_resp_bad(r, "encoding_format", "'encoding_format' must be \"float\" or "
                         "\"base64\"");
            return;
        }
        p.base64 = strcmp(fmt->valuestring, "base64") == 0;
    }
    const cJSON *dims = cJSON_GetObjectItemCaseSensitive(body, "dimensions");
    if (dims && !cJSON_IsNull(dims) && !cJSON_IsNumber(dims)) {
        srv_resp_bad(r, "dimensions", "'dimensions' must be a number");
        return;
    }
    if (dims && !cJSON_IsNull(dims) && dims->valuedouble != (double)s->model->cfg.dim) {
        srv_resp_bad(r, "dimensions", "this model's embeddings have %d dimensions; "
                     "'dimensions' cannot change that", s->model->cfg.dim);
        return;
    }
    const cJSON *user = cJSON_GetObjectItemCaseSensitive(body, "user");
    if (user && !cJSON_IsNull(user) && !cJSON_IsString(user)) {
        srv_resp_bad(r, "user", "'user' must be a string");
        return;
    }
    /* an empty string has no meaning to embed: OpenAI answers 400 (its vector here would be
     * the BOS token's alone) */
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(body, "input");
    const cJSON *e = cJSON_IsArray(in) ? in->child : in;
    for (int i = 0; e; e = cJSON_IsArray(in) ? e->next : NULL, i++) {
        if (cJSON_IsString(e) && e->valuestring[0] == '\0') {
            if (cJSON_IsArray(in))
                srv_resp_bad(r, "input", "input[%d] is an empty string", i);
            else
                srv_resp_bad(r, "input", "'input' is an empty string");
            return;
        }
    }
    srv_gen_prompt *pr;
    int n;
    if (srv_api_prompts(s, r, in, "input", &pr, &n) != 0)
        return;
    srv_gen_submit(s, r, SRV_GEN_EMBED, &p, pr, n, NULL, 0);
}
