/* dbconnect.c — blocking connections for the commands and start-up (see dbconnect.h). */
#include "dbconnect.h"

#include <stdbool.h>
#include <stdio.h>

#include "conninfo.h"

char *dbconnect_one_line(char *s)
{
    char *o = s;
    bool space = false;
    for (char *p = s; *p; p++) {
        if (*p == '\n' || *p == '\r' || *p == '\t' || *p == ' ') {
            space = o != s;
            continue;
        }
        if (space) *o++ = ' ';
        space = false;
        *o++ = *p;
    }
    *o = '\0';
    return s;
}

PGconn *dbconnect(const char *url, const char *app, int timeout_s, char *err, size_t errlen)
{
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%d", timeout_s);
    /* Keys before dbname are defaults that the URL (expanded from dbname) may override. */
    const char *keys[] = {"application_name", "connect_timeout", "dbname", NULL};
    const char *vals[] = {app, timeout, url ? url : "", NULL};
    /* libpq's text of a string it cannot use may quote it, password included: never shown. What
     * it says of a usable one (the host, port, server's answer) stays. */
    if (!conninfo_usable(url)) {
        snprintf(err, errlen, "%s", CONNINFO_INVALID);
        return NULL;
    }
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (pg != NULL && PQstatus(pg) == CONNECTION_OK) return pg;
    snprintf(err, errlen, "%s", pg ? PQerrorMessage(pg) : "out of memory");
    dbconnect_one_line(err);
    PQfinish(pg);
    return NULL;
}
