/* eng_stop.c — stop strings on the detokenized text stream (eng_stop_* in eng_sampler.h): finds
 * a stop across any feed boundaries and holds back only text that could still start one.
 * Byte-exact matching (UTF-8 needs nothing more: a valid stop begins on a character boundary,
 * so nothing held or emitted splits a character the input did not split). Does not detokenize.
 * One matcher per sequence, one thread at a time; no globals. */
#include "eng_sampler.h"

#include <string.h>

int eng_stop_init(eng_stop *st, const char *const *stops, int n, eng_err *err)
{
    memset(st, 0, sizeof *st);
    if (n < 0 || n > ENG_MAX_STOPS)
        return eng_err_set(err, ENG_E_INVAL, "stop: %d stop strings, at most %d allowed", n,
                           ENG_MAX_STOPS);
    if (n > 0 && !stops)
        return eng_err_set(err, ENG_E_INVAL, "stop: %d stop strings but no array", n);
    for (int i = 0; i < n; i++) {
        if (!stops[i] || stops[i][0] == '\0')
            return eng_err_set(err, ENG_E_INVAL, "stop: stop[%d] is empty", i);
        size_t len = strnlen(stops[i], ENG_MAX_STOP_LEN + 1);
        if (len > ENG_MAX_STOP_LEN)
            return eng_err_set(err, ENG_E_INVAL, "stop: stop[%d] is longer than %d bytes", i,
                               ENG_MAX_STOP_LEN);
        memcpy(st->stops[i], stops[i], len);
        st->stops[i][len] = '\0';
    }
    st->n_stops = n;
    return 0;
}

/* Length of the longest suffix of buf[0..n) that is a proper prefix of some stop string. */
static size_t held_suffix(const eng_stop *st, const char *buf, size_t n)
{
    size_t best = 0;
    for (int i = 0; i < st->n_stops; i++) {
        size_t len = strlen(st->stops[i]);
        size_t k = len - 1 < n ? len - 1 : n;
        for (; k > best; k--) {
            if (memcmp(buf + n - k, st->stops[i], k) == 0) {
                best = k;
                break;
            }
        }
    }
    return best;
}

/* The stop that completes first in buf[0..n): smallest end offset, and on a tie the one that
 * starts first (the longer one). That is the stop a token-by-token stream would see first, so
 * the result does not depend on how the text was split into feeds. Returns its start or -1. */
static long first_stop(const eng_stop *st, const char *buf, size_t n)
{
    long best_start = -1;
    size_t best_end = 0;
    for (int i = 0; i < st->n_stops; i++) {
        size_t len = strlen(st->stops[i]);
        const char *p = memmem(buf, n, st->stops[i], len);
        if (!p)
            continue;
        size_t start = (size_t)(p - buf), end = start + len;
        if (best_start < 0 || end < best_end || (end == best_end && (long)start < best_start)) {
            best_start = (long)start;
            best_end = end;
        }
    }
    return best_start;
}

/* out doubles as the work buffer (held text, then the new text): the contract makes it large
 * enough. If a caller passes less, the text that does not fit is dropped rather than written out
 * of bounds. */
size_t eng_stop_feed(eng_stop *st, const char *text, size_t len, char *out, size_t cap)
{
    if (st->hit || !out)
        return 0;
    if (!text)
        len = 0;
    size_t n_held = (size_t)st->n_held;
    if (n_held > cap)
        n_held = cap;
    memcpy(out, st->held, n_held);
    if (len > cap - n_held)
        len = cap - n_held;
    if (len)
        memcpy(out + n_held, text, len);
    size_t n = n_held + len;
    st->n_held = 0;

    long at = first_stop(st, out, n);
    if (at >= 0) {
        st->hit = 1;
        return (size_t)at;
    }
    size_t keep = held_suffix(st, out, n);
    memcpy(st->held, out + n - keep, keep);
    st->n_held = (int)keep;
    return n - keep;
}

size_t eng_stop_flush(eng_stop *st, char *out, size_t cap)
{
    if (st->hit || !out) {
        st->n_held = 0;
        return 0;
    }
    size_t n = (size_t)st->n_held;
    if (n > cap)
        n = cap;
    memcpy(out, st->held, n);
    st->n_held = 0;
    return n;
}
