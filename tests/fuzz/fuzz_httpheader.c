/* fuzz_httpheader.c — libFuzzer target: arbitrary bytes as a response header (name, then a NUL,
 * then the value) through httpheader_check, against an oracle written from RFC 7230 (a name is a
 * token, a value has no control character but HTAB) and the list of headers the gateway owns; and
 * through httpheader_printable, whose output must be printable ASCII that fits. */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "httpheader.h"

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "fuzz_httpheader: check failed: %s (line %d)\n", #cond, __LINE__);               \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

static bool token(const char *s, size_t n)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(c < 0x80 && (isalnum(c) || (c != 0 && memchr(extra, c, sizeof extra - 1) != NULL))))
            return false;
    }
    return true;
}

static bool owned(const char *s, size_t n)
{
    static const char *const names[] = {"connection", "content-length",   "content-type",     "date",
                                        "keep-alive", "proxy-connection", "server",           "te",
                                        "trailer",    "upgrade",          "transfer-encoding"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == n && strncasecmp(names[i], s, n) == 0) return true;
    return false;
}

static bool clean_value(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == 0x7F || (c < 0x20 && c != '\t')) return false;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t nlen = nul ? (size_t)(nul - data) : size;
    size_t vlen = nul ? size - nlen - 1 : 0;
    char *name = malloc(nlen ? nlen : 1), *value = malloc(vlen ? vlen : 1);
    CHECK(name && value);
    memcpy(name, data, nlen);
    if (vlen) memcpy(value, nul + 1, vlen);

    enum httpheader_check got = httpheader_check(name, nlen, value, vlen);
    enum httpheader_check want = !token(name, nlen)          ? HTTPHEADER_BAD_NAME
                                 : owned(name, nlen)         ? HTTPHEADER_RESERVED
                                 : !clean_value(value, vlen) ? HTTPHEADER_BAD_VALUE
                                                             : HTTPHEADER_OK;
    CHECK(got == want);
    CHECK(httpheader_problem(got) != NULL);

    size_t dstlen = 1 + (size ? data[0] % 128 : 0);
    char *dst = malloc(dstlen);
    CHECK(dst != NULL);
    CHECK(httpheader_printable(dst, dstlen, name, nlen) == dst);
    size_t plen = strlen(dst);
    CHECK(plen < dstlen);
    for (size_t i = 0; i < plen; i++) CHECK(dst[i] >= 0x20 && dst[i] < 0x7F);
    if (got != HTTPHEADER_BAD_NAME && nlen + 4 <= dstlen) CHECK(plen == nlen && memcmp(dst, name, nlen) == 0);
    free(dst);
    free(name);
    free(value);
    return 0;
}
