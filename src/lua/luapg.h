/* luapg.h — query results pushed to Lua with the JSON type mapping of the HTTP answers
 * (pgjson.h), without a round trip through JSON text for the common types. */
#ifndef SLUICE_LUAPG_H
#define SLUICE_LUAPG_H

#include <libpq-fe.h>
#include <lua.h>

/* Pushes row `row` of res as a table {col = value, ...}; SQL NULL is sluice.null. */
void luapg_push_row(lua_State *L, const PGresult *res, int row);
/* Pushes {rows = {...}, row_count = n}, as /query answers it: for a statement without rows,
 * rows is empty and row_count the affected count. */
void luapg_push_result(lua_State *L, const PGresult *res);

#endif
