/* test_jsonnum.c — request bodies whose numbers keep every digit: what jsonnum_load marks, what it
 * leaves to jansson, and the parameter text pgtype makes of a marked number for each type. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonnum.h"
#include "pgtype.h"

static json_t *load(const char *text)
{
    json_error_t e;
    json_t *v = jsonnum_load(text, strlen(text), JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &e);
    if (v == NULL) fail_msg("[%s]: %s", text, e.text);
    return v;
}

/* The parameter text of json_text for type, or NULL with err set. Caller frees. */
static char *param(Oid type, const char *json_text, char *err, size_t errlen)
{
    json_t *v = load(json_text);
    struct buf out = BUF_INIT;
    bool is_null;
    int rc = pgtype_param_json(type, v, &out, &is_null, err, errlen);
    json_decref(v);
    if (rc != 0) {
        buf_free(&out);
        return NULL;
    }
    return out.data;
}

static void expect_param(Oid type, const char *json_text, const char *want)
{
    char err[128] = "";
    char *got = param(type, json_text, err, sizeof err);
    if (got == NULL) fail_msg("type %u %s: failed: %s", type, json_text, err);
    if (strcmp(got, want) != 0) fail_msg("type %u %s: got [%s], want [%s]", type, json_text, got, want);
    free(got);
}

static void expect_refused(Oid type, const char *json_text, const char *want_err)
{
    char err[128] = "";
    char *got = param(type, json_text, err, sizeof err);
    if (got != NULL) fail_msg("type %u %s: accepted as [%s]", type, json_text, got);
    assert_string_equal(err, want_err);
}

static void marks_what_jansson_cannot_hold(void **state)
{
    const char *lit;
    size_t n;
    json_t *v = load("{\"small\": 12, \"big\": 123456789012345678901234567890, \"r\": 0.10, \"e\": 1e400,"
                     " \"i18\": -999999999999999999, \"s\": \"1.5 \\\" 2.5\", \"a\": [3, -4.5]}");
    assert_true(json_is_integer(json_object_get(v, "small")));
    assert_true(json_is_integer(json_object_get(v, "i18")));
    assert_true(jsonnum_literal(json_object_get(v, "big"), &lit, &n));
    assert_int_equal(n, 30);
    assert_memory_equal(lit, "123456789012345678901234567890", 30);
    assert_true(jsonnum_literal(json_object_get(v, "r"), &lit, &n));
    assert_memory_equal(lit, "0.10", 4);
    assert_true(jsonnum_literal(json_object_get(v, "e"), &lit, &n));
    assert_memory_equal(lit, "1e400", 5);
    /* digits inside strings, escaped quotes included, are text */
    assert_string_equal(json_string_value(json_object_get(v, "s")), "1.5 \" 2.5");
    json_t *a = json_object_get(v, "a");
    assert_true(json_is_integer(json_array_get(a, 0)));
    assert_true(jsonnum_literal(json_array_get(a, 1), &lit, &n));
    json_decref(v);

    /* a string that looks like a mark but was not made by jsonnum_load stays a string */
    v = load("[\"\\u0000#12\", \"\\u0000#x\"]");
    assert_false(jsonnum_literal(json_array_get(v, 0), &lit, &n));
    assert_false(jsonnum_literal(json_array_get(v, 1), &lit, &n));
    json_decref(v);
}

static void errors_point_into_the_original(void **state)
{
    const char *text = "{\"a\": 1.5,\n \"b\": 2.25, \"c\": }";
    json_error_t mine, plain;
    assert_null(jsonnum_load(text, strlen(text), 0, &mine));
    assert_null(json_loadb(text, strlen(text), 0, &plain));
    assert_int_equal(mine.line, plain.line);
    assert_int_equal(mine.column, plain.column);
    assert_string_equal(mine.text, plain.text);

    assert_null(jsonnum_load("[1.5, 2.]", 9, 0, &mine)); /* malformed numbers are jansson's to refuse */
    assert_null(jsonnum_load("[01]", 4, 0, &mine));
    assert_null(jsonnum_load("{\"a\":1,\"a\":2.5}", 15, JSON_REJECT_DUPLICATES, &mine));
}

static void parameters_keep_every_digit(void **state)
{
    expect_param(PGT_NUMERIC, "0.1234567890123456789", "0.1234567890123456789");
    expect_param(PGT_NUMERIC, "-98765432109876543210.0123456789", "-98765432109876543210.0123456789");
    expect_param(PGT_NUMERIC, "123456789012345678901234567890", "123456789012345678901234567890");
    expect_param(PGT_NUMERIC, "1.50", "1.50");
    expect_param(PGT_NUMERIC, "12", "12");
    expect_param(PGT_FLOAT8, "1e400", "1e400"); /* PostgreSQL answers out of range: a 400 */
    expect_param(PGT_FLOAT8, "2.5E-3", "2.5E-3");
    expect_param(PGT_TEXT, "0.10", "0.10");
    expect_param(PGT_JSONB, "{\"a\": 0.10, \"b\": [1e400, 7]}", "{\"a\":0.10,\"b\":[1e400,7]}");
    expect_param(PGT_JSONB, "3.0", "3.0");
    /* integers: more than 18 digits go as written (PostgreSQL checks the range); a fraction or
     * exponent is still rounded to an integer when it is one */
    expect_param(PGT_INT8, "9223372036854775807", "9223372036854775807");
    expect_param(PGT_INT8, "123456789012345678901234567890", "123456789012345678901234567890");
    expect_param(PGT_INT4, "2.0", "2");
    expect_param(PGT_INT4, "1e3", "1000");
    expect_param(PGT_INT4, "0E2222222222222222222222222222222222222222222222222222222222222222222222", "0");
    expect_refused(PGT_INT4, "2.5", "expected an integer");
    expect_refused(PGT_INT4, "1e400", "out of range for an integer");
    expect_refused(PGT_INT2, "4e4", "out of range for smallint");
    expect_refused(PGT_BOOL, "1.5", "expected a boolean");
    expect_refused(PGT_BYTEA, "1.5", "expected a base64 string");
    /* a forged mark is a string with a NUL, which a text parameter cannot carry */
    expect_refused(PGT_TEXT, "\"\\u0000#12\"", "text must not contain NUL bytes");
}

static void first_value_only(void **state)
{
    /* as bulkparse reads a body row by row: the value, and where it ended in the original */
    const char *text = "{\"a\": 1.25e1, \"b\": [0.5]} {\"c\": 0.1}";
    json_error_t e;
    json_t *v = jsonnum_load(text, strlen(text), JSON_DISABLE_EOF_CHECK, &e);
    assert_non_null(v);
    assert_int_equal(e.position, strlen("{\"a\": 1.25e1, \"b\": [0.5]}"));
    const char *lit;
    size_t n;
    assert_true(jsonnum_literal(json_object_get(v, "a"), &lit, &n));
    assert_memory_equal(lit, "1.25e1", 6);
    assert_null(json_object_get(v, "c"));
    json_decref(v);

    v = jsonnum_load("2.5 3", 5, JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &e);
    assert_true(jsonnum_literal(v, &lit, &n));
    assert_int_equal(e.position, 3);
    json_decref(v);

    v = jsonnum_load("true 2.5", 8, JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &e);
    assert_true(json_is_true(v));
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(marks_what_jansson_cannot_hold),
        cmocka_unit_test(errors_point_into_the_original),
        cmocka_unit_test(parameters_keep_every_digit),
        cmocka_unit_test(first_value_only),
    };
    return cmocka_run_group_tests_name("jsonnum", tests, NULL, NULL);
}
