/* describe.h — what the database says about each named query and bulk endpoint, learned once at
 * start-up with synchronous libpq: parameter types and result columns. The registry keeps the
 * parameter types (so the first request binds at once); the result columns feed /openapi.json. */
#ifndef SLUICE_DESCRIBE_H
#define SLUICE_DESCRIBE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "endpoint.h"

struct describe_column {
    char *name;
    Oid type;
    bool notnull; /* a column of a table, NOT NULL there, in a statement that cannot null-extend it */
};

/* One named query or bulk endpoint. */
struct describe_entry {
    char *name;
    char *sql;   /* the statement described: a reload that changes it makes the
                  * entry stale, and it is then not used */
    bool ok;     /* described; false: columns and types are unknown */
    char *error; /* why not (the server's message), or NULL */
    int nparams; /* queries: the parameter types, in $n order */
    Oid *param_types;
    bool returns_rows; /* the statement has a result set (SELECT, ... RETURNING) */
    int ncols;         /* queries: the result columns; bulks: the declared columns */
    struct describe_column *cols;
};

/* Everything describe_all learned. Owned by whoever called describe_all; read-only afterwards,
 * so any thread may read it once it has been handed over. */
struct describe_result {
    struct describe_entry *queries; /* in registry order */
    int nqueries;
    struct describe_entry *bulks; /* in registry order */
    int nbulks;
};

/* For every named query in reg: prepares it (unnamed, inside BEGIN .. ROLLBACK) on a connection
 * to its pool and describes it; stores its parameter types in the query (param_types,
 * described = true) and its result columns in out. For every bulk endpoint: describes
 * `SELECT cols FROM table LIMIT 0` and stores the column types (b->types, described = true, and
 * in out). A result column is notnull when it is a table's column declared NOT NULL
 * (pg_attribute.attnotnull) and the statement has no outer join or grouping set that could
 * still make it NULL (told from the words LEFT, RIGHT, FULL, ROLLUP, CUBE, GROUPING: a false
 * alarm only leaves a column nullable). One connection per pool, closed before returning; each waits at most
 * 2 s to connect, and each statement at most 5 s. Returns 0 when everything was described; -1 with one line
 * in err naming the first failure (an unreachable pool, a statement the server refused). On -1 out still
 * holds every entry, with ok = false for those not described; the caller goes on without their types. The
 * caller frees out with describe_free, even after -1. */
int describe_all(const struct config *cfg, struct registry *reg, struct describe_result *out, char *err,
                 size_t errlen);

/* Copies the parameter and column types of d into reg (another worker's registry, or a reloaded
 * one), for the queries and bulk endpoints whose entry in d is described and has the same SQL;
 * the others are left to learn their types on first use. d may be NULL. */
void describe_apply(const struct describe_result *d, struct registry *reg);

/* The described entry of q (or b): same name and same SQL; NULL when there is none, it was not
 * described, or the definition changed since. d may be NULL. */
const struct describe_entry *describe_find_query(const struct describe_result *d, const struct query_def *q);
const struct describe_entry *describe_find_bulk(const struct describe_result *d, const struct bulk_def *b);

/* Releases everything d holds; d is empty afterwards. NULL is harmless. */
void describe_free(struct describe_result *d);

/* Makes d the description in force (what /openapi.json shows and reloads apply); the module owns
 * d from then on (d was malloc'd; NULL = none). Call it in the main thread before the workers
 * start; calling it again later (a reload) is safe while they serve: the replaced description
 * stays allocated until describe_forget_all, since a worker may still be reading it. */
void describe_set_current(struct describe_result *d);
/* The description in force, or NULL. */
const struct describe_result *describe_current(void);
/* Frees every description handed over; call after the workers stopped. */
void describe_forget_all(void);

#endif
