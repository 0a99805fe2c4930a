/* pool.h — one named pool's share on one worker: resident and overflow connections, the FIFO of
 * jobs waiting for a connection, reconnect with backoff, recycle and idle reaping. */
#ifndef SLUICE_POOL_H
#define SLUICE_POOL_H

#include <h2o.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "breaker.h"
#include "buf.h"
#include "config.h"
#include "histogram.h"
#include "retry.h"

struct pgconn;
struct query_def;

enum pgjob_status {
    PGJOB_OK,          /* result holds the statement's result */
    PGJOB_DB_ERROR,    /* result holds the server's error (PQresultErrorField works) */
    PGJOB_BIND_ERROR,  /* a parameter did not convert; errmsg says which */
    PGJOB_UNAVAILABLE, /* no connection within pool_timeout, queue full, or the database is down */
};

/* One execution of a named query. Allocated by pgjob_new, owned by the pool from pool_submit
 * until on_done, which runs exactly once (never from inside pool_submit) and must free the job
 * with pgjob_free. An owner that goes away calls pool_abandon instead of waiting. */
struct pgjob {
    struct pgjob *next; /* wait-queue link */
    struct pool *pool;
    struct query_def *q;
    void *owner;
    /* Fills params for q->param_types (known by then); returns 0, or -1 after writing errmsg. */
    int (*bind)(struct pgjob *job);
    void (*on_done)(struct pgjob *job);
    struct buf params; /* NUL-separated parameter texts */
    int *param_off;    /* offset of each value in params, -1 for NULL */
    bool bound;
    bool exclusive;       /* wants a whole connection: on_done gets it in conn (status OK) */
    struct pgconn *conn;  /* exclusive: the connection handed over; otherwise where it runs */
    uint64_t deadline_us; /* 0 = none: retries never go past it */
    int attempts;         /* sends so far; readonly jobs are resent once after a lost connection */
    bool replan;          /* the server dropped or invalidated the statement: prepare afresh */
    int timeout_ms;       /* statement_timeout for this job */
    enum pgjob_status status;
    PGresult *result; /* owned by the job; pgjob_free clears it */
    char errmsg[200];
    uint64_t queued_us, sent_us;
    h2o_timeout_entry_t wait_entry;
};

/* q may be NULL for an exclusive job. */
struct pgjob *pgjob_new(struct query_def *q, void *owner);
void pgjob_free(struct pgjob *job);
/* Appends one parameter value (NULL for SQL NULL) in order. */
void pgjob_param(struct pgjob *job, int index, const char *text, size_t len);

struct pool {
    struct pool_config cfg; /* this worker's share: pool_size and max_overflow divided */
    h2o_loop_t *loop;
    struct pgconn *conns; /* all connections, doubly linked */
    int nconns, nconnecting, nbusy;
    struct pgjob *qhead, *qtail;
    int qlen;
    h2o_timeout_t *wait_timeout; /* pool_timeout; a reload that changes it makes a new one */
    h2o_timeout_t connect_timeout, janitor_timeout;
    h2o_timeout_entry_t janitor;
    int connect_failures; /* consecutive; reset by a successful connect */
    uint64_t next_connect_ms;
    char last_error[256];
    bool closing;
    struct breaker *breaker; /* shared by the workers of this pool */
    struct breaker_policy breaker_policy;
    struct retry_policy retry_policy;
    h2o_timeout_t retry_timeouts[8]; /* backoff delays, quantized: 5 ms .. 640 ms */
    uint64_t retries;
    /* counters for /health and /metrics */
    uint64_t connects, connect_errors, conn_lost;
    uint64_t deadlocks;        /* 40P01 results */
    int stmts_prepared;        /* statements prepared, all this worker's connections */
    struct histogram acquire;  /* seconds from submit to a connection (db_connection_time_seconds) */
    struct histogram txn_time; /* transactions (handlers, /batch?transaction=true): BEGIN to the end */
    uint64_t txn_outcomes[3];  /* by enum txn_outcome (txn.h) */
};

/* Sets up the pool's share for worker `index` of `nworkers` and starts its resident connections. */
void pool_init(struct pool *p, const struct pool_config *cfg, int index, int nworkers, h2o_loop_t *loop,
               struct breaker *breaker);
/* Applies changed settings of a reloaded config without touching connections in use: sizes,
 * timeouts, recycle, queue bound, statement timeout (sent to each connection before its next
 * query). Idle connections above a smaller size are closed now. Returns the number of settings
 * that need a restart instead (url, connect_timeout), after logging them. */
int pool_reconfigure(struct pool *p, const struct pool_config *cfg, int index, int nworkers);
/* Closes every connection; jobs still waiting complete with PGJOB_UNAVAILABLE. */
void pool_close(struct pool *p);

/* Queues job. Returns 0 (on_done runs later), or -SLUICE_EBUSY when the wait queue is full or the
 * database is known to be down (on_done never runs; errmsg says why). */
int pool_submit(struct pool *p, struct pgjob *job);
/* The owner left: a waiting job is dropped now, an in-flight one when its result arrives. */
void pool_abandon(struct pgjob *job);

/* Called by pgconn. */
void pool_conn_ready(struct pool *p, struct pgconn *c);
void pool_conn_failed(struct pool *p, struct pgconn *c, const char *why);
void pool_conn_has_room(struct pool *p, struct pgconn *c);
/* A job finished (result set) on a connection: delivers it or resends it. */
void pool_job_done(struct pool *p, struct pgjob *job);

/* Seconds a refused client should wait (Retry-After): what is left of the breaker's open time,
 * else 1. */
int pool_retry_after(const struct pool *p);
/* True when the pool can serve now: a connection is up or being established without errors. */
bool pool_healthy(const struct pool *p);

#endif
