/* test_kern_attn_sum_matches_ref.c — the CPU attention's inner kernels equal their scalar
 * references BIT FOR BIT on every ISA this CPU has: the weighted sum of value rows (wsum, fp32
 * and fp16 rows; head sizes 1..200 so every vector width and scalar tail runs; 1 to 300
 * positions scattered in memory as a block table scatters them), its four-head form (wsum4)
 * against four single sums, and the four-head dot product (dot4) against four single dots. The attention's grouping of query heads and its per-head
 * order rest on these two equalities (kernels/cpu/kern_cpu.c). Random inputs, fixed seed; any
 * single differing bit fails. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern_cpu_impl.h"
#include "kern_half.h"
#include "kern_test_util.h"

enum { MAX_LEN = 300, MAX_N = 200, POOL_ROWS = 512 };

int main(void)
{
    test_seed(0x2545f4914f6cdd1dull);
    /* A pool of rows, each position pointing at a random one (as block tables scatter them). */
    float *pool32 = malloc(sizeof(float) * POOL_ROWS * MAX_N);
    uint16_t *pool16 = malloc(sizeof(uint16_t) * POOL_ROWS * MAX_N);
    const void **r32 = malloc(sizeof(void *) * MAX_LEN), **r16 = malloc(sizeof(void *) * MAX_LEN);
    float *w = malloc(sizeof(float) * MAX_LEN), *ref = malloc(sizeof(float) * MAX_N);
    float *got = malloc(sizeof(float) * MAX_N), *x = malloc(sizeof(float) * 4 * MAX_N);
    if (!pool32 || !pool16 || !r32 || !r16 || !w || !ref || !got || !x) return 1;
    for (int i = 0; i < POOL_ROWS * MAX_N; i++) {
        pool32[i] = frnd() * 4.0f;
        pool16[i] = kern_f32_to_f16(frnd() * 4.0f);
    }
    for (int i = 0; i < 4 * MAX_N; i++) x[i] = frnd();
    static const int ns[] = {1, 7, 8, 15, 16, 24, 33, 64, 72, 96, 128, 200};
    static const int lens[] = {1, 2, 5, 17, 300};
    int checked = 0;
    for (unsigned li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        int len = lens[li];
        float sum = 0.0f;
        for (int p = 0; p < len; p++) {   /* softmax-like weights: positive, summing to ~1 */
            w[p] = (float)(rnd() % 1000 + 1);
            sum += w[p];
        }
        for (int p = 0; p < len; p++) w[p] /= sum;
        for (unsigned ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            int n = ns[ni];
            for (int p = 0; p < len; p++) {
                int row = (int)(rnd() % POOL_ROWS);
                r32[p] = pool32 + (int64_t)row * MAX_N;
                r16[p] = pool16 + (int64_t)row * MAX_N;
            }
            for (int dt = 0; dt < 2; dt++) {
                kern_dtype dtype = dt ? KERN_F16 : KERN_F32;
                const void *const *rows = dt ? r16 : r32;
                if (dt) kern_cpu__wsum_f16_ref(ref, w, rows, len, n);
                else kern_cpu__wsum_f32_ref(ref, w, rows, len, n);
                for (int isa = KERN_ISA_SCALAR; isa <= KERN_ISA_AVX512; isa++) {
                    if (!have_isa((kern_isa)isa)) continue;
                    kern_wsum_fn f = kern_cpu__wsum_fn((kern_isa)isa, dtype);
                    int64_t at = 0;
                    memset(got, 0xff, sizeof(float) * MAX_N);
                    CHECK(f != NULL, "%s wsum %s missing", kern_isa_name((kern_isa)isa),
                          dt ? "f16" : "f32");
                    if (!f) continue;
                    f(got, w, rows, len, n);
                    CHECK(same_bits(got, ref, n, &at), "%s wsum %s len %d n %d: element %lld "
                          "%.9g vs ref %.9g", kern_isa_name((kern_isa)isa), dt ? "f16" : "f32",
                          len, n, (long long)at, got[at], ref[at]);
                    checked++;
                }
                /* wsum4: four heads' weights over the same rows = four wsums, on every ISA */
                for (int isa = KERN_ISA_SCALAR; isa <= KERN_ISA_AVX512; isa++) {
                    if (!have_isa((kern_isa)isa)) continue;
                    kern_wsum4_fn f4 = kern_cpu__wsum4_fn((kern_isa)isa, dtype);
                    kern_wsum_fn f1 = kern_cpu__wsum_fn((kern_isa)isa, dtype);
                    if (!f4 || !f1) continue;
                    float *w4 = malloc(sizeof(float) * 4 * (size_t)len);
                    float *o4 = malloc(sizeof(float) * 4 * MAX_N), *o1 = malloc(sizeof(float) * MAX_N);
                    if (!w4 || !o4 || !o1) return 1;
                    for (int i = 0; i < 4 * len; i++) w4[i] = frnd();
                    memset(o4, 0xff, sizeof(float) * 4 * MAX_N);
                    f4(o4, MAX_N, w4, len, rows, len, n);
                    for (int h = 0; h < 4; h++) {
                        int64_t at = 0;
                        f1(o1, w4 + (int64_t)h * len, rows, len, n);
                        CHECK(same_bits(o4 + (int64_t)h * MAX_N, o1, n, &at), "%s wsum4 %s len %d "
                              "n %d head %d: element %lld", kern_isa_name((kern_isa)isa),
                              dt ? "f16" : "f32", len, n, h, (long long)at);
                    }
                    free(w4); free(o4); free(o1);
                    checked++;
                }
                /* dot4 of one row against four query vectors = four dots, on every ISA */
                for (int isa = KERN_ISA_SCALAR; isa <= KERN_ISA_AVX512; isa++) {
                    if (!have_isa((kern_isa)isa)) continue;
                    kern_dot4_fn d4 = kern_cpu__dot4_fn((kern_isa)isa, dtype);
                    kern_dot_fn d1 = kern_cpu__dot_fn((kern_isa)isa, dtype);
                    if (!d4 || !d1) continue;
                    float o4[4];
                    d4(rows[0], x, n, n, o4);
                    for (int j = 0; j < 4; j++) {
                        float o1 = d1(rows[0], x + (int64_t)j * n, n);
                        CHECK(!memcmp(&o1, &o4[j], sizeof o1), "%s dot4 %s n %d head %d: %.9g "
                              "vs dot %.9g", kern_isa_name((kern_isa)isa), dt ? "f16" : "f32",
                              n, j, o4[j], o1);
                    }
                    checked++;
                }
            }
        }
    }
    printf("%d kernel/shape cases checked (best ISA here: %s)\n", checked,
           kern_isa_name(kern_cpu_detect_isa()));
    free(pool32); free(pool16); free(r32); free(r16); free(w); free(ref); free(got); free(x);
    if (failures) fprintf(stderr, "%d failures\n", failures);
    return failures ? 1 : 0;
}
