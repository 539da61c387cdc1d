/* eng_unicode.h — the Unicode character classes the byte-level pre-tokenizers need (letters,
 * numbers, white space), from the generated table eng_unicode_tables.c. Read-only data and pure
 * functions: any thread. Internal to the tokenizer (eng_tok_pretok.c). */
#ifndef ENG_UNICODE_H
#define ENG_UNICODE_H

#include <stdint.h>

enum { ENG__UNI_L = 1, ENG__UNI_N = 2, ENG__UNI_WS = 4 };

typedef struct eng__uni_range {
    uint32_t lo, hi;    /* inclusive code points */
    uint8_t flags;      /* ENG__UNI_* bits */
} eng__uni_range;

extern const unsigned char eng__uni_ascii[128];
extern const eng__uni_range eng__uni_ranges[];
extern const int eng__uni_n_ranges;

/* ENG__UNI_* bits of code point cp (0 for anything else, including unassigned code points). */
static inline unsigned eng__uni_class(uint32_t cp)
{
    if (cp < 128) return eng__uni_ascii[cp];
    int lo = 0, hi = eng__uni_n_ranges - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < eng__uni_ranges[mid].lo) hi = mid - 1;
        else if (cp > eng__uni_ranges[mid].hi) lo = mid + 1;
        else return eng__uni_ranges[mid].flags;
    }
    return 0;
}

#endif
