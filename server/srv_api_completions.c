/* srv_api_completions.c — POST /v1/completions: the prompt in its four shapes (a string, a list
 * of strings, a list of token ids, a list of token-id lists; srv_api_prompts, which
 * /v1/embeddings reads its input with too), echo, and the rejection of suffix; then srv_tokjob
 * tokenizes the text prompts and srv_gen does the rest. Loop thread only. */
#include <stdlib.h>
#include <string.h>

#include "srv_api.h"

static int is_int_array(const cJSON *a)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, a)
        if (!cJSON_IsNumber(e))
            return 0;
    return 1;
}

/* Fills pr[i] from one prompt value (string or token list). 0, or -1 with r answered. */
static int one_prompt(srv_server *s, srv_resp *r, const cJSON *v, const char *param,
                      srv_gen_prompt *pr)
{
    if (cJSON_IsString(v)) {
        size_t len = strlen(v->valuestring);
        if (srv_prompt_bytes_ok(s, r, len, 0, param) != 0)
            return -1;
        pr->text = malloc(len + 1);
        if (!pr->text) {
            srv_resp_error(r, 503, "server_error", NULL, "out_of_memory", "out of memory");
            return -1;
        }
        memcpy(pr->text, v->valuestring, len + 1);
        pr->text_len = len;   /* ids stay NULL: srv_gen_submit tokenizes the text */
        return 0;
    }
    if (cJSON_IsArray(v) && is_int_array(v)) {
        if (cJSON_GetArraySize(v) == 0) {
            srv_resp_bad(r, param, "a token-id %s must not be empty", param);
            return -1;
        }
        if (srv_token_array(s, r, v, param, &pr->ids, &pr->n) != 0)
            return -1;
        if (pr->n >= s->n_ctx)
            return 0;   /* srv_gen_start refuses it: decoding it for echo would be wasted */
        char probe[1];
        size_t need = eng_tokenizer_decode(s->tok, pr->ids, (size_t)pr->n, 1, probe, 1);
        char *raw = malloc(need + 1);
        pr->text = malloc(need * 3 + 1);
        if (!raw || !pr->text) {
            free(raw);
            srv_resp_error(r, 503, "server_error", NULL, "out_of_memory", "out of memory");
            return -1;
        }
        eng_tokenizer_decode(s->tok, pr->ids, (size_t)pr->n, 1, raw, need + 1);
        pr->text_len = srv_utf8_repair(raw, need, pr->text, need * 3 + 1);
        free(raw);
        return 0;
    }
    srv_resp_bad(r, param, "'%s' must be a string, a list of strings, a list of token ids or a "
                 "list of token-id lists", param);
    return -1;
}

int srv_api_prompts(srv_server *s, srv_resp *r, const cJSON *pv, const char *param,
                    srv_gen_prompt **out, int *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (!pv || cJSON_IsNull(pv)) {
        srv_resp_bad(r, param, "'%s' is required", param);
        return -1;
    }
    /* a list of prompts: strings or token lists (a flat number list is one prompt) */
    int multi = cJSON_IsArray(pv) && !is_int_array(pv);
    int n_prompts = multi ? cJSON_GetArraySize(pv) : 1;
    if (n_prompts < 1 || n_prompts > SRV_MAX_PROMPTS) {
        srv_resp_bad(r, param, "'%s' must hold 1 to %d prompts", param, SRV_MAX_PROMPTS);
        return -1;
    }
    srv_gen_prompt *pr = calloc((size_t)n_prompts, sizeof(*pr));
    if (!pr) {
        srv_resp_error(r, 503, "server_error", NULL, "out_of_memory", "out of memory");
        return -1;
    }
    int i = 0, failed = 0;
    if (multi) {
        const cJSON *e;
        cJSON_ArrayForEach(e, pv) {
            if (cJSON_IsArray(e) ? !is_int_array(e) : !cJSON_IsString(e)) {
                srv_resp_bad(r, param, "each entry of '%s' must be a string or a list of token "
                             "ids", param);
                failed = 1;
                break;
            }
            if (one_prompt(s, r, e, param, &pr[i++]) != 0) {
                failed = 1;
                break;
            }
        }
    } else {
        failed = one_prompt(s, r, pv, param, &pr[0]) != 0;
    }
    if (failed) {
        srv_gen_prompts_free(pr, n_prompts);
        return -1;
    }
    *out = pr;
    *n_out = n_prompts;
    return 0;
}

void srv_api_completions(srv_server *s, srv_resp *r, const cJSON *body)
{
    if (srv_api_check_model(s, r, body))
        return;
    const cJSON *pv = cJSON_GetObjectItemCaseSensitive(body, "prompt");
    if (!pv || cJSON_IsNull(pv)) {
        srv_resp_bad(r, "prompt", "'prompt' is required");
        return;
    }
    srv_gen_params p;
    if (srv_gen_parse_params(s, r, body, SRV_GEN_COMPLETION, &p) != 0) {
        srv_gen_params_free(&p);
        return;
    }
    srv_gen_prompt *pr;
    int n_prompts;
    if (srv_api_prompts(s, r, pv, "prompt", &pr, &n_prompts) != 0) {
        srv_gen_params_free(&p);
        return;
    }
    srv_gen_submit(s, r, SRV_GEN_COMPLETION, &p, pr, n_prompts, NULL, 0);
}
