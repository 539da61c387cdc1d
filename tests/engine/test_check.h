/* test_check.h — the CHECK macro the engine's C tests share: on a false condition it prints
 * "FAIL file:line: cond: message" to stderr and counts it in g_fail (one per test process,
 * which main turns into the exit status). Single-threaded tests only. */
#ifndef TEST_CHECK_H
#define TEST_CHECK_H

#include <stdio.h>

static int g_fail;  /* failed CHECKs in this test process */

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
            g_fail++;                                                           \
        }                                                                       \
    } while (0)

#endif
