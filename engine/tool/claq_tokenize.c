/* claq_tokenize.c — `claq tokenize`: prints the token ids of --text, BOS first unless --no-bos.
 * Needs no weights when --tokenizer is given; with only --model it uses the model's tokenizer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "claq_tool.h"
#include "eng_model.h"
#include "eng_tokenizer.h"

int claq_cmd_tokenize(int argc, char **argv)
{
    claq_arg spec[] = {
        {"--model", 1, NULL, "model whose tokenizer to use"},
        {"--tokenizer", 1, NULL, "tokenizer file (no weights are loaded)"},
        {"--text", 1, NULL, "text to tokenize (required)"},
        {"--no-bos", 0, NULL, "do not prepend BOS"},
        {"--special", 0, NULL, "turn special-token text (e.g. <|im_start|>) into their ids"},
        {"--decode", 0, NULL, "also print the text decoded back from the ids on a second line"},
        {"--help", 0, NULL, "this text"},
    };
    const int ns = (int)(sizeof spec / sizeof spec[0]);
    if (claq_args_parse("tokenize", spec, ns, argc, argv)) return 2;
    const char *text = claq_arg_get(spec, ns, "--text");
    const char *mpath = claq_arg_get(spec, ns, "--model"), *tpath = claq_arg_get(spec, ns, "--tokenizer");
    if (claq_arg_get(spec, ns, "--help") || !text || (!mpath && !tpath)) {
        claq_args_usage("tokenize", "[--model PATH] [--tokenizer PATH] --text TEXT [--no-bos]", spec, ns);
        return claq_arg_get(spec, ns, "--help") ? 0 : 2;
    }
    eng_err err = {0};
    eng_model *m = NULL;
    eng_tokenizer *tok = NULL;
    int ret = 1;
    int32_t *ids = NULL;
    char *dec = NULL;
    if (tpath) {
        if (eng_tokenizer_open(&tok, tpath, 0, &err)) goto fail;
    } else {
        if (eng_model_open(&m, mpath, &err) || eng_model_open_tokenizer(m, NULL, &tok, &err)) goto fail;
    }
    size_t n = 0;
    int add_bos = !claq_arg_get(spec, ns, "--no-bos") && eng_tokenizer_bos(tok) >= 0;
    if (eng_tokenizer_encode_alloc(tok, text, strlen(text), add_bos,
                                   claq_arg_get(spec, ns, "--special") != NULL, &ids, &n, &err))
        goto fail;
    for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    printf("\n");
    if (claq_arg_get(spec, ns, "--decode")) {
        size_t need = eng_tokenizer_decode(tok, ids, n, 1, NULL, 0);
        dec = malloc(need + 1);
        if (!dec) { eng_err_set(&err, ENG_E_NOMEM, "out of memory"); goto fail; }
        eng_tokenizer_decode(tok, ids, n, 1, dec, need + 1);
        printf("%s\n", dec);
    }
    ret = 0;
    goto out;
fail:
    fprintf(stderr, "claq tokenize: %s\n", err.msg);
out:
    free(dec);
    free(ids);
    eng_tokenizer_close(tok);
    eng_model_close(m);
    return ret;
}
