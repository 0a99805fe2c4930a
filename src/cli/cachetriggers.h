/* cachetriggers.h — `sluice cache-triggers TABLE..`: the SQL of the statement-level triggers that
 * tell every gateway's result cache about writes made without it (docs/cache.md). */
#ifndef SLUICE_CACHETRIGGERS_H
#define SLUICE_CACHETRIGGERS_H

#include <stdio.h>

/* Writes the SQL for tables[0..n) to out: one trigger function, then a trigger per table that
 * sends NOTIFY sluice_invalidate with the table's name after every INSERT, UPDATE, DELETE or
 * TRUNCATE statement. Returns 0, or 2 (usage, on stderr) when n is 0 or a name is empty. */
int cachetriggers_run(int n, char **tables, FILE *out);

#endif
