/* luajson.h — Lua values <-> jansson values. sluice.null (a NULL light userdata) is JSON null; a
 * table whose [1] is set is an array, and so is one that came from a JSON array (it carries a
 * marker metatable, so [] stays []); any other table is an object (an empty table is {}). */
#ifndef SLUICE_LUAJSON_H
#define SLUICE_LUAJSON_H

#include <jansson.h>
#include <lua.h>

/* Converts the value at idx. Returns a new reference; values JSON cannot hold (functions,
 * userdata) become their type name as a string. Tables nest at most 32 deep (deeper is "..."). */
json_t *luajson_from_lua(lua_State *L, int idx);
/* Pushes the Lua form of v (null as sluice.null). */
void luajson_push(lua_State *L, const json_t *v);

#endif
