/* test_jsonw.c — text-format values and results -> JSON, type by type. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"
#include "pgjson.h"
#include "pgtype.h"

/* Every output must also be JSON that a strict parser takes. */
static void assert_parses(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (v == NULL) fail_msg("invalid JSON [%s]: %s", text, e.text);
    json_decref(v);
}

static void check_value_n(Oid type, const char *val, size_t len, const char *want)
{
    struct buf b = BUF_INIT;
    pgjson_value(&b, type, val, len);
    assert_non_null(b.data);
    assert_int_equal(strlen(b.data), b.len); /* NUL-terminated, no stray NULs */
    if (strcmp(b.data, want) != 0) fail_msg("type %u [%s]: got [%s], want [%s]", type, val, b.data, want);
    assert_parses(b.data);
    buf_free(&b);
}

static void check_value(Oid type, const char *val, const char *want)
{
    check_value_n(type, val, strlen(val), want);
}

static void check_string_n(const char *s, size_t n, const char *want)
{
    struct buf b = BUF_INIT;
    jsonw_string(&b, s, n);
    if (strcmp(b.data, want) != 0) fail_msg("string: got [%s], want [%s]", b.data, want);
    assert_int_equal(strlen(b.data), b.len);
    assert_parses(b.data);
    buf_free(&b);
}

static void check_string(const char *s, const char *want)
{
    check_string_n(s, strlen(s), want);
}

static void test_string_escapes(void **state)
{
    check_string("", "\"\"");
    check_string("plain text", "\"plain text\"");
    check_string("q\"b\\s/", "\"q\\\"b\\\\s/\"");
    check_string("\n\r\t\b\f", "\"\\n\\r\\t\\b\\f\"");
    check_string("\x01\x1f\x7f", "\"\\u0001\\u001f\x7f\"");
    check_string_n("a\0b", 3, "\"a\\u0000b\"");
}

static void test_string_utf8(void **state)
{
    /* well-formed sequences of 2, 3 and 4 bytes pass unchanged */
    check_string("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
                 "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
    check_string("\xef\xbf\xbf\xf4\x8f\xbf\xbf", "\"\xef\xbf\xbf\xf4\x8f\xbf\xbf\"");
    /* each invalid byte becomes U+FFFD */
    check_string("a\xff"
                 "b",
                 "\"a\xef\xbf\xbd"
                 "b\"");
    check_string("\x80", "\"\xef\xbf\xbd\"");
    check_string("\xc0\xaf", "\"\xef\xbf\xbd\xef\xbf\xbd\"");                 /* overlong */
    check_string("\xed\xa0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""); /* surrogate */
    check_string("\xf4\x90\x80\x80x",
                 "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdx\"");    /* > U+10FFFF */
    check_string("ok\xe2\x82", "\"ok\xef\xbf\xbd\xef\xbf\xbd\"");             /* truncated at the end */
    check_string("\xe0\x80\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""); /* overlong 3-byte */
    check_string("\xf0\x80\x80\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
}

static void test_appends(void **state)
{
    struct buf b = BUF_INIT;
    buf_puts(&b, "[");
    pgjson_value(&b, PGT_INT4, "1", 1);
    buf_putc(&b, ',');
    jsonw_string(&b, "x", 1);
    buf_putc(&b, ',');
    pgjson_value(&b, PGT_BOOL, "t", 1);
    buf_putc(&b, ']');
    assert_string_equal(b.data, "[1,\"x\",true]");
    buf_free(&b);
}

static void test_integers(void **state)
{
    check_value(PGT_INT2, "-32768", "-32768");
    check_value(PGT_INT4, "42", "42");
    check_value(PGT_INT4, "0", "0");
    check_value(PGT_OID, "4294967295", "4294967295");
}

static void test_int8(void **state)
{
    check_value(PGT_INT8, "123", "123");
    check_value(PGT_INT8, "9007199254740992", "9007199254740992");
    check_value(PGT_INT8, "-9007199254740992", "-9007199254740992");
    check_value(PGT_INT8, "999999999999999", "999999999999999");
    check_value(PGT_INT8, "9007199254740993", "\"9007199254740993\"");
    check_value(PGT_INT8, "-9007199254740993", "\"-9007199254740993\"");
    check_value(PGT_INT8, "10000000000000000", "\"10000000000000000\"");
    check_value(PGT_INT8, "-9223372036854775808", "\"-9223372036854775808\"");
}

static void test_floats(void **state)
{
    check_value(PGT_FLOAT8, "1.5", "1.5");
    check_value(PGT_FLOAT8, "-0", "-0");
    check_value(PGT_FLOAT8, "1e+300", "1e+300");
    check_value(PGT_FLOAT8, "1e-20", "1e-20");
    check_value(PGT_FLOAT4, "1.2345679e+08", "1.2345679e+08");
    check_value(PGT_FLOAT8, "NaN", "\"NaN\"");
    check_value(PGT_FLOAT8, "Infinity", "\"Infinity\"");
    check_value(PGT_FLOAT4, "-Infinity", "\"-Infinity\"");
}

static void test_numeric(void **state)
{
    check_value(PGT_NUMERIC, "-12.50", "-12.50");
    check_value(PGT_NUMERIC, "0.000123", "0.000123");
    check_value(PGT_NUMERIC, "0", "0");
    check_value(PGT_NUMERIC, "0.00", "0.00");
    check_value(PGT_NUMERIC, "1.08345", "1.08345");
    check_value(PGT_NUMERIC, "123456789012345", "123456789012345");     /* 15 digits */
    check_value(PGT_NUMERIC, "-1234567890.12345", "-1234567890.12345"); /* 15 digits */
    check_value(PGT_NUMERIC, "1234567890123.50", "1234567890123.50");   /* 15 with the zero */
    check_value(PGT_NUMERIC, "0.00000000000000000000000000000000000000001",
                "0.00000000000000000000000000000000000000001");
    check_value(PGT_NUMERIC, "999999999999999", "999999999999999");
    /* trailing zeros are digits too: never drop one the database shows */
    check_value(PGT_NUMERIC, "12345678901234.50", "\"12345678901234.50\"");
    check_value(PGT_NUMERIC, "1.000000000000000000", "\"1.000000000000000000\"");
    check_value(PGT_NUMERIC, "100000000000000000000", "\"100000000000000000000\"");
    check_value(PGT_NUMERIC, "1234567890123456", "\"1234567890123456\""); /* 16 digits */
    check_value(PGT_NUMERIC, "0.1234567890123456", "\"0.1234567890123456\"");
    check_value(PGT_NUMERIC, "100000000000000.01", "\"100000000000000.01\""); /* zeros inside count */
    check_value(PGT_NUMERIC, "12345678901234567890.123", "\"12345678901234567890.123\"");
    check_value(PGT_NUMERIC, "NaN", "\"NaN\"");
    check_value(PGT_NUMERIC, "Infinity", "\"Infinity\"");
    check_value(PGT_NUMERIC, "-Infinity", "\"-Infinity\"");

    /* 1 followed by 400 zeros, and a value below the double range: strings */
    char big[420] = "1", small[420] = "0.";
    memset(big + 1, '0', 400);
    big[401] = '\0';
    memset(small + 2, '0', 350);
    strcpy(small + 352, "1");
    char want[430];
    snprintf(want, sizeof want, "\"%s\"", big);
    check_value(PGT_NUMERIC, big, want);
    snprintf(want, sizeof want, "\"%s\"", small);
    check_value(PGT_NUMERIC, small, want);
    check_value(PGT_NUMERIC, "1e5", "\"1e5\"");
    check_value(PGT_NUMERIC, "-0.5", "-0.5");
}

static void test_bool(void **state)
{
    check_value(PGT_BOOL, "t", "true");
    check_value(PGT_BOOL, "f", "false");
}

static void test_json(void **state)
{
    check_value(PGT_JSONB, "{\"a\": [1, 2.50, null]}", "{\"a\": [1, 2.50, null]}");
    check_value(PGT_JSON, "\"str\"", "\"str\"");
    check_value(PGT_JSON, " [1,\n 2] ", " [1,\n 2] ");
    check_value(PGT_JSONB, "null", "null");
    check_value(PGT_JSONB, "3", "3");
}

static void test_timestamptz(void **state)
{
    check_value(PGT_TIMESTAMPTZ, "2024-01-02 03:04:05+00", "\"2024-01-02T03:04:05+00:00\"");
    check_value(PGT_TIMESTAMPTZ, "2024-01-02 08:34:05+05:30", "\"2024-01-02T08:34:05+05:30\"");
    check_value(PGT_TIMESTAMPTZ, "2024-01-01 19:04:05-08", "\"2024-01-01T19:04:05-08:00\"");
    check_value(PGT_TIMESTAMPTZ, "2024-01-02 03:04:05.123456+00", "\"2024-01-02T03:04:05.123456+00:00\"");
    check_value(PGT_TIMESTAMPTZ, "1850-01-01 05:53:28+05:53:28", "\"1850-01-01T05:53:28+05:53:28\"");
    check_value(PGT_TIMESTAMPTZ, "294276-12-31 23:59:59+00", "\"294276-12-31T23:59:59+00:00\"");
    check_value(PGT_TIMESTAMPTZ, "infinity", "\"infinity\"");
    check_value(PGT_TIMESTAMPTZ, "-infinity", "\"-infinity\"");
    check_value(PGT_TIMESTAMPTZ, "0044-03-15 12:00:00+00 BC", "\"0044-03-15T12:00:00+00 BC\"");
    /* a non-ISO DateStyle is passed on untouched */
    check_value(PGT_TIMESTAMPTZ, "Tue Jan 02 03:04:05 2024 UTC", "\"Tue Jan 02 03:04:05 2024 UTC\"");
}

static void test_timestamp_and_date(void **state)
{
    check_value(PGT_TIMESTAMP, "2024-01-02 03:04:05.5", "\"2024-01-02T03:04:05.5\"");
    check_value(PGT_TIMESTAMP, "2024-01-02 03:04:05", "\"2024-01-02T03:04:05\"");
    check_value(PGT_TIMESTAMP, "0044-03-15 12:00:00 BC", "\"0044-03-15T12:00:00 BC\"");
    check_value(PGT_TIMESTAMP, "-infinity", "\"-infinity\"");
    check_value(PGT_DATE, "2024-01-02", "\"2024-01-02\"");
    check_value(PGT_DATE, "0044-03-15 BC", "\"0044-03-15 BC\"");
    check_value(PGT_TIME, "03:04:05", "\"03:04:05\"");
}

/* An independent base64 encoder to check long values against. */
static void ref_base64(const unsigned char *p, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v[3] = {p[i], i + 1 < n ? p[i + 1] : 0, i + 2 < n ? p[i + 2] : 0};
        out[o++] = a[v[0] >> 2];
        out[o++] = a[((v[0] & 3) << 4) | (v[1] >> 4)];
        out[o++] = i + 1 < n ? a[((v[1] & 15) << 2) | (v[2] >> 6)] : '=';
        out[o++] = i + 2 < n ? a[v[2] & 63] : '=';
    }
    out[o] = '\0';
}

static void test_bytea(void **state)
{
    check_value(PGT_BYTEA, "\\x0102ff", "\"AQL/\"");
    check_value(PGT_BYTEA, "\\x", "\"\"");
    check_value(PGT_BYTEA, "\\x61", "\"YQ==\"");
    check_value(PGT_BYTEA, "\\x6162", "\"YWI=\"");
    check_value(PGT_BYTEA, "\\x616263", "\"YWJj\"");
    check_value(PGT_BYTEA, "\\xFFfe", "\"//4=\"");
    /* bytea_output = escape */
    check_value(PGT_BYTEA, "a\\000b\\377\\\\", "\"YQBi/1w=\"");
    check_value(PGT_BYTEA, "", "\"\"");
    /* not bytea output: kept as text */
    check_value(PGT_BYTEA, "\\x0g", "\"\\\\x0g\"");
    check_value(PGT_BYTEA, "\\x012", "\"\\\\x012\"");

    /* longer than the internal chunk, with a length that is not a multiple of 3 */
    size_t n = 2000;
    unsigned char *raw = malloc(n);
    char *hex = malloc(2 * n + 3), *want = malloc(n * 2 + 8), *b64 = malloc(n * 2);
    strcpy(hex, "\\x");
    for (size_t i = 0; i < n; i++) {
        raw[i] = (unsigned char)(i * 7 + 3);
        sprintf(hex + 2 + 2 * i, "%02x", raw[i]);
    }
    ref_base64(raw, n, b64);
    sprintf(want, "\"%s\"", b64);
    check_value(PGT_BYTEA, hex, want);
    free(raw);
    free(hex);
    free(want);
    free(b64);
}

static void test_other_types_are_strings(void **state)
{
    check_value(PGT_TEXT, "hello \"w\"", "\"hello \\\"w\\\"\"");
    check_value(PGT_UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"");
    check_value(PGT_INTERVAL, "1 day 02:00:00", "\"1 day 02:00:00\"");
    check_value(PGT_VARCHAR, "", "\"\"");
    check_value(790 /* money */, "$1,000.00", "\"$1,000.00\"");
    check_value(99999 /* an enum or any unknown OID */, "EURUSD", "\"EURUSD\"");
    check_value(99999, "{1,2}", "\"{1,2}\"");
}

static void test_arrays(void **state)
{
    check_value(1007, "{1,2,NULL}", "[1,2,null]");
    check_value(1007, "{}", "[]");
    check_value(1007, "{{1,2},{3,4}}", "[[1,2],[3,4]]");
    check_value(1007, "{{{1},{2}},{{3},{4}}}", "[[[1],[2]],[[3],[4]]]");
    check_value(1007, "[0:1]={1,2}", "[1,2]");
    check_value(1007, "[1:1][2:3]={{1,2}}", "[[1,2]]");
    check_value(1009, "{\"a b\",\"c\\\"d\",\"NULL\",NULL,\"\",\"x\\\\y\",\" s \",plain,null}",
                "[\"a b\",\"c\\\"d\",\"NULL\",null,\"\",\"x\\\\y\",\" s \",\"plain\",null]");
    check_value(1009, "{\"a,b\",\"{x}\"}", "[\"a,b\",\"{x}\"]");
    check_value(1000, "{t,f,NULL}", "[true,false,null]");
    check_value(1016, "{1,9007199254740993}", "[1,\"9007199254740993\"]");
    check_value(1022, "{1.5,NaN,-Infinity}", "[1.5,\"NaN\",\"-Infinity\"]");
    check_value(1231, "{1.5,NaN,12345678901234567}", "[1.5,\"NaN\",\"12345678901234567\"]");
    check_value(3807, "{\"{\\\"a\\\": 1}\",NULL,\"[1, 2]\"}", "[{\"a\": 1},null,[1, 2]]");
    check_value(1001, "{\"\\\\x01ff\",NULL}", "[\"Af8=\",null]");
    check_value(1185, "{\"2024-01-02 03:04:05+00\",infinity}",
                "[\"2024-01-02T03:04:05+00:00\",\"infinity\"]");
    check_value(1270, "{12:00:00+05:30}", "[\"12:00:00+05:30\"]");
    check_value(1187, "{\"1 day\"}", "[\"1 day\"]");
}

static void test_array_big_escaped_element(void **state)
{
    /* an escaped element larger than the on-stack scratch space */
    size_t n = 3000;
    char *in = malloc(2 * n + 16), *want = malloc(2 * n + 16);
    size_t i = 0, o = 0;
    in[i++] = '{';
    in[i++] = '"';
    want[o++] = '[';
    want[o++] = '"';
    for (size_t k = 0; k < n; k++) {
        if (k % 10 == 0) {
            in[i++] = '\\';
            in[i++] = '"';
            want[o++] = '\\';
            want[o++] = '"';
        } else {
            in[i++] = want[o++] = (char)('a' + k % 26);
        }
    }
    strcpy(in + i, "\",\"x\\\\y\"}");
    strcpy(want + o, "\",\"x\\\\y\"]");
    check_value(1009, in, want);
    free(in);
    free(want);
}

static void test_malformed_arrays_stay_text(void **state)
{
    check_value(1007, "{1,2", "\"{1,2\"");
    check_value(1007, "{1,2}x", "\"{1,2}x\"");
    check_value(1009, "{\"open}", "\"{\\\"open}\"");
    check_value(1007, "{1,,2}", "\"{1,,2}\"");
    check_value(1007, "1,2", "\"1,2\"");
    check_value(1007, "", "\"\"");
    check_value(1007, "[0:1]", "\"[0:1]\"");
}

/* ---- whole results, built without a server ---- */

static PGresult *make_result(int ncols, const char *const *names, const Oid *types)
{
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    assert_non_null(res);
    PGresAttDesc attrs[8];
    assert_true(ncols <= 8);
    for (int c = 0; c < ncols; c++) {
        attrs[c] = (PGresAttDesc){.name = (char *)names[c], .typid = types[c], .typlen = -1, .atttypmod = -1};
    }
    assert_true(PQsetResultAttrs(res, ncols, attrs));
    return res;
}

static void set(PGresult *res, int row, int col, const char *v)
{
    assert_true(PQsetvalue(res, row, col, (char *)v, v ? (int)strlen(v) : -1));
}

static void test_result_rows(void **state)
{
    const char *names[] = {"pair", "bid", "ok", "ts", "meta", "we\"ird"};
    const Oid types[] = {PGT_TEXT, PGT_NUMERIC, PGT_BOOL, PGT_TIMESTAMPTZ, PGT_JSONB, PGT_INT4};
    PGresult *res = make_result(6, names, types);
    set(res, 0, 0, "EURUSD");
    set(res, 0, 1, "1.08345");
    set(res, 0, 2, "t");
    set(res, 0, 3, "2024-01-02 03:04:05+00");
    set(res, 0, 4, "{\"src\": \"ecn\"}");
    set(res, 0, 5, "1");
    set(res, 1, 0, "GBPUSD");
    set(res, 1, 1, NULL);
    set(res, 1, 2, "f");
    set(res, 1, 3, NULL);
    set(res, 1, 4, NULL);
    set(res, 1, 5, "-2");

    struct buf b = BUF_INIT;
    pgjson_result(&b, res);
    assert_string_equal(
        b.data, "{\"rows\":["
                "{\"pair\":\"EURUSD\",\"bid\":1.08345,\"ok\":true,\"ts\":\"2024-01-02T03:04:05+00:00\","
                "\"meta\":{\"src\": \"ecn\"},\"we\\\"ird\":1},"
                "{\"pair\":\"GBPUSD\",\"bid\":null,\"ok\":false,\"ts\":null,\"meta\":null,"
                "\"we\\\"ird\":-2}"
                "],\"row_count\":2}");
    assert_parses(b.data);

    buf_reset(&b);
    pgjson_row(&b, res, 1);
    assert_string_equal(b.data, "{\"pair\":\"GBPUSD\",\"bid\":null,\"ok\":false,\"ts\":null,\"meta\":null,"
                                "\"we\\\"ird\":-2}");
    buf_free(&b);
    PQclear(res);
}

static void test_result_empty_and_command(void **state)
{
    const char *names[] = {"a"};
    const Oid types[] = {PGT_INT4};
    PGresult *res = make_result(1, names, types);
    struct buf b = BUF_INIT;
    pgjson_result(&b, res);
    assert_string_equal(b.data, "{\"rows\":[],\"row_count\":0}");
    PQclear(res);

    /* no columns at all */
    res = make_result(0, names, types);
    buf_reset(&b);
    pgjson_result(&b, res);
    assert_string_equal(b.data, "{\"rows\":[],\"row_count\":0}");
    PQclear(res);

    /* a statement without rows; PQcmdTuples is empty for a result made by hand */
    res = PQmakeEmptyPGresult(NULL, PGRES_COMMAND_OK);
    buf_reset(&b);
    pgjson_result(&b, res);
    assert_string_equal(b.data, "{\"rows\":[],\"row_count\":0}");
    PQclear(res);
    buf_free(&b);
}

static void test_result_many_rows(void **state)
{
    const char *names[] = {"n", "s"};
    const Oid types[] = {PGT_INT8, PGT_TEXT};
    PGresult *res = make_result(2, names, types);
    char v[32];
    for (int r = 0; r < 1000; r++) {
        snprintf(v, sizeof v, "%d", r * 1000);
        set(res, r, 0, v);
        set(res, r, 1, "x\ny");
    }
    struct buf b = BUF_INIT;
    pgjson_result(&b, res);
    assert_parses(b.data);
    assert_non_null(strstr(b.data, "{\"n\":999000,\"s\":\"x\\ny\"}],\"row_count\":1000}"));
    assert_non_null(strstr(b.data, "{\"rows\":[{\"n\":0,\"s\":\"x\\ny\"},{\"n\":1000,"));
    buf_free(&b);
    PQclear(res);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_string_escapes),
        cmocka_unit_test(test_string_utf8),
        cmocka_unit_test(test_appends),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_int8),
        cmocka_unit_test(test_floats),
        cmocka_unit_test(test_numeric),
        cmocka_unit_test(test_bool),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_timestamptz),
        cmocka_unit_test(test_timestamp_and_date),
        cmocka_unit_test(test_bytea),
        cmocka_unit_test(test_other_types_are_strings),
        cmocka_unit_test(test_arrays),
        cmocka_unit_test(test_array_big_escaped_element),
        cmocka_unit_test(test_malformed_arrays_stay_text),
        cmocka_unit_test(test_result_rows),
        cmocka_unit_test(test_result_empty_and_command),
        cmocka_unit_test(test_result_many_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
