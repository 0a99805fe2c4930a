/* luajson.h — Lua values <-> JSON. sluice.null (a NULL light userdata) is JSON null; a table
 * whose [1] is set is an array, and so is one that came from a JSON array (it carries a marker
 * metatable, so [] stays []); any other table is an object (an empty table is {}).
 * Every conversion from Lua is bounded (struct luajson_limits): operator code can hand over a
 * table that refers to the same big string many times, or to itself, and the JSON form of that
 * is far larger than the Lua memory it takes. */
#ifndef SLUICE_LUAJSON_H
#define SLUICE_LUAJSON_H

#include <jansson.h>
#include <lua.h>
#include <stdbool.h>

#include "buf.h"

#define LUAJSON_MAX_DEPTH 256 /* the most max_depth may ask for */

struct luajson_limits {
    size_t max_bytes; /* luajson_write: the bytes appended; luajson_from_lua: see there */
    int max_depth;    /* tables inside tables, the outermost counting 1 (at most LUAJSON_MAX_DEPTH) */
    bool cut;         /* a table past max_depth, or inside itself, becomes "..." instead of failing */
};

enum luajson_status {
    LUAJSON_OK = 0,
    LUAJSON_TOO_LARGE, /* past max_bytes */
    LUAJSON_TOO_DEEP,  /* tables nested past max_depth */
    LUAJSON_CYCLE,     /* a table holds itself, directly or further down */
};

/* Appends the compact JSON text of the value at idx to b: numbers that are integers within
 * +-2^53 as integers, other numbers with 15 significant digits (NaN and infinities as null),
 * strings as jsonw_string writes them (invalid UTF-8 becomes U+FFFD), values JSON cannot hold
 * (functions, userdata) as their type name. Returns LUAJSON_OK, or the bound it met: b is then
 * back at its length on entry (its capacity may have grown up to about max_bytes). Runs no Lua
 * code (raw access only) and allocates nothing in the Lua state beyond stack slots. */
enum luajson_status luajson_write(lua_State *L, int idx, struct buf *b, const struct luajson_limits *lim);

/* Converts the value at idx to a jansson value, for C code that needs one (sluice.db
 * parameters). Numbers that are integers within +-2^53 become JSON integers, others reals (NaN
 * and infinities null); strings keep their bytes. Toward lim->max_bytes each value counts 64
 * bytes (about what jansson takes for it) plus its string's or key's length. Returns a new
 * reference, or NULL with *st set when a bound is met (nothing is leaked). */
json_t *luajson_from_lua(lua_State *L, int idx, const struct luajson_limits *lim, enum luajson_status *st);

/* What a status means, e.g. "nests deeper than the limit". Static storage. */
const char *luajson_status_text(enum luajson_status st);

/* Marks the table at idx as a JSON array, so that an empty one is written as [] too. */
void luajson_mark_array(lua_State *L, int idx);

/* Pushes the Lua form of v (null as sluice.null). */
void luajson_push(lua_State *L, const json_t *v);

#endif
