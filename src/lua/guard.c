/* guard.c — an uncatchable stop for runaway Lua. The flag is per worker thread: one Lua function
 * runs at a time on a worker. */
#include "guard.h"

#include <lauxlib.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "util.h"

static __thread bool tripped;
static __thread char stop_message[160];

void guard_arm(void)
{
    tripped = false;
}

int guard_trip(lua_State *L, const char *message)
{
    tripped = true;
    snprintf(stop_message, sizeof stop_message, "%s", message);
    return luaL_error(L, "%s", message);
}

/* The limit of the innermost guard_pcall running on this thread. */
static __thread uint64_t limit_deadline_ms;
static __thread const char *limit_message;

static void on_limit(lua_State *L, lua_Debug *ar)
{
    /* Raises again at every count after the first: the function never gets back in control. */
    if (now_ms() > limit_deadline_ms) guard_trip(L, limit_message);
}

/* Instructions between two looks at the clock: a few microseconds of work. */
#define LIMIT_HOOK_EVERY 1000

int guard_pcall(lua_State *L, int nargs, int nresults, unsigned limit_ms, const char *message)
{
    lua_Hook hook = lua_gethook(L);
    int mask = lua_gethookmask(L), count = lua_gethookcount(L);
    uint64_t deadline = limit_deadline_ms;
    const char *msg = limit_message;
    bool was_tripped = tripped;
    char was_message[sizeof stop_message];
    memcpy(was_message, stop_message, sizeof stop_message);

    limit_deadline_ms = now_ms() + limit_ms;
    limit_message = message;
    tripped = false;
    lua_sethook(L, on_limit, LUA_MASKCOUNT, LIMIT_HOOK_EVERY);
    int rc = lua_pcall(L, nargs, nresults, 0);
    lua_sethook(L, hook, mask, count);

    limit_deadline_ms = deadline;
    limit_message = msg;
    tripped = was_tripped;
    memcpy(stop_message, was_message, sizeof stop_message);
    return rc;
}

/* sluice._stopped() -> message | nil */
static int l_stopped(lua_State *L)
{
    if (!tripped) return 0;
    lua_pushstring(L, stop_message);
    return 1;
}

static const char GUARD_LUA[] = "local stopped, pcall0, xpcall0, resume0, unpack, select = ...\n"
                                "local function check(...)\n"
                                "  local m = stopped()\n"
                                "  if m then error(m, 0) end\n"
                                "  return ...\n"
                                "end\n"
                                "pcall = function(...) return check(pcall0(...)) end\n"
                                "xpcall = function(...) return check(xpcall0(...)) end\n"
                                "coroutine.resume = function(...) return check(resume0(...)) end\n";

void guard_install(lua_State *L)
{
    if (luaL_loadbuffer(L, GUARD_LUA, sizeof GUARD_LUA - 1, "=guard") != 0) {
        lua_pop(L, 1);
        return;
    }
    lua_pushcfunction(L, l_stopped);
    lua_getglobal(L, "pcall");
    lua_getglobal(L, "xpcall");
    lua_getglobal(L, "coroutine");
    lua_getfield(L, -1, "resume");
    lua_remove(L, -2);
    lua_getglobal(L, "unpack");
    lua_getglobal(L, "select");
    if (lua_pcall(L, 6, 0, 0) != 0) lua_pop(L, 1);
}
