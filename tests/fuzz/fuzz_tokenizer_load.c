/* fuzz_tokenizer_load.c — libFuzzer target: the three tokenizer loaders on arbitrary bytes, as
 * tokenizer.json, tokenizer.model (protobuf) or llama2.c tokenizer.bin (byte 0 picks, and the
 * vocab size hint of a .bin), then a short encode / decode with whatever loaded. Seeds in
 * tests/fuzz/corpus/tokenizer_load are small hand-made tokenizers. Single-threaded. */
#include <stdint.h>
#include <string.h>

#include "eng_tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    static const char *names[3] = {"tokenizer.json", "tokenizer.model", "tokenizer.bin"};
    const int kind = data[0] % 3;
    const int hint = kind == 2 ? 1 + data[0] / 3 : 0;
    eng_tokenizer *t = NULL;
    eng_err err = {0};
    if (eng_tokenizer_open_buffer(&t, names[kind], data + 1, size - 1, hint, &err)) return 0;
    static const char text[] = "Hello world, <s> \xe2\x96\x81 caf\xc3\xa9 \xff 12345 <|im_end|>\n";
    int32_t ids[256];
    size_t n = 0;
    (void)eng_tokenizer_encode(t, text, sizeof text - 1, 1, 1, ids, 256, &n, &err);
    if (n > 256) n = 256;
    char out[2048];
    (void)eng_tokenizer_decode(t, ids, n, 1, out, sizeof out);
    const int v = eng_tokenizer_vocab_size(t);
    for (int id = -1; id <= v && id < 64; id++) {
        (void)eng_tokenizer_piece(t, id);
        (void)eng_tokenizer_token_bytes(t, 1, id, out, 256);
    }
    eng_tokenizer_close(t);
    return 0;
}
