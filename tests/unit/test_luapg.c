/* test_luapg.c — a handler sees a result with the type mapping of the HTTP answer: the Lua value
 * luapg pushes, written back as JSON, equals what pgjson writes for the same result. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <lauxlib.h>
#include <string.h>

#include "buf.h"
#include "luajson.h"
#include "luapg.h"
#include "pgjson.h"
#include "pgtype.h"

struct column {
    const char *name;
    Oid type;
    const char *value; /* NULL: SQL NULL */
};

/* A one-row result with the given columns (text format), built without a server. */
static PGresult *result_of(const struct column *cols, int n)
{
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc attrs[16];
    memset(attrs, 0, sizeof attrs);
    for (int i = 0; i < n; i++) {
        attrs[i].name = (char *)cols[i].name;
        attrs[i].typid = cols[i].type;
        attrs[i].typlen = -1;
        attrs[i].atttypmod = -1;
    }
    assert_int_equal(PQsetResultAttrs(r, n, attrs), 1);
    for (int i = 0; i < n; i++)
        assert_int_equal(
            PQsetvalue(r, 0, i, (char *)cols[i].value, cols[i].value ? (int)strlen(cols[i].value) : -1), 1);
    return r;
}

/* The same JSON value, whatever the spelling of its numbers. */
static void assert_same_json(const char *a, const char *b)
{
    json_t *x = json_loads(a, JSON_DECODE_ANY, NULL), *y = json_loads(b, JSON_DECODE_ANY, NULL);
    assert_non_null(x);
    assert_non_null(y);
    if (!json_equal(x, y)) fail_msg("\n  lua:  %s\n  http: %s", a, b);
    json_decref(x);
    json_decref(y);
}

static void check(const struct column *cols, int n)
{
    PGresult *r = result_of(cols, n);
    lua_State *L = luaL_newstate();
    struct buf http = BUF_INIT, lua = BUF_INIT;
    struct luajson_limits lim = {.max_bytes = 1 << 20, .max_depth = 64};

    pgjson_result(&http, r);
    luapg_push_result(L, r);
    assert_int_equal(luajson_write(L, -1, &lua, &lim), LUAJSON_OK);
    assert_same_json(lua.data, http.data);

    buf_reset(&http);
    buf_reset(&lua);
    pgjson_row(&http, r, 0);
    luapg_push_row(L, r, 0);
    assert_int_equal(luajson_write(L, -1, &lua, &lim), LUAJSON_OK);
    assert_same_json(lua.data, http.data);

    buf_free(&http);
    buf_free(&lua);
    lua_close(L);
    PQclear(r);
}

static void numbers_keep_the_http_mapping(void **state)
{
    const struct column cols[] = {
        {"i", PGT_INT4, "42"},
        {"small", PGT_INT8, "-9007199254740991"},
        {"big", PGT_INT8, "9007199254740993"}, /* past 2^53: a string, as over HTTP */
        {"price", PGT_NUMERIC, "1.08200"},
        {"exact", PGT_NUMERIC, "0.1234567890123456789"}, /* more than 15 digits: a string */
        {"f", PGT_FLOAT8, "1.5"},
        {"nan", PGT_FLOAT8, "NaN"},
        {"inf", PGT_FLOAT4, "-Infinity"},
    };
    check(cols, (int)(sizeof cols / sizeof cols[0]));
}

static void other_types_keep_the_http_mapping(void **state)
{
    const struct column cols[] = {
        {"yes", PGT_BOOL, "t"},
        {"no", PGT_BOOL, "f"},
        {"doc", PGT_JSONB, "{\"a\": [1, 2.5, null, \"x\"], \"b\": {}}"},
        {"list", 1007 /* int4[] */, "{1,NULL,3}"},
        {"names", 1009 /* text[] */, "{\"a b\",c}"},
        {"ts", PGT_TIMESTAMPTZ, "2024-01-02 03:04:05+00"},
        {"raw", PGT_BYTEA, "\\x00ff10"},
        {"text", PGT_TEXT, "quote \" and \\ and \xc3\xa9"},
        {"gone", PGT_TEXT, NULL},
        {"empty", PGT_JSON, "[]"},
    };
    check(cols, (int)(sizeof cols / sizeof cols[0]));
}

static void a_statement_without_rows_counts_affected(void **state)
{
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_COMMAND_OK);
    lua_State *L = luaL_newstate();
    luapg_push_result(L, r);
    lua_getfield(L, -1, "row_count");
    assert_int_equal(lua_tointeger(L, -1), 0);
    lua_pop(L, 1);
    lua_getfield(L, -1, "rows");
    assert_true(lua_istable(L, -1));
    assert_int_equal(lua_objlen(L, -1), 0);
    struct buf out = BUF_INIT;
    struct luajson_limits lim = {.max_bytes = 1024, .max_depth = 8};
    assert_int_equal(luajson_write(L, -1, &out, &lim), LUAJSON_OK);
    assert_string_equal(out.data, "[]"); /* an empty rows list stays an array */
    buf_free(&out);
    lua_close(L);
    PQclear(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(numbers_keep_the_http_mapping),
        cmocka_unit_test(other_types_keep_the_http_mapping),
        cmocka_unit_test(a_statement_without_rows_counts_affected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
