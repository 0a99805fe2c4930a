/* luapg.c — query results as Lua values (luapg.h). Numbers, booleans and text are pushed as
 * they are; the types whose mapping rewrites the text (json, arrays, timestamps, bytea) take the
 * JSON writer's form of that one value. */
#include "luapg.h"

#include <jansson.h>
#include <stdlib.h>

#include "buf.h"
#include "luajson.h"
#include "pgjson.h"
#include "pgtype.h"

/* Pushes one non-NULL text-format value. scratch holds the JSON form when one is needed. */
static void push_value(lua_State *L, Oid type, const char *val, size_t len, struct buf *scratch)
{
    if (pgjson_is_number(type, val, len)) {
        lua_pushnumber(L, strtod(val, NULL));
        return;
    }
    switch (type) {
    case PGT_BOOL:
        if (len == 1 && (val[0] == 't' || val[0] == 'f')) {
            lua_pushboolean(L, val[0] == 't');
            return;
        }
        break;
    case PGT_JSON:
    case PGT_JSONB:
    case PGT_TIMESTAMP:
    case PGT_TIMESTAMPTZ:
    case PGT_BYTEA:
        goto rewritten;
    default:
        if (pgtype_array_elem(type) != 0) goto rewritten;
        break;
    }
    lua_pushlstring(L, val, len); /* text, NaN/Infinity, big int8 and numeric: as written */
    return;
rewritten:
    buf_reset(scratch);
    pgjson_value(scratch, type, val, len);
    json_t *v = json_loadb(scratch->data, scratch->len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (v == NULL) {
        lua_pushlstring(L, val, len);
        return;
    }
    luajson_push(L, v);
    json_decref(v);
}

static void push_row(lua_State *L, const PGresult *res, int row, struct buf *scratch)
{
    int ncols = PQnfields(res);
    lua_createtable(L, 0, ncols);
    for (int c = 0; c < ncols; c++) {
        if (PQgetisnull(res, row, c))
            lua_pushlightuserdata(L, NULL); /* sluice.null */
        else
            push_value(L, PQftype(res, c), PQgetvalue(res, row, c), (size_t)PQgetlength(res, row, c),
                       scratch);
        lua_setfield(L, -2, PQfname(res, c));
    }
}

void luapg_push_row(lua_State *L, const PGresult *res, int row)
{
    struct buf scratch = BUF_INIT;
    push_row(L, res, row, &scratch);
    buf_free(&scratch);
}

void luapg_push_result(lua_State *L, const PGresult *res)
{
    struct buf scratch = BUF_INIT;
    ExecStatusType st = PQresultStatus(res);
    bool has_rows = st == PGRES_TUPLES_OK || st == PGRES_SINGLE_TUPLE;
    int n = has_rows ? PQntuples(res) : 0;
    lua_createtable(L, 0, 2);
    lua_createtable(L, n, 0);
    for (int r = 0; r < n; r++) {
        push_row(L, res, r, &scratch);
        lua_rawseti(L, -2, r + 1);
    }
    luajson_mark_array(L, -1);
    lua_setfield(L, -2, "rows");
    lua_pushnumber(L, has_rows ? (lua_Number)n : strtod(PQcmdTuples((PGresult *)res), NULL));
    lua_setfield(L, -2, "row_count");
    buf_free(&scratch);
}
