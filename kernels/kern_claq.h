/* kern_claq.h — the packed CLAQ matrix as kernels see it (placeholder: the packed-format owner
 * defines the real layout, documented in docs/format.md). */
#ifndef KERN_CLAQ_H
#define KERN_CLAQ_H

#include <stdint.h>

#include "kern.h"

struct kern_claq {
    int64_t rows, cols;
};

#endif
