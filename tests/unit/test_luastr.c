/* test_luastr.c — the Lua literals and comment lines of generated files: each text, whatever
 * bytes it holds, loads back in LuaJIT as exactly itself and runs nothing; readable texts are
 * written in long brackets of the lowest safe level. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "luasandbox.h"
#include "luastr.h"

/* Writes s as a comment line, then `return <luastr_text>, <luastr_quote>`; both values must
 * come back as s[0..len), and nothing else. */
static void roundtrip(const char *s, size_t len)
{
    struct buf chunk = BUF_INIT;
    luastr_comment(&chunk, s, len);
    buf_puts(&chunk, "return ");
    luastr_text(&chunk, s, len);
    buf_puts(&chunk, ", ");
    luastr_quote(&chunk, s, len);
    buf_putc(&chunk, '\n');
    char err[512];
    lua_State *L = sandbox_run(chunk.data, chunk.len, NULL, err, sizeof err);
    if (L == NULL) fail_msg("does not load: %s\n%s", err, chunk.data);
    assert_int_equal(lua_gettop(L), 2);
    for (int i = 1; i <= 2; i++) {
        size_t n;
        const char *got = lua_tolstring(L, i, &n);
        assert_int_equal(lua_type(L, i), LUA_TSTRING);
        if (n != len || memcmp(got, s, len) != 0) fail_msg("value %d differs:\n%s", i, chunk.data);
    }
    lua_close(L);
    buf_free(&chunk);
}

#define ROUNDTRIP(lit) roundtrip(lit, sizeof lit - 1)

/* luastr_text(s) is exactly want. */
static void text_is(const char *s, const char *want)
{
    struct buf b = BUF_INIT;
    luastr_text(&b, s, strlen(s));
    assert_string_equal(b.data, want);
    buf_free(&b);
    roundtrip(s, strlen(s));
}

static void test_long_brackets(void **state)
{
    text_is("SELECT 1", "[[SELECT 1]]");
    text_is("", "[[]]");
    text_is("SELECT a[1]", "[=[SELECT a[1]]=]"); /* a trailing ] would close [[ early */
    text_is("a]=", "[[a]=]]");                   /* ]= then ]] is not ]] before the end */
    text_is("x]] y", "[=[x]] y]=]");
    text_is("x]] ]=]", "[==[x]] ]=]]==]");
    text_is("x]=] y", "[[x]=] y]]");
    text_is("]]=", "[==[]]=]==]"); /* ends in ]=: the level-1 closer would finish it */
    text_is("a[[b", "[=[a[[b]=]"); /* Lua 5.1 refuses [[ inside [[...]] */
    text_is("SELECT 1\nFROM t", "[[\nSELECT 1\nFROM t]]");
    text_is("\nSELECT 1", "[[\n\nSELECT 1]]"); /* the lexer drops the opener's newline, not the text's */
    text_is("\n", "[[\n\n]]");
    text_is("a\tb", "[[a\tb]]");
    text_is("caf\xc3\xa9 \xff", "[[caf\xc3\xa9 \xff]]");
}

static void test_every_level_closed(void **state)
{
    /* ]], ]=], ... ]============]: the first free level is 13 */
    struct buf s = BUF_INIT;
    for (int level = 0; level <= 12; level++) {
        buf_putc(&s, ']');
        for (int i = 0; i < level; i++) buf_putc(&s, '=');
        buf_puts(&s, "] ");
    }
    struct buf b = BUF_INIT;
    luastr_text(&b, s.data, s.len);
    assert_memory_equal(b.data, "[=============[", 15);
    assert_int_equal(b.data[15], ']');
    roundtrip(s.data, s.len);
    /* the same, ending in ]============= (no closing bracket) */
    buf_puts(&s, "]=============");
    roundtrip(s.data, s.len);
    buf_free(&s);
    buf_free(&b);
}

static void test_quoted(void **state)
{
    struct buf b = BUF_INIT;
    luastr_quote(&b, "a\"b\\c\n\r\t\001\1779", 11); /* octal escapes end after 3 digits */
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\n\\r\\t\\001\\1279\"");
    buf_reset(&b);
    /* control bytes other than newline and tab, CR included, make luastr_text quote */
    luastr_text(&b, "a\r\nb", 4);
    assert_string_equal(b.data, "\"a\\r\\nb\"");
    buf_reset(&b);
    luastr_text(&b, "a\0001", 3);
    assert_string_equal(b.data, "\"a\\0001\"");
    buf_free(&b);

    ROUNDTRIP("a\r\nb");
    ROUNDTRIP("\r");
    ROUNDTRIP("\n\r");
    ROUNDTRIP("\r\nSELECT 1");
    ROUNDTRIP("a\0001");
    ROUNDTRIP("\0");
    ROUNDTRIP("\x1b[31mred\x1b[0m");
    ROUNDTRIP("\"\\\"");
    ROUNDTRIP("\\");
    ROUNDTRIP("\\\n");
    ROUNDTRIP("\x7f]]\x01");
}

static void test_comment(void **state)
{
    struct buf b = BUF_INIT;
    const char *why = "relation \"x\nos.execute()\r\n--\" does not exist\\";
    luastr_comment(&b, why, strlen(why));
    assert_string_equal(b.data, "-- relation \"x\\nos.execute()\\r\\n--\" does not exist\\\\\n");
    buf_reset(&b);
    luastr_comment(&b, "[[", 2); /* never right after the dashes: no long comment */
    assert_string_equal(b.data, "-- [[\n");
    buf_reset(&b);
    luastr_escape(&b, "a\nb", 3);
    assert_string_equal(b.data, "a\\nb");
    buf_free(&b);
}

static void test_hostile(void **state)
{
    /* the identifier planted through a temp table, as PostgreSQL's error quotes it */
    ROUNDTRIP("relation \"x\nos.execute([=[id > /tmp/pwned]=])\n--\" does not exist");
    ROUNDTRIP("SELECT * FROM \"x\nos.execute([=[id > /tmp/pwned]=])\n--\"");
    ROUNDTRIP("]]\nos.execute('id')\n--[[");
    ROUNDTRIP("]=]\nos.execute('id')\n--");
    ROUNDTRIP("\"\nos.execute('id')\n--\"");
    ROUNDTRIP("]");
    ROUNDTRIP("]=");
    ROUNDTRIP("]==");
    ROUNDTRIP("=]");
    ROUNDTRIP("[");
    ROUNDTRIP("[=[");
    ROUNDTRIP("--[[");
    /* a chunk that ran code would find no os: it fails, so round trips prove nothing ran */
    char err[256];
    lua_State *L = sandbox_run("os.execute('true')", strlen("os.execute('true')"), NULL, err, sizeof err);
    assert_null(L);
    assert_non_null(strstr(err, "os"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_long_brackets), cmocka_unit_test(test_every_level_closed),
        cmocka_unit_test(test_quoted),        cmocka_unit_test(test_comment),
        cmocka_unit_test(test_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
