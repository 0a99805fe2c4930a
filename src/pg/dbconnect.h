/* dbconnect.h — a blocking connection to PostgreSQL for the commands (check, migrate, import) and
 * start-up's describe. The serving path never blocks: it uses pgconn.c. */
#ifndef SLUICE_DBCONNECT_H
#define SLUICE_DBCONNECT_H

#include <stddef.h>

#include <libpq-fe.h>

/* Connects to url (a libpq URL or key=value conninfo; "" = libpq's defaults and PG* variables) as
 * application_name app, giving up after timeout_s seconds; url may set either itself. Returns
 * the connection, or NULL with the reason on one line in err: libpq's, or CONNINFO_INVALID for a
 * url libpq cannot use (libpq's text of it may quote the password). */
PGconn *dbconnect(const char *url, const char *app, int timeout_s, char *err, size_t errlen);

/* Collapses a libpq message (newlines, tabs, runs of blanks) onto one line, in place; returns s. */
char *dbconnect_one_line(char *s);

#endif
