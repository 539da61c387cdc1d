/* test_eng_stop_chunking.c — stop strings on real text (TinyStories, and a WikiText-2 line with
 * Chinese and en dashes): splitting the same text into every possible pair and triple of chunks,
 * or into single bytes, gives the same output and the same hit as one feed, and that output
 * equals a brute-force reference (cut before the stop that completes first). Also: only the
 * longest suffix that could start a stop is held back; overlapping stops; a 200-byte stop fed
 * byte by byte; emitted pieces never split a UTF-8 character; init rejects bad stop lists. */
#include "eng_sampler.h"
#include "test_eng_sampler_data.h"

/* Reads the first `want` bytes of the paragraph that starts with `anchor` in a shared file. */
static char *excerpt(const char *rel, const char *anchor, size_t want)
{
    size_t n;
    unsigned char *b = td_read(rel, &n);
    char *text = malloc(n + 1);
    memcpy(text, b, n);
    text[n] = '\0';
    free(b);
    char *p = strstr(text, anchor);
    if (!p) {
        fprintf(stderr, "anchor '%s' not found in %s\n", anchor, rel);
        exit(1);
    }
    size_t len = strlen(p) < want ? strlen(p) : want;
    char *out = malloc(len + 1);
    memcpy(out, p, len);
    out[len] = '\0';
    free(text);
    return out;
}

/* Brute force: the first end position at which some stop completes; the longest such stop.
 * Writes the expected output and returns whether a stop was hit. */
static int reference(const char *text, size_t n, const char *const *stops, int ns, char *out,
                     size_t *out_len)
{
    for (size_t e = 1; e <= n; e++) {
        size_t best = 0;
        for (int i = 0; i < ns; i++) {
            size_t l = strlen(stops[i]);
            if (l <= e && memcmp(text + e - l, stops[i], l) == 0 && l > best)
                best = l;
        }
        if (best) {
            memcpy(out, text, e - best);
            *out_len = e - best;
            return 1;
        }
    }
    memcpy(out, text, n);
    *out_len = n;
    return 0;
}

typedef struct run_result {
    char *out;      /* owned */
    size_t len;
    int hit;
    int max_held;
} run_result;

/* Feeds text cut at the given offsets (sorted, 0 < cut < n), then flushes. */
static run_result run_cuts(const char *text, size_t n, const char *const *stops, int ns,
                           const size_t *cuts, int ncuts)
{
    run_result r = {malloc(n + ENG_MAX_STOP_LEN + 1), 0, 0, 0};
    char *buf = malloc(n + ENG_MAX_STOP_LEN + 1);
    eng_stop st;
    eng_err err = {0};
    CHECK(eng_stop_init(&st, stops, ns, &err) == 0, "init: %s", err.msg);
    size_t from = 0;
    for (int c = 0; c <= ncuts; c++) {
        size_t to = c < ncuts ? cuts[c] : n;
        size_t k = eng_stop_feed(&st, text + from, to - from, buf, (to - from) + ENG_MAX_STOP_LEN);
        memcpy(r.out + r.len, buf, k);
        r.len += k;
        if (st.n_held > r.max_held)
            r.max_held = st.n_held;
        /* what is held is always a proper prefix of some stop */
        int ok = st.n_held == 0;
        for (int i = 0; i < ns && !ok; i++)
            ok = (size_t)st.n_held < strlen(stops[i]) && memcmp(st.held, stops[i], st.n_held) == 0;
        CHECK(ok, "held text (%d bytes) is not a proper prefix of any stop", st.n_held);
        from = to;
    }
    r.hit = st.hit;
    if (!st.hit)
        r.len += eng_stop_flush(&st, r.out + r.len, ENG_MAX_STOP_LEN);
    else
        CHECK(eng_stop_flush(&st, buf, ENG_MAX_STOP_LEN) == 0, "flush after hit emitted text");
    free(buf);
    return r;
}

static int same(const run_result *a, const char *want, size_t want_len, int want_hit)
{
    return a->hit == want_hit && a->len == want_len && memcmp(a->out, want, want_len) == 0;
}

/* One feed, every pair, every triple (triples on the first `tri` bytes), byte by byte. */
static void check_invariance(const char *label, const char *text, const char *const *stops,
                             int ns, size_t tri)
{
    size_t n = strlen(text);
    char *want = malloc(n + 1);
    size_t want_len;
    int want_hit = reference(text, n, stops, ns, want, &want_len);
    long runs = 0, bad = 0;

    run_result r = run_cuts(text, n, stops, ns, NULL, 0);
    CHECK(same(&r, want, want_len, want_hit), "%s: one feed: hit %d len %zu, expected %d %zu",
          label, r.hit, r.len, want_hit, want_len);
    free(r.out);

    size_t cuts[2];
    for (size_t i = 1; i < n; i++) {
        cuts[0] = i;
        r = run_cuts(text, n, stops, ns, cuts, 1);
        runs++;
        if (!same(&r, want, want_len, want_hit) && bad++ < 3)
            fprintf(stderr, "  %s: pair cut %zu differs\n", label, i);
        free(r.out);
    }
    size_t m = n < tri ? n : tri;
    char *w2 = malloc(m + 1);
    size_t w2_len;
    int w2_hit = reference(text, m, stops, ns, w2, &w2_len);
    for (size_t i = 1; i < m; i++) {
        for (size_t j = i + 1; j < m; j++) {
            cuts[0] = i;
            cuts[1] = j;
            r = run_cuts(text, m, stops, ns, cuts, 2);
            runs++;
            if (!same(&r, w2, w2_len, w2_hit) && bad++ < 3)
                fprintf(stderr, "  %s: triple cut %zu,%zu differs\n", label, i, j);
            free(r.out);
        }
    }
    free(w2);
    size_t *all = calloc(n, sizeof *all);
    for (size_t i = 1; i < n; i++)
        all[i - 1] = i;
    r = run_cuts(text, n, stops, ns, all, (int)(n - 1));
    runs++;
    if (!same(&r, want, want_len, want_hit) && bad++ < 3)
        fprintf(stderr, "  %s: byte-by-byte differs\n", label);
    int longest = 0;
    for (int i = 0; i < ns; i++)
        if ((int)strlen(stops[i]) > longest)
            longest = (int)strlen(stops[i]);
    CHECK(r.max_held < longest || ns == 0, "%s: held %d bytes, longest stop %d", label,
          r.max_held, longest);
    free(r.out);
    free(all);
    CHECK(bad == 0, "%s: %ld of %ld chunkings differ from the reference", label, bad, runs);
    printf("%-40s %6ld chunkings, hit %d, output %zu of %zu bytes\n", label, runs, want_hit,
           want_len, n);
    free(want);
}

static void check_hold_back_exact(void)
{
    /* feeding "little gir" with stop "girl named": only "gir" is held, the rest is emitted */
    const char *stops[] = {"girl named", "xyz"};
    eng_stop st;
    char out[64 + ENG_MAX_STOP_LEN];
    eng_stop_init(&st, stops, 2, NULL);
    size_t k = eng_stop_feed(&st, "a little gir", 12, out, sizeof out);
    CHECK(k == 9 && memcmp(out, "a little ", 9) == 0, "emitted %zu bytes", k);
    CHECK(st.n_held == 3 && memcmp(st.held, "gir", 3) == 0, "held %d bytes", st.n_held);
    /* the held text turns out not to be a stop: it is released with the next feed */
    k = eng_stop_feed(&st, "affe", 4, out, sizeof out);
    CHECK(k == 7 && memcmp(out, "giraffe", 7) == 0, "released %zu bytes", k);
    CHECK(st.n_held == 0 && !st.hit, "after release: held %d hit %d", st.n_held, st.hit);
    /* then a stop completes across three feeds */
    k = eng_stop_feed(&st, " girl", 5, out, sizeof out);
    CHECK(k == 1 && out[0] == ' ', "before stop: %zu", k);
    k = eng_stop_feed(&st, " na", 3, out, sizeof out);
    CHECK(k == 0, "partial stop emitted %zu", k);
    k = eng_stop_feed(&st, "med Lily", 8, out, sizeof out);
    CHECK(k == 0 && st.hit, "stop not hit (k %zu)", k);
    CHECK(eng_stop_feed(&st, "more", 4, out, sizeof out) == 0, "text emitted after hit");
    CHECK(eng_stop_flush(&st, out, sizeof out) == 0, "flush after hit");

    /* no stops: everything passes through, nothing held */
    eng_stop_init(&st, NULL, 0, NULL);
    k = eng_stop_feed(&st, "One day", 7, out, sizeof out);
    CHECK(k == 7 && st.n_held == 0, "no stops: %zu", k);
}

static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        int len = s[i] < 0x80 ? 1 : (s[i] >> 5) == 6 ? 2 : (s[i] >> 4) == 14 ? 3
                : (s[i] >> 3) == 30 ? 4 : 0;
        if (len == 0 || i + len > n)
            return 0;
        for (int k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
        i += len;
    }
    return 1;
}

/* Feeds a UTF-8 text one character at a time (as a detokenizer does): every emitted piece is
 * valid UTF-8 even when a multi-byte stop is half matched. */
static void check_utf8_pieces(const char *text, const char *const *stops, int ns)
{
    eng_stop st;
    eng_stop_init(&st, stops, ns, NULL);
    char out[16 + ENG_MAX_STOP_LEN];
    size_t n = strlen(text), i = 0;
    int pieces = 0, bad = 0;
    while (i < n && !st.hit) {
        size_t len = 1;
        while (i + len < n && ((unsigned char)text[i + len] & 0xC0) == 0x80)
            len++;
        size_t k = eng_stop_feed(&st, text + i, len, out, sizeof out);
        if (k) {
            pieces++;
            bad += !utf8_valid((const unsigned char *)out, k);
        }
        i += len;
    }
    CHECK(bad == 0, "%d of %d emitted pieces are not valid UTF-8", bad, pieces);
    CHECK(st.hit, "utf8: the stop was not found");
}

static void check_init_errors(void)
{
    eng_stop st;
    eng_err err = {0};
    const char *ten[ENG_MAX_STOPS + 1] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"};
    CHECK(eng_stop_init(&st, ten, ENG_MAX_STOPS + 1, &err) == ENG_E_INVAL, "%d stops accepted",
          ENG_MAX_STOPS + 1);
    CHECK(eng_stop_init(&st, ten, ENG_MAX_STOPS, &err) == 0, "%d stops rejected: %s",
          ENG_MAX_STOPS, err.msg);
    const char *empty[] = {"ok", ""};
    CHECK(eng_stop_init(&st, empty, 2, &err) == ENG_E_INVAL && strstr(err.msg, "stop[1]"),
          "empty stop accepted (%s)", err.msg);
    const char *null1[] = {NULL};
    CHECK(eng_stop_init(&st, null1, 1, &err) == ENG_E_INVAL, "NULL stop accepted");
    CHECK(eng_stop_init(&st, NULL, 2, &err) == ENG_E_INVAL, "NULL array accepted");
    CHECK(eng_stop_init(&st, ten, -1, &err) == ENG_E_INVAL, "negative count accepted");
    char long_stop[ENG_MAX_STOP_LEN + 2];
    memset(long_stop, 'x', sizeof long_stop - 1);
    long_stop[ENG_MAX_STOP_LEN + 1] = '\0';
    const char *lp[] = {long_stop};
    CHECK(eng_stop_init(&st, lp, 1, &err) == ENG_E_INVAL, "257-byte stop accepted");
    long_stop[ENG_MAX_STOP_LEN] = '\0';
    CHECK(eng_stop_init(&st, lp, 1, &err) == 0, "256-byte stop rejected: %s", err.msg);
}

int main(void)
{
    char *story = excerpt("data/tinystories/tinystories-train-head.txt", "One day, a little girl",
                          420);
    char *wiki = excerpt("data/wikitext-2-raw/wiki.test.raw", "Du Fu ( Wade", 330);

    /* overlapping stops: "girl named Lily" starts first, but "named" completes first */
    const char *s1[] = {"girl named Lily", "named", "zebra"};
    check_invariance("story: overlapping, inner completes first", story, s1, 3, 160);
    /* a stop that is a prefix of another, and one whose prefix repeats ("nee" in "needle") */
    const char *s2[] = {"needle in her room", "needle in", "eedle with her mom"};
    check_invariance("story: prefix-of-each-other stops", story, s2, 3, 160);
    /* blank line as a stop (a common real stop), after the first paragraph */
    const char *s3[] = {"\n\n"};
    check_invariance("story: blank line", story, s3, 1, 240);
    /* stops that never occur but whose prefixes do, all the time */
    const char *s4[] = {"Lily wanted to fly", "the needle and the", "sh!"};
    check_invariance("story: prefixes only, no hit", story, s4, 3, 160);
    /* UTF-8: a Chinese name, an en dash; the en dash stop completes first */
    const char *s5[] = {"杜甫 ; 712", "770 –", "– Giles"};
    check_invariance("wiki: UTF-8 stops", wiki, s5, 3, 120);
    const char *s6[] = {"甫 ; 712 – 770 ) was"};
    check_invariance("wiki: UTF-8 stop spanning scripts", wiki, s6, 1, 120);
    check_utf8_pieces(wiki, s6, 1);
    const char *s7[] = {"–x", "杜x"};   /* UTF-8 prefixes held, never completed */
    check_invariance("wiki: UTF-8 prefixes, no hit", wiki, s7, 2, 120);

    /* a 200-byte stop taken from the story, fed byte by byte (inside check_invariance) */
    char long_stop[201];
    memcpy(long_stop, story + 100, 200);
    long_stop[200] = '\0';
    const char *s8[] = {long_stop, "Together"};
    check_invariance("story: 200-byte stop", story, s8, 2, 0);

    check_hold_back_exact();
    check_init_errors();
    free(story);
    free(wiki);
    if (g_fail) {
        fprintf(stderr, "%d checks failed\n", g_fail);
        return 1;
    }
    printf("ok\n");
    return 0;
}
