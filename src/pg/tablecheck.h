/* tablecheck.h — are the tables the result cache is told about (a query's cache.tables and
 * writes) tables of the database? Asked once with synchronous libpq at start-up and by
 * `sluice check`; the serving path never blocks. */
#ifndef SLUICE_TABLECHECK_H
#define SLUICE_TABLECHECK_H

#include <stddef.h>

#include "config.h"
#include "endpoint.h"

/* Looks up every table of reg's queries' cache.tables and writes on the query's pool
 * (to_regclass, through the pool's search_path). Returns 0 when all exist, -1 with one line in
 * err naming the query, the key and the table when one does not, and 1 when a pool could not be
 * reached (err says which: the check could not be made). */
int tablecheck_run(const struct config *cfg, const struct registry *reg, char *err, size_t errlen);

#endif
