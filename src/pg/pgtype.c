/* pgtype.c — built-in PostgreSQL type OIDs, their names, and the conversion of client values
 * (JSON, or query-string text) into the text input form of a parameter (docs/http-api.md
 * "Parameters in"). Values that are strings pass through: the server validates them. */
#include "pgtype.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonnum.h"
#include "jsonw.h"
#include "util.h"

/* Built-in types without a PGT_ constant, known here for their names and their arrays. */
enum {
    T_XML = 142,
    T_CIDR = 650,
    T_MACADDR8 = 774,
    T_MONEY = 790,
    T_MACADDR = 829,
    T_INET = 869,
    T_BIT = 1560,
    T_VARBIT = 1562,
};

struct typeinfo {
    Oid oid;
    const char *name;
    Oid array_oid;
    const char *array_name;
};

/* Array OIDs checked against pg_type of PostgreSQL 15 (typcategory 'A'). */
static const struct typeinfo types[] = {
    {PGT_BOOL, "boolean", 1000, "bool[]"},
    {PGT_BYTEA, "bytea", 1001, "bytea[]"},
    {PGT_CHAR, "char", 1002, "char[]"},
    {PGT_NAME, "name", 1003, "name[]"},
    {PGT_INT2, "smallint", 1005, "int2[]"},
    {PGT_INT4, "integer", 1007, "int4[]"},
    {PGT_TEXT, "text", 1009, "text[]"},
    {PGT_BPCHAR, "character", 1014, "bpchar[]"},
    {PGT_VARCHAR, "character varying", 1015, "varchar[]"},
    {PGT_INT8, "bigint", 1016, "int8[]"},
    {PGT_FLOAT4, "real", 1021, "float4[]"},
    {PGT_FLOAT8, "double precision", 1022, "float8[]"},
    {PGT_OID, "oid", 1028, "oid[]"},
    {PGT_DATE, "date", 1182, "date[]"},
    {PGT_TIME, "time", 1183, "time[]"},
    {PGT_TIMESTAMP, "timestamp", 1115, "timestamp[]"},
    {PGT_TIMESTAMPTZ, "timestamptz", 1185, "timestamptz[]"},
    {PGT_INTERVAL, "interval", 1187, "interval[]"},
    {PGT_NUMERIC, "numeric", 1231, "numeric[]"},
    {PGT_UUID, "uuid", 2951, "uuid[]"},
    {PGT_JSON, "json", 199, "json[]"},
    {PGT_JSONB, "jsonb", 3807, "jsonb[]"},
    {PGT_TIMETZ, "timetz", 1270, "timetz[]"},
    {T_XML, "xml", 143, "xml[]"},
    {T_CIDR, "cidr", 651, "cidr[]"},
    {T_MACADDR8, "macaddr8", 775, "macaddr8[]"},
    {T_MONEY, "money", 791, "money[]"},
    {T_MACADDR, "macaddr", 1040, "macaddr[]"},
    {T_INET, "inet", 1041, "inet[]"},
    {T_BIT, "bit", 1561, "bit[]"},
    {T_VARBIT, "bit varying", 1563, "varbit[]"},
};

Oid pgtype_array_elem(Oid type)
{
    /* A switch rather than a scan of the table: the JSON writer asks this for every value of a
     * type it has no special case for. */
    switch (type) {
    case 1000:
        return PGT_BOOL;
    case 1001:
        return PGT_BYTEA;
    case 1002:
        return PGT_CHAR;
    case 1003:
        return PGT_NAME;
    case 1005:
        return PGT_INT2;
    case 1007:
        return PGT_INT4;
    case 1009:
        return PGT_TEXT;
    case 1014:
        return PGT_BPCHAR;
    case 1015:
        return PGT_VARCHAR;
    case 1016:
        return PGT_INT8;
    case 1021:
        return PGT_FLOAT4;
    case 1022:
        return PGT_FLOAT8;
    case 1028:
        return PGT_OID;
    case 1182:
        return PGT_DATE;
    case 1183:
        return PGT_TIME;
    case 1115:
        return PGT_TIMESTAMP;
    case 1185:
        return PGT_TIMESTAMPTZ;
    case 1187:
        return PGT_INTERVAL;
    case 1231:
        return PGT_NUMERIC;
    case 2951:
        return PGT_UUID;
    case 199:
        return PGT_JSON;
    case 3807:
        return PGT_JSONB;
    case 1270:
        return PGT_TIMETZ;
    case 143:
        return T_XML;
    case 651:
        return T_CIDR;
    case 775:
        return T_MACADDR8;
    case 791:
        return T_MONEY;
    case 1040:
        return T_MACADDR;
    case 1041:
        return T_INET;
    case 1561:
        return T_BIT;
    case 1563:
        return T_VARBIT;
    default:
        return 0;
    }
}

const char *pgtype_name(Oid type)
{
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (types[i].oid == type) return types[i].name;
        if (types[i].array_oid == type) return types[i].array_name;
    }
    return NULL;
}

/* ---- helpers ---- */

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen) snprintf(err, errlen, "%s", msg);
}

static void put_int(struct buf *out, long long v)
{
    char tmp[24];
    int n = sizeof tmp;
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[--n] = (char)('0' + u % 10);
        u /= 10;
    } while (u > 0);
    if (v < 0) tmp[--n] = '-';
    buf_append(out, tmp + n, sizeof tmp - (size_t)n);
}

/* The shortest of %.15g, %.16g, %.17g that reads back as the same double, so that 1.08345
 * goes out as "1.08345" rather than "1.0834500000000001". */
static void put_real(struct buf *out, double d, bool json_text)
{
    char tmp[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, d);
        if (prec == 17 || strtod(tmp, NULL) == d) break;
    }
    buf_puts(out, tmp);
    /* In JSON text keep a real a real: jsonb keeps the scale of 3.0. */
    if (json_text && strpbrk(tmp, ".en") == NULL) buf_puts(out, ".0");
}

/* A string value that passes through; NUL bytes cannot travel in a text parameter. */
static int put_text(struct buf *out, const char *s, size_t n, char *err, size_t errlen)
{
    if (memchr(s, '\0', n) != NULL) {
        set_err(err, errlen, "text must not contain NUL bytes");
        return -1;
    }
    buf_append(out, s, n);
    return 0;
}

static const signed char b64val[256] = {
    ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,  ['H'] = 8,
    ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16,
    ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,
    ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
    ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,
    ['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,
    ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63, ['/'] = 64,
}; /* value + 1; 0 = not in the alphabet */

/* Standard base64 (padding optional, no whitespace) -> bytea hex input "\x0a0b...". */
static int put_base64_as_hex(struct buf *out, const char *s, size_t n, char *err, size_t errlen)
{
    static const char hex[] = "0123456789abcdef";
    size_t pad = 0;
    while (pad < n && pad < 3 && s[n - 1 - pad] == '=') pad++;
    size_t m = n - pad;
    if (m % 4 == 1 || pad > 2 || (pad > 0 && (n % 4 != 0 || pad != 4 - m % 4))) {
        set_err(err, errlen, "invalid base64");
        return -1;
    }
    size_t start = out->len;
    buf_reserve(out, 2 + m / 4 * 6 + 6);
    char *o = out->data + out->len;
    *o++ = '\\';
    *o++ = 'x';
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < m; i++) {
        int v = b64val[(unsigned char)s[i]];
        if (v == 0) {
            out->len = start;
            set_err(err, errlen, "invalid base64");
            return -1;
        }
        acc = (acc << 6) | (uint32_t)(v - 1);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            unsigned byte = (acc >> bits) & 0xFF;
            *o++ = hex[byte >> 4];
            *o++ = hex[byte & 15];
        }
    }
    out->len = (size_t)(o - out->data);
    out->data[out->len] = '\0';
    return 0;
}

/* ---- JSON -> text ---- */

/* Compact JSON text of v; reals in their shortest round-trip form. */
static void put_json_text(struct buf *out, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        size_t keylen;
        json_t *val;
        bool first = true;
        buf_putc(out, '{');
        json_object_keylen_foreach((json_t *)v, key, keylen, val)
        {
            if (!first) buf_putc(out, ',');
            first = false;
            jsonw_string(out, key, keylen);
            buf_putc(out, ':');
            put_json_text(out, val);
        }
        buf_putc(out, '}');
        break;
    }
    case JSON_ARRAY:
        buf_putc(out, '[');
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) buf_putc(out, ',');
            put_json_text(out, json_array_get(v, i));
        }
        buf_putc(out, ']');
        break;
    case JSON_STRING: {
        const char *lit;
        size_t n;
        if (jsonnum_literal(v, &lit, &n))
            buf_append(out, lit, n); /* a number as the client wrote it: jsonb keeps its digits */
        else
            jsonw_string(out, json_string_value(v), json_string_length(v));
        break;
    }
    case JSON_INTEGER:
        put_int(out, json_integer_value(v));
        break;
    case JSON_REAL:
        put_real(out, json_real_value(v), true);
        break;
    case JSON_TRUE:
        buf_puts(out, "true");
        break;
    case JSON_FALSE:
        buf_puts(out, "false");
        break;
    case JSON_NULL:
        buf_puts(out, "null");
        break;
    }
}

static int put_integer(Oid type, const json_t *v, struct buf *out, char *err, size_t errlen)
{
    long long lo = INT64_MIN, hi = INT64_MAX;
    const char *range = type == PGT_OID ? "out of range for oid" : "out of range for bigint";
    if (type == PGT_INT2) {
        lo = INT16_MIN, hi = INT16_MAX;
        range = "out of range for smallint";
    } else if (type == PGT_INT4) {
        lo = INT32_MIN, hi = INT32_MAX;
        range = "out of range for integer";
    }
    if (json_is_integer(v)) {
        long long i = json_integer_value(v);
        if (type != PGT_OID && (i < lo || i > hi)) {
            set_err(err, errlen, range);
            return -1;
        }
        put_int(out, i);
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        /* 2^63 is exact as a double; every double in [-2^63, 2^63) converts without overflow. */
        if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) {
            set_err(err, errlen, range);
            return -1;
        }
        long long i = (long long)d;
        if ((double)i != d) {
            set_err(err, errlen, "expected an integer");
            return -1;
        }
        if (type != PGT_OID && (i < lo || i > hi)) {
            set_err(err, errlen, range);
            return -1;
        }
        put_int(out, i);
        return 0;
    }
    if (json_is_string(v)) return put_text(out, json_string_value(v), json_string_length(v), err, errlen);
    set_err(err, errlen, "expected an integer");
    return -1;
}

/* Escapes the element text at out->data[from..len) in place as a double-quoted array element. */
static void quote_element(struct buf *out, size_t from)
{
    size_t m = out->len - from, extra = 0;
    for (size_t i = from; i < out->len; i++)
        if (out->data[i] == '"' || out->data[i] == '\\') extra++;
    buf_reserve(out, extra + 2);
    char *d = out->data;
    size_t j = from + m + extra + 1;
    d[j + 1] = '\0';
    d[j--] = '"';
    for (size_t i = from + m; i-- > from;) {
        char c = d[i];
        d[j--] = c;
        if (c == '"' || c == '\\') d[j--] = '\\';
    }
    d[from] = '"';
    out->len = from + m + extra + 2;
}

static int convert(Oid type, const json_t *v, struct buf *out, char *err, size_t errlen);

/* A JSON array -> an array literal {..}. path names the element for error messages. */
static int put_array(Oid elem, const json_t *arr, struct buf *out, char *path, size_t pathlen, char *err,
                     size_t errlen)
{
    size_t plen = strlen(path);
    buf_putc(out, '{');
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *e = json_array_get(arr, i);
        snprintf(path + plen, pathlen - plen, "[%zu]", i + 1);
        if (i) buf_putc(out, ',');
        if (json_is_null(e)) {
            buf_puts(out, "NULL");
        } else if (json_is_array(e) && elem != PGT_JSON && elem != PGT_JSONB) {
            /* nested JSON arrays are dimensions; for json[]/jsonb[] they are element values */
            if (put_array(elem, e, out, path, pathlen, err, errlen) < 0) return -1;
        } else {
            char why[128];
            size_t from = out->len;
            if (convert(elem, e, out, why, sizeof why) < 0) {
                if (err && errlen) snprintf(err, errlen, "array element %s: %s", path, why);
                return -1;
            }
            quote_element(out, from);
        }
    }
    path[plen] = '\0';
    buf_putc(out, '}');
    return 0;
}

/* A number literal jansson could not hold exactly (jsonnum.h) for type: as written wherever
 * PostgreSQL reads numbers, so no digit is lost; integer types still take 2.0 or 1e3. */
static int convert_literal(Oid type, const char *lit, size_t n, struct buf *out, char *err, size_t errlen)
{
    switch (type) {
    case PGT_BOOL:
        set_err(err, errlen, "expected a boolean");
        return -1;
    case PGT_BYTEA:
        set_err(err, errlen, "expected a base64 string");
        return -1;
    case PGT_INT2:
    case PGT_INT4:
    case PGT_INT8:
    case PGT_OID: {
        if (jsonnum_is_integral(lit, n)) break; /* past 18 digits: PostgreSQL checks the range */
        char *tmp = xstrndup(lit, n);
        json_t *real = json_real(strtod(tmp, NULL)); /* NULL when it overflows a double */
        free(tmp);
        int rc = real ? put_integer(type, real, out, err, errlen) : -1;
        if (real == NULL) set_err(err, errlen, "out of range for an integer");
        json_decref(real);
        return rc;
    }
    default:
        if (pgtype_array_elem(type) != 0) {
            set_err(err, errlen, "expected an array");
            return -1;
        }
        break;
    }
    buf_append(out, lit, n);
    return 0;
}

/* Appends the text form of the non-null JSON value v for type; -1 with err set otherwise. */
static int convert(Oid type, const json_t *v, struct buf *out, char *err, size_t errlen)
{
    const char *lit;
    size_t n;
    if (jsonnum_literal(v, &lit, &n)) return convert_literal(type, lit, n, out, err, errlen);
    switch (type) {
    case PGT_BOOL:
        if (json_is_true(v))
            buf_putc(out, 't');
        else if (json_is_false(v))
            buf_putc(out, 'f');
        else if (json_is_string(v))
            return put_text(out, json_string_value(v), json_string_length(v), err, errlen);
        else
            goto wrong_kind;
        return 0;
    case PGT_INT2:
    case PGT_INT4:
    case PGT_INT8:
    case PGT_OID:
        return put_integer(type, v, out, err, errlen);
    case PGT_FLOAT4:
    case PGT_FLOAT8:
    case PGT_NUMERIC:
        if (json_is_integer(v))
            put_int(out, json_integer_value(v));
        else if (json_is_real(v))
            put_real(out, json_real_value(v), false);
        else if (json_is_string(v))
            return put_text(out, json_string_value(v), json_string_length(v), err, errlen);
        else
            goto wrong_kind;
        return 0;
    case PGT_JSON:
    case PGT_JSONB:
        put_json_text(out, v);
        return 0;
    case PGT_BYTEA:
        if (!json_is_string(v)) goto wrong_kind;
        return put_base64_as_hex(out, json_string_value(v), json_string_length(v), err, errlen);
    default:
        break;
    }

    Oid elem = pgtype_array_elem(type);
    if (elem != 0) {
        if (json_is_array(v)) {
            char path[96] = "";
            return put_array(elem, v, out, path, sizeof path, err, errlen);
        }
        if (json_is_string(v)) return put_text(out, json_string_value(v), json_string_length(v), err, errlen);
        goto wrong_kind;
    }
    switch (json_typeof(v)) {
    case JSON_STRING:
        return put_text(out, json_string_value(v), json_string_length(v), err, errlen);
    case JSON_INTEGER:
        put_int(out, json_integer_value(v));
        return 0;
    case JSON_REAL:
        put_real(out, json_real_value(v), false);
        return 0;
    case JSON_TRUE:
        buf_puts(out, "true");
        return 0;
    case JSON_FALSE:
        buf_puts(out, "false");
        return 0;
    default:
        goto wrong_kind;
    }

wrong_kind:
    switch (type) {
    case PGT_BOOL:
        set_err(err, errlen, "expected a boolean");
        break;
    case PGT_FLOAT4:
    case PGT_FLOAT8:
    case PGT_NUMERIC:
        set_err(err, errlen, "expected a number");
        break;
    case PGT_BYTEA:
        set_err(err, errlen, "expected a base64 string");
        break;
    default:
        set_err(err, errlen, pgtype_array_elem(type) ? "expected an array" : "expected a string");
    }
    return -1;
}

int pgtype_param_json(Oid type, const json_t *v, struct buf *out, bool *is_null, char *err, size_t errlen)
{
    size_t start = out->len;
    *is_null = false;
    if (v == NULL || json_is_null(v)) {
        *is_null = true;
        return 0;
    }
    if (convert(type, v, out, err, errlen) < 0) {
        out->len = start;
        if (out->cap) out->data[start] = '\0';
        return -1;
    }
    buf_putc(out, '\0');
    return 0;
}

int pgtype_param_text(Oid type, const char *s, size_t n, struct buf *out, char *err, size_t errlen)
{
    size_t start = out->len;
    int rc;
    if (type == PGT_BYTEA) {
        rc = put_base64_as_hex(out, s, n, err, errlen);
    } else if (!jsonw_utf8_valid(s, n)) { /* JSON strings are checked by the parser; these here */
        set_err(err, errlen, "text must be valid UTF-8");
        rc = -1;
    } else {
        rc = put_text(out, s, n, err, errlen);
    }
    if (rc < 0) {
        out->len = start;
        if (out->cap) out->data[start] = '\0';
        return -1;
    }
    buf_putc(out, '\0');
    return 0;
}
