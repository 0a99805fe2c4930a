/* fuzz_params.c — libFuzzer target: client values -> parameter text (pgtype_param_json and
 * pgtype_param_text). Input: byte 0 picks the type OID, bit 0 of byte 1 says JSON (0) or
 * query-string (1), the rest is the value. Beyond crashes it checks what the callers rely on:
 * success appends text without NUL bytes plus one NUL, failure leaves the buffer as it was with
 * a reason, and the text means the same value (numbers, base64 -> bytea hex, JSON, arrays). */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "jsonnum.h"
#include "jsonw.h"
#include "pgjson.h"
#include "pgtype.h"

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "fuzz_params: check failed: %s (line %d)\n", #cond, __LINE__);                   \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

/* Every type pgtype knows, its arrays, and a few it does not. */
static const Oid oids[] = {
    16,   17,   18,   19,   20,   21,   23,   25,   26,   114,         700,  701,  1042, 1043,
    1082, 1083, 1114, 1184, 1186, 1266, 1700, 2950, 3802, 142,         650,  774,  790,  829,
    869,  1560, 1562, 1000, 1001, 1002, 1003, 1005, 1007, 1009,        1014, 1015, 1016, 1021,
    1022, 1028, 1182, 1183, 1115, 1185, 1187, 1231, 2951, 199,         3807, 1270, 143,  651,
    775,  791,  1040, 1041, 1561, 1563, 0,    705,  2249, 4000000000u,
};

static const char PREFIX[] = "pre\0x"; /* earlier parameters in the buffer: 5 bytes */

/* Standard base64 as pgtype documents it (padding optional, no whitespace), written
 * independently: returns the decoded length, or -1 when invalid. dst has room for n bytes. */
static long ref_base64(const char *s, size_t n, unsigned char *dst)
{
    size_t pad = 0;
    while (pad < n && s[n - 1 - pad] == '=') pad++;
    size_t m = n - pad;
    if (pad > 2 || m % 4 == 1 || (pad > 0 && n % 4 != 0)) return -1;
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned long acc = 0;
    int bits = 0;
    long o = 0;
    for (size_t i = 0; i < m; i++) {
        const char *p = s[i] ? strchr(alpha, s[i]) : NULL;
        if (p == NULL) return -1;
        acc = (acc << 6 | (unsigned long)(p - alpha)) & 0xFFFFFF;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            dst[o++] = (unsigned char)(acc >> bits);
        }
    }
    return o;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* The bytea text "\x..." (lower-case hex) must hold exactly what s (base64) decodes to. */
static void check_bytea(const char *text, size_t tlen, const char *s, size_t n)
{
    unsigned char *want = malloc(n + 1);
    CHECK(want != NULL);
    long wlen = ref_base64(s, n, want);
    CHECK(wlen >= 0);
    CHECK(tlen == 2 + 2 * (size_t)wlen && text[0] == '\\' && text[1] == 'x');
    for (long i = 0; i < wlen; i++) {
        int hi = hexval(text[2 + 2 * i]), lo = hexval(text[3 + 2 * i]);
        CHECK(hi >= 0 && lo >= 0 && (unsigned char)(hi << 4 | lo) == want[i]);
    }
    free(want);
}

/* The buffer after a call that started at len 5: failure restores it, success appends the text,
 * which holds no NUL, and one NUL. Returns the text (in b) and its length in *tlen. */
static const char *check_buf(const struct buf *b, int rc, bool is_null, const char *err, size_t *tlen)
{
    CHECK(b->len >= sizeof PREFIX - 1 && memcmp(b->data, PREFIX, sizeof PREFIX - 1) == 0);
    CHECK(b->data[b->len] == '\0');
    if (rc != 0) {
        CHECK(rc == -1);
        CHECK(err[0] != '\0');
        CHECK(b->len == sizeof PREFIX - 1);
        return NULL;
    }
    if (is_null) {
        CHECK(b->len == sizeof PREFIX - 1);
        return NULL;
    }
    const char *text = b->data + sizeof PREFIX - 1;
    CHECK(b->len > sizeof PREFIX - 1 && b->data[b->len - 1] == '\0');
    *tlen = b->len - sizeof PREFIX; /* without the NUL */
    CHECK(strlen(text) == *tlen);   /* no NUL inside: libpq would cut the value there */
    return text;
}

static bool is_text_like(Oid t)
{
    return t == PGT_TEXT || t == PGT_VARCHAR || t == PGT_BPCHAR || t == PGT_NAME;
}

/* Depth of nested arrays, and whether every leaf is a string or null. */
static int array_depth(const json_t *v, bool *strings_only)
{
    if (!json_is_array(v)) {
        const char *lit;
        size_t n;
        if ((!json_is_string(v) && !json_is_null(v)) || jsonnum_literal(v, &lit, &n)) *strings_only = false;
        return 0;
    }
    int d = 0;
    for (size_t i = 0; i < json_array_size(v); i++) {
        int e = array_depth(json_array_get(v, i), strings_only);
        if (e > d) d = e;
    }
    return d + 1;
}

/* Same nesting and the same null positions. */
static bool same_shape(const json_t *a, const json_t *b)
{
    if (json_is_array(a) != json_is_array(b)) return false;
    if (!json_is_array(a)) return json_is_null(a) == json_is_null(b);
    if (json_array_size(a) != json_array_size(b)) return false;
    for (size_t i = 0; i < json_array_size(a); i++)
        if (!same_shape(json_array_get(a, i), json_array_get(b, i))) return false;
    return true;
}

/* An array literal made from a JSON array reads back (through jsonw) as the same array. */
static void check_array(Oid type, Oid elem, const json_t *v, const char *text, size_t tlen)
{
    bool strings_only = true;
    int depth = array_depth(v, &strings_only);
    struct buf j = BUF_INIT;
    pgjson_value(&j, type, text, tlen);
    json_error_t e;
    json_t *back = json_loadb(j.data, j.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (back == NULL && (strstr(e.text, "overflow") || strstr(e.text, "too big"))) {
        /* an element such as "99999999999999999999" in an int2[]: valid JSON, beyond jansson */
        buf_free(&j);
        return;
    }
    CHECK(back != NULL);
    if (depth <= 16) CHECK(json_is_array(back)); /* jsonw reads 16 levels */
    if (json_is_array(back)) {
        CHECK(same_shape(v, back));
        if (strings_only && is_text_like(elem)) CHECK(json_equal(v, back));
    }
    json_decref(back);
    buf_free(&j);
}

static void check_integer(Oid type, const json_t *v, const char *text)
{
    char *end;
    long long got = strtoll(text, &end, 10);
    CHECK(*end == '\0');
    if (json_is_integer(v)) CHECK(got == json_integer_value(v));
    if (json_is_real(v)) CHECK((double)got == json_real_value(v));
    if (type == PGT_INT2) CHECK(got >= INT16_MIN && got <= INT16_MAX);
    if (type == PGT_INT4) CHECK(got >= INT32_MIN && got <= INT32_MAX);
}

static void check_json_value(Oid type, const json_t *v, const char *text, size_t tlen)
{
    Oid elem = pgtype_array_elem(type);
    const char *lit;
    size_t litlen;
    if (jsonnum_literal(v, &lit, &litlen)) {
        /* a number jansson cannot hold travels as written; integer types round 2.0 or 1e3 */
        bool int_type = type == PGT_INT2 || type == PGT_INT4 || type == PGT_INT8 || type == PGT_OID;
        if (!int_type || jsonnum_is_integral(lit, litlen))
            CHECK(tlen == litlen && memcmp(text, lit, tlen) == 0);
        return;
    }
    if (json_is_string(v) && type != PGT_JSON && type != PGT_JSONB && type != PGT_BYTEA) {
        /* strings pass through as they are */
        CHECK(tlen == json_string_length(v) && memcmp(text, json_string_value(v), tlen) == 0);
        return;
    }
    switch (type) {
    case PGT_BOOL:
        CHECK(strcmp(text, json_is_true(v) ? "t" : "f") == 0);
        return;
    case PGT_INT2:
    case PGT_INT4:
    case PGT_INT8:
    case PGT_OID:
        check_integer(type, v, text);
        return;
    case PGT_FLOAT4:
    case PGT_FLOAT8:
    case PGT_NUMERIC: {
        char *end;
        if (json_is_integer(v)) {
            CHECK(strtoll(text, &end, 10) == json_integer_value(v) && *end == '\0');
        } else {
            CHECK(json_is_real(v));
            CHECK(strtod(text, &end) == json_real_value(v) && *end == '\0');
        }
        return;
    }
    case PGT_JSON:
    case PGT_JSONB: {
        json_error_t e;
        json_t *back = jsonnum_load(text, tlen, JSON_DECODE_ANY, &e);
        CHECK(back != NULL);
        CHECK(json_equal(back, v));
        json_decref(back);
        return;
    }
    case PGT_BYTEA:
        CHECK(json_is_string(v));
        check_bytea(text, tlen, json_string_value(v), json_string_length(v));
        return;
    default:
        break;
    }
    if (elem != 0) {
        CHECK(json_is_array(v));
        if (elem != PGT_JSON && elem != PGT_JSONB) check_array(type, elem, v, text, tlen);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    Oid type = oids[data[0] % (sizeof oids / sizeof oids[0])];
    bool query_string = data[1] & 1;
    const char *val = (const char *)data + 2;
    size_t n = size - 2;

    struct buf b = BUF_INIT;
    buf_append(&b, PREFIX, sizeof PREFIX - 1);
    char err[256];
    err[0] = '\0';
    size_t tlen = 0;

    if (query_string) {
        int rc = pgtype_param_text(type, val, n, &b, err, sizeof err);
        const char *text = check_buf(&b, rc, false, err, &tlen);
        if (type == PGT_BYTEA) {
            unsigned char *tmp = malloc(n + 1);
            CHECK(tmp != NULL);
            bool valid = ref_base64(val, n, tmp) >= 0;
            free(tmp);
            CHECK(valid == (rc == 0));
            if (text) check_bytea(text, tlen, val, n);
        } else {
            json_t *as_json = json_stringn(val, n); /* NULL unless valid UTF-8: the reference */
            CHECK((rc == 0) == (memchr(val, '\0', n) == NULL && as_json != NULL));
            json_decref(as_json);
            if (text) CHECK(tlen == n && memcmp(text, val, n) == 0);
        }
    } else {
        json_error_t e;
        json_t *v = jsonnum_load(val, n, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &e); /* as query.c */
        if (v != NULL) {
            bool is_null = true;
            int rc = pgtype_param_json(type, v, &b, &is_null, err, sizeof err);
            CHECK(rc != 0 || is_null == json_is_null(v));
            const char *text = check_buf(&b, rc, is_null, err, &tlen);
            if (text) check_json_value(type, v, text, tlen);
            json_decref(v);
        }
    }
    buf_free(&b);
    return 0;
}
