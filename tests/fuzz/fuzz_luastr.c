/* fuzz_luastr.c — libFuzzer target: arbitrary bytes through luastr (the literals and comment
 * lines of the Lua files `sluice import` and `sluice new` write). The input is written as a
 * comment line and as both literals, `return <luastr_text>, <luastr_quote>`; the chunk must load
 * in a fresh LuaJIT state that has no library at all (so injected code can call nothing), run
 * within a few instructions, and return exactly two values, each the input byte for byte. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>

#include "luastr.h"

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "fuzz_luastr: check failed: %s (line %d)\n", #cond, __LINE__);                   \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

/* `return a, b` is a handful of instructions; a loop or call smuggled in would run far more. */
static void on_count(lua_State *L, lua_Debug *ar)
{
    luaL_error(L, "instruction budget spent");
}

static void check_value(lua_State *L, int idx, const uint8_t *data, size_t size)
{
    size_t n = 0;
    CHECK(lua_type(L, idx) == LUA_TSTRING);
    const char *got = lua_tolstring(L, idx, &n);
    CHECK(n == size);
    CHECK(size == 0 || memcmp(got, data, size) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    struct buf chunk = BUF_INIT;

    luastr_comment(&chunk, s, size);
    /* the comment is one line: its only line break ends it */
    CHECK(chunk.len >= 4 && memcmp(chunk.data, "-- ", 3) == 0);
    CHECK(memchr(chunk.data, '\n', chunk.len) == chunk.data + chunk.len - 1);
    CHECK(memchr(chunk.data, '\r', chunk.len) == NULL);

    buf_puts(&chunk, "return ");
    luastr_text(&chunk, s, size);
    buf_puts(&chunk, ", ");
    size_t quoted_at = chunk.len;
    luastr_quote(&chunk, s, size);
    /* a quoted literal never holds a line break or another control byte */
    for (size_t i = quoted_at; i < chunk.len; i++)
        CHECK((unsigned char)chunk.data[i] >= 0x20 && (unsigned char)chunk.data[i] != 0x7f);
    buf_putc(&chunk, '\n');

    lua_State *L = luaL_newstate();
    CHECK(L != NULL);
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF); /* so the count hook sees every step */
    lua_sethook(L, on_count, LUA_MASKCOUNT, 1000);
    if (luaL_loadbuffer(L, chunk.data, chunk.len, "=luastr") != 0 || lua_pcall(L, 0, LUA_MULTRET, 0) != 0) {
        fprintf(stderr, "fuzz_luastr: %s\n--- chunk:\n%s\n---\n", lua_tostring(L, -1), chunk.data);
        CHECK(!"the chunk loads and runs");
    }
    CHECK(lua_gettop(L) == 2);
    check_value(L, 1, data, size);
    check_value(L, 2, data, size);
    lua_close(L);
    buf_free(&chunk);
    return 0;
}
