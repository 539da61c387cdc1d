/* eng_rowstore.h — per-sequence rows of backend memory kept from one step to the next and
 * brought up to date by deltas: the block tables and the sampler's bias / penalty entries of a
 * forward pass (eng_forward.c). A row holds an array of fixed-size elements for one sequence;
 * putting a new array sends only the range that differs from what the backend holds (by
 * content, so a reused sequence struct or replaced blocks never leave a stale element). Rows
 * are reused least recently used first; a row used in the current step is never taken by
 * another sequence. Owned by its eng_ctx; one thread (the ctx's) at a time. */
#ifndef ENG_ROWSTORE_H
#define ENG_ROWSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "kern.h"

typedef struct eng_rowstore eng_rowstore;

/* Rows of `elem`-byte elements on backend be (borrowed; outlives the store), at most max_rows
 * of them (the most sequences one step can hold), first_stride elements each until a longer
 * array comes (then the stride doubles, at least). Nothing is allocated until first use. */
int eng_rowstore_create(eng_rowstore **out, kern_backend *be, size_t elem, int max_rows,
                        int first_stride);
void eng_rowstore_destroy(eng_rowstore *r);   /* NULL-safe */

/* Starts a step: rows the previous steps used may now go to other sequences. */
void eng_rowstore_step(eng_rowstore *r);
/* *row = the row of sequence key (any stable pointer; compared, never read) in this step: the one
 * it had, else a free or least recently used one, else a new one. KERN_E_INVAL when more than
 * max_rows sequences are asked for in one step. */
int eng_rowstore_row(eng_rowstore *r, const void *key, int *row);
/* Makes the backend's copy of row hold data[0..count) (grows every row when count exceeds the
 * stride, keeping what they hold); sends the elements from the first that differs to the last
 * that differs, nothing when all agree. */
int eng_rowstore_put(eng_rowstore *r, int row, const void *data, int count);
/* The backend address of row 0 and the elements from one row to the next: valid until the next
 * eng_rowstore_row or eng_rowstore_put (either may grow the store). */
void *eng_rowstore_addr(const eng_rowstore *r);
int eng_rowstore_stride(const eng_rowstore *r);

#endif
