/* conninfo.h — what may be shown of a pool's connection string: a copy with its passwords
 * masked, and one generic reason in place of libpq's text when libpq cannot use the string
 * (that text may quote it, password included). */
#ifndef SLUICE_CONNINFO_H
#define SLUICE_CONNINFO_H

#include <stdbool.h>

/* The reason shown (logs, /health, /metrics, 503 bodies, the commands) for a connection string
 * that conninfo_usable refuses or that libpq refuses before connecting. */
#define CONNINFO_INVALID                                                                                     \
    "invalid connection URL (libpq cannot use it: check its syntax, percent-escapes and values; the URL "    \
    "itself is not shown as it may hold a password)"

/* A copy of url (a postgres:// or postgresql:// URL, a key=value conninfo, or a database name)
 * with each password replaced by ***: a URL's user:password@ part and password= or sslpassword=
 * parameters; in key=value form the values of password and sslpassword. It errs on the side of
 * hiding: in a URL everything from the first ':' of the user part to the last '@' is masked, and
 * everything after a password parameter, or after text that does not parse. The caller frees the
 * result; NULL gives "". */
char *url_redact(const char *url);

/* True when libpq can take url as the pool connection string it is (libpq's parser accepts it,
 * and no host holds an '@' nor a port anything but digits, which is how a password with an
 * unescaped '@' or '/' in a URL shows). "" and a bare database name are usable. When false, show
 * CONNINFO_INVALID, never libpq's message. */
bool conninfo_usable(const char *url);

#endif
