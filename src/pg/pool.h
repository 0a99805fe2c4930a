/* pool.h — one named pool's share on one worker: resident and overflow connections, the FIFO of
 * jobs waiting for a connection, reconnect with backoff, recycle and idle reaping; the hosts of a
 * multi-host URL, the role of each server, and the wait for a usable server during a failover. */
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
#include "pgconn.h"
#include "pghosts.h"
#include "pgjob.h"
#include "retry.h"

/* A lease's outcome: c is the connection (LEASED, the owner's until pgconn_release or
 * pgconn_discard), or NULL when none could be had (err says why). */
typedef void (*pool_lease_cb)(void *arg, struct pgconn *c, const char *err);

/* A wait for a whole connection (COPY, a transaction, a stream). The memory is the caller's and
 * must stay put until the callback ran or pool_cancel_lease was called. */
struct pool_lease {
    struct pool_wait wait; /* first: the queue holds jobs and leases alike */
    pool_lease_cb cb;
    void *arg;
};

/* What every worker's share of one pool knows of its hosts: made by the first pool_init for a
 * breaker (one per configured pool), kept for the life of the process. Fields marked atomic are
 * read and written with relaxed atomics from any worker. */
struct pool_shared {
    const struct breaker *key;
    struct pg_hosts hosts; /* the URL's hosts and target_session_attrs, read once */
    int *roles;            /* atomic, enum pg_role per host: as last seen by any worker */
    int last_primary;      /* atomic: the host last seen as primary by a read-write/primary pool, -1 */
    uint64_t role_changes; /* atomic: servers seen in a new role (sluice_pool_role_changes_total) */
};

/* One worker's view of one host of its pool. */
struct pool_host {
    int conns;         /* atomic: open connections to it (idle, pipelined or leased) */
    int connecting;    /* connects to it in flight */
    int failures;      /* failed or refused (wrong role) connects in a row */
    int last_result;   /* atomic: 1 the last connect reached it, -1 it failed, 0 not tried yet */
    uint64_t retry_ms; /* no new connect to it before this (backoff after a failure) */
};

/* The connections of one state, doubly linked (c->prev, c->next). */
struct pgconn_list {
    struct pgconn *head;
    int n;
};

struct pool {
    struct pool_config cfg; /* this worker's share: pool_size and max_overflow divided */
    h2o_loop_t *loop;
    struct pgconn_list conns[PGCONN_NSTATES]; /* by state: a connection sits on the list of its state */
    struct pool_wait *qhead, *qtail;
    int qlen;
    h2o_timeout_t *wait_timeout; /* pool_timeout; a reload that changes it makes a new one */
    h2o_timeout_t connect_timeout, janitor_timeout;
    h2o_timeout_t flush_timeout; /* 0 ms: a connection's jobs of one turn of the loop go out together */
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
    int stmts_prepared;        /* statements prepared, all this worker's connections (pgconn_events) */
    struct histogram acquire;  /* seconds from submit to a connection (db_connection_time_seconds) */
    struct histogram txn_time; /* transactions (handlers, /batch?transaction=true): BEGIN to the end */
    uint64_t txn_outcomes[3];  /* by enum txn_outcome (txn.h) */
    /* the servers behind the pool */
    struct pool_shared *shared;
    struct pool_host hosts[PGHOSTS_MAX]; /* shared->hosts.n of them are used */
    enum pg_target target;
    int current;          /* read-write/primary/any: the host connects go to first, -1 none yet */
    unsigned next_host;   /* standby pools: where the round-robin over equal hosts goes on */
    int nretiring;        /* connections closing once idle: their server changed role */
    uint64_t role_closes; /* connections closed because their server's role no longer suits */
    /* waiting for a usable server (failover_wait_ms) */
    uint64_t down_since_us; /* atomic: no usable server since (a connect failed, none is up); 0 = serving */
    h2o_timeout_t failover_tick_timeout;
    h2o_timeout_entry_t failover_tick;
    struct histogram failover_wait; /* seconds work waited for a usable server (those that did) */
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

/* Queues job. Returns 0 (on_done runs later), or -SLUICE_EBUSY when the wait queue is full, the
 * breaker is open, or no server is usable and failover_wait_ms is 0 (on_done never runs; errmsg
 * says why). While no server is usable the job waits up to failover_wait_ms (and pool_timeout),
 * then completes with PGJOB_UNAVAILABLE. */
int pool_submit(struct pool *p, struct pgjob *job);
/* The owner left: a waiting job is dropped now, an in-flight one when its result arrives. */
void pool_abandon(struct pgjob *job);

/* Asks for a whole connection, in the same FIFO as jobs. Returns 0: cb runs exactly once, with
 * a connection or an error, and may run before pool_acquire returns when one is idle. Returns
 * -SLUICE_EBUSY when the pool refuses at once (cb never runs; err says why). */
int pool_acquire(struct pool *p, struct pool_lease *lease, pool_lease_cb cb, void *arg, char *err,
                 size_t errlen);
/* The owner left while the lease still waits: cb never runs. */
void pool_cancel_lease(struct pool_lease *lease);

/* Connections in state s. */
static inline int pool_count(const struct pool *p, enum pgconn_state s)
{
    return __atomic_load_n(&p->conns[s].n, __ATOMIC_RELAXED); /* /metrics reads other workers' pools */
}

/* Seconds a refused client should wait (Retry-After): what is left of the breaker's open time,
 * else 1. */
int pool_retry_after(const struct pool *p);
/* True when the pool can serve now: a connection is up or being established without errors. */
bool pool_healthy(const struct pool *p);
/* The number of hosts in the pool's URL (at least 1). */
static inline int pool_nhosts(const struct pool *p)
{
    return p->shared->hosts.n;
}
/* Host i's role as last seen by any worker (any thread). */
static inline enum pg_role pool_host_role(const struct pool *p, int i)
{
    return (enum pg_role)__atomic_load_n(&p->shared->roles[i], __ATOMIC_RELAXED);
}

#endif
