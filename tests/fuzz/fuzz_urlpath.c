/* fuzz_urlpath.c — libFuzzer target: arbitrary bytes as the raw path of a request target through
 * urlpath_split, and as a query-string component through urlpath_decode. Beyond crashes it
 * checks urlpath.h's promises: at most urlpath_max_segments segments, all inside the output, no
 * dot segment left; a refusal exactly when some '%' lacks two hex digits; and decoding once is
 * undone by encoding once: the segments, each percent-encoded and joined with '/', split back to
 * the same segments. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "urlpath.h"

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "fuzz_urlpath: check failed: %s (line %d)\n", #cond, __LINE__);                  \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

static bool ishex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* The oracle for a refusal: a '%' not followed by two hex digits. */
static bool bad_escape(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '%' && (i + 2 >= n || !ishex(s[i + 1]) || !ishex(s[i + 2]))) return true;
    return false;
}

struct split {
    char *out;
    const char **segs;
    size_t *lens;
    struct urlpath p;
    int rc;
};

/* Splits s[0..n) from a heap copy of its exact size (ASan sees any read past the end). */
static void split(const char *s, size_t n, struct split *r)
{
    char *copy = malloc(n ? n : 1);
    CHECK(copy != NULL);
    memcpy(copy, s, n);
    size_t max = urlpath_max_segments(copy, n);
    CHECK(max >= 1 && max <= n + 1);
    r->out = malloc(n ? n : 1);
    r->segs = malloc(max * sizeof *r->segs);
    r->lens = malloc(max * sizeof *r->lens);
    CHECK(r->out && r->segs && r->lens);
    r->p = (struct urlpath){r->segs, r->lens, -1};
    r->rc = urlpath_split(copy, n, r->out, &r->p);
    CHECK(r->rc == 0 || r->rc == -1);
    CHECK(r->rc == (bad_escape(copy, n) ? -1 : 0));
    if (r->rc == 0) {
        CHECK(r->p.n >= 1 && (size_t)r->p.n <= max);
        size_t total = 0;
        for (int i = 0; i < r->p.n; i++) {
            CHECK(r->segs[i] >= r->out && r->segs[i] + r->lens[i] <= r->out + (n ? n : 1));
            bool dot = r->lens[i] == 1 && r->segs[i][0] == '.';
            bool dotdot = r->lens[i] == 2 && memcmp(r->segs[i], "..", 2) == 0;
            CHECK(!dot && !dotdot);
            total += r->lens[i];
        }
        CHECK(total <= n);
    } else {
        CHECK(r->p.n == 0);
    }
    free(copy);
}

static void release(struct split *r)
{
    free(r->out);
    free(r->segs);
    free(r->lens);
}

/* '/' + each segment with every byte but unreserved ones as %XX. */
static char *encode(const struct split *r, size_t *len)
{
    size_t cap = 1;
    for (int i = 0; i < r->p.n; i++) cap += 1 + 3 * r->lens[i];
    char *s = malloc(cap), *o = s;
    CHECK(s != NULL);
    for (int i = 0; i < r->p.n; i++) {
        *o++ = '/';
        for (size_t k = 0; k < r->lens[i]; k++) {
            unsigned char c = (unsigned char)r->segs[i][k];
            bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                         c == '-' || c == '_' || c == '~';
            if (plain) {
                *o++ = (char)c;
            } else {
                o += sprintf(o, "%%%02X", c);
            }
        }
    }
    *len = (size_t)(o - s);
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    struct split a;
    split(s, size, &a);
    if (a.rc == 0) {
        size_t elen;
        char *e = encode(&a, &elen);
        struct split b;
        split(e, elen, &b);
        CHECK(b.rc == 0);
        CHECK(b.p.n == a.p.n);
        for (int i = 0; i < a.p.n; i++)
            CHECK(b.lens[i] == a.lens[i] && memcmp(b.segs[i], a.segs[i], a.lens[i]) == 0);
        release(&b);
        free(e);
    }
    release(&a);

    /* a query-string component: never longer, '+' a space only when asked */
    char *out = malloc(size ? size : 1);
    CHECK(out != NULL);
    long n = urlpath_decode(s, size, out, true);
    CHECK((n < 0) == bad_escape(s, size));
    CHECK(n <= (long)size);
    if (n >= 0) {
        for (long i = 0; i < n; i++) CHECK(out[i] != '+' || memchr(s, '%', size) != NULL);
        if (memchr(s, '%', size) == NULL) {
            long m = urlpath_decode(s, size, out, false);
            CHECK(m == (long)size && memcmp(out, s, size) == 0);
        }
    }
    free(out);
    return 0;
}
