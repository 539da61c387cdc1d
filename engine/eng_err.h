/* eng_err.h — error codes and the error-with-message struct used across the engine.
 * Functions return 0 or a negative ENG_E_* code; callers that want detail pass an eng_err
 * (the anet pattern), NULL when they do not. Thread-safe: no globals. */
#ifndef ENG_ERR_H
#define ENG_ERR_H

enum {
    ENG_OK = 0,
    ENG_E_IO = -1,          /* open/read/mmap failed */
    ENG_E_FORMAT = -2,      /* file or data malformed: bad magic, sizes that lie, bad JSON */
    ENG_E_NOMEM = -3,       /* allocation failed */
    ENG_E_INVAL = -4,       /* bad argument from the caller */
    ENG_E_UNSUPPORTED = -5, /* valid but not supported (dtype, architecture, feature) */
    ENG_E_RANGE = -6,       /* value out of range: token id, context too long, NaN weight */
    ENG_E_DEVICE = -7,      /* accelerator error */
    ENG_E_FULL = -8,        /* capacity exhausted (KV blocks, queue) */
};

#define ENG_ERR_MSG 512

typedef struct eng_err {
    int code;               /* last ENG_E_* code, 0 when none */
    char msg[ENG_ERR_MSG];  /* human-readable, names the file / tensor / field */
} eng_err;

/* Fills err (when non-NULL) with code and a printf-style message; returns code so that
 * `return eng_err_set(err, ENG_E_FORMAT, "...")` reads naturally. */
int eng_err_set(eng_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Static text for a code. */
const char *eng_strerror(int code);

#endif
