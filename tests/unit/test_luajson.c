/* test_luajson.c — Lua values -> JSON within bounds: the text a handler answers (exact size
 * limit, depth limit, cycles), log fields (cut instead of refused), the jansson values of
 * sluice.db parameters, and JSON -> Lua. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "luajson.h"

static lua_State *L;

static int setup(void **state)
{
    L = luaL_newstate();
    luaL_openlibs(L);
    lua_pushlightuserdata(L, NULL);
    lua_setglobal(L, "null");
    return 0;
}

static int teardown(void **state)
{
    lua_close(L);
    return 0;
}

/* Runs "return <expr>" and leaves its value on the stack. */
static void eval(const char *chunk)
{
    if (luaL_dostring(L, chunk) != 0) fail_msg("lua: %s", lua_tostring(L, -1));
}

static const struct luajson_limits roomy = {1 << 20, 64, false};

/* The text of the value chunk returns, under lim; the status must be want. */
static void check_text(const char *chunk, const struct luajson_limits *lim, enum luajson_status want,
                       const char *text)
{
    int top = lua_gettop(L);
    eval(chunk);
    struct buf b = BUF_INIT;
    buf_puts(&b, "prefix:");
    enum luajson_status st = luajson_write(L, -1, &b, lim);
    if (st != want) fail_msg("%s: status %d, want %d", chunk, st, want);
    if (st != LUAJSON_OK) {
        assert_string_equal(b.data, "prefix:"); /* cut back to where it was */
    } else if (text != NULL && strcmp(b.data + 7, text) != 0) {
        fail_msg("%s: got [%s], want [%s]", chunk, b.data + 7, text);
    }
    buf_free(&b);
    lua_settop(L, top);
}

static void writes_values_as_json(void **state)
{
    check_text("return { a = 1 }", &roomy, LUAJSON_OK, "{\"a\":1}");
    check_text("return { 1, 'two', true, false, null }", &roomy, LUAJSON_OK, "[1,\"two\",true,false,null]");
    check_text("return {}", &roomy, LUAJSON_OK, "{}");
    check_text("return 'x\"\\\\\\n\\1'", &roomy, LUAJSON_OK, "\"x\\\"\\\\\\n\\u0001\"");
    check_text("return 'bad \\255 byte'", &roomy, LUAJSON_OK, "\"bad \xef\xbf\xbd byte\"");
    check_text("return print", &roomy, LUAJSON_OK, "\"function\"");
    check_text("return { [1.5] = 'x' }", &roomy, LUAJSON_OK, "{\"1.5\":\"x\"}");
    check_text("return { [true] = 'left out' }", &roomy, LUAJSON_OK, "{}");
    check_text("return nil", &roomy, LUAJSON_OK, "null");
}

/* Numbers read as jansson wrote them with JSON_REAL_PRECISION(15). */
static void writes_numbers_as_before(void **state)
{
    check_text("return 42", &roomy, LUAJSON_OK, "42");
    check_text("return -0.0", &roomy, LUAJSON_OK, "0");
    check_text("return 1.08", &roomy, LUAJSON_OK, "1.08");
    check_text("return 0.1 + 0.2", &roomy, LUAJSON_OK, "0.3");
    check_text("return 1e20", &roomy, LUAJSON_OK, "1e20");
    check_text("return 1.5e-7", &roomy, LUAJSON_OK, "1.5e-7");
    check_text("return 2^53", &roomy, LUAJSON_OK, "9.00719925474099e15");
    check_text("return 2^53 - 1", &roomy, LUAJSON_OK, "9007199254740991");
    check_text("return 0/0", &roomy, LUAJSON_OK, "null");
    check_text("return -1/0", &roomy, LUAJSON_OK, "null");
    double samples[] = {1.08, 3.14159, -2.5e-300, 1e300, 123456.789, 2.0e15 + 0.5};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        json_t *r = json_real(samples[i]);
        char *want = json_dumps(r, JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
        char chunk[64];
        snprintf(chunk, sizeof chunk, "return %.17g", samples[i]);
        check_text(chunk, &roomy, LUAJSON_OK, want);
        free(want);
        json_decref(r);
    }
}

/* The limit is the exact size of the text, escapes included. */
static void size_limit_is_exact(void **state)
{
    struct luajson_limits six = {6, 64, false}, five = {5, 64, false};
    check_text("return { 'ab' }", &six, LUAJSON_OK, "[\"ab\"]");
    check_text("return { 'ab' }", &five, LUAJSON_TOO_LARGE, NULL);
    struct luajson_limits at = {62, 64, false}, below = {61, 64, false};
    check_text("return string.rep('\\1', 10)", &at, LUAJSON_OK, NULL);
    check_text("return string.rep('\\1', 10)", &below, LUAJSON_TOO_LARGE, NULL);
    struct luajson_limits num = {3, 64, false};
    check_text("return 1234", &num, LUAJSON_TOO_LARGE, NULL);
    check_text("return { a = 1 }", &(struct luajson_limits){6, 64, false}, LUAJSON_TOO_LARGE, NULL);
    check_text("return { a = 1 }", &(struct luajson_limits){7, 64, false}, LUAJSON_OK, "{\"a\":1}");

    /* a value that ends at the limit, then a ',' past it: the next string is refused unwritten */
    struct buf b = BUF_INIT;
    eval("return { 'ab', string.rep('x', 1000000) }");
    assert_int_equal(luajson_write(L, -1, &b, &five), LUAJSON_TOO_LARGE);
    lua_pop(L, 1);
    assert_true(b.cap < 4096);
    buf_free(&b);
}

/* The two attacks: one big string referred to many times, and shared references that double
 * the text at each level. Both stop at the limit, fast, with the buffer near the limit. */
static void repeated_references_stop_at_the_limit(void **state)
{
    struct luajson_limits lim = {1 << 20, 64, false};
    const char *chunks[] = {
        "local s = string.rep('x', 65536); local t = {}; for i = 1, 300 do t[i] = s end; return t",
        "local t = { 'leaf' }; for i = 1, 40 do t = { t, t } end; return t",
        "local t = { 1 }; for i = 1, 40 do t = { a = t, b = t } end; return t",
        "local t = {}; for i = 1, 300000 do t[i] = i end; return t",
    };
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
        clock_t t0 = clock();
        struct buf b = BUF_INIT;
        eval(chunks[i]);
        assert_int_equal(luajson_write(L, -1, &b, &lim), LUAJSON_TOO_LARGE);
        lua_pop(L, 1);
        assert_int_equal(b.len, 0);
        assert_true(b.cap <= 2 * lim.max_bytes + 4096);
        buf_free(&b);
        double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
        if (secs > 2.0) fail_msg("%s took %.2f s", chunks[i], secs);
    }
}

static void depth_and_cycles_are_bounded(void **state)
{
    struct luajson_limits lim = {1 << 20, 64, false};
    check_text("local t = 1; for i = 1, 64 do t = { t } end; return t", &lim, LUAJSON_OK, NULL);
    check_text("local t = 1; for i = 1, 65 do t = { t } end; return t", &lim, LUAJSON_TOO_DEEP, NULL);
    check_text("local t = {}; t.self = t; return t", &lim, LUAJSON_CYCLE, NULL);
    check_text("local a, b = {}, {}; a[1] = b; b[1] = a; return a", &lim, LUAJSON_CYCLE, NULL);
    check_text("local a = {}; local t = { a, a, { a } }; return t", &lim, LUAJSON_OK, "[{},{},[{}]]");
    struct luajson_limits huge = {1 << 20, 100000, false}; /* clamped to LUAJSON_MAX_DEPTH */
    check_text("local t = 1; for i = 1, 300 do t = { t } end; return t", &huge, LUAJSON_TOO_DEEP, NULL);
}

/* Log fields: too deep or cyclic is "...", too large still fails. */
static void cut_mode_writes_an_ellipsis(void **state)
{
    struct luajson_limits lim = {1 << 16, 2, true};
    check_text("return { a = { b = { c = 1 } } }", &lim, LUAJSON_OK, "{\"a\":{\"b\":\"...\"}}");
    check_text("local t = {}; t[1] = t; return t", &lim, LUAJSON_OK, "[[\"...\"]]");
    check_text("return string.rep('x', 70000)", &lim, LUAJSON_TOO_LARGE, NULL);
}

static void arrays_from_json_stay_arrays(void **state)
{
    json_t *v = json_loads("{\"a\":[],\"b\":[1,{\"c\":null}]}", 0, NULL);
    luajson_push(L, v);
    json_decref(v);
    struct buf b = BUF_INIT;
    assert_int_equal(luajson_write(L, -1, &b, &roomy), LUAJSON_OK);
    lua_pop(L, 1);
    /* key order is the Lua table's */
    assert_true(strstr(b.data, "\"a\":[]") != NULL);
    assert_true(strstr(b.data, "\"b\":[1,{\"c\":null}]") != NULL);
    buf_free(&b);
}

static void from_lua_builds_bounded_values(void **state)
{
    enum luajson_status st;
    int top = lua_gettop(L);
    eval("return { pair = 'EURUSD', n = 3, r = 1.5, ids = { 1, 2 }, none = null }");
    json_t *v = luajson_from_lua(L, -1, &roomy, &st);
    assert_int_equal(st, LUAJSON_OK);
    assert_string_equal(json_string_value(json_object_get(v, "pair")), "EURUSD");
    assert_true(json_is_integer(json_object_get(v, "n")));
    assert_true(json_is_real(json_object_get(v, "r")));
    assert_int_equal(json_array_size(json_object_get(v, "ids")), 2);
    assert_true(json_is_null(json_object_get(v, "none")));
    json_decref(v);
    lua_settop(L, top);

    /* many small values: each counts 64 bytes, so 100 000 of them pass 1 MiB */
    eval("local t = {}; for i = 1, 100000 do t[i] = i end; return t");
    assert_null(luajson_from_lua(L, -1, &roomy, &st));
    assert_int_equal(st, LUAJSON_TOO_LARGE);
    lua_settop(L, top);
    eval("local t = { 'leaf' }; for i = 1, 40 do t = { t, t } end; return t");
    assert_null(luajson_from_lua(L, -1, &roomy, &st));
    assert_int_equal(st, LUAJSON_TOO_LARGE);
    lua_settop(L, top);
    eval("local t = {}; t.x = { y = t }; return t");
    assert_null(luajson_from_lua(L, -1, &roomy, &st));
    assert_int_equal(st, LUAJSON_CYCLE);
    lua_settop(L, top);
    eval("local t = 1; for i = 1, 65 do t = { t } end; return t");
    assert_null(luajson_from_lua(L, -1, &roomy, &st));
    assert_int_equal(st, LUAJSON_TOO_DEEP);
    lua_settop(L, top);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(writes_values_as_json),
        cmocka_unit_test(writes_numbers_as_before),
        cmocka_unit_test(size_limit_is_exact),
        cmocka_unit_test(repeated_references_stop_at_the_limit),
        cmocka_unit_test(depth_and_cycles_are_bounded),
        cmocka_unit_test(cut_mode_writes_an_ellipsis),
        cmocka_unit_test(arrays_from_json_stay_arrays),
        cmocka_unit_test(from_lua_builds_bounded_values),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
