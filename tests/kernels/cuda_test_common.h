/* cuda_test_common.h — helpers shared by the test_kern_cuda_*.c programs: opening the CUDA backend
 * or skipping (exit 77 with the reason) when the build has no CUDA or the machine no GPU, the
 * scalar CPU backend used as the oracle, a seeded RNG, NaN poisoning and a CHECK macro that
 * counts failures. Header-only, one test program per process (the RNG state is per program). */
#ifndef CUDA_TEST_COMMON_H
#define CUDA_TEST_COMMON_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern.h"
#ifdef CLAQ_HAVE_CUDA
#include "kern_cuda.h"
#endif

static uint64_t ct_rng = 0x2545f4914f6cdd1dull;
static inline uint32_t ct_rnd(void)
{
    ct_rng ^= ct_rng << 13;
    ct_rng ^= ct_rng >> 7;
    ct_rng ^= ct_rng << 17;
    return (uint32_t)(ct_rng >> 11);
}
static inline float ct_frnd(void) { return (float)(ct_rnd() >> 8) / 16777216.0f * 2.0f - 1.0f; }

static int ct_failures;
#define CT_CHECK(cond, ...)                                                                    \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            if (ct_failures < 40) {                                                            \
                fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                           \
                fprintf(stderr, __VA_ARGS__);                                                  \
                fputc('\n', stderr);                                                           \
            }                                                                                  \
            ct_failures++;                                                                     \
        }                                                                                      \
    } while (0)

/* Fills with quiet NaNs so an output the kernel never wrote cannot pass a comparison. */
static inline void ct_poison(float *p, size_t n) { memset(p, 0xff, n * sizeof(float)); }

/* |a - b| <= tol, written so that NaN in either fails. */
static inline int ct_close(double a, double b, double tol) { return fabs(a - b) <= tol; }

static inline int ct_same_bits(const float *a, const float *b, size_t n, size_t *where)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(a + i, b + i, sizeof(float))) {
            *where = i;
            return 0;
        }
    return 1;
}

/* 1 when CLAQ_CUDA_TEST_STANDIN=1 put the CPU backend (best ISA) in the CUDA backend's place:
 * checks the tests' own logic (tolerances, shapes, data) on machines without a GPU. Nothing
 * about CUDA is verified that way; device-only checks (upload sets dev) are skipped. */
static int ct_standin;

/* $CLAQ_SHARED (the real models), or a skip (exit 77) when it is unset; be, the backend the test
 * opened so far (NULL: none), is destroyed first. */
static inline const char *ct_shared_or_skip(kern_backend *be)
{
    const char *sh = getenv("CLAQ_SHARED");
    if (sh) return sh;
    printf("skip: CLAQ_SHARED is not set\n");
    if (be) kern_backend_destroy(be);
    exit(77);
}

/* The CUDA backend on device 0, or exit 77 with the reason. */
static inline void ct_open_cuda_or_skip(kern_backend *cu)
{
    memset(cu, 0, sizeof *cu);
    const char *si = getenv("CLAQ_CUDA_TEST_STANDIN");
    if (si && strcmp(si, "1") == 0) {
        ct_standin = 1;
        if (kern_cpu_backend_create(cu, 2)) {
            fprintf(stderr, "FAIL: stand-in kern_cpu_backend_create\n");
            exit(1);
        }
        printf("note: CLAQ_CUDA_TEST_STANDIN=1: the CPU backend stands in for CUDA\n");
        return;
    }
#ifndef CLAQ_HAVE_CUDA
    printf("skip: no CUDA device (this build has no CUDA backend: CLAQ_CUDA off or no nvcc)\n");
    exit(77);
#else
    char why[512] = "";
    /* a CUDA build whose backend library does not load is broken, not GPU-less: fail */
    if (!kern_cuda_library_loadable(why, sizeof why)) {
        fprintf(stderr, "FAIL: this CUDA build's backend library does not load: %s\n", why);
        exit(1);
    }
    int n = kern_cuda_device_count(why, sizeof why);
    if (n <= 0) {
        printf("skip: no CUDA device (%s)\n", why);
        exit(77);
    }
    /* ops refuse host pointers (checked per pointer; always on in the emulator) */
    setenv("CLAQ_CUDA_CHECK_PTRS", "1", 0);
    int rc = kern_cuda_backend_create(cu, 0);
    if (rc) {
        fprintf(stderr, "FAIL: %d CUDA device(s) but kern_cuda_backend_create: %s\n", n,
                kern_strerror(rc));
        exit(1);
    }
#endif
}

static inline const char *ct_cuda_err(const kern_backend *cu)
{
#ifdef CLAQ_HAVE_CUDA
    if (ct_standin) return "";
    return kern_cuda_last_error(cu);
#else
    (void)cu;
    return "";
#endif
}

static inline int ct_set_mma_min_n(kern_backend *cu, int n)
{
#ifdef CLAQ_HAVE_CUDA
    if (ct_standin) return KERN_E_UNSUPPORTED;
    return kern_cuda_set_mma_min_n(cu, n);
#else
    (void)cu; (void)n;
    return KERN_E_UNSUPPORTED;
#endif
}

static inline int ct_set_prefill_min_n(kern_backend *cu, int n)
{
#ifdef CLAQ_HAVE_CUDA
    if (ct_standin) return KERN_E_UNSUPPORTED;
    return kern_cuda_set_prefill_min_n(cu, n);
#else
    (void)cu; (void)n;
    return KERN_E_UNSUPPORTED;
#endif
}

/* Backend memory for the tests: ct_buf copies host[bytes] into a new buffer of be (NULL host:
 * poisoned with NaN bytes instead); ct_get copies it back. Failures count and return NULL / -1.
 * Ops take kern_buf_addr(buf) (device addresses on CUDA). */
static inline kern_buf *ct_buf(kern_backend *be, const void *host, size_t bytes)
{
    kern_buf *b = NULL;
    int rc = kern_buf_alloc(be, bytes, &b);
    if (!rc) {
        if (host) {
            rc = kern_buf_write(be, b, 0, host, bytes);
        } else {
            void *nan = malloc(bytes ? bytes : 1);
            if (!nan) rc = KERN_E_NOMEM;
            else {
                memset(nan, 0xff, bytes);
                rc = kern_buf_write(be, b, 0, nan, bytes);
                free(nan);
            }
        }
    }
    CT_CHECK(rc == 0, "ct_buf(%zu bytes): %s", bytes, kern_strerror(rc));
    if (rc) {
        kern_buf_free(be, b);
        return NULL;
    }
    return b;
}

static inline int ct_get(kern_backend *be, const kern_buf *b, void *host, size_t bytes)
{
    int rc = kern_buf_read(be, b, 0, host, bytes);
    CT_CHECK(rc == 0, "ct_get(%zu bytes): %s", bytes, kern_strerror(rc));
    return rc ? -1 : 0;
}

#define CT_ADDR(b) kern_buf_addr(b)

/* The oracle: the CPU backend forced to its scalar reference path, one thread. */
static inline void ct_open_cpu_ref(kern_backend *cpu)
{
    setenv("CLAQ_ISA", "scalar", 1);
    if (kern_cpu_backend_create(cpu, 1)) {
        fprintf(stderr, "FAIL: kern_cpu_backend_create\n");
        exit(1);
    }
}

#endif
