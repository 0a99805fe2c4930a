/* tablecheck.c — the cache's table names against the database (tablecheck.h). */
#include "tablecheck.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>

#include "cache.h"
#include "dbconnect.h"
#include "util.h"

/* 1 when name is a relation on c, 0 when not, -1 when the server could not answer. */
static int exists(PGconn *c, const char *name)
{
    const char *vals[] = {name};
    PGresult *r = PQexecParams(c, "SELECT to_regclass($1) IS NOT NULL", 1, NULL, vals, NULL, NULL, 0);
    int rc = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? PQgetvalue(r, 0, 0)[0] == 't' : -1;
    PQclear(r);
    return rc;
}

/* Checks ids[0..n) of q (key: the key that named them). Returns as tablecheck_run. */
static int check_ids(PGconn *c, const struct query_def *q, const char *key, const int *ids, int n, char *err,
                     size_t errlen)
{
    for (int i = 0; i < n; i++) {
        const char *t = cache_table_name(ids[i]);
        int e = exists(c, t);
        if (e == 0) {
            snprintf(err, errlen, "query \"%s\": %s: no table \"%s\" in the database", q->name, key, t);
            return -1;
        }
        if (e < 0) {
            snprintf(err, errlen, "query \"%s\": %s: cannot look up \"%s\"", q->name, key, t);
            return 1;
        }
    }
    return 0;
}

int tablecheck_run(const struct config *cfg, const struct registry *reg, char *err, size_t errlen)
{
    PGconn **conns = xcalloc(cfg->npools ? cfg->npools : 1, sizeof *conns);
    int rc = 0;
    for (int i = 0; i < reg->nqueries && rc == 0; i++) {
        const struct query_def *q = reg->queries[i];
        if (q->ncache_tables == 0 && q->nwrite_tables == 0) continue;
        PGconn **pc = &conns[q->pool_idx];
        if (*pc == NULL) {
            char why[256];
            *pc = dbconnect(cfg->pools[q->pool_idx].url, "sluice-check", 2, why, sizeof why);
            if (*pc == NULL) {
                snprintf(err, errlen, "pool %s: cannot connect to check the cached tables: %s",
                         cfg->pools[q->pool_idx].name, why);
                rc = 1;
                break;
            }
        }
        rc = check_ids(*pc, q, "cache.tables", q->cache_tables, q->ncache_tables, err, errlen);
        if (rc == 0) rc = check_ids(*pc, q, "writes", q->write_tables, q->nwrite_tables, err, errlen);
    }
    for (size_t i = 0; i < cfg->npools; i++)
        if (conns[i]) PQfinish(conns[i]);
    free(conns);
    return rc;
}
