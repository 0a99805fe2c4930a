/* scaffold.h — `sluice new NAME`: a service skeleton that `sluice check` and `sluice serve`
 * accept unchanged. */
#ifndef SLUICE_SCAFFOLD_H
#define SLUICE_SCAFFOLD_H

/* Creates the folder NAME (its parent must exist; NAME itself must not) with conf/sluice.lua,
 * lua/endpoints/example.lua, lua/policy.lua, migrations/0001_init.sql, tests/example_spec.lua
 * and README.md. The service and its default database are named after NAME's last component,
 * which may hold only ASCII letters, digits, '_', '-' and '.' and may not start with '-' or '.'
 * (it is written into Lua, SQL and Markdown; in the Lua files it is also quoted or escaped).
 * Prints what it made and the next steps to stdout, errors to stderr. Returns the process exit
 * code: 0, 1 when a file cannot be written (what was made stays), 2 for a bad NAME. */
int scaffold_new(const char *name);

#endif
