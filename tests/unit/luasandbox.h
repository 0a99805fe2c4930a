/* luasandbox.h — for the unit tests of generated Lua (test_luastr, test_import): runs a chunk in
 * a fresh LuaJIT state with no library opened, the JIT off and a small instruction budget, so a
 * chunk can call nothing it was not given and cannot loop. Header-only; include it once. */
#ifndef SLUICE_TEST_LUASANDBOX_H
#define SLUICE_TEST_LUASANDBOX_H

#include <stdio.h>

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>

static void sandbox_on_count(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    luaL_error(L, "instruction budget spent");
}

/* Runs prelude (Lua source, or NULL) and then chunk[0..len) in a new state. Returns the state
 * (lua_close it) with the chunk's results on its stack, or NULL with the error in err. */
static lua_State *sandbox_run(const char *chunk, size_t len, const char *prelude, char *err, size_t errlen)
{
    lua_State *L = luaL_newstate();
    if (L == NULL) {
        snprintf(err, errlen, "no memory");
        return NULL;
    }
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    if (prelude && (luaL_loadstring(L, prelude) != 0 || lua_pcall(L, 0, 0, 0) != 0)) {
        snprintf(err, errlen, "prelude: %s", lua_tostring(L, -1));
        lua_close(L);
        return NULL;
    }
    lua_sethook(L, sandbox_on_count, LUA_MASKCOUNT, 100000);
    if (luaL_loadbuffer(L, chunk, len, "=generated") != 0 || lua_pcall(L, 0, LUA_MULTRET, 0) != 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        lua_close(L);
        return NULL;
    }
    return L;
}

#endif
