/* guard.h — makes the stop of a runaway Lua function (a count hook that raises once a time limit
 * passed) impossible to swallow: pcall, xpcall and coroutine.resume re-raise it while it stands. */
#ifndef SLUICE_GUARD_H
#define SLUICE_GUARD_H

#include <lua.h>

/* Wraps pcall, xpcall and coroutine.resume in L (call before the scripts run). */
void guard_install(lua_State *L);
/* Before running Lua for a request: no stop stands. */
void guard_arm(void);
/* From a count hook: the running function is over its limit; raises the stop error. */
int guard_trip(lua_State *L, const char *message);

/* lua_pcall(L, nargs, nresults, 0) of the function below the nargs arguments, stopped with the
 * error message (a static string) once it has computed for limit_ms: pcall inside it cannot keep
 * it running. The hook (LuaJIT keeps one per state, for every coroutine) and the stop state are
 * put back as they were, so a handler coroutine suspended meanwhile keeps its own limit. Returns
 * lua_pcall's code. */
int guard_pcall(lua_State *L, int nargs, int nresults, unsigned limit_ms, const char *message);

#endif
