/* pgjob.h — one execution of a named query on a pipelined connection: its parameters, its
 * result, and its place in the pool's wait queue. */
#ifndef SLUICE_PGJOB_H
#define SLUICE_PGJOB_H

#include <h2o.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"

struct pool;
struct pgconn;
struct query_def;

/* A place in a pool's FIFO: a job waiting for a pipelined connection, or a lease waiting for a
 * whole one. The entry times the wait (pool_timeout) or, for a job, the backoff of a retry. */
struct pool_wait {
    struct pool_wait *next;
    struct pool *pool;
    h2o_timeout_entry_t entry;
    uint64_t queued_us;
    uint64_t failover_since_us; /* waiting for a usable server since then (failover_wait_ms); 0 = not */
    bool whole;                 /* a lease (struct pool_lease) rather than a job */
};

enum pgjob_status {
    PGJOB_OK,          /* result holds the statement's result */
    PGJOB_DB_ERROR,    /* result holds the server's error (PQresultErrorField works) */
    PGJOB_BIND_ERROR,  /* a parameter did not convert; errmsg says why */
    PGJOB_UNAVAILABLE, /* no connection within pool_timeout, queue full, no usable server within
                          failover_wait_ms, the connection lost, or the server read-only */
};

/* Allocated by pgjob_new, owned by the pool from pool_submit until on_done, which runs exactly
 * once (never from inside pool_submit) and must free the job with pgjob_free. An owner that goes
 * away calls pool_abandon instead of waiting. */
struct pgjob {
    struct pool_wait wait; /* first: the queue holds jobs and leases alike */
    struct query_def *q;
    void *owner;
    /* Fills params for q->param_types (known by then); returns 0, or -1 after writing errmsg. */
    int (*bind)(struct pgjob *job);
    void (*on_done)(struct pgjob *job);
    struct buf params; /* NUL-separated parameter texts */
    int *param_off;    /* offset of each value in params, -1 for NULL */
    bool bound;
    struct pgconn *conn;  /* where it runs, while it does */
    uint64_t deadline_us; /* 0 = none: retries never go past it */
    int attempts;         /* sends so far; readonly jobs are resent once after a lost connection */
    bool replan;          /* the server dropped or invalidated the statement: prepare afresh */
    int timeout_ms;       /* statement_timeout for this job */
    enum pgjob_status status;
    /* With PGJOB_UNAVAILABLE: the connection was lost after the statement was sent, so the server
     * may or may not have run (and committed) it. Such a job is never sent again. */
    bool in_doubt;
    PGresult *result; /* owned by the job; pgjob_free clears it */
    uint64_t lsn;     /* a write that ran: the WAL position after its commit (Sluice-LSN), 0 unknown */
    char errmsg[200];
    int bad_param; /* PGJOB_BIND_ERROR: the index of the parameter errmsg is about, else -1 */
    uint64_t sent_us;
};

/* A job for q (q's registry is kept alive until pgjob_free). Never fails (abort on OOM). */
struct pgjob *pgjob_new(struct query_def *q, void *owner);
void pgjob_free(struct pgjob *job);
/* Sets parameter `index` (text NULL for SQL NULL). */
void pgjob_param(struct pgjob *job, int index, const char *text, size_t len);

#endif
