/* test_bulkparse.c — bulk bodies (JSON array, NDJSON, CSV) -> COPY text lines: values, escaping,
 * batching, and every error with its row and column; the JSON fast path keeps jansson's rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkparse.h"
#include "pgtype.h"

/* The tick table of the examples. */
static char *const tick_cols[] = {"pair", "bid", "ask", "ts"};
static const Oid tick_types[] = {PGT_TEXT, PGT_NUMERIC, PGT_NUMERIC, PGT_TIMESTAMPTZ};

/* One column of each kind of value. */
static char *const kind_cols[] = {"t", "i", "n", "b", "j", "a", "y", "ts", "d", "big"};
static const Oid kind_types[] = {PGT_TEXT,          PGT_INT4,  PGT_NUMERIC,     PGT_BOOL,   PGT_JSONB,
                                 1007 /* int4[] */, PGT_BYTEA, PGT_TIMESTAMPTZ, PGT_FLOAT8, PGT_INT8};

struct table {
    char *const *cols;
    const Oid *types;
    int n;
};

static const struct table ticks = {tick_cols, tick_types, 4};
static const struct table kinds = {kind_cols, kind_types, 10};

#define TICK(pair, bid)      "{\"pair\":\"" pair "\",\"bid\":" bid ",\"ask\":1.5,\"ts\":\"2026-01-05T00:00:00Z\"}"
#define TICK_LINE(pair, bid) pair "\t" bid "\t1.5\t2026-01-05T00:00:00Z\n"

/* Reads the whole body max_rows at a time after "pre\n" in out; expects success and out to be
 * exactly "pre\n" + want. */
static void check_rows_n(const struct table *t, enum bulk_format fmt, const char *body, size_t len,
                         int max_rows, const char *want)
{
    struct bulk_reader r;
    char err[256] = "";
    if (bulk_reader_init(&r, fmt, body, len, t->cols, t->types, t->n, err, sizeof err) != 0)
        fail_msg("init failed for [%s]: %s", body, err);
    struct buf out = BUF_INIT;
    buf_puts(&out, "pre\n");
    long total = 0;
    int rc;
    while ((rc = bulk_reader_next(&r, &out, max_rows, err, sizeof err)) > 0) {
        assert_true(rc <= max_rows);
        total += rc;
        assert_int_equal(bulk_reader_rows(&r), total);
    }
    if (rc < 0) fail_msg("next failed for [%s]: %s", body, err);
    if (strcmp(out.data + 4, want) != 0)
        fail_msg("body [%s]\n got [%s]\nwant [%s]", body, out.data + 4, want);
    assert_memory_equal(out.data, "pre\n", 4);
    assert_int_equal(out.len, 4 + strlen(want));
    /* the end stays the end */
    assert_int_equal(bulk_reader_next(&r, &out, max_rows, err, sizeof err), 0);
    bulk_reader_free(&r);
    buf_free(&out);
}

static void check_rows(const struct table *t, enum bulk_format fmt, const char *body, const char *want)
{
    check_rows_n(t, fmt, body, strlen(body), 1000, want);
    check_rows_n(t, fmt, body, strlen(body), 1, want);
}

/* Expects init to succeed and reading (max_rows at a time) to fail with exactly want_err; out and
 * the row count are those of the calls before the failing one, and a later call fails the same. */
static void check_next_err_n(const struct table *t, enum bulk_format fmt, const char *body, size_t len,
                             int max_rows, const char *want_err)
{
    struct bulk_reader r;
    char err[256] = "";
    if (bulk_reader_init(&r, fmt, body, len, t->cols, t->types, t->n, err, sizeof err) != 0)
        fail_msg("init failed for [%s]: %s", body, err);
    struct buf out = BUF_INIT;
    buf_puts(&out, "pre\n");
    size_t before;
    long rows_before;
    int rc;
    do {
        before = out.len;
        rows_before = bulk_reader_rows(&r);
        rc = bulk_reader_next(&r, &out, max_rows, err, sizeof err);
    } while (rc > 0);
    if (rc == 0) fail_msg("body [%s] was accepted: [%s]", body, out.data + 4);
    assert_int_equal(rc, -1);
    if (strcmp(err, want_err) != 0)
        fail_msg("body [%s]\n got error [%s]\nwant error [%s]", body, err, want_err);
    assert_int_equal(out.len, before);
    assert_int_equal(out.data[out.len], '\0');
    assert_int_equal(bulk_reader_rows(&r), rows_before);
    char again[256] = "";
    assert_int_equal(bulk_reader_next(&r, &out, max_rows, again, sizeof again), -1);
    assert_string_equal(again, want_err);
    assert_int_equal(out.len, before);
    bulk_reader_free(&r);
    buf_free(&out);
}

static void check_next_err(const struct table *t, enum bulk_format fmt, const char *body,
                           const char *want_err)
{
    check_next_err_n(t, fmt, body, strlen(body), 1000, want_err);
    check_next_err_n(t, fmt, body, strlen(body), 1, want_err);
}

/* Like check_next_err, for an error whose tail is jansson's wording: only the prefix is ours. */
static void check_next_err_prefix(const struct table *t, enum bulk_format fmt, const char *body,
                                  const char *want_prefix)
{
    struct bulk_reader r;
    char err[256] = "";
    assert_int_equal(bulk_reader_init(&r, fmt, body, strlen(body), t->cols, t->types, t->n, err, sizeof err),
                     0);
    struct buf out = BUF_INIT;
    int rc;
    while ((rc = bulk_reader_next(&r, &out, 1000, err, sizeof err)) > 0) continue;
    assert_int_equal(rc, -1);
    if (strncmp(err, want_prefix, strlen(want_prefix)) != 0 || strlen(err) <= strlen(want_prefix))
        fail_msg("body [%s]\n got error [%s]\nwant a message starting [%s]", body, err, want_prefix);
    assert_int_equal(out.len, 0);
    bulk_reader_free(&r);
    buf_free(&out);
}

static void check_init_err(const struct table *t, enum bulk_format fmt, const char *body,
                           const char *want_err)
{
    struct bulk_reader r;
    char err[256] = "";
    int rc = bulk_reader_init(&r, fmt, body, strlen(body), t->cols, t->types, t->n, err, sizeof err);
    if (rc == 0) fail_msg("init accepted [%s]", body);
    assert_int_equal(rc, -1);
    if (strcmp(err, want_err) != 0)
        fail_msg("body [%s]\n got error [%s]\nwant error [%s]", body, err, want_err);
    /* reading after a failed init repeats its error */
    struct buf out = BUF_INIT;
    char again[256] = "";
    assert_int_equal(bulk_reader_next(&r, &out, 10, again, sizeof again), -1);
    assert_string_equal(again, want_err);
    assert_int_equal(out.len, 0);
    bulk_reader_free(&r);
}

/* ---- jansson: the array walk relies on this ---- */

static void test_jansson_position(void **state)
{
    static const struct {
        const char *text;
        int used;
    } cases[] = {
        {"{\"a\":1},{\"b\":2}]", 7}, {"  {\"a\":1}  ,", 9},     {"{}]", 2},
        {"{\"a\":\"}\"} ]", 9},      {"{\"a\":[1,{}]}\n,", 12}, {"{\"a\":1}x", 7},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_error_t e;
        const char *s = cases[i].text;
        json_t *v =
            json_loadb(s, strlen(s), JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);
        if (v == NULL) fail_msg("[%s]: %s", s, e.text);
        assert_true(json_is_object(v));
        if (e.position != cases[i].used) fail_msg("[%s]: position %d, want %d", s, e.position, cases[i].used);
        json_decref(v);
    }
    /* a value cut short is an error, not a shorter value */
    json_error_t e;
    assert_null(json_loadb("{\"a\":1", 6, JSON_DISABLE_EOF_CHECK, &e));
}

/* ---- JSON array ---- */

static void test_json_every_kind(void **state)
{
    /* numbers reach numeric and float columns as written (2.5e3): exact, and valid input there */
    check_rows(
        &kinds, BULK_JSON,
        "[{\"t\":\"hello\",\"i\":42,\"n\":1.5,\"b\":true,\"j\":{\"k\":[1,\"x\",null]},\"a\":[1,2,null],"
        "\"y\":\"AQID\",\"ts\":\"2026-01-05T00:00:00Z\",\"d\":2.5e3,\"big\":9007199254740993},"
        "{\"big\":\"-5\",\"d\":-0.25,\"ts\":\"infinity\",\"y\":\"\",\"a\":\"{3,4}\",\"j\":\"s\",\"b\":false,"
        "\"n\":\"123456789012345678901234.5\",\"i\":-7.0,\"t\":\"\"}]",
        "hello\t42\t1.5\tt\t{\"k\":[1,\"x\",null]}\t{\"1\",\"2\",NULL}\t\\\\x010203\t2026-01-05T00:00:"
        "00Z\t2.5e3\t"
        "9007199254740993\n"
        "\t-7\t123456789012345678901234.5\tf\t\"s\"\t{3,4}\t\\\\x\tinfinity\t-0.25\t-5\n");
}

static void test_json_escaping(void **state)
{
    /* text: tab, newline, CR, backslash become COPY escapes; jsonb text keeps its own JSON escapes,
     * whose backslashes are escaped again */
    check_rows(
        &kinds, BULK_JSON,
        "[{\"t\":\"a\\tb\\nc\\\\d\\re \\\\N\",\"i\":1,\"n\":1,\"b\":\"yes\",\"j\":\"l1\\nl2\",\"a\":[],"
        "\"y\":\"CQ==\",\"ts\":\"now\",\"d\":1,\"big\":1}]",
        "a\\tb\\nc\\\\d\\re \\\\N\t1\t1\tyes\t\"l1\\\\nl2\"\t{}\t\\\\x09\tnow\t1\t1\n");
    /* a string that only looks like the NULL marker is data */
    check_rows(&ticks, BULK_JSON, "[" TICK("\\\\N", "1") "]", TICK_LINE("\\\\N", "1"));
    /* UTF-8 passes as it is */
    check_rows(&ticks, BULK_JSON, "[" TICK("\xc3\xa9\\u00e9", "1") "]", TICK_LINE("\xc3\xa9\xc3\xa9", "1"));
}

static void test_json_null(void **state)
{
    check_rows(&kinds, BULK_JSON,
               "[{\"t\":null,\"i\":null,\"n\":null,\"b\":null,\"j\":null,\"a\":null,\"y\":null,\"ts\":null,"
               "\"d\":null,\"big\":null}]",
               "\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\n");
    /* some columns null, others not */
    check_rows(&ticks, BULK_JSON, "[{\"pair\":null,\"bid\":null,\"ask\":2,\"ts\":\"x\"}]",
               "\\N\t\\N\t2\tx\n");
}

static void test_json_whitespace(void **state)
{
    const char *want = TICK_LINE("A", "1") TICK_LINE("B", "2");
    check_rows(&ticks, BULK_JSON, "[" TICK("A", "1") "," TICK("B", "2") "]", want);
    check_rows(&ticks, BULK_JSON, " \r\n\t[ \n" TICK("A", "1") " \r\n , \t" TICK("B", "2") "\n ]\r\n \t",
               want);
    check_rows(&ticks, BULK_JSON, "[\n  " TICK("A", "1") ",\n  " TICK("B", "2") "\n]\n", want);
    /* keys in any order, whitespace inside the object */
    check_rows(&ticks, BULK_JSON, "[ { \"ts\" : \"t\" , \"ask\" : 3 , \"bid\" : 2 , \"pair\" : \"P\" } ]",
               "P\t2\t3\tt\n");
    /* a UTF-8 byte order mark */
    check_rows(&ticks, BULK_JSON, "\xef\xbb\xbf[" TICK("A", "1") "]", TICK_LINE("A", "1"));
}

static void test_json_empty_array(void **state)
{
    check_rows(&ticks, BULK_JSON, "[]", "");
    check_rows(&ticks, BULK_JSON, "  [ \n ]  \n", "");
    struct bulk_reader r;
    struct buf out = BUF_INIT;
    char err[128];
    assert_int_equal(bulk_reader_init(&r, BULK_JSON, "[]", 2, tick_cols, tick_types, 4, err, sizeof err), 0);
    assert_int_equal(bulk_reader_next(&r, &out, 10, err, sizeof err), 0);
    assert_int_equal(bulk_reader_rows(&r), 0);
    assert_int_equal(out.len, 0);
    bulk_reader_free(&r);
}

static void test_json_not_an_array(void **state)
{
    const char *want = "the body must be a JSON array of objects";
    check_init_err(&ticks, BULK_JSON, "", want);
    check_init_err(&ticks, BULK_JSON, "  \n ", want);
    check_init_err(&ticks, BULK_JSON, TICK("A", "1"), want);
    check_init_err(&ticks, BULK_JSON, "\"[]\"", want);
    check_init_err(&ticks, BULK_JSON, "null", want);
    check_init_err(&ticks, BULK_JSON, "pair,bid\n", want);
}

static void test_json_element_not_object(void **state)
{
    check_next_err(&ticks, BULK_JSON, "[1]", "row 1: expected a JSON object");
    check_next_err(&ticks, BULK_JSON, "[" TICK("A", "1") ",[" TICK("B", "2") "]]",
                   "row 2: expected a JSON object");
    check_next_err(&ticks, BULK_JSON, "[" TICK("A", "1") ", null]", "row 2: expected a JSON object");
    check_next_err(&ticks, BULK_JSON, "[" TICK("A", "1") ",\"x\"]", "row 2: expected a JSON object");
    /* a trailing comma */
    check_next_err(&ticks, BULK_JSON, "[" TICK("A", "1") ", ]", "row 2: expected a JSON object");
    check_next_err(&ticks, BULK_JSON, "[,]", "row 1: expected a JSON object");
}

static void test_json_unknown_and_missing(void **state)
{
    check_next_err(
        &ticks, BULK_JSON,
        "[" TICK("A", "1") "," TICK("B", "2") ",{\"pair\":\"C\",\"bidd\":1,\"ask\":1,\"ts\":\"t\"}]",
        "row 3: unknown column \"bidd\"");
    check_next_err(&ticks, BULK_JSON, "[{\"pair\":\"C\",\"bid\":1,\"ask\":1,\"ts\":\"t\",\"extra\":null}]",
                   "row 1: unknown column \"extra\"");
    check_next_err(&ticks, BULK_JSON, "[" TICK("A", "1") ",{\"pair\":\"C\",\"bid\":1,\"ask\":1}]",
                   "row 2: missing column \"ts\"");
    check_next_err(&ticks, BULK_JSON, "[{}]", "row 1: missing column \"pair\"");
    /* jansson refuses a NUL byte in a key */
    check_next_err_prefix(&ticks, BULK_JSON, "[{\"pair\\u0000x\":\"C\",\"bid\":1,\"ask\":1,\"ts\":\"t\"}]",
                          "row 1: malformed JSON: ");
    /* a long unknown key is cut short in the message */
    char body[512], want[256];
    char key[201];
    memset(key, 'k', 200);
    key[200] = '\0';
    snprintf(body, sizeof body, "[{\"%s\":1}]", key);
    snprintf(want, sizeof want, "row 1: unknown column \"%.100s\"", key);
    check_next_err(&ticks, BULK_JSON, body, want);
    /* a key twice is malformed */
    check_next_err_prefix(&ticks, BULK_JSON,
                          "[{\"pair\":\"A\",\"pair\":\"B\",\"bid\":1,\"ask\":1,\"ts\":\"t\"}]",
                          "row 1: malformed JSON: duplicate object key");
}

static void test_json_bad_value(void **state)
{
    check_next_err(&ticks, BULK_JSON,
                   "[" TICK("A", "1") "," TICK("B", "2") "," TICK("C", "3") "," TICK("D", "true") "]",
                   "row 4, column \"bid\": expected a number");
    check_next_err(&ticks, BULK_JSON, "[" TICK("A", "{}") "]", "row 1, column \"bid\": expected a number");
    check_next_err(&ticks, BULK_JSON, "[{\"pair\":\"a\\u0000b\",\"bid\":1,\"ask\":1,\"ts\":\"t\"}]",
                   "row 1, column \"pair\": text must not contain NUL bytes");
    check_next_err(
        &kinds, BULK_JSON,
        "[{\"t\":\"x\",\"i\":1,\"n\":1,\"b\":true,\"j\":1,\"a\":[1],\"y\":\"AQ=\",\"ts\":\"t\",\"d\":1,"
        "\"big\":1}]",
        "row 1, column \"y\": invalid base64");
    check_next_err(
        &kinds, BULK_JSON,
        "[{\"t\":\"x\",\"i\":3000000000,\"n\":1,\"b\":true,\"j\":1,\"a\":[1],\"y\":\"\",\"ts\":\"t\","
        "\"d\":1,\"big\":1}]",
        "row 1, column \"i\": out of range for integer");
    check_next_err(&kinds, BULK_JSON,
                   "[{\"t\":\"x\",\"i\":1,\"n\":1,\"b\":1,\"j\":1,\"a\":[1],\"y\":\"\",\"ts\":\"t\",\"d\":1,"
                   "\"big\":1}]",
                   "row 1, column \"b\": expected a boolean");
    check_next_err(
        &kinds, BULK_JSON,
        "[{\"t\":\"x\",\"i\":1,\"n\":1,\"b\":true,\"j\":1,\"a\":[1,\"z\",1.5],\"y\":\"\",\"ts\":\"t\","
        "\"d\":1,\"big\":1}]",
        "row 1, column \"a\": array element [3]: expected an integer");
}

static void test_json_truncated(void **state)
{
    check_next_err(&ticks, BULK_JSON, "[", "row 1: malformed JSON: unexpected end of the body");
    check_next_err(&ticks, BULK_JSON, "[" TICK("A", "1"),
                   "malformed JSON after row 1: the array is not closed");
    check_next_err(&ticks, BULK_JSON, "[" TICK("A", "1") ",\n",
                   "row 2: malformed JSON: unexpected end of the body");
    check_next_err(&ticks, BULK_JSON, "[" TICK("A", "1") " " TICK("B", "1") "]",
                   "malformed JSON after row 1: expected ',' or ']'");
    check_next_err(&ticks, BULK_JSON, "[" TICK("A", "1") ";" TICK("B", "1") "]",
                   "malformed JSON after row 1: expected ',' or ']'");
    check_next_err_prefix(&ticks, BULK_JSON, "[" TICK("A", "1") ",{\"pair\":\"B\",\"bid\"",
                          "row 2: malformed JSON: ");
    check_next_err_prefix(&ticks, BULK_JSON, "[{\"pair\":\"B\",\"bid\":1,", "row 1: malformed JSON: ");
    check_next_err_prefix(&ticks, BULK_JSON, "[{\"pair\":\"B\" \"bid\":1}]", "row 1: malformed JSON: ");
    check_next_err_prefix(&ticks, BULK_JSON, "[{\"pair\":'B'}]", "row 1: malformed JSON: ");
    /* the body length is the end, whatever follows in memory */
    static const char body[] = "[" TICK("A", "1") "]";
    check_next_err_n(&ticks, BULK_JSON, body, strlen(body) - 1, 10,
                     "malformed JSON after row 1: the array is not closed");
    check_rows_n(&ticks, BULK_JSON, body, strlen(body), 10, TICK_LINE("A", "1"));
}

static void test_json_trailing_garbage(void **state)
{
    const char *want = "unexpected data after the array";
    check_next_err(&ticks, BULK_JSON, "[" TICK("A", "1") "] x", want);
    check_next_err(&ticks, BULK_JSON, "[" TICK("A", "1") "]]", want);
    check_next_err(&ticks, BULK_JSON, "[][]", want);
    check_next_err(&ticks, BULK_JSON, "[" TICK("A", "1") "]\n" TICK("B", "1"), want);
}

static void test_json_batching(void **state)
{
    const char *body =
        "[" TICK("A", "1") "," TICK("B", "2") "," TICK("C", "3") "," TICK("D", "4") "," TICK("E", "5") "]";
    struct bulk_reader r;
    struct buf out = BUF_INIT;
    char err[128];
    assert_int_equal(
        bulk_reader_init(&r, BULK_JSON, body, strlen(body), tick_cols, tick_types, 4, err, sizeof err), 0);
    static const int want_n[] = {2, 2, 1, 0, 0};
    static const long want_rows[] = {2, 4, 5, 5, 5};
    static const char *want_out[] = {TICK_LINE("A", "1") TICK_LINE("B", "2"),
                                     TICK_LINE("C", "3") TICK_LINE("D", "4"), TICK_LINE("E", "5"), "", ""};
    for (int i = 0; i < 5; i++) {
        buf_reset(&out);
        assert_int_equal(bulk_reader_next(&r, &out, 2, err, sizeof err), want_n[i]);
        assert_int_equal(bulk_reader_rows(&r), want_rows[i]);
        assert_string_equal(out.data ? out.data : "", want_out[i]);
    }
    bulk_reader_free(&r);

    /* exactly two batches: the end is found by the next call */
    body = "[" TICK("A", "1") "," TICK("B", "2") "," TICK("C", "3") "," TICK("D", "4") "]";
    assert_int_equal(
        bulk_reader_init(&r, BULK_JSON, body, strlen(body), tick_cols, tick_types, 4, err, sizeof err), 0);
    assert_int_equal(bulk_reader_next(&r, &out, 2, err, sizeof err), 2);
    assert_int_equal(bulk_reader_next(&r, &out, 2, err, sizeof err), 2);
    assert_int_equal(bulk_reader_next(&r, &out, 2, err, sizeof err), 0);
    assert_int_equal(bulk_reader_rows(&r), 4);
    bulk_reader_free(&r);
    buf_free(&out);
}

static void test_error_restores_out(void **state)
{
    /* the bad row is in the second batch: the first batch stays, the second is taken back */
    const char *body = "[" TICK("A", "1") "," TICK("B", "2") "," TICK("C", "3") "," TICK("D", "[]") "]";
    struct bulk_reader r;
    struct buf out = BUF_INIT;
    char err[128];
    assert_int_equal(
        bulk_reader_init(&r, BULK_JSON, body, strlen(body), tick_cols, tick_types, 4, err, sizeof err), 0);
    buf_puts(&out, "pre\n");
    assert_int_equal(bulk_reader_next(&r, &out, 2, err, sizeof err), 2);
    size_t len = out.len;
    assert_int_equal(bulk_reader_next(&r, &out, 2, err, sizeof err), -1);
    assert_string_equal(err, "row 4, column \"bid\": expected a number");
    assert_int_equal(out.len, len);
    assert_string_equal(out.data, "pre\n" TICK_LINE("A", "1") TICK_LINE("B", "2"));
    assert_int_equal(bulk_reader_rows(&r), 2);
    bulk_reader_free(&r);
    buf_free(&out);

    /* the same in each format, all in one call */
    check_next_err(&ticks, BULK_NDJSON, TICK("A", "1") "\n" TICK("B", "[]") "\n",
                   "row 2, column \"bid\": expected a number");
    check_next_err(&kinds, BULK_CSV,
                   "t,i,n,b,j,a,y,ts,d,big\nx,1,1,t,1,{},AQID,t,1,1\nx,1,1,t,1,{},*,t,1,1\n",
                   "row 2, column \"y\": invalid base64");
}

static void test_json_large(void **state)
{
    /* many rows in many calls: every row comes out once, in order */
    struct buf body = BUF_INIT, want = BUF_INIT, out = BUF_INIT;
    buf_putc(&body, '[');
    for (int i = 0; i < 10000; i++) {
        buf_printf(&body, "%s{\"pair\":\"P%d\",\"bid\":%d.25,\"ask\":%d,\"ts\":null}", i ? "," : "", i, i,
                   -i);
        buf_printf(&want, "P%d\t%d.25\t%d\t\\N\n", i, i, -i);
    }
    buf_putc(&body, ']');
    struct bulk_reader r;
    char err[128];
    assert_int_equal(
        bulk_reader_init(&r, BULK_JSON, body.data, body.len, tick_cols, tick_types, 4, err, sizeof err), 0);
    int rc, calls = 0;
    while ((rc = bulk_reader_next(&r, &out, 999, err, sizeof err)) > 0) calls++;
    assert_int_equal(rc, 0);
    assert_int_equal(calls, 11);
    assert_int_equal(bulk_reader_rows(&r), 10000);
    assert_int_equal(out.len, want.len);
    assert_memory_equal(out.data, want.data, want.len);
    bulk_reader_free(&r);
    buf_free(&body);
    buf_free(&want);
    buf_free(&out);
}

/* ---- JSON: the fast path (flat rows scanned without jansson) and its hand-over to jansson ---- */

/* A row of a JSON body and the COPY line it must give. */
struct row_case {
    const char *row, *line;
};

/* Reads the rows both as a JSON array and as NDJSON; expects their lines. */
static void check_row_cases(const struct table *t, const struct row_case *cases, size_t n)
{
    struct buf json = BUF_INIT, ndjson = BUF_INIT, want = BUF_INIT;
    buf_putc(&json, '[');
    for (size_t i = 0; i < n; i++) {
        buf_printf(&json, "%s%s", i ? "," : "", cases[i].row);
        buf_printf(&ndjson, "%s\n", cases[i].row);
        buf_puts(&want, cases[i].line);
    }
    buf_putc(&json, ']');
    check_rows(t, BULK_JSON, json.data, want.data);
    check_rows(t, BULK_NDJSON, ndjson.data, want.data);
    buf_free(&json);
    buf_free(&ndjson);
    buf_free(&want);
}

/* Expects a body of the row good then the row bad, as a JSON array and as NDJSON, to fail on row
 * 2 with exactly "row 2" + want (or, when exact is false, a message that starts so). */
static void check_row_err(const struct table *t, const char *good, const char *bad, bool exact,
                          const char *want)
{
    struct buf json = BUF_INIT, ndjson = BUF_INIT, err = BUF_INIT;
    buf_printf(&json, "[%s,%s]", good, bad);
    buf_printf(&ndjson, "%s\n%s\n", good, bad);
    buf_printf(&err, "row 2%s", want);
    if (exact) {
        check_next_err(t, BULK_JSON, json.data, err.data);
        check_next_err(t, BULK_NDJSON, ndjson.data, err.data);
    } else {
        check_next_err_prefix(t, BULK_JSON, json.data, err.data);
        check_next_err_prefix(t, BULK_NDJSON, ndjson.data, err.data);
    }
    buf_free(&json);
    buf_free(&ndjson);
    buf_free(&err);
}

/* Numbers: one column of each rule. */
static char *const num_cols[] = {"n", "d", "i", "s", "t", "j", "o"};
static const Oid num_types[] = {PGT_NUMERIC, PGT_FLOAT8, PGT_INT4, PGT_INT2, PGT_TEXT, PGT_JSONB, PGT_OID};
static const struct table nums = {num_cols, num_types, 7};

#define NUMS(n, d, i, s, t, j)                                                                               \
    "{\"n\":" n ",\"d\":" d ",\"i\":" i ",\"s\":" s ",\"t\":" t ",\"j\":" j ",\"o\":1}"
#define NUMS_OK NUMS("1", "1", "1", "1", "1", "1")

/* A row of the kinds table that every column takes. */
#define KINDS_OK                                                                                             \
    "{\"t\":\"x\",\"i\":1,\"n\":1,\"b\":true,\"j\":1,\"a\":[1],\"y\":\"\",\"ts\":\"t\",\"d\":1,\"big\":1}"

static void test_fast_numbers_verbatim(void **state)
{
    /* numeric, float and json columns get the number's own text: every digit, the scale (1.50),
     * the exponent form; all valid input there, with no round trip through a double */
    static const struct row_case cases[] = {
        {NUMS("1.08345", "1.08345", "1", "1", "1", "1.08345"), "1.08345\t1.08345\t1\t1\t1\t1.08345\t1\n"},
        {NUMS("-0", "-0", "0", "0", "0", "-0"), "-0\t-0\t0\t0\t0\t-0\t1\n"},
        {NUMS("1e5", "1E+5", "2", "2", "2", "1e5"), "1e5\t1E+5\t2\t2\t2\t1e5\t1\n"},
        {NUMS("12345678901234567890.123", "0.1e1", "3", "3", "3", "12345678901234567890.123"),
         "12345678901234567890.123\t0.1e1\t3\t3\t3\t12345678901234567890.123\t1\n"},
        {NUMS("1.50", "-1.5e-7", "4", "4", "4", "1.50"), "1.50\t-1.5e-7\t4\t4\t4\t1.50\t1\n"},
        {NUMS("1e-400", "1e308", "5", "5", "5", "-0.0"), "1e-400\t1e308\t5\t5\t5\t-0.0\t1\n"},
        {NUMS("9223372036854775807", "-9223372036854775808", "6", "6", "6", "1"),
         "9223372036854775807\t-9223372036854775808\t6\t6\t6\t1\t1\n"},
    };
    check_row_cases(&nums, cases, sizeof cases / sizeof cases[0]);

    /* numbers PostgreSQL refuses as text (a float below its range, a numeric of more than 16383
     * digits after the point) are copied as written too: PostgreSQL says no, nothing rounds them */
    static char *const edge_cols[] = {"n", "d", "f", "j"};
    static const Oid edge_types[] = {PGT_NUMERIC, PGT_FLOAT8, PGT_FLOAT4, PGT_JSONB};
    const struct table edges = {edge_cols, edge_types, 4};
    static const struct row_case edge_cases[] = {
        {"{\"n\":1e-16383,\"d\":1e-280,\"f\":1e-280,\"j\":1e-16383}", "1e-16383\t1e-280\t1e-280\t1e-16383\n"},
        {"{\"n\":1e-16384,\"d\":1e-400,\"f\":1e-400,\"j\":0.5e-16383}",
         "1e-16384\t1e-400\t1e-400\t0.5e-16383\n"},
    };
    check_row_cases(&edges, edge_cases, sizeof edge_cases / sizeof edge_cases[0]);

    /* past int64 or a double a number is still copied as written (jsonnum.h): PostgreSQL judges
     * it, and no digit is lost on the way */
    static const struct row_case big_cases[] = {
        {NUMS("12345678901234567890", "1", "1", "1", "1", "1"), "12345678901234567890\t1\t1\t1\t1\t1\t1\n"},
        {NUMS("1", "1", "1", "1", "1", "-9223372036854775809"), "1\t1\t1\t1\t1\t-9223372036854775809\t1\n"},
        {NUMS("1", "1e400", "1", "1", "1", "-0.5e309"), "1\t1e400\t1\t1\t1\t-0.5e309\t1\n"},
    };
    check_row_cases(&nums, big_cases, sizeof big_cases / sizeof big_cases[0]);
    /* and so does the grammar */
    static const char *bad[] = {"01",  "1.",  ".5",   "-",    "+1",   "1e",
                                "1e+", "-01", "1.5x", "0x10", "1..2", "Infinity"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        char row[128];
        snprintf(row, sizeof row, "{\"n\":%s,\"d\":1,\"i\":1,\"s\":1,\"t\":1,\"j\":1,\"o\":1}", bad[k]);
        check_row_err(&nums, NUMS_OK, row, false, ": malformed JSON: ");
    }
}

static void test_fast_numbers_integer_columns(void **state)
{
    /* integers pass as written; an integral real is the integer (3.0 -> 3, 1e2 -> 100); -0 is 0; a
     * text column gets a real as written (1.50, 1e5), as a query parameter does */
    static const struct row_case cases[] = {
        {NUMS("1", "1", "3.0", "-7.0", "1.50", "1"), "1\t1\t3\t-7\t1.50\t1\t1\n"},
        {NUMS("1", "1", "1e2", "-0", "1e5", "1"), "1\t1\t100\t0\t1e5\t1\t1\n"},
        {NUMS("1", "1", "2147483647", "32767", "-0", "1"), "1\t1\t2147483647\t32767\t0\t1\t1\n"},
        {NUMS("1", "1", "-2147483648", "-32768", "42", "1"), "1\t1\t-2147483648\t-32768\t42\t1\t1\n"},
        {NUMS("1", "1", "\"12\"", "\"-3\"", "\"x\"", "1"), "1\t1\t12\t-3\tx\t1\t1\n"},
    };
    check_row_cases(&nums, cases, sizeof cases / sizeof cases[0]);

    check_row_err(&nums, NUMS_OK, NUMS("1", "1", "3.5", "1", "1", "1"), true,
                  ", column \"i\": expected an integer");
    check_row_err(&nums, NUMS_OK, NUMS("1", "1", "2147483648", "1", "1", "1"), true,
                  ", column \"i\": out of range for integer");
    check_row_err(&nums, NUMS_OK, NUMS("1", "1", "-2147483649", "1", "1", "1"), true,
                  ", column \"i\": out of range for integer");
    check_row_err(&nums, NUMS_OK, NUMS("1", "1", "12345678901", "1", "1", "1"), true,
                  ", column \"i\": out of range for integer");
    check_row_err(&nums, NUMS_OK, NUMS("1", "1", "1", "32768", "1", "1"), true,
                  ", column \"s\": out of range for smallint");
    check_row_err(&nums, NUMS_OK, NUMS("1", "1", "1", "-1e5", "1", "1"), true,
                  ", column \"s\": out of range for smallint");
    check_row_err(&nums, NUMS_OK, NUMS("1", "1", "true", "1", "1", "1"), true,
                  ", column \"i\": expected an integer");
}

static void test_fast_wrong_kind(void **state)
{
    /* a value the column does not take: the same errors as before, through jansson */
    static const struct {
        const char *row, *err;
    } cases[] = {
        {"{\"t\":\"x\",\"i\":1,\"n\":1,\"b\":0,\"j\":1,\"a\":[1],\"y\":\"\",\"ts\":\"t\",\"d\":1,\"big\":1}",
         ", column \"b\": expected a boolean"},
        {"{\"t\":\"x\",\"i\":1,\"n\":1,\"b\":[],\"j\":1,\"a\":[1],\"y\":\"\",\"ts\":\"t\",\"d\":1,\"big\":1}",
         ", column \"b\": expected a boolean"},
        {"{\"t\":\"x\",\"i\":1,\"n\":false,\"b\":true,\"j\":1,\"a\":[1],\"y\":\"\",\"ts\":\"t\",\"d\":1,"
         "\"big\":1}",
         ", column \"n\": expected a number"},
        {"{\"t\":\"x\",\"i\":1,\"n\":1,\"b\":true,\"j\":1,\"a\":1,\"y\":\"\",\"ts\":\"t\",\"d\":1,\"big\":1}",
         ", column \"a\": expected an array"},
        {"{\"t\":\"x\",\"i\":1,\"n\":1,\"b\":true,\"j\":1,\"a\":{},\"y\":\"\",\"ts\":\"t\",\"d\":1,\"big\":"
         "1}",
         ", column \"a\": expected an array"},
        {"{\"t\":\"x\",\"i\":1,\"n\":1,\"b\":true,\"j\":1,\"a\":[1],\"y\":1,\"ts\":\"t\",\"d\":1,\"big\":1}",
         ", column \"y\": expected a base64 string"},
        {"{\"t\":\"x\",\"i\":1,\"n\":1,\"b\":true,\"j\":1,\"a\":[1],\"y\":\"A\\u0000==\",\"ts\":\"t\",\"d\":"
         "1,"
         "\"big\":1}",
         ", column \"y\": invalid base64"},
        {"{\"t\":[],\"i\":1,\"n\":1,\"b\":true,\"j\":1,\"a\":[1],\"y\":\"\",\"ts\":\"t\",\"d\":1,\"big\":1}",
         ", column \"t\": expected a string"},
        {"{\"t\":\"x\",\"i\":1,\"n\":1,\"b\":\"a\\u0000\",\"j\":1,\"a\":[1],\"y\":\"\",\"ts\":\"t\",\"d\":1,"
         "\"big\":1}",
         ", column \"b\": text must not contain NUL bytes"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        check_row_err(&kinds, KINDS_OK, cases[k].row, true, cases[k].err);
}

static void test_fast_string_escapes(void **state)
{
    /* every escape; \u00e9 and surrogate pairs become UTF-8; an escape that decodes to a COPY
     * special character is COPY-escaped (\u005c is a backslash, \u0009 a tab) */
    static const struct row_case cases[] = {
        {TICK("\\\"\\\\\\/\\b\\f\\n\\r\\t", "1"), TICK_LINE("\"\\\\/\b\f\\n\\r\\t", "1")},
        {TICK("caf\\u00e9 \\u20AC \\ud83d\\ude00 \\uD834\\uDD1E", "2"),
         TICK_LINE("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf0\x9d\x84\x9e", "2")},
        {TICK("\\u005c\\u0009\\u000a\\u000D\\u0041\\u0008", "3"), TICK_LINE("\\\\\\t\\n\\rA\b", "3")},
        {TICK("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x7f", "4"),
         TICK_LINE("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x7f", "4")},
        /* a key may be spelled with escapes */
        {"{\"\\u0070air\":\"P\",\"b\\u0069d\":1,\"ask\":1.5,\"\\u0074\\u0073\":\"2026-01-05T00:00:00Z\"}",
         TICK_LINE("P", "1")},
    };
    check_row_cases(&ticks, cases, sizeof cases / sizeof cases[0]);
    /* a json column keeps the string's own JSON text; bytea decodes the string, then the base64 */
    static const struct row_case kind_cases[] = {
        {"{\"t\":\"x\",\"i\":1,\"n\":1,\"b\":true,\"j\":\"caf\\u00e9 \\ud83d\\ude00\\n\\/\",\"a\":[1],"
         "\"y\":\"\\/w\\u003d=\",\"ts\":\"t\",\"d\":1,\"big\":1}",
         "x\t1\t1\tt\t\"caf\\\\u00e9 \\\\ud83d\\\\ude00\\\\n\\\\/\"\t{\"1\"}\t\\\\xff\tt\t1\t1\n"},
    };
    check_row_cases(&kinds, kind_cases, 1);
    /* \u0000 is fine in JSON, not in text */
    check_row_err(&ticks, TICK("A", "1"), TICK("a\\u0000", "1"), true,
                  ", column \"pair\": text must not contain NUL bytes");
}

static void test_fast_string_errors(void **state)
{
    /* what jansson refuses in a string, the fast path hands to it: the same message */
    static const struct {
        const char *pair, *err;
    } cases[] = {
        {"\\x", "invalid escape near '\"\\x'"},
        {"\\u12g4", "invalid escape near '\"\\u12g'"},
        {"\\ud83d", "invalid Unicode '\\uD83D' near '\"\\ud83d\"'"}, /* a lone high surrogate */
        {"\\ude00", "invalid Unicode '\\uDE00' near '\"\\ude00\"'"}, /* a lone low surrogate */
        {"\\ud83d\\u0041", "invalid Unicode '\\uD83D\\u0041' near '\"\\ud83d\\u0041\"'"}, /* not a pair */
        {"\\ud83dx", "invalid Unicode '\\uD83D' near '\"\\ud83dx\"'"},
        {"\xff", "unable to decode byte 0xff near '\"'"},
        {"\x80", "unable to decode byte 0x80 near '\"'"},             /* a continuation byte first */
        {"\xc0\x80", "unable to decode byte 0xc0 near '\"'"},         /* overlong */
        {"\xe0\x9f\xbf", "unable to decode byte 0xe0 near '\"'"},     /* overlong */
        {"\xed\xa0\x80", "unable to decode byte 0xed near '\"'"},     /* a surrogate */
        {"\xf4\x90\x80\x80", "unable to decode byte 0xf4 near '\"'"}, /* past U+10FFFF */
        {"\xe2\x82", "unable to decode byte 0xe2 near '\"'"},         /* cut short */
        {"a\x01", "control character 0x1 near '\"a'"},
        {"a\tb", "control character 0x9 near '\"a'"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char row[128], want[256];
        snprintf(row, sizeof row, "{\"pair\":\"%s\",\"bid\":1,\"ask\":1,\"ts\":\"t\"}", cases[k].pair);
        snprintf(want, sizeof want, ": malformed JSON: %s", cases[k].err);
        check_row_err(&ticks, TICK("A", "1"), row, true, want);
    }
    /* a raw newline inside a string (in NDJSON it ends the line, and the row with it) */
    check_next_err(&ticks, BULK_JSON, "[" TICK("A", "1") "," TICK("a\nb", "1") "]",
                   "row 2: malformed JSON: unexpected newline near '\"a'");
    /* in a key too */
    check_row_err(&ticks, TICK("A", "1"), "{\"pa\xffir\":\"A\",\"bid\":1,\"ask\":1,\"ts\":\"t\"}", true,
                  ": malformed JSON: unable to decode byte 0xff near '\"pa'");
}

static void test_fast_duplicate_keys(void **state)
{
    check_row_err(&ticks, TICK("A", "1"), "{\"pair\":\"A\",\"bid\":1,\"ask\":1,\"ts\":\"t\",\"pair\":\"B\"}",
                  true, ": malformed JSON: duplicate object key near '\"pair\"'");
    check_row_err(&ticks, TICK("A", "1"), "{\"pair\":\"A\",\"pair\":null,\"bid\":1,\"ask\":1,\"ts\":\"t\"}",
                  true, ": malformed JSON: duplicate object key near '\"pair\"'");
    /* the same key spelled two ways */
    check_row_err(&ticks, TICK("A", "1"),
                  "{\"pair\":\"A\",\"bid\":1,\"ask\":1,\"ts\":\"t\",\"p\\u0061ir\":1}", true,
                  ": malformed JSON: duplicate object key near '\"p\\u0061ir\"'");
    /* inside a nested value */
    check_row_err(
        &kinds, KINDS_OK,
        "{\"t\":\"x\",\"i\":1,\"n\":1,\"b\":true,\"j\":{\"k\":1,\"k\":2},\"a\":[],\"y\":\"\",\"ts\":\"t\","
        "\"d\":1,\"big\":1}",
        true, ": malformed JSON: duplicate object key near '\"k\"'");
}

static void test_fast_nested_mixed(void **state)
{
    /* rows with nested values (each parsed by jansson, converted by pgtype) between flat rows; the
     * numbers in those rows are copied as written all the same */
    static const struct row_case cases[] = {
        {"{\"t\":\"a\",\"i\":1,\"n\":1.50,\"b\":true,\"j\":\"x\",\"a\":\"{1}\",\"y\":\"\",\"ts\":\"t\",\"d\":"
         "1,\"big\":1}",
         "a\t1\t1.50\tt\t\"x\"\t{1}\t\\\\x\tt\t1\t1\n"},
        {"{\"t\":\"b\",\"i\":2,\"n\":12345678901234567890.123,\"b\":false,\"j\":{ \"k\" : [ 1.50 , "
         "\"\\u00e9\" ] },"
         "\"a\":[[1,2],[3,null]],\"y\":\"AQID\",\"ts\":\"t\",\"d\":2.5e3,\"big\":2}",
         "b\t2\t12345678901234567890.123\tf\t{\"k\":[1.50,\"\xc3\xa9\"]}\t{{\"1\",\"2\"},{\"3\",NULL}}"
         "\t\\\\x010203\tt\t"
         "2.5e3\t2\n"},
        {"{\"t\":\"c\",\"i\":3,\"n\":1e5,\"b\":null,\"j\":[],\"a\":[],\"y\":null,\"ts\":null,\"d\":-0,"
         "\"big\":3}",
         "c\t3\t1e5\t\\N\t[]\t{}\t\\N\t\\N\t-0\t3\n"},
        {"{\"t\":\"d\",\"i\":4,\"n\":4,\"b\":true,\"j\":[{\"a\":[]},{}],\"a\":[],\"y\":\"\",\"ts\":\"t\","
         "\"d\":4,\"big\":4}",
         "d\t4\t4\tt\t[{\"a\":[]},{}]\t{}\t\\\\x\tt\t4\t4\n"},
    };
    check_row_cases(&kinds, cases, sizeof cases / sizeof cases[0]);
    /* a nested value where the column takes none; a malformed one */
    check_row_err(&ticks, TICK("A", "1"), TICK("B", "[1]"), true, ", column \"bid\": expected a number");
    check_row_err(
        &kinds, KINDS_OK,
        "{\"t\":\"x\",\"i\":1,\"n\":1,\"b\":true,\"j\":{\"k\":[1,]},\"a\":[],\"y\":\"\",\"ts\":\"t\",\"d\":1,"
        "\"big\":1}",
        false, ": malformed JSON: ");
    /* jansson's depth limit holds for the row as a whole, the row being one level */
    static char *const j_col[] = {"j"};
    static const Oid j_type[] = {PGT_JSONB};
    const struct table jt = {j_col, j_type, 1};
    for (int depth = 2045; depth <= 2049; depth++) {
        struct buf body = BUF_INIT, want = BUF_INIT;
        buf_puts(&body, "[{\"j\":");
        for (int k = 0; k < depth; k++) buf_putc(&body, '[');
        buf_putc(&body, '7');
        for (int k = 0; k < depth; k++) buf_putc(&body, ']');
        buf_puts(&body, "}]");
        if (depth < 2047) {
            buf_append(&want, body.data + 6, body.len - 8);
            buf_putc(&want, '\n');
            check_rows_n(&jt, BULK_JSON, body.data, body.len, 10, want.data);
        } else {
            check_next_err_prefix(&jt, BULK_JSON, body.data,
                                  "row 1: malformed JSON: maximum parsing depth reached");
        }
        buf_free(&body);
        buf_free(&want);
    }
}

static void test_fast_whitespace_everywhere(void **state)
{
    const char *want = "P\t1.5\t-2\tt\nQ\t\\N\t3\t\\N\n";
    check_rows(
        &ticks, BULK_JSON,
        " \t\r\n[ \t\r\n{ \t\r\n\"pair\" \t\r\n: \t\r\n\"P\" \t\r\n, \t\r\n\"bid\" \t\r\n: \t\r\n1.5 \t\r\n, "
        "\t\r\n\"ask\" \t\r\n: \t\r\n-2 \t\r\n, \t\r\n\"ts\" \t\r\n: \t\r\n\"t\" \t\r\n} \t\r\n, \t\r\n"
        "{\"ts\":null,\"ask\" :3 ,\"bid\": null\t,\"pair\"\n:\n\"Q\"\n}\n]\n\t ",
        want);
    check_rows(&ticks, BULK_NDJSON,
               " \t{ \t\"pair\" \t: \t\"P\" \t, \t\"bid\" \t: \t1.5 \t, \t\"ask\" \t: \t-2 \t, \t\"ts\" \t: "
               "\t\"t\" \t} \t\r\n"
               "\r\n{\"ts\":null,\"ask\" :3 ,\"bid\": null\t,\"pair\"\r:\r\"Q\"\r}\r",
               want);
    /* JSON whitespace is those four bytes only */
    check_row_err(&ticks, TICK("A", "1"), "{\"pair\"\f:\"P\",\"bid\":1,\"ask\":1,\"ts\":\"t\"}", false,
                  ": malformed JSON: ");
    check_row_err(&ticks, TICK("A", "1"), "{\"pair\":\"P\"\v,\"bid\":1,\"ask\":1,\"ts\":\"t\"}", false,
                  ": malformed JSON: ");
    check_row_err(&ticks, TICK("A", "1"), "{\"pair\":\"P\",\"bid\":1,\"ask\":1,\"ts\":\"t\"\xc2\xa0}", false,
                  ": malformed JSON: ");
}

static void test_fast_literals(void **state)
{
    static const struct row_case cases[] = {
        {"{\"t\":true,\"i\":\"7\",\"n\":\"1.10\",\"b\":false,\"j\":true,\"a\":null,\"y\":null,\"ts\":false,"
         "\"d\":null,\"big\":null}",
         "true\t7\t1.10\tf\ttrue\t\\N\t\\N\tfalse\t\\N\t\\N\n"},
        {"{\"t\":false,\"i\":null,\"n\":null,\"b\":\"on\",\"j\":false,\"a\":null,\"y\":null,\"ts\":true,"
         "\"d\":\"NaN\",\"big\":\"1\"}",
         "false\t\\N\t\\N\ton\tfalse\t\\N\t\\N\ttrue\tNaN\t1\n"},
    };
    check_row_cases(&kinds, cases, sizeof cases / sizeof cases[0]);
    static const char *bad[] = {"tru", "truex", "True", "nul", "NULL", "fals", "nulll", "t"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        char row[128];
        snprintf(row, sizeof row, "{\"pair\":%s,\"bid\":1,\"ask\":1,\"ts\":\"t\"}", bad[k]);
        check_row_err(&ticks, TICK("A", "1"), row, false, ": malformed JSON: ");
    }
}

/* ---- NDJSON ---- */

static void test_ndjson(void **state)
{
    const char *want = TICK_LINE("A", "1") TICK_LINE("B", "2") TICK_LINE("C", "3");
    check_rows(&ticks, BULK_NDJSON, TICK("A", "1") "\n" TICK("B", "2") "\n" TICK("C", "3") "\n", want);
    check_rows(&ticks, BULK_NDJSON, TICK("A", "1") "\n" TICK("B", "2") "\n" TICK("C", "3"), want);
    check_rows(&ticks, BULK_NDJSON, TICK("A", "1") "\r\n" TICK("B", "2") "\r\n" TICK("C", "3") "\r\n", want);
    /* blank and whitespace-only lines anywhere */
    check_rows(&ticks, BULK_NDJSON,
               "\n\r\n" TICK("A", "1") "\n\n  \t\n" TICK("B", "2") "  \r\n\r\n \t" TICK("C", "3") "\n\n\n",
               want);
    check_rows(&ticks, BULK_NDJSON, "\xef\xbb\xbf" TICK("A", "1") "\n" TICK("B", "2") "\n" TICK("C", "3"),
               want);
    check_rows(&ticks, BULK_NDJSON, "", "");
    check_rows(&ticks, BULK_NDJSON, "\n\r\n  \n", "");
    check_rows(
        &kinds, BULK_NDJSON,
        "{\"t\":\"a\\tb\",\"i\":1,\"n\":null,\"b\":true,\"j\":[1,{\"x\":null}],\"a\":[[1,2],[3,4]],\"y\":"
        "\"/w==\",\"ts\":\"t\",\"d\":1e-3,\"big\":-9223372036854775808}",
        "a\\tb\t1\t\\N\tt\t[1,{\"x\":null}]\t{{\"1\",\"2\"},{\"3\",\"4\"}}\t\\\\xff\tt\t1e-3\t-"
        "9223372036854775808\n");
}

static void test_ndjson_errors(void **state)
{
    /* rows count data lines, not blank ones */
    check_next_err(&ticks, BULK_NDJSON, TICK("A", "1") "\n\n\n[1]\n", "row 2: expected a JSON object");
    check_next_err(&ticks, BULK_NDJSON, TICK("A", "1") "\n\"x\"\n", "row 2: expected a JSON object");
    check_next_err(&ticks, BULK_NDJSON, "[" TICK("A", "1") "]\n", "row 1: expected a JSON object");
    check_next_err(&ticks, BULK_NDJSON, TICK("A", "1") "\n{\"pair\":\"B\",\"bidd\":1,\"ask\":1,\"ts\":\"t\"}",
                   "row 2: unknown column \"bidd\"");
    check_next_err(&ticks, BULK_NDJSON, TICK("A", "1") "\n\n{\"pair\":\"B\",\"bid\":1,\"ask\":1}\n",
                   "row 2: missing column \"ts\"");
    /* one object per line: a second one on the line, or an object split over lines, is malformed */
    check_next_err_prefix(&ticks, BULK_NDJSON, TICK("A", "1") " " TICK("B", "2") "\n",
                          "row 1: malformed JSON: ");
    check_next_err_prefix(&ticks, BULK_NDJSON,
                          TICK("A", "1") "\n{\"pair\":\"B\",\n\"bid\":1,\"ask\":1,\"ts\":\"t\"}\n",
                          "row 2: malformed JSON: ");
    check_next_err_prefix(&ticks, BULK_NDJSON, TICK("A", "1") "\n" TICK("B", "2") "x\n",
                          "row 2: malformed JSON: ");
    check_next_err_prefix(&ticks, BULK_NDJSON, "{\"pair\":\"B\"", "row 1: malformed JSON: ");
}

/* ---- CSV ---- */

static void test_csv(void **state)
{
    const char *want = TICK_LINE("A", "1") TICK_LINE("B", "2");
    check_rows(&ticks, BULK_CSV,
               "pair,bid,ask,ts\nA,1,1.5,2026-01-05T00:00:00Z\nB,2,1.5,2026-01-05T00:00:00Z\n", want);
    /* no trailing newline; \r\n; blank lines at the end; a byte order mark */
    check_rows(&ticks, BULK_CSV,
               "pair,bid,ask,ts\nA,1,1.5,2026-01-05T00:00:00Z\nB,2,1.5,2026-01-05T00:00:00Z", want);
    check_rows(&ticks, BULK_CSV,
               "pair,bid,ask,ts\r\nA,1,1.5,2026-01-05T00:00:00Z\r\nB,2,1.5,2026-01-05T00:00:00Z\r\n\r\n\n",
               want);
    check_rows(&ticks, BULK_CSV,
               "\xef\xbb\xbfpair,bid,ask,ts\nA,1,1.5,2026-01-05T00:00:00Z\nB,2,1.5,2026-01-05T00:00:00Z",
               want);
    /* the header in another order, with quoted names */
    check_rows(&ticks, BULK_CSV,
               "ts,\"ask\",pair,bid\n2026-01-05T00:00:00Z,1.5,A,1\n2026-01-05T00:00:00Z,1.5,B,2\n", want);
    /* a header alone is no rows */
    check_rows(&ticks, BULK_CSV, "pair,bid,ask,ts\n", "");
    check_rows(&ticks, BULK_CSV, "pair,bid,ask,ts", "");
}

static void test_csv_quoting(void **state)
{
    /* quoted commas, newlines (LF and CRLF inside), "" escapes, tab and backslash */
    check_rows(&ticks, BULK_CSV,
               "pair,bid,ask,ts\n"
               "\"a,b\",1,2,\"line1\nline2\"\n"
               "\"say \"\"hi\"\"\",1,2,\"x\r\ny\"\r\n"
               "\"\"\"\",1,2,\"\"\"a\"\"b\"\"\"\n"
               "a\tb\\c,1,2,\"q\"\n",
               "a,b\t1\t2\tline1\\nline2\n"
               "say \"hi\"\t1\t2\tx\\r\\ny\n"
               "\"\t1\t2\t\"a\"b\"\n"
               "a\\tb\\\\c\t1\t2\tq\n");
    /* a quote inside an unquoted field is data */
    check_rows(&ticks, BULK_CSV, "pair,bid,ask,ts\na\"b,1,2,3\n", "a\"b\t1\t2\t3\n");
}

static void test_csv_null_and_empty(void **state)
{
    /* unquoted empty = NULL, quoted empty = the empty string */
    check_rows(&ticks, BULK_CSV, "pair,bid,ask,ts\n,,\"\",\n\"\",1,,\"\"\n", "\\N\t\\N\t\t\\N\n\t1\t\\N\t\n");
    /* spaces are data */
    check_rows(&ticks, BULK_CSV, "pair,bid,ask,ts\n , ,x,\" \"\n", " \t \tx\t \n");
    /* a one-column table: a blank line inside is a NULL row, blank lines at the end are not rows */
    static char *const one_col[] = {"v"};
    static const Oid one_type[] = {PGT_TEXT};
    const struct table one = {one_col, one_type, 1};
    check_rows(&one, BULK_CSV, "v\na\n\nb\n\n\n", "a\n\\N\nb\n");
    check_rows(&one, BULK_CSV, "v\n\"\"\n", "\n");
}

static void test_csv_types(void **state)
{
    /* values are PostgreSQL input syntax, except bytea, which takes base64 */
    check_rows(&kinds, BULK_CSV,
               "big,d,ts,y,a,j,b,n,i,t\n"
               "12,1.5e3,2026-01-05 00:00:00+00,AQID,\"{1,2}\",\"{\"\"k\"\": 1}\",true,1.10,-3,hi\n",
               "hi\t-3\t1.10\ttrue\t{\"k\": 1}\t{1,2}\t\\\\x010203\t2026-01-05 00:00:00+00\t1.5e3\t12\n");
    check_next_err(&kinds, BULK_CSV, "big,d,ts,y,a,j,b,n,i,t\n1,1,t,AQI*,{},1,t,1,1,x\n",
                   "row 1, column \"y\": invalid base64");
    static const char nul[] = "pair,bid,ask,ts\nA,1,2,3\na\0b,1,2,3\n";
    check_next_err_n(&ticks, BULK_CSV, nul, sizeof nul - 1, 10,
                     "row 2, column \"pair\": text must not contain NUL bytes");
}

static void test_csv_field_count(void **state)
{
    check_next_err(&ticks, BULK_CSV, "pair,bid,ask,ts\nA,1,2,3\nB,1,2,3\nC,1,2,3\nD,1,2\n",
                   "row 4: expected 4 fields, got 3");
    check_next_err(&ticks, BULK_CSV, "pair,bid,ask,ts\nA,1,2,3,\n", "row 1: expected 4 fields, got 5");
    check_next_err(&ticks, BULK_CSV, "pair,bid,ask,ts\nA,1,2,3\n\nB,1,2,3\n",
                   "row 2: expected 4 fields, got 1");
    check_next_err(&ticks, BULK_CSV, "pair,bid,ask,ts\nA,\"1\n2\",3\n", "row 1: expected 4 fields, got 3");
}

static void test_csv_bad_quotes(void **state)
{
    check_next_err(&ticks, BULK_CSV, "pair,bid,ask,ts\nA,1,2,3\n\"B,1,2,3\nC,1,2,3\n",
                   "row 2, column \"pair\": unterminated quoted field");
    check_next_err(&ticks, BULK_CSV, "ts,ask,bid,pair\n1,2,3,\"abc\"\"",
                   "row 1, column \"pair\": unterminated quoted field");
    check_next_err(&ticks, BULK_CSV, "pair,bid,ask,ts\nA,1,2,3,\"x", "row 1: unterminated quoted field");
    check_next_err(&ticks, BULK_CSV, "pair,bid,ask,ts\n\"A\"B,1,2,3\n",
                   "row 1, column \"pair\": unexpected character after a closing quote");
    check_next_err(&ticks, BULK_CSV, "pair,bid,ask,ts\nA,1,2,\"3\" \n",
                   "row 1, column \"ts\": unexpected character after a closing quote");
}

static void test_csv_bad_header(void **state)
{
    check_init_err(&ticks, BULK_CSV, "", "the CSV body has no header row");
    check_init_err(&ticks, BULK_CSV, "\r\n\n", "the CSV body has no header row");
    check_init_err(&ticks, BULK_CSV, "pair,bid,ask\nA,1,2\n", "CSV header: missing column \"ts\"");
    check_init_err(&ticks, BULK_CSV, "pair,bid,ask,ts,extra\n", "CSV header: unknown column \"extra\"");
    check_init_err(&ticks, BULK_CSV, "pair,bidd,ask,ts\n", "CSV header: unknown column \"bidd\"");
    check_init_err(&ticks, BULK_CSV, "pair,bid,ask,ts,\n", "CSV header: unknown column \"\"");
    check_init_err(&ticks, BULK_CSV, "pair,bid,Ask,ts\n", "CSV header: unknown column \"Ask\"");
    check_init_err(&ticks, BULK_CSV, " pair,bid,ask,ts\n", "CSV header: unknown column \" pair\"");
    check_init_err(&ticks, BULK_CSV, "pair,bid,pair,ask,ts\n", "CSV header: column \"pair\" appears twice");
    check_init_err(&ticks, BULK_CSV, "pair,bid,\"ask,ts\n", "CSV header: unterminated quoted field");
    check_init_err(&ticks, BULK_CSV, "pair,bid,\"ask\"x,ts\n",
                   "CSV header: unexpected character after a closing quote");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jansson_position),
        cmocka_unit_test(test_json_every_kind),
        cmocka_unit_test(test_json_escaping),
        cmocka_unit_test(test_json_null),
        cmocka_unit_test(test_json_whitespace),
        cmocka_unit_test(test_json_empty_array),
        cmocka_unit_test(test_json_not_an_array),
        cmocka_unit_test(test_json_element_not_object),
        cmocka_unit_test(test_json_unknown_and_missing),
        cmocka_unit_test(test_json_bad_value),
        cmocka_unit_test(test_json_truncated),
        cmocka_unit_test(test_json_trailing_garbage),
        cmocka_unit_test(test_json_batching),
        cmocka_unit_test(test_error_restores_out),
        cmocka_unit_test(test_json_large),
        cmocka_unit_test(test_fast_numbers_verbatim),
        cmocka_unit_test(test_fast_numbers_integer_columns),
        cmocka_unit_test(test_fast_wrong_kind),
        cmocka_unit_test(test_fast_string_escapes),
        cmocka_unit_test(test_fast_string_errors),
        cmocka_unit_test(test_fast_duplicate_keys),
        cmocka_unit_test(test_fast_nested_mixed),
        cmocka_unit_test(test_fast_whitespace_everywhere),
        cmocka_unit_test(test_fast_literals),
        cmocka_unit_test(test_ndjson),
        cmocka_unit_test(test_ndjson_errors),
        cmocka_unit_test(test_csv),
        cmocka_unit_test(test_csv_quoting),
        cmocka_unit_test(test_csv_null_and_empty),
        cmocka_unit_test(test_csv_types),
        cmocka_unit_test(test_csv_field_count),
        cmocka_unit_test(test_csv_bad_quotes),
        cmocka_unit_test(test_csv_bad_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
