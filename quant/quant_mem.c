/* quant_mem.c — 2 MiB-aligned allocations advised as transparent huge pages, and the release of
 * pages the pipeline is done with (quant_mem.h). Both are hints: where THP is off, or madvise
 * fails, a buffer is an ordinary one and pages stay. Any thread; no state. */
#include "quant_mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define QUANT_HUGE ((size_t)2 << 20)   /* x86-64 huge page */

void *eng_quant_big_alloc(size_t bytes)
{
    if (bytes == 0) return NULL;
    if (bytes < QUANT_HUGE) return malloc(bytes);
    size_t rounded = (bytes + QUANT_HUGE - 1) / QUANT_HUGE * QUANT_HUGE;
    void *p = NULL;
    if (posix_memalign(&p, QUANT_HUGE, rounded) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, rounded, MADV_HUGEPAGE);
#endif
    return p;
}

void eng_quant_release(const void *p, size_t bytes)
{
#ifdef MADV_PAGEOUT
    long pg = sysconf(_SC_PAGESIZE);
    if (!p || pg <= 0) return;
    uintptr_t a = (uintptr_t)p, e = a + bytes, P = (uintptr_t)pg;
    a = (a + P - 1) / P * P;   /* whole pages inside the range only */
    e = e / P * P;
    if (e > a) (void)madvise((void *)a, e - a, MADV_PAGEOUT);
#else
    (void)p;
    (void)bytes;
#endif
}
