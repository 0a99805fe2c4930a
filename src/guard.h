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

#endif
