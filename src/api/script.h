/* script.h — a LuaJIT state that runs the operator's scripts and collects their definitions
 * through the `sluice` global (docs/lua-api.md). */
#ifndef SLUICE_SCRIPT_H
#define SLUICE_SCRIPT_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "endpoint.h"

/* Creates a state, runs every file matched by cfg->scripts (sorted per pattern) and adds each
 * sluice.query to reg, with its pool resolved against cfg. Returns the state (the caller closes
 * it with lua_close), or NULL with one line in err naming the file and line. */
lua_State *script_load(const struct config *cfg, struct registry *reg, char *err, size_t errlen);

/* A full garbage collection of L when always, or when it holds more than half its
 * lua_memory_limit. LuaJIT does not collect when an allocation fails: without this, the garbage
 * of a handler stopped by the limit would keep every later one from allocating. */
void script_collect(lua_State *L, bool always);

/* Closes a state made by script_load (and its memory accounting). */
void script_close(lua_State *L);
/* Turns the lua_memory_limit on around operator code (a handler's resume); off, the gateway's
 * own calls into the state cannot fail for memory. Returns the setting it replaced. */
bool script_enforce_limit(lua_State *L, bool on);
/* Bytes the state holds now, as its allocator counts them. */
size_t script_memory(lua_State *L);

#endif
