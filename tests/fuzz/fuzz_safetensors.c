/* fuzz_safetensors.c — libFuzzer target: the safetensors parser (8-byte header length, JSON
 * header, every offset, dtype and shape checked against the buffer) on arbitrary bytes, then a
 * lookup of every tensor it accepted. Single-threaded. */
#include <stdint.h>

#include "eng_safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    eng_st_set s = {0};
    eng_err err = {0};
    if (eng_st_parse(&s, "fuzz.safetensors", data, size, &err) == 0)
        for (int i = 0; i < s.n_tensors; i++)
            if (eng_st_find(&s, s.tensors[i].name) != &s.tensors[i]) __builtin_trap();
    eng_st_free(&s);
    return 0;
}
