/* test_claq_file_pack_roundtrip.c — pack -> unpack reproduces eng_qmatrix_dequant BIT FOR BIT
 * (random qmatrices with mixed 2/3/4-bit columns, outliers, odd shapes rows 1, 7, 33, 100, 130
 * x cols 1, 3, 17, 130), the packed view passes eng_claq_validate, the column grouping is
 * 4-bit then 3-bit then 2-bit in ascending original order, every outlier lands in row-CSR
 * ascending by storage column, and byte accounting adds up. Also: the packer rejects a code
 * >= 2^bits, bits outside 2..4 and unsorted/duplicate outliers with a message; codes spilled
 * to a temp file read and pack the same. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eng_claq_file.h"
#include "kern_half.h"

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, \
    __LINE__); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

static int make_q(eng_qmatrix *q, int64_t rows, int64_t cols, int out_every)
{
    if (eng_qmatrix_alloc(q, rows, cols, NULL)) return -1;
    for (int64_t j = 0; j < cols; j++) {
        q->bits[j] = (uint8_t)(2 + rnd() % 3);
        int K = 1 << q->bits[j];
        for (int e = 0; e < ENG_QM_CB; e++)
            q->codebook[j * ENG_QM_CB + e] = kern_f32_to_f16((float)((e < K ? e : K - 1) - K / 2) *
                                                             (0.01f + (float)(rnd() % 100) * 1e-4f));
        for (int64_t r = 0; r < rows; r++) q->codes[r * cols + j] = (uint8_t)(rnd() % (uint32_t)K);
    }
    for (int64_t j = 0; j < cols; j++)
        for (int64_t r = 0; r < rows; r++)
            if (out_every && rnd() % (uint32_t)out_every == 0 &&
                eng_qmatrix_add_outlier(q, (uint32_t)r, (uint32_t)j,
                                        kern_f32_to_f16((float)((int)(rnd() % 2001) - 1000) * 1e-3f)))
                return -1;
    return 0;
}

static void roundtrip(int64_t rows, int64_t cols, int out_every)
{
    eng_qmatrix q;
    eng_claq_packed p;
    eng_err err = {0};
    if (make_q(&q, rows, cols, out_every)) { CHECK(0, "alloc"); return; }
    int rc = eng_claq_pack(&q, "m", &p, &err);
    CHECK(rc == 0, "pack %lldx%lld: %s", (long long)rows, (long long)cols, err.msg);
    if (rc) { eng_qmatrix_free(&q); return; }
    const kern_claq *k = &p.view;
    CHECK(eng_claq_validate(k, "mem", "m", &err) == 0, "validate: %s", err.msg);
    size_t nb = sizeof(float) * (size_t)(rows * cols);
    float *a = malloc(nb), *b = malloc(nb);
    memset(a, 0x7f, sizeof(float) * (size_t)(rows * cols));
    eng_qmatrix_dequant(&q, a);
    eng_claq_unpack(k, b);
    CHECK(memcmp(a, b, sizeof(float) * (size_t)(rows * cols)) == 0, "unpack != dequant %lldx%lld",
          (long long)rows, (long long)cols);
    /* Grouping: widths non-increasing along storage order, ascending within a width. */
    int64_t prev_bits = 5, prev_j = -1;
    for (int64_t s = 0; s < k->cols_pad; s++) {
        uint32_t j = k->colmap[s];
        if (j == KERN_CLAQ_PAD) continue;
        int bw = q.bits[j];
        CHECK(bw == kern_claq_block_bits(k, s / KERN_CLAQ_COL_BLOCK), "column %u in wrong group", j);
        CHECK(bw < prev_bits || (bw == prev_bits && (int64_t)j > prev_j), "order at %lld", (long long)s);
        prev_bits = bw;
        prev_j = j;
    }
    CHECK(k->nnz == q.n_outliers, "nnz");
    eng_claq_stats st;
    int64_t stored = 0;
    for (int s = 0; s < ENG_CLAQ_NSEC; s++) stored += (int64_t)((p.sec_len[s] + 63) / 64 * 64);
    eng_claq_stats_of(k, p.sec_len, stored, &st);
    CHECK(st.cols_by_bits[2] + st.cols_by_bits[3] + st.cols_by_bits[4] == cols, "histogram");
    CHECK(st.other_bytes >= 0 && st.true_bpw > st.nominal_bits, "accounting");
    free(a);
    free(b);
    eng_claq_packed_free(&p);
    eng_claq_packed_free(&p); /* idempotent */
    eng_qmatrix_free(&q);
}

static void rejects(void)
{
    eng_qmatrix q;
    eng_claq_packed p;
    eng_err err = {0};
    make_q(&q, 9, 5, 0);
    q.codes[3 * 5 + 2] = (uint8_t)(1 << q.bits[2]);
    CHECK(eng_claq_pack(&q, "bad_code", &p, &err) == ENG_E_INVAL && strstr(err.msg, "bad_code"),
          "code out of range accepted: %s", err.msg);
    q.codes[3 * 5 + 2] = 0;
    q.bits[1] = 5;
    CHECK(eng_claq_pack(&q, "bad_bits", &p, &err) == ENG_E_INVAL, "bits 5 accepted");
    q.bits[1] = 1;
    CHECK(eng_claq_pack(&q, "bad_bits", &p, &err) == ENG_E_INVAL, "bits 1 accepted");
    q.bits[1] = 2;
    q.codes[0 * 5 + 1] &= 3;
    for (int r = 0; r < 9; r++) q.codes[r * 5 + 1] &= 3;
    eng_qmatrix_add_outlier(&q, 4, 3, 0x3c00);
    eng_qmatrix_add_outlier(&q, 4, 3, 0x3c00);
    CHECK(eng_claq_pack(&q, "dup", &p, &err) == ENG_E_INVAL, "duplicate outlier accepted");
    q.n_outliers = 1;
    eng_qmatrix_add_outlier(&q, 9, 4, 0x3c00);
    CHECK(eng_claq_pack(&q, "oob", &p, &err) == ENG_E_INVAL, "outlier row out of range accepted");
    q.n_outliers = 1;
    CHECK(eng_claq_pack(&q, "ok", &p, &err) == 0, "valid matrix rejected: %s", err.msg);
    eng_claq_packed_free(&p);
    eng_qmatrix_free(&q);
}

/* Codes spilled to a temp file (the quantizer does it to each finished layer) read back the
 * same, also after their pages were evicted, pack to the same bytes, and are freed by
 * eng_qmatrix_free; a spill into a missing directory fails with a message, q unchanged. */
static void spill(void)
{
    eng_qmatrix q;
    eng_claq_packed a, b;
    eng_err err = {0};
    if (make_q(&q, 300, 1000, 50)) { CHECK(0, "alloc"); return; }
    size_t n = 300 * 1000;
    uint8_t *copy = malloc(n);
    memcpy(copy, q.codes, n);
    CHECK(eng_claq_pack(&q, "m", &a, &err) == 0, "pack: %s", err.msg);
    uint8_t *heap = q.codes;
    CHECK(eng_qmatrix_spill_codes(&q, "/nonexistent-claq-dir", &err) == ENG_E_IO &&
          strstr(err.msg, "/nonexistent-claq-dir") && q.codes == heap && q.codes_map == 0,
          "spill into a missing dir: rc/msg '%s'", err.msg);
    CHECK(eng_qmatrix_spill_codes(&q, NULL, &err) == 0, "spill: %s", err.msg);
    CHECK(q.codes_map == n && q.codes != heap, "codes not mapped");
    CHECK(memcmp(q.codes, copy, n) == 0, "spilled codes differ");
    eng_qmatrix_evict_codes(&q);
    CHECK(memcmp(q.codes, copy, n) == 0, "codes differ after eviction");
    CHECK(eng_claq_pack(&q, "m", &b, &err) == 0, "pack spilled: %s", err.msg);
    for (int s = 0; s < ENG_CLAQ_NSEC; s++)
        CHECK(a.sec_len[s] == b.sec_len[s] &&
              memcmp((char *)a.buf + a.sec_off[s], (char *)b.buf + b.sec_off[s], a.sec_len[s]) == 0,
              "section %d packs differently from spilled codes", s);
    CHECK(eng_qmatrix_spill_codes(&q, NULL, &err) == 0 && q.codes_map == n, "second spill");
    eng_claq_packed_free(&a);
    eng_claq_packed_free(&b);
    eng_qmatrix_free(&q);
    CHECK(q.codes == NULL && q.codes_map == 0, "free left codes");
    free(copy);
}

int main(void)
{
    const int64_t rows[] = {1, 7, 33, 64, 100, 130};
    const int64_t cols[] = {1, 3, 17, 32, 130};
    for (unsigned a = 0; a < sizeof rows / sizeof rows[0]; a++)
        for (unsigned b = 0; b < sizeof cols / sizeof cols[0]; b++) {
            roundtrip(rows[a], cols[b], 0);
            roundtrip(rows[a], cols[b], 20);
            roundtrip(rows[a], cols[b], 2);
        }
    roundtrip(300, 1000, 50);
    rejects();
    spill();
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("ok: pack -> unpack bit-exact on all shapes; bad qmatrices rejected\n");
    return 0;
}
