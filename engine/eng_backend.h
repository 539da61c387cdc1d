/* eng_backend.h — picks and creates the compute backend from a user's --device choice:
 * "cpu", "cuda" (fails clearly without a GPU or a CUDA build) or "auto" (CUDA when a device is
 * present, else CPU). Called once at start-up by the claq tool and the server. */
#ifndef ENG_BACKEND_H
#define ENG_BACKEND_H

#include "eng_err.h"
#include "kern.h"

/* threads: CPU worker threads (<= 0: one per core). Fills *be; err says why when it fails. */
int eng_backend_open(kern_backend *be, const char *device, int threads, eng_err *err);

#endif
