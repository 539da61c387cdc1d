/* eng_err.c — eng_err_set and eng_strerror. No state. */
#include "eng_err.h"

#include <stdarg.h>
#include <stdio.h>

int eng_err_set(eng_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *eng_strerror(int code)
{
    switch (code) {
    case ENG_OK: return "ok";
    case ENG_E_IO: return "i/o error";
    case ENG_E_FORMAT: return "malformed data";
    case ENG_E_NOMEM: return "out of memory";
    case ENG_E_INVAL: return "invalid argument";
    case ENG_E_UNSUPPORTED: return "unsupported";
    case ENG_E_RANGE: return "value out of range";
    case ENG_E_DEVICE: return "device error";
    case ENG_E_FULL: return "capacity exhausted";
    default: return "unknown error";
    }
}
