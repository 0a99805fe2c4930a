/* pgjson.c — PostgreSQL text-format values and results -> JSON bytes, with the type mapping of
 * docs/http-api.md ("Results"). This runs for every value of every response, so it writes
 * straight into the caller's buffer: no allocation per value and no printf. The connection must
 * use DateStyle ISO and bytea_output hex (escape is also understood) for the timestamp and bytea
 * mappings. */
#include "pgjson.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"
#include "pgtype.h"
#include "util.h"

/* ---- numbers ---- */

static inline bool isdig(char c)
{
    return c >= '0' && c <= '9';
}

/* True when s[0..n) is a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool is_json_number(const char *s, size_t n)
{
    size_t i = 0;
    if (i < n && s[i] == '-') i++;
    if (i >= n || !isdig(s[i])) return false;
    if (s[i] == '0') {
        i++;
    } else {
        while (i < n && isdig(s[i])) i++;
    }
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || !isdig(s[i])) return false;
        while (i < n && isdig(s[i])) i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= n || !isdig(s[i])) return false;
        while (i < n && isdig(s[i])) i++;
    }
    return i == n;
}

/* An int8 (already a JSON integer) that a double holds exactly: |v| <= 2^53. */
static bool int_fits_double(const char *s, size_t n)
{
    static const char max[] = "9007199254740992";
    if (*s == '-') s++, n--;
    if (n != sizeof max - 1) return n < sizeof max - 1;
    return memcmp(s, max, n) <= 0;
}

/* A numeric (already a JSON number) that survives a trip through a double and back: at most
 * 15 significant digits (DBL_DIG), counted from the first non-zero digit to the last digit
 * written, so trailing zeros count ("12.50" has four, "0.000123" three, 1e20 written out has
 * 21 and stays a string, as a big integer literal would break many JSON parsers). Numbers
 * smaller than about 1e-300 would underflow a double. numeric output never has an exponent;
 * if one appears the value stays a string. */
static bool numeric_fits_double(const char *s, size_t n)
{
    int sig = 0, lead_frac_zeros = 0;
    bool in_frac = false;
    for (size_t i = s[0] == '-'; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            in_frac = true;
        } else if (!isdig(c)) {
            return false;
        } else if (sig == 0 && c == '0') {
            if (in_frac) lead_frac_zeros++;
        } else if (++sig > 15) {
            return false;
        }
    }
    return sig == 0 || lead_frac_zeros < 300;
}

/* ---- timestamps ---- */

/* "2024-01-02 03:04:05.5+05:30" -> "2024-01-02T03:04:05.5+05:30"; a zone offset of hours only
 * ("+00", "-08") gains ":00". "infinity" and anything not in ISO DateStyle stay as they are;
 * BC dates only get the T. */
static void put_timestamp(struct buf *b, const char *s, size_t n, bool tz)
{
    size_t sp = 0;
    while (sp < n && (isdig(s[sp]) || s[sp] == '-')) sp++;
    if (sp < 8 || sp >= n || s[sp] != ' ') {
        jsonw_string(b, s, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
            jsonw_string(b, s, n);
            return;
        }
    }
    buf_need(b, n + 5);
    char *o = b->data + b->len;
    *o++ = '"';
    memcpy(o, s, sp);
    o += sp;
    *o++ = 'T';
    memcpy(o, s + sp + 1, n - sp - 1);
    o += n - sp - 1;
    if (tz && !(n >= 3 && memcmp(s + n - 3, " BC", 3) == 0)) {
        size_t k = sp + 1;
        while (k < n && s[k] != '+' && s[k] != '-') k++;
        if (n - k == 3) {
            *o++ = ':';
            *o++ = '0';
            *o++ = '0';
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
}

/* ---- bytea ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void put_b64(struct buf *b, const unsigned char *p, size_t n)
{
    buf_need(b, (n + 2) / 3 * 4);
    char *o = b->data + b->len;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = b64[v >> 18];
        *o++ = b64[(v >> 12) & 63];
        *o++ = b64[(v >> 6) & 63];
        *o++ = b64[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
        *o++ = b64[v >> 18];
        *o++ = b64[(v >> 12) & 63];
        *o++ = i + 1 < n ? b64[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    b->len = (size_t)(o - b->data);
}

/* Decodes bytea text output (hex "\x0a0b", or the escape format) and writes it as a base64
 * JSON string, a chunk at a time. Text that is not valid bytea output becomes a plain string. */
static void put_bytea(struct buf *b, const char *s, size_t n)
{
    unsigned char chunk[3 * 256];
    size_t fill = 0, start = b->len;
    bool hex = n >= 2 && s[0] == '\\' && s[1] == 'x';
    buf_putc_raw(b, '"');
    for (size_t i = hex ? 2 : 0; i < n;) {
        int v;
        if (hex) {
            int hi = i + 1 < n ? hex_digit(s[i]) : -1, lo = hi >= 0 ? hex_digit(s[i + 1]) : -1;
            if (lo < 0) goto invalid;
            v = hi << 4 | lo;
            i += 2;
        } else if (s[i] != '\\') {
            v = (unsigned char)s[i++];
        } else if (i + 1 < n && s[i + 1] == '\\') {
            v = '\\';
            i += 2;
        } else if (i + 3 < n && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' && s[i + 2] <= '7' &&
                   s[i + 3] >= '0' && s[i + 3] <= '7') {
            v = (s[i + 1] - '0') << 6 | (s[i + 2] - '0') << 3 | (s[i + 3] - '0');
            i += 4;
        } else {
            goto invalid;
        }
        chunk[fill++] = (unsigned char)v;
        if (fill == sizeof chunk) {
            put_b64(b, chunk, fill);
            fill = 0;
        }
    }
    put_b64(b, chunk, fill);
    buf_putc_raw(b, '"');
    return;
invalid:
    b->len = start;
    jsonw_string(b, s, n);
}

/* ---- arrays ---- */

static void put_value(struct buf *b, Oid type, const char *val, size_t len, bool in_array);

#define ARRAY_MAX_DEPTH 16 /* PostgreSQL allows 6 dimensions */

/* Where unescaped array elements are built: on the stack, or on the heap when one is larger. */
struct scratch {
    char stack[512];
    char *heap;
    size_t heap_cap;
};

static char *scratch_get(struct scratch *sc, size_t n)
{
    if (n <= sizeof sc->stack) return sc->stack;
    if (n > sc->heap_cap) {
        free(sc->heap);
        sc->heap = xmalloc(n);
        sc->heap_cap = n;
    }
    return sc->heap;
}

static inline void skip_space(const char *s, size_t n, size_t *i)
{
    while (*i < n && (s[*i] == ' ' || s[*i] == '\t' || s[*i] == '\n' || s[*i] == '\r')) (*i)++;
}

/* Parses one {...} level of array text output at s[*i] and writes a JSON array. Returns false
 * on text that is not array output. */
static bool put_array_level(struct buf *b, Oid elem, const char *s, size_t n, size_t *i, struct scratch *sc,
                            int depth)
{
    if (depth > ARRAY_MAX_DEPTH || *i >= n || s[*i] != '{') return false;
    (*i)++;
    buf_putc_raw(b, '[');
    skip_space(s, n, i);
    if (*i < n && s[*i] == '}') {
        (*i)++;
        buf_putc_raw(b, ']');
        return true;
    }
    for (;;) {
        skip_space(s, n, i);
        if (*i >= n) return false;
        if (s[*i] == '{') {
            if (!put_array_level(b, elem, s, n, i, sc, depth + 1)) return false;
        } else {
            bool quoted = s[*i] == '"', escaped = false;
            size_t start = quoted ? *i + 1 : *i, end;
            size_t k = start;
            if (quoted) {
                while (k < n && s[k] != '"') {
                    if (s[k] == '\\') {
                        escaped = true;
                        k++;
                    }
                    k++;
                }
                if (k >= n) return false;
                end = k;
                *i = k + 1;
            } else {
                while (k < n && s[k] != ',' && s[k] != '}') {
                    if (s[k] == '\\') {
                        escaped = true;
                        k++;
                    }
                    k++;
                }
                if (k > n) return false;
                end = k;
                while (end > start && (s[end - 1] == ' ' || s[end - 1] == '\t')) end--;
                *i = k;
                if (end == start) return false;
            }
            const char *v = s + start;
            size_t vlen = end - start;
            if (escaped) {
                char *d = scratch_get(sc, vlen);
                size_t m = 0;
                for (size_t j = start; j < end; j++) {
                    if (s[j] == '\\' && j + 1 < end) j++;
                    d[m++] = s[j];
                }
                v = d;
                vlen = m;
            }
            if (!quoted && !escaped && vlen == 4 && (v[0] | 0x20) == 'n' && (v[1] | 0x20) == 'u' &&
                (v[2] | 0x20) == 'l' && (v[3] | 0x20) == 'l')
                BUF_PUTLIT(b, "null");
            else
                put_value(b, elem, v, vlen, true);
        }
        skip_space(s, n, i);
        if (*i >= n) return false;
        if (s[*i] == ',') {
            (*i)++;
            buf_putc_raw(b, ',');
        } else if (s[*i] == '}') {
            (*i)++;
            buf_putc_raw(b, ']');
            return true;
        } else {
            return false;
        }
    }
}

static void put_array(struct buf *b, Oid elem, const char *s, size_t n)
{
    struct scratch sc;
    size_t i = 0, start = b->len;
    sc.heap = NULL;
    sc.heap_cap = 0;
    if (n > 0 && s[0] == '[') { /* "[0:1]={...}": lower bounds other than 1 */
        const char *eq = memchr(s, '=', n);
        i = eq ? (size_t)(eq - s) + 1 : n;
    }
    bool ok = put_array_level(b, elem, s, n, &i, &sc, 1);
    skip_space(s, n, &i);
    free(sc.heap);
    if (!ok || i != n) {
        b->len = start;
        jsonw_string(b, s, n);
    }
}

/* ---- values ---- */

bool pgjson_is_number(Oid type, const char *val, size_t len)
{
    switch (type) {
    case PGT_INT2:
    case PGT_INT4:
    case PGT_OID:
    case PGT_FLOAT4:
    case PGT_FLOAT8:
        return is_json_number(val, len);
    case PGT_INT8:
        return is_json_number(val, len) && int_fits_double(val, len);
    case PGT_NUMERIC:
        return is_json_number(val, len) && numeric_fits_double(val, len);
    default:
        return false;
    }
}

static void put_value(struct buf *b, Oid type, const char *val, size_t len, bool in_array)
{
    switch (type) {
    case PGT_INT2:
    case PGT_INT4:
    case PGT_OID:
    case PGT_FLOAT4:
    case PGT_FLOAT8:
    case PGT_INT8:
    case PGT_NUMERIC:
        /* NaN and infinities are no JSON numbers, and an int8 or numeric a double cannot hold
         * exactly would lose digits: those go out as strings. */
        if (pgjson_is_number(type, val, len))
            buf_put_raw(b, val, len);
        else
            jsonw_string(b, val, len);
        return;
    case PGT_BOOL:
        if (len == 1 && val[0] == 't')
            BUF_PUTLIT(b, "true");
        else if (len == 1 && val[0] == 'f')
            BUF_PUTLIT(b, "false");
        else
            jsonw_string(b, val, len);
        return;
    case PGT_JSON:
    case PGT_JSONB:
        /* The server only hands out valid JSON for these types. */
        if (len > 0)
            buf_put_raw(b, val, len);
        else
            BUF_PUTLIT(b, "null");
        return;
    case PGT_TIMESTAMPTZ:
        put_timestamp(b, val, len, true);
        return;
    case PGT_TIMESTAMP:
        put_timestamp(b, val, len, false);
        return;
    case PGT_BYTEA:
        put_bytea(b, val, len);
        return;
    default:
        break;
    }
    Oid elem = in_array ? 0 : pgtype_array_elem(type);
    if (elem != 0)
        put_array(b, elem, val, len);
    else
        jsonw_string(b, val, len);
}

void pgjson_value(struct buf *b, Oid type, const char *val, size_t len)
{
    put_value(b, type, val, len, false);
    buf_terminate(b);
}

/* ---- rows and results ---- */

static void put_row(struct buf *b, const PGresult *res, int row, int ncols, const Oid *types,
                    const char *names, const size_t *name_off)
{
    buf_putc_raw(b, '{');
    for (int c = 0; c < ncols; c++) {
        if (c > 0) buf_putc_raw(b, ',');
        if (names) {
            buf_put_raw(b, names + name_off[c], name_off[c + 1] - name_off[c]);
        } else {
            const char *name = PQfname(res, c);
            jsonw_string(b, name, strlen(name));
            buf_putc_raw(b, ':');
        }
        if (PQgetisnull(res, row, c)) {
            BUF_PUTLIT(b, "null");
            continue;
        }
        Oid t = types ? types[c] : PQftype(res, c);
        put_value(b, t, PQgetvalue(res, row, c), (size_t)PQgetlength(res, row, c), false);
    }
    buf_putc_raw(b, '}');
}

void pgjson_row(struct buf *b, const PGresult *res, int row)
{
    put_row(b, res, row, PQnfields(res), NULL, NULL, NULL);
    buf_terminate(b);
}

void pgjson_result(struct buf *b, const PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_SINGLE_TUPLE) {
        const char *ct = PQcmdTuples((PGresult *)res);
        size_t n = strlen(ct);
        BUF_PUTLIT(b, "{\"rows\":[],\"row_count\":");
        bool digits = n > 0;
        for (size_t i = 0; i < n; i++) digits = digits && isdig(ct[i]);
        if (digits)
            buf_put_raw(b, ct, n);
        else
            buf_putc_raw(b, '0');
        buf_putc_raw(b, '}');
        buf_terminate(b);
        return;
    }

    /* Column names are escaped once ("name":) and copied into every row. */
    int ncols = PQnfields(res), nrows = PQntuples(res);
    struct buf names = BUF_INIT;
    /* the column tables of a usual result stay on the stack: no allocation per request */
    enum { STACK_COLS = 32 };
    size_t off_stack[STACK_COLS + 1];
    Oid types_stack[STACK_COLS + 1];
    bool small = ncols <= STACK_COLS;
    size_t *off = small ? off_stack : xmalloc(((size_t)ncols + 1) * sizeof *off);
    Oid *types = small ? types_stack : xmalloc(((size_t)ncols + 1) * sizeof *types);
    for (int c = 0; c < ncols; c++) {
        const char *name = PQfname(res, c);
        off[c] = names.len;
        jsonw_string(&names, name, strlen(name));
        buf_putc_raw(&names, ':');
        types[c] = PQftype(res, c);
    }
    off[ncols] = names.len;

    BUF_PUTLIT(b, "{\"rows\":[");
    for (int r = 0; r < nrows; r++) {
        if (r > 0) buf_putc_raw(b, ',');
        put_row(b, res, r, ncols, types, names.data ? names.data : "", off);
    }
    BUF_PUTLIT(b, "],\"row_count\":");
    buf_put_uint(b, (uint64_t)nrows);
    buf_putc_raw(b, '}');
    buf_terminate(b);
    if (!small) {
        free(types);
        free(off);
    }
    buf_free(&names);
}
