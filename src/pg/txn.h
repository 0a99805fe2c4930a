/* txn.h — a transaction on a leased connection (pool_acquire): BEGIN, named queries one after
 * another, COMMIT or ROLLBACK. Used by /batch?transaction=true and Lua handlers. */
#ifndef SLUICE_TXN_H
#define SLUICE_TXN_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>

#include "buf.h"
#include "pgconn.h"
#include "pool.h"

struct txn;

/* How a transaction ended, for the metrics. */
enum txn_outcome { TXN_COMMIT, TXN_ROLLBACK, TXN_ERROR };
/* r: the statement's last result (owned by the txn, valid during the call), or NULL when the
 * connection could not be had or was lost (t->errmsg says why). */
typedef void (*txn_cb)(struct txn *t, PGresult *r);

struct txn {
    struct pool *pool;
    struct pool_lease lease; /* while waiting for the connection */
    struct pgconn *conn;
    struct pgconn_owner owner;
    txn_cb cb;
    PGresult *last; /* the result being collected */
    bool failed;    /* a statement failed: only ROLLBACK remains */
    struct buf params;
    char errmsg[200];
    int bad_param; /* txn_query refused a value: the index of that parameter */
    void *arg;
    uint64_t begun_us;
    bool counted;
    bool committing; /* COMMIT is out, with the WAL position query after it */
    uint64_t lsn;    /* after a COMMIT: the WAL position it reached (Sluice-LSN), 0 unknown */
};

/* Takes a connection and sends BEGIN; cb runs once BEGIN completed (or with NULL). Returns 0, or
 * -1 (cb never runs) when the pool refused at once: t->errmsg says why. */
int txn_open(struct txn *t, struct pool *p, txn_cb cb, void *arg);
/* Runs q with vals (q->nparams JSON values in order; NULL entries are SQL NULL). Returns 0; -1
 * with a client-facing reason in t->errmsg when a value does not convert (nothing was sent); -2
 * when the connection failed (it is gone; cb never runs). */
int txn_query(struct txn *t, struct query_def *q, json_t *const *vals, txn_cb cb);
/* Like txn_query, but runs sql (which takes q's parameters as $1..$n), e.g. an EXPLAIN of q. */
int txn_query_sql(struct txn *t, const char *sql, struct query_def *q, json_t *const *vals, txn_cb cb);
/* COMMIT (or ROLLBACK); cb gets the result. A COMMIT asks for the WAL position in the same round
 * trip: t->lsn is set when cb runs (0 when it is unknown or the transaction did not commit). */
void txn_finish(struct txn *t, bool commit, txn_cb cb);
/* Gives the connection back (after txn_finish completed) and frees what t holds. */
void txn_close(struct txn *t);
/* The owner went away: the connection is discarded (the server rolls back). */
void txn_abandon(struct txn *t);

#endif
