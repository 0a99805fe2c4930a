/* luajson.c — Lua values <-> JSON: the bounded conversions from Lua (text for handler answers
 * and log fields, a jansson value for sluice.db parameters) and the push of decoded JSON. */
#include "luajson.h"

#include <lauxlib.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"

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

/* ---- Lua -> JSON ---- */

/* One conversion: its limits, the tables on the way from the top value down, and what it has
 * spent so far. */
struct walk {
    lua_State *L;
    const struct luajson_limits *lim;
    int max_depth;
    int depth;
    const void *path[LUAJSON_MAX_DEPTH];
    struct buf *b; /* luajson_write: the text, from start on */
    size_t start;
    size_t spent; /* luajson_from_lua: the cost so far */
    enum luajson_status st;
};

static bool is_array(lua_State *L, int idx)
{
    lua_rawgeti(L, idx, 1);
    bool array = !lua_isnil(L, -1) || marked_array(L, idx);
    lua_pop(L, 1);
    return array;
}

/* A table may be entered while it stays within max_depth. A table that holds itself would
 * nest without end, so it always meets that bound; only then is the path searched for a repeat,
 * to name the cause: one scan per failure rather than one per table. */
static enum luajson_status enter(struct walk *w, int idx)
{
    const void *p = lua_topointer(w->L, idx);
    if (w->depth < w->max_depth) {
        w->path[w->depth++] = p;
        return LUAJSON_OK;
    }
    for (int i = 0; i < w->depth; i++) {
        if (w->path[i] == p) return LUAJSON_CYCLE;
        for (int k = i + 1; k < w->depth; k++)
            if (w->path[i] == w->path[k]) return LUAJSON_CYCLE;
    }
    return LUAJSON_TOO_DEEP;
}

/* The text of a string or number key (numbers as Lua's tostring writes them); NULL for keys
 * JSON has no name for (booleans, tables, ...), which are left out. */
static const char *key_of(lua_State *L, int idx, char *tmp, size_t tmplen, size_t *len)
{
    if (lua_type(L, idx) == LUA_TSTRING) return lua_tolstring(L, idx, len);
    if (lua_type(L, idx) != LUA_TNUMBER) return NULL;
    int n = snprintf(tmp, tmplen, LUA_NUMBER_FMT, lua_tonumber(L, idx));
    *len = n > 0 && (size_t)n < tmplen ? (size_t)n : 0;
    return tmp;
}

static bool integral(lua_Number n)
{
    return n > -9007199254740992.0 && n < 9007199254740992.0 && n == floor(n);
}

/* 15 significant digits: what a double carries exactly, and the rule numeric results follow (a
 * handler's 1.08 must not come out as 1.0800000000000001). Written as jansson writes a real with
 * JSON_REAL_PRECISION(15), as answers always were: %.15g, ".0" when that looks like an integer,
 * no '+' or leading zeros in the exponent. */
static void put_number(struct buf *b, lua_Number n)
{
    char tmp[48];
    if (!isfinite(n)) {
        buf_puts(b, "null");
        return;
    }
    if (integral(n)) {
        buf_printf(b, "%lld", (long long)n);
        return;
    }
    snprintf(tmp, sizeof tmp - 2, "%.15g", n);
    /* near DBL_MAX, 15 digits round past it: a reader would overflow, so take all 17 */
    if (fabs(n) > 1e308 && !isfinite(strtod(tmp, NULL))) snprintf(tmp, sizeof tmp - 2, "%.17g", n);
    if (strchr(tmp, '.') == NULL && strchr(tmp, 'e') == NULL) strcat(tmp, ".0");
    char *e = strchr(tmp, 'e');
    if (e != NULL) {
        char *start = e + 1, *end = e + 2;
        if (*start == '-') start++;
        while (*end == '0') end++;
        if (end != start) memmove(start, end, strlen(end) + 1);
    }
    buf_puts(b, tmp);
}

static size_t used(const struct walk *w)
{
    return w->b->len - w->start;
}

static void write_string(struct walk *w, const char *s, size_t n)
{
    size_t u = used(w), room = u < w->lim->max_bytes ? w->lim->max_bytes - u : 0; /* after a ',' */
    /* escaping makes a byte at most 6: the exact size is counted only near the limit */
    bool fits = n <= room && n + 2 <= room &&
                ((n <= (SIZE_MAX - 2) / 6 && 6 * n + 2 <= room) || jsonw_string_size(s, n) <= room);
    if (!fits) {
        w->st = LUAJSON_TOO_LARGE;
        return;
    }
    jsonw_string(w->b, s, n);
}

static void write_value(struct walk *w, int idx);

static void write_table(struct walk *w, int idx)
{
    lua_State *L = w->L;
    struct buf *b = w->b;
    enum luajson_status st = enter(w, idx);
    if (st != LUAJSON_OK) {
        if (w->lim->cut)
            buf_puts(b, "\"...\"");
        else
            w->st = st;
        return;
    }
    if (is_array(L, idx)) {
        size_t n = lua_objlen(L, idx);
        buf_putc(b, '[');
        for (size_t i = 1; i <= n && i <= INT_MAX && w->st == LUAJSON_OK; i++) {
            if (i > 1) buf_putc(b, ',');
            lua_rawgeti(L, idx, (int)i);
            write_value(w, lua_gettop(L));
            lua_pop(L, 1);
        }
        buf_putc(b, ']');
    } else {
        bool first = true;
        buf_putc(b, '{');
        lua_pushnil(L);
        while (lua_next(L, idx) != 0) {
            char tmp[48];
            size_t kl;
            const char *k = key_of(L, -2, tmp, sizeof tmp, &kl);
            if (k != NULL) {
                if (!first) buf_putc(b, ',');
                first = false;
                write_string(w, k, kl);
                if (w->st == LUAJSON_OK) {
                    buf_putc(b, ':');
                    write_value(w, lua_gettop(L));
                }
            }
            lua_pop(L, 1);
            if (w->st != LUAJSON_OK) {
                lua_pop(L, 1); /* the key lua_next left */
                break;
            }
        }
        buf_putc(b, '}');
    }
    w->depth--;
}

static void write_value(struct walk *w, int idx)
{
    lua_State *L = w->L;
    struct buf *b = w->b;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        buf_puts(b, "null");
        break;
    case LUA_TBOOLEAN:
        buf_puts(b, lua_toboolean(L, idx) ? "true" : "false");
        break;
    case LUA_TNUMBER:
        put_number(b, lua_tonumber(L, idx));
        break;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        write_string(w, s, n);
        break;
    }
    case LUA_TTABLE:
        write_table(w, idx);
        break;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) {
            buf_puts(b, "null");
            break;
        }
        /* fall through */
    default: {
        const char *t = luaL_typename(L, idx);
        write_string(w, t, strlen(t));
        break;
    }
    }
    /* what a value writes beyond its strings is a few bytes: checking after it is enough */
    if (w->st == LUAJSON_OK && used(w) > w->lim->max_bytes) w->st = LUAJSON_TOO_LARGE;
}

/* Room on the Lua stack for the walk: two slots a level (lua_next's key and value). */
static bool prepare(struct walk *w, lua_State *L, const struct luajson_limits *lim)
{
    w->L = L;
    w->lim = lim;
    w->max_depth = lim->max_depth < 0                   ? 0
                   : lim->max_depth > LUAJSON_MAX_DEPTH ? LUAJSON_MAX_DEPTH
                                                        : lim->max_depth;
    return lua_checkstack(L, 2 * w->max_depth + 4) != 0;
}

enum luajson_status luajson_write(lua_State *L, int idx, struct buf *b, const struct luajson_limits *lim)
{
    struct walk w = {.b = b, .start = b->len, .st = LUAJSON_OK};
    if (idx < 0) idx = lua_gettop(L) + idx + 1;
    if (!prepare(&w, L, lim)) return LUAJSON_TOO_DEEP;
    write_value(&w, idx);
    if (w.st != LUAJSON_OK) {
        b->len = w.start;
        if (b->data) b->data[b->len] = '\0';
    }
    return w.st;
}

/* About what jansson allocates for one value (the json_t, its slot in the parent, malloc's
 * overhead): what makes a table of a million small values cost memory though its text is short. */
#define VALUE_COST 64

static bool spend(struct walk *w, size_t n)
{
    if (n > w->lim->max_bytes - w->spent) {
        w->st = LUAJSON_TOO_LARGE;
        return false;
    }
    w->spent += n;
    return true;
}

static json_t *build_value(struct walk *w, int idx);

static json_t *build_table(struct walk *w, int idx)
{
    lua_State *L = w->L;
    enum luajson_status st = enter(w, idx);
    if (st != LUAJSON_OK) {
        if (w->lim->cut) return json_string("...");
        w->st = st;
        return NULL;
    }
    json_t *out;
    if (is_array(L, idx)) {
        out = json_array();
        size_t n = lua_objlen(L, idx);
        for (size_t i = 1; i <= n && i <= INT_MAX && w->st == LUAJSON_OK; i++) {
            lua_rawgeti(L, idx, (int)i);
            json_t *v = build_value(w, lua_gettop(L));
            if (v) json_array_append_new(out, v);
            lua_pop(L, 1);
        }
    } else {
        out = json_object();
        lua_pushnil(L);
        while (lua_next(L, idx) != 0) {
            char tmp[48];
            size_t kl;
            const char *k = key_of(L, -2, tmp, sizeof tmp, &kl);
            if (k != NULL && spend(w, kl)) {
                json_t *v = build_value(w, lua_gettop(L));
                if (v) json_object_set_new(out, k, v);
            }
            lua_pop(L, 1);
            if (w->st != LUAJSON_OK) {
                lua_pop(L, 1); /* the key lua_next left */
                break;
            }
        }
    }
    w->depth--;
    if (w->st != LUAJSON_OK) {
        json_decref(out);
        return NULL;
    }
    return out;
}

static json_t *build_value(struct walk *w, int idx)
{
    lua_State *L = w->L;
    if (!spend(w, VALUE_COST)) return NULL;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return json_null();
    case LUA_TBOOLEAN:
        return json_boolean(lua_toboolean(L, idx));
    case LUA_TNUMBER: {
        lua_Number n = lua_tonumber(L, idx);
        if (!isfinite(n)) return json_null();
        return integral(n) ? json_integer((json_int_t)n) : json_real(n);
    }
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        if (!spend(w, len)) return NULL;
        json_t *j = json_stringn(s, len);
        return j ? j : json_stringn_nocheck(s, len);
    }
    case LUA_TTABLE:
        return build_table(w, idx);
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) return json_null();
        break;
    default:
        break;
    }
    return json_string(luaL_typename(L, idx));
}

json_t *luajson_from_lua(lua_State *L, int idx, const struct luajson_limits *lim, enum luajson_status *st)
{
    struct walk w = {.st = LUAJSON_OK};
    if (idx < 0) idx = lua_gettop(L) + idx + 1;
    json_t *v = NULL;
    if (!prepare(&w, L, lim))
        w.st = LUAJSON_TOO_DEEP;
    else
        v = build_value(&w, idx);
    *st = w.st;
    return w.st == LUAJSON_OK ? v : NULL;
}

const char *luajson_status_text(enum luajson_status st)
{
    switch (st) {
    case LUAJSON_OK:
        return "is fine";
    case LUAJSON_TOO_LARGE:
        return "is larger than the limit";
    case LUAJSON_TOO_DEEP:
        return "nests tables deeper than the limit";
    case LUAJSON_CYCLE:
        return "holds a table inside itself";
    }
    return "cannot be converted";
}

void luajson_mark_array(lua_State *L, int idx)
{
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    push_array_mt(L);
    lua_setmetatable(L, idx);
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
