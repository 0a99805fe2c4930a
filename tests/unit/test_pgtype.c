/* test_pgtype.c — type OIDs and names, and client values -> parameter text, rule by rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgtype.h"

static json_t *parse(const char *json_text)
{
    json_error_t e;
    json_t *v = json_loads(json_text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (v == NULL) fail_msg("bad test JSON [%s]: %s", json_text, e.text);
    return v;
}

/* Converts json_text for type after some existing bytes; expects success and exactly want
 * followed by one NUL, appended. */
static void check_json_n(Oid type, const char *json_text, const char *want, size_t want_len)
{
    json_t *v = parse(json_text);
    struct buf out = BUF_INIT;
    buf_append(&out, "pre", 4); /* an earlier parameter and its NUL */
    bool is_null = true;
    char err[128] = "";
    int rc = pgtype_param_json(type, v, &out, &is_null, err, sizeof err);
    if (rc != 0) fail_msg("type %u %s: failed: %s", type, json_text, err);
    assert_false(is_null);
    if (out.len != 4 + want_len + 1 || memcmp(out.data + 4, want, want_len) != 0)
        fail_msg("type %u %s: got [%.*s] (%zu bytes), want [%s]", type, json_text, (int)(out.len - 4),
                 out.data + 4, out.len - 4, want);
    assert_int_equal(out.data[out.len - 1], '\0');
    assert_memory_equal(out.data, "pre", 4);
    buf_free(&out);
    json_decref(v);
}

static void check_json(Oid type, const char *json_text, const char *want)
{
    check_json_n(type, json_text, want, strlen(want));
}

/* Expects failure with exactly want_err, and out left as it was. */
static void check_json_err(Oid type, const char *json_text, const char *want_err)
{
    json_t *v = parse(json_text);
    struct buf out = BUF_INIT;
    buf_append(&out, "pre", 4);
    bool is_null = false;
    char err[128] = "";
    int rc = pgtype_param_json(type, v, &out, &is_null, err, sizeof err);
    if (rc == 0) fail_msg("type %u %s: succeeded with [%s]", type, json_text, out.data + 4);
    assert_int_equal(rc, -1);
    assert_string_equal(err, want_err);
    assert_int_equal(out.len, 4);
    buf_free(&out);
    json_decref(v);
}

static void check_text(Oid type, const char *s, size_t n, const char *want)
{
    struct buf out = BUF_INIT;
    char err[128] = "";
    int rc = pgtype_param_text(type, s, n, &out, err, sizeof err);
    if (rc != 0) fail_msg("text for type %u: failed: %s", type, err);
    assert_int_equal(out.len, strlen(want) + 1);
    assert_string_equal(out.data, want);
    buf_free(&out);
}

static void check_text_err(Oid type, const char *s, size_t n, const char *want_err)
{
    struct buf out = BUF_INIT;
    buf_append(&out, "x", 2);
    char err[128] = "";
    assert_int_equal(pgtype_param_text(type, s, n, &out, err, sizeof err), -1);
    assert_string_equal(err, want_err);
    assert_int_equal(out.len, 2);
    buf_free(&out);
}

static void test_array_elem(void **state)
{
    static const Oid pairs[][2] = {
        {1000, PGT_BOOL},        {1001, PGT_BYTEA},    {1002, PGT_CHAR},    {1003, PGT_NAME},
        {1005, PGT_INT2},        {1007, PGT_INT4},     {1009, PGT_TEXT},    {1015, PGT_VARCHAR},
        {1016, PGT_INT8},        {1021, PGT_FLOAT4},   {1022, PGT_FLOAT8},  {1028, PGT_OID},
        {1014, PGT_BPCHAR},      {1182, PGT_DATE},     {1183, PGT_TIME},    {1115, PGT_TIMESTAMP},
        {1185, PGT_TIMESTAMPTZ}, {1187, PGT_INTERVAL}, {1231, PGT_NUMERIC}, {2951, PGT_UUID},
        {199, PGT_JSON},         {3807, PGT_JSONB},    {1270, PGT_TIMETZ},  {1041, 869 /* inet */},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
        assert_int_equal(pgtype_array_elem(pairs[i][0]), pairs[i][1]);
    assert_int_equal(pgtype_array_elem(PGT_INT4), 0);
    assert_int_equal(pgtype_array_elem(PGT_TEXT), 0);
    assert_int_equal(pgtype_array_elem(0), 0);
    assert_int_equal(pgtype_array_elem(123456), 0);
}

static void test_names(void **state)
{
    assert_string_equal(pgtype_name(PGT_INT4), "integer");
    assert_string_equal(pgtype_name(PGT_INT8), "bigint");
    assert_string_equal(pgtype_name(PGT_INT2), "smallint");
    assert_string_equal(pgtype_name(PGT_NUMERIC), "numeric");
    assert_string_equal(pgtype_name(PGT_TEXT), "text");
    assert_string_equal(pgtype_name(PGT_BOOL), "boolean");
    assert_string_equal(pgtype_name(PGT_FLOAT8), "double precision");
    assert_string_equal(pgtype_name(PGT_TIMESTAMPTZ), "timestamptz");
    assert_string_equal(pgtype_name(PGT_JSONB), "jsonb");
    assert_string_equal(pgtype_name(1007), "int4[]");
    assert_string_equal(pgtype_name(1009), "text[]");
    assert_string_equal(pgtype_name(3807), "jsonb[]");
    assert_null(pgtype_name(0));
    assert_null(pgtype_name(123456));
}

static void test_null(void **state)
{
    static const Oid types[] = {PGT_BOOL, PGT_INT4, PGT_TEXT, PGT_JSONB, PGT_BYTEA, 1007, 99999};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        json_t *v = json_null();
        struct buf out = BUF_INIT;
        bool is_null = false;
        char err[64];
        assert_int_equal(pgtype_param_json(types[i], v, &out, &is_null, err, sizeof err), 0);
        assert_true(is_null);
        assert_int_equal(out.len, 0);
        buf_free(&out);
        json_decref(v);
    }
}

static void test_bool(void **state)
{
    check_json(PGT_BOOL, "true", "t");
    check_json(PGT_BOOL, "false", "f");
    check_json(PGT_BOOL, "\"yes\"", "yes");
    check_json_err(PGT_BOOL, "1", "expected a boolean");
    check_json_err(PGT_BOOL, "[true]", "expected a boolean");
    check_json_err(PGT_BOOL, "{}", "expected a boolean");
}

static void test_integers(void **state)
{
    check_json(PGT_INT4, "42", "42");
    check_json(PGT_INT4, "-2147483648", "-2147483648");
    check_json(PGT_INT4, "2147483647", "2147483647");
    check_json(PGT_INT8, "-9223372036854775808", "-9223372036854775808");
    check_json(PGT_INT8, "9223372036854775807", "9223372036854775807");
    check_json(PGT_INT2, "-32768", "-32768");
    check_json(PGT_OID, "4294967295", "4294967295");
    /* an integral real */
    check_json(PGT_INT4, "7.0", "7");
    check_json(PGT_INT8, "1e3", "1000");
    check_json(PGT_INT8, "-0.0", "0");
    check_json(PGT_INT8, "9.2e18", "9200000000000000000");
    /* strings are the server's to validate */
    check_json(PGT_INT8, "\"12345678901234567890\"", "12345678901234567890");
    check_json(PGT_INT4, "\"abc\"", "abc");
    check_json_err(PGT_INT4, "1.5", "expected an integer");
    check_json_err(PGT_INT8, "true", "expected an integer");
    check_json_err(PGT_INT2, "[1]", "expected an integer");
    check_json_err(PGT_OID, "{}", "expected an integer");
    check_json_err(PGT_INT2, "32768", "out of range for smallint");
    check_json_err(PGT_INT2, "-32769", "out of range for smallint");
    check_json_err(PGT_INT2, "40000.0", "out of range for smallint");
    check_json_err(PGT_INT4, "2147483648", "out of range for integer");
    check_json_err(PGT_INT4, "-2147483649", "out of range for integer");
    check_json_err(PGT_INT4, "3e9", "out of range for integer");
    check_json_err(PGT_INT8, "9.3e18", "out of range for bigint");
    check_json_err(PGT_INT8, "9223372036854775808.0", "out of range for bigint");
    check_json_err(PGT_INT8, "-1e300", "out of range for bigint");
}

static void test_floats(void **state)
{
    check_json(PGT_NUMERIC, "1.08345", "1.08345");
    check_json(PGT_FLOAT8, "1.08345", "1.08345");
    check_json(PGT_FLOAT8, "0.1", "0.1");
    check_json(PGT_FLOAT8, "0.30000000000000004", "0.30000000000000004"); /* needs 17 digits */
    check_json(PGT_FLOAT8, "1.0000000000000002", "1.0000000000000002");   /* needs 17 digits */
    check_json(PGT_FLOAT8, "123456789.12345679", "123456789.12345679");   /* needs 17 digits */
    check_json(PGT_FLOAT4, "3.0", "3");
    check_json(PGT_FLOAT8, "1e300", "1e+300");
    check_json(PGT_FLOAT8, "-2.5e-7", "-2.5e-07");
    check_json(PGT_NUMERIC, "42", "42");
    check_json(PGT_NUMERIC, "-9223372036854775808", "-9223372036854775808");
    check_json(PGT_NUMERIC, "\"12345678901234567890.123456789\"", "12345678901234567890.123456789");
    check_json(PGT_FLOAT8, "\"NaN\"", "NaN");
    check_json_err(PGT_NUMERIC, "true", "expected a number");
    check_json_err(PGT_FLOAT8, "[1]", "expected a number");
    check_json_err(PGT_FLOAT4, "{\"a\":1}", "expected a number");
}

static void test_json_types(void **state)
{
    check_json(PGT_JSON, "\"a\"", "\"a\"");
    check_json(PGT_JSONB, "{\"b\": [1, 2.5, null, true, false, \"x\\\"y\"], \"a\": {}}",
               "{\"b\":[1,2.5,null,true,false,\"x\\\"y\"],\"a\":{}}");
    check_json(PGT_JSONB, "[]", "[]");
    check_json(PGT_JSONB, "17", "17");
    check_json(PGT_JSONB, "0.1", "0.1");
    check_json(PGT_JSONB, "3.0", "3.0");
    check_json(PGT_JSONB, "1e20", "1e+20");
    check_json(PGT_JSON, "true", "true");
    check_json(PGT_JSON, "\"tab\\tnl\\n\\u00e9\"", "\"tab\\tnl\\n\xc3\xa9\"");
    check_json(PGT_JSON, "{\"k\": \"a\\u0000b\"}", "{\"k\":\"a\\u0000b\"}");
}

static void test_arrays(void **state)
{
    check_json(1007, "[1, 2, null]", "{\"1\",\"2\",NULL}");
    check_json(1007, "[]", "{}");
    check_json(1007, "[[1, 2], [3, 4]]", "{{\"1\",\"2\"},{\"3\",\"4\"}}");
    check_json(1007, "[[]]", "{{}}");
    check_json(1009, "[\"a b\", \"c\\\"d\", \"e\\\\f\", \"NULL\", null, \"\"]",
               "{\"a b\",\"c\\\"d\",\"e\\\\f\",\"NULL\",NULL,\"\"}");
    check_json(1000, "[true, false]", "{\"t\",\"f\"}");
    check_json(1022, "[1.08345, 2]", "{\"1.08345\",\"2\"}");
    check_json(1001, "[\"AQL/\", null]", "{\"\\\\x0102ff\",NULL}");
    check_json(3807, "[{\"a\": \"q\\\"\"}, [1, 2], \"s\"]",
               "{\"{\\\"a\\\":\\\"q\\\\\\\"\\\"}\",\"[1,2]\",\"\\\"s\\\"\"}");
    check_json(1009, "[1, 2.5, true]", "{\"1\",\"2.5\",\"true\"}");
    /* a string is an array literal already */
    check_json(1007, "\"{1,2}\"", "{1,2}");
    check_json_err(1007, "5", "expected an array");
    check_json_err(1009, "{\"a\": 1}", "expected an array");
    check_json_err(1007, "[1, \"x\", 2.5]", "array element [3]: expected an integer");
    check_json_err(1007, "[[1], [2, true]]", "array element [2][2]: expected an integer");
    check_json_err(1005, "[1, 70000]", "array element [2]: out of range for smallint");
    check_json_err(1009, "[{\"a\": 1}]", "array element [1]: expected a string");
    check_json_err(1001, "[\"@@@@\"]", "array element [1]: invalid base64");
    check_json_err(1009, "[\"a\\u0000b\"]", "array element [1]: text must not contain NUL bytes");
}

static void test_bytea(void **state)
{
    check_json(PGT_BYTEA, "\"AQL/\"", "\\x0102ff");
    check_json(PGT_BYTEA, "\"\"", "\\x");
    check_json(PGT_BYTEA, "\"YQ==\"", "\\x61");
    check_json(PGT_BYTEA, "\"YQ\"", "\\x61");
    check_json(PGT_BYTEA, "\"YWI=\"", "\\x6162");
    check_json(PGT_BYTEA, "\"YWI\"", "\\x6162");
    check_json(PGT_BYTEA, "\"YWJj\"", "\\x616263");
    check_json(PGT_BYTEA, "\"+/+/\"", "\\xfbffbf");
    check_json_err(PGT_BYTEA, "\"Y\"", "invalid base64");
    check_json_err(PGT_BYTEA, "\"YWJjZ\"", "invalid base64");
    check_json_err(PGT_BYTEA, "\"YQ=\"", "invalid base64");
    check_json_err(PGT_BYTEA, "\"YQ===\"", "invalid base64");
    check_json_err(PGT_BYTEA, "\"YWJj=\"", "invalid base64");
    check_json_err(PGT_BYTEA, "\"Y=Q=\"", "invalid base64");
    check_json_err(PGT_BYTEA, "\"YW Jj\"", "invalid base64");
    check_json_err(PGT_BYTEA, "\"YWJj\\n\"", "invalid base64");
    check_json_err(PGT_BYTEA, "\"-_-_\"", "invalid base64");
    check_json_err(PGT_BYTEA, "\"=\"", "invalid base64");
    check_json_err(PGT_BYTEA, "12", "expected a base64 string");
    check_json_err(PGT_BYTEA, "[\"YQ==\"]", "expected a base64 string");
}

static void test_other_types(void **state)
{
    check_json(PGT_TEXT, "\"hello\"", "hello");
    check_json(PGT_TEXT, "\"\"", "");
    check_json(PGT_VARCHAR, "\"caf\\u00e9\"", "caf\xc3\xa9");
    check_json(PGT_UUID, "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    check_json(PGT_TIMESTAMPTZ, "\"2024-01-02T03:04:05Z\"", "2024-01-02T03:04:05Z");
    check_json(PGT_TEXT, "12", "12");
    check_json(PGT_TEXT, "-1.5", "-1.5");
    check_json(PGT_TEXT, "0.1", "0.1");
    check_json(PGT_TEXT, "true", "true");
    check_json(PGT_DATE, "false", "false");
    check_json(99999 /* enum */, "\"EURUSD\"", "EURUSD");
    check_json_err(PGT_TEXT, "{\"a\":1}", "expected a string");
    check_json_err(PGT_TEXT, "[1]", "expected a string");
    check_json_err(99999, "[]", "expected a string");
    check_json_err(PGT_TEXT, "\"a\\u0000b\"", "text must not contain NUL bytes");
    check_json_err(PGT_BOOL, "\"\\u0000\"", "text must not contain NUL bytes");
    check_json_err(PGT_INT4, "\"1\\u0000\"", "text must not contain NUL bytes");
    check_json_err(1007, "\"{1}\\u0000\"", "text must not contain NUL bytes");
}

static void test_query_string_text(void **state)
{
    check_text(PGT_TEXT, "hello", 5, "hello");
    check_text(PGT_INT4, "42", 2, "42");
    check_text(PGT_BOOL, "true", 4, "true");
    check_text(1007, "{1,2}", 5, "{1,2}");
    check_text(PGT_TEXT, "", 0, "");
    check_text(PGT_TEXT, "abcdef", 3, "abc"); /* only n bytes */
    check_text(PGT_BYTEA, "AQL/", 4, "\\x0102ff");
    check_text(PGT_BYTEA, "YQ", 2, "\\x61");
    check_text_err(PGT_BYTEA, "AQL", 2 + 2, "invalid base64"); /* "AQL\0" */
    check_text_err(PGT_BYTEA, "A", 1, "invalid base64");
    check_text_err(PGT_TEXT, "a\0b", 3, "text must not contain NUL bytes");
    check_text_err(PGT_INT4, "1\0", 2, "text must not contain NUL bytes");
    /* query-string text must be UTF-8: a stray byte, an overlong form, a surrogate, a cut sequence */
    check_text_err(PGT_TEXT, "a\xff", 2, "text must be valid UTF-8");
    check_text_err(PGT_TEXT, "\xc0\xaf", 2, "text must be valid UTF-8");
    check_text_err(PGT_TEXT, "\xed\xa0\x80", 3, "text must be valid UTF-8");
    check_text_err(PGT_VARCHAR, "\xe2\x82", 2, "text must be valid UTF-8");
    check_text(PGT_TEXT, "\xe2\x82\xac \xf0\x9f\x98\x80", 8, "\xe2\x82\xac \xf0\x9f\x98\x80");
}

static void test_small_error_buffer(void **state)
{
    json_t *v = json_string("x");
    struct buf out = BUF_INIT;
    bool is_null;
    char err[6];
    assert_int_equal(pgtype_param_json(PGT_INT4, json_true(), &out, &is_null, err, sizeof err), -1);
    assert_string_equal(err, "expec");
    assert_int_equal(pgtype_param_json(PGT_BYTEA, v, &out, &is_null, NULL, 0), -1);
    buf_free(&out);
    json_decref(v);
}

static void test_long_base64(void **state)
{
    /* every byte value, through base64 and back to hex */
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char raw[256];
    char b64[400], want[520];
    size_t o = 0;
    for (int i = 0; i < 256; i++) raw[i] = (unsigned char)i;
    for (size_t i = 0; i < 256; i += 3) {
        unsigned v0 = raw[i], v1 = i + 1 < 256 ? raw[i + 1] : 0, v2 = i + 2 < 256 ? raw[i + 2] : 0;
        b64[o++] = a[v0 >> 2];
        b64[o++] = a[((v0 & 3) << 4) | (v1 >> 4)];
        b64[o++] = i + 1 < 256 ? a[((v1 & 15) << 2) | (v2 >> 6)] : '=';
        b64[o++] = i + 2 < 256 ? a[v2 & 63] : '=';
    }
    b64[o] = '\0';
    strcpy(want, "\\x");
    for (int i = 0; i < 256; i++) sprintf(want + 2 + 2 * i, "%02x", i);
    check_text(PGT_BYTEA, b64, strlen(b64), want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_array_elem),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_null),
        cmocka_unit_test(test_bool),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_floats),
        cmocka_unit_test(test_json_types),
        cmocka_unit_test(test_arrays),
        cmocka_unit_test(test_bytea),
        cmocka_unit_test(test_other_types),
        cmocka_unit_test(test_query_string_text),
        cmocka_unit_test(test_small_error_buffer),
        cmocka_unit_test(test_long_base64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
