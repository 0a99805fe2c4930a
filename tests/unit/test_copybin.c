/* test_copybin.c — COPY text lines as binary tuples. Spellings outside the converted forms are
 * refused (they go as text); against the real test database (SLUICE_TEST_DSN; those cases are
 * skipped without one), the same lines loaded in the binary and in the text format store the
 * same values, for fixed edge cases and thousands of random numerics and timestamps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "copybin.h"
#include "pgtype.h"

static bool converts(Oid type, const char *value)
{
    struct buf out = BUF_INIT;
    int rc = copybin_row(value, strlen(value), &type, 1, &out);
    assert_int_equal(out.len, rc == 0 ? out.len : 0); /* refused: nothing appended */
    buf_free(&out);
    return rc == 0;
}

static void only_plain_spellings_convert(void **state)
{
    (void)state;
    assert_true(converts(PGT_INT4, "-2147483648"));
    assert_true(converts(PGT_INT4, "007"));
    assert_false(converts(PGT_INT4, "2147483648"));
    assert_false(converts(PGT_INT4, " 5"));
    assert_false(converts(PGT_INT4, "+5"));
    assert_false(converts(PGT_INT4, "1e3"));
    assert_false(converts(PGT_INT2, "32768"));
    assert_true(converts(PGT_INT8, "-9223372036854775808"));
    assert_false(converts(PGT_INT8, "9223372036854775808"));
    assert_true(converts(PGT_BOOL, "t"));
    assert_true(converts(PGT_BOOL, "false"));
    assert_false(converts(PGT_BOOL, "yes"));
    assert_true(converts(PGT_NUMERIC, "-0.000"));
    assert_true(converts(PGT_NUMERIC, "1.5e-7"));
    assert_false(converts(PGT_NUMERIC, ".5"));
    assert_false(converts(PGT_NUMERIC, "5."));
    assert_false(converts(PGT_NUMERIC, "NaN"));
    assert_false(converts(PGT_NUMERIC, "1e1001"));
    assert_false(converts(PGT_FLOAT8, "1e400"));
    assert_false(converts(PGT_FLOAT8, "Infinity"));
    assert_false(converts(PGT_FLOAT4, "1e39"));
    assert_true(converts(PGT_TIMESTAMPTZ, "2026-01-05T00:01:40.000Z"));
    assert_true(converts(PGT_TIMESTAMPTZ, "2026-01-05 00:01:40+05:30"));
    assert_true(converts(PGT_TIMESTAMPTZ, "2026-01-05 00:01:40-0330"));
    assert_false(converts(PGT_TIMESTAMPTZ, "2026-01-05 00:01:40")); /* the session's zone */
    assert_false(converts(PGT_TIMESTAMPTZ, "2026-01-05 00:01:40+05:"));
    assert_false(converts(PGT_TIMESTAMPTZ, "2026-01-05 00:01:40 Europe/Paris"));
    assert_false(converts(PGT_TIMESTAMPTZ, "2026-01-05 00:01:40.1234567Z"));
    assert_false(converts(PGT_TIMESTAMP, "2026-01-05 24:00:00"));
    assert_false(converts(PGT_TIMESTAMP, "2026-01-05 23:59:60"));
    assert_false(converts(PGT_TIMESTAMP, "2026-01-05 10:00:00Z")); /* the input ignores it */
    assert_false(converts(PGT_DATE, "2025-02-29"));
    assert_true(converts(PGT_DATE, "2024-02-29"));
    assert_false(converts(PGT_DATE, "epoch"));
    assert_true(converts(PGT_UUID, "A0EEBC99-9c0b-4ef8-bb6d-6bb9bd380a11"));
    assert_false(converts(PGT_UUID, "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}"));
    assert_false(converts(PGT_NUMERIC, "1\\t"));
    assert_true(converts(PGT_TEXT, "a\\tb\\\\c"));
    assert_false(converts(PGT_TEXT, "a\\x41")); /* an escape the writer never makes */
    assert_true(converts(PGT_NUMERIC, "\\N"));
    Oid two[2] = {PGT_INT4, PGT_INT4};
    struct buf out = BUF_INIT;
    assert_int_equal(copybin_row("1", 1, two, 2, &out), -1);
    assert_int_equal(copybin_row("1\t2\t3", 5, two, 2, &out), -1);
    assert_int_equal(copybin_row("1\t2", 3, two, 2, &out), 0);
    buf_free(&out);
}

/* ---- against the server ---- */

#define COLUMNS                                                                                              \
    "id int4, n numeric, n5 numeric(12,5), f8 float8, f4 float4, i2 int2, i8 int8, b bool, t text, "         \
    "vc varchar(8), bp char(3), j jsonb, js json, d date, ts timestamp, tz timestamptz, u uuid"
static const Oid types[] = {PGT_INT4, PGT_NUMERIC, PGT_NUMERIC,   PGT_FLOAT8,      PGT_FLOAT4, PGT_INT2,
                            PGT_INT8, PGT_BOOL,    PGT_TEXT,      PGT_VARCHAR,     PGT_BPCHAR, PGT_JSONB,
                            PGT_JSON, PGT_DATE,    PGT_TIMESTAMP, PGT_TIMESTAMPTZ, PGT_UUID};
#define NCOLS ((int)(sizeof types / sizeof types[0]))

static PGconn *db;

static void exec_ok(const char *sql)
{
    PGresult *r = PQexec(db, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(db));
    PQclear(r);
}

static void copy_in(const char *sql, const struct buf *data)
{
    PGresult *r = PQexec(db, sql);
    assert_int_equal(PQresultStatus(r), PGRES_COPY_IN);
    PQclear(r);
    assert_int_equal(PQputCopyData(db, data->data, (int)data->len), 1);
    assert_int_equal(PQputCopyEnd(db, NULL), 1);
    r = PQgetResult(db);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) fail_msg("%s: %s", sql, PQerrorMessage(db));
    PQclear(r);
    while ((r = PQgetResult(db)) != NULL) PQclear(r);
}

static long scalar(const char *sql)
{
    PGresult *r = PQexec(db, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) fail_msg("%s: %s", sql, PQerrorMessage(db));
    long v = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

static const char *fixed[] = {
    "0",
    "1",
    "-1",
    "0.000",
    "-0.0",
    "1.16582",
    "123456.5",
    "1e5",
    "1.5e-7",
    "-12.3400",
    "99999999.99999",
    "0.00001",
    "10000",
    "9999.9999",
    "1E+3",
    "100000000000000000000000000000.1",
};
static const char *times[] = {
    "2026-01-05T00:01:40.000Z",      "2000-01-01 00:00:00Z",
    "1999-12-31 23:59:59.999999+00", "0001-01-01 00:00:00Z",
    "9999-12-31 23:59:59.5-14:00",   "1970-01-01T00:00:00+05:30",
    "2024-02-29 12:00:00.1-0330",    "1900-03-01 01:02:03.000001+1400",
};

/* A random plain number: up to 30 digits, a point somewhere, sometimes an exponent. */
static void random_number(char *s, size_t n)
{
    int nd = 1 + rand() % 30, pt = rand() % (nd + 1), k = 0;
    if (rand() % 3 == 0) s[k++] = '-';
    for (int i = 0; i < nd; i++) {
        if (i == pt && i > 0) s[k++] = '.';
        s[k++] = (char)('0' + (i == 0 && rand() % 4 ? 1 + rand() % 9 : rand() % 10));
    }
    if (rand() % 4 == 0) k += snprintf(s + k, n - (size_t)k, "e%d", rand() % 41 - 20);
    s[k] = '\0';
}

static void random_time(char *s, size_t n)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y = 1 + rand() % 9999, m = 1 + rand() % 12;
    bool leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    int d = 1 + rand() % (mdays[m - 1] + (m == 2 && leap));
    int k = snprintf(s, n, "%04d-%02d-%02d%c%02d:%02d:%02d", y, m, d, rand() % 2 ? 'T' : ' ', rand() % 24,
                     rand() % 60, rand() % 60);
    if (rand() % 2) k += snprintf(s + k, n - (size_t)k, ".%0*d", 1 + rand() % 6, rand() % 10);
    if (rand() % 3 == 0)
        snprintf(s + k, n - (size_t)k, "Z");
    else
        snprintf(s + k, n - (size_t)k, "%c%02d:%02d", rand() % 2 ? '+' : '-', rand() % 15, rand() % 60);
}

static void binary_and_text_store_the_same(void **state)
{
    (void)state;
    if (db == NULL) skip();
    exec_ok("DROP TABLE IF EXISTS copybin_b, copybin_t");
    exec_ok("CREATE TABLE copybin_b (" COLUMNS ")");
    exec_ok("CREATE TABLE copybin_t (" COLUMNS ")");
    struct buf text = BUF_INIT, bin = BUF_INIT;
    copybin_header(&bin);
    srand(7);
    int rows = 3000;
    for (int id = 1; id <= rows; id++) {
        char num[64], t1[64], t2[64];
        random_number(num, sizeof num);
        random_time(t1, sizeof t1);
        const char *fx = fixed[id % (sizeof fixed / sizeof fixed[0])];
        const char *tm = times[id % (sizeof times / sizeof times[0])];
        snprintf(t2, sizeof t2, "%.19s", id % 2 ? t1 : tm); /* a timestamp without its zone */
        size_t at = text.len;
        buf_printf(&text, "%d\t%s\t%s\t%s\t%s\t%d\t%lld\t%s\t%s\t%s\t%s\t%s\t%s\t%.10s\t%s\t%s\t%s\n", id,
                   id % 2 ? num : fx, id % 7 == 0 ? "\\N" : "-12345.678915", id % 2 ? num : "0.1",
                   id % 3 ? fx : "1e-5", id % 32768 - 16384, (long long)id * 1000003LL * (id % 2 ? -1 : 1),
                   id % 2 ? "t" : "false", id % 5 ? "quote \\t tab\\\\ü" : "", id % 2 ? "abc" : "abc\\n", "x",
                   "{\"a\": [1, 2.50]}", "{\"b\" : 1}", t1, t2, id % 3 ? t1 : tm,
                   "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
        const char *line = text.data + at;
        if (copybin_row(line, text.len - at - 1, types, NCOLS, &bin) != 0)
            fail_msg("not converted: %s", line);
    }
    copybin_trailer(&bin);
    copy_in("COPY copybin_b FROM STDIN (FORMAT binary)", &bin);
    copy_in("COPY copybin_t FROM STDIN", &text);
    assert_int_equal(scalar("SELECT count(*) FROM copybin_b"), rows);
    long same =
        scalar("SELECT count(*) FROM copybin_b x JOIN copybin_t y USING (id) WHERE x::text = y::text");
    if (same != rows) {
        PGresult *r = PQexec(db, "SELECT x::text, y::text FROM copybin_b x JOIN copybin_t y USING (id) "
                                 "WHERE x::text <> y::text LIMIT 1");
        fail_msg("%ld of %d rows differ, e.g.\n binary %s\n text   %s", rows - same, rows,
                 PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
    }
    exec_ok("DROP TABLE copybin_b, copybin_t");
    buf_free(&text);
    buf_free(&bin);
}

/* Edge values, a column at a time: those that convert are stored alike both ways. */
struct edge {
    const char *column; /* SQL type */
    Oid type;
    const char *values[10]; /* COPY text fields, NULL-terminated */
};
static const struct edge edges[] = {
    {"int2", PGT_INT2, {"32767", "-32768", "-0", "0"}},
    {"int4", PGT_INT4, {"2147483647", "-2147483648"}},
    {"int8", PGT_INT8, {"9223372036854775807", "-9223372036854775808"}},
    {"float8",
     PGT_FLOAT8,
     {"-0", "1e308", "2.2250738585072014e-308", "0.1", "-1.5e-300", "123456789012345678"}},
    {"float4", PGT_FLOAT4, {"-0", "3.4028235e38", "1.17549435e-38", "0.1", "16777217"}},
    {"numeric",
     PGT_NUMERIC,
     {"1e1000", "1e-1000", "-0.000000000000000000000000000001", "-99999999999999999999999999999999999999",
      "0.5e-1000",
      "123456789012345678901234567890123456789012345678901234567890.123456789012345678901234567890"}},
    {"date", PGT_DATE, {"1600-02-29", "2000-02-29", "1900-02-28", "0001-01-01", "9999-12-31"}},
    {"timestamp",
     PGT_TIMESTAMP,
     {"1600-02-29 12:00:00", "2000-02-29 23:59:59.999999", "0001-01-01T00:00:00"}},
    {"timestamptz",
     PGT_TIMESTAMPTZ,
     {"9999-12-31T23:59:59-14", "2026-01-05 00:01:40+05", "2026-01-05 00:01:40-00:00",
      "2026-01-05 00:01:40.5Z", "2000-02-29T23:59:59.999999+14:00", "1600-02-29 00:00:00Z",
      "0001-01-01 00:00:00+14"}},
    {"char(3)", PGT_BPCHAR, {"x  ", "ab", "abc", ""}},
    {"varchar(8)", PGT_VARCHAR, {"12345678", "\\\\\\t\\n"}},
    {"jsonb", PGT_JSONB, {"{\"a\\\\\"b\": \"\\\\u00e9\"}", "[]", "\"\""}},
    {"json", PGT_JSON, {"{\"a\\\\\"b\": \"\\\\u00e9\"}", " 1 "}},
    {"uuid", PGT_UUID, {"00000000-0000-0000-0000-000000000000", "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"}},
    {"bool", PGT_BOOL, {"t", "f", "true", "false"}},
};

static void edge_values_store_the_same(void **state)
{
    (void)state;
    if (db == NULL) skip();
    for (size_t e = 0; e < sizeof edges / sizeof edges[0]; e++) {
        const struct edge *eg = &edges[e];
        char sql[160];
        exec_ok("DROP TABLE IF EXISTS copybin_eb, copybin_et");
        snprintf(sql, sizeof sql, "CREATE TABLE copybin_eb (id int4, v %s)", eg->column);
        exec_ok(sql);
        snprintf(sql, sizeof sql, "CREATE TABLE copybin_et (id int4, v %s)", eg->column);
        exec_ok(sql);
        const Oid two[2] = {PGT_INT4, eg->type};
        struct buf text = BUF_INIT, bin = BUF_INIT;
        copybin_header(&bin);
        int converted = 0;
        for (int i = 0; i < 10 && eg->values[i] != NULL; i++) {
            size_t at = text.len;
            buf_printf(&text, "%d\t%s\n", i, eg->values[i]);
            if (copybin_row(text.data + at, text.len - at - 1, two, 2, &bin) == 0) {
                converted++;
            } else {
                text.len = at; /* only the converted rows are compared */
                buf_terminate(&text);
            }
        }
        copybin_trailer(&bin);
        copy_in("COPY copybin_eb FROM STDIN (FORMAT binary)", &bin);
        copy_in("COPY copybin_et FROM STDIN", &text);
        long same = scalar("SELECT count(*) FROM copybin_eb x JOIN copybin_et y USING (id) "
                           "WHERE x.v::text IS NOT DISTINCT FROM y.v::text");
        if (same != converted) {
            PGresult *r =
                PQexec(db, "SELECT x.v::text, y.v::text FROM copybin_eb x JOIN copybin_et y USING (id) "
                           "WHERE x.v::text IS DISTINCT FROM y.v::text LIMIT 1");
            fail_msg("%s: %ld of %d differ, e.g. binary %s, text %s", eg->column, converted - same, converted,
                     PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
        }
        assert_true(converted > 0);
        buf_free(&text);
        buf_free(&bin);
    }
    exec_ok("DROP TABLE copybin_eb, copybin_et");
}

int main(void)
{
    const char *dsn = getenv("SLUICE_TEST_DSN");
    if (dsn && *dsn) {
        db = PQconnectdb(dsn);
        if (PQstatus(db) != CONNECTION_OK) {
            PQfinish(db);
            db = NULL;
        }
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(only_plain_spellings_convert),
        cmocka_unit_test(binary_and_text_store_the_same),
        cmocka_unit_test(edge_values_store_the_same),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (db) PQfinish(db);
    return rc;
}
