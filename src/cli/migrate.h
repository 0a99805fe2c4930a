/* migrate.h — `sluice migrate`: applies migrations/NNNN_name.sql in order (synchronous libpq). */
#ifndef SLUICE_MIGRATE_H
#define SLUICE_MIGRATE_H

/* command: "up" or "status". conninfo: a libpq URL or key=value string. dir: the migrations
 * folder. Prints progress to stdout and errors to stderr. Returns the process exit code: 0 on
 * success, 1 on any error (a failed migration is rolled back, an edited applied file refused). */
int migrate_run(const char *conninfo, const char *dir, const char *command);

#endif
