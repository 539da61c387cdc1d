/* claq_generate.c — `claq generate`: prompt in, prompt + generated text out on stdout, timings
 * (prompt and generation tokens/s) on stderr. Single sequence; prefill in one batched pass, then
 * one token per step. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "claq_session.h"
#include "claq_tool.h"
#include "eng_gen.h"
#include "eng_sampler.h"

/* One phase's --profile line: seconds inside each kind of kernel op, and outside them all. */
static void print_profile(const char *phase, const kern_profile *p, double wall, long long units,
                          const char *unit)
{
    const double per = units > 0 ? (double)units : 1.0;
    double in_ops = 0.0;
    fprintf(stderr, "profile, %s (%lld %ss, %.3f s; ms per %s):", phase, units, unit, wall, unit);
    for (int k = 0; k < KERN_OP_KINDS; k++) {
        in_ops += p->seconds[k];
        fprintf(stderr, " %s %.2f (%.1f %%, %llu calls);", kern_op_kind_name((kern_op_kind)k),
                p->seconds[k] * 1e3 / per, wall > 0 ? 100.0 * p->seconds[k] / wall : 0.0,
                (unsigned long long)p->calls[k]);
    }
    fprintf(stderr, " outside kernel ops %.2f (%.1f %%)\n", (wall - in_ops) * 1e3 / per,
            wall > 0 ? 100.0 * (wall - in_ops) / wall : 0.0);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* What the command line asked for. */
typedef struct gen_opts {
    const char *model, *tokenizer, *device, *prompt, *stop, *threads_s;
    long long max_tokens, threads;
    kern_dtype kv_dtype;
    eng_sampler_cfg sc;
    int profile;
    int prefill_bf16;   /* --prefill-precision bf16 */
} gen_opts;

/* Fills o; returns -1 to go on, else the exit status (0 after --help, 2 on a bad flag). */
static int parse_opts(int argc, char **argv, gen_opts *o)
{
    claq_arg spec[] = {
        {"--model", 1, NULL, "model: llama2.c .bin, HF directory or packed .claq file (required)"},
        {"--tokenizer", 1, NULL, "tokenizer file (llama2.c checkpoints need one)"},
        {"--prompt", 1, NULL, "prompt text (default: empty, start from BOS)"},
        {"--max-tokens", 1, NULL, "tokens to generate (default 128)"},
        {"--temperature", 1, NULL, "0 = greedy (default 1.0)"},
        {"--top-p", 1, NULL, "nucleus sampling mass (default 1 = off)"},
        {"--top-k", 1, NULL, "keep the k most likely tokens (default 0 = off)"},
        {"--min-p", 1, NULL, "keep tokens with p >= min_p * p_max (default 0 = off)"},
        {"--repetition-penalty", 1, NULL, "CTRL-style penalty (default 1 = off)"},
        {"--seed", 1, NULL, "RNG seed (default: time)"},
        {"--stop", 1, NULL, "stop when this text is generated"},
        {"--device", 1, NULL, "cpu (default), cuda, or auto (cuda when a GPU is present)"},
        {"--kv-dtype", 1, NULL, "KV cache entries: f32 (default) or f16 (half the memory)"},
        {"--threads", 1, NULL, "worker threads (default: one per core)"},
        {"--prefill-precision", 1, NULL, CLAQ_PREFILL_PRECISION_HELP},
        {"--profile", 0, NULL, "also print where prompt and decode time went, by kind of kernel "
                               "op (host wall time; on a GPU, submission time)"},
        {"--help", 0, NULL, "this text"},
    };
    const int ns = (int)(sizeof spec / sizeof spec[0]);
    if (claq_args_parse("generate", spec, ns, argc, argv)) return 2;
    if (claq_arg_get(spec, ns, "--help") || !claq_arg_get(spec, ns, "--model")) {
        claq_args_usage("generate",
                        "--model PATH [--tokenizer PATH] --prompt TEXT --max-tokens N ...",
                        spec, ns);
        return claq_arg_get(spec, ns, "--help") ? 0 : 2;
    }
    long long top_k = 0, seed = (long long)time(NULL);
    double temp = 1.0, top_p = 1.0, min_p = 0.0, rep = 1.0;
    const char *v;
    o->max_tokens = 128;
    o->threads = 0;
    o->kv_dtype = KERN_F32;
    if ((v = claq_arg_get(spec, ns, "--kv-dtype")) && eng_kv_dtype_parse(v, &o->kv_dtype)) {
        fprintf(stderr, "claq generate: --kv-dtype must be f32 or f16, not '%s'\n", v);
        return 2;
    }
    if ((v = claq_arg_get(spec, ns, "--max-tokens")) &&
        claq_parse_int("--max-tokens", v, 0, 1 << 24, &o->max_tokens))
        return 2;
    if ((v = claq_arg_get(spec, ns, "--top-k")) &&
        claq_parse_int("--top-k", v, 0, ENG_TOP_K_MAX, &top_k))
        return 2;
    if ((v = claq_arg_get(spec, ns, "--threads")) &&
        claq_parse_int("--threads", v, 0, 256, &o->threads))
        return 2;
    if ((v = claq_arg_get(spec, ns, "--seed")) &&
        claq_parse_int("--seed", v, 0, 0x7fffffffffffffffLL, &seed))
        return 2;
    if ((v = claq_arg_get(spec, ns, "--temperature")) &&
        claq_parse_float("--temperature", v, 0, ENG_TEMPERATURE_MAX, &temp))
        return 2;
    if ((v = claq_arg_get(spec, ns, "--top-p")) && claq_parse_float("--top-p", v, 1e-6, 1, &top_p))
        return 2;
    if ((v = claq_arg_get(spec, ns, "--min-p")) && claq_parse_float("--min-p", v, 0, 1, &min_p))
        return 2;
    if ((v = claq_arg_get(spec, ns, "--repetition-penalty")) &&
        claq_parse_float("--repetition-penalty", v, ENG_REPETITION_MIN, ENG_REPETITION_MAX, &rep))
        return 2;
    o->model = claq_arg_get(spec, ns, "--model");
    o->tokenizer = claq_arg_get(spec, ns, "--tokenizer");
    o->device = claq_arg_get(spec, ns, "--device");
    o->prompt = claq_arg_get(spec, ns, "--prompt");
    if (!o->prompt) o->prompt = "";
    o->stop = claq_arg_get(spec, ns, "--stop");
    if (o->stop && !o->stop[0]) {   /* an empty stop string would end before the first token */
        fprintf(stderr, "claq generate: --stop must not be empty\n");
        return 2;
    }
    o->threads_s = o->threads > 0 ? claq_arg_get(spec, ns, "--threads") : "all";
    o->profile = claq_arg_get(spec, ns, "--profile") != NULL;
    if (claq_parse_prefill_precision("generate", claq_arg_get(spec, ns, "--prefill-precision"),
                                     &o->prefill_bf16))
        return 2;
    eng_sampler_cfg_default(&o->sc);
    o->sc.temperature = (float)temp;
    o->sc.top_p = (float)top_p;
    o->sc.top_k = (int)top_k;
    o->sc.min_p = (float)min_p;
    o->sc.repetition_penalty = (float)rep;
    o->sc.seed = (uint64_t)seed;
    return -1;
}

/* BOS + the prompt into *toks (malloc'd), and the positions the run may use (*total: prompt +
 * max_tokens, cut to the model's context). 0, or 1 after printing why (err set: an encoder
 * failure). */
static int prompt_tokens(const claq_session *s, const gen_opts *o, int32_t **toks,
                         size_t *n_prompt, int64_t *total, eng_err *err)
{
    const eng_config *cfg = &s->model->cfg;
    int bos = eng_tokenizer_bos(s->tok);
    if (eng_tokenizer_encode_alloc(s->tok, o->prompt, strlen(o->prompt), bos >= 0, 0, toks,
                                   n_prompt, err))
        return 1;
    if (*n_prompt == 0) { /* no BOS in this vocabulary and an empty prompt */
        fprintf(stderr, "claq generate: empty prompt and the tokenizer has no BOS token\n");
        return 1;
    }
    *total = (int64_t)*n_prompt + o->max_tokens;
    if ((int64_t)*n_prompt > cfg->seq_len) {
        fprintf(stderr, "claq generate: the prompt alone is %zu tokens, the context is %d\n",
                *n_prompt, cfg->seq_len);
        return 1;
    }
    if (*total > cfg->seq_len) {
        fprintf(stderr, "claq generate: prompt (%zu tokens) + --max-tokens %lld exceeds the "
                        "model's context of %d; generating up to the context\n", *n_prompt,
                o->max_tokens, cfg->seq_len);
        *total = cfg->seq_len;
    }
    return 0;
}

/* Sample, print, step: from the prompt's logits until the budget, a stop or the context ends.
 * *steps counts the decode forwards. Returns 0 or an engine error (err set). */
static int decode(claq_session *s, eng_gen *gen, eng_seq *seq, const gen_opts *o, int pos,
                  int64_t total, float *logits, char *text, long long *generated,
                  long long *steps, eng_err *err)
{
    /* Plain greedy needs no logits on the host: the backend picks (eng_sampler's greedy rule), so
     * on a device only the id crosses back. */
    const int backend_picks = o->sc.temperature <= 0.0f && o->sc.repetition_penalty == 1.0f;
    /* A device that samples (kern_sample) applies the penalties and picks by temperature,
     * top-k, top-p and min-p from the draw the sampler would take next: again only the id
     * crosses back, unless the device leaves the row to the host (-2: its adjusted logits come
     * back and the sampler takes that draw). */
    const int backend_samples = !backend_picks && kern_has_sample(&s->be);
    const int draws = eng_sampler_draws(&gen->sampler);
    const int adj_cap = gen->sampler.vocab + o->sc.n_bias;   /* every entry there can be */
    kern_sample_adj *adj = backend_samples ? malloc((size_t)adj_cap * sizeof *adj) : NULL;
    if (backend_samples && !adj) return eng_err_set(err, ENG_E_NOMEM, "out of memory");
    int32_t picked = -1;   /* the backend's pick for the step just run, or -1: sample logits */
    int adjusted = 0;      /* 1: logits came back adjusted by the backend (-2) */
    int rc = 0;
    while (*generated < o->max_tokens && pos < total) {
        int32_t next = picked >= 0 ? picked
                       : adjusted  ? eng_sampler_sample_adjusted(&gen->sampler, logits, NULL)
                                   : eng_sampler_sample(&gen->sampler, logits, NULL);
        if (next < 0) {
            rc = eng_err_set(err, ENG_E_RANGE, "sampling failed (non-finite logits?)");
            break;
        }
        (*generated)++;
        size_t nt;
        eng_gen_end end = eng_gen_push(gen, next, text, ENG_GEN_TEXT_CAP, &nt);
        fwrite(text, 1, nt, stdout);
        fflush(stdout);
        if (end != ENG_GEN_GOING || pos + 1 >= total) break;
        if (eng_kv_reserve(&s->kv, seq, pos + 1)) {
            rc = eng_err_set(err, ENG_E_FULL, "kv cache full");
            break;
        }
        eng_batch_item it = {next, pos, seq, 1, 0};
        const int on_backend = backend_picks || backend_samples;
        kern_sample_params sp = {0};
        int n_adj = 0;
        if (backend_samples &&
            (n_adj = eng_sampler_device_params(&gen->sampler, -1, adj, adj_cap, 0, &sp)) < 0) {
            rc = eng_err_set(err, ENG_E_FULL, "too many sampling adjustments");
            break;
        }
        eng_forward_out fo = {.logits = on_backend ? NULL : logits,
                              .argmax = on_backend ? &picked : NULL,
                              .sample = backend_samples ? &sp : NULL,
                              .sample_logits = logits,
                              .sample_adj = n_adj ? adj : NULL,
                              .n_sample_adj = n_adj};
        picked = -1;
        adjusted = 0;
        if ((rc = eng_forward_ex(s->ctx, &s->kv, &it, 1, &fo, err))) break;
        if (backend_samples && picked == -2) {
            picked = -1;   /* the host samples the row it got back, with the same draw */
            adjusted = 1;
        } else if (backend_samples && picked >= 0 && draws) {
            eng_sampler_skip_uniform(&gen->sampler);
        } else if (on_backend && picked < 0) {
            rc = eng_err_set(err, ENG_E_RANGE, "sampling failed (non-finite logits?)");
            break;
        }
        (*steps)++;
        pos++;
    }
    free(adj);
    if (rc) return rc;
    fwrite(text, 1, eng_gen_flush(gen, text, ENG_GEN_TEXT_CAP), stdout);
    fputc('\n', stdout);
    fflush(stdout);
    return 0;
}

/* The stderr report: rates, memory, and (a device backend) bus traffic. x[0..2]: transfer
 * counters before the prompt, after it, after decode; t[0..2] the same instants. */
static void report(const claq_session *s, const gen_opts *o, size_t n_prompt,
                   long long generated, long long steps, const double t[3],
                   const kern_xfer_stats x[3])
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    fprintf(stderr, "prompt: %zu tokens in %.3f s (%.1f tok/s); generated: %lld tokens in %.3f s "
                    "(%.1f tok/s); %s backend, %s kernels, %s threads; peak RSS %.1f MiB\n",
            n_prompt, t[1] - t[0], (double)n_prompt / (t[1] - t[0] + 1e-9), generated,
            t[2] - t[1], (double)generated / (t[2] - t[1] + 1e-9), s->be.ops->name,
            kern_cpu_isa_name(&s->be), o->threads_s, (double)ru.ru_maxrss / 1024.0);
    if (x[2].h2d_bytes) {   /* a device backend: what crossed the bus, and where */
        const double per = steps > 0 ? (double)steps : 1.0;
        fprintf(stderr, "device copies: weights %.1f MiB at load; prompt %.1f KiB host->device; "
                        "per decode step %.1f KiB host->device (of which weights %.1f KiB), "
                        "%.1f KiB device->host\n",
                (double)eng_resident_uploaded_bytes(s->res) / 1048576.0,
                (double)(x[1].h2d_bytes - x[0].h2d_bytes) / 1024.0,
                (double)(x[2].h2d_bytes - x[1].h2d_bytes) / 1024.0 / per,
                (double)(x[2].weight_h2d_bytes - x[1].weight_h2d_bytes) / 1024.0 / per,
                (double)(x[2].d2h_bytes - x[1].d2h_bytes) / 1024.0 / per);
    }
}

int claq_cmd_generate(int argc, char **argv)
{
    gen_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc >= 0) return rc;
    claq_session s;
    if (claq_session_open(&s, "generate", o.model, o.tokenizer, 1, o.device, (int)o.threads, 256,
                          0))
        return 1;
    if (claq_session_set_prefill_bf16(&s, "generate", o.prefill_bf16)) {
        claq_session_close(&s);
        return 2;
    }
    int ret = 1, vocab = s.model->cfg.vocab_size;
    eng_err err = {0};
    eng_gen gen;
    eng_gen_init(&gen, o.max_tokens > INT_MAX ? INT_MAX : (int)o.max_tokens);
    eng_seq seq = {0};
    int32_t *toks = NULL;
    float *logits = NULL;
    char *text = NULL;
    size_t n_prompt = 0;
    int64_t total = 0;
    if (prompt_tokens(&s, &o, &toks, &n_prompt, &total, &err)) {
        if (err.msg[0]) goto fail;
        goto out;
    }
    if (eng_kv_init_on(&s.kv, &s.model->cfg, total, o.kv_dtype, &s.be, &err)) goto fail;
    if (eng_gen_set_stops(&gen, o.stop ? &o.stop : NULL, o.stop ? 1 : 0, &err)) goto fail;
    eng_gen_add_model_stop_ids(&gen, s.model, s.tok);
    if (eng_gen_start(&gen, &o.sc, vocab, s.tok, toks, (int)n_prompt, &err)) goto fail;
    logits = malloc((size_t)vocab * sizeof(float));
    text = malloc(ENG_GEN_TEXT_CAP);
    if (!logits || !text) {
        eng_err_set(&err, ENG_E_NOMEM, "out of memory");
        goto fail;
    }

    fputs(o.prompt, stdout);
    fflush(stdout);
    kern_xfer_stats x[3];
    double t[3];
    kern_profile prof_prompt = {{0}, {0}}, prof_decode = {{0}, {0}};
    long long generated = 0, steps = 0;
    if (o.profile) s.be.prof = &prof_prompt;
    kern_get_xfer_stats(&s.be, &x[0]);
    t[0] = now_s();
    if (claq_session_prefill(&s, &seq, toks, (int)n_prompt, 0, 0, logits, &err)) goto fail;
    t[1] = now_s();
    if (o.profile) s.be.prof = &prof_decode;
    kern_get_xfer_stats(&s.be, &x[1]);
    if (decode(&s, &gen, &seq, &o, (int)n_prompt, total, logits, text, &generated, &steps, &err))
        goto fail;
    t[2] = now_s();
    s.be.prof = NULL;
    kern_get_xfer_stats(&s.be, &x[2]);
    report(&s, &o, n_prompt, generated, steps, t, x);
    if (o.profile) {
        print_profile("prompt", &prof_prompt, t[1] - t[0], (long long)n_prompt, "token");
        print_profile("decode", &prof_decode, t[2] - t[1], steps, "step");
    }
    ret = 0;
    goto out;
fail:
    fprintf(stderr, "claq generate: %s\n", err.msg);
out:
    s.be.prof = NULL;
    eng_kv_release(&s.kv, &seq);
    free(text);
    free(logits);
    free(toks);
    eng_gen_free(&gen);
    claq_session_close(&s);
    return ret;
}
