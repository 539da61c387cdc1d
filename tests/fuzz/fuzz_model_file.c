/* fuzz_model_file.c — libFuzzer target: eng_model_open on a file holding arbitrary bytes, which
 * dispatches on content like the server does: "CLAQ" magic -> the packed CLAQ reader (header,
 * section table, every matrix's codes, codebooks and outliers validated), else the llama2.c
 * checkpoint reader. The input is written to one temporary file per process, removed at exit. Seeds in
 * tests/fuzz/corpus/model_file are small files claq itself writes (run.sh makes them).
 * Single-threaded. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "eng_model.h"

static char path[64];

static void remove_input_file(void) { unlink(path); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/claq-fuzz-model-%d.bin", (int)getpid());
        atexit(remove_input_file);   /* one file per process; it was left in /tmp */
    }
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    if (fclose(f)) abort();
    eng_model *m = NULL;
    eng_err err = {0};
    if (eng_model_open(&m, path, &err) == 0) eng_model_close(m);
    return 0;
}
