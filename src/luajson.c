/* luajson.c — Lua values <-> jansson values. */
#include "luajson.h"

#include <lauxlib.h>
#include <stdbool.h>

/* Arrays made from JSON carry this metatable, so an empty one stays an array on the way back. */
static const char ARRAY_MT = 'a';

static void push_array_mt(lua_State *L)
{
    lua_pushlightuserdata(L, (void *)&ARRAY_MT);
    lua_rawget(L, LUA_REGISTRYINDEX);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushlightuserdata(L, (void *)&ARRAY_MT);
        lua_pushvalue(L, -2);
        lua_rawset(L, LUA_REGISTRYINDEX);
    }
}

static bool marked_array(lua_State *L, int idx)
{
    if (!lua_getmetatable(L, idx)) return false;
    push_array_mt(L);
    bool same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return same;
}

static json_t *from_lua(lua_State *L, int idx, int depth)
{
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return json_null();
    case LUA_TBOOLEAN:
        return json_boolean(lua_toboolean(L, idx));
    case LUA_TNUMBER: {
        lua_Number n = lua_tonumber(L, idx);
        if (n == (lua_Number)(json_int_t)n && n > -9007199254740992.0 && n < 9007199254740992.0)
            return json_integer((json_int_t)n);
        return json_real(n);
    }
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        json_t *j = json_stringn(s, len);
        return j ? j : json_stringn_nocheck(s, len);
    }
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) return json_null();
        break;
    case LUA_TTABLE: {
        if (depth > 32) return json_string("...");
        if (idx < 0) idx = lua_gettop(L) + idx + 1;
        lua_rawgeti(L, idx, 1);
        bool array = !lua_isnil(L, -1) || marked_array(L, idx);
        lua_pop(L, 1);
        if (array) {
            json_t *out = json_array();
            int n = (int)lua_objlen(L, idx);
            for (int i = 1; i <= n; i++) {
                lua_rawgeti(L, idx, i);
                json_array_append_new(out, from_lua(L, -1, depth + 1));
                lua_pop(L, 1);
            }
            return out;
        }
        json_t *out = json_object();
        lua_pushnil(L);
        while (lua_next(L, idx) != 0) {
            lua_pushvalue(L, -2); /* a copy: lua_tostring would change a number key in place */
            const char *k = lua_tostring(L, -1);
            if (k != NULL) json_object_set_new(out, k, from_lua(L, -2, depth + 1));
            lua_pop(L, 2);
        }
        return out;
    }
    default:
        break;
    }
    return json_string(luaL_typename(L, idx));
}

json_t *luajson_from_lua(lua_State *L, int idx)
{
    return from_lua(L, idx, 0);
}

void luajson_push(lua_State *L, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        lua_createtable(L, 0, (int)json_object_size(v));
        const char *k;
        json_t *e;
        json_object_foreach((json_t *)v, k, e)
        {
            luajson_push(L, e);
            lua_setfield(L, -2, k);
        }
        return;
    }
    case JSON_ARRAY: {
        lua_createtable(L, (int)json_array_size(v), 0);
        for (size_t i = 0; i < json_array_size(v); i++) {
            luajson_push(L, json_array_get(v, i));
            lua_rawseti(L, -2, (int)i + 1);
        }
        push_array_mt(L);
        lua_setmetatable(L, -2);
        return;
    }
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(v), json_string_length(v));
        return;
    case JSON_INTEGER:
        lua_pushnumber(L, (lua_Number)json_integer_value(v));
        return;
    case JSON_REAL:
        lua_pushnumber(L, json_real_value(v));
        return;
    case JSON_TRUE:
        lua_pushboolean(L, 1);
        return;
    case JSON_FALSE:
        lua_pushboolean(L, 0);
        return;
    case JSON_NULL:
        lua_pushlightuserdata(L, NULL);
        return;
    }
}
