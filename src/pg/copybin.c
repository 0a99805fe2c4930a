/* copybin.c — COPY text lines as COPY binary tuples (copybin.h). Every converter accepts one
 * spelling and computes exactly what PostgreSQL's own input function would store for it; the
 * binary receive functions still check the column's typmod (numeric(12,5) rounds, varchar(n)
 * refuses), so those rules and their messages stay the server's. */
#include "copybin.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pgtype.h"
#include "util.h"

#define MAX_SCALAR   128  /* longest number, date or time converted; longer ones go as text */
#define MAX_DIGITS   1000 /* numeric: decimal digits converted */
#define MAX_EXPONENT 1000 /* numeric: |exponent| converted; a larger one goes as text */
#define NBASE_DIGITS 4    /* numeric stores base-10000 digits */
#define NUMERIC_NEG  0x4000

static const char signature[11] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', '\377', '\r', '\n', '\0'};

static void put_be(struct buf *out, uint64_t v, int bytes)
{
    buf_need(out, (size_t)bytes);
    char *o = out->data + out->len;
    for (int i = bytes - 1; i >= 0; i--, v >>= 8) o[i] = (char)(v & 0xff);
    out->len += (size_t)bytes;
}

bool copybin_supports(Oid type)
{
    switch (type) {
    case PGT_BOOL:
    case PGT_INT2:
    case PGT_INT4:
    case PGT_INT8:
    case PGT_FLOAT4:
    case PGT_FLOAT8:
    case PGT_NUMERIC:
    case PGT_TEXT:
    case PGT_VARCHAR:
    case PGT_BPCHAR:
    case PGT_JSON:
    case PGT_JSONB:
    case PGT_DATE:
    case PGT_TIMESTAMP:
    case PGT_TIMESTAMPTZ:
    case PGT_UUID:
        return true;
    default:
        return false;
    }
}

void copybin_header(struct buf *out)
{
    buf_append(out, signature, sizeof signature);
    put_be(out, 0, 4); /* flags: no OIDs */
    put_be(out, 0, 4); /* no header extension */
}

void copybin_trailer(struct buf *out)
{
    put_be(out, 0xffff, 2);
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* n digits at s as a number; false unless all are digits. */
static bool digits_value(const char *s, size_t n, int *v)
{
    int x = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i])) return false;
        x = x * 10 + (s[i] - '0');
    }
    *v = x;
    return true;
}

/* ---- integers, floats, booleans ---- */

/* -?[0-9]+ within [lo, hi]. */
static bool parse_int(const char *s, size_t n, int64_t lo, int64_t hi, int64_t *v)
{
    bool neg = n > 0 && s[0] == '-';
    size_t i = neg ? 1 : 0;
    if (i == n || n - i > 19) return false;
    uint64_t acc = 0;
    for (; i < n; i++) {
        if (!is_digit(s[i])) return false;
        acc = acc * 10 + (uint64_t)(s[i] - '0');
    }
    if (neg ? acc > (uint64_t)(-(lo + 1)) + 1 : acc > (uint64_t)hi) return false;
    *v = neg ? (int64_t)(0 - acc) : (int64_t)acc;
    return true;
}

/* An integer of `bytes` bytes within [lo, hi]. */
static int put_int(struct buf *out, const char *s, size_t n, int64_t lo, int64_t hi, int bytes)
{
    int64_t v;
    if (!parse_int(s, n, lo, hi, &v)) return -1;
    put_be(out, (uint64_t)bytes, 4);
    put_be(out, (uint64_t)v, bytes);
    return 0;
}

/* A JSON number: -?digits(.digits)?([eE][+-]?digits)? — what both strtod and the server read
 * alike. Returns the index after it (n when it is all of s), or 0. */
static size_t number_syntax(const char *s, size_t n, size_t *int_digits, size_t *frac_digits, size_t *exp_at)
{
    size_t i = (n > 0 && s[0] == '-') ? 1 : 0, start = i;
    while (i < n && is_digit(s[i])) i++;
    *int_digits = i - start;
    *frac_digits = 0;
    *exp_at = 0;
    if (*int_digits == 0) return 0;
    if (i < n && s[i] == '.') {
        size_t f = ++i;
        while (i < n && is_digit(s[i])) i++;
        *frac_digits = i - f;
        if (*frac_digits == 0) return 0;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        *exp_at = i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        size_t e = i;
        while (i < n && is_digit(s[i])) i++;
        if (i == e) return 0;
    }
    return i;
}

static bool is_plain_number(const char *s, size_t n)
{
    size_t id, fd, ea;
    return n > 0 && number_syntax(s, n, &id, &fd, &ea) == n;
}

/* s is NUL-terminated (a copy made by the caller): a double, or a float (single). Out of range
 * goes as text, where the server decides. */
static int put_float(struct buf *out, const char *s, size_t n, bool single)
{
    if (!is_plain_number(s, n)) return -1;
    errno = 0;
    char *end;
    double d = single ? (double)strtof(s, &end) : strtod(s, &end);
    if (errno == ERANGE || !isfinite(d) || end != s + n) return -1; /* all of it, whatever the locale */
    if (single) {
        float f = (float)d; /* exact: d came from a float */
        uint32_t bits;
        memcpy(&bits, &f, sizeof bits);
        put_be(out, 4, 4);
        put_be(out, bits, 4);
    } else {
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        put_be(out, 8, 4);
        put_be(out, bits, 8);
    }
    return 0;
}

static int put_bool(struct buf *out, const char *s, size_t n)
{
    int v;
    if ((n == 1 && s[0] == 't') || (n == 4 && memcmp(s, "true", 4) == 0))
        v = 1;
    else if ((n == 1 && s[0] == 'f') || (n == 5 && memcmp(s, "false", 5) == 0))
        v = 0;
    else
        return -1;
    put_be(out, 1, 4);
    put_be(out, (uint64_t)v, 1);
    return 0;
}

/* ---- numeric ---- */

static int floor_div(int a, int b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* The server's base-10000 form: digit groups aligned on the decimal point, weight = the power of
 * 10000 of the first group, dscale = the digits after the point as written (less the exponent). */
static int put_numeric(struct buf *out, const char *s, size_t n)
{
    size_t int_digits, frac_digits, exp_at;
    if (n == 0 || number_syntax(s, n, &int_digits, &frac_digits, &exp_at) != n) return -1;
    bool neg = s[0] == '-';
    long exponent = 0;
    if (exp_at) {
        const char *e = s + exp_at + 1;
        size_t elen = n - exp_at - 1;
        int64_t ev;
        if (!parse_int(e[0] == '+' ? e + 1 : e, e[0] == '+' ? elen - 1 : elen, -MAX_EXPONENT, MAX_EXPONENT,
                       &ev))
            return -1;
        exponent = (long)ev;
    }
    if (int_digits + frac_digits > MAX_DIGITS) return -1;
    /* the digits without sign and point, and where the point falls among them */
    char d[MAX_DIGITS];
    const char *p = s + (neg ? 1 : 0);
    memcpy(d, p, int_digits);
    if (frac_digits) memcpy(d + int_digits, p + int_digits + 1, frac_digits);
    int nd = (int)(int_digits + frac_digits);
    int point = (int)int_digits + (int)exponent;
    long dscale = (long)frac_digits - exponent;
    if (dscale < 0) dscale = 0;
    int first = 0;
    while (first < nd && d[first] == '0') first++;
    int last = nd; /* trailing zeros add nothing but dscale, which is kept apart */
    while (last > first && d[last - 1] == '0') last--;
    int16_t groups[MAX_DIGITS / NBASE_DIGITS + 3];
    int ngroups = 0, weight = 0;
    if (first < last) {
        /* digit i stands for 10^(point - 1 - i) */
        weight = floor_div(point - 1 - first, NBASE_DIGITS);
        int low = floor_div(point - last, NBASE_DIGITS);
        ngroups = weight - low + 1;
        memset(groups, 0, sizeof groups[0] * (size_t)ngroups);
        static const int pow10[NBASE_DIGITS] = {1, 10, 100, 1000};
        /* digit first sits at place `pos` of group 0; each next one a place lower */
        int pos = point - 1 - first - weight * NBASE_DIGITS, g = 0;
        for (int i = first; i < last; i++) {
            groups[g] = (int16_t)(groups[g] + (d[i] - '0') * pow10[pos]);
            if (--pos < 0) pos = NBASE_DIGITS - 1, g++;
        }
    }
    put_be(out, (uint64_t)(8 + 2 * ngroups), 4);
    put_be(out, (uint64_t)ngroups, 2);
    put_be(out, (uint64_t)(uint16_t)(int16_t)weight, 2);
    put_be(out, ngroups > 0 && neg ? NUMERIC_NEG : 0, 2);
    put_be(out, (uint64_t)dscale, 2);
    for (int i = 0; i < ngroups; i++) put_be(out, (uint64_t)groups[i], 2);
    return 0;
}

/* ---- dates and times ---- */

#define USECS_PER_DAY       INT64_C(86400000000)
#define POSTGRES_EPOCH_DAYS 730119 /* days from 0001-01-01 to 2000-01-01 */

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* YYYY-MM-DD (years 1-9999, a real day) as days since 2000-01-01. */
static bool parse_date(const char *s, size_t n, int64_t *days)
{
    static const int month_days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    static const int before_month[12] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
    int y, m, d;
    if (n != 10 || s[4] != '-' || s[7] != '-' || !digits_value(s, 4, &y) || !digits_value(s + 5, 2, &m) ||
        !digits_value(s + 8, 2, &d))
        return false;
    if (y < 1 || m < 1 || m > 12 || d < 1 || d > month_days[m - 1] + (m == 2 && is_leap(y))) return false;
    int64_t py = y - 1;
    int64_t from_year_one =
        py * 365 + py / 4 - py / 100 + py / 400 + before_month[m - 1] + (m > 2 && is_leap(y)) + d - 1;
    *days = from_year_one - POSTGRES_EPOCH_DAYS;
    return true;
}

static int put_date(struct buf *out, const char *s, size_t n)
{
    int64_t days;
    if (!parse_date(s, n, &days)) return -1;
    put_be(out, 4, 4);
    put_be(out, (uint64_t)(int32_t)days, 4);
    return 0;
}

/* YYYY-MM-DD[T ]HH:MM:SS[.f{1,6}] then, with a zone, Z or [+-]HH[[:]MM]. The zone is required
 * for timestamptz (without one the session's TimeZone applies) and refused for timestamp (whose
 * input ignores it). */
static int put_timestamp(struct buf *out, const char *s, size_t n, bool with_zone)
{
    int64_t days;
    int h, mi, se;
    if (n < 19 || !parse_date(s, 10, &days) || (s[10] != 'T' && s[10] != ' ') || s[13] != ':' ||
        s[16] != ':' || !digits_value(s + 11, 2, &h) || !digits_value(s + 14, 2, &mi) ||
        !digits_value(s + 17, 2, &se))
        return -1;
    if (h > 23 || mi > 59 || se > 59) return -1; /* 24:00:00 and leap seconds: the server's rules */
    size_t i = 19;
    int64_t usec = 0;
    if (i < n && s[i] == '.') {
        size_t f = ++i;
        while (i < n && is_digit(s[i])) i++;
        if (i == f || i - f > 6) return -1; /* more than microseconds: the server rounds */
        int frac = 0;
        digits_value(s + f, i - f, &frac);
        usec = frac;
        for (size_t k = i - f; k < 6; k++) usec *= 10;
    }
    int64_t offset_sec = 0;
    if (with_zone) {
        if (i < n && s[i] == 'Z')
            i++;
        else if (i < n && (s[i] == '+' || s[i] == '-')) {
            int sign = s[i] == '-' ? -1 : 1, oh, om = 0;
            if (n - i < 3 || !digits_value(s + i + 1, 2, &oh)) return -1;
            i += 3;
            size_t rest = n - i; /* "", "MM" or ":MM" */
            if (rest == 3 && s[i] == ':') i++, rest--;
            if (rest == 2) {
                if (!digits_value(s + i, 2, &om)) return -1;
                i += 2;
            }
            if (oh > 14 || om > 59) return -1;
            offset_sec = sign * (oh * 3600 + om * 60);
        } else
            return -1;
    }
    if (i != n) return -1;
    int64_t t = days * USECS_PER_DAY + ((int64_t)h * 3600 + mi * 60 + se - offset_sec) * 1000000 + usec;
    put_be(out, 8, 4);
    put_be(out, (uint64_t)t, 8);
    return 0;
}

/* ---- uuid ---- */

/* The canonical 8-4-4-4-12 form. */
static int put_uuid(struct buf *out, const char *s, size_t n)
{
    unsigned char b[16];
    if (n != 36) return -1;
    for (size_t i = 0, k = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') return -1;
            continue;
        }
        int hi = hex_digit(s[i]), lo = hex_digit(s[i + 1]);
        if (hi < 0 || lo < 0) return -1;
        b[k++] = (unsigned char)(hi << 4 | lo);
        i++;
    }
    put_be(out, 16, 4);
    buf_append(out, b, sizeof b);
    return 0;
}

/* ---- one field, one line ---- */

static bool is_text_type(Oid type)
{
    return type == PGT_TEXT || type == PGT_VARCHAR || type == PGT_BPCHAR || type == PGT_JSON ||
           type == PGT_JSONB;
}

/* Appends s[0..n) without COPY text escapes as a length-prefixed field. -1 on another escape. */
static int put_unescaped(struct buf *out, const char *s, size_t n, bool jsonb)
{
    size_t at = out->len;
    put_be(out, 0, 4);
    if (jsonb) buf_putc(out, 1); /* jsonb's binary form: a version byte, then the text */
    buf_reserve(out, n);
    char *o = out->data + out->len;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            *o++ = s[i];
            continue;
        }
        if (++i == n) return -1;
        switch (s[i]) {
        case '\\':
            *o++ = '\\';
            break;
        case 't':
            *o++ = '\t';
            break;
        case 'n':
            *o++ = '\n';
            break;
        case 'r':
            *o++ = '\r';
            break;
        default:
            return -1;
        }
    }
    size_t len = (size_t)(o - out->data) - at - 4;
    out->len = (size_t)(o - out->data);
    for (int k = 0; k < 4; k++) out->data[at + k] = (char)(len >> (8 * (3 - k)));
    return 0;
}

static int put_field(struct buf *out, Oid type, const char *s, size_t n)
{
    if (n == 2 && s[0] == '\\' && s[1] == 'N') {
        put_be(out, 0xffffffff, 4);
        return 0;
    }
    if (is_text_type(type)) return put_unescaped(out, s, n, type == PGT_JSONB);
    if (n >= MAX_SCALAR || memchr(s, '\\', n)) return -1;
    char v[MAX_SCALAR];
    memcpy(v, s, n);
    v[n] = '\0';
    switch (type) {
    case PGT_BOOL:
        return put_bool(out, v, n);
    case PGT_INT2:
        return put_int(out, v, n, INT16_MIN, INT16_MAX, 2);
    case PGT_INT4:
        return put_int(out, v, n, INT32_MIN, INT32_MAX, 4);
    case PGT_INT8:
        return put_int(out, v, n, INT64_MIN, INT64_MAX, 8);
    case PGT_FLOAT4:
        return put_float(out, v, n, true);
    case PGT_FLOAT8:
        return put_float(out, v, n, false);
    case PGT_NUMERIC:
        return put_numeric(out, v, n);
    case PGT_DATE:
        return put_date(out, v, n);
    case PGT_TIMESTAMP:
        return put_timestamp(out, v, n, false);
    case PGT_TIMESTAMPTZ:
        return put_timestamp(out, v, n, true);
    case PGT_UUID:
        return put_uuid(out, v, n);
    default:
        return -1;
    }
}

int copybin_row(const char *line, size_t len, const Oid *types, int ncols, struct buf *out)
{
    size_t at = out->len;
    put_be(out, (uint64_t)ncols, 2);
    const char *p = line, *end = line + len;
    for (int c = 0; c < ncols; c++) {
        const char *tab = memchr(p, '\t', (size_t)(end - p));
        const char *fend = tab ? tab : end;
        if ((tab == NULL) != (c == ncols - 1) || put_field(out, types[c], p, (size_t)(fend - p)) != 0) {
            out->len = at;
            return -1;
        }
        p = fend + 1;
    }
    return 0;
}
