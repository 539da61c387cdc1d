/* quant_mem.h — large buffers for the quantizer (weights, Hessians, GPTQ scratch, kept
 * activations: tens of MB to GB each). Allocated 2 MiB-aligned and marked for transparent huge
 * pages, so the kernel maps them 512 pages per fault instead of one (on this machine THP is
 * "madvise" only) and the GEMMs over them miss the TLB less. Freed with free(). Any thread. */
#ifndef QUANT_MEM_H
#define QUANT_MEM_H

#include <stddef.h>

/* malloc-like: NULL on failure or bytes == 0; free() releases it. Small requests (under
 * 2 MiB) are a plain malloc. */
void *eng_quant_big_alloc(size_t bytes);

#endif
