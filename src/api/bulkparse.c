/* bulkparse.c — reads a bulk body (JSON array of objects, NDJSON, CSV with a header row) a few rows
 * at a time and writes each row as one line of COPY text format. Only one row is ever decoded at
 * once. A flat JSON row is scanned here straight from the body; jansson reads any other (and words
 * its errors). Values convert with the same rules as query parameters (pgtype.c), except that
 * JSON numbers reach numeric and float columns as written. */
#include "bulkparse.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonnum.h"
#include "pgtype.h"
#include "util.h"

enum { ST_READING, ST_DONE, ST_FAILED };

/* Longest piece of client text (a key, a header name) quoted back in an error. */
#define QUOTE_MAX 100

/* One CSV field: a slice of the body, or (copied) a slice of r->rec at off, for a quoted field
 * whose "" escapes had to be undone. */
struct bulk_field {
    const char *p;
    size_t len, off;
    bool copied, null;
};

/* COPY text format escapes: the character after the backslash, 0 for bytes that pass as they are. */
static const char copy_escape[256] = {['\\'] = '\\', ['\t'] = 't', ['\n'] = 'n', ['\r'] = 'r'};

static const unsigned char utf8_bom[3] = {0xEF, 0xBB, 0xBF};

static void fail(struct bulk_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(struct bulk_reader *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->failed, sizeof r->failed, fmt, ap);
    va_end(ap);
    r->state = ST_FAILED;
}

static void copy_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen) snprintf(err, errlen, "%s", msg);
}

static bool is_json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static const char *skip_json_space(const char *p, const char *end)
{
    while (p < end && is_json_space(*p)) p++;
    return p;
}

/* Appends s[0..n) escaped for COPY text format. */
static void put_copy_text(struct buf *out, const char *s, size_t n)
{
    buf_reserve(out, 2 * n);
    char *o = out->data + out->len;
    for (size_t i = 0; i < n; i++) {
        char e = copy_escape[(unsigned char)s[i]];
        if (e) {
            *o++ = '\\';
            *o++ = e;
        } else {
            *o++ = s[i];
        }
    }
    out->len = (size_t)(o - out->data);
    out->data[out->len] = '\0';
}

/* The declared column named s[0..n), or -1. */
static int find_column(const struct bulk_reader *r, const char *s, size_t n)
{
    for (int c = 0; c < r->ncolumns; c++)
        if (r->namelen[c] == n && memcmp(r->columns[c], s, n) == 0) return c;
    return -1;
}

/* ---- JSON rows (both the array and NDJSON): the jansson path ---- */

/* Appends the COPY line of one parsed JSON object. Returns 0, or -1 after fail(). */
static int put_object_row(struct bulk_reader *r, json_t *obj, struct buf *out)
{
    long row = r->rows + 1;
    size_t found = 0;
    for (int c = 0; c < r->ncolumns; c++) {
        r->vals[c] = json_object_getn(obj, r->columns[c], r->namelen[c]);
        if (r->vals[c]) found++;
    }
    if (found != json_object_size(obj)) {
        const char *key;
        size_t keylen;
        json_t *v;
        json_object_keylen_foreach(obj, key, keylen, v)
        {
            if (find_column(r, key, keylen) < 0) {
                fail(r, "row %ld: unknown column \"%.*s\"", row,
                     (int)(keylen < QUOTE_MAX ? keylen : QUOTE_MAX), key);
                return -1;
            }
        }
    }
    for (int c = 0; c < r->ncolumns; c++) {
        if (r->vals[c] == NULL) {
            fail(r, "row %ld: missing column \"%s\"", row, r->columns[c]);
            return -1;
        }
    }
    for (int c = 0; c < r->ncolumns; c++) {
        if (c > 0) buf_putc(out, '\t');
        if (json_is_null(r->vals[c])) {
            buf_append(out, "\\N", 2);
            continue;
        }
        char why[160];
        bool is_null;
        buf_reset(&r->scratch);
        if (pgtype_param_json(r->types[c], r->vals[c], &r->scratch, &is_null, why, sizeof why) < 0) {
            fail(r, "row %ld, column \"%s\": %s", row, r->columns[c], why);
            return -1;
        }
        put_copy_text(out, r->scratch.data, r->scratch.len - 1); /* without pgtype's NUL */
    }
    buf_putc(out, '\n');
    return 0;
}

/* Parses the object at p[0..n) (p[0] is '{') with jansson and appends its line. eof_check: the
 * object must fill the rest of p[0..n) but for whitespace. Returns the bytes consumed, or -1
 * after fail(). This is the reference reading of a row: the fast path below hands it every row
 * it does not take, so that errors and their messages are jansson's. */
static long slow_json_row(struct bulk_reader *r, const char *p, size_t n, bool eof_check, struct buf *out)
{
    json_error_t e;
    size_t flags = JSON_REJECT_DUPLICATES | (eof_check ? 0 : JSON_DISABLE_EOF_CHECK);
    json_t *obj = jsonnum_load(p, n, flags, &e); /* numbers past int64 or a double keep their digits */
    if (obj == NULL) {
        fail(r, "row %ld: malformed JSON: %s", r->rows + 1, e.text);
        return -1;
    }
    /* With JSON_DISABLE_EOF_CHECK, position is where the value ended (checked in the tests). */
    long used = e.position;
    int rc = put_object_row(r, obj, out);
    json_decref(obj);
    return rc < 0 ? -1 : used;
}

/* ---- JSON fast path ----
 * Nearly every bulk row is a flat object of strings, numbers, booleans and nulls. Such a row is
 * scanned here straight from the body, with no allocation: a first pass finds and checks each
 * value (the JSON grammar, escapes, UTF-8, number ranges: everything jansson checks), a second
 * writes the line in the declared column order. Numbers go to numeric, float and integer columns
 * as the client wrote them, so no digit is lost to a double. A row this path does not take —
 * malformed, an unknown, missing or repeated key, a value of the wrong kind — goes to
 * slow_json_row, which decides and words the error. Nested objects and arrays are parsed by
 * jansson one value at a time and converted by pgtype. */

/* How a column takes a JSON value: pgtype_param_json's cases. */
enum col_kind {
    CK_TEXT,   /* any other type: strings, numbers as pgtype writes them, true/false */
    CK_NUMBER, /* numeric, float4, float8: numbers verbatim, strings */
    CK_INT,    /* int2, int4, int8, oid: integral numbers verbatim, strings */
    CK_BOOL,   /* true/false as t/f, strings */
    CK_JSON,   /* json, jsonb: the value's JSON text */
    CK_BYTEA,  /* base64 strings only */
    CK_ARRAY,  /* arrays: strings, JSON arrays (through pgtype) */
};

enum val_kind { V_NONE, V_STRING, V_NUMBER, V_TRUE, V_FALSE, V_NULL, V_NESTED };

/* One value of the current row as the scanner found it. */
struct bulk_value {
    const char *p;      /* its first byte (a string's opening quote) */
    size_t len;         /* its length, a string's quotes included */
    unsigned char kind; /* enum val_kind; V_NONE: the column's key has not come yet */
    bool escaped;       /* a string with a backslash escape: it must be decoded */
    bool integral;      /* a number without fraction or exponent */
    json_t *nested;     /* V_NESTED: jansson's reading, released once the row is done */
};

/* Byte classes inside a JSON string. */
enum { SC_PLAIN, SC_QUOTE, SC_BACKSLASH, SC_CONTROL, SC_UTF8 };
static const unsigned char string_class[256] = {
    [0x00 ... 0x1f] = SC_CONTROL,
    ['"'] = SC_QUOTE,
    ['\\'] = SC_BACKSLASH,
    [0x80 ... 0xff] = SC_UTF8,
};

/* The byte a one-letter escape stands for, 0 for a letter that is no escape (\u is apart). */
static const char unescape_char[256] = {
    ['"'] = '"',  ['\\'] = '\\', ['/'] = '/',  ['b'] = '\b',
    ['f'] = '\f', ['n'] = '\n',  ['r'] = '\r', ['t'] = '\t',
};

static enum col_kind col_kind_of(Oid type)
{
    switch (type) {
    case PGT_NUMERIC:
    case PGT_FLOAT4:
    case PGT_FLOAT8:
        return CK_NUMBER;
    case PGT_INT2:
    case PGT_INT4:
    case PGT_INT8:
    case PGT_OID:
        return CK_INT;
    case PGT_BOOL:
        return CK_BOOL;
    case PGT_JSON:
    case PGT_JSONB:
        return CK_JSON;
    case PGT_BYTEA:
        return CK_BYTEA;
    default:
        return pgtype_array_elem(type) ? CK_ARRAY : CK_TEXT;
    }
}

/* Room for n more bytes and the NUL, with no call when there is room already. */
static inline void ensure(struct buf *out, size_t n)
{
    if (out->len + n + 1 > out->cap) buf_reserve(out, n);
}

static inline bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The value of 4 hex digits at s, or -1. */
static int hex4(const char *s)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        int d = is_digit(c)              ? c - '0'
                : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                         : -1;
        if (d < 0) return -1;
        v = v << 4 | d;
    }
    return v;
}

/* Length of the well-formed UTF-8 sequence at s (s[0] >= 0x80), or 0. The rules are jansson's:
 * no overlong form, no UTF-16 surrogate, nothing above U+10FFFF. */
static size_t utf8_len(const unsigned char *s, const unsigned char *end)
{
    unsigned c = s[0], lo = 0x80, hi = 0xBF; /* the range of the second byte */
    size_t n;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0; /* below: overlong */
        if (c == 0xED) hi = 0x9F; /* above: surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90; /* below: overlong */
        if (c == 0xF4) hi = 0x8F; /* above: past U+10FFFF */
    } else {
        return 0;
    }
    if ((size_t)(end - s) < n || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return n;
}

/* Checks the escape at s (s[0] == '\\'). Returns the byte after it, or NULL for one jansson
 * refuses: an unknown letter, \u without 4 hex digits, a surrogate without its partner. */
static const char *scan_escape(const char *s, const char *end)
{
    if (end - s < 2) return NULL;
    if (s[1] != 'u') return unescape_char[(unsigned char)s[1]] ? s + 2 : NULL;
    int cp = end - s >= 6 ? hex4(s + 2) : -1;
    if (cp < 0 || (cp >= 0xDC00 && cp <= 0xDFFF)) return NULL;
    if (cp < 0xD800 || cp > 0xDBFF) return s + 6;
    /* a high surrogate: the low one must follow at once */
    if (end - s < 12 || s[6] != '\\' || s[7] != 'u') return NULL;
    int lo = hex4(s + 8);
    return lo >= 0xDC00 && lo <= 0xDFFF ? s + 12 : NULL;
}

/* The string at p (p[0] == '"'), checked as jansson checks it: valid escapes, valid UTF-8, no
 * control character. Sets v; returns the byte after the closing quote, or NULL. */
static const char *scan_string(const char *p, const char *end, struct bulk_value *v)
{
    const char *s = p + 1;
    bool escaped = false;
    for (;;) {
        while (s < end && string_class[(unsigned char)*s] == SC_PLAIN) s++;
        if (s == end) return NULL;
        switch (string_class[(unsigned char)*s]) {
        case SC_QUOTE:
            v->kind = V_STRING;
            v->p = p;
            v->len = (size_t)(s + 1 - p);
            v->escaped = escaped;
            return s + 1;
        case SC_BACKSLASH:
            escaped = true;
            if ((s = scan_escape(s, end)) == NULL) return NULL;
            break;
        case SC_UTF8: {
            size_t n = utf8_len((const unsigned char *)s, (const unsigned char *)end);
            if (n == 0) return NULL;
            s += n;
            break;
        }
        default: /* a control character */
            return NULL;
        }
    }
}

/* True when the real p[0..n) overflows a double, which jansson refuses ("real number overflow").
 * Only called for numbers of 10^308 and more, so the copy costs nothing in practice. */
static bool real_overflows(struct bulk_reader *r, const char *p, size_t n)
{
    buf_reset(&r->tmp);
    buf_append(&r->tmp, p, n);
    errno = 0;
    double d = strtod(r->tmp.data, NULL);
    return (d == HUGE_VAL || d == -HUGE_VAL) && errno == ERANGE;
}

/* The number at p: the JSON grammar -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? and a value
 * jansson can hold (an integer in int64, a real that does not overflow a double). Sets v;
 * returns the byte after it, or NULL. What follows is the caller's to check ("01" ends at 1). */
static const char *scan_number(struct bulk_reader *r, const char *p, const char *end, struct bulk_value *v)
{
    const char *s = p;
    bool neg = s < end && *s == '-';
    if (neg) s++;
    const char *digits = s;
    if (s == end || !is_digit(*s)) return NULL;
    if (*s++ != '0')
        while (s < end && is_digit(*s)) s++;
    size_t ndigits = (size_t)(s - digits);
    bool integral = true;
    if (s < end && *s == '.') {
        integral = false;
        if (++s == end || !is_digit(*s)) return NULL;
        while (s < end && is_digit(*s)) s++;
    }
    long exp = 0;
    if (s < end && (*s == 'e' || *s == 'E')) {
        integral = false;
        s++;
        bool exp_neg = s < end && *s == '-';
        if (s < end && (*s == '+' || *s == '-')) s++;
        if (s == end || !is_digit(*s)) return NULL;
        for (; s < end && is_digit(*s); s++)
            if (exp < 100000) exp = exp * 10 + (*s - '0'); /* enough to tell a huge one */
        if (exp_neg) exp = -exp;
    }
    if (integral) {
        /* int64: 19 digits at most, and at most 9223372036854775807 (…808 below zero) */
        if (ndigits > 19) return NULL;
        if (ndigits == 19 && memcmp(digits, neg ? "9223372036854775808" : "9223372036854775807", 19) > 0)
            return NULL;
    } else if ((long)ndigits + exp > 308 && real_overflows(r, p, (size_t)(s - p))) {
        /* below 10^308 a real cannot overflow (DBL_MAX is 1.8e308), so only those are tried */
        return NULL;
    }
    v->kind = V_NUMBER;
    v->p = p;
    v->len = (size_t)(s - p);
    v->integral = integral;
    return s;
}

/* true, false or null at p. Sets v; returns the byte after it, or NULL. What follows is the
 * caller's to check ("truex" ends at x). */
static const char *scan_literal(const char *p, const char *end, struct bulk_value *v)
{
    static const struct {
        const char *word;
        size_t len;
        unsigned char kind;
    } words[] = {{"true", 4, V_TRUE}, {"false", 5, V_FALSE}, {"null", 4, V_NULL}};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        if ((size_t)(end - p) >= words[i].len && memcmp(p, words[i].word, words[i].len) == 0) {
            v->kind = words[i].kind;
            v->p = p;
            v->len = words[i].len;
            return p + words[i].len;
        }
    }
    return NULL;
}

/* True when the JSON text p[0..n) (valid) nests limit or more arrays/objects deep. */
static bool nests_at_least(const char *p, size_t n, int limit)
{
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth >= limit) return true;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return false;
}

/* An object or array value at p: rare in bulk rows, so jansson parses it (with the row's flags)
 * into v->nested. Returns the byte after it, or NULL. */
static const char *scan_nested(const char *p, const char *end, struct bulk_value *v)
{
    json_error_t e;
    json_t *j = jsonnum_load(p, (size_t)(end - p), JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, &e);
    if (j == NULL) return NULL;
    size_t used = (size_t)e.position;
    /* Inside the row the value sits one level deeper than jansson saw it here: near the depth
     * limit, let the whole row go to jansson so that the limit stays where it was. It takes two
     * bytes a level, so short values need no look. */
    int limit = JSON_PARSER_MAX_DEPTH - 1;
    if (used >= 2 * (size_t)limit && nests_at_least(p, used, limit)) {
        json_decref(j);
        return NULL;
    }
    v->kind = V_NESTED;
    v->p = p;
    v->len = used;
    v->nested = j;
    return p + used;
}

/* Any value at p. Returns the byte after it, or NULL. */
static const char *scan_value(struct bulk_reader *r, const char *p, const char *end, struct bulk_value *v)
{
    if (p == end) return NULL;
    switch (*p) {
    case '"':
        return scan_string(p, end, v);
    case '{':
    case '[':
        return scan_nested(p, end, v);
    case 't':
    case 'f':
    case 'n':
        return scan_literal(p, end, v);
    default:
        return scan_number(r, p, end, v);
    }
}

/* Appends one byte of decoded text, COPY-escaped when copy is set. */
static inline char *put_byte(char *o, unsigned char c, bool copy)
{
    char e = copy ? copy_escape[c] : 0;
    if (e) {
        *o++ = '\\';
        *o++ = e;
    } else {
        *o++ = (char)c;
    }
    return o;
}

/* Appends the decoded text of the checked string token v (its escapes undone), COPY-escaped
 * when copy is set. Returns 0, or -1 when it decodes to a NUL byte, which text cannot carry (the
 * text up to it is appended all the same). */
static int decode_string(const struct bulk_value *v, struct buf *out, bool copy)
{
    const char *s = v->p + 1, *e = v->p + v->len - 1;
    int rc = 0;
    /* Every escape decodes to no more bytes than it takes, COPY escape included ("\n" -> "\n",
     * "\u00e9" -> 2 bytes), and other bytes pass one for one: the token's length is enough. */
    ensure(out, (size_t)(e - s));
    char *o = out->data + out->len;
    while (s < e) {
        if (*s != '\\') {
            *o++ = *s++; /* a checked string has no control character to escape here */
            continue;
        }
        if (s[1] != 'u') {
            o = put_byte(o, (unsigned char)unescape_char[(unsigned char)s[1]], copy);
            s += 2;
            continue;
        }
        uint32_t cp = (uint32_t)hex4(s + 2);
        s += 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) { /* checked: the low surrogate follows */
            cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)hex4(s + 2) - 0xDC00);
            s += 6;
        }
        if (cp == 0) rc = -1;
        if (cp < 0x80) {
            o = put_byte(o, (unsigned char)cp, copy);
        } else if (cp < 0x800) {
            *o++ = (char)(0xC0 | cp >> 6);
            *o++ = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            *o++ = (char)(0xE0 | cp >> 12);
            *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
            *o++ = (char)(0x80 | (cp & 0x3F));
        } else {
            *o++ = (char)(0xF0 | cp >> 18);
            *o++ = (char)(0x80 | (cp >> 12 & 0x3F));
            *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
            *o++ = (char)(0x80 | (cp & 0x3F));
        }
    }
    out->len = (size_t)(o - out->data);
    out->data[out->len] = '\0';
    return copy ? rc : 0;
}

/* The column a key token names, or -1. Keys nearly always come in the declared order, so the
 * column after the previous key's (hint) is tried first. */
static int key_column(struct bulk_reader *r, const struct bulk_value *k, int hint)
{
    const char *s = k->p + 1;
    size_t n = k->len - 2;
    if (k->escaped) {
        buf_reset(&r->tmp);
        decode_string(k, &r->tmp, false);
        s = r->tmp.data;
        n = r->tmp.len;
    }
    if (hint < r->ncolumns && r->namelen[hint] == n && memcmp(r->columns[hint], s, n) == 0) return hint;
    return find_column(r, s, n);
}

/* The object at p (p[0] == '{'): sets r->fv[c] for every declared column. Returns the byte after
 * the closing brace, or NULL for a row the fast path does not take. */
static const char *scan_object(struct bulk_reader *r, const char *p, const char *end)
{
    int seen = 0, hint = 0;
    p = skip_json_space(p + 1, end);
    if (p < end && *p == '}') return NULL; /* {}: every column is missing */
    for (;;) {
        struct bulk_value key;
        if (p == end || *p != '"' || (p = scan_string(p, end, &key)) == NULL) return NULL;
        int c = key_column(r, &key, hint);
        if (c < 0 || r->fv[c].kind != V_NONE) return NULL; /* unknown, or a key twice */
        p = skip_json_space(p, end);
        if (p == end || *p != ':') return NULL;
        p = skip_json_space(p + 1, end);
        if ((p = scan_value(r, p, end, &r->fv[c])) == NULL) return NULL;
        seen++;
        hint = c + 1;
        p = skip_json_space(p, end);
        if (p == end) return NULL;
        if (*p == '}') break;
        if (*p != ',') return NULL;
        p = skip_json_space(p + 1, end);
    }
    return seen == r->ncolumns ? p + 1 : NULL;
}

/* Appends a JSON value converted by pgtype, COPY-escaped. Returns 0, or -1 if pgtype refuses it. */
static int put_via_pgtype(struct bulk_reader *r, int c, const json_t *v, struct buf *out)
{
    char why[160];
    bool is_null;
    buf_reset(&r->scratch);
    if (pgtype_param_json(r->types[c], v, &r->scratch, &is_null, why, sizeof why) < 0) return -1;
    put_copy_text(out, r->scratch.data, r->scratch.len - 1); /* without pgtype's NUL */
    return 0;
}

/* Appends bytes that need no COPY escape. */
static inline void put_raw(struct buf *out, const char *s, size_t n)
{
    ensure(out, n);
    memcpy(out->data + out->len, s, n);
    out->len += n;
}

static int put_string_value(struct bulk_reader *r, int c, const struct bulk_value *v, struct buf *out)
{
    switch ((enum col_kind)r->kind[c]) {
    case CK_JSON: /* the string's own JSON text, escapes and all */
        put_copy_text(out, v->p, v->len);
        return 0;
    case CK_BYTEA: {
        char why[160];
        buf_reset(&r->tmp);
        decode_string(v, &r->tmp, false);
        buf_reset(&r->scratch);
        if (pgtype_param_text(PGT_BYTEA, r->tmp.data, r->tmp.len, &r->scratch, why, sizeof why) < 0)
            return -1;
        put_copy_text(out, r->scratch.data, r->scratch.len - 1);
        return 0;
    }
    default: /* text in the type's input syntax, as pgtype passes it */
        if (!v->escaped) {
            /* no backslash and no control character: nothing to undo, nothing to COPY-escape */
            put_raw(out, v->p + 1, v->len - 2);
            return 0;
        }
        return decode_string(v, out, true);
    }
}

/* A number that is not an integer, for an integer column, which needs its double (pgtype's
 * rule): 3.0 is 3, 3.5 is refused. */
static int put_real_via_pgtype(struct bulk_reader *r, int c, const struct bulk_value *v, struct buf *out)
{
    buf_reset(&r->tmp);
    buf_append(&r->tmp, v->p, v->len);
    json_t *j = json_real(strtod(r->tmp.data, NULL)); /* finite: scan_number refused overflow */
    int rc = put_via_pgtype(r, c, j, out);
    json_decref(j);
    return rc;
}

/* True when the integral number token v is within the range of integer column type. */
static bool int_in_range(Oid type, const struct bulk_value *v)
{
    long long lo, hi;
    if (type == PGT_INT2)
        lo = INT16_MIN, hi = INT16_MAX;
    else if (type == PGT_INT4)
        lo = INT32_MIN, hi = INT32_MAX;
    else
        return true; /* int8: scan_number kept it in int64; oid: pgtype checks no range */
    const char *s = v->p, *e = v->p + v->len;
    bool neg = *s == '-';
    if (neg) s++;
    if (e - s > 10) return false;
    long long n = 0;
    for (; s < e; s++) n = n * 10 + (*s - '0');
    if (neg) n = -n;
    return n >= lo && n <= hi;
}

static int put_number_value(struct bulk_reader *r, int c, const struct bulk_value *v, struct buf *out)
{
    switch ((enum col_kind)r->kind[c]) {
    case CK_NUMBER:
    case CK_JSON:
        /* as written, like every number jansson cannot hold (jsonnum.h): exact, and PostgreSQL
         * judges what it cannot take (1e-400 for a float8 is out of range, not 0) */
        put_raw(out, v->p, v->len);
        return 0;
    case CK_TEXT:
    case CK_INT:
        if (!v->integral && r->kind[c] == CK_TEXT) { /* 1e2 stays 1e2, as a query parameter would */
            put_raw(out, v->p, v->len);
            return 0;
        }
        if (!v->integral) return put_real_via_pgtype(r, c, v, out);
        if (r->kind[c] == CK_INT && !int_in_range(r->types[c], v)) return -1;
        /* pgtype writes the integer's value: the same digits, but -0 is 0 */
        if (v->len == 2 && v->p[0] == '-' && v->p[1] == '0')
            put_raw(out, "0", 1);
        else
            put_raw(out, v->p, v->len);
        return 0;
    default: /* bool, bytea, arrays: no number */
        return -1;
    }
}

static int put_bool_value(struct bulk_reader *r, int c, bool t, struct buf *out)
{
    switch ((enum col_kind)r->kind[c]) {
    case CK_BOOL:
        put_raw(out, t ? "t" : "f", 1);
        return 0;
    case CK_TEXT:
    case CK_JSON:
        if (t)
            put_raw(out, "true", 4);
        else
            put_raw(out, "false", 5);
        return 0;
    default:
        return -1;
    }
}

/* Appends column c's value of the scanned row. Returns 0, or -1 for a value the column does not
 * take (slow_json_row words the error). */
static int put_value(struct bulk_reader *r, int c, struct buf *out)
{
    const struct bulk_value *v = &r->fv[c];
    switch ((enum val_kind)v->kind) {
    case V_NULL:
        put_raw(out, "\\N", 2);
        return 0;
    case V_STRING:
        return put_string_value(r, c, v, out);
    case V_NUMBER:
        return put_number_value(r, c, v, out);
    case V_TRUE:
    case V_FALSE:
        return put_bool_value(r, c, v->kind == V_TRUE, out);
    case V_NESTED:
        return put_via_pgtype(r, c, v->nested, out);
    default:
        return -1;
    }
}

/* Reads the object at p[0..n) (p[0] is '{') on the fast path and appends its line; eof_check as
 * for slow_json_row. Returns the bytes consumed, or -1 with out as it was when the row is one for
 * slow_json_row. */
static long fast_json_row(struct bulk_reader *r, const char *p, size_t n, bool eof_check, struct buf *out)
{
    const char *end = p + n;
    size_t start = out->len;
    memset(r->fv, 0, (size_t)r->ncolumns * sizeof *r->fv);
    const char *after = scan_object(r, p, end);
    if (after && eof_check && skip_json_space(after, end) != end) after = NULL;
    for (int c = 0; after && c < r->ncolumns; c++) {
        if (c > 0) put_raw(out, "\t", 1);
        if (put_value(r, c, out) < 0) after = NULL;
    }
    for (int c = 0; c < r->ncolumns; c++) {
        if (r->fv[c].nested) json_decref(r->fv[c].nested);
        r->fv[c].nested = NULL;
    }
    if (after == NULL) {
        out->len = start;
        if (out->cap) out->data[start] = '\0';
        return -1;
    }
    put_raw(out, "\n", 1);
    out->data[out->len] = '\0';
    return after - p;
}

/* The per-column state of both JSON paths, allocated once for the whole body. */
static void json_reader_init(struct bulk_reader *r)
{
    r->vals = xcalloc((size_t)r->ncolumns, sizeof *r->vals);
    r->fv = xcalloc((size_t)r->ncolumns, sizeof *r->fv);
    r->kind = xmalloc((size_t)r->ncolumns);
    for (int c = 0; c < r->ncolumns; c++) r->kind[c] = (unsigned char)col_kind_of(r->types[c]);
}

/* One JSON row at p[0..n): the fast path, or jansson for a row it does not take. Same returns as
 * slow_json_row. */
static long json_row(struct bulk_reader *r, const char *p, size_t n, bool eof_check, struct buf *out)
{
    long used = fast_json_row(r, p, n, eof_check, out);
    return used >= 0 ? used : slow_json_row(r, p, n, eof_check, out);
}

/* JSON array: r->p is just after '[' (first) or just after an element. 1 = a row was appended,
 * 0 = the array ended, -1 after fail(). */
static int next_array_row(struct bulk_reader *r, struct buf *out, bool first)
{
    const char *p = skip_json_space(r->p, r->end);
    long row = r->rows + 1;
    bool comma = false;
    if (!first) {
        if (p == r->end) {
            fail(r, "malformed JSON after row %ld: the array is not closed", r->rows);
            return -1;
        }
        if (*p == ',') {
            comma = true;
            p = skip_json_space(p + 1, r->end);
        } else if (*p != ']') {
            fail(r, "malformed JSON after row %ld: expected ',' or ']'", r->rows);
            return -1;
        }
    }
    if (p == r->end) {
        fail(r, "row %ld: malformed JSON: unexpected end of the body", row);
        return -1;
    }
    if (*p == ']' && !comma) { /* "[..., ]" falls through to "expected a JSON object" */
        if (skip_json_space(p + 1, r->end) != r->end) {
            fail(r, "unexpected data after the array");
            return -1;
        }
        r->p = r->end;
        return 0;
    }
    if (*p != '{') {
        fail(r, "row %ld: expected a JSON object", row);
        return -1;
    }
    long used = json_row(r, p, (size_t)(r->end - p), false, out);
    if (used < 0) return -1;
    r->p = p + used;
    return 1;
}

/* NDJSON: one object per line; blank lines are skipped. Same returns as next_array_row. */
static int next_ndjson_row(struct bulk_reader *r, struct buf *out)
{
    while (r->p < r->end) {
        const char *nl = memchr(r->p, '\n', (size_t)(r->end - r->p));
        const char *eol = nl ? nl : r->end;
        const char *p = skip_json_space(r->p, eol);
        r->p = nl ? nl + 1 : r->end;
        if (p == eol) continue;
        if (*p != '{') {
            fail(r, "row %ld: expected a JSON object", r->rows + 1);
            return -1;
        }
        return json_row(r, p, (size_t)(eol - p), true, out) < 0 ? -1 : 1;
    }
    return 0;
}

/* ---- CSV ---- */

/* True when only line ends remain: the end of the data. */
static bool csv_at_end(const struct bulk_reader *r)
{
    for (const char *p = r->p; p < r->end; p++)
        if (*p != '\n' && *p != '\r') return false;
    return true;
}

/* Reads the field at r->p (RFC 4180). Sets *f and *eor (the field ended its record) and moves
 * r->p past the separator or line end. Returns 0, or -1 with *why for an unterminated quote or
 * a character other than a separator after a closing quote. */
static int csv_field(struct bulk_reader *r, struct bulk_field *f, bool *eor, const char **why)
{
    const char *p = r->p, *end = r->end;
    f->copied = f->null = false;
    if (p < end && *p == '"') {
        const char *start = ++p;
        for (;;) {
            const char *q = memchr(p, '"', (size_t)(end - p));
            if (q == NULL) {
                *why = "unterminated quoted field";
                return -1;
            }
            if (q + 1 < end && q[1] == '"') { /* "" is one quote: copy the field to undo it */
                if (!f->copied) {
                    f->copied = true;
                    f->off = r->rec.len;
                }
                buf_append(&r->rec, p, (size_t)(q + 1 - p));
                p = q + 2;
                continue;
            }
            if (f->copied) {
                buf_append(&r->rec, p, (size_t)(q - p));
                f->len = r->rec.len - f->off;
            } else {
                f->p = start;
                f->len = (size_t)(q - start);
            }
            p = q + 1;
            break;
        }
        if (p < end && *p != ',' && *p != '\n' && *p != '\r') {
            *why = "unexpected character after a closing quote";
            return -1;
        }
    } else {
        f->p = p;
        while (p < end && *p != ',' && *p != '\n' && *p != '\r') p++;
        f->len = (size_t)(p - f->p);
        f->null = f->len == 0; /* unquoted empty = NULL; "" = the empty string */
    }
    if (p == end) {
        *eor = true;
    } else if (*p == ',') {
        *eor = false;
        p++;
    } else {
        *eor = true;
        if (*p == '\r' && p + 1 < end && p[1] == '\n') p++;
        p++;
    }
    r->p = p;
    return 0;
}

static const char *field_text(const struct bulk_reader *r, const struct bulk_field *f)
{
    return f->copied ? r->rec.data + f->off : f->p;
}

/* Maps each declared column to its field from the header row. Returns 0, or -1 after fail(). */
static int read_csv_header(struct bulk_reader *r)
{
    if (csv_at_end(r)) {
        fail(r, "the CSV body has no header row");
        return -1;
    }
    for (int c = 0; c < r->ncolumns; c++) r->col_field[c] = -1;
    bool eor = false;
    for (int nf = 0; !eor; nf++) {
        struct bulk_field f;
        const char *why;
        buf_reset(&r->rec);
        if (csv_field(r, &f, &eor, &why) < 0) {
            fail(r, "CSV header: %s", why);
            return -1;
        }
        const char *name = field_text(r, &f);
        int c = find_column(r, name, f.len);
        if (c < 0) {
            fail(r, "CSV header: unknown column \"%.*s\"", (int)(f.len < QUOTE_MAX ? f.len : QUOTE_MAX),
                 name);
            return -1;
        }
        if (r->col_field[c] >= 0) {
            fail(r, "CSV header: column \"%s\" appears twice", r->columns[c]);
            return -1;
        }
        r->col_field[c] = nf; /* nf < ncolumns: each field so far named a different column */
    }
    for (int c = 0; c < r->ncolumns; c++) {
        if (r->col_field[c] < 0) {
            fail(r, "CSV header: missing column \"%s\"", r->columns[c]);
            return -1;
        }
    }
    return 0;
}

/* One CSV record. Same returns as next_array_row. */
static int next_csv_row(struct bulk_reader *r, struct buf *out)
{
    if (csv_at_end(r)) {
        r->p = r->end;
        return 0;
    }
    long row = r->rows + 1;
    int nf = 0;
    bool eor = false;
    buf_reset(&r->rec);
    while (!eor) {
        struct bulk_field f;
        const char *why;
        if (csv_field(r, &f, &eor, &why) < 0) {
            /* the header has ncolumns fields, so field nf < ncolumns has a name */
            int c = -1;
            for (int i = 0; i < r->ncolumns && c < 0; i++)
                if (r->col_field[i] == nf) c = i;
            if (c >= 0)
                fail(r, "row %ld, column \"%s\": %s", row, r->columns[c], why);
            else
                fail(r, "row %ld: %s", row, why);
            return -1;
        }
        if (nf < r->ncolumns) r->fields[nf] = f;
        nf++;
    }
    if (nf != r->ncolumns) {
        fail(r, "row %ld: expected %d fields, got %d", row, r->ncolumns, nf);
        return -1;
    }
    for (int c = 0; c < r->ncolumns; c++) {
        const struct bulk_field *f = &r->fields[r->col_field[c]];
        if (c > 0) buf_putc(out, '\t');
        if (f->null) {
            buf_append(out, "\\N", 2);
            continue;
        }
        char why[160];
        buf_reset(&r->scratch);
        if (pgtype_param_text(r->types[c], field_text(r, f), f->len, &r->scratch, why, sizeof why) < 0) {
            fail(r, "row %ld, column \"%s\": %s", row, r->columns[c], why);
            return -1;
        }
        put_copy_text(out, r->scratch.data, r->scratch.len - 1);
    }
    buf_putc(out, '\n');
    return 1;
}

/* ---- public ---- */

int bulk_reader_init(struct bulk_reader *r, enum bulk_format format, const char *body, size_t len,
                     char *const *columns, const Oid *types, int ncolumns, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    buf_init(&r->scratch);
    buf_init(&r->rec);
    buf_init(&r->tmp);
    r->format = format;
    r->state = ST_READING;
    r->p = body;
    r->end = body + len;
    r->columns = columns;
    r->types = types;
    r->ncolumns = ncolumns;
    if (ncolumns < 1) {
        fail(r, "no columns declared");
        goto failed;
    }
    r->namelen = xmalloc((size_t)ncolumns * sizeof *r->namelen);
    for (int c = 0; c < ncolumns; c++) r->namelen[c] = strlen(columns[c]);

    /* A UTF-8 byte order mark, as spreadsheet exports write, is not data. */
    if (len >= 3 && memcmp(body, utf8_bom, 3) == 0) r->p += 3;

    switch (format) {
    case BULK_JSON:
        json_reader_init(r);
        r->p = skip_json_space(r->p, r->end);
        if (r->p == r->end || *r->p != '[') {
            fail(r, "the body must be a JSON array of objects");
            goto failed;
        }
        r->p++;
        return 0;
    case BULK_NDJSON:
        json_reader_init(r);
        return 0;
    case BULK_CSV:
        r->col_field = xmalloc((size_t)ncolumns * sizeof *r->col_field);
        r->fields = xmalloc((size_t)ncolumns * sizeof *r->fields);
        if (read_csv_header(r) < 0) goto failed;
        return 0;
    }
    fail(r, "unknown bulk format");
failed:
    copy_err(err, errlen, r->failed);
    return -1;
}

int bulk_reader_next(struct bulk_reader *r, struct buf *out, int max_rows, char *err, size_t errlen)
{
    if (r->state == ST_FAILED) {
        copy_err(err, errlen, r->failed[0] ? r->failed : "the bulk reader is closed");
        return -1;
    }
    if (r->state == ST_DONE) return 0;
    if (max_rows < 1) max_rows = 1;

    size_t start = out->len;
    long rows_before = r->rows;
    int n = 0;
    while (n < max_rows) {
        int rc;
        switch (r->format) {
        case BULK_JSON:
            rc = next_array_row(r, out, r->rows == 0);
            break;
        case BULK_NDJSON:
            rc = next_ndjson_row(r, out);
            break;
        default:
            rc = next_csv_row(r, out);
            break;
        }
        if (rc < 0) {
            out->len = start;
            if (out->cap) out->data[start] = '\0';
            r->rows = rows_before;
            copy_err(err, errlen, r->failed);
            return -1;
        }
        if (rc == 0) {
            r->state = ST_DONE;
            break;
        }
        n++;
        r->rows++;
    }
    return n;
}

long bulk_reader_rows(const struct bulk_reader *r)
{
    return r->rows;
}

void bulk_reader_free(struct bulk_reader *r)
{
    free(r->namelen);
    free(r->vals);
    free(r->fv);
    free(r->kind);
    free(r->col_field);
    free(r->fields);
    buf_free(&r->scratch);
    buf_free(&r->rec);
    buf_free(&r->tmp);
    r->namelen = NULL;
    r->vals = NULL;
    r->fv = NULL;
    r->kind = NULL;
    r->col_field = NULL;
    r->fields = NULL;
    r->state = ST_FAILED;
    r->failed[0] = '\0';
}
