/* eng_resident.h — a model's weights made resident on one backend: a copy of the model's weight
 * table (the kern_matrix descriptors, not the weights) whose device copies the backend made once,
 * at creation, with kern_upload. The model stays untouched (const, shareable); the resident set
 * owns the device copies and frees them on destroy, which must come before the backend's. On a
 * host backend (no upload op) nothing is copied and the descriptors point at the model's weights.
 * An eng_ctx reads it through eng_ctx_use_resident. Created and destroyed by the thread that
 * drives the backend; read by that thread only. */
#ifndef ENG_RESIDENT_H
#define ENG_RESIDENT_H

#include <stdint.h>

#include "eng_err.h"
#include "eng_model.h"
#include "kern.h"

typedef struct eng_resident eng_resident;

/* Uploads every matrix of m (token embedding, output head — once when tied — and each layer's
 * seven linears), and on a device backend the RMSNorm weights too. Fails cleanly (nothing left on the device) with the matrix named in err. */
int eng_resident_create(eng_resident **out, const eng_model *m, kern_backend *be, eng_err *err);
void eng_resident_destroy(eng_resident *r);   /* NULL-safe */

const eng_model *eng_resident_model(const eng_resident *r);
const kern_matrix *eng_resident_embed(const eng_resident *r);
const kern_matrix *eng_resident_output(const eng_resident *r);
const eng_layer_weights *eng_resident_layer(const eng_resident *r, int layer);
/* The final RMSNorm weight as the backend's ops take it (the layers' norms are in
 * eng_resident_layer: on a device backend all of them live in its memory). */
const float *eng_resident_final_norm(const eng_resident *r);
/* Weight bytes the backend copied to the device at creation (0 on a host backend). */
uint64_t eng_resident_uploaded_bytes(const eng_resident *r);

#endif
