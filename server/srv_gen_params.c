/* srv_gen_params.c — a generation request's sampling parameters: read from the request JSON
 * with OpenAI's names, checked against the ranges of eng_sampler.h (400 naming the field
 * otherwise), and freed. Loop thread only. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "srv_gen.h"
#include "srv_limits.h"

static int num_field(srv_resp *r, const cJSON *body, const char *name, double lo, double hi,
                     int integral, double *out, int *present)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, name);
    *present = 0;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsNumber(v)) {
        srv_resp_bad(r, name, "'%s' must be a number", name);
        return -1;
    }
    double d = v->valuedouble;
    if (!isfinite(d) || (integral && d != floor(d))) {
        srv_resp_bad(r, name, "'%s' must be %s", name, integral ? "an integer" : "finite");
        return -1;
    }
    if (d < lo || d > hi) {
        if (integral)   /* exact digits: %g would print a seed's bounds as its value */
            srv_resp_bad(r, name, "'%s' is %.0f; it must be between %.0f and %.0f", name, d, lo,
                         hi);
        else {
            char num[32];   /* as few digits as read back exactly: 1.0000001 is not 1 */
            for (int prec = 6; prec <= 17; prec++)
                if (snprintf(num, sizeof num, "%.*g", prec, d) > 0 && strtod(num, NULL) == d)
                    break;
            srv_resp_bad(r, name, "'%s' is %s; it must be between %g and %g", name, num, lo, hi);
        }
        return -1;
    }
    *out = d;
    *present = 1;
    return 0;
}

/* obj's boolean field name into out (left as it is when absent or null); a wrong type is a
 * 400 naming param, the field's path in the request. */
static int bool_field_at(srv_resp *r, const cJSON *obj, const char *name, const char *param,
                         int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsBool(v)) {
        srv_resp_bad(r, param, "'%s' must be a boolean", param);
        return -1;
    }
    *out = cJSON_IsTrue(v);
    return 0;
}

static int bool_field(srv_resp *r, const cJSON *obj, const char *name, int *out)
{
    return bool_field_at(r, obj, name, name, out);
}

/* Lengths, choices and the sampler's settings, each checked against its range (eng_sampler.h). */
static int parse_sampling(srv_resp *r, const cJSON *body, srv_gen_params *p)
{
    double d;
    int has;

    if (num_field(r, body, "max_tokens", 0, 1e9, 1, &d, &has)) return -1;
    if (has) p->max_tokens = (int)d;
    if (num_field(r, body, "max_completion_tokens", 0, 1e9, 1, &d, &has)) return -1;
    if (has) p->max_tokens = (int)d;
    if (num_field(r, body, "n", 1, SRV_MAX_N, 1, &d, &has)) return -1;
    if (has) p->n = (int)d;
    if (num_field(r, body, "temperature", 0, ENG_TEMPERATURE_MAX, 0, &d, &has)) return -1;
    if (has) p->scfg.temperature = (float)d;
    if (num_field(r, body, "top_p", 0, 1, 0, &d, &has)) return -1;
    if (has) {
        if (d <= 0) {
            srv_resp_bad(r, "top_p", "'top_p' must be greater than 0");
            return -1;
        }
        /* a positive top_p below float's range keeps the most likely token, as the
         * smallest float does (it rounded to 0, which the sampler refuses) */
        p->scfg.top_p = (float)d > 0.0f ? (float)d : FLT_TRUE_MIN;
    }
    if (num_field(r, body, "top_k", -1, ENG_TOP_K_MAX, 1, &d, &has)) return -1;
    if (has) p->scfg.top_k = d < 0 ? 0 : (int)d;
    if (num_field(r, body, "min_p", 0, 1, 0, &d, &has)) return -1;
    if (has) p->scfg.min_p = (float)d;
    if (num_field(r, body, "presence_penalty", -ENG_PENALTY_MAX, ENG_PENALTY_MAX, 0, &d, &has))
        return -1;
    if (has) p->scfg.presence_penalty = (float)d;
    if (num_field(r, body, "frequency_penalty", -ENG_PENALTY_MAX, ENG_PENALTY_MAX, 0, &d, &has))
        return -1;
    if (has) p->scfg.frequency_penalty = (float)d;
    if (num_field(r, body, "repetition_penalty", ENG_REPETITION_MIN, ENG_REPETITION_MAX, 0, &d,
                  &has))
        return -1;
    if (has) p->scfg.repetition_penalty = (float)d;
    /* any int64 or uint64 value: [-2^63, 2^64). JSON numbers arrive as doubles, in which the
     * uint64 values near the top (2^64 - 1 included) read as 2^64: that one is UINT64_MAX. */
    if (num_field(r, body, "seed", -9223372036854775808.0, 18446744073709551616.0, 1, &d, &has))
        return -1;
    if (has) {
        p->has_seed = 1;
        p->seed = d < 0                         ? (uint64_t)(int64_t)d
                  : d >= 18446744073709551616.0 ? UINT64_MAX
                                                : (uint64_t)d;
    }
    /* best_of candidates would be ranked by log-probability, which is not built: only
     * best_of = n (every candidate returned, as vLLM does) is accepted, and best_of < n is
     * refused as OpenAI and vLLM refuse it. */
    if (num_field(r, body, "best_of", 1, SRV_MAX_N, 1, &d, &has)) return -1;
    if (has && (int)d < p->n) {
        srv_resp_bad(r, "best_of", "'best_of' must be greater than or equal to 'n'");
        return -1;
    }
    if (has && (int)d > p->n) {
        srv_resp_bad(r, "best_of",
                     "'best_of' greater than 'n' is not supported (candidates are not ranked): "
                     "leave it out or set it to 'n'");
        return -1;
    }
    return 0;
}

/* What the answer carries: response_format, streaming and its options, logprobs, echo. */
static int parse_output(srv_resp *r, const cJSON *body, srv_gen_kind kind, srv_gen_params *p)
{
    double d;
    int has;
    if (srv_gen_parse_format(r, body, p)) return -1;
    if (bool_field(r, body, "stream", &p->stream)) return -1;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(body, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so)) {
            srv_resp_bad(r, "stream_options", "'stream_options' must be an object");
            return -1;
        }
        if (!p->stream) {   /* OpenAI's and vLLM's rule */
            srv_resp_bad(r, "stream_options", "'stream_options' is only allowed when 'stream' "
                         "is true");
            return -1;
        }
        if (bool_field_at(r, so, "include_usage", "stream_options.include_usage",
                          &p->include_usage))
            return -1;
    }
    const cJSON *user = cJSON_GetObjectItemCaseSensitive(body, "user");
    if (user && !cJSON_IsNull(user) && !cJSON_IsString(user)) {
        srv_resp_bad(r, "user", "'user' must be a string");
        return -1;
    }

    /* logprobs: completions take an integer (how many alternatives), chat a boolean plus
     * top_logprobs. */
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(body, "logprobs");
    if (kind == SRV_GEN_COMPLETION) {
        if (num_field(r, body, "logprobs", 0, ENG_MAX_TOP_LOGPROBS, 1, &d, &has)) return -1;
        if (has) {
            p->logprobs = 1;
            p->top_logprobs = (int)d;
        }
        if (bool_field(r, body, "echo", &p->echo)) return -1;
        const cJSON *suf = cJSON_GetObjectItemCaseSensitive(body, "suffix");
        if (suf && !cJSON_IsNull(suf)) {
            srv_resp_bad(r, "suffix", "'suffix' is not supported by this server");
            return -1;
        }
    } else {
        if (lp && !cJSON_IsNull(lp) && !cJSON_IsBool(lp)) {
            srv_resp_bad(r, "logprobs", "'logprobs' must be a boolean");
            return -1;
        }
        p->logprobs = lp && cJSON_IsTrue(lp);
        if (num_field(r, body, "top_logprobs", 0, ENG_MAX_TOP_LOGPROBS, 1, &d, &has)) return -1;
        if (has) {
            if (!p->logprobs) {
                srv_resp_bad(r, "top_logprobs", "'top_logprobs' requires 'logprobs': true");
                return -1;
            }
            p->top_logprobs = (int)d;
        }
    }
    p->scfg.n_top_logprobs = p->top_logprobs;
    return 0;
}

/* stop: a string or a list of strings (borrowed from body), checked by eng_stop_init. */
static int parse_stop(srv_resp *r, const cJSON *body, srv_gen_params *p)
{
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(body, "stop");
    if (st && !cJSON_IsNull(st)) {
        if (cJSON_IsString(st)) {
            p->stops[p->n_stops++] = st->valuestring;
        } else if (cJSON_IsArray(st)) {
            const cJSON *e;
            cJSON_ArrayForEach(e, st) {
                if (!cJSON_IsString(e)) {
                    srv_resp_bad(r, "stop", "'stop' must be a string or a list of strings");
                    return -1;
                }
                if (p->n_stops >= SRV_MAX_STOPS) {
                    srv_resp_bad(r, "stop", "at most %d stop strings are supported",
                                 SRV_MAX_STOPS);
                    return -1;
                }
                p->stops[p->n_stops++] = e->valuestring;
            }
        } else {
            srv_resp_bad(r, "stop", "'stop' must be a string or a list of strings");
            return -1;
        }
        eng_stop tmp;
        eng_err err = {0};
        if (eng_stop_init(&tmp, p->stops, p->n_stops, &err) != 0) {
            srv_resp_bad(r, "stop", "invalid 'stop': %s", err.msg);
            return -1;
        }
    }
    return 0;
}

/* logit_bias: {"token id": bias}, ids in the vocabulary, biases in range. */
static int parse_logit_bias(srv_server *s, srv_resp *r, const cJSON *body, srv_gen_params *p)
{
    const cJSON *lb = cJSON_GetObjectItemCaseSensitive(body, "logit_bias");
    if (lb && !cJSON_IsNull(lb)) {
        if (!cJSON_IsObject(lb)) {
            srv_resp_bad(r, "logit_bias", "'logit_bias' must be an object of token id -> bias");
            return -1;
        }
        int cnt = cJSON_GetArraySize(lb);
        if (cnt > SRV_MAX_LOGIT_BIAS) {
            srv_resp_bad(r, "logit_bias", "'logit_bias' has %d entries; at most %d", cnt,
                         SRV_MAX_LOGIT_BIAS);
            return -1;
        }
        p->bias = calloc((size_t)(cnt ? cnt : 1), sizeof(*p->bias));
        if (!p->bias) {
            srv_resp_error(r, 503, "server_error", NULL, "out_of_memory", "out of memory");
            return -1;
        }
        int vocab = s->model ? s->model->cfg.vocab_size : 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, lb) {
            /* decimal digits only: strtol alone would take " 5", "+5" and "-0" */
            const char *k = e->string ? e->string : "";
            size_t nd = strspn(k, "0123456789");
            long id = nd > 0 && nd <= 9 && !k[nd] ? strtol(k, NULL, 10) : -1;
            if (id < 0 || id >= vocab) {
                srv_resp_bad(r, "logit_bias", "'logit_bias' key '%.32s' is not a token id in "
                             "[0, %d)", e->string ? e->string : "", vocab);
                return -1;
            }
            if (!cJSON_IsNumber(e) || !(fabs(e->valuedouble) <= ENG_LOGIT_BIAS_MAX)) {
                srv_resp_bad(r, "logit_bias", "'logit_bias' values must be numbers in [-%g, %g]",
                             ENG_LOGIT_BIAS_MAX, ENG_LOGIT_BIAS_MAX);
                return -1;
            }
            /* one bias per token: a repeated id ("5" twice, or "05") replaces the earlier
             * value, as a JSON object's last key does; summing let it past the range */
            int at = 0;
            while (at < p->n_bias && p->bias[at].token != (int32_t)id)
                at++;
            p->bias[at].token = (int32_t)id;
            p->bias[at].bias = (float)e->valuedouble;
            if (at == p->n_bias)
                p->n_bias++;
        }
    }
    return 0;
}

int srv_gen_parse_params(srv_server *s, srv_resp *r, const cJSON *body, srv_gen_kind kind,
                         srv_gen_params *p)
{
    memset(p, 0, sizeof(*p));
    eng_sampler_cfg_default(&p->scfg);
    p->max_tokens = -1;
    p->n = 1;
    if (parse_sampling(r, body, p) || parse_output(r, body, kind, p) || parse_stop(r, body, p) ||
        parse_logit_bias(s, r, body, p))
        return -1;
    return 0;
}

void srv_gen_params_free(srv_gen_params *p)
{
    free(p->schema);
    p->schema = NULL;
    free(p->bias);
    p->bias = NULL;
    p->n_bias = 0;
}

void srv_gen_prompts_free(srv_gen_prompt *pr, int n)
{
    if (!pr)
        return;
    for (int i = 0; i < n; i++) {
        free(pr[i].ids);
        free(pr[i].text);
        free(pr[i].plain);
    }
    free(pr);
}
