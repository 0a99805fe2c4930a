/* check.c — `sluice check`: synchronous libpq is fine here, this is not the serving path. */
#include "check.h"

#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "conninfo.h"
#include "dbconnect.h"
#include "endpoint.h"
#include "script.h"

int check_run(const struct config *cfg)
{
    char err[512];
    struct registry reg;
    registry_init(&reg);
    lua_State *L = script_load(cfg, &reg, err, sizeof err);
    if (L == NULL) {
        fprintf(stderr, "check: %s\n", err);
        registry_free(&reg);
        return 1;
    }
    script_close(L);

    int failures = 0, checked = 0;
    const char *unreachable = NULL; /* the pool it could not connect to */
    PGconn **conns = calloc(cfg->npools, sizeof *conns);
    for (int i = 0; i < reg.nqueries; i++) {
        struct query_def *q = reg.queries[i];
        PGconn **pc = &conns[q->pool_idx];
        if (*pc == NULL) {
            char why[512];
            *pc = dbconnect(cfg->pools[q->pool_idx].url, "sluice-check", 10, why, sizeof why);
            if (*pc == NULL) {
                char *url = url_redact(cfg->pools[q->pool_idx].url);
                why[strcspn(why, "\n")] = '\0'; /* libpq's hint lines add nothing here */
                fprintf(stderr, "check: cannot connect to %s (pool %s): %s\n",
                        url[0] ? url : "libpq's defaults", q->pool, why);
                free(url);
                unreachable = q->pool;
                break;
            }
        }
        /* Preparing inside a rolled-back transaction leaves nothing behind. */
        checked++;
        PQclear(PQexec(*pc, "BEGIN"));
        PGresult *r = PQprepare(*pc, "", q->sql_numbered, 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
            fprintf(stderr, "check: query %s: %s\n", q->name, msg ? msg : PQerrorMessage(*pc));
            failures++;
        } else {
            printf("ok     %s\n", q->name);
        }
        PQclear(r);
        PQclear(PQexec(*pc, "ROLLBACK"));
    }
    for (size_t i = 0; i < cfg->npools; i++)
        if (conns[i]) PQfinish(conns[i]);
    free(conns);
    int rc = failures || unreachable ? 1 : 0;
    if (unreachable && checked == 0)
        printf("nothing checked: the database of pool %s cannot be reached\n", unreachable);
    else if (unreachable)
        printf("%d queries checked, %d failed; the other %d not checked: the database of pool %s cannot be "
               "reached\n",
               checked, failures, reg.nqueries - checked, unreachable);
    else
        printf("%d queries checked, %d failed\n", checked, failures);
    registry_free(&reg);
    return rc;
}
