/* lsn.c — pg_lsn text <-> 64-bit WAL positions (lsn.h). */
#include "lsn.h"

#include <stdio.h>

#include "util.h"

/* Reads 1-8 hex digits from s[*i..n) into *part; false when there are none or more than 8. */
static bool hex_part(const char *s, size_t n, size_t *i, uint32_t *part)
{
    size_t start = *i;
    uint32_t v = 0;
    while (*i < n && hex_digit(s[*i]) >= 0) {
        if (*i - start == 8) return false;
        v = v << 4 | (uint32_t)hex_digit(s[*i]);
        (*i)++;
    }
    if (*i == start) return false;
    *part = v;
    return true;
}

bool lsn_parse(const char *s, size_t n, uint64_t *out)
{
    size_t i = 0;
    uint32_t hi, lo;
    if (!hex_part(s, n, &i, &hi) || i >= n || s[i] != '/') return false;
    i++;
    if (!hex_part(s, n, &i, &lo) || i != n) return false;
    *out = (uint64_t)hi << 32 | lo;
    return true;
}

char *lsn_format(char out[LSN_TEXT], uint64_t lsn)
{
    snprintf(out, LSN_TEXT, "%X/%X", (unsigned)(lsn >> 32), (unsigned)(lsn & 0xffffffffu));
    return out;
}

static bool blank(char c)
{
    return c == ' ' || c == '\t';
}

bool lsn_parse_list(const char *s, size_t n, uint64_t *out)
{
    uint64_t best = 0;
    size_t i = 0;
    do {
        size_t start = i;
        while (i < n && s[i] != ',') i++;
        size_t a = start, b = i;
        while (a < b && blank(s[a])) a++;
        while (b > a && blank(s[b - 1])) b--;
        uint64_t v;
        if (!lsn_parse(s + a, b - a, &v)) return false;
        if (v > best) best = v;
    } while (i++ < n);
    *out = best;
    return true;
}
