/* quant_mem.c — 2 MiB-aligned allocations advised as transparent huge pages (quant_mem.h). A
 * hint: where THP is off, or madvise fails, a buffer is an ordinary one. Any thread; no state. */
#include "quant_mem.h"

#include <stdlib.h>
#include <sys/mman.h>

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
