/* txn.c — a transaction on a leased connection (pool_acquire). Statements go one at a time
 * (PQsendQueryParams with the server-declared parameter types), so a handler's logic can depend on
 * each result. */
#include "txn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "endpoint.h"
#include "pgtype.h"
#include "util.h"
#include "walpos.h"

/* Counts the transaction once: committed, rolled back, or broken off (connection lost). */
static void count(struct txn *t, enum txn_outcome outcome)
{
    if (t->counted || t->begun_us == 0) return;
    t->counted = true;
    t->pool->txn_outcomes[outcome]++;
    histogram_observe(&t->pool->txn_time, (double)(now_us() - t->begun_us) / 1e6);
}

/* The transaction committed, or may have: the result cache drops what it wrote. */
static void wrote(struct txn *t)
{
    cache_wrote(t->wrote, t->nwrote, t->lsn);
    t->nwrote = 0;
}

static void on_result(void *arg, PGresult *r)
{
    struct txn *t = arg;
    if (r != NULL && t->committing && PQresultStatus(r) == PGRES_TUPLES_OK) {
        t->lsn = walpos_of(r); /* COMMIT's result stays the one cb sees */
        PQclear(r);
        return;
    }
    if (r != NULL) {
        if (t->last) PQclear(t->last);
        t->last = r; /* keep the last one: an error, or the statement's rows */
        if (PQresultStatus(r) == PGRES_FATAL_ERROR) {
            t->failed = true;
            const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            if (state && strcmp(state, "40P01") == 0) t->pool->deadlocks++; /* db_deadlock_count */
        }
        return;
    }
    PGresult *done = t->last;
    t->last = NULL;
    if (t->committing) wrote(t); /* before the caller answers */
    t->cb(t, done);
    if (done) PQclear(done);
}

static void on_writable(void *arg) {}

static void on_lost(void *arg, const char *why)
{
    struct txn *t = arg;
    t->conn = NULL;
    count(t, TXN_ERROR);
    if (t->committing) wrote(t);
    if (t->last) PQclear(t->last);
    t->last = NULL;
    snprintf(t->errmsg, sizeof t->errmsg, "the database connection was lost: %s", why);
    t->cb(t, NULL);
}

static void on_conn(void *arg, struct pgconn *c, const char *err)
{
    struct txn *t = arg;
    if (c == NULL) {
        snprintf(t->errmsg, sizeof t->errmsg, "%s", err);
        t->cb(t, NULL);
        return;
    }
    t->conn = c;
    t->begun_us = now_us();
    pgconn_own(t->conn, &t->owner);
    pgconn_begin(t->conn);
}

int txn_open(struct txn *t, struct pool *p, txn_cb cb, void *arg)
{
    memset(t, 0, sizeof *t);
    t->pool = p;
    t->cb = cb;
    t->arg = arg;
    t->owner = (struct pgconn_owner){on_result, on_writable, on_lost, t};
    buf_init(&t->params);
    return pool_acquire(p, &t->lease, on_conn, t, t->errmsg, sizeof t->errmsg) != 0 ? -1 : 0;
}

int txn_query(struct txn *t, struct query_def *q, json_t *const *vals, txn_cb cb)
{
    if (q->nwrite_tables > 0) { /* its tables are dropped from the result cache at COMMIT */
        t->wrote = xrealloc(t->wrote, (size_t)(t->nwrote + q->nwrite_tables) * sizeof *t->wrote);
        memcpy(t->wrote + t->nwrote, q->write_tables, (size_t)q->nwrite_tables * sizeof *t->wrote);
        t->nwrote += q->nwrite_tables;
    }
    return txn_query_sql(t, q->sql_numbered, q, vals, cb);
}

int txn_query_sql(struct txn *t, const char *sql, struct query_def *q, json_t *const *vals, txn_cb cb)
{
    int n = q->nparams > 0 ? q->nparams : 1;
    long offs[n];
    const char *values[n];
    buf_reset(&t->params);
    for (int i = 0; i < q->nparams; i++) {
        Oid type = q->described ? q->param_types[i] : 0;
        bool is_null = vals[i] == NULL;
        size_t before = t->params.len;
        char err[128];
        if (!is_null && pgtype_param_json(type, vals[i], &t->params, &is_null, err, sizeof err) != 0) {
            snprintf(t->errmsg, sizeof t->errmsg, "query %s: parameter \"%s\": %s", q->name,
                     q->param_names[i], err);
            t->bad_param = i;
            return -1;
        }
        offs[i] = is_null ? -1 : (long)before;
    }
    /* pointers only now: the buffer may have moved while it grew */
    for (int i = 0; i < q->nparams; i++) values[i] = offs[i] < 0 ? NULL : t->params.data + offs[i];
    t->cb = cb;
    if (!PQsendQueryParams(t->conn->pg, sql, q->nparams, q->described ? q->param_types : NULL, values, NULL,
                           NULL, 0) ||
        pgconn_flush(t->conn) < 0) {
        snprintf(t->errmsg, sizeof t->errmsg, "the database connection failed");
        pgconn_discard(t->conn);
        t->conn = NULL;
        return -2;
    }
    return 0;
}

void txn_finish(struct txn *t, bool commit, txn_cb cb)
{
    t->cb = cb;
    count(t, commit && !t->failed ? TXN_COMMIT : TXN_ROLLBACK);
    if (commit && !t->failed) {
        t->committing = true;
        pgconn_send_simple(t->conn, WALPOS_COMMIT_SQL);
        return;
    }
    pgconn_send(t->conn, "ROLLBACK", 0, NULL);
}

void txn_close(struct txn *t)
{
    if (t->conn) pgconn_release(t->conn);
    t->conn = NULL;
    buf_free(&t->params);
    free(t->wrote);
    t->wrote = NULL;
}

void txn_abandon(struct txn *t)
{
    count(t, TXN_ERROR);
    if (t->committing) wrote(t); /* the COMMIT may have happened */
    free(t->wrote);
    t->wrote = NULL;
    pool_cancel_lease(&t->lease);
    if (t->conn) pgconn_discard(t->conn);
    t->conn = NULL;
    if (t->last) PQclear(t->last);
    t->last = NULL;
    buf_free(&t->params);
}
