/* import.h — `sluice import`: turns the most expensive statements of pg_stat_statements into a
 * Lua file of named queries that `sluice check` accepts and `sluice serve` serves as is. */
#ifndef SLUICE_IMPORT_H
#define SLUICE_IMPORT_H

#include <stdbool.h>

#include "buf.h"
#include "config.h"

/* One statement made into a named query. */
struct import_query {
    char *name;    /* derived from the statement: "select_quotes_by_pair" (not yet made unique) */
    char *sql;     /* the statement with :name placeholders instead of $n */
    bool readonly; /* a plain SELECT (or WITH .. SELECT) that writes nothing and locks no row (no
                      INSERT/UPDATE/DELETE/MERGE, INTO, FOR UPDATE/SHARE); import_run also
                      requires that it calls no volatile function */
    char **params; /* the placeholder names, params[i] standing for $(i+1) of the statement */
    int nparams;   /* the highest $n of the statement */
};

/* Converts one normalized statement (constants shown as $1, $2, ...). A $n compared with a
 * column (col = $1, $1 < col, col IN ($1, $2), col BETWEEN $1 AND $2, SET col = $1), inserted
 * into a named column (INSERT INTO t (col) VALUES ($1)) or given to LIMIT / OFFSET is named after
 * it; two $n for one column get _min / _max (range bounds) or _2, _3; any other $n is :p<n>.
 * A typed literal whose constant was replaced (interval $1) becomes CAST(:p1 AS interval).
 * Returns 0 and fills *out (free with import_query_free); -1 when the statement is not a
 * SELECT, INSERT, UPDATE, DELETE or WITH (a utility statement) or cannot be read (an
 * unterminated literal). */
int import_convert(const char *statement, struct import_query *out);
void import_query_free(struct import_query *q);

/* A function a statement calls: a name (or quoted identifier) followed by "(". */
struct import_call {
    char *schema; /* as the server reads it, when written schema.name; else NULL */
    char *name;   /* unquoted names folded to lower case */
};

/* Lists the calls of statement (keywords followed by "(", such as IN or VALUES, too: they match no
 * function). Returns the count and fills *out (free with import_calls_free), or -1 when the
 * statement cannot be read. */
int import_calls(const char *statement, struct import_call **out);
void import_calls_free(struct import_call *calls, int n);

/* Appends to b one definition of the imported file: a comment line with the statistics, then
 * sluice.query "NAME" { sql = ..., readonly = true }. The name is a quoted Lua string and the
 * SQL a luastr_text literal, so whatever they hold loads back as exactly those bytes. */
void import_write_query(struct buf *b, const struct import_query *q, long long calls, double total_ms,
                        long long rows);

/* Appends to b one comment line for a statement that did not prepare: "--   WHY: STATEMENT",
 * the statement's white space collapsed and cut after 160 bytes, every line break and control
 * byte of either escaped (luastr_comment): PostgreSQL's reason quotes identifiers unchanged, and
 * an identifier may hold a line break followed by Lua code. */
void import_write_left(struct buf *b, const char *why, const char *statement);

/* `sluice import`: reads pg_stat_statements in the database of the primary pool (the first pool
 * without one), takes the top statements by total execution time that are not utility
 * statements, not about the system catalogs and not sluice's own (OWN_SQL_MARK), checks that each one
 * prepares, and writes a Lua file of sluice.query definitions to output ("-" or NULL: stdout), each with a
 * comment giving its calls and mean time. top: how many (>= 1). Progress and errors go to stderr. Returns the
 * process exit code: 0, or 1 (no connection, no pg_stat_statements extension, a write error). */
int import_run(const struct config *cfg, int top, const char *output);

#endif
