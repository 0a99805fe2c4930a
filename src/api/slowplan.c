/* slowplan.c — explain_slow: a slow query's plan, fetched with EXPLAIN (FORMAT JSON) in a
 * transaction that is always rolled back. The capture has no HTTP request behind it: its state is
 * a malloc'd struct freed when the rollback (or the failure) is done. */
#include "slowplan.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "metrics.h"
#include "reqlife.h"
#include "txn.h"
#include "util.h"
#include "worker.h"

struct capture {
    struct worker *w;
    struct query_def *q;
    int pool;
    json_t **vals;
    struct txn txn;
};

bool slowplan_enabled(const struct query_def *q)
{
    lua_State *L = q->reg ? q->reg->L : NULL;
    if (L == NULL) return false;
    int top = lua_gettop(L);
    bool on = false;
    lua_getglobal(L, "sluice");
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "_policy");
        if (lua_istable(L, -1)) {
            lua_getfield(L, -1, "explain_slow");
            on = lua_toboolean(L, -1);
        }
    }
    lua_settop(L, top);
    return on;
}

static void free_vals(const struct query_def *q, json_t **vals)
{
    for (int i = 0; vals && i < q->nparams; i++)
        if (vals[i]) json_decref(vals[i]);
    free(vals);
}

static void done(struct capture *c)
{
    free_vals(c->q, c->vals);
    reqlife_unhold(c->w, c->q->reg);
    free(c);
}

static void on_rolled_back(struct txn *t, PGresult *r)
{
    struct capture *c = t->arg;
    txn_close(t);
    done(c);
}

static void on_plan(struct txn *t, PGresult *r)
{
    struct capture *c = t->arg;
    if (r == NULL) {
        log_printf(LOG_DEBUG, "explain_slow %s: %s", c->q->name, t->errmsg);
        txn_close(t);
        done(c);
        return;
    }
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        if (!metrics_plan_set(c->w, c->q, c->pool, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0)))
            log_printf(LOG_DEBUG, "explain_slow %s: the plan is larger than %d bytes", c->q->name,
                       METRICS_PLAN_MAX);
    } else {
        const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        log_printf(LOG_DEBUG, "explain_slow %s: %s", c->q->name, msg ? msg : "explain failed");
    }
    txn_finish(t, false, on_rolled_back);
}

static void on_begun(struct txn *t, PGresult *r)
{
    struct capture *c = t->arg;
    if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK) {
        txn_close(t);
        done(c);
        return;
    }
    struct buf sql = BUF_INIT;
    buf_printf(&sql, "EXPLAIN (FORMAT JSON) %s", c->q->sql_numbered);
    int rc = txn_query_sql(t, sql.data, c->q, c->vals, on_plan);
    buf_free(&sql);
    if (rc == 0) return;
    log_printf(LOG_DEBUG, "explain_slow %s: %s", c->q->name, t->errmsg);
    if (rc == -2) {
        txn_close(t);
        done(c);
    } else {
        txn_finish(t, false, on_rolled_back);
    }
}

void slowplan_capture(struct worker *w, struct query_def *q, int pool, json_t **vals)
{
    struct capture *c = xcalloc(1, sizeof *c);
    c->w = w;
    c->q = q;
    c->pool = pool;
    c->vals = vals;
    reqlife_hold(w, q->reg);
    if (txn_open(&c->txn, &w->pools[pool], on_begun, c) != 0) {
        log_printf(LOG_DEBUG, "explain_slow %s: %s", q->name, c->txn.errmsg);
        txn_close(&c->txn);
        done(c);
    }
}
