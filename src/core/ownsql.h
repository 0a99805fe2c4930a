/* ownsql.h — the mark sluice puts on the statements it sends for itself (the replication probe,
 * WAL positions, the migration lock, bulk load helpers), so that `sluice import` can tell them
 * apart from the service's own in pg_stat_statements, which keeps a trailing comment. */
#ifndef SLUICE_OWNSQL_H
#define SLUICE_OWNSQL_H

#define OWN_SQL_MARK "/* sluice:internal */"

#endif
